"""How privacy settings and reveals travel over the API."""

from __future__ import annotations

from marshmallow import fields, validate

from recova.platform.kernel.api import BigInteger, StrictSchema


class PrivacySettingsSchema(StrictSchema):
    retention_days = fields.Int(required=True, validate=validate.Range(min=30, max=36500))
    reveals_per_hour = fields.Int(required=True, validate=validate.Range(min=1, max=1000))


class RevealRequestSchema(StrictSchema):
    field = fields.Str(required=True, validate=validate.OneOf(["national_id", "contact"]))
    contact_id = fields.Int(validate=validate.Range(min=1))
    reason = fields.Str(required=True, validate=validate.Length(min=10, max=500))


class RevealedSchema(StrictSchema):
    debtor_id = fields.Int()
    field = fields.Str()
    contact_id = fields.Int(allow_none=True)
    value = fields.Str()
    reveals_left = fields.Int()


class RevealRecordSchema(StrictSchema):
    id = BigInteger()
    debtor_id = fields.Int()
    field = fields.Str()
    contact_id = fields.Int(allow_none=True)
    reason = fields.Str(allow_none=True, metadata={"description": "null once erased"})
    revealed_by = fields.Str()
    revealed_at = fields.DateTime()


class RevealQuerySchema(StrictSchema):
    debtor_id = fields.Int(validate=validate.Range(min=1))
