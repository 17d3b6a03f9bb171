"""Signing in from a browser: accounts, session cookies, CSRF, sign-out and roles, through
a real server on 127.0.0.1 over SQLite and PostgreSQL."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from api_fixtures import EXAMPLE, Running
from argon2 import PasswordHasher
from storage_fixtures import Backend

from acd import cli
from acd.api.security import BAD_CREDENTIALS_PER_MINUTE
from acd.core.events import PresenceSet
from acd.core.model import Presence
from acd.storage.accounts import Accounts, Session
from acd.storage.store import default_sqlite_url, open_store
from acd.web.auth import ACCOUNTS

LEAD = {"name": "Иван Петров", "phone": "+7 495 123-45-67", "criteria": {"temperature": "hot"}}


async def only_available(running: Running, manager_id: str) -> None:
    """Pause every other manager, so the next lead is offered to this one."""
    for mid in running.server.dispatcher.board.managers:
        if mid != manager_id:
            await running.server.dispatcher.submit(PresenceSet(mid, Presence.PAUSED, "test", "test"))


class Browser:
    """A cookie-keeping client, as a browser would be: it sends the session cookie by itself
    and the CSRF token only when told to."""

    def __init__(self, running: Running) -> None:
        self.running = running
        jar = aiohttp.CookieJar(unsafe=True, treat_as_secure_origin=[running.url("/")])
        self.http = aiohttp.ClientSession(cookie_jar=jar)
        self.csrf: str | None = None

    async def call(self, method: str, path: str, csrf: bool = True, **kw: Any) -> tuple[int, Any]:
        headers = dict(kw.pop("headers", {}))
        if csrf and self.csrf and method not in ("GET", "HEAD"):
            headers["X-CSRF-Token"] = self.csrf
        async with self.http.request(method, self.running.url(path), headers=headers, **kw) as resp:
            body = await resp.json(content_type=None) if resp.content_type == "application/json" else await resp.text()
            return resp.status, body

    async def login(self, username: str, password: str) -> tuple[int, Any]:
        status, body = await self.call("POST", "/api/auth/login", json={"username": username, "password": password})
        if status == 200:
            self.csrf = body["csrf"]
        return status, body

    async def close(self) -> None:
        await self.http.close()


# Cheap argon2 parameters: the tests check behaviour, not the cost of guessing.
FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


async def accounts_of(running: Running) -> Accounts:
    """The server's own accounts repository, hashing cheaply."""
    accounts = running.server.app[ACCOUNTS]
    accounts.hasher = FAST
    return accounts


@pytest.fixture
async def people(running: Running) -> Running:
    accounts = await accounts_of(running)
    await accounts.create("anna", "anna-password", "manager", "anna", "Анна Соколова")
    await accounts.create("boris", "boris-password", "manager", "boris")
    await accounts.create("olga", "olga-password", "supervisor", None, "Ольга")
    await accounts.create("root", "root-password", "admin")
    return running


@pytest.fixture
async def browser(running: Running) -> Any:
    b = Browser(running)
    yield b
    await b.close()


async def test_signing_in_sets_a_secure_httponly_strict_cookie_and_returns_the_csrf_token(
    people: Running, browser: Browser
) -> None:
    async with browser.http.post(
        people.url("/api/auth/login"), json={"username": "anna", "password": "anna-password"}
    ) as resp:
        assert resp.status == 200
        cookie = resp.cookies["acd_session"]
        body = await resp.json()
    assert cookie["httponly"] and cookie["secure"] and cookie["samesite"] == "Strict" and cookie["path"] == "/"
    assert body["role"] == "manager" and body["manager_id"] == "anna" and len(body["csrf"]) > 20
    browser.csrf = body["csrf"]
    status, me = await browser.call("GET", "/api/auth/session")
    assert status == 200 and me["username"] == "anna" and me["csrf"] == body["csrf"] and me["tz"] == "Europe/Moscow"
    status, me = await browser.call("GET", "/api/me")
    assert status == 200 and me["manager_id"] == "anna"


async def test_a_wrong_password_or_unknown_user_is_refused_alike(people: Running, browser: Browser) -> None:
    for username, password in (("anna", "wrong"), ("nobody", "anna-password")):
        status, body = await browser.login(username, password)
        assert status == 401 and body["error"]["code"] == "bad_credentials"
    status, _ = await browser.call("GET", "/api/auth/session")
    assert status == 401


async def test_a_state_changing_request_without_the_csrf_token_is_rejected(people: Running, browser: Browser) -> None:
    await browser.login("anna", "anna-password")
    body = {"state": "paused", "reason": "lunch"}
    status, err = await browser.call("POST", "/api/managers/anna/presence", csrf=False, json=body)
    assert status == 403 and err["error"]["code"] == "csrf"
    status, err = await browser.call(
        "POST", "/api/managers/anna/presence", csrf=False, json=body, headers={"X-CSRF-Token": "forged"}
    )
    assert status == 403 and err["error"]["code"] == "csrf"
    assert people.server.dispatcher.board.managers["anna"].presence.value == "available"
    status, me = await browser.call("POST", "/api/managers/anna/presence", json=body)
    assert status == 200 and me["presence"] == "paused" and me["pause_reason"] == "lunch"


async def test_bearer_token_calls_need_no_csrf_token(people: Running) -> None:
    token = await people.manager_token("anna")
    status, me = await people.call("POST", "/api/managers/anna/presence", token, json={"state": "paused"})
    assert status == 200 and me["presence"] == "paused"


async def test_signing_out_ends_the_session_for_good(people: Running, browser: Browser) -> None:
    await browser.login("anna", "anna-password")
    stolen = browser.http.cookie_jar.filter_cookies(people.http.make_url("/"))["acd_session"].value
    status, _ = await browser.call("POST", "/api/auth/logout", csrf=False)
    assert status == 403, "signing out is a state change: it needs the token too"
    status, body = await browser.call("POST", "/api/auth/logout")
    assert status == 200 and body["signed_out"]
    status, _ = await browser.call("GET", "/api/auth/session")
    assert status == 401
    status, _ = await people.call("GET", "/api/auth/session", headers={"Cookie": f"acd_session={stolen}"})
    assert status == 401, "the old cookie opens nothing"


async def test_unknown_session_cookies_from_one_client_are_refused_before_the_database_is_asked(
    people: Running, browser: Browser
) -> None:
    accounts = people.server.app[ACCOUNTS]
    asked: list[str] = []
    session = accounts.session

    async def counted(secret: str, now: float) -> Session | None:
        asked.append(secret)
        return await session(secret, now)

    accounts.session = counted  # type: ignore[method-assign]
    await browser.login("anna", "anna-password")
    assert (await browser.call("GET", "/api/auth/session"))[0] == 200
    for n in range(BAD_CREDENTIALS_PER_MINUTE):
        status, _ = await people.call("GET", "/api/auth/session", headers={"Cookie": f"acd_session=guess-{n}"})
        assert status == 401
    assert len(asked) == 1 + BAD_CREDENTIALS_PER_MINUTE
    status, body = await people.call("GET", "/api/auth/session", headers={"Cookie": "acd_session=guess-again"})
    assert status == 429 and body["error"]["code"] == "rate_limited"
    assert len(asked) == 1 + BAD_CREDENTIALS_PER_MINUTE
    assert (await browser.call("GET", "/api/auth/session"))[0] == 200, "a session already known goes on"


async def test_a_manager_acts_only_on_their_own_work(people: Running, browser: Browser) -> None:
    await only_available(people, "anna")
    _, lead = await people.call("POST", "/api/leads", json=LEAD)
    await people.settle()
    assert people.server.dispatcher.board.contacts[lead["id"]].offered_to == "anna"
    await browser.login("boris", "boris-password")
    for method, path, body in (
        ("POST", f"/api/contacts/{lead['id']}/accept", None),
        ("POST", f"/api/contacts/{lead['id']}/finish", {"outcome": "won"}),
        ("GET", f"/api/contacts/{lead['id']}/card", None),
        ("GET", f"/api/contacts/{lead['id']}", None),
        ("POST", "/api/managers/anna/presence", {"state": "offline"}),
        ("GET", "/api/queue", None),
        ("GET", "/api/reports/day", None),
        ("POST", "/api/accounts", {"username": "x", "password": "12345678", "role": "admin"}),
    ):
        status, _ = await browser.call(method, path, json=body)
        assert status in (403, 404, 409), (method, path, status)
    assert people.server.dispatcher.board.contacts[lead["id"]].offered_to == "anna"
    status, contacts = await browser.call("GET", "/api/contacts")
    assert status == 200 and contacts["contacts"] == []

    anna = Browser(people)
    try:
        await anna.login("anna", "anna-password")
        status, card = await anna.call("GET", f"/api/contacts/{lead['id']}/card")
        assert status == 200 and card["contact"]["name"] == "Иван Петров"
        status, body = await anna.call("POST", f"/api/contacts/{lead['id']}/accept")
        assert status == 200 and body["assigned_to"] == "anna"
    finally:
        await anna.close()


async def test_a_supervisor_sees_the_queue_but_cannot_manage_accounts(people: Running, browser: Browser) -> None:
    await browser.login("olga", "olga-password")
    status, queue = await browser.call("GET", "/api/queue")
    assert status == 200 and queue["managers"]
    status, _ = await browser.call("GET", "/api/accounts")
    assert status == 403
    status, body = await browser.call("POST", "/api/managers/boris/presence", json={"state": "paused"})
    assert status == 200 and body["presence"] == "paused"
    audit = await people.server.store.list_audit(10)
    assert any(a["actor"] == "supervisor:olga" and a["action"] == "presence" for a in audit)


async def test_an_admin_creates_accounts_that_can_sign_in(people: Running, browser: Browser) -> None:
    await browser.login("root", "root-password")
    new = {"username": "vera", "password": "vera-password", "role": "manager", "manager_id": "vera"}
    status, body = await browser.call("POST", "/api/accounts", json=new)
    assert status == 201 and body["manager_id"] == "vera" and "password" not in json.dumps(body)
    status, _ = await browser.call("POST", "/api/accounts", json=new)
    assert status == 409
    status, body = await browser.call("POST", "/api/accounts", json={**new, "username": "x", "manager_id": None})
    assert status == 400, "a manager account must be linked to a manager"
    vera = Browser(people)
    try:
        status, body = await vera.login("vera", "vera-password")
        assert status == 200 and body["manager_id"] == "vera"
        status, _ = await browser.call("PATCH", "/api/accounts/vera", json={"disabled": True})
        assert status == 200
        status, _ = await vera.call("GET", "/api/auth/session")
        assert status == 401, "disabling an account ends its sessions"
        status, _ = await vera.login("vera", "vera-password")
        assert status == 401
    finally:
        await vera.close()


async def test_a_manager_changes_their_password(people: Running, browser: Browser) -> None:
    await browser.login("anna", "anna-password")
    status, _ = await browser.call("POST", "/api/auth/password", json={"current": "nope", "new": "new-password-1"})
    assert status == 403
    status, body = await browser.call(
        "POST", "/api/auth/password", json={"current": "anna-password", "new": "new-password-1"}
    )
    assert status == 200
    browser.csrf = body["csrf"]
    status, _ = await browser.call("GET", "/api/auth/session")
    assert status == 200
    assert (await browser.login("anna", "anna-password"))[0] == 401
    assert (await browser.login("anna", "new-password-1"))[0] == 200


async def test_the_password_is_stored_only_as_an_argon2_hash(people: Running, backend: Backend) -> None:
    import sqlalchemy as sa

    async with backend.raw() as conn:
        rows = (await conn.execute(sa.text("SELECT username, password_hash FROM accounts"))).all()
    assert rows and all(h.startswith("$argon2id$") and "password" not in h for _, h in rows)


async def test_the_live_feed_needs_a_session(people: Running, browser: Browser) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as err:
        async with browser.http.ws_connect(people.url("/api/ws")):
            pass
    assert err.value.status == 401


async def test_the_live_feed_sends_my_state_and_my_offer(people: Running, browser: Browser) -> None:
    await only_available(people, "anna")
    await browser.login("anna", "anna-password")
    async with browser.http.ws_connect(people.url("/api/ws")) as ws:
        hello = await ws.receive_json(timeout=5)
        assert hello["type"] == "hello" and hello["manager_id"] == "anna"
        me = await ws.receive_json(timeout=5)
        assert me["type"] == "me" and me["manager"]["presence"] == "available"
        _, lead = await people.call("POST", "/api/leads", json={**LEAD, "name": "<script>alert(1)</script>"})
        while (msg := await ws.receive_json(timeout=5))["type"] != "offer":
            pass
        assert msg["contact"]["id"] == lead["id"] and msg["contact"]["name"] == "<script>alert(1)</script>"
        assert msg["expires_at"] > msg["now"]


async def test_a_cross_site_websocket_is_refused(people: Running, browser: Browser) -> None:
    await browser.login("anna", "anna-password")
    with pytest.raises(aiohttp.WSServerHandshakeError) as err:
        async with browser.http.ws_connect(people.url("/api/ws"), headers={"Origin": "https://evil.example"}):
            pass
    assert err.value.status == 403


def test_the_first_admin_comes_from_the_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    url = default_sqlite_url(tmp_path / "data")
    argv = ["user", "create", "--role", "admin", "--username", "boss", "--password-stdin", "--config", str(EXAMPLE)]
    monkeypatch.setattr("sys.stdin", io.StringIO("boss-password\n"))
    assert cli.main([*argv, "--db", url]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("boss-password\n"))
    assert cli.main([*argv, "--db", url]) == 1, "a taken username is refused"
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert cli.main(["user", "create", "--role", "admin", "--username", "x", "--password-stdin", "--db", url]) == 2

    async def check() -> None:
        store = await open_store(url)
        try:
            account = await Accounts(store).check_password("boss", "boss-password")
            assert account is not None and account.role == "admin"
        finally:
            await store.close()

    asyncio.run(check())
