"""Aborting a request with the API's one error shape, and the domain errors that map to it.

A view never translates a service's refusal itself: a service raises a ``DomainError``
subclass, which says what to answer (its status, message, details and headers), and the
one handler ``register_error_handlers`` installs answers it exactly as ``abort`` would.
"""

from __future__ import annotations

from typing import Any, NoReturn

from flask import Flask, current_app
from flask.typing import ResponseReturnValue
from flask_smorest import abort as _smorest_abort
from werkzeug.exceptions import HTTPException


def abort(code: int, **kwargs: Any) -> NoReturn:
    """Stop the request with ``code``; ``message``, ``errors`` and ``headers`` go in the body.

    flask-smorest's ``abort`` always raises but is not annotated so; this one says so, so
    type checkers know the code after it is unreachable.
    """
    _smorest_abort(code, **kwargs)
    raise AssertionError("flask-smorest abort returned")  # pragma: no cover


class DomainError(Exception):
    """A request a service refuses, and how the API answers it.

    Each domain's errors subclass it (keeping their own base, such as ``ValueError``, for
    the CLIs and callers that catch that). ``status`` is the HTTP status (422 unless a
    subclass or instance says otherwise: 409 for a conflict with the current state, 404
    for something not found, 403 for a refusal of the caller); ``error_message`` the
    message (the exception's text unless overridden); ``error_details`` the body's
    ``errors`` (such as ``{"json": {field: [message]}}``), omitted when ``None``;
    ``error_headers`` extra response headers (such as ``Retry-After``).
    """

    status: int = 422

    @property
    def error_message(self) -> str:
        return str(self)

    @property
    def error_details(self) -> dict[str, Any] | None:
        return None

    @property
    def error_headers(self) -> dict[str, str] | None:
        return None


def _answer_domain_error(error: DomainError) -> ResponseReturnValue:
    """Answer ``error`` as ``abort`` in the view would have: the same exception, handled by
    the app's own HTTP error handler, so the body, status and headers are the same."""
    options: dict[str, Any] = {"message": error.error_message}
    if (details := error.error_details) is not None:
        options["errors"] = details
    if (headers := error.error_headers) is not None:
        options["headers"] = headers
    try:
        abort(error.status, **options)
    except HTTPException as http_error:
        http_error.__cause__ = error
        return current_app.handle_user_exception(http_error)


def register_error_handlers(app: Flask) -> None:
    """Answer every ``DomainError`` a view lets through with the API's error shape.

    Only domain errors: a bare ``ValueError`` or ``LookupError`` is a bug, and stays a 500.
    """
    app.register_error_handler(DomainError, _answer_domain_error)
