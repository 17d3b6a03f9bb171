"""A callback form sent twice makes one request: the website widget sends an Idempotency-Key
with every form, as with lead forms."""

from __future__ import annotations

import asyncio

from aiohttp.test_utils import TestClient, TestServer
from telephony_harness import Harness

FORM = {"phone": "+7 916 555-00-01", "name": "Ольга", "after": 4_000_000_000}  # far ahead: not rung here


async def test_a_form_sent_again_with_its_key_gets_the_first_request_back(h: Harness) -> None:
    async with TestClient(TestServer(h.server.app)) as http:
        first = await http.post("/api/callbacks", json=FORM, headers={"Idempotency-Key": "form-1"})
        again = await http.post("/api/callbacks", json=FORM, headers={"Idempotency-Key": "form-1"})
        assert (first.status, again.status) == (201, 200)
        a, b = await first.json(), await again.json()
        assert a["id"] == b["id"] and a["contact_id"] == b["contact_id"]
        other = await http.post("/api/callbacks", json=FORM, headers={"Idempotency-Key": "form-2"})
        assert other.status == 201 and (await other.json())["id"] != a["id"]
    stored = await h.telephony.tstore.open_callbacks()
    assert sorted(cb.idempotency_key or "" for cb in stored) == ["form-1", "form-2"]


async def test_sends_of_one_form_at_the_same_moment_make_one_request(h: Harness) -> None:
    async with TestClient(TestServer(h.server.app)) as http:
        sends = [http.post("/api/callbacks", json={**FORM, "idempotency_key": "form-3"}) for _ in range(4)]
        answers = await asyncio.gather(*sends)
        assert sorted(r.status for r in answers) == [200, 200, 200, 201]
        assert len({(await r.json())["id"] for r in answers}) == 1
    assert [cb.idempotency_key for cb in await h.telephony.tstore.open_callbacks()] == ["form-3"]


async def test_a_form_without_a_key_is_a_request_each_time(h: Harness) -> None:
    async with TestClient(TestServer(h.server.app)) as http:
        statuses = [(await http.post("/api/callbacks", json=FORM)).status for _ in range(2)]
    assert statuses == [201, 201]
    assert len(await h.telephony.tstore.open_callbacks()) == 2


async def test_a_key_too_long_to_index_is_refused(h: Harness) -> None:
    async with TestClient(TestServer(h.server.app)) as http:
        resp = await http.post("/api/callbacks", json=FORM, headers={"Idempotency-Key": "k" * 5000})
        assert resp.status == 400 and "Idempotency-Key" in (await resp.json())["error"]["message"]
    assert await h.telephony.tstore.open_callbacks() == []
