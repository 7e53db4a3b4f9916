"""The JSON lines connector: one JSON object per line, UTF-8 (a BOM is tolerated)."""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from recova.connectors.base import Record, Resume, Source, SourceError
from recova.connectors.csv_file import SAMPLE_BYTES, binary_content, checked_path

# Problem lines are held back until the first good one, so that a file with no good
# line is refused instead of half-read; past this many, the file is not JSON lines.
MAX_LEADING_PROBLEMS = 1000

_JSON_TYPES = {list: "an array", str: "a string", bool: "true or false", type(None): "null"}


def _line_problem(
    number: int, line: bytes, *, last: bool = False
) -> tuple[dict[str, Any] | None, str | None, str | None]:
    """The line's object, or why it is not one (without any of its content) and, when
    one key is at fault, which. ``last`` is a last line without a line break."""
    try:
        text = line.decode("utf-8").strip()
    except UnicodeDecodeError:
        return None, *_undecodable(number, line)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        return None, _json_error(number, text, error, last=last), None
    except ValueError:
        # Integers over Python's digit limit (4,300) fail outside the JSON decoder.
        return None, f"line {number} is not a JSON object: a number is too long", None
    except RecursionError:
        return None, f"line {number} is not a JSON object: it is nested too deeply", None
    if not isinstance(value, dict):
        kind = _JSON_TYPES.get(type(value), "a number")
        return None, f"line {number} is not a JSON object: it is {kind}", None
    return value, None, None


def _json_error(number: int, text: str, error: json.JSONDecodeError, *, last: bool) -> str:
    # ``error.msg`` is the reason alone; the document itself, also on the error, must
    # stay out of the message.
    if last:  # the last line, without its line break: cut short, most likely
        return (
            f"line {number} is not a whole JSON object and has no line break:"
            " the file looks truncated"
        )
    if error.pos >= len(text):
        where = "at the end"
    elif error.msg.endswith(" at"):  # "Unterminated string starting at"
        where = f"character {error.pos + 1}"
    else:
        where = f"at character {error.pos + 1}"
    return f"line {number} is not a JSON object: {error.msg} {where}"


def _undecodable(number: int, line: bytes) -> tuple[str, str | None]:
    """Why a line that is not UTF-8 is refused, naming the key whose value holds the
    bad bytes when the rest of the line is a JSON object."""
    problem = f"line {number} is not valid UTF-8"
    try:
        value = json.loads(line.decode("utf-8", errors="surrogateescape"))
    except (ValueError, RecursionError):
        return problem, None
    if isinstance(value, dict):
        for key, item in value.items():
            if not _has_surrogates(key) and _has_surrogates(item):
                return f"line {number}, key {key}, is not valid UTF-8", key
    return problem, None


def _has_surrogates(value: object) -> bool:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_has_surrogates(k) or _has_surrogates(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_surrogates(item) for item in value)
    return False


class JsonLinesConnector:
    """Reads a JSON lines file, one record per non-blank line."""

    name: ClassVar[str] = "jsonl"
    kind: ClassVar[str] = "file"

    def records(self, source: Source, *, resume: Resume | None = None) -> Iterator[Record]:
        """Yield one record per object line, skipping lines up to ``resume["number"]``."""
        path, size = checked_path(source)
        with path.open("rb") as stream:
            sample = stream.read(SAMPLE_BYTES)
        if len(sample) >= size and not sample.strip():
            raise SourceError("the file is empty")
        looks_like = binary_content(sample)
        if looks_like is not None:
            raise SourceError(f"the file is not JSON lines text: it looks like {looks_like}")
        source.info.update(encoding="utf-8-sig" if sample.startswith(codecs.BOM_UTF8) else "utf-8")

        resumed_through = int(resume["number"]) if resume and "number" in resume else 0
        # A resumed run already knows the file has good lines; a fresh one holds back
        # problem lines until it sees one.
        held: list[Record] | None = None if resumed_through else []
        seen_any = False
        with path.open("rb") as stream:
            for number, raw_line in enumerate(stream, start=1):
                if number <= resumed_through:
                    continue
                line = raw_line.removeprefix(codecs.BOM_UTF8) if number == 1 else raw_line
                if not line.strip():
                    continue
                seen_any = True
                last = not line.endswith((b"\n", b"\r"))
                values, problem, column = _line_problem(number, line, last=last)
                record = Record(
                    number, values if values is not None else {}, problem, column=column
                )
                if held is None:
                    yield record
                elif problem is None:
                    yield from held
                    held = None
                    yield record
                else:
                    held.append(record)
                    if len(held) >= MAX_LEADING_PROBLEMS:
                        raise SourceError(
                            f"none of the first {MAX_LEADING_PROBLEMS} lines is a JSON object"
                            f" ({held[0].problem}); is this a JSON lines file?"
                        )
        if not seen_any and not resumed_through:
            raise SourceError("the file is empty")
        if held:
            raise SourceError(
                f"no line of the file is a JSON object ({held[0].problem}); a file holding"
                " one JSON array must be exported as one object per line"
            )

    def estimate_total(self, source: Source) -> int | None:
        """At most one record per line: the line breaks, plus a last unterminated line."""
        if source.path is None:
            return None
        count = 0
        try:
            with Path(source.path).open("rb") as stream:
                while chunk := stream.read(1024 * 1024):
                    count += chunk.count(b"\n")
        except OSError:
            return None
        return count + 1
