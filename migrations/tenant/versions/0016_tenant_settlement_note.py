"""Tenant schema: the reason a settlement offer was asked for

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-20 14:00:00

- ``settlements.request_note``: why the collector asks for the discount, typed on the
  workspace's case screen, shown to whoever approves the offer; free text about the
  debtor, so retention erases it with the decision note.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from recova.tenants.migrate import current_tenant_schema

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# ALTER statements do not go through the schema translate map: they name the tenant's
# schema directly.
def upgrade() -> None:
    schema = current_tenant_schema()
    op.add_column("settlements", sa.Column("request_note", sa.String(500)), schema=schema)


def downgrade() -> None:
    op.drop_column("settlements", "request_note", schema=current_tenant_schema())
