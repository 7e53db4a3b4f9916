"""``recova demo``: seed two lenders, two agencies and their staff, idempotently.

Every object is looked up by its natural key before it is created, so running the demo
again changes nothing and duplicates nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from recova.billing.exports import write_month_exports
from recova.billing.invoices import close_month
from recova.billing.models import ContractVersion
from recova.billing.services import create_agency_contract, set_agency_payout
from recova.billing.terms import create_contract_version
from recova.connectors.models import FeedKind, IngestionRun, RunMode
from recova.connectors.services import ingest_local_file, mapping_by_name, save_mapping
from recova.platform.agencies.contracts import AgencyContract
from recova.platform.agencies.models import Agency
from recova.platform.agencies.services import create_agency
from recova.platform.allocation.assignment import profile_for
from recova.platform.allocation.models import PlacementStrategy
from recova.platform.allocation.services import allocation_summary, run_allocation
from recova.platform.allocation.strategies import create_strategy
from recova.platform.auth.models import Membership, Role, User
from recova.platform.auth.services import create_user
from recova.platform.entry import demo_data
from recova.platform.kernel.db import Database
from recova.platform.kernel.extension import Platform, platform
from recova.platform.kernel.outbox import relay_outbox_until_drained
from recova.platform.webhooks.delivery import attempt_delivery
from recova.platform.webhooks.demo_receiver import PATH_PREFIX, DemoReceiver
from recova.platform.webhooks.models import WebhookDelivery, WebhookEndpoint
from recova.platform.webhooks.services import create_endpoint, send_test_event, update_endpoint
from recova.platform.webhooks.signing import open_secret
from recova.platform.work.settlements import set_collector_limit, set_contract_limit
from recova.tenants.models import Tenant
from recova.tenants.scope import tenant_scope
from recova.tenants.services import get_tenant, provision_tenant

DEMO_PASSWORD = "recova-demo-2026"  # noqa: S105 - demo data only; `recova demo` refuses production mode


@dataclass(frozen=True)
class DemoLogin:
    email: str
    role: str
    organisation: str
    #: Where the role's pages start (the tenant portal for a lender's staff, the workspace's
    #: queue for an agency's managers and collectors).
    portal_path: str = "/"


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
#: The demo book's date: the portfolios are as of it, the cases are placed on it, and the
#: payment files fall in its month, which the demo then closes.
DEMO_BOOK_DATE = dt.date(2026, 11, 1)
#: The demo agencies' contracts start a month before the book's date.
DEMO_CONTRACTS_FROM = dt.date(2026, 10, 1)
#: What each demo agency is paid: Swift a share of the commission, Harbor its own rates.
DEMO_PAYOUTS: dict[str, dict[str, Any]] = {
    "swift-recoveries": {"mode": "share", "share": "40"},
    "harbor-collections": {"mode": "rates", "rates": {"M1": "3", "M2": "4", "*": "5"}},
}
#: Each lender's contract with the platform (one version, from the start of 2026).
DEMO_TERMS: dict[str, dict[str, Any]] = {
    "lendco-cn": {
        "currency": "CNY",
        "rates": {"M1": "8", "M2": "12", "M3": "18", "*": "25"},
        "tiers": [
            {"from": "0", "to": "200000", "factor": "1"},
            {"from": "200000", "to": None, "factor": "0.8"},
        ],
        "minimum_fee": "20000.00",
        "vat_rate": "6",
    },
    "lendco-us": {
        "currency": "USD",
        "rates": {"M1": "10", "M2": "15", "M3": "20", "*": "25"},
        "minimum_fee": "2500.00",
        "rounding": "half_up",
    },
}


def seed_demo(db: Database) -> list[DemoLogin]:
    """Create the demo organisations and logins if they are missing.

    Their borrowers arrive the way a real lender's do, by ingestion:
    see ``load_demo_portfolios``.
    """
    logins: list[DemoLogin] = []
    session = db.session()
    try:
        tenants = [_tenant(session, spec) for spec in TENANTS]
        agencies = [_agency(session, spec) for spec in AGENCIES]
        for tenant in tenants:
            for agency in agencies:
                _contract(session, tenant, agency)
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
    return logins


def _tenant(session: Session, spec: dict[str, Any]) -> Tenant:
    return get_tenant(session, spec["slug"]) or provision_tenant(session, **spec)


def _agency(session: Session, spec: dict[str, str]) -> Agency:
    found = session.scalar(select(Agency).where(Agency.slug == spec["slug"]))
    return found or create_agency(session, **spec)


def _contract(session: Session, tenant: Tenant, agency: Agency) -> None:
    exists = session.scalar(
        select(AgencyContract.id).where(
            AgencyContract.tenant_id == tenant.id, AgencyContract.agency_id == agency.id
        )
    )
    if exists is None:
        contract = create_agency_contract(
            session,
            tenant=tenant,
            agency=agency,
            starts_on=DEMO_CONTRACTS_FROM,
        )
        set_agency_payout(contract, **DEMO_PAYOUTS[agency.slug])


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
    if tenant is not None:
        path = f"/portal/{tenant.slug}/"
    elif agency is not None:
        path = "/work/"
    else:
        path = "/"
    return DemoLogin(email, role.value, organisation, path)


DEMO_ACCOUNTS = 3000
DEMO_PAYMENTS = 600


@dataclass(frozen=True)
class DemoLoad:
    tenant: str
    file: str
    status: str
    received: int
    inserted: int
    updated: int
    unchanged: int
    rejected: int


def load_demo_portfolios(objects: Platform, folder: Path) -> list[DemoLoad]:
    """Write each demo lender's portfolio and payment files and ingest them.

    The files are generated from fixed seeds, so a second demo run re-sends identical
    files and the runs report every row unchanged.
    """

    folder.mkdir(parents=True, exist_ok=True)
    cn = demo_data.write_cn_portfolio(folder / "lendco-cn-portfolio.csv", rows=DEMO_ACCOUNTS)
    cn_paid = folder / "lendco-cn-payments.csv"
    demo_data.write_cn_payments(cn_paid, cn, count=DEMO_PAYMENTS)
    us = demo_data.write_us_portfolio(folder / "lendco-us-portfolio.csv", rows=DEMO_ACCOUNTS)
    us_paid = folder / "lendco-us-payments.jsonl"
    demo_data.write_us_payments(us_paid, us, count=DEMO_PAYMENTS)
    plan = [
        ("lendco-cn", "cn-portfolio", FeedKind.PORTFOLIO, demo_data.CN_PORTFOLIO_MAPPING, cn.path),
        ("lendco-cn", "cn-payments", FeedKind.PAYMENTS, demo_data.CN_PAYMENTS_MAPPING, cn_paid),
        ("lendco-us", "us-portfolio", FeedKind.PORTFOLIO, demo_data.US_PORTFOLIO_MAPPING, us.path),
        ("lendco-us", "us-payments", FeedKind.PAYMENTS, demo_data.US_PAYMENTS_MAPPING, us_paid),
    ]
    loads = []
    for slug, name, kind, mapping, path in plan:
        with tenant_scope(slug, db=objects.db) as session:
            if mapping_by_name(session, name) is None:
                save_mapping(session, name=name, kind=kind, **mapping)
        _, run_id = ingest_local_file(
            objects,
            tenant_slug=slug,
            path=path,
            mapping_name=name,
            mode=RunMode.DELTA,
        )
        with tenant_scope(slug, db=objects.db) as session:
            run = session.get(IngestionRun, run_id)
            assert run is not None
            loads.append(
                DemoLoad(
                    slug,
                    path.name,
                    run.status.value,
                    run.received,
                    run.inserted,
                    run.updated,
                    run.unchanged,
                    run.rejected,
                )
            )
    return loads


DEMO_STRATEGY = "demo-even-split"
DEMO_COLLECTOR_MAX_CASES = 2000


def allocate_demo(objects: Platform) -> list[tuple[str, str]]:
    """Give the demo collectors profiles, an even split strategy per lender, and run
    allocation for each lender now; returns (tenant, summary) lines.

    Everything is looked up before it is created and the run writes only what differs,
    so a second demo changes nothing and prints the same lines.
    """

    session = objects.db.session()
    try:
        agency_ids = list(
            session.scalars(
                select(Agency.id)
                .where(Agency.slug.in_([spec["slug"] for spec in AGENCIES]))
                .order_by(Agency.id)
            )
        )
        collectors = session.scalars(
            select(Membership.user_id).where(
                Membership.agency_id.in_(agency_ids), Membership.role == Role.COLLECTOR
            )
        ).all()
        for user_id in collectors:
            # Two collectors per agency work both lenders' 3,000 cases each.
            profile = profile_for(session, user_id)
            profile.max_cases = max(profile.max_cases or 0, DEMO_COLLECTOR_MAX_CASES)
        session.commit()
    finally:
        session.close()
    split = {
        "segments": {
            "*": {
                "mode": "split",
                "agencies": [{"agency_id": a, "share": "50"} for a in agency_ids],
            }
        }
    }
    lines = []
    for spec in TENANTS:
        with tenant_scope(spec["slug"], db=objects.db) as scoped:
            tenant = scoped.info["tenant"]
            exists = scoped.scalar(
                select(PlacementStrategy.id).where(PlacementStrategy.name == DEMO_STRATEGY)
            )
            if exists is None:
                create_strategy(
                    scoped,
                    tenant_id=tenant.id,
                    name=DEMO_STRATEGY,
                    description="Demo: every case split evenly between the two agencies",
                    policy=split,
                    effective_from=dt.date(2000, 1, 1),
                    activate=True,
                )
        run_allocation(objects.db, tenant=spec["slug"], as_of=DEMO_BOOK_DATE)
        with tenant_scope(spec["slug"], db=objects.db) as scoped:
            lines.append((spec["slug"], allocation_summary(scoped).line()))
    return lines


#: The discounts the demo agencies may settle for without the lender, in percent of the
#: balance: their collectors up to the first, their managers up to the second (each
#: lender's contract), so a collector's larger discount waits for their manager.
DEMO_COLLECTOR_DISCOUNT_LIMIT = Decimal("10")
DEMO_CONTRACT_DISCOUNT_LIMIT = Decimal("30")


def limit_demo_discounts(app: Flask, slugs: list[str]) -> None:
    """Give the lenders' contracts and their agencies the demo's discount limits, once: a
    limit still at its default of 0 is set, one changed since (in the portal or the API)
    is left alone. Through the services, so each lender's audit chain records them."""
    objects = platform(app)
    agency_ids: set[int] = set()
    for slug in slugs:
        with tenant_scope(slug, db=objects.db) as scoped:
            contracts = scoped.scalars(
                select(AgencyContract)
                .where(AgencyContract.tenant_id == scoped.info["tenant"].id)
                .order_by(AgencyContract.id)
            ).all()
            for contract in contracts:
                agency_ids.add(contract.agency_id)
                if contract.settlement_discount_limit == 0:
                    set_contract_limit(
                        scoped, contract, limit=DEMO_CONTRACT_DISCOUNT_LIMIT, actor="job:demo"
                    )
    # The collectors' limit is noted in every lender's chain the agency serves, each
    # through its own scope, which needs the app.
    with app.app_context():
        session = objects.db.session()
        try:
            for agency in session.scalars(
                select(Agency).where(Agency.id.in_(agency_ids)).order_by(Agency.id)
            ):
                if agency.collector_discount_limit == 0:
                    set_collector_limit(
                        session, agency, limit=DEMO_COLLECTOR_DISCOUNT_LIMIT, actor="job:demo"
                    )
            session.commit()
        finally:
            session.close()


@dataclass(frozen=True)
class DemoInvoice:
    tenant: str
    number: int
    currency: str
    status: str
    lines: int
    total: str
    pdf: Path


def bill_demo(objects: Platform, folder: Path) -> list[DemoInvoice]:
    """Give each lender its contract, close the demo month and write the invoice PDFs
    (and CSVs) into ``folder``; a second run finds every line written and changes nothing.
    """

    month = DEMO_BOOK_DATE
    invoices = []
    for spec in TENANTS:
        slug = spec["slug"]
        with tenant_scope(slug, db=objects.db) as scoped:
            if scoped.scalar(select(ContractVersion.id).limit(1)) is None:
                create_contract_version(
                    scoped,
                    tenant_id=scoped.info["tenant"].id,
                    data={"effective_from": dt.date(2026, 1, 1), **DEMO_TERMS[slug]},
                )
        result = close_month(objects.db, tenant=slug, month=month)
        paths = write_month_exports(objects.db, tenant=slug, month=month, folder=folder)
        for invoice in result.invoices:
            pdf = next(p for p in paths if p.suffix == ".pdf" and invoice["currency"] in p.name)
            invoices.append(
                DemoInvoice(
                    slug,
                    invoice["number"],
                    invoice["currency"],
                    invoice["status"],
                    invoice["line_count"],
                    f"{invoice['total']:,.2f}",
                    pdf,
                )
            )
    return invoices


DEMO_RECEIVER_DESCRIPTION = "Recova demo receiver"
#: What the demo's endpoints subscribe to: the events a lender's systems act on, not the
#: per-case ones (placing 3,000 cases would be 3,000 deliveries).
DEMO_WEBHOOK_EVENTS = (
    "ingestion.run.completed",
    "ingestion.run.failed",
    "promise.created",
    "promise.kept",
    "promise.broken",
    "plan.created",
    "plan.broken",
    "settlement.requested",
    "settlement.decided",
    "dispute.opened",
    "dispute.resolved",
    "invoice.issued",
    "audit.head.exported",
)


@dataclass(frozen=True)
class DemoHook:
    tenant: str
    endpoint_id: int
    url: str


def demo_receiver_secrets(objects: Platform, slugs: list[str]) -> Callable[[str], list[str]]:
    """What the receiver verifies a tenant's deliveries with: the secrets of the tenant's
    endpoints at ``/hooks/<slug>`` (the previous one too, during a rotation's grace)."""
    known = set(slugs)

    def secrets_for(slug: str) -> list[str]:
        if slug not in known:
            return []
        now = dt.datetime.now(dt.UTC)
        found = []
        with tenant_scope(slug, db=objects.db) as session:
            for endpoint in session.scalars(
                select(WebhookEndpoint).where(
                    WebhookEndpoint.url.endswith(f"{PATH_PREFIX}{slug}", autoescape=True)
                )
            ):
                found.append(open_secret(objects.cipher, endpoint.secret_ciphertext))
                previous = endpoint.previous_secret_ciphertext
                expires = endpoint.previous_secret_expires_at
                if previous is not None and expires is not None and expires > now:
                    found.append(open_secret(objects.cipher, previous))
        return found

    return secrets_for


def register_demo_receiver(
    objects: Platform, receiver: DemoReceiver, slugs: list[str]
) -> list[DemoHook]:
    """Give each tenant an endpoint at ``receiver`` (once; a later run with the receiver
    on another port moves it there), and a test event the first time."""
    hooks = []
    for slug in slugs:
        url = receiver.url_for(slug)
        with tenant_scope(slug, db=objects.db) as session:
            endpoint = session.scalar(
                select(WebhookEndpoint)
                .where(WebhookEndpoint.description == DEMO_RECEIVER_DESCRIPTION)
                .order_by(WebhookEndpoint.id)
                .limit(1)
            )
            if endpoint is None:
                endpoint, _shown_once = create_endpoint(
                    session,
                    objects,
                    url=url,
                    event_types=DEMO_WEBHOOK_EVENTS,
                    description=DEMO_RECEIVER_DESCRIPTION,
                    enabled=True,
                    actor="job:demo",
                )
                send_test_event(session, objects, endpoint, tenant_id=session.info["tenant"].id)
            elif endpoint.url != url:
                update_endpoint(session, objects, endpoint, {"url": url})
            hooks.append(DemoHook(slug, endpoint.id, url))
    return hooks


@dataclass(frozen=True)
class DemoDeliveries:
    tenant: str
    url: str
    delivered: int
    not_delivered: int
    error: str | None

    def line(self) -> str:
        if not self.not_delivered:
            return f"{self.url}: every delivery signed and verified by the receiver"
        return (
            f"{self.url}: {self.not_delivered} of {self.delivered + self.not_delivered}"
            f" deliveries not accepted ({self.error}); the platform retries them"
        )


def deliver_demo_events(objects: Platform, hooks: list[DemoHook]) -> list[DemoDeliveries]:
    """Hand the demo's events to their endpoints now (the relay, then one attempt of each
    due delivery), so they are in the portal's delivery log before the demo serves."""
    relay_outbox_until_drained(objects, budget=30.0)
    results = []
    for hook in hooks:
        with tenant_scope(hook.tenant, db=objects.db) as session:
            tenant_id = session.info["tenant"].id
            due = list(
                session.scalars(
                    select(WebhookDelivery.id)
                    .where(
                        WebhookDelivery.endpoint_id == hook.endpoint_id,
                        WebhookDelivery.status == "pending",
                    )
                    .order_by(WebhookDelivery.id)
                )
            )
            # Due now, whatever an earlier run's failure scheduled: the receiver is up.
            session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id.in_(due))
                .values(next_attempt_at=func.now())
            )
        delivered, failed, error = 0, 0, None
        for delivery_id in due:
            result = attempt_delivery(objects, tenant_id=tenant_id, delivery_id=delivery_id)
            if result is None:
                continue  # a worker is sending it
            if result.status == "delivered":
                delivered += 1
            else:
                failed += 1
                with tenant_scope(hook.tenant, db=objects.db) as session:
                    row = session.get(WebhookDelivery, delivery_id)
                    error = row.last_error if row is not None else None
        results.append(DemoDeliveries(hook.tenant, hook.url, delivered, failed, error))
    return results
