"""Tenant schema: contact attempts, outcome codes, message templates, compliance policy

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28 22:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from recova.tenants.migrate import current_tenant_schema

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

T = "tenant"
NOW = sa.text("now()")
RESULTS = "'connected', 'no_answer', 'busy', 'wrong_number', 'refused', 'delivered', 'failed'"
CHANNELS = "'call_out', 'call_in', 'sms', 'email', 'letter', 'visit'"


def _created_at() -> sa.Column:  # type: ignore[type-arg]
    return sa.Column("created_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False)


def upgrade() -> None:
    # ALTER statements do not go through the schema translate map: name the real schema.
    schema = current_tenant_schema()
    for table in ("debtors", "contacts"):
        op.add_column(
            table,
            sa.Column("do_not_contact", sa.Boolean(), server_default=sa.false(), nullable=False),
            schema=schema,
        )

    op.create_table(
        "outcome_codes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(32), nullable=False),
        sa.Column("label", sa.String(200), nullable=False),
        sa.Column("result", sa.String(16), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        _created_at(),
        sa.CheckConstraint(f"result IN ({RESULTS})", name="ck_outcome_codes_result_known"),
        sa.PrimaryKeyConstraint("id", name="pk_outcome_codes"),
        sa.UniqueConstraint("code", name="uq_outcome_codes_code"),
        schema=T,
    )
    op.create_table(
        "message_templates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("audience", sa.String(16), nullable=False),
        sa.Column("subject", sa.String(200)),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        _created_at(),
        sa.CheckConstraint(
            "channel IN ('sms', 'email', 'letter')", name="ck_message_templates_channel_known"
        ),
        sa.CheckConstraint(
            "audience IN ('debtor', 'third_party')", name="ck_message_templates_audience_known"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_message_templates"),
        sa.UniqueConstraint("name", name="uq_message_templates_name"),
        schema=T,
    )
    op.create_table(
        "contact_attempts",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("debtor_id", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.Integer()),
        sa.Column("third_party", sa.Boolean(), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor_kind", sa.String(16), nullable=False),
        sa.Column("agency_id", sa.Integer()),
        sa.Column("user_id", sa.Integer()),
        sa.Column("client_id", sa.Integer()),
        sa.Column("template_id", sa.Integer()),
        sa.Column("pack_version", sa.String(32), nullable=False),
        sa.Column("policy_id", sa.Integer()),
        sa.Column("local_timezone", sa.String(64), nullable=False),
        sa.Column("blocked_rule", sa.String(64)),
        sa.Column("block_message", sa.String(300)),
        sa.Column("next_allowed_at", sa.DateTime(timezone=True)),
        sa.Column("outcome_code_id", sa.Integer()),
        sa.Column("result", sa.String(16)),
        sa.Column("notes", sa.Text()),
        sa.Column("recording_ref", sa.String(300)),
        sa.Column("completed_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint(f"channel IN ({CHANNELS})", name="ck_contact_attempts_channel_known"),
        sa.CheckConstraint(
            "status IN ('pending', 'completed', 'blocked')", name="ck_contact_attempts_status_known"
        ),
        sa.CheckConstraint(
            f"result IS NULL OR result IN ({RESULTS})", name="ck_contact_attempts_result_known"
        ),
        sa.CheckConstraint(
            "(status = 'completed') = (result IS NOT NULL)",
            name="ck_contact_attempts_result_when_done",
        ),
        sa.CheckConstraint(
            "(status = 'blocked') = (blocked_rule IS NOT NULL)",
            name="ck_contact_attempts_block_has_rule",
        ),
        sa.CheckConstraint(
            "actor_kind IN ('agency', 'tenant', 'client')", name="ck_contact_attempts_actor_known"
        ),
        sa.ForeignKeyConstraint(
            ["case_id"], [f"{T}.cases.id"], name="fk_contact_attempts_case_id_cases"
        ),
        sa.ForeignKeyConstraint(
            ["contact_id"], [f"{T}.contacts.id"], name="fk_contact_attempts_contact_id_contacts"
        ),
        sa.ForeignKeyConstraint(
            ["template_id"],
            [f"{T}.message_templates.id"],
            name="fk_contact_attempts_template_id_message_templates",
        ),
        sa.ForeignKeyConstraint(
            ["outcome_code_id"],
            [f"{T}.outcome_codes.id"],
            name="fk_contact_attempts_outcome_code_id_outcome_codes",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_contact_attempts"),
        schema=T,
    )
    for name, column in (
        ("ix_contact_attempts_debtor_time", "debtor_id"),
        ("ix_contact_attempts_case_time", "case_id"),
        ("ix_contact_attempts_contact_time", "contact_id"),
    ):
        op.create_index(
            name,
            "contact_attempts",
            [column, "attempted_at"],
            postgresql_where=sa.text("status <> 'blocked'"),
            schema=T,
        )
    op.create_table(
        "compliance_policies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("pack", sa.String(8), nullable=False),
        sa.Column("overrides", postgresql.JSONB(), nullable=False),
        sa.Column("effective_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.Integer()),
        _created_at(),
        sa.CheckConstraint("pack IN ('CN', 'US')", name="ck_compliance_policies_pack_known"),
        sa.PrimaryKeyConstraint("id", name="pk_compliance_policies"),
        schema=T,
    )
    op.create_index(
        "ix_tenant_compliance_policies_effective_from",
        "compliance_policies",
        ["effective_from"],
        schema=T,
    )
    op.create_table(
        "validation_notices",
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("recorded_by", sa.Integer()),
        _created_at(),
        sa.CheckConstraint(
            "channel IN ('letter', 'email', 'sms')", name="ck_validation_notices_channel_known"
        ),
        sa.ForeignKeyConstraint(
            ["case_id"], [f"{T}.cases.id"], name="fk_validation_notices_case_id_cases"
        ),
        sa.PrimaryKeyConstraint("case_id", name="pk_validation_notices"),
        schema=T,
    )


def downgrade() -> None:
    for table in (
        "validation_notices",
        "compliance_policies",
        "contact_attempts",
        "message_templates",
        "outcome_codes",
    ):
        op.drop_table(table, schema=T)
    schema = current_tenant_schema()
    for table in ("contacts", "debtors"):
        op.drop_column(table, "do_not_contact", schema=schema)
