"""Crash safety with calls in flight: the server (a real `acd serve` process) is killed with
SIGKILL while simulated calls are talking, ringing managers and waiting in the queue; one talking
caller hangs up while it is down. After a restart nothing is stuck: calls that were waiting or
ringing went to the dialplan's fallback and are closed, a talk whose channel is gone is finished
by the AMI resync, a talk still on the line stays with its manager until its Hangup, and no
manager is left offered or busy."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from acd.pbxsim import Caller, PbxSim, Phone, Press
from tests.reliability.server_process import (
    DEVICES,
    FAST_CALLBACKS,
    bridged_callers,
    calls_config,
    overlapping_attempts,
    serve,
    stop_both,
    until,
)
from tests.test_restart import free_port, token

pytestmark = pytest.mark.slow

ANSWERING = {"PJSIP/101", "PJSIP/102"}  # these two pick up; the others ring until the offer runs out
CALLS = 8


async def test_nothing_is_stuck_after_kill_9_with_calls_talking_ringing_and_queued(tmp_path: Path) -> None:
    sim = PbxSim(time_scale=0.05, auth_failure_delay=0.05)
    sim.default_prompt = 1.0
    await sim.start()
    for device in DEVICES:
        sim.add_phone(Phone(device, answer_after=0.5 if device in ANSWERING else None, talk_for=None))
    agi_port, port = free_port(), free_port()
    sim.agi_target = ("127.0.0.1", agi_port)
    config = calls_config(tmp_path, sim.ami_port, agi_port)
    db = f"sqlite+aiosqlite:///{tmp_path / 'acd.db'}"
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    proc = await serve(config, db, port, log)
    try:
        for i in range(CALLS):
            keys = [Press("1"), Press("1"), Press("3")]
            sim.call(Caller(number=f"7916000{i:04d}", dialled="74951234567", steps=keys))
        # kill it once calls are talking and other phones are ringing with offers outstanding
        for device in sorted(ANSWERING):  # both answering phones talking...
            await asyncio.wait_for(
                sim.wait_event(lambda e, d=device: e.get("Event") == "BridgeEnter" and e["Channel"].startswith(d)), 20
            )
        for device in sorted(set(DEVICES) - ANSWERING)[:1]:  # ...and vera's ringing (sales is tried first)
            await asyncio.wait_for(
                sim.wait_event(lambda e, d=device: e.get("Event") == "DialBegin" and e["DestChannel"].startswith(d)), 20
            )
        os.kill(proc.pid, signal.SIGKILL)
        await proc.wait()

        talking = bridged_callers(sim)
        assert len(talking) == 2, "two calls were talking when the server died"
        gone, *still = talking
        sim.hangup_channel(sim.legs[gone].channel)  # its Hangup is lost: nobody is listening on AMI

        proc = await serve(config, db, port, log)
        sup = await token(config, db)
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {sup}"}) as http:

            async def queue() -> dict[str, Any]:
                async with http.get(f"{base}/api/queue") as r:
                    assert r.status == 200
                    return dict(await r.json())

            def on_calls(snap: dict[str, Any]) -> int:
                return sum(m["load"].get("call", 0) for m in snap["managers"])

            async def settled() -> bool:
                snap = await queue()
                calls_open = [c for c in snap["waiting"] + snap["offered"] if c["channel"] == "call"]
                return not calls_open and on_calls(snap) == len(bridged_callers(sim))

            await until(settled, "waiting calls closed and only live talks kept")
            snap = await queue()
            assert on_calls(snap) == len(still)
            for m in snap["managers"]:
                assert m["presence"] != "offered", m
                assert m["presence"] != "busy" or any(m["load"].values()) or m.get("device_busy"), m

            for name in bridged_callers(sim):
                sim.hangup_channel(sim.legs[name].channel)  # the live talks end normally now

            async def all_free() -> bool:
                snap = await queue()
                return on_calls(snap) == 0 and all(m["presence"] not in ("offered", "busy") for m in snap["managers"])

            await until(all_free, "every manager free once the last talk ended")
            print(
                f"RELIABILITY calls={CALLS} talking_at_kill={len(talking)} stuck_managers=0 open_calls_after_restart=0"
            )
    finally:
        await stop_both(proc, sim, log)


CALLBACKS = 10


async def test_no_acknowledged_callback_is_lost_or_rung_twice_at_once_after_kill_9(tmp_path: Path) -> None:
    """Callback requests flow (the managers' phones ring, then the customers'), the server is
    killed in the middle and restarted: every request that got a 201 is there and is carried
    through to a finished attempt, and no callback ever had two attempts at once."""
    sim = PbxSim(time_scale=0.05, auth_failure_delay=0.05)
    sim.default_prompt = 1.0
    await sim.start()
    for device in DEVICES:
        sim.add_phone(Phone(device, answer_after=0.5, talk_for=None))  # the customer ends each call
    numbers = [f"7916100{i:04d}" for i in range(CALLBACKS)]
    for n in numbers:
        sim.add_phone(Phone(f"Local/{n}@acd-outbound", answer_after=0.5, talk_for=3.0))
    agi_port, port = free_port(), free_port()
    sim.agi_target = ("127.0.0.1", agi_port)
    config = calls_config(tmp_path, sim.ami_port, agi_port, FAST_CALLBACKS)
    db = f"sqlite+aiosqlite:///{tmp_path / 'acd.db'}"
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    proc = await serve(config, db, port, log)
    try:
        acked: list[str] = []
        async with aiohttp.ClientSession() as http:
            for n in numbers:
                async with http.post(f"{base}/api/callbacks", json={"phone": f"+{n}", "name": "Клиент"}) as r:
                    assert r.status == 201, await r.text()
                    acked.append((await r.json())["id"])
        # kill it while customers are being called back
        await asyncio.wait_for(
            sim.wait_event(lambda e: e.get("Event") == "BridgeEnter" and e["Channel"].startswith("Local/7916100")), 20
        )
        os.kill(proc.pid, signal.SIGKILL)
        await proc.wait()

        proc = await serve(config, db, port, log)
        sup = await token(config, db)
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {sup}"}) as http:

            async def rows() -> list[dict[str, Any]]:
                out = []
                for cid in acked:
                    async with http.get(f"{base}/api/callbacks/{cid}") as r:
                        assert r.status == 200, f"callback {cid} acknowledged but not found after the restart"
                        out.append(dict(await r.json()))
                return out

            async def all_ended() -> bool:
                return all(row["status"] in ("done", "failed") for row in await rows())

            try:
                await until(all_ended, "every acknowledged callback carried through", timeout=90)
            except (AssertionError, TimeoutError):
                print("callbacks at the timeout:", [(r["status"], r["attempts_log"]) for r in await rows()])
                raise
            final = await rows()
        overlapping = sum(overlapping_attempts(row) for row in final)
        done = sum(row["status"] == "done" for row in final)
        print(
            f"RELIABILITY callbacks={CALLBACKS} acked={len(acked)} found={len(final)} done={done} "
            f"failed={len(final) - done} overlapping_attempts={overlapping}"
        )
        assert len(final) == len(acked) == CALLBACKS
        assert overlapping == 0
        assert done == CALLBACKS, [(row["id"], row["status"], row["attempts_log"]) for row in final]
    finally:
        await stop_both(proc, sim, log)
