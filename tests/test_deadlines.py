"""The dispatcher's timers on one loop timer (acd.deadlines): every deadline fires once, in
deadline order, after its time and not before; setting a key again moves its deadline;
a cancelled one never fires; clearing stops them all."""

from __future__ import annotations

import asyncio
import random
import time

from acd.deadlines import Deadlines

MS = 0.001


class Recorder:
    def __init__(self) -> None:
        self.fired: list[tuple[str, float]] = []
        self.deadlines: Deadlines[str] = Deadlines(self.fire, time.monotonic)
        self.more = asyncio.Event()

    def fire(self, key: str) -> None:
        self.fired.append((key, time.monotonic()))
        self.more.set()

    @property
    def keys(self) -> list[str]:
        return [key for key, _ in self.fired]

    def at(self, delay: float) -> float:
        return time.monotonic() + delay

    async def until_fired(self, n: int, settle: float = 30 * MS) -> None:
        """Until `n` have fired (a busy machine may wake this late), and a little longer."""
        async with asyncio.timeout(10):
            while len(self.fired) < n:
                self.more.clear()
                await self.more.wait()
        await asyncio.sleep(settle)


async def test_each_deadline_fires_once_after_its_time_in_deadline_order() -> None:
    r = Recorder()
    wanted = {"c": r.at(30 * MS), "a": r.at(10 * MS), "b": r.at(20 * MS)}
    for key, at in wanted.items():
        r.deadlines.set(key, at)
    assert len(r.deadlines) == 3
    await r.until_fired(3)
    assert r.keys == ["a", "b", "c"]
    for key, fired_at in r.fired:
        assert fired_at >= wanted[key] - 2 * MS  # the loop's timer resolution, not earlier
    assert len(r.deadlines) == 0


async def test_setting_a_key_again_moves_its_deadline_either_way() -> None:
    r = Recorder()
    r.deadlines.set("later", r.at(10 * MS))
    r.deadlines.set("sooner", r.at(400 * MS))
    r.deadlines.set("later", r.at(300 * MS))  # moved back: not at 10 ms
    r.deadlines.set("sooner", r.at(5 * MS))  # moved forward: the timer is set again for it
    await r.until_fired(1)
    assert r.keys == ["sooner"]
    await r.until_fired(2)
    assert r.keys == ["sooner", "later"]


async def test_a_cancelled_deadline_never_fires_and_the_others_do() -> None:
    r = Recorder()
    r.deadlines.set("first", r.at(10 * MS))
    r.deadlines.set("second", r.at(20 * MS))
    r.deadlines.cancel("first")  # the one the loop timer was set for
    r.deadlines.cancel("never-set")
    assert "first" not in r.deadlines and "second" in r.deadlines
    await r.until_fired(1, settle=50 * MS)
    assert r.keys == ["second"]


async def test_deadlines_due_together_fire_in_the_order_they_were_set_and_past_ones_at_once() -> None:
    r = Recorder()
    at = r.at(300 * MS)
    for key in ("x", "y", "z"):
        r.deadlines.set(key, at)
    r.deadlines.set("past", r.at(-1.0))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert r.keys == ["past"]
    await r.until_fired(4)
    assert r.keys == ["past", "x", "y", "z"]


async def test_many_deadlines_moved_and_cancelled_fire_exactly_the_live_ones_in_order() -> None:
    # more replaced and cancelled entries than live ones: the heap is rebuilt on the way
    rng = random.Random(7)
    r = Recorder()
    live: dict[str, float] = {}
    for _ in range(600):
        key = f"k{rng.randrange(200)}"
        if rng.random() < 0.25:
            r.deadlines.cancel(key)
            live.pop(key, None)
        else:
            live[key] = r.at(rng.uniform(5, 60) * MS)
            r.deadlines.set(key, live[key])
    assert len(r.deadlines) == len(live)
    await r.until_fired(len(live), settle=80 * MS)
    assert sorted(r.keys) == sorted(live)  # each live key once, nothing else
    assert r.keys == sorted(live, key=live.__getitem__)


async def test_clearing_stops_every_deadline() -> None:
    r = Recorder()
    for i in range(5):
        r.deadlines.set(f"k{i}", r.at((i + 1) * 5 * MS))
    r.deadlines.clear()
    await asyncio.sleep(50 * MS)
    assert r.fired == [] and len(r.deadlines) == 0
    r.deadlines.set("again", r.at(5 * MS))  # and it works again afterwards
    await r.until_fired(1)
    assert r.keys == ["again"]
