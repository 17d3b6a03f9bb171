"""`make demo-calls`: calls flowing without an Asterisk.

Starts the simulated PBX here and `acd serve` beside it with the deployment's Asterisk side
switched on and pointed at the simulator (a copy of the configuration in the data folder:
working hours opened around the clock, so the demo runs whenever it is started). Then
customers call every few seconds: they answer the IVR with random keys, wait, talk to the
manager whose phone the router rang; now and then one gives up in the queue. The demo
managers' phones answer after a few rings. Open the panels in a browser to watch.

    python -m acd.pbxsim.demo [--config FILE] [--port 8080] [--every 8] [--calls N]

`--calls N` stops after N calls have ended (the test uses it); otherwise Ctrl-C stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import sys
from pathlib import Path
from typing import Any

import yaml

from acd.free_port import free_port
from acd.pbxsim.pbx import PbxSim
from acd.pbxsim.scenario import Caller, Phone, Press, Step

ROOT = Path(__file__).resolve().parents[2]
SECRET = "demo-ami-secret"  # the simulator's, for this demo only; a real site keeps its own in the environment
MOSCOW = "74951234567"  # the flow's Russian number: no language question


def demo_config(config: Path, data: Path, ami_port: int, agi_port: int) -> tuple[Path, dict[str, str]]:
    """The deployment with its Asterisk side on the simulator; returns the file and the
    managers' names by device."""
    raw: dict[str, Any] = yaml.safe_load(config.read_text(encoding="utf-8"))
    flows = raw.get("flows_dir", "ivr_flows")
    raw["flows_dir"] = str((config.parent / flows).resolve())
    ast = raw.setdefault("asterisk", {})
    ast["enabled"] = True
    ast["ami"] = {**ast.get("ami", {}), "host": "127.0.0.1", "port": ami_port, "secret_env": "ACD_DEMO_AMI_SECRET"}
    ast["fastagi"] = {"host": "127.0.0.1", "port": agi_port}
    ast.pop("servers", None)
    raw["hours"] = {}
    for team in raw.get("teams", {}).values():
        team.pop("hours", None)
    data.mkdir(parents=True, exist_ok=True)
    path = data / "demo-calls.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
    devices = {m["device"]: m.get("name") or m["id"] for m in raw.get("managers", []) if m.get("device")}
    return path, devices


def talked_to(sim: PbxSim, channel: str) -> str | None:
    """The device the caller's channel was bridged with, from the simulator's AMI events."""
    bridges = set()
    for event in map(dict, sim.events):
        if event.get("Event") == "BridgeEnter" and event.get("Channel") == channel:
            bridges.add(event.get("BridgeUniqueid"))
    for event in map(dict, sim.events):
        if event.get("Event") == "BridgeEnter" and event.get("BridgeUniqueid") in bridges:
            other = event.get("Channel", "")
            if other != channel:
                return other.rsplit("-", 1)[0]
    return None


def a_caller(rng: random.Random, n: int) -> Caller:
    """A customer: answers the three questions (sometimes not at all), and one in eight
    gives up while waiting."""
    steps: list[Step] = [Press(rng.choice("12"), after=rng.uniform(0.5, 2.0)) for _ in range(3)]
    if rng.random() < 0.15:
        steps = []  # presses nothing: the flow's defaults
    return Caller(
        number=f"7916{rng.randrange(10**7):07d}",
        name=f"Demo caller {n}",
        dialled=MOSCOW,
        steps=steps,
        hangup_after=rng.uniform(20, 60) if rng.random() < 0.125 else None,
    )


async def run(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    agi_port = free_port()
    sim = PbxSim(agi_target=("127.0.0.1", agi_port), ami_secret=SECRET, time_scale=args.time_scale)
    await sim.start()
    config, devices = demo_config(args.config, args.data, sim.ami_port, agi_port)
    for device in devices:
        sim.add_phone(Phone(device, answer_after=rng.uniform(2, 5), talk_for=rng.uniform(15, 45)))
    db = f"sqlite+aiosqlite:///{(args.data / 'demo-calls.db').resolve()}"
    server = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "acd.cli",
        "serve",
        "--config",
        str(config),
        "--db",
        db,
        "--port",
        str(args.port),
        "--demo",
        env={**os.environ, "ACD_DEMO_AMI_SECRET": SECRET},
        stdout=asyncio.subprocess.PIPE,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    ended = 0
    answered: list[str | None] = []
    calls: set[asyncio.Task[None]] = set()

    async def one(n: int) -> None:
        nonlocal ended
        call = sim.call(a_caller(rng, n))
        result = await call.agi_done
        await call.ended.wait()
        ended += 1
        manager = talked_to(sim, call.channel)
        if manager:
            how = f"talked to {devices.get(manager, '?')} ({manager})"
        elif result.fallback:
            how = "went to the dialplan's fallback queue"
        else:
            how = "hung up before a manager answered"
        print(f"call {n} from +{call.caller.number}: {how}", flush=True)
        answered.append(manager)
        if args.calls and ended >= args.calls:
            stop.set()

    try:
        print(f"simulated PBX: AMI on 127.0.0.1:{sim.ami_port}, calls to the ACD's FastAGI on {agi_port}", flush=True)
        assert server.stdout is not None
        line = await asyncio.wait_for(server.stdout.readline(), 120)
        if b"listening" not in line:
            print("the ACD server did not start (its log is above)", file=sys.stderr)
            return 1
        print(line.decode().strip(), flush=True)
        await asyncio.sleep(args.warmup)  # its AMI client logs in to the simulator
        n = 0
        while not stop.is_set() and (not args.calls or n < args.calls):
            n += 1
            task = asyncio.create_task(one(n))
            calls.add(task)
            task.add_done_callback(calls.discard)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), rng.expovariate(1 / args.every))
        await stop.wait()
        print(f"{sum(1 for a in answered if a)} of {len(answered)} calls reached a manager", flush=True)
        return 0 if server.returncode is None else 1
    finally:
        for task in calls:
            task.cancel()
        if server.returncode is None:
            server.send_signal(signal.SIGTERM)
        await server.wait()
        await sim.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m acd.pbxsim.demo", description="calls flowing without an Asterisk")
    parser.add_argument("--config", type=Path, default=ROOT / "config" / "acd.example.yaml")
    parser.add_argument("--data", type=Path, default=ROOT / "data", help="where the demo's database and config go")
    parser.add_argument("--port", type=int, default=8080, help="the ACD server's HTTP port")
    parser.add_argument("--every", type=float, default=8.0, help="seconds between calls, on average")
    parser.add_argument("--calls", type=int, default=0, help="stop after this many calls have ended")
    parser.add_argument("--time-scale", type=float, default=1.0, help="telephone seconds x this = real seconds")
    parser.add_argument(
        "--warmup", type=float, default=1.0, help="seconds between the server's start and the first call"
    )
    parser.add_argument("--seed", type=int, default=None)
    return asyncio.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
