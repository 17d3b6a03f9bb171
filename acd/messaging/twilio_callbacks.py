"""Adapter: callbacks through Twilio's REST API — the dialer for offices without Asterisk.

The shared bookkeeping (`acd.telephony.callbacks.Callbacks`) decides when and to whom; this
dialer rings, and its webhooks (signed, in `acd.api.twilio`) report back:

    core: OfferContact (callback)      REST calls.create(to=the manager's number or client,
                                       url=/callback/answer, status_callback=/callback/status,
                                       timeout = ring time, shorter than the offer) — sent once
    POST /twilio/voice/callback/answer      the manager picked up: OfferAccepted, then
                                       <Dial action=/callback/dial-done> the customer
                                       (<Hangup/> when the offer had moved on meanwhile)
    POST /twilio/voice/callback/amd     (twilio.callback_machine_detection) the customer's leg
                                       answered, <Number machineDetection=Enable>: AnsweredBy a
                                       machine or fax → the attempt failed (MACHINE, retried) and
                                       that leg is hung up before the manager hears it; human /
                                       unknown → empty TwiML, they are connected. Asked both as the
                                       Number's `url` and as its `amdStatusCallback` (`via`), handled
                                       once; the latter after a bridge also hangs the leg up by REST
    POST /twilio/voice/callback/dial-done   the customer's leg ended: DialCallStatus →
                                       the attempt's result (completed = talked; busy /
                                       no-answer / failed = retried per the callback settings);
                                       after a machine, the manager is told so before <Hangup/>
    POST /twilio/voice/callback/status      the manager's leg ended: no-answer → the core's
                                       missed offer (pause); busy / failed → offer failed (skip);
                                       completed before a result → the attempt is over
                                       (once the Dial action has had ACTION_GRACE to come)
    core: WithdrawOffer                REST: the ringing leg is cancelled (status=canceled)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from twilio.twiml.voice_response import Dial, VoiceResponse

from acd.config.messaging import TwilioSettings
from acd.core.model import Manager
from acd.crm.identity import dial_digits, normalize_phone
from acd.messaging.twilio_voice import LANGUAGES, url
from acd.telephony.callback_dialers import Flight, Outcomes
from acd.telephony.callbacks import Callbacks
from acd.telephony.prompts import COMMON

log = logging.getLogger("acd.twilio")
RING_MARGIN = 2.0  # seconds: Twilio stops the manager's phone before the core's offer runs out
MIN_RING = 5  # Twilio rings at least this long whatever `timeout` says
# seconds: when the manager's leg ends while connected, how long its status callback waits for
# the customer's <Dial action> (DialCallStatus). Twilio sends both when the manager hangs up,
# in no set order (and may retry either), so the status callback alone is no proof that the
# customer was never reached.
ACTION_GRACE = 10.0

# Twilio's DialCallStatus → Asterisk's DIALSTATUS, the words the callback bookkeeping speaks.
DIAL_STATUS = {
    "completed": "ANSWER",
    "answered": "ANSWER",
    "busy": "BUSY",
    "no-answer": "NOANSWER",
    "failed": "CHANUNAVAIL",
    "canceled": "CANCEL",
}
# Twilio's AnsweredBy values that are no person to talk to. "unknown" is not among them: hanging
# up on a customer who did answer is worse than a manager hearing a voicemail greeting.
MACHINE_ANSWERS = frozenset({"machine_start", "machine_end_beep", "machine_end_silence", "machine_end_other", "fax"})
# What the manager waiting on the line hears when a machine took the customer's leg, by whether
# the request will be tried again (a dropped line with no word sounds like a fault).
# The same words as Asterisk plays (acd.telephony.prompts).
MACHINE_NOTICE = {True: COMMON["callback-machine"], False: COMMON["callback-machine-last"]}
MACHINES_KEPT = 256  # attempts whose machine the manager has not been told of yet (their Dial action is due)


def twilio_machine(answered_by: str) -> str:
    """The detector's verdict when a machine answered (`machine_start`, `fax`...), else ""."""
    verdict = answered_by.strip().lower()
    return verdict if verdict in MACHINE_ANSWERS else ""


def e164(phone: str, region: str) -> str:
    """A customer's number as Twilio wants it: `+7 (916) 555-00-00` → `+79165550000`, and one
    written the national way is read in `region` (in Russia `8 916 555-00-00` → `+79165550000`,
    not `+89165550000`). A number the numbering plan cannot read is passed on as its digits
    after a `+`: Twilio's refusal then says what is wrong with it."""
    return normalize_phone(phone, region) or "+" + dial_digits(phone)


class TwilioDialer:
    """Rings a callback's manager with `calls.create` (the twilio library's async client;
    `api_base` points it at a local stand-in in tests)."""

    def __init__(self, settings: Callable[[], TwilioSettings], clock: Callable[[], float] = time.time) -> None:
        from twilio.http.async_http_client import AsyncTwilioHttpClient
        from twilio.rest import Client

        self.settings = settings
        self.clock = clock
        s = settings()
        self.client = Client(s.account_sid, s.auth_token or "", http_client=AsyncTwilioHttpClient(timeout=15))
        self.client.api.base_url = s.api_base
        self._tasks: set[asyncio.Task[None]] = set()
        self.action_grace = ACTION_GRACE
        self._timers: set[asyncio.TimerHandle] = set()
        #: Attempt id → (language, will it be retried) of an attempt a machine ended: its
        #: manager's <Dial action> comes next and tells them (`machine_told`).
        self._machines: dict[str, tuple[str, bool]] = {}

    def machine_heard(self, flight: Flight, retried: bool) -> None:
        self._machines[flight.attempt_id] = (flight.contact.language or "", retried)
        while len(self._machines) > MACHINES_KEPT:  # a Dial action that never came (the manager left)
            del self._machines[next(iter(self._machines))]

    def machine_told(self, attempt_id: str) -> tuple[str, bool] | None:
        """(language, retried) when a machine ended this attempt and its manager is to be told; once."""
        return self._machines.pop(attempt_id, None)

    def after_grace(self, fn: Callable[[], None]) -> None:
        """Run `fn` once the customer's Dial action has had `action_grace` to arrive."""
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._timers.discard(handle)
            fn()

        handle = loop.call_later(self.action_grace, fire)
        self._timers.add(handle)

    def reaches(self, manager: Manager) -> bool:
        return manager.id in self.settings().managers

    async def ring(self, flight: Flight, outcomes: Outcomes) -> None:
        from twilio.base.exceptions import TwilioException, TwilioRestException

        s = self.settings()
        ring = min(s.ring_time, flight.expires_at - self.clock() - RING_MARGIN)
        if ring < 1.0:
            await outcomes.not_sent(flight, "offer expired")
            return
        caller_id = s.caller_id or s.sms_from or next(iter(s.numbers), None)
        if caller_id is None:
            await outcomes.not_sent(flight, "no Twilio number to call from (twilio.caller_id)")
            return
        query = {"contact": flight.contact_id, "attempt": flight.attempt_id}
        await outcomes.dialling(flight)
        try:
            call = await self.client.calls.create_async(
                to=s.managers[flight.manager.id],
                from_=caller_id,
                url=url(s, "/callback/answer", **query),
                method="POST",
                status_callback=url(s, "/callback/status", **query),
                status_callback_method="POST",
                timeout=max(MIN_RING, int(ring)),
            )
        except TwilioRestException as err:
            if err.status < 500:  # refused: no call was created
                await outcomes.not_sent(flight, f"Twilio refused the call: {err.status} {err.msg}")
            else:
                await outcomes.outcome_unknown(flight, f"Twilio answered {err.status}")
            return
        except (TwilioException, OSError, TimeoutError) as err:
            # Twilio may have created the call: never sent twice; the offer runs out if it did not ring.
            await outcomes.outcome_unknown(flight, f"calls.create outcome unknown ({type(err).__name__}: {err})")
            return
        flight.leg = str(call.sid)
        log.info("callback %s: Twilio call %s rings manager %s", flight.contact_id, call.sid, flight.manager.id)

    def withdraw(self, flight: Flight, reason: str) -> bool:
        if flight.leg.startswith("CA"):  # created: stop the manager's phone ringing
            self._spawn(self._cancel(flight.leg))
        return True

    async def _cancel(self, sid: str, status: str = "canceled") -> None:
        try:
            await self.client.calls(sid).update_async(status=status)
        except Exception as err:  # it may have ended already: nothing to undo then
            log.info("Twilio %s of %s: %s", status, sid, err)

    def hang_up(self, sid: str) -> None:
        """End a connected leg (a machine the detector heard only after the bridge)."""
        self._spawn(self._cancel(sid, "completed"))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def cancel_grace(self) -> None:
        """Shutting down: what was in flight is reconciled after the restart."""
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()

    async def close(self) -> None:
        self.cancel_grace()
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        close = getattr(self.client.http_client, "close", None)
        if close is not None:
            await close()


def machine_notice_twiml(settings: TwilioSettings, lang: str, retried: bool) -> VoiceResponse:
    """The manager's leg after a machine answered the customer's: a word on why, then <Hangup/>."""
    resp = VoiceResponse()
    texts = MACHINE_NOTICE[retried]
    resp.say(texts.get(lang, texts["en"]), language=LANGUAGES.get(lang, lang), voice=settings.voice.get(lang))
    resp.hangup()
    return resp


def customer_dial_twiml(settings: TwilioSettings, flight: Flight, lang: str, region: str) -> VoiceResponse:
    """What the manager's answered leg does: a word about whom they call, then Dial the customer."""
    resp = VoiceResponse()
    who = flight.contact.customer_name or flight.contact.phone
    text = f"Обратный звонок: {who}." if lang == "ru" else f"Callback to {who}."
    resp.say(text, language=LANGUAGES.get(lang, lang), voice=settings.voice.get(lang))
    dial = Dial(
        timeout=max(MIN_RING, round(settings.customer_ring)),
        action=url(settings, "/callback/dial-done", contact=flight.contact_id, attempt=flight.attempt_id),
        method="POST",
        caller_id=settings.caller_id,
    )
    number = e164(flight.contact.phone, region)
    if settings.callback_machine_detection:
        query = {"contact": flight.contact_id, "attempt": flight.attempt_id}
        dial.number(
            number,
            machine_detection="Enable",  # a verdict at once: nothing is left on a voicemail
            url=url(settings, "/callback/amd", **query, via="url"),
            method="POST",
            amd_status_callback=url(settings, "/callback/amd", **query, via="callback"),
            amd_status_callback_method="POST",
        )
    else:
        dial.number(number)
    resp.append(dial)
    return resp


async def customer_screened(
    _svc: object, callbacks: Callbacks, query: Mapping[str, str], form: Mapping[str, str]
) -> VoiceResponse:
    """POST /callback/amd: who answered the customer's leg (AnsweredBy). A machine ends the
    attempt as MACHINE (retried by the callback rules) and its leg: <Hangup/> as the Number's
    `url`, which runs before the bridge, or a REST hang-up when the verdict came after it."""
    cid, attempt = query.get("contact", ""), query.get("attempt", "")
    resp = VoiceResponse()
    if callbacks.in_flight(cid, attempt) is None:  # over: a machine was heard already, or the manager left
        resp.hangup()
        return resp
    machine = twilio_machine(form.get("AnsweredBy", ""))
    if machine:
        log.info("callback %s: the customer's leg was answered by %s", cid, machine)
        flight = callbacks.in_flight(cid, attempt)
        if flight is not None and isinstance(callbacks.dialer, TwilioDialer):
            # the request's own limit, not today's setting: a request made before it changed keeps its own
            callbacks.dialer.machine_heard(flight, not flight.last_attempt)
        callbacks.on_result(cid, attempt, "ANSWER", machine=machine)
        resp.hangup()
        leg = form.get("CallSid", "")
        if query.get("via") == "callback" and leg and isinstance(callbacks.dialer, TwilioDialer):
            callbacks.dialer.hang_up(leg)
    return resp


__all__ = [
    "DIAL_STATUS",
    "TwilioDialer",
    "customer_dial_twiml",
    "customer_screened",
    "e164",
    "machine_notice_twiml",
    "twilio_machine",
]
