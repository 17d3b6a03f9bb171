"""Test fixtures: a real server on 127.0.0.1 (port 0) over each storage backend.

pytest_plugins = ["storage_fixtures", "api_fixtures"]
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer
from storage_fixtures import Backend

from acd.app import Server, build
from acd.config import Deployment, RateLimits, load_deployment

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config" / "acd.example.yaml"


def example_deployment(**limits: int) -> Deployment:
    d = load_deployment(EXAMPLE, environ={})
    rate = RateLimits(**{"leads_per_minute": 100_000, "api_per_minute": 100_000, **limits})
    return replace(d, web=replace(d.web, rate_limits=rate))


@dataclass
class Running:
    server: Server
    http: TestServer
    session: ClientSession
    admin: str
    supervisor: str

    def url(self, path: str) -> str:
        return str(self.http.make_url(path))

    async def call(self, method: str, path: str, token: str | None = None, **kw: Any) -> tuple[int, Any]:
        headers = dict(kw.pop("headers", {}))
        if token:
            headers["Authorization"] = f"Bearer {token}"
        async with self.session.request(method, self.url(path), headers=headers, **kw) as resp:
            body = await resp.json(content_type=None) if resp.content_type == "application/json" else await resp.text()
            return resp.status, body

    async def manager_token(self, manager_id: str) -> str:
        return await self.server.store.create_token("manager", manager_id)

    async def settle(self) -> None:
        """Wait until the dispatcher has handled everything posted so far."""
        from acd.core.events import HeartbeatReceived

        some = next(iter(self.server.dispatcher.board.managers))
        await self.server.dispatcher.submit(HeartbeatReceived(some))


async def start(backend: Backend, deployment: Deployment, demo: bool = True) -> Running:
    store = await backend.open()
    server = await build(deployment, store, demo=demo)
    http = TestServer(server.app, host="127.0.0.1", port=0)
    await http.start_server()
    session = ClientSession()
    admin = await store.create_token("admin", None)
    supervisor = await store.create_token("supervisor", None)
    return Running(server, http, session, admin, supervisor)


async def stop(r: Running) -> None:
    await r.session.close()
    await r.http.close()
    await r.server.close()


@pytest.fixture
async def running(backend: Backend) -> AsyncIterator[Running]:
    r = await start(backend, example_deployment())
    try:
        yield r
    finally:
        await stop(r)
