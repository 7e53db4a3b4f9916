"""Tenant scope never travels with a pooled connection.

The app runs on a pool of exactly one connection, so every request and session reuses
the same server connection; requests alternate between two tenants whose case ids and
external ids coincide, and each must read only its own tenant's rows.
"""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
from collections.abc import Iterator

import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import selectinload

from recova.platform.auth.access import access
from recova.platform.auth.models import Role
from recova.platform.cases.models import Account, Case
from recova.platform.entry.app import create_app
from recova.platform.kernel.db import Database
from recova.platform.kernel.extension import platform
from recova.platform.kernel.request_scope import db_session
from recova.tenants.scope import tenant_scope
from tests.support import B_MARK, World, bearer


def _single_connection_app(settings):  # type: ignore[no-untyped-def]
    app = create_app(dataclasses.replace(settings, db_pool_size=1, db_max_overflow=0))
    app.config["TESTING"] = True

    @app.post("/test/cases/<int:case_id>/touch")
    @access(Role.TENANT_ADMIN, scope="cases:read", tenant=True)
    def touch_then_read(case_id: int) -> dict[str, str]:
        """Writes, commits mid-request, then reads relationships on a fresh checkout."""
        session = db_session()
        case = session.get(Case, case_id)
        assert case is not None
        case.notes = "touched"
        session.commit()
        return {"debtor": case.account.debtor.full_name, "notes": case.notes or ""}

    return app


@pytest.mark.real_commits  # the pool's own connections are what it tests
def test_a_thousand_alternating_requests_on_one_connection(settings, world: World) -> None:
    app = _single_connection_app(settings)
    engine = platform(app).db.engine
    callers = {
        "alpha": bearer(app, world.a.client_id, world.a.client_secret),
        B_MARK: bearer(app, world.b.client_id, world.b.client_secret),
    }
    shared_ids = sorted(set(world.a.case_ids) & set(world.b.case_ids))
    assert shared_ids, "both tenants must hold cases with the same ids"
    backend_pids = set()
    for n in range(1000):
        mark = "alpha" if n % 2 == 0 else B_MARK
        case_id = shared_ids[(n // 2) % len(shared_ids)]
        if n % 10 == 5:
            response = callers[mark].post(f"/test/cases/{case_id}/touch")
            assert response.status_code == 200, response.json
            assert response.json["debtor"].split()[1] == mark
        elif n % 10 == 9:
            response = callers[mark].get("/api/v1/cases?external_id=L-1")
            assert response.status_code == 200
            assert [c["debtor"]["full_name"] for c in response.json] == [f"Debtor {mark} 1"]
        else:
            response = callers[mark].get(f"/api/v1/cases/{case_id}")
            assert response.status_code == 200, response.json
            assert response.json["debtor"]["full_name"].split()[1] == mark, (n, response.json)
        if n % 100 == 0:
            with engine.connect() as connection:
                backend_pids.add(connection.execute(text("SELECT pg_backend_pid()")).scalar())
                # No request ever changed the connection's search_path.
                path = connection.execute(text("SHOW search_path")).scalar()
                assert path == '"$user", public'
    assert len(backend_pids) == 1  # one server connection served everything
    platform(app).db.dispose()


@pytest.mark.real_commits  # the pool's own connections are what it tests
def test_commit_then_lazy_and_eager_loads_stay_in_scope(settings, world: World) -> None:
    app = _single_connection_app(settings)
    db = platform(app).db
    for round_number in range(50):
        for tenant, mark in ((world.a, "alpha"), (world.b, B_MARK)):
            with tenant_scope(tenant.slug, db=db) as session:
                case = session.scalar(select(Case).where(Case.id == tenant.case_ids[0]))
                assert case is not None
                case.notes = f"round {round_number}"
                session.commit()  # the next statement runs on a fresh checkout
                assert case.account.debtor.full_name == f"Debtor {mark} 1"  # lazy loads
                session.refresh(case)
                assert case.notes == f"round {round_number}"
                accounts = session.scalars(
                    select(Account).options(selectinload(Account.case)).order_by(Account.id)
                ).all()
                assert {a.case.debtor.full_name.split()[1] for a in accounts if a.case} == {mark}
        # tenant_scope, the path jobs take, behaves the same way.
        with tenant_scope(world.b.slug, db=db) as scoped:
            names = scoped.scalars(select(Case).options(selectinload(Case.debtor))).all()
            assert {c.debtor.full_name.split()[1] for c in names} == {B_MARK}
    db.dispose()


@contextlib.contextmanager
def _pool_whose_connection_was_cut(
    database_url: str, app, *, ping_after_idle: float
) -> Iterator[Database]:  # type: ignore[no-untyped-def]
    """A one-connection pool whose pooled connection the server has since terminated."""
    name = f"cut-{secrets.token_hex(4)}"
    url = make_url(database_url).update_query_dict({"application_name": name})
    db = Database(
        url.render_as_string(hide_password=False), pool_size=1, ping_after_idle=ping_after_idle
    )
    try:
        with db.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        with platform(app).db.engine.connect() as admin:
            admin.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE application_name = :name"
                ),
                {"name": name},
            )
            admin.commit()
        yield db
    finally:
        db.dispose()


def test_an_idle_connection_cut_by_the_server_is_replaced_before_use(
    database_url: str, app
) -> None:  # type: ignore[no-untyped-def]
    with (
        _pool_whose_connection_was_cut(database_url, app, ping_after_idle=0) as db,
        db.engine.connect() as connection,  # pinged, found dead, replaced
    ):
        assert connection.execute(text("SELECT 1")).scalar() == 1


def test_a_busy_connection_is_not_pinged_and_one_failure_resets_the_pool(
    database_url: str, app
) -> None:  # type: ignore[no-untyped-def]
    with _pool_whose_connection_was_cut(database_url, app, ping_after_idle=3600) as db:
        with pytest.raises(OperationalError), db.engine.connect() as connection:
            connection.execute(text("SELECT 1"))  # no ping: the cut shows once
        with db.engine.connect() as connection:
            assert connection.execute(text("SELECT 1")).scalar() == 1
