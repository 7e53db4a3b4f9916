"""The demo's webhooks: a receiver on loopback verifying every delivery with the
``standardwebhooks`` library, one endpoint per lender registered once, and the demo's
events delivered before it serves, so the portal's Webhooks page lists them."""

from __future__ import annotations

import dataclasses
import http.client
import json
from typing import Any

import pytest
from sqlalchemy import select

from recova.platform.entry.demo import (
    DEMO_RECEIVER_DESCRIPTION,
    DEMO_WEBHOOK_EVENTS,
    deliver_demo_events,
    demo_receiver_secrets,
    register_demo_receiver,
)
from recova.platform.kernel.extension import Platform, platform
from recova.platform.webhooks.demo_receiver import DemoReceiver
from recova.platform.webhooks.events import emit_event
from recova.platform.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from recova.tenants.scope import tenant_scope
from tests.support import World, login

pytestmark = pytest.mark.real_commits


@pytest.fixture
def demo_objects(monkeypatch: pytest.MonkeyPatch, app: Any) -> Platform:
    """The app's objects as ``recova demo`` sets them: private hosts allowed."""
    objects = platform(app)
    monkeypatch.setattr(
        objects,
        "settings",
        dataclasses.replace(objects.settings, http_sources_allow_private=True, webhook_timeout=2),
    )
    return objects


def _deliveries(objects: Platform, slug: str) -> list[WebhookDelivery]:
    with tenant_scope(slug, db=objects.db) as session:
        rows = list(session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))
        session.expunge_all()
        return rows


def test_the_demo_registers_its_receiver_once_and_every_delivery_verifies(
    world: World, demo_objects: Platform
) -> None:
    slugs = [world.a.slug, world.b.slug]
    receiver = DemoReceiver(demo_receiver_secrets(demo_objects, slugs)).start()
    try:
        hooks = register_demo_receiver(demo_objects, receiver, slugs)
        # An event of the demo's own actions, after registration (a promise recorded).
        with tenant_scope(world.a.slug, db=demo_objects.db) as session:
            emit_event(session, "promise.created", {"promise_id": 7, "case_id": 1})
            emit_event(session, "case.placed", {"case_id": 1})  # not subscribed: not sent

        results = deliver_demo_events(demo_objects, hooks)

        assert [(r.tenant, r.delivered, r.not_delivered) for r in results] == [
            (world.a.slug, 2, 0),
            (world.b.slug, 1, 0),
        ]
        assert all("every delivery signed and verified" in r.line() for r in results)
        for hook in hooks:
            assert hook.url == f"{receiver.base_url}/hooks/{hook.tenant}"
            with tenant_scope(hook.tenant, db=demo_objects.db) as session:
                endpoint = session.scalars(select(WebhookEndpoint)).one()
                assert endpoint.url == hook.url
                assert endpoint.description == DEMO_RECEIVER_DESCRIPTION
                assert endpoint.event_types == sorted(DEMO_WEBHOOK_EVENTS)
                assert endpoint.status == "active"
        a_deliveries = _deliveries(demo_objects, world.a.slug)
        assert [(d.event_type, d.status, d.response_status) for d in a_deliveries] == [
            ("webhook.test", "delivered", 204),
            ("promise.created", "delivered", 204),
        ]
        # The receiver verified each one with the library, under its webhook-id.
        got = {(e.tenant, e.webhook_id, e.event_type, e.verified) for e in receiver.received}
        expected = {
            (slug, d.event_id, d.event_type, True)
            for slug in slugs
            for d in _deliveries(demo_objects, slug)
        }
        assert got == expected

        # A second demo run: the same endpoints, no second test event, nothing resent.
        again = register_demo_receiver(demo_objects, receiver, slugs)
        assert again == hooks
        assert [
            (r.delivered, r.not_delivered) for r in deliver_demo_events(demo_objects, again)
        ] == [
            (0, 0),
            (0, 0),
        ]
        assert len(_deliveries(demo_objects, world.a.slug)) == 2
        with tenant_scope(world.a.slug, db=demo_objects.db) as session:
            assert len(session.scalars(select(WebhookAttempt)).all()) == 2

        # The portal's Webhooks page shows the endpoint and its deliveries.
        admin = login(world.app, world.a.admin_email)
        endpoint_id = hooks[0].endpoint_id
        listing = admin.client.get(f"/portal/{world.a.slug}/webhooks").get_data(as_text=True)
        assert hooks[0].url in listing
        assert "Delivered" in listing
        log = admin.client.get(f"/portal/{world.a.slug}/webhooks/{endpoint_id}")
        assert all(d.event_id in log.get_data(as_text=True) for d in a_deliveries)
    finally:
        receiver.stop()


def test_the_receiver_refuses_a_forged_delivery(world: World, demo_objects: Platform) -> None:
    receiver = DemoReceiver(demo_receiver_secrets(demo_objects, [world.a.slug])).start()
    try:
        register_demo_receiver(demo_objects, receiver, [world.a.slug])
        host, port = receiver.base_url.removeprefix("http://").split(":")
        body = json.dumps({"type": "invoice.issued", "timestamp": "x", "data": {}})
        connection = http.client.HTTPConnection(host, int(port), timeout=5)
        connection.request(
            "POST",
            f"/hooks/{world.a.slug}",
            body=body,
            headers={
                "webhook-id": "evt_forged",
                "webhook-timestamp": "1700000000",
                "webhook-signature": "v1,AAAA",
                "content-type": "application/json",
            },
        )
        assert connection.getresponse().status == 400
        connection.close()
        [forged] = [e for e in receiver.received if e.webhook_id == "evt_forged"]
        assert not forged.verified
        assert forged.event_type == "invoice.issued"
    finally:
        receiver.stop()
