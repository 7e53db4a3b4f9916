"""How tenants travel over the API."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from recova.platform.kernel.api import StrictSchema
from recova.tenants.models import Jurisdiction, TenantStatus


class TenantCreateSchema(StrictSchema):
    slug = fields.Str(required=True, validate=validate.Length(min=1, max=200))
    name = fields.Str(required=True, validate=validate.Length(min=1, max=200))
    jurisdiction = fields.Str(
        required=True, validate=validate.OneOf([j.value for j in Jurisdiction])
    )
    timezone = fields.Str(required=True)
    currency = fields.Str(required=True, validate=validate.Length(equal=3))
    settings = fields.Dict(load_default=dict)


class TenantUpdateSchema(StrictSchema):
    status = fields.Str(validate=validate.OneOf([s.value for s in TenantStatus]))
    name = fields.Str(validate=validate.Length(min=1, max=200))


class TenantSchema(Schema):
    id = fields.Int()
    slug = fields.Str()
    name = fields.Str()
    schema_name = fields.Str()
    status = fields.Enum(TenantStatus, by_value=True)
    jurisdiction = fields.Enum(Jurisdiction, by_value=True)
    timezone = fields.Str()
    currency = fields.Str()
    created_at = fields.DateTime()
    disabled_at = fields.DateTime(allow_none=True)


class TenantProfileSchema(Schema):
    """What any principal of, or contracted with, a tenant may read about it."""

    slug = fields.Str()
    name = fields.Str()
    jurisdiction = fields.Enum(Jurisdiction, by_value=True)
    timezone = fields.Str()
    currency = fields.Str()
