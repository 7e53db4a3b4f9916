"""Personal data: masked for everyone, revealed with a role and a reason, erased on time."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import select, text, update

from recova.platform.allocation.models import Placement
from recova.platform.audit import events, verify_chain
from recova.platform.cases.models import Case, CaseStatus, Contact, ContactKind, Debtor
from recova.platform.compliance.gate import Actor, attempt_contact
from recova.platform.contact.models import Channel
from recova.platform.kernel.crypto import mask
from recova.platform.kernel.extension import platform
from recova.platform.privacy.retention import ERASED, erase_expired
from recova.platform.privacy.reveal import REASON_CONTEXT
from recova.tenants.scope import tenant_scope
from tests.allocation_support import seed_world_allocation
from tests.support import World, bearer, login, recova

PHONE = "+8613812345678"
NATIONAL_ID = "11010519491231002X"
REASON = "debtor asked us to confirm the number on file"


@pytest.fixture
def placed(world: World) -> World:
    """World A's cases placed with agency A and assigned to its collector, with phones."""
    seed_world_allocation(world)
    objects = platform(world.app)
    with tenant_scope(world.a.slug, db=objects.db) as session:
        for debtor in session.scalars(select(Debtor).order_by(Debtor.id)):
            session.add(
                Contact(
                    debtor_id=debtor.id,
                    kind=ContactKind.PHONE,
                    relation="self",
                    value_ciphertext=objects.cipher.encrypt(PHONE, context="contact.phone"),
                    value_index=objects.cipher.blind_index(PHONE, context="contact.phone"),
                    value_masked=mask(PHONE),
                )
            )
    return world


def first_debtor(world: World) -> tuple[int, int]:
    with tenant_scope(world.a.slug, db=platform(world.app).db) as session:
        debtor = session.scalars(select(Debtor).order_by(Debtor.id)).first()
        assert debtor is not None
        return debtor.id, debtor.contacts[0].id


def reveal(caller: Any, debtor_id: int, *, tenant: str | None = None, **body: Any) -> Any:
    """Agency staff name the tenant in the path; tenant users may leave it out."""
    prefix = f"/api/v1/tenants/{tenant}" if tenant else "/api/v1"
    return caller.post(
        f"{prefix}/debtors/{debtor_id}/reveal", {"field": "national_id", "reason": REASON, **body}
    )


def test_lists_show_identifiers_masked(placed: World) -> None:
    admin = login(placed.app, placed.a.admin_email)
    body = admin.get("/api/v1/debtors").get_data(as_text=True)
    assert NATIONAL_ID not in body
    assert "13812345678" not in body
    assert "1101**********002X" in body or "****" in body


def test_tenant_admin_reveals_with_a_reason_and_the_reveal_is_audited(placed: World) -> None:
    debtor_id, contact_id = first_debtor(placed)
    admin = login(placed.app, placed.a.admin_email)
    national = reveal(admin, debtor_id)
    assert national.status_code == 200, national.json
    assert national.json["value"] == NATIONAL_ID
    phone = reveal(admin, debtor_id, field="contact", contact_id=contact_id)
    assert phone.json["value"] == PHONE
    with tenant_scope(placed.a.slug, db=platform(placed.app).db) as session:
        logged = events(session, action="personal_data.revealed")
        assert [e.subject_id for e in logged] == [str(debtor_id)] * 2
        # The reason is kept where retention can erase it; the chain holds its keyed digest.
        digest = platform(placed.app).cipher.blind_index(REASON, context=REASON_CONTEXT).hex()
        assert all(f'"reason_digest":"{digest}"' in e.data for e in logged)
        assert not any(REASON in e.data for e in logged)
        # The chain records who looked and why, never what they saw.
        assert not any(NATIONAL_ID in e.data or "13812345678" in e.data for e in logged)
        assert verify_chain(session).ok
    listed = admin.get(f"/api/v1/privacy/reveals?debtor_id={debtor_id}")
    assert [(r["field"], r["reason"]) for r in listed.json] == [
        ("contact", REASON),
        ("national_id", REASON),
    ]
    assert (
        login(placed.app, placed.a.analyst_email).get("/api/v1/privacy/reveals").status_code == 403
    )


def test_a_reveal_needs_the_role_the_reach_and_a_proper_reason(placed: World) -> None:
    debtor_id, _contact_id = first_debtor(placed)
    app = placed.app
    assert reveal(login(app, placed.a.analyst_email), debtor_id).status_code == 403
    collector = login(app, placed.collector_email)
    assigned = reveal(collector, debtor_id, tenant=placed.a.slug)  # assigned to them
    assert assigned.json["value"] == NATIONAL_ID
    manager = login(app, placed.manager_email)
    assert reveal(manager, debtor_id, tenant=placed.a.slug).status_code == 200
    admin = login(app, placed.a.admin_email)
    assert reveal(admin, debtor_id, reason="because").status_code == 422
    quoted = reveal(admin, debtor_id, reason="he said 13812345678 is his new number")
    assert quoted.status_code == 422
    assert "phone or ID" in quoted.json["message"]
    assert reveal(admin, debtor_id, field="contact").status_code == 422
    assert reveal(admin, debtor_id, field="contact", contact_id=999_999).status_code == 404
    assert reveal(admin, 999_999).status_code == 404
    limited = bearer(app, placed.a.limited_client_id, placed.a.limited_client_secret)
    assert reveal(limited, debtor_id).status_code == 403


def test_agency_staff_reach_only_their_placed_cases(placed: World) -> None:
    debtor_id, _ = first_debtor(placed)
    with tenant_scope(placed.a.slug, db=platform(placed.app).db) as session:
        session.execute(
            update(Placement).values(recalled_on=dt.date.today(), recall_reason="tenant")
        )
    collector = login(placed.app, placed.collector_email)
    assert reveal(collector, debtor_id, tenant=placed.a.slug).status_code == 404
    manager = login(placed.app, placed.manager_email)
    assert reveal(manager, debtor_id, tenant=placed.a.slug).status_code == 404


def test_reveals_are_rate_limited_per_user(placed: World) -> None:
    debtor_id, _ = first_debtor(placed)
    admin = login(placed.app, placed.a.admin_email)
    saved = admin.request(
        "PUT", "/api/v1/privacy/settings", {"retention_days": 365, "reveals_per_hour": 2}
    )
    assert saved.status_code == 200
    assert [reveal(admin, debtor_id).status_code for _ in range(2)] == [200, 200]
    refused = reveal(admin, debtor_id)
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) > 0
    # Another user of the tenant has their own allowance.
    other = login(placed.app, placed.collector_email)
    assert reveal(other, debtor_id, tenant=placed.a.slug).status_code == 200
    with tenant_scope(placed.a.slug, db=platform(placed.app).db) as session:
        assert len(events(session, action="personal_data.revealed")) == 3
        [change] = events(session, action="config.changed")
        assert '"reveals_per_hour":2' in change.data


def _close(world: World, case_ids: list[int], days_ago: int) -> None:
    with tenant_scope(world.a.slug, db=platform(world.app).db) as session:
        session.execute(
            update(Case)
            .where(Case.id.in_(case_ids))
            .values(
                status=CaseStatus.CLOSED,
                closed_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=days_ago),
            )
        )


def _schema_text_containing(world: World, needle: str) -> list[str]:
    """Tables of A's schema where any row, read as text, contains ``needle``."""
    found = []
    with tenant_scope(world.a.slug, db=platform(world.app).db) as session:
        schema = session.info["tenant_schema"]
        tables = session.scalars(
            text("SELECT tablename FROM pg_tables WHERE schemaname = :s"), {"s": schema}
        ).all()
        for table in tables:
            hit = session.scalar(
                text(f'SELECT count(*) FROM "{schema}"."{table}" t WHERE t::text LIKE :n'),
                {"n": f"%{needle}%"},
            )
            if hit:
                found.append(table)
    return found


@pytest.mark.real_commits  # the CLI runs retention through an app of its own
def test_retention_erases_personal_data_and_the_chain_still_verifies(
    placed: World, database_url: str, cli_env: dict[str, str]
) -> None:
    admin = login(placed.app, placed.a.admin_email)
    debtor_id, _ = first_debtor(placed)
    assert reveal(admin, debtor_id).status_code == 200  # an audited event about the debtor
    objects = platform(placed.app)
    with tenant_scope(placed.a.slug, db=objects.db) as session:
        tenant = session.info["tenant"]
        contact_id = session.scalars(select(Contact.id).where(Contact.debtor_id == debtor_id)).one()
        attempt = attempt_contact(
            session,
            objects,
            tenant=tenant,
            case_id=placed.a.case_ids[0],
            contact_id=contact_id,
            channel=Channel.CALL_OUT,
            actor=Actor(kind="tenant", user_id=placed.a.admin_id),
            notes="Debtor alpha 1 asked us to call back",
            at=dt.datetime(2026, 11, 2, 2, 0, tzinfo=dt.UTC),  # 10:00 in Shanghai
        )
        assert attempt is not None
        assert attempt.blocked_rule is None
    admin.request("PUT", "/api/v1/privacy/settings", {"retention_days": 30, "reveals_per_hour": 20})
    cases = placed.a.case_ids
    _close(placed, cases[:1], days_ago=31)  # past retention
    _close(placed, cases[1:2], days_ago=5)  # closed, but recently
    assert sorted(_schema_text_containing(placed, "Debtor alpha 1")) == [
        "contact_attempts",
        "debtors",
    ]

    result = recova({**cli_env, "DATABASE_URL": database_url}, "privacy", "erase", placed.a.slug)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("erased 1 debtors")

    assert _schema_text_containing(placed, "Debtor alpha 1") == []
    with tenant_scope(placed.a.slug, db=platform(placed.app).db) as session:
        erased = session.get(Debtor, debtor_id)
        assert erased is not None
        assert (erased.full_name, erased.national_id_ciphertext) == (ERASED, None)
        assert erased.erased_at is not None
        assert {c.value_ciphertext for c in erased.contacts} == {b""}
        assert {c.value_masked for c in erased.contacts} == {ERASED}
        kept = session.scalars(select(Debtor).where(Debtor.id != debtor_id)).all()
        assert all(d.erased_at is None and d.national_id_ciphertext for d in kept)
        assert verify_chain(session).ok
        [erasure] = events(session, action="privacy.erased")
        assert erasure.data.startswith('{"cutoff":')
        assert f"[{debtor_id}]" in erasure.data
        # Idempotent: nothing more is due, and nothing more is written.
        assert erase_expired(session, actor="job:test") == {"debtors": 0, "file_chunks": 0}
    assert reveal(admin, debtor_id).status_code == 410
    # The reason typed for the earlier reveal went with the debtor; the record stays.
    [record] = admin.get(f"/api/v1/privacy/reveals?debtor_id={debtor_id}").json
    assert record["reason"] is None
