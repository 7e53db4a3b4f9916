"""Shared schema: collector profiles and workloads; placement and grace periods on contracts

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-05 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "platform"
NOW = sa.text("now()")


def upgrade() -> None:
    op.add_column(
        "agency_contracts",
        sa.Column("placement_days", sa.Integer(), server_default="60", nullable=False),
        schema=S,
    )
    op.add_column(
        "agency_contracts",
        sa.Column("grace_days", sa.Integer(), server_default="10", nullable=False),
        schema=S,
    )
    op.create_check_constraint(
        op.f("ck_agency_contracts_placement_days_positive"),
        "agency_contracts",
        "placement_days > 0",
        schema=S,
    )
    op.create_check_constraint(
        op.f("ck_agency_contracts_grace_days_not_negative"),
        "agency_contracts",
        "grace_days >= 0",
        schema=S,
    )
    op.create_table(
        "collector_profiles",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("languages", postgresql.ARRAY(sa.String(16)), nullable=False),
        sa.Column("regions", postgresql.ARRAY(sa.String(64)), nullable=False),
        sa.Column("max_cases", sa.Integer(), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.CheckConstraint("max_cases > 0", name="ck_collector_profiles_max_cases_positive"),
        sa.ForeignKeyConstraint(
            ["user_id"],
            [f"{S}.users.id"],
            name="fk_collector_profiles_user_id_users",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", name="pk_collector_profiles"),
        schema=S,
    )
    op.create_table(
        "collector_workloads",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("open_cases", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            [f"{S}.users.id"],
            name="fk_collector_workloads_user_id_users",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            [f"{S}.tenants.id"],
            name="fk_collector_workloads_tenant_id_tenants",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", "tenant_id", name="pk_collector_workloads"),
        schema=S,
    )


def downgrade() -> None:
    op.drop_table("collector_workloads", schema=S)
    op.drop_table("collector_profiles", schema=S)
    op.drop_constraint(
        op.f("ck_agency_contracts_grace_days_not_negative"), "agency_contracts", schema=S
    )
    op.drop_constraint(
        op.f("ck_agency_contracts_placement_days_positive"), "agency_contracts", schema=S
    )
    op.drop_column("agency_contracts", "grace_days", schema=S)
    op.drop_column("agency_contracts", "placement_days", schema=S)
