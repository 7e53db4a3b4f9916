"""Cross-tenant isolation, walked over every registered API route and every role.

Two tenants hold identical external ids; everything of tenant B's carries ``B_MARK``.
Each principal on tenant A's side (its users, its API clients, the staff of an agency
contracted with A only) calls every route with B's slug and B's ids in the path. The
responses must never show B's data, counts must be A's alone, and afterwards B's rows
are exactly as they were. New routes are covered automatically: the walk reads the
app's URL map, and a route without an access rule or a sample body fails the suite.

A second walk stays inside tenant A: a collector of agency A who holds none of its cases
calls every route with A's slug and the ids of a case assigned to their colleague (its
debtor, contact, attempt, promise, plan, settlement, placement). Each answers 403 (the
role may not) or 404 (out of their reach), the rest show nothing of A's debtors, and
afterwards A's rows are exactly as they were.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
from typing import Any

import pytest
from rq import SimpleWorker
from rq.serializers import JSONSerializer
from sqlalchemy import func, select, text

from recova.platform.allocation.models import Assignment, Placement
from recova.platform.audit import record_event
from recova.platform.audit.services import export_daily_head
from recova.platform.auth.access import AccessRule
from recova.platform.auth.models import OAuthClient, User
from recova.platform.cases.display import mask_name
from recova.platform.cases.models import Case, Contact, Debtor
from recova.platform.kernel.api import API_PREFIX, NAMED_TENANT_PREFIX
from recova.platform.kernel.extension import platform
from recova.platform.kernel.jobs import QUEUES, job_queue
from recova.platform.privacy.models import PersonalDataReveal
from recova.platform.privacy.settings import save_settings
from recova.platform.work.models import Dispute, PaymentPlan, Settlement
from recova.tenants.models import Tenant
from recova.tenants.scope import tenant_scope
from tests.allocation_support import seed_world_allocation
from tests.billing_support import seed_world_billing
from tests.compliance_support import seed_world_contact
from tests.support import (
    B_MARK,
    WALK_COLUMNS,
    WALK_CSV,
    Caller,
    Upload,
    World,
    anonymous,
    bearer,
    build_world,
    login,
    unique,
)
from tests.transactions import private_copy, shared
from tests.webhook_support import PUBLIC_URL, seed_world_webhooks
from tests.work_support import seed_world_work

_DAYS = itertools.count()
PUBLIC_ENDPOINTS = {"api-docs.openapi_json", "api-docs.openapi_swagger_ui", "swagger_assets"}
TENANT_TABLES = (
    "billing_contract_versions",
    "commission_lines",
    "invoices",
    "invoice_counter",
    "agency_statements",
    "allocation_settings",
    "segment_rules",
    "case_segments",
    "bucket_transitions",
    "case_scores",
    "placement_strategies",
    "strategy_versions",
    "strategy_arms",
    "placements",
    "assignments",
    "allocation_runs",
    "debtors",
    "contacts",
    "accounts",
    "cases",
    "payments",
    "ingestion_mappings",
    "ingestion_sources",
    "ingestion_files",
    "ingestion_runs",
    "ingestion_row_errors",
    "contact_attempts",
    "outcome_codes",
    "message_templates",
    "compliance_policies",
    "validation_notices",
    "audit_events",
    "audit_head_exports",
    "privacy_settings",
    "ingestion_settings",
    "work_settings",
    "case_transitions",
    "case_holds",
    "promises",
    "payment_plans",
    "plan_instalments",
    "settlements",
    "disputes",
    "webhook_endpoints",
    "webhook_deliveries",
    "webhook_attempts",
)


def _write_body(rule: str, method: str, world: World) -> dict[str, Any] | None:
    """A valid body for each write route, so writes really run (None: no body)."""
    path = rule.removeprefix(API_PREFIX).replace(NAMED_TENANT_PREFIX, "")
    policy = {
        "segments": {
            "*": {"mode": "split", "agencies": [{"agency_id": world.agency_a_id, "share": 100}]}
        }
    }
    strategy = "/allocation/strategies/<int:strategy_id>"
    soon = (dt.date.today() + dt.timedelta(days=3)).isoformat()
    bodies: dict[tuple[str, str], dict[str, Any] | None] = {
        ("/users", "POST"): {
            "email": f"{unique('new')}@example.test",
            "full_name": "New Person",
            "password": "long-enough-password",
            "role": "tenant_analyst",
        },
        ("/users/<int:user_id>", "PATCH"): {"is_active": False},
        ("/api-clients", "POST"): {"name": "new client", "scopes": ["cases:read"]},
        ("/api-clients/<int:client_pk>", "DELETE"): None,
        ("/cases/refresh-days-past-due", "POST"): {"as_of": "2031-01-01"},
        ("/ingestion/mappings", "POST"): {
            "name": unique("walk"),
            "kind": "portfolio",
            "columns": WALK_COLUMNS,
        },
        ("/ingestion/mappings/<int:mapping_id>", "PUT"): {"columns": WALK_COLUMNS},
        ("/ingestion/files", "POST"): Upload("walk.csv", WALK_CSV),
        ("/ingestion/sources", "POST"): {
            "name": unique("walk"),
            "options": {"url": "https://lender.test/loans"},
            "auth_header": "Authorization",
            "auth_value": "Bearer walk",
        },
        ("/ingestion/runs", "POST"): {"mapping": "walk-1", "file_id": 1},
        ("/ingestion/runs/<int:run_id>/resume", "POST"): None,
        ("/ingestion/runs/<int:run_id>/confirm-recall", "POST"): None,
        ("/ingestion/settings", "PUT"): {"recall_guard": True, "recall_guard_percent": "25"},
        ("/platform/tenants", "POST"): {
            "slug": unique("walk"),
            "name": "Walk",
            "jurisdiction": "CN",
            "timezone": "Asia/Shanghai",
            "currency": "CNY",
        },
        ("/platform/tenants/<slug:slug>", "PATCH"): {"status": "disabled"},
        ("/platform/agencies", "POST"): {"slug": unique("walk"), "name": "Walk"},
        ("/platform/agencies/<int:agency_id>", "PATCH"): {"status": "suspended"},
        ("/platform/contracts", "POST"): {"tenant": "x", "agency": "y", "starts_on": "2030-01-01"},
        ("/platform/contracts/<int:contract_id>", "PATCH"): {"ends_on": "2030-01-02"},
        ("/platform/users", "POST"): {
            "email": f"{unique('new')}@example.test",
            "full_name": "New",
            "role": "platform_admin",
            "password": "long-enough-password",
        },
        ("/platform/users/<int:user_id>", "PATCH"): {"is_active": False},
        ("/allocation/settings", "PUT"): {"buckets": [{"name": "M1", "min": 1, "max": None}]},
        ("/allocation/segment-rules", "POST"): {
            "name": unique("walk"),
            "priority": 1,
            "conditions": {"buckets": ["M1"]},
        },
        ("/allocation/segment-rules/<int:rule_id>", "DELETE"): None,
        ("/allocation/strategies", "POST"): {"name": unique("walk"), "policy": policy},
        ("/allocation/strategies/validate", "POST"): {"policy": policy},
        (f"{strategy}/versions", "POST"): {"policy": policy},
        (f"{strategy}/versions/<int:version>/activate", "POST"): None,
        (f"{strategy}/dry-run", "POST"): {},
        ("/allocation/runs", "POST"): {"as_of": "2031-01-01"},
        ("/placements/<int:placement_id>/recall", "POST"): {},
        ("/placements/<int:placement_id>/assignment", "PUT"): {"collector_id": 1},
        ("/cases/<int:case_id>/flags", "PUT"): {"flags": ["dispute"]},
        ("/agency/collectors/<int:collector_id>", "PATCH"): {"max_cases": 50},
        ("/cases/<int:case_id>/attempts", "POST"): {
            "contact_id": world.samples["a_contact_id"],
            "channel": "sms",
        },
        ("/cases/<int:case_id>/attempts/<bigint:attempt_id>/outcome", "POST"): {
            "code": "DELIVERED"
        },
        ("/cases/<int:case_id>/validation-notice", "POST"): {"channel": "letter"},
        ("/debtors/<int:debtor_id>/do-not-contact", "PUT"): {"do_not_contact": True},
        ("/contact/outcome-codes", "POST"): {
            "code": unique("W"),
            "label": "walk",
            "result": "busy",
        },
        ("/contact/outcome-codes/<int:code_id>", "PATCH"): {"is_active": False},
        ("/contact/templates", "POST"): {
            "name": unique("walk"),
            "channel": "sms",
            "audience": "third_party",
            "body": "Please ask {debtor_name} to call {company}.",
        },
        ("/contact/templates/<int:template_id>", "PUT"): {
            "name": unique("walk"),
            "channel": "sms",
            "audience": "debtor",
            "body": "Hello {debtor_name}",
        },
        ("/contact/templates/<int:template_id>/render", "POST"): {
            "case_id": world.samples["a_case_id"],
            "contact_id": world.samples["a_contact_id"],
        },
        ("/compliance/policy", "PUT"): {"overrides": {"max_connected_calls_per_day": 2}},
        ("/compliance/simulate", "POST"): {
            "attempts": [
                {
                    "case_id": world.samples["a_case_id"],
                    "contact_id": world.samples["a_contact_id"],
                    "channel": "call_out",
                    "at": "2031-01-01T03:00:00+00:00",
                }
            ]
        },
        ("/privacy/settings", "PUT"): {"retention_days": 400, "reveals_per_hour": 10},
        ("/cases/<int:case_id>/transitions", "POST"): {"to": "in_progress"},
        ("/cases/<int:case_id>/promises", "POST"): {"amount": "10.00", "due_date": soon},
        ("/cases/<int:case_id>/plans", "POST"): {
            "instalments": [{"due_date": soon, "amount": "10.00"}]
        },
        ("/plans/<int:plan_id>/instalments/<int:seq>/deferral", "POST"): {"due_date": soon},
        ("/cases/<int:case_id>/settlements", "POST"): {"amount": "1.00", "expires_on": soon},
        ("/settlements/<int:settlement_id>/decision", "POST"): {"approve": True},
        ("/cases/<int:case_id>/disputes", "POST"): {"grounds": "other"},
        ("/disputes/<int:dispute_id>/resolution", "POST"): {"outcome": "rejected"},
        ("/work/settings", "PUT"): {"promise_grace_days": 4},
        ("/work/contracts/<int:agency_contract_id>/settlement-limit", "PUT"): {
            "settlement_discount_limit": "20"
        },
        ("/agency/settlement-limit", "PUT"): {"collector_discount_limit": "5"},
        ("/work/evaluations", "POST"): {"as_of": "2031-01-01"},
        ("/debtors/<int:debtor_id>/reveal", "POST"): {
            "field": "national_id",
            "reason": "the walk checks who may reveal",
        },
        ("/billing/contract-versions", "POST"): {
            "currency": "CNY",
            # a new date on every call: a version per currency and date
            "effective_from": (dt.date(2040, 1, 1) + dt.timedelta(days=next(_DAYS))).isoformat(),
            "rates": {"*": "10"},
        },
        ("/billing/closes", "POST"): {"month": "2026-10"},
        ("/billing/invoices/preview", "POST"): {"month": "2026-10"},
        ("/billing/invoices/<int:invoice_id>/issue", "POST"): None,
        ("/billing/invoices/<int:invoice_id>/mark-paid", "POST"): {},
        ("/billing/invoices/<int:invoice_id>/void", "POST"): {"reason": "walk"},
        # Disabled, at a public address literal: nothing is ever sent during the walk.
        ("/webhooks/endpoints", "POST"): {
            "url": PUBLIC_URL,
            "event_types": ["invoice.issued"],
            "enabled": False,
        },
        ("/webhooks/endpoints/<int:endpoint_id>", "PATCH"): {"description": "walk"},
        ("/webhooks/endpoints/<int:endpoint_id>", "DELETE"): None,
        ("/webhooks/endpoints/<int:endpoint_id>/rotate-secret", "POST"): {},
        ("/webhooks/endpoints/<int:endpoint_id>/test", "POST"): None,
        (
            "/webhooks/endpoints/<int:endpoint_id>/deliveries/<int:delivery_id>/replay",
            "POST",
        ): None,
    }
    if (path, method) not in bodies:
        pytest.fail(f"add a sample body for {method} {rule} to the isolation walk")
    return bodies[(path, method)]


def api_operations(app) -> list[tuple[str, str, AccessRule | None]]:  # type: ignore[no-untyped-def]
    """Every (rule, method) under /api/v1 with its access rule."""
    operations = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(API_PREFIX) or rule.endpoint in PUBLIC_ENDPOINTS:
            continue
        view = app.view_functions[rule.endpoint]
        view_class = getattr(view, "view_class", None)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            handler = getattr(view_class, method.lower(), view) if view_class else view
            operations.append((rule.rule, method, getattr(handler, "access_rule", None)))
    return operations


def hostile_path(rule: str, world: World) -> str:
    """Fill every path variable with tenant B's slug or one of B's ids."""
    values = {
        "tenant_slug": world.b.slug,
        "slug": world.b.slug,
        "case_id": str(world.b.case_ids[-1]),  # exists in B only
        "account_id": str(world.b.case_ids[-1]),  # accounts and debtors share the numbering
        "debtor_id": str(world.b.case_ids[-1]),
        "mapping_id": "5",  # B holds five mappings and runs; A one, and the walk adds two
        "run_id": "5",
        "user_id": str(world.b.admin_id),
        "client_pk": str(world.b.client_pk),
        "agency_id": str(world.agency_b_id),
        "contract_id": str(world.contract_a_id),
        **world.hostile_ids,
    }

    def fill(match: re.Match[str]) -> str:
        name = match.group(1).split(":")[-1]
        return values[name]

    return re.sub(r"<([^>]+)>", fill, rule)


def snapshot_of_b(app, world: World) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Everything tenant B owns, as plain values."""
    db = platform(app).db
    with db.session() as session:
        schema = session.scalar(select(Tenant.schema_name).where(Tenant.id == world.b.id))
        tables = {
            table: sorted(
                map(str, session.execute(text(f'SELECT * FROM "{schema}".{table}')).all())
            )
            for table in TENANT_TABLES
        }
        users = sorted(
            (u.email, u.is_active, u.full_name)
            for u in session.scalars(select(User).where(User.email.contains(B_MARK)))
        )
        clients = sorted(
            (c.client_id, str(c.revoked_at), c.name)
            for c in session.scalars(select(OAuthClient).where(OAuthClient.tenant_id == world.b.id))
        )
        tenant = session.get(Tenant, world.b.id)
        assert tenant is not None
        return {
            "tables": tables,
            "users": users,
            "clients": clients,
            "tenant": (tenant.status, tenant.name),
        }


def tenant_rows(app, tenant_id: int) -> dict[str, list[str]]:  # type: ignore[no-untyped-def]
    """Every row of one tenant's tables, as plain values; the audit chain without the
    ``api.request`` events that successful calls append (a record of the call, no change)."""
    with platform(app).db.session() as session:
        schema = session.scalar(select(Tenant.schema_name).where(Tenant.id == tenant_id))
        rows = {}
        for table in TENANT_TABLES:
            where = " WHERE action <> 'api.request'" if table == "audit_events" else ""
            found = session.execute(text(f'SELECT * FROM "{schema}".{table}{where}')).all()
            rows[table] = sorted(map(str, found))
        return rows


def colleague_s_case(world: World) -> tuple[dict[str, str], list[str]]:
    """Path values of tenant A's objects around a case assigned to agency A's collector,
    and the personal values of A's debtors as anyone might see them (names in full and
    masked, masked identifiers)."""
    case_id = world.samples["a_case_id"]
    with tenant_scope(world.a.slug, db=platform(world.app).db) as session:
        case = session.get(Case, case_id)
        assert case is not None
        placement = session.scalar(
            select(Placement).where(Placement.case_id == case_id, Placement.recalled_on.is_(None))
        )
        assert placement is not None
        holder = session.scalar(
            select(Assignment.collector_id).where(
                Assignment.placement_id == placement.id, Assignment.ended_at.is_(None)
            )
        )
        # A's plans, settlements and disputes are all on cases the colleague does not hold.
        values = {
            "tenant_slug": world.a.slug,
            "slug": world.a.slug,
            "case_id": str(case_id),
            "debtor_id": str(case.debtor_id),
            "account_id": str(case.account_id),
            "attempt_id": str(world.samples["a_attempt_id"]),
            "template_id": str(world.samples["a_template_id"]),
            "code_id": str(world.samples["a_code_id"]),
            "placement_id": str(placement.id),
            "collector_id": str(holder),
            "plan_id": str(session.scalar(select(func.min(PaymentPlan.id)))),
            "seq": "1",
            "settlement_id": str(session.scalar(select(func.min(Settlement.id)))),
            "dispute_id": str(session.scalar(select(func.min(Dispute.id)))),
        }
        personal: list[str | None] = []
        for debtor in session.scalars(select(Debtor)):
            personal += [debtor.full_name, mask_name(debtor.full_name), debtor.national_id_masked]
        personal += list(session.scalars(select(Contact.value_masked)))
    return values, [value for value in personal if value]


def own_path(rule: str, values: dict[str, str]) -> str:
    """Fill every path variable from ``values`` (any other id: 1)."""

    def fill(match: re.Match[str]) -> str:
        return values.get(match.group(1).split(":")[-1], "1")

    return re.sub(r"<([^>]+)>", fill, rule)


def a_side_principals(world: World) -> list[tuple[str, Caller]]:
    app = world.app
    return [
        ("tenant A admin", login(app, world.a.admin_email)),
        ("tenant A analyst", login(app, world.a.analyst_email)),
        ("tenant A client", bearer(app, world.a.client_id, world.a.client_secret)),
        (
            "tenant A limited client",
            bearer(app, world.a.limited_client_id, world.a.limited_client_secret),
        ),
        ("agency manager (A only)", login(app, world.manager_email)),
        ("collector (A only)", login(app, world.collector_email)),
    ]


def principal_of(caller: Caller):  # type: ignore[no-untyped-def]
    """The principal the app resolves for a caller, via /api/v1/me."""
    return caller.get("/api/v1/me").json


def run_all_jobs(app) -> None:  # type: ignore[no-untyped-def]
    """Run every queued job in this process, as a worker would, and require success."""
    objects = platform(app)
    queues = [
        job_queue(objects.redis, name, prefix=objects.settings.queue_prefix) for name in QUEUES
    ]
    with app.app_context():
        SimpleWorker(queues, connection=objects.redis, serializer=JSONSerializer).work(burst=True)
    failed = {queue.name: queue.failed_job_registry.get_job_ids() for queue in queues}
    assert all(not ids for ids in failed.values()), failed


def _allocation_objects(world: World) -> None:
    """Strategies, rules, runs and placements in both tenants; B holds more of each.

    Both chains hold audit events and B's more, and B has privacy settings and an
    exported head, so a leak or a write across tenants would show.
    """
    seed_world_allocation(world)
    seed_world_work(world)
    db = platform(world.app).db
    for tenant, count in ((world.a, 2), (world.b, 6)):
        with tenant_scope(tenant.slug, db=db) as session:
            for n in range(count):
                record_event(
                    session, action="case.transition", actor="job:walk", subject=("case", n)
                )
    with tenant_scope(world.b.slug, db=db) as session:
        save_settings(session, actor="job:walk", retention_days=500, reveals_per_hour=5)
        session.add(
            PersonalDataReveal(
                debtor_id=1, field="national_id", reason="walk seed", revealed_by="job:walk"
            )
        )
        export_daily_head(session, day=dt.date(2026, 1, 1), actor="job:walk")
    # Contacts, attempts, outcome codes, templates and policies: B holds more of each.
    seed_world_contact(world)
    # Contract versions, invoices and statements: B holds more of each again.
    seed_world_billing(world)
    # Webhook endpoints and deliveries: B holds more of each.
    seed_world_webhooks(world)


@pytest.fixture(scope="module")
def seeded_world(app) -> World:  # type: ignore[no-untyped-def]
    """The module's world on this worker, seeded once and only ever changed inside
    rolled-back tests."""
    world = build_world(app)
    _allocation_objects(world)
    return shared(world, world.a.slug, world.b.slug)


@pytest.fixture
def world(app, seeded_world, rolled_back) -> World:  # type: ignore[no-untyped-def]
    """The conftest world with the objects of ``_allocation_objects`` in both tenants: the
    module's seeded one, or (``real_commits``) one of the test's own."""
    if rolled_back is not None:
        return private_copy(seeded_world, app)
    world = build_world(app)
    _allocation_objects(world)
    return world


@pytest.fixture(autouse=True)
def _seeded(world: World) -> None:
    """Every test here runs with the seeded world."""


def test_every_api_route_declares_who_may_call_it(app) -> None:
    missing = [f"{m} {r}" for r, m, rule in api_operations(app) if rule is None]
    assert missing == []
    assert len(api_operations(app)) >= 20


def test_anonymous_gets_401_everywhere(app, world: World) -> None:
    caller = anonymous(app)
    for rule, method, _ in api_operations(app):
        body = _write_body(rule, method, world) if method != "GET" else None
        response = caller.request(method, hostile_path(rule, world), body)
        assert response.status_code == 401, (method, rule, response.json)
        assert response.json["code"] == 401


@pytest.mark.real_commits  # the outbox publishes the jobs on a connection of its own
def test_tenant_a_side_never_sees_counts_or_changes_tenant_b(app, world: World) -> None:
    before = snapshot_of_b(app, world)
    for label, caller in a_side_principals(world):
        me = principal_of(caller)
        for rule, method, access_rule in api_operations(app):
            assert access_rule is not None
            body = _write_body(rule, method, world) if method != "GET" else None
            path = hostile_path(rule, world)
            response = caller.request(method, path, body)
            text_body = response.get_data(as_text=True)
            where = f"{label} {method} {path}: {response.status_code} {text_body[:200]}"
            assert B_MARK not in text_body.lower(), where
            allowed = (
                access_rule.scope in me["scopes"]
                if me["kind"] == "client"
                else access_rule.any_principal or me["role"] in access_rule.roles
            )
            if not allowed:
                assert response.status_code == 403, where
            elif (access_rule.tenant and ("<" in rule or me["tenant"] is None)) or (
                "<" in rule and rule.startswith(f"{API_PREFIX}/agency/")
            ):
                # B's slug or B's ids in the path, agency staff naming no tenant, or another
                # agency's collector in an agency route.
                assert response.status_code == 404, where
            else:
                # The caller's own tenant (or no tenant at all): the call really ran.
                assert 200 <= response.status_code < 300, where
                if rule.endswith("/cases") and method == "GET":
                    assert '"total": 3' in response.headers["X-Pagination"], where
    run_all_jobs(app)
    assert snapshot_of_b(app, world) == before


def test_a_collector_reaches_nothing_of_a_colleague_s_case(app, world: World) -> None:
    values, personal = colleague_s_case(world)
    base = f"{API_PREFIX}/tenants/{world.a.slug}"
    holder = login(app, world.collector_email)
    for path in (f"/cases/{values['case_id']}", f"/debtors/{values['debtor_id']}"):
        assert holder.get(base + path).status_code == 200  # the ids are live, and theirs
    before = tenant_rows(app, world.a.id)
    colleague = login(app, world.colleague_email)
    me = principal_of(colleague)
    assert me["role"] == "collector"
    for rule, method, access_rule in api_operations(app):
        assert access_rule is not None
        body = _write_body(rule, method, world) if method != "GET" else None
        path = own_path(rule, values)
        response = colleague.request(method, path, body)
        text_body = response.get_data(as_text=True)
        where = f"colleague {method} {path}: {response.status_code} {text_body[:200]}"
        if not (access_rule.any_principal or me["role"] in access_rule.roles):
            assert response.status_code == 403, where
        elif re.search(r"<(?!(slug:)?tenant_slug>)", rule) or (
            access_rule.tenant and NAMED_TENANT_PREFIX not in rule
        ):
            # An id of the colleague's case (or of something of it) in the path, or no
            # tenant named: nothing to reach.
            assert response.status_code == 404, where
        else:
            # Nothing of a case in the path (the queue, codes, templates, a simulation):
            # it runs, and shows nothing of the colleague's cases.
            assert 200 <= response.status_code < 300, where
            assert '"allowed": true' not in text_body, where
            if rule.endswith("/agency/queue"):
                assert response.json == [], where
        assert not [value for value in personal if value in text_body], where
    run_all_jobs(app)
    assert tenant_rows(app, world.a.id) == before


def test_lists_and_counts_are_tenant_a_only(world: World) -> None:
    for caller in (
        login(world.app, world.a.admin_email),
        bearer(world.app, world.a.client_id, world.a.client_secret),
    ):
        response = caller.get("/api/v1/cases?page_size=100")
        assert response.status_code == 200
        assert sorted(c["id"] for c in response.json) == sorted(world.a.case_ids)
        assert sorted(c["account"]["external_id"] for c in response.json) == sorted(
            world.external_ids
        )
        assert '"total": 3' in response.headers["X-Pagination"]
        # The same external id resolves to A's account, never B's.
        found = caller.get("/api/v1/cases?external_id=L-1").json
        assert [c["debtor"]["full_name"] for c in found] == ["Debtor alpha 1"]


def test_agency_staff_reach_only_contracted_tenants(world: World) -> None:
    inside = login(world.app, world.manager_email)
    assert inside.get(f"/api/v1/tenants/{world.a.slug}/profile").status_code == 200
    assert inside.get(f"/api/v1/tenants/{world.b.slug}/profile").status_code == 404
    outsider = login(world.app, world.outsider_manager_email)
    assert outsider.get(f"/api/v1/tenants/{world.a.slug}/profile").status_code == 404
    assert outsider.get(f"/api/v1/tenants/{world.b.slug}/profile").status_code == 200


def test_ended_contract_closes_the_tenant_to_the_agency(world: World) -> None:
    admin = login(world.app, world.platform_admin_email)
    yesterday = (dt.date.today() - dt.timedelta(days=1)).isoformat()
    response = admin.patch(
        f"/api/v1/platform/contracts/{world.contract_a_id}", {"ends_on": yesterday}
    )
    assert response.status_code == 200, response.json
    manager = login(world.app, world.manager_email)
    assert manager.get(f"/api/v1/tenants/{world.a.slug}/profile").status_code == 404


def test_platform_admin_reaches_both_tenants_by_name(world: World) -> None:
    admin = login(world.app, world.platform_admin_email)
    a_cases = admin.get(f"/api/v1/tenants/{world.a.slug}/cases").json
    b_cases = admin.get(f"/api/v1/tenants/{world.b.slug}/cases").json
    assert {c["debtor"]["full_name"].split()[1] for c in a_cases} == {"alpha"}
    assert {c["debtor"]["full_name"].split()[1] for c in b_cases} == {B_MARK}
    assert admin.get("/api/v1/cases").status_code == 404  # no tenant named


@pytest.mark.real_commits  # the outbox publishes the job on a connection of its own
def test_refresh_job_for_a_leaves_b_untouched(app, world: World) -> None:
    before = snapshot_of_b(app, world)
    caller = login(app, world.a.admin_email)
    response = caller.post("/api/v1/cases/refresh-days-past-due", {"as_of": "2032-06-30"})
    assert response.status_code == 202
    run_all_jobs(app)
    days = [c["account"]["days_past_due"] for c in caller.get("/api/v1/cases").json]
    assert min(days) > 365  # A's accounts moved to the new date
    assert snapshot_of_b(app, world) == before


def test_suspended_agency_locks_out_its_staff(world: World) -> None:
    manager = login(world.app, world.manager_email)
    assert manager.get(f"/api/v1/tenants/{world.a.slug}/profile").status_code == 200
    admin = login(world.app, world.platform_admin_email)
    response = admin.patch(
        f"/api/v1/platform/agencies/{world.agency_a_id}", {"status": "suspended"}
    )
    assert response.status_code == 200
    assert manager.get(f"/api/v1/tenants/{world.a.slug}/profile").status_code == 401
