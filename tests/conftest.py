"""Test fixtures: a fresh database per run on real PostgreSQL, real Redis, real migrations.

With ``DATABASE_URL`` set (CI, or this machine's server) the suite creates a database
under a fresh name on that server and drops it at the end; without it, the embedded
PostgreSQL is started in a temporary ``RECOVA_HOME``. Redis is ``REDIS_URL`` or the
embedded one; queues get a per-run prefix so concurrent runs never see each other's jobs.
Each xdist worker (``-n auto`` in pyproject's addopts) has its own database and app.

The costly fixtures (the two-tenant ``world``, the ``cn`` and ``us`` lenders, the
billing ledgers) are built once per worker and shared: a test using one runs in a
transaction rolled back at its end (``rolled_back``, see ``tests/transactions.py``), so
it sees the fixture as built. Tests that need real commits (threads, processes, the
outbox, connections of their own) are marked ``real_commits`` and get fixtures of their
own under unique slugs, as do the tests that make their own tenants; those are built by
replaying what provisioning sends (``tests/tenant_clone.py``), except in the tests of
provisioning and migrations themselves.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from flask import Flask

from recova.platform.auth import passwords
from recova.platform.entry.app import create_app
from recova.platform.kernel.config import Settings, new_secrets, normalise_database_url
from recova.platform.kernel.embedded import EmbeddedRedis, start_embedded_postgres
from recova.platform.kernel.extension import platform
from recova.tenants.migrate import migrate_shared
from tests.compliance_support import Lender, make_lender
from tests.support import World, build_world, drop_databases, scratch_database
from tests.tenant_clone import record_provisioning
from tests.transactions import SHARED_SCHEMAS, RolledBack, private_copy, real_commits, shared

# Argon2id at its production cost (64 MiB, 3 passes, 4 lanes) takes ~0.1 s per hash or
# check on this kind of machine, and the suite makes some 1,600 of them (every user a
# fixture creates, every login): a third of the run. The tests hash and check with the
# same algorithm and code at its lowest cost; the parameters travel in each hash, so
# hashes made here verify in the CLI and servers the tests start, and back. A test of
# the hashing itself installs its own hasher (test_web_auth counts the checks).
passwords._hasher = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


#: The browser fixtures (``served``, ``browser``) for every module that asks for them.
pytest_plugins = ("tests.browser",)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the test (``rep_call``): the browser fixture saves a
    screenshot when the test itself failed (``tests/browser.py``)."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto`` (pyproject's addopts): a worker per core and one more, for a good part
    of the run is spent waiting on processes the tests start (servers, CLIs, workers);
    ``--maxprocesses`` caps it."""
    return len(os.sched_getaffinity(0)) + 1


GENEROUS_RATE_LIMITS = {
    "RECOVA_RATE_LIMIT_API": "1000000/minute",
    "RECOVA_RATE_LIMIT_WRITES": "1000000/minute",
    "RECOVA_RATE_LIMIT_TOKEN": "1000000/minute",
    "RECOVA_RATE_LIMIT_TOKEN_ADDRESS": "1000000/minute",
}


@pytest.fixture(scope="session")
def recova_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("recova-home")


@pytest.fixture(scope="session")
def server_url(recova_home: Path) -> str:
    """A SQLAlchemy URL for the PostgreSQL server's maintenance database."""
    configured = normalise_database_url(os.environ.get("DATABASE_URL") or None)
    if configured:
        return configured
    return start_embedded_postgres(recova_home)


@pytest.fixture(scope="session")
def database_url(server_url: str) -> Iterator[str]:
    """The run's database, created under a fresh name and dropped at the end."""
    with scratch_database(server_url, "recova_test") as url:
        yield url


@pytest.fixture(scope="session")
def _scratch_databases(server_url: str) -> Iterator[list[str]]:
    """The tests' scratch databases, dropped together at the end (see ``scratch_database``)."""
    names: list[str] = []
    yield names
    drop_databases(server_url, names)


@pytest.fixture
def fresh_database(server_url: str, _scratch_databases: list[str]) -> Iterator[str]:
    """An empty database of the test's own, for tests that need a blank server state."""
    with scratch_database(server_url, "recova_scratch", drop_later=_scratch_databases) as url:
        yield url


@pytest.fixture
def cli_env(fresh_database: str, redis_url: str, tmp_path: Path) -> dict[str, str]:
    """An environment for ``recova`` commands against ``fresh_database``."""
    return {
        "RECOVA_ENV": "test",
        "RECOVA_HOME": str(tmp_path / "home"),
        "DATABASE_URL": fresh_database,
        "REDIS_URL": redis_url,
        "RECOVA_QUEUE_PREFIX": f"test-{secrets.token_hex(4)}:",
        **GENEROUS_RATE_LIMITS,
        **new_secrets(),
    }


@pytest.fixture(scope="session")
def redis_url(recova_home: Path) -> str:
    return os.environ.get("REDIS_URL") or EmbeddedRedis(recova_home).acquire()


@pytest.fixture(scope="session")
def settings(recova_home: Path, database_url: str, redis_url: str) -> Settings:
    keys = new_secrets()
    return Settings.from_env(
        {
            "RECOVA_ENV": "test",
            "RECOVA_HOME": str(recova_home),
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "SECRET_KEY": keys["SECRET_KEY"],
            "RECOVA_DATA_KEY": keys["RECOVA_DATA_KEY"],
            "RECOVA_QUEUE_PREFIX": f"test-{secrets.token_hex(4)}:",
            # The worker's shared fixtures make every test one caller: limits far above
            # what a worker sends in a window, still counted by the real limiter in Redis.
            # tests/test_ratelimit.py builds apps of its own with small limits.
            **GENEROUS_RATE_LIMITS,
        }
    )


@pytest.fixture(scope="session")
def app(settings: Settings):  # type: ignore[no-untyped-def]
    application = create_app(settings)
    application.config["TESTING"] = True
    migrate_shared(platform(application).db.engine)
    record_provisioning(platform(application).db.engine)
    yield application
    redis = platform(application).redis
    # Queues carry the prefix as is; job ids carry it with ":" made "-".
    for pattern in {settings.queue_prefix, settings.queue_prefix.replace(":", "-")}:
        for key in redis.scan_iter(match=f"*{pattern}*"):
            redis.delete(key)
    platform(application).db.dispose()


@pytest.fixture
def db(app):  # type: ignore[no-untyped-def]
    return platform(app).db


@pytest.fixture
def client(app):  # type: ignore[no-untyped-def]
    return app.test_client()


@pytest.fixture
def rolled_back(request: pytest.FixtureRequest, app: Flask) -> Iterator[RolledBack | None]:
    """The test's transaction, rolled back at its end; None for a ``real_commits`` test.

    Fixtures that hand out a shared fixture depend on this one and on the session-scoped
    fixture that built it, so the shared fixture is built (committed) before this starts.
    """
    if real_commits(request):
        yield None
        return
    with RolledBack(app, sorted(SHARED_SCHEMAS)) as transaction:
        yield transaction


@pytest.fixture(scope="session")
def shared_world(app) -> World:  # type: ignore[no-untyped-def]
    """The worker's world, built once and only ever changed inside rolled-back tests."""
    world = build_world(app)
    return shared(world, world.a.slug, world.b.slug)


@pytest.fixture(scope="session")
def shared_lender_cn(app) -> Lender:  # type: ignore[no-untyped-def]
    """The worker's CN lender (``compliance_support.lender_for``), built once."""
    lender = make_lender(app, "CN")
    return shared(lender, lender.slug)


@pytest.fixture(scope="session")
def shared_lender_us(app) -> Lender:  # type: ignore[no-untyped-def]
    """The worker's US lender, built once."""
    lender = make_lender(app, "US")
    return shared(lender, lender.slug)


@pytest.fixture
def world(request, app, shared_world, rolled_back) -> World:  # type: ignore[no-untyped-def]
    """Two tenants with identical external ids, an agency contracted to A only, and staff.

    The worker's shared world, the test rolled back at its end; a ``real_commits`` test
    gets one of its own.
    """
    if rolled_back is None:
        return build_world(app)
    return private_copy(shared_world, app)
