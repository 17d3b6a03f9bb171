"""Storage migration: indexes for the client card, a manager's list and the CRM's lists and exports.

Revision ID: 0014
Revises: 0011
Create Date: 2026-12-07

Each answers a look-up that read a whole table on a year of data: a customer's contacts (the
card, the CRM's customer page: 60-110 ms), a manager's contacts with the ones offered to them,
customers and deals newest first (the export's pages sorted every customer). A web lead, the
intake's commit, enters two of them, both at their end: its customer's contacts (a new
customer's id is the newest) and the customers by creation time. The others leave out what
new leads hold: nothing is offered yet, and only contacts without a customer (the CRM never
saw them) are found by phone or e-mail. Deals are not written by the intake. On the "crm"
branch, after 0011 (the contacts table is older still).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0011"
branch_labels: tuple[str, ...] | None = None
depends_on: str | None = None

_INDEXES = (
    ("ix_contacts_customer_id", "contacts", ["customer_id"], "customer_id IS NOT NULL"),
    ("ix_contacts_offered_to", "contacts", ["offered_to"], "offered_to IS NOT NULL"),
    ("ix_contacts_phone", "contacts", ["phone"], "customer_id IS NULL"),
    ("ix_contacts_email", "contacts", ["email"], "customer_id IS NULL"),
    ("ix_crm_customers_created_at_id", "crm_customers", ["created_at", "id"], None),
    ("ix_crm_deals_opened_at_id", "crm_deals", ["opened_at", "id"], None),
)


def upgrade() -> None:
    for name, table, columns, where in _INDEXES:
        partial: dict[str, Any] = (
            {} if where is None else {"sqlite_where": sa.text(where), "postgresql_where": sa.text(where)}
        )
        op.create_index(name, table, columns, **partial)


def downgrade() -> None:
    for name, table, _columns, _where in reversed(_INDEXES):
        op.drop_index(name, table_name=table)
