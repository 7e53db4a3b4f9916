"""The RQ worker process: which modules it loads, how it counts jobs, how it stops.

**Before forking.** Every ``jobs`` module under ``recova`` (and the app with its blueprints
and services) is imported in the main process, so each work horse (one ``fork`` per job)
starts with the code already loaded and pays no import time.

**Shutdown.** Kubernetes sends SIGTERM to the container's main process, which is the
worker (the image's entry point execs it). RQ's *warm shutdown* then stops taking jobs
and waits for the running job to finish; the work horse sits in its own process group,
so the signal never reaches it. The pod's ``terminationGracePeriodSeconds`` is set above
the longest job timeout of the queues it serves, so a job that respects its own timeout
always finishes. If the pod is killed anyway (SIGKILL after the grace period, a node
lost, a second SIGTERM which RQ takes as *cold shutdown*), the job stays in the queue's
``StartedJobRegistry`` with a heartbeat that lapses within ``job_monitoring_interval +
60`` seconds; the next registry maintenance on any worker of that queue (on start-up and
every ``MAINTENANCE_INTERVAL`` seconds) treats it as abandoned and, as every Recova job
declares retries, re-queues it through its ``Retry`` with back-off. Jobs are idempotent,
so the run that was cut short and the retry have the effect of one run.

**In-process queues.** Jobs of ``IN_PROCESS_QUEUES`` (the webhook deliveries) run in the
main process, as RQ's ``SimpleWorker`` runs every job: a delivery is one bounded HTTP
request (its own timeout) and two short transactions, and a fork per delivery, with its
fresh database connections and first HTTP client, cost ten times the delivery itself
(``benchmarks/outbox.py``). The job's RQ timeout still applies (a signal in the same
process); a worker killed mid-delivery loses nothing (the delivery's lease lapses and the
sweep sends it again, ``recova.platform.webhooks.delivery``).

**Metrics.** The main process times each work horse and counts its outcome by queue
(``recova.platform.kernel.metrics.record_job_run``), and serves them on ``--metrics-port``.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import time
from collections.abc import Sequence

from flask import Flask
from rq import Queue, Worker
from rq.defaults import DEFAULT_WORKER_TTL
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer
from rq.worker import WorkerStatus

from recova.platform.kernel.extension import platform
from recova.platform.kernel.jobs import (
    QUEUES,
    dispose_connections_after_fork,
    job_queue,
    set_process_app,
)
from recova.platform.kernel.metrics import record_job_run, serve_metrics

logger = logging.getLogger(__name__)

MAINTENANCE_INTERVAL = 60  # seconds between sweeps for abandoned jobs (RQ's default is 600)
#: Queues whose jobs run in the worker's own process (see the module docstring).
IN_PROCESS_QUEUES = frozenset({"webhooks"})

_OUTCOMES = {
    JobStatus.FINISHED: "finished",
    JobStatus.FAILED: "failed",
    JobStatus.SCHEDULED: "retried",  # failed, retry scheduled after its back-off
    JobStatus.QUEUED: "retried",  # failed, retried at once
    JobStatus.STOPPED: "stopped",
}


def import_job_modules(package: str = "recova") -> list[str]:
    """Import every ``jobs`` module (``recova.<domain>.jobs``) so work horses inherit them."""
    root = importlib.import_module(package)
    loaded = []
    for info in pkgutil.walk_packages(root.__path__, prefix=f"{package}."):
        if info.name.rsplit(".", 1)[-1] == "jobs":
            importlib.import_module(info.name)
            loaded.append(info.name)
    return loaded


class RecovaWorker(Worker):
    """RQ's forking worker, counting each job's outcome and duration from the main process."""

    queue_prefix: str = ""

    def execute_job(self, job: Job, queue: Queue) -> None:
        started = time.perf_counter()
        try:
            if self._in_process(queue):
                execution = self.prepare_execution(job)
                self.perform_job(job, queue, execution)
                self.set_state(WorkerStatus.IDLE)
            else:
                super().execute_job(job, queue)
        finally:
            record_job_run(
                queue=queue.name.removeprefix(self.queue_prefix),
                outcome=_outcome(job),
                seconds=time.perf_counter() - started,
            )

    def _in_process(self, queue: Queue) -> bool:
        return queue.name.removeprefix(self.queue_prefix) in IN_PROCESS_QUEUES

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        """A job run in process sends no heartbeat while it runs: its key lives as long as
        the job may (as ``SimpleWorker`` does)."""
        if job.origin.removeprefix(self.queue_prefix) in IN_PROCESS_QUEUES:
            return int(job.timeout or DEFAULT_WORKER_TTL) + 60
        return super().get_heartbeat_ttl(job, working_time)


def _outcome(job: Job) -> str:
    try:
        status = job.get_status(refresh=True)
    except (NoSuchJobError, InvalidJobOperation):
        return "finished"  # a job without a kept result is gone once it succeeded
    return _OUTCOMES.get(status, str(status.value if status is not None else "unknown"))


def build_worker(app: Flask, queue_names: Sequence[str]) -> RecovaWorker:
    """A worker for ``queue_names`` of ``app``'s Redis (queue names without the prefix)."""
    unknown = sorted(set(queue_names) - set(QUEUES))
    if unknown:
        raise ValueError(f"unknown queues {unknown}; known: {', '.join(QUEUES)}")
    objects = platform(app)
    prefix = objects.settings.queue_prefix
    worker = RecovaWorker(
        [job_queue(objects.redis, name, prefix=prefix) for name in queue_names],
        connection=objects.redis,
        serializer=JSONSerializer,
        maintenance_interval=MAINTENANCE_INTERVAL,
    )
    worker.queue_prefix = prefix
    return worker


def run_worker(
    app: Flask, queue_names: Sequence[str], *, burst: bool = False, metrics_port: int = 0
) -> None:
    """Run a worker until SIGTERM (warm shutdown) or, with ``burst``, until the queues are
    empty. The caller has imported nothing yet that it needs; this loads it all first."""
    loaded = import_job_modules()
    set_process_app(app)
    dispose_connections_after_fork()
    worker = build_worker(app, queue_names)
    if metrics_port:
        # Only this process's job figures: the cluster-wide ones come from the web pods.
        serve_metrics(metrics_port)
    logger.info(
        "worker %s for queues %s (job modules: %s)",
        worker.name,
        ", ".join(queue_names),
        ", ".join(loaded),
    )
    # with_scheduler: moves jobs whose retry back-off has passed back onto their queue.
    worker.work(burst=burst, with_scheduler=True, logging_level="INFO")
