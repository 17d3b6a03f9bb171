"""A vacation recorded or cancelled while a customer's contact waits: the contacts its manager
serves go to the substitute, and back when it is cancelled; nobody else's is touched, and a
vacation that has not begun changes nothing yet. Through a real server on 127.0.0.1, on SQLite and
PostgreSQL."""

from __future__ import annotations

from datetime import date, timedelta

from api_fixtures import Running
from reroute_fixtures import customer, lead, reroutes, seen


async def vacation(r: Running, manager: str, first: date, last: date, substitute: str | None) -> int:
    body = {"manager_id": manager, "first_day": first.isoformat(), "last_day": last.isoformat()}
    status, v = await r.call("POST", "/api/crm/vacations", r.supervisor, json={**body, "substitute": substitute})
    assert status == 201, v
    return int(v["id"])


async def test_a_vacation_sends_its_managers_waiting_contacts_to_the_substitute_and_back(running: Running) -> None:
    r = running
    await customer(r, "ООО Ромашка", "+7 916 500-00-01", account_manager="boris")
    await customer(r, "ООО Клевер", "+7 916 500-00-02", account_manager="anna")
    mine = await lead(r, "+7 916 500-00-01")
    assert mine["preferred"] == ["boris"] and mine["offered_to"] == "boris"
    other = await lead(r, "+7 916 500-00-02")
    assert other["preferred"] == ["anna"] and other["offered_to"] == "anna"

    today = date.today()
    later = await vacation(r, "boris", today + timedelta(days=10), today + timedelta(days=20), "vera")
    status, _ = await r.call("DELETE", f"/api/crm/vacations/{later}", r.supervisor)
    assert status == 200
    assert await reroutes(r, str(mine["id"])) == []  # not begun: it changes nothing yet
    status, body = await r.call("DELETE", f"/api/crm/vacations/{later}", r.supervisor)
    assert status == 404 and body["error"]["code"] == "no_such_vacation", body

    n = await vacation(r, "boris", today - timedelta(days=1), today + timedelta(days=7), "vera")
    now = await seen(r, str(mine["id"]))
    assert now["preferred"] == ["vera"] and now["offered_to"] == "vera" and now["seq"] == mine["seq"]
    assert now["crm_reason"] == "account manager boris; boris on vacation, substitute vera"
    assert now["declined_by"] == []
    (why,) = await reroutes(r, str(mine["id"]))
    assert f"vacation {n} of boris, substitute vera, recorded" in why and "offer to boris withdrawn" in why
    stored = await r.server.store.get_contact(str(mine["id"]))
    assert stored is not None and stored.preferred == ("vera",)

    status, _ = await r.call("DELETE", f"/api/crm/vacations/{n}", r.supervisor)
    assert status == 200
    back = await seen(r, str(mine["id"]))
    assert back["preferred"] == ["boris"] and back["offered_to"] == "boris" and back["seq"] == mine["seq"]
    assert back["crm_reason"] == "account manager boris"
    why = await reroutes(r, str(mine["id"]))
    assert len(why) == 2 and f"vacation {n} of boris, substitute vera, cancelled" in why[0]

    assert await reroutes(r, str(other["id"])) == []  # anna's customer: not hers to change
    still = await seen(r, str(other["id"]))
    assert still["preferred"] == ["anna"] and still["offered_to"] == "anna"


async def test_a_vacation_without_a_substitute_sends_the_contact_to_its_team(running: Running) -> None:
    r = running
    cid = await customer(r, "ООО Ромашка", "+7 916 700-00-01", account_manager="boris")
    status, d = await r.call(
        "POST", "/api/crm/deals", r.supervisor, json={"customer_id": cid, "stage": "feedback", "owner": "daria"}
    )
    assert status == 201, d
    mine = await lead(r, "+7 916 700-00-01")
    assert mine["preferred"] == ["daria"] and mine["team"] == "service" and mine["first_wait"] == 60
    today = date.today()
    await vacation(r, "daria", today, today + timedelta(days=3), None)
    now = await seen(r, str(mine["id"]))
    assert now["preferred"] == [] and now["team"] == "service" and now["first_wait"] is None
    assert now["offered_to"] == mine["offered_to"]  # an offer to anyone in the stage's team runs on
    assert "daria on vacation, no substitute" in now["crm_reason"] and now["seq"] == mine["seq"]
    (why,) = await reroutes(r, str(mine["id"]))
    assert "preferred daria, team service → preferred nobody, team service" in why
