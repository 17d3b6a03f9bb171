"""Storage migration: the shadow policy's choice beside each routing decision.

Revision ID: 0006
Revises: 0001
Create Date: 2026-11-23

A branch of its own ("shadow") off the core revision, like every feature's tables.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0001"
branch_labels: tuple[str, ...] | None = ("shadow",)
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("decisions") as batch:
        batch.add_column(sa.Column("shadow", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("decisions") as batch:
        batch.drop_column("shadow")
