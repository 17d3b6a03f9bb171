"""Replay tests: the FastAGI server against the sessions recorded from Asterisk 20 (fastagi_ivr)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from replay_peers import AgiReplayPeer, load

from acd.asterisk.fastagi import AgiConnectionLost, AgiReply, AgiSession, FastAgiServer, SessionOutcome


def recorded_commands(conn: str) -> list[str]:
    return [r.raw.rstrip("\n") for r in load("fastagi_ivr") if r.conn == conn and r.dir == "send"]


async def run_session(
    conn: str, handler: Callable[[AgiSession], Awaitable[None]], route: str = "ivr"
) -> tuple[SessionOutcome, list[str]]:
    server = FastAgiServer({route: handler}, deadline=5)
    await server.start()
    peer = AgiReplayPeer.from_transcript("fastagi_ivr", conn)
    sent = await asyncio.wait_for(peer.call(server.port), 5)
    outcome = await asyncio.wait_for(server.outcomes.get(), 5)
    await server.close()
    return outcome, sent


def replaying(conn: str, replies: list[AgiReply]) -> Callable[[AgiSession], Awaitable[None]]:
    async def handler(session: AgiSession) -> None:
        for command in recorded_commands(conn):
            replies.append(await session.command(command))

    return handler


async def test_full_ivr_command_set_gets_every_reply_in_step() -> None:
    replies: list[AgiReply] = []
    outcome, sent = await run_session("agi-1", replaying("agi-1", replies))
    by_command = dict(zip(recorded_commands("agi-1"), replies, strict=True))
    assert outcome.session.env["agi_version"] == "20.20.1"
    assert outcome.session.args == ["first arg", "4711"]
    assert by_command["GET VARIABLE ACD_LEAD_ID"].data == "4711"
    assert by_command["GET VARIABLE ACD_NOT_SET"].result == "0"
    assert by_command['STREAM FILE hello-world ""'].extra == {"endpos": "11234"}
    assert by_command['STREAM FILE no-such-prompt ""'].result_int == -1
    assert by_command['STREAM FILE demo-congrats "0123456789*#"'].digit == "5"
    assert by_command["WAIT FOR DIGIT 5000"].digit == "7"
    assert by_command["GET DATA beep 1500 4"].result == "" and by_command["GET DATA beep 1500 4"].timed_out
    assert by_command["GET DATA beep 2000 4"].result == "9" and by_command["GET DATA beep 2000 4"].timed_out
    assert by_command["GET DATA beep 3000 4"].result == "12"
    assert by_command["EXEC NoSuchApplication foo"].result_int == -2
    assert by_command["FOO BAR"].code == 510
    usage = by_command["GET DATA"]
    assert usage.code == 520 and len(usage.lines) == 4
    # The 520 block is consumed whole, so the reply after it is SET VARIABLE's own.
    assert by_command["SET VARIABLE IVR_CHOICE 1"].lines == ("200 result=1",)
    assert outcome.status == "OK"
    # Our commands went out byte-identical to the recording, then ACD_STATUS was set.
    assert [s.rstrip("\n") for s in sent] == [*recorded_commands("agi-1"), 'SET VARIABLE ACD_STATUS "OK"']


async def test_hangup_line_after_stream_file_is_not_taken_for_the_next_reply() -> None:
    replies: list[AgiReply] = []
    seen_hangup: list[bool] = []

    async def handler(session: AgiSession) -> None:
        await session.answer()
        replies.append(await session.stream_file("demo-congrats"))
        await asyncio.wait_for(session.wait_hangup(), 2)
        seen_hangup.append(session.hung_up)
        replies.append(await session.command("GET VARIABLE ACD_LEAD_ID"))
        replies.append(await session.command('STREAM FILE beep ""'))
        replies.append(await session.command("SET VARIABLE IVR_CHOICE dead"))
        try:
            await session.noop()
        except AgiConnectionLost:
            replies.append(AgiReply(0))

    outcome, _ = await run_session("agi-3", handler, route="ivr-callerhangup")
    assert seen_hangup == [True]
    assert [r.lines for r in replies[:4]] == [
        ("200 result=-1 endpos=8160",),
        ("200 result=1 (4711)",),
        ("511 Command Not Permitted on a dead channel or intercept routine",),
        ("200 result=1",),
    ]
    assert replies[2].dead_channel
    assert outcome.status == "HANGUP"


async def test_agi_own_hangup_then_hangup_line_keeps_replies_in_step() -> None:
    replies: list[AgiReply] = []
    outcome, _ = await run_session("agi-2", _agi2(replies), route="ivr-agihangup")
    assert replies[3].lines == ("200 result=1",)  # HANGUP
    assert replies[4].data == "4711"  # first command after HANGUP gets its own reply
    assert replies[5].code == 511
    assert outcome.session.hung_up


def _agi2(replies: list[AgiReply]) -> Callable[[AgiSession], Awaitable[None]]:
    async def handler(session: AgiSession) -> None:
        for command in recorded_commands("agi-2")[:-1]:  # the recorded NOOP has no reply left
            replies.append(await session.command(command))

    return handler


async def test_hangup_while_idle_is_noticed_before_the_next_command() -> None:
    values: list[str | None] = []

    async def handler(session: AgiSession) -> None:
        await session.answer()
        await asyncio.wait_for(session.wait_hangup(), 2)
        values.append(await session.get_variable("ACD_LEAD_ID"))

    outcome, _ = await run_session("agi-5", handler, route="ivr-idlehangup")
    assert values == ["4711"]
    assert outcome.session.hung_up


async def test_script_with_query_string_is_routed_by_its_path() -> None:
    seen: list[tuple[str, dict[str, str]]] = []

    async def handler(session: AgiSession) -> None:
        seen.append((session.script, session.query))

    outcome, _ = await run_session("agi-6", handler, route="ivr")
    assert seen == [("ivr", {"lead": "4711", "lang": "ru"})]
    assert outcome.script == "ivr"
