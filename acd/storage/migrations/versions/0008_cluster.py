"""Storage migration: the event table several `acd serve` processes on one PostgreSQL share.

Revision ID: 0008
Revises: 0001
Create Date: 2026-12-01

A branch of its own ("cluster") off the core revision, like every feature's change. A
follower node appends the events it cannot handle itself (accept, presence, finish...);
the node holding the dispatcher lock handles them in id order and writes the outcome back.
The table exists on SQLite too (harmless there: cluster mode needs PostgreSQL).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0001"
branch_labels: tuple[str, ...] | None = ("cluster",)
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "cluster_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("at", sa.Double(), nullable=False),
        sa.Column("origin", sa.String(200), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("handled_at", sa.Double(), nullable=True),
        sa.Column("outcome", sa.JSON(), nullable=True),
    )
    op.create_index("ix_cluster_events_handled_at", "cluster_events", ["handled_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_cluster_events_handled_at", table_name="cluster_events")
    op.drop_table("cluster_events")
