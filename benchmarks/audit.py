"""Audit chain: append throughput under concurrency, and verifying a 1,000,000-event chain.

(a) Appends: ``--threads`` threads (default 8), each with its own connection, append
    ``--appends`` events each, one event per transaction (how requests and jobs append),
    through ``record_event``: the per-tenant table lock, the head read and the hash. The
    baseline, in the same run, is the same threads inserting the same rows into an
    unchained copy of the table (no lock, no hash), one row per transaction.
(b) Verification: a chain of ``--events`` events (default 1,000,000; ``--small``:
    100,000) is built in bulk (hashes computed by the chain's own ``link``, loaded with
    ``COPY``), then ``verify_chain`` checks every link. The baseline is one sequential scan
    reading every row's bytes (``sum(length(...))``), the least any check must do.
    Goal: verification at 200,000 events/s or more.

    .venv/bin/python benchmarks/audit.py [--small] [--events N] [--threads N]
"""

from __future__ import annotations

import datetime as dt
import threading
import time

from _common import bench_environment, describe_machine, heading, parser, verdict
from sqlalchemy import text

from recova.platform.audit.chain import GENESIS, canonical_json, content, link
from recova.platform.audit.services import record_event, verify_chain
from recova.platform.entry.app import create_app
from recova.platform.kernel.db import Database
from recova.platform.kernel.extension import platform
from recova.tenants.migrate import migrate_shared
from recova.tenants.scope import tenant_scope
from recova.tenants.services import provision_tenant

GOAL_EVENTS_PER_SECOND = 200_000


def provision(db: Database, slug: str) -> str:
    with db.session() as session:
        tenant = provision_tenant(
            session,
            slug=slug,
            name=slug,
            jurisdiction="CN",
            timezone="Asia/Shanghai",
            currency="CNY",
        )
        session.commit()
        return tenant.schema_name


def appends(db: Database, slug: str, threads: int, each: int) -> float:
    def work(worker: int) -> None:
        for n in range(each):
            with tenant_scope(slug, db=db) as session:
                record_event(
                    session,
                    action="contact.attempt",
                    actor=f"user:{worker}",
                    subject=("case", n),
                    data={"channel": "call", "outcome": "no_answer", "attempt": n},
                )

    return _timed_threads(work, threads)


def baseline_inserts(db: Database, schema: str, threads: int, each: int) -> float:
    with db.engine.begin() as connection:
        connection.execute(
            text(f'CREATE TABLE "{schema}".plain_events (LIKE "{schema}".audit_events)')
        )
        connection.execute(text(f'CREATE SEQUENCE "{schema}".plain_seq'))
    body = canonical_json({"channel": "call", "outcome": "no_answer", "attempt": 0})

    def work(worker: int) -> None:
        for n in range(each):
            with db.engine.begin() as connection:
                connection.execute(
                    text(
                        f'INSERT INTO "{schema}".plain_events VALUES'
                        f""" (nextval('"{schema}".plain_seq'), now(), :actor,"""
                        " 'contact.attempt', 'case', :n, :data, :z, :z)"
                    ),
                    {"actor": f"user:{worker}", "n": str(n), "data": body, "z": GENESIS},
                )

    return _timed_threads(work, threads)


def _timed_threads(work, threads: int) -> float:  # type: ignore[no-untyped-def]
    workers = [threading.Thread(target=work, args=(w,)) for w in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return time.perf_counter() - started


def build_chain(db: Database, schema: str, count: int) -> None:
    """``count`` valid events, hashed in Python exactly as ``record_event`` does, via COPY."""
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    prev = GENESIS
    raw = db.engine.raw_connection()
    try:
        cursor = raw.cursor()
        columns = "seq, occurred_at, actor, action, subject_type, subject_id, data, prev_hash, hash"
        with cursor.copy(f'COPY "{schema}".audit_events ({columns}) FROM STDIN') as copy:
            for seq in range(1, count + 1):
                at = start + dt.timedelta(microseconds=seq * 1000)
                actor = f"user:{seq % 50}"
                action = "contact.attempt" if seq % 3 else "case.transition"
                subject = str(seq % 100_000)
                data = canonical_json({"channel": "call", "n": seq, "amount": "12.50"})
                digest = link(
                    prev,
                    content(
                        seq=seq,
                        occurred_at=at,
                        actor=actor,
                        action=action,
                        subject_type="case",
                        subject_id=subject,
                        data=data,
                    ),
                )
                copy.write_row((seq, at, actor, action, "case", subject, data, prev, digest))
                prev = digest
        raw.commit()
    finally:
        raw.close()
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text(f'VACUUM ANALYZE "{schema}".audit_events'))


def main() -> None:
    arguments = parser(__doc__.splitlines()[0])
    arguments.add_argument("--events", type=int, default=None)
    arguments.add_argument("--threads", type=int, default=8)
    arguments.add_argument("--appends", type=int, default=None, help="events per thread")
    options = arguments.parse_args()
    count = options.events or (100_000 if options.small else 1_000_000)
    each = options.appends or (50 if options.small else 250)
    with bench_environment("audit") as settings:
        app = create_app(settings)
        db = platform(app).db
        migrate_shared(db.engine)
        append_schema = provision(db, "appends")
        verify_schema = provision(db, "verify")
        heading(
            "audit: appends under concurrency, and verifying a long chain",
            machine=describe_machine(db.engine),
            threads=options.threads,
            appends_per_thread=each,
            chain_events=f"{count:,}",
        )
        total = options.threads * each
        chained = appends(db, "appends", options.threads, each)
        plain = baseline_inserts(db, append_schema, options.threads, each)
        with tenant_scope("appends", db=db) as session:
            check = verify_chain(session)
        if not (check.ok and check.events == total):
            raise SystemExit(f"concurrent appends broke the chain: {check.as_dict()}")
        print(
            f"appends: {total:,} events in {chained:.2f} s = {total / chained:,.0f} events/s"
            f" (one per transaction, {options.threads} threads); chain verified"
        )
        print(
            f"baseline, plain INSERTs (no lock, no hash): {total / plain:,.0f} rows/s;"
            f" ratio {plain / chained:.2f}"
        )

        started = time.perf_counter()
        build_chain(db, verify_schema, count)
        print(
            f"set-up: {count:,} chained events built and copied in"
            f" {time.perf_counter() - started:.1f} s (not timed)"
        )
        with db.engine.connect() as connection:
            started = time.perf_counter()
            connection.execute(
                text(
                    "SELECT sum(length(data) + length(actor) + length(hash) + length(prev_hash))"
                    f' FROM "{verify_schema}".audit_events'
                )
            ).scalar_one()
            scan = time.perf_counter() - started
        with tenant_scope("verify", db=db) as session:
            started = time.perf_counter()
            result = verify_chain(session)
            seconds = time.perf_counter() - started
        if not (result.ok and result.events == count):
            raise SystemExit(f"the built chain did not verify: {result.as_dict()}")
        rate = count / seconds
        print(
            f"verify: {count:,} events in {seconds:.2f} s = {rate:,.0f} events/s; OK, head"
            f" {result.head_seq} {result.head_hash.hex()[:16]}..."
        )
        print(
            f"baseline, one sequential scan of the same rows: {scan:.2f} s;"
            f" ratio {seconds / scan:.1f}x"
        )
        met = verdict(rate >= GOAL_EVENTS_PER_SECOND)
        print(f"goal >= {GOAL_EVENTS_PER_SECOND:,} events/s: {met}")
        db.dispose()


if __name__ == "__main__":
    main()
