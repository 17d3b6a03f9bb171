"""The entry escalation step (acd.core.intake.entry_step): a contact stored there arrives
exactly where the core would have put it, and a waiting one then needs no second write."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from acd.core import events as ev
from acd.core.intake import entry_step, qualify
from acd.core.model import Channel, Presence
from acd.core.policy import EscalationStep, Pool, SkipWhen
from tests.core_helpers import T0, contact, harness, manager

POOLS = list(Pool)
MANAGERS = ["m0", "m1", "m2"]

steps_strategy = st.lists(
    st.tuples(st.sampled_from(POOLS), st.sampled_from(list(SkipWhen))), min_size=1, max_size=4
).map(
    lambda raw: ((*(EscalationStep(pool, 20, skip_when) for pool, skip_when in raw[:-1]), EscalationStep(raw[-1][0])))
)


@settings(max_examples=300, deadline=None)
@given(
    steps=steps_strategy,
    preferred=st.lists(st.sampled_from([*MANAGERS, "gone"]), max_size=2, unique=True),
    team=st.sampled_from([None, "t0", "t1"]),
    skills=st.sampled_from([frozenset(), frozenset({"sales"})]),
    pinned=st.sampled_from([None, "m1"]),
    presences=st.lists(st.sampled_from(["available", "paused", "offline", "busy"]), min_size=3, max_size=3),
)
def test_a_contact_stored_at_its_entry_step_ends_where_the_core_puts_it(
    steps, preferred, team, skills, pinned, presences
) -> None:  # type: ignore[no-untyped-def]
    boards = [harness(steps=steps), harness(steps=steps)]
    for h in boards:
        for i, (mid, presence) in enumerate(zip(MANAGERS, presences, strict=True)):
            h.send(ev.ManagerSaved(manager(mid, team=f"t{i % 2}", skills={"sales": 3} if i else {})))
            if presence == "busy":  # staffed, but with no room for a web lead
                h.send(ev.ManagerSaved(manager(mid, team=f"t{i % 2}", capacity={Channel.WEB: 0})))
                presence = "available"
            if presence != "offline":
                h.send(ev.PresenceSet(mid, Presence.AVAILABLE))
            if presence == "paused":
                h.send(ev.PresenceSet(mid, Presence.PAUSED))
    c = contact(
        "c1", seq=1, arrived_at=T0, step_since=T0, preferred=tuple(preferred), team=team, required_skills=skills
    )
    c = replace(c, pinned_to=pinned)
    as_is, at_entry = (
        qualify(c, boards[0].board.policy),
        entry_step(qualify(c, boards[1].board.policy), boards[1].board.policy),
    )
    out_as_is = boards[0].send(ev.ContactArrived(replace(as_is)))
    out_at_entry = boards[1].send(ev.ContactArrived(replace(at_entry)))
    a, b = boards[0].board.contacts["c1"], boards[1].board.contacts["c1"]
    assert (a.status, a.step, a.offered_to) == (b.status, b.step, b.offered_to)
    assert boards[0].timers == boards[1].timers  # a timer started twice counts once: the later replaces it
    timers = (ev.SaveContact, ev.StartTimer)
    assert [x for x in out_as_is if not isinstance(x, timers)] == [x for x in out_at_entry if not isinstance(x, timers)]
    if b.status.value == "waiting" and b.step == at_entry.step:
        assert not any(isinstance(x, ev.SaveContact) for x in out_at_entry), "nothing changed, nothing to write"


def test_a_new_customer_skips_the_preferred_ring_and_a_contact_without_a_team_the_team_ring() -> None:
    steps = (
        EscalationStep(Pool.PREFERRED, 20),
        EscalationStep(Pool.TEAM, 20),
        EscalationStep(Pool.SKILL, 20),
        EscalationStep(Pool.ANY),
    )
    policy = harness(steps=steps).board.policy
    assert entry_step(contact("a", team="t0"), policy).step == 1
    assert entry_step(contact("b"), policy).step == 2
    assert entry_step(contact("c", preferred=("m0",)), policy).step == 0
    assert entry_step(contact("d", pinned_to="m0"), policy).step == 0
    only_rings = (EscalationStep(Pool.PREFERRED, 20), EscalationStep(Pool.TEAM))
    assert entry_step(contact("e"), harness(steps=only_rings).board.policy).step == 1  # the last ring stays


def test_evolve_copies_a_contact_as_dataclasses_replace_does() -> None:
    from dataclasses import fields, replace

    from acd.core.model import Channel, Contact, evolve

    original = Contact(id="c", channel=Channel.WEB, arrived_at=1.5, criteria={"a": "b"}, preferred=("m-1",))
    copy = evolve(original, step=2, team="sales")
    assert copy == replace(original, step=2, team="sales")
    assert copy is not original and original.step == 0 and original.team is None
    assert evolve(original) == original
    assert {f.name for f in fields(Contact)} == {f.name for f in fields(copy)}
    with pytest.raises(AttributeError):
        evolve(original, no_such_field=1)
