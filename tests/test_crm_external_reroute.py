"""The office's own CRM changes who serves a customer while the customer's contact waits:
its change notification (Bitrix24's outbound webhook; the generic CRM's signed notice) makes
the contact go to the new person, through a real server on 127.0.0.1 and the stand-in CRMs of
the adapters' tests, on SQLite and PostgreSQL. A wrong token or signature changes nothing,
and another customer's contact stays as it was."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from copy import deepcopy
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
from api_fixtures import Running, start, stop
from crm_external_fixtures import bitrix24_event, signed_notice, stand_in, with_external, write_config
from reroute_fixtures import lead, offered, reroutes, seen
from storage_fixtures import Backend
from test_crm_external_bitrix24 import TOKEN, BadRequest, ivan
from test_crm_external_bitrix24 import Portal as RestPortal
from test_crm_external_http import REPEAT, SECRET, OfficeCrm
from test_crm_external_http import settings as http_settings

from acd.config import ConfigError, load_deployment
from acd.config.crm_external import ExternalCrmSettings

EVENTS_TOKEN = "5f1c0e7a9b2d4c6e8f0a1b3c5d7e9f10"
EVENTS = "/api/crm/external/events"
IVAN, PETR = "+7 916 123-45-67", "+7 916 555-00-13"


@dataclass
class Portal(RestPortal):
    batched: list[tuple[str, dict[str, str]]] = field(default_factory=list)  # the commands `batch` ran

    def crm_deal_get(self, p: dict[str, Any]) -> dict[str, str]:
        deal = next((d for d in self.deals if str(d["ID"]) == str(p["id"])), None)
        if deal is None:
            raise BadRequest("Not found")
        return {k: str(v) for k, v in deal.items()}

    def batch(self, p: dict[str, Any]) -> dict[str, Any]:
        """Bitrix24's `batch` (one request, counted once): each command `method?query` in
        order, `$result[key][FIELD]` in a value read from an earlier command's answer (empty
        when it has none); a failing command's error under `result_error`, the rest run on
        (halt 0). Empty answers are PHP's empty arrays: lists."""
        done: dict[str, Any] = {}
        failed: dict[str, Any] = {}
        for key, command in p["cmd"].items():
            method, _, query = command.partition("?")
            params = {k: BATCH_RESULT.sub(lambda m: _field(done, m[1], m[2]), v) for k, v in parse_qsl(query)}
            self.batched.append((method, params))
            try:
                done[key] = getattr(self, method.replace(".", "_"))(params)
            except (BadRequest, ValueError) as err:
                failed[key] = {"error": "", "error_description": str(err) or "ID is not defined or invalid"}
        return {"result": done or [], "result_error": failed or [], "result_total": [], "result_next": []}


BATCH_RESULT = re.compile(r"\$result\[(\w+)\]\[(\w+)\]")


def _field(done: dict[str, Any], key: str, name: str) -> str:
    row = done.get(key)
    return str(row.get(name) or "") if isinstance(row, dict) else ""


@pytest.fixture
async def b24(backend: Backend) -> AsyncIterator[tuple[Portal, Running]]:
    """Ivan (contact 12, deal 45 of anna's) and Пётр (contact 13, deal 46, anna's too)."""
    portal = Portal()
    ivan(portal)
    portal.contacts[13] = {"NAME": "Пётр", "PHONE": [{"VALUE": PETR}], "ASSIGNED_BY_ID": "9"}
    portal.deals.append(
        {"ID": 46, "CONTACT_ID": 13, "CLOSED": "N", "STAGE_ID": "C1:NEW", "ASSIGNED_BY_ID": 7}
        | {"OPPORTUNITY": "9000", "DATE_MODIFY": "2026-11-30T09:00:00+03:00"}
    )
    async with stand_in(portal.app()) as server:
        settings = ExternalCrmSettings(
            kind="bitrix24",
            url=str(server.make_url(f"/rest/1/{TOKEN}/")),
            events_token=EVENTS_TOKEN,
            timeout=5.0,
            users={"7": "anna", "9": "boris", "11": "egor"},
            stages={"C1:NEW": "qualification", "C1:EXECUTING": "delivery"},
        )
        r = await start(backend, with_external(settings))
        try:
            yield portal, r
        finally:
            await stop(r)


async def test_a_bitrix24_deal_handed_to_another_manager_takes_its_waiting_contact_to_them(
    b24: tuple[Portal, Running],
) -> None:
    portal, r = b24
    x = await lead(r, IVAN)
    y = await lead(r, PETR)
    assert x["preferred"] == ["anna"] and x["offered_to"] == "anna"
    assert y["preferred"] == ["anna"]

    portal.deals[0]["ASSIGNED_BY_ID"] = 9  # deal 45 handed to boris in Bitrix24
    asked = len(portal.calls)
    assert (await bitrix24_event(r.session, r.url(EVENTS), "ONCRMDEALUPDATE", 45, "not-the-token"))[0] == 403
    assert (await bitrix24_event(r.session, r.url(EVENTS), "ONCRMDEALUPDATE", 45, None))[0] == 401
    await r.settle()
    assert portal.calls[asked:] == []  # refused before anything was looked up
    assert (await seen(r, str(x["id"])))["offered_to"] == "anna"
    assert await reroutes(r, str(x["id"])) == []

    to_boris = offered(r, str(x["id"]), "boris")
    status, body = await bitrix24_event(r.session, r.url(EVENTS), "ONCRMDEALUPDATE", 45, EVENTS_TOKEN)
    assert (status, body) == (202, {"accepted": True})
    await asyncio.wait_for(to_boris, 10)
    await r.settle()

    now_x = await seen(r, str(x["id"]))
    assert now_x["preferred"] == ["boris"] and now_x["offered_to"] == "boris" and now_x["seq"] == x["seq"]
    (why,) = await reroutes(r, str(x["id"]))
    assert "Bitrix24 deal 45 changed" in why and "offer to anna withdrawn" in why
    stored = await r.server.store.get_contact(str(x["id"]))
    assert stored is not None and stored.payload["external"]["responsible"] == "9"
    assert stored.payload["routed_by"] == "external"  # as at arrival: ratings count it as before
    assert ("crm.deal.get", {"id": 45}) in portal.calls
    assert await reroutes(r, str(y["id"])) == []  # Пётр's deal 46 is not deal 45
    assert (await seen(r, str(y["id"])))["preferred"] == ["anna"]


async def test_a_new_responsible_of_a_bitrix24_contact_without_a_deal_takes_its_contact(
    b24: tuple[Portal, Running],
) -> None:
    portal, r = b24
    portal.deals[:] = [d for d in portal.deals if d["CONTACT_ID"] != 13]  # Пётр: no deal, boris responsible
    y = await lead(r, PETR)
    assert y["preferred"] == ["boris"]
    portal.contacts[13]["ASSIGNED_BY_ID"] = "11"  # now egor's
    to_egor = offered(r, str(y["id"]), "egor")
    assert (await bitrix24_event(r.session, r.url(EVENTS), "ONCRMCONTACTUPDATE", 13, EVENTS_TOKEN))[0] == 202
    await asyncio.wait_for(to_egor, 10)
    assert (await seen(r, str(y["id"])))["preferred"] == ["egor"]


GARBAGE: list[tuple[dict[str, str], bytes]] = [
    ({}, b""),
    ({}, b"\xff\xfe\x00garbage"),
    ({"Content-Type": "application/x-www-form-urlencoded"}, b"%%%&&&==="),
    ({"Content-Type": "application/json"}, b'{"event": "ONCRMDEALUPDATE"}'),
    ({"Content-Type": "multipart/form-data; boundary=x"}, b"--x\r\nbroken"),
    ({}, b"&".join([b"a=1"] * 5000)),
]


async def test_garbage_is_refused_and_an_event_that_routes_nobody_is_taken_and_ignored(
    b24: tuple[Portal, Running],
) -> None:
    portal, r = b24
    for headers, raw in GARBAGE:
        async with r.session.post(r.url(EVENTS), data=raw, headers=headers) as resp:
            assert 400 <= resp.status < 500, (raw[:40], resp.status, await resp.text())
    for event, n in [("ONCRMACTIVITYADD", "5"), ("ONCRMDEALUPDATE", "0"), ("ONCRMDEALUPDATE", "x"), ("", "")]:
        status, body = await bitrix24_event(r.session, r.url(EVENTS), event, n, EVENTS_TOKEN)
        assert (status, body) == (202, {"accepted": False}), event
    assert portal.calls == []


async def test_the_endpoint_is_rate_limited_like_the_other_public_ones(backend: Backend) -> None:
    settings = ExternalCrmSettings(kind="bitrix24", url="http://127.0.0.1:9/rest/1/t/", events_token=EVENTS_TOKEN)
    deployment = with_external(settings)
    deployment = replace(
        deployment, web=replace(deployment.web, rate_limits=replace(deployment.web.rate_limits, leads_per_minute=2))
    )
    r = await start(backend, deployment)
    try:
        answers = [
            (await bitrix24_event(r.session, r.url(EVENTS), "ONCRMLEADADD", 1, EVENTS_TOKEN))[0] for _ in range(4)
        ]
    finally:
        await stop(r)
    assert answers[0] == 202 and answers[-1] == 429, answers


# ---- the generic HTTP CRM -------------------------------------------------------------------


@pytest.fixture
async def office(backend: Backend) -> AsyncIterator[tuple[OfficeCrm, Running]]:
    """C-1 (deal D-7, boris's) and C-2 (deal D-9, boris's too)."""
    crm = OfficeCrm()
    crm.customers["+79161234567"] = deepcopy(REPEAT)
    crm.customers["+79165550013"] = {
        "customer": {"id": "C-2", "name": "ООО Лютик", "responsible": "u-vera"},
        "deal": {"id": "D-9", "stage": "proposal", "responsible": "u-boris", "amount": 1000},
    }
    async with stand_in(crm.app()) as server:
        r = await start(backend, with_external(http_settings(str(server.make_url("")).rstrip("/"))))
        try:
            yield crm, r
        finally:
            await stop(r)


async def test_a_signed_notice_from_the_office_crm_takes_the_waiting_contact_to_the_new_responsible(
    office: tuple[OfficeCrm, Running],
) -> None:
    crm, r = office
    x = await lead(r, IVAN)
    y = await lead(r, PETR)
    assert x["preferred"] == ["boris"] and y["preferred"] == ["boris"]

    crm.customers["+79161234567"]["deal"]["responsible"] = "u-vera"
    looked = len(crm.lookups)
    notice = {"event": "customer.changed", "customer": {"id": "C-1"}}
    assert (await signed_notice(r.session, r.url(EVENTS), notice, "not-the-secret"))[0] == 403
    assert (await signed_notice(r.session, r.url(EVENTS), notice, SECRET, stamp=1_000_000))[0] == 403  # stale
    async with r.session.post(r.url(EVENTS), json=notice) as resp:
        assert resp.status == 401
    await r.settle()
    assert crm.lookups[looked:] == []
    assert (await seen(r, str(x["id"])))["preferred"] == ["boris"]

    to_vera = offered(r, str(x["id"]), "vera")
    assert await signed_notice(r.session, r.url(EVENTS), notice, SECRET) == (202, {"accepted": True})
    await asyncio.wait_for(to_vera, 10)
    await r.settle()
    now_x = await seen(r, str(x["id"]))
    assert now_x["preferred"] == ["vera"] and now_x["offered_to"] == "vera"
    (why,) = await reroutes(r, str(x["id"]))
    assert "the office CRM's customer C-1 changed" in why
    assert crm.lookups[looked:] == [{"phone": "+79161234567"}]  # only C-1's contact looked up again
    assert await reroutes(r, str(y["id"])) == []
    assert (await seen(r, str(y["id"])))["preferred"] == ["boris"]


async def test_a_notice_naming_the_customer_by_phone_reaches_its_contact(office: tuple[OfficeCrm, Running]) -> None:
    crm, r = office
    y = await lead(r, PETR)
    crm.customers["+79165550013"]["deal"] = None  # D-9 closed: the customer's responsible, vera
    to_vera = offered(r, str(y["id"]), "vera")
    body = {"event": "customer.changed", "customer": {"phone": "8 (916) 555-00-13"}}
    assert (await signed_notice(r.session, r.url(EVENTS), body, SECRET))[0] == 202
    await asyncio.wait_for(to_vera, 10)


@pytest.mark.parametrize("body", [[], {"customer": "C-1"}, {"customer": {}}, {"customer": {"id": True}}, "x"])
async def test_a_signed_notice_that_names_nobody_is_a_400(office: tuple[OfficeCrm, Running], body: Any) -> None:
    _, r = office
    status, answer = await signed_notice(r.session, r.url(EVENTS), body, SECRET)
    assert status == 400 and answer["error"]["code"] == "invalid", answer


# ---- configuration ---------------------------------------------------------------------------


def test_the_bitrix24_events_token_comes_from_the_environment(tmp_path: Path) -> None:
    external = {"kind": "bitrix24", "url_env": "ACD_B24", "events_token_env": "ACD_B24_EVENTS"}
    path = write_config(tmp_path, external)
    environ = {"ACD_B24": "https://romashka.bitrix24.ru/rest/1/abc", "ACD_B24_EVENTS": EVENTS_TOKEN}
    d = load_deployment(path, environ=environ)
    assert d.crm_external is not None and d.crm_external.events_token == EVENTS_TOKEN
    assert EVENTS_TOKEN not in repr(d.crm_external)
    with pytest.raises(ConfigError) as err:
        load_deployment(path, environ={"ACD_B24": environ["ACD_B24"]})
    assert any(
        "crm.external.events_token_env: the environment variable ACD_B24_EVENTS" in p for p in err.value.problems
    )


async def test_after_a_notice_the_customer_s_next_contact_is_not_routed_by_a_stale_cached_answer(
    office: tuple[OfficeCrm, Running],
) -> None:
    crm, r = office
    x = await lead(r, IVAN)
    assert x["offered_to"] == "boris"
    boris = await r.manager_token("boris")
    assert (await r.call("POST", f"/api/contacts/{x['id']}/accept", boris))[0] == 200
    assert (await r.call("POST", f"/api/contacts/{x['id']}/finish", boris, json={"outcome": "won"}))[0] == 200

    crm.customers["+79161234567"]["deal"]["responsible"] = "u-vera"
    notice = {"event": "customer.changed", "customer": {"id": "C-1"}}
    assert (await signed_notice(r.session, r.url(EVENTS), notice, SECRET))[0] == 202
    await r.settle()
    again = await lead(r, IVAN)  # within the look-up cache's 5 minutes
    assert again["preferred"] == ["vera"]
