"""Running a test inside one transaction that is rolled back at its end.

Fixtures that take seconds to provision (two tenants and their staff, a lender with its
agencies) are built once per xdist worker, committed for real, and shared: each test
that uses one runs in a ``RolledBack`` transaction, so it sees them exactly as they were
built, whatever the tests before it did.

How: the app's ``Database`` is bound (``Database.bind_to``) to one connection holding
an outer transaction; every session, the requests' and ``tenant_scope``'s and pinned
ones alike, joins it through a savepoint, so the code's own commits release savepoints
and its rollbacks roll back to them. At the end the outer transaction is rolled back,
and what a rollback leaves behind is put back as well: the sequences of the shared
schemas (so ids come out as in a freshly built fixture) and the Redis keys under the
run's prefix (queued jobs, counters, rate limits).

What a commit does besides, the binding does too: a session's tenant schema map is set
on the shared connection while that session's transaction lasts and restored after it,
and temporary tables are dropped when the outermost session commits (the code's are all
``ON COMMIT DROP``).

A test the binding cannot hold is refused loudly, never half-isolated: one that opens a
connection of its own to the test database (another engine, an app of its own, the
in-process CLI), reaches a session from another thread, or leaves a backend connected
from elsewhere (a subprocess) fails with a message saying so. Such tests, and those
that switch a connection to autocommit or set a transaction's isolation (which
PostgreSQL refuses inside a savepoint), are marked ``real_commits`` and get fixtures of
their own, committed for real, as before.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from psycopg.pq import TransactionStatus
from sqlalchemy import Connection, event, text
from sqlalchemy.orm import Session
from sqlalchemy.pool import Pool

from recova.platform.kernel.db import SHARED_SCHEMA
from recova.platform.kernel.extension import platform
from recova.tenants.slugs import schema_name_for

#: The schemas of the worker's shared fixtures (``shared``), whose sequences every
#: rolled-back test puts back.
SHARED_SCHEMAS: set[str] = set()

REFUSED = (
    "{what} while the test runs in a rolled-back transaction on shared fixtures, so its"
    " writes could outlive the test; mark the test @pytest.mark.real_commits"
)


def real_commits(request: pytest.FixtureRequest) -> bool:
    """Whether the requesting test commits for real (and so needs fixtures of its own)."""
    return request.node.get_closest_marker("real_commits") is not None


def shared(fixture: Any, *slugs: str) -> Any:
    """Register a worker-wide fixture's tenants (their sequences are put back after each
    test) and return it."""
    SHARED_SCHEMAS.update(schema_name_for(slug) for slug in slugs)
    return fixture


def private_copy(fixture: Any, app: Flask) -> Any:
    """A deep copy of a shared fixture's dataclass (the app itself is shared), so a test
    that adds to its dicts and lists leaves the next test's copy alone."""
    return copy.deepcopy(fixture, memo={id(app): app})


class RolledBack:
    """The app's sessions bound to one connection whose transaction is rolled back at the
    end; ``schemas`` are the shared fixtures' schemas whose sequences are restored."""

    def __init__(self, app: Flask, schemas: list[str]) -> None:
        self.objects = platform(app)
        self.db = self.objects.db
        self.schemas = sorted({SHARED_SCHEMA, *schemas})
        self.owner = threading.get_ident()
        #: Sessions whose transaction is open on the connection, innermost last, each
        #: with the schema map the connection had before it began.
        self._open: list[tuple[Session, Any]] = []
        #: What was refused, kept to fail the test even where the code swallowed the
        #: error (best-effort work after a commit, like publishing the outbox).
        self.refused: list[str] = []
        #: Sessions whose transaction committed, until it ends; and those among them whose
        #: commit was a rollback (the transaction had failed).
        self._commits: set[Session] = set()
        self._rolled_back_commits: set[Session] = set()
        #: Pinned sessions open now, each with the savepoint standing for its driver's
        #: own transaction (``_pinned_session``).
        self._raw: dict[Session, str] = {}
        self._names = itertools.count(1)

    # --- setting up and tearing down -----------------------------------------------------

    def __enter__(self) -> RolledBack:
        # Repeatable read: nothing else writes to the database while the test runs, so
        # it reads what read committed would, and a step of the code's that asks for
        # repeatable read (the month close) asks for what it has, which PostgreSQL
        # allows inside a savepoint (another level it refuses there).
        self.connection: Connection = self.db.engine.connect().execution_options(
            isolation_level="REPEATABLE READ"
        )
        self.outer = self.connection.begin()
        self.database, self.backend, self.started = self.connection.execute(
            text("SELECT current_database(), pg_backend_pid(), clock_timestamp()")
        ).one()
        self.sequences = self.connection.execute(
            text(
                "SELECT format('%I.%I', schemaname, sequencename), start_value, last_value"
                " FROM pg_sequences WHERE schemaname = ANY(:schemas)"
            ),
            {"schemas": self.schemas},
        ).all()
        self.redis_keys = self._dump_redis()
        self.db.bind_to(self.connection)
        self._hook_pinned_session = self.db.pinned_session
        self.db.pinned_session = self._pinned_session  # type: ignore[method-assign]
        event.listen(Pool, "checkout", self._refuse_other_connections)
        event.listen(Session, "after_begin", self._began, insert=True)
        event.listen(Session, "before_commit", self._committing)
        event.listen(Session, "after_commit", self._committed)
        event.listen(Session, "after_transaction_end", self._ended)
        return self

    def __exit__(self, *exc: object) -> None:
        del self.db.pinned_session  # the class's own again
        self.db.bind_to(None)
        event.remove(Session, "after_transaction_end", self._ended)
        event.remove(Session, "after_commit", self._committed)
        event.remove(Session, "before_commit", self._committing)
        event.remove(Session, "after_begin", self._began)
        event.remove(Pool, "checkout", self._refuse_other_connections)
        strangers = 0
        try:
            if self.outer.is_active:
                self.outer.rollback()
            self.connection.execution_options(schema_translate_map=None)
            with self.connection.begin():
                self._restore_sequences()
                strangers = self.connection.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = :database"
                        " AND pid <> :backend AND backend_start > :started"
                    ),
                    {"database": self.database, "backend": self.backend, "started": self.started},
                ).scalar_one()
            self._restore_redis()
        finally:
            self.connection.close()
        if strangers:
            self.refused.append(f"{strangers} backend(s) connected from elsewhere")
        if self.refused and exc[0] is None:
            pytest.fail(REFUSED.format(what="; ".join(sorted(set(self.refused)))))

    def _restore_sequences(self) -> None:
        if not self.sequences:
            return
        self.connection.execute(
            text(
                "SELECT setval(name::regclass, coalesce(last, start), last IS NOT NULL)"
                " FROM unnest(CAST(:names AS text[]), CAST(:starts AS bigint[]),"
                " CAST(:lasts AS bigint[])) AS s(name, start, last)"
            ),
            {
                "names": [name for name, _, _ in self.sequences],
                "starts": [start for _, start, _ in self.sequences],
                "lasts": [last for _, _, last in self.sequences],
            },
        )

    def _redis_patterns(self) -> set[str]:
        prefix = self.objects.settings.queue_prefix
        # Queues carry the prefix as is; job ids carry it with ":" made "-".
        return {f"*{prefix}*", f"*{prefix.replace(':', '-')}*"} if prefix else set()

    def _dump_redis(self) -> dict[bytes, tuple[bytes, int]]:
        redis = self.objects.redis
        keys = {key for pattern in self._redis_patterns() for key in redis.scan_iter(match=pattern)}
        dumped: dict[bytes, tuple[bytes, int]] = {}
        for key in keys:
            value, ttl = redis.dump(key), redis.pttl(key)
            if value is not None:
                dumped[key] = (value, max(ttl, 0))
        return dumped

    def _restore_redis(self) -> None:
        redis = self.objects.redis
        keys = {key for pattern in self._redis_patterns() for key in redis.scan_iter(match=pattern)}
        if keys:
            redis.delete(*keys)
        for key, (value, ttl) in self.redis_keys.items():
            redis.restore(key, ttl, value, replace=True)

    # --- what a commit does besides, and what the binding refuses ------------------------

    def _refuse_other_connections(self, dbapi_connection: Any, record: Any, proxy: Any) -> None:
        if dbapi_connection.info.dbname == self.database:
            self.refused.append("a connection of its own was opened")
            raise RuntimeError(REFUSED.format(what=self.refused[-1]))

    def _began(self, session: Session, transaction: Any, connection: Connection) -> None:
        if connection is not self.connection:
            return
        if threading.get_ident() != self.owner:
            self.refused.append("a session was used from another thread")
            raise RuntimeError(REFUSED.format(what=self.refused[-1]))
        if transaction.parent is not None:
            return  # a savepoint of a session already open here
        previous = connection.get_execution_options().get("schema_translate_map")
        self._open.append((session, previous))
        # The session's own map (if it is bound to a tenant) is applied after this.
        connection.execution_options(schema_translate_map=None)

    def _committing(self, session: Session) -> None:
        if session.in_nested_transaction() or session.new or session.dirty or session.deleted:
            return  # a savepoint of the session's own, or a flush that fails as it would
        root = session.get_transaction()
        entry = root._connections.get(self.connection) if root is not None else None
        status = self.connection.connection.driver_connection.info.transaction_status
        if entry is not None and status == TransactionStatus.INERROR:
            # PostgreSQL ends a failed transaction asked to commit with a rollback, and no
            # error; a savepoint asked to be released would refuse: roll it back here.
            self.connection.exec_driver_sql(f"ROLLBACK TO SAVEPOINT {entry[1]._savepoint}")
            self._rolled_back_commits.add(session)

    def _committed(self, session: Session) -> None:
        if not session.in_nested_transaction():  # not a savepoint of the session's own
            self._commits.add(session)

    def _ended(self, session: Session, transaction: Any) -> None:
        if transaction.parent is not None:
            return
        committed = session in self._commits and session not in self._rolled_back_commits
        self._commits.discard(session)
        self._rolled_back_commits.discard(session)
        for index in range(len(self._open) - 1, -1, -1):
            if self._open[index][0] is session:
                break
        else:
            return  # the transaction never reached the connection: it sent nothing
        outermost = index == 0
        _, previous = self._open.pop(index)
        if index == len(self._open):  # it was the innermost: its map goes
            self.connection.execution_options(schema_translate_map=previous)
        else:  # the next one in restores this one's predecessor's map
            inner, _ = self._open[index]
            self._open[index] = (inner, previous)
        if committed and (outermost or session in self._raw):
            # A pinned session's or the outermost transaction committed: the temporary
            # tables it made would be gone now (the code's are all ON COMMIT DROP).
            self.connection.exec_driver_sql("DISCARD TEMP")
        if session in self._raw:
            self._end_raw(session, committed=committed)

    # Raw SQL on a pinned session's connection. Code that commits a pinned session and
    # goes on with the driver's cursor (a month close, an allocation run) writes in the
    # transaction the driver opens by itself, which the session's next commit or
    # rollback ends, and closing the session rolls back. Here a session's transaction is
    # a savepoint begun only when the session begins, after such writes: so each pinned
    # session has a savepoint of its own standing for the driver's transaction, ended
    # (released or rolled back to) whenever the session's transaction ends.

    @contextlib.contextmanager
    def _pinned_session(self) -> Iterator[Session]:
        opened: Session | None = None
        try:
            with self._hook_pinned_session() as session:
                opened = session
                self._raw[session] = f"recova_test_raw_{next(self._names)}"
                self.connection.exec_driver_sql(f"SAVEPOINT {self._raw[session]}")
                yield session
        finally:
            if opened is not None and opened in self._raw:
                name = self._raw.pop(opened)
                self.connection.exec_driver_sql(f"ROLLBACK TO SAVEPOINT {name}")
                self.connection.exec_driver_sql(f"RELEASE SAVEPOINT {name}")

    def _end_raw(self, session: Session, *, committed: bool) -> None:
        name = self._raw[session]
        if not committed:
            self.connection.exec_driver_sql(f"ROLLBACK TO SAVEPOINT {name}")
        self.connection.exec_driver_sql(f"RELEASE SAVEPOINT {name}")
        self.connection.exec_driver_sql(f"SAVEPOINT {name}")
