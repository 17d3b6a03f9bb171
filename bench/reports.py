"""The supervisor's reports on a long history: the month and the week report of a busy
office (300 contacts a day, 10 managers), through the real server and its HTTP API.

`fill_history` writes such a history through the store's own API (`Store.apply`), reusable
by other benchmarks and profiling: contacts with their criteria and form payload, routing
decisions with their full explanation (every manager's scores), and presence changes
(offers, accepts, misses, finishes, lunch pauses). Some e-mails are answered the next day,
some calls missed and re-offered, some abandoned.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import tempfile
import time
from dataclasses import replace
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
from aiohttp.test_utils import TestServer

from acd.app import build
from acd.config import Deployment, RateLimits, load_deployment
from acd.core.events import Candidate, Decision, Transition
from acd.core.model import Channel, Contact, ContactStatus, Outcome, Presence
from acd.storage import Store, default_sqlite_url, open_store

ROOT = Path(__file__).resolve().parent.parent

P = Presence
MANAGERS = ("anna", "boris", "vera", "grigory", "daria", "egor", "m7", "m8", "m9", "m10")
CHANNELS = (Channel.CALL,) * 10 + (Channel.WEB,) * 5 + (Channel.CALLBACK,) * 2 + (Channel.EMAIL,) * 3
OUTCOMES = (Outcome.WON, Outcome.LOST, Outcome.LOST, Outcome.UNREACHED, Outcome.DONE)


def _day(
    rng: random.Random, d: date, zone: ZoneInfo, per_day: int, n0: int
) -> tuple[list[Contact], list[Decision], list[Transition]]:
    open_at = datetime(d.year, d.month, d.day, 8, tzinfo=zone).timestamp()
    contacts: list[Contact] = []
    decisions: list[Decision] = []
    transitions: list[Transition] = []
    for mid in MANAGERS:  # lunch
        lunch = open_at + 5 * 3600 + rng.uniform(0, 3600)
        transitions.append(Transition(mid, lunch, P.AVAILABLE, P.PAUSED, "lunch", "pause"))
        transitions.append(Transition(mid, lunch + 2700, P.PAUSED, P.AVAILABLE, None, "resume"))
    for k in range(per_day):
        n = n0 + k
        cid = f"c{n}"
        channel = rng.choice(CHANNELS)
        arrived = open_at + rng.uniform(0, 12 * 3600)
        offers: list[tuple[str, float, str, float]] = []  # manager, offered at, cause, ended at
        at = arrived + rng.uniform(1, 30)
        if rng.random() < 0.1:  # missed, then offered to another
            mid = rng.choice(MANAGERS)
            offers.append((mid, at, "miss", at + 20))
            at += 21
        abandoned = rng.random() < 0.06
        if channel is Channel.EMAIL:
            at += rng.uniform(60, 2 * 86400) if rng.random() < 0.2 else rng.uniform(60, 3600)
        if not abandoned:
            offers.append((rng.choice(MANAGERS), at, "accept", at + rng.uniform(2, 40)))
        for i, (mid, offered, cause, ended) in enumerate(offers):
            scores = {m: rng.random() for m in MANAGERS}
            decisions.append(
                Decision(
                    f"d{n}-{i}",
                    offered,
                    cid,
                    mid,
                    "offer",
                    "v3",
                    "best-match",
                    0,
                    "all",
                    candidates=tuple(
                        Candidate(m, s, {"win_rate": s, "amount": s * 1e5, "fit": s / 2, "load": 1 - s})
                        for m, s in sorted(scores.items(), key=lambda kv: -kv[1])
                    ),
                    filtered={"busy": [m for m in MANAGERS[:3] if m != mid], "skills": ["m9"]},
                    filtered_counts={"busy": 2, "skills": 1},
                    summary=f"{mid}: best expected value among {len(MANAGERS)} candidates",
                )
            )
            transitions.append(Transition(mid, offered, P.AVAILABLE, P.OFFERED, None, "offer"))
            if cause == "accept":
                transitions.append(Transition(mid, ended, P.OFFERED, P.BUSY, None, "accept"))
                transitions.append(Transition(mid, ended + 300, P.BUSY, P.AVAILABLE, None, "finish"))
            else:
                transitions.append(Transition(mid, ended, P.OFFERED, P.PAUSED, "missed", "miss"))
                transitions.append(Transition(mid, ended + 60, P.PAUSED, P.AVAILABLE, None, "rejoin"))
        answered = offers[-1] if offers and offers[-1][2] == "accept" else None
        contacts.append(
            Contact(
                id=cid,
                channel=channel,
                arrived_at=arrived,
                criteria={
                    "purpose": rng.choice(("purchase", "renewal", "training")),
                    "price_tier": rng.choice(("low", "mid", "high")),
                    "temperature": rng.choice(("hot", "cold")),
                },
                customer_name=f"Иван Петров {n}",
                phone=f"+7916{n:07d}",
                email=f"client{n}@example.ru",
                language="ru",
                required_skills=frozenset({"sales"}),
                status=ContactStatus.FINISHED if answered else ContactStatus.ABANDONED,
                assigned_to=answered[0] if answered else None,
                declined_by=frozenset(),
                step_since=arrived,
                outcome=rng.choice(OUTCOMES) if answered else None,
                finished_at=answered[3] + 300 if answered else None,
                payload={
                    "note": "Перезвоните после обеда, интересует годовая подписка",
                    "utm": {"source": "yandex", "medium": "cpc", "campaign": f"winter-{n % 7}"},
                    "form": {"company": "ООО Ромашка", "size": "50-100", "comment": "x" * 80},
                },
            )
        )
    return contacts, decisions, transitions


async def fill_history(
    store: Store, last: date, days: int = 365, per_day: int = 300, tz: str = "Europe/Moscow", seed: int = 7
) -> int:
    """Write `days` days of history ending with `last` (the office's `tz`), `per_day`
    contacts each, through `Store.apply` a day at a time; the number of contacts written."""
    rng = random.Random(seed)
    zone = ZoneInfo(tz)
    for i in range(days):
        contacts, decisions, transitions = _day(rng, last - timedelta(days=days - 1 - i), zone, per_day, i * per_day)
        await store.apply(contacts, [], decisions, transitions)
    return days * per_day


def _deployment() -> Deployment:
    d = load_deployment(ROOT / "config" / "acd.example.yaml", environ={})
    return replace(d, web=replace(d.web, rate_limits=RateLimits(leads_per_minute=10**8, api_per_minute=10**8)))


async def measure(rounds: int = 5) -> dict[str, float]:
    """The median time of the month report and of the week report of a past month with a
    week of history either side (what the report reads of a longer one), through HTTP."""
    deployment = _deployment()
    zone = ZoneInfo(deployment.tz)
    today = datetime.now(zone).date()
    first = (today.replace(day=1) - timedelta(days=32)).replace(day=1)  # the month before last
    following = (first + timedelta(days=32)).replace(day=1)
    days = (following - first).days + 14
    with tempfile.TemporaryDirectory() as tmp:
        store = await open_store(default_sqlite_url(Path(tmp)))
        await fill_history(store, following + timedelta(days=6), days=days, tz=deployment.tz)
        server = await build(deployment, store, demo=True)
        http = TestServer(server.app, host="127.0.0.1", port=0)
        await http.start_server()
        headers = {"Authorization": f"Bearer {await store.create_token('supervisor', None)}"}
        out: dict[str, float] = {}
        try:
            async with aiohttp.ClientSession(headers=headers) as session:
                for period in ("month", "week"):
                    url = str(http.make_url(f"/api/reports/day?date={first + timedelta(days=14)}&period={period}"))
                    took = []
                    for _ in range(rounds):
                        t = time.perf_counter()
                        async with session.get(url) as resp:
                            assert resp.status == 200, await resp.text()
                            await resp.read()
                        took.append(time.perf_counter() - t)
                    out[f"reports_{period}_ms"] = statistics.median(took) * 1000
        finally:
            await http.close()
            await server.close()
    return out


def run() -> dict[str, float]:
    return asyncio.run(measure())
