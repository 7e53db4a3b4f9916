"""A tenant with two agencies whose cases are placed and assigned today, for case work."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from flask import Flask

from recova.platform.kernel.db import utcnow
from recova.tenants.models import tenant_today
from tests.allocation_support import (
    Agencies,
    AllocTenant,
    activate_policy,
    make_agencies,
    make_tenant,
    seed_cases,
    split_policy,
)
from tests.support import Caller, login


@dataclass
class WorkWorld:
    app: Flask
    tenant: AllocTenant
    agencies: Agencies
    today: dt.date

    @property
    def agency(self) -> int:
        return self.agencies.ids[0]

    @property
    def collector(self) -> int:
        return self.agencies.collectors[self.agency][0]

    def cases_of(self, collector_id: int) -> list[int]:
        """The cases assigned to a collector now, by id."""
        rows = self.tenant.sql(
            "SELECT p.case_id FROM {s}.placements p JOIN {s}.assignments x"
            " ON x.placement_id = p.id AND x.ended_at IS NULL"
            " WHERE x.collector_id = :c AND p.recalled_on IS NULL ORDER BY p.case_id",
            c=collector_id,
        )
        return [row[0] for row in rows]

    def cases_of_agency(self, agency_id: int) -> list[int]:
        rows = self.tenant.sql(
            "SELECT case_id FROM {s}.placements WHERE agency_id = :a AND recalled_on IS NULL"
            " ORDER BY case_id",
            a=agency_id,
        )
        return [row[0] for row in rows]

    def balance(self, case_id: int) -> Decimal:
        [(value,)] = self.tenant.sql(
            "SELECT a.outstanding_principal + a.outstanding_interest + a.outstanding_fees"
            " + a.outstanding_penalties FROM {s}.cases c JOIN {s}.accounts a"
            " ON a.id = c.account_id WHERE c.id = :c",
            c=case_id,
        )
        return Decimal(value)

    def pay(self, case_id: int, amount: str, *, at: dt.datetime | None = None) -> int:
        """Record a payment on the case's account, as ingestion would; its id."""
        [(payment_id,)] = self.tenant.sql(
            "INSERT INTO {s}.payments (external_id, account_id, kind, amount, currency,"
            " paid_at, paid_to) SELECT :ext, account_id, 'payment', :amount, 'CNY', :at,"
            " 'tenant' FROM {s}.cases WHERE id = :c RETURNING id",
            ext=f"P-{secrets.token_hex(6)}",
            amount=Decimal(amount),
            at=at or utcnow() + dt.timedelta(seconds=1),
            c=case_id,
        )
        return int(payment_id)

    def reverse(self, payment_id: int, amount: str) -> None:
        self.tenant.sql(
            "INSERT INTO {s}.payments (external_id, account_id, kind, amount, currency,"
            " paid_at, paid_to, reverses_id) SELECT :ext, account_id, 'reversal', :amount,"
            " currency, now(), 'tenant', id FROM {s}.payments WHERE id = :p",
            ext=f"R-{secrets.token_hex(6)}",
            amount=Decimal(amount),
            p=payment_id,
        )

    def status(self, case_id: int) -> str:
        [(value,)] = self.tenant.sql("SELECT status FROM {s}.cases WHERE id = :c", c=case_id)
        return str(value)

    def contract_id(self, agency_id: int) -> int:
        [(value,)] = self.tenant.sql(
            "SELECT id FROM platform.agency_contracts WHERE tenant_id = :t AND agency_id = :a",
            t=self.tenant.id,
            a=agency_id,
        )
        return int(value)

    @property
    def tenant_admin_id(self) -> int:
        [(value,)] = self.tenant.sql(
            "SELECT id FROM platform.users WHERE email = :e", e=self.tenant.admin_email
        )
        return int(value)

    def admin(self) -> Caller:
        return login(self.app, self.tenant.admin_email)

    def collector_caller(self, collector_id: int | None = None) -> Caller:
        return login(self.app, self.agencies.collector_emails[collector_id or self.collector])

    def manager(self, agency_id: int | None = None) -> Caller:
        return login(self.app, self.agencies.managers[agency_id or self.agency])

    def path(self, rest: str) -> str:
        """A tenant route named by slug (how agency staff reach it)."""
        return f"/api/v1/tenants/{self.tenant.slug}{rest}"


def work_world(app: Flask, cases: int = 24) -> WorkWorld:
    """Two agencies splitting a tenant's cases 50/50, two collectors each, placed today."""
    agencies = make_agencies(app, 2, collectors=2, max_cases=1000)
    tenant = make_tenant(app, agencies)
    today = tenant_today(tenant.timezone)
    seed_cases(tenant, cases, as_of=today, dpd=(10, 90), balance=(1000, 9000))
    activate_policy(tenant, split_policy({agencies.ids[0]: 50, agencies.ids[1]: 50}))
    tenant.run(today)
    return WorkWorld(app=app, tenant=tenant, agencies=agencies, today=today)


def json_of(response: Any) -> Any:
    return response.get_json()


def audit_trail(
    world: WorkWorld, subject: tuple[str, int]
) -> list[tuple[str, str, dict[str, Any]]]:
    """The tenant's audit events about one subject, in chain order, after checking that
    the whole chain verifies: (action, actor, data)."""
    import json

    from recova.platform.audit import events, verify_chain
    from recova.platform.kernel.extension import platform
    from recova.tenants.scope import tenant_scope

    with tenant_scope(world.tenant.slug, db=platform(world.app).db) as session:
        assert verify_chain(session).ok
        return [
            (event.action, event.actor, json.loads(event.data))
            for event in events(session, subject=subject)
        ]


def actions(world: WorkWorld, case_id: int) -> list[str]:
    return [action for action, _, _ in audit_trail(world, ("case", case_id))]


def seed_world_work(world: Any) -> None:
    """Promises, plans, settlements, disputes and settings in both tenants of the
    isolation world; B holds more of each, so B's ids do not exist in A."""
    from sqlalchemy import select

    from recova.platform.agencies.contracts import AgencyContract
    from recova.platform.cases.models import Case
    from recova.platform.kernel.extension import platform
    from recova.platform.work import disputes, plans, promises, settlements
    from recova.platform.work.models import ApprovalLevel
    from recova.platform.work.settings import save_settings
    from recova.tenants.scope import tenant_scope

    db = platform(world.app).db
    layout = {  # case numbers (1-based) for promises+settlements, plans, disputes
        "a": ([1], [2], [3]),
        "b": ([1, 2, 3], [4, 5, 6], [4, 5, 6]),
    }
    for key, tenant in (("a", world.a), ("b", world.b)):
        promised, planned, disputed = layout[key]
        with tenant_scope(tenant.slug, db=db) as session:
            today = tenant_today(session.info["tenant"].timezone)
            case_of = {
                n: session.get(Case, case_id) for n, case_id in enumerate(tenant.case_ids, 1)
            }
            actor = "job:walk"
            for n in promised:
                case = case_of[n]
                assert case is not None
                promises.create_promise(
                    session,
                    case=case,
                    amount=Decimal(100),
                    due_date=today + dt.timedelta(days=5),
                    actor=actor,
                    today=today,
                )
                settlements.offer_settlement(
                    session,
                    case=case,
                    amount=Decimal(500),
                    expires_on=today + dt.timedelta(days=5),
                    actor=actor,
                    level=ApprovalLevel.COLLECTOR,
                    tenant_id=tenant.id,
                    today=today,
                )
            for n in planned:
                case = case_of[n]
                assert case is not None
                plans.create_plan(
                    session,
                    case=case,
                    instalments=[(today + dt.timedelta(days=d), Decimal(50)) for d in (1, 31)],
                    actor=actor,
                    today=today,
                )
            for n in disputed:
                case = case_of[n]
                assert case is not None
                disputes.open_dispute(
                    session, case=case, grounds="other", notes=None, actor=actor, today=today
                )
            if key == "b":
                save_settings(session, promise_grace_days=7)
    with db.session() as session:
        contract_b = session.scalar(
            select(AgencyContract.id).where(AgencyContract.tenant_id == world.b.id)
        )
    world.hostile_ids.update(
        {
            "plan_id": "3",
            "seq": "1",
            "settlement_id": "3",
            "dispute_id": "3",
            "agency_contract_id": str(contract_b),
        }
    )


def at_once(monkeypatch: Any, *requests: Callable[[], Any]) -> list[Any]:
    """Run each request in its own thread (its own session), all of them having loaded
    their rows before any takes the case lock: each thread waits at its first
    ``lock_case`` until every other one got there too. The responses, in order."""
    import threading

    from recova.platform.work import lifecycle

    lock_case = lifecycle.lock_case
    all_loaded = threading.Barrier(len(requests))
    waited = threading.local()

    def lock_when_all_loaded(session: Any, case_id: int) -> Any:
        if not getattr(waited, "done", False):
            waited.done = True
            all_loaded.wait(timeout=10)
        return lock_case(session, case_id)

    monkeypatch.setattr(lifecycle, "lock_case", lock_when_all_loaded)
    responses: list[Any] = [None] * len(requests)

    def run(n: int) -> None:
        responses[n] = requests[n]()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    monkeypatch.setattr(lifecycle, "lock_case", lock_case)  # later requests lock at once
    return responses
