"""One database session per request, committed once.

The session is opened on first use and committed once, after the view returned a
success; any error status or exception rolls it back. Jobs the request asks for are
outbox rows in that transaction (``JobSpec.enqueue_after_commit``), handed to RQ after
it; other work that must only follow the commit is registered with
``recova.platform.kernel.db.after_commit``.

Just before that commit, an ``on_write`` hook handed in by the app factory sees every
successful write (POST, PUT, PATCH, DELETE): the factory passes the audit domain's
``record_api_write``, which appends one ``api.request`` event to the tenant's chain in
the same transaction, so no write through the API, including routes added later,
leaves no trace. The kernel itself knows nothing of audit or of principals.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from flask import Flask, Response, current_app, g, request
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from recova.platform.kernel.extension import platform

UNIQUE_VIOLATION = "23505"
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})

#: Called with the request's session and response status before a write commits.
WriteHook = Callable[[Session, int], None]


def db_session() -> Session:
    """The current request's session (opened on first use)."""
    current = g.get("db_session")
    if current is None:
        current = platform().db.session()
        g.db_session = current
    return current


def _finish(response: Response) -> Response:
    current: Session | None = g.pop("db_session", None)
    if current is None:
        return response
    try:
        if response.status_code < 400:
            on_write: WriteHook | None = current_app.extensions.get("recova.on_write")
            if on_write is not None and request.method in WRITES:
                on_write(current, response.status_code)
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


def init_request_scope(app: Flask, *, on_write: WriteHook | None = None) -> None:
    """Install the commit-once and roll-back-on-error hooks, and ``on_write``."""
    if on_write is not None:
        app.extensions["recova.on_write"] = on_write
    app.after_request(_finish)
    app.teardown_request(_teardown)
    app.register_error_handler(IntegrityError, _unique_race_or_raise)
