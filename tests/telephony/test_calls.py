"""A phone call's whole life, end to end: simulated PBX ⇄ FastAGI/AMI ⇄ dispatcher ⇄ core."""

from __future__ import annotations

import asyncio

from telephony_harness import DEVICES, OFFER_TIMEOUT, Harness, closed_now, start_harness

from acd.core import events as ev
from acd.core.model import ContactStatus, Presence
from acd.pbxsim import Caller, HangUp, Press

MOSCOW = "74951234567"  # the flow's by_number: Russian, no language question


async def contact_of(h: Harness, contact_id: str):  # type: ignore[no-untyped-def]
    await h.settle()
    return h.board.contacts.get(contact_id) or await h.server.store.get_contact(contact_id)


async def test_a_caller_answers_the_ivr_and_reaches_the_best_manager(h: Harness) -> None:
    call = h.sim.call(Caller(number="79161112233", dialled=MOSCOW, steps=[Press("1"), Press("1"), Press("3")]))

    offer = await h.command(ev.OfferContact)
    assert offer.contact.criteria == {"temperature": "hot", "purpose": "purchase", "price_tier": "high"}
    assert offer.decision.manager_id == offer.manager.id
    assert offer.manager.id == "anna"  # sales 5: the best seller for the biggest, hottest purchase
    ended = await h.ended_call()
    assert ended.manager_id == "anna" and ended.state == "ended"
    await call.ended.wait()

    contact = await contact_of(h, offer.contact.id)
    assert contact.status is ContactStatus.FINISHED and contact.assigned_to == "anna"
    assert contact.payload["ivr"] == {"temperature": "caller", "purpose": "caller", "price_tier": "caller"}
    assert contact.phone == "79161112233" and contact.language == "ru"
    anna = h.board.managers["anna"]
    assert anna.load.get(contact.channel, 0) == 0 and anna.presence is Presence.AVAILABLE
    assert h.queue_log() == ["ENTERQUEUE", "CONNECT", "COMPLETEAGENT"]
    assert ("DialString", "101") in next(e for e in h.sim.events if ("Event", "DialBegin") in e)


async def test_a_silent_caller_gets_the_defaults(h: Harness) -> None:
    h.sim.call(Caller(dialled=MOSCOW, steps=[]))

    offer = await h.command(ev.OfferContact)
    assert offer.contact.criteria == {"temperature": "cold", "purpose": "purchase", "price_tier": "mid"}
    assert offer.contact.payload["ivr"] == {"temperature": "default", "purpose": "default", "price_tier": "default"}
    await h.ended_call()


async def test_a_manager_who_does_not_answer_is_paused_and_the_call_moves_on(h: Harness) -> None:
    h.sim.phones[DEVICES["anna"]].answer_after = None  # rings, nobody picks up
    h.sim.call(Caller(dialled=MOSCOW, steps=[Press("1"), Press("1"), Press("3")]))

    first = await h.command(ev.OfferContact)
    assert first.manager.id == "anna"
    second = await h.command(ev.OfferContact, timeout=OFFER_TIMEOUT + 3)
    assert second.manager.id != "anna"
    anna = h.board.managers["anna"]
    assert anna.presence is Presence.PAUSED and anna.pause_reason == "missed offer"
    ended = await h.ended_call()
    assert ended.manager_id == second.manager.id
    assert h.queue_log()[:3] == ["ENTERQUEUE", "RINGNOANSWER", "PAUSE"]
    assert "CONNECT" in h.queue_log()


async def test_a_busy_device_is_skipped_without_a_pause(h: Harness) -> None:
    h.sim.phones[DEVICES["anna"]].busy = True
    h.sim.call(Caller(dialled=MOSCOW, steps=[Press("1"), Press("1"), Press("3")]))

    first = await h.command(ev.OfferContact)
    second = await h.command(ev.OfferContact)
    assert first.manager.id == "anna" and second.manager.id != "anna"
    await h.ended_call()
    assert h.board.managers["anna"].presence is not Presence.PAUSED


async def test_a_caller_who_hangs_up_mid_ivr_leaves_nothing_behind(h: Harness) -> None:
    call = h.sim.call(Caller(dialled=MOSCOW, steps=[Press("1"), HangUp(after=0.1)]))
    result = await asyncio.wait_for(call.agi_done, 5)
    assert result.hung_up
    await h.settle()
    assert h.board.contacts == {}
    assert all(m.presence is Presence.AVAILABLE and not m.offer_contact_id for m in h.board.managers.values())


async def test_a_caller_who_hangs_up_while_waiting_is_abandoned_and_nobody_stays_offered(h: Harness) -> None:
    for mid in DEVICES:
        await h.server.dispatcher.submit(ev.PresenceSet(mid, Presence.PAUSED, "lunch"))
    call = h.sim.call(Caller(dialled=MOSCOW, steps=[Press("1"), Press("1"), Press("1")], hangup_after=40))

    ended = await h.ended_call()
    await call.ended.wait()
    contact = await contact_of(h, ended.contact_id)
    assert contact.status is ContactStatus.ABANDONED
    assert h.queue_log() == ["PAUSE"] * len(DEVICES) + ["ENTERQUEUE", "ABANDON"]


async def test_a_caller_who_hangs_up_while_a_phone_rings_frees_that_manager(h: Harness) -> None:
    h.sim.phones[DEVICES["anna"]].answer_after = None
    call = h.sim.call(Caller(dialled=MOSCOW, steps=[Press("1"), Press("1"), Press("3")]))
    offer = await h.command(ev.OfferContact)
    assert offer.manager.id == "anna"
    await h.command(ev.WithdrawOffer, timeout=OFFER_TIMEOUT + 3)  # the offer ran out: missed
    h.sim.hangup_channel(call.leg.channel)  # ...and the caller gives up while the next phone rings
    ended = await h.ended_call()
    contact = await contact_of(h, ended.contact_id)
    assert contact.status in (ContactStatus.ABANDONED, ContactStatus.FINISHED)
    await h.settle()
    assert not any(m.offer_contact_id for m in h.board.managers.values())
    assert not any(m.presence is Presence.OFFERED for m in h.board.managers.values())


async def test_the_acd_down_sends_the_caller_to_the_fallback_queue(h: Harness) -> None:
    h.sim.refuse_agi = True  # Asterisk cannot connect: AGISTATUS=FAILURE, ACD_STATUS empty
    call = h.sim.call(Caller(dialled=MOSCOW))
    result = await asyncio.wait_for(call.agi_done, 5)
    assert result.agi_status == "FAILURE" and result.fallback
    await asyncio.wait_for(call.fallback_taken.wait(), 5)
    fallback = await h.user_event("IvrFallback")
    assert fallback["AgiStatus"] == "FAILURE"


async def test_an_acd_too_slow_to_answer_hands_the_call_back_to_the_fallback(h: Harness) -> None:
    async def stuck(phone: str) -> dict[str, str]:
        await asyncio.Event().wait()  # the database does not answer
        return {}

    h.telephony.desk.known = stuck
    call = h.sim.call(Caller(dialled=MOSCOW))
    result = await asyncio.wait_for(call.agi_done, 10)
    assert result.variables["ACD_STATUS"] == "TIMEOUT" and result.fallback
    await asyncio.wait_for(call.fallback_taken.wait(), 5)


async def test_a_repeat_caller_skips_the_questions_already_answered() -> None:
    h, stop = await start_harness()
    try:
        h.sim.call(Caller(number="79160000001", dialled=MOSCOW, steps=[Press("2"), Press("2"), Press("3")]))
        await h.ended_call()
        again = h.sim.call(Caller(number="79160000001", dialled=MOSCOW, steps=[Press("1")]))
        offer = await h.command(ev.OfferContact, lambda c: c.contact.payload["ivr"].get("purpose") == "known")
        assert offer.contact.criteria == {"temperature": "hot", "purpose": "renewal", "price_tier": "high"}
        assert offer.contact.payload["ivr"] == {"temperature": "caller", "purpose": "known", "price_tier": "known"}
        result = await asyncio.wait_for(again.agi_done, 5)
        assert sum(cmd.startswith("GET DATA") for cmd in result.agi_commands) == 1
    finally:
        await stop()


async def test_out_of_hours_the_caller_is_offered_a_callback_when_we_open() -> None:
    h, stop = await start_harness(calendar=closed_now())
    try:
        call = h.sim.call(Caller(number="79160000002", dialled=MOSCOW, steps=[Press("1")]))
        await call.ended.wait()
        await h.settle()
        assert h.board.contacts == {}
        rows = await h.telephony.tstore.open_callbacks()
        assert len(rows) == 1 and rows[0].phone == "79160000002" and rows[0].source == "closed"
        # stored due at once; the callbacks' loop then finds the office closed and moves it to
        # the opening (on a loaded machine that can come a moment after the call has ended)
        for _ in range(500):  # the store announces nothing: look again for up to 5 s
            row = (await h.telephony.tstore.open_callbacks())[0]
            if row.next_at is not None and row.next_at > h.server.services.clock():
                break
            await asyncio.sleep(0.01)
        assert row.next_at is not None and row.next_at > h.server.services.clock()
    finally:
        await stop()
