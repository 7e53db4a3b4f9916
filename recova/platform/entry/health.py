"""Liveness and readiness probes."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from sqlalchemy import text

from recova.platform.kernel.extension import platform

blp = Blueprint("health", __name__)


@blp.get("/healthz")
def healthz() -> Response:
    """Liveness: the process answers. Touches no dependency, so a database outage
    does not make Kubernetes restart healthy web pods."""
    return jsonify(status="ok")


@blp.get("/readyz")
def readyz() -> tuple[Response, int]:
    """Readiness: PostgreSQL and Redis both answer; 503 naming what is down otherwise."""
    checks: dict[str, str] = {}
    objects = platform()
    try:
        with objects.db.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        checks["postgres"] = "ok"
    except Exception as exc:  # any failure means not ready; say which
        checks["postgres"] = f"down: {type(exc).__name__}"
    try:
        objects.redis.ping()
        checks["redis"] = "ok"
    except Exception as exc:  # any failure means not ready; say which
        checks["redis"] = f"down: {type(exc).__name__}"
    ready = all(value == "ok" for value in checks.values())
    return jsonify(status="ready" if ready else "unavailable", checks=checks), (
        200 if ready else 503
    )
