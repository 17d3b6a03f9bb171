"""The server's clock: wall-clock timestamps that advance with the monotonic clock.

An NTP step (or an operator's `date -s`) moves CLOCK_REALTIME, not CLOCK_MONOTONIC. The routing
core measures durations as differences of timestamps (an offer's 20 s, a wait, a wrap-up, an
escalation step), so on the raw wall clock a step forward of an hour ages every waiting contact
by an hour in the decision log, and a step back of ten minutes keeps every outstanding offer
ringing ten minutes longer. This clock reads the wall clock once, when the process starts, and
from then on adds monotonic time: durations inside a running process are exact whatever the wall
clock does, and the timestamps it stores are wall-clock times as of the start. The next start
re-anchors it on the wall clock of that moment, so a step reaches the stored times once, at a
restart, where recovery takes offers back and re-arms timers from the stored times anyway.

What a customer was promised at a wall-clock time (a callback "after 18:00") is not a duration:
the callback scheduler compares it with the wall clock itself (`acd.telephony.callbacks`).
"""

from __future__ import annotations

import time
from collections.abc import Callable


class SteadyClock:
    """Call it for the time now: Unix seconds, steady between two wall-clock steps and across them."""

    def __init__(self, wall: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._wall = wall
        self._monotonic = monotonic
        self._offset = wall() - monotonic()

    def __call__(self) -> float:
        return self._offset + self._monotonic()

    def stepped(self) -> float:
        """How far the wall clock has been stepped since this clock was anchored (+ forward)."""
        return self._wall() - self()
