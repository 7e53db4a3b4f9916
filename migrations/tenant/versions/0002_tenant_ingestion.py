"""Tenant schema: ingestion (mappings, sources, files, runs, row errors) and payments

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 19:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from recova.tenants.migrate import current_tenant_schema

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

T = "tenant"
NOW = sa.text("now()")


def _enum(name: str, *values: str, create: bool = True) -> sa.Enum:
    return postgresql.ENUM(*values, name=name, schema=T, create_type=create)


def upgrade() -> None:
    for name, values in (
        ("feed_kind", ("portfolio", "payments")),
        ("run_mode", ("delta", "snapshot")),
        ("run_status", ("queued", "running", "completed", "failed")),
        ("payment_kind", ("payment", "reversal")),
        ("paid_to", ("tenant", "agency", "platform")),
    ):
        _enum(name, *values).create(op.get_bind())

    # Accounts, cases and contacts learn what ingestion needs. ALTER statements do not
    # go through the schema translate map, so they name the tenant's schema directly.
    schema = current_tenant_schema()
    op.add_column("accounts", sa.Column("overdue_amount", sa.Numeric(20, 4)), schema=schema)
    op.add_column("accounts", sa.Column("interest_rate", sa.Numeric(9, 6)), schema=schema)
    op.add_column("accounts", sa.Column("row_hash", sa.LargeBinary()), schema=schema)
    op.add_column("accounts", sa.Column("profile_digest", sa.LargeBinary()), schema=schema)
    op.add_column("accounts", sa.Column("withdrawn_at", sa.DateTime(timezone=True)), schema=schema)
    op.add_column("accounts", sa.Column("withdrawn_by_run_id", sa.Integer()), schema=schema)
    op.add_column("cases", sa.Column("close_reason", sa.String(32)), schema=schema)
    op.drop_index("ix_tenant_contacts_debtor_id", table_name="contacts", schema=schema)
    op.create_unique_constraint(
        "uq_contacts_debtor_value", "contacts", ["debtor_id", "kind", "value_index"], schema=schema
    )

    op.create_table(
        "ingestion_mappings",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("kind", _enum("feed_kind", create=False), nullable=False),
        sa.Column("columns", postgresql.JSONB(), nullable=False),
        sa.Column("options", postgresql.JSONB(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_ingestion_mappings"),
        sa.UniqueConstraint("name", name="uq_ingestion_mappings_name"),
        schema=T,
    )
    op.create_table(
        "ingestion_sources",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("connector", sa.String(32), nullable=False),
        sa.Column("options", postgresql.JSONB(), nullable=False),
        sa.Column("auth_header", sa.String(64)),
        sa.Column("auth_value_ciphertext", sa.LargeBinary()),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_ingestion_sources"),
        sa.UniqueConstraint("name", name="uq_ingestion_sources_name"),
        schema=T,
    )
    op.create_table(
        "ingestion_files",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("connector", sa.String(32), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_ingestion_files"),
        schema=T,
    )
    op.create_table(
        "ingestion_file_chunks",
        sa.Column("file_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["file_id"],
            [f"{T}.ingestion_files.id"],
            name="fk_ingestion_file_chunks_file_id_ingestion_files",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("file_id", "seq", name="pk_ingestion_file_chunks"),
        schema=T,
    )
    op.create_table(
        "ingestion_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", _enum("feed_kind", create=False), nullable=False),
        sa.Column("connector", sa.String(32), nullable=False),
        sa.Column("file_id", sa.Integer()),
        sa.Column("source_id", sa.Integer()),
        sa.Column("mapping_id", sa.Integer(), nullable=False),
        sa.Column("mapping_snapshot", postgresql.JSONB(), nullable=False),
        sa.Column("mode", _enum("run_mode", create=False), nullable=False),
        sa.Column("all_or_nothing", sa.Boolean(), nullable=False),
        sa.Column("status", _enum("run_status", create=False), nullable=False),
        sa.Column("message", sa.Text()),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("received", sa.Integer(), nullable=False),
        sa.Column("inserted", sa.Integer(), nullable=False),
        sa.Column("updated", sa.Integer(), nullable=False),
        sa.Column("unchanged", sa.Integer(), nullable=False),
        sa.Column("rejected", sa.Integer(), nullable=False),
        sa.Column("recalled", sa.Integer(), nullable=False),
        sa.Column("total_estimate", sa.Integer()),
        sa.Column("checkpoint", postgresql.JSONB()),
        sa.Column("source_info", postgresql.JSONB(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("requested_by", sa.Integer()),
        sa.Column("job_id", sa.String(128)),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.CheckConstraint(
            "(file_id IS NOT NULL) <> (source_id IS NOT NULL)",
            name="ck_ingestion_runs_exactly_one_source",
        ),
        sa.ForeignKeyConstraint(
            ["file_id"],
            [f"{T}.ingestion_files.id"],
            name="fk_ingestion_runs_file_id_ingestion_files",
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["source_id"],
            [f"{T}.ingestion_sources.id"],
            name="fk_ingestion_runs_source_id_ingestion_sources",
        ),
        sa.ForeignKeyConstraint(
            ["mapping_id"],
            [f"{T}.ingestion_mappings.id"],
            name="fk_ingestion_runs_mapping_id_ingestion_mappings",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_ingestion_runs"),
        schema=T,
    )
    op.create_index("ix_tenant_ingestion_runs_status", "ingestion_runs", ["status"], schema=T)
    op.create_table(
        "ingestion_row_errors",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("row_number", sa.Integer(), nullable=False),
        sa.Column("column", sa.String(255)),
        sa.Column("value", sa.Text()),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            [f"{T}.ingestion_runs.id"],
            name="fk_ingestion_row_errors_run_id_ingestion_runs",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_ingestion_row_errors"),
        schema=T,
    )
    op.create_index(
        "ix_tenant_ingestion_row_errors_run_id", "ingestion_row_errors", ["run_id"], schema=T
    )
    op.create_table(
        "ingestion_seen",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("external_id", sa.String(128), nullable=False),
        sa.Column("row_number", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            [f"{T}.ingestion_runs.id"],
            name="fk_ingestion_seen_run_id_ingestion_runs",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", "external_id", name="pk_ingestion_seen"),
        schema=T,
    )
    op.create_table(
        "payments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("external_id", sa.String(128), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("kind", _enum("payment_kind", create=False), nullable=False),
        sa.Column("amount", sa.Numeric(20, 4), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("paid_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("channel", sa.String(32)),
        sa.Column("paid_to", _enum("paid_to", create=False), nullable=False),
        sa.Column("reverses_id", sa.Integer()),
        sa.Column("run_id", sa.Integer()),
        sa.Column("row_hash", sa.LargeBinary()),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.CheckConstraint("amount > 0", name="ck_payments_amount_positive"),
        sa.CheckConstraint("char_length(currency) = 3", name="ck_payments_currency_iso"),
        sa.CheckConstraint(
            "(kind = 'reversal') = (reverses_id IS NOT NULL)",
            name="ck_payments_reversal_has_original",
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], [f"{T}.accounts.id"], name="fk_payments_account_id_accounts"
        ),
        sa.ForeignKeyConstraint(
            ["reverses_id"], [f"{T}.payments.id"], name="fk_payments_reverses_id_payments"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_payments"),
        sa.UniqueConstraint("external_id", name="uq_payments_external_id"),
        schema=T,
    )
    op.create_index("ix_tenant_payments_account_id", "payments", ["account_id"], schema=T)
    op.create_index("ix_tenant_payments_paid_at", "payments", ["paid_at"], schema=T)
    op.create_index("ix_tenant_payments_reverses_id", "payments", ["reverses_id"], schema=T)


def downgrade() -> None:
    for table in (
        "payments",
        "ingestion_seen",
        "ingestion_row_errors",
        "ingestion_runs",
        "ingestion_file_chunks",
        "ingestion_files",
        "ingestion_sources",
        "ingestion_mappings",
    ):
        op.drop_table(table, schema=T)
    schema = current_tenant_schema()
    op.drop_constraint("uq_contacts_debtor_value", "contacts", schema=schema)
    op.create_index("ix_tenant_contacts_debtor_id", "contacts", ["debtor_id"], schema=schema)
    op.drop_column("cases", "close_reason", schema=schema)
    for column in (
        "withdrawn_by_run_id",
        "withdrawn_at",
        "profile_digest",
        "row_hash",
        "interest_rate",
        "overdue_amount",
    ):
        op.drop_column("accounts", column, schema=schema)
    for enum_type in ("paid_to", "payment_kind", "run_status", "run_mode", "feed_kind"):
        op.execute(f'DROP TYPE IF EXISTS "{schema}".{enum_type}')
