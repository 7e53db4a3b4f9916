"""Shared set-up for the benchmarks: a throw-away database, settings and small helpers.

Every benchmark runs against a database created for that run under a fresh name on the
server ``DATABASE_URL`` points at (default: the local PostgreSQL), and drops it at the
end, also when the run fails or is interrupted (Ctrl-C, SIGTERM). Settings are built the
way ``tests/conftest.py`` builds them: ``RECOVA_ENV=test``, a temporary ``RECOVA_HOME``,
fresh secrets and a per-run queue prefix.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import pkgutil
import platform
import secrets
import signal
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from types import FrameType
from typing import Any

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from recova.platform.kernel.config import Settings, new_secrets, normalise_database_url

DEFAULT_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


# --- command line --------------------------------------------------------------------------


def parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the ``--small`` flag every benchmark understands."""
    result = argparse.ArgumentParser(description=description)
    result.add_argument(
        "--small", action="store_true", help="a quick run with smaller sizes (a smoke test)"
    )
    return result


# --- models --------------------------------------------------------------------------------


def import_all_models() -> None:
    """Register every table on ``Base.metadata``: ``recova.platform.entry.all_models`` and,
    should that list miss one, every module named ``models`` under ``recova``."""
    import recova
    import recova.platform.entry.all_models

    for module in pkgutil.walk_packages(recova.__path__, "recova."):
        if module.name.rpartition(".")[2] == "models":
            importlib.import_module(module.name)


# --- environment ---------------------------------------------------------------------------


def server_url() -> str:
    """A SQLAlchemy URL for the server's maintenance database."""
    url = normalise_database_url(os.environ.get("DATABASE_URL") or DEFAULT_SERVER_URL)
    assert url is not None
    return url


def redis_url() -> str:
    return os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL


@contextlib.contextmanager
def _signals_as_exit() -> Iterator[None]:
    """Turn SIGTERM (and SIGHUP) into ``SystemExit`` so ``finally`` blocks still run."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def fresh_database(label: str, *, keep: bool = False) -> Iterator[str]:
    """Create a database under a fresh name, yield its URL, and always drop it afterwards
    (``keep``: only when the run fails; a finished run leaves it, to measure again)."""
    name = f"recova_bench_{label}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(server_url(), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        finished = False
        try:
            url = make_url(server_url()).set(database=name).render_as_string(hide_password=False)
            yield url
            finished = True
        finally:
            if keep and finished:
                print(f"database kept (drop it when done): {name}")
            else:
                with admin.connect() as connection:
                    connection.execute(
                        text(
                            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                            " WHERE datname = :name AND pid <> pg_backend_pid()"
                        ),
                        {"name": name},
                    )
                    connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    finally:
        admin.dispose()


@contextlib.contextmanager
def existing_environment(label: str, database_url: str) -> Iterator[Settings]:
    """Settings for a database a ``keep`` run left (nothing is dropped at the end)."""
    with _signals_as_exit(), tempfile.TemporaryDirectory(prefix=f"recova-bench-{label}-") as home:
        settings = make_settings(database_url, home)
        try:
            yield settings
        finally:
            _clear_queue_keys(settings)


def make_settings(database_url: str, home: str) -> Settings:
    """Settings as the test suite builds them, for this run's database and home."""
    keys = new_secrets()
    return Settings.from_env(
        {
            "RECOVA_ENV": "test",
            "RECOVA_HOME": home,
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url(),
            "SECRET_KEY": keys["SECRET_KEY"],
            "RECOVA_DATA_KEY": keys["RECOVA_DATA_KEY"],
            "RECOVA_QUEUE_PREFIX": f"bench-{secrets.token_hex(4)}:",
        }
    )


@contextlib.contextmanager
def bench_environment(label: str, *, keep: bool = False) -> Iterator[Settings]:
    """A fresh database and a temporary ``RECOVA_HOME``; both are removed at the end
    (``keep``: the database of a finished run is left, see ``fresh_database``)."""
    with (
        _signals_as_exit(),
        tempfile.TemporaryDirectory(prefix=f"recova-bench-{label}-") as home,
        fresh_database(label, keep=keep) as database_url,
    ):
        settings = make_settings(database_url, home)
        try:
            yield settings
        finally:
            _clear_queue_keys(settings)


def _clear_queue_keys(settings: Settings) -> None:
    """Delete any Redis key carrying this run's queue prefix (none are expected)."""
    from redis import Redis

    if not settings.redis_url:
        return
    with contextlib.suppress(Exception):  # Redis is not essential to any benchmark
        redis = Redis.from_url(settings.redis_url, socket_connect_timeout=2)
        for key in redis.scan_iter(match=f"*{settings.queue_prefix}*"):
            redis.delete(key)
        redis.close()


def server_version(engine: Engine) -> str:
    with engine.connect() as connection:
        return str(connection.execute(text("SHOW server_version")).scalar())


def describe_machine(engine: Engine) -> str:
    return (
        f"Python {platform.python_version()}, PostgreSQL {server_version(engine)},"
        f" {os.cpu_count()} CPUs"
    )


# --- figures -------------------------------------------------------------------------------


def mean(values: Sequence[float]) -> float:
    return statistics.fmean(values)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation between closest ranks."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def verdict(met: bool) -> str:
    """How a goal line ends. Informational only: no benchmark fails on timing."""
    return "met" if met else "NOT met"


def heading(title: str, **details: Any) -> None:
    print(f"== {title} ==")
    for key, value in details.items():
        print(f"{key.replace('_', ' ')}: {value}")


# --- a tenant to load ---------------------------------------------------------------------


def provision_bench_client(db: Any) -> tuple[str, str]:
    """Tenant ``bench`` with an admin and a ``cases:read`` API client; its id and secret."""
    from recova.platform.auth.models import Role
    from recova.platform.auth.services import create_api_client, create_user
    from recova.tenants.services import provision_tenant

    session = db.session()
    try:
        tenant = provision_tenant(
            session,
            slug="bench",
            name="Bench lender",
            jurisdiction="CN",
            timezone="Asia/Shanghai",
            currency="CNY",
        )
        admin = create_user(
            session,
            email="admin@bench.test",
            full_name="Bench admin",
            password=secrets.token_urlsafe(16),
            role=Role.TENANT_ADMIN,
            tenant=tenant,
        )
        issued = create_api_client(
            session, tenant=tenant, name="bench client", scopes=["cases:read"], created_by=admin.id
        )
        session.commit()
        return issued.client.client_id, issued.client_secret
    finally:
        session.close()


# --- write floors ----------------------------------------------------------------------------


def copy_into_twin(engine: Engine, schema: str, table: str) -> tuple[int, float]:
    """Copy a tenant table's rows into an empty twin with its columns, keys, indexes,
    checks (``LIKE ... INCLUDING ALL``) and foreign keys, timing the one ``INSERT ...
    SELECT``; the twin is dropped after. Returns (rows, seconds): what storing those rows
    costs, before any of them is computed."""
    twin = f"public.bench_twin_{table}"
    with engine.begin() as connection:
        connection.execute(text(f'CREATE TABLE {twin} (LIKE "{schema}".{table} INCLUDING ALL)'))
        references = connection.execute(
            text(
                "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
                " WHERE conrelid = CAST(:table AS regclass) AND contype = 'f'"
            ),
            {"table": f'"{schema}".{table}'},
        ).scalars()
        for definition in list(references):
            connection.execute(text(f"ALTER TABLE {twin} ADD {definition}"))
    started = time.perf_counter()
    with engine.begin() as connection:
        rows = connection.execute(text(f'INSERT INTO {twin} SELECT * FROM "{schema}".{table}'))
    seconds = time.perf_counter() - started
    with engine.begin() as connection:
        connection.execute(text(f"DROP TABLE {twin}"))
    return int(rows.rowcount), seconds
