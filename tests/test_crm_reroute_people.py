"""The people the CRM names for a customer change while the customer's contact waits (a
rotation, a new account manager, a supervisor's pin set or removed): the contact goes to the
new person at its place in the queue, through a real server on 127.0.0.1, on SQLite and
PostgreSQL."""

from __future__ import annotations

from api_fixtures import Running
from reroute_fixtures import customer, lead, reroutes, seen


async def test_a_rotation_takes_the_leaving_managers_waiting_contacts_to_the_heir(running: Running) -> None:
    r = running
    await customer(r, "ООО Ромашка", "+7 916 100-00-01", account_manager="boris")
    dealt = await customer(r, "ООО Лютик", "+7 916 100-00-02")
    status, d = await r.call(
        "POST", "/api/crm/deals", r.supervisor, json={"customer_id": dealt, "stage": "approval", "owner": "boris"}
    )
    assert status == 201, d
    pinned = await customer(r, "ООО Василёк", "+7 916 100-00-03", account_manager="anna")
    status, _ = await r.call("POST", f"/api/crm/customers/{pinned}/pin", r.supervisor, json={"manager_id": "boris"})
    assert status == 200
    await customer(r, "ООО Клевер", "+7 916 100-00-04", account_manager="anna")

    a = await lead(r, "+7 916 100-00-01")
    assert a["preferred"] == ["boris"] and a["offered_to"] == "boris"
    b = await lead(r, "+7 916 100-00-02")
    c = await lead(r, "+7 916 100-00-03")
    assert b["preferred"] == ["boris"] and c["preferred"] == ["boris", "anna"]
    other = await lead(r, "+7 916 100-00-04")
    assert other["preferred"] == ["anna"]

    status, out = await r.call(
        "POST", "/api/crm/rotation", r.supervisor, json={"from_manager": "boris", "to": ["vera"]}
    )
    assert status == 200 and out == {"customers": 2, "pins": 1, "open_deals": 1}, out

    now_a, now_b, now_c = [await seen(r, str(x["id"])) for x in (a, b, c)]
    assert now_a["preferred"] == ["vera"] and now_a["seq"] == a["seq"] and now_a["declined_by"] == []
    assert now_b["preferred"] == ["vera"] and now_b["team"] == "sales" and now_b["deal_id"] == d["id"]
    assert now_c["preferred"] == ["vera", "anna"]
    assert "vera" in (now_a["offered_to"], now_b["offered_to"], now_c["offered_to"])
    assert "boris" not in (now_a["offered_to"], now_b["offered_to"], now_c["offered_to"])
    status, boris = await r.call("GET", "/api/managers/boris", r.supervisor)
    assert status == 200 and boris["missed_in_row"] == 0 and boris["presence"] == "available", boris
    stored = await r.server.store.get_contact(str(a["id"]))
    assert stored is not None and stored.preferred == ("vera",)

    (why,) = await reroutes(r, str(a["id"]))
    assert "rotation: boris's customers and open deals handed to vera" in why and "offer to boris withdrawn" in why
    assert await reroutes(r, str(other["id"])) == []
    still = await seen(r, str(other["id"]))
    assert still["preferred"] == ["anna"] and still["offered_to"] == other["offered_to"]


async def test_a_new_account_manager_takes_the_waiting_contact_not_one_being_worked_nor_a_first_lead(
    running: Running,
) -> None:
    r = running
    first = await lead(r, "+7 916 200-00-09")  # a stranger's: sent where the ratings chose, a lead
    assert first["crm_reason"] == "new customer" and first["offered_to"]
    cid = await customer(r, "ООО Ромашка", "+7 916 200-00-01", account_manager="boris")
    boris = await r.manager_token("boris")
    worked = await lead(r, "+7 916 200-00-01")
    status, _ = await r.call("POST", f"/api/contacts/{worked['id']}/accept", boris)
    assert status == 200
    waiting = await lead(r, "+7 916 200-00-01")
    assert waiting["preferred"] == ["boris"] and waiting["offered_to"] == "boris"

    status, _ = await r.call("PATCH", f"/api/crm/customers/{cid}", r.supervisor, json={"note": "звонить после 10"})
    assert status == 200
    assert await reroutes(r, str(waiting["id"])) == []  # nothing routing reads changed

    status, c = await r.call("PATCH", f"/api/crm/customers/{cid}", r.supervisor, json={"account_manager": "vera"})
    assert status == 200 and c["account_manager"] == "vera"
    now = await seen(r, str(waiting["id"]))
    assert now["preferred"] == ["vera"] and now["offered_to"] == "vera" and now["seq"] == waiting["seq"]
    assert now["crm_reason"] == "account manager vera"
    (why,) = await reroutes(r, str(waiting["id"]))
    assert f"customer {cid}: account manager boris → vera" in why and "offer to boris withdrawn" in why
    still = await seen(r, str(worked["id"]))
    assert still["preferred"] == ["boris"] and still["assigned_to"] == "boris"
    stored = await r.server.store.get_contact(str(waiting["id"]))
    assert stored is not None and stored.preferred == ("vera",)

    status, _ = await r.call(
        "PATCH", f"/api/crm/customers/{first['customer_id']}", r.supervisor, json={"account_manager": "egor"}
    )
    assert status == 200
    now = await seen(r, str(first["id"]))
    assert now["preferred"] == first["preferred"] and now["offered_to"] == first["offered_to"]
    assert await reroutes(r, str(first["id"])) == []


async def test_a_pin_set_and_removed_while_the_contact_waits_moves_it_and_back(running: Running) -> None:
    r = running
    cid = await customer(r, "ООО Ромашка", "+7 916 300-00-01", account_manager="boris")
    status, _ = await r.call("POST", "/api/managers/boris/presence", r.supervisor, json={"state": "paused"})
    assert status == 200
    waiting = await lead(r, "+7 916 300-00-01")
    assert waiting["preferred"] == ["boris"] and waiting["offered_to"] != "vera"

    status, _ = await r.call("POST", f"/api/crm/customers/{cid}/pin", r.supervisor, json={"manager_id": "vera"})
    assert status == 200
    pinned = await seen(r, str(waiting["id"]))
    assert pinned["preferred"] == ["vera", "boris"] and pinned["offered_to"] == "vera"
    assert pinned["crm_reason"] == "pinned to vera; account manager boris" and pinned["seq"] == waiting["seq"]
    assert pinned["pinned_to"] is None  # the customer's pin: not the core's hard pin of one contact
    assert pinned["override"] is True  # a supervisor's placement: the ratings leave it out

    status, _ = await r.call("POST", f"/api/crm/customers/{cid}/pin", r.supervisor, json={"manager_id": None})
    assert status == 200
    back = await seen(r, str(waiting["id"]))
    assert back["preferred"] == ["boris"] and back["offered_to"] != "vera" and back["declined_by"] == []
    assert back["crm_reason"] == "account manager boris" and back["override"] is False
    status, vera = await r.call("GET", "/api/managers/vera", r.supervisor)
    assert status == 200 and vera["missed_in_row"] == 0 and vera["presence"] == "available", vera
    why = await reroutes(r, str(waiting["id"]))  # newest first
    assert len(why) == 2 and f"customer {cid}: unpinned from vera" in why[0] and "offer to vera withdrawn" in why[0]
    assert f"customer {cid}: pinned to vera" in why[1]
