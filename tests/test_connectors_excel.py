"""The Excel connector, on real .xlsx files written with openpyxl."""

from __future__ import annotations

import base64
import os
import zipfile
from collections.abc import Generator
from datetime import datetime
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from recova.connectors.base import Record, Source, SourceError
from recova.connectors.excel import ExcelConnector


def workbook_file(
    tmp_path: Path, rows: list[list[Any]], *, name: str = "upload.xlsx", title: str = "Debts"
) -> Path:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.title = title
    for row in rows:
        sheet.append(row)
    path = tmp_path / name
    workbook.save(path)
    return path


def read(path: Path, **options: Any) -> tuple[list[Record], Source]:
    source = Source(path=path, options=options)
    return list(ExcelConnector().records(source)), source


def refusal(path: Path, **options: Any) -> str:
    with pytest.raises(SourceError) as caught:
        read(path, **options)
    return str(caught.value)


def test_values_pass_through_as_openpyxl_gives_them(tmp_path: Path) -> None:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(["借款人姓名", "身份证号", "逾期金额", "到期日", "序号日期", "逾期天数"])
    sheet.append(["  张伟 ", 1.10105e17, 1234.5, datetime(2024, 3, 5), 45356, 30])
    sheet["D2"].number_format = "yyyy-mm-dd"
    # A serial date in a General cell is just a number to openpyxl.
    sheet["E2"].number_format = "General"
    path = tmp_path / "debts.xlsx"
    workbook.save(path)

    records, source = read(path)

    assert len(records) == 1
    record = records[0]
    assert record.number == 2
    assert record.problem is None
    assert record.checkpoint is None
    assert record.values == {
        "借款人姓名": "张伟",
        "身份证号": 1.10105e17,
        "逾期金额": 1234.5,
        "到期日": datetime(2024, 3, 5),
        "序号日期": 45356,
        "逾期天数": 30,
    }
    # The 18-digit ID Excel turned into a float stays a float: the normaliser rejects it.
    assert isinstance(record.values["身份证号"], float)
    assert isinstance(record.values["序号日期"], int)
    assert source.info["sheet"] == "Sheet"


def test_rows_are_numbered_like_the_sheet_and_blank_rows_skipped(tmp_path: Path) -> None:
    path = workbook_file(
        tmp_path, [["name", "amount"], ["Ada", 1], [None, None], ["  ", ""], ["Bo", 2]]
    )

    records, _ = read(path)

    assert [(r.number, r.values) for r in records] == [
        (2, {"name": "Ada", "amount": 1}),
        (5, {"name": "Bo", "amount": 2}),
    ]


def test_missing_rows_in_the_sheet_file_keep_their_numbers(tmp_path: Path) -> None:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet["A1"] = "name"
    sheet["A2"] = "Ada"
    sheet["A7"] = "Bo"
    path = tmp_path / "gaps.xlsx"
    workbook.save(path)

    records, _ = read(path)

    assert [(r.number, r.values["name"]) for r in records] == [(2, "Ada"), (7, "Bo")]


def test_short_rows_are_padded_with_none(tmp_path: Path) -> None:
    path = workbook_file(tmp_path, [["a", "b", "c"], ["x"]])

    records, _ = read(path)

    assert records[0].values == {"a": "x", "b": None, "c": None}


def test_empty_cells_after_the_header_are_not_columns(tmp_path: Path) -> None:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(["name", "amount"])
    sheet.append(["Ada", 1])
    # Formatting stretches the used range two columns past the header.
    sheet["D2"].number_format = "0.00"
    path = tmp_path / "formatted.xlsx"
    workbook.save(path)

    records, _ = read(path)

    assert [(r.values, r.problem) for r in records] == [({"name": "Ada", "amount": 1}, None)]


def test_a_value_after_the_last_header_column_is_a_problem(tmp_path: Path) -> None:
    path = workbook_file(tmp_path, [["name", "amount"], ["Ada", 1, None, "stray"], ["Bo", 2]])

    records, _ = read(path)

    assert records[0].problem == "row has a value in column D, after the header's last column (B)"
    assert records[0].values == {"name": "Ada", "amount": 1}
    assert records[1].problem is None


def test_header_names_are_stripped_and_numbers_become_text(tmp_path: Path) -> None:
    path = workbook_file(tmp_path, [[" name ", 2024], ["Ada", 1]])

    records, _ = read(path)

    assert records[0].values == {"name": "Ada", "2024": 1}


def test_gap_in_the_header_is_refused_with_the_cell(tmp_path: Path) -> None:
    path = workbook_file(tmp_path, [["name", None, "amount"], ["Ada", 1, 2]])

    assert refusal(path) == "cell B1 of the header row is empty"


def test_duplicate_header_names_are_refused_with_both_columns(tmp_path: Path) -> None:
    path = workbook_file(tmp_path, [["name", "amount", "name"], ["Ada", 1, "Bo"]])

    assert refusal(path) == "columns A and C of the header row have the same name"


def test_named_sheet_is_read(tmp_path: Path) -> None:
    workbook = openpyxl.Workbook()
    first = workbook.active
    assert first is not None
    first.append(["ignored"])
    second = workbook.create_sheet("Payments")
    second.append(["amount"])
    second.append([5])
    path = tmp_path / "two.xlsx"
    workbook.save(path)

    records, source = read(path, sheet="Payments")

    assert records[0].values == {"amount": 5}
    assert source.info["sheet"] == "Payments"


def test_unknown_sheet_name_is_refused_naming_the_sheets(tmp_path: Path) -> None:
    path = workbook_file(tmp_path, [["a"], [1]])

    assert (
        refusal(path, sheet="Nope")
        == "the workbook has no sheet named 'Nope'; its sheets are 'Debts'"
    )


def test_resume_by_number_skips_rows_up_to_it(tmp_path: Path) -> None:
    path = workbook_file(tmp_path, [["a"], [1], [2], [3], [4]])

    records = list(ExcelConnector().records(Source(path=path), resume={"number": 3}))

    assert [(r.number, r.values) for r in records] == [(4, {"a": 3}), (5, {"a": 4})]


def test_resume_past_the_end_yields_nothing(tmp_path: Path) -> None:
    path = workbook_file(tmp_path, [["a"], [1]])

    assert list(ExcelConnector().records(Source(path=path), resume={"number": 9})) == []


def test_empty_sheet_is_refused(tmp_path: Path) -> None:
    path = workbook_file(tmp_path, [])

    assert refusal(path) == "the sheet 'Debts' is empty"


def test_blank_first_row_is_refused_as_a_missing_header(tmp_path: Path) -> None:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet["A2"] = "name"
    sheet["A3"] = "Ada"
    path = tmp_path / "late-header.xlsx"
    workbook.save(path)

    assert refusal(path) == "row 1 of the sheet must hold the column names; it is empty"


def test_header_only_sheet_is_refused(tmp_path: Path) -> None:
    path = workbook_file(tmp_path, [["name", "amount"], [None, "  "]])

    assert refusal(path) == "the sheet 'Debts' has a header but no rows"


def test_csv_renamed_to_xlsx_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "upload.xlsx"
    path.write_text("name,amount\nAda,1\n")

    assert refusal(path) == "the file is not an Excel workbook (.xlsx)"


def test_zip_that_is_not_a_workbook_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "upload.xlsx"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hello")

    assert refusal(path) == "the file is not an Excel workbook (.xlsx)"


def test_old_xls_is_refused_with_advice(tmp_path: Path) -> None:
    path = tmp_path / "upload.xls"
    path.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 512)

    assert "save it as .xlsx" in refusal(path)


def test_workbook_with_any_file_name_is_read(tmp_path: Path) -> None:
    # Uploads are copied to temporary files; openpyxl alone would refuse a ".tmp" path.
    path = workbook_file(tmp_path, [["a"], [1]], name="upload.tmp")

    records, _ = read(path)

    assert records[0].values == {"a": 1}


def test_damaged_sheet_is_refused(tmp_path: Path) -> None:
    good = workbook_file(tmp_path, [["a"], [1], [2]])
    damaged = tmp_path / "damaged.xlsx"
    with zipfile.ZipFile(good) as source, zipfile.ZipFile(damaged, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename == "xl/worksheets/sheet1.xml":
                data = data[: len(data) // 2]
            target.writestr(item, data)

    assert refusal(damaged) == "the workbook is damaged: its sheet cannot be read to the end"


def test_file_over_the_size_limit_is_refused(tmp_path: Path) -> None:
    path = workbook_file(tmp_path, [["a"], [1]])

    assert "more than the limit of 100 bytes" in refusal(path, max_bytes=100)


def test_empty_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "upload.xlsx"
    path.write_bytes(b"")

    assert refusal(path) == "the file is empty"


def test_workbook_is_closed_when_the_reader_stops_early(tmp_path: Path) -> None:
    path = workbook_file(tmp_path, [["a"], [1], [2]])
    records = ExcelConnector().records(Source(path=path))

    assert next(records).values == {"a": 1}
    assert isinstance(records, Generator)
    # Closing the generator closes the workbook and its file; an open file would
    # surface as a ResourceWarning, which this suite treats as an error.
    records.close()


def test_estimate_total_uses_the_recorded_used_range(tmp_path: Path) -> None:
    path = workbook_file(tmp_path, [["a"], [1], [2], [3]])
    connector = ExcelConnector()

    assert connector.estimate_total(Source(path=path)) == 3
    assert connector.estimate_total(Source(path=tmp_path / "gone.xlsx")) is None
    assert connector.estimate_total(Source(path=path, options={"sheet": "Nope"})) is None


# --- hostile workbooks (in this process; tests/test_hostile_xlsx.py measures memory) ----

SHEET_PART = "xl/worksheets/sheet1.xml"


def rewritten(tmp_path: Path, replace: dict[str, bytes], *, extra: int = 0) -> Path:
    """A small real workbook with some parts replaced (and ``extra`` empty parts added)."""
    source = workbook_file(tmp_path, [["name", "amount"], ["Ada", 1]], name="source.xlsx")
    path = tmp_path / "hostile.xlsx"
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(path, "w") as target:
        for name in original.namelist():
            target.writestr(name, replace.get(name, original.read(name)), zipfile.ZIP_DEFLATED)
        for number in range(extra):
            target.writestr(f"junk/{number}.bin", b"")
    return path


def sheet_with(rows: bytes) -> bytes:
    return (
        b'<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
        b'<sheetData><row r="1"><c r="A1" t="inlineStr"><is><t>name</t></is></c></row>'
        + rows
        + b"</sheetData></worksheet>"
    )


def test_xml_entities_are_refused_as_an_attack(tmp_path: Path) -> None:
    laughs = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
    )
    in_sheet = rewritten(
        tmp_path, {SHEET_PART: laughs + sheet_with(b"<row><c><v>&lol2;</v></c></row>")}
    )
    assert "declares entities" in refusal(in_sheet)
    (tmp_path / "second").mkdir()
    in_workbook_part = rewritten(
        tmp_path / "second",
        {"xl/workbook.xml": laughs + b'<workbook xmlns="x">&lol2;</workbook>'},
    )
    assert "declares entities" in refusal(in_workbook_part)


def test_a_cell_beyond_excels_last_column_is_refused(tmp_path: Path) -> None:
    path = rewritten(
        tmp_path, {SHEET_PART: sheet_with(b'<row r="2"><c r="ZZZ2"><v>1</v></c></row>')}
    )
    assert "beyond Excel's last column (XFD, 16,384)" in refusal(path)


def test_a_row_beyond_excels_last_row_is_refused(tmp_path: Path) -> None:
    path = rewritten(tmp_path, {SHEET_PART: sheet_with(b'<row r="2000000"><c><v>1</v></c></row>')})
    assert "row numbered 2,000,000, beyond Excel's last row (1,048,576)" in refusal(path)


def test_a_row_of_too_many_elements_is_refused(tmp_path: Path) -> None:
    path = rewritten(tmp_path, {SHEET_PART: sheet_with(b"<row>" + b"<c/>" * 200_001 + b"</row>")})
    assert "row 2 of the sheet holds more than 200,000 XML elements" in refusal(path)


def test_a_text_longer_than_any_cell_is_refused(tmp_path: Path) -> None:
    text = base64.b64encode(os.urandom(1600 * 1024))  # 2.1 MiB that does not compress
    path = rewritten(
        tmp_path,
        {SHEET_PART: sheet_with(b'<row><c t="inlineStr"><is><t>' + text + b"</t></is></c></row>")},
    )
    assert f"'{SHEET_PART}' holds a text or attribute longer than 1 MiB" in refusal(path)


def test_too_many_shared_strings_are_refused(tmp_path: Path) -> None:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(["name"])
    path = tmp_path / "strings.xlsx"
    workbook.save(path)
    table = (
        b'<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
        + b"".join(b"<si><t>s%d</t></si>" % n for n in range(11))
        + b"</sst>"
    )
    hostile = _with_shared_strings(path, table, tmp_path / "hostile.xlsx")
    assert refusal(hostile, xlsx_max_shared_strings=10) == (
        "the workbook's shared-strings table holds more than 10 strings, the limit"
    )
    assert refusal(hostile, xlsx_max_shared_strings=11) == (
        "the sheet 'Sheet' has a header but no rows"  # the table itself was read
    )


def _with_shared_strings(source: Path, table: bytes, path: Path) -> Path:
    main = "application/vnd.openxmlformats-officedocument.spreadsheetml"
    overrides = {
        "/xl/workbook.xml": f"{main}.sheet.main+xml",
        "/xl/worksheets/sheet1.xml": f"{main}.worksheet+xml",
        "/xl/sharedStrings.xml": f"{main}.sharedStrings+xml",
    }
    content_types = (
        '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        '<Default Extension="rels"'
        ' ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        '<Default Extension="xml" ContentType="application/xml"/>'
        + "".join(
            f'<Override PartName="{part}" ContentType="{kind}"/>'
            for part, kind in overrides.items()
        )
        + "</Types>"
    ).encode()
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(path, "w") as target:
        for name in original.namelist():
            content = content_types if name == "[Content_Types].xml" else original.read(name)
            target.writestr(name, content, zipfile.ZIP_DEFLATED)
        target.writestr("xl/sharedStrings.xml", table, zipfile.ZIP_DEFLATED)
    return path


def test_too_many_parts_are_refused_before_reading_the_directory(tmp_path: Path) -> None:
    path = rewritten(tmp_path, {}, extra=10_001)
    assert refusal(path).startswith("the workbook's zip directory lists 10,0")


def test_a_part_parsed_whole_has_a_lower_limit(tmp_path: Path) -> None:
    comments = b"".join(b"<!--%s-->" % base64.b16encode(os.urandom(8)) for _ in range(800_000))
    styles = b'<styleSheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
    path = rewritten(tmp_path, {"xl/styles.xml": styles + comments + b"</styleSheet>"})
    refused = refusal(path)
    assert refused.startswith("the workbook's part 'xl/styles.xml' unpacks to 18 MiB")
    assert refused.endswith("more than the limit of 16 MiB for a part of its kind")


def test_limits_come_from_the_options(tmp_path: Path) -> None:
    numbers = b"".join(
        b"<row><c><v>%d</v></c></row>" % int.from_bytes(os.urandom(4)) for _ in range(60_000)
    )
    path = rewritten(tmp_path, {SHEET_PART: sheet_with(numbers)})
    assert "compressed" in refusal(path, xlsx_max_ratio=2)
    assert "more than the limit of 1,024 bytes per part" in refusal(path, xlsx_max_part_bytes=1024)
    assert "more than 1 MiB in all" in refusal(path, xlsx_max_total_bytes=1024 * 1024)
    assert "xlsx_max_ratio option must be a positive whole number" in refusal(
        path, xlsx_max_ratio="9"
    )
    records, _ = read(path)
    assert len(records) == 60_000
