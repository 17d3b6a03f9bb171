"""Leader election: of several nodes on one PostgreSQL exactly one holds the dispatcher lock,
and when its lock connection dies it stops and another node takes over."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import asyncpg
from cluster_fixtures import Place

from acd.cluster.leader import Leadership, dsn


class Node:
    def __init__(self, name: str, place: Place, log: list[tuple[str, str]], changed: asyncio.Event) -> None:
        self.name = name
        self.leading = asyncio.Event()
        self.dropped = asyncio.Event()

        async def elected() -> None:
            log.append(("elected", name))
            self.leading.set()
            changed.set()

        def lost() -> None:
            log.append(("lost", name))
            self.dropped.set()
            changed.set()

        self.leadership = Leadership(place.url, place.schema, elected, lost)


async def wait_for(changed: asyncio.Event, condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(15):
        while not condition():
            await changed.wait()
            changed.clear()


async def test_exactly_one_of_two_nodes_dispatches_and_the_other_takes_over_when_its_lock_connection_dies(
    pg_schema: Place,
) -> None:
    log: list[tuple[str, str]] = []
    changed = asyncio.Event()
    a, b = Node("a", pg_schema, log, changed), Node("b", pg_schema, log, changed)
    a.leadership.start()
    await wait_for(changed, a.leading.is_set)
    b.leadership.start()
    try:
        # b waits in line: give it time to be granted the lock if the lock were broken
        await asyncio.sleep(0.5)
        assert log == [("elected", "a")]
        assert not b.leadership.holding

        # the leader's lock session is ended from the database side, as when its host vanishes
        lock_pid = a.leadership._conn.get_server_pid()
        admin = await asyncpg.connect(dsn(pg_schema.url))
        try:
            cut_at = time.perf_counter()
            await admin.fetchval("SELECT pg_terminate_backend($1)", lock_pid)
        finally:
            await admin.close()
        await wait_for(changed, lambda: a.dropped.is_set() and b.leading.is_set())
        took_over = time.perf_counter() - cut_at
        print(f"CLUSTER lock take-over {took_over:.3f} s")
        assert log[1:] == [("lost", "a"), ("elected", "b")] or log[1:] == [("elected", "b"), ("lost", "a")]
        assert not a.leadership.holding and b.leadership.holding
        assert took_over < 10
    finally:
        await a.leadership.release()
        await b.leadership.release()


async def test_releasing_the_lock_on_purpose_hands_it_over_without_reporting_it_lost(pg_schema: Place) -> None:
    log: list[tuple[str, str]] = []
    changed = asyncio.Event()
    a, b = Node("a", pg_schema, log, changed), Node("b", pg_schema, log, changed)
    a.leadership.start()
    await wait_for(changed, a.leading.is_set)
    b.leadership.start()
    try:
        await a.leadership.release()
        await wait_for(changed, b.leading.is_set)
        assert log == [("elected", "a"), ("elected", "b")]
    finally:
        await b.leadership.release()


async def test_installations_in_separate_schemas_each_have_their_own_dispatcher(pg_schema: Place) -> None:
    log: list[tuple[str, str]] = []
    changed = asyncio.Event()
    a = Node("a", pg_schema, log, changed)
    other = Node("other", Place(pg_schema.url, pg_schema.schema + "_x"), log, changed)
    a.leadership.start()
    other.leadership.start()
    try:
        await wait_for(changed, lambda: a.leading.is_set() and other.leading.is_set())
    finally:
        await a.leadership.release()
        await other.leadership.release()
