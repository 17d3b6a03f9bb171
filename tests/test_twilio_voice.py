"""Twilio voice: webhooks signed with the twilio library's RequestValidator drive a whole
call (IVR → queue → Dial to the chosen manager → answered → hung up), with valid TwiML at
each step; forged or unsigned requests get 403. The REST calls that move a live call go to
a local stand-in of Twilio's API, because the real Twilio cloud is unreachable from here."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from urllib.parse import urlsplit

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from api_fixtures import Running, example_deployment, start, stop
from storage_fixtures import Backend
from twilio.request_validator import RequestValidator
from twilio_fixtures import hook

from acd.api.twilio import TWILIO
from acd.config.messaging import TwilioSettings
from acd.core import events as ev
from acd.core.model import ContactStatus, Presence

SID = "AC" + "1" * 32
TOKEN = "twilio-test-token"
PUBLIC = "https://acd.example.test"
VERBS = {"Say", "Play", "Gather", "Redirect", "Enqueue", "Dial", "Hangup", "Pause", "Number", "Client", "Sip"}


@dataclass
class CallsStandIn:
    """POST /2010-04-01/Accounts/{sid}/Calls/{CallSid}.json as api.twilio.com answers it."""

    updates: asyncio.Queue[tuple[str, dict[str, str]]] = field(default_factory=asyncio.Queue)
    server: TestServer | None = None

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/2010-04-01/Accounts/{sid}/Calls/{call}.json", self.update)
        self.server = TestServer(app, host="127.0.0.1", port=0)
        await self.server.start_server()
        return str(self.server.make_url("")).rstrip("/")

    async def update(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.updates.put_nowait((request.match_info["call"], form))
        return web.json_response({"sid": request.match_info["call"], "status": "in-progress", "account_sid": SID})


@pytest.fixture
async def voice(backend: Backend) -> AsyncIterator[tuple[Running, CallsStandIn]]:
    stand_in = CallsStandIn()
    base = await stand_in.start()
    d = example_deployment()
    twilio = TwilioSettings(
        SID,
        PUBLIC,
        enabled=True,
        auth_token=TOKEN,
        api_base=base,
        numbers={"+74951234567": "main"},
        managers={m.id: f"+7900000000{i}" for i, m in enumerate(d.managers)},
        hold_music="https://acd.example.test/hold.mp3",
    )
    r = await start(backend, replace(d, twilio=twilio))
    try:
        yield r, stand_in
    finally:
        await stop(r)
        assert stand_in.server is not None
        await stand_in.server.close()


def twiml(text: str) -> ET.Element:
    root = ET.fromstring(text)
    assert root.tag == "Response"
    for el in root.iter():
        assert el is root or el.tag in VERBS, el.tag
    return root


def local(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


async def test_a_twilio_call_runs_the_ivr_waits_in_the_queue_and_is_dialled_to_the_chosen_manager(
    voice: tuple[Running, CallsStandIn],
) -> None:
    r, stand_in = voice
    call = {"CallSid": "CA100", "From": "+79161234567", "To": "+74951234567", "AccountSid": SID}
    keys = iter(["1", "2", "3"])  # hot, licence renewal, over 1M
    status, body = await hook(r, "/twilio/voice", call)
    said: list[str] = []
    for _ in range(20):
        assert status == 200
        root = twiml(body)
        said += [el.text or "" for el in root.iter("Say")]
        if root.find("Enqueue") is not None:
            break
        gather, redirect = root.find("Gather"), root.find("Redirect")
        if gather is not None:
            assert gather.get("input") == "dtmf" and gather.get("numDigits") == "1"
            assert all(s.get("language") == "ru-RU" for s in gather.iter("Say"))
            status, body = await hook(r, gather.get("action", ""), {**call, "Digits": next(keys)})
        else:
            assert redirect is not None and redirect.text
            status, body = await hook(r, redirect.text, call)
    enqueue = root.find("Enqueue")
    assert enqueue is not None and enqueue.text == "acd"
    assert any("Здравствуйте" in s for s in said)  # the greeting, chosen by the dialled number
    wait_status, wait = await hook(r, enqueue.get("waitUrl", ""), call)
    assert wait_status == 200 and twiml(wait).find("Play") is not None  # hold music

    await r.settle()
    [contact] = [c for c in r.server.dispatcher.board.contacts.values() if c.phone == "+79161234567"]
    assert dict(contact.criteria) == {"temperature": "hot", "purpose": "renewal", "price_tier": "high"}
    assert contact.status is ContactStatus.OFFERED
    manager = contact.offered_to
    assert manager is not None

    # the core's offer: the caller's live call is moved to /connect over the REST API
    sid, update = await asyncio.wait_for(stand_in.updates.get(), 5)
    assert sid == "CA100" and update["Method"] == "POST"
    connect = local(update["Url"])
    assert connect.startswith("/twilio/voice/connect") and f"manager={manager}" in connect
    status, body = await hook(r, connect, call)
    dial = twiml(body).find("Dial")
    assert dial is not None
    number = dial.find("Number")
    assert number is not None and number.text == r.server.deployment.twilio.managers[manager]  # type: ignore[union-attr]
    assert 5 <= int(dial.get("timeout", "0")) <= 20  # the call channel's offer timeout

    status, body = await hook(r, number.get("url", ""), {**call, "CallSid": "CA200"})  # the manager answers
    assert status == 200
    twiml(body)
    assert r.server.dispatcher.board.contacts[contact.id].status is ContactStatus.ASSIGNED

    status, _ = await hook(r, "/twilio/voice/status", {**call, "CallStatus": "completed"})
    assert status == 200
    await r.settle()
    assert contact.id not in r.server.dispatcher.board.contacts  # finished
    stored = await r.server.store.get_contact(contact.id)
    assert stored is not None and stored.status is ContactStatus.FINISHED


async def test_a_caller_who_hangs_up_while_waiting_is_abandoned(voice: tuple[Running, CallsStandIn]) -> None:
    r, _ = voice
    for m in list(r.server.dispatcher.board.managers):
        await r.server.dispatcher.submit(ev.PresenceSet(m, Presence.PAUSED, "lunch"))
    call = {"CallSid": "CA300", "From": "+79160000000", "To": "+74951234567"}
    _, body = await hook(r, "/twilio/voice", call)
    for _ in range(20):
        root = twiml(body)
        if root.find("Enqueue") is not None:
            break
        nxt = root.find("Gather")
        target = nxt.get("action", "") if nxt is not None else (root.find("Redirect").text or "")  # type: ignore[union-attr]
        _, body = await hook(r, target, call)
    await r.settle()
    [c] = [c for c in r.server.dispatcher.board.contacts.values() if c.phone == "+79160000000"]
    assert c.status is ContactStatus.WAITING

    await hook(r, "/twilio/voice/status", {**call, "CallStatus": "completed"})
    await r.settle()
    stored = await r.server.store.get_contact(c.id)
    assert stored is not None and stored.status is ContactStatus.ABANDONED


async def test_unsigned_or_forged_webhooks_are_refused_with_403(voice: tuple[Running, CallsStandIn]) -> None:
    r, stand_in = voice
    call = {"CallSid": "CA666", "From": "+79990000000", "To": "+74951234567"}
    other_url = RequestValidator(TOKEN).compute_signature(PUBLIC + "/twilio/voice/wait", call)
    wrong_key = RequestValidator("not-the-token").compute_signature(PUBLIC + "/twilio/voice", call)

    assert (await hook(r, "/twilio/voice", call, signature=None))[0] == 403
    assert (await hook(r, "/twilio/voice", call, signature=wrong_key))[0] == 403
    assert (await hook(r, "/twilio/voice", call, signature=other_url))[0] == 403
    tampered = RequestValidator(TOKEN).compute_signature(PUBLIC + "/twilio/voice", call)
    assert (await hook(r, "/twilio/voice", {**call, "From": "+70000000000"}, signature=tampered))[0] == 403
    assert (await hook(r, "/twilio/voice", call))[0] == 200
    assert r.server.app[TWILIO] is not None and stand_in.updates.empty()
