"""Shared schema: each user's saved portal language

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 13:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "platform"


def upgrade() -> None:
    # NULL: no choice saved yet, the browser's Accept-Language decides.
    op.add_column("users", sa.Column("locale", sa.String(16), nullable=True), schema=S)
    op.create_check_constraint(
        op.f("ck_users_locale_known"), "users", "locale IN ('en', 'zh_CN')", schema=S
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_users_locale_known"), "users", type_="check", schema=S)
    op.drop_column("users", "locale", schema=S)
