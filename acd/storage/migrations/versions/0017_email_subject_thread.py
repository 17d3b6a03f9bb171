"""Storage migration: e-mail threads by the customer's address and the subject.

Revision ID: 0017
Revises: 0015
Create Date: 2026-12-09

Some mail programs (older Outlook setups, some mobile apps, a new letter quoting our subject)
send a reply without In-Reply-To and References. Each message now keeps the customer's address
and its subject without "Re:"/"Fwd:" (`acd.messaging.mail.subject_key`, NULL when too generic
to thread by), and one index finds the thread of such a reply. Rows from before stay NULL and
match nothing. The index leaves NULL keys out, so a generic subject's row writes no entry in
the intake's commit. On the "messaging" branch, after 0015.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0015"
branch_labels: tuple[str, ...] | None = None
depends_on: str | None = None

_WHERE = sa.text("subject_key IS NOT NULL")


def upgrade() -> None:
    with op.batch_alter_table("email_messages") as batch:
        batch.add_column(sa.Column("address", sa.String(), nullable=True))
        batch.add_column(sa.Column("subject_key", sa.Text(), nullable=True))
    op.create_index(
        "ix_email_messages_address_subject_key_at",
        "email_messages",
        ["address", "subject_key", "at"],
        sqlite_where=_WHERE,
        postgresql_where=_WHERE,
    )


def downgrade() -> None:
    op.drop_index("ix_email_messages_address_subject_key_at", table_name="email_messages")
    with op.batch_alter_table("email_messages") as batch:
        batch.drop_column("subject_key")
        batch.drop_column("address")
