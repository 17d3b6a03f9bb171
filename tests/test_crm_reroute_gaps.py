"""What a repeat customer's waiting contact is routed by changes some other way than the CRM's
own edits: the manager it waits for is deactivated (or removed), a deal is opened for the
customer, a CSV import changes account managers or deals. The contact goes to whoever serves
the customer now, through a real server on 127.0.0.1, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest
from api_fixtures import Running
from reroute_fixtures import customer, lead, offered, reroutes, seen

from acd.core import events as ev

OFFER_SOON = 10.0  # seconds: a re-route after the request answered comes within milliseconds


async def paused(r: Running, *managers: str) -> None:
    for m in managers:
        status, _ = await r.call("POST", f"/api/managers/{m}/presence", r.supervisor, json={"state": "paused"})
        assert status == 200


@pytest.mark.parametrize("how", ["deactivated", "removed"])
async def test_a_deactivated_stage_owners_waiting_contact_goes_to_the_next_person_at_once(
    running: Running, how: str
) -> None:
    r = running
    cid = await customer(r, "ООО Ромашка", "+7 916 800-00-01", account_manager="vera")
    status, d = await r.call(
        "POST", "/api/crm/deals", r.supervisor, json={"customer_id": cid, "stage": "feedback", "owner": "daria"}
    )
    assert status == 201, d
    waiting = await lead(r, "+7 916 800-00-01")
    assert waiting["preferred"] == ["daria"] and waiting["team"] == "service" and waiting["first_wait"] == 60
    assert waiting["offered_to"] == "daria"  # and once she is gone, it would wait a minute for her
    await customer(r, "ООО Клевер", "+7 916 800-00-02", account_manager="anna")
    others = await lead(r, "+7 916 800-00-02")
    assert others["preferred"] == ["anna"] and others["offered_to"] == "anna"

    to_vera = offered(r, str(waiting["id"]), "vera")
    if how == "deactivated":
        status, m = await r.call("PATCH", "/api/managers/daria", r.admin, json={"active": False})
        assert status == 200 and m["active"] is False, m
    else:
        await r.server.dispatcher.submit(ev.ManagerRemoved("daria"))
    await asyncio.wait_for(to_vera, OFFER_SOON)

    now = await seen(r, str(waiting["id"]))
    assert now["preferred"] == ["vera"] and now["team"] == "service" and now["seq"] == waiting["seq"]
    assert now["offered_to"] == "vera" and "passing over inactive daria" in now["crm_reason"]
    (why,) = await reroutes(r, str(waiting["id"]))
    assert "daria deactivated" in why
    stored = await r.server.store.get_contact(str(waiting["id"]))
    assert stored is not None and stored.preferred == ("vera",)
    assert await reroutes(r, str(others["id"])) == []  # anna's customer: daria was nothing to it


async def test_a_deal_opened_for_a_waiting_customer_takes_the_contact_to_its_stage_owner(running: Running) -> None:
    r = running
    cid = await customer(r, "ООО Ромашка", "+7 916 810-00-01", account_manager="boris")
    await paused(r, "boris")
    waiting = await lead(r, "+7 916 810-00-01")
    assert waiting["preferred"] == ["boris"] and waiting["offered_to"] != "vera"

    status, d = await r.call(
        "POST",
        "/api/crm/deals",
        r.supervisor,
        json={"customer_id": cid, "stage": "approval", "owner": "boris", "stage_owner": "vera"},
    )
    assert status == 201, d
    now = await seen(r, str(waiting["id"]))  # at once: the request answers after the re-route
    assert now["preferred"] == ["vera"] and now["team"] == "sales" and now["deal_id"] == d["id"]
    assert now["offered_to"] == "vera" and now["seq"] == waiting["seq"] and now["first_wait"] == 60
    (why,) = await reroutes(r, str(waiting["id"]))
    assert f"deal {d['id']} opened in stage 'approval'" in why


async def test_a_customers_import_moves_the_waiting_contacts_of_the_customers_it_changed_in_one_pass(
    running: Running,
) -> None:
    r = running
    a = await customer(r, "ООО Ромашка", "+7 916 820-00-01", account_manager="boris")
    b = await customer(r, "ООО Лютик", "+7 916 820-00-02", account_manager="boris")
    c = await customer(r, "ООО Клевер", "+7 916 820-00-03", account_manager="anna")
    await paused(r, "boris", "anna")
    waiting = [await lead(r, f"+7 916 820-00-0{i}") for i in (1, 2, 3)]
    assert [w["preferred"] for w in waiting] == [["boris"], ["boris"], ["anna"]]

    rows = [
        "id,name,phone,account_manager",
        f"{a},ООО Ромашка,+7 916 820-00-01,vera",
        f"{b},ООО Лютик,+7 916 820-00-02,grigory",
        f"{c},ООО Клевер,+7 916 820-00-03,anna",
    ]
    status, report = await r.call("POST", "/api/crm/import/customers", r.admin, data="\n".join(rows).encode())
    assert status == 200 and report["imported"] == 3 and "change" not in report, report
    now = [await seen(r, str(w["id"])) for w in waiting]
    assert [x["preferred"] for x in now] == [["vera"], ["grigory"], ["anna"]]
    assert now[0]["seq"] == waiting[0]["seq"] and "grigory" not in (now[0]["offered_to"], now[2]["offered_to"])
    for w in waiting[:2]:
        (why,) = await reroutes(r, str(w["id"]))
        assert "customers imported: 2 with another account manager" in why  # one change for the file
    assert await reroutes(r, str(waiting[2]["id"])) == []


async def test_a_deals_import_moves_the_waiting_contacts_to_the_stage_owners_it_names(running: Running) -> None:
    r = running
    a = await customer(r, "ООО Ромашка", "+7 916 830-00-01", account_manager="boris")
    b = await customer(r, "ООО Лютик", "+7 916 830-00-02", account_manager="boris")
    status, d = await r.call(
        "POST", "/api/crm/deals", r.supervisor, json={"customer_id": a, "stage": "feedback", "owner": "daria"}
    )
    assert status == 201, d
    await paused(r, "boris", "daria")
    waiting = [await lead(r, f"+7 916 830-00-0{i}") for i in (1, 2)]
    assert [w["preferred"] for w in waiting] == [["daria"], ["boris"]]

    rows = [
        "id,customer_id,title,status,owner,stage,stage_owner,opened",
        f"{d['id']},{a},,open,daria,feedback,grigory,2026-01-10",
        f"n1,{b},Renewal,open,boris,feedback,grigory,2026-01-10",
    ]
    status, report = await r.call("POST", "/api/crm/import/deals", r.admin, data="\n".join(rows).encode())
    assert status == 200 and report["imported"] == 2 and report["rejected"] == [], report
    now = [await seen(r, str(w["id"])) for w in waiting]
    assert [x["preferred"] for x in now] == [["grigory"], ["grigory"]]
    assert [x["team"] for x in now] == ["service", "service"] and now[1]["deal_id"] == "n1"
    for w in waiting:
        (why,) = await reroutes(r, str(w["id"]))
        assert "deals imported: 1 opened, 1 changed" in why
