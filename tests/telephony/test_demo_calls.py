"""`make demo-calls`: the simulated PBX and a real `acd serve` beside it, calls flowing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from acd.free_port import free_port

ROOT = Path(__file__).resolve().parents[2]


def test_the_calls_demo_puts_callers_through_to_the_example_managers(tmp_path: Path) -> None:
    port = free_port()
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "acd.pbxsim.demo",
            "--data",
            str(tmp_path),
            "--port",
            str(port),
            "--calls",
            "4",
            "--every",
            "1",
            "--time-scale",
            "0.05",
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
