"""Adapter: the event loop the processes run on, and the garbage collector's settings."""

from __future__ import annotations

import asyncio
import gc


def event_loop_runner() -> asyncio.Runner:
    """An asyncio runner on uvloop where it is installed (it is a dependency; the fallback
    keeps platforms without a wheel working)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.Runner()
    return asyncio.Runner(loop_factory=uvloop.new_event_loop)


def settle_memory() -> None:
    """For a long-running server, once it has started: what start-up allocated (modules, the
    configuration, the restored queue) is frozen out of the garbage collector's scans, so a
    full collection walks only what the server allocated since, and stalls calls and requests
    for less. (FastAGI benchmark, alternating runs on a noisy machine: p99 round trip 16-39 ms
    frozen, 22-95 ms not.)"""
    gc.collect()
    gc.freeze()
