"""The database goes away for a while under load: requests during the outage are refused
with 503 (never acknowledged), routing waits, and once it is back every acknowledged lead
is stored and routed."""

from __future__ import annotations

import asyncio
import os
import secrets

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from acd.app import build
from acd.core.events import HeartbeatReceived
from acd.storage import open_store
from tests.api_fixtures import example_deployment
from tests.reliability.tcp_proxy import CuttableProxy
from tests.storage_fixtures import drop_schema

PG = os.environ.get("ACD_TEST_PG_URL")
LEAD = {"name": "Outage", "phone": "+7 900 111-22-33", "criteria": {"temperature": "hot"}}

pytestmark = [pytest.mark.postgres, pytest.mark.skipif(not PG, reason="ACD_TEST_PG_URL is not set: needs PostgreSQL")]


async def test_a_database_outage_loses_no_acknowledged_lead() -> None:
    assert PG
    url = make_url(PG)
    proxy = CuttableProxy(url.host or "127.0.0.1", url.port or 5432)
    await proxy.start()
    schema = f"t_{secrets.token_hex(6)}"
    store = await open_store(url.set(host="127.0.0.1", port=proxy.port).render_as_string(False), schema=schema)
    server = await build(example_deployment(), store, demo=True)
    http = TestServer(server.app, host="127.0.0.1", port=0)
    await http.start_server()
    acked: set[str] = set()
    refused = 0
    try:
        async with ClientSession() as client:

            async def submit() -> None:
                nonlocal refused
                async with client.post(http.make_url("/api/leads"), json=LEAD) as r:
                    if r.status == 201:
                        acked.add((await r.json())["id"])
                    else:
                        assert r.status == 503, await r.text()
                        refused += 1

            await asyncio.gather(*(submit() for _ in range(20)))
            token = await store.create_token("supervisor", None)
            async with client.get(http.make_url("/api/me"), headers={"Authorization": f"Bearer {token}"}) as r:
                assert r.status == 200  # the panel's token is verified (and cached) before the outage
            proxy.sever()
            await asyncio.gather(*(submit() for _ in range(10)))

            async def pause_boris() -> int:
                headers = {"Authorization": f"Bearer {token}"}
                body = {"state": "paused", "reason": "meeting"}
                async with client.post(http.make_url("/api/managers/boris/presence"), json=body, headers=headers) as r:
                    return r.status

            # a change routed through the dispatcher waits for the database instead of failing
            pending = asyncio.create_task(pause_boris())
            await asyncio.sleep(0.3)
            assert not pending.done()
            async with client.get(http.make_url("/healthz")) as r:
                assert r.status == 503
            proxy.restore()
            assert await asyncio.wait_for(pending, 30) == 200
            await asyncio.gather(*(submit() for _ in range(20)))
        assert refused >= 10
        # the dispatcher's commits were retried: everything reaches the database
        await server.dispatcher.submit(HeartbeatReceived("anna"))
        routed = {c.id for c in server.dispatcher.board.contacts.values()}
        assert acked <= routed
        check = await open_store(PG, schema=schema)
        try:
            stored = {c.id for c in await check.load_open_contacts()}
        finally:
            await check.close()
        assert acked <= stored
    finally:
        proxy.restore()  # else shutting down would wait for the database forever
        await http.close()
        await server.close()
        await proxy.close()
        admin = create_async_engine(PG)
        await drop_schema(admin, schema)
        await admin.dispose()
