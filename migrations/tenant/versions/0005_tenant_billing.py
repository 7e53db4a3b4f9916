"""Tenant schema: contract versions, the commission ledger, invoices and agency statements,
with the triggers that keep the ledger append-only and issued invoices immutable

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 22:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from recova.tenants.migrate import current_tenant_schema

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

T = "tenant"
NOW = sa.text("now()")
MONEY = sa.Numeric(20, 4)
PERCENT = sa.Numeric(9, 6)

# The trigger functions find their own schema through TG_TABLE_SCHEMA, so no function
# depends on a search_path and a schema can be moved whole.
FUNCTIONS = {
    "billing_append_only": """
        BEGIN
            RAISE EXCEPTION 'commission lines are never edited or deleted (%% refused)', TG_OP
                USING ERRCODE = 'integrity_constraint_violation';
        END""",
    "billing_period_open": """
        DECLARE hit record;
        BEGIN
            EXECUTE format(
                'SELECT i.number, a.period, a.currency FROM added a JOIN %%I.invoices i'
                ' ON i.period = a.period AND i.currency = a.currency'
                ' AND i.status IN (''issued'', ''paid'') LIMIT 1', TG_TABLE_SCHEMA)
            INTO hit;
            IF hit.number IS NOT NULL THEN
                RAISE EXCEPTION 'invoice %% (%% %%) is issued: no line may join its period',
                    hit.number, hit.period, hit.currency
                    USING ERRCODE = 'integrity_constraint_violation';
            END IF;
            RETURN NULL;
        END""",
    "billing_invoice_guard": """
        DECLARE kept text[];
        BEGIN
            IF TG_OP = 'DELETE' THEN
                IF OLD.status <> 'draft' THEN
                    RAISE EXCEPTION 'invoice %% is %%: it is never deleted', OLD.number, OLD.status
                        USING ERRCODE = 'integrity_constraint_violation';
                END IF;
                RETURN OLD;
            END IF;
            IF OLD.status = 'draft' THEN
                IF NEW.status IN ('draft', 'issued', 'void') THEN
                    RETURN NEW;
                END IF;
            ELSIF OLD.status = 'issued' AND NEW.status = 'paid' THEN
                kept := ARRAY['status', 'paid_on'];
            ELSIF OLD.status = 'issued' AND NEW.status = 'void' THEN
                kept := ARRAY['status', 'voided_at', 'void_reason'];
            END IF;
            IF kept IS NOT NULL AND (to_jsonb(NEW) - kept) = (to_jsonb(OLD) - kept) THEN
                RETURN NEW;
            END IF;
            RAISE EXCEPTION 'invoice %% is %%: it never changes (only issued -> paid or void)',
                OLD.number, OLD.status USING ERRCODE = 'integrity_constraint_violation';
        END""",
    "billing_statement_guard": """
        DECLARE invoice_status text;
        BEGIN
            EXECUTE format('SELECT status FROM %%I.invoices WHERE id = $1', TG_TABLE_SCHEMA)
            INTO invoice_status
            USING CASE WHEN TG_OP = 'DELETE' THEN OLD.invoice_id ELSE NEW.invoice_id END;
            IF invoice_status IS DISTINCT FROM 'draft'
               OR (TG_OP = 'UPDATE' AND OLD.invoice_id <> NEW.invoice_id) THEN
                RAISE EXCEPTION 'a statement of a %% invoice never changes', invoice_status
                    USING ERRCODE = 'integrity_constraint_violation';
            END IF;
            RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
        END""",
}

TRIGGERS = (
    "CREATE TRIGGER commission_lines_append_only BEFORE UPDATE OR DELETE ON {s}.commission_lines"
    " FOR EACH ROW EXECUTE FUNCTION {s}.billing_append_only()",
    "CREATE TRIGGER commission_lines_no_truncate BEFORE TRUNCATE ON {s}.commission_lines"
    " FOR EACH STATEMENT EXECUTE FUNCTION {s}.billing_append_only()",
    "CREATE TRIGGER commission_lines_period_open AFTER INSERT ON {s}.commission_lines"
    " REFERENCING NEW TABLE AS added"
    " FOR EACH STATEMENT EXECUTE FUNCTION {s}.billing_period_open()",
    "CREATE TRIGGER invoices_immutable BEFORE UPDATE OR DELETE ON {s}.invoices"
    " FOR EACH ROW EXECUTE FUNCTION {s}.billing_invoice_guard()",
    "CREATE TRIGGER agency_statements_frozen BEFORE INSERT OR UPDATE OR DELETE"
    " ON {s}.agency_statements FOR EACH ROW EXECUTE FUNCTION {s}.billing_statement_guard()",
)


def upgrade() -> None:
    op.create_table(
        "billing_contract_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("effective_from", sa.Date(), nullable=False),
        sa.Column("rates", postgresql.JSONB(), nullable=False),
        sa.Column("tiers", postgresql.JSONB()),
        sa.Column("minimum_fee", MONEY),
        sa.Column("case_cap", MONEY),
        sa.Column("vat_rate", PERCENT),
        sa.Column("rounding", sa.String(16), nullable=False),
        sa.Column("unplaced_commission", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.Integer()),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.CheckConstraint(
            "rounding IN ('half_even', 'half_up', 'half_down', 'up', 'down', 'ceiling', 'floor')",
            name="ck_billing_contract_versions_rounding_known",
        ),
        sa.CheckConstraint(
            "minimum_fee IS NULL OR minimum_fee >= 0",
            name="ck_billing_contract_versions_minimum_fee_positive",
        ),
        sa.CheckConstraint(
            "case_cap IS NULL OR case_cap >= 0",
            name="ck_billing_contract_versions_case_cap_positive",
        ),
        sa.CheckConstraint(
            "vat_rate IS NULL OR vat_rate BETWEEN 0 AND 100",
            name="ck_billing_contract_versions_vat_percent",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_billing_contract_versions"),
        sa.UniqueConstraint("currency", "version", name="uq_billing_contract_versions_version"),
        sa.UniqueConstraint(
            "currency", "effective_from", name="uq_billing_contract_versions_effective_from"
        ),
        schema=T,
    )
    op.create_table(
        "commission_lines",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("payment_id", sa.Integer(), nullable=False),
        sa.Column("original_line_id", sa.BigInteger()),
        sa.Column("period", sa.Date(), nullable=False),
        sa.Column("event_on", sa.Date(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("case_id", sa.Integer()),
        sa.Column("placement_id", sa.Integer()),
        sa.Column("agency_id", sa.Integer()),
        sa.Column("agency_contract_id", sa.Integer()),
        sa.Column("bucket", sa.String(16)),
        sa.Column("contract_version_id", sa.Integer(), nullable=False),
        sa.Column("paid_to", sa.String(8), nullable=False),
        sa.Column("base_amount", MONEY, nullable=False),
        sa.Column("rate", PERCENT, nullable=False),
        sa.Column("volume_before", MONEY),
        sa.Column("commission_exact", sa.Numeric(), nullable=False),
        sa.Column("commission", MONEY, nullable=False),
        sa.Column("agency_share", MONEY, nullable=False),
        sa.Column("platform_net", MONEY, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.CheckConstraint(
            "kind IN ('commission', 'clawback')", name="ck_commission_lines_kind_known"
        ),
        sa.CheckConstraint(
            "(kind = 'clawback') = (original_line_id IS NOT NULL)",
            name="ck_commission_lines_clawback_has_original",
        ),
        sa.CheckConstraint(
            "agency_share + platform_net = commission", name="ck_commission_lines_shares_add_up"
        ),
        sa.CheckConstraint(
            "extract(day FROM period) = 1", name="ck_commission_lines_period_is_a_month"
        ),
        # No foreign keys: only the close writes lines, from existing payments, lines and
        # versions, under the billing lock; per-row checks would dominate a million lines.
        sa.PrimaryKeyConstraint("id", name="pk_commission_lines"),
        sa.UniqueConstraint("payment_id", name="uq_commission_lines_payment_id"),
        schema=T,
    )
    # Lines are appended month by month: a block-range index finds a month's lines and
    # costs next to nothing to keep up while a million are written.
    op.create_index(
        "ix_commission_lines_period",
        "commission_lines",
        ["period"],
        postgresql_using="brin",
        schema=T,
    )
    op.create_index(
        "ix_commission_lines_original_line_id",
        "commission_lines",
        ["original_line_id"],
        postgresql_where=sa.text("original_line_id IS NOT NULL"),
        schema=T,
    )
    op.create_table(
        "invoices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("period", sa.Date(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("contract_version_id", sa.Integer()),
        sa.Column("rounding", sa.String(16), nullable=False),
        sa.Column("last_line_id", sa.BigInteger(), nullable=False),
        sa.Column("line_count", sa.Integer(), nullable=False),
        sa.Column("base_total", MONEY, nullable=False),
        sa.Column("commission_total", MONEY, nullable=False),
        sa.Column("credits", MONEY, nullable=False),
        sa.Column("minimum_fee", MONEY),
        sa.Column("top_up", MONEY, nullable=False),
        sa.Column("vat_rate", PERCENT),
        sa.Column("vat", MONEY, nullable=False),
        sa.Column("total", MONEY, nullable=False),
        sa.Column("agency_total", MONEY, nullable=False),
        sa.Column("platform_total", MONEY, nullable=False),
        sa.Column("summary", postgresql.JSONB(), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True)),
        sa.Column("paid_on", sa.Date()),
        sa.Column("voided_at", sa.DateTime(timezone=True)),
        sa.Column("void_reason", sa.Text()),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.CheckConstraint(
            "status IN ('draft', 'issued', 'paid', 'void')", name="ck_invoices_status_known"
        ),
        sa.CheckConstraint(
            "(status = 'void') = (void_reason IS NOT NULL)", name="ck_invoices_void_has_reason"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_invoices"),
        sa.UniqueConstraint("number", name="uq_invoices_number"),
        schema=T,
    )
    op.create_index(
        "uq_invoices_period_currency_live",
        "invoices",
        ["period", "currency"],
        unique=True,
        postgresql_where=sa.text("status <> 'void'"),
        schema=T,
    )
    op.create_table(
        "invoice_counter",
        sa.Column("id", sa.SmallInteger(), nullable=False),
        sa.Column("last_number", sa.Integer(), nullable=False),
        sa.CheckConstraint("id = 1", name="ck_invoice_counter_single_row"),
        sa.PrimaryKeyConstraint("id", name="pk_invoice_counter"),
        schema=T,
    )
    op.create_table(
        "agency_statements",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("invoice_id", sa.Integer(), nullable=False),
        sa.Column("agency_id", sa.Integer(), nullable=False),
        sa.Column("period", sa.Date(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("line_count", sa.Integer(), nullable=False),
        sa.Column("base_total", MONEY, nullable=False),
        sa.Column("commission_total", MONEY, nullable=False),
        sa.Column("agency_total", MONEY, nullable=False),
        sa.Column("by_bucket", postgresql.JSONB(), nullable=False),
        sa.ForeignKeyConstraint(
            ["invoice_id"], [f"{T}.invoices.id"], name="fk_agency_statements_invoice_id_invoices"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_agency_statements"),
        sa.UniqueConstraint("invoice_id", "agency_id", name="uq_agency_statements_invoice_agency"),
        schema=T,
    )
    op.create_index("ix_agency_statements_agency_id", "agency_statements", ["agency_id"], schema=T)

    # Raw SQL does not go through the schema translate map: name the real schema.
    s = f'"{current_tenant_schema()}"'
    op.execute(f"INSERT INTO {s}.invoice_counter (id, last_number) VALUES (1, 0)")  # noqa: S608 - the schema is a validated, quoted name
    for name, body in FUNCTIONS.items():
        function = body.replace("%%", "%")
        op.execute(
            f"CREATE FUNCTION {s}.{name}() RETURNS trigger LANGUAGE plpgsql AS $fn${function}$fn$"
        )
    for trigger in TRIGGERS:
        op.execute(trigger.format(s=s))


def downgrade() -> None:
    for table in (
        "agency_statements",
        "invoice_counter",
        "invoices",
        "commission_lines",
        "billing_contract_versions",
    ):
        op.drop_table(table, schema=T)
    s = f'"{current_tenant_schema()}"'
    for name in FUNCTIONS:
        op.execute(f"DROP FUNCTION {s}.{name}()")
