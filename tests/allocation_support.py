"""Building tenants with agencies, collectors and many cases for the allocation tests.

Cases are inserted with set-based SQL (``generate_series``), like the benchmark, so a test
can hold thousands of cases and still run in a second.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass, field
from typing import Any

from flask import Flask
from sqlalchemy import text

from recova.billing.services import create_agency_contract
from recova.platform.agencies.services import create_agency
from recova.platform.allocation.models import CollectorProfile
from recova.platform.allocation.services import run_allocation
from recova.platform.allocation.strategies import create_strategy
from recova.platform.auth.models import Role
from recova.platform.auth.services import create_user
from recova.platform.kernel.extension import platform
from recova.tenants.scope import tenant_scope
from tests.support import PASSWORD

AS_OF = dt.date(2031, 3, 1)


@dataclass
class Agencies:
    ids: list[int]
    slugs: list[str]
    collectors: dict[int, list[int]] = field(default_factory=dict)
    managers: dict[int, str] = field(default_factory=dict)
    collector_emails: dict[int, str] = field(default_factory=dict)


@dataclass
class AllocTenant:
    app: Flask
    slug: str
    id: int
    schema: str
    timezone: str
    admin_email: str
    agencies: Agencies

    @property
    def db(self) -> Any:
        return platform(self.app).db

    def sql(self, statement: str, **params: Any) -> list[Any]:
        """Run SQL naming the tenant's schema as ``{s}``; returns the rows (committed)."""
        with self.db.session() as session:
            result = session.execute(text(statement.replace("{s}", f'"{self.schema}"')), params)
            rows = list(result.all()) if result.returns_rows else []
            session.commit()
            return rows

    def run(self, as_of: dt.date = AS_OF, **options: Any) -> Any:
        return run_allocation(self.db, tenant=self.id, as_of=as_of, **options)


def make_agencies(
    app: Flask, count: int = 2, *, collectors: int = 2, max_cases: int = 10_000
) -> Agencies:
    """``count`` agencies, each with a manager and collectors holding profiles."""
    db = platform(app).db
    tag = secrets.token_hex(3)
    result = Agencies(ids=[], slugs=[])
    with db.session() as session:
        for n in range(count):
            agency = create_agency(session, slug=f"ag{n}-{tag}", name=f"Agency {n} {tag}")
            result.ids.append(agency.id)
            result.slugs.append(agency.slug)
            manager = create_user(
                session,
                email=f"mgr{n}-{tag}@agency.test",
                full_name=f"Manager {n}",
                password=PASSWORD,
                role=Role.AGENCY_MANAGER,
                agency=agency,
            )
            result.managers[agency.id] = manager.email
            result.collectors[agency.id] = []
            for c in range(collectors):
                user = create_user(
                    session,
                    email=f"col{n}-{c}-{tag}@agency.test",
                    full_name=f"Collector {n}-{c}",
                    password=PASSWORD,
                    role=Role.COLLECTOR,
                    agency=agency,
                )
                session.add(
                    CollectorProfile(
                        user_id=user.id,
                        languages=[],
                        regions=[],
                        max_cases=max_cases,
                        is_active=True,
                    )
                )
                result.collectors[agency.id].append(user.id)
                result.collector_emails[user.id] = user.email
        session.commit()
    return result


def make_tenant(
    app: Flask,
    agencies: Agencies,
    *,
    placement_days: int = 30,
    grace_days: int = 10,
    contracted: list[int] | None = None,
) -> AllocTenant:
    """A tenant contracted with the given agencies from well before ``AS_OF``."""
    from recova.platform.agencies.models import Agency
    from tests.tenant_clone import clone_tenant

    db = platform(app).db
    tag = secrets.token_hex(3)
    with db.session() as session:
        tenant = clone_tenant(
            session,
            slug=f"alloc-{tag}",
            name=f"Alloc {tag}",
            jurisdiction="CN",
            timezone="Asia/Shanghai",
            currency="CNY",
        )
        for agency_id in contracted if contracted is not None else agencies.ids:
            agency = session.get(Agency, agency_id)
            assert agency is not None
            contract = create_agency_contract(
                session, tenant=tenant, agency=agency, starts_on=dt.date(2020, 1, 1)
            )
            contract.placement_days = placement_days
            contract.grace_days = grace_days
        admin = create_user(
            session,
            email=f"admin-{tag}@lender.test",
            full_name="Admin",
            password=PASSWORD,
            role=Role.TENANT_ADMIN,
            tenant=tenant,
        )
        session.commit()
        return AllocTenant(
            app=app,
            slug=tenant.slug,
            id=tenant.id,
            schema=tenant.schema_name,
            timezone=tenant.timezone,
            admin_email=admin.email,
            agencies=agencies,
        )


def seed_cases(
    tenant: AllocTenant,
    count: int,
    *,
    start: int = 1,
    dpd: tuple[int, int] = (1, 400),
    balance: tuple[int, int] = (100, 20_000),
    languages: tuple[str | None, ...] = (None,),
    regions: tuple[str | None, ...] = (None,),
    as_of: dt.date = AS_OF,
) -> list[int]:
    """Insert ``count`` debtors, accounts and open cases in bulk; returns the case ids."""
    low, high = dpd
    rows = tenant.sql(
        """WITH g AS (
               SELECT n, (%(low)s + (n::bigint * 7919) %% (%(span)s))::int AS dpd,
                      (%(blow)s + (n::bigint * 104729) %% (%(bspan)s))::numeric(20, 4) AS balance
               FROM generate_series(CAST(:start AS int), CAST(:end AS int)) AS n
           ), d AS (
               INSERT INTO {s}.debtors (external_id, full_name, language, region)
               SELECT 'D-' || n, 'Debtor ' || n,
                      p.langs[1 + n %% cardinality(p.langs)],
                      p.regs[1 + n %% cardinality(p.regs)]
               FROM g, (SELECT CAST(:languages AS text[]) AS langs,
                               CAST(:regions AS text[]) AS regs) p
               RETURNING id, external_id
           ), a AS (
               INSERT INTO {s}.accounts (external_id, debtor_id, product, currency,
                   original_principal, outstanding_principal, outstanding_interest,
                   outstanding_fees, outstanding_penalties, due_date, days_past_due,
                   source_row)
               SELECT 'L-' || g.n, d.id, 'cash', 'CNY', g.balance, g.balance, 0, 0, 0,
                      CAST(:as_of AS date) - g.dpd, g.dpd, '{}'::jsonb
               FROM g JOIN d ON d.external_id = 'D-' || g.n
               RETURNING id, debtor_id
           )
           INSERT INTO {s}.cases (account_id, debtor_id, status, flags, broken_promises)
           SELECT id, debtor_id, 'new', '{}', 0 FROM a RETURNING id""".replace("%(low)s", str(low))
        .replace("%(span)s", str(high - low + 1))
        .replace("%(blow)s", str(balance[0]))
        .replace("%(bspan)s", str(balance[1] - balance[0] + 1))
        .replace("%%", "%"),
        start=start,
        end=start + count - 1,
        languages=list(languages),
        regions=list(regions),
        as_of=as_of,
    )
    return sorted(row[0] for row in rows)


def split_policy(shares: dict[int, int], **extra: Any) -> dict[str, Any]:
    return {
        "segments": {
            "*": {
                "mode": "split",
                "agencies": [{"agency_id": a, "share": s} for a, s in shares.items()],
            }
        },
        **extra,
    }


def activate_policy(tenant: AllocTenant, policy: dict[str, Any], *, name: str | None = None) -> int:
    """Save ``policy`` as a new active strategy; returns the version id."""
    with tenant_scope(tenant.slug, db=tenant.db) as session:
        strategy = create_strategy(
            session,
            tenant_id=tenant.id,
            name=name or f"s-{secrets.token_hex(3)}",
            policy=policy,
            effective_from=dt.date(2020, 1, 1),
            activate=True,
        )
        return strategy.versions[-1].id


def state(tenant: AllocTenant) -> dict[str, Any]:
    """Everything allocation decides, as plain sorted values (to compare end states)."""
    return {
        "segments": tenant.sql(
            "SELECT case_id, bucket, bucket_since, segment FROM {s}.case_segments ORDER BY 1"
        ),
        "transitions": tenant.sql(
            "SELECT case_id, as_of, from_bucket, to_bucket FROM {s}.bucket_transitions"
            " ORDER BY 1, 2"
        ),
        "scores": tenant.sql(
            "SELECT case_id, score, components::text FROM {s}.case_scores ORDER BY 1"
        ),
        "placements": tenant.sql(
            "SELECT id, case_id, agency_id, arm, started_on, ends_on, recalled_on,"
            " recall_reason, grace_until, balance_at_placement FROM {s}.placements ORDER BY 1"
        ),
        "arms": tenant.sql("SELECT case_id, arm, holdout FROM {s}.strategy_arms ORDER BY 1"),
        "assignments": tenant.sql(
            "SELECT placement_id, collector_id, reason, ended_at IS NULL, end_reason"
            " FROM {s}.assignments ORDER BY id"
        ),
        "statuses": tenant.sql("SELECT id, status FROM {s}.cases ORDER BY 1"),
    }


def seed_world_allocation(world: Any) -> None:
    """Allocation objects in both tenants of the isolation world; B holds more of each,
    so B's ids do not exist in A even after the walk creates a few there."""
    from recova.platform.agencies.models import Agency
    from recova.platform.allocation.segmentation import DEFAULT_BUCKETS
    from recova.platform.allocation.services import create_segment_rule
    from recova.platform.auth.models import User
    from tests.support import B_MARK

    app = world.app
    db = platform(app).db
    today = dt.date.today()
    with db.session() as session:
        agency_b = session.get(Agency, world.agency_b_id)
        collector_a = session.scalar(select_user_by_email(User, world.collector_email))
        assert agency_b is not None
        assert collector_a is not None
        session.add(
            CollectorProfile(
                user_id=collector_a.id, languages=[], regions=[], max_cases=100, is_active=True
            )
        )
        collector_b = create_user(
            session,
            email=f"collector-{secrets.token_hex(3)}@{B_MARK}.test",
            full_name=f"Collector {B_MARK}",
            password=PASSWORD,
            role=Role.COLLECTOR,
            agency=agency_b,
        )
        session.add(
            CollectorProfile(
                user_id=collector_b.id, languages=[], regions=[], max_cases=100, is_active=True
            )
        )
        session.commit()
        collector_b_id = collector_b.id
    counts = {"a": 1, "b": 5}
    agency_of = {"a": world.agency_a_id, "b": world.agency_b_id}
    for key, tenant in (("a", world.a), ("b", world.b)):
        with tenant_scope(tenant.slug, db=db) as session:
            for n in range(counts[key]):
                create_segment_rule(
                    session,
                    name=f"rule-{key}-{n}",
                    priority=n,
                    conditions={"buckets": [DEFAULT_BUCKETS[n % 5]["name"]]},
                )
                create_strategy(
                    session,
                    tenant_id=tenant.id,
                    name=f"strategy-{key}-{n}",
                    policy=split_policy({agency_of[key]: 100}),
                    effective_from=dt.date(2020, 1, 1),
                    activate=n == counts[key] - 1,
                )
        days = 1 if key == "a" else 3
        for back in range(days - 1, -1, -1):
            run_allocation(db, tenant=tenant.slug, as_of=today - dt.timedelta(days=back))
    with db.session() as connection:
        schema = connection.execute(
            text("SELECT schema_name FROM platform.tenants WHERE id = :id"), {"id": world.b.id}
        ).scalar_one()
        last_placement = connection.execute(
            text(f'SELECT max(id) FROM "{schema}".placements')
        ).scalar_one()
    assert last_placement == len(world.b.case_ids)
    world.hostile_ids.update(
        {
            "strategy_id": str(counts["b"]),
            "version": "1",
            "rule_id": str(counts["b"]),
            "placement_id": str(last_placement),
            "allocation_run_id": "3",
            "collector_id": str(collector_b_id),
        }
    )


def select_user_by_email(user: Any, email: str) -> Any:
    from sqlalchemy import func, select

    return select(user).where(func.lower(user.email) == email.lower())
