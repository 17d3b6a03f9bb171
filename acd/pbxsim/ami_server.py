"""Test peer: the AMI listener of the simulated PBX — sessions, framing, event holding, link faults.

Behaviour copied from the transcripts: the banner ``Asterisk Call Manager/9.0.0\\r\\n`` with no blank
line; Login may arrive before the banner is read; a wrong secret is answered after a delay
(about 1 s) and the socket is closed (ami_login_failed); **while an action executes the session
gets nothing else** — events raised meanwhile are held and written after the Response.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from .wire import Headers, encode, get, parse_action

log = logging.getLogger(__name__)

BANNER = b"Asterisk Call Manager/9.0.0\r\n"

ActionHandler = Callable[["AmiSession", Headers], Awaitable[list[Headers]]]


@dataclass(eq=False)
class AmiSession:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    number: int
    authed: bool = False
    events_on: bool = True
    busy: bool = False
    frozen: bool = False
    held: list[bytes] = field(default_factory=list)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    #: Every action this session received, in order (tests assert "sent once").
    actions: list[Headers] = field(default_factory=list)

    def write(self, data: bytes) -> None:
        if self.frozen or self.closed.is_set():
            return
        try:
            self.writer.write(data)
        except (ConnectionError, RuntimeError):
            self.closed.set()

    def event(self, data: bytes) -> None:
        if not self.authed or not self.events_on or self.frozen:
            return
        if self.busy:
            self.held.append(data)
        else:
            self.write(data)

    def flush(self) -> None:
        held, self.held = self.held, []
        for data in held:
            self.write(data)

    def close(self) -> None:
        self.closed.set()
        with contextlib.suppress(Exception):
            self.writer.close()


class AmiServer:
    def __init__(
        self,
        handler: ActionHandler,
        *,
        username: str,
        secret: str,
        host: str = "127.0.0.1",
        port: int = 0,
        auth_failure_delay: float = 1.0,
    ) -> None:
        self.handler = handler
        self.username = username
        self.secret = secret
        self.host = host
        self.port = port
        self.auth_failure_delay = auth_failure_delay
        self.sessions: list[AmiSession] = []
        self.all_sessions: list[AmiSession] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.logins = 0
        #: (session number, action) for every action received, as it arrives.
        self.received: asyncio.Queue[tuple[int, Headers]] = asyncio.Queue()
        self.login_event = asyncio.Event()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop_listening(self) -> None:
        """Refuse new connections (Asterisk down); existing sessions are not touched."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def close(self) -> None:
        await self.stop_listening()
        self.drop_all()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task

    def drop_all(self) -> None:
        """Close every AMI socket (Asterisk restarted, or the network said RST)."""
        for session in list(self.sessions):
            session.close()

    def freeze_all(self) -> None:
        """Half-open: stop reading and writing on every session, without closing anything."""
        for session in self.sessions:
            session.frozen = True

    def broadcast(self, headers: Headers) -> None:
        data = encode(headers)
        for session in self.sessions:
            session.event(data)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        session = AmiSession(reader, writer, len(self.all_sessions) + 1)
        self.sessions.append(session)
        self.all_sessions.append(session)
        try:
            session.write(BANNER)
            while not session.closed.is_set():
                read = asyncio.ensure_future(reader.readuntil(b"\r\n\r\n"))
                closed = asyncio.ensure_future(session.closed.wait())
                await asyncio.wait({read, closed}, return_when=asyncio.FIRST_COMPLETED)
                closed.cancel()
                if not read.done():
                    read.cancel()
                    break
                try:
                    block = read.result()
                except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
                    break
                if session.frozen:
                    await session.closed.wait()  # half-open: swallow everything until torn down
                    break
                action = parse_action(block)
                session.actions.append(action)
                self.received.put_nowait((session.number, action))
                if not await self._dispatch(session, action):
                    break
                with contextlib.suppress(ConnectionError):
                    await writer.drain()
        except asyncio.CancelledError:
            pass
        finally:
            session.close()
            if session in self.sessions:
                self.sessions.remove(session)
            self._tasks.discard(task)

    async def _dispatch(self, session: AmiSession, action: Headers) -> bool:
        name = (get(action, "Action") or "").lower()
        action_id = get(action, "ActionID")
        head: Headers = [("ActionID", action_id)] if action_id is not None else []
        if name == "login":
            if get(action, "Username") == self.username and get(action, "Secret") == self.secret:
                session.write(encode([("Response", "Success"), *head, ("Message", "Authentication accepted")]))
                session.authed = True
                session.events_on = (get(action, "Events") or "on").lower() not in ("off", "no")
                session.event(
                    encode(
                        [
                            ("Event", "FullyBooted"),
                            ("Privilege", "system,all"),
                            ("Uptime", "3"),
                            ("LastReload", "3"),
                            ("Status", "Fully Booted"),
                        ]
                    )
                )
                self.logins += 1
                self.login_event.set()
                return True
            await asyncio.sleep(self.auth_failure_delay)  # Asterisk's own penalty (ami_login_failed)
            session.write(encode([("Response", "Error"), *head, ("Message", "Authentication failed")]))
            return False
        if not session.authed:
            session.write(encode([("Response", "Error"), *head, ("Message", "Permission denied")]))
            return True
        if name == "logoff":
            session.write(encode([("Response", "Goodbye"), *head, ("Message", "Thanks for all the fish.")]))
            return False
        session.busy = True
        try:
            replies = await self.handler(session, action)
        except Exception as exc:
            log.exception("pbxsim: action %s failed", name)
            replies = [[("Response", "Error"), *head, ("Message", f"Simulator error: {exc}")]]
        finally:
            session.busy = False
        for reply in replies:
            session.write(encode(reply))
        session.flush()
        return True
