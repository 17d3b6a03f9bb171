"""Seed 001: first-time e-mail enquiries spread evenly among competing sellers, through the
real routing core with the example deployment's policy (best-match, its escalation steps,
its e-mail offer timeout), a hand-held clock and seeded randomness."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import replace

from api_fixtures import example_deployment
from core_helpers import Harness, manager
from mail_fixtures import KEYWORDS

from acd.core import events as ev
from acd.core.intake import derived
from acd.core.model import Channel, Contact, Presence
from acd.core.switchboard import Switchboard
from acd.messaging.mail import infer_criteria

SUBJECTS = ["Хотим купить 20 лицензий", "Нужно продлить лицензию", "Цена на обучение?", "Коммерческое предложение"]


def test_a_thousand_first_time_emails_spread_evenly_among_ten_equal_sellers() -> None:
    d = example_deployment()
    policy = d.policy
    rng = random.Random(1)
    h = Harness(Switchboard(policy))
    sellers = [f"s{i:02d}" for i in range(10)]
    for sid in sellers:
        skills = {"sales": 3, "renewals": 3, "training": 3}
        h.send(ev.ManagerSaved(manager(sid, team="sales", skills=skills, capacity={Channel.EMAIL: 4})))
        h.send(ev.PresenceSet(sid, Presence.AVAILABLE))
    defaults = {c.name: c.default for c in d.criteria if c.default is not None}
    taken: Counter[str] = Counter()
    open_by: dict[str, str] = {}
    finish_at: dict[str, float] = {}

    for i in range(1000):
        h.tick(rng.expovariate(1 / 30))  # an enquiry every 30 s on average
        for cid, at in sorted(finish_at.items(), key=lambda kv: kv[1]):
            if at <= h.now:
                h.send(ev.WorkFinished(cid, open_by.pop(cid)))
                del finish_at[cid]
        for sid in sellers:
            h.send(ev.HeartbeatReceived(sid))
        subject = rng.choice(SUBJECTS)
        criteria = {**defaults, **infer_criteria(subject, KEYWORDS)}
        skills, bonus, team = derived(criteria, policy)
        c = Contact(
            id=f"e{i}",
            channel=Channel.EMAIL,
            arrived_at=h.now,
            step_since=h.now,
            seq=i,
            criteria=criteria,
            required_skills=skills,
            priority=bonus,
            team=team,
            email=f"c{i}@client.test",
        )
        for cmd in h.send(ev.ContactArrived(c)):
            if isinstance(cmd, ev.OfferContact):
                h.send(ev.OfferAccepted(cmd.contact.id, cmd.manager.id))
                taken[cmd.manager.id] += 1
                open_by[cmd.contact.id] = cmd.manager.id
                finish_at[cmd.contact.id] = h.now + rng.uniform(60, 600)  # a few minutes' work

    assert sum(taken.values()) == 1000  # nobody waited: ten sellers x 4 open e-mails is plenty
    shares = sorted(taken[s] for s in sellers)
    assert shares[-1] / shares[0] <= 1.05, shares


def test_fairness_holds_when_a_seller_misses_an_offer_and_is_paused_until_they_rejoin() -> None:
    d = example_deployment()
    h = Harness(Switchboard(replace(d.policy, inactivity_pause=0)))
    sellers = [f"s{i}" for i in range(10)]
    for sid in sellers:
        h.send(ev.ManagerSaved(manager(sid, team="sales", skills={"sales": 3}, capacity={Channel.EMAIL: 100})))
        h.send(ev.PresenceSet(sid, Presence.AVAILABLE))
    timeout = d.policy.rules(Channel.EMAIL).offer_timeout
    taken: Counter[str] = Counter()
    paused_once = False
    for i in range(1000):
        h.tick(10)
        c = Contact(id=f"e{i}", channel=Channel.EMAIL, arrived_at=h.now, step_since=h.now, seq=i, team="sales")
        out = h.send(ev.ContactArrived(c))
        offer = next(cmd for cmd in out if isinstance(cmd, ev.OfferContact))
        if offer.manager.id == "s3" and not paused_once:
            paused_once = True
            h.tick(timeout)  # s3 lets it ring out: moved on at once, and s3 is paused
            assert h.board.managers["s3"].presence is Presence.PAUSED
            offer = next(cmd for cmd in reversed(h.log) if isinstance(cmd, ev.OfferContact))
            assert offer.manager.id != "s3"
        h.send(ev.OfferAccepted(offer.contact.id, offer.manager.id))
        taken[offer.manager.id] += 1
        if i == 500:
            h.send(ev.PresenceSet("s3", Presence.AVAILABLE, "rejoin"))  # s3 is back, and catches up
    assert paused_once
    others = [taken[s] for s in sellers if s != "s3"]
    assert max(others) / min(others) <= 1.05, taken
