"""Tenant schema: indexes of the portal's agency scorecards

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-14 14:00:00

The scorecards (``recova.platform.reports.agencies``) read one month per agency; without
these, each figure would scan the whole book's placements, attempts or promises.

- ``ix_placements_agency_started``: an agency's placements by start date (with the id, for
  the keyset of its placement list), holding the balance: new placements of a month are an
  index-only range.
- ``ix_placements_agency_reach``: an agency's placements by the day up to which they are
  credited (``PLACEMENT_REACH``, the same expression as the query): the book it worked in
  a month is a range from the month's first day, not every placement it ever had.
- ``ix_placements_agency_recalled``: an agency's recalls by date (and id, for the keyset).
- ``ix_contact_attempts_agency_time``: an agency's attempts the gate let through by time,
  holding status, result and third-party: the right-party-contact rate is an index-only
  range (0013's index serves the blocked ones).
- ``ix_promises_judged_time``: judged promises by when they were judged.
- ``ix_disputes_created``: disputes by when they were opened.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

T = "tenant"
#: ``recova.platform.reports.agencies.PLACEMENT_REACH``, as it was when this ran.
REACH = "greatest(coalesce(grace_until, ends_on + grace_days), coalesce(recalled_on, ends_on))"


def upgrade() -> None:
    op.create_index(
        "ix_placements_agency_started",
        "placements",
        ["agency_id", "started_on", "id"],
        postgresql_include=["balance_at_placement", "currency"],
        schema=T,
    )
    op.create_index(
        "ix_placements_agency_reach",
        "placements",
        ["agency_id", sa.text(REACH)],
        postgresql_include=["started_on", "balance_at_placement", "currency"],
        schema=T,
    )
    op.create_index(
        "ix_placements_agency_recalled",
        "placements",
        ["agency_id", "recalled_on", "id"],
        postgresql_where=sa.text("recalled_on IS NOT NULL"),
        schema=T,
    )
    op.create_index(
        "ix_contact_attempts_agency_time",
        "contact_attempts",
        ["agency_id", "attempted_at"],
        postgresql_include=["status", "result", "third_party"],
        postgresql_where=sa.text("status <> 'blocked' AND agency_id IS NOT NULL"),
        schema=T,
    )
    op.create_index(
        "ix_promises_judged_time",
        "promises",
        ["evaluated_at"],
        postgresql_include=["case_id", "status", "created_at"],
        postgresql_where=sa.text("status IN ('kept', 'partly_kept', 'broken')"),
        schema=T,
    )
    op.create_index(
        "ix_disputes_created",
        "disputes",
        ["created_at"],
        postgresql_include=["case_id"],
        schema=T,
    )


def downgrade() -> None:
    op.drop_index("ix_disputes_created", "disputes", schema=T)
    op.drop_index("ix_promises_judged_time", "promises", schema=T)
    op.drop_index("ix_contact_attempts_agency_time", "contact_attempts", schema=T)
    op.drop_index("ix_placements_agency_recalled", "placements", schema=T)
    op.drop_index("ix_placements_agency_reach", "placements", schema=T)
    op.drop_index("ix_placements_agency_started", "placements", schema=T)
