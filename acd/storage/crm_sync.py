"""Storage: the outbox of finished contacts to an external CRM (table `crm_sync`, migration 0009).

One row per finished contact, keyed by its idempotency key and unique per contact, so asking
twice to send one contact's outcome changes nothing. `acd.crm.external.sync` works it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from acd.core.model import Contact, ContactStatus
from acd.storage import tables as t
from acd.storage.store import Store, _contact_from_row, scrub_rows

__all__ = ["SyncItem", "SyncStore", "scrub_outbox"]

# The keys of a body (acd.crm.external.base.finished_body) that hold a person's data, at any
# depth: a customer's are under "customer", and an adapter's body may nest them elsewhere.
PERSONAL_KEYS = frozenset({"name", "phone", "email", "customer_name", "phones", "emails"})


@dataclass(slots=True)
class SyncItem:
    key: str
    contact_id: str
    body: Mapping[str, Any]
    created_at: float
    status: str = "pending"  # pending | sending | sent | failed
    attempts: int = 0
    next_at: float | None = None
    last_error: str | None = None
    external_id: str | None = None
    sent_at: float | None = None


_COLUMNS = ("key", "contact_id", "body", "created_at", "status", "attempts", "next_at", "last_error", "external_id")
_STATE = ("status", "attempts", "next_at", "last_error", "external_id", "sent_at")


def _item(row: sa.RowMapping) -> SyncItem:
    return SyncItem(**{k: row[k] for k in (*_COLUMNS, "sent_at")})


class SyncStore:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def add(self, items: Sequence[SyncItem]) -> int:
        """Insert; a contact already in the outbox is left as it is. Returns how many were new."""
        if not items:
            return 0
        added = 0
        async with self._store._write() as conn:
            for item in items:
                row = {k: getattr(item, k) for k in (*_COLUMNS, "sent_at")}
                done = await conn.execute(self._store._insert(t.crm_sync).on_conflict_do_nothing(), row)
                added += done.rowcount or 0
        return added

    async def due(self, now: float, limit: int = 50) -> list[SyncItem]:
        c = t.crm_sync.c
        query = (
            sa.select(t.crm_sync)
            .where(c.status == "pending", sa.or_(c.next_at.is_(None), c.next_at <= now))
            .order_by(c.created_at)
            .limit(limit)
        )
        return [_item(r) for r in await self._store._rows(query)]

    async def next_due(self) -> float | None:
        """When the next pending row is due (0.0 for one due at once), None when none waits."""
        c = t.crm_sync.c
        query = sa.select(sa.func.count().label("n"), sa.func.min(sa.func.coalesce(c.next_at, 0.0)).label("at"))
        row = await self._store._row(query.where(c.status == "pending"))
        return None if row is None or not row["n"] else float(row["at"])

    async def claim(self, item: SyncItem) -> bool:
        """Mark a pending row `sending` (one attempt more) unless another worker took it first
        (several server processes on one database each run a worker)."""
        c = t.crm_sync.c
        statement = (
            t.crm_sync.update()
            .where(c.key == item.key, c.status == "pending")
            .values(status="sending", attempts=c.attempts + 1)
        )
        async with self._store._write() as conn:
            done = await conn.execute(statement)
        if done.rowcount != 1:
            return False
        item.status, item.attempts = "sending", item.attempts + 1
        return True

    async def update(self, item: SyncItem) -> None:
        values = {k: getattr(item, k) for k in _STATE}
        async with self._store._write() as conn:
            await conn.execute(t.crm_sync.update().where(t.crm_sync.c.key == item.key).values(**values))

    async def get(self, key: str) -> SyncItem | None:
        row = await self._store._row(sa.select(t.crm_sync).where(t.crm_sync.c.key == key))
        return None if row is None else _item(row)

    async def items(self, status: str | None = None, limit: int = 100) -> list[SyncItem]:
        query = sa.select(t.crm_sync).order_by(t.crm_sync.c.created_at.desc()).limit(limit)
        if status is not None:
            query = query.where(t.crm_sync.c.status == status)
        return [_item(r) for r in await self._store._rows(query)]

    async def requeue_sending(self) -> int:
        """Rows left `sending` by a stop mid-send go back to `pending` (the key makes a resend safe)."""
        c = t.crm_sync.c
        async with self._store._write() as conn:
            done = await conn.execute(
                t.crm_sync.update().where(c.status == "sending").values(status="pending", next_at=None)
            )
        return done.rowcount or 0

    async def newest(self) -> float | None:
        row = await self._store._row(sa.select(sa.func.max(t.crm_sync.c.created_at).label("at")))
        return None if row is None or row["at"] is None else float(row["at"])

    async def finished_without_row(self, since: float, limit: int = 1000) -> list[Contact]:
        """Contacts finished at or after `since` that have no outbox row: what a crash between
        a contact's commit and its outbox row left behind."""
        k, s = t.contacts.c, t.crm_sync.c
        query = (
            sa.select(t.contacts)
            .select_from(t.contacts.outerjoin(t.crm_sync, s.contact_id == k.id))
            .where(k.status == ContactStatus.FINISHED.value, k.finished_at >= since, s.key.is_(None))
            .order_by(k.finished_at)
            .limit(limit)
        )
        return [_contact_from_row(r) for r in await self._store._rows(query)]


def scrub_outbox(conn: Connection, contact_ids: Sequence[str], text: Callable[[Any], Any]) -> int:
    """A customer's erasure (acd.storage.crm.erase_customer_rows): the outbox rows of their
    contacts lose every PERSONAL_KEYS field, however deep, and their words elsewhere in the
    body and in the last error (`text`); the rows changed. The references to the external
    CRM's records (`external`) stay: the office erases there by them."""

    def body(value: Any) -> Any:
        return text(_without_personal(value))

    changed = 0
    for i in range(0, len(contact_ids), 500):
        part = list(contact_ids[i : i + 500])
        where = t.crm_sync.c.contact_id.in_(part)
        changed += scrub_rows(conn, t.crm_sync, where, {"body": body, "last_error": text})
    return changed


def _without_personal(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: None if k in PERSONAL_KEYS else _without_personal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_personal(v) for v in value]
    return value
