"""Hours of one date (`hours.dates`): the pre-holiday short days of Russian law
(предпраздничные дни, an hour shorter), a corporate event, an inventory day. Time is passed in."""

from __future__ import annotations

import dataclasses
from datetime import date, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from acd.config import load_deployment
from acd.core.hours import Schedule
from tests.test_config import EXAMPLE, at, example_text, problems_of

MSK = ZoneInfo("Europe/Moscow")
OFFICE = {day: ((time(9), time(18)),) for day in range(5)}  # mon-fri: 09:00-18:00
SHORT = ((time(9), time(17)),)
APRIL_30 = date(2026, 4, 30)  # a Thursday, before 1 May


def msk(*args: int) -> float:
    return datetime(*args, tzinfo=MSK).timestamp()  # type: ignore[misc]


# ---- the core: a date's hours replace its weekday's ---------------------------------------------


def test_a_pre_holiday_day_closes_an_hour_early() -> None:
    s = Schedule(tz="Europe/Moscow", week=OFFICE, dates={APRIL_30: SHORT})
    assert s.is_open(msk(2026, 4, 30, 9, 0))
    assert s.is_open(msk(2026, 4, 30, 16, 59))
    assert not s.is_open(msk(2026, 4, 30, 17, 0))
    assert s.is_open(msk(2026, 4, 23, 17, 30))  # the Thursday before keeps its hours
    assert s.next_open(msk(2026, 4, 30, 17, 0)) == msk(2026, 5, 1, 9, 0)


def test_a_date_may_have_several_intervals_and_open_a_day_off() -> None:
    s = Schedule(
        tz="Europe/Moscow",
        week=OFFICE,
        dates={date(2026, 12, 30): ((time(9), time(13)), (time(14), time(16))), date(2026, 5, 16): SHORT},
    )
    assert s.is_open(msk(2026, 12, 30, 12, 59))
    assert not s.is_open(msk(2026, 12, 30, 13, 30))
    assert s.is_open(msk(2026, 12, 30, 15, 59))
    assert not s.is_open(msk(2026, 12, 30, 16, 0))
    assert s.is_open(msk(2026, 5, 16, 10, 0))  # a Saturday, open for an inventory
    assert not s.is_open(msk(2026, 5, 17, 10, 0))


def test_a_worked_saturday_that_is_also_a_short_day_has_the_dates_hours() -> None:
    """2025: Saturday 1 November was worked for Monday 3 November, and an hour shorter."""
    day = date(2025, 11, 1)
    s = Schedule(tz="Europe/Moscow", week=OFFICE, workdays={day: 0}, dates={day: SHORT})
    assert s.is_open(msk(2025, 11, 1, 16, 30))
    assert not s.is_open(msk(2025, 11, 1, 17, 30))


def test_a_round_the_clock_team_closes_early_on_a_date() -> None:
    s = Schedule(tz="Europe/Moscow", dates={date(2026, 12, 31): ((time(0), time(16)),)})
    assert not s.always_open
    assert s.is_open(msk(2026, 12, 30, 23, 59))
    assert s.is_open(msk(2026, 12, 31, 15, 59))
    assert not s.is_open(msk(2026, 12, 31, 16, 0))
    assert s.next_open(msk(2026, 12, 31, 16, 0)) == msk(2027, 1, 1, 0, 0)


# ---- night shifts: a shift belongs to the day it starts ----------------------------------------

NIGHTS = {day: ((time(22), time(0)),) for day in range(5)}  # mon-fri: 22:00-24:00
for _day in range(1, 6):  # tue-sat: 00:00-06:00, the end of the night before
    NIGHTS[_day] = ((time(0), time(6)), *NIGHTS.get(_day, ()))


def test_a_dates_hours_keep_the_night_that_began_the_evening_before() -> None:
    """Thursday 30 April has day hours only: Wednesday's night runs to 06:00 on the 30th,
    and no night starts on the 30th."""
    s = Schedule(tz="Europe/Moscow", week=NIGHTS, dates={APRIL_30: SHORT})
    assert s.is_open(msk(2026, 4, 30, 5, 59))
    assert not s.is_open(msk(2026, 4, 30, 6, 0))
    assert s.is_open(msk(2026, 4, 30, 10, 0))
    assert not s.is_open(msk(2026, 4, 30, 23, 0))
    assert not s.is_open(msk(2026, 5, 1, 3, 0))
    assert s.hours_on(APRIL_30) == ((time(0), time(6)), (time(9), time(17)))


def test_a_dates_night_that_runs_to_midnight_ends_when_its_weekdays_does() -> None:
    """A night shift starting an hour early before 1 May (a holiday): it ends at 06:00 on the
    1st, as Thursday's night does; a holiday does not close the night begun the day before."""
    s = Schedule(
        tz="Europe/Moscow",
        week=NIGHTS,
        holidays=frozenset({date(2026, 5, 1)}),
        dates={APRIL_30: ((time(21), time(0)),)},
    )
    assert s.is_open(msk(2026, 4, 30, 5, 59))  # Wednesday's night
    assert not s.is_open(msk(2026, 4, 30, 20, 59))
    assert s.is_open(msk(2026, 4, 30, 21, 0))
    assert s.is_open(msk(2026, 5, 1, 5, 59))
    assert not s.is_open(msk(2026, 5, 1, 6, 0))
    assert not s.is_open(msk(2026, 5, 1, 23, 0))


def test_a_dates_hours_to_midnight_on_a_day_without_a_night_shift_end_at_midnight() -> None:
    s = Schedule(tz="Europe/Moscow", week=OFFICE, dates={date(2026, 12, 25): ((time(18), time(0)),)})
    assert s.is_open(msk(2026, 12, 25, 23, 59))
    assert not s.is_open(msk(2026, 12, 26, 0, 0))


# ---- the days a Schedule has worked out are kept, and are no part of its value ------------------


def test_a_schedule_keeps_each_days_moments_without_changing_its_value() -> None:
    s = Schedule(tz="Europe/Moscow", week=OFFICE, dates={APRIL_30: SHORT})
    twin = Schedule(tz="Europe/Moscow", week=OFFICE, dates={APRIL_30: SHORT})
    answers = [s.is_open(msk(2026, 4, 30, h, 30)) for h in range(24)]
    assert answers == [s.is_open(msk(2026, 4, 30, h, 30)) for h in range(24)]  # from what it kept
    assert answers == [twin.is_open(msk(2026, 4, 30, h, 30)) for h in range(24)]
    assert s == twin and repr(s) == repr(twin) and "_days" not in repr(s)
    assert dataclasses.replace(s, dates={}).is_open(msk(2026, 4, 30, 17, 30))  # a new value works its own out


# ---- the deployment file -----------------------------------------------------------------------


def test_the_examples_2026_pre_holiday_days_are_an_hour_shorter() -> None:
    calendar = load_deployment(EXAMPLE, environ={}).policy.calendar
    for month, day in ((4, 30), (5, 8), (6, 11), (11, 3)):
        for team in ("sales", "service", None):  # the site's dates
            assert calendar.is_open(team, at(2026, month, day, 16, 59)), (team, month, day)
            assert not calendar.is_open(team, at(2026, month, day, 17, 0)), (team, month, day)
        assert calendar.is_open("logistics", at(2026, month, day, 15, 59))  # its own: 08:00-16:00
        assert not calendar.is_open("logistics", at(2026, month, day, 16, 0))
    assert calendar.is_open("sales", at(2026, 4, 23, 17, 30))  # a Thursday that is not
    assert calendar.is_open("logistics", at(2026, 4, 23, 16, 30))


SITE_DATE = '    2026-04-30: "09:00-17:00"  # before 1 May\n'


def site_dates(tmp_path: Path, *items: str) -> Path:
    return example_text(tmp_path, SITE_DATE, "".join(f"    {item}\n" for item in items))


def test_a_date_written_as_a_range_with_a_break(tmp_path: Path) -> None:
    path = site_dates(tmp_path, '2026-12-28..2026-12-30: "09:00-13:00, 14:00-16:00"')
    calendar = load_deployment(path, environ={}).policy.calendar
    for day in (28, 29, 30):
        assert calendar.is_open("sales", at(2026, 12, day, 12, 0))
        assert not calendar.is_open("sales", at(2026, 12, day, 13, 30))
        assert not calendar.is_open("sales", at(2026, 12, day, 16, 30))
    assert calendar.is_open("sales", at(2026, 4, 30, 17, 30))  # no longer short


def test_a_team_with_dates_of_its_own_and_one_with_none(tmp_path: Path) -> None:
    path = example_text(
        tmp_path,
        "    label: {ru: Сервис и поддержка, en: Customer service}\n",
        "    label: {ru: Сервис и поддержка, en: Customer service}\n    hours:\n      dates: {}\n",
    )
    calendar = load_deployment(path, environ={}).policy.calendar
    assert calendar.is_open("service", at(2026, 4, 30, 17, 30))  # the site's week, no short days
    assert not calendar.is_open("sales", at(2026, 4, 30, 17, 30))


@pytest.mark.parametrize(
    ("items", "key", "problem"),
    [
        (
            ['2026-04-31: "09:00-17:00"'],
            "hours.dates.2026-04-31",
            "must be a date 2026-01-01 or a range 2026-01-01..2026-01-08 (got '2026-04-31': day is out of range "
            "for month)",
        ),
        (['2026-05-02..2026-04-30: "09:00-17:00"'], "hours.dates.2026-05-02..2026-04-30", "date range runs backwards"),
        (
            ['2026-04-30 10:00:00: "09:00-17:00"'],
            "hours.dates",
            "2026-04-30 10:00 is a whole day under dates: write the date without a time",
        ),
        (
            ['2026-04-30: ""'],
            "hours.dates.2026-04-30",
            "a date under dates is open with the hours given; to close it all day list it under holidays",
        ),
        (
            ["2026-04-30: closed"],
            "hours.dates.2026-04-30",
            "a date under dates is open with the hours given; to close it all day list it under holidays",
        ),
        (['2026-04-30: "9-17"'], "hours.dates.2026-04-30", "interval '9-17' must look like 09:00-18:00"),
        (['2026-04-30: "09:00-25:00"'], "hours.dates.2026-04-30", "interval '09:00-25:00' has an impossible time"),
        (
            ['2026-04-30: "22:00-06:00"'],
            "hours.dates.2026-04-30",
            "interval '22:00-06:00' must start before it ends (split a night: 22:00-24:00, 00:00-06:00)",
        ),
        (
            ['2026-04-30: "14:00-16:00, 09:00-14:30"'],
            "hours.dates.2026-04-30",
            "14:00-16:00 overlaps 09:00-14:30",
        ),
        (
            ['2026-04-30: ["09:00-17:00"]'],
            "hours.dates.2026-04-30",
            'must be the day\'s intervals in quotes, e.g. "09:00-17:00" (got',
        ),
        (
            ['2026-04-29..2026-04-30: "09:00-17:00"', '"2026-04-30": "10:00-17:00"'],
            "hours.dates.2026-04-30",
            "2026-04-30 is also under hours.dates.2026-04-29..2026-04-30: one entry per date",
        ),
        (
            ['2026-04-30: "09:00-17:00"', '"2026-04-30": "10:00-17:00"'],
            "hours.dates",
            "2026-04-30 is written twice: one entry per date",
        ),
        (
            ['2026-05-01: "09:00-17:00"'],
            "hours.dates.2026-05-01",
            "2026-05-01 is also a holiday (hours.holidays[3]), which closes it all day: keep it in one list",
        ),
    ],
)
def test_a_wrong_date_is_a_problem_that_names_its_key(tmp_path: Path, items: list[str], key: str, problem: str) -> None:
    path = site_dates(tmp_path, *items)
    (found,) = problems_of(path)
    assert found.startswith(f"{path}: {key}: {problem}"), found


def test_a_date_cannot_cut_short_the_night_begun_the_evening_before(tmp_path: Path) -> None:
    path = example_text(
        tmp_path,
        '    - "mon-fri: 09:00-18:00"\n',
        '    - "mon-fri: 22:00-24:00"\n    - "tue-sat: 00:00-06:00"\n',
    )
    text = path.read_text(encoding="utf-8").replace(SITE_DATE, '    2026-04-30: "00:00-05:00, 22:00-24:00"\n')
    path.write_text(text, encoding="utf-8")
    problems = problems_of(path)
    assert problems[0] == (
        f"{path}: hours.dates.2026-04-30: 2026-04-30 00:00-05:00 overlaps the end of the night shift that starts "
        "the day before (00:00-06:00): a shift belongs to the day it starts, so hours given for 2026-04-30 do not "
        "change it; start the date's hours at 06:00 or later"
    )


def test_a_team_with_its_own_week_says_when_the_sites_dates_are_not_its_hours(tmp_path: Path) -> None:
    path = example_text(
        tmp_path,
        "      dates:                       # its own pre-holiday days: the site's 09:00-17:00 are not its hours\n",
        "      dates:\n",
    )
    text = path.read_text(encoding="utf-8").replace("      dates:\n" + '        2026-04-30: "08:00-16:00"\n', "")
    text = text.replace('        2026-05-08: "08:00-16:00"\n        2026-06-11: "08:00-16:00"\n', "")
    text = text.replace('        2026-11-03: "08:00-16:00"\n', "")
    path.write_text(text, encoding="utf-8")
    assert problems_of(path) == [
        f"{path}: teams.logistics.hours.week: the site's hours for 2026-04-30 (hours.dates.2026-04-30: "
        "09:00-17:00) replace the site's 09:00-18:00, and this week gives 08:00-17:00 that day: give the team "
        "dates of its own (dates: {} for none)"
    ]


def test_a_team_holiday_on_the_sites_short_day_is_a_problem_of_the_team(tmp_path: Path) -> None:
    path = example_text(
        tmp_path,
        "    label: {ru: Сервис и поддержка, en: Customer service}\n",
        "    label: {ru: Сервис и поддержка, en: Customer service}\n    hours:\n      holidays: [2026-04-30]\n",
    )
    assert problems_of(path) == [
        f"{path}: teams.service.hours.holidays[0]: 2026-04-30 has hours of its own at hours.dates.2026-04-30 and is "
        "a holiday here: keep it in one list (give the team dates of its own, dates: {} for none)"
    ]
