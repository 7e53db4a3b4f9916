"""Rate limits per caller, counted in Redis so every web replica shares the same budget.

Flask-Limiter (over the ``limits`` library) counts each ``Policy`` in fixed windows in
the platform's Redis, under keys that start with the queue prefix, so test runs and
deployments sharing a server never count each other's requests. A policy says what it
limits, how much (``600/minute``) and whom: its ``key`` names the partition (``client:7``,
``user:3``, ``address:10.0.0.1``) or None where the policy does not apply. The kernel knows
nothing of principals: the app factory hands in the key functions of ``auth``.

Every answer a policy counted carries the two fields of the IETF draft
draft-ietf-httpapi-ratelimit-headers-10 (the field syntax is that of drafts -08 to -10),
one list member per policy counted, ``q`` the quota and ``w`` the window in seconds,
``r`` what remains and ``t`` the seconds until the window resets::

    RateLimit-Policy: "default";q=600;w=60, "writes";q=120;w=60
    RateLimit: "default";r=598;t=42, "writes";r=119;t=42

Flask-Limiter's own ``X-RateLimit-*`` fields (an older convention) are off. A request over
a limit is refused with ``429`` in the app's one error shape (the app's HTTP error handler
renders it: JSON under the API, the error page for portal pages) and ``Retry-After`` in
seconds. When Redis cannot be reached the request is let through unlimited (the error is
logged): a rate limit protects the service, and must not take it down with Redis.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from apispec import BasePlugin
from flask import Flask, Response, request
from flask_limiter import ApplicationLimit, Limiter, RequestLimit
from limits import parse
from redis import ConnectionPool

POLICY_HEADER = "RateLimit-Policy"
STATE_HEADER = "RateLimit"
#: Flask-Limiter counts in fixed windows: one INCR per policy per request, and the window's
#: end is exactly the draft's ``t``.
STRATEGY = "fixed-window"
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")


@dataclass(frozen=True)
class Policy:
    """One budget: ``limit`` requests (``600/minute``) per partition that ``key`` names."""

    #: The draft's policy identifier, and the counter's scope in Redis.
    name: str
    limit: str
    #: The partition of this request (``client:7``); None where the policy does not apply.
    key: Callable[[], str | None]
    #: Who the budget belongs to, for the 429's message ("per client or user").
    per: str
    #: Only requests with these methods count (default: all).
    methods: Sequence[str] | None = None


def limits_storage_uri(redis_url: str) -> str:
    """The ``limits`` storage URI of a Redis URL: ``unix://`` sockets (the embedded Redis)
    are ``redis+unix://`` there; TCP URLs (``redis://``, ``rediss://``) are the same."""
    if redis_url.startswith("unix://"):
        return "redis+unix://" + redis_url.removeprefix("unix://")
    return redis_url


def storage_key_prefix(queue_prefix: str) -> str:
    """Where the counters live in Redis: under the deployment's (or test run's) prefix."""
    return f"{queue_prefix}recova:ratelimit"


def init_rate_limits(
    app: Flask,
    *,
    redis_url: str,
    connection_pool: ConnectionPool,
    queue_prefix: str,
    policies: Sequence[Policy],
) -> Limiter:
    """Count ``policies`` on every request of ``app`` and add the draft's header fields.

    The counters go through ``connection_pool`` (the platform's own Redis pool, with its
    timeouts); ``redis_url`` only tells ``limits`` which kind of server it talks to.
    """
    options: dict[str, Any] = {
        "connection_pool": connection_pool,
        "key_prefix": storage_key_prefix(queue_prefix),
    }
    limiter = Limiter(
        key_func=_no_default_key,
        application_limits=[_application_limit(policy) for policy in policies],
        storage_uri=limits_storage_uri(redis_url),
        storage_options=cast(dict[str, str | int], options),
        strategy=STRATEGY,
        headers_enabled=False,
        swallow_errors=True,
    )
    limiter.init_app(app)
    app.after_request(_header_writer(limiter))
    app.extensions["recova.ratelimit"] = limiter
    return limiter


def _no_default_key() -> str:
    raise AssertionError("every limit has its own key function")  # pragma: no cover


def _application_limit(policy: Policy) -> ApplicationLimit:
    item = parse(policy.limit)
    message = (
        f"too many requests: at most {item.amount} per {_window_words(item.get_expiry())}"
        f" {policy.per} ({policy.name!r} limit); retry after the seconds in Retry-After"
    )
    return ApplicationLimit(
        limit_provider=policy.limit,
        key_function=lambda: _partition(policy) or "-",
        scope=policy.name,
        methods=list(policy.methods) if policy.methods else None,
        exempt_when=lambda: _partition(policy) is None,
        error_message=message,
    )


def _partition(policy: Policy) -> str | None:
    """The policy's key for this request, computed once per request (kept in the request's
    environ: ``g`` lives as long as the app context, which a test may keep over requests)."""
    keys: dict[str, str | None] = request.environ.setdefault("recova.rate_limit_keys", {})
    if policy.name not in keys:
        keys[policy.name] = policy.key()
    return keys[policy.name]


def _window_words(seconds: int) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            count = seconds // size
            return unit if count == 1 else f"{count} {unit}s"
    return "second" if seconds == 1 else f"{seconds} seconds"


@dataclass(frozen=True)
class LimitState:
    """Where one request stands against one policy."""

    policy: str
    quota: int
    window: int
    remaining: int
    reset: int
    breached: bool


def current_limit_states(limiter: Limiter) -> list[LimitState]:
    """The policies this request was counted against, with what remains of each."""
    return [_state(counted) for counted in limiter.current_limits]


def _state(counted: RequestLimit) -> LimitState:
    reset_time, remaining = counted.window
    window = counted.limit.get_expiry()
    # Redis gives the key's TTL in whole seconds: never say more than the window.
    reset = min(window, max(0, math.ceil(reset_time - time.time())))
    return LimitState(
        policy=counted.request_args[-1],  # the scope: the policy's name
        quota=counted.limit.amount,
        window=window,
        remaining=max(0, remaining),
        reset=reset,
        breached=counted.breached,
    )


def policy_field(states: Sequence[LimitState]) -> str:
    """The ``RateLimit-Policy`` value: each policy's quota and window."""
    return ", ".join(f'"{s.policy}";q={s.quota};w={s.window}' for s in states)


def state_field(states: Sequence[LimitState]) -> str:
    """The ``RateLimit`` value: what remains of each policy and when it resets."""
    return ", ".join(f'"{s.policy}";r={s.remaining};t={s.reset}' for s in states)


def _header_writer(limiter: Limiter) -> Callable[[Response], Response]:
    def write_rate_limit_fields(response: Response) -> Response:
        if not limiter.current_limits:
            return response
        try:
            states = current_limit_states(limiter)
        except Exception:  # Redis away: the request was let through; say nothing of limits
            limiter.logger.exception("rate limit state unavailable")
            return response
        response.headers[POLICY_HEADER] = policy_field(states)
        response.headers[STATE_HEADER] = state_field(states)
        breached = [s for s in states if s.breached]
        if response.status_code == 429 and breached and "Retry-After" not in response.headers:
            response.headers["Retry-After"] = str(max(1, *(s.reset for s in breached)))
        return response

    return write_rate_limit_fields


# --- the OpenAPI document ------------------------------------------------------------------

RATE_LIMITED_RESPONSE = "RATE_LIMITED"
RATE_LIMIT_HEADERS: dict[str, Any] = {
    POLICY_HEADER: {
        "description": (
            "The quota policies this request counted against"
            ' (draft-ietf-httpapi-ratelimit-headers): `"default";q=600;w=60` is 600'
            " requests per 60 seconds."
        ),
        "schema": {"type": "string"},
    },
    STATE_HEADER: {
        "description": (
            "What remains of each policy: `r` requests, until the window resets in `t` seconds."
        ),
        "schema": {"type": "string"},
    },
}


def rate_limited_response(error_schema: str = "Error") -> dict[str, Any]:
    """The 429 every operation may answer, with ``Retry-After`` and the draft's fields."""
    return {
        "description": (
            "Too many requests: the caller (OAuth client or portal user; anonymous callers"
            " by address) spent its budget. Retry after the seconds in `Retry-After`."
        ),
        "headers": {
            "Retry-After": {
                "description": "Seconds until the exhausted window resets.",
                "schema": {"type": "integer", "minimum": 1},
            },
            **RATE_LIMIT_HEADERS,
        },
        "content": {
            "application/json": {"schema": {"$ref": f"#/components/schemas/{error_schema}"}}
        },
    }


class RateLimitPlugin(BasePlugin):
    """Documents the 429 (``Retry-After``, ``RateLimit``, ``RateLimit-Policy``) on every
    operation; the app factory registers the ``RATE_LIMITED`` response component."""

    def operation_helper(
        self, path: str | None = None, operations: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        for operation in (operations or {}).values():
            if isinstance(operation, dict):
                operation.setdefault("responses", {}).setdefault("429", RATE_LIMITED_RESPONSE)
