"""Fuzzing the HTTP API from its own OpenAPI document (schemathesis): whatever a client
sends, the server answers without a 500 and keeps serving, on SQLite and on PostgreSQL
(whose limits differ: a B-tree index entry holds at most about 2.7 KB)."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from sqlalchemy.engine import make_url

from acd.cluster.leader import dsn
from acd.free_port import free_port
from tests.storage_fixtures import PG_URL_ENV

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


async def _database(url: str, statement: str) -> None:
    conn = await asyncpg.connect(dsn(url), timeout=10)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@contextmanager
def _place(backend: str, tmp: Path) -> Iterator[str]:
    """The server's database: a SQLite file, or a PostgreSQL database of its own (a server
    process takes a URL, not a schema), dropped afterwards."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp / 'acd.db'}"
        return
    url = os.environ.get(PG_URL_ENV)
    if not url:
        pytest.skip(f"{PG_URL_ENV} is not set, so the PostgreSQL variant does not run")
    name = f"acd_fuzz_{secrets.token_hex(6)}"
    asyncio.run(_database(url, f'CREATE DATABASE "{name}"'))
    try:
        yield str(make_url(url).set(database=name).render_as_string(hide_password=False))
    finally:
        asyncio.run(_database(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def live(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A real `acd serve` process with the example deployment, and an admin token."""
    tmp = tmp_path_factory.mktemp("fuzz")
    with _place(request.param, tmp) as db:
        yield from _serving(tmp, db)


def _serving(tmp: Path, db: str) -> Iterator[tuple[str, str]]:
    from tests.test_restart import test_config

    config = test_config(tmp)
    port = free_port()
    log = (tmp / "server.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "acd.cli", "serve", "--config", str(config), "--db", db, "--port", str(port), "--demo"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=log,
    )
    assert proc.stdout is not None
    assert b"listening" in proc.stdout.readline()
    token = subprocess.run(
        [sys.executable, "-m", "acd.cli", "token", "create", "--role", "admin", "--config", str(config), "--db", db],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    try:
        yield f"http://127.0.0.1:{port}", token
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def _document() -> dict[str, object]:
    """The same document the server serves at /api/openapi.json, built from the one route
    registry (importing the composition root registers every feature's routes)."""
    import acd.app  # noqa: F401
    from acd.api.app import api

    return api.openapi("ACD server API", "1")


schema = schemathesis.openapi.from_dict(_document())
SKIPPED = {
    "/api/config/reload": "re-reads the file: covered by its own test",
    "/api/ws": "a WebSocket: an upgraded connection stays open by design (tests/web cover it)",
}


@schema.parametrize()
@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_request_makes_the_server_fail(case: schemathesis.Case, live: tuple[str, str]) -> None:
    base, token = live
    if case.path in SKIPPED:
        return
    response = case.call(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=15)
    what = f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:300]}"
    # 503 is a deliberate answer (a feature switched off, the database away); 500 never is
    assert response.status_code < 500 or response.status_code == 503, what
    if response.status_code >= 400:
        body = response.json()
        assert body["error"]["code"] and body["error"]["message"]


def test_the_server_still_answers_after_the_fuzzing(live: tuple[str, str]) -> None:
    base, _ = live
    deadline = time.monotonic() + 10
    with urllib.request.urlopen(f"{base}/healthz", timeout=10) as r:
        assert r.status == 200
    assert time.monotonic() < deadline
