"""Storage migration: deals by closing time, for the day report's sales leaders.

Revision ID: 0016
Revises: 0014
Create Date: 2026-12-07

The leaders (the deals won and lost in the two weeks up to a day) read every deal, a year's
in each dashboard refresh. Deals are written by managers and imports, never by the intake's
commit; an open deal has no closing time and is left out. On the "crm" branch, after 0014.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0014"
branch_labels: tuple[str, ...] | None = None
depends_on: str | None = None

_WHERE = sa.text("closed_at IS NOT NULL")


def upgrade() -> None:
    op.create_index("ix_crm_deals_closed_at", "crm_deals", ["closed_at"], sqlite_where=_WHERE, postgresql_where=_WHERE)


def downgrade() -> None:
    op.drop_index("ix_crm_deals_closed_at", table_name="crm_deals")
