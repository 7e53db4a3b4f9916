"""The periodic-job scheduler on real Redis and PostgreSQL: schedules, leader election,
and two schedulers at once enqueueing each periodic job once."""

from __future__ import annotations

import datetime as dt
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from redis import Redis
from rq.job import Job
from rq.serializers import JSONSerializer
from sqlalchemy import select

from recova.platform.entry.scheduler import (
    LOCK_KEY,
    PeriodicJob,
    Scheduler,
    TenantRun,
    daily,
    every,
    periodic_jobs,
)
from recova.platform.kernel.config import Settings
from recova.platform.kernel.extension import Platform, platform
from recova.platform.kernel.jobs import job_queue
from recova.tenants.models import Tenant, TenantStatus
from tests.support import recova

REPO = Path(__file__).resolve().parent.parent
WAIT = 60.0  # a bound on a step before the test gives up, not a timing check
NOW = dt.datetime(2026, 3, 10, 17, 0, tzinfo=dt.UTC)


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


@pytest.fixture
def objects(app: Flask, settings: Settings) -> Iterator[Platform]:
    """The app's objects under a queue prefix (and so a lock and claims) of the test's own."""
    prefix = f"test-sched-{secrets.token_hex(4)}:"
    own = platform(app)
    yield Platform(settings=replace(settings, queue_prefix=prefix), db=own.db, redis=own.redis)
    for pattern in {prefix, prefix.replace(":", "-")}:
        for key in own.redis.scan_iter(match=f"*{pattern}*"):
            own.redis.delete(key)


def active_tenant_ids(objects: Platform) -> list[int]:
    with objects.db.session() as session:
        return list(
            session.scalars(
                select(Tenant.id).where(Tenant.status == TenantStatus.ACTIVE).order_by(Tenant.id)
            )
        )


def allocate_job_ids(objects: Platform) -> list[str]:
    queue = job_queue(objects.redis, "allocate", prefix=objects.settings.queue_prefix)
    return queue.get_job_ids()


# --- schedules -----------------------------------------------------------------------------


def test_daily_is_due_once_a_day_at_its_utc_time() -> None:
    schedule = daily("16:05")
    before = dt.datetime(2026, 3, 10, 16, 4, 59, tzinfo=dt.UTC)
    at = dt.datetime(2026, 3, 10, 16, 5, tzinfo=dt.UTC)
    assert schedule.latest_slot(before) == dt.datetime(2026, 3, 9, 16, 5, tzinfo=dt.UTC)
    assert schedule.latest_slot(at) == at
    assert schedule.latest_slot(at + dt.timedelta(hours=23)) == at


def test_every_is_aligned_so_replicas_agree() -> None:
    schedule = every(seconds=600)
    now = dt.datetime(2026, 3, 10, 16, 7, 31, tzinfo=dt.UTC)
    assert schedule.latest_slot(now) == dt.datetime(2026, 3, 10, 16, 0, tzinfo=dt.UTC)
    with pytest.raises(ValueError, match="10 seconds"):
        every(seconds=1)


def test_the_days_past_due_refresh_uses_the_tenant_s_date_and_the_api_s_job_id() -> None:
    jobs = {job.name: job for job in periodic_jobs()}
    refresh, allocate, close = jobs["refresh-dpd"], jobs["allocate"], jobs["close-month"]
    slot = refresh.schedule.latest_slot(NOW)
    assert slot == dt.datetime(2026, 3, 10, 16, 5, tzinfo=dt.UTC)
    shanghai = TenantRun(tenant_id=4, slug="a", timezone="Asia/Shanghai", slot=slot)
    new_york = TenantRun(tenant_id=5, slug="b", timezone="America/New_York", slot=slot)
    assert refresh.plan(shanghai) == (
        "refresh-dpd-4-2026-03-11",  # already past midnight in Shanghai
        {"tenant_id": 4, "as_of": "2026-03-11"},
    )
    assert refresh.plan(new_york) == (
        "refresh-dpd-5-2026-03-10",
        {"tenant_id": 5, "as_of": "2026-03-10"},
    )
    assert refresh.job.queue == "allocate"
    # The daily allocation runs after the refresh, on the same tenant date, under the id
    # "run now" uses, so a manual and a scheduled run of one day are one job.
    assert allocate.schedule.latest_slot(NOW) > slot
    assert allocate.plan(shanghai) == (
        "allocate-4-2026-03-11",
        {"tenant_id": 4, "as_of": "2026-03-11"},
    )
    assert allocate.job.queue == "allocate"
    # Month close: every day, the month before the tenant's date, under the API's job id.
    assert close.plan(shanghai) == (
        "billing-close-4-2026-02",
        {"tenant_id": 4, "month": "2026-02"},
    )
    assert close.job.queue == "billing"


def test_audit_heads_cover_the_tenant_s_previous_day_and_retention_runs_daily() -> None:
    jobs = {job.name: job for job in periodic_jobs()}
    heads, retention = jobs["audit-head"], jobs["retention"]
    slot = heads.schedule.latest_slot(NOW)
    shanghai = TenantRun(tenant_id=4, slug="a", timezone="Asia/Shanghai", slot=slot)
    # 16:10 UTC is 00:10 in Shanghai: the day that just ended is the 10th.
    assert heads.plan(shanghai) == (
        "audit-head-4-2026-03-10",
        {"tenant_id": 4, "day": "2026-03-10"},
    )
    slot = retention.schedule.latest_slot(NOW)
    new_york = TenantRun(tenant_id=5, slug="b", timezone="America/New_York", slot=slot)
    assert retention.plan(new_york) == ("retention-5-2026-03-09", {"tenant_id": 5})


# --- leadership and claims ------------------------------------------------------------------


@pytest.mark.real_commits  # the outbox hands jobs over on connections of its own
def test_only_the_leader_enqueues_and_a_new_leader_does_not_repeat(
    objects: Platform, world: Any
) -> None:
    tenants = active_tenant_ids(objects)
    # The refresh alone: the mechanics are the same for every periodic job.
    first = Scheduler(objects, periodic_jobs()[:1], identity="first")
    second = Scheduler(objects, periodic_jobs()[:1], identity="second")

    enqueued = first.tick(NOW)
    assert second.tick(NOW) == []  # stands by
    assert objects.redis.get(objects.settings.queue_prefix + LOCK_KEY) == b"first"
    assert len(enqueued) == len(tenants)
    assert len(set(enqueued)) == len(tenants)

    first.step_down()  # shutdown: the stand-by takes over at its next tick
    assert second.tick(NOW) == []  # leads now, but this slot has been done
    assert second.leading
    assert objects.redis.get(objects.settings.queue_prefix + LOCK_KEY) == b"second"
    assert first.tick(NOW) == []

    ids = allocate_job_ids(objects)
    assert len(ids) == len(tenants)
    prefix = objects.settings.queue_prefix.replace(":", "-")
    assert sorted(ids) == sorted(
        f"{prefix}refresh-dpd-{tenant_id}-{date}"
        for tenant_id, date in (
            (t, _local_date(objects, t, dt.datetime(2026, 3, 10, 16, 5, tzinfo=dt.UTC)))
            for t in tenants
        )
    )
    job = Job.fetch(ids[0], connection=objects.redis, serializer=JSONSerializer)
    assert job.func_name == "recova.platform.cases.jobs.refresh_days_past_due_job"

    # The next day's slot is new work.
    tomorrow = NOW + dt.timedelta(days=1)
    assert len(second.tick(tomorrow)) == len(tenants)
    assert len(allocate_job_ids(objects)) == 2 * len(tenants)
    second.step_down()


def _local_date(objects: Platform, tenant_id: int, slot: dt.datetime) -> str:
    with objects.db.session() as session:
        tenant = session.get(Tenant, tenant_id)
        assert tenant is not None
        run = TenantRun(tenant_id=tenant.id, slug=tenant.slug, timezone=tenant.timezone, slot=slot)
    return run.local_date.isoformat()


@pytest.mark.real_commits  # the outbox hands jobs over on connections of its own
def test_two_schedulers_racing_past_the_lock_still_enqueue_each_run_once(
    objects: Platform, world: Any
) -> None:
    """Both believe they lead (one stalled past the lock's TTL): the claims decide."""
    tenants = active_tenant_ids(objects)
    racers = [Scheduler(objects, periodic_jobs()[:1], identity=f"racer-{n}") for n in range(2)]
    results: list[list[str]] = [[], []]
    start = threading.Barrier(2)

    def race(n: int) -> None:
        start.wait()
        results[n] = racers[n].enqueue_due(NOW)

    threads = [threading.Thread(target=race, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=WAIT)
    assert set(results[0]).isdisjoint(results[1])
    assert len(results[0]) + len(results[1]) == len(tenants)
    assert len(allocate_job_ids(objects)) == len(tenants)


@pytest.mark.real_commits  # the outbox hands jobs over on connections of its own
def test_a_run_whose_enqueue_failed_is_retried_next_tick(objects: Platform, world: Any) -> None:
    from recova.platform.cases.jobs import refresh_days_past_due_job

    calls: list[str] = []

    def failing_plan(run: TenantRun) -> tuple[str, dict[str, Any]]:
        calls.append(run.slug)
        return f"bad-{run.tenant_id}", {"tenant_id": run.tenant_id, "as_of": dt.date.today()}

    bad = PeriodicJob("bad", every(seconds=3600), refresh_days_past_due_job, failing_plan)
    scheduler = Scheduler(objects, [bad], identity="bad")
    with pytest.raises(TypeError, match="as_of"):  # dates are not JSON: refused, not queued
        scheduler.tick(NOW)
    with pytest.raises(TypeError, match="as_of"):  # claim released, so tried again
        scheduler.tick(NOW)
    assert len(calls) == 2
    assert allocate_job_ids(objects) == []
    scheduler.step_down()


# --- two real `recova scheduler` processes ---------------------------------------------------


def _scheduler_process(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "recova.platform.entry.cli", "scheduler", "--tick", "0.2"],
        cwd=REPO,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.mark.slow
def test_two_scheduler_processes_enqueue_each_periodic_job_once(cli_env: dict[str, str]) -> None:
    assert recova(cli_env, "migrate").exit_code == 0
    for slug, zone in (("sched-cn", "Asia/Shanghai"), ("sched-us", "America/New_York")):
        created = recova(
            cli_env,
            "tenants",
            "create",
            slug,
            "--name",
            slug,
            "--jurisdiction",
            "CN" if zone.startswith("Asia") else "US",
            "--timezone",
            zone,
            "--currency",
            "CNY" if zone.startswith("Asia") else "USD",
        )
        assert created.exit_code == 0, created.output

    redis = Redis.from_url(cli_env["REDIS_URL"])
    prefix = cli_env["RECOVA_QUEUE_PREFIX"]
    queue = job_queue(redis, "allocate", prefix=prefix)
    lock_key = prefix + LOCK_KEY
    processes = {}
    try:
        for _ in range(2):
            process = _scheduler_process(cli_env)
            processes[process.pid] = process
        wait_until(lambda: queue.count == 4, "one refresh and one allocation per tenant")
        leader_pid = int(redis.get(lock_key).decode().split(":")[1])  # type: ignore[union-attr]
        assert leader_pid in processes

        # The leader goes away (a rollout, a node drained): the other takes over.
        processes[leader_pid].send_signal(signal.SIGTERM)
        assert processes[leader_pid].wait(timeout=WAIT) == 0
        (other_pid,) = set(processes) - {leader_pid}

        def other_leads() -> bool:
            value = redis.get(lock_key)
            return value is not None and int(value.decode().split(":")[1]) == other_pid

        wait_until(other_leads, "the stand-by to take the lock")
        processes[other_pid].send_signal(signal.SIGTERM)  # it finishes its tick first
        assert processes[other_pid].wait(timeout=WAIT) == 0
        assert redis.get(lock_key) is None  # released at shutdown
        assert queue.count == 4
        ids = sorted(queue.get_job_ids())
        assert sum("refresh-dpd-" in job_id for job_id in ids) == 2
        assert sum("allocate-" in job_id for job_id in ids) == 2
        assert len(set(ids)) == 4
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait(timeout=WAIT)
        for pattern in {prefix, prefix.replace(":", "-")}:
            for key in redis.scan_iter(match=f"*{pattern}*"):
                redis.delete(key)
        redis.close()
