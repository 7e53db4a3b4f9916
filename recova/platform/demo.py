"""``recova demo``: seed two lenders, two agencies and their staff, idempotently.

Every object is looked up by its natural key before it is created, so running the demo
again changes nothing and duplicates nothing.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from recova.billing.contracts import AgencyContract
from recova.billing.services import create_agency_contract
from recova.platform.agencies.models import Agency
from recova.platform.agencies.services import create_agency
from recova.platform.auth.models import Role, User
from recova.platform.auth.services import create_user
from recova.platform.cases.models import Account
from recova.platform.cases.services import open_case
from recova.platform.crypto import PersonalDataCipher
from recova.platform.db import Database
from recova.tenants.models import Tenant
from recova.tenants.scope import tenant_scope
from recova.tenants.services import get_tenant, provision_tenant

DEMO_PASSWORD = "recova-demo-2026"  # noqa: S105 - demo data only; `recova demo` refuses production mode


@dataclass(frozen=True)
class DemoLogin:
    email: str
    role: str
    organisation: str


TENANTS: list[dict[str, Any]] = [
    {
        "slug": "lendco-cn",
        "name": "LendCo China",
        "jurisdiction": "CN",
        "timezone": "Asia/Shanghai",
        "currency": "CNY",
    },
    {
        "slug": "lendco-us",
        "name": "LendCo US",
        "jurisdiction": "US",
        "timezone": "America/New_York",
        "currency": "USD",
    },
]
AGENCIES = [
    {"slug": "swift-recoveries", "name": "Swift Recoveries"},
    {"slug": "harbor-collections", "name": "Harbor Collections"},
]
SAMPLE_DEBTORS = [
    ("D-1001", "Zhang Wei", "110101199003074514", "5200.00", 12),
    ("D-1002", "Li Na", "11010519491231002X", "18300.50", 45),
    ("D-1003", "Wang Fang", "440524188001010014", "960.00", 75),
    ("D-1004", "Chen Jie", "320311197007253411", "43000.00", 130),
    ("D-1005", "Liu Yang", "510107199212123456", "2750.25", 210),
]


def seed_demo(db: Database, *, data_key: bytes, today: dt.date | None = None) -> list[DemoLogin]:
    """Create the demo organisations, logins and sample cases if they are missing."""
    today = today or dt.date.today()  # noqa: DTZ011 - the operator's calendar
    logins: list[DemoLogin] = []
    session = db.session()
    try:
        tenants = [_tenant(session, spec) for spec in TENANTS]
        agencies = [_agency(session, spec) for spec in AGENCIES]
        for tenant in tenants:
            for agency in agencies:
                _contract(session, tenant, agency, today)
        logins.append(
            _user(session, "admin@recova.local", "Platform Admin", Role.PLATFORM_ADMIN, "platform")
        )
        for tenant in tenants:
            short = tenant.slug.split("-")[-1]
            logins.append(
                _user(
                    session,
                    f"admin@{short}.lendco.test",
                    f"{tenant.name} Admin",
                    Role.TENANT_ADMIN,
                    tenant.slug,
                    tenant=tenant,
                )
            )
            logins.append(
                _user(
                    session,
                    f"analyst@{short}.lendco.test",
                    f"{tenant.name} Analyst",
                    Role.TENANT_ANALYST,
                    tenant.slug,
                    tenant=tenant,
                )
            )
        for agency in agencies:
            domain = agency.slug.replace("-", "") + ".test"
            logins.append(
                _user(
                    session,
                    f"manager@{domain}",
                    f"{agency.name} Manager",
                    Role.AGENCY_MANAGER,
                    agency.slug,
                    agency=agency,
                )
            )
            for number in (1, 2):
                logins.append(
                    _user(
                        session,
                        f"collector{number}@{domain}",
                        f"{agency.name} Collector {number}",
                        Role.COLLECTOR,
                        agency.slug,
                        agency=agency,
                    )
                )
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
    cipher = PersonalDataCipher(data_key)
    for spec in TENANTS:
        with tenant_scope(spec["slug"], db=db) as scoped:
            _sample_cases(scoped, cipher, spec["currency"], today)
    return logins


def _tenant(session: Session, spec: dict[str, Any]) -> Tenant:
    return get_tenant(session, spec["slug"]) or provision_tenant(session, **spec)


def _agency(session: Session, spec: dict[str, str]) -> Agency:
    found = session.scalar(select(Agency).where(Agency.slug == spec["slug"]))
    return found or create_agency(session, **spec)


def _contract(session: Session, tenant: Tenant, agency: Agency, today: dt.date) -> None:
    exists = session.scalar(
        select(AgencyContract.id).where(
            AgencyContract.tenant_id == tenant.id, AgencyContract.agency_id == agency.id
        )
    )
    if exists is None:
        create_agency_contract(
            session, tenant=tenant, agency=agency, starts_on=today.replace(day=1)
        )


def _user(
    session: Session,
    email: str,
    name: str,
    role: Role,
    organisation: str,
    *,
    tenant: Tenant | None = None,
    agency: Agency | None = None,
) -> DemoLogin:
    if session.scalar(select(User.id).where(func.lower(User.email) == email)) is None:
        create_user(
            session,
            email=email,
            full_name=name,
            password=DEMO_PASSWORD,
            role=role,
            tenant=tenant,
            agency=agency,
        )
    return DemoLogin(email, role.value, organisation)


def _sample_cases(
    session: Session, cipher: PersonalDataCipher, currency: str, today: dt.date
) -> None:
    existing = set(session.scalars(select(Account.external_id)))
    for external_id, name, national_id, principal, dpd in SAMPLE_DEBTORS:
        account_id = "L-" + external_id[2:]
        if account_id in existing:
            continue
        case = open_case(
            session,
            cipher=cipher,
            debtor_external_id=external_id,
            full_name=name,
            account_external_id=account_id,
            currency=currency,
            principal=Decimal(principal),
            due_date=today - dt.timedelta(days=dpd),
            national_id=national_id,
            product="consumer-loan",
        )
        case.account.days_past_due = dpd
