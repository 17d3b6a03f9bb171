"""res_agi writes what a channel lacks as ``unknown`` (fastagi_ivr: ``agi_dnid: unknown``,
``agi_rdnis: unknown``; the caller ID number and name the same way). The simulator does it too,
and the session gives "" for it."""

from __future__ import annotations

import asyncio

from acd.asterisk.fastagi import AgiSession, FastAgiServer
from acd.pbxsim import Caller, PbxSim


async def test_a_channel_without_caller_id_or_dnid_says_unknown_and_the_session_reads_nothing(
    sim: PbxSim, agi_server: FastAgiServer
) -> None:
    seen: list[AgiSession] = []

    async def handler(session: AgiSession) -> None:
        seen.append(session)

    agi_server.route("ivr", handler)
    call = sim.call(Caller(number="", name="", dialled=""))
    await asyncio.wait_for(call.agi_done, 5)
    session = seen[0]
    assert session.env["agi_callerid"] == "unknown" and session.env["agi_calleridname"] == "unknown"
    assert session.env["agi_dnid"] == "unknown" and session.env["agi_rdnis"] == "unknown"
    assert (session.caller_id, session.caller_name, session.dnid) == ("", "", "")


async def test_a_caller_with_a_number_but_no_name(sim: PbxSim, agi_server: FastAgiServer) -> None:
    seen: list[AgiSession] = []

    async def handler(session: AgiSession) -> None:
        seen.append(session)

    agi_server.route("ivr", handler)
    call = sim.call(Caller(number="5551234", name="", dialled="74951234567"))
    await asyncio.wait_for(call.agi_done, 5)
    assert (seen[0].caller_id, seen[0].caller_name, seen[0].dnid) == ("5551234", "", "74951234567")
