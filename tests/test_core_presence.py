"""Presence, offers, timeouts, overrides and restart recovery in the pure core."""

from __future__ import annotations

import pytest

from acd.core import events as ev
from acd.core.errors import CoreError
from acd.core.model import Channel, ContactStatus, Outcome, Presence
from acd.core.policy import ChannelRules, EscalationStep, Pool, RoutingPolicy
from acd.core.switchboard import Switchboard
from tests.core_helpers import Harness, contact, harness, manager

RULES = {Channel.CALL: ChannelRules(offer_timeout=20, wrap_up=30), Channel.WEB: ChannelRules(offer_timeout=120)}


def transitions(h: Harness, mid: str) -> list[tuple[str, str, str | None, str]]:
    return [
        (t.transition.old.value, t.transition.new.value, t.transition.reason, t.transition.cause)
        for t in h.log
        if isinstance(t, ev.LogTransition) and t.transition.manager_id == mid
    ]


def test_a_missed_offer_pauses_the_manager_and_the_contact_moves_on_at_once():
    h = harness(channels=RULES)
    h.join(manager("anna", order=1), manager("boris", order=2))
    h.arrive(contact("c1", Channel.CALL))
    first = h.offered_to("c1")
    other = "boris" if first == "anna" else "anna"
    h.tick(20)
    assert h.presence(first) is Presence.PAUSED
    assert h.board.managers[first].pause_reason == "missed offer"
    assert h.offered_to("c1") == other
    assert any(isinstance(c, ev.NotifyManager) and c.kind == "auto_pause" for c in h.log)
    assert any(isinstance(c, ev.WithdrawOffer) and c.manager_id == first for c in h.log)


def test_pausing_after_n_misses_in_a_row_is_configurable():
    h = harness(channels=RULES, missed_offers_to_pause=2)
    h.join(manager("anna"))
    h.arrive(contact("c1", Channel.CALL))
    h.tick(20)
    assert h.presence("anna") is Presence.OFFERED  # re-offered: nobody else can take it
    h.tick(20)
    assert h.presence("anna") is Presence.PAUSED


def test_a_paused_manager_gets_nothing_until_they_rejoin():
    h = harness()
    h.join(manager("anna"))
    h.send(ev.PresenceSet("anna", Presence.PAUSED, "lunch"))
    h.arrive(contact("c1"))
    assert h.offers() == []
    h.send(ev.PresenceSet("anna", Presence.AVAILABLE))
    assert h.offered_to("c1") == "anna"


def test_a_declined_contact_is_not_offered_to_the_same_manager_while_another_can_take_it():
    h = harness()
    h.join(manager("anna", order=1), manager("boris", order=2))
    h.arrive(contact("c1"))
    first = h.offered_to("c1")
    h.send(ev.OfferDeclined("c1", first))
    second = h.offered_to("c1")
    assert second not in (None, first)
    h.send(ev.OfferDeclined("c1", second))
    assert h.offered_to("c1") in ("anna", "boris")  # nobody else: back to a decliner


def test_accepting_a_call_makes_the_manager_busy_then_wrap_up_then_available():
    h = harness(channels=RULES)
    h.join(manager("anna"))
    h.arrive(contact("c1", Channel.CALL))
    h.send(ev.OfferAccepted("c1", "anna"))
    assert h.presence("anna") is Presence.BUSY
    h.send(ev.WorkFinished("c1", "anna", Outcome.WON))
    assert h.presence("anna") is Presence.WRAP_UP
    h.arrive(contact("c2", Channel.CALL))
    assert h.offered_to("c2") is None
    h.tick(30)
    assert h.presence("anna") is Presence.AVAILABLE or h.offered_to("c2") == "anna"
    assert h.offered_to("c2") == "anna"
    causes = [t[3] for t in transitions(h, "anna")]
    assert "wrap_up" in causes and "wrap_up_ended" in causes


def test_web_leads_fill_capacity_and_a_call_blocks_everything_else():
    h = harness()
    h.join(manager("anna", capacity={Channel.WEB: 2, Channel.CALL: 1}))
    for i in range(3):
        h.arrive(contact(f"w{i}"))
        if h.offered_to(f"w{i}"):
            h.send(ev.OfferAccepted(f"w{i}", "anna"))
    assert h.board.managers["anna"].load[Channel.WEB] == 2
    assert h.board.contacts["w2"].status is ContactStatus.WAITING
    h.arrive(contact("call", Channel.CALL))
    assert h.offered_to("call") == "anna"
    h.send(ev.OfferAccepted("call", "anna"))
    assert h.presence("anna") is Presence.BUSY
    h.send(ev.WorkFinished("w0", "anna"))
    assert h.offered_to("w2") is None  # on a call: nothing else
    h.send(ev.WorkFinished("call", "anna"))
    assert h.offered_to("w2") == "anna"


def test_a_caller_hanging_up_while_offered_leaves_nothing_offered_or_busy():
    h = harness(channels=RULES)
    h.join(manager("anna"))
    h.arrive(contact("c1", Channel.CALL))
    h.send(ev.ContactAbandoned("c1"))
    assert "c1" not in h.board.contacts
    assert h.presence("anna") is Presence.AVAILABLE
    saved = [c.contact for c in h.log if isinstance(c, ev.SaveContact) and c.contact.id == "c1"]
    assert saved[-1].status is ContactStatus.ABANDONED
    assert h.board.waiting_count() == 0


def test_inactivity_pauses_a_manager_whose_panel_stopped_beating():
    h = harness(inactivity_pause=600)
    h.join(manager("anna"))
    h.tick(300)
    h.send(ev.HeartbeatReceived("anna"))
    h.tick(500)
    assert h.presence("anna") is Presence.AVAILABLE
    h.tick(101)
    assert h.presence("anna") is Presence.PAUSED
    assert h.board.managers["anna"].pause_reason == "inactive"


def test_a_manager_at_their_daily_cap_is_filtered():
    h = harness()
    h.join(manager("capped", daily_cap=1))
    h.arrive(contact("c1"))
    h.send(ev.OfferAccepted("c1", "capped"))
    h.arrive(contact("c2"))
    assert h.offered_to("c2") is None
    h.join(manager("anna"))
    assert h.last_offer().decision.filtered_counts == {"daily cap": 1}


def test_presence_changes_the_table_forbids_are_refused_without_side_effects():
    h = harness()
    h.send(ev.ManagerSaved(manager("anna")))
    with pytest.raises(CoreError) as err:
        h.send(ev.PresenceSet("anna", Presence.PAUSED, "lunch"))
    assert err.value.code == "bad_transition"
    assert h.presence("anna") is Presence.OFFLINE
    with pytest.raises(CoreError):
        h.send(ev.OfferAccepted("nope", "anna"))


def test_every_transition_is_recorded_with_time_and_cause():
    h = harness()
    h.join(manager("anna"))
    h.tick(5)
    h.send(ev.PresenceSet("anna", Presence.PAUSED, "lunch"))
    assert transitions(h, "anna") == [
        ("offline", "available", None, "set_available"),
        ("available", "paused", "lunch", "pause"),
    ]


def test_a_supervisor_pin_waits_for_the_chosen_manager_and_is_marked_as_override():
    h = harness()
    h.send(ev.ManagerSaved(manager("vera")))
    h.join(manager("anna"))
    h.send(ev.PresenceSet("anna", Presence.PAUSED, "x"))
    h.arrive(contact("c1"))
    h.send(ev.ContactReassigned("c1", "vera", by="boss", pin_until=h.now + 60))
    h.send(ev.PresenceSet("anna", Presence.AVAILABLE))
    assert h.offered_to("c1") is None
    h.send(ev.PresenceSet("vera", Presence.AVAILABLE))
    assert h.offered_to("c1") == "vera"
    assert h.board.contacts["c1"].override is True
    kinds = [c.decision.kind for c in h.log if isinstance(c, ev.LogDecision)]
    assert kinds[0] == "override"


def test_a_pin_expires_and_the_contact_goes_back_to_normal_routing():
    h = harness()
    h.send(ev.ManagerSaved(manager("vera")))
    h.join(manager("anna"))
    h.send(ev.PresenceSet("anna", Presence.PAUSED, "x"))
    h.arrive(contact("c1"))
    h.send(ev.ContactReassigned("c1", "vera", by="boss", pin_until=h.now + 60))
    h.send(ev.PresenceSet("anna", Presence.AVAILABLE))
    h.tick(61)
    assert h.offered_to("c1") == "anna"


def test_reassigning_an_assigned_lead_moves_it_and_its_load():
    h = harness()
    h.join(manager("anna"), manager("vera"))
    h.arrive(contact("c1"))
    owner = h.offered_to("c1")
    other = "vera" if owner == "anna" else "anna"
    h.send(ev.OfferAccepted("c1", owner))
    h.send(ev.ContactReassigned("c1", other, by="boss"))
    assert h.board.contacts["c1"].assigned_to == other
    assert h.board.managers[owner].load[Channel.WEB] == 0
    assert h.board.managers[other].load[Channel.WEB] == 1


def test_a_policy_reload_keeps_every_waiting_contact():
    h = harness()
    h.send(ev.ManagerSaved(manager("anna")))
    for i in range(5):
        h.arrive(contact(f"c{i}"))
    h.send(ev.PolicyReloaded(RoutingPolicy(version="2")))
    assert [c.id for c in h.board.queue(h.now)] == [f"c{i}" for i in range(5)]
    h.send(ev.PresenceSet("anna", Presence.AVAILABLE))
    assert h.last_offer().decision.policy_version == "2"


def test_restore_rebuilds_order_withdraws_stale_offers_and_recounts_loads():
    h = harness()
    h.join(manager("anna"), manager("vera"))
    h.send(ev.PresenceSet("vera", Presence.PAUSED, "x"))
    for i in range(4):
        h.arrive(contact(f"c{i}"))
    h.send(ev.OfferAccepted("c0", "anna"))  # anna: 1 open web lead; c1 is now offered to her
    assert h.offered_to("c1") == "anna"
    saved_contacts = {c.contact.id: c.contact for c in h.log if isinstance(c, ev.SaveContact)}
    saved_managers = {c.manager.id: c.manager for c in h.log if isinstance(c, ev.SaveManager)}

    fresh = Harness(Switchboard(RoutingPolicy()), now=h.now + 100)
    fresh.record(fresh.board.restore(saved_contacts.values(), saved_managers.values(), fresh.now))
    assert fresh.board.managers["anna"].load == {Channel.WEB: 1}
    assert fresh.offered_to("c1") == "anna"  # re-offered in the original order
    assert [c.id for c in fresh.board.queue(fresh.now)] == ["c2", "c3"]
    assert fresh.presence("vera") is Presence.PAUSED


def test_restore_counts_times_stored_ahead_of_its_clock_from_now():
    """Saved under a wall clock ten minutes ahead of the one the restart reads (it was stepped
    back in between): the wrap-up, the escalation step and the inactivity limit run their
    configured length from the restart, not ten minutes more."""
    h = harness(channels=RULES)
    h.join(manager("anna"), manager("boris"))
    h.send(ev.PresenceSet("boris", Presence.PAUSED, "x"))
    h.arrive(contact("c1", Channel.CALL))
    h.send(ev.OfferAccepted("c1", "anna"))
    h.send(ev.WorkFinished("c1", "anna"))  # anna wraps up for 30 s
    h.arrive(contact("c2"))  # nobody free: it waits at its entry step ('skill', 30 s)
    assert h.presence("anna") is Presence.WRAP_UP and h.board.contacts["c2"].status is ContactStatus.WAITING
    saved_contacts = {c.contact.id: c.contact for c in h.log if isinstance(c, ev.SaveContact)}
    saved_managers = {c.manager.id: c.manager for c in h.log if isinstance(c, ev.SaveManager)}

    fresh = Harness(Switchboard(RoutingPolicy(channels=RULES)), now=h.now - 600)
    fresh.record(fresh.board.restore(saved_contacts.values(), saved_managers.values(), fresh.now))
    assert fresh.timers[("wrapup", "anna")] == fresh.now + 30
    assert fresh.timers[("escalate", "c2")] == fresh.now + 30
    assert fresh.timers[("inactivity", "anna")] == fresh.now + 600
    fresh.tick(30)
    assert fresh.offered_to("c2") == "anna"


def test_a_reload_that_shortens_the_policys_times_sets_their_timers_again():
    """Wrap-up, a step's timeout and the inactivity limit cut by a reload run to their new
    length from when each began, not to the old one."""
    long = {Channel.CALL: ChannelRules(offer_timeout=20, wrap_up=600), Channel.WEB: ChannelRules(offer_timeout=120)}
    steps = (EscalationStep(Pool.SKILL, 600), EscalationStep(Pool.ANY, None))
    h = harness(channels=long, steps=steps, inactivity_pause=3600)
    h.join(manager("anna"), manager("boris"))
    h.send(ev.PresenceSet("boris", Presence.PAUSED, "x"))
    h.arrive(contact("c1", Channel.CALL))
    h.send(ev.OfferAccepted("c1", "anna"))
    h.send(ev.WorkFinished("c1", "anna"))  # anna wraps up for 600 s
    finished = h.now
    h.arrive(contact("c2"))  # nobody free, boris is staffed: it waits at 'skill' for 600 s
    h.tick(10)
    h.send(ev.PolicyReloaded(RoutingPolicy(channels=RULES, steps=(EscalationStep(Pool.SKILL, 30), steps[1]))))
    assert h.timers[("wrapup", "anna")] == finished + 30
    assert h.timers[("escalate", "c2")] == finished + 30
    assert h.timers[("inactivity", "anna")] == h.board.managers["anna"].last_heartbeat + 600
    h.tick(20)
    assert h.offered_to("c2") == "anna"


def test_a_reload_that_ends_a_steps_timeout_stops_its_timer():
    h = harness(steps=(EscalationStep(Pool.SKILL, 600), EscalationStep(Pool.ANY, None)))
    h.join(manager("anna"))
    h.send(ev.PresenceSet("anna", Presence.PAUSED, "x"))
    h.arrive(contact("c1"))
    assert ("escalate", "c1") in h.timers
    h.send(ev.PolicyReloaded(RoutingPolicy(steps=(EscalationStep(Pool.SKILL, None),))))
    assert ("escalate", "c1") not in h.timers


def test_device_in_use_makes_a_manager_busy_for_routing():
    h = harness()
    h.join(manager("anna"))
    h.send(ev.DeviceStateChanged("anna", busy=True))
    h.arrive(contact("c1", Channel.CALL))
    assert h.offered_to("c1") is None and h.presence("anna") is Presence.BUSY
    h.send(ev.DeviceStateChanged("anna", busy=False))
    assert h.offered_to("c1") == "anna"


def test_a_timer_that_fires_early_because_the_clock_went_back_is_started_again():
    h = harness(channels=RULES)
    h.join(manager("anna"))
    h.arrive(contact("c1", Channel.CALL))
    due = h.board.contacts["c1"].offer_expires_at
    h.now += 5  # the wall clock was set back: the timer fires, but by the clock it is early
    out = h.send(ev.TimerFired(("offer", "c1")))
    assert h.offered_to("c1") == "anna" and h.presence("anna") is Presence.OFFERED
    assert ev.StartTimer(("offer", "c1"), due) in out
    h.tick(20)
    assert h.presence("anna") is Presence.PAUSED


def test_a_timer_for_something_already_over_does_nothing():
    h = harness(channels=RULES)
    h.join(manager("anna"))
    h.arrive(contact("c1", Channel.CALL))
    h.send(ev.OfferAccepted("c1", "anna"))
    h.now += 100
    out = h.send(ev.TimerFired(("offer", "c1")))
    assert h.presence("anna") is Presence.BUSY and not [c for c in out if isinstance(c, ev.LogTransition)]


def test_a_contact_that_arrives_pinned_goes_back_to_normal_routing_when_the_pin_expires():
    h = harness()
    h.send(ev.ManagerSaved(manager("vera")))
    h.join(manager("anna"))
    h.arrive(contact("c1", pinned_to="vera", pin_expires_at=h.now + 60))
    assert h.offered_to("c1") is None
    h.tick(61)
    assert h.offered_to("c1") == "anna"
