"""Open Bitrix24 leads (`acd.crm.external.bitrix24`, `crm.external.leads`): a caller whose only
record in the office's portal is a lead in progress goes to the lead's responsible; a converted
or junk lead is no match, and a contact or company comes before any lead; their finished
contacts are written on the lead rather than made a second one; the portal's lead events take
waiting contacts to whoever the lead (or what it was converted to) names now.

Against the stand-in portal of the adapter's tests (on 127.0.0.1), taught leads as Bitrix24's
REST documentation shows them: `crm.duplicate.findbycomm` {entity_type: LEAD} answering the 20
oldest matching ids, `crm.lead.list` with `@` (IN) filters, STATUS_SEMANTIC_ID derived from the
status (P, S, F), 50 to a page with `total` and `next` beside `result`, and `batch` reading its
commands as PHP does (`values[0]=...`), answering `result.result`, `result_error`,
`result_total` and `result_next`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from api_fixtures import Running, start, stop
from crm_external_fixtures import (
    LEAD_SEMANTICS,
    bitrix24_event,
    call,
    finished,
    list_page,
    php_query,
    stand_in,
    with_external,
    write_config,
)
from reroute_fixtures import lead, offered, reroutes, seen
from storage_fixtures import Backend
from test_crm_external_bitrix24 import TOKEN, BadRequest, Setup, _digits, ivan
from test_crm_external_new_callers import b24_settings, maria, stored, worked_out
from test_crm_external_reroute import BATCH_RESULT, EVENTS, EVENTS_TOKEN, _field
from test_crm_external_reroute import Portal as DealPortal

from acd.config import ConfigError, load_deployment
from acd.core.model import Channel
from acd.crm.external.base import Unavailable, idempotency_key

MARIA, MARIA_TYPED, MARIA_EMAIL = "+7 903 555-01-02", "8 (903) 555-01-02", "maria@example.com"
OLDEST = 20  # crm.duplicate.findbycomm: "not more than 20 duplicates per entity, the oldest"


@dataclass
class Portal(DealPortal):
    """The stand-in portal with leads: `leads` holds the portal's leads (those `crm.lead.add`
    makes among them), each with its STATUS_ID; Bitrix24 derives STATUS_SEMANTIC_ID."""

    answered: tuple[int, int | None] | None = None  # the total and next of the list being answered
    fail_in_batch: set[str] = field(default_factory=set)  # methods whose commands in a batch fail

    async def rest(self, request: web.Request) -> web.StreamResponse:
        response = await super().rest(request)
        page, self.answered = self.answered, None
        if page is None or not isinstance(response, web.Response) or response.status != 200 or not response.body:
            return response
        data = json.loads(response.text or "")
        total, after = page
        data["total"] = total
        if after is not None:
            data["next"] = after
        return web.json_response(data)

    def crm_duplicate_findbycomm(self, p: dict[str, Any]) -> Any:
        found = super().crm_duplicate_findbycomm(p)  # contacts and companies; checks type and values
        found = dict(found) if isinstance(found, dict) else {}
        if p.get("entity_type") in (None, "LEAD"):
            kind = p["type"]
            wanted = {_digits(v) if kind == "PHONE" else v.lower() for v in p["values"]}
            ids = sorted(
                int(r["ID"])
                for r in self.leads
                if wanted & {_digits(v["VALUE"]) if kind == "PHONE" else v["VALUE"].lower() for v in r.get(kind, [])}
            )
            if ids:
                found["LEAD"] = ids[:OLDEST]
        return found or []

    def _lead(self, row: dict[str, Any]) -> dict[str, Any]:
        return {**row, "STATUS_SEMANTIC_ID": LEAD_SEMANTICS[row.get("STATUS_ID", "NEW")]}

    def crm_lead_add(self, p: dict[str, Any]) -> int:
        n = max((int(r["ID"]) for r in self.leads), default=0) + 1
        self.leads.append({"ID": str(n), "STATUS_ID": "NEW", "DATE_MODIFY": _now(), **p["fields"]})
        return n

    def crm_lead_get(self, p: dict[str, Any]) -> dict[str, Any]:
        row = next((r for r in self.leads if r["ID"] == str(p["id"])), None)
        if row is None:
            raise BadRequest("Not found")
        return self._lead(row)

    def crm_lead_list(self, p: dict[str, Any]) -> list[dict[str, Any]]:
        rows = [self._lead(r) for r in self.leads]
        for key, want in (p.get("filter") or {}).items():
            if key.startswith("@"):
                rows = [r for r in rows if str(r.get(key[1:])) in {str(w) for w in want}]
            elif key[:1].isalpha():
                rows = [r for r in rows if str(r.get(key)) == str(want)]
            else:
                raise BadRequest(f"the stand-in does not filter by {key}")
        for name, way in reversed(list((p.get("order") or {"ID": "ASC"}).items())):
            rows.sort(key=lambda r: _sortable(r.get(name)), reverse=str(way).upper() == "DESC")
        select = p.get("select") or ["*"]
        rows = [r if "*" in select else {k: r[k] for k in select if k in r} for r in rows]
        page, total, after = list_page(rows, p.get("start"))
        self.answered = (total, after)
        return page

    def batch(self, p: dict[str, Any]) -> dict[str, Any]:
        """Bitrix24's `batch`: as the deal portal's, with commands read as PHP reads a query
        (lists as `key[0]=...`) and list methods' totals and nexts by command."""
        done: dict[str, Any] = {}
        failed: dict[str, Any] = {}
        totals: dict[str, int] = {}
        nexts: dict[str, int] = {}
        for key, command in p["cmd"].items():
            method, _, query = command.partition("?")
            params = php_query(query, lambda v: BATCH_RESULT.sub(lambda m: _field(done, m[1], m[2]), v))
            self.batched.append((method, params))
            try:
                if method in self.fail_in_batch:
                    raise BadRequest("Internal error")
                done[key] = getattr(self, method.replace(".", "_"))(params)
            except (BadRequest, ValueError) as err:
                failed[key] = {"error": "", "error_description": str(err) or "ID is not defined or invalid"}
            if self.answered is not None:
                (totals[key], after), self.answered = self.answered, None
                if after is not None:
                    nexts[key] = after
        return {
            "result": done or [],
            "result_error": failed or [],
            "result_total": totals or [],
            "result_next": nexts or [],
        }


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S+03:00")


def _sortable(value: Any) -> tuple[int, Any]:
    return (0, int(value)) if str(value).isdigit() else (1, str(value))


def maria_lead(
    portal: Portal,
    n: int = 30,
    status: str = "IN_PROCESS",
    responsible: str = "11",
    modified: str = "2026-12-01T10:00:00+03:00",
    email: str | None = None,
) -> None:
    """A lead for Мария's call, as the portal's telephony makes one: her number as typed, egor's."""
    row: dict[str, Any] = {
        "ID": str(n),
        "TITLE": f"Входящий звонок {MARIA_TYPED}",
        "NAME": "Мария",
        "STATUS_ID": status,
        "ASSIGNED_BY_ID": responsible,
        "OPPORTUNITY": "0.00",
        "DATE_MODIFY": modified,
        "PHONE": [{"ID": str(100 + n), "VALUE_TYPE": "WORK", "VALUE": MARIA_TYPED, "TYPE_ID": "PHONE"}],
    }
    if email:
        row["EMAIL"] = [{"ID": str(200 + n), "VALUE_TYPE": "WORK", "VALUE": email, "TYPE_ID": "EMAIL"}]
    portal.leads.append(row)


@pytest.fixture
async def b24() -> AsyncIterator[Setup]:
    portal = Portal()
    async with stand_in(portal.app()) as server:
        yield Setup(portal, str(server.make_url(f"/rest/1/{TOKEN}/")))


def lead_calls(portal: Any) -> list[tuple[str, Any]]:
    """The look-up's calls about leads: duplicate searches for them, batches and lead lists
    (not the write-back's own, by ORIGIN_ID)."""
    return [
        (m, p)
        for m, p in portal.calls
        if m == "batch"
        or (m == "crm.lead.list" and "@ID" in p.get("filter", {}))
        or (m == "crm.duplicate.findbycomm" and p.get("entity_type") == "LEAD")
    ]


# ---- look-ups -----------------------------------------------------------------------------


async def test_a_caller_whose_only_record_is_an_open_lead_reaches_its_responsible(backend: Backend, b24: Setup) -> None:
    maria_lead(b24.portal)
    async with b24.wired(backend) as (ours, _, _):
        routed = await ours.enrich(call("c-1", phone=MARIA))
    assert routed.preferred == ("egor",)  # the lead's ASSIGNED_BY_ID 11, through users
    ext = routed.payload["external"]
    assert (ext["system"], ext["customer"], ext["deal"], ext["responsible"]) == ("bitrix24", "LEAD:30", None, "11")
    assert routed.payload["routed_by"] == "external" and routed.payload["crm"].startswith("bitrix24: ")
    assert routed.customer_name == "Мария"
    methods = [(m, p.get("entity_type")) for m, p in b24.portal.calls]
    assert methods == [
        ("crm.duplicate.findbycomm", "CONTACT"),
        ("crm.duplicate.findbycomm", "COMPANY"),
        ("crm.duplicate.findbycomm", "LEAD"),  # a phone alone: no batch
        ("crm.lead.list", None),
    ]
    _, listed = b24.portal.calls[-1]
    assert listed["filter"] == {"@ID": [30], "STATUS_SEMANTIC_ID": "P"}
    assert listed["order"] == {"DATE_MODIFY": "DESC"} and "ASSIGNED_BY_ID" in listed["select"]


@pytest.mark.parametrize("status", ["CONVERTED", "JUNK"])
async def test_a_converted_or_junk_lead_is_no_match(backend: Backend, b24: Setup, status: str) -> None:
    maria_lead(b24.portal, status=status)
    async with b24.wired(backend) as (ours, _, _):
        routed = await ours.enrich(call("c-1", phone=MARIA))
    assert routed.preferred == () and routed.payload["external"] is None  # asked, and no customer there
    assert [m for m, _ in lead_calls(b24.portal)] == ["crm.duplicate.findbycomm", "crm.lead.list"]


async def test_of_several_leads_the_most_recently_changed_open_one_routes(backend: Backend, b24: Setup) -> None:
    maria_lead(b24.portal, 30, "IN_PROCESS", responsible="11", modified="2026-12-01T10:00:00+03:00")
    maria_lead(b24.portal, 31, "NEW", responsible="9", modified="2026-12-03T10:00:00+03:00")
    maria_lead(b24.portal, 32, "JUNK", responsible="7", modified="2026-12-05T10:00:00+03:00")
    maria_lead(b24.portal, 29, "CONVERTED", responsible="7", modified="2026-12-06T10:00:00+03:00")
    async with b24.wired(backend) as (ours, _, _):
        routed = await ours.enrich(call("c-1", phone=MARIA_TYPED))
    assert routed.preferred == ("boris",) and routed.payload["external"]["customer"] == "LEAD:31"
    [(_, listed)] = [c for c in b24.portal.calls if c[0] == "crm.lead.list"]
    assert listed["filter"]["@ID"] == [29, 30, 31, 32]


async def test_a_contact_comes_before_a_lead_with_the_same_number(backend: Backend, b24: Setup) -> None:
    ivan(b24.portal)  # contact 12, deal 45 of anna's, phone 8 (916) 123-45-67
    b24.portal.leads.append(
        {"ID": "40", "STATUS_ID": "NEW", "ASSIGNED_BY_ID": "11", "PHONE": [{"VALUE": "+79161234567"}]}
        | {"DATE_MODIFY": "2026-12-07T10:00:00+03:00"}
    )
    async with b24.wired(backend) as (ours, _, _):
        routed = await ours.enrich(call("c-1", phone="+79161234567"))
    assert routed.preferred == ("anna",) and routed.payload["external"]["customer"] == "CONTACT:12"
    assert lead_calls(b24.portal) == []  # no call about leads for a caller the portal has a contact for


async def test_a_web_form_with_phone_and_e_mail_asks_for_both_leads_in_one_batch(backend: Backend, b24: Setup) -> None:
    b24.portal.leads.append(  # the lead has her e-mail only, typed in capitals
        {"ID": "33", "STATUS_ID": "PROCESSED", "ASSIGNED_BY_ID": "9", "NAME": "Мария", "LAST_NAME": "Иванова"}
        | {"EMAIL": [{"VALUE": "Maria@Example.com"}], "DATE_MODIFY": "2026-12-02T10:00:00+03:00"}
    )
    async with b24.wired(backend) as (ours, _, _):
        form = call("c-1", phone=MARIA, email=MARIA_EMAIL, channel=Channel.WEB)
        routed = await ours.enrich(form)
    assert routed.preferred == ("boris",) and routed.payload["external"]["customer"] == "LEAD:33"
    assert routed.payload["external"]["name"] == "Мария Иванова"
    assert [m for m, _ in lead_calls(b24.portal)] == ["batch", "crm.lead.list"]  # two calls about leads
    by_type = {p["type"]: p for m, p in b24.portal.batched}
    assert by_type["EMAIL"] == {"entity_type": "LEAD", "type": "EMAIL", "values": [MARIA_EMAIL]}
    assert {"+79035550102", "79035550102", "89035550102"} <= set(by_type["PHONE"]["values"])
    assert [m for m, _ in b24.portal.calls].count("crm.duplicate.findbycomm") == 4  # contacts and companies


async def test_a_lead_search_failing_in_the_batch_fails_the_look_up_rather_than_make_a_stranger(
    backend: Backend, b24: Setup
) -> None:
    maria_lead(b24.portal, email=MARIA_EMAIL)
    b24.portal.fail_in_batch.add("crm.duplicate.findbycomm")
    adapter = b24.adapter(b24.settings())
    try:
        with pytest.raises(Unavailable, match="findbycomm"):
            await adapter.lookup("+79035550102", MARIA_EMAIL)
    finally:
        await adapter.close()
    async with b24.wired(backend) as (ours, _, _):
        form = call("c-1", phone=MARIA, email=MARIA_EMAIL, channel=Channel.WEB)
        assert (await ours.enrich(form)).preferred == ()  # routed without the portal for now
        b24.portal.fail_in_batch.clear()
        b24.clock.now += 31  # past the pause after a failed look-up, well within the cache's minutes
        again = await ours.enrich(replace(form, id="c-2"))
    assert again.preferred == ("egor",)  # the failure was not remembered as "no such customer"


async def test_with_leads_off_the_portal_is_not_asked_about_leads(backend: Backend, b24: Setup) -> None:
    maria_lead(b24.portal)
    async with b24.wired(backend, leads=False) as (ours, sync, _):
        routed = await ours.enrich(call("c-1", phone=MARIA))
        await sync.finished([finished(routed, "anna")])
        assert await sync.send_due() == 1
    assert routed.payload["external"] is None and lead_calls(b24.portal) == []
    assert len(b24.portal.leads) == 2  # a stranger to it: their call became a lead, as before


# ---- write-back ---------------------------------------------------------------------------


async def test_a_lead_s_caller_s_finished_call_is_an_activity_on_the_lead_not_a_second_lead(
    backend: Backend, b24: Setup
) -> None:
    maria_lead(b24.portal)
    async with b24.wired(backend) as (ours, sync, _):
        routed = await ours.enrich(call("c-1", phone=MARIA))
        await sync.finished([finished(routed, "egor")])
        assert await sync.send_due() == 1
    [activity] = b24.portal.activities
    assert (activity["OWNER_TYPE_ID"], activity["OWNER_ID"]) == (1, 30)  # crm.enum.ownertype LEAD
    assert activity["COMMUNICATIONS"] == [{"VALUE": "+79035550102", "ENTITY_ID": 30, "ENTITY_TYPE_ID": 1}]
    assert activity["RESPONSIBLE_ID"] == 11 and activity["ORIGIN_ID"] == idempotency_key("c-1")
    assert [r["ID"] for r in b24.portal.leads] == ["30"]


async def test_a_contact_routing_did_not_look_up_is_written_on_its_open_lead(backend: Backend, b24: Setup) -> None:
    maria_lead(b24.portal)
    async with b24.wired(backend, lookup="off") as (ours, sync, _):
        routed = await ours.enrich(call("c-1", phone=MARIA_TYPED))
        await sync.finished([finished(routed, "boris")])
        assert await sync.send_due() == 1
    assert "external" not in routed.payload
    [activity] = b24.portal.activities
    assert (activity["OWNER_TYPE_ID"], activity["OWNER_ID"]) == (1, 30)
    assert [r["ID"] for r in b24.portal.leads] == ["30"]


# ---- change events ------------------------------------------------------------------------


@pytest.fixture
async def server(backend: Backend) -> AsyncIterator[tuple[Portal, Running, str]]:
    portal = Portal()
    ivan(portal)
    async with stand_in(portal.app()) as b24:
        url = str(b24.make_url(f"/rest/1/{TOKEN}/"))
        r = await start(backend, with_external(b24_settings(url)))
        try:
            yield portal, r, url
        finally:
            await stop(r)


async def test_a_lead_handed_to_another_manager_takes_its_waiting_caller_to_them(
    server: tuple[Portal, Running, str],
) -> None:
    portal, r, _ = server
    maria_lead(portal)
    x = await lead(r, MARIA)
    assert x["preferred"] == ["egor"]
    portal.leads[0]["ASSIGNED_BY_ID"] = "9"  # lead 30 handed to boris in Bitrix24
    asked = len(portal.calls)
    to_boris = offered(r, str(x["id"]), "boris")
    status, body = await bitrix24_event(r.session, r.url(EVENTS), "ONCRMLEADUPDATE", 30, EVENTS_TOKEN)
    assert (status, body) == (202, {"accepted": True})
    await asyncio.wait_for(to_boris, 10)
    await worked_out()
    assert (await seen(r, str(x["id"])))["preferred"] == ["boris"]
    (why,) = await reroutes(r, str(x["id"]))
    assert "Bitrix24 lead 30 changed" in why
    assert "crm.lead.get" not in [m for m, _ in portal.calls[asked:]]  # named by its reference: no keys asked


async def test_a_lead_added_for_a_waiting_new_caller_takes_them_to_its_responsible(
    server: tuple[Portal, Running, str],
) -> None:
    portal, r, _ = server
    x = await lead(r, MARIA)
    assert x["preferred"] == [] and (await stored(r, str(x["id"])))["external"] is None
    owner, user = ("egor", "11") if x["offered_to"] != "egor" else ("boris", "9")
    maria_lead(portal, responsible=user)  # a manager takes the enquiry in as a lead
    asked = len(portal.calls)
    to_owner = offered(r, str(x["id"]), owner)
    assert (await bitrix24_event(r.session, r.url(EVENTS), "ONCRMLEADADD", 30, EVENTS_TOKEN))[0] == 202
    await asyncio.wait_for(to_owner, 10)
    await worked_out()
    assert (await seen(r, str(x["id"])))["preferred"] == [owner]
    assert portal.calls[asked] == ("crm.lead.get", {"id": 30})  # the event's one call: the lead's phones


async def test_a_lead_converted_while_its_caller_waits_hands_them_to_the_new_deal_s_owner(
    server: tuple[Portal, Running, str],
) -> None:
    portal, r, _ = server
    maria_lead(portal)
    x = await lead(r, MARIA)
    assert x["preferred"] == ["egor"]
    portal.leads[0]["STATUS_ID"] = "CONVERTED"  # qualified: made contact 20 with deal 47, boris's
    maria(portal, deal_owner=9)
    to_boris = offered(r, str(x["id"]), "boris")
    assert (await bitrix24_event(r.session, r.url(EVENTS), "ONCRMLEADUPDATE", 30, EVENTS_TOKEN))[0] == 202
    await asyncio.wait_for(to_boris, 10)
    await worked_out()
    contact = await r.server.store.get_contact(str(x["id"]))
    assert contact is not None
    assert (contact.payload["external"]["customer"], contact.payload["external"]["deal"]) == ("CONTACT:20", "47")


async def test_with_leads_off_lead_events_are_taken_and_ignored(backend: Backend) -> None:
    portal = Portal()
    maria_lead(portal)
    async with stand_in(portal.app()) as b24:
        settings = replace(b24_settings(str(b24.make_url(f"/rest/1/{TOKEN}/"))), leads=False)
        r = await start(backend, with_external(settings))
        try:
            x = await lead(r, MARIA)
            for event in ("ONCRMLEADADD", "ONCRMLEADUPDATE"):
                answer = await bitrix24_event(r.session, r.url(EVENTS), event, 30, EVENTS_TOKEN)
                assert answer == (202, {"accepted": False})
            await worked_out()
            assert await reroutes(r, str(x["id"])) == []
        finally:
            await stop(r)
    assert lead_calls(portal) == [] and "crm.lead.get" not in [m for m, _ in portal.calls]


# ---- configuration ------------------------------------------------------------------------


def test_lead_look_ups_are_on_unless_the_file_turns_them_off(tmp_path: Path) -> None:
    environ = {"ACD_B24": "https://romashka.bitrix24.ru/rest/1/abc/"}
    on = load_deployment(write_config(tmp_path, {"kind": "bitrix24", "url_env": "ACD_B24"}), environ=environ)
    off = load_deployment(
        write_config(tmp_path, {"kind": "bitrix24", "url_env": "ACD_B24", "leads": False}), environ=environ
    )
    assert on.crm_external is not None and on.crm_external.leads is True
    assert off.crm_external is not None and off.crm_external.leads is False


@pytest.mark.parametrize(
    ("external", "expected"),
    [
        ({"kind": "bitrix24", "url_env": "ACD_B24", "leads": "sometimes"}, "crm.external.leads: "),
        ({"kind": "bitrix24", "url_env": "ACD_B24", "leads": 1}, "crm.external.leads: "),
        (
            {"kind": "http", "lookup_url": "https://crm.example/lookup", "push": False, "leads": True},
            "crm.external.leads: only for kind bitrix24",
        ),
    ],
)
def test_a_wrong_leads_setting_is_named_by_file_and_key(
    tmp_path: Path, external: dict[str, Any], expected: str
) -> None:
    path = write_config(tmp_path, external)
    with pytest.raises(ConfigError) as err:
        load_deployment(path, environ={"ACD_B24": "https://p.bitrix24.ru/rest/1/t/"})
    assert any(p.startswith(f"{path}: {expected}") for p in err.value.problems), err.value.problems
