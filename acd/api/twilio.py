"""Adapter: Twilio voice webhooks (TwiML answers) and the offers they carry out.

Every webhook checks X-Twilio-Signature with the twilio library's `RequestValidator` over
`twilio.public_url` + the request's path and query (the URL Twilio called, which behind a
proxy is not the one we bind) and the POSTed form; unsigned or forged requests get 403. A
request signed with a shared key names it in X-Twilio-Webhooks-Signature-Settings
(`key=<id>,algorithm=HMAC_SHA256`): it is checked with that key's secret (`twilio.webhook_keys`)
by the algorithm named, and one naming a key we do not know gets 403; one without the header
is checked against the auth token.
See `acd.messaging.twilio_voice` for a call's life and `acd.messaging.twilio_callbacks` for a
callback's (when Asterisk is off, callbacks ring through Twilio's REST API).

Cluster mode (docs/deployment.md, "Twilio in cluster mode"): a voice webhook is handled by
whichever node it reaches, from the committed contact (`_committed`); the REST side and the
callbacks run on the dispatching node, to which callback webhooks are passed on (the relay).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from aiohttp import web
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.request_validator import SIGNATURE_SETTINGS_HEADER, RequestValidator, get_signature_algorithm
from twilio.twiml.voice_response import VoiceResponse

from acd.api.app import SERVICES, Services, api
from acd.api.cluster import RELAY, error_answer, raise_if_error
from acd.api.routing import ApiError
from acd.cluster import ClusterDispatcher
from acd.cluster.relay import DISPATCHER, Relay, Unanswered
from acd.config.messaging import TwilioSettings
from acd.core import events as ev
from acd.core.errors import CoreError
from acd.core.intake import derived
from acd.core.model import Channel, Contact, ContactStatus
from acd.ids import new_id
from acd.messaging.twilio_callbacks import (
    DIAL_STATUS,
    TwilioDialer,
    customer_dial_twiml,
    customer_screened,
    machine_notice_twiml,
)
from acd.messaging.twilio_voice import (
    CALL_NOT_IN_PROGRESS,
    FINAL_STATUSES,
    TwilioCalls,
    caller_number,
    dial_twiml,
    enqueue_twiml,
    ivr_twiml,
    pack,
    path,
    queue_full_twiml,
    unpack,
    wait_twiml,
)
from acd.runtime import cancel_and_wait
from acd.storage.messaging import MessagingStore
from acd.storage.telephony import TelephonyStore
from acd.telephony.callbacks import Callbacks, CallbackSettings
from acd.telephony.ivr import Done, IvrRun
from acd.telephony.queue_log import QueueLog

log = logging.getLogger("acd.twilio")
CALL_SID = "twilio_call_sid"
Query = dict[str, str]


class TwilioVoice:
    """The REST side of voice: carries out the core's offers and withdrawals on live calls."""

    def __init__(self, svc: Services, calls: TwilioCalls) -> None:
        self.svc = svc
        self.calls = calls
        self.callbacks: Callbacks | None = None  # when callbacks ring through Twilio (no Asterisk)
        self._dialer: TwilioDialer | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._last: dict[str, asyncio.Task[Any]] = {}  # the latest REST change of each live call
        self._callbacks_live = False  # cluster mode: set once this node runs the callbacks
        self._runner: asyncio.Task[None] | None = None  # cluster mode: waits to run them

    async def start_callbacks(self) -> Callbacks:
        """Callbacks rung through the REST API: the shared scheduling and retries, this dialer."""
        svc = self.svc

        def settings() -> TwilioSettings:
            assert svc.deployment.twilio is not None
            return svc.deployment.twilio

        t = settings()
        self._dialer = TwilioDialer(settings, svc.clock)
        self.callbacks = Callbacks(
            dispatcher=svc.dispatcher,
            store=svc.store,
            tstore=TelephonyStore(svc.store),
            settings=CallbackSettings(
                max_attempts=t.callback_attempts,
                backoff=t.callback_backoff,
                manager_ring=t.ring_time,
                customer_ring=t.customer_ring,
            ),
            queue_log=QueueLog(None, svc.clock),
            dialer=self._dialer,
            clock=svc.clock,
        )

        async def enrich(contact: Contact) -> Contact:  # the CRM's, as for a call (set after this is built)
            return contact if svc.enrich is None else await svc.enrich(contact)

        self.callbacks.enrich = enrich
        if isinstance(svc.dispatcher, ClusterDispatcher):
            svc.dispatcher.subscribe(self._on_callbacks_command)
            self._runner = asyncio.create_task(
                self._run_callbacks_when_dispatching(self.callbacks, svc.dispatcher.elected),
                name="acd-twilio-callbacks-cluster",
            )
        else:
            svc.dispatcher.subscribe(self.callbacks.on_command)
            await self.callbacks.start()
        return self.callbacks

    def _on_callbacks_command(self, cmd: ev.Command) -> None:
        if self._callbacks_live and self.callbacks is not None:
            self.callbacks.on_command(cmd)

    async def _run_callbacks_when_dispatching(self, callbacks: Callbacks, dispatching: asyncio.Event) -> None:
        """Cluster mode: only the dispatching node schedules and rings callbacks (a request made
        elsewhere is a `pending` row), from the moment it takes over until its process ends — as
        for callbacks rung through Asterisk (acd.telephony.service)."""
        await dispatching.wait()
        await callbacks.take_over()  # re-arms from the board what the restore offered
        self._callbacks_live = True  # only now, so no offer is rung both by `start` and a command
        await callbacks.adopt_forever()

    def on_command(self, cmd: ev.Command) -> None:
        match cmd:
            case ev.OfferContact(contact=c, manager=m) if c.payload.get(CALL_SID):
                self._offer(c, m.id)
            case ev.WithdrawOffer(contact_id=cid):
                held = self.svc.dispatcher.board.contacts.get(cid)
                if held is not None and held.payload.get(CALL_SID):
                    sid = str(held.payload[CALL_SID])
                    self._in_order(sid, self._redirect(sid, path("/queue", contact=cid), cid))

    def _offer(self, c: Contact, manager_id: str) -> None:
        settings = self.svc.deployment.twilio
        if settings is None or manager_id not in settings.managers:
            log.warning("manager %s has no Twilio number (twilio.managers): offer of %s fails", manager_id, c.id)
            self.svc.dispatcher.post(ev.OfferFailed(c.id, manager_id, "no Twilio number"))
            return
        sid = str(c.payload[CALL_SID])
        self._in_order(sid, self._redirect(sid, path("/connect", contact=c.id, manager=manager_id), c.id))

    async def _redirect(self, call_sid: str, route: str, contact_id: str) -> None:
        try:
            await self.calls.redirect(call_sid, route)
        except (TwilioRestException, TwilioServiceException) as err:
            if 400 <= err.status < 500 and _code(err.code) == CALL_NOT_IN_PROGRESS:
                # The caller hung up (the number may have no status callback to say so): the
                # contact is abandoned, else managers go on being offered a call that is gone.
                log.info("Twilio call %s is over (%s): contact %s abandoned", call_sid, err.code, contact_id)
                await self._caller_gone(call_sid, contact_id)
            else:
                log.warning("Twilio REST redirect of %s to %s refused: %s %s", call_sid, route, err.status, err.code)
        except Exception as err:
            log.warning("Twilio REST redirect of %s to %s failed: %s", call_sid, route, err)

    async def _caller_gone(self, call_sid: str, contact_id: str) -> None:
        c = await _committed(self.svc, contact_id)
        if c is not None and str(c.payload.get(CALL_SID, "")) == call_sid:
            await _close(self.svc, contact_id, "caller hung up")

    def _in_order(self, call_sid: str, coro: Coroutine[Any, Any, None]) -> None:
        """Carry out REST changes of one call in the order the core decided them: a withdrawal
        (back to the queue) and the next offer (to /connect) come in one batch, and if the
        first landed last the caller would sit in the queue while a manager's offer ran out."""
        before = self._last.get(call_sid)

        async def after() -> None:
            if before is not None:
                await asyncio.gather(before, return_exceptions=True)
            await coro

        task = self._spawn(after())
        self._last[call_sid] = task

        def forget(t: asyncio.Task[Any]) -> None:
            if self._last.get(call_sid) is t:
                del self._last[call_sid]

        task.add_done_callback(forget)

    def _spawn(self, coro: Awaitable[None]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def settle(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        if self._runner is not None:
            await cancel_and_wait(self._runner)
        await self.settle()
        if self._dialer is not None:
            self._dialer.cancel_grace()
        if self.callbacks is not None:
            await self.callbacks.close()
        if self._dialer is not None:
            await self._dialer.close()
        await self.calls.close()


TWILIO = web.AppKey("twilio_voice", TwilioVoice)


async def _signed(request: web.Request) -> dict[str, str]:
    """The webhook's form, once its signature checks out; 403 otherwise."""
    svc = request.app[SERVICES]
    settings = svc.deployment.twilio
    if settings is None or not settings.enabled or not settings.auth_token:
        raise ApiError(404, "not_found", "Twilio is not configured on this server")
    try:
        posted = await request.post()
    except (ValueError, LookupError) as err:  # not UTF-8, an unknown charset, a broken multipart body
        raise ApiError(400, "bad_form", f"the body is not a form as Twilio sends it: {err}") from None
    form = {k: str(v) for k, v in posted.items()}
    url = settings.public_url + request.path_qs
    signature = request.headers.get("X-Twilio-Signature", "")
    signing = request.headers.get(SIGNATURE_SETTINGS_HEADER, "").strip()
    if signing:  # signed with a shared key's secret, by the algorithm the header names
        key = _shared_key(signing)
        secret = settings.webhook_secrets.get(key)
        if secret is None:
            why = "has no secret set" if key in settings.webhook_keys else "is not in twilio.webhook_keys"
            log.warning("Twilio webhook %s refused: shared key %r %s", request.path, key, why)
            raise ApiError(403, "unknown_key", f"{SIGNATURE_SETTINGS_HEADER} names a key this server does not know")
        validator, algorithm = RequestValidator(secret), get_signature_algorithm(signing)
    else:  # the account's auth token, HMAC-SHA1
        validator, algorithm = RequestValidator(settings.auth_token), None
    if not signature or not validator.validate(url, form, signature, algorithm):
        log.warning("Twilio webhook %s refused: %s signature", request.path, "forged" if signature else "no")
        raise ApiError(403, "bad_signature", "X-Twilio-Signature does not match this request")
    return form


def _shared_key(signing: str) -> str:
    """The key id in `X-Twilio-Webhooks-Signature-Settings: key=<id>,algorithm=<name>`."""
    for part in signing.split(","):
        name, eq, value = part.partition("=")
        if eq and name.strip() == "key":
            return value.strip()
    return ""


def _code(code: Any) -> int | None:
    """Twilio's error code as a number (the library passes on what the JSON said)."""
    try:
        return int(code)
    except (TypeError, ValueError):
        return None


async def _committed(svc: Services, contact_id: str) -> Contact | None:
    """The open contact as last committed. On the dispatching node (or the only one) that is
    the routing state itself. A follower's board is a read copy refreshed a moment after each
    commit, and a webhook can beat that refresh (Twilio fetches /connect as soon as the
    dispatching node's REST redirect lands), so a follower reads the store: every decision a
    webhook acts on was committed before the command that led Twilio to call it."""
    d = svc.dispatcher
    if not isinstance(d, ClusterDispatcher) or d.leading:
        return d.board.contacts.get(contact_id)
    c = await svc.store.get_contact(contact_id)
    return c if c is not None and c.status.is_open else None


def _twiml(resp: VoiceResponse) -> web.Response:
    return web.Response(text=str(resp), content_type="application/xml")


def _twilio_route(route: str, summary: str) -> Callable[[Any], Any]:
    return api.add("POST", path(route), summary, role=None, tag="twilio")


@_twilio_route("", "Twilio: an incoming call (starts the IVR flow of the dialled number)")
async def twilio_incoming(request: web.Request) -> web.Response:
    form = await _signed(request)
    svc = request.app[SERVICES]
    settings = svc.deployment.twilio
    assert settings is not None
    flow_name = settings.numbers.get(form.get("To", ""), "main")
    flow = svc.deployment.flows.get(flow_name) or next(iter(svc.deployment.flows.values()))
    run = IvrRun(flow, dialled=form.get("To", "").lstrip("+"))
    await MessagingStore(svc.store).save_call(
        form.get("CallSid", ""),
        None,
        form.get("From", ""),
        form.get("To", ""),
        "ivr",
        svc.clock(),
        final=FINAL_STATUSES,
    )
    return await _step(request, run, flow, None, form)


@_twilio_route("/ivr", "Twilio: the next IVR step (the caller's key in Digits)")
async def twilio_ivr(request: web.Request) -> web.Response:
    form = await _signed(request)
    svc = request.app[SERVICES]
    try:
        state = unpack(request.query["s"])
        flow = svc.deployment.flows[state["flow"]]
        run = IvrRun.resume(flow, state)
    except (KeyError, ValueError, TypeError) as err:  # TypeError: a list where a name or a mapping belongs
        raise ApiError(400, "invalid", f"bad IVR state: {err}") from None
    return await _step(request, run, flow, form.get("Digits") or None, form)


async def _step(request: web.Request, run: IvrRun, flow: Any, key: str | None, form: dict[str, str]) -> web.Response:
    svc = request.app[SERVICES]
    settings = svc.deployment.twilio
    assert settings is not None
    action = run.step(key)
    resp = ivr_twiml(run, action, flow, settings)
    if resp is not None:
        return _twiml(resp)
    assert isinstance(action, Done)
    contact = await _queue_call(svc, action, form)
    return _twiml(enqueue_twiml(settings, contact.id))


async def _queue_call(svc: Services, done: Done, form: dict[str, str]) -> Contact:
    call_sid = form.get("CallSid", "")
    skills, bonus, team = derived(done.answers, svc.dispatcher.board.policy)
    now = svc.clock()
    contact = Contact(
        id=new_id(),
        channel=Channel.CALL,
        arrived_at=now,
        step_since=now,
        criteria=dict(done.answers),
        phone=caller_number(form.get("From", "")),  # a withheld number is none: no CRM look-up, no callback
        priority=bonus,
        required_skills=skills,
        team=team,
        language=done.language,
        payload={CALL_SID: call_sid, "dialled": form.get("To", ""), "ivr": dict(done.how)},
    )
    if svc.enrich is not None:
        contact = await svc.enrich(contact)
    stored, created = await svc.store.create_contact(contact, f"twilio:{call_sid}")
    if created:
        # posted before the call's row names the contact: a status callback that then ends it
        # posts its end after this arrival (`_close`)
        svc.dispatcher.post(ev.ContactArrived(stored))
        log.info("Twilio call %s queued as contact %s", call_sid, stored.id, extra={"contact_id": stored.id})
    call = await MessagingStore(svc.store).save_call(
        call_sid, stored.id, form.get("From", ""), form.get("To", ""), "queued", now, final=FINAL_STATUSES
    )
    if call["status"] in FINAL_STATUSES:
        # the caller hung up as the IVR ended, and the status callback came first: it found
        # no contact to end, so the contact ends here
        log.info("Twilio call %s ended (%s) before it was queued", call_sid, call["status"])
        await _close(svc, stored.id, "caller hung up")
    return stored


@_twilio_route("/wait", "Twilio: hold music while the caller waits in the queue")
async def twilio_wait(request: web.Request) -> web.Response:
    await _signed(request)
    svc = request.app[SERVICES]
    assert svc.deployment.twilio is not None
    return _twiml(wait_twiml(svc.deployment.twilio, svc.deployment.default_language))


@_twilio_route("/queue", "Twilio: back to the queue (an offer withdrawn or unanswered)")
async def twilio_queue(request: web.Request) -> web.Response:
    await _signed(request)
    svc = request.app[SERVICES]
    assert svc.deployment.twilio is not None
    return _twiml(enqueue_twiml(svc.deployment.twilio, request.query.get("contact", "")))


@_twilio_route("/dequeued", "Twilio: the caller left the queue (Enqueue action)")
async def twilio_dequeued(request: web.Request) -> web.Response:
    form = await _signed(request)
    svc = request.app[SERVICES]
    cid, result = request.query.get("contact", ""), form.get("QueueResult", "")
    if result in ("hangup", "error", "system-error"):
        await _close(svc, cid, "caller hung up")
    elif result == "queue-full":
        # Twilio's queue holds no more callers: this one could not wait, so the contact ends
        # (abandoned, with why) and the caller is told to call again rather than cut off.
        settings = svc.deployment.twilio
        assert settings is not None
        c = await _committed(svc, cid)
        log.warning("Twilio queue full: call %s (contact %s) could not wait", form.get("CallSid", ""), cid)
        await _close(svc, cid, "Twilio queue full")
        lang = (c.language if c is not None else "") or svc.deployment.default_language
        return _twiml(queue_full_twiml(settings, lang))
    return _twiml(VoiceResponse())


@_twilio_route("/connect", "Twilio: dial the manager the core chose")
async def twilio_connect(request: web.Request) -> web.Response:
    await _signed(request)
    svc = request.app[SERVICES]
    settings = svc.deployment.twilio
    assert settings is not None
    cid, mid = request.query.get("contact", ""), request.query.get("manager", "")
    c = await _committed(svc, cid)
    if c is None or c.status is not ContactStatus.OFFERED or c.offered_to != mid or mid not in settings.managers:
        return _twiml(enqueue_twiml(settings, cid))  # the offer moved on meanwhile
    timeout = (c.offer_expires_at or svc.clock()) - svc.clock()
    return _twiml(dial_twiml(settings, cid, mid, settings.managers[mid], timeout))


@_twilio_route("/answered", "Twilio: the manager answered (their leg, before bridging)")
async def twilio_answered(request: web.Request) -> web.Response:
    await _signed(request)
    svc = request.app[SERVICES]
    cid, mid = request.query.get("contact", ""), request.query.get("manager", "")
    try:
        await svc.dispatcher.submit(ev.OfferAccepted(cid, mid))
    except CoreError as err:
        c = await _committed(svc, cid)
        if c is not None and c.status is ContactStatus.ASSIGNED and c.assigned_to == mid:
            # Twilio retried this webhook (no answer from us in time): already accepted, so
            # bridge as the first answer did; a <Hangup/> now would drop the call just answered
            log.info("manager %s answered %s: webhook repeated, already accepted", mid, cid)
            return _twiml(VoiceResponse())
        log.info("manager %s answered %s too late (%s): dropping their leg", mid, cid, err.code)
        resp = VoiceResponse()
        resp.hangup()
        return _twiml(resp)
    return _twiml(VoiceResponse())


@_twilio_route("/dial-done", "Twilio: the Dial to a manager ended (DialCallStatus)")
async def twilio_dial_done(request: web.Request) -> web.Response:
    form = await _signed(request)
    svc = request.app[SERVICES]
    settings = svc.deployment.twilio
    assert settings is not None
    cid, mid = request.query.get("contact", ""), request.query.get("manager", "")
    status = form.get("DialCallStatus", "")
    c = await _committed(svc, cid)
    if status == "completed" or (c is not None and c.status is ContactStatus.ASSIGNED):
        if c is not None:
            try:
                await svc.dispatcher.submit(ev.WorkFinished(cid, c.assigned_to))
            except CoreError as err:  # the caller's status callback, on another node perhaps, came first
                log.info("Twilio call of %s already closed (%s)", cid, err.code)
        return _twiml(_hangup())
    if status in ("busy", "failed") and c is not None and c.offered_to == mid:
        svc.dispatcher.post(ev.OfferFailed(cid, mid, f"Twilio dial {status}"))
    # no-answer / canceled: the core's offer timer declares the miss and pauses the manager
    return _twiml(enqueue_twiml(settings, cid))


@_twilio_route("/status", "Twilio: the caller's call status callback")
async def twilio_status(request: web.Request) -> web.Response:
    form = await _signed(request)
    svc = request.app[SERVICES]
    sid, status = form.get("CallSid", ""), form.get("CallStatus", "")
    # Twilio's status callbacks may come out of order: a late "ringing" or "in-progress" must
    # not bring an ended call back to life (nor a second final status replace the first). The
    # store decides in the write itself, since the action callbacks come at the same time.
    call = await MessagingStore(svc.store).save_call(
        sid, None, form.get("From", ""), form.get("To", ""), status, svc.clock(), final=FINAL_STATUSES
    )
    if call["status"] != status:
        log.info("Twilio call %s: status %s after %s kept as %s", sid, status, call["status"], call["status"])
    if call["contact_id"] and status in FINAL_STATUSES:
        await _close(svc, call["contact_id"], "caller hung up")
    return _twiml(VoiceResponse())


# ---- callbacks rung through the REST API (acd.messaging.twilio_callbacks) ----------------------


def _callbacks(request: web.Request) -> Callbacks:
    voice = request.app.get(TWILIO)
    if voice is None or voice.callbacks is None:
        raise ApiError(404, "not_found", "callbacks do not ring through Twilio on this server")
    return voice.callbacks


async def _callback_answer(svc: Services, callbacks: Callbacks, query: Query, form: Query) -> VoiceResponse:
    settings = svc.deployment.twilio
    assert settings is not None
    cid, attempt = query.get("contact", ""), query.get("attempt", "")
    flight = callbacks.in_flight(cid, attempt)
    leg = form.get("CallSid", "")
    if flight is not None and flight.connected and leg and flight.leg == leg:
        # Twilio retried this webhook (no answer from us in time): the offer is accepted
        # already, so the customer is dialled as the first answer said (accepting it again
        # would fail and drop the attempt, and <Hangup/> the manager who answered)
        log.info("callback %s: answer webhook repeated for leg %s", cid, leg)
    elif flight is None or not await callbacks.manager_answered(cid, attempt, leg, "in-progress"):
        log.info("callback %s answered after its offer moved on: hanging up the manager's leg", cid)
        return _hangup()
    lang = flight.contact.language or svc.deployment.default_language
    return customer_dial_twiml(settings, flight, lang, svc.deployment.crm.default_region)


async def _callback_dial_done(svc: Services, callbacks: Callbacks, query: Query, form: Query) -> VoiceResponse:
    status = form.get("DialCallStatus", "")
    attempt = query.get("attempt", "")
    callbacks.on_result(query.get("contact", ""), attempt, DIAL_STATUS.get(status, status.upper()))
    told = callbacks.dialer.machine_told(attempt) if isinstance(callbacks.dialer, TwilioDialer) else None
    if told is not None and svc.deployment.twilio is not None:  # a machine answered: say so, then hang up
        lang, retried = told
        return machine_notice_twiml(svc.deployment.twilio, lang or svc.deployment.default_language, retried)
    return _hangup()


async def _callback_status(svc: Services, callbacks: Callbacks, query: Query, form: Query) -> VoiceResponse:
    cid, attempt = query.get("contact", ""), query.get("attempt", "")
    status = form.get("CallStatus", "")
    flight = callbacks.in_flight(cid, attempt)
    if flight is None:
        return VoiceResponse()  # over already (withdrawn, reported)
    if flight.connected:
        if status in ("completed", "failed", "canceled", "busy", "no-answer"):
            # The manager's leg ended. When they hung up, Twilio also requests the customer's
            # <Dial action> (DialCallStatus), in no set order: give it time to say how it went,
            # else a callback that was talked through would count as a failed attempt and the
            # customer be dialled again. Only if it never comes is the attempt over unreached.
            leg = flight.leg
            if isinstance(callbacks.dialer, TwilioDialer):
                callbacks.dialer.after_grace(lambda: callbacks.on_hangup(leg))
            else:
                callbacks.on_hangup(leg)
    elif status in ("busy", "failed"):
        await callbacks.manager_not_reached(cid, attempt, status, no_answer=False)
    elif status in ("no-answer", "canceled", "completed"):
        # rang out: the core's offer timer declares the missed offer and pauses the manager
        await callbacks.manager_not_reached(cid, attempt, status, no_answer=True)
    return VoiceResponse()


CallbackWebhook = Callable[[Services, Callbacks, Query, Query], Awaitable[VoiceResponse]]
CALLBACK_WEBHOOKS: dict[str, CallbackWebhook] = {
    "answer": _callback_answer,
    "dial-done": _callback_dial_done,
    "status": _callback_status,
    "amd": customer_screened,
}


async def _callback_webhook(request: web.Request, route: str) -> web.Response:
    """A callback's attempt lives in the process that rings it — the dispatching node in
    cluster mode — so a webhook that reached another node is passed on to it (acd.cluster.relay)."""
    form = await _signed(request)
    svc = request.app[SERVICES]
    callbacks = _callbacks(request)  # 404 unless callbacks ring through Twilio (on every node alike)
    relay = request.app.get(RELAY)
    if relay is None:
        return _twiml(await CALLBACK_WEBHOOKS[route](svc, callbacks, dict(request.query), form))
    try:
        answer = await relay.ask(
            DISPATCHER, "twilio_callback", {"route": route, "query": dict(request.query), "form": form}
        )
    except Unanswered as err:
        log.warning("callback webhook %s not handled: no dispatching node answered (%s)", route, err)
        return _twiml(_hangup() if route == "answer" else VoiceResponse())  # the offer runs out, as unanswered
    twiml = raise_if_error(answer).get("twiml", "")
    return web.Response(text=str(twiml), content_type="application/xml")


def answer_callback_webhooks(relay: Relay, svc: Services, callbacks: Callbacks) -> None:
    """Cluster mode: while this node dispatches, it handles the callback webhooks other nodes pass on."""

    async def webhook(asked: dict[str, Any]) -> dict[str, Any]:
        handler = CALLBACK_WEBHOOKS.get(str(asked.get("route")))
        if handler is None:
            return error_answer(ApiError(404, "not_found", "no such callback webhook"))
        resp = await handler(svc, callbacks, dict(asked.get("query") or {}), dict(asked.get("form") or {}))
        return {"ok": {"twiml": str(resp)}}

    relay.handlers["twilio_callback"] = webhook


@_twilio_route("/callback/answer", "Twilio: a callback's manager answered; dial the customer")
async def twilio_callback_answer(request: web.Request) -> web.Response:
    return await _callback_webhook(request, "answer")


@_twilio_route("/callback/dial-done", "Twilio: a callback's customer leg ended (DialCallStatus)")
async def twilio_callback_dial_done(request: web.Request) -> web.Response:
    return await _callback_webhook(request, "dial-done")


@_twilio_route("/callback/status", "Twilio: a callback's manager leg ended (status callback)")
async def twilio_callback_status(request: web.Request) -> web.Response:
    return await _callback_webhook(request, "status")


@_twilio_route("/callback/amd", "Twilio: a callback's customer leg answered by a person or a machine (AnsweredBy)")
async def twilio_callback_amd(request: web.Request) -> web.Response:
    return await _callback_webhook(request, "amd")


def _hangup() -> VoiceResponse:
    resp = VoiceResponse()
    resp.hangup()
    return resp


async def _close(svc: Services, contact_id: str, reason: str) -> None:
    """The caller's call is over: a contact being talked to is finished, else abandoned (`reason`)."""
    c = await _committed(svc, contact_id)
    if c is None:
        # Not open here: over already, or its arrival is still queued (`_queue_call` posts it
        # before naming it in the call's row), or on its way from another node. Its end, posted
        # after the arrival, ends it then; the core ignores the end of a contact it has finished.
        if contact_id:
            svc.dispatcher.post(ev.ContactAbandoned(contact_id, reason))
        return
    if c.status is ContactStatus.ASSIGNED:
        svc.dispatcher.post(ev.WorkFinished(c.id, c.assigned_to))
    else:
        svc.dispatcher.post(ev.ContactAbandoned(c.id, reason))


__all__ = ["TWILIO", "TwilioVoice", "answer_callback_webhooks", "pack"]
