"""Storage: the schema as SQLAlchemy Core tables (the code's picture of what migrations build).

Migrations are frozen snapshots and never import this module's tables; a test checks that
the migrated database and these declarations agree.

Design choices that hold for every table:
- Times are POSIX seconds in double precision, never `DateTime`: the core does arithmetic
  on them and must get back exactly the float it handed over.
- Structured fields (mappings, sets, tuples, the decision explanation) are JSON kept in a
  text column. Nothing queries inside them, and text keeps floats exact and keys in order
  on both databases (PostgreSQL's `jsonb` rewrites numbers and rejects `NaN`).
- Logs (`decisions`, `transitions`, `audit`) have an integer key `n` giving append order and
  no foreign keys: a log records what happened even about rows that changed later.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Dialect

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def not_null(column: str) -> dict[str, Any]:
    """An index's options that leave out the rows where `column` is NULL, on both databases:
    for a column most new rows leave empty and no look-up asks for empty (an equality
    implies the condition, so the planners still use the index). The intake's commit then
    writes one index fewer (migration 0011)."""
    where = sa.text(f"{column} IS NOT NULL")
    return {"sqlite_where": where, "postgresql_where": where}


# orjson reads an integer past 64 bits as a float; json keeps it exact. A run of 19 digits may
# be one (or a long digit string, which json reads as well).
_LONG_DIGITS = re.compile(r"\d{19}")


class JSONText(sa.TypeDecorator[Any]):
    """JSON in a TEXT column: exact floats, stable key order, identical on both databases."""

    impl = sa.Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        if not value and isinstance(value, list | dict):
            return "[]" if isinstance(value, list) else "{}"  # most rows: skip the encoder
        # the JSON json.dumps(separators=(",", ":"), ensure_ascii=False) writes (an exponent
        # may lose a leading zero), several times faster: much of writing a batch of leads
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()

    def process_result_value(self, value: str | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not _LONG_DIGITS.search(value):
            try:
                return orjson.loads(value)  # about 5 times faster: decision logs, restarts, exports
            except orjson.JSONDecodeError:
                pass  # NaN, Infinity or a lone surrogate, which json reads (rows another tool wrote)
        return json.loads(value)


def _serial() -> sa.types.TypeEngine[int]:
    # SQLite only makes an autoincrementing rowid alias out of exactly "INTEGER PRIMARY KEY".
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _log_key() -> sa.Column[int]:
    return sa.Column("n", _serial(), sa.Identity(), primary_key=True)


_without_customer: dict[str, Any] = {
    "sqlite_where": sa.text("customer_id IS NULL"),
    "postgresql_where": sa.text("customer_id IS NULL"),
}

contacts = sa.Table(
    "contacts",
    metadata,
    # `seq` is the intake order; AUTOINCREMENT (SQLite) and an identity (PostgreSQL) never
    # hand out a number twice, so the queue's last tie-break survives restarts.
    sa.Column("seq", _serial(), sa.Identity(), primary_key=True),
    sa.Column("id", sa.String(), nullable=False, unique=True),
    sa.Column("idempotency_key", sa.String(), nullable=True, unique=True),
    sa.Column("channel", sa.String(), nullable=False),
    sa.Column("arrived_at", sa.Double(), nullable=False),
    sa.Column("criteria", JSONText(), nullable=False),
    sa.Column("customer_id", sa.String(), nullable=True),
    sa.Column("customer_name", sa.Text(), nullable=False),
    sa.Column("phone", sa.String(), nullable=False),
    sa.Column("email", sa.String(), nullable=False),
    sa.Column("priority", sa.Integer(), nullable=False),
    sa.Column("language", sa.String(), nullable=True),
    sa.Column("required_skills", JSONText(), nullable=False),
    sa.Column("preferred", JSONText(), nullable=False),
    sa.Column("team", sa.String(), nullable=True),
    sa.Column("status", sa.String(), nullable=False),
    sa.Column("offered_to", sa.String(), nullable=True),
    sa.Column("offer_expires_at", sa.Double(), nullable=True),
    sa.Column("assigned_to", sa.String(), nullable=True),
    sa.Column("declined_by", JSONText(), nullable=False),
    sa.Column("step", sa.Integer(), nullable=False),
    sa.Column("step_since", sa.Double(), nullable=False),
    sa.Column("pinned_to", sa.String(), nullable=True),
    sa.Column("pin_expires_at", sa.Double(), nullable=True),
    sa.Column("override", sa.Boolean(), nullable=False),
    sa.Column("outcome", sa.String(), nullable=True),
    sa.Column("finished_at", sa.Double(), nullable=True),
    sa.Column("payload", JSONText(), nullable=False),
    sa.Column("first_wait", sa.Double(), nullable=True),  # migration 0007: a funnel stage's wait
    sa.Index(None, "status", "seq"),
    sa.Index(None, "assigned_to", **not_null("assigned_to")),  # a new contact is nobody's yet
    sa.Index(None, "offered_to", **not_null("offered_to")),  # nor offered to anybody (migration 0014)
    sa.Index(None, "arrived_at"),
    # A customer's contacts (the client card, the CRM's customer page): the CRM gives every
    # contact with a phone or e-mail its customer; a new customer's id is the newest, so a new
    # person's lead goes at the end (migration 0014).
    sa.Index(None, "customer_id", **not_null("customer_id")),
    # Contacts the CRM has not seen (callbacks, contacts from before it, a failed look-up) are
    # found by phone or e-mail instead; a new lead, which has a customer, enters neither index.
    sa.Index(None, "phone", **_without_customer),
    sa.Index(None, "email", **_without_customer),
    sqlite_autoincrement=True,
)

managers = sa.Table(
    "managers",
    metadata,
    sa.Column("id", sa.String(), primary_key=True),
    sa.Column("name", sa.Text(), nullable=False),
    sa.Column("team", sa.String(), nullable=True),
    sa.Column("skills", JSONText(), nullable=False),
    sa.Column("languages", JSONText(), nullable=False),
    sa.Column("capacity", JSONText(), nullable=False),
    sa.Column("device", sa.String(), nullable=False),
    sa.Column("email", sa.String(), nullable=False),
    # "order" is reserved in SQL; a different name spares every query from quoting.
    sa.Column("sort_order", sa.Integer(), nullable=False),
    sa.Column("daily_cap", sa.Integer(), nullable=True),
    sa.Column("presence", sa.String(), nullable=False),
    sa.Column("pause_reason", sa.Text(), nullable=True),
    sa.Column("presence_since", sa.Double(), nullable=False),
    sa.Column("load", JSONText(), nullable=False),
    sa.Column("offer_contact_id", sa.String(), nullable=True),
    sa.Column("missed_in_row", sa.Integer(), nullable=False),
    sa.Column("last_heartbeat", sa.Double(), nullable=False),
    sa.Column("last_finished_at", sa.Double(), nullable=True),
    sa.Column("last_offered_at", sa.Double(), nullable=True),
    sa.Column("day", sa.String(), nullable=False),
    sa.Column("assigned_today", sa.Integer(), nullable=False),
    sa.Column("handled_today", sa.Integer(), nullable=False),
    sa.Column("device_busy", sa.Boolean(), nullable=False),
    sa.Column("active", sa.Boolean(), nullable=False),
)

decisions = sa.Table(
    "decisions",
    metadata,
    _log_key(),
    sa.Column("id", sa.String(), nullable=False, unique=True),
    sa.Column("at", sa.Double(), nullable=False),
    sa.Column("contact_id", sa.String(), nullable=False),
    sa.Column("manager_id", sa.String(), nullable=True),
    sa.Column("kind", sa.String(), nullable=False),
    sa.Column("policy_version", sa.String(), nullable=False),
    sa.Column("strategy", sa.String(), nullable=False),
    sa.Column("step", sa.Integer(), nullable=False),
    sa.Column("pool", sa.String(), nullable=False),
    sa.Column("candidates", JSONText(), nullable=False),
    sa.Column("filtered", JSONText(), nullable=False),
    sa.Column("filtered_counts", JSONText(), nullable=False),
    sa.Column("summary", sa.Text(), nullable=False),
    sa.Column("shadow", JSONText(), nullable=True),  # migration 0006: the shadow policy's pick
    sa.Index(None, "contact_id", "at"),
    sa.Index(None, "manager_id", "at"),
    sa.Index(None, "at"),
    sqlite_autoincrement=True,
)

transitions = sa.Table(
    "transitions",
    metadata,
    _log_key(),
    sa.Column("manager_id", sa.String(), nullable=False),
    sa.Column("at", sa.Double(), nullable=False),
    sa.Column("old", sa.String(), nullable=False),
    sa.Column("new", sa.String(), nullable=False),
    sa.Column("reason", sa.Text(), nullable=True),
    sa.Column("cause", sa.Text(), nullable=False),
    sa.Index(None, "manager_id", "at"),
    sa.Index(None, "at"),
    sqlite_autoincrement=True,
)

audit = sa.Table(
    "audit",
    metadata,
    _log_key(),
    sa.Column("at", sa.Double(), nullable=False),
    sa.Column("actor", sa.String(), nullable=False),
    sa.Column("action", sa.String(), nullable=False),
    sa.Column("target", sa.String(), nullable=False),
    sa.Column("detail", JSONText(), nullable=False),
    sa.Index(None, "at"),
    sqlite_autoincrement=True,
)

tokens = sa.Table(
    "tokens",
    metadata,
    # Only the SHA-256 of the secret: a stolen database grants no access.
    sa.Column("token_hash", sa.String(), primary_key=True),
    sa.Column("role", sa.String(), nullable=False),
    sa.Column("manager_id", sa.String(), nullable=True),
    sa.Column("label", sa.Text(), nullable=False),
    sa.Column("created_at", sa.Double(), nullable=False),
    sa.Column("revoked_at", sa.Double(), nullable=True),
)

crm_sync = sa.Table(
    "crm_sync",
    metadata,
    # The outbox to an external CRM (`acd.crm.external`): one row per finished contact. `key`
    # is the Idempotency-Key the peer sees on every attempt; `body` is the snapshot taken
    # when the contact finished, so every retry sends the same thing.
    sa.Column("key", sa.String(), primary_key=True),
    sa.Column("contact_id", sa.String(), nullable=False, unique=True),
    sa.Column("body", JSONText(), nullable=False),
    # pending | sending | sent | failed (gave up after the last attempt, or refused)
    sa.Column("status", sa.String(), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("next_at", sa.Double(), nullable=True),
    sa.Column("last_error", sa.Text(), nullable=True),
    sa.Column("external_id", sa.String(), nullable=True),  # what the CRM made of it (activity, lead id)
    sa.Column("created_at", sa.Double(), nullable=False),
    sa.Column("sent_at", sa.Double(), nullable=True),
    sa.Index(None, "status", "next_at"),
    sa.Index(None, "created_at"),
)

cluster_events = sa.Table(
    "cluster_events",
    metadata,
    # Several servers on one PostgreSQL (`acd.cluster.bus`, which reads and writes it with plain
    # SQL): the events followers hand to the dispatching node, and each one's outcome.
    sa.Column("id", _serial(), primary_key=True, autoincrement=True),
    sa.Column("at", sa.Double(), nullable=False),
    sa.Column("origin", sa.String(200), nullable=False),
    sa.Column("body", sa.JSON(), nullable=False),
    sa.Column("handled_at", sa.Double(), nullable=True),
    sa.Column("outcome", sa.JSON(), nullable=True),
    sa.Index("ix_cluster_events_handled_at", "handled_at", "id"),
)

cluster_effects = sa.Table(
    "cluster_effects",
    metadata,
    # The dispatching node's offers, withdrawals and notices for the other nodes (`acd.cluster.bus`):
    # sent by NOTIFY, and kept a while so a node whose listening connection was down reads what it missed.
    sa.Column("id", _serial(), primary_key=True, autoincrement=True),
    sa.Column("at", sa.Double(), nullable=False),
    sa.Column("body", sa.JSON(), nullable=False),
    sa.Index("ix_cluster_effects_at", "at"),
)
