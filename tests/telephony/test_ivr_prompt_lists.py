"""An IVR question made of several sounds is heard on a real Asterisk.

AGI GET DATA plays one file: ``GET DATA a&b`` opens a file named ``a&b``, which does not exist, and
Asterisk answers ``200 result=-1`` at once (the simulator does the same, see
tests/asterisk/test_sim_prompt_files.py). The language menu (one sound per language) and a question
repeated after a wrong key ("invalid" + the question) are such lists.
"""

from __future__ import annotations

import asyncio

from telephony_harness import Harness, classic_agi

from acd.core import events as ev
from acd.pbxsim import Caller, Press

UNLISTED = "100"  # not in the flow's by_number: the caller is asked for the language
MOSCOW = "74951234567"
# Prompts long enough (60 ms real) that a key pressed 0.2 s into one lands while it plays,
# on a loaded machine too: the harness's 0.3 s prompts end 2 ms after such a press.
LONG_PROMPT = 3.0


async def test_the_language_menu_is_heard_and_a_key_pressed_during_it_chooses_the_language(h: Harness) -> None:
    h.sim.default_prompt = LONG_PROMPT
    call = h.sim.call(Caller(dialled=UNLISTED, steps=[Press("2"), Press("1"), Press("1"), Press("3")]))
    offer = await h.command(ev.OfferContact)
    assert offer.contact.language == "en"
    assert offer.contact.criteria == {"temperature": "hot", "purpose": "purchase", "price_tier": "high"}
    result = await asyncio.wait_for(call.agi_done, 5)
    assert not any("&" in command for command in result.agi_commands)
    await h.ended_call()


async def test_after_a_wrong_key_the_invalid_prompt_and_the_question_are_both_played(h: Harness) -> None:
    h.sim.default_prompt = LONG_PROMPT
    call = h.sim.call(Caller(dialled=MOSCOW, steps=[Press("9"), Press("2"), Press("1"), Press("3")]))
    offer = await h.command(ev.OfferContact)
    assert offer.contact.criteria == {"temperature": "cold", "purpose": "purchase", "price_tier": "high"}
    assert offer.contact.payload["ivr"]["temperature"] == "caller"
    result = await asyncio.wait_for(call.agi_done, 5)
    invalid = [c for c in result.agi_commands if "invalid-ru" in c]
    assert invalid and all(c.startswith("STREAM FILE") for c in invalid)
    await h.ended_call()


async def test_the_classic_agi_script_asks_the_language_without_a_list_of_files() -> None:
    """Asterisk's side of classic AGI (pyst2 raises on the -1 that GET DATA of a list gets)."""
    env = {"agi_request": "/usr/bin/python3", "agi_channel": "PJSIP/trunk-00000001", "agi_dnid": UNLISTED}

    def reply(line: str) -> str:
        if line.startswith("GET DATA") and "&" in line.split()[2]:
            return "200 result=-1"  # no such file
        if line.startswith("GET DATA") and "/language-" in line:
            return "200 result=2"  # "For English, press 2"
        if line.startswith("GET DATA"):
            return "200 result=1"
        return "200 result=0 endpos=8000" if line.startswith("STREAM FILE") else "200 result=1"

    commands = await classic_agi(env, reply)
    assert 'SET VARIABLE "IVR_LANGUAGE" "en"' in commands
