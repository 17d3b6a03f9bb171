"""Working hours as an office keeps them (acd.core.hours): Saturdays worked by the production
calendar, night shifts over a holiday, and the nights the clocks change. Time is passed in."""

from __future__ import annotations

from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from acd.core.hours import Schedule

MSK = ZoneInfo("Europe/Moscow")
BERLIN = ZoneInfo("Europe/Berlin")
MON, FRI, SAT, SUN = 0, 4, 5, 6
OFFICE = {day: ((time(9), time(18)),) for day in range(5)}


def at(zone: ZoneInfo, *args: int, fold: int = 0) -> float:
    return datetime(*args, tzinfo=zone, fold=fold).timestamp()  # type: ignore[misc]


def wall(ts: float | None, zone: ZoneInfo) -> str:
    assert ts is not None
    return datetime.fromtimestamp(ts, zone).strftime("%Y-%m-%d %H:%M %Z")


# ---- workdays: a Saturday worked for a Monday (перенос рабочих дней) --------------------------


def test_a_saturday_worked_by_the_production_calendar_has_mondays_hours() -> None:
    """2025: Saturday 1 November was worked for Monday 3 November."""
    s = Schedule(
        tz="Europe/Moscow", week=OFFICE, holidays=frozenset({date(2025, 11, 3)}), workdays={date(2025, 11, 1): MON}
    )
    assert s.is_open(at(MSK, 2025, 11, 1, 10, 0))
    assert not s.is_open(at(MSK, 2025, 11, 1, 8, 59))
    assert not s.is_open(at(MSK, 2025, 11, 1, 18, 0))
    assert not s.is_open(at(MSK, 2025, 11, 3, 10, 0))
    assert wall(s.next_open(at(MSK, 2025, 10, 31, 19, 0)), MSK) == "2025-11-01 09:00 MSK"
    assert wall(s.next_open(at(MSK, 2025, 11, 1, 18, 0)), MSK) == "2025-11-04 09:00 MSK"


def test_a_workday_may_have_the_hours_of_another_weekday() -> None:
    week = {day: ((time(9), time(18)),) for day in range(4)} | {FRI: ((time(9), time(16, 45)),)}
    s = Schedule(tz="Europe/Moscow", week=week, workdays={date(2025, 11, 1): FRI})
    assert s.is_open(at(MSK, 2025, 11, 1, 16, 30))
    assert not s.is_open(at(MSK, 2025, 11, 1, 17, 0))


def test_a_workday_is_the_date_in_the_teams_time_zone() -> None:
    """Saturday 09:30 in Vladivostok is still Friday 23:30 UTC."""
    vvo = ZoneInfo("Asia/Vladivostok")
    s = Schedule(tz="Asia/Vladivostok", week=OFFICE, workdays={date(2025, 11, 1): MON})
    now = at(vvo, 2025, 11, 1, 9, 30)
    assert datetime.fromtimestamp(now, ZoneInfo("UTC")).weekday() == FRI
    assert s.is_open(now)
    assert wall(s.next_open(at(vvo, 2025, 10, 31, 20, 0)), vvo) == "2025-11-01 09:00 +10"


# ---- night shifts and holidays ---------------------------------------------------------------

NIGHTS = {day: ((time(22), time(0)),) for day in range(5)}  # mon-fri: 22:00-24:00
for _day in range(1, 6):  # tue-sat: 00:00-06:00, the end of the night before
    NIGHTS[_day] = ((time(0), time(6)), *NIGHTS.get(_day, ()))
NEW_YEAR = frozenset({date(2026, 1, 1)})  # a Thursday; 31 December 2025 is a working Wednesday


def test_the_night_shift_started_before_a_holiday_works_to_its_end() -> None:
    s = Schedule(tz="Europe/Moscow", week=NIGHTS, holidays=NEW_YEAR)
    assert s.is_open(at(MSK, 2025, 12, 31, 23, 0))
    assert s.is_open(at(MSK, 2026, 1, 1, 3, 0))
    assert not s.is_open(at(MSK, 2026, 1, 1, 6, 0))


def test_no_night_shift_starts_on_a_holiday() -> None:
    s = Schedule(tz="Europe/Moscow", week=NIGHTS, holidays=NEW_YEAR)
    assert not s.is_open(at(MSK, 2026, 1, 1, 23, 0))
    assert not s.is_open(at(MSK, 2026, 1, 2, 3, 0))
    assert wall(s.next_open(at(MSK, 2026, 1, 1, 6, 0)), MSK) == "2026-01-02 22:00 MSK"


def test_a_worked_saturday_night_runs_into_sunday() -> None:
    s = Schedule(tz="Europe/Moscow", week=NIGHTS, workdays={date(2025, 11, 1): MON})
    assert s.is_open(at(MSK, 2025, 11, 1, 3, 0))  # Friday's night, as every week
    assert s.is_open(at(MSK, 2025, 11, 1, 23, 0))
    assert s.is_open(at(MSK, 2025, 11, 2, 5, 59))
    assert not s.is_open(at(MSK, 2025, 11, 2, 6, 0))


def test_a_whole_day_is_no_tail_of_the_day_before() -> None:
    s = Schedule(tz="Europe/Moscow", week={d: ((time(0), time(0)),) for d in range(7)}, holidays=NEW_YEAR)
    assert not s.is_open(at(MSK, 2026, 1, 1, 3, 0))
    assert s.is_open(at(MSK, 2026, 1, 2, 0, 0))


# ---- the nights the clocks change (Europe/Berlin, 2026: 29 March and 25 October) ---------------


def test_a_shift_that_starts_in_the_skipped_hour_opens_when_the_clocks_jump() -> None:
    """02:00 CET becomes 03:00 CEST: a Sunday 02:30-05:00 shift is open from 03:00 CEST, and
    its next opening was 03:30 CEST."""
    s = Schedule(tz="Europe/Berlin", week={SUN: ((time(2, 30), time(5)),)})
    opens = s.next_open(at(BERLIN, 2026, 3, 28, 12, 0))
    assert wall(opens, BERLIN) == "2026-03-29 03:00 CEST"
    assert opens is not None and s.is_open(opens) and not s.is_open(opens - 1)


def test_a_shift_that_ends_in_the_skipped_hour_ends_when_the_clocks_jump() -> None:
    s = Schedule(tz="Europe/Berlin", week={SUN: ((time(0), time(2, 30)),)})
    assert s.is_open(at(BERLIN, 2026, 3, 29, 1, 59))
    assert not s.is_open(at(BERLIN, 2026, 3, 29, 3, 0))


def test_when_the_clocks_go_back_a_shift_is_not_cut_in_two() -> None:
    """03:00 CEST becomes 02:00 CET: 02:00-02:30 comes twice. A 02:30-05:00 shift opens at
    the first 02:30 and stays open; it closed for the half hour between."""
    s = Schedule(tz="Europe/Berlin", week={SUN: ((time(2, 30), time(5)),)})
    assert wall(s.next_open(at(BERLIN, 2026, 10, 24, 12, 0)), BERLIN) == "2026-10-25 02:30 CEST"
    assert s.is_open(at(BERLIN, 2026, 10, 25, 2, 15, fold=1))
    assert not s.is_open(at(BERLIN, 2026, 10, 25, 5, 0))


def test_when_the_clocks_go_back_a_shift_that_ended_does_not_open_again() -> None:
    s = Schedule(tz="Europe/Berlin", week={SUN: ((time(0), time(2, 30)),)})
    assert s.is_open(at(BERLIN, 2026, 10, 25, 2, 15))
    assert not s.is_open(at(BERLIN, 2026, 10, 25, 2, 15, fold=1))
    assert wall(s.next_open(at(BERLIN, 2026, 10, 25, 2, 15, fold=1)), BERLIN) == "2026-11-01 00:00 CET"
