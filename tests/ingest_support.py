"""Helpers for ingestion tests: a fresh tenant, mappings, files, runs and the stored state."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import select, text

from recova.connectors.models import FeedKind, IngestionRowError, IngestionRun, RunMode
from recova.connectors.services import ingest_local_file, save_mapping
from recova.platform.entry.demo_data import cn_national_id
from recova.platform.kernel.extension import Platform, platform
from recova.tenants.scope import tenant_scope
from tests.support import unique
from tests.tenant_clone import clone_tenant

CN_COLUMNS = {
    "account_external_id": "借款编号",
    "full_name": "借款人姓名",
    "national_id": "身份证号",
    "phone": "手机号",
    "original_principal": "借款本金",
    "outstanding_principal": "应还本金",
    "overdue_amount": "逾期金额",
    "interest_rate": "年化利率",
    "due_date": "到期日",
    "days_past_due": "逾期天数",
    "contact1_name": "紧急联系人",
    "contact1_phone": "紧急联系人电话",
    "contact1_relation": "联系人关系",
}
CN_HEADER = list(CN_COLUMNS.values())
PAYMENT_COLUMNS = {
    "payment_external_id": "payment_id",
    "account_external_id": "loan_id",
    "amount": "amount",
    "paid_at": "paid_at",
    "channel": "channel",
    "reverses_payment_external_id": "reverses",
}


def new_tenant(app: Flask, *, jurisdiction: str = "CN") -> str:
    """Provision a tenant of the test's own and return its slug."""
    zone, currency = {"CN": ("Asia/Shanghai", "CNY"), "US": ("America/New_York", "USD")}[
        jurisdiction
    ]
    slug = unique("ing")
    with platform(app).db.session() as session:
        clone_tenant(
            session,
            slug=slug,
            name=f"Tenant {slug}",
            jurisdiction=jurisdiction,
            timezone=zone,
            currency=currency,
        )
        session.commit()
    return slug


def add_mapping(
    objects: Platform,
    slug: str,
    name: str = "portfolio",
    *,
    kind: FeedKind = FeedKind.PORTFOLIO,
    columns: dict[str, str] | None = None,
    options: dict[str, Any] | None = None,
) -> None:
    with tenant_scope(slug, db=objects.db) as session:
        save_mapping(
            session,
            name=name,
            kind=kind,
            columns=columns or CN_COLUMNS,
            options=options or {},
        )


def cn_row(number: int, **overrides: Any) -> dict[str, Any]:
    """One valid Chinese portfolio row, keyed by header."""
    row = {
        "借款编号": f"LN{number:06d}",
        "借款人姓名": f"张{number}",
        "身份证号": cn_national_id(
            _Fixed(number), "110105", dt.date(1970, 1, 1) + dt.timedelta(days=number % 15000)
        ),
        "手机号": f"138{number:08d}",
        "借款本金": "12,000.00元",
        "应还本金": "￥8,000.50",
        "逾期金额": "8,100.00",
        "年化利率": "24%",
        "到期日": "2026/3/5",
        "逾期天数": "45",
        "紧急联系人": f"李{number}",
        "紧急联系人电话": f"139{number:08d}",
        "联系人关系": "配偶",
    }
    row.update(overrides)
    return row


class _Fixed:
    """A stand-in random source giving a fixed sequence number, for stable IDs."""

    def __init__(self, number: int) -> None:
        self.number = number

    def randrange(self, stop: int) -> int:
        return self.number % stop


def write_csv(
    path: Path,
    rows: list[dict[str, Any]],
    *,
    encoding: str = "utf-8",
    header: list[str] | None = None,
) -> Path:
    header = header or CN_HEADER
    with path.open("w", encoding=encoding, newline="") as out:
        writer = csv.writer(out)
        writer.writerow(header)
        for row in rows:
            writer.writerow([row.get(column, "") for column in header])
    return path


def ingest(
    objects: Platform,
    slug: str,
    path: Path,
    mapping: str = "portfolio",
    *,
    mode: RunMode = RunMode.DELTA,
    all_or_nothing: bool = False,
    confirm_recall: bool = False,
) -> IngestionRun:
    """Run a file through the pipeline in this process; return the run as stored."""
    _, run_id = ingest_local_file(
        objects,
        tenant_slug=slug,
        path=path,
        mapping_name=mapping,
        mode=mode,
        all_or_nothing=all_or_nothing,
        as_of=dt.date(2026, 4, 19),
        confirm_recall=confirm_recall,
    )
    return load_run(objects, slug, run_id)


def load_run(objects: Platform, slug: str, run_id: int) -> IngestionRun:
    with tenant_scope(slug, db=objects.db) as session:
        run = session.get(IngestionRun, run_id)
        assert run is not None
        session.expunge(run)
        return run


def row_errors(
    objects: Platform, slug: str, run_id: int, severity: str = "error"
) -> list[tuple[int, str | None, str]]:
    """(row, column, reason) of a run's rejected rows (or warnings), in row order."""
    with tenant_scope(slug, db=objects.db) as session:
        return [
            (e.row_number, e.column, e.reason)
            for e in session.scalars(
                select(IngestionRowError)
                .where(IngestionRowError.run_id == run_id, IngestionRowError.severity == severity)
                .order_by(IngestionRowError.row_number, IngestionRowError.id)
            )
        ]


STATE_QUERIES = {
    "debtors": "SELECT external_id, full_name, encode(national_id_index, 'hex'),"
    " national_id_masked, region, language FROM {s}.debtors",
    "contacts": "SELECT d.external_id, c.kind, c.relation, c.name, encode(c.value_index, 'hex'),"
    " c.value_masked FROM {s}.contacts c JOIN {s}.debtors d ON d.id = c.debtor_id",
    "accounts": "SELECT a.external_id, d.external_id, product, currency, original_principal,"
    " outstanding_principal, outstanding_interest, outstanding_fees, outstanding_penalties,"
    " overdue_amount, interest_rate, due_date, days_past_due, source_row::text,"
    " withdrawn_at IS NOT NULL FROM {s}.accounts a JOIN {s}.debtors d ON d.id = a.debtor_id",
    "cases": "SELECT a.external_id, c.status::text, c.close_reason FROM {s}.cases c"
    " JOIN {s}.accounts a ON a.id = c.account_id",
    "payments": "SELECT p.external_id, a.external_id, p.kind::text, p.amount, p.currency,"
    " p.paid_at, p.channel, p.paid_to::text, r.external_id FROM {s}.payments p"
    " JOIN {s}.accounts a ON a.id = p.account_id LEFT JOIN {s}.payments r ON r.id = p.reverses_id",
}


def stored_state(objects: Platform, slug: str) -> dict[str, list[tuple[Any, ...]]]:
    """Everything ingestion wrote, without ids, timestamps or (randomly nonced) ciphertext."""
    with tenant_scope(slug, db=objects.db) as session:
        schema = session.info["tenant"].schema_name
        return {
            table: sorted(
                tuple(row) for row in session.execute(text(query.format(s=f'"{schema}"')))
            )
            for table, query in STATE_QUERIES.items()
        }
