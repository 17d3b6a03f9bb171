"""Test helpers for the external-CRM adapters: stand-in servers on 127.0.0.1 (port 0), our CRM
service over a real store with an `ExternalSync` attached, and contacts as they finish."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer
from api_fixtures import example_deployment

from acd.config import Deployment
from acd.config.crm_external import ExternalCrmSettings
from acd.core.model import Channel, Contact, ContactStatus, Outcome
from acd.crm.external import ExternalSync, build_adapter
from acd.crm.provider import DealRatings
from acd.crm.service import CrmService, rating_params
from acd.storage import Store
from acd.storage.crm import CrmStore


@asynccontextmanager
async def stand_in(app: web.Application) -> AsyncIterator[TestServer]:
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    try:
        yield server
    finally:
        await server.close()


def with_external(settings: ExternalCrmSettings, deployment: Deployment | None = None) -> Deployment:
    return replace(deployment or example_deployment(), crm_external=settings)


def attach(store: Store, deployment: Deployment, adapter: Any = None) -> tuple[CrmService, ExternalSync]:
    """Our CRM with the office's CRM beside it, as the composition root wires them."""
    settings = deployment.crm_external
    assert settings is not None
    managers = {m.id: m for m in deployment.managers}
    crm = CrmService(CrmStore(store), lambda: deployment, lambda: managers, DealRatings(rating_params(deployment)))
    sync = ExternalSync(adapter or build_adapter(settings), store, lambda: deployment.crm_external, lambda: "RU")
    crm.external = sync
    return crm, sync


def call(contact_id: str, phone: str = "", email: str = "", channel: Channel = Channel.CALL) -> Contact:
    return Contact(contact_id, channel, arrived_at=1_000.0, phone=phone, email=email)


def finished(contact: Contact, manager: str, outcome: Outcome = Outcome.DONE) -> Contact:
    return replace(
        contact,
        status=ContactStatus.FINISHED,
        assigned_to=manager,
        outcome=outcome,
        finished_at=contact.arrived_at + 300,
    )


async def next_of(queue: asyncio.Queue[Any], within: float = 10.0) -> Any:
    """The next thing a stand-in heard (waits on its queue, never polls)."""
    return await asyncio.wait_for(queue.get(), within)
