"""Property tests of the core's invariants over random event sequences (hypothesis)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from acd.core import events as ev
from acd.core.errors import CoreError
from acd.core.model import Channel, ContactStatus, Presence
from acd.core.policy import ChannelRules, EscalationStep, Pool
from tests.core_helpers import contact, harness, manager

# `make reliability` runs many more random sequences than the everyday suite
SCALE = 20 if os.environ.get("HYPOTHESIS_PROFILE") == "reliability" else 1
MANAGERS = ["m0", "m1", "m2", "m3"]
CHANNELS = [Channel.CALL, Channel.WEB, Channel.EMAIL]
SKILLS = [frozenset(), frozenset({"sales"}), frozenset({"training"})]
TEAMS = ["t0", "t1"]

op = st.one_of(
    st.tuples(
        st.just("arrive"), st.sampled_from(CHANNELS), st.sampled_from(SKILLS), st.integers(0, 2), st.sampled_from(TEAMS)
    ),
    # a burst routed in one pass (Switchboard.handle_arrivals), as the dispatcher does
    st.tuples(
        st.just("burst"),
        st.lists(
            st.tuples(st.sampled_from(CHANNELS), st.sampled_from(SKILLS), st.integers(0, 2), st.sampled_from(TEAMS)),
            min_size=2,
            max_size=6,
        ),
    ),
    st.tuples(st.just("presence"), st.sampled_from(MANAGERS), st.sampled_from(["available", "paused", "offline"])),
    st.tuples(st.just("accept"), st.integers(0, 30)),
    st.tuples(st.just("decline"), st.integers(0, 30)),
    st.tuples(st.just("finish"), st.integers(0, 30)),
    st.tuples(st.just("abandon"), st.integers(0, 30)),
    st.tuples(st.just("tick"), st.floats(0.5, 40)),
    st.tuples(st.just("pin"), st.integers(0, 30), st.sampled_from(MANAGERS)),
)


def check_invariants(h) -> None:  # type: ignore[no-untyped-def]
    board = h.board
    offered_by_manager: dict[str, str] = {}
    for c in board.contacts.values():
        if c.status is ContactStatus.OFFERED:
            assert c.offered_to is not None
            assert c.offered_to not in offered_by_manager, "a manager holds two offers"
            offered_by_manager[c.offered_to] = c.id
            assert board.managers[c.offered_to].offer_contact_id == c.id
    for m in board.managers.values():
        if m.offer_contact_id is not None:
            assert offered_by_manager.get(m.id) == m.offer_contact_id
            assert m.presence is Presence.OFFERED
        for ch, n in m.load.items():
            assert n <= m.capacity.get(ch, 0), f"{m.id} over capacity on {ch}"
        assigned = sum(
            1 for c in board.contacts.values() if c.assigned_to == m.id and c.status is ContactStatus.ASSIGNED
        )
        assert m.total_load == assigned
    # the routing invariant: nobody available could take a waiting contact in its pool
    for c in board.contacts.values():
        if c.status is ContactStatus.WAITING:
            pool = Pool.PREFERRED if c.pinned_to else board.policy.steps[c.step].pool
            for m in board._available.values():
                assert board._reject(c, m, pool) is not None, f"{c.id} could go to {m.id}"


@settings(max_examples=150 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(op, min_size=1, max_size=60))
def test_core_invariants_hold_over_any_sequence_of_events(ops) -> None:  # type: ignore[no-untyped-def]
    steps = (EscalationStep(Pool.TEAM, 10), EscalationStep(Pool.SKILL, 10), EscalationStep(Pool.ANY))
    rules = {ch: ChannelRules(offer_timeout=15, wrap_up=5 if ch is Channel.CALL else 0) for ch in Channel}
    h = harness(steps=steps, channels=rules, missed_offers_to_pause=2, inactivity_pause=0)
    for i, mid in enumerate(MANAGERS):
        skills = {"sales": 3} if i % 2 == 0 else {"training": 4}
        h.send(
            ev.ManagerSaved(
                manager(
                    mid,
                    team="t0" if i < 2 else "t1",
                    skills=skills,
                    capacity={Channel.CALL: 1, Channel.WEB: 2, Channel.EMAIL: 3},
                )
            )
        )
    ids: list[str] = []
    paused_at_offer: list[str] = []
    for operation in ops:
        kind = operation[0]
        try:
            if kind == "arrive":
                _, channel, skills, prio, team = operation
                cid = f"c{len(ids)}"
                ids.append(cid)
                out = h.arrive(contact(cid, channel, required_skills=skills, priority=prio, team=team))
            elif kind == "burst":
                burst = []
                for channel, skills, prio, team in operation[1]:
                    ids.append(cid := f"c{len(ids)}")
                    burst.append(contact(cid, channel, required_skills=skills, priority=prio, team=team))
                out = h.arrive_together(*burst)
            elif kind == "presence":
                out = h.send(ev.PresenceSet(operation[1], Presence(operation[2]), "test"))
            elif kind == "tick":
                before = len(h.log)
                h.tick(operation[1])
                out = h.log[before:]
            elif not ids:
                continue
            else:
                cid = ids[operation[1] % len(ids)]
                c = h.board.contacts.get(cid)
                if kind == "accept" and c and c.offered_to:
                    out = h.send(ev.OfferAccepted(cid, c.offered_to))
                elif kind == "decline" and c and c.offered_to:
                    out = h.send(ev.OfferDeclined(cid, c.offered_to))
                elif kind == "finish" and c and c.status is ContactStatus.ASSIGNED:
                    out = h.send(ev.WorkFinished(cid, c.assigned_to))
                elif kind == "abandon":
                    out = h.send(ev.ContactAbandoned(cid))
                elif kind == "pin" and c and c.status is not ContactStatus.ASSIGNED:
                    out = h.send(ev.ContactReassigned(cid, operation[2], "boss", h.now + 30))
                else:
                    continue
        except CoreError:
            continue  # refused requests change nothing; the invariants still hold below
        for cmd in out:
            if isinstance(cmd, ev.OfferContact) and cmd.manager.presence is not Presence.OFFERED:
                paused_at_offer.append(cmd.manager.id)
        check_invariants(h)
    assert not paused_at_offer


@settings(max_examples=60 * SCALE, deadline=None)
@given(st.lists(st.sampled_from(CHANNELS), min_size=1, max_size=25))
def test_every_contact_is_eventually_offered_while_an_eligible_manager_is_available(channels) -> None:  # type: ignore[no-untyped-def]
    h = harness(inactivity_pause=0)
    h.join(manager("solo", capacity={ch: 1 for ch in Channel}))
    for i, ch in enumerate(channels):
        h.arrive(contact(f"c{i}", ch))
    served = set()
    for _ in range(len(channels)):
        c = next((c for c in h.board.contacts.values() if c.offered_to == "solo"), None)
        assert c is not None, "a waiting contact is not offered to the free manager"
        served.add(c.id)
        h.send(ev.OfferAccepted(c.id, "solo"))
        h.send(ev.WorkFinished(c.id, "solo"))
    assert served == {f"c{i}" for i in range(len(channels))}
