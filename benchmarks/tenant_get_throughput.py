"""Requests per second of a tenant-scoped, authenticated GET, against a bare app's GET.

(a) ``GET /api/v1/cases/<id>`` through the real app from ``create_app``, with an OAuth2
    bearer token from ``/oauth/token`` (client-credentials grant): the token and its
    tenant are looked up, the session is bound to the tenant's schema, the case is loaded
    with its account and debtor and dumped with ``CaseSchema``, the request commits.
(b) The baseline: a bare flask-smorest app (its own Flask app, ``Api``, ``Blueprint``,
    ``MethodView`` and ``@blp.response``) doing the same lookup (the case with its account
    and debtor, dumped with the same schema) on copies of the same tables in ``public``.
    No authentication, no tenant resolution, no request hooks (so no principal: the
    schema masks the debtor's name, which (a)'s tenant client sees whole).

Both are driven through Flask's test client (same WSGI overhead), warmed up, then timed
in alternating rounds.

    .venv/bin/python benchmarks/tenant_get_throughput.py [--small] [--requests N]
        [--rounds R] [--profile]
"""

from __future__ import annotations

import base64
import cProfile
import dataclasses
import datetime as dt
import io
import pstats
import statistics
import time
from decimal import Decimal
from typing import Any

from _common import (
    bench_environment,
    describe_machine,
    heading,
    parser,
    provision_bench_client,
    verdict,
)
from flask import Flask
from flask.testing import FlaskClient
from flask.views import MethodView
from flask_smorest import Api, Blueprint, abort
from sqlalchemy import create_engine, select, text
from sqlalchemy.orm import joinedload, sessionmaker

from recova.platform.cases.display import mask_name
from recova.platform.cases.models import Case
from recova.platform.cases.schemas import CaseSchema
from recova.platform.cases.services import open_case
from recova.platform.entry.app import create_app
from recova.platform.kernel.crypto import PersonalDataCipher
from recova.platform.kernel.db import TENANT_PLACEHOLDER
from recova.platform.kernel.extension import platform
from recova.tenants.migrate import migrate_shared
from recova.tenants.scope import tenant_scope

GOAL_RATIO = 0.7
CASES = 50  # rows in each table; the benchmark reads one in the middle


# --- (a) the real app ----------------------------------------------------------------------


def case_values(n: int, today: dt.date) -> dict[str, Any]:
    return {
        "debtor_external_id": f"D-{n}",
        "full_name": f"Debtor {n}",
        "account_external_id": f"L-{n}",
        "currency": "CNY",
        "principal": Decimal("1000.00") * n,
        "due_date": today - dt.timedelta(days=10 * n),
        "national_id": "11010519491231002X",
        "product": "cash-loan",
    }


def build_recova(settings: Any) -> tuple[Flask, str, dict[str, str], dict[str, Any]]:
    """The real app with one tenant, one API client and some cases; a bearer header.

    The API's rate limit is lifted for the run (one client asks thousands of times): the
    limiter still counts every request in Redis, so its cost stays in the figures."""
    app = create_app(dataclasses.replace(settings, rate_limit_api="1000000000/minute"))
    app.config["TESTING"] = True
    db = platform(app).db
    migrate_shared(db.engine)
    client_id, client_secret = provision_bench_client(db)

    cipher = PersonalDataCipher(settings.data_key)
    today = dt.datetime.now(dt.UTC).date()
    with tenant_scope("bench", db=db) as scoped:
        case_ids = [
            open_case(scoped, cipher=cipher, **case_values(n, today)).id
            for n in range(1, CASES + 1)
        ]
    case_id = case_ids[CASES // 2]

    basic = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()
    token = app.test_client().post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "cases:read"},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert token.status_code == 200, token.get_data(as_text=True)
    headers = {"Authorization": f"Bearer {token.json['access_token']}"}
    body = app.test_client().get(f"/api/v1/cases/{case_id}", headers=headers)
    assert body.status_code == 200, body.get_data(as_text=True)
    return app, f"/api/v1/cases/{case_id}", headers, body.json


# --- (b) the bare flask-smorest app ---------------------------------------------------------


def build_bare(database_url: str, tenant_schema: str) -> tuple[Flask, str, Any]:
    """A minimal flask-smorest app doing the same lookup on non-tenant tables.

    The same three tables (cases, accounts, debtors) and rows are copied into the
    ``public`` schema; the view loads the same case with the same eager loads and dumps
    it with the same ``CaseSchema``. What it lacks is exactly what (a) adds: the bearer
    token lookup, tenant resolution and scoping, the access rule and the request hooks.
    """
    engine = create_engine(database_url)
    with engine.begin() as connection:
        for table in ("debtors", "accounts", "cases"):
            connection.execute(text(f"DROP TABLE IF EXISTS public.{table} CASCADE"))
            connection.execute(
                text(f'CREATE TABLE public.{table} (LIKE "{tenant_schema}".{table} INCLUDING ALL)')
            )
            connection.execute(
                text(f'INSERT INTO public.{table} SELECT * FROM "{tenant_schema}".{table}')
            )
    # The models are declared in the placeholder schema; here it simply names ``public``.
    public = engine.execution_options(schema_translate_map={TENANT_PLACEHOLDER: "public"})
    new_session = sessionmaker(public)

    app = Flask("bare")
    app.config.update(TESTING=True, API_TITLE="bare", API_VERSION="v1", OPENAPI_VERSION="3.1.0")
    api = Api(app)
    blp = Blueprint("plain", "plain", description="Plain rows")

    @blp.route("/cases/<int:case_id>")
    class PlainCaseItem(MethodView):
        @blp.response(200, CaseSchema)
        def get(self, case_id: int) -> Case:
            with new_session() as session:
                case = session.scalar(
                    select(Case)
                    .options(joinedload(Case.account), joinedload(Case.debtor))
                    .where(Case.id == case_id)
                )
                if case is None:
                    abort(404, message=f"no case {case_id}")
                return case

    api.register_blueprint(blp, url_prefix="/api/v1")
    return app, "/api/v1/cases/{case_id}", engine


def as_seen_unauthenticated(case: dict[str, Any]) -> dict[str, Any]:
    """(a)'s answer as ``CaseSchema`` dumps it with no principal, as in (b): the same
    case, account and debtor, the debtor's name masked (``PersonName`` shows it whole
    only to a principal that reaches every case, such as the tenant's API client)."""
    debtor = {**case["debtor"], "full_name": mask_name(case["debtor"]["full_name"])}
    return {**case, "debtor": debtor}


# --- measuring -----------------------------------------------------------------------------


def requests_per_second(client: FlaskClient, path: str, headers: dict[str, str], n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        response = client.get(path, headers=headers)
        if response.status_code != 200:
            raise RuntimeError(f"{path}: {response.status_code} {response.get_data(as_text=True)}")
    return n / (time.perf_counter() - started)


def profile(client: FlaskClient, path: str, headers: dict[str, str], n: int) -> None:
    """Where one request's time goes (cProfile over ``n`` requests, cumulative)."""
    profiler = cProfile.Profile()
    profiler.enable()
    requests_per_second(client, path, headers, n)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(45)
    print(out.getvalue())


def main() -> None:
    args_parser = parser(__doc__.splitlines()[0])
    args_parser.add_argument("--requests", type=int, help="requests per round (default 1000)")
    args_parser.add_argument("--rounds", type=int, default=9, help="rounds of each (default 9)")
    args_parser.add_argument(
        "--profile", action="store_true", help="also print a cProfile of (a) and of (b)"
    )
    args = args_parser.parse_args()
    per_round = args.requests or (300 if args.small else 1000)
    warmup = min(200, per_round)

    with bench_environment("throughput") as settings:
        assert settings.database_url is not None
        app, recova_path, headers, case = build_recova(settings)
        bare, bare_path, bare_engine = build_bare(settings.database_url, "tenant_bench")
        bare_path = bare_path.format(case_id=case["id"])
        try:
            assert bare.test_client().get(bare_path).json == as_seen_unauthenticated(case)
            heading(
                "tenant_get_throughput",
                requests=f"{args.rounds} rounds x {per_round} of each, alternating,"
                f" after {warmup} warm-up requests of each; Flask test client",
                machine=describe_machine(bare_engine),
            )
            recova_client, bare_client = app.test_client(), bare.test_client()
            requests_per_second(recova_client, recova_path, headers, warmup)
            requests_per_second(bare_client, bare_path, {}, warmup)
            ours: list[float] = []
            theirs: list[float] = []
            for _ in range(args.rounds):
                ours.append(requests_per_second(recova_client, recova_path, headers, per_round))
                theirs.append(requests_per_second(bare_client, bare_path, {}, per_round))

            def line(label: str, values: list[float]) -> tuple[float, float]:
                best, median = max(values), statistics.median(values)
                rounds = ", ".join(f"{v:.0f}" for v in values)
                print(label)
                print(f"  best {best:7.0f} req/s   median {median:7.0f} req/s   (rounds: {rounds})")
                print(f"  = {1000 / median:.3f} ms per request (median)")
                return best, median

            a_best, a_median = line(
                f"(a) recova GET {recova_path.rsplit('/', 1)[0]}/<id>,"
                " bearer token, tenant-scoped:",
                ours,
            )
            b_best, b_median = line(
                "(b) bare flask-smorest GET of the same case, same tables in public, no auth:",
                theirs,
            )
            # Each round of (a) is paired with the round of (b) run right after it, so
            # drift in the machine's speed (a shared VM) cancels within each pair.
            pairs = [mine / theirs for mine, theirs in zip(ours, theirs, strict=True)]
            ratio_median = statistics.median(pairs)
            print(
                f"ratio (a)/(b): median of paired rounds {ratio_median:.2f}"
                f"   (pairs: {', '.join(f'{p:.2f}' for p in pairs)};"
                f" best/best {a_best / b_best:.2f}, median/median {a_median / b_median:.2f})"
            )
            print(
                f"goal: >= {GOAL_RATIO} -> {ratio_median:.2f} (median paired ratio):"
                f" {verdict(ratio_median >= GOAL_RATIO)}"
            )
            if args.profile:
                print("\n-- profile of (a), cumulative --")
                profile(recova_client, recova_path, headers, per_round)
                print("\n-- profile of (b), cumulative --")
                profile(bare_client, bare_path, {}, per_round)
        finally:
            platform(app).db.dispose()
            bare_engine.dispose()


if __name__ == "__main__":
    main()
