"""Test peer: replays recorded Asterisk byte streams over real sockets on 127.0.0.1.

The transcripts in ``shared/asterisk-transcripts/*.jsonl`` hold exactly what Asterisk wrote. These
peers play Asterisk's side back to the code under test:

* :class:`AmiReplayPeer` is an AMI server: it follows the records of one connection, writes each
  ``recv`` record byte for byte, and for each ``send`` record reads one action from the client.
  The recorded ActionID of that action is then replaced by the one the client really sent, in every
  later record (panoramisk's ``action/<uuid>/1/N`` ids are not ours).
* :class:`AgiReplayPeer` is Asterisk connecting to a FastAGI server: it writes the env block, then
  answers each command with the next recorded reply unit (one line, or a whole ``520`` block),
  followed by any unsolicited ``HANGUP`` line recorded right after it; with no reply left it closes.
  Pairing by units, not by recorded order, undoes panoramisk's off-by-one reading in the recording.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

TRANSCRIPTS = Path(os.environ.get("ACD_TRANSCRIPTS", "/work/shared/asterisk-transcripts"))


@dataclass(frozen=True, slots=True)
class Record:
    t: float
    conn: str
    dir: str
    raw: str


def load(name: str) -> list[Record]:
    records = []
    with (TRANSCRIPTS / f"{name}.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            data = json.loads(line)
            if data.get("meta"):
                continue
            records.append(Record(data["t"], data.get("conn", ""), data["dir"], data.get("raw", "")))
    return records


def recv_stream(name: str, conn: str) -> bytes:
    """The exact bytes Asterisk wrote on one connection."""
    return "".join(r.raw for r in load(name) if r.conn == conn and r.dir == "recv").encode()


def header(raw: str, name: str) -> str | None:
    for line in raw.split("\r\n"):
        key, sep, value = line.partition(": ")
        if sep and key.lower() == name.lower():
            return value
    return None


def sent_actions(name: str, conn: str = "ami") -> list[list[tuple[str, str]]]:
    """The actions the recorder sent, as header pairs in wire order."""
    actions = []
    for r in load(name):
        if r.conn == conn and r.dir == "send":
            pairs = []
            for line in r.raw.split("\r\n"):
                if line:
                    key, _, value = line.partition(": ")
                    pairs.append((key, value))
            actions.append(pairs)
    return actions


@dataclass
class AmiReplayPeer:
    """An AMI server that replays one recorded connection."""

    records: list[Record]
    received: list[bytes] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    port: int = 0
    _server: asyncio.Server | None = None

    @classmethod
    def from_transcript(cls, name: str, conn: str = "ami") -> AmiReplayPeer:
        return cls([r for r in load(name) if r.conn == conn and r.dir in ("send", "recv", "eof")])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ids: dict[str, str] = {}
        try:
            for record in self.records:
                if record.dir == "recv":
                    raw = record.raw
                    recorded_id = header(raw, "ActionID")
                    if recorded_id in ids:
                        raw = raw.replace(f"ActionID: {recorded_id}\r\n", f"ActionID: {ids[recorded_id]}\r\n")
                    writer.write(raw.encode())
                    await writer.drain()
                elif record.dir == "send":
                    data = await reader.readuntil(b"\r\n\r\n")
                    self.received.append(data)
                    recorded_id = header(record.raw, "ActionID")
                    actual_id = header(data.decode(), "ActionID")
                    if recorded_id and actual_id:
                        ids[recorded_id] = actual_id
                elif record.dir == "eof":
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.done.set()
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


@dataclass
class AgiReplayPeer:
    """Plays Asterisk's side of one recorded FastAGI session against a FastAGI server."""

    env: list[str]
    units: list[list[str]]
    received: list[str] = field(default_factory=list)

    @classmethod
    def from_transcript(cls, name: str, conn: str) -> AgiReplayPeer:
        lines = [r.raw for r in load(name) if r.conn == conn and r.dir == "recv"]
        blank = lines.index("\n")
        env, rest = lines[: blank + 1], lines[blank + 1 :]
        units: list[list[str]] = []
        i = 0
        while i < len(rest):
            line = rest[i]
            if line == "HANGUP\n" and units:
                units[-1].append(line)  # unsolicited: travels right after the previous reply
                i += 1
                continue
            unit = [line]
            i += 1
            if line.startswith("520-"):
                while i < len(rest):
                    unit.append(rest[i])
                    i += 1
                    if unit[-1].startswith("520 "):
                        break
            units.append(unit)
        return cls(env, units)

    async def call(self, port: int, *, host: str = "127.0.0.1") -> list[str]:
        """Connect, send the env block, answer commands until the server closes; return what it sent."""
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write("".join(self.env).encode())
            await writer.drain()
            units = list(self.units)
            while True:
                line = await reader.readline()
                if not line:
                    break
                self.received.append(line.decode())
                if not units:
                    break  # nothing recorded for this command: hang up the socket like the recording ended
                writer.write("".join(units.pop(0)).encode())
                await writer.drain()
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
        return self.received


class RawAmi:
    """A bare AMI socket for fidelity tests: writes actions verbatim, reads messages as header lists."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, banner: bytes) -> None:
        self.reader = reader
        self.writer = writer
        self.banner = banner
        self.messages: list[list[tuple[str, str]]] = []

    @classmethod
    async def connect(cls, port: int) -> RawAmi:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        banner = await asyncio.wait_for(reader.readline(), 5)
        return cls(reader, writer, banner)

    def send(self, pairs: list[tuple[str, str]]) -> None:
        self.writer.write("".join(f"{k}: {v}\r\n" for k, v in pairs).encode() + b"\r\n")

    async def read(self, limit: float = 5) -> list[tuple[str, str]]:
        block = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), limit)
        pairs = []
        for line in block.decode().split("\r\n"):
            if line:
                key, _, value = line.partition(": ")
                pairs.append((key, value))
        self.messages.append(pairs)
        return pairs

    async def until(self, predicate, limit: float = 5) -> list[list[tuple[str, str]]]:
        """Read until ``predicate(message)`` holds; return everything read, the match last."""
        got = []
        async with asyncio.timeout(limit):
            while True:
                message = await self.read(limit)
                got.append(message)
                if predicate(message):
                    return got

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


def keys(message: list[tuple[str, str]]) -> list[str]:
    return [k for k, _ in message]


def value(message: list[tuple[str, str]], name: str) -> str | None:
    return next((v for k, v in message if k == name), None)


def recorded_messages(name: str, conn: str = "ami") -> list[list[tuple[str, str]]]:
    out = []
    for r in load(name):
        if r.conn == conn and r.dir == "recv" and r.raw.endswith("\r\n\r\n"):
            pairs = []
            for line in r.raw.split("\r\n"):
                if line:
                    key, _, val = line.partition(": ")
                    pairs.append((key, val))
            out.append(pairs)
    return out
