"""Alembic environment for the shared ``platform`` schema."""

from alembic import context

import recova.platform.entry.all_models  # noqa: F401 - registers every table on Base.metadata
from recova.tenants.migrate import run_shared_environment

run_shared_environment(context)
