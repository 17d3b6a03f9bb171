"""Dispatcher: the one asyncio task that owns routing (single writer, no locks).

    event → Switchboard.handle → store.apply (one transaction) → side effects

Events queue up from the API, telephony and timers; the task takes every event waiting,
runs each through the core, commits the whole batch's changes in one transaction (group
commit), and only then starts timers and tells the adapters (offers, withdrawals). A
request that needs an answer (accept, presence) awaits a future resolved after the commit.
A batch the store refuses (not an outage) is dropped: its callers get the error, its side
effects never happen, and the core takes the store's state again (`Switchboard.resync`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, cast

from acd.core import events as ev
from acd.core.errors import CoreError
from acd.core.model import Contact, Manager
from acd.core.switchboard import Switchboard
from acd.deadlines import Deadlines
from acd.storage.store import Conflict, Refused, StorageError

log = logging.getLogger("acd.dispatcher")

Listener = Callable[[ev.Command], None]
MAX_BATCH = 256
RESYNC_ATTEMPTS = 3  # a resync whose own commit is refused reads the store again, so often


class Persistence(Protocol):
    async def apply(
        self,
        contacts: Sequence[Contact],
        managers: Sequence[Manager],
        decisions: Sequence[ev.Decision],
        transitions: Sequence[ev.Transition],
    ) -> None: ...


class StateSource(Protocol):
    """Where the routing state is read back from after a dropped batch (the store)."""

    async def load_open_contacts(self) -> list[Contact]: ...

    async def load_managers(self) -> list[Manager]: ...


@dataclass(slots=True)
class _Item:
    event: ev.Event
    reply: asyncio.Future[list[ev.Command]] | None = None


@dataclass(slots=True)
class _Arrivals:
    """Contacts posted as arrived one after another, routed in one pass of the core
    (Switchboard.handle_arrivals): a burst of web leads costs one routing pass, not one
    each. Nobody waits for their outcome."""

    contacts: list[Contact]


def _arrivals_together(items: list[_Item]) -> list[_Item | _Arrivals]:
    """`items` in order, each run of posted arrivals of two or more as one."""
    out: list[_Item | _Arrivals] = []
    run: list[Contact] = []

    def close_run() -> None:
        if len(run) == 1:
            out.append(_Item(ev.ContactArrived(run[0])))
        elif run:
            out.append(_Arrivals(list(run)))
        run.clear()

    for item in items:
        if isinstance(item.event, ev.ContactArrived) and item.reply is None:
            run.append(item.event.contact)
        else:
            close_run()
            out.append(item)
    close_run()
    return out


@dataclass(slots=True)
class _Batch:
    contacts: dict[str, Contact] = field(default_factory=dict)
    managers: dict[str, Manager] = field(default_factory=dict)
    decisions: list[ev.Decision] = field(default_factory=list)
    transitions: list[ev.Transition] = field(default_factory=list)
    effects: list[ev.Command] = field(default_factory=list)

    def add(self, commands: list[ev.Command]) -> None:
        for cmd in commands:
            match cmd:
                case ev.SaveContact(c):
                    self.contacts[c.id] = c
                case ev.SaveManager(m):
                    self.managers[m.id] = m
                case ev.LogDecision(d):
                    self.decisions.append(d)
                case ev.LogTransition(t):
                    self.transitions.append(t)
                case _:
                    self.effects.append(cmd)


class Dispatcher:
    def __init__(
        self,
        board: Switchboard,
        store: Persistence,
        clock: Callable[[], float] = time.time,
        source: StateSource | None = None,
    ) -> None:
        """`source` is read after a dropped batch; by default `store`, if it can be read
        (the store's wrappers pass reads through). Without one a dropped batch leaves the
        core ahead of the store until the next start, as it always did."""
        self.board = board
        self.store = store
        self.clock = clock
        self.source = source if source is not None else _readable(store)
        self._queue: asyncio.Queue[_Item | None] = asyncio.Queue()
        self._timers: Deadlines[tuple[str, str]] = Deadlines(self._fire, clock)
        self._listeners: list[Listener] = []
        self._manager_watchers: list[Callable[[list[Manager]], None]] = []
        self._task: asyncio.Task[None] | None = None
        self.processed = 0

    # ---- lifecycle ---------------------------------------------------------------

    async def start(self, contacts: Iterable[Contact], managers: Iterable[Manager]) -> None:
        """Rebuild the core from the store, persist what recovery changed, start the loop."""
        batch = _Batch()
        batch.add(self.board.restore(contacts, managers, self.clock()))
        await self._commit(batch)  # at start-up a failure is fatal: better not to serve at all
        self._effects(batch.effects)
        self._task = asyncio.create_task(self._run(), name="acd-dispatcher")

    async def stop(self) -> None:
        """Finish what is queued, then stop. Timers are dropped: they are rebuilt from the
        store at the next start."""
        if self._task is None:
            return
        await self._queue.put(None)
        await self._task
        self._task = None
        self._timers.clear()

    def subscribe(self, listener: Listener) -> None:
        """`listener(command)` is called for every side effect after its commit; it must
        not block (schedule a task for I/O) and must not raise."""
        self._listeners.append(listener)

    def watch_managers(self, watcher: Callable[[list[Manager]], None]) -> None:
        """`watcher(managers)` is called with the managers each committed batch saved (a
        profile, presence or load changed); like a listener, it must not block or raise."""
        self._manager_watchers.append(watcher)

    # ---- feeding events ----------------------------------------------------------

    def post(self, event: ev.Event) -> None:
        """Queue an event; nobody waits for its outcome."""
        self._queue.put_nowait(_Item(event))

    async def submit(self, event: ev.Event) -> list[ev.Command]:
        """Queue an event and wait until it has been handled and committed. Raises the
        core's `CoreError` if the core refused it."""
        reply: asyncio.Future[list[ev.Command]] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Item(event, reply))
        return await reply

    @property
    def backlog(self) -> int:
        return self._queue.qsize()

    # ---- the loop ----------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            first = await self._queue.get()
            items = [first]
            while len(items) < MAX_BATCH and not self._queue.empty():
                items.append(self._queue.get_nowait())
            stop = None in items
            try:
                await self._process([i for i in items if i is not None])
            except Exception:  # the loop is the only writer: it must outlive any one bad batch
                log.critical("dispatcher batch failed", exc_info=True)
                for item in items:
                    if item is not None and item.reply is not None and not item.reply.done():
                        item.reply.set_exception(RuntimeError("internal error while routing"))
            if stop:
                return

    async def _process(self, items: list[_Item]) -> None:
        batch = _Batch()
        outcomes: list[tuple[_Item, list[ev.Command] | BaseException]] = []
        for item in _arrivals_together(items):
            if isinstance(item, _Arrivals):
                try:
                    batch.add(self.board.handle_arrivals(item.contacts, self.clock()))
                    self.processed += len(item.contacts)
                except Exception:  # a bug in the core must not kill routing for everyone
                    log.exception("core failed on the arrival of %d contacts", len(item.contacts))
                continue
            try:
                out = self.board.handle(item.event, self.clock())
            except CoreError as err:
                outcomes.append((item, err))
                continue
            except Exception as err:  # a bug in the core must not kill routing for everyone
                log.exception("core failed on %r", item.event)
                outcomes.append((item, err))
                continue
            batch.add(out)
            outcomes.append((item, out))
            self.processed += 1
        failure = await self._commit_until_done(batch)
        effects = batch.effects
        if failure is None:
            self._committed()
            for watch in self._manager_watchers if batch.managers else ():
                try:
                    watch(list(batch.managers.values()))
                except Exception:
                    log.exception("manager watcher failed")
        elif self.source is not None:
            effects = await self._resync(batch.effects)
        for item, outcome in outcomes:
            if failure is not None and not isinstance(outcome, BaseException):
                outcome = failure
            if item.reply is None or item.reply.done():
                continue
            if isinstance(outcome, BaseException):
                item.reply.set_exception(outcome)
            else:
                item.reply.set_result(outcome)
        self._effects(effects)

    def _committed(self) -> None:
        """A batch of events is handled and what it changed is committed (a hook for the
        cluster's leader, whose followers' read copies must learn of it even when nothing
        was written: a contact another node stored has joined the queue)."""

    async def _commit_until_done(self, batch: _Batch) -> BaseException | None:
        """The core has moved on, so the store must follow: retry with back-off while the
        database is away (events queue up meanwhile and nobody is acknowledged). A write the
        store refuses for any other reason is a bug, not an outage: retrying would stop all
        routing behind one bad batch, so it is logged and given up, and returned."""
        delay = 0.05
        while True:
            try:
                await self._commit(batch)
                return None
            except StorageError as err:
                if isinstance(err, (Conflict, Refused)):
                    log.critical("commit refused, batch dropped: %s", err)
                    return err
                log.warning("database unavailable (%s); retrying in %.2f s", err, delay)
            except Exception as err:
                log.critical("commit failed on bad data, batch dropped", exc_info=True)
                return err
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _resync(self, dropped: list[ev.Command]) -> list[ev.Command]:
        """After a dropped batch: give the core the store's state again (the batch's changes
        were made there, not here) and commit what routing then decides; the side effects to
        run. The dropped batch's (`dropped`) are not among them: what it offered, withdrew or
        armed never happened. The core re-arms every timer the stored state needs, so ours
        are dropped."""
        batch = _Batch()
        for _ in range(RESYNC_ATTEMPTS):
            try:
                contacts, managers = await self._read_until_done()
            except Exception:
                # the core stays where the batch left it: its effects at least keep it moving
                log.critical("cannot read the routing state back: it differs from the store", exc_info=True)
                return dropped
            batch = _Batch()
            batch.add(self.board.resync(contacts, managers, self.clock()))
            if await self._commit_until_done(batch) is None:
                log.warning("routing state read back from the store: %d open contacts", len(contacts))
                self._committed()
                self._timers.clear()
                return batch.effects
        log.critical("routing state read back, but its own commit was refused: it differs from the store")
        self._timers.clear()  # the timers at least: each looks at the state again when it fires
        return [cmd for cmd in batch.effects if isinstance(cmd, ev.StartTimer | ev.CancelTimer)]

    async def _read_until_done(self) -> tuple[list[Contact], list[Manager]]:
        """The store's open contacts and managers, waiting out an outage like a commit."""
        assert self.source is not None
        delay = 0.05
        while True:
            try:
                return await self.source.load_open_contacts(), await self.source.load_managers()
            except StorageError as err:
                log.warning("database unavailable (%s); retrying in %.2f s", err, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _commit(self, batch: _Batch) -> None:
        if batch.contacts or batch.managers or batch.decisions or batch.transitions:
            await self.store.apply(
                list(batch.contacts.values()), list(batch.managers.values()), batch.decisions, batch.transitions
            )

    def _effects(self, effects: list[ev.Command]) -> None:
        for cmd in effects:
            match cmd:
                case ev.StartTimer(key, at):
                    self._timers.set(key, at)
                case ev.CancelTimer(key):
                    self._timers.cancel(key)
                case _:
                    _log_effect(cmd)
                    for listener in self._listeners:
                        try:
                            listener(cmd)
                        except Exception:
                            log.exception("listener failed on %s", type(cmd).__name__)

    def _fire(self, key: tuple[str, str]) -> None:
        self.post(ev.TimerFired(key))


def _readable(store: Persistence) -> StateSource | None:
    if hasattr(store, "load_open_contacts") and hasattr(store, "load_managers"):
        return cast(StateSource, store)
    return None


def _log_effect(cmd: ev.Command) -> None:
    match cmd:
        case ev.OfferContact(contact=c, manager=m, decision=d):
            log.info("offer: %s", d.summary, extra={"contact_id": c.id, "manager_id": m.id, "event": "offer"})
        case ev.WithdrawOffer(contact_id=cid, manager_id=mid, reason=reason):
            log.info("offer withdrawn: %s", reason, extra={"contact_id": cid, "manager_id": mid, "event": "withdraw"})
        case ev.NotifyManager(manager_id=mid, kind=kind, text=text):
            log.info("%s: %s", kind, text, extra={"manager_id": mid, "event": kind})
