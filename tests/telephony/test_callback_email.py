"""A callback form may leave an e-mail address: where no SMS gateway is configured, that is
how the customer is told the request is in and how the attempts go (acd.messaging.notify)."""

from __future__ import annotations

from aiohttp.test_utils import TestClient, TestServer
from telephony_harness import Harness

from acd.core import events as ev
from acd.core.model import Contact

FORM = {"phone": "+7 916 555-00-02", "name": "Ольга", "email": "olga@example.ru"}


async def test_the_request_its_contact_and_the_acknowledgement_carry_the_address(h: Harness) -> None:
    told: list[Contact] = []

    async def requested(contact: Contact, callback_id: str) -> None:
        told.append(contact)

    h.telephony.callbacks.requested = requested
    async with TestClient(TestServer(h.server.app)) as http:
        resp = await http.post("/api/callbacks", json=FORM)
        assert resp.status == 201
        answer = await resp.json()
    assert answer["email"] == "olga@example.ru"
    stored = await h.telephony.tstore.get_callback(answer["id"])
    assert stored is not None and stored.email == "olga@example.ru"
    assert [c.email for c in told] == ["olga@example.ru"]
    # due at once: it enters the queue and is offered, the address with it
    offer = await h.command(ev.OfferContact, lambda c: c.contact.id == answer["contact_id"])
    assert offer.contact.email == "olga@example.ru"
    stored_contact = await h.server.store.get_contact(answer["contact_id"])
    assert stored_contact is not None and stored_contact.email == "olga@example.ru"


async def test_without_an_address_nothing_changes_and_a_wrong_one_is_refused(h: Harness) -> None:
    async with TestClient(TestServer(h.server.app)) as http:
        plain = await http.post("/api/callbacks", json={**FORM, "email": None, "after": 4_000_000_000})
        assert plain.status == 201 and (await plain.json())["email"] == ""
        wrong = await http.post("/api/callbacks", json={**FORM, "email": "olga at example"})
        assert wrong.status == 400 and "email" in (await wrong.json())["error"]["message"]
    assert len(await h.telephony.tstore.open_callbacks()) == 1
