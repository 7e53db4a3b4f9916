"""Platform-admin routes for agency contracts."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate
from sqlalchemy import select

from recova.billing.contracts import AgencyContract
from recova.billing.services import (
    ContractConflict,
    ContractError,
    create_agency_contract,
    end_agency_contract,
)
from recova.platform.agencies.models import Agency
from recova.platform.api import SelectPage, StrictSchema
from recova.platform.auth.access import access
from recova.platform.auth.models import Role
from recova.platform.errors import abort
from recova.platform.request_scope import db_session
from recova.tenants.models import Tenant

blp = Blueprint("contracts", __name__, description="Agency contracts with tenants")


class ContractCreateSchema(StrictSchema):
    tenant = fields.Str(required=True, metadata={"description": "tenant slug"})
    agency = fields.Str(required=True, metadata={"description": "agency slug"})
    starts_on = fields.Date(required=True)
    ends_on = fields.Date(load_default=None, allow_none=True)
    placement_days = fields.Int(load_default=60, validate=validate.Range(min=1, max=3650))
    grace_days = fields.Int(load_default=10, validate=validate.Range(min=0, max=365))


class ContractUpdateSchema(StrictSchema):
    ends_on = fields.Date(required=True)


class ContractSchema(Schema):
    id = fields.Int()
    tenant = fields.Function(lambda c: c.tenant.slug)
    agency = fields.Function(lambda c: c.agency.slug)
    starts_on = fields.Date()
    ends_on = fields.Date(allow_none=True)
    placement_days = fields.Int()
    grace_days = fields.Int()
    created_at = fields.DateTime()


@blp.route("/platform/contracts")
class ContractCollection(MethodView):
    @access(Role.PLATFORM_ADMIN)
    @blp.response(200, ContractSchema(many=True))
    @blp.paginate(SelectPage)
    def get(self) -> Any:
        """List agency contracts."""
        return select(AgencyContract).order_by(AgencyContract.id)

    @access(Role.PLATFORM_ADMIN)
    @blp.arguments(ContractCreateSchema)
    @blp.response(201, ContractSchema)
    def post(self, data: dict[str, Any]) -> AgencyContract:
        """Contract an agency to a tenant for a period."""
        session = db_session()
        tenant = session.scalar(select(Tenant).where(Tenant.slug == data["tenant"]))
        agency = session.scalar(select(Agency).where(Agency.slug == data["agency"]))
        if tenant is None or agency is None:
            abort(
                422,
                message="unknown tenant or agency",
                errors={"json": {"tenant" if tenant is None else "agency": ["not found"]}},
            )
        try:
            return create_agency_contract(
                session,
                tenant=tenant,
                agency=agency,
                starts_on=data["starts_on"],
                ends_on=data["ends_on"],
                placement_days=data["placement_days"],
                grace_days=data["grace_days"],
            )
        except ContractConflict as exc:
            abort(409, message=str(exc))
        except ContractError as exc:
            abort(422, message=str(exc))


@blp.route("/platform/contracts/<int:contract_id>")
class ContractItem(MethodView):
    @access(Role.PLATFORM_ADMIN)
    @blp.response(200, ContractSchema)
    def get(self, contract_id: int) -> AgencyContract:
        """Show one contract."""
        return _contract_or_404(contract_id)

    @access(Role.PLATFORM_ADMIN)
    @blp.arguments(ContractUpdateSchema)
    @blp.response(200, ContractSchema)
    def patch(self, data: dict[str, Any], contract_id: int) -> AgencyContract:
        """End a contract on a date."""
        try:
            return end_agency_contract(db_session(), _contract_or_404(contract_id), data["ends_on"])
        except ContractConflict as exc:
            abort(409, message=str(exc))
        except ContractError as exc:
            abort(422, message=str(exc))


def _contract_or_404(contract_id: int) -> AgencyContract:
    contract = db_session().get(AgencyContract, contract_id)
    if contract is None:
        abort(404, message=f"no contract {contract_id}")
    return contract
