"""The Bitrix24 adapter (`acd.crm.external.bitrix24`).

A Bitrix24 portal cannot be reached from here: each test starts a local stand-in (an aiohttp
server on 127.0.0.1, port 0) that follows Bitrix24's documented REST requests and answers for
an inbound webhook — `POST /rest/<user>/<token>/<method>.json`, `{"result": ..., "time": {...}}`,
errors as `{"error": "...", "error_description": "..."}`, HTTP 503 `QUERY_LIMIT_EXCEEDED` when
asked to, `crm.duplicate.findbycomm` comparing phone digits as typed and answering `[]` for
no match, and `crm.activity.add` refusing an activity without COMMUNICATIONS.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from crm_external_fixtures import Clock, Wired, call, finished, stand_in, wired, with_external, write_config
from storage_fixtures import Backend

from acd.config import ConfigError, load_deployment
from acd.config.crm_external import ExternalCrmSettings
from acd.core.model import Channel, Outcome
from acd.crm.external.base import idempotency_key
from acd.crm.external.bitrix24 import Bitrix24Crm
from acd.storage.crm_sync import SyncStore

TOKEN = "b1x24t0ken"


class BadRequest(Exception):
    pass


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


@dataclass
class Portal:
    """The stand-in portal: its contacts, companies, deals, and what was written to it."""

    contacts: dict[int, dict[str, Any]] = field(default_factory=dict)
    companies: dict[int, dict[str, Any]] = field(default_factory=dict)
    deals: list[dict[str, Any]] = field(default_factory=list)
    activities: list[dict[str, Any]] = field(default_factory=list)
    leads: list[dict[str, Any]] = field(default_factory=list)
    comments: list[dict[str, Any]] = field(default_factory=list)
    calls: list[tuple[str, Any]] = field(default_factory=list)
    limited: int = 0  # the next N calls meet QUERY_LIMIT_EXCEEDED
    drop_after: set[str] = field(default_factory=set)  # methods whose next answer is lost after the write
    refuse: dict[str, str] = field(default_factory=dict)  # method -> error_description (error "")

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/rest/{user}/{token}/{method}.json", self.rest)
        return app

    async def rest(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != TOKEN:
            return web.json_response(
                {"error": "INVALID_CREDENTIALS", "error_description": "Invalid request credentials"}, status=401
            )
        method = request.match_info["method"]
        params = await request.json()
        self.calls.append((method, params))
        if self.limited:
            self.limited -= 1
            return web.json_response(
                {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"}, status=503
            )
        if method in self.refuse:
            return web.json_response({"error": "", "error_description": self.refuse.pop(method)}, status=400)
        handler = getattr(self, method.replace(".", "_"), None)
        if handler is None:
            return web.json_response({"error": "ERROR_METHOD_NOT_FOUND", "error_description": "Method not found!"}, 404)
        try:
            result = handler(params)
        except BadRequest as err:
            return web.json_response({"error": "", "error_description": str(err)}, status=400)
        if method in self.drop_after:
            self.drop_after.discard(method)
            assert request.transport is not None
            request.transport.close()
            return web.Response()
        now = time.time()
        return web.json_response(
            {"result": result, "time": {"start": now, "finish": now, "duration": 0.001, "processing": 0.0005}}
        )

    # ---- the methods ------------------------------------------------------------------

    def crm_duplicate_findbycomm(self, p: dict[str, Any]) -> Any:
        kind, values = p["type"], p["values"]
        if kind not in ("PHONE", "EMAIL") or not isinstance(values, list) or len(values) > 20:
            raise BadRequest("Parameter 'type' or 'values' is invalid")
        wanted = {_digits(v) if kind == "PHONE" else v.lower() for v in values}
        found: dict[str, list[int]] = {}
        for entity, rows in (("CONTACT", self.contacts), ("COMPANY", self.companies)):
            if p.get("entity_type", entity) != entity:
                continue
            for n, row in rows.items():
                have = {_digits(v["VALUE"]) if kind == "PHONE" else v["VALUE"].lower() for v in row.get(kind, [])}
                if have & wanted:
                    found.setdefault(entity, []).append(n)
        return found or []  # PHP's empty array: a list, not an object

    def crm_deal_list(self, p: dict[str, Any]) -> list[dict[str, Any]]:
        f = p.get("filter", {})
        rows = [d for d in self.deals if all(str(d.get(k)) == str(v) for k, v in f.items())]
        rows.sort(key=lambda d: d["DATE_MODIFY"], reverse=True)
        return [{k: str(d[k]) for k in p.get("select", d) if k in d} for d in rows]

    def _get(self, rows: dict[int, dict[str, Any]], p: dict[str, Any]) -> dict[str, Any]:
        n = int(p["id"])
        if n not in rows:
            raise BadRequest("Not found")
        return {"ID": str(n), **rows[n]}

    def crm_contact_get(self, p: dict[str, Any]) -> dict[str, Any]:
        return self._get(self.contacts, p)

    def crm_company_get(self, p: dict[str, Any]) -> dict[str, Any]:
        return self._get(self.companies, p)

    def _add(self, rows: list[dict[str, Any]], p: dict[str, Any]) -> int:
        rows.append({"ID": str(len(rows) + 1), **p["fields"]})
        return len(rows)

    def _by_origin(self, rows: list[dict[str, Any]], p: dict[str, Any]) -> list[dict[str, str]]:
        return [{"ID": r["ID"]} for r in rows if r.get("ORIGIN_ID") == p["filter"]["ORIGIN_ID"]]

    def crm_activity_add(self, p: dict[str, Any]) -> int:
        fields = p["fields"]
        for name in ("OWNER_TYPE_ID", "OWNER_ID", "TYPE_ID", "COMMUNICATIONS"):
            if not fields.get(name):
                raise BadRequest(f"The field {name} is not defined or invalid.")
        return self._add(self.activities, p)

    def crm_activity_list(self, p: dict[str, Any]) -> list[dict[str, str]]:
        return self._by_origin(self.activities, p)

    def crm_lead_add(self, p: dict[str, Any]) -> int:
        return self._add(self.leads, p)

    def crm_lead_list(self, p: dict[str, Any]) -> list[dict[str, str]]:
        return self._by_origin(self.leads, p)

    def crm_timeline_comment_add(self, p: dict[str, Any]) -> int:
        return self._add(self.comments, p)


def ivan(portal: Portal) -> None:
    """A person typed in as people type numbers, with an open deal in the first stage."""
    portal.contacts[12] = {
        "NAME": "Иван",
        "LAST_NAME": "Петров",
        "PHONE": [{"VALUE": "8 (916) 123-45-67", "VALUE_TYPE": "WORK"}],
        "ASSIGNED_BY_ID": "9",
    }
    portal.deals.append(
        {
            "ID": 45,
            "CONTACT_ID": 12,
            "CLOSED": "N",
            "STAGE_ID": "C1:NEW",
            "ASSIGNED_BY_ID": 7,
            "OPPORTUNITY": "150000.00",
        }
    )
    portal.deals.append({"ID": 40, "CONTACT_ID": 12, "CLOSED": "Y", "STAGE_ID": "C1:WON", "ASSIGNED_BY_ID": 3})
    for d in portal.deals:
        d.setdefault("DATE_MODIFY", f"2026-11-{d['ID'] % 28 + 1:02d}T10:00:00+03:00")


@dataclass
class Setup:
    portal: Portal
    url: str
    waits: list[float] = field(default_factory=list)
    clock: Clock = field(default_factory=Clock)

    def settings(self, **changes: Any) -> ExternalCrmSettings:
        s = ExternalCrmSettings(
            kind="bitrix24",
            url=self.url,
            timeout=5.0,
            backoff=0.5,
            max_backoff=2.0,
            users={"7": "anna", "9": "boris", "11": "egor"},
            stages={"C1:NEW": "qualification", "C1:EXECUTING": "delivery"},
        )
        return replace(s, **changes)

    def adapter(self, settings: ExternalCrmSettings) -> Bitrix24Crm:
        async def sleep(seconds: float) -> None:
            self.waits.append(seconds)  # QUERY_LIMIT_EXCEEDED's wait, recorded instead of slept

        return Bitrix24Crm(settings, sleep=sleep)

    def wired(self, backend: Backend, **changes: Any) -> AbstractAsyncContextManager[Wired]:
        s = self.settings(**changes)
        return wired(backend, with_external(s), self.adapter(s), self.clock)


@pytest.fixture
async def b24() -> AsyncIterator[Setup]:
    portal = Portal()
    async with stand_in(portal.app()) as server:
        yield Setup(portal, str(server.make_url(f"/rest/1/{TOKEN}/")))


# ---- look-ups -----------------------------------------------------------------------------


async def test_a_caller_typed_into_bitrix24_another_way_reaches_the_open_deal_s_responsible(
    backend: Backend, b24: Setup
) -> None:
    ivan(b24.portal)
    async with b24.wired(backend) as (ours, _, _):
        routed = await ours.enrich(call("c-1", phone="+7 916 123 45 67"))
    assert routed.preferred == ("anna",)  # the deal's ASSIGNED_BY_ID 7, through users
    assert routed.team == "sales"  # C1:NEW is our qualification
    assert routed.first_wait == 30.0
    assert routed.payload["external"]["customer"] == "CONTACT:12"
    assert routed.payload["external"]["deal"] == "45"
    method, params = b24.portal.calls[0]
    assert method == "crm.duplicate.findbycomm"
    assert params["entity_type"] == "CONTACT" and params["type"] == "PHONE"
    assert {"+79161234567", "79161234567", "89161234567"} <= set(params["values"])
    deal_list = next(p for m, p in b24.portal.calls if m == "crm.deal.list")
    assert deal_list["filter"] == {"CONTACT_ID": 12, "CLOSED": "N"}
    assert set(deal_list["select"]) >= {"ID", "STAGE_ID", "ASSIGNED_BY_ID", "OPPORTUNITY"}


async def test_a_company_s_deal_in_a_team_stage_goes_to_the_stage_s_owner_team(backend: Backend, b24: Setup) -> None:
    b24.portal.companies[5] = {"TITLE": "ООО Ромашка", "EMAIL": [{"VALUE": "Zakaz@Romashka.ru"}], "ASSIGNED_BY_ID": 9}
    b24.portal.deals.append(
        {"ID": 77, "COMPANY_ID": 5, "CLOSED": "N", "STAGE_ID": "C1:EXECUTING", "ASSIGNED_BY_ID": 11}
        | {"DATE_MODIFY": "2026-11-30T09:00:00+03:00", "OPPORTUNITY": "90000"}
    )
    async with b24.wired(backend) as (ours, _, _):
        routed = await ours.enrich(call("c-1", email="zakaz@romashka.ru", channel=Channel.EMAIL))
    assert routed.team == "logistics" and routed.preferred == ()  # delivery routes to its team at once
    assert routed.payload["external"]["customer"] == "COMPANY:5"
    assert [p["entity_type"] for m, p in b24.portal.calls if m == "crm.duplicate.findbycomm"] == ["CONTACT", "COMPANY"]


async def test_without_an_open_deal_the_contact_s_responsible_is_preferred(backend: Backend, b24: Setup) -> None:
    ivan(b24.portal)
    b24.portal.deals[0]["CLOSED"] = "Y"
    async with b24.wired(backend) as (ours, _, _):
        routed = await ours.enrich(call("c-1", phone="89161234567"))
    assert routed.preferred == ("boris",)  # the contact's ASSIGNED_BY_ID 9
    assert routed.customer_name == "Иван Петров"


async def test_query_limit_exceeded_is_retried_after_a_growing_wait(b24: Setup) -> None:
    ivan(b24.portal)
    b24.portal.limited = 3
    adapter = b24.adapter(b24.settings())
    try:
        match = await adapter.lookup("+79161234567", None)
    finally:
        await adapter.close()
    assert match is not None and match.deal == "45" and match.amount == 150000.0
    assert b24.waits == [0.5, 1.0, 2.0]


async def test_a_portal_that_stays_over_its_limit_leaves_the_contact_routed_without_it(
    backend: Backend, b24: Setup
) -> None:
    ivan(b24.portal)
    b24.portal.limited = 1000
    async with b24.wired(backend) as (ours, _, _):
        routed = await ours.enrich(call("c-1", phone="+79161234567"))
    assert routed.customer_id is not None and routed.preferred == ()


# ---- write-back ---------------------------------------------------------------------------


async def test_a_finished_call_becomes_a_completed_incoming_call_on_the_deal(backend: Backend, b24: Setup) -> None:
    ivan(b24.portal)
    async with b24.wired(backend) as (ours, sync, store):
        routed = await ours.enrich(call("c-1", phone="+79161234567"))
        await sync.finished([finished(routed, "anna", Outcome.WON)])
        assert await sync.send_due() == 1
        row = await SyncStore(store).get(idempotency_key("c-1"))
    [activity] = b24.portal.activities
    assert activity["OWNER_TYPE_ID"] == 2 and activity["OWNER_ID"] == 45  # on the deal
    assert (activity["TYPE_ID"], activity["DIRECTION"], activity["COMPLETED"]) == (2, 1, "Y")
    assert activity["RESPONSIBLE_ID"] == 7  # anna, mapped back
    assert activity["COMMUNICATIONS"] == [{"VALUE": "+79161234567", "ENTITY_ID": 12, "ENTITY_TYPE_ID": 3}]
    assert activity["ORIGIN_ID"] == idempotency_key("c-1")
    assert "won" in activity["DESCRIPTION"]
    assert row is not None and (row.status, row.external_id) == ("sent", "1")


async def test_an_answer_lost_after_bitrix24_took_the_activity_does_not_make_a_second_one(
    backend: Backend, b24: Setup
) -> None:
    ivan(b24.portal)
    b24.portal.drop_after.add("crm.activity.add")
    async with b24.wired(backend) as (ours, sync, store):
        routed = await ours.enrich(call("c-1", phone="+79161234567"))
        await sync.finished([finished(routed, "anna")])
        assert await sync.send_due() == 0  # the answer never came
        b24.clock.now += 60
        assert await sync.send_due() == 1
        row = await SyncStore(store).get(idempotency_key("c-1"))
    assert len(b24.portal.activities) == 1
    assert [m for m, _ in b24.portal.calls if m.startswith("crm.activity")] == [
        "crm.activity.list",
        "crm.activity.add",
        "crm.activity.list",  # found by ORIGIN_ID: not added again
    ]
    assert row is not None and (row.status, row.attempts, row.external_id) == ("sent", 2, "1")


async def test_a_customer_routing_did_not_look_up_is_found_when_the_call_is_written_back(
    backend: Backend, b24: Setup
) -> None:
    ivan(b24.portal)
    async with b24.wired(backend, lookup="off") as (ours, sync, _):
        routed = await ours.enrich(call("c-1", phone="8 916 123 45 67"))
        await sync.finished([finished(routed, "boris")])
        assert await sync.send_due() == 1
    assert "external" not in routed.payload
    [activity] = b24.portal.activities
    assert (activity["OWNER_TYPE_ID"], activity["OWNER_ID"]) == (3, 12)  # on the contact: no deal known
    assert not b24.portal.leads


async def test_a_new_customer_s_web_lead_becomes_a_bitrix24_lead(backend: Backend, b24: Setup) -> None:
    async with b24.wired(backend) as (ours, sync, _):
        lead = replace(call("c-9", phone="+7 903 555-01-02", channel=Channel.WEB), customer_name="Мария")
        routed = await ours.enrich(lead)
        await sync.finished([finished(routed, "boris")])
        assert await sync.send_due() == 1
    [made] = b24.portal.leads
    assert made["NAME"] == "Мария" and made["SOURCE_ID"] == "WEB"
    assert made["PHONE"] == [{"VALUE": "+79035550102", "VALUE_TYPE": "WORK"}]
    assert made["ASSIGNED_BY_ID"] == 9 and made["ORIGIN_ID"] == idempotency_key("c-9")
    assert not b24.portal.activities


async def test_with_write_back_comment_a_finished_contact_is_a_timeline_comment_on_the_deal(
    backend: Backend, b24: Setup
) -> None:
    ivan(b24.portal)
    async with b24.wired(backend, write_back="comment") as (ours, sync, _):
        routed = await ours.enrich(call("c-1", phone="+79161234567"))
        await sync.finished([finished(routed, "anna")])
        assert await sync.send_due() == 1
    [comment] = b24.portal.comments
    assert (comment["ENTITY_TYPE"], comment["ENTITY_ID"]) == ("deal", 45)


async def test_an_error_bitrix24_names_is_given_up_not_retried(backend: Backend, b24: Setup) -> None:
    ivan(b24.portal)
    b24.portal.refuse["crm.activity.add"] = "Access denied."
    async with b24.wired(backend) as (ours, sync, store):
        routed = await ours.enrich(call("c-1", phone="+79161234567"))
        await sync.finished([finished(routed, "anna")])
        await sync.send_due()
        b24.clock.now += 3600
        assert await sync.send_due() == 0
        row = await SyncStore(store).get(idempotency_key("c-1"))
    assert row is not None and row.status == "failed" and "Access denied." in (row.last_error or "")
    assert not b24.portal.activities


# ---- configuration ------------------------------------------------------------------------


def test_the_webhook_url_comes_from_the_environment(tmp_path: Path) -> None:
    path = write_config(tmp_path, {"kind": "bitrix24", "url_env": "ACD_B24", "users": {7: "anna"}})
    d = load_deployment(path, environ={"ACD_B24": "https://romashka.bitrix24.ru/rest/1/abc"})
    assert d.crm_external is not None and d.crm_external.url == "https://romashka.bitrix24.ru/rest/1/abc/"
    assert "abc" not in repr(d.crm_external)


@pytest.mark.parametrize(
    ("external", "environ", "expected"),
    [
        ({"kind": "bitrix24"}, {}, "crm.external.url_env: required for kind bitrix24"),
        ({"kind": "bitrix24", "url_env": "ACD_B24"}, {}, "crm.external.url_env: the environment variable ACD_B24"),
        (
            {"kind": "bitrix24", "url_env": "ACD_B24", "lookup_url": "https://x.example/l"},
            {"ACD_B24": "https://p.bitrix24.ru/rest/1/t/"},
            "crm.external.lookup_url: only for kind http",
        ),
        (
            {"kind": "bitrix24", "url_env": "ACD_B24", "write_back": "fax"},
            {"ACD_B24": "https://p.bitrix24.ru/rest/1/t/"},
            "crm.external.write_back: ",
        ),
        ({"kind": "amocrm"}, {}, "crm.external.kind: "),
        (
            {"kind": "bitrix24", "url_env": "ACD_B24", "timeout": "soon"},
            {"ACD_B24": "https://p.bitrix24.ru/rest/1/t/"},
            "crm.external.timeout: must be a duration",
        ),
    ],
)
def test_mistakes_are_named_by_file_and_key(
    tmp_path: Path, external: dict[str, Any], environ: dict[str, str], expected: str
) -> None:
    path = write_config(tmp_path, external)
    with pytest.raises(ConfigError) as err:
        load_deployment(path, environ=environ)
    assert any(p.startswith(f"{path}: {expected}") for p in err.value.problems), err.value.problems
