"""Tenant schema: indexes of the agency manager's team page

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-21 15:00:00

The team page (``recova.platform.reports.team``) reads one day of each collector's work
per tenant; without these, two of its figures would read a whole table.

- ``ix_promises_creator_due``: promises by who made them and their due date, holding
  when they were made, their status, case and amount: the promises each collector made
  today (due today or later) and their kept rate over the promises due in the last 30
  days are index-only ranges per collector, never every promise of the tenant.
- ``ix_assignments_placement_time``: a placement's assignments in time order, ended ones
  included (the partial index of 0003 holds only the open one): the collector a payment
  credits is the one whose assignment was open when the money came in, found with one
  probe per payment of the day.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

T = "tenant"


def upgrade() -> None:
    op.create_index(
        "ix_promises_creator_due",
        "promises",
        ["created_by", "due_date"],
        postgresql_include=["created_at", "status", "case_id", "amount", "currency"],
        schema=T,
    )
    op.create_index(
        "ix_assignments_placement_time",
        "assignments",
        ["placement_id", "assigned_at"],
        postgresql_include=["collector_id", "ended_at"],
        schema=T,
    )


def downgrade() -> None:
    op.drop_index("ix_assignments_placement_time", "assignments", schema=T)
    op.drop_index("ix_promises_creator_due", "promises", schema=T)
