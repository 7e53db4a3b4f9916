"""The commission ledger: writing the lines of a month close, set-based.

One statement per step over every payment not yet on the ledger, never a Python loop
over payments; the small tables (terms, buckets, months) are resolved first, then one
INSERT ... SELECT streams the million payments through windows and rounding into the
ledger:

1. *Terms*: contract versions with their validity ranges, rates by bucket (with the
   ``"*"`` fallback resolved per version and bucket), agency payouts, and each month's
   terms (currency unit, rounding, cap, the month's volume already on the ledger, the
   month its lines land in).
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
   average. F is written into the statement from the versions' validated tiers, as a
   CASE on the version and the volume with the bounds and factors as numeric literals.
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
from decimal import Decimal
from typing import Any

from recova.billing.money import minor_units, round_sql
from recova.platform.agencies.contracts import AgencyContract
from recova.platform.allocation.segmentation import bucket_case_sql
from recova.platform.kernel.db import quote_identifier, table_sql
from recova.platform.webhooks.events import bulk_events_sql

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
    terms: Terms | None = None

    @property
    def s(self) -> str:
        return quote_identifier(self.schema)

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
    """Contract versions with their ranges, rates, currencies and agency payouts; the tier
    charge and the rounding, written into SQL from the versions (``ctx.terms``)."""
    s = ctx.s
    ctx.execute(
        f"""CREATE TEMP TABLE bill_versions ON COMMIT DROP AS
            SELECT v.id, v.currency, v.effective_from,
                   lead(v.effective_from) OVER (PARTITION BY v.currency
                                                ORDER BY v.effective_from) AS effective_to,
                   v.rounding, v.case_cap, v.unplaced_commission
            FROM {s}.billing_contract_versions v"""
    )
    versions = ctx.execute(
        f"SELECT id, tiers, rounding, currency FROM {s}.billing_contract_versions ORDER BY id"
    ).fetchall()
    ctx.terms = Terms(
        tiers={row[0]: row[1] for row in versions if row[1]},
        modes={row[2] for row in versions},
    )
    currencies = sorted({row[3] for row in versions})
    ctx.execute(
        "CREATE TEMP TABLE bill_currencies (currency text PRIMARY KEY, places int, unit numeric)"
        " ON COMMIT DROP"
    )
    if currencies:
        # places: minor-unit digits (2 for CNY); unit: 10 ** places.
        ctx.cur.executemany(
            "INSERT INTO bill_currencies VALUES (%s, %s, %s)",
            [
                (currency, minor_units(currency), 10 ** minor_units(currency))
                for currency in currencies
            ],
        )
    ctx.execute(
        f"""CREATE TEMP TABLE bill_rates ON COMMIT DROP AS
            SELECT v.id AS version_id, r.key AS bucket, r.value::numeric AS rate
            FROM {s}.billing_contract_versions v CROSS JOIN LATERAL jsonb_each_text(v.rates) r"""
    )
    contracts = table_sql(AgencyContract)
    ctx.execute(
        f"""CREATE TEMP TABLE bill_agency_terms ON COMMIT DROP AS
           SELECT id, agency_id, starts_on,
                  lead(starts_on) OVER (PARTITION BY agency_id ORDER BY starts_on) AS next_start,
                  payout_mode, payout_share
           FROM {contracts} WHERE tenant_id = %(tenant_id)s"""
    )
    ctx.execute(
        f"""CREATE TEMP TABLE bill_agency_rates ON COMMIT DROP AS
           SELECT c.id AS agency_contract_id, r.key AS bucket, r.value::numeric AS rate
           FROM {contracts} c
           CROSS JOIN LATERAL jsonb_each_text(c.payout_rates) r
           WHERE c.tenant_id = %(tenant_id)s AND c.payout_mode = 'rates'"""
    )
    ctx.execute(
        "ANALYZE bill_versions; ANALYZE bill_rates; ANALYZE bill_agency_terms;"
        " ANALYZE bill_agency_rates"
    )
    # Months already issued, per currency: no line may land in them.
    ctx.execute(
        f"""CREATE TEMP TABLE bill_issued ON COMMIT DROP AS
            SELECT DISTINCT currency, period FROM {s}.invoices
            WHERE status IN ('issued', 'paid')"""
    )


@dataclass
class Terms:
    """What the SQL of a close is written from: tiers by version, and the rounding modes."""

    tiers: dict[int, list[dict[str, Any]]]
    modes: set[str]

    def rounding(self, column: str) -> str:
        """The mode for ``round_sql``: a literal when every version rounds alike."""
        return f"'{next(iter(self.modes))}'" if len(self.modes) == 1 else column

    def charge(self, version: str, volume: str, amount: str) -> str:
        """SQL: the tier-weighted amount of a payment of ``amount`` after ``volume``:
        F(volume + amount) - F(volume), F summing each slice at its tier's factor. A
        version without tiers charges the amount as it is."""
        if not self.tiers:
            return amount
        whens = " ".join(
            f"WHEN {int(version_id)} THEN {_tier_charge(tiers, f'({volume} + {amount})')}"
            f" - {_tier_charge(tiers, volume)}"
            for version_id, tiers in sorted(self.tiers.items())
        )
        return f"(CASE {version} {whens} ELSE {amount} END)"


def _tier_charge(tiers: list[dict[str, Any]], volume: str) -> str:
    """SQL: F(volume) for one version's tiers, with its bounds and factors as literals."""
    whens, below = [], Decimal(0)
    for tier in tiers:
        low, factor = Decimal(tier["from"]), Decimal(tier["factor"])
        value = f"({_literal(below)} + ({volume} - {_literal(low)}) * {_literal(factor)})"
        if tier["to"] is None:
            whens.append(f"ELSE {value}")
        else:
            high = Decimal(tier["to"])
            whens.append(f"WHEN {volume} < {_literal(high)} THEN {value}")
            below += (high - low) * factor
    return f"(CASE {' '.join(whens)} END)"


def _literal(value: Decimal) -> str:
    """A validated Decimal as an SQL numeric literal (digits, a point, a sign only)."""
    return f"{value:f}::numeric"


def _open_period_sql(month: str, currency: str) -> str:
    """SQL: the first month from ``month`` on whose invoice in ``currency`` is not issued."""
    return f"""(SELECT min(g)::date FROM generate_series({month}::timestamp,
                    {month}::timestamp + interval '240 months', interval '1 month') g
                WHERE NOT EXISTS (SELECT 1 FROM bill_issued i
                                  WHERE i.currency = {currency} AND i.period = g::date))"""


def write_commission_lines(ctx: CloseContext) -> int:
    """Steps 2-7: a line for every priced payment of the month (and before) not yet lined."""
    s = ctx.s
    terms = ctx.terms
    assert terms is not None, "load_terms first"
    # 2 and 3. Each payment not yet lined, with its version and the placement it credits:
    # in grace after a recall first (latest end), else active (latest start).
    ctx.execute(
        f"""CREATE TEMP TABLE bill_pay ON COMMIT DROP AS
            SELECT DISTINCT ON (b.payment_id) b.*, pl.id AS placement_id, pl.agency_id,
                   coalesce(pl.started_on, b.day) AS ref_day
            FROM (
                SELECT p.payment_id, p.amount, p.currency, p.paid_at, p.paid_to, p.day,
                       date_trunc('month', p.day)::date AS vmonth, c.id AS case_id,
                       v.id AS version_id
                FROM (
                    SELECT p.id AS payment_id, p.account_id, p.amount, p.currency, p.paid_at,
                           p.paid_to::text AS paid_to,
                           (p.paid_at AT TIME ZONE %(tz)s::text)::date AS day
                    FROM {s}.payments p
                    WHERE p.kind = 'payment' AND p.paid_at < {cutoff_sql()}
                      AND NOT EXISTS (SELECT 1 FROM {s}.commission_lines l
                                      WHERE l.payment_id = p.id)
                ) p
                LEFT JOIN {s}.cases c ON c.account_id = p.account_id
                LEFT JOIN bill_versions v ON v.currency = p.currency
                 AND v.effective_from <= p.day
                 AND (v.effective_to IS NULL OR p.day < v.effective_to)
            ) b
            LEFT JOIN {s}.placements pl ON pl.case_id = b.case_id AND pl.started_on <= b.day
             AND (coalesce(pl.recalled_on, pl.ends_on) > b.day
                  OR coalesce(pl.grace_until, pl.ends_on + pl.grace_days) > b.day)
            ORDER BY b.payment_id,
                     coalesce(pl.recalled_on, pl.ends_on) <= b.day DESC,
                     CASE WHEN coalesce(pl.recalled_on, pl.ends_on) <= b.day
                          THEN coalesce(pl.recalled_on, pl.ends_on) ELSE pl.started_on END DESC,
                     pl.id DESC"""
    )
    # A payment no version covers waits, unbilled, for one that does.
    ctx.counts["unpriced_payments"] = int(
        ctx.execute("DELETE FROM bill_pay WHERE version_id IS NULL").rowcount or 0
    )
    ctx.execute("ANALYZE bill_pay")
    # 4. The bucket at placement (the tenant's own recoveries: on the payment's date).
    ctx.execute(
        """CREATE TEMP TABLE bill_refs ON COMMIT DROP AS
           SELECT DISTINCT case_id, ref_day FROM bill_pay WHERE case_id IS NOT NULL"""
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
    ctx.execute("ANALYZE bill_ref_bucket")
    # 5. The month's volume already on the ledger, and where each month's lines land.
    ctx.execute(
        f"""CREATE TEMP TABLE bill_months ON COMMIT DROP AS
            SELECT k.currency, k.month, {_open_period_sql("k.month", "k.currency")} AS period,
                   (SELECT coalesce(sum(l.base_amount), 0) FROM {s}.commission_lines l
                    WHERE l.currency = k.currency AND l.period >= k.month
                      AND l.kind = 'commission' AND l.volume_before IS NOT NULL
                      AND l.event_on >= k.month AND l.event_on < k.month + interval '1 month'
                   ) AS volume
            FROM (SELECT DISTINCT currency, vmonth AS month FROM bill_pay) k"""
    )
    # The terms of each (version, month) and the rate of each (version, bucket) resolved
    # once, so the million payments meet two small tables instead of six.
    ctx.execute(
        """CREATE TEMP TABLE bill_month_terms ON COMMIT DROP AS
           SELECT v.id AS version_id, m.month, m.period, m.volume AS prior_volume, cur.places,
                  cur.unit,
                  v.rounding, v.case_cap, v.unplaced_commission,
                  dense_rank() OVER (ORDER BY v.currency COLLATE "C") AS currency_no
           FROM bill_versions v
           JOIN bill_months m ON m.currency = v.currency
           JOIN bill_currencies cur ON cur.currency = v.currency"""
    )
    ctx.execute(
        """CREATE TEMP TABLE bill_bucket_rates ON COMMIT DROP AS
           SELECT v.id AS version_id, b.bucket, coalesce(r.rate, rs.rate, 0) AS rate
           FROM bill_versions v
           CROSS JOIN (SELECT DISTINCT coalesce(bucket, '') AS bucket FROM bill_ref_bucket
                       UNION SELECT '') b
           LEFT JOIN bill_rates r ON r.version_id = v.id AND r.bucket = b.bucket
           LEFT JOIN bill_rates rs ON rs.version_id = v.id AND rs.bucket = '*'"""
    )
    ctx.execute(
        """CREATE TEMP TABLE bill_payout_rates ON COMMIT DROP AS
           SELECT t.id AS agency_contract_id, b.bucket, coalesce(r.rate, rs.rate, 0) AS rate
           FROM bill_agency_terms t
           CROSS JOIN (SELECT DISTINCT coalesce(bucket, '') AS bucket FROM bill_ref_bucket
                       UNION SELECT '') b
           LEFT JOIN bill_agency_rates r
             ON r.agency_contract_id = t.id AND r.bucket = b.bucket
           LEFT JOIN bill_agency_rates rs ON rs.agency_contract_id = t.id AND rs.bucket = '*'
           WHERE t.payout_mode = 'rates'"""
    )
    ctx.execute("ANALYZE bill_month_terms; ANALYZE bill_bucket_rates; ANALYZE bill_payout_rates")
    has_cap = bool(ctx.scalar("SELECT bool_or(case_cap IS NOT NULL) FROM bill_versions"))
    # What each case was charged before (for the cap): only cases with earlier lines.
    ctx.execute(
        f"""CREATE TEMP TABLE bill_case_billed ON COMMIT DROP AS
            SELECT l.case_id, sum(l.commission) AS billed
            FROM {s}.commission_lines l
            WHERE %(has_cap)s AND l.case_id IN (SELECT case_id FROM bill_pay)
            GROUP BY l.case_id""",
        has_cap=has_cap,
    )
    ctx.execute("ANALYZE bill_case_billed")
    mode = terms.rounding("q.rounding")
    capped = (
        """CASE WHEN q.case_cap IS NULL OR q.case_id IS NULL THEN q.raw
                ELSE greatest(0, least(q.raw, q.case_cap - q.billed
                     - coalesce(sum(q.raw) OVER (PARTITION BY q.case_id ORDER BY q.paid_at,
                           q.payment_id ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)))
           END"""
        if has_cap
        else "q.raw"
    )
    first_id = int(ctx.scalar(f"SELECT coalesce(max(id), 0) FROM {s}.commission_lines"))
    # One statement from the priced payments to the ledger. Each step is a subquery the
    # planner cannot flatten (OFFSET 0, or a window), so a value that a rounding expression
    # reads several times is computed once per row, and rows stream through the steps
    # without being stored between them.
    ctx.execute(
        f"""INSERT INTO {s}.commission_lines (
                id, kind, payment_id, original_line_id, period, event_on, currency, case_id,
                placement_id, agency_id, agency_contract_id, bucket, contract_version_id,
                paid_to, base_amount, rate, volume_before, commission_exact, commission,
                agency_share, platform_net)
            SELECT %(first_id)s + n, 'commission', payment_id, NULL, period, day, currency,
                   case_id, placement_id, agency_id, agency_contract_id, bucket, version_id,
                   paid_to, amount, rate, volume_before, commission_exact, commission,
                   agency_share, commission - agency_share
            FROM (
                SELECT q.*, {
            round_sql("q.share_exact", "q.places", mode, unit="q.unit")
        } AS agency_share
                FROM (
                    SELECT q.*,
                           CASE WHEN q.agency_contract_id IS NULL THEN 0
                                WHEN q.payout_mode = 'rates' THEN q.amount * q.agency_rate / 100
                                ELSE q.commission * q.payout_share / 100
                           END AS share_exact
                    FROM (
                        SELECT q.*, {capped} AS commission
                        FROM (
                            SELECT q.*,
                                   {
            round_sql("q.commission_exact", "q.places", mode, unit="q.unit")
        } AS raw
                            FROM (
                                SELECT o.*,
                                       CASE WHEN o.commissionable THEN o.rate / 100 * {
            terms.charge("o.version_id", "o.volume_before", "o.amount")
        }
                                            ELSE 0 END AS commission_exact
                                FROM (
                                    SELECT base.*, row_number() OVER events AS n,
                                           CASE WHEN commissionable THEN prior_volume + coalesce(
                                               sum(amount) FILTER (WHERE commissionable) OVER (
                                                   PARTITION BY currency_no, vmonth
                                                   ORDER BY paid_at, payment_id ROWS BETWEEN
                                                   UNBOUNDED PRECEDING AND 1 PRECEDING), 0)
                                           END AS volume_before
                                    FROM ({_priced_payments_sql()}) base
                                    WINDOW events AS (ORDER BY currency_no, vmonth, paid_at,
                                                      payment_id)
                                ) o OFFSET 0
                            ) q OFFSET 0
                        ) q OFFSET 0
                    ) q OFFSET 0
                ) q OFFSET 0
            ) lines
            -- In line-id order: the cap's window leaves rows in case order, and inserting
            -- those ids and payment ids out of order into their unique indexes cost more
            -- than this sort.
            ORDER BY n""",
        first_id=first_id,
    )
    written = int(ctx.cur.rowcount or 0)
    ctx.counts["commission_lines"] = written
    if written:
        # Each payment now on the ledger is attributed: one payment.attributed event per
        # line, in the close's transaction (written only if an endpoint subscribes).
        ctx.execute(
            bulk_events_sql(
                schema=ctx.schema,
                tenant_id=ctx.tenant_id,
                event_type="payment.attributed",
                rows_sql=f"""SELECT jsonb_build_object(
                        'payment_id', l.payment_id, 'case_id', l.case_id,
                        'placement_id', l.placement_id, 'agency_id', l.agency_id,
                        'line_id', l.id, 'period', l.period, 'amount', l.base_amount::text,
                        'commission', l.commission::text, 'currency', l.currency) AS data
                    FROM {s}.commission_lines l
                    WHERE l.id > %(first_id)s AND l.kind = 'commission'
                    ORDER BY l.id""",
            ),
            first_id=first_id,
        )
    return written


def _priced_payments_sql() -> str:
    """SQL: each payment with its month's terms, bucket, rate and agency payout."""
    return """
        SELECT b.payment_id, b.case_id, b.amount, b.currency, b.paid_at, b.paid_to, b.day,
               b.vmonth, b.version_id, b.placement_id, b.agency_id, rb.bucket,
               t.currency_no, t.places, t.unit, t.rounding, t.case_cap, t.period, t.prior_volume,
               (b.placement_id IS NOT NULL OR t.unplaced_commission) AS commissionable,
               CASE WHEN b.placement_id IS NOT NULL OR t.unplaced_commission
                    THEN r.rate ELSE 0 END AS rate,
               ag.id AS agency_contract_id, ag.payout_mode, ag.payout_share,
               coalesce(pr.rate, 0) AS agency_rate, coalesce(cb.billed, 0) AS billed
        FROM bill_pay b
        JOIN bill_month_terms t ON t.version_id = b.version_id AND t.month = b.vmonth
        LEFT JOIN bill_ref_bucket rb ON rb.case_id = b.case_id AND rb.ref_day = b.ref_day
        JOIN bill_bucket_rates r
          ON r.version_id = b.version_id AND r.bucket = coalesce(rb.bucket, '')
        LEFT JOIN bill_agency_terms ag
          ON ag.agency_id = b.agency_id AND ag.starts_on <= b.day
         AND (ag.next_start IS NULL OR b.day < ag.next_start)
        LEFT JOIN bill_payout_rates pr
          ON pr.agency_contract_id = ag.id AND pr.bucket = coalesce(rb.bucket, '')
        LEFT JOIN bill_case_billed cb ON cb.case_id = b.case_id"""


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

    def kept(amount: str, reversed_: str) -> str:
        """SQL: the exact part of ``amount`` (a rounded line value) left after ``reversed_``."""
        share = f"(({amount}) * (r.original_amount - ({reversed_})))::{HIGH_SCALE}"
        return f"{share} / r.original_amount"

    mode = ctx.terms.rounding("e.rounding") if ctx.terms else "e.rounding"

    def rounded(value: str) -> str:
        return round_sql(value, "e.places", mode, unit="e.unit")

    ctx.execute(
        f"""CREATE TEMP TABLE bill_claw ON COMMIT DROP AS
            WITH running AS MATERIALIZED (
                SELECT r.*, v.rounding, cur.places, cur.unit,
                       greatest(date_trunc('month', r.day)::date, r.original_period) AS month,
                       coalesce(pr.reversed, 0) + coalesce(sum(r.amount) OVER (
                           PARTITION BY r.original_line_id ORDER BY r.paid_at, r.payment_id
                           ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS before
                FROM bill_rev r
                JOIN {s}.billing_contract_versions v ON v.id = r.contract_version_id
                JOIN bill_currencies cur ON cur.currency = r.currency
                LEFT JOIN bill_rev_prior pr ON pr.original_line_id = r.original_line_id
            ), exact AS MATERIALIZED (
                SELECT r.*,
                       {kept("r.original_commission", "r.before")} AS commission_before,
                       {kept("r.original_commission", "r.before + r.amount")} AS commission_after,
                       {kept("r.original_share", "r.before")} AS share_before,
                       {kept("r.original_share", "r.before + r.amount")} AS share_after
                FROM running r
            )
            SELECT e.*,
                   {rounded("e.commission_after")} - {rounded("e.commission_before")}
                       AS commission,
                   {rounded("e.share_after")} - {rounded("e.share_before")} AS agency_share
            FROM exact e"""
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
