"""Adapter: the deployment file's shape, as pydantic models (YAML mapping ⇄ validated spec).

These models check what one value can tell about itself: types, ranges, DTMF keys, time
zones, opening-hours lines. Rules that span the file (a manager's team exists, every label
has each site language) live in `acd.config.loader`, which reports every problem at once.
Every model forbids unknown keys, so a misspelt key is an error rather than a silent default.
"""

from __future__ import annotations

import math
import re
from datetime import date, datetime, time
from itertools import pairwise
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    IPvAnyNetwork,
    StrictBool,
    StrictInt,
)

from acd.config.crm_external import ExternalCrmSpec
from acd.config.errors import yaml_number
from acd.config.messaging import EmailSpec, NotificationsSpec, TwilioSpec
from acd.core.hours import WEEKDAYS
from acd.core.model import Channel
from acd.core.policy import Pool, SkipWhen, Strategy

DTMF_KEYS = frozenset("0123456789*#")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_LANG = re.compile(r"^[a-z]{2,3}$")
_DEVICE = re.compile(r"^[A-Za-z][A-Za-z0-9]*/\S+$")
_SOUND = re.compile(r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$")
_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s)?\s*$")
_HOURS_LINE = re.compile(r"^\s*([a-z]{3})(?:\s*-\s*([a-z]{3}))?\s*:\s*(.+)$")
_INTERVAL = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


# ---- scalar checks ---------------------------------------------------------------------


def _name(value: str) -> str:
    if not _NAME.match(value):
        raise ValueError("must be a lowercase name: a letter, then letters, digits or _")
    return value


def _lang(value: str) -> str:
    if not _LANG.match(value):
        raise ValueError("must be a two- or three-letter language code such as ru or en")
    return value


def _dtmf(value: Any) -> Any:
    # YAML reads `key: 1` as an int; admins should not have to quote digits.
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 9:
        value = str(value)
    if not isinstance(value, str) or value not in DTMF_KEYS:
        raise ValueError("must be one DTMF key 0-9, * or # (quote * and # in YAML)")
    return value


def _tz(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r} (use an IANA name such as Europe/Moscow)") from None
    return value


_NOT_A_DURATION = "must be a duration: seconds (30) or with a unit (30s, 10m, 1h)"


def parse_duration(value: Any) -> Any:
    """Seconds as a number, or a string with units: "30s", "10m", "1h30m"."""
    if isinstance(value, bool):
        raise ValueError("must be a duration: seconds (30) or with a unit (30s, 10m, 1h)")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError(
                f"must be a duration: seconds (30) or with a unit (30s, 10m, 1h), not {yaml_number(value)}"
            )
        return float(value)
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m and any(m.groups()):
            h, mi, s = (float(g) if g else 0.0 for g in m.groups())
            seconds = h * 3600 + mi * 60 + s
            if not math.isfinite(seconds):
                raise ValueError("is too long to be a duration")
            return seconds
    raise ValueError("must be a duration: seconds (30) or with a unit (30s, 10m, 1h)")


def _positive(value: float) -> float:
    if value <= 0:
        raise ValueError("must be more than 0 seconds")
    return value


def _non_negative(value: float) -> float:
    if value < 0:
        raise ValueError("must not be negative")
    return value


def _str_keys(value: Any) -> Any:
    # YAML reads unquoted phone numbers and digits as ints; the file means them as text.
    if isinstance(value, dict):
        out: dict[Any, Any] = {}
        for k, v in value.items():
            key = str(k) if isinstance(k, int) and not isinstance(k, bool) else k
            if key in out:
                raise ValueError(f'duplicate key {key!r}: 1 and "1" are the same key')
            out[key] = v
        return out
    return value


def _device(value: str) -> str:
    if not _DEVICE.match(value):
        raise ValueError("must be an Asterisk dial string such as PJSIP/101")
    return value


def _sound(value: str) -> str:
    if not _SOUND.match(value):
        raise ValueError("must be a relative sound name without extension, e.g. acd/main/greeting-ru")
    return value


def parse_hours_line(line: str) -> tuple[tuple[int, ...], tuple[tuple[time, time], ...]]:
    """`"mon-fri: 09:00-13:00, 14:00-18:00"` -> ((0..4), ((09:00, 13:00), (14:00, 18:00))).

    24:00 is written as an end and stored as midnight (time(0)), which `Schedule` reads as
    the end of the day; an interval may not cross midnight.
    """
    m = _HOURS_LINE.match(line.strip().lower())
    if not m:
        raise ValueError('must look like "mon-fri: 09:00-18:00"')
    first, last, spans = m.group(1), m.group(2) or m.group(1), m.group(3)
    for day in (first, last):
        if day not in WEEKDAYS:
            raise ValueError(f"unknown weekday {day!r} (use {', '.join(WEEKDAYS)})")
    a, b = WEEKDAYS.index(first), WEEKDAYS.index(last)
    if b < a:
        raise ValueError(f"weekday range {first}-{last} runs backwards (split it at sun)")
    return tuple(range(a, b + 1)), parse_intervals(spans)


def parse_intervals(spans: str) -> tuple[tuple[time, time], ...]:
    """`"09:00-13:00, 14:00-18:00"` -> ((09:00, 13:00), (14:00, 18:00)), as written: the
    intervals of a week line, or of one date under `hours.dates`."""
    intervals: list[tuple[time, time]] = []
    for span in spans.split(","):
        im = _INTERVAL.match(span)
        if not im:
            raise ValueError(f"interval {span.strip()!r} must look like 09:00-18:00")
        h1, m1, h2, m2 = (int(g) for g in im.groups())
        if h1 > 23 or m1 > 59 or h2 > 24 or m2 > 59 or (h2 == 24 and m2):
            raise ValueError(f"interval {span.strip()!r} has an impossible time")
        start, end_minutes = time(h1, m1), h2 * 60 + m2
        if end_minutes <= h1 * 60 + m1:
            raise ValueError(
                f"interval {span.strip()!r} must start before it ends (split a night: 22:00-24:00, 00:00-06:00)"
            )
        intervals.append((start, time(0) if h2 == 24 else time(h2, m2)))
    return tuple(intervals)


def interval_text(interval: tuple[time, time]) -> str:
    """(09:00, 00:00) -> '09:00-24:00', as an administrator writes it."""
    start, end = interval
    return f"{start:%H:%M}-{'24:00' if end == time(0) else f'{end:%H:%M}'}"


def _hours_line_text(value: Any) -> Any:
    """An unquoted `- mon-fri: 09:00-18:00` is a one-key mapping to YAML: read it as the line
    it was meant to be rather than refuse it as "not a string"."""
    if isinstance(value, dict):
        if len(value) == 1:
            ((days, spans),) = value.items()
            if isinstance(days, str) and isinstance(spans, str):
                return f"{days}: {spans}"
        raise ValueError('must be one quoted line per list item, e.g. - "mon-fri: 09:00-18:00"')
    if not isinstance(value, str):
        raise ValueError(f'must be a line such as "mon-fri: 09:00-18:00" in quotes (got {value!r})')
    return value


def _hours_line(value: str) -> str:
    parse_hours_line(value)
    return value


def _date_span(value: Any, what: str) -> tuple[date, date]:
    """A date, or a range "2026-01-01..2026-01-08" (both ends closed)."""
    if isinstance(value, datetime):
        raise ValueError(f"a {what} is a whole day: write the date without a time, e.g. 2026-01-01")
    if isinstance(value, date):
        return (value, value)
    if isinstance(value, str):
        first, sep, last = value.partition("..")
        try:
            a = date.fromisoformat(first.strip())
            b = date.fromisoformat(last.strip()) if sep else a
        except ValueError as e:
            why = f": {e}" if "out of range" in str(e) or "must be in" in str(e) else ""
            raise ValueError(
                f"must be a date 2026-01-01 or a range 2026-01-01..2026-01-08 (got {value!r}{why})"
            ) from None
        if b < a:
            raise ValueError("date range runs backwards")
        if (b - a).days > 366:
            raise ValueError("date range is longer than a year")
        return (a, b)
    raise ValueError("must be a date 2026-01-01 or a range 2026-01-01..2026-01-08")


def _holiday(value: Any) -> Any:
    """A date, or a range "2026-01-01..2026-01-08" (both ends closed)."""
    return _date_span(value, "holiday")


def _workday(value: Any) -> Any:
    """A date (or range) worked though its weekday is a day off, with the weekday whose
    hours it has: `2025-11-01` (Monday's), `2025-11-01: fri` or "2025-11-01: fri"."""
    weekday: Any = "mon"
    if isinstance(value, dict):
        if len(value) != 1:
            raise ValueError("must be one date per list item: - 2025-11-01 or - 2025-11-01: fri")
        ((value, weekday),) = value.items()
    elif isinstance(value, str) and ":" in value:
        value, _, weekday = value.partition(":")
    if not isinstance(weekday, str) or weekday.strip().lower() not in WEEKDAYS:
        raise ValueError(f"the weekday whose hours the day has must be one of {', '.join(WEEKDAYS)} (got {weekday!r})")
    first, last = _date_span(value, "workday")
    return (first, last, WEEKDAYS.index(weekday.strip().lower()))


def _dated_day(value: Any) -> Any:
    """A key of `hours.dates`: a date, or a range "2026-12-28..2026-12-30"."""
    return _date_span(value, "date under dates")


def _dated_keys(value: Any) -> Any:
    """`hours.dates` keyed by text, so a problem names 2026-04-30 as it was written; an
    unquoted and a quoted 2026-04-30 are then one date written twice."""
    if not isinstance(value, dict):
        return value
    out: dict[Any, Any] = {}
    for key, hours in value.items():
        if isinstance(key, datetime):
            raise ValueError(f"{key:%Y-%m-%d %H:%M} is a whole day under dates: write the date without a time")
        text = key.isoformat() if isinstance(key, date) else key
        if text in out:
            raise ValueError(f"{text} is written twice: one entry per date")
        out[text] = hours
    return out


def _dated_hours(value: Any) -> Any:
    """A value of `hours.dates`: the date's intervals, as in a week line: "09:00-17:00" or
    "09:00-13:00, 14:00-16:00". A date is closed by `holidays`, not here."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "closed", "off", "-")):
        raise ValueError("a date under dates is open with the hours given; to close it all day list it under holidays")
    if not isinstance(value, str):
        raise ValueError(f'must be the day\'s intervals in quotes, e.g. "09:00-17:00" (got {value!r})')
    intervals = sorted(parse_intervals(value.lower()))
    for (s1, e1), (s2, e2) in pairwise(intervals):
        if e1 == time(0) or s2 < e1:
            raise ValueError(f"{interval_text((s2, e2))} overlaps {interval_text((s1, e1))}")
    return tuple(intervals)


def _version(value: Any) -> Any:
    # An unquoted 2026-11-23 becomes a date and 1.10 becomes 1.1: refuse rather than guess.
    if not isinstance(value, str) or not value.strip():
        raise ValueError('must be a quoted string, e.g. "2026-11-23.1"')
    return value


Name = Annotated[str, AfterValidator(_name)]
Lang = Annotated[str, AfterValidator(_lang)]
Key = Annotated[str, BeforeValidator(_dtmf)]
TimeZone = Annotated[str, AfterValidator(_tz)]
Text = Annotated[str, Field(min_length=1)]
Texts = dict[Lang, Text]
Seconds = Annotated[float, BeforeValidator(parse_duration), AfterValidator(_non_negative)]
PositiveSeconds = Annotated[float, BeforeValidator(parse_duration), AfterValidator(_positive)]
Count = Annotated[StrictInt, Field(ge=0)]
Capacity = dict[Channel, Count]
HoursLine = Annotated[str, BeforeValidator(_hours_line_text), AfterValidator(_hours_line)]
Holiday = Annotated[tuple[date, date], BeforeValidator(_holiday)]
Workday = Annotated[tuple[date, date, int], BeforeValidator(_workday)]
DatedDay = Annotated[tuple[date, date], BeforeValidator(_dated_day)]
DatedHours = Annotated[tuple[tuple[time, time], ...], BeforeValidator(_dated_hours)]
Port = Annotated[StrictInt, Field(ge=1, le=65535)]
NonNegFloat = Annotated[float, Field(ge=0)]


class Spec(BaseModel):
    # allow_inf_nan: YAML's .nan and .inf are numbers to pydantic; no setting means them
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


# ---- site and sections ---------------------------------------------------------------


class SiteSpec(Spec):
    name: Text
    tz: TimeZone = "UTC"
    languages: Annotated[list[Lang], Field(min_length=1)] = ["en"]


class HoursSpec(Spec):
    """Weekly opening lines, closed dates, dates worked with a weekday's hours (a Saturday
    of the production calendar) and dates with hours of their own (a pre-holiday short day);
    an empty `week` means open around the clock."""

    tz: TimeZone | None = None
    week: list[HoursLine] | None = None
    holidays: list[Holiday] | None = None
    workdays: list[Workday] | None = None
    dates: Annotated[dict[DatedDay, DatedHours], BeforeValidator(_dated_keys)] | None = None


class ServerSpec(Spec):
    host: str = "127.0.0.1"
    port: Port = 8080
    db_url: str | None = None
    cluster: bool = False
    node_grace: PositiveSeconds = 10.0
    # reverse proxies (addresses or networks) whose X-Forwarded-For names the client (acd.api.proxies)
    trusted_proxies: list[IPvAnyNetwork] = []


class AmiSpec(Spec):
    host: str = "127.0.0.1"
    port: Port = 5038
    username: str = "acd"
    secret_env: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] = "ACD_AMI_SECRET"


class FastAgiSpec(Spec):
    host: str = "127.0.0.1"
    port: Port = 4573


class AsteriskServerSpec(Spec):
    name: Name
    ami: AmiSpec = AmiSpec()


def _unique_servers(servers: list[AsteriskServerSpec]) -> list[AsteriskServerSpec]:
    names = [s.name for s in servers]
    if len(set(names)) != len(names):
        raise ValueError("server names must be unique")
    return servers


class AsteriskSpec(Spec):
    enabled: StrictBool = False
    ami: AmiSpec = AmiSpec()
    fastagi: FastAgiSpec = FastAgiSpec()
    handler_deadline: PositiveSeconds = 2.0
    ring_time: PositiveSeconds = 20.0
    max_wait: PositiveSeconds = 600.0
    announce_every: Seconds = 30.0
    callback_key: Key | None = "*"
    queue_log: str | None = None
    sounds_dir: str | None = None
    outbound_dial: Annotated[str, Field(pattern=r"\{number\}")] = "Local/{number}@acd-outbound"
    callback_attempts: Annotated[StrictInt, Field(ge=1)] = 3
    callback_backoff: PositiveSeconds = 120.0
    callback_machine_detection: StrictBool = False
    reconcile_interval: Seconds = 60.0
    overflow: Literal["fallback", "voicemail", "callback"] = "fallback"
    announce_wait: StrictBool = True
    average_handle: PositiveSeconds = 180.0
    voicemail_max: PositiveSeconds = 120.0
    servers: Annotated[list[AsteriskServerSpec], AfterValidator(_unique_servers)] = []


class RateLimitsSpec(Spec):
    leads_per_minute: Count = 10
    api_per_minute: Count = 600


class WebSpec(Spec):
    allowed_origins: list[str] = []
    rate_limits: RateLimitsSpec = RateLimitsSpec()
    name_the_manager: bool = False


# ---- qualification -------------------------------------------------------------------


class OptionSpec(Spec):
    key: Key
    value: Name
    label: Texts
    weight: Annotated[float, Field(gt=0)] = 1.0
    skills: list[Name] = []
    priority: StrictInt = 0


class CriterionSpec(Spec):
    name: Name
    label: Texts
    prompt: Texts
    options: Annotated[list[OptionSpec], Field(min_length=1)]
    default: Name | None = None
    segment: StrictBool = False


class TeamSpec(Spec):
    label: Texts
    hours: HoursSpec | None = None


class ManagerDefaultsSpec(Spec):
    capacity: Capacity = {}
    languages: list[Lang] | None = None
    daily_cap: Count | None = None


class ManagerSpec(Spec):
    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$")]
    name: Text
    team: Name | None = None
    skills: dict[Name, Annotated[StrictInt, Field(ge=1, le=5)]] = {}
    languages: list[Lang] | None = None
    capacity: Capacity = {}
    device: Annotated[str, AfterValidator(_device)] | None = None
    email: str = ""
    order: StrictInt | None = None
    daily_cap: Count | None = None


class StageSpec(Spec):
    name: Name
    label: Texts
    team: Name
    route_to: Literal["owner", "team"] = "owner"
    wait: Seconds = 60.0


class CrmSpec(Spec):
    default_region: Annotated[str, Field(pattern=r"^[A-Z]{2}$")] = "RU"
    untouched_lead_days: NonNegFloat = 30.0
    half_life_days: NonNegFloat = 180.0
    prior_strength: Annotated[float, Field(gt=0)] = 10.0
    min_level_deals: NonNegFloat = 8.0
    segment_order: list[Name] = []
    external: ExternalCrmSpec | None = None  # the office's own CRM (acd.config.crm_external)


class ChannelSpec(Spec):
    offer_timeout: PositiveSeconds = 20.0
    wrap_up: Seconds = 0.0
    priority_decay_per_hour: NonNegFloat = 0.0


class AutoPauseSpec(Spec):
    missed_offers: Count = 1
    inactivity: Seconds = 600.0


class StepSpec(Spec):
    pool: Pool
    timeout: PositiveSeconds | None = None
    skip_when: SkipWhen = SkipWhen.NOBODY_STAFFED


class WeightsSpec(Spec):
    value: NonNegFloat = 1.0
    fit: NonNegFloat = 0.5
    load: NonNegFloat = 0.5
    exploration: Annotated[float, Field(ge=0, le=1)] = 0.05


class ShadowSpec(Spec):
    """A candidate policy scored beside the live one on every offer, without acting."""

    version: Annotated[str, BeforeValidator(_version)]
    strategy: Strategy = Strategy.BEST_MATCH
    weights: WeightsSpec = WeightsSpec()


class PolicySpec(Spec):
    version: Annotated[str, BeforeValidator(_version)]
    strategy: Strategy = Strategy.BEST_MATCH
    default_team: Name | None = None
    steps: Annotated[list[StepSpec], Field(min_length=1)] | None = None
    weights: WeightsSpec = WeightsSpec()
    voice_is_exclusive: StrictBool = True
    min_rated_deals: Count = 10
    seed: StrictInt = 0
    hold_outside_hours: StrictBool = False
    shadow: ShadowSpec | None = None


def _percent(value: Any) -> Any:
    """A share of contacts as people write it: 80, 80% or "80 %" (a fraction 0.8 would read
    as 0.8 %, so it is refused rather than guessed)."""
    text = value.strip().removesuffix("%").strip() if isinstance(value, str) else None
    number: Any = value
    if text is not None:
        try:
            number = float(text)
        except ValueError:
            raise ValueError(f"must be a percentage such as 80 or 80% (got {value!r})") from None
    if isinstance(number, bool) or not isinstance(number, int | float) or not math.isfinite(number):
        raise ValueError(f"must be a percentage such as 80 or 80% (got {value!r})")
    if not 1 <= number <= 100:
        raise ValueError(f"must be a percentage from 1 to 100 such as 80 (got {value!r})")
    return float(number) / 100


def _service_level_shorthand(value: Any) -> Any:
    """`call: 20s` is `call: {within: 20s}`; checked here so a problem names the channel."""
    if isinstance(value, dict):
        return value
    return {"within": _positive(parse_duration(value))}


class ServiceLevelSpec(Spec):
    """A channel's service level: answered `within` this long counts; `target` (a share,
    80 or 80%) colours the dashboard's tile when the period falls short of it."""

    within: PositiveSeconds
    target: Annotated[float, BeforeValidator(_percent)] | None = None


class ReportsSpec(Spec):
    service_level: dict[Channel, Annotated[ServiceLevelSpec, BeforeValidator(_service_level_shorthand)]] = {}


class DeploymentSpec(Spec):
    site: SiteSpec
    flows_dir: str | None = "../ivr_flows"
    server: ServerSpec = ServerSpec()
    asterisk: AsteriskSpec = AsteriskSpec()
    web: WebSpec = WebSpec()
    hours: HoursSpec = HoursSpec()
    criteria: list[CriterionSpec] = []
    skills: dict[Name, Texts] = {}
    teams: dict[Name, TeamSpec] = {}
    manager_defaults: ManagerDefaultsSpec = ManagerDefaultsSpec()
    managers: list[ManagerSpec] = []
    funnel_stages: list[StageSpec] = []
    crm: CrmSpec = CrmSpec()
    channels: dict[Channel, ChannelSpec] = {}
    auto_pause: AutoPauseSpec = AutoPauseSpec()
    policy: PolicySpec
    email: EmailSpec = EmailSpec()
    notifications: NotificationsSpec = NotificationsSpec()
    twilio: TwilioSpec | None = None
    reports: ReportsSpec = ReportsSpec()
