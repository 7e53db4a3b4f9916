"""Tenant schema: debtors, contacts, accounts and cases

Revision ID: 0001
Revises:
Create Date: 2026-11-28 17:38:18.439779
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from recova.tenants.migrate import current_tenant_schema

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "debtors",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("external_id", sa.String(length=128), nullable=False),
        sa.Column("full_name", sa.String(length=200), nullable=False),
        sa.Column("national_id_ciphertext", sa.LargeBinary(), nullable=True),
        sa.Column("national_id_index", sa.LargeBinary(length=32), nullable=True),
        sa.Column("national_id_masked", sa.String(length=32), nullable=True),
        sa.Column("region", sa.String(length=64), nullable=True),
        sa.Column("timezone", sa.String(length=64), nullable=True),
        sa.Column("language", sa.String(length=16), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_debtors")),
        sa.UniqueConstraint("external_id", name=op.f("uq_debtors_external_id")),
        schema="tenant",
    )
    op.create_index(
        op.f("ix_tenant_debtors_national_id_index"),
        "debtors",
        ["national_id_index"],
        unique=False,
        schema="tenant",
    )
    op.create_table(
        "accounts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("external_id", sa.String(length=128), nullable=False),
        sa.Column("debtor_id", sa.Integer(), nullable=False),
        sa.Column("product", sa.String(length=64), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("original_principal", sa.Numeric(precision=20, scale=4), nullable=False),
        sa.Column("outstanding_principal", sa.Numeric(precision=20, scale=4), nullable=False),
        sa.Column("outstanding_interest", sa.Numeric(precision=20, scale=4), nullable=False),
        sa.Column("outstanding_fees", sa.Numeric(precision=20, scale=4), nullable=False),
        sa.Column("outstanding_penalties", sa.Numeric(precision=20, scale=4), nullable=False),
        sa.Column("due_date", sa.Date(), nullable=False),
        sa.Column("days_past_due", sa.Integer(), nullable=False),
        sa.Column("source_row", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("char_length(currency) = 3", name=op.f("ck_accounts_currency_iso")),
        sa.CheckConstraint("days_past_due >= 0", name=op.f("ck_accounts_dpd_non_negative")),
        sa.ForeignKeyConstraint(
            ["debtor_id"], ["tenant.debtors.id"], name=op.f("fk_accounts_debtor_id_debtors")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accounts")),
        sa.UniqueConstraint("external_id", name=op.f("uq_accounts_external_id")),
        schema="tenant",
    )
    op.create_index(
        op.f("ix_tenant_accounts_debtor_id"),
        "accounts",
        ["debtor_id"],
        unique=False,
        schema="tenant",
    )
    op.create_table(
        "contacts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("debtor_id", sa.Integer(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum("phone", "email", "address", name="contact_kind", schema="tenant"),
            nullable=False,
        ),
        sa.Column("relation", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("value_ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("value_index", sa.LargeBinary(length=32), nullable=False),
        sa.Column("value_masked", sa.String(length=64), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["debtor_id"],
            ["tenant.debtors.id"],
            name=op.f("fk_contacts_debtor_id_debtors"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contacts")),
        schema="tenant",
    )
    op.create_index(
        op.f("ix_tenant_contacts_debtor_id"),
        "contacts",
        ["debtor_id"],
        unique=False,
        schema="tenant",
    )
    op.create_index(
        op.f("ix_tenant_contacts_value_index"),
        "contacts",
        ["value_index"],
        unique=False,
        schema="tenant",
    )
    op.create_table(
        "cases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("debtor_id", sa.Integer(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "new",
                "placed",
                "in_progress",
                "promised",
                "on_plan",
                "settled",
                "paid",
                "on_hold",
                "recalled",
                "closed",
                name="case_status",
                schema="tenant",
            ),
            nullable=False,
        ),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["tenant.accounts.id"], name=op.f("fk_cases_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["debtor_id"], ["tenant.debtors.id"], name=op.f("fk_cases_debtor_id_debtors")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cases")),
        sa.UniqueConstraint("account_id", name=op.f("uq_cases_account_id")),
        schema="tenant",
    )
    op.create_index(
        op.f("ix_tenant_cases_debtor_id"), "cases", ["debtor_id"], unique=False, schema="tenant"
    )
    op.create_index(
        op.f("ix_tenant_cases_status"), "cases", ["status"], unique=False, schema="tenant"
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_tenant_cases_status"), table_name="cases", schema="tenant")
    op.drop_index(op.f("ix_tenant_cases_debtor_id"), table_name="cases", schema="tenant")
    op.drop_table("cases", schema="tenant")
    op.drop_index(op.f("ix_tenant_contacts_value_index"), table_name="contacts", schema="tenant")
    op.drop_index(op.f("ix_tenant_contacts_debtor_id"), table_name="contacts", schema="tenant")
    op.drop_table("contacts", schema="tenant")
    op.drop_index(op.f("ix_tenant_accounts_debtor_id"), table_name="accounts", schema="tenant")
    op.drop_table("accounts", schema="tenant")
    op.drop_index(
        op.f("ix_tenant_debtors_national_id_index"), table_name="debtors", schema="tenant"
    )
    op.drop_table("debtors", schema="tenant")
    schema = current_tenant_schema()
    for enum_type in ("case_status", "contact_kind"):
        op.execute(f'DROP TYPE IF EXISTS "{schema}".{enum_type}')
