"""Pure: a discrete-event simulation that runs the real routing core on a virtual clock.

Nothing sleeps: events sit in a heap by time and the clock jumps from one to the next, so
a simulated week takes seconds. Every policy sees the same stream of contacts and the same
random draws per contact (common random numbers), so differences between the columns of
the report come from routing, not from luck.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from acd.core import events as ev
from acd.core.errors import CoreError
from acd.core.hours import Calendar
from acd.core.intake import qualify
from acd.core.model import Contact, ContactStatus, Manager, Outcome, Presence
from acd.core.policy import RoutingPolicy, Strategy
from acd.core.switchboard import Switchboard
from acd.crm.provider import DealRatings
from acd.crm.ratings import Opportunity, RatingParams
from acd.sim.clock import Accept, Agenda, Finish, SetPresence, TimerDue
from acd.sim.scenario import ManagerSpec, Scenario, hours

EPOCH = 1_767_571_200.0  # Monday 2026-01-05 00:00 UTC: day 0 of every simulation
DAY = 86_400.0
MAX_OFFERS = 32  # random draws kept per contact for its offers (miss or not)


@dataclass(frozen=True, slots=True)
class Arrival:
    at: float
    contact: Contact
    handle: float  # seconds of work once accepted
    patience: float  # seconds the customer waits before hanging up (inf: never)
    win_draw: float  # compared with the true win rate of whoever takes it
    miss_draws: tuple[float, ...]  # one per offer, compared with the manager's miss rate
    response: float  # seconds a present manager takes to accept


def arrivals(s: Scenario) -> list[Arrival]:
    """The contact stream of the whole run: Poisson arrivals per channel and hour."""
    rng = random.Random(s.seed)
    out: list[Arrival] = []
    n = 0
    for day in range(s.days):
        for channel, load in sorted(s.channels.items()):
            for hour, rate in enumerate(load.rates()):
                if rate <= 0:
                    continue
                t = EPOCH + day * DAY + hour * 3600
                end = t + 3600
                while True:
                    t += rng.expovariate(rate / 3600)
                    if t >= end:
                        break
                    n += 1
                    criteria = {k: _pick(rng, shares) for k, shares in sorted(s.mix.items())}
                    out.append(
                        Arrival(
                            at=t,
                            contact=Contact(id=f"s{n}", channel=channel, arrived_at=t, seq=n, criteria=criteria),
                            handle=rng.expovariate(1 / (load.handle_minutes * 60)),
                            patience=rng.expovariate(1 / load.patience_seconds) if load.patience_seconds else math.inf,
                            win_draw=rng.random(),
                            miss_draws=tuple(rng.random() for _ in range(MAX_OFFERS)),
                            response=load.response_seconds * rng.uniform(0.5, 1.5),
                        )
                    )
    out.sort(key=lambda a: (a.at, a.contact.seq))
    return out


def _pick(rng: random.Random, shares: dict[str, float]) -> str:
    total = sum(shares.values())
    x = rng.random() * total
    for value, share in sorted(shares.items()):
        x -= share
        if x < 0:
            return value
    return sorted(shares)[-1]


def true_win_rate(s: Scenario, m: ManagerSpec, criteria: dict[str, str]) -> float:
    base = s.base_conversion.get(criteria.get("temperature", ""), min(s.base_conversion.values(), default=0.1))
    return min(0.95, base * m.factor(m.conversion, criteria.get("purpose", "")))


def true_amount(s: Scenario, m: ManagerSpec, criteria: dict[str, str]) -> float:
    base = s.deal_size.get(criteria.get("price_tier", ""), min(s.deal_size.values(), default=0.0))
    return base * m.factor(m.deal_size, criteria.get("purpose", ""))


def history(s: Scenario, keys: tuple[str, ...]) -> list[Opportunity]:
    """The deals the company closed before the simulated days: what the router learns from."""
    rng = random.Random(s.seed * 7919 + 1)
    out: list[Opportunity] = []
    for m in s.managers:
        for i in range(s.history_deals_per_manager):
            criteria = {k: _pick(rng, shares) for k, shares in sorted(s.mix.items())}
            won = rng.random() < true_win_rate(s, m, criteria)
            out.append(
                Opportunity(
                    id=f"h-{m.id}-{i}",
                    manager_id=m.id,
                    team=m.team,
                    segment=tuple(criteria.get(k, "") for k in keys),
                    won=won,
                    amount=true_amount(s, m, criteria) if won else 0.0,
                    at=EPOCH - rng.uniform(1, 90) * DAY,
                )
            )
    return out


@dataclass(frozen=True, slots=True)
class Rejoin:
    manager_id: str


@dataclass(frozen=True, slots=True)
class Abandon:
    contact_id: str


@dataclass
class Result:
    strategy: str
    calls: int = 0
    calls_answered: int = 0
    calls_abandoned: int = 0
    calls_within_sl: int = 0
    call_wait_total: float = 0.0
    other_answered: int = 0
    other_wait_total: float = 0.0
    unanswered_at_end: int = 0
    won: int = 0
    revenue: float = 0.0
    expected_revenue: float = 0.0  # sum of true win rate x deal size: the same, without the luck
    missed_offers: int = 0
    taken: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    staffed_time: float = 0.0
    working_time: float = 0.0

    @property
    def asa(self) -> float:
        return self.call_wait_total / self.calls_answered if self.calls_answered else 0.0

    @property
    def service_level(self) -> float:
        handled = self.calls_answered + self.calls_abandoned
        return self.calls_within_sl / handled if handled else 1.0

    @property
    def abandonment(self) -> float:
        return self.calls_abandoned / self.calls if self.calls else 0.0

    @property
    def other_wait(self) -> float:
        return self.other_wait_total / self.other_answered if self.other_answered else 0.0

    @property
    def occupancy(self) -> float:
        return self.working_time / self.staffed_time if self.staffed_time else 0.0


def fairness(result: Result, s: Scenario) -> float:
    """Max/min contacts taken among managers with the same skills (1.0 = perfectly even);
    the worst group counts."""
    groups: dict[tuple[tuple[str, int], ...], list[int]] = defaultdict(list)
    for m in s.managers:
        groups[tuple(sorted(m.skills.items()))].append(result.taken.get(m.id, 0))
    worst = 1.0
    for counts in groups.values():
        if len(counts) > 1:
            worst = max(worst, max(counts) / min(counts) if min(counts) else math.inf)
    return worst


class Run:
    """One policy over the whole scenario."""

    def __init__(self, s: Scenario, base: RoutingPolicy, strategy: Strategy, stream: list[Arrival]) -> None:
        self.s = s
        self.policy = replace(
            base, strategy=Strategy(strategy), inactivity_pause=0, seed=s.seed, calendar=Calendar(tz="UTC")
        )
        ratings = DealRatings(RatingParams(segment_keys=self.policy.segment_keys), as_of=EPOCH)
        ratings.replace_all(history(s, self.policy.segment_keys), EPOCH)
        self.ratings = ratings
        self.board = Switchboard(self.policy, ratings)
        self.stream = stream
        self.specs = {m.id: m for m in s.managers}
        self.result = Result(Strategy(strategy).value)
        self.agenda = Agenda()
        self.arrivals: dict[str, Arrival] = {}
        self.offers: dict[str, int] = defaultdict(int)
        self.offered_at: dict[str, float] = {}
        self.presence_at: dict[str, tuple[Presence, float]] = {}
        self.now = EPOCH

    def run(self) -> Result:
        for m in self.s.managers:
            self.send(ev.ManagerSaved(_manager(m, self.policy)))
            self.presence_at[m.id] = (Presence.OFFLINE, EPOCH)
        for day in range(self.s.days):
            base = EPOCH + day * DAY
            for m in self.s.managers:
                for hour, state in _shift_events(m):
                    self.agenda.add(base + hour * 3600, SetPresence(m.id, state))
        for a in self.stream:
            self.agenda.add(a.at, a)
        end = EPOCH + self.s.days * DAY
        while (at := self.agenda.next_at()) is not None and at < end:
            self.now, item = self.agenda.pop()
            self.step(item)
        self.now = end
        self.result.unanswered_at_end = sum(
            1 for c in self.board.contacts.values() if c.status is not ContactStatus.ASSIGNED
        )
        for mid, (state, since) in self.presence_at.items():
            self._account(mid, state, since, end)
        return self.result

    def step(self, item: object) -> None:
        match item:
            case Arrival() as a:
                self.arrivals[a.contact.id] = a
                if a.contact.channel.is_voice:
                    self.result.calls += 1
                    if math.isfinite(a.patience):
                        self.agenda.add(a.at + a.patience, Abandon(a.contact.id))
                self.send(ev.ContactArrived(qualify(replace(a.contact), self.policy)))
            case SetPresence(mid, state):
                self.send(ev.PresenceSet(mid, state, "break" if state is Presence.PAUSED else None))
            case Rejoin(mid):
                m = self.board.managers[mid]
                if m.presence is Presence.PAUSED and m.pause_reason == "missed offer":
                    self.send(ev.PresenceSet(m.id, Presence.AVAILABLE, "rejoin"))
            case TimerDue() as due:
                if self.agenda.fire(due):
                    self.send(ev.TimerFired(due.key))
            case Accept(cid, mid):
                self.accept(cid, mid)
            case Finish(cid, mid):
                self.finish(cid, mid)
            case Abandon(cid):
                c = self.board.contacts.get(cid)
                if c is not None and c.status is not ContactStatus.ASSIGNED:
                    self.result.calls_abandoned += 1
                    self.send(ev.ContactAbandoned(c.id))

    def accept(self, cid: str, mid: str) -> None:
        c = self.board.contacts.get(cid)
        if c is None or c.status is not ContactStatus.OFFERED or c.offered_to != mid:
            return  # the offer was withdrawn meanwhile (caller gone, timed out)
        self.send(ev.OfferAccepted(cid, mid))
        a = self.arrivals[cid]
        wait = self.offered_at[cid] - a.at  # queue time; ringing is not waiting in line
        if c.channel.is_voice:
            self.result.calls_answered += 1
            self.result.call_wait_total += wait
            self.result.calls_within_sl += wait <= self.s.service_level_seconds
        else:
            self.result.other_answered += 1
            self.result.other_wait_total += wait
        self.result.taken[mid] += 1
        self.agenda.add(self.now + a.handle, Finish(cid, mid))

    def finish(self, cid: str, mid: str) -> None:
        a = self.arrivals[cid]
        spec = self.specs[mid]
        criteria = dict(a.contact.criteria)
        p = true_win_rate(self.s, spec, criteria)
        won = a.win_draw < p
        amount = true_amount(self.s, spec, criteria) if won else 0.0
        self.result.expected_revenue += p * true_amount(self.s, spec, criteria)
        self.send(ev.WorkFinished(cid, mid, Outcome.WON if won else Outcome.LOST))
        if won:
            self.result.won += 1
            self.result.revenue += amount
        segment = tuple(criteria.get(k, "") for k in self.policy.segment_keys)
        self.ratings.update([Opportunity(cid, mid, spec.team, segment, won, amount, self.now)], self.now)

    def send(self, event: ev.Event) -> None:
        try:
            out = self.board.handle(event, self.now)
        except CoreError:
            return  # e.g. a break that starts while the manager is already offline
        self.agenda.keep_timers(out)
        for cmd in out:
            match cmd:
                case ev.OfferContact(contact=c, manager=m):
                    self.offer(c.id, m.id)
                case ev.WithdrawOffer(reason="missed offer"):
                    self.result.missed_offers += 1
                case ev.NotifyManager(manager_id=mid, kind="auto_pause"):
                    self.agenda.add(self.now + self.specs[mid].rejoin_minutes * 60, Rejoin(mid))
                case ev.LogTransition(t):
                    state, since = self.presence_at[t.manager_id]
                    self._account(t.manager_id, state, since, t.at)
                    self.presence_at[t.manager_id] = (t.new, t.at)

    def offer(self, cid: str, mid: str) -> None:
        a = self.arrivals[cid]
        n = self.offers[cid]
        self.offers[cid] += 1
        self.offered_at[cid] = self.now
        if a.miss_draws[n % MAX_OFFERS] < self.specs[mid].miss_rate:
            return  # the manager is away from the desk: the offer times out
        self.agenda.add(self.now + a.response, Accept(cid, mid))

    def _account(self, mid: str, state: Presence, since: float, until: float) -> None:
        if state.is_staffed:
            self.result.staffed_time += until - since
            if state is not Presence.AVAILABLE:
                self.result.working_time += until - since


def _manager(m: ManagerSpec, policy: RoutingPolicy) -> Manager:
    return Manager(
        id=m.id,
        name=m.name or m.id,
        team=m.team,
        skills=dict(m.skills),
        languages=frozenset(m.languages),
        capacity=dict(policy.default_capacity),
    )


def _shift_events(m: ManagerSpec) -> Iterator[tuple[float, Presence]]:
    """(hour of day, presence) for a manager's working day: shift, breaks, end."""
    start, end = hours(m.shift)
    yield start, Presence.AVAILABLE
    for b in m.breaks:
        b0, b1 = hours(b)
        yield b0, Presence.PAUSED
        yield b1, Presence.AVAILABLE
    yield end, Presence.OFFLINE


def simulate(s: Scenario, base: RoutingPolicy) -> list[Result]:
    stream = arrivals(s)
    return [Run(s, base, strategy, stream).run() for strategy in s.policies]


__all__ = ["Arrival", "Result", "Run", "arrivals", "fairness", "simulate"]
