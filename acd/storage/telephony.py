"""Storage: callback requests, every dialling attempt and its AMI outcome, and what earlier
contacts from a phone number answered (for a repeat caller's IVR).

The tables live on the shared `metadata` (built by migration `0004` on the `telephony`
branch); the repository writes through the store's connections and its SQLite writer queue.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from acd.storage import tables as t
from acd.storage.store import Store

__all__ = ["Attempt", "CallbackRow", "TelephonyStore", "callback_attempts", "callbacks"]

callbacks = sa.Table(
    "callbacks",
    t.metadata,
    sa.Column("id", sa.String(), primary_key=True),
    sa.Column("contact_id", sa.String(), nullable=False, unique=True),
    sa.Column("phone", sa.String(), nullable=False),
    sa.Column("customer_name", sa.Text(), nullable=False),
    sa.Column("language", sa.String(), nullable=True),
    sa.Column("criteria", t.JSONText(), nullable=False),
    sa.Column("source", sa.String(), nullable=False),
    # The original enqueue time: the contact keeps its place, never ahead of older callers.
    sa.Column("requested_at", sa.Double(), nullable=False),
    sa.Column("not_before", sa.Double(), nullable=False),
    sa.Column("next_at", sa.Double(), nullable=True),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("max_attempts", sa.Integer(), nullable=False),
    # pending (not yet due) | queued (in the routing queue) | dialling | done | failed | cancelled
    sa.Column("status", sa.String(), nullable=False),
    sa.Column("last_result", sa.String(), nullable=True),
    sa.Column("updated_at", sa.Double(), nullable=False),
    sa.Column("idempotency_key", sa.String(), nullable=True),  # migration 0012: the form's key
    sa.Column("email", sa.String(), nullable=False, server_default=""),  # migration 0013
    sa.Index(None, "status", "next_at"),
    sa.Index(None, "idempotency_key", unique=True),
)

callback_attempts = sa.Table(
    "callback_attempts",
    t.metadata,
    sa.Column("n", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), sa.Identity(), primary_key=True),
    sa.Column("callback_id", sa.String(), nullable=False),
    sa.Column("attempt", sa.Integer(), nullable=False),
    sa.Column("manager_id", sa.String(), nullable=True),
    sa.Column("started_at", sa.Double(), nullable=False),
    sa.Column("ended_at", sa.Double(), nullable=True),
    sa.Column("action_id", sa.String(), nullable=False),
    sa.Column("originate_reason", sa.String(), nullable=True),  # OriginateResponse Reason (4 answered, 5 busy...)
    sa.Column("dial_status", sa.String(), nullable=True),  # the customer leg's DIALSTATUS
    sa.Column("result", sa.String(), nullable=True),
    sa.Index(None, "callback_id"),
)


@dataclass(slots=True)
class CallbackRow:
    id: str
    contact_id: str
    phone: str
    customer_name: str = ""
    language: str | None = None
    criteria: Mapping[str, str] = field(default_factory=dict)
    source: str = "api"
    requested_at: float = 0.0
    not_before: float = 0.0
    next_at: float | None = None
    attempts: int = 0
    max_attempts: int = 3
    status: str = "pending"
    last_result: str | None = None
    updated_at: float = 0.0
    idempotency_key: str | None = None
    email: str = ""  # where the customer is told how it goes, when there is no SMS


@dataclass(slots=True)
class Attempt:
    callback_id: str
    attempt: int
    manager_id: str | None
    started_at: float
    action_id: str
    ended_at: float | None = None
    originate_reason: str | None = None
    dial_status: str | None = None
    result: str | None = None


def _cb(row: sa.RowMapping) -> CallbackRow:
    return CallbackRow(**{k: row[k] for k in CallbackRow.__slots__})  # type: ignore[attr-defined]


def _row(cb: CallbackRow) -> dict[str, Any]:
    return {k: getattr(cb, k) for k in CallbackRow.__slots__}  # type: ignore[attr-defined]


class TelephonyStore:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def save_callback(self, cb: CallbackRow) -> None:
        row = _row(cb)
        row["criteria"] = dict(cb.criteria)
        async with self._store._write() as conn:
            updated = await conn.execute(callbacks.update().where(callbacks.c.id == cb.id).values(**row))
            if updated.rowcount == 0:
                await conn.execute(callbacks.insert(), row)

    async def get_callback(self, callback_id: str) -> CallbackRow | None:
        row = await self._store._row(sa.select(callbacks).where(callbacks.c.id == callback_id))
        return None if row is None else _cb(row)

    async def callback_by_key(self, idempotency_key: str) -> CallbackRow | None:
        row = await self._store._row(sa.select(callbacks).where(callbacks.c.idempotency_key == idempotency_key))
        return None if row is None else _cb(row)

    async def callback_for_contact(self, contact_id: str) -> CallbackRow | None:
        row = await self._store._row(sa.select(callbacks).where(callbacks.c.contact_id == contact_id))
        return None if row is None else _cb(row)

    async def open_callbacks(self) -> list[CallbackRow]:
        """Every callback not finished: what the scheduler re-arms after a restart."""
        query = sa.select(callbacks).where(callbacks.c.status.in_(("pending", "queued", "dialling")))
        return [_cb(r) for r in await self._store._rows(query.order_by(callbacks.c.requested_at))]

    async def add_attempt(self, a: Attempt) -> None:
        async with self._store._write() as conn:
            await conn.execute(callback_attempts.insert(), _attempt_row(a))

    async def finish_attempt(self, a: Attempt) -> None:
        async with self._store._write() as conn:
            await conn.execute(
                callback_attempts.update()
                .where(callback_attempts.c.action_id == a.action_id)
                .values(**{k: v for k, v in _attempt_row(a).items() if k != "action_id"})
            )

    async def attempts(self, callback_id: str) -> list[Attempt]:
        query = sa.select(callback_attempts).where(callback_attempts.c.callback_id == callback_id)
        rows = await self._store._rows(query.order_by(callback_attempts.c.n))
        return [Attempt(**{k: r[k] for k in Attempt.__slots__}) for r in rows]  # type: ignore[attr-defined]

    async def known_criteria(self, phone: str, limit: int = 5) -> dict[str, str]:
        """What this number's latest contacts answered (the newest answer wins per criterion)."""
        if not phone:
            return {}
        c = t.contacts.c
        query = sa.select(c.criteria).where(c.phone == phone).order_by(c.seq.desc()).limit(limit)
        known: dict[str, str] = {}
        for row in await self._store._rows(query):
            for key, value in (row["criteria"] or {}).items():
                known.setdefault(key, value)
        return known


def _attempt_row(a: Attempt) -> dict[str, Any]:
    return {k: getattr(a, k) for k in Attempt.__slots__}  # type: ignore[attr-defined]


def open_callbacks_of(conn: Connection, contact_ids: Sequence[str], phones: Collection[str]) -> list[str]:
    """The contacts of a customer's callbacks still to dial (a customer's erasure waits for them)."""
    cb = callbacks.c
    mine = sa.or_(cb.contact_id.in_(contact_ids), cb.phone.in_(list(phones)))
    query = sa.select(cb.contact_id).where(mine, cb.status.in_(("pending", "queued", "dialling")))
    return [cid for (cid,) in conn.execute(query)]


def erase_callbacks(
    conn: Connection, contact_ids: Sequence[str], phones: Collection[str], emails: Collection[str]
) -> int:
    """Blank the number, name and e-mail of a customer's callback requests (a customer's
    erasure); their times, attempts and results stay."""
    cb = callbacks.c
    mine = sa.or_(cb.contact_id.in_(contact_ids), cb.phone.in_(list(phones)), sa.func.lower(cb.email).in_(list(emails)))
    return int(conn.execute(callbacks.update().where(mine).values(phone="", customer_name="", email="")).rowcount)
