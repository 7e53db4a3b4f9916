"""Shared schema: the transactional outbox (jobs now, webhook events later)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-10 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "platform"
NOW = sa.text("now()")


def upgrade() -> None:
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.Column("kind", sa.String(8), server_default="job", nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=True),
        sa.Column("queue", sa.String(128), nullable=True),
        sa.Column("func", sa.String(255), nullable=True),
        sa.Column(
            "kwargs",
            postgresql.JSONB(),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "options",
            postgresql.JSONB(),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("job_id", sa.String(255), nullable=True),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.CheckConstraint("kind IN ('job', 'event')", name="ck_outbox_kind_known"),
        sa.CheckConstraint(
            "kind <> 'job' OR (queue IS NOT NULL AND func IS NOT NULL AND job_id IS NOT NULL)",
            name="ck_outbox_job_complete",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_outbox"),
        schema=S,
    )
    op.create_index(
        "ix_outbox_unpublished",
        "outbox",
        ["id"],
        schema=S,
        postgresql_where=sa.text("published_at IS NULL"),
    )
    op.create_index(
        "ix_outbox_published_at",
        "outbox",
        ["published_at"],
        schema=S,
        postgresql_where=sa.text("published_at IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_published_at", table_name="outbox", schema=S)
    op.drop_index("ix_outbox_unpublished", table_name="outbox", schema=S)
    op.drop_table("outbox", schema=S)
