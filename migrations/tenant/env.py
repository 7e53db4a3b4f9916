"""Alembic environment for one tenant schema (``-x tenant=SLUG`` from the Alembic CLI)."""

from alembic import context

import recova.platform.entry.all_models  # noqa: F401 - registers every table on Base.metadata
from recova.tenants.migrate import run_tenant_environment

run_tenant_environment(context)
