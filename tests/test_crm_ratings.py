"""Ratings from closed deals: the Beta-Binomial shrinkage with known numbers, decay,
untouched leads, overrides, coarser levels, and recovering the true order of managers."""

from __future__ import annotations

import random

import pytest

from acd.core.model import Manager
from acd.crm.model import Customer, Deal, DealStatus, Vacation
from acd.crm.provider import DealRatings
from acd.crm.ratings import DAY, Lead, Opportunity, RatingParams, RatingTable, beta_cdf, beta_ppf, opportunities
from acd.crm.routing import StageRule, route_repeat

SEG = ("purchase", "mid", "hot")
FLAT = RatingParams(segment_keys=(), half_life_days=0, prior_strength=10)


def opp(
    i: int, manager: str, won: bool, *, team: str = "sales", seg: tuple[str, ...] = SEG, at: float = 0.0
) -> Opportunity:
    return Opportunity(f"{manager}-{i}", manager, team, seg, won, 1000.0 if won else 0.0, at)


def test_the_posterior_mean_is_the_beta_binomial_formula_with_known_numbers() -> None:
    # One manager, 3 wins of 4, no segments, k = 10:
    #   p_all = (1 + 3)/(2 + 4) = 2/3;  p_team = (10·2/3 + 3)/14 = 29/42;  p_m = (10·29/42 + 3)/14 = 416/588
    table = RatingTable.build([opp(i, "a", i < 3, seg=()) for i in range(4)], FLAT, 0.0)
    e = table.estimate("a", "sales", (), 0.0)
    assert e.company_win_rate == pytest.approx(2 / 3)
    assert e.prior_win_rate == pytest.approx(29 / 42)
    assert e.win_rate == pytest.approx(416 / 588)
    assert e.deals == 4 and e.wins == 3
    assert e.low < e.win_rate < e.high
    assert e.avg_amount == pytest.approx(1000.0)
    assert e.expected_value == pytest.approx(e.win_rate * 1000.0)


def test_beta_quantiles_and_cdf_match_known_values() -> None:
    assert beta_ppf(0.05, 1, 1) == pytest.approx(0.05, abs=1e-9)
    assert beta_ppf(0.5, 2, 2) == pytest.approx(0.5, abs=1e-9)
    assert beta_cdf(0.3, 2, 5) == pytest.approx(0.579825, abs=1e-6)
    assert beta_cdf(0.5, 30, 70) > 0.999  # a win rate of 0.3 with 100 deals is surely below 0.5


def test_two_lucky_wins_stay_below_sixty_wins_out_of_a_hundred() -> None:
    opps = [opp(i, "lucky", True) for i in range(2)]
    opps += [opp(i, "steady", i < 60) for i in range(100)]
    opps += [opp(i, "others", i < 60) for i in range(200)]  # the team wins 30%
    table = RatingTable.build(opps, RatingParams(half_life_days=0), 0.0)
    lucky = table.estimate("lucky", "sales", SEG, 0.0)
    steady = table.estimate("steady", "sales", SEG, 0.0)
    assert lucky.win_rate < steady.win_rate
    assert lucky.high - lucky.low > 2 * (steady.high - steady.low)  # and says it knows less


def test_a_deal_one_half_life_old_weighs_half() -> None:
    params = RatingParams(segment_keys=(), half_life_days=100)
    table = RatingTable.build([opp(1, "a", True, seg=(), at=0.0)], params, 0.0)
    e = table.estimate("a", "sales", (), 100 * DAY)
    assert e.effective_deals == pytest.approx(0.5)
    assert e.effective_wins == pytest.approx(0.5)
    assert e.deals == 1


def test_recent_results_outweigh_old_ones() -> None:
    params = RatingParams(segment_keys=(), half_life_days=90)
    now = 365 * DAY
    improved = [opp(i, "improved", False, seg=(), at=0) for i in range(30)]
    improved += [opp(100 + i, "improved", True, seg=(), at=now) for i in range(30)]
    declined = [opp(i, "declined", True, seg=(), at=0) for i in range(30)]
    declined += [opp(100 + i, "declined", False, seg=(), at=now) for i in range(30)]
    table = RatingTable.build(improved + declined, params, now)
    assert table.estimate("improved", "sales", (), now).win_rate > 0.7
    assert table.estimate("declined", "sales", (), now).win_rate < 0.3


def test_synthetic_deals_recover_the_true_order_of_managers() -> None:
    # Known win rates per manager; high-tier deals are half as likely to close for everyone.
    rng = random.Random(7)
    truth = {"m1": 0.15, "m2": 0.25, "m3": 0.35, "m4": 0.45, "m5": 0.55, "m6": 0.65}
    segments = [(p, t, "hot") for p in ("purchase", "renewal") for t in ("low", "high")]
    opps = []
    for m, rate in truth.items():
        for i in range(1000):
            seg = rng.choice(segments)
            won = rng.random() < rate * (0.5 if seg[1] == "high" else 1.0)
            opps.append(Opportunity(f"{m}-{i}", m, "sales", seg, won, 1000.0, 0.0))
    table = RatingTable.build(opps, RatingParams(half_life_days=0), 0.0)
    for seg in [("*", "*", "*"), ("purchase", "high", "hot"), ("renewal", "low", "hot")]:
        ranked = sorted(truth, key=lambda m: table.estimate(m, "sales", seg, 0.0).win_rate)
        assert ranked == list(truth), seg
    high = table.estimate("m6", "sales", ("purchase", "high", "hot"), 0.0)
    low = table.estimate("m6", "sales", ("purchase", "low", "hot"), 0.0)
    assert high.win_rate == pytest.approx(0.325, abs=0.06) and low.win_rate == pytest.approx(0.65, abs=0.06)


def test_a_manager_with_few_deals_in_a_segment_is_rated_on_a_coarser_level() -> None:
    params = RatingParams(half_life_days=0, min_level_deals=8, segment_order=("purpose", "price_tier", "temperature"))
    opps = [opp(i, "a", i % 2 == 0, seg=("purchase", "low", "cold")) for i in range(40)]
    opps += [opp(100 + i, "a", True, seg=("purchase", "high", "hot")) for i in range(3)]
    e = RatingTable.build(opps, params, 0.0).estimate("a", "sales", ("purchase", "high", "hot"), 0.0)
    assert e.level == ("purchase", "*", "*")
    assert e.deals == 43


def test_untouched_open_deals_and_leads_without_deals_count_as_lost_and_overrides_do_not_count() -> None:
    params = RatingParams(untouched_lead_days=30)
    now = 100 * DAY
    deals = [
        Deal("won", "c", amount=500.0, owner="a", status=DealStatus.WON, closed_at=10 * DAY, segment={"purpose": "x"}),
        Deal("fresh", "c", owner="a", last_activity=90 * DAY),
        Deal("stale", "c", owner="a", last_activity=20 * DAY),
        Deal("pinned", "c", owner="a", status=DealStatus.WON, amount=9e9, closed_at=5 * DAY, override=True),
        Deal("from-lead", "c", owner="a", status=DealStatus.LOST, closed_at=50 * DAY, contact_id="k2"),
    ]
    leads = [Lead("k1", "a", {}, 10 * DAY), Lead("k2", "a", {}, 10 * DAY), Lead("k3", "a", {}, 95 * DAY)]
    got = {o.id: o for o in opportunities(deals, leads, {"a": "sales"}, params, now)}
    assert set(got) == {"won", "stale", "from-lead", "contact:k1"}
    assert got["won"].won and got["won"].amount == 500.0 and got["won"].segment == ("x", "", "")
    assert not got["stale"].won and got["stale"].at == 50 * DAY and got["stale"].why == "untouched deal"
    assert got["contact:k1"].why == "lead without deal"


def test_closing_a_deal_counted_untouched_replaces_the_loss() -> None:
    table = RatingTable(FLAT)
    table.upsert(Opportunity("d1", "a", "sales", (), False, 0.0, 0.0, "untouched deal"))
    table.upsert(Opportunity("d1", "a", "sales", (), True, 100.0, 1.0))
    e = table.estimate("a", "sales", (), 1.0)
    assert (e.deals, e.wins) == (1, 1)


def test_the_provider_falls_back_to_proficiency_until_a_deal_exists_then_rates_everyone_from_deals() -> None:
    ratings = DealRatings(RatingParams())
    anna = Manager("anna", team="sales", skills={"sales": 5})
    newbie = Manager("newbie", team="sales", skills={"sales": 1})
    assert ratings.rating(anna, SEG, frozenset({"sales"})).source == "proficiency"
    ratings.update([opp(i, "anna", i < 8) for i in range(10)], 0.0)
    ratings.update([opp(i, "others", i < 50) for i in range(100)], 0.0)
    r = ratings.rating(anna, SEG, frozenset({"sales"}))
    assert r.source.startswith("deals") and r.deals == 10
    assert ratings.rating(newbie, SEG, frozenset()).deals == 0
    assert ratings.rating(newbie, SEG, frozenset()).score < r.score


def test_a_repeat_customer_goes_to_the_stage_owner_or_to_their_substitute_on_vacation() -> None:
    customer = Customer("c1", account_manager="anna")
    deal = Deal("d1", "c1", owner="anna", stage="delivery", stage_owner="egor", last_activity=1.0)
    stages = {"delivery": StageRule("delivery", "logistics", "team"), "approval": StageRule("approval", "sales")}
    r = route_repeat(customer, [deal], stages, [], 10.0)
    assert (r.preferred, r.team, r.deal_id) == (("egor",), "logistics", "d1")
    away = [Vacation(1, "egor", 0.0, 100.0, "fedor"), Vacation(2, "fedor", 0.0, 100.0, "gleb")]
    assert route_repeat(customer, [deal], stages, away, 10.0).preferred == ("gleb",)
    assert route_repeat(customer, [deal], stages, away, 200.0).preferred == ("egor",)  # back from vacation
    approval = Deal("d2", "c1", owner="boris", stage="approval", last_activity=5.0)
    r = route_repeat(customer, [deal, approval], stages, [], 10.0)
    assert (r.preferred, r.team) == (("boris",), "sales")  # the deal that moved last, its owner
    r = route_repeat(Customer("c2", account_manager="vera", pinned_to="anna"), [], stages, [], 10.0)
    assert r.preferred == ("anna", "vera") and r.override


def test_a_cards_trend_is_what_a_table_built_back_then_would_say_to_the_bit() -> None:
    rng = random.Random(3)
    params = RatingParams(half_life_days=90, segment_order=("price_tier",))
    now = 400 * DAY
    segments = [("purchase", "mid", "hot"), ("renewal", "low", "cold"), ("*", "*", "hot"), ("*", "mid", "*")]
    opps = [
        Opportunity(
            f"o{i}",
            rng.choice(["anna", "boris", "vera"]),
            rng.choice(["sales", "service", None]),
            rng.choice(segments),
            rng.random() < 0.4,
            rng.choice([0.0, 1000.0, 2500.5]),
            rng.uniform(0, now + 5 * DAY),  # a few dated after `now`, as an import may
        )
        for i in range(600)
    ]
    table = RatingTable.build(opps, params, now)

    def built_back_then(manager: str, team: str | None, at: float) -> object:
        past = RatingTable.build((o for o in table._by_id.values() if o.at <= at), params, at)
        return past.estimate(manager, team, ("*", "*", "*"), at)

    points = [now - days * DAY for days in (365, 180, 90, 0)]
    for manager, team in [("anna", "sales"), ("boris", None), ("vera", "service"), ("nobody", "sales")]:
        assert [table.overall_then(manager, team, at) for at in points] == [
            built_back_then(manager, team, at) for at in points
        ]
    table.upsert(Opportunity("o1", "anna", "sales", SEG, True, 10.0, now - 200 * DAY))  # kept figures go stale
    table.discard("o2")
    assert [table.overall_then("anna", "sales", at) for at in points] == [
        built_back_then("anna", "sales", at) for at in points
    ]


def test_a_managers_opportunities_follow_upserts_and_discards_newest_first() -> None:
    table = RatingTable.build([opp(i, "anna", i % 2 == 0, at=float(i % 3)) for i in range(6)], FLAT, 0.0)
    table.upsert(opp(0, "anna", True, at=5.0))
    table.upsert(Opportunity("anna-1", "boris", "sales", SEG, True, 1.0, 1.0))  # handed to boris
    table.discard("anna-2")
    table.discard("nobody-1")
    assert [o.id for o in table.opportunities_of("anna")] == ["anna-0", "anna-5", "anna-4", "anna-3"]
    assert [o.id for o in table.opportunities_of("boris")] == ["anna-1"]
    table.discard("anna-1")
    assert table.managers() == {"anna"} and table.opportunities_of("boris") == []
