"""Replay tests: the AMI parser and client against byte streams recorded from Asterisk 20."""

from __future__ import annotations

import asyncio

import pytest
from replay_peers import AmiReplayPeer, load, recv_stream, sent_actions

from acd.asterisk.ami import AmiAuthError, AmiClient, AmiMessage, AmiParser, LinkState


async def _read_all_over_socket(data: bytes) -> list[AmiMessage]:
    """Serve ``data`` from a real server on 127.0.0.1 and parse what a client reads."""

    async def serve(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Odd chunk sizes so that messages straddle reads.
        for i in range(0, len(data), 777):
            writer.write(data[i : i + 777])
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    parser = AmiParser()
    messages: list[AmiMessage] = []
    while chunk := await asyncio.wait_for(reader.read(4096), 5):
        messages.extend(parser.feed(chunk))
    writer.close()
    server.close()
    await server.wait_closed()
    assert parser.banner == "Asterisk Call Manager/9.0.0"
    return messages


async def test_parser_extracts_every_recorded_message_of_ami_basic() -> None:
    recorded = [r for r in load("ami_basic") if r.dir == "recv" and r.raw.endswith("\r\n\r\n")]
    messages = await _read_all_over_socket(recv_stream("ami_basic", "ami"))
    assert len(messages) == len(recorded)
    assert [m.name for m in messages][:2] == ["Success", "FullyBooted"]


async def test_command_output_lines_are_collected_from_output_headers() -> None:
    messages = await _read_all_over_socket(recv_stream("ami_basic", "ami"))
    command = next(m for m in messages if m.message == "Command output follows")
    assert command.output == [
        "Asterisk 20.20.1 built by root @ vm on a x86_64 running Linux on 2026-11-22 21:30:32 UTC"
    ]


async def test_both_chanvariable_spellings_are_understood() -> None:
    messages = await _read_all_over_socket(recv_stream("ami_basic", "ami"))
    originate = next(m for m in messages if m.name == "OriginateResponse")
    assert "ChanVariable(Local/park@acd-legs-00000000;1)" in originate.keys
    assert originate.chan_variables == {"ACD_LEAD_ID": "4711"}
    hangup = next(m for m in messages if m.name == "Hangup")
    assert hangup.chan_variables == {"ACD_LEAD_ID": "4711"}
    assert hangup["Cause-txt"] == "Normal Clearing"


async def test_status_list_items_keep_their_actionid_as_the_last_header() -> None:
    messages = await _read_all_over_socket(recv_stream("ami_basic", "ami"))
    status = [m for m in messages if m.name == "Status"]
    assert status and all(m.keys[-1] == "ActionID" for m in status)
    assert all(m.get("Privilege") == "Call" for m in status)  # Status items do have Privilege
    queue_params = next(m for m in messages if m.name == "QueueParams")
    assert queue_params.keys[-1] == "ActionID" and "Privilege" not in queue_params


async def test_empty_header_values_are_kept_as_empty_strings() -> None:
    messages = await _read_all_over_socket(recv_stream("ami_basic", "ami"))
    getvar = next(m for m in messages if m.get("Variable") == "ACD_NOT_SET_ANYWHERE")
    assert getvar["Value"] == ""


@pytest.fixture
async def replay_basic():
    peer = AmiReplayPeer.from_transcript("ami_basic")
    await peer.start()
    yield peer
    await peer.close()


def _client(port: int, secret: str = "acdsecret", **kw) -> AmiClient:
    kw.setdefault("ping_interval", 60)
    kw.setdefault("action_timeout", 5)
    return AmiClient("127.0.0.1", port, "acd", secret, **kw)


async def test_client_replays_the_whole_ami_basic_session(replay_basic: AmiReplayPeer) -> None:
    events: list[AmiMessage] = []
    client = _client(replay_basic.port)
    client.on("*", events.append)
    await client.start()
    assert client.banner == "Asterisk Call Manager/9.0.0"
    results: dict[str, object] = {}
    list_actions = {"DeviceStateList", "ExtensionStateList", "Status", "CoreShowChannels", "QueueSummary"}
    list_actions.add("QueueStatus")
    for headers in sent_actions("ami_basic")[1:]:
        name = headers[0][1]
        body = [(k, v) for k, v in headers if k != "ActionID"]
        if name == "Originate":
            fields = [(k, v) for k, v in headers if k not in ("Action", "Async")]
            results[name] = await client.originate(fields)
        elif name in list_actions:
            results.setdefault(name, await client.send_list(body))
        elif name == "Logoff":
            results[name] = await client.send(body)
        else:
            results.setdefault(name, await client.send(body))
    await asyncio.wait_for(replay_basic.done.wait(), 5)

    ping = results["Ping"]
    assert isinstance(ping, AmiMessage) and ping["Ping"] == "Pong"
    device_states = results["DeviceStateList"]
    assert len(device_states.items) == 4  # type: ignore[attr-defined]
    assert device_states.complete["ListItems"] == "4"  # type: ignore[attr-defined]
    status = results["Status"]
    assert [m["Channel"] for m in status.items] == [  # type: ignore[attr-defined]
        "Local/park@acd-legs-00000000;2",
        "Local/park@acd-legs-00000000;1",
    ]
    originate = results["Originate"]
    assert originate.answered and originate.reason == "4"  # type: ignore[attr-defined]
    assert originate.channel == "Local/park@acd-legs-00000000;1"  # type: ignore[attr-defined]
    assert originate.event.chan_variables == {"ACD_LEAD_ID": "4711"}  # type: ignore[attr-defined]
    unknown = results["NoSuchAction"]
    assert isinstance(unknown, AmiMessage) and not unknown.ok
    assert unknown.message.startswith("Invalid/unknown command: NoSuchAction.")
    assert results["Logoff"].name == "Goodbye"  # type: ignore[attr-defined]

    names = [e.name for e in events]
    # List items share names with async events; only the ActionID tells them apart, and they
    # must not leak to event subscribers.
    assert not any(e.name == "DeviceStateChange" and e.action_id for e in events)
    assert names.count("ExtensionStatus") == 2  # the two async ones from DEVICE_STATE writes
    user_event = next(e for e in events if e.name == "UserEvent" and e.get("UserEvent") == "AcdHello")
    assert user_event.action_id is not None  # a UserEvent action's event carries its ActionID
    assert "FullyBooted" in names
    await client.close(logoff=False)


async def test_queueadd_resolves_with_its_plain_response() -> None:
    peer = AmiReplayPeer.from_transcript("queue_scenario")
    await peer.start()
    client = _client(peer.port)
    await client.start()
    actions = sent_actions("queue_scenario")[1:]
    replies = []
    for headers in actions[:11]:  # QueueRemove x3, Setvar x3, QueueAdd x4, the last one a duplicate
        body = [(k, v) for k, v in headers if k != "ActionID"]
        replies.append(await client.send(body))
    assert [r.message for r in replies[6:10]] == [
        "Added interface to queue",
        "Added interface to queue",
        "Added interface to queue",
        "Unable to add interface: Already there",
    ]
    await client.close(logoff=False)
    await peer.close()


async def test_wrong_secret_fails_login_without_retrying() -> None:
    peer = AmiReplayPeer.from_transcript("ami_login_failed")
    await peer.start()
    client = _client(peer.port, secret="wrong-secret")
    with pytest.raises(AmiAuthError, match="Authentication failed"):
        await client.start()
    assert client.state is LinkState.FAILED
    assert client.backoff_history == []
    assert len(peer.received) == 1
    await client.close()
    await peer.close()
