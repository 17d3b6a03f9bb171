"""Adapter: the telephony endpoints of the JSON API — callback requests, click-to-call, transfers.

Importing this module registers the routes on the API's one `Registry` (so they are in
/api/openapi.json); the composition root imports it before building the app and stores the
`Telephony` object under `TELEPHONY` (absent: telephony is off, the endpoints answer 503).
Callbacks rung through Twilio (no Asterisk) are under `CALLBACKS` instead.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from aiohttp import web
from pydantic import EmailStr, Field

from acd.api.app import SERVICES, Services, _answers, _me, api, core_refusal, database_away
from acd.api.cluster import RELAY, error_answer, raise_if_error
from acd.api.crm import CRM
from acd.api.proxies import limit_key
from acd.api.routing import IDEMPOTENCY_KEY_MAX, ApiError, idempotency_key, parse_body
from acd.api.schemas import Body
from acd.asterisk.ami import AmiError
from acd.cluster.relay import Relay, Unanswered
from acd.core import events as ev
from acd.core.errors import CoreError
from acd.core.intake import derived
from acd.core.model import Channel, Contact
from acd.crm.identity import dial_digits
from acd.storage import StorageError
from acd.storage.telephony import CallbackRow
from acd.telephony.callbacks import Callbacks
from acd.telephony.service import Telephony, TelephonyError

log = logging.getLogger("acd.telephony")

TELEPHONY = web.AppKey("telephony", Telephony)
CALLBACKS = web.AppKey("callbacks", Callbacks)  # only when they do not ring through Asterisk


def _callbacks(request: web.Request) -> Callbacks:
    callbacks = request.app.get(CALLBACKS)
    return callbacks if callbacks is not None else _telephony(request).callbacks


class CallbackIn(Body):
    """A callback request. `after` (ISO 8601 with a zone, or POSIX seconds) schedules it:
    "call me after 18:00". `idempotency_key` (or the `Idempotency-Key` header) makes a form
    sent twice one request: the second send is answered 200 with the first."""

    phone: str = Field(min_length=3, max_length=40)
    name: str = Field("", max_length=200)
    email: EmailStr | None = None  # to be told how it goes, where there is no SMS
    criteria: dict[str, str] = Field(default_factory=dict)
    language: str | None = Field(None, max_length=8)
    after: str | float | None = None
    idempotency_key: str | None = Field(None, max_length=IDEMPOTENCY_KEY_MAX)


def _telephony(request: web.Request) -> Telephony:
    telephony = request.app.get(TELEPHONY)
    if telephony is None:
        raise ApiError(503, "telephony_off", "telephony is not enabled (asterisk.enabled in the deployment file)")
    return telephony


def _callback_json(cb: CallbackRow) -> dict[str, object]:
    return {
        "id": cb.id,
        "contact_id": cb.contact_id,
        "phone": cb.phone,
        "email": cb.email,
        "status": cb.status,
        "requested_at": cb.requested_at,
        "not_before": cb.not_before,
        "next_at": cb.next_at,
        "attempts": cb.attempts,
        "max_attempts": cb.max_attempts,
        "last_result": cb.last_result,
    }


@api.add(
    "POST", "/api/callbacks", "Request a callback (the website widget)", role=None, body=CallbackIn, tag="telephony"
)
async def request_callback(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    callbacks = _callbacks(request)
    svc.lead_limit.check(limit_key(request))
    body = await parse_body(request, CallbackIn)
    digits = dial_digits(body.phone)
    if len(digits) < 3:
        raise ApiError(400, "invalid", "phone: a number to call back")
    language = body.language or svc.deployment.languages[0]
    if language not in svc.deployment.languages:
        raise ApiError(400, "invalid", f"language: one of {', '.join(svc.deployment.languages)}")
    not_before: float | None = None
    if isinstance(body.after, int | float):
        not_before = float(body.after)
    elif isinstance(body.after, str) and body.after:
        try:
            when = datetime.fromisoformat(body.after)
        except ValueError:
            raise ApiError(400, "invalid", "after: ISO 8601 time with a zone, e.g. 2026-11-24T18:00:00+03:00") from None
        if when.tzinfo is None:
            raise ApiError(400, "invalid", "after: give the time zone, e.g. +03:00")
        not_before = when.timestamp()
    cb, created = await callbacks.submit(
        idempotency_key(request, body.idempotency_key),
        phone=body.phone,
        name=body.name,
        criteria=_answers(svc.deployment, body.criteria),
        language=language,
        not_before=not_before,
        source="api",
        email=str(body.email or ""),
    )
    body_out = _callback_json(cb)
    body_out["who"] = await _who_calls(request, svc, body.phone, cb.criteria)
    return web.json_response(body_out, status=201 if created else 200)


async def _who_calls(
    request: web.Request, svc: Services, phone: str, criteria: Mapping[str, str]
) -> dict[str, object] | None:
    """Who will call back, as far as the server can tell now: the manager a known customer is
    pinned to (routing offers it to them first) where the deployment lets the site say so
    (`web.name_the_manager`), else the team the answers call for; None when nobody in
    particular (any free manager)."""
    crm = request.app.get(CRM)
    board = svc.dispatcher.board
    if crm is not None and svc.deployment.web.name_the_manager:
        customer = await crm.recognise(phone)
        manager = board.managers.get(customer.pinned_to or "") if customer else None
        if manager is not None:
            return {"manager": manager.name}
    team = derived(criteria, board.policy)[2]
    if team and team in svc.deployment.teams:
        return {"team": dict(svc.deployment.teams[team].label)}
    return None


@api.add(
    "GET", "/api/callbacks/{callback_id}", "A callback request and its attempts", role="supervisor", tag="telephony"
)
async def get_callback(request: web.Request) -> web.Response:
    tstore = _callbacks(request).tstore
    cb = await tstore.get_callback(request.match_info["callback_id"])
    if cb is None:
        raise ApiError(404, "no_such_callback", "no such callback request")
    attempts = await tstore.attempts(cb.id)
    body = _callback_json(cb)
    body["attempts_log"] = [
        {
            "attempt": a.attempt,
            "manager_id": a.manager_id,
            "started_at": a.started_at,
            "ended_at": a.ended_at,
            "originate_reason": a.originate_reason,
            "dial_status": a.dial_status,
            "result": a.result,
        }
        for a in attempts
    ]
    return web.json_response(body)


@api.add(
    "POST",
    "/api/contacts/{contact_id}/call",
    "Click-to-call: ring my phone, then the customer",
    role="manager",
    tag="telephony",
)
async def click_to_call(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    telephony = _telephony(request)
    me = _me(request)
    cid = request.match_info["contact_id"]
    contact = svc.dispatcher.board.contacts.get(cid) or await svc.store.get_contact(cid)
    if contact is None or (me.role == "manager" and me.manager_id not in (contact.assigned_to, contact.offered_to)):
        raise ApiError(404, "no_such_contact", f"no contact {cid}")
    manager_id = me.manager_id or contact.assigned_to
    manager = svc.dispatcher.board.managers.get(manager_id or "")
    if manager is None or not manager.device:
        raise ApiError(409, "no_device", "the manager has no phone device to ring")
    if not contact.phone:
        raise ApiError(409, "no_phone", "the contact has no phone number")
    try:
        result = await telephony.click_to_call(contact, manager)
    except AmiError as err:
        raise ApiError(503, "pbx_unavailable", f"Asterisk is not reachable: {err}") from None
    return web.json_response({"answered": result.answered, "reason": result.reason, "channel": result.channel})


class TransferIn(Body):
    """Pass a contact on: to one manager (`to_manager`, who gets it first for `wait_seconds`,
    then anyone) or to a team (`to_team`). A live call is moved by AMI Redirect (blind)."""

    to_manager: str | None = Field(None, min_length=1, max_length=64)
    to_team: str | None = Field(None, min_length=1, max_length=64)
    wait_seconds: float = Field(60.0, ge=0, le=3600)


@api.add(
    "POST",
    "/api/contacts/{contact_id}/transfer",
    "Transfer my contact (a call: blind) to another manager or a team",
    role="manager",
    body=TransferIn,
    tag="telephony",
)
async def transfer(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    me = _me(request)
    body = await parse_body(request, TransferIn)
    cid = request.match_info["contact_id"]
    contact = svc.dispatcher.board.contacts.get(cid)
    if contact is None or (me.role == "manager" and me.manager_id != contact.assigned_to):
        raise ApiError(404, "no_such_contact", f"no open contact {cid} of yours")
    if (body.to_manager is None) == (body.to_team is None):
        raise ApiError(400, "invalid", "give to_manager or to_team")
    if body.to_team is not None and body.to_team not in svc.deployment.teams:
        raise ApiError(400, "invalid", f"to_team: one of {', '.join(svc.deployment.teams)}")
    by = contact.assigned_to or ""
    now = svc.clock()
    until = now + body.wait_seconds if body.to_manager and body.wait_seconds else None
    asked = {"contact_id": cid, "by": by, "to_manager": body.to_manager, "to_team": body.to_team, "until": until}
    telephony = request.app.get(TELEPHONY)
    relay = request.app.get(RELAY)
    holder = str(contact.payload.get("node") or "")
    if telephony is not None and relay is not None and _held_elsewhere(telephony, contact) and holder:
        try:
            result = raise_if_error(await relay.ask(holder, "transfer", asked))
        except Unanswered as err:
            gone = "is not running" if err.gone else "did not say how it went (check the call before retrying)"
            raise ApiError(409, "call_holder_unreachable", f"the call is held by node {holder}, which {gone}") from None
    else:
        result = await _transfer_here(svc, telephony, asked)
    details = {"by": by, "to_manager": body.to_manager, "to_team": body.to_team}
    await svc.store.audit(now, me.actor, "transfer", cid, details)
    return web.json_response({"id": cid, **result})


def _held_elsewhere(telephony: Telephony, contact: Contact) -> bool:
    """Cluster mode: a live call whose FastAGI session runs on another node, which alone can move it."""
    held_here = contact.id in telephony.desk.calls or telephony.desk.holds(contact)
    return contact.channel is Channel.CALL and not held_here


async def _transfer_here(svc: Services, telephony: Telephony | None, asked: Mapping[str, Any]) -> dict[str, Any]:
    """Carry out a transfer on this node (the one holding the call, or any node for a contact
    that is not a live call): the new status and offer, or an ApiError."""
    cid, by = str(asked["contact_id"]), str(asked["by"])
    to_manager, to_team, until = asked.get("to_manager"), asked.get("to_team"), asked.get("until")
    try:
        if telephony is not None:
            contact = svc.dispatcher.board.contacts.get(cid) or await svc.store.get_contact(cid)
            if contact is None:
                raise ApiError(404, "no_such_contact", f"no open contact {cid}")
            await telephony.transfer(contact, by, to_manager=to_manager, to_team=to_team, pin_until=until)
        else:
            await svc.dispatcher.submit(ev.ContactTransferred(cid, by, to_manager, to_team, until))
    except TelephonyError as err:
        raise ApiError(409, err.code, str(err)) from None
    except AmiError as err:
        raise ApiError(503, "pbx_unavailable", f"Asterisk is not reachable: {err}") from None
    c = svc.dispatcher.board.contacts.get(cid)
    return {"status": c.status.value if c else "finished", "offered_to": c.offered_to if c else None}


def answer_transfers(relay: Relay, svc: Services, telephony: Telephony) -> None:
    """Cluster mode: this node carries out the transfers other nodes pass on for the calls it holds."""

    async def transfer_asked(asked: dict[str, Any]) -> dict[str, Any]:
        try:
            return {"ok": await _transfer_here(svc, telephony, asked)}
        except ApiError as err:
            return error_answer(err)
        except CoreError as err:
            return error_answer(core_refusal(err))
        except StorageError:
            log.exception("database unavailable on a transfer passed on by another node")
            return error_answer(database_away())

    relay.handlers["transfer"] = transfer_asked


__all__ = ["CALLBACKS", "TELEPHONY", "CallbackIn", "TransferIn", "answer_transfers"]
