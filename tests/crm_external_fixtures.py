"""Test helpers for the external-CRM adapters: stand-in servers on 127.0.0.1 (port 0), our CRM
service over a real store with an `ExternalSync` attached, and contacts as they finish."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import yaml
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer
from api_fixtures import EXAMPLE, example_deployment
from storage_fixtures import Backend

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


class Clock:
    """A clock the test moves: back-offs fall due when the test says so, not after a sleep."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


Wired = tuple[CrmService, ExternalSync, Store]


@asynccontextmanager
async def wired(
    backend: Backend, deployment: Deployment, adapter: Any = None, clock: Callable[[], float] | None = None
) -> AsyncIterator[Wired]:
    """A store, our CRM and the external sync over it (its worker not started); both are
    closed on the way out."""
    store = await backend.open()
    crm, sync = attach(store, deployment, adapter)
    if clock is not None:
        sync.clock = clock
    try:
        yield crm, sync, store
    finally:
        await sync.stop()
        await store.close()


def write_config(tmp_path: Path, external: dict[str, Any]) -> Path:
    """The example deployment with `crm.external` set, written to tmp_path."""
    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    data["flows_dir"] = str(EXAMPLE.parent.parent / "ivr_flows")
    data["crm"]["external"] = external
    path = tmp_path / "acd.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


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


async def bitrix24_event(
    session: ClientSession, url: str, event: str, n: int | str, token: str | None
) -> tuple[int, Any]:
    """What a Bitrix24 outbound webhook posts for `event` on entity `n` (form-encoded, as the
    portal sends it: the portal's auth fields beside the application token)."""
    form = {
        "event": event,
        "event_handler_id": "3",
        "data[FIELDS][ID]": str(n),
        "ts": str(int(time.time())),
        "auth[domain]": "romashka.bitrix24.ru",
        "auth[client_endpoint]": "https://romashka.bitrix24.ru/rest/",
        "auth[server_endpoint]": "https://oauth.bitrix.info/rest/",
        "auth[member_id]": "a223c6b3710f85df22e9377d6c4f7553",
    }
    if token is not None:
        form["auth[application_token]"] = token
    async with session.post(url, data=form) as resp:
        return resp.status, await resp.json(content_type=None)


async def signed_notice(
    session: ClientSession, url: str, body: Any, secret: str, stamp: float | None = None
) -> tuple[int, Any]:
    """The generic CRM's change notification, signed as `acd.crm.external.http` documents
    (computed here, not by our code)."""
    raw = json.dumps(body).encode()
    at = str(int(time.time() if stamp is None else stamp))
    mac = "sha256=" + hmac.new(secret.encode(), at.encode() + b"." + raw, hashlib.sha256).hexdigest()
    headers = {"Content-Type": "application/json", "X-ACD-Timestamp": at, "X-ACD-Signature": mac}
    async with session.post(url, data=raw, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None)


# ---- Bitrix24's leads and list methods, for the stand-in portals -------------------------------

# A portal's lead statuses out of the box (crm.status.list, ENTITY_ID STATUS) and their semantics,
# which Bitrix24 keeps in the read-only STATUS_SEMANTIC_ID: P in progress, S converted, F junk.
LEAD_SEMANTICS = {"NEW": "P", "IN_PROCESS": "P", "PROCESSED": "P", "CONVERTED": "S", "JUNK": "F"}
PAGE = 50  # what one answer of a list method holds (apidocs.bitrix24.com, "Features of List Methods")


def php_query(query: str, resolve: Callable[[str], str] = lambda v: v) -> dict[str, Any]:
    """A query string as PHP reads it, as Bitrix24's `batch` reads its commands: `a[0]=x&a[1]=y`
    is a list, `f[ID]=1` an object; `resolve` sees each value first (`$result[...]`)."""
    out: dict[str, Any] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        name, _, rest = key.partition("[")
        path = [name, *rest.removesuffix("]").split("][")] if rest else [name]
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = resolve(value)
    return {k: _php_lists(v) for k, v in out.items()}


def _php_lists(value: Any) -> Any:
    """PHP's arrays keyed 0..n-1 are JSON lists."""
    if not isinstance(value, dict):
        return value
    value = {k: _php_lists(v) for k, v in value.items()}
    return list(value.values()) if list(value) == [str(i) for i in range(len(value))] else value


def list_page(rows: list[dict[str, Any]], start: Any) -> tuple[list[dict[str, Any]], int, int | None]:
    """One answer of a list method: the page from `start`, the total, and `next` (None on the
    last page, where Bitrix24 leaves it out)."""
    first = int(start or 0)
    page = rows[first : first + PAGE]
    return page, len(rows), first + PAGE if first + PAGE < len(rows) else None
