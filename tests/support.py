"""Building test worlds and calling the API as different principals."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import io
import re
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from click.testing import CliRunner, Result
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from recova.billing.services import create_agency_contract
from recova.connectors.models import FeedKind
from recova.connectors.services import register_source, save_mapping, start_run, store_file
from recova.platform.agencies.services import create_agency
from recova.platform.auth.access import SCOPES
from recova.platform.auth.models import Role
from recova.platform.auth.services import create_api_client, create_user
from recova.platform.cases.services import open_case
from recova.platform.entry.cli import main as cli_main
from recova.platform.kernel.crypto import PersonalDataCipher
from recova.platform.kernel.extension import platform
from recova.tenants.scope import tenant_scope
from tests.tenant_clone import clone_tenant

PASSWORD = "correct-horse-battery"
B_MARK = "bmark"  # every name of tenant B's contains it, so leaks are easy to spot


def unique(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(4)}"


@contextlib.contextmanager
def scratch_database(
    server_url: str, prefix: str, *, drop_later: list[str] | None = None
) -> Iterator[str]:
    """A new empty database on the server, dropped (backends terminated) afterwards.

    Every DROP DATABASE makes the server checkpoint at once, flushing every dirty buffer
    of every database, which takes seconds while other tests write. With ``drop_later``
    the test's backends are still terminated when it ends, but the name is appended
    there and ``drop_databases`` drops them all at the end of the run.
    """
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": name},
            )
            if drop_later is None:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()
        if drop_later is not None:
            drop_later.append(name)


def drop_databases(server_url: str, names: list[str]) -> None:
    """Drop the databases ``scratch_database`` left for later (any backends terminated)."""
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        for name in names:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def recova(env: dict[str, str], *args: str) -> Result:
    """Run the ``recova`` command in-process with ``env`` as its environment."""
    return CliRunner().invoke(cli_main, list(args), env=env)


@dataclass(frozen=True)
class Upload:
    """A multipart body for ``Caller.request``: a file and optional form fields."""

    filename: str
    content: bytes
    form: dict[str, str] = field(default_factory=dict)


WALK_CSV = b"loan_id,name,principal,dpd\nW-1,Walker One,100.00,3\n"
WALK_COLUMNS = {
    "account_external_id": "loan_id",
    "full_name": "name",
    "outstanding_principal": "principal",
    "days_past_due": "dpd",
}


@dataclass
class Caller:
    """A test client acting as one principal."""

    client: FlaskClient
    label: str
    headers: dict[str, str] = field(default_factory=dict)

    def request(self, method: str, path: str, json: Any = None) -> Any:
        if isinstance(json, Upload):
            return self.upload(path, json.filename, json.content, **json.form)
        return self.client.open(path, method=method, json=json, headers=self.headers)

    def upload(self, path: str, filename: str, content: bytes, **form: str) -> Any:
        """POST a multipart form with ``content`` as its ``file`` part."""
        data: dict[str, Any] = {"file": (io.BytesIO(content), filename), **form}
        return self.client.post(
            path, data=data, headers=self.headers, content_type="multipart/form-data"
        )

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def post(self, path: str, json: Any = None) -> Any:
        return self.request("POST", path, json)

    def patch(self, path: str, json: Any = None) -> Any:
        return self.request("PATCH", path, json)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)


def anonymous(app: Flask) -> Caller:
    return Caller(app.test_client(), "anonymous")


def login(app: Flask, email: str, password: str = PASSWORD) -> Caller:
    """A caller logged in through the portal form, sending the CSRF header on writes."""
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    form_token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page)
    assert form_token is not None
    response = client.post(
        "/login",
        data={"email": email, "password": password, "csrf_token": form_token.group(1)},
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    me = client.get("/api/v1/me")
    assert me.status_code == 200
    return Caller(client, email, {"X-CSRFToken": me.json["csrf_token"]})


def fetch_token(app: Flask, client_id: str, secret: str, scope: str | None = None) -> Any:
    """POST the client-credentials grant with HTTP Basic client authentication."""
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    data = {"grant_type": "client_credentials"}
    if scope is not None:
        data["scope"] = scope
    return app.test_client().post(
        "/oauth/token", data=data, headers={"Authorization": f"Basic {basic}"}
    )


def bearer(app: Flask, client_id: str, secret: str, scope: str | None = None) -> Caller:
    response = fetch_token(app, client_id, secret, scope)
    assert response.status_code == 200, response.get_data(as_text=True)
    return Caller(
        app.test_client(),
        f"client {client_id}",
        {"Authorization": f"Bearer {response.json['access_token']}"},
    )


@dataclass
class TenantData:
    slug: str
    id: int
    case_ids: list[int]
    admin_email: str
    analyst_email: str
    admin_id: int
    client_pk: int
    client_id: str
    client_secret: str
    limited_client_id: str
    limited_client_secret: str


@dataclass
class World:
    app: Flask
    a: TenantData
    b: TenantData
    platform_admin_email: str
    agency_a_id: int
    agency_a_slug: str
    agency_b_id: int
    contract_a_id: int
    manager_email: str
    collector_email: str
    #: A second collector of agency A; no profile, so allocation never gives them a case.
    colleague_email: str
    outsider_manager_email: str
    external_ids: list[str]
    #: Path values of B's objects that other fixtures add (allocation, for one).
    hostile_ids: dict[str, str] = field(default_factory=dict)
    #: Values of A's objects that sample bodies of the isolation walk use.
    samples: dict[str, Any] = field(default_factory=dict)


def build_world(app: Flask) -> World:
    """Two tenants holding the same external ids; tenant B's names all carry ``B_MARK``."""
    db = platform(app).db
    cipher = PersonalDataCipher(platform(app).settings.data_key)
    tag = secrets.token_hex(3)
    today = dt.date.today()
    external_ids = [f"L-{n}" for n in range(1, 4)]
    session = db.session()
    tenants = {}
    for key, jurisdiction, zone, currency in (
        ("a", "CN", "Asia/Shanghai", "CNY"),
        ("b", "US", "America/New_York", "USD"),
    ):
        slug = f"{key}{B_MARK if key == 'b' else 'alpha'}{tag}"
        tenants[key] = clone_tenant(
            session,
            slug=slug,
            name=f"Tenant {slug}",
            jurisdiction=jurisdiction,
            timezone=zone,
            currency=currency,
        )
    agency_a = create_agency(session, slug=f"agency-a{tag}", name="Agency for A")
    agency_b = create_agency(session, slug=f"agency-{B_MARK}{tag}", name=f"Agency {B_MARK}")
    contract_a = create_agency_contract(
        session, tenant=tenants["a"], agency=agency_a, starts_on=today - dt.timedelta(days=30)
    )
    create_agency_contract(
        session, tenant=tenants["b"], agency=agency_b, starts_on=today - dt.timedelta(days=30)
    )
    platform_admin = f"root{tag}@platform.test"
    create_user(
        session, email=platform_admin, full_name="Root", password=PASSWORD, role=Role.PLATFORM_ADMIN
    )
    manager = f"manager{tag}@agency-a.test"
    collector = f"collector{tag}@agency-a.test"
    colleague = f"colleague{tag}@agency-a.test"
    outsider = f"manager{tag}@{B_MARK}.test"
    create_user(
        session,
        email=manager,
        full_name="Manager A",
        password=PASSWORD,
        role=Role.AGENCY_MANAGER,
        agency=agency_a,
    )
    create_user(
        session,
        email=collector,
        full_name="Collector A",
        password=PASSWORD,
        role=Role.COLLECTOR,
        agency=agency_a,
    )
    create_user(
        session,
        email=colleague,
        full_name="Colleague A",
        password=PASSWORD,
        role=Role.COLLECTOR,
        agency=agency_a,
    )
    create_user(
        session,
        email=outsider,
        full_name=f"Manager {B_MARK}",
        password=PASSWORD,
        role=Role.AGENCY_MANAGER,
        agency=agency_b,
    )
    data: dict[str, dict[str, Any]] = {}
    for key, tenant in tenants.items():
        mark = B_MARK if key == "b" else "alpha"
        admin = create_user(
            session,
            email=f"admin{tag}@{mark}.test",
            full_name=f"Admin {mark}",
            password=PASSWORD,
            role=Role.TENANT_ADMIN,
            tenant=tenant,
        )
        create_user(
            session,
            email=f"analyst{tag}@{mark}.test",
            full_name=f"Analyst {mark}",
            password=PASSWORD,
            role=Role.TENANT_ANALYST,
            tenant=tenant,
        )
        full = create_api_client(
            session,
            tenant=tenant,
            name=f"client {mark}",
            scopes=sorted(SCOPES),
            created_by=admin.id,
        )
        limited = create_api_client(
            session,
            tenant=tenant,
            name=f"limited {mark}",
            scopes=["tenant:read"],
            created_by=admin.id,
        )
        data[key] = {
            "admin_email": admin.email,
            "analyst_email": f"analyst{tag}@{mark}.test",
            "admin_id": admin.id,
            "client_pk": full.client.id,
            "client_id": full.client.client_id,
            "client_secret": full.client_secret,
            "limited_client_id": limited.client.client_id,
            "limited_client_secret": limited.client_secret,
        }
    session.commit()
    ids = {key: tenant.id for key, tenant in tenants.items()}
    slugs = {key: tenant.slug for key, tenant in tenants.items()}
    agency_ids = (agency_a.id, agency_b.id)
    agency_a_slug = agency_a.slug
    contract_a_id = contract_a.id
    session.close()

    case_ids: dict[str, list[int]] = {}
    for key in ("a", "b"):
        mark = B_MARK if key == "b" else "alpha"
        # B holds more cases, so some of B's case ids do not exist in A at all.
        count = 3 if key == "a" else 6
        with tenant_scope(slugs[key], db=db) as scoped:
            case_ids[key] = []
            for n in range(1, count + 1):
                case = open_case(
                    scoped,
                    cipher=cipher,
                    debtor_external_id=f"D-{n}",
                    full_name=f"Debtor {mark} {n}",
                    account_external_id=f"L-{n}",
                    currency="CNY" if key == "a" else "USD",
                    principal=Decimal("1000.00") * n,
                    due_date=today - dt.timedelta(days=10 * n),
                    national_id="11010519491231002X",
                )
                case_ids[key].append(case.id)
            # Mappings, files, sources and runs: B again holds more of each.
            tenant = scoped.info["tenant"]
            for n in range(1, (1 if key == "a" else 5) + 1):
                mapping = save_mapping(
                    scoped, name=f"walk-{n}", kind=FeedKind.PORTFOLIO, columns=WALK_COLUMNS
                )
                stored = store_file(
                    scoped, platform(app), filename="walk.csv", stream=io.BytesIO(WALK_CSV)
                )
                start_run(
                    scoped,
                    platform(app),
                    tenant=tenant,
                    mapping=mapping,
                    file=stored,
                    enqueue=False,
                )
                register_source(
                    scoped,
                    platform(app),
                    name=f"walk-{n}",
                    options={"url": "https://lender.test/loans"},
                )

    def tenant_data(key: str) -> TenantData:
        return TenantData(slug=slugs[key], id=ids[key], case_ids=case_ids[key], **data[key])

    return World(
        app=app,
        a=tenant_data("a"),
        b=tenant_data("b"),
        platform_admin_email=platform_admin,
        agency_a_id=agency_ids[0],
        agency_a_slug=agency_a_slug,
        agency_b_id=agency_ids[1],
        contract_a_id=contract_a_id,
        manager_email=manager,
        collector_email=collector,
        colleague_email=colleague,
        outsider_manager_email=outsider,
        external_ids=external_ids,
    )
