"""What every step of an allocation run works with: a cursor, the tenant and the date.

The steps are set-based SQL sent through a raw psycopg cursor, as the ingestion pipeline
does: the statements name the tenant's schema (validated at provisioning, always
double-quoted) and bind every value as a parameter. Scratch tables are ``TEMP ... ON
COMMIT DROP``, so a step leaves nothing behind whether it commits or rolls back.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from recova.platform.kernel.db import quote_identifier

#: Case statuses that are out of collection: never placed, and recalled if placed.
CLOSED_STATUSES = ("closed", "paid", "settled")
#: Advisory-lock namespace (first key) for allocation runs; the second key is the tenant.
ALLOCATE_LOCK = 0x414C_4C43  # "ALLC"
#: Advisory-lock namespace for assigning an agency's collectors (second key: the agency).
ASSIGN_LOCK = 0x4153_4E47  # "ASNG"


@dataclass
class RunContext:
    """One tenant, one date, one cursor: the arguments of every step."""

    cur: Any  # a psycopg cursor inside the step's transaction
    schema: str  # the tenant's schema name, unquoted (validated at provisioning)
    tenant_id: int
    timezone: str
    currency: str
    as_of: dt.date
    run_id: int | None = None
    dry_run: bool = False
    #: A strategy version to place by instead of the active one (dry runs of a draft).
    strategy_version_id: int | None = None
    #: Extra facts a step reports beside its counts (performance shares, for instance).
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def s(self) -> str:
        """The tenant's schema, quoted for SQL."""
        return quote_identifier(self.schema)

    def params(self, **extra: Any) -> dict[str, Any]:
        """The parameters every statement may use, plus ``extra``."""
        return {
            "as_of": self.as_of,
            "tenant_id": self.tenant_id,
            "tz": self.timezone,
            "run_id": self.run_id,
            **extra,
        }

    def execute(self, sql: str, **extra: Any) -> Any:
        """Run one statement with the common parameters; returns the cursor."""
        self.cur.execute(sql, self.params(**extra))
        return self.cur

    def rowcount(self, sql: str, **extra: Any) -> int:
        """Run one statement and return how many rows it changed."""
        return int(self.execute(sql, **extra).rowcount or 0)


def open_case_condition(case: str = "c", account: str = "a") -> str:
    """SQL: the case is in collection (not closed, paid or settled; account not withdrawn)."""
    statuses = ", ".join(f"'{status}'" for status in CLOSED_STATUSES)
    return f"{case}.status NOT IN ({statuses}) AND {account}.withdrawn_at IS NULL"


def balance_expression(account: str = "a") -> str:
    """SQL: the account's outstanding total, as the API shows it."""
    return (
        f"({account}.outstanding_principal + {account}.outstanding_interest"
        f" + {account}.outstanding_fees + {account}.outstanding_penalties)"
    )


def local_date(timestamp: str) -> str:
    """SQL: a timestamptz as a date on the tenant's calendar (``%(tz)s``)."""
    return f"({timestamp} AT TIME ZONE %(tz)s::text)::date"
