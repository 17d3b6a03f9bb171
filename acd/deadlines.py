"""Adapter: the dispatcher's timers (the core's StartTimer and CancelTimer), all on one
event-loop timer.

Nearly every waiting contact has a deadline: its next escalation step, an offer's
timeout. With a `call_later` each, every waiting contact kept four more objects alive (the
handle, uvloop's timer, the bound method, a copy of the context), which every full garbage
collection walks: 40,000 of them with 10,000 contacts waiting, and a pause as long. Here the
deadlines wait in a heap, and one loop timer is set for the earliest of them.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)

# A heap entry a newer deadline replaced, or a cancelled one, is skipped when it comes up;
# the heap is rebuilt from the live deadlines when such entries outnumber them.
_REBUILD_AT = 64


class Deadlines(Generic[K]):
    """`fire(key)` once the deadline set for `key` comes (times on `clock`). Setting a key
    again replaces its deadline; cancelling one that is not set does nothing. Keys that
    come due together fire in deadline order, then in the order they were set."""

    def __init__(self, fire: Callable[[K], None], clock: Callable[[], float]) -> None:
        self._fire = fire
        self._clock = clock
        self._at: dict[K, float] = {}
        self._heap: list[tuple[float, int, K]] = []
        self._order = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._armed_for: float | None = None

    def __len__(self) -> int:
        return len(self._at)

    def __contains__(self, key: K) -> bool:
        return key in self._at

    def set(self, key: K, at: float) -> None:
        self._at[key] = at
        heapq.heappush(self._heap, (at, next(self._order), key))
        if self._armed_for is None or at < self._armed_for:
            self._arm(at)
        elif len(self._heap) > 2 * len(self._at) + _REBUILD_AT:
            self._rebuild()

    def cancel(self, key: K) -> None:
        if self._at.pop(key, None) is not None and len(self._heap) > 2 * len(self._at) + _REBUILD_AT:
            self._rebuild()

    def clear(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._armed_for = None
        self._at.clear()
        self._heap.clear()

    def _arm(self, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._armed_for = at
        self._timer = asyncio.get_running_loop().call_later(max(0.0, at - self._clock()), self._due)

    def _due(self) -> None:
        # What was due by the deadline the timer was set for fires, whatever the clock
        # says now; a later deadline gets the timer again, for its own time.
        until, self._timer, self._armed_for = self._armed_for, None, None
        heap = self._heap
        while heap and until is not None and heap[0][0] <= until:
            at, _, key = heapq.heappop(heap)
            if self._at.get(key) == at:
                del self._at[key]
                self._fire(key)
        while heap and self._at.get(heap[0][2]) != heap[0][0]:
            heapq.heappop(heap)  # replaced or cancelled
        if heap and (self._armed_for is None or heap[0][0] < self._armed_for):
            self._arm(heap[0][0])

    def _rebuild(self) -> None:
        self._heap = [(at, next(self._order), key) for key, at in self._at.items()]
        heapq.heapify(self._heap)
        if self._heap and self._heap[0][0] != self._armed_for:
            self._arm(self._heap[0][0])
