"""Adapter: the HTTP side of writing finished contacts back to an external CRM — what was
sent, what waits, what was given up, and a retry of the latter.

Importing this module registers its routes on `acd.api.app.api`.
"""

from __future__ import annotations

from aiohttp import web

from acd.api.app import SERVICES, _limit, api
from acd.api.routing import ApiError
from acd.crm.external import ExternalSync
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
