"""CSV formula injection: every CSV the product writes escapes cells a spreadsheet would
run as formulas, through the one shared writer (``recova.platform.kernel.safe_csv``)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from recova.connectors.models import FeedKind, RunStatus
from recova.connectors.services import row_errors_csv
from recova.platform.kernel.extension import platform
from recova.platform.kernel.safe_csv import FORMULA_STARTS, formula_safe_writer, needs_escape
from recova.tenants.scope import tenant_scope
from tests.billing_support import Ledger
from tests.ingest_support import (
    PAYMENT_COLUMNS,
    add_mapping,
    cn_row,
    ingest,
    new_tenant,
    write_csv,
)
from tests.support import login

FEB = dt.date(2026, 2, 1)
#: Payment ids as a tenant's file may carry them: each would be a live formula unescaped.
HOSTILE = {
    '=HYPERLINK("http://x","y")': '=HYPERLINK("http://x","y")',
    "+1+cmd|' /C calc'!A0": "+1+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0": "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0": "@SUM(1+1)*cmd|' /C calc'!A0",
    # Ids are stripped on the way in: what arrives is the formula behind the tab or CR.
    "\t=1+1": "=1+1",
    "\r=2+2": "=2+2",
    "\uff1dHYPERLINK(1)": "=HYPERLINK(1)",  # full-width, folded by NFKC on the way in
}


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


@pytest.fixture
def ledger(app) -> Ledger:  # type: ignore[no-untyped-def]
    ledger = Ledger(app, cases=len(HOSTILE))
    ledger.set_payout(ledger.agency(0), share="40")
    ledger.version(rates={"*": "10"})
    return ledger


def _pay_through_a_file(ledger: Ledger, tmp_path: Path) -> dict[str, str]:
    """Ingest a payment file with the hostile ids (and a reversal of the first); return
    each stored id by the id in the file."""
    objects = platform(ledger.app)
    add_mapping(
        objects, ledger.tenant.slug, "payments", kind=FeedKind.PAYMENTS, columns=PAYMENT_COLUMNS
    )
    accounts = dict(
        ledger.sql(
            "SELECT c.id, a.external_id FROM {s}.cases c JOIN {s}.accounts a"
            " ON a.id = c.account_id WHERE c.id = ANY(:ids)",
            ids=ledger.case_ids,
        )
    )
    path = tmp_path / "payments.csv"
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)  # the tenant's own file, written without any escaping
        writer.writerow(["payment_id", "loan_id", "amount", "paid_at", "reverses"])
        for number, (case_id, payment_id) in enumerate(zip(ledger.case_ids, HOSTILE, strict=True)):
            ledger.place(case_id, ledger.agency(0), FEB, days=90)
            writer.writerow([payment_id, accounts[case_id], "200.00", f"2026-02-0{number + 2}", ""])
        first = next(iter(HOSTILE))
        writer.writerow(["=1-1", accounts[ledger.case_ids[0]], "50.00", "2026-02-20", first])
    run = ingest(objects, ledger.tenant.slug, path, "payments")
    assert run.status is RunStatus.COMPLETED, run.message
    assert (run.inserted, run.rejected) == (len(HOSTILE) + 1, 0)
    return HOSTILE


def _assert_escaped(text: str, stored: dict[str, str]) -> None:
    rows = _rows(text)
    payments = {row["payment"] for row in rows}
    assert payments == {"'" + value for value in stored.values()} | {"'=1-1"}
    (clawback,) = [row for row in rows if row["kind"] == "clawback"]
    assert clawback["reverses_payment"] == "'" + next(iter(stored.values()))
    # Negative amounts are plain numbers: they stay numbers an analyst can sum.
    assert clawback["base_amount"] == "-50.00"
    assert clawback["commission"] == "-5.00"
    for row in rows:
        for value in row.values():
            assert not needs_escape(value) or value.startswith("'"), (row, value)


def test_hostile_payment_ids_are_escaped_in_invoice_and_statement_csv(
    ledger: Ledger, tmp_path: Path
) -> None:
    stored = _pay_through_a_file(ledger, tmp_path)
    ledger.close(FEB)
    admin = login(ledger.app, ledger.tenant.admin_email)
    (invoice,) = admin.get("/api/v1/billing/invoices").json
    export = f"/api/v1/billing/invoices/{invoice['id']}/export.csv"
    invoice_csv = admin.get(export)
    assert invoice_csv.status_code == 200
    _assert_escaped(invoice_csv.get_data(as_text=True), stored)
    assert admin.get(export).data == invoice_csv.data  # still the same bytes every time

    (statement,) = [
        s
        for s in admin.get("/api/v1/billing/statements?month=2026-02").json
        if s["agency_id"] == ledger.agency(0)
    ]
    manager = login(ledger.app, ledger.agencies.managers[ledger.agency(0)])
    base = f"/api/v1/tenants/{ledger.tenant.slug}/billing/statements/{statement['id']}"
    statement_csv = manager.get(f"{base}/export.csv")
    assert statement_csv.status_code == 200
    _assert_escaped(statement_csv.get_data(as_text=True), stored)
    assert manager.get(f"{base}/export.csv").data == statement_csv.data


# --- the writer itself ------------------------------------------------------------------

cells = st.one_of(
    st.text(),
    st.text(alphabet=[*sorted(FORMULA_STARTS), "a", "1", ".", " ", "'", '"', ",", "\n"]),
    st.decimals(allow_nan=False, allow_infinity=False, places=2).map(str),
    st.integers(),
    st.none(),
)


def _written(row: list[object]) -> list[str]:
    out = io.StringIO()
    formula_safe_writer(out, lineterminator="\n").writerow(row)
    (read,) = csv.reader(io.StringIO(out.getvalue(), newline=""))
    return read


def _starts_a_formula(text: str) -> bool:
    return bool(text) and (text[0] in FORMULA_STARTS or text.lstrip()[:1] in FORMULA_STARTS)


@given(st.lists(cells, min_size=1, max_size=6))
def test_no_written_cell_can_start_a_formula_and_nothing_else_changes(row: list[object]) -> None:
    read = _written(row)
    assert len(read) == len(row)
    for original, cell in zip(row, read, strict=True):
        text = "" if original is None else str(original)
        if cell != text:
            # The only change is a quote in front of text that could start a formula.
            assert cell == "'" + text
            assert _starts_a_formula(text)
            assert not _is_plain_number(text)
        else:
            assert not _starts_a_formula(text) or _is_plain_number(text)


def _is_plain_number(text: str) -> bool:
    return re.fullmatch(r"-?[0-9]+(\.[0-9]+)?", text) is not None


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("=1+1", "'=1+1"),
        ("+1", "'+1"),
        ("-1+1", "'-1+1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("  =1", "'  =1"),
        ("\uff1d1+1", "'\uff1d1+1"),
        ("-12.50", "-12.50"),
        ("-0.61", "-0.61"),
        ("12", "12"),
        ("-1e5", "'-1e5"),
        ("a=1", "a=1"),
        ("", ""),
    ],
)
def test_writer_escapes_exactly_the_formula_cells(value: str, written: str) -> None:
    assert _written([value]) == [written]


def test_row_errors_csv_escapes_every_formula_cell(app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    objects = platform(app)
    tenant = new_tenant(app)
    add_mapping(objects, tenant)
    hostile = [" =1+1", "\uff1d1+1", "-1+1", "@A1"]
    rows = [cn_row(n, 应还本金=value) for n, value in enumerate(hostile, start=1)]
    run = ingest(objects, tenant, write_csv(tmp_path / "p.csv", rows))
    assert run.rejected == len(hostile)
    with tenant_scope(tenant, db=objects.db) as session:
        text = "".join(row_errors_csv(session, run))
    written = {row["value"] for row in _rows(text)}
    assert written == {"'" + value for value in hostile}
