"""Money of case work: amounts in the currency's minor unit, and what the debtor paid.

Rounding: amounts a person enters are quantised to the currency's minor unit half-up
(``money``); discounts are compared exactly, never through a rounded percentage.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

from recova.platform.payments.models import Payment, PaymentKind

#: Currencies whose minor unit is not the cent.
_MINOR_UNIT_PLACES = {"JPY": 0, "KRW": 0, "VND": 0, "IDR": 0, "KWD": 3, "BHD": 3}


def money(amount: Decimal, currency: str) -> Decimal:
    """``amount`` quantised to the currency's minor unit, half-up."""
    places = _MINOR_UNIT_PLACES.get(currency.upper(), 2)
    return amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def start_of_day(day: dt.date, timezone: str) -> dt.datetime:
    """The first instant of ``day`` on a tenant's calendar."""
    return dt.datetime.combine(day, dt.time(), tzinfo=zoneinfo.ZoneInfo(timezone))


def day_started(moment: dt.datetime, timezone: str) -> dt.datetime:
    """The start of ``moment``'s day on a tenant's calendar.

    Promises, plans and offers count payments from the start of the day they were made:
    tenants often send payment dates without a time (read as local midnight), and a
    debtor who promised this morning and paid this afternoon has kept the promise.
    """
    zone = zoneinfo.ZoneInfo(timezone)
    return start_of_day(moment.astimezone(zone).date(), timezone)


def paid_between(
    session: Session,
    *,
    account_id: int,
    currency: str,
    since: dt.datetime,
    until: dt.datetime | None = None,
) -> Decimal:
    """What the debtor paid on the account in ``[since, until)``, net of reversals.

    A reversal takes back from the payment it reverses, whenever it arrives, so a payment
    later reversed in full counts nothing. Payments in another currency do not count.
    """
    reversal = aliased(Payment)
    reversed_amount = (
        select(func.coalesce(func.sum(reversal.amount), 0))
        .where(reversal.reverses_id == Payment.id)
        .scalar_subquery()
    )
    conditions = [
        Payment.account_id == account_id,
        Payment.kind == PaymentKind.PAYMENT,
        Payment.currency == currency,
        Payment.paid_at >= since,
    ]
    if until is not None:
        conditions.append(Payment.paid_at < until)
    total = session.scalar(
        select(func.coalesce(func.sum(Payment.amount - reversed_amount), 0)).where(*conditions)
    )
    return Decimal(total or 0)
