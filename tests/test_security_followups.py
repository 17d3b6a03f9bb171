"""What the security audit left, each through a real server on 127.0.0.1 (SQLite and
PostgreSQL): a refused sign-in never logs the typed username, guesses at one account from
many addresses are slowed, a session ends a week after its sign-in (its live feed too), the
live feed takes only this server's own origin (port and scheme included), and
`acd token revoke` revokes in the server's database."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest
import sqlalchemy as sa
from api_fixtures import EXAMPLE, ROOT, Running, example_deployment, start, stop
from storage_fixtures import Backend
from test_web_auth import Browser, accounts_of

from acd.storage.store import default_sqlite_url
from acd.web.auth import ACCOUNT_BURST, SESSION_LIFETIME, SESSIONS


@pytest.fixture
async def behind(backend: Backend) -> AsyncIterator[Running]:
    """The server behind a trusted proxy (the test's own 127.0.0.1), so a test can come
    from many addresses through X-Forwarded-For; with anna's account."""
    d = example_deployment()
    r = await start(backend, replace(d, server=replace(d.server, trusted_proxies=("127.0.0.1/32",))))
    try:
        await (await accounts_of(r)).create("anna", "anna-password", "manager", "anna")
        yield r
    finally:
        await stop(r)


@pytest.fixture
async def browser(behind: Running) -> AsyncIterator[Browser]:
    b = Browser(behind)
    yield b
    await b.close()


async def sign_in(r: Running, username: str, password: str, address: str) -> aiohttp.ClientResponse:
    async with r.session.post(
        r.url("/api/auth/login"),
        json={"username": username, "password": password},
        headers={"X-Forwarded-For": address},
    ) as resp:
        await resp.read()
        return resp


# ---- 1. the log of a refused sign-in ------------------------------------------------------


async def test_a_refused_sign_in_logs_no_typed_username(behind: Running, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="acd.web")
    password_in_the_wrong_box = "Ромашка-2026!"
    for _ in range(2):
        assert (await sign_in(behind, password_in_the_wrong_box, "x", "203.0.113.1")).status == 401
    assert (await sign_in(behind, "anna", "wrong", "203.0.113.1")).status == 401
    refused = [r.getMessage() for r in caplog.records if "refused sign-in" in r.getMessage()]
    assert len(refused) == 3, caplog.text
    assert password_in_the_wrong_box not in caplog.text and repr(password_in_the_wrong_box) not in caplog.text
    # the same unknown name shows as the same tag, so repeated tries can still be told apart
    assert "unknown username" in refused[0] and refused[0] == refused[1]
    assert "account anna" in refused[2] and "203.0.113.1" in refused[2]


# ---- 2. a limit per account -----------------------------------------------------------------


async def test_guesses_at_one_account_from_many_addresses_are_slowed(behind: Running) -> None:
    # anna signs in from her office: that address is known for her account from now on
    assert (await sign_in(behind, "anna", "anna-password", "198.51.100.7")).status == 200
    # ACCOUNT_BURST tries at once, hers (from an address then new) among them
    codes = [(await sign_in(behind, "anna", f"guess-{i}", f"203.0.113.{i}")).status for i in range(ACCOUNT_BURST + 4)]
    assert codes == [401] * (ACCOUNT_BURST - 1) + [429] * 5, codes
    refused = await sign_in(behind, "anna", "anna-password", "192.0.2.50")  # right, but from a new address
    assert refused.status == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 61  # slowed, not locked out
    # from where she signed in before, the attack does not keep her out
    assert (await sign_in(behind, "anna", "anna-password", "198.51.100.7")).status == 200
    # another account is not held back by anna's
    await (await accounts_of(behind)).create("boris", "boris-password", "manager", "boris")
    assert (await sign_in(behind, "boris", "boris-password", "192.0.2.50")).status == 200


# ---- 3. the session's lifetime ---------------------------------------------------------------


async def signed_in_at(backend: Backend, username: str, at: float) -> None:
    """Move the sign-in of the user's sessions back in time, as if they were that old."""
    async with backend.raw() as conn:
        await conn.execute(
            sa.text("UPDATE web_sessions SET created_at = :at WHERE username = :u"), {"at": at, "u": username}
        )


async def test_a_session_ends_a_week_after_sign_in_however_busy(
    behind: Running, browser: Browser, backend: Backend
) -> None:
    await browser.login("anna", "anna-password")
    await signed_in_at(backend, "anna", time.time() - SESSION_LIFETIME + 3600)  # an hour left
    status, me = await browser.call("GET", "/api/auth/session")
    assert status == 200 and me["username"] == "anna"
    behind.server.app[SESSIONS].clear()  # past the few seconds a looked-up session is trusted
    await signed_in_at(backend, "anna", time.time() - SESSION_LIFETIME - 1)  # used all along, but a week old
    status, _ = await browser.call("GET", "/api/auth/session")
    assert status == 401
    assert (await browser.login("anna", "anna-password"))[0] == 200  # signing in again gives a new week
    assert (await browser.call("GET", "/api/auth/session"))[0] == 200


async def test_the_live_feed_closes_when_the_session_ends(behind: Running, browser: Browser, backend: Backend) -> None:
    await browser.login("anna", "anna-password")
    await signed_in_at(backend, "anna", time.time() - SESSION_LIFETIME + 2)  # two seconds left
    async with browser.http.ws_connect(behind.url("/api/ws")) as ws:
        assert (await ws.receive_json(timeout=5))["type"] == "hello"
        while (msg := await ws.receive(timeout=15)).type is aiohttp.WSMsgType.TEXT:
            pass
        assert msg.type is aiohttp.WSMsgType.CLOSE and ws.close_code == 4001, msg


# ---- 4. the live feed's origin ---------------------------------------------------------------


async def feed_status(browser: Browser, origin: str, **headers: str) -> int:
    try:
        async with browser.http.ws_connect(browser.running.url("/api/ws"), headers={"Origin": origin, **headers}) as ws:
            assert (await ws.receive_json(timeout=5))["type"] == "hello"
            return 101
    except aiohttp.WSServerHandshakeError as err:
        return err.status


async def test_the_live_feed_takes_only_this_servers_own_origin(behind: Running, browser: Browser) -> None:
    await browser.login("anna", "anna-password")
    port = behind.http.port
    assert port != 9999
    assert await feed_status(browser, f"http://127.0.0.1:{port}") == 101
    assert await feed_status(browser, "http://127.0.0.1:9999") == 403  # another service on this host
    assert await feed_status(browser, "http://127.0.0.1") == 403
    assert await feed_status(browser, f"https://127.0.0.1:{port}") == 403
    assert await feed_status(browser, "https://romashka-soft.ru") == 403  # the site posting forms: not the panel's
    assert await feed_status(browser, "null") == 403
    # behind the trusted proxy: the origin the browser sees is https://acd.example (port 443)
    proxied = {"Host": "acd.example", "X-Forwarded-Proto": "https"}
    assert await feed_status(browser, "https://acd.example", **proxied) == 101
    assert await feed_status(browser, "https://ACD.example:443", **proxied) == 101
    assert await feed_status(browser, "https://acd.example:8443", **proxied) == 403
    assert await feed_status(browser, "http://acd.example", **proxied) == 403


# ---- 5. acd token revoke ----------------------------------------------------------------------


async def acd(*args: str, stdin: str = "") -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "acd.cli",
        *args,
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_acd_token_revoke_revokes_in_the_servers_database(tmp_path: Path) -> None:
    db = default_sqlite_url(tmp_path / "data")
    r = await start(Backend("sqlite", db), example_deployment())
    try:
        leaked, other = await r.manager_token("anna"), await r.manager_token("boris")
        common = ("--config", str(EXAMPLE), "--db", db)
        assert await acd("token", "revoke", leaked, *common) == (0, "revoked\n", "")
        assert (await r.call("GET", "/api/me", leaked))[0] == 401
        assert await r.server.store.verify_token(other) == ("manager", "boris")  # only that one
        code, _, err = await acd("token", "revoke", leaked, *common)
        assert code == 1 and "no live token" in err
        # from standard input, out of the shell's history
        assert (await acd("token", "revoke", *common, stdin=other + "\n"))[0] == 0
        assert (await r.call("GET", "/api/me", other))[0] == 401
        _, audit = await r.call("GET", "/api/audit", r.supervisor)
        actions = [(a["actor"], a["action"]) for a in audit["audit"]]
        assert actions[:2] == [("cli", "revoke_token")] * 2 and leaked not in str(audit)
    finally:
        await stop(r)
