"""The CSV connector: encodings, delimiters, structural problems, resume and refusals."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from recova.connectors.base import Record, Source, SourceError
from recova.connectors.csv_file import SAMPLE_BYTES, CsvConnector

CHINESE_HEADER = ["借款人姓名", "身份证号", "手机号", "逾期天数", "逾期金额", "应还本金"]
CHINESE_NAMES = ["张伟", "王芳", "李娜", "刘洋", "陈静", "杨磊", "赵敏", "黄强", "周杰", "吴霞"]


def write(tmp_path: Path, data: bytes | str, name: str = "upload.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def read(path: Path, **options: Any) -> tuple[list[Record], Source]:
    source = Source(path=path, options=options)
    return list(CsvConnector().records(source)), source


def refusal(path: Path, **options: Any) -> str:
    with pytest.raises(SourceError) as caught:
        read(path, **options)
    return str(caught.value)


def chinese_rows(count: int) -> str:
    lines = [",".join(CHINESE_HEADER)]
    for i in range(count):
        name = CHINESE_NAMES[i % len(CHINESE_NAMES)]
        lines.append(f"{name},1101011990010{i:05d},1380000{i:04d},{i + 30},{i * 100}.50,{i * 90}")
    return "\r\n".join(lines) + "\r\n"


def test_utf8_file_gives_one_record_per_row_numbered_like_the_sheet(tmp_path: Path) -> None:
    path = write(tmp_path, "name,amount\nAda,10.50\nBo,7\n")

    records, source = read(path)

    assert [(r.number, r.values, r.problem, r.checkpoint) for r in records] == [
        (2, {"name": "Ada", "amount": "10.50"}, None, None),
        (3, {"name": "Bo", "amount": "7"}, None, None),
    ]
    assert source.info["encoding"] == "utf-8"
    assert source.info["delimiter"] == ","


def test_utf8_with_bom_keeps_the_bom_out_of_the_first_column_name(tmp_path: Path) -> None:
    path = write(tmp_path, "\ufeff借款人姓名,逾期金额\r\n张伟,100\r\n")

    records, source = read(path)

    assert records[0].values == {"借款人姓名": "张伟", "逾期金额": "100"}
    assert source.info["encoding"] == "utf-8-sig"


def test_explicit_utf8_on_a_bom_file_still_drops_the_bom(tmp_path: Path) -> None:
    path = write(tmp_path, "\ufeffname,amount\nAda,1\n")

    records, _ = read(path, encoding="utf-8")

    assert list(records[0].values) == ["name", "amount"]


def test_gbk_file_with_chinese_headers_is_detected_and_read_as_gb18030(tmp_path: Path) -> None:
    path = write(tmp_path, chinese_rows(20).encode("gbk"))

    records, source = read(path)

    assert source.info["encoding"] == "gb18030"
    assert source.info["encoding_from"] == "detected"
    assert len(records) == 20
    assert records[0].values == {
        "借款人姓名": "张伟",
        "身份证号": "110101199001000000",
        "手机号": "13800000000",
        "逾期天数": "30",
        "逾期金额": "0.50",
        "应还本金": "0",
    }
    assert records[-1].number == 21


def test_a_chinese_header_alone_is_enough_to_detect_gbk(tmp_path: Path) -> None:
    # The documented minimum: about one line of Chinese text (here the header and a row).
    path = write(tmp_path, chinese_rows(1).encode("gbk"))

    records, source = read(path)

    assert source.info["encoding"] == "gb18030"
    assert records[0].values["借款人姓名"] == "张伟"


def test_gb18030_only_characters_survive_because_gbk_is_read_as_its_superset(
    tmp_path: Path,
) -> None:
    # "𠀀" (U+20000) exists in GB18030 but not in GBK.
    text = chinese_rows(10).replace("王芳", "王𠀀", 1)
    path = write(tmp_path, text.encode("gb18030"))

    records, _ = read(path)

    assert records[1].values["借款人姓名"] == "王𠀀"
    assert all(r.problem is None for r in records)


def test_explicit_encoding_overrides_detection_for_tiny_files(tmp_path: Path) -> None:
    # Two characters are too few for any detector; the tenant names the encoding.
    path = write(tmp_path, "姓名\n张伟\n".encode("gbk"))

    records, source = read(path, encoding="GBK")

    assert records[0].values == {"姓名": "张伟"}
    assert source.info["encoding"] == "gb18030"
    assert source.info["encoding_from"] == "option"


def test_unknown_explicit_encoding_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "a\n1\n")

    assert "unknown encoding" in refusal(path, encoding="klingon-8")


def test_utf16_with_bom_as_excel_writes_unicode_text_is_read(tmp_path: Path) -> None:
    path = write(tmp_path, "姓名\t金额\r\n张伟\t100\r\n".encode("utf-16"))

    records, source = read(path)

    assert records[0].values == {"姓名": "张伟", "金额": "100"}
    assert source.info["delimiter"] == "\t"


@pytest.mark.parametrize(
    ("delimiter", "name"), [(";", "semicolon"), ("\t", "tab"), ("|", "pipe"), (",", "comma")]
)
def test_delimiter_is_sniffed(tmp_path: Path, delimiter: str, name: str) -> None:
    rows = [["name", "amount", "note"], ["Ada", "10,50", "a b"], ["Bo", "7,25", "c"]]
    if delimiter == ",":
        rows = [["name", "amount", "note"], ["Ada", "10.50", "a b"], ["Bo", "7.25", "c"]]
    path = write(tmp_path, "\n".join(delimiter.join(row) for row in rows) + "\n")

    records, source = read(path)

    assert source.info["delimiter"] == delimiter, name
    assert source.info["delimiter_from"] == "sniffed"
    assert records[0].values == dict(zip(rows[0], rows[1], strict=True))


def test_explicit_delimiter_overrides_sniffing(tmp_path: Path) -> None:
    # Sniffing would pick the comma, which splits every line into two.
    path = write(tmp_path, "a,b;c\n1,2;3\n4,5;6\n")

    records, source = read(path, delimiter=";")

    assert records[0].values == {"a,b": "1,2", "c": "3"}
    assert source.info["delimiter_from"] == "option"


def test_single_column_file_defaults_to_comma(tmp_path: Path) -> None:
    path = write(tmp_path, "national_id\n110101199001011234\n")

    records, source = read(path)

    assert records[0].values == {"national_id": "110101199001011234"}
    assert source.info["delimiter"] == ","
    assert source.info["delimiter_from"] == "default"


def test_quoted_newlines_stay_in_the_field_and_numbers_count_records(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'name,address\r\n"Ada","Line 1\r\nLine 2"\r\nBo,"A ""quoted"" word"\r\n'
        '"Cy","x\ny\nz"\nDi,plain\n',
    )

    records, _ = read(path)

    assert [(r.number, r.values["address"]) for r in records] == [
        (2, "Line 1\r\nLine 2"),
        (3, 'A "quoted" word'),
        (4, "x\ny\nz"),
        (5, "plain"),
    ]


def test_blank_rows_are_skipped_but_keep_their_row_number(tmp_path: Path) -> None:
    path = write(tmp_path, "a,b\n1,2\n\n,\n3,4\n")

    records, _ = read(path)

    assert [(r.number, r.values) for r in records] == [
        (2, {"a": "1", "b": "2"}),
        (5, {"a": "3", "b": "4"}),
    ]


def test_row_with_more_fields_than_the_header_is_a_problem(tmp_path: Path) -> None:
    path = write(tmp_path, "a,b\n1,2\n1,2,3\n4,5\n")

    records, _ = read(path)

    assert records[1].number == 3
    assert records[1].problem == "row has 3 fields, the header has 2"
    assert [r.problem for r in (records[0], records[2])] == [None, None]


def test_row_with_fewer_fields_gets_empty_values(tmp_path: Path) -> None:
    path = write(tmp_path, "a,b,c\n1,2\n1\n")

    records, _ = read(path)

    assert [(r.values, r.problem) for r in records] == [
        ({"a": "1", "b": "2", "c": ""}, None),
        ({"a": "1", "b": "", "c": ""}, None),
    ]


def test_first_data_row_is_checked_like_the_rest(tmp_path: Path) -> None:
    path = write(tmp_path, "a,b\n\n1,2,3\n4\n5,6\n")

    records, _ = read(path)

    assert [(r.number, r.problem) for r in records] == [
        (3, "row has 3 fields, the header has 2"),
        (4, None),
        (5, None),
    ]


def test_header_names_are_stripped(tmp_path: Path) -> None:
    path = write(tmp_path, " name ,\tamount \n Ada ,1\n")

    records, _ = read(path)

    # Values are the tenant's raw text; only the header is tidied.
    assert records[0].values == {"name": " Ada ", "amount": "1"}


def test_blank_header_name_is_refused_with_its_position(tmp_path: Path) -> None:
    path = write(tmp_path, "name, ,amount\nAda,x,1\n")

    assert refusal(path) == "column 2 of the header row has no name"


def test_duplicate_header_name_is_refused_with_both_positions(tmp_path: Path) -> None:
    path = write(tmp_path, "name,amount,name \nAda,1,Bo\n")

    assert refusal(path) == "columns 1 and 3 of the header row have the same name"


def test_resume_by_number_skips_records_up_to_it(tmp_path: Path) -> None:
    path = write(tmp_path, 'a,b\n1,2\n"multi\nline",3\n\n5,6\n7,8\n')

    records = list(CsvConnector().records(Source(path=path), resume={"number": 3}))

    assert [(r.number, r.values["a"]) for r in records] == [(5, "5"), (6, "7")]


def test_resume_past_the_end_yields_nothing_and_does_not_fail(tmp_path: Path) -> None:
    path = write(tmp_path, "a\n1\n2\n")

    assert list(CsvConnector().records(Source(path=path), resume={"number": 10})) == []


def test_bad_bytes_after_the_sample_make_a_problem_row_not_a_crash(tmp_path: Path) -> None:
    # The sample is valid UTF-8, so detection says UTF-8; row 5,002 is not.
    lines = ["name,amount"] + [f"名字{i},{i}" for i in range(5000)]
    lines.append("bad\xff,5")
    lines += [f"名字{i},{i}" for i in range(5000, 5010)]
    data = "\n".join(lines).encode("utf-8").replace(b"bad\xc3\xbf", b"bad\xff") + b"\n"
    assert data.index(b"bad\xff") > SAMPLE_BYTES
    path = write(tmp_path, data)

    records, source = read(path)

    assert source.info["encoding"] == "utf-8"
    assert len(records) == 5011
    assert [r.number for r in records] == list(range(2, 5013))
    broken = [r for r in records if r.problem]
    assert [(r.number, r.problem) for r in broken] == [
        (5002, "bytes at row 5002, column name, are not valid UTF-8")
    ]
    assert broken[0].values == {"name": "bad\ufffd", "amount": "5"}
    assert broken[0].column == "name"
    assert records[-1].values == {"name": "名字5009", "amount": "5009"}


def test_bad_bytes_with_an_explicit_encoding_make_a_problem_row(tmp_path: Path) -> None:
    path = write(tmp_path, b"a,b\n1,2\n\xff\xfe,3\n4,5\n")

    records, _ = read(path, encoding="utf-8")

    assert [(r.number, r.problem) for r in records] == [
        (2, None),
        (3, "bytes at row 3, column a, are not valid UTF-8"),
        (4, None),
    ]


def test_bad_bytes_in_the_header_refuse_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, b"a\xff,b\n1,2\n")

    assert refusal(path, encoding="utf-8") == "the header row is not valid UTF-8"


def test_resume_and_bad_bytes_together_yield_each_record_once(tmp_path: Path) -> None:
    path = write(tmp_path, b"a\n1\n2\n\xff\n4\n5\n")

    records = list(
        CsvConnector().records(
            Source(path=path, options={"encoding": "utf-8"}), resume={"number": 2}
        )
    )

    assert [(r.number, r.problem) for r in records] == [
        (3, None),
        (4, "bytes at row 4, column a, are not valid UTF-8"),
        (5, None),
        (6, None),
    ]


@pytest.mark.parametrize("content", [b"", b"   \r\n\n\t  \n"], ids=["zero-bytes", "whitespace"])
def test_empty_file_is_refused(tmp_path: Path, content: bytes) -> None:
    assert refusal(write(tmp_path, content)) == "the file is empty"


def test_file_of_blank_lines_beyond_the_sample_is_refused_as_empty(tmp_path: Path) -> None:
    path = write(tmp_path, b"\n" * (SAMPLE_BYTES * 2))

    assert refusal(path) == "the file is empty"


def test_header_only_file_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "name,amount\r\n\r\n")

    assert refusal(path) == "the file has a header but no rows"


def test_xlsx_renamed_to_csv_is_refused(tmp_path: Path) -> None:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(["借款人姓名", "逾期金额"])
    sheet.append(["张伟", 100])
    buffer = io.BytesIO()
    workbook.save(buffer)
    path = write(tmp_path, buffer.getvalue())

    message = refusal(path)

    assert message.startswith("the file is not CSV text")
    assert "Excel workbook" in message


def test_png_renamed_to_csv_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4)

    assert "PNG image" in refusal(path)


def test_file_with_nul_bytes_is_refused_as_binary(tmp_path: Path) -> None:
    path = write(tmp_path, b"a,b\n1," + b"\x00\x01\x02" * 20 + b"\n")

    assert refusal(path) == "the file is not CSV text: it looks like binary data"


def test_bytes_no_encoding_explains_are_refused(tmp_path: Path) -> None:
    # No NUL byte, no known signature, and no encoding charset-normalizer accepts.
    noise = bytes(b for b in range(1, 256) if b not in b"\n\r") * 8
    path = write(tmp_path, b"\x81\xfe\x9f" + noise)

    assert refusal(path) == "the file is not text in any encoding we recognise"


def test_file_over_the_size_limit_is_refused_before_reading(tmp_path: Path) -> None:
    path = write(tmp_path, "a\n" + "1\n" * 1000)

    message = refusal(path, max_bytes=1024)

    assert message == "the file is 2 KiB, more than the limit of 1 KiB"


@pytest.mark.parametrize("bad", [0, -1, "big", True])
def test_invalid_size_limit_option_is_refused(tmp_path: Path, bad: object) -> None:
    assert "max_bytes" in refusal(write(tmp_path, "a\n1\n"), max_bytes=bad)


def test_missing_file_is_refused(tmp_path: Path) -> None:
    assert refusal(tmp_path / "gone.csv") == "the file could not be opened"


def test_unclosed_quote_that_swallows_the_rest_is_refused_with_a_position(
    tmp_path: Path,
) -> None:
    # csv.field_size_limit is 131,072 characters by default.
    path = write(tmp_path, 'a,b\n1,2\n3,"never closed\n' + "x,y\n" * 40_000)

    connector = CsvConnector()
    records = connector.records(Source(path=path))
    assert next(records).number == 2
    with pytest.raises(SourceError, match=r"^row 3 cannot be read: .*quote never closed"):
        next(records)


def test_problem_messages_carry_no_row_content(tmp_path: Path) -> None:
    path = write(tmp_path, "name,id\n张伟,110101199001011234,extra\n", name="p.csv")

    records, _ = read(path)

    assert records[0].problem is not None
    assert "张伟" not in records[0].problem
    assert "1101" not in records[0].problem


def test_estimate_total_is_an_upper_bound_from_line_breaks(tmp_path: Path) -> None:
    connector = CsvConnector()
    lf = write(tmp_path, "a\n1\n2\n3\n", name="lf.csv")
    crlf = write(tmp_path, "a\r\n1\r\n2\r\n3", name="crlf.csv")
    cr = write(tmp_path, "a\r1\r2\r3\r", name="cr.csv")
    quoted = write(tmp_path, 'a\n"1\n1"\n2\n', name="quoted.csv")

    assert connector.estimate_total(Source(path=lf)) == 4
    assert connector.estimate_total(Source(path=crlf)) == 3
    assert connector.estimate_total(Source(path=cr)) == 4
    assert connector.estimate_total(Source(path=quoted)) == 4
    assert connector.estimate_total(Source(path=tmp_path / "gone.csv")) is None
    assert len(read(quoted)[0]) <= 4


def test_many_columns_and_odd_header_names_are_read_by_the_fast_path(tmp_path: Path) -> None:
    # Header text goes into the compiled row builder only as data, never as code.
    header = [f"c{i}" for i in range(300)] + ["'}; raise SystemExit #", "{k0}", "row[0]"]
    row = [str(i) for i in range(len(header))]
    path = write(tmp_path, ",".join(f'"{h}"' for h in header) + "\n" + ",".join(row) + "\n" * 2)
    path.write_text(path.read_text() + ",".join(row) + "\n")

    records, _ = read(path)

    assert len(records) == 2
    assert records[1].values == dict(zip(header, row, strict=True))


def test_a_last_row_without_its_line_break_looks_truncated(tmp_path: Path) -> None:
    path = write(tmp_path, "id,amount\nA,1005.50\nB,10")

    records, _ = read(path)

    assert [(r.number, r.problem) for r in records] == [
        (2, None),
        (
            3,
            "the file looks truncated: its last row has no line break, so its last value"
            " may be cut short",
        ),
    ]


def test_a_row_ending_inside_a_quoted_field_says_so(tmp_path: Path) -> None:
    path = write(tmp_path, 'id,name,amount\nA,x,1\nB,"cut\n')

    records, _ = read(path)

    assert (records[1].problem, records[1].column) == (
        "the row ends inside a quoted field: the file looks truncated (or a quote is never closed)",
        "name",
    )
    assert records[1].values == {"id": "B", "name": "cut", "amount": ""}


def test_a_field_over_the_size_limit_is_a_problem_row_and_reading_goes_on(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, "a,b\n1,2\n3," + "x" * 200_000 + "\n5,6\n")

    records, _ = read(path)

    assert [(r.number, r.problem) for r in records] == [
        (2, None),
        (3, "row 3 cannot be read: a field is longer than 131,072 characters"),
        (4, None),
    ]


def test_a_stray_nul_byte_is_a_problem_row_naming_its_column(tmp_path: Path) -> None:
    path = write(tmp_path, "a,b\n1,2\n3,x\x00y\n5,6\n")

    records, _ = read(path)

    assert [(r.number, r.column) for r in records if r.problem] == [(3, "b")]
    assert [r.values for r in records if not r.problem] == [
        {"a": "1", "b": "2"},
        {"a": "5", "b": "6"},
    ]
