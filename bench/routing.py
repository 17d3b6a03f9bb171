"""Routing decision latency with 1,000 managers and 10,000 waiting contacts (pure core)."""

from __future__ import annotations

import random
import resource
import time
from dataclasses import replace

from acd.core import events as ev
from acd.core.intake import qualify
from acd.core.model import Channel, Contact, Manager, Presence
from acd.core.policy import RoutingPolicy
from acd.core.switchboard import Switchboard

SKILLS = ("sales", "renewals", "training", "english")
TEAMS = ("sales", "service", "logistics")
CAPACITY = {Channel.CALL: 1, Channel.CALLBACK: 1, Channel.WEB: 5, Channel.EMAIL: 10}
VALUE = {"temperature": {"hot": 2.0, "cold": 1.0}, "price_tier": {"high": 3.0, "mid": 2.0, "low": 1.0}}
NEEDS = {"purpose": {"purchase": ("sales",), "renewal": ("renewals",), "training": ("training",)}}


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def build(n_managers: int, n_contacts: int, rng: random.Random) -> tuple[Switchboard, float, int]:
    policy = RoutingPolicy(value_weights=VALUE, skills_by_answer=NEEDS, inactivity_pause=0)
    board = Switchboard(policy)
    now = 1_795_000_000.0
    for i in range(n_managers):
        skills = {s: rng.randint(1, 5) for s in rng.sample(SKILLS, rng.randint(1, 3))}
        m = Manager(id=f"m{i}", name=f"M{i}", team=rng.choice(TEAMS), skills=skills, capacity=dict(CAPACITY), order=i)
        board.handle(ev.ManagerSaved(m), now)
    seq = 0
    for _ in range(n_contacts):
        seq += 1
        board.handle(ev.ContactArrived(qualify(_contact(seq, now, rng), policy)), now)
        now += 0.01
    return board, now, seq


def _contact(seq: int, now: float, rng: random.Random) -> Contact:
    return Contact(
        id=f"c{seq}",
        channel=rng.choice((Channel.CALL, Channel.WEB, Channel.EMAIL)),
        arrived_at=now,
        seq=seq,
        criteria={
            "purpose": rng.choice(("purchase", "renewal", "training")),
            "temperature": rng.choice(("hot", "cold")),
            "price_tier": rng.choice(("low", "mid", "high")),
        },
    )


def run(decisions: int = 2000, seed: int = 1) -> dict[str, float]:
    rng = random.Random(seed)
    t0 = time.perf_counter()
    board, now, seq = build(1000, 10_000, rng)
    setup = time.perf_counter() - t0
    policy = board.policy
    ids = list(board.managers)

    # A: a manager becomes free while 10,000 contacts wait: find their contact, score, explain.
    freed: list[float] = []
    for _ in range(decisions):
        mid = rng.choice(ids)
        m = board.managers[mid]
        if m.presence is not Presence.OFFLINE:
            continue
        t = time.perf_counter()
        out = board.handle(ev.PresenceSet(mid, Presence.AVAILABLE), now)
        freed.append(time.perf_counter() - t)
        offer = next((c for c in out if isinstance(c, ev.OfferContact)), None)
        if offer is not None:
            board.handle(ev.ContactAbandoned(offer.contact.id), now)
            seq += 1
            board.handle(ev.ContactArrived(qualify(_contact(seq, now, rng), policy)), now)
        board.handle(ev.PresenceSet(mid, Presence.OFFLINE), now)
        now += 0.01

    # B: a contact arrives while 500 managers are available: 500 candidates scored.
    for mid in ids[:500]:
        board.handle(ev.PresenceSet(mid, Presence.AVAILABLE), now)
    # drain what they take, so each new arrival is decided on its own
    arrivals: list[float] = []
    for _ in range(decisions):
        seq += 1
        c = qualify(replace(_contact(seq, now, rng), priority=100), policy)
        t = time.perf_counter()
        out = board.handle(ev.ContactArrived(c), now)
        arrivals.append(time.perf_counter() - t)
        for cmd in out:
            if isinstance(cmd, ev.OfferContact):
                board.handle(ev.ContactAbandoned(cmd.contact.id), now)
        now += 0.01

    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "routing_setup_s": setup,
        "routing_manager_freed_p50_ms": percentile(freed, 50) * 1000,
        "routing_manager_freed_p99_ms": percentile(freed, 99) * 1000,
        "routing_contact_arrived_p50_ms": percentile(arrivals, 50) * 1000,
        "routing_contact_arrived_p99_ms": percentile(arrivals, 99) * 1000,
        "routing_waiting_contacts": float(board.waiting_count()),
        "routing_peak_rss_mb": rss_mb,
    }


if __name__ == "__main__":
    for k, v in run().items():
        print(k, round(v, 3))
