"""Fuzzing the AMI and AGI parsers with random, truncated and re-chunked input: they never
raise, and a real stream cut at any points parses exactly as it does whole."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from acd.asterisk.ami import AmiParser
from acd.asterisk.fastagi import FastAgiServer, parse_reply

TRANSCRIPTS = Path(__file__).resolve().parents[3] / "shared" / "asterisk-transcripts"
SCALE = 20 if os.environ.get("HYPOTHESIS_PROFILE") == "reliability" else 1


def recorded_stream(name: str, conn: str | None = None) -> bytes:
    out = b""
    for line in (TRANSCRIPTS / f"{name}.jsonl").read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if record.get("dir") == "recv" and (conn is None or record.get("conn") == conn):
            out += record["raw"].encode("utf-8")
    return out


AMI = recorded_stream("ami_basic") if (TRANSCRIPTS / "ami_basic.jsonl").exists() else b""


@settings(max_examples=200 * SCALE, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=20))
def test_the_ami_parser_survives_any_bytes(chunks: list[bytes]) -> None:
    parser = AmiParser()
    for chunk in chunks:
        for message in parser.feed(chunk):
            assert message.headers


@settings(max_examples=100 * SCALE, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=max(1, len(AMI))), max_size=40))
def test_a_recorded_ami_stream_cut_anywhere_parses_as_it_does_whole(cuts: list[int]) -> None:
    whole = AmiParser().feed(AMI)
    parser = AmiParser()
    got = []
    last = 0
    for cut in sorted(set(cuts)):
        got += parser.feed(AMI[last:cut])
        last = cut
    got += parser.feed(AMI[last:])
    assert [m.headers for m in got] == [m.headers for m in whole]
    assert parser.banner == "Asterisk Call Manager/9.0.0" or not AMI


@settings(max_examples=300 * SCALE, deadline=None)
@given(st.lists(st.text(max_size=80), min_size=1, max_size=5))
def test_the_agi_reply_parser_survives_any_lines(lines: list[str]) -> None:
    reply = parse_reply(lines)
    assert isinstance(reply.code, int)


@settings(max_examples=25 * SCALE, deadline=None)
@given(st.binary(max_size=2000))
def test_the_fastagi_server_refuses_garbage_and_keeps_serving(garbage: bytes) -> None:
    async def scenario() -> None:
        served: list[str] = []

        async def handler(session) -> None:  # type: ignore[no-untyped-def]
            served.append(session.script)

        server = FastAgiServer({"ivr": handler}, port=0, deadline=5)
        server.env_timeout = 0.5
        await server.start()
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(garbage)
            await writer.drain()
            writer.close()
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"agi_network: yes\nagi_network_script: ivr\nagi_channel: SIP/1-1\n\n")
            await writer.drain()
            while line := await asyncio.wait_for(reader.readline(), 5):  # answer what it asks
                if line.startswith(b"SET VARIABLE"):
                    writer.write(b"200 result=1\n")
                    await writer.drain()
            writer.close()
        finally:
            await server.close()
        assert served == ["ivr"]

    asyncio.run(scenario())
