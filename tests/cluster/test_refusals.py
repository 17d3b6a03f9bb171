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
