"""Asterisk's own words (SAY NUMBER) in the caller's language: the ACD sets CHANNEL(language)
once the IVR knows it, before any number is said, and passes the gender Russian needs."""

from __future__ import annotations

import asyncio

from telephony_harness import DEVICES, Harness, start_harness

from acd.core import events as ev
from acd.core.model import Presence
from acd.pbxsim import Caller, Press, say_number_files

MOSCOW = "74951234567"  # ivr_flows/main.yaml: Russian by number
ENGLISH = "74957654321"  # ... English by number


async def _only_busy_managers(h: Harness) -> None:
    """Two staffed managers, both on other calls: a caller waits and hears the expected wait."""
    for mid in DEVICES:
        if mid not in ("anna", "boris"):
            await h.server.dispatcher.submit(ev.PresenceSet(mid, Presence.PAUSED, "lunch"))
    for mid in ("anna", "boris"):
        h.sim.set_device_state(DEVICES[mid], "INUSE")
    async with asyncio.timeout(5):
        while not all(h.board.managers[m].presence is Presence.BUSY for m in ("anna", "boris")):
            await h.settle()


def test_the_simulated_pbx_says_numbers_as_asterisk_does() -> None:
    assert say_number_files(1, "ru", "f") == ["digits/1f"]  # одна (минута)
    assert say_number_files(1, "ru") == ["digits/1"]  # один
    assert say_number_files(22, "ru", "f") == ["digits/20", "digits/2f"]  # двадцать две
    assert say_number_files(5, "ru", "f") == ["digits/5"]
    assert say_number_files(1, "en", "f") == ["digits/1"]  # English has no gender
    assert say_number_files(21, "en") == ["digits/20", "digits/1"]


async def test_a_russian_callers_channel_speaks_russian_before_any_number_and_minutes_are_feminine() -> None:
    h, stop = await start_harness(announce_wait=True, announce_every=0.3, average_handle=150.0)
    try:
        await _only_busy_managers(h)
        call = h.sim.call(Caller(dialled=MOSCOW, steps=[Press("1"), Press("1"), Press("3")], hangup_after=60))
        result = await asyncio.wait_for(call.agi_done, 10)
        commands = result.agi_commands
        says = [i for i, c in enumerate(commands) if c.startswith("SAY NUMBER")]
        assert says, "numbers were said"
        lang = commands.index("SET VARIABLE CHANNEL(language) ru")
        assert lang < says[0], "the language is set before the first number"
        # position 1, two managers, 150 s a call: "about 1 minute", одна минута
        assert 'SAY NUMBER 1 "" f' in commands
        heard = h.sim.said
        assert heard and all(s.language == "ru" for s in heard), "every number in Russian"
        minutes = [s for s in heard if s.gender == "f"]
        assert minutes and minutes[0].files == ("digits/1f",)
        positions = [s for s in heard if s.gender is None]
        assert positions and positions[0].files == ("digits/1",), "the position: номер один, masculine"
        assert result.variables.get("CHANNEL(language)") is None, "a function write, not a variable"
        await call.ended.wait()
    finally:
        await stop()


async def test_an_english_caller_on_an_english_channel_gets_no_gender_and_no_needless_command() -> None:
    h, stop = await start_harness(announce_wait=True, average_handle=150.0)
    try:
        await _only_busy_managers(h)
        call = h.sim.call(Caller(dialled=ENGLISH, steps=[Press("1"), Press("1"), Press("3")], hangup_after=60))
        commands = (await asyncio.wait_for(call.agi_done, 10)).agi_commands
        assert not any("CHANNEL(language)" in c for c in commands), "the channel is English already"
        assert 'SAY NUMBER 1 ""' in commands
        assert h.sim.said and all(s.language == "en" and s.gender is None for s in h.sim.said)
        await call.ended.wait()
    finally:
        await stop()


async def test_a_language_picked_in_the_menu_is_set_and_stays_with_the_channel(h: Harness) -> None:
    # A number the flow does not know: the caller picks Russian in the menu; the channel keeps
    # it to the end of the call (its events say Language: ru, as Asterisk's would).
    call = h.sim.call(Caller(dialled="100", steps=[Press("1"), Press("1"), Press("1"), Press("3")]))
    result = await asyncio.wait_for(call.agi_done, 10)
    assert "SET VARIABLE CHANNEL(language) ru" in result.agi_commands
    await call.ended.wait()
    hangups = [e for e in h.sim.events if ("Event", "Hangup") in e and ("Channel", call.channel) in e]
    assert hangups and ("Language", "ru") in hangups[0]
