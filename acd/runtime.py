"""Adapter: the event loop the processes run on."""

from __future__ import annotations

import asyncio


def event_loop_runner() -> asyncio.Runner:
    """An asyncio runner on uvloop where it is installed (it is a dependency; the fallback
    keeps platforms without a wheel working)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.Runner()
    return asyncio.Runner(loop_factory=uvloop.new_event_loop)
