"""A known customer's callback goes to their own manager, as their call would: the request
is recognised by the CRM when it falls due (customer, deal owner, pin, team)."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient, TestServer
from telephony_harness import Harness

from acd.core import events as ev
from acd.core.model import Presence


@pytest.mark.parametrize("pinned", ["anna", "daria"])  # both have the skills a callback asks for
async def test_a_pinned_customers_callback_is_offered_to_the_manager_the_widget_named(h: Harness, pinned: str) -> None:
    token = await h.server.store.create_token("supervisor", None)
    staff = {"Authorization": f"Bearer {token}"}
    async with TestClient(TestServer(h.server.app)) as http:
        made = await http.post(
            "/api/crm/customers", json={"name": "ООО Лютик", "phones": ["+7 900 222-33-44"]}, headers=staff
        )
        customer = await made.json()
        pin = await http.post(f"/api/crm/customers/{customer['id']}/pin", json={"manager_id": pinned}, headers=staff)
        assert pin.status == 200
        for manager_id in h.board.managers:  # everybody free: only the pin decides
            await h.server.dispatcher.submit(ev.PresenceSet(manager_id, Presence.AVAILABLE, None, "test"))
        asked = await http.post("/api/callbacks", json={"phone": "8 900 222-33-44", "name": "Лютик"})
        answer = await asked.json()
    assert answer["who"] == {"manager": h.board.managers[pinned].name}
    offer = await h.command(ev.OfferContact, lambda c: c.contact.id == answer["contact_id"])
    assert offer.manager.id == pinned
    assert offer.contact.customer_id == customer["id"]
