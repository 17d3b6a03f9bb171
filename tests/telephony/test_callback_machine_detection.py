"""Answering machines on a callback's customer leg (asterisk.callback_machine_detection).

The shipped dialplan runs AMD() in the `U()` gosub [acd-callback-amd] on the customer's channel,
before the manager hears it; a MACHINE verdict hangs that leg up and CallbackResult carries
AMDStatus / AMDCause. The simulated PBX follows that dialplan (AMD is not in the recorded
transcripts). Here the manager's phone and the voicemail would both stay on the line for ever:
only the detector ends such an attempt.
"""

from __future__ import annotations

import asyncio

import pytest
from aiohttp.test_utils import TestClient, TestServer
from telephony_harness import DEVICES, Harness, start_harness

from acd.core import events as ev
from acd.core.model import Channel, ContactStatus, Outcome, Presence
from acd.pbxsim import Phone
from acd.telephony.callback_dialers import asterisk_machine
from acd.web.reports import day_report

CUSTOMER = "Local/79165550000@acd-outbound"  # asterisk.outbound_dial with the customer's number
VOICEMAIL = "LONGGREETING-2000-1500"  # AMDCAUSE of a long recorded greeting


def managers_stay_on_the_line(h: Harness) -> None:
    for device in DEVICES.values():
        h.sim.phones[device].talk_for = None


def originates(h: Harness) -> list[list[tuple[str, str]]]:
    return [a for s in h.sim.ami.all_sessions for a in s.actions if ("Action", "Originate") in a]


async def test_a_voicemail_that_answers_is_a_failed_attempt_retried_and_the_manager_is_let_go() -> None:
    h, stop = await start_harness(callback_machine_detection=True)
    try:
        managers_stay_on_the_line(h)
        customer = h.sim.add_phone(Phone(CUSTOMER, answer_after=0.2, talk_for=None, machine=VOICEMAIL))
        missed: list[tuple[str, int]] = []

        async def tried_to_call(contact_id: str, attempt: int) -> None:  # the "we tried to call you" notice
            missed.append((contact_id, attempt))

        h.telephony.callbacks.customer_missed = tried_to_call
        cb = await h.telephony.callbacks.request(phone="+7 916 555-00-00")
        offer = await h.command(ev.OfferContact, lambda c: c.contact.id == cb.contact_id)
        first = await asyncio.wait_for(h.telephony.callbacks.results.get(), 5)
        assert first.dial_status == "MACHINE" and first.manager_id == offer.manager.id
        assert first.result == f"answering machine ({VOICEMAIL})"
        assert ("Variable", "ACD_AMD=1") in originates(h)[0]
        event = await h.user_event("CallbackResult")
        assert (event["AMDStatus"], event["AMDCause"]) == ("MACHINE", VOICEMAIL)
        assert missed == [(cb.contact_id, 1)]

        # The manager's leg was hung up by the dialplan, not left with the machine; they are free.
        await h.settle()
        hung_up = [dict(e)["Channel"] for e in h.sim.events if ("Event", "Hangup") in e]
        assert any(name.startswith(offer.manager.device + "-") for name in hung_up)
        manager = h.board.managers[offer.manager.id]
        assert manager.presence is not Presence.PAUSED and manager.load.get(Channel.CALLBACK, 0) == 0
        row = await h.telephony.tstore.get_callback(cb.id)
        assert row is not None and row.status in ("pending", "queued", "dialling") and row.attempts == 1
        assert row.last_result == f"answering machine ({VOICEMAIL})"

        # The retry, after the back-off, reaches the person.
        customer.machine, customer.talk_for = None, 1.0
        await h.command(ev.OfferContact, lambda c: c.contact.id == cb.contact_id)
        second = await asyncio.wait_for(h.telephony.callbacks.results.get(), 5)
        assert second.dial_status == "ANSWER" and second.result == "customer answered"
        assert len(originates(h)) == 2

        row = await h.telephony.tstore.get_callback(cb.id)
        assert row is not None and row.status == "done" and row.attempts == 1
        supervisor = await h.server.store.create_token("supervisor", None)
        async with TestClient(TestServer(h.server.app)) as http:
            resp = await http.get(f"/api/callbacks/{cb.id}", headers={"Authorization": f"Bearer {supervisor}"})
            log = [(a["dial_status"], a["result"]) for a in (await resp.json())["attempts_log"]]
        assert log == [("MACHINE", f"answering machine ({VOICEMAIL})"), ("ANSWER", "customer answered")]
    finally:
        await stop()


async def test_a_callback_only_ever_answered_by_a_machine_is_given_up_unreached() -> None:
    h, stop = await start_harness(callback_machine_detection=True, callback_attempts=2)
    try:
        managers_stay_on_the_line(h)
        h.sim.add_phone(Phone(CUSTOMER, answer_after=0.2, talk_for=None, machine="INITIALSILENCE-2500-2500"))
        cb = await h.telephony.callbacks.request(phone="+7 916 555-00-00")
        tried = [await asyncio.wait_for(h.telephony.callbacks.results.get(), 5) for _ in range(2)]
        assert [a.dial_status for a in tried] == ["MACHINE", "MACHINE"]
        await h.settle()
        row = await h.telephony.tstore.get_callback(cb.id)
        assert row is not None and row.status == "failed" and row.attempts == 2
        contact = h.board.contacts.get(cb.contact_id) or await h.server.store.get_contact(cb.contact_id)
        assert contact is not None and contact.status is ContactStatus.FINISHED
        assert contact.outcome is Outcome.UNREACHED  # reports count it unreached, not talked through
        now = h.server.services.clock()
        report = day_report([contact], [], [], "UTC", now - 3600, now + 1, {}, now)
        assert report["managers"][0]["unreached"] == 1 and report["managers"][0]["done"] == 0
    finally:
        await stop()


async def test_a_person_who_answers_is_talked_to_as_before_with_detection_on() -> None:
    h, stop = await start_harness(callback_machine_detection=True)
    try:
        managers_stay_on_the_line(h)
        h.sim.add_phone(Phone(CUSTOMER, answer_after=0.2, talk_for=1.0))
        cb = await h.telephony.callbacks.request(phone="+7 916 555-00-00")
        await h.command(ev.OfferContact, lambda c: c.contact.channel is Channel.CALLBACK)
        attempt = await asyncio.wait_for(h.telephony.callbacks.results.get(), 5)
        assert attempt.dial_status == "ANSWER" and attempt.result == "customer answered"
        event = await h.user_event("CallbackResult")
        assert event["AMDStatus"] == "HUMAN"
        row = await h.telephony.tstore.get_callback(cb.id)
        assert row is not None and row.status == "done"
    finally:
        await stop()


async def test_with_detection_off_nothing_listens_and_a_machine_is_talked_to_as_today(h: Harness) -> None:
    h.sim.add_phone(Phone(CUSTOMER, answer_after=0.2, talk_for=1.0, machine=VOICEMAIL))
    cb = await h.telephony.callbacks.request(phone="+7 916 555-00-00")
    attempt = await asyncio.wait_for(h.telephony.callbacks.results.get(), 5)
    assert attempt.dial_status == "ANSWER"
    assert not any(name == "Variable" and value.startswith("ACD_AMD") for name, value in originates(h)[0])
    event = await h.user_event("CallbackResult")
    assert event["AMDStatus"] == "" and event["AMDCause"] == ""
    row = await h.telephony.tstore.get_callback(cb.id)
    assert row is not None and row.status == "done"


@pytest.mark.parametrize(
    ("status", "cause", "verdict"),
    [
        ("MACHINE", "MAXWORDS-4-3", "MAXWORDS-4-3"),
        ("MACHINE", "", "MACHINE"),
        ("NOTSURE", "TOOLONG-5000", ""),  # unsure: connected, as a person
        ("HUMAN", "HUMAN-400-300", ""),
        ("HANGUP", "", ""),
        (None, None, ""),  # an older dialplan without AMD
    ],
)
def test_what_counts_as_a_machine_in_amds_verdict(status: str | None, cause: str | None, verdict: str) -> None:
    assert asterisk_machine(status, cause) == verdict
