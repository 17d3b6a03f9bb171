"""Storage migration: notifications by creation time, for the newest-first list.

Revision ID: 0015
Revises: 0005
Create Date: 2026-12-07

The list sorted every notification to show the newest hundred (185,000 after a year: 0.7 s).
Notifications are written when a customer or manager is told something, never by the
intake's commit. On the "messaging" branch, after its tables.
"""

from __future__ import annotations

from alembic import op

revision: str = "0015"
down_revision: str | None = "0005"
branch_labels: tuple[str, ...] | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_index("ix_notifications_created_at", "notifications", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_notifications_created_at", table_name="notifications")
