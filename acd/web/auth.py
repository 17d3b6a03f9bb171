"""Adapter: signing in from a browser. Accounts with argon2 passwords, a session per sign-in
in an HttpOnly SameSite=Strict Secure cookie, and a CSRF token per session that every
state-changing cookie-authenticated request must echo in `X-CSRF-Token`.

Bearer-token callers are untouched: the API's auth middleware asks `browser_identity` only
when there is no `Authorization` header.
"""

from __future__ import annotations

import hmac
import logging
import time
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web
from pydantic import Field

from acd.api.app import IDENTITY, SERVICES, api
from acd.api.proxies import limit_key
from acd.api.routing import ApiError, parse_body
from acd.api.schemas import Body
from acd.api.security import Identity, RateLimiter
from acd.storage.accounts import Account, Accounts, Conflict, Session
from acd.telephony.api import TELEPHONY

log = logging.getLogger("acd.web")

COOKIE = "acd_session"
CSRF_HEADER = "X-CSRF-Token"
SESSION_IDLE = 12 * 3600.0  # a session nobody used for this long ends
TOUCH_EVERY = 300.0  # how stale `last_seen_at` may get before a request extends the session
CACHE_TTL = 5.0  # seconds a looked-up session is trusted without the database
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

ACCOUNTS = web.AppKey("accounts", Accounts)
LOGIN_LIMIT = web.AppKey("login_limit", RateLimiter)
SESSIONS = web.AppKey("session_cache", dict)


@dataclass(frozen=True, slots=True)
class WebIdentity(Identity):
    """A signed-in person: the API's Identity plus who they are and their session."""

    username: str = ""
    csrf: str = ""

    @property
    def actor(self) -> str:
        if self.role == "manager" and self.manager_id:
            return f"manager:{self.manager_id}"
        return f"{self.role}:{self.username}"


class LoginIn(Body):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class AccountIn(Body):
    username: str = Field(pattern=r"^[A-Za-z0-9_.@-]{1,64}$")
    password: str = Field(min_length=8, max_length=256)
    role: Literal["manager", "supervisor", "admin"]
    manager_id: str | None = None
    display_name: str = Field("", max_length=200)


class AccountPatch(Body):
    password: str | None = Field(None, min_length=8, max_length=256)
    role: Literal["manager", "supervisor", "admin"] | None = None
    manager_id: str | None = None
    display_name: str | None = Field(None, max_length=200)
    disabled: bool | None = None


class PasswordIn(Body):
    current: str = Field(min_length=1, max_length=256)
    new: str = Field(min_length=8, max_length=256)


def account_json(a: Account) -> dict[str, Any]:
    return {
        "username": a.username,
        "role": a.role,
        "manager_id": a.manager_id,
        "display_name": a.display_name,
        "created_at": a.created_at,
        "disabled": a.disabled,
    }


# ---- the browser side of the auth middleware ------------------------------------------


async def browser_identity(request: web.Request) -> Identity | None:
    """The identity of the session cookie, or None. A state-changing request without the
    session's CSRF token is refused (403 csrf), whatever its role."""
    secret = request.cookies.get(COOKIE)
    if not secret:
        return None
    session = await _session(request, secret)
    if session is None:
        request.app[SERVICES].bad_credentials.spend(limit_key(request))
        return None
    if request.method not in SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(sent.encode(), session.csrf.encode()):
            raise ApiError(403, "csrf", f"missing or wrong {CSRF_HEADER}: reload the page")
    a = session.account
    return WebIdentity(a.role, a.manager_id, a.username, session.csrf)


async def _session(request: web.Request, secret: str) -> Session | None:
    app = request.app
    cache: dict[str, tuple[float, Session | None]] = app[SESSIONS]
    now = time.time()
    hit = cache.get(secret)
    if hit is not None and hit[0] > now:
        return hit[1]
    app[SERVICES].bad_credentials.refuse_if_spent(limit_key(request))  # before the look-up
    accounts = app[ACCOUNTS]
    session = await accounts.session(secret, now)
    if session is not None and now - session.last_seen_at > TOUCH_EVERY:
        await accounts.touch_session(secret, now, now + SESSION_IDLE)
    if len(cache) > 10_000:
        cache.clear()
    cache[secret] = (now + CACHE_TTL, session)
    return session


def _me(request: web.Request) -> Identity:
    return request[IDENTITY]  # type: ignore[no-any-return]


def _set_cookie(response: web.Response, secret: str) -> None:
    # Secure even on plain-HTTP loopback: browsers treat 127.0.0.1 and localhost as secure
    # origins, and anything else must be served over HTTPS.
    response.set_cookie(
        COOKIE, secret, max_age=int(SESSION_IDLE), path="/", httponly=True, secure=True, samesite="Strict"
    )


# ---- routes ----------------------------------------------------------------------------


@api.add(
    "POST",
    "/api/auth/login",
    "Sign in; sets the session cookie and returns the CSRF token",
    role=None,
    body=LoginIn,
    tag="web",
)
async def login(request: web.Request) -> web.Response:
    request.app[LOGIN_LIMIT].check(limit_key(request))
    body = await parse_body(request, LoginIn)
    accounts = request.app[ACCOUNTS]
    account = await accounts.check_password(body.username, body.password)
    if account is None:
        log.info("failed sign-in for %r from %s", body.username, request.remote)
        raise ApiError(401, "bad_credentials", "wrong username or password")
    secret, csrf = await accounts.open_session(account.username, SESSION_IDLE)
    svc = request.app[SERVICES]
    await svc.store.audit(svc.clock(), f"{account.role}:{account.username}", "login", account.username, {})
    response = web.json_response({**account_json(account), "csrf": csrf})
    _set_cookie(response, secret)
    return response


@api.add("POST", "/api/auth/logout", "Sign out: ends this browser session", role="manager", tag="web")
async def logout(request: web.Request) -> web.Response:
    secret = request.cookies.get(COOKIE)
    if secret and isinstance(_me(request), WebIdentity):
        await request.app[ACCOUNTS].close_session(secret)
        request.app[SESSIONS].pop(secret, None)
    response = web.json_response({"signed_out": True})
    response.del_cookie(COOKIE, path="/")
    return response


@api.add(
    "GET",
    "/api/auth/session",
    "Who is signed in, with the CSRF token and the site's settings",
    role="manager",
    tag="web",
)
async def session_info(request: web.Request) -> web.Response:
    me = _me(request)
    d = request.app[SERVICES].deployment
    out: dict[str, Any] = {
        "role": me.role,
        "manager_id": me.manager_id,
        "username": getattr(me, "username", None),
        "csrf": getattr(me, "csrf", None),
        "site": d.site_name,
        "tz": d.tz,
        "languages": list(d.languages),
        "telephony": request.app.get(TELEPHONY) is not None,  # click-to-call works
        # whom a manager may transfer a contact to
        "teams": [{"id": tid, "label": dict(team.label)} for tid, team in d.teams.items()],
        "colleagues": [
            {"id": m.id, "name": m.name or m.id, "team": m.team}
            for m in sorted(request.app[SERVICES].dispatcher.board.managers.values(), key=lambda m: (m.order, m.id))
            if m.active and m.id != me.manager_id
        ],
    }
    if isinstance(me, WebIdentity):
        account = await request.app[ACCOUNTS].get(me.username)
        out["display_name"] = account.display_name if account else ""
    return web.json_response(out)


@api.add("POST", "/api/auth/password", "Change my own password", role="manager", body=PasswordIn, tag="web")
async def change_password(request: web.Request) -> web.Response:
    me = _me(request)
    if not isinstance(me, WebIdentity):
        raise ApiError(400, "not_an_account", "a bearer token has no password")
    body = await parse_body(request, PasswordIn)
    accounts = request.app[ACCOUNTS]
    if await accounts.check_password(me.username, body.current) is None:
        raise ApiError(403, "bad_credentials", "the current password is wrong")
    await accounts.update(me.username, password=body.new)
    request.app[SESSIONS].clear()
    secret, csrf = await accounts.open_session(me.username, SESSION_IDLE)
    response = web.json_response({"changed": True, "csrf": csrf})
    _set_cookie(response, secret)
    return response


@api.add("GET", "/api/accounts", "Sign-in accounts", role="admin", tag="web")
async def list_accounts(request: web.Request) -> web.Response:
    return web.json_response({"accounts": [account_json(a) for a in await request.app[ACCOUNTS].all()]})


@api.add("POST", "/api/accounts", "Create a sign-in account", role="admin", body=AccountIn, tag="web")
async def create_account(request: web.Request) -> web.Response:
    body = await parse_body(request, AccountIn)
    svc = request.app[SERVICES]
    _check_manager_link(request, body.role, body.manager_id)
    try:
        account = await request.app[ACCOUNTS].create(
            body.username, body.password, body.role, body.manager_id, body.display_name
        )
    except Conflict:
        raise ApiError(409, "exists", f"account {body.username} exists; PATCH it instead") from None
    await svc.store.audit(svc.clock(), _me(request).actor, "create_account", account.username, {"role": body.role})
    return web.json_response(account_json(account), status=201)


@api.add(
    "PATCH",
    "/api/accounts/{username}",
    "Change an account (role, password, disable)",
    role="admin",
    body=AccountPatch,
    tag="web",
)
async def update_account(request: web.Request) -> web.Response:
    accounts = request.app[ACCOUNTS]
    username = request.match_info["username"]
    current = await accounts.get(username)
    if current is None:
        raise ApiError(404, "no_such_account", f"no account {username}")
    body = await parse_body(request, AccountPatch)
    changes = body.model_dump(exclude_unset=True)
    _check_manager_link(request, changes.get("role", current.role), changes.get("manager_id", current.manager_id))
    updated = await accounts.update(username, **changes)
    request.app[SESSIONS].clear()
    svc = request.app[SERVICES]
    detail = {k: v for k, v in changes.items() if k != "password"} | ({"password": "changed"} if body.password else {})
    await svc.store.audit(svc.clock(), _me(request).actor, "update_account", username, detail)
    assert updated is not None
    return web.json_response(account_json(updated))


def _check_manager_link(request: web.Request, role: str, manager_id: str | None) -> None:
    managers = request.app[SERVICES].dispatcher.board.managers
    if role == "manager" and not manager_id:
        raise ApiError(400, "invalid", "manager_id: a manager account signs in as an existing manager")
    if manager_id and manager_id not in managers:
        raise ApiError(400, "invalid", f"manager_id: no manager {manager_id}")


def install(app: web.Application, accounts: Accounts) -> None:
    from acd.api.app import BROWSER_AUTH

    app[ACCOUNTS] = accounts
    app[LOGIN_LIMIT] = RateLimiter(20)
    app[SESSIONS] = {}
    app[BROWSER_AUTH] = browser_identity
