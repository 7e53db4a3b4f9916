"""The Excel connector: the first (or a named) sheet of an .xlsx workbook, streamed."""

from __future__ import annotations

import warnings
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

from recova.connectors.base import Record, Resume, Source, SourceError
from recova.connectors.csv_file import checked_path

_ZIP_SIGNATURE = b"PK\x03\x04"
# Old .xls workbooks, and .xlsx workbooks saved with a password, are OLE containers.
_OLE_SIGNATURE = b"\xd0\xcf\x11\xe0"


def _column_letter(position: int) -> str:
    from openpyxl.utils import get_column_letter

    return str(get_column_letter(position))


def _not_a_workbook(path: Path) -> SourceError:
    with path.open("rb") as stream:
        start = stream.read(4)
    if start == _OLE_SIGNATURE:
        return SourceError(
            "the file is an old Excel workbook (.xls) or a password-protected one;"
            " save it as .xlsx without a password"
        )
    return SourceError("the file is not an Excel workbook (.xlsx)")


@contextmanager
def _open_workbook(path: Path) -> Iterator[Any]:
    """The workbook opened for streaming, closed (with its file) on the way out."""
    import openpyxl
    from openpyxl.utils.exceptions import InvalidFileException

    # A file object, not the path: openpyxl refuses paths by their extension, and
    # uploads arrive as temporary files named anything.
    with path.open("rb") as stream:
        if stream.read(4) != _ZIP_SIGNATURE:
            raise _not_a_workbook(path)
        stream.seek(0)
        try:
            with warnings.catch_warnings():
                # openpyxl warns about parts it drops (data validation, extensions);
                # they do not change cell values and a tenant cannot act on them.
                warnings.filterwarnings("ignore", category=UserWarning, module="openpyxl")
                # zipfile leaves a file object it was given open; the ``with``
                # above closes it.
                workbook = openpyxl.load_workbook(stream, read_only=True, data_only=True)
        except (zipfile.BadZipFile, KeyError, InvalidFileException, OSError, ValueError):
            raise _not_a_workbook(path) from None
        try:
            yield workbook
        finally:
            workbook.close()


def _sheet(workbook: Any, source: Source) -> Any:
    names = [sheet.title for sheet in workbook.worksheets]
    wanted = source.options.get("sheet")
    if wanted is None:
        if not names:
            raise SourceError("the workbook has no sheets")
        return workbook.worksheets[0]
    if wanted not in names:
        known = ", ".join(repr(name) for name in names)
        raise SourceError(f"the workbook has no sheet named {wanted!r}; its sheets are {known}")
    return workbook[wanted]


def _header_names(row: tuple[Any, ...]) -> list[str]:
    names = [value.strip() if isinstance(value, str) else value for value in row]
    # Formatting makes Excel keep empty cells after the last column; they are not
    # part of the header. A gap between names is.
    while names and names[-1] in (None, ""):
        names.pop()
    seen: dict[str, int] = {}
    header: list[str] = []
    for position, value in enumerate(names, start=1):
        if value in (None, ""):
            raise SourceError(f"cell {_column_letter(position)}1 of the header row is empty")
        name = value if isinstance(value, str) else str(value)
        if name in seen:
            raise SourceError(
                f"columns {_column_letter(seen[name])} and {_column_letter(position)}"
                " of the header row have the same name"
            )
        seen[name] = position
        header.append(name)
    return header


def _rows(sheet: Any) -> Iterator[tuple[Any, ...]]:
    """The sheet's rows as values, a damaged sheet reported as the tenant's problem."""
    try:
        yield from sheet.iter_rows(values_only=True)
    except (zipfile.BadZipFile, zlib.error, EOFError, KeyError, ValueError, SyntaxError):
        # SyntaxError is the base of both ElementTree's and lxml's XML parse errors.
        raise SourceError("the workbook is damaged: its sheet cannot be read to the end") from None


class ExcelConnector:
    """Reads one sheet of an .xlsx workbook, one record per row below the header."""

    name: ClassVar[str] = "xlsx"
    kind: ClassVar[str] = "file"

    def records(self, source: Source, *, resume: Resume | None = None) -> Iterator[Record]:
        """Yield the sheet's rows below row 1, skipping those up to ``resume["number"]``."""
        path, _size = checked_path(source)
        resumed_through = int(resume["number"]) if resume and "number" in resume else 0
        with _open_workbook(path) as workbook:
            sheet = _sheet(workbook, source)
            source.info.update(sheet=sheet.title)
            # Some writers store a wrong used range, which read-only mode would trust
            # and cut columns by; reading without one costs nothing.
            sheet.reset_dimensions()
            rows = _rows(sheet)
            first = next(rows, None)
            if first is None or not any(v not in (None, "") for v in first):
                if first is None or next(rows, None) is None:
                    raise SourceError(f"the sheet {sheet.title!r} is empty")
                raise SourceError("row 1 of the sheet must hold the column names; it is empty")
            header = _header_names(first)
            width = len(header)
            has_rows = False
            for number, row in enumerate(rows, start=2):
                if number <= resumed_through:
                    continue
                values = [value.strip() if isinstance(value, str) else value for value in row]
                if all(value is None or value == "" for value in values):
                    continue
                has_rows = True
                problem = None
                if len(values) > width:
                    extra = next(
                        (i for i in range(width, len(values)) if values[i] not in (None, "")),
                        None,
                    )
                    if extra is not None:
                        problem = (
                            f"row has a value in column {_column_letter(extra + 1)}, after the"
                            f" header's last column ({_column_letter(width)})"
                        )
                    del values[width:]
                elif len(values) < width:
                    values.extend([None] * (width - len(values)))
                yield Record(number, dict(zip(header, values, strict=True)), problem)
            # A resumed run skipped rows the first run already saw.
            if not has_rows and not resumed_through:
                raise SourceError(f"the sheet {sheet.title!r} has a header but no rows")

    def estimate_total(self, source: Source) -> int | None:
        """The used range's height less the header, as the workbook records it."""
        try:
            path, _size = checked_path(source)
            with _open_workbook(path) as workbook:
                max_row = _sheet(workbook, source).max_row
        except SourceError:
            return None
        return None if max_row is None else max(max_row - 1, 0)
