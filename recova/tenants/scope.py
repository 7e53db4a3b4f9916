"""``tenant_scope``, the one way into a tenant's data, and the tenant of a request.

Jobs, commands and services open a tenant's session with ``tenant_scope``; a request's
tenant is resolved once by its access rule (``recova.platform.auth.tenancy``) and read
back with ``current_tenant``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from flask import g
from sqlalchemy import select
from sqlalchemy.orm import Session

from recova.platform.kernel.db import Database, bind_session_to_schema
from recova.platform.kernel.extension import platform
from recova.platform.kernel.logs import note_job_tenant
from recova.tenants.models import Tenant


def current_tenant() -> Tenant:
    """The tenant resolved for this request (only inside tenant-scoped views)."""
    return g.tenant


@contextlib.contextmanager
def tenant_scope(
    tenant: Tenant | int | str, *, db: Database | None = None, pinned: bool = False
) -> Iterator[Session]:
    """A session bound to one tenant's schema, committed on success, rolled back on error.

    ``tenant`` may be a ``Tenant``, its id or its slug. This is the one way jobs,
    commands and services reach tenant data, ORM and raw SQL alike: set-based runners
    take ``ScopedConnection(session)`` for a driver cursor in the session's transaction
    and the quoted schema name. ``pinned`` keeps one connection across the session's
    commits (a runner holding a session-level advisory lock while it commits by steps).
    """
    if db is None:
        db = platform().db
    with contextlib.ExitStack() as stack:
        session = stack.enter_context(db.pinned_session()) if pinned else db.session()
        try:
            if isinstance(tenant, Tenant):
                found: Tenant | None = tenant
            elif isinstance(tenant, int):
                found = session.get(Tenant, tenant)
            else:
                found = session.scalar(select(Tenant).where(Tenant.slug == tenant))
            if found is None:
                raise LookupError(f"no tenant {tenant!r}")
            bind_session_to_schema(session, found.schema_name)
            session.info["tenant"] = found
            note_job_tenant(found.slug, found.id)
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()
