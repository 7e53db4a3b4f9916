"""Shared schema: the agency's payout on its contract (a share of commission or own rates)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 22:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "platform"


def upgrade() -> None:
    op.add_column(
        "agency_contracts",
        sa.Column("payout_mode", sa.String(8), server_default="share", nullable=False),
        schema=S,
    )
    op.add_column(
        "agency_contracts",
        sa.Column("payout_share", sa.Numeric(7, 4), server_default="0", nullable=False),
        schema=S,
    )
    op.add_column("agency_contracts", sa.Column("payout_rates", postgresql.JSONB()), schema=S)
    op.create_check_constraint(
        op.f("ck_agency_contracts_payout_mode_known"),
        "agency_contracts",
        "payout_mode IN ('share', 'rates')",
        schema=S,
    )
    op.create_check_constraint(
        op.f("ck_agency_contracts_payout_share_percent"),
        "agency_contracts",
        "payout_share >= 0 AND payout_share <= 100",
        schema=S,
    )
    op.create_check_constraint(
        op.f("ck_agency_contracts_payout_rates_with_mode"),
        "agency_contracts",
        "(payout_mode = 'rates') = (payout_rates IS NOT NULL)",
        schema=S,
    )


def downgrade() -> None:
    for name in ("payout_rates_with_mode", "payout_share_percent", "payout_mode_known"):
        op.drop_constraint(op.f(f"ck_agency_contracts_{name}"), "agency_contracts", schema=S)
    for column in ("payout_rates", "payout_share", "payout_mode"):
        op.drop_column("agency_contracts", column, schema=S)
