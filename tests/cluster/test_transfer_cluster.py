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

from acd.cluster import relay
from acd.core import events as ev
from acd.core.model import ContactStatus
from acd.pbxsim import Caller, Press
from tests.cluster.test_telephony_cluster import MOSCOW, Pair, node, pair_dispatcher, started_pbx, until
from tests.telephony.telephony_harness import DEVICES

QUICK_IVR = [Press("1", after=0.05), Press("1", after=0.05), Press("3", after=0.05)]


@pytest.fixture
async def pair(pg_schema: Place) -> AsyncIterator[Pair]:
    """Node a dispatches; node b holds the calls (the PBX's FastAGI target); phones at real speed."""
    sim = await started_pbx()
    sim.time_scale = 1.0
    sim.default_prompt = 0.05
    sim.phones[DEVICES["anna"]].talk_for = None  # she stays on the line until the call leaves her
    leader = await node(pg_schema, sim, "a")
    servers = [leader]
    try:
        await asyncio.wait_for(pair_dispatcher(leader).elected.wait(), 15)
        follower = await node(pg_schema, sim, "b")
        servers.append(follower)
        assert follower.telephony is not None
        sim.agi_target = ("127.0.0.1", follower.telephony.agi.port)
        for server in servers:
            assert server.telephony is not None
            await asyncio.wait_for(server.telephony.resynced.wait(), 5)
        yield Pair(leader, follower, sim, pg_schema, servers)
    finally:
        for server in reversed(servers):
            await server.close()
        await sim.close()


async def talking_to_anna(pair: Pair) -> tuple[Any, str]:
    """A caller held by node b, talking to anna."""
    offers: asyncio.Queue[ev.OfferContact] = asyncio.Queue()
    pair.leader.dispatcher.subscribe(lambda c: offers.put_nowait(c) if isinstance(c, ev.OfferContact) else None)
    call = pair.sim.call(Caller(number="79161112233", dialled=MOSCOW, steps=list(QUICK_IVR)))
    offer = await asyncio.wait_for(offers.get(), 15)
    assert offer.manager.id == "anna"
    desk = pair.telephony(pair.follower).desk

    async def talking() -> bool:
        held = desk.calls.get(offer.contact.id)
        in_a = pair.leader.dispatcher.board.contacts.get(offer.contact.id)
        return held is not None and held.state == "talking" and in_a is not None and in_a.assigned_to == "anna"

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
    call, cid = await talking_to_anna(pair)
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
    _, cid = await talking_to_anna(pair)
    anna = await pair.leader.store.create_token("manager", "anna")
    await pair.follower.close()  # the holder stops: nobody can move the call any more
    pair.running.remove(pair.follower)
    async with TestClient(TestServer(pair.leader.app)) as http:
        status, body = await post_transfer(http, cid, anna, to_manager="boris")
    assert (status, body["error"]["code"]) == (409, "call_holder_unreachable")
    assert "not running" in body["error"]["message"]
    assert not redirects(pair)
