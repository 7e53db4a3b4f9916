"""Alembic environment for one tenant schema (``-x tenant=SLUG`` from the Alembic CLI)."""

from alembic import context

from recova.tenants.migrate import run_tenant_environment

run_tenant_environment(context)
