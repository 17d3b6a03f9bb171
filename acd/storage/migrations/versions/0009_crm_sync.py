"""Storage migration: the outbox of finished contacts to an external CRM (`crm_sync`).

Revision ID: 0009
Revises: 0001
Create Date: 2026-12-01

A branch of its own ("crm_sync") off the core revision; a frozen snapshot like 0001.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0001"
branch_labels: tuple[str, ...] | None = ("crm_sync",)
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "crm_sync",
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("contact_id", sa.String(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_at", sa.Double(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("external_id", sa.String(), nullable=True),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("sent_at", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("key", name="pk_crm_sync"),
        sa.UniqueConstraint("contact_id", name="uq_crm_sync_contact_id"),
    )
    op.create_index("ix_crm_sync_status_next_at", "crm_sync", ["status", "next_at"])
    op.create_index("ix_crm_sync_created_at", "crm_sync", ["created_at"])


def downgrade() -> None:
    op.drop_table("crm_sync")
