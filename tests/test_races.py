"""A uniqueness race the services check for still ends in a clean 409, never a 500."""

from __future__ import annotations

import threading

from sqlalchemy import text

from recova.platform.extension import platform
from tests.support import World, login, unique


def test_concurrent_insert_of_the_same_slug_gives_409(app, world: World) -> None:
    slug = unique("race")
    caller = login(app, world.platform_admin_email)
    engine = platform(app).db.engine
    results: list[int] = []
    with engine.connect() as rival:
        rival.begin()
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
        thread.join(timeout=1.0)
        assert thread.is_alive()  # blocked behind the rival's row lock
        rival.commit()
    thread.join(timeout=30)
    assert results == [409]
    with engine.connect() as connection:
        names = connection.execute(
            text("SELECT name FROM platform.agencies WHERE slug = :s"), {"s": slug}
        ).scalars()
        assert list(names) == ["x"]  # the rival's row, once
