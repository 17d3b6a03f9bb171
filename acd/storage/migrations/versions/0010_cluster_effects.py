"""Storage migration: the dispatching node's effects (offers, withdrawals, notices) kept for the other nodes.

Revision ID: 0010
Revises: 0008
Create Date: 2026-12-01

On the "cluster" branch, after the event table. The dispatching node sends each effect by
NOTIFY and keeps it here for a while; a node whose listening connection was down reads the
ones it missed by id (an offer of a call it holds must still ring). SQLite gets the table too
(harmless there: cluster mode needs PostgreSQL).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0008"
branch_labels: tuple[str, ...] | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "cluster_effects",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("at", sa.Double(), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
    )
    op.create_index("ix_cluster_effects_at", "cluster_effects", ["at"])


def downgrade() -> None:
    op.drop_index("ix_cluster_effects_at", table_name="cluster_effects")
    op.drop_table("cluster_effects")
