"""`workdays` in the deployment file: Saturdays worked by the production calendar (перенос
рабочих дней), written and checked the way `holidays` are."""

from __future__ import annotations

from pathlib import Path

import pytest

from acd.config import load_deployment
from tests.test_config import at, example_text, problems_of

NONE = "  workdays: []"


def site_workdays(tmp_path: Path, *items: str) -> Path:
    return example_text(tmp_path, NONE, "  workdays:\n" + "".join(f"    - {item}\n" for item in items))


def test_a_saturday_worked_for_a_monday_is_open_for_the_site_and_its_teams(tmp_path: Path) -> None:
    calendar = load_deployment(site_workdays(tmp_path, "2025-11-01"), environ={}).policy.calendar
    assert calendar.is_open("sales", at(2025, 11, 1, 10, 0))
    assert not calendar.is_open("sales", at(2025, 11, 1, 8, 30))
    assert calendar.is_open("logistics", at(2025, 11, 1, 8, 30))  # its own week, the site's dates
    assert not calendar.is_open("sales", at(2025, 11, 8, 10, 0))  # the Saturday after
    sales = calendar.schedule("sales")
    assert sales.next_open(at(2025, 10, 31, 19, 0)) == at(2025, 11, 1, 9, 0)


def test_a_workday_may_name_the_weekday_whose_hours_it_has(tmp_path: Path) -> None:
    path = example_text(
        tmp_path,
        '    - "mon-fri: 09:00-18:00"\n',
        '    - "mon-thu: 09:00-18:00"\n    - "fri: 09:00-16:45"\n',
    )
    text = path.read_text(encoding="utf-8").replace(
        NONE, '  workdays:\n    - 2025-11-01: fri\n    - "2025-11-15: fri"\n    - 2025-11-22..2025-11-23: thu\n'
    )
    path.write_text(text, encoding="utf-8")
    calendar = load_deployment(path, environ={}).policy.calendar
    for day in (1, 15):
        assert calendar.is_open(None, at(2025, 11, day, 16, 30))
        assert not calendar.is_open(None, at(2025, 11, day, 17, 0))
    assert calendar.is_open(None, at(2025, 11, 23, 17, 30))


def test_a_team_may_have_workdays_of_its_own(tmp_path: Path) -> None:
    path = example_text(
        tmp_path,
        '        - "mon-fri: 08:00-17:00"   # the warehouse starts and ends an hour earlier',
        '        - "mon-fri: 08:00-17:00"\n      workdays: [2025-11-08]',
    )
    calendar = load_deployment(path, environ={}).policy.calendar
    assert calendar.is_open("logistics", at(2025, 11, 8, 8, 30))
    assert not calendar.is_open("sales", at(2025, 11, 8, 10, 0))


@pytest.mark.parametrize(
    ("item", "problem"),
    [
        (
            "2025-11-31",
            "must be a date 2026-01-01 or a range 2026-01-01..2026-01-08 (got '2025-11-31': day is out of range "
            "for month)",
        ),
        ("2025-11-01 10:00:00", "a workday is a whole day: write the date without a time, e.g. 2026-01-01"),
        ("2025-11-02..2025-11-01", "date range runs backwards"),
        (
            "2025-11-01: fry",
            "the weekday whose hours the day has must be one of mon, tue, wed, thu, fri, sat, sun (got 'fry')",
        ),
        ("2026-03-09", "2026-03-09 is both a workday and a holiday (hours.holidays[2]): keep it in one list"),
        (
            "2025-11-01: sat",
            "2025-11-01 has sat's hours, and the week gives sat none: name the weekday whose hours it has, "
            "e.g. - 2025-11-01: mon",
        ),
    ],
)
def test_a_wrong_workday_is_a_problem_that_names_its_key(tmp_path: Path, item: str, problem: str) -> None:
    path = site_workdays(tmp_path, "2025-11-08", item)
    assert problems_of(path) == [f"{path}: hours.workdays[1]: {problem}"]


def test_one_date_with_two_weekdays_hours_is_a_problem(tmp_path: Path) -> None:
    path = site_workdays(tmp_path, "2025-11-01", "2025-10-31..2025-11-02: fri")
    assert problems_of(path) == [
        f"{path}: hours.workdays[1]: 2025-11-01 has fri's hours here and mon's at hours.workdays[0]"
    ]


def test_a_team_holiday_on_the_sites_workday_is_a_problem_of_the_team(tmp_path: Path) -> None:
    path = site_workdays(tmp_path, "2025-11-01")
    text = path.read_text(encoding="utf-8").replace(
        '        - "mon-fri: 08:00-17:00"   # the warehouse starts and ends an hour earlier',
        '        - "mon-fri: 08:00-17:00"\n      holidays: [2025-10-30..2025-11-02]',
    )
    path.write_text(text, encoding="utf-8")
    assert problems_of(path) == [
        f"{path}: teams.logistics.hours.holidays[0]: 2025-11-01 is both a workday and a holiday "
        "(hours.workdays[0]): keep it in one list"
    ]


def test_a_team_whose_week_has_no_monday_says_so_for_the_sites_workday(tmp_path: Path) -> None:
    path = site_workdays(tmp_path, "2025-11-01", "2025-11-08")
    text = path.read_text(encoding="utf-8").replace('"mon-fri: 08:00-17:00"', '"tue-sat: 08:00-17:00"')
    path.write_text(text, encoding="utf-8")
    assert problems_of(path) == [
        f"{path}: teams.logistics.hours.week: the site's workday 2025-11-01 (hours.workdays[0]) has mon's hours, "
        "and this week gives mon none: give the team workdays of its own (workdays: [] for none)"
    ]
    fixed = text.replace('"tue-sat: 08:00-17:00"', '"tue-sat: 08:00-17:00"\n      workdays: []')
    path.write_text(fixed, encoding="utf-8")
    assert load_deployment(path, environ={}).policy.calendar.is_open("logistics", at(2025, 11, 1, 10, 0))


def test_the_examples_2026_calendar_moves_the_days_off_of_3_and_4_january() -> None:
    """Decree of 24 September 2025 No. 1466: 3 January to Friday 9 January, 4 January to
    Thursday 31 December; 2026 has no Saturday worked."""
    from tests.test_config import EXAMPLE

    calendar = load_deployment(EXAMPLE, environ={}).policy.calendar
    assert not calendar.is_open("sales", at(2026, 1, 9, 10, 0))
    assert not calendar.is_open("sales", at(2026, 12, 31, 10, 0))
    assert calendar.is_open("sales", at(2026, 1, 12, 10, 0))
