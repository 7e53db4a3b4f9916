"""Tenants, debtors, contacts and placements for the compliance and contact tests.

Attempts go through the real gate, each in its own committed transaction (``attempt``),
at chosen instants, so windows, days and weeks are exact without touching the clock.
"""

from __future__ import annotations

import datetime as dt
import secrets
import zoneinfo
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from flask import Flask
from sqlalchemy import select

from recova.billing.services import create_agency_contract
from recova.platform.agencies.services import create_agency
from recova.platform.allocation.models import Assignment, Placement
from recova.platform.auth.models import Role
from recova.platform.auth.services import create_user
from recova.platform.cases.models import Case, Contact, ContactKind, Debtor
from recova.platform.cases.services import open_case
from recova.platform.compliance.gate import Actor, attempt_contact
from recova.platform.contact.models import Channel, ContactAttempt
from recova.platform.contact.services import outcome_codes, record_outcome
from recova.platform.kernel.crypto import mask
from recova.platform.kernel.extension import platform
from recova.tenants.models import Tenant
from recova.tenants.scope import tenant_scope
from tests.support import PASSWORD
from tests.tenant_clone import clone_tenant
from tests.transactions import RolledBack, private_copy

ZONES = {"CN": ("Asia/Shanghai", "CNY"), "US": ("America/New_York", "USD")}


def local(zone: str, *args: int) -> dt.datetime:
    """A local wall-clock time in ``zone`` as an aware instant."""
    return dt.datetime(*args, tzinfo=zoneinfo.ZoneInfo(zone))  # type: ignore[misc]


@dataclass
class Debt:
    case_id: int
    debtor_id: int
    phones: list[int]
    email: int
    address: int
    third_parties: list[int]


@dataclass
class Lender:
    """A tenant with two contracted agencies (a manager and a collector each)."""

    app: Flask
    slug: str
    id: int
    jurisdiction: str
    admin_email: str
    agency_ids: list[int]
    collector_emails: list[str] = field(default_factory=list)
    manager_emails: list[str] = field(default_factory=list)
    collector_ids: list[int] = field(default_factory=list)

    @property
    def objects(self) -> Any:
        return platform(self.app)

    def scope(self) -> Any:
        return tenant_scope(self.slug, db=self.objects.db)

    def tenant(self) -> Tenant:
        with self.objects.db.session() as session:
            found = session.get(Tenant, self.id)
            assert found is not None
            session.expunge(found)
            return found

    def debt(
        self,
        *,
        timezone: str | None = None,
        region: str | None = None,
        phones: tuple[str, ...] | None = None,
        third_parties: int = 1,
        third_party_names: tuple[str | None, ...] | None = None,
        placed_with: int | None = 0,
        assigned: bool = True,
    ) -> Debt:
        """A debtor with own phones (``()``: none), an email, an address and third parties
        (siblings, each named apart unless ``third_party_names`` says), one case, placed
        with agency ``placed_with`` (an index into ``agency_ids``; None: unplaced) and,
        when ``assigned``, assigned to that agency's collector."""
        cipher = self.objects.cipher
        tag = secrets.token_hex(4)
        default_phone = "+8613812345678" if self.jurisdiction == "CN" else "+12125550123"
        with self.scope() as session:
            case = open_case(
                session,
                cipher=cipher,
                debtor_external_id=f"D-{tag}",
                full_name=f"Debtor {tag}",
                account_external_id=f"L-{tag}",
                currency=ZONES[self.jurisdiction][1],
                principal=Decimal("5000.00"),
                due_date=dt.date(2026, 1, 1),
            )
            case.status = "placed" if placed_with is not None else "new"  # type: ignore[assignment]
            debtor = case.debtor
            debtor.timezone = timezone
            debtor.region = region

            def contact(
                kind: ContactKind, value: str, relation: str = "self", name: str | None = None
            ) -> Contact:
                made = Contact(
                    debtor=debtor,
                    kind=kind,
                    relation=relation,
                    name=name,
                    value_ciphertext=cipher.encrypt(value, context=f"contact.{kind.value}"),
                    value_index=cipher.blind_index(value, context=f"contact.{kind.value}"),
                    value_masked=mask(value),
                )
                session.add(made)
                return made

            own_phones = phones if phones is not None else (default_phone,)
            own = [contact(ContactKind.PHONE, p) for p in own_phones]
            email = contact(ContactKind.EMAIL, f"debtor{tag}@mail.test")
            address = contact(ContactKind.ADDRESS, f"{tag} Main Street")
            names = third_party_names or tuple(f"Relative {tag} {n}" for n in range(third_parties))
            others = [
                contact(
                    ContactKind.PHONE,
                    f"{default_phone[:-4]}{n:04d}",
                    relation="sibling",
                    name=name,
                )
                for n, name in enumerate(names)
            ]
            if placed_with is not None:
                placement = Placement(
                    case_id=case.id,
                    agency_id=self.agency_ids[placed_with],
                    started_on=dt.date(2026, 1, 1),
                    ends_on=dt.date(2099, 1, 1),
                    grace_days=0,
                    balance_at_placement=Decimal("5000.00"),
                    currency=ZONES[self.jurisdiction][1],
                )
                session.add(placement)
                if assigned:
                    session.flush()  # the assignment names the placement
                    session.add(
                        Assignment(
                            placement_id=placement.id,
                            collector_id=self.collector_ids[placed_with],
                            reason="override",
                        )
                    )
            session.flush()
            return Debt(
                case_id=case.id,
                debtor_id=debtor.id,
                phones=[c.id for c in own],
                email=email.id,
                address=address.id,
                third_parties=[c.id for c in others],
            )

    def attempt(
        self,
        debt: Debt,
        at: dt.datetime,
        *,
        channel: Channel = Channel.CALL_OUT,
        contact_id: int | None = None,
        agency: int | None = 0,
        result: str | None = None,
        recording_ref: str | None = "rec-1",
        actor: Actor | None = None,
    ) -> ContactAttempt:
        """One attempt through the gate at ``at`` by an agency's staff (None: tenant
        staff; ``actor`` overrides both), with its outcome recorded when ``result`` is
        given and it was allowed."""
        if actor is None:
            actor = (
                Actor(kind="tenant", user_id=1)
                if agency is None
                else Actor(kind="agency", agency_id=self.agency_ids[agency], user_id=1)
            )
        with self.scope() as session:
            made = attempt_contact(
                session,
                self.objects,
                tenant=self.tenant(),
                case_id=debt.case_id,
                contact_id=contact_id if contact_id is not None else debt.phones[0],
                channel=channel,
                actor=actor,
                at=at,
            )
            assert made is not None
            if result is not None and made.status == "pending":
                codes = {c.result: c.code for c in outcome_codes(session)}
                record_outcome(
                    session,
                    made,
                    jurisdiction=self.jurisdiction,
                    code=codes[result],
                    actor="test:lender",
                    recording_ref=recording_ref,
                )
            session.expunge(made)
            return made

    def outcome(self, attempt: ContactAttempt, result: str) -> None:
        """Record the outcome of an attempt left pending, with the default code for it."""
        with self.scope() as session:
            stored = session.get(ContactAttempt, attempt.id)
            assert stored is not None
            codes = {c.result: c.code for c in outcome_codes(session)}
            record_outcome(
                session,
                stored,
                jurisdiction=self.jurisdiction,
                code=codes[result],
                actor="test:lender",
                recording_ref="rec-1",
            )

    def assign(self, debt: Debt, collector: int | None) -> None:
        """End the case's open assignment and, unless None, assign it to collector
        ``collector`` (an index into ``collector_ids``) on its open placement."""
        with self.scope() as session:
            placement = session.scalar(
                select(Placement).where(
                    Placement.case_id == debt.case_id, Placement.recalled_on.is_(None)
                )
            )
            assert placement is not None
            for open_one in session.scalars(
                select(Assignment).where(
                    Assignment.placement_id == placement.id, Assignment.ended_at.is_(None)
                )
            ):
                open_one.ended_at = dt.datetime.now(dt.UTC)
                open_one.end_reason = "test"
            session.flush()  # one open assignment per placement
            if collector is not None:
                session.add(
                    Assignment(
                        placement_id=placement.id,
                        collector_id=self.collector_ids[collector],
                        reason="reassigned",
                    )
                )

    def attempts(self, debt: Debt) -> list[ContactAttempt]:
        with self.scope() as session:
            rows = list(
                session.scalars(
                    select(ContactAttempt)
                    .where(ContactAttempt.case_id == debt.case_id)
                    .order_by(ContactAttempt.id)
                )
            )
            session.expunge_all()
            return rows

    def set_flags(self, debt: Debt, flags: list[str]) -> None:
        with self.scope() as session:
            case = session.get(Case, debt.case_id)
            assert case is not None
            case.flags = flags

    def set_debtor(self, debt: Debt, **values: Any) -> None:
        with self.scope() as session:
            debtor = session.get(Debtor, debt.debtor_id)
            for key, value in values.items():
                setattr(debtor, key, value)


def make_lender(app: Flask, jurisdiction: str = "CN") -> Lender:
    """A tenant of ``jurisdiction`` in its home zone, with two contracted agencies."""
    db = platform(app).db
    tag = secrets.token_hex(3)
    zone, currency = ZONES[jurisdiction]
    with db.session() as session:
        tenant = clone_tenant(
            session,
            slug=f"cmp-{jurisdiction.lower()}-{tag}",
            name=f"Lender {tag}",
            jurisdiction=jurisdiction,
            timezone=zone,
            currency=currency,
        )
        admin = create_user(
            session,
            email=f"admin-{tag}@lender.test",
            full_name="Admin",
            password=PASSWORD,
            role=Role.TENANT_ADMIN,
            tenant=tenant,
        )
        lender = Lender(
            app=app,
            slug=tenant.slug,
            id=tenant.id,
            jurisdiction=jurisdiction,
            admin_email=admin.email,
            agency_ids=[],
        )
        for n in range(2):
            agency = create_agency(session, slug=f"cmp{n}-{tag}", name=f"Agency {n} {tag}")
            create_agency_contract(
                session, tenant=tenant, agency=agency, starts_on=dt.date(2020, 1, 1)
            )
            collector = create_user(
                session,
                email=f"col{n}-{tag}@agency.test",
                full_name=f"Collector {n}",
                password=PASSWORD,
                role=Role.COLLECTOR,
                agency=agency,
            )
            manager = create_user(
                session,
                email=f"mgr{n}-{tag}@agency.test",
                full_name=f"Manager {n}",
                password=PASSWORD,
                role=Role.AGENCY_MANAGER,
                agency=agency,
            )
            lender.agency_ids.append(agency.id)
            lender.collector_emails.append(collector.email)
            lender.collector_ids.append(collector.id)
            lender.manager_emails.append(manager.email)
        session.commit()
    return lender


def lender_for(
    app: Flask, jurisdiction: str, shared_lender: Lender, rolled_back: RolledBack | None
) -> Lender:
    """The worker's shared lender of ``jurisdiction`` for a rolled-back test (a copy of its
    description), or a lender of the test's own for a ``real_commits`` one."""
    if rolled_back is None:
        return make_lender(app, jurisdiction)
    return private_copy(shared_lender, app)


def zone_where_it_is(hour: int) -> str:
    """A fixed-offset zone whose local clock reads ``hour``:xx right now (tests that read
    the real clock, like the work queue, choose the debtor's zone with it)."""
    offset = (hour - dt.datetime.now(dt.UTC).hour + 12) % 24 - 12  # -12 .. 11
    if offset == 0:
        return "Etc/GMT"
    # POSIX-style names: Etc/GMT-8 is eight hours ahead of UTC.
    return f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"


def seed_world_contact(world: Any) -> None:
    """Contacts, attempts, outcome codes, templates and a policy in both tenants of the
    isolation world; B holds more of each, so B's ids do not exist in A after the walk."""
    from recova.platform.compliance.policy import save_policy
    from recova.platform.contact.templates import save_template
    from tests.support import B_MARK

    objects = platform(world.app)
    cipher = objects.cipher
    counts = {"a": 1, "b": 5}
    last: dict[str, dict[str, int]] = {}
    for key, data in (("a", world.a), ("b", world.b)):
        mark = B_MARK if key == "b" else "alpha"
        with tenant_scope(data.slug, db=objects.db) as session:
            tenant = session.info["tenant"]
            case = session.get(Case, data.case_ids[0])
            assert case is not None
            value = "+8613812345678" if key == "a" else "+12125550123"
            contact = Contact(
                debtor_id=case.debtor_id,
                kind=ContactKind.PHONE,
                relation="self",
                value_ciphertext=cipher.encrypt(value, context="contact.phone"),
                value_index=cipher.blind_index(value, context="contact.phone"),
                value_masked=mask(value),
            )
            session.add(contact)
            session.flush()
            outcome_codes(session)
            for n in range(10 if key == "b" else 0):
                from recova.platform.contact.services import create_outcome_code

                create_outcome_code(
                    session,
                    code=f"{mark}-{n}",
                    label=f"{mark} {n}",
                    result="busy",
                    actor="job:walk",
                )
            template_id = 0
            for n in range(counts[key]):
                template_id = save_template(
                    session,
                    name=f"walk-{mark}-{n}",
                    channel="sms",
                    audience="debtor",
                    body=f"Hello {{debtor_name}} from {mark}",
                    actor="job:walk",
                ).id
            save_policy(
                session,
                jurisdiction=tenant.jurisdiction.value,
                overrides={"third_party_after_failures": 4},
                actor="job:walk",
            )
            attempt_id = 0
            for n in range(counts[key]):
                made = attempt_contact(
                    session,
                    objects,
                    tenant=tenant,
                    case_id=case.id,
                    contact_id=contact.id,
                    channel=Channel.SMS,
                    actor=Actor(kind="tenant", user_id=data.admin_id),
                    notes=f"walk {mark}",
                    at=dt.datetime(2026, 6, 1 + n, 4, 0, tzinfo=dt.UTC),
                )
                assert made is not None
                attempt_id = made.id
            code_id = max(c.id for c in outcome_codes(session))
            last[key] = {
                "contact_id": contact.id,
                "case_id": case.id,
                "template_id": template_id,
                "attempt_id": attempt_id,
                "code_id": code_id,
            }
    world.samples.update({f"a_{name}": value for name, value in last["a"].items()})
    world.hostile_ids.update(
        {
            "attempt_id": str(last["b"]["attempt_id"]),
            "template_id": str(last["b"]["template_id"]),
            "code_id": str(last["b"]["code_id"]),
        }
    )
