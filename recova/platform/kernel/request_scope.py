"""One database session, one principal and at most one tenant per request.

The session is opened on first use and committed once, after the view returned a
success; any error status or exception rolls it back. Work that must only happen after
the commit (enqueueing jobs) is registered with ``recova.platform.kernel.db.after_commit``.

Every successful write (POST, PUT, PATCH, DELETE) in a tenant's scope appends one
``api.request`` event to the tenant's audit chain in the same transaction: who called
which operation on which ids. Domain services add their own, richer events (a contact
attempt, a settlement decision); this one guarantees that no configuration change or
other write through the API, including routes added later, leaves no trace.
"""

from __future__ import annotations

import json

from flask import Flask, Response, g, request, session
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from recova.platform.auth.principal import (
    Principal,
    principal_from_token,
    principal_from_user_id,
)
from recova.platform.kernel.extension import platform

SESSION_USER_KEY = "uid"
SESSION_EPOCH_KEY = "epoch"
UNIQUE_VIOLATION = "23505"


def db_session() -> Session:
    """The current request's session (opened on first use)."""
    current = g.get("db_session")
    if current is None:
        current = platform().db.session()
        g.db_session = current
    return current


def current_principal() -> Principal | None:
    """The authenticated caller of this request, resolved once."""
    if "principal" not in g:
        g.principal = _resolve_principal()
    return g.principal


def bearer_token() -> str | None:
    """The bearer token of the request, if it carries one."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def _resolve_principal() -> Principal | None:
    token = bearer_token()
    if token is not None:
        return principal_from_token(db_session(), token)
    user_id = session.get(SESSION_USER_KEY)
    epoch = session.get(SESSION_EPOCH_KEY)
    if isinstance(user_id, int) and isinstance(epoch, int):
        return principal_from_user_id(db_session(), user_id, epoch)
    return None


def _finish(response: Response) -> Response:
    current: Session | None = g.pop("db_session", None)
    if current is None:
        return response
    try:
        if response.status_code < 400:
            _audit_write(current, response.status_code)
            current.commit()
        else:
            current.rollback()
    except IntegrityError as error:
        current.rollback()
        if not _is_unique_violation(error):
            raise
        # A concurrent request won a uniqueness race the service had checked for.
        return _conflict_response()
    finally:
        current.close()
    return response


WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _audit_write(current: Session, status: int) -> None:
    if request.method not in WRITES or current.info.get("tenant_schema") is None:
        return
    principal = g.get("principal")
    if principal is None:
        return
    from recova.platform.audit.services import record_event

    record_event(
        current,
        action="api.request",
        actor=principal,
        subject=("endpoint", (request.endpoint or "unknown").rsplit(".", 1)[-1][:64]),
        data={
            "method": request.method,
            "ids": {k: v for k, v in (request.view_args or {}).items() if isinstance(v, int)},
            "status": status,
        },
    )


def _is_unique_violation(error: IntegrityError) -> bool:
    return getattr(error.orig, "sqlstate", None) == UNIQUE_VIOLATION


def _unique_race_or_raise(error: IntegrityError) -> Response:
    if not _is_unique_violation(error):
        raise error  # a foreign key or check failing is a bug to see, not a conflict
    return _conflict_response()


def _conflict_response() -> Response:
    body = {
        "code": 409,
        "status": "Conflict",
        "message": "the change conflicts with data saved at the same moment; retry",
    }
    return Response(json.dumps(body), status=409, mimetype="application/json")


def _teardown(exc: BaseException | None) -> None:
    current: Session | None = g.pop("db_session", None)
    if current is not None:  # an exception skipped _finish
        current.rollback()
        current.close()


def init_request_scope(app: Flask) -> None:
    """Install the commit-once and roll-back-on-error hooks."""
    app.after_request(_finish)
    app.teardown_request(_teardown)
    app.register_error_handler(IntegrityError, _unique_race_or_raise)
