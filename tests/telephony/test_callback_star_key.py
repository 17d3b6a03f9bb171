"""`*` while waiting in the queue: the caller is called back instead, keeping their place.

The caller and the phones are the simulated PBX's (real FastAGI and AMI sockets)."""

from __future__ import annotations

import asyncio

from telephony_harness import DEVICES, Harness

from acd.core import events as ev
from acd.core.model import Channel, Presence
from acd.pbxsim import Caller, Phone, Press

MOSCOW = "74951234567"  # the flow's by_number: Russian, no language question
CALLER = "79165551234"


async def test_a_caller_who_presses_star_in_the_queue_is_called_back_with_their_original_place(h: Harness) -> None:
    for mid in DEVICES:
        await h.server.dispatcher.submit(ev.PresenceSet(mid, Presence.PAUSED, "lunch"))
    h.sim.add_phone(Phone(f"Local/{CALLER}@acd-outbound", talk_for=0.5))  # the caller, when called back
    steps = [Press("1"), Press("1"), Press("1"), Press("*", on="WAIT FOR DIGIT")]
    h.sim.call(Caller(number=CALLER, dialled=MOSCOW, steps=steps))

    ended = await h.ended_call()
    await h.settle()
    assert ended.contact_id not in h.board.contacts  # the call itself is over: nothing waits for it
    [cb] = [cb for cb in await h.telephony.tstore.open_callbacks() if cb.source == "queue"]
    assert cb.phone == CALLER and cb.requested_at == ended.queued_at
    assert dict(cb.criteria) == {"temperature": "hot", "purpose": "purchase", "price_tier": "low"}  # the IVR's

    await h.server.dispatcher.submit(ev.PresenceSet("anna", Presence.AVAILABLE, None))
    offer = await h.command(ev.OfferContact, lambda c: c.contact.channel is Channel.CALLBACK)
    assert offer.contact.id == cb.contact_id and offer.manager.id == "anna"
    assert offer.contact.arrived_at == cb.requested_at  # their place in the queue, not a new one
    result = await asyncio.wait_for(h.telephony.callbacks.results.get(), 5)
    assert result.dial_status == "ANSWER"
    row = await h.telephony.tstore.get_callback(cb.id)
    assert row is not None and row.status == "done"
