"""Storage migration: the CRM (customers and their phone/e-mail keys, deals, history, vacations).

Revision ID: 0003
Revises: 0001
Create Date: 2026-11-24

A branch of its own ("crm") off the core revision; the store upgrades to all heads. A frozen
snapshot: every column is spelt out rather than imported from `acd.storage.crm`.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0001"
branch_labels: tuple[str, ...] | None = ("crm",)
depends_on: str | None = None


def _serial() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "crm_customers",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("account_manager", sa.String(), nullable=True),
        sa.Column("pinned_to", sa.String(), nullable=True),
        sa.Column("criteria", sa.Text(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_crm_customers"),
    )
    op.create_index("ix_crm_customers_account_manager", "crm_customers", ["account_manager"])

    op.create_table(
        "crm_customer_keys",
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("value", sa.String(), nullable=False),
        sa.Column("customer_id", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("kind", "value", name="pk_crm_customer_keys"),
    )
    op.create_index("ix_crm_customer_keys_customer_id", "crm_customer_keys", ["customer_id"])

    op.create_table(
        "crm_deals",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("customer_id", sa.String(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("amount", sa.Double(), nullable=True),
        sa.Column("segment", sa.Text(), nullable=False),
        sa.Column("owner", sa.String(), nullable=True),
        sa.Column("stage", sa.String(), nullable=False),
        sa.Column("stage_owner", sa.String(), nullable=True),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("opened_at", sa.Double(), nullable=False),
        sa.Column("stage_since", sa.Double(), nullable=False),
        sa.Column("last_activity", sa.Double(), nullable=False),
        sa.Column("closed_at", sa.Double(), nullable=True),
        sa.Column("contact_id", sa.String(), nullable=True),
        sa.Column("override", sa.Boolean(), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("lost_reason", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_crm_deals"),
    )
    op.create_index("ix_crm_deals_customer_id_status", "crm_deals", ["customer_id", "status"])
    op.create_index("ix_crm_deals_owner_status", "crm_deals", ["owner", "status"])
    op.create_index("ix_crm_deals_contact_id", "crm_deals", ["contact_id"])

    op.create_table(
        "crm_events",
        sa.Column("n", _serial(), sa.Identity(), nullable=False),
        sa.Column("at", sa.Double(), nullable=False),
        sa.Column("customer_id", sa.String(), nullable=False),
        sa.Column("deal_id", sa.String(), nullable=True),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("stage", sa.String(), nullable=True),
        sa.Column("manager_id", sa.String(), nullable=True),
        sa.Column("by", sa.String(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("n", name="pk_crm_events"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_crm_events_customer_id_at", "crm_events", ["customer_id", "at"])
    op.create_index("ix_crm_events_deal_id_at", "crm_events", ["deal_id", "at"])

    op.create_table(
        "crm_vacations",
        sa.Column("n", _serial(), sa.Identity(), nullable=False),
        sa.Column("manager_id", sa.String(), nullable=False),
        sa.Column("starts_at", sa.Double(), nullable=False),
        sa.Column("ends_at", sa.Double(), nullable=False),
        sa.Column("substitute", sa.String(), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("n", name="pk_crm_vacations"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_crm_vacations_manager_id_ends_at", "crm_vacations", ["manager_id", "ends_at"])


def downgrade() -> None:
    for table in ("crm_vacations", "crm_events", "crm_deals", "crm_customer_keys", "crm_customers"):
        op.drop_table(table)
