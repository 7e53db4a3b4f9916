"""Shared schema: tenants, agencies, contracts, users, memberships, OAuth2 clients and tokens

Revision ID: 0001
Revises:
Create Date: 2026-11-28 17:38:18.291798
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "agencies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("slug", sa.String(length=56), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column(
            "status",
            sa.Enum("active", "suspended", name="agency_status", schema="platform"),
            nullable=False,
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agencies")),
        sa.UniqueConstraint("slug", name=op.f("uq_agencies_slug")),
        schema="platform",
    )
    op.create_table(
        "tenants",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("slug", sa.String(length=56), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("schema_name", sa.String(length=63), nullable=False),
        sa.Column(
            "status",
            sa.Enum("active", "disabled", name="tenant_status", schema="platform"),
            nullable=False,
        ),
        sa.Column(
            "jurisdiction",
            sa.Enum("CN", "US", name="jurisdiction", schema="platform"),
            nullable=False,
        ),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("settings", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "schema_name ~ '^tenant_[a-z0-9_]+$'", name=op.f("ck_tenants_schema_name_safe")
        ),
        sa.CheckConstraint("char_length(currency) = 3", name=op.f("ck_tenants_currency_iso")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tenants")),
        sa.UniqueConstraint("schema_name", name=op.f("uq_tenants_schema_name")),
        sa.UniqueConstraint("slug", name=op.f("uq_tenants_slug")),
        schema="platform",
    )
    op.create_index(
        "uq_tenants_lower_slug", "tenants", [sa.text("lower(slug)")], unique=True, schema="platform"
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("full_name", sa.String(length=200), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("failed_logins", sa.Integer(), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("session_epoch", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        schema="platform",
    )
    op.create_index(
        "uq_users_lower_email", "users", [sa.text("lower(email)")], unique=True, schema="platform"
    )
    op.create_table(
        "agency_contracts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("agency_id", sa.Integer(), nullable=False),
        sa.Column("starts_on", sa.Date(), nullable=False),
        sa.Column("ends_on", sa.Date(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "ends_on IS NULL OR ends_on > starts_on",
            name=op.f("ck_agency_contracts_period_ordered"),
        ),
        sa.ForeignKeyConstraint(
            ["agency_id"],
            ["platform.agencies.id"],
            name=op.f("fk_agency_contracts_agency_id_agencies"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["platform.tenants.id"],
            name=op.f("fk_agency_contracts_tenant_id_tenants"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agency_contracts")),
        schema="platform",
    )
    op.create_index(
        "ix_agency_contracts_tenant_agency",
        "agency_contracts",
        ["tenant_id", "agency_id"],
        unique=False,
        schema="platform",
    )
    op.create_table(
        "memberships",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column(
            "role",
            sa.Enum(
                "platform_admin",
                "tenant_admin",
                "tenant_analyst",
                "agency_manager",
                "collector",
                name="role",
                schema="platform",
            ),
            nullable=False,
        ),
        sa.Column("tenant_id", sa.Integer(), nullable=True),
        sa.Column("agency_id", sa.Integer(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "(role = 'platform_admin' AND tenant_id IS NULL AND agency_id IS NULL) OR (role IN ('tenant_admin', 'tenant_analyst')     AND tenant_id IS NOT NULL AND agency_id IS NULL) OR (role IN ('agency_manager', 'collector')     AND agency_id IS NOT NULL AND tenant_id IS NULL)",
            name=op.f("ck_memberships_organisation_matches_role"),
        ),
        sa.ForeignKeyConstraint(
            ["agency_id"], ["platform.agencies.id"], name=op.f("fk_memberships_agency_id_agencies")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["platform.tenants.id"], name=op.f("fk_memberships_tenant_id_tenants")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["platform.users.id"],
            name=op.f("fk_memberships_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_memberships")),
        sa.UniqueConstraint("user_id", name=op.f("uq_memberships_user_id")),
        schema="platform",
    )
    op.create_index(
        op.f("ix_platform_memberships_agency_id"),
        "memberships",
        ["agency_id"],
        unique=False,
        schema="platform",
    )
    op.create_index(
        op.f("ix_platform_memberships_tenant_id"),
        "memberships",
        ["tenant_id"],
        unique=False,
        schema="platform",
    )
    op.create_table(
        "oauth_clients",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("client_secret_digest", sa.LargeBinary(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("scopes", postgresql.ARRAY(sa.String(length=64)), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["created_by_id"],
            ["platform.users.id"],
            name=op.f("fk_oauth_clients_created_by_id_users"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["platform.tenants.id"], name=op.f("fk_oauth_clients_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oauth_clients")),
        sa.UniqueConstraint("client_id", name=op.f("uq_oauth_clients_client_id")),
        schema="platform",
    )
    op.create_index(
        op.f("ix_platform_oauth_clients_tenant_id"),
        "oauth_clients",
        ["tenant_id"],
        unique=False,
        schema="platform",
    )
    op.create_table(
        "oauth_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_digest", sa.LargeBinary(length=32), nullable=False),
        sa.Column("client_pk", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("scope", sa.String(length=1000), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["client_pk"],
            ["platform.oauth_clients.id"],
            name=op.f("fk_oauth_tokens_client_pk_oauth_clients"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["platform.tenants.id"], name=op.f("fk_oauth_tokens_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oauth_tokens")),
        sa.UniqueConstraint("token_digest", name=op.f("uq_oauth_tokens_token_digest")),
        schema="platform",
    )
    op.create_index(
        op.f("ix_platform_oauth_tokens_client_pk"),
        "oauth_tokens",
        ["client_pk"],
        unique=False,
        schema="platform",
    )
    op.create_index(
        op.f("ix_platform_oauth_tokens_expires_at"),
        "oauth_tokens",
        ["expires_at"],
        unique=False,
        schema="platform",
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_platform_oauth_tokens_expires_at"), table_name="oauth_tokens", schema="platform"
    )
    op.drop_index(
        op.f("ix_platform_oauth_tokens_client_pk"), table_name="oauth_tokens", schema="platform"
    )
    op.drop_table("oauth_tokens", schema="platform")
    op.drop_index(
        op.f("ix_platform_oauth_clients_tenant_id"), table_name="oauth_clients", schema="platform"
    )
    op.drop_table("oauth_clients", schema="platform")
    op.drop_index(
        op.f("ix_platform_memberships_tenant_id"), table_name="memberships", schema="platform"
    )
    op.drop_index(
        op.f("ix_platform_memberships_agency_id"), table_name="memberships", schema="platform"
    )
    op.drop_table("memberships", schema="platform")
    op.drop_index(
        "ix_agency_contracts_tenant_agency", table_name="agency_contracts", schema="platform"
    )
    op.drop_table("agency_contracts", schema="platform")
    op.drop_index("uq_users_lower_email", table_name="users", schema="platform")
    op.drop_table("users", schema="platform")
    op.drop_index("uq_tenants_lower_slug", table_name="tenants", schema="platform")
    op.drop_table("tenants", schema="platform")
    op.drop_table("agencies", schema="platform")
    for enum_type in ("role", "jurisdiction", "tenant_status", "agency_status"):
        op.execute(f"DROP TYPE IF EXISTS platform.{enum_type}")
