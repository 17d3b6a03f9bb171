"""The customer leg's outcome can reach us before the Originate's.

Recorded (originate_callback A, G, H): the originated channel runs [acd-callback] as soon as the
manager answers, and the dialplan's events (its first UserEvent, the customer leg's DialBegin) come
*before* OriginateResponse; in G (customer busy) CallbackResult follows it by one millisecond. A
customer leg that fails at once (no route, unreachable number: CHANUNAVAIL) is reported by
UserEvent(CallbackResult) before or right after OriginateResponse. Either way the manager did
answer: the attempt is theirs, and nobody is paused for an offer they took.
"""

from __future__ import annotations

import asyncio

from telephony_harness import start_harness

from acd.core import events as ev
from acd.core.model import Channel, ContactStatus, Outcome, Presence


async def test_a_customer_leg_that_fails_at_once_is_the_answering_managers_unreached_attempt() -> None:
    h, stop = await start_harness(callback_attempts=1)
    try:
        # no phone for the customer's number: the dialplan's Dial fails at once (CHANUNAVAIL)
        cb = await h.telephony.callbacks.request(phone="+7 916 555-00-00")
        offer = await h.command(ev.OfferContact, lambda c: c.contact.channel is Channel.CALLBACK)
        attempt = await asyncio.wait_for(h.telephony.callbacks.results.get(), 5)
        assert attempt.dial_status == "CHANUNAVAIL" and attempt.manager_id == offer.manager.id
        names = [dict(e).get("Event") or dict(e).get("UserEvent") for e in h.sim.events]
        assert names.index("UserEvent") < names.index("OriginateResponse")  # the order this test is about
        await asyncio.sleep(0.3)
        await h.settle()
        rows = await h.telephony.tstore.attempts(cb.id)
        assert [(a.originate_reason, a.dial_status) for a in rows] == [("4", "CHANUNAVAIL")]
        contact = h.board.contacts.get(cb.contact_id) or await h.server.store.get_contact(cb.contact_id)
        assert contact is not None and contact.status is ContactStatus.FINISHED
        assert contact.outcome is Outcome.UNREACHED and contact.assigned_to == offer.manager.id
        manager = h.board.managers[offer.manager.id]
        assert manager.presence is not Presence.PAUSED and manager.handled_today == 1
        hangups = [a for s in h.sim.ami.all_sessions for a in s.actions if ("Action", "Hangup") in a]
        assert hangups == []  # the manager's leg was not taken for a stale one and hung up
    finally:
        await stop()
