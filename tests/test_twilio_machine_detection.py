"""Answering machines on a Twilio callback's customer leg (twilio.callback_machine_detection, off
by default): `<Number machineDetection="Enable">` with the Number's `url` (run on the customer's
leg once it answers, before the bridge) and its `amdStatusCallback` both pointing at
/twilio/voice/callback/amd. AnsweredBy machine_* or fax → the attempt fails as MACHINE and is
retried; human or unknown → connected, as before.

Twilio is played by the test (the cloud is unreachable from here): its REST API is the local
stand-in of `twilio_fixtures`, its webhooks are POSTed signed as Twilio signs them."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from api_fixtures import Running
from storage_fixtures import Backend
from twilio_fixtures import TwilioStandIn, hook, local, next_of, twilio_office, twiml

from acd.core.model import ContactStatus, Outcome, Presence
from acd.storage.telephony import Attempt
from acd.telephony.api import CALLBACKS

CUSTOMER = "+7 916 555-00-00"
CUSTOMER_E164 = "+79165550000"
CUSTOMER_LEG = "CA" + "c" * 32  # the customer's leg, a child call of the manager's


async def ask_for_a_callback(r: Running) -> dict[str, object]:
    status, out = await r.call("POST", "/api/callbacks", json={"phone": CUSTOMER, "name": "Иван"})
    assert status == 201, out
    return dict(out)


async def manager_picks_up(r: Running, twilio: TwilioStandIn) -> tuple[dict[str, str], str, ET.Element]:
    """The next attempt rings a manager, who answers: their leg, its <Dial action> and the
    <Number> that dials the customer."""
    created = await next_of(twilio.created)
    _, body = await hook(r, local(created["Url"]), {"CallSid": created["Sid"], "CallStatus": "in-progress"})
    dial = twiml(body).find("Dial")
    number = twiml(body).find("Dial/Number")
    assert dial is not None and number is not None and number.text == CUSTOMER_E164
    return created, dial.get("action", ""), number


async def result(r: Running) -> Attempt:
    attempt: Attempt = await next_of(r.server.app[CALLBACKS].results)
    return attempt


async def test_a_voicemail_that_answers_fails_the_attempt_before_the_bridge_and_it_is_retried(
    backend: Backend,
) -> None:
    async with twilio_office(backend, callback_backoff=0.2, callback_machine_detection=True) as (r, twilio):
        cb = await ask_for_a_callback(r)
        created, dial_action, number = await manager_picks_up(r, twilio)
        assert number.get("machineDetection") == "Enable"
        assert local(number.get("url", "")).startswith("/twilio/voice/callback/amd?")
        assert local(number.get("amdStatusCallback", "")).startswith("/twilio/voice/callback/amd?")

        # Twilio runs the Number's url on the customer's leg once its detector has spoken
        status, body = await hook(
            r,
            number.get("url", ""),
            {"CallSid": CUSTOMER_LEG, "AnsweredBy": "machine_start", "CallStatus": "in-progress"},
        )
        assert status == 200 and twiml(body).find("Hangup") is not None  # never bridged to the manager
        first = await result(r)
        assert first.dial_status == "MACHINE" and first.result == "answering machine (machine_start)"

        # what Twilio sends next is over already: the manager's Dial ends and their leg is hung up
        status, body = await hook(
            r, number.get("amdStatusCallback", ""), {"CallSid": CUSTOMER_LEG, "AnsweredBy": "machine_start"}
        )
        assert status == 200
        status, body = await hook(r, dial_action, {"CallSid": created["Sid"], "DialCallStatus": "completed"})
        assert status == 200 and twiml(body).find("Hangup") is not None
        await hook(r, local(created["StatusCallback"]), {"CallSid": created["Sid"], "CallStatus": "completed"})
        assert twilio.updates.empty()  # nothing left to hang up by REST
        await r.settle()
        manager = r.server.dispatcher.board.managers[first.manager_id]
        assert manager.presence is not Presence.PAUSED  # the manager answered: no missed offer

        # the retry, after the back-off, reaches the person: talked through as without detection
        again, again_action, number = await manager_picks_up(r, twilio)
        status, body = await hook(r, number.get("url", ""), {"CallSid": CUSTOMER_LEG, "AnsweredBy": "human"})
        assert status == 200 and twiml(body).find("Hangup") is None  # connected
        await hook(r, again_action, {"CallSid": again["Sid"], "DialCallStatus": "completed"})
        second = await result(r)
        assert second.dial_status == "ANSWER" and second.result == "customer answered"

        status, shown = await r.call("GET", f"/api/callbacks/{cb['id']}", r.supervisor)
        assert status == 200 and shown["status"] == "done" and shown["attempts"] == 1
        log = [(a["attempt"], a["dial_status"], a["result"]) for a in shown["attempts_log"]]
        assert log == [(1, "MACHINE", "answering machine (machine_start)"), (2, "ANSWER", "customer answered")]
        assert twilio.calls_created == 2


@pytest.mark.parametrize("answered_by", ["machine_end_other", "fax"])
async def test_a_machine_heard_only_after_the_bridge_ends_the_attempt_and_its_leg(
    backend: Backend, answered_by: str
) -> None:
    async with twilio_office(backend, callback_attempts=1, callback_machine_detection=True) as (r, twilio):
        cb = await ask_for_a_callback(r)
        _, _, number = await manager_picks_up(r, twilio)
        # no verdict when the Number's url ran: bridged; then the amdStatusCallback says otherwise
        status, body = await hook(r, number.get("url", ""), {"CallSid": CUSTOMER_LEG})
        assert status == 200 and twiml(body).find("Hangup") is None
        status, _ = await hook(
            r, number.get("amdStatusCallback", ""), {"CallSid": CUSTOMER_LEG, "AnsweredBy": answered_by}
        )
        assert status == 200
        attempt = await result(r)
        assert attempt.dial_status == "MACHINE" and attempt.result == f"answering machine ({answered_by})"
        sid, update = await next_of(twilio.updates)
        assert (sid, update.get("Status")) == (CUSTOMER_LEG, "completed")  # the machine is hung up on
        await r.settle()
        row = await r.server.app[CALLBACKS].tstore.get_callback(str(cb["id"]))
        assert row is not None and row.status == "failed" and row.last_result == attempt.result
        stored = await r.server.store.get_contact(str(cb["contact_id"]))
        assert stored is not None and stored.status is ContactStatus.FINISHED
        assert stored.outcome is Outcome.UNREACHED  # the reports count it unreached, not talked through


async def test_unknown_counts_as_a_person(backend: Backend) -> None:
    async with twilio_office(backend, callback_machine_detection=True) as (r, twilio):
        await ask_for_a_callback(r)
        created, dial_action, number = await manager_picks_up(r, twilio)
        status, body = await hook(r, number.get("url", ""), {"CallSid": CUSTOMER_LEG, "AnsweredBy": "unknown"})
        assert status == 200 and twiml(body).find("Hangup") is None
        await hook(r, dial_action, {"CallSid": created["Sid"], "DialCallStatus": "completed"})
        assert (await result(r)).dial_status == "ANSWER"


async def test_with_detection_off_the_customer_is_dialled_as_today(backend: Backend) -> None:
    async with twilio_office(backend, callback_machine_detection=False) as (r, twilio):
        await ask_for_a_callback(r)
        created, dial_action, number = await manager_picks_up(r, twilio)
        assert dict(number.attrib) == {}  # no detection, no url before the bridge
        await hook(r, dial_action, {"CallSid": created["Sid"], "DialCallStatus": "completed"})
        attempt = await result(r)
        assert attempt.dial_status == "ANSWER" and attempt.result == "customer answered"
