"""Storage migration: a contact's own wait for its first escalation step (a funnel stage's
`wait` for a repeat customer).

Revision ID: 0007
Revises: 0001
Create Date: 2026-11-23

A branch of its own ("first_wait") off the core revision, like every feature's change.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0001"
branch_labels: tuple[str, ...] | None = ("first_wait",)
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("contacts") as batch:
        batch.add_column(sa.Column("first_wait", sa.Double(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("contacts") as batch:
        batch.drop_column("first_wait")
