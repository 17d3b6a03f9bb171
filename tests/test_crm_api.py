"""The CRM through a real server on 127.0.0.1, on SQLite and PostgreSQL: recognition at
intake, repeat customers routed by their deal's stage (and around vacations), the funnel,
ratings from closed deals, import with rejected rows, export."""

from __future__ import annotations

import asyncio
import secrets
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from api_fixtures import Running

from acd.api.crm import CRM
from acd.crm import csvio

HOT_BIG = {"temperature": "hot", "purpose": "purchase", "price_tier": "high"}


async def customer_with_deal(r: Running, stage: str, owner: str, stage_owner: str | None = None) -> tuple[str, str]:
    status, c = await r.call(
        "POST", "/api/crm/customers", r.supervisor, json={"name": "ООО Ромашка", "phones": ["+7 916 123-45-67"]}
    )
    assert status == 201, c
    status, d = await r.call(
        "POST", "/api/crm/deals", r.supervisor, json={"customer_id": c["id"], "title": "50 licences", "owner": owner}
    )
    assert status == 201, d
    status, d = await r.call(
        "POST", f"/api/crm/deals/{d['id']}/stage", r.supervisor, json={"stage": stage, "stage_owner": stage_owner}
    )
    assert status == 200 and d["stage"] == stage, d
    return c["id"], d["id"]


async def lead(r: Running, phone: str, **extra: object) -> dict[str, object]:
    status, body = await r.call(
        "POST", "/api/leads", json={"name": "Иван", "phone": phone, "criteria": HOT_BIG, **extra}
    )
    assert status == 201, body
    await r.settle()
    status, seen = await r.call("GET", f"/api/contacts/{body['id']}", r.supervisor)
    assert status == 200
    return seen  # type: ignore[no-any-return]


async def test_a_first_lead_creates_its_customer_and_a_second_from_another_format_finds_it(running: Running) -> None:
    first = await lead(running, "+7 (495) 123-45-67", email="Ivan@Example.ru")
    assert first["customer_id"]
    second = await lead(running, "8 495 1234567")
    third = await running.call(
        "POST", "/api/leads", running.supervisor, json={"email": "ivan@example.RU", "criteria": HOT_BIG}
    )
    assert second["customer_id"] == first["customer_id"] == third[1]["customer_id"]
    status, card = await running.call("GET", "/api/crm/lookup?phone=84951234567", running.supervisor)
    assert status == 200 and card["customer"]["phones"] == ["+74951234567"]
    assert card["customer"]["emails"] == ["ivan@example.ru"]
    assert len(card["contacts"]) == 3
    status, _ = await running.call("GET", "/api/crm/lookup?phone=+74950000000", running.supervisor)
    assert status == 404


async def test_a_customer_whose_deal_is_in_delivery_reaches_the_logistics_owner(running: Running) -> None:
    cid, _ = await customer_with_deal(running, "delivery", owner="anna", stage_owner="egor")
    seen = await lead(running, "8 (916) 123-45-67")
    assert seen["customer_id"] == cid
    assert seen["preferred"] == ["egor"] and seen["team"] == "logistics"
    assert seen["offered_to"] == "egor"  # not anna, the best-rated seller


async def test_when_the_logistics_owner_is_on_vacation_their_substitute_gets_the_call(running: Running) -> None:
    await customer_with_deal(running, "delivery", owner="anna", stage_owner="egor")
    today = datetime.now(ZoneInfo("Europe/Moscow")).date()
    vacation = {
        "manager_id": "egor",
        "first_day": str(today - timedelta(days=1)),
        "last_day": str(today + timedelta(days=7)),
        "substitute": "daria",
    }
    status, v = await running.call("POST", "/api/crm/vacations", running.supervisor, json=vacation)
    assert status == 201, v
    seen = await lead(running, "+79161234567")
    assert seen["preferred"] == ["daria"] and seen["offered_to"] == "daria"
    status, _ = await running.call("DELETE", f"/api/crm/vacations/{v['id']}", running.supervisor)
    assert status == 200
    assert (await lead(running, "+79161234567"))["preferred"] == ["egor"]


async def test_a_deal_in_a_sales_stage_goes_to_its_owner_and_escalates_when_they_are_away(running: Running) -> None:
    await customer_with_deal(running, "approval", owner="boris")
    seen = await lead(running, "+79161234567")
    assert seen["preferred"] == ["boris"] and seen["offered_to"] == "boris"
    boris = await running.manager_token("boris")
    await running.call("POST", f"/api/contacts/{seen['id']}/decline", boris, json={})
    await running.call("POST", "/api/managers/boris/presence", running.supervisor, json={"state": "paused"})
    again = await lead(running, "+79161234567")
    assert again["preferred"] == ["boris"]
    assert again["offered_to"] not in (None, "boris")  # the preferred step is skipped at once: nobody staffed


async def test_finishing_a_contact_opens_and_closes_its_deal_in_one_step_and_ratings_follow(running: Running) -> None:
    seen = await lead(running, "+7 903 555-44-33")
    anna = await running.manager_token(str(seen["offered_to"]))
    mid = seen["offered_to"]
    status, _ = await running.call("POST", f"/api/contacts/{seen['id']}/accept", anna)
    assert status == 200
    status, out = await running.call(
        "POST", f"/api/crm/contacts/{seen['id']}/finish", anna, json={"outcome": "won", "amount": 1_500_000}
    )
    assert status == 200, out
    assert out["contact"]["status"] == "finished" and out["contact"]["outcome"] == "won"
    deal = out["deal"]
    assert deal["status"] == "won" and deal["amount"] == 1_500_000 and deal["owner"] == mid
    assert deal["segment"] == HOT_BIG
    status, full = await running.call("GET", f"/api/crm/deals/{deal['id']}", anna)
    assert [e["kind"] for e in full["history"]] == ["opened", "won"]
    status, card = await running.call("GET", f"/api/crm/ratings/{mid}", anna)
    assert status == 200 and card["overall"]["deals"] == 1 and card["overall"]["wins"] == 1
    assert "k·p_team" in card["overall"]["formula"] and len(card["overall"]["interval"]) == 2
    other = await running.manager_token("boris")
    status, _ = await running.call("GET", f"/api/crm/ratings/{mid}", other)
    assert status == 403


async def test_rotation_hands_customers_and_open_deals_over_and_keeps_the_history(running: Running) -> None:
    cid, _ = await customer_with_deal(running, "approval", owner="vera")
    await running.call("PATCH", f"/api/crm/customers/{cid}", running.supervisor, json={"account_manager": "vera"})
    status, out = await running.call(
        "POST", "/api/crm/rotation", running.supervisor, json={"from_manager": "vera", "to": ["boris"]}
    )
    assert status == 200 and out == {"customers": 1, "pins": 0, "open_deals": 1}
    status, card = await running.call("GET", f"/api/crm/customers/{cid}", running.supervisor)
    assert card["customer"]["account_manager"] == "boris"
    assert card["deals"][0]["owner"] == "boris"
    kinds = [(e["kind"], e["manager_id"]) for e in card["history"]]
    assert ("account_manager", "vera") in kinds and ("owner", "boris") in kinds


async def test_a_pinned_client_reaches_the_pinned_manager_and_is_marked_override(running: Running) -> None:
    first = await lead(running, "+7 903 111-22-33")
    status, c = await running.call(
        "POST", f"/api/crm/customers/{first['customer_id']}/pin", running.supervisor, json={"manager_id": "vera"}
    )
    assert status == 200 and c["pinned_to"] == "vera"
    again = await lead(running, "+79031112233")
    assert again["preferred"] == ["vera"] and again["offered_to"] == "vera" and again["override"] is True


DEALS_CSV = """\
id,customer_name,customer_phone,title,amount,status,owner,stage,opened,closed,purpose,price_tier,temperature
h1,ООО Альфа,+7 495 000-00-01,Licences,"1 200 000,50",won,anna,,2025-01-10,2025-02-01,purchase,high,hot
h2,ООО Альфа,8 495 000-00-01,Renewal,,lost,anna,,2025-03-01,2025-03-20,renewal,low,cold
h3,ООО Бета,+7 495 000-00-02,X,100,maybe,anna,,2025-01-01,2025-01-02,purchase,low,hot
h4,ООО Бета,+7 495 000-00-02,X,100,won,nobody,,2025-01-01,2025-01-02,purchase,low,hot
h5,ООО Бета,+7 495 000-00-02,X,,won,boris,,2025-01-01,2025-01-02,purchase,low,hot
h6,ООО Бета,+7 495 000-00-02,X,100,won,boris,,2025-13-01,2025-01-02,purchase,low,hot
h7,ООО Бета,+7 495 000-00-02,X,100,won,boris,,2025-01-01,2025-01-02,purchase,enormous,hot
h8,ООО Гамма,not-a-phone,X,100,won,boris,,2025-01-01,2025-01-02,purchase,low,hot
"""


async def test_importing_deals_reports_rejected_rows_and_rates_from_the_good_ones(running: Running) -> None:
    status, report = await running.call("POST", "/api/crm/import/deals", running.admin, data=DEALS_CSV.encode())
    assert status == 200, report
    assert report["imported"] == 2 and report["customers_created"] == 1
    reasons = {r["line"]: r["reason"] for r in report["rejected"]}
    assert sorted(reasons) == [4, 5, 6, 7, 8, 9]
    assert reasons[4].startswith("status") and reasons[5].startswith("owner")
    assert reasons[6].startswith("amount") and reasons[7].startswith("opened")
    assert reasons[8].startswith("price_tier") and reasons[9].startswith("customer_phone")
    status, card = await running.call("GET", "/api/crm/lookup?phone=+74950000001", running.supervisor)
    assert [d["amount"] for d in card["deals"]] == [None, 1200000.5]
    status, r = await running.call("GET", "/api/crm/ratings/anna", running.supervisor)
    assert (r["overall"]["deals"], r["overall"]["wins"]) == (2, 1)
    status, text = await running.call("GET", "/api/crm/export/deals.csv", running.supervisor)
    assert status == 200 and text.splitlines()[0].startswith("id,customer_id") and len(text.splitlines()) == 3


async def test_importing_customers_reports_rejected_rows_and_export_round_trips(running: Running) -> None:
    rows = (
        "name,phone,email,account_manager\n"
        "Альфа,+7 495 000-00-01;8 916 000 00 01,a@alfa.ru,anna\n"
        "Бета,12,,\n"
        "Гамма,,g@gamma,\n"
        "Дельта,,d@delta.ru,nobody\n"
        ",,,\n"
    )
    status, report = await running.call("POST", "/api/crm/import/customers", running.admin, data=rows.encode())
    assert status == 200 and report["imported"] == 1
    assert [r["line"] for r in report["rejected"]] == [3, 4, 5, 6]
    status, text = await running.call("GET", "/api/crm/export/customers.csv", running.supervisor)
    assert "+74950000001;+79160000001" in text and "a@alfa.ru" in text


async def test_the_ratings_provider_is_the_one_the_switchboard_uses(running: Running) -> None:
    crm = running.server.app[CRM]
    assert running.server.dispatcher.board.ratings is crm.ratings
    _, doc = await running.call("GET", "/api/openapi.json")
    assert "/api/crm/deals/{deal_id}/close" in doc["paths"]


async def test_the_client_card_shows_the_customers_deals_and_their_stages(running: Running) -> None:
    cid, _ = await customer_with_deal(running, "delivery", owner="anna", stage_owner="egor")
    lead_body = await lead(running, "+79161234567")
    await running.settle()
    status, card = await running.call("GET", f"/api/contacts/{lead_body['id']}/card", running.supervisor)
    assert status == 200
    assert card["customer"]["id"] == cid
    assert [(d["stage"], d["status"]) for d in card["deals"]] == [("delivery", "open")]
    assert card["deals"][0]["stage_label"]["ru"]


async def test_ratings_are_recomputed_periodically_so_untouched_leads_age_into_losses(
    backend,
    monkeypatch,  # type: ignore[no-untyped-def]
) -> None:
    from api_fixtures import example_deployment, start, stop

    import acd.app

    monkeypatch.setattr(acd.app, "RATINGS_RECOMPUTE_EVERY", 0.05)
    r = await start(backend, example_deployment())
    try:
        crm = r.server.app[acd.app.CRM]
        calls = 0
        done = asyncio.Event()
        real = crm.recompute

        async def counted():  # type: ignore[no-untyped-def]
            nonlocal calls
            calls += 1
            if calls >= 2:
                done.set()
            return await real()

        crm.recompute = counted  # type: ignore[method-assign]
        await asyncio.wait_for(done.wait(), 5)
    finally:
        await stop(r)


async def test_a_repeat_customer_waits_for_their_person_as_long_as_the_stage_says(running: Running) -> None:
    await customer_with_deal(running, "approval", owner="boris")
    seen = await lead(running, "+79161234567")
    approval = next(s for s in running.server.deployment.funnel_stages if s.name == "approval")
    assert seen["preferred"] == ["boris"]
    contact = running.server.dispatcher.board.contacts.get(seen["id"]) or await running.server.store.get_contact(
        seen["id"]
    )
    assert contact is not None and contact.first_wait == approval.wait


async def test_sales_leaders_carry_a_forecast_at_each_managers_present_pace(running: Running) -> None:
    today = datetime.now(ZoneInfo("Europe/Moscow")).date()
    rows = [DEALS_CSV.splitlines()[0]]
    for i in range(9):  # anna: nine deals in the last 90 days, six won
        day = (today - timedelta(days=5 + 9 * i)).isoformat()
        status, amount = ("won", "100000") if i < 6 else ("lost", "")
        rows.append(f"a{i},Client {i},+7 495 100-00-{i:02d},X,{amount},{status},anna,,{day},{day},purchase,mid,hot")
    long_ago = (today - timedelta(days=200)).isoformat()  # counts for the rating, not for the pace
    rows.append(f"b0,Client B,+7 495 200-00-00,X,50000,won,boris,,{long_ago},{long_ago},purchase,mid,hot")
    status, report = await running.call("POST", "/api/crm/import/deals", running.admin, data="\n".join(rows).encode())
    assert status == 200 and report["imported"] == 10, report

    status, board = await running.call("GET", "/api/crm/ratings", running.supervisor)
    assert status == 200
    by_id = {r["manager_id"]: r for r in board["managers"]}
    anna, boris = by_id["anna"]["forecast"], by_id["boris"]["forecast"]
    assert anna["days"] == 30 and anna["opportunities"] == 3.0  # 9 in 90 days
    status, card = await running.call("GET", "/api/crm/ratings/anna", running.supervisor)
    overall = card["overall"]
    assert anna["wins"] == round(3.0 * overall["win_rate"], 1)
    assert abs(anna["revenue"] - 3.0 * overall["expected_value"]) < 1.0
    assert boris["opportunities"] == 0.0 and boris["revenue"] == 0.0  # no recent pace, whatever his rating
    assert "per day" in anna["method"]


async def test_an_email_longer_than_an_address_can_be_is_refused(running: Running) -> None:
    """On PostgreSQL a key of kilobytes cannot go into the key index: refused as the
    client's mistake (400), not answered as the database being away (503)."""
    for email in ("x" * 244 + "@example.ru", secrets.token_urlsafe(6000) + "@example.ru"):
        status, body = await running.call(
            "POST", "/api/crm/customers", running.supervisor, json={"name": "ООО Длинный", "emails": [email]}
        )
        assert status == 400 and body["error"]["code"] == "invalid", body


async def test_an_import_takes_what_russian_excel_saves_and_refuses_a_file_that_is_not_text(running: Running) -> None:
    """Excel in a Russian locale saves "CSV" in Windows-1251 and "Unicode text" in UTF-16:
    both were a 500 (the body was read as UTF-8). A file holding NUL characters is not a
    CSV text at all (and PostgreSQL could not store one): a 400 that says what to do."""
    table = "name,phone\nАльфа {},+7 495 000-00-0{}\n"
    encodings = ("cp1251", "utf-16", "utf-8-sig")
    for i, encoding in enumerate(encodings):
        body = table.format(encoding, i).encode(encoding)
        status, report = await running.call("POST", "/api/crm/import/customers", running.admin, data=body)
        assert status == 200 and report["imported"] == 1, (encoding, status, report)
    _, found = await running.call("GET", "/api/crm/customers", running.supervisor)
    assert {c["name"] for c in found["customers"]} == {f"Альфа {e}" for e in encodings}
    for body in ("name,phone\nБета\x00,+7 495 000-00-02\n".encode(), table.encode("utf-16-le")):  # no BOM
        status, answer = await running.call("POST", "/api/crm/import/customers", running.admin, data=body)
        assert status == 400 and "CSV UTF-8" in answer["error"]["message"], (body[:20], status, answer)
    status, answer = await running.call(
        "POST", "/api/crm/import/deals", running.admin, data=b"customer_name,status\n\xd0\x91\x00,open\n"
    )
    assert status == 400 and answer["error"]["code"] == "not_text"


async def test_an_id_too_long_for_a_key_rejects_its_row_and_the_import_goes_on(running: Running) -> None:
    """PostgreSQL's index cannot hold an id of kilobytes: the whole import stopped there
    (a 503, and the rows before it stored). Now that row is rejected with its reason."""
    big = "x" * (csvio.ID_MAX + 1)
    rows = f"id,name,phone\n{big},Альфа,+7 495 000-00-01\nc2,Бета,+7 495 000-00-02\n"
    status, report = await running.call("POST", "/api/crm/import/customers", running.admin, data=rows.encode())
    assert status == 200 and report["imported"] == 1
    assert [(r["line"], r["reason"]) for r in report["rejected"]] == [(2, f"id: at most {csvio.ID_MAX} characters")]
    deals = (
        "id,customer_id,customer_name,amount,status,owner,opened,closed\n"
        f"{big},,Гамма,100,won,anna,2025-01-10,2025-02-01\n"
        f"d2,{big},Гамма,100,won,anna,2025-01-10,2025-02-01\n"
        "d3,,Гамма,100,won,anna,2025-01-10,2025-02-01\n"
    )
    status, report = await running.call("POST", "/api/crm/import/deals", running.admin, data=deals.encode())
    assert status == 200 and report["imported"] == 1
    assert [r["reason"] for r in report["rejected"]] == [
        f"id: at most {csvio.ID_MAX} characters",
        f"customer_id: at most {csvio.ID_MAX} characters",
    ]


async def test_a_customer_search_ignores_case_in_cyrillic_too(running: Running) -> None:
    """SQLite folds the case of ASCII letters only: "альфа" missed "ООО «Альфа»" on the
    default database and found it on PostgreSQL."""
    for name in ("ООО «Альфа»", "Ёлка и Ко", "Alpha Ltd"):
        status, _ = await running.call("POST", "/api/crm/customers", running.supervisor, json={"name": name})
        assert status == 201
    for query, found in (
        ("альфа", "ООО «Альфа»"),
        ("АЛЬФА", "ООО «Альфа»"),
        ("ёлка", "Ёлка и Ко"),
        ("ALPHA", "Alpha Ltd"),
    ):
        _, body = await running.call("GET", "/api/crm/customers", running.supervisor, params={"q": query})
        assert [c["name"] for c in body["customers"]] == [found], query


async def test_a_customer_search_takes_percent_and_underscore_as_typed(running: Running) -> None:
    """They were LIKE's wildcards: "50%" found every name with a 50 in it."""
    for name in ("Скидка 50% и Ко", "Рост 500 ООО", "a_b\\c", "axb"):
        status, _ = await running.call("POST", "/api/crm/customers", running.supervisor, json={"name": name})
        assert status == 201
    for query, found in (("50%", ["Скидка 50% и Ко"]), ("a_b", ["a_b\\c"]), ("b\\c", ["a_b\\c"]), ("50", None)):
        _, body = await running.call("GET", "/api/crm/customers", running.supervisor, params={"q": query})
        names = sorted(c["name"] for c in body["customers"])
        assert names == (found or ["Рост 500 ООО", "Скидка 50% и Ко"]), query
