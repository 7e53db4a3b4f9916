"""Property tests of billing (hypothesis): random payments, partial and full reversals,
recalls, contract versions, closes and issues, against a model written independently in
Python with ``decimal``.

Each example starts from the same fresh tenant: one built once, each example running in a
transaction rolled back at its end (``tests/transactions.py``). Payments and reversals
arrive in batches, each followed by the close of a month (and sometimes the issue of its
invoice), so reversals land after invoices were issued and late payments arrive for
months already closed. Checked:

1. the lines add up to the individually rounded commissions of the money not reversed
   (every line is also equal to the model's);
2. a fully reversed payment nets to zero (commission and agency share);
3. no payment is billed twice (one line per payment row; every live invoice is the only
   one of its month and currency, and holds each of that month's lines once);
4. an issued invoice never changes (its row and its CSV and PDF, byte for byte);
5. on every line, the agency's share plus the platform's net is the commission.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from recova.billing.exports import invoice_csv, invoice_pdf
from recova.billing.invoices import issue_invoice
from recova.billing.models import Invoice
from recova.billing.money import round_money
from recova.billing.terms import next_month
from recova.tenants.scope import tenant_scope
from recova.tenants.slugs import schema_name_for
from tests.allocation_support import make_agencies
from tests.billing_support import Ledger
from tests.transactions import RolledBack, private_copy, shared

D = Decimal
MONTHS = [dt.date(2026, 1, 1), dt.date(2026, 2, 1), dt.date(2026, 3, 1)]
BUCKETS = ["M1", "M2", "M3"]
SHARE = D("40")
AGENCY_RATES = {"M1": "3", "*": "5"}


@pytest.fixture(scope="module")
def agencies(app):  # type: ignore[no-untyped-def]
    """Two agencies for every example: one paid a share, one its own rates."""
    return make_agencies(app, 2, collectors=0)


@pytest.fixture(scope="module")
def fresh_ledger(app, agencies) -> Ledger:  # type: ignore[no-untyped-def]
    """The tenant every example starts from, as built (each example is rolled back)."""
    ledger = Ledger(app, agencies=agencies, cases=3)
    return shared(ledger, ledger.tenant.slug)


# --- scenarios -------------------------------------------------------------------------


def days() -> st.SearchStrategy[dt.date]:
    return st.integers(0, 88).map(lambda n: dt.date(2026, 1, 1) + dt.timedelta(days=n))


amounts = st.integers(1, 200_000).map(lambda cents: D(cents) / 100)
percent = st.sampled_from(["0", "5", "8", "12.5", "18", "25", "33.3333"])
tier_list = st.lists(
    st.tuples(st.integers(1, 120), st.sampled_from(["0.8", "0.5", "0.25", "1"])),
    min_size=1,
    max_size=3,
).map(
    lambda steps: [
        {"from": "0", "to": str(steps[0][0] * 10), "factor": "1"},
        *[
            {
                "from": str(sum(s[0] for s in steps[: i + 1]) * 10),
                "to": str(sum(s[0] for s in steps[: i + 2]) * 10) if i + 1 < len(steps) else None,
                "factor": steps[i][1],
            }
            for i in range(len(steps))
        ],
    ]
)
tiers = st.one_of(st.none(), tier_list, tier_list, tier_list)


@st.composite
def versions(draw: Any) -> list[dict[str, Any]]:
    count = draw(st.integers(1, 3))
    starts = sorted(
        {dt.date(2020, 1, 1), *draw(st.lists(days(), min_size=count - 1, max_size=count - 1))}
    )
    return [
        {
            "currency": "CNY",
            "effective_from": start,
            "rates": {**{b: draw(percent) for b in BUCKETS}, "*": draw(percent)},
            "tiers": draw(tiers),
            "minimum_fee": draw(st.sampled_from([None, "0.00", "150.00", "5000.00"])),
            "case_cap": draw(st.sampled_from([None, None, "40.00", "900.00"])),
            "vat_rate": draw(st.sampled_from([None, "6", "13"])),
            "rounding": draw(st.sampled_from(["half_even", "half_up", "down", "up"])),
            "unplaced_commission": draw(st.booleans()),
        }
        for start in starts
    ]


@st.composite
def scenarios(draw: Any) -> dict[str, Any]:
    cases = 3
    placements = []
    for case in range(cases):
        start = dt.date(2026, 1, 1) + dt.timedelta(days=draw(st.integers(0, 40)))
        recall = draw(st.one_of(st.none(), st.integers(1, 40)))
        placements.append(
            {
                "case": case,
                "agency": draw(st.integers(0, 1)),
                "start": start,
                "recalled": None if recall is None else start + dt.timedelta(days=recall),
                "grace": draw(st.integers(0, 10)),
                "bucket": draw(st.sampled_from(BUCKETS)),
                # a second placement with the other agency after the recall
                "again": draw(st.booleans()),
            }
        )
    payments = draw(
        st.lists(
            st.tuples(st.integers(0, cases - 1), amounts, days(), st.integers(0, 2)),
            min_size=1,
            max_size=12,
        )
    )
    reversals = draw(
        st.lists(
            st.tuples(
                st.integers(0, 99),  # which payment (modulo)
                st.sampled_from(["full", "half", "third", "cent"]),
                st.integers(0, 40),  # days after the payment
                st.integers(0, 2),  # batch
            ),
            max_size=6,
        )
    )
    issues = draw(st.lists(st.booleans(), min_size=3, max_size=3))
    return {
        "versions": draw(versions()),
        "placements": placements,
        "payments": payments,
        "reversals": reversals,
        "issues": issues,
    }


# --- the model ---------------------------------------------------------------------------


@dataclass
class Line:
    id: int
    payment: int
    kind: str
    period: dt.date
    case: int
    agency: int | None
    base: Decimal
    commission: Decimal
    share: Decimal
    original: int | None = None


@dataclass
class Model:
    """Billing as the issue states it, computed payment by payment in Python."""

    versions: list[dict[str, Any]]
    placements: dict[int, list[dict[str, Any]]]  # case id -> placements (db ids)
    buckets: dict[tuple[int, dt.date], str]  # (case id, day) -> bucket from that day
    payout: dict[int, dict[str, Any]]  # agency id -> payout
    lines: list[Line] = field(default_factory=list)
    issued: set[dt.date] = field(default_factory=set)

    def version(self, day: dt.date) -> dict[str, Any] | None:
        found = [v for v in self.versions if v["effective_from"] <= day]
        return found[-1] if found else None

    def credited(self, case: int, day: dt.date) -> dict[str, Any] | None:
        grace, active = [], []
        for p in self.placements.get(case, []):
            ended = p["recalled_on"] or p["ends_on"]
            until = p["grace_until"] or p["ends_on"] + dt.timedelta(days=p["grace_days"])
            if ended <= day < until:
                grace.append((ended, p["id"], p))
            elif p["started_on"] <= day < ended:
                active.append((p["started_on"], p["id"], p))
        chosen = max(grace, key=lambda g: g[:2]) if grace else None
        chosen = chosen or (max(active, key=lambda a: a[:2]) if active else None)
        return chosen[2] if chosen else None

    def bucket(self, case: int, day: dt.date) -> str | None:
        known = [(d, b) for (c, d), b in self.buckets.items() if c == case and d <= day]
        return max(known)[1] if known else None

    def open_period(self, month: dt.date) -> dt.date:
        while month in self.issued:
            month = next_month(month)
        return month

    def close(self, cutoff: dt.date, payments: list[dict[str, Any]]) -> None:
        """Line every payment and reversal before ``cutoff`` not yet lined."""
        lined = {line.payment for line in self.lines}
        fresh = [
            p
            for p in payments
            if p["kind"] == "payment"
            and p["day"] < cutoff
            and p["id"] not in lined
            and self.version(p["day"]) is not None
        ]
        fresh.sort(key=lambda p: (p["day"].replace(day=1), p["at"], p["id"]))
        volume: dict[dt.date, Decimal] = defaultdict(Decimal)
        for line in self.lines:
            if line.kind == "commission" and line.__dict__.get("volume") is not None:
                volume[line.__dict__["month"]] += line.base
        billed: dict[int, Decimal] = defaultdict(Decimal)
        for line in self.lines:
            billed[line.case] += line.commission
        raw_so_far: dict[int, Decimal] = defaultdict(Decimal)
        by_time = sorted(fresh, key=lambda p: (p["at"], p["id"]))
        raws: dict[int, Decimal] = {}
        computed: dict[int, tuple[Any, ...]] = {}
        for p in fresh:  # volume order: tier positions
            version = self.version(p["day"])
            assert version is not None
            placement = self.credited(p["case"], p["day"])
            ref = placement["started_on"] if placement else p["day"]
            bucket = self.bucket(p["case"], ref)
            rates = version["rates"]
            commissionable = placement is not None or version["unplaced_commission"]
            rate = D(rates.get(bucket, rates["*"])) if commissionable else D(0)
            month = p["day"].replace(day=1)
            before = volume[month]
            exact = D(0)
            if commissionable:
                exact = (
                    rate / 100 * (charge(version, before + p["amount"]) - charge(version, before))
                )
                volume[month] += p["amount"]
            raws[p["id"]] = round_money(exact, "CNY", version["rounding"])
            computed[p["id"]] = (version, placement, bucket, commissionable, month)
        for p in by_time:  # the cap, in event order per case
            version, placement, bucket, commissionable, month = computed[p["id"]]
            raw = raws[p["id"]]
            commission = raw
            if version["case_cap"] is not None:
                room = D(version["case_cap"]) - billed[p["case"]] - raw_so_far[p["case"]]
                commission = max(D(0), min(raw, room))
            raw_so_far[p["case"]] += raw
            share = D(0)
            if placement is not None:
                payout = self.payout[placement["agency_id"]]
                if payout["mode"] == "share":
                    share = commission * payout["share"] / 100
                else:
                    share = p["amount"] * D(payout["rates"].get(bucket, payout["rates"]["*"])) / 100
                share = round_money(share, "CNY", version["rounding"])
            computed[p["id"]] = (commission, share, placement, month, commissionable, version)
        for index, p in enumerate(fresh):
            commission, share, placement, month, commissionable, version = computed[p["id"]]
            line = Line(
                id=len(self.lines) + 1,
                payment=p["id"],
                kind="commission",
                period=self.open_period(month),
                case=p["case"],
                agency=placement["agency_id"] if placement else None,
                base=p["amount"],
                commission=commission,
                share=share,
            )
            line.__dict__.update(volume=commissionable or None, month=month, version=version)
            self.lines.append(line)
            del index
        self._clawbacks(cutoff, payments)

    def _clawbacks(self, cutoff: dt.date, payments: list[dict[str, Any]]) -> None:
        lined = {line.payment: line for line in self.lines}
        fresh = sorted(
            (
                p
                for p in payments
                if p["kind"] == "reversal"
                and p["day"] < cutoff
                and p["id"] not in lined
                and p["reverses"] in lined
            ),
            key=lambda p: (p["at"], p["id"]),
        )
        reversed_: dict[int, Decimal] = defaultdict(Decimal)
        for line in self.lines:
            if line.kind == "clawback":
                reversed_[line.original or 0] -= line.base
        for p in fresh:
            original = lined[p["reverses"]]
            mode = original.__dict__["version"]["rounding"]
            before = reversed_[original.id]
            after = before + p["amount"]
            reversed_[original.id] = after

            def kept(
                value: Decimal, gone: Decimal, original: Line = original, mode: str = mode
            ) -> Decimal:
                return round_money(value * (original.base - gone) / original.base, "CNY", mode)

            month = max(p["day"].replace(day=1), original.period)
            line = Line(
                id=len(self.lines) + 1,
                payment=p["id"],
                kind="clawback",
                period=self.open_period(month),
                case=original.case,
                agency=original.agency,
                base=-p["amount"],
                commission=kept(original.commission, after) - kept(original.commission, before),
                share=kept(original.share, after) - kept(original.share, before),
                original=original.id,
            )
            line.__dict__.update(volume=None, month=month, version=original.__dict__["version"])
            self.lines.append(line)


def charge(version: dict[str, Any], volume: Decimal) -> Decimal:
    """F(volume): the month's first ``volume`` of money, each slice at its tier's factor."""
    if not version["tiers"]:
        return volume
    total = D(0)
    for tier in version["tiers"]:
        low, factor = D(tier["from"]), D(tier["factor"])
        high = D(tier["to"]) if tier["to"] is not None else None
        top = volume if high is None else min(volume, high)
        if top > low:
            total += (top - low) * factor
    return total


# --- the test ------------------------------------------------------------------------------


def _at(day: dt.date, seconds: int) -> dt.datetime:
    # 08:00-09:00 in Shanghai: always that calendar day on the tenant's calendar.
    return dt.datetime.combine(day, dt.time(0, 0), tzinfo=dt.UTC) + dt.timedelta(seconds=seconds)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(scenario=scenarios())
def test_billing_properties(app, fresh_ledger, scenario: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    with RolledBack(app, [schema_name_for(fresh_ledger.tenant.slug)]):
        ledger, model = _set_up(private_copy(fresh_ledger, app), scenario)
        payments, snapshots = _play(ledger, model, scenario)
        _check(ledger, model, payments, snapshots)


def _set_up(ledger: Ledger, scenario: dict[str, Any]) -> tuple[Ledger, Model]:
    """The fresh tenant with the scenario's versions, placements and buckets, and its model."""
    share_agency, rates_agency = ledger.agency(0), ledger.agency(1)
    ledger.set_payout(share_agency, share=str(SHARE))
    ledger.set_payout(rates_agency, rates=AGENCY_RATES)
    for terms in scenario["versions"]:
        ledger.version(**terms)
    cases = ledger.case_ids
    for case in cases:  # every case's bucket before anything else happens
        ledger.sql(
            "INSERT INTO {s}.bucket_transitions (case_id, as_of, to_bucket)"
            " VALUES (:case, DATE '2025-12-01', 'M1')",
            case=case,
        )
    for spec in scenario["placements"]:
        agency = ledger.agency(spec["agency"])
        case = cases[spec["case"]]
        ledger.place(
            case,
            agency,
            spec["start"],
            grace_days=spec["grace"],
            recalled_on=spec["recalled"],
            bucket=spec["bucket"],
        )
        if spec["recalled"] is not None and spec["again"]:
            ledger.place(
                case,
                ledger.agency(1 - spec["agency"]),
                spec["recalled"] + dt.timedelta(days=1),
                bucket=spec["bucket"],
            )
    placements = defaultdict(list)
    for row in ledger.sql(
        "SELECT id, case_id, agency_id, started_on, ends_on, recalled_on, grace_until,"
        " grace_days FROM {s}.placements"
    ):
        placements[row.case_id].append(dict(row._mapping))
    buckets = {
        (row.case_id, row.as_of): row.to_bucket
        for row in ledger.sql("SELECT case_id, as_of, to_bucket FROM {s}.bucket_transitions")
    }
    model = Model(
        versions=[
            {**v, "tiers": v["tiers"]}
            for v in sorted(scenario["versions"], key=lambda v: v["effective_from"])
        ],
        placements=placements,
        buckets=buckets,
        payout={
            share_agency: {"mode": "share", "share": SHARE},
            rates_agency: {"mode": "rates", "rates": AGENCY_RATES},
        },
    )
    return ledger, model


def _play(
    ledger: Ledger, model: Model, scenario: dict[str, Any]
) -> tuple[list[dict[str, Any]], dict[int, tuple[Any, bytes, bytes]]]:
    """Each batch of payments and reversals, then its month's close (and issue)."""
    cases = ledger.case_ids
    payments: list[dict[str, Any]] = []
    snapshots: dict[int, tuple[Any, bytes, bytes]] = {}
    for batch, month in enumerate(MONTHS):
        for n, (case_index, amount, day, when) in enumerate(scenario["payments"]):
            if when != batch:
                continue
            at = _at(day, n)
            pid = ledger.pay(cases[case_index], amount, at)
            payments.append(
                {
                    "id": pid,
                    "kind": "payment",
                    "case": cases[case_index],
                    "amount": amount,
                    "day": day,
                    "at": at,
                }
            )
        for n, (which, part, later, when) in enumerate(scenario["reversals"]):
            originals = [p for p in payments if p["kind"] == "payment"]
            if when != batch or not originals:
                continue
            original = originals[which % len(originals)]
            left = original["amount"] - sum(
                p["amount"] for p in payments if p.get("reverses") == original["id"]
            )
            amount = {
                "full": left,
                "half": (left / 2).quantize(D("0.01")),
                "third": (left / 3).quantize(D("0.01")),
                "cent": min(left, D("0.01")),
            }[part]
            if amount <= 0:
                continue
            day = original["day"] + dt.timedelta(days=later)
            at = _at(day, 1000 + n)
            rid = ledger.reverse(original["id"], amount, at)
            payments.append(
                {
                    "id": rid,
                    "kind": "reversal",
                    "case": original["case"],
                    "amount": amount,
                    "day": day,
                    "at": at,
                    "reverses": original["id"],
                }
            )
        ledger.close(month)
        model.close(next_month(month), payments)
        if scenario["issues"][batch]:
            with tenant_scope(ledger.tenant.slug, db=ledger.db) as session:
                invoice = session.scalar(
                    select(Invoice).where(Invoice.period == month, Invoice.status == "draft")
                )
                if invoice is not None:
                    issue_invoice(session, invoice, tenant=session.info["tenant"])
                    snapshots[invoice.id] = (
                        _row(invoice),
                        invoice_csv(session, invoice),
                        invoice_pdf(session, invoice),
                    )
                    model.issued.add(month)

    return payments, snapshots


def _check(
    ledger: Ledger,
    model: Model,
    payments: list[dict[str, Any]],
    snapshots: dict[int, tuple[Any, bytes, bytes]],
) -> None:
    lines = ledger.lines()
    # Every line is the model's line.
    assert [
        (
            ln["payment_id"],
            ln["kind"],
            ln["period"],
            ln["agency_id"],
            ln["base_amount"],
            ln["commission"],
            ln["agency_share"],
        )
        for ln in lines
    ] == [
        (m.payment, m.kind, m.period, m.agency, m.base, m.commission, m.share) for m in model.lines
    ]
    # 1. The lines add up to the individually rounded commissions of the money not reversed.
    reversed_total: dict[int, Decimal] = defaultdict(Decimal)
    for p in payments:
        if p["kind"] == "reversal" and any(ln["payment_id"] == p["id"] for ln in lines):
            reversed_total[p["reverses"]] += p["amount"]
    expected = D(0)
    for line in lines:
        if line["kind"] == "commission":
            version = next(
                m.__dict__["version"] for m in model.lines if m.payment == line["payment_id"]
            )
            left = line["base_amount"] - reversed_total[line["payment_id"]]
            expected += round_money(
                line["commission"] * left / line["base_amount"], "CNY", version["rounding"]
            )
    assert sum(line["commission"] for line in lines) == expected
    # 2. A fully reversed payment nets to zero.
    by_payment = {line["payment_id"]: line for line in lines}
    for pid, gone in reversed_total.items():
        if gone == by_payment[pid]["base_amount"]:
            group = [
                by_payment[pid],
                *(ln for ln in lines if ln["original_line_id"] == by_payment[pid]["id"]),
            ]
            assert sum(ln["commission"] for ln in group) == 0
            assert sum(ln["agency_share"] for ln in group) == 0
    # 3. Nothing is billed twice.
    assert len({line["payment_id"] for line in lines}) == len(lines)
    invoices = ledger.invoices()
    live = [i for i in invoices if i["status"] != "void"]
    assert len({(i["period"], i["currency"]) for i in live}) == len(live)
    assert [i["number"] for i in invoices] == list(range(1, len(invoices) + 1))
    for invoice in live:
        own = [
            ln
            for ln in lines
            if ln["period"] == invoice["period"] and ln["id"] <= invoice["last_line_id"]
        ]
        assert invoice["line_count"] == len(own)
        assert invoice["commission_total"] == sum(ln["commission"] for ln in own)
        if invoice["status"] == "draft":
            assert len(own) == sum(1 for ln in lines if ln["period"] == invoice["period"])
    # 4. An issued invoice never changes.
    with tenant_scope(ledger.tenant.slug, db=ledger.db) as session:
        for invoice_id, (row, csv_bytes, pdf_bytes) in snapshots.items():
            invoice = session.get(Invoice, invoice_id)
            assert invoice is not None
            assert _row(invoice) == row
            assert invoice_csv(session, invoice) == csv_bytes
            assert invoice_pdf(session, invoice) == pdf_bytes
    # 5. Shares and net add up to the commission on every line.
    for line in lines:
        assert line["agency_share"] + line["platform_net"] == line["commission"]


def _row(invoice: Invoice) -> dict[str, Any]:
    return {column.name: getattr(invoice, column.key) for column in Invoice.__table__.columns}
