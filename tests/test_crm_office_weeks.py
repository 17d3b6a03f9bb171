"""A sales office over weeks, through a real server on 127.0.0.1 (SQLite and PostgreSQL):
what an export imported again, a manager who leaves and a customer file re-imported must
not break in repeat-customer routing, the client card and the ratings."""

from __future__ import annotations

from dataclasses import replace

from api_fixtures import Running
from test_crm_api import HOT_BIG, customer_with_deal, lead

from acd.api.crm import CRM
from acd.crm.model import Customer, Deal, Vacation
from acd.crm.routing import StageRule, route_repeat


async def test_a_deals_export_imported_again_keeps_who_serves_the_stage_and_the_override_mark(
    running: Running,
) -> None:
    crm = running.server.app[CRM]
    _, did = await customer_with_deal(running, "delivery", owner="anna", stage_owner="egor")
    assert (await lead(running, "+79161234567"))["preferred"] == ["egor"]
    placed = replace(await crm.deal(did), override=True, contact_id="c-placed-by-supervisor")
    await crm.repo.save_deals([placed])
    status, text = await running.call("GET", "/api/crm/export/deals.csv", running.supervisor)
    assert status == 200
    status, report = await running.call("POST", "/api/crm/import/deals", running.admin, data=text.encode())
    assert status == 200 and report["imported"] == 1 and not report["rejected"], report
    again = await crm.deal(did)
    assert (again.stage, again.stage_owner) == ("delivery", "egor")
    assert (again.override, again.contact_id, again.source) == (True, "c-placed-by-supervisor", "live")
    assert (again.stage_since, again.last_activity) == (placed.stage_since, placed.last_activity)
    assert (await lead(running, "+79161234567"))["preferred"] == ["egor"]  # still the logistics person

    # a file without the stage_owner column (an older export, a hand-made sheet) leaves it too
    header, row = text.splitlines()
    cut = header.split(",").index("stage_owner")
    older = "\n".join(",".join(c for i, c in enumerate(line.split(",")) if i != cut) for line in (header, row))
    status, report = await running.call("POST", "/api/crm/import/deals", running.admin, data=older.encode())
    assert status == 200 and report["imported"] == 1, report
    assert (await crm.deal(did)).stage_owner == "egor"

    # and closing it in the sheet closes it, still left out of anna's rating as the override it was
    cols = header.split(",")
    cells = row.split(",")
    cells[cols.index("status")], cells[cols.index("amount")] = "won", "1000"
    cells[cols.index("closed")] = cells[cols.index("opened")]
    won = ",".join(cells)
    status, report = await running.call(
        "POST", "/api/crm/import/deals", running.admin, data=f"{header}\n{won}".encode()
    )
    assert status == 200 and report["imported"] == 1, report
    closed = await crm.deal(did)
    assert closed.status.value == "won" and closed.override
    status, card = await running.call("GET", "/api/crm/ratings/anna", running.supervisor)
    assert status == 200 and card["overall"]["deals"] == 0


async def leaves(r: Running, manager_id: str) -> None:
    status, _ = await r.call("PATCH", f"/api/managers/{manager_id}", r.admin, json={"active": False})
    assert status == 200


async def why(r: Running, contact_id: object) -> str:
    c = await r.server.store.get_contact(str(contact_id))
    assert c is not None
    return str(c.payload["crm"])


async def test_a_stage_whose_person_left_goes_to_the_deals_owner_and_says_why(running: Running) -> None:
    await customer_with_deal(running, "feedback", owner="anna", stage_owner="grigory")
    await leaves(running, "grigory")
    seen = await lead(running, "+79161234567")
    assert seen["preferred"] == ["anna"] and seen["team"] == "service"  # not a wait for nobody
    assert "grigory" in (reason := await why(running, seen["id"])) and "inactive" in reason


async def test_a_pin_to_a_manager_who_left_neither_holds_nor_marks_the_contact_an_override(running: Running) -> None:
    crm = running.server.app[CRM]
    status, other = await running.call(
        "POST",
        "/api/crm/customers",
        running.supervisor,
        json={"name": "ИП Сидоров", "phones": ["+7 903 000-11-22"], "account_manager": "boris"},
    )
    assert status == 201, other
    status, _ = await running.call(
        "POST", f"/api/crm/customers/{other['id']}/pin", running.supervisor, json={"manager_id": "vera"}
    )
    assert status == 200
    await leaves(running, "vera")
    seen = await lead(running, "+79030001122")
    assert seen["preferred"] == ["boris"] and seen["offered_to"] == "boris"
    assert seen["override"] is False  # what boris makes of it counts in his rating: nobody placed it
    assert "vera" in (reason := await why(running, seen["id"])) and "inactive" in reason
    assert (await crm.customer(other["id"])).pinned_to == "vera"  # the pin itself is the supervisor's to change


async def test_a_customers_export_imported_again_keeps_their_qualification_answers(running: Running) -> None:
    crm = running.server.app[CRM]
    seen = await lead(running, "+7 903 555-44-33")  # hot, purchase, high: the IVR's answers
    cid = str(seen["customer_id"])
    answers = dict((await crm.customer(cid)).criteria)
    assert answers == HOT_BIG
    status, text = await running.call("GET", "/api/crm/export/customers.csv", running.supervisor)
    assert status == 200
    edited = text.replace("Иван", "Иван Петров")  # the office corrects a name in the sheet
    status, report = await running.call("POST", "/api/crm/import/customers", running.admin, data=edited.encode())
    assert status == 200 and report["imported"] == 1 and report["customers_created"] == 0, report
    after = await crm.customer(cid)
    assert after.name == "Иван Петров" and dict(after.criteria) == answers
    status, card = await running.call("GET", f"/api/crm/customers/{cid}", running.supervisor)
    assert card["customer"]["criteria"] == answers


def test_a_substitute_who_left_serves_nobody_and_the_stage_team_takes_the_call() -> None:
    customer = Customer("c1", account_manager="anna")
    deal = Deal("d1", "c1", owner="anna", stage="approval", last_activity=1.0)
    stages = {"approval": StageRule("approval", "sales", "owner", 60.0)}
    away = [Vacation(1, "anna", 0.0, 100.0, substitute="vera")]
    routed = route_repeat(customer, [deal], stages, away, 50.0, serving={"anna", "boris"})
    assert routed.preferred == () and routed.team == "sales" and routed.wait is None
    assert "vera inactive" in routed.reason
    assert route_repeat(customer, [deal], stages, away, 50.0).preferred == ("vera",)  # without a roster, as before
