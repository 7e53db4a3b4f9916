"""Month close over a million payments with reversals, against one SQL aggregate, checked
to the cent by an independent ``Decimal`` reference.

(a) Recova: ``close_month`` for one tenant and October 2026: 1,000,000 payments
    (``--small``: 50,000) on 200,000 cases (``--small``: 10,000) placed with 10 agencies
    (some recalled mid-month and placed again, so payments fall in grace periods), 2% of
    cases never placed (the tenant's own recoveries), and reversals of one payment in 20
    (full and partial, a few dated after the month). The contract has bucket rates,
    three marginal volume tiers, a cap per case, a minimum fee and VAT; half the agencies
    take a share of commission, half their own rates. The close writes every commission
    and clawback line, the invoice and the agency statements, in one transaction.
(b) The baseline, in the same run: one SELECT computing the same totals (commission,
    agency shares, platform net) from the same payments, placements and terms, writing
    nothing.
(c) The write floor, in the same run: the lines the close wrote, copied by one
    ``INSERT ... SELECT`` into an empty table with the ledger's columns, keys and checks
    (``LIKE ... INCLUDING ALL``): what storing them costs at all, before any of them is
    computed.
(d) The reference: the benchmark reads the raw payments, placements and buckets back and
    computes every line in Python with ``decimal`` (its own attribution, tiers, cap,
    rounding and clawbacks), then compares totals, per agency too. They must be equal.

    .venv/bin/python benchmarks/billing.py [--small] [--payments N]
"""

from __future__ import annotations

import datetime as dt
import json
import time
import zoneinfo
from collections import defaultdict
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from _common import bench_environment, copy_into_twin, describe_machine, heading, parser, verdict
from sqlalchemy import Engine, text

from recova.billing.invoices import close_month
from recova.billing.terms import create_contract_version
from recova.platform.entry.app import create_app
from recova.platform.kernel.extension import platform
from recova.tenants.migrate import migrate_shared
from recova.tenants.scope import tenant_scope
from recova.tenants.services import provision_tenant

GOAL_SECONDS = 10.0
AGENCIES = 10
MONTH = dt.date(2026, 10, 1)
ZONE = "Asia/Shanghai"
RATES = {"M1": "8", "M2": "12", "M3": "18", "M4": "25", "M6+": "30", "*": "10"}
TIERS = [
    {"from": "0", "to": "100000000", "factor": "1"},
    {"from": "100000000", "to": "300000000", "factor": "0.8"},
    {"from": "300000000", "to": None, "factor": "0.6"},
]
CASE_CAP = Decimal("400.00")
MINIMUM_FEE = Decimal("100000.00")
VAT = Decimal("6")
AGENCY_RATES = {"M6+": "12", "*": "9"}
SHARE = Decimal("40")
BUCKETS = ("M1", "M2", "M3", "M4", "M6+")


def seed(engine: Engine, schema: str, tenant_id: int, cases: int, payments: int) -> None:
    """Agencies and contracts, cases with buckets and placements, payments and reversals."""
    s = f'"{schema}"'
    statements = [
        (
            "INSERT INTO platform.agencies (slug, name, status)"
            " SELECT 'bench-agency-' || n, 'Agency ' || n, 'active'"
            " FROM generate_series(1, :agencies) n"
        ),
        (
            "INSERT INTO platform.agency_contracts (tenant_id, agency_id, starts_on,"
            " placement_days, grace_days, payout_mode, payout_share, payout_rates)"
            " SELECT :tenant, id, DATE '2020-01-01', 60, 10,"
            " CASE WHEN id % 2 = 0 THEN 'share' ELSE 'rates' END,"
            " CASE WHEN id % 2 = 0 THEN :share ELSE 0 END,"
            " CASE WHEN id % 2 = 0 THEN NULL ELSE CAST(:agency_rates AS jsonb) END"
            " FROM platform.agencies WHERE slug LIKE 'bench-agency-%'"
        ),
        f"""INSERT INTO {s}.debtors (external_id, full_name)
            SELECT 'D-' || n, 'Debtor ' || n FROM generate_series(1, :cases) n""",
        f"""INSERT INTO {s}.accounts (external_id, debtor_id, currency, original_principal,
                outstanding_principal, outstanding_interest, outstanding_fees,
                outstanding_penalties, due_date, days_past_due, source_row)
            SELECT 'L-' || id, id, 'CNY', 5000, 5000, 0, 0, 0, DATE '2026-06-01', 90, '{{}}'
            FROM {s}.debtors""",
        f"""INSERT INTO {s}.cases (account_id, debtor_id, status, flags, broken_promises)
            SELECT id, debtor_id, 'placed', '{{}}', 0 FROM {s}.accounts""",
        f"""INSERT INTO {s}.bucket_transitions (case_id, as_of, from_bucket, to_bucket)
            SELECT id, DATE '2026-09-01', NULL,
                   (ARRAY['M1', 'M2', 'M3', 'M4', 'M6+'])[1 + id % 5]
            FROM {s}.cases""",
        # Every case but one in 50 placed from September; one in 7 recalled on 15 October
        # (grace to the 25th) and placed with the next agency on the 16th.
        f"""WITH a AS (SELECT id, row_number() OVER (ORDER BY id) - 1 AS k
                       FROM platform.agencies WHERE slug LIKE 'bench-agency-%')
            INSERT INTO {s}.placements (case_id, agency_id, started_on, ends_on, grace_days,
                recalled_on, recall_reason, grace_until, balance_at_placement, currency)
            SELECT c.id, a.id, DATE '2026-09-01' + c.id % 20, DATE '2026-09-01' + c.id % 20 + 60,
                   10,
                   CASE WHEN c.id % 7 = 0 THEN DATE '2026-10-15' END,
                   CASE WHEN c.id % 7 = 0 THEN 'tenant' END,
                   CASE WHEN c.id % 7 = 0 THEN DATE '2026-10-25' END, 5000, 'CNY'
            FROM {s}.cases c JOIN a ON a.k = c.id % :agencies
            WHERE c.id % 50 <> 0""",
        f"""WITH a AS (SELECT id, row_number() OVER (ORDER BY id) - 1 AS k
                       FROM platform.agencies WHERE slug LIKE 'bench-agency-%')
            INSERT INTO {s}.placements (case_id, agency_id, started_on, ends_on, grace_days,
                balance_at_placement, currency)
            SELECT c.id, a.id, DATE '2026-10-16', DATE '2026-12-15', 10, 5000, 'CNY'
            FROM {s}.cases c JOIN a ON a.k = (c.id + 1) % :agencies
            WHERE c.id % 7 = 0 AND c.id % 50 <> 0""",
        f"""INSERT INTO {s}.payments (external_id, account_id, kind, amount, currency, paid_at,
                paid_to)
            SELECT 'P' || k, 1 + (k::bigint * 7919) % :cases, 'payment',
                   10 + ((k::bigint * 104729) % 99001) / 100.0, 'CNY',
                   TIMESTAMPTZ '2026-10-01 00:00:00+08'
                       + (k - 1) * interval '2678.4 milliseconds'
                       + ((k * 31) % 1000) * interval '1 millisecond',
                   (ARRAY['tenant', 'agency', 'platform'])[1 + k % 3]::{s}.paid_to
            FROM generate_series(1, :payments) k""",
        # One payment in 20 reversed two days later: in full (one in 40), else half, and a
        # quarter more for one in 120; reversals after 31 October wait for November.
        f"""INSERT INTO {s}.payments (external_id, account_id, kind, amount, currency, paid_at,
                paid_to, reverses_id)
            SELECT 'R' || p.id, p.account_id, 'reversal',
                   CASE WHEN p.id % 40 = 0 THEN p.amount ELSE round(p.amount / 2, 2) END,
                   'CNY', p.paid_at + interval '2 days', p.paid_to, p.id
            FROM {s}.payments p WHERE p.kind = 'payment' AND p.id % 20 = 0""",
        f"""INSERT INTO {s}.payments (external_id, account_id, kind, amount, currency, paid_at,
                paid_to, reverses_id)
            SELECT 'RR' || p.id, p.account_id, 'reversal', round(p.amount / 4, 2), 'CNY',
                   p.paid_at + interval '3 days', p.paid_to, p.id
            FROM {s}.payments p WHERE p.kind = 'payment' AND p.id % 120 = 20""",
    ]
    with engine.begin() as connection:
        for statement in statements:
            connection.execute(
                text(statement),
                {
                    "tenant": tenant_id,
                    "agencies": AGENCIES,
                    "cases": cases,
                    "payments": payments,
                    "share": SHARE,
                    "agency_rates": json.dumps(AGENCY_RATES),
                },
            )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        for table in ("payments", "placements", "cases", "bucket_transitions", "accounts"):
            connection.execute(text(f"VACUUM ANALYZE {s}.{table}"))


def aggregate(engine: Engine, schema: str) -> tuple[float, dict[str, Decimal]]:
    """The baseline: one SELECT computing the month's totals; (seconds, totals)."""
    s = f'"{schema}"'
    cutoff = "TIMESTAMPTZ '2026-11-01 00:00:00+08'"
    half_even = (
        "(CASE WHEN abs({x} * 100 - trunc({x} * 100)) = 0.5 THEN"
        " CASE WHEN mod(trunc({x} * 100), 2) = 0 THEN trunc({x} * 100)"
        " ELSE trunc({x} * 100) + sign({x}) END ELSE round({x} * 100) END) / 100"
    )

    def he(x: str) -> str:
        return half_even.format(x=f"({x})")

    los = "(ARRAY[0, 100000000, 300000000]::numeric[])"
    factors = "(ARRAY[1, 0.8, 0.6]::numeric[])"
    prefix = "(ARRAY[0, 100000000, 260000000]::numeric[])"

    def charge(v: str) -> str:
        return (
            f"({prefix}[width_bucket({v}, {los})] + {factors}[width_bucket({v}, {los})]"
            f" * ({v} - {los}[width_bucket({v}, {los})]))"
        )

    rates = " ".join(f"WHEN '{b}' THEN {r}" for b, r in RATES.items() if b != "*")
    placed_amount = "CASE WHEN agency_id IS NULL THEN 0 ELSE amount END"
    exact = f"rate / 100 * ({charge('after')} - {charge(f'after - {placed_amount}')})"
    sql = f"""
        WITH pay AS (
            SELECT p.id, p.amount, p.paid_at, c.id AS case_id,
                   (p.paid_at AT TIME ZONE '{ZONE}')::date AS day
            FROM {s}.payments p JOIN {s}.cases c ON c.account_id = p.account_id
            WHERE p.kind = 'payment' AND p.paid_at < {cutoff}
        ), credit AS (
            SELECT DISTINCT ON (y.id) y.id, pl.agency_id, pl.started_on
            FROM pay y JOIN {s}.placements pl ON pl.case_id = y.case_id
            WHERE pl.started_on <= y.day AND (coalesce(pl.recalled_on, pl.ends_on) > y.day
                  OR coalesce(pl.grace_until, pl.ends_on + pl.grace_days) > y.day)
            ORDER BY y.id, coalesce(pl.recalled_on, pl.ends_on) <= y.day DESC,
                     CASE WHEN coalesce(pl.recalled_on, pl.ends_on) <= y.day
                          THEN coalesce(pl.recalled_on, pl.ends_on) ELSE pl.started_on END DESC,
                     pl.id DESC
        ), priced AS (
            SELECT y.*, cr.agency_id, t.to_bucket AS bucket,
                   CASE WHEN cr.agency_id IS NULL THEN 0
                        ELSE CASE t.to_bucket {rates} ELSE 10 END END::numeric AS rate,
                   sum(CASE WHEN cr.agency_id IS NULL THEN 0 ELSE y.amount END) OVER (
                       ORDER BY y.paid_at, y.id) AS after
            FROM pay y LEFT JOIN credit cr ON cr.id = y.id
            LEFT JOIN {s}.bucket_transitions t ON t.case_id = y.case_id
        ), raw AS (
            SELECT priced.*,
                   {he(exact)} AS raw
            FROM priced
        ), lines AS (
            SELECT raw.*, greatest(0, least(raw.raw, {CASE_CAP} - coalesce(sum(raw.raw) OVER (
                       PARTITION BY case_id ORDER BY paid_at, id
                       ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0))) AS commission
            FROM raw
        ), shared AS (
            SELECT lines.*, CASE WHEN agency_id IS NULL THEN 0
                        WHEN agency_id % 2 = 0 THEN {he(f"commission * {SHARE} / 100")}
                        ELSE {he("amount * CASE WHEN bucket = 'M6+' THEN 12 ELSE 9 END / 100")}
                   END AS share
            FROM lines
        ), claws AS (
            SELECT r.amount, o.amount AS original, o.commission, o.share, o.agency_id,
                   coalesce(sum(r.amount) OVER (PARTITION BY r.reverses_id
                       ORDER BY r.paid_at, r.id
                       ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS before
            FROM {s}.payments r JOIN shared o ON o.id = r.reverses_id
            WHERE r.kind = 'reversal' AND r.paid_at < {cutoff}
        ), claw_lines AS (
            SELECT agency_id,
                   {he("(commission * (original - before - amount))::numeric(60,30) / original")}
                   - {he("(commission * (original - before))::numeric(60,30) / original")}
                       AS commission,
                   {he("(share * (original - before - amount))::numeric(60,30) / original")}
                   - {he("(share * (original - before))::numeric(60,30) / original")} AS share
            FROM claws
        )
        SELECT sum(commission), sum(share), count(*) FROM (
            SELECT commission, share FROM shared
            UNION ALL SELECT commission, share FROM claw_lines) all_lines
    """
    start = time.perf_counter()
    with engine.connect() as connection:
        connection.execute(text("SET work_mem = '256MB'"))
        commission, share, lines = connection.execute(text(sql)).one()
    seconds = time.perf_counter() - start
    return seconds, {
        "commission": commission,
        "agency_share": share,
        "platform_net": commission - share,
        "lines": Decimal(lines),
    }


def raw_rows(engine: Engine, schema: str) -> dict[str, Any]:
    """What the reference reads: placements, buckets, cases, payouts and every payment."""
    s = f'"{schema}"'
    with engine.connect() as connection:
        placements = defaultdict(list)
        for row in connection.execute(
            text(
                f"SELECT id, case_id, agency_id, started_on, ends_on, grace_days, recalled_on,"
                f" grace_until FROM {s}.placements"
            )
        ):
            placements[row.case_id].append(row)
        return {
            "placements": placements,
            "buckets": dict(
                connection.execute(
                    text(f"SELECT case_id, to_bucket FROM {s}.bucket_transitions")
                ).all()
            ),
            "case_of": dict(
                connection.execute(text(f"SELECT account_id, id FROM {s}.cases")).all()
            ),
            "payouts": {
                row.agency_id: row
                for row in connection.execute(
                    text(
                        "SELECT agency_id, payout_mode, payout_share, payout_rates"
                        " FROM platform.agency_contracts"
                    )
                )
            },
            "payments": connection.execute(
                text(
                    f"SELECT id, account_id, kind, amount, paid_at, reverses_id"
                    f" FROM {s}.payments ORDER BY paid_at, id"
                )
            ).all(),
        }


def rnd(value: Decimal) -> Decimal:
    """Half-even to the cent."""
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)


def credited(placements: dict[int, list[Any]], case_id: int, day: dt.date) -> int | None:
    """The agency a payment on ``day`` credits: in grace after a recall first, else active."""
    grace, active = [], []
    for p in placements.get(case_id, []):
        ended = p.recalled_on or p.ends_on
        until = p.grace_until or p.ends_on + dt.timedelta(days=p.grace_days)
        if ended <= day < until:
            grace.append((ended, p.id, p.agency_id))
        elif p.started_on <= day < ended:
            active.append((p.started_on, p.id, p.agency_id))
    chosen = max(grace) if grace else max(active) if active else None
    return chosen[2] if chosen else None


def charged(before: Decimal, amount: Decimal) -> Decimal:
    """The tier-weighted amount of a payment after ``before`` of the month: slice by slice."""
    total = Decimal(0)
    for tier in TIERS:
        low, factor = Decimal(tier["from"]), Decimal(tier["factor"])
        top = before + amount if tier["to"] is None else min(before + amount, Decimal(tier["to"]))
        bottom = max(before, low)
        if top > bottom:
            total += (top - bottom) * factor
    return total


def reference(engine: Engine, schema: str) -> tuple[dict[str, Decimal], dict[int, Decimal]]:
    """Every line computed in Python with ``decimal`` from the raw rows; totals and per-agency
    shares."""
    data = raw_rows(engine, schema)
    placements, buckets, case_of, payouts, rows = (
        data["placements"],
        data["buckets"],
        data["case_of"],
        data["payouts"],
        data["payments"],
    )
    zone = zoneinfo.ZoneInfo(ZONE)
    cutoff = dt.datetime(2026, 11, 1, tzinfo=zone)

    volume = Decimal(0)
    case_billed: dict[int, Decimal] = defaultdict(Decimal)
    lines: dict[int, tuple[Decimal, Decimal, Decimal, int | None]] = {}
    totals = {"commission": Decimal(0), "agency_share": Decimal(0), "lines": Decimal(0)}
    by_agency: dict[int, Decimal] = defaultdict(Decimal)
    reversed_so_far: dict[int, Decimal] = defaultdict(Decimal)
    for row in rows:
        if row.paid_at >= cutoff:
            continue
        if row.kind == "payment":
            case_id = case_of[row.account_id]
            day = row.paid_at.astimezone(zone).date()
            agency = credited(placements, case_id, day)
            bucket = buckets[case_id]
            commission = share = Decimal(0)
            if agency is not None:
                rate = Decimal(RATES.get(bucket, RATES["*"]))
                raw = rnd(rate / 100 * charged(volume, row.amount))
                volume += row.amount
                commission = max(Decimal(0), min(raw, CASE_CAP - case_billed[case_id]))
                case_billed[case_id] += raw
                payout = payouts[agency]
                if payout.payout_mode == "share":
                    share = rnd(commission * payout.payout_share / 100)
                else:
                    own = payout.payout_rates.get(bucket, payout.payout_rates["*"])
                    share = rnd(row.amount * Decimal(own) / 100)
            lines[row.id] = (row.amount, commission, share, agency)
        else:
            original, commission0, share0, agency = lines[row.reverses_id]
            before = reversed_so_far[row.reverses_id]
            after = before + row.amount
            reversed_so_far[row.reverses_id] = after
            commission = rnd(commission0 * (original - after) / original) - rnd(
                commission0 * (original - before) / original
            )
            share = rnd(share0 * (original - after) / original) - rnd(
                share0 * (original - before) / original
            )
        totals["commission"] += commission
        totals["agency_share"] += share
        totals["lines"] += 1
        if agency is not None:
            by_agency[agency] += share
    totals["platform_net"] = totals["commission"] - totals["agency_share"]
    return totals, dict(by_agency)


def set_up(objects: Any, payments: int) -> tuple[int, str]:
    """The tenant, its agencies, cases, placements, payments and contract; (id, schema)."""
    engine = objects.db.engine
    migrate_shared(engine)
    with objects.db.session() as session:
        tenant = provision_tenant(
            session,
            slug="bench-billing",
            name="Bench",
            jurisdiction="CN",
            timezone=ZONE,
            currency="CNY",
        )
        session.commit()
        tenant_id, schema = tenant.id, tenant.schema_name
    started = time.perf_counter()
    seed(engine, schema, tenant_id, payments // 5, payments)
    with tenant_scope(tenant_id, db=objects.db) as session:
        create_contract_version(
            session,
            tenant_id=tenant_id,
            data={
                "currency": "CNY",
                "effective_from": dt.date(2026, 1, 1),
                "rates": RATES,
                "tiers": TIERS,
                "case_cap": CASE_CAP,
                "minimum_fee": MINIMUM_FEE,
                "vat_rate": VAT,
            },
        )
    with engine.connect() as connection:
        reversals = connection.execute(
            text(f"SELECT count(*) FROM \"{schema}\".payments WHERE kind = 'reversal'")
        ).scalar_one()
    print(f"seeded in {time.perf_counter() - started:.1f} s ({reversals:,} reversals)")
    return tenant_id, schema


def main() -> None:
    arguments = parser(__doc__.splitlines()[0])
    arguments.add_argument("--payments", type=int, default=None, help="payments to close")
    args = arguments.parse_args()
    payments = args.payments or (50_000 if args.small else 1_000_000)
    with bench_environment("billing") as settings:
        objects = platform(create_app(settings))
        engine = objects.db.engine
        heading(
            "Month close: 1 month, reversals, 10 agencies",
            machine=describe_machine(engine),
            payments=f"{payments:,} on {payments // 5:,} cases",
        )
        tenant_id, schema = set_up(objects, payments)

        baseline_seconds, baseline = aggregate(engine, schema)
        start = time.perf_counter()
        result = close_month(objects.db, tenant=tenant_id, month=MONTH)
        close_seconds = time.perf_counter() - start
        # The aggregate again after the close, so cache warmth favours neither side.
        baseline_seconds = min(baseline_seconds, aggregate(engine, schema)[0])

        _, floor_seconds = copy_into_twin(engine, schema, "commission_lines")

        (invoice,) = result.invoices
        with engine.connect() as connection:
            agency_totals = dict(
                connection.execute(
                    text(
                        f'SELECT agency_id, sum(agency_total) FROM "{schema}".agency_statements'
                        " GROUP BY agency_id"
                    )
                ).all()
            )
        expected, expected_by_agency = reference(engine, schema)
        closed = {
            "commission": invoice["commission_total"],
            "agency_share": invoice["agency_total"],
            "platform_net": invoice["platform_total"],
            "lines": Decimal(invoice["line_count"]),
        }
        print(f"lines written: {result.counts}")
        print(
            f"invoice {invoice['number']}: commission {invoice['commission_total']:,.2f},"
            f" agencies {invoice['agency_total']:,.2f}, platform {invoice['platform_total']:,.2f},"
            f" VAT {invoice['vat']:,.2f}, total {invoice['total']:,.2f}"
        )
        print(f"close_month:        {close_seconds:8.2f} s")
        print(f"one SQL aggregate:  {baseline_seconds:8.2f} s")
        print(f"ratio close / aggregate: {close_seconds / baseline_seconds:.2f}")
        lines = sum(v for k, v in result.counts.items() if k.endswith("_lines"))
        print(
            f"write floor, the same {lines:,} lines into an empty copy of the table:"
            f" {floor_seconds:8.2f} s ({floor_seconds / close_seconds:.0%} of the close,"
            f" {floor_seconds / GOAL_SECONDS:.0%} of the goal)"
        )
        exact = closed == expected == baseline
        by_agency = agency_totals == {
            agency: share for agency, share in expected_by_agency.items() if share
        }
        print(f"totals equal the Decimal reference: {'yes' if exact else 'NO'}")
        if not exact:
            print(f"  close {closed}\n  aggregate {baseline}\n  reference {expected}")
        print(f"per-agency statements equal the reference: {'yes' if by_agency else 'NO'}")
        met = verdict(close_seconds <= GOAL_SECONDS)
        print(f"goal: close <= {GOAL_SECONDS:.0f} s on 2 cores: {met}")
        if not (exact and by_agency):
            raise SystemExit("the close's totals differ from the Decimal reference")


if __name__ == "__main__":
    main()
