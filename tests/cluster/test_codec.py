"""Events and commands cross between nodes as JSON and come back equal."""

from __future__ import annotations

import json

import pytest

from acd.cluster.codec import CodecError, decode_command, decode_event, encode
from acd.core import events as ev
from acd.core.model import Channel, Outcome, Presence
from acd.core.policy import RoutingPolicy
from tests.core_helpers import contact, manager

LEAD = contact(
    "c1",
    Channel.WEB,
    arrived_at=1.5,
    criteria={"temperature": "hot"},
    required_skills=frozenset({"sales"}),
    preferred=("anna",),
    payload={"note": "call after 5"},
)
ANNA = manager("anna", languages=frozenset({"ru", "en"}), skills={"sales": 4}, load={Channel.WEB: 1})


def through_json(message: ev.Event | ev.Command) -> dict[str, object]:
    return dict(json.loads(json.dumps(encode(message))))


@pytest.mark.parametrize(
    "event",
    [
        ev.ContactArrived(LEAD),
        ev.ContactAbandoned("c1"),
        ev.ManagerSaved(ANNA),
        ev.ManagerRemoved("anna"),
        ev.PresenceSet("anna", Presence.PAUSED, "lunch", "sup"),
        ev.HeartbeatReceived("anna"),
        ev.OfferAccepted("c1", "anna"),
        ev.OfferDeclined("c1", "anna", "busy"),
        ev.OfferFailed("c1", "anna"),
        ev.WorkFinished("c1", None, Outcome.WON),
        ev.ContactReassigned("c1", "anna", "boss", 99.0),
        ev.DeviceStateChanged("anna", True),
        ev.TimerFired(("offer", "c1")),
    ],
    ids=lambda e: type(e).__name__,
)
def test_every_event_a_follower_forwards_comes_back_equal(event: ev.Event) -> None:
    assert decode_event(through_json(event)) == event


def test_a_policy_reload_stands_for_the_leaders_own_file() -> None:
    mine = RoutingPolicy(version="leader's")
    back = decode_event(through_json(ev.PolicyReloaded(RoutingPolicy(version="follower's"))), lambda: mine)
    assert back == ev.PolicyReloaded(mine)


def test_an_offer_reaches_the_panels_without_its_candidate_list() -> None:
    decision = ev.Decision(
        id="d1",
        at=2.0,
        contact_id="c1",
        manager_id="anna",
        kind="offer",
        policy_version="1",
        strategy="best-match",
        step=0,
        pool="preferred",
        candidates=(ev.Candidate("anna", 0.5, {"value": 0.5}),),
        summary="Anna for web contact c1",
    )
    back = decode_command(through_json(ev.OfferContact(LEAD, ANNA, 30.0, decision)))
    assert isinstance(back, ev.OfferContact)
    assert (back.contact, back.manager, back.expires_at) == (LEAD, ANNA, 30.0)
    assert back.decision.summary == decision.summary and back.decision.candidates == ()


def test_a_message_of_an_unknown_type_is_refused_not_guessed() -> None:
    with pytest.raises(CodecError):
        decode_event({"type": "ContactTeleported", "contact_id": "c1"})
    with pytest.raises(CodecError):
        decode_event({"type": "OfferAccepted", "contact_id": 5, "manager_id": "anna"})
