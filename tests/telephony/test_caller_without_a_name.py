"""A caller whose trunk sends a number but no name (most PSTN trunks).

res_agi writes a missing caller ID name, number or DNID as the word ``unknown`` in the env block
(``fastagi_ivr``: ``agi_dnid: unknown``; ``pyst2_agi_classic``: the same): it is no value, and
must not become the customer's name on the screen pop and in the CRM.
"""

from __future__ import annotations

import asyncio

from telephony_harness import Harness, classic_agi

from acd.core import events as ev
from acd.pbxsim import Caller, Press

MOSCOW = "74951234567"


async def test_a_caller_without_a_name_is_not_called_unknown(h: Harness) -> None:
    h.sim.call(Caller(number="79161112233", name="", dialled=MOSCOW, steps=[Press("1"), Press("1"), Press("3")]))
    offer = await h.command(ev.OfferContact)
    assert offer.contact.phone == "79161112233"
    assert offer.contact.customer_name != "unknown"
    await h.ended_call()


async def test_a_caller_without_a_number_is_anonymous_and_the_language_comes_from_the_dialled_number(
    h: Harness,
) -> None:
    call = h.sim.call(Caller(number="", name="", dialled=MOSCOW, steps=[Press("1"), Press("1"), Press("3")]))
    offer = await h.command(ev.OfferContact)
    assert offer.contact.phone == "" and offer.contact.customer_name == ""
    assert offer.contact.language == "ru"
    result = await asyncio.wait_for(call.agi_done, 5)
    assert not any("language-" in c for c in result.agi_commands)  # Moscow's number: no language menu
    await h.ended_call()


async def test_the_classic_agi_script_takes_the_extension_when_the_dnid_is_unknown() -> None:
    """pyst2_agi_classic: a channel without a DNID says ``agi_dnid: unknown``; the number dialled
    is then the extension, and Moscow's number needs no language question."""
    env = {"agi_request": "/usr/bin/python3", "agi_dnid": "unknown", "agi_extension": MOSCOW}
    commands = await classic_agi(
        env, lambda line: "200 result=0 endpos=8000" if line.startswith("STREAM FILE") else "200 result=1"
    )
    assert not any("language-" in c for c in commands)
    assert 'SET VARIABLE "IVR_LANGUAGE" "ru"' in commands
