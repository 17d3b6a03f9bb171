"""Adapter: YAML ⇄ core policy. Reads a deployment file and its IVR flows into a `Deployment`.

Loading runs in three passes so an administrator sees every mistake in one go:
1. YAML syntax (problems name the line),
2. the shape of each value (`acd.config.schema`),
3. rules across the file: names that must exist, labels in every site language, unique keys.
Only a file that passes all three is built; building itself cannot fail.
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import date, time, timedelta
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from acd.config import crm_external, messaging
from acd.config.deployment import (
    DEFAULT_SERVICE_LEVEL,
    AmiSettings,
    AsteriskServer,
    AsteriskSettings,
    Criterion,
    CrmSettings,
    Deployment,
    FastAgiSettings,
    ManagerDefaults,
    Option,
    RateLimits,
    ReportSettings,
    ServerSettings,
    ServiceLevel,
    Stage,
    Team,
    WebSettings,
)
from acd.config.errors import ConfigError, Loc, Problems, dotted
from acd.config.flows import IvrFlow, build_flow
from acd.config.schema import DeploymentSpec, HoursSpec, interval_text, parse_hours_line
from acd.core.hours import WEEKDAYS, Calendar, Interval, Schedule
from acd.core.model import Channel, Manager
from acd.core.policy import DEFAULT_STEPS, ChannelRules, EscalationStep, RoutingPolicy, ShadowPolicy, Weights

DB_URL_ENV = "ACD_DB_URL"  # overrides server.db_url: a PostgreSQL URL carries a password


def load_deployment(path: str | Path, environ: Mapping[str, str] | None = None) -> Deployment:
    """Load and validate a deployment file and the IVR flows it points to.

    `environ` supplies secrets named in the file (`asterisk.ami.secret_env`) and the
    `ACD_DB_URL` override; it defaults to `os.environ`. Raises `ConfigError` listing every
    problem found.
    """
    environ = os.environ if environ is None else environ
    path = Path(path)
    problems = Problems(str(path))
    raw = _read_yaml(path, problems)
    if problems:
        raise ConfigError(problems.items)
    if not isinstance(raw, dict):
        problems.whole("the file must be a mapping of sections (site, criteria, teams, policy...)")
        raise ConfigError(problems.items)
    _nul_characters(raw, problems)
    if problems:
        raise ConfigError(problems.items)
    try:
        spec = DeploymentSpec.model_validate(raw)
    except ValidationError as e:
        problems.from_validation(e)
        raise ConfigError(problems.items) from None
    _cross_check(spec, problems)
    _cross_check_messaging(spec, None, problems)
    managers, stages = [m.id for m in spec.managers], [s.name for s in spec.funnel_stages]
    crm_external.cross_check(spec.crm.external, managers, stages, environ, problems)
    if problems:
        raise ConfigError(problems.items)

    languages = tuple(spec.site.languages)
    criteria = tuple(_criterion(c) for c in spec.criteria)
    flows, flow_problems = _load_flows(path, spec.flows_dir, criteria, languages, problems)
    if flow_problems:
        raise ConfigError(flow_problems)
    _cross_check_messaging(spec, tuple(flows), problems)
    if problems:
        raise ConfigError(problems.items)
    return dataclasses.replace(
        _build(path, spec, criteria, flows, environ),
        email=messaging.build_email(spec.email, environ),
        notifications=messaging.build_notifications(spec.notifications),
        twilio=messaging.build_twilio(spec.twilio, environ),
        crm_external=crm_external.build(spec.crm.external, environ),
    )


def check(path: str | Path, environ: Mapping[str, str] | None = None) -> list[str]:
    """The problems `load_deployment` would raise, or [] when the deployment is valid."""
    try:
        load_deployment(path, environ)
    except ConfigError as e:
        return e.problems
    return []


# ---- pass 1: YAML ------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys: PyYAML would silently keep the last one.

    A value PyYAML's constructors cannot build (an explicit `!!int abc`) is a problem at its
    line, never a traceback; an impossible date such as 2026-02-30, which PyYAML would fail
    on the same way, stays the text it is, for the key that wants a date to name.
    """

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as e:
            value = node.value if isinstance(node, yaml.ScalarNode) else node.tag
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read {value!r} as {node.tag.rsplit(':', 1)[-1]} ({e})", node.start_mark
            ) from None


def _timestamp(loader: _StrictLoader, node: yaml.ScalarNode) -> Any:
    try:
        return loader.construct_yaml_timestamp(node)
    except ValueError:  # 2026-02-30, 2026-13-01, 25:00: the validator of its key says what is wrong
        return loader.construct_scalar(node)


def _mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    """Every key of this file is text: an unquoted 1 and a quoted "1" (DTMF keys, phone
    numbers, CRM user ids) are one key once read, so they are compared as text."""
    first: dict[Any, tuple[int, Any]] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        same = str(key) if isinstance(key, int) and not isinstance(key, bool) else key
        try:
            seen = first.get(same)
        except TypeError:  # an unhashable key; construct_mapping reports it properly
            continue
        if seen is not None:
            line, was = seen
            also = f", written {was!r} there" if type(was) is not type(key) else ""
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first at line {line}{also})", key_node.start_mark
            )
        first[same] = (key_node.start_mark.line + 1, key)
    return loader.construct_mapping(node, deep=True)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)
_StrictLoader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp)


def _read_yaml(path: Path, problems: Problems) -> Any:
    try:
        data = path.read_bytes()
    except OSError as e:
        problems.whole(f"cannot read the file: {e.strerror or e}")
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        problems.at_line(data.count(b"\n", 0, e.start) + 1, _not_utf8(data))
        return None
    try:
        return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass: no arbitrary objects
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        what = e.problem or e.context or "invalid YAML"
        if mark is None:
            problems.whole(f"invalid YAML: {what}")
            return None
        what += f" (column {mark.column + 1})"
        if e.problem and e.context and e.context_mark:
            # e.g. an unclosed quote: the problem shows at the end, its cause where the quote opened
            what += f", {e.context} at line {e.context_mark.line + 1}"
        problems.at_line(mark.line + 1, what)
    except yaml.YAMLError as e:
        problems.whole(f"invalid YAML: {e}")
    except RecursionError:
        problems.whole("invalid YAML: lists or mappings nested too deeply")
    return None


def _not_utf8(data: bytes) -> str:
    """Why a file that is not UTF-8 cannot be read, and how to fix it. Windows editors save
    Russian text as Windows-1251 unless told otherwise; Notepad asks in "Save as"."""
    how = '(in Notepad: "Save as", Encoding: UTF-8)'
    try:
        if any("а" <= ch <= "я" for ch in data.decode("cp1251").lower()):
            how = '(probably Windows-1251; in Notepad: "Save as", Encoding: UTF-8; or iconv -f cp1251 -t utf-8)'
    except UnicodeDecodeError:
        pass
    return f"the file is not UTF-8 text: save it as UTF-8 {how}"


def _nul_characters(value: Any, problems: Problems, loc: Loc = ()) -> None:
    """Text holding YAML's "\\0": PostgreSQL stores no NUL, and a manager named so would stop
    the server at start on PostgreSQL only."""
    if isinstance(value, str):
        if "\0" in value:
            problems.add(loc, 'holds the NUL character ("\\0"), which the database cannot store')
    elif isinstance(value, dict):
        for key, inner in value.items():
            _nul_characters(key, problems, loc)
            _nul_characters(inner, problems, (*loc, str(key)))
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            _nul_characters(inner, problems, (*loc, i))


# ---- pass 3: rules across the file --------------------------------------------------------


def _cross_check(spec: DeploymentSpec, problems: Problems) -> None:
    languages = spec.site.languages
    teams = set(spec.teams)
    skills = set(spec.skills)

    def texts(loc: Loc, mapping: Mapping[str, str]) -> None:
        for lang in mapping:
            if lang not in languages:
                problems.add((*loc, lang), f"{lang!r} is not a site language ({', '.join(languages)})")
        for lang in languages:
            if lang not in mapping:
                problems.add(loc, f"has no {lang} text (every site language needs one)")

    def langs(loc: Loc, codes: Iterable[str]) -> None:
        for i, lang in enumerate(codes):
            if lang not in languages:
                problems.add((*loc, i), f"{lang!r} is not a site language ({', '.join(languages)})")

    def team(loc: Loc, name: str | None) -> None:
        if name is not None and name not in teams:
            problems.add(loc, f"no team named {name!r} (teams: {', '.join(sorted(teams)) or 'none'})")

    def skill(loc: Loc, name: str) -> None:
        if name not in skills:
            problems.add(loc, f"no skill named {name!r} (skills: {', '.join(sorted(skills)) or 'none'})")

    def unique(loc: Loc, what: str, values: list[Any], field: str = "") -> None:
        first: dict[Any, int] = {}
        for i, value in enumerate(values):
            if value is None:
                continue
            if value in first:
                where = dotted((*loc, first[value]))
                problems.add((*loc, i, *((field,) if field else ())), f"{what} {value!r} is already used by {where}")
            first.setdefault(value, i)

    for code, n in Counter(languages).items():
        if n > 1:
            problems.add(("site", "languages"), f"{code!r} is listed {n} times")

    unique(("criteria",), "name", [c.name for c in spec.criteria], "name")
    for i, c in enumerate(spec.criteria):
        loc: Loc = ("criteria", i)
        texts((*loc, "label"), c.label)
        texts((*loc, "prompt"), c.prompt)
        unique((*loc, "options"), "key", [o.key for o in c.options], "key")
        unique((*loc, "options"), "value", [o.value for o in c.options], "value")
        for j, o in enumerate(c.options):
            texts((*loc, "options", j, "label"), o.label)
            for k, s in enumerate(o.skills):
                skill((*loc, "options", j, "skills", k), s)
        values = [o.value for o in c.options]
        if c.default is not None and c.default not in values:
            problems.add((*loc, "default"), f"{c.default!r} is not one of the options' values ({', '.join(values)})")

    for name, label in spec.skills.items():
        texts(("skills", name), label)
    for name, t in spec.teams.items():
        texts(("teams", name, "label"), t.label)
    _overlapping_hours(("hours",), spec.hours, problems)
    _workday_rules(("hours",), spec.hours, None, problems)
    for name, t in spec.teams.items():
        _overlapping_hours(("teams", name, "hours"), t.hours, problems)
        _workday_rules(("teams", name, "hours"), t.hours, spec.hours, problems)
    _dated_rules(("hours",), spec.hours, None, problems)
    for name, t in spec.teams.items():
        _dated_rules(("teams", name, "hours"), t.hours, spec.hours, problems)

    langs(("manager_defaults", "languages"), spec.manager_defaults.languages or ())
    unique(("managers",), "id", [m.id for m in spec.managers], "id")
    unique(("managers",), "device", [m.device for m in spec.managers], "device")
    for i, m in enumerate(spec.managers):
        loc = ("managers", i)
        team((*loc, "team"), m.team)
        for name in m.skills:
            skill((*loc, "skills", name), name)
        langs((*loc, "languages"), m.languages or ())

    unique(("funnel_stages",), "name", [s.name for s in spec.funnel_stages], "name")
    for i, stage in enumerate(spec.funnel_stages):
        texts(("funnel_stages", i, "label"), stage.label)
        team(("funnel_stages", i, "team"), stage.team)
    segment_criteria = {c.name for c in spec.criteria if c.segment}
    for i, name in enumerate(spec.crm.segment_order):
        if name not in segment_criteria:
            problems.add(("crm", "segment_order", i), f"{name!r} is not a criterion with segment: true")

    team(("policy", "default_team"), spec.policy.default_team)
    steps = spec.policy.steps or []
    for i, step in enumerate(steps[:-1]):
        if step.timeout is None:
            problems.add(("policy", "steps", i, "timeout"), "only the last step may wait without a timeout")


def _overlapping_hours(loc: Loc, hours: HoursSpec | None, problems: Problems) -> None:
    """A day's opening intervals are the union of every week line naming it, so a later
    line cannot shorten a day: "mon-fri: 09:00-18:00" then "fri: 09:00-16:45" (a short
    Friday) kept Friday open until 18:00. Intervals of one day that overlap are refused."""
    if hours is None or not hours.week:
        return
    seen: dict[int, list[tuple[int, int, str, int]]] = {}
    for i, line in enumerate(hours.week):
        days, intervals = parse_hours_line(line)
        clash = None
        for day in days:
            for start, end in intervals:
                a, b = start.hour * 60 + start.minute, (end.hour * 60 + end.minute) or 24 * 60
                text = f"{start:%H:%M}-{b // 60:02d}:{b % 60:02d}"
                for a2, b2, text2, j in seen.get(day, ()):
                    if clash is None and a < b2 and a2 < b:
                        clash = (WEEKDAYS[day], text, text2, j)
                seen.setdefault(day, []).append((a, b, text, i))
        if clash is not None:
            name, text, text2, j = clash
            if j == i:
                problems.add((*loc, "week", i), f"{name} {text} overlaps {text2} in the same line")
            else:
                problems.add(
                    (*loc, "week", i),
                    f"{name} {text} overlaps {text2} from {dotted((*loc, 'week', j))}: a day's hours add up over "
                    f"every line that names it, so to give {name} other hours leave it out of the other line "
                    "(e.g. mon-thu and fri apart)",
                )


def _workday_rules(loc: Loc, hours: HoursSpec | None, site: HoursSpec | None, problems: Problems) -> None:
    """A worked date (`workdays`) must not also be a holiday, must name one weekday's hours
    only, and that weekday must have hours. A team's hours take each key they leave out
    from the site's, so a team is checked with what it inherits; what only the site's keys
    decide is reported once, at the site's."""
    if hours is None:
        return
    own = {key for key in ("week", "holidays", "workdays") if getattr(hours, key) is not None}
    if site is not None and not own:
        return

    def pick(key: str) -> tuple[Loc, list[Any]]:
        if getattr(hours, key) is not None or site is None:
            return (*loc, key), list(getattr(hours, key) or ())
        return ("hours", key), list(getattr(site, key) or ())

    (week_loc, week), (holidays_loc, holidays), (workdays_loc, workdays) = (
        pick("week"),
        pick("holidays"),
        pick("workdays"),
    )
    mine = (site is None) or ("workdays" in own)

    def with_hours(lines: Iterable[str]) -> set[int]:
        out: set[int] = set()
        for line in lines:
            days, intervals = parse_hours_line(line)
            if intervals:
                out.update(days)
        return out

    days_with_hours = with_hours(week)
    # a site's workday on a weekday the site gives no hours is the site's problem, said there
    site_days = with_hours(site.week or ()) if site is not None and site.week else set(range(7))
    first: dict[date, tuple[int, int]] = {}
    said_week = False
    for i, (a, b, weekday) in enumerate(workdays):
        here = dotted((*workdays_loc, i))
        name = WEEKDAYS[weekday]
        if week and weekday not in days_with_hours and (mine or ("week" in own and weekday in site_days)):
            if mine:
                problems.add(
                    (*workdays_loc, i),
                    f"{a} has {name}'s hours, and the week gives {name} none: name the weekday whose hours it "
                    f"has, e.g. - {a}: {WEEKDAYS[min(days_with_hours, default=0)]}",
                )
            elif not said_week:  # once for the team's week, not once per date
                said_week = True
                problems.add(
                    week_loc,
                    f"the site's workday {a} ({here}) has {name}'s hours, and this week gives {name} none: "
                    "give the team workdays of its own (workdays: [] for none)",
                )
        for j, (h1, h2) in enumerate(holidays):
            if a <= h2 and h1 <= b and (mine or "holidays" in own):
                both = max(a, h1)
                where = (*workdays_loc, i) if mine else (*holidays_loc, j)
                other = dotted((*holidays_loc, j)) if mine else here
                problems.add(where, f"{both} is both a workday and a holiday ({other}): keep it in one list")
                break
        if not mine:
            continue
        for n in range((b - a).days + 1):
            day = a + timedelta(days=n)
            seen = first.setdefault(day, (i, weekday))
            if seen[1] != weekday:
                problems.add(
                    (*workdays_loc, i),
                    f"{day} has {name}'s hours here and {WEEKDAYS[seen[1]]}'s at {dotted((*workdays_loc, seen[0]))}",
                )
                break


def _dated_rules(loc: Loc, hours: HoursSpec | None, site: HoursSpec | None, problems: Problems) -> None:
    """Hours given for dates (`dates`): one entry per date, never on a holiday (holidays are
    the one way to close a day), and no interval from 00:00 over the end of the night shift
    that began the evening before (a shift belongs to the day it starts: a date cannot
    shorten it). A team takes the site's dates unless it has its own; the site's were written
    for the site's hours, so a team whose own hours differ on such a date must have its own."""
    if hours is None:
        return
    own = {key for key in ("week", "holidays", "workdays", "dates") if getattr(hours, key) is not None}
    if site is not None and not own:
        return
    mine = site is None or "dates" in own
    dates_loc: Loc = (*loc, "dates") if mine else ("hours", "dates")
    dated = (hours.dates if mine else site.dates if site is not None else None) or {}
    holidays_loc: Loc = (*loc, "holidays") if hours.holidays is not None or site is None else ("hours", "holidays")
    holidays = list((hours.holidays if hours.holidays is not None or site is None else site.holidays) or ())
    schedule = _schedule(hours, _schedule(site, Schedule()) if site is not None else Schedule())

    first: dict[date, str] = {}
    for (a, b), intervals in dated.items():
        key = _span_text(a, b)
        here = (*dates_loc, key)
        if mine:
            for n in range((b - a).days + 1):
                day = a + timedelta(days=n)
                seen = first.setdefault(day, key)
                if seen != key:
                    problems.add(here, f"{day} is also under {dotted((*dates_loc, seen))}: one entry per date")
                    break
        for j, (h1, h2) in enumerate(holidays):
            if a <= h2 and h1 <= b and (mine or hours.holidays is not None):
                both = max(a, h1)
                if mine:
                    problems.add(
                        here,
                        f"{both} is also a holiday ({dotted((*holidays_loc, j))}), which closes it all day: "
                        "keep it in one list",
                    )
                else:
                    problems.add(
                        (*holidays_loc, j),
                        f"{both} has hours of its own at {dotted(here)} and is a holiday here: keep it in one "
                        "list (give the team dates of its own, dates: {} for none)",
                    )
                break
        if not mine:
            continue
        for n in range((b - a).days + 1):
            day = a + timedelta(days=n)
            tail = schedule.tail_into(day)
            if tail and intervals[0][0] < tail[0][1]:
                problems.add(
                    here,
                    f"{day} {interval_text(intervals[0])} overlaps the end of the night shift that starts the day "
                    f"before ({interval_text(tail[0])}): a shift belongs to the day it starts, so hours given for "
                    f"{day} do not change it; start the date's hours at {tail[0][1]:%H:%M} or later",
                )
                break
    if mine or hours.week is None or not dated:
        return
    # the site's dates on a team with a week of its own: fine where the team keeps the site's hours
    site_hours = dataclasses.replace(_schedule(site, Schedule()), dates={})
    undated = dataclasses.replace(schedule, dates={})
    for (a, b), intervals in dated.items():
        for n in range((b - a).days + 1):
            day = a + timedelta(days=n)
            theirs, ours = site_hours.hours_on(day), undated.hours_on(day)
            if day not in schedule.holidays and theirs != ours:
                problems.add(
                    (*loc, "week"),
                    f"the site's hours for {day} ({dotted(('hours', 'dates', _span_text(a, b)))}: "
                    f"{_intervals_text(intervals)}) replace the site's {_intervals_text(theirs)}, and this week "
                    f"gives {_intervals_text(ours)} that day: give the team dates of its own (dates: {{}} for none)",
                )
                return


def _span_text(a: date, b: date) -> str:
    return a.isoformat() if a == b else f"{a}..{b}"


def _intervals_text(intervals: Iterable[Interval]) -> str:
    return ", ".join(interval_text(i) for i in intervals) or "no hours"


def _cross_check_messaging(spec: DeploymentSpec, flows: tuple[str, ...] | None, problems: Problems) -> None:
    """The e-mail, notification and Twilio sections (`acd.config.messaging`); with `flows`
    given, only that each Twilio number leads to an IVR flow that exists."""
    if flows is None:
        criteria = {c.name: [o.value for o in c.options] for c in spec.criteria}
        messaging.cross_check(spec.email, spec.notifications, spec.twilio, criteria, spec.site.languages, problems)
        return
    for number, flow in (spec.twilio.numbers if spec.twilio else {}).items():
        if flow not in flows:
            problems.add(("twilio", "numbers", number), f"no IVR flow named {flow!r} ({', '.join(flows) or 'none'})")


# ---- building --------------------------------------------------------------------------


def _criterion(c: Any) -> Criterion:
    options = tuple(Option(o.key, o.value, dict(o.label), o.weight, tuple(o.skills), o.priority) for o in c.options)
    return Criterion(c.name, dict(c.label), dict(c.prompt), options, c.default, c.segment)


def _load_flows(
    config: Path, flows_dir: str | None, criteria: tuple[Criterion, ...], languages: tuple[str, ...], problems: Problems
) -> tuple[dict[str, IvrFlow], list[str]]:
    if flows_dir is None:
        return {}, []
    directory = Path(os.path.normpath(config.parent / flows_dir))
    if not directory.is_dir():
        problems.add(("flows_dir",), f"no directory {str(directory)!r} (set flows_dir: null for no IVR)")
        return {}, problems.items
    flows: dict[str, IvrFlow] = {}
    found: list[str] = []
    names: set[str] = set()
    for file in _flow_files(directory):
        flow_problems = Problems(str(file))
        name = file.stem
        if name in names:
            flow_problems.whole(f"a second file for the flow {name!r}: keep one of {name}.yaml and {name}.yml")
        elif not name.replace("-", "_").isidentifier() or not name.isascii() or name != name.lower():
            flow_problems.whole("a flow's file name must be lowercase letters, digits, - or _ (it names the flow)")
        else:
            names.add(name)
            raw = _read_yaml(file, flow_problems)
            if not flow_problems:
                flow = build_flow(name, file, raw, criteria, languages, flow_problems)
                if flow is not None:
                    flows[name] = flow
        found += flow_problems.items
    return flows, found


def _flow_files(directory: Path) -> list[Path]:
    """The flows' files, `.yaml` or `.yml`; not what editors leave beside a file being edited
    (Emacs' `.#main.yaml` lock, `main.yaml~`, a hidden swap file), which would otherwise
    stop the server from starting or reloading while someone has a flow open."""
    return sorted(f for f in directory.iterdir() if f.suffix in (".yaml", ".yml") and not f.name.startswith((".", "#")))


def _dates(spans: Iterable[tuple[date, date]]) -> frozenset[date]:
    out: set[date] = set()
    for first, last in spans:
        out.update(first + timedelta(days=n) for n in range((last - first).days + 1))
    return frozenset(out)


def _week(lines: Iterable[str]) -> dict[int, tuple[tuple[time, time], ...]]:
    week: dict[int, list[tuple[time, time]]] = {}
    for line in lines:
        days, intervals = parse_hours_line(line)
        for day in days:
            week.setdefault(day, []).extend(intervals)
    return {day: tuple(sorted(spans)) for day, spans in sorted(week.items())}


def _workdays(entries: Iterable[tuple[date, date, int]]) -> dict[date, int]:
    """Each worked date -> the weekday whose hours it has."""
    return {day: weekday for first, last, weekday in entries for day in _dates([(first, last)])}


def _dated(entries: Mapping[tuple[date, date], tuple[Interval, ...]]) -> dict[date, tuple[Interval, ...]]:
    """Each date with hours of its own -> its intervals."""
    return {day: hours for (first, last), hours in entries.items() for day in _dates([(first, last)])}


def _schedule(spec: HoursSpec | None, base: Schedule) -> Schedule:
    """A team's hours: each key it leaves out (tz, week, holidays, workdays, dates) comes from the site's."""
    if spec is None:
        return base
    return Schedule(
        tz=spec.tz or base.tz,
        week=_week(spec.week) if spec.week is not None else base.week,
        holidays=_dates(spec.holidays) if spec.holidays is not None else base.holidays,
        workdays=_workdays(spec.workdays) if spec.workdays is not None else base.workdays,
        dates=_dated(spec.dates) if spec.dates is not None else base.dates,
    )


def _build(
    path: Path,
    spec: DeploymentSpec,
    criteria: tuple[Criterion, ...],
    flows: dict[str, IvrFlow],
    environ: Mapping[str, str],
) -> Deployment:
    languages = tuple(spec.site.languages)
    default_schedule = _schedule(spec.hours, Schedule(tz=spec.site.tz))
    teams = {name: Team(dict(t.label), _schedule(t.hours, default_schedule)) for name, t in spec.teams.items()}
    calendar = Calendar(
        tz=spec.site.tz, default=default_schedule, teams={name: t.schedule for name, t in teams.items()}
    )

    md = spec.manager_defaults
    defaults = ManagerDefaults(
        capacity={**RoutingPolicy().default_capacity, **md.capacity},
        languages=tuple(md.languages or languages[:1]),
        daily_cap=md.daily_cap,
    )
    managers = tuple(
        Manager(
            id=m.id,
            name=m.name,
            team=m.team,
            skills=dict(m.skills),
            languages=frozenset(m.languages if m.languages is not None else defaults.languages),
            capacity={**defaults.capacity, **m.capacity},
            device=m.device or "",
            email=m.email,
            order=m.order if m.order is not None else i + 1,
            daily_cap=m.daily_cap if m.daily_cap is not None else defaults.daily_cap,
        )
        for i, m in enumerate(spec.managers)
    )

    p = spec.policy
    channels = {}
    for ch in Channel:
        rules = spec.channels.get(ch)
        channels[ch] = (
            ChannelRules(rules.offer_timeout, rules.wrap_up, rules.priority_decay_per_hour) if rules else ChannelRules()
        )
    policy = RoutingPolicy(
        version=p.version,
        strategy=p.strategy,
        steps=tuple(EscalationStep(s.pool, s.timeout, s.skip_when) for s in p.steps) if p.steps else DEFAULT_STEPS,
        weights=Weights(p.weights.value, p.weights.fit, p.weights.load, p.weights.exploration),
        segment_keys=tuple(c.name for c in criteria if c.segment),
        value_weights={c.name: {o.value: o.weight for o in c.options} for c in criteria},
        skills_by_answer={c.name: {o.value: o.skills for o in c.options} for c in criteria},
        priority_by_answer={c.name: {o.value: o.priority for o in c.options} for c in criteria},
        default_team=p.default_team,
        channels=channels,
        default_capacity=defaults.capacity,
        missed_offers_to_pause=spec.auto_pause.missed_offers,
        inactivity_pause=spec.auto_pause.inactivity,
        voice_is_exclusive=p.voice_is_exclusive,
        min_rated_deals=p.min_rated_deals,
        seed=p.seed,
        calendar=calendar,
        hold_outside_hours=p.hold_outside_hours,
        shadow=ShadowPolicy(
            p.shadow.version,
            p.shadow.strategy,
            Weights(p.shadow.weights.value, p.shadow.weights.fit, p.shadow.weights.load, p.shadow.weights.exploration),
        )
        if p.shadow
        else None,
    )

    ami, agi, web = spec.asterisk.ami, spec.asterisk.fastagi, spec.web
    return Deployment(
        path=path,
        site_name=spec.site.name,
        tz=spec.site.tz,
        languages=languages,
        criteria=criteria,
        skills={name: dict(label) for name, label in spec.skills.items()},
        teams=teams,
        manager_defaults=defaults,
        managers=managers,
        funnel_stages=tuple(Stage(s.name, dict(s.label), s.team, s.route_to, s.wait) for s in spec.funnel_stages),
        policy=policy,
        flows=flows,
        server=ServerSettings(
            spec.server.host,
            spec.server.port,
            environ.get(DB_URL_ENV) or spec.server.db_url,
            spec.server.cluster,
            spec.server.node_grace,
            tuple(str(n) for n in spec.server.trusted_proxies),
        ),
        asterisk=AsteriskSettings(
            ami=AmiSettings(ami.host, ami.port, ami.username, ami.secret_env, environ.get(ami.secret_env)),
            fastagi=FastAgiSettings(agi.host, agi.port),
            handler_deadline=spec.asterisk.handler_deadline,
            enabled=spec.asterisk.enabled,
            ring_time=spec.asterisk.ring_time,
            max_wait=spec.asterisk.max_wait,
            announce_every=spec.asterisk.announce_every,
            callback_key=spec.asterisk.callback_key,
            queue_log=spec.asterisk.queue_log,
            sounds_dir=spec.asterisk.sounds_dir,
            outbound_dial=spec.asterisk.outbound_dial,
            callback_attempts=spec.asterisk.callback_attempts,
            callback_backoff=spec.asterisk.callback_backoff,
            callback_machine_detection=spec.asterisk.callback_machine_detection,
            reconcile_interval=spec.asterisk.reconcile_interval,
            overflow=spec.asterisk.overflow,
            announce_wait=spec.asterisk.announce_wait,
            average_handle=spec.asterisk.average_handle,
            voicemail_max=spec.asterisk.voicemail_max,
            servers=tuple(
                AsteriskServer(s.name, AmiSettings(s.ami.host, s.ami.port, s.ami.username, s.ami.secret_env, secret))
                for s in spec.asterisk.servers
                for secret in [environ.get(s.ami.secret_env)]
            ),
        ),
        web=WebSettings(
            tuple(web.allowed_origins),
            RateLimits(web.rate_limits.leads_per_minute, web.rate_limits.api_per_minute),
            web.name_the_manager,
        ),
        crm=CrmSettings(
            spec.crm.default_region,
            spec.crm.untouched_lead_days,
            spec.crm.half_life_days,
            spec.crm.prior_strength,
            spec.crm.min_level_deals,
            tuple(spec.crm.segment_order),
        ),
        reports=ReportSettings(
            {
                **DEFAULT_SERVICE_LEVEL,
                **{ch: ServiceLevel(sl.within, sl.target) for ch, sl in spec.reports.service_level.items()},
            }
        ),
    )
