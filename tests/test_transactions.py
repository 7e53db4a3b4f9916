"""The rolled-back transaction that shares fixtures between tests (tests/transactions.py)
keeps what tests see the same as with fixtures of their own, and refuses what it cannot
hold."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from recova.platform.cases.models import Case
from recova.platform.kernel.db import TENANT_PLACEHOLDER, ScopedConnection, after_commit
from recova.platform.kernel.extension import platform
from recova.tenants.models import Tenant
from recova.tenants.scope import tenant_scope
from tests.support import World
from tests.transactions import RolledBack


def _debtor_count(app: Flask, slug: str) -> int:
    with tenant_scope(slug, db=platform(app).db) as session:
        schema = session.info["tenant_schema"]
        return int(session.execute(text(f'SELECT count(*) FROM "{schema}".debtors')).scalar_one())


def _mapped(connection: Any) -> Any:
    options = connection.get_execution_options().get("schema_translate_map") or {}
    return options.get(TENANT_PLACEHOLDER)


# The tests below open their own ``RolledBack`` around the worker's shared world.


def test_commits_inside_are_undone_and_sequences_restored(app: Flask, shared_world: World) -> None:
    db = platform(app).db
    shared = shared_world.a
    before = _debtor_count(app, shared.slug)
    with RolledBack(app, [f"tenant_{shared.slug}"]):
        with tenant_scope(shared.slug, db=db) as session:
            schema = session.info["tenant_schema"]
            first = session.execute(
                text(
                    f'INSERT INTO "{schema}".debtors (external_id, full_name, do_not_contact)'
                    " VALUES ('TX-1', 'Probe', false) RETURNING id"
                )
            ).scalar_one()
        assert _debtor_count(app, shared.slug) == before + 1  # committed, as far as it knows
    assert _debtor_count(app, shared.slug) == before
    with RolledBack(app, [f"tenant_{shared.slug}"]), tenant_scope(shared.slug, db=db) as session:
        again = session.execute(
            text(
                f'INSERT INTO "{schema}".debtors (external_id, full_name, do_not_contact)'
                " VALUES ('TX-1', 'Probe', false) RETURNING id"
            )
        ).scalar_one()
    assert again == first  # the id a fresh fixture would give


def test_work_after_commit_runs_at_the_code_s_commit(app: Flask) -> None:
    db = platform(app).db
    ran: list[str] = []
    with RolledBack(app, []):
        with db.session() as session:
            session.execute(text("SELECT 1"))
            after_commit(session, lambda: ran.append("committed"))
            session.commit()
        with db.session() as session:
            after_commit(session, lambda: ran.append("rolled back"))
            session.rollback()
    assert ran == ["committed"]


def test_a_session_inside_another_leaves_the_outer_one_s_tenant_map(
    app: Flask, shared_world: World
) -> None:
    world = shared_world
    db = platform(app).db
    with RolledBack(app, []) as transaction:
        with tenant_scope(world.a.slug, db=db) as outer:
            outer.execute(text("SELECT 1"))
            assert _mapped(transaction.connection) == f"tenant_{world.a.slug}"
            with tenant_scope(world.b.slug, db=db) as inner:
                inner.execute(text("SELECT 1"))
                assert _mapped(transaction.connection) == f"tenant_{world.b.slug}"
            with db.session() as unscoped:
                unscoped.execute(text("SELECT 1"))
                assert _mapped(transaction.connection) is None
            assert _mapped(transaction.connection) == f"tenant_{world.a.slug}"
            # ORM statements name the placeholder schema: the outer session's map holds.
            cases = outer.scalar(select(func.count()).select_from(Case))
            assert cases == len(world.a.case_ids)
        assert _mapped(transaction.connection) is None


def test_temporary_tables_go_when_the_outermost_session_commits(app: Flask) -> None:
    db = platform(app).db
    with RolledBack(app, []):
        for _ in range(2):  # the second CREATE would fail if the first table were kept
            with db.pinned_session() as session:
                session.execute(text("CREATE TEMP TABLE tx_probe (n int) ON COMMIT DROP"))
                session.commit()


def test_redis_keys_under_the_run_prefix_are_put_back(app: Flask) -> None:
    objects = platform(app)
    prefix = objects.settings.queue_prefix
    kept, added = f"{prefix}tx-probe-kept", f"{prefix}tx-probe-added"
    objects.redis.set(kept, "before")
    try:
        with RolledBack(app, []):
            objects.redis.set(kept, "during")
            objects.redis.set(added, "during")
        assert objects.redis.get(kept) == b"before"
        assert objects.redis.get(added) is None
    finally:
        objects.redis.delete(kept, added)


def test_a_connection_of_its_own_is_refused(app: Flask, database_url: str) -> None:
    engine = create_engine(database_url, poolclass=NullPool)
    try:
        with (
            pytest.raises(pytest.fail.Exception, match="real_commits"),
            RolledBack(app, []),
            pytest.raises(RuntimeError, match="connection of its own"),
        ):
            engine.connect()
    finally:
        engine.dispose()


def test_a_session_from_another_thread_is_refused(app: Flask) -> None:
    db = platform(app).db
    errors: list[BaseException] = []

    def query() -> None:
        try:
            with db.session() as session:
                session.scalar(select(Tenant.id).limit(1))
        except BaseException as error:  # reported to the test's thread
            errors.append(error)

    def start_and_join() -> None:
        thread = threading.Thread(target=query)
        thread.start()
        thread.join(timeout=30)

    with pytest.raises(pytest.fail.Exception, match="another thread"), RolledBack(app, []):
        start_and_join()
    assert len(errors) == 1
    assert "another thread" in str(errors[0])


def test_raw_sql_after_a_pinned_session_commits_ends_with_its_next_transaction(
    app: Flask, shared_world: World
) -> None:
    """As on a pinned connection of its own: what the driver's cursor writes after a commit
    is kept by the session's next commit, undone by its next rollback or by closing it."""
    db = platform(app).db
    slug = shared_world.a.slug

    def probes() -> list[str]:
        with tenant_scope(slug, db=db) as session:
            schema = session.info["tenant_schema"]
            rows = session.execute(
                text(f"SELECT external_id FROM \"{schema}\".debtors WHERE external_id LIKE 'RAW-%'")
            )
            return sorted(rows.scalars())

    with RolledBack(app, [f"tenant_{slug}"]):
        with tenant_scope(slug, db=db, pinned=True) as session:
            raw = ScopedConnection(session)
            cursor = raw.cursor()
            raw.commit()
            for name, end in (("RAW-kept", raw.commit), ("RAW-undone", raw.rollback)):
                cursor.execute(
                    f"INSERT INTO {raw.schema}.debtors (external_id, full_name, do_not_contact)"
                    " VALUES (%s, 'Probe', false)",
                    (name,),
                )
                end()
            cursor.execute(
                f"INSERT INTO {raw.schema}.debtors (external_id, full_name, do_not_contact)"
                " VALUES ('RAW-closed', 'Probe', false)"
            )
            session.rollback()  # tenant_scope commits at its end: leave nothing to commit
            cursor.execute(
                f"INSERT INTO {raw.schema}.debtors (external_id, full_name, do_not_contact)"
                " VALUES ('RAW-left-open', 'Probe', false)"
            )
        assert probes() == ["RAW-kept"]
    assert probes() == []


def test_a_failed_transaction_asked_to_commit_is_rolled_back_as_postgresql_does(
    app: Flask, shared_world: World
) -> None:
    db = platform(app).db
    slug = shared_world.a.slug
    before = _debtor_count(app, slug)
    with RolledBack(app, [f"tenant_{slug}"]):
        with tenant_scope(slug, db=db) as session:
            schema = session.info["tenant_schema"]
            session.execute(
                text(
                    f'INSERT INTO "{schema}".debtors (external_id, full_name, do_not_contact)'
                    " VALUES ('FAILED-1', 'Probe', false)"
                )
            )
            with pytest.raises(DBAPIError):
                session.execute(text("SELECT 1 / 0"))
        # tenant_scope committed the failed transaction: nothing of it is kept, no error.
        assert _debtor_count(app, slug) == before
