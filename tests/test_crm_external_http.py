"""The generic HTTP adapter for an office's own CRM (`acd.crm.external.http`).

No real CRM can be reached from here: the office's CRM is a local stand-in (an aiohttp server
on 127.0.0.1, port 0, started by each test) that follows the contract documented in
`acd/crm/external/http.py` — the look-up answer, and a webhook that checks the HMAC-SHA256
signature itself (not with our helper), keeps the first delivery of each Idempotency-Key and
can be told to fail: answer 500, drop the connection before or after taking the contact.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from api_fixtures import EXAMPLE, start, stop
from crm_external_fixtures import Clock, attach, call, finished, next_of, stand_in, wired, with_external, write_config
from storage_fixtures import Backend

from acd.api.crm_sync import CRM_SYNC
from acd.config import ConfigError, load_deployment
from acd.config.crm_external import ExternalCrmSettings
from acd.core.model import Outcome
from acd.crm.external import ExternalSync, build_adapter
from acd.crm.external.base import idempotency_key
from acd.crm.external.sync import LOOKUP_PAUSE
from acd.storage.crm_sync import SyncStore

SECRET = "webhook-secret-42"


@dataclass
class OfficeCrm:
    """The stand-in. `customers` maps an E.164 phone or an e-mail to the look-up answer;
    `script` says what each push attempt meets: "ok", "500", "drop" (connection closed before
    the contact is taken) or "drop-after" (taken, but the answer is lost)."""

    customers: dict[str, Any] = field(default_factory=dict)
    lookup_status: int | None = None
    lookup_hold: asyncio.Event | None = None
    script: list[str] = field(default_factory=list)
    attempts: asyncio.Queue[tuple[str, str, bool]] = field(default_factory=asyncio.Queue)
    delivered: dict[str, Any] = field(default_factory=dict)
    lookups: list[dict[str, str]] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/lookup", self.lookup)
        app.router.add_post("/contacts", self.push)
        return app

    async def lookup(self, request: web.Request) -> web.Response:
        self.lookups.append(dict(request.query))
        if self.lookup_hold is not None:
            await self.lookup_hold.wait()
        if self.lookup_status is not None:
            return web.json_response({"error": "internal"}, status=self.lookup_status)
        found = self.customers.get(request.query.get("phone", "")) or self.customers.get(request.query.get("email", ""))
        return web.json_response(found or {"customer": None})

    async def push(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        key = request.headers.get("Idempotency-Key", "")
        stamp = request.headers.get("X-ACD-Timestamp", "")
        expected = "sha256=" + hmac.new(SECRET.encode(), stamp.encode() + b"." + raw, hashlib.sha256).hexdigest()
        signed = hmac.compare_digest(expected, request.headers.get("X-ACD-Signature", "")) and (
            abs(time.time() - float(stamp or 0)) < 300
        )
        step = self.script.pop(0) if self.script else "ok"
        await self.attempts.put((key, step, signed))
        if not signed:
            return web.json_response({"error": "bad signature"}, status=401)
        if step == "500":
            return web.json_response({"error": "try later"}, status=500)
        if step == "drop":
            assert request.transport is not None
            request.transport.close()
            return web.Response()
        first = key not in self.delivered
        if first:
            self.delivered[key] = json.loads(raw)
        if step == "drop-after":
            assert request.transport is not None
            request.transport.close()
            return web.Response()
        return web.json_response({"id": f"act-{list(self.delivered).index(key) + 1}", "duplicate": not first})


REPEAT = {
    "customer": {"id": "C-1", "name": "ООО Ромашка", "responsible": "u-vera"},
    "deal": {"id": "D-7", "stage": "proposal", "responsible": "u-boris", "amount": 250000},
}


def settings(base: str, **changes: Any) -> ExternalCrmSettings:
    s = ExternalCrmSettings(
        kind="http",
        lookup_url=f"{base}/lookup",
        push_url=f"{base}/contacts",
        secret=SECRET,
        timeout=2.0,
        backoff=0.5,
        max_backoff=4.0,
        attempts=10,
        users={"u-boris": "boris", "u-vera": "vera", "u-egor": "egor"},
        stages={"proposal": "approval", "shipping": "delivery"},
    )
    return replace(s, **changes)


@pytest.fixture
async def office() -> AsyncIterator[tuple[OfficeCrm, str]]:
    crm = OfficeCrm()
    async with stand_in(crm.app()) as server:
        yield crm, str(server.make_url("")).rstrip("/")
    if crm.lookup_hold is not None:
        crm.lookup_hold.set()


# ---- look-ups and routing -----------------------------------------------------------------


async def test_a_caller_only_the_office_crm_knows_reaches_the_deal_s_manager_and_the_call_is_pushed_back(
    backend: Backend, office: tuple[OfficeCrm, str]
) -> None:
    crm, base = office
    crm.customers["+79161234567"] = REPEAT
    running = await start(backend, with_external(settings(base)))
    try:
        status, lead = await running.call(
            "POST", "/api/leads", json={"name": "Иван", "phone": "8 (916) 123-45-67", "criteria": {}}
        )
        assert status in (200, 201), lead
        await running.settle()
        _, contact = await running.call("GET", f"/api/contacts/{lead['id']}", running.supervisor)
        assert contact["offered_to"] == "boris"  # the deal's responsible, through users:
        assert crm.lookups == [{"phone": "+79161234567"}]

        boris = await running.manager_token("boris")
        assert (await running.call("POST", f"/api/contacts/{lead['id']}/accept", boris))[0] == 200
        done = await running.call("POST", f"/api/contacts/{lead['id']}/finish", boris, json={"outcome": "won"})
        assert done[0] == 200, done
        key, step, signed = await next_of(crm.attempts)
    finally:
        await stop(running)
    assert (key, step, signed) == (idempotency_key(lead["id"]), "ok", True)
    body = crm.delivered[key]
    assert body["outcome"] == "won"
    assert body["manager"] == {"id": "boris", "external_id": "u-boris"}
    assert body["external"] == {"customer": "C-1", "deal": "D-7"}
    assert body["customer"]["phone"] == "+79161234567"


@pytest.mark.parametrize("caller", ["+7 916 123-45-67", "8 (916) 123-45-67", "89161234567", "79161234567"])
async def test_the_caller_id_is_looked_up_in_e164_whatever_its_format(
    backend: Backend, office: tuple[OfficeCrm, str], caller: str
) -> None:
    crm, base = office
    crm.customers["+79161234567"] = REPEAT
    async with wired(backend, with_external(settings(base))) as (ours, _, _):
        routed = await ours.enrich(call("c-1", phone=caller))
    assert routed.preferred == ("boris",)
    assert routed.team == "sales"  # the owner team of approval, where "proposal" maps
    assert routed.first_wait == 60.0  # approval's wait for its person
    assert routed.payload["routed_by"] == "external"
    assert routed.payload["external"]["deal"] == "D-7"


async def test_a_deal_in_a_team_stage_goes_to_the_stage_s_owner_team(
    backend: Backend, office: tuple[OfficeCrm, str]
) -> None:
    crm, base = office
    crm.customers["+79161234567"] = {**REPEAT, "deal": {**REPEAT["deal"], "stage": "shipping"}}
    async with wired(backend, with_external(settings(base))) as (ours, _, _):
        routed = await ours.enrich(call("c-1", phone="+7 916 123 45 67"))
    assert routed.preferred == ()
    assert routed.team == "logistics"  # delivery: route_to team


async def test_without_an_open_deal_the_customer_s_responsible_is_preferred(
    backend: Backend, office: tuple[OfficeCrm, str]
) -> None:
    crm, base = office
    crm.customers["ivan@example.com"] = {"customer": REPEAT["customer"], "deal": None}
    async with wired(backend, with_external(settings(base))) as (ours, _, _):
        routed = await ours.enrich(call("c-1", email="Ivan@Example.com"))
    assert routed.preferred == ("vera",)


async def test_a_responsible_user_who_left_is_passed_over(backend: Backend, office: tuple[OfficeCrm, str]) -> None:
    crm, base = office
    crm.customers["ivan@example.com"] = {"customer": REPEAT["customer"], "deal": None}
    deployment = with_external(settings(base))
    gone = [replace(m, active=False) if m.id == "vera" else m for m in deployment.managers]
    async with wired(backend, replace(deployment, managers=tuple(gone))) as (ours, _, _):
        routed = await ours.enrich(call("c-1", email="Ivan@Example.com"))
    assert routed.payload["external"]["responsible"] == "u-vera"  # the office's CRM was asked
    assert routed.preferred == ()  # not to vera, who no longer takes contacts


async def test_a_slow_crm_costs_a_contact_at_most_the_timeout_and_it_is_routed_anyway(
    backend: Backend, office: tuple[OfficeCrm, str], caplog: pytest.LogCaptureFixture
) -> None:
    crm, base = office
    crm.customers["+79161234567"] = REPEAT
    crm.lookup_hold = asyncio.Event()  # never answers while the test runs
    async with wired(backend, with_external(settings(base, timeout=0.3))) as (ours, _, _):
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, "acd.crm.external"):
            routed = await ours.enrich(call("c-1", phone="+79161234567"))
        took = time.monotonic() - started
    assert took < 2.0
    assert routed.customer_id is not None and routed.preferred == ()
    assert routed.payload["crm"] == "new customer"
    assert "routing without it" in caplog.text


async def test_a_crm_answering_500_does_not_stop_routing_and_is_left_alone_for_a_while(
    backend: Backend, office: tuple[OfficeCrm, str]
) -> None:
    crm, base = office
    crm.lookup_status = 500
    crm.customers["+79161234567"] = REPEAT
    clock = Clock()
    async with wired(backend, with_external(settings(base, cache=0.001)), clock=clock) as (ours, _, _):
        routed = await ours.enrich(call("c-1", phone="+79161234567"))
        crm.lookup_status = None  # back, but not asked again at once
        meanwhile = await ours.enrich(call("c-2", phone="+79161234567"))
        clock.now += LOOKUP_PAUSE
        later = await ours.enrich(call("c-3", phone="+79161234567"))
    assert routed.customer_id is not None and routed.preferred == ()
    assert meanwhile.preferred == () and later.preferred == ("boris",)
    assert len(crm.lookups) == 2


async def test_a_customer_our_crm_routes_itself_is_looked_up_only_when_configured_always(
    backend: Backend, office: tuple[OfficeCrm, str]
) -> None:
    crm, base = office
    crm.customers["+79161234567"] = crm.customers["+79161234999"] = REPEAT
    async with wired(backend, with_external(settings(base, cache=0.001))) as (ours, _, store):
        first = await ours.enrich(call("c-1", phone="+79161234567"))  # a stranger to us
        again = await ours.enrich(call("c-2", phone="+79161234567"))  # ours now, but nobody to route to
        await ours.create_customer("ООО Ромашка", phones=["+79161234999"], account_manager="anna")
        own = await ours.enrich(call("c-3", phone="+79161234999"))
        assert len(crm.lookups) == 2
        always, sync = attach(store, with_external(settings(base, lookup="always")))
        both = await always.enrich(call("c-4", phone="+79161234999"))
        await sync.stop()
    assert len(crm.lookups) == 3
    assert first.preferred == again.preferred == ("boris",)
    assert own.preferred == ("anna",) and own.payload["routed_by"] == "repeat"
    assert both.preferred == ("boris", "anna")  # the office's CRM first, then ours


async def test_answers_are_kept_for_the_cache_time(backend: Backend, office: tuple[OfficeCrm, str]) -> None:
    crm, base = office
    async with wired(backend, with_external(settings(base))) as (ours, _, _):
        for n in range(3):
            await ours.enrich(call(f"c-{n}", phone="+79161234567"))  # a stranger everywhere
    assert len(crm.lookups) == 1


# ---- pushes -------------------------------------------------------------------------------


async def test_a_push_is_retried_after_500s_and_dropped_connections_and_delivered_once_with_one_key(
    backend: Backend, office: tuple[OfficeCrm, str]
) -> None:
    crm, base = office
    crm.script = ["500", "500", "drop", "drop-after", "ok"]
    clock = Clock()
    async with wired(backend, with_external(settings(base)), clock=clock) as (_, sync, store):
        contact = finished(call("c-1", phone="+79161234567"), "boris", Outcome.WON)
        assert await sync.finished([contact]) == 1
        sent = 0
        for _ in range(5):
            sent += await sync.send_due()
            assert await sync.send_due() == 0  # nothing is due again before its back-off
            clock.now += 10
        outbox = SyncStore(store)
        row = await outbox.get(idempotency_key("c-1"))
        assert await sync.finished([contact]) == 0  # asking again changes nothing
        clock.now += 3600
        assert await sync.send_due() == 0
    keys = [(await next_of(crm.attempts))[:2] for _ in range(5)]
    assert keys == [(idempotency_key("c-1"), step) for step in ("500", "500", "drop", "drop-after", "ok")]
    assert crm.attempts.empty()
    assert list(crm.delivered) == [idempotency_key("c-1")]  # the retry after "drop-after" was the same key
    assert sent == 1
    assert row is not None and (row.status, row.attempts, row.external_id) == ("sent", 5, "act-1")


async def test_two_workers_on_one_database_send_a_contact_once(backend: Backend, office: tuple[OfficeCrm, str]) -> None:
    crm, base = office
    deployment = with_external(settings(base))
    async with wired(backend, deployment) as (_, one, store):
        _, two = attach(store, deployment)
        await one.finished([finished(call("c-1", phone="+79161234567"), "boris")])
        sent = await asyncio.gather(one.send_due(), two.send_due())
        await two.stop()
    assert sorted(sent) == [0, 1]
    assert crm.attempts.qsize() == 1


async def test_the_outbox_survives_a_restart_and_a_stop_mid_send(
    backend: Backend, office: tuple[OfficeCrm, str]
) -> None:
    crm, base = office
    crm.script = ["500"]
    deployment = with_external(settings(base, backoff=0.05, max_backoff=0.05))
    store = await backend.open()
    _, sync = attach(store, deployment)
    await sync.finished([finished(call("c-1", phone="+79161234567"), "boris")])
    await sync.finished([finished(call("c-2", phone="+79161234568"), "vera")])
    await sync.send_due()  # c-1 meets the 500, c-2 goes through
    outbox = SyncStore(store)
    first = await outbox.get(idempotency_key("c-1"))
    assert first is not None and first.status == "pending"
    first.status = "sending"  # the server stops while c-1's retry is on the wire
    await outbox.update(first)
    await sync.adapter.close()
    await store.close()

    store = await backend.open()  # restart
    _, sync = attach(store, deployment)
    await sync.start()
    try:
        heard = [await next_of(crm.attempts) for _ in range(3)]
        await sync.send_due()  # waits for the worker's round in flight to record what it heard
    finally:
        await sync.stop()
        row = await SyncStore(store).get(idempotency_key("c-1"))
        await store.close()
    assert [h[0] for h in heard] == [idempotency_key(c) for c in ("c-1", "c-2", "c-1")]
    assert sorted(crm.delivered) == sorted(idempotency_key(c) for c in ("c-1", "c-2"))
    assert row is not None and row.status == "sent"


async def test_a_contact_finished_just_before_a_crash_is_found_at_start(
    backend: Backend, office: tuple[OfficeCrm, str]
) -> None:
    crm, base = office
    deployment = with_external(settings(base))
    store = await backend.open()
    _, sync = attach(store, deployment)
    await sync.finished([finished(call("c-1", phone="+79161234567"), "boris")])
    lost = finished(call("c-2", phone="+79161234568"), "vera")
    lost.finished_at = time.time()
    await store.apply([lost], [], [], [])  # committed, but the process died before its outbox row
    await sync.adapter.close()
    await store.close()

    store = await backend.open()
    _, sync = attach(store, deployment)
    await sync.start()
    try:
        heard = {(await next_of(crm.attempts))[0] for _ in range(2)}
    finally:
        await sync.stop()
        await store.close()
    assert heard == {idempotency_key("c-1"), idempotency_key("c-2")}


async def test_a_push_the_crm_refuses_is_given_up_not_retried(backend: Backend, office: tuple[OfficeCrm, str]) -> None:
    crm, base = office
    clock = Clock()
    async with wired(backend, with_external(settings(base, secret="not-the-shared-secret")), clock=clock) as (
        _,
        sync,
        store,
    ):
        await sync.finished([finished(call("c-1", phone="+79161234567"), "boris")])
        await sync.send_due()
        clock.now += 3600
        await sync.send_due()
        row = await SyncStore(store).get(idempotency_key("c-1"))
    assert (await next_of(crm.attempts))[2] is False
    assert crm.attempts.empty()
    assert row is not None and row.status == "failed" and "401" in (row.last_error or "")


async def test_a_contact_finished_while_the_crm_is_down_is_delivered_after_a_server_restart(
    backend: Backend, office: tuple[OfficeCrm, str]
) -> None:
    crm, base = office
    crm.script = ["500"]
    deployment = with_external(settings(base, backoff=3600.0, max_backoff=3600.0))
    running = await start(backend, deployment)
    try:
        _, lead = await running.call("POST", "/api/leads", json={"name": "Пётр", "phone": "+7 903 111-22-33"})
        await running.settle()
        _, contact = await running.call("GET", f"/api/contacts/{lead['id']}", running.supervisor)
        token = await running.manager_token(contact["offered_to"])
        await running.call("POST", f"/api/contacts/{lead['id']}/accept", token)
        await running.call("POST", f"/api/contacts/{lead['id']}/finish", token, json={"outcome": "done"})
        assert (await next_of(crm.attempts))[1] == "500"
    finally:
        await stop(running)
    store = await backend.open()
    row = await SyncStore(store).get(idempotency_key(lead["id"]))
    assert row is not None and row.status in ("pending", "sending") and row.attempts == 1
    row.status, row.next_at = "pending", time.time()  # the back-off ran out while the server was down
    await SyncStore(store).update(row)
    await store.close()

    running = await start(backend, deployment)
    try:
        key, step, signed = await next_of(crm.attempts)
    finally:
        await stop(running)
    assert (key, step, signed) == (idempotency_key(lead["id"]), "ok", True)
    assert list(crm.delivered) == [key]


async def test_a_supervisor_sees_the_write_backs_and_an_admin_retries_one_given_up(
    backend: Backend, office: tuple[OfficeCrm, str]
) -> None:
    crm, base = office
    running = await start(backend, with_external(settings(base, secret="a-mistyped-secret")))
    try:
        _, lead = await running.call("POST", "/api/leads", json={"name": "Пётр", "phone": "+7 903 111-22-33"})
        await running.settle()
        _, contact = await running.call("GET", f"/api/contacts/{lead['id']}", running.supervisor)
        token = await running.manager_token(contact["offered_to"])
        await running.call("POST", f"/api/contacts/{lead['id']}/accept", token)
        await running.call("POST", f"/api/contacts/{lead['id']}/finish", token, json={"outcome": "done"})
        assert (await next_of(crm.attempts))[2] is False  # 401: refused, given up
        await running.server.app[CRM_SYNC].send_due()  # waits for the worker's round to record the refusal
        status, failed = await running.call("GET", "/api/crm/sync?status=failed", running.supervisor)
        assert status == 200 and failed["items"][0]["contact_id"] == lead["id"]
        assert "401" in failed["items"][0]["last_error"]

        assert (await running.call("POST", f"/api/crm/sync/{lead['id']}/retry", running.supervisor))[0] == 403
        running.server.services.deployment = with_external(settings(base))  # the secret fixed, then reloaded
        status, again = await running.call("POST", f"/api/crm/sync/{lead['id']}/retry", running.admin)
        assert status == 200 and again["status"] == "pending" and again["attempts"] == 0
        key, _, signed = await next_of(crm.attempts)
        assert (await running.call("POST", "/api/crm/sync/nobody/retry", running.admin))[0] == 404
    finally:
        await stop(running)
    assert (key, signed) == (idempotency_key(lead["id"]), True)
    assert list(crm.delivered) == [key]


async def test_a_reload_s_new_secret_reaches_the_adapter(backend: Backend, office: tuple[OfficeCrm, str]) -> None:
    crm, base = office
    current = [settings(base, secret="before-the-reload")]
    async with wired(backend, with_external(current[0])) as (_, _, store):
        sync = ExternalSync(build_adapter(current[0]), store, lambda: current[0], lambda: "RU")
        await sync.finished([finished(call("c-1", phone="+79161234567"), "boris")])
        current[0] = settings(base)  # the shared secret, from the environment at the reload
        assert await sync.send_due() == 1
        await sync.stop()
    assert (await next_of(crm.attempts))[2] is True


# ---- configuration ------------------------------------------------------------------------


def test_a_complete_http_section_loads_with_its_secret_from_the_environment(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        {
            "kind": "http",
            "lookup_url": "https://crm.example.com/acd/lookup",
            "push_url": "https://crm.example.com/acd/contacts",
            "secret_env": "ACD_CRM_SECRET",
            "timeout": 0.8,
            "users": {17: "anna"},
            "stages": {"proposal": "approval"},
        },
    )
    d = load_deployment(path, environ={"ACD_CRM_SECRET": "s"})
    assert d.crm_external is not None
    assert (d.crm_external.secret, d.crm_external.timeout, dict(d.crm_external.users)) == ("s", 0.8, {"17": "anna"})
    assert "secret=" not in repr(d.crm_external)


def test_mistakes_in_the_section_are_named_by_file_and_key(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        {
            "kind": "http",
            "push_url": "ftp://crm.example.com/contacts",
            "secret_env": "ACD_CRM_SECRET",
            "users": {"17": "nobody"},
            "stages": {"proposal": "nowhere"},
        },
    )
    with pytest.raises(ConfigError) as err:
        load_deployment(path, environ={})
    assert len(err.value.problems) == 1
    assert err.value.problems[0].startswith(f"{path}: crm.external.push_url: must match pattern")

    path = write_config(
        tmp_path,
        {"kind": "http", "secret_env": "ACD_CRM_SECRET", "users": {"17": "nobody"}, "stages": {"x": "nowhere"}},
    )
    with pytest.raises(ConfigError) as err:
        load_deployment(path, environ={})
    problems = "\n".join(err.value.problems)
    assert f"{path}: crm.external.lookup_url: required for kind http" in problems
    assert f"{path}: crm.external.push_url: required for kind http" in problems
    assert f"{path}: crm.external.secret_env: the environment variable ACD_CRM_SECRET is not set" in problems
    assert f"{path}: crm.external.users.17: no manager 'nobody' in managers" in problems
    assert f"{path}: crm.external.stages.x: no funnel stage 'nowhere'" in problems


def test_the_example_deployment_stays_valid() -> None:
    assert load_deployment(EXAMPLE, environ={}).crm_external is None
