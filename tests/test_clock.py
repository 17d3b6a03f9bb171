"""The server's steady clock (acd.clock): wall-clock time at the start, monotonic time after."""

from __future__ import annotations

from acd.clock import SteadyClock


class Clocks:
    """A wall clock an NTP daemon may step and a monotonic clock nobody can, both hand-held."""

    def __init__(self) -> None:
        self.wall_time = 1_800_000_000.0
        self.monotonic_time = 5_000.0

    def wall(self) -> float:
        return self.wall_time

    def monotonic(self) -> float:
        return self.monotonic_time

    def elapse(self, seconds: float) -> None:
        self.wall_time += seconds
        self.monotonic_time += seconds


def test_reads_the_wall_clock_at_the_start_and_advances_with_the_monotonic_one() -> None:
    clocks = Clocks()
    clock = SteadyClock(clocks.wall, clocks.monotonic)
    assert clock() == 1_800_000_000.0
    clocks.elapse(20.5)
    assert clock() == 1_800_000_020.5
    assert clock.stepped() == 0.0


def test_a_step_of_the_wall_clock_changes_no_duration_and_is_reported() -> None:
    clocks = Clocks()
    clock = SteadyClock(clocks.wall, clocks.monotonic)
    offered_at = clock()
    clocks.wall_time += 3600  # NTP steps the wall clock forward an hour
    clocks.elapse(5)
    assert clock() - offered_at == 5  # the offer has been out 5 s, not an hour
    assert clock.stepped() == 3600
    clocks.wall_time -= 3600 + 600  # ...and then back ten minutes behind where it started
    clocks.elapse(5)
    assert clock() - offered_at == 10
    assert clock.stepped() == -600


def test_a_restart_re_anchors_on_the_wall_clock_of_that_moment() -> None:
    clocks = Clocks()
    before = SteadyClock(clocks.wall, clocks.monotonic)
    clocks.wall_time += 3600
    after = SteadyClock(clocks.wall, clocks.monotonic)  # the next process
    assert after() - before() == 3600
    assert after.stepped() == 0.0


def test_its_time_never_goes_backwards_when_the_wall_clock_does() -> None:
    clocks = Clocks()
    clock = SteadyClock(clocks.wall, clocks.monotonic)
    readings = []
    for step in (0.1, -600.0, 0.1, 3600.0, 0.1, -7200.0):
        clocks.wall_time += step
        clocks.monotonic_time += 0.1
        readings.append(clock())
    assert readings == sorted(readings)
