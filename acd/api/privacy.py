"""Adapter: personal-data requests over HTTP (152-FZ, GDPR): an administrator erases a
customer who withdrew consent (acd.crm.erasure does it). Registered on the one `api`
registry when this module is imported (the composition root does)."""

from __future__ import annotations

from typing import cast

from aiohttp import web
from pydantic import Field

from acd.api import schemas as s
from acd.api.app import SERVICES, _me, api
from acd.api.crm import CRM
from acd.api.crm_sync import CRM_SYNC
from acd.api.routing import ApiError, parse_body
from acd.crm.erasure import Eraser, ErasureError, erase_customer
from acd.telephony.api import TELEPHONY
from acd.telephony.traces import TelephonyFiles


class EraseIn(s.Body):
    """Why: the customer's request (its date, number or channel). Kept in the audit log,
    without the customer's own name, phones or e-mails."""

    reason: str = Field(min_length=1, max_length=1000)


@api.add(
    "POST",
    "/api/crm/customers/{customer_id}/erase",
    "Erase a customer's personal data (consent withdrawn): name, phones, e-mails, note, their "
    "contacts' and letters' personal fields, everywhere; deals, outcomes and counts stay; then the "
    "caller numbers in queue_log and the voicemail recordings (`files`; `kept`: what could not "
    "be cleaned, a SQLite log still holding the old values too; `external`: an external CRM's copy, "
    "the office's to erase). "
    "409 while the customer has a live contact",
    "admin",
    body=EraseIn,
    tag="crm",
)
async def erase(request: web.Request) -> web.Response:
    body = await parse_body(request, EraseIn)
    svc = request.app[SERVICES]
    crm = request.app.get(CRM)
    if crm is None or not hasattr(crm.repo, "erase_customer"):
        raise ApiError(404, "no_crm", "this server keeps no customers")
    customer_id = request.match_info["customer_id"]
    telephony = request.app.get(TELEPHONY)
    files = TelephonyFiles.of(svc.deployment, telephony.queue_log if telephony is not None else None)
    external = svc.deployment.crm_external
    try:
        done = await erase_customer(
            cast(Eraser, crm.repo),
            customer_id,
            body.reason,
            _me(request).actor,
            svc.clock(),
            svc.dispatcher.board.contacts.values(),
            files=files,
            external_crm=external.kind if external is not None else None,
            # this process's cache of the external CRM's answers; another node's expires by itself
            lookups=request.app.get(CRM_SYNC),
        )
    except ErasureError as err:
        status = 404 if err.code.startswith("no_such") else 409 if err.code == "live_contacts" else 400
        message = f"{err} ({', '.join(err.live)})" if err.live else str(err)
        raise ApiError(status, err.code, message) from None
    return web.json_response(
        {
            "customer_id": done.customer_id,
            "erased": True,
            "already_erased": done.already_erased,
            "changed": done.changed,
            "files": done.files,
            "kept": [{"path": k.path, "reason": k.reason} for k in done.kept],
            "external": {"notice": done.external, "references": list(done.external_refs)} if done.external else None,
        }
    )
