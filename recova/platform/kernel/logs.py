"""Structured logs: one JSON object per line, with request id, job id and tenant slug.

- **Request id.** Taken from an incoming ``X-Request-ID`` when it is well formed (1 to
  128 of ``A-Z a-z 0-9 . _ -``), generated otherwise, kept on ``g`` and echoed back in the
  response's ``X-Request-ID``.
- **Job id and tenant.** A job run binds its RQ job id and its tenant id (``JobSpec``
  calls ``job_log_context``), and the slug once the job opens its tenant's scope; a
  request's tenant is the one it resolved (``g.tenant``).
- **No personal data.** Request bodies and query strings are never logged: the one line
  per request names the method, the URL rule, the path, the status and the time. SQL
  parameters never reach messages (the engine uses ``hide_parameters``). As a last guard,
  every formatted line is scrubbed of what looks like a national id, a phone number or an
  e-mail address, and ``extra`` fields with personal names (``national_id``, ``phone``,
  ``body``, ``password``…) are dropped, so a careless ``logger.info(...)`` cannot leak them.

``configure_logging`` installs one handler on the root logger (idempotent); gunicorn's
``gunicorn.conf.py`` points its own error log at ``JsonFormatter`` too.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import re
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

from flask import Flask, Response, g, has_app_context, has_request_context, request
from pythonjsonlogger.json import JsonFormatter as _BaseJsonFormatter
from sqlalchemy import inspect

REQUEST_ID_HEADER = "X-Request-ID"
LOG_FORMATS = ("json", "text")
_WELL_FORMED_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
_QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})  # probes and scrapes: DEBUG

request_logger = logging.getLogger("recova.request")

_job_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "recova_job_log_context", default=None
)

# What personal data looks like in free text. Order matters: longer patterns first.
_PERSONAL_PATTERNS = (
    (re.compile(r"(?<![\w@.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+"), "[email]"),
    (re.compile(r"(?<!\d)\d{17}[\dXx](?![\dA-Za-z])"), "[national-id]"),
    (re.compile(r"(?<![\d+])\+\d{8,15}(?!\d)"), "[phone]"),
    (re.compile(r"(?<!\d)(?:\+?86[- ]?)?1[3-9]\d{9}(?!\d)"), "[phone]"),
    (re.compile(r"(?<!\d)\(?\d{3}\)?[-. ]\d{3}[-. ]\d{4}(?!\d)"), "[phone]"),
)
PERSONAL_FIELDS = frozenset(
    {
        "body",
        "data",
        "email",
        "form",
        "full_name",
        "json",
        "national_id",
        "params",
        "parameters",
        "password",
        "phone",
        "query_string",
        "secret",
        "token",
    }
)
_CONTEXT_FIELDS = ("request_id", "job_id", "tenant", "tenant_id")


_EMAIL_PATTERNS = _PERSONAL_PATTERNS[:1]
_NUMBER_PATTERNS = _PERSONAL_PATTERNS[1:]
# Every number pattern needs ten digits within a short run: a cheap test that skips the
# patterns for almost every line.
_LONG_NUMBER = re.compile(r"\d[\d ().+-]{8,}[\dXx]")
_UNSCRUBBED_FIELDS = frozenset({"time", "level", "logger", "request_id", "job_id", "tenant"})


def scrub(text: str) -> str:
    """``text`` with anything that looks like personal data replaced by a marker."""
    if "@" in text:
        for pattern, marker in _EMAIL_PATTERNS:
            text = pattern.sub(marker, text)
    if _LONG_NUMBER.search(text):
        for pattern, marker in _NUMBER_PATTERNS:
            text = pattern.sub(marker, text)
    return text


def _scrub_value(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, list | tuple):
        return [_scrub_value(item) for item in value]
    if isinstance(value, dict):
        return {key: _scrub_value(item) for key, item in value.items()}
    return value


class ContextFilter(logging.Filter):
    """Adds request_id, job_id, tenant and tenant_id to every record, and drops ``extra``
    fields whose names say they hold personal data."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name in PERSONAL_FIELDS.intersection(record.__dict__):
            delattr(record, name)
        values = _current_context()
        for name in _CONTEXT_FIELDS:
            setattr(record, name, values.get(name))
        return True


def _current_context() -> dict[str, Any]:
    job = _job_context.get()
    if job is not None:
        return job
    values: dict[str, Any] = {}
    if has_app_context():
        known = _request_tenant()
        if known is not None:
            values["tenant"], values["tenant_id"] = known
        if has_request_context():
            values["request_id"] = g.get("request_id")
    return values


def _request_tenant() -> tuple[str, int] | None:
    """The request's tenant as plain values, read without touching the database: after a
    rollback the ORM object is expired, and a log line must never trigger a query."""
    known = g.get("log_tenant")
    if known is None:
        tenant = g.get("tenant")
        if tenant is None:
            return None
        loaded = inspect(tenant).dict
        if loaded.get("slug") is None:
            return None
        known = g.log_tenant = (loaded["slug"], loaded.get("id"))
    return known


def remember_request_tenant(app: Flask) -> None:
    """Note the request's tenant before the request scope ends its session (register this
    after ``init_request_scope``: after_request hooks run in reverse order)."""

    @app.after_request
    def _remember(response: Response) -> Response:
        if has_request_context():
            _request_tenant()
        return response


class JsonFormatter(_BaseJsonFormatter):
    """One JSON object per line: time, level, logger, message, context; scrubbed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("fmt", "%(levelname)s %(name)s %(message)s")
        kwargs.setdefault("rename_fields", {"levelname": "level", "name": "logger"})
        kwargs.setdefault("timestamp", "time")  # ISO 8601, UTC
        kwargs.setdefault("json_ensure_ascii", False)
        super().__init__(*args, **kwargs)

    def format(self, record: logging.LogRecord) -> str:
        for name in _CONTEXT_FIELDS:  # records that skipped the handler's filter
            if not hasattr(record, name):
                setattr(record, name, None)
        return super().format(record)

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        """Scrub every field but the ones Recova itself fills (time, ids, slug)."""
        return {
            key: value if key in _UNSCRUBBED_FIELDS else _scrub_value(value)
            for key, value in log_data.items()
        }


class TextFormatter(logging.Formatter):
    """The same fields for a terminal, scrubbed the same way."""

    def __init__(self) -> None:
        super().__init__(
            "%(asctime)s %(levelname)-7s %(name)s [req=%(request_id)s job=%(job_id)s"
            " tenant=%(tenant)s] %(message)s"
        )

    def format(self, record: logging.LogRecord) -> str:
        for name in _CONTEXT_FIELDS:
            if not hasattr(record, name):
                setattr(record, name, None)
        return scrub(super().format(record))


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record is emitted (it may be replaced
    after start-up, by a test runner for one), like logging's own last-resort handler."""

    recova = True

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr


def configure_logging(level: str, log_format: str) -> None:
    """Recova's loggers at ``level``, one scrubbed handler on the root logger in
    ``log_format``; Authlib never below INFO, because at DEBUG it logs access tokens."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"unknown log format {log_format!r}")
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "recova", False):
            root.removeHandler(handler)
    handler = _StderrHandler()
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root.addHandler(handler)
    logging.getLogger("recova").setLevel(level)
    logging.getLogger("authlib").setLevel(max(logging.INFO, logging.getLevelName(level)))


@contextlib.contextmanager
def job_log_context(job_id: str | None, tenant_id: Any = None) -> Iterator[None]:
    """Log lines inside carry ``job_id`` and ``tenant_id``; the tenant's slug joins them
    once the job enters its tenant's scope (``note_job_tenant``), so logging never queries."""
    token = _job_context.set({"job_id": job_id, "tenant_id": tenant_id})
    try:
        yield
    finally:
        _job_context.reset(token)


def note_job_tenant(slug: str, tenant_id: int) -> None:
    """Within a job, name the tenant its lines belong to (``tenant_scope`` calls this)."""
    values = _job_context.get()
    if values is not None and values.get("tenant_id") == tenant_id:
        values["tenant"] = slug


def init_request_logging(app: Flask) -> None:
    """Assign each request an id (echoed in ``X-Request-ID``) and log one line per request.

    Register before the request scope so the line's time includes the commit.
    """

    @app.before_request
    def _assign_request_id() -> None:
        offered = request.headers.get(REQUEST_ID_HEADER, "")
        g.request_id = offered if _WELL_FORMED_REQUEST_ID.fullmatch(offered) else uuid.uuid4().hex
        g.request_started = time.perf_counter()

    @app.after_request
    def _log_request(response: Response) -> Response:
        request_id = g.get("request_id")
        if request_id is not None:
            response.headers[REQUEST_ID_HEADER] = request_id
        started = g.pop("request_started", None)
        rule = request.url_rule
        request_logger.log(
            logging.DEBUG if request.path in _QUIET_PATHS else logging.INFO,
            "%s %s %s",
            request.method,
            request.path,
            response.status_code,
            extra={
                "method": request.method,
                "route": rule.rule if rule is not None else None,
                "path": request.path,  # never the query string
                "status": response.status_code,
                "duration_ms": (
                    round((time.perf_counter() - started) * 1000, 2) if started else None
                ),
            },
        )
        return response
