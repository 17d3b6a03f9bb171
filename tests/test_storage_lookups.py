"""Storage look-ups that must not read whole tables on a year of data: the client card, a
customer's contacts, a manager's list, the CRM's lists and exports, notifications, the shadow
report. Each runs on SQLite and PostgreSQL; the query plans are checked on SQLite, where
EXPLAIN QUERY PLAN names the index a query searches or the table it scans."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa

from acd.core.events import Decision, ShadowChoice
from acd.core.model import Channel, Contact, ContactStatus
from acd.crm.model import Customer, Deal, DealStatus
from acd.storage import Store, default_sqlite_url, open_store
from acd.storage import crm as crm_storage
from acd.storage.accounts import Accounts
from acd.storage.crm import CrmStore
from acd.storage.messaging import MessagingStore, Notification

if TYPE_CHECKING:
    pass

T0 = 1_700_000_000.0


def a_contact(contact_id: str, **fields: Any) -> Contact:
    return Contact(id=contact_id, channel=Channel.WEB, arrived_at=T0, **fields)


async def stored(store: Store, *contacts: Contact) -> list[Contact]:
    """The contacts, stored in this order (so the last is the newest)."""
    return [(await store.create_contact(c))[0] for c in contacts]


@contextmanager
def statements(store: Store) -> Iterator[list[tuple[str, Any]]]:
    """The SQL the store sends while the block runs, with its parameters."""
    seen: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        seen.append((statement, parameters))

    engine = store._engine.sync_engine
    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)


async def plan(store: Store, sql: tuple[str, Any]) -> str:
    """SQLite's plan for one recorded statement, a line per step."""
    async with store._engine.connect() as conn:
        rows = (await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql[0]}", sql[1])).all()
    return "\n".join(row[3] for row in rows)


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> Any:
    opened = await open_store(default_sqlite_url(tmp_path / "data"))
    try:
        yield opened
    finally:
        await opened.close()


# ---- the client card and a customer's contacts ----------------------------------------


async def card_history(store: Store) -> dict[str, Contact]:
    """Contacts of customer X, of nobody, and of another customer Y holding X's old phone."""
    phone, email = "+79160000001", "x@example.ru"
    made = await stored(
        store,
        a_contact("x-call", customer_id="X", phone=phone),
        a_contact("before-crm", phone=phone),  # no customer: a contact the CRM never saw
        a_contact("x-mail", customer_id="X", email=email),
        a_contact("callback", phone=phone, email="other@example.ru"),
        a_contact("y-call", customer_id="Y", phone=phone),  # the CRM says: somebody else
        a_contact("form", email=email),
        a_contact("stranger", customer_id="Z", phone="+79160000002", email="z@example.ru"),
        a_contact("x-now", customer_id="X", phone=phone, email=email),
    )
    return {c.id: c for c in made}


async def test_the_card_shows_the_customers_contacts_and_those_without_a_customer_sharing_a_phone_or_email(
    store: Store,
) -> None:
    made = await card_history(store)
    earlier = await Accounts(store).earlier_contacts(made["x-now"])
    assert [c.id for c in earlier] == ["form", "callback", "x-mail", "before-crm", "x-call"]
    assert [c.id for c in await Accounts(store).earlier_contacts(made["x-now"], limit=2)] == ["form", "callback"]


async def test_a_contact_without_a_customer_finds_the_others_without_one_by_its_phone_or_email(store: Store) -> None:
    made = await card_history(store)
    assert [c.id for c in await Accounts(store).earlier_contacts(made["callback"])] == ["before-crm"]
    nobody = await stored(store, a_contact("no-address"))
    assert await Accounts(store).earlier_contacts(nobody[0]) == []


async def test_a_customers_contacts_come_newest_first(store: Store) -> None:
    await card_history(store)
    contacts = await CrmStore(store).contacts_of("X")
    assert [c.id for c in contacts] == ["x-now", "x-mail", "x-call"]
    assert [c.id for c in await CrmStore(store).contacts_of("X", limit=1)] == ["x-now"]


async def test_the_card_and_the_customer_page_search_indexes(sqlite_store: Store) -> None:
    made = await card_history(sqlite_store)
    with statements(sqlite_store) as seen:
        await Accounts(sqlite_store).earlier_contacts(made["x-now"])
        await Accounts(sqlite_store).earlier_contacts(made["callback"])
        await CrmStore(sqlite_store).contacts_of("X")
    card, unattached, customer_page = [await plan(sqlite_store, sql) for sql in seen]
    for used in ("ix_contacts_customer_id", "ix_contacts_phone", "ix_contacts_email"):
        assert f"SEARCH contacts USING INDEX {used}" in card, card
    assert "SCAN contacts" not in card
    assert "SEARCH contacts USING INDEX ix_contacts_phone" in unattached and "SCAN" not in unattached, unattached
    assert customer_page == "SEARCH contacts USING INDEX ix_contacts_customer_id (customer_id=?)"


# ---- a manager's list -------------------------------------------------------------------


async def managers_contacts(store: Store) -> None:
    await stored(
        store,
        a_contact("anna-1", assigned_to="anna", status=ContactStatus.FINISHED),
        a_contact("boris-1", assigned_to="boris", status=ContactStatus.FINISHED),
        a_contact("anna-2", assigned_to="anna", status=ContactStatus.ASSIGNED),
        a_contact("waiting"),
        a_contact("offered-to-anna", offered_to="anna", status=ContactStatus.OFFERED),
        a_contact("anna-3", assigned_to="anna", offered_to="anna", status=ContactStatus.ASSIGNED),
    )


async def test_a_managers_list_holds_what_they_hold_and_what_is_offered_to_them_newest_first(store: Store) -> None:
    await managers_contacts(store)

    async def ids(**query: Any) -> list[str]:
        return [c.id for c in await store.list_contacts(manager_id="anna", **query)]

    assert await ids() == ["anna-3", "offered-to-anna", "anna-2", "anna-1"]
    assert await ids(status="assigned") == ["anna-3", "anna-2"]
    assert await ids(limit=2, offset=1) == ["offered-to-anna", "anna-2"]
    assert await ids(since=T0 + 1) == []
    assert [c.id for c in await store.list_contacts(manager_id="nobody")] == []


async def test_a_managers_list_searches_the_indexes_of_both_columns(sqlite_store: Store) -> None:
    await managers_contacts(sqlite_store)
    with statements(sqlite_store) as seen:
        await sqlite_store.list_contacts(manager_id="anna")
        await sqlite_store.list_contacts(status="assigned", manager_id="anna")  # a manager's panel
    found, open_ones = [await plan(sqlite_store, sql) for sql in seen]
    assert "SCAN contacts" not in found, found
    assert "ix_contacts_assigned_to (assigned_to=?)" in found and "ix_contacts_offered_to (offered_to=?)" in found
    assert "TEMP B-TREE" not in found  # read newest first, as far as the page goes
    assert open_ones == "SEARCH contacts USING INDEX ix_contacts_status_seq (status=?)"


# ---- the CRM's lists and exports --------------------------------------------------------

# created_at ties: the customers an intake batch makes share it, and pages of three cut them
CUSTOMERS = [("c", 10.0), ("a", 20.0), ("e", 20.0), ("b", 20.0), ("d", 20.0), ("g", 30.0), ("f", 30.0)]


async def customers_made(store: Store) -> CrmStore:
    repo = CrmStore(store)
    for customer_id, created_at in CUSTOMERS:
        await repo.save_customer(Customer(customer_id, name=customer_id, created_at=created_at), new=True)
    return repo


async def test_an_export_pages_through_every_customer_once_in_the_lists_order(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = await customers_made(store)
    monkeypatch.setattr(crm_storage, "EXPORT_PAGE", 3)
    listed = [c.id for c in await repo.list_customers(limit=100)]
    assert listed == ["f", "g", "a", "b", "d", "e", "c"]
    exported = []
    async for c in repo.all_customers():
        exported.append(c.id)
        if len(exported) == 3:  # a customer made during the export moves nobody to a later page
            await repo.save_customer(Customer("new", created_at=40.0), new=True)
    assert exported == listed


async def test_a_page_of_customers_starts_after_the_last_one_of_the_page_before(store: Store) -> None:
    repo = await customers_made(store)
    page = await repo.list_customers(limit=3, after=(20.0, "a"))
    assert [c.id for c in page] == ["b", "d", "e"]
    assert [c.id for c in await repo.list_customers(after=(10.0, "c"))] == []


async def test_the_export_and_the_lists_read_their_indexes_in_order(
    sqlite_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = await customers_made(sqlite_store)
    await repo.save_deals([Deal(f"d{i}", "a", opened_at=float(i)) for i in range(3)])
    notes = MessagingStore(sqlite_store)
    for i in range(3):
        await notes.add_notification(Notification(f"n{i}", f"k{i}", "received", "email", "x@y.z", "ru", "", "", T0 + i))
    monkeypatch.setattr(crm_storage, "EXPORT_PAGE", 3)
    with statements(sqlite_store) as seen:
        [c async for c in repo.all_customers()]
    customer_pages = [sql for sql in seen if sql[0].lstrip().startswith("SELECT crm_customers.")]
    assert len(customer_pages) == 4  # 3 + 3 + 1, and the empty one that ends it
    for page in customer_pages:
        found = await plan(sqlite_store, page)
        assert "ix_crm_customers_created_at_id" in found and "SCAN crm_customers\n" not in f"{found}\n", found
        assert "USE TEMP B-TREE FOR ORDER BY" not in found  # only to order the ids of one created_at
    with statements(sqlite_store) as seen:
        await repo.list_deals()
        assert [n.id for n in await notes.list_notifications()] == ["n2", "n1", "n0"]
    deals, notifications = [await plan(sqlite_store, sql) for sql in seen]
    assert "ix_crm_deals_opened_at_id" in deals and "USE TEMP B-TREE FOR ORDER BY" not in deals, deals
    assert notifications == "SCAN notifications USING INDEX ix_notifications_created_at"


async def test_the_deals_closed_in_a_span_are_read_by_their_closing_time(store: Store) -> None:
    repo = await customers_made(store)
    won, lost, still = DealStatus.WON, DealStatus.LOST, DealStatus.OPEN
    await repo.save_deals(
        [
            Deal("early", "a", status=won, closed_at=99.0),
            Deal("first", "a", status=won, amount=5.0, closed_at=100.0),
            Deal("lost", "b", status=lost, closed_at=150.0),
            Deal("last", "a", status=won, closed_at=199.5),
            Deal("after", "a", status=won, closed_at=200.0),
            Deal("open", "a", status=still),
        ]
    )
    assert [d.id for d in await repo.closed_deals(100.0, 200.0)] == ["first", "lost", "last"]


async def test_the_reports_closed_deals_search_their_index(sqlite_store: Store) -> None:
    repo = await customers_made(sqlite_store)
    with statements(sqlite_store) as seen:
        await repo.closed_deals(100.0, 200.0)
    (sql,) = seen
    found = await plan(sqlite_store, sql)
    assert "ix_crm_deals_closed_at" in found, found


# ---- the shadow report --------------------------------------------------------------------


BORIS = ShadowChoice("v2", "leastrecent", "boris")
NOBODY = ShadowChoice("v2", "leastrecent", None)


def a_decision(n: int, kind: str = "offer", shadow: ShadowChoice | None = BORIS) -> Decision:
    return Decision(f"d{n}", T0 + n, f"c{n}", "anna", kind, "v1", "linear", 1, "all", shadow=shadow)


async def test_the_shadow_report_reads_the_offers_among_the_newest_decisions(store: Store) -> None:
    decisions = [a_decision(0), a_decision(1, shadow=None), a_decision(2, "end"), a_decision(3, shadow=NOBODY)]
    await store.apply([], [], decisions, [])
    picks = await store.shadow_picks(3)
    assert picks == [("d3", "c3", "anna", NOBODY), ("d1", "c1", "anna", None)]
    full = {d.id: d for d in await store.list_decisions(limit=10)}
    assert [(i, c, m, full[i].shadow) for i, c, m, _ in picks] == picks
