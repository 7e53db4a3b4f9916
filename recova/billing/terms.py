"""The tenant's contract with the platform: validated, effective-dated versions per currency.

A version holds the commission rates by bucket at placement, optional marginal monthly
volume tiers, a minimum monthly fee, a cap per case, a VAT rate, the rounding mode and
whether the tenant's own recoveries (the case with no agency) carry commission.

Tiers are half-open intervals of the month's commissionable volume, ``[from, to)``: the
first starts at 0, each starts where the previous one ends, and only the last is open
(``to`` null), so every amount falls in exactly one tier. A slice of money in a tier is
charged at its bucket rate times the tier's ``factor``.

A version can start only after the last date already on the ledger in its currency, so
a payment is always charged under the version in force on its date, and no billed line
is ever re-priced.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation
from typing import Any

from babel.numbers import list_currencies
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from recova.billing.models import CommissionLine, ContractVersion, Invoice
from recova.billing.money import DEFAULT_ROUNDING, ROUNDING_MODES, minor_units
from recova.platform.allocation.segmentation import CURRENT_BUCKET, tenant_buckets
from recova.platform.kernel.errors import DomainError

#: Advisory-lock namespace for a tenant's billing (second key: the tenant id).
BILLING_LOCK = 0x4249_4C4C  # "BILL"
ANY_BUCKET = "*"


class TermsError(DomainError, ValueError):
    """Contract terms that cannot be used; ``errors`` names each field at fault (422)."""

    def __init__(self, errors: dict[str, Any]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors

    @property
    def error_message(self) -> str:
        return "invalid contract terms"

    @property
    def error_details(self) -> dict[str, Any]:
        return {"json": self.errors}


def lock_tenant_billing(session: Session, tenant_id: int) -> None:
    """Serialise this transaction with the tenant's month closes and invoice changes."""
    session.execute(
        text("SELECT pg_advisory_xact_lock(:ns, :tenant)"),
        {"ns": BILLING_LOCK, "tenant": tenant_id},
    )


def _decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def _plain(number: Decimal) -> str:
    """A number as plain digits without trailing zeros: ``10``, ``12.5``, never ``1E+1``."""
    return f"{number.normalize():f}" if number else "0"


def validate_rates(
    rates: Any, *, buckets: list[str] | None = None, field: str = "rates"
) -> dict[str, str]:
    """Percent by bucket name (``"*"``: any other bucket), each 0-100; with ``buckets``,
    every one of them must be rated (or ``"*"`` given). Returns them as plain strings."""
    if not isinstance(rates, dict) or not rates:
        raise TermsError({field: "a rate in percent for each bucket, e.g. {'M1': '8'}"})
    clean: dict[str, str] = {}
    for bucket, value in rates.items():
        number = _decimal(value)
        if not isinstance(bucket, str) or not bucket or len(bucket) > 16:
            raise TermsError({field: f"bucket names are 1-16 characters, not {bucket!r}"})
        if number is None or not Decimal(0) <= number <= Decimal(100):
            raise TermsError({field: f"{bucket}: a percentage from 0 to 100, not {value!r}"})
        clean[bucket] = _plain(number)
    if buckets is not None and ANY_BUCKET not in clean:
        missing = [name for name in buckets if name not in clean]
        if missing:
            raise TermsError(
                {field: f"no rate for bucket(s) {', '.join(missing)}; rate them or give '*'"}
            )
    return clean


def validate_tiers(tiers: Any) -> list[dict[str, str | None]] | None:
    """Marginal tiers: gap-free, non-overlapping, ``[from, to)``, the last one open."""
    if tiers is None:
        return None
    if not isinstance(tiers, list) or not tiers:
        raise TermsError({"tiers": "a list of {from, to, factor}, or null for no tiers"})
    clean: list[dict[str, str | None]] = []
    expected = Decimal(0)
    for index, tier in enumerate(tiers):
        if not isinstance(tier, dict) or set(tier) - {"from", "to", "factor"}:
            raise TermsError({"tiers": f"tier {index}: only from, to and factor"})
        low, high, factor = (
            _decimal(tier.get("from")),
            _decimal(tier.get("to")),
            _decimal(tier.get("factor")),
        )
        if low is None:
            raise TermsError({"tiers": f"tier {index}: 'from' must be an amount"})
        if low != expected:
            problem = "a gap" if low > expected else "an overlap"
            raise TermsError(
                {
                    "tiers": f"tier {index} starts at {low}, leaving {problem}: it must start at"
                    f" {expected} (tiers are [from, to) and follow one another)"
                }
            )
        last = index == len(tiers) - 1
        if tier.get("to") is None:
            if not last:
                raise TermsError({"tiers": f"tier {index}: only the last tier may be open"})
        elif high is None or high <= low:
            raise TermsError({"tiers": f"tier {index}: 'to' must be an amount above 'from'"})
        elif last:
            raise TermsError(
                {
                    "tiers": f"tier {index}: the last tier must be open ('to': null), so every"
                    " amount has a tier"
                }
            )
        if factor is None or factor < 0 or factor > 10:
            raise TermsError({"tiers": f"tier {index}: 'factor' must be from 0 to 10"})
        clean.append(
            {
                "from": _plain(low),
                "to": None if high is None else _plain(high),
                "factor": _plain(factor),
            }
        )
        expected = high if high is not None else expected
    return clean


def validate_terms(data: dict[str, Any], *, buckets: list[str] | None = None) -> dict[str, Any]:
    """Check every field of a contract version; returns them normalised."""
    currency = str(data.get("currency", "")).upper()
    errors: dict[str, Any] = {}
    if currency not in list_currencies():
        errors["currency"] = "an ISO 4217 code"
    clean: dict[str, Any] = {"currency": currency, "effective_from": data.get("effective_from")}
    for name, check in (
        ("rates", lambda: validate_rates(data.get("rates"), buckets=buckets)),
        ("tiers", lambda: validate_tiers(data.get("tiers"))),
    ):
        try:
            clean[name] = check()
        except TermsError as exc:
            errors.update(exc.errors)
    places = 2 if "currency" in errors else minor_units(currency)
    for name in ("minimum_fee", "case_cap"):
        raw = data.get(name)
        amount = _decimal(raw)
        if raw is not None and (amount is None or amount < 0):
            errors[name] = "an amount of 0 or more, or null"
        elif amount is not None and amount != amount.quantize(Decimal(1).scaleb(-places)):
            errors[name] = f"at most {places} decimal places in {currency}"
        clean[name] = amount
    vat = _decimal(data.get("vat_rate"))
    if data.get("vat_rate") is not None and (vat is None or not 0 <= vat <= 100):
        errors["vat_rate"] = "a percentage from 0 to 100, or null"
    clean["vat_rate"] = vat
    rounding = data.get("rounding") or DEFAULT_ROUNDING
    if rounding not in ROUNDING_MODES:
        errors["rounding"] = f"one of {', '.join(ROUNDING_MODES)}"
    clean["rounding"] = rounding
    clean["unplaced_commission"] = bool(data.get("unplaced_commission", False))
    if errors:
        raise TermsError(errors)
    return clean


def bucket_names(session: Session) -> list[str]:
    """Every bucket a case of the tenant can be in (its table and the current bucket)."""
    return [CURRENT_BUCKET, *(bucket["name"] for bucket in tenant_buckets(session))]


def create_contract_version(
    session: Session,
    *,
    tenant_id: int,
    data: dict[str, Any],
    created_by: int | None = None,
) -> ContractVersion:
    """Validate and add a version; it may not start on or before a date already billed."""
    clean = validate_terms(data, buckets=bucket_names(session))
    effective_from: dt.date = clean["effective_from"]
    lock_tenant_billing(session, tenant_id)
    currency = clean["currency"]
    last_lined = session.scalar(
        select(func.max(CommissionLine.event_on)).where(CommissionLine.currency == currency)
    )
    if last_lined is not None and effective_from <= last_lined:
        raise TermsError(
            {
                "effective_from": f"{currency} payments up to {last_lined} are already on the"
                f" ledger; a new version must start after that date"
            }
        )
    billed = session.scalar(
        select(func.max(Invoice.period)).where(
            Invoice.currency == currency, Invoice.status.in_(("issued", "paid"))
        )
    )
    if billed is not None and effective_from < next_month(billed):
        raise TermsError(
            {
                "effective_from": f"{currency} is invoiced up to {billed:%Y-%m}; a new version"
                " must start after that month"
            }
        )
    if session.scalar(
        select(ContractVersion.id).where(
            ContractVersion.currency == currency, ContractVersion.effective_from == effective_from
        )
    ):
        raise TermsError({"effective_from": f"a {currency} version already starts on that date"})
    number = session.scalar(
        select(func.coalesce(func.max(ContractVersion.version), 0)).where(
            ContractVersion.currency == currency
        )
    )
    version = ContractVersion(version=int(number or 0) + 1, created_by=created_by, **clean)
    session.add(version)
    session.flush()  # the caller answers with the new id
    return version


def version_in_force(session: Session, currency: str, day: dt.date) -> ContractVersion | None:
    """The version of ``currency`` in force on ``day``."""
    return session.scalar(
        select(ContractVersion)
        .where(ContractVersion.currency == currency, ContractVersion.effective_from <= day)
        .order_by(ContractVersion.effective_from.desc())
        .limit(1)
    )


def next_month(month: dt.date) -> dt.date:
    """The first day of the month after ``month``."""
    return (month.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
