"""Ingestion end to end on real PostgreSQL: formats, normalisation, row errors, idempotency,
snapshots, payments, concurrency and what never reaches the database in clear."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from sqlalchemy import select, text

from recova.connectors.models import FeedKind, RunMode, RunStatus
from recova.connectors.services import (
    execute_ingestion,
    mapping_by_name,
    start_run,
    store_file,
)
from recova.platform.cases.models import Account, Debtor
from recova.platform.kernel.extension import platform
from recova.tenants.scope import tenant_scope
from tests.ingest_support import (
    CN_COLUMNS,
    CN_HEADER,
    PAYMENT_COLUMNS,
    add_mapping,
    cn_row,
    ingest,
    load_run,
    new_tenant,
    row_errors,
    stored_state,
    write_csv,
)


@pytest.fixture
def objects(app):  # type: ignore[no-untyped-def]
    return platform(app)


@pytest.fixture
def slug(app, objects) -> str:  # type: ignore[no-untyped-def]
    tenant = new_tenant(app)
    add_mapping(objects, tenant)
    return tenant


def _accounts(objects, slug: str) -> dict[str, Account]:  # type: ignore[no-untyped-def]
    with tenant_scope(slug, db=objects.db) as session:
        found = {a.external_id: a for a in session.scalars(select(Account))}
        session.expunge_all()
        return found


def test_gbk_csv_with_chinese_headers_is_normalised_and_encrypted(objects, slug, tmp_path):
    rows = [cn_row(n) for n in range(1, 6)]
    path = write_csv(tmp_path / "portfolio.csv", rows, encoding="gbk")
    run = ingest(objects, slug, path)
    assert run.status is RunStatus.COMPLETED, run.message
    assert (run.received, run.inserted, run.updated, run.rejected) == (5, 5, 0, 0)
    assert run.source_info.get("encoding", "").lower() in {"gb18030", "gbk"}
    account = _accounts(objects, slug)["LN000001"]
    assert account.original_principal == Decimal("12000.00")
    assert account.outstanding_principal == Decimal("8000.50")
    assert account.overdue_amount == Decimal("8100.00")
    assert account.interest_rate == Decimal("0.24")
    assert account.due_date == dt.date(2026, 3, 5)
    assert account.days_past_due == 45
    assert account.currency == "CNY"
    # The source row keeps the tenant's own non-personal columns, nothing personal.
    assert account.source_row["借款本金"] == "12,000.00元"
    assert not {"借款人姓名", "身份证号", "手机号", "紧急联系人电话"} & set(account.source_row)
    cipher = objects.cipher
    with tenant_scope(slug, db=objects.db) as session:
        debtor = session.scalar(select(Debtor).where(Debtor.id == account.debtor_id))
        assert debtor is not None
        assert debtor.full_name == "张1"
        national_id = cipher.decrypt(debtor.national_id_ciphertext, context="debtor.national_id")
        assert national_id == rows[0]["身份证号"]
        assert debtor.national_id_masked == national_id[:4] + "********" + national_id[-4:]
        contacts = {
            c.relation: (cipher.decrypt(c.value_ciphertext, context="contact.phone"), c)
            for c in debtor.contacts
        }
    own, _ = contacts["self"]
    third, third_contact = contacts["配偶"]
    assert own == "+8613800000001"
    assert third == "+8613900000001"
    assert third_contact.name == "李1"
    assert third_contact.value_masked == "+86139****0001"


def test_malformed_rows_are_rejected_with_row_and_column_and_good_rows_load(
    objects, slug, tmp_path
):
    rows = [
        cn_row(1),
        cn_row(2, 借款人姓名=""),  # missing required field
        cn_row(3, 应还本金="abc"),  # not an amount
        cn_row(4, 应还本金="-5.00"),  # negative
        cn_row(5, 到期日="2026/2/30"),  # impossible date
        cn_row(6, 身份证号="110105198001010000"),  # bad checksum
        cn_row(7, 借款编号="LN000001"),  # duplicate of row 2's external id
        cn_row(8),
    ]
    path = write_csv(tmp_path / "portfolio.csv", rows)
    run = ingest(objects, slug, path)
    assert run.status is RunStatus.COMPLETED
    assert (run.received, run.inserted, run.rejected) == (8, 2, 6)
    errors = row_errors(objects, slug, run.id)
    assert [(row, column) for row, column, _ in errors] == [
        (3, "借款人姓名"),
        (4, "应还本金"),
        (5, "应还本金"),
        (6, "到期日"),
        (7, "身份证号"),
        (8, "借款编号"),
    ]
    reasons = {row: reason for row, _, reason in errors}
    assert reasons[3] == "required"
    assert "negative" in reasons[5]
    assert "2026-02-30" in reasons[6] or "no such date" in reasons[6]
    assert "checksum" in reasons[7]
    assert "duplicate" in reasons[8]
    assert "row 2" in reasons[8]
    assert set(_accounts(objects, slug)) == {"LN000001", "LN000008"}


def test_unknown_currency_is_a_row_error(app, objects, tmp_path):
    tenant = new_tenant(app)
    add_mapping(objects, tenant, columns={**CN_COLUMNS, "currency": "币种"})
    header = [*CN_HEADER, "币种"]
    rows = [cn_row(1, 币种="CNY"), cn_row(2, 币种="XYZ")]
    run = ingest(objects, tenant, write_csv(tmp_path / "p.csv", rows, header=header))
    assert (run.inserted, run.rejected) == (1, 1)
    [(row, column, reason)] = row_errors(objects, tenant, run.id)
    assert (row, column) == (3, "币种")
    assert "XYZ" in reason


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("empty.csv", b"", "empty"),
        ("binary.csv", bytes(range(256)) * 64, "text"),
        ("header-only.csv", "借款编号,借款人姓名\n".encode(), "header"),
    ],
)
def test_unreadable_files_fail_the_run_and_leave_nothing(
    objects, slug, tmp_path, name, content, expected
):
    path = tmp_path / name
    path.write_bytes(content)
    run = ingest(objects, slug, path)
    assert run.status is RunStatus.FAILED
    assert run.message
    assert expected in run.message.lower()
    assert (run.inserted, run.updated, run.rejected) == (0, 0, 0)
    assert _accounts(objects, slug) == {}
    assert row_errors(objects, slug, run.id) == []


def test_a_file_over_the_size_limit_is_refused(app, objects, slug, tmp_path):
    from recova.connectors.services import IngestionError

    path = write_csv(tmp_path / "big.csv", [cn_row(n) for n in range(1, 200)])
    small = dataclasses.replace(
        objects, settings=dataclasses.replace(objects.settings, max_upload_bytes=4096)
    )
    with pytest.raises(IngestionError, match="larger than the limit"):
        ingest(small, slug, path)
    assert _accounts(objects, slug) == {}


def test_resending_an_identical_file_changes_nothing(objects, slug, tmp_path):
    path = write_csv(tmp_path / "p.csv", [cn_row(n) for n in range(1, 21)])
    first = ingest(objects, slug, path)
    before = stored_state(objects, slug)
    second = ingest(objects, slug, path)
    assert (first.inserted, first.updated) == (20, 0)
    assert (second.inserted, second.updated, second.unchanged) == (0, 0, 20)
    assert stored_state(objects, slug) == before


def test_a_changed_row_is_an_update_and_a_new_phone_counts(objects, slug, tmp_path):
    ingest(objects, slug, write_csv(tmp_path / "a.csv", [cn_row(1), cn_row(2)]))
    changed = [cn_row(1, 应还本金="7,000.00"), cn_row(2, 手机号="13700000002")]
    run = ingest(objects, slug, write_csv(tmp_path / "b.csv", changed))
    assert (run.inserted, run.updated, run.unchanged) == (0, 2, 0)
    assert _accounts(objects, slug)["LN000001"].outstanding_principal == Decimal("7000.00")


def test_same_file_started_twice_at_once_gives_no_duplicates(app, objects, slug, tmp_path):
    path = write_csv(tmp_path / "p.csv", [cn_row(n) for n in range(1, 12001)])
    run_ids = []
    for _ in range(2):
        with tenant_scope(slug, db=objects.db) as session, path.open("rb") as stream:
            tenant = session.info["tenant"]
            stored = store_file(session, objects, filename="p.csv", stream=stream)
            mapping = mapping_by_name(session, "portfolio")
            assert mapping is not None
            run = start_run(
                session, objects, tenant=tenant, mapping=mapping, file=stored, enqueue=False
            )
            run_ids.append((tenant.id, run.id))
    threads = [
        threading.Thread(
            target=execute_ingestion, args=(objects,), kwargs={"tenant_id": t, "run_id": r}
        )
        for t, r in run_ids
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    runs = [load_run(objects, slug, r) for _, r in run_ids]
    assert all(run.status is RunStatus.COMPLETED for run in runs)
    assert sum(run.inserted for run in runs) == 12000
    assert sum(run.updated for run in runs) == 0
    with tenant_scope(slug, db=objects.db) as session:
        schema = session.info["tenant"].schema_name
        counts = session.execute(
            text(
                f'SELECT (SELECT count(*) FROM "{schema}".accounts),'
                f' (SELECT count(*) FROM "{schema}".cases),'
                f' (SELECT count(*) FROM "{schema}".debtors),'
                f' (SELECT count(*) FROM "{schema}".contacts)'
            )
        ).one()
    assert tuple(counts) == (12000, 12000, 12000, 24000)


def test_snapshot_recalls_missing_accounts_and_delta_leaves_them(app, objects, tmp_path):
    full = write_csv(tmp_path / "full.csv", [cn_row(n) for n in range(1, 6)])
    partial = write_csv(tmp_path / "partial.csv", [cn_row(n) for n in range(1, 4)])
    delta_tenant, snapshot_tenant = new_tenant(app), new_tenant(app)
    for tenant in (delta_tenant, snapshot_tenant):
        add_mapping(objects, tenant)
        ingest(objects, tenant, full)
    delta = ingest(objects, delta_tenant, partial, mode=RunMode.DELTA)
    # Two of five is more than the recall guard's default 20%: confirmed up front.
    snapshot = ingest(objects, snapshot_tenant, partial, mode=RunMode.SNAPSHOT, confirm_recall=True)
    assert delta.recalled == 0
    assert (snapshot.status, snapshot.recalled) == (RunStatus.COMPLETED, 2)
    cases = {a: (s, r) for a, s, r in stored_state(objects, snapshot_tenant)["cases"]}
    assert cases["LN000004"] == ("closed", "tenant_recall")
    assert cases["LN000001"] == ("new", None)
    assert all(
        s == "new"
        for s, _ in {a: (s, r) for a, s, r in stored_state(objects, delta_tenant)["cases"]}.values()
    )
    assert {k for k, a in _accounts(objects, snapshot_tenant).items() if a.withdrawn_at} == {
        "LN000004",
        "LN000005",
    }
    # The tenant sends the account again: it is back in collection, its case reopened.
    back = ingest(objects, snapshot_tenant, full, mode=RunMode.SNAPSHOT)
    assert (back.recalled, back.updated) == (0, 2)
    cases = {a: (s, r) for a, s, r in stored_state(objects, snapshot_tenant)["cases"]}
    assert cases["LN000004"] == ("new", None)


def test_all_or_nothing_loads_nothing_when_a_row_is_bad(objects, slug, tmp_path):
    rows = [cn_row(1), cn_row(2, 应还本金="x"), cn_row(3)]
    run = ingest(objects, slug, write_csv(tmp_path / "p.csv", rows), all_or_nothing=True)
    assert run.status is RunStatus.FAILED
    assert "nothing was loaded" in (run.message or "")
    assert (run.received, run.inserted, run.rejected) == (3, 0, 1)
    assert [(r, c) for r, c, _ in row_errors(objects, slug, run.id)] == [(3, "应还本金")]
    assert _accounts(objects, slug) == {}
    good = ingest(
        objects, slug, write_csv(tmp_path / "q.csv", [cn_row(1), cn_row(3)]), all_or_nothing=True
    )
    assert (good.status, good.inserted) == (RunStatus.COMPLETED, 2)


def test_excel_with_serial_dates_and_an_id_excel_mangled(app, objects, tmp_path):
    tenant = new_tenant(app)
    add_mapping(
        objects,
        tenant,
        columns={
            "account_external_id": "loan_id",
            "full_name": "name",
            "national_id": "id_number",
            "outstanding_principal": "principal",
            "due_date": "due",
        },
    )
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["loan_id", "name", "id_number", "principal", "due"])
    good_id = cn_row(1)["身份证号"]
    sheet.append(["X-1", "王五", good_id, 1500.5, 45356])  # serial date: 2024-03-05
    sheet.append(["X-2", "赵六", 1.10105199003074e17, 900, dt.datetime(2024, 3, 6)])
    path = tmp_path / "portfolio.xlsx"
    book.save(path)
    run = ingest(objects, tenant, path)
    assert (run.status, run.inserted, run.rejected) == (RunStatus.COMPLETED, 1, 1)
    [(row, column, reason)] = row_errors(objects, tenant, run.id)
    assert (row, column) == (3, "id_number")
    assert "Excel" in reason
    account = _accounts(objects, tenant)["X-1"]
    assert account.due_date == dt.date(2024, 3, 5)
    assert account.outstanding_principal == Decimal("1500.50")


def _payments_tenant(app, objects, tmp_path) -> str:  # type: ignore[no-untyped-def]
    tenant = new_tenant(app)
    add_mapping(objects, tenant)
    add_mapping(objects, tenant, "payments", kind=FeedKind.PAYMENTS, columns=PAYMENT_COLUMNS)
    ingest(objects, tenant, write_csv(tmp_path / "p.csv", [cn_row(1), cn_row(2)]))
    return tenant


def _jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    return path


def test_payments_and_reversals_are_counted_once(app, objects, tmp_path):
    tenant = _payments_tenant(app, objects, tmp_path)
    records = [
        {
            "payment_id": "P1",
            "loan_id": "LN000001",
            "amount": "1,000.00",
            "paid_at": "2026-04-01 10:00:00",
        },
        {
            "payment_id": "P2",
            "loan_id": "LN000002",
            "amount": "300",
            "paid_at": "2026-04-02T09:30:00+08:00",
        },
        {
            "payment_id": "R1",
            "loan_id": "LN000001",
            "amount": "400",
            "paid_at": "2026-04-03",
            "reverses": "P1",
        },
        {
            "payment_id": "R2",
            "loan_id": "LN000001",
            "amount": "700",
            "paid_at": "2026-04-04",
            "reverses": "P1",
        },
        {
            "payment_id": "R3",
            "loan_id": "LN000001",
            "amount": "10",
            "paid_at": "2026-04-04",
            "reverses": "P9",
        },
        {"payment_id": "P3", "loan_id": "NOPE", "amount": "5", "paid_at": "2026-04-04"},
        {"payment_id": "P4", "loan_id": "LN000002", "amount": "0", "paid_at": "2026-04-04"},
    ]
    path = _jsonl(tmp_path / "payments.jsonl", records)
    run = ingest(objects, tenant, path, "payments")
    assert run.status is RunStatus.COMPLETED, run.message
    assert (run.received, run.inserted, run.rejected) == (7, 3, 4)
    errors = {row: (column, reason) for row, column, reason in row_errors(objects, tenant, run.id)}
    assert errors[4][0] == "amount"
    assert "exceeds" in errors[4][1]
    assert errors[5][0] == "reverses"
    assert "unknown payment" in errors[5][1]
    assert errors[6][0] == "loan_id"
    assert errors[7][0] == "amount"
    payments = {p[0]: p for p in stored_state(objects, tenant)["payments"]}
    assert payments["P1"][3] == Decimal("1000.00")
    assert payments["P1"][5] == dt.datetime(2026, 4, 1, 2, 0, tzinfo=dt.UTC)  # Shanghai time
    assert payments["R1"][2] == "reversal"
    assert payments["R1"][8] == "P1"
    again = ingest(objects, tenant, path, "payments")
    assert (again.inserted, again.unchanged, again.rejected) == (0, 3, 4)
    # The same payment id with another amount is refused, never a second payment.
    changed = _jsonl(
        tmp_path / "changed.jsonl",
        [{"payment_id": "P2", "loan_id": "LN000002", "amount": "301", "paid_at": "2026-04-02"}],
    )
    refused = ingest(objects, tenant, changed, "payments")
    assert (refused.inserted, refused.rejected) == (0, 1)
    assert len(stored_state(objects, tenant)["payments"]) == 3


def test_no_plaintext_personal_data_in_the_database_or_redis(objects, slug, tmp_path, caplog):
    rows = [cn_row(n) for n in range(1, 4)]
    caplog.set_level("DEBUG")
    ingest(
        objects,
        slug,
        write_csv(tmp_path / "p.csv", [*rows, cn_row(9, 身份证号="110105198001010000")]),
    )
    secrets = set()
    for row in rows:
        secrets |= {row["身份证号"], row["手机号"], row["紧急联系人电话"]}
    secrets.add("110105198001010000")
    with tenant_scope(slug, db=objects.db) as session:
        schema = session.info["tenant"].schema_name
        tables = session.scalars(
            text("SELECT table_name FROM information_schema.tables WHERE table_schema = :s"),
            {"s": schema},
        ).all()
        dump = "\n".join(
            str(row)
            for table in tables
            for row in session.execute(text(f'SELECT * FROM "{schema}"."{table}"'))
        )
    redis_dump = "\n".join(
        str(objects.redis.dump(key)) for key in objects.redis.scan_iter(count=1000)
    )
    for secret in secrets:
        digits = secret[-8:]
        assert digits not in dump, "plaintext personal data stored"
        assert digits not in redis_dump
        assert digits not in caplog.text


def test_cli_ingest_reports_counts_errors_and_exit_status(cli_env, tmp_path):
    from recova.platform.entry.app import create_app
    from recova.platform.kernel.config import Settings
    from recova.tenants.migrate import migrate_shared
    from tests.support import recova

    app = create_app(Settings.from_env(cli_env))
    objects = platform(app)
    try:
        migrate_shared(objects.db.engine)
        tenant = new_tenant(app)
        add_mapping(objects, tenant)
    finally:
        objects.db.dispose()
    path = write_csv(tmp_path / "p.csv", [cn_row(1), cn_row(2, 到期日="2026/13/1")])
    errors = tmp_path / "errors.csv"
    result = recova(
        cli_env, "ingest", tenant, str(path), "--mapping", "portfolio", "--errors", str(errors)
    )
    assert result.exit_code == 2, result.output
    assert "2 rows read, 1 inserted, 0 updated, 0 unchanged, 1 rejected" in result.output
    assert errors.read_text(encoding="utf-8").splitlines()[1].startswith("3,到期日,2026/13/1,")
    clean = write_csv(tmp_path / "q.csv", [cn_row(1)])
    again = recova(cli_env, "ingest", tenant, str(clean), "--mapping", "portfolio")
    assert again.exit_code == 0, again.output
    assert "1 unchanged" in again.output
    unknown = recova(cli_env, "ingest", tenant, str(clean), "--mapping", "nope")
    assert unknown.exit_code == 1
    assert "no mapping 'nope' (known: portfolio)" in unknown.output
