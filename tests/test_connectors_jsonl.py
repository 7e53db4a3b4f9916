"""The JSON lines connector: objects per line, problem lines, resume and refusals."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from recova.connectors.base import Record, Source, SourceError
from recova.connectors.jsonl import MAX_LEADING_PROBLEMS, JsonLinesConnector


def write(tmp_path: Path, data: bytes | str) -> Path:
    path = tmp_path / "upload.jsonl"
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def read(path: Path, **options: Any) -> list[Record]:
    return list(JsonLinesConnector().records(Source(path=path, options=options)))


def refusal(path: Path, **options: Any) -> str:
    with pytest.raises(SourceError) as caught:
        read(path, **options)
    return str(caught.value)


def test_each_object_line_is_a_record_numbered_by_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '{"name": "张伟", "amount": 10.5, "tags": ["a"], "address": {"city": "上海"}}\n'
        "\n"
        '{"name": "Bo", "amount": 7, "paid": null}\r\n',
    )

    records = read(path)

    assert [(r.number, r.values, r.problem, r.checkpoint) for r in records] == [
        (
            1,
            {"name": "张伟", "amount": 10.5, "tags": ["a"], "address": {"city": "上海"}},
            None,
            None,
        ),
        (3, {"name": "Bo", "amount": 7, "paid": None}, None, None),
    ]


def test_bom_is_tolerated(tmp_path: Path) -> None:
    source = Source(path=write(tmp_path, b'\xef\xbb\xbf{"a": 1}\n'))

    records = list(JsonLinesConnector().records(source))

    assert records[0].values == {"a": 1}
    assert source.info["encoding"] == "utf-8-sig"


def test_last_line_without_a_line_break_is_read(tmp_path: Path) -> None:
    assert [r.values for r in read(write(tmp_path, '{"a": 1}\n{"a": 2}'))] == [{"a": 1}, {"a": 2}]


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('{"name": "张伟", "id": "1101"', "Expecting ',' delimiter at the end"),
        ('{"name": 张伟}', "Expecting value at character 10"),
        ('["张伟", 1]', "it is an array"),
        ('"张伟"', "it is a string"),
        ("42", "it is a number"),
        ("true", "it is true or false"),
        ("null", "it is null"),
        ("1" * 5000, "a number is too long"),
    ],
)
def test_a_line_that_is_not_an_object_is_a_problem_without_its_content(
    tmp_path: Path, line: str, problem: str
) -> None:
    path = write(tmp_path, f'{{"a": 1}}\n{line}\n{{"a": 3}}\n')

    records = read(path)

    assert [(r.number, r.problem) for r in records] == [
        (1, None),
        (2, f"line 2 is not a JSON object: {problem}"),
        (3, None),
    ]
    assert records[1].values == {}
    assert "张伟" not in str(records[1].problem)


def test_invalid_utf8_line_is_a_problem(tmp_path: Path) -> None:
    records = read(write(tmp_path, b'{"a": 1}\n{"a": "\xff"}\n\xff\n'))

    assert (records[1].problem, records[1].column) == ("line 2, key a, is not valid UTF-8", "a")
    assert (records[2].problem, records[2].column) == ("line 3 is not valid UTF-8", None)


def test_problem_lines_before_the_first_good_one_are_yielded_in_order(tmp_path: Path) -> None:
    records = read(write(tmp_path, 'oops\n[1]\n{"a": 1}\nnope\n'))

    assert [(r.number, r.problem is None) for r in records] == [
        (1, False),
        (2, False),
        (3, True),
        (4, False),
    ]


def test_file_where_no_line_is_an_object_is_refused_and_says_so(tmp_path: Path) -> None:
    path = write(tmp_path, json.dumps([{"a": 1}, {"a": 2}], indent=2))

    message = refusal(path)

    assert message.startswith("no line of the file is a JSON object (line 1 is not")
    assert "one object per line" in message


def test_long_file_of_non_objects_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    path = write(tmp_path, "name,amount\n" + "张伟,1\n" * (MAX_LEADING_PROBLEMS * 5))

    message = refusal(path)

    assert message.startswith(f"none of the first {MAX_LEADING_PROBLEMS} lines is a JSON object")
    assert "张伟" not in message


def test_resume_by_number_skips_lines_up_to_it(tmp_path: Path) -> None:
    path = write(tmp_path, '{"a": 1}\n{"a": 2}\n\n{"a": 4}\n[5]\n')

    records = list(JsonLinesConnector().records(Source(path=path), resume={"number": 2}))

    assert [(r.number, r.problem is None) for r in records] == [(4, True), (5, False)]


def test_resume_where_only_problem_lines_remain_yields_them(tmp_path: Path) -> None:
    path = write(tmp_path, '{"a": 1}\n[2]\n')

    records = list(JsonLinesConnector().records(Source(path=path), resume={"number": 1}))

    assert [r.number for r in records] == [2]


@pytest.mark.parametrize("content", [b"", b"\n \r\n\t\n"], ids=["zero-bytes", "whitespace"])
def test_empty_file_is_refused(tmp_path: Path, content: bytes) -> None:
    assert refusal(write(tmp_path, content)) == "the file is empty"


def test_binary_file_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")

    assert refusal(path) == "the file is not JSON lines text: it looks like a PNG image"


def test_nul_bytes_are_refused_as_binary(tmp_path: Path) -> None:
    path = write(tmp_path, b'{"a": 1}\n' + b"\x00\x00\x00\x01" * 8)

    assert "binary data" in refusal(path)


def test_a_stray_nul_byte_is_a_problem_line_not_a_binary_file(tmp_path: Path) -> None:
    records = read(write(tmp_path, b'{"a": 1}\n{"a": "x\x00"}\n{"a": 3}\n'))

    assert [r.number for r in records] == [1, 2, 3]
    assert records[1].problem is not None
    assert records[1].problem.startswith("line 2 ")
    assert [r.problem for r in (records[0], records[2])] == [None, None]


def test_file_over_the_size_limit_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, '{"a": 1}\n' * 200)

    assert refusal(path, max_bytes=1000) == "the file is 2 KiB, more than the limit of 1000 bytes"


def test_estimate_total_counts_lines(tmp_path: Path) -> None:
    connector = JsonLinesConnector()
    path = write(tmp_path, '{"a": 1}\n\n{"a": 2}')

    assert connector.estimate_total(Source(path=path)) == 3
    assert connector.estimate_total(Source(path=tmp_path / "gone.jsonl")) is None


def test_an_unterminated_string_is_reported_without_a_doubled_word(tmp_path: Path) -> None:
    records = read(write(tmp_path, b'{"a": 1}\n{"a": "x\n{"a": 2}\n'))

    assert records[1].problem == (
        "line 2 is not a JSON object: Unterminated string starting at character 7"
    )


def test_a_last_line_cut_short_looks_truncated(tmp_path: Path) -> None:
    records = read(write(tmp_path, b'{"a": 1}\n{"amount": "1005'))

    assert records[1].problem == (
        "line 2 is not a whole JSON object and has no line break: the file looks truncated"
    )
