"""Repeat callers are recognised through the CRM, whatever the caller ID's format."""

from __future__ import annotations

import asyncio

from telephony_harness import Harness

from acd.api.crm import CRM
from acd.core import events as ev
from acd.pbxsim import Caller, Press

MOSCOW = "74951234567"


async def test_a_caller_whose_number_the_crm_knows_in_another_format_goes_to_the_deal_stage_owner(h: Harness) -> None:
    crm = h.server.app[CRM]
    customer = await crm.create_customer("ООО Ромашка", phones=["+7 916 123-45-67"])
    deal = await crm.open_deal(customer_id=customer.id, title="licences", stage="approval", stage_owner="vera")

    h.sim.call(Caller(number="89161234567", dialled=MOSCOW, steps=[Press("1"), Press("1"), Press("3")]))
    offer = await h.command(ev.OfferContact)
    assert offer.manager.id == "vera"  # not anna, the best seller for a hot big purchase: the deal's person
    assert offer.contact.customer_id == customer.id
    assert offer.contact.payload["routed_by"] == "repeat" and offer.contact.payload["deal_id"] == deal.id
    await h.ended_call()


async def test_a_repeat_caller_from_a_number_written_differently_skips_the_questions_already_answered(
    h: Harness,
) -> None:
    h.sim.call(Caller(number="79160000001", dialled=MOSCOW, steps=[Press("2"), Press("2"), Press("3")]))
    await h.ended_call()
    again = h.sim.call(Caller(number="89160000001", dialled=MOSCOW, steps=[Press("1")]))
    offer = await h.command(ev.OfferContact, lambda c: c.contact.payload["ivr"].get("purpose") == "known")
    assert offer.contact.criteria == {"temperature": "hot", "purpose": "renewal", "price_tier": "high"}
    assert offer.contact.payload["ivr"] == {"temperature": "caller", "purpose": "known", "price_tier": "known"}
    result = await asyncio.wait_for(again.agi_done, 5)
    assert sum(cmd.startswith("GET DATA") for cmd in result.agi_commands) == 1
    await h.ended_call()


async def test_a_caller_the_crm_does_not_know_answers_every_question(h: Harness) -> None:
    call = h.sim.call(Caller(number="79165550101", dialled=MOSCOW, steps=[Press("1"), Press("1"), Press("3")]))
    offer = await h.command(ev.OfferContact)
    assert offer.contact.payload["ivr"] == {"temperature": "caller", "purpose": "caller", "price_tier": "caller"}
    assert offer.contact.payload.get("crm") == "new customer"
    result = await asyncio.wait_for(call.agi_done, 5)
    assert sum(cmd.startswith("GET DATA") for cmd in result.agi_commands) == 3
    await h.ended_call()
