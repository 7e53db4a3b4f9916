"""The one CSV writer for everything Recova exports: cells can never become formulas.

A CSV cell that starts with ``=``, ``+``, ``-`` or ``@`` (or a tab or carriage return,
which some spreadsheet programs skip before reading one of those) is run as a formula
when the file is opened in Excel, LibreOffice or WPS: ``=HYPERLINK("http://x","y")`` in a
tenant's payment id would be a live link in the agency's statement. Exports carry one
organisation's data into another's spreadsheet, so every CSV the product writes goes
through ``formula_safe_writer``, which escapes such cells the way OWASP recommends: a
single quote in front (``'=HYPERLINK(...)``), which spreadsheets show as text and hide.

What counts as dangerous, deliberately on the wide side:

- the first character is one of ``= + - @``, their full-width forms (U+FF1D, U+FF0B,
  U+FF0D, U+FF20, which CJK input methods type and some spreadsheet programs accept), a
  tab or a carriage return;
- or the first character after leading whitespace is one of those (spreadsheet programs
  differ on whether they strip leading blanks before looking for a formula).

One exception, made consciously: a cell that is exactly a plain decimal number,
``-?[0-9]+(\\.[0-9]+)?`` (``-12.50``, ``-0.61``), is written as it is. It cannot be a formula
(a spreadsheet reads it as the number), and the money columns of invoices and statements
hold negative amounts (clawbacks) that analysts sum; a quote in front would turn them into
text. Anything else starting with ``-`` (``-1+2``, ``-A1``, ``- 3``) is escaped.

The writer changes nothing else: the same rows always give the same bytes. One thing it
adds: a row with a cell holding a carriage return or a line feed that the ``csv`` module
would leave unquoted (it quotes only the characters of its line terminator, so ``\r``
under ``lineterminator="\n"``) is written with every cell quoted, so a hostile value can
never end the row early and start one of its own.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from typing import Any, Protocol

#: The characters that make a spreadsheet program read a cell as a formula.
FORMULA_STARTS = frozenset("=+-@\t\r\uff1d\uff0b\uff0d\uff20")
ESCAPE = "'"
_PLAIN_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")


class _TextSink(Protocol):
    def write(self, text: str, /) -> Any: ...


def needs_escape(text: str) -> bool:
    """Whether a spreadsheet program could run ``text`` as a formula."""
    if not text or _PLAIN_NUMBER.fullmatch(text):
        return False
    if text[0] in FORMULA_STARTS:
        return True
    stripped = text.lstrip()
    return bool(stripped) and stripped[0] in FORMULA_STARTS


def _breaks_lines(text: str) -> bool:
    return "\r" in text or "\n" in text


def escape_cell(value: object) -> object:
    """``value`` as it may be written to a CSV cell: dangerous text gets a quote in front.

    ``None`` and non-text values whose text is harmless are returned unchanged, so the
    ``csv`` module formats them as it always does (``None`` as an empty cell).
    """
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    return ESCAPE + text if needs_escape(text) else value


class FormulaSafeWriter:
    """A ``csv.writer`` whose every cell has gone through ``escape_cell``."""

    def __init__(self, out: _TextSink, **fmtparams: Any) -> None:
        self._writer = csv.writer(out, **fmtparams)
        self._quoting_all = csv.writer(out, **{**fmtparams, "quoting": csv.QUOTE_ALL})

    def writerow(self, row: Iterable[object]) -> Any:
        """Write one row, escaping each cell."""
        cells = [escape_cell(value) for value in row]
        if any(value is not None and _breaks_lines(str(value)) for value in cells):
            return self._quoting_all.writerow(cells)
        return self._writer.writerow(cells)

    def writerows(self, rows: Iterable[Iterable[object]]) -> None:
        """Write every row, escaping each cell."""
        for row in rows:
            self.writerow(row)


def formula_safe_writer(out: _TextSink, **fmtparams: Any) -> FormulaSafeWriter:
    """A CSV writer on ``out`` (``csv.writer``'s format parameters) that escapes formulas."""
    return FormulaSafeWriter(out, **fmtparams)
