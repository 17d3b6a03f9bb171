"""The relay between nodes (acd.cluster.relay) on a real PostgreSQL: a request reaches the node
it names — or whichever node dispatches — and its answer comes back; silence means gone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from cluster_fixtures import Place

from acd.cluster import relay as relay_module
from acd.cluster.relay import DISPATCHER, Relay, Unanswered


@pytest.fixture
async def relays(pg_schema: Place) -> AsyncIterator[tuple[Relay, Relay, dict[str, bool]]]:
    leading = {"a": True, "b": False}
    a = Relay(pg_schema.url, pg_schema.schema, "a", lambda: leading["a"])
    b = Relay(pg_schema.url, pg_schema.schema, "b", lambda: leading["b"])
    await a.open()
    await b.open()
    try:
        yield a, b, leading
    finally:
        await b.close()
        await a.close()


def echo(name: str) -> Any:
    async def handler(body: dict[str, Any]) -> dict[str, Any]:
        return {"ok": {"by": name, **body}}

    return handler


async def test_a_request_is_answered_by_the_node_it_names_or_by_the_dispatching_one(
    relays: tuple[Relay, Relay, dict[str, bool]],
) -> None:
    a, b, leading = relays
    a.handlers["echo"], b.handlers["echo"] = echo("a"), echo("b")
    b.names.add("b-agi:4573")
    assert await a.ask("b-agi:4573", "echo", {"n": 1}) == {"ok": {"by": "b", "n": 1}}
    assert await b.ask(DISPATCHER, "echo", {"n": 2}) == {"ok": {"by": "a", "n": 2}}
    assert await a.ask(DISPATCHER, "echo", {"n": 3}) == {"ok": {"by": "a", "n": 3}}  # itself: no round trip
    leading["a"], leading["b"] = False, True  # a take-over
    assert await a.ask(DISPATCHER, "echo", {"n": 4}) == {"ok": {"by": "b", "n": 4}}
    answers = await asyncio.gather(*(a.ask("b", "echo", {"n": i}) for i in range(20)))
    assert [x["ok"]["n"] for x in answers] == list(range(20))  # each asker gets its own answer


async def test_a_node_that_is_not_there_or_fails_is_an_answer_too(
    relays: tuple[Relay, Relay, dict[str, bool]], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b, _ = relays
    monkeypatch.setattr(relay_module, "ACK_TIMEOUT", 1.0)  # how long silence takes to mean "gone"

    async def broken(_body: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("a bug")

    async def slow(_body: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(30)
        return {}

    b.handlers["broken"], b.handlers["slow"] = broken, slow
    with pytest.raises(Unanswered) as gone:
        await a.ask("c", "echo", {})
    assert gone.value.gone
    assert (await a.ask("b", "broken", {}))["error"][:2] == [500, "internal"]
    assert (await a.ask("b", "unknown", {}))["error"][:2] == [501, "not_supported"]
    with pytest.raises(Unanswered) as quiet:
        await a.ask("b", "slow", {}, answer_timeout=0.5)
    assert not quiet.value.gone  # it took the request: it may have done it
