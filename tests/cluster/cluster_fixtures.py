"""Fixtures for the cluster tests: a fresh PostgreSQL schema (in-process nodes) or a fresh
database (server processes), skipped with the reason when `ACD_TEST_PG_URL` is unset
(and failing when it names a server that does not answer)."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from storage_fixtures import PG_URL_ENV, drop_schema

pytestmark = pytest.mark.postgres


@dataclass(frozen=True, slots=True)
class Place:
    url: str
    schema: str | None = None


async def _admin() -> AsyncEngine:
    url = os.environ.get(PG_URL_ENV)
    if not url:
        pytest.skip(f"{PG_URL_ENV} is not set: cluster mode needs PostgreSQL")
    admin = create_async_engine(url, connect_args={"timeout": 5}, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))
    except (OSError, SQLAlchemyError) as exc:
        await admin.dispose()
        pytest.fail(f"{PG_URL_ENV} names a PostgreSQL that does not answer (unset it to skip): {exc}")
    return admin


@pytest.fixture
async def pg_schema() -> AsyncIterator[Place]:
    """A schema of its own in the test database, dropped afterwards."""
    admin = await _admin()
    url = os.environ[PG_URL_ENV]
    schema = f"t_{secrets.token_hex(6)}"
    try:
        yield Place(url, schema)
    finally:
        await drop_schema(admin, schema)
        await admin.dispose()


@pytest.fixture
async def pg_database() -> AsyncIterator[Place]:
    """A database of its own (server processes take a URL, not a schema), dropped afterwards."""
    admin = await _admin()
    url = os.environ[PG_URL_ENV]
    name = f"acd_cluster_{secrets.token_hex(6)}"
    async with admin.connect() as conn:
        await conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield Place(url.rsplit("/", 1)[0] + "/" + name)
    finally:
        async with admin.connect() as conn:
            await conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()
