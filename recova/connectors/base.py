"""What a connector is: something that reads a tenant's source and yields raw records.

A connector knows a *format* (CSV, Excel, JSON lines, a paginated HTTP endpoint), never
Recova's fields: turning raw values into debtors, accounts and payments is the job of the
tenant's column mapping and of ``recova.connectors.normalise``. Connectors are found
through the ``recova.connectors`` entry-point group (see ``registry``), so a third party
can ship one in its own distribution.

Contract every connector keeps:

- ``records(source, resume=...)`` yields ``Record`` objects in source order. ``number`` is
  the row number a tenant would point at: for spreadsheets and CSV the sheet row (the
  header is row 1, so the first data row is 2); for JSON lines the line number; for HTTP
  the 1-based position across all pages.
- A source that cannot be read at all (empty, not the format it claims, only a header,
  too large, an endpoint that keeps failing) raises ``SourceError`` with a message a
  tenant understands, before or instead of yielding records. A source that breaks
  part-way (a malformed HTTP page, a CSV quote never closed) raises it after the
  records before the break, so a run keeps them and can resume from the last one.
- A single row that is structurally broken (wrong field count, invalid JSON on one line,
  a field over the size limit, a last row cut short by a truncated file) is yielded with
  ``problem`` set (and ``column`` when one column is at fault), so the run rejects that
  row and goes on.
- ``checkpoint`` on a record, when not ``None``, is a JSON-able token: passing it back as
  ``resume`` continues right after that record. File connectors leave it ``None``; the
  pipeline then resumes by ``number`` (``{"number": n}``), which every connector accepts.
- Personal data never appears in a ``SourceError`` message or a ``problem``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

Resume = Mapping[str, Any]


class SourceError(Exception):
    """The source cannot be read at all; ``str(error)`` is shown to the tenant."""


@dataclass(slots=True)
class Record:
    """One raw row: source column name -> raw value, as the source gave it.

    Text formats give ``str`` values (``""`` for an empty cell); Excel gives the cell's
    value (``str``, ``int``, ``float``, ``bool``, ``datetime``, or ``None`` for empty);
    JSON gives JSON scalars (nested objects and arrays are passed through).
    """

    number: int
    values: dict[str, Any]
    problem: str | None = None
    checkpoint: dict[str, Any] | None = None
    #: The source column a ``problem`` is about, when one can be named.
    column: str | None = None


@dataclass(slots=True)
class Source:
    """Where a run reads from.

    ``path`` is a local file for file connectors (uploads are copied to a temporary file
    before a run reads them); ``options`` carries connector settings such as an HTTP
    source's URL, pagination and auth header, or a CSV's explicit encoding. A connector
    may fill ``info`` with what it found (detected encoding, delimiter, sheet name), which
    the run keeps for the tenant to see.
    """

    path: Path | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


class Connector(Protocol):
    """The plugin interface; register an instance factory under ``recova.connectors``."""

    name: ClassVar[str]
    #: ``"file"`` connectors read ``Source.path``; ``"pull"`` connectors fetch by ``options``.
    kind: ClassVar[str]

    def records(self, source: Source, *, resume: Resume | None = None) -> Iterator[Record]:
        """Yield the source's records in order, starting after ``resume`` if given."""
        ...

    def estimate_total(self, source: Source) -> int | None:
        """A cheap upper estimate of how many records the source holds, or ``None``."""
        ...
