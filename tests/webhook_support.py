"""Webhook endpoints and deliveries for the isolation world, and a loopback receiver."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from recova.platform.kernel.extension import platform
from recova.platform.webhooks.models import WebhookDelivery, WebhookEndpoint
from recova.platform.webhooks.signing import new_secret, seal_secret
from recova.tenants.scope import tenant_scope

#: A public address literal: the guard passes it without DNS; nothing is ever sent there
#: (the walk's endpoints are disabled).
PUBLIC_URL = "https://93.184.215.14/walk"


def seed_world_webhooks(world: Any) -> None:
    """Disabled endpoints with delivered deliveries in both tenants (A one, B six), so B's
    ids do not exist in A even after the walk registers two endpoints there."""
    objects = platform(world.app)
    for tenant, count in ((world.a, 1), (world.b, 6)):
        with tenant_scope(tenant.slug, db=objects.db) as session:
            for n in range(count):
                endpoint = WebhookEndpoint(
                    url=PUBLIC_URL,
                    event_types=["invoice.issued"],
                    description=f"seed {n}",
                    enabled=False,
                    secret_ciphertext=seal_secret(objects.cipher, new_secret()),
                    created_by="job:walk",
                )
                session.add(endpoint)
                session.flush()
                for m in range(count):
                    session.add(
                        WebhookDelivery(
                            endpoint_id=endpoint.id,
                            event_id=f"evt_seed_{n}_{m}",
                            event_type="invoice.issued",
                            body="{}",
                            status="delivered",
                            attempts=1,
                            attempts_left=9,
                        )
                    )
    world.hostile_ids.update({"endpoint_id": str(6), "delivery_id": str(36)})


@dataclass
class Received:
    """One request the receiver got."""

    headers: dict[str, str]
    body: bytes
    verified: Any  # the payload, or the verification error


@dataclass
class Receiver:
    """A real HTTP server on loopback; ``answer`` decides each response (status, headers,
    seconds to wait before answering)."""

    verify: Callable[[bytes, dict[str, str]], Any]
    answer: Callable[[int], tuple[int, dict[str, str], float]] = lambda n: (200, {}, 0.0)
    received: list[Received] = field(default_factory=list)
    server: http.server.ThreadingHTTPServer | None = None
    release: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/hooks"

    def start(self) -> Receiver:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    verified = receiver.verify(body, headers)
                except Exception as error:  # recorded: the test asserts none failed
                    verified = error
                number = len(receiver.received)
                receiver.received.append(Received(headers, body, verified))
                status, extra, wait = receiver.answer(number)
                if wait < 0:  # hold the request until released
                    receiver.release.wait(60)
                elif wait:
                    receiver.release.wait(wait)
                try:
                    self.send_response(status)
                    for key, value in extra.items():
                        self.send_header(key, value)
                    self.send_header("content-length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:
                    pass  # the sender is gone (timed out, killed)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.release.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
