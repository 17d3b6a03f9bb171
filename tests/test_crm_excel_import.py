"""Deals as Russian Excel saves them: dates day first (31.03.2024, 31.03.2024 14:05), amounts
with the currency after them, non-breaking or thin spaces and dots parting thousands. What
cannot be read for sure (a slashed date, a two-digit year, "1,5 млн") is refused with a
reason that says how to write it; "1,500" is one and a half, and the report says so.
Through a real server on 127.0.0.1, on SQLite and PostgreSQL, and the parser alone."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from api_fixtures import Running

from acd.api.crm import CRM
from acd.crm.csvio import RowError, amount_note, parse_amount, parse_when

TZ = "Europe/Moscow"  # the example deployment's site time


def moscow(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> float:
    return datetime(year, month, day, hour, minute, second, tzinfo=ZoneInfo(TZ)).timestamp()


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("31.03.2024", moscow(2024, 3, 31)),
        ("31.03.2024 14:05", moscow(2024, 3, 31, 14, 5)),
        ("31.03.2024 14:05:30", moscow(2024, 3, 31, 14, 5, 30)),
        ("1.3.2024 9:05", moscow(2024, 3, 1, 9, 5)),  # Excel's short custom formats
        ("31.03.2024\u00a014:05", moscow(2024, 3, 31, 14, 5)),
        (" 31.03.2024 ", moscow(2024, 3, 31)),
        ("2024-03-31", moscow(2024, 3, 31)),  # ISO as before
        ("2024-03-31T14:05", moscow(2024, 3, 31, 14, 5)),
        ("2024-03-31T14:05:00+00:00", datetime(2024, 3, 31, 14, 5, tzinfo=ZoneInfo("UTC")).timestamp()),
    ],
)
def test_dates_day_first_as_russian_excel_writes_them_are_read_in_site_time(cell: str, expected: float) -> None:
    assert parse_when(cell, TZ, "opened") == expected


@pytest.mark.parametrize(
    ("cell", "says"),
    [
        ("31.02.2024", "no such date"),
        ("32.01.2024", "no such date"),
        ("31.03.2024 24:10", "no such date or time"),
        ("2024-02-30", "no such date"),
        ("31.03.24", "write the year in full"),
        ("03/04/2024", "ambiguous"),
        ("31/03/2024 14:05", "ambiguous"),
        ("вчера", "YYYY-MM-DD or DD.MM.YYYY"),
    ],
)
def test_impossible_and_ambiguous_dates_are_refused_with_a_reason(cell: str, says: str) -> None:
    with pytest.raises(RowError, match=says) as refused:
        parse_when(cell, TZ, "closed")
    assert str(refused.value).startswith(f"closed: {cell!r}")


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("1 500 000 ₽", 1_500_000.0),
        ("1 500 000₽", 1_500_000.0),
        ("1 500 000 руб.", 1_500_000.0),
        ("1 500 000 руб", 1_500_000.0),
        ("1500 р.", 1500.0),
        ("1500 рублей", 1500.0),
        ("1 500 000 RUB", 1_500_000.0),
        ("2 000 $", 2000.0),
        ("2 000 USD", 2000.0),
        ("2 000,50 €", 2000.5),
        ("2000 EUR", 2000.0),
        ("1.500.000,50", 1_500_000.5),
        ("1.500.000,50 ₽", 1_500_000.5),
        ("1.500.000", 1_500_000.0),  # dots in threes: only thousands
        ("1 500 000,50", 1_500_000.5),
        ("1\u00a0500\u00a0000,50", 1_500_000.5),  # Excel's non-breaking space
        ("1\u2009500\u202f000", 1_500_000.0),  # thin and narrow no-break spaces
        ("1,500", 1.5),  # the comma is the decimal sign in a Russian file
        ("1500000.5", 1_500_000.5),  # what the export writes
        ("1,2E+06", 1_200_000.0),  # Excel's scientific format in a Russian locale
        ("0", 0.0),
    ],
)
def test_amounts_in_currency_formats_are_read(cell: str, expected: float) -> None:
    assert parse_amount(cell) == expected


@pytest.mark.parametrize(
    ("cell", "says"),
    [
        ("1,5 млн", "write the whole number"),
        ("250 тыс. руб.", "write the whole number"),
        ("2к", "write the whole number"),
        ("1,500,000", "more than one comma"),
        ("1,500.50", "dot after the decimal comma"),
        ("1.50.000,5", "dots before a decimal comma part thousands"),
        ("abc", "not a number"),
        ("₽", "not a number"),
        ("nan", "not a number"),
        ("-1 500 ₽", "zero or more"),
    ],
)
def test_amounts_that_cannot_be_read_for_sure_are_refused_saying_how_to_write_them(cell: str, says: str) -> None:
    with pytest.raises(RowError, match=says) as refused:
        parse_amount(cell)
    assert str(refused.value).startswith(f"amount: {cell!r}")


def test_the_rule_for_a_comma_is_in_the_reasons_and_a_comma_before_three_digits_is_warned_about() -> None:
    with pytest.raises(RowError) as refused:
        parse_amount("1 500 000 рэ")
    assert "the comma is always the decimal sign, so 1,500 is one and a half" in str(refused.value)
    assert "₽" in str(refused.value) and "EUR" in str(refused.value)
    assert "read as 1.5 (the comma is the decimal sign)" in str(amount_note("1,500 ₽"))
    assert "read as 1.5 (a dot alone is the decimal point)" in str(amount_note("1.500"))
    assert amount_note("1 500,50") is None and amount_note("1,5") is None and amount_note("1500000.0") is None


# Excel's "CSV (разделители - запятые)" in a Russian locale: semicolons, Windows-1251
EXCEL_DEALS = """\
id;customer_name;customer_phone;title;amount;status;owner;stage;opened;closed;purpose;price_tier;temperature
x1;ООО Альфа;+7 495 000-00-01;Лицензии;1 500 000 ₽;won;anna;;31.03.2024;15.04.2024 14:05;purchase;high;hot
x2;ООО Альфа;+7 495 000-00-01;Продление;1.500.000,50 руб.;won;anna;;01.02.2024;29.02.2024;renewal;low;cold
x3;ООО Бета;+7 495 000-00-02;Обучение;1\u00a0250\u00a0000,50;lost;boris;;10.01.2024;20.01.2024 9:30;training;low;cold
x4;ООО Бета;+7 495 000-00-02;Обучение;1,500;won;boris;;10.01.2024;20.01.2024;training;low;cold
x5;ООО Гамма;+7 495 000-00-03;X;1,5 млн;won;boris;;10.01.2024;20.01.2024;purchase;low;hot
x6;ООО Гамма;+7 495 000-00-03;X;100;won;boris;;31.02.2024;01.03.2024;purchase;low;hot
x7;ООО Гамма;+7 495 000-00-03;X;100;won;boris;;03/04/2024;05/04/2024;purchase;low;hot
"""


async def test_a_russian_excel_deals_file_is_imported_with_its_dates_and_amounts(running: Running) -> None:
    status, report = await running.call(
        "POST", "/api/crm/import/deals", running.admin, data=EXCEL_DEALS.replace("₽", "руб").encode("cp1251")
    )
    assert status == 200, report
    reasons = {r["line"]: r["reason"] for r in report["rejected"]}
    assert sorted(reasons) == [6, 7, 8], reasons
    assert "write the whole number" in reasons[6]
    assert "no such date" in reasons[7] and "ambiguous" in reasons[8]
    assert report["imported"] == 4
    assert [(w["line"], "read as 1.5" in w["reason"]) for w in report["warnings"]] == [(5, True)]

    crm = running.server.app[CRM]
    x1, x2, x3, x4 = [await crm.deal(i) for i in ("x1", "x2", "x3", "x4")]
    assert (x1.amount, x1.opened_at, x1.closed_at) == (1_500_000.0, moscow(2024, 3, 31), moscow(2024, 4, 15, 14, 5))
    assert (x2.amount, x2.opened_at) == (1_500_000.5, moscow(2024, 2, 1))
    assert (x3.amount, x3.closed_at) == (1_250_000.5, moscow(2024, 1, 20, 9, 30))
    assert x4.amount == 1.5

    # the ruble sign itself needs a file that can hold it: Excel's "CSV UTF-8"
    utf8 = "\n".join(EXCEL_DEALS.splitlines()[:2]).replace("x1;", "y1;") + "\n"
    status, report = await running.call("POST", "/api/crm/import/deals", running.admin, data=utf8.encode("utf-8-sig"))
    assert status == 200 and report["imported"] == 1 and not report["rejected"], report
    assert (await crm.deal("y1")).amount == 1_500_000.0
