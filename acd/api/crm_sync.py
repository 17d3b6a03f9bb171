"""Adapter: the HTTP side of writing finished contacts back to an external CRM — what was
sent, what waits, what was given up, and a retry of the latter — and of its change
notifications (who serves a customer changed there: their waiting contacts routed again).

Importing this module registers its routes on `acd.api.app.api`.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl

from aiohttp import web

from acd.api.app import SERVICES, _limit, api
from acd.api.crm import CRM
from acd.api.proxies import limit_key
from acd.api.routing import ApiError
from acd.config.crm_external import ExternalCrmSettings
from acd.core.model import Contact
from acd.crm.external import ExternalSync
from acd.crm.external.base import Notice, may_concern, unknown_to_it
from acd.crm.external.bitrix24 import Bitrix24Crm, parse_event
from acd.crm.external.http import notice_of, verify
from acd.crm.rerouting import LIVE, Rerouting
from acd.crm.service import RoutingChange
from acd.storage.crm_sync import SyncItem, SyncStore

CRM_SYNC = web.AppKey("crm_sync", ExternalSync)
STATUSES = ("pending", "sending", "sent", "failed")


def _item_json(item: SyncItem) -> dict[str, object]:
    return {
        "contact_id": item.contact_id,
        "idempotency_key": item.key,
        "status": item.status,
        "attempts": item.attempts,
        "next_at": item.next_at,
        "last_error": item.last_error,
        "external_id": item.external_id,
        "created_at": item.created_at,
        "sent_at": item.sent_at,
    }


@api.add(
    "GET",
    "/api/crm/sync",
    "Finished contacts written back to the external CRM, newest first, with their state",
    role="supervisor",
    query=("status", "limit"),
    tag="crm",
)
async def list_sync(request: web.Request) -> web.Response:
    status = request.query.get("status") or None
    if status is not None and status not in STATUSES:
        raise ApiError(400, "invalid", f"status: one of {', '.join(STATUSES)}")
    items = await SyncStore(request.app[SERVICES].store).items(status, _limit(request))
    return web.json_response({"items": [_item_json(i) for i in items]})


@api.add(
    "POST",
    "/api/crm/sync/{contact_id}/retry",
    "Write a given-up contact back again (same idempotency key, a fresh set of attempts)",
    role="admin",
    tag="crm",
)
async def retry_sync(request: web.Request) -> web.Response:
    sync = request.app.get(CRM_SYNC)
    if sync is None:
        raise ApiError(409, "unsupported", "no external CRM is configured (crm.external)")
    cid = request.match_info["contact_id"]
    item = await sync.retry(cid)
    if item is None:
        raise ApiError(404, "no_such_contact", f"contact {cid} was never queued for the external CRM")
    if item.status != "pending":
        raise ApiError(409, "conflict", f"contact {cid} is {item.status}: only a failed write-back is retried")
    return web.json_response(_item_json(item))


@api.add(
    "POST",
    "/api/crm/external/events",
    "The office's own CRM says who serves a customer may have changed (Bitrix24's outbound "
    "webhook, form-encoded with its application_token; or a signed JSON notice): answered 202 "
    "at once, then that customer's waiting contacts (a new caller's by their phone or e-mail) are "
    "looked up again and routed by the answer",
    role=None,
    tag="crm",
)
async def crm_event(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    svc.lead_limit.check(limit_key(request))
    sync, crm = request.app.get(CRM_SYNC), request.app.get(CRM)
    settings = sync.settings if sync is not None else None
    if sync is None or settings is None or crm is None or crm.rerouting is None:
        raise ApiError(409, "unsupported", "no external CRM is configured (crm.external)")
    svc.bad_credentials.refuse_if_spent(limit_key(request))  # guessing the token or secret
    raw = await request.read()
    rerouting, region = crm.rerouting, svc.deployment.crm.default_region
    if settings.kind == "bitrix24":
        resolve = _bitrix24_event(request, sync, settings, raw, rerouting, region)
    else:
        resolve = _signed_notice(request, settings, raw, region)
    if resolve is None:
        return web.json_response({"accepted": False}, status=202)  # an event that routes nobody

    async def change() -> RoutingChange | None:
        notice = await resolve()
        if notice is None:
            return None
        sync.forget(notice)  # the next contact of theirs is looked up afresh
        return RoutingChange.outside(notice)

    rerouting.later(change())
    return web.json_response({"accepted": True}, status=202)


def _refuse(request: web.Request, status: int, why: str) -> ApiError:
    request.app[SERVICES].bad_credentials.spend(limit_key(request))
    return ApiError(status, "bad_credentials", why)


def _bitrix24_event(
    request: web.Request,
    sync: ExternalSync,
    settings: ExternalCrmSettings,
    raw: bytes,
    rerouting: Rerouting,
    region: str,
) -> Callable[[], Awaitable[Notice | None]] | None:
    """Bitrix24's outbound webhook: the application token checked, the event read. Worked
    out later (`resolved`) against the contacts waiting then."""
    if not settings.events_token:
        raise ApiError(409, "unsupported", "crm.external.events_token_env is not configured")
    try:
        form = dict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True, max_num_fields=200))
    except ValueError:  # not UTF-8, or too many fields
        raise ApiError(400, "invalid", "a form-encoded Bitrix24 event") from None
    token = form.get("auth[application_token]", "")
    if not token:
        raise _refuse(request, 401, "auth[application_token] is missing")
    if not hmac.compare_digest(token.encode(), settings.events_token.encode()):
        raise _refuse(request, 403, "auth[application_token] is not the configured one")
    found = parse_event(form, leads=settings.leads)
    adapter = sync.adapter
    if found is None or not isinstance(adapter, Bitrix24Crm):
        return None
    entity, n = found

    async def resolved() -> Notice | None:
        waiting = [c for c in _waiting(rerouting) if may_concern(c, adapter.name)]
        if entity == "DEAL" and not waiting:
            # Nothing the deal could concern waits, so its customers are not asked for: a
            # portal's import or automation sends an event per deal, by the hundred, and each
            # `crm.deal.get` would spend the ~2 requests a second Bitrix24 allows that the
            # look-ups of arriving contacts need. Whose cached answers it made stale is then
            # unknown: all go, and the next contacts are looked up afresh, once each.
            sync.forget_all()
            return None
        return await adapter.notice(entity, n, region, keys=any(unknown_to_it(c) for c in waiting))

    return resolved


def _waiting(rerouting: Rerouting) -> list[Contact]:
    """The contacts waiting or offered now and not pinned (those re-routing may reach), from
    the board in memory: no query."""
    return [c for c in rerouting.live.board.contacts.values() if c.status in LIVE and not c.pinned_to]


def _signed_notice(
    request: web.Request, settings: ExternalCrmSettings, raw: bytes, region: str
) -> Callable[[], Awaitable[Notice]] | None:
    """The generic CRM's notice (acd.crm.external.http): its signature checked, the customer read."""
    if not settings.secret:
        raise ApiError(409, "unsupported", "crm.external.secret_env is not configured")
    stamp, signature = request.headers.get("X-ACD-Timestamp", ""), request.headers.get("X-ACD-Signature", "")
    if not (stamp and signature):
        raise _refuse(request, 401, "X-ACD-Timestamp and X-ACD-Signature are required")
    if not verify(settings.secret, stamp, raw, signature, request.app[SERVICES].clock()):
        raise _refuse(request, 403, "the signature is wrong or its timestamp too old")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        raise ApiError(400, "invalid", "a JSON body") from None
    notice = notice_of(data, region)
    if notice is None:
        raise ApiError(400, "invalid", "customer: an object with an id, phone or email")

    async def resolved() -> Notice:
        return notice

    return resolved
