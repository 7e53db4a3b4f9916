"""``/metrics`` after some traffic: request latency by route and status, queue depth read
from Redis at scrape time, ingested rows and compliance blocks, job counts by queue."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import replace

import pytest
from flask import Flask
from prometheus_client.parser import text_string_to_metric_families

from recova.platform.cases.jobs import refresh_days_past_due_job
from recova.platform.kernel.config import Settings
from recova.platform.kernel.extension import Platform, platform
from recova.platform.kernel.metrics import (
    record_compliance_block,
    record_ingested_rows,
    record_job_run,
)
from tests.support import World, login


@pytest.fixture
def own_app(settings: Settings) -> Iterator[Flask]:
    """An app whose queues and counters are this test's alone (a prefix of its own)."""
    from recova.platform.entry.app import create_app

    application = create_app(replace(settings, queue_prefix=f"test-m-{secrets.token_hex(4)}:"))
    application.config["TESTING"] = True
    yield application
    objects = platform(application)
    for key in objects.redis.scan_iter(match=f"*{objects.settings.queue_prefix}*"):
        objects.redis.delete(key)
    objects.db.dispose()
    objects.redis.close()


def scrape(app: Flask) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = app.test_client().get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_request_latency_is_counted_by_route_and_status(app: Flask, world: World) -> None:
    before = scrape(app)
    admin = login(app, world.a.admin_email)
    case_id = world.a.case_ids[0]
    assert admin.get(f"/api/v1/cases/{case_id}").status_code == 200
    assert admin.get(f"/api/v1/cases/{case_id}").status_code == 200
    missing = admin.get("/api/v1/cases/999999999")
    assert missing.status_code == 404
    assert app.test_client().get("/no/such/page?national_id=110105194912310021").status_code == 404

    after = scrape(app)
    rule = "/api/v1/cases/<int:case_id>"
    name = "recova_http_request_duration_seconds_count"
    for status, added in (("200", 2), ("404", 1)):
        grew = value(after, name, method="GET", route=rule, status=status) - value(
            before, name, method="GET", route=rule, status=status
        )
        assert grew == added
    assert value(after, name, method="GET", route="<unmatched>", status="404") >= 1
    assert (
        value(
            after,
            "recova_http_request_duration_seconds_bucket",
            method="GET",
            route=rule,
            status="200",
            le="+Inf",
        )
        >= 2
    )
    text = app.test_client().get("/metrics").get_data(as_text=True)
    assert "110105194912310021" not in text  # never paths or query strings


def test_queue_depth_is_read_from_redis_when_scraped(own_app: Flask) -> None:
    objects = platform(own_app)
    assert value(scrape(own_app), "recova_queue_depth", queue="allocate") == 0
    for n in range(3):
        refresh_days_past_due_job.enqueue(
            objects, job_id=f"depth-{n}", tenant_id=1, as_of=f"2030-01-0{n + 1}"
        )
    samples = scrape(own_app)
    assert value(samples, "recova_queue_depth", queue="allocate") == 3
    assert value(samples, "recova_queue_depth", queue="ingest") == 0
    assert value(samples, "recova_queue_jobs", queue="allocate", state="failed") == 0
    assert value(samples, "recova_metrics_redis_up") == 1


def test_ingested_rows_and_compliance_blocks_are_counted_cluster_wide(own_app: Flask) -> None:
    with own_app.app_context():
        record_ingested_rows("portfolio", "inserted", 120)
        record_ingested_rows("portfolio", "inserted", 30)
        record_ingested_rows("payments", "rejected", 2)
        record_ingested_rows("payments", "unchanged", 0)
        record_compliance_block("cn.quiet_hours")
        record_compliance_block("cn.quiet_hours")
        record_compliance_block("us.seven_in_seven")
    objects = platform(own_app)
    record_ingested_rows("payments", "updated", 5, objects=objects)  # outside a request

    samples = scrape(own_app)
    rows = "recova_ingested_rows_total"
    assert value(samples, rows, kind="portfolio", outcome="inserted") == 150
    assert value(samples, rows, kind="payments", outcome="rejected") == 2
    assert value(samples, rows, kind="payments", outcome="updated") == 5
    assert value(samples, rows, kind="payments", outcome="unchanged") == 0
    blocks = "recova_compliance_blocks_total"
    assert value(samples, blocks, rule="cn.quiet_hours") == 2
    assert value(samples, blocks, rule="us.seven_in_seven") == 1


def test_bad_metric_calls_are_refused(own_app: Flask) -> None:
    objects = platform(own_app)
    with pytest.raises(ValueError, match="kind"):
        record_ingested_rows("loans", "inserted", 1, objects=objects)
    with pytest.raises(ValueError, match="outcome"):
        record_ingested_rows("portfolio", "lost", 1, objects=objects)
    with pytest.raises(ValueError, match="negative"):
        record_ingested_rows("portfolio", "inserted", -1, objects=objects)
    with pytest.raises(ValueError, match="rule"):
        record_compliance_block("", objects=objects)
    with pytest.raises(RuntimeError, match="objects="):
        record_compliance_block("cn.quiet_hours")


def test_job_runs_are_counted_by_queue_and_outcome(app: Flask) -> None:
    before = scrape(app)
    record_job_run("billing", "finished", 0.2)
    record_job_run("billing", "retried", 1.5)
    record_job_run("billing", "failed", 3.0)
    after = scrape(app)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("recova_jobs_total", queue="billing", outcome="finished") == 1
    assert grew("recova_jobs_total", queue="billing", outcome="failed") == 1
    assert grew("recova_job_failures_total", queue="billing") == 2
    assert grew("recova_job_duration_seconds_count", queue="billing") == 3


def test_a_redis_outage_does_not_break_the_scrape_or_the_work(settings: Settings) -> None:
    from recova.platform.entry.app import create_app

    application = create_app(replace(settings, redis_url="redis://127.0.0.1:1/0"))
    try:
        with application.app_context():
            record_ingested_rows("portfolio", "inserted", 1)  # logged, not raised
        samples = scrape(application)
        assert value(samples, "recova_metrics_redis_up") == 0
        assert any(name == "recova_http_request_duration_seconds_count" for name, _ in samples)
    finally:
        objects: Platform = platform(application)
        objects.db.dispose()
        objects.redis.close()
