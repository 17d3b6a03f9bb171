"""A callback whose customer was busy goes back into the queue after its back-off, in its
original place. That change of state is stored before the contact is posted, as every other
one: the dispatcher writes nothing for a contact that arrives already waiting, so a row left
finished would be lost to a dispatcher that drops a batch and reads the store back
(`Dispatcher._resync`), and to a restart.

Rung through Twilio (a local stand-in of its REST API, signed webhooks), on SQLite and
PostgreSQL; the same `Callbacks` schedules the Asterisk path."""

from __future__ import annotations

import asyncio

from api_fixtures import Running, start, stop
from storage_fixtures import Backend
from twilio_fixtures import TwilioStandIn, hook, local, next_of, twilio_deployment, twiml

from acd.core import events as ev
from acd.core.model import ContactStatus, Presence
from acd.telephony.api import CALLBACKS


async def requeued(r: Running, contact_id: str) -> None:
    """Until the request is due again and its contact is back in the routing state."""
    async with asyncio.timeout(10):
        while True:
            await r.settle()
            c = r.server.dispatcher.board.contacts.get(contact_id)
            if c is not None and c.status is ContactStatus.WAITING:
                return
            await asyncio.sleep(0.05)  # the back-off runs on the scheduler's own timer


async def test_a_callback_queued_again_after_a_busy_customer_is_stored_waiting_in_its_place(
    backend: Backend,
) -> None:
    twilio = TwilioStandIn()
    base = await twilio.start()
    d = twilio_deployment(base, callback_backoff=0.3)
    try:
        r = await start(backend, d)
        try:
            board = r.server.dispatcher.board
            first, *others = list(board.managers)
            for m in others:  # one manager rings; nobody is left to take the retry
                await r.server.dispatcher.submit(ev.PresenceSet(m, Presence.PAUSED, "lunch"))
            status, cb = await r.call("POST", "/api/callbacks", json={"phone": "+79165550000", "name": "Иван"})
            assert status == 201, cb
            cid = str(cb["contact_id"])
            callbacks = r.server.app[CALLBACKS]
            row = await callbacks.tstore.get_callback(str(cb["id"]))
            assert row is not None
            requested_at = row.requested_at

            created = await next_of(twilio.created)
            answered = {"CallSid": created["Sid"], "CallStatus": "in-progress"}
            status, body = await hook(r, local(created["Url"]), answered)
            dial = twiml(body).find("Dial")
            assert status == 200 and dial is not None
            assert board.contacts[cid].status is ContactStatus.ASSIGNED
            assert board.contacts[cid].assigned_to == first
            await r.server.dispatcher.submit(ev.PresenceSet(first, Presence.PAUSED, "lunch"))
            await hook(r, dial.get("action", ""), {"CallSid": created["Sid"], "DialCallStatus": "busy"})
            assert (await next_of(callbacks.results)).dial_status == "BUSY"

            await requeued(r, cid)
            stored = await r.server.store.get_contact(cid)
            assert stored is not None and stored.status is ContactStatus.WAITING, stored
            assert stored.arrived_at == requested_at and stored.outcome is None and stored.finished_at is None

            # a batch the store refused: the routing state is read back from the store
            await r.server.dispatcher._resync([])
            assert board.contacts[cid].status is ContactStatus.WAITING
        finally:
            await stop(r)

        r = await start(backend, d)  # a restart finds it waiting, in its place, at once
        try:
            held = r.server.dispatcher.board.contacts.get(cid)
            assert held is not None and held.status is ContactStatus.WAITING
            assert held.arrived_at == requested_at
            status, shown = await r.call("GET", f"/api/callbacks/{cb['id']}", r.supervisor)
            assert status == 200 and shown["status"] == "queued" and shown["attempts"] == 1
        finally:
            await stop(r)
    finally:
        await twilio.close()
