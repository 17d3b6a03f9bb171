"""A manager passes a live call on (blind transfer), end to end: panel API → AMI Redirect of the
caller out of the bridge → the ACD holds the caller again → the new manager's phone rings."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from telephony_harness import DEVICES, Harness, start_harness

from acd.core import events as ev
from acd.core.model import ContactStatus, Presence
from acd.pbxsim import Caller, Press

MOSCOW = "74951234567"
QUICK_IVR = [Press("1", after=0.05), Press("1", after=0.05), Press("3", after=0.05)]


async def connected_call(h: Harness) -> tuple[Any, Any]:
    """A caller talking to anna (whose phone stays up until the call leaves her)."""
    h.sim.default_prompt = 0.05
    h.sim.phones[DEVICES["anna"]].talk_for = None
    call = h.sim.call(Caller(dialled=MOSCOW, steps=list(QUICK_IVR)))
    offer = await h.command(ev.OfferContact)
    assert offer.manager.id == "anna"
    await asyncio.wait_for(h.sim.wait_event(lambda e: e.get("Event") == "BridgeEnter"), 5)
    async with asyncio.timeout(5):
        while h.telephony.desk.calls[offer.contact.id].state != "talking":
            await h.settle()
    return call, offer


async def transfer(h: Harness, http: TestClient, contact_id: str, token: str, **body: object) -> Any:
    resp = await http.post(
        f"/api/contacts/{contact_id}/transfer", json=body, headers={"Authorization": f"Bearer {token}"}
    )
    return resp.status, await resp.json()


async def test_a_manager_transfers_a_call_to_a_colleague_whose_phone_then_rings() -> None:
    h, stop = await start_harness(time_scale=1.0, offer_timeout=10.0, ring_time=8.0)
    try:
        call, offer = await connected_call(h)
        cid = offer.contact.id
        anna_leg = next(
            e["Channel"]
            for e in map(dict, h.sim.events)
            if e.get("Event") == "BridgeEnter" and "PJSIP/101" in e["Channel"]
        )
        anna = await h.server.store.create_token("manager", "anna")
        boris = await h.server.store.create_token("manager", "boris")
        supervisor = await h.server.store.create_token("supervisor", None)
        async with TestClient(TestServer(h.server.app)) as http:
            status, body = await transfer(h, http, cid, boris, to_manager="vera")
            assert status == 404  # not boris's call
            status, body = await transfer(h, http, cid, anna, to_manager="nobody")
            assert (status, body["error"]["code"]) == (404, "no_such_manager")
            status, body = await transfer(h, http, cid, anna, to_manager="anna")
            assert (status, body["error"]["code"]) == (409, "bad_transfer")
            assert not any(("Action", "Redirect") in a for s in h.sim.ami.all_sessions for a in s.actions)
            status, body = await transfer(h, http, cid, anna, to_manager="boris")
            assert status == 200, body
            assert body["status"] in ("waiting", "offered")
            second = await h.command(ev.OfferContact, lambda c: c.contact.id == cid)
            assert second.manager.id == "boris"
            ended = await h.ended_call(timeout=10)
            await h.settle()
            resp = await http.get(f"/api/decisions?contact_id={cid}", headers={"Authorization": f"Bearer {supervisor}"})
            decisions = (await resp.json())["decisions"]

        assert ended.manager_id == "boris"
        await call.ended.wait()
        redirect = next(a for s in h.sim.ami.all_sessions for a in s.actions if ("Action", "Redirect") in a)
        assert dict(redirect)["Channel"] == call.channel and dict(redirect)["Context"] == "acd-transfer"
        gone = next(i for i, e in enumerate(h.sim.events) if ("Event", "Hangup") in e and ("Channel", anna_leg) in e)
        rings = next(
            i
            for i, e in enumerate(h.sim.events)
            if ("Event", "DialBegin") in e and dict(e).get("DestChannel", "").startswith("PJSIP/102-")
        )
        assert gone < rings  # anna's leg was hung up before boris's phone rang
        await h.settle()
        contact = h.board.contacts.get(cid) or await h.server.store.get_contact(cid)
        assert contact is not None and contact.status is ContactStatus.FINISHED and contact.assigned_to == "boris"
        assert "transfer" in [d["kind"] for d in decisions]
        assert h.queue_log() == ["ENTERQUEUE", "CONNECT", "BLINDTRANSFER", "CONNECT", "COMPLETEAGENT"]
        assert h.board.managers["anna"].load.get(offer.contact.channel, 0) == 0
        assert h.board.managers["anna"].presence is Presence.AVAILABLE
    finally:
        await stop()


async def test_a_call_transferred_to_a_team_rings_someone_in_that_team() -> None:
    h, stop = await start_harness(time_scale=1.0, offer_timeout=10.0, ring_time=8.0)
    try:
        _, offer = await connected_call(h)
        anna = await h.server.store.create_token("manager", "anna")
        async with TestClient(TestServer(h.server.app)) as http:
            status, body = await transfer(h, http, offer.contact.id, anna, to_team="service")
            assert status == 200, body
        second = await h.command(ev.OfferContact, lambda c: c.contact.id == offer.contact.id)
        assert h.board.managers[second.manager.id].team == "service"
        ended = await h.ended_call(timeout=10)
        assert ended.manager_id == second.manager.id
    finally:
        await stop()


async def test_a_transfer_of_a_call_not_connected_is_refused_and_changes_nothing(h: Harness) -> None:
    h.sim.phones[DEVICES["anna"]].answer_after = None
    h.sim.call(Caller(dialled=MOSCOW, steps=[Press("1"), Press("1"), Press("3")]))
    offer = await h.command(ev.OfferContact)
    anna = await h.server.store.create_token("manager", "anna")
    async with TestClient(TestServer(h.server.app)) as http:
        status, body = await transfer(h, http, offer.contact.id, anna, to_manager="boris")
    assert status == 404 and body["error"]["code"] == "no_such_contact"  # offered, not hers yet
    assert not any(("Action", "Redirect") in a for s in h.sim.ami.all_sessions for a in s.actions)
