"""A Twilio callback whose customer's leg a machine answered: the manager waiting on the line is
told so, in the callback's language (the one the "Callback to …" word was said in), before their
leg is hung up — "we will call again later", or that it was the last attempt.

Twilio is played by the test: its REST API is the local stand-in of `twilio_fixtures`, its
webhooks are POSTed signed as Twilio signs them."""

from __future__ import annotations

import pytest
from api_fixtures import Running, start, stop
from storage_fixtures import Backend
from test_twilio_machine_detection import CUSTOMER, CUSTOMER_LEG, manager_picks_up, result
from twilio_fixtures import TwilioStandIn, hook, next_of, twilio_deployment, twilio_office, twiml


def notice(body: str) -> tuple[str, str]:
    """The <Say> before the <Hangup/> of the manager's leg: (text, language)."""
    root = twiml(body)
    assert [el.tag for el in root] == ["Say", "Hangup"], body
    say = root.find("Say")
    assert say is not None and say.text
    return say.text, say.get("language", "")


async def ask(r: Running, language: str) -> None:
    status, out = await r.call("POST", "/api/callbacks", json={"phone": CUSTOMER, "language": language})
    assert status == 201, out


@pytest.mark.parametrize(
    ("language", "said"),
    [
        ("ru", ("Автоответчик. Перезвоним позже.", "ru-RU")),
        ("en", ("Answering machine; we will call again later.", "en-US")),
    ],
)
async def test_the_manager_hears_that_a_machine_answered_before_the_line_drops(
    backend: Backend, language: str, said: tuple[str, str]
) -> None:
    async with twilio_office(backend, callback_machine_detection=True) as (r, twilio):
        await ask(r, language)
        created, dial_action, number = await manager_picks_up(r, twilio)
        status, body = await hook(r, number.get("url", ""), {"CallSid": CUSTOMER_LEG, "AnsweredBy": "machine_start"})
        assert status == 200 and twiml(body).find("Hangup") is not None  # the machine's leg
        assert (await result(r)).dial_status == "MACHINE"

        # the customer's leg is over, so the manager's <Dial> ends: its action is what they hear
        status, body = await hook(r, dial_action, {"CallSid": created["Sid"], "DialCallStatus": "completed"})
        assert status == 200 and notice(body) == said
        # told once: Twilio retrying the action (no answer in time) only hangs up
        status, body = await hook(r, dial_action, {"CallSid": created["Sid"], "DialCallStatus": "completed"})
        assert status == 200 and [el.tag for el in twiml(body)] == ["Hangup"]


async def test_after_the_last_attempt_the_manager_is_not_promised_another(backend: Backend) -> None:
    async with twilio_office(backend, callback_attempts=1, callback_machine_detection=True) as (r, twilio):
        await ask(r, "ru")
        created, dial_action, number = await manager_picks_up(r, twilio)
        await hook(r, number.get("url", ""), {"CallSid": CUSTOMER_LEG, "AnsweredBy": "fax"})
        status, body = await hook(r, dial_action, {"CallSid": created["Sid"], "DialCallStatus": "completed"})
        assert status == 200 and notice(body) == ("Автоответчик. Это была последняя попытка.", "ru-RU")


async def test_the_last_attempt_is_the_requests_own_after_the_setting_changed(backend: Backend) -> None:
    """A request made while callback_attempts was 2 keeps 2 after a restart with 5: its second
    attempt is its last, and the manager is not promised a third."""
    twilio = TwilioStandIn()
    base = await twilio.start()
    try:
        r = await start(backend, twilio_deployment(base, callback_attempts=2, callback_backoff=0.1))
        try:
            status, cb = await r.call("POST", "/api/callbacks", json={"phone": CUSTOMER, "language": "ru"})
            assert status == 201, cb
            await next_of(twilio.created)  # the manager's phone rings... and the server stops: attempt 1 failed
        finally:
            await stop(r)
        later = twilio_deployment(base, callback_attempts=5, callback_backoff=0.1, callback_machine_detection=True)
        r = await start(backend, later)
        try:
            created, dial_action, number = await manager_picks_up(r, twilio)
            await hook(r, number.get("url", ""), {"CallSid": CUSTOMER_LEG, "AnsweredBy": "machine_start"})
            assert (await result(r)).dial_status == "MACHINE"
            status, body = await hook(r, dial_action, {"CallSid": created["Sid"], "DialCallStatus": "completed"})
            assert status == 200 and notice(body) == ("Автоответчик. Это была последняя попытка.", "ru-RU")
            status, shown = await r.call("GET", f"/api/callbacks/{cb['id']}", r.supervisor)
            assert status == 200 and (shown["status"], shown["attempts"]) == ("failed", 2)  # no third
        finally:
            await stop(r)
    finally:
        await twilio.close()


async def test_a_person_who_hangs_up_is_no_machine(backend: Backend) -> None:
    async with twilio_office(backend, callback_machine_detection=True) as (r, twilio):
        await ask(r, "ru")
        created, dial_action, number = await manager_picks_up(r, twilio)
        status, body = await hook(r, number.get("url", ""), {"CallSid": CUSTOMER_LEG, "AnsweredBy": "human"})
        assert status == 200 and twiml(body).find("Hangup") is None
        status, body = await hook(r, dial_action, {"CallSid": created["Sid"], "DialCallStatus": "completed"})
        assert status == 200 and [el.tag for el in twiml(body)] == ["Hangup"]
        assert (await result(r)).dial_status == "ANSWER"
