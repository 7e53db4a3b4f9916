"""The commission ledger and the month close, by example: tiers, reversals, grace, minimum
fee, currencies, rounding, the cap, agency payouts, and what the database refuses."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from recova.billing.invoices import BillingError, issue_invoice, void_invoice
from recova.billing.models import Invoice
from recova.billing.money import round_money
from recova.tenants.scope import tenant_scope
from tests.billing_support import Ledger, day
from tests.transactions import private_copy, shared

D = Decimal
APRIL = dt.date(2026, 4, 1)


@pytest.fixture(scope="module")
def shared_ledger(app) -> Ledger:  # type: ignore[no-untyped-def]
    """The module's ledger on this worker, only ever changed inside rolled-back tests."""
    ledger = Ledger(app)
    return shared(ledger, ledger.tenant.slug)


@pytest.fixture
def ledger(app, shared_ledger, rolled_back) -> Ledger:  # type: ignore[no-untyped-def]
    return Ledger(app) if rolled_back is None else private_copy(shared_ledger, app)


def issue(ledger: Ledger, number: int) -> None:
    with tenant_scope(ledger.tenant.slug, db=ledger.db) as session:
        invoice = session.scalar(select(Invoice).where(Invoice.number == number))
        assert invoice is not None
        issue_invoice(session, invoice, tenant=session.info["tenant"])


def test_a_placed_payment_is_charged_by_its_bucket_and_shared_with_the_agency(
    ledger: Ledger,
) -> None:
    ledger.version(rates={"M1": "8", "M2": "12", "M3": "18", "*": "25"})
    agency = ledger.agency(0)
    ledger.set_payout(agency, share="40")
    case = ledger.case_ids[0]
    placement = ledger.place(case, agency, day(1), bucket="M2")
    payment = ledger.pay(case, "1000.00", day(10))

    result = ledger.close()

    line = ledger.line_of(payment)
    assert line["kind"] == "commission"
    assert line["placement_id"] == placement
    assert line["agency_id"] == agency
    assert line["bucket"] == "M2"
    assert line["rate"] == D("12")
    assert line["commission"] == D("120.00")
    assert line["agency_share"] == D("48.00")
    assert line["platform_net"] == D("72.00")
    (invoice,) = result.invoices
    assert invoice["number"] == 1
    assert invoice["status"] == "draft"
    assert invoice["commission_total"] == D("120.00")
    assert invoice["total"] == D("120.00")


def test_a_payment_exactly_on_a_tier_boundary_is_charged_wholly_in_the_lower_tier(
    ledger: Ledger,
) -> None:
    ledger.version(
        rates={"*": "10"},
        tiers=[
            {"from": "0", "to": "1000", "factor": "1"},
            {"from": "1000", "to": "5000", "factor": "0.5"},
            {"from": "5000", "to": None, "factor": "0.25"},
        ],
    )
    case = ledger.case_ids[0]
    ledger.place(case, ledger.agency(0), day(1))
    first = ledger.pay(case, "600.00", day(2))
    on_boundary = ledger.pay(case, "400.00", day(3))  # volume reaches exactly 1,000
    above = ledger.pay(case, "100.00", day(4))  # wholly in the second tier
    spanning = ledger.pay(case, "4000.00", day(5))  # 3,900 at 0.5, then 100 at 0.25

    ledger.close()

    assert ledger.line_of(first)["commission"] == D("60.00")
    assert ledger.line_of(on_boundary)["commission"] == D("40.00")
    assert ledger.line_of(on_boundary)["volume_before"] == D("600")
    assert ledger.line_of(above)["commission"] == D("5.00")
    assert ledger.line_of(spanning)["commission"] == D("195.00") + D("2.50")


def test_a_reversal_after_the_invoice_was_issued_lands_on_the_next_invoice_as_a_credit(
    ledger: Ledger,
) -> None:
    ledger.version(rates={"*": "10"})
    case = ledger.case_ids[0]
    ledger.place(case, ledger.agency(0), day(1))
    payment = ledger.pay(case, "500.00", day(5))
    ledger.close()
    issue(ledger, 1)
    issued_before = ledger.invoices()[0]

    # Reversed in March, but reported after March's invoice was issued.
    ledger.reverse(payment, "500.00", day(20))
    ledger.close(APRIL)

    march, april = ledger.invoices()
    assert march == issued_before  # the issued invoice never changes
    claw = next(line for line in ledger.lines() if line["kind"] == "clawback")
    assert claw["period"] == APRIL
    assert claw["commission"] == D("-50.00")
    assert april["commission_total"] == D("-50.00")
    assert april["credits"] == D("-50.00")
    assert april["number"] == 2


def test_a_payment_in_the_grace_period_after_a_recall_credits_the_old_agency(
    ledger: Ledger,
) -> None:
    ledger.version(rates={"*": "10"})
    old, new = ledger.agency(0), ledger.agency(1)
    case = ledger.case_ids[0]
    ledger.place(case, old, day(1), recalled_on=day(10), grace_days=5)
    ledger.place(case, new, day(11))
    in_grace = ledger.pay(case, "100.00", day(14))
    after_grace = ledger.pay(case, "100.00", day(15))

    ledger.close()

    assert ledger.line_of(in_grace)["agency_id"] == old
    assert ledger.line_of(after_grace)["agency_id"] == new


def test_the_minimum_fee_tops_up_a_quiet_month(ledger: Ledger) -> None:
    ledger.version(rates={"*": "10"}, minimum_fee="500.00", vat_rate="6")
    case = ledger.case_ids[0]
    ledger.place(case, ledger.agency(0), day(1))
    ledger.pay(case, "1234.56", day(3))

    (invoice,) = ledger.close().invoices

    assert invoice["commission_total"] == D("123.46")
    assert invoice["top_up"] == D("376.54")
    assert invoice["vat"] == D("30.00")
    assert invoice["total"] == D("530.00")


def test_a_tenant_with_two_currencies_gets_one_invoice_per_currency(ledger: Ledger) -> None:
    ledger.version(rates={"*": "10"})
    ledger.version(currency="USD", rates={"*": "20"})
    cny_case, usd_case = ledger.case_ids[:2]
    ledger.sql(
        "UPDATE {s}.accounts SET currency = 'USD' WHERE id = :account",
        account=ledger.accounts[usd_case],
    )
    ledger.place(cny_case, ledger.agency(0), day(1))
    ledger.place(usd_case, ledger.agency(1), day(1))
    ledger.pay(cny_case, "100.00", day(2))
    ledger.pay(usd_case, "100.00", day(2), currency="USD")

    invoices = ledger.close().invoices

    assert [(i["currency"], i["commission_total"], i["number"]) for i in invoices] == [
        ("CNY", D("10.00"), 1),
        ("USD", D("20.00"), 2),
    ]


@pytest.mark.parametrize(("mode", "expected"), [("half_even", D("0.12")), ("half_up", D("0.13"))])
def test_half_even_and_half_up_differ_on_half_a_cent(
    ledger: Ledger, mode: str, expected: Decimal
) -> None:
    ledger.version(rates={"*": "10"}, rounding=mode)
    case = ledger.case_ids[0]
    ledger.place(case, ledger.agency(0), day(1))
    payment = ledger.pay(case, "1.25", day(2))  # 10% is 0.125

    ledger.close()

    assert ledger.line_of(payment)["commission_exact"] == D("0.125")
    assert ledger.line_of(payment)["commission"] == expected
    assert round_money(D("0.125"), "CNY", mode) == expected


def test_partial_reversals_claw_back_proportionally_and_a_full_one_nets_to_zero(
    ledger: Ledger,
) -> None:
    ledger.version(rates={"*": "10"})
    ledger.set_payout(ledger.agency(0), share="50")
    case = ledger.case_ids[0]
    ledger.place(case, ledger.agency(0), day(1))
    payment = ledger.pay(case, "10.10", day(2))  # commission 1.01, share 0.50 (half-even)
    ledger.reverse(payment, "5.05", day(3))
    ledger.close()
    ledger.reverse(payment, "5.05", day(4))
    ledger.close()

    lines = [
        line
        for line in ledger.lines()
        if line["payment_id"] == payment or line["kind"] == "clawback"
    ]
    assert [line["commission"] for line in lines] == [D("1.01"), D("-0.51"), D("-0.50")]
    assert sum(line["commission"] for line in lines) == 0
    assert sum(line["agency_share"] for line in lines) == 0
    for line in lines:
        assert line["agency_share"] + line["platform_net"] == line["commission"]


def test_the_tenants_own_recoveries_carry_commission_only_if_the_contract_says_so(
    ledger: Ledger,
) -> None:
    ledger.version(rates={"*": "10"})
    ledger.version(effective_from=dt.date(2026, 3, 15), rates={"*": "10"}, unplaced_commission=True)
    case = ledger.case_ids[0]
    before = ledger.pay(case, "100.00", day(10))
    after = ledger.pay(case, "100.00", day(20))

    ledger.close()

    assert ledger.line_of(before)["commission"] == 0
    assert ledger.line_of(before)["agency_id"] is None
    assert ledger.line_of(after)["commission"] == D("10.00")


def test_the_cap_per_case_limits_what_a_case_is_charged(ledger: Ledger) -> None:
    ledger.version(rates={"*": "10"}, case_cap="25.00")
    case = ledger.case_ids[0]
    ledger.place(case, ledger.agency(0), day(1))
    payments = [ledger.pay(case, "100.00", day(n)) for n in (2, 3, 4)]

    ledger.close()

    assert [ledger.line_of(p)["commission"] for p in payments] == [
        D("10.00"),
        D("10.00"),
        D("5.00"),
    ]


def test_an_agency_on_its_own_rates_is_paid_by_them(ledger: Ledger) -> None:
    ledger.version(rates={"*": "20"})
    agency = ledger.agency(0)
    ledger.set_payout(agency, rates={"M2": "7", "*": "5"})
    case, other = ledger.case_ids[:2]
    ledger.place(case, agency, day(1), bucket="M2")
    ledger.place(other, agency, day(1), bucket="M4")
    first = ledger.pay(case, "100.00", day(2))
    second = ledger.pay(other, "100.00", day(2))

    ledger.close()

    assert ledger.line_of(first)["agency_share"] == D("7.00")
    assert ledger.line_of(second)["agency_share"] == D("5.00")
    assert ledger.line_of(first)["platform_net"] == D("13.00")


def test_a_close_run_again_changes_nothing(ledger: Ledger) -> None:
    ledger.version(rates={"*": "10"})
    case = ledger.case_ids[0]
    ledger.place(case, ledger.agency(0), day(1))
    ledger.pay(case, "100.00", day(2))
    ledger.close()
    lines, invoices = ledger.lines(), ledger.invoices()

    ledger.close()

    assert ledger.lines() == lines
    assert ledger.invoices() == invoices


@pytest.mark.real_commits  # each refused statement runs on a connection of its own
def test_the_database_refuses_to_edit_lines_or_issued_invoices(ledger: Ledger) -> None:
    ledger.version(rates={"*": "10"})
    case = ledger.case_ids[0]
    ledger.place(case, ledger.agency(0), day(1))
    ledger.pay(case, "100.00", day(2))
    ledger.close()
    issue(ledger, 1)
    s = f'"{ledger.tenant.schema}"'
    for statement in (
        f"UPDATE {s}.commission_lines SET commission = 0",
        f"DELETE FROM {s}.commission_lines",
        f"TRUNCATE {s}.commission_lines CASCADE",
        f"UPDATE {s}.invoices SET total = 0",
        f"UPDATE {s}.invoices SET status = 'draft'",
        f"DELETE FROM {s}.invoices",
        f"UPDATE {s}.agency_statements SET agency_total = 0",
        f"""INSERT INTO {s}.commission_lines SELECT id + 1000, kind, payment_id + 0,
                original_line_id, period, event_on, currency, case_id, placement_id, agency_id,
                agency_contract_id, bucket, contract_version_id, paid_to, base_amount, rate,
                volume_before, commission_exact, commission, agency_share, platform_net,
                created_at FROM {s}.commission_lines""",
    ):
        with pytest.raises(DBAPIError), ledger.db.engine.begin() as connection:
            connection.execute(text(statement))


def test_an_issued_invoice_may_only_be_paid_or_voided(ledger: Ledger) -> None:
    ledger.version(rates={"*": "10"})
    case = ledger.case_ids[0]
    ledger.place(case, ledger.agency(0), day(1))
    ledger.pay(case, "100.00", day(2))
    ledger.close()
    issue(ledger, 1)
    with tenant_scope(ledger.tenant.slug, db=ledger.db) as session:
        invoice = session.get(Invoice, ledger.invoices()[0]["id"])
        assert invoice is not None
        with pytest.raises(BillingError):
            issue_invoice(session, invoice, tenant=session.info["tenant"])
        void_invoice(session, invoice, tenant=session.info["tenant"], reason="wrong rates")
    # The month reopens: a new close makes a new draft with the next number.
    (again,) = ledger.close().invoices
    assert again["number"] == 2
    assert again["commission_total"] == D("10.00")
