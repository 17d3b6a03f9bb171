"""The security audit's findings, each through a real server on 127.0.0.1 (SQLite and
PostgreSQL): a manager cannot change a colleague's deals nor list the whole customer base,
sign-in takes only JSON (no login CSRF), password guesses through a session are limited,
an admin can revoke a leaked token, and the sign-in page sends nobody to another site."""

from __future__ import annotations

import pytest
import test_web_auth
from api_fixtures import Running
from test_web_auth import Browser, accounts_of

from acd.web.auth import ACCOUNTS


async def customer_of(r: Running, name: str, phone: str, manager: str) -> tuple[str, str]:
    """A customer whose account manager is `manager`, with an open deal they own."""
    status, c = await r.call(
        "POST", "/api/crm/customers", r.supervisor, json={"name": name, "phones": [phone], "account_manager": manager}
    )
    assert status == 201, c
    status, d = await r.call("POST", "/api/crm/deals", r.supervisor, json={"customer_id": c["id"], "owner": manager})
    assert status == 201, d
    return c["id"], d["id"]


# ---- deals and customers: a manager's own --------------------------------------------------


async def test_a_manager_cannot_move_or_close_a_colleagues_deal(running: Running) -> None:
    _, deal = await customer_of(running, "ООО Борис", "+7 916 000-00-01", "boris")
    anna = await running.manager_token("anna")
    status, out = await running.call("POST", f"/api/crm/deals/{deal}/close", anna, json={"outcome": "lost"})
    assert status == 403 and out["error"]["code"] == "forbidden"
    status, out = await running.call(
        "POST", f"/api/crm/deals/{deal}/stage", anna, json={"stage": "approval", "stage_owner": "anna"}
    )
    assert status == 403
    status, d = await running.call("GET", f"/api/crm/deals/{deal}", running.supervisor)
    assert d["status"] == "open" and d["stage"] == "qualification" and d["stage_owner"] is None
    # the owner hands the stage on; its holder may then move it on and close it
    boris = await running.manager_token("boris")
    status, d = await running.call(
        "POST", f"/api/crm/deals/{deal}/stage", boris, json={"stage": "approval", "stage_owner": "anna"}
    )
    assert status == 200, d
    status, d = await running.call("POST", f"/api/crm/deals/{deal}/close", anna, json={"outcome": "won", "amount": 5})
    assert status == 200 and d["status"] == "won", d


async def test_a_manager_opens_deals_only_in_their_own_name(running: Running) -> None:
    customer, _ = await customer_of(running, "ООО Борис", "+7 916 000-00-02", "boris")
    anna = await running.manager_token("anna")
    status, out = await running.call(
        "POST", "/api/crm/deals", anna, json={"customer_id": customer, "owner": "boris", "amount": 1}
    )
    assert status == 403 and out["error"]["code"] == "forbidden"
    status, d = await running.call("POST", "/api/crm/deals", anna, json={"customer_id": customer})
    assert status == 201 and d["owner"] == "anna", d


async def test_a_manager_lists_only_their_own_customers_and_deals(running: Running) -> None:
    mine, my_deal = await customer_of(running, "ООО Анна", "+7 916 000-00-03", "anna")
    await customer_of(running, "ООО Борис", "+7 916 000-00-04", "boris")
    anna = await running.manager_token("anna")
    for query in ("", "?account_manager=boris"):
        status, body = await running.call("GET", f"/api/crm/customers{query}", anna)
        assert status == 200 and [c["id"] for c in body["customers"]] == [mine], body
    for query in ("", "?owner=boris"):
        status, body = await running.call("GET", f"/api/crm/deals{query}", anna)
        assert status == 200 and [d["id"] for d in body["deals"]] == [my_deal], body
    # a supervisor still sees everybody's, and filters as asked
    status, body = await running.call("GET", "/api/crm/customers", running.supervisor)
    assert len(body["customers"]) == 2
    status, body = await running.call("GET", "/api/crm/deals?owner=boris", running.supervisor)
    assert [d["owner"] for d in body["deals"]] == ["boris"]


browser = test_web_auth.browser  # the fixture


# ---- sign-in and sessions --------------------------------------------------------------------


@pytest.fixture
async def people(running: Running) -> Running:
    accounts = await accounts_of(running)
    await accounts.create("anna", "anna-password", "manager", "anna")
    return running


async def test_sign_in_takes_only_json_so_another_site_cannot_sign_a_browser_in(
    people: Running, browser: Browser
) -> None:
    # what a cross-site <form enctype="text/plain"> can post: a JSON object, as text
    forged = '{"username": "anna", "password": "anna-password"}'
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        async with browser.http.post(
            people.url("/api/auth/login"), data=forged, headers={"Content-Type": content_type}
        ) as resp:
            assert resp.status == 415, content_type
            assert "acd_session" not in resp.cookies
    status, body = await browser.login("anna", "anna-password")
    assert status == 200 and body["username"] == "anna"


async def test_password_guesses_through_a_session_are_limited(people: Running, browser: Browser) -> None:
    await browser.login("anna", "anna-password")
    codes = [
        (await browser.call("POST", "/api/auth/password", json={"current": f"guess-{i}", "new": "new-password"}))[0]
        for i in range(25)
    ]
    assert set(codes[:20]) == {403} and set(codes[20:]) == {429}, codes
    accounts = people.server.app[ACCOUNTS]
    assert await accounts.check_password("anna", "anna-password") is not None


# ---- bearer tokens ---------------------------------------------------------------------------


async def test_an_admin_revokes_a_token_and_it_stops_working_at_once(running: Running) -> None:
    leaked = await running.manager_token("anna")
    status, _ = await running.call("GET", "/api/me", leaked)
    assert status == 200  # and now it is in the token cache
    status, out = await running.call("POST", "/api/tokens/revoke", running.supervisor, json={"token": leaked})
    assert status == 403, out
    status, out = await running.call("POST", "/api/tokens/revoke", running.admin, json={"token": leaked})
    assert status == 200 and out == {"revoked": True}, out
    status, _ = await running.call("GET", "/api/me", leaked)
    assert status == 401
    status, out = await running.call("POST", "/api/tokens/revoke", running.admin, json={"token": leaked})
    assert status == 404 and out["error"]["code"] == "no_such_token"
    status, audit = await running.call("GET", "/api/audit", running.supervisor)
    assert audit["audit"][0]["action"] == "revoke_token" and leaked not in str(audit)
