"""Adapter: callback requests ⇄ core — stored, scheduled, routed like any contact, then rung
by a back end (Asterisk AMI Originate, or Twilio's REST API).

A request (API, the website widget, a caller pressing a key in the queue, an out-of-hours
caller) is a row in `callbacks` first. When it is due — its scheduled time has come, the
team's hours are open, a retry's back-off is over — its contact enters the routing queue with
the request's **original** enqueue time, so it keeps its place and never passes callers who
waited longer. When the core offers it to a manager, the *dialer*
(`acd.telephony.callback_dialers`) does the one step that differs between back ends:

1. ring the manager (AMI Originate of their device into `[acd-callback]`, or Twilio
   `calls.create` to their number or client) — sent once, never re-sent;
2. the manager answers → OfferAccepted, and the customer is dialled; busy / unreachable →
   OfferFailed (skip, no penalty); no answer → the core's offer timeout ("missed offer": the
   manager is paused, the callback goes to the next one);
3. the customer answered (reported when the conversation ends) → done; busy / no answer → the
   attempt is recorded, the customer is told (`customer_missed`), and the request waits
   `backoff × 2^(n-1)` before its next turn, up to `max_attempts`; then it is given up. With
   answering-machine detection on, a machine that answers (voicemail, an operator's "subscriber
   unavailable", a fax) is hung up on before the manager is connected and counts as such a
   failure (status MACHINE, result "answering machine (<verdict>)"); an unsure verdict is a human.

Everything else — scheduling, hours, attempts, retries, give-up, restart — is here, once.
Every attempt and its outcome at the peer is a row in `callback_attempts`. One contact is
offered to one manager at a time (the core's rule) and an attempt in flight is never started
twice, so a customer is never dialled twice at once. After a restart the open requests are
re-armed; an attempt that was in flight counts as failed with an unknown outcome and is retried.

When a request is due is a wall-clock matter: the customer was promised a time ("after 18:00"),
the team's hours are wall-clock hours, and `next_at` is stored for the next start. So the scheduler
compares `next_at` with the wall clock itself (`wall`), not with the server's steady clock
(`acd.clock`), and looks at it at least every `WALL_RECHECK` seconds: after a step of the wall
clock, a promised time fires at that time as the corrected clock tells it. A retry's back-off is
stored the same way, so a step forward can bring a retry forward by up to the step.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import replace
from typing import Any

from acd.asterisk.ami import AmiClient
from acd.core import events as ev
from acd.core.errors import CoreError
from acd.core.intake import qualify
from acd.core.model import Channel, Contact, ContactStatus, Manager, Outcome
from acd.dispatcher import Dispatcher
from acd.ids import new_id
from acd.runtime import cancel_and_wait, wait_a_while
from acd.storage import Conflict, Store
from acd.storage.telephony import Attempt, CallbackRow, TelephonyStore
from acd.telephony.callback_dialers import AmiDialer, CallbackDialer, CallbackSettings, Flight
from acd.telephony.queue_log import QueueLog

log = logging.getLogger(__name__)
ADOPT_EVERY = 1.0  # seconds: cluster mode, how soon the dispatching node schedules a request stored elsewhere
WALL_RECHECK = 1.0  # seconds: how late a due request may be noticed after a step of the wall clock


class Callbacks:
    def __init__(
        self,
        *,
        dispatcher: Dispatcher,
        store: Store,
        tstore: TelephonyStore,
        settings: CallbackSettings,
        queue_log: QueueLog,
        ami: Callable[[], AmiClient | None] | None = None,
        dialer: CallbackDialer | None = None,
        clock: Callable[[], float] = time.time,
        wall: Callable[[], float] = time.time,
    ) -> None:
        """`dialer` rings; without one, AMI Originate through the client `ami` returns. `clock`
        stamps attempts and contacts (the server's steady clock); `wall` tells when a request is due."""
        self.dispatcher = dispatcher
        self.store = store
        self.tstore = tstore
        self.settings = settings
        self.queue_log = queue_log
        self.clock = clock
        self.wall = wall
        self.dialer: CallbackDialer = dialer or AmiDialer(ami or (lambda: None), lambda: self.settings, clock)
        self._pending: dict[str, CallbackRow] = {}  # not yet due, by callback id
        self._inflight: dict[str, Flight] = {}  # by contact id
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._starting: set[str] = set()  # contact ids whose attempt is being set up
        self._known: set[str] = set()  # callback ids this scheduler has had: never adopted again (see adopt)
        #: Told when a request is stored: (the contact it will be, callback id) — the composition
        #: root points it at the "we got your request" notice.
        self.requested: Callable[[Contact, str], Awaitable[object]] | None = None
        #: The CRM's intake step for a request that falls due (customer, deal owner, pin, team),
        #: as calls have: the composition root points it at CrmService.enrich.
        self.enrich: Callable[[Contact], Awaitable[Contact]] | None = None
        #: Told when the customer leg of an attempt failed (busy, no answer...): (contact id,
        #: attempt number). The composition root points it at the "we tried to call you back" notice.
        self.customer_missed: Callable[[str, int], Awaitable[object]] | None = None
        #: Told instead of `customer_missed` when that was the last attempt (the request is given up).
        self.customer_given_up: Callable[[str, int], Awaitable[object]] | None = None
        #: Every finished attempt, for tests and metrics.
        self.results: asyncio.Queue[Attempt] = asyncio.Queue()

    # ---- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Re-arm the open requests after a (re)start. Call it once the dispatcher has restored
        the queue: the restore re-offers what was offered, before anyone here was listening."""
        board = self.dispatcher.board
        for cb in await self.tstore.open_callbacks():
            self._known.add(cb.id)
            held = board.contacts.get(cb.contact_id)
            if cb.status == "dialling":
                # In flight when we stopped: the outcome is unknown, so it counts as a failed
                # attempt, and the contact leaves the queue until its back-off is over.
                if held is not None and held.status is ContactStatus.ASSIGNED:
                    self.dispatcher.post(ev.WorkFinished(cb.contact_id, held.assigned_to, Outcome.UNREACHED))
                elif held is not None:
                    self.dispatcher.post(ev.ContactAbandoned(cb.contact_id, "callback attempt cut by a restart"))
                self._tasks_add(self._after_attempt(cb, None, "unknown: server restarted"))
            elif cb.status == "queued" and held is None:
                cb.next_at = self.wall()
                self._pending[cb.id] = cb
            elif cb.status == "queued" and held is not None and held.status is ContactStatus.OFFERED:
                manager = board.managers.get(held.offered_to or "")
                if manager is not None and held.offer_expires_at is not None:  # offered by the restore: ring
                    self._start_dial(held, manager, held.offer_expires_at)
            elif cb.status == "pending":
                self._pending[cb.id] = cb
        self._task = asyncio.create_task(self._schedule(), name="acd-callbacks")

    async def close(self) -> None:
        self._closed = True
        for task in [self._task, *self._tasks]:
            if task is not None:
                with contextlib.suppress(Exception):
                    await cancel_and_wait(task)

    async def take_over(self) -> None:
        """Cluster mode, on a node that has just begun to dispatch: `start`, tried again until the
        database lets it."""
        while True:
            try:
                await self.start()
                return
            except Exception:
                log.exception("cannot re-arm the callbacks on taking over; retrying")
                await asyncio.sleep(ADOPT_EVERY)

    async def adopt_forever(self) -> None:
        """Cluster mode, on the dispatching node until its process ends: `adopt` every
        `ADOPT_EVERY`, since a request stored on another node announces nothing."""
        while True:
            await asyncio.sleep(ADOPT_EVERY)
            try:
                await self.adopt()
            except Exception:
                log.exception("cannot read the callback requests of other nodes; retrying")

    async def adopt(self) -> int:
        """Cluster mode, on the dispatching node: schedule the requests other nodes stored
        (a request is a `pending` row wherever it was made; only this node schedules and rings).
        Returns how many were new here."""
        found = 0
        for cb in await self.tstore.open_callbacks():
            if cb.status == "pending" and cb.id not in self._known and cb.id not in self._pending:
                self._known.add(cb.id)
                self._pending[cb.id] = cb
                found += 1
        if found:
            self._wake.set()
        return found

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
        idempotency_key: str | None = None,
        email: str = "",
    ) -> CallbackRow:
        """Store a callback request; it enters the queue when due (at once if nothing holds it).
        A request whose `idempotency_key` is stored already raises Conflict (see `submit`)."""
        now = self.clock()
        cb = CallbackRow(
            id=new_id(),
            contact_id=new_id(),
            phone=phone,
            customer_name=name,
            language=language,
            criteria=dict(criteria or {}),
            source=source,
            requested_at=requested_at if requested_at is not None else now,
            not_before=not_before if not_before is not None else self.wall(),
            max_attempts=self.settings.max_attempts,
            updated_at=now,
            idempotency_key=idempotency_key,
            email=email,
        )
        cb.next_at = max(self.wall(), cb.not_before)
        self._known.add(cb.id)
        await self.tstore.save_callback(cb)
        self._pending[cb.id] = cb
        self._wake.set()
        if self.requested is not None:
            try:
                await self.requested(self._contact(cb), cb.id)
            except Exception:  # an acknowledgement must never lose the request
                log.exception("callback %s: could not acknowledge the request to the customer", cb.id)
        return cb

    async def submit(
        self,
        idempotency_key: str | None,
        *,
        phone: str,
        name: str = "",
        criteria: Mapping[str, str] | None = None,
        language: str | None = None,
        not_before: float | None = None,
        source: str = "api",
        email: str = "",
    ) -> tuple[CallbackRow, bool]:
        """`request`, as a website form sends it, and whether it was made now. Under an
        Idempotency-Key, a form sent again (a double click, a retry after a lost answer)
        makes no second request and gets the first one back."""

        async def sent_before() -> CallbackRow | None:
            return None if idempotency_key is None else await self.tstore.callback_by_key(idempotency_key)

        if (known := await sent_before()) is not None:
            return known, False
        try:
            made = await self.request(
                phone=phone,
                name=name,
                criteria=criteria,
                language=language,
                not_before=not_before,
                source=source,
                idempotency_key=idempotency_key,
                email=email,
            )
        except Conflict:
            if (known := await sent_before()) is None:
                raise
            return known, False  # the same form, sent at the same moment, went in first
        return made, True

    def _contact(self, cb: CallbackRow) -> Contact:
        return Contact(
            id=cb.contact_id,
            channel=Channel.CALLBACK,
            arrived_at=cb.requested_at,
            criteria=dict(cb.criteria),
            customer_name=cb.customer_name,
            phone=cb.phone,
            email=cb.email,
            language=cb.language,
            payload={"callback_id": cb.id, "attempt": cb.attempts + 1},
        )

    async def _schedule(self) -> None:
        """Wake at the earliest due request (or a new one), put what is due into the queue."""
        while True:
            now = self.wall()
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
            timeout = None if nxt is None else min(max(0.0, nxt - self.wall()), WALL_RECHECK)
            await wait_a_while(self._wake, timeout)  # waiting for a scheduled time *is* the job here

    async def _due(self, cb: CallbackRow, wall_now: float) -> None:
        policy = self.dispatcher.board.policy
        contact = self._contact(cb)
        if self.enrich is not None:
            contact = await self.enrich(contact)
        contact = qualify(contact, policy)
        opens = policy.calendar.schedule(contact.team).next_open(wall_now)
        if opens is None or opens > wall_now:
            cb.next_at = opens if opens is not None else wall_now + 86400
            cb.updated_at = self.clock()
            await self.tstore.save_callback(cb)
            self._pending[cb.id] = cb  # outside working hours: held until they open
            return
        if cb.attempts:
            # A retry: the attempt before it ended with a WorkFinished the dispatcher may not have
            # committed yet (a short back-off); that commit, coming after the row is stored waiting
            # below, would store it finished again while it waits in the queue. An end posted
            # after it is ordered after it, and is nothing to a contact the core has finished.
            await self.dispatcher.submit(ev.ContactAbandoned(cb.contact_id, "callback attempt over"))
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
        cb.status, cb.next_at, cb.updated_at = "queued", None, self.clock()
        await self.tstore.save_callback(cb)
        if existing is not None:
            # Stored waiting before it is posted, as intake stores a new contact: the core
            # writes nothing for a contact that arrives already waiting, so without this the
            # row stays finished, and a dispatcher that drops the batch and reads the store
            # back (`Dispatcher._resync`), or a restart, would not find it in the queue. The
            # request is marked queued first: cut in between, a restart queues it again.
            await self.store.apply([stored], [], [], [])
        self.dispatcher.post(ev.ContactArrived(stored))

    # ---- the core's commands -----------------------------------------------------------

    def on_command(self, cmd: ev.Command) -> None:
        if self._closed:  # shutting down: the dispatcher may still route, nobody rings any more
            return
        match cmd:
            case ev.OfferContact(contact, manager, expires_at) if contact.channel is Channel.CALLBACK:
                self._start_dial(contact, manager, expires_at)
            case ev.WithdrawOffer(cid, _mid, reason) if cid in self._inflight:
                flight = self._inflight[cid]
                if not flight.connected and self.dialer.withdraw(flight, reason):
                    # Over at once (synchronously, so an offer to the next manager in the same
                    # batch of commands is dialled rather than taken for a second dial).
                    self._release(flight)
                    self._tasks_add(self._withdrawn(flight, reason))
            case _:
                pass

    def _start_dial(self, contact: Contact, manager: Manager, expires_at: float) -> None:
        if contact.id in self._inflight or contact.id in self._starting:
            log.warning("callback %s offered while an attempt is in flight: not dialled twice", contact.id)
            return
        self._starting.add(contact.id)

        async def dial() -> None:
            try:
                await self._dial(contact, manager, expires_at)
            finally:
                self._starting.discard(contact.id)

        self._tasks_add(dial())

    async def _dial(self, contact: Contact, manager: Manager, expires_at: float) -> None:
        cb = await self.tstore.callback_for_contact(contact.id)
        if cb is None:  # a callback lead from the public intake: adopt it
            now = self.clock()
            cb = CallbackRow(
                id=new_id(),
                contact_id=contact.id,
                phone=contact.phone,
                customer_name=contact.customer_name,
                language=contact.language,
                criteria=dict(contact.criteria),
                source="lead",
                requested_at=contact.arrived_at,
                not_before=contact.arrived_at,
                max_attempts=self.settings.max_attempts,
                status="queued",
                updated_at=now,
                email=contact.email,
            )
            self._known.add(cb.id)
            await self.tstore.save_callback(cb)
        if not self.dialer.reaches(manager) or not contact.phone:
            self.dispatcher.post(ev.OfferFailed(contact.id, manager.id, "no device" if contact.phone else "no phone"))
            return
        attempt_id = f"acd-cb-{uuid.uuid4().hex[:12]}"
        attempt = Attempt(cb.id, cb.attempts + 1, manager.id, self.clock(), attempt_id)
        flight = Flight(attempt, contact, manager, expires_at, leg=f"{attempt_id}-m", max_attempts=cb.max_attempts)
        self._inflight[contact.id] = flight
        await self.tstore.add_attempt(attempt)
        try:
            await self.dialer.ring(flight, self)
        except Exception as err:  # a dialer's bug must not leave the contact offered and forgotten
            log.exception("callback %s: the dialer failed", contact.id)
            if self._inflight.get(contact.id) is flight and not flight.connected:
                await self.outcome_unknown(flight, f"dialer failed: {type(err).__name__}")

    # ---- what the dialer reports (Outcomes) --------------------------------------------

    def _release(self, flight: Flight) -> None:
        if self._inflight.get(flight.contact_id) is flight:
            del self._inflight[flight.contact_id]

    def in_flight(self, contact_id: str, attempt_id: str) -> Flight | None:
        """The contact's attempt in progress, if `attempt_id` is still it (else None: over)."""
        flight = self._inflight.get(contact_id)
        if flight is None or (attempt_id and flight.attempt_id != attempt_id):
            return None
        return flight

    async def _requeued(self, callback_id: str) -> None:
        """The attempt ended without reaching the customer's leg: the request is queued again."""
        cb = await self.tstore.get_callback(callback_id)
        if cb is not None and cb.status == "dialling":
            cb.status, cb.updated_at = "queued", self.clock()
            await self.tstore.save_callback(cb)

    async def dialling(self, flight: Flight) -> None:
        cb = await self.tstore.get_callback(flight.attempt.callback_id)
        if cb is not None:
            cb.status, cb.updated_at = "dialling", self.clock()
            await self.tstore.save_callback(cb)

    async def not_sent(self, flight: Flight, why: str) -> None:
        self._release(flight)
        flight.attempt.result, flight.attempt.ended_at = why, self.clock()
        await self.tstore.finish_attempt(flight.attempt)
        await self._requeued(flight.attempt.callback_id)
        self.dispatcher.post(ev.OfferFailed(flight.contact_id, flight.manager.id, why))

    async def outcome_unknown(self, flight: Flight, why: str) -> None:
        # Sent once and never again: the phone may be ringing, so the offer runs out on its own.
        log.warning("callback %s: %s; not re-sent", flight.contact_id, why)
        flight.attempt.originate_reason = "unknown"
        await self.tstore.finish_attempt(flight.attempt)

    async def manager_answered(self, contact_id: str, attempt_id: str, leg: str, leg_status: str | None) -> bool:
        """The manager picked up: the offer is accepted and the customer is dialled next.
        False when this attempt is no longer the contact's (withdrawn, expired): drop the leg."""
        flight = self.in_flight(contact_id, attempt_id)
        if flight is None:
            return False
        attempt = flight.attempt
        attempt.originate_reason = leg_status
        try:
            await self.dispatcher.submit(ev.OfferAccepted(contact_id, flight.manager.id))
        except CoreError:
            self._release(flight)
            attempt.result, attempt.ended_at = "offer ended before the manager answered", self.clock()
            await self.tstore.finish_attempt(attempt)
            await self._requeued(attempt.callback_id)
            return False
        flight.connected = True
        flight.leg = leg or flight.leg
        await self.tstore.finish_attempt(attempt)
        if flight.early_result is not None and self._inflight.get(contact_id) is flight:
            self._finish(flight, flight.early_result)  # the customer leg had already ended
        return True

    async def manager_not_reached(
        self, contact_id: str, attempt_id: str, leg_status: str | None, *, no_answer: bool
    ) -> None:
        """No answer: the core's offer timer declares the miss (the manager is paused). Busy or
        unreachable: the offer fails at once, with no penalty."""
        flight = self.in_flight(contact_id, attempt_id)
        if flight is None or flight.connected:
            return
        self._release(flight)
        attempt = flight.attempt
        attempt.originate_reason, attempt.ended_at = leg_status, self.clock()
        if no_answer:
            attempt.result = "manager did not answer"
        else:
            attempt.result = f"manager unreachable (reason {leg_status})"
            self.dispatcher.post(ev.OfferFailed(contact_id, flight.manager.id, "device busy or unreachable"))
        await self.tstore.finish_attempt(attempt)
        await self._requeued(attempt.callback_id)

    async def _withdrawn(self, flight: Flight, reason: str) -> None:
        flight.attempt.result, flight.attempt.ended_at = f"offer withdrawn ({reason})", self.clock()
        await self.tstore.finish_attempt(flight.attempt)
        await self._requeued(flight.attempt.callback_id)

    # ---- the customer's leg ------------------------------------------------------------

    def on_result(self, contact_id: str, action_id: str, dial_status: str, *, machine: str = "") -> None:
        """The customer leg's outcome, as Asterisk's DIALSTATUS (ANSWER, BUSY, NOANSWER, CANCEL,
        CHANUNAVAIL...): `UserEvent(CallbackResult)` from [acd-callback], or Twilio's
        DialCallStatus translated by its webhook. ANSWER is reported when the conversation ends.
        `machine`: the answering-machine detector's verdict when a machine answered (voicemail, an
        operator's announcement, a fax): status MACHINE, a failed attempt retried like a busy one."""
        flight = self.in_flight(contact_id, action_id)
        if flight is None:
            return
        status = dial_status.upper() or "CANCEL"
        if machine:
            flight.machine, status = machine, "MACHINE"
        if not flight.connected:
            # [acd-callback] runs as soon as the manager answers, before Asterisk sends
            # OriginateResponse (originate_callback A, G): a customer leg that fails at once is
            # reported first. The manager did answer: keep the outcome until `manager_answered`
            # has accepted the offer for them (else the offer is left to time out, and the
            # attempt is recorded without the manager's leg).
            flight.early_result = status
            return
        self._finish(flight, status)

    def on_hangup(self, leg: str) -> None:
        """The manager's leg ended (AMI Hangup, Twilio's status callback) with no result yet."""
        for flight in list(self._inflight.values()):
            if flight.connected and flight.leg == leg:
                self._finish(flight, "CANCEL")

    def reconcile(self, alive: set[str]) -> int:
        gone = [f for f in self._inflight.values() if f.connected and f.leg not in alive]
        for flight in gone:
            self._finish(flight, "UNKNOWN")
        return len(gone)

    def _finish(self, flight: Flight, status: str) -> None:
        self._release(flight)
        attempt = flight.attempt
        attempt.dial_status, attempt.ended_at = status, self.clock()
        outcome = Outcome.DONE if status == "ANSWER" else Outcome.UNREACHED  # a retry queues it again
        self.dispatcher.post(ev.WorkFinished(flight.contact_id, attempt.manager_id, outcome))
        self._tasks_add(self._after_attempt_id(attempt, status, flight.machine))

    async def _after_attempt_id(self, attempt: Attempt, status: str, machine: str = "") -> None:
        if machine:
            attempt.result = f"answering machine ({machine})"
        else:
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
            last = cb.attempts >= cb.max_attempts
            tell = self.customer_given_up if last and self.customer_given_up is not None else self.customer_missed
            if status is not None and tell is not None:
                try:
                    await tell(cb.contact_id, cb.attempts)
                except Exception:  # a notice must never stop the retries
                    log.exception("callback %s: could not tell the customer about the missed call", cb.id)
            if cb.attempts >= cb.max_attempts:
                cb.status = "failed"
                if cb.contact_id in self.dispatcher.board.contacts:
                    self.dispatcher.post(ev.ContactAbandoned(cb.contact_id, "callback attempts exhausted"))
            else:
                cb.status = "pending"
                cb.next_at = self.wall() + self.settings.backoff * 2 ** (cb.attempts - 1)
                self._known.add(cb.id)
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


__all__ = ["CallbackDialer", "CallbackSettings", "Callbacks"]
