"""The core's ContactTransferred, pure: no event loop, a hand-held clock."""

from __future__ import annotations

import pytest

from acd.core import events as ev
from acd.core.errors import CoreError
from acd.core.model import Channel, ContactStatus, Presence
from tests.core_helpers import Harness, contact, harness, manager


def talking(h: Harness, cid: str = "c1") -> str:
    """A call offered and accepted; returns who has it."""
    h.arrive(contact(cid, Channel.CALL))
    owner = h.last_offer().manager.id
    h.send(ev.OfferAccepted(cid, owner))
    return owner


def test_a_call_transferred_to_a_manager_leaves_its_owner_and_is_offered_to_the_target():
    h = harness()
    h.join(manager("anna"), manager("boris"), manager("vera"))
    owner = talking(h)
    target = next(m for m in ("boris", "vera") if m != owner)
    h.send(ev.ContactTransferred("c1", owner, to_manager=target))
    assert h.last_offer().manager.id == target and h.last_offer().contact.id == "c1"
    c = h.board.contacts["c1"]
    assert c.status is ContactStatus.OFFERED and c.override and c.assigned_to is None
    assert h.board.managers[owner].load.get(Channel.CALL, 0) == 0
    assert h.presence(owner) is Presence.AVAILABLE
    decisions = [cmd.decision for cmd in h.log if isinstance(cmd, ev.LogDecision)]
    assert decisions[-2].kind == "transfer" and f"transferred by {owner}" in decisions[-2].summary


def test_a_call_transferred_to_a_busy_manager_waits_for_them_until_the_pin_runs_out():
    h = harness()
    h.join(manager("anna"), manager("boris"))
    owner = talking(h)
    other = "boris" if owner == "anna" else "anna"
    h.send(ev.PresenceSet(other, Presence.PAUSED, "lunch"))
    h.send(ev.ContactTransferred("c1", owner, to_manager=other, pin_until=h.now + 30))
    assert h.board.contacts["c1"].status is ContactStatus.WAITING
    assert h.offered_to("c1") is None  # not back to the one who passed it on
    h.tick(31)
    assert h.offered_to("c1") == owner  # the pin ran out and nobody else could take it


def test_a_call_transferred_to_a_team_is_routed_within_that_team():
    h = harness()
    h.join(manager("anna", team="sales"), manager("grigory", team="service"), manager("egor", team="service"))
    h.arrive(contact("c1", Channel.CALL, team="sales", preferred=("anna",)))
    h.send(ev.OfferAccepted("c1", "anna"))
    h.send(ev.ContactTransferred("c1", "anna", to_team="service"))
    offer = h.last_offer()
    assert offer.contact.id == "c1" and offer.manager.id in ("grigory", "egor")
    assert offer.contact.team == "service" and offer.contact.preferred == ()


@pytest.mark.parametrize(
    ("by", "to_manager", "to_team", "code"),
    [
        ("boris", "vera", None, "not_yours"),
        ("OWNER", None, None, "bad_transfer"),
        ("OWNER", "vera", "sales", "bad_transfer"),
        ("OWNER", "OWNER", None, "bad_transfer"),
        ("OWNER", "nobody", None, "no_such_manager"),
    ],
)
def test_a_wrong_transfer_changes_nothing(by: str, to_manager: str | None, to_team: str | None, code: str) -> None:
    h = harness()
    h.join(manager("anna"))
    owner = talking(h)
    h.join(manager("boris"), manager("vera"))
    by = owner if by == "OWNER" else by
    to_manager = owner if to_manager == "OWNER" else to_manager
    with pytest.raises(CoreError) as err:
        h.send(ev.ContactTransferred("c1", by, to_manager=to_manager, to_team=to_team))
    assert err.value.code == code
    assert h.board.contacts["c1"].assigned_to == owner


def test_only_an_assigned_contact_can_be_transferred():
    h = harness()
    h.arrive(contact("c1", Channel.CALL))
    h.join(manager("anna"))
    with pytest.raises(CoreError) as err:
        h.send(ev.ContactTransferred("c1", "anna", to_manager="anna"))
    assert err.value.code == "not_assigned"


def test_a_transfer_travels_between_cluster_nodes_unchanged():
    import json

    from acd.cluster.codec import decode_event, encode

    event = ev.ContactTransferred("c1", "anna", to_team="service", pin_until=None)
    assert decode_event(json.loads(json.dumps(encode(event)))) == event
