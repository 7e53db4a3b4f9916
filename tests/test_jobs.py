"""Background jobs on real Redis and PostgreSQL: JSON on the queue, enqueued only after
commit, declared with timeout, retries and failure TTL, tenant-scoped and idempotent."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import secrets
import signal
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from rq import Queue, SimpleWorker
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer
from sqlalchemy import text

from recova.platform.cases.jobs import refresh_days_past_due_job
from recova.platform.kernel.config import Settings
from recova.platform.kernel.extension import platform
from tests.support import Caller, World, login

JOB_PATH = "recova.platform.cases.jobs.refresh_days_past_due_job"
DAY = 24 * 3600
SOME_TENANT_ID = 7  # for jobs that are only enqueued (or not), never run


@pytest.fixture
def queue(app: Flask, settings: Settings) -> Iterator[Queue]:
    """The ``allocate`` queue of this run, emptied before and after each test."""
    allocate = Queue(
        settings.queue_prefix + "allocate",
        connection=platform(app).redis,
        serializer=JSONSerializer,
    )
    _clear(allocate)
    yield allocate
    _clear(allocate)


def _clear(queue: Queue) -> None:
    """Delete every job this queue knows of, and every registry's mention of it."""
    registries = (
        queue.finished_job_registry,
        queue.failed_job_registry,
        queue.started_job_registry,
        queue.scheduled_job_registry,
    )
    ids = set(queue.get_job_ids())
    for registry in registries:
        ids.update(registry.get_job_ids())
    for job_id in ids:
        # A re-enqueued id can be listed twice; its hash goes with the first delete.
        with contextlib.suppress(NoSuchJobError):
            Job.fetch(job_id, connection=queue.connection, serializer=JSONSerializer).delete()
        for registry in registries:
            queue.connection.zrem(registry.key, job_id)
    queue.empty()


def _as_of() -> dt.date:
    """A date for this test alone, so its job id (tenant id, date) is its own."""
    return dt.date.today() + dt.timedelta(days=1 + secrets.randbelow(20_000))


def _days_past_due(caller: Caller) -> dict[str, int]:
    response = caller.get("/api/v1/cases?page_size=100")
    assert response.status_code == 200, response.json
    return {
        case["account"]["external_id"]: case["account"]["days_past_due"] for case in response.json
    }


def _expected(world: World, key: str, as_of: dt.date) -> dict[str, int]:
    """build_world opens case n of each tenant due 10 * n days before today."""
    count = len(getattr(world, key).case_ids)
    today = dt.date.today()
    return {
        f"L-{n}": (as_of - (today - dt.timedelta(days=10 * n))).days for n in range(1, count + 1)
    }


def _request_refresh(caller: Caller, as_of: dt.date) -> str:
    response = caller.post("/api/v1/cases/refresh-days-past-due", {"as_of": as_of.isoformat()})
    assert response.status_code == 202, response.json
    assert response.json["queue"] == "allocate"
    return response.json["job_id"]


def _work(app: Flask, queue: Queue) -> None:
    """Run the queue dry in this process, as ``recova worker --burst`` would."""
    saved = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        with app.app_context():
            worker = SimpleWorker(
                [queue], connection=platform(app).redis, serializer=JSONSerializer
            )
            worker.work(burst=True)
    finally:
        for number, handler in saved.items():  # RQ installs its own; give pytest its back
            signal.signal(number, handler)


def _fetch(queue: Queue, job_id: str) -> Job:
    return Job.fetch(job_id, connection=queue.connection, serializer=JSONSerializer)


@pytest.mark.real_commits  # the outbox publishes jobs on a connection of its own
def test_refresh_request_enqueues_a_json_job(world: World, queue: Queue) -> None:
    admin = login(world.app, world.a.admin_email)
    as_of = _as_of()
    job_id = _request_refresh(admin, as_of)

    assert queue.get_job_ids() == [job_id]  # the request committed, so the job is there
    raw = queue.connection.hgetall(f"rq:job:{job_id}")
    payload = json.loads(zlib.decompress(raw[b"data"]))  # JSON, never pickle
    assert payload == [JOB_PATH, None, [], {"tenant_id": world.a.id, "as_of": as_of.isoformat()}]

    job = _fetch(queue, job_id)
    assert job.serializer is JSONSerializer
    assert job.func_name == JOB_PATH
    assert job.args == []
    assert job.kwargs == {"tenant_id": world.a.id, "as_of": as_of.isoformat()}
    assert job.timeout == 1800
    assert job.retries_left == 3
    assert job.retry_intervals == [30, 120, 600]
    assert job.failure_ttl == 14 * DAY
    assert job.result_ttl == DAY
    assert job.get_status() == JobStatus.QUEUED

    # Queued, not run: nothing changed yet.
    assert set(_days_past_due(admin).values()) == {0}


def test_a_refused_request_enqueues_nothing(world: World, queue: Queue) -> None:
    analyst = login(world.app, world.a.analyst_email)
    response = analyst.post("/api/v1/cases/refresh-days-past-due", {"as_of": _as_of().isoformat()})
    assert response.status_code == 403
    admin = login(world.app, world.a.admin_email)
    invalid = admin.post("/api/v1/cases/refresh-days-past-due", {"as_of": "yesterday"})
    assert invalid.status_code == 422
    assert queue.count == 0


def test_enqueue_after_commit_waits_for_the_commit(app: Flask, queue: Queue) -> None:
    objects = platform(app)
    as_of = _as_of().isoformat()
    session = objects.db.session()
    try:
        session.execute(text("SELECT 1"))
        refresh_days_past_due_job.enqueue_after_commit(
            session,
            objects,
            job_id=f"commit-{secrets.token_hex(4)}",
            tenant_id=SOME_TENANT_ID,
            as_of=as_of,
        )
        assert queue.count == 0  # not before the commit
        session.commit()
        assert queue.count == 1
        session.commit()  # a later commit of the same session enqueues nothing more
        assert queue.count == 1
    finally:
        session.close()


@pytest.mark.parametrize("first_statement", [True, False])
def test_a_rolled_back_session_enqueues_nothing(
    app: Flask, queue: Queue, first_statement: bool
) -> None:
    objects = platform(app)
    session = objects.db.session()
    try:
        if first_statement:
            session.execute(text("SELECT 1"))
        refresh_days_past_due_job.enqueue_after_commit(
            session,
            objects,
            job_id=f"rollback-{secrets.token_hex(4)}",
            tenant_id=SOME_TENANT_ID,
            as_of=_as_of().isoformat(),
        )
        session.rollback()
        assert queue.count == 0
        session.commit()  # the next transaction must not carry the forgotten job
        assert queue.count == 0
    finally:
        session.close()


def test_a_closed_session_enqueues_nothing(app: Flask, queue: Queue) -> None:
    objects = platform(app)
    session = objects.db.session()
    session.execute(text("SELECT 1"))
    refresh_days_past_due_job.enqueue_after_commit(
        session,
        objects,
        job_id=f"closed-{secrets.token_hex(4)}",
        tenant_id=SOME_TENANT_ID,
        as_of=_as_of().isoformat(),
    )
    session.close()  # ends the transaction without committing it
    session.commit()
    session.close()
    assert queue.count == 0


def test_a_released_savepoint_is_not_the_commit(app: Flask, queue: Queue) -> None:
    objects = platform(app)
    session = objects.db.session()
    try:
        session.execute(text("SELECT 1"))
        savepoint = session.begin_nested()
        refresh_days_past_due_job.enqueue_after_commit(
            session,
            objects,
            job_id=f"savepoint-{secrets.token_hex(4)}",
            tenant_id=SOME_TENANT_ID,
            as_of=_as_of().isoformat(),
        )
        savepoint.commit()
        assert queue.count == 0  # the outer transaction can still roll back
        session.rollback()
        session.commit()
        assert queue.count == 0
    finally:
        session.close()


def test_job_arguments_must_be_json_values(app: Flask, queue: Queue) -> None:
    objects = platform(app)
    session = objects.db.session()
    try:
        with pytest.raises(TypeError, match="as_of"):
            refresh_days_past_due_job.enqueue_after_commit(
                session, objects, tenant_id=SOME_TENANT_ID, as_of=dt.date.today()
            )
        session.commit()
    finally:
        session.close()
    assert queue.count == 0


@pytest.mark.real_commits  # the outbox publishes jobs on a connection of its own
def test_a_worker_runs_the_job_for_its_tenant_only_and_a_rerun_changes_nothing(
    app: Flask, world: World, queue: Queue
) -> None:
    admin_a = login(world.app, world.a.admin_email)
    admin_b = login(world.app, world.b.admin_email)
    b_before = _days_past_due(admin_b)
    as_of = _as_of()

    job_id = _request_refresh(admin_a, as_of)
    _work(app, queue)
    job = _fetch(queue, job_id)
    assert job.get_status() == JobStatus.FINISHED, job.latest_result()
    assert job.return_value() == len(world.a.case_ids)
    assert queue.count == 0
    assert _days_past_due(admin_a) == _expected(world, "a", as_of)
    assert _days_past_due(admin_b) == b_before  # tenant B untouched

    # The same job again (an RQ retry, a second click) has the effect of running once.
    assert _request_refresh(admin_a, as_of) == job_id
    _work(app, queue)
    job = _fetch(queue, job_id)
    assert job.get_status() == JobStatus.FINISHED, job.latest_result()
    assert job.return_value() == 0
    assert _days_past_due(admin_a) == _expected(world, "a", as_of)
    assert _days_past_due(admin_b) == b_before


def test_calling_the_job_function_directly(app: Flask, world: World) -> None:
    admin_a = login(world.app, world.a.admin_email)
    admin_b = login(world.app, world.b.admin_email)
    b_before = _days_past_due(admin_b)
    as_of = _as_of()
    with app.app_context():
        first: Any = refresh_days_past_due_job(tenant_id=world.a.id, as_of=as_of.isoformat())
        second: Any = refresh_days_past_due_job(tenant_id=world.a.id, as_of=as_of.isoformat())
    assert (first, second) == (len(world.a.case_ids), 0)
    assert _days_past_due(admin_a) == _expected(world, "a", as_of)
    assert _days_past_due(admin_b) == b_before

    # A later date moves every account again, still in tenant A only.
    later = as_of + dt.timedelta(days=1)
    with app.app_context():
        assert refresh_days_past_due_job(tenant_id=world.a.id, as_of=later.isoformat()) == 3
    assert _days_past_due(admin_a) == _expected(world, "a", later)
    assert _days_past_due(admin_b) == b_before


@pytest.mark.real_commits  # the outbox publishes jobs on a connection of its own
def test_asking_twice_before_it_runs_queues_one_job(world: World, queue: Queue) -> None:
    admin = login(world.app, world.a.admin_email)
    as_of = _as_of()
    first = _request_refresh(admin, as_of)
    second = _request_refresh(admin, as_of)
    assert first == second
    assert queue.get_job_ids() == [first]
    _work(world.app, queue)
    assert _fetch(queue, first).get_status() == JobStatus.FINISHED
    # Once it has run, asking again runs it again (the data may have changed since).
    assert _request_refresh(admin, as_of) == first
    assert queue.get_job_ids() == [first]


@pytest.mark.real_commits  # the outbox publishes jobs on a connection of its own
def test_job_ids_carry_the_queue_prefix(world: World, queue: Queue, settings: Settings) -> None:
    admin = login(world.app, world.a.admin_email)
    job_id = _request_refresh(admin, _as_of())
    assert job_id.startswith(settings.queue_prefix.replace(":", "-"))
