"""Crash safety with everything flowing at once: web leads (accepted and finished by managers over
the API), callback requests (some scheduled a few seconds ahead) and simulated calls (callers who
hang up on their own, while waiting or talking) all flow into one `acd serve` process connected to
the simulated PBX over AMI + FastAGI, and the process is SIGKILLed at random moments. After each
restart, and once everything has drained at the end:

* every lead and callback that got a 201 exists, and is routed (waiting or offered in the live
  queue), with a manager, or finished;
* no manager is offered without an offer out to them, holds two offers, or is busy with nothing;
* no call is open in the server whose caller is no longer talking to a manager;
* no callback had two attempts at once (by the server's attempt log) and no customer two calls
  at once (by the PBX's event log), and every callback is carried through in the end.

ACD_RELIABILITY_KILLS sets the number of kills (1 by default, 10 under `make reliability`)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
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
    calls_on_managers,
    most_calls_at_once,
    overlapping_attempts,
    serve,
    stop_both,
    stuck_managers,
    until,
)
from tests.test_restart import LEAD, free_port, token

pytestmark = pytest.mark.slow

KILLS = int(os.environ.get("ACD_RELIABILITY_KILLS", "1"))  # `make reliability` raises it
MANAGERS = ["anna", "boris", "vera", "grigory", "daria", "egor"]
ROUTED_OR_DONE = {"waiting", "offered", "assigned", "finished"}
# Calls end with their callers, so a manager is free for the next thing at once.
NO_WRAP_UP = {"  call: {offer_timeout: 20s, wrap_up: 30s}": "  call: {offer_timeout: 20s, wrap_up: 0s}"}


@dataclass
class Traffic:
    """What the customers sent and what the server acknowledged, over all the server's lives."""

    leads_sent: int = 0
    callbacks_sent: int = 0
    calls_placed: int = 0
    leads: set[str] = field(default_factory=set)  # acknowledged lead ids
    callbacks: set[str] = field(default_factory=set)  # acknowledged callback ids


async def post_ack(http: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> str | None:
    """The id the server acknowledged with a 201, or None (refused, or it died under the request)."""
    try:
        async with http.post(url, json=body) as r:
            return str((await r.json())["id"]) if r.status == 201 else None
    except (TimeoutError, aiohttp.ClientError):
        return None


async def forever(step: Callable[[], Awaitable[None]], pause: float) -> None:
    while True:
        await step()
        await asyncio.sleep(pause)  # the pace of the customers, not a wait for the server


async def test_everything_acknowledged_survives_kill_9_with_leads_callbacks_and_calls_at_once(tmp_path: Path) -> None:
    rng = random.Random(11)
    sim = PbxSim(time_scale=0.05, auth_failure_delay=0.05)
    sim.default_prompt = 1.0
    await sim.start()
    for device in DEVICES:  # managers' phones: they pick up; a call ends when its caller hangs up
        sim.add_phone(Phone(device, answer_after=0.5, talk_for=None))
    agi_port, port = free_port(), free_port()
    sim.agi_target = ("127.0.0.1", agi_port)
    config = calls_config(tmp_path, sim.ami_port, agi_port, {**FAST_CALLBACKS, **NO_WRAP_UP})
    db = f"sqlite+aiosqlite:///{tmp_path / 'acd.db'}"
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    sent = Traffic()
    stuck_seen: list[str] = []
    open_calls_seen = 0
    talking_at_kills = 0

    def customers(http: aiohttp.ClientSession) -> list[asyncio.Task[None]]:
        async def leads() -> None:
            burst = [{**LEAD, "name": f"lead {sent.leads_sent + k}"} for k in range(5)]
            sent.leads_sent += len(burst)
            for got in await asyncio.gather(*(post_ack(http, f"{base}/api/leads", b) for b in burst)):
                if got:
                    sent.leads.add(got)

        async def callbacks() -> None:
            number = f"7916300{sent.callbacks_sent:04d}"
            sent.callbacks_sent += 1
            sim.add_phone(Phone(f"Local/{number}@acd-outbound", answer_after=0.5, talk_for=3.0))
            body: dict[str, Any] = {"phone": f"+{number}", "name": "Клиент"}
            if rng.random() < 0.5:  # "call me in a moment": scheduled on the wall clock
                body["after"] = time.time() + rng.uniform(0.5, 3.0)
            if got := await post_ack(http, f"{base}/api/callbacks", body):
                sent.callbacks.add(got)

        async def calls() -> None:
            keys = [Press("1"), Press("1"), Press("3")]
            number = f"7916200{sent.calls_placed:04d}"
            sent.calls_placed += 1
            # hangs up after 1.5-4 s wherever the call is: in the IVR, waiting, ringing or talking
            sim.call(Caller(number=number, dialled="74951234567", steps=keys, hangup_after=rng.uniform(30, 80)))

        return [
            asyncio.create_task(forever(leads, 0.25)),
            asyncio.create_task(forever(callbacks, 0.3)),
            asyncio.create_task(forever(calls, 0.4)),
        ]

    def managers_at_work(http: aiohttp.ClientSession, managers: dict[str, str], sup: str) -> asyncio.Task[None]:
        """Each manager accepts the web lead offered to them, and finishes it at once (their
        phones answer calls and callbacks in the simulated PBX)."""

        async def work() -> None:
            try:
                async with http.get(f"{base}/api/queue", headers={"Authorization": f"Bearer {sup}"}) as r:
                    snap = await r.json()
                for c in snap["offered"]:
                    if c["channel"] != "web":
                        continue
                    auth = {"Authorization": f"Bearer {managers[c['offered_to']]}"}
                    async with http.post(f"{base}/api/contacts/{c['id']}/accept", headers=auth) as r:
                        if r.status != 200:
                            continue  # the offer ran out or moved meanwhile
                    async with http.post(f"{base}/api/contacts/{c['id']}/finish", headers=auth, json={}) as r:
                        pass
            except (TimeoutError, aiohttp.ClientError):
                pass  # the server is down

        return asyncio.create_task(forever(work, 0.2))

    async def stop(tasks: list[asyncio.Task[None]]) -> None:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def check_after_restart(http: aiohttp.ClientSession, sup: str) -> Counter[str]:
        """The promises kept, checked from outside right after a restart (nothing new flowing yet).
        Returns the acknowledged leads found, by status."""
        nonlocal open_calls_seen
        auth = {"Authorization": f"Bearer {sup}"}

        async def queue() -> dict[str, Any]:
            async with http.get(f"{base}/api/queue", headers=auth) as r:
                assert r.status == 200
                return dict(await r.json())

        async def calls_settled() -> bool:
            snap = await queue()
            calls_open = [c for c in snap["waiting"] + snap["offered"] if c["channel"] == "call"]
            return not calls_open and calls_on_managers(snap) == len(bridged_callers(sim))

        try:
            await until(calls_settled, "calls whose callers are gone closed after the restart", timeout=30)
        except (AssertionError, TimeoutError):
            snap = await queue()
            open_calls_seen += calls_on_managers(snap) - len(bridged_callers(sim))
            raise
        snap = await queue()
        stuck_seen.extend(stuck_managers(snap))
        assert not stuck_seen, stuck_seen
        routed = {c["id"] for c in snap["waiting"] + snap["offered"]}
        limit = asyncio.Semaphore(8)

        async def lead_status(cid: str) -> tuple[str, str]:
            async with limit, http.get(f"{base}/api/contacts/{cid}", headers=auth) as r:
                assert r.status == 200, f"lead {cid} acknowledged but not found after the restart"
                return cid, (await r.json())["status"]

        found: Counter[str] = Counter()
        for cid, status in await asyncio.gather(*(lead_status(cid) for cid in sent.leads)):
            assert status in ROUTED_OR_DONE, (cid, status)
            assert status not in ("waiting", "offered") or cid in routed, f"lead {cid} {status} but not in the queue"
            found[status] += 1
        for row in await callback_rows(http, auth):
            assert overlapping_attempts(row) == 0, row
        return found

    async def callback_rows(http: aiohttp.ClientSession, auth: dict[str, str]) -> list[dict[str, Any]]:
        limit = asyncio.Semaphore(8)

        async def one(cid: str) -> dict[str, Any]:
            async with limit, http.get(f"{base}/api/callbacks/{cid}", headers=auth) as r:
                assert r.status == 200, f"callback {cid} acknowledged but not found after the restart"
                return dict(await r.json())

        return list(await asyncio.gather(*(one(cid) for cid in sent.callbacks)))

    proc = await serve(config, db, port, log)
    sup = await token(config, db, "admin")
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {sup}"}) as http:
        managers = {}
        for m in MANAGERS:
            async with http.post(f"{base}/api/tokens", json={"role": "manager", "manager_id": m}) as r:
                assert r.status == 201, await r.text()
                managers[m] = (await r.json())["token"]
    try:
        for kill in range(KILLS):
            if kill:
                proc = await serve(config, db, port, log)
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
                if kill:
                    await check_after_restart(http, sup)
                running = [*customers(http), managers_at_work(http, managers, sup)]
                await asyncio.sleep(rng.uniform(1.5, 3.5))  # a random moment with everything in motion
                os.kill(proc.pid, signal.SIGKILL)
                talking_at_kills += len(bridged_callers(sim))
                await proc.wait()
                await stop(running)

        proc = await serve(config, db, port, log)
        auth = {"Authorization": f"Bearer {sup}"}
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            await check_after_restart(http, sup)
            working = [managers_at_work(http, managers, sup)]

            # Drain: the callbacks are carried through, the callers hang up, managers end up free.
            async def callbacks_ended() -> bool:
                return all(row["status"] in ("done", "failed") for row in await callback_rows(http, auth))

            try:
                await until(callbacks_ended, "every acknowledged callback carried through", timeout=120)
            except (AssertionError, TimeoutError):
                rows = await callback_rows(http, auth)
                print("callbacks at the timeout:", [(r["status"], r["attempts_log"]) for r in rows])
                async with http.get(f"{base}/api/queue", headers=auth) as r:
                    print("queue at the timeout:", await r.json())
                raise

            async def all_free() -> bool:
                async with http.get(f"{base}/api/queue", headers=auth) as r:
                    snap = await r.json()
                calls_open = [c for c in snap["waiting"] + snap["offered"] if c["channel"] == "call"]
                return not bridged_callers(sim) and not calls_open and calls_on_managers(snap) == 0

            await until(all_free, "every call closed once its caller hung up", timeout=60)
            await stop(working)
            leads_found = await check_after_restart(http, sup)
            final = await callback_rows(http, auth)
        customer_calls = most_calls_at_once(sim, "Local/7916300")
        customers_rung_twice = sorted(number for number, most in customer_calls.items() if most > 1)
        done = sum(row["status"] == "done" for row in final)
        cut = [row for row in final if row["status"] == "failed"]
        print(
            f"RELIABILITY everything kills={KILLS} leads sent={sent.leads_sent} acked={len(sent.leads)} "
            f"found={leads_found.total()} {dict(leads_found)} "
            f"callbacks sent={sent.callbacks_sent} acked={len(sent.callbacks)} "
            f"found={len(final)} done={done} failed={len(cut)} calls={sent.calls_placed} "
            f"talking_at_kills={talking_at_kills} "
            f"overlapping_attempts={sum(overlapping_attempts(r) for r in final)} "
            f"customers_dialled={len(customer_calls)} customers_dialled_twice_at_once={len(customers_rung_twice)} "
            f"stuck_managers={len(stuck_seen)} open_calls_after_hangup={open_calls_seen}"
        )
        assert sent.leads and sent.callbacks and sent.calls_placed, "something was not flowing"
        assert len(customer_calls) >= done, "the PBX's log shows fewer customers called than callbacks done"
        assert not customers_rung_twice, customers_rung_twice
        for row in cut:  # given up only if restarts cut every attempt: a customer who answers is done
            assert all("restart" in (a["result"] or "") for a in row["attempts_log"]), row
    finally:
        await stop_both(proc, sim, log)
