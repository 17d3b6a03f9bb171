"""The HTTP API through a real server on 127.0.0.1, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path

from api_fixtures import Running
from storage_fixtures import Backend

from acd.api.security import BAD_CREDENTIALS_PER_MINUTE
from acd.config import load_deployment

LEAD = {
    "name": "Иван Петров",
    "phone": "+7 495 123-45-67",
    "criteria": {"temperature": "hot", "purpose": "purchase", "price_tier": "high"},
}


async def test_health_and_openapi_describe_every_route(running: Running) -> None:
    status, body = await running.call("GET", "/healthz")
    assert status == 200 and body["db"] is True
    status, doc = await running.call("GET", "/api/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3.")
    for route in running.server.app.router.routes():
        path = route.resource.canonical if route.resource else ""
        if route.method in ("GET", "POST", "PATCH") and path.startswith(("/api", "/healthz", "/metrics")):
            assert route.method.lower() in doc["paths"][path], path
    assert "LeadIn" in doc["components"]["schemas"]


async def test_a_lead_is_stored_offered_to_the_best_manager_and_explained(running: Running) -> None:
    status, lead = await running.call("POST", "/api/leads", json=LEAD)
    assert status == 201 and lead["status"] == "waiting"
    await running.settle()
    status, seen = await running.call("GET", f"/api/contacts/{lead['id']}", running.supervisor)
    assert status == 200 and seen["status"] == "offered"
    assert seen["offered_to"] == "anna"  # the top sales rating in the example config
    status, log = await running.call("GET", f"/api/decisions?contact_id={lead['id']}", running.supervisor)
    d = log["decisions"][0]
    assert d["manager_id"] == "anna" and d["policy_version"] == running.server.deployment.policy.version
    assert d["candidates"][0]["manager_id"] == "anna" and "value" in d["candidates"][0]["components"]
    assert d["filtered_counts"], "the explanation names who was filtered and why"


async def test_a_double_submitted_form_makes_one_lead(running: Running) -> None:
    headers = {"Idempotency-Key": "form-42"}
    results = await asyncio.gather(*(running.call("POST", "/api/leads", json=LEAD, headers=headers) for _ in range(5)))
    ids = {body["id"] for _, body in results}
    assert len(ids) == 1
    assert sorted(status for status, _ in results).count(201) == 1


async def test_an_idempotency_key_too_long_to_index_is_refused_and_stores_nothing(running: Running) -> None:
    """PostgreSQL cannot index a key of a few kilobytes: that must be the client's 400, not a
    503 saying the database is away (which tells the client to send it again)."""
    before = len(await running.server.store.list_contacts())
    for headers in ({"Idempotency-Key": "k" * 201}, {"Idempotency-Key": "f" * 6000}):
        status, body = await running.call("POST", "/api/leads", json=LEAD, headers=headers)
        assert status == 400 and "Idempotency-Key" in body["error"]["message"]
    status, _ = await running.call("POST", "/api/leads", json={**LEAD, "idempotency_key": "k" * 201})
    assert status == 400
    assert len(await running.server.store.list_contacts()) == before
    status, _ = await running.call("POST", "/api/leads", json=LEAD, headers={"Idempotency-Key": "k" * 200})
    assert status == 201


async def test_the_manager_accepts_and_finishes_their_offer(running: Running) -> None:
    _, lead = await running.call("POST", "/api/leads", json=LEAD)
    await running.settle()
    anna = await running.manager_token("anna")
    boris = await running.manager_token("boris")
    status, body = await running.call("POST", f"/api/contacts/{lead['id']}/accept", boris)
    assert status in (404, 409)
    status, body = await running.call("POST", f"/api/contacts/{lead['id']}/accept", anna)
    assert status == 200 and body["status"] == "assigned" and body["assigned_to"] == "anna"
    status, mine = await running.call("GET", "/api/contacts", anna)
    assert [c["id"] for c in mine["contacts"]] == [lead["id"]]
    status, body = await running.call("POST", f"/api/contacts/{lead['id']}/finish", anna, json={"outcome": "won"})
    assert status == 200 and body["status"] == "finished" and body["outcome"] == "won"


async def test_a_declined_offer_goes_to_someone_else(running: Running) -> None:
    _, lead = await running.call("POST", "/api/leads", json=LEAD)
    await running.settle()
    anna = await running.manager_token("anna")
    status, _ = await running.call("POST", f"/api/contacts/{lead['id']}/decline", anna, json={"reason": "busy"})
    assert status == 200
    await running.settle()
    _, seen = await running.call("GET", f"/api/contacts/{lead['id']}", running.supervisor)
    assert seen["offered_to"] not in (None, "anna")


async def test_presence_pause_and_rejoin_are_recorded(running: Running) -> None:
    anna = await running.manager_token("anna")
    status, body = await running.call(
        "POST", "/api/managers/anna/presence", anna, json={"state": "paused", "reason": "обед"}
    )
    assert status == 200 and body["presence"] == "paused" and body["pause_reason"] == "обед"
    status, body = await running.call("POST", "/api/managers/anna/rejoin", anna)
    assert body["presence"] == "available"
    _, log = await running.call("GET", "/api/transitions?manager_id=anna", running.supervisor)
    assert [t["to"] for t in log["transitions"]][:2] == ["available", "paused"]


async def test_a_manager_acts_only_on_themself(running: Running) -> None:
    boris = await running.manager_token("boris")
    status, body = await running.call("POST", "/api/managers/anna/presence", boris, json={"state": "offline"})
    assert status == 403 and body["error"]["code"] == "forbidden"
    status, _ = await running.call("GET", "/api/queue", boris)
    assert status == 403
    status, _ = await running.call("GET", "/api/queue")
    assert status == 401
    status, _ = await running.call("GET", "/api/queue", "not-a-token")
    assert status == 401


async def test_unknown_tokens_from_one_client_are_refused_before_the_database_is_asked(running: Running) -> None:
    """Each unknown token costs a look-up, and the API's rate limit is keyed by the token:
    past BAD_CREDENTIALS_PER_MINUTE failures a client gets 429 without one. A token already
    known stays usable; one not yet seen waits for the bucket to refill."""
    tokens = running.server.services.tokens
    asked: list[str] = []
    verify = tokens._verify

    async def counted(token: str) -> tuple[str, str | None] | None:
        asked.append(token)
        return await verify(token)

    tokens._verify = counted
    boris = await running.manager_token("boris")
    assert (await running.call("GET", "/api/contacts/x", boris))[0] == 404  # known from here on
    statuses = [(await running.call("GET", "/api/queue", f"guess-{n}"))[0] for n in range(BAD_CREDENTIALS_PER_MINUTE)]
    assert statuses == [401] * BAD_CREDENTIALS_PER_MINUTE
    assert len(asked) == 1 + BAD_CREDENTIALS_PER_MINUTE
    status, body = await running.call("GET", "/api/queue", "guess-again")
    assert status == 429 and body["error"]["code"] == "rate_limited"
    status, _ = await running.call("POST", "/api/leads", "guess-again", json=LEAD)
    assert status == 429  # a staff token on the public form is checked the same way
    assert len(asked) == 1 + BAD_CREDENTIALS_PER_MINUTE  # no look-up for either
    assert (await running.call("GET", "/api/contacts/x", boris))[0] == 404
    assert (await running.call("GET", "/api/queue", running.supervisor))[0] == 429  # not seen yet


async def test_an_admin_creates_and_updates_managers(running: Running) -> None:
    new = {"id": "zoya", "name": "Зоя", "team": "sales", "skills": {"sales": 3}, "device": "PJSIP/120"}
    status, body = await running.call("POST", "/api/managers", running.admin, json=new)
    assert status == 201 and body["presence"] == "offline" and body["capacity"]["web"] >= 1
    status, _ = await running.call("POST", "/api/managers", running.supervisor, json=new)
    assert status == 403
    status, body = await running.call("PATCH", "/api/managers/zoya", running.admin, json={"skills": {"sales": 5}})
    assert status == 200 and body["skills"] == {"sales": 5}
    status, body = await running.call("PATCH", "/api/managers/zoya", running.admin, json={"team": "nowhere"})
    assert status == 400 and "team" in body["error"]["message"]


async def test_a_supervisor_reassigns_a_lead_and_it_is_audited(running: Running) -> None:
    _, lead = await running.call("POST", "/api/leads", json=LEAD)
    await running.settle()
    status, body = await running.call(
        "POST", f"/api/contacts/{lead['id']}/reassign", running.supervisor, json={"manager_id": "vera"}
    )
    assert status == 200 and body["override"] is True
    await running.settle()
    _, seen = await running.call("GET", f"/api/contacts/{lead['id']}", running.supervisor)
    assert seen["offered_to"] == "vera"
    _, audit = await running.call("GET", "/api/audit", running.supervisor)
    assert audit["audit"][0]["action"] == "reassign"


async def test_malformed_input_gets_a_4xx_with_a_message_never_a_500(running: Running) -> None:
    cases = [
        ("POST", "/api/leads", {"data": b"{not json"}),
        ("POST", "/api/leads", {"json": [1, 2]}),
        ("POST", "/api/leads", {"json": {"phone": "1", "criteria": {"temperature": "lukewarm"}}}),
        ("POST", "/api/leads", {"json": {"phone": "1", "criteria": {"colour": "red"}}}),
        ("POST", "/api/leads", {"json": {"name": "no way to reach"}}),
        ("POST", "/api/leads", {"json": {"phone": "1", "surprise": True}}),
        ("POST", "/api/leads", {"json": {"phone": "1", "email": "not-an-email"}}),
        ("GET", "/api/nowhere", {}),
        # numbers that only look like one, or that no database key can hold (found by the fuzz test)
        ("GET", "/api/decisions?limit=²", {}),
        ("GET", "/api/decisions?limit=" + "9" * 5000, {}),
        ("DELETE", "/api/crm/vacations/999999999999999999999999999999", {}),
        ("DELETE", "/api/crm/vacations/²", {}),
        ("GET", "/api/decisions?since=nan", {}),
        ("GET", "/api/contacts?since=inf", {}),
    ]
    for method, path, kw in cases:
        status, body = await running.call(method, path, running.admin, **kw)
        assert 400 <= status < 500, (path, kw, status, body)
        assert body["error"]["message"], body
    status, body = await running.call("GET", "/api/decisions?limit=abc", running.admin)
    assert status == 400
    status, body = await running.call("POST", "/api/managers/anna/presence", running.admin, json={"state": "asleep"})
    assert status == 400 and "state" in body["error"]["message"]


async def test_text_with_a_nul_character_is_refused_and_routing_goes_on(running: Running) -> None:
    """PostgreSQL's text cannot hold NUL. CI's fuzz sent one in a manager's device: the
    dispatcher retried PostgreSQL's refusal as an outage, and every manager request after
    it waited for ever. Now it is a 400 before anything reaches the routing core."""
    cases = [
        ("POST", "/api/managers", {"id": "nul", "device": "\x92\x00\xf3"}),
        ("PATCH", "/api/managers/anna", {"name": "Anna\x00"}),
        ("POST", "/api/managers/anna/presence", {"state": "paused", "reason": "lunch\x00"}),
        ("POST", "/api/leads", {**LEAD, "note": "call me\x00"}),
        ("POST", "/api/leads", {**LEAD, "criteria": {"temperature\x00": "hot"}}),
    ]
    for method, path, body in cases:
        status, answer = await asyncio.wait_for(running.call(method, path, running.admin, json=body), 10)
        assert status == 400 and "NUL" in answer["error"]["message"], (method, path, status, answer)
    status, _ = await running.call("GET", "/api/managers/nul", running.admin)
    assert status == 404
    # the path and the query reach only look-ups: an answer, never the 503 that says "retry"
    for path in ("/api/contacts/%00", "/api/managers/%00", "/api/decisions?contact_id=%00"):
        status, answer = await asyncio.wait_for(running.call("GET", path, running.admin), 10)
        assert status < 500, (path, status, answer)
    status, answer = await asyncio.wait_for(
        running.call("POST", "/api/managers/anna/presence", running.admin, json={"state": "paused", "reason": "lunch"}),
        10,
    )
    assert status == 200, answer


async def test_the_queue_snapshot_lists_waiting_contacts_in_order(running: Running) -> None:
    for mid in ("anna", "boris", "vera", "grigory", "daria", "egor"):
        await running.call(
            "POST", f"/api/managers/{mid}/presence", running.supervisor, json={"state": "paused", "reason": "meeting"}
        )
    ids = []
    for _ in range(3):
        _, lead = await running.call("POST", "/api/leads", json=LEAD)
        ids.append(lead["id"])
    await running.settle()
    _, snap = await running.call("GET", "/api/queue", running.supervisor)
    assert [c["id"] for c in snap["waiting"]] == ids
    assert all(m["presence"] == "paused" for m in snap["managers"])


async def test_metrics_are_exposed_for_prometheus(running: Running) -> None:
    await running.call("POST", "/api/leads", json=LEAD)
    await running.settle()
    status, text = await running.call("GET", "/metrics")
    assert status == 200
    for name in (
        "acd_contacts_waiting",
        "acd_longest_wait_seconds",
        "acd_managers",
        "acd_offers_total",
        "acd_intake_latency_seconds",
    ):
        assert name in text


async def test_public_lead_intake_is_rate_limited_per_client(backend) -> None:
    from api_fixtures import example_deployment, start, stop

    r = await start(backend, example_deployment(leads_per_minute=3))
    try:
        statuses = [(await r.call("POST", "/api/leads", json=LEAD))[0] for _ in range(5)]
        assert statuses[:3] == [201, 201, 201] and statuses[3:] == [429, 429]
    finally:
        await stop(r)


async def test_a_config_reload_keeps_every_waiting_contact(running: Running) -> None:
    for mid in ("anna", "boris", "vera", "grigory", "daria", "egor"):
        await running.call(
            "POST", f"/api/managers/{mid}/presence", running.supervisor, json={"state": "paused", "reason": "x"}
        )
    ids = [(await running.call("POST", "/api/leads", json=LEAD))[1]["id"] for _ in range(3)]
    await running.settle()
    status, body = await running.call("POST", "/api/config/reload", running.admin)
    assert status == 200 and body["policy_version"] == running.server.deployment.policy.version
    _, snap = await running.call("GET", "/api/queue", running.supervisor)
    assert [c["id"] for c in snap["waiting"]] == ids
    status, _ = await running.call("POST", "/api/config/reload", running.supervisor)
    assert status == 403


async def test_a_reload_of_a_broken_file_names_its_problems_and_keeps_the_running_rules(
    backend: Backend, tmp_path: Path
) -> None:
    from api_fixtures import EXAMPLE, ROOT, start, stop

    text = EXAMPLE.read_text(encoding="utf-8").replace("flows_dir: ../ivr_flows", f"flows_dir: {ROOT / 'ivr_flows'}")
    path = tmp_path / "acd.yaml"
    path.write_text(text, encoding="utf-8")
    r = await start(backend, load_deployment(path, environ={}))
    try:
        running_version = r.server.deployment.policy.version
        path.write_text(text.replace("{offer_timeout: 20s,", "{offer_timeout: -5s,", 1), encoding="utf-8")
        status, body = await r.call("POST", "/api/config/reload", r.admin)
        assert status == 422 and body["error"]["code"] == "invalid_config"
        assert "offer_timeout" in body["error"]["message"] and "acd.yaml" in body["error"]["message"]
        assert r.server.services.deployment.policy.version == running_version
        path.write_text(text, encoding="utf-8")
        status, body = await r.call("POST", "/api/config/reload", r.admin)
        assert status == 200 and body["policy_version"] == running_version
    finally:
        await stop(r)


async def test_the_shadow_policy_agreement_is_reported_to_the_supervisor(running: Running) -> None:
    for _ in range(4):
        await running.call("POST", "/api/leads", json=LEAD)
    await running.settle()
    status, report = await running.call("GET", "/api/shadow", running.supervisor)
    assert status == 200
    assert report["shadow"]["strategy"] == "leastrecent"
    assert report["compared"] == report["decisions"] >= 3  # the sales team holds three offers at once
    assert report["agreed"] + sum(d["count"] for d in report["differences"]) == report["compared"]
    _, log = await running.call("GET", "/api/decisions", running.supervisor)
    assert all(d["shadow"]["strategy"] == "leastrecent" for d in log["decisions"] if d["kind"] == "offer")


async def test_a_patch_that_nulls_a_required_field_is_refused_and_routing_goes_on(running: Running) -> None:
    status, body = await running.call("PATCH", "/api/managers/anna", running.admin, json={"skills": None})
    assert status == 400 and "skills" in body["error"]["message"]
    status, lead = await running.call("POST", "/api/leads", json=LEAD)
    assert status == 201
    await running.settle()
    _, seen = await running.call("GET", f"/api/contacts/{lead['id']}", running.supervisor)
    assert seen["status"] == "offered"


async def test_numbers_beyond_what_the_database_holds_are_refused_not_a_500(running: Running) -> None:
    """Found by the API fuzzer: an `order` of 10^25 reached SQLite's 64-bit integer column."""
    for field, value in (("order", 10**25), ("daily_cap", 10**25), ("capacity", {"web": 10**25})):
        body = {"id": f"big-{field}", "name": "Big", field: value}
        status, error = await running.call("POST", "/api/managers", running.admin, json=body)
        assert status == 400 and field in error["error"]["message"], (field, status, error)
    status, error = await running.call("PATCH", "/api/managers/anna", running.admin, json={"order": -(10**25)})
    assert status == 400, error
