"""Gunicorn settings for Recova's web pods: ``gunicorn -c gunicorn.conf.py wsgi:app``.

From the environment:

| variable | meaning | default |
|---|---|---|
| `PORT` | port to listen on (all interfaces) | `8000` |
| `WEB_CONCURRENCY` | worker processes | `2` |
| `GUNICORN_THREADS` | threads per worker (the `gthread` worker class) | `4` |
| `GUNICORN_TIMEOUT` | seconds a request may take before its worker is restarted | `30` |
| `GUNICORN_GRACEFUL_TIMEOUT` | seconds in-flight requests get after SIGTERM | `25` |
| `PROMETHEUS_MULTIPROC_DIR` | the workers' metric files, emptied at start | new, in the temp dir |

The app is loaded once in the master and forked (``preload_app``): it opens no database
connection while it is built, and each worker drops whatever pool it inherited anyway, so
no socket is ever shared between processes. Access logging is off: the app logs one JSON
line per request itself, with its request id and without query strings.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    return int(raw) if raw.strip() else default


# prometheus-client picks multiprocess mode when it is first imported, so this is set
# before the app (and with it prometheus-client) is loaded.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = os.path.join(
        tempfile.gettempdir(), f"recova-metrics-{os.getpid()}"
    )

wsgi_app = "wsgi:app"
bind = f"0.0.0.0:{_int('PORT', 8000)}"
workers = _int("WEB_CONCURRENCY", 2)
threads = _int("GUNICORN_THREADS", 4)
worker_class = "gthread"
timeout = _int("GUNICORN_TIMEOUT", 30)
graceful_timeout = _int("GUNICORN_GRACEFUL_TIMEOUT", 25)
keepalive = 5
preload_app = True
# Recycle workers now and then (jittered so they do not all restart together).
max_requests = _int("GUNICORN_MAX_REQUESTS", 10000)
max_requests_jitter = max_requests // 10
# The heartbeat files live on the /tmp emptyDir: the root filesystem is read-only.
worker_tmp_dir = os.environ.get("GUNICORN_WORKER_TMP_DIR") or tempfile.gettempdir()
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
# gunicornc's control socket would live under $HOME, which is read-only in the pod.
control_socket_disable = True
accesslog = None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
logconfig_dict: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "recova.platform.kernel.logs.JsonFormatter"}},
    "handlers": {
        "error_console": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "stream": "ext://sys.stderr",
        },
    },
    "root": {"level": "INFO", "handlers": []},  # the app installs the root handler
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": ["error_console"], "propagate": False},
        "gunicorn.access": {"level": "INFO", "handlers": [], "propagate": False},
    },
}


def on_starting(server: Any) -> None:
    """Start with an empty metrics folder: files of a previous run would be added in."""
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory, exist_ok=True)


def pre_fork(server: Any, worker: Any) -> None:
    """Refuse to fork with an open database connection: the child would share its socket."""
    recova = server.app.wsgi().extensions.get("recova")
    if recova is None:
        return  # another WSGI app (the benchmark's baseline)
    pool = recova.db.engine.pool
    if pool.checkedin() or pool.checkedout():
        raise RuntimeError("the gunicorn master opened a database connection before forking")


def post_fork(server: Any, worker: Any) -> None:
    """Drop pooled connections inherited from the master without closing its sockets."""
    recova = server.app.wsgi().extensions.get("recova")
    if recova is not None:
        recova.db.engine.dispose(close=False)


def child_exit(server: Any, worker: Any) -> None:
    """Let prometheus-client forget the live gauges of a worker that exited."""
    # Imported here, not at the top: prometheus-client must first be imported after
    # PROMETHEUS_MULTIPROC_DIR is set (above), or it would not run in multiprocess mode.
    from prometheus_client import multiprocess  # noqa: PLC0415

    multiprocess.mark_process_dead(worker.pid)
