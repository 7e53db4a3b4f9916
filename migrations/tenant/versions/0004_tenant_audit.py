"""Tenant schema: the hash-chained audit log (append-only), exported heads, privacy settings,
the reveals of personal data (their reasons erasable)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 22:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from recova.tenants.migrate import current_tenant_schema

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

T = "tenant"
NOW = sa.text("now()")


def upgrade() -> None:
    schema = current_tenant_schema()
    op.create_table(
        "audit_events",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("subject_type", sa.String(32), server_default="", nullable=False),
        sa.Column("subject_id", sa.String(64), server_default="", nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
        sa.CheckConstraint("seq > 0", name="ck_audit_events_seq_positive"),
        sa.PrimaryKeyConstraint("seq", name="pk_audit_events"),
        schema=T,
    )
    op.create_index("ix_audit_events_action", "audit_events", ["action"], schema=T)
    op.create_index(
        "ix_audit_events_subject", "audit_events", ["subject_type", "subject_id"], schema=T
    )
    # Append-only for every role, the application's included: rows can be inserted and
    # read, never updated, deleted or truncated. Only a superuser who deliberately turns
    # triggers off can change a row, and verification then names the row.
    op.execute(
        f"""
        CREATE FUNCTION "{schema}".audit_events_append_only() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'audit events are append-only: % refused', TG_OP
                USING ERRCODE = 'insufficient_privilege';
        END
        $$
        """
    )
    op.execute(
        f"""
        CREATE TRIGGER audit_events_no_change BEFORE UPDATE OR DELETE ON "{schema}".audit_events
        FOR EACH ROW EXECUTE FUNCTION "{schema}".audit_events_append_only()
        """
    )
    op.execute(
        f"""
        CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON "{schema}".audit_events
        FOR EACH STATEMENT EXECUTE FUNCTION "{schema}".audit_events_append_only()
        """
    )
    op.execute(f'REVOKE UPDATE, DELETE, TRUNCATE ON "{schema}".audit_events FROM PUBLIC')

    op.create_table(
        "audit_head_exports",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("head_seq", sa.BigInteger(), nullable=False),
        sa.Column("head_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("exported_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("day", name="pk_audit_head_exports"),
        schema=T,
    )
    op.create_table(
        "privacy_settings",
        sa.Column("id", sa.SmallInteger(), nullable=False),
        sa.Column("retention_days", sa.Integer(), server_default="1095", nullable=False),
        sa.Column("reveals_per_hour", sa.Integer(), server_default="20", nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.CheckConstraint("id = 1", name="ck_privacy_settings_single_row"),
        sa.CheckConstraint("retention_days >= 30", name="ck_privacy_settings_retention_days"),
        sa.CheckConstraint(
            "reveals_per_hour BETWEEN 1 AND 1000", name="ck_privacy_settings_reveals_per_hour"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_privacy_settings"),
        schema=T,
    )
    op.add_column(
        "debtors",
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True),
        schema=schema,
    )
    op.create_table(
        "personal_data_reveals",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("debtor_id", sa.Integer(), nullable=False),
        sa.Column("field", sa.String(16), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("revealed_by", sa.String(128), nullable=False),
        sa.Column("revealed_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.ForeignKeyConstraint(
            ["debtor_id"], [f"{T}.debtors.id"], name="fk_personal_data_reveals_debtor_id_debtors"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_personal_data_reveals"),
        schema=T,
    )
    op.create_index(
        "ix_personal_data_reveals_debtor_id", "personal_data_reveals", ["debtor_id"], schema=T
    )


def downgrade() -> None:
    schema = current_tenant_schema()
    op.drop_table("personal_data_reveals", schema=T)
    op.drop_column("debtors", "erased_at", schema=schema)
    op.drop_table("privacy_settings", schema=T)
    op.drop_table("audit_head_exports", schema=T)
    op.drop_table("audit_events", schema=T)
    op.execute(f'DROP FUNCTION "{schema}".audit_events_append_only()')
