"""The order in which a node passes on the leader's effects (acd.cluster.effects): the table
is a plain list here, since what is tested is the feed's bookkeeping, not PostgreSQL (that is
tests/cluster/test_liveness.py)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from acd.cluster.effects import EffectFeed


class Table:
    def __init__(self) -> None:
        self.rows: list[tuple[int, dict[str, Any]]] = []
        self.reading = asyncio.Event()
        self.go_on = asyncio.Event()
        self.go_on.set()

    def add(self, effect_id: int, name: str, **extra: Any) -> str:
        cmd = {"type": name, **extra}
        self.rows.append((effect_id, cmd))
        return json.dumps({"id": effect_id, "cmd": cmd})

    async def after(self, effect_id: int) -> list[tuple[int, dict[str, Any]]]:
        self.reading.set()
        await self.go_on.wait()
        return [(i, c) for i, c in self.rows if i > effect_id][:2]  # a small page: several reads


async def test_effects_missed_while_not_listening_are_read_back_before_those_heard_meanwhile() -> None:
    table = Table()
    got: list[str] = []
    newest = asyncio.Event()

    def deliver(cmd: dict[str, Any]) -> None:
        got.append(cmd["type"])
        if cmd["type"] == "offer-5":
            newest.set()

    feed = EffectFeed(table.after, deliver, lambda cmd: cmd.get("stale", False))
    feed.heard(table.add(1, "offer-1"))
    feed.lost()
    table.add(2, "offer-2")
    table.add(3, "old-offer", stale=True)
    table.add(4, "withdraw-2")
    table.go_on.clear()
    feed.back()
    await table.reading.wait()  # reading the table...
    feed.heard(table.add(5, "offer-5"))  # ...while a new one is heard live: it waits its turn
    feed.heard(json.dumps({"id": 4, "cmd": {"type": "withdraw-2"}}))
    table.go_on.set()
    await asyncio.wait_for(newest.wait(), 5)
    assert got == ["offer-1", "offer-2", "withdraw-2", "offer-5"]  # in id order, each once, the stale one left out
    assert feed.caught_up == 3 and feed.last == 5  # offer-5 was in the table by then: read, not held
    feed.heard(table.add(6, "notice"))
    assert got[-1] == "notice"
    await feed.close()
