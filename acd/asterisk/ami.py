"""Adapter: AMI ⇄ core — a small asyncio Asterisk Manager Interface client.

Choice: **our own client, not panoramisk 1.4's ``Manager``.** Every requirement this adapter has is
exactly where panoramisk 1.4 is wrong against Asterisk 20 (see
``shared/asterisk-transcripts/README.md``), and each workaround would patch its internals:

* a Response whose Message ends in "successfully queued" raises ``KeyError: 'async'`` inside
  ``data_received`` and asyncio closes the transport (``originate_sync_panoramisk_crash``);
* ``QueueAdd``'s "Added interface to queue" is taken for the start of a list and never resolves;
* its keep-alive Ping never checks the reply, so a half-open link goes unnoticed;
* after a failed Login it reconnects forever and ``close()`` does not stop a scheduled reconnect;
* it **re-sends unanswered actions after a reconnect** — a callback's Originate could ring a
  customer twice.

The protocol itself is small (CRLF headers, a blank line ends a message, replies matched by
``ActionID``), so ~400 lines of our own are cheaper to trust than a patched library. The parser
below has no I/O (bytes in, messages out) and is tested by replaying the recorded byte streams.

Guarantees:

* ``send()`` writes an action once. If the link drops before its Response arrives the call fails
  with :class:`AmiLinkLost` — it is **never re-sent**; the caller decides (for an Originate the
  outcome is unknown, and ringing a customer twice is worse than asking a human).
* A Ping every ``ping_interval`` whose reply must arrive within ``ping_timeout`` (counted after
  any older unanswered action, since "while an action is executing, that connection gets nothing
  else"); otherwise the link is declared dead, dropped and re-established.
* Reconnect with exponential back-off; ``on_connected`` runs after every successful Login (use it
  to resynchronise, e.g. ``DeviceStateList``). A wrong secret is not retried: it is a
  configuration error (:class:`AmiAuthError`), and hammering Asterisk with it helps nobody.
* Event callbacks run in arrival order on one task; each one's errors are caught and logged.

Exception tree::

    AmiError
    ├── AmiAuthError        Login answered "Authentication failed" (not retried)
    ├── AmiNotConnected     no logged-in link right now; nothing was sent
    ├── AmiLinkLost         the link dropped after the action was written; outcome unknown, not re-sent
    ├── AmiTimeout          no Response within the timeout (the link may still be fine)
    └── AmiClosed           the client was closed
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

log = logging.getLogger(__name__)

BANNER_PREFIX = "Asterisk Call Manager/"

# --------------------------------------------------------------------------------------------
# Protocol (no I/O)


@dataclass(frozen=True, slots=True)
class AmiMessage:
    """One AMI message: headers in wire order (a name may repeat, e.g. ``Output`` or ``Variable``)."""

    headers: tuple[tuple[str, str], ...]

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of header ``name`` (case-insensitive), or ``default``."""
        low = name.lower()
        for key, value in self.headers:
            if key.lower() == low:
                return value
        return default

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def get_all(self, name: str) -> list[str]:
        low = name.lower()
        return [value for key, value in self.headers if key.lower() == low]

    @property
    def keys(self) -> list[str]:
        return [key for key, _ in self.headers]

    @property
    def is_response(self) -> bool:
        return bool(self.headers) and self.headers[0][0].lower() == "response"

    @property
    def is_event(self) -> bool:
        return bool(self.headers) and self.headers[0][0].lower() == "event"

    @property
    def name(self) -> str:
        """The event name, or the Response value (``Success``, ``Error``, ``Goodbye``...)."""
        return self.headers[0][1] if self.headers else ""

    @property
    def action_id(self) -> str | None:
        return self.get("ActionID")

    @property
    def ok(self) -> bool:
        """A Response that is not ``Error`` (``Success``, ``Goodbye``, ``Follows``)."""
        return self.is_response and self.name.lower() != "error"

    @property
    def message(self) -> str:
        return self.get("Message", "") or ""

    @property
    def output(self) -> list[str]:
        """CLI output of ``Command``: Asterisk 14+ sends one ``Output:`` header per line."""
        return self.get_all("Output")

    @property
    def chan_variables(self) -> dict[str, str]:
        """``channelvars`` values, in both recorded spellings.

        Channel events say ``ChanVariable: ACD_LEAD_ID=4711``; OriginateResponse says
        ``ChanVariable(Local/park@acd-legs-00000000;1): ACD_LEAD_ID=4711`` (ami_basic).
        """
        found: dict[str, str] = {}
        for key, value in self.headers:
            if key == "ChanVariable" or (key.startswith("ChanVariable(") and key.endswith(")")):
                var, _, val = value.partition("=")
                found[var] = val
        return found

    def as_dict(self) -> dict[str, str]:
        """First value per header; convenient when repeats do not matter."""
        out: dict[str, str] = {}
        for key, value in self.headers:
            out.setdefault(key, value)
        return out


class AmiParser:
    """Bytes in, messages out. Handles the banner line, which has no blank line after it."""

    def __init__(self) -> None:
        self._buffer = b""
        self.banner: str | None = None

    def feed(self, data: bytes) -> list[AmiMessage]:
        self._buffer += data
        messages: list[AmiMessage] = []
        if self.banner is None:
            end = self._buffer.find(b"\r\n")
            if end < 0:
                return messages
            first = self._buffer[:end].decode("utf-8", "replace")
            if first.startswith(BANNER_PREFIX):
                self.banner = first
                self._buffer = self._buffer[end + 2 :]
            else:
                self.banner = ""  # no banner seen (a replay that starts mid-stream)
        while True:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                break
            block, self._buffer = self._buffer[:end], self._buffer[end + 4 :]
            message = parse_message(block)
            if message.headers:
                messages.append(message)
        return messages


def parse_message(block: bytes) -> AmiMessage:
    headers: list[tuple[str, str]] = []
    for raw in block.decode("utf-8", "replace").split("\r\n"):
        if not raw:
            continue
        key, sep, value = raw.partition(":")
        if not sep:
            # Pre-14 "Response: Follows" output lines have no colon; keep them as Output.
            headers.append(("Output", raw))
            continue
        headers.append((key.strip(), value[1:] if value.startswith(" ") else value))
    return AmiMessage(tuple(headers))


Action = Mapping[str, str | int | Sequence[str]] | Sequence[tuple[str, str]]


def action_headers(action: Action) -> list[tuple[str, str]]:
    """Normalise an action to header pairs; a list value repeats the header (``Variable``)."""
    if isinstance(action, Mapping):
        pairs: list[tuple[str, str]] = []
        for key, value in action.items():
            if isinstance(value, str | int):
                pairs.append((key, str(value)))
            else:
                pairs.extend((key, str(v)) for v in value)
        return pairs
    return [(str(k), str(v)) for k, v in action]


def encode_action(headers: Iterable[tuple[str, str]]) -> bytes:
    lines = []
    for key, value in headers:
        if "\r" in value or "\n" in value or "\r" in key or "\n" in key:
            raise ValueError(f"AMI header {key!r} contains a line break")
        lines.append(f"{key}: {value}\r\n")
    return ("".join(lines) + "\r\n").encode()


# --------------------------------------------------------------------------------------------
# Errors


class AmiError(Exception):
    """Base of every AMI adapter error."""


class AmiAuthError(AmiError):
    """Asterisk refused the Login (wrong user/secret). Not retried."""


class AmiNotConnected(AmiError):
    """There is no logged-in link; the action was not sent."""


class AmiLinkLost(AmiError):
    """The link dropped after the action was written and before its reply; it was not re-sent."""


class AmiTimeout(AmiError):
    """No reply within the timeout."""


class AmiClosed(AmiError):
    """The client was closed."""


# --------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True, slots=True)
class AmiListResult:
    """A list action's reply: the Response, the item events carrying its ActionID, and the Complete event."""

    response: AmiMessage
    items: tuple[AmiMessage, ...] = ()
    complete: AmiMessage | None = None

    @property
    def ok(self) -> bool:
        return self.response.ok


class OriginateReason(StrEnum):
    """``Reason`` of OriginateResponse (recorded in originate_callback)."""

    FAILED = "0"  # no such extension, unknown technology, device unavailable
    NO_ANSWER = "3"  # rang until Timeout
    ANSWERED = "4"
    BUSY = "5"
    CONGESTION = "8"


@dataclass(frozen=True, slots=True)
class OriginateResult:
    """Outcome of an async Originate: only the **first** leg (OriginateResponse) is reported."""

    action_id: str
    response: AmiMessage
    event: AmiMessage | None

    @property
    def answered(self) -> bool:
        return self.event is not None and self.event.get("Response") == "Success"

    @property
    def reason(self) -> str | None:
        return self.event.get("Reason") if self.event is not None else None

    @property
    def channel(self) -> str | None:
        """The ``;1`` channel on success; on failure Asterisk echoes the dial string."""
        return self.event.get("Channel") if self.event is not None else None

    @property
    def uniqueid(self) -> str | None:
        """``<unknown>`` on failure, as recorded."""
        return self.event.get("Uniqueid") if self.event is not None else None


class LinkState(StrEnum):
    IDLE = "idle"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    BACKING_OFF = "backing_off"
    FAILED = "failed"
    CLOSED = "closed"


EventCallback = Callable[[AmiMessage], Awaitable[None] | None]
ConnectedHook = Callable[["AmiClient"], Awaitable[None] | None]


@dataclass(slots=True)
class _Pending:
    action: str
    future: asyncio.Future[AmiMessage]
    deadline: float
    sent_at: float
    list_items: list[AmiMessage] | None = None
    list_done: asyncio.Future[AmiMessage] | None = None


@dataclass(slots=True)
class _Link:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    parser: AmiParser = field(default_factory=AmiParser)
    pending: dict[str, _Pending] = field(default_factory=dict)
    lost: asyncio.Event = field(default_factory=asyncio.Event)
    reader_task: asyncio.Task[None] | None = None


# --------------------------------------------------------------------------------------------
# Client


class AmiClient:
    """One supervised AMI connection.

    >>> client = AmiClient("127.0.0.1", 5038, "acd", secret_from_config)   # doctest: +SKIP
    >>> client.on("DeviceStateChange", handle)                              # doctest: +SKIP
    >>> await client.start()          # returns once logged in (raises AmiAuthError on a bad secret)
    >>> reply = await client.send({"Action": "Ping"})
    >>> states = await client.send_list({"Action": "DeviceStateList"})
    >>> result = await client.originate({"Channel": "PJSIP/mgr1", "Context": "acd-callback", ...})
    >>> await client.close()
    """

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        secret: str,
        *,
        on_connected: ConnectedHook | None = None,
        on_disconnected: Callable[[], None] | None = None,
        action_timeout: float = 10.0,
        connect_timeout: float = 5.0,
        login_timeout: float = 5.0,
        ping_interval: float = 10.0,
        ping_timeout: float = 10.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        backoff_factor: float = 2.0,
        action_id_prefix: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.username = username
        self._secret = secret
        self.on_connected = on_connected
        self.on_disconnected = on_disconnected
        self.action_timeout = action_timeout
        self.connect_timeout = connect_timeout
        self.login_timeout = login_timeout
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.backoff_factor = backoff_factor
        self._prefix = action_id_prefix or f"acd-{uuid.uuid4().hex[:8]}"
        self._ids = itertools.count(1)
        self._subscribers: dict[str, list[EventCallback]] = {}
        self._originate_waiters: dict[str, Callable[[AmiMessage], None]] = {}
        self._events: asyncio.Queue[AmiMessage] = asyncio.Queue()
        self._link: _Link | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._dispatcher: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._first_result: asyncio.Future[None] | None = None
        self._state = LinkState.IDLE
        self._state_event = asyncio.Event()
        self.banner: str | None = None
        #: Delays actually slept between reconnect attempts (observable back-off).
        self.backoff_history: list[float] = []
        #: How many times a Login succeeded (1 after start, +1 per reconnect).
        self.connections = 0
        self.last_error: BaseException | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self, *, wait: bool = True) -> None:
        """Start the supervisor; with ``wait`` return after the first Login (or raise its error)."""
        if self._supervisor is not None:
            raise RuntimeError("AmiClient.start() called twice")
        loop = asyncio.get_running_loop()
        self._first_result = loop.create_future()
        self._dispatcher = asyncio.create_task(self._dispatch_events(), name="ami-events")
        self._supervisor = asyncio.create_task(self._supervise(), name="ami-supervisor")
        if wait:
            await asyncio.shield(self._first_result)

    async def wait_connected(self, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Wait until a logged-in link exists (raises AmiAuthError/AmiClosed if it never will)."""

        async def _wait() -> None:
            while not self._connected.is_set():
                if self.state is LinkState.FAILED and self.last_error is not None:
                    raise self.last_error
                if self.state is LinkState.CLOSED:
                    raise AmiClosed("client closed")
                waiter = asyncio.ensure_future(self._connected.wait())
                stopper = asyncio.ensure_future(self._wait_terminal())
                try:
                    await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    waiter.cancel()
                    stopper.cancel()

        async with asyncio.timeout(timeout):
            await _wait()

    async def _wait_terminal(self) -> None:
        if self._supervisor is not None:
            with contextlib.suppress(BaseException):
                await asyncio.shield(self._supervisor)

    @property
    def state(self) -> LinkState:
        return self._state

    def _set_state(self, state: LinkState) -> None:
        self._state = state
        event, self._state_event = self._state_event, asyncio.Event()
        event.set()

    async def state_changed(self) -> LinkState:
        """Wait for the next state change and return the new state (for supervisors and tests)."""
        await self._state_event.wait()
        return self._state

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def close(self, *, logoff: bool = True) -> None:
        """Stop for good: no reconnect is scheduled afterwards (unlike panoramisk 1.4)."""
        if self.state is LinkState.CLOSED:
            return
        link = self._link
        if logoff and link is not None and self._connected.is_set():
            with contextlib.suppress(AmiError, OSError, asyncio.TimeoutError):
                await self.send({"Action": "Logoff"}, timeout=1.0)
        self._set_state(LinkState.CLOSED)
        self._connected.clear()
        for task in (self._supervisor, self._dispatcher):
            if task is not None:
                task.cancel()
        for task in (self._supervisor, self._dispatcher):
            if task is not None:
                with contextlib.suppress(BaseException):
                    await task
        if self._link is not None:
            self._drop(self._link, AmiClosed("client closed"))
        if self._first_result is not None and not self._first_result.done():
            self._first_result.set_exception(AmiClosed("client closed"))
            self._first_result.exception()  # mark retrieved

    # -- events ------------------------------------------------------------------------------

    def on(self, event: str, callback: EventCallback) -> None:
        """Call ``callback(message)`` for each asynchronous event named ``event`` (``"*"``: all).

        List-reply items (same name as async events but carrying our ActionID) are *not* delivered
        here; they belong to the ``send_list`` that asked for them.
        """
        self._subscribers.setdefault(event, []).append(callback)

    def off(self, event: str, callback: EventCallback) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._subscribers[event].remove(callback)

    async def _dispatch_events(self) -> None:
        while True:
            message = await self._events.get()
            for callback in [*self._subscribers.get(message.name, ()), *self._subscribers.get("*", ())]:
                try:
                    result = callback(message)
                    if inspect.isawaitable(result):
                        await result
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("AMI event callback %r failed on %s", callback, message.name)

    # -- actions -----------------------------------------------------------------------------

    def next_action_id(self) -> str:
        return f"{self._prefix}-{next(self._ids)}"

    async def send(self, action: Action, *, timeout: float | None = None) -> AmiMessage:  # noqa: ASYNC109
        """Write one action and return its Response (``Error`` is a value, check ``.ok``).

        Raises AmiNotConnected (nothing sent), AmiLinkLost (sent, link dropped: not re-sent),
        AmiTimeout. Never retries.
        """
        pending, _ = self._write(action, timeout, as_list=False)
        return await self._await_pending(pending)

    async def send_list(self, action: Action, *, timeout: float | None = None) -> AmiListResult:  # noqa: ASYNC109
        """Send a list action (DeviceStateList, Status, QueueStatus...) and collect its items.

        If the Response is not ``EventList: start`` (an Error, or an action that is not a list)
        the result has no items. The timeout covers the whole exchange.
        """
        pending, action_id = self._write(action, timeout, as_list=True)
        response = await self._await_pending(pending)
        link = self._link
        if (response.get("EventList") or "").lower() != "start":
            if link is not None:
                link.pending.pop(action_id, None)
            return AmiListResult(response)
        assert pending.list_done is not None and pending.list_items is not None
        remaining = max(0.0, pending.deadline - time.monotonic())
        try:
            async with asyncio.timeout(remaining):
                complete = await asyncio.shield(pending.list_done)
        except TimeoutError:
            if link is not None:
                link.pending.pop(action_id, None)
            raise AmiTimeout(f"{pending.action}: list not complete after {len(pending.list_items)} items") from None
        return AmiListResult(response, tuple(pending.list_items), complete)

    async def originate(
        self,
        action: Action,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the wait for OriginateResponse, not one round trip
    ) -> OriginateResult:
        """Async Originate; return when its OriginateResponse arrives.

        ``Async: true`` is always sent: besides panoramisk's crash on a reply without it, a
        synchronous Originate blocks this whole connection while the phone rings. The wait is the
        Originate ``Timeout`` (ms, default 30 s) plus ``action_timeout``. If the link drops before
        OriginateResponse, AmiLinkLost is raised and **nothing is re-sent** (the phone may ring).
        """
        headers = [(k, v) for k, v in action_headers(action) if k.lower() not in ("action", "async")]
        if not any(k.lower() == "actionid" for k, _ in headers):
            headers.insert(0, ("ActionID", self.next_action_id()))
        action_id = next(v for k, v in headers if k.lower() == "actionid")
        ring_ms = next((int(v) for k, v in headers if k.lower() == "timeout"), 30000)
        wait = timeout if timeout is not None else ring_ms / 1000 + self.action_timeout
        loop = asyncio.get_running_loop()
        outcome: asyncio.Future[AmiMessage] = loop.create_future()

        def _match(message: AmiMessage) -> None:
            if message.action_id == action_id and not outcome.done():
                outcome.set_result(message)

        self._originate_waiters[action_id] = _match
        try:
            link = self._link
            response = await self.send(
                [("Action", "Originate"), *headers[:1], ("Async", "true"), *headers[1:]], timeout=self.action_timeout
            )
            if not response.ok:
                return OriginateResult(action_id, response, None)
            lost = link.lost if link is not None else asyncio.Event()
            lost_wait: asyncio.Future[object] = asyncio.ensure_future(lost.wait())
            watched: set[asyncio.Future[object]] = {outcome, lost_wait}  # type: ignore[arg-type]
            try:
                await asyncio.wait(watched, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
            finally:
                lost_wait.cancel()
            if outcome.done():
                return OriginateResult(action_id, response, outcome.result())
            if lost.is_set():
                raise AmiLinkLost(f"Originate {action_id}: link lost before OriginateResponse; not re-sent")
            raise AmiTimeout(f"Originate {action_id}: no OriginateResponse within {wait:.1f}s")
        finally:
            self._originate_waiters.pop(action_id, None)

    def _write(self, action: Action, timeout: float | None, *, as_list: bool) -> tuple[_Pending, str]:
        if self.state is LinkState.CLOSED:
            raise AmiClosed("client closed")
        link = self._link
        if link is None or link.lost.is_set() or not self._connected.is_set():
            raise AmiNotConnected("AMI link is down; action not sent")
        return self._write_on(link, action, timeout, as_list=as_list)

    def _write_on(self, link: _Link, action: Action, timeout: float | None, *, as_list: bool) -> tuple[_Pending, str]:
        headers = action_headers(action)
        name = next((v for k, v in headers if k.lower() == "action"), "")
        if not name:
            raise ValueError("an AMI action needs an 'Action' header")
        action_id = next((v for k, v in headers if k.lower() == "actionid"), None)
        if action_id is None:
            action_id = self.next_action_id()
            idx = next(i for i, (k, _) in enumerate(headers) if k.lower() == "action")
            headers.insert(idx + 1, ("ActionID", action_id))
        if action_id in link.pending:
            raise ValueError(f"ActionID {action_id!r} is already in flight")
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        wait = self.action_timeout if timeout is None else timeout
        pending = _Pending(name, loop.create_future(), now + wait, now)
        if as_list:
            pending.list_items = []
            pending.list_done = loop.create_future()
        link.pending[action_id] = pending
        link.writer.write(encode_action(headers))
        return pending, action_id

    async def _await_pending(self, pending: _Pending) -> AmiMessage:
        remaining = max(0.0, pending.deadline - time.monotonic())
        # asyncio.timeout, not wait_for: on Python 3.11 a task cancelled inside wait_for just as
        # the reply arrives returns the reply and loses the cancellation (a shutdown waited
        # for the reconciler that kept going, acd.runtime.cancel_and_wait says more)
        try:
            async with asyncio.timeout(remaining):
                return await asyncio.shield(pending.future)
        except TimeoutError:
            waited = pending.deadline - pending.sent_at
            raise AmiTimeout(f"{pending.action}: no response within {waited:.1f}s") from None

    # -- connection --------------------------------------------------------------------------

    async def _supervise(self) -> None:
        delay = self.backoff_initial
        while True:
            self._set_state(LinkState.CONNECTING)
            try:
                link = await self._connect_and_login()
            except AmiAuthError as exc:
                self._set_state(LinkState.FAILED)
                self.last_error = exc
                log.error("AMI login to %s:%s refused: %s (not retrying)", self.host, self.port, exc)
                self._resolve_first(exc)
                return
            except (TimeoutError, OSError, AmiError, EOFError) as exc:
                self.last_error = exc
                log.warning("AMI connect to %s:%s failed: %r; retry in %.1fs", self.host, self.port, exc, delay)
            else:
                delay = self.backoff_initial
                self.connections += 1
                self._connected.set()
                self._set_state(LinkState.CONNECTED)
                self._resolve_first(None)
                hook = asyncio.create_task(self._run_connected_hook(), name="ami-on-connected")
                pinger = asyncio.create_task(self._ping_loop(link), name="ami-ping")
                try:
                    await link.lost.wait()
                finally:
                    pinger.cancel()
                    hook.cancel()
                self._connected.clear()
                if self.on_disconnected is not None:
                    try:
                        self.on_disconnected()
                    except Exception:
                        log.exception("AMI on_disconnected hook failed")
                log.warning("AMI link to %s:%s lost; reconnecting in %.1fs", self.host, self.port, delay)
            self._set_state(LinkState.BACKING_OFF)
            self.backoff_history.append(delay)
            await asyncio.sleep(delay)  # back-off is the one place where waiting *is* the job
            delay = min(self.backoff_max, delay * self.backoff_factor)

    def _resolve_first(self, exc: BaseException | None) -> None:
        fut = self._first_result
        if fut is None or fut.done():
            return
        if exc is None:
            fut.set_result(None)
        else:
            fut.set_exception(exc)

    async def _connect_and_login(self) -> _Link:
        async with asyncio.timeout(self.connect_timeout):
            reader, writer = await asyncio.open_connection(self.host, self.port)
        link = _Link(reader, writer)
        self._link = link
        reader_task = asyncio.create_task(self._read_loop(link), name="ami-reader")
        link.reader_task = reader_task
        # Asterisk accepts Login before the banner (panoramisk does this; recorded in ami_login_failed).
        pending, _ = self._write_on(
            link,
            [("Action", "Login"), ("Username", self.username), ("Secret", self._secret), ("Events", "on")],
            self.login_timeout,
            as_list=False,
        )
        try:
            response = await self._await_pending(pending)
        except BaseException:
            self._drop(link, AmiLinkLost("login did not complete"))
            raise
        if not response.ok:
            self._drop(link, AmiAuthError(response.message))
            raise AmiAuthError(response.message or "Login refused")
        self.banner = link.parser.banner
        return link

    async def _run_connected_hook(self) -> None:
        if self.on_connected is None:
            return
        try:
            result = self.on_connected(self)
            if inspect.isawaitable(result):
                await result
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("AMI on_connected hook failed")

    async def _read_loop(self, link: _Link) -> None:
        try:
            while True:
                data = await link.reader.read(65536)
                if not data:
                    break
                for message in link.parser.feed(data):
                    self._route(link, message)
        except (OSError, asyncio.IncompleteReadError) as exc:
            log.warning("AMI read failed: %r", exc)
        except asyncio.CancelledError:
            pass
        self._drop(link, AmiLinkLost("AMI connection closed before the reply; the action was not re-sent"))

    def _route(self, link: _Link, message: AmiMessage) -> None:
        action_id = message.action_id
        if message.is_response:
            pending = link.pending.get(action_id or "")
            if pending is None:
                log.debug("AMI response for unknown ActionID %r", action_id)
                return
            if pending.list_items is None:
                link.pending.pop(action_id or "", None)
            if not pending.future.done():
                pending.future.set_result(message)
            return
        if not message.is_event:
            return
        if action_id is not None:
            pending = link.pending.get(action_id)
            if pending is not None and pending.list_items is not None and message.name != "OriginateResponse":
                if (message.get("EventList") or "").lower() == "complete":
                    link.pending.pop(action_id, None)
                    if pending.list_done is not None and not pending.list_done.done():
                        pending.list_done.set_result(message)
                else:
                    pending.list_items.append(message)
                return
            waiter = self._originate_waiters.get(action_id) if message.name == "OriginateResponse" else None
            if waiter is not None:
                waiter(message)
        self._events.put_nowait(message)

    def _drop(self, link: _Link, error: AmiError) -> None:
        if link.lost.is_set():
            return
        link.lost.set()
        # Fail, never re-send: the peer may have executed the action (README: panoramisk re-sends).
        for action_id, pending in list(link.pending.items()):
            for fut in (pending.future, pending.list_done):
                if fut is not None and not fut.done():
                    fut.set_exception(type(error)(f"{pending.action} ({action_id}): {error}"))
                    fut.exception()
        link.pending.clear()
        link.writer.close()
        task = link.reader_task
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def _ping_loop(self, link: _Link) -> None:
        while not link.lost.is_set():
            await asyncio.sleep(self.ping_interval)  # a keep-alive period, not waiting for work
            if link.lost.is_set():
                return
            # Replies come in order and an executing action blocks the connection, so the ping's
            # budget starts after the latest deadline of anything already unanswered.
            older = [p.deadline for p in link.pending.values() if not p.future.done()]
            try:
                pending, _ = self._write_on(link, {"Action": "Ping"}, None, as_list=False)
            except (OSError, RuntimeError) as exc:
                self._drop(link, AmiLinkLost(f"ping write failed: {exc!r}"))
                return
            pending.deadline = max([time.monotonic(), *older]) + self.ping_timeout
            try:
                await self._await_pending(pending)
            except AmiTimeout:
                log.warning("AMI ping unanswered for %.1fs: link declared dead", self.ping_timeout)
                self._drop(link, AmiLinkLost("no reply to keep-alive Ping (half-open link)"))
                return
            except AmiError:
                return

    def abort_link(self) -> None:
        """Drop the current link as if it had died (tests; operator "reconnect now")."""
        if self._link is not None:
            self._drop(self._link, AmiLinkLost("link aborted locally"))


__all__ = [
    "Action",
    "AmiAuthError",
    "AmiClient",
    "AmiClosed",
    "AmiError",
    "AmiLinkLost",
    "AmiListResult",
    "AmiMessage",
    "AmiNotConnected",
    "AmiParser",
    "AmiTimeout",
    "LinkState",
    "OriginateReason",
    "OriginateResult",
    "action_headers",
    "encode_action",
    "parse_message",
]
