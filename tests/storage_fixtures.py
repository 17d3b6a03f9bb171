"""Test fixtures: one store per backend, so a contract suite runs against SQLite and PostgreSQL.

Load them in a test module to run it on every backend:

    pytest_plugins = ["storage_fixtures"]

The PostgreSQL variant reads `ACD_TEST_PG_URL` and is skipped, with the reason, when it is
unset (a URL whose server does not answer fails); each test gets a fresh schema, dropped afterwards.

Each test's database starts as a copy of one the store's migrations made once per test process
(a SQLite file copied, a PostgreSQL schema's pg_dump replayed): the migrations took a tenth of a
second a test on SQLite and a quarter on PostgreSQL, over a thousand tests. A test of the
migrations themselves is marked `fresh_migration`: its database is made by the store as it is
first opened, as a new installation's is.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from acd.storage import Store, default_sqlite_url, open_store

PG_URL_ENV = "ACD_TEST_PG_URL"
FRESH = "fresh_migration"
SCHEMA = f"migrated_{secrets.token_hex(6)}"  # the template's schema while it is dumped; then a placeholder
_templates: dict[str, object] = {}  # per test process: the migrated SQLite file; per URL, the schema's SQL


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{FRESH}: the test's database is migrated by the store as it is opened, not copied"
    )


@dataclass(frozen=True, slots=True)
class Backend:
    """Where a test's database lives; open it as often as a test needs (a restart is close + open)."""

    name: str
    url: str
    schema: str | None = None

    async def open(self) -> Store:
        return await open_store(self.url, schema=self.schema)

    @asynccontextmanager
    async def raw(self) -> AsyncIterator[AsyncConnection]:
        """A plain SQLAlchemy connection to the same tables, to look under the repository."""
        connect_args = {"server_settings": {"search_path": self.schema}} if self.schema else {}
        engine = create_async_engine(self.url, connect_args=connect_args)
        try:
            async with engine.begin() as conn:
                yield conn
        finally:
            await engine.dispose()


async def drop_schema(admin: AsyncEngine, schema: str) -> None:
    """Drop a test's schema. A connection the test left open in a transaction would hold
    locks that make DROP wait forever, so the schema's own connections go first."""
    async with admin.begin() as conn:
        await conn.execute(
            sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = :name"),
            {"name": f"acd:{schema}"},
        )
        await conn.execute(sa.text("SET LOCAL lock_timeout = '20s'"))
        await conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


async def _migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file the store has migrated, made on first use."""
    if "sqlite" not in _templates:
        folder = tmp_path_factory.mktemp("migrated")
        await (await open_store(default_sqlite_url(folder))).close()
        assert not (folder / "acd.db-wal").exists(), "the template is not one self-contained file"
        _templates["sqlite"] = folder / "acd.db"
    path = _templates["sqlite"]
    assert isinstance(path, Path)
    return path


async def _migrated_schema_sql(admin: AsyncEngine, url: str) -> str | None:
    """The SQL that makes a schema the store has migrated (its tables, indexes, sequences and
    alembic_version rows), from pg_dump of one made on first use; with SCHEMA for its name.
    None where there is no pg_dump for this server: then each test migrates its own."""
    if url not in _templates:
        sql = None
        await (await open_store(url, schema=SCHEMA)).close()
        u = make_url(url)
        command = ["pg_dump", "--schema", SCHEMA, "--no-owner", "--no-privileges", "--inserts"]
        for flag, value in (("--host", u.host), ("--port", u.port), ("--username", u.username)):
            if value is not None:
                command += [flag, str(value)]
        env = {**os.environ, **({"PGPASSWORD": u.password} if u.password else {})}
        try:
            dumped = subprocess.run(
                [*command, str(u.database or "")], capture_output=True, text=True, env=env, timeout=60, check=True
            )
            # the statements only: no psql meta-command, and no session setting (every name
            # in it is qualified with the schema's)
            lines = [
                ln for ln in dumped.stdout.splitlines() if not re.match(r"\\|SET |SELECT pg_catalog.set_config", ln)
            ]
            sql = "\n".join(lines)
        except (OSError, subprocess.SubprocessError):
            pass
        finally:
            await drop_schema(admin, SCHEMA)
        _templates[url] = sql
    sql = _templates[url]
    assert sql is None or isinstance(sql, str)
    return sql


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def backend(
    request: pytest.FixtureRequest, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Backend]:
    fresh = request.node.get_closest_marker(FRESH) is not None
    if request.param == "sqlite":
        url = default_sqlite_url(tmp_path / "data")
        if not fresh:
            (tmp_path / "data").mkdir()
            shutil.copyfile(await _migrated_sqlite(tmp_path_factory), tmp_path / "data" / "acd.db")
        yield Backend("sqlite", url)
        return
    url = os.environ.get(PG_URL_ENV)
    if not url:
        pytest.skip(f"{PG_URL_ENV} is not set, so the PostgreSQL variant does not run")
    admin = create_async_engine(url, connect_args={"timeout": 5})
    try:
        async with admin.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))
    except (OSError, SQLAlchemyError) as exc:
        await admin.dispose()
        pytest.fail(f"{PG_URL_ENV} names a PostgreSQL that does not answer (unset it to skip): {exc}")
    schema = f"t_{secrets.token_hex(6)}"
    try:
        if not fresh and (sql := await _migrated_schema_sql(admin, url)):
            async with admin.begin() as conn:
                raw = await conn.get_raw_connection()
                await raw.driver_connection.execute(sql.replace(SCHEMA, schema))  # type: ignore[union-attr]
        yield Backend("postgres", url, schema)
    finally:
        await drop_schema(admin, schema)
        await admin.dispose()


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[Store]:
    opened = await backend.open()
    try:
        yield opened
    finally:
        await opened.close()
