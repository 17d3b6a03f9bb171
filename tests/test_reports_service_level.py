"""The service level as the office sets it (`reports.service_level` of the deployment file),
on every storage backend: the scripted day of tests/test_reports_day.py counted with other
thresholds, a reload that changes them, and `acd check-config` refusing bad values by key.

The day's waits: c1 call 10 s, c2 call 40 s, c3 web 240 s, c4 e-mail 5400 s, c7 e-mail
1200 s; c5 (call) and c6 (callback) abandoned. With the defaults (call 20 s, callback 1 min,
web 5 min, e-mail 1 h) c1, c3 and c7 are within: 3 / 7 = 0.429. With call 45 s, web 3 min and
e-mail 2 h, c1, c2, c4 and c7 are: 4 / 7 = 0.571; calls 2 / 3, web 0 / 1, e-mail 2 / 2.
"""

from __future__ import annotations

import csv
import io
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from api_fixtures import EXAMPLE, ROOT, Running, start, stop
from storage_fixtures import Backend
from test_reports_day import scripted_day

from acd.config import RateLimits, load_deployment

DEFAULTS = "reports:\n  service_level: {}\n"
OFFICE = """reports:
  service_level:
    call: {within: 45s, target: 90%}
    web: 3m
    email: 2h
"""


def deployment_file(path: Path, reports: str) -> Path:
    """The example deployment with this `reports` section instead of its own."""
    text = EXAMPLE.read_text(encoding="utf-8").replace("flows_dir: ../ivr_flows", f"flows_dir: {ROOT / 'ivr_flows'}")
    text, n = re.subn(r"^reports:\n(?:  .*\n)*", reports, text, flags=re.M)
    text += "" if n else "\n" + reports
    path.write_text(text, encoding="utf-8")
    return path


async def running_with(backend: Backend, path: Path) -> Running:
    d = load_deployment(path, environ={})
    return await start(backend, replace(d, web=replace(d.web, rate_limits=RateLimits(100_000, 100_000))))


@pytest.fixture
async def office(backend: Backend, tmp_path: Path) -> AsyncIterator[Running]:
    r = await running_with(backend, deployment_file(tmp_path / "acd.yaml", OFFICE))
    try:
        yield r
    finally:
        await stop(r)


async def _scripted(running: Running) -> str:
    zone = ZoneInfo(running.server.deployment.tz)
    day = datetime.fromtimestamp(running.server.services.clock(), zone).date() - timedelta(days=30)
    await scripted_day(running.server.store, day, zone)
    return day.isoformat()


async def _get(running: Running, path: str) -> str:
    async with running.session.get(
        running.url(path), headers={"Authorization": f"Bearer {running.supervisor}"}
    ) as resp:
        assert resp.status == 200
        return (await resp.read()).decode("utf-8-sig")


async def test_the_office_s_thresholds_count_the_service_level_and_travel_with_the_exports(office: Running) -> None:
    day = await _scripted(office)
    status, r = await office.call("GET", f"/api/reports/day?date={day}", office.supervisor)
    assert status == 200
    assert r["service_level"] == 0.571 and r["week"][-1]["service_level"] == 0.571
    assert r["sl_thresholds"] == {"call": 45.0, "callback": 60.0, "web": 180.0, "email": 7200.0}
    assert r["sl_targets"] == {"call": 0.9, "callback": None, "web": None, "email": None}
    assert r["sl_by_channel"] == {"call": 0.667, "callback": 0.0, "web": 0.0, "email": 1.0}
    assert r["sl_by_hour"][10]["service_level"] == 1.0  # c1 and c2: c2's 40 s is within 45 s
    assert r["sl_by_hour"][11]["service_level"] == 0.0  # c3's 4 min is over 3

    summary = list(csv.DictReader(io.StringIO(await _get(office, f"/api/export/summary.csv?date={day}"))))
    total = summary[-1]
    assert (total["date"], total["service_level"]) == ("total", "0.571")
    assert (total["sl_call_seconds"], total["sl_call_target"], total["sl_web_seconds"]) == ("45.0", "0.9", "180.0")
    assert (total["sl_email_seconds"], total["sl_email_target"]) == ("7200.0", "")
    excel = list(
        csv.reader(io.StringIO(await _get(office, f"/api/export/summary.csv?date={day}&excel=1")), delimiter=";")
    )
    assert excel[-1][excel[0].index("sl_call_target")] == "0,9"

    contacts = {
        c["id"]: c for c in csv.DictReader(io.StringIO(await _get(office, f"/api/export/contacts.csv?date={day}")))
    }
    assert [(contacts[i]["sl_threshold_seconds"], contacts[i]["within_service_level"]) for i in ("c2", "c3", "c5")] == [
        ("45.0", "1"),
        ("180.0", "0"),
        ("45.0", "0"),  # abandoned: counted, not within
    ]


async def test_a_reload_changes_the_thresholds_and_so_the_figures(backend: Backend, tmp_path: Path) -> None:
    path = deployment_file(tmp_path / "acd.yaml", DEFAULTS)
    running = await running_with(backend, path)
    try:
        day = await _scripted(running)
        _, before = await running.call("GET", f"/api/reports/day?date={day}", running.supervisor)
        assert before["service_level"] == 0.429
        assert before["sl_thresholds"] == {"call": 20.0, "callback": 60.0, "web": 300.0, "email": 3600.0}

        deployment_file(path, OFFICE)
        status, _ = await running.call("POST", "/api/config/reload", running.admin)
        assert status == 200
        _, after = await running.call("GET", f"/api/reports/day?date={day}", running.supervisor)
        assert after["service_level"] == 0.571 and after["sl_thresholds"]["call"] == 45.0
        assert after["sl_targets"]["call"] == 0.9
    finally:
        await stop(running)


def test_check_config_refuses_bad_thresholds_naming_the_key(tmp_path: Path) -> None:
    bad = deployment_file(
        tmp_path / "bad.yaml",
        """reports:
  service_level:
    call: -5
    callback: {within: 5m, target: 150%}
    web: soon
    email: {within: 1h, target: 0.8}
    fax: 1m
""",
    )
    result = subprocess.run(
        [sys.executable, "-m", "acd.cli", "check-config", str(bad)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    problems = result.stderr.splitlines()
    for key, why in [
        ("call", "must be more than 0 seconds"),
        ("callback.target", "must be a percentage from 1 to 100"),
        ("web", "must be a duration"),
        ("email.target", "must be a percentage from 1 to 100 such as 80 (got 0.8)"),
        ("fax", "must be 'call', 'callback', 'web' or 'email'"),
    ]:
        assert any(p.startswith(f"{bad}: reports.service_level.{key}: {why}") for p in problems), (key, problems)

    good = deployment_file(tmp_path / "good.yaml", OFFICE)
    assert subprocess.run([sys.executable, "-m", "acd.cli", "check-config", str(good)], cwd=ROOT).returncode == 0
