"""Engine, declarative base and sessions, including how a session is scoped to one tenant.

Shared tables live in the ``platform`` schema. Tenant tables are declared once in the
placeholder schema ``tenant``; a session scoped to a tenant maps that placeholder to the
tenant's real schema with SQLAlchemy's ``schema_translate_map``.

How the map reaches every statement: the session records it in ``session.info`` and an
``after_begin`` listener sets it on each connection the session begins a transaction on,
so it survives commit, refresh, lazy and eager loads (each new transaction gets it
again). Setting it once through ``session.connection(execution_options=...)`` would be
lost at the first commit; binding the session to ``engine.execution_options(...)`` keeps
it too, but a request learns its tenant only after its first query (the principal
lookup), and a session cannot change its bind mid-transaction without checking out a
second connection. Execution options change the ``Connection`` facade in place, never the
pooled DBAPI connection, and no connection ever has its ``search_path`` changed, so pooled
connections (and PgBouncer in transaction mode) cannot carry one tenant's scope into
another request.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import Connection, DateTime, Engine, MetaData, create_engine, event, func
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

SHARED_SCHEMA = "platform"
TENANT_PLACEHOLDER = "tenant"

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base for every table, shared or per tenant."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class SharedModel(Base):
    """A table in the shared ``platform`` schema."""

    __abstract__ = True
    __table_args__: Any = {"schema": SHARED_SCHEMA}


class TenantModel(Base):
    """A table in every tenant's schema, declared in the ``tenant`` placeholder schema."""

    __abstract__ = True
    __table_args__: Any = {"schema": TENANT_PLACEHOLDER}


class Timestamped:
    """Adds ``created_at``, set by the database."""

    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


def utcnow() -> dt.datetime:
    """The current instant, timezone-aware."""
    return dt.datetime.now(dt.UTC)


class Database:
    """One engine (and pool) per process; sessions are scoped to a tenant per use."""

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 5,
        max_overflow: int = 5,
        ping_after_idle: float = 10.0,
    ) -> None:
        # hide_parameters: bound values (personal data among them) never reach error
        # messages, logs or failed-job records.
        self.url = url
        self.engine: Engine = create_engine(
            url, pool_size=pool_size, max_overflow=max_overflow, hide_parameters=True
        )
        ping_connections_idle_longer_than(self.engine, ping_after_idle)
        self._sessionmaker = sessionmaker(bind=self.engine, expire_on_commit=False)
        self._bound: Connection | None = None

    def session(self) -> Session:
        """A new session on the shared schema; ``tenant_scope`` scopes one to a tenant."""
        return self._sessionmaker()

    @contextlib.contextmanager
    def pinned_session(self) -> Iterator[Session]:
        """A session that keeps one connection for its whole life, across its commits.

        For set-based runners that hold a session-level advisory lock while they commit
        step by step: an ordinary session hands its connection back to the pool at each
        commit and may get another one for the next transaction.
        """
        if self._bound is not None:  # bound by a test: that one connection is pinned
            with self._sessionmaker() as session:
                yield session
            return
        with self.engine.connect() as connection, self._sessionmaker(bind=connection) as session:
            yield session

    def bind_to(self, connection: Connection | None) -> None:
        """Tests only: every session from now on, pinned ones too, joins ``connection``
        and its transaction through a savepoint, so a test that rolls that transaction
        back at its end undoes all it wrote, commits included; ``None`` goes back to the
        engine. The platform itself never calls this.
        """
        self._bound = connection
        if connection is None:
            self._sessionmaker = sessionmaker(bind=self.engine, expire_on_commit=False)
        else:
            self._sessionmaker = sessionmaker(
                bind=connection, expire_on_commit=False, join_transaction_mode="create_savepoint"
            )

    def dispose(self) -> None:
        """Close every pooled connection (after fork, or at shutdown)."""
        self.engine.dispose()


logger = logging.getLogger(__name__)


def ping_connections_idle_longer_than(engine: Engine, seconds: float) -> None:
    """Check a pooled connection before use only if it sat idle for ``seconds``.

    ``pool_pre_ping`` pings on every checkout, a full round trip per request even on a
    busy pool. A connection that was in use moments ago is almost surely alive; one that
    sat idle may have been cut (server restart, failover, firewall), so only those are
    pinged, and a dead one is replaced before the request sees it. A connection that dies
    between uses anyway fails its statement once, and SQLAlchemy then invalidates the
    whole pool, so the next request starts fresh.
    """

    @event.listens_for(engine, "checkin")
    def _stamp(dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < seconds:
            return
        try:
            cursor = dbapi_connection.cursor()
            cursor.execute("SELECT 1")
            cursor.close()
            dbapi_connection.rollback()
        except Exception as exc:  # any failure means this connection is unusable
            raise DisconnectionError(f"pooled connection failed its ping: {exc}") from exc


def quote_identifier(name: str) -> str:
    """``name`` as a quoted SQL identifier: the one quoting rule of raw SQL here.

    Schema names are also held to a strict pattern at provisioning; this quotes them all
    the same (doubling any quote), so a name can never end an identifier early.
    """
    if not name or "\x00" in name:
        raise ValueError(f"not an SQL identifier: {name!r}")
    return '"' + name.replace('"', '""') + '"'


def table_sql(model: type[Base]) -> str:
    """A shared table's name for raw SQL, schema-qualified and quoted, from its model."""
    table = model.__table__
    schema = table.schema  # type: ignore[attr-defined]
    if schema is None or schema == TENANT_PLACEHOLDER:
        raise ValueError(f"{model.__name__} is a tenant table: name it through scoped_schema")
    return f"{quote_identifier(schema)}.{quote_identifier(table.name)}"  # type: ignore[attr-defined]


def scoped_schema(session: Session) -> str:
    """The quoted schema of a session ``tenant_scope`` bound to a tenant."""
    schema = session.info.get("tenant_schema")
    if schema is None:
        raise RuntimeError("this needs a session bound to a tenant (use tenant_scope)")
    return quote_identifier(schema)


class ScopedConnection:
    """The driver's side of a tenant-scoped session, for set-based SQL.

    ``cursor()`` is a psycopg cursor on the session's own connection, inside its current
    transaction; ``commit()`` and ``rollback()`` end that transaction through the session,
    so the session and the raw SQL never disagree about what is committed. ``schema`` is
    the tenant's schema, quoted.
    """

    def __init__(self, session: Session) -> None:
        self.session = session
        self.schema = scoped_schema(session)

    @property
    def driver_connection(self) -> Any:
        """The psycopg connection itself (for its ``autocommit`` switch, or ``COPY``)."""
        return self.session.connection().connection.driver_connection

    def cursor(self) -> Any:
        return self.session.connection().connection.cursor()

    def commit(self) -> None:
        # session.connection() first: raw statements opened the driver's transaction
        # without the session knowing, and a session with no transaction commits nothing.
        self.session.connection()
        self.session.commit()

    def rollback(self) -> None:
        self.session.connection()
        self.session.rollback()

    def invalidate(self) -> None:
        """Drop the connection instead of pooling it (its session state is unknown)."""
        self.session.connection().invalidate()


def bind_session_to_schema(session: Session, schema_name: str) -> None:
    """Scope ``session`` to one tenant schema for the rest of its life.

    Every transaction the session begins from now on maps the placeholder to
    ``schema_name``; a transaction already open (the request looked up its principal
    first) gets the map on its connection at once.
    """
    current = session.info.get("tenant_schema")
    if current is not None and current != schema_name:
        raise RuntimeError(f"session already bound to {current}, refusing {schema_name}")
    session.info["tenant_schema"] = schema_name
    if session.in_transaction():
        _apply_tenant_map(session.connection(), schema_name)


def _apply_tenant_map(connection: Connection, schema_name: str) -> None:
    connection.execution_options(schema_translate_map={TENANT_PLACEHOLDER: schema_name})


@event.listens_for(Session, "after_begin")
def _map_tenant_on_begin(session: Session, transaction: Any, connection: Connection) -> None:
    schema_name = session.info.get("tenant_schema")
    if schema_name is not None:
        _apply_tenant_map(connection, schema_name)


def after_commit(session: Session, callback: Callable[[], None]) -> None:
    """Run ``callback`` once the session's current transaction commits; drop it on rollback.

    For work outside the database that must follow the commit (counting a metric, handing
    the transaction's outbox rows to RQ at once). A callback that must never fail the
    caller (the outbox publish) catches its own errors: anything it raises reaches the
    code that committed.
    """
    if not session.in_transaction():
        session.begin()  # else a rollback before the first statement would not forget it
    session.info.setdefault("after_commit", []).append(callback)


def pending_after_commit(session: Session) -> list[Callable[[], None]]:
    """The callbacks registered for the session's current transaction (to extend one)."""
    callbacks: list[Callable[[], None]] = session.info.get("after_commit", [])
    return callbacks


@event.listens_for(Session, "after_commit")
def _run_after_commit(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint was released; the transaction itself may still roll back
    callbacks = session.info.pop("after_commit", [])
    failures: list[Exception] = []
    for callback in callbacks:
        try:
            callback()
        except Exception as exc:  # the others still run; the caller hears of the first
            logger.exception("work registered to run after commit failed")
            failures.append(exc)
    if failures:
        # The data is committed but some work was not done: the caller hears of it. Jobs
        # never come here: they are outbox rows committed with the data, and their
        # immediate publish swallows its own errors (the relay publishes them later).
        raise failures[0]


@event.listens_for(Session, "after_transaction_end")
def _drop_after_commit(session: Session, transaction: Any) -> None:
    # Runs after ``after_commit`` on commit; on rollback or close the callbacks are dropped.
    if transaction.parent is None:
        session.info.pop("after_commit", None)
