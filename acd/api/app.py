"""Adapter: the JSON HTTP API (aiohttp). Handlers check who may act, turn requests into
core events for the dispatcher, and read state for answers; they never route."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import Field

from acd.api import schemas as s
from acd.api.intake import Intake
from acd.api.proxies import limit_key
from acd.api.routing import ROUTES, ApiError, Registry, idempotency_key, json_response, parse_body, whole_number
from acd.api.security import BAD_CREDENTIALS_PER_MINUTE, Identity, RateLimiter, TokenCache
from acd.api.views import contact_json, decision_json, lead_receipt, manager_json, transition_json
from acd.config import ConfigError, Deployment
from acd.core import events as ev
from acd.core.errors import CoreError
from acd.core.intake import derived
from acd.core.model import Channel, Contact, ContactStatus, Manager, Presence
from acd.dispatcher import Dispatcher
from acd.ids import new_id
from acd.metrics import Metrics
from acd.storage import Refused, StorageError, Store

log = logging.getLogger("acd.api")
api = Registry()


@dataclass
class Services:
    deployment: Deployment
    store: Store
    dispatcher: Dispatcher
    metrics: Metrics
    clock: Callable[[], float] = time.time
    reload: Callable[[], Awaitable[Deployment]] | None = None
    # The CRM's intake step: attach a new contact to its customer and fill `preferred` and
    # `team` for a repeat customer (acd.crm.service.CrmService.enrich). None: no CRM.
    enrich: Callable[[Contact], Awaitable[Contact]] | None = None
    intake: Intake = field(init=False)
    tokens: TokenCache = field(init=False)
    lead_limit: RateLimiter = field(init=False)
    api_limit: RateLimiter = field(init=False)
    bad_credentials: RateLimiter = field(init=False)  # per client address

    def __post_init__(self) -> None:
        self.tokens = TokenCache(self.store.verify_token)
        limits = self.deployment.web.rate_limits
        self.lead_limit = RateLimiter(limits.leads_per_minute)
        self.api_limit = RateLimiter(limits.api_per_minute)
        self.bad_credentials = RateLimiter(BAD_CREDENTIALS_PER_MINUTE)
        self.intake = Intake(self.store, lambda: self.dispatcher.board.policy)


SERVICES = web.AppKey("services", Services)
IDENTITY = web.RequestKey("identity", Identity)
# A signed-in browser (acd.web): the session's Identity, None without one; it refuses a
# state-changing request that lacks the session's CSRF token.
BrowserAuth = Callable[[web.Request], Awaitable[Identity | None]]
BROWSER_AUTH: web.AppKey[BrowserAuth] = web.AppKey("browser_auth")

# ---- middleware -------------------------------------------------------------------


def core_refusal(err: CoreError) -> ApiError:
    """How the API answers a request the routing core refused."""
    return ApiError(404 if err.code.startswith("no_such") else 409, err.code, str(err))


def database_away() -> ApiError:
    return ApiError(503, "unavailable", "the database is unavailable; retry shortly", {"Retry-After": "2"})


@web.middleware
async def errors_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every failure leaves as JSON with a stable code; nothing leaks as a bare 500 page."""
    svc = request.app[SERVICES]
    try:
        response = await handler(request)
    except ApiError as err:
        svc.metrics.requests.labels(str(err.status)).inc()
        raise
    except CoreError as err:
        svc.metrics.requests.labels("409").inc()
        raise core_refusal(err) from None
    except Refused:
        # the same request would be refused again: the client's to mend, not to retry
        log.warning("the database refused a value on %s %s", request.method, request.path, exc_info=True)
        svc.metrics.requests.labels("400").inc()
        raise ApiError(400, "refused", "the database cannot store a value in this request") from None
    except StorageError:
        # nothing was written: the client may safely retry (with the same Idempotency-Key)
        log.exception("database unavailable on %s %s", request.method, request.path)
        svc.metrics.requests.labels("503").inc()
        raise database_away() from None
    except web.HTTPException as err:
        svc.metrics.requests.labels(str(err.status)).inc()
        if err.status >= 400 and err.content_type != "application/json":
            code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(err.status, "http_error")
            raise ApiError(err.status, code, err.reason) from None
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        svc.metrics.requests.labels("500").inc()
        raise ApiError(500, "internal", "internal error; it has been logged") from None
    svc.metrics.requests.labels(str(response.status)).inc()
    return response


@web.middleware
async def auth_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    route = request.app[ROUTES].get((request.method, _canonical(request)))
    if route is None or route.role is None:
        return await handler(request)
    header = request.headers.get("Authorization", "")
    svc = request.app[SERVICES]
    browser = request.app.get(BROWSER_AUTH)
    if header.startswith("Bearer "):
        ident = await _bearer(request, header)
        limit_key = header
    elif browser is not None and (found := await browser(request)) is not None:
        ident, limit_key = found, f"session:{found.actor}"
    else:
        raise ApiError(401, "unauthenticated", "send Authorization: Bearer <token>", {"WWW-Authenticate": "Bearer"})
    if not ident.at_least(route.role):
        raise ApiError(403, "forbidden", f"this needs the {route.role} role")
    svc.api_limit.check(limit_key)
    request[IDENTITY] = ident
    return await handler(request)


async def _bearer(request: web.Request, header: str) -> Identity:
    svc = request.app[SERVICES]
    token = header.removeprefix("Bearer ").strip()
    ident = await svc.tokens.identify(token, lambda: svc.bad_credentials.refuse_if_spent(limit_key(request)))
    if ident is None:
        svc.bad_credentials.spend(limit_key(request))
        raise ApiError(401, "unauthenticated", "unknown or revoked token", {"WWW-Authenticate": "Bearer"})
    return ident


def _canonical(request: web.Request) -> str:
    info = request.match_info.route.resource
    return info.canonical if info is not None else request.path


def _me(request: web.Request) -> Identity:
    return request[IDENTITY]  # type: ignore[no-any-return]


def _self_or_supervisor(request: web.Request, manager_id: str) -> Identity:
    """A manager acts only on themself; supervisors and admins on anyone."""
    me = _me(request)
    if me.role == "manager" and me.manager_id != manager_id:
        raise ApiError(403, "forbidden", "a manager may act only on their own account")
    return me


def _query_float(request: web.Request, name: str) -> float | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    try:
        number = float(raw)
    except ValueError:
        raise ApiError(400, "invalid", f"{name}: not a number") from None
    if not math.isfinite(number):  # "nan" and "inf" parse, and would compare with nothing
        raise ApiError(400, "invalid", f"{name}: a finite number")
    return number


def _limit(request: web.Request, default: int = 100, most: int = 1000) -> int:
    number = whole_number(request.query.get("limit", str(default)))
    if number is None or not 1 <= number <= most:
        raise ApiError(400, "invalid", f"limit: a whole number from 1 to {most}")
    return number


# ---- public -----------------------------------------------------------------------


@api.add("GET", "/healthz", "Liveness and database reachability", role=None, tag="ops")
async def healthz(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    db = await svc.store.ping()
    body = {"status": "ok" if db else "degraded", "db": db, "backlog": svc.dispatcher.backlog}
    return web.json_response(body, status=200 if db else 503)


@api.add("GET", "/api/openapi.json", "This document", role=None, tag="ops")
async def openapi(request: web.Request) -> web.Response:
    return web.json_response(api.openapi("ACD server API", "1"))


@api.add("GET", "/metrics", "Prometheus metrics", role=None, tag="ops")
async def metrics(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    return web.Response(body=generate_latest(svc.metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})


@api.add(
    "POST",
    "/api/leads",
    "Create a web-form lead (idempotent under Idempotency-Key); answers its id and status, "
    "or the whole contact to a supervisor's or admin's bearer token",
    role=None,
    body=s.LeadIn,
)
async def create_lead(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    started = time.perf_counter()
    svc.lead_limit.check(limit_key(request))
    header = request.headers.get("Authorization")
    staff = header is not None and (await _bearer(request, header)).at_least("supervisor")
    body = await parse_body(request, s.LeadIn)
    key = idempotency_key(request, body.idempotency_key)
    criteria = _answers(svc.deployment, body.criteria)
    language = body.language or svc.deployment.languages[0]
    if language not in svc.deployment.languages:
        raise ApiError(400, "invalid", f"language: one of {', '.join(svc.deployment.languages)}")
    if not (body.phone or body.email):
        raise ApiError(400, "invalid", "phone or email: give at least one way to reach the customer")
    skills, bonus, team = derived(criteria, svc.dispatcher.board.policy)
    contact = Contact(
        id=new_id(),
        channel=Channel(body.channel),
        arrived_at=(now := svc.clock()),
        step_since=now,
        criteria=criteria,
        customer_name=body.name,
        phone=body.phone,
        email=str(body.email or ""),
        priority=body.priority + bonus,
        required_skills=skills,
        team=team,
        language=language,
        payload={"note": body.note} if body.note else {},
    )
    stored, created = await svc.intake.submit(contact, key)
    answer = contact_json(stored) if staff else lead_receipt(stored)
    response = json_response(answer, status=201 if created else 200)
    if created:
        # the core takes this object over; the answer above was rendered before it could change
        svc.dispatcher.post(ev.ContactArrived(stored))
        svc.metrics.intake.labels(stored.channel.value).observe(time.perf_counter() - started)
    return response


def _answers(deployment: Deployment, given: dict[str, str]) -> dict[str, str]:
    """The criteria answers, checked against the configuration; defaults fill the gaps."""
    known = {c.name: c for c in deployment.criteria}
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise ApiError(400, "invalid", f"criteria: unknown criterion {', '.join(unknown)}; known: {', '.join(known)}")
    out: dict[str, str] = {}
    for name, crit in known.items():
        value = given.get(name)
        values = [o.value for o in crit.options]
        if value is None or value == "":
            if crit.default is not None:
                out[name] = crit.default
            continue
        if value not in values:
            raise ApiError(400, "invalid", f"criteria.{name}: {value!r} is not one of {', '.join(values)}")
        out[name] = value
    return out


# ---- contacts ---------------------------------------------------------------------


async def _visible_contact(request: web.Request) -> Contact:
    svc = request.app[SERVICES]
    cid = request.match_info["contact_id"]
    c = svc.dispatcher.board.contacts.get(cid) or await svc.store.get_contact(cid)
    if c is None:
        raise ApiError(404, "no_such_contact", f"no contact {cid}")
    me = _me(request)
    if me.role == "manager" and me.manager_id not in (c.assigned_to, c.offered_to):
        raise ApiError(404, "no_such_contact", f"no contact {cid}")
    return c


@api.add("GET", "/api/contacts/{contact_id}", "A contact and its status", role="manager")
async def get_contact(request: web.Request) -> web.Response:
    c = await _visible_contact(request)
    return web.json_response(contact_json(c, request.app[SERVICES].clock()))


@api.add(
    "GET", "/api/contacts", "Contacts, newest first", role="manager", query=("status", "manager_id", "since", "limit")
)
async def list_contacts(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    me = _me(request)
    status = request.query.get("status") or None
    if status is not None and status not in {s.value for s in ContactStatus}:
        raise ApiError(400, "invalid", f"status: one of {', '.join(s.value for s in ContactStatus)}")
    manager_id = me.manager_id if me.role == "manager" else request.query.get("manager_id") or None
    rows = await svc.store.list_contacts(status, manager_id, _query_float(request, "since"), _limit(request))
    return web.json_response({"contacts": [contact_json(c) for c in rows]})


@api.add("POST", "/api/contacts/{contact_id}/accept", "Accept the contact offered to me", role="manager")
async def accept(request: web.Request) -> web.Response:
    me = _me(request)
    if me.manager_id is None:
        raise ApiError(403, "forbidden", "only a manager's own token can accept an offer")
    svc = request.app[SERVICES]
    cid = request.match_info["contact_id"]
    await svc.dispatcher.submit(ev.OfferAccepted(cid, me.manager_id))
    c = svc.dispatcher.board.contacts.get(cid)
    return web.json_response(contact_json(c) if c else {"id": cid})


@api.add(
    "POST", "/api/contacts/{contact_id}/decline", "Decline the contact offered to me", role="manager", body=s.DeclineIn
)
async def decline(request: web.Request) -> web.Response:
    me = _me(request)
    if me.manager_id is None:
        raise ApiError(403, "forbidden", "only a manager's own token can decline an offer")
    body = await parse_body(request, s.DeclineIn)
    svc = request.app[SERVICES]
    cid = request.match_info["contact_id"]
    await svc.dispatcher.submit(ev.OfferDeclined(cid, me.manager_id, body.reason))
    return web.json_response({"id": cid, "declined": True})


@api.add(
    "POST",
    "/api/contacts/{contact_id}/finish",
    "Finish work on a contact (done / won / lost)",
    role="manager",
    body=s.FinishIn,
)
async def finish(request: web.Request) -> web.Response:
    me = _me(request)
    body = await parse_body(request, s.FinishIn)
    svc = request.app[SERVICES]
    cid = request.match_info["contact_id"]
    if me.role == "manager":
        held = svc.dispatcher.board.contacts.get(cid)
        if held is None or held.assigned_to != me.manager_id:  # not just offered, nor someone else's
            raise ApiError(404, "no_such_contact", f"no contact {cid} assigned to you")
        await svc.dispatcher.submit(ev.WorkFinished(cid, me.manager_id, body.outcome))
    else:
        await svc.dispatcher.submit(ev.WorkFinished(cid, None, body.outcome))
        await svc.store.audit(svc.clock(), me.actor, "finish", cid, {"outcome": body.outcome.value})
    c = await svc.store.get_contact(cid)
    return web.json_response(contact_json(c) if c else {"id": cid})


@api.add(
    "POST",
    "/api/contacts/{contact_id}/reassign",
    "Reassign or pin a contact to a manager",
    role="supervisor",
    body=s.ReassignIn,
)
async def reassign(request: web.Request) -> web.Response:
    me = _me(request)
    body = await parse_body(request, s.ReassignIn)
    svc = request.app[SERVICES]
    cid = request.match_info["contact_id"]
    now = svc.clock()
    until = now + body.pin_minutes * 60 if body.pin_minutes else None
    await svc.dispatcher.submit(ev.ContactReassigned(cid, body.manager_id, me.actor, until))
    await svc.store.audit(now, me.actor, "reassign", cid, {"manager_id": body.manager_id, "pin_until": until})
    c = svc.dispatcher.board.contacts.get(cid)
    return web.json_response(contact_json(c, now) if c else {"id": cid})


# ---- the queue and the decision log -----------------------------------------------


@api.add("GET", "/api/queue", "The live queue and every manager's state", role="supervisor")
async def queue(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    board = svc.dispatcher.board
    now = svc.clock()
    offered = [c for c in board.contacts.values() if c.status is ContactStatus.OFFERED]
    return web.json_response(
        {
            "now": now,
            "policy_version": board.policy.version,
            "waiting": [contact_json(c, now) for c in board.queue(now)],
            "offered": [contact_json(c, now) for c in offered],
            "managers": [manager_json(m) for m in sorted(board.managers.values(), key=lambda m: (m.order, m.id))],
        }
    )


@api.add(
    "GET",
    "/api/decisions",
    "The decision log with explanations, newest first",
    role="supervisor",
    query=("contact_id", "manager_id", "since", "limit"),
)
async def decisions(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    rows = await svc.store.list_decisions(
        request.query.get("contact_id") or None,
        request.query.get("manager_id") or None,
        _query_float(request, "since"),
        _limit(request),
    )
    return web.json_response({"decisions": [decision_json(d) for d in rows]})


@api.add(
    "GET", "/api/shadow", "How often the shadow policy agrees with the live one", role="supervisor", query=("limit",)
)
async def shadow(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    offers = await svc.store.shadow_picks(_limit(request, 500, 10000))
    compared = [(d, c, offered, pick) for d, c, offered, pick in offers if pick is not None]
    differ: dict[tuple[str | None, str | None], int] = {}
    recent: list[dict[str, Any]] = []
    for decision_id, contact_id, offered, pick in compared:
        if pick.manager_id != offered:
            pair = (offered, pick.manager_id)
            differ[pair] = differ.get(pair, 0) + 1
            if len(recent) < 20:
                recent.append(
                    {"decision_id": decision_id, "contact_id": contact_id, "live": offered, "shadow": pick.manager_id}
                )
    agreed = len(compared) - sum(differ.values())
    live = svc.dispatcher.board.policy
    return web.json_response(
        {
            "live": {"version": live.version, "strategy": live.strategy.value},
            "shadow": None
            if live.shadow is None
            else {"version": live.shadow.version, "strategy": live.shadow.strategy.value},
            "decisions": len(offers),
            "compared": len(compared),
            "agreed": agreed,
            "agreement": agreed / len(compared) if compared else None,
            "differences": [
                {"live": a, "shadow": b, "count": n} for (a, b), n in sorted(differ.items(), key=lambda kv: -kv[1])
            ],
            "recent_differences": recent,
        }
    )


@api.add(
    "GET",
    "/api/transitions",
    "Presence transitions, newest first",
    role="supervisor",
    query=("manager_id", "since", "limit"),
)
async def transitions(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    rows = await svc.store.list_transitions(
        request.query.get("manager_id") or None, _query_float(request, "since"), _limit(request, 1000, 10000)
    )
    return web.json_response({"transitions": [transition_json(t) for t in rows]})


@api.add("GET", "/api/audit", "Supervisor and admin actions, newest first", role="supervisor", query=("limit",))
async def audit(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    return web.json_response({"audit": await svc.store.list_audit(_limit(request))})


# ---- managers and presence --------------------------------------------------------


def _manager_or_404(request: web.Request) -> Manager:
    mid = request.match_info["manager_id"]
    m = request.app[SERVICES].dispatcher.board.managers.get(mid)
    if m is None:
        raise ApiError(404, "no_such_manager", f"no manager {mid}")
    return m


@api.add("GET", "/api/me", "Who this token belongs to", role="manager")
async def me(request: web.Request) -> web.Response:
    ident = _me(request)
    out: dict[str, Any] = {"role": ident.role, "manager_id": ident.manager_id}
    board = request.app[SERVICES].dispatcher.board
    if ident.manager_id and ident.manager_id in board.managers:
        out["manager"] = manager_json(board.managers[ident.manager_id])
    return web.json_response(out)


@api.add("GET", "/api/managers", "All managers with their live state", role="supervisor")
async def list_managers(request: web.Request) -> web.Response:
    board = request.app[SERVICES].dispatcher.board
    return web.json_response(
        {"managers": [manager_json(m) for m in sorted(board.managers.values(), key=lambda m: (m.order, m.id))]}
    )


@api.add("GET", "/api/managers/{manager_id}", "One manager with their live state", role="manager")
async def get_manager(request: web.Request) -> web.Response:
    m = _manager_or_404(request)
    _self_or_supervisor(request, m.id)
    return web.json_response(manager_json(m))


@api.add("POST", "/api/managers", "Create a manager", role="admin", body=s.ManagerIn)
async def create_manager(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    body = await parse_body(request, s.ManagerIn)
    if body.id in svc.dispatcher.board.managers:
        raise ApiError(409, "exists", f"manager {body.id} exists; PATCH it instead")
    _check_profile(svc.deployment, body.team, body.skills)
    defaults = svc.deployment.manager_defaults
    m = Manager(
        id=body.id,
        name=body.name,
        team=body.team,
        skills=body.skills,
        languages=frozenset(body.languages or defaults.languages),
        capacity={**defaults.capacity, **body.capacity},
        device=body.device,
        email=body.email,
        order=body.order,
        daily_cap=body.daily_cap if body.daily_cap is not None else defaults.daily_cap,
        active=body.active,
    )
    await svc.dispatcher.submit(ev.ManagerSaved(m))
    await svc.store.audit(svc.clock(), _me(request).actor, "create_manager", m.id, {})
    return web.json_response(manager_json(svc.dispatcher.board.managers[m.id]), status=201)


@api.add("PATCH", "/api/managers/{manager_id}", "Update a manager's profile", role="admin", body=s.ManagerPatch)
async def update_manager(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    current = _manager_or_404(request)
    body = await parse_body(request, s.ManagerPatch)
    changes = body.model_dump(exclude_unset=True)
    cleared = sorted(k for k, v in changes.items() if v is None and k not in ("team", "daily_cap"))
    if cleared:
        raise ApiError(400, "invalid", f"{cleared[0]}: may not be null (leave it out to keep it)")
    if "languages" in changes:
        changes["languages"] = frozenset(changes["languages"] or ())
    if "capacity" in changes:
        changes["capacity"] = {Channel(k): v for k, v in (changes["capacity"] or {}).items()}
    _check_profile(svc.deployment, changes.get("team", current.team), changes.get("skills", current.skills))
    await svc.dispatcher.submit(ev.ManagerSaved(replace(current, **changes)))
    await svc.store.audit(
        svc.clock(), _me(request).actor, "update_manager", current.id, {k: str(v) for k, v in changes.items()}
    )
    return web.json_response(manager_json(svc.dispatcher.board.managers[current.id]))


def _check_profile(deployment: Deployment, team: str | None, skills: Any) -> None:
    if team is not None and team not in deployment.teams:
        raise ApiError(400, "invalid", f"team: {team!r} is not one of {', '.join(deployment.teams)}")
    unknown = sorted(set(skills or {}) - set(deployment.skills))
    if unknown:
        raise ApiError(400, "invalid", f"skills: unknown {', '.join(unknown)}; known: {', '.join(deployment.skills)}")
    bad = [k for k, v in (skills or {}).items() if not 1 <= int(v) <= 5]
    if bad:
        raise ApiError(400, "invalid", f"skills.{bad[0]}: proficiency is 1..5")


@api.add(
    "POST",
    "/api/managers/{manager_id}/presence",
    "Set available / paused (with reason) / offline",
    role="manager",
    body=s.PresenceIn,
)
async def set_presence(request: web.Request) -> web.Response:
    m = _manager_or_404(request)
    me = _self_or_supervisor(request, m.id)
    body = await parse_body(request, s.PresenceIn)
    svc = request.app[SERVICES]
    by = "manager" if me.manager_id == m.id else me.actor
    await svc.dispatcher.submit(ev.PresenceSet(m.id, Presence(body.state), body.reason, by))
    if by != "manager":
        await svc.store.audit(svc.clock(), me.actor, "presence", m.id, {"state": body.state, "reason": body.reason})
    return web.json_response(manager_json(svc.dispatcher.board.managers[m.id]))


@api.add("POST", "/api/managers/{manager_id}/rejoin", "Rejoin the queue after a (automatic) pause", role="manager")
async def rejoin(request: web.Request) -> web.Response:
    m = _manager_or_404(request)
    me = _self_or_supervisor(request, m.id)
    svc = request.app[SERVICES]
    await svc.dispatcher.submit(
        ev.PresenceSet(m.id, Presence.AVAILABLE, "rejoin", "manager" if me.manager_id == m.id else me.actor)
    )
    return web.json_response(manager_json(svc.dispatcher.board.managers[m.id]))


@api.add("POST", "/api/managers/{manager_id}/heartbeat", "The panel is open and the manager is there", role="manager")
async def heartbeat(request: web.Request) -> web.Response:
    m = _manager_or_404(request)
    _self_or_supervisor(request, m.id)
    svc = request.app[SERVICES]
    svc.dispatcher.post(ev.HeartbeatReceived(m.id))
    return web.json_response({"id": m.id, "presence": m.presence.value})


# ---- administration ---------------------------------------------------------------


@api.add("POST", "/api/tokens", "Create an API token", role="admin", body=s.TokenIn)
async def create_token(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    body = await parse_body(request, s.TokenIn)
    if body.role == "manager" and body.manager_id not in svc.dispatcher.board.managers:
        raise ApiError(400, "invalid", "manager_id: a manager token needs an existing manager")
    token = await svc.store.create_token(body.role, body.manager_id, body.label)
    await svc.store.audit(
        svc.clock(), _me(request).actor, "create_token", body.manager_id or body.role, {"label": body.label}
    )
    return web.json_response({"token": token, "role": body.role, "manager_id": body.manager_id}, status=201)


class TokenRevokeIn(s.Body):
    token: str = Field(min_length=1, max_length=200)


@api.add(
    "POST", "/api/tokens/revoke", "Revoke an API token (a leaked one, a leaver's)", role="admin", body=TokenRevokeIn
)
async def revoke_token(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    body = await parse_body(request, TokenRevokeIn)
    if not await svc.store.revoke_token(body.token):
        raise ApiError(404, "no_such_token", "no live token like this (unknown, or revoked already)")
    svc.tokens.forget()  # at once on this node; other nodes' caches let it go within their ttl
    await svc.store.audit(svc.clock(), _me(request).actor, "revoke_token", "token", {})
    return web.json_response({"revoked": True})


@api.add("GET", "/api/config", "The routing policy in force", role="supervisor")
async def config(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    d = svc.deployment
    p = svc.dispatcher.board.policy
    return web.json_response(
        {
            "site": d.site_name,
            "tz": d.tz,
            "languages": list(d.languages),
            "policy_version": p.version,
            "strategy": p.strategy.value,
            "steps": [
                {"pool": st.pool.value, "timeout": st.timeout, "skip_when": st.skip_when.value} for st in p.steps
            ],
            "criteria": [
                {
                    "name": c.name,
                    "label": dict(c.label),
                    "options": [{"key": o.key, "value": o.value, "label": dict(o.label)} for o in c.options],
                    "default": c.default,
                }
                for c in d.criteria
            ],
            "teams": {name: dict(t.label) for name, t in d.teams.items()},
            "skills": {name: dict(label) for name, label in d.skills.items()},
        }
    )


@api.add("POST", "/api/config/reload", "Reload the configuration file (waiting contacts stay queued)", role="admin")
async def reload_config(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    if svc.reload is None:
        raise ApiError(409, "unsupported", "this server was started without a configuration file")
    try:
        deployment = await svc.reload()
    except ConfigError as err:  # the running policy stays; the admin is told every problem
        raise ApiError(422, "invalid_config", "\n".join(err.problems)) from None
    await svc.store.audit(
        svc.clock(), _me(request).actor, "reload_config", str(deployment.path), {"version": deployment.policy.version}
    )
    return web.json_response({"policy_version": deployment.policy.version})


def build_app(services: Services) -> web.Application:
    app = web.Application(middlewares=[errors_middleware, auth_middleware], client_max_size=256 * 1024)
    app[SERVICES] = services
    api.install(app)
    return app
