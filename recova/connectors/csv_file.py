"""The CSV connector: delimited text in UTF-8 (with or without BOM), GB18030 or what
charset-normalizer finds, with the delimiter sniffed from the first lines.

Also home to the small checks every file connector makes before parsing (size limit,
empty file, binary content), so the three file formats refuse bad uploads alike.
"""

from __future__ import annotations

import codecs
import csv
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import charset_normalizer

from recova.connectors.base import Record, Resume, Source, SourceError

DEFAULT_MAX_BYTES = 512 * 1024 * 1024

# charset-normalizer 3.5 told GB18030 from the rest on every one of 1,200 random samples
# of a six-column Chinese header (about 20 characters) with 0-5 rows, but calls two or
# three characters alone Big5 or UTF-16: below a line of Chinese text, tenants need the
# ``encoding`` option. 64 KiB gives it many lines of a real file for a few milliseconds.
SAMPLE_BYTES = 64 * 1024

# Only these: a sniffer allowed any character picks letters or spaces on odd files.
SNIFFABLE_DELIMITERS = ",;\t|"

# GBK and GB2312 are subsets of GB18030; decoding with the superset keeps the rare
# characters a detector's "GBK" label would reject (and costs nothing).
_SUPERSET = {"gbk": "gb18030", "gb2312": "gb18030"}

_BOMS = {
    codecs.BOM_UTF8: "utf-8-sig",
    codecs.BOM_UTF32_LE: "utf-32",
    codecs.BOM_UTF32_BE: "utf-32",
    codecs.BOM_UTF16_LE: "utf-16",
    codecs.BOM_UTF16_BE: "utf-16",
}

# Leading bytes of the formats tenants most often rename to .csv by mistake.
_SIGNATURES = {
    b"PK\x03\x04": "a zip archive or an Excel workbook (.xlsx)",
    b"\xd0\xcf\x11\xe0": "an old Excel workbook (.xls) or another Office file",
    b"%PDF": "a PDF document",
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
}


def max_bytes_option(options: Mapping[str, Any]) -> int:
    """The size limit a file source asked for, or the default."""
    value = options.get("max_bytes", DEFAULT_MAX_BYTES)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise SourceError("the max_bytes option must be a positive whole number")
    return value


def checked_path(source: Source) -> tuple[Path, int]:
    """The source's file and its size, refusing a missing, empty or too large file."""
    if source.path is None:
        raise SourceError("no file was given")
    path = Path(source.path)
    limit = max_bytes_option(source.options)
    try:
        size = path.stat().st_size
    except OSError:
        raise SourceError("the file could not be opened") from None
    if size == 0:
        raise SourceError("the file is empty")
    if size > limit:
        raise SourceError(
            f"the file is {_readable_size(size)}, more than the limit of {_readable_size(limit)}"
        )
    return path, size


# Text in UTF-8 or a legacy encoding has no NUL bytes: a stray one is a damaged row,
# many are binary data. UTF-16/32 text has NULs throughout and is accepted only with its
# BOM (which is how Excel writes it).
_BINARY_NULS = 8  # more NUL bytes than this, and than 1% of the sample: not text


def binary_content(sample: bytes) -> str | None:
    """What a sample that cannot be text looks like, or ``None`` if it may be text.

    A few stray NUL bytes do not make a file binary: the rows holding them are
    rejected, the rest load.
    """
    for signature, description in _SIGNATURES.items():
        if sample.startswith(signature):
            return description
    if sample.startswith(tuple(_BOMS)):
        return None
    if sample.count(b"\x00") > max(_BINARY_NULS, len(sample) // 100):
        return "binary data"
    return None


def holds_nul(path: Path) -> bool:
    """Whether the file holds a NUL byte anywhere (read in blocks, at memory speed)."""
    with path.open("rb") as stream:
        while block := stream.read(1024 * 1024):
            if b"\x00" in block:
                return True
    return False


def ends_with_line_break(path: Path, size: int) -> bool:
    """Whether the file's last line ends with a line break (spaces, tabs, NULs of a
    UTF-16/32 break and a DOS end-of-file mark after it aside)."""
    with path.open("rb") as stream:
        stream.seek(max(0, size - 64))
        tail = stream.read().rstrip(b" \t\x00\x1a")
    return tail.endswith((b"\n", b"\r"))


def count_line_breaks(path: Path) -> int:
    """How many line breaks (``\\n``, ``\\r\\n`` or a lone ``\\r``) the file holds."""
    breaks = 0
    with path.open("rb") as stream:
        while chunk := stream.read(1024 * 1024):
            # A "\r\n" split across two chunks counts twice: still an upper bound.
            breaks += chunk.count(b"\n") + chunk.count(b"\r") - chunk.count(b"\r\n")
    return breaks


def _readable_size(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.0f} MiB"
    if size >= 1024:
        return f"{size / 1024:.0f} KiB"
    return f"{size} bytes"


def _encoding_label(encoding: str) -> str:
    return "UTF-8" if encoding == "utf-8-sig" else encoding.upper()


def _explicit_encoding(name: Any, sample: bytes) -> str:
    if not isinstance(name, str):
        raise SourceError("the encoding option must be the name of an encoding")
    try:
        encoding = codecs.lookup(name).name
    except LookupError:
        raise SourceError(f"the encoding option names an unknown encoding: {name!r}") from None
    encoding = _SUPERSET.get(encoding, encoding)
    # An explicit "utf-8" on a file saved with a BOM must not glue the BOM to the
    # first column's name.
    if encoding == "utf-8" and sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    return encoding


def _detected_encoding(sample: bytes) -> str:
    for bom, encoding in _BOMS.items():
        if sample.startswith(bom):
            return encoding
    # Without a BOM the file is not UTF-16/32 (see binary_content): a stray NUL must not
    # make the detector think so.
    best = charset_normalizer.from_bytes(sample.replace(b"\x00", b"")).best()
    if best is None:
        raise SourceError("the file is not text in any encoding we recognise")
    encoding = codecs.lookup(best.encoding).name
    # A sample in plain ASCII says nothing about later rows; UTF-8 reads ASCII the
    # same and also reads the names and addresses further down.
    if encoding == "ascii":
        return "utf-8"
    return _SUPERSET.get(encoding, encoding)


def _sniffed_delimiter(text: str) -> str | None:
    try:
        dialect = csv.Sniffer().sniff(text, delimiters=SNIFFABLE_DELIMITERS)
    except csv.Error:
        return None
    delimiter = str(dialect.delimiter)
    return delimiter if delimiter in SNIFFABLE_DELIMITERS else None


def _whole_lines(sample: bytes, whole_file: bool) -> bytes:
    """The sample cut after its last line break, so no character is cut in half."""
    if whole_file:
        return sample
    cut = max(sample.rfind(b"\n"), sample.rfind(b"\r"))
    return sample[: cut + 1] if cut > 0 else sample


def _header_names(row: list[str]) -> list[str]:
    names = [name.strip() for name in row]
    # A BOM left by a wrong explicit encoding would make the first name unmatchable.
    names[0] = names[0].lstrip("\ufeff").strip()
    seen: dict[str, int] = {}
    for position, name in enumerate(names, start=1):
        if not name:
            raise SourceError(f"column {position} of the header row has no name")
        if name in seen:
            raise SourceError(
                f"columns {seen[name]} and {position} of the header row have the same name"
            )
        seen[name] = position
    return names


def _has_undecodable(text: str) -> bool:
    # The tolerant pass decodes with "surrogateescape", which turns each bad byte into
    # a lone surrogate; those, and only those, cannot be encoded back to UTF-8.
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _without_undecodable(values: dict[str, Any]) -> dict[str, Any]:
    return {
        key: "".join("\ufffd" if "\udc80" <= char <= "\udcff" else char for char in value)
        for key, value in values.items()
    }


# Read after the file's last line: a row of its own when the file ends cleanly, or the
# end of a quoted field that the file never closes (so that row is known to be cut).
_END_MARK = "\x00recova:end-of-file\x00"


def _with_end_mark(text: Iterator[str], end_line: list[str]) -> Iterator[str]:
    yield from text
    yield end_line[0]


@dataclass(slots=True)
class _Progress:
    """How far a read got, so a restarted (tolerant) pass can continue after it."""

    last_number: int = 0
    has_rows: bool = False
    header: list[str] | None = None


@dataclass(frozen=True, slots=True)
class _Shape:
    """What the rows loop needs to know about the file beyond its header."""

    label: str  # the encoding, for messages
    delimiter: str
    #: The last line ends with a line break (a file cut short does not).
    ends_with_break: bool
    #: Check every row for NUL characters (the file holds a NUL byte, or is UTF-16/32).
    check_nul: bool


class CsvConnector:
    """Reads a delimited text file, one record per CSV row after the header."""

    name: ClassVar[str] = "csv"
    kind: ClassVar[str] = "file"

    def records(self, source: Source, *, resume: Resume | None = None) -> Iterator[Record]:
        """Yield the file's data rows in order, skipping those up to ``resume["number"]``."""
        path, size = checked_path(source)
        with path.open("rb") as stream:
            sample = stream.read(SAMPLE_BYTES)
        whole_file = len(sample) >= size
        if whole_file and not sample.strip():
            raise SourceError("the file is empty")
        looks_like = binary_content(sample)
        if looks_like is not None:
            raise SourceError(f"the file is not CSV text: it looks like {looks_like}")

        sample = _whole_lines(sample, whole_file)
        options = source.options
        if options.get("encoding"):
            encoding = _explicit_encoding(options["encoding"], sample)
        else:
            encoding = _detected_encoding(sample)
        explicit_delimiter = options.get("delimiter")
        if explicit_delimiter:
            if not isinstance(explicit_delimiter, str) or len(explicit_delimiter) != 1:
                raise SourceError("the delimiter option must be a single character")
            delimiter = explicit_delimiter
            delimiter_from = "option"
        else:
            sniffed = _sniffed_delimiter(sample.decode(encoding, errors="replace"))
            # One column, or nothing regular enough to sniff: a comma is the usual.
            delimiter, delimiter_from = (sniffed, "sniffed") if sniffed else (",", "default")
        source.info.update(
            encoding=encoding,
            encoding_from="option" if options.get("encoding") else "detected",
            delimiter=delimiter,
            delimiter_from=delimiter_from,
        )

        resumed_through = int(resume["number"]) if resume and "number" in resume else 0
        progress = _Progress()
        shape = _Shape(
            label=_encoding_label(encoding),
            delimiter=delimiter,
            ends_with_break=ends_with_line_break(path, size),
            # A NUL in UTF-16/32 bytes says nothing; only decoding does.
            check_nul=encoding.startswith("utf-16")
            or encoding.startswith("utf-32")
            or holds_nul(path),
        )
        try:
            yield from self._parse(
                path,
                encoding=encoding,
                shape=shape,
                skip_through=resumed_through,
                progress=progress,
                tolerant=False,
            )
        except UnicodeDecodeError:
            # Bad bytes somewhere after the sample. Decoding strictly keeps the common
            # case free of per-row checks; only now re-read tolerantly, skip what was
            # already yielded, and mark the rows that hold undecodable bytes.
            skip_through = max(resumed_through, progress.last_number)
            yield from self._parse(
                path,
                encoding=encoding,
                shape=shape,
                skip_through=skip_through,
                progress=progress,
                tolerant=True,
            )
        if progress.header is None:
            raise SourceError("the file is empty")
        if not progress.has_rows and not resumed_through:
            # A resumed run skipped rows the first run already saw; only a full read
            # can tell that there are none.
            raise SourceError("the file has a header but no rows")

    def estimate_total(self, source: Source) -> int | None:
        """At most one record per line break: the header takes one and the last line
        may have none."""
        if source.path is None:
            return None
        try:
            return count_line_breaks(Path(source.path))
        except OSError:
            return None

    @staticmethod
    def _parse(
        path: Path,
        *,
        encoding: str,
        shape: _Shape,
        skip_through: int,
        progress: _Progress,
        tolerant: bool,
    ) -> Iterator[Record]:
        errors = "surrogateescape" if tolerant else "strict"
        with path.open(encoding=encoding, errors=errors, newline="") as text:
            end_line = [_END_MARK + "\n"]
            reader = csv.reader(_with_end_mark(text, end_line), delimiter=shape.delimiter)
            number = 0
            header: list[str] | None = None
            try:
                for row in reader:
                    number += 1
                    if row[:1] == [_END_MARK]:
                        return  # the end of the file, and no header on the way
                    if "".join(row).strip():
                        if _END_MARK in row[-1]:
                            raise SourceError(
                                "the header row ends inside a quoted field"
                                " (is a quote never closed?)"
                            )
                        if tolerant and _has_undecodable("".join(row)):
                            raise SourceError(f"the header row is not valid {shape.label}")
                        header = progress.header = _header_names(row)
                        break
                if header is None:
                    return
                # The end mark has more fields than the header: never a data row.
                end_line[0] = _END_MARK + shape.delimiter * len(header) + "\n"
                # Records already handled (resume, or the strict pass before a bad
                # byte) are parsed, since a quoted field may span lines, but not built.
                if skip_through > number:
                    for skipped in reader:
                        number += 1
                        if skipped[:1] == [_END_MARK]:
                            return  # resumed past the end
                        if number >= skip_through:
                            break
                progress.last_number = number
                yield from _records(reader, header, number, progress, shape, tolerant=tolerant)
            except csv.Error as error:
                # csv's messages hold no field content ("field larger than field
                # limit (131072)"); the row that failed is the one after the last read.
                raise SourceError(
                    f"row {max(number, progress.last_number) + 1} cannot be read: {error}"
                    " (is a quote never closed?)"
                ) from None


def _records(  # noqa: PLR0912 - the hot loop and its rare exits, kept in one place
    reader: Any,
    header: list[str],
    number: int,
    progress: _Progress,
    shape: _Shape,
    *,
    tolerant: bool,
) -> Iterator[Record]:
    """The data rows after the header, one record each.

    Each record is handed on once the next row is read, so the last one can be checked
    against a file cut short: a last line without its line break, ending inside a
    quoted field, or alone in having fewer fields than the header (exports that drop
    trailing empty cells do so on many rows) is a row error, never a wrong value. A
    row with a field over csv's size limit is a row error too, and reading
    goes on with the next line; over several lines it is a quote never closed, which
    would swallow the rest of the file, and the file is refused from there.
    """
    width = len(header)
    build = _row_builder(header)
    # Every row through the checking path: re-read after a bad byte, or NULs somewhere.
    careful = tolerant or shape.check_nul
    held: Record | None = None  # the newest record, not yet handed on
    held_fields = width
    short_rows = 0  # rows with fewer fields than the header: an export's style, if many
    ended = False  # the end mark was read as a row of its own
    line_before = reader.line_num
    try:
        while True:
            try:
                # The hot loop: a length check, an emptiness check and one dict display.
                for row in reader:
                    number += 1
                    if len(row) == width and not careful and (row[0] or any(row)):
                        if held is not None:
                            yield held
                        held = Record(number, build(row))
                        held_fields = width
                    elif "".join(row).strip():
                        if row[0] == _END_MARK:
                            ended = True
                            break
                        if held is not None:
                            yield held
                        held = _irregular_record(number, header, row, shape, careful=careful)
                        held_fields = len(row)
                        short_rows += held_fields < width
                    line_before = reader.line_num
                break
            except csv.Error as error:
                number += 1
                if reader.line_num - line_before > 1:
                    if held is not None:  # the rows before the break are kept
                        yield held
                        held = None
                    raise SourceError(
                        f"row {number} cannot be read: {error} (is a quote never closed?)"
                    ) from None
                if held is not None:
                    yield held
                held = Record(number, {}, f"row {number} cannot be read: {_csv_reason(error)}")
                held_fields = width
                line_before = reader.line_num
        if held is not None:
            # Fewer fields on the last row alone: it was cut short.
            short = held_fields < width and short_rows == 1
            yield _checked_last(held, held_fields, header, shape, ended=ended, short=short)
    finally:
        # Read by records() after a bad byte stops this pass (raised by next(reader)),
        # which re-reads from the record not yet handed on, and for error messages.
        if held is not None:
            progress.has_rows = True
        progress.last_number = number if held is None or ended else held.number - 1


def _csv_reason(error: csv.Error) -> str:
    text = str(error)
    if text.startswith("field larger than field limit"):
        return f"a field is longer than {csv.field_size_limit():,} characters"
    return text


def _checked_last(
    record: Record, fields: int, header: list[str], shape: _Shape, *, ended: bool, short: bool
) -> Record:
    """The file's last record, or a row error if the file looks cut short in it."""
    if not ended:
        # A quoted field took the end mark in: the row ends inside it.
        values = dict(record.values)
        column = None
        for name, value in values.items():
            if isinstance(value, str) and _END_MARK in value:
                values[name] = value[: value.index(_END_MARK)].removesuffix("\n")
                column = name
        return Record(
            record.number,
            values,
            "the row ends inside a quoted field: the file looks truncated"
            " (or a quote is never closed)",
            column=column,
        )
    if record.problem is not None:
        return record
    if not shape.ends_with_break:
        return Record(
            record.number,
            record.values,
            "the file looks truncated: its last row has no line break, so its last value"
            " may be cut short",
        )
    if short:
        return Record(
            record.number,
            record.values,
            f"the file looks truncated: its last row has {fields}"
            f" field{'' if fields == 1 else 's'}, the header has {len(header)}",
        )
    return record


def _row_builder(header: list[str]) -> Callable[[list[str]], dict[str, str]]:
    """A function that turns a row of exactly ``len(header)`` fields into its dict.

    It is compiled per file as a single dict display, which builds the dict about twice
    as fast as ``dict(zip(header, row))``; that is a fifth of the per-row cost.
    """
    width = len(header)
    names = ", ".join(f"k{i}" for i in range(width))
    items = ", ".join(f"k{i}: row[{i}]" for i in range(width))
    code = (
        f"def bind({names}):\n    def build(row):\n        return {{{items}}}\n    return build\n"
    )
    namespace: dict[str, Any] = {}
    # The compiled text holds only generated names and indices; the header's text is
    # passed in as arguments and never compiled.
    exec(code, namespace)  # noqa: S102
    build: Callable[[list[str]], dict[str, str]] = namespace["bind"](*header)
    return build


def _irregular_record(
    number: int, header: list[str], row: list[str], shape: _Shape, *, careful: bool
) -> Record:
    """A row off the fast path: wrong field count, or one to check for bad characters."""
    width = len(header)
    if len(row) > width:
        values = dict(zip(header, row, strict=False))
        problem: str | None = f"row has {len(row)} fields, the header has {width}"
    else:
        # Fewer fields than the header: spreadsheet exports often drop trailing empty
        # cells, so the missing ones are empty values, not a broken row.
        values = dict(zip(header, row + [""] * (width - len(row)), strict=True))
        problem = None
    if careful:
        joined = "".join(row)
        if "\x00" in joined:
            column = next((name for name, value in values.items() if "\x00" in value), None)
            values = {name: value.replace("\x00", "") for name, value in values.items()}
            return Record(
                number,
                values,
                f"column {column} holds a NUL byte (character 0), which text cannot hold;"
                " is the file damaged?",
                column=column,
            )
        if _has_undecodable(joined):
            column = next((name for name, value in values.items() if _has_undecodable(value)), None)
            values = _without_undecodable(values)
            return Record(
                number,
                values,
                f"bytes at row {number}, column {column}, are not valid {shape.label}",
                column=column,
            )
    return Record(number, values, problem)
