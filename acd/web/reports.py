"""Adapter: the supervisor's numbers (service level, waits, abandonment, each manager's day)
and the CSV exports, computed from the stored contacts, decisions and transitions.

How the numbers are defined (the store has no "answered at" column, so answering is read
from the logs): a contact is *answered* at the first `accept` transition of the manager it
was offered to, after that offer; its *wait* is answered-at minus arrived-at. *Service
level* is answered within the channel's threshold over answered plus abandoned; *abandoned*
contacts are those with status `abandoned`. A *missed* offer is one followed by a `miss`.
A contact of the day answered after midnight counts for its day. A manager's *speed of
response* is offer to accept. *Sales leaders* are the CRM's deals won by their owner, on the
day and in the week, against the week before.

Every export comes plain (as machines read it) or, with `?excel=1`, as Excel with Russian
regional settings opens it (acd.crm.csvio.excel_table); `/api/export/managers.csv` is the
day report's table of managers.
"""

from __future__ import annotations

import bisect
import csv
import io
import json
import logging
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from acd.api.app import SERVICES, Services, api
from acd.api.crm import CRM, excel_wanted
from acd.api.routing import ApiError
from acd.core.events import Decision, Transition
from acd.core.model import Contact, ContactStatus
from acd.crm import csvio
from acd.crm.model import Deal, DealStatus

log = logging.getLogger("acd.web")

# Answered within this many seconds counts towards the service level (the classic 80/20 for
# voice; a web lead or an e-mail is "answered" when a manager takes it).
SL_THRESHOLDS = {"call": 20.0, "callback": 60.0, "web": 300.0, "email": 3600.0}
MOST = 50_000
# A day's contact may be answered after the day ends (an e-mail of 23:50 taken at 00:10):
# its offer and answer are read up to this long after the day, so it still counts as answered.
LATE = 86400.0
_ENDS_OFFER = {"accept", "decline", "miss", "offer_failed", "withdraw", "auto_pause", "pause", "logout"}


def _day_bounds(tz: str, day: str | None, now: float) -> tuple[date, float, float]:
    zone = ZoneInfo(tz)
    if day:
        try:
            d = date.fromisoformat(day)
        except ValueError:
            raise ApiError(400, "invalid", "date: YYYY-MM-DD") from None
    else:
        d = datetime.fromtimestamp(now, zone).date()
    start = datetime(d.year, d.month, d.day, tzinfo=zone)
    return d, start.timestamp(), (start + timedelta(days=1)).timestamp()


def outcomes(
    contacts: list[Contact], decisions: list[Decision], transitions: list[Transition]
) -> dict[str, dict[str, Any]]:
    """Per contact id: `answered_at`, `answered_by`, `offered_at` (the answered offer's time),
    `missed_by` (manager ids), `last_offered_to`."""
    by_manager: dict[str, list[Transition]] = defaultdict(list)
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
    return out


def day_report(
    contacts: list[Contact],
    decisions: list[Decision],
    transitions: list[Transition],
    tz: str,
    start: float,
    end: float,
    names: dict[str, str],
    now: float,
) -> dict[str, Any]:
    zone = ZoneInfo(tz)
    contacts = [c for c in contacts if start <= c.arrived_at < end]
    info = outcomes(contacts, decisions, transitions)
    by_hour: dict[int, Counter[str]] = {h: Counter() for h in range(24)}
    sl_by_hour: dict[int, list[int]] = {h: [0, 0] for h in range(24)}
    waits: list[float] = []
    answered = within = abandoned = 0
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
            answered += 1
            wait = i["answered_at"] - c.arrived_at
            waits.append(wait)
            ok = wait <= SL_THRESHOLDS.get(c.channel.value, 20.0)
            within += ok
            sl_by_hour[hour][0] += ok
            sl_by_hour[hour][1] += 1
            managers[i["answered_by"]]["answered"] += 1
            managers[i["answered_by"]]["responses"].append(i["answered_at"] - i["offered_at"])
        elif c.status is ContactStatus.ABANDONED:
            abandoned += 1
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
    answered_or_lost = answered + abandoned
    return {
        "start": start,
        "end": end,
        "tz": tz,
        "total": len(contacts),
        "answered": answered,
        "abandoned": abandoned,
        "service_level": round(within / answered_or_lost, 3) if answered_or_lost else None,
        "sl_thresholds": SL_THRESHOLDS,
        "average_wait": round(sum(waits) / len(waits), 1) if waits else None,
        "longest_wait": round(max(waits), 1) if waits else None,
        "abandonment": round(abandoned / answered_or_lost, 3) if answered_or_lost else None,
        "by_hour": [{"hour": h, **dict(by_hour[h])} for h in range(24)],
        "sl_by_hour": [
            {"hour": h, "service_level": round(a / n, 3) if n else None} for h, (a, n) in sl_by_hour.items()
        ],
        "managers": sorted(managers.values(), key=lambda m: m["id"]),
    }


def _brief(c: Contact) -> dict[str, Any]:
    return {"id": c.id, "channel": c.channel.value, "arrived_at": c.arrived_at, "name": c.customer_name}


def _pauses(transitions: list[Transition], managers: dict[str, dict[str, Any]], start: float, stop: float) -> None:
    """Each pause of the day [start, stop) with its reason and the part of its length within
    the day (one begun the evening before counts from midnight); one still running counts up
    to `stop`. A pause that ended before the day is not the day's."""
    open_since: dict[str, Transition] = {}
    for t in sorted(transitions, key=lambda t: t.at):
        began = open_since.pop(t.manager_id, None)
        if began is not None and t.at > start:
            _add_pause(managers[t.manager_id], began, t.at, start, t.at)
        if t.new.value == "paused":
            open_since[t.manager_id] = t
    for mid, began in open_since.items():
        _add_pause(managers[mid], began, None, start, stop)


def _add_pause(m: dict[str, Any], began: Transition, ended: float | None, start: float, stop: float) -> None:
    seconds = max(0.0, stop - max(start, began.at))
    m["pauses"].append(
        {"since": began.at, "until": ended, "reason": began.reason, "cause": began.cause, "seconds": round(seconds)}
    )
    m["paused_seconds"] = round(m["paused_seconds"] + seconds)


# ---- routes ------------------------------------------------------------------------------


async def _load(svc: Services, since: float, until: float) -> tuple[list[Contact], list[Decision], list[Transition]]:
    """The contacts that arrived and the decisions made in [since, until), and the transitions
    from a day earlier (a pause running at midnight began the day before); and the decisions
    and transitions of the LATE seconds after `until` (a contact of the evening answered
    after midnight), read apart so that a busy next day does not push the window's own rows
    out. Newest first, so when a window holds more than MOST rows it is its oldest that are
    left out."""
    contacts = await svc.store.list_contacts(None, None, since, MOST, until=until)
    decisions = await svc.store.list_decisions(None, None, since, MOST, until=until)
    transitions = await svc.store.list_transitions(None, since - 86400, MOST, until=until)
    if MOST in (len(contacts), len(decisions), len(transitions)):
        log.warning("reports: more than %d rows between %s and %s; the oldest are left out", MOST, since, until)
    if until < svc.clock():
        decisions += await svc.store.list_decisions(None, None, until, MOST, until=until + LATE)
        transitions += await svc.store.list_transitions(None, until, MOST, until=until + LATE)
    return contacts, decisions, transitions


@api.add(
    "GET",
    "/api/reports/day",
    "The day's numbers: service level, waits, abandonment, each manager",
    role="supervisor",
    query=("date",),
    tag="web",
)
async def report_day(request: web.Request) -> web.Response:
    return web.json_response(await _report(request))


async def _report(request: web.Request) -> dict[str, Any]:
    """The day report of the day the query's `date` names (today by default)."""
    svc = request.app[SERVICES]
    tz, now = svc.deployment.tz, svc.clock()
    day, start, end = _day_bounds(tz, request.query.get("date"), now)
    # The week ends with the chosen day, so one load serves both: the day is cut out of it
    # with the same bounds _load would give it alone.
    first = day - timedelta(days=6)
    week_start = datetime(first.year, first.month, first.day, tzinfo=ZoneInfo(tz)).timestamp()
    contacts, decisions, transitions = await _load(svc, week_start, end)
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
    )
    report["week"], report["week_managers"] = _week(contacts, decisions, transitions, tz, first, names, now)
    # Sales leaders: deals won by their owner on the day and in the week ending with it, and
    # the trend against the seven days before (the CRM's closed deals, by closing time).
    first_previous = first - timedelta(days=7)
    previous = datetime(first_previous.year, first_previous.month, first_previous.day, tzinfo=ZoneInfo(tz)).timestamp()
    deals = await _closed_deals(request, previous, end)
    report["leaders"] = leaders(deals, names, start, week_start, previous, end)
    for row in report["week"]:
        d = date.fromisoformat(row["date"])
        lo = datetime(d.year, d.month, d.day, tzinfo=ZoneInfo(tz)).timestamp()
        hi = (datetime(d.year, d.month, d.day, tzinfo=ZoneInfo(tz)) + timedelta(days=1)).timestamp()
        won: dict[str, float] = defaultdict(float)
        for deal in deals:
            if deal.status is DealStatus.WON and deal.owner and lo <= (deal.closed_at or 0) < hi:
                won[deal.owner] += deal.amount or 0.0
        row["won_amount"] = dict(won)
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


def _week(
    contacts: list[Contact],
    decisions: list[Decision],
    transitions: list[Transition],
    tz: str,
    first: date,
    names: dict[str, str],
    now: float,
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """The seven days from `first`: contacts, service level and each manager's conversion
    per day (each day counted as the day report counts it)."""
    zone = ZoneInfo(tz)
    week: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i in range(7):
        d = first + timedelta(days=i)
        lo = datetime(d.year, d.month, d.day, tzinfo=zone).timestamp()
        hi = (datetime(d.year, d.month, d.day, tzinfo=zone) + timedelta(days=1)).timestamp()
        r = day_report(
            contacts,
            [x for x in decisions if lo <= x.at],
            transitions,
            tz,
            lo,
            hi,
            names,
            min(now, hi),
        )
        conversion = {m["id"]: m["conversion"] for m in r["managers"] if m["conversion"] is not None}
        seen.update(conversion)
        week.append(
            {
                "date": d.isoformat(),
                "contacts": r["total"],
                "service_level": r["service_level"],
                "conversion": conversion,
            }
        )
    managers = [{"id": mid, "name": names.get(mid, mid)} for mid in sorted(seen)]
    return week, managers


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
    "The day's contacts as CSV" + EXCEL_NOTE,
    role="supervisor",
    query=("date", "excel"),
    tag="web",
)
async def export_contacts(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    zone = ZoneInfo(svc.deployment.tz)
    excel = excel_wanted(request)
    when = _when(zone, excel)
    _, start, end = _day_bounds(svc.deployment.tz, request.query.get("date"), svc.clock())
    contacts, decisions, transitions = await _load(svc, start, end)
    info = outcomes(contacts, decisions, transitions)
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
        ]
    ]
    for c in sorted(contacts, key=lambda c: c.seq):
        i = info[c.id]
        answered = i.get("answered_at")
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
            ]
        )
    return _csv(rows, f"contacts-{datetime.fromtimestamp(start, zone).date()}.csv", excel)


@api.add(
    "GET",
    "/api/export/decisions.csv",
    "The day's routing decisions as CSV" + EXCEL_NOTE,
    role="supervisor",
    query=("date", "excel"),
    tag="web",
)
async def export_decisions(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    zone = ZoneInfo(svc.deployment.tz)
    excel = excel_wanted(request)
    when = _when(zone, excel)
    _, start, end = _day_bounds(svc.deployment.tz, request.query.get("date"), svc.clock())
    decisions = await svc.store.list_decisions(None, None, start, MOST, until=end)
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
    return _csv(rows, f"decisions-{datetime.fromtimestamp(start, zone).date()}.csv", excel)


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
    "The day's table of managers (the day report's) as CSV" + EXCEL_NOTE,
    role="supervisor",
    query=("date", "excel"),
    tag="web",
)
async def export_managers(request: web.Request) -> web.Response:
    excel = excel_wanted(request)
    report = await _report(request)
    day = datetime.fromtimestamp(report["start"], ZoneInfo(report["tz"])).date()
    return _csv(manager_rows(report), f"managers-{day}.csv", excel)
