"""The tenant's audit chain: appends, verification, tampering, the database's refusal."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from recova.platform.allocation.services import run_allocation
from recova.platform.audit import events, record_event, verify_chain
from recova.platform.audit.chain import GENESIS, verify_rows
from recova.platform.audit.jobs import export_audit_head_job
from recova.platform.audit.services import AuditDataError, chain_rows, head
from recova.platform.entry.scheduler import periodic_jobs
from recova.platform.kernel.extension import platform
from recova.tenants.scope import tenant_scope
from tests.support import World, login, recova, unique
from tests.tenant_clone import clone_tenant
from tests.transactions import RolledBack, shared

EVENTS = 12


def new_audit_tenant(app: Any) -> str:
    name = unique("audit")
    with platform(app).db.session() as session:
        clone_tenant(
            session,
            slug=name,
            name="Audit tenant",
            jurisdiction="CN",
            timezone="Asia/Shanghai",
            currency="CNY",
        )
        session.commit()
    return name


@pytest.fixture(scope="module")
def shared_slug(app: Any) -> str:
    """The module's empty tenant on this worker, only ever changed inside rolled-back tests."""
    name = new_audit_tenant(app)
    return str(shared(name, name))


@pytest.fixture
def slug(app: Any, shared_slug: str, rolled_back: RolledBack | None) -> str:
    """A tenant with an empty chain: the module's, or (``real_commits``) one of its own."""
    return new_audit_tenant(app) if rolled_back is None else shared_slug


def append(app: Any, slug: str, count: int, action: str = "case.transition") -> None:
    with tenant_scope(slug, db=platform(app).db) as session:
        for n in range(count):
            record_event(
                session,
                action=action,
                actor="job:test",
                subject=("case", n + 1),
                data={"from": "placed", "to": "in_progress", "amount": "12.50", "n": n},
            )


@pytest.fixture
def chain(app: Any, slug: str) -> str:
    append(app, slug, EVENTS)
    return slug


def verdict(app: Any, slug: str, **kwargs: Any) -> Any:
    with tenant_scope(slug, db=platform(app).db) as session:
        return verify_chain(session, **kwargs)


@pytest.fixture
def superuser(app: Any, slug: str) -> Iterator[Any]:
    """A raw connection with triggers off, as a superuser tampering by hand would have."""
    # Its own engine without a pool: the setting must never reach the app's connections.
    engine = create_engine(platform(app).db.engine.url, poolclass=NullPool)
    with engine.connect() as connection:
        connection.execute(text("SET session_replication_role = replica"))
        schema = f"tenant_{slug}"

        def run(statement: str) -> None:
            connection.execute(text(statement.replace("{t}", f'"{schema}".audit_events')))
            connection.commit()

        yield run
    engine.dispose()


def test_an_intact_chain_verifies_with_its_head(app: Any, chain: str) -> None:
    result = verdict(app, chain)
    assert result.ok
    assert result.events == EVENTS
    assert result.head_seq == EVENTS
    with tenant_scope(chain, db=platform(app).db) as session:
        assert head(session)[1] == result.head_hash
        rows = chain_rows(session)
    # The database's verdict and the reference verifier (what a tenant runs) agree.
    reference = verify_rows(rows)
    assert reference.ok
    assert reference.head_hash == result.head_hash
    assert rows[0].prev_hash == GENESIS
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(rows))


def test_an_empty_chain_verifies(app: Any, slug: str) -> None:
    result = verdict(app, slug)
    assert (result.ok, result.events, result.head_seq, result.head_hash) == (True, 0, 0, GENESIS)


@pytest.mark.parametrize(
    ("tamper", "index", "problem"),
    [
        ("UPDATE {t} SET data = replace(data, '12.50', '1.25') WHERE seq = 5", 5, "content"),
        ("UPDATE {t} SET action = 'case.noop' WHERE seq = 7", 7, "content"),
        (
            "UPDATE {t} SET occurred_at = occurred_at + interval '1 second' WHERE seq = 3",
            3,
            "content",
        ),
        ("DELETE FROM {t} WHERE seq = 6", 6, "missing"),
        ("DELETE FROM {t} WHERE seq = 1", 1, "missing"),
        ("UPDATE {t} SET prev_hash = hash WHERE seq = 9", 9, "link"),
    ],
)
@pytest.mark.real_commits  # a superuser tampers on a connection of its own
def test_tampering_is_found_at_the_exact_index(
    app: Any, chain: str, superuser: Any, tamper: str, index: int, problem: str
) -> None:
    superuser(tamper)
    result = verdict(app, chain)
    assert not result.ok
    assert result.broken_at == index
    assert problem in result.problem
    # Everything before the break still verifies, and the verdict says up to where.
    assert result.head_seq == index - 1


@pytest.mark.real_commits  # a superuser tampers on a connection of its own
def test_reordering_two_events_is_found_at_the_first_of_them(
    app: Any, chain: str, superuser: Any
) -> None:
    # Swap events 4 and 5 wholesale (everything but their positions), as a reorder would.
    superuser(
        """
        UPDATE {t} AS e SET occurred_at = o.occurred_at, actor = o.actor, action = o.action,
               subject_type = o.subject_type, subject_id = o.subject_id, data = o.data,
               prev_hash = o.prev_hash, hash = o.hash
          FROM {t} AS o
         WHERE (e.seq, o.seq) IN ((4, 5), (5, 4))
        """
    )
    result = verdict(app, chain)
    assert (result.ok, result.broken_at) == (False, 4)


@pytest.mark.real_commits  # a superuser tampers on a connection of its own
def test_a_rewritten_tail_is_caught_by_the_head_the_tenant_kept(
    app: Any, chain: str, superuser: Any
) -> None:
    kept = verdict(app, chain)
    # Drop the last three events and append three new, correctly chained ones: the chain
    # verifies on its own, but no longer holds the head the tenant kept.
    superuser(f"DELETE FROM {{t}} WHERE seq > {EVENTS - 3}")
    append(app, chain, 3, action="case.forged")
    assert verdict(app, chain).ok
    result = verdict(app, chain, expected_head=(kept.head_seq, kept.head_hash))
    assert (result.ok, result.broken_at) == (False, EVENTS)
    assert "kept head" in result.problem


def test_the_application_role_cannot_change_or_remove_events(app: Any, chain: str) -> None:
    db = platform(app).db
    for statement in (
        "UPDATE tenant.audit_events SET action = 'x' WHERE seq = 1",
        "DELETE FROM tenant.audit_events WHERE seq = 1",
        "TRUNCATE tenant.audit_events",
    ):
        with tenant_scope(chain, db=db) as session:
            real = statement.replace("tenant.", f'"tenant_{chain}".')
            with pytest.raises(DBAPIError, match="append-only"):
                session.execute(text(real))
    assert verdict(app, chain).ok
    assert verdict(app, chain).events == EVENTS


@pytest.mark.real_commits  # ten threads append on connections of their own
def test_concurrent_appends_make_one_gap_free_chain(app: Any, slug: str) -> None:
    threads = [threading.Thread(target=append, args=(app, slug, 5)) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result = verdict(app, slug)
    assert (result.ok, result.events, result.head_seq) == (True, 50, 50)


def test_a_rolled_back_transaction_leaves_no_event(app: Any, slug: str) -> None:
    def fail_after_recording() -> None:
        with tenant_scope(slug, db=platform(app).db) as session:
            record_event(session, action="case.transition", actor="job:test")
            raise RuntimeError("the work failed")

    with pytest.raises(RuntimeError):
        fail_after_recording()
    append(app, slug, 1)
    result = verdict(app, slug)
    assert (result.ok, result.events) == (True, 1)


@pytest.mark.parametrize(
    "data",
    [
        {"phone": "x"},
        {"nested": {"national_id": "x"}},
        {"value": "+86 138 1234 5678"},
        {"reason": "debtor gave 13812345678 as new number"},
        {"list": ["11010519491231002X"]},
    ],
)
def test_personal_data_is_refused_before_it_reaches_the_chain(
    app: Any, slug: str, data: dict[str, Any]
) -> None:
    with tenant_scope(slug, db=platform(app).db) as session, pytest.raises(AuditDataError):
        record_event(session, action="contact.attempt", actor="job:test", data=data)


def test_facts_and_hashes_are_not_mistaken_for_personal_data(app: Any, slug: str) -> None:
    digest = "0123456789abcdef" * 4
    with tenant_scope(slug, db=platform(app).db) as session:
        record_event(
            session,
            action="audit.head_exported",
            actor="job:test",
            data={"head_hash": digest, "amount": "1234567.89", "case_id": 12345678},
        )
        [event] = events(session, action="audit.head_exported")
        assert digest in event.data


def test_head_export_is_once_per_day_and_audited(app: Any, chain: str) -> None:
    tenant_id = _tenant_id(app, chain)
    with app.app_context():
        first = export_audit_head_job(tenant_id=tenant_id, day="2026-11-27")
        again = export_audit_head_job(tenant_id=tenant_id, day="2026-11-27")
    assert first == again
    assert first["head_seq"] == EVENTS
    with tenant_scope(chain, db=platform(app).db) as session:
        exported = events(session, action="audit.head_exported")
    assert len(exported) == 1  # the repeat appended nothing
    result = verdict(
        app, chain, expected_head=(first["head_seq"], bytes.fromhex(first["head_hash"]))
    )
    assert result.ok
    assert result.head_seq == EVENTS + 1
    assert {"audit-head", "retention"} <= {job.name for job in periodic_jobs()}


def _tenant_id(app: Any, slug: str) -> int:
    with tenant_scope(slug, db=platform(app).db) as session:
        return int(session.info["tenant"].id)


@pytest.mark.real_commits  # the CLI runs on an app of its own
def test_cli_verify_reports_ok_then_the_broken_index(
    app: Any, chain: str, superuser: Any, cli_env: dict[str, str], database_url: str
) -> None:
    env = {**cli_env, "DATABASE_URL": database_url}
    ok = recova(env, "audit", "verify", chain)
    assert ok.exit_code == 0, ok.output
    assert ok.output.startswith(f"OK {EVENTS} events, head {EVENTS} ")
    superuser("UPDATE {t} SET subject_id = '99' WHERE seq = 8")
    broken = recova(env, "audit", "verify", chain)
    assert broken.exit_code == 1
    assert "BROKEN at event 8: content does not match hash" in broken.output
    missing = recova(env, "audit", "verify", "no-such-tenant")
    assert missing.exit_code != 0


def test_api_lists_and_verifies_for_tenant_admins_only(app: Any, world: World) -> None:
    append(app, world.a.slug, 3)
    admin = login(app, world.a.admin_email)
    listed = admin.get("/api/v1/audit/events?action=case.&limit=2")
    assert listed.status_code == 200
    assert [e["seq"] for e in listed.json] == [1, 2]
    assert listed.json[1]["prev_hash"] == listed.json[0]["hash"]
    verified = admin.get("/api/v1/audit/verify")
    assert verified.json["ok"] is True
    assert verified.json["head_seq"] == 4  # three appended, then the admin's login
    kept = verified.json
    checked = admin.get(f"/api/v1/audit/verify?head_seq=2&head_hash={listed.json[1]['hash']}")
    assert checked.json["ok"] is True
    wrong = admin.get(f"/api/v1/audit/verify?head_seq=2&head_hash={kept['head_hash']}")
    assert (wrong.json["ok"], wrong.json["broken_at"]) == (False, 2)
    half = admin.get("/api/v1/audit/verify?head_seq=2")
    assert half.status_code == 422
    assert login(app, world.a.analyst_email).get("/api/v1/audit/verify").status_code == 403
    assert (
        login(app, world.manager_email)
        .get(f"/api/v1/tenants/{world.a.slug}/audit/events")
        .status_code
        == 403
    )


def test_writes_logins_exports_and_runs_land_in_the_tenant_s_chain(app: Any, world: World) -> None:
    admin = login(app, world.a.admin_email)  # a portal login: one event
    saved = admin.request(
        "PUT", "/api/v1/allocation/settings", {"buckets": [{"name": "M1", "min": 1, "max": None}]}
    )
    assert saved.status_code == 200
    refused = admin.request("PUT", "/api/v1/allocation/settings", {"buckets": "nonsense"})
    assert refused.status_code == 422  # a refused write leaves no trace
    assert admin.get("/api/v1/ingestion/runs/1/errors").status_code == 200
    with tenant_scope(world.a.slug, db=platform(app).db) as session:
        tenant_id = session.info["tenant"].id
    run_allocation(platform(app).db, tenant=world.a.slug)
    with tenant_scope(world.a.slug, db=platform(app).db) as session:
        logged = [(e.action, e.actor, e.subject_type, e.subject_id) for e in events(session)]
        [request_event] = events(session, action="api.request")
        assert verify_chain(session).ok
    admin_actor = f"user:{world.a.admin_id}"
    assert logged[:3] == [
        ("auth.login", admin_actor, "", ""),
        ("api.request", admin_actor, "endpoint", "SettingsItem"),
        ("export.row_errors", admin_actor, "ingestion_run", "1"),
    ]
    assert '"method":"PUT"' in request_event.data
    assert logged[3][:2] == ("allocation.completed", "job:allocation")
    assert tenant_id == world.a.id
    # Nothing of this reached tenant B's chain.
    with tenant_scope(world.b.slug, db=platform(app).db) as session:
        assert events(session) == []
