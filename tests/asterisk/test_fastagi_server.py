"""FastAGI server behaviour with the simulated PBX as Asterisk: IVR input, hangups, deadlines, fallback."""

from __future__ import annotations

import asyncio

from acd.asterisk.fastagi import AgiSession, FastAgiServer
from acd.pbxsim import Caller, HangUp, PbxSim, Press, Silence


async def ivr(session: AgiSession) -> None:
    """A two-question IVR like the product's: temperature, then purpose."""
    await session.answer()
    await session.stream_file("welcome")
    hot, _ = await session.get_data("ask-temperature", 3000, 1)
    purpose, timed_out = await session.get_data("ask-purpose", 3000, 2)
    await session.set_variable("IVR_TEMPERATURE", hot)
    await session.set_variable("IVR_CHOICE", purpose if not timed_out else purpose or "none")


async def test_caller_answers_the_ivr_and_the_dialplan_sees_the_variables(sim: PbxSim, agi_server) -> None:
    agi_server.route("ivr", ivr)
    call = sim.call(Caller(script="ivr", steps=[Press("1"), Press("2#")]))
    result = await asyncio.wait_for(call.agi_done, 5)
    assert result.agi_status == "SUCCESS"
    assert result.variables["IVR_TEMPERATURE"] == "1"
    assert result.variables["IVR_CHOICE"] == "2"
    assert result.variables["ACD_STATUS"] == "OK"
    assert not result.fallback
    ivr_result = await asyncio.wait_for(sim.user_events.get(), 5)
    assert ("UserEvent", "IvrResult") in ivr_result and ("AgiStatus", "SUCCESS") in ivr_result


async def test_silence_gives_a_timeout_and_a_partial_entry_keeps_its_digits(sim: PbxSim, agi_server) -> None:
    replies = []

    async def handler(session: AgiSession) -> None:
        replies.append(await session.command("GET DATA beep 1500 4"))
        replies.append(await session.command("GET DATA beep 2000 4"))
        replies.append(await session.command("GET DATA beep 5000 3"))
        replies.append(await session.command('STREAM FILE demo-congrats "0123456789*#"'))

    agi_server.route("ivr", handler)
    call = sim.call(Caller(steps=[Silence(), Press("9", after=0.6), Press("123", after=0.6), Press("5", after=0.9)]))
    await asyncio.wait_for(call.agi_done, 5)
    assert [r.lines[0] for r in replies[:3]] == ["200 result= (timeout)", "200 result=9 (timeout)", "200 result=123"]
    assert replies[3].digit == "5" and 0 < int(replies[3].extra["endpos"]) < 6 * 8000


async def test_hangup_during_stream_file_ends_the_command_and_marks_the_session(sim: PbxSim, agi_server) -> None:
    after: list[object] = []

    async def handler(session: AgiSession) -> None:
        await session.answer()
        after.append(await session.stream_file("demo-congrats"))
        await asyncio.wait_for(session.wait_hangup(), 2)
        after.append(await session.get_variable("ACD_LEAD_ID"))
        after.append(await session.stream_file("beep"))
        after.append(await session.set_variable("IVR_CHOICE", "dead"))

    agi_server.route("ivr", handler)
    call = sim.call(Caller(variables={"ACD_LEAD_ID": "4711"}, steps=[HangUp(after=1.0)]))
    result = await asyncio.wait_for(call.agi_done, 5)
    first, lead, stream, setvar = after
    assert first.result == "-1" and int(first.extra["endpos"]) > 0  # type: ignore[attr-defined]
    assert lead == "4711"
    assert stream.code == 511  # type: ignore[attr-defined]
    assert setvar.ok  # type: ignore[attr-defined]
    assert result.agi_status == "HANGUP" and result.variables["IVR_CHOICE"] == "dead"
    hangup = await asyncio.wait_for(sim.user_events.get(), 5)
    assert ("UserEvent", "IvrHangup") in hangup and ("Choice", "dead") in hangup


async def test_without_agisighup_no_hangup_line_is_sent_but_commands_get_511(sim: PbxSim, agi_server) -> None:
    seen: list[object] = []

    async def handler(session: AgiSession) -> None:
        seen.append(await session.stream_file("demo-congrats"))
        seen.append(await session.stream_file("beep"))
        seen.append(session.hung_up)

    agi_server.route("ivr", handler)
    call = sim.call(Caller(agisighup=False, steps=[HangUp(after=0.5)]))
    result = await asyncio.wait_for(call.agi_done, 5)
    assert seen[0].result == "-1"  # type: ignore[attr-defined]
    assert seen[1].code == 511  # type: ignore[attr-defined]
    assert seen[2] is False
    assert result.agi_status == "HANGUP"


async def test_handler_past_its_deadline_hands_the_call_back_to_the_dialplan(sim: PbxSim) -> None:
    async def stuck(session: AgiSession) -> None:
        await session.answer()
        await asyncio.Event().wait()  # a handler waiting on something that never comes

    server = FastAgiServer({"ivr": stuck}, deadline=0.3, grace=0.5)
    await server.start()
    sim.agi_target = ("127.0.0.1", server.port)
    call = sim.call(Caller())
    result = await asyncio.wait_for(call.agi_done, 5)
    assert result.variables["ACD_STATUS"] == "TIMEOUT"
    assert result.fallback
    outcome = await asyncio.wait_for(server.outcomes.get(), 5)
    assert outcome.status == "TIMEOUT"
    await server.close()


async def test_deadline_during_a_long_prompt_still_closes_the_socket(sim: PbxSim) -> None:
    async def long_prompt(session: AgiSession) -> None:
        await session.stream_file("very-long-prompt")

    sim.prompts["very-long-prompt"] = 600.0  # 12 s of real time at the test scale
    server = FastAgiServer({"ivr": long_prompt}, deadline=0.2, grace=0.1)
    await server.start()
    sim.agi_target = ("127.0.0.1", server.port)
    call = sim.call(Caller())
    result = await asyncio.wait_for(call.agi_done, 3)
    assert result.fallback and "ACD_STATUS" not in result.variables
    await server.close()


async def test_query_string_scripts_are_routed_by_path_with_parameters_exposed(sim: PbxSim, agi_server) -> None:
    seen: list[tuple[str, dict[str, str], list[str]]] = []

    async def handler(session: AgiSession) -> None:
        seen.append((session.script, session.query, session.args))

    agi_server.route("ivr", handler)
    call = sim.call(Caller(script="ivr?lead=4711&lang=ru", args=("first arg", "4711")))
    result = await asyncio.wait_for(call.agi_done, 5)
    assert seen == [("ivr", {"lead": "4711", "lang": "ru"}, ["first arg", "4711"])]
    assert result.variables["ACD_STATUS"] == "OK"


async def test_unknown_script_is_reported_to_the_dialplan_instead_of_skipped(sim: PbxSim, agi_server) -> None:
    call = sim.call(Caller(script="nosuch"))
    result = await asyncio.wait_for(call.agi_done, 5)
    assert result.variables["ACD_STATUS"] == "NOROUTE"
    assert result.fallback


async def test_server_down_gives_agistatus_failure_and_the_fallback(sim: PbxSim) -> None:
    sim.refuse_agi = True
    call = sim.call(Caller())
    result = await asyncio.wait_for(call.agi_done, 5)
    assert result.agi_status == "FAILURE" and result.fallback
    events = [await asyncio.wait_for(sim.user_events.get(), 5) for _ in range(2)]
    assert [dict(e)["UserEvent"] for e in events] == ["IvrResult", "IvrFallback"]


async def test_missing_prompt_makes_agistatus_failure_but_the_script_goes_on(sim: PbxSim, agi_server) -> None:
    async def handler(session: AgiSession) -> None:
        reply = await session.stream_file("no-such-prompt")
        assert reply.lines == ("200 result=-1 endpos=0",)
        await session.set_variable("IVR_CHOICE", "1")

    agi_server.route("ivr", handler)
    result = await asyncio.wait_for(sim.call(Caller()).agi_done, 5)
    assert result.agi_status == "FAILURE" and result.variables["IVR_CHOICE"] == "1"


async def test_usage_error_is_read_whole_and_the_next_reply_stays_in_step(sim: PbxSim, agi_server) -> None:
    replies = []

    async def handler(session: AgiSession) -> None:
        replies.append(await session.command("GET DATA"))
        replies.append(await session.command("FOO BAR"))
        replies.append(await session.command("EXEC NoSuchApplication foo"))
        replies.append(await session.get_variable("ACD_LEAD_ID"))

    agi_server.route("ivr", handler)
    await asyncio.wait_for(sim.call(Caller(variables={"ACD_LEAD_ID": "7"})).agi_done, 5)
    assert replies[0].code == 520 and replies[0].lines[-1] == "520 End of proper usage."
    assert replies[1].code == 510
    assert replies[2].result == "-2"
    assert replies[3] == "7"
