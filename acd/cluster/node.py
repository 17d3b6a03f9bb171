"""Adapter: the dispatcher as one of several `acd serve` nodes on one PostgreSQL sees it.

The rest of the server talks to this object exactly as to the single-node `Dispatcher`
(`post`, `submit`, `board`, `subscribe`). What it does depends on the node's role:

* **leader** (holds the advisory lock, acd.cluster.leader): the inherited dispatcher loop
  runs here, restored from the store exactly as after a restart. It also handles the
  followers' events from `cluster_events` in id order, picks up contacts other nodes have
  committed (the `arrived` wake-up, and a poll as the safety net), tells followers after
  every commit (`changed`), and forwards offers and notices for their panels (`effects`).
* **follower**: `board` is a read copy (`Mirror`) reloaded from the store when the leader
  says something changed; `submit` appends the event to the table and waits for the
  leader's outcome (raising the core's error as the leader saw it); `post` appends without
  waiting. A new contact needs no event: its row is committed before the client's 2xx, so
  the leader (this one or the next after a take-over) finds it in the store.

Side effects (callbacks, notifications) run on the leader only, once. Offers, withdrawals and
notices are also forwarded to the followers' `follow` listeners: their panels, and the
telephony of the node whose FastAGI session holds a call, which rings it (acd.telephony).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from prometheus_client import CollectorRegistry, Gauge

from acd.cluster.bus import Bus
from acd.cluster.codec import CodecError, decode_command, decode_event, encode
from acd.cluster.effects import EffectFeed
from acd.cluster.leader import CONNECTION_ERRORS, Leadership, wait_a_while
from acd.cluster.liveness import DEFAULT_GRACE, Absences, NodeLock, NodeWatch
from acd.core import events as ev
from acd.core.errors import CoreError
from acd.core.model import Channel, Contact, ContactStatus, Manager
from acd.core.policy import RoutingPolicy
from acd.core.switchboard import Switchboard
from acd.dispatcher import Dispatcher, Listener, Persistence
from acd.runtime import cancel_and_wait
from acd.storage import StorageError, Store

log = logging.getLogger("acd.cluster")

POLL: Final = 1.0  # seconds: the leader looks at the event table and new contacts at least this often
SUBMIT_TIMEOUT: Final = 15.0  # a follower's request waits this long for a leader (take-over included)
REFRESH_GAP: Final = 0.2  # a follower reloads its read copy at most this often under a stream of changes
ARRIVAL_MARGIN: Final = 120.0  # seconds of clock skew and slow intake transactions tolerated
ARRIVAL_WINDOW: Final = 3600.0  # contacts committed but never announced are looked for this far back
PRUNE_EVERY: Final = 300.0
FLUSH_ON_STOP: Final = 5.0  # seconds a stopping node keeps trying to hand over its last events
PANEL_COMMANDS: Final = (ev.OfferContact, ev.WithdrawOffer, ev.NotifyManager)


@dataclass(frozen=True, slots=True)
class ClusterSettings:
    url: str  # postgresql+asyncpg://...
    node: str  # a name for logs and the event table's `origin`
    schema: str | None = None
    node_grace: float = DEFAULT_GRACE  # seconds a node holding calls may be gone before they are ended


class Mirror(Switchboard):
    """A follower's read-only copy of the routing state: contacts, managers, the queue order."""

    def replace_state(self, contacts: Iterable[Contact], managers: Iterable[Manager]) -> None:
        self.contacts = {c.id: c for c in contacts if c.status.is_open}
        self.managers = {m.id: m for m in managers}
        queues: dict[Channel, list[tuple[float, float, int, str]]] = {ch: [] for ch in Channel}
        for c in self.contacts.values():
            if c.status is ContactStatus.WAITING:
                queues[c.channel].append(self._queue_key(c))
        for q in queues.values():
            q.sort()
        self._queues = queues

    def handle(self, event: ev.Event, now: float) -> list[ev.Command]:
        raise RuntimeError("a follower's read copy does not route; events go to the leader")


class _Notifier:
    """The leader's persistence: make sure the lock is still this node's, commit, then tell
    the followers (coalesced, never blocking). The check narrows the window in which a leader
    cut off from its lock connection could still write to the moment between check and commit;
    a failed check is a `StorageError`, which the dispatcher retries until `lost` stops it."""

    def __init__(self, inner: Persistence, changed: Callable[[], None], holds: Callable[[], Awaitable[bool]]) -> None:
        self._inner = inner
        self._changed = changed
        self._holds = holds
        self.enabled = False

    async def apply(
        self,
        contacts: Sequence[Contact],
        managers: Sequence[Manager],
        decisions: Sequence[ev.Decision],
        transitions: Sequence[ev.Transition],
    ) -> None:
        if not self.enabled:
            raise StorageError("this node does not hold the dispatcher lock")
        try:
            holds = await self._holds()
        except CONNECTION_ERRORS as err:
            raise StorageError(f"cannot check the dispatcher lock: {err}") from err
        if not holds:
            raise StorageError("this node no longer holds the dispatcher lock")
        await self._inner.apply(contacts, managers, decisions, transitions)
        self._changed()


class ClusterDispatcher(Dispatcher):
    def __init__(
        self,
        board: Callable[[RoutingPolicy], Switchboard],
        store: Store,
        persistence: Persistence,
        settings: ClusterSettings,
        policy: RoutingPolicy,
        reload_policy: Callable[[], RoutingPolicy],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._notifier = _Notifier(persistence, self._changed, self._holds_lock)
        super().__init__(Mirror(policy), self._notifier, clock, source=store)
        self._make_board = board
        self._store = store
        self._reload_policy = reload_policy
        self.settings = settings
        self.bus = Bus(settings.url, settings.schema, settings.node)
        self.leadership = Leadership(settings.url, settings.schema, self._take_over, self._lose)
        self.leading = False
        self.elected = asyncio.Event()  # set once this node dispatches
        self.lost = asyncio.Event()  # set when this node lost the lock: the process must exit
        self._panel_listeners: list[Listener] = []
        self._outbox: list[dict[str, Any]] = []
        self._outbox_ready = asyncio.Event()
        self._waiting: dict[int, asyncio.Future[dict[str, Any] | None]] = {}
        self._wake = asyncio.Event()  # leader: events or contacts to look at
        self._refresh_wanted = asyncio.Event()  # follower: the store changed
        self._changed_pending = False
        self._published: asyncio.Queue[tuple[str, str]] = asyncio.Queue()  # in order: an offer before its withdrawal
        # follower: the leader's effects, none missed (an offer read back after it ran out is dropped)
        self.effects = EffectFeed(self.bus.effects_after, self._on_effect, self._expired_offer)
        self._seen: dict[str, float] = {}  # leader: contact ids the core has had, with their arrival
        self._since = 0.0
        self._scanned = 0.0
        self._announced: set[str] = set()  # leader: contact ids other nodes said they committed
        self._tasks: list[asyncio.Task[None]] = []
        self._leader_tasks: list[asyncio.Task[None]] = []
        self.node_lock: NodeLock | None = None  # while this node holds calls (`hold_calls`)
        self.absences = Absences(settings.node_grace)  # leader: the nodes holding calls that are missing
        #: leader: `(node, calls)` for the calls of a node that is gone, as they are ended
        self.calls_ended: list[Callable[[str, list[Contact]], None]] = []
        self.subscribe(self._forward)

    # ---- lifecycle --------------------------------------------------------------------

    async def start(self, contacts: Iterable[Contact], managers: Iterable[Manager]) -> None:
        """Start as a follower with a read copy of `contacts`/`managers`, and stand in line
        for the dispatcher lock."""
        assert isinstance(self.board, Mirror)
        self.board.replace_state(contacts, managers)
        self.bus.handlers = {
            "events": lambda _p: self._wake.set(),
            "arrived": self._on_arrived,
            "done": self._on_done,
            "changed": lambda _p: self._refresh_wanted.set(),
            "effects": self._heard_effect,
        }
        self.bus.on_reconnect = self._caught_up
        self.bus.on_lost = self.effects.lost
        await self.bus.open()
        self.effects.start_at(await self.bus.last_effect())
        self._tasks = [
            asyncio.create_task(self._send_outbox(), name="acd-cluster-outbox"),
            asyncio.create_task(self._refresh_loop(), name="acd-cluster-refresh"),
            asyncio.create_task(self._publish(), name="acd-cluster-publish"),
        ]
        self.leadership.start()

    async def stop(self) -> None:
        """A leader finishes what is queued, then gives the lock up so another node takes
        over at once; a follower just leaves."""
        if self.leading:
            await self._stop_leader_tasks()
            await super().stop()
            self.leading = False
        await self.leadership.release()
        try:
            async with asyncio.timeout(FLUSH_ON_STOP):
                await self._flush_outbox()
        except TimeoutError:
            log.warning("cluster: %d event(s) not handed over at shutdown (the database is away)", len(self._outbox))
        for task in self._tasks:
            await cancel_and_wait(task)
        await self.effects.close()
        if self.node_lock is not None:
            await self.node_lock.close()
        await self.bus.close()

    def export_metrics(self, registry: CollectorRegistry) -> None:
        """`acd_cluster_dispatching` (1 on the node that dispatches),
        `acd_cluster_events_waiting` (this follower's events not yet handed over) and
        `acd_cluster_nodes_missing` (on the dispatching node: nodes holding calls not seen alive)."""
        Gauge("acd_cluster_dispatching", "1 when this node holds the dispatcher lock", registry=registry).set_function(
            lambda: 1.0 if self.leading else 0.0
        )
        Gauge(
            "acd_cluster_events_waiting", "Events this node has not yet handed to the dispatcher", registry=registry
        ).set_function(lambda: float(len(self._outbox)))
        Gauge(
            "acd_cluster_nodes_missing",
            "Nodes holding calls whose liveness lock is missing (their calls end after the grace period)",
            registry=registry,
        ).set_function(lambda: float(len(self.absences.since)) if self.leading else 0.0)

    def hold_calls(self, name: str) -> None:
        """This node's FastAGI sessions hold calls under `name` (acd.telephony): keep the lock
        that tells the dispatching node this node is alive (acd.cluster.liveness)."""
        if self.node_lock is None:
            self.node_lock = NodeLock(self.settings.url, self.settings.schema, name)
            self.node_lock.start()

    def follow(self, listener: Listener) -> None:
        """`listener`, already subscribed, also hears the panels' commands (offers,
        withdrawals, notices) from the leader's notifications while this node follows
        (the panels' WebSocket hub, and the telephony that rings the calls held here)."""
        self._panel_listeners.append(listener)

    # ---- feeding events ---------------------------------------------------------------

    def post(self, event: ev.Event) -> None:
        if self.leading:
            self._note_arrival(event)
            super().post(event)
        elif isinstance(event, ev.ContactArrived):
            self._announce(event.contact)
        else:
            self._outbox.append(encode(event))
            self._outbox_ready.set()

    async def submit(self, event: ev.Event) -> list[ev.Command]:
        if self.leading:
            self._note_arrival(event)
            return await super().submit(event)
        if isinstance(event, ev.ContactArrived):
            self._announce(event.contact)
            return []
        outcome = await self._call(encode(event))
        if outcome is not None and outcome.get("code") == "internal":
            raise RuntimeError(f"the dispatching node failed on this request: {outcome.get('message', '')}")
        if outcome is not None:
            raise CoreError(str(outcome.get("code", "refused")), str(outcome.get("message", "")))
        if isinstance(event, ev.PolicyReloaded):
            self.board.policy = event.policy
        await self._refresh()  # the caller reads the state it just changed
        return []

    @property
    def backlog(self) -> int:
        return super().backlog if self.leading else len(self._outbox)

    # ---- follower ---------------------------------------------------------------------

    def _announce(self, contact: Contact) -> None:
        # the row is committed already; this only spares the leader a poll's delay
        self._published.put_nowait(("arrived", contact.id))

    async def _publish(self) -> None:
        while True:
            kind, payload = await self._published.get()
            if kind == "changed":
                self._changed_pending = False
            try:
                if kind == "effects":
                    await self.bus.publish_effect(payload)
                else:
                    await self.bus.notify(kind, payload)
            except CONNECTION_ERRORS as err:
                log.warning("cluster: %s notification failed (%s); the poll will catch up", kind, err)

    async def _call(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """Append one event and wait for the leader's outcome: None when it was handled,
        `{code, message}` when the core refused it. No leader in time: `StorageError`."""
        deadline = asyncio.get_running_loop().time() + SUBMIT_TIMEOUT
        try:
            (event_id,) = await self.bus.append([body])
        except CONNECTION_ERRORS as err:
            raise StorageError(f"cannot hand the event to the dispatcher: {err}") from err
        answer = asyncio.get_running_loop().create_future()
        self._waiting[event_id] = answer
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(POLL):
                        return await asyncio.shield(answer)
                with contextlib.suppress(*CONNECTION_ERRORS):
                    handled, outcome = await self.bus.outcome(event_id)  # in case the notification was lost
                    if handled:
                        return outcome
                if asyncio.get_running_loop().time() > deadline:
                    raise StorageError("no dispatcher answered in time (a take-over may be under way)")
        finally:
            self._waiting.pop(event_id, None)

    def _on_done(self, payload: str) -> None:
        for event_id, outcome in json.loads(payload):
            answer = self._waiting.get(int(event_id))
            if answer is not None and not answer.done():
                answer.set_result(outcome)

    def _heard_effect(self, payload: str) -> None:
        if not self.leading:  # the leader's own listeners heard it from its loop
            self.effects.heard(payload)

    def _expired_offer(self, body: dict[str, Any]) -> bool:
        expires = body.get("expires_at") if body.get("type") == "OfferContact" else None
        return isinstance(expires, int | float) and expires <= self.clock()

    def _on_effect(self, body: dict[str, Any]) -> None:
        if self.leading:
            return
        try:
            cmd = decode_command(body)
        except (CodecError, ValueError, TypeError):
            log.exception("cluster: an effect from the leader could not be read")
            return
        for listener in self._panel_listeners:
            try:
                listener(cmd)
            except Exception:
                log.exception("listener failed on %s", type(cmd).__name__)

    async def _send_outbox(self) -> None:
        while True:
            await self._outbox_ready.wait()
            self._outbox_ready.clear()
            await self._flush_outbox()

    async def _flush_outbox(self) -> None:
        delay = 0.05
        while self._outbox:
            batch = self._outbox[:256]
            try:
                await self.bus.append(batch)
            except CONNECTION_ERRORS as err:
                log.warning("cluster: cannot append events (%s); retrying in %.2f s", err, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            del self._outbox[: len(batch)]

    async def _refresh_loop(self) -> None:
        while True:
            await self._refresh_wanted.wait()
            self._refresh_wanted.clear()
            if not self.leading:
                try:
                    await self._refresh()
                except StorageError as err:
                    log.warning("cluster: cannot refresh the read copy (%s)", err)
                    self._refresh_wanted.set()
                except Exception:
                    log.exception("cluster: refreshing the read copy failed")
                    self._refresh_wanted.set()
            await asyncio.sleep(REFRESH_GAP)  # a rate limit: changes in between are coalesced

    async def _refresh(self) -> None:
        contacts = await self._store.load_open_contacts()
        managers = await self._store.load_managers()
        if not self.leading and isinstance(self.board, Mirror):
            self.board.replace_state(contacts, managers)
            self.processed += 1  # the panels' tick looks at this to know something changed

    def _caught_up(self) -> None:
        self._refresh_wanted.set()
        self._wake.set()
        self.effects.back()

    # ---- leader -----------------------------------------------------------------------

    async def _take_over(self) -> None:
        """Dispatch from now on: rebuild the core from the store as after a restart."""
        started = time.perf_counter()
        policy = self.board.policy
        contacts = await self._store.load_open_contacts()
        managers = await self._store.load_managers()
        self.board = self._make_board(policy)
        self._since = self.clock()
        self._seen = {c.id: c.arrived_at for c in contacts}
        self._notifier.enabled = True
        self.leading = True  # from here events queue up for the loop `start` is about to run
        await super().start(contacts, managers)
        self._leader_tasks = [
            asyncio.create_task(self._lead(), name="acd-cluster-lead"),
            asyncio.create_task(self._watch_nodes(), name="acd-cluster-watch-nodes"),
        ]
        self._wake.set()
        self._changed()
        self.elected.set()
        log.warning(
            "cluster: node %s dispatches now (%d open contacts restored in %.3f s)",
            self.settings.node,
            len(contacts),
            time.perf_counter() - started,
        )

    def _lose(self) -> None:
        """The lock connection failed: stop dispatching at once, without a last commit."""
        self.leading = False
        self._notifier.enabled = False
        for task in self._leader_tasks:
            task.cancel()
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self._timers.clear()
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item is not None and item.reply is not None and not item.reply.done():
                item.reply.set_exception(StorageError("this node lost the dispatcher lock"))
        self.lost.set()

    async def _stop_leader_tasks(self) -> None:
        for task in self._leader_tasks:
            await cancel_and_wait(task)
        self._leader_tasks = []

    async def _holds_lock(self) -> bool:
        fence = self.leadership.fence()
        return fence is not None and await self.bus.still_holds(fence)

    def _note_arrival(self, event: ev.Event) -> None:
        if isinstance(event, ev.ContactArrived):
            self._seen[event.contact.id] = event.contact.arrived_at

    async def _lead(self) -> None:
        pruned = self.clock()
        while True:
            await wait_a_while(self._wake, POLL)
            self._wake.clear()
            try:
                await self._pick_up_arrivals()
                await self._handle_events()
                if self.clock() - pruned > PRUNE_EVERY:
                    pruned = self.clock()
                    await self.bus.forget_handled()
                    self._forget_seen()
            except (*CONNECTION_ERRORS, StorageError) as err:
                log.warning("cluster: reading other nodes' work failed (%s); retrying", err)
            except Exception:  # this loop is the followers' only way in: it must outlive a bug
                log.exception("cluster: handling other nodes' work failed; retrying")

    async def _watch_nodes(self) -> None:
        watch = NodeWatch(
            self.absences,
            self.settings.schema,
            lambda: list(self.board.contacts.values()),
            self.bus.held_locks,
            self._post_here,
            self.clock,
            self._calls_ended,
        )
        await watch.run()

    def _post_here(self, event: ev.Event) -> None:
        super().post(event)

    def _calls_ended(self, node: str, calls: list[Contact]) -> None:
        for listener in self.calls_ended:
            listener(node, calls)

    def _on_arrived(self, contact_id: str) -> None:
        if self.leading:
            self._announced.add(contact_id)
            self._wake.set()

    async def _pick_up_arrivals(self) -> None:
        """Contacts another node committed that this dispatcher has not had yet, oldest first.
        Ids this dispatcher ever had are remembered, so a contact it has already finished is
        never brought back from a row read before that finish was committed."""
        announced, self._announced = self._announced, set()
        found = await asyncio.gather(*(self._store.get_contact(cid) for cid in announced - self._seen.keys()))
        fresh = [c for c in found if c is not None]
        if self.clock() - self._scanned >= POLL:  # the safety net: announcements can be lost
            self._scanned = self.clock()
            since = max(self._since - ARRIVAL_MARGIN, self.clock() - ARRIVAL_WINDOW)
            fresh += await self._store.list_contacts("waiting", since=since, limit=5000)
        for contact in sorted(fresh, key=lambda c: c.seq):
            if contact.status is not ContactStatus.WAITING:
                continue
            if contact.id not in self._seen:
                self._seen[contact.id] = contact.arrived_at
                super().post(ev.ContactArrived(contact))

    def _forget_seen(self) -> None:
        horizon = self.clock() - ARRIVAL_WINDOW - ARRIVAL_MARGIN
        self._seen = {cid: at for cid, at in self._seen.items() if at >= horizon or cid in self.board.contacts}

    async def _handle_events(self) -> None:
        while rows := await self.bus.pending():
            outcomes = await asyncio.gather(*(self._handle_one(body) for _, body in rows))
            await self.bus.handled([(event_id, outcome) for (event_id, _), outcome in zip(rows, outcomes, strict=True)])

    async def _handle_one(self, body: dict[str, Any]) -> dict[str, Any] | None:
        try:
            event = decode_event(body, self._reload_policy)
            await self._arrived_first(event)
            await super().submit(event)
        except CoreError as err:
            return {"code": err.code, "message": str(err)[:500]}
        except (CodecError, ValueError, TypeError, KeyError) as err:
            log.error("cluster: an event from another node could not be read: %s", err)
            return {"code": "bad_event", "message": str(err)[:500]}
        except Exception as err:
            return {"code": "internal", "message": str(err)[:500]}
        return None

    async def _arrived_first(self, event: ev.Event) -> None:
        """A contact another node committed arrives here before an event about it: its
        announcement travels apart from the events (a caller who hangs up at once can
        overtake it), and the core would refuse the event for a contact it never had."""
        contact_id = getattr(event, "contact_id", None)
        if not isinstance(contact_id, str) or contact_id in self.board.contacts or contact_id in self._seen:
            return
        contact = await self._store.get_contact(contact_id)
        if contact is None or contact.status is not ContactStatus.WAITING or contact_id in self._seen:
            return
        self._seen[contact_id] = contact.arrived_at
        super().post(ev.ContactArrived(contact))

    def _committed(self) -> None:
        if self.leading:
            self._changed()

    def _changed(self) -> None:
        if self._changed_pending:
            return
        self._changed_pending = True
        self._published.put_nowait(("changed", ""))

    def _forward(self, cmd: ev.Command) -> None:
        if self.leading and isinstance(cmd, PANEL_COMMANDS):
            self._published.put_nowait(("effects", json.dumps(encode(cmd), ensure_ascii=False)))
