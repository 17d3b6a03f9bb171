"""Harness for end-to-end telephony tests: the real server (SQLite in memory) with its FastAGI
server and AMI client, talking to the simulated PBX over real sockets."""

from __future__ import annotations

import asyncio
import datetime
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from acd.app import Server, build
from acd.config import AmiSettings, Deployment, FastAgiSettings, load_deployment
from acd.core import events as ev
from acd.core.hours import Calendar, Schedule
from acd.core.model import Channel
from acd.core.policy import ChannelRules
from acd.pbxsim import PbxSim, Phone
from acd.storage import open_store
from acd.telephony import Telephony

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "acd.example.yaml"
TIME_SCALE = 0.02  # telephone seconds → real seconds
OFFER_TIMEOUT = 2.0  # real seconds (the server's clock is not scaled)


def closed_now() -> Calendar:
    """Open one hour a week, two days after today (UTC): closed whenever a test runs (a fixed
    day and hour was open on Mondays from 9 to 10)."""
    day = (datetime.datetime.now(datetime.UTC).weekday() + 2) % 7
    hour = ((datetime.time(9), datetime.time(10)),)
    return Calendar(tz="UTC", default=Schedule(tz="UTC", week={d: () for d in range(7)} | {day: hour}))


def telephony_deployment(
    sim: PbxSim, calendar: Calendar | None = None, offer_timeout: float = OFFER_TIMEOUT, **asterisk: Any
) -> Deployment:
    d = load_deployment(EXAMPLE, environ={})
    rules = ChannelRules(offer_timeout=offer_timeout, wrap_up=0.0)
    policy = replace(
        d.policy,
        calendar=calendar or Calendar(tz=d.policy.calendar.tz),
        channels={**d.policy.channels, Channel.CALL: rules, Channel.CALLBACK: rules},
        inactivity_pause=0.0,
    )
    settings = {
        "enabled": True,
        "ami": AmiSettings("127.0.0.1", sim.ami_port, "acd", "ACD_AMI_SECRET", "acdsecret"),
        "fastagi": FastAgiSettings("127.0.0.1", 0),
        "ring_time": 1.0,
        "announce_every": 0.0,
        "callback_backoff": 0.2,
        "reconcile_interval": 0.0,
        "announce_wait": False,
        **asterisk,
    }
    return replace(d, policy=policy, asterisk=replace(d.asterisk, **settings))


@dataclass
class Harness:
    server: Server
    sim: PbxSim
    commands: asyncio.Queue[ev.Command]

    @property
    def telephony(self) -> Telephony:
        assert self.server.telephony is not None
        return self.server.telephony

    @property
    def board(self):  # type: ignore[no-untyped-def]
        return self.server.dispatcher.board

    async def settle(self) -> None:
        """Wait until the dispatcher has handled everything posted so far."""
        await self.server.dispatcher.submit(ev.HeartbeatReceived(next(iter(self.board.managers))))

    async def command(self, kind: type, where: Callable[[Any], bool] = lambda c: True, timeout: float = 5.0) -> Any:  # noqa: ASYNC109
        async with asyncio.timeout(timeout):
            while True:
                cmd = await self.commands.get()
                if isinstance(cmd, kind) and where(cmd):
                    return cmd

    async def ended_call(self, timeout: float = 5.0) -> Any:  # noqa: ASYNC109
        return await asyncio.wait_for(self.telephony.desk.ended.get(), timeout)

    async def user_event(self, name: str, timeout: float = 5.0) -> dict[str, str]:  # noqa: ASYNC109
        async with asyncio.timeout(timeout):
            while True:
                headers = await self.sim.user_events.get()
                if ("UserEvent", name) in headers:
                    return dict(headers)

    def queue_log(self) -> list[str]:
        return [line.split("|")[4] for line in self.telephony.queue_log.lines]


DEVICES = {
    "anna": "PJSIP/101",
    "boris": "PJSIP/102",
    "vera": "PJSIP/103",
    "grigory": "PJSIP/104",
    "daria": "PJSIP/105",
    "egor": "PJSIP/106",
}


async def start_harness(
    calendar: Calendar | None = None,
    *,
    time_scale: float = TIME_SCALE,
    offer_timeout: float = OFFER_TIMEOUT,
    **asterisk: Any,
) -> tuple[Harness, Callable[[], Any]]:
    sim = PbxSim(time_scale=time_scale, auth_failure_delay=0.05)
    sim.default_prompt = 0.3
    await sim.start()
    for device in DEVICES.values():
        sim.add_phone(Phone(device, answer_after=0.5, talk_for=2.0))
    store = await open_store("sqlite+aiosqlite:///:memory:")
    server = await build(telephony_deployment(sim, calendar, offer_timeout, **asterisk), store, demo=True)
    assert server.telephony is not None
    sim.agi_target = ("127.0.0.1", server.telephony.agi.port)
    commands: asyncio.Queue[ev.Command] = asyncio.Queue()
    server.dispatcher.subscribe(commands.put_nowait)
    await asyncio.wait_for(server.telephony.resynced.wait(), 5)  # connected, and the mirror is built

    async def stop() -> None:
        await server.close()
        await sim.close()

    return Harness(server, sim, commands), stop


async def classic_agi(env: dict[str, str], reply: Callable[[str], str]) -> list[str]:
    """Asterisk's side of classic AGI for acd.telephony.agi_script on the example's `main`
    flow: the env block on stdin, then `reply(command)` for each command line. The commands,
    once the script has exited 0."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "acd.telephony.agi_script", str(EXAMPLE), "main",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("".join(f"{k}: {v}\n" for k, v in env.items()).encode() + b"\n")
    commands: list[str] = []
    async with asyncio.timeout(20):
        while line := (await proc.stdout.readline()).decode().strip():
            commands.append(line)
            proc.stdin.write(reply(line).encode() + b"\n")
        assert await proc.wait() == 0
    return commands
