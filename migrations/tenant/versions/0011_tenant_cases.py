"""Tenant schema: indexes of the portal's case list and case timeline

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-14 12:00:00

- ``accounts``: one index per sort of the case list (days past due, balance owed,
  last update), each with the account id as its tiebreaker, so a keyset page of a
  million-case book is an index range scan that stops after one page.
- ``contact_attempts``: blocked attempts by case and time (the existing indexes leave
  blocked rows out, for the gate's counts never include them), for the case timeline.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

T = "tenant"
#: The same expression as ``recova.platform.cases.browse.BALANCE``, so the planner uses it.
BALANCE = (
    "(outstanding_principal + outstanding_interest + outstanding_fees + outstanding_penalties)"
)


def upgrade() -> None:
    op.create_index("ix_accounts_dpd_id", "accounts", ["days_past_due", "id"], schema=T)
    op.create_index("ix_accounts_balance_id", "accounts", [sa.text(BALANCE), "id"], schema=T)
    op.create_index("ix_accounts_updated_id", "accounts", ["updated_at", "id"], schema=T)
    op.create_index(
        "ix_contact_attempts_blocked_case_time",
        "contact_attempts",
        ["case_id", "attempted_at"],
        postgresql_where=sa.text("status = 'blocked'"),
        schema=T,
    )


def downgrade() -> None:
    op.drop_index("ix_contact_attempts_blocked_case_time", "contact_attempts", schema=T)
    for name in ("ix_accounts_updated_id", "ix_accounts_balance_id", "ix_accounts_dpd_id"):
        op.drop_index(name, "accounts", schema=T)
