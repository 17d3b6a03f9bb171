"""Adapter: signing in from a browser. Accounts with argon2 passwords, a session per sign-in
in an HttpOnly SameSite=Strict Secure cookie, and a CSRF token per session that every
state-changing cookie-authenticated request must echo in `X-CSRF-Token`. A session ends
after `SESSION_IDLE` unused and, used or not, `SESSION_LIFETIME` after its sign-in.

Bearer-token callers are untouched: the API's auth middleware asks `browser_identity` only
when there is no `Authorization` header.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from collections import OrderedDict
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
# A session ends this long after its sign-in however busy it is, so a stolen cookie (or a
# panel left signed in on a shared computer) is not good for ever: a week, so a manager
# signs in about once a week and never in the middle of a working day they began with one.
SESSION_LIFETIME = 7 * 86400.0
TOUCH_EVERY = 300.0  # how stale `last_seen_at` may get before a request extends the session
CACHE_TTL = 5.0  # seconds a looked-up session is trusted without the database
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

ACCOUNTS = web.AppKey("accounts", Accounts)
LOGIN_LIMIT = web.AppKey("login_limit", RateLimiter)
SESSIONS = web.AppKey("session_cache", dict)
ACCOUNT_LIMIT = web.AppKey("account_sign_in_limit", RateLimiter)

# Sign-in attempts per account, whichever addresses they come from: ACCOUNT_BURST at once,
# then one a minute, so a guess spread over many addresses gets about 1,400 tries a day
# instead of 20 a minute from each address. The limit slows rather than locks: the account
# is never refused for longer than a minute (Retry-After), and an address that signed in to
# it in the last KNOWN_FOR is not counted at all, so the attack cannot keep a real user out
# from their usual office or home. In memory, per node, like the other limits.
ACCOUNT_BURST = 10
ACCOUNT_PER_MINUTE = 1
KNOWN_FOR = 30 * 86400.0


class KnownAddresses:
    """The client addresses (limit keys) that signed in to each account lately, the most
    recent `max_entries` of them: these are not held back by the account's limit."""

    def __init__(self, keep_for: float = KNOWN_FOR, max_entries: int = 100_000) -> None:
        self.keep_for = keep_for
        self.max_entries = max_entries
        self._seen: OrderedDict[tuple[str, str], float] = OrderedDict()

    def has(self, username: str, address: str) -> bool:
        at = self._seen.get((username, address))
        return at is not None and time.monotonic() - at < self.keep_for

    def add(self, username: str, address: str) -> None:
        self._seen[(username, address)] = time.monotonic()
        self._seen.move_to_end((username, address))
        if len(self._seen) > self.max_entries:
            self._seen.popitem(last=False)


KNOWN_ADDRESSES = web.AppKey("known_sign_in_addresses", KnownAddresses)


@dataclass(frozen=True, slots=True)
class WebIdentity(Identity):
    """A signed-in person: the API's Identity plus who they are and their session."""

    username: str = ""
    csrf: str = ""
    ends_at: float = 0.0  # wall clock: the session's end by SESSION_LIFETIME, however busy

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
    return WebIdentity(a.role, a.manager_id, a.username, session.csrf, session.created_at + SESSION_LIFETIME)


async def _session(request: web.Request, secret: str) -> Session | None:
    app = request.app
    cache: dict[str, tuple[float, Session | None]] = app[SESSIONS]
    now = time.time()
    hit = cache.get(secret)
    if hit is not None and hit[0] > now:
        return _alive(hit[1], now)
    app[SERVICES].bad_credentials.refuse_if_spent(limit_key(request))  # before the look-up
    accounts = app[ACCOUNTS]
    session = _alive(await accounts.session(secret, now), now)
    if session is not None and now - session.last_seen_at > TOUCH_EVERY:
        # never past the lifetime, so the row expires (and is swept) by then on every node
        await accounts.touch_session(secret, now, min(now + SESSION_IDLE, session.created_at + SESSION_LIFETIME))
    if len(cache) > 10_000:
        cache.clear()
    cache[secret] = (now + CACHE_TTL, session)
    return session


def _alive(session: Session | None, now: float) -> Session | None:
    """The session unless its lifetime is over: checked here, not only through `expires_at`,
    because a cached session outlives its row and a session extended before this limit
    existed may have an idle deadline past it."""
    if session is None or now >= session.created_at + SESSION_LIFETIME:
        return None
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
    address = limit_key(request)
    request.app[LOGIN_LIMIT].check(address)
    _json_only(request)
    body = await parse_body(request, LoginIn)
    known = request.app[KNOWN_ADDRESSES]
    if not known.has(body.username, address):
        request.app[ACCOUNT_LIMIT].check(body.username)
    accounts = request.app[ACCOUNTS]
    account = await accounts.check_password(body.username, body.password)
    if account is None:
        log.info("refused sign-in to %s from %s", await _attempted(accounts, body.username), request.remote)
        raise ApiError(401, "bad_credentials", "wrong username or password")
    known.add(account.username, address)
    secret, csrf = await accounts.open_session(account.username, SESSION_IDLE)
    svc = request.app[SERVICES]
    await svc.store.audit(svc.clock(), f"{account.role}:{account.username}", "login", account.username, {})
    response = web.json_response({**account_json(account), "csrf": csrf})
    _set_cookie(response, secret)
    return response


# Keyed per process: the same unknown name logs the same tag, so repeated tries show, but the
# tag is no oracle: a password typed as the username cannot be checked against it offline.
_LOG_KEY = secrets.token_bytes(16)


async def _attempted(accounts: Accounts, username: str) -> str:
    """What the log says about a refused sign-in's username. Never the text as typed: it is
    often the password, typed into the wrong box."""
    account = await accounts.get(username)
    if account is not None:
        return f"account {account.username}" + (" (disabled)" if account.disabled else "")
    tag = hmac.new(_LOG_KEY, username.encode(), hashlib.sha256).hexdigest()[:8]
    return f"an unknown username (tag {tag})"  # not even its length: a password's would show


def _json_only(request: web.Request) -> None:
    """Sign-in takes only a JSON body. A page on another site can post a form (text/plain
    holds a JSON object too) but not `application/json` without a CORS preflight, which
    this route never answers: so no site signs a visitor's browser in as someone else
    (login CSRF), and there is no session yet whose CSRF token could stop it."""
    if request.content_type != "application/json":
        raise ApiError(415, "unsupported_media_type", "send the body as Content-Type: application/json")


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
    # each try costs an argon2 hash, and a stolen session must not guess the password with it
    request.app[LOGIN_LIMIT].check(f"password:{me.username}")
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
    app[ACCOUNT_LIMIT] = RateLimiter(ACCOUNT_PER_MINUTE, burst=ACCOUNT_BURST)
    app[KNOWN_ADDRESSES] = KnownAddresses()
    app[SESSIONS] = {}
    app[BROWSER_AUTH] = browser_identity
