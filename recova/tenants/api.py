"""Platform-admin routes for tenants, and every principal's view of its tenant profile."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint
from sqlalchemy import select

from recova.platform.auth.access import access
from recova.platform.auth.models import Role
from recova.platform.kernel.api import SelectPage, one_or_404, tenant_routes
from recova.platform.kernel.request_scope import db_session
from recova.tenants import services
from recova.tenants.models import Tenant, TenantStatus
from recova.tenants.schemas import (
    TenantCreateSchema,
    TenantProfileSchema,
    TenantSchema,
    TenantUpdateSchema,
)
from recova.tenants.scope import current_tenant

blp = Blueprint("tenants", __name__, description="Tenants (lending platforms)")


@blp.route("/platform/tenants")
class TenantCollection(MethodView):
    @access(Role.PLATFORM_ADMIN)
    @blp.response(200, TenantSchema(many=True))
    @blp.paginate(SelectPage)
    def get(self) -> Any:
        """List tenants."""
        return select(Tenant).order_by(Tenant.slug)

    @access(Role.PLATFORM_ADMIN)
    @blp.arguments(TenantCreateSchema)
    @blp.response(201, TenantSchema)
    def post(self, data: dict[str, Any]) -> Tenant:
        """Provision a tenant: its row, its schema and its tables, in one transaction."""
        return services.provision_tenant(db_session(), **data)


@blp.route("/platform/tenants/<slug:slug>")
class TenantItem(MethodView):
    @access(Role.PLATFORM_ADMIN)
    @blp.response(200, TenantSchema)
    def get(self, slug: str) -> Tenant:
        """Show one tenant."""
        return _tenant(slug)

    @access(Role.PLATFORM_ADMIN)
    @blp.arguments(TenantUpdateSchema)
    @blp.response(200, TenantSchema)
    def patch(self, data: dict[str, Any], slug: str) -> Tenant:
        """Rename, disable or re-enable a tenant."""
        return services.update_tenant(
            db_session(),
            _tenant(slug),
            name=data.get("name"),
            status=TenantStatus(data["status"]) if "status" in data else None,
        )


@tenant_routes(blp, "/profile")
class TenantProfile(MethodView):
    @access(
        Role.TENANT_ADMIN,
        Role.TENANT_ANALYST,
        Role.PLATFORM_ADMIN,
        Role.AGENCY_MANAGER,
        Role.COLLECTOR,
        scope="tenant:read",
        tenant=True,
    )
    @blp.response(200, TenantProfileSchema)
    def get(self) -> Tenant:
        """The tenant's profile: name, jurisdiction, time zone and currency."""
        return current_tenant()


def _tenant(slug: str) -> Tenant:
    return one_or_404(select(Tenant).where(Tenant.slug == slug), f"tenant {slug!r}")
