"""Node liveness and missed offers, with two nodes in one process on one PostgreSQL schema and
the simulated PBX over TCP. The follower (B) holds the calls (the PBX's FastAGI target) and
reaches PostgreSQL for everything cluster-related — its liveness lock, its listening
connection, the event table — through a cuttable TCP proxy (tests/reliability/tcp_proxy.py),
so a test can make it vanish from the database while its FastAGI sessions go on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import pytest
from cluster_fixtures import Place

from acd.app import Server, build
from acd.cluster import ClusterDispatcher, ClusterSettings
from acd.cluster.liveness import Absences
from acd.core import events as ev
from acd.core.model import ContactStatus, Presence
from acd.pbxsim import Caller, PbxSim, Phone, Press
from acd.storage import open_store
from acd.telephony import Telephony
from tests.reliability.tcp_proxy import CuttableProxy
from tests.telephony.telephony_harness import DEVICES, telephony_deployment

MOSCOW = "74951234567"  # the example flow's Russian number: no language question
KEYS = [Press("1"), Press("1"), Press("3")]  # a hot purchase: anna is the best for it


@dataclass
class Pair:
    leader: Server
    holder: Server  # holds the calls; its cluster connections go through `proxy`
    sim: PbxSim
    proxy: CuttableProxy

    @property
    def lead(self) -> ClusterDispatcher:
        assert isinstance(self.leader.dispatcher, ClusterDispatcher)
        return self.leader.dispatcher

    @property
    def held(self) -> ClusterDispatcher:
        assert isinstance(self.holder.dispatcher, ClusterDispatcher)
        return self.holder.dispatcher

    def telephony(self, server: Server) -> Telephony:
        assert server.telephony is not None
        return server.telephony

    @property
    def node(self) -> str:
        name = self.telephony(self.holder).desk.node
        assert name is not None
        return name

    async def only_anna(self) -> None:
        for mid in self.lead.board.managers:
            if mid != "anna":
                await self.lead.submit(ev.PresenceSet(mid, Presence.OFFLINE))


def through(url: str, port: int) -> str:
    parts = urlsplit(url)
    user = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    return urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{port}"))


async def until(check: Callable[[], Awaitable[bool] | bool], timeout: float = 20.0) -> None:  # noqa: ASYNC109
    """Polls what no event announces here (another node's state, a lock PostgreSQL dropped)."""
    async with asyncio.timeout(timeout):
        while True:
            result = check()
            if await result if not isinstance(result, bool) else result:
                return
            await asyncio.sleep(0.05)


async def make_pair(place: Place, grace: float, offer_timeout: float = 2.0) -> tuple[Pair, list[Server]]:
    sim = PbxSim(time_scale=0.02, auth_failure_delay=0.05)
    sim.default_prompt = 0.3
    await sim.start()
    for device in DEVICES.values():
        sim.add_phone(Phone(device, answer_after=0.5, talk_for=None))  # talks until hung up
    host = urlsplit(place.url)
    proxy = CuttableProxy(host.hostname or "127.0.0.1", host.port or 5432)
    await proxy.start()
    deployment = telephony_deployment(sim, offer_timeout=offer_timeout)
    servers: list[Server] = []
    leader = await build(
        deployment,
        await open_store(place.url, schema=place.schema),
        demo=True,
        cluster=ClusterSettings(place.url, "a", place.schema, grace),
    )
    servers.append(leader)
    assert isinstance(leader.dispatcher, ClusterDispatcher)
    await asyncio.wait_for(leader.dispatcher.elected.wait(), 15)
    holder = await build(
        deployment,
        await open_store(place.url, schema=place.schema),  # its store is not what this test cuts
        demo=True,
        cluster=ClusterSettings(through(place.url, proxy.port), "b", place.schema, grace),
    )
    servers.append(holder)
    pair = Pair(leader, holder, sim, proxy)
    sim.agi_target = ("127.0.0.1", pair.telephony(holder).agi.port)
    for server in servers:
        await asyncio.wait_for(pair.telephony(server).resynced.wait(), 5)
    assert pair.held.node_lock is not None
    await asyncio.wait_for(pair.held.node_lock.held.wait(), 10)
    return pair, servers


@pytest.fixture
async def running(pg_schema: Place) -> AsyncIterator[Callable[..., Awaitable[Pair]]]:
    made: list[tuple[Pair, list[Server]]] = []

    async def make(grace: float, offer_timeout: float = 2.0) -> Pair:
        made.append(await make_pair(pg_schema, grace, offer_timeout))
        return made[-1][0]

    try:
        yield make
    finally:
        for pair, servers in made:
            pair.proxy.restore()
            for server in reversed(servers):
                await server.close()
            await pair.proxy.close()
            await pair.sim.close()


async def talking_and_waiting(pair: Pair) -> tuple[str, str]:
    """One call held by B talking with anna, one waiting behind it: their contact ids."""
    await pair.only_anna()
    pair.sim.call(Caller(number="79161110001", dialled=MOSCOW, steps=KEYS))
    board = pair.lead.board

    def assigned() -> bool:
        return any(c.status is ContactStatus.ASSIGNED for c in board.contacts.values())

    await until(assigned)
    pair.sim.call(Caller(number="79161110002", dialled=MOSCOW, steps=KEYS))

    def one_waiting() -> bool:
        return any(c.status is ContactStatus.WAITING for c in board.contacts.values())

    await until(one_waiting)
    talking = next(c.id for c in board.contacts.values() if c.status is ContactStatus.ASSIGNED)
    waiting = next(c.id for c in board.contacts.values() if c.status is ContactStatus.WAITING)
    assert {board.contacts[cid].payload["node"] for cid in (talking, waiting)} == {pair.node}
    return talking, waiting


def test_a_node_is_gone_only_once_it_has_been_missing_for_the_grace_period() -> None:
    absences = Absences(grace=5.0)
    assert absences.gone({"b:1", "c:1"}, {"c:1"}, now=100.0) == set()
    assert absences.gone({"b:1", "c:1"}, {"c:1"}, now=104.9) == set()
    assert absences.gone({"b:1", "c:1"}, set(), now=105.0) == {"b:1"}  # c only just went missing
    assert absences.gone({"b:1", "c:1"}, {"b:1"}, now=109.0) == set()  # b is back: its count starts over
    assert absences.gone({"c:1"}, set(), now=110.0) == {"c:1"}
    assert absences.gone(set(), set(), now=111.0) == set() and absences.since == {}  # holds nothing: forgotten


async def test_the_calls_of_a_node_gone_past_the_grace_period_are_ended_as_hung_up_and_the_manager_freed(
    running: Callable[..., Awaitable[Pair]],
) -> None:
    pair = await running(grace=1.5)
    talking, waiting = await talking_and_waiting(pair)
    pair.proxy.sever()  # B vanishes from the database: PostgreSQL ends its sessions, and its lock

    def both_ended() -> bool:
        return not {talking, waiting} & pair.lead.board.contacts.keys()

    await until(both_ended, 30)
    await pair.lead.submit(ev.HeartbeatReceived("anna"))  # everything posted so far is handled
    anna = pair.lead.board.managers["anna"]
    assert sum(anna.load.values()) == 0 and anna.offer_contact_id is None
    # the talk itself goes on in the PBX's bridge, which needs no FastAGI session: her phone is
    # in use, so she counts as busy by its device state (not by a contact) until it hangs up
    assert anna.presence is Presence.BUSY and anna.device_busy
    ended_talk, ended_wait = [await pair.leader.store.get_contact(cid) for cid in (talking, waiting)]
    assert ended_talk is not None and ended_talk.status is ContactStatus.FINISHED and ended_talk.assigned_to == "anna"
    assert ended_wait is not None and ended_wait.status is ContactStatus.ABANDONED
    (why,) = [d for d in await pair.leader.store.list_decisions(contact_id=waiting) if d.kind == "end"]
    assert why.summary.startswith(f"ended: node {pair.node} gone") and why.manager_id is None
    lines = [line.split("|") for line in pair.telephony(pair.leader).queue_log.lines]
    assert [(line[1], line[4]) for line in lines] == [(str(ended_wait.payload["uniqueid"]), "ABANDON")]
    caller_leg = next(name for name, leg in pair.sim.legs.items() if leg.bridged is not None and "trunk" in name)
    pair.sim.hangup_channel(pair.sim.legs[caller_leg].channel)
    await until(lambda: pair.lead.board.managers["anna"].presence is Presence.AVAILABLE)
    print("\nLIVENESS grace=1.5 s calls_ended=2 open_after=0 manager_free_after_hangup=anna")


async def test_a_node_back_within_the_grace_period_keeps_its_calls(
    running: Callable[..., Awaitable[Pair]],
) -> None:
    pair = await running(grace=60.0)
    talking, waiting = await talking_and_waiting(pair)
    pair.proxy.sever()
    await until(lambda: pair.node in pair.lead.absences.since)  # the dispatching node saw it missing
    pair.proxy.restore()
    assert pair.held.node_lock is not None
    await asyncio.wait_for(pair.held.node_lock.held.wait(), 20)
    await until(lambda: pair.node not in pair.lead.absences.since)  # ...and back
    assert pair.lead.board.contacts[talking].status is ContactStatus.ASSIGNED
    assert pair.lead.board.contacts[waiting].status is ContactStatus.WAITING

    caller_leg = next(name for name, leg in pair.sim.legs.items() if leg.bridged is not None and "trunk" in name)
    pair.sim.hangup_channel(pair.sim.legs[caller_leg].channel)  # the talk ends: anna takes the waiting call
    ended = [await asyncio.wait_for(pair.telephony(pair.holder).desk.ended.get(), 15)]
    assert ended[0].contact_id == talking

    def waiting_answered() -> bool:
        c = pair.lead.board.contacts.get(waiting)
        return c is not None and c.status is ContactStatus.ASSIGNED and c.assigned_to == "anna"

    await until(waiting_answered)


async def test_an_offer_sent_while_the_holding_node_was_not_listening_still_rings_the_manager(
    running: Callable[..., Awaitable[Pair]],
) -> None:
    pair = await running(grace=60.0, offer_timeout=30.0)
    for mid in list(pair.lead.board.managers):
        await pair.lead.submit(ev.PresenceSet(mid, Presence.OFFLINE))
    pair.sim.call(Caller(number="79161110003", dialled=MOSCOW, steps=KEYS))

    def waiting() -> bool:
        return any(c.status is ContactStatus.WAITING for c in pair.lead.board.contacts.values())

    await until(waiting)
    (contact_id,) = pair.lead.board.contacts
    offers: asyncio.Queue[ev.OfferContact] = asyncio.Queue()
    pair.lead.subscribe(lambda c: offers.put_nowait(c) if isinstance(c, ev.OfferContact) else None)

    pair.proxy.sever()  # B's listening connection is down...
    await pair.lead.submit(ev.PresenceSet("anna", Presence.AVAILABLE))  # ...when the offer is made
    offer = await asyncio.wait_for(offers.get(), 10)
    assert offer.contact.id == contact_id and offer.manager.id == "anna"

    async def offer_kept() -> bool:
        return any(
            body.get("type") == "OfferContact" and body["contact"]["id"] == contact_id
            for _, body in await pair.lead.bus.effects_after(0)
        )

    await until(offer_kept)  # sent (and lost for B) before B listens again
    assert pair.held.effects.caught_up == 0
    pair.proxy.restore()

    def answered() -> bool:
        c = pair.lead.board.contacts.get(contact_id)
        return c is not None and c.status is ContactStatus.ASSIGNED and c.assigned_to == "anna"

    await until(answered, 20)  # rung by B from the offer it read back: the first offer, no miss
    assert pair.held.effects.caught_up >= 1
    assert pair.lead.board.managers["anna"].missed_in_row == 0
    assert ("DialString", "101") in next(e for e in pair.sim.events if ("Event", "DialBegin") in e)
