"""The website's side (the public form, CORS, the honeypot, rate limits), the pages' own
headers, and the supervisor's report and CSV exports, through a real server."""

from __future__ import annotations

import csv
import io
from dataclasses import replace

from api_fixtures import Running, example_deployment, start, stop
from storage_fixtures import Backend

from acd.config import Deployment

SHOP = "https://romashka-soft.ru"  # in web.allowed_origins of the example configuration
LEAD = {"name": "Иван", "phone": "+7 495 123-45-67", "criteria": {"temperature": "hot"}}


async def test_the_public_form_lists_the_configured_questions_for_allowed_origins(running: Running) -> None:
    status, form = await running.call("GET", "/api/public/form", headers={"Origin": SHOP})
    assert status == 200 and form["languages"] == ["ru", "en"] and form["honeypot"] == "website"
    names = [c["name"] for c in form["criteria"]]
    assert names == [c.name for c in running.server.deployment.criteria]
    assert form["criteria"][0]["options"][0]["label"]["ru"]
    assert form["callback_email"] is False, "customers are not notified: the callback form asks no e-mail"
    svc = running.server.services
    svc.deployment = replace(svc.deployment, notifications=replace(svc.deployment.notifications, enabled=True))
    _, form = await running.call("GET", "/api/public/form", headers={"Origin": SHOP})
    assert form["callback_email"] is True
    async with running.session.get(running.url("/api/public/form"), headers={"Origin": SHOP}) as resp:
        assert resp.headers["Access-Control-Allow-Origin"] == SHOP and "Origin" in resp.headers["Vary"]


async def test_a_preflight_from_an_allowed_origin_passes_and_others_are_refused(running: Running) -> None:
    ask = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type,idempotency-key"}
    async with running.session.options(running.url("/api/leads"), headers={"Origin": SHOP, **ask}) as resp:
        assert resp.status == 204
        assert resp.headers["Access-Control-Allow-Origin"] == SHOP
        assert "Idempotency-Key" in resp.headers["Access-Control-Allow-Headers"]
    async with running.session.options(
        running.url("/api/leads"), headers={"Origin": "https://evil.example", **ask}
    ) as r:
        assert r.status == 403 and "Access-Control-Allow-Origin" not in r.headers
    status, body = await running.call("POST", "/api/leads", json=LEAD, headers={"Origin": "https://evil.example"})
    assert status == 403 and body["error"]["code"] == "origin_not_allowed"
    status, body = await running.call("POST", "/api/leads", json=LEAD, headers={"Origin": SHOP})
    assert status == 201


async def test_callback_requests_take_cors_like_leads_and_say_telephony_is_off(running: Running) -> None:
    status, form = await running.call("GET", "/api/public/form", headers={"Origin": SHOP})
    assert status == 200 and form["callbacks"] is False, "no telephony: the widget books a callback lead"
    ask = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    async with running.session.options(running.url("/api/callbacks"), headers={"Origin": SHOP, **ask}) as resp:
        assert resp.status == 204 and resp.headers["Access-Control-Allow-Origin"] == SHOP
    async with running.session.options(
        running.url("/api/callbacks"), headers={"Origin": "https://evil.example", **ask}
    ) as r:
        assert r.status == 403 and "Access-Control-Allow-Origin" not in r.headers
    cb = {"phone": "+7 900 000-00-00", "name": "Кто-то"}
    status, body = await running.call("POST", "/api/callbacks", json=cb, headers={"Origin": "https://evil.example"})
    assert status == 403 and body["error"]["code"] == "origin_not_allowed"
    async with running.session.post(running.url("/api/callbacks"), json=cb, headers={"Origin": SHOP}) as resp:
        assert resp.status == 503 and resp.headers["Access-Control-Allow-Origin"] == SHOP
        assert (await resp.json())["error"]["code"] == "telephony_off"
    status, body = await running.call("POST", "/api/callbacks", json={**cb, "website": "http://spam"})
    assert status == 201 and body["status"] == "pending", "a bot is not told anything either way"


async def test_a_filled_honeypot_gets_a_convincing_answer_and_makes_no_lead(running: Running) -> None:
    before = len(await running.server.store.list_contacts())
    status, body = await running.call("POST", "/api/leads", json={**LEAD, "website": "http://spam"})
    assert status == 201 and body["status"] == "waiting" and body["id"]
    assert len(await running.server.store.list_contacts()) == before
    _, real = await running.call("POST", "/api/leads", json=LEAD)
    assert body.keys() == real.keys(), "a real lead's answer must not tell the bot apart"


async def test_an_anonymous_lead_is_answered_with_a_receipt_and_staff_see_the_contact(running: Running) -> None:
    status, receipt = await running.call("POST", "/api/leads", json=LEAD, headers={"Origin": SHOP})
    # whether the customer was known, the priority and the routing are not the visitor's to read
    assert status == 201 and receipt == {"id": receipt["id"], "status": "waiting"}
    status, contact = await running.call("POST", "/api/leads", running.supervisor, json=LEAD)
    assert status == 201 and contact["customer_id"] and contact["required_skills"]
    manager = await running.manager_token(next(iter(running.server.dispatcher.board.managers)))
    status, answer = await running.call("POST", "/api/leads", manager, json=LEAD)
    assert status == 201 and answer.keys() == {"id", "status"}
    before = len(await running.server.store.list_contacts())
    status, refused = await running.call("POST", "/api/leads", "not-a-token", json=LEAD)
    assert status == 401 and refused["error"]["code"] == "unauthenticated"
    assert len(await running.server.store.list_contacts()) == before


async def test_the_public_intake_answers_429_with_cors_headers_past_the_limit(backend: Backend) -> None:
    r = await start(backend, example_deployment(leads_per_minute=3))
    try:
        statuses = []
        for _ in range(5):
            async with r.session.post(r.url("/api/leads"), json=LEAD, headers={"Origin": SHOP}) as resp:
                statuses.append(resp.status)
                last = resp
        assert statuses[:3] == [201, 201, 201] and statuses[3:] == [429, 429]
        assert last.headers["Access-Control-Allow-Origin"] == SHOP, "the widget can read why"
        assert int(last.headers["Retry-After"]) >= 1
        for _ in range(2):
            status, _ = await r.call("POST", "/api/leads", json={**LEAD, "website": "x"})
            assert status == 429, "bots count against the limit too"
    finally:
        await stop(r)


async def test_pages_are_served_with_a_strict_content_security_policy(running: Running) -> None:
    for path in ("/login", "/panel", "/dashboard", "/admin", "/static/panel.js"):
        async with running.session.get(running.url(path)) as resp:
            assert resp.status == 200, path
            assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
            assert resp.headers["X-Frame-Options"] == "DENY"
    async with running.session.get(running.url("/widget.js")) as resp:
        assert resp.status == 200 and "javascript" in resp.headers["Content-Type"]
        assert "Content-Security-Policy" not in resp.headers  # it runs inside the customer's site
    async with running.session.get(running.url("/"), allow_redirects=False) as resp:
        assert resp.status == 302 and resp.headers["Location"] == "/login"


async def test_the_day_report_counts_answers_waits_and_outcomes_per_manager(running: Running) -> None:
    board = running.server.dispatcher.board
    anna = await running.manager_token("anna")
    _, first = await running.call("POST", "/api/leads", json=LEAD)
    await running.settle()
    owner = board.contacts[first["id"]].offered_to
    token = await running.manager_token(owner) if owner != "anna" else anna
    await running.call("POST", f"/api/contacts/{first['id']}/accept", token)
    await running.call("POST", f"/api/contacts/{first['id']}/finish", token, json={"outcome": "won"})

    status, report = await running.call("GET", "/api/reports/day", running.supervisor)
    assert status == 200 and report["total"] == 1 and report["answered"] == 1 and report["abandoned"] == 0
    assert report["service_level"] == 1.0 and report["average_wait"] is not None
    me = next(m for m in report["managers"] if m["id"] == owner)
    assert me["offered"] == 1 and me["answered"] == 1 and me["won"] == 1 and me["conversion"] == 1.0
    assert sum(sum(v for k, v in h.items() if k != "hour") for h in report["by_hour"]) == 1
    assert len(report["week"]) == 7 and report["week"][-1]["contacts"] == 1
    today = report["week"][-1]
    assert today["service_level"] == 1.0 and today["conversion"] == {owner: 1.0}
    assert all(d["service_level"] is None and d["conversion"] == {} for d in report["week"][:-1])
    assert [m["id"] for m in report["week_managers"]] == [owner] and report["week_managers"][0]["name"]
    status, _ = await running.call("GET", "/api/reports/day?date=yesterday", running.supervisor)
    assert status == 400


async def test_the_csv_exports_keep_customer_text_inert(running: Running) -> None:
    await running.call("POST", "/api/leads", json={**LEAD, "name": '=HYPERLINK("http://x")'})
    await running.settle()
    async with running.session.get(
        running.url("/api/export/contacts.csv"), headers={"Authorization": f"Bearer {running.supervisor}"}
    ) as resp:
        assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/csv")
        assert "attachment" in resp.headers["Content-Disposition"]
        rows = list(csv.DictReader(io.StringIO((await resp.read()).decode("utf-8-sig"))))
    assert rows[0]["name"] == '\'=HYPERLINK("http://x")' and rows[0]["channel"] == "web"
    status, text = await running.call("GET", "/api/export/decisions.csv", running.supervisor)
    assert status == 200 and text.lstrip("\ufeff").startswith("at,contact_id,manager_id")
    status, _ = await running.call("GET", "/api/export/contacts.csv", await running.manager_token("anna"))
    assert status == 403


async def test_a_callback_from_the_widget_is_a_lead_on_the_callback_channel(running: Running) -> None:
    body = {**LEAD, "channel": "callback", "note": "Обратный звонок: 15:30"}
    status, receipt = await running.call("POST", "/api/leads", json=body, headers={"Origin": SHOP})
    assert status == 201
    status, lead = await running.call("GET", f"/api/contacts/{receipt['id']}", running.supervisor)
    assert lead["channel"] == "callback" and lead["note"] == "Обратный звонок: 15:30"


def _behind(trusted: tuple[str, ...]) -> Deployment:
    """The example with two forms a minute per client, served behind the given proxies."""
    d = example_deployment(leads_per_minute=2)
    return replace(d, server=replace(d.server, trusted_proxies=trusted))


async def test_behind_a_trusted_proxy_each_visitor_has_their_own_limit(backend: Backend) -> None:
    """The proxy (here 127.0.0.1, the test's own address) names the visitor in
    X-Forwarded-For: one visitor's forms do not use up another's, and a visitor who sends
    an X-Forwarded-For of their own (the proxy appends the real address) gains nothing."""
    r = await start(backend, _behind(("127.0.0.1/32", "10.0.0.0/8")))
    try:

        async def send(forwarded_for: str) -> int:
            return (await r.call("POST", "/api/leads", json=LEAD, headers={"X-Forwarded-For": forwarded_for}))[0]

        assert [await send("203.0.113.7") for _ in range(3)] == [201, 201, 429]
        assert await send("198.51.100.9") == 201  # another visitor
        assert await send("192.0.2.1, 203.0.113.7") == 429  # a made-up address in front changes nothing
        assert await send("203.0.113.8, 10.1.2.3") == 201  # through a second proxy of ours
        assert await send("unknown, 203.0.113.9") == 201  # as Squid writes it: the address our proxy saw counts
        assert await send("unknown, 203.0.113.9") == 201
        assert await send("203.0.113.9") == 429
        async with r.session.ws_connect(
            r.url("/api/ws"), headers={"Authorization": f"Bearer {r.supervisor}", "X-Forwarded-For": "198.51.100.9"}
        ) as ws:
            assert (await ws.receive_json(timeout=5))["type"] == "hello"  # the live feed works behind it too
    finally:
        await stop(r)


async def test_an_ipv6_visitor_is_counted_by_their_network(backend: Backend) -> None:
    """A host may take any address of its /64: counting single IPv6 addresses would let one
    visitor send without limit. An IPv4 address written as IPv6 is the same visitor."""
    r = await start(backend, _behind(("127.0.0.1",)))
    try:

        async def send(forwarded_for: str) -> int:
            return (await r.call("POST", "/api/leads", json=LEAD, headers={"X-Forwarded-For": forwarded_for}))[0]

        assert [await send(f"2001:db8::{n}") for n in (1, 2, 3)] == [201, 201, 429]
        assert await send("2001:db8:0:1::1") == 201  # the next /64: somebody else
        assert [await send("203.0.113.7"), await send("::ffff:203.0.113.7"), await send("203.0.113.7")] == [
            201,
            201,
            429,
        ]
    finally:
        await stop(r)


async def test_x_forwarded_for_from_anybody_else_is_ignored(backend: Backend) -> None:
    r = await start(backend, _behind(("10.9.9.9",)))  # the proxy is elsewhere: 127.0.0.1 is a client
    try:
        statuses = [
            (await r.call("POST", "/api/leads", json=LEAD, headers={"X-Forwarded-For": f"203.0.113.{n}"}))[0]
            for n in range(3)
        ]
        assert statuses == [201, 201, 429]
    finally:
        await stop(r)


def test_the_client_address_is_the_nearest_one_no_proxy_of_ours_wrote() -> None:
    from ipaddress import ip_network

    from acd.api.proxies import client_address

    ours = [ip_network("127.0.0.1/32"), ip_network("10.0.0.0/8"), ip_network("fd00::/8")]
    assert client_address(ours, "127.0.0.1", []) == "127.0.0.1"  # the proxy's own request
    assert client_address(ours, "127.0.0.1", ["unknown"]) == "127.0.0.1"  # it did not know either
    assert client_address(ours, "127.0.0.1", ["1.2.3.4, 10.0.0.5", "fd00::7"]) == "1.2.3.4"  # two headers
    assert client_address(ours, "127.0.0.1", ["2001:db8::1"]) == "2001:db8::1"
    assert client_address(ours, "198.51.100.1", ["1.2.3.4"]) == "198.51.100.1"  # not from a proxy of ours
