"""End-to-end ingestion of a realistic portfolio CSV, against a plain ``COPY`` of the same rows.

(a) Recova: a GB18030 CSV with Chinese headers (``recova.platform.entry.demo_data``: resident
    IDs with check characters, mobile numbers, an emergency contact, amounts with ``元``
    and thousands separators, percentages, ``2026/3/5`` dates) goes through
    ``ingest_local_file`` into a fresh tenant: stored encrypted, spooled, parsed,
    validated, normalised, encrypted and upserted (debtors, contacts, accounts, cases).
    Then the unchanged file is ingested again.
(b) The baseline, in the same run: the rows Recova stored, already normalised and
    encrypted (account, debtor and phone columns), exported to a file, then loaded with
    one ``COPY`` into a plain table without indexes.
(c) The write floor, in the same run: each table the first run stored (debtors,
    contacts, accounts, cases) copied with one ``INSERT ... SELECT`` into an empty twin
    made ``LIKE ... INCLUDING ALL`` plus the original's foreign keys (``copy_into_twin``,
    as ``allocate.py`` and ``billing.py`` do), so with its keys, indexes, checks and
    reference checks: what storing those rows costs before any of them is read, parsed
    or matched. The goal is the first run at no less than half the floor's rate.

(d) Where (a) spent its time: the seconds the reading thread spent inside the parser
    (``ChunkParser.parse``: validate, normalise, encrypt, digest) and the writer thread
    inside ``ChunkWriter.write`` (COPY into staging, the set-based upserts of debtors,
    contacts, accounts and cases, the run's seen keys, the commit), timed by wrapping the
    two methods in this process. The two overlap; each alone bounds the rate from above.

Peak RSS is the process's high-water mark during (a), read with ``getrusage``; the file
is generated in a child process so its generator's memory does not count.

    .venv/bin/python benchmarks/ingest.py [--small] [--rows N]
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import bench_environment, copy_into_twin, describe_machine, heading, parser, verdict
from sqlalchemy import Engine, text

from recova.connectors.models import FeedKind, RunMode
from recova.connectors.services import save_mapping
from recova.platform.entry import demo_data
from recova.platform.entry.app import create_app
from recova.platform.kernel.extension import platform
from recova.tenants.migrate import migrate_shared
from recova.tenants.scope import tenant_scope
from recova.tenants.services import provision_tenant

GOAL_ROWS_PER_SECOND = 25_000
GOAL_PEAK_RSS_MB = 300
GOAL_REINGEST_SPEEDUP = 5.0
#: The first run's rate as a share of the write floor's (floor seconds / run seconds).
GOAL_SHARE_OF_FLOOR = 0.5
#: What a first load stores, in the order their references need.
WRITTEN_TABLES = ("debtors", "contacts", "accounts", "cases")


def _generate(path: str, rows: int) -> None:
    demo_data.write_cn_portfolio(Path(path), rows=rows)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def copy_baseline(engine, schema: str, folder: Path) -> tuple[int, float]:  # type: ignore[no-untyped-def]
    """Export what Recova stored, then time one COPY of it into a plain table."""
    export = folder / "normalised.copy"
    query = f"""
        SELECT a.external_id, d.external_id, d.full_name, d.national_id_ciphertext,
            d.national_id_index, d.national_id_masked, c.value_ciphertext, c.value_index,
            c.value_masked, a.product, a.currency, a.original_principal,
            a.outstanding_principal, a.outstanding_interest, a.outstanding_penalties,
            a.overdue_amount, a.interest_rate, a.due_date, a.days_past_due, a.source_row
        FROM "{schema}".accounts a JOIN "{schema}".debtors d ON d.id = a.debtor_id
        LEFT JOIN LATERAL (SELECT * FROM "{schema}".contacts c WHERE c.debtor_id = d.id
                           AND c.relation = 'self' LIMIT 1) c ON true"""
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        with export.open("wb") as out, cur.copy(f"COPY ({query}) TO STDOUT") as copy:
            for block in copy:
                out.write(block)
        cur.execute(
            """CREATE TABLE public.bench_plain (
                external_id text, debtor_external_id text, full_name text, nid_ct bytea,
                nid_idx bytea, nid_masked text, phone_ct bytea, phone_idx bytea,
                phone_masked text, product text, currency text, original_principal numeric,
                outstanding_principal numeric, outstanding_interest numeric,
                outstanding_penalties numeric, overdue_amount numeric, interest_rate numeric,
                due_date date, days_past_due int, source_row jsonb)"""
        )
        raw.commit()
        started = time.perf_counter()
        with export.open("rb") as source, cur.copy("COPY public.bench_plain FROM STDIN") as copy:
            while block := source.read(1024 * 1024):
                copy.write(block)
        raw.commit()
        elapsed = time.perf_counter() - started
        cur.execute("SELECT count(*) FROM public.bench_plain")
        (count,) = cur.fetchone()
        return int(count), elapsed
    finally:
        raw.close()


def write_floor(engine: Engine, schema: str) -> dict[str, tuple[int, float]]:
    """Each table the run stored, copied into an empty twin with the same keys, indexes,
    checks and foreign keys: table -> (rows, seconds)."""
    return {table: copy_into_twin(engine, schema, table) for table in WRITTEN_TABLES}


def report_floor(floor: dict[str, tuple[int, float]], rows: int, run_seconds: float) -> float:
    """Print the floor per table and in total; return the run's share of it."""
    total = sum(seconds for _, seconds in floor.values())
    print(
        "write floor, the stored rows copied into empty twins (keys, indexes, checks,"
        f" references): {total:.1f} s, {rows / total:,.0f} rows/s"
    )
    for table, (stored, seconds) in floor.items():
        print(f"  {table:<9} {stored:>10,} rows {seconds:6.2f} s")
    share = total / run_seconds
    print(f"ratio to the write floor: {share:.2f} (floor seconds / first-run seconds)")
    return share


def report_goals(*, rate: float, share: float, rss_peak: float, speedup: float) -> None:
    """One line per goal of issue 17, met or not."""
    print(
        f"goal >= {GOAL_ROWS_PER_SECOND:,} rows/s end to end:"
        f" {verdict(rate >= GOAL_ROWS_PER_SECOND)}"
    )
    print(
        f"goal >= {GOAL_SHARE_OF_FLOOR}x the write floor end to end:"
        f" {verdict(share >= GOAL_SHARE_OF_FLOOR)}"
    )
    print(f"goal peak RSS < {GOAL_PEAK_RSS_MB} MB: {verdict(rss_peak < GOAL_PEAK_RSS_MB)}")
    print(
        f"goal re-ingest >= {GOAL_REINGEST_SPEEDUP:.0f}x faster:"
        f" {verdict(speedup >= GOAL_REINGEST_SPEEDUP)}"
    )


class StageClock:
    """Seconds spent inside ``ChunkParser.parse`` and ``ChunkWriter.write``, by wrapping
    them for the benchmark's own run (the threads overlap, so each is summed apart)."""

    def __init__(self) -> None:
        self.seconds = {"parse": 0.0, "write": 0.0}
        self.saved: list[tuple[type, str, Any]] = []

    def __enter__(self) -> StageClock:
        from recova.connectors.pipeline import ChunkParser, ChunkWriter

        for owner, name, stage in (
            (ChunkParser, "parse", "parse"),
            (ChunkWriter, "write", "write"),
        ):
            original = getattr(owner, name)
            self.saved.append((owner, name, original))
            setattr(owner, name, self._timed(original, stage))
        return self

    def __exit__(self, *exc: object) -> None:
        for owner, name, original in self.saved:
            setattr(owner, name, original)

    def _timed(self, original: Any, stage: str) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[stage] += time.perf_counter() - started

        return timed


def main() -> None:
    arguments = parser(__doc__.splitlines()[0])
    arguments.add_argument("--rows", type=int, default=None)
    options = arguments.parse_args()
    rows = options.rows or (50_000 if options.small else 1_000_000)
    with bench_environment("ingest") as base, tempfile.TemporaryDirectory() as folder:
        settings = dataclasses.replace(base, max_upload_bytes=2 * 1024 * 1024 * 1024)
        app = create_app(settings)
        objects = platform(app)
        migrate_shared(objects.db.engine)
        with objects.db.session() as session:
            provision_tenant(
                session,
                slug="bench",
                name="Bench",
                jurisdiction="CN",
                timezone="Asia/Shanghai",
                currency="CNY",
            )
            session.commit()
        with tenant_scope("bench", db=objects.db) as session:
            save_mapping(
                session, name="portfolio", kind=FeedKind.PORTFOLIO, **demo_data.CN_PORTFOLIO_MAPPING
            )
        path = Path(folder) / "portfolio.csv"
        child = multiprocessing.get_context("spawn").Process(
            target=_generate, args=(str(path), rows)
        )
        child.start()
        child.join()
        heading(
            "Ingestion: realistic CSV end to end vs plain COPY and the write floor",
            machine=describe_machine(objects.db.engine),
            rows=f"{rows:,}",
            file=f"{path.stat().st_size / 1024 / 1024:.1f} MiB (GB18030, Chinese headers)",
        )
        from recova.connectors.services import ingest_local_file

        rss_before = peak_rss_mb()
        started = time.perf_counter()
        with StageClock() as stages:
            _, run_id = ingest_local_file(
                objects,
                tenant_slug="bench",
                path=path,
                mapping_name="portfolio",
                mode=RunMode.SNAPSHOT,
            )
        first = time.perf_counter() - started
        rss_peak = peak_rss_mb()
        started = time.perf_counter()
        _, second_id = ingest_local_file(
            objects, tenant_slug="bench", path=path, mapping_name="portfolio", mode=RunMode.SNAPSHOT
        )
        second = time.perf_counter() - started
        with tenant_scope("bench", db=objects.db) as session:
            schema = session.info["tenant"].schema_name
            counts = {
                run: session.execute(
                    text(
                        f"SELECT status, received, inserted, updated, unchanged, rejected"
                        f' FROM "{schema}".ingestion_runs WHERE id = :id'
                    ),
                    {"id": run},
                ).one()
                for run in (run_id, second_id)
            }
        floor = write_floor(objects.db.engine, schema)
        copied, copy_seconds = copy_baseline(objects.db.engine, schema, Path(folder))

        rate = rows / first
        copy_rate = copied / copy_seconds
        print(f"first run:   {counts[run_id]}")
        print(f"second run:  {counts[second_id]}")
        print(f"end to end:  {first:.1f} s, {rate:,.0f} rows/s")
        print(f"plain COPY:  {copy_seconds:.1f} s, {copy_rate:,.0f} rows/s (same rows, normalised)")
        print(f"ratio to COPY: {rate / copy_rate:.2f} (Recova rows/s / COPY rows/s)")
        share = report_floor(floor, rows, first)
        for stage, label in (
            ("parse", "parser (Python: validate, normalise, encrypt)"),
            ("write", "writer (PostgreSQL: staging, upserts into five tables, commit)"),
        ):
            busy = stages.seconds[stage]
            print(
                f"{label}: busy {busy:.1f} s; alone it would allow {rows / busy:,.0f} rows/s"
                if busy
                else f"{label}: not timed"
            )
        print(f"re-ingest unchanged: {second:.1f} s ({first / second:.1f}x faster than first)")
        print(f"peak RSS:    {rss_peak:.0f} MB (before the run: {rss_before:.0f} MB)")
        report_goals(rate=rate, share=share, rss_peak=rss_peak, speedup=first / second)
        objects.db.dispose()


if __name__ == "__main__":
    main()
