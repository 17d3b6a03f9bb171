"""The expected-wait announcement: a pure estimate, and what a waiting caller hears."""

from __future__ import annotations

import asyncio

from telephony_harness import DEVICES, start_harness

from acd.core import events as ev
from acd.core.model import Presence
from acd.pbxsim import Caller, Press
from acd.telephony.calls import expected_wait, minutes_word, wait_minutes

MOSCOW = "74951234567"


def test_the_estimate_shares_the_callers_ahead_among_the_staffed_managers() -> None:
    assert expected_wait(1, 1, 180.0) == 180.0
    assert expected_wait(3, 2, 120.0) == 180.0
    assert expected_wait(4, 4, 60.0) == 60.0


def test_there_is_no_estimate_when_nobody_is_staffed_or_the_caller_is_not_queued() -> None:
    assert expected_wait(2, 0, 180.0) is None
    assert expected_wait(0, 3, 180.0) is None


def test_minutes_are_rounded_to_the_nearest_like_app_queue() -> None:
    assert [wait_minutes(s) for s in (0, 29, 30, 89, 90, 600)] == [0, 0, 1, 1, 2, 10]


def test_the_word_after_the_number_agrees_with_it() -> None:
    ru = {n: minutes_word(n, "ru") for n in (1, 2, 4, 5, 11, 12, 21, 22, 25, 111)}
    assert ru == {
        1: "minutes-1",
        2: "minutes-2",
        4: "minutes-2",
        5: "minutes-5",
        11: "minutes-5",
        12: "minutes-5",
        21: "minutes-1",
        22: "minutes-2",
        25: "minutes-5",
        111: "minutes-5",
    }
    assert (minutes_word(1, "en"), minutes_word(2, "en")) == ("minutes-1", "minutes-5")


async def test_a_caller_who_has_to_wait_hears_the_expected_wait_on_entering_and_again_periodically() -> None:
    h, stop = await start_harness(announce_wait=True, announce_every=0.3, average_handle=150.0)
    try:
        for mid in DEVICES:
            if mid not in ("anna", "boris"):
                await h.server.dispatcher.submit(ev.PresenceSet(mid, Presence.PAUSED, "lunch"))
        for mid in ("anna", "boris"):
            h.sim.set_device_state(DEVICES[mid], "INUSE")  # on other calls: staffed, not free
        async with asyncio.timeout(5):
            while not all(h.board.managers[m].presence is Presence.BUSY for m in ("anna", "boris")):
                await h.settle()

        call = h.sim.call(Caller(dialled=MOSCOW, steps=[Press("1"), Press("1"), Press("3")], hangup_after=60))
        await call.ended.wait()
        commands = (await asyncio.wait_for(call.agi_done, 5)).agi_commands
        said = [c for c in commands if "expected-wait" in c or c.startswith("SAY NUMBER") or "minutes-" in c]
        # position 1, two staffed managers, 150 s a call: 75 s, "about 1 minute"
        assert said[:3] == [
            'STREAM FILE acd/common/expected-wait-ru ""',
            'SAY NUMBER 1 "" f',  # одна минута: Russian minutes are feminine
            'STREAM FILE acd/common/minutes-1-ru ""',
        ]
        periodic = [c for c in commands[commands.index(said[2]) :] if c.startswith("STREAM FILE acd/common/position")]
        assert periodic, "the periodic announcement came"
        i = commands.index(periodic[0])
        assert any("expected-wait-ru" in c for c in commands[i:]), "and it says the wait again"
    finally:
        await stop()


async def test_nothing_is_announced_when_a_manager_is_free() -> None:
    h, stop = await start_harness(announce_wait=True)
    try:
        call = h.sim.call(Caller(dialled=MOSCOW, steps=[Press("1"), Press("1"), Press("3")]))
        await h.ended_call()
        commands = (await asyncio.wait_for(call.agi_done, 5)).agi_commands
        assert not any("expected-wait" in c for c in commands)
    finally:
        await stop()


async def test_the_average_handle_time_follows_the_calls_taken() -> None:
    h, stop = await start_harness(average_handle=400.0)
    try:
        h.sim.call(Caller(dialled=MOSCOW, steps=[Press("1"), Press("1"), Press("3")]))
        await h.ended_call()
        # a short call (2 telephone seconds here) pulls the 400 s assumption down by a quarter of the gap
        assert 299.0 < h.telephony.desk.handle_time < 301.0
    finally:
        await stop()
