"""Adapter: events between nodes through PostgreSQL — the `cluster_events` table and LISTEN/NOTIFY.

    follower ── INSERT cluster_events + NOTIFY events ──▶ leader (handles in id order)
    follower ◀── UPDATE outcome + NOTIFY done ────────── leader
    follower ◀── NOTIFY changed (after each commit) ──── leader   (refresh the read copy)
    follower ◀── INSERT cluster_effects + NOTIFY effects  leader   (offers, notices: panels, phones)
    any node ── NOTIFY arrived ─────────────────────────▶ leader   (a new contact row is committed)

The table is the durable part: an event a follower has appended survives the leader's death
and is handled by the next one (at least once: the core tolerates a repeated accept, finish
or presence request by refusing it). NOTIFY is only a wake-up call; every reader also polls,
so a notification lost while a connection was down delays work by one poll and loses nothing.
The leader's effects are kept in `cluster_effects` for a while and carry their id, so a node
whose listening connection was down reads the ones it missed when it is back (acd.cluster.effects).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

import asyncpg

from acd.cluster.leader import (
    CONNECT_TIMEOUT,
    CONNECTION_ERRORS,
    KEEPALIVE,
    RETRY,
    dsn,
    hold_open,
    open_session,
    session_settings,
)
from acd.runtime import cancel_and_wait

log = logging.getLogger("acd.cluster")

NOTIFY_LIMIT: Final = 7900  # PostgreSQL refuses a payload of 8000 bytes or more
KINDS: Final = ("events", "done", "changed", "effects", "arrived")
KEEP_HANDLED_S: Final = 3600.0
KEEP_EFFECTS_S: Final = 600.0  # a node cut off longer than this has nothing to ring any more

Handler = Callable[[str], None]


def channel_names(schema: str | None) -> dict[str, str]:
    """NOTIFY channels are per database; the schema's hash keeps installations apart."""
    tag = hashlib.blake2b((schema or "public").encode(), digest_size=4).hexdigest()
    return {kind: f"acd_{tag}_{kind}" for kind in KINDS}


class Bus:
    """One pool for the table and the NOTIFYs, one listening connection (reconnected when it
    drops: `on_lost` says so at once, and `on_reconnect` tells the node to catch up on what it
    may have missed)."""

    def __init__(self, url: str, schema: str | None, node: str) -> None:
        self._dsn = dsn(url)
        self._schema = schema
        self.node = node
        self.channels = channel_names(schema)
        self._kinds = {name: kind for kind, name in self.channels.items()}
        self.handlers: dict[str, Handler] = {}
        self.on_reconnect: Callable[[], None] = lambda: None
        self.on_lost: Callable[[], None] = lambda: None  # notifications may be missed from now on
        self._pool: Any = None
        self._listen_task: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()

    async def open(self) -> None:
        self._pool = await asyncpg.create_pool(
            self._dsn,
            min_size=1,
            max_size=4,
            timeout=CONNECT_TIMEOUT,
            server_settings={**session_settings(self._schema, "bus"), **KEEPALIVE},
        )
        self._listen_task = asyncio.create_task(self._listen(), name="acd-cluster-listen")
        async with asyncio.timeout(CONNECT_TIMEOUT):
            await self._listening.wait()

    async def close(self) -> None:
        if self._listen_task is not None:
            await cancel_and_wait(self._listen_task)
        if self._pool is not None:
            try:
                async with asyncio.timeout(5.0):
                    await self._pool.close()
            except (*CONNECTION_ERRORS, asyncio.CancelledError):
                self._pool.terminate()

    # ---- the event table --------------------------------------------------------------

    async def append(self, bodies: list[dict[str, Any]]) -> list[int]:
        """Store events for the leader (one transaction) and wake it; their ids in order."""
        now = time.time()
        async with self._pool.acquire() as conn, conn.transaction():
            ids = [
                await conn.fetchval(
                    "INSERT INTO cluster_events (at, origin, body) VALUES ($1, $2, $3::json) RETURNING id",
                    now,
                    self.node,
                    json.dumps(body, ensure_ascii=False),
                )
                for body in bodies
            ]
            await conn.execute("SELECT pg_notify($1, '')", self.channels["events"])
        return [int(i) for i in ids]

    async def pending(self, limit: int = 500) -> list[tuple[int, dict[str, Any]]]:
        """Events nobody has handled yet, oldest first (the leader's work)."""
        rows = await self._pool.fetch(
            "SELECT id, body FROM cluster_events WHERE handled_at IS NULL ORDER BY id LIMIT $1", limit
        )
        return [(int(r["id"]), json.loads(r["body"])) for r in rows]

    async def handled(self, outcomes: list[tuple[int, dict[str, Any] | None]]) -> None:
        """Record each event's outcome (None: done; else `{code, message}`) and tell the senders."""
        now = time.time()
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.executemany(
                "UPDATE cluster_events SET handled_at = $1, outcome = $2::json WHERE id = $3",
                [(now, json.dumps(outcome), i) for i, outcome in outcomes],
            )
            for chunk in _chunks([[i, o] for i, o in outcomes]):
                await conn.execute("SELECT pg_notify($1, $2)", self.channels["done"], chunk)

    async def outcome(self, event_id: int) -> tuple[bool, dict[str, Any] | None]:
        """(handled, outcome) of one event, read from the table (when a notification was missed)."""
        row = await self._pool.fetchrow("SELECT handled_at, outcome FROM cluster_events WHERE id = $1", event_id)
        if row is None or row["handled_at"] is None:
            return False, None
        return True, json.loads(row["outcome"]) if row["outcome"] is not None else None

    async def forget_handled(self) -> None:
        await self._pool.execute("DELETE FROM cluster_events WHERE handled_at < $1", time.time() - KEEP_HANDLED_S)
        await self._pool.execute("DELETE FROM cluster_effects WHERE at < $1", time.time() - KEEP_EFFECTS_S)

    # ---- the leader's effects ---------------------------------------------------------

    async def publish_effect(self, body: str) -> None:
        """Keep one effect (a JSON command) and send it with its id, in one statement: a node
        that misses the NOTIFY finds the row (`effects_after`)."""
        if len(body.encode()) > NOTIFY_LIMIT - 40:
            log.warning("cluster: an effect of %d bytes is too long for NOTIFY; dropped", len(body))
            return
        await self._pool.execute(
            "WITH kept AS (INSERT INTO cluster_effects (at, body) VALUES ($1, $2::text::json) RETURNING id)"
            " SELECT pg_notify($3, '{\"id\": ' || kept.id || ', \"cmd\": ' || $2::text || '}') FROM kept",
            time.time(),
            body,
            self.channels["effects"],
        )

    async def last_effect(self) -> int:
        return int(await self._pool.fetchval("SELECT coalesce(max(id), 0) FROM cluster_effects"))

    async def effects_after(self, effect_id: int, limit: int = 1000) -> list[tuple[int, dict[str, Any]]]:
        rows = await self._pool.fetch(
            "SELECT id, body FROM cluster_effects WHERE id > $1 ORDER BY id LIMIT $2", effect_id, limit
        )
        return [(int(r["id"]), json.loads(r["body"])) for r in rows]

    async def held_locks(self) -> set[tuple[int, int]]:
        """The `(high, low)` halves of every bigint advisory lock granted in this database now."""
        rows = await self._pool.fetch(
            "SELECT classid::bigint AS high, objid::bigint AS low FROM pg_locks"
            " WHERE locktype = 'advisory' AND granted AND objsubid = 1"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
        return {(int(r["high"]), int(r["low"])) for r in rows}

    async def still_holds(self, fence: tuple[int, int, int]) -> bool:
        """Whether the session `fence` names still holds the dispatcher lock (pg_locks shows
        a bigint advisory key as classid = high half, objid = low half, objsubid = 1)."""
        pid, high, low = fence
        return bool(
            await self._pool.fetchval(
                "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = $1"
                " AND classid = $2::bigint::oid AND objid = $3::bigint::oid AND objsubid = 1)",
                pid,
                high,
                low,
            )
        )

    # ---- notifications ----------------------------------------------------------------

    async def notify(self, kind: str, payload: str | Mapping[str, Any] = "") -> None:
        text = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
        if len(text.encode()) > NOTIFY_LIMIT:
            log.warning("cluster: a %s notification of %d bytes is too long for NOTIFY; dropped", kind, len(text))
            return
        await self._pool.execute("SELECT pg_notify($1, $2)", self.channels[kind], text)

    async def _listen(self) -> None:
        first = True
        while True:
            conn = None
            try:
                conn, closed = await open_session(self._dsn, self._schema, "listen")
                for name in self.channels.values():
                    await conn.add_listener(name, self._on_notify)
                self._listening.set()
                if not first:
                    self.on_reconnect()
                first = False
                await hold_open(conn, closed, 5.0, 5.0)
                log.warning("cluster: the listening connection closed; reconnecting")
            except CONNECTION_ERRORS as err:
                log.warning("cluster: listening connection failed (%s); reconnecting", err)
            finally:
                if conn is not None:
                    conn.terminate()
            self.on_lost()
            await asyncio.sleep(RETRY)

    def _on_notify(self, _conn: Any, _pid: int, channel: str, payload: str) -> None:
        handler = self.handlers.get(self._kinds.get(channel, ""))
        if handler is None:
            return
        try:
            handler(payload)
        except Exception:  # asyncpg does not await listeners: a failure must stop here
            log.exception("cluster: handling a %s notification failed", channel)


def _chunks(items: list[Any]) -> list[str]:
    out: list[str] = []
    current: list[Any] = []
    for item in items:
        candidate = json.dumps([*current, item])
        if current and len(candidate.encode()) > NOTIFY_LIMIT:
            out.append(json.dumps(current))
            current = [item]
        else:
            current.append(item)
    if current:
        out.append(json.dumps(current))
    return out
