"""Adapter: the CRM's HTTP endpoints (customers, deals and the funnel, vacations, rotation,
ratings, CSV import/export). Registered on the one `api` registry when this module is
imported (the composition root does), so the OpenAPI document lists them too."""

from __future__ import annotations

import csv
import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import date
from functools import wraps
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import Field, field_validator

from acd.api import schemas as s
from acd.api.app import SERVICES, _limit, _me, _visible_contact, api
from acd.api.routing import ApiError, parse_body, whole_number
from acd.core import events as ev
from acd.core.model import ContactStatus, Outcome
from acd.crm import csvio
from acd.crm.model import CrmEvent, Customer, Deal, Vacation
from acd.crm.service import CrmError, CrmService, RoutingChange

CRM = web.AppKey("crm", CrmService)
log = logging.getLogger("acd.crm")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _crm_errors(handler: Handler) -> Handler:
    @wraps(handler)
    async def run(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except CrmError as err:
            status = 404 if err.code.startswith("no_such") else 409 if err.code in ("exists", "closed") else 400
            raise ApiError(status, err.code, str(err)) from None

    return run


def _crm(request: web.Request) -> CrmService:
    return request.app[CRM]


# ---- bodies -----------------------------------------------------------------------


class CustomerIn(s.Body):
    name: str = Field(min_length=1, max_length=300)
    kind: Literal["company", "person"] = "company"
    phones: list[str] = Field(default_factory=list, max_length=20)
    emails: list[str] = Field(default_factory=list, max_length=20)
    account_manager: str | None = None
    note: str = Field("", max_length=4000)


class CustomerPatch(s.Body):
    """Only the fields given change. Only `account_manager` may be null (no account manager);
    the default None of the others means "not given", never a value to store."""

    name: str | None = Field(None, min_length=1, max_length=300)
    kind: Literal["company", "person"] | None = None
    phones: list[str] | None = Field(None, max_length=20)
    emails: list[str] | None = Field(None, max_length=20)
    account_manager: str | None = None
    note: str | None = Field(None, max_length=4000)

    @field_validator("name", "kind", "phones", "emails", "note", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("may not be null (leave it out to keep it)")
        return value


class PinIn(s.Body):
    manager_id: str | None


class DealIn(s.Body):
    """Open a deal from a contact (its customer, answers and handler carry over) or for a customer."""

    contact_id: str | None = None
    customer_id: str | None = None
    title: str = Field("", max_length=300)
    amount: float | None = Field(None, ge=0)
    stage: str | None = None
    owner: str | None = None
    stage_owner: str | None = None


class StageIn(s.Body):
    stage: str
    stage_owner: str | None = None


class CloseIn(s.Body):
    outcome: Literal["won", "lost"]
    amount: float | None = Field(None, ge=0)
    reason: str = Field("", max_length=1000)


class FinishDealIn(s.Body):
    """Finish the contact and, in the same step, open / move / close its deal: `won` or
    `lost` closes the contact's deal (opening it first if there is none), `stage` moves it
    (or opens it there)."""

    outcome: Literal["done", "won", "lost"] = "done"
    title: str = Field("", max_length=300)
    amount: float | None = Field(None, ge=0)
    stage: str | None = None
    stage_owner: str | None = None
    reason: str = Field("", max_length=1000)


# The days a vacation may name: any real one. Its end, the day after last_day, must stay a date (9999-12-31 was a 500)
VacationDay = Annotated[date, Field(ge=date(2000, 1, 1), le=date(2999, 12, 31))]


class VacationIn(s.Body):
    manager_id: str
    first_day: VacationDay
    last_day: VacationDay
    substitute: str | None = None
    note: str = Field("", max_length=1000)


class RotationIn(s.Body):
    from_manager: str
    to: list[str] = Field(min_length=1, max_length=200)
    open_deals: bool = True


# ---- views ------------------------------------------------------------------------


def customer_json(c: Customer) -> dict[str, Any]:
    return {
        "id": c.id,
        "name": c.name,
        "kind": c.kind,
        "phones": list(c.phones),
        "emails": list(c.emails),
        "account_manager": c.account_manager,
        "pinned_to": c.pinned_to,
        "criteria": dict(c.criteria),
        "note": c.note,
        "created_at": c.created_at,
    }


def deal_json(d: Deal) -> dict[str, Any]:
    return {
        "id": d.id,
        "customer_id": d.customer_id,
        "title": d.title,
        "amount": d.amount,
        "segment": dict(d.segment),
        "owner": d.owner,
        "stage": d.stage,
        "stage_owner": d.stage_owner,
        "status": d.status.value,
        "opened_at": d.opened_at,
        "stage_since": d.stage_since,
        "last_activity": d.last_activity,
        "closed_at": d.closed_at,
        "contact_id": d.contact_id,
        "override": d.override,
        "source": d.source,
        "lost_reason": d.lost_reason,
    }


def event_json(e: CrmEvent) -> dict[str, Any]:
    return {
        "at": e.at,
        "customer_id": e.customer_id,
        "deal_id": e.deal_id,
        "kind": e.kind,
        "stage": e.stage,
        "manager_id": e.manager_id,
        "by": e.by,
        "detail": dict(e.detail),
    }


def vacation_json(v: Vacation) -> dict[str, Any]:
    return {
        "id": v.id,
        "manager_id": v.manager_id,
        "starts_at": v.starts_at,
        "ends_at": v.ends_at,
        "substitute": v.substitute,
        "note": v.note,
    }


async def _card_json(crm: CrmService, customer_id: str) -> dict[str, Any]:
    from acd.api.views import contact_json

    card = await crm.card(customer_id)
    return {
        "customer": customer_json(card["customer"]),
        "contacts": [contact_json(c) for c in card["contacts"]],
        "deals": [deal_json(d) for d in card["deals"]],
        "history": [event_json(e) for e in card["history"]],
    }


# ---- customers --------------------------------------------------------------------


@api.add(
    "GET",
    "/api/crm/lookup",
    "Recognise a caller by phone or e-mail (screen pop)",
    "manager",
    query=("phone", "email"),
    tag="crm",
)
@_crm_errors
async def lookup(request: web.Request) -> web.Response:
    crm = _crm(request)
    found = await crm.recognise(request.query.get("phone", ""), request.query.get("email", ""))
    if found is None:
        raise ApiError(404, "no_such_customer", "nobody known by this phone or e-mail")
    return web.json_response(await _card_json(crm, found.id))


@api.add(
    "GET",
    "/api/crm/customers",
    "Customers, newest first",
    "manager",
    query=("q", "account_manager", "limit"),
    tag="crm",
)
@_crm_errors
async def list_customers(request: web.Request) -> web.Response:
    # a manager lists only their own customers (as /api/contacts only their own contacts):
    # the whole base is the supervisor's export, not a leaving seller's download
    rows = await _crm(request).repo.list_customers(
        request.query.get("q") or None, _mine_or(request, "account_manager"), _limit(request)
    )
    return web.json_response({"customers": [customer_json(c) for c in rows]})


@api.add("POST", "/api/crm/customers", "Create a customer", "supervisor", body=CustomerIn, tag="crm")
@_crm_errors
async def create_customer(request: web.Request) -> web.Response:
    body = await parse_body(request, CustomerIn)
    c = await _crm(request).create_customer(
        body.name, body.phones, body.emails, body.kind, body.account_manager, body.note, _me(request).actor
    )
    return web.json_response(customer_json(c), status=201)


@api.add("GET", "/api/crm/customers/{customer_id}", "A customer's card: contacts, deals, history", "manager", tag="crm")
@_crm_errors
async def get_customer(request: web.Request) -> web.Response:
    return web.json_response(await _card_json(_crm(request), request.match_info["customer_id"]))


@api.add("PATCH", "/api/crm/customers/{customer_id}", "Update a customer", "supervisor", body=CustomerPatch, tag="crm")
@_crm_errors
async def update_customer(request: web.Request) -> web.Response:
    body = await parse_body(request, CustomerPatch)
    crm = _crm(request)
    before = await crm.customer(request.match_info["customer_id"])
    c = await crm.update_customer(before.id, body.model_dump(exclude_unset=True), _me(request).actor)
    await crm.route_again(RoutingChange.customer(before, c))
    return web.json_response(customer_json(c))


@api.add(
    "POST",
    "/api/crm/customers/{customer_id}/pin",
    "Pin a client to a manager (null unpins)",
    "supervisor",
    body=PinIn,
    tag="crm",
)
@_crm_errors
async def pin_customer(request: web.Request) -> web.Response:
    body = await parse_body(request, PinIn)
    me = _me(request)
    crm = _crm(request)
    before = await crm.customer(request.match_info["customer_id"])
    c = await crm.pin(before.id, body.manager_id, me.actor)
    await request.app[SERVICES].store.audit(
        crm.clock(), me.actor, "pin_customer", c.id, {"manager_id": body.manager_id}
    )
    await crm.route_again(RoutingChange.customer(before, c))
    return web.json_response(customer_json(c))


# ---- deals ------------------------------------------------------------------------


@api.add(
    "GET",
    "/api/crm/deals",
    "Deals, newest first",
    "manager",
    query=("status", "owner", "customer_id", "limit"),
    tag="crm",
)
@_crm_errors
async def list_deals(request: web.Request) -> web.Response:
    status = request.query.get("status") or None
    if status not in (None, "open", "won", "lost"):
        raise ApiError(400, "invalid", "status: one of open, won, lost")
    rows = await _crm(request).repo.list_deals(
        status, _mine_or(request, "owner"), request.query.get("customer_id") or None, _limit(request)
    )
    return web.json_response({"deals": [deal_json(d) for d in rows]})


def _mine_or(request: web.Request, name: str) -> str | None:
    """A manager's own id; for a supervisor or admin, the query's `name` filter (or none)."""
    me = _me(request)
    return me.manager_id if me.role == "manager" else request.query.get(name) or None


def _may_change(request: web.Request, deal: Deal) -> None:
    """A manager changes only a deal they own or whose current stage they hold; else 403.
    (Closing a colleague's deal as lost would cut their rating, by which routing chooses.)"""
    me = _me(request)
    if me.role == "manager" and me.manager_id not in (deal.owner, deal.stage_owner):
        raise ApiError(403, "forbidden", f"deal {deal.id} is neither yours nor in a stage you hold")


@api.add("POST", "/api/crm/deals", "Open a deal from a contact or for a customer", "manager", body=DealIn, tag="crm")
@_crm_errors
async def open_deal(request: web.Request) -> web.Response:
    body = await parse_body(request, DealIn)
    me = _me(request)
    if me.role == "manager" and body.owner not in (None, me.manager_id):
        raise ApiError(403, "forbidden", "a manager opens deals for themself (owner: leave it out)")
    contact = None
    if body.contact_id:
        svc = request.app[SERVICES]
        contact = svc.dispatcher.board.contacts.get(body.contact_id) or await svc.store.get_contact(body.contact_id)
        if contact is None or (me.role == "manager" and me.manager_id not in (contact.assigned_to, contact.offered_to)):
            raise ApiError(404, "no_such_contact", f"no contact {body.contact_id}")
    owner = body.owner or (me.manager_id if contact is None or contact.assigned_to is None else None)
    d = await _crm(request).open_deal(
        customer_id=body.customer_id,
        contact=contact,
        title=body.title,
        amount=body.amount,
        stage=body.stage,
        owner=owner,
        stage_owner=body.stage_owner,
        by=me.actor,
    )
    await _crm(request).route_again(RoutingChange.opened(d))
    return web.json_response(deal_json(d), status=201)


@api.add("GET", "/api/crm/deals/{deal_id}", "A deal with its stage history", "manager", tag="crm")
@_crm_errors
async def get_deal(request: web.Request) -> web.Response:
    crm = _crm(request)
    d = await crm.deal(request.match_info["deal_id"])
    history = await crm.repo.history(deal_id=d.id)
    return web.json_response({**deal_json(d), "history": [event_json(e) for e in history]})


@api.add(
    "POST", "/api/crm/deals/{deal_id}/stage", "Move a deal to another funnel stage", "manager", body=StageIn, tag="crm"
)
@_crm_errors
async def move_deal(request: web.Request) -> web.Response:
    body = await parse_body(request, StageIn)
    crm = _crm(request)
    before = await crm.deal(request.match_info["deal_id"])
    _may_change(request, before)
    d = await crm.move(before.id, body.stage, body.stage_owner, _me(request).actor)
    await crm.route_again(RoutingChange.deal(before, d))
    return web.json_response(deal_json(d))


@api.add(
    "POST",
    "/api/crm/deals/{deal_id}/close",
    "Close a deal as won (with the amount) or lost",
    "manager",
    body=CloseIn,
    tag="crm",
)
@_crm_errors
async def close_deal(request: web.Request) -> web.Response:
    body = await parse_body(request, CloseIn)
    crm = _crm(request)
    before = await crm.deal(request.match_info["deal_id"])
    _may_change(request, before)
    d = await crm.close(before.id, body.outcome == "won", body.amount, body.reason, _me(request).actor)
    await crm.route_again(RoutingChange.deal(before, d))
    return web.json_response(deal_json(d))


@api.add(
    "POST",
    "/api/crm/contacts/{contact_id}/finish",
    "Finish a contact and open / move / close its deal in one step",
    "manager",
    body=FinishDealIn,
    tag="crm",
)
@_crm_errors
async def finish_with_deal(request: web.Request) -> web.Response:
    body = await parse_body(request, FinishDealIn)
    me = _me(request)
    svc = request.app[SERVICES]
    crm = _crm(request)
    contact = await _visible_contact(request)
    if contact.status is not ContactStatus.ASSIGNED:
        raise ApiError(409, "not_assigned", f"contact {contact.id} is {contact.status.value}, not assigned")
    if me.role == "manager" and contact.assigned_to != me.manager_id:
        raise ApiError(409, "not_yours", f"contact {contact.id} is assigned to {contact.assigned_to}")
    deal = await crm.repo.deal_from_contact(contact.id)
    if deal is None and contact.payload.get("deal_id"):
        deal = await crm.repo.get_deal(str(contact.payload["deal_id"]))
    if deal is not None and deal.status.value != "open":
        deal = None if body.outcome == "done" and not body.stage else deal
    if body.outcome in ("won", "lost") or body.stage:
        if deal is None:
            deal = await crm.open_deal(
                contact=contact,
                title=body.title,
                amount=body.amount,
                stage=body.stage,
                stage_owner=body.stage_owner,
                by=me.actor,
            )
            await crm.route_again(RoutingChange.opened(deal))
        elif body.stage and body.stage != deal.stage:
            before = deal
            deal = await crm.move(deal.id, body.stage, body.stage_owner, me.actor)
            await crm.route_again(RoutingChange.deal(before, deal))
        if body.outcome in ("won", "lost"):
            before = deal
            deal = await crm.close(deal.id, body.outcome == "won", body.amount, body.reason, me.actor)
            await crm.route_again(RoutingChange.deal(before, deal))
    await svc.dispatcher.submit(
        ev.WorkFinished(contact.id, me.manager_id if me.role == "manager" else None, Outcome(body.outcome))
    )
    c = await svc.store.get_contact(contact.id)
    from acd.api.views import contact_json

    return web.json_response(
        {"contact": contact_json(c) if c else {"id": contact.id}, "deal": deal and deal_json(deal)}
    )


# ---- vacations and rotation -------------------------------------------------------


@api.add(
    "GET", "/api/crm/vacations", "Vacations not yet over, with substitutes", "manager", query=("manager_id",), tag="crm"
)
@_crm_errors
async def list_vacations(request: web.Request) -> web.Response:
    crm = _crm(request)
    rows = await crm.repo.list_vacations(request.query.get("manager_id") or None, ending_after=crm.clock())
    return web.json_response({"vacations": [vacation_json(v) for v in rows]})


@api.add("POST", "/api/crm/vacations", "Record a vacation and its substitute", "supervisor", body=VacationIn, tag="crm")
@_crm_errors
async def add_vacation(request: web.Request) -> web.Response:
    body = await parse_body(request, VacationIn)
    crm = _crm(request)
    v = await crm.add_vacation(body.manager_id, body.first_day, body.last_day, body.substitute, body.note)
    me = _me(request)
    await request.app[SERVICES].store.audit(crm.clock(), me.actor, "vacation", v.manager_id, vacation_json(v))
    await crm.route_again(RoutingChange.vacation(v, added=True))
    return web.json_response(vacation_json(v), status=201)


@api.add("DELETE", "/api/crm/vacations/{vacation_id}", "Cancel a vacation", "supervisor", tag="crm")
@_crm_errors
async def delete_vacation(request: web.Request) -> web.Response:
    raw = request.match_info["vacation_id"]
    number = whole_number(raw)
    change = None if number is None else await _crm(request).cancel_vacation(number)
    if change is None:
        raise ApiError(404, "no_such_vacation", f"no vacation {raw}")
    await _crm(request).route_again(change)
    return web.json_response({"id": number, "deleted": True})


@api.add(
    "POST",
    "/api/crm/rotation",
    "Hand a leaving manager's customers and open deals to others (history kept)",
    "supervisor",
    body=RotationIn,
    tag="crm",
)
@_crm_errors
async def rotation(request: web.Request) -> web.Response:
    body = await parse_body(request, RotationIn)
    me = _me(request)
    crm = _crm(request)
    out, change = await crm.hand_over(body.from_manager, body.to, me.actor, body.open_deals)
    await request.app[SERVICES].store.audit(
        crm.clock(), me.actor, "rotation", body.from_manager, {**out, "to": body.to}
    )
    await crm.route_again(change)
    return web.json_response(out)


# ---- ratings ----------------------------------------------------------------------


def _segment_query(request: web.Request) -> dict[str, str]:
    keys = request.app[SERVICES].dispatcher.board.policy.segment_keys
    return {k: request.query[k] for k in keys if request.query.get(k)}


@api.add(
    "GET",
    "/api/crm/ratings",
    "Managers ranked by expected value for a segment (sales leaders)",
    "supervisor",
    query=("purpose", "price_tier", "temperature"),
    tag="crm",
)
@_crm_errors
async def leaderboard(request: web.Request) -> web.Response:
    crm = _crm(request)
    return web.json_response(
        {
            "as_of": crm.ratings.as_of,
            "segment": _segment_query(request),
            "managers": crm.leaderboard(_segment_query(request)),
        }
    )


@api.add(
    "GET",
    "/api/crm/ratings/{manager_id}",
    "A manager's rating card: formula, figures, interval, trend, the deals behind it",
    "manager",
    query=("purpose", "price_tier", "temperature"),
    tag="crm",
)
@_crm_errors
async def rating_card(request: web.Request) -> web.Response:
    mid = request.match_info["manager_id"]
    me = _me(request)
    if me.role == "manager" and me.manager_id != mid:
        raise ApiError(403, "forbidden", "a manager may see only their own rating card")
    m = request.app[SERVICES].dispatcher.board.managers.get(mid)
    if m is None:
        raise ApiError(404, "no_such_manager", f"no manager {mid}")
    seg = _segment_query(request)
    return web.json_response(_crm(request).rating_card(m, [seg] if seg else []))


@api.add("POST", "/api/crm/ratings/recompute", "Recompute every rating from the deals", "supervisor", tag="crm")
@_crm_errors
async def recompute(request: web.Request) -> web.Response:
    return web.json_response(await _crm(request).recompute())


# ---- import and export ------------------------------------------------------------


@api.add(
    "POST",
    "/api/crm/import/customers",
    "Import customers from CSV (the body); rejected rows are reported",
    "admin",
    tag="crm",
)
@_crm_errors
async def import_customers(request: web.Request) -> web.Response:
    crm = _crm(request)
    with _unreadable_csv():
        report = await crm.import_customers(await _csv_upload(request), _me(request).actor)
    await crm.route_again(report.change)
    return web.json_response(report.json())


@api.add(
    "POST", "/api/crm/import/deals", "Import deals from CSV (the body); rejected rows are reported", "admin", tag="crm"
)
@_crm_errors
async def import_deals(request: web.Request) -> web.Response:
    crm = _crm(request)
    with _unreadable_csv():
        report = await crm.import_deals(await _csv_upload(request), _me(request).actor)
    await crm.route_again(report.change)
    return web.json_response(report.json())


@contextmanager
def _unreadable_csv() -> Iterator[None]:
    """csv's own refusal (a field over its size limit) is the file's fault: a 400. The file
    is read whole before anything is written, so nothing of it is stored."""
    try:
        yield
    except csv.Error as err:
        raise ApiError(400, "not_csv", f"the file cannot be read as a CSV table: {err}") from None


async def _csv_upload(request: web.Request) -> str:
    try:
        return csvio.decoded(await request.read())
    except csvio.NotText as err:
        raise ApiError(400, "not_text", str(err)) from None


def _csv(text: str, name: str) -> web.Response:
    return web.Response(
        text=text,
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


def excel_wanted(request: web.Request) -> bool:
    """Whether an export is asked for in its Excel variant (`?excel=1`: what Excel with
    Russian regional settings opens right, see acd.crm.csvio) rather than the plain CSV
    (no `excel`, or `excel=0`)."""
    value = request.query.get("excel", "0")
    if value not in ("0", "1"):
        raise ApiError(400, "invalid", "excel: 1 (the CSV for Excel) or 0 (the plain CSV)")
    return value == "1"


@api.add(
    "GET",
    "/api/crm/export/customers.csv",
    "Every customer as CSV (excel=1: for Excel with Russian regional settings)",
    "supervisor",
    query=("excel",),
    tag="crm",
)
@_crm_errors
async def export_customers(request: web.Request) -> web.Response:
    return _csv(await _crm(request).export_customers(excel=excel_wanted(request)), "customers.csv")


@api.add(
    "GET",
    "/api/crm/export/deals.csv",
    "Every deal as CSV (excel=1: for Excel with Russian regional settings)",
    "supervisor",
    query=("excel",),
    tag="crm",
)
@_crm_errors
async def export_deals(request: web.Request) -> web.Response:
    return _csv(await _crm(request).export_deals(excel=excel_wanted(request)), "deals.csv")
