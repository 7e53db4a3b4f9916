"""The fixtures' fast tenants (tests/tenant_clone.py) are built exactly as provisioning
builds a tenant: same tables, columns, constraints, indexes, triggers, functions, types,
privileges, sequences and migration version."""

from __future__ import annotations

from flask import Flask

from recova.platform.kernel.extension import platform
from tests.tenant_clone import check_clone


def test_a_cloned_tenant_has_the_catalog_of_a_provisioned_one(app: Flask) -> None:
    with platform(app).db.session() as session:
        try:
            check_clone(session)
        finally:
            session.rollback()
