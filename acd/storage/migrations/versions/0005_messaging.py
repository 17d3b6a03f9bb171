"""Storage migration: e-mail threads and quarantine, notifications and their attempts, Twilio calls.

Revision ID: 0005
Revises: 0001
Create Date: 2026-11-24

Its own branch (`messaging`) off the core revision; a frozen snapshot like 0001.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0001"
branch_labels: tuple[str, ...] | None = ("messaging",)
depends_on: str | None = None


def _serial() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "email_messages",
        sa.Column("message_id", sa.String(), nullable=False),
        sa.Column("contact_id", sa.String(), nullable=True),
        sa.Column("direction", sa.String(), nullable=False),
        sa.Column("first_time", sa.Boolean(), nullable=False),
        sa.Column("sender", sa.String(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("message_id", name="pk_email_messages"),
    )
    op.create_index("ix_email_messages_contact_id", "email_messages", ["contact_id"])
    op.create_index("ix_email_messages_at", "email_messages", ["at"])
    op.create_table(
        "email_quarantine",
        sa.Column("n", _serial(), sa.Identity(), nullable=False),
        sa.Column("at", sa.Double(), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("message_id", sa.String(), nullable=True),
        sa.Column("sender", sa.String(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("raw", sa.LargeBinary(), nullable=True),
        sa.PrimaryKeyConstraint("n", name="pk_email_quarantine"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_email_quarantine_at", "email_quarantine", ["at"])
    op.create_table(
        "notifications",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("event_key", sa.String(), nullable=False),
        sa.Column("template", sa.String(), nullable=False),
        sa.Column("channel", sa.String(), nullable=False),
        sa.Column("recipient", sa.String(), nullable=False),
        sa.Column("language", sa.String(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("contact_id", sa.String(), nullable=True),
        sa.Column("manager_id", sa.String(), nullable=True),
        sa.Column("in_reply_to", sa.String(), nullable=True),
        sa.Column("quiet", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_at", sa.Double(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("external_id", sa.String(), nullable=True),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("sent_at", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_notifications"),
        sa.UniqueConstraint("event_key", name="uq_notifications_event_key"),
    )
    op.create_index("ix_notifications_status_next_at", "notifications", ["status", "next_at"])
    op.create_index("ix_notifications_contact_id", "notifications", ["contact_id"])
    op.create_table(
        "notification_attempts",
        sa.Column("n", _serial(), sa.Identity(), nullable=False),
        sa.Column("notification_id", sa.String(), nullable=False),
        sa.Column("at", sa.Double(), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("n", name="pk_notification_attempts"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_notification_attempts_notification_id", "notification_attempts", ["notification_id"])
    op.create_table(
        "twilio_calls",
        sa.Column("call_sid", sa.String(), nullable=False),
        sa.Column("contact_id", sa.String(), nullable=True),
        sa.Column("caller", sa.String(), nullable=False),
        sa.Column("called", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("call_sid", name="pk_twilio_calls"),
        sa.UniqueConstraint("contact_id", name="uq_twilio_calls_contact_id"),
    )


def downgrade() -> None:
    for table in ("twilio_calls", "notification_attempts", "notifications", "email_quarantine", "email_messages"):
        op.drop_table(table)
