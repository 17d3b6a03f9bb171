"""Storage contract: every test runs against SQLite and PostgreSQL (see storage_fixtures)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from acd.core.events import Candidate, Decision, Transition
from acd.core.model import Channel, Contact, ContactStatus, Manager, Outcome, Presence
from acd.storage import Conflict, Refused, StorageError, Store, default_sqlite_url, open_store
from acd.storage.tables import metadata

if TYPE_CHECKING:
    # Loaded by pytest through pytest_plugins in conftest.py; importing it here first would stop
    # pytest from rewriting its asserts.
    from storage_fixtures import Backend

# The `backend` and `store` fixtures (conftest.py) run each test on SQLite and PostgreSQL, each
# on a database the store's own migrations make as it is first opened (elsewhere, a copy).
pytestmark = pytest.mark.fresh_migration

ROOT = Path(__file__).resolve().parents[1]


def a_contact(contact_id: str, arrived_at: float = 1_700_000_000.0, **fields: object) -> Contact:
    return Contact(id=contact_id, channel=Channel.WEB, arrived_at=arrived_at, **fields)  # type: ignore[arg-type]


def a_full_contact(contact_id: str = "c-1") -> Contact:
    """Every field away from its default, with floats that only survive an exact round trip."""
    return Contact(
        id=contact_id,
        channel=Channel.CALLBACK,
        arrived_at=1_700_000_000.123456789,
        seq=0,
        criteria={"product": "mortgage", "region": "Île-de-France"},
        customer_id="cust-7",
        customer_name="Zoë O'Brien",
        phone="+33612345678",
        email="zoe@example.com",
        priority=3,
        language="fr",
        required_skills=frozenset({"mortgage", "vip"}),
        preferred=("m-2", "m-1", "m-3"),
        team="sales",
        status=ContactStatus.ASSIGNED,
        offered_to="m-2",
        offer_expires_at=1_700_000_030.1 + 0.2,
        assigned_to="m-2",
        declined_by=frozenset({"m-1", "m-9"}),
        step=2,
        step_since=1_700_000_010.000001,
        pinned_to="m-2",
        pin_expires_at=1_700_000_600.5,
        override=True,
        outcome=Outcome.WON,
        finished_at=1_700_000_900.25,
        payload={"form": {"amount": 250000.5, "notes": ["call after 6pm"]}, "utm": None, "ok": True},
    )


def a_full_manager(manager_id: str = "m-1") -> Manager:
    return Manager(
        id=manager_id,
        name="Ana Lima",
        team="sales",
        skills={"mortgage": 5, "vip": 2},
        languages=frozenset({"en", "pt"}),
        capacity={Channel.CALL: 1, Channel.WEB: 3, Channel.EMAIL: 5},
        device="PJSIP/1001",
        email="ana@example.com",
        order=7,
        daily_cap=40,
        presence=Presence.PAUSED,
        pause_reason="missed 2 offers",
        presence_since=1_700_000_000.7,
        load={Channel.WEB: 2, Channel.CALL: 0},
        offer_contact_id="c-9",
        missed_in_row=2,
        last_heartbeat=1_700_000_001.3,
        last_finished_at=1_699_999_000.1,
        last_offered_at=1_699_999_500.9,
        day="2026-11-23",
        assigned_today=12,
        handled_today=11,
        device_busy=True,
        active=False,
    )


def a_decision(decision_id: str, at: float, contact_id: str = "c-1", manager_id: str | None = "m-1") -> Decision:
    return Decision(
        id=decision_id,
        at=at,
        contact_id=contact_id,
        manager_id=manager_id,
        kind="offer",
        policy_version="v3",
        strategy="skills_then_idle",
        step=1,
        pool="team:sales",
        candidates=(
            Candidate("m-1", 0.8125, {"skill": 0.5, "idle": 0.3125}),
            Candidate("m-2", 0.1 + 0.2, {"skill": 0.1, "idle": 0.2 + 1e-17}),
        ),
        filtered={"paused": ["m-3"], "no_skill": ["m-4", "m-5"]},
        filtered_counts={"paused": 1, "no_skill": 2},
        summary="m-1: best skill match, idle 5 min",
    )


def a_transition(manager_id: str, at: float, new: Presence = Presence.AVAILABLE) -> Transition:
    return Transition(manager_id=manager_id, at=at, old=Presence.OFFLINE, new=new, reason=None, cause="manager")


# ---- contacts -----------------------------------------------------------------------


async def test_a_contact_round_trips_every_field(store: Store) -> None:
    contact = a_full_contact()

    created, is_new = await store.create_contact(contact, idempotency_key="form-1")

    assert is_new
    assert created == replace(contact, seq=created.seq)
    assert created.seq > 0
    assert await store.get_contact("c-1") == created
    assert contact.seq == 0, "the argument is not modified"


async def test_a_contact_keeps_its_python_types_after_the_round_trip(store: Store) -> None:
    await store.create_contact(a_full_contact())

    loaded = await store.get_contact("c-1")

    assert loaded is not None
    assert type(loaded.channel) is Channel and type(loaded.status) is ContactStatus
    assert type(loaded.outcome) is Outcome
    assert type(loaded.required_skills) is frozenset and type(loaded.declined_by) is frozenset
    assert type(loaded.preferred) is tuple
    assert loaded.arrived_at == 1_700_000_000.123456789


@pytest.mark.parametrize(
    ("text", "read"),
    [
        ('{"note":"ok","n":[1,2.5,null,true]}', {"note": "ok", "n": [1, 2.5, None, True]}),
        ('{"big":123456789012345678901234567890}', {"big": 123456789012345678901234567890}),
        ('{"low":-9223372036854775809,"top":18446744073709551616}', {"low": -(2**63) - 1, "top": 2**64}),
        ('{"s":"\\ud800"}', {"s": "\ud800"}),  # a lone surrogate, escaped
    ],
)
async def test_json_written_by_another_tool_reads_as_json_reads_it(
    store: Store, backend: Backend, text: str, read: object
) -> None:
    """JSON columns are read by orjson, but what it refuses (a lone surrogate, NaN below) or
    reads otherwise (an integer past 64 bits becomes a float) by json, as before."""
    await store.create_contact(a_contact("c-j"))
    async with backend.raw() as conn:
        await conn.execute(sa.text("UPDATE contacts SET payload = :p WHERE id = 'c-j'"), {"p": text})
    loaded = await store.get_contact("c-j")
    assert loaded is not None and loaded.payload == read


async def test_nan_written_by_another_tool_reads_as_nan(store: Store, backend: Backend) -> None:
    await store.create_contact(a_contact("c-n"))
    async with backend.raw() as conn:
        await conn.execute(sa.text("UPDATE contacts SET payload = :p WHERE id = 'c-n'"), {"p": '{"x":NaN}'})
    loaded = await store.get_contact("c-n")
    assert loaded is not None and loaded.payload["x"] != loaded.payload["x"]


async def test_an_unknown_contact_is_none(store: Store) -> None:
    assert await store.get_contact("nope") is None


async def test_a_second_create_with_the_same_idempotency_key_returns_the_first_contact(store: Store) -> None:
    first, first_new = await store.create_contact(a_contact("c-1"), idempotency_key="lead-42")

    again, again_new = await store.create_contact(a_contact("c-2"), idempotency_key="lead-42")

    assert (first_new, again_new) == (True, False)
    assert again == first
    assert await store.get_contact("c-2") is None
    assert [c.id for c in await store.list_contacts()] == ["c-1"]


async def test_concurrent_creates_with_the_same_key_make_one_row(store: Store) -> None:
    results = await asyncio.gather(
        *(store.create_contact(a_contact(f"c-{i}"), idempotency_key="double-click") for i in range(8))
    )

    assert sum(is_new for _, is_new in results) == 1
    assert len({contact.id for contact, _ in results}) == 1
    assert len(await store.list_contacts()) == 1


async def test_reusing_a_contact_id_is_a_conflict(store: Store) -> None:
    await store.create_contact(a_contact("c-1"), idempotency_key="a")

    with pytest.raises(Conflict):
        await store.create_contact(a_contact("c-1"), idempotency_key="b")
    with pytest.raises(Conflict):
        await store.create_contact(a_contact("c-1"))


async def test_contacts_without_a_key_are_never_deduplicated(store: Store) -> None:
    await store.create_contact(a_contact("c-1"))
    await store.create_contact(a_contact("c-2"))

    assert len(await store.list_contacts()) == 2


async def test_seq_is_intake_order(store: Store) -> None:
    # Arrival times deliberately disagree with intake order: seq follows the store.
    created = [(await store.create_contact(a_contact(f"c-{i}", arrived_at=100.0 - i)))[0] for i in range(5)]

    seqs = [c.seq for c in created]
    assert seqs == sorted(seqs) and len(set(seqs)) == 5


async def test_concurrent_creates_get_distinct_seqs(store: Store) -> None:
    results = await asyncio.gather(*(store.create_contact(a_contact(f"c-{i}")) for i in range(20)))

    assert len({contact.seq for contact, _ in results}) == 20


async def test_open_contacts_come_back_in_seq_order_without_closed_ones(store: Store) -> None:
    created = [(await store.create_contact(a_contact(f"c-{i}", arrived_at=100.0 - i)))[0] for i in range(6)]
    statuses = [
        ContactStatus.ASSIGNED,
        ContactStatus.FINISHED,
        ContactStatus.WAITING,
        ContactStatus.ABANDONED,
        ContactStatus.OFFERED,
        ContactStatus.WAITING,
    ]
    await store.apply([replace(c, status=s) for c, s in zip(created, statuses, strict=True)], [], [], [])

    open_contacts = await store.load_open_contacts()

    assert [c.id for c in open_contacts] == ["c-0", "c-2", "c-4", "c-5"]
    assert [c.seq for c in open_contacts] == sorted(c.seq for c in open_contacts)


async def test_list_contacts_is_newest_first_and_filters_by_status_manager_and_time(store: Store) -> None:
    for i in range(5):
        await store.create_contact(a_contact(f"c-{i}", arrived_at=float(i)))
    c1, c3 = await store.get_contact("c-1"), await store.get_contact("c-3")
    assert c1 is not None and c3 is not None
    await store.apply(
        [
            replace(c1, status=ContactStatus.ASSIGNED, assigned_to="m-1"),
            replace(c3, status=ContactStatus.OFFERED, offered_to="m-1"),
        ],
        [],
        [],
        [],
    )

    assert [c.id for c in await store.list_contacts()] == ["c-4", "c-3", "c-2", "c-1", "c-0"]
    assert [c.id for c in await store.list_contacts(status="waiting")] == ["c-4", "c-2", "c-0"]
    assert [c.id for c in await store.list_contacts(status=ContactStatus.ASSIGNED)] == ["c-1"]
    assert [c.id for c in await store.list_contacts(manager_id="m-1")] == ["c-3", "c-1"]
    assert [c.id for c in await store.list_contacts(since=2.0)] == ["c-4", "c-3", "c-2"]
    assert [c.id for c in await store.list_contacts(limit=2, offset=1)] == ["c-3", "c-2"]


# ---- managers -----------------------------------------------------------------------


async def test_a_manager_round_trips_every_field(store: Store) -> None:
    manager = a_full_manager()

    await store.save_manager(manager)

    loaded = await store.get_manager("m-1")
    assert loaded == manager
    assert loaded is not None and all(type(ch) is Channel for ch in (*loaded.capacity, *loaded.load))
    assert type(loaded.presence) is Presence and type(loaded.languages) is frozenset


async def test_saving_a_manager_again_replaces_it(store: Store) -> None:
    await store.save_manager(a_full_manager())
    changed = replace(a_full_manager(), presence=Presence.AVAILABLE, pause_reason=None, load={}, active=True)

    await store.save_manager(changed)

    assert await store.load_managers() == [changed]


async def test_load_managers_returns_active_and_inactive_by_order(store: Store) -> None:
    await store.save_manager(Manager(id="m-b", order=2))
    await store.save_manager(Manager(id="m-a", order=2, active=False))
    await store.save_manager(Manager(id="m-c", order=1))

    assert [m.id for m in await store.load_managers()] == ["m-c", "m-a", "m-b"]
    assert await store.get_manager("nobody") is None


# ---- the dispatcher's write ---------------------------------------------------------


async def test_apply_writes_contacts_managers_decisions_and_transitions_together(store: Store) -> None:
    contact, _ = await store.create_contact(a_contact("c-1"))
    offered = replace(contact, status=ContactStatus.OFFERED, offered_to="m-1", offer_expires_at=30.5)
    manager = replace(a_full_manager(), presence=Presence.OFFERED, offer_contact_id="c-1")

    await store.apply([offered], [manager], [a_decision("d-1", 10.0)], [a_transition("m-1", 10.0, Presence.OFFERED)])

    assert await store.get_contact("c-1") == offered
    assert await store.get_manager("m-1") == manager
    assert await store.list_decisions() == [a_decision("d-1", 10.0)]
    assert await store.list_transitions() == [a_transition("m-1", 10.0, Presence.OFFERED)]


async def test_apply_is_atomic_a_failure_inside_rolls_everything_back(store: Store) -> None:
    contact, _ = await store.create_contact(a_contact("c-1"))
    await store.save_manager(Manager(id="m-1"))
    await store.apply([], [], [a_decision("d-1", 1.0)], [])

    with pytest.raises(Conflict):
        await store.apply(
            [replace(contact, status=ContactStatus.ASSIGNED, assigned_to="m-1"), a_contact("c-new")],
            [Manager(id="m-1", presence=Presence.BUSY), Manager(id="m-2")],
            [a_decision("d-2", 2.0), a_decision("d-1", 3.0)],  # d-1 again: the failure
            [a_transition("m-1", 2.0, Presence.BUSY)],
        )

    assert await store.get_contact("c-1") == contact
    assert await store.get_contact("c-new") is None
    assert await store.load_managers() == [Manager(id="m-1")]
    assert [d.id for d in await store.list_decisions()] == ["d-1"]
    assert await store.list_transitions() == []


async def test_apply_gives_a_contact_new_to_the_store_a_seq_after_the_others(store: Store) -> None:
    first, _ = await store.create_contact(a_contact("c-1"))

    await store.apply([a_contact("c-callback")], [], [], [])

    stored = await store.get_contact("c-callback")
    assert stored is not None and stored.seq > first.seq
    assert [c.id for c in await store.load_open_contacts()] == ["c-1", "c-callback"]


async def test_apply_keeps_the_seq_and_the_last_copy_of_a_contact_listed_twice(store: Store) -> None:
    created, _ = await store.create_contact(a_contact("c-1"))

    await store.apply(
        [
            replace(created, seq=999, status=ContactStatus.OFFERED),
            replace(created, seq=999, status=ContactStatus.ASSIGNED),
        ],
        [Manager(id="m-1", order=1), Manager(id="m-1", order=2)],
        [],
        [],
    )

    assert await store.get_contact("c-1") == replace(created, status=ContactStatus.ASSIGNED)
    assert await store.load_managers() == [Manager(id="m-1", order=2)]


async def test_apply_with_nothing_to_write_does_nothing(store: Store) -> None:
    await store.apply([], [], [], [])

    assert await store.list_contacts() == []


async def test_a_payload_json_cannot_encode_is_refused_before_anything_is_written(store: Store) -> None:
    with pytest.raises(TypeError):
        await store.create_contact(a_contact("c-1", payload={"when": object()}))

    assert await store.get_contact("c-1") is None


async def test_a_value_postgresql_cannot_hold_is_refused_not_an_outage(store: Store, backend: Backend) -> None:
    """A NUL in text and an index entry over 2.7 KB (compressed): PostgreSQL refuses them for good, so
    they must not read as "the database is away, retry" (the dispatcher retried for ever).
    SQLite takes both."""
    nul = replace(a_full_manager(), device="SIP/\0")
    long_key = secrets.token_urlsafe(4500)  # random: a repetitive key compresses to fit
    if backend.name == "sqlite":
        await store.apply([], [nul], [], [])
        assert (await store.create_contact(a_contact("c-1"), long_key))[1]
        return
    with pytest.raises(Refused):
        await store.apply([], [nul], [], [])
    with pytest.raises(Refused):
        await store.create_contact(a_contact("c-1"), long_key)
    assert await store.get_manager("m-1") is None and await store.get_contact("c-1") is None


# ---- decision and transition logs ---------------------------------------------------


async def test_decisions_come_back_newest_first_with_their_full_explanation(store: Store) -> None:
    decisions = [
        a_decision("d-1", 10.0, "c-1", "m-1"),
        a_decision("d-2", 20.0, "c-2", "m-2"),
        a_decision("d-3", 20.0, "c-1", None),  # same time as d-2: append order breaks the tie
        a_decision("d-4", 30.0, "c-1", "m-2"),
    ]
    for decision in decisions:
        await store.apply([], [], [decision], [])

    assert await store.list_decisions() == decisions[::-1]
    assert [d.id for d in await store.list_decisions(contact_id="c-1")] == ["d-4", "d-3", "d-1"]
    assert [d.id for d in await store.list_decisions(manager_id="m-2")] == ["d-4", "d-2"]
    assert [d.id for d in await store.list_decisions(since=20.0)] == ["d-4", "d-3", "d-2"]
    assert [d.id for d in await store.list_decisions(limit=2)] == ["d-4", "d-3"]
    explained = (await store.list_decisions(contact_id="c-2"))[0]
    assert explained.candidates[1].score == 0.1 + 0.2
    assert explained.candidates[0].components == {"skill": 0.5, "idle": 0.3125}
    assert explained.filtered == {"paused": ["m-3"], "no_skill": ["m-4", "m-5"]}


async def test_transitions_come_back_newest_first_and_filter_by_manager_and_time(store: Store) -> None:
    paused = Transition("m-1", 3.0, Presence.AVAILABLE, Presence.PAUSED, "lunch", "manager")
    logged = [a_transition("m-1", 1.0), a_transition("m-2", 2.0), paused]
    await store.apply([], [], [], logged)

    assert await store.list_transitions() == logged[::-1]
    assert await store.list_transitions(manager_id="m-1") == [paused, logged[0]]
    assert await store.list_transitions(since=2.0) == [paused, logged[1]]
    assert await store.list_transitions(limit=1) == [paused]
    assert type((await store.list_transitions())[0].new) is Presence


# ---- audit --------------------------------------------------------------------------


async def test_audit_entries_come_back_newest_first_with_their_detail(store: Store) -> None:
    await store.audit(1.0, "sup-1", "reassign", "c-1", {"from": "m-1", "to": "m-2", "pin_until": 60.5})
    await store.audit(2.0, "admin", "pause", "m-3", {"reason": "training"})

    entries = await store.list_audit()

    assert [(e["at"], e["actor"], e["action"], e["target"], e["detail"]) for e in entries] == [
        (2.0, "admin", "pause", "m-3", {"reason": "training"}),
        (1.0, "sup-1", "reassign", "c-1", {"from": "m-1", "to": "m-2", "pin_until": 60.5}),
    ]
    assert [e["action"] for e in await store.list_audit(limit=1)] == ["pause"]


# ---- API tokens ---------------------------------------------------------------------


async def test_a_token_verifies_until_it_is_revoked(store: Store) -> None:
    manager_token = await store.create_token("manager", "m-1", label="Ana's panel")
    admin_token = await store.create_token("admin", None)

    assert await store.verify_token(manager_token) == ("manager", "m-1")
    assert await store.verify_token(admin_token) == ("admin", None)

    assert await store.revoke_token(manager_token) is True

    assert await store.verify_token(manager_token) is None
    assert await store.verify_token(admin_token) == ("admin", None)
    assert await store.revoke_token(manager_token) is False


async def test_an_unknown_token_does_not_verify(store: Store) -> None:
    await store.create_token("admin", None)

    assert await store.verify_token("not-a-token") is None
    assert await store.verify_token("") is None


async def test_tokens_are_stored_only_as_their_sha256(store: Store, backend: Backend) -> None:
    secret = await store.create_token("manager", "m-1", label="panel")

    async with backend.raw() as conn:
        rows = (await conn.execute(sa.text("SELECT * FROM tokens"))).all()

    assert len(rows) == 1
    assert all(secret not in str(value) for value in rows[0])
    assert hashlib.sha256(secret.encode()).hexdigest() in rows[0]


async def test_each_token_is_a_fresh_secret(store: Store) -> None:
    tokens = {await store.create_token("manager", "m-1") for _ in range(5)}

    assert len(tokens) == 5
    assert all(len(token) >= 40 for token in tokens)


# ---- restarts and migrations --------------------------------------------------------


async def test_reopening_the_store_keeps_contacts_managers_and_logs(backend: Backend) -> None:
    first = await backend.open()
    created = [(await first.create_contact(a_contact(f"c-{i}"), idempotency_key=f"k-{i}"))[0] for i in range(3)]
    await first.apply(
        [replace(created[1], status=ContactStatus.FINISHED, outcome=Outcome.DONE)],
        [a_full_manager()],
        [a_decision("d-1", 5.0)],
        [a_transition("m-1", 5.0)],
    )
    token = await first.create_token("admin", None)
    await first.close()

    second = await backend.open()
    try:
        assert [c.id for c in await second.load_open_contacts()] == ["c-0", "c-2"]
        assert await second.load_managers() == [a_full_manager()]
        assert await second.list_decisions() == [a_decision("d-1", 5.0)]
        assert await second.list_transitions() == [a_transition("m-1", 5.0)]
        assert await second.verify_token(token) == ("admin", None)
        assert (await second.create_contact(a_contact("c-x"), idempotency_key="k-0"))[0] == created[0]
        later, _ = await second.create_contact(a_contact("c-3"))
        assert later.seq > created[-1].seq
    finally:
        await second.close()


KILLED_WRITER = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from acd.core.model import Channel, Contact
    from acd.storage import open_store

    async def main(url, schema):
        store = await open_store(url, schema=schema or None)
        for i in range(20):
            contact, _ = await store.create_contact(Contact(id=f"c-{i}", channel=Channel.WEB, arrived_at=float(i)))
            print(contact.id, flush=True)  # the acknowledgement
        os.kill(os.getpid(), signal.SIGKILL)

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


async def test_every_acknowledged_contact_survives_kill_9_in_intake_order(backend: Backend) -> None:
    writer = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        KILLED_WRITER,
        backend.url,
        backend.schema or "",
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    stdout, _ = await asyncio.wait_for(writer.communicate(), timeout=60)
    acknowledged = stdout.decode().split()

    assert writer.returncode == -signal.SIGKILL
    assert len(acknowledged) == 20
    reopened = await backend.open()
    try:
        assert [c.id for c in await reopened.load_open_contacts()] == acknowledged
    finally:
        await reopened.close()


def migration_heads() -> list[str]:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from acd.storage.store import MIGRATIONS

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return list(ScriptDirectory.from_config(config).get_heads())


async def test_migrating_an_up_to_date_database_again_is_a_no_op(backend: Backend) -> None:
    first = await backend.open()
    await first.create_contact(a_contact("c-1"))
    await first.close()

    for _ in range(2):
        again = await backend.open()
        await again.close()

    async with backend.raw() as conn:
        versions = (await conn.execute(sa.text("SELECT version_num FROM alembic_version"))).scalars().all()
        contacts = (await conn.execute(sa.text("SELECT id FROM contacts"))).scalars().all()
    assert sorted(versions) == sorted(migration_heads())
    assert contacts == ["c-1"]


async def test_the_migrated_schema_matches_the_declared_tables(store: Store, backend: Backend) -> None:
    def differences(conn: sa.Connection) -> list[object]:
        return compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)

    async with backend.raw() as conn:
        assert await conn.run_sync(differences) == []


async def test_indexes_of_mostly_empty_columns_leave_the_empty_rows_out(store: Store, backend: Backend) -> None:
    # a new lead is nobody's yet, an intake customer has no account manager, a customer's own
    # events have no deal: the intake's commit must not write an index entry for any of them
    # (nor offered to anybody), and a customer's contacts leave out those without one
    partial = {
        "ix_contacts_assigned_to",
        "ix_contacts_offered_to",
        "ix_contacts_customer_id",
        "ix_crm_customers_account_manager",
        "ix_crm_events_deal_id_at",
        "ix_crm_deals_closed_at",  # an open deal has no closing time
    }

    def definitions(conn: sa.Connection) -> dict[str, str]:
        if conn.dialect.name == "sqlite":
            query = "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
        else:
            query = "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema()"
        return {name: sql for name, sql in conn.exec_driver_sql(query)}

    async with backend.raw() as conn:
        found = await conn.run_sync(definitions)
    for name in partial:
        assert "IS NOT NULL" in found[name], found[name]
    # a new lead has its customer: the look-ups by phone and e-mail (contacts the CRM never
    # saw) leave it out too
    for name in ("ix_contacts_phone", "ix_contacts_email"):
        assert "customer_id IS NULL" in found[name], found[name]
    assert "WHERE" not in found["ix_contacts_arrived_at"]


async def test_the_store_answers_a_ping(store: Store) -> None:
    assert await store.ping() is True


# ---- SQLite specifics ---------------------------------------------------------------


async def test_a_sqlite_store_creates_its_folder_and_runs_in_wal_mode(tmp_path: Path) -> None:
    data_dir = tmp_path / "not" / "yet" / "there"

    opened = await open_store(default_sqlite_url(data_dir))
    await opened.close()

    with sqlite3.connect(data_dir / "acd.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_an_in_memory_sqlite_store_keeps_data_across_connections() -> None:
    opened = await open_store("sqlite+aiosqlite:///:memory:")
    try:
        await opened.create_contact(a_contact("c-1"))
        assert [c.id for c in await opened.load_open_contacts()] == ["c-1"]
    finally:
        await opened.close()


async def test_a_url_for_another_database_is_refused_with_the_supported_forms() -> None:
    with pytest.raises(ValueError, match="sqlite"):
        await open_store("mysql+aiomysql://root@localhost/acd")


async def test_an_unreachable_database_is_a_storage_error() -> None:
    with pytest.raises(StorageError):
        await open_store("postgresql+asyncpg://postgres@127.0.0.1:1/none")


async def test_an_in_memory_store_keeps_what_it_acknowledged_while_others_read() -> None:
    """One connection serves an in-memory database: a reader must not roll back a writer."""
    store = await open_store("sqlite+aiosqlite:///:memory:")
    try:

        async def readers() -> None:
            for _ in range(30):
                await store.load_open_contacts()
                assert await store.ping()

        written = [a_contact(f"m{i}") for i in range(200)]
        await asyncio.gather(*(store.create_contact(c) for c in written), readers(), readers())
        assert {c.id for c in await store.load_open_contacts()} == {c.id for c in written}
    finally:
        await store.close()
