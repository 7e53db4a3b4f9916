"""Tenant schema: indexes for browsing the audit chain newest first by actor and date

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-14 12:00:00

- ``ix_audit_events_actor_seq``: one actor's events newest first (keyset on ``seq``)
  without walking the whole chain.
- ``ix_audit_events_occurred_at``: a date range becomes a ``seq`` range in two index
  look-ups (timestamps never run backwards along the chain).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

T = "tenant"


def upgrade() -> None:
    op.create_index("ix_audit_events_actor_seq", "audit_events", ["actor", "seq"], schema=T)
    op.create_index("ix_audit_events_occurred_at", "audit_events", ["occurred_at"], schema=T)


def downgrade() -> None:
    op.drop_index("ix_audit_events_occurred_at", table_name="audit_events", schema=T)
    op.drop_index("ix_audit_events_actor_seq", table_name="audit_events", schema=T)
