"""Tenant schema: the collector's queue reads only today's promises

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-22 10:00:00

- ``ix_promises_pending_due``: open promises by due date. The work queue (*My queue* and
  *Next case*, ``recova.platform.work.queue`` through ``allocation.services.portfolio_sql``
  with ``verdicts``) asks of each of the collector's cases whether an open promise falls
  due today; PostgreSQL answers that with one hashed pass over the promises, which
  without this index was every pending promise of the tenant (40,000 of a
  million-case book, 986 buffers, 27-32 ms of a 120-225 ms statement in
  ``benchmarks/workspace.py``) and is now the ones due today, index-only (57 buffers,
  6 ms).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

T = "tenant"


def upgrade() -> None:
    op.create_index(
        "ix_promises_pending_due",
        "promises",
        ["due_date", "case_id"],
        postgresql_where=sa.text("status = 'pending'"),
        schema=T,
    )


def downgrade() -> None:
    op.drop_index("ix_promises_pending_due", "promises", schema=T)
