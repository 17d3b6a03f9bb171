"""Storage migration: callback requests and their dialling attempts.

Revision ID: 0004
Revises: 0001
Create Date: 2026-11-24

Its own branch (`telephony`) off the core revision; a frozen snapshot like 0001.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0001"
branch_labels: tuple[str, ...] | None = ("telephony",)
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "callbacks",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("contact_id", sa.String(), nullable=False),
        sa.Column("phone", sa.String(), nullable=False),
        sa.Column("customer_name", sa.Text(), nullable=False),
        sa.Column("language", sa.String(), nullable=True),
        sa.Column("criteria", sa.Text(), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("requested_at", sa.Double(), nullable=False),
        sa.Column("not_before", sa.Double(), nullable=False),
        sa.Column("next_at", sa.Double(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("last_result", sa.String(), nullable=True),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_callbacks"),
        sa.UniqueConstraint("contact_id", name="uq_callbacks_contact_id"),
    )
    op.create_index("ix_callbacks_status_next_at", "callbacks", ["status", "next_at"])
    op.create_table(
        "callback_attempts",
        sa.Column("n", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), sa.Identity(), nullable=False),
        sa.Column("callback_id", sa.String(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("manager_id", sa.String(), nullable=True),
        sa.Column("started_at", sa.Double(), nullable=False),
        sa.Column("ended_at", sa.Double(), nullable=True),
        sa.Column("action_id", sa.String(), nullable=False),
        sa.Column("originate_reason", sa.String(), nullable=True),
        sa.Column("dial_status", sa.String(), nullable=True),
        sa.Column("result", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("n", name="pk_callback_attempts"),
    )
    op.create_index("ix_callback_attempts_callback_id", "callback_attempts", ["callback_id"])


def downgrade() -> None:
    op.drop_table("callback_attempts")
    op.drop_table("callbacks")
