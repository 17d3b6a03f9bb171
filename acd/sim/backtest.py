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
import heapq
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
    heap: list[tuple[float, int, str, object]] = []
    timers: dict[tuple[str, str], float] = {}
    n = 0

    def push(at: float, kind: str, data: object) -> None:
        nonlocal n
        n += 1
        heapq.heappush(heap, (at, n, kind, data))

    by_id = {c.id: c for c in past}

    def send(event: ev.Event, now: float) -> None:
        try:
            out = board.handle(event, now)
        except CoreError:
            return
        for cmd in out:
            match cmd:
                case ev.StartTimer(key, at):
                    timers[key] = at
                    push(at, "timer", (key, at))
                case ev.CancelTimer(key):
                    timers.pop(key, None)
                case ev.OfferContact(contact=c, manager=m):
                    push(now, "accept", (c.id, m.id))  # managers take what they are offered

    start = past[0].at if past else 0.0
    for m in managers:
        board.handle(ev.ManagerSaved(replace(m, load={}, presence=Presence.OFFLINE)), start)
    for mid, spans in shifts(past).items():
        for a, b in spans:
            push(a, "presence", (mid, Presence.AVAILABLE))
            push(b, "presence", (mid, Presence.OFFLINE))
    for i, c in enumerate(past):
        push(c.at, "arrive", c)
        if c.manager:  # the real outcome becomes known when the real work ended
            segment = tuple(c.criteria.get(k, "") for k in policy.segment_keys)
            opp = Opportunity(f"bt-{i}", c.manager, None, segment, c.won, c.amount if c.won else 0.0, c.at + c.handle)
            push(c.at + c.handle, "learn", opp)
    while heap:
        at, _, kind, data = heapq.heappop(heap)
        if kind == "arrive":
            assert isinstance(data, PastContact)
            contact = Contact(id=data.id, channel=data.channel, arrived_at=at, seq=n, criteria=dict(data.criteria))
            send(ev.ContactArrived(qualify(contact, policy)), at)
        elif kind == "presence":
            mid, state = data  # type: ignore[misc]
            if mid in board.managers:
                send(ev.PresenceSet(mid, state, "shift"), at)
        elif kind == "timer":
            key, due = data  # type: ignore[misc]
            if timers.get(key) == due:
                del timers[key]
                send(ev.TimerFired(key), at)
        elif kind == "accept":
            cid, mid = data  # type: ignore[misc]
            current = board.contacts.get(cid)
            if current is not None and current.status is ContactStatus.OFFERED and current.offered_to == mid:
                send(ev.OfferAccepted(cid, mid), at)
                result.assigned[cid] = mid
                push(at + by_id[cid].handle, "finish", (cid, mid))
        elif kind == "finish":
            cid, mid = data  # type: ignore[misc]
            send(ev.WorkFinished(cid, mid), at)
        elif kind == "learn":
            assert isinstance(data, Opportunity)
            ratings.update([data], at)
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
