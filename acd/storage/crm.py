"""Storage: the CRM's tables and repository (customers, their phone/e-mail keys, deals,
the customer and deal history, vacations), on the engine and write queue of `Store`.

The tables join the shared `acd.storage.tables.metadata`, so the schema check sees them
as soon as this module is imported; migration 0003_crm (branch "crm") builds them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from acd.core.model import Contact
from acd.crm import identity
from acd.crm.erasure import ERASED, Kept, Traces, neutral_payload, scrub, words_of
from acd.crm.model import CrmEvent, Customer, Deal, DealStatus, Vacation
from acd.crm.ratings import Lead
from acd.storage import crm_sync, messaging, telephony
from acd.storage import store as st
from acd.storage import tables as t
from acd.storage.bulk import insert_many, select_in
from acd.storage.store import Conflict, StorageError, Store, Work, _contact_from_row

_serial = t._serial
T = TypeVar("T")
JSONText = t.JSONText

log = logging.getLogger(__name__)

EXPORT_PAGE = 1000  # customers per query of an export
# After an erasure, SQLite's log is cut once no reader is in the middle of a query: each
# attempt waits for them LOG_WAIT_MS, holding the server's writes back that long at most.
LOG_ATTEMPTS = 3
LOG_WAIT_MS = 500
LOG_PAUSE_S = 0.2

customers = sa.Table(
    "crm_customers",
    t.metadata,
    sa.Column("id", sa.String(), primary_key=True),
    sa.Column("name", sa.Text(), nullable=False),
    sa.Column("kind", sa.String(), nullable=False),
    sa.Column("account_manager", sa.String(), nullable=True),
    sa.Column("pinned_to", sa.String(), nullable=True),
    sa.Column("criteria", JSONText(), nullable=False),
    sa.Column("note", sa.Text(), nullable=False),
    sa.Column("created_at", sa.Double(), nullable=False),
    sa.Index(None, "account_manager", **t.not_null("account_manager")),  # a new customer has none
    # the list and the export's pages, newest first (migration 0014); a new customer's entry goes at the end
    sa.Index(None, "created_at", "id"),
)

# One row per phone number (E.164) or e-mail address (lower case): recognition is one
# primary-key lookup, and one number can never belong to two customers.
customer_keys = sa.Table(
    "crm_customer_keys",
    t.metadata,
    sa.Column("kind", sa.String(), primary_key=True),
    sa.Column("value", sa.String(), primary_key=True),
    sa.Column("customer_id", sa.String(), nullable=False),
    sa.Index(None, "customer_id"),
)

deals = sa.Table(
    "crm_deals",
    t.metadata,
    sa.Column("id", sa.String(), primary_key=True),
    sa.Column("customer_id", sa.String(), nullable=False),
    sa.Column("title", sa.Text(), nullable=False),
    sa.Column("amount", sa.Double(), nullable=True),
    sa.Column("segment", JSONText(), nullable=False),
    sa.Column("owner", sa.String(), nullable=True),
    sa.Column("stage", sa.String(), nullable=False),
    sa.Column("stage_owner", sa.String(), nullable=True),
    sa.Column("status", sa.String(), nullable=False),
    sa.Column("opened_at", sa.Double(), nullable=False),
    sa.Column("stage_since", sa.Double(), nullable=False),
    sa.Column("last_activity", sa.Double(), nullable=False),
    sa.Column("closed_at", sa.Double(), nullable=True),
    sa.Column("contact_id", sa.String(), nullable=True),
    sa.Column("override", sa.Boolean(), nullable=False),
    sa.Column("source", sa.String(), nullable=False),
    sa.Column("lost_reason", sa.Text(), nullable=False),
    sa.Index(None, "customer_id", "status"),
    sa.Index(None, "owner", "status"),
    sa.Index(None, "contact_id"),
    sa.Index(None, "opened_at", "id"),  # the list and the export, in order without sorting every deal (0014)
    sa.Index(None, "closed_at", **t.not_null("closed_at")),  # the report's leaders (0016)
)

events = sa.Table(
    "crm_events",
    t.metadata,
    sa.Column("n", _serial(), sa.Identity(), primary_key=True),
    sa.Column("at", sa.Double(), nullable=False),
    sa.Column("customer_id", sa.String(), nullable=False),
    sa.Column("deal_id", sa.String(), nullable=True),
    sa.Column("kind", sa.String(), nullable=False),
    sa.Column("stage", sa.String(), nullable=True),
    sa.Column("manager_id", sa.String(), nullable=True),
    sa.Column("by", sa.String(), nullable=False),
    sa.Column("detail", JSONText(), nullable=False),
    sa.Index(None, "customer_id", "at"),
    sa.Index(None, "deal_id", "at", **t.not_null("deal_id")),  # "created" and the like are a customer's
    sqlite_autoincrement=True,
)

vacations = sa.Table(
    "crm_vacations",
    t.metadata,
    sa.Column("n", _serial(), sa.Identity(), primary_key=True),
    sa.Column("manager_id", sa.String(), nullable=False),
    sa.Column("starts_at", sa.Double(), nullable=False),
    sa.Column("ends_at", sa.Double(), nullable=False),
    sa.Column("substitute", sa.String(), nullable=True),
    sa.Column("note", sa.Text(), nullable=False),
    sa.Index(None, "manager_id", "ends_at"),
    sqlite_autoincrement=True,
)


class _Key(NamedTuple):
    kind: str
    value: str
    customer_id: str


def _look_up_keys(
    conn: Connection, wanted: list[tuple[str, str]], with_customers: bool = True
) -> tuple[list[_Key], list[dict[str, Any]], list[_Key]]:
    """The key rows of `wanted` (kind, value) keys; with `with_customers`, also their customers'
    rows and all the keys those customers hold."""
    k = customer_keys.c
    hits: list[_Key] = []
    for kind in ("phone", "email"):  # one indexed (kind, value) look-up each: an OR would scan
        values = [value for held_kind, value in wanted if held_kind == kind]
        if values:
            found = select_in(conn, customer_keys, ["kind", "value", "customer_id"], "value", values, {"kind": kind})
            hits += [_Key(*row) for row in found]
    ids = sorted({key.customer_id for key in hits})
    if not ids or not with_customers:
        return hits, [], []
    rows = [dict(row) for row in conn.execute(sa.select(customers).where(customers.c.id.in_(ids))).mappings()]
    query = sa.select(k.kind, k.value, k.customer_id).where(k.customer_id.in_(ids))
    return hits, rows, [_Key(*row) for row in conn.execute(query)]


def _look_up_people(
    conn: Connection, wanted: list[tuple[str, str]]
) -> tuple[list[_Key], list[dict[str, Any]], list[_Key], list[dict[str, Any]]]:
    """`_look_up_keys`, and the rows of the deals of the customers found, newest first."""
    hits, rows, held = _look_up_keys(conn, wanted)
    ids = sorted({row["id"] for row in rows})
    if not ids:
        return hits, rows, held, []
    query = sa.select(deals).where(deals.c.customer_id.in_(ids)).order_by(deals.c.opened_at.desc())
    return hits, rows, held, [dict(row) for row in conn.execute(query).mappings()]


def _write_rows(
    conn: Connection,
    customer_rows: list[dict[str, Any]],
    key_rows: list[dict[str, Any]],
    deal_rows: list[dict[str, Any]],
    event_rows: list[dict[str, Any]],
) -> None:
    insert_many(conn, customers, customer_rows)
    insert_many(conn, customer_keys, key_rows)
    if deal_rows:
        conn.execute(_deal_upsert(conn.dialect.name), deal_rows)
    insert_many(conn, events, event_rows)


def _write_new_people(
    conn: Connection, region: str, now: float, *, rows: list[dict[str, Any]], repeated: set[str]
) -> set[str]:
    """In the intake's transaction (acd.storage.store.Store.create_contacts_if_new), before
    its contact `rows` are written: make their people customers, as CrmService.prepare_many
    would with nobody known (identity.owners), and write those whose phones and e-mails
    nobody holds, filling in their rows' customer. Returns the ids of the contacts whose
    customer somebody already is, to be left out. A contact that repeats a stored form
    (its id in `repeated`) is answered by the stored one: its customer is not made."""
    keys = [identity.keys(row["phone"], row["email"], region) for row in rows]

    def new(i: int) -> Customer:
        phone = next((v for kind, v in keys[i] if kind == "phone"), None)
        email = next((v for kind, v in keys[i] if kind == "email"), None)
        return identity.stranger(rows[i]["customer_name"], rows[i]["criteria"], phone, email, now)

    owners = identity.owners(keys, {}, new)
    keys_of: dict[str, list[tuple[str, str]]] = {}
    for held_keys, owner in zip(keys, owners, strict=True):
        if owner is not None:
            keys_of.setdefault(owner.id, []).extend(held_keys)
    held = _known(conn, keys_of) | {o.id for row, o in zip(rows, owners, strict=True) if o and row["id"] in repeated}
    left_out: set[str] = set()
    fresh: dict[str, Customer] = {}
    for row, owner in zip(rows, owners, strict=True):
        if owner is None:
            continue
        if owner.id in held:
            if row["id"] not in repeated:
                left_out.add(row["id"])
            continue
        fresh[owner.id] = owner
        row["customer_id"] = owner.id
        row["payload"] = identity.as_new_customers(row["payload"])
    made = list(fresh.values())
    history = [_event_row(CrmEvent(now, c.id, "created", by="intake")) for c in made]
    _write_rows(conn, [_customer_row(c) for c in made], _key_rows(made), [], history)
    return left_out


def _known(conn: Connection, keys_of: dict[str, list[tuple[str, str]]]) -> set[str]:
    """The customers of `keys_of` with a key somebody holds."""
    wanted = list({key for keys in keys_of.values() for key in keys})
    taken = {(key.kind, key.value) for key in _look_up_keys(conn, wanted, with_customers=False)[0]}
    return {customer for customer, keys in keys_of.items() if not taken.isdisjoint(keys)} if taken else set()


def _lead(r: sa.RowMapping) -> Lead:
    return Lead(r["id"], r["assigned_to"], r["criteria"] or {}, r["arrived_at"])


def _deal_upsert(dialect: str) -> Any:
    statement = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(deals)
    updated = {c.name: statement.excluded[c.name] for c in deals.c if c.name != "id"}
    return statement.on_conflict_do_update(index_elements=["id"], set_=updated)


class CrmStore:
    """The CRM repository. Every write returns after its transaction committed."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._insert: Any = store._insert
        self._upsert_deal = _deal_upsert(store.backend)

    # ---- customers ----------------------------------------------------------------

    async def find_customer(self, phones: Iterable[str] = (), emails: Iterable[str] = ()) -> Customer | None:
        """The customer holding any of these (normalised) phones or e-mails; phones first.
        One connection for the whole look-up: it runs on every new contact."""
        keys = [("phone", p) for p in phones if p] + [("email", e) for e in emails if e]
        if not keys:
            return None
        k = customer_keys.c
        async with self._store._read() as conn:
            for kind, value in keys:
                found = (await conn.execute(sa.select(k.customer_id).where(k.kind == kind, k.value == value))).first()
                if found is None:
                    continue
                row = (await conn.execute(sa.select(customers).where(customers.c.id == found[0]))).mappings().first()
                if row is None:
                    return None
                held = (await conn.execute(sa.select(customer_keys).where(k.customer_id == found[0]))).all()
                return _customer(row, held)
        return None

    async def people_by_keys(
        self, phones: Iterable[str] = (), emails: Iterable[str] = ()
    ) -> tuple[dict[tuple[str, str], Customer], dict[str, list[Deal]]]:
        """Every customer holding one of these phones or e-mails, by ("phone"|"email", value),
        and each one's deals, newest first: the look-up of a whole intake batch, in one round
        trip (to the writer process where there is one: the intake's critical path is there,
        and the event loop's own connection costs it more)."""
        wanted = [("phone", p) for p in set(phones) if p] + [("email", e) for e in set(emails) if e]
        if not wanted:
            return {}, {}
        hits, rows, held, deal_rows = await self._store._read_batch(_look_up_people, wanted)
        keys_of: dict[str, list[Any]] = {}
        for key in held:
            keys_of.setdefault(key.customer_id, []).append(key)
        loaded = {r["id"]: _customer(r, keys_of.get(r["id"], [])) for r in rows}
        deals_of: dict[str, list[Deal]] = {i: [] for i in loaded}
        for r in deal_rows:
            deals_of[r["customer_id"]].append(_deal(r))
        return {(h.kind, h.value): loaded[h.customer_id] for h in hits if h.customer_id in loaded}, deals_of

    async def get_customer(self, customer_id: str) -> Customer | None:
        async with self._store._read() as conn:
            row = (await conn.execute(sa.select(customers).where(customers.c.id == customer_id))).mappings().first()
            if row is None:
                return None
            by_id = sa.select(customer_keys).where(customer_keys.c.customer_id == customer_id)
            keys = (await conn.execute(by_id)).all()
        return _customer(row, keys)

    async def list_customers(
        self,
        query: str | None = None,
        account_manager: str | None = None,
        limit: int = 100,
        offset: int = 0,
        *,
        after: tuple[float, str] | None = None,
    ) -> list[Customer]:
        """Newest first, then by id. `after` (a customer's created_at and id) starts the list
        past that customer."""
        c = customers.c
        select = sa.select(customers).order_by(c.created_at.desc(), c.id).limit(limit).offset(offset)
        if after is not None:
            # customers made by one intake batch share their created_at: among them, the greater ids
            at, customer_id = after
            select = select.where(c.created_at <= at, sa.or_(c.created_at < at, c.id > customer_id))
        if query:
            # the words as typed: "50%" or "a_b" are no wildcards to the person searching
            literal = query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            select = select.where(c.name.ilike(f"%{literal}%", escape="\\"))
        if account_manager:
            select = select.where(c.account_manager == account_manager)
        async with self._store._read() as conn:
            rows = (await conn.execute(select)).mappings().all()
            ids = [r["id"] for r in rows]
            keys = (
                (await conn.execute(sa.select(customer_keys).where(customer_keys.c.customer_id.in_(ids)))).all()
                if ids
                else []
            )
        by_customer: dict[str, list[Any]] = {}
        for k in keys:
            by_customer.setdefault(k.customer_id, []).append(k)
        return [_customer(r, by_customer.get(r["id"], [])) for r in rows]

    async def all_customers(self) -> AsyncIterator[Customer]:
        """Every customer, in `list_customers`' order, a page at a time. Each page starts
        after the last one's final customer: an OFFSET had the database sort and skip every
        customer before the page (an export of 150,000 took two minutes), and a customer
        made during the export moved the later pages, so that one was exported twice."""
        after = None
        while batch := await self.list_customers(limit=EXPORT_PAGE, after=after):
            for c in batch:
                yield c
            after = (batch[-1].created_at, batch[-1].id)

    async def save_customer(self, customer: Customer, *, new: bool, event: CrmEvent | None = None) -> None:
        """Insert (`new`) or update a customer with exactly its phones and e-mails. A phone
        or e-mail already held by another customer raises `Conflict`; nothing is written."""
        row = _customer_row(customer)
        keys = _key_rows([customer])
        async with self._store._write() as conn:
            if new:
                await conn.execute(customers.insert(), row)
            else:
                result = await conn.execute(customers.update().where(customers.c.id == customer.id), row)
                if result.rowcount != 1:
                    raise Conflict(f"no customer {customer.id}")
                await conn.execute(customer_keys.delete().where(customer_keys.c.customer_id == customer.id))
            if keys:
                await conn.execute(customer_keys.insert(), keys)
            if event is not None:
                await conn.execute(events.insert(), _event_row(event))

    async def customers_of(self, manager_id: str) -> list[tuple[str, str | None, str | None]]:
        """The customers `manager_id` is the account manager of or pinned to, as (id,
        account_manager, pinned_to). (No index holds pins: a rotation, a few times a year,
        reads the table through.)"""
        c = customers.c
        query = sa.select(c.id, c.account_manager, c.pinned_to).where(
            sa.or_(c.account_manager == manager_id, c.pinned_to == manager_id)
        )
        return [(r["id"], r["account_manager"], r["pinned_to"]) for r in await self._store._rows(query)]

    async def contacts_of(self, customer_id: str, limit: int = 50) -> list[Contact]:
        c = t.contacts.c
        query = sa.select(t.contacts).where(c.customer_id == customer_id).order_by(c.seq.desc()).limit(limit)
        return [_contact_from_row(r) for r in await self._store._rows(query)]

    async def leads(self, as_of: float | None = None, age: float = 0.0) -> list[Lead]:
        """New customers' contacts a manager took, not placed by a supervisor (ratings count
        those that never became a deal); with `as_of`, only those `age` seconds old by then.

        The database leaves out the rest: most contacts of a year are repeat customers' or
        deals' (hundreds of thousands), and fetching and decoding them held the event loop
        for seconds. What is left comes in slices, each a few milliseconds of the loop."""
        c = t.contacts.c

        def payload_text(key: str) -> sa.ColumnElement[Any]:
            if self._store.backend == "postgresql":
                # JSON kept as text (tables.JSONText). Reading one key de-escapes every string,
                # and no PostgreSQL text holds the \u0000 a note may have: read it as a space.
                payload = sa.func.replace(c.payload, "\\u0000", "\\u0020")
                return sa.cast(payload, postgresql.JSON)[key].astext
            return sa.func.json_extract(c.payload, f"$.{key}")

        query = sa.select(c.id, c.assigned_to, c.criteria, c.arrived_at).where(
            c.customer_id.is_not(None),
            c.assigned_to.is_not(None),
            c.override.is_(False),
            # not routed to an open deal or to a repeat customer's people (CrmService._as_repeat,
            # which sets a deal_id only when there is one: never an empty one)
            sa.func.coalesce(payload_text("deal_id"), "") == "",
            sa.func.coalesce(payload_text("routed_by"), "") != "repeat",
        )
        if as_of is not None:
            query = query.where(c.arrived_at + age <= as_of)  # the test `ratings.opportunities` makes
        return await self._in_slices(
            query, lambda r: Lead(r["id"], r["assigned_to"], r["criteria"] or {}, r["arrived_at"])
        )

    # ---- deals and history --------------------------------------------------------

    async def save_deals(self, changed: Sequence[Deal], history: Sequence[CrmEvent] = ()) -> None:
        """Upsert deals and append their history lines in one transaction."""
        async with self._store._write() as conn:
            if changed:
                await conn.execute(self._upsert_deal, [_deal_row(d) for d in changed])
            if history:
                await conn.execute(events.insert(), [_event_row(e) for e in history])

    async def save_customers_and_deals(
        self, new_customers: Sequence[Customer], changed: Sequence[Deal], history: Sequence[CrmEvent]
    ) -> None:
        """An import batch: customers (new), deals (upserted) and history, all or nothing."""
        work, args = self.rows_to_write(new_customers, changed, history)
        await self._store._write_batch(work, *args)

    def rows_to_write(
        self, new_customers: Sequence[Customer], changed: Sequence[Deal] = (), history: Sequence[CrmEvent] = ()
    ) -> Work:
        """The same as work for a transaction someone else holds (the intake's, so that a
        new customer commits together with the contact that made them)."""
        rows = [_customer_row(c) for c in new_customers]
        return _write_rows, (
            rows,
            _key_rows(new_customers),
            [_deal_row(d) for d in changed],
            [_event_row(e) for e in history],
        )

    def new_people_work(self, region: str, now: float) -> Work:
        """The work that makes and writes the customers of an intake batch's new people, in
        the batch's transaction (`_write_new_people`)."""
        return _write_new_people, (region, now)

    async def get_deal(self, deal_id: str) -> Deal | None:
        row = await self._store._row(sa.select(deals).where(deals.c.id == deal_id))
        return None if row is None else _deal(row)

    async def deals_by_ids(self, ids: Iterable[str]) -> dict[str, Deal]:
        """The stored deals among `ids`, by id (an import's rows that update a deal)."""
        wanted = sorted(set(ids))
        out: dict[str, Deal] = {}
        async with self._store._read() as conn:
            for i in range(0, len(wanted), EXPORT_PAGE):
                query = sa.select(deals).where(deals.c.id.in_(wanted[i : i + EXPORT_PAGE]))
                out.update((r["id"], _deal(r)) for r in (await conn.execute(query)).mappings())
        return out

    async def deals_of(self, customer_id: str) -> list[Deal]:
        query = sa.select(deals).where(deals.c.customer_id == customer_id).order_by(deals.c.opened_at.desc())
        return [_deal(r) for r in await self._store._rows(query)]

    async def deal_from_contact(self, contact_id: str) -> Deal | None:
        row = await self._store._row(sa.select(deals).where(deals.c.contact_id == contact_id).limit(1))
        return None if row is None else _deal(row)

    async def list_deals(
        self,
        status: str | None = None,
        owner: str | None = None,
        customer_id: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Deal]:
        c = deals.c
        query = sa.select(deals).order_by(c.opened_at.desc(), c.id).limit(limit).offset(offset)
        if status:
            query = query.where(c.status == DealStatus(status).value)
        if owner:
            query = query.where(sa.or_(c.owner == owner, c.stage_owner == owner))
        if customer_id:
            query = query.where(c.customer_id == customer_id)
        return [_deal(r) for r in await self._store._rows(query)]

    async def closed_deals(self, since: float, until: float) -> list[Deal]:
        """The deals won or lost in [since, until), by closing time."""
        c = deals.c
        query = sa.select(deals).where(c.closed_at >= since, c.closed_at < until, c.status != DealStatus.OPEN.value)
        return [_deal(r) for r in await self._store._rows(query.order_by(c.closed_at, c.id))]

    async def all_deals(self) -> list[Deal]:
        """Oldest first, fetched in slices: a year's deals in one piece held the event loop a third
        of a second."""
        return await self._in_slices(sa.select(deals).order_by(deals.c.opened_at, deals.c.id), _deal)

    async def _in_slices(self, query: sa.Select[Any], row_to: Callable[[sa.RowMapping], T]) -> list[T]:
        """Every row of `query`, fetched a thousand at a time: each slice holds the event loop
        for milliseconds, where the whole of a year's rows held it for seconds."""
        out: list[T] = []
        async with self._store._read() as conn:
            async for rows in (await conn.stream(query)).mappings().partitions(1000):
                out += [row_to(r) for r in rows]
        return out

    async def history(self, customer_id: str | None = None, deal_id: str | None = None) -> list[CrmEvent]:
        """Oldest first."""
        query = sa.select(events).order_by(events.c.at, events.c.n)
        if customer_id:
            query = query.where(events.c.customer_id == customer_id)
        if deal_id:
            query = query.where(events.c.deal_id == deal_id)
        return [_event(r) for r in await self._store._rows(query)]

    async def reassign(
        self,
        leaving: str,
        heirs: Sequence[tuple[str, str]],
        changed: Sequence[Deal],
        history: Sequence[CrmEvent],
    ) -> None:
        """A rotation: each (customer id, heir) of `heirs` has the heir for account manager
        and pin where `leaving` was either, and the open deals and the history are written,
        all at once. A customer whom someone gave another manager meanwhile keeps them."""
        c = customers.c
        async with self._store._write() as conn:
            for cid, manager in heirs:
                for column in (c.account_manager, c.pinned_to):
                    moved = customers.update().where(c.id == cid, column == leaving).values({column.name: manager})
                    await conn.execute(moved)
            if changed:
                await conn.execute(self._upsert_deal, [_deal_row(d) for d in changed])
            if history:
                await conn.execute(events.insert(), [_event_row(e) for e in history])

    async def erase_customer(
        self, customer_id: str, by: str, reason: str, at: float
    ) -> tuple[str, list[str], dict[str, int], Traces]:
        """`erase_customer_rows` in one transaction."""
        return await self._store._write_batch(erase_customer_rows, customer_id, by, reason, at)

    async def drop_old_values(self) -> list[Kept]:
        """After an erasure: a SQLite file's write-ahead log, which still holds the pages as
        they were before it, copied into the file (whose freed cells the erasure zeroed) and
        cut to nothing. Readers in the middle of a query hold it: it is tried LOG_ATTEMPTS
        times, and a log still kept is reported. PostgreSQL keeps the old row versions until
        its (auto)vacuum reuses their space: nothing heavy is run for it here."""
        path = self._store._engine.url.database
        if self._store.backend != "sqlite" or self._store._one_connection or not path:
            return []
        why = "another connection kept it busy"
        for attempt in range(LOG_ATTEMPTS):
            if attempt:
                await asyncio.sleep(LOG_PAUSE_S)  # without the write lock: the server writes on
            try:
                if await self._store._write_batch(st.truncate_log, LOG_WAIT_MS):
                    return []
            except StorageError as err:
                why = str(err)
        log.warning("the write-ahead log of %s could not be checkpointed after an erasure: %s", path, why)
        return [Kept(f"{path}-wal", f"the database's log still holds old values until its next checkpoint ({why})")]

    # ---- vacations ----------------------------------------------------------------

    async def add_vacation(self, v: Vacation) -> Vacation:
        row = {
            "manager_id": v.manager_id,
            "starts_at": v.starts_at,
            "ends_at": v.ends_at,
            "substitute": v.substitute,
            "note": v.note,
        }
        async with self._store._write() as conn:
            result = await conn.execute(vacations.insert(), row)
            n = result.inserted_primary_key[0] if result.inserted_primary_key else 0
        return Vacation(int(n), v.manager_id, v.starts_at, v.ends_at, v.substitute, v.note)

    async def list_vacations(self, manager_id: str | None = None, ending_after: float | None = None) -> list[Vacation]:
        c = vacations.c
        query = sa.select(vacations).order_by(c.starts_at, c.n)
        if manager_id:
            query = query.where(c.manager_id == manager_id)
        if ending_after is not None:
            query = query.where(c.ends_at > ending_after)
        return [
            Vacation(r["n"], r["manager_id"], r["starts_at"], r["ends_at"], r["substitute"], r["note"])
            for r in await self._store._rows(query)
        ]

    async def delete_vacation(self, n: int) -> bool:
        async with self._store._write() as conn:
            result = await conn.execute(vacations.delete().where(vacations.c.n == n))
        return bool(result.rowcount == 1)


def _customer_row(c: Customer) -> dict[str, Any]:
    return {
        "id": c.id,
        "name": c.name,
        "kind": c.kind,
        "account_manager": c.account_manager,
        "pinned_to": c.pinned_to,
        "criteria": dict(c.criteria),
        "note": c.note,
        "created_at": c.created_at,
    }


def _key_rows(held: Iterable[Customer]) -> list[dict[str, str]]:
    """The phone and e-mail rows that make customers findable."""
    return [
        {"kind": kind, "value": value, "customer_id": c.id}
        for c in held
        for kind, values in (("phone", c.phones), ("email", c.emails))
        for value in values
    ]


def _customer(row: Mapping[str, Any] | sa.RowMapping, keys: Iterable[Any]) -> Customer:
    keys = list(keys)
    return Customer(
        id=row["id"],
        name=row["name"],
        kind=row["kind"],
        phones=tuple(sorted(k.value for k in keys if k.kind == "phone")),
        emails=tuple(sorted(k.value for k in keys if k.kind == "email")),
        account_manager=row["account_manager"],
        pinned_to=row["pinned_to"],
        criteria=row["criteria"] or {},
        note=row["note"],
        created_at=row["created_at"],
    )


def _deal_row(d: Deal) -> dict[str, Any]:
    return {
        "id": d.id,
        "customer_id": d.customer_id,
        "title": d.title,
        "amount": d.amount,
        "segment": dict(d.segment),
        "owner": d.owner,
        "stage": d.stage,
        "stage_owner": d.stage_owner,
        "status": d.status.value,
        "opened_at": d.opened_at,
        "stage_since": d.stage_since,
        "last_activity": d.last_activity,
        "closed_at": d.closed_at,
        "contact_id": d.contact_id,
        "override": d.override,
        "source": d.source,
        "lost_reason": d.lost_reason,
    }


def _deal(r: Mapping[str, Any] | sa.RowMapping) -> Deal:
    return Deal(
        id=r["id"],
        customer_id=r["customer_id"],
        title=r["title"],
        amount=r["amount"],
        segment=r["segment"] or {},
        owner=r["owner"],
        stage=r["stage"],
        stage_owner=r["stage_owner"],
        status=DealStatus(r["status"]),
        opened_at=r["opened_at"],
        stage_since=r["stage_since"],
        last_activity=r["last_activity"],
        closed_at=r["closed_at"],
        contact_id=r["contact_id"],
        override=bool(r["override"]),
        source=r["source"],
        lost_reason=r["lost_reason"],
    )


def _event_row(e: CrmEvent) -> dict[str, Any]:
    return {
        "at": e.at,
        "customer_id": e.customer_id,
        "deal_id": e.deal_id,
        "kind": e.kind,
        "stage": e.stage,
        "manager_id": e.manager_id,
        "by": e.by,
        "detail": dict(e.detail),
    }


def _event(r: sa.RowMapping) -> CrmEvent:
    return CrmEvent(
        at=r["at"],
        customer_id=r["customer_id"],
        kind=r["kind"],
        deal_id=r["deal_id"],
        stage=r["stage"],
        manager_id=r["manager_id"],
        by=r["by"],
        detail=r["detail"] or {},
    )


def erase_customer_rows(
    conn: Connection, customer_id: str, by: str, reason: str, at: float
) -> tuple[str, list[str], dict[str, int], Traces]:
    """`_erase_customer_rows` with SQLite zeroing what it frees or rewrites (st.secure_delete),
    so the old values stay neither in the file's free space nor in the log's new pages."""
    with st.secure_delete(conn):
        return _erase_customer_rows(conn, customer_id, by, reason, at)


def _erase_customer_rows(
    conn: Connection, customer_id: str, by: str, reason: str, at: float
) -> tuple[str, list[str], dict[str, int], Traces]:
    """A customer's erasure (acd.crm.erasure), all in the caller's transaction: ("erased" or
    "again", their contacts' ids, rows changed by place, where they may be outside the
    database); ("live", the live contacts' ids, {}, none) with nothing written;
    ("no_such_customer", [], {}, none).

    The customer keeps their id, kind, criteria and managers, and is named ERASED; their
    phones and e-mails are forgotten (the next lead from that number is a new customer);
    their contacts lose name, number, address and what was written; deals keep amounts and
    outcomes (their titles lose the customer's words); every log, and the cluster's event
    and effect tables, lose the customer's words."""
    row = conn.execute(sa.select(customers).where(customers.c.id == customer_id)).mappings().first()
    if row is None:
        return "no_such_customer", [], {}, Traces()
    k, c = customer_keys.c, t.contacts.c
    keys = conn.execute(sa.select(k.kind, k.value).where(k.customer_id == customer_id)).all()
    phones = {value for kind, value in keys if kind == "phone"}
    emails = {value.lower() for kind, value in keys if kind == "email"}
    # the numbers and addresses as the contacts wrote them ("8 916 ..."), to find unlinked ones
    for phone, email in conn.execute(sa.select(c.phone, c.email).where(c.customer_id == customer_id)).all():
        phones |= {phone} if phone else set()
        emails |= {email.lower()} if email else set()
    who = st.contacts_of_person(customer_id, phones, emails)
    linked = [cid for (cid,) in conn.execute(sa.select(c.id).where(who))]
    live = set(st.live_contacts_of(conn, who)) | set(telephony.open_callbacks_of(conn, linked, phones))
    if live:
        return "live", sorted(live), {}, Traces()
    again = conn.execute(
        sa.select(events.c.n).where(events.c.customer_id == customer_id, events.c.kind == "erased").limit(1)
    ).first()
    m = messaging.email_messages.c
    subjects = [s for (s,) in conn.execute(sa.select(m.subject).where(m.contact_id.in_(linked)))] if linked else []
    payloads = [p or {} for (p,) in conn.execute(sa.select(c.payload).where(who))]
    ids, seen = st.erase_contacts(conn, who, lambda p: neutral_payload(p or {}))
    words = words_of([row["name"]], phones, emails, seen, subjects)

    def text(value: Any) -> Any:
        return scrub(value, words)

    changed: dict[str, int] = {"contacts": len(ids)}
    changed["customers"] = conn.execute(
        customers.update().where(customers.c.id == customer_id).values(name=ERASED, note="")
    ).rowcount
    changed["customer_keys"] = conn.execute(customer_keys.delete().where(k.customer_id == customer_id)).rowcount
    d = deals.c
    changed["deals"] = st.scrub_rows(conn, deals, d.customer_id == customer_id, {"title": text, "lost_reason": text})
    changed["history"] = st.scrub_rows(conn, events, events.c.customer_id == customer_id, {"detail": text})
    changed["logs"] = st.scrub_logs(conn, ids, [customer_id], text) + crm_sync.scrub_outbox(conn, ids, text)
    changed.update(messaging.erase_messaging(conn, ids, phones, emails, text))
    changed["callbacks"] = telephony.erase_callbacks(conn, ids, phones, emails)
    changed["cluster"] = _scrub_cluster(conn, text)
    traces = _traces(conn, ids, payloads, phones, emails)
    if again is None:
        conn.execute(events.insert(), _event_row(CrmEvent(at, customer_id, "erased", by=by)))
    detail = {"reason": text(reason), "contacts": len(ids), "again": again is not None}
    st.add_audit(conn, at, by, "erase_customer", customer_id, detail)
    return ("again" if again is not None else "erased"), ids, changed, traces


def _scrub_cluster(conn: Connection, text: Callable[[Any], Any]) -> int:
    """The customer's words out of the cluster's events and effects (acd.cluster.bus: the
    contacts they carried between nodes; kept an hour at most, so all are read). An event not
    yet handled keeps its `outcome` as it is: the dispatching node may be writing it now."""
    ce = t.cluster_events.c
    changed = st.scrub_rows(conn, t.cluster_events, ce.handled_at.is_not(None), {"body": text, "outcome": text})
    changed += st.scrub_rows(conn, t.cluster_events, ce.handled_at.is_(None), {"body": text})
    return changed + st.scrub_rows(conn, t.cluster_effects, sa.true(), {"body": text})


def _traces(
    conn: Connection, ids: Sequence[str], payloads: Iterable[Mapping[str, Any]], phones: set[str], emails: set[str]
) -> Traces:
    """Where the customer may be outside the database: their calls (Uniqueids, voicemail
    recordings) from the contacts' payloads as they were before the erasure, and the external
    CRM's references to them (its match at arrival, and what the outbox sent it)."""
    uniqueids, recordings, external = set(), set(), set()
    for p in payloads:
        if isinstance(p.get("uniqueid"), str) and p["uniqueid"]:
            uniqueids.add(p["uniqueid"])
        voicemail = p.get("voicemail")
        name = voicemail.get("recording") if isinstance(voicemail, Mapping) else p.get("recording")
        if isinstance(name, str) and name:
            recordings.add(name)
        match = p.get("external")
        if isinstance(match, Mapping) and match.get("customer"):
            external.add(f"{match.get('system') or 'external'} {match['customer']}")
    s = t.crm_sync.c
    for part in (ids[i : i + 500] for i in range(0, len(ids), 500)):
        query = sa.select(s.contact_id, s.body, s.external_id).where(s.contact_id.in_(part), s.status == "sent")
        for contact_id, body, external_id in conn.execute(query):
            there = body.get("external") if isinstance(body, Mapping) else None
            if isinstance(there, Mapping) and there.get("customer"):
                external.add(f"customer {there['customer']}")
            external.add(f"contact {contact_id} sent" + (f" as {external_id}" if external_id else ""))
    return Traces(
        frozenset(phones), frozenset(uniqueids), frozenset(recordings), tuple(sorted(external)), frozenset(emails)
    )
