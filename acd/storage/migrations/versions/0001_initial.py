"""Storage migration: contacts, managers, the decision and transition logs, audit, tokens.

Revision ID: 0001
Revises:
Create Date: 2026-11-23

A frozen snapshot: it spells out every column instead of importing `acd.storage.tables`,
so later edits to the tables cannot change what this revision did.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def _serial() -> sa.types.TypeEngine[int]:
    # SQLite only makes an autoincrementing rowid alias out of exactly "INTEGER PRIMARY KEY".
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "contacts",
        sa.Column("seq", _serial(), sa.Identity(), nullable=False),
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("idempotency_key", sa.String(), nullable=True),
        sa.Column("channel", sa.String(), nullable=False),
        sa.Column("arrived_at", sa.Double(), nullable=False),
        sa.Column("criteria", sa.Text(), nullable=False),
        sa.Column("customer_id", sa.String(), nullable=True),
        sa.Column("customer_name", sa.Text(), nullable=False),
        sa.Column("phone", sa.String(), nullable=False),
        sa.Column("email", sa.String(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("language", sa.String(), nullable=True),
        sa.Column("required_skills", sa.Text(), nullable=False),
        sa.Column("preferred", sa.Text(), nullable=False),
        sa.Column("team", sa.String(), nullable=True),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("offered_to", sa.String(), nullable=True),
        sa.Column("offer_expires_at", sa.Double(), nullable=True),
        sa.Column("assigned_to", sa.String(), nullable=True),
        sa.Column("declined_by", sa.Text(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("step_since", sa.Double(), nullable=False),
        sa.Column("pinned_to", sa.String(), nullable=True),
        sa.Column("pin_expires_at", sa.Double(), nullable=True),
        sa.Column("override", sa.Boolean(), nullable=False),
        sa.Column("outcome", sa.String(), nullable=True),
        sa.Column("finished_at", sa.Double(), nullable=True),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_contacts"),
        sa.UniqueConstraint("id", name="uq_contacts_id"),
        sa.UniqueConstraint("idempotency_key", name="uq_contacts_idempotency_key"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_contacts_status_seq", "contacts", ["status", "seq"])
    op.create_index("ix_contacts_assigned_to", "contacts", ["assigned_to"])
    op.create_index("ix_contacts_arrived_at", "contacts", ["arrived_at"])

    op.create_table(
        "managers",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("team", sa.String(), nullable=True),
        sa.Column("skills", sa.Text(), nullable=False),
        sa.Column("languages", sa.Text(), nullable=False),
        sa.Column("capacity", sa.Text(), nullable=False),
        sa.Column("device", sa.String(), nullable=False),
        sa.Column("email", sa.String(), nullable=False),
        sa.Column("sort_order", sa.Integer(), nullable=False),
        sa.Column("daily_cap", sa.Integer(), nullable=True),
        sa.Column("presence", sa.String(), nullable=False),
        sa.Column("pause_reason", sa.Text(), nullable=True),
        sa.Column("presence_since", sa.Double(), nullable=False),
        sa.Column("load", sa.Text(), nullable=False),
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
        sa.PrimaryKeyConstraint("id", name="pk_managers"),
    )

    op.create_table(
        "decisions",
        sa.Column("n", _serial(), sa.Identity(), nullable=False),
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("at", sa.Double(), nullable=False),
        sa.Column("contact_id", sa.String(), nullable=False),
        sa.Column("manager_id", sa.String(), nullable=True),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("policy_version", sa.String(), nullable=False),
        sa.Column("strategy", sa.String(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("pool", sa.String(), nullable=False),
        sa.Column("candidates", sa.Text(), nullable=False),
        sa.Column("filtered", sa.Text(), nullable=False),
        sa.Column("filtered_counts", sa.Text(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("n", name="pk_decisions"),
        sa.UniqueConstraint("id", name="uq_decisions_id"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_decisions_contact_id_at", "decisions", ["contact_id", "at"])
    op.create_index("ix_decisions_manager_id_at", "decisions", ["manager_id", "at"])
    op.create_index("ix_decisions_at", "decisions", ["at"])

    op.create_table(
        "transitions",
        sa.Column("n", _serial(), sa.Identity(), nullable=False),
        sa.Column("manager_id", sa.String(), nullable=False),
        sa.Column("at", sa.Double(), nullable=False),
        sa.Column("old", sa.String(), nullable=False),
        sa.Column("new", sa.String(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("cause", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("n", name="pk_transitions"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_transitions_manager_id_at", "transitions", ["manager_id", "at"])
    op.create_index("ix_transitions_at", "transitions", ["at"])

    op.create_table(
        "audit",
        sa.Column("n", _serial(), sa.Identity(), nullable=False),
        sa.Column("at", sa.Double(), nullable=False),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("action", sa.String(), nullable=False),
        sa.Column("target", sa.String(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("n", name="pk_audit"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_audit_at", "audit", ["at"])

    op.create_table(
        "tokens",
        sa.Column("token_hash", sa.String(), nullable=False),
        sa.Column("role", sa.String(), nullable=False),
        sa.Column("manager_id", sa.String(), nullable=True),
        sa.Column("label", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("revoked_at", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("token_hash", name="pk_tokens"),
    )


def downgrade() -> None:
    for table in ("tokens", "audit", "transitions", "decisions", "managers", "contacts"):
        op.drop_table(table)
