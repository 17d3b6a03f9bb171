"""Text that Excel would mangle, in the Excel variant of the exports (`?excel=1`): a phone
(+79001234567, 89001234567) it would turn into 7,9E+10, a code losing its leading zeros (0012),
20 digits rounded to 15, "03.04" or "1-2" made a date, and customers' text starting with = + - @
run as a formula. Such a cell is written as a formula of one string constant, ="0012", its
quotes doubled so that nothing can end the constant early: Excel shows the very text and
computes none of it. Numbers and our own dates stay what Excel converts. The import reads the
file back to the same values. Through a real server, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from api_fixtures import Running

from acd.core.model import Channel, Contact, ContactStatus

BOM = "\ufeff".encode()

TWENTY = "12345678901234567890"
EVIL = '=1+1"&HYPERLINK("http://evil";"жми")&"'  # tries to end the string constant early
CUSTOMERS = (
    "id,name,kind,phone,email,account_manager,note\n"
    '0012,"=HYPERLINK(""http://x"";""y"")",company,+79001234567,,anna,89001234567\n'
    f'{TWENTY},"ООО ""Ромашка""",company,8 (900) 765-43-21,,,1-2\n'
    f'k3,"{EVIL.replace(chr(34), 2 * chr(34))}",person,,,,03.04\n'
    "k4,Гамма,person,,,,\n"
)
DEALS = (
    "id,customer_id,title,amount,status,owner,stage,opened,closed,purpose,price_tier,temperature\n"
    '00042,0012,03.04,"1500,5",won,anna,,2025-01-10T09:30,2025-02-01,purchase,high,hot\n'
    f"{TWENTY}1,{TWENTY},=СУММ(1;2),7,lost,boris,,2025-03-01,2025-03-20,renewal,low,cold\n"
)

# the cell as the Excel variant writes it, and the text Excel shows (the value imported back)
CUSTOMER_CELLS = {
    ("0012", "id"): ('="0012"', "0012"),
    ("0012", "name"): ('="=HYPERLINK(""http://x"";""y"")"', '=HYPERLINK("http://x";"y")'),
    ("0012", "phone"): ('="+79001234567"', "+79001234567"),
    ("0012", "note"): ('="89001234567"', "89001234567"),
    (TWENTY, "id"): (f'="{TWENTY}"', TWENTY),
    (TWENTY, "name"): ('ООО "Ромашка"', 'ООО "Ромашка"'),  # not a number, date or formula: as it is
    (TWENTY, "phone"): ('="+79007654321"', "+79007654321"),
    (TWENTY, "note"): ('="1-2"', "1-2"),
    ("k3", "name"): ('="=1+1""&HYPERLINK(""http://evil"";""жми"")&"""', EVIL),
    ("k3", "note"): ('="03.04"', "03.04"),
    ("k4", "name"): ('="=""0012"""', '="0012"'),
    ("k4", "note"): ('="\'+7 так записано"', "'+7 так записано"),
}


async def _load(running: Running) -> None:
    await _import(running, "customers", CUSTOMERS.encode())
    await _import(running, "deals", DEALS.encode())
    # text an import would read otherwise (="0012" is 0012, '+7 is +7): only the card can give it
    patch = {"name": '="0012"', "note": "'+7 так записано"}
    status, body = await running.call("PATCH", "/api/crm/customers/k4", running.admin, json=patch)
    assert status == 200, body


async def _get(running: Running, path: str) -> bytes:
    async with running.session.get(
        running.url(path), headers={"Authorization": f"Bearer {running.supervisor}"}
    ) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.read()


async def _import(running: Running, what: str, body: bytes) -> dict[str, object]:
    status, report = await running.call("POST", f"/api/crm/import/{what}", running.admin, data=body)
    assert status == 200, report
    assert report["rejected"] == [] and report["warnings"] == [], report
    return report  # type: ignore[no-any-return]


def _excel(body: bytes) -> dict[str, dict[str, str]]:
    """The rows of an Excel-variant export by their first cell as Excel shows it."""
    assert body.startswith(BOM)
    rows = list(csv.reader(io.StringIO(body.decode("utf-8")[1:]), delimiter=";"))
    return {_shown(r[0]): dict(zip(rows[0], r, strict=True)) for r in rows[1:]}


def _shown(cell: str) -> str:
    """What Excel shows for a cell of ours: a formula of one string constant is its text."""
    if cell.startswith('="') and cell.endswith('"'):
        inside = cell[2:-1]
        assert '"' not in inside.replace('""', ""), cell  # no quote can end the constant early
        return inside.replace('""', '"')
    return cell


async def _customers(running: Running) -> dict[str, dict[str, object]]:
    out = {}
    for cid in ("0012", TWENTY, "k3", "k4"):
        status, card = await running.call("GET", f"/api/crm/customers/{cid}", running.supervisor)
        assert status == 200, card
        customer = card["customer"]
        out[cid] = {k: customer[k] for k in ("id", "name", "phones", "note")}
        out[cid]["deals"] = sorted((d["id"], d["title"], d["amount"]) for d in card["deals"])
    return out


async def test_text_excel_would_mangle_is_written_as_a_formula_of_its_text(running: Running) -> None:
    await _load(running)

    customers = _excel(await _get(running, "/api/crm/export/customers.csv?excel=1"))
    for (cid, column), (cell, shown) in CUSTOMER_CELLS.items():
        assert customers[cid][column] == cell, (cid, column)
        assert _shown(cell) == shown
    assert customers["0012"]["kind"] == "company"  # plain words stay as they are

    deals = _excel(await _get(running, "/api/crm/export/deals.csv?excel=1"))
    assert deals["00042"]["id"] == '="00042"' and deals["00042"]["customer_id"] == '="0012"'
    assert deals["00042"]["title"] == '="03.04"'
    assert deals["00042"]["amount"] == "1500,5"  # a number stays a number
    assert deals["00042"]["opened"] == "10.01.2025 09:30:00"  # and our dates stay dates
    assert deals[f"{TWENTY}1"]["id"] == f'="{TWENTY}1"' and deals[f"{TWENTY}1"]["customer_id"] == f'="{TWENTY}"'
    assert deals[f"{TWENTY}1"]["title"] == '="=СУММ(1;2)"' and deals[f"{TWENTY}1"]["amount"] == "7,0"


async def test_the_excel_variant_imported_again_reads_the_same_text(running: Running) -> None:
    await _load(running)
    plain = (await _get(running, "/api/crm/export/customers.csv"), await _get(running, "/api/crm/export/deals.csv"))
    stored = await _customers(running)
    assert stored["k4"]["note"] == "'+7 так записано" and stored[TWENTY]["phones"] == ["+79007654321"]

    report = await _import(running, "customers", await _get(running, "/api/crm/export/customers.csv?excel=1"))
    assert (report["imported"], report["customers_created"]) == (4, 0)
    report = await _import(running, "deals", await _get(running, "/api/crm/export/deals.csv?excel=1"))
    assert (report["imported"], report["customers_created"]) == (2, 0)

    assert await _customers(running) == stored
    assert stored["0012"] == {
        "id": "0012",
        "name": '=HYPERLINK("http://x";"y")',
        "phones": ["+79001234567"],
        "note": "89001234567",
        "deals": [("00042", "03.04", 1500.5)],
    }
    assert (stored["k3"]["name"], stored["k3"]["note"], stored["k4"]["name"]) == (EVIL, "03.04", '="0012"')
    assert (
        await _get(running, "/api/crm/export/customers.csv"),
        await _get(running, "/api/crm/export/deals.csv"),
    ) == plain


async def test_the_reports_write_phones_and_codes_as_their_text(running: Running) -> None:
    zone = ZoneInfo(running.server.deployment.tz)
    day = datetime.fromtimestamp(running.server.services.clock(), zone).date() - timedelta(days=30)
    noon = datetime(day.year, day.month, day.day, 12, tzinfo=zone).timestamp()
    for cid, phone, name, note in (
        ("0042", "89001234567", '="0012"', "1-2"),
        ("0043", "+79001234567", f"{TWENTY}", "03.04"),
    ):
        await running.server.store.create_contact(
            Contact(
                id=cid,
                channel=Channel.WEB,
                arrived_at=noon,
                status=ContactStatus.ABANDONED,
                customer_name=name,
                phone=phone,
                payload={"note": note},
            )
        )
    rows = _excel(await _get(running, f"/api/export/contacts.csv?date={day}&excel=1"))
    assert rows["0042"]["id"] == '="0042"' and rows["0042"]["phone"] == '="89001234567"'
    assert rows["0042"]["name"] == '="=""0012"""' and rows["0042"]["note"] == '="1-2"'
    assert rows["0043"]["phone"] == '="+79001234567"' and rows["0043"]["name"] == f'="{TWENTY}"'
    assert rows["0043"]["note"] == '="03.04"' and rows["0043"]["arrived_at"] == f"{day:%d.%m.%Y} 12:00:00"

    text = (await _get(running, f"/api/export/contacts.csv?date={day}")).decode("utf-8-sig")
    plain = {r["id"]: r for r in csv.DictReader(io.StringIO(text))}  # the plain file as before
    assert (plain["0042"]["phone"], plain["0042"]["name"], plain["0042"]["note"]) == ("89001234567", '\'="0012"', "1-2")
    assert (plain["0043"]["phone"], plain["0043"]["name"]) == ("'+79001234567", TWENTY)
