"""Tenant schema: a case's attempts, blocked ones included, newest first

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-03 19:20:00

- ``ix_contact_attempts_case_newest``: ``GET /cases/<id>/attempts`` lists every attempt
  of the case, blocked ones too, newest first, and counts them for ``X-Pagination``. The
  gate's indexes leave blocked rows out, so neither could use them: at a million cases
  the list was a parallel scan of the whole table (381,286 rows removed, 22,000 buffers,
  310 ms) and its count another (95 ms); with this index they take 0.6 ms and 0.1 ms
  (``benchmarks/workspace.py``, the case screen's API side).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

T = "tenant"


def upgrade() -> None:
    op.create_index(
        "ix_contact_attempts_case_newest",
        "contact_attempts",
        ["case_id", sa.text("attempted_at DESC"), sa.text("id DESC")],
        schema=T,
    )


def downgrade() -> None:
    op.drop_index("ix_contact_attempts_case_newest", "contact_attempts", schema=T)
