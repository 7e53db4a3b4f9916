"""Shared schema: settlement discount limits of agencies (collectors) and contracts (managers)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 22:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "platform"


def upgrade() -> None:
    op.add_column(
        "agencies",
        sa.Column("collector_discount_limit", sa.Numeric(5, 2), server_default="0", nullable=False),
        schema=S,
    )
    op.add_column(
        "agency_contracts",
        sa.Column(
            "settlement_discount_limit", sa.Numeric(5, 2), server_default="0", nullable=False
        ),
        schema=S,
    )
    op.create_check_constraint(
        op.f("ck_agency_contracts_settlement_limit_percent"),
        "agency_contracts",
        "settlement_discount_limit BETWEEN 0 AND 100",
        schema=S,
    )


def downgrade() -> None:
    op.drop_constraint(
        op.f("ck_agency_contracts_settlement_limit_percent"), "agency_contracts", schema=S
    )
    op.drop_column("agency_contracts", "settlement_discount_limit", schema=S)
    op.drop_column("agencies", "collector_discount_limit", schema=S)
