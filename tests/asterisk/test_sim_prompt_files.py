"""The simulator opens prompts the way Asterisk 20 does: STREAM FILE and GET DATA take *one* file.

``fastagi_ivr`` records ``STREAM FILE no-such-prompt ""`` → ``200 result=-1 endpos=0``; GET DATA
with a prompt that cannot be opened answers ``200 result=-1`` at once (ast_app_getdata_full returns
ast_streamfile's -1 before reading any key). Only applications split ``a&b`` into several files
(Playback, Read), so ``a&b`` given to GET DATA names a file that does not exist.
"""

from __future__ import annotations

import asyncio
import time

from acd.asterisk.fastagi import AgiReply, AgiSession, FastAgiServer
from acd.pbxsim import Caller, PbxSim, Press


async def run_commands(sim: PbxSim, agi_server: FastAgiServer, commands: list[str], steps: list) -> list[AgiReply]:  # type: ignore[type-arg]
    replies: list[AgiReply] = []

    async def handler(session: AgiSession) -> None:
        for text in commands:
            replies.append(await session.command(text))

    agi_server.route("ivr", handler)
    call = sim.call(Caller(script="ivr", steps=steps))
    await asyncio.wait_for(call.agi_done, 5)
    return replies


async def test_get_data_of_a_list_of_files_fails_at_once_like_a_missing_file(sim: PbxSim, agi_server) -> None:
    started = time.monotonic()
    replies = await run_commands(
        sim,
        agi_server,
        ["GET DATA beep&hello-world 5000 1", "GET DATA no-such-prompt 5000 1", 'STREAM FILE beep&hello-world "12"'],
        [],
    )
    assert [r.lines[0] for r in replies] == ["200 result=-1", "200 result=-1", "200 result=-1 endpos=0"]
    assert time.monotonic() - started < 5000 / 1000 * 0.02  # no key was waited for


async def test_playback_and_read_still_play_a_list(sim: PbxSim, agi_server) -> None:
    commands = [
        "EXEC Playback beep&hello-world",
        "GET VARIABLE PLAYBACKSTATUS",
        'EXEC Read "DIGITS,beep&beep,1,,1,3"',
        "GET VARIABLE DIGITS",
    ]
    replies = await run_commands(sim, agi_server, commands, [Press("7")])
    assert [r.lines[0] for r in replies] == [
        "200 result=0",
        "200 result=1 (SUCCESS)",
        "200 result=0",
        "200 result=1 (7)",
    ]
