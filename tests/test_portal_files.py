"""The portal's portfolio files: upload, mapping from the file's header, the preview of the
first rows, runs on a real RQ worker with their row errors, snapshot confirmation, HTTP
sources, and who may open and change what."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from recova.connectors.models import (
    FeedKind,
    HttpSource,
    IngestionFile,
    IngestionMapping,
    IngestionRun,
    RunMode,
)
from recova.connectors.services import register_source, save_mapping, start_run, store_file
from recova.platform.cases.models import Account
from recova.platform.kernel.extension import platform
from recova.tenants.scope import tenant_scope
from tests.ingest_support import CN_COLUMNS, CN_HEADER, cn_row
from tests.support import Caller, World, anonymous, login
from tests.test_hostile_xlsx import _repeated_rows, _write
from tests.test_ingest_api import run_jobs

TOKEN = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def _csv(rows: list[dict[str, Any]], *, encoding: str = "gbk") -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CN_HEADER)
    for row in rows:
        writer.writerow([row[c] for c in CN_HEADER])
    return buffer.getvalue().encode(encoding)


def _token(caller: Caller, path: str) -> str:
    page = caller.client.get(path)
    assert page.status_code == 200, page.get_data(as_text=True)[:500]
    found = TOKEN.search(page.get_data(as_text=True))
    assert found is not None
    return found.group(1)


def _upload(
    caller: Caller, slug: str, content: bytes, filename: str = "portfolio.csv", **form: str
) -> Any:
    token = _token(caller, f"/portal/{slug}/files")
    data: dict[str, Any] = {
        "csrf_token": token,
        "kind": "portfolio",
        "connector": "",
        **form,
        "file": (io.BytesIO(content), filename),
    }
    return caller.client.post(
        f"/portal/{slug}/files/upload", data=data, content_type="multipart/form-data"
    )


def _file_form(caller: Caller, path: str, **changes: str) -> dict[str, str]:
    """The file page's form as the page filled it in (suggestions chosen), with changes."""
    html = caller.client.get(path).get_data(as_text=True)
    form: dict[str, str] = {"csrf_token": TOKEN.search(html).group(1)}  # type: ignore[union-attr]
    for name, body in re.findall(
        r'<select[^>]*name="(column_\d+)"[^>]*>(.*?)</select>', html, re.S
    ):
        chosen = re.search(r'<option selected value="([^"]*)"', body)
        form[name] = chosen.group(1) if chosen else ""
    form.update({"kind": "portfolio", "mapping": "", "mode": "delta", "name": ""})
    form.update(changes)
    return form


def _count(app: Any, slug: str, model: type) -> int:
    with tenant_scope(slug, db=platform(app).db) as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


@pytest.mark.real_commits  # starting a run hands its job to the outbox after commit
def test_upload_suggests_fields_and_previews_row_errors_before_loading(app, world: World) -> None:
    admin = login(app, world.a.admin_email)
    slug = world.a.slug
    accounts_before = _count(app, slug, Account)
    runs_before = _count(app, slug, IngestionRun)
    rows = [cn_row(n) for n in range(1, 4)]
    rows += [cn_row(4, 借款人姓名=""), cn_row(5, 紧急联系人电话="12"), cn_row(6, 应还本金="abc")]
    uploaded = _upload(admin, slug, _csv(rows))
    assert uploaded.status_code == 302, uploaded.get_data(as_text=True)
    path = uploaded.headers["Location"]
    assert re.search(r"/files/\d+\?kind=portfolio$", path)
    page = admin.client.get(path)
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    # The file's own columns, with samples, each with its suggested field chosen.
    assert "借款人姓名" in html
    assert "张1" in html
    for position, column in enumerate(CN_HEADER):
        field_name = next(f for f, c in CN_COLUMNS.items() if c == column)
        select_html = re.search(rf'name="column_{position}"[^>]*>(.*?)</select>', html, re.S).group(
            1
        )  # type: ignore[union-attr]
        assert f'<option selected value="{field_name}"' in select_html, column
    # The first rows as stored, each bad row with its reason; the header is row 1.
    preview = html.split('id="preview"', 1)[1]
    row_html = {
        int(n): body
        for n, body in re.findall(r'<td class="num">(\d+)</td>(.*?)</tr>', preview, re.S)
    }
    assert set(row_html) == {2, 3, 4, 5, 6, 7}
    assert "badge good" in row_html[2]
    assert "LN000001" in row_html[2]
    assert "8000.50" in row_html[2]
    assert "badge bad" in row_html[5]
    assert "借款人姓名" in row_html[5]
    assert "required" in row_html[5]
    assert "badge warn" in row_html[6]
    assert "紧急联系人电话" in row_html[6]
    assert "badge bad" in row_html[7]
    assert "应还本金" in row_html[7]
    # Nothing was loaded: no run, no account.
    assert _count(app, slug, IngestionRun) == runs_before
    assert _count(app, slug, Account) == accounts_before

    # A mapping missing a required field: the reason beside the page's form, 422.
    unmapped = _file_form(admin, path, action="preview", column_1="")
    refused = admin.client.post(path, data=unmapped)
    assert refused.status_code == 422
    assert "required: choose the column that holds it" in refused.get_data(as_text=True)
    # The same field for two columns: refused beside the second one, the input kept.
    twice = _file_form(admin, path, action="preview", column_2="full_name")
    refused = admin.client.post(path, data=twice)
    assert refused.status_code == 422
    assert "Already chosen for the column 借款人姓名" in refused.get_data(as_text=True)
    # Starting needs the new mapping's name, valid and unused.
    nameless = admin.client.post(path, data=_file_form(admin, path, action="start"))
    assert nameless.status_code == 422
    assert "Name the new mapping to save it." in nameless.get_data(as_text=True)
    badly_named = admin.client.post(path, data=_file_form(admin, path, action="start", name="a b"))
    assert badly_named.status_code == 422
    assert 'value="a b"' in badly_named.get_data(as_text=True)  # the input stays

    started = admin.client.post(path, data=_file_form(admin, path, action="start", name="cn-gbk"))
    assert started.status_code == 302, started.get_data(as_text=True)
    run_id = int(started.headers["Location"].rsplit("/", 1)[1])
    with tenant_scope(slug, db=platform(app).db) as session:
        mapping = session.scalar(select(IngestionMapping).where(IngestionMapping.name == "cn-gbk"))
        assert mapping is not None
        assert mapping.columns == CN_COLUMNS
        run = session.get(IngestionRun, run_id)
        assert run is not None
        assert run.status.value == "queued"
        assert run.mapping_id == mapping.id
    run_page = admin.client.get(started.headers["Location"]).get_data(as_text=True)
    assert 'hx-trigger="every 2s"' in run_page  # a live progress bar while it is queued

    # The saved mapping, chosen for another upload, is used as it is.
    again = _upload(admin, slug, _csv(rows))
    second = again.headers["Location"]
    chosen = admin.client.get(f"{second}&mapping={mapping.id}").get_data(as_text=True)
    assert "The saved mapping is used as it is" in chosen
    assert "badge bad" in chosen.split('id="preview"', 1)[1]


@pytest.mark.real_commits  # the run executes on the worker's connections
def test_a_run_shows_progress_paged_row_errors_and_a_safe_csv(app, world: World) -> None:
    admin = login(app, world.a.admin_email)
    slug = world.a.slug
    rows = [cn_row(n) for n in range(1, 6)]
    rows += [cn_row(n, 借款人姓名="") for n in range(6, 66)]
    rows += [cn_row(66, 借款编号='=HYPERLINK("http://x","y")', 应还本金="bad")]
    path = _upload(admin, slug, _csv(rows)).headers["Location"]
    started = admin.client.post(path, data=_file_form(admin, path, action="start", name="cn"))
    assert started.status_code == 302, started.get_data(as_text=True)
    run_url = started.headers["Location"]
    run_id = int(run_url.rsplit("/", 1)[1])
    live = admin.client.get(f"{run_url}/progress", headers={"HX-Request": "true"})
    assert 'hx-trigger="every 2s"' in live.get_data(as_text=True)
    assert "HX-Refresh" not in live.headers

    run_jobs(app)

    finished = admin.client.get(f"{run_url}/progress", headers={"HX-Request": "true"})
    assert finished.headers.get("HX-Refresh") == "true"  # the page reloads, polling ends
    assert "hx-trigger" not in finished.get_data(as_text=True)
    page = admin.client.get(run_url).get_data(as_text=True)
    assert "Completed" in page
    assert "hx-trigger" not in page
    assert re.search(r'data-count="inserted">5<', page)
    assert re.search(r'data-count="rejected">61<', page)
    first = re.findall(r'<tr>\s*<td class="num">(\d+)</td>', page.split('id="errors"', 1)[1])
    assert [int(n) for n in first] == list(range(7, 57))  # 50 a page, in row order
    next_link = re.search(r'href="([^"]*after=\d+[^"]*)"', page)
    assert next_link is not None
    second = admin.client.get(next_link.group(1).replace("&amp;", "&")).get_data(as_text=True)
    rest = re.findall(r'<tr>\s*<td class="num">(\d+)</td>', second.split('id="errors"', 1)[1])
    assert [int(n) for n in rest] == list(range(57, 68))
    assert "Next page" not in second

    download = admin.client.get(f"/portal/{slug}/files/runs/{run_id}/errors.csv")
    assert download.status_code == 200
    assert download.mimetype == "text/csv"
    lines = list(csv.reader(io.StringIO(download.get_data(as_text=True))))
    assert lines[0] == ["row", "column", "value", "reason", "severity"]
    assert len(lines) == 1 + 61
    hostile = [line for line in lines if line[0] == "67"]
    assert hostile
    assert all(not cell.startswith("=") for line in hostile for cell in line)
    listed = admin.client.get(f"/portal/{slug}/files").get_data(as_text=True)
    assert f"/files/runs/{run_id}" in listed


@pytest.mark.real_commits  # starting a run hands its job to the outbox after commit
def test_snapshot_states_how_many_accounts_it_would_recall(app, world: World) -> None:
    admin = login(app, world.a.admin_email)
    slug = world.a.slug
    with tenant_scope(slug, db=platform(app).db) as session:
        open_ids = list(
            session.scalars(select(Account.external_id).where(Account.withdrawn_at.is_(None)))
        )
    assert len(open_ids) >= 2
    kept = open_ids[0]
    runs_before = _count(app, slug, IngestionRun)
    rows = [cn_row(1, 借款编号=kept), cn_row(2, 借款编号="NEW-1"), cn_row(3, 借款编号=kept)]
    path = _upload(admin, slug, _csv(rows)).headers["Location"]
    form = _file_form(admin, path, action="start", name="snap", mode="snapshot")
    asked = admin.client.post(path, data=form)
    html = asked.get_data(as_text=True)
    assert asked.status_code == 200, html
    would = len(open_ids) - 1
    assert f"This snapshot would recall {would} of the {len(open_ids)} open accounts" in html
    assert "more than the recall guard allows" in html  # over 20% of the book
    assert _count(app, slug, IngestionRun) == runs_before  # nothing started unconfirmed
    confirmed = admin.client.post(path, data={**form, "action": "confirm"})
    assert confirmed.status_code == 302, confirmed.get_data(as_text=True)
    with tenant_scope(slug, db=platform(app).db) as session:
        run = session.scalars(select(IngestionRun).order_by(IngestionRun.id.desc())).first()
        assert run is not None
        assert run.mode is RunMode.SNAPSHOT
        assert run.recall_confirmed


def test_bad_files_are_refused_with_a_clear_message(
    app, world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = login(app, world.a.admin_email)
    slug = world.a.slug
    before = _count(app, slug, IngestionFile)

    def refused(content: bytes, filename: str, message: str, **form: str) -> None:
        answer = _upload(admin, slug, content, filename, **form)
        html = answer.get_data(as_text=True)
        assert answer.status_code == 422, html[:300]
        assert message in html, html
        assert re.search(r'<p class="field-error" id="(file|connector)-error">', html)

    refused(b"\x89PNG\r\n\x1a\n" + b"\x00" * 200, "portfolio.csv", "it looks like a PNG image")
    refused(b"a,b\n1,2\n", "portfolio.pdf", "cannot tell the format of")
    refused("借款编号\n".encode("gbk"), "portfolio.csv", "header but no rows")
    refused(b"\xff\xfe\x00" * 3000, "portfolio.csv", "not")
    bomb = _write(tmp_path / "bomb.xlsx", _repeated_rows(30 * 1024 * 1024))
    refused(bomb.read_bytes(), "portfolio.xlsx", "zip bomb")
    objects = platform(app)
    monkeypatch.setattr(
        objects, "settings", dataclasses.replace(objects.settings, max_upload_bytes=2048)
    )
    refused(_csv([cn_row(n) for n in range(1, 40)]), "big.csv", "larger than the limit")
    missing = admin.client.post(
        f"/portal/{slug}/files/upload",
        data={"csrf_token": _token(admin, f"/portal/{slug}/files"), "kind": "portfolio"},
        content_type="multipart/form-data",
    )
    assert missing.status_code == 422
    assert "Choose a file to upload." in missing.get_data(as_text=True)
    assert _count(app, slug, IngestionFile) == before  # nothing stored


@pytest.fixture
def lender_api() -> Iterator[tuple[list[Request], list[int], str]]:
    """A loopback JSON endpoint of two pages; ``status[0]`` set to fail it."""
    seen: list[Request] = []
    status = [200]

    @Request.application  # type: ignore[arg-type]
    def application(request: Request) -> Response:
        seen.append(request)
        if status[0] != 200:
            return Response("down", status=status[0])
        page = int(request.args.get("page", "1"))
        data = (
            [{"loan_id": f"H-{page}-{n}", "name": f"王{n}"} for n in range(3)] if page < 3 else []
        )
        return Response(json.dumps({"data": data}), mimetype="application/json")

    server = make_server("127.0.0.1", 0, application, threaded=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield seen, status, f"http://127.0.0.1:{server.port}/loans"
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


def test_http_sources_are_saved_without_showing_secrets_and_tested(
    app, world: World, lender_api: tuple[list[Request], list[int], str], monkeypatch
) -> None:
    seen, status, url = lender_api
    objects = platform(app)
    monkeypatch.setattr(
        objects,
        "settings",
        dataclasses.replace(objects.settings, http_sources_allow_private=True),
    )
    admin = login(app, world.a.admin_email)
    slug = world.a.slug
    token = _token(admin, f"/portal/{slug}/files")
    form = {
        "csrf_token": token,
        "name": "lender-api",
        "url": url,
        "records_path": "data",
        "pagination": "page",
        "page_size": "3",
        "auth_header": "Authorization",
        "auth_value": "Bearer top-secret-value",
    }
    invalid = admin.client.post(
        f"/portal/{slug}/files/sources", data={**form, "url": "not a url", "page_size": "0"}
    )
    html = invalid.get_data(as_text=True)
    assert invalid.status_code == 422
    assert "Give an http or https URL." in html
    assert 'id="page_size-error"' in html
    assert "top-secret-value" not in html  # a password field is never filled back
    created = admin.client.post(f"/portal/{slug}/files/sources", data=form)
    assert created.status_code == 302, created.get_data(as_text=True)
    listed = admin.client.get(f"/portal/{slug}/files").get_data(as_text=True)
    assert "lender-api" in listed
    assert "top-secret-value" not in listed
    with tenant_scope(slug, db=objects.db) as session:
        source = session.scalar(select(HttpSource).where(HttpSource.name == "lender-api"))
        assert source is not None
        assert source.options == {
            "url": url,
            "records_path": "data",
            "pagination": "page",
            "page_size": 3,
        }
        source_id = source.id
    duplicate = admin.client.post(f"/portal/{slug}/files/sources", data=form)
    assert duplicate.status_code == 422
    assert "A source of this name exists already." in duplicate.get_data(as_text=True)

    tested = admin.client.post(
        f"/portal/{slug}/files/sources/{source_id}/test", data={"csrf_token": token}
    )
    html = tested.get_data(as_text=True)
    assert tested.status_code == 200, html
    assert "Connected." in html
    assert "H-1-0" in html
    assert "王2" in html
    assert seen[-1].headers["Authorization"] == "Bearer top-secret-value"
    assert "top-secret-value" not in html

    status[0] = 500
    failed = admin.client.post(
        f"/portal/{slug}/files/sources/{source_id}/test", data={"csrf_token": token}
    )
    html = failed.get_data(as_text=True)
    assert failed.status_code == 422
    assert "The connection test failed" in html
    assert "500" in html

    monkeypatch.setattr(
        objects, "settings", dataclasses.replace(objects.settings, http_sources_allow_private=False)
    )
    private = admin.client.post(
        f"/portal/{slug}/files/sources/{source_id}/test", data={"csrf_token": token}
    )
    assert private.status_code == 422
    assert "The connection test failed" in private.get_data(as_text=True)


# --- who may open and change what ---------------------------------------------------------


def _objects_in(app: Any, slug: str, avoid: dict[str, set[int]]) -> dict[str, int]:
    """A file, mapping, source and run in ``slug`` whose ids ``avoid`` does not hold."""
    objects = platform(app)
    made: dict[str, int] = {}
    with tenant_scope(slug, db=objects.db) as session:
        while True:
            mapping = save_mapping(
                session,
                name=f"m{len(made)}-{session.scalar(select(func.count()).select_from(IngestionMapping))}",
                kind=FeedKind.PORTFOLIO,
                columns=CN_COLUMNS,
            )
            file = store_file(
                session, objects, filename="p.csv", stream=io.BytesIO(_csv([cn_row(1)]))
            )
            source = register_source(
                session,
                objects,
                name=f"s{mapping.id}",
                options={"url": "https://lender.test/loans"},
            )
            run = start_run(
                session,
                objects,
                tenant=session.info["tenant"],
                mapping=mapping,
                file=file,
                enqueue=False,
            )
            ids = {"mapping": mapping.id, "file": file.id, "source": source.id, "run": run.id}
            if all(ids[k] not in avoid.get(k, set()) for k in ids):
                return ids


def _ids_of(app: Any, slug: str) -> dict[str, set[int]]:
    with tenant_scope(slug, db=platform(app).db) as session:
        return {
            "mapping": set(session.scalars(select(IngestionMapping.id))),
            "file": set(session.scalars(select(IngestionFile.id))),
            "source": set(session.scalars(select(HttpSource.id))),
            "run": set(session.scalars(select(IngestionRun.id))),
        }


def _reads(slug: str, ids: dict[str, int]) -> list[str]:
    base = f"/portal/{slug}/files"
    return [
        base,
        f"{base}/{ids['file']}?kind=portfolio",
        f"{base}/mappings/{ids['mapping']}",
        f"{base}/runs/{ids['run']}",
        f"{base}/runs/{ids['run']}/progress",
        f"{base}/runs/{ids['run']}/errors.csv",
    ]


def _writes(slug: str, ids: dict[str, int]) -> list[str]:
    base = f"/portal/{slug}/files"
    return [
        f"{base}/upload",
        f"{base}/{ids['file']}?kind=portfolio",
        f"{base}/runs/{ids['run']}/confirm-recall",
        f"{base}/runs/{ids['run']}/resume",
        f"{base}/sources",
        f"{base}/sources/{ids['source']}/test",
        f"{base}/sources/{ids['source']}/run",
    ]


def test_who_may_open_and_change_portfolio_files(app, world: World) -> None:
    a, b = world.a.slug, world.b.slug
    mine = _objects_in(app, a, {})
    theirs = _objects_in(app, b, _ids_of(app, a))
    admin = login(app, world.a.admin_email)
    for path in _reads(a, mine):
        assert admin.client.get(path).status_code == 200, path
    # Another tenant's objects on this tenant's pages do not exist.
    token = _token(admin, f"/portal/{a}/files")
    for path in _reads(a, theirs)[1:]:
        assert admin.client.get(path).status_code == 404, path
    for path in _writes(a, theirs)[1:]:
        if path.endswith("/sources"):
            continue
        answer = admin.client.post(path, data={"csrf_token": token})
        assert answer.status_code == 404, path
    # A saved mapping of the other tenant chosen on this tenant's file: 404.
    chosen = admin.client.get(
        f"/portal/{a}/files/{mine['file']}?kind=portfolio&mapping={theirs['mapping']}"
    )
    assert chosen.status_code == 404
    run_form = {"csrf_token": token, f"source{mine['source']}-mapping": str(theirs["mapping"])}
    pulled = admin.client.post(f"/portal/{a}/files/sources/{mine['source']}/run", data=run_form)
    assert pulled.status_code == 404

    analyst = login(app, world.a.analyst_email)
    before = _ids_of(app, a)
    for path in _reads(a, mine):
        assert analyst.client.get(path).status_code == 200, path
    listed = analyst.client.get(f"/portal/{a}/files").get_data(as_text=True)
    assert "Upload a file" not in listed
    assert "Test connection" not in listed
    analyst_token = _token(analyst, f"/portal/{a}/files")
    for path in _writes(a, mine):
        answer = analyst.client.post(
            path,
            data={"csrf_token": analyst_token, "name": "x", "url": "https://lender.test/"},
        )
        assert answer.status_code == 403, path
    assert _ids_of(app, a) == before  # nothing changed

    for email in (world.manager_email, world.collector_email):
        staff = login(app, email)
        for path in _reads(a, mine):
            assert staff.client.get(path).status_code == 403, (email, path)
    other_admin = login(app, world.b.admin_email)
    for path in _reads(a, mine):
        assert other_admin.client.get(path).status_code == 404, path
    nobody = anonymous(app)
    for path in _reads(a, mine):
        answer = nobody.client.get(path)
        assert answer.status_code == 302, path
        assert "/login" in answer.headers["Location"], path


def test_a_payment_file_maps_and_previews_its_payments(app, world: World) -> None:
    admin = login(app, world.a.admin_email)
    slug = world.a.slug
    content = (
        "还款流水号,借款编号,还款金额,还款时间,还款渠道\n"
        "P-1,L-1,100.00,2026-05-01 10:00,bank_transfer\n"
        "P-2,L-1,-5,2026-05-02 10:00,bank_transfer\n"
        "P-3,L-2,20.50,yesterday,alipay\n"
    ).encode()
    uploaded = _upload(admin, slug, content, "payments.csv", kind="payments")
    assert uploaded.status_code == 302
    path = uploaded.headers["Location"]
    assert path.endswith("kind=payments")
    html = admin.client.get(path).get_data(as_text=True)
    for position, field_name in enumerate(
        ["payment_external_id", "account_external_id", "amount", "paid_at", "channel"]
    ):
        select_html = re.search(rf'name="column_{position}"[^>]*>(.*?)</select>', html, re.S)
        assert select_html is not None
        assert f'<option selected value="{field_name}"' in select_html.group(1)
    preview = html.split('id="preview"', 1)[1]
    rows = dict(re.findall(r'<td class="num">(\d+)</td>(.*?)</tr>', preview, re.S))
    assert "badge good" in rows["2"]
    assert "100.00" in rows["2"]
    assert "badge bad" in rows["3"]
    assert "还款金额" in rows["3"]
    assert "badge bad" in rows["4"]
    assert "还款时间" in rows["4"]
    assert "Snapshot" not in html.split('id="preview"', 1)[0]  # payment feeds are delta
