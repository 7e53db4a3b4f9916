"""How allocation travels over the API, and the shape of a placement policy.

A policy (one strategy version) maps segments to how their cases are placed::

    {
      "segments": {
        "M1": {"mode": "split",
               "agencies": [{"agency_id": 1, "share": 60}, {"agency_id": 2, "share": 40}]},
        "M2": {"mode": "performance", "agencies": [{"agency_id": 1}, {"agency_id": 2}],
               "window_days": 90, "min_share": 10, "min_placements": 20},
        "*":  {"mode": "champion_challenger", "seed": "2026-q1",
               "arms": [{"name": "champion", "share": 70,
                         "agencies": [{"agency_id": 1, "share": 100}]},
                        {"name": "challenger", "share": 20,
                         "agencies": [{"agency_id": 2, "share": 100}]},
                        {"name": "control", "share": 10, "holdout": true}]}
      },
      "capacity": {"1": {"max_cases": 5000, "max_balance": "2500000.00"}}
    }

``"*"`` applies to every segment not named. Shares are percentages and add up to 100.
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, pre_dump, validate, validates_schema
from marshmallow.exceptions import ValidationError

from recova.platform.cases.display import PersonName
from recova.platform.cases.models import CASE_FLAGS
from recova.platform.kernel.api import API_PREFIX, StrictSchema


class AgencyShareSchema(StrictSchema):
    agency_id = fields.Int(required=True, validate=validate.Range(min=1))
    share = fields.Decimal(as_string=True, places=4, validate=validate.Range(min=0, max=100))


class ArmSchema(StrictSchema):
    name = fields.Str(required=True, validate=validate.Regexp(r"^[a-z0-9_-]{1,32}$"))
    share = fields.Decimal(
        required=True, as_string=True, places=4, validate=validate.Range(min=0, max=100)
    )
    holdout = fields.Bool(load_default=False)
    agencies = fields.List(fields.Nested(AgencyShareSchema), load_default=list)


class SegmentPolicySchema(StrictSchema):
    mode = fields.Str(
        required=True, validate=validate.OneOf(["split", "performance", "champion_challenger"])
    )
    agencies = fields.List(fields.Nested(AgencyShareSchema))
    arms = fields.List(fields.Nested(ArmSchema))
    seed = fields.Str(validate=validate.Length(min=1, max=64))
    window_days = fields.Int(validate=validate.Range(min=7, max=730))
    min_share = fields.Decimal(as_string=True, places=4, validate=validate.Range(min=0, max=50))
    min_placements = fields.Int(validate=validate.Range(min=1))


class CapacitySchema(StrictSchema):
    max_cases = fields.Int(validate=validate.Range(min=0), allow_none=True)
    max_balance = fields.Decimal(as_string=True, validate=validate.Range(min=0), allow_none=True)


class PolicySchema(StrictSchema):
    segments = fields.Dict(
        keys=fields.Str(validate=validate.Length(min=1, max=64)),
        values=fields.Nested(SegmentPolicySchema),
        required=True,
        validate=validate.Length(min=1),
    )
    capacity = fields.Dict(
        keys=fields.Str(validate=validate.Regexp(r"^[1-9][0-9]*$")),
        values=fields.Nested(CapacitySchema),
        load_default=dict,
    )
    seed = fields.Str(validate=validate.Length(min=1, max=64))


# --- strategies ------------------------------------------------------------------------


class StrategyCreateSchema(StrictSchema):
    name = fields.Str(required=True, validate=validate.Length(min=1, max=64))
    description = fields.Str(load_default=None, allow_none=True)
    policy = fields.Dict(required=True)
    effective_from = fields.Date(load_default=None)
    activate = fields.Bool(load_default=False)


class VersionCreateSchema(StrictSchema):
    policy = fields.Dict(required=True)
    effective_from = fields.Date(load_default=None)
    activate = fields.Bool(load_default=False)


class PolicyCheckSchema(StrictSchema):
    policy = fields.Dict(required=True)


class VersionSchema(Schema):
    id = fields.Int()
    version = fields.Int()
    policy = fields.Dict()
    effective_from = fields.Date()
    is_active = fields.Bool()
    created_at = fields.DateTime()


class StrategySchema(Schema):
    id = fields.Int()
    name = fields.Str()
    description = fields.Str(allow_none=True)
    created_at = fields.DateTime()
    versions = fields.List(fields.Nested(VersionSchema))


class ValidationResultSchema(Schema):
    valid = fields.Bool()
    errors = fields.Dict()
    warnings = fields.List(fields.Str())


class DryRunRequestSchema(StrictSchema):
    version = fields.Int(load_default=None, validate=validate.Range(min=1))
    as_of = fields.Date(load_default=None)


class DryRunLineSchema(Schema):
    segment = fields.Str()
    arm = fields.Str(allow_none=True)
    agency_id = fields.Int(allow_none=True)
    outcome = fields.Str()
    cases = fields.Int()
    balance = fields.Decimal(as_string=True)


class DryRunSchema(Schema):
    as_of = fields.Date()
    strategy_version_id = fields.Int(allow_none=True)
    lines = fields.List(fields.Nested(DryRunLineSchema))
    counts = fields.Dict()


# --- settings and segment rules ----------------------------------------------------------


class BucketSchema(StrictSchema):
    name = fields.Str(required=True)
    min = fields.Int(required=True)
    max = fields.Int(load_default=None, allow_none=True)


class SettingsSchema(StrictSchema):
    buckets = fields.List(fields.Nested(BucketSchema), required=True)
    scorer = fields.Str(load_default="transparent-v1")
    scorer_options = fields.Dict(load_default=dict)


class SegmentRuleCreateSchema(StrictSchema):
    name = fields.Str(
        required=True, validate=validate.Regexp(r"^[A-Za-z0-9][A-Za-z0-9+_.-]{0,63}$")
    )
    priority = fields.Int(required=True)
    conditions = fields.Dict(required=True)


class SegmentRuleSchema(Schema):
    id = fields.Int()
    name = fields.Str()
    priority = fields.Int()
    conditions = fields.Dict()
    created_at = fields.DateTime()


class RollRateQuerySchema(StrictSchema):
    start = fields.Date(data_key="from", metadata={"description": "default: 30 days ago"})
    end = fields.Date(data_key="to", metadata={"description": "default: today"})

    @validates_schema
    def _ordered(self, data: dict, **kwargs: object) -> None:
        if "start" in data and "end" in data and data["start"] > data["end"]:
            raise ValidationError("from must not be after to", "from")


class RollRateSchema(Schema):
    from_bucket = fields.Str(allow_none=True)
    to_bucket = fields.Str()
    cases = fields.Int()


class ScoreSchema(Schema):
    case_id = fields.Int()
    score = fields.Decimal(as_string=True)
    components = fields.Dict()
    scorer = fields.Str()
    computed_on = fields.Date()


class CaseFlagsSchema(StrictSchema):
    flags = fields.List(fields.Str(validate=validate.OneOf(CASE_FLAGS)), required=True)


class CaseFlagsResultSchema(Schema):
    id = fields.Int()
    flags = fields.List(fields.Str())
    recalled_placement_id = fields.Int(allow_none=True)


# --- runs ---------------------------------------------------------------------------------


class AllocationRunRequestSchema(StrictSchema):
    as_of = fields.Date(load_default=None)


class AllocationRunSchema(Schema):
    id = fields.Int()
    as_of = fields.Date()
    status = fields.Str()
    step = fields.Str(allow_none=True)
    steps_done = fields.List(fields.Str())
    counts = fields.Dict()
    attempts = fields.Int()
    message = fields.Str(allow_none=True)
    job_id = fields.Str(allow_none=True)
    started_at = fields.DateTime(allow_none=True)
    finished_at = fields.DateTime(allow_none=True)


class AllocationRunAcceptedSchema(Schema):
    job_id = fields.Str()
    queue = fields.Str()
    as_of = fields.Date()


# --- placements, assignments, queues -------------------------------------------------------


class AssignmentSchema(Schema):
    id = fields.Int()
    collector_id = fields.Int()
    reason = fields.Str()
    assigned_at = fields.DateTime()
    next_action_at = fields.DateTime(allow_none=True)
    ended_at = fields.DateTime(allow_none=True)
    end_reason = fields.Str(allow_none=True)


class PlacementSchema(Schema):
    id = fields.Int()
    case_id = fields.Int()
    agency_id = fields.Int()
    strategy_version_id = fields.Int(allow_none=True)
    segment = fields.Str(allow_none=True)
    arm = fields.Str(allow_none=True)
    started_on = fields.Date()
    ends_on = fields.Date()
    recalled_on = fields.Date(allow_none=True)
    recall_reason = fields.Str(allow_none=True)
    grace_until = fields.Date(allow_none=True)
    balance_at_placement = fields.Decimal(as_string=True)
    currency = fields.Str()
    assignments = fields.List(fields.Nested(AssignmentSchema))


class PlacementQuerySchema(StrictSchema):
    active = fields.Bool()
    agency_id = fields.Int()
    case_id = fields.Int()


class RecallSchema(StrictSchema):
    reason = fields.Str(
        load_default="tenant_request",
        validate=validate.OneOf(["tenant_request", "complaint", "quality", "other"]),
    )


class OverrideSchema(StrictSchema):
    collector_id = fields.Int(required=True)


class PortfolioRowSchema(Schema):
    tenant = fields.Str(metadata={"description": "the tenant's slug, to name in the path"})
    placement_id = fields.Int()
    case_id = fields.Int()
    segment = fields.Str(allow_none=True)
    started_on = fields.Date()
    ends_on = fields.Date()
    balance_at_placement = fields.Decimal(as_string=True)
    currency = fields.Str()
    collector_id = fields.Int(allow_none=True)
    score = fields.Decimal(as_string=True, allow_none=True)


class PortfolioQuerySchema(StrictSchema):
    tenant = fields.Str(metadata={"description": "only this tenant's placements (slug)"})


class QueueLinksSchema(Schema):
    case = fields.Str(metadata={"description": "GET: the case, its account and debtor"})
    debtor = fields.Str(metadata={"description": "GET: the debtor with contact points"})
    contacts = fields.Str(metadata={"description": "GET: the case's contact points"})
    attempts = fields.Str(metadata={"description": "GET the attempts; POST one"})


class QueueItemSchema(PortfolioRowSchema):
    assignment_id = fields.Int()
    components = fields.Dict(allow_none=True)
    next_action_at = fields.DateTime(allow_none=True)
    account_external_id = fields.Str()
    days_past_due = fields.Int()
    debtor_id = fields.Int()
    debtor_name = PersonName()
    contact_ids = fields.List(
        fields.Int(),
        metadata={"description": "contact points not marked do-not-contact, own ones first"},
    )
    links = fields.Nested(QueueLinksSchema)

    @pre_dump
    def add_links(self, row: Any, **_: Any) -> dict[str, Any]:
        """Where to work the item: the tenant is named in the path (``tenant``, a slug)."""
        base = f"{API_PREFIX}/tenants/{row['tenant']}"
        case = f"{base}/cases/{row['case_id']}"
        links = {
            "case": case,
            "debtor": f"{base}/debtors/{row['debtor_id']}",
            "contacts": f"{case}/contacts",
            "attempts": f"{case}/attempts",
        }
        return {**row, "links": links}


class QueueQuerySchema(StrictSchema):
    collector_id = fields.Int(metadata={"description": "managers: this collector's queue"})


class CollectorProfileSchema(Schema):
    user_id = fields.Int()
    email = fields.Str()
    full_name = fields.Str()
    languages = fields.List(fields.Str())
    regions = fields.List(fields.Str())
    max_cases = fields.Int()
    is_active = fields.Bool()


class CollectorUpdateSchema(StrictSchema):
    languages = fields.List(fields.Str(validate=validate.Length(min=1, max=16)))
    regions = fields.List(fields.Str(validate=validate.Length(min=1, max=64)))
    max_cases = fields.Int(validate=validate.Range(min=1, max=100_000))
    is_active = fields.Bool()
