"""Pure: working hours and holidays per team, in the site's (or the team's) time zone.

Time comes in as POSIX seconds; `zoneinfo` turns it into local wall-clock time, so
daylight-saving changes are handled by the tz database, not by us.

The rules an office keeps, and that `Schedule` follows:
* A day's hours are the intervals of its weekday; a date in `workdays` (a Saturday worked
  by the production calendar) has the hours of the weekday it names instead (Monday's when
  none is named); a date in `dates` has the intervals given for it instead of any weekday's
  (a pre-holiday short day, an inventory day; a day off too); a date in `holidays` has none.
  A date is never both a holiday and in `dates`: holidays are the one way to close a day.
* A night shift belongs to the day it starts on: an interval from 00:00 that continues the
  previous day's interval ending at 24:00 is that shift's tail. A holiday closes the shifts
  that start on it, not the tail of the shift that began the evening before (31 December
  22:00 to 1 January 06:00 is worked; 2 January 00:00-06:00 is not).
* Hours given for a date replace, like a holiday, only the shifts that start on it: the
  tail of the night shift that began the evening before stays as that evening's hours say.
  If the date's last interval runs to 24:00, its shift ends the next morning when its
  weekday's night shift does (the tail its weekday has in `week`, none if it has none); if
  it ends earlier, the date has no night shift and the next morning has no tail. An
  interval of the date from 00:00 is a shift of its own, never the evening before's tail
  (the deployment file refuses one that overlaps that tail: it cannot shorten it).
* On the nights the clocks change, an interval opens and closes the first time the clock
  shows its times; a time the clocks skip (02:30 when they jump from 02:00 to 03:00) means
  the moment of the jump. A shift never closes and reopens because the clocks went back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MONDAY = 0

Interval = tuple[time, time]  # start, end; an end of time(0) is 24:00
_MIDNIGHT = time(0)
_WHOLE_DAY: tuple[Interval, ...] = ((_MIDNIGHT, _MIDNIGHT),)
_KEPT_DAYS = 512  # dates whose opening moments a Schedule keeps (more than a year's scan)


def _instant(day: date, at: time, zone: tzinfo) -> float:
    """The first moment the local clock shows `at` on `day` or later: the first of two
    when the clocks go back, the jump itself when they skip it."""
    local = datetime.combine(day, at, zone)
    first = local.timestamp()  # fold=0: the earlier of two, or past a skipped time
    if datetime.fromtimestamp(first, zone).replace(tzinfo=None) == local.replace(tzinfo=None):
        return first
    # Skipped: fold=1 reads it with the offset after the jump, which lands before the jump.
    lo, hi = sorted((int(local.replace(fold=1).timestamp()), int(first)))
    after = zone.utcoffset(datetime.fromtimestamp(hi, zone))
    while hi - lo > 1:  # the jump lies between: find it to the second
        mid = (lo + hi) // 2
        if zone.utcoffset(datetime.fromtimestamp(mid, zone)) == after:
            hi = mid
        else:
            lo = mid
    return float(hi)


def _is_tail(first: Interval, before: tuple[Interval, ...]) -> bool:
    """Whether a day's first interval is the end of the previous day's night shift."""
    start, end = first
    return start == _MIDNIGHT and end != _MIDNIGHT and any(e == _MIDNIGHT for _, e in before)


@dataclass(frozen=True, slots=True)
class Schedule:
    """Opening intervals per weekday (0 = Monday), closed dates and working dates.

    An empty `week` means always open (a 24/7 team) but on holidays and `dates`. An interval
    may not cross midnight: write 22:00-24:00 and 00:00-06:00 instead (the second is the
    first's tail, see the module's rules). `workdays` maps a date to the weekday whose hours
    it has; `dates` maps a date to its own sorted, non-overlapping intervals.

    Each date's opening moments are worked out once and kept in `_days` (not part of the
    value: equality, hash and repr ignore it), so `is_open` on a day already seen is a
    look-up. The mappings given are read as they are at that time: do not change them after.
    """

    tz: str = "UTC"
    week: Mapping[int, tuple[Interval, ...]] = field(default_factory=dict)
    holidays: frozenset[date] = frozenset()
    workdays: Mapping[date, int] = field(default_factory=dict)
    dates: Mapping[date, tuple[Interval, ...]] = field(default_factory=dict)
    _days: dict[date, tuple[tuple[float, float], ...]] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )

    @property
    def always_open(self) -> bool:
        return not self.week and not self.holidays and not self.dates

    def _weekday(self, day: date) -> int:
        return self.workdays.get(day, day.weekday())

    def _own(self, weekday: int) -> tuple[Interval, ...]:
        """A weekday's intervals that start shifts: all but the previous day's tail."""
        spans = tuple(sorted(self.week.get(weekday, ())))
        if spans and _is_tail(spans[0], self.week.get((weekday - 1) % 7, ())):
            return spans[1:]
        return spans

    def _tail(self, weekday: int) -> tuple[Interval, ...]:
        """The end of the night shift this weekday starts, on the next calendar day."""
        spans = tuple(sorted(self.week.get((weekday + 1) % 7, ())))
        if spans and _is_tail(spans[0], self.week.get(weekday, ())):
            return spans[:1]
        return ()

    def _starts(self, day: date) -> tuple[Interval, ...]:
        """The intervals of the shifts that start on `day` (not the evening before's tail)."""
        if day in self.holidays:
            return ()
        dated = self.dates.get(day)
        if dated is not None:
            return dated
        return self._own(self._weekday(day)) if self.week else _WHOLE_DAY

    def tail_into(self, day: date) -> tuple[Interval, ...]:
        """The end, on `day`, of the night shift that started the evening before (or ())."""
        before = day - timedelta(days=1)
        if not self.week or before in self.holidays:
            return ()
        dated = self.dates.get(before)
        if dated is not None and not any(end == _MIDNIGHT for _, end in dated):
            return ()
        return self._tail(self._weekday(before))

    def _intervals(self, day: date) -> list[Interval]:
        """The wall-clock intervals open on the calendar date `day`."""
        return sorted(self.tail_into(day) + self._starts(day))

    def hours_on(self, day: date) -> tuple[Interval, ...]:
        """The wall-clock intervals open on the calendar date `day`, the evening before's
        tail included (an end of time(0) is 24:00)."""
        return tuple(self._intervals(day))

    def _spans(self, day: date, zone: tzinfo) -> tuple[tuple[float, float], ...]:
        """The moments open on `day`, as [open, close) in POSIX seconds; kept per date."""
        spans = self._days.get(day)
        if spans is not None:
            return spans
        out = []
        for start, end in self._intervals(day):
            opens = _instant(day, start, zone)
            closes = (
                _instant(day + timedelta(days=1), _MIDNIGHT, zone) if end == _MIDNIGHT else _instant(day, end, zone)
            )
            if closes > opens:
                out.append((opens, closes))
        if len(self._days) >= _KEPT_DAYS:  # a long next_open scan, or years of uptime
            self._days.clear()
        spans = self._days[day] = tuple(out)
        return spans

    def is_open(self, now: float) -> bool:
        if self.always_open:
            return True
        zone = ZoneInfo(self.tz)
        day = datetime.fromtimestamp(now, zone).date()
        return any(opens <= now < closes for opens, closes in self._spans(day, zone))

    def next_open(self, now: float, horizon_days: int = 366) -> float | None:
        """The first moment at or after `now` when the schedule is open, or None."""
        if self.is_open(now):
            return now
        zone = ZoneInfo(self.tz)
        today = datetime.fromtimestamp(now, zone).date()
        for offset in range(horizon_days + 1):
            for opens, _closes in self._spans(today + timedelta(days=offset), zone):
                if opens >= now:
                    return opens
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
