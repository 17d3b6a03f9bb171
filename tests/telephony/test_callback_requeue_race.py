"""A callback retried after a very short back-off: the request falls due again before the
dispatcher has committed the WorkFinished that ended the attempt before it. The re-queue must
come after that commit, else the commit stores the contact finished over the waiting row the
re-queue stored, and the contact waits in the queue while the database (a restart, a resync
after a dropped batch) has it over.

The dispatcher's commit is held, deterministically, by a thin wrapper around the real store
that waits on an event the test sets; rung through Twilio (a local stand-in of its REST API,
signed webhooks), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from api_fixtures import Running, start, stop
from storage_fixtures import Backend
from twilio_fixtures import TwilioStandIn, hook, local, next_of, twilio_deployment, twiml

from acd.core import events as ev
from acd.core.model import Contact, ContactStatus, Manager, Presence
from acd.telephony.api import CALLBACKS


class HeldCommit:
    """The dispatcher's store, whose commit that finishes `contact_id` waits for `release`."""

    def __init__(self, store: Any, contact_id: str) -> None:
        self.store, self.contact_id = store, contact_id
        self.holding, self.release = asyncio.Event(), asyncio.Event()

    async def apply(
        self,
        contacts: Sequence[Contact],
        managers: Sequence[Manager],
        decisions: Sequence[ev.Decision],
        transitions: Sequence[ev.Transition],
    ) -> None:
        if any(c.id == self.contact_id and c.status is ContactStatus.FINISHED for c in contacts):
            self.holding.set()
            await self.release.wait()
        await self.store.apply(contacts, managers, decisions, transitions)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def record_events(r: Running) -> asyncio.Queue[ev.Event]:
    """Every event posted or submitted to the dispatcher from now on."""
    seen: asyncio.Queue[ev.Event] = asyncio.Queue()
    dispatcher = r.server.dispatcher
    post, submit = dispatcher.post, dispatcher.submit

    def posted(event: ev.Event) -> None:
        seen.put_nowait(event)
        post(event)

    async def submitted(event: ev.Event) -> list[ev.Command]:
        seen.put_nowait(event)
        return await submit(event)

    dispatcher.post, dispatcher.submit = posted, submitted  # type: ignore[method-assign]
    return seen


async def test_a_retry_due_before_the_attempt_s_end_is_committed_is_stored_waiting_after_it(
    backend: Backend,
) -> None:
    twilio = TwilioStandIn()
    base = await twilio.start()
    try:
        r = await start(backend, twilio_deployment(base, callback_backoff=0.001))
        try:
            dispatcher = r.server.dispatcher
            board = dispatcher.board
            first, *others = list(board.managers)
            for m in others:  # one manager rings; nobody is left to take the retry
                await dispatcher.submit(ev.PresenceSet(m, Presence.PAUSED, "lunch"))
            status, cb = await r.call("POST", "/api/callbacks", json={"phone": "+79165550000", "name": "Иван"})
            assert status == 201, cb
            cid = str(cb["contact_id"])
            callbacks = r.server.app[CALLBACKS]

            created = await next_of(twilio.created)
            status, body = await hook(
                r, local(created["Url"]), {"CallSid": created["Sid"], "CallStatus": "in-progress"}
            )
            dial = twiml(body).find("Dial")
            assert status == 200 and dial is not None
            await dispatcher.submit(ev.PresenceSet(first, Presence.PAUSED, "lunch"))

            held = HeldCommit(dispatcher.store, cid)
            dispatcher.store = held
            seen = record_events(r)
            await hook(r, dial.get("action", ""), {"CallSid": created["Sid"], "DialCallStatus": "busy"})
            await asyncio.wait_for(held.holding.wait(), 10)  # WorkFinished is being committed
            # the back-off is over: the scheduler acts on the contact while the commit is held
            event = await next_of(seen)
            while not isinstance(event, ev.ContactArrived | ev.ContactAbandoned) or cid not in repr(event):
                event = await next_of(seen)
            held.release.set()
            assert (await next_of(callbacks.results)).dial_status == "BUSY"
            while not (isinstance(event, ev.ContactArrived) and event.contact.id == cid):
                event = await next_of(seen)  # the re-queue, once the commit is done
            await r.settle()
            assert board.contacts[cid].status is ContactStatus.WAITING
            stored = await r.server.store.get_contact(cid)
            assert stored is not None and stored.status is ContactStatus.WAITING, stored
            assert stored.outcome is None and stored.finished_at is None
            row = await callbacks.tstore.get_callback(str(cb["id"]))
            assert row is not None and row.status == "queued" and row.attempts == 1
        finally:
            await stop(r)
    finally:
        await twilio.close()
