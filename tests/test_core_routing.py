"""The router's policies, queue order and escalation, driven with a hand-held clock."""

from __future__ import annotations

from acd.core import events as ev
from acd.core.model import Channel, ContactStatus, Presence
from acd.core.policy import EscalationStep, Pool, SkipWhen, Strategy, Weights
from tests.core_helpers import contact, harness, manager

VALUE = {"temperature": {"hot": 2.0, "cold": 1.0}, "price_tier": {"high": 3.0, "mid": 2.0, "low": 1.0}}
SKILLED = {"sales": 3}


def test_a_lead_is_offered_at_once_to_an_available_manager_with_an_explanation():
    h = harness(version="v7")
    h.join(manager("anna", skills=SKILLED))
    h.send(ev.ManagerSaved(manager("boris")))
    h.arrive(contact("c1"))
    offer = h.last_offer()
    assert offer.manager.id == "anna"
    d = offer.decision
    assert d.policy_version == "v7" and d.strategy == "best-match"
    assert [c.manager_id for c in d.candidates] == ["anna"]
    assert d.filtered_counts == {"offline": 1}
    assert "anna" in d.summary.lower() or "Anna" in d.summary
    assert h.presence("anna") is Presence.OFFERED
    assert h.board.contacts["c1"].status is ContactStatus.OFFERED


def test_nobody_available_means_the_contact_waits_and_is_offered_when_someone_joins():
    h = harness()
    h.send(ev.ManagerSaved(manager("anna")))
    h.arrive(contact("c1"))
    assert h.offers() == []
    h.send(ev.PresenceSet("anna", Presence.AVAILABLE))
    assert h.last_offer().contact.id == "c1"


def test_valuable_contacts_go_to_the_best_rated_manager():
    h = harness(value_weights=VALUE)
    h.join(manager("star", skills={"sales": 5}), manager("novice", skills={"sales": 1}))
    h.arrive(contact("big", criteria={"temperature": "hot", "price_tier": "high"}))
    assert h.last_offer().manager.id == "star"


def test_a_modest_contact_goes_to_the_matching_manager_keeping_the_star_free():
    h = harness(value_weights=VALUE)
    h.join(manager("star", skills={"sales": 5}), manager("novice", skills={"sales": 1}))
    h.arrive(contact("small", criteria={"temperature": "cold", "price_tier": "low"}))
    offer = h.last_offer()
    assert offer.manager.id == "novice"
    winner = offer.decision.candidates[0]
    assert set(winner.components) >= {"value", "fit", "load"}


def test_equally_good_managers_get_equal_shares_over_the_day():
    h = harness()
    h.join(*(manager(m, skills=SKILLED) for m in ("anna", "boris", "vera")))
    taken = {"anna": 0, "boris": 0, "vera": 0}
    for i in range(30):
        h.arrive(contact(f"c{i}"))
        offer = h.last_offer()
        h.send(ev.OfferAccepted(offer.contact.id, offer.manager.id))
        h.tick(5)
        h.send(ev.WorkFinished(offer.contact.id, offer.manager.id))
        taken[offer.manager.id] += 1
    assert taken == {"anna": 10, "boris": 10, "vera": 10}


def test_longest_idle_breaks_a_tie():
    h = harness(weights=Weights(load=0))
    h.join(manager("anna"))
    h.tick(10)
    h.join(manager("boris"))
    h.arrive(contact("c1"))
    assert h.last_offer().manager.id == "anna"


def test_linear_always_starts_from_the_first_member():
    h = harness(strategy=Strategy.LINEAR)
    h.join(manager("b", order=2), manager("a", order=1), manager("c", order=3))
    for i in range(3):
        h.arrive(contact(f"c{i}"))
        offer = h.last_offer()
        assert offer.manager.id == "a"
        h.send(ev.OfferDeclined(offer.contact.id, "a"))
        h.send(ev.ContactAbandoned(offer.contact.id))


def test_rrmemory_goes_round_the_members_in_order():
    h = harness(strategy=Strategy.RRMEMORY)
    h.join(manager("a", order=1), manager("b", order=2), manager("c", order=3))
    got = []
    for i in range(4):
        h.arrive(contact(f"c{i}"))
        offer = h.last_offer()
        got.append(offer.manager.id)
        h.send(ev.ContactAbandoned(offer.contact.id))
    assert got == ["a", "b", "c", "a"]


def test_leastrecent_picks_who_finished_longest_ago():
    h = harness(strategy=Strategy.LEASTRECENT)
    h.join(manager("a", order=1, last_finished_at=500.0), manager("b", order=2, last_finished_at=100.0))
    h.arrive(contact("c1"))
    assert h.last_offer().manager.id == "b"


def test_fewestcalls_picks_who_took_the_fewest_today():
    h = harness(strategy=Strategy.FEWESTCALLS)
    h.join(manager("a", order=1), manager("b", order=2))
    h.arrive(contact("c1"))
    first = h.last_offer().manager.id
    h.send(ev.OfferAccepted("c1", first))
    h.send(ev.WorkFinished("c1", first))
    h.arrive(contact("c2"))
    assert h.last_offer().manager.id != first


def test_random_is_reproducible_from_the_seed():
    def run(seed: int) -> list[str]:
        h = harness(strategy=Strategy.RANDOM, seed=seed)
        h.join(*(manager(m) for m in "abcdef"))
        got = []
        for i in range(10):
            h.arrive(contact(f"c{i}"))
            got.append(h.last_offer().manager.id)
            h.send(ev.ContactAbandoned(f"c{i}"))
        return got

    assert run(1) == run(1)
    assert run(1) != run(2)


def test_queue_order_is_priority_then_longest_waiting_across_channels():
    h = harness()
    h.send(ev.ManagerSaved(manager("anna", skills=SKILLED)))
    h.arrive(contact("call", Channel.CALL))
    h.tick(1)
    h.arrive(contact("web", Channel.WEB))
    h.tick(1)
    h.arrive(contact("vip", Channel.EMAIL, priority=5))
    assert [c.id for c in h.board.queue(h.now)] == ["vip", "call", "web"]
    h.send(ev.PresenceSet("anna", Presence.AVAILABLE))
    assert h.last_offer().contact.id == "vip"


def test_a_cooling_web_lead_falls_behind_a_later_call():
    from acd.core.policy import ChannelRules

    h = harness(channels={Channel.WEB: ChannelRules(priority_decay_per_hour=1.0)})
    h.send(ev.ManagerSaved(manager("anna")))
    h.arrive(contact("web", Channel.WEB, priority=1))
    h.tick(2 * 3600)
    h.arrive(contact("call", Channel.CALL))
    assert [c.id for c in h.board.queue(h.now)] == ["call", "web"]


def test_required_skills_and_language_filter_candidates():
    h = harness(skills_by_answer={"purpose": {"training": ("training",)}}, steps=(EscalationStep(Pool.SKILL),))
    h.join(
        manager("sales", skills={"sales": 5}), manager("trainer", skills={"training": 2}, languages=frozenset({"ru"}))
    )
    h.arrive(contact("c1", criteria={"purpose": "training"}, language="en"))
    assert h.offers() == []
    h.arrive(contact("c2", criteria={"purpose": "training"}, language="ru"))
    offer = h.last_offer()
    assert offer.manager.id == "trainer"
    assert offer.decision.filtered_counts.get("missing skill") == 1


STEPS = (
    EscalationStep(Pool.PREFERRED, 20),
    EscalationStep(Pool.TEAM, 20),
    EscalationStep(Pool.SKILL, 30),
    EscalationStep(Pool.ANY, None),
)


def test_escalation_waits_for_a_busy_preferred_manager_then_widens_to_the_team():
    h = harness(steps=STEPS)
    h.join(manager("owner", team="sales"))
    h.arrive(contact("hold", Channel.CALL))
    h.send(ev.OfferAccepted("hold", "owner"))
    h.join(manager("mate", team="sales"))
    h.arrive(contact("c1", preferred=("owner",), team="sales"))
    assert h.offered_to("c1") is None  # the owner is on a call: worth waiting for
    h.tick(19)
    assert h.offered_to("c1") is None
    h.tick(1)
    assert h.offered_to("c1") == "mate"
    assert h.last_offer().decision.pool == "team"


def test_escalation_ladder_offers_to_preferred_then_team_then_skill_then_anyone():
    h = harness(steps=STEPS)
    h.join(
        manager("owner", team="sales", skills=SKILLED),
        manager("mate", team="sales", skills=SKILLED),
        manager("skilled", team="service", skills=SKILLED),
        manager("anyone", team="service"),
    )
    # everybody but "anyone" is on a call
    for i, mid in enumerate(("owner", "mate", "skilled")):
        h.arrive(contact(f"hold{i}", Channel.CALL, preferred=(mid,)))
        h.send(ev.OfferAccepted(f"hold{i}", mid))
    assert h.presence("anyone") is Presence.AVAILABLE
    h.arrive(contact("c1", preferred=("owner",), team="sales", required_skills=frozenset({"sales"})))
    assert h.offered_to("c1") is None and h.board.contacts["c1"].step == 0
    h.tick(20)
    assert h.board.contacts["c1"].step == 1 and h.offered_to("c1") is None
    h.tick(20)
    assert h.board.contacts["c1"].step == 2 and h.offered_to("c1") is None
    h.tick(30)
    assert h.offered_to("c1") == "anyone"
    assert h.last_offer().decision.pool == "any"


def test_a_step_whose_pool_has_nobody_staffed_is_skipped_at_once():
    h = harness(steps=STEPS)
    h.send(ev.ManagerSaved(manager("owner", team="sales")))  # offline
    h.join(manager("mate", team="sales"))
    h.arrive(contact("c1", preferred=("owner",), team="sales"))
    assert h.offered_to("c1") == "mate"
    assert h.last_offer().decision.step == 1


def test_the_pool_never_narrows_again_when_the_preferred_manager_returns():
    h = harness(steps=STEPS)
    h.send(ev.ManagerSaved(manager("owner", team="sales")))  # offline: the first step is skipped
    h.join(manager("mate", team="sales"))
    h.arrive(contact("c1", preferred=("owner",), team="sales"))
    assert h.offered_to("c1") == "mate" and h.board.contacts["c1"].step == 1
    h.send(ev.PresenceSet("owner", Presence.AVAILABLE))
    h.send(ev.OfferDeclined("c1", "mate"))
    assert h.offered_to("c1") == "owner"  # the owner is inside the wider ring too
    assert h.board.contacts["c1"].step == 1
    assert h.last_offer().decision.pool == "team"


def test_skip_when_nobody_available_widens_even_if_the_preferred_manager_is_busy():
    steps = (EscalationStep(Pool.PREFERRED, 20, SkipWhen.NOBODY_AVAILABLE), EscalationStep(Pool.ANY))
    h = harness(steps=steps)
    h.join(manager("owner"), manager("mate"))
    h.arrive(contact("hold", Channel.CALL, preferred=("owner",)))
    h.send(ev.OfferAccepted("hold", "owner"))
    h.arrive(contact("c1", preferred=("owner",)))
    assert h.offered_to("c1") == "mate"


class DealRatings:
    """A rating provider standing in for the CRM: fixed figures per manager."""

    def __init__(self, figures: dict[str, tuple[float, int]]) -> None:
        self.figures = figures

    def rating(self, manager, segment, skills):  # type: ignore[no-untyped-def]
        from acd.core.ratings import Rating

        score, deals = self.figures[manager.id]
        return Rating(score=score, expected_value=score * 1000, deals=deals, source="deals")


def test_ratings_from_the_provider_decide_who_gets_a_valuable_contact():
    from acd.core.policy import RoutingPolicy
    from acd.core.switchboard import Switchboard
    from tests.core_helpers import Harness

    h = Harness(Switchboard(RoutingPolicy(value_weights=VALUE), DealRatings({"a": (0.2, 40), "b": (0.6, 40)})))
    h.join(manager("a"), manager("b"))
    h.arrive(contact("c1", criteria={"temperature": "hot", "price_tier": "high"}))
    offer = h.last_offer()
    assert offer.manager.id == "b"
    assert offer.decision.candidates[0].components["deals"] == 40


def test_a_small_exploration_share_goes_to_a_manager_without_rated_deals():
    from acd.core.policy import RoutingPolicy
    from acd.core.switchboard import Switchboard
    from tests.core_helpers import Harness

    ratings = DealRatings({"veteran": (0.6, 50), "newcomer": (0.3, 0)})
    h = Harness(Switchboard(RoutingPolicy(weights=Weights(exploration=0.2, load=0), seed=3), ratings))
    h.join(manager("veteran"), manager("newcomer"))
    got = []
    for i in range(200):
        h.arrive(contact(f"c{i}", criteria={"temperature": "hot", "price_tier": "high"}))
        got.append(h.offered_to(f"c{i}"))
        h.send(ev.ContactAbandoned(f"c{i}"))
    share = got.count("newcomer") / len(got)
    assert 0.1 < share < 0.3
    explored = [c for c in h.log if isinstance(c, ev.LogDecision) and c.decision.manager_id == "newcomer"]
    assert all("exploration" in d.decision.candidates[0].components for d in explored)


def test_a_shadow_policy_decides_beside_the_live_one_without_acting():
    from acd.core.policy import ShadowPolicy

    h = harness(strategy=Strategy.LINEAR, shadow=ShadowPolicy("cand-1", Strategy.RRMEMORY))
    h.join(manager("a", order=1), manager("b", order=2))
    picks = []
    for i in range(4):
        h.arrive(contact(f"c{i}"))
        d = h.last_offer().decision
        picks.append((d.manager_id, d.shadow.manager_id if d.shadow else None))
        h.send(ev.ContactAbandoned(f"c{i}"))
    assert [live for live, _ in picks] == ["a", "a", "a", "a"]  # the live policy alone acts
    assert [shadow for _, shadow in picks] == ["a", "b", "a", "b"]
    assert "shadow rrmemory vcand-1 would pick b" in h.offers()[1].decision.summary


def test_the_explanation_shows_the_winners_rating_interval_when_it_comes_from_deals():
    from acd.core.policy import RoutingPolicy
    from acd.core.ratings import Rating
    from acd.core.switchboard import Switchboard
    from tests.core_helpers import Harness

    class Interval:
        def rating(self, manager, segment, skills):  # type: ignore[no-untyped-def]
            return Rating(score=0.4, expected_value=400, deals=25, source="deals", low=0.3, high=0.5)

    h = Harness(Switchboard(RoutingPolicy(), Interval()))
    h.join(manager("a"))
    h.arrive(contact("c1"))
    d = h.last_offer().decision
    assert d.candidates[0].components["rating_low"] == 0.3
    assert "rating 0.40 [0.30, 0.50] from 25 deal(s)" in d.summary
    assert d.candidates[0].score == round(
        sum(v for k, v in d.candidates[0].components.items() if k in ("value", "fit", "load")), 6
    )


def test_a_contact_can_bring_its_own_wait_for_the_preferred_ring():
    h = harness(steps=STEPS)
    h.join(manager("owner", team="sales"))
    h.arrive(contact("hold", Channel.CALL))
    h.send(ev.OfferAccepted("hold", "owner"))  # the owner is on a call: worth waiting for
    h.join(manager("mate", team="sales"))
    h.arrive(contact("c1", preferred=("owner",), team="sales", first_wait=60))
    h.tick(59)
    assert h.offered_to("c1") is None  # the stage says a minute, not the policy's 20 s
    h.tick(1)
    assert h.offered_to("c1") == "mate"


def test_a_contact_that_ends_without_a_finish_is_explained_in_the_decision_log_with_its_reason():
    h = harness()
    h.join(manager("a"))
    h.arrive(contact("c1", Channel.CALL))
    h.arrive(contact("c2", Channel.CALL))  # waits: a has room for one call
    h.send(ev.OfferAccepted("c1", "a"))
    h.send(ev.ContactAbandoned("c2", "node b:4573 gone"))
    h.send(ev.ContactAbandoned("c1", "node b:4573 gone"))  # a talked call: finished, not abandoned
    ends = [c.decision for c in h.log if isinstance(c, ev.LogDecision) and c.decision.kind == "end"]
    assert [(d.contact_id, d.manager_id, d.summary) for d in ends] == [
        ("c2", None, "ended: node b:4573 gone"),
        ("c1", None, "ended: node b:4573 gone"),
    ]
    assert h.board.managers["a"].load.get(Channel.CALL, 0) == 0


def test_a_burst_of_arrivals_routed_in_one_pass_gets_the_offers_it_would_get_one_by_one():
    def offers(together: bool) -> tuple[list[tuple[str, str]], set[str]]:
        h = harness()
        h.join(manager("anna", skills=SKILLED), manager("boris", skills=SKILLED))
        h.send(ev.ManagerSaved(manager("vera", skills=SKILLED)))  # staffed later: offline now
        burst = [contact(f"c{i}") for i in range(4)]
        if together:
            h.arrive_together(*burst)
        else:
            for c in burst:
                h.arrive(c)
        waiting = {cid for cid, c in h.board.contacts.items() if c.status is ContactStatus.WAITING}
        return [(o.contact.id, o.manager.id) for o in h.offers()], waiting

    assert offers(together=True) == offers(together=False)
    assert offers(together=True)[1] == {"c2", "c3"}


def test_in_a_burst_routed_in_one_pass_the_more_urgent_contact_is_offered_first():
    h = harness()
    h.join(manager("anna", skills=SKILLED))
    h.arrive_together(contact("calm", priority=0), contact("urgent", priority=10))
    assert [o.contact.id for o in h.offers()] == ["urgent"]
    assert h.board.contacts["calm"].status is ContactStatus.WAITING


def test_a_contact_nobody_in_its_team_can_take_does_not_hold_back_another_teams_contact():
    """Routing learns once per pass that nobody can take a kind of contact; at the team
    step the kind includes the team (and the preferred managers)."""
    steps = (EscalationStep(Pool.TEAM, 20), EscalationStep(Pool.ANY))
    h = harness(steps=steps)
    h.join(manager("anna", team="t0", skills=SKILLED), manager("boris", team="t1", skills=SKILLED))
    h.arrive(contact("first", team="t0"))  # anna is offered it: staffed, not available
    assert h.offered_to("first") == "anna"
    h.arrive_together(contact("t0-lead", team="t0"), contact("t1-lead", team="t1"))
    assert h.offered_to("t1-lead") == "boris"
    assert h.board.contacts["t0-lead"].status is ContactStatus.WAITING
