"""Adapter: Twilio Programmable Voice ⇄ core. TwiML for each webhook, REST calls for offers.

A call's life, with Twilio's webhooks (all signed; see `acd.api.twilio`):

    POST /twilio/voice              a call comes in: the IVR flow of the dialled number starts
    POST /twilio/voice/ivr?s=…      each step: <Say> a prompt, or <Gather> one DTMF key
                                    (the interpreter's state rides in the URL, which the
                                    signature covers, so the caller cannot alter it)
    …flow done                      a contact on the call channel is queued; the caller
                                    waits in <Enqueue> with hold music
    core: OfferContact              REST: redirect the caller's call to /connect
    POST /twilio/voice/connect      <Dial timeout=offer timeout> the manager's number/client,
                                    <Number url=/answered> so we learn when they answer
    POST /twilio/voice/answered     the manager picked up: OfferAccepted (or hang up their
                                    leg if the offer was withdrawn meanwhile)
    POST /twilio/voice/dial-done    busy/failed: OfferFailed and back to the queue;
                                    no-answer: back to the queue, the core's offer timer
                                    pauses the manager (missed offer); completed: finished
    POST /twilio/voice/status       the caller's status callback: hung up while waiting =
                                    abandoned; after talking = finished (a final status is
                                    kept: a late "ringing" does not replace "completed")
    POST /twilio/voice/dequeued     <Enqueue>'s action: hangup / error = abandoned;
                                    queue-full = abandoned ("Twilio queue full"), the caller
                                    told to call again
    core: WithdrawOffer             REST: the caller goes back to <Enqueue>
    REST refused with 21220         the call is not in progress (the caller hung up, and the
                                    number may have no status callback): abandoned

A withheld number in `From` (`anonymous`, +266696687...) is no number: the contact has none,
so the CRM does not look it up and nobody calls it back.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from twilio.twiml.voice_response import Dial, Enqueue, Gather, VoiceResponse

from acd.config.flows import IvrFlow
from acd.config.messaging import TwilioSettings
from acd.telephony.ivr import Ask, Done, IvrRun, Say

log = logging.getLogger("acd.twilio")
QUEUE = "acd"
LANGUAGES = {"ru": "ru-RU", "en": "en-US"}
# What Twilio puts in `From` when the caller withholds their number: a word, or one of these
# numbers (ANONYMOUS, UNAVAILABLE, UNKNOWN spelled on a keypad) — real-looking E.164 numbers
# that must never be looked up in the CRM or called back.
WITHHELD_NUMBERS = frozenset({"+266696687", "+86282452253", "+8656696"})
# Twilio's REST error: "Call is not in-progress. Cannot redirect." (the caller hung up).
CALL_NOT_IN_PROGRESS = 21220
# The status callback's final CallStatus values: a call in one of them never changes again.
FINAL_STATUSES = frozenset({"completed", "busy", "failed", "no-answer", "canceled"})


def caller_number(from_: str) -> str:
    """The caller's number from a webhook's `From`; "" when withheld (`anonymous`, one of
    Twilio's stand-in numbers, no digits at all)."""
    number = from_.strip()
    if number in WITHHELD_NUMBERS or not any(ch.isdigit() for ch in number):
        return ""
    return number


def pack(state: Mapping[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(state, separators=(",", ":")).encode()).decode().rstrip("=")


def unpack(value: str) -> dict[str, Any]:
    padded = value + "=" * (-len(value) % 4)
    data = json.loads(base64.urlsafe_b64decode(padded.encode()))
    if not isinstance(data, dict):
        raise ValueError("IVR state must be a mapping")
    return data


def path(route: str, **query: str) -> str:
    return f"/twilio/voice{route}" + (f"?{urlencode(query)}" if query else "")


def url(settings: TwilioSettings, route: str, **query: str) -> str:
    """The absolute URL Twilio is to fetch: in TwiML too, because Twilio resolves a relative URL
    against the URL it fetched the TwiML from, and "/twilio/voice/…" would lose a path prefix
    of `public_url` (https://host/acd behind a proxy that strips /acd): the call would drop."""
    return settings.public_url + path(route, **query)


def _say(resp: VoiceResponse | Gather, texts: tuple[str, ...], lang: str, settings: TwilioSettings) -> None:
    for text in texts:
        resp.say(text, language=LANGUAGES.get(lang, lang), voice=settings.voice.get(lang))


def ivr_twiml(run: IvrRun, action: Say | Ask | Done, flow: IvrFlow, settings: TwilioSettings) -> VoiceResponse | None:
    """The TwiML for one interpreter action; None for `Done` (the caller queues instead)."""
    resp = VoiceResponse()
    state = pack({"flow": flow.name, **run.state()})
    lang = run.language
    match action:
        case Say(texts=texts):
            _say(resp, texts, lang, settings)
            resp.redirect(url(settings, "/ivr", s=state), method="POST")
        case Ask(texts=texts, keys=keys, timeout=timeout):
            gather = Gather(
                input="dtmf",
                num_digits=1,
                timeout=max(1, round(timeout)),
                action=url(settings, "/ivr", s=state),
                method="POST",
                action_on_empty_result=True,
            )
            _say(gather, texts, lang, settings)
            resp.append(gather)
            log.debug("gather %s keys %s", action.name, sorted(keys))
        case Done():
            return None
    return resp


def enqueue_twiml(settings: TwilioSettings, contact_id: str) -> VoiceResponse:
    resp = VoiceResponse()
    resp.append(
        Enqueue(
            QUEUE,
            action=url(settings, "/dequeued", contact=contact_id),
            method="POST",
            wait_url=url(settings, "/wait"),
            wait_url_method="POST",
        )
    )
    return resp


def queue_full_twiml(settings: TwilioSettings, lang: str) -> VoiceResponse:
    """Twilio's queue is full (the <Enqueue> action's QueueResult=queue-full): the caller
    cannot wait, so they are told so and the call ends (the contact is abandoned)."""
    resp = VoiceResponse()
    if lang == "ru":
        text = "К сожалению, сейчас все линии заняты. Пожалуйста, позвоните позже."
    else:
        text = "Sorry, all our lines are busy. Please call again later."
    _say(resp, (text,), lang, settings)
    resp.hangup()
    return resp


def wait_twiml(settings: TwilioSettings, lang: str) -> VoiceResponse:
    resp = VoiceResponse()
    if settings.hold_music:
        resp.play(settings.hold_music, loop=0)
    else:
        text = "Пожалуйста, оставайтесь на линии." if lang == "ru" else "Please stay on the line."
        _say(resp, (text,), lang, settings)
        resp.pause(length=10)
    return resp


def dial_twiml(
    settings: TwilioSettings, contact_id: str, manager_id: str, target: str, timeout: float
) -> VoiceResponse:
    resp = VoiceResponse()
    dial = Dial(
        timeout=max(5, round(timeout)),
        action=url(settings, "/dial-done", contact=contact_id, manager=manager_id),
        method="POST",
        answer_on_bridge=True,
        caller_id=settings.caller_id,
    )
    answered = url(settings, "/answered", contact=contact_id, manager=manager_id)
    if target.startswith("client:"):
        dial.client(target.removeprefix("client:"), url=answered, method="POST")
    elif target.startswith("sip:"):
        dial.sip(target, url=answered, method="POST")
    else:
        dial.number(target, url=answered, method="POST")
    resp.append(dial)
    return resp


class TwilioCalls:
    """The REST side: move a live call to new TwiML (through the twilio library's async
    client; `api_base` points it elsewhere, e.g. a local stand-in in tests)."""

    def __init__(self, settings: TwilioSettings) -> None:
        from twilio.http.async_http_client import AsyncTwilioHttpClient
        from twilio.rest import Client

        self.settings = settings
        self.client = Client(
            settings.account_sid, settings.auth_token or "", http_client=AsyncTwilioHttpClient(timeout=15)
        )
        self.client.api.base_url = settings.api_base

    async def redirect(self, call_sid: str, route: str) -> None:
        await self.client.calls(call_sid).update_async(url=self.settings.public_url + route, method="POST")

    async def close(self) -> None:
        close = getattr(self.client.http_client, "close", None)
        if close is not None:
            await close()
