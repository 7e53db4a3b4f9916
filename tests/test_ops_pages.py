"""The platform operator's pages: tenants, agencies and contracts, staff, background jobs."""

from __future__ import annotations

import datetime as dt
import re
import secrets
import signal
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from flask import Flask
from rq import Queue, SimpleWorker
from rq.executions import Execution
from rq.serializers import JSONSerializer
from sqlalchemy import func, select, text

from recova.platform.agencies.contracts import AgencyContract
from recova.platform.agencies.models import Agency, AgencyStatus
from recova.platform.auth.models import Membership, Role, User
from recova.platform.kernel.extension import platform
from recova.platform.kernel.jobs import job_queue
from recova.platform.kernel.outbox import write_outbox_job
from recova.tenants.models import Tenant, TenantStatus
from tests.support import PASSWORD, Caller, World, anonymous, login, unique

TOKEN = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
#: A real job of Recova's, asked to work for a tenant that does not exist: it fails.
FAILING_JOB = "recova.platform.cases.jobs.refresh_days_past_due_job"
NO_TENANT = 987_654_321


def _root(world: World) -> Caller:
    return login(world.app, world.platform_admin_email)


def _token(caller: Caller, path: str) -> str:
    page = caller.client.get(path, follow_redirects=True).get_data(as_text=True)
    found = TOKEN.search(page)
    assert found is not None, page
    return found.group(1)


def _post(caller: Caller, path: str, data: dict[str, Any], page: str | None = None) -> Any:
    """POST a form as the page would, with the CSRF token read from ``page``."""
    token = _token(caller, page or path)
    return caller.client.post(path, data={**data, "csrf_token": token})


def _html(response: Any) -> str:
    return str(response.get_data(as_text=True))


def _one(app: Flask, statement: Any) -> Any:
    with platform(app).db.session() as session:
        found = session.scalar(statement)
        if found is not None and hasattr(found, "_sa_instance_state"):
            session.expunge(found)
        return found


# --- navigation and home ---------------------------------------------------------------


def test_home_sends_a_platform_admin_to_the_tenants_page_with_the_operator_navigation(
    world: World,
) -> None:
    root = _root(world)

    home = root.client.get("/")
    assert home.status_code == 302
    assert home.headers["Location"] == "/ops/tenants"

    html = _html(root.client.get("/ops/tenants"))
    assert world.a.slug in html
    assert world.b.slug in html
    assert 'aria-current="page" class="current">Tenants' in html
    for label in ("Agencies", "Users", "Background jobs"):
        assert f">{label}</a>" in html
    assert "/portal/" not in html  # no tenant portal section for the operator


def test_the_tenant_portal_navigation_is_unchanged_for_a_tenant_admin(world: World) -> None:
    html = _html(login(world.app, world.a.admin_email).client.get(f"/portal/{world.a.slug}/"))

    assert 'class="current">Overview' in html
    assert "/ops/" not in html


# --- tenants ---------------------------------------------------------------------------


def _tenant_form(**fields: str) -> dict[str, str]:
    return {
        "slug": unique("ops-"),
        "name": "Ops Lender",
        "jurisdiction": "US",
        "timezone": "America/Chicago",
        "currency": "usd",
        **fields,
    }


def test_provisioning_a_tenant_creates_its_row_and_schema(world: World) -> None:
    root = _root(world)
    data = _tenant_form(name="华东小贷")

    response = _post(root, "/ops/tenants", data)

    assert response.status_code == 302, _html(response)
    assert response.headers["Location"] == "/ops/tenants"
    tenant = _one(world.app, select(Tenant).where(Tenant.slug == data["slug"]))
    assert tenant is not None
    assert (tenant.name, tenant.jurisdiction.value, tenant.timezone, tenant.currency) == (
        "华东小贷",
        "US",
        "America/Chicago",
        "USD",
    )
    assert tenant.status is TenantStatus.ACTIVE
    schema = _one(
        world.app,
        text("SELECT nspname FROM pg_namespace WHERE nspname = :s").bindparams(
            s=tenant.schema_name
        ),
    )
    assert schema == tenant.schema_name
    # Its tables are there: the tenant migration history ran.
    cases = _one(world.app, text(f"SELECT count(*) FROM {tenant.schema_name}.cases"))
    assert cases == 0
    # The list pages by slug; other tests' tenants may fill the first page, so ask for
    # the page that starts just before this slug (a prefix sorts before the whole).
    page = _html(root.client.get(f"/ops/tenants?after={data['slug'][:-1]}"))
    assert data["slug"] in page
    assert "华东小贷" in page


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"slug": "Bad Slug!"}, "slug", "Use lowercase letters, digits and single hyphens"),
        ({"slug": "pg-internal"}, "slug", "not starting with pg-"),
        ({"slug": ""}, "slug", "This field is required."),
        ({"timezone": "Mars/Olympus"}, "timezone", "Enter an IANA time zone"),
        ({"currency": "1a"}, "currency", "three-letter ISO 4217 code"),
        ({"currency": "DOLLAR"}, "currency", "At most 3 characters."),
        ({"name": ""}, "name", "This field is required."),
    ],
)
def test_a_refused_tenant_shows_the_reason_beside_its_field_and_keeps_the_input(
    world: World, fields: dict[str, str], field: str, message: str
) -> None:
    root = _root(world)
    data = _tenant_form(**{"name": "Kept Name Ltd", "timezone": "America/Chicago", **fields})
    tenants = _one(world.app, select(func.count()).select_from(Tenant))

    response = _post(root, "/ops/tenants", data)

    assert response.status_code == 422
    html = _html(response)
    error = re.search(rf'id="{field}-error">([^<]*)<', html)
    assert error is not None, html
    assert message in error.group(1)
    assert f'id="{field}"' in html
    assert 'aria-invalid="true"' in html
    for name in ("name", "timezone", "slug"):
        if data[name]:
            assert f'value="{data[name]}"' in html.replace("&#34;", '"')
    assert _one(world.app, select(func.count()).select_from(Tenant)) == tenants  # nothing made


def test_a_taken_slug_is_refused_beside_the_slug_in_any_case(world: World) -> None:
    root = _root(world)

    for slug in (world.a.slug, world.a.slug.upper()):
        response = _post(root, "/ops/tenants", _tenant_form(slug=slug))
        assert response.status_code == 422
        html = _html(response)
        assert "This slug is taken" in html
        assert f'value="{slug}"' in html


def test_disabling_a_tenant_refuses_its_staff_and_enabling_lets_them_back(world: World) -> None:
    root = _root(world)
    admin = login(world.app, world.a.admin_email)
    portal = f"/portal/{world.a.slug}/"
    assert admin.client.get(portal).status_code == 200

    disabled = _post(
        root, f"/ops/tenants/{world.a.slug}/status", {"status": "disabled"}, "/ops/tenants"
    )

    assert disabled.status_code == 302
    tenant = _one(world.app, select(Tenant).where(Tenant.id == world.a.id))
    assert tenant.status is TenantStatus.DISABLED
    assert tenant.disabled_at is not None
    refused = admin.client.get(portal)
    assert refused.status_code == 302  # their session no longer counts: sign in again
    assert refused.headers["Location"].startswith("/login")
    page = _html(root.client.get("/ops/tenants"))
    assert "is disabled" in page
    assert f"Enable {world.a.slug} again?" in page  # the button asks first

    enabled = _post(
        root, f"/ops/tenants/{world.a.slug}/status", {"status": "active"}, "/ops/tenants"
    )

    assert enabled.status_code == 302
    tenant = _one(world.app, select(Tenant).where(Tenant.id == world.a.id))
    assert tenant.status is TenantStatus.ACTIVE
    assert login(world.app, world.a.admin_email).client.get(portal).status_code == 200


def test_a_status_change_of_an_unknown_tenant_is_404_and_a_bad_status_400(world: World) -> None:
    root = _root(world)

    assert (
        _post(
            root, "/ops/tenants/nosuchtenant/status", {"status": "disabled"}, "/ops/tenants"
        ).status_code
        == 404
    )
    assert (
        _post(
            root, f"/ops/tenants/{world.a.slug}/status", {"status": "deleted"}, "/ops/tenants"
        ).status_code
        == 400
    )


# --- agencies and contracts ------------------------------------------------------------


def test_registering_an_agency_then_suspending_and_activating_it(world: World) -> None:
    root = _root(world)
    slug = unique("east-")

    created = _post(root, "/ops/agencies", {"slug": slug, "name": "华东催收"})

    assert created.status_code == 302
    agency = _one(world.app, select(Agency).where(Agency.slug == slug))
    assert agency.name == "华东催收"
    assert created.headers["Location"] == f"/ops/agencies/{agency.id}"
    listed = _html(root.client.get("/ops/agencies"))
    assert slug in listed
    assert "华东催收" in listed

    suspend = _post(
        root, f"/ops/agencies/{agency.id}/status", {"status": "suspended"}, "/ops/agencies"
    )
    assert suspend.status_code == 302
    assert _one(world.app, select(Agency.status).where(Agency.id == agency.id)) is (
        AgencyStatus.SUSPENDED
    )
    activate = _post(
        root,
        f"/ops/agencies/{agency.id}/status",
        {"status": "active", "back": "list"},
        "/ops/agencies",
    )
    assert activate.headers["Location"] == "/ops/agencies"
    assert _one(world.app, select(Agency.status).where(Agency.id == agency.id)) is (
        AgencyStatus.ACTIVE
    )


@pytest.mark.parametrize(
    ("slug", "message"),
    [
        ("Not A Slug", "Use lowercase letters, digits and single hyphens"),
        (None, "An agency with this slug already exists."),
        ("", "This field is required."),
    ],
)
def test_a_refused_agency_shows_the_reason_beside_the_slug(
    world: World, slug: str | None, message: str
) -> None:
    root = _root(world)
    slug = world.agency_a_slug if slug is None else slug

    response = _post(root, "/ops/agencies", {"slug": slug, "name": "Kept Agency Name"})

    assert response.status_code == 422
    html = _html(response)
    error = re.search(r'id="slug-error">([^<]*)<', html)
    assert error is not None
    assert message in error.group(1)
    assert 'value="Kept Agency Name"' in html


def test_the_agency_page_lists_its_contracts_and_staff(world: World) -> None:
    html = _html(_root(world).client.get(f"/ops/agencies/{world.agency_a_id}"))

    assert world.a.slug in html
    assert world.b.slug not in html.split("tenant-slugs")[0]  # B's pair is agency B's
    assert "Open-ended" in html
    assert world.manager_email in html
    assert world.collector_email in html
    assert 'class="current">Agencies' in html


def _contract_form(world: World, **fields: str) -> dict[str, str]:
    return {
        "tenant": world.b.slug,
        "starts_on": "2031-01-01",
        "ends_on": "2031-07-01",
        "placement_days": "45",
        "grace_days": "7",
        "payout_share": "12.5",
        **fields,
    }


def test_a_contract_is_created_with_its_dates_and_payout(world: World) -> None:
    root = _root(world)
    path = f"/ops/agencies/{world.agency_a_id}"

    response = _post(root, f"{path}/contracts", _contract_form(world), path)

    assert response.status_code == 302, _html(response)
    contract = _one(
        world.app,
        select(AgencyContract).where(
            AgencyContract.agency_id == world.agency_a_id, AgencyContract.tenant_id == world.b.id
        ),
    )
    assert (contract.starts_on, contract.ends_on) == (dt.date(2031, 1, 1), dt.date(2031, 7, 1))
    assert (contract.placement_days, contract.grace_days) == (45, 7)
    assert (contract.payout_mode, contract.payout_share) == ("share", Decimal("12.5"))
    html = _html(root.client.get(path))
    assert "12.5% of the commission" in html
    assert "is contracted to" in html


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"tenant": "a"}, "starts_on", "overlapping these dates"),  # A's contract is open-ended
        ({"ends_on": "2030-12-01"}, "ends_on", "The end must be after the start."),
        ({"tenant": "no-such-tenant"}, "tenant", "There is no tenant with this slug."),
        ({"starts_on": "31/01/2031"}, "starts_on", "Enter a date such as 2026-01-31."),
        ({"placement_days": "0"}, "placement_days", "Enter a number from 1 to 3650."),
        ({"payout_share": "120"}, "payout_share", "Enter a number from 0 to 100."),
        ({"payout_share": "lots"}, "payout_share", "Enter a number such as 12.5."),
    ],
)
def test_a_refused_contract_shows_the_reason_beside_its_field_and_keeps_the_input(
    world: World, fields: dict[str, str], field: str, message: str
) -> None:
    root = _root(world)
    path = f"/ops/agencies/{world.agency_a_id}"
    if fields.get("tenant") == "a":
        fields = {**fields, "tenant": world.a.slug}
    data = _contract_form(world, **fields)
    before = _one(world.app, select(func.count()).select_from(AgencyContract))

    response = _post(root, f"{path}/contracts", data, path)

    assert response.status_code == 422
    html = _html(response)
    error = re.search(rf'id="{field}-error">([^<]*)<', html)
    assert error is not None, html
    assert message in error.group(1)
    assert f'value="{data["tenant"]}"' in html
    assert f'value="{data["grace_days"]}"' in html
    assert _one(world.app, select(func.count()).select_from(AgencyContract)) == before


def test_an_unknown_agency_is_404(world: World) -> None:
    root = _root(world)

    assert root.client.get("/ops/agencies/987654").status_code == 404
    path = f"/ops/agencies/{world.agency_a_id}"
    assert (
        _post(root, "/ops/agencies/987654/contracts", _contract_form(world), path).status_code
        == 404
    )


# --- users -----------------------------------------------------------------------------


def _user_form(world: World, **fields: str) -> dict[str, str]:
    return {
        "email": f"{unique('staff')}@agency-a.test",
        "full_name": "王 五",
        "role": "collector",
        "agency": world.agency_a_slug,
        "locale": "zh_CN",
        "password": PASSWORD,
        **fields,
    }


def test_the_users_page_lists_operators_and_agency_staff_but_no_tenant_users(
    world: World,
) -> None:
    html = _html(_root(world).client.get("/ops/users"))

    assert world.platform_admin_email in html
    assert world.manager_email in html
    assert world.outsider_manager_email in html
    assert world.a.admin_email not in html
    assert world.a.analyst_email not in html

    one_agency = _html(_root(world).client.get(f"/ops/users?agency={world.agency_a_id}"))
    assert world.manager_email in one_agency
    assert world.outsider_manager_email not in one_agency
    assert world.platform_admin_email not in one_agency.split("<table>")[1].split("</table>")[0]


def test_creating_a_collector_for_an_agency_who_can_then_sign_in(world: World) -> None:
    root = _root(world)
    data = _user_form(world)

    response = _post(root, f"/ops/users?agency={world.agency_a_id}", data)

    assert response.status_code == 302, _html(response)
    assert response.headers["Location"] == f"/ops/users?agency={world.agency_a_id}"
    user = _one(world.app, select(User).where(User.email == data["email"]))
    membership = _one(world.app, select(Membership).where(Membership.user_id == user.id))
    assert (membership.role, membership.agency_id, membership.tenant_id) == (
        Role.COLLECTOR,
        world.agency_a_id,
        None,
    )
    assert user.locale == "zh_CN"
    collector = login(world.app, data["email"])
    assert collector.client.get("/ops/users").status_code == 403


def test_creating_another_platform_operator(world: World) -> None:
    root = _root(world)
    data = _user_form(world, role="platform_admin", agency="", locale="en")

    response = _post(root, "/ops/users", data)

    assert response.status_code == 302, _html(response)
    operator = login(world.app, data["email"])
    assert operator.client.get("/").headers["Location"] == "/ops/tenants"


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"agency": ""}, "agency", "Name the agency of a manager or collector."),
        ({"role": "platform_admin"}, "agency", "belongs to no agency"),
        ({"agency": "no-such-agency"}, "agency", "There is no agency with this slug."),
        ({"email": "not-an-email"}, "email", "Enter an e-mail address"),
        ({"email": "TAKEN"}, "email", "A user with this e-mail already exists."),
        ({"password": "short"}, "password", "At least 10 characters."),
        ({"role": "tenant_admin"}, "role", "Not a valid choice"),
    ],
)
def test_a_refused_user_shows_the_reason_beside_its_field_and_keeps_the_input(
    world: World, fields: dict[str, str], field: str, message: str
) -> None:
    root = _root(world)
    if fields.get("email") == "TAKEN":
        fields = {**fields, "email": world.manager_email.upper()}
    data = _user_form(world, full_name="Kept Person", **fields)
    before = _one(world.app, select(func.count()).select_from(User))

    response = _post(root, "/ops/users", data)

    assert response.status_code == 422
    html = _html(response)
    error = re.search(rf'id="{field}-error">([^<]*)<', html)
    assert error is not None, html
    assert message in error.group(1)
    assert 'value="Kept Person"' in html
    assert f'value="{data["email"]}"' in html
    assert _one(world.app, select(func.count()).select_from(User)) == before


def test_deactivating_and_reactivating_agency_staff(world: World) -> None:
    root = _root(world)
    collector = login(world.app, world.collector_email)
    user_id = _one(world.app, select(User.id).where(User.email == world.collector_email))

    response = _post(root, f"/ops/users/{user_id}/active", {"active": "0"}, "/ops/users")

    assert response.status_code == 302
    assert _one(world.app, select(User.is_active).where(User.id == user_id)) is False
    assert collector.client.get("/api/v1/me").status_code == 401  # signed out at once
    assert "is deactivated and signed out" in _html(root.client.get("/ops/users"))

    _post(root, f"/ops/users/{user_id}/active", {"active": "1"}, "/ops/users")
    assert _one(world.app, select(User.is_active).where(User.id == user_id)) is True


def test_an_operator_cannot_deactivate_their_own_login_nor_a_tenants_user(world: World) -> None:
    root = _root(world)
    me = _one(world.app, select(User.id).where(User.email == world.platform_admin_email))

    own = _post(root, f"/ops/users/{me}/active", {"active": "0"}, "/ops/users")

    assert own.status_code == 302
    assert _one(world.app, select(User.is_active).where(User.id == me)) is True
    assert "You cannot deactivate your own login." in _html(root.client.get("/ops/users"))
    tenant_user = _post(
        root, f"/ops/users/{world.a.admin_id}/active", {"active": "0"}, "/ops/users"
    )
    assert tenant_user.status_code == 404
    assert _one(world.app, select(User.is_active).where(User.id == world.a.admin_id)) is True


# --- background jobs -------------------------------------------------------------------


def _queue(app: Flask, name: str = "default") -> Queue:
    objects = platform(app)
    return job_queue(objects.redis, name, prefix=objects.settings.queue_prefix)


def _work(app: Flask, queue: Queue) -> None:
    """Run the queue dry in this process, as ``recova worker --burst`` would."""
    saved = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        with app.app_context():
            SimpleWorker([queue], connection=queue.connection, serializer=JSONSerializer).work(
                burst=True, with_scheduler=False
            )
    finally:
        for number, handler in saved.items():  # RQ installs its own; give pytest its back
            signal.signal(number, handler)


@pytest.fixture(autouse=True)
def _no_failed_jobs_left(app: Flask) -> Iterator[None]:
    """The failed jobs a test makes are its own: other tests on this worker's queues expect
    none (they check that their jobs did not fail)."""
    yield
    queue = _queue(app)
    registry = queue.failed_job_registry
    for job_id in registry.get_job_ids():
        if job_id.startswith("ops-test-"):
            registry.remove(job_id, delete_job=True)
    for job_id in queue.job_ids:
        if job_id.startswith("ops-test-"):
            queue.remove(job_id)


def _failing_job(app: Flask) -> tuple[Queue, str]:
    """A real job that fails for real in a burst worker (its tenant does not exist)."""
    queue = _queue(app)
    job_id = f"ops-test-{secrets.token_hex(4)}"
    queue.enqueue(
        FAILING_JOB, kwargs={"tenant_id": NO_TENANT, "as_of": "2030-01-01"}, job_id=job_id
    )
    _work(app, queue)
    assert job_id in queue.failed_job_registry
    return queue, job_id


def _failed_row(html: str, job_id: str) -> str:
    rows = [row for row in html.split("<tr>") if job_id in row]
    assert rows, html
    return rows[0]


def test_a_failed_job_is_shown_with_its_error_and_traceback_then_retried(world: World) -> None:
    root = _root(world)
    queue, job_id = _failing_job(world.app)

    page = _html(root.client.get("/ops/jobs"))

    row = _failed_row(page, job_id)
    assert f'<p class="job-error">LookupError: no tenant {NO_TENANT}</p>' in row
    assert "<details" in row
    assert "Traceback (most recent call last)" in row
    assert FAILING_JOB in row
    assert "refresh_days_past_due" in row
    assert re.search(
        r"<td><code class=\"tag\">default</code></td>\s*<td class=\"num\">0</td>", page
    )

    retried = _post(root, "/ops/jobs/retry", {"queue": "default", "job_id": job_id}, "/ops/jobs")

    assert retried.status_code == 302
    assert job_id not in queue.failed_job_registry
    assert job_id in queue.get_job_ids()  # back on its queue
    after = _html(root.client.get("/ops/jobs"))
    assert "is back on the default queue" in after
    assert job_id not in after.split('id="failed"')[1]

    _work(world.app, queue)  # it runs again, and fails again for the same reason

    assert job_id in queue.failed_job_registry
    assert f"no tenant {NO_TENANT}" in _failed_row(_html(root.client.get("/ops/jobs")), job_id)


def test_deleting_a_failed_job_removes_it_and_its_record(world: World) -> None:
    root = _root(world)
    queue, job_id = _failing_job(world.app)

    response = _post(root, "/ops/jobs/delete", {"queue": "default", "job_id": job_id}, "/ops/jobs")

    assert response.status_code == 302
    assert job_id not in queue.failed_job_registry
    assert not queue.connection.exists(f"rq:job:{job_id}")
    assert "is deleted" in _html(root.client.get("/ops/jobs"))


def test_retrying_a_job_that_is_not_failed_changes_nothing(world: World) -> None:
    root = _root(world)
    queue = _queue(world.app)
    job = queue.enqueue(FAILING_JOB, kwargs={"tenant_id": NO_TENANT, "as_of": "2030-01-01"})

    for data in (
        {"queue": "default", "job_id": job.id},  # queued, not failed
        {"queue": "nosuchqueue", "job_id": job.id},
        {"queue": "default", "job_id": "no-such-job"},
    ):
        response = _post(root, "/ops/jobs/retry", data, "/ops/jobs")
        assert response.status_code == 302
        assert "no longer among the failed jobs" in _html(root.client.get("/ops/jobs"))
    assert queue.get_job_ids().count(job.id) == 1


def test_the_counts_and_running_jobs_per_queue(world: World) -> None:
    root = _root(world)
    queue = _queue(world.app, "billing")
    queued = [
        queue.enqueue(FAILING_JOB, kwargs={"tenant_id": NO_TENANT, "as_of": "2030-01-01"})
        for _ in range(3)
    ]
    running = queued[0]
    queue.connection.lrem(queue.key, 0, running.id)
    with queue.connection.pipeline() as pipe:
        running.prepare_for_execution("worker-ops-test", pipe)  # as a worker starting it does
        Execution.create(running, ttl=600, pipeline=pipe, worker_name="worker-ops-test")
        pipe.execute()

    page = _html(root.client.get("/ops/jobs"))

    counts = re.search(
        r'<code class="tag">billing</code></td>\s*'
        r'<td class="num">(\d+)</td>\s*<td class="num">(\d+)</td>',
        page,
    )
    assert counts is not None
    assert counts.groups() == ("2", "1")
    live = _html(root.client.get("/ops/jobs/live", headers={"HX-Request": "true"}))
    assert "<html" not in live  # the fragment alone
    assert running.id in live
    assert "worker-ops-test" in live
    assert queued[1].id not in live  # queued, not running


def test_the_outbox_rows_waiting_for_rq_are_counted(world: World) -> None:
    root = _root(world)

    def waiting() -> int:
        html = _html(root.client.get("/ops/jobs"))
        found = re.search(r'Outbox rows waiting for RQ</div><div class="figure">([\d,]+)<', html)
        assert found is not None, html
        return int(found.group(1).replace(",", ""))

    before = waiting()
    with platform(world.app).db.session() as session:
        write_outbox_job(
            session,
            queue="nowhere",
            func_path=FAILING_JOB,
            kwargs={},
            options={},
            job_id=None,
            job_id_prefix="",
        )
        session.commit()

    assert waiting() == before + 1


# --- access ----------------------------------------------------------------------------

GETS = ("/ops/tenants", "/ops/agencies", "/ops/users", "/ops/jobs", "/ops/jobs/live")


def _posts(world: World) -> list[tuple[str, dict[str, str]]]:
    return [
        ("/ops/tenants", _tenant_form()),
        (f"/ops/tenants/{world.a.slug}/status", {"status": "disabled"}),
        ("/ops/agencies", {"slug": unique("refused-"), "name": "Refused"}),
        (f"/ops/agencies/{world.agency_a_id}/status", {"status": "suspended"}),
        (f"/ops/agencies/{world.agency_a_id}/contracts", _contract_form(world)),
        ("/ops/users", _user_form(world)),
        (f"/ops/users/{world.a.admin_id}/active", {"active": "0"}),
        ("/ops/jobs/retry", {"queue": "default", "job_id": "x"}),
        ("/ops/jobs/delete", {"queue": "default", "job_id": "x"}),
    ]


def _everything(app: Flask) -> tuple[Any, ...]:
    with platform(app).db.session() as session:
        return (
            session.scalar(select(func.count()).select_from(Tenant)),
            tuple(session.scalars(select(Tenant.status).order_by(Tenant.id))),
            session.scalar(select(func.count()).select_from(Agency)),
            tuple(session.scalars(select(Agency.status).order_by(Agency.id))),
            session.scalar(select(func.count()).select_from(AgencyContract)),
            session.scalar(select(func.count()).select_from(User)),
            session.scalar(select(func.count()).select_from(User).where(User.is_active)),
        )


@pytest.mark.parametrize("who", ["a_admin", "a_analyst", "manager", "collector"])
def test_everyone_but_the_platform_operator_is_refused(world: World, who: str) -> None:
    email = {
        "a_admin": world.a.admin_email,
        "a_analyst": world.a.analyst_email,
        "manager": world.manager_email,
        "collector": world.collector_email,
    }[who]
    caller = login(world.app, email)
    before = _everything(world.app)

    for path in GETS:
        assert caller.client.get(path).status_code == 403, path
    token = _token(caller, "/")
    for path, data in _posts(world):
        response = caller.client.post(path, data={**data, "csrf_token": token})
        assert response.status_code == 403, path
    assert _everything(world.app) == before


def test_anonymous_visitors_are_sent_to_sign_in_and_their_posts_refused(world: World) -> None:
    visitor = anonymous(world.app)
    before = _everything(world.app)

    for path in GETS[:-1]:
        response = visitor.client.get(path)
        assert response.status_code == 302, path
        assert response.headers["Location"].startswith(f"/login?next={path}")
    token = _token(visitor, "/login")
    for path, data in _posts(world):
        response = visitor.client.post(path, data={**data, "csrf_token": token})
        assert response.status_code == 401, path
    assert _everything(world.app) == before
