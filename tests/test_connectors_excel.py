"""The Excel connector, on real .xlsx files written with openpyxl."""

from __future__ import annotations

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
