"""Handing customers over and saying why, on SQLite and PostgreSQL: a vacation applies to the
next contact, not 30 s later (also when a contact read the list while it was being written);
a rotation moves a leaving manager's pins too; a contact's JSON says why the CRM sent it
where it went, which deal it routed by, and how many open deals the customer has."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from api_fixtures import Running, example_deployment
from storage_fixtures import Backend
from test_crm_api import HOT_BIG, customer_with_deal, lead

from acd.api.crm import CRM
from acd.core.model import Manager
from acd.crm.model import Customer, Deal, DealStatus, Vacation
from acd.crm.provider import DealRatings
from acd.crm.routing import StageRule, route_repeat
from acd.crm.service import CrmService, rating_params
from acd.storage.crm import CrmStore

NOW = 1_800_000_000.0
MANAGERS = {m: Manager(m) for m in ("anna", "boris", "egor", "daria")}


class Held:
    """The CRM's repository, with its vacation writes and reads held where a test says:
    a write waits before it starts; a read, once it has read, waits before it answers."""

    def __init__(self, repo: CrmStore) -> None:
        self.repo = repo
        self.writing, self.write = asyncio.Event(), asyncio.Event()
        self.write.set()
        self.read, self.answer = asyncio.Event(), asyncio.Event()
        self.answer.set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.repo, name)

    async def _written(self, done: Any) -> Any:
        self.writing.set()
        await self.write.wait()
        return await done

    async def add_vacation(self, v: Vacation) -> Vacation:
        return await self._written(self.repo.add_vacation(v))  # type: ignore[no-any-return]

    async def delete_vacation(self, n: int) -> bool:
        return await self._written(self.repo.delete_vacation(n))  # type: ignore[no-any-return]

    async def list_vacations(self, manager_id: str | None = None, ending_after: float | None = None) -> list[Vacation]:
        rows = await self.repo.list_vacations(manager_id, ending_after)
        self.read.set()
        await self.answer.wait()
        return rows


async def test_a_vacation_applies_to_the_next_contact_whatever_was_read_while_it_was_written(
    backend: Backend,
) -> None:
    deployment = example_deployment()
    store = await backend.open()
    try:
        repo = Held(CrmStore(store))
        ratings = DealRatings(rating_params(deployment), NOW)
        crm = CrmService(repo, lambda: deployment, lambda: MANAGERS, ratings, clock=lambda: NOW)  # type: ignore[arg-type]
        today = datetime.fromtimestamp(NOW, ZoneInfo(deployment.tz)).date()

        # a contact arrives while the new vacation is being written: it reads the list without it
        repo.write.clear()
        adding = asyncio.create_task(
            crm.add_vacation("egor", today - timedelta(days=1), today + timedelta(days=7), "daria")
        )
        await asyncio.wait_for(repo.writing.wait(), 5)
        assert await crm.current_vacations(NOW) == []
        repo.write.set()
        v = await asyncio.wait_for(adding, 5)
        # the next contact, a second later, already sees it (it used to wait out the 30 s cache)
        assert [x.id for x in await crm.current_vacations(NOW + 1)] == [v.id]

        # a contact read the list before the vacation was deleted, and answers after: that list is not kept
        repo.read.clear()
        repo.answer.clear()
        reading = asyncio.create_task(crm.current_vacations(NOW + 40))  # the cached list is 40 s old: read again
        await asyncio.wait_for(repo.read.wait(), 5)
        assert await asyncio.wait_for(crm.delete_vacation(v.id), 5)
        repo.answer.set()
        assert [x.id for x in await asyncio.wait_for(reading, 5)] == [v.id]  # that contact came before the delete
        assert await crm.current_vacations(NOW + 41) == []
    finally:
        await store.close()


async def customer(r: Running, name: str, phone: str, account_manager: str, pinned_to: str | None = None) -> str:
    status, c = await r.call(
        "POST",
        "/api/crm/customers",
        r.supervisor,
        json={"name": name, "phones": [phone], "account_manager": account_manager},
    )
    assert status == 201, c
    if pinned_to:
        status, c = await r.call(
            "POST", f"/api/crm/customers/{c['id']}/pin", r.supervisor, json={"manager_id": pinned_to}
        )
        assert status == 200 and c["pinned_to"] == pinned_to, c
    return str(c["id"])


async def test_rotation_hands_a_leaving_managers_pins_over_too(running: Running) -> None:
    crm = running.server.app[CRM]
    pinned = await customer(running, "ООО Пин", "+7 903 000-00-01", "boris", pinned_to="vera")
    both = await customer(running, "ООО Оба", "+7 903 000-00-02", "vera", pinned_to="vera")
    plain = await customer(running, "ООО Просто", "+7 903 000-00-03", "vera")
    other = await customer(running, "ООО Чужой", "+7 903 000-00-04", "anna", pinned_to="boris")
    status, out = await running.call(
        "POST", "/api/crm/rotation", running.supervisor, json={"from_manager": "vera", "to": ["daria"]}
    )
    assert status == 200 and out == {"customers": 3, "pins": 2, "open_deals": 0}, out
    now = {cid: await crm.customer(cid) for cid in (pinned, both, plain, other)}
    assert (now[pinned].account_manager, now[pinned].pinned_to) == ("boris", "daria")
    assert (now[both].account_manager, now[both].pinned_to) == ("daria", "daria")
    assert (now[plain].account_manager, now[plain].pinned_to) == ("daria", None)
    assert (now[other].account_manager, now[other].pinned_to) == ("anna", "boris")
    history = [(e.kind, e.manager_id, dict(e.detail)) for e in await crm.repo.history(customer_id=pinned)]
    assert ("pin", "daria", {"from": "vera", "rotation": True}) in history
    assert not any(kind == "account_manager" and detail.get("rotation") for kind, _, detail in history)
    # the pinned customer now reaches daria first, still as the supervisor's placement
    seen = await lead(running, "+79030000001")
    assert seen["preferred"] == ["daria", "boris"] and seen["override"] is True
    assert "pinned to daria" in str(seen["crm_reason"])


async def test_a_contacts_json_says_why_the_crm_routed_it_but_the_public_receipt_does_not(running: Running) -> None:
    _, did = await customer_with_deal(running, "delivery", owner="anna", stage_owner="egor")
    seen = await lead(running, "+79161234567")
    assert seen["deal_id"] == did
    assert str(seen["crm_reason"]).startswith(f"open deal {did} in stage 'delivery'")
    status, listed = await running.call("GET", "/api/contacts", running.supervisor)
    assert status == 200
    mine = next(c for c in listed["contacts"] if c["id"] == seen["id"])
    assert (mine["crm_reason"], mine["deal_id"]) == (seen["crm_reason"], did)
    stranger = await lead(running, "+7 903 777-66-55")
    assert (stranger["crm_reason"], stranger["deal_id"]) == ("new customer", None)
    # the public form's answer stays {id, status}: where a lead goes and why is the business's own
    status, receipt = await running.call(
        "POST", "/api/leads", json={"name": "Иван", "phone": "+79161234567", "criteria": HOT_BIG}
    )
    assert status == 201 and receipt.keys() == {"id", "status"}, receipt


async def test_a_customer_with_two_open_deals_is_told_apart_in_the_reason(running: Running) -> None:
    cid, older = await customer_with_deal(running, "approval", owner="boris")
    status, newer = await running.call(
        "POST", "/api/crm/deals", running.supervisor, json={"customer_id": cid, "title": "Обучение", "owner": "anna"}
    )
    assert status == 201, newer
    seen = await lead(running, "+79161234567")
    assert seen["deal_id"] == newer["id"] and seen["preferred"] == ["anna"]  # the one moved last, as before
    reason = str(seen["crm_reason"])
    assert "1 of 2 open deals, the most recently moved" in reason and f"{older} in 'approval'" in reason


def test_the_reason_counts_only_open_deals_and_names_at_most_three_others() -> None:
    stages = {"approval": StageRule("approval", "sales")}
    c = Customer("c1")
    deals = [Deal(f"d{i}", "c1", owner="anna", stage="approval", last_activity=float(i)) for i in range(6)]
    closed = Deal("w", "c1", owner="anna", stage="approval", status=DealStatus.WON, last_activity=99.0)
    routed = route_repeat(c, [*deals, closed], stages, [], 100.0)
    assert routed.deal_id == "d5"
    assert "1 of 6 open deals, the most recently moved" in routed.reason
    assert "d4 in 'approval', d3 in 'approval', d2 in 'approval' and 2 more" in routed.reason
    alone = route_repeat(c, [deals[0], closed], stages, [], 100.0)
    assert "open deals" not in alone.reason and alone.deal_id == "d0"
