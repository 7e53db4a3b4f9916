"""How mappings, files, sources and runs travel over the API."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from recova.connectors.models import FeedKind, RunMode, RunStatus, Severity
from recova.platform.kernel.api import StrictSchema

NAME = validate.Regexp(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", error="letters, digits, _ . - only")


class MappingInSchema(StrictSchema):
    name = fields.Str(required=True, validate=NAME)
    kind = fields.Enum(FeedKind, by_value=True, required=True)
    columns = fields.Dict(keys=fields.Str(), values=fields.Str(), required=True)
    options = fields.Dict(keys=fields.Str(), load_default=dict)


class MappingUpdateSchema(StrictSchema):
    columns = fields.Dict(keys=fields.Str(), values=fields.Str(), required=True)
    options = fields.Dict(keys=fields.Str(), load_default=dict)


class MappingSchema(Schema):
    id = fields.Int()
    name = fields.Str()
    kind = fields.Enum(FeedKind, by_value=True)
    columns = fields.Dict(keys=fields.Str(), values=fields.Str())
    options = fields.Dict()
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


class FieldsQuerySchema(StrictSchema):
    kind = fields.Enum(FeedKind, by_value=True, load_default=FeedKind.PORTFOLIO)


class FieldInfoSchema(Schema):
    name = fields.Str()
    description = fields.Str()
    required = fields.Bool()


class ConnectorSchema(Schema):
    name = fields.Str()


class UploadSchema(Schema):
    connector = fields.Str(
        metadata={"description": "csv, xlsx or jsonl (default: from the file's extension)"}
    )


class FileSchema(Schema):
    id = fields.Int()
    filename = fields.Str()
    connector = fields.Str()
    size_bytes = fields.Int()
    sha256 = fields.Str()
    created_at = fields.DateTime()


class SourceInSchema(StrictSchema):
    name = fields.Str(required=True, validate=NAME)
    options = fields.Dict(
        keys=fields.Str(),
        required=True,
        metadata={"description": "url, pagination, records_path, page_size, ... (see docs)"},
    )
    auth_header = fields.Str(validate=validate.Length(min=1, max=64))
    auth_value = fields.Str(
        load_only=True, validate=validate.Length(min=1, max=4096), metadata={"format": "password"}
    )


class SourceSchema(Schema):
    id = fields.Int()
    name = fields.Str()
    connector = fields.Str()
    options = fields.Dict()
    auth_header = fields.Str(allow_none=True)
    created_at = fields.DateTime()


class RunInSchema(StrictSchema):
    mapping = fields.Str(required=True, metadata={"description": "the mapping's name"})
    file_id = fields.Int()
    source_id = fields.Int()
    mode = fields.Enum(RunMode, by_value=True, load_default=RunMode.DELTA)
    all_or_nothing = fields.Bool(load_default=False)
    as_of = fields.Date(metadata={"description": "the portfolio's date (default: today)"})
    confirm_recall = fields.Bool(
        load_default=False,
        metadata={
            "description": "a snapshot may recall more of the open book than the tenant's"
            " recall guard allows (GET /ingestion/settings)"
        },
    )


class ProgressSchema(Schema):
    done = fields.Int()
    total = fields.Int(allow_none=True)


class RunSchema(Schema):
    id = fields.Int()
    kind = fields.Enum(FeedKind, by_value=True)
    connector = fields.Str()
    file_id = fields.Int(allow_none=True)
    source_id = fields.Int(allow_none=True)
    mapping_id = fields.Int()
    mode = fields.Enum(RunMode, by_value=True)
    all_or_nothing = fields.Bool()
    status = fields.Enum(RunStatus, by_value=True)
    message = fields.Str(allow_none=True)
    as_of = fields.Date()
    received = fields.Int()
    inserted = fields.Int()
    updated = fields.Int()
    unchanged = fields.Int()
    rejected = fields.Int()
    warnings = fields.Int(
        metadata={"description": "rows loaded without a contact point the reason names"}
    )
    recalled = fields.Int()
    recall_confirmed = fields.Bool()
    recall_held = fields.Int(
        allow_none=True,
        metadata={"description": "held: how many accounts the snapshot would recall"},
    )
    held_at = fields.DateTime(allow_none=True)
    progress = fields.Nested(ProgressSchema)
    source_info = fields.Dict()
    attempts = fields.Int()
    job_id = fields.Str(allow_none=True)
    created_at = fields.DateTime()
    started_at = fields.DateTime(allow_none=True)
    finished_at = fields.DateTime(allow_none=True)


class RunQuerySchema(StrictSchema):
    status = fields.Enum(RunStatus, by_value=True)
    kind = fields.Enum(FeedKind, by_value=True)


class RunErrorsQuerySchema(StrictSchema):
    severity = fields.Enum(
        Severity,
        by_value=True,
        metadata={"description": "only rejected rows (error) or only warnings (default: both)"},
    )


class IngestionSettingsSchema(StrictSchema):
    recall_guard = fields.Bool(
        required=True,
        metadata={"description": "a snapshot that would recall much of the book waits"},
    )
    recall_guard_percent = fields.Decimal(
        required=True,
        as_string=True,
        validate=validate.Range(min=0, max=100, min_inclusive=False),
        metadata={
            "description": "the share of the open book, in percent, a snapshot may recall"
            " without a confirmation"
        },
    )
