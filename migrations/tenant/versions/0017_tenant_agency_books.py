"""Tenant schema: indexes of the agency workspace's placements and approvals pages

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-21 10:00:00

- ``ix_placements_active_agency_ends``: an agency's active placements in order of their
  end date (the placements page pages through them by ``(ends_on, id)``; the count of
  those ending within a week is a range on it).
- ``ix_placements_recalled_agency``: an agency's recalled placements by recall date,
  newest first (the page's other tab, and the count of this month's recalls).
- ``ix_settlements_agency_created``: an agency's recent settlement offers (those passed
  to the tenant, with what became of them), without reading every tenant's offers.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

T = "tenant"


def upgrade() -> None:
    op.create_index(
        "ix_placements_active_agency_ends",
        "placements",
        ["agency_id", "ends_on", "id"],
        postgresql_where=sa.text("recalled_on IS NULL"),
        schema=T,
    )
    op.create_index(
        "ix_placements_recalled_agency",
        "placements",
        ["agency_id", "recalled_on", "id"],
        postgresql_where=sa.text("recalled_on IS NOT NULL"),
        schema=T,
    )
    op.create_index(
        "ix_settlements_agency_created",
        "settlements",
        ["agency_id", "created_at"],
        schema=T,
    )


def downgrade() -> None:
    op.drop_index("ix_settlements_agency_created", "settlements", schema=T)
    op.drop_index("ix_placements_recalled_agency", "placements", schema=T)
    op.drop_index("ix_placements_active_agency_ends", "placements", schema=T)
