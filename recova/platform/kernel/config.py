"""One configuration object, read from the environment when the app or a command starts.

Nothing here runs at import time: ``Settings.from_env()`` is called by ``create_app`` and
by the CLI. In development and test mode missing secrets are generated once and kept in
``RECOVA_HOME/secrets.json`` (mode 0600) so every process on the machine shares them; in
production mode a missing secret stops start-up with a message naming the variable.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from limits import parse_many

ENVIRONMENTS = ("development", "test", "production")


class ConfigError(RuntimeError):
    """Raised when the configuration cannot start the platform; the message says how to fix it."""


@dataclass(frozen=True)
class Settings:
    """Everything the platform reads from its environment."""

    environment: str = "development"
    home: Path = field(default_factory=lambda: Path.home() / ".recova")
    database_url: str | None = None
    redis_url: str | None = None
    secret_key: str = ""
    data_key: bytes = b""
    access_token_ttl: int = 3600
    login_max_failures: int = 5
    login_lockout_seconds: int = 900
    db_pool_size: int = 5
    db_max_overflow: int = 5
    log_level: str = "INFO"
    log_format: str = "text"
    queue_prefix: str = ""
    max_upload_bytes: int = 256 * 1024 * 1024
    http_sources_allow_private: bool = False
    #: Seconds a webhook receiver has to answer one delivery (``recova.platform.webhooks``).
    webhook_timeout: int = 15
    #: How far one .xlsx upload may unpack (see ``recova.connectors.excel``).
    xlsx_max_part_bytes: int = 1024 * 1024 * 1024
    xlsx_max_total_bytes: int = 2048 * 1024 * 1024
    xlsx_max_ratio: int = 100
    xlsx_max_shared_strings: int = 2_000_000
    #: Rate limits (see ``recova.platform.kernel.ratelimit``), in the ``limits`` library's
    #: notation (``600/minute``, ``10/second``): every request per client or portal user
    #: (anonymous ones per address), writes per caller on top, and ``/oauth/token`` per
    #: client id and per address.
    rate_limit_api: str = "600/minute"
    rate_limit_writes: str = "120/minute"
    rate_limit_token: str = "20/minute"  # noqa: S105 - a rate limit, not a secret
    rate_limit_token_address: str = "60/minute"  # noqa: S105 - as above

    @property
    def production(self) -> bool:
        return self.environment == "production"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``environ`` (default ``os.environ``), filling in secrets."""
        env = os.environ if environ is None else environ
        environment = env.get("RECOVA_ENV", "development")
        if environment not in ENVIRONMENTS:
            raise ConfigError(f"RECOVA_ENV={environment!r} is not one of {', '.join(ENVIRONMENTS)}")
        home = Path(env.get("RECOVA_HOME") or Path.home() / ".recova").expanduser().resolve()
        settings = cls(
            environment=environment,
            home=home,
            database_url=normalise_database_url(env.get("DATABASE_URL") or None),
            redis_url=env.get("REDIS_URL") or None,
            secret_key=env.get("SECRET_KEY", ""),
            data_key=_decode_data_key(env.get("RECOVA_DATA_KEY", "")),
            access_token_ttl=_int(env, "RECOVA_ACCESS_TOKEN_TTL", 3600, minimum=1),
            login_max_failures=_int(env, "RECOVA_LOGIN_MAX_FAILURES", 5, minimum=1),
            login_lockout_seconds=_int(env, "RECOVA_LOGIN_LOCKOUT_SECONDS", 900, minimum=1),
            db_pool_size=_int(env, "RECOVA_DB_POOL_SIZE", 5, minimum=1),
            db_max_overflow=_int(env, "RECOVA_DB_MAX_OVERFLOW", 5, minimum=0),
            log_level=_log_level(env.get("RECOVA_LOG_LEVEL") or "INFO"),
            log_format=_log_format(
                env.get("RECOVA_LOG_FORMAT") or ("json" if environment == "production" else "text")
            ),
            queue_prefix=env.get("RECOVA_QUEUE_PREFIX", ""),
            max_upload_bytes=_int(env, "RECOVA_MAX_UPLOAD_BYTES", 256 * 1024 * 1024, minimum=1024),
            http_sources_allow_private=_flag(env, "RECOVA_HTTP_SOURCES_ALLOW_PRIVATE"),
            webhook_timeout=_int(env, "RECOVA_WEBHOOK_TIMEOUT", 15, minimum=1),
            xlsx_max_part_bytes=_int(
                env, "RECOVA_XLSX_MAX_PART_BYTES", 1024 * 1024 * 1024, minimum=1024
            ),
            xlsx_max_total_bytes=_int(
                env, "RECOVA_XLSX_MAX_TOTAL_BYTES", 2048 * 1024 * 1024, minimum=1024
            ),
            xlsx_max_ratio=_int(env, "RECOVA_XLSX_MAX_RATIO", 100, minimum=1),
            xlsx_max_shared_strings=_int(
                env, "RECOVA_XLSX_MAX_SHARED_STRINGS", 2_000_000, minimum=1
            ),
            rate_limit_api=_rate_limit(env, "RECOVA_RATE_LIMIT_API", "600/minute"),
            rate_limit_writes=_rate_limit(env, "RECOVA_RATE_LIMIT_WRITES", "120/minute"),
            rate_limit_token=_rate_limit(env, "RECOVA_RATE_LIMIT_TOKEN", "20/minute"),
            rate_limit_token_address=_rate_limit(
                env, "RECOVA_RATE_LIMIT_TOKEN_ADDRESS", "60/minute"
            ),
        )
        return settings.with_secrets()

    def with_secrets(self) -> Settings:
        """Return settings whose secrets are present, generating them outside production."""
        missing = [
            name
            for name, value in (
                ("SECRET_KEY", self.secret_key),
                ("RECOVA_DATA_KEY", self.data_key),
                ("DATABASE_URL", self.database_url if self.production else "embedded"),
                ("REDIS_URL", self.redis_url if self.production else "embedded"),
            )
            if not value
        ]
        if not missing:
            return self
        if self.production:
            raise ConfigError(
                "production mode (RECOVA_ENV=production) needs "
                + ", ".join(missing)
                + " in the environment; generate keys with `recova keys`"
            )
        stored = load_or_create_secrets(self.home)
        return replace(
            self,
            secret_key=self.secret_key or stored["SECRET_KEY"],
            data_key=self.data_key or _decode_data_key(stored["RECOVA_DATA_KEY"]),
        )


def new_secrets() -> dict[str, str]:
    """Fresh values for every secret the platform needs."""
    return {
        "SECRET_KEY": secrets.token_urlsafe(48),
        "RECOVA_DATA_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
    }


def load_or_create_secrets(home: Path) -> dict[str, str]:
    """Read ``home/secrets.json``, creating it once (under a file lock) if it is missing."""
    home.mkdir(parents=True, exist_ok=True)
    path = home / "secrets.json"
    with open(home / ".secrets.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.exists():
            return json.loads(path.read_text())
        values = new_secrets()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(values, handle)
        return values


def normalise_database_url(url: str | None) -> str | None:
    """Point plain ``postgres://`` URLs at the psycopg 3 driver SQLAlchemy should use."""
    if url is None:
        return None
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _decode_data_key(raw: str) -> bytes:
    if not raw:
        return b""
    try:
        key = base64.urlsafe_b64decode(raw.encode())
    except ValueError as exc:
        raise ConfigError("RECOVA_DATA_KEY must be 32 bytes in URL-safe base64") from exc
    if len(key) != 32:
        raise ConfigError("RECOVA_DATA_KEY must decode to exactly 32 bytes (AES-256)")
    return key


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _log_level(raw: str) -> str:
    level = raw.upper()
    if level not in LOG_LEVELS:
        raise ConfigError(f"RECOVA_LOG_LEVEL={raw!r} is not one of {', '.join(LOG_LEVELS)}")
    return level


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if raw in ("", "0", "false", "no"):
        return False
    if raw in ("1", "true", "yes"):
        return True
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


LOG_FORMATS = ("json", "text")


def _log_format(raw: str) -> str:
    value = raw.lower()
    if value not in LOG_FORMATS:
        raise ConfigError(f"RECOVA_LOG_FORMAT={raw!r} is not one of {', '.join(LOG_FORMATS)}")
    return value


def _rate_limit(env: Mapping[str, str], name: str, default: str) -> str:
    """One rate limit such as ``600/minute`` (an amount per window), checked at start-up."""
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        items = parse_many(raw)
    except ValueError:
        items = []
    if len(items) != 1 or items[0].amount < 1:
        raise ConfigError(
            f"{name} must be one rate limit such as 600/minute or 10/second, got {raw!r}"
        )
    return raw


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int) -> int:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value
