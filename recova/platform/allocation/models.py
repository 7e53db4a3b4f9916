"""Tables of allocation: segments, scores, strategies, placements, assignments and runs.

Tenant tables live in the ``tenant`` placeholder schema like every tenant table. Agencies
and collectors are shared (``platform``), so ``placements.agency_id`` and
``assignments.collector_id`` hold their ids without a cross-schema foreign key: a tenant
schema must be droppable and movable (Citus schema sharding) on its own.

Collector profiles and each collector's open-case count per tenant are shared, because a
collector works cases of every tenant their agency is contracted with and their maximum
binds across all of them.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from recova.platform.cases.models import MONEY
from recova.platform.kernel.db import (
    SHARED_SCHEMA,
    TENANT_PLACEHOLDER,
    SharedModel,
    TenantModel,
    Timestamped,
)

T = TENANT_PLACEHOLDER


class AllocationSettings(TenantModel):
    """The tenant's one row of allocation settings: days-past-due buckets and its scorer."""

    __tablename__ = "allocation_settings"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"), {"schema": T})

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True, default=1)
    #: ``[{"name": "M1", "min": 1, "max": 30}, ...]``; the last ``max`` may be null.
    buckets: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    scorer: Mapped[str] = mapped_column(String(64))
    scorer_options: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class SegmentRule(Timestamped, TenantModel):
    """A named segment: the first rule (by priority) whose conditions a case meets names it."""

    __tablename__ = "segment_rules"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    priority: Mapped[int] = mapped_column(Integer)
    #: Any of buckets, products, regions (lists), balance_min/max, score_min/max.
    conditions: Mapped[dict[str, Any]] = mapped_column(JSONB)


class CaseSegment(TenantModel):
    """A case's current days-past-due bucket and segment."""

    __tablename__ = "case_segments"
    __table_args__ = (
        # The segment filter and the walk over the names in use (``cases.browse``).
        Index("ix_case_segments_segment", "segment"),
        {"schema": T},
    )

    #: No foreign key on the derived tables (segments, transitions, scores, arms): the run
    #: writes them set-based from existing cases only, cases are never deleted, and a
    #: per-row referential check would dominate writing a million rows.
    case_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    bucket: Mapped[str] = mapped_column(String(16))
    #: The date the case entered its current bucket.
    bucket_since: Mapped[dt.date] = mapped_column(Date)
    segment: Mapped[str | None] = mapped_column(String(64))


class BucketTransition(TenantModel):
    """A case moving between buckets on a date (``from_bucket`` null: first seen)."""

    __tablename__ = "bucket_transitions"
    __table_args__ = (
        UniqueConstraint("case_id", "as_of", name="uq_bucket_transitions_case_as_of"),
        Index("ix_bucket_transitions_as_of", "as_of"),
        {"schema": T},
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    case_id: Mapped[int] = mapped_column(Integer)
    as_of: Mapped[dt.date] = mapped_column(Date)
    from_bucket: Mapped[str | None] = mapped_column(String(16))
    to_bucket: Mapped[str] = mapped_column(String(16))


class CaseScore(TenantModel):
    """A case's latest priority score and the components it is made of."""

    __tablename__ = "case_scores"

    case_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    score: Mapped[Decimal] = mapped_column(Numeric(9, 3))
    #: ``{"balance": {"input": "1200.00", "points": 61.2, "weight": 0.3}, ...}``
    components: Mapped[dict[str, Any]] = mapped_column(JSONB)
    scorer: Mapped[str] = mapped_column(String(64))
    #: The run date on which the score last changed.
    computed_on: Mapped[dt.date] = mapped_column(Date)


class PlacementStrategy(Timestamped, TenantModel):
    """A named placement strategy; what it does lives in its versions."""

    __tablename__ = "placement_strategies"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str | None] = mapped_column(Text)

    versions: Mapped[list[StrategyVersion]] = relationship(
        back_populates="strategy", order_by="StrategyVersion.version"
    )


class StrategyVersion(Timestamped, TenantModel):
    """One immutable version of a strategy's policy; at most one version is active."""

    __tablename__ = "strategy_versions"
    __table_args__ = (
        UniqueConstraint("strategy_id", "version", name="uq_strategy_versions_strategy_version"),
        # At most one active version in the tenant: the daily run places by exactly it.
        Index(
            "uq_strategy_versions_one_active",
            "is_active",
            unique=True,
            postgresql_where=text("is_active"),
        ),
        {"schema": T},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    strategy_id: Mapped[int] = mapped_column(ForeignKey(f"{T}.placement_strategies.id"))
    version: Mapped[int] = mapped_column(Integer)
    policy: Mapped[dict[str, Any]] = mapped_column(JSONB)
    effective_from: Mapped[dt.date] = mapped_column(Date)
    is_active: Mapped[bool] = mapped_column(Boolean, default=False)
    created_by: Mapped[int | None] = mapped_column(Integer)

    strategy: Mapped[PlacementStrategy] = relationship(back_populates="versions")


class StrategyArm(TenantModel):
    """The champion/challenger arm a case drew under a strategy version (control included)."""

    __tablename__ = "strategy_arms"

    strategy_version_id: Mapped[int] = mapped_column(
        ForeignKey(f"{T}.strategy_versions.id"), primary_key=True
    )
    case_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    arm: Mapped[str] = mapped_column(String(32))
    holdout: Mapped[bool] = mapped_column(Boolean)
    assigned_on: Mapped[dt.date] = mapped_column(Date)


class Placement(Timestamped, TenantModel):
    """A case placed with an agency for a period: [started_on, recalled_on or ends_on)."""

    __tablename__ = "placements"
    __table_args__ = (
        # A case never returns to an agency that already had it.
        UniqueConstraint("case_id", "agency_id", name="uq_placements_case_agency"),
        Index(
            "uq_placements_one_active_per_case",
            "case_id",
            unique=True,
            postgresql_where=text("recalled_on IS NULL"),
        ),
        Index(
            "ix_placements_active_agency",
            "agency_id",
            postgresql_where=text("recalled_on IS NULL"),
        ),
        # The workspace's placements page (tenant migration 0017): active ones by end
        # date, recalled ones by recall date, each per agency.
        Index(
            "ix_placements_active_agency_ends",
            "agency_id",
            "ends_on",
            "id",
            postgresql_where=text("recalled_on IS NULL"),
        ),
        Index(
            "ix_placements_recalled_agency",
            "agency_id",
            "recalled_on",
            "id",
            postgresql_where=text("recalled_on IS NOT NULL"),
        ),
        CheckConstraint("ends_on > started_on", name="period_ordered"),
        CheckConstraint(
            "(recalled_on IS NULL) = (recall_reason IS NULL)", name="recall_has_reason"
        ),
        {"schema": T},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey(f"{T}.cases.id"))
    agency_id: Mapped[int] = mapped_column(Integer)
    strategy_version_id: Mapped[int | None] = mapped_column(ForeignKey(f"{T}.strategy_versions.id"))
    segment: Mapped[str | None] = mapped_column(String(64))
    arm: Mapped[str | None] = mapped_column(String(32))
    started_on: Mapped[dt.date] = mapped_column(Date)
    #: Exclusive: the contract's placement period after ``started_on``.
    ends_on: Mapped[dt.date] = mapped_column(Date)
    #: The contract's grace period, kept so a later contract change does not rewrite history.
    grace_days: Mapped[int] = mapped_column(Integer)
    recalled_on: Mapped[dt.date | None] = mapped_column(Date)
    recall_reason: Mapped[str | None] = mapped_column(String(32))
    #: Exclusive: payments before this date (from ``recalled_on``) still credit this agency.
    grace_until: Mapped[dt.date | None] = mapped_column(Date)
    balance_at_placement: Mapped[Decimal] = mapped_column(MONEY)
    currency: Mapped[str] = mapped_column(String(3))
    allocation_run_id: Mapped[int | None] = mapped_column(Integer)

    assignments: Mapped[list[Assignment]] = relationship(
        back_populates="placement", order_by="Assignment.id"
    )


class Assignment(TenantModel):
    """A placed case given to one collector of the agency, until ``ended_at``."""

    __tablename__ = "assignments"
    __table_args__ = (
        Index(
            "uq_assignments_one_open_per_placement",
            "placement_id",
            unique=True,
            postgresql_where=text("ended_at IS NULL"),
        ),
        Index(
            "ix_assignments_open_collector",
            "collector_id",
            postgresql_where=text("ended_at IS NULL"),
        ),
        CheckConstraint("reason IN ('auto', 'override', 'reassigned')", name="reason_known"),
        {"schema": T},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    placement_id: Mapped[int] = mapped_column(ForeignKey(f"{T}.placements.id"))
    collector_id: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(16))
    assigned_by: Mapped[int | None] = mapped_column(Integer)
    assigned_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    #: When the collector should act next; the queue orders by it after the score.
    next_action_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    end_reason: Mapped[str | None] = mapped_column(String(32))

    placement: Mapped[Placement] = relationship(back_populates="assignments")


class AllocationRun(Timestamped, TenantModel):
    """The daily run for one date: its checkpoint (steps done), progress and counts."""

    __tablename__ = "allocation_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    as_of: Mapped[dt.date] = mapped_column(Date, unique=True)
    status: Mapped[str] = mapped_column(String(16))
    step: Mapped[str | None] = mapped_column(String(16))
    steps_done: Mapped[list[str]] = mapped_column(ARRAY(String(16)), default=list)
    counts: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    message: Mapped[str | None] = mapped_column(Text)
    job_id: Mapped[str | None] = mapped_column(String(128))
    requested_by: Mapped[int | None] = mapped_column(Integer)
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class CollectorProfile(SharedModel):
    """What a collector can work: languages, regions, a maximum of open cases, active or not."""

    __tablename__ = "collector_profiles"
    __table_args__ = (
        CheckConstraint("max_cases > 0", name="max_cases_positive"),
        {"schema": SHARED_SCHEMA},
    )

    user_id: Mapped[int] = mapped_column(
        ForeignKey(f"{SHARED_SCHEMA}.users.id", ondelete="CASCADE"), primary_key=True
    )
    languages: Mapped[list[str]] = mapped_column(ARRAY(String(16)), default=list)
    regions: Mapped[list[str]] = mapped_column(ARRAY(String(64)), default=list)
    max_cases: Mapped[int] = mapped_column(Integer, default=200)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class CollectorWorkload(SharedModel):
    """A collector's open assignments in one tenant, kept by that tenant's assignment step."""

    __tablename__ = "collector_workloads"

    user_id: Mapped[int] = mapped_column(
        ForeignKey(f"{SHARED_SCHEMA}.users.id", ondelete="CASCADE"), primary_key=True
    )
    tenant_id: Mapped[int] = mapped_column(
        ForeignKey(f"{SHARED_SCHEMA}.tenants.id", ondelete="CASCADE"), primary_key=True
    )
    open_cases: Mapped[int] = mapped_column(Integer)
