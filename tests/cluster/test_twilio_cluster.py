"""Twilio in cluster mode: two nodes on one PostgreSQL schema behind "a load balancer" — the
test sends each webhook of a call to the other node than the one before — carry a Twilio call
from the IVR to the hang-up, and a callback rung through Twilio's REST API.

Twilio's side is played by the test: its REST API is a local stand-in (`twilio_fixtures`, an
aiohttp server on 127.0.0.1) because the real Twilio cloud is unreachable from here; the
webhooks are signed with the twilio library's RequestValidator and checked for real."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer
from api_fixtures import Running
from cluster_fixtures import Place
from twilio_fixtures import OUR_NUMBER, TwilioStandIn, hook, local, next_of, queue_a_call, twilio_deployment, twiml

from acd.app import build
from acd.cluster import ClusterDispatcher, ClusterSettings
from acd.config import Deployment
from acd.core import events as ev
from acd.core.model import ContactStatus, Presence
from acd.storage import open_store
from acd.telephony.api import CALLBACKS


@dataclass
class Office:
    nodes: list[Running]  # nodes[0] dispatches
    twilio: TwilioStandIn
    balancer: Iterator[Running]

    def next(self) -> Running:
        """The node the load balancer picks for the next request: each in turn."""
        return next(self.balancer)

    @property
    def leader(self) -> Running:
        return self.nodes[0]


async def running_node(place: Place, deployment: Deployment, name: str) -> Running:
    store = await open_store(place.url, schema=place.schema)
    server = await build(deployment, store, demo=True, cluster=ClusterSettings(place.url, name, place.schema))
    http = TestServer(server.app, host="127.0.0.1", port=0)
    await http.start_server()
    admin = await store.create_token("admin", None)
    supervisor = await store.create_token("supervisor", None)
    return Running(server, http, ClientSession(), admin, supervisor)


def dispatcher(r: Running) -> ClusterDispatcher:
    assert isinstance(r.server.dispatcher, ClusterDispatcher)
    return r.server.dispatcher


@pytest.fixture
async def office(pg_schema: Place) -> AsyncIterator[Office]:
    twilio = TwilioStandIn()
    deployment = twilio_deployment(await twilio.start(), callback_backoff=0.2)
    nodes: list[Running] = []
    try:
        nodes.append(await running_node(pg_schema, deployment, "a"))
        await asyncio.wait_for(dispatcher(nodes[0]).elected.wait(), 15)
        nodes.append(await running_node(pg_schema, deployment, "b"))
        yield Office(nodes, twilio, itertools.cycle(nodes))
    finally:
        for r in reversed(nodes):
            await r.session.close()
            await r.http.close()
            await r.server.close()
        await twilio.close()


async def until_stored(r: Running, contact_id: str, status: ContactStatus, timeout: float = 15.0) -> None:  # noqa: ASYNC109
    async with asyncio.timeout(timeout):
        while True:
            c = await r.server.store.get_contact(contact_id)
            if c is not None and c.status is status:
                return
            await asyncio.sleep(0.05)


async def test_a_twilio_call_whose_webhooks_alternate_between_two_nodes_is_queued_offered_connected_and_finished(
    office: Office,
) -> None:
    call = {"CallSid": "CA" + "7" * 32, "From": "+79161234567", "To": OUR_NUMBER}
    enqueue = (await queue_a_call(office.next, call)).find("Enqueue")
    assert enqueue is not None
    wait_status, wait = await hook(office.next(), enqueue.get("waitUrl", ""), call)
    assert wait_status == 200 and twiml(wait).find("Play") is not None

    # the dispatching node offers the call and moves it to /connect through the REST API
    sid, update = await next_of(office.twilio.updates, 15)
    assert sid == call["CallSid"]
    connect = local(update["Url"])
    assert connect.startswith("/twilio/voice/connect")
    [contact_id] = [v.split("=")[1] for v in connect.split("?")[1].split("&") if v.startswith("contact=")]
    # Twilio fetches /connect at once; it reaches the node that is not dispatching, whose read
    # copy of the queue may not have the offer yet: it must still dial the manager
    status, body = await hook(office.nodes[1], connect, call)
    dial = twiml(body).find("Dial")
    assert status == 200 and dial is not None, body
    assert 10 <= int(dial.get("timeout", "0")) <= 20  # what is left of the committed 20 s offer
    number = dial.find("Number")
    assert number is not None and number.get("url")

    status, body = await hook(office.leader, number.get("url", ""), {**call, "CallSid": "CA" + "8" * 32})
    assert status == 200 and twiml(body).find("Hangup") is None  # the manager answered: bridged
    await until_stored(office.leader, contact_id, ContactStatus.ASSIGNED)

    # the call ends: Dial's action and the caller's status callback, each to the other node
    status, body = await hook(office.nodes[1], dial.get("action", ""), {**call, "DialCallStatus": "completed"})
    assert status == 200
    status, _ = await hook(office.leader, "/twilio/voice/status", {**call, "CallStatus": "completed"})
    assert status == 200
    await until_stored(office.leader, contact_id, ContactStatus.FINISHED)
    await office.leader.settle()
    manager = office.leader.server.dispatcher.board.managers
    assert all(sum(m.load.values()) == 0 and m.offer_contact_id is None for m in manager.values())
    assert office.twilio.updates.empty()  # one REST move: no withdrawal, no second offer


async def test_a_twilio_callback_asked_of_one_node_is_rung_by_the_dispatching_node_and_its_webhooks_reach_it_from_any(
    office: Office,
) -> None:
    follower, leader = office.nodes[1], office.leader
    status, cb = await follower.call("POST", "/api/callbacks", json={"phone": "+7 916 555-00-00", "name": "Иван"})
    assert status == 201, cb
    created = await next_of(office.twilio.created, 15)  # rung by the dispatching node, once
    status, body = await hook(follower, local(created["Url"]), {"CallSid": created["Sid"], "CallStatus": "in-progress"})
    assert status == 200
    dial = twiml(body).find("Dial")
    assert dial is not None, body  # the follower passed the answer on to the node ringing it
    number = dial.find("Number")
    assert number is not None and number.text == "+79165550000"
    leg = created["Sid"]
    status, body = await hook(follower, dial.get("action", ""), {"CallSid": leg, "DialCallStatus": "completed"})
    assert status == 200 and twiml(body).find("Hangup") is not None
    attempt = await next_of(leader.server.app[CALLBACKS].results, 15)
    assert attempt.dial_status == "ANSWER"
    status, _ = await hook(follower, local(created["StatusCallback"]), {"CallSid": leg, "CallStatus": "completed"})
    assert status == 200

    status, shown = await follower.call("GET", f"/api/callbacks/{cb['id']}", follower.supervisor)
    assert status == 200 and shown["status"] == "done"
    assert [(a["attempt"], a["dial_status"]) for a in shown["attempts_log"]] == [(1, "ANSWER")]
    await until_stored(leader, str(cb["contact_id"]), ContactStatus.FINISHED)
    assert office.twilio.calls_created == 1  # the follower never rang it too
    assert follower.server.app[CALLBACKS].results.empty()


async def test_a_caller_who_hangs_up_before_the_dispatching_node_heard_of_the_call_is_abandoned(
    office: Office, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The follower's note that it queued a call travels apart from its events: here it is
    lost altogether, and the hang-up reaches the dispatching node first."""
    a, b = office.nodes
    for mid in list(a.server.dispatcher.board.managers):
        await a.server.dispatcher.submit(ev.PresenceSet(mid, Presence.PAUSED, "lunch"))
    monkeypatch.setattr(dispatcher(b), "_announce", lambda contact: None)
    gone = {"CallSid": "CA" + "5" * 32, "From": "+79165550000", "To": OUR_NUMBER}
    await queue_a_call(b, gone)
    (queued,) = await b.server.store.list_contacts("waiting", limit=10)
    assert queued.id not in a.server.dispatcher.board.contacts
    status, _ = await hook(b, "/twilio/voice/status", {**gone, "CallStatus": "completed"})
    assert status == 200
    await until_stored(a, queued.id, ContactStatus.ABANDONED)
    assert queued.id not in a.server.dispatcher.board.contacts  # and it is not picked up again later


async def test_calls_waiting_when_the_dispatching_node_stops_are_abandoned_or_offered_and_connected_by_the_next_one(
    office: Office, pg_schema: Place
) -> None:
    a, b = office.nodes
    for mid in list(a.server.dispatcher.board.managers):
        await a.server.dispatcher.submit(ev.PresenceSet(mid, Presence.PAUSED, "lunch"))
    call = {"CallSid": "CA" + "6" * 32, "From": "+79161234567", "To": OUR_NUMBER}
    await queue_a_call(office.next, call)
    gone = {"CallSid": "CA" + "9" * 32, "From": "+79160000000", "To": OUR_NUMBER}
    await queue_a_call(office.next, gone)
    queued = {c.phone: c for c in await a.server.store.list_contacts("waiting", limit=10)}
    waiting, hung_up = queued[call["From"]], queued[gone["From"]]
    # a caller hangs up while waiting; the status callback reaches the node that does not dispatch
    status, _ = await hook(b, "/twilio/voice/status", {**gone, "CallStatus": "completed"})
    assert status == 200
    await until_stored(a, hung_up.id, ContactStatus.ABANDONED)

    office.nodes.remove(a)  # node a stops (and gives the lock up); node c joins the balancer
    await a.session.close()
    await a.http.close()
    await a.server.close()
    await asyncio.wait_for(dispatcher(b).elected.wait(), 15)
    c = await running_node(pg_schema, b.server.deployment, "c")
    office.nodes.append(c)
    assert not dispatcher(c).leading

    await b.server.dispatcher.submit(ev.PresenceSet("anna", Presence.AVAILABLE))
    sid, update = await next_of(office.twilio.updates, 15)  # node b, dispatching now, moves the call
    assert sid == call["CallSid"] and f"contact={waiting.id}" in update["Url"] and "manager=anna" in update["Url"]
    status, body = await hook(c, local(update["Url"]), call)
    dial = twiml(body).find("Dial")
    assert status == 200 and dial is not None, body
    number = dial.find("Number")
    assert number is not None
    status, body = await hook(b, number.get("url", ""), {**call, "CallSid": "CA" + "5" * 32})
    assert status == 200 and twiml(body).find("Hangup") is None
    status, _ = await hook(c, "/twilio/voice/status", {**call, "CallStatus": "completed"})
    assert status == 200
    await until_stored(b, waiting.id, ContactStatus.FINISHED)
    stored = await b.server.store.get_contact(waiting.id)
    assert stored is not None and stored.assigned_to == "anna"
