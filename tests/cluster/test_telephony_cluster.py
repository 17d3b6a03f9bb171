"""Telephony in cluster mode: two nodes in one process on one PostgreSQL schema, one simulated
PBX whose FastAGI target is the follower. The follower holds the call and rings it; the leader
offers it; the once-only work (device states, callbacks) is the dispatching node's."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest
from cluster_fixtures import Place

from acd.app import Server, build
from acd.cluster import ClusterDispatcher, ClusterSettings
from acd.core import events as ev
from acd.core.model import ContactStatus, Presence
from acd.pbxsim import Caller, PbxSim, Phone, Press
from acd.storage import open_store
from acd.telephony import Telephony
from tests.telephony.telephony_harness import DEVICES, telephony_deployment

MOSCOW = "74951234567"  # the example flow's Russian number: no language question


@dataclass
class Pair:
    leader: Server
    follower: Server
    sim: PbxSim
    place: Place
    running: list[Server]

    def telephony(self, server: Server) -> Telephony:
        assert server.telephony is not None
        return server.telephony


async def node(place: Place, sim: PbxSim, name: str) -> Server:
    store = await open_store(place.url, schema=place.schema)
    return await build(
        telephony_deployment(sim), store, demo=True, cluster=ClusterSettings(place.url, name, place.schema)
    )


async def started_pbx() -> PbxSim:
    sim = PbxSim(time_scale=0.02, auth_failure_delay=0.05)
    sim.default_prompt = 0.3
    await sim.start()
    for device in DEVICES.values():
        sim.add_phone(Phone(device, answer_after=0.5, talk_for=2.0))
    return sim


@asynccontextmanager
async def nodes(
    place: Place, sim: PbxSim, make_node: Callable[[Place, PbxSim, str], Awaitable[Server]], holder: str = "follower"
) -> AsyncIterator[Pair]:
    """Node a dispatches, node b follows; Asterisk's FastAGI target (the node holding the calls)
    is `holder`. Closes the nodes, then `sim`."""
    servers: list[Server] = []
    try:
        leader = await make_node(place, sim, "a")
        servers.append(leader)
        await asyncio.wait_for(pair_dispatcher(leader).elected.wait(), 15)
        follower = await make_node(place, sim, "b")
        servers.append(follower)
        held_by = follower if holder == "follower" else leader
        assert held_by.telephony is not None
        sim.agi_target = ("127.0.0.1", held_by.telephony.agi.port)
        for server in servers:
            assert server.telephony is not None
            await asyncio.wait_for(server.telephony.resynced.wait(), 5)
        yield Pair(leader, follower, sim, place, servers)
    finally:
        for server in reversed(servers):
            await server.close()
        await sim.close()


@pytest.fixture
async def pair(pg_schema: Place) -> AsyncIterator[Pair]:
    """Asterisk reaches the follower."""
    async with nodes(pg_schema, await started_pbx(), node) as p:
        yield p


def pair_dispatcher(server: Server) -> ClusterDispatcher:
    assert isinstance(server.dispatcher, ClusterDispatcher)
    return server.dispatcher


async def until(check, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]  # noqa: ASYNC109
    """Polls a condition that no event announces (another node's state, read from the store)."""
    async with asyncio.timeout(timeout):
        while True:
            if await check():
                return
            await asyncio.sleep(0.05)


async def test_a_call_held_by_a_follower_is_offered_by_the_leader_rung_by_the_follower_and_finished(
    pair: Pair,
) -> None:
    leader, follower = pair.leader, pair.follower
    assert pair_dispatcher(leader).leading and not pair_dispatcher(follower).leading
    offers: asyncio.Queue[ev.OfferContact] = asyncio.Queue()
    leader.dispatcher.subscribe(lambda c: offers.put_nowait(c) if isinstance(c, ev.OfferContact) else None)

    call = pair.sim.call(Caller(number="79161112233", dialled=MOSCOW, steps=[Press("1"), Press("1"), Press("3")]))
    offer = await asyncio.wait_for(offers.get(), 10)
    assert offer.manager.id == "anna"  # the best seller for the biggest, hottest purchase
    assert offer.contact.payload["node"] == pair.telephony(follower).desk.node
    ended = await asyncio.wait_for(pair.telephony(follower).desk.ended.get(), 15)
    await asyncio.wait_for(call.ended.wait(), 10)

    assert ended.manager_id == "anna" and ended.contact_id == offer.contact.id
    assert pair.telephony(follower).queue_log.lines and [
        line.split("|")[4] for line in pair.telephony(follower).queue_log.lines
    ] == ["ENTERQUEUE", "CONNECT", "COMPLETEAGENT"]
    # the follower's phone leg was bridged to the caller: the PBX saw the Dial to anna's device
    assert ("DialString", "101") in next(e for e in pair.sim.events if ("Event", "DialBegin") in e)
    assert not pair.telephony(leader).desk.calls  # the leader never held it, never rang it

    async def finished() -> bool:
        c = await leader.store.get_contact(offer.contact.id)
        return c is not None and c.status is ContactStatus.FINISHED

    await until(finished)
    contact = await leader.store.get_contact(offer.contact.id)
    assert contact is not None and contact.assigned_to == "anna"
    await leader.dispatcher.submit(ev.HeartbeatReceived("anna"))  # everything posted so far is handled
    anna = leader.dispatcher.board.managers["anna"]
    assert anna.presence is Presence.AVAILABLE and sum(anna.load.values()) == 0 and anna.offer_contact_id is None
    assert not [c for c in leader.dispatcher.board.contacts.values() if c.status is not ContactStatus.WAITING]


async def test_device_states_become_presence_events_once_from_the_dispatching_node(pair: Pair) -> None:
    leader = pair.leader
    seen: list[ev.Event] = []
    real = pair_dispatcher(leader)
    for server in (pair.leader, pair.follower):
        d = pair_dispatcher(server)
        original = d.post

        def spy(event: ev.Event, original=original) -> None:  # type: ignore[no-untyped-def]
            if isinstance(event, ev.DeviceStateChanged):
                seen.append(event)
            original(event)

        d.post = spy  # type: ignore[method-assign]
    pair.sim.set_device_state(DEVICES["boris"], "INUSE")

    async def busy() -> bool:
        return real.board.managers["boris"].device_busy

    await until(busy)
    assert [e.manager_id for e in seen] == ["boris"]  # the follower's own AMI client saw it too, and kept quiet


async def test_a_callback_requested_on_a_follower_is_scheduled_and_rung_by_the_dispatching_node(pair: Pair) -> None:
    follower_cb = pair.telephony(pair.follower).callbacks
    leader_cb = pair.telephony(pair.leader).callbacks
    customer = "Local/79165550000@acd-outbound"  # asterisk.outbound_dial with the customer's number
    pair.sim.add_phone(Phone(customer, answer_after=0.5, talk_for=1.0))
    cb = await follower_cb.request(phone="79165550000", criteria={"purpose": "purchase"}, requested_at=time.time())
    attempt = await asyncio.wait_for(leader_cb.results.get(), 20)
    assert attempt.callback_id == cb.id and attempt.result == "customer answered"
    assert follower_cb.results.empty()  # nobody dialled it twice


async def test_when_the_dispatching_node_stops_the_follower_takes_over_and_the_waiting_call_still_reaches_a_manager(
    pair: Pair,
) -> None:
    leader, follower = pair.leader, pair.follower
    for mid in list(leader.dispatcher.board.managers):
        await leader.dispatcher.submit(ev.PresenceSet(mid, Presence.OFFLINE))  # nobody to offer it to yet
    call = pair.sim.call(Caller(number="79161112233", dialled=MOSCOW, steps=[Press("1"), Press("1"), Press("3")]))

    async def waiting() -> bool:
        return any(c.status is ContactStatus.WAITING for c in leader.dispatcher.board.contacts.values())

    await until(waiting)
    (contact_id,) = leader.dispatcher.board.contacts
    await leader.close()  # finishes its queue and gives the lock up
    pair.running.remove(leader)
    took_over = pair_dispatcher(follower)
    await asyncio.wait_for(took_over.elected.wait(), 10)
    assert took_over.board.contacts[contact_id].status is ContactStatus.WAITING  # restored from the store

    await follower.dispatcher.submit(ev.PresenceSet("anna", Presence.AVAILABLE))
    ended = await asyncio.wait_for(pair.telephony(follower).desk.ended.get(), 15)
    await asyncio.wait_for(call.ended.wait(), 10)
    assert ended.contact_id == contact_id and ended.manager_id == "anna"
    await follower.dispatcher.submit(ev.HeartbeatReceived("anna"))
    assert contact_id not in took_over.board.contacts  # finished
    anna = took_over.board.managers["anna"]
    assert anna.presence is Presence.AVAILABLE and sum(anna.load.values()) == 0 and anna.offer_contact_id is None
