"""The calamine reader against openpyxl's reading of the same generated workbooks, cell by
cell: dates, text, numbers, booleans, columns mixing them, empty cells and rows, several
sheets. openpyxl's values are turned into columns by the README's rules, written here once
more as the reference; the reader must give the same columns, rows and values."""

from __future__ import annotations

import datetime as dt
import io
import re
import zipfile
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kinds_reference import column_type_name

from backfill.read import xlsx_reader, xlsx_windows
from backfill.read.formats import open_local_file
from backfill.read.sampling import sample_source

NUMBER_TEXT = re.compile(r"^\s*[0-9]+(\.[0-9]+)?\s*$")

# --- the reference: openpyxl's cells, by the README's rules ----------------------------------


def kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "integer" if value.is_integer() and abs(value) < 2**53 else "float"
    if isinstance(value, dt.datetime):
        return "date"
    if isinstance(value, str) and NUMBER_TEXT.match(value):
        return "number-text"
    return "text"


def column_type(kinds: set[str]) -> str:
    if "date" in kinds:
        kinds = kinds - {"integer", "float", "number-text"}
    kinds = {"text" if k == "number-text" else k for k in kinds}
    if kinds == {"date"}:
        return "timestamp[ms]"
    return column_type_name(kinds)


def is_serial(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, str) and NUMBER_TEXT.match(value):
        value = float(value)
    return isinstance(value, (int, float)) and 1 <= value < 2_958_466


def to_ms(value: dt.datetime) -> dt.datetime:
    rounded = value.replace(microsecond=0)
    return rounded + dt.timedelta(milliseconds=(value.microsecond + 500) // 1000)


def expected_cell(value: Any, type_: str) -> Any:
    if value is None or value == "":
        return None
    if type_ != "string":
        return to_ms(value) if type_ == "timestamp[ms]" else value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        return to_ms(value).isoformat(timespec="milliseconds")
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return str(value)


def reference(path: Path, sheet: str) -> tuple[dict[str, str], list[tuple[int, dict]], list[int]]:
    """(column -> type, [(row, record)], rows that fail) from openpyxl's reading. A row
    fails for a serial date in a column with dates, or any other cell that is no date in a
    column read as timestamps."""
    workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    rows = list(workbook[sheet].iter_rows(values_only=True))
    workbook.close()
    header = [str(cell) for cell in rows[0] if cell is not None]
    body = [list(row) + [None] * (len(header) - len(row)) for row in rows[1:]]
    kinds: list[set[str]] = [set() for _ in header]
    for row in body:
        for found, value in zip(kinds, row):
            if value is not None and value != "":
                found.add(kind(value))
    types = {name: column_type(found) for name, found in zip(header, kinds)}
    dates = [i for i, found in enumerate(kinds) if "date" in found]
    records, failed = [], []
    for number, row in enumerate(body):
        if all(value is None or value == "" for value in row):
            continue
        if any(is_serial(row[i]) for i in dates) or any(
            types[h] == "timestamp[ms]" and v not in (None, "") and not isinstance(v, dt.datetime)
            for h, v in zip(header, row)
        ):  # a serial date that lost its format; or, in a column of dates, no date at all
            failed.append(number)
            continue
        records.append((number, {h: expected_cell(v, types[h]) for h, v in zip(header, row)}))
    return types, records, failed


# --- generated workbooks ---------------------------------------------------------------------

DATES = st.datetimes(dt.datetime(1900, 3, 1), dt.datetime(9999, 12, 31)).map(
    lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000)
)
TEXT = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cc", "Cs", "Co"]), min_size=1, max_size=8
).filter(lambda t: not t.startswith("=") and t.strip() == t and t != "")
NUMBER_TEXTS = st.integers(0, 99_999).map(lambda n: f"{n:05d}")
INTEGERS = st.integers(-(2**53) + 1, 2**53 - 1)
FRACTIONS = st.floats(-1e12, 1e12, allow_nan=False).filter(lambda f: not f.is_integer())
CELLS = {
    "dates": DATES,
    "text": st.one_of(TEXT, NUMBER_TEXTS),
    "integers": INTEGERS,
    "numbers": st.one_of(INTEGERS, FRACTIONS),
    "booleans": st.booleans(),
    "mixed": st.one_of(DATES, TEXT, INTEGERS, FRACTIONS, st.booleans()),
    "dates with serials": st.one_of(DATES, DATES, st.floats(1, 80_000), NUMBER_TEXTS),
}


@st.composite
def sheets(draw: st.DrawFn) -> list[list[Any]]:
    kinds = draw(st.lists(st.sampled_from(sorted(CELLS)), min_size=1, max_size=5))
    header = [f"{k} {i}" for i, k in enumerate(kinds)]
    rows = [header]
    for _ in range(draw(st.integers(0, 20))):
        if draw(st.integers(0, 9)) == 0:
            rows.append([None] * len(kinds))  # an empty row: no record, it keeps its place
            continue
        rows.append([draw(st.one_of(st.none(), CELLS[k])) for k in kinds])
    return rows


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(workbook=st.lists(sheets(), min_size=1, max_size=3))
def test_calamine_reads_every_cell_as_openpyxl_does(
    workbook: list[list[list[Any]]], tmp_path: Path
) -> None:
    reads_as_openpyxl_does(workbook, tmp_path)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(workbook=st.lists(sheets(), min_size=1, max_size=3))
def test_a_sheet_cut_into_windows_of_a_row_or_two_reads_as_openpyxl_does(
    workbook: list[list[list[Any]]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(xlsx_windows, "WINDOW_BYTES", 1)  # a window as soon as a row is held
    monkeypatch.setattr(xlsx_windows, "BLOCK", 37)  # tags cut across the blocks read
    reads_as_openpyxl_does(workbook, tmp_path)


def reads_as_openpyxl_does(workbook: list[list[list[Any]]], tmp_path: Path) -> None:
    path = tmp_path / "o.xlsx"
    book = openpyxl.Workbook()
    book.remove(book.active)
    for index, rows in enumerate(workbook):
        sheet = book.create_sheet(f"S{index}")
        for row in rows:
            sheet.append(row)
    book.save(path)

    for index in range(len(workbook)):
        types, records, failed = reference(path, f"S{index}")
        reader = open_local_file(path, sheet=f"S{index}")
        chunks = list(reader.chunks(7))

        assert {f.name: str(f.type) for f in reader.schema} == types
        assert reader.total_rows == len(records) + len(failed)
        read = [
            (row, record)
            for chunk in chunks
            for row, record in zip(chunk.rows.tolist(), chunk.table.to_pylist())
        ]
        assert read == records
        assert [line.row for chunk in chunks for line in chunk.bad_lines] == failed


def test_dates_with_empty_cells_keep_their_millisecond_up_to_the_year_9999(tmp_path: Path) -> None:
    late = dt.datetime(9999, 12, 31, 23, 59, 59, 999_000)
    book = openpyxl.Workbook()
    sheet = book.active
    for row in (
        ["id", "when"],
        ["a", late],
        ["b", None],
        ["c", dt.datetime(1900, 3, 1, 0, 0, 0, 1000)],
    ):
        sheet.append(row)
    book.save(tmp_path / "o.xlsx")

    [chunk] = open_local_file(tmp_path / "o.xlsx").chunks()

    assert chunk.table.column("when").to_pylist() == [
        late,
        None,
        dt.datetime(1900, 3, 1, 0, 0, 0, 1000),
    ]


def test_digits_in_unicode_spaces_are_serial_dates_in_a_window_of_text_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    book = openpyxl.Workbook()
    for row in (["id", "when"], ["a", dt.datetime(2024, 1, 1)], ["b", "\u00a045292"]):
        book.active.append(row)
    book.save(tmp_path / "o.xlsx")
    monkeypatch.setattr(xlsx_windows, "WINDOW_BYTES", 1)  # row b's window: its text alone

    reader = open_local_file(tmp_path / "o.xlsx")
    [chunk] = [c for c in reader.chunks() if c.bad_lines]

    assert str(reader.schema.field("when").type) == "timestamp[ms]"
    assert [line.row for line in chunk.bad_lines] == [1]
    assert "looks like an Excel serial date (2024-01-01 00:00:00)" in chunk.bad_lines[0].reason


def test_a_workbook_is_parsed_once_for_open_and_its_first_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parses = two_rows_counting_parses(tmp_path, monkeypatch)

    reader = open_local_file(tmp_path / "o.xlsx")
    first = [c.table.to_pylist() for c in reader.chunks()]
    again = [c.table.to_pylist() for c in reader.chunks()]  # a second read parses again

    assert first == again == [[{"id": "a"}, {"id": "b"}]]
    assert len(parses) == 2


def test_rows_written_without_their_numbers_keep_their_place_across_windows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    book = openpyxl.Workbook()
    for row in (["id", "n"], ["a", 1], ["b", 2], ["c", 3], ["d", 4]):
        book.active.append(row)
    book.save(tmp_path / "numbered.xlsx")
    with (
        zipfile.ZipFile(tmp_path / "numbered.xlsx") as numbered,
        zipfile.ZipFile(tmp_path / "o.xlsx", "w") as bare,
    ):
        for name in numbered.namelist():
            data = numbered.read(name)
            if name == "xl/worksheets/sheet1.xml":  # some writers leave out r="..."
                data = re.sub(rb' r="[A-Z]*[0-9]+"', b"", data)
                assert b" r=" not in data
            bare.writestr(name, data)
    monkeypatch.setattr(xlsx_windows, "WINDOW_BYTES", 1)
    monkeypatch.setattr(xlsx_windows, "BLOCK", 37)

    chunks = list(open_local_file(tmp_path / "o.xlsx").chunks())

    assert len(chunks) > 1
    assert [row for chunk in chunks for row in chunk.rows.tolist()] == [0, 1, 2, 3]
    assert [r for chunk in chunks for r in chunk.table.to_pylist()] == [
        {"id": "a", "n": 1}, {"id": "b", "n": 2}, {"id": "c", "n": 3}, {"id": "d", "n": 4},
    ]  # fmt: skip


def test_init_samples_the_first_rows_and_stretches_spread_over_the_sheet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    book = openpyxl.Workbook()
    book.active.append(["id", "note"])
    for number in range(1, 401):  # the note appears only in the last rows
        book.active.append([f"r{number}", "late" if number > 390 else None])
    book.save(tmp_path / "o.xlsx")
    monkeypatch.setattr(xlsx_windows, "SAMPLE_WINDOW_BYTES", 1_000)
    monkeypatch.setattr(xlsx_windows, "SAMPLE_WINDOWS", 4)
    parsed: list[int] = []
    parse = xlsx_windows._parse
    monkeypatch.setattr(
        xlsx_windows, "_parse", lambda *args: parsed.append(args[4]) or parse(*args)
    )

    sample = sample_source(tmp_path / "o.xlsx", rows=50)

    ids = sample.table.column("id").to_pylist()
    assert len(parsed) == 4  # windows parsed: the first and three spread, not the sheet's ~20
    assert sample.rows <= 50
    assert ids[0] == "r1"
    assert max(int(i[1:]) for i in ids) > 390  # the last window is among them
    assert ids == sorted(ids, key=lambda i: int(i[1:]))
    assert str(sample.source.schema.field("note").type) == "string"
    assert sample.source.files[0].total_rows is None  # not counted: the sheet was not read
    again = [r["id"] for c in sample.source.files[0].chunks() for r in c.table.to_pylist()]
    assert set(ids) <= set(again)
    assert len(again) < 400  # a second read gives the sampled rows again, not the whole sheet


def test_a_disk_too_full_to_keep_the_parsed_sheet_parses_it_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:

    class FullDisk(io.BytesIO):
        def write(self, data: Any) -> int:
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(xlsx_windows.tempfile, "TemporaryFile", lambda **_: FullDisk())
    parses = two_rows_counting_parses(tmp_path, monkeypatch)

    reader = open_local_file(tmp_path / "o.xlsx")
    read = [c.table.to_pylist() for c in reader.chunks()]

    assert read == [[{"id": "a"}, {"id": "b"}]]
    assert len(parses) == 2  # open, then the read: nothing was kept


def test_a_disk_that_refuses_the_window_file_parses_each_window_in_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write = xlsx_windows._write_book
    refused: list[Path] = []

    def no_file(target: Any, *args: Any) -> None:
        if isinstance(target, Path):
            refused.append(target)
            raise OSError(28, "No space left on device")
        write(target, *args)

    monkeypatch.setattr(xlsx_windows, "_write_book", no_file)
    two_rows_counting_parses(tmp_path, monkeypatch)

    read = [c.table.to_pylist() for c in open_local_file(tmp_path / "o.xlsx").chunks()]

    assert read == [[{"id": "a"}, {"id": "b"}]]
    assert refused  # the scratch file was tried, and refused


def two_rows_counting_parses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """o.xlsx with rows `a` and `b` under `id`; the list fills with each parse of it."""
    book = openpyxl.Workbook()
    for row in (["id"], ["a"], ["b"]):
        book.active.append(row)
    book.save(tmp_path / "o.xlsx")
    parses: list[str] = []
    parse = xlsx_reader._parse
    monkeypatch.setattr(xlsx_reader, "_parse", lambda *args: parses.append(args[2]) or parse(*args))
    return parses
