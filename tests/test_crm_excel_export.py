"""The CRM's exports (customers.csv, deals.csv) in their Excel variant (`?excel=1`): ";"
between cells, amounts with a decimal comma, dates day first in the site's time, UTF-8 with
a BOM, text that looks like a formula made inert; and the import reads that file back, so
export?excel=1 → import changes nothing, and an amount corrected in it is taken. The plain
export (no parameter) is as before. Through a real server, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io

from api_fixtures import Running

from acd.crm import csvio

BOM = "\ufeff".encode()

CUSTOMERS = (
    "id,name,kind,phone,email,account_manager,note\n"
    "k1,ООО Альфа,company,+7 495 000-00-01;8 916 000 00 01,a@alfa.ru,anna,\n"
    'k2,=HYPERLINK("http://x"),person,+7 495 000-00-02,,,-VIP; звонить после 18:00\n'
    "k3,@Бета,company,,b@beta.ru,,+1 к скидке\n"
)
DEALS = (
    "id,customer_id,title,amount,status,owner,stage,opened,closed,purpose,price_tier,temperature\n"
    'h1,k1,"Лицензии, 50 шт","1 200 000,50",won,anna,,2025-01-10T09:30,2025-02-01T14:05:07,purchase,high,hot\n'
    "h2,k1,=1+1,,lost,anna,,2025-03-01,2025-03-20,renewal,low,cold\n"
    "h3,k2,Поставка,99.25,open,boris,,2025-04-01,,purchase,low,hot\n"
)


async def _get(running: Running, path: str) -> bytes:
    async with running.session.get(
        running.url(path), headers={"Authorization": f"Bearer {running.supervisor}"}
    ) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.headers["Content-Type"].startswith("text/csv")
        return await resp.read()


async def _import(running: Running, what: str, body: bytes) -> dict[str, object]:
    status, report = await running.call("POST", f"/api/crm/import/{what}", running.admin, data=body)
    assert status == 200, report
    assert report["rejected"] == [] and report["warnings"] == [], report
    return report  # type: ignore[no-any-return]


async def _stored(running: Running) -> tuple[bytes, bytes]:
    return await _get(running, "/api/crm/export/customers.csv"), await _get(running, "/api/crm/export/deals.csv")


def _rows(body: bytes) -> dict[str, dict[str, str]]:
    assert body.startswith(BOM)
    return {r["id"]: r for r in csv.DictReader(io.StringIO(body.decode("utf-8")[1:]), delimiter=";")}


async def test_the_excel_variant_is_what_russian_excel_reads(running: Running) -> None:
    await _import(running, "customers", CUSTOMERS.encode())
    await _import(running, "deals", DEALS.encode())

    customers = _rows(await _get(running, "/api/crm/export/customers.csv?excel=1"))
    # a formula's start made inert: a formula giving the text (tests/test_excel_text_cells.py)
    assert customers["k1"]["phone"] == '="+74950000001;+79160000001"'
    assert customers["k2"]["name"] == '="=HYPERLINK(""http://x"")"'
    assert customers["k2"]["note"] == '="-VIP; звонить после 18:00"'
    assert customers["k3"]["name"] == '="@Бета"' and customers["k3"]["note"] == '="+1 к скидке"'

    deals = _rows(await _get(running, "/api/crm/export/deals.csv?excel=1"))
    assert deals["h1"]["amount"] == "1200000,5" and deals["h3"]["amount"] == "99,25"
    assert deals["h2"]["amount"] == "" and deals["h2"]["title"] == '="=1+1"'
    assert deals["h1"]["title"] == "Лицензии, 50 шт"
    assert (deals["h1"]["opened"], deals["h1"]["closed"]) == ("10.01.2025 09:30:00", "01.02.2025 14:05:07")
    assert (deals["h3"]["opened"], deals["h3"]["closed"]) == ("01.04.2025 00:00:00", "")


async def test_the_plain_export_is_as_before(running: Running) -> None:
    await _import(running, "customers", CUSTOMERS.encode())
    await _import(running, "deals", DEALS.encode())
    customers, deals = await _stored(running)
    assert customers == await _get(running, "/api/crm/export/customers.csv?excel=0")
    assert not customers.startswith(BOM) and customers.startswith(b"id,name,kind,phone,email")
    text = deals.decode()
    assert ",1200000.5,won," in text and "2025-02-01T14:05:07+03:00" in text and "\r" not in text
    assert '=HYPERLINK(""http://x"")' in customers.decode()  # as before: the plain file is for machines
    status, body = await running.call("GET", "/api/crm/export/deals.csv?excel=true", running.supervisor)
    assert status == 400 and "excel" in str(body)


async def test_export_for_excel_then_import_changes_nothing(running: Running) -> None:
    await _import(running, "customers", CUSTOMERS.encode())
    await _import(running, "deals", DEALS.encode())
    before = await _stored(running)

    customers = await _get(running, "/api/crm/export/customers.csv?excel=1")
    deals = await _get(running, "/api/crm/export/deals.csv?excel=1")
    assert customers.startswith(BOM + b"id;name;") and deals.startswith(BOM + b"id;customer_id;")
    report = await _import(running, "customers", customers)
    assert (report["imported"], report["customers_created"]) == (3, 0)
    report = await _import(running, "deals", deals)
    assert (report["imported"], report["customers_created"]) == (3, 0)
    assert await _stored(running) == before


async def test_an_amount_corrected_in_the_excel_file_is_imported(running: Running) -> None:
    await _import(running, "customers", CUSTOMERS.encode())
    await _import(running, "deals", DEALS.encode())
    body = (await _get(running, "/api/crm/export/deals.csv?excel=1")).decode("utf-8")
    # as Excel saves it again: its own number format, with a non-breaking space in thousands
    edited = body.replace(";1200000,5;", ";1\u00a0300\u00a0000,75;").replace(';"=""=1+1""";', ";Продление;")
    await _import(running, "deals", edited.encode("utf-8-sig"))
    status, card = await running.call("GET", "/api/crm/customers/k1", running.supervisor)
    assert status == 200
    assert {d["id"]: (d["amount"], d["title"]) for d in card["deals"]} == {
        "h1": (1_300_000.75, "Лицензии, 50 шт"),
        "h2": (None, "Продление"),
    }


def test_many_deals_for_excel_are_read_with_their_semicolons() -> None:
    """A file longer than the sample the import sniffs its separator from, every row with a
    decimal comma: still read by ";"."""
    from acd.crm.model import Deal, DealStatus

    deals = [
        Deal(
            f"d{i}",
            "k1",
            title=f"t{i}",
            amount=1000.5 + i,
            owner="anna",
            status=DealStatus.WON,
            opened_at=1e9,
            closed_at=1e9,
        )
        for i in range(200)
    ]
    text = csvio.deals_csv(deals, "Europe/Moscow", ["purpose"], excel=True)
    parsed = csvio.parse_deals(text, "RU", "Europe/Moscow", ["anna"], ["new"], {"purpose": ["purchase"]})
    assert parsed.rejected == [] and len(parsed.deals) == 200
    assert [d.amount for d in parsed.deals[:2]] == [1000.5, 1001.5]
