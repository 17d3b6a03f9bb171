"""Twilio voice, when the manager's leg does not connect or the caller leaves: no answer is a
missed offer (the manager is paused) and the caller, still queued, goes to the next manager;
busy skips the manager without a pause; a caller who hangs up while queued or while a manager
rings is abandoned and nobody stays offered.

Every webhook is signed with the twilio library's RequestValidator, as Twilio signs it; the
REST calls that move the live call go to a local stand-in of Twilio's API (`twilio_fixtures`),
because the real Twilio cloud is unreachable from here."""

from __future__ import annotations

from api_fixtures import Running
from storage_fixtures import Backend
from twilio_fixtures import OUR_NUMBER, TwilioStandIn, hook, local, next_of, queue_a_call, twilio_office, twiml

from acd.core import events as ev
from acd.core.model import Contact, ContactStatus, Presence


async def offered_to(r: Running, twilio: TwilioStandIn, call: dict[str, str]) -> tuple[Contact, str, str]:
    """The next REST redirect of the caller's call to /connect: (contact, manager, the Dial's action)."""
    while True:
        sid, update = await next_of(twilio.updates)
        assert sid == call["CallSid"]
        if local(update["Url"]).startswith("/twilio/voice/connect"):
            break
    status, body = await hook(r, local(update["Url"]), call)
    assert status == 200
    dial = twiml(body).find("Dial")
    assert dial is not None, body
    await r.settle()
    [contact] = [c for c in r.server.dispatcher.board.contacts.values() if c.phone == call["From"]]
    assert contact.status is ContactStatus.OFFERED and contact.offered_to is not None
    return contact, contact.offered_to, dial.get("action", "")


async def test_a_manager_who_does_not_answer_is_paused_and_the_caller_is_offered_to_the_next(
    backend: Backend,
) -> None:
    async with twilio_office(backend, offer_timeout=3.0) as (r, twilio):
        call = {"CallSid": "CA1000", "From": "+79161230000", "To": OUR_NUMBER}
        await queue_a_call(r, call)
        contact, first, action = await offered_to(r, twilio, call)

        status, body = await hook(r, action, {**call, "DialCallStatus": "no-answer"})
        assert status == 200 and twiml(body).find("Enqueue") is not None  # back to waiting, place kept
        # the core's offer timeout: withdrawn (back to the queue), then offered to the next one —
        # the two REST redirects reach Twilio in that order
        sid, update = await next_of(twilio.updates)
        assert sid == call["CallSid"] and local(update["Url"]).startswith("/twilio/voice/queue")
        again, second, _ = await offered_to(r, twilio, call)
        assert again.id == contact.id and second != first
        assert again.arrived_at == contact.arrived_at
        assert r.server.dispatcher.board.managers[first].presence is Presence.PAUSED  # missed offer


async def test_a_busy_manager_is_skipped_without_a_pause_and_the_caller_goes_to_the_next(backend: Backend) -> None:
    async with twilio_office(backend) as (r, twilio):
        call = {"CallSid": "CA2000", "From": "+79161230001", "To": OUR_NUMBER}
        await queue_a_call(r, call)
        contact, first, action = await offered_to(r, twilio, call)

        status, body = await hook(r, action, {**call, "DialCallStatus": "busy"})
        assert status == 200 and twiml(body).find("Enqueue") is not None
        again, second, _ = await offered_to(r, twilio, call)  # at once: the 20 s offer is not waited out
        assert again.id == contact.id and second != first
        assert r.server.dispatcher.board.managers[first].presence is not Presence.PAUSED


async def test_a_caller_who_hangs_up_in_the_queue_is_abandoned(backend: Backend) -> None:
    async with twilio_office(backend) as (r, _):
        for m in list(r.server.dispatcher.board.managers.values()):
            r.server.dispatcher.post(ev.PresenceSet(m.id, Presence.PAUSED, "lunch"))
        call = {"CallSid": "CA3000", "From": "+79161230002", "To": OUR_NUMBER}
        enqueue = (await queue_a_call(r, call)).find("Enqueue")
        assert enqueue is not None
        await r.settle()
        [c] = [c for c in r.server.dispatcher.board.contacts.values() if c.phone == call["From"]]
        assert c.status is ContactStatus.WAITING

        status, _ = await hook(r, enqueue.get("action", ""), {**call, "QueueResult": "hangup"})  # Enqueue's action
        assert status == 200
        await r.settle()
        stored = await r.server.store.get_contact(c.id)
        assert stored is not None and stored.status is ContactStatus.ABANDONED
        assert c.id not in r.server.dispatcher.board.contacts


async def test_a_caller_who_hangs_up_while_a_manager_rings_is_abandoned_and_the_manager_freed(
    backend: Backend,
) -> None:
    async with twilio_office(backend) as (r, twilio):
        call = {"CallSid": "CA4000", "From": "+79161230003", "To": OUR_NUMBER}
        await queue_a_call(r, call)
        contact, manager, _ = await offered_to(r, twilio, call)

        status, _ = await hook(r, "/twilio/voice/status", {**call, "CallStatus": "completed"})
        assert status == 200
        await r.settle()
        stored = await r.server.store.get_contact(contact.id)
        assert stored is not None and stored.status is ContactStatus.ABANDONED
        m = r.server.dispatcher.board.managers[manager]
        assert m.offer_contact_id is None and m.presence is Presence.AVAILABLE


async def test_a_retried_answered_webhook_does_not_hang_up_the_manager_who_answered(backend: Backend) -> None:
    """Twilio retries a webhook it got no answer to in time: the manager's leg is answered once,
    the retried /answered must let the call through (not <Hangup/> it, which would drop the
    caller as the Dial ends)."""
    async with twilio_office(backend) as (r, twilio):
        call = {"CallSid": "CA5000", "From": "+79161230004", "To": OUR_NUMBER}
        await queue_a_call(r, call)
        contact, manager, _ = await offered_to(r, twilio, call)
        connect_status, connect = await hook(r, f"/twilio/voice/connect?contact={contact.id}&manager={manager}", call)
        assert connect_status == 200
        number = twiml(connect).find("Dial/Number")
        assert number is not None
        leg = {**call, "CallSid": "CA5001", "ParentCallSid": call["CallSid"]}
        assert (await hook(r, number.get("url", ""), leg))[0] == 200
        status, body = await hook(r, number.get("url", ""), leg)  # the same request, retried
        assert status == 200 and twiml(body).find("Hangup") is None
        c = r.server.dispatcher.board.contacts[contact.id]
        assert c.status is ContactStatus.ASSIGNED and c.assigned_to == manager
