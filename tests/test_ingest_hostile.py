"""Hostile and damaged input to ingestion: every bad row gets a clear answer, nothing
else is lost, and a snapshot never empties the book by accident (issue 13, items 1, 3-7).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from sqlalchemy import func, select

from recova.connectors.models import IngestionRun, RunMode, RunStatus
from recova.connectors.pipeline import ChunkWriter
from recova.connectors.services import (
    confirm_recall,
    execute_ingestion,
    resume_run,
    row_errors_csv,
)
from recova.connectors.settings import save_settings
from recova.platform.cases.models import Account, Case, Contact
from recova.platform.kernel.extension import platform
from recova.tenants.scope import tenant_scope
from tests.ingest_support import (
    CN_COLUMNS,
    CN_HEADER,
    add_mapping,
    cn_row,
    ingest,
    load_run,
    new_tenant,
    row_errors,
    write_csv,
)
from tests.support import World, login, recova
from tests.test_ingest_api import _load, run_jobs


@pytest.fixture
def objects(app):  # type: ignore[no-untyped-def]
    return platform(app)


@pytest.fixture
def slug(app, objects) -> str:  # type: ignore[no-untyped-def]
    tenant = new_tenant(app)
    add_mapping(objects, tenant)
    return tenant


def _csv_bytes(rows: list[dict[str, Any]], *, encoding: str = "utf-8") -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CN_HEADER)
    for row in rows:
        writer.writerow([row.get(column, "") for column in CN_HEADER])
    return buffer.getvalue().encode(encoding)


def _open_accounts(objects, slug: str) -> set[str]:  # type: ignore[no-untyped-def]
    with tenant_scope(slug, db=objects.db) as session:
        return set(
            session.scalars(select(Account.external_id).where(Account.withdrawn_at.is_(None)))
        )


def _closed_cases(objects, slug: str) -> int:  # type: ignore[no-untyped-def]
    with tenant_scope(slug, db=objects.db) as session:
        return int(
            session.scalar(select(func.count()).select_from(Case).where(Case.status == "closed"))
            or 0
        )


def _run_again(objects, slug: str, run_id: int) -> IngestionRun:  # type: ignore[no-untyped-def]
    with tenant_scope(slug, db=objects.db) as session:
        tenant_id = session.info["tenant"].id
    execute_ingestion(objects, tenant_id=tenant_id, run_id=run_id)
    return load_run(objects, slug, run_id)


# --- 1. a snapshot guards the book ---------------------------------------------------------


def test_a_snapshot_that_accepts_no_row_recalls_nothing(objects, slug, tmp_path):
    ingest(objects, slug, write_csv(tmp_path / "book.csv", [cn_row(n) for n in range(1, 21)]))
    with tenant_scope(slug, db=objects.db) as session:  # even with the guard off
        save_settings(session, actor="test", recall_guard=False, recall_guard_percent=Decimal(20))
    # Five rows whose every key is unreadable (Excel turned them into numbers).
    bad = write_csv(
        tmp_path / "mangled.csv", [cn_row(n, 借款编号=f"1.2345{n}E+17") for n in range(1, 6)]
    )

    run = ingest(objects, slug, bad, mode=RunMode.SNAPSHOT)

    assert (run.status, run.rejected, run.recalled) == (RunStatus.COMPLETED, 5, 0)
    assert "no row of this snapshot was accepted" in (run.message or "")
    assert len(_open_accounts(objects, slug)) == 20
    assert _closed_cases(objects, slug) == 0


def test_a_rejected_row_still_counts_as_mentioned(objects, slug, tmp_path):
    ingest(objects, slug, write_csv(tmp_path / "book.csv", [cn_row(n) for n in range(1, 11)]))
    rows = [cn_row(n) for n in range(1, 10)] + [cn_row(10, 应还本金="not money")]

    run = ingest(objects, slug, write_csv(tmp_path / "snap.csv", rows), mode=RunMode.SNAPSHOT)

    assert (run.status, run.rejected, run.recalled) == (RunStatus.COMPLETED, 1, 0)
    assert "LN000010" in _open_accounts(objects, slug)


def test_a_snapshot_within_the_guard_recalls_at_once(objects, slug, tmp_path):
    ingest(objects, slug, write_csv(tmp_path / "book.csv", [cn_row(n) for n in range(1, 11)]))

    run = ingest(
        objects,
        slug,
        write_csv(tmp_path / "snap.csv", [cn_row(n) for n in range(1, 9)]),
        mode=RunMode.SNAPSHOT,
    )

    assert (run.status, run.recalled, run.recall_held) == (RunStatus.COMPLETED, 2, None)
    assert _open_accounts(objects, slug) == {f"LN{n:06d}" for n in range(1, 9)}


def test_a_snapshot_past_the_guard_holds_until_confirmed_and_recalls_once(objects, slug, tmp_path):
    ingest(objects, slug, write_csv(tmp_path / "book.csv", [cn_row(n) for n in range(1, 11)]))
    partial = write_csv(tmp_path / "snap.csv", [cn_row(n) for n in range(1, 4)] + [cn_row(11)])

    held = ingest(objects, slug, partial, mode=RunMode.SNAPSHOT)

    assert held.status is RunStatus.HELD
    assert (held.inserted, held.unchanged, held.recalled, held.recall_held) == (1, 3, 0, 7)
    assert "would recall 7 of the 11 open accounts (63.6%)" in (held.message or "")
    assert "20%" in (held.message or "")
    assert len(_open_accounts(objects, slug)) == 11  # nothing recalled yet
    assert _run_again(objects, slug, held.id).status is RunStatus.HELD  # a retry waits too
    with tenant_scope(slug, db=objects.db) as session:
        run = session.get(IngestionRun, held.id)
        assert run is not None
        with pytest.raises(ValueError, match="held for a recall"):
            resume_run(session, objects, tenant=session.info["tenant"], run=run)
        confirm_recall(session, objects, tenant=session.info["tenant"], run=run)

    done = _run_again(objects, slug, held.id)
    assert (done.status, done.recalled, done.message) == (RunStatus.COMPLETED, 7, None)
    assert _open_accounts(objects, slug) == {f"LN{n:06d}" for n in (1, 2, 3, 11)}
    assert _closed_cases(objects, slug) == 7
    again = _run_again(objects, slug, held.id)  # a job retried after the commit
    assert (again.status, again.recalled, again.attempts) == (RunStatus.COMPLETED, 7, 2)
    assert _closed_cases(objects, slug) == 7


def test_confirming_an_old_held_snapshot_after_a_newer_run_is_refused(objects, slug, tmp_path):
    ingest(objects, slug, write_csv(tmp_path / "book.csv", [cn_row(n) for n in range(1, 11)]))
    held = ingest(
        objects, slug, write_csv(tmp_path / "snap.csv", [cn_row(1)]), mode=RunMode.SNAPSHOT
    )
    assert held.status is RunStatus.HELD
    ingest(objects, slug, write_csv(tmp_path / "delta.csv", [cn_row(12)]))
    with tenant_scope(slug, db=objects.db) as session:
        run = session.get(IngestionRun, held.id)
        assert run is not None
        with pytest.raises(ValueError, match="finished after this one"):
            confirm_recall(session, objects, tenant=session.info["tenant"], run=run)
    assert len(_open_accounts(objects, slug)) == 11


@pytest.mark.real_commits  # an ingestion run locks and reads on connections of its own
def test_the_recall_guard_is_the_tenants_to_set_and_confirm_over_the_api(app, world: World):
    admin = login(app, world.a.admin_email)
    analyst = login(app, world.a.analyst_email)
    assert admin.get("/api/v1/ingestion/settings").json == {
        "recall_guard": True,
        "recall_guard_percent": "20.00",
    }
    refused = admin.request(
        "PUT", "/api/v1/ingestion/settings", {"recall_guard": True, "recall_guard_percent": "0"}
    )
    assert refused.status_code == 422
    assert "recall_guard_percent" in refused.json["errors"]["json"]
    forbidden = analyst.request(
        "PUT", "/api/v1/ingestion/settings", {"recall_guard": False, "recall_guard_percent": "5"}
    )
    assert forbidden.status_code == 403

    objects = platform(app)
    _load(admin, [cn_row(n) for n in range(900, 910)])
    run_jobs(app)
    book = len(_open_accounts(objects, world.a.slug))
    snapshot = _load(admin, [cn_row(900)], mode="snapshot")
    run_jobs(app)
    held = admin.get(f"/api/v1/ingestion/runs/{snapshot['id']}").json
    assert (held["status"], held["recall_held"], held["recalled"]) == ("held", book - 1, 0)
    assert "/confirm-recall" in held["message"]
    assert (
        analyst.post(f"/api/v1/ingestion/runs/{snapshot['id']}/confirm-recall").status_code == 403
    )
    confirmed = admin.post(f"/api/v1/ingestion/runs/{snapshot['id']}/confirm-recall")
    assert confirmed.status_code == 202, confirmed.json
    assert confirmed.json["status"] == "queued"
    run_jobs(app)
    done = admin.get(f"/api/v1/ingestion/runs/{snapshot['id']}").json
    assert (done["status"], done["recalled"], done["recall_confirmed"]) == (
        "completed",
        book - 1,
        True,
    )
    assert admin.post(f"/api/v1/ingestion/runs/{snapshot['id']}/confirm-recall").status_code == 409

    # A higher share lets the next snapshot through; the tenant's change is kept.
    saved = admin.request(
        "PUT",
        "/api/v1/ingestion/settings",
        {"recall_guard": True, "recall_guard_percent": "60"},
    )
    assert saved.status_code == 200, saved.json
    _load(admin, [cn_row(n) for n in range(910, 912)])
    run_jobs(app)
    through = _load(admin, [cn_row(900), cn_row(910)], mode="snapshot")  # recalls 1 of 3
    run_jobs(app)
    finished = admin.get(f"/api/v1/ingestion/runs/{through['id']}").json
    assert (finished["status"], finished["recalled"]) == ("completed", 1)
    assert admin.get("/api/v1/ingestion/settings").json["recall_guard_percent"] == "60.00"


@pytest.mark.real_commits  # an ingestion run locks and reads on connections of its own
def test_confirm_recall_up_front_over_the_api(app, world: World):
    admin = login(app, world.a.admin_email)
    _load(admin, [cn_row(n) for n in range(920, 925)])
    run_jobs(app)
    delta = admin.post(
        "/api/v1/ingestion/runs",
        {"mapping": "cn", "file_id": 1, "confirm_recall": True},
    )
    assert delta.status_code == 422  # only a snapshot recalls
    snapshot = _load(admin, [cn_row(920)], mode="snapshot", confirm_recall=True)
    run_jobs(app)
    done = admin.get(f"/api/v1/ingestion/runs/{snapshot['id']}").json
    assert done["status"] == "completed"
    assert done["recalled"] >= 4


def test_cli_snapshot_is_held_and_confirm_recall_lets_it_through(cli_env, tmp_path):
    from recova.platform.entry.app import create_app
    from recova.platform.kernel.config import Settings
    from recova.tenants.migrate import migrate_shared

    app = create_app(Settings.from_env(cli_env))
    objects = platform(app)
    try:
        migrate_shared(objects.db.engine)
        tenant = new_tenant(app)
        add_mapping(objects, tenant)
        ingest(objects, tenant, write_csv(tmp_path / "book.csv", [cn_row(n) for n in range(1, 6)]))
    finally:
        objects.db.dispose()
    partial = str(write_csv(tmp_path / "snap.csv", [cn_row(1)]))
    args = ("ingest", tenant, partial, "--mapping", "portfolio", "--mode", "snapshot")

    held = recova(cli_env, *args)
    assert held.exit_code == 1, held.output
    assert "held" in held.output
    assert "would recall 4 of the 5 open accounts" in held.output
    through = recova(cli_env, *args, "--confirm-recall")
    assert through.exit_code == 0, through.output
    assert "4 recalled" in through.output


def test_an_http_snapshot_that_fails_and_resumes_recalls_only_what_it_never_saw(app, tmp_path):
    """The part read before a failure still counts as mentioned after the resume."""
    import threading
    from wsgiref.simple_server import make_server

    from tests.test_ingest_recovery import LenderApi, _execute, _pull

    api = LenderApi()
    server = make_server("127.0.0.1", 0, api)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        objects, slug, first = _pull(app, f"http://127.0.0.1:{server.server_port}/loans")
        assert _execute(objects, slug, first).status is RunStatus.COMPLETED  # 12 accounts
        with tenant_scope(slug, db=objects.db) as session:
            save_settings(
                session, actor="test", recall_guard=False, recall_guard_percent=Decimal(20)
            )
            api.loans = api.loans[:11]  # the tenant dropped one loan
            api.malformed = {2}
            mapping_run = session.get(IngestionRun, first)
            assert mapping_run is not None
            from recova.connectors.models import HttpSource, IngestionMapping

            run = IngestionRun(
                kind=mapping_run.kind,
                connector="http",
                source_id=session.scalar(select(HttpSource.id)),
                mapping_id=session.scalar(select(IngestionMapping.id)),
                mapping_snapshot=mapping_run.mapping_snapshot,
                mode=RunMode.SNAPSHOT,
                status=RunStatus.QUEUED,
                as_of=dt.date(2026, 4, 19),
                source_info={},
            )
            session.add(run)
            session.flush()
            second = run.id
        failed = _execute(objects, slug, second)
        assert (failed.status, failed.recalled) == (RunStatus.FAILED, 0)
        api.malformed.clear()
        with tenant_scope(slug, db=objects.db) as session:
            run = session.get(IngestionRun, second)
            assert run is not None
            resume_run(session, objects, tenant=session.info["tenant"], run=run)
        resumed = _execute(objects, slug, second)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert (resumed.status, resumed.recalled) == (RunStatus.COMPLETED, 1), resumed.message
    assert len(_open_accounts(objects, slug)) == 11


# --- 3. NUL bytes --------------------------------------------------------------------------


def test_a_nul_byte_after_the_sample_is_a_row_error_and_every_other_row_loads(
    objects, slug, tmp_path
):
    rows = [cn_row(n) for n in range(1, 1501)]
    rows.insert(1200, cn_row(9001, 借款人姓名="王\x00五"))  # far past the first 64 KiB
    rows.insert(1300, cn_row(9002, 应还本金="10\x00.00"))  # a bad value holding the NUL
    path = tmp_path / "nul.csv"
    path.write_bytes(_csv_bytes(rows))
    assert path.read_bytes().index(b"\x00") > 64 * 1024

    run = ingest(objects, slug, path)

    assert run.status is RunStatus.COMPLETED, run.message
    assert (run.received, run.inserted, run.rejected) == (1502, 1500, 2)
    errors = row_errors(objects, slug, run.id)
    assert [(row, column) for row, column, _ in errors] == [
        (1202, "借款人姓名"),
        (1302, "应还本金"),
    ]
    assert all("NUL" in reason for _, _, reason in errors)
    with tenant_scope(slug, db=objects.db) as session:
        stored = session.get(IngestionRun, run.id)
        assert stored is not None
        text = "".join(row_errors_csv(session, stored))
    assert "\x00" not in text


def test_a_nul_byte_early_in_the_file_is_a_row_error_too(objects, slug, tmp_path):
    path = tmp_path / "early.csv"
    path.write_bytes(_csv_bytes([cn_row(1, 借款人姓名="a\x00b"), cn_row(2), cn_row(3)]))

    run = ingest(objects, slug, path)

    assert (run.status, run.inserted, run.rejected) == (RunStatus.COMPLETED, 2, 1)
    assert [(r, c) for r, c, _ in row_errors(objects, slug, run.id)] == [(2, "借款人姓名")]


def test_nul_and_lone_surrogates_in_json_lines_are_row_errors(objects, slug, tmp_path):
    lines = [cn_row(n) for n in range(1, 5)]
    lines[1]["应还本金"] = "10\x00.00"
    lines[2]["借款人姓名"] = "\ud800"
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n", encoding="ascii")

    run = ingest(objects, slug, path)

    assert (run.status, run.inserted, run.rejected) == (RunStatus.COMPLETED, 2, 2)
    assert [(r, c) for r, c, _ in row_errors(objects, slug, run.id)] == [
        (2, "应还本金"),
        (3, "借款人姓名"),
    ]
    with tenant_scope(slug, db=objects.db) as session:
        stored = session.get(IngestionRun, run.id)
        assert stored is not None
        text = "".join(row_errors_csv(session, stored))
    assert "\x00" not in text
    assert "10\\x00.00" in text  # what the row held, escaped


def test_the_error_store_takes_any_bytes_and_any_column_name(objects, tmp_path, app):
    tenant = new_tenant(app)
    long_name = "应还本金" + "x" * 300
    add_mapping(objects, tenant, columns={**CN_COLUMNS, "outstanding_principal": long_name})
    header = [long_name if c == "应还本金" else c for c in CN_HEADER]
    rows = [cn_row(n) for n in range(1, 602)]  # the bad row lies past the sample
    rows.insert(600, {**cn_row(9000), "应还本金": "bad\udcff"})
    for row in rows:
        row[long_name] = row.pop("应还本金")
    path = write_csv(tmp_path / "long.csv", rows[:600], header=header)
    with path.open("a", encoding="utf-8", errors="surrogateescape", newline="") as out:
        writer = csv.writer(out)
        for row in rows[600:]:
            writer.writerow([row.get(column, "") for column in header])

    run = ingest(objects, tenant, path)

    assert (run.status, run.inserted, run.rejected) == (RunStatus.COMPLETED, 601, 1), run.message
    [(row, column, reason)] = row_errors(objects, tenant, run.id)
    assert row == 602
    assert column is not None
    assert column.startswith("应还本金x")
    assert "UTF-8" in reason


def test_an_unexpected_error_fails_the_run_instead_of_leaving_it_queued(
    objects, slug, tmp_path, monkeypatch
):
    def broken_store(self, cur, errors, warnings=None):  # type: ignore[no-untyped-def]
        raise psycopg.DataError("the error store broke")

    monkeypatch.setattr(ChunkWriter, "_store_errors", broken_store)
    path = write_csv(tmp_path / "p.csv", [cn_row(1), cn_row(2, 应还本金="x")])

    run = ingest(objects, slug, path)

    assert run.status is RunStatus.FAILED
    assert "unexpected error (DataError)" in (run.message or "")
    monkeypatch.undo()
    with tenant_scope(slug, db=objects.db) as session:  # the file stayed: it resumes
        stored = session.get(IngestionRun, run.id)
        assert stored is not None
        resume_run(session, objects, tenant=session.info["tenant"], run=stored)
    resumed = _run_again(objects, slug, run.id)
    assert (resumed.status, resumed.inserted, resumed.rejected) == (RunStatus.COMPLETED, 1, 1)


# --- 4. oversized fields -------------------------------------------------------------------


def test_an_oversized_field_is_a_row_error_and_reading_goes_on(objects, slug, tmp_path):
    rows = [cn_row(n) for n in range(1, 7)]
    rows[2]["紧急联系人"] = "x" * (10 * 1024 * 1024)

    run = ingest(objects, slug, write_csv(tmp_path / "big.csv", rows))

    assert (run.status, run.received, run.inserted, run.rejected) == (
        RunStatus.COMPLETED,
        6,
        5,
        1,
    )
    [(row, _column, reason)] = row_errors(objects, slug, run.id)
    assert row == 4
    assert "longer than 131,072 characters" in reason


# --- 5. truncated files --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tail", "expected"),
    [
        ('LN000003,张3,,13800000003,"12,000.00",10', "no line break"),
        ('LN000003,张3,,13800000003,"12,000.00","1005', "ends inside a quoted field"),
    ],
    ids=["cut-in-a-plain-field", "cut-in-a-quoted-field"],
)
def test_a_file_cut_in_its_last_row_is_a_row_error_not_a_wrong_amount(
    objects, app, tmp_path, tail, expected
):
    tenant = new_tenant(app)
    columns = {
        "account_external_id": "借款编号",
        "full_name": "借款人姓名",
        "national_id": "身份证号",
        "phone": "手机号",
        "original_principal": "借款本金",
        "outstanding_principal": "应还本金",
        "days_past_due": "逾期天数",
    }
    add_mapping(objects, tenant, columns=columns)
    head = "借款编号,借款人姓名,身份证号,手机号,借款本金,应还本金,逾期天数"
    full = [f'LN00000{n},张{n},,1380000000{n},"12,000.00",1005.50,30' for n in (1, 2)]
    path = tmp_path / "cut.csv"
    path.write_text("\n".join([head, *full, tail]), encoding="utf-8")

    run = ingest(objects, tenant, path)

    assert (run.inserted, run.rejected) == (2, 1)
    [(row, _column, reason)] = row_errors(objects, tenant, run.id)
    assert row == 4
    assert expected in reason
    assert "truncated" in reason
    assert "LN000003" not in _open_accounts(objects, tenant)


def test_a_last_row_alone_in_missing_fields_looks_truncated(objects, slug, tmp_path):
    path = write_csv(tmp_path / "p.csv", [cn_row(1), cn_row(2)])
    with path.open("a", encoding="utf-8", newline="") as out:
        out.write("LN000003,张3\n")

    run = ingest(objects, slug, path)

    assert (run.inserted, run.rejected) == (2, 1)
    [(row, _column, reason)] = row_errors(objects, slug, run.id)
    assert (row, reason) == (
        4,
        "the file looks truncated: its last row has 2 fields, the header has 13",
    )


# --- 6. phones never reject the account ----------------------------------------------------


@pytest.mark.real_commits  # an ingestion run locks and reads on connections of its own
def test_an_unusable_phone_is_a_warning_and_the_account_loads(app, world: World):
    admin = login(app, world.a.admin_email)
    rows = [
        cn_row(930),
        cn_row(931, 手机号="1234"),  # the debtor's own: too short to be any number
        cn_row(932, 紧急联系人电话="800"),  # the emergency contact's
        cn_row(933, 手机号="12012345678"),  # possible, not valid: kept, unverified
        cn_row(934, 联系人关系=""),  # a third party without its relation
    ]
    run = _load(admin, rows)
    run_jobs(app)
    done = admin.get(f"/api/v1/ingestion/runs/{run['id']}").json
    assert done["status"] == "completed"
    assert (done["inserted"], done["rejected"], done["warnings"]) == (5, 0, 3)

    errors = admin.get(f"/api/v1/ingestion/runs/{run['id']}/errors").get_data(as_text=True)
    lines = list(csv.reader(io.StringIO(errors)))
    assert lines[0] == ["row", "column", "value", "reason", "severity"]
    warned = {(line[0], line[1], line[4]) for line in lines[1:]}
    assert warned == {
        ("3", "手机号", "warning"),
        ("4", "紧急联系人电话", "warning"),
        ("6", "联系人关系", "warning"),
    }
    assert all("the account is loaded without" in line[3] for line in lines[1:])
    assert "1234" not in errors  # personal values stay masked
    only = admin.get(f"/api/v1/ingestion/runs/{run['id']}/errors?severity=error")
    assert only.get_data(as_text=True).strip().splitlines() == ["row,column,value,reason,severity"]

    objects = platform(app)
    with tenant_scope(world.a.slug, db=objects.db) as session:
        contacts: dict[str, list[tuple[str, bool]]] = {}
        for account, relation, verified in session.execute(
            select(Account.external_id, Contact.relation, Contact.verified)
            .join(Contact, Contact.debtor_id == Account.debtor_id)
            .where(Account.external_id.in_([f"LN{n:06d}" for n in range(930, 935)]))
        ):
            contacts.setdefault(account, []).append((relation, verified))
        debtor_id = session.scalar(
            select(Account.debtor_id).where(Account.external_id == "LN000933")
        )
    assert sorted(contacts["LN000930"]) == [("self", True), ("配偶", True)]
    assert contacts["LN000931"] == [("配偶", True)]  # the unusable own phone left out
    assert contacts["LN000932"] == [("self", True)]  # the unusable third party left out
    assert sorted(contacts["LN000933"]) == [("self", False), ("配偶", True)]
    assert contacts["LN000934"] == [("self", True)]
    shown = admin.get(f"/api/v1/debtors/{debtor_id}").json["contacts"]
    assert {c["relation"]: c["verified"] for c in shown} == {"self": False, "配偶": True}
