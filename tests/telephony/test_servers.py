"""Several Asterisk servers: each with its own AMI connection; calls, device states and
originates stay with the right one. Two simulated PBXes over real sockets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

import pytest
from telephony_harness import DEVICES, TIME_SCALE, telephony_deployment

from acd.app import Server, build
from acd.config import AmiSettings, AsteriskServer
from acd.core import events as ev
from acd.core.model import Channel, Presence
from acd.pbxsim import Caller, PbxSim, Phone, Press
from acd.storage import open_store

MOSCOW = "74951234567"
ON_PBX1 = ("anna", "boris", "vera")
ON_PBX2 = ("grigory", "daria", "egor")


@dataclass
class Two:
    server: Server
    pbx1: PbxSim
    pbx2: PbxSim
    commands: asyncio.Queue[ev.Command]

    @property
    def board(self):  # type: ignore[no-untyped-def]
        return self.server.dispatcher.board

    async def settle(self) -> None:
        await self.server.dispatcher.submit(ev.HeartbeatReceived("anna"))

    async def command(self, kind: type, where=lambda c: True, timeout: float = 5.0):  # type: ignore[no-untyped-def]  # noqa: ASYNC109
        async with asyncio.timeout(timeout):
            while True:
                cmd = await self.commands.get()
                if isinstance(cmd, kind) and where(cmd):
                    return cmd

    async def only(self, *available: str) -> None:
        for mid in DEVICES:
            if mid not in available:
                await self.server.dispatcher.submit(ev.PresenceSet(mid, Presence.PAUSED, "lunch"))


def originates(sim: PbxSim) -> list[dict[str, str]]:
    return [dict(a) for s in sim.ami.all_sessions for a in s.actions if ("Action", "Originate") in a]


@pytest.fixture
async def two() -> AsyncIterator[Two]:
    pbx1 = PbxSim(time_scale=TIME_SCALE, auth_failure_delay=0.05)
    pbx2 = PbxSim(time_scale=TIME_SCALE, auth_failure_delay=0.05, ami_secret="other-secret")
    for sim, managers in ((pbx1, ON_PBX1), (pbx2, ON_PBX2)):
        sim.default_prompt = 0.3
        await sim.start()
        for mid in managers:
            sim.add_phone(Phone(DEVICES[mid], answer_after=0.5, talk_for=2.0))
    servers = (
        AsteriskServer("pbx1", AmiSettings("127.0.0.1", pbx1.ami_port, "acd", "PBX1_SECRET", "acdsecret")),
        AsteriskServer("pbx2", AmiSettings("127.0.0.1", pbx2.ami_port, "acd", "PBX2_SECRET", "other-secret")),
    )
    d = telephony_deployment(pbx1)
    d = replace(d, asterisk=replace(d.asterisk, servers=servers))
    store = await open_store("sqlite+aiosqlite:///:memory:")
    server = await build(d, store, demo=True)
    assert server.telephony is not None
    pbx1.agi_target = pbx2.agi_target = ("127.0.0.1", server.telephony.agi.port)
    commands: asyncio.Queue[ev.Command] = asyncio.Queue()
    server.dispatcher.subscribe(commands.put_nowait)
    async with asyncio.timeout(5):
        while server.telephony.resyncs < 2:
            server.telephony.resynced.clear()
            await server.telephony.resynced.wait()
    try:
        yield Two(server, pbx1, pbx2, commands)
    finally:
        await server.close()
        await pbx1.close()
        await pbx2.close()


async def test_each_server_has_its_own_ami_connection_and_its_device_states_count(two: Two) -> None:
    t = two.server.telephony
    assert t is not None and set(t.amis) == {"pbx1", "pbx2"}
    assert all(c.connected for c in t.amis.values())
    assert t.owners.owner(DEVICES["anna"]) == "pbx1" and t.owners.owner(DEVICES["grigory"]) == "pbx2"

    two.pbx1.set_device_state(DEVICES["anna"], "INUSE")
    two.pbx2.set_device_state(DEVICES["grigory"], "INUSE")
    two.pbx2.set_device_state(DEVICES["boris"], "UNAVAILABLE")  # pbx2 does not have boris's phone
    async with asyncio.timeout(5):
        while not (two.board.managers["anna"].device_busy and two.board.managers["grigory"].device_busy):
            await two.settle()
    await two.settle()
    assert not two.board.managers["boris"].device_busy


async def test_click_to_call_and_callbacks_originate_on_the_server_of_the_managers_phone(two: Two) -> None:
    t = two.server.telephony
    assert t is not None
    two.pbx2.add_phone(Phone("Local/79165550000@acd-outbound", talk_for=0.5))
    await two.only("grigory")
    cb = await t.callbacks.request(phone="+7 916 555-00-00")
    offer = await two.command(ev.OfferContact, lambda c: c.contact.id == cb.contact_id)
    assert offer.manager.id == "grigory"
    result = await asyncio.wait_for(t.callbacks.results.get(), 5)
    assert result.dial_status == "ANSWER"
    assert [o["Channel"] for o in originates(two.pbx2)] == [DEVICES["grigory"]] and originates(two.pbx1) == []
    leg = originates(two.pbx2)[0]["ChannelId"]
    await t.servers.send({"Action": "Hangup", "Channel": leg})  # goes where that channel was made
    await t.servers.send({"Action": "Hangup", "Channel": "PJSIP/unknown-00000001"})  # unknown: asked everywhere
    hangups = {
        name: [dict(a)["Channel"] for s in sim.ami.all_sessions for a in s.actions if ("Action", "Hangup") in a]
        for name, sim in (("pbx1", two.pbx1), ("pbx2", two.pbx2))
    }
    assert hangups == {"pbx1": ["PJSIP/unknown-00000001"], "pbx2": [leg, "PJSIP/unknown-00000001"]}

    anna = two.board.managers["anna"]
    contact = replace(offer.contact, phone="79165550000")
    two.pbx1.add_phone(Phone("Local/79165550000@acd-outbound", talk_for=0.5))
    answered = await t.click_to_call(contact, anna)
    assert answered.answered
    assert [o["Channel"] for o in originates(two.pbx1)] == [DEVICES["anna"]]


async def test_a_call_stays_on_its_server_and_another_servers_resync_does_not_end_it(two: Two) -> None:
    t = two.server.telephony
    assert t is not None
    await two.only("daria")
    two.pbx2.phones[DEVICES["daria"]].talk_for = None  # talks until the caller hangs up
    call = two.pbx2.call(
        Caller(number="79160000021", dialled=MOSCOW, script="ivr?flow=main&server=pbx2", steps=[Press("1")] * 3)
    )
    offer = await two.command(ev.OfferContact)
    assert offer.manager.id == "daria" and t.desk.calls[offer.contact.id].server == "pbx2"
    async with asyncio.timeout(5):
        while t.desk.calls[offer.contact.id].state != "talking":
            await two.settle()

    before = t.resyncs
    t.resynced.clear()
    two.pbx1.cut_ami("close")  # pbx1 reconnects and resynchronises: its channels do not list this call
    async with asyncio.timeout(5):
        while t.resyncs == before:
            t.resynced.clear()
            await t.resynced.wait()
    assert t.desk.calls[offer.contact.id].state == "talking"
    # pbx1's own channel that happens to carry the same uniqueid hangs up: not this call
    same = [("Channel", "PJSIP/trunk-000000ff"), ("Uniqueid", call.leg.channel.uniqueid), ("Cause", "16")]
    two.pbx1.emit([("Event", "Hangup"), ("Privilege", "call,all"), *same])
    await asyncio.wait_for(two.pbx1.wait_event(lambda e: e.get("Channel") == "PJSIP/trunk-000000ff"), 5)
    await t.amis["pbx1"].send({"Action": "Ping"})  # the event was read before this reply
    assert t.desk.calls[offer.contact.id].state == "talking"
    assert offer.contact.payload["server"] == "pbx2"

    two.pbx2.hangup_channel(call.leg.channel)
    ended = await asyncio.wait_for(t.desk.ended.get(), 5)
    assert ended.contact_id == offer.contact.id and ended.manager_id == "daria"
    await two.settle()
    assert two.board.managers["daria"].load.get(Channel.CALL, 0) == 0


def test_the_deployment_file_lists_several_servers_with_secrets_from_the_environment(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from telephony_harness import EXAMPLE

    from acd.config import ConfigError, load_deployment

    text = EXAMPLE.read_text().replace(
        "asterisk:\n",
        "asterisk:\n"
        "  servers:\n"
        "    - {name: moscow, ami: {host: 10.0.0.1, secret_env: PBX_MSK_SECRET}}\n"
        "    - {name: spb, ami: {host: 10.0.0.2, port: 5039, secret_env: PBX_SPB_SECRET}}\n",
        1,
    )
    text = text.replace("flows_dir: ../ivr_flows", f"flows_dir: {EXAMPLE.parent.parent / 'ivr_flows'}")
    path = tmp_path / "acd.yaml"
    path.write_text(text)
    d = load_deployment(path, environ={"PBX_MSK_SECRET": "one", "PBX_SPB_SECRET": "two"})
    assert [(s.name, s.ami.host, s.ami.port, s.ami.secret) for s in d.asterisk.servers] == [
        ("moscow", "10.0.0.1", 5038, "one"),
        ("spb", "10.0.0.2", 5039, "two"),
    ]
    assert "one" not in repr(d.asterisk.servers)  # secrets never reach a log
    path.write_text(text.replace("name: spb", "name: moscow"))
    with pytest.raises(ConfigError, match="unique"):
        load_deployment(path, environ={})


async def test_a_callback_talking_on_one_server_survives_another_servers_resync(two: Two) -> None:
    t = two.server.telephony
    assert t is not None
    two.pbx2.add_phone(Phone("Local/79165550000@acd-outbound", talk_for=None))
    two.pbx2.phones[DEVICES["grigory"]].talk_for = None
    await two.only("grigory")
    await t.callbacks.request(phone="79165550000")
    await asyncio.wait_for(
        two.pbx2.wait_event(lambda e: e.get("Event") == "BridgeEnter" and e["Channel"].startswith("Local/7916555")), 5
    )
    before = t.resyncs
    two.pbx1.cut_ami("close")
    async with asyncio.timeout(5):
        while t.resyncs == before:
            t.resynced.clear()
            await t.resynced.wait()
    await two.settle()
    assert t.callbacks.results.empty()  # still talking: not finished as "gone"
    customer = next(leg for name, leg in two.pbx2.legs.items() if name.startswith("Local/7916555"))
    two.pbx2.hangup_channel(customer.channel)
    result = await asyncio.wait_for(t.callbacks.results.get(), 5)
    assert result.dial_status == "ANSWER"
