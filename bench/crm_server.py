"""Routing quality through the real server: best-match's expected revenue as a share of an
oracle's, next to round-robin's, under the same capacity limits.

The office is the example scenario's (config/scenarios/example.yaml): eight managers whose
true win rates and deal sizes differ by purpose, hidden from the router. For each policy a
fresh `acd serve` process gets:

- a year-like history of closed deals generated from the truth, imported through
  `acd crm import deals` (the oracle instead gets the truth itself: every segment's expected
  wins and amounts over many deals, so its ratings are the true figures);
- the same stream of web leads through `POST /api/leads`, at a bit more than half of what
  the office can handle: a lead usually finds several managers free, so the choice of whom
  matters (in a saturated office whoever frees up first takes the queue's head, whatever
  the policy);
- the eight managers, played by this process over the panel's own interfaces: the live
  WebSocket tells each of them about an offer, they accept it, "work" for a handle time
  (real seconds, kept short) and finish it through `POST /api/crm/contacts/{id}/finish` as
  won or lost, drawn from their true win rate, so the ratings also update online;
- web capacity 1 per manager, so who is free decides as much as who is best.

The measure is expected revenue (true win rate x true deal size of whoever took each lead),
so the luck of single deals does not move it. Fairness is the most over the fewest leads
among managers with the same skills.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from acd.sim.engine import history, true_amount, true_win_rate
from acd.sim.scenario import ManagerSpec, Scenario, load_scenario
from bench.intake import free_port, spawn

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "config" / "scenarios" / "example.yaml"
KEYS = ("purpose", "price_tier", "temperature")
LEADS = 800
HANDLE_S = 0.25  # a lead's work, in real seconds: the office handles ~8 / 0.25 = 32 leads/s
ARRIVALS_PER_S = 18.0
ORACLE_DEALS_PER_CELL = 200
DAY = 86400.0


def write_config(s: Scenario, tmp: Path, strategy: str) -> Path:
    raw = yaml.safe_load((ROOT / "config" / "acd.example.yaml").read_text(encoding="utf-8"))
    raw["flows_dir"] = str(ROOT / "ivr_flows")
    raw["web"]["rate_limits"]["leads_per_minute"] = 100_000_000
    raw["web"]["rate_limits"]["api_per_minute"] = 100_000_000
    raw["hours"] = {}  # open around the clock: the benchmark runs whenever it is started
    for team in raw["teams"].values():
        team.pop("hours", None)
    raw["manager_defaults"]["capacity"] = {"call": 1, "callback": 1, "web": 1, "email": 1}
    raw["managers"] = [{"id": m.id, "name": m.id, "team": m.team, "skills": dict(m.skills)} for m in s.managers]
    raw["policy"]["strategy"] = strategy
    raw["policy"].pop("shadow", None)
    path = tmp / f"acd-{strategy}.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def _deal_row(i: int, m: ManagerSpec, criteria: dict[str, str], won: bool, amount: float, at: float) -> dict[str, Any]:
    day = time.strftime("%Y-%m-%d", time.gmtime(at))
    return {
        "id": f"h{i}",
        "customer_phone": f"+7 901 {i // 10000:03d}-{i % 10000 // 100:02d}-{i % 100:02d}",
        "customer_name": f"Customer {i}",
        "title": f"Deal {i}",
        "amount": f"{amount:.2f}" if won else "0",
        "status": "won" if won else "lost",
        "owner": m.id,
        "opened": day,
        "closed": day,
        **criteria,
    }


def write_history(s: Scenario, tmp: Path, oracle: bool) -> Path:
    """The deals the CRM starts from: generated from the truth, or (oracle) the truth itself."""
    now = time.time()
    rows: list[dict[str, Any]] = []
    if oracle:
        rng = random.Random(1)
        cells = [
            {"purpose": p, "price_tier": t, "temperature": h}
            for p in s.mix["purpose"]
            for t in s.mix["price_tier"]
            for h in s.mix["temperature"]
        ]
        for m in s.managers:
            for criteria in cells:
                p, amount = true_win_rate(s, m, criteria), true_amount(s, m, criteria)
                wins = round(p * ORACLE_DEALS_PER_CELL)
                for k in range(ORACLE_DEALS_PER_CELL):
                    at = now - rng.uniform(1, 30) * DAY
                    rows.append(_deal_row(len(rows), m, criteria, k < wins, amount, at))
    else:
        specs = {m.id: m for m in s.managers}
        for o in history(s, KEYS):
            at = now - (1_767_571_200.0 - o.at)  # the simulator's days before its epoch, before today
            criteria = dict(zip(KEYS, o.segment, strict=True))
            rows.append(_deal_row(len(rows), specs[o.manager_id], criteria, o.won, o.amount, at))
    path = tmp / ("oracle.csv" if oracle else "history.csv")
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def lead_stream(s: Scenario) -> list[dict[str, str]]:
    rng = random.Random(s.seed)
    out = []
    for _ in range(LEADS):
        out.append({k: rng.choices(list(shares), weights=list(shares.values()))[0] for k, shares in s.mix.items()})
    return out


async def cli(*args: str, log: Path) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "acd.cli", *args, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=log.open("ab")
    )
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"acd {' '.join(args)} failed: {log.read_text(errors='replace')[-2000:]}")
    return out.decode()


class Office:
    """The managers, played over the live feed and the API, and what they took."""

    def __init__(self, s: Scenario, base: str, tokens: dict[str, str]) -> None:
        self.s = s
        self.base = base
        self.tokens = tokens
        self.specs = {m.id: m for m in s.managers}
        self.taken: Counter[str] = Counter()
        self.expected = 0.0
        self.rng = random.Random(7)
        self.finished = 0
        self.expected_leads = 0
        self.all_finished = asyncio.Event()

    async def manager(self, http: aiohttp.ClientSession, mid: str, ready: asyncio.Event) -> None:
        auth = {"Authorization": f"Bearer {self.tokens[mid]}"}
        async with http.ws_connect(f"{self.base}/api/ws", headers=auth) as ws:
            ready.set()
            async for msg in ws:
                data = msg.json()
                if data.get("type") != "offer":
                    continue
                contact = data["contact"]
                async with http.post(f"{self.base}/api/contacts/{contact['id']}/accept", headers=auth) as r:
                    if r.status >= 300:
                        continue  # withdrawn meanwhile
                criteria, spec = contact["criteria"], self.specs[mid]
                p, amount = true_win_rate(self.s, spec, criteria), true_amount(self.s, spec, criteria)
                self.taken[mid] += 1
                self.expected += p * amount
                await asyncio.sleep(HANDLE_S * self.rng.uniform(0.5, 1.5))
                won = self.rng.random() < p
                body = {"outcome": "won", "amount": amount} if won else {"outcome": "lost"}
                async with http.post(
                    f"{self.base}/api/crm/contacts/{contact['id']}/finish", headers=auth, json=body
                ) as r:
                    if r.status >= 300:
                        raise RuntimeError(f"finish failed: {r.status} {await r.text()}")
                self.finished += 1
                if self.finished == self.expected_leads:
                    self.all_finished.set()


async def one_policy(s: Scenario, tmp: Path, strategy: str, oracle: bool, leads: list[dict[str, str]]) -> Office:
    name = "oracle" if oracle else strategy
    log = tmp / f"{name}.log"
    config = write_config(s, tmp, strategy)
    db = f"sqlite+aiosqlite:///{tmp / (name + '.db')}"
    deals = write_history(s, tmp, oracle)
    await cli("crm", "import", "deals", str(deals), "--config", str(config), "--db", db, log=log)
    admin_token = (await cli("token", "create", "--role", "admin", "--db", db, log=log)).split()[-1]
    admin = {"Authorization": f"Bearer {admin_token}"}
    port = free_port()
    server = await spawn(
        [sys.executable, "-m", "acd.cli", "serve", "--config", str(config), "--db", db, "--port", str(port), "--demo"],
        log,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as http:
            tokens = {}
            for m in s.managers:
                ask = {"role": "manager", "manager_id": m.id}
                async with http.post(f"{base}/api/tokens", headers=admin, json=ask) as r:
                    tokens[m.id] = (await r.json())["token"]
            office = Office(s, base, tokens)
            office.expected_leads = len(leads)
            readies = [asyncio.Event() for _ in s.managers]
            players = [
                asyncio.create_task(office.manager(http, m.id, r)) for m, r in zip(s.managers, readies, strict=True)
            ]
            await asyncio.gather(*(r.wait() for r in readies))
            for i, criteria in enumerate(leads):
                lead = {"name": f"Lead {i}", "phone": f"+7 902 {i // 10000:03d}-{i % 10000 // 100:02d}-{i % 100:02d}"}
                async with http.post(f"{base}/api/leads", json={**lead, "criteria": criteria}) as r:
                    if r.status != 201:
                        raise RuntimeError(f"lead refused: {r.status} {await r.text()}")
                await asyncio.sleep(1 / ARRIVALS_PER_S)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(office.all_finished.wait(), 120)
            for p in players:
                p.cancel()
            await asyncio.gather(*players, return_exceptions=True)
        if office.finished < len(leads):
            raise RuntimeError(f"{name}: only {office.finished} of {len(leads)} leads were finished")
        return office
    finally:
        server.terminate()
        await server.wait()


def fairness(office: Office, s: Scenario) -> float:
    groups: dict[tuple[tuple[str, int], ...], list[int]] = {}
    for m in s.managers:
        groups.setdefault(tuple(sorted(m.skills.items())), []).append(office.taken.get(m.id, 0))
    worst = 1.0
    for counts in groups.values():
        if len(counts) > 1:
            worst = max(worst, max(counts) / max(1, min(counts)))
    return worst


async def measure() -> dict[str, float]:
    s = load_scenario(SCENARIO)
    leads = lead_stream(s)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        learnt = await one_policy(s, tmp, "best-match", False, leads)
        rr = await one_policy(s, tmp, "rrmemory", False, leads)
        oracle = await one_policy(s, tmp, "best-match", True, leads)
    return {
        "crm_server_best_match_share_of_oracle_ratio": learnt.expected / oracle.expected,
        "crm_server_round_robin_share_of_oracle_ratio": rr.expected / oracle.expected,
        "crm_server_best_match_fairness_max_min_ratio": fairness(learnt, s),
    }


def run() -> dict[str, float]:
    return asyncio.run(measure())


if __name__ == "__main__":
    for k, v in run().items():
        print(k, round(v, 3))
