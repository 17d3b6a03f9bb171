"""Pure: the routing core's `RatingProvider`, answered from closed deals.

Until the CRM holds any opportunity at all, ratings come from the configured skill
proficiency (`ProficiencyRatings`), so a fresh deployment routes sensibly on day one; from
the first closed deal on, every manager is rated from deals (those without any get their
team's figures, shrunk like everyone's), so expected values stay on one scale.
"""

from __future__ import annotations

from collections.abc import Iterable

from acd.core.model import Manager
from acd.core.ratings import ProficiencyRatings, Rating
from acd.crm.ratings import Estimate, Opportunity, RatingParams, RatingTable


class DealRatings:
    """Ratings from a `RatingTable`. `as_of` is the time decay is measured to: the core
    passes no clock, so the owner moves it forward on every update (decay is slow, a
    half-life of months, so a few hours of staleness change nothing)."""

    def __init__(self, params: RatingParams, as_of: float = 0.0) -> None:
        self.params = params
        self.as_of = as_of
        self.table = RatingTable(params, t_ref=as_of)
        self._fallback = ProficiencyRatings()

    def replace_all(self, opps: Iterable[Opportunity], as_of: float) -> None:
        """A full recomputation: a fresh table, swapped in at once."""
        self.swap(RatingTable.build(opps, self.params, t_ref=as_of), as_of)

    def swap(self, table: RatingTable, as_of: float) -> None:
        """A table built elsewhere (off the event loop) takes over, at once."""
        self.table, self.as_of = table, as_of

    def update(self, opps: Iterable[Opportunity], as_of: float) -> None:
        """One or a few deals closed: O(levels) each."""
        for o in opps:
            self.table.upsert(o)
        self.as_of = max(self.as_of, as_of)

    def estimate(self, manager_id: str, team: str | None, segment: tuple[str, ...]) -> Estimate:
        return self.table.estimate(manager_id, team, segment, self.as_of)

    def rating(self, manager: Manager, segment: tuple[str, ...], skills: frozenset[str]) -> Rating:
        if not len(self.table):
            return self._fallback.rating(manager, segment, skills)
        e = self.estimate(manager.id, manager.team, segment)
        source = (
            f"deals: win rate {e.win_rate:.2f} [{e.low:.2f}, {e.high:.2f}] "
            f"from {e.deals} at {'×'.join(v for v in e.level if v != '*') or 'all segments'}"
        )
        return Rating(
            score=e.win_rate,
            expected_value=e.expected_value,
            deals=e.total_deals,
            source=source,
            low=e.low,
            high=e.high,
        )
