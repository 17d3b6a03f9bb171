"""Backtest: last month's real contacts replayed through each policy."""

from __future__ import annotations

import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from acd.config import load_deployment
from acd.sim import backtest as bt

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "config" / "acd.example.yaml"


def month_csv(rows: int = 300, seed: int = 5) -> str:
    """A month of web leads handled by the sales team, with a few bad rows."""
    rng = random.Random(seed)
    out = ["id,arrived_at,channel,manager,handle_minutes,outcome,amount,temperature,purpose,price_tier"]
    day0 = datetime(2026, 10, 1, 9, 0, tzinfo=UTC)
    for i in range(rows):
        at = day0 + timedelta(days=i % 22, minutes=rng.randint(0, 8 * 60))
        manager = rng.choice(["anna", "boris", "vera"])
        won = rng.random() < {"anna": 0.5, "boris": 0.15, "vera": 0.3}[manager]
        tier = rng.choice(["low", "mid", "high"])
        amount = {"low": 30000, "mid": 120000, "high": 600000}[tier] if won else ""
        out.append(
            f"c{i},{at.isoformat()},web,{manager},{rng.randint(5, 30)},{'won' if won else 'lost'},{amount},"
            f"{rng.choice(['hot', 'cold'])},purchase,{tier}"
        )
    out.append("bad1,not a date,web,anna,5,won,1,hot,purchase,low")
    out.append("bad2,2026-10-02T10:00:00+00:00,web,nobody,5,won,1,hot,purchase,low")
    return "\n".join(out) + "\n"


def test_rows_that_cannot_be_replayed_are_rejected_with_line_and_reason() -> None:
    d = load_deployment(CONFIG, environ={})
    parsed = bt.parse(month_csv(10), [c.name for c in d.criteria], [m.id for m in d.managers], d.tz)
    assert len(parsed.contacts) == 10
    assert [line for line, _ in parsed.rejected] == [12, 13]
    assert "nobody" in parsed.rejected[1][1]


def test_every_past_contact_is_replayed_and_linear_piles_on_the_first_manager() -> None:
    d = load_deployment(CONFIG, environ={})
    parsed = bt.parse(month_csv(), [c.name for c in d.criteria], [m.id for m in d.managers], d.tz)
    managers = list(d.managers)
    linear = bt.replay(parsed.contacts, managers, d.policy, "linear")
    best = bt.replay(parsed.contacts, managers, d.policy, "best-match")
    assert linear.unassigned == best.unassigned == 0
    # managers come and go as they really did, so no policy can use anyone but them
    assert set(best.assigned.values()) <= {"anna", "boris", "vera"}
    spread = sorted(list(best.assigned.values()).count(m) for m in ("anna", "boris", "vera"))
    assert spread[0] > 0
    assert 0 < best.agreement(parsed.contacts) < 1
    assert bt.replay(parsed.contacts, managers, d.policy, "best-match").assigned == best.assigned  # reproducible


@pytest.mark.parametrize("encoding", ["utf-8", "cp1251"])  # cp1251: Excel's "CSV" in a Russian locale
def test_acd_simulate_backtest_prints_who_would_have_got_what(tmp_path: Path, encoding: str) -> None:
    path = tmp_path / "october.csv"
    cyrillic = "заявка-1,2026-10-03T10:00:00+00:00,web,anna,5,won,30000,hot,purchase,low\n"
    path.write_text(month_csv(80) + cyrillic, encoding=encoding)
    out = subprocess.run(
        [sys.executable, "-m", "acd.cli", "simulate", "--backtest", str(path), "--policies", "best-match,linear"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "same manager as in reality" in out.stdout and "anna" in out.stdout
    assert f"{path}: line 82:" in out.stderr
