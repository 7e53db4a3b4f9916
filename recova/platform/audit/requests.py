"""The audit trail of API writes: one ``api.request`` event per successful write.

The app factory hands ``record_api_write`` to the request scope, which calls it just
before a write's commit, so the event lands in the same transaction as the change.
"""

from __future__ import annotations

from flask import g, request
from sqlalchemy.orm import Session

from recova.platform.audit.services import record_event


def record_api_write(session: Session, status: int) -> None:
    """Append who called which operation on which ids, for a write in a tenant's scope."""
    principal = g.get("principal")
    if session.info.get("tenant_schema") is None or principal is None:
        return
    record_event(
        session,
        action="api.request",
        actor=principal,
        subject=("endpoint", (request.endpoint or "unknown").rsplit(".", 1)[-1][:64]),
        data={
            "method": request.method,
            "ids": {k: v for k, v in (request.view_args or {}).items() if isinstance(v, int)},
            "status": status,
        },
    )
