"""Tenant schema: indexes of the portal's pages on a big book

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03 14:00:00

- ``ix_case_segments_segment``: the case list's segment filter, and the names of the
  segments in use for its drop-down, walked one index probe per name
  (``recova.platform.cases.browse.segment_names``) instead of a ``DISTINCT`` that read
  every case's segment (about a million rows on every list page).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

T = "tenant"


def upgrade() -> None:
    op.create_index("ix_case_segments_segment", "case_segments", ["segment"], schema=T)


def downgrade() -> None:
    op.drop_index("ix_case_segments_segment", "case_segments", schema=T)
