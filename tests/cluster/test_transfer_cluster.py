"""Blind transfer in cluster mode: the manager's panel talks to a node that does not hold the
call (behind a load balancer, any node), which passes the request on to the node whose FastAGI
session holds it (acd.cluster.relay, NOTIFY on a real PostgreSQL); that node moves the call by
AMI Redirect on the simulated PBX, and the answer comes back as that node would have given it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from cluster_fixtures import Place

from acd.app import Server, build
from acd.cluster import ClusterSettings, relay
from acd.core import events as ev
from acd.core.model import ContactStatus
from acd.pbxsim import Caller, PbxSim, Press
from acd.storage import open_store
from tests.cluster.test_telephony_cluster import MOSCOW, Pair, nodes, started_pbx, until
from tests.telephony.telephony_harness import DEVICES, telephony_deployment

QUICK_IVR = [Press("1", after=0.05), Press("1", after=0.05), Press("3", after=0.05)]


async def real_speed_node(place: Place, sim: PbxSim, name: str) -> Server:
    """A node whose offers last long enough for a phone at real speed (as tests/telephony/test_transfers.py)."""
    store = await open_store(place.url, schema=place.schema)
    deployment = telephony_deployment(sim, offer_timeout=10.0, ring_time=8.0)
    return await build(deployment, store, demo=True, cluster=ClusterSettings(place.url, name, place.schema))


async def real_speed_pbx() -> PbxSim:
    sim = await started_pbx()
    sim.time_scale = 1.0
    sim.default_prompt = 0.05
    sim.phones[DEVICES["anna"]].talk_for = None  # she stays on the line until the call leaves her
    return sim


@pytest.fixture
async def pair(pg_schema: Place) -> AsyncIterator[Pair]:
    """The follower holds the calls; the manager's panel talks to the dispatching node."""
    async with nodes(pg_schema, await real_speed_pbx(), real_speed_node, "follower") as p:
        yield p


@pytest.fixture
async def held_by_the_leader(pg_schema: Place) -> AsyncIterator[Pair]:
    """The dispatching node holds the calls; the manager's panel talks to the follower."""
    async with nodes(pg_schema, await real_speed_pbx(), real_speed_node, "leader") as p:
        yield p


async def talking_to_anna(pair: Pair, holder: Server) -> tuple[Any, str]:
    """A caller held by `holder`, talking to anna; both nodes see her assigned."""
    offers: asyncio.Queue[ev.OfferContact] = asyncio.Queue()
    pair.leader.dispatcher.subscribe(lambda c: offers.put_nowait(c) if isinstance(c, ev.OfferContact) else None)
    call = pair.sim.call(Caller(number="79161112233", dialled=MOSCOW, steps=list(QUICK_IVR)))
    offer = await asyncio.wait_for(offers.get(), 15)
    assert offer.manager.id == "anna"
    desk = pair.telephony(holder).desk

    async def talking() -> bool:
        held = desk.calls.get(offer.contact.id)
        seen = [server.dispatcher.board.contacts.get(offer.contact.id) for server in (pair.leader, pair.follower)]
        return held is not None and held.state == "talking" and all(c and c.assigned_to == "anna" for c in seen)

    await until(talking, 15)
    return call, offer.contact.id


async def post_transfer(http: TestClient, cid: str, token: str, **body: object) -> tuple[int, Any]:
    resp = await http.post(f"/api/contacts/{cid}/transfer", json=body, headers={"Authorization": f"Bearer {token}"})
    return resp.status, await resp.json()


def redirects(pair: Pair) -> list[dict[str, str]]:
    return [dict(a) for s in pair.sim.ami.all_sessions for a in s.actions if ("Action", "Redirect") in a]


async def test_a_transfer_asked_of_a_node_that_does_not_hold_the_call_is_carried_out_by_the_node_that_does(
    pair: Pair,
) -> None:
    call, cid = await talking_to_anna(pair, pair.follower)
    anna = await pair.leader.store.create_token("manager", "anna")
    async with TestClient(TestServer(pair.leader.app)) as http:  # the panel reaches node a
        status, body = await post_transfer(http, cid, anna, to_manager="nobody")
        assert (status, body["error"]["code"]) == (404, "no_such_manager")  # node b's refusal, as b gives it
        status, body = await post_transfer(http, cid, anna, to_manager="anna")
        assert (status, body["error"]["code"]) == (409, "bad_transfer")
        assert not redirects(pair)
        status, body = await post_transfer(http, cid, anna, to_manager="boris")
    assert status == 200, body
    assert body["id"] == cid and body["status"] in ("waiting", "offered")

    [redirect] = redirects(pair)
    assert redirect["Channel"] == call.channel and redirect["Context"] == "acd-transfer"
    ended = await asyncio.wait_for(pair.telephony(pair.follower).desk.ended.get(), 20)
    assert ended.contact_id == cid and ended.manager_id == "boris"  # boris's phone rang and he talked
    assert not pair.telephony(pair.leader).desk.calls  # node a never held it

    async def finished() -> bool:
        c = await pair.leader.store.get_contact(cid)
        return c is not None and c.status is ContactStatus.FINISHED

    await until(finished)
    lines = [line.split("|")[4] for line in pair.telephony(pair.follower).queue_log.lines]
    assert lines == ["ENTERQUEUE", "CONNECT", "BLINDTRANSFER", "CONNECT", "COMPLETEAGENT"]


async def test_a_transfer_of_a_call_whose_node_is_gone_is_refused_with_a_clear_code(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(relay, "ACK_TIMEOUT", 2.0)  # how long silence takes to mean "gone"; 5 s in service
    _, cid = await talking_to_anna(pair, pair.follower)
    anna = await pair.leader.store.create_token("manager", "anna")
    await pair.follower.close()  # the holder stops: nobody can move the call any more
    pair.running.remove(pair.follower)
    async with TestClient(TestServer(pair.leader.app)) as http:
        status, body = await post_transfer(http, cid, anna, to_manager="boris")
    assert (status, body["error"]["code"]) == (409, "call_holder_unreachable")
    assert "not running" in body["error"]["message"]
    assert not redirects(pair)


async def test_a_call_held_by_the_dispatching_node_is_transferred_from_a_panel_on_a_follower(
    held_by_the_leader: Pair,
) -> None:
    pair = held_by_the_leader
    call, cid = await talking_to_anna(pair, pair.leader)
    anna = await pair.follower.store.create_token("manager", "anna")
    async with TestClient(TestServer(pair.follower.app)) as http:
        status, body = await post_transfer(http, cid, anna, to_team="service")
    assert status == 200, body
    [redirect] = redirects(pair)
    assert redirect["Channel"] == call.channel
    ended = await asyncio.wait_for(pair.telephony(pair.leader).desk.ended.get(), 20)
    assert ended.contact_id == cid and pair.leader.dispatcher.board.managers[ended.manager_id].team == "service"
    assert not pair.telephony(pair.follower).desk.calls
