"""The commission ledger: writing the lines of a month close, set-based.

One statement per step over every payment not yet on the ledger, never a Python loop
over payments:

1. *Terms*: contract versions with their validity ranges, rates by bucket and tiers as
   arrays (lower bounds, factors, and the charge of every tier below), agency payouts.
2. *Payments*: every payment dated before the month's end (tenant calendar) without a
   line, priced under its currency's version in force on its date. A payment no version
   covers waits, unbilled, for a version that does.
3. *Attribution*: the placement that held the case when the money came in, with the
   grace period after a recall first; the same rule as ``placement_credited_for``
   (``recova.platform.allocation.placement``), for every payment at once. A payment
   with no placement is the tenant's own recovery, charged only if the version says so.
4. *Bucket at placement*: the case's bucket on the placement's start date (the latest
   bucket transition up to it; for the tenant's own recoveries, up to the payment's
   date), or by days past due on that date where no transition was kept.
5. *Marginal tiers*: the month's commissionable volume before each payment is a running
   sum in event order (after what earlier closes already put on the ledger for that
   month). With F(v) the charge for the first v of a month's money (tier by tier, each
   slice at its own factor), a payment's commission is
   ``rate x (F(before + amount) - F(before))``: every slice at its own tier, never an
   average. F is found per row with ``width_bucket`` on the version's tier bounds.
6. *Rounding and cap*: each line's commission is rounded to the currency's minor unit
   under the version's mode; the cap per case then limits what the case's lines add up
   to (earlier lines on the ledger count), each payment in event order taking what room
   is left.
7. *Agency share*: a share of the rounded commission, or the agency's own rate of the
   money; rounded the same way. The platform's net is the commission minus it, so the two
   always add up (also a CHECK constraint).
8. *Clawbacks*: a reversal writes a line linked to its original's line. Reversing R of
   an original of amount A whose line charged C leaves ``round(C x (A - R) / A)``; each
   clawback is the difference between what was left before it and after it, so partial
   reversals claw back proportionally and a full reversal nets the original to exactly
   zero. The agency share is clawed back the same way.

Each line lands in its event's month, or the first later month whose invoice is not
issued: a late payment or a clawback of an already invoiced line goes on the next
invoice. Line ids are handed out by the close in event order under the tenant's billing
lock, so a close killed mid-way and run again writes exactly the lines an uninterrupted
close would have.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from recova.billing.money import minor_units, round_sql
from recova.platform.allocation.segmentation import bucket_case_sql

#: F(v) for the version's tiers: the charge factor summed over the first v of the month.
TIER_CHARGE = (
    "(v.prefix[width_bucket({v}, v.los)]"
    " + v.factors[width_bucket({v}, v.los)] * ({v} - v.los[width_bucket({v}, v.los)]))"
)
#: Scale of the proportional clawback division: far beyond any half-unit boundary.
HIGH_SCALE = "numeric(60, 30)"


@dataclass
class CloseContext:
    """One tenant, one month, one cursor inside the close's transaction."""

    cur: Any
    schema: str
    tenant_id: int
    timezone: str
    month: dt.date  # first day
    month_end: dt.date  # first day of the next month
    bucket_table: list[dict[str, Any]]
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def s(self) -> str:
        return f'"{self.schema}"'

    def params(self, **extra: Any) -> dict[str, Any]:
        return {
            "tz": self.timezone,
            "month": self.month,
            "month_end": self.month_end,
            "tenant_id": self.tenant_id,
            **extra,
        }

    def execute(self, sql: str, **extra: Any) -> Any:
        self.cur.execute(sql, self.params(**extra))
        return self.cur

    def scalar(self, sql: str, **extra: Any) -> Any:
        row = self.execute(sql, **extra).fetchone()
        return row[0] if row else None


def cutoff_sql() -> str:
    """SQL: the instant the month ends on the tenant's calendar."""
    return "(%(month_end)s::date::timestamp AT TIME ZONE %(tz)s::text)"


def load_terms(ctx: CloseContext) -> None:
    """Contract versions (ranges, rates, tier arrays), currencies and agency payouts."""
    s = ctx.s
    ctx.execute(
        f"""CREATE TEMP TABLE bill_versions ON COMMIT DROP AS
            SELECT v.id, v.currency, v.effective_from,
                   lead(v.effective_from) OVER (PARTITION BY v.currency
                                                ORDER BY v.effective_from) AS effective_to,
                   v.rounding, v.case_cap, v.unplaced_commission, v.rates,
                   t.los, t.factors, t.prefix
            FROM {s}.billing_contract_versions v
            CROSS JOIN LATERAL (
                SELECT array_agg(lo ORDER BY n) AS los, array_agg(factor ORDER BY n) AS factors,
                       array_agg(prefix ORDER BY n) AS prefix
                FROM (
                    SELECT n, lo, factor,
                           coalesce(sum((hi - lo) * factor) OVER (
                               ORDER BY n ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)
                               AS prefix
                    FROM (
                        SELECT n, (e->>'from')::numeric AS lo, (e->>'to')::numeric AS hi,
                               (e->>'factor')::numeric AS factor
                        FROM jsonb_array_elements(coalesce(
                                 nullif(v.tiers, 'null'::jsonb), '[{{"from": "0", "to": null, "factor": "1"}}]'::jsonb))
                             WITH ORDINALITY AS x(e, n)
                    ) bounds
                ) tiers
            ) t"""
    )
    currencies = [row[0] for row in ctx.execute("SELECT DISTINCT currency FROM bill_versions")]
    ctx.execute(
        "CREATE TEMP TABLE bill_currencies (currency text PRIMARY KEY, places int) ON COMMIT DROP"
    )
    if currencies:
        ctx.cur.executemany(
            "INSERT INTO bill_currencies VALUES (%s, %s)",
            [(currency, minor_units(currency)) for currency in currencies],
        )
    ctx.execute(
        """CREATE TEMP TABLE bill_rates ON COMMIT DROP AS
           SELECT v.id AS version_id, r.key AS bucket, r.value::numeric AS rate
           FROM bill_versions v CROSS JOIN LATERAL jsonb_each_text(v.rates) r"""
    )
    ctx.execute(
        """CREATE TEMP TABLE bill_agency_terms ON COMMIT DROP AS
           SELECT id, agency_id, starts_on,
                  lead(starts_on) OVER (PARTITION BY agency_id ORDER BY starts_on) AS next_start,
                  payout_mode, payout_share, payout_rates
           FROM platform.agency_contracts WHERE tenant_id = %(tenant_id)s"""
    )
    # Months already issued, per currency: no line may land in them.
    ctx.execute(
        f"""CREATE TEMP TABLE bill_issued ON COMMIT DROP AS
            SELECT DISTINCT currency, period FROM {s}.invoices
            WHERE status IN ('issued', 'paid')"""
    )


def _open_period_sql(month: str, currency: str) -> str:
    """SQL: the first month from ``month`` on whose invoice in ``currency`` is not issued."""
    return f"""(SELECT min(g)::date FROM generate_series({month}::timestamp,
                    {month}::timestamp + interval '240 months', interval '1 month') g
                WHERE NOT EXISTS (SELECT 1 FROM bill_issued i
                                  WHERE i.currency = {currency} AND i.period = g::date))"""


def write_commission_lines(ctx: CloseContext) -> int:
    """Steps 2-7: a line for every priced payment of the month (and before) not yet lined."""
    s = ctx.s
    ctx.execute(
        f"""CREATE TEMP TABLE bill_pay ON COMMIT DROP AS
            SELECT p.id AS payment_id, p.amount, p.currency, p.paid_at, p.paid_to::text AS paid_to,
                   (p.paid_at AT TIME ZONE %(tz)s::text)::date AS day, c.id AS case_id,
                   v.id AS version_id
            FROM {s}.payments p
            LEFT JOIN {s}.cases c ON c.account_id = p.account_id
            JOIN bill_versions v ON v.currency = p.currency
             AND v.effective_from <= (p.paid_at AT TIME ZONE %(tz)s::text)::date
             AND (v.effective_to IS NULL
                  OR (p.paid_at AT TIME ZONE %(tz)s::text)::date < v.effective_to)
            WHERE p.kind = 'payment' AND p.paid_at < {cutoff_sql()}
              AND NOT EXISTS (SELECT 1 FROM {s}.commission_lines l WHERE l.payment_id = p.id)"""
    )
    ctx.execute("ANALYZE bill_pay")
    ctx.counts["unpriced_payments"] = int(
        ctx.scalar(
            f"""SELECT count(*) FROM {s}.payments p
                WHERE p.kind = 'payment' AND p.paid_at < {cutoff_sql()}
                  AND NOT EXISTS (SELECT 1 FROM {s}.commission_lines l
                                  WHERE l.payment_id = p.id)
                  AND NOT EXISTS (SELECT 1 FROM bill_pay b WHERE b.payment_id = p.id)"""
        )
        or 0
    )
    # 3. Attribution: in grace after a recall first (latest end), else active (latest start).
    ctx.execute(
        f"""CREATE TEMP TABLE bill_credit ON COMMIT DROP AS
            SELECT DISTINCT ON (b.payment_id) b.payment_id, p.id AS placement_id, p.agency_id,
                   p.started_on
            FROM bill_pay b
            JOIN {s}.placements p ON p.case_id = b.case_id
            WHERE p.started_on <= b.day
              AND (coalesce(p.recalled_on, p.ends_on) > b.day
                   OR coalesce(p.grace_until, p.ends_on + p.grace_days) > b.day)
            ORDER BY b.payment_id,
                     coalesce(p.recalled_on, p.ends_on) <= b.day DESC,
                     CASE WHEN coalesce(p.recalled_on, p.ends_on) <= b.day
                          THEN coalesce(p.recalled_on, p.ends_on) ELSE p.started_on END DESC,
                     p.id DESC"""
    )
    # 4. The bucket at placement (the tenant's own recoveries: on the payment's date).
    ctx.execute(
        """CREATE TEMP TABLE bill_refs ON COMMIT DROP AS
           SELECT DISTINCT b.case_id, coalesce(cr.started_on, b.day) AS ref_day
           FROM bill_pay b LEFT JOIN bill_credit cr ON cr.payment_id = b.payment_id
           WHERE b.case_id IS NOT NULL"""
    )
    ctx.execute(
        f"""CREATE TEMP TABLE bill_ref_bucket ON COMMIT DROP AS
            SELECT DISTINCT ON (r.case_id, r.ref_day) r.case_id, r.ref_day,
                   t.to_bucket::text AS bucket
            FROM bill_refs r
            JOIN {s}.bucket_transitions t ON t.case_id = r.case_id AND t.as_of <= r.ref_day
            ORDER BY r.case_id, r.ref_day, t.as_of DESC"""
    )
    bucket_sql, bucket_params = bucket_case_sql(
        ctx.bucket_table, "greatest(0, r.ref_day - a.due_date)"
    )
    ctx.execute(
        f"""INSERT INTO bill_ref_bucket
            SELECT r.case_id, r.ref_day, {bucket_sql}
            FROM bill_refs r
            JOIN {s}.cases c ON c.id = r.case_id
            JOIN {s}.accounts a ON a.id = c.account_id
            WHERE NOT EXISTS (SELECT 1 FROM bill_ref_bucket x
                              WHERE x.case_id = r.case_id AND x.ref_day = r.ref_day)""",
        **bucket_params,
    )
    # 5. The month's volume already on the ledger, per currency.
    ctx.execute(
        f"""CREATE TEMP TABLE bill_prior_volume ON COMMIT DROP AS
            SELECT l.currency, date_trunc('month', l.event_on)::date AS month,
                   sum(l.base_amount) AS volume
            FROM {s}.commission_lines l
            WHERE l.kind = 'commission' AND l.volume_before IS NOT NULL
              AND l.period >= (SELECT min(date_trunc('month', day))::date FROM bill_pay)
              AND (l.currency, date_trunc('month', l.event_on)::date) IN (
                  SELECT DISTINCT currency, date_trunc('month', day)::date FROM bill_pay)
            GROUP BY 1, 2"""
    )
    has_cap = bool(ctx.scalar("SELECT bool_or(case_cap IS NOT NULL) FROM bill_versions"))
    if has_cap:
        ctx.execute(
            f"""CREATE TEMP TABLE bill_case_billed ON COMMIT DROP AS
                SELECT l.case_id, sum(l.commission) AS billed
                FROM {s}.commission_lines l
                WHERE l.case_id IN (SELECT case_id FROM bill_pay)
                GROUP BY l.case_id"""
        )
    raw = round_sql("p.commission_exact", "p.places", "p.rounding")
    capped = (
        f"""CASE WHEN p.case_cap IS NULL OR p.case_id IS NULL THEN {raw}
                 ELSE greatest(0, least({raw}, p.case_cap - coalesce(cb.billed, 0)
                      - coalesce(sum({raw}) OVER (PARTITION BY p.case_id ORDER BY p.paid_at,
                            p.payment_id ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)))
            END"""
        if has_cap
        else raw
    )
    cap_join = "LEFT JOIN bill_case_billed cb ON cb.case_id = p.case_id" if has_cap else ""
    after = TIER_CHARGE.format(v="(q.volume_before + q.amount)")
    before = TIER_CHARGE.format(v="q.volume_before")
    ctx.execute(
        f"""CREATE TEMP TABLE bill_lines ON COMMIT DROP AS
            WITH base AS (
                SELECT b.payment_id, b.case_id, b.amount, b.currency, b.paid_at, b.paid_to,
                       b.day, date_trunc('month', b.day)::date AS vmonth, b.version_id,
                       cr.placement_id, cr.agency_id, rb.bucket,
                       (cr.placement_id IS NOT NULL OR v.unplaced_commission) AS commissionable,
                       CASE WHEN cr.placement_id IS NOT NULL OR v.unplaced_commission
                            THEN coalesce(r.rate, rs.rate, 0) ELSE 0 END AS rate,
                       ag.id AS agency_contract_id, ag.payout_mode, ag.payout_share,
                       ag.payout_rates
                FROM bill_pay b
                JOIN bill_versions v ON v.id = b.version_id
                LEFT JOIN bill_credit cr ON cr.payment_id = b.payment_id
                LEFT JOIN bill_ref_bucket rb
                  ON rb.case_id = b.case_id AND rb.ref_day = coalesce(cr.started_on, b.day)
                LEFT JOIN bill_rates r ON r.version_id = b.version_id AND r.bucket = rb.bucket
                LEFT JOIN bill_rates rs ON rs.version_id = b.version_id AND rs.bucket = '*'
                LEFT JOIN bill_agency_terms ag
                  ON ag.agency_id = cr.agency_id AND ag.starts_on <= b.day
                 AND (ag.next_start IS NULL OR b.day < ag.next_start)
            ), volume AS (
                SELECT base.*,
                       CASE WHEN commissionable THEN coalesce(pv.volume, 0) + coalesce(
                           sum(amount) FILTER (WHERE commissionable) OVER (
                               PARTITION BY base.currency, vmonth ORDER BY paid_at, payment_id
                               ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)
                       END AS volume_before
                FROM base
                LEFT JOIN bill_prior_volume pv
                  ON pv.currency = base.currency AND pv.month = base.vmonth
            ), priced AS (
                SELECT q.*, v.rounding, v.case_cap, cur.places,
                       CASE WHEN q.commissionable
                            THEN q.rate / 100 * ({after} - {before}) ELSE 0
                       END AS commission_exact
                FROM volume q
                JOIN bill_versions v ON v.id = q.version_id
                JOIN bill_currencies cur ON cur.currency = q.currency
            ), charged AS (
                SELECT p.*, {capped} AS commission
                FROM priced p {cap_join}
            )
            SELECT c.*,
                   CASE WHEN c.agency_id IS NULL OR c.agency_contract_id IS NULL THEN 0
                        WHEN c.payout_mode = 'rates' THEN {
                            round_sql(
                                "c.amount * coalesce((c.payout_rates->>c.bucket)::numeric,"
                                " (c.payout_rates->>'*')::numeric, 0) / 100",
                                "c.places",
                                "c.rounding",
                            )
                        }
                        ELSE {round_sql("c.commission * c.payout_share / 100", "c.places",
                                        "c.rounding")}
                   END AS agency_share
            FROM charged c"""
    )
    ctx.execute(
        f"""CREATE TEMP TABLE bill_periods ON COMMIT DROP AS
            SELECT k.currency, k.month, {_open_period_sql("k.month", "k.currency")} AS period
            FROM (SELECT DISTINCT currency, vmonth AS month FROM bill_lines) k"""
    )
    first_id = int(ctx.scalar(f"SELECT coalesce(max(id), 0) FROM {s}.commission_lines"))
    ctx.execute(
        f"""INSERT INTO {s}.commission_lines (
                id, kind, payment_id, original_line_id, period, event_on, currency, case_id,
                placement_id, agency_id, agency_contract_id, bucket, contract_version_id,
                paid_to, base_amount, rate, volume_before, commission_exact, commission,
                agency_share, platform_net)
            SELECT %(first_id)s + row_number() OVER (ORDER BY l.paid_at, l.payment_id),
                   'commission', l.payment_id, NULL, pm.period, l.day, l.currency, l.case_id,
                   l.placement_id, l.agency_id, l.agency_contract_id, l.bucket, l.version_id,
                   l.paid_to, l.amount, l.rate, l.volume_before, l.commission_exact,
                   l.commission, l.agency_share, l.commission - l.agency_share
            FROM bill_lines l
            JOIN bill_periods pm ON pm.currency = l.currency AND pm.month = l.vmonth""",
        first_id=first_id,
    )
    written = int(ctx.cur.rowcount or 0)
    ctx.counts["commission_lines"] = written
    return written


def write_clawback_lines(ctx: CloseContext) -> int:
    """Step 8: a clawback line for every reversal of a lined payment, not yet lined."""
    s = ctx.s
    ctx.execute(
        f"""CREATE TEMP TABLE bill_rev ON COMMIT DROP AS
            SELECT r.id AS payment_id, r.amount, r.paid_at, r.paid_to::text AS paid_to,
                   (r.paid_at AT TIME ZONE %(tz)s::text)::date AS day,
                   o.id AS original_line_id, o.period AS original_period, o.currency,
                   o.case_id, o.placement_id, o.agency_id, o.agency_contract_id, o.bucket,
                   o.contract_version_id, o.rate, o.base_amount AS original_amount,
                   o.commission AS original_commission, o.agency_share AS original_share
            FROM {s}.payments r
            JOIN {s}.commission_lines o ON o.payment_id = r.reverses_id
            WHERE r.kind = 'reversal' AND r.paid_at < {cutoff_sql()}
              AND NOT EXISTS (SELECT 1 FROM {s}.commission_lines l WHERE l.payment_id = r.id)"""
    )
    ctx.execute("ANALYZE bill_rev")
    ctx.execute(
        f"""CREATE TEMP TABLE bill_rev_prior ON COMMIT DROP AS
            SELECT l.original_line_id, -sum(l.base_amount) AS reversed
            FROM {s}.commission_lines l
            WHERE l.original_line_id IN (SELECT original_line_id FROM bill_rev)
            GROUP BY l.original_line_id"""
    )

    def left(amount: str, reversed_: str, places: str, mode: str) -> str:
        """SQL: what stays of ``amount`` (a rounded line value) after ``reversed_``."""
        share = f"(({amount}) * (r.original_amount - ({reversed_})))::{HIGH_SCALE}"
        return round_sql(f"{share} / r.original_amount", places, mode)

    ctx.execute(
        f"""CREATE TEMP TABLE bill_claw ON COMMIT DROP AS
            WITH running AS (
                SELECT r.*, v.rounding, cur.places,
                       greatest(date_trunc('month', r.day)::date, r.original_period) AS month,
                       coalesce(pr.reversed, 0) + coalesce(sum(r.amount) OVER (
                           PARTITION BY r.original_line_id ORDER BY r.paid_at, r.payment_id
                           ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS before
                FROM bill_rev r
                JOIN {s}.billing_contract_versions v ON v.id = r.contract_version_id
                JOIN bill_currencies cur ON cur.currency = r.currency
                LEFT JOIN bill_rev_prior pr ON pr.original_line_id = r.original_line_id
            )
            SELECT r.*,
                   {left("r.original_commission", "r.before + r.amount", "r.places", "r.rounding")}
                   - {left("r.original_commission", "r.before", "r.places", "r.rounding")}
                       AS commission,
                   {left("r.original_share", "r.before + r.amount", "r.places", "r.rounding")}
                   - {left("r.original_share", "r.before", "r.places", "r.rounding")}
                       AS agency_share
            FROM running r"""
    )
    ctx.execute(
        f"""CREATE TEMP TABLE bill_claw_periods ON COMMIT DROP AS
            SELECT k.currency, k.month, {_open_period_sql("k.month", "k.currency")} AS period
            FROM (SELECT DISTINCT currency, month FROM bill_claw) k"""
    )
    first_id = int(ctx.scalar(f"SELECT coalesce(max(id), 0) FROM {s}.commission_lines"))
    ctx.execute(
        f"""INSERT INTO {s}.commission_lines (
                id, kind, payment_id, original_line_id, period, event_on, currency, case_id,
                placement_id, agency_id, agency_contract_id, bucket, contract_version_id,
                paid_to, base_amount, rate, volume_before, commission_exact, commission,
                agency_share, platform_net)
            SELECT %(first_id)s + row_number() OVER (ORDER BY c.paid_at, c.payment_id),
                   'clawback', c.payment_id, c.original_line_id, pm.period, c.day, c.currency,
                   c.case_id, c.placement_id, c.agency_id, c.agency_contract_id, c.bucket,
                   c.contract_version_id, c.paid_to, -c.amount, c.rate, NULL,
                   -(c.original_commission * c.amount)::{HIGH_SCALE} / c.original_amount,
                   c.commission, c.agency_share, c.commission - c.agency_share
            FROM bill_claw c
            JOIN bill_claw_periods pm ON pm.currency = c.currency AND pm.month = c.month""",
        first_id=first_id,
    )
    written = int(ctx.cur.rowcount or 0)
    ctx.counts["clawback_lines"] = written
    return written
