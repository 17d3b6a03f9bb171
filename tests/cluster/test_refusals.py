"""Cluster mode is refused where it cannot work, with a message that says why."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_cluster_mode_on_sqlite_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'acd.db'}"
    run = subprocess.run(
        [sys.executable, "-m", "acd.cli", "serve", "--cluster", "--db", db, "--port", "0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1
    assert "cluster mode needs PostgreSQL" in run.stderr
    assert "listening" not in run.stdout


def test_cluster_mode_from_the_deployment_file_is_refused_on_sqlite_too(tmp_path: Path) -> None:
    text = (ROOT / "config" / "acd.example.yaml").read_text(encoding="utf-8")
    text = text.replace("  cluster: false ", "  cluster: true ", 1).replace(
        "flows_dir: ../ivr_flows", f"flows_dir: {ROOT / 'ivr_flows'}", 1
    )
    config = tmp_path / "acd.yaml"
    config.write_text(text, encoding="utf-8")
    db = f"sqlite+aiosqlite:///{tmp_path / 'acd.db'}"
    run = subprocess.run(
        [sys.executable, "-m", "acd.cli", "serve", "--config", str(config), "--db", db, "--port", "0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1, run.stderr
    assert "cluster mode needs PostgreSQL" in run.stderr
