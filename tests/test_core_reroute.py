"""A repeat customer's contact routed again when the CRM's answer changes while it waits
(its deal moved to another stage): driven with a hand-held clock, no event loop."""

from __future__ import annotations

from acd.core import events as ev
from acd.core.model import Channel, Presence
from acd.core.policy import ChannelRules
from tests.core_helpers import contact, harness, manager

MOVED = "deal D moved from stage 'approval' to 'delivery'"


def to_delivery(cid: str, **kw: object) -> ev.ContactRerouted:
    fields: dict[str, object] = {"first_wait": 0.0, "reason": MOVED, "payload": {"crm": "delivery → egor"}}
    fields.update(kw)
    return ev.ContactRerouted(cid, ("egor",), "logistics", **fields)  # type: ignore[arg-type]


def for_boris(cid: str) -> object:
    return contact(cid, preferred=("boris",), team="sales", first_wait=60.0, payload={"deal_id": "D"})


def decisions(h: object, kind: str) -> list[ev.Decision]:
    return [c.decision for c in h.log if isinstance(c, ev.LogDecision) and c.decision.kind == kind]  # type: ignore[attr-defined]


def test_an_offer_to_the_old_stage_owner_is_withdrawn_without_penalty_and_the_new_owner_gets_it():
    h = harness()
    h.join(manager("boris", team="sales"), manager("egor", team="logistics"))
    h.arrive(for_boris("c1"))
    assert h.offered_to("c1") == "boris"
    h.tick(3)
    out = h.send(to_delivery("c1"))
    assert ev.WithdrawOffer("c1", "boris", f"re-routed: {MOVED}") in out
    c = h.board.contacts["c1"]
    assert (c.preferred, c.team, c.first_wait) == (("egor",), "logistics", 0.0)
    assert c.offered_to == "egor" and h.last_offer().decision.step == 0
    assert c.payload == {"deal_id": "D", "crm": "delivery → egor"}
    boris = h.board.managers["boris"]
    assert boris.presence is Presence.AVAILABLE and boris.missed_in_row == 0
    assert "boris" not in c.declined_by
    saved = [cmd.contact for cmd in out if isinstance(cmd, ev.SaveContact) and cmd.contact.id == "c1"]
    assert saved and saved[0].preferred == ("egor",) and saved[0].team == "logistics"
    (why,) = decisions(h, "reroute")
    assert MOVED in why.summary and "offer to boris withdrawn" in why.summary
    assert "preferred boris, team sales → preferred egor, team logistics" in why.summary


def test_a_rerouted_contact_keeps_its_place_ahead_of_later_arrivals():
    h = harness()
    h.send(ev.ManagerSaved(manager("boris", team="sales")))
    h.send(ev.ManagerSaved(manager("egor", team="logistics")))
    h.arrive(for_boris("c1"))
    h.tick(1)
    h.arrive(contact("c2"))
    h.tick(1)
    h.arrive(contact("c3"))
    h.tick(1)
    h.send(to_delivery("c1"))
    assert [c.id for c in h.board.queue(h.now)] == ["c1", "c2", "c3"]
    assert h.board.contacts["c1"].arrived_at < h.board.contacts["c2"].arrived_at
    h.send(ev.PresenceSet("egor", Presence.AVAILABLE))
    assert h.last_offer().contact.id == "c1"  # first come, first served: not behind c2 and c3


def test_a_contact_escalated_past_its_people_starts_again_from_the_first_step_with_the_stages_wait():
    h = harness(channels={Channel.WEB: ChannelRules(offer_timeout=10_000)}, inactivity_pause=0)
    h.join(manager("egor", team="logistics"))
    h.arrive(contact("busy"))  # keeps egor busy with an offer
    h.send(ev.ManagerSaved(manager("boris", team="sales")))
    h.arrive(for_boris("c1"))
    h.tick(61 + 20)
    assert h.board.contacts["c1"].step == 2
    h.send(to_delivery("c1", first_wait=15.0))
    c = h.board.contacts["c1"]
    assert c.step == 0 and c.step_since == h.now
    assert h.timers[("escalate", "c1")] == h.now + 15.0
    h.tick(14)
    assert h.board.contacts["c1"].step == 0
    h.tick(1)
    assert h.board.contacts["c1"].step == 1  # the team step: logistics


def test_an_offer_to_someone_still_in_the_new_pool_runs_on():
    h = harness()
    h.send(ev.ManagerSaved(manager("boris", team="sales")))
    h.join(manager("egor", team="logistics"))
    h.arrive(for_boris("c1"))  # boris offline: the preferred and team rings are skipped, egor gets it
    assert h.offered_to("c1") == "egor"
    out = h.send(to_delivery("c1"))
    assert not any(isinstance(cmd, ev.WithdrawOffer) for cmd in out)
    c = h.board.contacts["c1"]
    assert c.offered_to == "egor" and c.preferred == ("egor",) and c.step == 0
    assert len(decisions(h, "reroute")) == 1
    h.send(ev.OfferAccepted("c1", "egor"))
    assert h.board.contacts["c1"].assigned_to == "egor"


def test_a_contact_being_worked_is_not_touched():
    h = harness()
    h.join(manager("boris", team="sales"), manager("egor", team="logistics"))
    h.arrive(for_boris("c1"))
    h.send(ev.OfferAccepted("c1", "boris"))
    out = h.send(to_delivery("c1"))
    c = h.board.contacts["c1"]
    assert (c.preferred, c.team, c.assigned_to) == (("boris",), "sales", "boris")
    assert not any(isinstance(cmd, ev.SaveContact | ev.LogDecision | ev.WithdrawOffer) for cmd in out)


def test_a_contact_a_supervisor_pinned_is_not_touched():
    h = harness()
    h.send(ev.ManagerSaved(manager("boris", team="sales")))
    h.send(ev.ManagerSaved(manager("vera", team="sales")))
    h.join(manager("egor", team="logistics"))
    h.send(ev.PresenceSet("egor", Presence.PAUSED, "lunch"))
    h.arrive(for_boris("c1"))
    h.send(ev.ContactReassigned("c1", "vera", by="supervisor"))
    out = h.send(to_delivery("c1"))
    c = h.board.contacts["c1"]
    assert (c.pinned_to, c.preferred, c.team) == ("vera", ("boris",), "sales")
    assert not any(isinstance(cmd, ev.SaveContact | ev.LogDecision) for cmd in out)


def test_a_contact_a_manager_transferred_to_a_team_is_not_touched():
    h = harness()
    h.join(manager("boris", team="sales"))
    h.send(ev.ManagerSaved(manager("egor", team="logistics")))
    h.send(ev.ManagerSaved(manager("ivan", team="support")))
    h.arrive(for_boris("c1"))
    h.send(ev.OfferAccepted("c1", "boris"))
    h.send(ev.ContactTransferred("c1", by="boris", to_team="support"))
    h.send(to_delivery("c1"))
    c = h.board.contacts["c1"]
    assert (c.preferred, c.team) == ((), "support")


def test_the_same_answer_changes_nothing_but_the_explanation():
    h = harness()
    h.send(ev.ManagerSaved(manager("boris", team="sales")))
    h.arrive(for_boris("c1"))
    h.tick(25)
    step = h.board.contacts["c1"].step
    out = h.send(ev.ContactRerouted("c1", ("boris",), "sales", 60.0, "stage owner unchanged", {"crm": "again"}))
    c = h.board.contacts["c1"]
    assert c.step == step and c.payload["crm"] == "again"
    assert not decisions(h, "reroute")
    assert [cmd.contact.id for cmd in out if isinstance(cmd, ev.SaveContact)] == ["c1"]


def test_a_gone_contact_is_ignored():
    h = harness()
    h.join(manager("egor", team="logistics"))
    assert h.send(to_delivery("nobody")) == []


def test_a_pin_set_while_a_contact_waits_marks_it_a_placement_and_removing_it_unmarks_it():
    h = harness()
    h.join(manager("boris", team="sales"))
    h.send(ev.PresenceSet("boris", Presence.PAUSED, "lunch"))
    h.arrive(for_boris("c1"))
    h.send(ev.ContactRerouted("c1", ("vera", "boris"), "sales", 60.0, "pinned to vera", override=True))
    assert h.board.contacts["c1"].override
    h.send(ev.ContactRerouted("c1", ("boris",), "sales", 60.0, "pin removed", override=False))
    c = h.board.contacts["c1"]
    assert not c.override and c.preferred == ("boris",)
    # no longer read as a transfer to a team: the next change of its deal still reaches it
    h.send(to_delivery("c1"))
    assert h.board.contacts["c1"].preferred == ("egor",)
