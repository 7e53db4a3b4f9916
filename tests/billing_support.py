"""Building billing scenarios: a tenant with agencies, cases, placements, payments and
reversals written straight into its tables, contract versions, and month closes."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import secrets
from decimal import Decimal
from typing import Any

from flask import Flask
from sqlalchemy import text

from recova.billing.invoices import CloseResult, close_month
from recova.billing.models import ContractVersion
from recova.billing.terms import create_contract_version
from recova.platform.agencies.models import Agency
from recova.platform.kernel.db import Database
from recova.platform.kernel.extension import platform
from recova.tenants.scope import tenant_scope
from tests.allocation_support import (
    Agencies,
    AllocTenant,
    make_agencies,
    make_tenant,
    seed_cases,
)

#: A month safely in the past, so every close and issue is allowed.
MONTH = dt.date(2026, 3, 1)
_ids = itertools.count(1)


class Ledger:
    """One billing tenant and the calls a scenario makes on it."""

    def __init__(self, app: Flask, *, agencies: int | Agencies = 2, cases: int = 10) -> None:
        self.app = app
        self.agencies = (
            agencies
            if isinstance(agencies, Agencies)
            else make_agencies(app, agencies, collectors=0)
        )
        self.tenant: AllocTenant = make_tenant(app, self.agencies)
        self.case_ids = seed_cases(self.tenant, cases, as_of=MONTH)
        self.accounts = dict(
            self.sql("SELECT id, account_id FROM {s}.cases WHERE id = ANY(:ids)", ids=self.case_ids)
        )

    @property
    def db(self) -> Database:
        return platform(self.app).db

    def sql(self, statement: str, **params: Any) -> list[Any]:
        return self.tenant.sql(statement, **params)

    def set_payout(self, agency_id: int, *, share: str | None = None, rates: Any = None) -> None:
        """The agency's payout on its contract with this tenant."""
        mode = "rates" if rates is not None else "share"
        with self.db.session() as connection:
            connection.execute(
                text(
                    "UPDATE platform.agency_contracts SET payout_mode = :mode,"
                    " payout_share = :share, payout_rates = CAST(:rates AS jsonb)"
                    " WHERE tenant_id = :tenant AND agency_id = :agency"
                ),
                {
                    "mode": mode,
                    "share": Decimal(share or 0),
                    "rates": None if rates is None else json.dumps(rates),
                    "tenant": self.tenant.id,
                    "agency": agency_id,
                },
            )
            connection.commit()

    def version(self, **terms: Any) -> ContractVersion:
        """Add a contract version (defaults: CNY from 2020, 10% for every bucket)."""
        data = {
            "currency": "CNY",
            "effective_from": dt.date(2020, 1, 1),
            "rates": {"*": "10"},
            **terms,
        }
        with tenant_scope(self.tenant.slug, db=self.db) as session:
            version = create_contract_version(session, tenant_id=self.tenant.id, data=data)
            session.expunge(version)
            return version

    def place(
        self,
        case_id: int,
        agency_id: int,
        started_on: dt.date,
        *,
        days: int = 60,
        grace_days: int = 10,
        recalled_on: dt.date | None = None,
        bucket: str | None = "M2",
    ) -> int:
        """A placement (recalled on ``recalled_on`` if given) and the case's bucket then."""
        if bucket is not None:
            self.sql(
                "INSERT INTO {s}.bucket_transitions (case_id, as_of, from_bucket, to_bucket)"
                " VALUES (:case, :day, NULL, :bucket) ON CONFLICT DO NOTHING",
                case=case_id,
                day=started_on,
                bucket=bucket,
            )
        rows = self.sql(
            "INSERT INTO {s}.placements (case_id, agency_id, started_on, ends_on, grace_days,"
            " recalled_on, recall_reason, grace_until, balance_at_placement, currency)"
            " VALUES (:case, :agency, :start, :end, :grace, :recalled,"
            " CASE WHEN CAST(:recalled AS date) IS NULL THEN NULL ELSE 'tenant' END,"
            " CAST(:recalled AS date) + :grace, 1000, 'CNY') RETURNING id",
            case=case_id,
            agency=agency_id,
            start=started_on,
            end=started_on + dt.timedelta(days=days),
            grace=grace_days,
            recalled=recalled_on,
        )
        return int(rows[0][0])

    def pay(
        self,
        case_id: int,
        amount: str | Decimal,
        at: dt.datetime | dt.date,
        *,
        currency: str = "CNY",
        paid_to: str = "tenant",
    ) -> int:
        """A payment on the case's account at ``at`` (a date means noon, tenant time)."""
        when = _instant(at)
        rows = self.sql(
            "INSERT INTO {s}.payments (external_id, account_id, kind, amount, currency, paid_at,"
            " paid_to) VALUES (:ext, :account, 'payment', :amount, :currency, :at, :to)"
            " RETURNING id",
            ext=f"P-{next(_ids)}-{secrets.token_hex(2)}",
            account=self.accounts[case_id],
            amount=Decimal(amount),
            currency=currency,
            at=when,
            to=paid_to,
        )
        return int(rows[0][0])

    def reverse(self, payment_id: int, amount: str | Decimal, at: dt.datetime | dt.date) -> int:
        """A reversal of ``amount`` of a payment."""
        rows = self.sql(
            "INSERT INTO {s}.payments (external_id, account_id, kind, amount, currency, paid_at,"
            " paid_to, reverses_id) SELECT :ext, account_id, 'reversal', :amount, currency, :at,"
            " paid_to, id FROM {s}.payments WHERE id = :original RETURNING id",
            ext=f"R-{next(_ids)}-{secrets.token_hex(2)}",
            amount=Decimal(amount),
            at=_instant(at),
            original=payment_id,
        )
        return int(rows[0][0])

    def close(self, month: dt.date = MONTH, **options: Any) -> CloseResult:
        return close_month(self.db, tenant=self.tenant.id, month=month, **options)

    def lines(self) -> list[dict[str, Any]]:
        with self.db.session() as connection:
            result = connection.execute(
                text(f'SELECT * FROM "{self.tenant.schema}".commission_lines ORDER BY id')
            )
            return [dict(row) for row in result.mappings()]

    def line_of(self, payment_id: int) -> dict[str, Any]:
        return next(line for line in self.lines() if line["payment_id"] == payment_id)

    def invoices(self) -> list[dict[str, Any]]:
        with self.db.session() as connection:
            result = connection.execute(
                text(f'SELECT * FROM "{self.tenant.schema}".invoices ORDER BY number')
            )
            return [dict(row) for row in result.mappings()]

    def agency(self, index: int) -> int:
        return self.agencies.ids[index]

    def agency_slug(self, agency_id: int) -> str:
        with self.db.session() as session:
            found = session.get(Agency, agency_id)
            assert found is not None
            return found.slug


def _instant(at: dt.datetime | dt.date) -> dt.datetime:
    """A date means noon in Shanghai (the test tenant's zone)."""
    if isinstance(at, dt.datetime):
        return at
    return dt.datetime.combine(at, dt.time(4, 0), tzinfo=dt.UTC)


def day(number: int, month: dt.date = MONTH) -> dt.date:
    return month.replace(day=number)


def seed_world_billing(world: Any) -> None:
    """Billing objects in both tenants of the isolation world; B holds more of each (three
    invoices, five versions, a statement), so B's ids exist in A for none of them."""
    from recova.platform.kernel.extension import platform as platform_of
    from recova.tenants.models import tenant_today

    db = platform_of(world.app).db
    with tenant_scope(world.a.slug, db=db) as session:
        create_contract_version(
            session,
            tenant_id=world.a.id,
            data={"currency": "CNY", "effective_from": dt.date(2020, 1, 1), "rates": {"*": "9"}},
        )
    with tenant_scope(world.b.slug, db=db) as session:
        tenant = session.info["tenant"]
        # Five versions: the walk adds a few to A's one, never as many.
        for number, year in enumerate(range(2020, 2025), start=1):
            start = dt.date(year, 1, 1)
            create_contract_version(
                session,
                tenant_id=world.b.id,
                data={
                    "currency": "USD",
                    "effective_from": start,
                    "rates": {"*": str(10 + number)},
                    "unplaced_commission": True,
                },
            )
        schema = tenant.schema_name
        today = tenant_today(tenant.timezone)
    months = [
        (today.replace(day=1) - dt.timedelta(days=40)).replace(day=1),
        (today.replace(day=1) - dt.timedelta(days=10)).replace(day=1),
        today.replace(day=1),
    ]
    with db.session() as connection:
        for n, month in enumerate(months):
            # The last month's payment is today: the case is with agency B by then.
            paid_on = today if n == 2 else month + dt.timedelta(days=3)
            connection.execute(
                text(
                    f'INSERT INTO "{schema}".payments (external_id, account_id, kind, amount,'
                    " currency, paid_at, paid_to) SELECT 'WALK-' || :n, account_id, 'payment',"
                    f" 100, 'USD', :at, 'tenant' FROM \"{schema}\".cases ORDER BY id LIMIT 1"
                ),
                {"n": n, "at": dt.datetime.combine(paid_on, dt.time(17, 0), tzinfo=dt.UTC)},
            )
        connection.commit()
    for month in months:
        close_month(db, tenant=world.b.id, month=month)
    world.hostile_ids.update({"invoice_id": "3", "version_id": "5", "statement_id": "1"})
