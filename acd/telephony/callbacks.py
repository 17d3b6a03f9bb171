"""Adapter: callback requests ⇄ core — stored, scheduled, routed like any contact, dialled by AMI.

A request (API, the website widget, a caller pressing a key in the queue, an out-of-hours
caller) is a row in `callbacks` first. When it is due — its scheduled time has come, the
team's hours are open, a retry's back-off is over — its contact enters the routing queue with
the request's **original** enqueue time, so it keeps its place and never passes callers who
waited longer. When the core offers it to a manager:

1. AMI Originate rings the manager's device (`Channel: <Manager.device>`, async, `Timeout` a
   little shorter than the offer), with `Context: acd-callback` — sent once, never re-sent;
2. the manager answers (OriginateResponse Reason 4) → OfferAccepted; the originated channel runs
   `[acd-callback]`, which dials the customer and reports `UserEvent(CallbackResult, DialStatus)`;
   busy / congestion / no such device → OfferFailed (skip, no penalty); no answer → the core's
   offer timeout ("missed offer": the manager is paused, the callback goes to the next one);
3. the customer answered (DialStatus ANSWER, sent when the conversation ends) → done; busy / no
   answer → the attempt is recorded and the request waits `backoff × 2^(n-1)` before its next
   turn, up to `max_attempts`.

Every attempt and its AMI outcome is a row in `callback_attempts`. One contact is offered to
one manager at a time (the core's rule) and an attempt in flight is never started twice, so a
customer is never dialled twice at once. After a restart the open requests are re-armed; an
attempt that was in flight counts as failed with an unknown outcome and is retried.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, replace
from typing import Any

from acd.asterisk.ami import AmiClient, AmiError, AmiLinkLost, AmiNotConnected, OriginateReason
from acd.core import events as ev
from acd.core.errors import CoreError
from acd.core.intake import qualify
from acd.core.model import Channel, Contact, ContactStatus, Manager
from acd.dispatcher import Dispatcher
from acd.storage import Store
from acd.storage.telephony import Attempt, CallbackRow, TelephonyStore
from acd.telephony.queue_log import QueueLog

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CallbackSettings:
    max_attempts: int = 3  # customer dialling attempts before giving up
    backoff: float = 120.0  # seconds before the 2nd attempt; doubles after each failure
    manager_ring: float = 20.0
    ring_margin: float = 0.5
    customer_ring: float = 30.0
    outbound_dial: str = "Local/{number}@acd-outbound"  # how the dialplan reaches a customer
    caller_id: str = '"Callback" <{number}>'  # shown on the manager's phone


@dataclass(slots=True)
class _InFlight:
    attempt: Attempt
    contact_id: str
    channel_id: str
    connected: bool = False


class Callbacks:
    def __init__(
        self,
        *,
        dispatcher: Dispatcher,
        store: Store,
        tstore: TelephonyStore,
        settings: CallbackSettings,
        queue_log: QueueLog,
        ami: Callable[[], AmiClient | None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.dispatcher = dispatcher
        self.store = store
        self.tstore = tstore
        self.settings = settings
        self.queue_log = queue_log
        self.ami = ami
        self.clock = clock
        self._pending: dict[str, CallbackRow] = {}  # not yet due, by callback id
        self._inflight: dict[str, _InFlight] = {}  # by contact id
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        #: Told when the customer leg of an attempt failed (busy, no answer...): (contact id,
        #: attempt number). The composition root points it at the "we tried to call you back" notice.
        self.customer_missed: Callable[[str, int], Awaitable[object]] | None = None
        #: Every finished attempt, for tests and metrics.
        self.results: asyncio.Queue[Attempt] = asyncio.Queue()

    # ---- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        board = self.dispatcher.board
        for cb in await self.tstore.open_callbacks():
            if cb.status == "dialling":
                # In flight when we stopped: the outcome is unknown, so it counts as a failed attempt.
                held = board.contacts.get(cb.contact_id)
                if held is not None and held.status is ContactStatus.ASSIGNED:
                    self.dispatcher.post(ev.WorkFinished(cb.contact_id, held.assigned_to))
                self._tasks_add(self._after_attempt(cb, None, "unknown: server restarted"))
            elif cb.status == "queued" and cb.contact_id not in board.contacts:
                cb.next_at = self.clock()
                self._pending[cb.id] = cb
            elif cb.status == "pending":
                self._pending[cb.id] = cb
        self._task = asyncio.create_task(self._schedule(), name="acd-callbacks")

    async def close(self) -> None:
        for task in [self._task, *self._tasks]:
            if task is not None:
                task.cancel()
        for task in [self._task, *self._tasks]:
            if task is not None:
                try:
                    await task
                except (asyncio.CancelledError, Exception):
                    pass

    # ---- requests ----------------------------------------------------------------------

    async def request(
        self,
        *,
        phone: str,
        name: str = "",
        criteria: Mapping[str, str] | None = None,
        language: str | None = None,
        requested_at: float | None = None,
        not_before: float | None = None,
        source: str = "api",
    ) -> CallbackRow:
        """Store a callback request; it enters the queue when due (at once if nothing holds it)."""
        now = self.clock()
        cb = CallbackRow(
            id=uuid.uuid4().hex,
            contact_id=uuid.uuid4().hex,
            phone=phone,
            customer_name=name,
            language=language,
            criteria=dict(criteria or {}),
            source=source,
            requested_at=requested_at if requested_at is not None else now,
            not_before=not_before if not_before is not None else now,
            max_attempts=self.settings.max_attempts,
            updated_at=now,
        )
        cb.next_at = max(now, cb.not_before)
        await self.tstore.save_callback(cb)
        self._pending[cb.id] = cb
        self._wake.set()
        return cb

    async def _schedule(self) -> None:
        """Wake at the earliest due request (or a new one), put what is due into the queue."""
        while True:
            now = self.clock()
            due = [cb for cb in self._pending.values() if (cb.next_at or 0) <= now]
            for cb in due:
                del self._pending[cb.id]
                try:
                    await self._due(cb, now)
                except Exception:
                    log.exception("callback %s could not be queued; retrying in 5 s", cb.id)
                    cb.next_at = now + 5
                    self._pending[cb.id] = cb
            self._wake.clear()
            nxt = min((cb.next_at or now for cb in self._pending.values()), default=None)
            timeout = None if nxt is None else max(0.0, nxt - self.clock())
            try:
                # Waiting for a scheduled time *is* the job here.
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                pass

    async def _due(self, cb: CallbackRow, now: float) -> None:
        policy = self.dispatcher.board.policy
        contact = qualify(
            Contact(
                id=cb.contact_id,
                channel=Channel.CALLBACK,
                arrived_at=cb.requested_at,
                criteria=dict(cb.criteria),
                customer_name=cb.customer_name,
                phone=cb.phone,
                language=cb.language,
                payload={"callback_id": cb.id, "attempt": cb.attempts + 1},
            ),
            policy,
        )
        opens = policy.calendar.schedule(contact.team).next_open(now)
        if opens is None or opens > now:
            cb.next_at = opens if opens is not None else now + 86400
            cb.updated_at = now
            await self.tstore.save_callback(cb)
            self._pending[cb.id] = cb  # outside working hours: held until they open
            return
        existing = await self.store.get_contact(cb.contact_id)
        if existing is None:
            stored, _ = await self.store.create_contact(contact, f"callback:{cb.id}")
        else:
            stored = replace(
                existing,
                status=ContactStatus.WAITING,
                arrived_at=cb.requested_at,
                offered_to=None,
                offer_expires_at=None,
                assigned_to=None,
                declined_by=frozenset(),
                outcome=None,
                finished_at=None,
                payload={**existing.payload, "attempt": cb.attempts + 1},
            )
        cb.status, cb.next_at, cb.updated_at = "queued", None, now
        await self.tstore.save_callback(cb)
        self.dispatcher.post(ev.ContactArrived(stored))

    # ---- the core's commands -----------------------------------------------------------

    def on_command(self, cmd: ev.Command) -> None:
        match cmd:
            case ev.OfferContact(contact, manager, expires_at) if contact.channel is Channel.CALLBACK:
                if contact.id in self._inflight:
                    log.warning("callback %s offered while an attempt is in flight: not dialled twice", contact.id)
                    return
                self._tasks_add(self._dial(contact, manager, expires_at))
            case ev.WithdrawOffer(cid, _mid, reason) if cid in self._inflight and reason != "missed offer":
                flight = self._inflight[cid]
                client = self.ami()
                if client is not None and client.connected and not flight.connected:
                    self._tasks_add(_hangup(client, flight.channel_id))  # Asterisk finds a channel by uniqueid too
            case _:
                pass

    async def _dial(self, contact: Contact, manager: Manager, expires_at: float) -> None:
        s = self.settings
        cb = await self.tstore.callback_for_contact(contact.id)
        if cb is None:  # a callback lead from the public intake: adopt it
            now = self.clock()
            cb = CallbackRow(
                id=uuid.uuid4().hex,
                contact_id=contact.id,
                phone=contact.phone,
                customer_name=contact.customer_name,
                language=contact.language,
                criteria=dict(contact.criteria),
                source="lead",
                requested_at=contact.arrived_at,
                not_before=contact.arrived_at,
                max_attempts=s.max_attempts,
                status="queued",
                updated_at=now,
            )
            await self.tstore.save_callback(cb)
        if not manager.device or not contact.phone:
            self.dispatcher.post(ev.OfferFailed(contact.id, manager.id, "no device" if contact.phone else "no phone"))
            return
        action_id = f"acd-cb-{uuid.uuid4().hex[:12]}"
        channel_id = f"{action_id}-m"
        attempt = Attempt(cb.id, cb.attempts + 1, manager.id, self.clock(), action_id)
        flight = _InFlight(attempt, contact.id, channel_id)
        self._inflight[contact.id] = flight
        await self.tstore.add_attempt(attempt)
        client = self.ami()
        ring = min(s.manager_ring, expires_at - self.clock() - s.ring_margin)
        if client is not None and not client.connected and ring > 1.5:
            try:
                await client.wait_connected(ring - 1.0)
            except (AmiError, TimeoutError):
                pass
            ring = min(s.manager_ring, expires_at - self.clock() - s.ring_margin)
        if client is None or not client.connected or ring < 0.5:
            await self._originate_failed(flight, cb, "AMI not connected" if ring >= 0.5 else "offer expired")
            return
        number = "".join(ch for ch in contact.phone if ch.isdigit())  # the dialplan adds any prefix
        action = [
            ("ActionID", action_id),
            ("Channel", manager.device),
            ("Context", "acd-callback"),
            ("Exten", "s"),
            ("Priority", "1"),
            ("Timeout", str(int(ring * 1000))),
            ("CallerID", s.caller_id.format(number=number)),
            ("ChannelId", channel_id),
            ("Variable", f"ACD_CONTACT={contact.id}"),
            ("Variable", f"ACD_ATTEMPT={action_id}"),
            ("Variable", f"ACD_CUSTOMER_DIAL={s.outbound_dial.format(number=number)}"),
            ("Variable", f"ACD_CUSTOMER_RING={int(s.customer_ring)}"),
        ]
        cb.status, cb.updated_at = "dialling", self.clock()
        await self.tstore.save_callback(cb)
        try:
            result = await client.originate(action)
        except AmiNotConnected:
            await self._originate_failed(flight, cb, "AMI not connected")
            return
        except (AmiLinkLost, AmiError, TimeoutError) as err:
            # Sent once and never again: the phone may be ringing, so let the offer run out.
            log.warning("callback %s: Originate outcome unknown (%s); not re-sent", contact.id, err)
            attempt.originate_reason = "unknown"
            await self.tstore.finish_attempt(attempt)
            return
        attempt.originate_reason = result.reason or ("error" if not result.response.ok else None)
        if result.answered:
            try:
                await self.dispatcher.submit(ev.OfferAccepted(contact.id, manager.id))
            except CoreError:
                self._inflight.pop(contact.id, None)
                attempt.result, attempt.ended_at = "offer ended before the manager answered", self.clock()
                await self.tstore.finish_attempt(attempt)
                self._tasks_add(_hangup(client, result.channel or channel_id))
                return
            flight.connected = True
            await self.tstore.finish_attempt(attempt)
            return
        self._inflight.pop(contact.id, None)
        attempt.ended_at = self.clock()
        if result.reason == OriginateReason.NO_ANSWER:
            attempt.result = "manager did not answer"
        else:
            attempt.result = f"manager unreachable (reason {result.reason})"
            self.dispatcher.post(ev.OfferFailed(contact.id, manager.id, "device busy or unreachable"))
        await self.tstore.finish_attempt(attempt)
        cb.status, cb.updated_at = "queued", self.clock()
        await self.tstore.save_callback(cb)

    async def _originate_failed(self, flight: _InFlight, cb: CallbackRow, why: str) -> None:
        self._inflight.pop(flight.contact_id, None)
        flight.attempt.result, flight.attempt.ended_at = why, self.clock()
        await self.tstore.finish_attempt(flight.attempt)
        self.dispatcher.post(ev.OfferFailed(flight.contact_id, flight.attempt.manager_id or "", why))

    # ---- AMI events --------------------------------------------------------------------

    def on_result(self, contact_id: str, action_id: str, dial_status: str) -> None:
        """`UserEvent(CallbackResult)` from [acd-callback]: the customer leg's DIALSTATUS."""
        flight = self._inflight.get(contact_id)
        if flight is None or (action_id and flight.attempt.action_id != action_id):
            return
        self._finish(flight, dial_status.upper() or "CANCEL")

    def on_hangup(self, uniqueid: str) -> None:
        for flight in list(self._inflight.values()):
            if flight.connected and flight.channel_id == uniqueid:
                self._finish(flight, "CANCEL")

    def reconcile(self, alive: set[str]) -> int:
        gone = [f for f in self._inflight.values() if f.connected and f.channel_id not in alive]
        for flight in gone:
            self._finish(flight, "UNKNOWN")
        return len(gone)

    def _finish(self, flight: _InFlight, status: str) -> None:
        self._inflight.pop(flight.contact_id, None)
        attempt = flight.attempt
        attempt.dial_status, attempt.ended_at = status, self.clock()
        self.dispatcher.post(ev.WorkFinished(flight.contact_id, attempt.manager_id))
        self._tasks_add(self._after_attempt_id(attempt, status))

    async def _after_attempt_id(self, attempt: Attempt, status: str) -> None:
        attempt.result = "customer answered" if status == "ANSWER" else f"customer {status.lower()}"
        await self.tstore.finish_attempt(attempt)
        cb = await self.tstore.get_callback(attempt.callback_id)
        if cb is not None:
            await self._after_attempt(cb, status, attempt.result)
        self.results.put_nowait(attempt)

    async def _after_attempt(self, cb: CallbackRow, status: str | None, result: str) -> None:
        now = self.clock()
        cb.last_result, cb.updated_at = result, now
        if status == "ANSWER":
            cb.status = "done"
        else:
            cb.attempts += 1
            if status is not None and self.customer_missed is not None:
                try:
                    await self.customer_missed(cb.contact_id, cb.attempts)
                except Exception:  # a notice must never stop the retries
                    log.exception("callback %s: could not tell the customer about the missed call", cb.id)
            if cb.attempts >= cb.max_attempts:
                cb.status = "failed"
                if cb.contact_id in self.dispatcher.board.contacts:
                    self.dispatcher.post(ev.ContactAbandoned(cb.contact_id, "callback attempts exhausted"))
            else:
                cb.status = "pending"
                cb.next_at = now + self.settings.backoff * 2 ** (cb.attempts - 1)
                self._pending[cb.id] = cb
                self._wake.set()
        await self.tstore.save_callback(cb)

    def _tasks_add(self, coro: Coroutine[Any, Any, None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)

        def done(t: asyncio.Task[None]) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.error("callback task failed", exc_info=t.exception())

        task.add_done_callback(done)


async def _hangup(client: AmiClient, channel: str) -> None:
    try:
        await client.send({"Action": "Hangup", "Channel": channel, "Cause": "16"})
    except AmiError as err:
        log.info("Hangup %s: %s", channel, err)


__all__ = ["CallbackSettings", "Callbacks"]
