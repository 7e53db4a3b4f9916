"""Invoice and agency-statement exports: CSV (every line) and PDF (fpdf2).

Both are built only from what the invoice froze: its row (totals, and the tenant and
agency names the close copied into its summary) and its lines (those of its period and
currency up to ``last_line_id``). Nothing is read from the clock or from data that may
change later, and the PDF's creation date is the end of the invoiced month, so the same
invoice always exports to the same bytes.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any

from fpdf import FPDF
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from recova.billing.models import AgencyStatement, Invoice
from recova.billing.money import minor_units
from recova.billing.terms import next_month
from recova.platform.kernel.db import scoped_schema
from recova.platform.kernel.safe_csv import formula_safe_writer
from recova.tenants.scope import tenant_scope

#: Beyond this many lines the PDF lists none and points to the CSV (it stays a few pages).
PDF_LINE_LIMIT = 2000
CSV_COLUMNS = (
    "line",
    "kind",
    "payment",
    "reverses_payment",
    "paid_on",
    "account",
    "case",
    "agency",
    "placement",
    "bucket",
    "contract_version",
    "base_amount",
    "rate_percent",
    "volume_before",
    "commission",
    "agency_share",
    "platform_net",
    "period",
)


def money(value: Decimal | None, places: int) -> str:
    """An amount with its currency's minor-unit digits (more only if it has them)."""
    if value is None:
        return ""
    exponent = Decimal(1).scaleb(-places)
    quantised = value.quantize(exponent)
    return f"{quantised:f}" if quantised == value else f"{value.normalize():f}"


def grouped(value: Decimal | None, places: int) -> str:
    """An amount for reading: thousands separated, minor-unit digits."""
    if value is None:
        return "-"
    return f"{value.quantize(Decimal(1).scaleb(-places)):,.{places}f}"


def invoice_lines(
    session: Session, invoice: Invoice, *, agency_id: int | None = None
) -> list[dict[str, Any]]:
    """The invoice's lines with their payments' external ids, in line order."""
    s = scoped_schema(session)
    rows = session.execute(
        text(
            f"""SELECT l.id, l.kind, p.external_id AS payment, op.external_id AS reverses,
                       l.event_on, a.external_id AS account, l.case_id, l.agency_id,
                       l.placement_id, l.bucket, v.version AS contract_version,
                       l.base_amount, l.rate, l.volume_before, l.commission, l.agency_share,
                       l.platform_net, l.period
                FROM {s}.commission_lines l
                JOIN {s}.payments p ON p.id = l.payment_id
                LEFT JOIN {s}.accounts a ON a.id = p.account_id
                LEFT JOIN {s}.payments op ON op.id = p.reverses_id
                LEFT JOIN {s}.billing_contract_versions v ON v.id = l.contract_version_id
                WHERE l.period = :period AND l.currency = :currency AND l.id <= :last
                  AND (CAST(:agency AS int) IS NULL OR l.agency_id = :agency)
                ORDER BY l.id"""
        ),
        {
            "period": invoice.period,
            "currency": invoice.currency,
            "last": invoice.last_line_id,
            "agency": agency_id,
        },
    )
    return [dict(row) for row in rows.mappings()]


def _agency_slugs(invoice: Invoice) -> dict[int, str]:
    return {
        entry["agency_id"]: entry["agency"] or str(entry["agency_id"])
        for entry in invoice.summary.get("by_agency", [])
        if entry["agency_id"] is not None
    }


def lines_csv(invoice: Invoice, lines: Iterable[dict[str, Any]]) -> bytes:
    """Every line as CSV (UTF-8, one header row, amounts in the currency's minor units).

    Ids come from tenants' files and go to other organisations (an agency's statement):
    the shared writer escapes any cell a spreadsheet would run as a formula.
    """
    places = minor_units(invoice.currency)
    slugs = _agency_slugs(invoice)
    out = io.StringIO()
    writer = formula_safe_writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for line in lines:
        writer.writerow(
            [
                line["id"],
                line["kind"],
                line["payment"],
                line["reverses"] or "",
                line["event_on"].isoformat(),
                line["account"] or "",
                line["case_id"] or "",
                slugs.get(line["agency_id"], "") if line["agency_id"] else "",
                line["placement_id"] or "",
                line["bucket"] or "",
                line["contract_version"],
                money(line["base_amount"], places),
                f"{line['rate'].normalize():f}",
                money(line["volume_before"], places),
                money(line["commission"], places),
                money(line["agency_share"], places),
                money(line["platform_net"], places),
                line["period"].strftime("%Y-%m"),
            ]
        )
    return out.getvalue().encode("utf-8")


def invoice_csv(session: Session, invoice: Invoice) -> bytes:
    """The invoice's lines as CSV."""
    return lines_csv(invoice, invoice_lines(session, invoice))


def statement_csv(session: Session, invoice: Invoice, statement: AgencyStatement) -> bytes:
    """One agency's lines of an invoice as CSV."""
    return lines_csv(invoice, invoice_lines(session, invoice, agency_id=statement.agency_id))


# --- PDF ---------------------------------------------------------------------------------


def _latin(value: Any) -> str:
    """Text for the PDF's core fonts (Latin-1); anything else shows as '?'."""
    return str(value).encode("latin-1", "replace").decode("latin-1")


class _Document(FPDF):
    def __init__(self, title: str, subtitle: str, status: str) -> None:
        super().__init__(orientation="P", unit="mm", format="A4")
        self.title_text = title
        self.subtitle_text = subtitle
        self.status = status
        self.set_auto_page_break(auto=True, margin=18)
        self.set_margins(16, 16, 16)

    def header(self) -> None:
        self.set_font("Helvetica", "B", 15)
        self.set_text_color(20, 40, 80)
        self.cell(0, 8, _latin(self.title_text), new_x="LMARGIN", new_y="NEXT")
        self.set_font("Helvetica", "", 9)
        self.set_text_color(90, 90, 90)
        self.cell(0, 5, _latin(self.subtitle_text), new_x="LMARGIN", new_y="NEXT")
        if self.status != "issued":
            self.set_xy(-66, 16)
            self.set_font("Helvetica", "B", 13)
            self.set_text_color(190, 40, 40)
            self.cell(50, 8, self.status.upper(), align="R")
        self.set_text_color(0, 0, 0)
        self.set_draw_color(20, 40, 80)
        self.line(16, 31, 194, 31)
        self.set_y(35)

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font("Helvetica", "", 8)
        self.set_text_color(120, 120, 120)
        self.cell(0, 5, f"Recova - page {self.page_no()} of {{nb}}", align="C")

    def section(self, title: str) -> None:
        self.ln(3)
        self.set_font("Helvetica", "B", 11)
        self.set_text_color(20, 40, 80)
        self.cell(0, 7, _latin(title), new_x="LMARGIN", new_y="NEXT")
        self.set_text_color(0, 0, 0)

    def grid(
        self,
        headings: list[str],
        rows: list[list[str]],
        widths: list[float],
        *,
        numeric_from: int,
        bold_last: bool = False,
        size: float = 9,
    ) -> None:
        def row(cells: list[str], *, bold: bool = False, fill: bool = False) -> None:
            self.set_font("Helvetica", "B" if bold else "", size)
            for index, (value, width) in enumerate(zip(cells, widths, strict=True)):
                align = "R" if index >= numeric_from else "L"
                self.cell(width, 5.6, _latin(value), border="B", align=align, fill=fill)
            self.ln()

        self.set_fill_color(232, 237, 245)
        row(headings, bold=True, fill=True)
        for index, cells in enumerate(rows):
            if self.will_page_break(5.6):
                self.add_page()
                self.set_fill_color(232, 237, 245)
                row(headings, bold=True, fill=True)
            row(cells, bold=bold_last and index == len(rows) - 1)

    def facts(self, pairs: list[tuple[str, str]]) -> None:
        for label, value in pairs:
            self.set_font("Helvetica", "", 9)
            self.set_text_color(90, 90, 90)
            self.cell(42, 5.2, _latin(label))
            self.set_text_color(0, 0, 0)
            self.set_font("Helvetica", "B", 9)
            self.cell(0, 5.2, _latin(value), new_x="LMARGIN", new_y="NEXT")


def _document(title: str, subtitle: str, status: str, period: dt.date) -> _Document:
    pdf = _Document(title, subtitle, status)
    # The end of the invoiced month: the same invoice is always the same bytes.
    pdf.set_creation_date(dt.datetime.combine(next_month(period), dt.time(), tzinfo=dt.UTC))
    pdf.set_title(_latin(title))
    pdf.set_author("Recova")
    pdf.alias_nb_pages()
    pdf.add_page()
    return pdf


def _line_rows(lines: list[dict[str, Any]], places: int, slugs: dict[int, str]) -> list[list[str]]:
    return [
        [
            line["event_on"].isoformat(),
            _clip(line["payment"], 16),
            "clawback" if line["kind"] == "clawback" else "",
            _clip(slugs.get(line["agency_id"], "own") if line["agency_id"] else "own", 18),
            line["bucket"] or "",
            grouped(line["base_amount"], places),
            f"{line['rate'].normalize():f}%",
            grouped(line["commission"], places),
            grouped(line["agency_share"], places),
        ]
        for line in lines
    ]


def _clip(value: str, size: int) -> str:
    return value if len(value) <= size else value[: size - 1] + "~"


LINE_HEADINGS = [
    "Paid on",
    "Payment",
    "Kind",
    "Agency",
    "Bucket",
    "Base",
    "Rate",
    "Commission",
    "Agency share",
]
LINE_WIDTHS = [19.0, 27.0, 15.0, 27.0, 13.0, 23.0, 13.0, 21.0, 20.0]


def invoice_pdf(session: Session, invoice: Invoice) -> bytes:
    """The invoice as a PDF: who and what, totals, subtotals by bucket and agency, lines."""
    places = minor_units(invoice.currency)
    summary = invoice.summary
    tenant = summary.get("tenant", {})
    cur = invoice.currency
    pdf = _document(
        f"Invoice {invoice.number}",
        f"Commission on recovered money, {invoice.period:%B %Y}, in {cur}",
        invoice.status,
        invoice.period,
    )
    pdf.facts(
        [
            ("Billed to", f"{tenant.get('name', '')} ({tenant.get('slug', '')})"),
            (
                "Period",
                f"{invoice.period:%Y-%m-%d} to "
                f"{next_month(invoice.period) - dt.timedelta(days=1):%Y-%m-%d}",
            ),
            (
                "Status",
                invoice.status
                + (f" on {invoice.issued_at:%Y-%m-%d}" if invoice.issued_at else "")
                + (f", paid {invoice.paid_on:%Y-%m-%d}" if invoice.paid_on else "")
                + (f": {invoice.void_reason}" if invoice.void_reason else ""),
            ),
            ("Lines", f"{invoice.line_count:,}"),
            ("Rounding", f"each line to {places} decimals, {invoice.rounding.replace('_', '-')}"),
        ]
    )
    pdf.section("Amount due")
    vat_label = f"VAT {invoice.vat_rate.normalize():f}%" if invoice.vat_rate is not None else "VAT"
    totals = [
        [
            "Commission on this month's recoveries",
            grouped(invoice.commission_total - invoice.credits, places),
        ],
        ["Credits for lines invoiced earlier", grouped(invoice.credits, places)],
        [
            "Minimum monthly fee top-up"
            + (f" (minimum {grouped(invoice.minimum_fee, places)})" if invoice.minimum_fee else ""),
            grouped(invoice.top_up, places),
        ],
        [vat_label, grouped(invoice.vat, places)],
        [f"Total due ({cur})", grouped(invoice.total, places)],
    ]
    pdf.grid(["", cur], totals, [140.0, 38.0], numeric_from=1, bold_last=True, size=10)
    pdf.section("By bucket at placement")
    pdf.grid(
        ["Bucket", "Lines", "Recovered", "Commission"],
        [
            [
                entry["bucket"] or "-",
                f"{entry['lines']:,}",
                grouped(Decimal(entry["base"]), places),
                grouped(Decimal(entry["commission"]), places),
            ]
            for entry in summary.get("by_bucket", [])
        ],
        [70.0, 30.0, 40.0, 38.0],
        numeric_from=1,
    )
    pdf.section("By agency")
    pdf.grid(
        ["Agency", "Lines", "Recovered", "Commission", "Agency share"],
        [
            [
                _clip(entry["agency_name"] or entry["agency"] or "Tenant's own recoveries", 34)
                if entry["agency_id"]
                else "Tenant's own recoveries",
                f"{entry['lines']:,}",
                grouped(Decimal(entry["base"]), places),
                grouped(Decimal(entry["commission"]), places),
                grouped(Decimal(entry["agency_share"]), places),
            ]
            for entry in summary.get("by_agency", [])
        ],
        [62.0, 20.0, 34.0, 31.0, 31.0],
        numeric_from=1,
    )
    pdf.section("Lines")
    if invoice.line_count > PDF_LINE_LIMIT:
        pdf.set_font("Helvetica", "", 9)
        pdf.multi_cell(0, 5, f"{invoice.line_count:,} lines: see the CSV export for every line.")
    else:
        lines = invoice_lines(session, invoice)
        pdf.grid(
            LINE_HEADINGS,
            _line_rows(lines, places, _agency_slugs(invoice)),
            LINE_WIDTHS,
            numeric_from=5,
            size=7.5,
        )
    return bytes(pdf.output())


def statement_pdf(session: Session, invoice: Invoice, statement: AgencyStatement) -> bytes:
    """An agency's statement as a PDF: its share of one tenant's month, by bucket, lines."""
    places = minor_units(invoice.currency)
    slugs = _agency_slugs(invoice)
    name = next(
        (
            e["agency_name"] or e["agency"]
            for e in invoice.summary.get("by_agency", [])
            if e["agency_id"] == statement.agency_id
        ),
        str(statement.agency_id),
    )
    tenant = invoice.summary.get("tenant", {})
    pdf = _document(
        f"Agency statement - {name}",
        f"Share of commission from {tenant.get('name', '')}, {invoice.period:%B %Y},"
        f" in {invoice.currency}",
        invoice.status,
        invoice.period,
    )
    pdf.facts(
        [
            ("Agency", f"{name} ({slugs.get(statement.agency_id, '')})"),
            ("Tenant", f"{tenant.get('name', '')} ({tenant.get('slug', '')})"),
            ("Invoice", f"{invoice.number} ({invoice.status})"),
            ("Lines", f"{statement.line_count:,}"),
            ("Recovered", grouped(statement.base_total, places)),
            ("Commission", grouped(statement.commission_total, places)),
            ("Due to the agency", f"{grouped(statement.agency_total, places)} {invoice.currency}"),
        ]
    )
    pdf.section("By bucket at placement")
    pdf.grid(
        ["Bucket", "Lines", "Recovered", "Commission", "Agency share"],
        [
            [
                entry["bucket"] or "-",
                f"{entry['lines']:,}",
                grouped(Decimal(entry["base"]), places),
                grouped(Decimal(entry["commission"]), places),
                grouped(Decimal(entry["agency_share"]), places),
            ]
            for entry in statement.by_bucket
        ],
        [50.0, 24.0, 36.0, 34.0, 34.0],
        numeric_from=1,
    )
    pdf.section("Lines")
    if statement.line_count > PDF_LINE_LIMIT:
        pdf.set_font("Helvetica", "", 9)
        pdf.multi_cell(0, 5, f"{statement.line_count:,} lines: see the CSV export.")
    else:
        lines = invoice_lines(session, invoice, agency_id=statement.agency_id)
        pdf.grid(
            LINE_HEADINGS, _line_rows(lines, places, slugs), LINE_WIDTHS, numeric_from=5, size=7.5
        )
    return bytes(pdf.output())


def export_file_name(tenant_slug: str, invoice: Invoice, extension: str) -> str:
    """``lendco-cn-2026-11-CNY-invoice-3.pdf``."""
    month = f"{invoice.period:%Y-%m}"
    return f"{tenant_slug}-{month}-{invoice.currency}-invoice-{invoice.number}.{extension}"


def write_month_exports(
    db: Any,
    *,
    tenant: str | int,
    month: dt.date,
    folder: Any,
    formats: tuple[str, ...] = ("csv", "pdf"),
) -> list[Any]:
    """Write the CSV and PDF of every live invoice of ``month`` into ``folder``; the paths."""

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with tenant_scope(tenant, db=db) as session:
        slug = session.info["tenant"].slug
        invoices = session.scalars(
            select(Invoice)
            .where(Invoice.period == month, Invoice.status != "void")
            .order_by(Invoice.currency)
        ).all()
        for invoice in invoices:
            for extension in formats:
                content = (
                    invoice_pdf(session, invoice)
                    if extension == "pdf"
                    else invoice_csv(session, invoice)
                )
                path = out / export_file_name(slug, invoice, extension)
                path.write_bytes(content)
                written.append(path)
    return written
