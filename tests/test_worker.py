"""``recova worker`` as a real process on the real Redis: SIGTERM in the middle of a job lets
it finish; a worker killed outright leaves a job that is re-queued and completes once."""

from __future__ import annotations

import base64
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import psutil
import pytest
from flask import Flask
from redis import Redis
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from recova.platform.entry.worker import RecovaWorker, build_worker, import_job_modules
from recova.platform.kernel.config import Settings
from recova.platform.kernel.extension import Platform, platform
from recova.platform.kernel.jobs import job, job_queue

REPO = Path(__file__).resolve().parent.parent
WAIT = 60.0  # a bound on how long a step may take before the test gives up, not a check


@job(queue="default", timeout=120, retries=2, backoff=[0])
def held_job(*, key: str) -> str:
    """Counts its start, waits until the test releases it, counts its finish."""
    redis = platform().redis
    redis.incr(f"{key}:started")
    redis.blpop([f"{key}:release"], timeout=90)
    redis.incr(f"{key}:finished")
    return "done"


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def objects(app: Flask, settings: Settings) -> Iterator[Platform]:
    """The app's objects under a queue prefix of this test's own."""
    prefix = f"test-worker-{secrets.token_hex(4)}:"
    own = platform(app)
    yield Platform(settings=replace(settings, queue_prefix=prefix), db=own.db, redis=own.redis)
    for pattern in {prefix, prefix.replace(":", "-")}:
        for key in own.redis.scan_iter(match=f"*{pattern}*"):
            own.redis.delete(key)


def worker_env(objects: Platform, tmp_path: Path) -> dict[str, str]:
    settings = objects.settings
    assert settings.database_url
    assert settings.redis_url
    return {
        **os.environ,
        "RECOVA_ENV": "test",
        "RECOVA_HOME": str(tmp_path / "home"),
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "SECRET_KEY": settings.secret_key,
        "RECOVA_DATA_KEY": base64.urlsafe_b64encode(settings.data_key).decode(),
        "RECOVA_QUEUE_PREFIX": settings.queue_prefix,
        "RECOVA_LOG_FORMAT": "json",
    }


def start_worker(env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    log = Path(env["RECOVA_HOME"]).parent / f"worker-{secrets.token_hex(3)}.log"
    with open(log, "wb") as output:  # the child keeps its own descriptor
        return subprocess.Popen(  # noqa: S603 - this interpreter running our own CLI
            [
                sys.executable,
                "-m",
                "recova.platform.entry.cli",
                "worker",
                "--queues",
                "default",
                *args,
            ],
            cwd=REPO,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )


def stop(process: subprocess.Popen[bytes]) -> None:
    """Kill whatever is left of a worker and its children (horse, RQ scheduler)."""
    try:
        tree = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        tree = []
    for child in tree:
        child.kill()
    if process.poll() is None:
        process.kill()
    process.wait(timeout=WAIT)


def counter(redis: Redis, key: str) -> int:
    return int(redis.get(key) or 0)


def fetch(redis: Redis, job_id: str) -> Job:
    return Job.fetch(job_id, connection=redis, serializer=JSONSerializer)


def test_sigterm_mid_job_lets_the_job_finish(objects: Platform, tmp_path: Path) -> None:
    redis = objects.redis
    key = f"{objects.settings.queue_prefix}held"
    process = start_worker(worker_env(objects, tmp_path))
    try:
        queued = held_job.enqueue(objects, job_id="held-1", key=key)
        wait_until(lambda: counter(redis, f"{key}:started") == 1, "the job to start")

        process.send_signal(signal.SIGTERM)  # what Kubernetes sends first
        queue = job_queue(redis, "default", prefix=objects.settings.queue_prefix)
        wait_until(
            lambda: any(w.shutdown_requested_date for w in RecovaWorker.all(queue=queue)),
            "the worker to take the shutdown request",
        )
        assert process.poll() is None  # still there: the job is running
        assert counter(redis, f"{key}:finished") == 0

        redis.rpush(f"{key}:release", "go")
        assert process.wait(timeout=WAIT) == 0
        job_record = fetch(redis, queued.id)
        assert job_record.get_status() == JobStatus.FINISHED
        assert job_record.return_value() == "done"
        assert counter(redis, f"{key}:started") == 1
        assert counter(redis, f"{key}:finished") == 1
    finally:
        stop(process)


def test_a_killed_worker_s_job_is_requeued_and_completes_once(
    objects: Platform, tmp_path: Path
) -> None:
    redis = objects.redis
    key = f"{objects.settings.queue_prefix}killed"
    env = worker_env(objects, tmp_path)
    queue = job_queue(redis, "default", prefix=objects.settings.queue_prefix)
    first = start_worker(env)
    try:
        queued = held_job.enqueue(objects, job_id="held-2", key=key)
        wait_until(lambda: counter(redis, f"{key}:started") == 1, "the job to start")
        # The grace period ran out: SIGKILL for every process of the pod.
        stop(first)
    finally:
        stop(first)
    assert fetch(redis, queued.id).get_status() == JobStatus.STARTED
    assert queue.started_job_registry.get_job_ids() == [queued.id]

    # The dead worker's heartbeat would lapse within job_monitoring_interval + 60 s;
    # move the registry's clock on instead of waiting for it.
    for member in redis.zrange(queue.started_job_registry.key, 0, -1):
        redis.zadd(queue.started_job_registry.key, {member: time.time() - 1})

    port = free_port()
    second = start_worker(env, "--metrics-port", str(port))
    try:
        # Its start-up maintenance finds the abandoned job and retries it (one retry used).
        wait_until(lambda: counter(redis, f"{key}:started") == 2, "the job to run again")
        redis.rpush(f"{key}:release", "go")
        wait_until(lambda: counter(redis, f"{key}:finished") == 1, "the rerun to finish")
        wait_until(
            lambda: fetch(redis, queued.id).get_status() == JobStatus.FINISHED, "the job record"
        )
        assert fetch(redis, queued.id).retries_left == 1
        assert queue.started_job_registry.get_job_ids() == []
        assert queue.failed_job_registry.get_job_ids() == []

        def scraped() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                return r.read().decode()

        wait_until(
            lambda: 'recova_jobs_total{outcome="finished",queue="default"} 1.0' in scraped(),
            "the worker's job metrics",
        )
        text = scraped()
        assert 'recova_job_duration_seconds_count{queue="default"} 1.0' in text

        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=WAIT) == 0  # idle: it stops at once
    finally:
        stop(second)
    assert counter(redis, f"{key}:started") == 2
    assert counter(redis, f"{key}:finished") == 1  # completed once


def test_job_modules_are_loaded_before_forking() -> None:
    loaded = import_job_modules()
    assert "recova.platform.cases.jobs" in loaded
    assert all(name.endswith(".jobs") for name in loaded)


def test_unknown_queues_are_refused(app: Flask) -> None:
    with pytest.raises(ValueError, match="unknown queues"):
        build_worker(app, ["default", "nope"])


@pytest.mark.real_commits  # the worker runs jobs on its own connections
def test_webhook_jobs_run_in_the_workers_own_process_and_others_in_a_work_horse(
    app: Flask,
) -> None:
    objects = platform(app)
    prefix = objects.settings.queue_prefix
    webhooks = job_queue(objects.redis, "webhooks", prefix=prefix)
    default = job_queue(objects.redis, "default", prefix=prefix)
    in_process = webhooks.enqueue_call("os.getpid")
    forked = default.enqueue_call("os.getpid")

    worker = build_worker(app, ["webhooks", "default"])
    with app.app_context():
        worker.work(burst=True, with_scheduler=False)

    done = [
        Job.fetch(j.id, connection=objects.redis, serializer=JSONSerializer)
        for j in (in_process, forked)
    ]
    assert [j.get_status() for j in done] == [JobStatus.FINISHED, JobStatus.FINISHED]
    pids = [j.return_value() for j in done]
    assert pids[0] == os.getpid()
    assert pids[1] not in (None, os.getpid())
