"""Pure: how good a manager is for a segment, behind one small interface.

The CRM computes ratings from closed deals; until it has data, `ProficiencyRatings`
derives them from the configured skill proficiency, so the router works on day one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from acd.core.model import Manager


@dataclass(frozen=True, slots=True)
class Rating:
    """`score` is 0..1 (comparable across managers); `expected_value` is the value one
    contact of the segment is expected to bring with this manager (win rate x average won
    amount when computed from deals); `deals` is how many closed deals stand behind it;
    `low`..`high` is the interval around `score` (a win rate) when it comes from deals."""

    score: float
    expected_value: float
    deals: int = 0
    source: str = "proficiency"
    low: float | None = None  # the score's credible interval, when it comes from deals
    high: float | None = None


class RatingProvider(Protocol):
    def rating(self, manager: Manager, segment: tuple[str, ...], skills: frozenset[str]) -> Rating: ...


class ProficiencyRatings:
    """Rating = mean proficiency (1..5) over the skills the contact needs, scaled to 0..1.

    With no required skills, the manager's mean proficiency over all their skills counts;
    a manager without skills rates 0.2 (a novice), so nobody rates zero.
    """

    def rating(self, manager: Manager, segment: tuple[str, ...], skills: frozenset[str]) -> Rating:
        levels = [manager.skills.get(s, 0) for s in skills] if skills else list(manager.skills.values())
        levels = levels or [1]
        score = sum(levels) / (5 * len(levels))
        return Rating(score=score, expected_value=score, deals=0, source="proficiency")
