"""The demo's webhook receiver: a real HTTP server on loopback that verifies every delivery.

``recova demo`` starts it in a thread, registers one endpoint per demo lender at
``http://127.0.0.1:<port>/hooks/<tenant slug>`` and sends the demo's events there, so the
portal's Webhooks page shows real, signed, delivered events. Each request is verified
with the ``standardwebhooks`` reference library against the endpoint's current secret and,
during a rotation's grace period, the previous one (``secrets_for`` reads them, so a
rotation made in the portal keeps verifying); a verified delivery is answered 204 and
logged with its event type and id, anything else 400 (and the platform retries it).
"""

from __future__ import annotations

import http.server
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from standardwebhooks import Webhook

logger = logging.getLogger(__name__)

#: The path under which each tenant's deliveries arrive: ``/hooks/<slug>``.
PATH_PREFIX = "/hooks/"
#: The largest body accepted (the platform's bodies are thin: ids and states).
MAX_BODY = 64 * 1024


@dataclass(frozen=True)
class ReceivedEvent:
    """One delivery the receiver got, and whether its signature verified."""

    tenant: str
    webhook_id: str
    event_type: str | None
    verified: bool
    error: str | None = None


@dataclass
class DemoReceiver:
    """A loopback receiver; ``secrets_for(slug)`` gives the secrets a tenant signs with."""

    secrets_for: Callable[[str], list[str]]
    host: str = "127.0.0.1"
    port: int = 0
    received: list[ReceivedEvent] = field(default_factory=list)
    _server: http.server.ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the receiver is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def url_for(self, slug: str) -> str:
        """Where ``slug``'s deliveries go."""
        return f"{self.base_url}{PATH_PREFIX}{slug}"

    def start(self) -> DemoReceiver:
        """Listen on ``host:port`` (0: any free port) in a daemon thread."""
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                status = receiver.receive(self.path, self.headers, self.rfile)
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # each delivery is logged once, by ``receive``

        self._server = http.server.ThreadingHTTPServer((self.host, self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(
            target=self._server.serve_forever, name="demo-webhook-receiver", daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def receive(self, path: str, headers: Any, stream: Any) -> int:
        """Verify one delivery; the status to answer (204 verified, 400 not, 404 unknown)."""
        if not path.startswith(PATH_PREFIX):
            return 404
        slug = path[len(PATH_PREFIX) :].strip("/")
        length = int(headers.get("content-length") or 0)
        if length > MAX_BODY:
            return 413
        body = stream.read(length)
        webhook_id = headers.get("webhook-id", "")
        flat = {key.lower(): value for key, value in headers.items()}
        event = self._verify(slug, body, flat)
        with self._lock:
            self.received.append(event)
        if event.verified:
            logger.info(
                "demo receiver: %s %s %s verified", slug, event.event_type, event.webhook_id
            )
            return 204
        logger.warning("demo receiver: %s %s refused: %s", slug, webhook_id, event.error)
        return 400

    def _verify(self, slug: str, body: bytes, headers: dict[str, str]) -> ReceivedEvent:
        webhook_id = headers.get("webhook-id", "")
        errors = []
        for secret in self.secrets_for(slug):
            try:
                payload = Webhook(secret).verify(body, headers)
            except Exception as error:  # the library's WebhookVerificationError and kin
                errors.append(str(error))
                continue
            event_type = payload.get("type") if isinstance(payload, dict) else None
            return ReceivedEvent(slug, webhook_id, event_type, True)
        try:
            event_type = json.loads(body).get("type")
        except (ValueError, AttributeError):
            event_type = None
        reason = errors[0] if errors else "no endpoint of this tenant points here"
        return ReceivedEvent(slug, webhook_id, event_type, False, reason)
