"""The portal's audit section: events with filters and keyset pages, verifying the chain
(a tampered chain shows its first broken index), exported heads; admins only, as the API."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.pool import NullPool

from recova.platform.audit import record_event
from recova.platform.audit.models import AuditEvent, AuditHeadExport
from recova.platform.kernel.extension import platform
from recova.tenants.scope import tenant_scope
from tests.support import World, anonymous, login

TOKEN = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
SEQ = re.compile(r'<td class="num">(\d+)</td>\s*<td>')


def add_events(world: World, count: int, *, action: str, actor: str, subject: int = 1) -> None:
    with tenant_scope(world.a.slug, db=platform(world.app).db) as session:
        for n in range(count):
            record_event(
                session,
                action=action,
                actor=actor,
                subject=("case", subject),
                data={"n": n, "amount": "12.50"},
            )
        session.commit()


def seqs(page: str) -> list[int]:
    return [int(found) for found in SEQ.findall(page)]


def url(world: World, rest: str = "") -> str:
    return f"/portal/{world.a.slug}/audit{rest}"


def test_events_are_newest_first_in_keyset_pages(world: World) -> None:
    add_events(world, 60, action="settlement.decided", actor="user:7")
    admin = login(world.app, world.a.admin_email)
    first = admin.client.get(url(world), headers={"Accept-Language": "en"})
    assert first.status_code == 200
    page = first.get_data(as_text=True)
    shown = seqs(page)
    assert len(shown) == 50
    assert shown == sorted(shown, reverse=True)
    older = re.search(r'href="([^"]+)" rel="next"', page)
    assert older is not None
    second = admin.client.get(older.group(1).replace("&amp;", "&")).get_data(as_text=True)
    rest = seqs(second)
    assert rest
    assert max(rest) < min(shown)
    assert "settlement.decided" in page
    assert "<dt>amount</dt><dd>12.50</dd>" in page  # the data, readably


def test_filters_by_action_prefix_actor_and_object(world: World) -> None:
    add_events(world, 3, action="settlement.decided", actor="user:7", subject=11)
    add_events(world, 2, action="dispute.resolved", actor="user:8", subject=12)
    admin = login(world.app, world.a.admin_email)

    def shown(query: str) -> str:
        response = admin.client.get(url(world, f"?{query}"))
        assert response.status_code == 200
        return response.get_data(as_text=True)

    by_action = shown("action=settlement.")
    assert len(seqs(by_action)) == 3
    assert "dispute.resolved</code>" not in by_action
    by_actor = shown("actor=user:8")
    assert len(seqs(by_actor)) == 2
    by_object = shown("subject_type=case&subject_id=11")
    assert len(seqs(by_object)) == 3
    today = (dt.date.today() - dt.timedelta(days=1)).isoformat()
    assert len(seqs(shown(f"actor=user:8&since={today}"))) == 2
    assert seqs(shown("actor=user:8&since=2001-01-01&until=2001-01-02")) == []
    bad = admin.client.get(url(world, "?since=2026-02-02&until=2026-01-01"))
    assert bad.status_code == 422
    assert 'id="until-error"' in bad.get_data(as_text=True)


def test_an_intact_chain_verifies_with_its_head(world: World) -> None:
    add_events(world, 3, action="case.transition", actor="job:test")
    admin = login(world.app, world.a.admin_email)
    response = admin.client.get(url(world, "/verify"), headers={"Accept-Language": "en"})
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "Chain intact" in page
    assert re.search(r'class="head-seq">\d+<', page)
    fragment = admin.client.get(url(world, "/verify"), headers={"HX-Request": "true"})
    assert "<html" not in fragment.get_data(as_text=True)


@pytest.fixture
def tamper(app: Any) -> Iterator[Any]:
    engine = create_engine(platform(app).db.engine.url, poolclass=NullPool)
    with engine.connect() as connection:
        connection.execute(text("SET session_replication_role = replica"))

        def run(slug: str, statement: str) -> None:
            table = f'"tenant_{slug}".audit_events'
            connection.execute(text(statement.replace("{t}", table)))
            connection.commit()

        yield run
    engine.dispose()


@pytest.mark.real_commits  # a superuser tampers on a connection of its own
def test_a_tampered_chain_shows_its_first_broken_index(world: World, tamper: Any) -> None:
    add_events(world, 5, action="case.transition", actor="job:test")
    with tenant_scope(world.a.slug, db=platform(world.app).db) as session:
        target = int(session.scalar(select(func.max(AuditEvent.seq))) or 0) - 2
    tamper(
        world.a.slug, f"UPDATE {{t}} SET data = replace(data, '12.50', '1.25') WHERE seq = {target}"
    )
    admin = login(world.app, world.a.admin_email)
    page = admin.client.get(url(world, "/verify"), headers={"Accept-Language": "en"})
    text_ = page.get_data(as_text=True)
    assert "Chain broken" in text_
    assert f'class="broken-at">{target}<' in text_
    assert "was altered" in text_


def test_exporting_a_head_now_once_a_day(world: World) -> None:
    add_events(world, 2, action="case.transition", actor="job:test")
    admin = login(world.app, world.a.admin_email)
    token = TOKEN.search(admin.client.get(url(world)).get_data(as_text=True))
    assert token is not None
    first = admin.client.post(url(world, "/heads"), data={"csrf_token": token.group(1)})
    assert first.status_code == 302
    page = admin.client.get(url(world), headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert "Head exported" in page
    assert "Verify against this head" in page
    again = admin.client.post(url(world, "/heads"), data={"csrf_token": token.group(1)})
    assert again.status_code == 302
    page = admin.client.get(url(world), headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert "already exported" in page
    heads = admin.client.get(url(world, "/heads"))
    assert heads.status_code == 200


def test_the_analyst_and_agency_staff_are_refused(world: World) -> None:
    for email in (world.a.analyst_email, world.manager_email, world.collector_email):
        caller = login(world.app, email)
        for rest in ("", "/verify", "/heads"):
            assert caller.client.get(url(world, rest)).status_code in (403, 404)
        assert caller.post(url(world, "/heads")).status_code in (403, 404)
    with tenant_scope(world.a.slug, db=platform(world.app).db) as session:
        assert session.scalar(select(func.count()).select_from(AuditHeadExport)) == 0


def test_the_analyst_is_not_shown_the_section(world: World) -> None:
    analyst = login(world.app, world.a.analyst_email)
    page = analyst.client.get(f"/portal/{world.a.slug}/").get_data(as_text=True)
    assert f"/portal/{world.a.slug}/audit" not in page
    admin = login(world.app, world.a.admin_email)
    page = admin.client.get(f"/portal/{world.a.slug}/").get_data(as_text=True)
    assert f"/portal/{world.a.slug}/audit" in page


def test_another_tenants_admin_finds_nothing_and_anonymous_signs_in(world: World) -> None:
    other = login(world.app, world.b.admin_email)
    for rest in ("", "/verify", "/heads"):
        assert other.client.get(url(world, rest)).status_code == 404
    assert other.post(url(world, "/heads")).status_code == 404
    nobody = anonymous(world.app).client.get(url(world))
    assert nobody.status_code == 302
    assert "/login" in nobody.headers["Location"]
