"""Tenant schema: case flags, segments and scores, strategies, placements, assignments, runs

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from recova.tenants.migrate import current_tenant_schema

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

T = "tenant"
NOW = sa.text("now()")


def _created_at() -> sa.Column:  # type: ignore[type-arg]
    return sa.Column("created_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False)


def upgrade() -> None:
    # ALTER statements do not go through the schema translate map: name the real schema.
    schema = current_tenant_schema()
    op.add_column(
        "cases",
        sa.Column(
            "flags",
            postgresql.ARRAY(sa.String(16)),
            server_default=sa.text("'{}'::varchar[]"),
            nullable=False,
        ),
        schema=schema,
    )
    op.add_column(
        "cases",
        sa.Column("broken_promises", sa.Integer(), server_default="0", nullable=False),
        schema=schema,
    )
    op.create_check_constraint(
        op.f("ck_cases_flags_known"),
        "cases",
        "flags <@ ARRAY['dispute', 'bankruptcy', 'deceased', 'cease_contact']::varchar[]",
        schema=schema,
    )

    op.create_table(
        "allocation_settings",
        sa.Column("id", sa.SmallInteger(), nullable=False),
        sa.Column("buckets", postgresql.JSONB(), nullable=False),
        sa.Column("scorer", sa.String(64), nullable=False),
        sa.Column("scorer_options", postgresql.JSONB(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.CheckConstraint("id = 1", name="ck_allocation_settings_single_row"),
        sa.PrimaryKeyConstraint("id", name="pk_allocation_settings"),
        schema=T,
    )
    op.create_table(
        "segment_rules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("conditions", postgresql.JSONB(), nullable=False),
        _created_at(),
        sa.PrimaryKeyConstraint("id", name="pk_segment_rules"),
        sa.UniqueConstraint("name", name="uq_segment_rules_name"),
        schema=T,
    )
    # The derived tables (segments, transitions, scores, arms) carry no foreign key to
    # cases: the daily run writes them set-based from existing cases, and per-row checks
    # would dominate writing a million rows.
    op.create_table(
        "case_segments",
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("bucket", sa.String(16), nullable=False),
        sa.Column("bucket_since", sa.Date(), nullable=False),
        sa.Column("segment", sa.String(64)),
        sa.PrimaryKeyConstraint("case_id", name="pk_case_segments"),
        schema=T,
    )
    op.create_table(
        "bucket_transitions",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("from_bucket", sa.String(16)),
        sa.Column("to_bucket", sa.String(16), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_bucket_transitions"),
        sa.UniqueConstraint("case_id", "as_of", name="uq_bucket_transitions_case_as_of"),
        schema=T,
    )
    op.create_index("ix_bucket_transitions_as_of", "bucket_transitions", ["as_of"], schema=T)
    op.create_table(
        "case_scores",
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("score", sa.Numeric(9, 3), nullable=False),
        sa.Column("components", postgresql.JSONB(), nullable=False),
        sa.Column("scorer", sa.String(64), nullable=False),
        sa.Column("computed_on", sa.Date(), nullable=False),
        sa.PrimaryKeyConstraint("case_id", name="pk_case_scores"),
        schema=T,
    )
    op.create_table(
        "placement_strategies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("description", sa.Text()),
        _created_at(),
        sa.PrimaryKeyConstraint("id", name="pk_placement_strategies"),
        sa.UniqueConstraint("name", name="uq_placement_strategies_name"),
        schema=T,
    )
    op.create_table(
        "strategy_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("strategy_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("policy", postgresql.JSONB(), nullable=False),
        sa.Column("effective_from", sa.Date(), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.Integer()),
        _created_at(),
        sa.ForeignKeyConstraint(
            ["strategy_id"],
            [f"{T}.placement_strategies.id"],
            name="fk_strategy_versions_strategy_id_placement_strategies",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_strategy_versions"),
        sa.UniqueConstraint("strategy_id", "version", name="uq_strategy_versions_strategy_version"),
        schema=T,
    )
    op.create_index(
        "uq_strategy_versions_one_active",
        "strategy_versions",
        ["is_active"],
        unique=True,
        postgresql_where=sa.text("is_active"),
        schema=T,
    )
    op.create_table(
        "strategy_arms",
        sa.Column("strategy_version_id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("arm", sa.String(32), nullable=False),
        sa.Column("holdout", sa.Boolean(), nullable=False),
        sa.Column("assigned_on", sa.Date(), nullable=False),
        sa.ForeignKeyConstraint(
            ["strategy_version_id"],
            [f"{T}.strategy_versions.id"],
            name="fk_strategy_arms_strategy_version_id_strategy_versions",
        ),
        sa.PrimaryKeyConstraint("strategy_version_id", "case_id", name="pk_strategy_arms"),
        schema=T,
    )
    op.create_table(
        "placements",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("agency_id", sa.Integer(), nullable=False),
        sa.Column("strategy_version_id", sa.Integer()),
        sa.Column("segment", sa.String(64)),
        sa.Column("arm", sa.String(32)),
        sa.Column("started_on", sa.Date(), nullable=False),
        sa.Column("ends_on", sa.Date(), nullable=False),
        sa.Column("grace_days", sa.Integer(), nullable=False),
        sa.Column("recalled_on", sa.Date()),
        sa.Column("recall_reason", sa.String(32)),
        sa.Column("grace_until", sa.Date()),
        sa.Column("balance_at_placement", sa.Numeric(20, 4), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("allocation_run_id", sa.Integer()),
        _created_at(),
        sa.CheckConstraint("ends_on > started_on", name="ck_placements_period_ordered"),
        sa.CheckConstraint(
            "(recalled_on IS NULL) = (recall_reason IS NULL)",
            name="ck_placements_recall_has_reason",
        ),
        sa.ForeignKeyConstraint(["case_id"], [f"{T}.cases.id"], name="fk_placements_case_id_cases"),
        sa.ForeignKeyConstraint(
            ["strategy_version_id"],
            [f"{T}.strategy_versions.id"],
            name="fk_placements_strategy_version_id_strategy_versions",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_placements"),
        sa.UniqueConstraint("case_id", "agency_id", name="uq_placements_case_agency"),
        schema=T,
    )
    op.create_index(
        "uq_placements_one_active_per_case",
        "placements",
        ["case_id"],
        unique=True,
        postgresql_where=sa.text("recalled_on IS NULL"),
        schema=T,
    )
    op.create_index(
        "ix_placements_active_agency",
        "placements",
        ["agency_id"],
        postgresql_where=sa.text("recalled_on IS NULL"),
        schema=T,
    )
    op.create_table(
        "assignments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("placement_id", sa.Integer(), nullable=False),
        sa.Column("collector_id", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.Column("assigned_by", sa.Integer()),
        sa.Column("assigned_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.Column("next_action_at", sa.DateTime(timezone=True)),
        sa.Column("ended_at", sa.DateTime(timezone=True)),
        sa.Column("end_reason", sa.String(32)),
        sa.CheckConstraint(
            "reason IN ('auto', 'override', 'reassigned')", name="ck_assignments_reason_known"
        ),
        sa.ForeignKeyConstraint(
            ["placement_id"],
            [f"{T}.placements.id"],
            name="fk_assignments_placement_id_placements",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_assignments"),
        schema=T,
    )
    op.create_index(
        "uq_assignments_one_open_per_placement",
        "assignments",
        ["placement_id"],
        unique=True,
        postgresql_where=sa.text("ended_at IS NULL"),
        schema=T,
    )
    op.create_index(
        "ix_assignments_open_collector",
        "assignments",
        ["collector_id"],
        postgresql_where=sa.text("ended_at IS NULL"),
        schema=T,
    )
    op.create_table(
        "allocation_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("step", sa.String(16)),
        sa.Column("steps_done", postgresql.ARRAY(sa.String(16)), nullable=False),
        sa.Column("counts", postgresql.JSONB(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("message", sa.Text()),
        sa.Column("job_id", sa.String(128)),
        sa.Column("requested_by", sa.Integer()),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        _created_at(),
        sa.PrimaryKeyConstraint("id", name="pk_allocation_runs"),
        sa.UniqueConstraint("as_of", name="uq_allocation_runs_as_of"),
        schema=T,
    )


def downgrade() -> None:
    for table in (
        "allocation_runs",
        "assignments",
        "placements",
        "strategy_arms",
        "strategy_versions",
        "placement_strategies",
        "case_scores",
        "bucket_transitions",
        "case_segments",
        "segment_rules",
        "allocation_settings",
    ):
        op.drop_table(table, schema=T)
    schema = current_tenant_schema()
    op.drop_constraint(op.f("ck_cases_flags_known"), "cases", schema=schema)
    op.drop_column("cases", "broken_promises", schema=schema)
    op.drop_column("cases", "flags", schema=schema)
