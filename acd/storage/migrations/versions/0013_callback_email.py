"""Storage migration: a callback request keeps the e-mail address its form gave.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07

A customer who asks for a call back may leave an e-mail address, so that, where no SMS
gateway is configured, they are told by e-mail that the request is in and how the attempts
go. Empty for the requests stored before. On the "telephony" branch, after 0012.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: tuple[str, ...] | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("callbacks") as batch:
        batch.add_column(sa.Column("email", sa.String(), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("callbacks") as batch:
        batch.drop_column("email")
