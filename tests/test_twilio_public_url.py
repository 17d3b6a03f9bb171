"""Twilio reaches the server through a reverse proxy at `twilio.public_url`, which may carry a
path (https://host/acd, the proxy stripping /acd). Twilio resolves a relative URL in TwiML
against the URL it fetched the TwiML from, so every URL we hand it must be absolute under
`public_url`, or the caller's next request goes to https://host/twilio/voice/..., which the
proxy does not pass on, and the call drops at the first prompt.

Twilio is played by the test (`twilio_fixtures.resolve` resolves each URL as Twilio does and
lets through only what the proxy serves; webhooks are signed with the twilio library's
RequestValidator over that URL); its REST API is a local stand-in on 127.0.0.1, because the
real Twilio cloud is unreachable from here."""

from __future__ import annotations

from dataclasses import replace

from storage_fixtures import Backend
from twilio_fixtures import OUR_NUMBER, hook, next_of, queue_a_call, twilio_deployment, twilio_office, twiml

from acd.config import Deployment
from acd.core.model import ContactStatus
from acd.telephony.api import CALLBACKS

BEHIND_PROXY = "https://pbx.example.test/acd"


def prefixed(base: str) -> Deployment:
    d = twilio_deployment(base)
    assert d.twilio is not None
    return replace(d, twilio=replace(d.twilio, public_url=BEHIND_PROXY))


async def test_a_call_runs_end_to_end_when_public_url_has_a_path(backend: Backend) -> None:
    async with twilio_office(backend, deployment=prefixed) as (r, twilio):
        call = {"CallSid": "CA7000", "From": "+79161237000", "To": OUR_NUMBER}
        root = await queue_a_call(r, call, public=BEHIND_PROXY)  # every Gather/Redirect reached us
        enqueue = root.find("Enqueue")
        assert enqueue is not None
        status, wait = await hook(r, enqueue.get("waitUrl", ""), call, public=BEHIND_PROXY)
        assert status == 200 and twiml(wait).find("Play") is not None

        sid, update = await next_of(twilio.updates)  # the core's offer: REST redirect to /connect
        assert sid == call["CallSid"] and update["Url"].startswith(BEHIND_PROXY + "/twilio/voice/connect?")
        status, body = await hook(r, update["Url"], call, public=BEHIND_PROXY)
        dial = twiml(body).find("Dial")
        number = dial.find("Number") if dial is not None else None
        assert dial is not None and number is not None, body
        leg = {**call, "CallSid": "CA7001"}
        assert (await hook(r, number.get("url", ""), leg, public=BEHIND_PROXY))[0] == 200  # the manager answers
        await r.settle()
        [c] = [c for c in r.server.dispatcher.board.contacts.values() if c.phone == call["From"]]
        assert c.status is ContactStatus.ASSIGNED

        status, body = await hook(
            r, dial.get("action", ""), {**call, "DialCallStatus": "completed"}, public=BEHIND_PROXY
        )
        assert status == 200 and twiml(body).find("Hangup") is not None
        await r.settle()
        stored = await r.server.store.get_contact(c.id)
        assert stored is not None and stored.status is ContactStatus.FINISHED


async def test_a_callback_runs_when_public_url_has_a_path(backend: Backend) -> None:
    async with twilio_office(backend, deployment=prefixed) as (r, twilio):
        status, cb = await r.call("POST", "/api/callbacks", json={"phone": "+79165550000", "name": "Иван"})
        assert status == 201, cb
        created = await next_of(twilio.created)
        assert created["Url"].startswith(BEHIND_PROXY + "/twilio/voice/callback/answer?")
        assert created["StatusCallback"].startswith(BEHIND_PROXY + "/twilio/voice/callback/status?")
        answer = {"CallSid": created["Sid"], "CallStatus": "in-progress"}
        status, body = await hook(r, created["Url"], answer, public=BEHIND_PROXY)
        dial = twiml(body).find("Dial")
        assert status == 200 and dial is not None, body
        done = {"CallSid": created["Sid"], "DialCallStatus": "completed"}
        assert (await hook(r, dial.get("action", ""), done, public=BEHIND_PROXY))[0] == 200
        assert (await next_of(r.server.app[CALLBACKS].results)).dial_status == "ANSWER"
        status, shown = await r.call("GET", f"/api/callbacks/{cb['id']}", r.supervisor)
        assert status == 200 and shown["status"] == "done"
