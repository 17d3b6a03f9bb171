"""A deal moved on while its customer's contact waits: the contact follows the deal, through a
real server on 127.0.0.1, on SQLite and PostgreSQL."""

from __future__ import annotations

from api_fixtures import Running
from reroute_fixtures import customer, lead, seen

PHONE = "+7 916 123-45-67"


async def deal_in_approval(r: Running, owner: str) -> tuple[str, str]:
    cid = await customer(r, "ООО Ромашка", PHONE)
    status, d = await r.call(
        "POST", "/api/crm/deals", r.supervisor, json={"customer_id": cid, "stage": "approval", "owner": owner}
    )
    assert status == 201 and d["stage"] == "approval", d
    return cid, d["id"]


async def test_a_waiting_contact_follows_its_deal_to_delivery_and_one_being_worked_stays(running: Running) -> None:
    _, deal = await deal_in_approval(running, owner="boris")
    boris = await running.manager_token("boris")
    worked = await lead(running, PHONE)
    assert worked["offered_to"] == "boris"
    status, _ = await running.call("POST", f"/api/contacts/{worked['id']}/accept", boris)
    assert status == 200
    waiting = await lead(running, PHONE)
    assert waiting["preferred"] == ["boris"] and waiting["team"] == "sales"
    assert waiting["offered_to"] == "boris"  # web leads: boris has room for another

    status, d = await running.call(
        "POST", f"/api/crm/deals/{deal}/stage", boris, json={"stage": "delivery", "stage_owner": "egor"}
    )
    assert status == 200 and d["stage"] == "delivery", d

    now = await seen(running, str(waiting["id"]))
    assert now["preferred"] == ["egor"] and now["team"] == "logistics" and now["first_wait"] == 0
    assert now["offered_to"] == "egor" and now["seq"] == waiting["seq"]
    assert now["declined_by"] == []  # withdrawn from boris, not held against him
    still = await seen(running, str(worked["id"]))
    assert still["preferred"] == ["boris"] and still["assigned_to"] == "boris" and still["team"] == "sales"
    status, me = await running.call("GET", "/api/managers/boris", running.supervisor)
    assert status == 200 and me["presence"] in ("available", "busy") and me["missed_in_row"] == 0, me

    stored = await running.server.store.get_contact(str(waiting["id"]))
    assert stored is not None and stored.preferred == ("egor",) and stored.team == "logistics"
    assert stored.first_wait == 0 and stored.payload.get("deal_id") == deal
    status, log = await running.call("GET", f"/api/decisions?contact_id={waiting['id']}", running.supervisor)
    assert status == 200
    kinds = [(x["kind"], x["manager_id"]) for x in log["decisions"]]
    assert kinds[:2] == [("offer", "egor"), ("reroute", None)]  # newest first
    why = log["decisions"][1]["summary"]
    assert f"deal {deal} moved from stage 'approval' to 'delivery'" in why and "offer to boris withdrawn" in why


async def test_a_closed_deal_sends_a_waiting_contact_back_to_the_account_manager(running: Running) -> None:
    cid, deal = await deal_in_approval(running, owner="boris")
    status, _ = await running.call(
        "PATCH", f"/api/crm/customers/{cid}", running.supervisor, json={"account_manager": "vera"}
    )
    assert status == 200
    await running.call("POST", "/api/managers/boris/presence", running.supervisor, json={"state": "paused"})
    await running.call("POST", "/api/managers/vera/presence", running.supervisor, json={"state": "paused"})
    waiting = await lead(running, PHONE)
    assert waiting["preferred"] == ["boris"]
    status, _ = await running.call("POST", f"/api/crm/deals/{deal}/close", running.supervisor, json={"outcome": "lost"})
    assert status == 200
    now = await seen(running, str(waiting["id"]))
    assert now["preferred"] == ["vera"] and now["team"] == "sales"  # the default team: no stage serves it now
    assert now["offered_to"] != "boris"
    stored = await running.server.store.get_contact(str(waiting["id"]))
    assert stored is not None and stored.preferred == ("vera",) and stored.first_wait is None
    status, log = await running.call("GET", f"/api/decisions?contact_id={waiting['id']}", running.supervisor)
    assert any(x["kind"] == "reroute" and f"deal {deal} closed as lost" in x["summary"] for x in log["decisions"])
