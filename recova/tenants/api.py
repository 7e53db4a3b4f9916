"""Platform-admin routes for tenants, and every principal's view of its tenant profile."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint
from sqlalchemy import select

from recova.platform.auth.access import access
from recova.platform.auth.models import Role
from recova.platform.kernel.api import SelectPage, tenant_routes
from recova.platform.kernel.errors import abort
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
        try:
            return services.provision_tenant(db_session(), **data)
        except services.TenantConflict as exc:
            abort(409, message=str(exc))
        except services.TenantError as exc:
            abort(422, message=str(exc), errors={"json": {exc.field: [str(exc)]}})


@blp.route("/platform/tenants/<slug:slug>")
class TenantItem(MethodView):
    @access(Role.PLATFORM_ADMIN)
    @blp.response(200, TenantSchema)
    def get(self, slug: str) -> Tenant:
        """Show one tenant."""
        return _tenant_or_404(slug)

    @access(Role.PLATFORM_ADMIN)
    @blp.arguments(TenantUpdateSchema)
    @blp.response(200, TenantSchema)
    def patch(self, data: dict[str, Any], slug: str) -> Tenant:
        """Rename, disable or re-enable a tenant."""
        tenant = _tenant_or_404(slug)
        if "name" in data:
            tenant.name = data["name"]
        if "status" in data:
            services.set_tenant_status(db_session(), tenant, TenantStatus(data["status"]))
        return tenant


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


def _tenant_or_404(slug: str) -> Tenant:
    tenant = services.get_tenant(db_session(), slug)
    if tenant is None:
        abort(404, message=f"no tenant {slug!r}")
    return tenant
