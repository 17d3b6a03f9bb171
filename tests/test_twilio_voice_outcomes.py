"""Twilio voice, when the manager's leg does not connect or the caller leaves: no answer is a
missed offer (the manager is paused) and the caller, still queued, goes to the next manager;
busy skips the manager without a pause; a caller who hangs up while queued or while a manager
rings is abandoned and nobody stays offered.

Every webhook is signed with the twilio library's RequestValidator, as Twilio signs it; the
REST calls that move the live call go to a local stand-in of Twilio's API (`twilio_fixtures`),
because the real Twilio cloud is unreachable from here."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from api_fixtures import Running
from storage_fixtures import Backend
from twilio_fixtures import OUR_NUMBER, TwilioStandIn, hook, local, next_of, queue_a_call, twilio_office, twiml

from acd.core import events as ev
from acd.core.model import Contact, ContactStatus, Presence
from acd.storage.messaging import MessagingStore


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


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:  # noqa: ASYNC109
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "never happened"
        await asyncio.sleep(0.05)


async def contact_of(r: Running, call_sid: str) -> str:
    call = await MessagingStore(r.server.store).get_call(call_sid)
    assert call is not None and call["contact_id"]
    return str(call["contact_id"])


async def test_a_caller_gone_without_a_status_callback_is_abandoned_when_twilio_refuses_the_redirect(
    backend: Backend,
) -> None:
    """The number has no status callback, so nothing tells us the caller hung up in the queue;
    the offer's REST redirect is then refused (400, Twilio's error 21220, "Call is not
    in-progress"): that is the caller gone. Before, the refusal was only logged and the call was
    offered on (each manager rung for nothing, and paused when the offer ran out)."""
    async with twilio_office(backend) as (r, twilio):
        call = {"CallSid": "CA6000", "From": "+79161230006", "To": OUR_NUMBER}
        twilio.refuse[call["CallSid"]] = 21220  # the stand-in refuses updates of this call, as Twilio does
        await queue_a_call(r, call)
        sid, update = await next_of(twilio.updates)  # the core's offer, refused
        assert sid == call["CallSid"] and local(update["Url"]).startswith("/twilio/voice/connect")
        cid = await contact_of(r, call["CallSid"])

        async def abandoned() -> bool:
            stored = await r.server.store.get_contact(cid)
            return stored is not None and stored.status is ContactStatus.ABANDONED

        await eventually(abandoned)
        await r.settle()
        assert cid not in r.server.dispatcher.board.contacts
        for m in r.server.dispatcher.board.managers.values():
            assert m.offer_contact_id is None and m.presence is not Presence.PAUSED, m
        await asyncio.sleep(0.2)
        assert twilio.updates.empty()  # offered to nobody else


async def test_other_refused_redirects_do_not_end_the_call(backend: Backend) -> None:
    """Only "not in progress" means the caller is gone: another refusal (here 429, too many
    requests) leaves the contact open, to be offered on."""
    async with twilio_office(backend) as (r, twilio):
        call = {"CallSid": "CA6100", "From": "+79161230007", "To": OUR_NUMBER}
        twilio.refuse[call["CallSid"]] = 20429
        await queue_a_call(r, call)
        sid, _ = await next_of(twilio.updates)
        assert sid == call["CallSid"]
        await asyncio.sleep(0.3)
        await r.settle()
        c = r.server.dispatcher.board.contacts[await contact_of(r, call["CallSid"])]
        assert c.status is ContactStatus.OFFERED


async def test_a_full_twilio_queue_ends_the_contact_with_why_and_tells_the_caller(backend: Backend) -> None:
    """<Enqueue>'s action says QueueResult=queue-full when Twilio's queue holds no more callers:
    the caller never waited, so the contact is abandoned (the reason in the decision log) and
    the caller hears why before the call ends, instead of the contact staying open for ever."""
    async with twilio_office(backend) as (r, _):
        for m in list(r.server.dispatcher.board.managers.values()):
            r.server.dispatcher.post(ev.PresenceSet(m.id, Presence.PAUSED, "lunch"))
        call = {"CallSid": "CA6200", "From": "+79161230008", "To": OUR_NUMBER}
        enqueue = (await queue_a_call(r, call)).find("Enqueue")
        assert enqueue is not None
        cid = await contact_of(r, call["CallSid"])

        status, body = await hook(r, enqueue.get("action", ""), {**call, "QueueResult": "queue-full"})
        assert status == 200
        root = twiml(body)
        assert root.find("Say") is not None and root.find("Hangup") is not None
        assert root.find("Enqueue") is None
        await r.settle()
        assert cid not in r.server.dispatcher.board.contacts
        stored = await r.server.store.get_contact(cid)
        assert stored is not None and stored.status is ContactStatus.ABANDONED

        async def logged() -> bool:
            return any(d.summary == "ended: Twilio queue full" for d in await r.server.store.list_decisions(cid))

        await eventually(logged)


async def test_a_late_status_callback_does_not_undo_a_call_that_ended(backend: Backend) -> None:
    """Twilio's status callbacks may arrive out of order: "ringing" after "completed" must not
    make the ended call look live again."""
    async with twilio_office(backend) as (r, _):
        for m in list(r.server.dispatcher.board.managers.values()):
            r.server.dispatcher.post(ev.PresenceSet(m.id, Presence.PAUSED, "lunch"))
        call = {"CallSid": "CA6300", "From": "+79161230009", "To": OUR_NUMBER}
        await queue_a_call(r, call)
        store = MessagingStore(r.server.store)
        assert (await hook(r, "/twilio/voice/status", {**call, "CallStatus": "completed"}))[0] == 200
        assert (await hook(r, "/twilio/voice/status", {**call, "CallStatus": "ringing"}))[0] == 200
        assert (await hook(r, "/twilio/voice/status", {**call, "CallStatus": "canceled"}))[0] == 200
        saved = await store.get_call(call["CallSid"])
        assert saved is not None and saved["status"] == "completed"
        await r.settle()
        stored = await r.server.store.get_contact(str(saved["contact_id"]))
        assert stored is not None and stored.status is ContactStatus.ABANDONED

        other = {"CallSid": "CA6301", "From": "+79161230010", "To": OUR_NUMBER}  # in order: each one saved
        for status in ("ringing", "in-progress", "completed"):
            assert (await hook(r, "/twilio/voice/status", {**other, "CallStatus": status}))[0] == 200
            saved = await store.get_call(other["CallSid"])
            assert saved is not None and saved["status"] == status
