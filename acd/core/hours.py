"""Pure: working hours and holidays per team, in the site's (or the team's) time zone.

Time comes in as POSIX seconds; `zoneinfo` turns it into local wall-clock time, so
daylight-saving changes are handled by the tz database, not by us.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True, slots=True)
class Schedule:
    """Opening intervals per weekday (0 = Monday) and closed dates.

    An empty `week` means always open (a 24/7 team). An interval may not cross midnight:
    write 22:00-24:00 and 00:00-06:00 instead.
    """

    tz: str = "UTC"
    week: Mapping[int, tuple[tuple[time, time], ...]] = field(default_factory=dict)
    holidays: frozenset[date] = frozenset()

    @property
    def always_open(self) -> bool:
        return not self.week and not self.holidays

    def is_open(self, now: float) -> bool:
        if self.always_open:
            return True
        local = datetime.fromtimestamp(now, ZoneInfo(self.tz))
        if local.date() in self.holidays:
            return False
        if not self.week:
            return True
        t = local.time()
        return any(
            start <= t < end or (end == time(0) and t >= start) for start, end in self.week.get(local.weekday(), ())
        )

    def next_open(self, now: float, horizon_days: int = 366) -> float | None:
        """The first moment at or after `now` when the schedule is open, or None."""
        if self.is_open(now):
            return now
        zone = ZoneInfo(self.tz)
        local = datetime.fromtimestamp(now, zone)
        for offset in range(horizon_days + 1):
            day = local.date() + timedelta(days=offset)
            if day in self.holidays:
                continue
            intervals = self.week.get(day.weekday(), ()) if self.week else ((time(0), time(0)),)
            for start, _end in sorted(intervals):
                candidate = datetime.combine(day, start, zone).timestamp()
                if candidate >= now and self.is_open(candidate):
                    return candidate
        return None


@dataclass(frozen=True, slots=True)
class Calendar:
    """The site's time zone and each team's schedule (teams without one use `default`)."""

    tz: str = "UTC"
    default: Schedule = field(default_factory=Schedule)
    teams: Mapping[str, Schedule] = field(default_factory=dict)

    def schedule(self, team: str | None) -> Schedule:
        return self.teams.get(team, self.default) if team else self.default

    def is_open(self, team: str | None, now: float) -> bool:
        return self.schedule(team).is_open(now)

    def day_key(self, now: float) -> str:
        """The site's local date, e.g. '2026-11-23': daily counters reset when it changes."""
        return datetime.fromtimestamp(now, ZoneInfo(self.tz)).date().isoformat()
