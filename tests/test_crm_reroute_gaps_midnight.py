"""A vacation begins or ends at midnight in the office's time zone, when nobody asks the server
for anything: the waiting contacts of its manager's customers go to the substitute then, and
back when it is over, whoever recorded it (this server's API, or another node, a tool or a
script, straight into the database). Through a real server on 127.0.0.1 whose clock stands a
moment before the office's midnight, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer
from api_fixtures import Running, example_deployment
from reroute_fixtures import customer, lead, offered, reroutes, seen
from storage_fixtures import Backend

from acd.app import build
from acd.crm.model import Vacation
from acd.crm.provider import DealRatings
from acd.crm.service import CrmService, midnight, next_midnight, rating_params
from acd.storage.crm import CrmStore

BEFORE_MIDNIGHT = 2.5  # seconds of real time the test waits for the office's midnight
OFFER_SOON = 10.0


@pytest.fixture
async def before_midnight(backend: Backend) -> AsyncIterator[tuple[Running, date]]:
    """A server whose clock reads BEFORE_MIDNIGHT seconds before the office's next midnight,
    and the office's date then (the day that midnight ends)."""
    deployment = example_deployment()
    shift = [0.0]
    store = await backend.open()
    server = await build(deployment, store, demo=True, clock=lambda: time.time() + shift[0])
    tz = ZoneInfo(deployment.tz)
    real = time.time()
    tomorrow = datetime.fromtimestamp(real, tz).date() + timedelta(days=1)
    midnight = datetime(tomorrow.year, tomorrow.month, tomorrow.day, tzinfo=tz).timestamp()
    shift[0] = midnight - BEFORE_MIDNIGHT - real  # no timer is set yet: nobody waits, no vacation
    http = TestServer(server.app, host="127.0.0.1", port=0)
    await http.start_server()  # the vacations' timer is set for the midnight the clock now nears
    session = ClientSession()
    r = Running(
        server, http, session, await store.create_token("admin", None), await store.create_token("supervisor", None)
    )
    try:
        yield r, tomorrow - timedelta(days=1)
    finally:
        await session.close()
        await http.close()
        await server.close()


async def vacation(r: Running, manager: str, first: date, last: date, substitute: str) -> int:
    body = {"manager_id": manager, "first_day": first.isoformat(), "last_day": last.isoformat()}
    status, v = await r.call("POST", "/api/crm/vacations", r.supervisor, json={**body, "substitute": substitute})
    assert status == 201, v
    return int(v["id"])


async def recorded_elsewhere(backend: Backend, manager: str, first: date, last: date, substitute: str) -> Vacation:
    """A vacation recorded as another node or a tool on the database records one: through a connection to
    the database and a CRM service of its own, which the running server knows nothing of."""
    deployment = example_deployment()
    store = await backend.open()
    try:
        managers = {m.id: m for m in deployment.managers}
        crm = CrmService(
            CrmStore(store), lambda: deployment, lambda: managers, DealRatings(rating_params(deployment), time.time())
        )
        return await crm.add_vacation(manager, first, last, substitute)
    finally:
        await store.close()


async def cancelled_elsewhere(backend: Backend, n: int) -> None:
    store = await backend.open()
    try:
        assert await CrmStore(store).delete_vacation(n)
    finally:
        await store.close()


RECORDED = pytest.mark.parametrize("where", ["api", "elsewhere"])


async def record(
    where: str, r: Running, backend: Backend, manager: str, first: date, last: date, substitute: str
) -> int:
    """A vacation recorded through this server's API, or elsewhere (`recorded_elsewhere`)."""
    if where == "api":
        return await vacation(r, manager, first, last, substitute)
    return (await recorded_elsewhere(backend, manager, first, last, substitute)).id


@RECORDED
async def test_a_vacation_beginning_at_midnight_takes_the_waiting_contact_to_the_substitute(
    before_midnight: tuple[Running, date], backend: Backend, where: str
) -> None:
    r, today = before_midnight
    await customer(r, "ООО Ромашка", "+7 916 900-00-01", account_manager="boris")
    waiting = await lead(r, "+7 916 900-00-01")  # the server reads (and keeps) the vacations: none
    assert waiting["preferred"] == ["boris"] and waiting["offered_to"] == "boris"
    n = await record(where, r, backend, "boris", today + timedelta(days=1), today + timedelta(days=5), "vera")
    assert await reroutes(r, str(waiting["id"])) == []  # not begun yet

    to_vera = offered(r, str(waiting["id"]), "vera")
    await asyncio.wait_for(to_vera, BEFORE_MIDNIGHT + OFFER_SOON)
    now = await seen(r, str(waiting["id"]))
    assert now["preferred"] == ["vera"] and now["offered_to"] == "vera" and now["seq"] == waiting["seq"]
    assert now["crm_reason"] == "account manager boris; boris on vacation, substitute vera"
    (why,) = await reroutes(r, str(waiting["id"]))
    assert f"vacation {n} of boris, substitute vera, begun" in why and "offer to boris withdrawn" in why


@RECORDED
async def test_a_vacation_ending_at_midnight_takes_the_waiting_contact_back(
    before_midnight: tuple[Running, date], backend: Backend, where: str
) -> None:
    r, today = before_midnight
    await customer(r, "ООО Ромашка", "+7 916 910-00-01", account_manager="boris")
    n = await record(where, r, backend, "boris", today - timedelta(days=3), today, "vera")
    cancelled = await vacation(r, "anna", today - timedelta(days=3), today, "vera")
    status, _ = await r.call("DELETE", f"/api/crm/vacations/{cancelled}", r.supervisor)
    assert status == 200  # its midnight comes too, and changes nothing
    waiting = await lead(r, "+7 916 910-00-01")
    assert waiting["preferred"] == ["vera"] and waiting["offered_to"] == "vera"

    to_boris = offered(r, str(waiting["id"]), "boris")
    await asyncio.wait_for(to_boris, BEFORE_MIDNIGHT + OFFER_SOON)
    now = await seen(r, str(waiting["id"]))
    assert now["preferred"] == ["boris"] and now["offered_to"] == "boris" and now["seq"] == waiting["seq"]
    assert now["crm_reason"] == "account manager boris"
    (why,) = await reroutes(r, str(waiting["id"]))
    assert f"vacation {n} of boris, substitute vera, over" in why and "offer to vera withdrawn" in why


async def test_a_vacation_cancelled_elsewhere_before_its_midnight_routes_nothing_again(
    before_midnight: tuple[Running, date], backend: Backend
) -> None:
    r, today = before_midnight
    await customer(r, "ООО Ромашка", "+7 916 940-00-01", account_manager="anna")
    await customer(r, "ООО Клевер", "+7 916 940-00-02", account_manager="boris")
    cancelled = await vacation(r, "anna", today + timedelta(days=1), today + timedelta(days=5), "daria")
    await vacation(r, "boris", today + timedelta(days=1), today + timedelta(days=5), "vera")  # its midnight: a sign
    annas = await lead(r, "+7 916 940-00-01")  # the server reads (and keeps) both vacations
    boriss = await lead(r, "+7 916 940-00-02")
    assert annas["offered_to"] == "anna" and boriss["offered_to"] == "boris"
    await cancelled_elsewhere(backend, cancelled)

    await asyncio.wait_for(offered(r, str(boriss["id"]), "vera"), BEFORE_MIDNIGHT + OFFER_SOON)
    assert await reroutes(r, str(annas["id"])) == []
    now = await seen(r, str(annas["id"]))
    assert now["preferred"] == ["anna"] and now["offered_to"] == "anna"
    assert now["crm_reason"] == "account manager anna"


@pytest.mark.parametrize(
    ("tz", "after", "then"),
    [
        ("Europe/Moscow", datetime(2026, 12, 7, 23, 59, 59), datetime(2026, 12, 8)),
        ("Europe/Moscow", datetime(2026, 12, 8), datetime(2026, 12, 9)),  # a midnight itself is behind
        ("Europe/Berlin", datetime(2026, 3, 29, 0, 0, 1), datetime(2026, 3, 30)),  # a 23-hour day
        ("Europe/Berlin", datetime(2026, 10, 25, 0, 0, 1), datetime(2026, 10, 26)),  # a 25-hour day
        ("America/Santiago", datetime(2026, 9, 5, 23, 59, 59), datetime(2026, 9, 6, 1)),  # clocks skip 00:00
    ],
)
def test_the_next_midnight_is_where_vacations_begin_and_end_across_daylight_saving(
    tz: str, after: datetime, then: datetime
) -> None:
    zone = ZoneInfo(tz)
    at = next_midnight(tz, after.replace(tzinfo=zone).timestamp())
    assert datetime.fromtimestamp(at, zone).replace(tzinfo=None) == then
    assert at == midnight(tz, then.date())  # where a vacation that day begins
