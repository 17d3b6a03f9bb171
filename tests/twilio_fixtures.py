"""A Twilio office for tests: the real server with `twilio:` on and Asterisk off, a local
stand-in of Twilio's REST API, and webhooks signed the way Twilio signs them.

The real Twilio cloud is unreachable from here, so the stand-in is an aiohttp server on
127.0.0.1 (port 0) that answers Calls and Messages requests as api.twilio.com does and records
them; the server reaches it through the twilio library's own client (`twilio.api_base`)."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urljoin, urlsplit

from aiohttp import web
from aiohttp.test_utils import TestServer
from api_fixtures import Running, example_deployment, start, stop
from storage_fixtures import Backend
from twilio.request_validator import HMAC_SHA256, SIGNATURE_SETTINGS_HEADER, RequestValidator

from acd.config import Deployment
from acd.config.messaging import TwilioSettings
from acd.core.hours import Calendar
from acd.core.model import Channel
from acd.core.policy import ChannelRules

SID = "AC" + "1" * 32
TOKEN = "twilio-test-token"
PUBLIC = "https://acd.example.test"
OUR_NUMBER = "+74951234567"
# Twilio's REST errors the stand-in can answer: code -> (HTTP status, message)
REST_ERRORS = {
    21220: (400, "Call is not in-progress. Cannot redirect."),
    20429: (429, "Too Many Requests"),
}
VERBS = {"Say", "Play", "Gather", "Redirect", "Enqueue", "Dial", "Hangup", "Pause", "Number", "Client", "Sip"}


@dataclass
class TwilioStandIn:
    """POST .../Calls.json (create), .../Calls/{CallSid}.json (update: redirect or cancel) and
    .../Messages.json (SMS), answered like api.twilio.com and recorded in queues. Updating a
    call in `refuse` (CallSid -> Twilio error code, see `REST_ERRORS`) is refused as
    api.twilio.com refuses it: 21220 for a call that has ended (its caller hung up)."""

    created: asyncio.Queue[dict[str, str]] = field(default_factory=asyncio.Queue)
    updates: asyncio.Queue[tuple[str, dict[str, str]]] = field(default_factory=asyncio.Queue)
    sms: asyncio.Queue[dict[str, str]] = field(default_factory=asyncio.Queue)
    calls_created: int = 0
    refuse: dict[str, int] = field(default_factory=dict)
    server: TestServer | None = None

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/2010-04-01/Accounts/{sid}/Calls.json", self.create_call)
        app.router.add_post("/2010-04-01/Accounts/{sid}/Calls/{call}.json", self.update_call)
        app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", self.create_message)
        self.server = TestServer(app, host="127.0.0.1", port=0)
        await self.server.start_server()
        return str(self.server.make_url("")).rstrip("/")

    async def close(self) -> None:
        if self.server is not None:
            await self.server.close()

    async def create_call(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.calls_created += 1
        sid = f"CA{self.calls_created:032x}"
        self.created.put_nowait({**form, "Sid": sid})
        body = {"sid": sid, "status": "queued", "to": form["To"], "from": form["From"]}
        return web.json_response({**body, "account_sid": request.match_info["sid"]}, status=201)

    async def update_call(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.updates.put_nowait((request.match_info["call"], form))
        code = self.refuse.get(request.match_info["call"])
        if code is not None:  # Twilio's error body (the legacy format the REST client reads)
            status, message = REST_ERRORS[code]
            more = f"https://www.twilio.com/docs/errors/{code}"
            body = {"code": code, "message": message, "more_info": more, "status": status}
            return web.json_response(body, status=status)
        status = form.get("Status", "in-progress")
        return web.json_response({"sid": request.match_info["call"], "status": status, "account_sid": SID})

    async def create_message(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.sms.put_nowait(form)
        body = {"sid": f"SM{self.sms.qsize():032x}", "status": "queued", "to": form["To"], "body": form["Body"]}
        return web.json_response({**body, "account_sid": request.match_info["sid"]}, status=201)


def twilio_deployment(base: str, offer_timeout: float = 20.0, notify: bool = False, **twilio: Any) -> Deployment:
    """Asterisk off, Twilio on; `notify`: customers told by SMS, no quiet hours."""
    d = example_deployment()
    if notify:
        sms = ("sms",)
        names = ("received", "assigned", "callback_requested", "callback_failed", "callback_given_up")
        customer = dict.fromkeys(names, sms)
        d = replace(d, notifications=replace(d.notifications, enabled=True, quiet_hours=None, customer=customer))
    rules = ChannelRules(offer_timeout=offer_timeout, wrap_up=0.0)
    policy = replace(
        d.policy,
        calendar=Calendar(tz=d.policy.calendar.tz),  # open around the clock: tests run at any hour
        channels={**d.policy.channels, Channel.CALL: rules, Channel.CALLBACK: rules},
        inactivity_pause=0.0,
    )
    settings = TwilioSettings(
        SID,
        PUBLIC,
        enabled=True,
        auth_token=TOKEN,
        api_base=base,
        numbers={OUR_NUMBER: "main"},
        caller_id=OUR_NUMBER,
        sms_from=OUR_NUMBER,
        managers={m.id: f"+7900000000{i}" for i, m in enumerate(d.managers)},
        hold_music="https://acd.example.test/hold.mp3",
        **twilio,
    )
    return replace(d, policy=policy, twilio=settings, asterisk=replace(d.asterisk, enabled=False))


@asynccontextmanager
async def twilio_office(
    backend: Backend, deployment: Any = None, **kw: Any
) -> AsyncIterator[tuple[Running, TwilioStandIn]]:
    """`deployment(base_url)` builds the deployment (default: `twilio_deployment(base, **kw)`)."""
    stand_in = TwilioStandIn()
    base = await stand_in.start()
    d = deployment(base) if deployment is not None else twilio_deployment(base, **kw)
    r = await start(backend, d)
    try:
        yield r, stand_in
    finally:
        await stop(r)
        await stand_in.close()


def resolve(target: str, public: str = PUBLIC) -> tuple[str, str]:
    """Where Twilio sends a request for `target` (a URL in TwiML or a REST request, or a
    webhook configured as `public` + a path), and the path that then reaches our server.

    Twilio resolves a relative URL against the URL it fetched the TwiML from (RFC 3986, so
    "/twilio/voice/x" drops any path of `public`), and it reaches us through the reverse proxy
    that serves `public` and strips its path: a URL outside `public` never reaches us."""
    full = urljoin(public + "/", target)
    assert full.startswith(public + "/"), f"Twilio would request {full}, which does not reach {public}"
    return full, full[len(public) :]


async def hook(
    r: Running,
    target: str,
    form: dict[str, str],
    signature: str | None = "valid",
    public: str = PUBLIC,
    shared_key: tuple[str, str] | None = None,
    algorithm: str = HMAC_SHA256,
) -> tuple[int, str]:
    """POST a webhook as Twilio does: the form signed over the URL Twilio requests (the public
    one, see `resolve`) with the auth token (HMAC-SHA1) — or, given `shared_key` (key id,
    secret), with that key's secret by `algorithm`, named in X-Twilio-Webhooks-Signature-Settings."""
    full, local_path = resolve(target, public)
    headers: dict[str, str] = {}
    if shared_key is not None:
        key_id, secret = shared_key
        headers[SIGNATURE_SETTINGS_HEADER] = f"key={key_id},algorithm={algorithm}"
        if signature == "valid":
            signature = RequestValidator(secret).compute_signature(full, form, algorithm)
    elif signature == "valid":
        signature = RequestValidator(TOKEN).compute_signature(full, form)
    if signature is not None:
        headers["X-Twilio-Signature"] = signature
    async with r.session.post(r.url(local_path), data=form, headers=headers) as resp:
        return resp.status, await resp.text()


signed_hook = hook


def twiml(text: str) -> ET.Element:
    root = ET.fromstring(text)
    assert root.tag == "Response"
    for el in root.iter():
        assert el is root or el.tag in VERBS, el.tag
    return root


def local(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


async def next_of(queue: asyncio.Queue[Any], timeout: float = 10.0) -> Any:  # noqa: ASYNC109
    return await asyncio.wait_for(queue.get(), timeout)


async def queue_a_call(r: Running | Callable[[], Running], call: dict[str, str], public: str = PUBLIC) -> ET.Element:
    """Run a caller through the IVR (keys 1, 2, 3, then silence) until Twilio is told to Enqueue.
    `r` may pick the server for each webhook (a load balancer in front of several nodes);
    `public` is the server's `twilio.public_url`, where the number's voice webhook points."""
    server = r if callable(r) else lambda: r
    keys = iter(["1", "2", "3"])

    async def hook(r: Running, target: str, form: dict[str, str]) -> tuple[int, str]:
        return await signed_hook(r, target, form, public=public)

    status, body = await hook(server(), public + "/twilio/voice", call)
    for _ in range(40):
        assert status == 200, body
        root = twiml(body)
        if root.find("Enqueue") is not None:
            return root
        gather, redirect = root.find("Gather"), root.find("Redirect")
        if gather is not None:
            status, body = await hook(server(), gather.get("action", ""), {**call, "Digits": next(keys, "")})
        else:
            assert redirect is not None and redirect.text
            status, body = await hook(server(), redirect.text, call)
    raise AssertionError("the IVR never queued the call")
