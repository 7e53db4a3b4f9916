"""Month close, invoices and agency statements.

``close_month`` is one transaction (repeatable read) under the tenant's billing lock: it
writes the month's commission and clawback lines (``recova.billing.ledger``), then builds
the month's invoice in every currency, numbered from the tenant's counter, with its
subtotals by bucket and by agency, the minimum-fee top-up and VAT, and one statement per
agency. So:

- *Killed halfway*: nothing of it is committed; run again, it writes what an
  uninterrupted close would have (line ids and invoice numbers included: neither comes
  from a sequence).
- *Run again*: with nothing new it changes nothing: the same invoice, the same number,
  byte for byte the same exports. New payments of the month join its draft.
- *Two closes at once*: the second waits for the first, so numbers have no gap.
- *Issued*: an issued month is never rebuilt; what arrives for it later lands on the
  next open month's invoice.

The invoice's totals: ``commission_total`` is the sum of its rounded lines (clawbacks of
lines already invoiced earlier among them, as ``credits``); the minimum fee tops up the
month's own commission (credits aside) to the version's minimum; VAT is the version's
rate of commission plus top-up, rounded once; the total is their sum.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from recova.billing import ledger
from recova.billing.models import AgencyStatement, Invoice
from recova.billing.money import DEFAULT_ROUNDING, round_money
from recova.billing.terms import BILLING_LOCK, lock_tenant_billing, next_month
from recova.platform.agencies.models import Agency
from recova.platform.allocation.models import AllocationSettings
from recova.platform.allocation.segmentation import DEFAULT_BUCKETS
from recova.platform.kernel.db import (
    Database,
    ScopedConnection,
    quote_identifier,
    table_sql,
    utcnow,
)
from recova.platform.kernel.errors import DomainError
from recova.platform.webhooks.events import emit_event
from recova.tenants.models import Tenant, TenantStatus, tenant_today
from recova.tenants.scope import tenant_scope

ZERO = Decimal(0)


class BillingError(DomainError, ValueError):
    """A billing request that cannot be carried out in the invoice's state (409)."""

    status = 409


class MonthError(BillingError):
    """A month that is malformed or has not begun on the tenant's calendar (422)."""

    status = 422


@dataclass
class CloseResult:
    """What a close did: the invoices of the month and the lines it wrote."""

    tenant: str
    month: dt.date
    dry_run: bool
    counts: dict[str, int] = field(default_factory=dict)
    invoices: list[dict[str, Any]] = field(default_factory=list)
    #: The month's lines by currency and kind: ``{"CNY": {"clawback": {"lines": 2,
    #: "base": Decimal, "commission": Decimal}}}`` (what a preview shows of them).
    by_kind: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)


def month_start(value: str | dt.date) -> dt.date:
    """``2026-10`` (or any date in it) as the month's first day."""
    if isinstance(value, dt.date):
        return value.replace(day=1)
    try:
        return dt.datetime.strptime(value, "%Y-%m").date()  # noqa: DTZ007 - a calendar month
    except ValueError as exc:
        raise MonthError(f"a month is written YYYY-MM, not {value!r}") from exc


def _tenant(db: Database, tenant: Tenant | int | str) -> Tenant:
    if isinstance(tenant, Tenant):
        return tenant
    with db.session() as session:
        found = session.scalar(
            select(Tenant).where(
                Tenant.id == tenant if isinstance(tenant, int) else Tenant.slug == tenant
            )
        )
    if found is None or found.status != TenantStatus.ACTIVE:
        raise LookupError(f"no active tenant {tenant!r}")
    return found


def close_month(
    db: Database,
    *,
    tenant: Tenant | int | str,
    month: str | dt.date,
    dry_run: bool = False,
    after_step: Any = None,
) -> CloseResult:
    """Write the ledger up to the month's end and build its invoices (see the module doc).

    ``dry_run`` does the same work and rolls it back (the invoice preview).
    ``after_step(name)`` is called after each step inside the transaction (tests use it
    to stop a close half way).
    """
    found = _tenant(db, tenant)
    first = month_start(month)
    if first > tenant_today(found.timezone).replace(day=1):
        raise MonthError(f"{first:%Y-%m} has not begun on the tenant's calendar")
    result = CloseResult(tenant=found.slug, month=first, dry_run=dry_run)
    with tenant_scope(found, db=db, pinned=True) as session:
        raw = ScopedConnection(session)
        cur = raw.cursor()
        # A session lock, taken before the transaction, so its snapshot sees every close
        # that finished while this one waited.
        cur.execute("SELECT pg_advisory_lock(%s, %s)", (BILLING_LOCK, found.id))
        raw.commit()
        try:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cur.execute("SET LOCAL work_mem = '256MB'")
            ctx = ledger.CloseContext(
                cur=cur,
                schema=found.schema_name,
                tenant_id=found.id,
                timezone=found.timezone,
                month=first,
                month_end=next_month(first),
                bucket_table=_bucket_table(cur, raw.schema),
            )
            steps = (
                ("terms", ledger.load_terms),
                ("commission", ledger.write_commission_lines),
                ("clawbacks", ledger.write_clawback_lines),
                ("invoices", lambda c: result.invoices.extend(build_invoices(c, found))),
            )
            for name, step in steps:
                step(ctx)
                if after_step is not None:
                    after_step(name)
            result.counts = dict(ctx.counts)
            result.by_kind = month_totals_by_kind(ctx)
            if dry_run:
                raw.rollback()
            else:
                raw.commit()
        finally:
            try:
                raw.rollback()
                cur.execute("SELECT pg_advisory_unlock(%s, %s)", (BILLING_LOCK, found.id))
                raw.commit()
            except Exception:  # a broken connection took the lock with it; never pool it
                raw.invalidate()
                raw.rollback()
    return result


def month_totals_by_kind(ctx: ledger.CloseContext) -> dict[str, dict[str, dict[str, Any]]]:
    """The month's lines per currency and kind (commission, clawback): count, base and
    commission; read inside the close, so a preview sees what it would write."""
    rows = ctx.execute(
        f"""SELECT currency, kind, count(*), coalesce(sum(base_amount), 0),
                   coalesce(sum(commission), 0)
            FROM {ctx.s}.commission_lines WHERE period = %(month)s
            GROUP BY currency, kind ORDER BY currency, kind"""
    ).fetchall()
    totals: dict[str, dict[str, dict[str, Any]]] = {}
    for currency, kind, count, base, commission in rows:
        totals.setdefault(currency, {})[kind] = {
            "lines": int(count),
            "base": base,
            "commission": commission,
        }
    return totals


def _bucket_table(cur: Any, s: str) -> list[dict[str, Any]]:
    """The tenant's bucket table (``s``: its quoted schema)."""
    cur.execute(f"SELECT buckets FROM {s}.{AllocationSettings.__tablename__} WHERE id = 1")
    row = cur.fetchone()
    return row[0] if row else DEFAULT_BUCKETS


# --- invoices --------------------------------------------------------------------------------


def build_invoices(ctx: ledger.CloseContext, tenant: Tenant) -> list[dict[str, Any]]:
    """Build or refresh the month's invoice in each currency, and any other draft whose
    period got new lines; returns the month's invoices."""
    s = ctx.s
    currencies = [
        row[0]
        for row in ctx.execute(
            f"""SELECT currency FROM {s}.commission_lines WHERE period = %(month)s
                UNION
                SELECT v.currency FROM bill_versions v
                WHERE v.effective_from < %(month_end)s
                  AND (v.effective_to IS NULL OR v.effective_to >= %(month_end)s)
                  AND EXISTS (SELECT 1 FROM {s}.billing_contract_versions x
                              WHERE x.id = v.id AND x.minimum_fee > 0)
                ORDER BY 1"""
        ).fetchall()
    ]
    touched = ctx.execute(
        f"""SELECT DISTINCT i.period, i.currency FROM {s}.invoices i
            JOIN {s}.commission_lines l ON l.period = i.period AND l.currency = i.currency
            WHERE i.status = 'draft' AND l.id > i.last_line_id AND i.period <> %(month)s
            ORDER BY 1, 2"""
    ).fetchall()
    month_invoices = [_build_invoice(ctx, tenant, ctx.month, currency) for currency in currencies]
    for period, currency in touched:
        _build_invoice(ctx, tenant, period, currency)
    return [invoice for invoice in month_invoices if invoice is not None]


def _build_invoice(
    ctx: ledger.CloseContext, tenant: Tenant, period: dt.date, currency: str
) -> dict[str, Any] | None:
    s = ctx.s
    params = {"period": period, "currency": currency}
    existing = ctx.execute(
        f"""SELECT id, number, status FROM {s}.invoices
            WHERE period = %(period)s AND currency = %(currency)s AND status <> 'void'""",
        **params,
    ).fetchone()
    if existing is not None and existing[2] != "draft":
        return _invoice_row(ctx, existing[0])  # issued: never rebuilt
    last_day = next_month(period) - dt.timedelta(days=1)
    version = ctx.execute(
        f"""SELECT id, minimum_fee, vat_rate, rounding FROM {s}.billing_contract_versions
            WHERE currency = %(currency)s AND effective_from <= %(day)s
            ORDER BY effective_from DESC LIMIT 1""",
        day=last_day,
        **params,
    ).fetchone()
    version_id, minimum_fee, vat_rate, rounding = version or (None, None, None, DEFAULT_ROUNDING)
    groups = ctx.execute(
        f"""SELECT GROUPING(agency_id) AS no_agency, GROUPING(bucket) AS no_bucket,
                   agency_id, bucket, count(*), coalesce(sum(base_amount), 0),
                   coalesce(sum(commission), 0), coalesce(sum(agency_share), 0),
                   coalesce(sum(platform_net), 0), coalesce(max(id), 0)
            FROM {s}.commission_lines
            WHERE period = %(period)s AND currency = %(currency)s
            GROUP BY GROUPING SETS ((), (bucket), (agency_id), (agency_id, bucket))""",
        **params,
    ).fetchall()
    total = next(g for g in groups if g[0] == 1 and g[1] == 1)
    line_count, base, commission, agency, platform_net, last_line_id = total[4:]
    if line_count == 0 and not minimum_fee and existing is None:
        return None
    credits = ctx.scalar(
        f"""SELECT coalesce(sum(l.commission), 0) FROM {s}.commission_lines l
            JOIN {s}.commission_lines o ON o.id = l.original_line_id
            WHERE l.period = %(period)s AND l.currency = %(currency)s
              AND l.kind = 'clawback' AND o.period < l.period""",
        **params,
    )
    own = commission - credits
    top_up = max(ZERO, (minimum_fee or ZERO) - own)
    vat = round_money((commission + top_up) * (vat_rate or ZERO) / 100, currency, rounding)
    agency_names = _agency_names(ctx, [g[2] for g in groups if g[2] is not None])
    summary = {
        "tenant": {"slug": tenant.slug, "name": tenant.name},
        "by_bucket": [
            {
                "bucket": g[3],
                "lines": g[4],
                "base": str(g[5]),
                "commission": str(g[6]),
            }
            for g in sorted(
                (g for g in groups if g[0] == 1 and g[1] == 0), key=lambda g: g[3] or ""
            )
        ],
        "by_agency": [
            {
                "agency_id": g[2],
                "agency": agency_names.get(g[2], {}).get("slug") if g[2] else None,
                "agency_name": agency_names.get(g[2], {}).get("name") if g[2] else None,
                "lines": g[4],
                "base": str(g[5]),
                "commission": str(g[6]),
                "agency_share": str(g[7]),
            }
            for g in sorted((g for g in groups if g[0] == 0 and g[1] == 1), key=lambda g: g[2] or 0)
        ],
    }
    values = {
        "rounding": rounding,
        "contract_version_id": version_id,
        "last_line_id": last_line_id,
        "line_count": line_count,
        "base_total": base,
        "commission_total": commission,
        "credits": credits,
        "minimum_fee": minimum_fee,
        "top_up": top_up,
        "vat_rate": vat_rate,
        "vat": vat,
        "total": commission + top_up + vat,
        "agency_total": agency,
        "platform_total": platform_net,
        "summary": json.dumps(summary, sort_keys=True),
    }
    columns = list(values)
    placeholders = [f"%({c})s::jsonb" if c == "summary" else f"%({c})s" for c in columns]
    if existing is None:
        number = ctx.scalar(
            f"""UPDATE {s}.invoice_counter SET last_number = last_number + 1 WHERE id = 1
                RETURNING last_number"""
        )
        invoice_id = ctx.scalar(
            f"""INSERT INTO {s}.invoices (number, period, currency, status, closed_at,
                    {", ".join(columns)})
                VALUES (%(number)s, %(period)s, %(currency)s, 'draft', now(),
                    {", ".join(placeholders)})
                RETURNING id""",
            number=number,
            **params,
            **values,
        )
    else:
        invoice_id = existing[0]
        # Only a change is written, so a close that finds nothing new leaves the row as is.
        ctx.execute(
            f"""UPDATE {s}.invoices SET closed_at = now(),
                    {", ".join(f"{c} = {p}" for c, p in zip(columns, placeholders, strict=True))}
                WHERE id = %(invoice_id)s
                  AND ({", ".join(columns)}) IS DISTINCT FROM ({", ".join(placeholders)})""",
            invoice_id=invoice_id,
            **values,
        )
    _write_statements(ctx, invoice_id=invoice_id, period=period, currency=currency, groups=groups)
    return _invoice_row(ctx, invoice_id)


def _write_statements(
    ctx: ledger.CloseContext,
    *,
    invoice_id: int,
    period: dt.date,
    currency: str,
    groups: list[Any],
) -> None:
    s = ctx.s
    by_agency: dict[int, dict[str, Any]] = {}
    for g in groups:
        if g[0] == 0 and g[2] is not None:
            entry = by_agency.setdefault(g[2], {"by_bucket": []})
            if g[1] == 1:
                entry.update(lines=g[4], base=g[5], commission=g[6], share=g[7])
            else:
                entry["by_bucket"].append(
                    {
                        "bucket": g[3],
                        "lines": g[4],
                        "base": str(g[5]),
                        "commission": str(g[6]),
                        "agency_share": str(g[7]),
                    }
                )
    for agency_id, entry in sorted(by_agency.items()):
        entry["by_bucket"].sort(key=lambda b: b["bucket"] or "")
        ctx.execute(
            f"""INSERT INTO {s}.agency_statements AS st (invoice_id, agency_id, period, currency,
                    line_count, base_total, commission_total, agency_total, by_bucket)
                VALUES (%(invoice_id)s, %(agency_id)s, %(period)s, %(currency)s, %(lines)s,
                        %(base)s, %(commission)s, %(share)s, %(by_bucket)s::jsonb)
                ON CONFLICT (invoice_id, agency_id) DO UPDATE
                SET line_count = EXCLUDED.line_count, base_total = EXCLUDED.base_total,
                    commission_total = EXCLUDED.commission_total,
                    agency_total = EXCLUDED.agency_total, by_bucket = EXCLUDED.by_bucket
                WHERE (st.line_count, st.base_total, st.commission_total, st.agency_total,
                       st.by_bucket)
                      IS DISTINCT FROM (EXCLUDED.line_count, EXCLUDED.base_total,
                       EXCLUDED.commission_total, EXCLUDED.agency_total, EXCLUDED.by_bucket)""",
            invoice_id=invoice_id,
            agency_id=agency_id,
            period=period,
            currency=currency,
            lines=entry["lines"],
            base=entry["base"],
            commission=entry["commission"],
            share=entry["share"],
            by_bucket=json.dumps(entry["by_bucket"], sort_keys=True),
        )
    ctx.execute(
        f"""DELETE FROM {s}.agency_statements
            WHERE invoice_id = %(invoice_id)s AND NOT (agency_id = ANY(%(kept)s))""",
        invoice_id=invoice_id,
        kept=sorted(by_agency),
    )


def _agency_names(ctx: ledger.CloseContext, ids: list[int]) -> dict[int, dict[str, str]]:
    if not ids:
        return {}
    rows = ctx.execute(
        f"SELECT id, slug, name FROM {table_sql(Agency)} WHERE id = ANY(%(ids)s)", ids=ids
    ).fetchall()
    return {row[0]: {"slug": row[1], "name": row[2]} for row in rows}


def _invoice_row(ctx: ledger.CloseContext, invoice_id: int) -> dict[str, Any]:
    cur = ctx.execute(
        f"SELECT * FROM {ctx.s}.invoices WHERE id = %(invoice_id)s", invoice_id=invoice_id
    )
    names = [column.name for column in cur.description]
    return dict(zip(names, cur.fetchone(), strict=True))


# --- lifecycle -------------------------------------------------------------------------------


def issue_invoice(session: Session, invoice: Invoice, *, tenant: Tenant) -> Invoice:
    """draft -> issued, once its month has ended; it never changes after this."""
    lock_tenant_billing(session, tenant.id)
    session.refresh(invoice)
    if invoice.status != "draft":
        raise BillingError(f"invoice {invoice.number} is {invoice.status}, not a draft")
    if next_month(invoice.period) > tenant_today(tenant.timezone):
        raise BillingError(f"{invoice.period:%Y-%m} has not ended; issue it after the month")
    newer = session.execute(
        text(
            f"SELECT 1 FROM {quote_identifier(tenant.schema_name)}.commission_lines"
            " WHERE period = :period AND currency = :currency AND id > :last LIMIT 1"
        ),
        {"period": invoice.period, "currency": invoice.currency, "last": invoice.last_line_id},
    ).first()
    if newer is not None:
        raise BillingError(
            f"invoice {invoice.number} is out of date: close {invoice.period:%Y-%m} again"
        )
    invoice.status = "issued"
    invoice.issued_at = utcnow()
    session.flush()  # the trigger checks the change now, and the caller answers with it
    emit_event(
        session,
        "invoice.issued",
        {
            "invoice_id": invoice.id,
            "number": invoice.number,
            "period": invoice.period,
            "currency": invoice.currency,
            "status": invoice.status,
            "total": invoice.total,
        },
    )
    return invoice


def mark_invoice_paid(
    session: Session, invoice: Invoice, *, tenant: Tenant, paid_on: dt.date | None = None
) -> Invoice:
    """issued -> paid."""
    lock_tenant_billing(session, tenant.id)
    session.refresh(invoice)
    if invoice.status != "issued":
        raise BillingError(f"invoice {invoice.number} is {invoice.status}; only issued is paid")
    invoice.status = "paid"
    invoice.paid_on = paid_on or tenant_today(tenant.timezone)
    session.flush()  # the trigger checks the change now, and the caller answers with it
    return invoice


def void_invoice(session: Session, invoice: Invoice, *, tenant: Tenant, reason: str) -> Invoice:
    """draft or issued -> void, with a reason; its number stays taken, its month reopens."""
    lock_tenant_billing(session, tenant.id)
    session.refresh(invoice)
    if invoice.status not in ("draft", "issued"):
        raise BillingError(f"invoice {invoice.number} is {invoice.status}; it cannot be voided")
    if not reason.strip():
        raise BillingError("a void needs a reason")
    invoice.status = "void"
    invoice.void_reason = reason.strip()
    invoice.voided_at = utcnow()
    session.flush()  # the trigger checks the change now, and the caller answers with it
    return invoice


def statements_for(
    session: Session, *, agency_id: int | None = None, period: dt.date | None = None
) -> list[AgencyStatement]:
    """Statements of live invoices, newest month first (one agency's only, if named)."""
    statement = (
        select(AgencyStatement)
        .join(Invoice, Invoice.id == AgencyStatement.invoice_id)
        .where(Invoice.status != "void")
        .order_by(
            AgencyStatement.period.desc(), AgencyStatement.currency, AgencyStatement.agency_id
        )
    )
    if agency_id is not None:
        statement = statement.where(AgencyStatement.agency_id == agency_id)
    if period is not None:
        statement = statement.where(AgencyStatement.period == period)
    return list(session.scalars(statement))


def agency_statements_sql(
    tenants: list[Tenant], *, agency_id: int, period: dt.date | None = None
) -> tuple[str, dict[str, Any]]:
    """One ``UNION ALL`` over the tenants' schemas: the agency's statements of live
    invoices, each with its tenant and its invoice's number and status (for
    ``/agency/statements``). Schemas are validated names, always quoted; every value is
    bound.
    """
    params: dict[str, Any] = {"agency_id": agency_id, "period": period}
    parts = []
    for n, tenant in enumerate(tenants):
        s = quote_identifier(tenant.schema_name)
        params[f"t{n}"], params[f"n{n}"] = tenant.slug, tenant.name
        parts.append(
            f"""SELECT CAST(:t{n} AS text) AS tenant, CAST(:n{n} AS text) AS tenant_name,
                       st.id, st.invoice_id, i.number AS invoice_number,
                       i.status AS invoice_status, st.period, st.currency, st.line_count,
                       st.base_total, st.commission_total, st.agency_total
                FROM {s}.agency_statements st
                JOIN {s}.invoices i ON i.id = st.invoice_id AND i.status <> 'void'
                WHERE st.agency_id = :agency_id
                  AND (CAST(:period AS date) IS NULL OR st.period = :period)"""
        )
    if not parts:
        parts.append(
            "SELECT NULL::text AS tenant, NULL::text AS tenant_name, NULL::int AS id,"
            " NULL::int AS invoice_id, NULL::int AS invoice_number,"
            " NULL::text AS invoice_status, NULL::date AS period, NULL::text AS currency,"
            " NULL::int AS line_count, NULL::numeric AS base_total,"
            " NULL::numeric AS commission_total, NULL::numeric AS agency_total WHERE false"
        )
    return " UNION ALL ".join(parts), params
