"""Batched intake: a burst of web leads is recognised and stored together, and batching
changes nothing a single lead would see."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
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


async def test_a_person_in_a_batch_recognised_before_the_one_before_committed_stays_one_customer(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    """A batch is recognised while the one before it is still being written: a new person
    in both must still become one customer (their second write collides, and the careful
    road, one contact at a time, finds the first)."""
    intake = running.server.services.intake
    store_batch = intake.store.create_contacts
    held = asyncio.Event()
    calls = 0

    writing = asyncio.Event()

    async def slow_first_write(*args: Any, **kw: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            writing.set()
            await held.wait()
        return await store_batch(*args, **kw)

    intake.store.create_contacts = slow_first_write  # type: ignore[method-assign]
    first = asyncio.create_task(running.call("POST", "/api/leads", json=lead("+7 916 555-30-01")))
    await writing.wait()
    second = asyncio.create_task(running.call("POST", "/api/leads", json=lead("+7 916 555-30-01")))
    await asyncio.sleep(0.3)  # the second batch is recognised meanwhile, and waits for the first write
    held.set()
    (status1, body1), (status2, body2) = await first, await second
    assert (status1, status2) == (201, 201)
    assert body1["customer_id"] == body2["customer_id"]
    assert "storing one by one" in caplog.text
