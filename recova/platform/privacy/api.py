"""Privacy over the API: the tenant's retention settings, and revealing one identifier."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint
from sqlalchemy import select

from recova.platform.auth.access import access
from recova.platform.auth.models import Role
from recova.platform.auth.principal import current_principal
from recova.platform.kernel.api import SelectPage, tenant_routes
from recova.platform.kernel.extension import platform
from recova.platform.kernel.request_scope import db_session
from recova.platform.privacy import schemas
from recova.platform.privacy.models import PersonalDataReveal
from recova.platform.privacy.reveal import Revealed, reveal
from recova.platform.privacy.settings import current_settings, save_settings
from recova.tenants.scope import current_tenant

blp = Blueprint("privacy", __name__, description="Personal data: reveal, retention")


@tenant_routes(blp, "/privacy/settings")
class Settings(MethodView):
    @access(Role.TENANT_ADMIN, Role.PLATFORM_ADMIN, scope="tenant:read", tenant=True)
    @blp.response(200, schemas.PrivacySettingsSchema)
    def get(self) -> Any:
        """Retention period and reveal rate limit (defaults until saved)."""
        return current_settings(db_session())

    @access(Role.TENANT_ADMIN, tenant=True)
    @blp.arguments(schemas.PrivacySettingsSchema)
    @blp.response(200, schemas.PrivacySettingsSchema)
    def put(self, data: dict[str, Any]) -> Any:
        """Replace the settings; the change is an audit event."""
        principal = current_principal()
        assert principal is not None
        return save_settings(db_session(), actor=principal, **data)


@tenant_routes(blp, "/privacy/reveals")
class RevealLog(MethodView):
    @access(Role.TENANT_ADMIN, Role.PLATFORM_ADMIN, scope="audit:read", tenant=True)
    @blp.arguments(schemas.RevealQuerySchema, location="query")
    @blp.response(200, schemas.RevealRecordSchema(many=True))
    @blp.paginate(SelectPage)
    def get(self, query: dict[str, Any]) -> Any:
        """Who revealed which identifier of which debtor, when and why; newest first."""
        statement = select(PersonalDataReveal).order_by(PersonalDataReveal.id.desc())
        if "debtor_id" in query:
            statement = statement.where(PersonalDataReveal.debtor_id == query["debtor_id"])
        return statement


@tenant_routes(blp, "/debtors/<int:debtor_id>/reveal")
class Reveal(MethodView):
    @access(
        Role.TENANT_ADMIN,
        Role.AGENCY_MANAGER,
        Role.COLLECTOR,
        scope="privacy:reveal",
        tenant=True,
    )
    @blp.arguments(schemas.RevealRequestSchema)
    @blp.response(200, schemas.RevealedSchema)
    def post(self, data: dict[str, Any], debtor_id: int) -> Revealed:
        """Reveal a national id or one contact's value, with a reason (audited, rate-limited).

        Agency staff reach only debtors of cases placed with their agency (collectors:
        assigned to them); anyone else's debtor answers 404.
        """
        principal = current_principal()
        assert principal is not None
        return reveal(
            db_session(),
            objects=platform(),
            tenant_id=current_tenant().id,
            principal=principal,
            debtor_id=debtor_id,
            field=data["field"],
            reason=data["reason"],
            contact_id=data.get("contact_id"),
        )
