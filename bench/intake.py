"""Durable web-lead intake through the HTTP API, next to a bare aiohttp handler.

Each server runs as its own process; one client process drives them all the same way
(N requests, C in flight), so the ratio of the rates is the figure that matters. Beside
the bare handler, the floor (bench.floor_server): the same stack committing each lead and
nothing more, so the figures show what the frameworks cost and what acd adds. The CPU
time each server spends per request is printed too: on a shared machine it moves less
than the rates do. acd's counts all its processes (its SQLite writer works in one of its
own), and the process serving HTTP is also shown alone. Memory is all of them together.

The leads come from new people, one each, as the issue's figure asks, and each carries its
own Idempotency-Key, as the site's form sends it (the bare handler ignores it); acd is also driven
with 30 % of its leads from people who wrote before (repeat customers, recognised through
the CRM: their look-ups and the routing to their deal's owners cost more).
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import psutil

from acd.free_port import free_port

ROOT = Path(__file__).resolve().parent.parent
LEAD = {"name": "Bench", "phone": "+7 900 000-00-00", "criteria": {"temperature": "hot", "price_tier": "high"}}


async def spawn(args: list[str], log: Path) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=log.open("ab"),
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 60)
    if b"listening" not in line:
        raise RuntimeError(f"server did not start: {log.read_text(errors='replace')[-2000:]}")
    return proc


async def cpu_per_request(
    pid: int, url: str, total: int, concurrency: int, repeat: float = 0.0
) -> tuple[float, int, float, float, float]:
    """`hammer`, and the CPU time (user + system) per request in µs: the server's own
    processes all together (acd's SQLite writer among them), the serving one alone, and
    the client's (this process: it shares the machine's cores with the server)."""
    server = psutil.Process(pid)
    processes = [server, *server.children(recursive=True)]
    before = [p.cpu_times() for p in processes]
    client_before = time.process_time()
    rate, errors = await hammer(url, total, concurrency, repeat)
    client = time.process_time() - client_before
    after = [p.cpu_times() for p in processes]
    used = [(a.user - b.user) + (a.system - b.system) for a, b in zip(after, before, strict=True)]
    return rate, errors, sum(used) / total * 1e6, used[0] / total * 1e6, client / total * 1e6


def phone(n: int) -> str:
    return f"+7 900 {n // 10000:03d}-{n % 10000 // 100:02d}-{n % 100:02d}"


async def hammer(url: str, total: int, concurrency: int, repeat: float = 0.0) -> tuple[float, int]:
    """Send `total` leads with `concurrency` in flight; return (requests/s, non-2xx count).
    A `repeat` share of them (after the first hundred) come from people who sent one before."""
    errors = 0
    sent = 0
    rng = random.Random(1)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def worker() -> None:
            nonlocal errors, sent
            while sent < total:
                sent += 1
                # every lead a different customer, as on a real site (the CRM looks each one
                # up), but for the repeat share
                again = sent > 100 and rng.random() < repeat
                lead = {**LEAD, "phone": phone(rng.randrange(1, sent) if again else sent)}
                # as the site's form sends it (web/widget.js): one key per submitted form
                async with http.post(url, json=lead, headers=_key(rng)) as r:
                    await r.read()
                    if r.status >= 300:
                        errors += 1

        # warm up the connections and the server
        await asyncio.gather(*(http.post(url, json=LEAD, headers=_key(rng)) for _ in range(concurrency)))
        t = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return total / (time.perf_counter() - t), errors


def _key(rng: random.Random) -> dict[str, str]:
    """An Idempotency-Key as the site's form makes one (crypto.randomUUID)."""
    return {"Idempotency-Key": str(uuid.UUID(int=rng.getrandbits(128), version=4))}


REPEAT = 0.3  # the repeat customers' share in the second acd run


def config_for_bench(tmp: Path) -> Path:
    text = (ROOT / "config" / "acd.example.yaml").read_text(encoding="utf-8")
    text = text.replace("leads_per_minute: 10 ", "leads_per_minute: 100000000 ")
    text = text.replace("flows_dir: ../ivr_flows", f"flows_dir: {ROOT / 'ivr_flows'}")
    path = tmp / "acd.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def acd_args(tmp: Path, db: Path, port: int) -> list[str]:
    """The command that serves acd on `port`, on the bench's configuration, with demo managers."""
    config = str(config_for_bench(tmp))
    db_url = f"sqlite+aiosqlite:///{db}"
    return [sys.executable, "-m", "acd.cli", "serve", "--config", config, "--db", db_url, "--port", str(port), "--demo"]


@dataclass(frozen=True, slots=True)
class Served:
    rate: float  # requests/s
    errors: int
    cpu_us: float  # the server's CPU time per request, all its processes
    loop_cpu_us: float  # the same, the process serving HTTP alone
    client_cpu_us: float  # the client's CPU time per request
    rss_mb: float


async def serve_and_hammer(
    args: list[str], log: Path, port: int, total: int, concurrency: int, repeat: float = 0.0
) -> Served:
    """Start one server, drive it, stop it."""
    server = await spawn(args, log)
    try:
        url = f"http://127.0.0.1:{port}/api/leads"
        rate, errors, cpu, loop_cpu, client_cpu = await cpu_per_request(server.pid, url, total, concurrency, repeat)
        processes = [psutil.Process(server.pid), *psutil.Process(server.pid).children(recursive=True)]
        rss = sum(p.memory_info().rss for p in processes) / 2**20
        return Served(rate, errors, cpu, loop_cpu, client_cpu, rss)
    finally:
        server.terminate()
        await server.wait()


async def measure(total: int = 6000, concurrency: int = 64, rounds: int = 5) -> dict[str, float]:
    """Each server `rounds` times, taking turns (bare, floor, acd, bare, ...), and the
    median of each figure: on a shared machine one slow moment must not decide the ratio."""
    runs: dict[str, list[Served]] = {"bare": [], "floor": [], "acd": [], "repeat": []}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for n in range(rounds):
            port = free_port()
            bare_args = [sys.executable, "-m", "bench.bare_server", str(port)]
            runs["bare"].append(await serve_and_hammer(bare_args, tmp / "bare.log", port, total, concurrency))
            port = free_port()
            floor_args = [sys.executable, "-m", "bench.floor_server", str(port), str(tmp / f"floor{n}.db")]
            runs["floor"].append(await serve_and_hammer(floor_args, tmp / "floor.log", port, total, concurrency))
            for name, repeat in (("acd", 0.0), ("repeat", REPEAT)):
                port = free_port()
                args = acd_args(tmp, tmp / f"{name}{n}.db", port)
                served = await serve_and_hammer(args, tmp / "acd.log", port, total, concurrency, repeat)
                runs[name].append(served)
    bare, floor, acd, repeat = (_median(runs[k]) for k in ("bare", "floor", "acd", "repeat"))
    return {
        "intake_leads_per_s": acd.rate,
        "intake_bare_aiohttp_rps": bare.rate,
        "intake_ratio": acd.rate / bare.rate,
        "intake_errors": float(sum(r.errors for r in runs["acd"])),
        "intake_floor_rps": floor.rate,
        "intake_floor_ratio": floor.rate / bare.rate,
        "intake_server_cpu_per_lead_us": acd.cpu_us,
        "intake_server_loop_cpu_per_lead_us": acd.loop_cpu_us,
        "intake_bare_cpu_per_request_us": bare.cpu_us,
        "intake_floor_cpu_per_request_us": floor.cpu_us,
        # the bare handler's rate is about what the client can send on its share of the
        # cores: its CPU per request bounds it
        "intake_client_cpu_per_bare_request_us": bare.client_cpu_us,
        "intake_client_cpu_per_lead_us": acd.client_cpu_us,
        "intake_server_rss_mb": max(r.rss_mb for r in runs["acd"]),
        "intake_ratio_lowest_round": min(a.rate / b.rate for a, b in zip(runs["acd"], runs["bare"], strict=True)),
        "intake_ratio_highest_round": max(a.rate / b.rate for a, b in zip(runs["acd"], runs["bare"], strict=True)),
        "intake_repeat30_leads_per_s": repeat.rate,
        "intake_repeat30_ratio": repeat.rate / bare.rate,
        "intake_repeat30_errors": float(sum(r.errors for r in runs["repeat"])),
        "intake_repeat30_server_cpu_per_lead_us": repeat.cpu_us,
    }


def _median(served: list[Served]) -> Served:
    """Each figure's median over the rounds."""
    return Served(
        rate=statistics.median(s.rate for s in served),
        errors=max(s.errors for s in served),
        cpu_us=statistics.median(s.cpu_us for s in served),
        loop_cpu_us=statistics.median(s.loop_cpu_us for s in served),
        client_cpu_us=statistics.median(s.client_cpu_us for s in served),
        rss_mb=statistics.median(s.rss_mb for s in served),
    )


def run() -> dict[str, float]:
    return asyncio.run(measure())


if __name__ == "__main__":
    for k, v in run().items():
        print(k, round(v, 3))
