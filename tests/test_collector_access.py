"""Reaching a case as agency staff: the assigned collector works it from the queue, through
the API alone; a colleague who does not hold it, and another agency, reach nothing of it.

The rule (``recova.platform.auth.reach``): a collector reaches the cases assigned to them
now, an agency manager the cases placed with their agency now; anything else is a 404,
exactly as if it did not exist. Debtors' names and identifiers are masked to agency staff.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

import pytest
from sqlalchemy import select

from recova.platform.agencies.models import Agency
from recova.platform.auth.models import Role
from recova.platform.auth.services import create_user
from recova.platform.cases.models import Contact, Debtor
from recova.platform.kernel.crypto import mask
from recova.platform.kernel.extension import platform
from tests.compliance_support import Debt, Lender, lender_for, zone_where_it_is
from tests.support import PASSWORD, login

PHONE_DIGITS = "13812345678"  # the debtor's own number (``Lender.debt``), never shown whole


@pytest.fixture
def cn(app, shared_lender_cn, rolled_back) -> Lender:  # type: ignore[no-untyped-def]
    return lender_for(app, "CN", shared_lender_cn, rolled_back)


def colleague_of(lender: Lender, agency: int = 0) -> str:
    """A second collector of agency ``agency`` (by index), holding no case."""
    with platform(lender.app).db.session() as session:
        found = session.get(Agency, lender.agency_ids[agency])
        user = create_user(
            session,
            email=f"colleague-{secrets.token_hex(3)}@agency.test",
            full_name="Colleague",
            password=PASSWORD,
            role=Role.COLLECTOR,
            agency=found,
        )
        session.commit()
        return user.email


def debtor_state(lender: Lender, debt: Debt) -> tuple[Any, ...]:
    with lender.scope() as session:
        debtor = session.get(Debtor, debt.debtor_id)
        assert debtor is not None
        marks = session.execute(
            select(Contact.id, Contact.do_not_contact)
            .where(Contact.debtor_id == debt.debtor_id)
            .order_by(Contact.id)
        ).all()
        return debtor.do_not_contact, tuple(marks)


def case_routes(lender: Lender, debt: Debt) -> list[str]:
    base = f"/api/v1/tenants/{lender.slug}"
    return [
        f"{base}/cases/{debt.case_id}",
        f"{base}/cases/{debt.case_id}/contacts",
        f"{base}/debtors/{debt.debtor_id}",
    ]


def test_a_collector_cannot_mark_a_colleague_s_debtor_do_not_contact(cn: Lender) -> None:
    debt = cn.debt()  # assigned to agency 0's collector
    before = debtor_state(cn, debt)
    colleague = login(cn.app, colleague_of(cn))
    path = f"/api/v1/tenants/{cn.slug}/debtors/{debt.debtor_id}/do-not-contact"
    for body in ({"do_not_contact": True}, {"do_not_contact": True, "contact_id": debt.phones[0]}):
        refused = colleague.request("PUT", path, body)
        assert refused.status_code == 404, refused.json
        assert refused.json["message"] == f"no debtor {debt.debtor_id}"
    assert debtor_state(cn, debt) == before
    # The collector holding the case may; so may their manager.
    holder = login(cn.app, cn.collector_emails[0])
    marked = holder.request("PUT", path, {"do_not_contact": True, "contact_id": debt.phones[0]})
    assert marked.status_code == 200, marked.json
    manager = login(cn.app, cn.manager_emails[0])
    assert manager.request("PUT", path, {"do_not_contact": True}).status_code == 200
    assert debtor_state(cn, debt)[0] is True


def test_the_assigned_collector_works_a_case_with_ids_found_through_the_api(cn: Lender) -> None:
    cn.debt(timezone=zone_where_it_is(12))  # placed and assigned, callable now
    collector = login(cn.app, cn.collector_emails[0])
    queue = collector.get("/api/v1/agency/queue")
    assert queue.status_code == 200, queue.json
    [item] = queue.json
    assert item["tenant"] == cn.slug
    # "Debtor <8 hex digits>": one readable character a word, the rest stars.
    assert re.fullmatch(r"D\*{5} [0-9a-f]\*{7}", item["debtor_name"]), item["debtor_name"]
    assert item["contact_ids"]
    assert item["links"]["case"] == f"/api/v1/tenants/{cn.slug}/cases/{item['case_id']}"

    case = collector.get(item["links"]["case"])
    assert case.status_code == 200, case.json
    assert case.json["debtor"]["id"] == item["debtor_id"]
    assert case.json["debtor"]["full_name"] == item["debtor_name"]
    debtor = collector.get(f"/api/v1/tenants/{cn.slug}/debtors/{item['debtor_id']}")
    assert debtor.status_code == 200, debtor.json
    assert debtor.json["full_name"] == item["debtor_name"]
    assert debtor.json["national_id"] is None or "*" in debtor.json["national_id"]
    contacts = collector.get(item["links"]["contacts"])
    assert contacts.status_code == 200, contacts.json
    assert {c["id"] for c in contacts.json} >= set(item["contact_ids"])
    assert all(PHONE_DIGITS not in str(c["value"]) for c in contacts.json)
    siblings = [c for c in contacts.json if c["relation"] != "self"]
    assert siblings
    assert all("Relative" not in (c["name"] or "") for c in siblings)
    own_phone = next(c for c in contacts.json if c["relation"] == "self" and c["kind"] == "phone")
    assert own_phone["value"] == mask("+8613812345678")

    made = collector.post(
        item["links"]["attempts"], {"contact_id": own_phone["id"], "channel": "sms"}
    )
    assert made.status_code == 201, made.json
    assert (made.json["status"], made.json["case_id"]) == ("pending", item["case_id"])
    assert made.json["contact_id"] == own_phone["id"]
    for response in (queue, case, debtor, contacts, made):
        text = response.get_data(as_text=True)
        assert PHONE_DIGITS not in text
        assert "Debtor " not in text


def test_only_the_holder_and_their_agency_s_managers_reach_a_case(cn: Lender) -> None:
    debt = cn.debt()
    colleague = login(cn.app, colleague_of(cn))
    other_manager = login(cn.app, cn.manager_emails[1])  # contracted with the tenant too
    other_collector = login(cn.app, cn.collector_emails[1])
    for outsider in (colleague, other_manager, other_collector):
        for path in case_routes(cn, debt):
            response = outsider.get(path)
            assert response.status_code == 404, (outsider.label, path, response.json)
            assert "Debtor" not in response.get_data(as_text=True)
        assert outsider.get("/api/v1/agency/queue").json == []
    for insider in (login(cn.app, cn.collector_emails[0]), login(cn.app, cn.manager_emails[0])):
        for path in case_routes(cn, debt):
            response = insider.get(path)
            assert response.status_code == 200, (insider.label, path, response.json)
            assert "Debtor " not in response.get_data(as_text=True)  # the name is masked
    # Tenant staff see their own debtor's name in full (identifiers stay masked).
    admin = login(cn.app, cn.admin_email)
    shown = admin.get(f"/api/v1/cases/{debt.case_id}")
    assert shown.status_code == 200
    assert shown.json["debtor"]["full_name"].startswith("Debtor ")
    assert PHONE_DIGITS not in admin.get(f"/api/v1/cases/{debt.case_id}/contacts").get_data(
        as_text=True
    )


def test_reassigning_a_case_moves_the_reach_with_it(cn: Lender) -> None:
    debt = cn.debt()
    holder = login(cn.app, cn.collector_emails[0])
    path = f"/api/v1/tenants/{cn.slug}/cases/{debt.case_id}"
    assert holder.get(path).status_code == 200
    cn.assign(debt, None)  # the assignment ended; the case stays placed with the agency
    assert holder.get(path).status_code == 404
    assert holder.get(f"{path}/lifecycle").status_code == 404
    assert login(cn.app, cn.manager_emails[0]).get(path).status_code == 200
