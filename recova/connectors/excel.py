"""The Excel connector: the first (or a named) sheet of an .xlsx workbook, streamed.

A workbook is a zip archive of XML parts, so a small upload can unpack to gigabytes (a
zip bomb) or hold XML built to exhaust memory. Reading is bounded before and while it
happens, so a hostile workbook ends its run with a clear error and the worker's memory
stays flat (the suite proves it stays under 500 MB on generated bombs):

- before anything is unpacked, from the zip directory: the size of the directory itself
  and the number of parts; each part's declared unpacked size and compression ratio; the
  declared total (``WorkbookLimits``, configurable through ``Settings``);
- while reading: every part is read through a counting stream that raises once a part
  unpacks past its limit or its ratio, or the parts past the total, whatever the
  directory declared; a part whose data does not match its directory entry is refused
  as damaged; parts openpyxl parses whole (workbook, styles, relationships) have a lower
  limit than the streamed ones (sheets, shared strings); no text or attribute in the
  XML may run longer than ``MAX_MARKUP_FREE_BYTES`` without markup;
- XML: ``defusedxml`` (a dependency, which openpyxl uses when it is installed) refuses
  entity declarations, so no entity expansion; sheets and the shared-strings table are
  parsed by the bounded parsers here, which keep only the row (or string) being read,
  where openpyxl's own read-only parsers keep an emptied element for everything read;
- the shared-strings table, which has to be held whole, is capped in strings and
  characters, rows and columns are capped at Excel's own limits, and one row may hold
  at most ``MAX_ROW_ELEMENTS`` XML elements.
"""

from __future__ import annotations

import struct
import warnings
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, ClassVar

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import iterparse
from openpyxl.cell.text import Text
from openpyxl.reader.excel import ExcelReader
from openpyxl.utils import get_column_letter
from openpyxl.utils.exceptions import InvalidFileException
from openpyxl.worksheet._read_only import ReadOnlyWorksheet
from openpyxl.worksheet._reader import (
    DATA_TAG,
    DIMENSION_TAG,
    ROW_TAG,
    SheetDimension,
    WorkSheetParser,
)
from openpyxl.xml.constants import SHARED_STRINGS, SHEET_MAIN_NS

from recova.connectors.base import Record, Resume, Source, SourceError
from recova.connectors.csv_file import checked_path

if TYPE_CHECKING:
    from recova.platform.kernel.config import Settings

_ZIP_SIGNATURE = b"PK\x03\x04"
# Old .xls workbooks, and .xlsx workbooks saved with a password, are OLE containers.
_OLE_SIGNATURE = b"\xd0\xcf\x11\xe0"

MiB = 1024 * 1024
#: Excel's own limits: a sheet never has more rows or columns than these.
EXCEL_MAX_ROWS = 1_048_576
EXCEL_MAX_COLUMNS = 16_384
#: The zip directory: Python reads it whole and keeps an object per part.
MAX_PARTS = 10_000
MAX_DIRECTORY_BYTES = 4 * MiB
#: Parts openpyxl parses whole into objects (workbook, styles, relationships, theme).
MAX_WHOLE_PART_BYTES = 16 * MiB
#: The longest text or attribute value (a cell holds at most 32,767 characters).
MAX_MARKUP_FREE_BYTES = 1 * MiB
#: XML elements in one row (16,384 cells with their values and inline strings).
MAX_ROW_ELEMENTS = 200_000
#: Characters in the shared-strings table, which is held in memory whole.
MAX_SHARED_STRING_CHARS = 64_000_000
#: Small parts may compress well beyond the ratio (an empty sheet, styles); past this
#: many unpacked bytes the ratio applies (Apache POI's zip-bomb check does the same).
RATIO_GRACE_BYTES = 1 * MiB
_XML_SUFFIXES = (".xml", ".rels", ".vml")


@dataclass(frozen=True)
class WorkbookLimits:
    """How far one workbook may unpack; set through ``Settings`` (``RECOVA_XLSX_*``)."""

    #: Unpacked bytes of one part (a sheet, the shared strings).
    max_part_bytes: int = 1024 * MiB
    #: Unpacked bytes of all parts together.
    max_total_bytes: int = 2048 * MiB
    #: Unpacked bytes per compressed byte of one part.
    max_ratio: int = 100
    #: Strings in the shared-strings table.
    max_shared_strings: int = 2_000_000

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> WorkbookLimits:
        """The limits a run's source options ask for (``xlsx_max_part_bytes`` ...)."""
        values: dict[str, int] = {}
        for name in ("max_part_bytes", "max_total_bytes", "max_ratio", "max_shared_strings"):
            value = options.get(f"xlsx_{name}")
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise SourceError(f"the xlsx_{name} option must be a positive whole number")
            values[name] = value
        return cls(**values)


def workbook_options(settings: Settings) -> dict[str, int]:
    """The source options that carry the configured ``WorkbookLimits`` to a run."""
    return {
        "xlsx_max_part_bytes": settings.xlsx_max_part_bytes,
        "xlsx_max_total_bytes": settings.xlsx_max_total_bytes,
        "xlsx_max_ratio": settings.xlsx_max_ratio,
        "xlsx_max_shared_strings": settings.xlsx_max_shared_strings,
    }


class WorkbookRefused(SourceError):
    """The workbook is over one of the reading limits; the message names part and limit."""


def _size(count: int) -> str:
    if count >= MiB:
        return f"{count / MiB:,.0f} MiB"
    return f"{count:,} bytes"


def _column_letter(position: int) -> str:
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


# --- the zip archive, bounded ------------------------------------------------------------


def _check_directory(stream: IO[bytes], archive_size: int) -> None:
    """Refuse a zip directory too large to read, before ``zipfile`` reads it whole."""
    tail_size = min(archive_size, 22 + 65_535)
    stream.seek(archive_size - tail_size)
    tail = stream.read(tail_size)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < 22:
        return  # not a zip archive: zipfile says so
    _, _, _, _, entries, directory_size, _, _ = struct.unpack("<4s4H2LH", tail[at : at + 22])
    locator = at - 20
    if (entries == 0xFFFF or directory_size == 0xFFFFFFFF) and locator >= 0:
        signature, _, end64, _ = struct.unpack("<4sLQL", tail[locator:at])
        if signature == b"PK\x06\x07" and end64 + 56 <= archive_size:
            stream.seek(end64)
            record = stream.read(56)
            if record[:4] == b"PK\x06\x06":
                entries, directory_size = struct.unpack("<2Q", record[32:48])
    if directory_size > MAX_DIRECTORY_BYTES or entries > MAX_PARTS:
        raise WorkbookRefused(
            f"the workbook's zip directory lists {entries:,} parts in {_size(directory_size)},"
            f" more than the limit of {MAX_PARTS:,} parts in {_size(MAX_DIRECTORY_BYTES)}"
        )
    stream.seek(0)


def _check_declared(archive: zipfile.ZipFile, limits: WorkbookLimits, archive_size: int) -> None:
    """Refuse what the zip directory declares past the limits, before unpacking a byte."""
    parts = archive.infolist()
    if len(parts) > MAX_PARTS:
        raise WorkbookRefused(
            f"the workbook holds {len(parts):,} parts, more than the limit of {MAX_PARTS:,}"
        )
    total = 0
    for part in parts:
        if part.file_size > limits.max_part_bytes:
            raise WorkbookRefused(
                f"the workbook's part {part.filename!r} unpacks to {_size(part.file_size)},"
                f" more than the limit of {_size(limits.max_part_bytes)} per part"
            )
        _check_ratio(part, part.file_size, limits)
        if part.header_offset + part.compress_size > archive_size:
            raise SourceError(
                f"the workbook is damaged: its part {part.filename!r} runs past the end of the file"
            )
        total += part.file_size
        if total > limits.max_total_bytes:
            raise WorkbookRefused(
                f"the workbook unpacks to more than {_size(limits.max_total_bytes)} in all,"
                " the limit"
            )


def _check_ratio(part: zipfile.ZipInfo, unpacked: int, limits: WorkbookLimits) -> None:
    if unpacked <= RATIO_GRACE_BYTES:
        return
    ratio = unpacked / max(part.compress_size, 1)
    if ratio > limits.max_ratio:
        raise WorkbookRefused(
            f"the workbook's part {part.filename!r} is compressed {ratio:,.0f} to 1, more than"
            f" the limit of {limits.max_ratio:,} to 1 (the file looks like a zip bomb)"
        )


class _GuardedArchive(zipfile.ZipFile):
    """A zip archive whose parts can only be read through ``_GuardedPart``."""

    def __init__(self, stream: IO[bytes], limits: WorkbookLimits) -> None:
        super().__init__(stream)
        self.limits = limits
        self.unpacked: dict[str, int] = {}
        self.total = 0

    def open(self, name: Any, mode: str = "r", pwd: bytes | None = None, **_: Any) -> Any:
        """A part streamed by openpyxl (a sheet, the shared strings)."""
        if mode != "r":
            raise ValueError("a workbook is only read")
        return self._guarded(name, self.limits.max_part_bytes)

    def read(self, name: Any, pwd: bytes | None = None) -> bytes:
        """A part openpyxl parses whole: a lower limit."""
        with self._guarded(name, min(MAX_WHOLE_PART_BYTES, self.limits.max_part_bytes)) as part:
            return part.read()

    def _guarded(self, name: Any, limit: int) -> _GuardedPart:
        info = name if isinstance(name, zipfile.ZipInfo) else self.getinfo(name)
        if info.file_size > limit:
            raise WorkbookRefused(
                f"the workbook's part {info.filename!r} unpacks to {_size(info.file_size)},"
                f" more than the limit of {_size(limit)} for a part of its kind"
            )
        return _GuardedPart(super().open(info), info, limit, self)

    def count(self, part: zipfile.ZipInfo, unpacked: int) -> None:
        """Add a part's newly unpacked bytes to the total (a part read twice counts once)."""
        before = self.unpacked.get(part.filename, 0)
        if unpacked > before:
            self.unpacked[part.filename] = unpacked
            self.total += unpacked - before
            if self.total > self.limits.max_total_bytes:
                raise WorkbookRefused(
                    f"the workbook unpacks to more than {_size(self.limits.max_total_bytes)}"
                    f" in all (reading {part.filename!r}), the limit"
                )


class _GuardedPart:
    """One part's unpacked bytes, counted: past a limit, reading raises."""

    def __init__(
        self, raw: IO[bytes], info: zipfile.ZipInfo, limit: int, archive: _GuardedArchive
    ) -> None:
        self._raw = raw
        self._info = info
        self._limit = limit
        self._archive = archive
        self._unpacked = 0
        self._xml = info.filename.lower().endswith(_XML_SUFFIXES)
        self._markup_free = 0  # bytes since the last "<"

    def read(self, size: int | None = -1) -> bytes:
        """Up to ``size`` unpacked bytes (all that is left when negative)."""
        if size is None or size < 0:
            chunks = []
            while chunk := self.read(MiB):
                chunks.append(chunk)
            return b"".join(chunks)
        try:
            data = self._raw.read(size)
        except zipfile.BadZipFile:
            raise SourceError(
                f"the workbook is damaged: its part {self._info.filename!r} does not match"
                f" its zip directory entry (which declares {self._info.file_size:,} bytes):"
                " its data is longer or its checksum differs"
            ) from None
        except (zlib.error, EOFError):
            raise SourceError(
                f"the workbook is damaged: its part {self._info.filename!r} cannot be unpacked"
            ) from None
        self._unpacked += len(data)
        if self._unpacked > self._limit:
            raise WorkbookRefused(
                f"the workbook's part {self._info.filename!r} unpacks to more than"
                f" {_size(self._limit)}, the limit for a part of its kind"
            )
        _check_ratio(self._info, self._unpacked, self._archive.limits)
        self._archive.count(self._info, self._unpacked)
        if self._xml and data:
            self._check_markup(data)
        return data

    def _check_markup(self, data: bytes) -> None:
        first = data.find(b"<")
        if first < 0:
            longest = self._markup_free + len(data)
            self._markup_free = longest
        else:
            longest = self._markup_free + first
            if len(data) > MAX_MARKUP_FREE_BYTES:  # only whole reads are this long
                longest = max(longest, *(len(run) for run in data.split(b"<")))
            self._markup_free = len(data) - data.rfind(b"<") - 1
        if longest > MAX_MARKUP_FREE_BYTES:
            raise WorkbookRefused(
                f"the workbook's part {self._info.filename!r} holds a text or attribute longer"
                f" than {_size(MAX_MARKUP_FREE_BYTES)}, the limit"
            )

    def close(self) -> None:
        self._raw.close()

    def __enter__(self) -> _GuardedPart:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


# --- XML, bounded ------------------------------------------------------------------------


def _iterparse(source: Any) -> Iterator[tuple[str, Any]]:
    return iterparse(source, events=("start", "end"))  # type: ignore[no-any-return]


def _read_shared_strings(source: Any, limits: WorkbookLimits) -> list[str]:
    """The shared-strings table, keeping no element once its string is taken."""

    string_tag = f"{{{SHEET_MAIN_NS}}}si"
    strings: list[str] = []
    characters = 0
    open_elements: list[Any] = []
    inside = 0  # elements inside the string being read
    for event, element in _iterparse(source):
        if event == "start":
            open_elements.append(element)
            if len(open_elements) > 2:
                inside += 1
                if inside > MAX_ROW_ELEMENTS:
                    raise WorkbookRefused(
                        f"a shared string of the workbook holds more than {MAX_ROW_ELEMENTS:,}"
                        " XML elements, the limit"
                    )
            continue
        open_elements.pop()
        if len(open_elements) != 1:
            continue  # the table itself, or inside a string: kept until the string ends
        if element.tag == string_tag:
            text = Text.from_tree(element).content.replace("x005F_", "")
            strings.append(text)
            characters += len(text)
            if len(strings) > limits.max_shared_strings:
                raise WorkbookRefused(
                    f"the workbook's shared-strings table holds more than"
                    f" {limits.max_shared_strings:,} strings, the limit"
                )
            if characters > MAX_SHARED_STRING_CHARS:
                raise WorkbookRefused(
                    f"the workbook's shared-strings table holds more than"
                    f" {MAX_SHARED_STRING_CHARS:,} characters, the limit"
                )
        inside = 0
        open_elements[0].remove(element)
    return strings


def _bounded_classes() -> tuple[type, type]:
    """openpyxl's read-only reader and sheet, with the bounded parsers plugged in."""

    class BoundedSheetParser(WorkSheetParser):  # type: ignore[misc]
        """Yields rows like openpyxl's, keeping nothing it has read but the current row."""

        def parse(self) -> Iterator[tuple[int, list[dict[str, Any]]]]:
            open_elements: list[Any] = []
            in_row = 0
            for event, element in _iterparse(self.source):
                if event == "start":
                    open_elements.append(element)
                    if len(open_elements) > 3 and open_elements[2].tag == ROW_TAG:
                        in_row += 1
                        if in_row > MAX_ROW_ELEMENTS:
                            raise WorkbookRefused(
                                f"row {self.row_counter + 1} of the sheet holds more than"
                                f" {MAX_ROW_ELEMENTS:,} XML elements, the limit"
                            )
                    continue
                open_elements.pop()
                depth = len(open_elements)
                if depth >= 3 and open_elements[2].tag == ROW_TAG:
                    continue  # inside a row: its cells are read when the row ends
                if depth == 2 and element.tag == ROW_TAG and open_elements[1].tag == DATA_TAG:
                    row = self.parse_row(element)
                    in_row = 0
                    open_elements[1].remove(element)
                    yield row
                elif depth:
                    open_elements[-1].remove(element)  # nothing else is needed

        def parse_row(self, row: Any) -> tuple[int, list[dict[str, Any]]]:
            number, cells = super().parse_row(row)
            self.row_dimensions.clear()  # heights and styles: not read, never kept
            if number > EXCEL_MAX_ROWS:
                raise WorkbookRefused(
                    f"the sheet has a row numbered {number:,}, beyond Excel's last row"
                    f" ({EXCEL_MAX_ROWS:,})"
                )
            for cell in cells:
                if cell["column"] > EXCEL_MAX_COLUMNS:
                    raise WorkbookRefused(
                        f"row {number:,} of the sheet has a cell in column {cell['column']:,},"
                        f" beyond Excel's last column (XFD, {EXCEL_MAX_COLUMNS:,})"
                    )
            return number, cells

        def parse_dimensions(self) -> tuple[int, int, int, int] | None:
            open_elements: list[Any] = []
            for event, element in _iterparse(self.source):
                if event == "start":
                    if element.tag == DATA_TAG:
                        return None  # no dimension before the rows
                    open_elements.append(element)
                    continue
                open_elements.pop()
                if element.tag == DIMENSION_TAG:
                    try:
                        boundaries = SheetDimension.from_tree(element).boundaries
                    except (TypeError, ValueError):
                        return None
                    return boundaries  # type: ignore[no-any-return]
                if open_elements:
                    open_elements[-1].remove(element)
            return None

    class BoundedSheet(ReadOnlyWorksheet):  # type: ignore[misc]
        """A read-only sheet whose rows come from ``BoundedSheetParser``."""

        def _get_size(self) -> None:
            with self._get_source() as source:
                dimensions = BoundedSheetParser(source, []).parse_dimensions()
            if dimensions is not None:
                self._min_column, self._min_row, self._max_column, self._max_row = dimensions

        def _cells_by_row(
            self,
            min_col: int,
            min_row: int,
            max_col: int | None,
            max_row: int | None,
            values_only: bool = False,
        ) -> Iterator[Any]:
            # openpyxl's own loop (missing rows filled), over the bounded parser.
            max_col = max_col or self.max_column
            max_row = max_row or self.max_row
            empty_row: tuple[Any, ...] = ()
            if max_col is not None:
                empty_row = (None,) * (max_col + 1 - min_col)
            counter = min_row
            with self._get_source() as source:
                parser = BoundedSheetParser(
                    source,
                    self._shared_strings,
                    data_only=self.parent.data_only,
                    epoch=self.parent.epoch,
                    date_formats=self.parent._date_formats,
                    timedelta_formats=self.parent._timedelta_formats,
                )
                for index, row in parser.parse():
                    if max_row is not None and index > max_row:
                        break
                    for _ in range(counter, index):
                        counter += 1
                        yield empty_row
                    if counter <= index:
                        counter += 1
                        yield self._get_row(row, min_col, max_col, values_only=True)

    class BoundedReader(ExcelReader):  # type: ignore[misc]
        """openpyxl's reader, read-only, over a guarded archive and the bounded parsers."""

        archive: zipfile.ZipFile

        def __init__(self, stream: IO[bytes], limits: WorkbookLimits) -> None:
            super().__init__(stream, read_only=True, data_only=True)
            self.archive.close()  # the stream stays open: zipfile did not open it
            self.archive = _GuardedArchive(stream, limits)
            self.valid_files = self.archive.namelist()
            self.limits = limits

        def read_strings(self) -> None:
            part = self.package.find(SHARED_STRINGS)
            if part is not None:
                with self.archive.open(part.PartName[1:]) as source:
                    self.shared_strings = _read_shared_strings(source, self.limits)

        def read_worksheets(self) -> None:
            for sheet, rel in self.parser.find_sheets():
                if rel.target not in self.valid_files or "chartsheet" in rel.Type:
                    continue  # a chart has no rows to read
                worksheet = BoundedSheet(self.wb, sheet.name, rel.target, self.shared_strings)
                worksheet.sheet_state = sheet.state
                self.wb._sheets.append(worksheet)

    return BoundedReader, BoundedSheet


def _entities_refused(error: BaseException) -> bool:
    while error is not None:
        if isinstance(error, DefusedXmlException):
            return True
        error = error.__cause__ or error.__context__  # type: ignore[assignment]
    return False


_ENTITIES = SourceError(
    "the workbook's XML declares entities or a document type, which Excel never writes;"
    " it is refused (an entity-expansion attack?)"
)


@contextmanager
def _open_workbook(path: Path, limits: WorkbookLimits) -> Iterator[Any]:
    """The workbook opened for streaming within ``limits``, closed on the way out."""

    reader_class, _ = _bounded_classes()
    # A file object, not the path: openpyxl refuses paths by their extension, and
    # uploads arrive as temporary files named anything.
    with path.open("rb") as stream:
        if stream.read(4) != _ZIP_SIGNATURE:
            raise _not_a_workbook(path)
        size = path.stat().st_size
        try:
            _check_directory(stream, size)
            with zipfile.ZipFile(stream) as archive:
                _check_declared(archive, limits, size)
            stream.seek(0)
            with warnings.catch_warnings():
                # openpyxl warns about parts it drops (data validation, extensions);
                # they do not change cell values and a tenant cannot act on them.
                warnings.filterwarnings("ignore", category=UserWarning, module="openpyxl")
                reader = reader_class(stream, limits)
                reader.read()
                workbook = reader.wb
        except SourceError:
            raise
        except (zipfile.BadZipFile, KeyError, InvalidFileException, OSError, ValueError) as error:
            if _entities_refused(error):
                raise _ENTITIES from None
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
    except SourceError:
        raise
    except (
        zipfile.BadZipFile,
        zlib.error,
        EOFError,
        KeyError,
        IndexError,
        TypeError,
        ValueError,
        SyntaxError,
    ) as error:
        if _entities_refused(error):
            raise _ENTITIES from None
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
        with _open_workbook(path, WorkbookLimits.from_options(source.options)) as workbook:
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
            with _open_workbook(path, WorkbookLimits.from_options(source.options)) as workbook:
                max_row = _sheet(workbook, source).max_row
        except SourceError:
            return None
        if max_row is None or max_row > EXCEL_MAX_ROWS:
            return None  # none recorded, or not one Excel could have written
        return max(max_row - 1, 0)
