"""Signed webhooks: endpoints over the API, events from every service, deliveries to a real
receiver on loopback verified with the ``standardwebhooks`` reference library, retries,
410, Retry-After, timeouts, rotation, a worker SIGKILLed mid-delivery, and isolation."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import hmac
import io
import json
import os
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from rq import SimpleWorker
from rq.serializers import JSONSerializer
from sqlalchemy import select, text, update
from standardwebhooks import Webhook

from recova.billing.invoices import close_month, issue_invoice
from recova.billing.models import Invoice
from recova.billing.terms import create_contract_version
from recova.connectors.models import FeedKind
from recova.connectors.runner import execute_ingestion
from recova.connectors.services import save_mapping, start_run, store_file
from recova.platform.allocation.models import Placement
from recova.platform.allocation.placement import recall_placement
from recova.platform.audit.services import export_daily_head
from recova.platform.cases.models import Case
from recova.platform.kernel.extension import Platform, platform
from recova.platform.kernel.jobs import job_queue
from recova.platform.kernel.outbox import OutboxEntry, relay_outbox_until_drained
from recova.platform.webhooks import delivery as delivery_module
from recova.platform.webhooks.delivery import SCHEDULE, fan_out_events
from recova.platform.webhooks.events import SUBSCRIBABLE, emit_event
from recova.platform.webhooks.models import WebhookDelivery, WebhookEndpoint
from recova.platform.webhooks.services import create_endpoint
from recova.platform.webhooks.signing import open_secret, signed_headers
from recova.platform.work import disputes, plans, promises, settlements
from recova.platform.work.models import (
    ApprovalLevel,
    DisputeStatus,
    PaymentPlan,
    Promise,
    Settlement,
)
from recova.tenants.models import tenant_today
from recova.tenants.scope import tenant_scope
from tests.allocation_support import seed_world_allocation
from tests.support import B_MARK, World, build_world, login
from tests.webhook_support import PUBLIC_URL, Receiver
from tests.work_support import seed_world_work

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def loopback(monkeypatch: pytest.MonkeyPatch, app: Any) -> Platform:
    """The app's platform objects with private hosts allowed (the receiver is on
    loopback) and a short receiver timeout."""
    objects = platform(app)
    monkeypatch.setattr(
        objects,
        "settings",
        dataclasses.replace(objects.settings, http_sources_allow_private=True, webhook_timeout=1),
    )
    return objects


def _verifier(secrets: list[str]) -> Any:
    def verify(body: bytes, headers: dict[str, str]) -> Any:
        errors = []
        for secret in secrets:
            try:
                return Webhook(secret).verify(body, headers)
            except Exception as error:
                errors.append(error)
        raise errors[0]

    return verify


def _endpoint(objects: Platform, tenant_slug: str, url: str, types: list[str]) -> tuple[int, str]:
    with tenant_scope(tenant_slug, db=objects.db) as session:
        endpoint, secret = create_endpoint(
            session,
            objects,
            url=url,
            event_types=types,
            description="test",
            enabled=True,
            actor="job:test",
        )
        return endpoint.id, secret


def _run_webhook_jobs(app: Any) -> None:
    objects = platform(app)
    queue = job_queue(objects.redis, "webhooks", prefix=objects.settings.queue_prefix)
    with app.app_context():
        SimpleWorker([queue], connection=objects.redis, serializer=JSONSerializer).work(
            burst=True, with_scheduler=False
        )


def _deliveries(objects: Platform, slug: str) -> list[WebhookDelivery]:
    with tenant_scope(slug, db=objects.db) as session:
        return list(session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))


def _make_due(objects: Platform, slug: str) -> None:
    """Time passes: every pending delivery is due now (instead of waiting its delay)."""
    with tenant_scope(slug, db=objects.db) as session:
        session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.status == "pending")
            .values(next_attempt_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
        )


def _attempt_all(objects: Platform, slug: str, tenant_id: int) -> list[Any]:
    results = []
    for delivery in _deliveries(objects, slug):
        results.append(
            delivery_module.attempt_delivery(objects, tenant_id=tenant_id, delivery_id=delivery.id)
        )
    return results


# --- signing -----------------------------------------------------------------------------------


def test_a_signature_matches_the_spec_computed_by_hand() -> None:
    secret = "whsec_" + base64.b64encode(b"k" * 32).decode()
    at = dt.datetime(2026, 12, 1, 12, 0, 0, tzinfo=dt.UTC)
    body = '{"type":"case.placed","timestamp":"2026-12-01T12:00:00Z","data":{"case_id":1}}'
    headers = signed_headers([secret], msg_id="evt_1", timestamp=at, body=body)
    signed = f"evt_1.{int(at.timestamp())}.{body}".encode()
    expected = base64.b64encode(hmac.digest(b"k" * 32, signed, hashlib.sha256)).decode()
    assert headers["webhook-signature"] == f"v1,{expected}"
    assert headers["webhook-timestamp"] == str(int(at.timestamp()))
    assert headers["webhook-id"] == "evt_1"
    # Two secrets (a rotation's grace period): two space-separated signatures.
    other = "whsec_" + base64.b64encode(b"n" * 32).decode()
    both = signed_headers([other, secret], msg_id="evt_1", timestamp=at, body=body)
    assert both["webhook-signature"].split(" ")[1] == f"v1,{expected}"


# --- the API -----------------------------------------------------------------------------------


def test_endpoints_are_created_listed_rotated_and_deleted(world: World) -> None:
    admin = login(world.app, world.a.admin_email)
    base = "/api/v1/webhooks/endpoints"
    for body, field in (
        ({"url": "not a url", "event_types": ["case.placed"]}, "url"),
        ({"url": "http://93.184.215.14/h", "event_types": ["case.placed"]}, "url"),
        ({"url": "https://127.0.0.1/h", "event_types": ["case.placed"]}, "url"),
        ({"url": "https://10.1.2.3/h", "event_types": ["case.placed"]}, "url"),
        ({"url": "https://localhost/h", "event_types": ["case.placed"]}, "url"),
        ({"url": PUBLIC_URL, "event_types": ["case.exploded"]}, "event_types"),
        ({"url": PUBLIC_URL, "event_types": []}, "event_types"),
    ):
        response = admin.post(base, body)
        assert response.status_code == 422, (body, response.json)
        assert field in response.json["errors"]["json"], response.json
    created = admin.post(base, {"url": PUBLIC_URL, "event_types": ["case.placed", "promise.kept"]})
    assert created.status_code == 201, created.json
    secret = created.json["secret"]
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret[6:])) == 32
    endpoint_id = created.json["id"]
    assert created.json["status"] == "active"
    # Shown once: never in a list or a read; stored encrypted.
    listed = admin.get(base)
    assert [e["id"] for e in listed.json] == [endpoint_id]
    assert secret not in listed.get_data(as_text=True)
    assert "secret" not in admin.get(f"{base}/{endpoint_id}").json
    objects = platform(world.app)
    with tenant_scope(world.a.slug, db=objects.db) as session:
        row = session.get(WebhookEndpoint, endpoint_id)
        assert row is not None
        assert secret.encode() not in row.secret_ciphertext
        assert open_secret(objects.cipher, row.secret_ciphertext) == secret
    changed = admin.patch(f"{base}/{endpoint_id}", {"event_types": ["invoice.issued"]})
    assert changed.json["event_types"] == ["invoice.issued"]
    assert admin.patch(f"{base}/{endpoint_id}", {"url": "https://127.0.0.1/"}).status_code == 422
    rotated = admin.post(f"{base}/{endpoint_id}/rotate-secret", {"grace_hours": 24})
    assert rotated.status_code == 200, rotated.json
    assert rotated.json["secret"] != secret
    assert rotated.json["previous_secret_expires_at"] is not None
    disabled = admin.patch(f"{base}/{endpoint_id}", {"enabled": False})
    assert disabled.json["status"] == "disabled"
    assert admin.delete(f"{base}/{endpoint_id}").status_code == 204
    assert admin.get(f"{base}/{endpoint_id}").status_code == 404


def test_analysts_read_agency_staff_and_other_tenants_reach_nothing(world: World) -> None:
    objects = platform(world.app)
    b_id, _ = _endpoint_unchecked(objects, world.b.slug)
    a_id, _ = _endpoint_unchecked(objects, world.a.slug)
    base = "/api/v1/webhooks/endpoints"
    analyst = login(world.app, world.a.analyst_email)
    assert analyst.get(f"{base}/{a_id}").status_code == 200
    assert (
        analyst.post(base, {"url": PUBLIC_URL, "event_types": ["case.placed"]}).status_code == 403
    )
    assert analyst.post(f"{base}/{a_id}/rotate-secret", {}).status_code == 403
    assert analyst.delete(f"{base}/{a_id}").status_code == 403
    manager = login(world.app, world.manager_email)
    named = f"/api/v1/tenants/{world.a.slug}/webhooks/endpoints"
    assert manager.get(named).status_code == 403
    admin = login(world.app, world.a.admin_email)
    if b_id != a_id:
        assert admin.get(f"{base}/{b_id}").status_code == 404
    assert admin.get(f"{base}/{b_id + 100}").status_code == 404
    assert admin.get(f"{base}/{a_id}/deliveries/99999").status_code == 404
    assert B_MARK not in admin.get(base).get_data(as_text=True)


def _endpoint_unchecked(objects: Platform, slug: str) -> tuple[int, str]:
    """An endpoint at a public literal (no DNS), disabled-safe for rolled-back tests."""
    return _endpoint(objects, slug, PUBLIC_URL, ["invoice.issued"])


def test_no_event_is_written_when_nobody_listens(world: World) -> None:
    objects = platform(world.app)
    events = select(text("count(*)")).select_from(OutboxEntry).where(OutboxEntry.kind == "event")
    with tenant_scope(world.a.slug, db=objects.db) as session:
        # Counted around the call: tests that commit may have left events of their own.
        before = session.scalar(events)
        assert emit_event(session, "case.placed", {"case_id": 1}) is None
        assert session.scalar(events) == before
    with tenant_scope(world.a.slug, db=objects.db) as session:
        _endpoint_in(session, objects)
        with pytest.raises(ValueError, match="personal"):
            emit_event(session, "invoice.issued", {"full_name": "Debtor alpha 1"})


def _endpoint_in(session: Any, objects: Platform) -> None:
    create_endpoint(
        session,
        objects,
        url=PUBLIC_URL,
        event_types=["invoice.issued"],
        description="",
        enabled=True,
        actor="job:test",
    )


# --- every event from its service, delivered and verified ------------------------------------


@pytest.mark.real_commits  # jobs, the relay and the receiver use connections of their own
def test_every_event_type_reaches_a_verifying_receiver_without_personal_data(
    app: Any, loopback: Platform
) -> None:
    world = build_world(app)
    objects = loopback
    receiver = Receiver(verify=lambda body, headers: None).start()
    try:
        endpoint_id, secret = _endpoint(objects, world.a.slug, receiver.url, sorted(SUBSCRIBABLE))
        receiver.verify = _verifier([secret])
        _emit_every_event_type(world, objects)
        relay_outbox_until_drained(objects)
        _run_webhook_jobs(app)
    finally:
        receiver.stop()
    assert receiver.received, "nothing was delivered"
    for got in receiver.received:
        assert not isinstance(got.verified, Exception), got.verified
    types = {got.verified["type"] for got in receiver.received}
    assert types == SUBSCRIBABLE
    bodies = " ".join(got.body.decode() for got in receiver.received)
    for personal in ("Debtor", "11010519491231002X", "walker", "Walker", B_MARK):
        assert personal not in bodies
    for got in receiver.received:
        assert set(got.verified) == {"type", "timestamp", "data"}
        assert got.headers["webhook-id"].startswith("evt_")
    ids = [got.headers["webhook-id"] for got in receiver.received]
    assert len(ids) == len(set(ids))
    log = _deliveries(objects, world.a.slug)
    assert {d.status for d in log} == {"delivered"}
    assert all(d.endpoint_id == endpoint_id for d in log)
    # B subscribed to nothing: nothing of B's was written or sent.
    assert _deliveries(objects, world.b.slug) == []


def _emit_every_event_type(world: World, objects: Platform) -> None:
    """Drive every service that emits an event, through its own code path."""
    db = objects.db
    # ingestion.run.completed: the world's walk run of A; ingestion.run.failed: an
    # all-or-nothing run with a row that cannot load.
    execute_ingestion(objects, tenant_id=world.a.id, run_id=_first_run(objects, world))
    with tenant_scope(world.a.slug, db=db) as session:
        tenant = session.info["tenant"]
        mapping = save_mapping(
            session,
            name="bad",
            kind=FeedKind.PORTFOLIO,
            columns={
                "account_external_id": "loan_id",
                "full_name": "name",
                "outstanding_principal": "principal",
                "days_past_due": "dpd",
            },
        )
        stored = store_file(
            session,
            objects,
            filename="bad.csv",
            stream=io.BytesIO(b"loan_id,name,principal,dpd\nX-1,Walker Bad,not-money,3\n"),
        )
        bad = start_run(
            session,
            objects,
            tenant=tenant,
            mapping=mapping,
            file=stored,
            all_or_nothing=True,
            enqueue=False,
        )
        session.flush()
        bad_id = bad.id
    execute_ingestion(objects, tenant_id=world.a.id, run_id=bad_id)
    # case.placed: the allocation run; promises, plans, settlements, disputes: case work.
    seed_world_allocation(world)
    seed_world_work(world)
    with tenant_scope(world.a.slug, db=db) as session:
        tenant = session.info["tenant"]
        today = tenant_today(tenant.timezone)
        later = today + dt.timedelta(days=200)
        promise = session.scalars(select(Promise).order_by(Promise.id)).first()
        assert promise is not None
        promises.evaluate_promise(
            session, promise, today=later, timezone=tenant.timezone, actor="job:test"
        )  # promise.broken
        plan = session.scalars(select(PaymentPlan).order_by(PaymentPlan.id)).first()
        assert plan is not None
        plans.evaluate_plan(
            session, plan, today=later, timezone=tenant.timezone, actor="job:test"
        )  # plan.broken
        offer = session.scalars(select(Settlement).order_by(Settlement.id)).first()
        assert offer is not None
        if offer.status.value == "pending_approval":
            settlements.decide_settlement(
                session,
                settlement=offer,
                approve=False,
                actor="job:test",
                level=ApprovalLevel.TENANT,
                note=None,
                today=today,
            )
        dispute_case = session.get(Case, world.a.case_ids[2])
        assert dispute_case is not None
        open_dispute = session.scalars(
            select(disputes.Dispute).where(disputes.Dispute.case_id == dispute_case.id)
        ).first()
        assert open_dispute is not None
        disputes.resolve_dispute(
            session,
            dispute=open_dispute,
            outcome=DisputeStatus.REJECTED,
            note=None,
            actor="job:test",
        )
        placement = session.scalars(
            select(Placement).where(Placement.recalled_on.is_(None)).order_by(Placement.id)
        ).first()
        assert placement is not None
        recall_placement(session, placement, reason="tenant_request", on=today)  # case.recalled
        export_daily_head(session, day=today, actor="job:test")  # audit.head.exported
        # promise.kept and plan.completed: a new promise and plan, paid in full.
        case = session.get(Case, world.a.case_ids[1])
        assert case is not None
        _pay(session, case, Decimal("5000.00"), today)
        kept = _promise_on(session, case, today)
        promises.evaluate_promise(
            session, kept, today=today, timezone=tenant.timezone, actor="job:test"
        )
        plan = plans.create_plan(
            session,
            case=case,
            instalments=[(today + dt.timedelta(days=1), Decimal("10.00"))],
            actor="job:test",
            today=today,
        )
        plans.evaluate_plan(  # plan.completed: today's payment covers it
            session, plan, today=today, timezone=tenant.timezone, actor="job:test"
        )
        # promise.partly_kept: a tenth paid by the end of the grace period.
        first = session.get(Case, world.a.case_ids[0])
        assert first is not None
        partly = _promise_on(session, first, today, amount=Decimal("100.00"))
        _pay(session, first, Decimal("10.00"), today)
        promises.evaluate_promise(
            session, partly, today=later, timezone=tenant.timezone, actor="job:test"
        )
    _bill(world, objects)


def _first_run(objects: Platform, world: World) -> int:
    with tenant_scope(world.a.slug, db=objects.db) as session:
        from recova.connectors.models import IngestionRun

        return int(session.scalar(select(IngestionRun.id).order_by(IngestionRun.id)) or 0)


def _pay(session: Any, case: Case, amount: Decimal, today: dt.date) -> None:
    from recova.platform.payments.models import Payment, PaymentKind

    session.add(
        Payment(
            external_id=f"P-{case.id}-{time.time_ns()}",
            account_id=case.account_id,
            kind=PaymentKind.PAYMENT,
            amount=amount,
            currency="CNY",
            paid_at=dt.datetime.now(dt.UTC),
        )
    )
    session.flush()


def _promise_on(
    session: Any, case: Case, today: dt.date, amount: Decimal = Decimal("10.00")
) -> Promise:
    pending = promises.pending_promise(session, case.id)
    if pending is not None:
        return pending
    return promises.create_promise(
        session,
        case=case,
        amount=amount,
        due_date=today + dt.timedelta(days=3),
        actor="job:test",
        today=today,
    )


def _bill(world: World, objects: Platform) -> None:
    """payment.attributed (a month close) and invoice.issued (its invoice, issued)."""
    db = objects.db
    with tenant_scope(world.a.slug, db=db) as session:
        tenant = session.info["tenant"]
        today = tenant_today(tenant.timezone)
        last_month = (today.replace(day=1) - dt.timedelta(days=1)).replace(day=1)
        create_contract_version(
            session,
            tenant_id=world.a.id,
            data={"currency": "CNY", "effective_from": dt.date(2020, 1, 1), "rates": {"*": "9"}},
        )
        schema = tenant.schema_name
        session.execute(
            text(
                f'INSERT INTO "{schema}".payments (external_id, account_id, kind,'
                " amount, currency, paid_at, paid_to) SELECT 'BILL-1', c.account_id, 'payment',"
                f" 100, 'CNY', :at, 'tenant' FROM \"{schema}\".placements p"
                f' JOIN "{schema}".cases c ON c.id = p.case_id ORDER BY p.id LIMIT 1'
            ),
            {"at": dt.datetime.combine(last_month + dt.timedelta(days=3), dt.time(9), dt.UTC)},
        )
        session.execute(
            text(
                f'UPDATE "{tenant.schema_name}".placements SET started_on = :start'
                " WHERE id = (SELECT min(id) FROM "
                f'"{tenant.schema_name}".placements)'
            ),
            {"start": last_month},
        )
    close_month(db, tenant=world.a.id, month=last_month.strftime("%Y-%m"))
    with tenant_scope(world.a.slug, db=db) as session:
        tenant = session.info["tenant"]
        invoice = session.scalars(select(Invoice).where(Invoice.status == "draft")).first()
        assert invoice is not None, "the close made no invoice"
        issue_invoice(session, invoice, tenant=tenant)


# --- retries and answers ---------------------------------------------------------------------


@pytest.mark.real_commits
def test_a_500_is_retried_with_the_same_id_then_delivered(app: Any, loopback: Platform) -> None:
    world = build_world(app)
    objects = loopback
    receiver = Receiver(verify=lambda b, h: None, answer=lambda n: (500 if n == 0 else 200, {}, 0))
    receiver.start()
    try:
        _, secret = _endpoint(objects, world.a.slug, receiver.url, ["invoice.issued"])
        receiver.verify = _verifier([secret])
        _emit(objects, world, "invoice.issued", {"invoice_id": 1})
        relay_outbox_until_drained(objects)
        _run_webhook_jobs(app)  # the first attempt: 500, retried after ~5 s
        (delivery,) = _deliveries(objects, world.a.slug)
        assert delivery.status == "pending"
        assert delivery.attempts == 1
        assert delivery.response_status == 500
        assert delivery.next_attempt_at is not None
        wait = (delivery.next_attempt_at - dt.datetime.now(dt.UTC)).total_seconds()
        assert 3 < wait <= 5.6
        _make_due(objects, world.a.slug)
        _attempt_all(objects, world.a.slug, world.a.id)
    finally:
        receiver.stop()
    (delivery,) = _deliveries(objects, world.a.slug)
    assert delivery.status == "delivered"
    assert delivery.attempts == 2
    assert [r.headers["webhook-id"] for r in receiver.received] == [delivery.event_id] * 2
    assert all(not isinstance(r.verified, Exception) for r in receiver.received)
    # The log through the API: status, attempts, answer and latency, and each attempt.
    admin = login(app, world.a.admin_email)
    base = f"/api/v1/webhooks/endpoints/{delivery.endpoint_id}/deliveries"
    listed = admin.get(base).json
    assert [(d["status"], d["attempts"], d["response_status"]) for d in listed] == [
        ("delivered", 2, 200)
    ]
    assert listed[0]["latency_ms"] is not None
    detail = admin.get(f"{base}/{delivery.id}").json
    assert [a["response_status"] for a in detail["attempt_log"]] == [500, 200]
    # A manual replay: a new attempt with the same webhook-id.
    receiver2 = Receiver(verify=_verifier([secret])).start()
    try:
        with tenant_scope(world.a.slug, db=objects.db) as session:
            session.execute(update(WebhookEndpoint).values(url=receiver2.url))
        replayed = admin.post(f"{base}/{delivery.id}/replay")
        assert replayed.status_code == 202, replayed.json
        _run_webhook_jobs(app)
    finally:
        receiver2.stop()
    assert [r.headers["webhook-id"] for r in receiver2.received] == [delivery.event_id]
    assert admin.get(f"{base}/{delivery.id}").json["attempts"] == 3


def _emit(objects: Platform, world: World, event_type: str, data: dict[str, Any]) -> None:
    with tenant_scope(world.a.slug, db=objects.db) as session:
        assert emit_event(session, event_type, data) is not None


@pytest.mark.real_commits
def test_410_disables_the_endpoint_and_retry_after_is_honoured(
    app: Any, loopback: Platform
) -> None:
    world = build_world(app)
    objects = loopback
    answers = {0: (429, {"Retry-After": "120"}, 0), 1: (503, {"Retry-After": "7"}, 0)}
    receiver = Receiver(
        verify=lambda b, h: None, answer=lambda n: answers.get(n, (410, {}, 0))
    ).start()
    try:
        endpoint_id, _ = _endpoint(objects, world.a.slug, receiver.url, ["invoice.issued"])
        _emit(objects, world, "invoice.issued", {"invoice_id": 1})
        relay_outbox_until_drained(objects)
        (first,) = _attempt_all(objects, world.a.slug, world.a.id)
        assert first.status == "pending"
        assert first.retry_in == 120
        _make_due(objects, world.a.slug)
        (second,) = _attempt_all(objects, world.a.slug, world.a.id)
        assert second.retry_in == 7
        _make_due(objects, world.a.slug)
        (third,) = _attempt_all(objects, world.a.slug, world.a.id)
        assert third.status == "failed"
    finally:
        receiver.stop()
    admin = login(app, world.a.admin_email)
    shown = admin.get(f"/api/v1/webhooks/endpoints/{endpoint_id}").json
    assert shown["status"] == "disabled"
    assert "410" in shown["disabled_reason"]
    # Disabled: a new event writes nothing.
    with tenant_scope(world.a.slug, db=objects.db) as session:
        assert emit_event(session, "invoice.issued", {"invoice_id": 2}) is None


@pytest.mark.real_commits
def test_a_slow_receiver_times_out_and_the_last_retry_marks_the_endpoint_failing(
    app: Any, loopback: Platform
) -> None:
    world = build_world(app)
    objects = loopback  # webhook_timeout=1
    receiver = Receiver(verify=lambda b, h: None, answer=lambda n: (200, {}, 3.0)).start()
    try:
        endpoint_id, _ = _endpoint(objects, world.a.slug, receiver.url, ["invoice.issued"])
        _emit(objects, world, "invoice.issued", {"invoice_id": 1})
        relay_outbox_until_drained(objects)
        (result,) = _attempt_all(objects, world.a.slug, world.a.id)
        assert result.status == "pending"
        (delivery,) = _deliveries(objects, world.a.slug)
        assert delivery.last_error is not None
        assert "no answer within 1 s" in delivery.last_error
        # The rest of the schedule fails too (answered 500 from here on).
        receiver.answer = lambda n: (500, {}, 0)
        for _ in range(len(SCHEDULE) - 1):
            _make_due(objects, world.a.slug)
            _attempt_all(objects, world.a.slug, world.a.id)
    finally:
        receiver.stop()
    (delivery,) = _deliveries(objects, world.a.slug)
    assert delivery.status == "failed"
    assert delivery.attempts == len(SCHEDULE)
    admin = login(app, world.a.admin_email)
    shown = admin.get(f"/api/v1/webhooks/endpoints/{endpoint_id}").json
    assert shown["status"] == "failing"
    assert shown["failing_since"] is not None


@pytest.mark.real_commits
def test_rotation_signs_with_both_secrets_during_grace_then_only_the_new(
    app: Any, loopback: Platform
) -> None:
    world = build_world(app)
    objects = loopback
    receiver = Receiver(verify=lambda b, h: None).start()
    try:
        endpoint_id, old = _endpoint(objects, world.a.slug, receiver.url, ["invoice.issued"])
        admin = login(app, world.a.admin_email)
        new = admin.post(f"/api/v1/webhooks/endpoints/{endpoint_id}/rotate-secret", {}).json[
            "secret"
        ]
        _emit(objects, world, "invoice.issued", {"invoice_id": 1})
        relay_outbox_until_drained(objects)
        _attempt_all(objects, world.a.slug, world.a.id)
        during = receiver.received[-1]
        assert len(during.headers["webhook-signature"].split(" ")) == 2
        for secret in (old, new):
            Webhook(secret).verify(during.body, during.headers)
        # The grace period ends.
        with tenant_scope(world.a.slug, db=objects.db) as session:
            session.execute(
                update(WebhookEndpoint).values(
                    previous_secret_expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
                )
            )
        _emit(objects, world, "invoice.issued", {"invoice_id": 2})
        relay_outbox_until_drained(objects)
        _attempt_all(objects, world.a.slug, world.a.id)
    finally:
        receiver.stop()
    after = receiver.received[-1]
    assert len(after.headers["webhook-signature"].split(" ")) == 1
    Webhook(new).verify(after.body, after.headers)
    with pytest.raises(Exception, match="signature"):
        Webhook(old).verify(after.body, after.headers)


# --- a worker SIGKILLed mid-delivery ------------------------------------------------------------


@pytest.mark.real_commits
@pytest.mark.slow
def test_no_event_is_lost_or_duplicated_across_a_worker_sigkill(
    app: Any, loopback: Platform, settings: Any
) -> None:
    world = build_world(app)
    objects = loopback
    held = {"first": True}

    def answer(n: int) -> tuple[int, dict[str, str], float]:
        if held["first"]:
            held["first"] = False
            return 200, {}, -1  # hold the first request until the worker is dead
        return 200, {}, 0

    receiver = Receiver(verify=lambda b, h: None, answer=answer).start()
    env = {
        **os.environ,
        "RECOVA_ENV": "test",
        "RECOVA_HOME": str(settings.home),
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "SECRET_KEY": settings.secret_key,
        "RECOVA_DATA_KEY": base64.urlsafe_b64encode(settings.data_key).decode(),
        "RECOVA_QUEUE_PREFIX": settings.queue_prefix,
        "RECOVA_HTTP_SOURCES_ALLOW_PRIVATE": "true",
        "RECOVA_WEBHOOK_TIMEOUT": "1",
    }
    try:
        _, secret = _endpoint(objects, world.a.slug, receiver.url, ["invoice.issued"])
        receiver.verify = _verifier([secret])
        for n in range(5):
            _emit(objects, world, "invoice.issued", {"invoice_id": n})
        relay_outbox_until_drained(objects)
        worker = subprocess.Popen(
            [sys.executable, "-m", "recova.platform.entry.cli", "worker", "--queues", "webhooks"],
            env=env,
            cwd=ROOT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while not receiver.received and time.monotonic() < deadline:
            time.sleep(0.1)
        assert receiver.received, "the worker sent nothing"
        os.killpg(worker.pid, signal.SIGKILL)  # the worker and its work horse, mid-request
        worker.wait(timeout=10)
        receiver.release.set()
        # The killed attempt's lease lapses (2 x timeout + 5 s); the sweep sends it again.
        time.sleep(delivery_module.lease_seconds(1) + 0.5)
        with app.app_context():
            from recova.platform.webhooks.jobs import sweep_webhook_deliveries_job

            sweep_webhook_deliveries_job(tenant_id=world.a.id)
        _run_webhook_jobs(app)
    finally:
        receiver.stop()
    log = _deliveries(objects, world.a.slug)
    assert len(log) == 5
    assert {d.status for d in log} == {"delivered"}, [(d.status, d.last_error) for d in log]
    seen = [r.headers["webhook-id"] for r in receiver.received]
    assert set(seen) == {d.event_id for d in log}  # none lost
    # Duplicates only with the same id: at most the one held when the worker died.
    assert len(seen) - len(set(seen)) <= 1
    assert all(not isinstance(r.verified, Exception) for r in receiver.received)


# --- the fan-out -----------------------------------------------------------------------------


@pytest.mark.real_commits
def test_the_fan_out_is_idempotent_per_endpoint_and_event(app: Any, loopback: Platform) -> None:
    world = build_world(app)
    objects = loopback
    _endpoint(objects, world.a.slug, PUBLIC_URL, ["invoice.issued"])
    _endpoint(objects, world.a.slug, PUBLIC_URL, ["invoice.issued", "case.placed"])
    _emit(objects, world, "invoice.issued", {"invoice_id": 7})
    with objects.db.engine.begin() as connection:
        rows = connection.execute(
            select(
                OutboxEntry.id,
                OutboxEntry.tenant_id,
                OutboxEntry.func,
            ).where(OutboxEntry.kind == "event", OutboxEntry.tenant_id == world.a.id)
        ).all()
        assert len(rows) == 1
        first = fan_out_events(connection, rows)
        again = fan_out_events(connection, rows)
    assert len(first) == 2
    assert again == []
    bodies = [json.loads(d.body) for d in _deliveries(objects, world.a.slug)]
    assert bodies[0] == bodies[1]
    assert bodies[0]["type"] == "invoice.issued"
    assert bodies[0]["data"] == {"invoice_id": 7}


@pytest.mark.real_commits  # the relay job, the worker and the receiver use connections of their own
def test_an_api_write_emits_its_event_and_the_commit_hands_it_over_at_once(
    app: Any, loopback: Platform
) -> None:
    """A promise made through the API with an endpoint listening: 201 (the request's
    tenant is the session's, as the event needs), and the commit queues the relay job
    that fans the event out and delivers it, with no relay tick in between."""
    world = build_world(app)
    receiver = Receiver(verify=lambda b, h: None).start()
    try:
        _, secret = _endpoint(loopback, world.a.slug, receiver.url, ["promise.created"])
        receiver.verify = _verifier([secret])
        admin = login(app, world.a.admin_email)
        due = (dt.date.today() + dt.timedelta(days=5)).isoformat()
        made = admin.post(
            f"/api/v1/cases/{world.a.case_ids[0]}/promises",
            json={"amount": "25.00", "due_date": due},
        )
        assert made.status_code == 201, made.json
        with tenant_scope(world.a.slug, db=loopback.db) as session:
            waiting = session.scalars(
                select(OutboxEntry.published_at).where(
                    OutboxEntry.func == "promise.created", OutboxEntry.tenant_id == world.a.id
                )
            ).all()
        assert waiting == [None]  # written with the promise, handed over by the job below
        _run_webhook_jobs(app)
    finally:
        receiver.stop()
    (delivery,) = _deliveries(loopback, world.a.slug)
    assert delivery.status == "delivered"
    (received,) = receiver.received
    assert not isinstance(received.verified, Exception)
    assert received.headers["webhook-id"] == delivery.event_id
    assert json.loads(received.body)["data"]["promise_id"] == made.json["id"]
