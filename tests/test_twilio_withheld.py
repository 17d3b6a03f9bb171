"""A caller who withholds their number: Twilio puts a word (`anonymous`) or one of its stand-in
numbers (+266696687, +86282452253, +8656696 — ANONYMOUS, UNAVAILABLE, UNKNOWN on a keypad) in
`From`. Those look like real E.164 numbers, so unfiltered they would be looked up in the CRM (a
"customer" made of every anonymous caller) and called back. The contact has no number instead.

Twilio is played by the test: webhooks are signed with the twilio library's RequestValidator as
Twilio signs them, and its REST API is a local stand-in on 127.0.0.1 (`twilio_fixtures`),
because the real Twilio cloud is unreachable from here."""

from __future__ import annotations

import pytest
from api_fixtures import Running
from storage_fixtures import Backend
from twilio_fixtures import OUR_NUMBER, queue_a_call, twilio_office

from acd.core import events as ev
from acd.core.model import Contact, Presence
from acd.messaging.twilio_voice import caller_number
from acd.storage.crm import CrmStore
from acd.storage.messaging import MessagingStore

WITHHELD = ["anonymous", "Anonymous", "+266696687", "+86282452253", "+8656696", "", " ", "Restricted"]


@pytest.mark.parametrize("from_", WITHHELD)
def test_withheld_numbers_are_no_number(from_: str) -> None:
    assert caller_number(from_) == ""


@pytest.mark.parametrize("from_", ["+79161234567", "+12025550123", "+2666966870"])
def test_real_numbers_are_kept(from_: str) -> None:
    assert caller_number(from_) == from_


async def queued(r: Running, call: dict[str, str]) -> Contact:
    await queue_a_call(r, call)
    await r.settle()
    row = await MessagingStore(r.server.store).get_call(call["CallSid"])
    assert row is not None and row["contact_id"]
    return r.server.dispatcher.board.contacts[row["contact_id"]]


async def test_a_withheld_caller_is_queued_with_no_number_and_never_made_a_crm_customer(backend: Backend) -> None:
    async with twilio_office(backend) as (r, _):
        for m in list(r.server.dispatcher.board.managers.values()):  # keep the calls waiting
            r.server.dispatcher.post(ev.PresenceSet(m.id, Presence.PAUSED, "lunch"))
        crm = CrmStore(r.server.store)
        for i, from_ in enumerate(["+266696687", "anonymous", "+8656696"]):
            c = await queued(r, {"CallSid": f"CA90{i}", "From": from_, "To": OUR_NUMBER})
            assert c.phone == "" and c.customer_id is None  # nothing to recognise, nobody to call back
        assert await crm.find_customer(["+266696687", "+8656696"], []) is None

        # a caller with a number is recognised as before (a stranger becomes a customer)
        known = await queued(r, {"CallSid": "CA910", "From": "+79161239100", "To": OUR_NUMBER})
        assert known.phone == "+79161239100" and known.customer_id is not None
