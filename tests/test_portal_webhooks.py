"""The portal's webhooks pages: registering endpoints (with field errors that keep the
input), the secret shown once and never cached, editing, enabling and disabling, rotating,
test events, deleting, the delivery log with its attempts and replays, and who may do what
(analysts read, agency staff and other tenants reach nothing)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from typing import Any

import pytest
from rq import SimpleWorker
from rq.serializers import JSONSerializer
from sqlalchemy import func, select
from standardwebhooks import Webhook

from recova.platform.kernel.extension import Platform, platform
from recova.platform.kernel.jobs import job_queue
from recova.platform.web.portal.webhooks import EVENT_GROUPS, EVENT_LABELS, LOG_PAGE
from recova.platform.webhooks.events import SUBSCRIBABLE
from recova.platform.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from recova.platform.webhooks.signing import new_secret, open_secret, seal_secret
from recova.tenants.scope import tenant_scope
from tests.support import B_MARK, Caller, World, anonymous, login
from tests.webhook_support import PUBLIC_URL, Receiver

SECRET = re.compile(r"whsec_[A-Za-z0-9+/=]{40,}")


def _csrf(caller: Caller, path: str) -> str:
    page = caller.client.get(path).get_data(as_text=True)
    found = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page)
    assert found is not None, page
    return found.group(1)


def _post(caller: Caller, path: str, data: dict[str, Any], token_from: str) -> Any:
    return caller.client.post(path, data={**data, "csrf_token": _csrf(caller, token_from)})


def _base(world: World, tenant: str = "a") -> str:
    return f"/portal/{getattr(world, tenant).slug}/webhooks"


def _endpoint(objects: Platform, slug: str, **values: Any) -> int:
    """An endpoint stored directly (no URL check), disabled unless told otherwise."""
    with tenant_scope(slug, db=objects.db) as session:
        endpoint = WebhookEndpoint(
            url=values.pop("url", PUBLIC_URL),
            event_types=values.pop("event_types", ["invoice.issued"]),
            description=values.pop("description", "stored"),
            enabled=values.pop("enabled", False),
            secret_ciphertext=seal_secret(objects.cipher, new_secret()),
            created_by="job:test",
            **values,
        )
        session.add(endpoint)
        session.flush()
        return endpoint.id


def _deliveries(objects: Platform, slug: str, endpoint_id: int, count: int) -> list[int]:
    with tenant_scope(slug, db=objects.db) as session:
        rows = [
            WebhookDelivery(
                endpoint_id=endpoint_id,
                event_id=f"evt_page_{n}",
                event_type="invoice.issued",
                body='{"type":"invoice.issued","timestamp":"2026-11-30T00:00:00Z","data":{}}',
                status="delivered" if n % 2 else "failed",
                attempts=1,
                attempts_left=9,
                response_status=200 if n % 2 else 500,
                latency_ms=40 + n,
            )
            for n in range(count)
        ]
        session.add_all(rows)
        session.flush()
        return [row.id for row in rows]


def _stored(objects: Platform, slug: str, endpoint_id: int) -> WebhookEndpoint | None:
    with tenant_scope(slug, db=objects.db) as session:
        endpoint = session.get(WebhookEndpoint, endpoint_id)
        if endpoint is not None:
            session.expunge(endpoint)
        return endpoint


# --- registering ----------------------------------------------------------------------------


def test_registering_shows_the_secret_once_and_never_caches_it(world: World) -> None:
    admin = login(world.app, world.a.admin_email)
    base = _base(world)
    listing = admin.client.get(base)
    assert listing.status_code == 200
    page = listing.get_data(as_text=True)
    assert "No endpoint is registered" in page
    # Every event type is offered as a checkbox, under its family.
    for name in SUBSCRIBABLE:
        assert f'value="{name}"' in page
    assert 'value="webhook.test"' not in page

    created = _post(
        admin,
        base,
        {
            "url": PUBLIC_URL,
            "description": "Core banking",
            "event_types": ["promise.kept", "invoice.issued"],
        },
        base,
    )

    assert created.status_code == 200
    assert created.headers["Cache-Control"] == "no-store"
    body = created.get_data(as_text=True)
    [secret] = SECRET.findall(body)
    assert "only time it is shown" in body
    objects = platform(world.app)
    with tenant_scope(world.a.slug, db=objects.db) as session:
        endpoint = session.scalars(select(WebhookEndpoint)).one()
        assert endpoint.event_types == ["invoice.issued", "promise.kept"]
        assert endpoint.description == "Core banking"
        assert endpoint.created_by.startswith("user:")
        assert open_secret(objects.cipher, endpoint.secret_ciphertext) == secret
        endpoint_id = endpoint.id
    # Never again: not in the list, the endpoint's page, or a second look.
    again = admin.client.get(base).get_data(as_text=True)
    assert secret not in again
    assert not SECRET.search(again)
    assert PUBLIC_URL in again
    assert "Active" in again
    assert "None yet" in again
    detail = admin.client.get(f"{base}/{endpoint_id}").get_data(as_text=True)
    assert not SECRET.search(detail)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://10.1.2.3/hooks", "private or reserved network"),
        ("https://127.0.0.1/hooks", "private or reserved network"),
        ("https://localhost/hooks", "private or reserved network"),
        ("http://93.184.215.14/hooks", "must start with https://"),
        ("https://user:pw@93.184.215.14/hooks", "user name or password"),
        ("", "This field is required."),
    ],
)
def test_a_refused_url_is_named_beside_its_field_and_the_input_stays(
    world: World, url: str, message: str
) -> None:
    admin = login(world.app, world.a.admin_email)
    base = _base(world)

    refused = _post(
        admin,
        base,
        {"url": url, "description": "Keep me", "event_types": ["promise.kept", "plan.broken"]},
        base,
    )

    assert refused.status_code == 422
    page = refused.get_data(as_text=True)
    error = re.search(r'<p class="field-error" id="url-error">([^<]+)</p>', page)
    assert error is not None, page
    assert message in error.group(1)
    assert 'aria-invalid="true"' in page
    assert f'value="{url}"' in page or not url
    assert 'value="Keep me"' in page
    assert re.search(r'value="promise.kept" checked', page)
    assert re.search(r'value="plan.broken" checked', page)
    assert not re.search(r'value="case.placed" checked', page)
    assert not SECRET.search(page)
    objects = platform(world.app)
    with tenant_scope(world.a.slug, db=objects.db) as session:
        assert session.scalar(select(func.count()).select_from(WebhookEndpoint)) == 0


def test_event_types_are_required_and_must_be_known(world: World) -> None:
    admin = login(world.app, world.a.admin_email)
    base = _base(world)

    none = _post(admin, base, {"url": PUBLIC_URL, "description": "x"}, base)
    unknown = _post(admin, base, {"url": PUBLIC_URL, "event_types": ["case.exploded"]}, base)

    assert none.status_code == 422
    assert "Choose at least one event type." in none.get_data(as_text=True)
    assert f'value="{PUBLIC_URL}"' in none.get_data(as_text=True)
    assert unknown.status_code == 422
    assert 'id="event_types-error"' in unknown.get_data(as_text=True)


def test_every_event_type_has_a_family_and_a_label() -> None:
    assert {name.split(".", 1)[0] for name in SUBSCRIBABLE} <= set(EVENT_GROUPS)
    assert set(SUBSCRIBABLE) <= set(EVENT_LABELS)


# --- the endpoint's page ----------------------------------------------------------------------


def test_an_endpoint_is_edited_disabled_enabled_rotated_tested_and_deleted(world: World) -> None:
    objects = platform(world.app)
    endpoint_id = _endpoint(objects, world.a.slug, enabled=True)
    admin = login(world.app, world.a.admin_email)
    page = f"{_base(world)}/{endpoint_id}"

    # Edit: a refused URL keeps the input beside its field and changes nothing.
    refused = _post(
        admin,
        page,
        {"url": "https://10.0.0.9/x", "description": "new words", "event_types": ["case.placed"]},
        page,
    )
    assert refused.status_code == 422
    text = refused.get_data(as_text=True)
    assert "private or reserved network" in text
    assert 'value="new words"' in text
    assert 'value="case.placed" checked' in text
    stored = _stored(objects, world.a.slug, endpoint_id)
    assert stored is not None
    assert stored.description == "stored"
    assert stored.url == PUBLIC_URL
    saved = _post(
        admin,
        page,
        {
            "url": PUBLIC_URL,
            "description": "Ledger sync",
            "event_types": ["payment.attributed", "case.placed"],
        },
        page,
    )
    assert saved.status_code == 302
    stored = _stored(objects, world.a.slug, endpoint_id)
    assert stored is not None
    assert stored.description == "Ledger sync"
    assert stored.event_types == ["case.placed", "payment.attributed"]
    assert "The endpoint was saved." in admin.client.get(page).get_data(as_text=True)

    # Disable: the badge says so and why; a test event is then refused on the page.
    assert _post(admin, f"{page}/state", {}, page).status_code == 302
    disabled = admin.client.get(page).get_data(as_text=True)
    assert "Disabled" in disabled
    assert "Disabled by a tenant admin" in disabled
    tested = _post(admin, f"{page}/test", {}, page)
    assert tested.status_code == 409
    assert "enable it before sending a test event" in tested.get_data(as_text=True)
    assert _post(admin, f"{page}/state", {"enabled": "y"}, page).status_code == 302
    stored = _stored(objects, world.a.slug, endpoint_id)
    assert stored is not None
    assert stored.enabled

    # A test event: its delivery is in the log.
    assert _post(admin, f"{page}/test", {}, page).status_code == 302
    log = admin.client.get(page).get_data(as_text=True)
    assert "webhook.test" in log
    assert "A test event was queued" in log
    with tenant_scope(world.a.slug, db=objects.db) as session:
        [test_delivery] = session.scalars(select(WebhookDelivery)).all()
        assert test_delivery.event_type == "webhook.test"

    # Rotate: a new secret, shown once, not cached; the old one signs for the grace period.
    old = _stored(objects, world.a.slug, endpoint_id)
    assert old is not None
    old_secret = open_secret(objects.cipher, old.secret_ciphertext)
    bad_grace = _post(admin, f"{page}/rotate", {"grace_hours": "500"}, page)
    assert bad_grace.status_code == 422
    assert 'id="grace_hours-error"' in bad_grace.get_data(as_text=True)
    rotated = _post(admin, f"{page}/rotate", {"grace_hours": "6"}, page)
    assert rotated.status_code == 200
    assert rotated.headers["Cache-Control"] == "no-store"
    [secret] = SECRET.findall(rotated.get_data(as_text=True))
    assert secret != old_secret
    stored = _stored(objects, world.a.slug, endpoint_id)
    assert stored is not None
    assert stored.previous_secret_expires_at is not None
    assert open_secret(objects.cipher, stored.secret_ciphertext) == secret
    assert stored.previous_secret_ciphertext is not None
    assert open_secret(objects.cipher, stored.previous_secret_ciphertext) == old_secret
    after = admin.client.get(page).get_data(as_text=True)
    assert "The old secret also signs until" in after
    assert not SECRET.search(after)
    no_grace = _post(admin, f"{page}/rotate", {"grace_hours": "0"}, page)
    assert no_grace.status_code == 200
    assert "The old secret no longer signs" in no_grace.get_data(as_text=True)

    # Delete: gone, with its log.
    deleted = _post(admin, f"{page}/delete", {}, page)
    assert deleted.status_code == 302
    assert deleted.headers["Location"].endswith(_base(world))
    assert _stored(objects, world.a.slug, endpoint_id) is None
    assert admin.client.get(page).status_code == 404


def test_a_failing_or_platform_disabled_endpoint_says_why(world: World) -> None:
    objects = platform(world.app)
    failing = _endpoint(
        objects, world.a.slug, enabled=True, failing_since=dt.datetime(2026, 11, 2, tzinfo=dt.UTC)
    )
    gone = _endpoint(
        objects, world.a.slug, enabled=False, disabled_reason="the receiver answered 410 Gone"
    )
    _deliveries(objects, world.a.slug, failing, 1)
    admin = login(world.app, world.a.admin_email)

    listing = admin.client.get(_base(world)).get_data(as_text=True)

    assert '<span class="badge bad">Failing</span>' in listing
    assert "ran out of retries" in listing
    assert "Disabled by the platform: the receiver answered 410 Gone" in listing
    assert "HTTP 500" in listing  # the failing one's last delivery
    page = admin.client.get(f"{_base(world)}/{failing}").get_data(as_text=True)
    assert "ran out of retries" in page
    assert "410 Gone" in admin.client.get(f"{_base(world)}/{gone}").get_data(as_text=True)


def test_the_delivery_log_pages_and_filters_and_each_delivery_shows_its_attempts(
    world: World,
) -> None:
    objects = platform(world.app)
    endpoint_id = _endpoint(objects, world.a.slug)
    ids = _deliveries(objects, world.a.slug, endpoint_id, LOG_PAGE + 5)
    with tenant_scope(world.a.slug, db=objects.db) as session:
        session.add_all(
            WebhookAttempt(
                delivery_id=ids[-1],
                number=n,
                manual=n == 2,
                started_at=dt.datetime(2026, 11, 1, 8, n, tzinfo=dt.UTC),
                finished_at=dt.datetime(2026, 11, 1, 8, n, 1, tzinfo=dt.UTC),
                response_status=500 if n == 1 else 200,
                latency_ms=120 * n,
                error="answered 500" if n == 1 else None,
            )
            for n in (1, 2)
        )
    admin = login(world.app, world.a.admin_email)
    page = f"{_base(world)}/{endpoint_id}"

    first = admin.client.get(page).get_data(as_text=True)
    shown = re.findall(r"evt_page_(\d+)", first)
    assert [int(n) for n in dict.fromkeys(shown)] == list(range(LOG_PAGE + 4, 4, -1))
    older = re.search(r'href="([^"]*before=\d+[^"]*)"', first)
    assert older is not None
    second = admin.client.get(older.group(1).replace("&amp;", "&")).get_data(as_text=True)
    assert [int(n) for n in dict.fromkeys(re.findall(r"evt_page_(\d+)", second))] == [4, 3, 2, 1, 0]
    failed = admin.client.get(f"{page}?status=failed").get_data(as_text=True)
    assert all(int(n) % 2 == 0 for n in re.findall(r"evt_page_(\d+)", failed))

    delivery = admin.client.get(f"{page}/deliveries/{ids[-1]}").get_data(as_text=True)
    assert "answered 500" in delivery
    assert "240 ms" in delivery
    assert "by hand" in delivery
    assert "invoice.issued" in delivery
    assert "Replay" in delivery


# --- a real delivery, replayed ----------------------------------------------------------------


@pytest.fixture
def loopback(monkeypatch: pytest.MonkeyPatch, app: Any) -> Platform:
    """Private hosts allowed (the receiver is on loopback), a short receiver timeout."""
    objects = platform(app)
    monkeypatch.setattr(
        objects,
        "settings",
        dataclasses.replace(objects.settings, http_sources_allow_private=True, webhook_timeout=2),
    )
    return objects


def _run_webhook_jobs(app: Any) -> None:
    objects = platform(app)
    queue = job_queue(objects.redis, "webhooks", prefix=objects.settings.queue_prefix)
    with app.app_context():
        SimpleWorker([queue], connection=objects.redis, serializer=JSONSerializer).work(
            burst=True, with_scheduler=False
        )


@pytest.mark.real_commits
def test_a_test_event_reaches_a_verifying_receiver_and_a_replay_is_a_new_attempt(
    world: World, loopback: Platform
) -> None:
    verified: list[Any] = []
    secrets: list[str] = []

    def verify(body: bytes, headers: dict[str, str]) -> Any:
        payload = Webhook(secrets[0]).verify(body, headers)
        verified.append((headers["webhook-id"], payload["type"]))
        return payload

    receiver = Receiver(verify).start()
    try:
        admin = login(world.app, world.a.admin_email)
        base = _base(world)
        created = _post(admin, base, {"url": receiver.url, "event_types": ["promise.kept"]}, base)
        assert created.status_code == 200, created.get_data(as_text=True)
        secrets.extend(SECRET.findall(created.get_data(as_text=True)))
        with tenant_scope(world.a.slug, db=loopback.db) as session:
            endpoint_id = session.scalars(select(WebhookEndpoint.id)).one()
        page = f"{base}/{endpoint_id}"
        assert _post(admin, f"{page}/test", {}, page).status_code == 302
        _run_webhook_jobs(world.app)
        with tenant_scope(world.a.slug, db=loopback.db) as session:
            delivery = session.scalars(select(WebhookDelivery)).one()
            assert (delivery.status, delivery.attempts, delivery.response_status) == (
                "delivered",
                1,
                200,
            )
            delivery_id, event_id = delivery.id, delivery.event_id
        log = admin.client.get(page).get_data(as_text=True)
        assert "Delivered" in log
        assert event_id in log

        replayed = _post(admin, f"{page}/deliveries/{delivery_id}/replay", {}, page)
        assert replayed.status_code == 302
        _run_webhook_jobs(world.app)

        with tenant_scope(world.a.slug, db=loopback.db) as session:
            attempts = session.scalars(
                select(WebhookAttempt)
                .where(WebhookAttempt.delivery_id == delivery_id)
                .order_by(WebhookAttempt.number)
            ).all()
            assert [(a.number, a.manual, a.response_status) for a in attempts] == [
                (1, True, 200),
                (2, True, 200),
            ]
        assert verified == [(event_id, "webhook.test")] * 2
        assert all(not isinstance(r.verified, Exception) for r in receiver.received)
        shown = admin.client.get(f"{page}/deliveries/{delivery_id}").get_data(as_text=True)
        assert shown.count(">by hand<") == 2
    finally:
        receiver.stop()


# --- who may do what --------------------------------------------------------------------------


def _routes(world: World, endpoint_id: int, delivery_id: int) -> tuple[list[str], list[str]]:
    base = _base(world)
    page = f"{base}/{endpoint_id}"
    reads = [base, page, f"{page}/deliveries/{delivery_id}"]
    writes = [
        base,
        page,
        f"{page}/state",
        f"{page}/rotate",
        f"{page}/test",
        f"{page}/delete",
        f"{page}/deliveries/{delivery_id}/replay",
    ]
    return reads, writes


def _state(objects: Platform, slug: str) -> Any:
    with tenant_scope(slug, db=objects.db) as session:
        endpoints = session.execute(
            select(
                WebhookEndpoint.id,
                WebhookEndpoint.url,
                WebhookEndpoint.enabled,
                WebhookEndpoint.event_types,
                WebhookEndpoint.secret_ciphertext,
            ).order_by(WebhookEndpoint.id)
        ).all()
        deliveries = session.execute(
            select(WebhookDelivery.id, WebhookDelivery.status, WebhookDelivery.manual_next)
        ).all()
        return endpoints, deliveries


def test_analysts_read_but_every_change_is_refused(world: World) -> None:
    objects = platform(world.app)
    endpoint_id = _endpoint(objects, world.a.slug, enabled=True)
    [delivery_id] = _deliveries(objects, world.a.slug, endpoint_id, 1)
    reads, writes = _routes(world, endpoint_id, delivery_id)
    analyst = login(world.app, world.a.analyst_email)
    before = _state(objects, world.a.slug)

    for path in reads:
        response = analyst.client.get(path)
        assert response.status_code == 200, path
        page = response.get_data(as_text=True)
        assert not SECRET.search(page)
        # No change buttons for a reader.
        for label in ("Register", "Replay", "Rotate the secret", "Delete", "Send a test event"):
            assert f">{label}<" not in page, (path, label)
    token = _csrf(analyst, reads[0])
    for path in writes:
        response = analyst.client.post(
            path,
            data={
                "csrf_token": token,
                "url": PUBLIC_URL,
                "event_types": ["case.placed"],
                "grace_hours": "1",
            },
        )
        assert response.status_code == 403, path
        assert not SECRET.search(response.get_data(as_text=True))
    assert _state(objects, world.a.slug) == before


def test_agency_staff_other_tenants_and_anonymous_reach_nothing(world: World) -> None:
    objects = platform(world.app)
    # B holds more endpoints and deliveries, so B's ids do not exist in A.
    for _ in range(3):
        _endpoint(objects, world.b.slug)
    b_endpoint = _endpoint(objects, world.b.slug, description=f"{B_MARK} hook")
    b_deliveries = _deliveries(objects, world.b.slug, b_endpoint, 4)
    a_endpoint = _endpoint(objects, world.a.slug)
    [a_delivery] = _deliveries(objects, world.a.slug, a_endpoint, 1)
    assert b_endpoint != a_endpoint
    assert b_deliveries[-1] != a_delivery
    reads, writes = _routes(world, a_endpoint, a_delivery)
    b_before = _state(objects, world.b.slug)
    a_before = _state(objects, world.a.slug)

    for email in (world.manager_email, world.collector_email):
        staff = login(world.app, email)
        for path in reads:
            assert staff.client.get(path).status_code == 403, (email, path)
        for path in writes:
            assert staff.client.post(path, headers=staff.headers).status_code == 403, (email, path)

    # Another tenant's admin on A's slug: A does not exist for them.
    b_admin = login(world.app, world.b.admin_email)
    for path in reads:
        assert b_admin.client.get(path).status_code == 404, path
    for path in writes:
        assert b_admin.client.post(path, headers=b_admin.headers).status_code == 404, path

    # A's admin with B's ids: as if they did not exist.
    admin = login(world.app, world.a.admin_email)
    hostile_reads, hostile_writes = _routes(world, b_endpoint, b_deliveries[-1])
    token = _csrf(admin, _base(world))
    for path in hostile_reads[1:]:
        assert admin.client.get(path).status_code == 404, path
    for path in hostile_writes[1:]:
        response = admin.client.post(
            path, data={"csrf_token": token, "url": PUBLIC_URL, "event_types": ["case.placed"]}
        )
        assert response.status_code == 404, path
    # A's endpoint with B's delivery id.
    foreign = f"{_base(world)}/{a_endpoint}/deliveries/{b_deliveries[-1]}"
    assert admin.client.get(foreign).status_code == 404
    assert admin.client.post(f"{foreign}/replay", data={"csrf_token": token}).status_code == 404
    assert B_MARK not in admin.client.get(_base(world)).get_data(as_text=True)

    guest = anonymous(world.app)
    for path in reads:
        response = guest.client.get(path)
        assert response.status_code == 302, path
        assert "/login" in response.headers["Location"]
    for path in writes:
        assert guest.client.post(path).status_code in (400, 401), path

    assert _state(objects, world.b.slug) == b_before
    assert _state(objects, world.a.slug) == a_before
