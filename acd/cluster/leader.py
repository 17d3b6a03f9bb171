"""Adapter: who dispatches — a PostgreSQL session-level advisory lock on a dedicated connection.

Every node keeps one connection that waits in `pg_advisory_lock(key)`; PostgreSQL grants it
to one session at a time, so exactly one node dispatches. The lock lives exactly as long as
that session: when the leader's process dies, the kernel closes its socket, PostgreSQL ends
the session, and the next waiting node is granted the lock at once. A leader that is cut off
(network, database restart) sees its connection fail within `HEALTH_EVERY + HEALTH_TIMEOUT`
and must stop dispatching at once (`lost`): it cannot know whether the lock is still its own.
On the database side, TCP keep-alives end a half-open session in about `KEEPALIVE_S` seconds,
which bounds how long a vanished leader can block the others.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

import asyncpg

from acd.runtime import cancel_and_wait, wait_a_while

log = logging.getLogger("acd.cluster")

HEALTH_EVERY: Final = 1.0  # seconds between the leader's checks of its lock connection
HEALTH_TIMEOUT: Final = 3.0
RETRY: Final = 1.0
CONNECT_TIMEOUT: Final = 10.0
# idle 3 s, then a probe every 1 s, 3 unanswered probes: about 6 s to end a vanished peer
KEEPALIVE: Final = {"tcp_keepalives_idle": "3", "tcp_keepalives_interval": "1", "tcp_keepalives_count": "3"}
KEEPALIVE_S: Final = 6.0
CONNECTION_ERRORS: Final = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


def dsn(url: str) -> str:
    """asyncpg's form of a SQLAlchemy URL (`postgresql+asyncpg://...` → `postgresql://...`)."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.split("+")[0] not in ("postgresql", "postgres"):
        raise ValueError(f"cluster mode needs a PostgreSQL URL (postgresql+asyncpg://user@host/db), got {scheme}://")
    return f"postgresql://{rest}"


def lock_key(schema: str | None) -> int:
    """The advisory lock's key: fixed per installation (advisory locks are per database, and
    several installations may share one database in separate schemas)."""
    digest = hashlib.blake2b(f"acd-dispatcher:{schema or 'public'}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def lock_halves(key: int) -> tuple[int, int]:
    """How pg_locks shows a bigint advisory key: (classid, objid) = (high, low) 32 bits."""
    return (key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF


async def open_session(dsn_: str, schema: str | None, role: str, **settings: str) -> tuple[Any, asyncio.Event]:
    """A connection of its own for one long-lived job (a lock, LISTEN), with keep-alives, and an
    event PostgreSQL's or the network's end of the session sets."""
    conn = await asyncpg.connect(
        dsn_, timeout=CONNECT_TIMEOUT, server_settings={**session_settings(schema, role), **KEEPALIVE, **settings}
    )
    closed = asyncio.Event()
    conn.add_termination_listener(lambda _conn: closed.set())
    return conn, closed


async def hold_open(conn: Any, closed: asyncio.Event, every: float, answer_within: float) -> None:
    """Return once the session has ended; until then look at it every `every` seconds, since a
    half-open link announces nothing (it shows as a query that times out, raising TimeoutError)."""
    while True:
        await wait_a_while(closed, every)  # the termination listener wakes this at once
        if closed.is_set():
            return
        async with asyncio.timeout(answer_within):
            await conn.fetchval("SELECT 1")


def session_settings(schema: str | None, role: str) -> dict[str, str]:
    settings = {"application_name": f"acd:{schema}" if schema else f"acd-{role}"}
    if schema:
        settings["search_path"] = schema
    return settings


class Leadership:
    """Runs for the life of the node: wait for the lock, then call `elected()` (which starts
    dispatching) and watch the connection; if it fails, call `lost()` once and stop trying —
    a node that lost the lock does not compete again (its process restarts as a follower).
    `release()` gives the lock up on purpose, without calling `lost`."""

    def __init__(
        self,
        url: str,
        schema: str | None,
        elected: Callable[[], Awaitable[None]],
        lost: Callable[[], None],
    ) -> None:
        self._dsn = dsn(url)
        self._schema = schema
        self._key = lock_key(schema)
        self._elected = elected
        self._lost = lost
        self._task: asyncio.Task[None] | None = None
        self._conn: Any = None
        self._releasing = False
        self.holding = False

    def fence(self) -> tuple[int, int, int] | None:
        """`(backend pid, high, low)` identifying the lock this node holds, for a check from
        another connection (`Bus.still_holds`); None when it holds none."""
        if not self.holding or self._conn is None:
            return None
        return self._conn.get_server_pid(), *lock_halves(self._key)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="acd-cluster-leadership")

    async def release(self) -> None:
        self._releasing = True
        if self._task is not None:
            await cancel_and_wait(self._task)
        await self._close()
        self.holding = False

    async def _run(self) -> None:
        while True:
            try:
                # no statement_timeout: waiting for the lock is this connection's whole job
                self._conn, closed = await open_session(self._dsn, self._schema, "lock", statement_timeout="0")
            except CONNECTION_ERRORS as err:
                log.warning("cluster: cannot reach PostgreSQL for the dispatcher lock (%s); retrying", err)
                await asyncio.sleep(RETRY)
                continue
            try:
                await self._conn.execute("SELECT pg_advisory_lock($1)", self._key)  # waits while another node leads
                self.holding = True
                log.info("cluster: this node holds the dispatcher lock")
                await self._elected()
                await hold_open(self._conn, closed, HEALTH_EVERY, HEALTH_TIMEOUT)
            except CONNECTION_ERRORS as err:
                log.warning("cluster: dispatcher lock connection failed: %s", err)
            except Exception:
                log.exception("cluster: taking over the dispatcher failed")
            if self.holding:
                self.holding = False
                log.critical("cluster: lost the dispatcher lock; this node stops dispatching")
                self._lost()  # first: closing the connection may take a while
                await self._close()
                return  # a node that lost the lock never competes again
            await self._close()
            await asyncio.sleep(RETRY)

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            try:
                async with asyncio.timeout(2.0):
                    await conn.close()
            except (*CONNECTION_ERRORS, asyncio.CancelledError):
                conn.terminate()
