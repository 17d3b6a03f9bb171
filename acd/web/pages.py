"""Adapter: the pages people open (panel, dashboard, admin, sign-in), the website widget and
its public form description, CORS for the website's origins, and the client card.

The pages are static files under `web/`; they read everything through the JSON API.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from acd.api.app import IDENTITY, SERVICES, api
from acd.api.crm import CRM, deal_json
from acd.api.proxies import limit_key
from acd.api.routing import ApiError, json_response, request_json
from acd.api.views import contact_json
from acd.core.model import Contact
from acd.ids import new_id
from acd.storage.accounts import Accounts
from acd.telephony.api import TELEPHONY
from acd.web.auth import ACCOUNTS

WEB_ROOT = Path(__file__).resolve().parents[2] / "web"
PAGES = {"/login": "login.html", "/panel": "panel.html", "/dashboard": "dashboard.html", "/admin": "admin.html"}
# Routes a website on another origin may call (browsers ask first with OPTIONS).
CORS_PATHS = frozenset({"/api/leads", "/api/callbacks", "/api/public/form"})
HONEYPOT = "website"  # the widget's hidden field; people leave it empty, form-filling bots do not
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _own_origin(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


@web.middleware
async def cors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Website origins listed in `web.allowed_origins` may post leads and read the form;
    nobody else (a disallowed origin's POST is refused, not just hidden from its script)."""
    if request.path not in CORS_PATHS:
        return await handler(request)
    origin = request.headers.get("Origin")
    allowed = request.app[SERVICES].deployment.web.allowed_origins
    ok = origin is None or origin == _own_origin(request) or origin in allowed
    headers = {"Vary": "Origin"}
    if origin and ok:
        headers["Access-Control-Allow-Origin"] = origin
    if request.method == "OPTIONS":
        if not ok or not origin:
            raise ApiError(403, "origin_not_allowed", f"{origin or 'no origin'} is not in web.allowed_origins", headers)
        headers |= {
            "Access-Control-Allow-Methods": "GET, POST",
            "Access-Control-Allow-Headers": "Content-Type, Idempotency-Key",
            "Access-Control-Max-Age": "600",
        }
        return web.Response(status=204, headers=headers)
    if not ok:
        raise ApiError(403, "origin_not_allowed", f"{origin} is not in web.allowed_origins")
    try:
        if request.method == "POST" and request.path != "/api/public/form" and await _is_bot(request):
            request.app[SERVICES].lead_limit.check(limit_key(request))
            response: web.StreamResponse = json_response(
                {"id": new_id(), "status": "waiting" if request.path == "/api/leads" else "pending"},
                status=201,
            )
        else:
            response = await handler(request)
    except web.HTTPException as err:
        err.headers.update(headers)
        raise
    response.headers.update(headers)
    return response


async def _is_bot(request: web.Request) -> bool:
    """True when the honeypot is filled: the bot gets a convincing 201 and no lead is made."""
    try:
        data = await request_json(request)
    except ApiError:
        return False  # the handler answers that
    return isinstance(data, dict) and bool(data.get(HONEYPOT))


@web.middleware
async def headers_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if not request.path.startswith("/api/") and request.path != "/widget.js":
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Frame-Options", "DENY")
    return response


# ---- pages -----------------------------------------------------------------------------


def _page(name: str) -> Handler:
    async def serve(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(WEB_ROOT / name, headers={"Cache-Control": "no-cache"})

    return serve


async def index(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/login")


async def favicon(request: web.Request) -> web.StreamResponse:
    """The pages name /static/favicon.svg; a browser that asks for /favicon.ico anyway (a
    JSON answer opened in a tab, an old browser) gets the same icon instead of a 404."""
    return web.FileResponse(
        WEB_ROOT / "static" / "favicon.svg",
        headers={"Content-Type": "image/svg+xml", "Cache-Control": "public, max-age=86400"},
    )


async def widget_js(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(
        WEB_ROOT / "widget.js",
        headers={"Content-Type": "text/javascript; charset=utf-8", "Cache-Control": "public, max-age=300"},
    )


# ---- the website form --------------------------------------------------------------------


@api.add(
    "GET",
    "/api/public/form",
    "The website form: the qualification questions from the configuration",
    role=None,
    tag="web",
)
async def public_form(request: web.Request) -> web.Response:
    d = request.app[SERVICES].deployment
    return web.json_response(
        {
            "site": d.site_name,
            "tz": d.tz,
            "languages": list(d.languages),
            "channels": ["web", "callback"],
            # callback requests go to /api/callbacks (the PBX calls back) when telephony is on,
            # else they are leads on the "callback" channel that a manager calls back by hand
            "callbacks": request.app.get(TELEPHONY) is not None,
            # the callback form asks for an e-mail address (optional) when the customer may be
            # told by e-mail how the request goes
            "callback_email": d.notifications.enabled
            and "email" in d.notifications.customer.get("callback_requested", ()),
            "honeypot": HONEYPOT,
            "criteria": [
                {
                    "name": c.name,
                    "label": dict(c.label),
                    "default": c.default,
                    "options": [{"value": o.value, "label": dict(o.label)} for o in c.options],
                }
                for c in d.criteria
            ],
        }
    )


# ---- the client card -----------------------------------------------------------------------


@api.add(
    "GET",
    "/api/contacts/{contact_id}/card",
    "The client card (screen pop): the contact and its history",
    role="manager",
    tag="web",
)
async def card(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    cid = request.match_info["contact_id"]
    c: Contact | None = svc.dispatcher.board.contacts.get(cid) or await svc.store.get_contact(cid)
    me = request[IDENTITY]
    if c is None or (me.role == "manager" and me.manager_id not in (c.assigned_to, c.offered_to)):
        raise ApiError(404, "no_such_contact", f"no contact {cid}")
    accounts: Accounts = request.app[ACCOUNTS]
    earlier = await accounts.earlier_contacts(c)
    now = svc.clock()
    managers = svc.dispatcher.board.managers

    def name_of(mid: str | None) -> str | None:
        """A manager's name for the card (their id when they have none or are gone)."""
        if not mid:
            return None
        m = managers.get(mid)
        return (m.name or m.id) if m is not None else mid

    labels = {
        crit.name: {
            "label": dict(crit.label),
            "options": {o.value: dict(o.label) for o in crit.options},
        }
        for crit in svc.deployment.criteria
    }
    body: dict[str, Any] = {
        "contact": contact_json(c, now),
        "criteria_labels": labels,
        "earlier": [
            {
                "id": e.id,
                "channel": e.channel.value,
                "arrived_at": e.arrived_at,
                "status": e.status.value,
                "outcome": e.outcome.value if e.outcome else None,
                "assigned_to": e.assigned_to,
                "assigned_to_name": name_of(e.assigned_to),
                "note": e.payload.get("note", ""),
            }
            for e in earlier
        ],
        "deals": [],
    }
    crm = request.app.get(CRM)
    if crm is not None and c.customer_id:
        deals = await crm.repo.deals_of(c.customer_id)
        customer = await crm.repo.get_customer(c.customer_id)
        stages = {st.name: dict(st.label) for st in svc.deployment.funnel_stages}
        body["customer"] = (
            None if customer is None else {"id": customer.id, "name": customer.name, "note": customer.note}
        )
        body["deals"] = [
            {**deal_json(d), "stage_label": stages.get(d.stage, {}), "owner_name": name_of(d.owner)} for d in deals
        ]
    return web.json_response(body)


def install(app: web.Application) -> None:
    app.middlewares.insert(0, cors_middleware)
    app.middlewares.insert(0, headers_middleware)
    app.router.add_get("/", index)
    for path, name in PAGES.items():
        app.router.add_get(path, _page(name))
    app.router.add_get("/widget.js", widget_js)
    app.router.add_get("/favicon.ico", favicon)
    app.router.add_static("/static/", WEB_ROOT / "static")
