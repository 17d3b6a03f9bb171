"""`make demo-calls`: the simulated PBX and a real `acd serve` beside it, calls flowing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from acd.free_port import free_port

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "acd.example.yaml"
TIME_SCALE = 0.05


def scaled_example(tmp_path: Path) -> Path:
    """The example deployment with the server's call timers scaled as the simulated phones
    are. `--time-scale` speeds up the phones only: at the example's own timers a caller whose
    team is busy waits out the team step (20 s) before the next pool is tried, and a manager
    wraps up for 30 s, so the demo's four calls took half a minute to end."""
    raw = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    raw["flows_dir"] = str((EXAMPLE.parent / raw["flows_dir"]).resolve())
    call = raw["channels"]["call"]
    call["wrap_up"] = scaled(call["wrap_up"])
    for step in raw["policy"]["steps"]:
        if "timeout" in step:
            step["timeout"] = scaled(step["timeout"])
    path = tmp_path / "acd.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def scaled(duration: str) -> str:
    assert duration.endswith("s") and duration[:-1].isdigit(), duration  # as the example writes them
    return f"{int(duration[:-1]) * TIME_SCALE:g}s"


def test_the_calls_demo_puts_callers_through_to_the_example_managers(tmp_path: Path) -> None:
    port = free_port()
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "acd.pbxsim.demo",
            "--config",
            str(scaled_example(tmp_path)),
            "--data",
            str(tmp_path),
            "--port",
            str(port),
            "--calls",
            "4",
            "--every",
            "1",
            "--time-scale",
            str(TIME_SCALE),
            "--seed",
            "3",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    lines = [line for line in out.stdout.splitlines() if line.startswith("call ")]
    assert len(lines) == 4, out.stdout
    assert sum("talked to" in line for line in lines) >= 3, out.stdout  # the seed's one giver-up aside
    assert "Анна Соколова (PJSIP/101)" in out.stdout or "(PJSIP/10" in out.stdout
    assert (tmp_path / "demo-calls.db").exists()
