"""``Idempotency-Key`` on POST and PATCH: replays, refusals, scoping, expiry and a race.

The operation under test is adding an outcome code (``POST /api/v1/contact/outcome-codes``)
and relabelling it (PATCH): a code is unique in its tenant, so a second run of the same
request, had it happened, would show as the service's own 409 or as a second code.
"""

from __future__ import annotations

import secrets
import threading
from collections import Counter
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select, text, update

from recova.platform.kernel.extension import platform
from recova.platform.kernel.idempotency import (
    HEADER,
    REPLAYED_HEADER,
    RUNNING,
    IdempotencyRecord,
    advisory_lock_id,
    purge_expired_keys,
)
from tests.support import Caller, World, bearer, build_world, login

CODES = "/api/v1/contact/outcome-codes"


@pytest.fixture(scope="module")
def world(app: Flask) -> World:
    return build_world(app)


@pytest.fixture(scope="module")
def client_a(world: World) -> Caller:
    return bearer(world.app, world.a.client_id, world.a.client_secret)


def _key() -> str:
    return f"key-{secrets.token_hex(8)}"


def _code_body(label: str = "Called back") -> dict[str, Any]:
    return {"code": f"IK-{secrets.token_hex(4)}", "label": label, "result": "connected"}


def send(caller: Caller, method: str, path: str, body: Any, key: str | None) -> Any:
    headers = dict(caller.headers)
    if key is not None:
        headers[HEADER] = key
    return caller.client.open(path, method=method, json=body, headers=headers)


def codes_named(caller: Caller, code: str) -> list[dict[str, Any]]:
    listed = caller.get(CODES)
    assert listed.status_code == 200
    return [c for c in listed.json if c["code"] == code]


def test_a_retry_replays_the_stored_answer_and_creates_nothing(client_a: Caller) -> None:
    key, body = _key(), _code_body()
    first = send(client_a, "POST", CODES, body, key)
    assert first.status_code == 201, first.get_data(as_text=True)
    assert REPLAYED_HEADER not in first.headers
    again = send(client_a, "POST", CODES, body, key)
    assert again.status_code == 201
    assert again.get_data() == first.get_data()
    assert again.headers["Content-Type"] == first.headers["Content-Type"]
    assert again.headers[REPLAYED_HEADER] == "true"
    # The draft's Structured Field form (a quoted string) names the same key.
    quoted = send(client_a, "POST", CODES, body, f'"{key}"')
    assert quoted.status_code == 201
    assert quoted.headers[REPLAYED_HEADER] == "true"
    assert len(codes_named(client_a, body["code"])) == 1


def test_patch_is_replayed_too(client_a: Caller) -> None:
    made = send(client_a, "POST", CODES, _code_body(), None).json
    item, key = f"{CODES}/{made['id']}", _key()
    first = send(client_a, "PATCH", item, {"label": "First label"}, key)
    assert first.status_code == 200
    # Changed meanwhile without the key: the replay answers what the keyed request did.
    assert send(client_a, "PATCH", item, {"label": "Other"}, None).status_code == 200
    again = send(client_a, "PATCH", item, {"label": "First label"}, key)
    assert again.headers[REPLAYED_HEADER] == "true"
    assert again.json["label"] == "First label"
    assert codes_named(client_a, made["code"])[0]["label"] == "Other"


def test_the_same_key_with_another_request_is_refused(client_a: Caller) -> None:
    key, body = _key(), _code_body()
    assert send(client_a, "POST", CODES, body, key).status_code == 201
    other = send(client_a, "POST", CODES, {**body, "label": "Something else"}, key)
    assert other.status_code == 422
    assert "different request" in other.json["message"]
    assert HEADER in other.json["errors"]["headers"]
    made = send(client_a, "PATCH", f"{CODES}/1", {"label": "x"}, key)
    assert made.status_code == 422  # another path is another request


@pytest.mark.parametrize("bad", ["", "x" * 256, "with space", 'a"b', '"', '""', "é"])
def test_a_malformed_key_is_refused_naming_the_header(client_a: Caller, bad: str) -> None:
    answer = send(client_a, "POST", CODES, _code_body(), bad)
    assert answer.status_code == 422, bad
    assert HEADER in answer.json["errors"]["headers"]


def test_keys_belong_to_the_caller_and_the_tenant(world: World, client_a: Caller) -> None:
    key, body = _key(), _code_body()
    assert send(client_a, "POST", CODES, body, key).status_code == 201
    # Another caller of the same tenant: the key is theirs, so another request runs.
    admin_a = login(world.app, world.a.admin_email)
    theirs = send(admin_a, "POST", CODES, _code_body(), key)
    assert theirs.status_code == 201
    assert REPLAYED_HEADER not in theirs.headers
    # Another tenant's client with the same key and body: runs in its own tenant.
    client_b = bearer(world.app, world.b.client_id, world.b.client_secret)
    in_b = send(client_b, "POST", CODES, body, key)
    assert in_b.status_code == 201
    assert REPLAYED_HEADER not in in_b.headers
    assert len(codes_named(client_b, body["code"])) == 1
    # A platform admin naming tenant A has a key of its own too.
    root = login(world.app, world.platform_admin_email)
    named = f"/api/v1/tenants/{world.a.slug}/contact/outcome-codes"
    assert send(root, "POST", named, _code_body(), key).status_code == 201


def test_a_retry_while_the_first_runs_is_a_conflict(
    world: World, client_a: Caller, app: Flask
) -> None:
    key, body = _key(), _code_body()
    lock = advisory_lock_id(f"client:{world.a.client_pk}", world.a.id, key)
    with platform(app).db.engine.connect() as other:
        assert other.scalar(text("SELECT pg_try_advisory_lock(:id)"), {"id": lock})
        running = send(client_a, "POST", CODES, body, key)
        assert running.status_code == 409
        assert running.json["message"] == RUNNING
        assert running.headers["Retry-After"] == "1"
        other.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": lock})
    assert codes_named(client_a, body["code"]) == []
    assert send(client_a, "POST", CODES, body, key).status_code == 201


def test_twenty_identical_requests_at_once_create_one_object(
    world: World, client_a: Caller, app: Flask
) -> None:
    key, body = _key(), _code_body()
    barrier = threading.Barrier(20)
    answers: list[tuple[int, bool, bytes]] = []
    errors: list[BaseException] = []

    def one() -> None:
        try:
            caller = Caller(app.test_client(), "racer", dict(client_a.headers))
            barrier.wait(timeout=30)
            answer = send(caller, "POST", CODES, body, key)
            answers.append(
                (answer.status_code, REPLAYED_HEADER in answer.headers, answer.get_data())
            )
        except BaseException as error:  # reported below, in the test's own thread
            errors.append(error)

    threads = [threading.Thread(target=one) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    kinds = Counter((status, replayed) for status, replayed, _ in answers)
    assert kinds[(201, False)] == 1, kinds
    assert set(kinds) <= {(201, False), (201, True), (409, False)}, kinds
    assert sum(kinds.values()) == 20
    ran = next(data for status, replayed, data in answers if status == 201 and not replayed)
    assert all(data == ran for status, _, data in answers if status == 201)
    assert len(codes_named(client_a, body["code"])) == 1


def test_a_key_older_than_a_day_no_longer_replays(
    world: World, client_a: Caller, app: Flask
) -> None:
    key, body = _key(), _code_body()
    assert send(client_a, "POST", CODES, body, key).status_code == 201
    session = platform(app).db.session()
    try:
        session.execute(
            update(IdempotencyRecord)
            .where(IdempotencyRecord.key == key)
            .values(created_at=text("now() - interval '25 hours'"))
        )
        session.commit()
        # Absent now: another request with the key runs instead of being refused.
        fresh = _code_body()
        ran = send(client_a, "POST", CODES, fresh, key)
        assert ran.status_code == 201
        assert REPLAYED_HEADER not in ran.headers
        assert len(codes_named(client_a, fresh["code"])) == 1
        # And the aged row is purged.
        other = _key()
        assert send(client_a, "POST", CODES, _code_body(), other).status_code == 201
        session.execute(
            update(IdempotencyRecord)
            .where(IdempotencyRecord.key == other)
            .values(created_at=text("now() - interval '25 hours'"))
        )
        assert purge_expired_keys(session) >= 1
        session.commit()
        left = session.scalars(
            select(IdempotencyRecord.key).where(IdempotencyRecord.key.in_([key, other]))
        ).all()
        assert left == [key]  # the replaced row is a fresh one
    finally:
        session.close()


def test_errors_are_not_stored_so_a_corrected_request_may_reuse_the_key(
    client_a: Caller,
) -> None:
    key, body = _key(), _code_body()
    rejected = send(client_a, "POST", CODES, {**body, "result": "no-such-result"}, key)
    assert rejected.status_code == 422
    assert send(client_a, "POST", CODES, body, key).status_code == 201


def test_without_the_header_nothing_changes(client_a: Caller) -> None:
    body = _code_body()
    first = send(client_a, "POST", CODES, body, None)
    assert first.status_code == 201
    second = send(client_a, "POST", CODES, body, None)
    assert second.status_code == 409  # the service's own duplicate check, as before
    assert REPLAYED_HEADER not in second.headers
    assert len(codes_named(client_a, body["code"])) == 1


def test_every_post_and_patch_documents_the_header(client_a: Caller) -> None:
    spec = client_a.get("/api/v1/openapi.json").json
    writes = [
        operation
        for item in spec["paths"].values()
        for method, operation in item.items()
        if method in ("post", "patch")
    ]
    assert len(writes) > 20
    for operation in writes:
        names = [p.get("name") for p in operation.get("parameters", [])]
        assert HEADER in names, operation.get("operationId")
        assert {"409", "422"} <= set(operation["responses"])


def test_an_upload_retried_with_a_fresh_boundary_is_replayed(client_a: Caller) -> None:
    keyed = Caller(client_a.client, "keyed", {**client_a.headers, HEADER: _key()})
    path, content = "/api/v1/ingestion/files", b"loan_id,name\nIK-1,Keyed Upload\n"
    first = keyed.upload(path, "keyed.csv", content)
    assert first.status_code == 201, first.get_data(as_text=True)
    again = keyed.upload(path, "keyed.csv", content)
    assert again.headers[REPLAYED_HEADER] == "true"
    assert again.get_data() == first.get_data()
    changed = keyed.upload(path, "keyed.csv", content + b"IK-2,Another\n")
    assert changed.status_code == 422
