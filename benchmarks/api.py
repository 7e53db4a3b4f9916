"""The API under gunicorn with its production config, loaded over loopback by ``wrk``.

(a) ``GET /api/v1/cases/<id>`` and (b) ``GET /api/v1/cases`` (first page, with its COUNT)
    through the real app (``wsgi:app``, ``gunicorn.conf.py``), with an OAuth2 bearer token,
    in a tenant holding 10,000 cases; detail requests pick a random case each time.
(c) The baseline: a bare flask-smorest app (its own ``Flask``, ``Api``, ``Blueprint``,
    ``MethodView``, ``@blp.response``) under the same gunicorn settings, loading the same
    random case with the same eager loads and schema from copies of the tables in
    ``public``: no authentication, no tenant, no request hooks, no logging, no metrics.

Each is run at 10 and 50 connections; requests per second, p50 and p99 (wrk's latency
distribution) and the ratio of throughput to the baseline at the same concurrency are
printed, with the goals at 10 connections.

    .venv/bin/python benchmarks/api.py [--small] [--seconds N] [--cases N]

Needs ``wrk`` (Debian: ``apt-get install -y wrk``).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

from _common import (
    bench_environment,
    describe_machine,
    heading,
    parser,
    provision_bench_client,
    verdict,
)
from sqlalchemy import create_engine, text

REPO = Path(__file__).resolve().parent.parent
GOAL_RPS = 300
GOAL_P99_DETAIL_MS = 50
GOAL_P99_LIST_MS = 150
CONNECTIONS = (10, 50)


# --- the baseline app, loaded by gunicorn as ``api:bare_app()`` -----------------------------


def bare_app() -> Any:
    """A bare flask-smorest app reading the same case from ``public`` (gunicorn factory)."""
    from flask import Flask
    from flask.views import MethodView
    from flask_smorest import Api, Blueprint, abort
    from sqlalchemy import select
    from sqlalchemy.orm import joinedload, sessionmaker

    from recova.platform.cases.models import Case
    from recova.platform.cases.schemas import CaseSchema
    from recova.platform.kernel.db import TENANT_PLACEHOLDER

    engine = create_engine(os.environ["BENCH_BARE_DATABASE_URL"])
    public = engine.execution_options(schema_translate_map={TENANT_PLACEHOLDER: "public"})
    new_session = sessionmaker(public)
    app = Flask("bare")
    app.config.update(API_TITLE="bare", API_VERSION="v1", OPENAPI_VERSION="3.1.0")
    api = Api(app)
    blp = Blueprint("plain", "plain", description="Plain rows")
    by_id = select(Case).options(joinedload(Case.account), joinedload(Case.debtor))

    @blp.route("/cases/<int:case_id>")
    class PlainCaseItem(MethodView):
        @blp.response(200, CaseSchema)
        def get(self, case_id: int) -> Case:
            with new_session() as session:
                case = session.scalar(by_id.where(Case.id == case_id))
                if case is None:
                    abort(404, message=f"no case {case_id}")
                return case

    api.register_blueprint(blp, url_prefix="/api/v1")
    return app


# --- set-up ----------------------------------------------------------------------------------


def seed(settings: Any, cases: int) -> tuple[str, int, int]:
    """A tenant with ``cases`` cases and an API client; a bearer token and the id range."""
    from recova.platform.cases.services import open_case
    from recova.platform.entry.app import create_app
    from recova.platform.kernel.crypto import PersonalDataCipher
    from recova.platform.kernel.extension import platform
    from recova.tenants.migrate import migrate_shared
    from recova.tenants.scope import tenant_scope

    app = create_app(settings)
    db = platform(app).db
    migrate_shared(db.engine)
    client_id, client_secret = provision_bench_client(db)

    cipher = PersonalDataCipher(settings.data_key)
    today = dt.datetime.now(dt.UTC).date()
    ids: list[int] = []
    started = time.perf_counter()
    for batch in range(0, cases, 1000):
        with tenant_scope("bench", db=db) as scoped:
            for n in range(batch + 1, min(batch + 1000, cases) + 1):
                case = open_case(
                    scoped,
                    cipher=cipher,
                    debtor_external_id=f"D-{n}",
                    full_name=f"Debtor {n}",
                    account_external_id=f"L-{n}",
                    currency="CNY",
                    principal=Decimal("1000.00") + n,
                    due_date=today - dt.timedelta(days=n % 400),
                    national_id=f"110105{19490101 + n % 9000:08d}{n % 1000:03d}X",
                    product="cash-loan",
                )
                ids.append(case.id)
    with db.engine.begin() as connection:
        connection.execute(text('ANALYZE "tenant_bench".cases'))
    print(f"seeded {cases} cases with open_case in {time.perf_counter() - started:.1f} s")

    basic = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()
    token = app.test_client().post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "cases:read"},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert token.status_code == 200, token.get_data(as_text=True)
    db.dispose()
    return token.json["access_token"], min(ids), max(ids)


def copy_to_public(database_url: str) -> None:
    engine = create_engine(database_url)
    with engine.begin() as connection:
        for table in ("debtors", "accounts", "cases"):
            connection.execute(
                text(f'CREATE TABLE public.{table} (LIKE "tenant_bench".{table} INCLUDING ALL)')
            )
            connection.execute(
                text(f'INSERT INTO public.{table} SELECT * FROM "tenant_bench".{table}')
            )
            connection.execute(text(f"ANALYZE public.{table}"))
    engine.dispose()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _tail(log: Path, lines: int = 40) -> str:
    """The end of gunicorn's log (it lives in the run's temporary folder, removed after)."""
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


@contextlib.contextmanager
def gunicorn(app_spec: str, env: dict[str, str], cwd: Path, log: Path) -> Iterator[str]:
    """gunicorn with the repository's ``gunicorn.conf.py`` serving ``app_spec``."""
    port = free_port()
    with open(log, "ab") as output:
        process = subprocess.Popen(  # noqa: S603 - gunicorn of this virtualenv
            [
                str(Path(sys.executable).parent / "gunicorn"),
                "-c",
                str(REPO / "gunicorn.conf.py"),
                "--bind",
                f"127.0.0.1:{port}",
                app_spec,
            ],
            cwd=cwd,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"gunicorn exited:\n{_tail(log)}")
            try:
                urllib.request.urlopen(f"{base}/", timeout=2).close()  # noqa: S310 - loopback
                break
            except urllib.error.HTTPError:
                break  # it answered
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn did not answer:\n{_tail(log)}")
            time.sleep(0.2)
        yield base
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


RANDOM_CASE = """
math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
request = function()
  return wrk.format("GET", "/api/v1/cases/" .. math.random(%d, %d))
end
done = function(summary, latency, requests)
  io.write(string.format("non2xx %%d\\n", summary.errors.status))
end
"""
COUNT_ERRORS = """
done = function(summary, latency, requests)
  io.write(string.format("non2xx %d\\n", summary.errors.status))
end
"""
_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _sample(url: str, token: str | None) -> str:
    """One answer of ``url`` (its status and the start of its body), to say why wrk failed."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 - loopback
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - loopback
            return f"a sample request answered {answer.status}"
    except urllib.error.HTTPError as exc:
        return f"a sample request answered {exc.code}: {exc.read()[:500]!r}"
    except OSError as exc:
        return f"a sample request failed: {exc!r}"


def wrk(url: str, connections: int, seconds: int, script: Path, token: str | None) -> dict:
    command = [
        "wrk",
        f"-t{min(2, connections)}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        "--timeout",
        "10s",
        "-s",
        str(script),
    ]
    if token:
        command += ["-H", f"Authorization: Bearer {token}"]
    output = subprocess.run(  # noqa: S603 - wrk on loopback
        [*command, url], check=True, capture_output=True, text=True
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    latency = {}
    for label in ("50", "99"):
        found = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
        assert found, output
        latency[label] = float(found.group(1)) * _UNITS[found.group(2)]
    bad = int(re.search(r"non2xx (\d+)", output).group(1))  # type: ignore[union-attr]
    errors = re.search(r"connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    failed = [int(n) for n in errors.groups()] if errors else [0, 0, 0, 0]
    if bad or any(failed[:3]):
        raise RuntimeError(
            f"{url}: {bad} non-2xx answers; socket errors {failed[:3]}; {_sample(url, token)}"
        )
    return {"rps": rps, "p50": latency["50"], "p99": latency["99"], "timeouts": failed[3]}


def main() -> None:
    args_parser = parser(__doc__.splitlines()[0])
    args_parser.add_argument("--seconds", type=int, help="seconds per measurement (default 10)")
    args_parser.add_argument("--cases", type=int, help="cases in the tenant (default 10000)")
    args = args_parser.parse_args()
    seconds = args.seconds or (3 if args.small else 10)
    cases = args.cases or (1000 if args.small else 10_000)
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install -y wrk")

    with bench_environment("api") as settings, tempfile.TemporaryDirectory() as work:
        assert settings.database_url is not None
        token, low, high = seed(settings, cases)
        copy_to_public(settings.database_url)
        folder = Path(work)
        detail_script = folder / "detail.lua"
        detail_script.write_text(RANDOM_CASE % (low, high))
        plain_script = folder / "plain.lua"
        plain_script.write_text(COUNT_ERRORS)
        base_env = {
            **os.environ,
            "RECOVA_ENV": "production",
            "RECOVA_HOME": str(folder / "home"),
            "DATABASE_URL": settings.database_url,
            "REDIS_URL": settings.redis_url or "",
            "SECRET_KEY": settings.secret_key,
            "RECOVA_DATA_KEY": base64.urlsafe_b64encode(settings.data_key).decode(),
            "RECOVA_QUEUE_PREFIX": settings.queue_prefix,
            "BENCH_BARE_DATABASE_URL": settings.database_url,
            # One client asks thousands of times a second: the limiter still counts every
            # request in Redis (its cost is in the figures) but refuses none.
            "RECOVA_RATE_LIMIT_API": "1000000000/minute",
        }
        workers = base_env.get("WEB_CONCURRENCY", "2")
        threads = base_env.get("GUNICORN_THREADS", "4")
        engine = create_engine(settings.database_url)
        heading(
            "api",
            server=f"gunicorn -c gunicorn.conf.py: {workers} workers x {threads} threads (gthread),"
            " app preloaded, JSON request logs to a file, Prometheus multiprocess metrics",
            load=f"wrk on loopback, {seconds} s per run after a {max(2, seconds // 5)} s warm-up",
            data=f"{cases} cases in tenant 'bench'; detail requests pick a random case",
            machine=describe_machine(engine),
        )
        engine.dispose()
        results: dict[tuple[str, int], dict] = {}
        log = folder / "gunicorn.log"
        targets = (
            (
                "baseline",
                "api:bare_app()",
                REPO / "benchmarks",
                "/api/v1/cases/1",
                detail_script,
                None,
            ),
            ("detail", "wsgi:app", REPO, "/api/v1/cases/1", detail_script, token),
            ("list", "wsgi:app", REPO, "/api/v1/cases", plain_script, token),
        )
        for label, spec, cwd, path, script, bearer in targets:
            env = {**base_env, "PROMETHEUS_MULTIPROC_DIR": str(folder / f"metrics-{label}")}
            if label == "baseline":
                env["PYTHONPATH"] = str(REPO)
            with gunicorn(spec, env, cwd, log) as base:
                try:
                    wrk(base + path, 10, max(2, seconds // 5), script, bearer)  # warm-up
                    for connections in CONNECTIONS:
                        results[(label, connections)] = wrk(
                            base + path, connections, seconds, script, bearer
                        )
                except RuntimeError as exc:
                    raise RuntimeError(
                        f"{label}: {exc}\ngunicorn's log ends:\n{_tail(log)}"
                    ) from exc

        print(
            f"{'route':<36}{'conns':>6}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
            f"{'x baseline':>12}{'>10 s':>7}"
        )
        names = {
            "baseline": "(c) bare flask-smorest GET case",
            "detail": "(a) GET /api/v1/cases/<id>",
            "list": "(b) GET /api/v1/cases",
        }
        for label in ("detail", "list", "baseline"):
            for connections in CONNECTIONS:
                row = results[(label, connections)]
                ratio = row["rps"] / results[("baseline", connections)]["rps"]
                print(
                    f"{names[label]:<36}{connections:>6}{row['rps']:>10.0f}{row['p50']:>9.1f}"
                    f"{row['p99']:>9.1f}{ratio:>12.2f}{row['timeouts']:>7}"
                )
        detail, listing = results[("detail", 10)], results[("list", 10)]
        print(
            f"goal at 10 connections: detail >= {GOAL_RPS} req/s -> {detail['rps']:.0f}:"
            f" {verdict(detail['rps'] >= GOAL_RPS)}; p99 <= {GOAL_P99_DETAIL_MS} ms ->"
            f" {detail['p99']:.1f}: {verdict(detail['p99'] <= GOAL_P99_DETAIL_MS)}"
        )
        print(
            f"goal at 10 connections: list >= {GOAL_RPS} req/s -> {listing['rps']:.0f}:"
            f" {verdict(listing['rps'] >= GOAL_RPS)}; p99 <= {GOAL_P99_LIST_MS} ms ->"
            f" {listing['p99']:.1f}: {verdict(listing['p99'] <= GOAL_P99_LIST_MS)}"
        )


if __name__ == "__main__":
    main()
