"""Pure: replay last month's real contacts through each policy: who would have got what.

Input: one CSV row per past contact (the columns below; dates as in the CRM's CSV import).

    id, arrived_at, channel, manager, handle_minutes, outcome, amount,
    and one column per criterion (temperature, purpose, price_tier...)

`manager` is who really handled it; `outcome` is won / lost (or empty), `amount` the won
amount. The replay keeps what really happened outside routing: the same contacts at the
same moments, each taking as long as it really took, and each manager present in the
hours they really worked (from their first to their last contact of each day). Ratings are
learnt as the month goes by, from the real outcomes known by then — never from the future.
"""

from __future__ import annotations

import csv
import io
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from acd.core import events as ev
from acd.core.errors import CoreError
from acd.core.intake import qualify
from acd.core.model import Channel, Contact, ContactStatus, Manager, Presence
from acd.core.policy import RoutingPolicy, Strategy
from acd.core.switchboard import Switchboard
from acd.crm.csvio import parse_amount, parse_when
from acd.crm.provider import DealRatings
from acd.crm.ratings import Opportunity, RatingParams
from acd.sim.clock import Accept, Agenda, Finish, SetPresence, TimerDue

PRESENCE_MARGIN = 15 * 60.0  # seconds a manager is taken to be present around their first/last contact


@dataclass(frozen=True, slots=True)
class PastContact:
    line: int
    id: str
    at: float
    channel: Channel
    criteria: Mapping[str, str]
    manager: str
    handle: float
    won: bool
    amount: float


@dataclass
class Parsed:
    contacts: list[PastContact] = field(default_factory=list)
    rejected: list[tuple[int, str]] = field(default_factory=list)


def parse(text: str, criteria: Sequence[str], managers: Sequence[str], tz: str) -> Parsed:
    """Rows that cannot be replayed are rejected with their line and reason."""
    out = Parsed()
    known = set(managers)
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    for line, row in enumerate(reader, start=2):
        try:
            cid = (row.get("id") or "").strip() or f"line-{line}"
            at = parse_when((row.get("arrived_at") or "").strip(), tz, "arrived_at")
            if at is None:
                raise ValueError("arrived_at: missing")
            channel = Channel((row.get("channel") or "web").strip())
            manager = (row.get("manager") or "").strip()
            if manager and manager not in known:
                raise ValueError(f"manager: {manager!r} is not in the deployment")
            handle = float((row.get("handle_minutes") or "5").replace(",", ".")) * 60
            outcome = (row.get("outcome") or "").strip().lower()
            if outcome not in ("", "won", "lost"):
                raise ValueError(f"outcome: {outcome!r} is not won, lost or empty")
            amount = parse_amount(row.get("amount") or "") or 0.0
        except ValueError as err:
            out.rejected.append((line, str(err)))
            continue
        picked = {k: (row.get(k) or "").strip() for k in criteria if (row.get(k) or "").strip()}
        out.contacts.append(PastContact(line, cid, at, channel, picked, manager, handle, outcome == "won", amount))
    out.contacts.sort(key=lambda c: (c.at, c.line))
    return out


@dataclass
class Replay:
    strategy: str
    assigned: dict[str, str] = field(default_factory=dict)  # contact id -> manager id
    unassigned: int = 0

    def agreement(self, past: Sequence[PastContact]) -> float:
        real = [c for c in past if c.manager]
        same = sum(1 for c in real if self.assigned.get(c.id) == c.manager)
        return same / len(real) if real else 0.0


def shifts(past: Sequence[PastContact], tz_day: int = 86400) -> dict[str, list[tuple[float, float]]]:
    """Each manager's working spans: first to last contact of each day, with a margin."""
    days: dict[tuple[str, int], list[float]] = defaultdict(list)
    for c in past:
        if c.manager:
            days[(c.manager, int(c.at // tz_day))].append(c.at)
    spans: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for (mid, _), times in sorted(days.items()):
        spans[mid].append((min(times) - PRESENCE_MARGIN, max(times) + PRESENCE_MARGIN))
    return spans


def replay(
    past: Sequence[PastContact],
    managers: Sequence[Manager],
    base: RoutingPolicy,
    strategy: str,
) -> Replay:
    policy = replace(base, strategy=Strategy(strategy), inactivity_pause=0)
    ratings = DealRatings(RatingParams(segment_keys=policy.segment_keys))
    board = Switchboard(policy, ratings)
    result = Replay(strategy)
    agenda = Agenda()
    by_id = {c.id: c for c in past}

    def send(event: ev.Event, now: float) -> None:
        try:
            out = board.handle(event, now)
        except CoreError:
            return
        agenda.keep_timers(out)
        for cmd in out:
            if isinstance(cmd, ev.OfferContact):
                agenda.add(now, Accept(cmd.contact.id, cmd.manager.id))  # managers take what they are offered

    start = past[0].at if past else 0.0
    for m in managers:
        board.handle(ev.ManagerSaved(replace(m, load={}, presence=Presence.OFFLINE)), start)
    for mid, spans in shifts(past).items():
        for a, b in spans:
            agenda.add(a, SetPresence(mid, Presence.AVAILABLE))
            agenda.add(b, SetPresence(mid, Presence.OFFLINE))
    for i, c in enumerate(past):
        agenda.add(c.at, c)
        if c.manager:  # the real outcome becomes known when the real work ended
            segment = tuple(c.criteria.get(k, "") for k in policy.segment_keys)
            agenda.add(
                c.at + c.handle,
                Opportunity(f"bt-{i}", c.manager, None, segment, c.won, c.amount if c.won else 0.0, c.at + c.handle),
            )
    while agenda.next_at() is not None:
        at, item = agenda.pop()
        match item:
            case PastContact() as p:
                contact = Contact(id=p.id, channel=p.channel, arrived_at=at, seq=p.line, criteria=dict(p.criteria))
                send(ev.ContactArrived(qualify(contact, policy)), at)
            case SetPresence(mid, state):
                if mid in board.managers:
                    send(ev.PresenceSet(mid, state, "shift"), at)
            case TimerDue() as due:
                if agenda.fire(due):
                    send(ev.TimerFired(due.key), at)
            case Accept(cid, mid):
                current = board.contacts.get(cid)
                if current is not None and current.status is ContactStatus.OFFERED and current.offered_to == mid:
                    send(ev.OfferAccepted(cid, mid), at)
                    result.assigned[cid] = mid
                    agenda.add(at + by_id[cid].handle, Finish(cid, mid))
            case Finish(cid, mid):
                send(ev.WorkFinished(cid, mid), at)
            case Opportunity() as opp:
                ratings.update([opp], at)
    result.unassigned = sum(1 for c in past if c.id not in result.assigned)
    return result


def report(past: Sequence[PastContact], results: Sequence[Replay], managers: Sequence[Manager]) -> str:
    real = Counter(c.manager for c in past if c.manager)
    heads = ["actual", *(r.strategy for r in results)]
    names = [m.id for m in managers if real.get(m.id) or any(m.id in r.assigned.values() for r in results)]
    counts = [Counter(r.assigned.values()) for r in results]
    width0 = max([len("same manager as in reality"), *(len(x) for x in names)])
    widths = [max(len(h), 7) for h in heads]
    lines = [f"backtest: {len(past)} contacts", ""]
    lines.append(" " * width0 + "  " + "  ".join(h.rjust(w) for h, w in zip(heads, widths, strict=True)))
    for mid in names:
        cells = [str(real.get(mid, 0)), *(str(c.get(mid, 0)) for c in counts)]
        lines.append(mid.ljust(width0) + "  " + "  ".join(v.rjust(w) for v, w in zip(cells, widths, strict=True)))
    lines.append(
        "not assigned".ljust(width0)
        + "  "
        + "  ".join(v.rjust(w) for v, w in zip(["0", *(str(r.unassigned) for r in results)], widths, strict=True))
    )
    lines.append(
        "same manager as in reality".ljust(width0)
        + "  "
        + "  ".join(
            v.rjust(w) for v, w in zip(["100%", *(f"{r.agreement(past):.0%}" for r in results)], widths, strict=True)
        )
    )
    return "\n".join(lines)
