"""Tenant schema: the snapshot recall guard, row warnings and unverified contact points

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 12:00:00

- ``ingestion_settings``: one row per tenant (defaults until saved) holding the recall
  guard: whether it is on and the share of the open book, in percent, a snapshot may
  recall without an explicit confirmation.
- ``ingestion_runs``: ``warnings`` (rows loaded with a contact point left out), the
  guard's state (``recall_confirmed``, ``recall_held``, ``held_at``) and the run status
  ``held`` (a snapshot whose rows are loaded and whose recall waits for confirmation).
- ``ingestion_row_errors.severity``: ``error`` (the row was rejected) or ``warning``.
- ``contacts.verified``: false for a phone number that is possible but not valid by the
  ``phonenumbers`` metadata; such a number is kept, and shown as unverified.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from recova.tenants.migrate import current_tenant_schema

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

T = "tenant"
NOW = sa.text("now()")
OLD_RUN_STATUSES = ("queued", "running", "completed", "failed")


def upgrade() -> None:
    # ALTER statements do not go through the schema translate map: name the real schema.
    schema = current_tenant_schema()
    # PostgreSQL 12+ allows this inside the migration's transaction; the new value is
    # only used by later transactions (a run is never held while its schema is created).
    op.execute(f"ALTER TYPE \"{schema}\".run_status ADD VALUE IF NOT EXISTS 'held'")
    op.create_table(
        "ingestion_settings",
        sa.Column("id", sa.SmallInteger(), nullable=False),
        sa.Column("recall_guard", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("recall_guard_percent", sa.Numeric(5, 2), server_default="20", nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.CheckConstraint("id = 1", name="ck_ingestion_settings_single_row"),
        sa.CheckConstraint(
            "recall_guard_percent > 0 AND recall_guard_percent <= 100",
            name="ck_ingestion_settings_recall_guard_percent",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_ingestion_settings"),
        schema=T,
    )
    for column in (
        sa.Column("warnings", sa.Integer(), server_default="0", nullable=False),
        sa.Column("recall_confirmed", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("recall_held", sa.Integer(), nullable=True),
        sa.Column("held_at", sa.DateTime(timezone=True), nullable=True),
    ):
        op.add_column("ingestion_runs", column, schema=schema)
    op.add_column(
        "ingestion_row_errors",
        sa.Column("severity", sa.String(8), server_default="error", nullable=False),
        schema=schema,
    )
    op.execute(
        f'ALTER TABLE "{schema}".ingestion_row_errors ADD CONSTRAINT'
        " ck_ingestion_row_errors_severity_known CHECK (severity IN ('error', 'warning'))"
    )
    op.add_column(
        "contacts",
        sa.Column("verified", sa.Boolean(), server_default=sa.true(), nullable=False),
        schema=schema,
    )


def downgrade() -> None:
    schema = current_tenant_schema()
    s = f'"{schema}"'
    op.drop_column("contacts", "verified", schema=schema)
    op.drop_column("ingestion_row_errors", "severity", schema=schema)  # and its check
    for column in ("held_at", "recall_held", "recall_confirmed", "warnings"):
        op.drop_column("ingestion_runs", column, schema=schema)
    op.drop_table("ingestion_settings", schema=T)
    # An enum value cannot be dropped: a held run becomes failed, and the type is rebuilt.
    op.execute(f"UPDATE {s}.ingestion_runs SET status = 'failed' WHERE status = 'held'")  # noqa: S608 - the schema is a validated, quoted name
    op.execute(f"ALTER TYPE {s}.run_status RENAME TO run_status_0009")
    values = ", ".join(f"'{v}'" for v in OLD_RUN_STATUSES)
    op.execute(f"CREATE TYPE {s}.run_status AS ENUM ({values})")
    op.execute(
        f"ALTER TABLE {s}.ingestion_runs ALTER COLUMN status TYPE {s}.run_status"
        f" USING status::text::{s}.run_status"
    )
    op.execute(f"DROP TYPE {s}.run_status_0009")
