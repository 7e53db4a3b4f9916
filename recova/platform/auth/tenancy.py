"""The tenant a request works on, and who may reach it.

The tenant of a request comes from its principal (a tenant user's membership, or an
OAuth client's tenant). Platform admins and agency users name it in the path
(``/api/v1/tenants/<slug>/...``); an agency only reaches tenants it holds an active
contract with (``recova.platform.agencies.contracts``). A tenant principal naming another
tenant gets 404, exactly as if the tenant did not exist, so ids and slugs of other
tenants leak nothing.
"""

from __future__ import annotations

from flask import g
from sqlalchemy import select
from sqlalchemy.orm import Session

from recova.platform.agencies.contracts import agency_has_active_contract
from recova.platform.auth.principal import Principal
from recova.platform.kernel.db import bind_session_to_schema
from recova.platform.kernel.errors import abort
from recova.tenants.models import Tenant, TenantStatus, tenant_today

NOT_FOUND = "no such tenant, or not one you may reach"


def resolve_request_tenant(
    session: Session, principal: Principal, named_slug: str | None
) -> Tenant:
    """The tenant this request works on; binds ``session`` to its schema or aborts 404."""
    home = principal.home_tenant
    if named_slug is None:
        if home is None:
            abort(404, message="name the tenant in the path: /api/v1/tenants/<slug>/...")
        tenant = home
    elif home is not None:
        if home.slug != named_slug:
            abort(404, message=NOT_FOUND)
        tenant = home
    else:
        found = session.scalar(select(Tenant).where(Tenant.slug == named_slug))
        if found is None:
            abort(404, message=NOT_FOUND)
        tenant = found
        if principal.is_agency_user:
            if tenant.status != TenantStatus.ACTIVE or principal.agency_id is None:
                abort(404, message=NOT_FOUND)
            # Contracts run by the tenant's calendar, so "today" is the tenant's today.
            today = tenant_today(tenant.timezone)
            if not agency_has_active_contract(
                session, agency_id=principal.agency_id, tenant_id=tenant.id, day=today
            ):
                abort(404, message=NOT_FOUND)
        elif not principal.is_platform_admin:
            abort(404, message=NOT_FOUND)
    bind_session_to_schema(session, tenant.schema_name)
    # As ``tenant_scope`` does: services that write events read the tenant from the session.
    session.info["tenant"] = tenant
    g.tenant = tenant
    return tenant
