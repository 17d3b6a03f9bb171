"""A new caller waits while a manager makes them known in the office's own CRM (a contact, a
deal naming its owner, from the website form in front of them): the CRM's change notification
takes the waiting contact to that owner, found by the caller's phone or e-mail, with at most
one call to the CRM to learn them. A Bitrix24 deal event that no waiting contact could be
concerned by costs no call at all. Through a real server on 127.0.0.1 and the stand-in CRMs
of the adapters' tests, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from api_fixtures import Running, start, stop
from crm_external_fixtures import bitrix24_event, signed_notice, stand_in, with_external
from reroute_fixtures import customer, lead, offered, reroutes, seen
from storage_fixtures import Backend
from test_crm_external_bitrix24 import TOKEN, ivan
from test_crm_external_http import SECRET, OfficeCrm
from test_crm_external_http import settings as http_settings
from test_crm_external_reroute import EVENTS, EVENTS_TOKEN, IVAN, Portal

from acd.config.crm_external import ExternalCrmSettings
from acd.crm.external.bitrix24 import Bitrix24Crm

MARIA, OLGA, PETR = "+7 903 555-01-02", "+7 903 555-07-07", "+7 916 555-00-13"


async def worked_out() -> None:
    """Until the notices' work on the side (`Rerouting.later`, tasks "acd-crm-reroute") is done."""
    await asyncio.gather(*(t for t in asyncio.all_tasks() if t.get_name() == "acd-crm-reroute"))


def b24_settings(url: str) -> ExternalCrmSettings:
    return ExternalCrmSettings(
        kind="bitrix24",
        url=url,
        events_token=EVENTS_TOKEN,
        timeout=5.0,
        users={"7": "anna", "9": "boris", "11": "egor"},
        stages={"C1:NEW": "qualification", "C1:EXECUTING": "delivery"},
    )


@pytest.fixture
async def b24(backend: Backend) -> AsyncIterator[tuple[Portal, Running]]:
    """The portal knows Ivan (contact 12, deal 45 of anna's); Мария and Ольга are strangers."""
    portal = Portal()
    ivan(portal)
    async with stand_in(portal.app()) as server:
        r = await start(backend, with_external(b24_settings(str(server.make_url(f"/rest/1/{TOKEN}/")))))
        try:
            yield portal, r
        finally:
            await stop(r)


def maria(portal: Portal, deal_owner: int | None, responsible: str = "11") -> None:
    """A manager makes Мария a contact (20, egor's), typed as people type, and perhaps a deal."""
    portal.contacts[20] = {
        "NAME": "Мария",
        "PHONE": [{"VALUE": "8 (903) 555-01-02", "VALUE_TYPE": "MOBILE"}],
        "EMAIL": [{"VALUE": "Maria@Example.com", "VALUE_TYPE": "WORK"}],
        "ASSIGNED_BY_ID": responsible,
    }
    if deal_owner is not None:
        portal.deals.append(
            {"ID": 47, "CONTACT_ID": 20, "COMPANY_ID": 0, "CLOSED": "N", "STAGE_ID": "C1:NEW"}
            | {"ASSIGNED_BY_ID": deal_owner, "OPPORTUNITY": "5000", "DATE_MODIFY": "2026-12-07T10:00:00+03:00"}
        )


async def stored(r: Running, cid: str) -> dict[str, Any]:
    contact = await r.server.store.get_contact(cid)
    assert contact is not None
    return dict(contact.payload)


async def test_a_deal_bitrix24_opens_for_a_waiting_new_caller_takes_their_contact_to_its_owner(
    b24: tuple[Portal, Running],
) -> None:
    portal, r = b24
    x = await lead(r, MARIA)
    other = await lead(r, OLGA)
    assert x["preferred"] == [] and other["preferred"] == [] and x["offered_to"]  # strangers: by our ratings
    assert (await stored(r, str(x["id"])))["external"] is None  # asked, and the portal did not know her

    owner, user = ("boris", 9) if x["offered_to"] != "boris" else ("anna", 7)
    maria(portal, deal_owner=user)
    asked = len(portal.calls)
    assert await bitrix24_event(r.session, r.url(EVENTS), "ONCRMDEALADD", 47, EVENTS_TOKEN) == (202, {"accepted": True})
    await worked_out()
    await r.settle()

    now_x = await seen(r, str(x["id"]))
    assert now_x["preferred"] == [owner] and now_x["offered_to"] in (owner, None) and now_x["seq"] == x["seq"]
    (why,) = await reroutes(r, str(x["id"]))
    assert "Bitrix24 deal 47 changed" in why and f"offer to {x['offered_to']} withdrawn" in why
    payload = await stored(r, str(x["id"]))
    assert (payload["external"]["customer"], payload["external"]["deal"]) == ("CONTACT:20", "47")
    assert payload["routed_by"] == "external"

    methods = [m for m, _ in portal.calls[asked:]]
    assert methods[0] == "batch" and methods.count("batch") == 1  # the event: one call, its customer with it
    assert "crm.deal.get" not in methods and "crm.contact.get" not in methods
    assert [m for m, _ in portal.batched] == ["crm.deal.get", "crm.contact.get", "crm.company.get"]
    looked_up = [p["values"] for m, p in portal.calls[asked:] if m == "crm.duplicate.findbycomm"]
    assert looked_up and all("+79035550102" in v for v in looked_up)  # Мария's number only: Ольга's not asked
    assert await reroutes(r, str(other["id"])) == []
    assert (await stored(r, str(other["id"])))["external"] is None


async def test_a_contact_made_in_bitrix24_for_a_waiting_new_caller_takes_them_to_its_responsible(
    b24: tuple[Portal, Running],
) -> None:
    portal, r = b24
    x = await lead(r, MARIA)
    owner, user = ("egor", "11") if x["offered_to"] != "egor" else ("boris", "9")
    maria(portal, deal_owner=None, responsible=user)  # no deal: the contact's responsible
    asked = len(portal.calls)
    to_owner = offered(r, str(x["id"]), owner)
    assert (await bitrix24_event(r.session, r.url(EVENTS), "ONCRMCONTACTADD", 20, EVENTS_TOKEN))[0] == 202
    await asyncio.wait_for(to_owner, 10)
    await worked_out()
    assert (await seen(r, str(x["id"])))["preferred"] == [owner]
    assert portal.calls[asked] == ("crm.contact.get", {"id": 20})  # the event's one call: her phones
    assert [m for m, _ in portal.calls[asked:]].count("crm.contact.get") == 2  # the other: the look-up's


async def test_a_bitrix24_deal_event_costs_no_call_while_no_waiting_contact_could_be_concerned(
    b24: tuple[Portal, Running],
) -> None:
    portal, r = b24
    x = await lead(r, IVAN)  # anna's, by deal 45: the answer is cached
    anna = await r.manager_token(x["offered_to"])
    assert (await r.call("POST", f"/api/contacts/{x['id']}/accept", anna))[0] == 200
    assert (await r.call("POST", f"/api/contacts/{x['id']}/finish", anna, json={"outcome": "won"}))[0] == 200
    await customer(r, "Пётр", PETR, account_manager="vera")
    y = await lead(r, PETR)  # waits, but our CRM routed it (to vera): the portal was not asked
    assert y["preferred"] == ["vera"] and "external" not in await stored(r, str(y["id"]))

    portal.deals[0]["ASSIGNED_BY_ID"] = 9  # deal 45 handed to boris
    asked = len(portal.calls)
    for event in ("ONCRMDEALUPDATE", "ONCRMDEALADD"):
        assert await bitrix24_event(r.session, r.url(EVENTS), event, 45, EVENTS_TOKEN) == (202, {"accepted": True})
    await worked_out()
    assert portal.calls[asked:] == []  # nobody the deal could concern waits: its customers not asked for
    assert await reroutes(r, str(y["id"])) == []

    again = await lead(r, IVAN)  # within the cache's minutes: the cached answer went with the event
    assert again["preferred"] == ["boris"]


async def test_a_notice_of_the_office_crm_naming_a_waiting_new_caller_takes_them_to_their_responsible(
    backend: Backend,
) -> None:
    crm = OfficeCrm()
    async with stand_in(crm.app()) as server:
        r = await start(backend, with_external(http_settings(str(server.make_url("")).rstrip("/"))))
        try:
            x = await lead(r, MARIA)
            await customer(r, "Пётр", PETR, account_manager="egor")
            y = await lead(r, PETR)  # our CRM's customer: routed by us, the office CRM not asked
            assert y["preferred"] == ["egor"] and len(crm.lookups) == 1

            crm.customers["+79035550102"] = {"customer": {"id": "C-20", "responsible": "u-vera"}, "deal": None}
            to_vera = offered(r, str(x["id"]), "vera")
            body = {"event": "customer.changed", "customer": {"id": "C-20", "phone": "8 903 555-01-02"}}
            assert await signed_notice(r.session, r.url(EVENTS), body, SECRET) == (202, {"accepted": True})
            await asyncio.wait_for(to_vera, 10)
            assert (await seen(r, str(x["id"])))["preferred"] == ["vera"]
            assert (await stored(r, str(x["id"])))["external"]["customer"] == "C-20"

            crm.customers["+79165550013"] = {"customer": {"id": "C-21", "responsible": "u-vera"}, "deal": None}
            body = {"event": "customer.changed", "customer": {"id": "C-21", "phone": PETR}}
            assert await signed_notice(r.session, r.url(EVENTS), body, SECRET) == (202, {"accepted": True})
            await worked_out()
            await r.settle()
            assert await reroutes(r, str(y["id"])) == []  # our CRM's facts win for our customer
            assert [q["phone"] for q in crm.lookups[1:]] == ["+79035550102"]
        finally:
            await stop(r)


async def test_what_a_bitrix24_event_learns_in_its_one_call() -> None:
    portal = Portal()
    ivan(portal)
    maria(portal, deal_owner=9)
    portal.companies[5] = {"TITLE": "ООО Ромашка", "PHONE": [{"VALUE": "+7 495 123-45-67"}, {"VALUE": "123"}]}
    portal.deals.append({"ID": 48, "CONTACT_ID": 0, "COMPANY_ID": 5, "CLOSED": "N", "ASSIGNED_BY_ID": 7})
    async with stand_in(portal.app()) as server:
        adapter = Bitrix24Crm(b24_settings(str(server.make_url(f"/rest/1/{TOKEN}/"))))
        try:
            deal = await adapter.notice("DEAL", 47, "RU", keys=True)
            company = await adapter.notice("DEAL", 48, "RU", keys=True)
            gone = await adapter.notice("DEAL", 99, "RU", keys=True)
            plain = await adapter.notice("DEAL", 47, "RU")
            contact = await adapter.notice("CONTACT", 20, "RU", keys=True)
            untouched = len(portal.calls)
            by_ref = await adapter.notice("CONTACT", 20, "RU")
        finally:
            await adapter.close()
    assert (deal.customers, deal.deals) == ({"CONTACT:20"}, {"47"})
    assert (deal.phones, deal.emails) == ({"+79035550102"}, {"maria@example.com"})
    assert (company.customers, company.phones) == ({"COMPANY:5"}, {"+74951234567"})  # "123" is no number
    assert (gone.customers, gone.deals, gone.phones) == (frozenset(), {"99"}, frozenset())  # deleted meanwhile
    assert (plain.customers, plain.phones) == ({"CONTACT:20"}, frozenset())
    assert (contact.customers, contact.phones, contact.emails) == (
        {"CONTACT:20"},
        {"+79035550102"},
        {"maria@example.com"},
    )
    assert by_ref.customers == {"CONTACT:20"} and len(portal.calls) == untouched  # no call without keys
    assert [m for m, _ in portal.calls] == ["batch", "batch", "batch", "crm.deal.get", "crm.contact.get"]
