"""The ingestion pipeline: read, validate, normalise, encrypt and upsert a run's rows.

How a run moves (``execute_run``):

1. The connector yields raw records; they are cut into chunks of ``CHUNK_ROWS``.
2. For each chunk, in the calling thread: each row's key (account or payment external id)
   and a digest of its raw mapped values are taken, and the stored digests of those keys
   are looked up in one query. A row whose digest is unchanged is counted and skipped
   without being parsed, normalised or encrypted; that is what makes re-sending a file
   cheap. Every other row is validated, normalised and encrypted (``fields``).
3. A writer thread applies the chunk in one transaction: ``COPY`` into temporary staging
   tables, then set-based ``INSERT … ON CONFLICT`` statements, the chunk's row errors, the
   run's counters and its checkpoint. Nothing is ever inserted or committed row by row.
   Each statement meets the stored tables through ``JOIN LATERAL (… LIMIT 1)`` on their
   unique keys: one index probe per staged row. A plain join lets the planner, whose
   statistics lag a bulk load, hash the whole growing table for every chunk, which makes
   a run quadratic in the table's size (measured: the accounts statement of chunk 70 of
   a fresh load read all 308,000 debtors to match 5,000 rows).
   Parsing the next chunk overlaps with PostgreSQL applying this one (psycopg releases
   the GIL while it waits), so the two cores are both busy.
4. After the last chunk, one transaction finishes the run: a snapshot recalls the
   accounts it did not mention, the run's scratch rows go, and the status becomes
   ``completed``. A run therefore never shows as complete unless all of it is applied.

Snapshot guard. A snapshot recalls only when its source was read to its end and it
accepted at least one row (a file of undecodable rows mentions nothing, and must not
empty the book). When the tenant's recall guard is on and the recall would take more
than its share of the open book (accounts not already recalled), the run stops before
recalling, as ``held``: its rows are loaded, ``recall_held`` says how many accounts it
would recall, and ``ingestion_seen`` keeps what it mentioned until the tenant confirms
(the confirmed run then only finishes, in one transaction) or sends a new snapshot.

Row errors and warnings. A row is rejected with its row, column and reason; a row that
loads without one of its contact points (a phone that cannot be dialled, say) keeps a
*warning*, counted apart. Whatever the bytes of a bad row, what is stored of it is
text PostgreSQL accepts: NUL characters and lone surrogates are escaped, values cut.

Crash safety. A chunk's data, errors, counters and checkpoint commit together, so a
worker killed at any point leaves the run at its last committed chunk; running the job
again continues from the checkpoint and ends in the same state as an uninterrupted run.
Chunk transactions of one tenant take a transaction-level advisory lock, so two runs of
the same file at the same moment interleave chunk by chunk and cannot insert a row twice
(the unique external ids would refuse it anyway). Every key a run reads is recorded in
``ingestion_seen`` inside the chunk's transaction: that catches a duplicate external id
anywhere in the file, even across a crash, and tells a snapshot what it mentioned.

All-or-nothing runs apply every chunk inside one transaction and keep their row errors in
a spool file; if any row was rejected the transaction is rolled back and only the errors
are stored, so the tenant sees exactly why nothing was loaded.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import queue
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from redis import Redis

from recova.connectors.base import Record, Source, SourceError
from recova.connectors.fields import (
    PaymentReader,
    PortfolioReader,
    Rejected,
    RowReader,
    TenantDefaults,
)
from recova.connectors.models import FeedKind, RunMode, RunStatus, Severity
from recova.platform.kernel.crypto import PersonalDataCipher
from recova.platform.kernel.db import Database, ScopedConnection, quote_identifier
from recova.platform.webhooks.events import emit_event
from recova.tenants.scope import tenant_scope

log = logging.getLogger(__name__)

CHUNK_ROWS = 5000
#: Advisory-lock namespace (first key) for ingestion writes; the second key is the tenant.
INGEST_LOCK = 0x5245_4356  # "RECV"
ROW_ERROR_LIMIT = 1000  # reasons longer than this are cut; no reason is that long in practice
ROW_ERROR_VALUE_LIMIT = 200  # what an error report shows of a value
ROW_ERROR_COLUMN_LIMIT = 255  # the column's width (a header name may be longer)

ErrorRow = tuple[int, str | None, str | None, str]


@dataclass
class Counts:
    received: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    warnings: int = 0

    def add(self, other: Counts) -> None:
        self.received += other.received
        self.inserted += other.inserted
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.rejected += other.rejected
        self.warnings += other.warnings


@dataclass
class Chunk:
    """One chunk's parsed rows, ready for the writer."""

    rows: list[tuple[Any, ...]] = field(default_factory=list)
    contacts: list[tuple[Any, ...]] = field(default_factory=list)
    #: (external id, row number) of every row whose key could be read, parsed or not.
    keys: list[tuple[str, int]] = field(default_factory=list)
    #: key -> what happened to the row in the reader: "row", "unchanged" or "rejected".
    outcome: dict[str, str] = field(default_factory=dict)
    errors: list[ErrorRow] = field(default_factory=list)
    #: Rows that load without part of them (a contact point left out), and why.
    warnings: list[ErrorRow] = field(default_factory=list)
    received: int = 0
    unchanged: int = 0
    last_number: int = 0
    checkpoint: dict[str, Any] | None = None


@dataclass(frozen=True)
class RunPlan:
    """Everything ``execute_run`` needs to know about a run, read from its record."""

    tenant_id: int
    schema: str
    run_id: int
    kind: FeedKind
    mode: RunMode
    all_or_nothing: bool
    as_of: dt.date
    columns: dict[str, str]
    options: dict[str, Any]
    defaults: TenantDefaults
    checkpoint: dict[str, Any] | None
    #: The tenant's recall guard: on or off, and the share of the open book (percent) a
    #: snapshot may recall unconfirmed.
    recall_guard: bool = True
    recall_guard_percent: Decimal = Decimal("20.00")
    #: The run may recall past the guard (asked at start, or a held run confirmed).
    recall_confirmed: bool = False
    #: When a held run stopped: a confirmed one recalls only accounts older than this.
    held_at: dt.datetime | None = None
    #: A failed run of this source can resume (a pull source; an upload's bytes are gone).
    resumable: bool = False


@dataclass
class RunOutcome:
    counts: Counts
    recalled: int = 0
    failed: str | None = None
    #: The snapshot stopped before recalling, waiting for a confirmation.
    held: bool = False
    #: The run failed on an exception, not on its source (see ``services._interrupted``).
    unexpected: bool = False


class Progress:
    """Rows done of the estimated total, in Redis, readable while the run works."""

    def __init__(self, redis: Redis, key: str, total: int | None, *, base: int = 0) -> None:
        self.redis = redis
        self.key = key
        self.total = total
        self.base = base  # rows an earlier attempt of a resumed run already committed

    def report(self, done: int) -> None:
        done += self.base
        mapping: dict[str, int] = {"done": done}
        if self.total is not None:
            mapping["total"] = max(self.total, done)
        self.redis.hset(self.key, mapping=mapping)  # type: ignore[arg-type]
        self.redis.expire(self.key, 7 * 24 * 3600)


def progress_key(prefix: str, tenant_id: int, run_id: int) -> str:
    return f"{prefix}recova:ingest-progress:{tenant_id}:{run_id}"


# --- reading ------------------------------------------------------------------------------


def _reader(plan: RunPlan, cipher: PersonalDataCipher) -> RowReader:
    if plan.kind is FeedKind.PORTFOLIO:
        return PortfolioReader(
            plan.columns, plan.options, plan.defaults, cipher=cipher, as_of=plan.as_of
        )
    return PaymentReader(plan.columns, plan.options, plan.defaults)


def _records_in_chunks(records: Iterable[Record], size: int) -> Iterator[list[Record]]:
    batch: list[Record] = []
    try:
        for record in records:
            batch.append(record)
            if len(batch) >= size:
                yield batch
                batch = []
    except SourceError:
        # The source broke part-way (a malformed page): keep the good records read so far,
        # so the run can resume after them.
        if batch:
            yield batch
        raise
    if batch:
        yield batch


class ChunkParser:
    """Turns a batch of records into a ``Chunk``, skipping rows whose digest is unchanged."""

    def __init__(self, plan: RunPlan, reader: RowReader, lookup: Callable[[list[str]], dict]):
        self.plan = plan
        self.reader = reader
        self.lookup = lookup

    def parse(self, records: list[Record]) -> Chunk:
        chunk = Chunk(received=len(records))
        reader = self.reader
        keyed = self._keyed(records, chunk)
        stored = self.lookup([key for _, key, _ in keyed]) if keyed else {}
        for record, key, digest in keyed:
            if stored.get(key) == digest:
                chunk.outcome[key] = "unchanged"
                chunk.unchanged += 1
                continue
            try:
                parsed = reader.read(record.number, record.values, key, digest)  # type: ignore[attr-defined]
            except Rejected as rejected:
                chunk.outcome[key] = "rejected"
                chunk.errors.append(
                    (record.number, rejected.column, rejected.value, rejected.reason)
                )
                continue
            chunk.outcome[key] = "row"
            if self.plan.kind is FeedKind.PORTFOLIO:
                account, contacts, warnings = parsed
                chunk.rows.append(account)
                chunk.contacts.extend(contacts)
                for warning in warnings:
                    chunk.warnings.append(
                        (record.number, warning.column, warning.value, warning.reason)
                    )
            else:
                chunk.rows.append(parsed)
        if records:
            last = records[-1]
            chunk.last_number = last.number
            chunk.checkpoint = last.checkpoint or {"number": last.number}
        return chunk

    def _keyed(self, records: list[Record], chunk: Chunk) -> list[tuple[Record, str, bytes]]:
        """Each readable row with its key and digest; the rest become the chunk's errors."""
        reader = self.reader
        keyed: list[tuple[Record, str, bytes]] = []
        first_row: dict[str, int] = {}
        for record in records:
            if record.problem is not None:
                chunk.errors.append((record.number, record.column, None, record.problem))
                self._mention(chunk, first_row, record, reader.mentioned_key(record.values))
                continue
            try:
                # The digest first: it refuses values no text column can store (NUL),
                # the key's included, before anything else reads them.
                digest = reader.row_hash(record.values)
            except Rejected as rejected:
                chunk.errors.append(
                    (record.number, rejected.column, rejected.value, rejected.reason)
                )
                if rejected.column != reader.column(reader.key_field):
                    self._mention(chunk, first_row, record, reader.mentioned_key(record.values))
                continue
            try:
                key = reader.external_id(record.values)
            except Rejected as rejected:
                chunk.errors.append(
                    (record.number, rejected.column, rejected.value, rejected.reason)
                )
                continue
            if key in first_row:
                chunk.errors.append(
                    (
                        record.number,
                        reader.column(reader.key_field),
                        key,
                        f"duplicate external id; first seen at row {first_row[key]}",
                    )
                )
                continue
            first_row[key] = record.number
            chunk.keys.append((key, record.number))
            keyed.append((record, key, digest))
        return keyed

    @staticmethod
    def _mention(chunk: Chunk, first_row: dict[str, int], record: Record, key: str | None) -> None:
        """Record the key of a row rejected whole, so a snapshot does not recall it."""
        if key is None or key in first_row:
            return  # unreadable, or already reported (a duplicate of a rejected row)
        first_row[key] = record.number
        chunk.keys.append((key, record.number))
        chunk.outcome[key] = "rejected"


# --- writing ------------------------------------------------------------------------------

PORTFOLIO_STAGE = """
CREATE TEMP TABLE IF NOT EXISTS recova_stage_accounts (
    row_number int, external_id text, debtor_external_id text, full_name text,
    nid_ct bytea, nid_idx bytea, nid_masked text, region text, language text, product text,
    currency text, original_principal numeric, outstanding_principal numeric,
    outstanding_interest numeric, outstanding_fees numeric, outstanding_penalties numeric,
    overdue_amount numeric, interest_rate numeric, due_date date, days_past_due int,
    source_row jsonb, row_hash bytea, profile_digest bytea
) ON COMMIT DROP;
CREATE TEMP TABLE IF NOT EXISTS recova_stage_contacts (
    row_number int, debtor_external_id text, kind text, relation text, name text,
    ct bytea, idx bytea, masked text, verified boolean
) ON COMMIT DROP;
CREATE TEMP TABLE IF NOT EXISTS recova_stage_keys (external_id text, row_number int)
    ON COMMIT DROP;
TRUNCATE recova_stage_accounts, recova_stage_contacts, recova_stage_keys;
"""

PAYMENT_STAGE = """
CREATE TEMP TABLE IF NOT EXISTS recova_stage_payments (
    row_number int, external_id text, account_external_id text, kind text, amount numeric,
    currency text, paid_at timestamptz, channel text, paid_to text,
    reverses_external_id text, row_hash bytea,
    account_id int, reverses_id int, error_column text, error text
) ON COMMIT DROP;
CREATE TEMP TABLE IF NOT EXISTS recova_stage_keys (external_id text, row_number int)
    ON COMMIT DROP;
TRUNCATE recova_stage_payments, recova_stage_keys;
"""

ACCOUNT_COLUMNS = (
    "row_number, external_id, debtor_external_id, full_name, nid_ct, nid_idx, nid_masked,"
    " region, language, product, currency, original_principal, outstanding_principal,"
    " outstanding_interest, outstanding_fees, outstanding_penalties, overdue_amount,"
    " interest_rate, due_date, days_past_due, source_row, row_hash, profile_digest"
)
PAYMENT_COLUMNS = (
    "row_number, external_id, account_external_id, kind, amount, currency, paid_at,"
    " channel, paid_to, reverses_external_id, row_hash"
)

# Columns an account update compares: equal values mean "unchanged", whatever the digest.
_ACCOUNT_VALUES = (
    "debtor_id, product, currency, original_principal, outstanding_principal,"
    " outstanding_interest, outstanding_fees, outstanding_penalties, overdue_amount,"
    " interest_rate, due_date, days_past_due, source_row, profile_digest"
)


def _portfolio_sql(schema: str) -> dict[str, str]:
    s = quote_identifier(schema)
    excluded = ", ".join(f"excluded.{c.strip()}" for c in _ACCOUNT_VALUES.split(","))
    current = ", ".join(f"a.{c.strip()}" for c in _ACCOUNT_VALUES.split(","))
    assignments = ", ".join(
        f"{c.strip()} = excluded.{c.strip()}" for c in _ACCOUNT_VALUES.split(",")
    )
    return {
        "debtors": f"""
            INSERT INTO {s}.debtors AS d (external_id, full_name, national_id_ciphertext,
                national_id_index, national_id_masked, region, language)
            SELECT DISTINCT ON (debtor_external_id) debtor_external_id, full_name, nid_ct,
                nid_idx, nid_masked, region, language
            FROM recova_stage_accounts ORDER BY debtor_external_id, row_number DESC
            ON CONFLICT (external_id) DO UPDATE SET
                full_name = excluded.full_name,
                national_id_ciphertext = CASE
                    WHEN d.national_id_index IS DISTINCT FROM excluded.national_id_index
                    THEN excluded.national_id_ciphertext ELSE d.national_id_ciphertext END,
                national_id_index = excluded.national_id_index,
                national_id_masked = excluded.national_id_masked,
                region = excluded.region, language = excluded.language
            WHERE (d.full_name, d.national_id_index, d.region, d.language)
                IS DISTINCT FROM (excluded.full_name, excluded.national_id_index,
                                  excluded.region, excluded.language)""",
        "contacts": f"""
            INSERT INTO {s}.contacts AS c (debtor_id, kind, relation, name,
                value_ciphertext, value_index, value_masked, verified)
            SELECT d.id, sc.kind::{s}.contact_kind, sc.relation, sc.name, sc.ct, sc.idx,
                sc.masked, sc.verified
            FROM recova_stage_contacts sc
            JOIN LATERAL (SELECT id FROM {s}.debtors
                          WHERE external_id = sc.debtor_external_id LIMIT 1) d ON true
            ON CONFLICT (debtor_id, kind, value_index) DO UPDATE SET
                relation = excluded.relation, name = excluded.name,
                verified = excluded.verified
            WHERE (c.relation, c.name, c.verified)
                IS DISTINCT FROM (excluded.relation, excluded.name, excluded.verified)""",
        # New accounts get their case in the same statement; an account the tenant sends
        # again after a snapshot recalled it is back in collection, its case reopened.
        "accounts": f"""
            WITH upserted AS (
                INSERT INTO {s}.accounts AS a (external_id, {_ACCOUNT_VALUES}, row_hash)
                SELECT st.external_id, d.id, st.product, st.currency, st.original_principal,
                    st.outstanding_principal, st.outstanding_interest, st.outstanding_fees,
                    st.outstanding_penalties, st.overdue_amount, st.interest_rate,
                    st.due_date, st.days_past_due, st.source_row, st.profile_digest,
                    st.row_hash
                FROM recova_stage_accounts st
                JOIN LATERAL (SELECT id FROM {s}.debtors
                              WHERE external_id = st.debtor_external_id LIMIT 1) d ON true
                ON CONFLICT (external_id) DO UPDATE SET {assignments},
                    row_hash = excluded.row_hash, withdrawn_at = NULL,
                    withdrawn_by_run_id = NULL, updated_at = now()
                WHERE ({current}) IS DISTINCT FROM ({excluded})
                    OR a.withdrawn_at IS NOT NULL
                RETURNING a.id, a.debtor_id, (xmax = 0) AS inserted),
            opened AS (
                INSERT INTO {s}.cases (account_id, debtor_id, status)
                SELECT id, debtor_id, 'new' FROM upserted WHERE inserted
                ON CONFLICT (account_id) DO NOTHING),
            reopened AS (
                UPDATE {s}.cases c SET debtor_id = u.debtor_id,
                    status = CASE WHEN c.close_reason = 'tenant_recall'
                             THEN 'new'::{s}.case_status ELSE c.status END,
                    closed_at = CASE WHEN c.close_reason = 'tenant_recall'
                                THEN NULL ELSE c.closed_at END,
                    close_reason = CASE WHEN c.close_reason = 'tenant_recall'
                                   THEN NULL ELSE c.close_reason END
                FROM upserted u
                WHERE NOT u.inserted AND c.account_id = u.id
                  AND (c.debtor_id <> u.debtor_id OR c.close_reason = 'tenant_recall'))
            SELECT inserted FROM upserted""",
        # The digest changed but no value did (say "1,000" became "1000"): remember it.
        "digests": f"""
            UPDATE {s}.accounts a SET row_hash = st.row_hash
            FROM recova_stage_accounts st
            WHERE a.external_id = st.external_id AND a.row_hash IS DISTINCT FROM st.row_hash""",
        "lookup": f"SELECT external_id, row_hash FROM {s}.accounts "
        "WHERE external_id = ANY(%s) AND withdrawn_at IS NULL",
    }


def _payment_sql(schema: str) -> dict[str, str]:
    s = quote_identifier(schema)
    return {
        "accounts": f"""
            UPDATE recova_stage_payments st SET account_id = a.id,
                error_column = CASE WHEN a.currency <> st.currency THEN 'currency' END,
                error = CASE WHEN a.currency <> st.currency THEN
                    format('currency %s differs from the account''s %s', st.currency,
                           a.currency) END
            FROM recova_stage_payments k
            JOIN LATERAL (SELECT id, currency FROM {s}.accounts
                          WHERE external_id = k.account_external_id LIMIT 1) a ON true
            WHERE k.row_number = st.row_number""",
        "unknown_accounts": """
            UPDATE recova_stage_payments SET error_column = 'account_external_id',
                error = 'no account with this external id'
            WHERE account_id IS NULL""",
        # A payment id already stored: identical means unchanged, anything else an error.
        "existing": f"""
            UPDATE recova_stage_payments st SET
                error_column = CASE WHEN same THEN NULL ELSE 'payment_external_id' END,
                error = CASE WHEN same THEN '=unchanged' ELSE
                    'payment already recorded with different values; '
                    'send a reversal to correct it' END
            FROM (SELECT p.external_id, (p.account_id, p.kind::text, p.amount, p.currency,
                         p.paid_at, coalesce(r.external_id, ''))
                    = (st2.account_id, st2.kind, st2.amount, st2.currency, st2.paid_at,
                       coalesce(st2.reverses_external_id, '')) AS same
                  FROM recova_stage_payments st2
                  JOIN LATERAL (SELECT * FROM {s}.payments
                                WHERE external_id = st2.external_id LIMIT 1) p ON true
                  LEFT JOIN LATERAL (SELECT external_id FROM {s}.payments
                                     WHERE id = p.reverses_id LIMIT 1) r ON true) found
            WHERE found.external_id = st.external_id AND st.error IS NULL""",
        "insert_payments": f"""
            INSERT INTO {s}.payments (external_id, account_id, kind, amount, currency,
                paid_at, channel, paid_to, run_id, row_hash)
            SELECT external_id, account_id, 'payment', amount, currency, paid_at, channel,
                paid_to::{s}.paid_to, %s, row_hash
            FROM recova_stage_payments WHERE kind = 'payment' AND error IS NULL
            ORDER BY row_number""",
        "reversal_targets": f"""
            SELECT st.row_number, st.amount, st.account_id, p.id, p.amount, p.account_id,
                (SELECT coalesce(sum(r.amount), 0) FROM {s}.payments r
                  WHERE r.reverses_id = p.id)
            FROM recova_stage_payments st
            LEFT JOIN LATERAL (SELECT id, amount, account_id FROM {s}.payments
                               WHERE external_id = st.reverses_external_id
                                 AND kind = 'payment' LIMIT 1) p ON true
            WHERE st.kind = 'reversal' AND st.error IS NULL
            ORDER BY st.row_number""",
        "insert_reversals": f"""
            INSERT INTO {s}.payments (external_id, account_id, kind, amount, currency,
                paid_at, channel, paid_to, reverses_id, run_id, row_hash)
            SELECT st.external_id, st.account_id, 'reversal', st.amount, st.currency,
                st.paid_at, st.channel, st.paid_to::{s}.paid_to, st.reverses_id, %s,
                st.row_hash
            FROM recova_stage_payments st
            WHERE st.kind = 'reversal' AND st.error IS NULL
            ORDER BY st.row_number""",
        "lookup": f"SELECT external_id, row_hash FROM {s}.payments WHERE external_id = ANY(%s)",
    }


class ChunkWriter:
    """Applies chunks to one tenant schema through one connection of its ``tenant_scope``."""

    def __init__(self, db: Database, plan: RunPlan) -> None:
        self.plan = plan
        self.schema = plan.schema
        self._scope = contextlib.ExitStack()
        session = self._scope.enter_context(tenant_scope(plan.tenant_id, db=db, pinned=True))
        self.connection = ScopedConnection(session)
        self.sql = (
            _portfolio_sql(plan.schema)
            if plan.kind is FeedKind.PORTFOLIO
            else _payment_sql(plan.schema)
        )
        self.spool: Any = None  # all-or-nothing: row errors wait here until the end

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.connection.rollback()
        self._scope.close()

    def write(self, chunk: Chunk, *, commit: bool) -> Counts:
        """Apply one chunk (and commit it, unless the run is all-or-nothing)."""
        cur = self.connection.cursor()
        try:
            cur.execute("SELECT pg_advisory_xact_lock(%s, %s)", (INGEST_LOCK, self.plan.tenant_id))
            # A chunk lost to a server crash before its WAL reached disk took its checkpoint
            # with it (same transaction), so the resumed run redoes it: no need to wait for
            # the flush on every chunk.
            cur.execute("SET LOCAL synchronous_commit = off")
            stage = PORTFOLIO_STAGE if self.plan.kind is FeedKind.PORTFOLIO else PAYMENT_STAGE
            cur.execute(stage)
            counts = Counts(received=chunk.received, unchanged=chunk.unchanged)
            errors = list(chunk.errors)
            rows = self._drop_duplicates_of_earlier_chunks(cur, chunk, counts, errors)
            if self.plan.kind is FeedKind.PORTFOLIO:
                self._write_portfolio(cur, rows, chunk.contacts, counts)
            else:
                self._write_payments(cur, rows, counts, errors)
            counts.rejected = len(errors)
            counts.warnings = len(chunk.warnings)
            self._store_errors(cur, errors, chunk.warnings)
            self._advance(cur, counts, chunk)
            if commit:
                self.connection.commit()
            return counts
        except BaseException:
            if commit:
                self.connection.rollback()
            raise
        finally:
            cur.close()

    def _copy(self, cur: Any, statement: str, rows: Iterable[tuple[Any, ...]]) -> None:
        with cur.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)

    def _drop_duplicates_of_earlier_chunks(
        self, cur: Any, chunk: Chunk, counts: Counts, errors: list[ErrorRow]
    ) -> list[tuple[Any, ...]]:
        s = quote_identifier(self.schema)
        self._copy(cur, "COPY recova_stage_keys (external_id, row_number) FROM STDIN", chunk.keys)
        cur.execute(
            f"INSERT INTO {s}.ingestion_seen (run_id, external_id, row_number) "
            "SELECT %s, external_id, row_number FROM recova_stage_keys "
            "ON CONFLICT DO NOTHING",
            (self.plan.run_id,),
        )
        if cur.rowcount == len(chunk.keys):
            return chunk.rows  # every key is new to this run: no duplicates
        cur.execute(
            f"SELECT k.external_id, k.row_number, seen.row_number FROM recova_stage_keys k "
            f"JOIN LATERAL (SELECT row_number FROM {s}.ingestion_seen WHERE run_id = %s "
            "AND external_id = k.external_id LIMIT 1) seen ON seen.row_number <> k.row_number",
            (self.plan.run_id,),
        )
        duplicates = {key: (row, first) for key, row, first in cur.fetchall()}
        key_column = self.plan.columns.get(
            "account_external_id" if self.plan.kind is FeedKind.PORTFOLIO else "payment_external_id"
        )
        for key, (row, first) in duplicates.items():
            outcome = chunk.outcome.get(key)
            if outcome == "rejected":
                continue  # already reported once for this row
            if outcome == "unchanged":
                counts.unchanged -= 1
            errors.append(
                (row, key_column, key, f"duplicate external id; first seen at row {first}")
            )
        dropped = {row for row, _ in duplicates.values()}
        if self.plan.kind is FeedKind.PORTFOLIO:
            chunk.contacts = [c for c in chunk.contacts if c[0] not in dropped]
            chunk.warnings = [w for w in chunk.warnings if w[0] not in dropped]
        return [r for r in chunk.rows if r[0] not in dropped]

    def _write_portfolio(
        self,
        cur: Any,
        rows: list[tuple[Any, ...]],
        contacts: list[tuple[Any, ...]],
        counts: Counts,
    ) -> None:
        if not rows:
            return
        self._copy(cur, f"COPY recova_stage_accounts ({ACCOUNT_COLUMNS}) FROM STDIN", rows)
        # One row per (debtor, kind, value): ON CONFLICT may touch a row only once per
        # statement. A later row of the file wins, as it does for the debtor.
        contacts = list({(c[1], c[2], c[6]): c for c in contacts}.values())
        self._copy(
            cur,
            "COPY recova_stage_contacts (row_number, debtor_external_id, kind, relation, name,"
            " ct, idx, masked, verified) FROM STDIN",
            contacts,
        )
        sql = self.sql
        cur.execute(sql["debtors"])
        cur.execute(sql["contacts"])
        cur.execute(sql["accounts"])
        written = [inserted for (inserted,) in cur.fetchall()]
        inserted = sum(1 for new in written if new)
        counts.inserted += inserted
        counts.updated += len(written) - inserted
        counts.unchanged += len(rows) - len(written)
        if inserted < len(rows):  # only rows that existed can have a stale digest
            cur.execute(sql["digests"])

    def _write_payments(
        self, cur: Any, rows: list[tuple[Any, ...]], counts: Counts, errors: list[ErrorRow]
    ) -> None:
        if not rows:
            return
        sql = self.sql
        self._copy(cur, f"COPY recova_stage_payments ({PAYMENT_COLUMNS}) FROM STDIN", rows)
        cur.execute(sql["accounts"])
        cur.execute(sql["unknown_accounts"])
        cur.execute(sql["existing"])
        cur.execute(sql["insert_payments"], (self.plan.run_id,))
        counts.inserted += cur.rowcount
        self._check_reversals(cur, errors)
        cur.execute(sql["insert_reversals"], (self.plan.run_id,))
        counts.inserted += cur.rowcount
        cur.execute(
            "SELECT row_number, error_column, account_external_id, external_id,"
            " reverses_external_id, error FROM recova_stage_payments WHERE error IS NOT NULL"
        )
        for row_number, column, account, external_id, reverses, error in cur.fetchall():
            if error == "=unchanged":
                counts.unchanged += 1
                continue
            field_name = column or "payment_external_id"
            value = {
                "account_external_id": account,
                "payment_external_id": external_id,
                "reverses_payment_external_id": reverses,
            }.get(field_name)
            errors.append((row_number, self.plan.columns.get(field_name, field_name), value, error))

    def _check_reversals(self, cur: Any, errors: list[ErrorRow]) -> None:
        """Reversals in row order: a known payment, the same account, never over-reversed."""
        cur.execute(self.sql["reversal_targets"])
        reversed_so_far: dict[int, Any] = {}
        verdicts: list[tuple[int, int | None, str | None, str | None]] = []
        for (
            row_number,
            amount,
            account_id,
            original_id,
            original,
            original_account,
            prior,
        ) in cur.fetchall():
            if original_id is None:
                verdicts.append(
                    (
                        row_number,
                        None,
                        "reverses_payment_external_id",
                        "reverses an unknown payment",
                    )
                )
                continue
            if original_account != account_id:
                verdicts.append(
                    (
                        row_number,
                        None,
                        "account_external_id",
                        "the reversed payment belongs to another account",
                    )
                )
                continue
            total = reversed_so_far.get(original_id, prior) + amount
            if total > original:
                verdicts.append(
                    (
                        row_number,
                        None,
                        "amount",
                        "reversal exceeds what is left of the payment "
                        f"({original - reversed_so_far.get(original_id, prior)})",
                    )
                )
                continue
            reversed_so_far[original_id] = total
            verdicts.append((row_number, original_id, None, None))
        if verdicts:
            cur.executemany(
                "UPDATE recova_stage_payments SET reverses_id = %s, error_column = %s,"
                " error = %s WHERE row_number = %s",
                [(original, column, error, row) for row, original, column, error in verdicts],
            )

    def _store_errors(
        self, cur: Any, errors: list[ErrorRow], warnings: list[ErrorRow] | None = None
    ) -> None:
        if not errors and not warnings:
            return
        run_id = self.plan.run_id
        rows = [
            (
                run_id,
                row,
                _storable(column, ROW_ERROR_COLUMN_LIMIT),
                _storable(value, ROW_ERROR_VALUE_LIMIT),
                _storable(reason, ROW_ERROR_LIMIT),
                severity,
            )
            for severity, found in (
                (Severity.ERROR.value, errors),
                (Severity.WARNING.value, warnings or ()),
            )
            for row, column, value, reason in found
        ]
        if self.plan.all_or_nothing:
            if self.spool is None:
                # Closed by execute_run once the run is decided.
                self.spool = tempfile.SpooledTemporaryFile(  # noqa: SIM115
                    max_size=8 * 1024 * 1024, mode="w+"
                )
            for row in rows:
                self.spool.write(json.dumps(row, ensure_ascii=False) + "\n")
            return
        s = quote_identifier(self.schema)
        self._copy(
            cur,
            f'COPY {s}.ingestion_row_errors (run_id, row_number, "column", value,'
            " reason, severity) FROM STDIN",
            rows,
        )

    def _advance(self, cur: Any, counts: Counts, chunk: Chunk) -> None:
        cur.execute(
            f"UPDATE {quote_identifier(self.schema)}.ingestion_runs SET received = received + %s,"
            " inserted = inserted + %s, updated = updated + %s, unchanged = unchanged + %s,"
            " rejected = rejected + %s, warnings = warnings + %s, checkpoint = %s WHERE id = %s",
            (
                counts.received,
                counts.inserted,
                counts.updated,
                counts.unchanged,
                counts.rejected,
                counts.warnings,
                json.dumps(chunk.checkpoint),
                self.plan.run_id,
            ),
        )

    def finish(
        self, *, status: str, message: str | None, source_info: dict[str, Any]
    ) -> tuple[int, bool]:
        """Close the run in the current transaction; a snapshot recalls what it missed,
        unless the recall guard holds it. Returns the accounts recalled and whether the
        run was held."""
        s = quote_identifier(self.schema)
        plan = self.plan
        cur = self.connection.cursor()
        try:
            cur.execute("SELECT pg_advisory_xact_lock(%s, %s)", (INGEST_LOCK, plan.tenant_id))
            recalled = 0
            held: int | None = None
            if (
                status == "completed"
                and plan.kind is FeedKind.PORTFOLIO
                and plan.mode is RunMode.SNAPSHOT
            ):
                held, message = self._guard_recall(cur)
                if held is None and message is None:
                    recalled = self._recall_unmentioned(cur)
                elif held is not None:
                    status = RunStatus.HELD.value
            # What a held run mentioned waits for its confirmation; a run that can resume
            # from its checkpoint needs what the part before it mentioned.
            if not (held is not None or (status == "failed" and plan.resumable)):
                cur.execute(f"DELETE FROM {s}.ingestion_seen WHERE run_id = %s", (plan.run_id,))
            cur.execute(
                f"UPDATE {s}.ingestion_runs SET status = %s, message = %s, recalled = %s,"
                " recall_held = %s, held_at = CASE WHEN %s THEN now() ELSE held_at END,"
                " source_info = %s,"
                " finished_at = CASE WHEN %s THEN NULL ELSE now() END WHERE id = %s"
                " RETURNING received, inserted, updated, unchanged, rejected",
                (
                    status,
                    _storable(message, ROW_ERROR_LIMIT * 4),
                    recalled,
                    held,
                    held is not None,
                    json.dumps(source_info),
                    held is not None,
                    plan.run_id,
                ),
            )
            if status in ("completed", "failed"):
                self._emit_finished(status, cur.fetchone(), recalled=recalled)
            self.connection.commit()
            return recalled, held is not None
        except BaseException:
            self.connection.rollback()
            raise
        finally:
            cur.close()

    def _guard_recall(self, cur: Any) -> tuple[int | None, str | None]:
        """Whether this snapshot may recall now: ``(None, None)`` if it may; ``(None,
        why)`` if it must recall nothing; ``(count, why)`` if the guard holds it."""
        s = quote_identifier(self.schema)
        plan = self.plan
        cur.execute(
            f"SELECT inserted + updated + unchanged FROM {s}.ingestion_runs WHERE id = %s",
            (plan.run_id,),
        )
        (accepted,) = cur.fetchone()
        if not accepted:
            return None, (
                "no row of this snapshot was accepted, so no account was recalled;"
                " download the errors, fix them and send the file again"
            )
        if not plan.recall_guard or plan.recall_confirmed:
            return None, None
        cur.execute(
            f"""SELECT count(*) FILTER (WHERE NOT EXISTS (
                    SELECT 1 FROM {s}.ingestion_seen seen
                    WHERE seen.run_id = %s AND seen.external_id = a.external_id)),
                count(*)
                FROM {s}.accounts a WHERE a.withdrawn_at IS NULL""",
            (plan.run_id,),
        )
        would, book = cur.fetchone()
        if not would or would * 100 <= plan.recall_guard_percent * book:
            return None, None
        share = (Decimal(would) * 100 / book).quantize(Decimal("0.1"))
        limit = plan.recall_guard_percent.normalize()
        return int(would), (
            f"this snapshot would recall {would:,} of the {book:,} open accounts"
            f" ({share}%), more than the {limit:f}% the recall guard allows, so nothing was"
            " recalled (its rows are loaded). If the file is complete, confirm the recall"
            f" (POST /api/v1/ingestion/runs/{plan.run_id}/confirm-recall, or send the file"
            " again with confirm_recall, `recova ingest --confirm-recall`); otherwise send"
            " the complete file as a new snapshot"
        )

    def _recall_unmentioned(self, cur: Any) -> int:
        s = quote_identifier(self.schema)
        cur.execute(
            f"""
            WITH gone AS (
                UPDATE {s}.accounts a SET withdrawn_at = now(), withdrawn_by_run_id = %(run)s
                WHERE a.withdrawn_at IS NULL AND NOT EXISTS (
                    SELECT 1 FROM {s}.ingestion_seen seen
                    WHERE seen.run_id = %(run)s AND seen.external_id = a.external_id)
                  -- A confirmed held run: accounts that arrived while it waited stay.
                  AND (%(held_at)s::timestamptz IS NULL OR a.created_at <= %(held_at)s)
                RETURNING a.id),
            closed AS (
                UPDATE {s}.cases c SET status = 'closed', closed_at = now(),
                    close_reason = 'tenant_recall'
                FROM gone WHERE c.account_id = gone.id
                  AND c.status NOT IN ('closed', 'paid', 'settled')
                RETURNING c.id)
            SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM closed)""",
            {"run": self.plan.run_id, "held_at": self.plan.held_at},
        )
        recalled, _closed = cur.fetchone()
        return int(recalled)

    def fail_all_or_nothing(self, counts: Counts) -> None:
        """Roll the whole run back and keep only its row errors and counts."""
        self.connection.rollback()
        s = quote_identifier(self.schema)
        cur = self.connection.cursor()
        try:
            cur.execute(
                f"DELETE FROM {s}.ingestion_row_errors WHERE run_id = %s", (self.plan.run_id,)
            )
            if self.spool is not None:
                self.spool.seek(0)
                with cur.copy(
                    f'COPY {s}.ingestion_row_errors (run_id, row_number, "column", value, reason,'
                    " severity) FROM STDIN"
                ) as copy:
                    for line in self.spool:
                        copy.write_row(json.loads(line))
            cur.execute(f"DELETE FROM {s}.ingestion_seen WHERE run_id = %s", (self.plan.run_id,))
            cur.execute(
                f"UPDATE {s}.ingestion_runs SET status = 'failed', message = %s,"
                " received = %s, inserted = 0, updated = 0, unchanged = 0, rejected = %s,"
                " warnings = %s, checkpoint = NULL, finished_at = now() WHERE id = %s",
                (
                    f"{counts.rejected} of {counts.received} rows were rejected, so nothing"
                    " was loaded (all-or-nothing); download the errors, fix them and send"
                    " the file again",
                    counts.received,
                    counts.rejected,
                    counts.warnings,
                    self.plan.run_id,
                ),
            )
            self._emit_finished("failed", (counts.received, 0, 0, 0, counts.rejected), recalled=0)
            self.connection.commit()
        finally:
            cur.close()

    def _emit_finished(self, status: str, counts: Any, *, recalled: int) -> None:
        """The run's ``ingestion.run.completed`` or ``.failed`` event, in its transaction."""
        received, inserted, updated, unchanged, rejected = counts
        emit_event(
            self.connection.session,
            f"ingestion.run.{status}",
            {
                "run_id": self.plan.run_id,
                "kind": self.plan.kind.value,
                "mode": self.plan.mode.value,
                "status": status,
                "received": received,
                "inserted": inserted,
                "updated": updated,
                "unchanged": unchanged,
                "rejected": rejected,
                "recalled": recalled,
            },
        )


# --- the run ------------------------------------------------------------------------------


class _Lookup:
    """Stored digests of a chunk's keys, read on the parser's own autocommit connection."""

    def __init__(self, db: Database, plan: RunPlan, statement: str) -> None:
        self._scope = contextlib.ExitStack()
        session = self._scope.enter_context(tenant_scope(plan.tenant_id, db=db, pinned=True))
        self.connection = ScopedConnection(session)
        self.connection.commit()  # the scope's tenant lookup: autocommit needs no transaction
        self.connection.driver_connection.autocommit = True
        self.statement = statement

    def __call__(self, keys: list[str]) -> dict[str, bytes]:
        cur = self.connection.cursor()
        try:
            cur.execute(self.statement, (keys,))
            return {key: bytes(digest) for key, digest in cur.fetchall() if digest is not None}
        finally:
            cur.close()

    def close(self) -> None:
        self.connection.driver_connection.autocommit = False
        self._scope.close()


def execute_run(
    *,
    db: Database,
    plan: RunPlan,
    connector: Any,
    source: Source,
    cipher: PersonalDataCipher,
    progress: Progress | None = None,
    on_chunk: Callable[[Counts], None] | None = None,
) -> RunOutcome:
    """Load the run's records from ``connector`` into the tenant schema; see the module doc.

    Returns the counts of this execution; the run record holds the totals. A
    ``SourceError`` after some chunks were applied keeps them (the run fails, resumable
    from its checkpoint); before any, it leaves nothing behind.
    """
    reader = _reader(plan, cipher)
    writer = ChunkWriter(db, plan)
    lookup = _Lookup(db, plan, writer.sql["lookup"])
    parser = ChunkParser(plan, reader, lookup)
    total = Counts()
    if plan.all_or_nothing:
        _reset_all_or_nothing(writer)
    handoff: queue.Queue[Chunk | None] = queue.Queue(maxsize=2)
    failure: list[BaseException] = []

    def write_chunks() -> None:
        try:
            while (chunk := handoff.get()) is not None:
                counts = writer.write(chunk, commit=not plan.all_or_nothing)
                total.add(counts)
                if progress is not None:
                    progress.report(total.received)
                if on_chunk is not None:
                    on_chunk(counts)
        except BaseException as error:  # handed to the reading thread, which re-raises
            failure.append(error)
            while handoff.get() is not None:  # drain so the reader never blocks
                pass

    thread = threading.Thread(target=write_chunks, name=f"ingest-writer-{plan.run_id}")
    thread.start()
    source_failure: SourceError | None = None
    try:
        records = connector.records(source, resume=plan.checkpoint)
        try:
            for batch in _records_in_chunks(records, CHUNK_ROWS):
                if failure:
                    break
                handoff.put(parser.parse(batch))
        except SourceError as error:
            source_failure = error
    finally:
        handoff.put(None)
        thread.join()
        lookup.close()
    try:
        if failure:
            raise failure[0]
        return _conclude(writer, plan, total, source_failure, source)
    finally:
        if writer.spool is not None:
            writer.spool.close()
        writer.close()


def _conclude(
    writer: ChunkWriter,
    plan: RunPlan,
    total: Counts,
    source_failure: SourceError | None,
    source: Source,
) -> RunOutcome:
    """Decide the run once every chunk is written: completed, or failed and why."""
    if source_failure is not None:
        # Read only part-way: never recall (finish recalls only for completed runs).
        if plan.all_or_nothing:
            writer.connection.rollback()
        writer.finish(status="failed", message=str(source_failure), source_info=source.info)
        return RunOutcome(total, failed=str(source_failure))
    if plan.all_or_nothing and total.rejected:
        writer.fail_all_or_nothing(total)
        return RunOutcome(total, failed="rejected rows (all-or-nothing)")
    recalled, held = writer.finish(status="completed", message=None, source_info=source.info)
    return RunOutcome(total, recalled=recalled, held=held)


def finish_confirmed_run(*, db: Database, plan: RunPlan, source_info: dict[str, Any]) -> RunOutcome:
    """Finish a held snapshot the tenant confirmed: recall what it did not mention, in
    one transaction (a worker killed before the commit leaves it to do again)."""
    writer = ChunkWriter(db, plan)
    try:
        recalled, _held = writer.finish(status="completed", message=None, source_info=source_info)
        return RunOutcome(Counts(), recalled=recalled)
    finally:
        writer.close()


def _storable(text: str | None, limit: int) -> str | None:
    """``text`` as PostgreSQL stores it: no NUL, no lone surrogate, at most ``limit``
    characters. What the tenant's bytes held stays readable, escaped."""
    if text is None:
        return None
    if not text.isascii():
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text.replace("\x00", "\\x00")[:limit]


def _reset_all_or_nothing(writer: ChunkWriter) -> None:
    """A retried all-or-nothing run starts clean: nothing of an earlier attempt counts."""
    s = quote_identifier(writer.schema)
    cur = writer.connection.cursor()
    try:
        cur.execute(
            f"UPDATE {s}.ingestion_runs SET received = 0, inserted = 0, updated = 0,"
            " unchanged = 0, rejected = 0, warnings = 0, checkpoint = NULL WHERE id = %s",
            (writer.plan.run_id,),
        )
    finally:
        cur.close()
