"""A known customer's callback goes to their own manager, as their call would: the request
is recognised by the CRM when it falls due (customer, deal owner, pin, team)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from telephony_harness import Harness

from acd.core import events as ev
from acd.core.model import Presence


async def pinned_customer(h: Harness, http: TestClient[Any, Any], manager_id: str) -> dict[str, Any]:
    """ООО Лютик (+7 900 222-33-44), made and pinned to `manager_id` by a supervisor."""
    staff = {"Authorization": f"Bearer {await h.server.store.create_token('supervisor', None)}"}
    made = await http.post(
        "/api/crm/customers", json={"name": "ООО Лютик", "phones": ["+7 900 222-33-44"]}, headers=staff
    )
    customer: dict[str, Any] = await made.json()
    pin = await http.post(f"/api/crm/customers/{customer['id']}/pin", json={"manager_id": manager_id}, headers=staff)
    assert pin.status == 200
    return customer


@pytest.mark.parametrize("pinned", ["anna", "daria"])  # both have the skills a callback asks for
async def test_a_pinned_customers_callback_is_offered_to_the_manager_the_widget_named(h: Harness, pinned: str) -> None:
    deployment = h.server.services.deployment
    h.server.services.deployment = replace(deployment, web=replace(deployment.web, name_the_manager=True))
    async with TestClient(TestServer(h.server.app)) as http:
        customer = await pinned_customer(h, http, pinned)
        for manager_id in h.board.managers:  # everybody free: only the pin decides
            await h.server.dispatcher.submit(ev.PresenceSet(manager_id, Presence.AVAILABLE, None, "test"))
        asked = await http.post("/api/callbacks", json={"phone": "8 900 222-33-44", "name": "Лютик"})
        answer = await asked.json()
    assert answer["who"] == {"manager": h.board.managers[pinned].name}
    offer = await h.command(ev.OfferContact, lambda c: c.contact.id == answer["contact_id"])
    assert offer.manager.id == pinned
    assert offer.contact.customer_id == customer["id"]


async def test_the_site_does_not_tell_a_visitor_whose_customer_a_number_is_unless_configured(h: Harness) -> None:
    """By default the confirmation is the same for a pinned customer's number as for a
    stranger's: naming the manager would tell anyone who types a number that it is a
    customer's, and whose."""
    async with TestClient(TestServer(h.server.app)) as http:
        await pinned_customer(h, http, "anna")
        known = await (await http.post("/api/callbacks", json={"phone": "8 900 222-33-44", "name": "Лютик"})).json()
        stranger = await (await http.post("/api/callbacks", json={"phone": "8 900 555-66-77", "name": "Гость"})).json()
    assert known["who"] == stranger["who"]
    assert "manager" not in (known["who"] or {})
    # the routing still knows: the pinned manager is offered the call first
    for manager_id in h.board.managers:
        await h.server.dispatcher.submit(ev.PresenceSet(manager_id, Presence.AVAILABLE, None, "test"))
    offer = await h.command(ev.OfferContact, lambda c: c.contact.id == known["contact_id"])
    assert offer.manager.id == "anna"
