"""Tenant schema: rewrite the stored masked copies of e-mail addresses and postal addresses

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 10:00:00

Until this revision ``mask(value, keep_start=k, keep_end=0)`` kept the whole value at the
end (``value[-0:]`` is the whole string), so every stored masked copy of an e-mail's local
part (``k = 1``) and of a postal address (``k = 6``) carried the plaintext after the stars:

    e-mail   (local[:1] + "*" * min(len(local) - 1, 8) + local + "@" + domain)[:64]
    address  (value[:6] + "*" * min(len(value) - 6, 8) + value)[:64]

Phones and national ids were masked with ``keep_end=4`` and are right.

The correct copy is recomputed from the bad copy itself, not from the ciphertext. What the
mask keeps (the first ``k`` characters, the e-mail's domain) and how many stars it draws
(``min(hidden, 8)``, which follows from the length of the bad copy) are all in the bad
copy, so no data key is needed: the migration runs the same in ``recova migrate``'s worker
processes, in tenant provisioning and from the Alembic CLI, none of which is handed the
key. A copy is rewritten only when it has exactly the shape the bug wrote (the full value
repeated after the kept start and the stars); copies already correct (short values, which
were all stars, copies written by the fixed code) and erased contacts are left alone, so
a re-run changes nothing.

One loss is inherent: a bad e-mail copy longer than the column (64 characters: an address
of more than about 54 characters) was cut inside its domain or its local part; its new
copy keeps the part of the domain that survived the cut (nothing, if the cut fell in the
local part). Nothing of the local part beyond its first character remains in any copy.

Downgrade leaves the copies as they are: restoring the plaintext copies is not wanted.
"""

from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

from recova.tenants.migrate import current_tenant_schema

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMN_LENGTH = 64  # contacts.value_masked is String(64); the old code cut copies to it
MAX_STARS = 8
EMAIL_KEEP = 1
ADDRESS_KEEP = 6
ERASED = "[erased]"  # what retention writes (recova.platform.privacy.retention.ERASED)
BATCH = 5000


def _stars_for_bad_copy(length: int, keep: int) -> int | None:
    """The star count in a bad copy of ``length`` characters, or None if no value gives it.

    A bad copy of a value of ``n > keep`` characters is ``keep + s + n`` long with
    ``s = min(n - keep, 8)``: ``2n`` while ``n - keep < 8``, ``keep + 8 + n`` after. A copy
    cut at the column length had ``s = 8`` (its value was longer than 50 characters).
    """
    if length >= COLUMN_LENGTH or length >= 2 * (keep + MAX_STARS):
        return MAX_STARS
    if length % 2 or length // 2 <= keep:
        return None
    return length // 2 - keep


def repaired_text(masked: str, keep: int) -> str | None:
    """The correct mask of the value a bad ``mask(value, keep_start=keep, keep_end=0)`` copy
    holds, or None when ``masked`` is not such a bad copy (already right, or not ours)."""
    if set(masked[keep:]) <= {"*"}:
        return None  # nothing after the kept start but stars: correct already
    stars = _stars_for_bad_copy(len(masked), keep)
    if stars is None:
        return None
    start, value = masked[:keep], masked[keep + stars :]
    if masked[keep : keep + stars] != "*" * stars or not value.startswith(start[: len(value)]):
        return None
    return start + "*" * stars


def repaired_email(masked: str) -> str | None:
    """The correct copy for a bad e-mail copy (local part masked with ``keep_end=0``)."""
    local, at, domain = masked.partition("@")
    if not at and len(masked) < COLUMN_LENGTH:
        return None  # every untruncated copy has its "@"
    fixed = repaired_text(local, EMAIL_KEEP) if at else _cut_local(local)
    if fixed is None:
        return None
    return (fixed + "@" + domain)[:COLUMN_LENGTH]


def _cut_local(masked: str) -> str | None:
    """A bad e-mail copy cut inside its local part: the domain is gone, the start remains."""
    start, stars, value = masked[:1], masked[1 : 1 + MAX_STARS], masked[1 + MAX_STARS :]
    if stars != "*" * MAX_STARS or not value.startswith(start):
        return None
    return start + stars


def _candidates(connection: sa.Connection, schema: str) -> Iterator[list[sa.Row[Any]]]:
    # Erased contacts (empty ciphertext, the ERASED marker) hold nothing to repair.
    query = sa.text(
        f'SELECT id, kind::text AS kind, value_masked FROM "{schema}".contacts'  # noqa: S608 - checked schema name
        " WHERE id > :after AND kind::text IN ('email', 'address')"
        " AND value_masked <> :erased AND octet_length(value_ciphertext) > 0"
        " ORDER BY id LIMIT :batch"
    )
    after = 0
    while rows := list(
        connection.execute(query, {"after": after, "erased": ERASED, "batch": BATCH})
    ):
        yield rows
        after = rows[-1].id


def upgrade() -> None:
    # Raw SQL does not go through the schema translate map: name the real schema.
    schema = current_tenant_schema()
    connection = op.get_bind()
    update = sa.text(
        f'UPDATE "{schema}".contacts SET value_masked = :new'  # noqa: S608 - checked schema name
        " WHERE id = :id AND value_masked = :old"
    )
    for rows in _candidates(connection, schema):
        changes = []
        for row in rows:
            if row.kind == "email":
                new = repaired_email(row.value_masked)
            else:
                new = repaired_text(row.value_masked, ADDRESS_KEEP)
            if new is not None and new != row.value_masked:
                changes.append({"id": row.id, "old": row.value_masked, "new": new})
        if changes:
            connection.execute(update, changes)


def downgrade() -> None:
    # The old copies held the plaintext; going back leaves the corrected copies in place.
    pass
