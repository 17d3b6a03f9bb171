"""Batched intake: a burst of web leads is recognised and stored together, and batching
changes nothing a single lead would see."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest
from api_fixtures import Running

from acd.storage import Refused, Store

if TYPE_CHECKING:
    from storage_fixtures import Backend


def lead(phone: str, name: str = "Пётр") -> dict[str, object]:
    return {"name": name, "phone": phone, "criteria": {"temperature": "hot"}}


async def test_a_burst_from_one_new_customer_makes_one_customer(running: Running) -> None:
    results = await asyncio.gather(
        *(running.call("POST", "/api/leads", running.supervisor, json=lead("+7 916 555-00-01")) for _ in range(8))
    )
    assert all(status == 201 for status, _ in results)
    assert len({body["customer_id"] for _, body in results}) == 1


async def test_a_burst_of_strangers_makes_one_customer_each_and_finds_them_again(running: Running) -> None:
    phones = [f"+7 916 555-10-{i:02d}" for i in range(12)]
    first = await asyncio.gather(
        *(running.call("POST", "/api/leads", running.supervisor, json=lead(p)) for p in phones)
    )
    ids = [body["customer_id"] for _, body in first]
    assert len(set(ids)) == len(phones)
    again = await asyncio.gather(
        *(running.call("POST", "/api/leads", running.supervisor, json=lead("8" + p[2:])) for p in phones)
    )
    assert [body["customer_id"] for _, body in again] == ids  # 8-prefixed forms find the same people


async def test_a_double_submit_inside_one_burst_stays_one_lead(running: Running) -> None:
    headers = {"Idempotency-Key": "burst-1"}
    results = await asyncio.gather(
        *(
            running.call("POST", "/api/leads", running.supervisor, json=lead("+7 916 555-20-00"), headers=headers)
            for _ in range(6)
        )
    )
    assert len({body["id"] for _, body in results}) == 1
    assert sorted(status for status, _ in results) == [200] * 5 + [201]


async def customers(running: Running) -> list[dict[str, Any]]:
    status, body = await running.call("GET", "/api/crm/customers?limit=500", running.supervisor)
    assert status == 200
    return body["customers"]  # type: ignore[no-any-return]


async def test_a_known_person_in_a_burst_of_strangers_is_recognised_and_the_strangers_are_new(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    """A batch is written as if everyone in it were new; the transaction finds the known
    person, leaves their contact out, and it is recognised and stored as a repeat."""
    status, known = await running.call(
        "POST", "/api/leads", running.supervisor, json=lead("+7 916 555-40-00", name="Старый")
    )
    assert status == 201
    phones = [f"+7 916 555-41-{i:02d}" for i in range(6)]
    burst = [lead(p) for p in phones[:3]] + [lead("8 916 555-40-00")] + [lead(p) for p in phones[3:]]
    results = await asyncio.gather(
        *(running.call("POST", "/api/leads", running.supervisor, json=body) for body in burst)
    )
    assert [status for status, _ in results] == [201] * 7
    ids = [body["customer_id"] for _, body in results]
    assert ids[3] == known["customer_id"]
    assert len(set(ids)) == 7 and all(ids)
    assert len(await customers(running)) == 7  # the known person once, the six strangers once each
    assert "storing one by one" not in caplog.text  # found by the batch's own look-up, not by a collision


async def test_recognising_a_known_person_does_not_hold_up_the_leads_behind(running: Running) -> None:
    """A known person's contact is recognised on the side (look-ups, then its own write):
    strangers who come meanwhile are stored and answered without waiting for it, and the
    known person is answered with their customer once recognition is done."""
    status, known = await running.call(
        "POST", "/api/leads", running.supervisor, json=lead("+7 916 555-45-00", name="Старый")
    )
    assert status == 201
    crm = running.server.services.intake.crm
    assert crm is not None
    prepare_many = crm.prepare_many
    looking = asyncio.Event()
    go_on = asyncio.Event()

    async def slow_look_up(contacts: Any) -> Any:
        looking.set()
        await go_on.wait()
        return await prepare_many(contacts)

    crm.prepare_many = slow_look_up  # type: ignore[method-assign]
    repeat = asyncio.create_task(running.call("POST", "/api/leads", running.supervisor, json=lead("8 916 555-45-00")))
    await asyncio.wait_for(looking.wait(), 10)
    strangers = [
        running.call("POST", "/api/leads", running.supervisor, json=lead(f"+7 916 555-46-{i:02d}")) for i in range(3)
    ]
    answered = await asyncio.wait_for(asyncio.gather(*strangers), 10)  # while the look-up still waits
    assert [status for status, _ in answered] == [201] * 3
    assert not repeat.done()
    go_on.set()
    status, again = await asyncio.wait_for(repeat, 10)
    assert status == 201 and again["customer_id"] == known["customer_id"]
    # written after them, it arrived before them: the queue orders by arrival (seq only breaks ties)
    assert again["seq"] > max(body["seq"] for _, body in answered)
    assert again["arrived_at"] < min(body["arrived_at"] for _, body in answered)


async def test_a_form_sent_again_later_makes_no_second_contact_or_customer(running: Running) -> None:
    headers = {"Idempotency-Key": "later-1"}
    status1, first = await running.call(
        "POST", "/api/leads", running.supervisor, json=lead("+7 916 555-50-00"), headers=headers
    )
    # the same form again, its phone corrected meanwhile, among strangers: the form is
    # answered by the contact stored first, and its new phone makes nobody new
    again = [running.call("POST", "/api/leads", running.supervisor, json=lead("+7 916 555-59-99"), headers=headers)]
    again += [
        running.call("POST", "/api/leads", running.supervisor, json=lead(f"+7 916 555-51-{i:02d}")) for i in range(3)
    ]
    (status2, second), *_ = await asyncio.gather(*again)
    assert (status1, status2) == (201, 200)
    assert second["id"] == first["id"] and second["customer_id"] == first["customer_id"]
    assert len(await customers(running)) == 4


async def test_a_person_who_becomes_known_while_their_batch_waits_stays_one_customer(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    """A batch is prepared while the one before it is being written: a new person in both
    must still become one customer (the second transaction finds the first one's customer
    and leaves the contact out for recognition)."""
    intake = running.server.services.intake
    write_batch = intake.store.create_contacts_if_new
    held = asyncio.Event()
    writing = asyncio.Event()
    calls = 0

    async def slow_first_write(*args: Any, **kw: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            writing.set()
            await held.wait()
        return await write_batch(*args, **kw)

    intake.store.create_contacts_if_new = slow_first_write  # type: ignore[method-assign]
    first = asyncio.create_task(running.call("POST", "/api/leads", running.supervisor, json=lead("+7 916 555-30-01")))
    await writing.wait()
    second = asyncio.create_task(running.call("POST", "/api/leads", running.supervisor, json=lead("+7 916 555-30-01")))
    await asyncio.sleep(0.3)  # the second batch is prepared meanwhile, and waits for the first write
    held.set()
    (status1, body1), (status2, body2) = await first, await second
    assert (status1, status2) == (201, 201)
    assert body1["customer_id"] == body2["customer_id"]
    assert len(await customers(running)) == 1
    assert "storing one by one" not in caplog.text


async def test_a_batch_that_fails_as_a_whole_is_stored_one_by_one(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    intake = running.server.services.intake
    write_batch = intake.store.create_contacts_if_new
    failed = False

    async def fail_once(*args: Any, **kw: Any) -> Any:
        nonlocal failed
        if not failed:
            failed = True
            raise RuntimeError("the batch's transaction failed")
        return await write_batch(*args, **kw)

    intake.store.create_contacts_if_new = fail_once  # type: ignore[method-assign]
    phones = ["+7 916 555-60-01", "+7 916 555-60-02", "8 916 555-60-01"]
    results = await asyncio.gather(
        *(running.call("POST", "/api/leads", running.supervisor, json=lead(p)) for p in phones)
    )
    assert [status for status, _ in results] == [201] * 3
    assert failed and "storing one by one" in caplog.text
    ids = [body["customer_id"] for _, body in results]
    assert ids[0] == ids[2] != ids[1]
    assert len(await customers(running)) == 2


async def test_a_batch_that_cannot_be_prepared_answers_its_callers_with_the_error() -> None:
    """A bug before the write (here the routing policy cannot be read) must not leave the
    batch's callers waiting for ever: each gets an error, and nothing is stored."""
    from acd.api.intake import Intake
    from acd.core.model import Channel, Contact

    class Unwritten:
        async def create_contacts(self, items: object, also: object = None) -> list[Any]:
            raise AssertionError("nothing may be written")

    def broken_policy() -> Any:
        raise RuntimeError("policy unreadable")

    intake = Intake(Unwritten(), broken_policy)  # type: ignore[arg-type]
    leads = [Contact(id=f"c{i}", channel=Channel.WEB, arrived_at=1.0) for i in range(3)]
    results = await asyncio.wait_for(
        asyncio.gather(*(intake.submit(c, None) for c in leads), return_exceptions=True), 5
    )
    assert all(isinstance(r, Exception) and not isinstance(r, TimeoutError) for r in results)


async def test_a_lead_the_database_refuses_fails_alone_not_with_its_batch(store: Store, backend: Backend) -> None:
    """Without the CRM a batch is one INSERT: a value PostgreSQL will never take (a NUL, which
    the API refuses first, but this is the last line) must not take its batch down with it."""
    from acd.api.intake import Intake
    from acd.core.model import Channel, Contact
    from acd.core.policy import RoutingPolicy

    intake = Intake(store, RoutingPolicy)
    names = ["Анна", "Бо\0рис", "Вера"]
    leads = [Contact(id=f"c{i}", channel=Channel.WEB, arrived_at=1.0, customer_name=n) for i, n in enumerate(names)]
    results = await asyncio.wait_for(
        asyncio.gather(*(intake.submit(c, None) for c in leads), return_exceptions=True), 10
    )
    stored = [r for r in results if not isinstance(r, BaseException)]
    if backend.name == "sqlite":
        assert len(stored) == 3
        return
    assert isinstance(results[1], Refused)
    assert [c.customer_name for c, created in stored] == ["Анна", "Вера"]
    assert {c.id for c in await store.load_open_contacts()} == {"c0", "c2"}


async def test_a_burst_larger_than_one_statement_can_take_is_stored_whole(store: Store, backend: Backend) -> None:
    """Leads that piled up while the database was slow: PostgreSQL takes at most 32,767
    parameters in a statement, and one write of them all failed every lead with a 503.
    (SQLite looks up a batch's keys as one JSON array: a few writes' worth shows the rest.)"""
    from acd.api.intake import Intake
    from acd.core.model import Channel, Contact
    from acd.core.policy import RoutingPolicy

    intake = Intake(store, RoutingPolicy)
    count = 3_500 if backend.name == "sqlite" else 33_000
    leads = [Contact(id=f"c{i}", channel=Channel.WEB, arrived_at=1.0) for i in range(count)]
    results = await asyncio.gather(*(intake.submit(c, f"key-{c.id}") for c in leads), return_exceptions=True)
    assert not [r for r in results if isinstance(r, BaseException)][:1]
    assert len(await store.load_open_contacts()) == len(leads)
