"""How the audit chain travels over the API."""

from __future__ import annotations

from marshmallow import fields, validate, validates_schema
from marshmallow.exceptions import ValidationError

from recova.platform.kernel.api import BigInteger, StrictSchema

HEX_HASH = validate.Regexp(r"^[0-9a-f]{64}$", error="a SHA-256 hash as 64 lowercase hex digits")


class EventQuerySchema(StrictSchema):
    action = fields.Str(validate=validate.Length(min=1, max=64))
    subject_type = fields.Str(validate=validate.Length(min=1, max=32))
    subject_id = fields.Str(validate=validate.Length(min=1, max=64))
    after_seq = BigInteger(load_default=0, validate=validate.Range(min=0))
    limit = fields.Int(load_default=100, validate=validate.Range(min=1, max=10_000))

    @validates_schema
    def _subject_whole(self, data: dict[str, object], **_: object) -> None:
        if ("subject_type" in data) != ("subject_id" in data):
            raise ValidationError("give subject_type and subject_id together", "subject_id")


class EventSchema(StrictSchema):
    """An event as stored: ``data`` is the canonical JSON text that was hashed."""

    seq = BigInteger()
    occurred_at = fields.DateTime()
    actor = fields.Str()
    action = fields.Str()
    subject_type = fields.Str()
    subject_id = fields.Str()
    data = fields.Str()
    prev_hash = fields.Function(lambda e: e.prev_hash.hex())
    hash = fields.Function(lambda e: e.hash.hex())


class VerifyQuerySchema(StrictSchema):
    head_seq = BigInteger(validate=validate.Range(min=1))
    head_hash = fields.Str(validate=HEX_HASH)

    @validates_schema
    def _head_whole(self, data: dict[str, object], **_: object) -> None:
        if ("head_seq" in data) != ("head_hash" in data):
            raise ValidationError("give head_seq and head_hash together", "head_hash")


class VerdictSchema(StrictSchema):
    ok = fields.Bool()
    events = BigInteger()
    head_seq = BigInteger()
    head_hash = fields.Str()
    broken_at = BigInteger(allow_none=True)
    problem = fields.Str(allow_none=True)


class HeadExportSchema(StrictSchema):
    day = fields.Date()
    head_seq = BigInteger()
    head_hash = fields.Function(lambda h: h.head_hash.hex())
    exported_at = fields.DateTime()
