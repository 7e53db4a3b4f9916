"""The month close as a whole: racing closes, a close killed half way, re-runs giving the
same bytes, late payments, the job on the billing queue and the CLI."""

from __future__ import annotations

import base64
import datetime as dt
import threading
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from rq import SimpleWorker
from rq.serializers import JSONSerializer
from sqlalchemy import select, text

from recova.billing.exports import invoice_csv, invoice_pdf, write_month_exports
from recova.billing.invoices import BillingError, close_month, issue_invoice
from recova.billing.jobs import close_job_id, close_month_job
from recova.billing.models import Invoice
from recova.platform.kernel.extension import platform
from recova.platform.kernel.jobs import job_queue
from recova.tenants.scope import tenant_scope
from tests.billing_support import MONTH, Ledger, day
from tests.support import recova

D = Decimal
FEB, APRIL = dt.date(2026, 2, 1), dt.date(2026, 4, 1)


def busy_ledger(app) -> Ledger:  # type: ignore[no-untyped-def]
    """Payments in February and March with a reversal, across two agencies."""
    ledger = Ledger(app, cases=4)
    ledger.version(rates={"M2": "12", "*": "10"}, minimum_fee="50.00", vat_rate="6")
    ledger.set_payout(ledger.agency(0), share="40")
    ledger.set_payout(ledger.agency(1), rates={"*": "4"})
    for n, case in enumerate(ledger.case_ids):
        ledger.place(case, ledger.agency(n % 2), FEB, days=90)
    for month in (FEB, MONTH):
        for n, case in enumerate(ledger.case_ids):
            payment = ledger.pay(case, D("100.05") * (n + 1), day(n + 3, month))
        ledger.reverse(payment, "40.00", day(20, month))
    return ledger


def exports_of(ledger: Ledger, month: dt.date) -> dict[str, bytes]:
    with tenant_scope(ledger.tenant.slug, db=ledger.db) as session:
        invoice = session.scalar(
            select(Invoice).where(Invoice.period == month, Invoice.status != "void")
        )
        assert invoice is not None
        return {"csv": invoice_csv(session, invoice), "pdf": invoice_pdf(session, invoice)}


def test_two_closes_racing_leave_no_gap_in_invoice_numbers(app) -> None:
    ledger = busy_ledger(app)
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def close(month: dt.date) -> None:
        try:
            start.wait()
            ledger.close(month)
        except BaseException as exc:  # the main thread reports it
            errors.append(exc)

    threads = [threading.Thread(target=close, args=(m,)) for m in (FEB, MONTH, FEB, MONTH)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert errors == []
    invoices = ledger.invoices()
    assert sorted(i["number"] for i in invoices) == [1, 2]
    assert sorted(i["period"] for i in invoices) == [FEB, MONTH]
    assert len({line["payment_id"] for line in ledger.lines()}) == len(ledger.lines())


def test_a_close_killed_half_way_leaves_nothing_and_the_next_one_is_whole(app) -> None:
    ledger, control = busy_ledger(app), busy_ledger(app)

    def kill_after_lines(step: str) -> None:
        if step == "clawbacks":
            # The worker dies: its connection is cut while the transaction is open.
            with ledger.db.engine.connect() as other:
                killed = other.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                        " AND state = 'idle in transaction' AND backend_xid IS NOT NULL"
                    )
                ).all()
                assert killed == [(True,)]

    with pytest.raises(psycopg.OperationalError, match="terminating connection"):
        close_month(ledger.db, tenant=ledger.tenant.id, month=MONTH, after_step=kill_after_lines)
    assert ledger.lines() == []
    assert ledger.invoices() == []

    ledger.close(MONTH)
    control.close(MONTH)

    strip = ("created_at", "closed_at")

    def shape(rows: list[dict]) -> list[dict]:  # type: ignore[type-arg]
        return [
            {
                k: v
                for k, v in row.items()
                if k not in {*strip, "id", "summary"} and not k.endswith("_id")
            }
            for row in rows
        ]

    assert [line["id"] for line in ledger.lines()] == [line["id"] for line in control.lines()]
    assert shape(ledger.lines()) == shape(control.lines())
    assert shape(ledger.invoices()) == shape(control.invoices())
    assert ledger.invoices()[0]["number"] == 1


def test_a_close_run_again_gives_the_same_invoice_and_the_same_bytes(app, tmp_path: Path) -> None:
    ledger = busy_ledger(app)
    ledger.close(MONTH)
    first = (ledger.invoices(), exports_of(ledger, MONTH))
    files = write_month_exports(ledger.db, tenant=ledger.tenant.slug, month=MONTH, folder=tmp_path)
    written = {path.name: path.read_bytes() for path in files}

    ledger.close(MONTH)

    assert (ledger.invoices(), exports_of(ledger, MONTH)) == first
    again = write_month_exports(
        ledger.db, tenant=ledger.tenant.slug, month=MONTH, folder=tmp_path / "again"
    )
    assert {path.name: path.read_bytes() for path in again} == written
    assert first[1]["pdf"].startswith(b"%PDF-")


def test_a_late_payment_for_an_issued_month_goes_on_the_next_invoice(app) -> None:
    ledger = busy_ledger(app)
    ledger.close(FEB)
    with tenant_scope(ledger.tenant.slug, db=ledger.db) as session:
        invoice = session.scalar(select(Invoice).where(Invoice.period == FEB))
        assert invoice is not None
        issue_invoice(session, invoice, tenant=session.info["tenant"])
    late = ledger.pay(ledger.case_ids[0], "10.00", day(27, FEB))

    ledger.close(MONTH)

    line = ledger.line_of(late)
    assert line["period"] == MONTH
    assert line["event_on"] == day(27, FEB)


def test_a_month_that_has_not_begun_cannot_be_closed_nor_an_open_one_issued(app) -> None:
    ledger = Ledger(app, cases=1)
    ledger.version()
    with pytest.raises(BillingError, match="not begun"):
        ledger.close(dt.date(2099, 1, 1))
    today = dt.date.today()
    ledger.place(ledger.case_ids[0], ledger.agency(0), today.replace(day=1))
    ledger.pay(ledger.case_ids[0], "10.00", today.replace(day=1))
    ledger.close(today.replace(day=1))
    with tenant_scope(ledger.tenant.slug, db=ledger.db) as session:
        invoice = session.scalar(select(Invoice))
        assert invoice is not None
        with pytest.raises(BillingError, match="has not ended"):
            issue_invoice(session, invoice, tenant=session.info["tenant"])


def test_the_close_job_runs_on_the_billing_queue(app) -> None:
    ledger = busy_ledger(app)
    objects = platform(app)
    job = close_month_job.enqueue(
        objects,
        job_id=close_job_id(ledger.tenant.id, "2026-03"),
        tenant_id=ledger.tenant.id,
        month="2026-03",
    )
    assert job.origin.endswith("billing")
    queue = job_queue(objects.redis, "billing", prefix=objects.settings.queue_prefix)
    with app.app_context():
        SimpleWorker([queue], connection=objects.redis, serializer=JSONSerializer).work(burst=True)
    assert queue.failed_job_registry.get_job_ids() == []
    (invoice,) = ledger.invoices()
    assert invoice["period"] == MONTH
    assert invoice["number"] == 1


def test_the_cli_closes_a_month_and_writes_its_exports(app, settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ledger = busy_ledger(app)
    env = {
        "RECOVA_ENV": "test",
        "RECOVA_HOME": str(settings.home),
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "SECRET_KEY": settings.secret_key,
        "RECOVA_DATA_KEY": base64.urlsafe_b64encode(settings.data_key).decode(),
        "RECOVA_QUEUE_PREFIX": settings.queue_prefix,
    }
    preview = recova(env, "billing", "close", ledger.tenant.slug, "--month", "2026-03", "--preview")
    assert preview.exit_code == 0, preview.output
    assert "preview: nothing was changed" in preview.output
    assert ledger.lines() == []

    first = recova(
        env,
        "billing",
        "close",
        ledger.tenant.slug,
        "--month",
        "2026-03",
        "--out",
        str(tmp_path / "one"),
    )
    second = recova(
        env,
        "billing",
        "close",
        ledger.tenant.slug,
        "--month",
        "2026-03",
        "--out",
        str(tmp_path / "two"),
    )

    assert first.exit_code == 0, first.output
    # March and the February before it, which no close has lined yet.
    assert "8 commission and 2 clawback lines written" in first.output
    assert "0 commission and 0 clawback lines written" in second.output
    names = sorted(path.name for path in (tmp_path / "one").iterdir())
    assert names == [f"{ledger.tenant.slug}-2026-03-CNY-invoice-1.{ext}" for ext in ("csv", "pdf")]
    for name in names:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
    bad = recova(env, "billing", "close", ledger.tenant.slug, "--month", "March")
    assert bad.exit_code != 0
    assert "YYYY-MM" in bad.output
