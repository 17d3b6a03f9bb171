"""Helpers for the tests of re-routing through the API: a customer, a lead of theirs, how a
contact stands, and why it was routed again."""

from __future__ import annotations

import asyncio
from typing import Any

from api_fixtures import Running

from acd.core.events import Command, OfferContact

HOT_BIG = {"temperature": "hot", "purpose": "purchase", "price_tier": "high"}


async def customer(r: Running, name: str, phone: str, **fields: Any) -> str:
    status, c = await r.call(
        "POST", "/api/crm/customers", r.supervisor, json={"name": name, "phones": [phone], **fields}
    )
    assert status == 201, c
    return str(c["id"])


async def lead(r: Running, phone: str) -> dict[str, Any]:
    status, body = await r.call("POST", "/api/leads", json={"name": "Иван", "phone": phone, "criteria": HOT_BIG})
    assert status == 201, body
    await r.settle()
    return await seen(r, str(body["id"]))


async def seen(r: Running, cid: str) -> dict[str, Any]:
    status, c = await r.call("GET", f"/api/contacts/{cid}", r.supervisor)
    assert status == 200, c
    return c  # type: ignore[no-any-return]


async def reroutes(r: Running, cid: str) -> list[str]:
    status, log = await r.call("GET", f"/api/decisions?contact_id={cid}", r.supervisor)
    assert status == 200, log
    return [x["summary"] for x in log["decisions"] if x["kind"] == "reroute"]


def offered(r: Running, contact_id: str, manager: str) -> asyncio.Future[None]:
    """Done once the dispatcher has offered the contact to `manager` (after its commit): for
    re-routing that runs after the request that caused it has answered (a deactivation, a
    vacation's midnight)."""
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def listen(cmd: Command) -> None:
        mine = isinstance(cmd, OfferContact) and (cmd.contact.id, cmd.manager.id) == (contact_id, manager)
        if mine and not done.done():
            done.set_result(None)

    r.server.dispatcher.subscribe(listen)
    return done
