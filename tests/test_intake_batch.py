"""Batched intake: a burst of web leads is recognised and stored together, and batching
changes nothing a single lead would see."""

from __future__ import annotations

import asyncio

from api_fixtures import Running


def lead(phone: str, name: str = "Пётр") -> dict[str, object]:
    return {"name": name, "phone": phone, "criteria": {"temperature": "hot"}}


async def test_a_burst_from_one_new_customer_makes_one_customer(running: Running) -> None:
    results = await asyncio.gather(
        *(running.call("POST", "/api/leads", json=lead("+7 916 555-00-01")) for _ in range(8))
    )
    assert all(status == 201 for status, _ in results)
    assert len({body["customer_id"] for _, body in results}) == 1


async def test_a_burst_of_strangers_makes_one_customer_each_and_finds_them_again(running: Running) -> None:
    phones = [f"+7 916 555-10-{i:02d}" for i in range(12)]
    first = await asyncio.gather(*(running.call("POST", "/api/leads", json=lead(p)) for p in phones))
    ids = [body["customer_id"] for _, body in first]
    assert len(set(ids)) == len(phones)
    again = await asyncio.gather(*(running.call("POST", "/api/leads", json=lead("8" + p[2:])) for p in phones))
    assert [body["customer_id"] for _, body in again] == ids  # 8-prefixed forms find the same people


async def test_a_double_submit_inside_one_burst_stays_one_lead(running: Running) -> None:
    headers = {"Idempotency-Key": "burst-1"}
    results = await asyncio.gather(
        *(running.call("POST", "/api/leads", json=lead("+7 916 555-20-00"), headers=headers) for _ in range(6))
    )
    assert len({body["id"] for _, body in results}) == 1
    assert sorted(status for status, _ in results) == [200] * 5 + [201]
