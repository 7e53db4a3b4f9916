"""Tenant schema: case work (settings, transitions, holds, promises, plans, settlements, disputes)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28 22:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from recova.tenants.migrate import current_tenant_schema

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

T = "tenant"
NOW = sa.text("now()")
MONEY = sa.Numeric(20, 4)
ENUMS = {
    "hold_reason": ("dispute", "legal"),
    "promise_status": ("pending", "kept", "partly_kept", "broken", "superseded"),
    "plan_status": ("active", "completed", "broken"),
    "instalment_status": ("open", "paid", "missed"),
    "settlement_status": ("pending_approval", "approved", "rejected", "expired", "paid"),
    "approval_level": ("collector", "manager", "tenant"),
    "dispute_status": ("open", "upheld", "adjusted", "rejected"),
}
CASE_STATUS = (
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
)


def _enum(name: str) -> postgresql.ENUM:
    values = CASE_STATUS if name == "case_status" else ENUMS[name]
    return postgresql.ENUM(*values, name=name, schema=T, create_type=False)


def _created_at() -> sa.Column:  # type: ignore[type-arg]
    return sa.Column("created_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False)


def _case_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["case_id"], [f"{T}.cases.id"], name=f"fk_{table}_case_id_cases")


def upgrade() -> None:
    for name, values in ENUMS.items():
        postgresql.ENUM(*values, name=name, schema=T).create(op.get_bind())

    op.create_table(
        "work_settings",
        sa.Column("id", sa.SmallInteger(), nullable=False),
        sa.Column("promise_grace_days", sa.Integer(), nullable=False),
        sa.Column("plan_grace_days", sa.Integer(), nullable=False),
        sa.Column("plan_max_misses", sa.Integer(), nullable=False),
        sa.Column("max_deferral_days", sa.Integer(), nullable=False),
        sa.Column("max_deferrals", sa.Integer(), nullable=False),
        sa.Column("settlement_max_days", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.CheckConstraint("id = 1", name="ck_work_settings_single_row"),
        sa.PrimaryKeyConstraint("id", name="pk_work_settings"),
        schema=T,
    )
    op.create_table(
        "case_transitions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("from_status", _enum("case_status"), nullable=False),
        sa.Column("to_status", _enum("case_status"), nullable=False),
        sa.Column("reason", sa.String(200)),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        _case_fk("case_transitions"),
        sa.PrimaryKeyConstraint("id", name="pk_case_transitions"),
        schema=T,
    )
    op.create_index("ix_tenant_case_transitions_case_id", "case_transitions", ["case_id"], schema=T)
    op.create_table(
        "case_holds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("reason", _enum("hold_reason"), nullable=False),
        sa.Column("held_from", _enum("case_status"), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.Column("released_at", sa.DateTime(timezone=True)),
        _case_fk("case_holds"),
        sa.PrimaryKeyConstraint("id", name="pk_case_holds"),
        schema=T,
    )
    op.create_index(
        "uq_case_holds_one_open_per_case",
        "case_holds",
        ["case_id"],
        unique=True,
        postgresql_where=sa.text("released_at IS NULL"),
        schema=T,
    )
    op.create_table(
        "promises",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("due_date", sa.Date(), nullable=False),
        sa.Column("status", _enum("promise_status"), nullable=False),
        sa.Column("paid_amount", MONEY, nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("evaluated_at", sa.DateTime(timezone=True)),
        _created_at(),
        sa.CheckConstraint("amount > 0", name="ck_promises_amount_positive"),
        _case_fk("promises"),
        sa.PrimaryKeyConstraint("id", name="pk_promises"),
        schema=T,
    )
    op.create_index("ix_tenant_promises_case_id", "promises", ["case_id"], schema=T)
    op.create_index(
        "uq_promises_one_pending_per_case",
        "promises",
        ["case_id"],
        unique=True,
        postgresql_where=sa.text("status = 'pending'"),
        schema=T,
    )
    op.create_table(
        "payment_plans",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("total_amount", MONEY, nullable=False),
        sa.Column("balance_at_creation", MONEY, nullable=False),
        sa.Column("status", _enum("plan_status"), nullable=False),
        sa.Column("paid_amount", MONEY, nullable=False),
        sa.Column("misses", sa.Integer(), nullable=False),
        sa.Column("deferrals", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True)),
        _created_at(),
        _case_fk("payment_plans"),
        sa.PrimaryKeyConstraint("id", name="pk_payment_plans"),
        schema=T,
    )
    op.create_index("ix_tenant_payment_plans_case_id", "payment_plans", ["case_id"], schema=T)
    op.create_index(
        "uq_payment_plans_one_active_per_case",
        "payment_plans",
        ["case_id"],
        unique=True,
        postgresql_where=sa.text("status = 'active'"),
        schema=T,
    )
    op.create_table(
        "plan_instalments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("plan_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("due_date", sa.Date(), nullable=False),
        sa.Column("original_due_date", sa.Date(), nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("paid_amount", MONEY, nullable=False),
        sa.Column("status", _enum("instalment_status"), nullable=False),
        sa.CheckConstraint("amount > 0", name="ck_plan_instalments_amount_positive"),
        sa.ForeignKeyConstraint(
            ["plan_id"],
            [f"{T}.payment_plans.id"],
            name="fk_plan_instalments_plan_id_payment_plans",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_plan_instalments"),
        sa.UniqueConstraint("plan_id", "seq", name="uq_plan_instalments_plan_seq"),
        schema=T,
    )
    op.create_table(
        "settlements",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("balance", MONEY, nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("discount_percent", sa.Numeric(5, 2), nullable=False),
        sa.Column("required_level", _enum("approval_level"), nullable=False),
        sa.Column("agency_id", sa.Integer()),
        sa.Column("status", _enum("settlement_status"), nullable=False),
        sa.Column("expires_on", sa.Date(), nullable=False),
        sa.Column("paid_amount", MONEY, nullable=False),
        sa.Column("requested_by", sa.String(64), nullable=False),
        sa.Column("decided_by", sa.String(64)),
        sa.Column("decided_at", sa.DateTime(timezone=True)),
        sa.Column("decision_note", sa.String(500)),
        sa.Column("ended_at", sa.DateTime(timezone=True)),
        _created_at(),
        sa.CheckConstraint(
            "amount > 0 AND amount <= balance", name="ck_settlements_amount_within_balance"
        ),
        _case_fk("settlements"),
        sa.PrimaryKeyConstraint("id", name="pk_settlements"),
        schema=T,
    )
    op.create_index("ix_tenant_settlements_case_id", "settlements", ["case_id"], schema=T)
    op.create_index(
        "uq_settlements_one_open_per_case",
        "settlements",
        ["case_id"],
        unique=True,
        postgresql_where=sa.text("status IN ('pending_approval', 'approved')"),
        schema=T,
    )
    op.create_table(
        "disputes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("grounds", sa.String(32), nullable=False),
        sa.Column("notes", sa.Text()),
        sa.Column("status", _enum("dispute_status"), nullable=False),
        sa.Column("opened_by", sa.String(64), nullable=False),
        sa.Column("resolved_by", sa.String(64)),
        sa.Column("resolved_at", sa.DateTime(timezone=True)),
        sa.Column("resolution_note", sa.Text()),
        _created_at(),
        _case_fk("disputes"),
        sa.PrimaryKeyConstraint("id", name="pk_disputes"),
        schema=T,
    )
    op.create_index("ix_tenant_disputes_case_id", "disputes", ["case_id"], schema=T)
    op.create_index(
        "uq_disputes_one_open_per_case",
        "disputes",
        ["case_id"],
        unique=True,
        postgresql_where=sa.text("status = 'open'"),
        schema=T,
    )


def downgrade() -> None:
    for table in (
        "disputes",
        "settlements",
        "plan_instalments",
        "payment_plans",
        "promises",
        "case_holds",
        "case_transitions",
        "work_settings",
    ):
        op.drop_table(table, schema=T)
    schema = current_tenant_schema()
    for enum_type in ENUMS:
        op.execute(f'DROP TYPE IF EXISTS "{schema}".{enum_type}')
