"""Whom a rate limit counts: the policies of ``recova.platform.kernel.ratelimit`` keyed by caller.

Every request but the probes, the metrics scrape, the docs' own files and the token
endpoint spends the ``default`` budget of its principal (``client:<id>`` for an OAuth
client, ``user:<id>`` for a portal user, through the API or the portal pages alike);
anonymous requests, and ones with an unknown or expired token, spend the budget of their
address. Writes (POST, PUT, PATCH, DELETE) also spend the ``writes`` budget of the same
key. ``/oauth/token`` is limited per client id (from HTTP Basic auth or the form's
``client_id``), and per address, so guessing secrets or spraying client ids is bounded.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection

from flask import request

from recova.platform.auth.oauth import TOKEN_PATH
from recova.platform.auth.principal import current_principal
from recova.platform.kernel.config import Settings
from recova.platform.kernel.ratelimit import WRITE_METHODS, Policy

#: Longer client ids are hashed: a key in Redis stays small whatever a caller sends.
_CLIENT_ID_KEY_LIMIT = 128


def caller_key() -> str:
    """``client:<id>`` or ``user:<id>`` for an authenticated request, else its address."""
    principal = current_principal()
    if principal is None:
        return address_key()
    return f"{principal.kind}:{principal.subject_id}"


def address_key() -> str:
    """The request's remote address (the proxy's, unless the server is told otherwise)."""
    return f"address:{request.remote_addr or 'unknown'}"


def token_client_id() -> str | None:
    """The client id a token request names, in its Basic credentials or its form."""
    credentials = request.authorization
    if credentials is not None and credentials.type == "basic" and credentials.username:
        return credentials.username
    client_id = request.form.get("client_id")
    return client_id or None


def token_client_key() -> str | None:
    """``client_id:<id>`` of a token request, or None when it names no client."""
    client_id = token_client_id()
    if client_id is None:
        return None
    if len(client_id) > _CLIENT_ID_KEY_LIMIT:
        client_id = "sha256-" + hashlib.sha256(client_id.encode()).hexdigest()
    return f"client_id:{client_id}"


def rate_limit_policies(settings: Settings, *, exempt_paths: Collection[str]) -> list[Policy]:
    """The platform's policies with the operator's limits; ``exempt_paths`` (exact paths or
    prefixes ending in ``/``) count against none of them."""

    def exempt() -> bool:
        path = request.path
        return any(
            path.startswith(exempt) if exempt.endswith("/") else path == exempt
            for exempt in exempt_paths
        )

    def for_callers(key: Callable[[], str]) -> Callable[[], str | None]:
        def partition() -> str | None:
            if request.path == TOKEN_PATH or exempt():
                return None
            return key()

        return partition

    def for_token_requests(key: Callable[[], str | None]) -> Callable[[], str | None]:
        def partition() -> str | None:
            return key() if request.path == TOKEN_PATH else None

        return partition

    return [
        Policy(
            name="default",
            limit=settings.rate_limit_api,
            key=for_callers(caller_key),
            per="per client or user (per address when anonymous)",
        ),
        Policy(
            name="writes",
            limit=settings.rate_limit_writes,
            key=for_callers(caller_key),
            per="writes per client or user (per address when anonymous)",
            methods=WRITE_METHODS,
        ),
        Policy(
            name="token-client",
            limit=settings.rate_limit_token,
            key=for_token_requests(token_client_key),
            per="token requests per client id",
        ),
        Policy(
            name="token-address",
            limit=settings.rate_limit_token_address,
            key=for_token_requests(address_key),
            per="token requests per address",
        ),
    ]
