"""Two cluster nodes in one process, each with its own store on one PostgreSQL schema: the
follower's requests are answered by the leader's core, contacts it commits are routed by the
leader, offers reach its panels, and a leader cut from its lock stops dispatching at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest
from cluster_fixtures import Place
from prometheus_client import CollectorRegistry

from acd.cluster import ClusterDispatcher, ClusterSettings
from acd.cluster.leader import dsn, lock_key
from acd.core import events as ev
from acd.core.errors import CoreError
from acd.core.model import Presence
from acd.core.policy import RoutingPolicy
from acd.core.switchboard import Switchboard
from acd.storage import Store, open_store
from tests.core_helpers import contact, manager

POLICY = RoutingPolicy(inactivity_pause=0)


async def node(place: Place, store: Store, name: str) -> ClusterDispatcher:
    d = ClusterDispatcher(
        lambda policy: Switchboard(policy),
        store,
        store,
        ClusterSettings(place.url, name, place.schema),
        POLICY,
        lambda: POLICY,
    )
    await d.start(await store.load_open_contacts(), await store.load_managers())
    return d


@pytest.fixture
async def pair(pg_schema: Place) -> AsyncIterator[tuple[ClusterDispatcher, ClusterDispatcher]]:
    """`(leader, follower)`, each with a store of its own, as two processes would have."""
    first = await open_store(pg_schema.url, schema=pg_schema.schema)
    await first.save_manager(manager("anna", presence=Presence.OFFLINE))
    second = await open_store(pg_schema.url, schema=pg_schema.schema)
    leader = await node(pg_schema, first, "a")
    await asyncio.wait_for(leader.elected.wait(), 15)
    follower = await node(pg_schema, second, "b")
    try:
        yield leader, follower
    finally:
        await follower.stop()
        await leader.stop()
        await first.close()
        await second.close()


async def test_only_one_of_two_nodes_dispatches(pair: tuple[ClusterDispatcher, ClusterDispatcher]) -> None:
    leader, follower = pair
    assert leader.leading and not follower.leading
    assert not follower.elected.is_set()


async def test_a_request_made_on_a_follower_is_handled_by_the_leader_and_its_state_is_read_back(
    pair: tuple[ClusterDispatcher, ClusterDispatcher],
) -> None:
    leader, follower = pair
    await follower.submit(ev.PresenceSet("anna", Presence.AVAILABLE))
    assert leader.board.managers["anna"].presence is Presence.AVAILABLE
    assert follower.board.managers["anna"].presence is Presence.AVAILABLE  # the caller reads what it changed


async def test_a_request_the_core_refuses_raises_on_the_follower_with_the_leaders_code(
    pair: tuple[ClusterDispatcher, ClusterDispatcher],
) -> None:
    leader, follower = pair
    with pytest.raises(CoreError) as on_leader:
        await leader.submit(ev.OfferAccepted("nobody", "anna"))
    with pytest.raises(CoreError) as on_follower:
        await follower.submit(ev.OfferAccepted("nobody", "anna"))
    assert on_follower.value.code == on_leader.value.code


async def test_a_contact_committed_on_a_follower_is_routed_and_its_offer_reaches_the_followers_panels(
    pair: tuple[ClusterDispatcher, ClusterDispatcher],
) -> None:
    leader, follower = pair
    offers: asyncio.Queue[ev.OfferContact] = asyncio.Queue()

    def panel(cmd: ev.Command) -> None:
        if isinstance(cmd, ev.OfferContact):
            offers.put_nowait(cmd)

    follower.subscribe(panel)
    follower.follow(panel)
    await follower.submit(ev.PresenceSet("anna", Presence.AVAILABLE))
    stored, created = await follower._store.create_contact(contact("c1", arrived_at=time.time()))
    assert created
    follower.post(ev.ContactArrived(stored))
    offer = await asyncio.wait_for(offers.get(), 10)
    assert (offer.contact.id, offer.manager.id) == ("c1", "anna")
    assert leader.board.contacts["c1"].offered_to == "anna"
    assert offers.empty()  # heard once, from the leader's notification, not also from its own loop


async def test_a_contact_the_leader_was_never_told_about_is_found_in_the_store(
    pair: tuple[ClusterDispatcher, ClusterDispatcher],
) -> None:
    leader, follower = pair
    await follower.submit(ev.PresenceSet("anna", Presence.AVAILABLE))
    # committed, acknowledged, and then the follower died before announcing it
    await follower._store.create_contact(contact("c2", arrived_at=time.time()))
    async with asyncio.timeout(10):
        while True:  # the leader's poll runs every second, and nobody announces the contact
            if "c2" in leader.board.contacts:
                break
            await asyncio.sleep(0.05)
    assert leader.board.contacts["c2"].offered_to == "anna"


async def test_a_leader_cut_from_its_lock_stops_dispatching_at_once_and_the_follower_takes_over(
    pair: tuple[ClusterDispatcher, ClusterDispatcher],
) -> None:
    leader, follower = pair
    fence = leader.leadership.fence()
    assert fence is not None and await follower.bus.still_holds(fence)
    pid = fence[0]
    admin = await asyncpg.connect(dsn(leader.settings.url))
    try:
        await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await admin.close()
    await asyncio.wait_for(leader.lost.wait(), 10)
    assert not leader.leading and leader._task is None  # the loop is gone: no more commits from here
    await asyncio.wait_for(follower.elected.wait(), 10)
    assert not await follower.bus.still_holds(fence)  # the old leader's commits would be refused
    new_fence = follower.leadership.fence()
    assert new_fence is not None and await follower.bus.still_holds(new_fence)
    await follower.submit(ev.PresenceSet("anna", Presence.AVAILABLE))
    assert follower.board.managers["anna"].presence is Presence.AVAILABLE


async def test_a_leader_that_stops_hands_the_lock_over_after_finishing_its_queue(pg_schema: Place) -> None:
    first = await open_store(pg_schema.url, schema=pg_schema.schema)
    await first.save_manager(manager("anna", presence=Presence.OFFLINE))
    second = await open_store(pg_schema.url, schema=pg_schema.schema)
    leader = await node(pg_schema, first, "a")
    await asyncio.wait_for(leader.elected.wait(), 15)
    follower = await node(pg_schema, second, "b")
    try:
        leader.post(ev.PresenceSet("anna", Presence.AVAILABLE))  # queued, not yet committed
        await leader.stop()
        assert not leader.lost.is_set()
        await asyncio.wait_for(follower.elected.wait(), 10)
        assert follower.board.managers["anna"].presence is Presence.AVAILABLE  # drained before it let go
    finally:
        await follower.stop()
        await first.close()
        await second.close()


async def test_the_metrics_say_which_node_dispatches(pair: tuple[ClusterDispatcher, ClusterDispatcher]) -> None:
    values = []
    for d in pair:
        registry = CollectorRegistry()
        d.export_metrics(registry)
        values.append(registry.get_sample_value("acd_cluster_dispatching"))
    assert values == [1.0, 0.0]


async def test_a_request_made_while_nobody_dispatches_is_answered_by_the_next_dispatcher(pg_schema: Place) -> None:
    store = await open_store(pg_schema.url, schema=pg_schema.schema)
    await store.save_manager(manager("anna", presence=Presence.OFFLINE))
    # something else holds the lock, as a dispatcher that is dying but not yet gone would
    squatter = await asyncpg.connect(dsn(pg_schema.url))
    await squatter.execute("SELECT pg_advisory_lock($1)", lock_key(pg_schema.schema))
    waiting = await node(pg_schema, store, "b")
    try:
        request = asyncio.ensure_future(waiting.submit(ev.PresenceSet("anna", Presence.AVAILABLE)))
        await asyncio.sleep(0.5)  # give a wrong implementation the time to answer without a dispatcher
        assert not request.done() and not waiting.leading
        await squatter.close()  # the lock is free: this node takes over and handles the waiting request
        await asyncio.wait_for(request, 10)
        assert waiting.leading and waiting.board.managers["anna"].presence is Presence.AVAILABLE
    finally:
        if not squatter.is_closed():
            await squatter.close()
        await waiting.stop()
        await store.close()
