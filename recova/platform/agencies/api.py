"""Platform-admin routes for agencies."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate
from sqlalchemy import select

from recova.platform.agencies.models import Agency, AgencyStatus
from recova.platform.agencies.services import create_agency, update_agency
from recova.platform.auth.access import access
from recova.platform.auth.models import Role
from recova.platform.kernel.api import SelectPage, StrictSchema, one_or_404
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
        return create_agency(db_session(), **data)


@blp.route("/platform/agencies/<int:agency_id>")
class AgencyItem(MethodView):
    @access(Role.PLATFORM_ADMIN)
    @blp.response(200, AgencySchema)
    def get(self, agency_id: int) -> Agency:
        """Show one agency."""
        return _agency(agency_id)

    @access(Role.PLATFORM_ADMIN)
    @blp.arguments(AgencyUpdateSchema)
    @blp.response(200, AgencySchema)
    def patch(self, data: dict[str, Any], agency_id: int) -> Agency:
        """Rename or suspend an agency."""
        return update_agency(
            _agency(agency_id),
            name=data.get("name"),
            status=AgencyStatus(data["status"]) if "status" in data else None,
        )


def _agency(agency_id: int) -> Agency:
    return one_or_404(select(Agency).where(Agency.id == agency_id), f"agency {agency_id}")
