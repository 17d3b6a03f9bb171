"""A ratings recompute over the store, on SQLite and PostgreSQL: the database hands over
only the leads that count, the ratings are those the old filter in Python gave, a deal
closed while the tables are built is not lost, and the event loop stays free meanwhile."""

from __future__ import annotations

import asyncio
import gc
import random
import time
from dataclasses import fields

import pytest
from api_fixtures import example_deployment, start, stop
from storage_fixtures import Backend

from acd.core.model import Channel, Contact, Manager
from acd.crm.model import Deal, DealStatus
from acd.crm.provider import DealRatings
from acd.crm.ratings import DAY, Estimate, Lead, RatingTable, opportunities
from acd.crm.service import CrmService, rating_params
from acd.storage.crm import CrmStore

NOW = 1_800_000_000.0
AGE = 30 * DAY  # the example deployment's untouched_lead_days
HOT = {"purpose": "purchase", "price_tier": "high", "temperature": "hot"}
TEAMS = {"anna": "sales", "boris": "sales", "vera": "service"}
MANAGERS = {m: Manager(m, team=team) for m, team in TEAMS.items()}


def contact(n: int, manager: str | None = "anna", **kw: object) -> Contact:
    values: dict[str, object] = {"customer_id": f"cu{n}", "assigned_to": manager, "criteria": HOT}
    return Contact(f"k{n}", Channel.WEB, kw.pop("at", NOW - 40 * DAY), **{**values, **kw})  # type: ignore[arg-type]


# (contact, whether ratings count it as a lead)
CASES = [
    (contact(1), True),
    (contact(2, payload={"crm": "new customer", "note": "a\x00b \\u0000 \\\x00"}), True),  # no text holds a NUL
    (contact(3, payload={"routed_by": "repeat", "deal_id": "d1"}), False),
    (contact(4, payload={"routed_by": "repeat"}), False),
    (contact(5, payload={"deal_id": "d2"}), False),
    (contact(6, payload={"routed_by": "external"}), True),
    (contact(7, payload={"deal_id": None}), True),
    (contact(8, payload={"deal_id": ""}), True),
    (contact(9, customer_id=None), False),
    (contact(10, None), False),
    (contact(11, override=True), False),
    (contact(12, at=NOW - AGE), True),  # just old enough: the test is at + age <= now
    (contact(13, at=NOW - AGE + 0.5), False),
    (contact(14, payload={"external": {"deal_id": "x", "routed_by": "repeat"}}), True),  # not the contact's own
]


async def test_the_database_hands_over_only_the_leads_ratings_count(backend: Backend) -> None:
    store = await backend.open()
    try:
        await store.apply([c for c, _ in CASES], [], [], [])
        leads = await CrmStore(store).leads(NOW, AGE)
        assert sorted(lead.contact_id for lead in leads) == sorted(c.id for c, counts in CASES if counts)
        assert Lead("k1", "anna", HOT, NOW - 40 * DAY) in leads
        assert len(await CrmStore(store).leads()) == len(leads) + 1  # any age: the young one too
    finally:
        await store.close()


def a_year(rng: random.Random) -> tuple[list[Contact], list[Deal]]:
    """New customers' contacts of every kind, and deals: some from those contacts, some
    open and untouched for long, some a supervisor's."""
    kinds: list[dict[str, object]] = [
        {},
        {"payload": {"routed_by": "repeat", "deal_id": "x"}},
        {"payload": {"routed_by": "repeat"}},
        {"payload": {"routed_by": "external", "crm": "bitrix24: owner"}},
        {"override": True},
        {"customer_id": None},
    ]
    contacts, deals = [], []
    for n in range(300):
        manager = rng.choice([*TEAMS, None])
        criteria = {**HOT, "price_tier": rng.choice(["low", "mid", "high"])}
        c = contact(n, manager, at=NOW - rng.uniform(0, 400) * DAY, criteria=criteria, **rng.choice(kinds))
        contacts.append(c)
        if manager and rng.random() < 0.4:
            status = rng.choice(list(DealStatus))
            closed = c.arrived_at + rng.uniform(1, 20) * DAY
            deals.append(
                Deal(
                    f"d{n}",
                    c.customer_id or "cu",
                    amount=rng.choice([None, 5000.0, 120000.5]),
                    segment=criteria,
                    owner=manager,
                    status=status,
                    opened_at=c.arrived_at,
                    last_activity=closed,
                    closed_at=None if status is DealStatus.OPEN else closed,
                    contact_id=c.id,
                    override=rng.random() < 0.1,
                )
            )
    return contacts, deals


def the_same(got: Estimate, expected: Estimate) -> None:
    """Equal, floats to the last few bits: the database may hand rows over in another order."""
    for f in fields(Estimate):
        a, b = getattr(got, f.name), getattr(expected, f.name)
        assert a == (pytest.approx(b, rel=1e-12, abs=1e-12) if isinstance(b, float) else b), f.name


async def test_a_recompute_rates_as_the_filter_in_python_did(backend: Backend) -> None:
    contacts, deals = a_year(random.Random(5))
    deployment = example_deployment()
    params = rating_params(deployment)
    # the old path: every contact of a new customer a manager took, filtered here
    old_leads = [
        Lead(c.id, c.assigned_to, c.criteria, c.arrived_at)
        for c in contacts
        if c.customer_id and c.assigned_to and not c.override
        if not (c.payload.get("deal_id") or c.payload.get("routed_by") == "repeat")
    ]
    expected = RatingTable.build(opportunities(deals, old_leads, TEAMS, params, NOW), params, NOW)
    store = await backend.open()
    try:
        await store.apply(contacts, [], [], [])
        repo = CrmStore(store)
        await repo.save_deals(deals)
        crm = CrmService(repo, lambda: deployment, lambda: MANAGERS, DealRatings(params), clock=lambda: NOW)
        report = await crm.recompute()
    finally:
        await store.close()
    got = crm.ratings.table
    assert report["opportunities"] == len(expected) > 100
    assert got.managers() == expected.managers() == set(TEAMS)
    for m, manager in MANAGERS.items():
        assert sorted(got.opportunities_of(m), key=lambda o: o.id) == sorted(
            expected.opportunities_of(m), key=lambda o: o.id
        )
        for segment in [("*", "*", "*"), ("purchase", "low", "hot"), ("purchase", "high", "hot")]:
            the_same(got.estimate(m, manager.team, segment, NOW), expected.estimate(m, manager.team, segment, NOW))
        card = crm.rating_card(manager)
        for point, days in zip(card["trend"], (365, 180, 90, 0), strict=True):
            at = NOW - days * DAY
            back_then = RatingTable.build((o for o in expected._by_id.values() if o.at <= at), params, at)
            e = back_then.estimate(m, manager.team, ("*", "*", "*"), at)
            assert point == {"days_ago": days, "win_rate": round(e.win_rate, 4), "deals": e.deals}


class HeldLeads:
    """The store, with the leads held back until the test lets them go: the deals are read
    by then, so a deal closed in between is one the recompute did not see."""

    def __init__(self, repo: CrmStore) -> None:
        self.repo = repo
        self.asked = asyncio.Event()
        self.release = asyncio.Event()

    def __getattr__(self, name: str) -> object:
        return getattr(self.repo, name)

    async def leads(self, *args: float) -> list[Lead]:
        self.asked.set()
        await self.release.wait()
        return await self.repo.leads(*args)


async def test_a_deal_closed_during_a_recompute_still_counts_after_it(backend: Backend) -> None:
    deployment = example_deployment()
    store = await backend.open()
    try:
        repo = HeldLeads(CrmStore(store))
        await repo.save_deals([Deal("d1", "cu1", owner="anna", opened_at=NOW, last_activity=NOW)])
        ratings = DealRatings(rating_params(deployment), NOW)
        crm = CrmService(repo, lambda: deployment, lambda: MANAGERS, ratings, clock=lambda: NOW)  # type: ignore[arg-type]
        recompute = asyncio.create_task(crm.recompute())
        await repo.asked.wait()
        await crm.close("d1", won=True, amount=1000.0)
        repo.release.set()
        await recompute
    finally:
        await store.close()
    e = crm.estimate(MANAGERS["anna"], {})
    assert (e.deals, e.wins) == (1, 1)


class InMemory:
    """A repository holding a year's deals and leads already: the recompute's own work."""

    def __init__(self, deals: list[Deal], leads: list[Lead]) -> None:
        self.deals, self.all_leads = deals, leads

    async def all_deals(self) -> list[Deal]:
        return self.deals

    async def leads(self, as_of: float | None = None, age: float = 0.0) -> list[Lead]:
        return [lead for lead in self.all_leads if as_of is None or lead.at + age <= as_of]


async def test_the_event_loop_keeps_running_while_the_tables_are_built() -> None:
    rng = random.Random(9)
    deals = [
        Deal(f"d{i}", "cu", amount=1000.0, segment=HOT, owner=rng.choice(list(TEAMS)), status=DealStatus.WON)
        for i in range(5000)
    ]
    leads = [Lead(f"k{i}", rng.choice(list(TEAMS)), HOT, NOW - rng.uniform(31, 365) * DAY) for i in range(25_000)]
    deployment = example_deployment()
    ratings = DealRatings(rating_params(deployment), NOW)
    crm = CrmService(InMemory(deals, leads), lambda: deployment, lambda: MANAGERS, ratings, clock=lambda: NOW)  # type: ignore[arg-type]
    done = asyncio.Event()

    async def longest_gap() -> float:
        """The longest the loop left this coroutine waiting past its 1 ms sleep."""
        longest, last = 0.0, time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            longest, last = max(longest, now - last), now
        return longest

    watcher = asyncio.create_task(longest_gap())
    await asyncio.sleep(0.01)
    # The collector's full passes stop every thread alike, wherever the garbage came from,
    # and grow with the test process's heap: not what this measures.
    gc.disable()
    try:
        started = time.perf_counter()
        report = await crm.recompute()
        took = time.perf_counter() - started
    finally:
        gc.enable()
    done.set()
    gap = await watcher
    assert report["opportunities"] == 30_000
    # Held on the loop, the build is one gap as long as the recompute itself; in a worker
    # thread the loop gets the interpreter back every few milliseconds (sys.getswitchinterval).
    assert gap < took / 4, f"the loop stalled {gap * 1000:.0f} ms of a {took * 1000:.0f} ms recompute"


async def test_the_server_starts_when_the_first_recompute_fails(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A year of history the database cannot read (say, one payload its JSON parser refuses)
    must not keep the server down: offers use the configured proficiency meanwhile."""

    async def unreadable(self: CrmStore, as_of: float | None = None, age: float = 0.0) -> list[Lead]:
        raise ValueError("invalid input syntax for type json")

    monkeypatch.setattr(CrmStore, "leads", unreadable)
    running = await start(backend, example_deployment())
    try:
        status, body = await running.call("GET", "/healthz")
        assert status == 200 and body["db"] is True
        status, _ = await running.call("POST", "/api/leads", json={"name": "Ада", "phone": "+7 916 555-00-03"})
        assert status == 201
    finally:
        await stop(running)
