"""Hostile workbooks: zip bombs, lying zip directories and memory-hungry XML end their run
with a clear error, and the worker's peak memory stays under 500 MB.

Each run happens in a child process (a worker's stand-in) that reports its own peak RSS
(``VmHWM`` of ``/proc/self/status``), with an address-space ceiling so a regression
fails the test instead of taking the machine.
"""

from __future__ import annotations

import base64
import io
import json
import os
import struct
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from recova.platform.kernel.config import Settings
from recova.platform.kernel.extension import platform
from tests.ingest_support import CN_HEADER, add_mapping, cn_row, new_tenant

SHEET = "xl/worksheets/sheet1.xml"
PEAK_RSS_LIMIT_MB = 500
CHILD_ADDRESS_SPACE = 3 * 1024**3  # a regression dies here, not on the shared machine

CHILD = """
import datetime as dt, json, resource, sys
from pathlib import Path

resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
from recova.connectors.models import IngestionRun
from recova.connectors.services import ingest_local_file
from recova.platform.entry.app import create_app
from recova.platform.kernel.config import Settings
from recova.platform.kernel.extension import platform
from recova.tenants.scope import tenant_scope

objects = platform(create_app(Settings.from_env()))
slug, run_id = ingest_local_file(
    objects, tenant_slug=sys.argv[1], path=Path(sys.argv[2]), mapping_name="portfolio",
    as_of=dt.date(2026, 4, 19),
)
with tenant_scope(slug, db=objects.db) as session:
    run = session.get(IngestionRun, run_id)
    outcome = {{"status": run.status.value, "message": run.message, "inserted": run.inserted}}
# VmHWM, not getrusage: Linux carries ru_maxrss across exec, so a child of a large
# pytest process would report its parent's size at fork time.
status = Path("/proc/self/status").read_text()
peak_kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
outcome["peak_rss_mb"] = peak_kb / 1024
print(json.dumps(outcome))
"""


def _parts() -> dict[str, bytes]:
    """The parts of a small real workbook: the CN header and one good row."""
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(CN_HEADER)
    row = cn_row(1)
    sheet.append([row[column] for column in CN_HEADER])
    buffer = io.BytesIO()
    book.save(buffer)
    with zipfile.ZipFile(buffer) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _write(path: Path, sheet_chunks: Iterator[bytes]) -> Path:
    """A workbook whose sheet XML is the real one with ``sheet_chunks`` after its rows."""
    parts = _parts()
    head, tail = parts[SHEET].split(b"</sheetData>")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in parts.items():
            if name != SHEET:
                archive.writestr(name, content)
        with archive.open(SHEET, "w") as sheet:
            sheet.write(head)
            for chunk in sheet_chunks:
                sheet.write(chunk)
            sheet.write(b"</sheetData>" + tail)
    return path


def _repeated_rows(total_bytes: int) -> Iterator[bytes]:
    """Identical rows: hundreds of MB that compress about a thousand to one."""
    row = b'<row><c t="inlineStr"><is><t>x</t></is></c></row>'
    chunk = row * (1024 * 1024 // len(row))
    for _ in range(total_bytes // len(chunk)):
        yield chunk


def _junk_elements(total_bytes: int) -> Iterator[bytes]:
    """Tiny elements with random attributes: compresses only ~3 to 1, under any ratio
    limit, and a parser that keeps what it has read holds millions of them."""
    written = 0
    while written < total_bytes:
        values = base64.b16encode(os.urandom(4 * 20_000))
        chunk = b"".join(b'<x a="' + values[i : i + 8] + b'"/>' for i in range(0, len(values), 8))
        written += len(chunk)
        yield chunk


def _lie_about(path: Path, name: str, *, unpacked: int) -> None:
    """Make the zip directory declare ``unpacked`` bytes for ``name`` (the data is unchanged)."""
    data = bytearray(path.read_bytes())
    at = data.find(b"PK\x01\x02")  # the first central directory entry
    while at >= 0:
        name_length = struct.unpack_from("<H", data, at + 28)[0]
        if bytes(data[at + 46 : at + 46 + name_length]) == name.encode():
            struct.pack_into("<L", data, at + 24, unpacked)
            path.write_bytes(bytes(data))
            return
        at = data.find(b"PK\x01\x02", at + 4)
    raise AssertionError(f"{name} is not in the directory")


@pytest.fixture
def tenant(app) -> str:  # type: ignore[no-untyped-def]
    slug = new_tenant(app)
    add_mapping(platform(app), slug)
    return slug


def _child_env(settings: Settings) -> dict[str, str]:
    assert settings.database_url is not None
    assert settings.redis_url is not None
    return {
        **os.environ,
        "RECOVA_ENV": "test",
        "RECOVA_HOME": str(settings.home),
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "SECRET_KEY": settings.secret_key,
        "RECOVA_DATA_KEY": base64.urlsafe_b64encode(settings.data_key).decode(),
        "RECOVA_QUEUE_PREFIX": settings.queue_prefix,
    }


def _ingest_in_a_child(
    settings: Settings, tenant: str, path: Path, **environment: str
) -> dict[str, Any]:
    finished = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", CHILD.format(limit=CHILD_ADDRESS_SPACE), tenant, str(path)],
        env={**_child_env(settings), **environment},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    outcome: dict[str, Any] = json.loads(finished.stdout.strip().splitlines()[-1])
    print(outcome)  # shown with -s: the figures behind the assertions
    return outcome


def test_a_zip_bomb_is_refused_by_its_compression_ratio(
    settings: Settings, tenant: str, tmp_path: Path
) -> None:
    bomb = _write(tmp_path / "bomb.xlsx", _repeated_rows(300 * 1024 * 1024))
    assert bomb.stat().st_size < 2 * 1024 * 1024  # a 1 MB upload, 300 MB of XML
    outcome = _ingest_in_a_child(settings, tenant, bomb)
    assert outcome["status"] == "failed"
    assert SHEET in outcome["message"]
    assert "compressed" in outcome["message"]
    assert "zip bomb" in outcome["message"]
    assert outcome["peak_rss_mb"] < PEAK_RSS_LIMIT_MB


def test_a_zip_directory_that_lies_about_sizes_is_refused(
    settings: Settings, tenant: str, tmp_path: Path
) -> None:
    bomb = _write(tmp_path / "liar.xlsx", _repeated_rows(300 * 1024 * 1024))
    _lie_about(bomb, SHEET, unpacked=64 * 1024)  # passes every check of the directory
    outcome = _ingest_in_a_child(settings, tenant, bomb)
    assert outcome["status"] == "failed"
    assert SHEET in outcome["message"]
    assert "does not match its zip directory entry" in outcome["message"]
    assert outcome["peak_rss_mb"] < PEAK_RSS_LIMIT_MB


def test_millions_of_junk_elements_under_the_ratio_keep_memory_flat(
    settings: Settings, tenant: str, tmp_path: Path
) -> None:
    hostile = _write(tmp_path / "junk.xlsx", _junk_elements(48 * 1024 * 1024))
    with zipfile.ZipFile(hostile) as archive:
        part = archive.getinfo(SHEET)
        assert part.file_size / part.compress_size < 10  # no ratio or size limit applies
    outcome = _ingest_in_a_child(settings, tenant, hostile)
    # The junk is skipped; the one real row loads.
    assert (outcome["status"], outcome["inserted"]) == ("completed", 1), outcome
    assert outcome["peak_rss_mb"] < PEAK_RSS_LIMIT_MB


def test_the_limits_are_configured_through_the_environment(
    settings: Settings, tenant: str, tmp_path: Path
) -> None:
    path = _write(tmp_path / "plain.xlsx", _junk_elements(2 * 1024 * 1024))
    outcome = _ingest_in_a_child(settings, tenant, path, RECOVA_XLSX_MAX_RATIO="2")
    assert outcome["status"] == "failed"
    assert "more than the limit of 2 to 1" in outcome["message"]
