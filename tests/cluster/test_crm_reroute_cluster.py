"""A vacation's midnight on a cluster of two nodes sharing one PostgreSQL schema: both read the
vacations then, but only the node that dispatches routes the waiting contacts again, once (the
other's contacts are a read copy, and what it submitted would reach the same core twice)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from cluster_fixtures import Place
from sqlalchemy.ext.asyncio import create_async_engine

from acd.cluster import ClusterDispatcher, ClusterSettings
from acd.config import Deployment, load_deployment
from acd.core import events as ev
from acd.core.model import Presence
from acd.core.switchboard import Switchboard
from acd.crm.provider import DealRatings
from acd.crm.rerouting import Rerouting
from acd.crm.service import CrmService, rating_params
from acd.storage import Store, open_store
from acd.storage import tables as t
from acd.storage.crm import CrmStore
from tests.core_helpers import contact, manager

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "acd.example.yaml"
BEFORE_MIDNIGHT = 2.0  # seconds of real time until the nodes' clock reaches the site's midnight


async def test_only_the_dispatching_node_routes_waiting_contacts_again_at_a_vacations_midnight(
    pg_schema: Place,
) -> None:
    deployment = load_deployment(EXAMPLE, environ={})
    zone = ZoneInfo(deployment.tz)
    tomorrow = datetime.now(zone).date() + timedelta(days=1)
    shift = datetime(tomorrow.year, tomorrow.month, tomorrow.day, tzinfo=zone).timestamp() - BEFORE_MIDNIGHT
    shift -= time.time()

    def clock() -> float:
        return time.time() + shift

    stores = [await open_store(pg_schema.url, schema=pg_schema.schema) for _ in range(2)]
    for m in ("boris", "vera"):  # offline: the contact waits, and only its routing changes
        await stores[0].save_manager(manager(m, presence=Presence.OFFLINE, team="sales"))
    nodes: list[ClusterDispatcher] = []
    running: list[AsyncIterator[None]] = []
    try:
        for i, store in enumerate(stores):
            nodes.append(await node(pg_schema, store, f"n{i}"))
            if i == 0:
                await asyncio.wait_for(nodes[0].elected.wait(), 15)
        leader, follower = nodes
        crms = [crm_of(deployment, store, n, clock) for store, n in zip(stores, nodes, strict=True)]
        customer = await crms[0].create_customer("ООО Ромашка", ["+7 916 950-00-01"], account_manager="boris")
        waiting = contact(
            "c1",
            arrived_at=time.time(),
            customer_id=customer.id,
            preferred=("boris",),
            team="sales",
            payload={"routed_by": "repeat", "crm": "account manager boris"},
        )
        stored, _ = await stores[0].create_contact(waiting)
        await leader.submit(ev.ContactArrived(stored))
        async with asyncio.timeout(10):
            while True:  # the follower's read copy has it: it could route it again
                if "c1" in follower.board.contacts:
                    break
                await asyncio.sleep(0.05)
        v = await crms[1].add_vacation("boris", tomorrow, tomorrow + timedelta(days=3), "vera")

        for crm, n in zip(crms, nodes, strict=True):
            crm.rerouting = Rerouting(crm, n, clock)
            running.append(crm.rerouting.running(None))
            await anext(running[-1])
        async with asyncio.timeout(BEFORE_MIDNIGHT + 10):
            while True:
                if leader.board.contacts["c1"].preferred[:1] == ("vera",):
                    break
                await asyncio.sleep(0.05)
        await asyncio.sleep(1.5)  # time enough for a second node's re-routing to come through the bus
        decisions = await stores[0].list_decisions("c1")
        reroutes = [d.summary for d in decisions if d.kind == "reroute"]
        assert len(reroutes) == 1 and f"vacation {v.id} of boris, substitute vera, begun" in reroutes[0], reroutes
        assert await handed_over_by(pg_schema, "n1") == []  # the follower left it to the dispatching node
    finally:
        for gen in running:
            await anext(gen, None)
        for n in reversed(nodes):
            await n.stop()
        for store in stores:
            await store.close()


async def node(place: Place, store: Store, name: str) -> ClusterDispatcher:
    policy = load_deployment(EXAMPLE, environ={}).policy
    d = ClusterDispatcher(
        lambda p: Switchboard(p), store, store, ClusterSettings(place.url, name, place.schema), policy, lambda: policy
    )
    await d.start(await store.load_open_contacts(), await store.load_managers())
    return d


async def handed_over_by(place: Place, node: str) -> list[object]:
    """The events node `node` handed to the dispatching node (acd.cluster.bus), as stored."""
    engine = create_async_engine(place.url, connect_args={"server_settings": {"search_path": str(place.schema)}})
    try:
        async with engine.connect() as conn:
            query = sa.select(t.cluster_events.c.body).where(t.cluster_events.c.origin == node)
            return list((await conn.execute(query)).scalars())
    finally:
        await engine.dispose()


def crm_of(deployment: Deployment, store: Store, n: ClusterDispatcher, clock: Callable[[], float]) -> CrmService:
    return CrmService(
        CrmStore(store),
        lambda: deployment,
        lambda: n.board.managers,
        DealRatings(rating_params(deployment), 0.0),
        clock,
    )
