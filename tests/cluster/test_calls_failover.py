"""Calls in flight when a node is killed with SIGKILL: `acd serve --cluster` processes with
telephony on one PostgreSQL, the simulated PBX over TCP sending every call to node B's FastAGI.

* The dispatching node A is killed while B holds calls talking, ringing and queued: B takes
  over, the queued calls are offered and answered, the talks finish normally, nothing is stuck.
* The call-holding node B (dispatching by then) is killed and does not come back: A takes
  over, and once `server.node_grace` has passed it ends B's calls as hung up and frees the
  managers. (A follower that holds calls and vanishes: tests/cluster/test_liveness.py.)

One pair of processes for both (`ACD_RELIABILITY_KILLS` rounds).

The figures (take-over time, calls ended, stuck count) are printed for `make reliability`."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from cluster_fixtures import Place

from acd.cluster.leader import dsn
from acd.pbxsim import Caller, PbxSim, Phone, Press
from tests.reliability.test_calls_restart import calls_config
from tests.test_restart import ROOT, free_port

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

KILLS = int(os.environ.get("ACD_RELIABILITY_KILLS", "1"))
GRACE = 2.0  # server.node_grace in these tests
TIME_SCALE = 0.05  # telephone seconds → real seconds in the simulated PBX
SALES = {"anna": "PJSIP/101", "boris": "PJSIP/102", "vera": "PJSIP/103"}  # the team a hot purchase goes to
SLOW = "PJSIP/103"  # vera's phone rings a while before she answers: a call is ringing at the kill
KEYS = [Press("1"), Press("1"), Press("3")]


class Node:
    """One `acd serve --cluster` process with telephony; its own deployment file, because
    each node needs its own FastAGI port on one machine."""

    def __init__(self, name: str, tmp_path: Path, db: str, ami_port: int) -> None:
        self.name, self.db = name, db
        self.port, self.agi_port = free_port(), free_port()
        home = tmp_path / name
        home.mkdir()
        self.config = calls_config(home, ami_port, self.agi_port)
        text = self.config.read_text(encoding="utf-8")
        for old, new in (
            ("  call: {offer_timeout: 20s, wrap_up: 30s}", "  call: {offer_timeout: 20s, wrap_up: 0s}"),
            ("  node_grace: 10s", f"  node_grace: {GRACE:g}s"),
        ):
            assert old in text, old
            text = text.replace(old, new, 1)
        self.config.write_text(text, encoding="utf-8")
        self.log = home / "server.log"
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "acd.cli", "serve", "--cluster", "--demo"),
            *("--config", str(self.config), "--db", self.db, "--port", str(self.port)),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=self.log.open("ab"),
            env={**os.environ, "ACD_AMI_SECRET": "acdsecret"},
        )
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), 30)
        assert b"listening" in line, (line, self.log.read_text(errors="replace"))

    def dispatching(self) -> bool:
        assert self.proc is not None
        return f":{self.port}:{self.proc.pid} dispatches now" in self.log.read_text(errors="replace")

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)

    async def halt(self) -> None:
        """At the end: SIGKILL too (a graceful stop is not what is tested, and takes seconds)."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


async def eventually(check: Callable[[], Awaitable[bool] | bool], what: str, within: float = 30.0) -> float:
    """Poll other processes (their API, the database, the simulator) until `check()` holds;
    the seconds it took."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(within):
            while True:
                result = check()
                if await result if not isinstance(result, bool) else result:
                    return time.perf_counter() - started
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"not within {within} s: {what}") from None


def bridged_callers(sim: PbxSim) -> list[str]:
    return [name for name, leg in sim.legs.items() if name.startswith("PJSIP/trunk-") and leg.bridged is not None]


def ringing(sim: PbxSim, device: str) -> bool:
    return any(name.startswith(device) and leg.bridged is None for name, leg in sim.legs.items())


async def calls(db: str) -> dict[str, tuple[str, str | None]]:
    """Every call contact: id → (status, assigned_to), read from the shared database."""
    conn = await asyncpg.connect(dsn(db))
    try:
        rows = await conn.fetch("SELECT id, status, assigned_to FROM contacts WHERE channel = 'call'")
    finally:
        await conn.close()
    return {r["id"]: (r["status"], r["assigned_to"]) for r in rows}


async def snapshot(db: str) -> dict[str, Any]:
    """The open contacts and the managers as the dispatching node last committed them (the
    shape of GET /api/queue: reading the table spares each check a token and a round trip)."""
    conn = await asyncpg.connect(dsn(db))
    try:
        contacts = await conn.fetch(
            "SELECT id, channel, status, offered_to FROM contacts WHERE status IN ('waiting', 'offered')"
        )
        managers = await conn.fetch("SELECT id, presence, load, offer_contact_id, device_busy FROM managers")
    finally:
        await conn.close()
    return {
        "waiting": [dict(c) for c in contacts if c["status"] == "waiting"],
        "offered": [dict(c) for c in contacts if c["status"] == "offered"],
        "managers": [{**dict(m), "load": json.loads(m["load"])} for m in managers],
    }


def stuck(snapshot: dict[str, Any]) -> list[str]:
    """Managers offered a contact that is not offered to them, or busy with nothing to be busy with."""
    offered = {c["id"]: c["offered_to"] for c in snapshot["offered"]}
    wrongly_offered = [
        m["id"]
        for m in snapshot["managers"]
        if m["presence"] == "offered" and offered.get(m["offer_contact_id"]) != m["id"]
    ]
    busy_for_nothing = [
        m["id"]
        for m in snapshot["managers"]
        if m["presence"] == "busy" and not any(m["load"].values()) and not m["device_busy"]
    ]
    return wrongly_offered + busy_for_nothing


async def started_pbx() -> PbxSim:
    sim = PbxSim(time_scale=TIME_SCALE, auth_failure_delay=0.05)
    sim.default_prompt = 1.0
    await sim.start()
    for device in SALES.values():
        # vera picks up after 15 telephone seconds (0.75 s here: within the 19-20 s the ACD lets a
        # phone ring, so she never misses an offer); everyone talks until hung up
        sim.add_phone(Phone(device, answer_after=15.0 if device == SLOW else 0.5, talk_for=None))
    for device in ("PJSIP/104", "PJSIP/105", "PJSIP/106"):
        sim.add_phone(Phone(device, registered=False))  # only sales takes these calls
    return sim


async def calls_in_flight(sim: PbxSim, first: int, n: int = 5) -> str:
    """`n` calls to the holding node: two talking (anna, boris), one ringing vera (or, if this
    poll missed her short ring, talking with her), the rest queued. What was found, for the record."""
    for i in range(n):
        sim.call(Caller(number=f"7916200{first + i:04d}", dialled="74951234567", steps=KEYS))
    await eventually(lambda: len(bridged_callers(sim)) >= 2, "two calls talking")
    await eventually(lambda: ringing(sim, SLOW) or len(bridged_callers(sim)) >= 3, "a call ringing vera")
    return f"talking={len(bridged_callers(sim))} ringing={int(ringing(sim, SLOW))}"


async def test_calls_in_flight_go_on_when_the_dispatcher_is_killed_and_end_when_their_node_is_killed(
    pg_database: Place, tmp_path: Path
) -> None:
    """Each round (`ACD_RELIABILITY_KILLS`), node A dispatching and B holding the calls:

    1. A is killed: B takes over, and B's calls go on — the queued ones are offered and
       answered, the talks end normally, nothing stuck. A comes back as a follower.
    2. B, now dispatching and holding new calls, is killed and does not come back: A takes
       over, and once `server.node_grace` has passed B's calls are ended, no manager stuck.
       B comes back (the same host and FastAGI port) for the next round."""
    sim = await started_pbx()
    a = Node("a", tmp_path, pg_database.url, sim.ami_port)
    b = Node("b", tmp_path, pg_database.url, sim.ami_port)
    sim.agi_target = ("127.0.0.1", b.agi_port)  # every call is held by B
    takeovers: list[float] = []
    endings: list[float] = []
    try:
        await a.start()
        await eventually(a.dispatching, "A dispatches")
        await b.start()
        assert not b.dispatching()

        async def managers_free() -> bool:
            for name in bridged_callers(sim):  # the talks end (vera may have picked up late)
                sim.hangup_channel(sim.legs[name].channel)
            snap = await snapshot(pg_database.url)
            sales = [m for m in snap["managers"] if m["id"] in SALES]
            return all(m["presence"] == "available" for m in sales) and not stuck(snap)

        for round_ in range(KILLS):
            # 1. the dispatcher A is killed; B, holding the calls, takes over
            known = set(await calls(pg_database.url))
            at_kill = await calls_in_flight(sim, 20 * round_)
            a.kill()
            killed = time.perf_counter()
            takeovers.append(await eventually(b.dispatching, "B takes over"))
            assert a.proc is not None and await a.proc.wait() == -signal.SIGKILL
            answered: set[str] = set()

            async def everyone_answered(known: set[str] = known, answered: set[str] = answered) -> bool:
                for name in bridged_callers(sim):  # each talk is ended by its caller
                    answered.add(name)
                    sim.hangup_channel(sim.legs[name].channel)
                state = {cid: s for cid, s in (await calls(pg_database.url)).items() if cid not in known}
                return len(state) == 5 and all(s == "finished" and who for s, who in state.values())

            await eventually(everyone_answered, "every call answered by a manager and finished", 90)
            await eventually(managers_free, "every manager free, nothing stuck")
            snap = await snapshot(pg_database.url)
            assert not snap["waiting"] and not snap["offered"]
            print(
                f"\nCLUSTER calls: round={round_ + 1} dispatcher killed, took over in {takeovers[-1]:.3f} s; "
                f"held=5 ({at_kill} at the kill) answered={len(answered)} open=0 stuck=0, "
                f"all done {time.perf_counter() - killed:.1f} s after the kill"
            )
            await a.start()  # back, as a follower

            # 2. B, dispatching and holding the calls, is killed for good; A takes over and ends them
            state = await calls(pg_database.url)
            known = set(state)
            at_kill = await calls_in_flight(sim, 20 * round_ + 10)
            b.kill()
            killed = time.perf_counter()
            assert b.proc is not None and await b.proc.wait() == -signal.SIGKILL
            await eventually(a.dispatching, "A takes over")

            async def all_ended(known: set[str] = known) -> bool:
                state = {cid: s for cid, s in (await calls(pg_database.url)).items() if cid not in known}
                return len(state) == 5 and all(s in ("finished", "abandoned") for s, _ in state.values())

            await eventually(all_ended, f"B's calls ended after the grace period ({GRACE:g} s)", 60)
            endings.append(time.perf_counter() - killed)
            assert endings[-1] >= GRACE  # never before the grace period
            snap = await snapshot(pg_database.url)
            calls_open = [c for c in snap["waiting"] + snap["offered"] if c["channel"] == "call"]
            on_calls = sum(m["load"].get("call", 0) for m in snap["managers"])
            print(
                f"CLUSTER calls: round={round_ + 1} call-holding node killed for good; calls_ended=5 "
                f"({at_kill} at the kill) after {endings[-1]:.2f} s (grace {GRACE:g} s) "
                f"open={len(calls_open)} managers_on_calls={on_calls} stuck={len(stuck(snap))}"
            )
            assert not calls_open and on_calls == 0 and not stuck(snap)
            # the talks themselves went on in the PBX: once they end, every manager is free
            await eventually(managers_free, "the sales managers available again")

            if round_ + 1 < KILLS:
                await b.start()  # back on the same FastAGI port: it holds the next round's calls
        print(
            f"CLUSTER calls: rounds={len(takeovers)} take-over {min(takeovers):.3f}-{max(takeovers):.3f} s; "
            f"a gone node's calls ended after {min(endings):.2f}-{max(endings):.2f} s (grace {GRACE:g} s)"
        )
    finally:
        for node in (a, b):
            await node.halt()
        await sim.close()
