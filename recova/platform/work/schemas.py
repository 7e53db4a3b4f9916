"""How case work travels over the API. Amounts are decimal strings, never floats."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from recova.platform.cases.models import CaseStatus
from recova.platform.kernel.api import StrictSchema
from recova.platform.work.disputes import GROUNDS
from recova.platform.work.models import (
    ApprovalLevel,
    DisputeStatus,
    HoldReason,
    InstalmentStatus,
    PlanStatus,
    PromiseStatus,
    SettlementStatus,
)


def _amount(**kwargs: object) -> fields.Decimal:
    return fields.Decimal(
        as_string=True,
        validate=validate.Range(min=0, min_inclusive=False, max=10**15),
        **kwargs,  # type: ignore[arg-type]
    )


def _money_out() -> fields.Decimal:
    # Stored amounts are already in the minor unit (cents for every currency a tenant
    # uses today); two places make every answer read alike, fresh or reloaded.
    return fields.Decimal(as_string=True, places=2)


def _percent(**kwargs: object) -> fields.Decimal:
    return fields.Decimal(
        as_string=True,
        places=2,
        validate=validate.Range(min=0, max=100),
        **kwargs,  # type: ignore[arg-type]
    )


# --- lifecycle -------------------------------------------------------------------------


class TransitionRequestSchema(StrictSchema):
    to = fields.Enum(CaseStatus, by_value=True, required=True)
    reason = fields.Str(load_default=None, validate=validate.Length(max=200))
    hold_reason = fields.Enum(HoldReason, by_value=True, load_default=None)


class TransitionSchema(Schema):
    id = fields.Int()
    case_id = fields.Int()
    from_status = fields.Enum(CaseStatus, by_value=True)
    to_status = fields.Enum(CaseStatus, by_value=True)
    reason = fields.Str(allow_none=True)
    actor = fields.Str()
    at = fields.DateTime()


class CaseStateSchema(Schema):
    id = fields.Int()
    status = fields.Enum(CaseStatus, by_value=True)
    hold_reason = fields.Str(allow_none=True)
    flags = fields.List(fields.Str())
    broken_promises = fields.Int()
    close_reason = fields.Str(allow_none=True)
    closed_at = fields.DateTime(allow_none=True)
    allowed_transitions = fields.List(fields.Str())


# --- promises ----------------------------------------------------------------------------


class PromiseCreateSchema(StrictSchema):
    amount = _amount(required=True)
    due_date = fields.Date(required=True)


class PromiseSchema(Schema):
    id = fields.Int()
    case_id = fields.Int()
    amount = _money_out()
    currency = fields.Str()
    due_date = fields.Date()
    status = fields.Enum(PromiseStatus, by_value=True)
    paid_amount = _money_out()
    created_by = fields.Str()
    created_at = fields.DateTime()
    evaluated_at = fields.DateTime(allow_none=True)


# --- plans --------------------------------------------------------------------------------


class InstalmentInputSchema(StrictSchema):
    due_date = fields.Date(required=True)
    amount = _amount(required=True)


class PlanCreateSchema(StrictSchema):
    instalments = fields.List(
        fields.Nested(InstalmentInputSchema), required=True, validate=validate.Length(min=1)
    )


class InstalmentSchema(Schema):
    seq = fields.Int()
    due_date = fields.Date()
    original_due_date = fields.Date()
    amount = _money_out()
    paid_amount = _money_out()
    status = fields.Enum(InstalmentStatus, by_value=True)


class PlanSchema(Schema):
    id = fields.Int()
    case_id = fields.Int()
    currency = fields.Str()
    total_amount = _money_out()
    balance_at_creation = _money_out()
    status = fields.Enum(PlanStatus, by_value=True)
    paid_amount = _money_out()
    misses = fields.Int()
    deferrals = fields.Int()
    created_by = fields.Str()
    created_at = fields.DateTime()
    ended_at = fields.DateTime(allow_none=True)
    instalments = fields.List(fields.Nested(InstalmentSchema))


class DeferralSchema(StrictSchema):
    due_date = fields.Date(required=True)


# --- settlements ------------------------------------------------------------------------


class SettlementCreateSchema(StrictSchema):
    amount = _amount(required=True)
    expires_on = fields.Date(required=True)


class SettlementDecisionSchema(StrictSchema):
    approve = fields.Bool(required=True)
    note = fields.Str(load_default=None, validate=validate.Length(max=500))


class SettlementSchema(Schema):
    id = fields.Int()
    case_id = fields.Int()
    currency = fields.Str()
    balance = _money_out()
    amount = _money_out()
    discount_percent = fields.Decimal(as_string=True)
    required_level = fields.Enum(ApprovalLevel, by_value=True)
    agency_id = fields.Int(allow_none=True)
    status = fields.Enum(SettlementStatus, by_value=True)
    expires_on = fields.Date()
    paid_amount = _money_out()
    requested_by = fields.Str()
    decided_by = fields.Str(allow_none=True)
    decided_at = fields.DateTime(allow_none=True)
    decision_note = fields.Str(allow_none=True)
    created_at = fields.DateTime()


# --- disputes ----------------------------------------------------------------------------


class DisputeCreateSchema(StrictSchema):
    grounds = fields.Str(required=True, validate=validate.OneOf(GROUNDS))
    notes = fields.Str(load_default=None, validate=validate.Length(max=2000))


class DisputeResolutionSchema(StrictSchema):
    outcome = fields.Str(
        required=True,
        validate=validate.OneOf(
            [DisputeStatus.UPHELD, DisputeStatus.ADJUSTED, DisputeStatus.REJECTED]
        ),
    )
    note = fields.Str(load_default=None, validate=validate.Length(max=2000))


class DisputeSchema(Schema):
    id = fields.Int()
    case_id = fields.Int()
    grounds = fields.Str()
    notes = fields.Str(allow_none=True)
    status = fields.Enum(DisputeStatus, by_value=True)
    opened_by = fields.Str()
    created_at = fields.DateTime()
    resolved_by = fields.Str(allow_none=True)
    resolved_at = fields.DateTime(allow_none=True)
    resolution_note = fields.Str(allow_none=True)


# --- settings and limits ----------------------------------------------------------------


class WorkSettingsSchema(StrictSchema):
    promise_grace_days = fields.Int(validate=validate.Range(min=0, max=60))
    plan_grace_days = fields.Int(validate=validate.Range(min=0, max=60))
    plan_max_misses = fields.Int(validate=validate.Range(min=1, max=24))
    max_deferral_days = fields.Int(validate=validate.Range(min=0, max=365))
    max_deferrals = fields.Int(validate=validate.Range(min=0, max=24))
    settlement_max_days = fields.Int(validate=validate.Range(min=1, max=365))


class ContractLimitSchema(StrictSchema):
    settlement_discount_limit = _percent(required=True)


class ContractLimitResultSchema(Schema):
    contract_id = fields.Int()
    agency_id = fields.Int()
    settlement_discount_limit = fields.Decimal(as_string=True)


class AgencyLimitSchema(StrictSchema):
    collector_discount_limit = _percent(required=True)


class AgencyLimitResultSchema(Schema):
    agency_id = fields.Int()
    collector_discount_limit = fields.Decimal(as_string=True)
    #: Each served tenant's contract limit: what the collectors' limit is capped at there.
    contract_limits = fields.Dict(keys=fields.Str(), values=fields.Decimal(as_string=True))


class EvaluationRequestSchema(StrictSchema):
    as_of = fields.Date(load_default=None, metadata={"description": "default: today"})


class EvaluationAcceptedSchema(Schema):
    as_of = fields.Date()
    job_ids = fields.List(fields.Str())
