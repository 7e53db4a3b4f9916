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


def binary_content(sample: bytes) -> str | None:
    """What a sample that cannot be text looks like, or ``None`` if it may be text."""
    for signature, description in _SIGNATURES.items():
        if sample.startswith(signature):
            return description
    # Text in UTF-8 or any legacy encoding has no NUL bytes; UTF-16/32 text does, and
    # is accepted only with its BOM (which is how Excel writes it).
    if b"\x00" in sample and not sample.startswith(tuple(_BOMS)):
        return "binary data"
    return None


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
    best = charset_normalizer.from_bytes(sample).best()
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


@dataclass(slots=True)
class _Progress:
    """How far a read got, so a restarted (tolerant) pass can continue after it."""

    last_number: int = 0
    has_rows: bool = False
    header: list[str] | None = None


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
        try:
            yield from self._parse(
                path,
                encoding=encoding,
                delimiter=delimiter,
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
                delimiter=delimiter,
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
        delimiter: str,
        skip_through: int,
        progress: _Progress,
        tolerant: bool,
    ) -> Iterator[Record]:
        errors = "surrogateescape" if tolerant else "strict"
        label = _encoding_label(encoding)
        with path.open(encoding=encoding, errors=errors, newline="") as text:
            reader = csv.reader(text, delimiter=delimiter)
            number = 0
            header: list[str] | None = None
            try:
                for row in reader:
                    number += 1
                    if "".join(row).strip():
                        if tolerant and _has_undecodable("".join(row)):
                            raise SourceError(f"the header row is not valid {label}")
                        header = progress.header = _header_names(row)
                        break
                if header is None:
                    return
                # Records already handled (resume, or the strict pass before a bad
                # byte) are parsed, since a quoted field may span lines, but not built.
                if skip_through > number:
                    for _row in reader:
                        number += 1
                        if number >= skip_through:
                            break
                progress.last_number = number
                rows = _tolerant_records if tolerant else _strict_records
                yield from rows(reader, header, number, progress, label)
            except csv.Error as error:
                # csv's messages hold no field content ("field larger than field
                # limit (131072)"); the row that failed is the one after the last read.
                raise SourceError(
                    f"row {max(number, progress.last_number) + 1} cannot be read: {error}"
                    " (is a quote never closed?)"
                ) from None


def _strict_records(
    reader: Iterator[list[str]], header: list[str], number: int, progress: _Progress, label: str
) -> Iterator[Record]:
    """The data rows of a strictly decoded file: the path nearly every row takes."""
    try:
        # The first data row is taken apart from the rest so that the hot loop needs
        # no bookkeeping to know the file had rows.
        for row in reader:
            number += 1
            if any(row):
                progress.has_rows = True
                yield _irregular_record(number, header, row, label, tolerant=False)
                break

        # The hot loop: a length check, an emptiness check and one dict display.
        build = _row_builder(header)
        width = len(header)
        for row in reader:
            number += 1
            if len(row) == width and (row[0] or any(row)):
                yield Record(number, build(row))
            elif any(row):
                yield _irregular_record(number, header, row, label, tolerant=False)
    finally:
        # Read by records() after a bad byte stops this pass (raised by next(reader),
        # so ``number`` is the last row handled) and for error messages.
        progress.last_number = number


def _tolerant_records(
    reader: Iterator[list[str]], header: list[str], number: int, progress: _Progress, label: str
) -> Iterator[Record]:
    """The data rows of a file re-read after a bad byte, each checked for bad bytes."""
    try:
        for row in reader:
            number += 1
            if any(row):
                progress.has_rows = True
                yield _irregular_record(number, header, row, label, tolerant=True)
    finally:
        progress.last_number = number


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
    number: int, header: list[str], row: list[str], label: str, *, tolerant: bool
) -> Record:
    """A row off the fast path: wrong field count, or read by the tolerant pass."""
    width = len(header)
    if len(row) > width:
        values = dict(zip(header, row, strict=False))
        problem: str | None = f"row has {len(row)} fields, the header has {width}"
    else:
        # Fewer fields than the header: spreadsheet exports often drop trailing empty
        # cells, so the missing ones are empty values, not a broken row.
        values = dict(zip(header, row + [""] * (width - len(row)), strict=True))
        problem = None
    if tolerant and _has_undecodable("".join(row)):
        values = _without_undecodable(values)
        problem = f"bytes at row {number} are not valid {label}"
    return Record(number, values, problem)
