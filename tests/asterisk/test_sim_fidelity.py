"""Simulator fidelity: the recorded actions, sent to the simulator, get replies shaped like Asterisk's."""

from __future__ import annotations

import asyncio

from replay_peers import RawAmi, keys, recorded_messages, sent_actions, value

from acd.pbxsim import PbxSim

# Actions whose reply layouts the simulator reproduces header for header.
EXACT = {
    "Login",
    "Ping",
    "Setvar",
    "Getvar",
    "DeviceStateList",
    "ExtensionState",
    "ExtensionStateList",
    "UserEvent",
    "NoSuchAction",
    "Originate",
    "Status",
    "CoreShowChannels",
    "Redirect",
    "Hangup",
    "QueueSummary",
    "QueueStatus",
    "Logoff",
    "Command",
}


def replies_by_action(messages: list[list[tuple[str, str]]]) -> dict[str, list[list[tuple[str, str]]]]:
    """Responses and list items grouped by ActionID (async events left out, except UserEvent)."""
    grouped: dict[str, list[list[tuple[str, str]]]] = {}
    for m in messages:
        aid = value(m, "ActionID")
        if aid is None or m[0][1] == "OriginateResponse":
            continue
        grouped.setdefault(aid, []).append(m)
    return grouped


async def test_ami_basic_actions_get_replies_with_the_recorded_layout(sim: PbxSim) -> None:
    sim.device_states.clear()
    for agent in ("agentA", "agentB", "agentC"):
        sim.hints[(agent, "acd-hints")] = f"Custom:{agent}"
        sim.device_states[f"Custom:{agent}"] = "NOT_INUSE"
    ami = await RawAmi.connect(sim.ami_port)
    assert ami.banner == b"Asterisk Call Manager/9.0.0\r\n"
    actions = sent_actions("ami_basic")
    for pairs in actions:
        if value(pairs, "Secret") is not None:
            pairs = [(k, "acdsecret" if k == "Secret" else v) for k, v in pairs]
        ami.send(pairs)
        aid = value(pairs, "ActionID")
        action = value(pairs, "Action")
        await ami.until(lambda m, aid=aid: value(m, "ActionID") == aid and m[0][0] == "Response")
        if action in (
            "DeviceStateList",
            "ExtensionStateList",
            "Status",
            "CoreShowChannels",
            "QueueSummary",
            "QueueStatus",
        ):
            await ami.until(lambda m, aid=aid: value(m, "ActionID") == aid and value(m, "EventList") == "Complete")
        if action == "Originate":
            await ami.until(lambda m: m[0][1] == "OriginateResponse")
        if action == "Logoff":
            break
    await ami.close()

    ours = replies_by_action(ami.messages)
    recorded = replies_by_action(recorded_messages("ami_basic"))
    for pairs in actions:
        action, aid = value(pairs, "Action"), value(pairs, "ActionID")
        if action not in EXACT:
            continue
        got, want = ours[aid], recorded[aid]
        # Same number of messages (Response, items, Complete), same header names in the same order.
        if action in ("DeviceStateList",):
            assert [keys(m) for m in got[1:2]] == [keys(m) for m in want[1:2]], action
            assert keys(got[-1]) == keys(want[-1]), action
            continue
        if action == "Command":
            assert keys(got[0]) == keys(want[0]), action
            continue
        assert [keys(m) for m in got] == [keys(m) for m in want], action
        assert [m[0] for m in got] == [m[0] for m in want], action


async def test_originate_events_carry_linkedid_and_chanvariable(sim: PbxSim) -> None:
    ami = await RawAmi.connect(sim.ami_port)
    ami.send([("Action", "Login"), ("Username", "acd"), ("Secret", "acdsecret")])
    ami.send(
        [
            ("Action", "Originate"),
            ("ActionID", "o1"),
            ("Async", "true"),
            ("Channel", "Local/park@acd-legs/n"),
            ("Application", "Wait"),
            ("Data", "60"),
            ("Variable", "ACD_LEAD_ID=4711"),
        ]
    )
    got = await ami.until(lambda m: m[0][1] == "OriginateResponse")
    channel_events = [m for m in got if value(m, "Channel") and m[0][0] == "Event" and m[0][1] != "OriginateResponse"]
    assert channel_events
    for m in channel_events:
        assert "Linkedid" in keys(m) and "ChanVariable" in keys(m), m[0]
    response = got[-1]
    assert value(response, "Response") == "Success" and value(response, "Reason") == "4"
    assert value(response, f"ChanVariable({value(response, 'Channel')})") == "ACD_LEAD_ID=4711"
    await ami.close()


async def test_agi_env_block_and_hangup_line_match_the_recording(sim: PbxSim) -> None:
    """A raw FastAGI peer records the simulator's bytes: env keys in the recorded order, then the
    interrupted STREAM FILE reply followed by an unsolicited HANGUP line."""
    from replay_peers import load

    from acd.pbxsim import Caller, HangUp

    got: asyncio.Queue[list[str]] = asyncio.Queue()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        lines = []
        while (line := (await reader.readline()).decode()) != "\n":
            lines.append(line)
        writer.write(b'STREAM FILE demo-congrats ""\n')
        lines.append((await reader.readline()).decode())
        lines.append((await reader.readline()).decode())
        writer.close()
        got.put_nowait(lines)

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    sim.agi_target = ("127.0.0.1", server.sockets[0].getsockname()[1])
    sim.call(Caller(script="ivr?lead=4711&lang=ru", args=("first arg", "4711"), steps=[HangUp(after=0.5)]))
    lines = await asyncio.wait_for(got.get(), 5)
    recorded_env = [r.raw for r in load("fastagi_ivr") if r.conn == "agi-6" and r.dir == "recv"][:-1]
    assert [line.split(":")[0] for line in lines[:-2]] == [line.split(":")[0] for line in recorded_env]
    assert "agi_network_script: ivr?lead=4711&lang=ru\n" in lines
    assert lines[-2].startswith("200 result=-1 endpos=") and lines[-1] == "HANGUP\n"
    server.close()
    await server.wait_closed()
