"""AMI client behaviour against the simulated PBX: login, reconnect, dead links, no double Originate."""

from __future__ import annotations

import asyncio

import pytest

from acd.asterisk.ami import AmiAuthError, AmiClient, AmiLinkLost, AmiMessage, LinkState, OriginateReason
from acd.pbxsim import PbxSim, Phone


def client_for(sim: PbxSim, **kw) -> AmiClient:
    kw.setdefault("ping_interval", 30)
    kw.setdefault("action_timeout", 5)
    kw.setdefault("backoff_initial", 0.05)
    kw.setdefault("backoff_max", 0.4)
    return AmiClient("127.0.0.1", sim.ami_port, "acd", kw.pop("secret", "acdsecret"), **kw)


async def test_wrong_secret_is_reported_once_and_never_retried(sim: PbxSim) -> None:
    client = client_for(sim, secret="wrong")
    with pytest.raises(AmiAuthError, match="Authentication failed"):
        await client.start()
    assert client.state is LinkState.FAILED
    assert len(sim.ami.all_sessions) == 1
    await client.close()
    assert client.state is LinkState.CLOSED


async def test_on_connected_resynchronises_after_every_reconnect(sim: PbxSim) -> None:
    sim.add_phone(Phone("PJSIP/mgr1"))
    snapshots: asyncio.Queue[int] = asyncio.Queue()

    async def resync(client: AmiClient) -> None:
        result = await client.send_list({"Action": "DeviceStateList"})
        snapshots.put_nowait(len(result.items))

    client = client_for(sim, on_connected=resync)
    await client.start()
    assert await asyncio.wait_for(snapshots.get(), 5) == 1
    sim.cut_ami("close")
    assert await asyncio.wait_for(snapshots.get(), 5) == 1
    assert client.connections == 2
    await client.close()


async def test_reconnect_backs_off_exponentially_while_asterisk_is_down(sim: PbxSim) -> None:
    client = client_for(sim)
    await client.start()
    port = sim.ami_port
    await sim.ami.stop_listening()
    sim.cut_ami("close")
    async with asyncio.timeout(5):
        while len(client.backoff_history) < 4:
            await client.state_changed()
    assert client.backoff_history[:4] == [0.05, 0.1, 0.2, 0.4]
    sim.ami.port = port
    await sim.ami.start()
    await client.wait_connected(5)
    assert client.connections == 2
    await client.close()


async def test_half_open_link_is_noticed_by_ping_within_its_timeout(sim: PbxSim) -> None:
    lost = asyncio.Event()
    client = client_for(sim, ping_interval=0.1, ping_timeout=0.3, on_disconnected=lost.set)
    await client.start()
    sim.cut_ami("half-open")
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.wait_for(lost.wait(), 2)
    assert loop.time() - started < 0.1 + 0.3 + 0.3
    await client.wait_connected(5)  # and a fresh link replaces it
    assert (await client.send({"Action": "Ping"}))["Ping"] == "Pong"
    await client.close()


async def test_originate_in_flight_when_the_link_drops_is_not_sent_again(sim: PbxSim) -> None:
    sim.add_phone(Phone("PJSIP/mgr1", answer_after=2.0))
    client = client_for(sim)
    await client.start()
    # A synchronous Originate holds its Response for the whole ring time: cut the link meanwhile.
    sent = asyncio.ensure_future(
        client.send(
            {"Action": "Originate", "Channel": "PJSIP/mgr1", "Async": "false", "Application": "Wait", "Data": "1"}
        )
    )
    async with asyncio.timeout(5):
        while (await sim.ami.received.get())[1][0][1] != "Originate":
            pass
    sim.cut_ami("close")
    with pytest.raises(AmiLinkLost):
        await sent
    await client.wait_connected(5)
    await client.send({"Action": "Ping"})
    originates = [a for s in sim.ami.all_sessions for a in s.actions if a[0][1] == "Originate"]
    assert len(originates) == 1
    await client.close()


@pytest.mark.parametrize(
    ("phone", "reason"),
    [
        (Phone("PJSIP/mgr1", answer_after=0.5), OriginateReason.ANSWERED),
        (Phone("PJSIP/mgr1", busy=True), OriginateReason.BUSY),
        (Phone("PJSIP/mgr1", congestion=True), OriginateReason.CONGESTION),
        (Phone("PJSIP/mgr1", answer_after=None), OriginateReason.NO_ANSWER),
        (Phone("PJSIP/mgr1", registered=False), OriginateReason.FAILED),
    ],
)
async def test_originate_to_a_manager_phone_reports_the_recorded_reason(
    sim: PbxSim, phone: Phone, reason: OriginateReason
) -> None:
    sim.add_phone(phone)
    client = client_for(sim)
    await client.start()
    result = await client.originate(
        {
            "Channel": "PJSIP/mgr1",
            "Context": "acd-callback",
            "Exten": "customer",
            "Priority": "1",
            "Timeout": "3000",
            "CallerID": '"ACD Callback" <7000>',
            "Variable": ["ACD_LEAD_ID=6001"],
        }
    )
    assert result.reason == reason
    assert result.answered is (reason is OriginateReason.ANSWERED)
    if result.answered:
        assert result.channel is not None and result.channel.startswith("PJSIP/mgr1-")
        assert result.event is not None and result.event.chan_variables == {"ACD_LEAD_ID": "6001"}
    else:
        assert result.channel == "PJSIP/mgr1" and result.uniqueid == "<unknown>"
    await client.close()


async def test_unknown_technology_fails_with_reason_zero_and_no_channel(sim: PbxSim) -> None:
    client = client_for(sim)
    newchannels: list[AmiMessage] = []
    client.on("Newchannel", newchannels.append)
    await client.start()
    result = await client.originate({"Channel": "Bogus/123", "Context": "acd-callback", "Exten": "customer"})
    assert result.response["Message"] == "Originate successfully queued"
    assert result.reason == "0" and result.channel == "Bogus/123"
    await client.send({"Action": "Ping"})  # events before this reply have been delivered
    assert newchannels == []
    await client.close()


async def test_phone_going_in_use_and_back_emits_device_and_extension_state(sim: PbxSim) -> None:
    sim.add_phone(Phone("PJSIP/mgr1", answer_after=0.2, talk_for=0.5, hint=("mgr1", "acd-hints")))
    client = client_for(sim)
    states: asyncio.Queue[str] = asyncio.Queue()
    statuses: list[str] = []
    client.on("DeviceStateChange", lambda m: states.put_nowait(m["State"]) if m["Device"] == "PJSIP/mgr1" else None)
    client.on("ExtensionStatus", lambda m: statuses.append(m["StatusText"]))
    await client.start()
    await client.originate({"Channel": "PJSIP/mgr1", "Application": "Wait", "Data": "10"})
    seen = [await asyncio.wait_for(states.get(), 5) for _ in range(3)]
    assert seen == ["RINGING", "INUSE", "NOT_INUSE"]
    assert statuses == ["Ringing", "InUse", "Idle"]
    await client.close()


async def test_event_callback_errors_are_logged_and_do_not_stop_delivery(sim: PbxSim) -> None:
    client = client_for(sim)
    got: asyncio.Queue[AmiMessage] = asyncio.Queue()

    def broken(_m: AmiMessage) -> None:
        raise RuntimeError("boom")

    client.on("UserEvent", broken)
    client.on("UserEvent", got.put_nowait)
    await client.start()
    await client.send({"Action": "UserEvent", "UserEvent": "One"})
    await client.send({"Action": "UserEvent", "UserEvent": "Two"})
    names = [(await asyncio.wait_for(got.get(), 5))["UserEvent"] for _ in range(2)]
    assert names == ["One", "Two"]
    await client.close()


async def test_close_stops_a_client_that_is_backing_off(sim: PbxSim) -> None:
    client = client_for(sim, backoff_initial=5.0)
    await client.start()
    await sim.ami.stop_listening()
    sim.cut_ami("close")
    async with asyncio.timeout(5):
        while client.state is not LinkState.BACKING_OFF:
            await client.state_changed()
    await asyncio.wait_for(client.close(), 1)
    assert client.state is LinkState.CLOSED
    assert len(sim.ami.all_sessions) == 1


async def test_a_task_cancelled_just_as_its_reply_arrives_stays_cancelled(sim: PbxSim) -> None:
    """On Python 3.11 `asyncio.wait_for` hands back the reply and drops the cancellation: the
    telephony's reconciler, cancelled at shutdown in the middle of a resync, went on to sleep
    its full period and the shutdown overran its 20 s (CI's reliability run)."""
    client = client_for(sim)
    await client.start()
    asking = asyncio.ensure_future(client.send({"Action": "Ping"}))
    await asyncio.sleep(0)  # the action is written; its reply is awaited
    assert client._link is not None
    [pending] = client._link.pending.values()
    pending.future.add_done_callback(lambda _: asking.cancel())  # the reply and the cancel, together
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(5):
            await asking
    await client.close()
