"""Pure: choose one manager among eligible candidates, and say why.

Eligibility (who may take a contact at all) is the switchboard's job; this module ranks
the candidates it is given by the policy's strategy and returns the scored list, best
first. Every strategy ends with the same tie-breaks: longest idle, then configured order,
then id, so a decision is reproducible from its inputs.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from acd.core.events import Candidate
from acd.core.model import Contact, Manager
from acd.core.policy import RoutingPolicy, Strategy
from acd.core.ratings import RatingProvider

# explanation figures that are not part of the score
SHOWN_ONLY = frozenset({"rating", "deals", "rating_low", "rating_high", "position"})


@dataclass(slots=True)
class RouterMemory:
    """What app_queue keeps between calls: rrmemory's position."""

    rr_last_order: int | None = None


def contact_value(contact: Contact, policy: RoutingPolicy) -> float:
    """Relative value of a contact in (0, 1]: the product of its answers' weights over the
    largest product the configuration allows. A hot high-tier lead is 1.0; with weights
    hot=2, cold=1, high=3, low=1 a cold low-tier lead is 1/6."""
    value, best = 1.0, 1.0
    for criterion, weights in policy.value_weights.items():
        if not weights:
            continue
        top = max(weights.values())
        best *= top
        value *= weights.get(contact.criteria.get(criterion, ""), min(weights.values()))
    return value / best if best > 0 else 1.0


def idle_since(manager: Manager) -> float:
    """When the manager last became free: the later of their last finished work and the
    start of their current presence."""
    finished = manager.last_finished_at if manager.last_finished_at is not None else float("-inf")
    return max(finished, manager.presence_since)


def _tiebreak(m: Manager) -> tuple[float, int, str]:
    return (idle_since(m), m.order, m.id)


def rank(
    contact: Contact,
    candidates: Sequence[Manager],
    policy: RoutingPolicy,
    ratings: RatingProvider,
    memory: RouterMemory,
    rng: random.Random,
    today: Mapping[str, int],
) -> list[Candidate]:
    """Candidates scored and sorted best first (higher score wins, ties by `_tiebreak`).

    `today` maps a manager id to the contacts they took today (the load-balance input).
    """
    if not candidates:
        return []
    strategy = policy.strategy
    if strategy is Strategy.BEST_MATCH:
        return _best_match(contact, candidates, policy, ratings, rng, today)
    ordered: list[Manager]
    if strategy is Strategy.LINEAR:
        ordered = sorted(candidates, key=lambda m: (m.order, m.id))
    elif strategy is Strategy.RRMEMORY:
        last = memory.rr_last_order
        by_order = sorted(candidates, key=lambda m: (m.order, m.id))
        after = [m for m in by_order if last is None or m.order > last]
        ordered = after + [m for m in by_order if m not in after]
    elif strategy is Strategy.LEASTRECENT:
        ordered = sorted(candidates, key=lambda m: (m.last_finished_at or float("-inf"), m.order, m.id))
    elif strategy is Strategy.FEWESTCALLS:
        ordered = sorted(candidates, key=lambda m: (today.get(m.id, 0), *_tiebreak(m)))
    else:  # RANDOM
        ordered = sorted(candidates, key=lambda m: m.id)
        rng.shuffle(ordered)
    n = len(ordered)
    return [Candidate(m.id, float(n - i), {"position": float(i)}) for i, m in enumerate(ordered)]


def _best_match(
    contact: Contact,
    candidates: Sequence[Manager],
    policy: RoutingPolicy,
    ratings: RatingProvider,
    rng: random.Random,
    today: Mapping[str, int],
) -> list[Candidate]:
    """score = value x v x ev  -  fit x |v - rank|  -  load x (taken - mean) / max(1, mean)

    v: the contact's value (0..1); ev: the manager's expected value for the contact's
    segment over the best candidate's; rank: the manager's rating among the candidates
    (0 worst .. 1 best). So a valuable contact goes to the best-rated manager, a modest one
    to a manager whose rating matches it (keeping the stars free for big deals), and among
    equals the one who took fewer contacts today wins. With probability `exploration`, a
    manager with fewer than `min_rated_deals` closed deals is picked while rated colleagues
    are also candidates, so newcomers get enough contacts to be rated.
    """
    w = policy.weights
    segment = contact.segment(policy.segment_keys)
    rated = {m.id: ratings.rating(m, segment, contact.required_skills) for m in candidates}
    v = contact_value(contact, policy)
    top_ev = max(r.expected_value for r in rated.values())
    scores = [r.score for r in rated.values()]
    lo, hi = min(scores), max(scores)
    mean_taken = sum(today.get(m.id, 0) for m in candidates) / len(candidates)

    newcomers = [m for m in candidates if rated[m.id].deals < policy.min_rated_deals]
    explore = (
        w.exploration > 0
        and 0 < len(newcomers) < len(candidates)
        and any(rated[m.id].deals for m in candidates)
        and rng.random() < w.exploration
    )

    scored: list[tuple[float, tuple[float, int, str], Candidate]] = []
    for m in candidates:
        r = rated[m.id]
        ev = r.expected_value / top_ev if top_ev > 0 else 0.0
        position = (r.score - lo) / (hi - lo) if hi > lo else 1.0
        components = {
            "value": w.value * v * ev,
            "fit": -w.fit * abs(v - position),
            "load": -w.load * (today.get(m.id, 0) - mean_taken) / max(1.0, mean_taken),
        }
        if explore and m in newcomers:
            components["exploration"] = 10.0
        components["rating"] = r.score  # shown, not summed
        components["deals"] = float(r.deals)
        if r.low is not None and r.high is not None:
            components["rating_low"], components["rating_high"] = r.low, r.high
        score = sum(val for key, val in components.items() if key not in SHOWN_ONLY)
        scored.append((score, _tiebreak(m), Candidate(m.id, round(score, 6), components)))
    scored.sort(key=lambda item: (-item[0], item[1]))
    return [c for _, _, c in scored]
