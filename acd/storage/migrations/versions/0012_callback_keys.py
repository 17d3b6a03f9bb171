"""Storage migration: a callback request remembers the Idempotency-Key its form was sent with.

Revision ID: 0012
Revises: 0004
Create Date: 2026-12-07

The website widget sends a key with every form; a callback form sent twice (a double click,
a retry after a lost answer) must make one request, as a lead form makes one lead. Unique:
of two sends at the same moment, one row goes in. On the "telephony" branch, after its tables.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0004"
branch_labels: tuple[str, ...] | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("callbacks") as batch:
        batch.add_column(sa.Column("idempotency_key", sa.String(), nullable=True))
    op.create_index("ix_callbacks_idempotency_key", "callbacks", ["idempotency_key"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_callbacks_idempotency_key", table_name="callbacks")
    with op.batch_alter_table("callbacks") as batch:
        batch.drop_column("idempotency_key")
