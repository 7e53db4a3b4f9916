"""``Idempotency-Key`` on every POST and PATCH (draft-ietf-httpapi-idempotency-key-header).

A caller that may retry a write sends a key of its choosing. The first request with a
key runs; a retry with the same key and the same request (method, path, query and body
bytes: the *fingerprint*) gets the stored status, body and headers back without running
again, marked ``Idempotency-Replayed: true``; a retry while the first still runs is a
409; the same key with a different request is a 422. Keys belong to one caller in one
tenant (``scope`` and ``tenant_id``, which the access rule hands in: the kernel knows
nothing of principals) and are kept ``RETENTION``; an older row counts as absent and is
purged a few at a time by later writes.

How concurrent duplicates are kept apart: before the view runs, the request takes a
transaction-level advisory lock on (scope, tenant, key) with ``pg_try_advisory_xact_lock``
in its own transaction. Not obtained means a twin is running: 409 at once, no waiting.
Obtained, a committed row answers the retry; without one the view runs and, just before
the request scope commits, the response is stored in the same transaction, so the row
exists exactly when the change does, and the lock is only released by that commit.

Only successful (2xx) responses are stored: an error rolls the request back anyway, and
a caller can then correct a rejected request and send it again under the same key.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass
from typing import Any

from apispec import BasePlugin
from flask import Flask, Response, g, request
from sqlalchemy import (
    BigInteger,
    DateTime,
    Identity,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
    delete,
    func,
    select,
)
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.orm import Mapped, Session, mapped_column

from recova.platform.kernel.db import SharedModel
from recova.platform.kernel.errors import abort
from recova.platform.kernel.request_scope import WriteHook, db_session

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotency-Replayed"
METHODS = frozenset({"POST", "PATCH"})
RETENTION = dt.timedelta(hours=24)
#: Response headers a replay repeats (the rest, such as a request id, are the replay's own).
STORED_HEADERS = ("Content-Type", "Location", "ETag")
#: Expired rows one write purges, so the table stays small without a periodic job.
PURGE_BATCH = 20
#: A key: 1 to 255 visible ASCII characters but ``"`` and ``\``, bare or as the draft's
#: Structured Field string (in double quotes).
KEY_CHARS = r"[!#-\[\]-~]{1,255}"
KEY_PATTERN = rf'^(?:"{KEY_CHARS}"|{KEY_CHARS})$'
_KEY = re.compile(KEY_PATTERN)
RUNNING = "a request with this Idempotency-Key is still running; retry later"
REUSED = "this Idempotency-Key was used with a different request"


class IdempotencyRecord(SharedModel):
    """The stored answer to the first request sent with one caller's key in one tenant."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (
        UniqueConstraint("scope", "tenant_id", "key", name="uq_idempotency_keys_scope_key"),
        Index("ix_idempotency_keys_created_at", "created_at"),
        SharedModel.__table_args__,
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    #: The caller: ``client:<id>`` or ``user:<id>``.
    scope: Mapped[str] = mapped_column(String(64))
    #: The tenant the request worked on; 0 for none (platform operations).
    tenant_id: Mapped[int] = mapped_column(Integer)
    key: Mapped[str] = mapped_column(String(255))
    fingerprint: Mapped[bytes] = mapped_column(LargeBinary(32))
    status: Mapped[int] = mapped_column(Integer)
    headers: Mapped[dict[str, str]] = mapped_column(JSONB)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


@dataclass(frozen=True)
class _Claim:
    scope: str
    tenant_id: int
    key: str
    fingerprint: bytes


def parse_key(value: str) -> str:
    """The key a header value carries, or a 422 naming the header."""
    if not _KEY.fullmatch(value):
        abort(
            422,
            message=f"invalid {HEADER} header",
            errors={
                "headers": {
                    HEADER: [
                        "Must be 1 to 255 visible ASCII characters other than"
                        ' " and \\, optionally in double quotes.'
                    ]
                }
            },
        )
    return value[1:-1] if value.startswith('"') else value


def request_fingerprint() -> bytes:
    """What makes two requests the same: method, path, query and body.

    The body is its exact bytes, except a multipart form, whose boundary is drawn afresh
    for every send: its fields and files are hashed instead (each file read in chunks
    and rewound for the view).
    """
    digest = hashlib.sha256()
    for part in (request.method, request.path, request.query_string.decode("latin-1")):
        digest.update(part.encode())
        digest.update(b"\0")
    if request.mimetype == "multipart/form-data":
        for name, value in sorted(request.form.items(multi=True)):
            digest.update(f"field\0{name}\0{value}\0".encode())
        for name, upload in sorted(request.files.items(multi=True), key=lambda item: item[0]):
            digest.update(f"file\0{name}\0{upload.filename}\0".encode())
            while chunk := upload.stream.read(1 << 16):
                digest.update(chunk)
            upload.stream.seek(0)
            digest.update(b"\0")
    else:
        digest.update(request.get_data(cache=True))
    return digest.digest()


def advisory_lock_id(scope: str, tenant_id: int, key: str) -> int:
    """The advisory lock a request holds while it runs with this key."""
    raw = hashlib.sha256(f"idempotency\0{scope}\0{tenant_id}\0{key}".encode()).digest()
    return int.from_bytes(raw[:8], "big", signed=True)


def claim_idempotency_key(*, scope: str, tenant_id: int | None) -> Response | None:
    """Apply the request's ``Idempotency-Key``, if any: the stored answer to replay, or
    None to run the view (whose answer is then stored); aborts 409 or 422.

    Call once the caller (``scope``) and the tenant are known, before the body is parsed.
    """
    value = request.headers.get(HEADER)
    if value is None or request.method not in METHODS:
        return None
    key = parse_key(value)
    tenant = tenant_id or 0
    session = db_session()
    locked = session.scalar(
        select(func.pg_try_advisory_xact_lock(advisory_lock_id(scope, tenant, key)))
    )
    if not locked:
        abort(409, message=RUNNING, headers={"Retry-After": "1"})
    fingerprint = request_fingerprint()
    stored = session.scalar(
        select(IdempotencyRecord).where(
            IdempotencyRecord.scope == scope,
            IdempotencyRecord.tenant_id == tenant,
            IdempotencyRecord.key == key,
            IdempotencyRecord.created_at > func.now() - RETENTION,
        )
    )
    if stored is None:
        g.idempotency_claim = _Claim(scope, tenant, key, fingerprint)
        return None
    if stored.fingerprint != fingerprint:
        abort(
            422,
            message=REUSED,
            errors={"headers": {HEADER: ["Already used with a different request."]}},
        )
    g.idempotency_replayed = True
    replay = Response(stored.body, status=stored.status)
    replay.headers.clear()  # only what was stored, not Response's default Content-Type
    replay.headers.update(stored.headers)
    replay.headers[REPLAYED_HEADER] = "true"
    return replay


def _store(session: Session, claim: _Claim, response: Response) -> None:
    headers = {name: response.headers[name] for name in STORED_HEADERS if name in response.headers}
    row = {
        "scope": claim.scope,
        "tenant_id": claim.tenant_id,
        "key": claim.key,
        "fingerprint": claim.fingerprint,
        "status": response.status_code,
        "headers": headers,
        "body": response.get_data(),
    }
    # An expired row of the same key is replaced (the lock makes this request its only writer).
    upsert = insert(IdempotencyRecord).values(**row)
    update = {name: upsert.excluded[name] for name in row if name not in ("scope", "key")}
    session.execute(
        upsert.on_conflict_do_update(
            constraint="uq_idempotency_keys_scope_key",
            set_={**update, "created_at": func.now()},
        )
    )
    purge_expired_keys(session, limit=PURGE_BATCH)


def purge_expired_keys(session: Session, *, limit: int | None = None) -> int:
    """Delete keys older than ``RETENTION`` (at most ``limit``, skipping locked rows)."""
    expired = (
        select(IdempotencyRecord.id)
        .where(IdempotencyRecord.created_at <= func.now() - RETENTION)
        .with_for_update(skip_locked=True)
    )
    if limit is not None:
        expired = expired.limit(limit)
    result = session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.id.in_(expired)))
    return int(getattr(result, "rowcount", 0) or 0)


def _store_answer(response: Response) -> Response:
    claim: _Claim | None = g.pop("idempotency_claim", None)
    session: Session | None = g.get("db_session")
    if claim is None or session is None or response.status_code >= 300:
        return response
    if response.is_streamed:
        return response  # a streamed body cannot be kept; no POST or PATCH streams today
    _store(session, claim, response)
    return response


def is_replay() -> bool:
    """Whether this request was answered from a stored response."""
    return bool(g.get("idempotency_replayed"))


def skip_replays(hook: WriteHook) -> WriteHook:
    """``hook`` for writes that ran: a replay changed nothing, so it is not a write."""

    def on_write(session: Session, status: int) -> None:
        if not is_replay():
            hook(session, status)

    return on_write


def init_idempotency(app: Flask) -> None:
    """Store the answers of keyed requests; call after ``init_request_scope`` (after_request
    hooks run in reverse order, so this one runs before the request scope commits)."""
    app.after_request(_store_answer)


# --- the OpenAPI document ------------------------------------------------------------------

HEADER_PARAMETER: dict[str, Any] = {
    "name": HEADER,
    "in": "header",
    "required": False,
    "description": (
        "Makes a retry safe: the first request with a key runs; a retry with the same key"
        " and the same request answers the stored status and body (with"
        f" `{REPLAYED_HEADER}: true`), a retry while the first still runs answers 409, and"
        " the same key with a different request answers 422. Keys belong to the caller and"
        " the tenant and are kept 24 hours; only successful answers are stored."
    ),
    "schema": {"type": "string", "pattern": KEY_PATTERN, "minLength": 1, "maxLength": 257},
}


class IdempotencyPlugin(BasePlugin):
    """Documents the ``Idempotency-Key`` header and its 409 and 422 on every POST and PATCH."""

    def operation_helper(
        self, path: str | None = None, operations: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        for method, operation in (operations or {}).items():
            if method.upper() not in METHODS or not isinstance(operation, dict):
                continue
            parameters = operation.setdefault("parameters", [])
            if not any(isinstance(p, dict) and p.get("name") == HEADER for p in parameters):
                parameters.append(dict(HEADER_PARAMETER))
            responses = operation.setdefault("responses", {})
            responses.setdefault("409", "CONFLICT")
            responses.setdefault("422", "UNPROCESSABLE_ENTITY")
