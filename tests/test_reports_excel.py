"""The day report's CSV exports in their Excel variant (`?excel=1`): what a supervisor's
double-click opens right in Excel with Russian regional settings (";" between cells, a decimal
comma, dates day first in the site's time, UTF-8 by its BOM, formulas inert), while the plain
export (no parameter) stays as machines read it. And the day report's table of managers as an
export, in both variants. On the scripted day of tests/test_reports_day.py, on every backend."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from api_fixtures import Running
from test_reports_day import _day, closed_deals

from acd.core.model import Channel, Contact, ContactStatus
from acd.crm import csvio

BOM = "\ufeff".encode()


async def _get(running: Running, path: str) -> tuple[int, bytes]:
    async with running.session.get(
        running.url(path), headers={"Authorization": f"Bearer {running.supervisor}"}
    ) as resp:
        return resp.status, await resp.read()


async def _excel(running: Running, path: str) -> list[list[str]]:
    """The rows of an Excel-variant export, read as Excel in a Russian locale reads them."""
    status, body = await _get(running, path)
    assert status == 200, body
    assert body.startswith(BOM)  # Excel takes the file for UTF-8 only by its BOM
    text = body.decode("utf-8")[1:]
    return list(csv.reader(io.StringIO(text), delimiter=";"))


def _dicts(rows: list[list[str]]) -> dict[str, dict[str, str]]:
    head = rows[0]
    return {r[0]: dict(zip(head, r, strict=True)) for r in rows[1:]}


async def test_contacts_for_excel_have_semicolons_decimal_commas_and_russian_dates(running: Running) -> None:
    day, _ = await _day(running)
    rows = await _excel(running, f"/api/export/contacts.csv?date={day}&excel=1")
    assert rows[0][:4] == ["id", "arrived_at", "channel", "status"]  # the same columns
    by_id = _dicts(rows)
    assert [by_id[c]["wait_seconds"] for c in ("c1", "c2", "c3", "c4", "c5", "c6", "c7")] == [
        "10,0",
        "40,0",
        "240,0",
        "5400,0",
        "",
        "",
        "1200,0",
    ]
    assert by_id["c1"]["arrived_at"] == f"{day:%d.%m.%Y} 10:00:00"  # the site's time, day first
    assert by_id["c7"]["answered_at"] == f"{day + timedelta(days=1):%d.%m.%Y} 00:10:00"
    assert by_id["c1"]["finished_at"] == f"{day:%d.%m.%Y} 10:10:10"


async def test_the_plain_export_is_unchanged_by_the_excel_variant(running: Running) -> None:
    day, _ = await _day(running)
    plain = await _get(running, f"/api/export/contacts.csv?date={day}")
    assert plain == await _get(running, f"/api/export/contacts.csv?date={day}&excel=0")
    text = plain[1].decode("utf-8-sig")
    assert text.startswith("id,arrived_at,channel,") and ";" not in text.splitlines()[0]
    assert f"{day}T10:00:00+03:00" in text and ",10.0," in text
    for path in ("contacts", "decisions", "managers"):
        status, body = await _get(running, f"/api/export/{path}.csv?date={day}&excel=yes")
        assert status == 400 and b"excel" in body


async def test_customers_text_stays_inert_in_the_excel_variant(running: Running) -> None:
    zone = ZoneInfo(running.server.deployment.tz)
    day = datetime.fromtimestamp(running.server.services.clock(), zone).date() - timedelta(days=30)
    noon = datetime(day.year, day.month, day.day, 12, tzinfo=zone).timestamp()
    await running.server.store.create_contact(
        Contact(
            id="evil",
            channel=Channel.WEB,
            arrived_at=noon,
            status=ContactStatus.ABANDONED,
            customer_name='=HYPERLINK("http://x","y")',
            phone="+74951234567",
            payload={"note": "@SUM(1;2)"},
        )
    )
    row = _dicts(await _excel(running, f"/api/export/contacts.csv?date={day}&excel=1"))["evil"]
    assert row["name"] == '="=HYPERLINK(""http://x"",""y"")"'
    assert row["phone"] == '="+74951234567"' and row["note"] == '="@SUM(1;2)"'


async def test_decisions_for_excel(running: Running) -> None:
    day, _ = await _day(running)
    rows = await _excel(running, f"/api/export/decisions.csv?date={day}&excel=1")
    assert rows[0][:3] == ["at", "contact_id", "manager_id"]
    assert [(r[0], r[1], r[2]) for r in rows[1:3]] == [
        (f"{day:%d.%m.%Y} 10:00:02", "c1", "anna"),
        (f"{day:%d.%m.%Y} 10:30:05", "c2", "boris"),
    ]


MANAGERS = {
    # id: offered, answered, won, lost, conversion, response avg / longest, missed, paused s,
    #     deals won on the day, their amount, deals lost on the day
    "anna": ("4", "3", "2", "0", "1.0", "480.7", "1195.0", "1", "60", "2", "200000.0", "0"),
    "boris": ("2", "2", "0", "1", "0.0", "2712.5", "5390.0", "0", "34200", "0", "0.0", "1"),
}


def _manager(row: dict[str, str]) -> tuple[str, ...]:
    return tuple(
        row[k]
        for k in (
            "offered",
            "answered",
            "won",
            "lost",
            "conversion",
            "response_average_seconds",
            "response_longest_seconds",
            "missed",
            "paused_seconds",
            "won_deals",
            "won_amount",
            "lost_deals",
        )
    )


async def test_the_table_of_managers_as_an_export_in_both_variants(running: Running) -> None:
    day, zone = await _day(running)
    await closed_deals(running, day, zone)

    status, body = await _get(running, f"/api/export/managers.csv?date={day}")
    assert status == 200
    plain = {r["id"]: r for r in csv.DictReader(io.StringIO(body.decode("utf-8-sig")))}
    assert sorted(plain) == ["anna", "boris"]  # vera won nothing on the day and had no contacts
    for mid, expected in MANAGERS.items():
        assert _manager(plain[mid]) == expected, mid
    assert plain["anna"]["missed_contacts"] == "c5" and plain["anna"]["name"] != "anna"

    excel = _dicts(await _excel(running, f"/api/export/managers.csv?date={day}&excel=1"))
    assert excel.keys() == plain.keys()
    for mid, expected in MANAGERS.items():
        assert _manager(excel[mid]) == tuple(x.replace(".", ",") for x in expected), mid
    assert excel["anna"]["name"] == plain["anna"]["name"]


async def test_a_manager_with_deals_closed_on_the_day_but_no_contacts_has_a_row(running: Running) -> None:
    day, zone = await _day(running)
    await closed_deals(running, day, zone)
    status, report = await running.call("GET", f"/api/reports/day?date={day}", running.supervisor)
    assert status == 200
    report["managers"] = [m for m in report["managers"] if m["id"] != "anna"]  # as if anna took no contacts

    from acd.web.reports import manager_rows

    rows = {r[0]: r for r in manager_rows(report)[1:]}
    assert rows["anna"][2:8] == [0, 0, 0, 0, 0, 0] and rows["anna"][-3:] == [2, 200_000.0, 0]


def test_excel_cells() -> None:
    rows: list[list[Any]] = [["a", 1, 2.5, None, "-1", "x;y", True]]
    assert csvio.excel_table(rows) == '\ufeffa;1;2,5;;"=""-1""";"x;y";True\r\n'
    assert csvio.excel_when(0.0, "Europe/Moscow") == "01.01.1970 03:00:00"
