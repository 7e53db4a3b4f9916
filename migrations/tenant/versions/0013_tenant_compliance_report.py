"""Tenant schema: indexes of the portal's compliance page

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-14 13:00:00

- ``ix_contact_attempts_blocked_time``: blocked attempts by time, holding the rule, the
  agency and the user, so "blocked attempts by rule, agency and person in a period" is
  one index-only range scan (the gate's indexes leave blocked rows out; 0011's blocked
  index leads with the case, which a period across every case cannot use).
- ``ix_contact_attempts_first_contact``: only the debtor's own connected calls and
  delivered messages, by case and time: the first contact of each case, which starts
  the validation-notice period, is read from it alone.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

T = "tenant"


def upgrade() -> None:
    op.create_index(
        "ix_contact_attempts_blocked_time",
        "contact_attempts",
        ["attempted_at"],
        postgresql_include=["blocked_rule", "agency_id", "user_id"],
        postgresql_where=sa.text("status = 'blocked'"),
        schema=T,
    )
    op.create_index(
        "ix_contact_attempts_first_contact",
        "contact_attempts",
        ["case_id", "attempted_at"],
        postgresql_where=sa.text(
            "status = 'completed' AND NOT third_party AND result IN ('connected', 'delivered')"
        ),
        schema=T,
    )


def downgrade() -> None:
    op.drop_index("ix_contact_attempts_first_contact", "contact_attempts", schema=T)
    op.drop_index("ix_contact_attempts_blocked_time", "contact_attempts", schema=T)
