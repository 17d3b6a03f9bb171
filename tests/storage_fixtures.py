"""Test fixtures: one store per backend, so a contract suite runs against SQLite and PostgreSQL.

Load them in a test module to run it on every backend:

    pytest_plugins = ["storage_fixtures"]

The PostgreSQL variant reads `ACD_TEST_PG_URL` and is skipped, with the reason, when it is
unset (a URL whose server does not answer fails); each test gets a fresh schema, dropped afterwards.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from acd.storage import Store, default_sqlite_url, open_store

PG_URL_ENV = "ACD_TEST_PG_URL"


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


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param == "sqlite":
        yield Backend("sqlite", default_sqlite_url(tmp_path / "data"))
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
