"""Users, their organisation membership and role, and OAuth2 clients and tokens.

Client secrets and access tokens are stored only as SHA-256 digests. Both are 256-bit
random strings, so a fast digest is enough to make a database dump useless (a slow
password hash buys nothing against values that cannot be guessed); user passwords, which
people choose, are hashed with Argon2id instead (see ``passwords``).
"""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    func,
    literal_column,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column, relationship

from recova.platform.agencies.models import Agency
from recova.platform.kernel.db import SHARED_SCHEMA, SharedModel, Timestamped, utcnow
from recova.tenants.models import Tenant


class Role(enum.StrEnum):
    PLATFORM_ADMIN = "platform_admin"
    TENANT_ADMIN = "tenant_admin"
    TENANT_ANALYST = "tenant_analyst"
    AGENCY_MANAGER = "agency_manager"
    COLLECTOR = "collector"

    @property
    def organisation(self) -> str:
        if self is Role.PLATFORM_ADMIN:
            return "platform"
        if self in (Role.TENANT_ADMIN, Role.TENANT_ANALYST):
            return "tenant"
        return "agency"


TENANT_ROLES = frozenset({Role.TENANT_ADMIN, Role.TENANT_ANALYST})
AGENCY_ROLES = frozenset({Role.AGENCY_MANAGER, Role.COLLECTOR})


class User(Timestamped, SharedModel):
    """A person who logs in to a portal."""

    __tablename__ = "users"
    __table_args__ = (
        Index("uq_users_lower_email", func.lower(literal_column("email")), unique=True),
        CheckConstraint("locale IN ('en', 'zh_CN')", name="locale_known"),
        {"schema": SHARED_SCHEMA},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    full_name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(200))
    is_active: Mapped[bool] = mapped_column(default=True)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # Portal sessions carry the epoch they were issued in; bumping it (logout,
    # deactivation) ends every session of the user, even a copied cookie.
    session_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_login_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    #: The portal language the user chose (``recova.platform.web.i18n.LOCALES``); None
    #: until they choose, and the browser's ``Accept-Language`` decides.
    locale: Mapped[str | None] = mapped_column(String(16))

    membership: Mapped[Membership] = relationship(back_populates="user", uselist=False)


class Membership(Timestamped, SharedModel):
    """The one organisation a user belongs to, and their role in it.

    A login belongs to one organisation (the platform, a tenant or an agency), so a
    person working for two agencies has two logins; that keeps every request's scope
    unambiguous.
    """

    __tablename__ = "memberships"
    __table_args__ = (
        CheckConstraint(
            "(role = 'platform_admin' AND tenant_id IS NULL AND agency_id IS NULL)"
            " OR (role IN ('tenant_admin', 'tenant_analyst')"
            "     AND tenant_id IS NOT NULL AND agency_id IS NULL)"
            " OR (role IN ('agency_manager', 'collector')"
            "     AND agency_id IS NOT NULL AND tenant_id IS NULL)",
            name="organisation_matches_role",
        ),
        {"schema": SHARED_SCHEMA},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey(f"{SHARED_SCHEMA}.users.id", ondelete="CASCADE"), unique=True
    )
    role: Mapped[Role] = mapped_column(
        Enum(
            Role, name="role", schema=SHARED_SCHEMA, values_callable=lambda e: [m.value for m in e]
        )
    )
    tenant_id: Mapped[int | None] = mapped_column(
        ForeignKey(f"{SHARED_SCHEMA}.tenants.id"), index=True
    )
    agency_id: Mapped[int | None] = mapped_column(
        ForeignKey(f"{SHARED_SCHEMA}.agencies.id"), index=True
    )

    user: Mapped[User] = relationship(back_populates="membership")
    tenant: Mapped[Tenant | None] = relationship()
    agency: Mapped[Agency | None] = relationship()


class OAuthClient(Timestamped, SharedModel):
    """A tenant's machine client for the partner API (OAuth2 client credentials)."""

    __tablename__ = "oauth_clients"

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64), unique=True)
    client_secret_digest: Mapped[bytes] = mapped_column(LargeBinary(32))
    name: Mapped[str] = mapped_column(String(200))
    tenant_id: Mapped[int] = mapped_column(ForeignKey(f"{SHARED_SCHEMA}.tenants.id"), index=True)
    scopes: Mapped[list[str]] = mapped_column(ARRAY(String(64)))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey(f"{SHARED_SCHEMA}.users.id"))
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))

    tenant: Mapped[Tenant] = relationship()


class OAuthToken(SharedModel):
    """An access token issued to a client; only the digest of the token is stored."""

    __tablename__ = "oauth_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_digest: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    client_pk: Mapped[int] = mapped_column(
        ForeignKey(f"{SHARED_SCHEMA}.oauth_clients.id", ondelete="CASCADE"), index=True
    )
    tenant_id: Mapped[int] = mapped_column(ForeignKey(f"{SHARED_SCHEMA}.tenants.id"))
    scope: Mapped[str] = mapped_column(String(1000))
    issued_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
