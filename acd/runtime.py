"""Adapter: the event loop the processes run on, and the garbage collector's settings."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import Awaitable, Callable
from typing import Any


def event_loop_runner() -> asyncio.Runner:
    """An asyncio runner on uvloop where it is installed (it is a dependency; the fallback
    keeps platforms without a wheel working)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.Runner()
    return asyncio.Runner(loop_factory=uvloop.new_event_loop)


# The young generation's size: 10,000 new objects, not 700. At 700, a burst of requests
# has its short-lived objects (each in flight for a few milliseconds) scanned again and
# again and promoted to older generations, whose collections then walk them once more: in
# the intake bench the event loop spent about 9 % of its time collecting. At 10,000 most
# of them die first; one young collection takes about 4 ms (at 50,000 about 20 ms, too
# long a stall for a call). Alternating runs: CPU per lead -6 %, leads/s +7 % (median of 8).
YOUNG_GENERATION = 10_000


def settle_memory() -> None:
    """For a long-running server, once it has started: what start-up allocated (modules, the
    configuration, the restored queue) is frozen out of the garbage collector's scans, so a
    full collection walks only what the server allocated since, and stalls calls and requests
    for less. (FastAGI benchmark, alternating runs on a noisy machine: p99 round trip 16-39 ms
    frozen, 22-95 ms not.) The young generation is made larger (YOUNG_GENERATION)."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_GENERATION, older, oldest)


async def wait_a_while(event: asyncio.Event, seconds: float | None) -> None:
    """Until `event` is set or `seconds` pass (None: no limit), whichever is first. Background
    loops wait with this, not `asyncio.wait_for(event.wait(), ...)`: on Python 3.11 a task
    cancelled inside that `wait_for` can lose the cancellation when the event is set at the
    same moment, and the `stop()` awaiting the task then hangs for good."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()


async def cancel_and_wait(task: asyncio.Task[Any]) -> None:
    """Cancel a background task and wait until it has ended. The cancellation is repeated:
    on Python 3.11 an `asyncio.wait_for` inside the task can swallow one when its own
    awaitable finishes at the same moment, and a single `cancel()` then waits forever."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=1.0)
    if not task.cancelled() and task.exception() is not None:
        raise task.exception()  # type: ignore[misc]


async def outbox_rounds(
    send_due: Callable[[], Awaitable[object]],
    next_due: Callable[[], Awaitable[float | None]],
    wake: asyncio.Event,
    clock: Callable[[], float],
    log: logging.Logger,
    what: str,
) -> None:
    """The worker of a durable outbox (notifications, CRM pushes): send what is due, then
    sleep until the next row is due or `wake` is set; a failed round is logged and tried
    again in 5 s. Runs until cancelled."""
    while True:
        wake.clear()
        try:
            await send_due()
            next_at = await next_due()
        except Exception:
            log.exception("%s round failed", what)
            next_at = clock() + 5
        await wait_a_while(wake, None if next_at is None else max(0.0, next_at - clock()))
