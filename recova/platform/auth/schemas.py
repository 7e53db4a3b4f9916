"""How users, memberships and API clients travel over the API."""

from __future__ import annotations

from flask_wtf.csrf import generate_csrf
from marshmallow import Schema, fields, validate

from recova.platform.auth.access import SCOPES
from recova.platform.auth.models import TENANT_ROLES, Role
from recova.platform.kernel.api import StrictSchema


class UserSchema(Schema):
    id = fields.Int()
    email = fields.Str()
    full_name = fields.Str()
    is_active = fields.Bool()
    role = fields.Function(lambda u: u.membership.role.value)
    tenant = fields.Function(lambda u: u.membership.tenant.slug if u.membership.tenant else None)
    agency = fields.Function(lambda u: u.membership.agency.slug if u.membership.agency else None)
    last_login_at = fields.DateTime(allow_none=True)
    created_at = fields.DateTime()


class PlatformUserCreateSchema(StrictSchema):
    email = fields.Email(required=True)
    full_name = fields.Str(required=True, validate=validate.Length(min=1, max=200))
    password = fields.Str(required=True, load_only=True, validate=validate.Length(min=10))
    role = fields.Str(required=True, validate=validate.OneOf([r.value for r in Role]))
    tenant = fields.Str(load_default=None, allow_none=True)
    agency = fields.Str(load_default=None, allow_none=True)


class TenantUserCreateSchema(StrictSchema):
    email = fields.Email(required=True)
    full_name = fields.Str(required=True, validate=validate.Length(min=1, max=200))
    password = fields.Str(required=True, load_only=True, validate=validate.Length(min=10))
    role = fields.Str(required=True, validate=validate.OneOf(sorted(r.value for r in TENANT_ROLES)))


class UserUpdateSchema(StrictSchema):
    is_active = fields.Bool()
    full_name = fields.Str(validate=validate.Length(min=1, max=200))


class MeSchema(Schema):
    kind = fields.Str()
    id = fields.Int(attribute="subject_id")
    name = fields.Str(attribute="display")
    role = fields.Function(lambda p: p.role.value if p.role else None)
    tenant = fields.Function(lambda p: p.tenant.slug if p.tenant else None)
    agency_id = fields.Int(allow_none=True)
    scopes = fields.Function(lambda p: sorted(p.scopes))
    csrf_token = fields.Function(
        lambda p: None if p.is_client else generate_csrf(),
        metadata={"description": "portal sessions send it as X-CSRFToken on API writes"},
    )


class ApiClientCreateSchema(StrictSchema):
    name = fields.Str(required=True, validate=validate.Length(min=1, max=200))
    scopes = fields.List(
        fields.Str(validate=validate.OneOf(sorted(SCOPES))),
        required=True,
        validate=validate.Length(min=1),
    )


class ApiClientSchema(Schema):
    id = fields.Int()
    client_id = fields.Str()
    name = fields.Str()
    scopes = fields.List(fields.Str())
    created_at = fields.DateTime()
    revoked_at = fields.DateTime(allow_none=True)


class IssuedApiClientSchema(Schema):
    """A new client with its secret, which this response carries once and never again."""

    id = fields.Int(attribute="client.id")
    client_id = fields.Str(attribute="client.client_id")
    name = fields.Str(attribute="client.name")
    scopes = fields.List(fields.Str(), attribute="client.scopes")
    created_at = fields.DateTime(attribute="client.created_at")
    client_secret = fields.Str(metadata={"description": "shown once; only a digest is stored"})
