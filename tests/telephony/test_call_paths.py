"""The paths around a call's main line, end to end through the simulated PBX: click-to-call from
the panel API, overflow after max_wait, ring stop when an offer moves on, voicemail."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiohttp.test_utils import TestClient, TestServer
from telephony_harness import DEVICES, Harness, closed_now, start_harness

from acd.core import events as ev
from acd.core.model import Channel, ContactStatus, Presence
from acd.pbxsim import Caller, PbxSim, Phone, Press

MOSCOW = "74951234567"
HOT_BIG_PURCHASE = [Press("1"), Press("1"), Press("3")]


async def pause_everyone(h: Harness) -> None:
    for mid in DEVICES:
        await h.server.dispatcher.submit(ev.PresenceSet(mid, Presence.PAUSED, "lunch"))


def index_of(sim: PbxSim, where: Callable[[dict[str, str]], bool]) -> int:
    return next(i for i, e in enumerate(sim.events) if where(dict(e)))


def dial_to(device: str) -> Callable[[dict[str, str]], bool]:
    return lambda e: e.get("Event") == "DialBegin" and e.get("DestChannel", "").startswith(f"{device}-")


# ---- click-to-call ----------------------------------------------------------------------------


async def test_a_manager_clicks_the_number_of_their_contact_and_the_pbx_rings_them_then_the_customer(
    h: Harness,
) -> None:
    customer = h.sim.add_phone(Phone("Local/79161234567@acd-outbound", answer_after=0.2, talk_for=0.5))
    assert customer.device
    async with TestClient(TestServer(h.server.app)) as http:
        resp = await http.post(
            "/api/leads",
            json={"name": "Иван", "phone": "+7 916 123-45-67", "criteria": {"temperature": "hot"}},
            headers={"Idempotency-Key": "c2c-1"},
        )
        assert resp.status in (200, 201), await resp.text()
        lead = (await resp.json())["id"]
        offer = await h.command(ev.OfferContact, lambda c: c.contact.id == lead)
        mine = await h.server.store.create_token("manager", offer.manager.id)
        other = next(mid for mid in DEVICES if mid != offer.manager.id)
        theirs = await h.server.store.create_token("manager", other)

        resp = await http.post(f"/api/contacts/{lead}/call", headers={"Authorization": f"Bearer {theirs}"})
        assert resp.status == 404  # not their contact: nothing is dialled
        resp = await http.post(f"/api/contacts/{lead}/call", headers={"Authorization": f"Bearer {mine}"})
        assert resp.status == 200, await resp.text()
        body = await resp.json()

    assert body["answered"] is True and body["reason"] == "4"
    originates = [a for s in h.sim.ami.all_sessions for a in s.actions if ("Action", "Originate") in a]
    assert len(originates) == 1
    sent = dict(originates[0])
    assert sent["Channel"] == DEVICES[offer.manager.id] and sent["Context"] == "acd-clicktocall"
    assert sent["Async"] == "true"
    variables = [v for k, v in originates[0] if k == "Variable"]
    assert f"ACD_CONTACT={lead}" in variables
    assert "ACD_CUSTOMER_DIAL=Local/79161234567@acd-outbound" in variables
    await asyncio.wait_for(h.sim.wait_event(dial_to("Local/79161234567")), 5)


# ---- overflow after max_wait ----------------------------------------------------------------


async def test_a_caller_waiting_past_max_wait_goes_to_the_fallback_queue() -> None:
    h, stop = await start_harness(max_wait=0.5)
    try:
        await pause_everyone(h)
        call = h.sim.call(Caller(number="79160000011", dialled=MOSCOW, steps=list(HOT_BIG_PURCHASE)))
        ended = await h.ended_call()
        await asyncio.wait_for(call.fallback_taken.wait(), 5)
        contact = await h.server.store.get_contact(ended.contact_id)
        assert contact is not None and contact.status is ContactStatus.ABANDONED
        assert h.queue_log()[-2:] == ["ENTERQUEUE", "EXITWITHTIMEOUT"]
        result = await asyncio.wait_for(call.agi_done, 5)
        assert result.variables["ACD_ACTION"] == "fallback"
        assert any("acd/common/overflow-ru" in c for c in result.agi_commands)
    finally:
        await stop()


async def test_overflow_to_voicemail_keeps_the_message_as_a_callback_contact_in_the_callers_place() -> None:
    h, stop = await start_harness(max_wait=0.5, overflow="voicemail")
    try:
        await pause_everyone(h)
        h.sim.add_phone(Phone("Local/79160000012@acd-outbound", talk_for=0.5))
        steps = [*HOT_BIG_PURCHASE, Press("#", after=4.0, on="RECORD FILE")]
        call = h.sim.call(Caller(number="79160000012", dialled=MOSCOW, steps=steps))
        voicemail = await asyncio.wait_for(h.telephony.desk.voicemails.get(), 5)
        ended = await h.ended_call()
        await call.ended.wait()

        assert voicemail.channel is Channel.CALLBACK and voicemail.phone == "79160000012"
        recording = f"acd/voicemail/{call.leg.channel.uniqueid}.wav"
        assert voicemail.payload["voicemail"]["recording"] == recording
        assert 4.0 <= voicemail.payload["voicemail"]["seconds"] < 8.0  # "#" after 4 s (a loaded machine adds some)
        assert voicemail.payload["from_contact"] == ended.contact_id
        assert voicemail.arrived_at == ended.queued_at  # the caller keeps their place
        assert voicemail.criteria["temperature"] == "hot"
        assert 4.0 <= h.sim.recordings[recording] < 8.0
        old = await h.server.store.get_contact(ended.contact_id)
        assert old is not None and old.status is ContactStatus.ABANDONED
        assert "ABANDON" not in h.queue_log()

        await h.server.dispatcher.submit(ev.PresenceSet("anna", Presence.AVAILABLE))
        offer = await h.command(ev.OfferContact, lambda c: c.contact.id == voicemail.id)
        assert offer.manager.id == "anna" and offer.contact.payload["voicemail"]["recording"] == recording
        result = await asyncio.wait_for(h.telephony.callbacks.results.get(), 5)
        assert result.dial_status == "ANSWER"  # anna rang first, then the caller was called back
    finally:
        await stop()


async def test_overflow_offers_a_callback_by_key_1_that_keeps_the_place() -> None:
    h, stop = await start_harness(max_wait=0.5, overflow="callback")
    try:
        await pause_everyone(h)
        steps = [*HOT_BIG_PURCHASE, Press("1", on="GET DATA")]
        call = h.sim.call(Caller(number="79160000013", dialled=MOSCOW, steps=steps))
        ended = await h.ended_call()
        await call.ended.wait()
        rows = await h.telephony.tstore.open_callbacks()
        assert [(r.phone, r.source, r.requested_at) for r in rows] == [("79160000013", "queue", ended.queued_at)]
        result = await asyncio.wait_for(call.agi_done, 5)
        assert result.variables["ACD_ACTION"] == "hangup" and not result.fallback
    finally:
        await stop()


async def test_overflow_to_a_callback_not_taken_falls_back_to_the_queue() -> None:
    h, stop = await start_harness(max_wait=0.5, overflow="callback")
    try:
        await pause_everyone(h)
        call = h.sim.call(Caller(number="79160000014", dialled=MOSCOW, steps=list(HOT_BIG_PURCHASE)))
        await asyncio.wait_for(call.fallback_taken.wait(), 5)
        assert await h.telephony.tstore.open_callbacks() == []
    finally:
        await stop()


# ---- the phone stops ringing when the offer moves on --------------------------------------------

QUICK_IVR = [Press("1", after=0.05), Press("1", after=0.05), Press("3", after=0.05)]


async def test_a_reassigned_call_stops_ringing_the_first_managers_phone_before_the_next_one_rings() -> None:
    h, stop = await start_harness(time_scale=1.0, offer_timeout=10.0, ring_time=8.0)
    try:
        h.sim.default_prompt = 0.05
        h.sim.phones[DEVICES["anna"]].answer_after = None  # would ring for the whole 8 s
        h.sim.call(Caller(dialled=MOSCOW, steps=list(QUICK_IVR)))
        offer = await h.command(ev.OfferContact)
        assert offer.manager.id == "anna"
        ringing = await asyncio.wait_for(h.sim.wait_event(dial_to(DEVICES["anna"])), 5)

        await h.server.dispatcher.submit(ev.ContactReassigned(offer.contact.id, "boris", "supervisor"))
        stopped = await asyncio.wait_for(
            h.sim.wait_event(lambda e: e.get("Event") == "Hangup" and e.get("Channel") == ringing["DestChannel"]), 3
        )
        assert stopped["Cause"] == "16"
        await asyncio.wait_for(h.sim.wait_event(dial_to(DEVICES["boris"])), 5)
        assert index_of(h.sim, lambda e: e.get("Channel") == ringing["DestChannel"] and e["Event"] == "Hangup") < (
            index_of(h.sim, dial_to(DEVICES["boris"]))
        )
        ended = await h.ended_call(timeout=10)
        assert ended.manager_id == "boris"
        assert h.board.managers["anna"].presence is Presence.AVAILABLE  # a reassign is no missed call
    finally:
        await stop()


async def test_an_expired_offer_has_stopped_ringing_before_the_next_manager_is_rung() -> None:
    h, stop = await start_harness(time_scale=1.0, offer_timeout=2.5, ring_time=8.0)
    try:
        h.sim.default_prompt = 0.05
        h.sim.phones[DEVICES["anna"]].answer_after = None
        h.sim.call(Caller(dialled=MOSCOW, steps=list(QUICK_IVR)))
        first = await h.command(ev.OfferContact)
        ringing = await asyncio.wait_for(h.sim.wait_event(dial_to(DEVICES["anna"])), 5)
        second = await h.command(ev.OfferContact, timeout=6)
        assert first.manager.id == "anna" and second.manager.id != "anna"
        nxt = await asyncio.wait_for(h.sim.wait_event(dial_to(DEVICES[second.manager.id])), 5)
        gone = index_of(h.sim, lambda e: e.get("Event") == "Hangup" and e.get("Channel") == ringing["DestChannel"])
        assert gone < index_of(h.sim, lambda e: e is not None and e.get("DestChannel") == nxt["DestChannel"])
        assert h.board.managers["anna"].pause_reason == "missed offer"
        await h.ended_call(timeout=10)
    finally:
        await stop()


# ---- voicemail out of hours -------------------------------------------------------------------


async def test_out_of_hours_a_caller_who_stays_on_the_line_leaves_a_voicemail_kept_as_work() -> None:
    h, stop = await start_harness(calendar=closed_now())
    try:
        steps = [Press("#", after=2.5, on="RECORD FILE")]
        call = h.sim.call(Caller(number="79160000015", name="Пётр", dialled=MOSCOW, steps=steps))
        voicemail = await asyncio.wait_for(h.telephony.desk.voicemails.get(), 5)
        await call.ended.wait()
        assert voicemail.channel is Channel.CALLBACK and voicemail.customer_name == "Пётр"
        assert voicemail.payload["voicemail"]["recording"] == f"acd/voicemail/{call.leg.channel.uniqueid}.wav"
        stored = await h.server.store.get_contact(voicemail.id)
        assert stored is not None and stored.status.is_open
        assert stored.payload["voicemail"] == voicemail.payload["voicemail"]
        result = await asyncio.wait_for(call.agi_done, 5)
        assert any(c.startswith("RECORD FILE acd/voicemail/") for c in result.agi_commands)
        assert not any(("Event", "UserEvent") in e and ("UserEvent", "Voicemail") in e for e in h.sim.events)
    finally:
        await stop()


async def test_a_voicemail_with_nothing_said_is_not_kept() -> None:
    h, stop = await start_harness(max_wait=0.5, overflow="voicemail", voicemail_max=0.5)
    try:
        await pause_everyone(h)
        call = h.sim.call(Caller(number="79160000016", dialled=MOSCOW, steps=list(HOT_BIG_PURCHASE)))
        await call.ended.wait()
        await h.settle()
        assert h.telephony.desk.voicemails.empty()
        assert not any(c.channel is Channel.CALLBACK for c in h.board.contacts.values())
    finally:
        await stop()


async def test_an_offer_withdrawn_before_asterisk_says_which_channel_rings_stops_it_once_known(h: Harness) -> None:
    from acd.telephony.calls import Call, Offer

    stopped: list[tuple[str, str | None]] = []
    desk = h.telephony.desk
    desk.hangup_channel = lambda channel, server: stopped.append((channel, server))
    call = Call("c-race", "1795000000.7", "PJSIP/trunk-00000007", "79160000017", "sales", "ru", 0.0, server="pbx1")
    call.state, call.ringing = "ringing", Offer("anna", DEVICES["anna"], 0.0)
    desk.calls[call.contact_id], desk.by_uniqueid[call.uniqueid] = call, call

    desk.on_command(ev.WithdrawOffer("c-race", "anna", "reassigned by supervisor"))
    assert stopped == []  # no DialBegin yet: nothing to hang up
    desk.on_dial_begin(call.uniqueid, "PJSIP/101-00000008")
    assert stopped == [("PJSIP/101-00000008", "pbx1")]
    desk.calls.pop(call.contact_id), desk.by_uniqueid.pop(call.uniqueid)
