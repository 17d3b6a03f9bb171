"""A vacation begins or ends at midnight in the office's time zone, when nobody asks the server
for anything: the waiting contacts of its manager's customers go to the substitute then, and
back when it is over. Through a real server on 127.0.0.1 whose clock stands a moment before
the office's midnight, on SQLite and PostgreSQL."""

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
    http = TestServer(server.app, host="127.0.0.1", port=0)
    await http.start_server()
    session = ClientSession()
    tz = ZoneInfo(deployment.tz)
    real = time.time()
    tomorrow = datetime.fromtimestamp(real, tz).date() + timedelta(days=1)
    midnight = datetime(tomorrow.year, tomorrow.month, tomorrow.day, tzinfo=tz).timestamp()
    shift[0] = midnight - BEFORE_MIDNIGHT - real  # no timer is set yet: nobody waits, no vacation
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


async def test_a_vacation_beginning_at_midnight_takes_the_waiting_contact_to_the_substitute(
    before_midnight: tuple[Running, date],
) -> None:
    r, today = before_midnight
    await customer(r, "ООО Ромашка", "+7 916 900-00-01", account_manager="boris")
    waiting = await lead(r, "+7 916 900-00-01")
    assert waiting["preferred"] == ["boris"] and waiting["offered_to"] == "boris"
    n = await vacation(r, "boris", today + timedelta(days=1), today + timedelta(days=5), "vera")
    assert await reroutes(r, str(waiting["id"])) == []  # not begun yet

    to_vera = offered(r, str(waiting["id"]), "vera")
    await asyncio.wait_for(to_vera, BEFORE_MIDNIGHT + OFFER_SOON)
    now = await seen(r, str(waiting["id"]))
    assert now["preferred"] == ["vera"] and now["offered_to"] == "vera" and now["seq"] == waiting["seq"]
    assert now["crm_reason"] == "account manager boris; boris on vacation, substitute vera"
    (why,) = await reroutes(r, str(waiting["id"]))
    assert f"vacation {n} of boris, substitute vera, begun" in why and "offer to boris withdrawn" in why


async def test_a_vacation_ending_at_midnight_takes_the_waiting_contact_back(
    before_midnight: tuple[Running, date],
) -> None:
    r, today = before_midnight
    await customer(r, "ООО Ромашка", "+7 916 910-00-01", account_manager="boris")
    n = await vacation(r, "boris", today - timedelta(days=3), today, "vera")
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
