"""Adapter: which nodes are alive, and the end of the calls of a node that is gone.

A phone call belongs to the node whose FastAGI session holds it (its name, `host:fastagi-port`,
is in the contact's payload). When that node dies for good, nothing else would ever close the
call: its contact would stay open and its manager offered or busy. So:

* every node that holds calls keeps a **session-level advisory lock named after itself** on a
  connection of its own (`NodeLock`), taken again whenever that connection is re-made;
* the dispatching node looks every `CHECK_EVERY` at which of those locks are granted
  (`pg_locks`), for the nodes its open calls belong to (`NodeWatch`); a node whose lock has
  been missing for `grace` seconds is gone (`Absences`, pure): each of its calls ends as if the
  caller had hung up — the core's own `ContactAbandoned`, with the cause as its reason, so a
  waiting or offered call is abandoned (an outstanding offer withdrawn without penalty) and a
  talked one finished, its manager going to wrap-up or available as on any hang-up.

Why a lock and not a heartbeat row: PostgreSQL ends the session of a process that dies (its
socket closes) at once, and that of a machine that vanishes within the keep-alive time
(`KEEPALIVE_S`), and the lock goes with the session. Nothing is written every second, no
clocks of two machines are compared, and a node is "alive" exactly while it can reach the
database. A node back within the grace period (a connection blip, or a restart on the same
host and FastAGI port, which recovers its talked calls) keeps its calls.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from acd.cluster.leader import CONNECTION_ERRORS, RETRY, dsn, hold_open, lock_halves, open_session
from acd.core import events as ev
from acd.core.model import Channel, Contact
from acd.runtime import cancel_and_wait

log = logging.getLogger("acd.cluster")

CHECK_EVERY: Final = 1.0  # seconds between the dispatching node's looks at the node locks
HEALTH_EVERY: Final = 2.0  # seconds between a node's checks of its own lock connection
HEALTH_TIMEOUT: Final = 5.0
DEFAULT_GRACE: Final = 10.0


def node_key(schema: str | None, name: str) -> int:
    """The advisory lock key of node `name` in one installation (schema)."""
    digest = hashlib.blake2b(f"acd-node:{schema or 'public'}:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def call_holder(contact: Contact) -> str | None:
    """The node whose FastAGI session holds this call, when it is one (cluster mode)."""
    if contact.channel is not Channel.CALL:
        return None
    node = contact.payload.get("node")
    return node if isinstance(node, str) and node else None


@dataclass(slots=True)
class Absences:
    """Pure: since when each node that holds calls has been missing, and who is gone.

    >>> a = Absences(grace=10.0)
    >>> a.gone(holders={"b:4573"}, alive=set(), now=100.0)
    set()
    >>> a.gone(holders={"b:4573"}, alive=set(), now=110.0)
    {'b:4573'}
    >>> a.gone(holders={"b:4573"}, alive={"b:4573"}, now=111.0)   # back: the count starts over
    set()
    """

    grace: float
    since: dict[str, float] = field(default_factory=dict)

    def gone(self, holders: Iterable[str], alive: set[str], now: float) -> set[str]:
        holders = set(holders)
        for name in holders:
            if name in alive:
                self.since.pop(name, None)
            else:
                self.since.setdefault(name, now)
        for name in set(self.since) - holders:
            del self.since[name]  # holds nothing any more
        return {name for name, at in self.since.items() if now - at >= self.grace}


class NodeLock:
    """This node's side: hold the lock named after it for as long as the process lives. A
    dropped connection is re-made and the lock taken again; while another session still
    holds it (this node's previous process, not yet ended by PostgreSQL) it keeps trying."""

    def __init__(self, url: str, schema: str | None, name: str) -> None:
        self._dsn = dsn(url)
        self._schema = schema
        self.name = name
        self._key = node_key(schema, name)
        self._task: asyncio.Task[None] | None = None
        self.held = asyncio.Event()  # set while the lock is this node's

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="acd-cluster-node-lock")

    async def close(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)

    async def _run(self) -> None:
        warned = False
        while True:
            conn: Any = None
            try:
                conn, closed = await open_session(self._dsn, self._schema, "node")
                if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", self._key):
                    if not warned:
                        log.warning("cluster: the lock of node %s is still held by another session; waiting", self.name)
                        warned = True
                else:
                    warned = False
                    self.held.set()
                    log.info("cluster: node %s holds its liveness lock", self.name)
                    await hold_open(conn, closed, HEALTH_EVERY, HEALTH_TIMEOUT)
                    log.warning("cluster: the liveness connection of node %s closed; reconnecting", self.name)
            except CONNECTION_ERRORS as err:
                log.warning("cluster: liveness connection of node %s failed (%s); reconnecting", self.name, err)
            finally:
                self.held.clear()
                if conn is not None:
                    conn.terminate()
            await asyncio.sleep(RETRY)


@dataclass(slots=True)
class NodeWatch:
    """The dispatching node's side, for as long as it dispatches (`run`): end the calls of the
    nodes whose lock has been missing for `absences.grace` seconds (`ended(node, calls)` hears
    of each batch). The first look is at once: a node that died with the previous dispatcher
    is counted missing from the moment this one takes over."""

    absences: Absences
    schema: str | None
    open_contacts: Callable[[], Iterable[Contact]]
    held_locks: Callable[[], Awaitable[set[tuple[int, int]]]]
    post: Callable[[ev.Event], None]
    clock: Callable[[], float]
    ended: Callable[[str, list[Contact]], None] = lambda _node, _calls: None
    posted: set[str] = field(default_factory=set)  # told to end: the core may not have handled it yet

    async def run(self) -> None:
        while True:
            try:
                await self.look()
            except CONNECTION_ERRORS as err:
                log.warning("cluster: cannot see which nodes are alive (%s); retrying", err)
            await asyncio.sleep(CHECK_EVERY)  # a period: a lock that goes away announces nothing

    async def look(self) -> None:
        calls: dict[str, list[Contact]] = {}
        for contact in self.open_contacts():
            holder = call_holder(contact)
            if holder is not None:
                calls.setdefault(holder, []).append(contact)
        self.posted &= {c.id for held in calls.values() for c in held}
        granted = await self.held_locks() if calls else set()
        alive = {name for name in calls if lock_halves(node_key(self.schema, name)) in granted}
        for name in sorted(self.absences.gone(calls, alive, self.clock())):
            fresh = [c for c in calls[name] if c.id not in self.posted]
            if not fresh:
                continue
            reason = f"node {name} gone for {self.absences.grace:g} s: the call's session was lost"
            log.warning("cluster: node %s is gone; ending its %d call(s) as hung up", name, len(fresh))
            for contact in fresh:
                self.posted.add(contact.id)
                self.post(ev.ContactAbandoned(contact.id, reason))
            try:
                self.ended(name, fresh)
            except Exception:
                log.exception("cluster: a listener of ended calls failed")
