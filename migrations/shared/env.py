"""Alembic environment for the shared ``platform`` schema."""

from alembic import context

from recova.tenants.migrate import run_shared_environment

run_shared_environment(context)
