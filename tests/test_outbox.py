"""The transactional outbox on real PostgreSQL and Redis: a job is a row committed with
its change, published at once when Redis is there and by the relay when it was not, once
per row even when a relay is killed mid-batch or two relays run at once."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime as dt
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.serializers import JSONSerializer
from sqlalchemy import select, update

from recova.platform.cases.jobs import refresh_days_past_due_job
from recova.platform.entry.app import create_app
from recova.platform.entry.scheduler import Scheduler
from recova.platform.kernel import outbox
from recova.platform.kernel.config import Settings
from recova.platform.kernel.extension import Platform, platform
from recova.platform.kernel.jobs import job_queue
from recova.platform.kernel.outbox import OutboxEntry, relay_outbox, write_outbox_job
from recova.tenants.scope import tenant_scope
from tests.support import World, login

REPO = Path(__file__).resolve().parent.parent
CLOSED_REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
WAIT = 60.0  # a bound on a step before the test gives up, not a timing check
SOME_TENANT_ID = 7  # for jobs that are only enqueued, never run


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


@pytest.fixture
def objects(app: Flask) -> Platform:
    return platform(app)


@pytest.fixture
def queue(objects: Platform) -> Queue:
    return job_queue(objects.redis, "allocate", prefix=objects.settings.queue_prefix)


@pytest.fixture
def redis_down_app(settings: Settings) -> Iterator[Flask]:
    """The same database, with Redis pointing at a closed port."""
    application = create_app(dataclasses.replace(settings, redis_url=CLOSED_REDIS_URL))
    application.config["TESTING"] = True
    yield application
    platform(application).redis.close()
    platform(application).db.dispose()


def _job_id(label: str) -> str:
    return f"outbox-test-{label}-{secrets.token_hex(4)}"


def _as_of() -> str:
    """A date for this test alone, so its job id (tenant id, date) is its own."""
    return (dt.date.today() + dt.timedelta(days=1 + secrets.randbelow(20_000))).isoformat()


def _rows(objects: Platform, job_ids: list[str]) -> dict[str, OutboxEntry]:
    with objects.db.session() as session:
        rows = session.scalars(select(OutboxEntry).where(OutboxEntry.job_id.in_(job_ids)))
        return {row.job_id or "": row for row in rows}


def _write_unpublished(objects: Platform, count: int, label: str) -> list[str]:
    """``count`` committed outbox rows that nobody published yet (as after a Redis outage)."""
    prefix = objects.settings.queue_prefix
    ids = [f"{prefix.replace(':', '-')}{_job_id(label)}-{n}" for n in range(count)]
    with objects.db.session() as session:
        for job_id in ids:
            write_outbox_job(
                session,
                queue=prefix + refresh_days_past_due_job.queue,
                func_path=refresh_days_past_due_job.path,
                kwargs={"tenant_id": SOME_TENANT_ID, "as_of": _as_of()},
                options=refresh_days_past_due_job.rq_options,
                job_id=job_id,
                job_id_prefix="",
            )
        session.commit()
    return ids


def _job_exists(objects: Platform, job_id: str) -> bool:
    try:
        Job.fetch(job_id, connection=objects.redis, serializer=JSONSerializer)
    except NoSuchJobError:
        return False
    return True


def _delete_jobs(objects: Platform, queue: Queue, job_ids: list[str]) -> None:
    for job_id in job_ids:
        with contextlib.suppress(NoSuchJobError):
            Job.fetch(job_id, connection=objects.redis, serializer=JSONSerializer).delete()
        objects.redis.lrem(queue.key, 0, job_id)


# --- 1. rollback ---------------------------------------------------------------------------


def test_a_rolled_back_change_writes_no_row_and_enqueues_nothing(
    objects: Platform, world: World, queue: Queue
) -> None:
    job_id = _job_id("rollback")
    with tenant_scope(world.a.slug, db=objects.db) as session:
        returned = refresh_days_past_due_job.enqueue_after_commit(
            session, objects, job_id=job_id, tenant_id=world.a.id, as_of=_as_of()
        )
        assert returned == objects.settings.queue_prefix.replace(":", "-") + job_id
        session.rollback()
    assert _rows(objects, [returned]) == {}
    assert not _job_exists(objects, returned)
    assert returned not in queue.get_job_ids()


@pytest.mark.real_commits  # the outbox publishes jobs on a connection of its own
def test_a_committed_change_is_published_at_once_and_marked(
    objects: Platform, world: World, queue: Queue
) -> None:
    with tenant_scope(world.a.slug, db=objects.db) as session:  # a tenant-scoped session
        job_id = refresh_days_past_due_job.enqueue_after_commit(
            session, objects, job_id=_job_id("commit"), tenant_id=world.a.id, as_of=_as_of()
        )
        assert job_id is not None
        session.commit()
    try:
        [row] = _rows(objects, [job_id]).values()
        assert row.published_at is not None
        assert (row.attempts, row.last_error, row.tenant_id) == (1, None, world.a.id)
        assert queue.get_job_ids().count(job_id) == 1
    finally:
        _delete_jobs(objects, queue, [job_id])


def test_a_job_without_an_id_gets_one_from_its_row(objects: Platform, queue: Queue) -> None:
    with objects.db.session() as session:
        job_id = refresh_days_past_due_job.enqueue_after_commit(
            session, objects, tenant_id=SOME_TENANT_ID, as_of=_as_of()
        )
        session.commit()
    assert job_id is not None
    try:
        [row] = _rows(objects, [job_id]).values()
        assert job_id == f"{objects.settings.queue_prefix.replace(':', '-')}outbox-{row.id}"
        assert row.published_at is not None
        assert queue.get_job_ids().count(job_id) == 1
    finally:
        _delete_jobs(objects, queue, [job_id])


# --- 2. Redis down at commit ---------------------------------------------------------------


@pytest.mark.real_commits  # the outbox publishes jobs on a connection of its own
def test_redis_down_at_commit_answers_2xx_and_the_relay_publishes_later(
    world: World, redis_down_app: Flask, objects: Platform, queue: Queue
) -> None:
    admin = login(redis_down_app, world.a.admin_email)
    response = admin.post("/api/v1/cases/refresh-days-past-due", {"as_of": _as_of()})
    assert response.status_code == 202, response.get_data(as_text=True)
    job_id = response.json["job_id"]
    try:
        [row] = _rows(objects, [job_id]).values()
        assert row.published_at is None  # committed, waiting for the relay
        assert row.attempts == 1
        assert row.last_error is not None
        assert "ConnectionError" in row.last_error
        assert not _job_exists(objects, job_id)

        # Redis is back (the app's own, working connection): the relay hands it over.
        assert relay_outbox(objects) >= 1
        [row] = _rows(objects, [job_id]).values()
        assert row.published_at is not None
        assert row.attempts == 2
        assert row.last_error is None
        assert queue.get_job_ids().count(job_id) == 1
        job = Job.fetch(job_id, connection=objects.redis, serializer=JSONSerializer)
        assert job.kwargs == {"tenant_id": world.a.id, "as_of": row.kwargs["as_of"]}
        assert job.retries_left == refresh_days_past_due_job.retries
        assert job.timeout == refresh_days_past_due_job.timeout

        relay_outbox(objects)  # again: nothing more
        assert queue.get_job_ids().count(job_id) == 1
    finally:
        _delete_jobs(objects, queue, [job_id])


# --- 3. the relay killed mid-batch ---------------------------------------------------------

_KILLED_RELAY = """
import sys, time
from pathlib import Path

from recova.platform.entry.app import create_app
from recova.platform.kernel import outbox
from recova.platform.kernel.extension import platform

marker, pause_after = Path(sys.argv[1]), int(sys.argv[2])
handed_over = []
publish_one = outbox._publish_one


def publish_then_stall(redis, row):
    publish_one(redis, row)
    handed_over.append(row.id)
    if len(handed_over) == pause_after:
        marker.write_text(" ".join(str(i) for i in handed_over))
        time.sleep(3600)  # killed here: on RQ, not yet marked in the database


outbox._publish_one = publish_then_stall
outbox.relay_outbox(platform(create_app()), limit=1000)
"""


def _relay_env(settings: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "RECOVA_ENV": "test",
        "RECOVA_HOME": str(settings.home),
        "DATABASE_URL": settings.database_url or "",
        "REDIS_URL": settings.redis_url or "",
        "SECRET_KEY": settings.secret_key,
        "RECOVA_DATA_KEY": base64.urlsafe_b64encode(settings.data_key).decode(),
        "RECOVA_QUEUE_PREFIX": settings.queue_prefix,
    }


def test_a_relay_killed_mid_batch_leaves_every_row_published_once(
    objects: Platform, settings: Settings, queue: Queue, tmp_path: Path
) -> None:
    job_ids = _write_unpublished(objects, 6, "killed")
    marker = tmp_path / "handed-over"
    relay = subprocess.Popen(  # noqa: S603 - this interpreter, the script above
        [sys.executable, "-c", _KILLED_RELAY, str(marker), "3"],
        cwd=REPO,
        env=_relay_env(settings),
    )
    try:
        wait_until(lambda: marker.exists() or relay.poll() is not None, "the relay to stall")
        assert relay.poll() is None, "the relay exited instead of stalling"
        relay.send_signal(signal.SIGKILL)
        assert relay.wait(timeout=WAIT) == -signal.SIGKILL
        rows = _rows(objects, job_ids)
        handed_over = {int(i) for i in marker.read_text().split()}
        assert len(handed_over) == 3
        assert handed_over <= {row.id for row in rows.values()}
        # Nothing of the batch was committed, though three of its jobs are on RQ.
        assert all(row.published_at is None for row in rows.values())
        on_rq = [job_id for job_id, row in rows.items() if row.id in handed_over]
        assert all(_job_exists(objects, job_id) for job_id in on_rq)

        # The next relay (once the killed one's locks are gone) publishes the rest.
        def all_published() -> bool:
            relay_outbox(objects)
            return all(row.published_at is not None for row in _rows(objects, job_ids).values())

        wait_until(all_published, "the rows to be published")
        counts = Counter(queue.get_job_ids())
        assert {job_id: counts[job_id] for job_id in job_ids} == dict.fromkeys(job_ids, 1)
        assert all(row.attempts == 1 for row in _rows(objects, job_ids).values())
    finally:
        if relay.poll() is None:
            relay.kill()
            relay.wait(timeout=WAIT)
        _delete_jobs(objects, queue, job_ids)


# --- 4. two relays at once -----------------------------------------------------------------


def test_two_relays_at_once_publish_each_row_once(
    objects: Platform, queue: Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_ids = _write_unpublished(objects, 40, "race")
    handed_over: Counter[int] = Counter()
    counting = threading.Lock()
    publish_one = outbox._publish_one

    def publish_and_count(redis: Any, row: Any) -> None:
        publish_one(redis, row)
        with counting:
            handed_over[row.id] += 1
        time.sleep(0.005)  # hold the batch's locks a little, so the relays overlap

    monkeypatch.setattr(outbox, "_publish_one", publish_and_count)
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def run_relay() -> None:
        try:
            start.wait(timeout=WAIT)
            while relay_outbox(objects, limit=5):
                pass
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)

    relays = [threading.Thread(target=run_relay) for _ in range(2)]
    try:
        for thread in relays:
            thread.start()
        for thread in relays:
            thread.join(timeout=WAIT)
        assert errors == []
        rows = _rows(objects, job_ids)
        assert all(row.published_at is not None for row in rows.values())
        assert {handed_over[row.id] for row in rows.values()} == {1}
        assert all(row.attempts == 1 for row in rows.values())
        counts = Counter(queue.get_job_ids())
        assert {job_id: counts[job_id] for job_id in job_ids} == dict.fromkeys(job_ids, 1)
    finally:
        _delete_jobs(objects, queue, job_ids)


# --- the scheduler's leader relays; old rows are purged ------------------------------------


def test_the_scheduler_leader_relays_the_outbox(
    objects: Platform, settings: Settings, queue: Queue
) -> None:
    job_ids = _write_unpublished(objects, 2, "scheduler")
    own = Platform(
        settings=dataclasses.replace(settings, queue_prefix=f"test-sched-{secrets.token_hex(4)}:"),
        db=objects.db,
        redis=objects.redis,
    )
    scheduler = Scheduler(own, [])  # its own lock; the rows carry their own queue
    try:
        assert scheduler.tick() == []
        assert scheduler.leading
        assert all(row.published_at is not None for row in _rows(objects, job_ids).values())
        assert all(job_id in queue.get_job_ids() for job_id in job_ids)
    finally:
        scheduler.step_down()
        _delete_jobs(objects, queue, job_ids)


def test_rows_published_long_ago_are_purged(objects: Platform, queue: Queue) -> None:
    old, recent = _write_unpublished(objects, 2, "purge")
    try:
        relay_outbox(objects)
        with objects.db.session() as session:
            session.execute(
                update(OutboxEntry)
                .where(OutboxEntry.job_id == old)
                .values(published_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=8))
            )
            session.commit()
        relay_outbox(objects)
        assert set(_rows(objects, [old, recent])) == {recent}
    finally:
        _delete_jobs(objects, queue, [old, recent])
