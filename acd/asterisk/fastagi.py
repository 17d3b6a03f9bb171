"""Adapter: FastAGI ⇄ core — an asyncio FastAGI server whose replies never fall out of step.

Choice: **our own server, not panoramisk's ``fast_agi.Application``.** Recorded against Asterisk 20
(``shared/asterisk-transcripts/fastagi_ivr.*``), panoramisk reads exactly one line per command, so
the unsolicited ``HANGUP`` line is taken for the next command's reply and a multi-line ``520`` leaves
lines behind — every later reply is off by one; a script path with a query string
(``agi://host/ivr?lead=4711``) finds no route and the call silently skips the IVR; it has no
deadline. Fixing that means replacing its reader, its router and its handler runner, i.e. all of it.

How replies are read: one reader task per connection turns the byte stream into lines. A line
``HANGUP`` is never a reply: it marks the session hung up (Asterisk writes it "tens of
milliseconds after the reply of the interrupted command, or on its own while the AGI is idle").
``520-...`` opens a usage block that ends with ``520 End of proper usage.``; the whole block is one
reply. After a hangup, commands that touch the channel get ``511`` (a value, not an exception) while
GET/SET VARIABLE and NOOP still work.

Handing the call back: the dialplan should test one variable after ``AGI()``::

    same => n,AGI(agi://127.0.0.1:4573/ivr?lead=${ACD_LEAD_ID})
    same => n,GotoIf($["${ACD_STATUS}" != "OK"]?fallback,1)

The server sets ``ACD_STATUS`` when it can: ``OK`` after the handler returned, ``TIMEOUT`` when the
handler ran past its deadline, ``ERROR`` when it raised, ``NOROUTE`` for an unknown script. If our
server is down Asterisk gives ``AGISTATUS=FAILURE`` and ``ACD_STATUS`` stays empty, so the same
``GotoIf`` takes the fallback. Past the deadline the socket is closed, so the dialplan moves on
even if Asterisk is still busy with a long prompt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qs

log = logging.getLogger(__name__)

STATUS_VARIABLE = "ACD_STATUS"

# ASCII only: a stray Unicode digit on the wire (say "²") is garbage, not a status code
_REPLY = re.compile(
    r"^(?P<code>\d{3})(?: result=(?P<result>\S*))?(?: \((?P<data>.*)\))?(?P<extra>(?: \w+=\S*)*)$", re.ASCII
)


@dataclass(frozen=True, slots=True)
class AgiReply:
    """One reply. ``result`` is the text after ``result=`` (``""`` in ``200 result= (timeout)``).

    ``data`` is the parenthesised part (``4711`` in ``200 result=1 (4711)``, ``timeout``), ``extra``
    the ``key=value`` tail (``{"endpos": "11234"}``), ``lines`` the raw lines (several for a 520).
    """

    code: int
    result: str | None = None
    data: str | None = None
    extra: Mapping[str, str] = field(default_factory=dict)
    lines: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.code == 200

    @property
    def result_int(self) -> int | None:
        try:
            return int(self.result) if self.result not in (None, "") else None
        except ValueError:
            return None

    @property
    def digit(self) -> str | None:
        """The key from STREAM FILE / WAIT FOR DIGIT / GET OPTION (ASCII code; 0 = none, -1 = hangup)."""
        value = self.result_int
        return chr(value) if self.ok and value is not None and value > 0 else None

    @property
    def timed_out(self) -> bool:
        return self.data == "timeout"

    @property
    def dead_channel(self) -> bool:
        return self.code == 511


def parse_reply(lines: list[str]) -> AgiReply:
    first = lines[0]
    match = _REPLY.match(first)
    if match is None:
        code = int(first[:3]) if first[:3].isascii() and first[:3].isdigit() else 0
        return AgiReply(code, lines=tuple(lines))
    extra: dict[str, str] = {}
    for part in (match["extra"] or "").split():
        key, _, value = part.partition("=")
        extra[key] = value
    return AgiReply(int(match["code"]), match["result"], match["data"], extra, tuple(lines))


def quote(text: str) -> str:
    """Quote one AGI argument (Asterisk splits on spaces, honours double quotes and backslashes)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class AgiConnectionLost(Exception):
    """Asterisk closed the FastAGI socket (the dialplan has moved on)."""


class AgiSession:
    """One FastAGI call: the env block, the route, and a command channel that stays in step."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, env: dict[str, str]) -> None:
        self._reader = reader
        self._writer = writer
        self.env = env
        raw = env.get("agi_network_script", "")
        path, _, query = raw.partition("?")
        #: The route: the script path without its query string (``ivr`` for ``ivr?lead=4711``).
        self.script = path.strip("/")
        #: Query parameters, first value of each (``{"lead": "4711", "lang": "ru"}``).
        self.query: dict[str, str] = {k: v[0] for k, v in parse_qs(query, keep_blank_values=True).items()}
        #: ``agi_arg_1..N`` in order.
        self.args: list[str] = []
        n = 1
        while f"agi_arg_{n}" in env:
            self.args.append(env[f"agi_arg_{n}"])
            n += 1
        self._lines: asyncio.Queue[str | None] = asyncio.Queue()
        self._hangup = asyncio.Event()
        self._eof = asyncio.Event()
        self._lock = asyncio.Lock()
        self._owed = 0  # replies Asterisk still owes us for commands whose caller was cancelled
        self._reader_task = asyncio.create_task(self._read_lines(), name="fastagi-reader")
        #: Every command sent and reply read, in order (what a supervisor/test wants to see).
        self.history: list[tuple[str, AgiReply]] = []

    # -- env ---------------------------------------------------------------------------------

    @property
    def channel(self) -> str:
        return self.env.get("agi_channel", "")

    @property
    def uniqueid(self) -> str:
        return self.env.get("agi_uniqueid", "")

    def _known(self, key: str) -> str:
        # res_agi writes "unknown" for a caller ID number or name, a DNID or an RDNIS the channel
        # does not have (fastagi_ivr: "agi_dnid: unknown"); that is no value, not a name.
        value = self.env.get(key, "")
        return "" if value == "unknown" else value

    @property
    def caller_id(self) -> str:
        """The caller's number ("" when Asterisk says ``unknown``)."""
        return self._known("agi_callerid")

    @property
    def caller_name(self) -> str:
        """The caller's name ("" when Asterisk says ``unknown``: most trunks send no name)."""
        return self._known("agi_calleridname")

    @property
    def dnid(self) -> str:
        """The number dialled ("" when Asterisk says ``unknown``)."""
        return self._known("agi_dnid")

    @property
    def peer_host(self) -> str:
        """The address Asterisk connected from ("" when unknown)."""
        peer = self._writer.get_extra_info("peername")
        return str(peer[0]) if isinstance(peer, tuple) and peer else ""

    @property
    def hung_up(self) -> bool:
        return self._hangup.is_set()

    @property
    def closed(self) -> bool:
        return self._eof.is_set()

    async def wait_hangup(self) -> None:
        await self._hangup.wait()

    # -- reading -----------------------------------------------------------------------------

    async def _read_lines(self) -> None:
        try:
            while True:
                raw = await self._reader.readline()
                if not raw:
                    break
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                if line == "HANGUP":
                    # Unsolicited: not the reply to anything (AGISIGHUP=yes, the default).
                    self._hangup.set()
                    continue
                self._lines.put_nowait(line)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._eof.set()
            self._lines.put_nowait(None)

    async def _next_line(self) -> str:
        line = await self._lines.get()
        if line is None:
            self._lines.put_nowait(None)  # keep EOF visible to the next reader
            raise AgiConnectionLost("FastAGI connection closed by Asterisk")
        return line

    async def _read_reply(self) -> AgiReply:
        first = await self._next_line()
        lines = [first]
        if first.startswith("520-"):
            # Multi-line usage: read through "520 End of proper usage." (fastagi_ivr agi-1).
            while True:
                line = await self._next_line()
                lines.append(line)
                if line.startswith("520 "):
                    break
        return parse_reply(lines)

    # -- commands ----------------------------------------------------------------------------

    async def command(self, text: str) -> AgiReply:
        """Send one AGI command line and return its reply (a 510/511/520 is a value)."""
        if "\n" in text:
            raise ValueError("an AGI command is one line")
        async with self._lock:
            if self._eof.is_set():
                raise AgiConnectionLost("FastAGI connection already closed")
            try:
                # A command cut off earlier (deadline) still owes its reply: skip it first.
                while self._owed:
                    await self._read_reply()
                    self._owed -= 1
                self._writer.write(text.encode() + b"\n")
                self._owed += 1
                await self._writer.drain()
                reply = await self._read_reply()
                self._owed -= 1
            except (ConnectionError, OSError) as exc:
                raise AgiConnectionLost(str(exc)) from exc
            self.history.append((text, reply))
            return reply

    async def answer(self) -> AgiReply:
        return await self.command("ANSWER")

    async def verbose(self, message: str, level: int = 1) -> AgiReply:
        return await self.command(f"VERBOSE {quote(message)} {level}")

    async def stream_file(self, name: str, escape_digits: str = "") -> AgiReply:
        """``200 result=<ascii|0> endpos=N``; ``result=-1 endpos=0`` for a missing file or a hangup."""
        return await self.command(f"STREAM FILE {name} {quote(escape_digits)}")

    async def wait_for_digit(self, timeout_ms: int) -> str | None:
        """The key pressed within ``timeout_ms`` (-1: forever), or None."""
        reply = await self.command(f"WAIT FOR DIGIT {timeout_ms}")
        return reply.digit

    async def get_data(self, prompt: str, timeout_ms: int, max_digits: int) -> tuple[str, bool]:
        """``(digits, timed_out)``: ``200 result=12`` → ("12", False), ``200 result=9 (timeout)`` → ("9", True).

        A hangup or a dead channel gives ("", True); check ``hung_up``.
        """
        reply = await self.command(f"GET DATA {prompt} {timeout_ms} {max_digits}")
        if not reply.ok or (reply.result_int is not None and reply.result_int < 0):
            return "", True
        return reply.result or "", reply.timed_out

    async def get_option(self, prompt: str, escape_digits: str, timeout_ms: int) -> AgiReply:
        return await self.command(f"GET OPTION {prompt} {quote(escape_digits)} {timeout_ms}")

    async def say_digits(self, digits: str, escape_digits: str = "") -> AgiReply:
        return await self.command(f"SAY DIGITS {digits} {quote(escape_digits)}")

    async def say_number(self, number: int, escape_digits: str = "") -> AgiReply:
        return await self.command(f"SAY NUMBER {number} {quote(escape_digits)}")

    async def set_variable(self, name: str, value: str) -> AgiReply:
        return await self.command(f"SET VARIABLE {name} {quote(value)}")

    async def get_variable(self, name: str) -> str | None:
        """The value, or None when unset (``200 result=0``) or when the reply is not 200."""
        reply = await self.command(f"GET VARIABLE {name}")
        if reply.ok and reply.result == "1":
            return reply.data or ""
        return None

    async def exec(self, application: str, *args: str) -> AgiReply:
        """EXEC an application; ``200 result=-2`` means Asterisk does not know it."""
        options = quote(",".join(args)) if args else ""
        return await self.command(f"EXEC {application} {options}".rstrip())

    async def noop(self) -> AgiReply:
        return await self.command("NOOP")

    async def hangup(self) -> AgiReply:
        return await self.command("HANGUP")

    # -- teardown ----------------------------------------------------------------------------

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()
        self._reader_task.cancel()
        with contextlib.suppress(BaseException):
            await self._reader_task


Handler = Callable[[AgiSession], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class SessionOutcome:
    """What the server did with one connection (for logs, metrics and tests)."""

    script: str
    status: str  # OK | TIMEOUT | ERROR | NOROUTE | HANGUP | LOST
    session: AgiSession


class FastAgiServer:
    """FastAGI server: route by script name (query string ignored), each handler under a deadline.

    >>> server = FastAgiServer({"ivr": ivr_handler}, deadline=20.0)     # doctest: +SKIP
    >>> await server.start()            # 127.0.0.1, port 0 → server.port
    >>> ...
    >>> await server.close()
    """

    def __init__(
        self,
        routes: Mapping[str, Handler] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        deadline: float = 30.0,
        grace: float = 1.0,
        env_timeout: float = 5.0,
        on_outcome: Callable[[SessionOutcome], None] | None = None,
    ) -> None:
        self.routes: dict[str, Handler] = dict(routes or {})
        self.deadlines: dict[str, float] = {}
        self.host = host
        self.port = port
        self.deadline = deadline
        self.grace = grace
        self.env_timeout = env_timeout
        self.on_outcome = on_outcome
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.outcomes: asyncio.Queue[SessionOutcome] = asyncio.Queue()

    def route(self, script: str, handler: Handler, deadline: float | None = None) -> None:
        """Serve ``script`` with ``handler``; ``deadline`` replaces the server's for this route
        (an IVR that also holds the caller in the queue needs minutes, a lookup seconds)."""
        self.routes[script.strip("/")] = handler
        if deadline is not None:
            self.deadlines[script.strip("/")] = deadline
        else:
            self.deadlines.pop(script.strip("/"), None)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await self._serve(reader, writer)
        finally:
            if task is not None:
                self._tasks.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(self.env_timeout):  # not wait_for: see AmiClient._await_pending
                env = await read_env(reader)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
            log.warning("FastAGI: no usable env block: %r", exc)
            writer.close()
            return
        session = AgiSession(reader, writer, env)
        handler = self.routes.get(session.script)
        status = "OK"
        try:
            if handler is None:
                # panoramisk closes here and the dialplan sees AGISTATUS=SUCCESS: say it instead.
                log.warning("FastAGI: no route for %r (%s)", session.script, env.get("agi_network_script"))
                status = "NOROUTE"
            else:
                deadline = self.deadlines.get(session.script, self.deadline)
                try:
                    async with asyncio.timeout(deadline):
                        await handler(session)
                except TimeoutError:
                    log.warning(
                        "FastAGI %s on %s ran past %.1fs: handing the call back",
                        session.script,
                        session.channel,
                        deadline,
                    )
                    status = "TIMEOUT"
                except AgiConnectionLost:
                    status = "LOST"
                except Exception:
                    log.exception("FastAGI handler %s failed on %s", session.script, session.channel)
                    status = "ERROR"
            if status != "LOST" and not session.closed:
                await self._set_status(session, status)
            if session.hung_up and status == "OK":
                status = "HANGUP"
        finally:
            await session.close()
        outcome = SessionOutcome(session.script, status, session)
        self.outcomes.put_nowait(outcome)
        if self.on_outcome is not None:
            try:
                self.on_outcome(outcome)
            except Exception:
                log.exception("FastAGI on_outcome hook failed")

    async def _set_status(self, session: AgiSession, status: str) -> None:
        # A command cut off by the deadline still owes its reply (a prompt may still be playing):
        # give it `grace`, then just close - closing is what hands the call back.
        with contextlib.suppress(AgiConnectionLost, TimeoutError):
            async with asyncio.timeout(self.grace):
                await session.set_variable(STATUS_VARIABLE, status)


async def read_env(reader: asyncio.StreamReader) -> dict[str, str]:
    """Read ``agi_*: value`` lines up to the empty line (LF-terminated, fastagi_ivr)."""
    env: dict[str, str] = {}
    while True:
        raw = await reader.readline()
        if not raw:
            raise asyncio.IncompleteReadError(b"", None)
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if not line:
            return env
        key, sep, value = line.partition(":")
        if not sep:
            raise ValueError(f"bad env line {line!r}")
        env[key.strip()] = value[1:] if value.startswith(" ") else value


__all__ = [
    "STATUS_VARIABLE",
    "AgiConnectionLost",
    "AgiReply",
    "AgiSession",
    "FastAgiServer",
    "Handler",
    "SessionOutcome",
    "parse_reply",
    "quote",
    "read_env",
]
