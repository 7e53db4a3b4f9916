"""Engine, declarative base and sessions, including how a session is bound to one tenant.

Shared tables live in the ``platform`` schema. Tenant tables are declared once in the
placeholder schema ``tenant``; a session bound to a tenant maps that placeholder to the
tenant's real schema with SQLAlchemy's ``schema_translate_map``. The map is set on the
*engine* the session is bound to (``engine.execution_options(...)``), so every connection
the session checks out, after each commit too, carries it. No connection ever has its
``search_path`` changed, so pooled connections (and PgBouncer in transaction mode) cannot
carry one tenant's scope into another request.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from sqlalchemy import DateTime, Engine, MetaData, create_engine, event, func
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.pool import NullPool

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
    """One engine per process, plus the per-tenant engine views that carry the schema map."""

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 5,
        max_overflow: int = 5,
        pooled: bool = True,
        echo: bool = False,
    ) -> None:
        options: dict[str, Any] = {"echo": echo, "future": True}
        if pooled:
            options.update(pool_size=pool_size, max_overflow=max_overflow, pool_pre_ping=True)
        else:
            options["poolclass"] = NullPool
        self.url = url
        self.engine: Engine = create_engine(url, **options)
        self._tenant_engines: dict[str, Engine] = {}
        self._sessionmaker = sessionmaker(bind=self.engine, expire_on_commit=False)

    def tenant_engine(self, schema_name: str) -> Engine:
        """The engine view that maps the ``tenant`` placeholder to ``schema_name``."""
        engine = self._tenant_engines.get(schema_name)
        if engine is None:
            engine = self.engine.execution_options(
                schema_translate_map={TENANT_PLACEHOLDER: schema_name}
            )
            self._tenant_engines[schema_name] = engine
        return engine

    def session(self, schema_name: str | None = None) -> Session:
        """A new session, bound to one tenant's schema when ``schema_name`` is given."""
        session = self._sessionmaker()
        if schema_name is not None:
            bind_session_to_schema(session, self, schema_name)
        return session

    def dispose(self) -> None:
        """Close every pooled connection (after fork, or at shutdown)."""
        self.engine.dispose()


def bind_session_to_schema(session: Session, database: Database, schema_name: str) -> None:
    """Scope ``session`` to one tenant schema for the rest of its life.

    The session's bind becomes the tenant engine view, so every later transaction carries
    the map. A transaction already open (the request looked up its principal first) gets
    the same map on its connection in place; SQLAlchemy 2 changes the ``Connection``
    facade, not the pooled DBAPI connection, so nothing leaks back into the pool.
    """
    current = session.info.get("tenant_schema")
    if current is not None and current != schema_name:
        raise RuntimeError(f"session already bound to {current}, refusing {schema_name}")
    session.info["tenant_schema"] = schema_name
    engine = database.tenant_engine(schema_name)
    session.bind = engine
    if session.in_transaction():
        session.connection().execution_options(
            schema_translate_map={TENANT_PLACEHOLDER: schema_name}
        )


def after_commit(session: Session, callback: Callable[[], None]) -> None:
    """Run ``callback`` once the session's current transaction commits; drop it on rollback.

    This is how jobs are enqueued: a job never sees data its request did not commit.
    """
    session.info.setdefault("after_commit", []).append(callback)


@event.listens_for(Session, "after_commit")
def _run_after_commit(session: Session) -> None:
    callbacks = session.info.pop("after_commit", [])
    for callback in callbacks:
        callback()


@event.listens_for(Session, "after_soft_rollback")
def _drop_after_commit(session: Session, previous_transaction: Any) -> None:
    if previous_transaction.parent is None:
        session.info.pop("after_commit", None)
