"""Prometheus metrics: what the platform counts, and the functions other code calls to count.

Three kinds of figures, kept where the process that knows them can keep them:

- **Per process, in memory** (``prometheus-client`` metrics): HTTP request latency by route
  and status, recorded by the web app's request hooks; job counts, durations and failures
  by queue, recorded by the RQ worker's *main* process around each work horse (the horse
  is a fork that exits after one job, so anything it counted in memory would die with it).
  Under gunicorn each worker is its own process, so the web pods run prometheus-client's
  multiprocess mode: ``PROMETHEUS_MULTIPROC_DIR`` (set by ``gunicorn.conf.py``) holds one
  small file per process and ``/metrics`` adds them up.
- **Cluster-wide counters in Redis**: ingested rows and compliance blocks. They are
  counted wherever the work happens (a work horse, a command, a request) with one
  ``HINCRBY``, so no process's lifetime can lose them.
- **Read at scrape time**: queue depth and registry sizes, read from Redis by a collector
  when Prometheus scrapes, never polled.

The cluster-wide series are the same on every pod that exposes them (the web pods);
aggregate them with ``max``, not ``sum``. Nothing here carries personal data: routes are
URL rules (``/api/v1/cases/<int:case_id>``), never paths with values or query strings.

Importing this module defines the metric objects and connects to nothing.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Iterator

from flask import Flask, Response, current_app, g, has_app_context, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis import Redis, RedisError
from rq import Queue
from rq.registry import BaseRegistry

from recova.platform.kernel.extension import Platform, platform
from recova.platform.kernel.jobs import QUEUES, job_queue

logger = logging.getLogger(__name__)

INGEST_KINDS = ("portfolio", "payments")
INGEST_OUTCOMES = ("inserted", "updated", "unchanged", "rejected")
METRICS_PATH = "/metrics"
UNMATCHED_ROUTE = "<unmatched>"

HTTP_REQUEST_DURATION = Histogram(
    "recova_http_request_duration_seconds",
    "Time from the first request hook to the response, commit included, by URL rule.",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
JOBS = Counter(
    "recova_jobs",
    "Jobs a worker ran, by queue and outcome (finished, failed, retried, stopped).",
    ["queue", "outcome"],
)
JOB_FAILURES = Counter(
    "recova_job_failures",
    "Job runs that raised or whose work horse died, retried or not, by queue.",
    ["queue"],
)
JOB_DURATION = Histogram(
    "recova_job_duration_seconds",
    "Wall time of one job run (fork to exit of the work horse), by queue.",
    ["queue"],
    buckets=(0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0, 3600.0),
)

_INGESTED_ROWS_KEY = "recova:metrics:ingested_rows"
_COMPLIANCE_BLOCKS_KEY = "recova:metrics:compliance_blocks"


# --- what other code calls ------------------------------------------------------------------


def record_ingested_rows(
    kind: str, outcome: str, count: int, *, objects: Platform | None = None
) -> None:
    """Count ``count`` ingested rows of ``kind`` (portfolio, payments) with ``outcome``
    (inserted, updated, unchanged, rejected), cluster-wide.

    Called by the ingestion pipeline after each committed batch. ``objects`` defaults to
    the current app's; a Redis failure is logged and never fails the ingestion.
    """
    if kind not in INGEST_KINDS:
        raise ValueError(f"unknown ingestion kind {kind!r}; known: {', '.join(INGEST_KINDS)}")
    if outcome not in INGEST_OUTCOMES:
        raise ValueError(f"unknown outcome {outcome!r}; known: {', '.join(INGEST_OUTCOMES)}")
    if count < 0:
        raise ValueError(f"count must not be negative, got {count}")
    if count:
        _increment(_INGESTED_ROWS_KEY, f"{kind}:{outcome}", count, objects)


def record_compliance_block(rule: str, *, objects: Platform | None = None) -> None:
    """Count one contact attempt blocked by compliance ``rule`` (e.g. ``cn.quiet_hours``).

    The compliance gate (``recova.platform.compliance.gate.attempt_contact``) calls this
    once each blocked attempt is committed. Rule names are a fixed vocabulary of the rule
    packs, never free text, so the label stays small.
    """
    if not rule or len(rule) > 100:
        raise ValueError("a compliance rule name is 1 to 100 characters")
    _increment(_COMPLIANCE_BLOCKS_KEY, rule, 1, objects)


def record_job_run(queue: str, outcome: str, seconds: float) -> None:
    """Count one job run of ``queue`` (the worker's main process calls this)."""
    JOBS.labels(queue=queue, outcome=outcome).inc()
    JOB_DURATION.labels(queue=queue).observe(seconds)
    if outcome in ("failed", "retried"):
        JOB_FAILURES.labels(queue=queue).inc()


def _increment(key: str, field: str, amount: int, objects: Platform | None) -> None:
    if objects is None:
        if not has_app_context():
            raise RuntimeError("pass objects= outside an app context")
        objects = platform()
    try:
        objects.redis.hincrby(objects.settings.queue_prefix + key, field, amount)
    except RedisError as exc:  # metrics must never fail the work they count
        logger.warning("could not record metric %s: %s", key, type(exc).__name__)


# --- collected at scrape time ---------------------------------------------------------------


class ClusterCollector(Collector):
    """Queue depth, registry sizes and the Redis-held counters, read when scraped."""

    def __init__(self, redis: Redis, prefix: str = "") -> None:
        self.redis = redis
        self.prefix = prefix

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "recova_metrics_redis_up", "1 if Redis answered this scrape's queue and counter reads."
        )
        try:
            depth = GaugeMetricFamily(
                "recova_queue_depth", "Jobs waiting in each queue.", labels=["queue"]
            )
            registries = GaugeMetricFamily(
                "recova_queue_jobs",
                "Jobs in each queue's started, scheduled, deferred and failed registries.",
                labels=["queue", "state"],
            )
            with self.redis.pipeline(transaction=False) as pipe:
                queues = [job_queue(self.redis, name, prefix=self.prefix) for name in QUEUES]
                for queue in queues:
                    pipe.llen(queue.key)
                    for registry in _registries(queue):
                        pipe.zcard(registry.key)
                pipe.hgetall(self.prefix + _INGESTED_ROWS_KEY)
                pipe.hgetall(self.prefix + _COMPLIANCE_BLOCKS_KEY)
                answers = iter(pipe.execute())
            for name in QUEUES:
                depth.add_metric([name], float(next(answers)))
                for state in ("started", "scheduled", "deferred", "failed"):
                    registries.add_metric([name, state], float(next(answers)))
            rows = _decode(next(answers))
            blocks = _decode(next(answers))
        except RedisError as exc:
            logger.warning("metrics scrape could not read Redis: %s", type(exc).__name__)
            up.add_metric([], 0.0)
            yield up
            return
        up.add_metric([], 1.0)
        yield up
        yield depth
        yield registries
        ingested = CounterMetricFamily(
            "recova_ingested_rows",
            "Rows ingested from tenant files and feeds, cluster-wide, by kind and outcome.",
            labels=["kind", "outcome"],
        )
        for kind in INGEST_KINDS:
            for outcome in INGEST_OUTCOMES:
                ingested.add_metric([kind, outcome], float(rows.get(f"{kind}:{outcome}", 0)))
        yield ingested
        blocked = CounterMetricFamily(
            "recova_compliance_blocks",
            "Contact attempts blocked by the compliance policy, cluster-wide, by rule.",
            labels=["rule"],
        )
        for rule, value in sorted(blocks.items()):
            blocked.add_metric([rule], float(value))
        yield blocked


def _registries(queue: Queue) -> Iterable[BaseRegistry]:
    return (
        queue.started_job_registry,
        queue.scheduled_job_registry,
        queue.deferred_job_registry,
        queue.failed_job_registry,
    )


def _decode(raw: dict[bytes, bytes]) -> dict[str, int]:
    return {key.decode(): int(value) for key, value in raw.items()}


class _ThisProcess(Collector):
    """This process's own metrics: every process's, in multiprocess mode."""

    def collect(self) -> Iterator[Metric]:
        directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if directory:
            yield from multiprocess.MultiProcessCollector(None, path=directory).collect()
        else:
            yield from REGISTRY.collect()


def metrics_registry(cluster: ClusterCollector | None = None) -> CollectorRegistry:
    """A registry of this process's (or, multiprocess, every process's) metrics, plus
    the cluster-wide ones when ``cluster`` is given."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_ThisProcess())
    if cluster is not None:
        registry.register(cluster)
    return registry


def serve_metrics(port: int, *, cluster: ClusterCollector | None = None) -> None:
    """Serve ``/metrics`` on ``port`` from a daemon thread (workers and the scheduler)."""

    start_http_server(port, registry=metrics_registry(cluster))


# --- the web app ----------------------------------------------------------------------------


def init_metrics(app: Flask) -> None:
    """Time every request by URL rule and status, and serve ``/metrics``.

    Register before the request scope: Flask runs ``after_request`` hooks in reverse, so
    the latency then includes the commit.
    """

    @app.before_request
    def _start_timer() -> None:
        g.metrics_started = time.perf_counter()

    @app.after_request
    def _observe(response: Response) -> Response:
        started = g.pop("metrics_started", None)
        if started is not None:
            rule = request.url_rule
            HTTP_REQUEST_DURATION.labels(
                method=request.method,
                route=rule.rule if rule is not None else UNMATCHED_ROUTE,
                status=str(response.status_code),
            ).observe(time.perf_counter() - started)
        return response

    @app.get(METRICS_PATH)
    def metrics() -> Response:
        """Prometheus exposition: this process's (or all gunicorn workers') metrics and
        the cluster-wide queue and counter figures."""
        objects = platform(current_app)
        cluster = ClusterCollector(objects.redis, objects.settings.queue_prefix)
        body = generate_latest(metrics_registry(cluster))
        return Response(body, content_type=CONTENT_TYPE_LATEST)
