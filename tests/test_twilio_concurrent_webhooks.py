"""Twilio sends a call's status callbacks and its action callbacks (the IVR's next step) at
the same time, and in no set order. Two webhooks for one call at once must not both read the
call's old row and have the second write undo the first (a lost update): an ended call stays
ended, and a caller who hung up as the IVR ended is not left waiting in the queue.

The webhooks are POSTed concurrently, signed as Twilio signs them, to the real server on
SQLite and PostgreSQL; every call's race is run many times, so either order is met."""

from __future__ import annotations

import asyncio

from api_fixtures import Running
from storage_fixtures import Backend
from twilio_fixtures import OUR_NUMBER, SID, hook, twilio_office, twiml

from acd.core import events as ev
from acd.core.model import Presence
from acd.storage.messaging import MessagingStore

CALLS = 12
KEYS = iter(["1", "2", "3"] * 10)  # whatever the flow asks: hot, licence renewal, over 1M...


def call_form(sid: str) -> dict[str, str]:
    return {"CallSid": sid, "From": "+79161234567", "To": OUR_NUMBER, "AccountSid": SID}


async def ivr_steps(r: Running) -> list[tuple[str, dict[str, str]]]:
    """The webhooks of one caller's way through the IVR, the last one ending it (its answer
    enqueues the call): learnt from a call run through once. The state travels in the URLs,
    so another call takes the same way with its own CallSid."""
    form = call_form("CA-probe")
    status, body = await hook(r, "/twilio/voice", form)
    steps: list[tuple[str, dict[str, str]]] = []
    for _ in range(20):
        assert status == 200, body
        root = twiml(body)
        if root.find("Enqueue") is not None:
            return steps
        gather, redirect = root.find("Gather"), root.find("Redirect")
        if gather is not None:
            steps.append((gather.get("action", ""), {"Digits": next(KEYS)}))
        else:
            assert redirect is not None and redirect.text
            steps.append((redirect.text, {}))
        status, body = await hook(r, steps[-1][0], {**form, **steps[-1][1]})
    raise AssertionError("the IVR never enqueued the call")


async def all_managers_away(r: Running) -> None:
    # nobody takes the calls: a contact left open would stay waiting, not be talked to
    for m in list(r.server.dispatcher.board.managers):
        await r.server.dispatcher.submit(ev.PresenceSet(m, Presence.PAUSED, "lunch"))


async def test_a_caller_who_hangs_up_as_the_ivr_ends_is_not_left_waiting_and_the_call_stays_ended(
    backend: Backend,
) -> None:
    async with twilio_office(backend) as (r, _):
        await all_managers_away(r)
        steps = await ivr_steps(r)
        *before, (last, digits) = steps
        calls = MessagingStore(r.server.store)
        for n in range(CALLS):
            sid = f"CA-race-{n}"
            form = call_form(sid)
            assert (await hook(r, "/twilio/voice", form))[0] == 200
            for target, extra in before:
                assert (await hook(r, target, {**form, **extra}))[0] == 200
            ended = {**form, "CallStatus": "completed"}
            queued, status = await asyncio.gather(
                hook(r, last, {**form, **digits}), hook(r, "/twilio/voice/status", ended)
            )
            assert queued[0] == 200 and twiml(queued[1]).find("Enqueue") is not None
            assert status[0] == 200

            await r.settle()  # the arrival and the end, in the order they were posted
            row = await calls.get_call(sid)
            assert row is not None and row["status"] == "completed", (n, row)
            assert row["contact_id"], (n, row)
            contact = await r.server.store.get_contact(row["contact_id"])
            assert contact is not None and not contact.status.is_open, (n, contact)
            assert row["contact_id"] not in r.server.dispatcher.board.contacts, n


async def test_a_late_status_callback_racing_the_final_one_never_brings_the_call_back(backend: Backend) -> None:
    async with twilio_office(backend) as (r, _):
        calls = MessagingStore(r.server.store)
        for n in range(CALLS):
            sid = f"CA-late-{n}"
            form = call_form(sid)
            assert (await hook(r, "/twilio/voice", form))[0] == 200
            answers = await asyncio.gather(
                hook(r, "/twilio/voice/status", {**form, "CallStatus": "in-progress"}),
                hook(r, "/twilio/voice/status", {**form, "CallStatus": "completed"}),
            )
            assert [a[0] for a in answers] == [200, 200]
            row = await calls.get_call(sid)
            assert row is not None and row["status"] == "completed", (n, row)
