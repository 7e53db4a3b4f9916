"""Platform-admin routes for agencies."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate
from sqlalchemy import select

from recova.platform.agencies.models import Agency, AgencyStatus
from recova.platform.agencies.services import AgencyError, create_agency
from recova.platform.auth.access import access
from recova.platform.auth.models import Role
from recova.platform.kernel.api import SelectPage, StrictSchema
from recova.platform.kernel.errors import abort
from recova.platform.kernel.request_scope import db_session

blp = Blueprint("agencies", __name__, description="Collection agencies")


class AgencyCreateSchema(StrictSchema):
    slug = fields.Str(required=True, validate=validate.Length(min=1, max=56))
    name = fields.Str(required=True, validate=validate.Length(min=1, max=200))


class AgencyUpdateSchema(StrictSchema):
    name = fields.Str(validate=validate.Length(min=1, max=200))
    status = fields.Str(validate=validate.OneOf([s.value for s in AgencyStatus]))


class AgencySchema(Schema):
    id = fields.Int()
    slug = fields.Str()
    name = fields.Str()
    status = fields.Enum(AgencyStatus, by_value=True)
    created_at = fields.DateTime()


@blp.route("/platform/agencies")
class AgencyCollection(MethodView):
    @access(Role.PLATFORM_ADMIN)
    @blp.response(200, AgencySchema(many=True))
    @blp.paginate(SelectPage)
    def get(self) -> Any:
        """List agencies."""
        return select(Agency).order_by(Agency.slug)

    @access(Role.PLATFORM_ADMIN)
    @blp.arguments(AgencyCreateSchema)
    @blp.response(201, AgencySchema)
    def post(self, data: dict[str, Any]) -> Agency:
        """Register an agency."""
        try:
            return create_agency(db_session(), **data)
        except AgencyError as exc:
            abort(409 if "exists" in str(exc) else 422, message=str(exc))


@blp.route("/platform/agencies/<int:agency_id>")
class AgencyItem(MethodView):
    @access(Role.PLATFORM_ADMIN)
    @blp.response(200, AgencySchema)
    def get(self, agency_id: int) -> Agency:
        """Show one agency."""
        return _agency_or_404(agency_id)

    @access(Role.PLATFORM_ADMIN)
    @blp.arguments(AgencyUpdateSchema)
    @blp.response(200, AgencySchema)
    def patch(self, data: dict[str, Any], agency_id: int) -> Agency:
        """Rename or suspend an agency."""
        agency = _agency_or_404(agency_id)
        if "name" in data:
            agency.name = data["name"]
        if "status" in data:
            agency.status = AgencyStatus(data["status"])
        return agency


def _agency_or_404(agency_id: int) -> Agency:
    agency = db_session().get(Agency, agency_id)
    if agency is None:
        abort(404, message=f"no agency {agency_id}")
    return agency
