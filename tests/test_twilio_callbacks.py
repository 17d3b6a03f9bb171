"""Callbacks in an office without Asterisk: rung through Twilio's REST API (`calls.create` to
the manager, then a signed webhook Dials the customer), with the same scheduling, attempts,
retries and give-up as the Asterisk path, and the customer told how it goes by SMS.

Twilio's side is played by the test: its REST API is a local stand-in (an aiohttp server on
127.0.0.1 that answers like api.twilio.com, see `twilio_fixtures`) because the real Twilio
cloud is unreachable from here, and its webhooks are POSTed signed with the twilio library's
RequestValidator, as Twilio signs them."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from api_fixtures import EXAMPLE, Running, start, stop
from storage_fixtures import Backend
from twilio.request_validator import RequestValidator
from twilio_fixtures import (
    PUBLIC,
    TOKEN,
    TwilioStandIn,
    hook,
    local,
    next_of,
    twilio_deployment,
    twilio_office,
    twiml,
)

from acd.api.twilio import TWILIO
from acd.config import ConfigError, load_deployment
from acd.core.model import ContactStatus, Presence
from acd.storage.messaging import MessagingStore
from acd.telephony.api import CALLBACKS

CUSTOMER = "+7 916 555-00-00"
CUSTOMER_E164 = "+79165550000"


async def ask_for_a_callback(r: Running, **body: object) -> dict[str, object]:
    status, out = await r.call("POST", "/api/callbacks", json={"phone": CUSTOMER, "name": "Иван", **body})
    assert status == 201, out
    return dict(out)


async def manager_answers(r: Running, created: dict[str, str]) -> tuple[int, str]:
    """Twilio fetches the call's `Url` once the manager picks up (their leg's CallSid)."""
    return await hook(r, local(created["Url"]), {"CallSid": created["Sid"], "CallStatus": "in-progress"})


def manager_of(r: Running, created: dict[str, str]) -> str:
    twilio = r.server.deployment.twilio
    assert twilio is not None
    [mid] = [m for m, number in twilio.managers.items() if number == created["To"]]
    return mid


async def test_a_callback_rings_the_manager_through_twilio_then_the_busy_customer_is_retried_and_reached(
    backend: Backend,
) -> None:
    async with twilio_office(backend, callback_backoff=0.2) as (r, twilio):
        cb = await ask_for_a_callback(r)
        callbacks = r.server.app[CALLBACKS]
        assert callbacks is r.server.app[TWILIO].callbacks  # Asterisk is off: Twilio rings

        created = await next_of(twilio.created)
        assert created["From"] == "+74951234567" and created["Method"] == "POST"
        assert local(created["Url"]).startswith("/twilio/voice/callback/answer?")
        assert local(created["StatusCallback"]).startswith("/twilio/voice/callback/status?")
        assert 5 <= int(created["Timeout"]) <= 18  # shorter than the 20 s offer
        first = manager_of(r, created)
        assert r.server.dispatcher.board.contacts[str(cb["contact_id"])].offered_to == first

        status, body = await manager_answers(r, created)
        assert status == 200
        dial = twiml(body).find("Dial")
        assert dial is not None and dial.get("callerId") == "+74951234567"
        number = dial.find("Number")
        assert number is not None and number.text == CUSTOMER_E164
        assert r.server.dispatcher.board.contacts[str(cb["contact_id"])].status is ContactStatus.ASSIGNED

        # the customer is busy: the attempt counts, and the request waits its back-off
        status, body = await hook(r, dial.get("action", ""), {"CallSid": created["Sid"], "DialCallStatus": "busy"})
        assert status == 200 and twiml(body).find("Hangup") is not None
        attempt = await next_of(callbacks.results)
        assert attempt.dial_status == "BUSY" and attempt.manager_id == first

        again = await next_of(twilio.created)  # the retry, after the back-off
        status, body = await manager_answers(r, again)
        dial = twiml(body).find("Dial")
        assert dial is not None
        await hook(r, dial.get("action", ""), {"CallSid": again["Sid"], "DialCallStatus": "completed"})
        assert (await next_of(callbacks.results)).dial_status == "ANSWER"
        # the manager's leg ends after the customer's: nothing more to do
        await hook(r, local(again["StatusCallback"]), {"CallSid": again["Sid"], "CallStatus": "completed"})

        status, shown = await r.call("GET", f"/api/callbacks/{cb['id']}", r.supervisor)
        assert status == 200 and shown["status"] == "done" and shown["attempts"] == 1
        log = [(a["attempt"], a["originate_reason"], a["dial_status"]) for a in shown["attempts_log"]]
        assert log == [(1, "in-progress", "BUSY"), (2, "in-progress", "ANSWER")]
        await r.settle()
        stored = await r.server.store.get_contact(str(cb["contact_id"]))
        assert stored is not None and stored.status is ContactStatus.FINISHED
        assert twilio.calls_created == 2  # one call per attempt, never twice


async def test_a_number_written_the_russian_national_way_is_dialled_with_its_country_code(backend: Backend) -> None:
    """ "8 (916) ..." is +7 916 ... in Russia (crm.default_region), not +8 916 ..."""
    async with twilio_office(backend) as (r, twilio):
        await ask_for_a_callback(r, phone="8 (916) 555-00-00")
        status, body = await manager_answers(r, await next_of(twilio.created))
        assert status == 200
        dial = twiml(body).find("Dial")
        number = dial.find("Number") if dial is not None else None
        assert number is not None and number.text == CUSTOMER_E164


async def test_a_manager_who_does_not_answer_a_twilio_callback_is_paused_and_the_next_one_is_rung(
    backend: Backend,
) -> None:
    async with twilio_office(backend, offer_timeout=4.0) as (r, twilio):
        cb = await ask_for_a_callback(r)
        created = await next_of(twilio.created)
        first = manager_of(r, created)
        assert int(created["Timeout"]) == 5  # Twilio's least; the offer is cut at 4 s anyway

        # Twilio gives up ringing: no-answer. The core's offer timer declares the miss.
        await hook(r, local(created["StatusCallback"]), {"CallSid": created["Sid"], "CallStatus": "no-answer"})
        second = await next_of(twilio.created)
        assert manager_of(r, second) != first
        board = r.server.dispatcher.board
        assert board.managers[first].presence is Presence.PAUSED  # missed offer
        assert board.contacts[str(cb["contact_id"])].offered_to == manager_of(r, second)

        callbacks = r.server.app[CALLBACKS]
        row = await callbacks.tstore.get_callback(str(cb["id"]))
        assert row is not None and row.attempts == 0  # the customer was never dialled: no attempt used
        [missed, ringing] = await callbacks.tstore.attempts(str(cb["id"]))
        assert missed.result == "manager did not answer" and missed.originate_reason == "no-answer"
        assert ringing.manager_id == manager_of(r, second) and ringing.ended_at is None


async def test_a_busy_manager_is_skipped_at_once_without_a_pause(backend: Backend) -> None:
    async with twilio_office(backend) as (r, twilio):
        await ask_for_a_callback(r)
        created = await next_of(twilio.created)
        first = manager_of(r, created)
        await hook(r, local(created["StatusCallback"]), {"CallSid": created["Sid"], "CallStatus": "busy"})
        second = await next_of(twilio.created, timeout=5)  # long before the 20 s offer would end
        assert manager_of(r, second) != first
        assert r.server.dispatcher.board.managers[first].presence is not Presence.PAUSED


async def test_an_offer_that_runs_out_cancels_the_ringing_leg_and_a_late_answer_is_hung_up(
    backend: Backend,
) -> None:
    async with twilio_office(backend, offer_timeout=4.0) as (r, twilio):
        await ask_for_a_callback(r)
        created = await next_of(twilio.created)
        # Twilio never reports (its callback is late): the core's timer ends the offer, the leg
        # is cancelled over REST, and the next manager is rung at once
        sid, update = await next_of(twilio.updates)
        assert sid == created["Sid"] and update["Status"] == "canceled"
        second = await next_of(twilio.created)
        assert manager_of(r, second) != manager_of(r, created)

        status, body = await manager_answers(r, created)  # the first manager picks up too late
        assert status == 200 and twiml(body).find("Hangup") is not None
        assert r.server.dispatcher.board.managers[manager_of(r, created)].presence is Presence.PAUSED


async def test_a_customer_never_reached_is_given_up_after_the_attempts_and_told_each_time_and_at_the_end(
    backend: Backend,
) -> None:
    async with twilio_office(backend, notify=True, callback_attempts=2, callback_backoff=0.1) as (r, twilio):
        cb = await ask_for_a_callback(r)
        ack = await next_of(twilio.sms)
        assert ack["To"] == CUSTOMER_E164 and "перезвонить" in ack["Body"] and CUSTOMER in ack["Body"]
        told = []
        for _ in (1, 2):
            created = await next_of(twilio.created)
            _, body = await manager_answers(r, created)
            dial = twiml(body).find("Dial")
            assert dial is not None
            await hook(r, dial.get("action", ""), {"CallSid": created["Sid"], "DialCallStatus": "no-answer"})
            told.append(await next_of(twilio.sms))
        assert all(sms["To"] == CUSTOMER_E164 and "не дозвонились" in sms["Body"] for sms in told)
        assert "попробуем ещё раз" in told[0]["Body"] and "несколько раз" in told[1]["Body"]  # then: given up
        callbacks = r.server.app[CALLBACKS]
        assert [(await next_of(callbacks.results)).dial_status for _ in (1, 2)] == ["NOANSWER", "NOANSWER"]
        row = await callbacks.tstore.get_callback(str(cb["id"]))  # saved before each result is announced
        assert row is not None and row.status == "failed"
        assert row.attempts == 2 and row.last_result == "customer noanswer"
        await r.settle()
        assert str(cb["contact_id"]) not in r.server.dispatcher.board.contacts  # nothing left offered or busy
        sent = await MessagingStore(r.server.store).list_notifications(str(cb["contact_id"]))
        assert sorted(n.event_key for n in sent) == sorted(
            [
                f"callback_requested:{cb['id']}",
                f"callback_failed:{cb['contact_id']}:1",
                f"callback_given_up:{cb['contact_id']}:2",
            ]
        )
        assert twilio.calls_created == 2


async def test_callback_webhooks_refuse_unsigned_or_forged_requests(backend: Backend) -> None:
    async with twilio_office(backend) as (r, twilio):
        await ask_for_a_callback(r)
        created = await next_of(twilio.created)
        path = local(created["Url"])
        form = {"CallSid": created["Sid"], "CallStatus": "in-progress"}
        forged = RequestValidator("not-the-token").compute_signature(PUBLIC + path, form)
        assert (await hook(r, path, form, signature=None))[0] == 403
        assert (await hook(r, path, form, signature=forged))[0] == 403
        other = RequestValidator(TOKEN).compute_signature(PUBLIC + path.replace("attempt=", "attempt=x"), form)
        assert (await hook(r, path, form, signature=other))[0] == 403
        assert r.server.dispatcher.board.contacts[local(created["Url"]).split("contact=")[1].split("&")[0]].status is (
            ContactStatus.OFFERED
        )  # nothing forged was believed


async def test_an_attempt_in_flight_when_the_server_stops_counts_as_failed_and_is_retried_after_a_restart(
    backend: Backend,
) -> None:
    twilio = TwilioStandIn()
    base = await twilio.start()
    d = twilio_deployment(base, callback_backoff=0.1)
    try:
        r = await start(backend, d)
        try:
            cb = await ask_for_a_callback(r)
            await next_of(twilio.created)  # the manager's phone rings... and the server stops
        finally:
            await stop(r)

        r = await start(backend, d)
        try:
            again = await next_of(twilio.created)  # after the back-off: a new attempt, a new call
            status, body = await manager_answers(r, again)
            dial = twiml(body).find("Dial")
            assert dial is not None
            await hook(r, dial.get("action", ""), {"CallSid": again["Sid"], "DialCallStatus": "completed"})
            callbacks = r.server.app[CALLBACKS]
            assert (await next_of(callbacks.results)).dial_status == "ANSWER"
            status, shown = await r.call("GET", f"/api/callbacks/{cb['id']}", r.supervisor)
            assert status == 200 and shown["status"] == "done" and shown["attempts"] == 1
            assert shown["last_result"] == "customer answered"
            assert [a["attempt"] for a in shown["attempts_log"]] == [1, 2]
        finally:
            await stop(r)
    finally:
        await twilio.close()


def test_the_twilio_callback_keys_are_read_and_checked(tmp_path: Path) -> None:
    section = (
        "twilio:\n  enabled: true\n  account_sid: AC" + "c" * 32 + "\n  public_url: https://acd.example\n"
        "  ring_time: 15s\n  customer_ring: 40s\n  callback_attempts: 5\n  callback_backoff: 5m\n"
    )
    text = EXAMPLE.read_text(encoding="utf-8").replace("# ---- Twilio (a second", section + "# ---- Twilio (a second")
    (tmp_path / "config").mkdir()
    (tmp_path / "ivr_flows").symlink_to(EXAMPLE.parent.parent / "ivr_flows")
    path = tmp_path / "config" / "acd.yaml"  # flows_dir is ../ivr_flows, as in the repository
    path.write_text(text, encoding="utf-8")
    d = load_deployment(path, environ={})
    assert d.twilio is not None and d.twilio.callbacks
    assert (d.twilio.ring_time, d.twilio.customer_ring) == (15.0, 40.0)
    assert (d.twilio.callback_attempts, d.twilio.callback_backoff) == (5, 300.0)
    assert d.notifications.customer["callback_requested"] == ("sms", "email")  # the example's

    path.write_text(text.replace("callback_attempts: 5", "callback_attempts: 0"), encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_deployment(path, environ={})
    [problem] = err.value.problems
    assert problem.startswith(f"{path}: twilio.callback_attempts: ")


async def test_a_talked_through_callback_counts_as_reached_when_the_managers_status_callback_comes_first(
    backend: Backend,
) -> None:
    """The manager hangs up after talking: Twilio requests the customer's <Dial action> and the
    manager leg's status callback at once, in no set order. The status callback landing first
    must not make the conversation a failed attempt (a second call and a "we could not reach
    you" SMS to a customer who was just served)."""
    async with twilio_office(backend, notify=True, callback_backoff=0.1) as (r, twilio):
        cb = await ask_for_a_callback(r)
        await next_of(twilio.sms)  # "we will call you back"
        created = await next_of(twilio.created)
        _, body = await manager_answers(r, created)
        dial = twiml(body).find("Dial")
        assert dial is not None

        status, _ = await hook(
            r, local(created["StatusCallback"]), {"CallSid": created["Sid"], "CallStatus": "completed"}
        )
        assert status == 200
        status, _ = await hook(r, dial.get("action", ""), {"CallSid": created["Sid"], "DialCallStatus": "completed"})
        assert status == 200

        callbacks = r.server.app[CALLBACKS]
        assert (await next_of(callbacks.results)).dial_status == "ANSWER"
        status, shown = await r.call("GET", f"/api/callbacks/{cb['id']}", r.supervisor)
        assert status == 200 and shown["status"] == "done" and shown["last_result"] == "customer answered"
        await r.settle()
        stored = await r.server.store.get_contact(str(cb["contact_id"]))
        assert stored is not None and stored.status is ContactStatus.FINISHED
        await asyncio.sleep(0.5)  # longer than the back-off: a wrongly counted failure would ring again
        assert twilio.calls_created == 1 and twilio.sms.empty()


async def test_a_managers_leg_that_ends_with_no_dial_result_ends_the_attempt_after_the_grace(
    backend: Backend,
) -> None:
    """Twilio never requests the Dial action (the manager hung up before the customer's leg
    said anything): after `action_grace` the attempt is over, unreached, and retried."""
    async with twilio_office(backend, callback_backoff=0.1) as (r, twilio):
        callbacks = r.server.app[CALLBACKS]
        callbacks.dialer.action_grace = 0.3  # type: ignore[attr-defined]
        await ask_for_a_callback(r)
        created = await next_of(twilio.created)
        await manager_answers(r, created)
        await hook(r, local(created["StatusCallback"]), {"CallSid": created["Sid"], "CallStatus": "completed"})
        assert (await next_of(callbacks.results)).dial_status == "CANCEL"
        await next_of(twilio.created)  # the retry


async def test_a_retried_answer_webhook_keeps_the_callback_connected(backend: Backend) -> None:
    """Twilio retries a webhook whose answer it did not get in time (read timeout, or a
    connection override such as #rp=all): the second /callback/answer for the same leg must
    Dial the customer again, not hang up the manager and drop the attempt."""
    async with twilio_office(backend) as (r, twilio):
        cb = await ask_for_a_callback(r)
        created = await next_of(twilio.created)
        _, first = await manager_answers(r, created)
        status, again = await manager_answers(r, created)  # the same request, retried
        assert status == 200 and twiml(again).find("Hangup") is None
        dial = twiml(again).find("Dial")
        assert dial is not None and dial.get("action") == twiml(first).find("Dial").get("action")  # type: ignore[union-attr]
        assert r.server.dispatcher.board.contacts[str(cb["contact_id"])].status is ContactStatus.ASSIGNED

        await hook(r, dial.get("action", ""), {"CallSid": created["Sid"], "DialCallStatus": "completed"})
        assert (await next_of(r.server.app[CALLBACKS].results)).dial_status == "ANSWER"
        status, shown = await r.call("GET", f"/api/callbacks/{cb['id']}", r.supervisor)
        assert status == 200 and shown["status"] == "done"
