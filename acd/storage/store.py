"""Storage: the repository everything else persists through (SQLAlchemy 2 async, SQLite or PostgreSQL).

Rows become core objects here and nowhere else; no other package imports SQLAlchemy.

Durability contract: every write method returns only after its transaction committed, so
a caller may acknowledge a client (HTTP 201, a caller's DTMF confirmation) as soon as the
await returns. On SQLite the file runs in WAL mode with `synchronous=NORMAL`: a commit
survives the process being killed (kill -9), and only an OS crash or power cut can lose
the last few commits (https://www.sqlite.org/pragma.html#pragma_synchronous).

Ordering of the list methods: `load_open_contacts` is queue order (oldest `seq` first);
every `list_*` method is newest first.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Final, NamedTuple, TypeVar, cast

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, SQLAlchemyError, StatementError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from acd.core.events import Candidate, Decision, ShadowChoice, Transition
from acd.core.model import Channel, Contact, ContactStatus, Manager, Outcome, Presence, evolve
from acd.storage import tables as t
from acd.storage.bulk import insert_many, select_in
from acd.storage.writer import WriterGone, WriterProcess, checkpoint_backstop

__all__ = ["Conflict", "StorageError", "Store", "default_sqlite_url", "open_store"]

MIGRATIONS: Final = Path(__file__).with_name("migrations")
BUSY_TIMEOUT_MS: Final = 5000
PING_TIMEOUT_S: Final = 5.0
# Any fixed number: the key of the PostgreSQL advisory lock that keeps two servers starting
# at once from both running the migrations.
_MIGRATION_LOCK_KEY: Final = 0x0ACD_0001
_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
T = TypeVar("T")
# Another feature's rows for a transaction of the store's: a module-level function taking
# a connection, and its arguments (see Store._write_batch).
Work = tuple[Callable[..., Any], tuple[Any, ...]]
_OPEN_STATUSES: Final = tuple(s.value for s in ContactStatus if s.is_open)
# a dictionary look-up is several times faster than calling the enum, once a row
_CHANNELS: Final = {m.value: m for m in Channel}
_STATUSES: Final = {m.value: m for m in ContactStatus}
_OUTCOMES: Final = {m.value: m for m in Outcome}
_PRESENCES: Final = {m.value: m for m in Presence}


class ContactFigures(NamedTuple):
    """What the supervisor's reports count of a contact (Store.report_contacts)."""

    id: str
    seq: int
    channel: Channel
    arrived_at: float
    status: ContactStatus
    assigned_to: str | None
    outcome: Outcome | None
    customer_name: str


class PresenceChange(NamedTuple):
    """A Transition without its `old` presence (Store.report_transitions)."""

    manager_id: str
    at: float
    new: Presence
    reason: str | None
    cause: str


class Offer(NamedTuple):
    """A decision that offered a contact to a manager, without its explanation (Store.report_offers)."""

    at: float
    contact_id: str
    manager_id: str
    kind: str


class StorageError(Exception):
    """The database failed the operation and rolled it back (only a connection lost during
    COMMIT leaves the outcome unknown: acknowledge nothing then).

    StorageError        the database is unreachable, or refused the write
     ├── Conflict       the write reused a unique id (a contact's or a decision's)
     └── Refused        the database will never take a value in it
    """


class Conflict(StorageError):
    """The caller reused an id that must be unique; nothing was written."""


class Refused(StorageError):
    """The database refused a value: text with a NUL character or an index entry over
    PostgreSQL's 2.7 KB, a number out of range. Nothing was written, and the same write
    would be refused again: unlike an outage, it is never worth a retry."""


def default_sqlite_url(data_dir: str | Path) -> str:
    """The database the server uses when none is configured: `<data_dir>/acd.db`."""
    return f"sqlite+aiosqlite:///{Path(data_dir) / 'acd.db'}"


async def open_store(url: str, *, schema: str | None = None, writer_process: bool = False) -> Store:
    """Connect, migrate to the newest revision, and return the store.

    `url` is `sqlite+aiosqlite:///path/to/acd.db` or `postgresql+asyncpg://user@host/db`
    (the plain `sqlite://` and `postgresql://` forms get those drivers). The parent folder of
    a SQLite file is created. `schema` (PostgreSQL only) keeps every table in that schema,
    creating it if needed, so that several installations or test runs can share a database.
    `writer_process` (the server's choice) gives a SQLite file its writer process for the
    intake's batches (acd.storage.writer). Raises `StorageError` when the database cannot
    be reached or migrated.
    """
    sa_url = _with_async_driver(make_url(url))
    backend = sa_url.get_backend_name()
    if backend == "sqlite":
        if schema is not None:
            raise ValueError("schema= is for PostgreSQL; SQLite keeps one installation per file")
        engine = _sqlite_engine(sa_url, checkpointed_by_writer=writer_process)
    elif backend == "postgresql":
        if schema is not None and not _SCHEMA_NAME.fullmatch(schema):
            raise ValueError(f"schema must be a plain SQL identifier, got {schema!r}")
        engine = _postgres_engine(sa_url, schema)
    else:
        raise ValueError(
            f"unsupported database {sa_url.render_as_string(hide_password=True)!r}: "
            "use sqlite+aiosqlite:///<file> or postgresql+asyncpg://<user>@<host>/<db>"
        )
    try:
        with _translated_errors():
            await _migrate_to_head(engine, schema)
    except BaseException:
        await engine.dispose()
        raise
    store = Store(engine, writer_process=writer_process)
    if store._writer is not None:
        try:
            await store._writer.start()
        except WriterGone as err:
            await store.close()
            raise StorageError(str(err)) from err
    return store


class Store:
    """The repository: contacts, managers, the decision/transition logs, audit, API tokens."""

    def __init__(self, engine: AsyncEngine, *, writer_process: bool = False) -> None:
        self._engine = engine
        self.backend: str = engine.dialect.name
        # SQLite allows one writer per file. Queuing writers here, in order, keeps each
        # commit short and never reaches sqlite's busy-wait ("database is locked");
        # readers are not queued (WAL lets them run beside the writer).
        self._write_lock: asyncio.Lock | None = asyncio.Lock() if self.backend == "sqlite" else None
        self._one_connection = isinstance(engine.pool, StaticPool)
        self._writer: WriterProcess | None = None
        if writer_process and self.backend == "sqlite" and not self._one_connection:
            sync_url = engine.url.set(drivername="sqlite+pysqlite").render_as_string(hide_password=False)
            self._writer = WriterProcess(sync_url)
        self._insert: Any = sqlite.insert if self.backend == "sqlite" else postgresql.insert
        self._upsert_contacts = self._upsert(t.contacts, "id", keep=("seq", "idempotency_key"))
        self._upsert_managers = self._upsert(t.managers, "id")
        self._intake: list[tuple[Contact, dict[str, Any], asyncio.Future[tuple[Contact, bool]]]] = []
        self._intake_task: asyncio.Task[None] | None = None

    async def close(self) -> None:
        if self._writer is not None:
            await self._writer.close()  # after the transaction in flight
        await self._engine.dispose()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def ping(self) -> bool:
        """True when the database answers a trivial query within `PING_TIMEOUT_S`."""
        try:
            async with asyncio.timeout(PING_TIMEOUT_S), self._read() as conn:
                await conn.execute(sa.text("SELECT 1"))
        except (StorageError, SQLAlchemyError, OSError, TimeoutError):
            return False
        return True

    # ---- contacts -------------------------------------------------------------------

    async def create_contact(self, contact: Contact, idempotency_key: str | None = None) -> tuple[Contact, bool]:
        """Insert a new contact and return it with its intake `seq`, and True.

        The database assigns `seq` (whatever the given contact carried); the argument is not
        modified. When `idempotency_key` was used before, nothing is inserted and the contact
        stored under it comes back with False, also when two submits race: the unique
        constraint lets exactly one insert commit. Reusing a contact id raises `Conflict`.

        Group commit: contacts submitted while a commit is running wait for the next one
        and go in together, so a burst costs one transaction, not one each. Each caller
        still returns only after the transaction holding its row committed.
        """
        row = _contact_row(contact)
        row["idempotency_key"] = idempotency_key
        pending: asyncio.Future[tuple[Contact, bool]] = asyncio.get_running_loop().create_future()
        self._intake.append((contact, row, pending))
        if self._intake_task is None or self._intake_task.done():
            self._intake_task = asyncio.create_task(self._drain_intake())
        return await pending

    async def _drain_intake(self) -> None:
        while self._intake:
            batch, self._intake = self._intake, []
            try:
                results = await self._insert_batch([(c, r) for c, r, _ in batch])
            except (Conflict, StorageError, TypeError):
                # One bad row (a reused id) must not fail its neighbours: retry them alone.
                for contact, row, pending in batch:
                    try:
                        result = (await self._insert_batch([(contact, row)]))[0]
                    except BaseException as err:  # handed to the caller who owns the row
                        if not pending.done():
                            pending.set_exception(err)
                    else:
                        if not pending.done():
                            pending.set_result(result)
                continue
            except BaseException as err:
                for _, _, pending in batch:
                    if not pending.done():
                        pending.set_exception(err)
                raise
            for (_, _, pending), result in zip(batch, results, strict=True):
                if not pending.done():
                    pending.set_result(result)

    async def create_contacts(
        self,
        items: Sequence[tuple[Contact, str | None]],
        also: Work | None = None,
    ) -> list[tuple[Contact, bool]]:
        """`create_contact` for a batch the caller has already gathered, in one transaction
        that first runs `also` (another feature's rows that belong with these contacts, such
        as the customers they create: see `_write_batch`). All or nothing: any failure
        writes none of it."""
        return await self._insert_batch(_rows(items), also)

    async def create_contacts_if_new(
        self, items: Sequence[tuple[Contact, str | None]], new_customers: Work
    ) -> list[tuple[Contact, bool] | None]:
        """`create_contacts` for contacts whose people are taken for new customers
        (acd.crm.service.CrmService.assume_new). In the same transaction, `new_customers`
        (acd.storage.crm.CrmStore.new_people_work) makes and writes the customers nobody
        holds a phone or e-mail of, and fills in their contacts; it names the contacts of
        the people found known, which are left out (None) for the caller to recognise. The
        contacts come back with their customers. A contact that repeats an Idempotency-Key
        stored before is answered by the stored one, as in `create_contacts`."""
        return await self._insert_some(_rows(items), new_customers, if_new=True)

    async def _insert_batch(
        self, batch: list[tuple[Contact, dict[str, Any]]], also: Work | None = None
    ) -> list[tuple[Contact, bool]]:
        return cast(list[tuple[Contact, bool]], await self._insert_some(batch, also))  # nothing is left out

    async def _insert_some(
        self, batch: list[tuple[Contact, dict[str, Any]]], also: Work | None = None, *, if_new: bool = False
    ) -> list[tuple[Contact, bool] | None]:
        first_by_key: dict[str, int] = {}
        fresh: list[int] = []
        for i, (_, row) in enumerate(batch):
            key = row["idempotency_key"]
            if key is not None and key in first_by_key:
                continue  # a double submit inside one batch: answered from the first one
            if key is not None:
                first_by_key[key] = i
            fresh.append(i)
        rows = [batch[i][1] for i in fresh]
        filled: dict[str, tuple[str | None, dict[str, Any]]] = {}
        if if_new:
            assert also is not None
            seqs, existing, left_out, filled = await self._write_batch(_write_contacts_if_new, rows, also)
        else:
            (seqs, existing), left_out = await self._write_batch(_write_contacts, rows, also), set()

        def stored(contact: Contact, row_id: str) -> Contact:
            """The contact as its row went in: its seq, and the customer the transaction filled in."""
            if row_id not in filled:
                return evolve(contact, seq=seqs[row_id])
            customer_id, payload = filled[row_id]
            return evolve(contact, seq=seqs[row_id], customer_id=customer_id, payload=payload)

        out: list[tuple[Contact, bool] | None] = []
        for contact, row in batch:
            key = row["idempotency_key"]
            if (row["id"] if key is None else batch[first_by_key[key]][1]["id"]) in left_out:
                out.append(None)
            elif row["id"] in seqs and (key is None or batch[first_by_key[key]][1]["id"] == row["id"]):
                out.append((stored(contact, row["id"]), True))
            elif key is not None and key in existing:
                out.append((existing[key], False))
            elif key is not None:
                first = batch[first_by_key[key]]
                out.append((stored(first[0], first[1]["id"]), False))
            else:
                raise Conflict(f"contact {row['id']} was not stored")
        return out

    async def get_contact(self, contact_id: str) -> Contact | None:
        row = await self._row(sa.select(t.contacts).where(t.contacts.c.id == contact_id))
        return None if row is None else _contact_from_row(row)

    async def load_open_contacts(self) -> list[Contact]:
        """Waiting, offered and assigned contacts in intake order: the queue to rebuild after a restart."""
        query = sa.select(t.contacts).where(t.contacts.c.status.in_(_OPEN_STATUSES)).order_by(t.contacts.c.seq)
        return [_contact_from_row(row) for row in await self._rows(query)]

    async def list_contacts(
        self,
        status: str | None = None,
        manager_id: str | None = None,
        since: float | None = None,
        limit: int = 100,
        offset: int = 0,
        *,
        until: float | None = None,
    ) -> list[Contact]:
        """Newest first. `manager_id` matches the manager holding or being offered the contact;
        `since` keeps contacts that arrived at or after that time, `until` those before it."""
        c = t.contacts.c
        query = sa.select(t.contacts).order_by(c.seq.desc()).limit(limit).offset(offset)
        if status is not None:
            query = query.where(c.status == ContactStatus(status).value)
        if manager_id is not None:
            mine = sa.or_(c.assigned_to == manager_id, c.offered_to == manager_id)
            if status is None and self.backend == "sqlite":
                # SQLite has no statistics to choose by: it read the table up to the page for the OR
                # (all of it for a manager with few contacts) or, both columns indexed, fetched and
                # sorted every contact the manager ever had. Its indexes hold the seq (the rowid):
                # the seqs from both, then the rows by seq, newest first, as far as the page goes.
                # With a status it reads that status's index (the open ones are few); PostgreSQL
                # picks between the table and the indexes by its statistics.
                held = [sa.select(c.seq).where(column == manager_id) for column in (c.assigned_to, c.offered_to)]
                mine = c.seq.in_(sa.union_all(*held))
            query = query.where(mine)
        if since is not None:
            query = query.where(c.arrived_at >= since)
        if until is not None:
            query = query.where(c.arrived_at < until)
        return [_contact_from_row(row) for row in await self._rows(query)]

    # ---- managers -------------------------------------------------------------------

    async def save_manager(self, manager: Manager) -> None:
        """Insert or replace the manager (every field)."""
        async with self._write() as conn:
            await conn.execute(self._upsert_managers, [_manager_row(manager)])

    async def load_managers(self) -> list[Manager]:
        """Every manager, active or not, by `order` then id."""
        query = sa.select(t.managers).order_by(t.managers.c.sort_order, t.managers.c.id)
        return [_manager_from_row(row) for row in await self._rows(query)]

    async def get_manager(self, manager_id: str) -> Manager | None:
        row = await self._row(sa.select(t.managers).where(t.managers.c.id == manager_id))
        return None if row is None else _manager_from_row(row)

    # ---- the dispatcher's write -----------------------------------------------------

    async def apply(
        self,
        contacts: Sequence[Contact],
        managers: Sequence[Manager],
        decisions: Sequence[Decision],
        transitions: Sequence[Transition],
    ) -> None:
        """Persist one processed event in one transaction: all of it or, on any error, none.

        Contacts and managers are upserted by id (the last copy wins when one appears twice);
        a contact new to the store gets a fresh `seq` from the database. Decisions and
        transitions are appended; reusing a decision id raises `Conflict`.
        """
        if not (contacts or managers or decisions or transitions):
            return
        async with self._write() as conn:
            if contacts:
                await conn.execute(self._upsert_contacts, _last_by_id(_contact_row(c) for c in contacts))
            if managers:
                await conn.execute(self._upsert_managers, _last_by_id(_manager_row(m) for m in managers))
            if decisions:
                await conn.execute(t.decisions.insert(), [_decision_row(d) for d in decisions])
            if transitions:
                await conn.execute(t.transitions.insert(), [_transition_row(tr) for tr in transitions])

    async def list_decisions(
        self,
        contact_id: str | None = None,
        manager_id: str | None = None,
        since: float | None = None,
        limit: int = 100,
        *,
        until: float | None = None,
    ) -> list[Decision]:
        """The decision log, newest first, each with its full explanation; `since` and
        `until` keep decisions made at or after, and before, those times."""
        c = t.decisions.c
        query = sa.select(t.decisions).order_by(c.at.desc(), c.n.desc()).limit(limit)
        if contact_id is not None:
            query = query.where(c.contact_id == contact_id)
        if manager_id is not None:
            query = query.where(c.manager_id == manager_id)
        if since is not None:
            query = query.where(c.at >= since)
        if until is not None:
            query = query.where(c.at < until)
        return [_decision_from_row(row) for row in await self._rows(query)]

    async def shadow_picks(self, limit: int) -> list[tuple[str, str, str | None, ShadowChoice | None]]:
        """Of the newest `limit` decisions, the offers, newest first: (decision id, contact id,
        the manager offered, the shadow policy's pick or None). Without the explanations,
        whose decoding was nearly all of `list_decisions`' time over thousands of rows."""
        c = t.decisions.c
        query = sa.select(c.kind, c.id, c.contact_id, c.manager_id, c.shadow).order_by(c.at.desc(), c.n.desc())
        async with self._read() as conn:
            rows = (await conn.execute(query.limit(limit))).all()
        return [
            (decision_id, contact_id, manager_id, None if shadow is None else ShadowChoice(**shadow))
            for kind, decision_id, contact_id, manager_id, shadow in rows
            if kind == "offer"
        ]

    async def list_transitions(
        self,
        manager_id: str | None = None,
        since: float | None = None,
        limit: int = 1000,
        *,
        until: float | None = None,
    ) -> list[Transition]:
        """Presence changes, newest first; `since` and `until` as for decisions."""
        c = t.transitions.c
        query = sa.select(t.transitions).order_by(c.at.desc(), c.n.desc()).limit(limit)
        if manager_id is not None:
            query = query.where(c.manager_id == manager_id)
        if since is not None:
            query = query.where(c.at >= since)
        if until is not None:
            query = query.where(c.at < until)
        return [_transition_from_row(row) for row in await self._rows(query)]

    async def decisions_of_contacts(self, contact_ids: Iterable[str], since: float) -> list[Decision]:
        """The decisions about these contacts made at or after `since`, oldest first; read by
        the contact's index, however many other decisions came in between (the reports'
        answers that came days after the contact)."""
        c = t.decisions.c
        ids = list(dict.fromkeys(contact_ids))
        out: list[Decision] = []
        for i in range(0, len(ids), 500):  # within every backend's limit of bound parameters
            query = sa.select(t.decisions).where(c.contact_id.in_(ids[i : i + 500]), c.at >= since).order_by(c.at, c.n)
            out += [_decision_from_row(row) for row in await self._rows(query)]
        return out

    async def transitions_from(self, starts: Iterable[tuple[str, float]], limit: int) -> list[Transition]:
        """For each (manager id, time): that manager's first `limit` presence changes at or
        after it, all in no set order; one query for a hundred (each part read by the
        manager's index)."""
        c = t.transitions.c
        pairs = list(dict.fromkeys(starts))
        out: list[Transition] = []
        for i in range(0, len(pairs), 100):
            parts = [
                sa.select(t.transitions).where(c.manager_id == m, c.at >= at).order_by(c.at, c.n).limit(limit)
                for m, at in pairs[i : i + 100]
            ]
            # a compound SELECT takes no ORDER BY or LIMIT in its parts: each is a subquery
            query = sa.union_all(*(sa.select(*part.subquery().c) for part in parts))
            async with self._read() as conn:
                rows = (await conn.execute(query)).mappings().all()
            out += [_transition_from_row(row) for row in rows]
        return out

    # ---- the supervisor's reports: only the columns their figures need --------------
    # A month of a busy office is tens of thousands of rows: decoding each decision's
    # explanation and each contact's JSON was most of a report's time (acd.web.reports).

    async def report_contacts(self, since: float, until: float, limit: int) -> list[ContactFigures]:
        """The contacts that arrived in [since, until), newest first, as list_contacts."""
        c = t.contacts.c
        query = (
            sa.select(c.id, c.seq, c.channel, c.arrived_at, c.status, c.assigned_to, c.outcome, c.customer_name)
            .where(c.arrived_at >= since, c.arrived_at < until)
            .order_by(c.seq.desc())
            .limit(limit)
        )
        async with self._read() as conn:
            rows = (await conn.execute(query)).all()
        return [
            ContactFigures(i, seq, _CHANNELS[ch], at, _STATUSES[st], to, None if out is None else _OUTCOMES[out], name)
            for i, seq, ch, at, st, to, out, name in rows
        ]

    async def report_offers(self, since: float, until: float, limit: int) -> list[Offer]:
        """The decisions made in [since, until) that named a manager, but overrides, newest
        first in list_decisions' order."""
        c = t.decisions.c
        query = (
            sa.select(c.at, c.contact_id, c.manager_id, c.kind)
            .where(c.at >= since, c.at < until, c.manager_id.is_not(None), c.kind != "override")
            .order_by(c.at.desc(), c.n.desc())
            .limit(limit)
        )
        async with self._read() as conn:
            return [Offer(*row) for row in (await conn.execute(query)).all()]

    async def offers_of_contacts(self, contact_ids: Iterable[str], since: float) -> list[Offer]:
        """decisions_of_contacts' offers (a manager named, not an override), oldest first."""
        c = t.decisions.c
        ids = list(dict.fromkeys(contact_ids))
        out: list[Offer] = []
        for i in range(0, len(ids), 500):  # within every backend's limit of bound parameters
            query = (
                sa.select(c.at, c.contact_id, c.manager_id, c.kind)
                .where(
                    c.contact_id.in_(ids[i : i + 500]), c.at >= since, c.manager_id.is_not(None), c.kind != "override"
                )
                .order_by(c.at, c.n)
            )
            async with self._read() as conn:
                out += [Offer(*row) for row in (await conn.execute(query)).all()]
        return out

    async def report_transitions(self, since: float, until: float, limit: int) -> list[PresenceChange]:
        """list_transitions of everybody in [since, until), but each change's `old`."""
        c = t.transitions.c
        query = (
            sa.select(c.manager_id, c.at, c.new, c.reason, c.cause)
            .where(c.at >= since, c.at < until)
            .order_by(c.at.desc(), c.n.desc())
            .limit(limit)
        )
        async with self._read() as conn:
            rows = (await conn.execute(query)).all()
        return [PresenceChange(m, at, _PRESENCES[new], why, cause) for m, at, new, why, cause in rows]

    # ---- audit ----------------------------------------------------------------------

    async def audit(self, at: float, actor: str, action: str, target: str, detail: Mapping[str, Any]) -> None:
        """Append a supervisor override or admin action; `detail` must be JSON-serialisable."""
        async with self._write() as conn:
            await conn.execute(
                t.audit.insert(), {"at": at, "actor": actor, "action": action, "target": target, "detail": dict(detail)}
            )

    async def list_audit(self, limit: int = 100) -> list[dict[str, Any]]:
        """Newest first, as dicts with keys `id`, `at`, `actor`, `action`, `target`, `detail`."""
        c = t.audit.c
        query = sa.select(t.audit).order_by(c.at.desc(), c.n.desc()).limit(limit)
        return [
            {
                "id": row["n"],
                "at": row["at"],
                "actor": row["actor"],
                "action": row["action"],
                "target": row["target"],
                "detail": row["detail"],
            }
            for row in await self._rows(query)
        ]

    # ---- API tokens -----------------------------------------------------------------

    async def create_token(self, role: str, manager_id: str | None, label: str = "") -> str:
        """Mint a bearer token and return its secret; only its SHA-256 is stored, so show it once."""
        secret = secrets.token_urlsafe(32)
        async with self._write() as conn:
            await conn.execute(
                t.tokens.insert(),
                {
                    "token_hash": _token_hash(secret),
                    "role": role,
                    "manager_id": manager_id,
                    "label": label,
                    "created_at": time.time(),
                    "revoked_at": None,
                },
            )
        return secret

    async def verify_token(self, token: str) -> tuple[str, str | None] | None:
        """`(role, manager_id)` for a live token; None for an unknown or revoked one."""
        c = t.tokens.c
        query = sa.select(c.role, c.manager_id).where(c.token_hash == _token_hash(token), c.revoked_at.is_(None))
        row = await self._row(query)
        return None if row is None else (row["role"], row["manager_id"])

    async def revoke_token(self, token: str) -> bool:
        """Revoke a token for good; False when it was unknown or already revoked."""
        c = t.tokens.c
        statement = (
            t.tokens.update()
            .where(c.token_hash == _token_hash(token), c.revoked_at.is_(None))
            .values(revoked_at=time.time())
        )
        async with self._write() as conn:
            result = await conn.execute(statement)
        return result.rowcount == 1

    # ---- plumbing -------------------------------------------------------------------

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        """A connection in a transaction that commits when the block exits without error."""
        with _translated_errors():
            if self._write_lock is None:
                async with self._engine.begin() as conn:
                    yield conn
            else:
                async with self._write_lock, self._engine.begin() as conn:
                    yield conn

    async def _write_batch(self, work: Callable[..., T], *args: Any) -> T:
        """`work(connection, *args)` in one committed transaction: the intake's writes of
        many rows. `work` is a module-level function and its arguments and result plain
        data, because `acd serve` on a SQLite file runs it in its writer process
        (acd.storage.writer says why); elsewhere it runs here, through `run_sync`."""
        if self._writer is None:
            async with self._write() as conn:
                return await conn.run_sync(work, *args)
        assert self._write_lock is not None
        with _translated_errors():
            async with self._write_lock:
                return await self._writer.run(work, *args)

    async def _read_batch(self, work: Callable[..., T], *args: Any) -> T:
        """`work(connection, *args)` reading only, for look-ups on the intake path: in the
        writer process where there is one, as `_write_batch`."""
        if self._writer is None:
            async with self._read() as conn:
                return await conn.run_sync(work, *args)
        with _translated_errors():
            return await self._writer.run(work, *args)

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        with _translated_errors():
            if self._one_connection:
                # An in-memory database is one connection shared by all: a reader closing it
                # would roll back a writer's open transaction, so readers queue as well.
                assert self._write_lock is not None
                async with self._write_lock, self._engine.connect() as conn:
                    yield conn
            else:
                async with self._engine.connect() as conn:
                    yield conn

    async def _rows(self, query: sa.Select[Any]) -> list[sa.RowMapping]:
        async with self._read() as conn:
            return list((await conn.execute(query)).mappings())

    async def _row(self, query: sa.Select[Any]) -> sa.RowMapping | None:
        async with self._read() as conn:
            return (await conn.execute(query)).mappings().one_or_none()

    def _upsert(self, table: sa.Table, key: str, keep: tuple[str, ...] = ()) -> Any:
        """INSERT ... ON CONFLICT (key) DO UPDATE every column but `key` and `keep`."""
        statement = self._insert(table)
        updated = {col.name: statement.excluded[col.name] for col in table.c if col.name not in (key, *keep)}
        return statement.on_conflict_do_update(index_elements=[key], set_=updated)


@contextmanager
def _translated_errors() -> Iterator[None]:
    # Callers see the storage layer's errors only, never SQLAlchemy's.
    try:
        yield
    except IntegrityError as exc:
        raise Conflict(str(exc.orig)) from exc
    except DBAPIError as exc:
        if _refused_value(exc):
            raise Refused(str(exc.orig)) from exc
        raise StorageError(str(exc.orig)) from exc
    except StatementError as exc:
        # A value the database never saw (a payload JSON cannot encode): the caller's error.
        if isinstance(exc.orig, Exception):
            raise exc.orig from exc
        raise
    except (PoolTimeoutError, OSError, WriterGone) as exc:
        raise StorageError(str(exc)) from exc


# SQLSTATE classes of a value the database will never take: 22 "data exception" (a NUL
# in text, a number out of range) and 54 "program limit exceeded" (an index entry too big)
_REFUSED_CLASSES: Final = ("22", "54")


def _refused_value(exc: DBAPIError) -> bool:
    if isinstance(exc, DataError):  # SQLite's "string or blob too big"
        return True
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if isinstance(sqlstate, str):
        return sqlstate[:2] in _REFUSED_CLASSES
    # asyncpg refuses some values itself, before sending them (its DataError is a ValueError)
    return isinstance(getattr(exc.orig, "__cause__", None), ValueError)


# ---- engines and migrations ---------------------------------------------------------


def _with_async_driver(url: URL) -> URL:
    if url.drivername == "sqlite":
        return url.set(drivername="sqlite+aiosqlite")
    if url.drivername in ("postgresql", "postgres"):
        return url.set(drivername="postgresql+asyncpg")
    return url


def _sqlite_engine(url: URL, *, checkpointed_by_writer: bool = False) -> AsyncEngine:
    database = url.database or ""
    in_memory = database in ("", ":memory:") or url.query.get("mode") == "memory"
    if in_memory:
        # Each connection to ":memory:" is a separate, empty database: share one.
        engine = create_async_engine(url, poolclass=StaticPool)
    else:
        Path(database).parent.mkdir(parents=True, exist_ok=True)
        # readers run beside the one writer (WAL): enough connections that a burst of
        # look-ups (CRM recognition on every lead) does not queue for the pool
        engine = create_async_engine(url, pool_size=10, max_overflow=20)
    event.listen(engine.sync_engine, "connect", sqlite_pragmas)
    if checkpointed_by_writer:
        event.listen(engine.sync_engine, "connect", checkpoint_backstop)
    return engine


def sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # SQLite's own lower() folds ASCII only, so a search (ILIKE: lower() LIKE lower()) for
    # "альфа" missed "Альфа" here, and found it on PostgreSQL
    dbapi_connection.create_function("lower", 1, _lower, deterministic=True)
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        # With WAL, NORMAL syncs at checkpoints only: commits still survive a killed process.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    finally:
        cursor.close()


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _postgres_engine(url: URL, schema: str | None) -> AsyncEngine:
    connect_args: dict[str, Any] = {"timeout": 10}
    if schema is not None:
        # the name lets an operator (or a test's clean-up) see which connections use the schema
        connect_args["server_settings"] = {"search_path": schema, "application_name": f"acd:{schema}"}
    # pre-ping: after a database restart or a cut link, pooled connections are dead; test
    # each before use so one outage does not fail the first request of every connection
    return create_async_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True, connect_args=connect_args)


async def _migrate_to_head(engine: AsyncEngine, schema: str | None) -> None:
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
            if schema is not None:
                await conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        await conn.run_sync(_upgrade_to_head)


def _upgrade_to_head(connection: Connection) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    # "heads": each feature (CRM, web accounts, e-mail...) adds its tables on its own branch
    # off the core revision, so features can land in any order without merge revisions.
    command.upgrade(config, "heads")


# ---- rows <-> core objects ----------------------------------------------------------


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _last_by_id(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    # PostgreSQL refuses an upsert that touches one row twice ("ON CONFLICT DO UPDATE
    # command cannot affect row a second time"), so keep only the latest copy.
    return list({row["id"]: row for row in rows}.values())


def _contact_row(c: Contact) -> dict[str, Any]:
    return {
        "id": c.id,
        "channel": Channel(c.channel).value,
        "arrived_at": c.arrived_at,
        "criteria": dict(c.criteria),
        "customer_id": c.customer_id,
        "customer_name": c.customer_name,
        "phone": c.phone,
        "email": c.email,
        "priority": c.priority,
        "language": c.language,
        "required_skills": sorted(c.required_skills),
        "preferred": list(c.preferred),
        "team": c.team,
        "first_wait": c.first_wait,
        "status": ContactStatus(c.status).value,
        "offered_to": c.offered_to,
        "offer_expires_at": c.offer_expires_at,
        "assigned_to": c.assigned_to,
        "declined_by": sorted(c.declined_by),
        "step": c.step,
        "step_since": c.step_since,
        "pinned_to": c.pinned_to,
        "pin_expires_at": c.pin_expires_at,
        "override": c.override,
        "outcome": None if c.outcome is None else Outcome(c.outcome).value,
        "finished_at": c.finished_at,
        "payload": dict(c.payload),
    }


def _rows(items: Sequence[tuple[Contact, str | None]]) -> list[tuple[Contact, dict[str, Any]]]:
    batch = []
    for contact, key in items:
        row = _contact_row(contact)
        row["idempotency_key"] = key
        batch.append((contact, row))
    return batch


def _write_contacts_if_new(
    conn: Connection, rows: list[dict[str, Any]], new_customers: Work
) -> tuple[dict[str, int], dict[str, Contact], set[str], dict[str, tuple[str | None, dict[str, Any]]]]:
    """`_write_contacts` after `new_customers` (which may fill in the rows' customer and
    payload), leaving out the contacts it names; also returns their ids, and the customer
    and payload of each contact that has a customer."""
    keys = [row["idempotency_key"] for row in rows if row["idempotency_key"] is not None]
    stored = (
        {key for (key,) in select_in(conn, t.contacts, ["idempotency_key"], "idempotency_key", keys)} if keys else set()
    )
    work, args = new_customers
    repeated = {row["id"] for row in rows if row["idempotency_key"] in stored}
    left_out: set[str] = work(conn, *args, rows=rows, repeated=repeated)
    kept = [row for row in rows if row["id"] not in left_out]
    seqs, existing = _write_contacts(conn, kept, None)
    filled = {row["id"]: (row["customer_id"], row["payload"]) for row in kept if row["customer_id"] is not None}
    return seqs, existing, left_out, filled


def _write_contacts(
    conn: Connection, rows: list[dict[str, Any]], also: Work | None
) -> tuple[dict[str, int], dict[str, Contact]]:
    """Insert new contacts' rows (after `also`'s); the seq of each row that went in (a
    repeated Idempotency-Key leaves its row out) and, by key, the contacts stored before
    under the keys that were repeated."""
    if also is not None:
        work, args = also
        work(conn, *args)
    insert_many(conn, t.contacts, rows, skip_conflicts_on="idempotency_key")
    c = t.contacts.c
    ids = [row["id"] for row in rows]
    seqs = {id_: int(seq) for id_, seq in select_in(conn, t.contacts, ["id", "seq"], "id", ids)}
    lost = [row["idempotency_key"] for row in rows if row["id"] not in seqs]
    if any(key is None for key in lost):
        raise Conflict("a contact id was reused")
    existing: dict[str, Contact] = {}
    if lost:
        for found in conn.execute(sa.select(t.contacts).where(c.idempotency_key.in_(lost))).mappings():
            existing[found["idempotency_key"]] = _contact_from_row(found)
    return seqs, existing


def _contact_from_row(row: sa.RowMapping) -> Contact:
    return Contact(
        id=row["id"],
        channel=Channel(row["channel"]),
        arrived_at=row["arrived_at"],
        seq=row["seq"],
        criteria=row["criteria"],
        customer_id=row["customer_id"],
        customer_name=row["customer_name"],
        phone=row["phone"],
        email=row["email"],
        priority=row["priority"],
        language=row["language"],
        required_skills=frozenset(row["required_skills"]),
        preferred=tuple(row["preferred"]),
        team=row["team"],
        first_wait=row["first_wait"],
        status=ContactStatus(row["status"]),
        offered_to=row["offered_to"],
        offer_expires_at=row["offer_expires_at"],
        assigned_to=row["assigned_to"],
        declined_by=frozenset(row["declined_by"]),
        step=row["step"],
        step_since=row["step_since"],
        pinned_to=row["pinned_to"],
        pin_expires_at=row["pin_expires_at"],
        override=bool(row["override"]),
        outcome=None if row["outcome"] is None else Outcome(row["outcome"]),
        finished_at=row["finished_at"],
        payload=row["payload"],
    )


def _manager_row(m: Manager) -> dict[str, Any]:
    return {
        "id": m.id,
        "name": m.name,
        "team": m.team,
        "skills": dict(m.skills),
        "languages": sorted(m.languages),
        "capacity": {Channel(ch).value: n for ch, n in m.capacity.items()},
        "device": m.device,
        "email": m.email,
        "sort_order": m.order,
        "daily_cap": m.daily_cap,
        "presence": Presence(m.presence).value,
        "pause_reason": m.pause_reason,
        "presence_since": m.presence_since,
        "load": {Channel(ch).value: n for ch, n in m.load.items()},
        "offer_contact_id": m.offer_contact_id,
        "missed_in_row": m.missed_in_row,
        "last_heartbeat": m.last_heartbeat,
        "last_finished_at": m.last_finished_at,
        "last_offered_at": m.last_offered_at,
        "day": m.day,
        "assigned_today": m.assigned_today,
        "handled_today": m.handled_today,
        "device_busy": m.device_busy,
        "active": m.active,
    }


def _manager_from_row(row: sa.RowMapping) -> Manager:
    return Manager(
        id=row["id"],
        name=row["name"],
        team=row["team"],
        skills=row["skills"],
        languages=frozenset(row["languages"]),
        capacity={Channel(ch): n for ch, n in row["capacity"].items()},
        device=row["device"],
        email=row["email"],
        order=row["sort_order"],
        daily_cap=row["daily_cap"],
        presence=Presence(row["presence"]),
        pause_reason=row["pause_reason"],
        presence_since=row["presence_since"],
        load={Channel(ch): n for ch, n in row["load"].items()},
        offer_contact_id=row["offer_contact_id"],
        missed_in_row=row["missed_in_row"],
        last_heartbeat=row["last_heartbeat"],
        last_finished_at=row["last_finished_at"],
        last_offered_at=row["last_offered_at"],
        day=row["day"],
        assigned_today=row["assigned_today"],
        handled_today=row["handled_today"],
        device_busy=bool(row["device_busy"]),
        active=bool(row["active"]),
    )


def _decision_row(d: Decision) -> dict[str, Any]:
    return {
        "id": d.id,
        "at": d.at,
        "contact_id": d.contact_id,
        "manager_id": d.manager_id,
        "kind": d.kind,
        "policy_version": d.policy_version,
        "strategy": d.strategy,
        "step": d.step,
        "pool": d.pool,
        "candidates": [
            {"manager_id": c.manager_id, "score": c.score, "components": dict(c.components)} for c in d.candidates
        ],
        "filtered": {reason: list(ids) for reason, ids in d.filtered.items()},
        "filtered_counts": dict(d.filtered_counts),
        "summary": d.summary,
        "shadow": None
        if d.shadow is None
        else {"version": d.shadow.version, "strategy": d.shadow.strategy, "manager_id": d.shadow.manager_id},
    }


def _decision_from_row(row: sa.RowMapping) -> Decision:
    return Decision(
        id=row["id"],
        at=row["at"],
        contact_id=row["contact_id"],
        manager_id=row["manager_id"],
        kind=row["kind"],
        policy_version=row["policy_version"],
        strategy=row["strategy"],
        step=row["step"],
        pool=row["pool"],
        candidates=tuple(
            Candidate(manager_id=c["manager_id"], score=c["score"], components=c["components"])
            for c in row["candidates"]
        ),
        filtered=row["filtered"],
        filtered_counts=row["filtered_counts"],
        summary=row["summary"],
        shadow=None if row["shadow"] is None else ShadowChoice(**row["shadow"]),
    )


def _transition_row(tr: Transition) -> dict[str, Any]:
    return {
        "manager_id": tr.manager_id,
        "at": tr.at,
        "old": Presence(tr.old).value,
        "new": Presence(tr.new).value,
        "reason": tr.reason,
        "cause": tr.cause,
    }


def _transition_from_row(row: sa.RowMapping) -> Transition:
    return Transition(
        manager_id=row["manager_id"],
        at=row["at"],
        old=Presence(row["old"]),
        new=Presence(row["new"]),
        reason=row["reason"],
        cause=row["cause"],
    )


# ---- a customer's erasure (acd.crm.erasure; the transaction is acd.storage.crm.erase_customer_rows)


@contextmanager
def secure_delete(conn: Connection) -> Iterator[None]:
    """SQLite: within the block, what a statement frees or rewrites (a row's old cell, an index
    entry, a page) is overwritten with zeros, not left in the file for the next write to reuse;
    as it was after (zeroing costs every other write I/O). Elsewhere nothing."""
    if conn.dialect.name != "sqlite":
        yield
        return
    was = conn.exec_driver_sql("PRAGMA secure_delete").scalar()
    conn.exec_driver_sql("PRAGMA secure_delete=1")
    try:
        yield
    finally:
        conn.exec_driver_sql(f"PRAGMA secure_delete={int(was or 0)}")


def truncate_log(conn: Connection, wait_ms: int) -> bool:
    """SQLite: copy the whole write-ahead log into the database file and cut the log to
    nothing, so the old page images in it go; False when a reader or writer kept it from
    finishing within `wait_ms`. Run outside a transaction (a PRAGMA starts none)."""
    conn.exec_driver_sql(f"PRAGMA busy_timeout={int(wait_ms)}")
    try:
        row = conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").first()
    finally:
        conn.exec_driver_sql(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    return row is not None and row[0] == 0


def scrub_rows(
    conn: Connection,
    table: sa.Table,
    where: sa.ColumnElement[bool],
    columns: Mapping[str, Callable[[Any], Any]],
) -> int:
    """Rewrite `columns` of `table`'s rows matching `where`, each through its function;
    the number of rows that changed. Rows are keyed by the table's primary key."""
    key = list(table.primary_key.columns)
    changed = 0
    for row in conn.execute(sa.select(*key, *(table.c[name] for name in columns)).where(where)).mappings().all():
        new = {name: rewrite(row[name]) for name, rewrite in columns.items()}
        if all(new[name] == row[name] for name in columns):
            continue
        conn.execute(table.update().where(*(col == row[col.name] for col in key)).values(new))
        changed += 1
    return changed


def contacts_of_person(customer_id: str, phones: Collection[str], emails: Collection[str]) -> sa.ColumnElement[bool]:
    """The contacts of a customer: theirs by id, and those nobody was recognised for (from
    before the CRM, a failed look-up) with one of their phones or e-mails."""
    c = t.contacts.c
    unknown = sa.or_(c.phone.in_(list(phones)), sa.func.lower(c.email).in_(list(emails)))
    return sa.or_(c.customer_id == customer_id, sa.and_(c.customer_id.is_(None), unknown))


def live_contacts_of(conn: Connection, who: sa.ColumnElement[bool]) -> list[str]:
    c = t.contacts.c
    return [cid for (cid,) in conn.execute(sa.select(c.id).where(who, c.status.in_(_OPEN_STATUSES)))]


def erase_contacts(
    conn: Connection, who: sa.ColumnElement[bool], payload: Callable[[Any], Any]
) -> tuple[list[str], set[str]]:
    """Blank the name, phone and e-mail of the contacts `who` picks and pass their payloads
    through `payload`; their ids, and the names, phones and e-mails they held (to take out of
    free text elsewhere). Their customer, channel, times, handler and outcome stay."""
    c = t.contacts.c
    rows = conn.execute(sa.select(c.id, c.customer_name, c.phone, c.email).where(who)).all()
    ids = [row.id for row in rows]
    seen = {value for row in rows for value in (row.customer_name, row.phone, row.email) if value}
    for i in range(0, len(ids), 500):
        part = ids[i : i + 500]
        scrub_rows(conn, t.contacts, c.id.in_(part), {"payload": payload})
        conn.execute(t.contacts.update().where(c.id.in_(part)).values(customer_name="", phone="", email=""))
    return ids, seen


def scrub_logs(conn: Connection, contact_ids: Sequence[str], targets: Sequence[str], text: Callable[[Any], Any]) -> int:
    """Take the customer's words out of the decision log about their contacts and the audit
    entries about them or their contacts (the external CRM's outbox: acd.storage.crm_sync)."""
    changed = 0
    for i in range(0, max(len(contact_ids), 1), 500):
        part = list(contact_ids[i : i + 500])
        d = t.decisions.c
        changed += scrub_rows(conn, t.decisions, d.contact_id.in_(part), {"summary": text, "filtered": text})
        changed += scrub_rows(conn, t.audit, t.audit.c.target.in_([*targets, *part]), {"detail": text})
    return changed


def add_audit(conn: Connection, at: float, actor: str, action: str, target: str, detail: Mapping[str, Any]) -> None:
    conn.execute(
        t.audit.insert(), {"at": at, "actor": actor, "action": action, "target": target, "detail": dict(detail)}
    )
