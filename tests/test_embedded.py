"""The embedded PostgreSQL and Redis, started from scratch in a fresh ``RECOVA_HOME``.

Every test runs real ``recova`` commands or small Python scripts in subprocesses, with no
``DATABASE_URL`` or ``REDIS_URL``, so the platform has to start its own servers. The
checks are about lifetime: servers are shared by every process using the same home, data
survives a restart, and the last process out (however it leaves) stops both servers.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis

from recova.platform.entry.demo import DEMO_ACCOUNTS
from recova.platform.kernel.embedded import EmbeddedRedis

pytestmark = pytest.mark.slow

RECOVA = Path(sys.executable).with_name("recova")
DEMO_TENANTS = ["lendco-cn", "lendco-us"]
DEMO_LOGINS = [
    "admin@recova.local",
    "admin@cn.lendco.test",
    "analyst@cn.lendco.test",
    "admin@us.lendco.test",
    "analyst@us.lendco.test",
    "manager@swiftrecoveries.test",
    "collector1@swiftrecoveries.test",
    "collector2@swiftrecoveries.test",
    "manager@harborcollections.test",
    "collector1@harborcollections.test",
    "collector2@harborcollections.test",
]
TIMEOUT = 300  # a generous bound on a hung subprocess, never a performance check

# Holds both servers through ``with_embedded_services``, reports what it sees as one JSON
# line, then waits for a line on stdin before exiting normally.
HOLDER = textwrap.dedent(
    """
    import json, os, sys
    import redis
    from sqlalchemy import create_engine, text
    from recova.platform.kernel.config import Settings
    from recova.platform.kernel.embedded import EmbeddedRedis, with_embedded_services

    settings = with_embedded_services(Settings.from_env())
    client = redis.Redis.from_url(settings.redis_url)
    client.set(f"holder:{os.getpid()}", "here")
    engine = create_engine(settings.database_url)
    with engine.connect() as connection:
        started = connection.execute(text("SELECT pg_postmaster_start_time()")).scalar_one()
        data_directory = connection.execute(text("SHOW data_directory")).scalar_one()
    engine.dispose()
    postmaster = settings.home / "postgres" / "postmaster.pid"
    print(json.dumps({
        "pid": os.getpid(),
        "redis_url": settings.redis_url,
        "database_url": settings.database_url,
        "redis_pidfile": EmbeddedRedis(settings.home).running_pid(),
        "redis_server_pid": client.info("server")["process_id"],
        "postmaster_pid": int(postmaster.read_text().split()[0]),
        "postmaster_started": started.isoformat(),
        "data_directory": data_directory,
    }), flush=True)
    client.close()
    sys.stdin.readline()
    """
)

# Holds only the embedded Redis, sets or reads one key, and reports it.
REDIS_USER = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path
    import redis
    from recova.platform.kernel.embedded import EmbeddedRedis

    home, action = Path(sys.argv[1]), sys.argv[2]
    embedded = EmbeddedRedis(home)
    client = redis.Redis.from_url(embedded.acquire())
    if action == "set":
        client.set("persisted", sys.argv[3])
    value = client.get("persisted")
    print(json.dumps({
        "pid": os.getpid(),
        "server_pid": embedded.running_pid(),
        "value": value.decode() if value is not None else None,
    }), flush=True)
    client.close()
    if action == "hold":
        sys.stdin.readline()
    """
)

# Counts what ``recova demo`` seeds, through the app, in a third process.
DEMO_COUNTS = textwrap.dedent(
    """
    import json
    from sqlalchemy import func, select
    from recova.platform.agencies.contracts import AgencyContract
    from recova.platform.agencies.models import Agency
    from recova.platform.allocation.models import Assignment, Placement
    from recova.platform.entry.app import create_app
    from recova.platform.auth.models import User
    from recova.platform.cases.models import Account, Case
    from recova.platform.kernel.extension import platform
    from recova.tenants.models import Tenant
    from recova.tenants.scope import tenant_scope

    app = create_app()
    db = platform(app).db
    counts = {}
    with db.session() as session:
        for model in (Tenant, Agency, AgencyContract, User):
            counts[model.__tablename__] = session.scalar(select(func.count()).select_from(model))
    with app.app_context():
        for slug in ("lendco-cn", "lendco-us"):
            with tenant_scope(slug) as scoped:
                for model in (Account, Case):
                    counts[f"{slug}.{model.__tablename__}"] = scoped.scalar(
                        select(func.count()).select_from(model)
                    )
                # Allocation: both demo agencies hold active placements, all assigned.
                counts[f"{slug}.agencies_with_cases"] = scoped.scalar(
                    select(func.count(func.distinct(Placement.agency_id))).where(
                        Placement.recalled_on.is_(None)
                    )
                )
                counts[f"{slug}.unassigned"] = scoped.scalar(
                    select(func.count()).select_from(Placement).where(
                        Placement.recalled_on.is_(None),
                        ~Placement.assignments.any(Assignment.ended_at.is_(None)),
                    )
                )
    db.dispose()
    print(json.dumps(counts))
    """
)

# What each demo collector's desk holds today, and the day's phase per lender (two reports
# in the same phase must match: the desk adds a day's calls once the window has opened).
DEMO_DESK = textwrap.dedent(
    """
    import datetime as dt
    import json
    from sqlalchemy import func, select
    from recova.platform.allocation.models import Assignment, Placement
    from recova.platform.auth.models import User
    from recova.platform.compliance.policy import policy_in_force
    from recova.platform.contact.models import ContactAttempt
    from recova.platform.entry.app import create_app
    from recova.platform.kernel.extension import platform
    from recova.platform.payments.models import Payment
    from recova.platform.work.demo_desk import DeskDay
    from recova.platform.work.models import Promise, Settlement
    from recova.tenants.scope import tenant_scope

    def count(session, model, *where):
        return session.scalar(select(func.count()).select_from(model).where(*where))

    db = platform(create_app()).db
    now = dt.datetime.now(dt.UTC)
    report = {}
    for slug in ("lendco-cn", "lendco-us"):
        with tenant_scope(slug, db=db) as s:
            tenant = s.info["tenant"]
            rules = policy_in_force(s, jurisdiction=tenant.jurisdiction, at=now).rules
            day = DeskDay.of(now=now, timezone=tenant.timezone,
                             window_start=rules.window_start, window_end=rules.window_end)
            desks = {}
            for user_id, email in s.execute(
                select(User.id, User.email).where(User.email.like("collector%"))
            ):
                label = f"user:{user_id}"
                held = (Assignment.ended_at.is_(None), Assignment.collector_id == user_id)
                desks[email] = {
                    "attempts_today": count(
                        s, ContactAttempt, ContactAttempt.user_id == user_id,
                        ContactAttempt.attempted_at >= day.start,
                        ContactAttempt.attempted_at < day.end),
                    "promises_due_today": count(
                        s, Promise, Promise.created_by == label, Promise.due_date == day.date),
                    "callbacks_due": count(
                        s, Assignment, *held, Assignment.next_action_at <= now),
                    "waiting_for_manager": count(
                        s, Settlement, Settlement.requested_by == label,
                        Settlement.status == "pending_approval",
                        Settlement.required_level == "manager"),
                }
            totals = {m.__tablename__: count(s, m)
                      for m in (ContactAttempt, Promise, Settlement, Payment)}
            totals["callbacks"] = count(s, Assignment, Assignment.next_action_at.is_not(None))
        report[slug] = {
            "phase": [day.date.isoformat(), day.started], "desks": desks, "totals": totals
        }
    db.dispose()
    print(json.dumps(report))
    """
)
DESK_HEADER = "Filling every collector's desk"


def _without_desk(lines: list[str]) -> list[str]:
    """The demo's output without its desk lines (the header's and the lenders' under it)."""
    kept, in_desk = [], False
    for line in lines:
        if line.startswith(DESK_HEADER):
            in_desk = True
        elif not line.startswith("  "):
            in_desk = False
        if not in_desk:
            kept.append(line)
    return kept


@pytest.fixture
def home() -> Iterator[Path]:
    """A fresh, short ``RECOVA_HOME`` (unix socket paths are limited to ~100 bytes)."""
    base = "/tmp" if Path("/tmp").is_dir() else None
    path = Path(tempfile.mkdtemp(prefix="rcv-", dir=base))
    yield path
    _stop_leftover_servers(path)
    shutil.rmtree(path, ignore_errors=True)


def _env(home: Path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY") and not key.startswith("RECOVA_")
    }
    env["RECOVA_HOME"] = str(home)
    env["RECOVA_ENV"] = "development"
    return env


def _run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(  # noqa: S603 - our own entry points
        list(args), env=_env(home), capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result


def _recova(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return _run(home, str(RECOVA), *args)


def _python(home: Path, script: str, *args: str) -> Any:
    """Run ``script`` and return the JSON it printed on its last line."""
    result = _run(home, sys.executable, "-c", script, *args)
    return json.loads(result.stdout.strip().splitlines()[-1])


def _start(home: Path, script: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", script, *args],
        env=_env(home),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _report(process: subprocess.Popen[str]) -> Any:
    """The JSON line a started script prints once it holds its servers."""
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        _, stderr = process.communicate(timeout=TIMEOUT)
        pytest.fail(f"script exited with {process.returncode} before reporting:\n{stderr}")
    return json.loads(line)


def _release(process: subprocess.Popen[str]) -> None:
    """Let a started script exit normally, and check it did."""
    _, stderr = process.communicate("\n", timeout=TIMEOUT)
    assert process.returncode == 0, stderr


def _kill(process: subprocess.Popen[str]) -> None:
    """SIGKILL a started script: no exit handler of its runs."""
    process.kill()
    process.communicate(timeout=TIMEOUT)
    assert process.returncode == -signal.SIGKILL


def _gone(pid: int | None) -> bool:
    if pid is None:
        return True
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _postmaster_pid(home: Path) -> int | None:
    try:
        return int((home / "postgres" / "postmaster.pid").read_text().split()[0])
    except (FileNotFoundError, IndexError, ValueError):
        return None


def _postgres_running(home: Path) -> bool:
    return not _gone(_postmaster_pid(home))


def _assert_servers_stopped(home: Path, *pids: int | None) -> None:
    """No redis-server and no postgres for ``home`` is left, nor any of ``pids``."""
    assert EmbeddedRedis(home).running_pid() is None, "embedded redis-server left running"
    assert not _postgres_running(home), "embedded postgres left running"
    assert not (home / "redis" / "redis.sock").exists() or not _socket_answers(home)
    for pid in pids:
        assert _gone(pid), f"server process {pid} is still alive"
    pgdata = str(home / "postgres")
    survivors = [
        proc.info
        for proc in psutil.process_iter(["pid", "name", "cmdline"])
        if proc.info["cmdline"] and any(pgdata in part for part in proc.info["cmdline"])
    ]
    assert survivors == [], f"postgres processes for {pgdata} survive: {survivors}"


def _socket_answers(home: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(home / "redis" / "redis.sock"))
        except OSError:
            return False
        return True


def _stop_leftover_servers(home: Path) -> None:
    """Safety net after a failed test: stop servers this test's processes left behind."""
    for pid in (EmbeddedRedis(home).running_pid(), _postmaster_pid(home)):
        if pid is None:
            continue
        with contextlib.suppress(psutil.Error):
            process = psutil.Process(pid)
            if str(home) in " ".join(process.cmdline()) or process.name() == "redis-server":
                process.terminate()
                try:
                    process.wait(30)
                except psutil.TimeoutExpired:
                    process.kill()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - local http
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _listed_tenants(output: str) -> list[str]:
    lines = output.strip().splitlines()
    assert lines[-1] == f"{len(lines) - 1} tenants", output
    return [line.split()[0] for line in lines[:-1]]


def test_demo_runs_twice_without_duplicating_anything(home: Path) -> None:
    first = _recova(home, "demo", "--no-serve")
    assert "Recova demo is ready." in first.stdout
    assert "Every demo login uses the password: recova-demo-2026" in first.stdout
    for email in DEMO_LOGINS:
        assert email in first.stdout
    assert str(home) in first.stdout
    # The demo's webhook receiver verified every delivery of both lenders.
    verified = [line for line in first.stdout.splitlines() if "signed and verified" in line]
    assert [line.split()[0] for line in verified] == DEMO_TENANTS, first.stdout
    # Agency staff are sent to the workspace's queue, lenders' staff to their portal.
    logins = {
        line.split()[0]: line.split()[-1] for line in first.stdout.splitlines() if "@" in line
    }
    assert logins["collector1@swiftrecoveries.test"] == "http://127.0.0.1:5000/work/"
    assert logins["manager@harborcollections.test"] == "http://127.0.0.1:5000/work/"
    assert logins["admin@cn.lendco.test"] == "http://127.0.0.1:5000/portal/lendco-cn/"
    _assert_servers_stopped(home)
    desk = _python(home, DEMO_DESK)
    _assert_servers_stopped(home)

    # Run 2 finds run 1's data on disk (the servers were stopped in between) and adds nothing:
    # the same logins, and every re-sent portfolio and payment row unchanged.
    second = _recova(home, "demo", "--no-serve")
    loads = [line for line in first.stdout.splitlines() if " rows, " in line]
    assert len(loads) == 4
    assert all("completed" in line and " 0 rejected" in line for line in loads)
    reloads = [line for line in second.stdout.splitlines() if " rows, " in line]
    assert all(" 0 inserted, 0 updated," in line for line in reloads)
    again = _python(home, DEMO_DESK)
    # The same day's phase: the same desk, not one row more, and the same lines. (A run
    # on each side of midnight or of the window's opening fills the later phase.)
    same_phase = all(again[slug]["phase"] == desk[slug]["phase"] for slug in DEMO_TENANTS)
    steady = (lambda lines: lines) if same_phase else _without_desk
    assert steady([line for line in second.stdout.splitlines() if " rows, " not in line]) == (
        steady([line for line in first.stdout.splitlines() if " rows, " not in line])
    )
    if same_phase:
        for slug in DEMO_TENANTS:
            assert again[slug]["totals"] == desk[slug]["totals"]
            for email, held in again[slug]["desks"].items():
                earlier = desk[slug]["desks"][email]
                assert {k: v for k, v in held.items() if k != "callbacks_due"} == {
                    k: v for k, v in earlier.items() if k != "callbacks_due"
                }
    # Every collector of both lenders has work today: what is due (a promise, a callback
    # due now, an offer waiting for their manager) and, once the day started, calls.
    desk_lines = [line for line in first.stdout.splitlines() if "waiting for a manager" in line]
    assert [line.split()[0] for line in desk_lines] == DEMO_TENANTS, first.stdout
    for slug in DEMO_TENANTS:
        desks = again[slug]["desks"]
        assert len(desks) == 4
        for email, held in desks.items():
            assert held["promises_due_today"] >= 2, (slug, email, held)
            assert held["callbacks_due"] >= 1, (slug, email, held)
            assert held["waiting_for_manager"] >= 1, (slug, email, held)
            assert (held["attempts_today"] > 0) is again[slug]["phase"][1], (slug, email, held)
    _assert_servers_stopped(home)

    assert _listed_tenants(_recova(home, "tenants", "list").stdout) == DEMO_TENANTS
    counts = _python(home, DEMO_COUNTS)
    assert counts == {
        "tenants": 2,
        "agencies": 2,
        "agency_contracts": 4,
        "users": len(DEMO_LOGINS),
        **{
            f"{slug}.{table}": DEMO_ACCOUNTS
            for slug in DEMO_TENANTS
            for table in ("accounts", "cases")
        },
        **{f"{slug}.agencies_with_cases": 2 for slug in DEMO_TENANTS},
        **{f"{slug}.unassigned": 0 for slug in DEMO_TENANTS},
    }
    allocations = [line for line in first.stdout.splitlines() if "assigned to collectors" in line]
    assert len(allocations) == 2
    _assert_servers_stopped(home)


def test_tenants_created_in_one_run_are_listed_in_the_next(home: Path) -> None:
    created = _recova(
        home,
        "tenants",
        "create",
        "persisted-co",
        "--name",
        "Persisted Co",
        "--jurisdiction",
        "US",
        "--timezone",
        "America/Chicago",
        "--currency",
        "USD",
    )
    assert "created tenant persisted-co" in created.stdout
    _assert_servers_stopped(home)
    assert _listed_tenants(_recova(home, "tenants", "list").stdout) == ["persisted-co"]
    _assert_servers_stopped(home)


def test_redis_data_persists_between_runs(home: Path) -> None:
    first = _python(home, REDIS_USER, str(home), "set", "kept-across-restarts")
    assert first["value"] == "kept-across-restarts"
    _assert_servers_stopped(home, first["server_pid"])

    second = _python(home, REDIS_USER, str(home), "get")
    assert second["value"] == "kept-across-restarts"
    assert second["server_pid"] != first["server_pid"]  # a new server, reading saved data
    _assert_servers_stopped(home, second["server_pid"])


def test_parallel_processes_share_one_pair_of_servers(home: Path) -> None:
    holders = [_start(home, HOLDER) for _ in range(3)]
    try:
        reports = [_report(holder) for holder in holders]
    except BaseException:
        for holder in holders:
            holder.kill()
            holder.communicate(timeout=TIMEOUT)
        raise
    first = reports[0]
    for report in reports:
        assert report["redis_url"] == first["redis_url"]
        assert report["database_url"] == first["database_url"]
        assert report["redis_pidfile"] == report["redis_server_pid"] == first["redis_pidfile"]
        assert report["postmaster_pid"] == first["postmaster_pid"]
        assert report["postmaster_started"] == first["postmaster_started"]
        assert Path(report["data_directory"]) == home / "postgres"
    redis_pid, postgres_pid = first["redis_pidfile"], first["postmaster_pid"]
    assert EmbeddedRedis(home).running_pid() == redis_pid
    assert _postmaster_pid(home) == postgres_pid
    users = set(json.loads((home / "redis" / "users.json").read_text()))
    assert users == {report["pid"] for report in reports}

    # Every holder wrote to the same server.
    client = redis.Redis.from_url(first["redis_url"])
    try:
        assert client.info("server")["process_id"] == redis_pid
        assert sorted(client.scan_iter(match="holder:*")) == sorted(
            f"holder:{report['pid']}".encode() for report in reports
        )
    finally:
        client.close()

    # The servers outlive every holder but the last.
    for holder in holders[:-1]:
        _release(holder)
        assert EmbeddedRedis(home).running_pid() == redis_pid
        assert _postmaster_pid(home) == postgres_pid
        assert not _gone(postgres_pid)
    _release(holders[-1])
    _assert_servers_stopped(home, redis_pid, postgres_pid)


def test_holder_killed_alone_is_cleaned_up_by_the_next_process(home: Path) -> None:
    victim = _start(home, HOLDER)
    report = _report(victim)
    redis_pid, postgres_pid = report["redis_pidfile"], report["postmaster_pid"]
    _kill(victim)
    # Nothing ran on the way out, so both servers are still up ...
    assert EmbeddedRedis(home).running_pid() == redis_pid
    assert not _gone(postgres_pid)

    # ... until the next process joins them and leaves.
    later = _start(home, HOLDER)
    assert _report(later)["redis_server_pid"] == redis_pid
    _release(later)
    _assert_servers_stopped(home, redis_pid, postgres_pid)


def test_holder_killed_beside_another_is_cleaned_up_when_that_one_leaves(home: Path) -> None:
    survivor = _start(home, HOLDER)
    redis_pid = _report(survivor)["redis_pidfile"]
    victim = _start(home, HOLDER)
    postgres_pid = _report(victim)["postmaster_pid"]
    _kill(victim)
    _release(survivor)
    _assert_servers_stopped(home, redis_pid, postgres_pid)


def test_redis_holder_killed_is_cleaned_up_by_a_later_acquirer(home: Path) -> None:
    victim = _start(home, REDIS_USER, str(home), "hold")
    server_pid = _report(victim)["server_pid"]
    _kill(victim)
    assert EmbeddedRedis(home).running_pid() == server_pid

    later = _python(home, REDIS_USER, str(home), "get")
    assert later["server_pid"] == server_pid
    _assert_servers_stopped(home, server_pid)


def test_sigterm_to_serve_stops_the_servers(home: Path) -> None:
    port = _free_port()
    server = subprocess.Popen(  # noqa: S603 - our own entry point
        [str(RECOVA), "serve", "--port", str(port)],
        env=_env(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + TIMEOUT
        while True:
            assert server.poll() is None, server.communicate()[0]
            with contextlib.suppress(OSError):
                if _get(f"http://127.0.0.1:{port}/healthz")[0] == 200:
                    break
            assert time.monotonic() < deadline, "recova serve never answered /healthz"
            time.sleep(0.2)
        status, body = _get(f"http://127.0.0.1:{port}/readyz")
        assert (status, body["checks"]) == (200, {"postgres": "ok", "redis": "ok"})
        redis_pid, postgres_pid = EmbeddedRedis(home).running_pid(), _postmaster_pid(home)
        assert redis_pid is not None
        assert not _gone(postgres_pid)

        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=TIMEOUT)
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate(timeout=TIMEOUT)
    assert server.returncode == 128 + signal.SIGTERM, output
    _assert_servers_stopped(home, redis_pid, postgres_pid)
