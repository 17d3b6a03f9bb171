"""The `acd` command line: check-config and token create, as an operator runs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config" / "acd.example.yaml"


def acd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "acd.cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def test_check_config_accepts_the_example() -> None:
    result = acd("check-config", str(EXAMPLE))
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout


def test_check_config_names_the_file_and_key_and_exits_non_zero(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    text = EXAMPLE.read_text(encoding="utf-8").replace("strategy: best-match", "strategy: best-guess")
    text = text.replace("flows_dir: ../ivr_flows", f"flows_dir: {ROOT / 'ivr_flows'}")
    broken.write_text(text, encoding="utf-8")
    result = acd("check-config", str(broken))
    assert result.returncode == 1
    assert f"{broken}: policy.strategy:" in result.stderr


def test_a_token_printed_by_the_cli_is_accepted_by_the_store(tmp_path: Path) -> None:
    import asyncio

    from acd.storage import open_store

    db = f"sqlite+aiosqlite:///{tmp_path / 'acd.db'}"
    result = acd("token", "create", "--role", "manager", "--manager", "anna", "--config", str(EXAMPLE), "--db", db)
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()

    async def verify() -> object:
        store = await open_store(db)
        try:
            return await store.verify_token(token)
        finally:
            await store.close()

    assert asyncio.run(verify()) == ("manager", "anna")
    refused = acd("token", "create", "--role", "manager", "--manager", "nobody", "--config", str(EXAMPLE), "--db", db)
    assert refused.returncode == 1 and "no manager nobody" in refused.stderr
