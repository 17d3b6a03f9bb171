"""The README's curl session, run as written against a server started like `make run`."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import pytest

from tests.test_restart import free_port, start_server, test_config

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def readme_session() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```sh\n(.*?)```", text, flags=re.S)
    return next(b for b in blocks if "api/leads" in b)


async def test_the_readme_curl_session_shows_an_offer_and_its_explanation(tmp_path: Path) -> None:
    config = test_config(tmp_path)
    db = f"sqlite+aiosqlite:///{tmp_path / 'acd.db'}"
    port = free_port()
    server = await start_server(config, db, port, tmp_path / "server.log")
    script = readme_session().replace("127.0.0.1:8080", f"127.0.0.1:{port}")
    script = script.replace(
        ".venv/bin/acd token create", f"{sys.executable} -m acd.cli token create --config {config} --db {db}"
    )
    try:
        proc = await asyncio.create_subprocess_exec(
            "bash", "-euo", "pipefail", "-c", script, cwd=ROOT, stdout=asyncio.subprocess.PIPE, env={**os.environ}
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        server.terminate()
        await server.wait()
    assert proc.returncode == 0
    text = out.decode()
    assert '"status": "offered"' in text
    assert '"offered_to": "anna"' in text
    assert "score" in text and "filtered" in text
