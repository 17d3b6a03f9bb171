"""Callbacks by Originate, and the AMI mirror surviving a lost link."""

from __future__ import annotations

import asyncio

from aiohttp.test_utils import TestClient, TestServer
from telephony_harness import DEVICES, Harness, start_harness

from acd.core import events as ev
from acd.core.model import Channel, ContactStatus, Outcome, Presence
from acd.pbxsim import Phone
from acd.web.reports import day_report

CUSTOMER = "Local/79165550000@acd-outbound"  # asterisk.outbound_dial with the customer's number


async def test_a_callback_with_a_busy_customer_is_retried_and_completed(h: Harness) -> None:
    customer = h.sim.add_phone(Phone(CUSTOMER, busy=True))
    missed: list[tuple[str, int]] = []

    async def tried_to_call(contact_id: str, attempt: int) -> None:  # the "we tried to call you" notice
        missed.append((contact_id, attempt))

    h.telephony.callbacks.customer_missed = tried_to_call
    asked_at = h.server.services.clock() - 30  # requested earlier: keeps that place in the queue
    cb = await h.telephony.callbacks.request(phone="+7 916 555-00-00", requested_at=asked_at)

    offer = await h.command(ev.OfferContact, lambda c: c.contact.channel is Channel.CALLBACK)
    assert offer.contact.arrived_at == asked_at
    first = await asyncio.wait_for(h.telephony.callbacks.results.get(), 5)
    assert first.dial_status == "BUSY" and first.manager_id == offer.manager.id
    assert missed == [(cb.contact_id, 1)]
    customer.busy = False
    customer.talk_for = 1.0
    await h.command(ev.OfferContact, lambda c: c.contact.id == cb.contact_id)
    second = await asyncio.wait_for(h.telephony.callbacks.results.get(), 5)
    assert second.dial_status == "ANSWER"
    assert missed == [(cb.contact_id, 1)]  # an answered attempt tells nobody it failed

    row = await h.telephony.tstore.get_callback(cb.id)
    assert row is not None and row.status == "done" and row.attempts == 1
    attempts = await h.telephony.tstore.attempts(cb.id)
    assert [(a.attempt, a.originate_reason, a.dial_status) for a in attempts] == [(1, "4", "BUSY"), (2, "4", "ANSWER")]
    contact = await h.server.store.get_contact(cb.contact_id)
    await h.settle()
    contact = h.board.contacts.get(cb.contact_id) or await h.server.store.get_contact(cb.contact_id)
    assert contact is not None and contact.status is ContactStatus.FINISHED and contact.outcome is Outcome.DONE
    originates = [s for sess in h.sim.ami.all_sessions for s in sess.actions if ("Action", "Originate") in s]
    assert len(originates) == 2  # one per attempt, never twice


async def test_a_callback_given_up_leaves_its_contact_unreached_not_done() -> None:
    harness, stop = await start_harness(callback_attempts=2)
    try:
        h = harness
        h.sim.add_phone(Phone(CUSTOMER, busy=True))
        cb = await h.telephony.callbacks.request(phone="+7 916 555-00-00")
        tried = [await asyncio.wait_for(h.telephony.callbacks.results.get(), 5) for _ in range(2)]
        assert [a.dial_status for a in tried] == ["BUSY", "BUSY"]
        await h.settle()
        row = await h.telephony.tstore.get_callback(cb.id)
        assert row is not None and row.status == "failed" and row.attempts == 2
        contact = await h.server.store.get_contact(cb.contact_id)
        # finished by its manager, but nobody reached the customer: reports must not count it as done
        assert contact is not None and contact.status is ContactStatus.FINISHED
        assert contact.outcome is Outcome.UNREACHED and contact.assigned_to == tried[-1].manager_id
        now = h.server.services.clock()
        report = day_report([contact], [], [], "UTC", now - 3600, now + 1, {}, now)
        assert report["managers"][0]["unreached"] == 1 and report["managers"][0]["done"] == 0
    finally:
        await stop()


async def test_a_scheduled_callback_waits_for_its_time_and_the_api_shows_its_attempts(h: Harness) -> None:
    h.sim.add_phone(Phone(CUSTOMER, talk_for=0.5))
    supervisor = await h.server.store.create_token("supervisor", None)
    async with TestClient(TestServer(h.server.app)) as http:
        later = h.server.services.clock() + 0.5
        resp = await http.post("/api/callbacks", json={"phone": "79165550000", "after": later})
        assert resp.status == 201
        body = await resp.json()
        assert body["status"] == "pending" and body["next_at"] >= later
        await h.settle()
        assert body["contact_id"] not in h.board.contacts  # not before its time
        offer = await h.command(ev.OfferContact, lambda c: c.contact.id == body["contact_id"])
        assert h.server.services.clock() >= later
        await asyncio.wait_for(h.telephony.callbacks.results.get(), 5)
        resp = await http.get(f"/api/callbacks/{body['id']}", headers={"Authorization": f"Bearer {supervisor}"})
        shown = await resp.json()
        assert shown["status"] == "done"
        assert shown["attempts_log"][0]["manager_id"] == offer.manager.id
        spec = await (await http.get("/api/openapi.json")).json()
        assert "/api/callbacks" in spec["paths"] and "/api/contacts/{contact_id}/call" in spec["paths"]


async def test_device_states_come_from_ami_and_are_resynchronised_after_a_lost_link(h: Harness) -> None:
    anna = DEVICES["anna"]
    h.sim.set_device_state(anna, "INUSE")  # anna is on another call
    async with asyncio.timeout(5):
        while not h.board.managers["anna"].device_busy:
            await h.settle()
    assert h.board.managers["anna"].presence is Presence.BUSY

    h.telephony.resynced.clear()
    h.sim.cut_ami("close")
    h.sim.set_device_state(anna, "NOT_INUSE")  # the event is lost with the link
    await asyncio.wait_for(h.telephony.resynced.wait(), 5)
    await h.settle()
    assert not h.board.managers["anna"].device_busy
    assert h.board.managers["anna"].presence is Presence.AVAILABLE
    assert h.telephony.ami.connections == 2  # type: ignore[union-attr]
