"""Pure: the virtual clock both the simulator and the backtest run on — a heap of things
due, and the core's timers kept on it."""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass

from acd.core import events as ev
from acd.core.model import Presence


@dataclass(frozen=True, slots=True)
class TimerDue:
    key: tuple[str, str]
    at: float


@dataclass(frozen=True, slots=True)
class SetPresence:
    manager_id: str
    presence: Presence


@dataclass(frozen=True, slots=True)
class Accept:
    contact_id: str
    manager_id: str


@dataclass(frozen=True, slots=True)
class Finish:
    contact_id: str
    manager_id: str


class Agenda:
    """Items by due time; ties keep the order they were added in."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, object]] = []
        self._n = 0
        self._timers: dict[tuple[str, str], float] = {}

    def add(self, at: float, item: object) -> None:
        self._n += 1
        heapq.heappush(self._heap, (at, self._n, item))

    def next_at(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def pop(self) -> tuple[float, object]:
        at, _, item = heapq.heappop(self._heap)
        return at, item

    def keep_timers(self, commands: Iterable[ev.Command]) -> None:
        """Put the core's StartTimer on the agenda and forget cancelled ones."""
        for cmd in commands:
            if isinstance(cmd, ev.StartTimer):
                self._timers[cmd.key] = cmd.at
                self.add(cmd.at, TimerDue(cmd.key, cmd.at))
            elif isinstance(cmd, ev.CancelTimer):
                self._timers.pop(cmd.key, None)

    def fire(self, due: TimerDue) -> bool:
        """True if this timer is still the one the core wants (not cancelled or restarted)."""
        if self._timers.get(due.key) != due.at:
            return False
        del self._timers[due.key]
        return True
