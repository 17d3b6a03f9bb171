"""The supervisor's report of a week (Monday to Sunday in the office's time zone) and of a
month, with their CSV exports, and a contact answered days after it arrived, on every
storage backend. A Moscow office's week five weeks ago (thresholds: call 20 s, web 300 s,
e-mail 3600 s):

    w1 call   Mon 00:30  offered anna 00:30:02, accepted 00:30:10   wait 10      within   won
    w2 call   Tue 11:00  offered boris 11:00:05, accepted 11:00:45  wait 45      after    lost
    w3 call   Wed 12:00  offered anna 12:00:02, missed 12:00:22                  abandoned
    w4 email  Fri 18:00  offered boris next Mon 09:00:05, accepted 09:10:00
                                                          wait 227 400 (2 d 15 h 10 min)  after  done
    w5 web    Sun 23:50  offered anna 23:50:05, accepted 23:53:01   wait 181     within   won
    x0 call   the Sunday before, 23:30, answered; x8 call the Monday after, 10:00, abandoned: not the week's

    the week: 5 contacts, answered 4, abandoned 1, service level 2 / 5 = 0.4, abandonment
    0.2, average wait (10 + 45 + 227 400 + 181) / 4 = 56 909.0, longest 227 400;
    anna offered 3, answered 2, missed 1, won 2; boris offered 1 (w4's offer is the Monday
    after), answered 2, lost 1, done 1.

w1 arrives on Monday at 00:30 in Moscow, Sunday 21:30 in UTC: the week is the office's.
"""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from api_fixtures import Running
from test_reports_day import store_contact

from acd.core.model import Channel, ContactStatus, Outcome, Presence
from acd.storage import Store

P = Presence


def _at(day: date, zone: ZoneInfo, hh: int, mm: int = 0, ss: int = 0) -> float:
    return datetime(day.year, day.month, day.day, hh, mm, ss, tzinfo=zone).timestamp()


async def scripted_week(store: Store, monday: date, zone: ZoneInfo) -> None:
    def at(days: int, hh: int, mm: int = 0, ss: int = 0) -> float:
        return _at(monday + timedelta(days=days), zone, hh, mm, ss)

    fin, gone = ContactStatus.FINISHED, ContactStatus.ABANDONED
    rows: list[tuple[Any, ...]] = [
        ("x0", Channel.CALL, at(-1, 23, 30), fin, ("anna", at(-1, 23, 30, 2)), ("accept", at(-1, 23, 30, 5)), None),
        ("w1", Channel.CALL, at(0, 0, 30), fin, ("anna", at(0, 0, 30, 2)), ("accept", at(0, 0, 30, 10)), Outcome.WON),
        ("w2", Channel.CALL, at(1, 11), fin, ("boris", at(1, 11, 0, 5)), ("accept", at(1, 11, 0, 45)), Outcome.LOST),
        ("w3", Channel.CALL, at(2, 12), gone, ("anna", at(2, 12, 0, 2)), ("miss", at(2, 12, 0, 22)), None),
        ("w4", Channel.EMAIL, at(4, 18), fin, ("boris", at(7, 9, 0, 5)), ("accept", at(7, 9, 10)), Outcome.DONE),
        ("w5", Channel.WEB, at(6, 23, 50), fin, ("anna", at(6, 23, 50, 5)), ("accept", at(6, 23, 53, 1)), Outcome.WON),
        ("x8", Channel.CALL, at(7, 10), gone, None, None, None),
    ]
    for n, row in enumerate(rows, 1):
        await store_contact(store, n, *row)


async def _week(running: Running) -> tuple[date, ZoneInfo]:
    zone = ZoneInfo(running.server.deployment.tz)
    assert running.server.deployment.tz == "Europe/Moscow"
    today = datetime.fromtimestamp(running.server.services.clock(), zone).date()
    monday = today - timedelta(days=today.weekday() + 35)
    await scripted_week(running.server.store, monday, zone)
    return monday, zone


async def _get(running: Running, path: str) -> tuple[str, str]:
    async with running.session.get(
        running.url(path), headers={"Authorization": f"Bearer {running.supervisor}"}
    ) as resp:
        assert resp.status == 200, await resp.text()
        return resp.headers["Content-Disposition"], (await resp.read()).decode("utf-8-sig")


async def test_a_friday_e_mail_answered_on_monday_counts_as_answered_late_on_friday(running: Running) -> None:
    monday, _ = await _week(running)
    friday = monday + timedelta(days=4)
    status, r = await running.call("GET", f"/api/reports/day?date={friday}", running.supervisor)
    assert status == 200
    assert (r["total"], r["answered"], r["abandoned"]) == (1, 1, 0)
    assert (r["service_level"], r["abandonment"], r["average_wait"]) == (0.0, 0.0, 227400.0)
    boris = next(m for m in r["managers"] if m["id"] == "boris")
    assert (boris["offered"], boris["answered"], boris["done"], boris["response_average"]) == (0, 1, 1, 595.0)
    assert r["week"][-1]["service_level"] == 0.0 and r["week"][-1]["answered"] == 1

    _, text = await _get(running, f"/api/export/contacts.csv?date={friday}")
    (row,) = csv.DictReader(io.StringIO(text))
    assert (row["id"], row["wait_seconds"]) == ("w4", "227400.0")
    assert row["answered_at"].startswith(f"{monday + timedelta(days=7)}T09:10:00")
    # and so in the week that holds it, whichever day the supervisor picks in it
    status, week = await running.call("GET", f"/api/reports/day?date={friday}&period=week", running.supervisor)
    assert status == 200 and week["week"][4]["answered"] == 1


async def test_a_week_from_monday_to_sunday_in_the_office_s_time_zone(running: Running) -> None:
    monday, zone = await _week(running)
    for picked in (monday, monday + timedelta(days=3), monday + timedelta(days=6)):
        status, r = await running.call("GET", f"/api/reports/day?date={picked}&period=week", running.supervisor)
        assert status == 200
        assert (r["period"], r["date"], r["first"], r["last"]) == (
            "week",
            str(picked),
            str(monday),
            str(monday + timedelta(days=6)),
        )
        assert (r["start"], r["end"]) == (_at(monday, zone, 0), _at(monday + timedelta(days=7), zone, 0))
        assert (r["total"], r["answered"], r["abandoned"]) == (5, 4, 1)
        assert (r["service_level"], r["abandonment"]) == (0.4, 0.2)
        assert (r["average_wait"], r["longest_wait"]) == (56909.0, 227400.0)
    managers = {m["id"]: m for m in r["managers"]}
    anna, boris = managers["anna"], managers["boris"]
    assert (anna["offered"], anna["answered"], len(anna["missed"]), anna["won"], anna["conversion"]) == (3, 2, 1, 2, 1)
    assert (boris["offered"], boris["answered"], boris["lost"], boris["done"], boris["conversion"]) == (1, 2, 1, 1, 0)
    assert [a["id"] for a in anna["abandoned"]] == ["w3"]
    # the week's days, one row each, in the office's calendar
    assert [d["date"] for d in r["week"]] == [str(monday + timedelta(days=i)) for i in range(7)]
    assert [d["contacts"] for d in r["week"]] == [1, 1, 1, 0, 1, 0, 1]
    assert [d["service_level"] for d in r["week"]] == [1.0, 0.0, 0.0, None, 0.0, None, 1.0]
    assert [d["abandonment"] for d in r["week"]] == [0.0, 0.0, 1.0, None, 0.0, None, 0.0]
    assert r["week"][6]["conversion"] == {"anna": 1.0}


async def test_the_week_s_csv_exports_plain_and_for_excel(running: Running) -> None:
    monday, _ = await _week(running)
    wednesday = monday + timedelta(days=2)
    disposition, text = await _get(running, f"/api/export/managers.csv?date={wednesday}&period=week")
    assert f'filename="managers-week-{monday}.csv"' in disposition
    rows = {r["id"]: r for r in csv.DictReader(io.StringIO(text))}
    assert (rows["anna"]["offered"], rows["anna"]["answered"], rows["anna"]["missed_contacts"]) == ("3", "2", "w3")
    assert (rows["boris"]["answered"], rows["boris"]["conversion"]) == ("2", "0.0")

    disposition, text = await _get(running, f"/api/export/summary.csv?date={wednesday}&period=week&excel=1")
    assert f'filename="summary-week-{monday}.csv"' in disposition
    table = list(csv.reader(io.StringIO(text), delimiter=";"))
    assert table[0][:8] == [
        "date",
        "contacts",
        "answered",
        "abandoned",
        "service_level",
        "average_wait_seconds",
        "longest_wait_seconds",
        "abandonment",
    ]
    assert [row[0] for row in table[1:]] == [f"{monday + timedelta(days=i):%d.%m.%Y}" for i in range(7)] + ["total"]
    assert table[-1][1:8] == ["5", "4", "1", "0,4", "56909,0", "227400,0", "0,2"]  # the week, not a sum of days
    assert table[4][1:5] == ["0", "0", "0", ""]  # Thursday: nothing, and no made-up service level

    _, text = await _get(running, f"/api/export/contacts.csv?date={wednesday}&period=week")
    assert [r["id"] for r in csv.DictReader(io.StringIO(text))] == ["w1", "w2", "w3", "w4", "w5"]
    _, text = await _get(running, f"/api/export/decisions.csv?date={wednesday}&period=week")
    assert [r["contact_id"] for r in csv.DictReader(io.StringIO(text))] == ["w1", "w2", "w3", "w5"]


async def test_a_month_is_its_calendar_days(running: Running) -> None:
    zone = ZoneInfo(running.server.deployment.tz)
    today = datetime.fromtimestamp(running.server.services.clock(), zone).date()
    first = (today.replace(day=1) - timedelta(days=40)).replace(day=1)
    following = (first + timedelta(days=32)).replace(day=1)
    last = following - timedelta(days=1)
    store = running.server.store
    gone = ContactStatus.ABANDONED
    await store_contact(store, 1, "before", Channel.CALL, _at(first, zone, 0) - 1, gone)
    await store_contact(store, 2, "first", Channel.CALL, _at(first, zone, 0), gone)
    await store_contact(store, 3, "last", Channel.CALL, _at(last, zone, 23, 59, 59), gone)
    await store_contact(store, 4, "after", Channel.CALL, _at(following, zone, 0), gone)

    status, r = await running.call(
        "GET", f"/api/reports/day?date={first + timedelta(days=9)}&period=month", running.supervisor
    )
    assert status == 200
    assert (r["first"], r["last"], r["total"], r["abandonment"]) == (str(first), str(last), 2, 1.0)
    assert len(r["week"]) == last.day and r["week"][0]["contacts"] == r["week"][-1]["contacts"] == 1
    disposition, _ = await _get(running, f"/api/export/managers.csv?date={last}&period=month")
    assert f'filename="managers-{first:%Y-%m}.csv"' in disposition

    status, body = await running.call("GET", f"/api/reports/day?date={first}&period=year", running.supervisor)
    assert status == 400 and "period" in str(body)


async def test_a_weekend_s_worth_of_e_mails_answered_days_later_all_count_as_answered(running: Running) -> None:
    """120 e-mails of a Friday evening, taken on Monday by three managers: more offers than
    one look-up of their answers holds (100), every one of them answered late."""
    zone = ZoneInfo(running.server.deployment.tz)
    today = datetime.fromtimestamp(running.server.services.clock(), zone).date()
    friday = today - timedelta(days=today.weekday() + 17)
    monday = friday + timedelta(days=3)
    store = running.server.store
    for i in range(120):
        manager = ("anna", "boris", "vera")[i % 3]
        offered = _at(monday, zone, 9) + 60 * i
        await store_contact(
            store,
            i + 1,
            f"e{i}",
            Channel.EMAIL,
            _at(friday, zone, 18) + i,
            ContactStatus.FINISHED,
            (manager, offered),
            ("accept", offered + 30),
            Outcome.DONE,
        )
    status, r = await running.call("GET", f"/api/reports/day?date={friday}", running.supervisor)
    assert status == 200
    assert (r["total"], r["answered"], r["service_level"]) == (120, 120, 0.0)
    assert {m["id"]: (m["answered"], m["response_average"]) for m in r["managers"]} == {
        "anna": (40, 30.0),
        "boris": (40, 30.0),
        "vera": (40, 30.0),
    }
