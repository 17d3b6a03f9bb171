"""Adapter: the supervisor's numbers (service level, waits, abandonment, each manager's load)
of a day, or of the week (Monday to Sunday in the site's zone) or the month holding it, and
the CSV exports, computed from the stored contacts, decisions and transitions.

How the numbers are defined (the store has no "answered at" column, so answering is read
from the logs): a contact is *answered* at the first `accept` transition of the manager it
was offered to, after that offer; its *wait* is answered-at minus arrived-at. *Service
level* is answered within the channel's threshold (`reports.service_level` of the deployment
file, read per request so a reload applies at once) over answered plus abandoned; *abandoned*
contacts are those with status `abandoned`. A *missed* offer is one followed by a `miss`.
A contact counts for the day it arrived, whenever it was answered: an e-mail of 23:50 taken
at 00:10, a Friday's taken on Monday (answered, outside the service level). A manager's
*offered* counts the offers made in the period, *answered* the period's contacts they
answered. *Conversion* is won / (won + lost): unreached and other outcomes are left out.
A manager's *speed of response* is offer to accept. *Sales leaders* are the CRM's deals won
by their owner, on the day and in the week, against the week before; for a week or a month,
in it against the one before.

Every export comes plain (as machines read it) or, with `?excel=1`, as Excel with Russian
regional settings opens it (acd.crm.csvio.excel_table), and takes the report's `period`;
`/api/export/managers.csv` is the report's table of managers, `/api/export/summary.csv` its
days and total. The report (`sl_thresholds`, `sl_targets`), the summary (`sl_<channel>_seconds`,
`sl_<channel>_target`) and each contact's row (`sl_threshold_seconds`, `within_service_level`)
carry the service level they were counted with.
"""

from __future__ import annotations

import bisect
import csv
import io
import json
import logging
import math
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any, Protocol, TypeVar
from zoneinfo import ZoneInfo

from aiohttp import web

from acd.api.app import SERVICES, Services, api
from acd.api.crm import CRM, excel_wanted
from acd.api.routing import ApiError
from acd.config.deployment import DEFAULT_SERVICE_LEVEL, ServiceLevel
from acd.core.model import Channel, Contact, ContactStatus, Outcome, Presence
from acd.crm import csvio
from acd.crm.model import Deal, DealStatus
from acd.storage.store import Offer

log = logging.getLogger("acd.web")

Levels = Mapping[Channel, ServiceLevel]
Info = dict[str, dict[str, Any]]


class Counted(Protocol):
    """A contact as the reports count it: a whole Contact, or the store's ContactFigures
    (its columns the figures need, read without the JSON ones)."""

    @property
    def id(self) -> str: ...
    @property
    def seq(self) -> int: ...
    @property
    def channel(self) -> Channel: ...
    @property
    def arrived_at(self) -> float: ...
    @property
    def status(self) -> ContactStatus: ...
    @property
    def assigned_to(self) -> str | None: ...
    @property
    def outcome(self) -> Outcome | None: ...
    @property
    def customer_name(self) -> str: ...


class Offered(Protocol):
    """A decision as the reports read it: a whole Decision or the store's Offer."""

    @property
    def at(self) -> float: ...
    @property
    def contact_id(self) -> str: ...
    @property
    def manager_id(self) -> str | None: ...
    @property
    def kind(self) -> str: ...


class Changed(Protocol):
    """A presence change as the reports read it: a whole Transition or the store's PresenceChange."""

    @property
    def manager_id(self) -> str: ...
    @property
    def at(self) -> float: ...
    @property
    def new(self) -> Presence: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def cause(self) -> str: ...


C = TypeVar("C", bound=Counted)
MOST = 50_000
# A day's contact may be answered after the day ends (an e-mail of 23:50 taken at 00:10):
# its offer and answer are read up to this long after the day, so it still counts as answered.
LATE = 86400.0
_ENDS_OFFER = {"accept", "decline", "miss", "offer_failed", "withdraw", "auto_pause", "pause", "logout"}


# The days a report may be asked for, as for vacations (acd.api.crm.VacationDay).
FIRST_DAY, LAST_DAY = date(2000, 1, 1), date(2999, 12, 31)


def _day_bounds(tz: str, day: str | None, now: float) -> tuple[date, float, float]:
    zone = ZoneInfo(tz)
    if day:
        try:
            d = date.fromisoformat(day)
        except ValueError:
            raise ApiError(400, "invalid", "date: YYYY-MM-DD") from None
        if not FIRST_DAY <= d <= LAST_DAY:  # the periods and trends around it must stay dates
            raise ApiError(400, "invalid", f"date: from {FIRST_DAY} to {LAST_DAY}")
    else:
        d = datetime.fromtimestamp(now, zone).date()
    start = datetime(d.year, d.month, d.day, tzinfo=zone)
    return d, start.timestamp(), (start + timedelta(days=1)).timestamp()


def outcomes(
    contacts: Sequence[Counted],
    decisions: Sequence[Offered],
    transitions: Sequence[Changed],
    unended: set[str] | None = None,
) -> Info:
    """Per contact id: `answered_at`, `answered_by`, `offered_at` (the answered offer's time),
    `missed_by` (manager ids), `last_offered_to`. `unended` gets the ids of the contacts with
    an offer that none of `transitions` ended."""
    by_manager: dict[str, list[Changed]] = defaultdict(list)
    for t in sorted(transitions, key=lambda t: t.at):
        by_manager[t.manager_id].append(t)
    times = {m: [t.at for t in ts] for m, ts in by_manager.items()}
    out: dict[str, dict[str, Any]] = {c.id: {"missed_by": []} for c in contacts}
    for d in sorted(decisions, key=lambda d: d.at):
        info = out.get(d.contact_id)
        if info is None or d.manager_id is None or d.kind == "override":
            continue
        info["last_offered_to"] = d.manager_id
        ts = by_manager.get(d.manager_id, [])
        i = bisect.bisect_left(times.get(d.manager_id, []), d.at)
        for t in ts[i:]:
            if t.cause == "offer":
                continue
            if t.cause in _ENDS_OFFER:
                if t.cause == "accept" and "answered_at" not in info:
                    info["answered_at"], info["answered_by"] = t.at, d.manager_id
                    info["offered_at"] = d.at
                elif t.cause == "miss":
                    info["missed_by"].append(d.manager_id)
                break
        else:
            if unended is not None:
                unended.add(d.contact_id)
    return out


def day_report(
    contacts: Sequence[Counted],
    decisions: Sequence[Offered],
    transitions: Sequence[Changed],
    tz: str,
    start: float,
    end: float,
    names: dict[str, str],
    now: float,
    info: Info | None = None,
    levels: Levels = DEFAULT_SERVICE_LEVEL,
) -> dict[str, Any]:
    """The numbers of the contacts that arrived in [start, end) (a day, a week or a month)
    and each manager's load over it; `info` is their `outcomes` when the caller has them,
    `levels` each channel's service level."""
    zone = ZoneInfo(tz)
    contacts = [c for c in contacts if start <= c.arrived_at < end]
    if info is None:
        info = outcomes(contacts, decisions, transitions)
    by_hour: dict[int, Counter[str]] = {h: Counter() for h in range(24)}
    sl_by_hour: dict[int, list[int]] = {h: [0, 0] for h in range(24)}
    managers: dict[str, dict[str, Any]] = defaultdict(
        lambda: {
            "offered": 0,
            "answered": 0,
            "missed": [],
            "abandoned": [],
            "won": 0,
            "lost": 0,
            "done": 0,
            "unreached": 0,
            "pauses": [],
            "paused_seconds": 0.0,
            "responses": [],
        }
    )
    for c in contacts:
        hour = datetime.fromtimestamp(c.arrived_at, zone).hour
        by_hour[hour][c.channel.value] += 1
        i = info[c.id]
        for mid in i["missed_by"]:
            managers[mid]["missed"].append(_brief(c))
        if "answered_at" in i:
            ok = i["answered_at"] - c.arrived_at <= levels[c.channel].within
            sl_by_hour[hour][0] += ok
            sl_by_hour[hour][1] += 1
            managers[i["answered_by"]]["answered"] += 1
            managers[i["answered_by"]]["responses"].append(i["answered_at"] - i["offered_at"])
        elif c.status is ContactStatus.ABANDONED:
            sl_by_hour[hour][1] += 1
            if "last_offered_to" in i:
                managers[i["last_offered_to"]]["abandoned"].append(_brief(c))
        if c.status is ContactStatus.FINISHED and c.assigned_to and c.outcome is not None:
            key = c.outcome.value if c.outcome.value in ("won", "lost", "unreached") else "done"
            managers[c.assigned_to][key] += 1
    for d in decisions:
        if d.manager_id and d.kind != "override" and start <= d.at < end:
            managers[d.manager_id]["offered"] += 1
    _pauses([t for t in transitions if t.at < end], managers, start, min(now, end))
    for mid, m in managers.items():
        m["id"], m["name"] = mid, names.get(mid, mid)
        closed = m["won"] + m["lost"]
        m["conversion"] = round(m["won"] / closed, 3) if closed else None
        # speed of response: from the offer to the manager's accept, over the contacts they answered
        responses = m.pop("responses")
        m["response_average"] = round(sum(responses) / len(responses), 1) if responses else None
        m["response_longest"] = round(max(responses), 1) if responses else None
    return {
        "start": start,
        "end": end,
        "tz": tz,
        **summary(contacts, info, levels),
        "sl_thresholds": {ch.value: levels[ch].within for ch in Channel},
        "sl_targets": {ch.value: levels[ch].target for ch in Channel},
        "sl_by_channel": {
            ch.value: summary([c for c in contacts if c.channel is ch], info, levels)["service_level"] for ch in Channel
        },
        "by_hour": [{"hour": h, **dict(by_hour[h])} for h in range(24)],
        "sl_by_hour": [
            {"hour": h, "service_level": round(a / n, 3) if n else None} for h, (a, n) in sl_by_hour.items()
        ],
        "managers": sorted(managers.values(), key=lambda m: m["id"]),
    }


def summary(contacts: Sequence[Counted], info: Info, levels: Levels = DEFAULT_SERVICE_LEVEL) -> dict[str, Any]:
    """`total`, `answered`, `abandoned`, `service_level`, `abandonment`, `average_wait` and
    `longest_wait` of these contacts, whenever they were answered (a late answer is answered,
    outside the service level)."""
    waits: list[float] = []
    within = abandoned = 0
    for c in contacts:
        i = info[c.id]
        if "answered_at" in i:
            wait = i["answered_at"] - c.arrived_at
            waits.append(wait)
            within += wait <= levels[c.channel].within
        elif c.status is ContactStatus.ABANDONED:
            abandoned += 1
    answered_or_lost = len(waits) + abandoned
    return {
        "total": len(contacts),
        "answered": len(waits),
        "abandoned": abandoned,
        "service_level": round(within / answered_or_lost, 3) if answered_or_lost else None,
        "average_wait": round(sum(waits) / len(waits), 1) if waits else None,
        "longest_wait": round(max(waits), 1) if waits else None,
        "abandonment": round(abandoned / answered_or_lost, 3) if answered_or_lost else None,
    }


def _brief(c: Counted) -> dict[str, Any]:
    return {"id": c.id, "channel": c.channel.value, "arrived_at": c.arrived_at, "name": c.customer_name}


def _pauses(transitions: Sequence[Changed], managers: dict[str, dict[str, Any]], start: float, stop: float) -> None:
    """Each pause of the day [start, stop) with its reason and the part of its length within
    the day (one begun the evening before counts from midnight); one still running counts up
    to `stop`. A pause that ended before the day is not the day's."""
    open_since: dict[str, Changed] = {}
    for t in sorted(transitions, key=lambda t: t.at):
        began = open_since.pop(t.manager_id, None)
        if began is not None and t.at > start:
            _add_pause(managers[t.manager_id], began, t.at, start, t.at)
        if t.new is Presence.PAUSED:
            open_since[t.manager_id] = t
    for mid, began in open_since.items():
        _add_pause(managers[mid], began, None, start, stop)


def _add_pause(m: dict[str, Any], began: Changed, ended: float | None, start: float, stop: float) -> None:
    seconds = max(0.0, stop - max(start, began.at))
    m["pauses"].append(
        {"since": began.at, "until": ended, "reason": began.reason, "cause": began.cause, "seconds": round(seconds)}
    )
    m["paused_seconds"] = round(m["paused_seconds"] + seconds)


# ---- routes ------------------------------------------------------------------------------

PERIODS = ("day", "week", "month")


def _period(request: web.Request) -> str:
    period = request.query.get("period") or "day"
    if period not in PERIODS:
        raise ApiError(400, "invalid", "period: day, week or month")
    return period


def _period_days(day: date, period: str) -> tuple[date, int]:
    """The first day and the number of days of the period holding `day`: the day itself; its
    week, Monday to Sunday; its calendar month."""
    if period == "week":
        return day - timedelta(days=day.weekday()), 7
    if period == "month":
        first = day.replace(day=1)
        return first, ((first + timedelta(days=32)).replace(day=1) - first).days
    return day, 1


def _midnight(zone: ZoneInfo, d: date) -> float:
    return datetime(d.year, d.month, d.day, tzinfo=zone).timestamp()


def _asked(request: web.Request) -> tuple[str, date, date, int, float, float]:
    """The query's period (`period`, day by default) holding the day its `date` names (today
    by default): the period, the day, its first day and number of days, and its bounds."""
    svc = request.app[SERVICES]
    zone = ZoneInfo(svc.deployment.tz)
    period = _period(request)
    day, _, _ = _day_bounds(svc.deployment.tz, request.query.get("date"), svc.clock())
    first, n = _period_days(day, period)
    return period, day, first, n, _midnight(zone, first), _midnight(zone, first + timedelta(days=n))


def _stamp(period: str, first: date) -> str:
    """A period in an export's file name: 2026-12-07, week-2026-12-07 (its Monday), 2026-12."""
    return {"day": str(first), "week": f"week-{first}", "month": f"{first:%Y-%m}"}[period]


async def _load(
    svc: Services,
    since: float,
    until: float,
    days: int,
    read_contacts: Callable[[float, float, int], Awaitable[list[C]]],
) -> tuple[list[C], list[Offer], list[Changed], Info]:
    """The contacts that arrived (`read_contacts(since, until, cap)`: the store's report_contacts,
    or whole contacts for the export) and the offers made in [since, until), and the
    transitions from a day earlier (a pause running at midnight began the day before); and
    the offers and transitions of the LATE seconds after `until` (a contact of the evening
    answered after midnight), read apart so that a busy next day does not push the window's
    own rows out; and then the answers that came later still (_late_answers); and the
    contacts' `outcomes`. Newest first, so when a window holds more than its cap (MOST a
    week of `days`) it is its oldest that are left out."""
    most = MOST * ((days + 6) // 7)
    contacts = await read_contacts(since, until, most)
    decisions = await svc.store.report_offers(since, until, most)
    transitions: list[Changed] = []
    transitions += await svc.store.report_transitions(since - 86400, until, most)
    if most in (len(contacts), len(decisions), len(transitions)):
        log.warning("reports: more than %d rows between %s and %s; the oldest are left out", most, since, until)
    if until >= svc.clock():
        return contacts, decisions, transitions, outcomes(contacts, decisions, transitions)
    decisions += await svc.store.report_offers(until, until + LATE, most)
    transitions += await svc.store.report_transitions(until, until + LATE, most)
    unended: set[str] = set()
    info = outcomes(contacts, decisions, transitions, unended)
    await _late_answers(svc, contacts, decisions, transitions, until + LATE, info, unended)
    return contacts, decisions, transitions, info


async def _late_answers(
    svc: Services,
    contacts: Sequence[Counted],
    decisions: list[Offer],
    transitions: list[Changed],
    after: float,
    info: Info,
    unended: set[str],
) -> None:
    """Add to `decisions` and `transitions` the offers made from `after` on of the contacts
    that have no answer before it in `info` (a Friday e-mail taken on Monday), each with its
    manager's first presence changes from it on (the one that ended it among them), and
    count those contacts again into `info`. Read by index for those contacts only, so a past
    period costs the same however much came after it."""
    unanswered = [c.id for c in contacts if "answered_at" not in info[c.id] and c.status is not ContactStatus.ABANDONED]
    if not unanswered:
        return
    late = [d for d in await svc.store.offers_of_contacts(unanswered, after) if d.manager_id]
    if not late:
        return
    # outcomes reads no further than the change that ended an offer, and the reports' pauses
    # stop at the period's end: the rest of a run does no harm
    seen: set[tuple[str, float, str]] = set()
    for t in await svc.store.transitions_from([(d.manager_id, d.at) for d in late], OFFER_STEPS):
        if (t.manager_id, t.at, t.cause) not in seen:
            seen.add((t.manager_id, t.at, t.cause))
            transitions.append(t)
    decisions += late
    # Every row added comes after every row read before, so only the contacts with a new
    # offer or with an offer not yet ended (that a new change may end) can count otherwise.
    # Their outcomes read their own offers, and their managers' changes from the first of them.
    again = set(unanswered) | unended
    offers = [d for d in decisions if d.contact_id in again]
    first: dict[str, float] = {}
    for d in offers:
        if d.manager_id is not None:
            first[d.manager_id] = min(d.at, first.get(d.manager_id, d.at))
    changes = [t for t in transitions if t.at >= first.get(t.manager_id, math.inf)]
    info.update(outcomes([c for c in contacts if c.id in again], offers, changes))


# An offer ends within this many of its manager's presence changes (its own `offer`, then the
# accept, miss or decline; other offers of a manager with room for several in between).
OFFER_STEPS = 20


@api.add(
    "GET",
    "/api/reports/day",
    "The numbers of a day, or with `period` of its week (Monday to Sunday) or month: service "
    "level, waits, abandonment, each manager's load, the sales leaders",
    role="supervisor",
    query=("date", "period"),
    tag="web",
)
async def report_day(request: web.Request) -> web.Response:
    return web.json_response(await _report(request))


async def _report(request: web.Request) -> dict[str, Any]:
    """The report of the period (`period`: day by default, week or month) holding the day the
    query's `date` names (today by default). Its `week` is the chart's days, one row each:
    the seven days ending with the day, or the week's or the month's days."""
    svc = request.app[SERVICES]
    tz, now = svc.deployment.tz, svc.clock()
    levels = svc.deployment.reports.service_level  # one deployment for the whole report, reloaded or not
    zone = ZoneInfo(tz)
    period, day, first, n, start, end = _asked(request)
    # The chart's days end with the period, so one load serves both: the period is cut out of
    # it with the same bounds _load would give it alone.
    chart_first, chart_n = (day - timedelta(days=6), 7) if period == "day" else (first, n)
    chart_start = _midnight(zone, chart_first)
    contacts, decisions, transitions, info = await _load(svc, chart_start, end, chart_n, svc.store.report_contacts)
    names = {m.id: m.name for m in svc.dispatcher.board.managers.values()}
    report = day_report(
        contacts,
        [d for d in decisions if d.at >= start],  # a later day's offers count only its contacts
        [t for t in transitions if t.at >= start - 86400],
        tz,
        start,
        end,
        names,
        now,
        info,
        levels,
    )
    report["period"], report["date"] = period, day.isoformat()
    report["first"], report["last"] = first.isoformat(), (first + timedelta(days=n - 1)).isoformat()
    report["week"], report["week_managers"] = _days(contacts, info, zone, chart_first, chart_n, names, levels)
    # Sales leaders: deals won by their owner on the day and in the week ending with it, and
    # the trend against the seven days before; for a week or a month, in it and in the one
    # before (the CRM's closed deals, by closing time).
    if period == "day":
        previous = _midnight(zone, chart_first - timedelta(days=7))
        deals = await _closed_deals(request, previous, end)
        report["leaders"] = leaders(deals, names, start, chart_start, previous, end)
    else:
        before = first - timedelta(days=7) if period == "week" else (first - timedelta(days=1)).replace(day=1)
        previous = _midnight(zone, before)
        deals = await _closed_deals(request, previous, end)
        report["leaders"] = leaders(deals, names, start, start, previous, end)
    won: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for deal in deals:
        if deal.status is DealStatus.WON and deal.owner and chart_start <= (deal.closed_at or 0) < end:
            won[datetime.fromtimestamp(deal.closed_at or 0, zone).date().isoformat()][deal.owner] += deal.amount or 0.0
    for row in report["week"]:
        row["won_amount"] = dict(won.get(row["date"], {}))
    return report


async def _closed_deals(request: web.Request, since: float, until: float) -> list[Deal]:
    """The deals won or lost in [since, until) (none without a CRM)."""
    crm = request.app.get(CRM)
    if crm is None:
        return []
    return await crm.repo.closed_deals(since, until)


def leaders(
    deals: list[Deal], names: dict[str, str], day: float, week: float, previous: float, end: float
) -> list[dict[str, Any]]:
    """Each deal owner's won deals (count, amount) and lost ones on the day [day, end), in the
    week [week, end) and in the week before [previous, week); `change` is the week's won
    amount against the week before's (None when there was nothing before). Leaders first: by
    the week's won amount, then its won count."""
    rows: dict[str, dict[str, Any]] = {}
    for d in deals:
        if not d.owner or d.closed_at is None:
            continue
        row = rows.setdefault(
            d.owner,
            {
                "id": d.owner,
                "name": names.get(d.owner, d.owner),
                **{p: {"won": 0, "amount": 0.0, "lost": 0} for p in ("day", "week", "previous")},
            },
        )
        periods = ["week", "day"] if d.closed_at >= day else ["week"] if d.closed_at >= week else ["previous"]
        for p in periods:
            if d.status is DealStatus.WON:
                row[p]["won"] += 1
                row[p]["amount"] += d.amount or 0.0
            else:
                row[p]["lost"] += 1
    for row in rows.values():
        before, now = row["previous"]["amount"], row["week"]["amount"]
        row["change"] = round((now - before) / before, 3) if before else None
    return sorted(rows.values(), key=lambda r: (-r["week"]["amount"], -r["week"]["won"], r["name"]))


def _days(
    contacts: Sequence[Counted],
    info: Info,
    zone: ZoneInfo,
    first: date,
    n: int,
    names: dict[str, str],
    levels: Levels = DEFAULT_SERVICE_LEVEL,
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """The `n` days from `first`, one row each: the day's `summary` (its contacts as the day
    report counts them) and each manager's conversion; and the managers with a conversion."""
    by_day: dict[date, list[Counted]] = defaultdict(list)
    for c in contacts:
        by_day[datetime.fromtimestamp(c.arrived_at, zone).date()].append(c)
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i in range(n):
        d = first + timedelta(days=i)
        closed: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for c in by_day.get(d, []):
            if c.status is ContactStatus.FINISHED and c.assigned_to and c.outcome in (Outcome.WON, Outcome.LOST):
                closed[c.assigned_to][0] += c.outcome is Outcome.WON
                closed[c.assigned_to][1] += 1
        conversion = {mid: round(w / k, 3) for mid, (w, k) in closed.items()}
        seen.update(conversion)
        day = summary(by_day.get(d, []), info, levels)
        rows.append({"date": d.isoformat(), "contacts": day.pop("total"), **day, "conversion": conversion})
    managers = [{"id": mid, "name": names.get(mid, mid)} for mid in sorted(seen)]
    return rows, managers


def _csv(rows: list[list[Any]], name: str, excel: bool = False) -> web.Response:
    """The rows as a CSV download: the plain one (",", numbers with a dot), or with `excel`
    the one Excel with Russian regional settings opens right (csvio.excel_table)."""
    if excel:
        text = csvio.excel_table(rows)
    else:
        buf = io.StringIO()
        writer = csv.writer(buf)
        for row in rows:
            writer.writerow([_cell(v) for v in row])
        text = "\ufeff" + buf.getvalue()  # the BOM makes Excel read UTF-8
    return web.Response(
        body=text.encode(),
        headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": f'attachment; filename="{name}"',
        },
    )


def _cell(v: Any) -> str:
    # A cell starting with = + - @ is a formula in spreadsheets: keep customers' text inert.
    return csvio.inert(v if isinstance(v, str) else ("" if v is None else str(v)))


def _iso(ts: float | None, zone: ZoneInfo) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts, zone).isoformat(timespec="seconds")


def _when(zone: ZoneInfo, excel: bool) -> Callable[[float | None], str]:
    """How an export writes a moment: ISO 8601 with its offset, or for Excel day first
    (07.12.2026 14:05:00), both in the site's time zone."""
    if excel:
        return lambda ts: csvio.excel_when(ts, zone.key)
    return lambda ts: _iso(ts, zone)


EXCEL_NOTE = " (excel=1: for Excel with Russian regional settings)"


@api.add(
    "GET",
    "/api/export/contacts.csv",
    "The contacts of the day, or with `period` of its week or month, as CSV" + EXCEL_NOTE,
    role="supervisor",
    query=("date", "period", "excel"),
    tag="web",
)
async def export_contacts(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    zone = ZoneInfo(svc.deployment.tz)
    excel = excel_wanted(request)
    when = _when(zone, excel)
    levels = svc.deployment.reports.service_level
    period, _, first, n, start, end = _asked(request)

    async def whole(since: float, until: float, most: int) -> list[Contact]:
        # the export's columns need the criteria and the form's note too
        return await svc.store.list_contacts(None, None, since, most, until=until)

    contacts, _, _, info = await _load(svc, start, end, n, whole)
    rows: list[list[Any]] = [
        [
            "id",
            "arrived_at",
            "channel",
            "status",
            "name",
            "phone",
            "email",
            "criteria",
            "assigned_to",
            "answered_at",
            "wait_seconds",
            "missed_by",
            "outcome",
            "finished_at",
            "override",
            "note",
            "sl_threshold_seconds",
            "within_service_level",
        ]
    ]
    for c in sorted(contacts, key=lambda c: c.seq):
        i = info[c.id]
        answered = i.get("answered_at")
        limit = levels[c.channel].within
        # 1 or 0 for the contacts the service level counts (answered or abandoned), else empty
        counted = answered is not None or c.status is ContactStatus.ABANDONED
        rows.append(
            [
                c.id,
                when(c.arrived_at),
                c.channel.value,
                c.status.value,
                c.customer_name,
                c.phone,
                c.email,
                json.dumps(dict(c.criteria), ensure_ascii=False),
                c.assigned_to,
                when(answered),
                round(answered - c.arrived_at, 1) if answered else "",
                " ".join(i["missed_by"]),
                c.outcome.value if c.outcome else "",
                when(c.finished_at),
                c.override,
                c.payload.get("note", ""),
                limit,
                int(answered is not None and answered - c.arrived_at <= limit) if counted else "",
            ]
        )
    return _csv(rows, f"contacts-{_stamp(period, first)}.csv", excel)


@api.add(
    "GET",
    "/api/export/decisions.csv",
    "The routing decisions of the day, or with `period` of its week or month, as CSV" + EXCEL_NOTE,
    role="supervisor",
    query=("date", "period", "excel"),
    tag="web",
)
async def export_decisions(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    zone = ZoneInfo(svc.deployment.tz)
    excel = excel_wanted(request)
    when = _when(zone, excel)
    period, _, first, n, start, end = _asked(request)
    decisions = await svc.store.list_decisions(None, None, start, MOST * ((n + 6) // 7), until=end)
    rows: list[list[Any]] = [
        [
            "at",
            "contact_id",
            "manager_id",
            "kind",
            "strategy",
            "step",
            "pool",
            "policy_version",
            "summary",
            "candidates",
            "filtered",
        ]
    ]
    for d in sorted(decisions, key=lambda d: d.at):
        rows.append(
            [
                when(d.at),
                d.contact_id,
                d.manager_id,
                d.kind,
                d.strategy,
                d.step,
                d.pool,
                d.policy_version,
                d.summary,
                "; ".join(f"{c.manager_id}={_decimal(f'{c.score:.3f}', excel)}" for c in d.candidates),
                "; ".join(f"{k}: {', '.join(v)}" for k, v in d.filtered.items()),
            ]
        )
    return _csv(rows, f"decisions-{_stamp(period, first)}.csv", excel)


def _decimal(number: str, excel: bool) -> str:
    """A number written inside a text cell, with Excel's decimal comma in the Excel variant."""
    return number.replace(".", ",") if excel else number


MANAGER_COLUMNS = (
    "id",
    "name",
    "offered",
    "answered",
    "won",
    "lost",
    "unreached",
    "done",
    "conversion",
    "response_average_seconds",
    "response_longest_seconds",
    "missed",
    "missed_contacts",
    "abandoned",
    "abandoned_contacts",
    "pauses",
    "paused_seconds",
    "won_deals",
    "won_amount",
    "lost_deals",
)


def manager_rows(report: dict[str, Any]) -> list[list[Any]]:
    """The day report's table of managers as the dashboard shows it, one row a manager:
    contacts offered and answered, outcomes (won, lost, unreached, done), conversion, speed of
    response (offer to accept, average and longest, in seconds), missed offers and abandoned
    contacts (how many, and their ids), pauses (how many, and their seconds within the day),
    and the CRM's deals closed on the day (won: count and amount; lost). A manager with deals
    closed on the day but no contacts has a row too. Conversion is a fraction (0.667)."""
    deals = {r["id"]: r["day"] for r in report.get("leaders", [])}
    rows: list[list[Any]] = [list(MANAGER_COLUMNS)]
    people = {m["id"]: m for m in report["managers"]}
    for r in report.get("leaders", []):
        if r["id"] not in people and (r["day"]["won"] or r["day"]["lost"]):
            people[r["id"]] = {"id": r["id"], "name": r["name"]}
    for mid in sorted(people):
        m = people[mid]
        day = deals.get(mid, {"won": 0, "amount": 0.0, "lost": 0})
        rows.append(
            [
                mid,
                m["name"],
                m.get("offered", 0),
                m.get("answered", 0),
                m.get("won", 0),
                m.get("lost", 0),
                m.get("unreached", 0),
                m.get("done", 0),
                m.get("conversion"),
                m.get("response_average"),
                m.get("response_longest"),
                len(m.get("missed", [])),
                " ".join(c["id"] for c in m.get("missed", [])),
                len(m.get("abandoned", [])),
                " ".join(c["id"] for c in m.get("abandoned", [])),
                len(m.get("pauses", [])),
                m.get("paused_seconds", 0),
                day["won"],
                float(day["amount"]),
                day["lost"],
            ]
        )
    return rows


@api.add(
    "GET",
    "/api/export/managers.csv",
    "The table of managers of the day, or with `period` of its week or month (the report's), as CSV" + EXCEL_NOTE,
    role="supervisor",
    query=("date", "period", "excel"),
    tag="web",
)
async def export_managers(request: web.Request) -> web.Response:
    excel = excel_wanted(request)
    report = await _report(request)
    return _csv(
        manager_rows(report), f"managers-{_stamp(report['period'], date.fromisoformat(report['first']))}.csv", excel
    )


SUMMARY_COLUMNS = (
    "date",
    "contacts",
    "answered",
    "abandoned",
    "service_level",
    "average_wait_seconds",
    "longest_wait_seconds",
    "abandonment",
)
# after them, each channel's service level the numbers were counted with, the same on every
# row: sl_call_seconds, sl_call_target (a fraction, empty for none), ...
SL_COLUMNS = tuple(f"sl_{ch.value}_{what}" for ch in Channel for what in ("seconds", "target"))


_SUMMED = ("answered", "abandoned", "service_level", "average_wait", "longest_wait", "abandonment")


@api.add(
    "GET",
    "/api/export/summary.csv",
    "Service level, waits and abandonment of the day, or with `period` of its week or month, a row "
    "a day and the period's total last, as CSV" + EXCEL_NOTE,
    role="supervisor",
    query=("date", "period", "excel"),
    tag="web",
)
async def export_summary(request: web.Request) -> web.Response:
    excel = excel_wanted(request)
    report = await _report(request)
    first, last = report["first"], report["last"]
    rows: list[list[Any]] = [[*SUMMARY_COLUMNS, *SL_COLUMNS]]
    levels = [v for ch in Channel for v in (report["sl_thresholds"][ch.value], report["sl_targets"][ch.value])]
    for d in report["week"]:
        if first <= d["date"] <= last:
            when = csvio.ExcelValue(f"{date.fromisoformat(d['date']):%d.%m.%Y}") if excel else d["date"]
            rows.append([when, d["contacts"], *(d[k] for k in _SUMMED), *levels])
    # the period's own total: its service level is not an average of its days'
    rows.append(["total", report["total"], *(report[k] for k in _SUMMED), *levels])
    return _csv(rows, f"summary-{_stamp(report['period'], date.fromisoformat(first))}.csv", excel)
