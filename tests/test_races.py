"""A uniqueness race the services check for still ends in a clean 409, never a 500."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import text

from recova.platform.kernel.extension import platform
from tests.support import World, login, unique


def _wait_until_blocked_behind(engine, rival_pid: int, seconds: float = 30) -> None:  # type: ignore[no-untyped-def]
    """Return once some backend waits on a lock held by ``rival_pid``."""
    deadline = time.monotonic() + seconds
    with engine.connect() as probe:
        while time.monotonic() < deadline:
            waiting = probe.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE :rival = ANY(pg_blocking_pids(pid))"
                ),
                {"rival": rival_pid},
            ).scalar()
            probe.rollback()
            if waiting:
                return
            time.sleep(0.01)
    raise AssertionError("the API's insert never waited behind the rival's row")


@pytest.mark.real_commits  # a rival connection and a thread race the request
def test_concurrent_insert_of_the_same_slug_gives_409(app, world: World) -> None:
    slug = unique("race")
    caller = login(app, world.platform_admin_email)
    engine = platform(app).db.engine
    results: list[int] = []
    with engine.connect() as rival:
        rival.begin()
        rival_pid = rival.execute(text("SELECT pg_backend_pid()")).scalar_one()
        # The rival holds an uncommitted row with the slug: the API's own check cannot see
        # it, so the API's insert waits on the unique index until the rival commits.
        rival.execute(
            text("INSERT INTO platform.agencies (slug, name, status) VALUES (:s, 'x', 'active')"),
            {"s": slug},
        )
        thread = threading.Thread(
            target=lambda: results.append(
                caller.post("/api/v1/platform/agencies", {"slug": slug, "name": "Y"}).status_code
            )
        )
        thread.start()
        _wait_until_blocked_behind(engine, rival_pid)
        rival.commit()
    thread.join(timeout=30)
    assert results == [409]
    with engine.connect() as connection:
        names = connection.execute(
            text("SELECT name FROM platform.agencies WHERE slug = :s"), {"s": slug}
        ).scalars()
        assert list(names) == ["x"]  # the rival's row, once
