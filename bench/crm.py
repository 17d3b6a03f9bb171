"""CRM figures: rating recomputation for 100,000 deals and 200 managers, and routing quality
against an oracle that knows every manager's true win rate and deal size.

The quality figure runs the real routing core in the what-if simulator (the example
office, five days, common random numbers), not through the HTTP server: best-match with
ratings learnt from the generated history and updated online, round-robin (rrmemory), and
best-match fed the true figures (the oracle). Expected revenue is the measure, so the luck
of single deals does not move it.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

from acd.config import load_deployment
from acd.core.model import Manager
from acd.core.ratings import Rating
from acd.crm.ratings import Opportunity, RatingParams, RatingTable
from acd.sim.engine import Run, arrivals, fairness, true_amount, true_win_rate
from acd.sim.scenario import Scenario, load_scenario

ROOT = Path(__file__).resolve().parent.parent


def recompute_seconds(deals: int = 100_000, managers: int = 200, seed: int = 4) -> float:
    rng = random.Random(seed)
    params = RatingParams()
    now = 1_795_000_000.0
    opps = [
        Opportunity(
            id=f"o{i}",
            manager_id=f"m{rng.randrange(managers)}",
            team=f"t{rng.randrange(5)}",
            segment=(
                rng.choice(("purchase", "renewal", "training")),
                rng.choice(("low", "mid", "high")),
                rng.choice(("hot", "cold")),
            ),
            won=(won := rng.random() < 0.3),
            amount=rng.uniform(1e4, 1e6) if won else 0.0,
            at=now - rng.uniform(0, 365) * 86400,
        )
        for i in range(deals)
    ]
    t = time.perf_counter()
    RatingTable.build(opps, params, t_ref=now)
    return time.perf_counter() - t


class OracleRatings:
    """Knows what the simulator knows: each manager's true win rate and deal size."""

    def __init__(self, s: Scenario, keys: tuple[str, ...]) -> None:
        self.s = s
        self.keys = keys
        self.specs = {m.id: m for m in s.managers}

    def rating(self, manager: Manager, segment: tuple[str, ...], skills: frozenset[str]) -> Rating:
        criteria = dict(zip(self.keys, segment, strict=False))
        spec = self.specs[manager.id]
        p = true_win_rate(self.s, spec, criteria)
        return Rating(score=p, expected_value=p * true_amount(self.s, spec, criteria), deals=1000, source="oracle")


def routing_quality() -> dict[str, float]:
    s = load_scenario(ROOT / "config" / "scenarios" / "example.yaml")
    policy = load_deployment(ROOT / "config" / "acd.example.yaml", environ={}).policy
    stream = arrivals(s)
    learnt = Run(s, policy, "best-match", stream).run()
    rr = Run(s, policy, "rrmemory", stream).run()
    oracle_run = Run(s, policy, "best-match", stream)
    oracle_run.board.ratings = OracleRatings(s, oracle_run.policy.segment_keys)
    oracle = oracle_run.run()
    return {
        "crm_best_match_share_of_oracle_ratio": learnt.expected_revenue / oracle.expected_revenue,
        "crm_round_robin_share_of_oracle_ratio": rr.expected_revenue / oracle.expected_revenue,
        # nobody starved: most over fewest contacts among managers with the same skills
        "crm_best_match_fairness_max_min_ratio": fairness(learnt, s),
    }


def run() -> dict[str, float]:
    return {"crm_recompute_100k_deals_200_managers_s": recompute_seconds(), **routing_quality()}


if __name__ == "__main__":
    for k, v in run().items():
        print(k, round(v, 3))
