"""Pure: how good each manager is, from closed deals only.

One opportunity is one lead a manager was given: a deal closed won or lost, an open deal
nobody touched for `untouched_lead_days` (counted lost, so leaving hard leads to rot does
not pay), or a new customer's contact the manager took and never turned into a deal
(also lost after that age). Deals from contacts a supervisor placed by hand are left out.

The estimate for manager m, segment s (the worked formula every rating card prints):

    level L   the finest segment level where m has at least `min_level_deals` (decayed)
              opportunities: full segment, then coarser by dropping keys from the end of
              `segment_order`, down to "all segments"
    p_all(L)  company win rate at level L, shrunk toward the next coarser level:
              (k·p_all(L-1) + W) / (k + N); at "all segments" (1 + W) / (2 + N)
    p_team(L) (k·p_all(L) + W_team) / (k + N_team)
    p_m(L)    (k·p_team(L) + W_m) / (k + N_m)                 Beta-Binomial posterior mean
    p(m, s)   p_m(L) × p_all(s) / p_all(L)                   the segment's own difficulty
    amount    the same shrinkage for the average won amount (strength `amount_strength`)
    value     p(m, s) × amount(m, s)                           expected value of one contact

W and N are wins and opportunities weighted by age, 2^(-age / half_life): a deal a
half-life old counts half. The interval is the central `interval` mass of the Beta
posterior Beta(k·p_team + W_m, k·(1−p_team) + N_m − W_m), scaled like the mean.

Example (k = 10, no decay, team rate 0.30): two wins out of two give
(10·0.30 + 2)/(10 + 2) = 0.42, sixty out of a hundred give (3 + 60)/110 = 0.57: luck
with two deals does not beat a record of a hundred.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from acd.crm.model import Deal, DealStatus

DAY = 86400.0
ALL = "*"


@dataclass(frozen=True, slots=True)
class Opportunity:
    """One lead given to a manager and how it ended. `segment` follows `segment_keys`."""

    id: str
    manager_id: str
    team: str | None
    segment: tuple[str, ...]
    won: bool
    amount: float
    at: float
    why: str = "closed"  # closed | untouched deal | lead without deal


@dataclass(frozen=True, slots=True)
class Lead:
    """A new customer's contact a manager took (the CRM decides which contacts count)."""

    contact_id: str
    manager_id: str
    segment: Mapping[str, str]
    at: float


@dataclass(frozen=True, slots=True)
class RatingParams:
    segment_keys: tuple[str, ...] = ("purpose", "price_tier", "temperature")
    segment_order: tuple[str, ...] = ()  # most important first; () = segment_keys
    half_life_days: float = 180.0  # 0 = no decay
    prior_strength: float = 10.0  # k: pseudo-opportunities behind the prior
    amount_strength: float = 3.0  # pseudo-wins behind the prior average amount
    min_level_deals: float = 8.0
    interval: float = 0.9
    untouched_lead_days: float = 30.0
    # Kept key indices per level, coarse to fine: {}, {purpose}, {purpose, tier}, ... Worked
    # out once: every opportunity added and every estimate reads them.
    levels: tuple[frozenset[int], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        order = [k for k in (self.segment_order or self.segment_keys) if k in self.segment_keys]
        order += [k for k in self.segment_keys if k not in order]
        levels = tuple(frozenset(self.segment_keys.index(k) for k in order[:i]) for i in range(len(order) + 1))
        object.__setattr__(self, "levels", levels)


def mask(segment: tuple[str, ...], kept: frozenset[int]) -> tuple[str, ...]:
    return tuple(v if i in kept else ALL for i, v in enumerate(segment))


def segment_of(values: Mapping[str, str], keys: Sequence[str]) -> tuple[str, ...]:
    return tuple(values.get(k, "") for k in keys)


def opportunities(
    deals: Iterable[Deal],
    leads: Iterable[Lead],
    teams: Mapping[str, str | None],
    params: RatingParams,
    now: float,
) -> list[Opportunity]:
    """Every opportunity as of `now`, by the rules in the module docstring. `leads` whose
    contact opened a deal are skipped (the deal counts instead); `teams` maps a manager to
    their team today."""
    limit = params.untouched_lead_days * DAY
    with_deal = set()
    out: list[Opportunity] = []
    for d in deals:
        if d.contact_id:
            with_deal.add(d.contact_id)
        if d.override or not d.owner:
            continue
        seg = segment_of(d.segment, params.segment_keys)
        team = teams.get(d.owner)
        if d.status is DealStatus.OPEN:
            if limit > 0 and d.last_activity + limit <= now:
                out.append(Opportunity(d.id, d.owner, team, seg, False, 0.0, d.last_activity + limit, "untouched deal"))
            continue
        won = d.status is DealStatus.WON
        at = d.closed_at if d.closed_at is not None else d.last_activity
        out.append(Opportunity(d.id, d.owner, team, seg, won, float(d.amount or 0.0) if won else 0.0, at))
    for lead in leads:
        if lead.contact_id in with_deal or limit <= 0 or lead.at + limit > now:
            continue
        seg = segment_of(lead.segment, params.segment_keys)
        out.append(
            Opportunity(
                f"contact:{lead.contact_id}",
                lead.manager_id,
                teams.get(lead.manager_id),
                seg,
                False,
                0.0,
                lead.at + limit,
                "lead without deal",
            )
        )
    return out


@dataclass(slots=True)
class _Sums:
    n: int = 0  # raw count
    w: float = 0.0  # decayed count
    wins: float = 0.0  # decayed wins
    won_amount: float = 0.0  # decayed sum of won amounts
    raw_wins: int = 0

    def add(self, weight: float, o: Opportunity, sign: int) -> None:
        self.n += sign
        self.w += sign * weight
        if o.won:
            self.raw_wins += sign
            self.wins += sign * weight
            self.won_amount += sign * weight * o.amount


@dataclass(frozen=True, slots=True)
class Estimate:
    """A manager's rating for one segment, with everything the rating card shows."""

    manager_id: str
    segment: tuple[str, ...]
    level: tuple[str, ...]  # the segment cell the manager's own data came from
    win_rate: float
    low: float
    high: float
    avg_amount: float
    expected_value: float
    deals: int  # raw opportunities at `level`
    wins: int
    effective_deals: float  # decayed N at `level`
    effective_wins: float
    prior_win_rate: float  # p_team(L)
    team_win_rate: float
    company_win_rate: float  # p_all(L)
    segment_factor: float  # p_all(s) / p_all(L)
    prior_amount: float
    total_deals: int  # every opportunity of the manager, any segment

    def formula(self, k: float) -> str:
        return (
            f"p = (k·p_team + W) / (k + N) × segment factor = "
            f"({k:g}·{self.prior_win_rate:.3f} + {self.effective_wins:.2f}) / ({k:g} + {self.effective_deals:.2f})"
            f" × {self.segment_factor:.3f} = {self.win_rate:.3f}; "
            f"value = p × average won amount {self.avg_amount:,.0f} = {self.expected_value:,.0f}"
        )


@dataclass
class RatingTable:
    """Opportunity sums by (scope, segment cell); estimates are read lazily and memoised.

    Scopes: ("m", manager), ("t", team), ("all",). Sums are kept with weights relative to
    `t_ref`, so adding one opportunity is O(levels) and ages every sum by one factor.
    """

    params: RatingParams
    t_ref: float = 0.0
    _sums: dict[tuple[tuple[str, ...], tuple[str, ...]], _Sums] = field(default_factory=dict)
    _by_id: dict[str, Opportunity] = field(default_factory=dict)
    _by_manager: dict[str, dict[str, Opportunity]] = field(default_factory=dict)  # in `_by_id`'s order
    _memo: dict[tuple[object, ...], object] = field(default_factory=dict)

    @classmethod
    def build(cls, opps: Iterable[Opportunity], params: RatingParams, t_ref: float) -> RatingTable:
        table = cls(params, t_ref)
        for o in opps:
            table.upsert(o)
        return table

    def __len__(self) -> int:
        return len(self._by_id)

    def managers(self) -> set[str]:
        return set(self._by_manager)

    def opportunities_of(self, manager_id: str) -> list[Opportunity]:
        """Newest first; ties in the order they were added."""
        return sorted(self._by_manager.get(manager_id, {}).values(), key=lambda o: -o.at)

    def upsert(self, o: Opportunity) -> None:
        """Add an opportunity, replacing an earlier one with the same id (an untouched deal
        counted lost that was then closed for real)."""
        self._forget(o.id)
        self._by_id[o.id] = o
        self._by_manager.setdefault(o.manager_id, {})[o.id] = o
        self._apply(o, +1)
        self._memo.clear()

    def discard(self, opp_id: str) -> None:
        if self._forget(opp_id):
            self._memo.clear()

    def _forget(self, opp_id: str) -> bool:
        old = self._by_id.pop(opp_id, None)
        if old is None:
            return False
        self._apply(old, -1)
        mine = self._by_manager[old.manager_id]
        del mine[opp_id]
        if not mine:
            del self._by_manager[old.manager_id]
        return True

    def _weight(self, at: float) -> float:
        h = self.params.half_life_days
        return 1.0 if h <= 0 else 2.0 ** ((at - self.t_ref) / (h * DAY))

    def _apply(self, o: Opportunity, sign: int) -> None:
        w = self._weight(o.at)
        scopes: list[tuple[str, ...]] = [("m", o.manager_id), ("t", o.team or ""), ("all",)]
        for kept in self.params.levels:
            cell = mask(o.segment, kept)
            for scope in scopes:
                s = self._sums.get((scope, cell))
                if s is None:  # not setdefault(key, _Sums()): a build would make and drop millions
                    s = self._sums[scope, cell] = _Sums()
                s.add(w, o, sign)

    def overall_then(self, manager_id: str, team: str | None, at: float) -> Estimate:
        """The manager's all-segments estimate as it stood at `at` (a rating card's trend):
        what `RatingTable.build` at `at` from the opportunities up to `at` would answer, to
        the bit, without building it. That estimate reads only the all-segments cells of
        the manager, their team and the company; each is kept until this table changes."""
        star = (ALL,) * len(self.params.segment_keys)
        past = RatingTable(self.params, at)
        for scope in (("m", manager_id), ("t", team or ""), ("all",)):
            past._sums[scope, star] = self._overall_sums_then(scope, at)
        return past.estimate(manager_id, team, star, at)

    def _overall_sums_then(self, scope: tuple[str, ...], at: float) -> _Sums:
        hit = self._memo.get(("then", scope, at))
        if hit is None:
            match scope:
                case ("m", manager_id):
                    opps: Iterable[Opportunity] = self._by_manager.get(manager_id, {}).values()
                case ("t", team):
                    opps = (o for o in self._by_id.values() if (o.team or "") == team)
                case _:
                    opps = self._by_id.values()
            hit = self._memo[("then", scope, at)] = _overall_sums(opps, self.params, at)
        assert isinstance(hit, _Sums)
        return hit

    # ---- reading -----------------------------------------------------------------

    def _cell(self, scope: tuple[str, ...], cell: tuple[str, ...], now: float) -> tuple[float, float, float, _Sums]:
        s = self._sums.get((scope, cell)) or _Sums()
        h = self.params.half_life_days
        age = 1.0 if h <= 0 else 2.0 ** ((self.t_ref - now) / (h * DAY))
        return s.w * age, s.wins * age, s.won_amount * age, s

    def _company(self, level: int, seg: tuple[str, ...], now: float) -> tuple[float, float]:
        """(p_all, amount_all) at `level` for the cell of `seg`."""
        key = ("all", level, seg, now)
        hit = self._memo.get(key)
        if hit is not None:
            return hit  # type: ignore[return-value]
        kept = self.params.levels[level]
        n, wins, amount, _ = self._cell(("all",), mask(seg, kept), now)
        if level == 0:
            p = (1.0 + wins) / (2.0 + n)
            a = amount / wins if wins > 0 else 1.0
        else:
            p0, a0 = self._company(level - 1, seg, now)
            k, ka = self.params.prior_strength, self.params.amount_strength
            p = (k * p0 + wins) / (k + n)
            a = (ka * a0 + amount) / (ka + wins)
        self._memo[key] = (p, a)
        return p, a

    def _team(self, team: str, level: int, seg: tuple[str, ...], now: float) -> tuple[float, float]:
        p0, a0 = self._company(level, seg, now)
        n, wins, amount, _ = self._cell(("t", team), mask(seg, self.params.levels[level]), now)
        k, ka = self.params.prior_strength, self.params.amount_strength
        return (k * p0 + wins) / (k + n), (ka * a0 + amount) / (ka + wins)

    def estimate(self, manager_id: str, team: str | None, segment: tuple[str, ...], now: float) -> Estimate:
        key = ("m", manager_id, team, segment, now)
        hit = self._memo.get(key)
        if hit is not None:
            return hit  # type: ignore[return-value]
        prm = self.params
        levels = prm.levels
        chosen = 0
        for i in range(len(levels) - 1, -1, -1):
            n, *_ = self._cell(("m", manager_id), mask(segment, levels[i]), now)
            if n >= prm.min_level_deals:
                chosen = i
                break
        cell = mask(segment, levels[chosen])
        n, wins, amount, raw = self._cell(("m", manager_id), cell, now)
        p_team, a_team = self._team(team or "", chosen, segment, now)
        k, ka = prm.prior_strength, prm.amount_strength
        alpha, beta = k * p_team + wins, k * (1.0 - p_team) + max(0.0, n - wins)
        p_m = alpha / (alpha + beta)
        a_m = (ka * a_team + amount) / (ka + wins)
        p_l, a_l = self._company(chosen, segment, now)
        p_s, a_s = self._company(len(levels) - 1, segment, now)
        factor = p_s / p_l if p_l > 0 else 1.0
        amount_factor = a_s / a_l if a_l > 0 else 1.0
        tail = (1.0 - prm.interval) / 2.0
        low, high = beta_ppf(tail, alpha, beta), beta_ppf(1.0 - tail, alpha, beta)
        p = _clip(p_m * factor)
        avg = a_m * amount_factor
        total = (self._sums.get((("m", manager_id), mask(segment, levels[0]))) or _Sums()).n
        est = Estimate(
            manager_id=manager_id,
            segment=segment,
            level=cell,
            win_rate=p,
            low=_clip(low * factor),
            high=_clip(high * factor),
            avg_amount=avg,
            expected_value=p * avg,
            deals=raw.n,
            wins=raw.raw_wins,
            effective_deals=n,
            effective_wins=wins,
            prior_win_rate=p_team,
            team_win_rate=self._team(team or "", len(levels) - 1, segment, now)[0],
            company_win_rate=p_l,
            segment_factor=factor,
            prior_amount=a_team,
            total_deals=total,
        )
        self._memo[key] = est
        if len(self._memo) > 200_000:
            self._memo.clear()
        return est


def _overall_sums(opps: Iterable[Opportunity], params: RatingParams, at: float) -> _Sums:
    """The all-segments cell a `RatingTable` at `at` makes of the opportunities up to `at`:
    the same additions in the same order, so the same bits, in a tight loop (a year's
    opportunities each time a card's trend is asked for after a change)."""
    h = params.half_life_days
    star = (ALL,) * len(params.segment_keys)
    n = raw_wins = 0
    w = wins = won_amount = 0.0
    for o in opps:
        if o.at > at:
            continue
        x = 1.0 if h <= 0 else 2.0 ** ((o.at - at) / (h * DAY))  # as RatingTable._weight
        # Level 0 adds every opportunity to this cell, and a finer level adds it again if its
        # kept values are themselves "*".
        times = 1 if ALL not in o.segment else sum(mask(o.segment, kept) == star for kept in params.levels)
        n += times
        for _ in range(times):  # as _Sums.add
            w += x
            if o.won:
                raw_wins += 1
                wins += x
                won_amount += x * o.amount
    return _Sums(n, w, wins, won_amount, raw_wins)


def _clip(p: float) -> float:
    return min(1.0, max(0.0, p))


# ---- the Beta distribution, from the standard library only ---------------------------


def beta_cdf(x: float, a: float, b: float) -> float:
    """The regularized incomplete beta function I_x(a, b) (Numerical Recipes, 6.4:
    continued fraction by the modified Lentz method, on the side where it converges)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    ln_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(ln_front) * _betacf(x, a, b) / a
    return 1.0 - math.exp(ln_front) * _betacf(1.0 - x, b, a) / b


def _betacf(x: float, a: float, b: float) -> float:
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-12:
            break
    return h


def beta_ppf(q: float, a: float, b: float) -> float:
    """The q-quantile of Beta(a, b), by bisection on `beta_cdf` (to 1e-9)."""
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2.0
        if beta_cdf(mid, a, b) < q:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2.0
