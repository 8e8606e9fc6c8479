"""One file read through a pyarrow filesystem: the interface many-file sources build on."""

from __future__ import annotations

import codecs
import datetime as dt
import gzip
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from backfill.errors import SourceError
from backfill.read.formats import (
    CsvReader,
    FileReader,
    JsonLinesReader,
    ParquetReader,
    XlsxReader,
    format_of,
    open_file,
)
from backfill.read.text_codec import likely_encoding


def subtree(tmp_path: Path) -> pafs.FileSystem:
    """A filesystem whose paths are not the local ones, as an object store's are not."""
    return pafs.SubTreeFileSystem(str(tmp_path), pafs.LocalFileSystem())


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.csv", "csv"),
        ("A.CSV.GZ", "csv"),
        ("x/part-0.Parquet", "parquet"),
        ("orders.txt", "text"),
        ("Orders.TSV", "csv"),
        ("orders.tab.gz", "csv"),
        ("orders.gz", None),
    ],
)
def test_the_format_is_told_by_the_name(name: str, expected: str | None) -> None:
    assert format_of(name) == expected


def test_a_csv_is_read_through_any_filesystem_and_named_as_given(tmp_path: Path) -> None:
    (tmp_path / "orders.csv").write_text("id,sku,note\n1,00123,a\n2,7,b\n")
    reader = open_file(subtree(tmp_path), "orders.csv", name="mem://shop/orders.csv")
    assert isinstance(reader, CsvReader)
    assert reader.columns == ["id", "sku", "note"]
    chunks = list(reader.chunks(1))
    assert [chunk.source for chunk in chunks] == ["mem://shop/orders.csv"] * 2
    assert [chunk.rows.tolist() for chunk in chunks] == [[0], [1]]


def test_only_the_columns_asked_for_are_read(tmp_path: Path) -> None:
    (tmp_path / "orders.csv").write_text("id,sku,note\n1,00123,a\n")
    pq.write_table(pa.table({"id": [1], "sku": ["00123"], "note": ["a"]}), tmp_path / "o.parquet")
    for name in ("orders.csv", "o.parquet"):
        reader = open_file(subtree(tmp_path), name)
        (chunk,) = reader.chunks(100, ["sku", "id"])
        assert sorted(chunk.table.column_names) == ["id", "sku"]
        assert chunk.table.column("sku").to_pylist() == ["00123"]


def test_a_parquet_file_knows_its_row_count_before_reading(tmp_path: Path) -> None:
    pq.write_table(pa.table({"id": list(range(5))}), tmp_path / "o.parquet", row_group_size=2)
    reader = open_file(subtree(tmp_path), "o.parquet", name="s3://b/o.parquet")
    assert isinstance(reader, ParquetReader)
    assert reader.total_rows == 5
    rows = [row for chunk in reader.chunks(3) for row in chunk.rows.tolist()]
    assert rows == [0, 1, 2, 3, 4]


def test_an_unreadable_file_is_named_as_given(tmp_path: Path) -> None:
    (tmp_path / "o.parquet").write_text("not parquet")
    with pytest.raises(SourceError, match=r"^s3://b/o\.parquet: not a readable Parquet file"):
        open_file(subtree(tmp_path), "o.parquet", name="s3://b/o.parquet")


# --- encodings -------------------------------------------------------------------------------

TEXT = "id,name,total\n1,Café crème,€5\n2,Zürich £,12\n"
EXPECTED = [
    {"id": "1", "name": "Café crème", "total": "€5"},
    {"id": "2", "name": "Zürich £", "total": "12"},
]


def records_of(reader: FileReader, chunk_rows: int = 1000) -> list[dict[str, Any]]:
    return [record for chunk in reader.chunks(chunk_rows) for record in chunk.table.to_pylist()]


@pytest.mark.parametrize("encoding", ["cp1252", "iso8859-15", "utf-16", "utf-16-be", "utf-8"])
def test_a_csv_in_any_python_encoding_reads_exactly(tmp_path: Path, encoding: str) -> None:
    (tmp_path / "orders.csv").write_bytes(TEXT.encode(encoding))
    reader = open_file(subtree(tmp_path), "orders.csv", encoding=encoding)
    assert reader.columns == ["id", "name", "total"]
    assert records_of(reader) == EXPECTED


@pytest.mark.parametrize("bom_encoding", ["utf-16", "utf-16-be", "utf-8-sig"])
def test_a_byte_order_mark_is_recognised_without_an_encoding(
    tmp_path: Path, bom_encoding: str
) -> None:
    data = TEXT.encode(bom_encoding)
    if bom_encoding == "utf-16-be":
        data = codecs.BOM_UTF16_BE + data
    (tmp_path / "orders.csv").write_bytes(data)
    reader = open_file(subtree(tmp_path), "orders.csv")
    assert reader.columns == ["id", "name", "total"]
    assert records_of(reader) == EXPECTED


def test_a_gzipped_cp1252_csv_reads_exactly(tmp_path: Path) -> None:
    (tmp_path / "orders.csv.gz").write_bytes(gzip.compress(TEXT.encode("cp1252")))
    reader = open_file(subtree(tmp_path), "orders.csv.gz", encoding="cp1252")
    assert records_of(reader) == EXPECTED


def test_an_unknown_encoding_fails_before_reading(tmp_path: Path) -> None:
    (tmp_path / "orders.csv").write_text(TEXT)
    with pytest.raises(SourceError) as caught:
        open_file(subtree(tmp_path), "orders.csv", encoding="windows-1252x")
    assert str(caught.value) == (
        "--encoding 'windows-1252x' is not an encoding Python knows; "
        "try cp1252, latin-1, utf-16 or utf-8."
    )


def test_a_cp1252_line_read_as_utf8_suggests_the_encoding_and_keeps_its_row(
    tmp_path: Path,
) -> None:
    data = "id,name\n1,ok\n2,Zürich\n3,ok\n".encode("cp1252")
    (tmp_path / "orders.csv").write_bytes(data)
    reader = open_file(subtree(tmp_path), "orders.csv")
    chunks = list(reader.chunks(100))
    assert [row for chunk in chunks for row in chunk.rows.tolist()] == [0, 2]
    [line] = [line for chunk in chunks for line in chunk.bad_lines]
    assert (line.row, line.text) == (1, "2,Z\\xfcrich")
    assert line.reason == (
        "column 'name' is not UTF-8 text; it looks like cp1252: try --encoding cp1252, "
        "or save the file as UTF-8"
    )


def test_a_byte_the_chosen_encoding_lacks_fails_only_its_row(tmp_path: Path) -> None:
    (tmp_path / "orders.csv").write_bytes(b"id,name\n1,a\x81b\n2,caf\xe9\n")
    reader = open_file(subtree(tmp_path), "orders.csv", encoding="cp1252")
    [chunk] = reader.chunks(100)
    assert chunk.table.to_pylist() == [{"id": "2", "name": "café"}]
    assert [(line.row, line.text, line.reason) for line in chunk.bad_lines] == [
        (0, "1,a\\x81b", "column 'name' is not cp1252 text; check --encoding")
    ]


def test_a_cp1252_header_suggests_the_encoding(tmp_path: Path) -> None:
    (tmp_path / "orders.csv").write_bytes("id,Straße\n1,2\n".encode("cp1252"))
    with pytest.raises(SourceError) as caught:
        open_file(subtree(tmp_path), "orders.csv", name="orders.csv")
    assert str(caught.value) == (
        "orders.csv: the header is not UTF-8 text (found 'Stra\\\\xdfe'); it looks like "
        "cp1252: try --encoding cp1252, or save the file as UTF-8."
    )


@pytest.mark.parametrize(
    ("text", "encoding", "expected"),
    [
        ("Zürich £5 crème", "cp1252", "cp1252"),
        ("Привет мир, заказ", "cp1251", "cp1251"),
        ("plain ascii", "ascii", None),
    ],
)
def test_the_likely_single_byte_encoding_is_guessed(
    text: str, encoding: str, expected: str | None
) -> None:
    assert likely_encoding(text.encode(encoding)) == expected


# --- xlsx ------------------------------------------------------------------------------------


def write_xlsx(path: Path, sheets: dict[str, list[list[Any]]]) -> Path:
    """A workbook with one sheet per entry."""
    import openpyxl

    workbook = openpyxl.Workbook()
    workbook.remove(workbook.active)
    for title, rows in sheets.items():
        sheet = workbook.create_sheet(title)
        for row in rows:
            sheet.append(row)
    workbook.save(path)
    return path


def test_xlsx_cells_keep_what_excel_holds(tmp_path: Path) -> None:
    when = dt.datetime(2024, 3, 5, 14, 22, 31, 123_456)
    write_xlsx(
        tmp_path / "o.xlsx",
        {"Orders": [
            ["id", "when", "qty", "total", "paid", "note"],
            ["00123", when, 3, 49.9, True, "a"],
            ["00124", when + dt.timedelta(milliseconds=1), 4, 50, False, None],
        ]},
    )  # fmt: skip
    reader = open_file(subtree(tmp_path), "o.xlsx")
    assert isinstance(reader, XlsxReader)
    assert reader.total_rows == 2
    assert [str(field.type) for field in reader.schema] == [
        "string", "timestamp[ms]", "int64", "double", "bool", "string",
    ]  # fmt: skip
    [chunk] = reader.chunks(100)
    assert chunk.rows.tolist() == [0, 1]
    assert chunk.table.to_pylist() == [
        {"id": "00123", "when": dt.datetime(2024, 3, 5, 14, 22, 31, 123_000), "qty": 3,
         "total": 49.9, "paid": True, "note": "a"},
        {"id": "00124", "when": dt.datetime(2024, 3, 5, 14, 22, 31, 124_000), "qty": 4,
         "total": 50.0, "paid": False, "note": None},
    ]  # fmt: skip


def test_xlsx_rows_are_numbered_by_their_place_in_the_sheet(tmp_path: Path) -> None:
    rows: list[list[Any]] = [["id"], ["a"], [None], ["c"], [None], [None], ["f"], [None]]
    write_xlsx(tmp_path / "o.xlsx", {"S": rows})
    reader = open_file(subtree(tmp_path), "o.xlsx")
    for chunk_rows in (1, 2, 100):
        numbered = [
            (r, v["id"])
            for c in reader.chunks(chunk_rows)
            for r, v in zip(c.rows.tolist(), c.table.to_pylist())
        ]
        assert numbered == [(0, "a"), (2, "c"), (5, "f")]  # Excel rows 2, 4 and 7


def test_a_sheet_is_chosen_by_name_and_a_missing_one_is_named(tmp_path: Path) -> None:
    write_xlsx(tmp_path / "o.xlsx", {"Notes": [["x"], [1]], "Orders": [["id"], ["007"]]})
    reader = open_file(subtree(tmp_path), "o.xlsx", sheet="Orders")
    assert [c.table.to_pylist() for c in reader.chunks()] == [[{"id": "007"}]]
    assert open_file(subtree(tmp_path), "o.xlsx").columns == ["x"]  # the first sheet
    with pytest.raises(SourceError) as caught:
        open_file(subtree(tmp_path), "o.xlsx", name="o.xlsx", sheet="orders")
    assert str(caught.value) == (
        "o.xlsx: there is no sheet 'orders'; the workbook has 'Notes', 'Orders'."
    )


def test_a_serial_number_in_a_date_column_fails_its_row_saying_what_it_looks_like(
    tmp_path: Path,
) -> None:
    when = dt.datetime(2024, 1, 1, 12, 0)
    rows = [["id", "when"], ["a", when], ["b", 45292.5], ["c", "45293"], ["d", when]]
    write_xlsx(tmp_path / "o.xlsx", {"S": rows})
    reader = open_file(subtree(tmp_path), "o.xlsx")
    assert reader.schema.field("when").type == pa.timestamp("ms")
    chunks = list(reader.chunks(100))
    assert [r for c in chunks for r in c.rows.tolist()] == [0, 3]
    lines = [line for c in chunks for line in c.bad_lines]
    assert [(line.row, line.text) for line in lines] == [(1, "b,45292.5"), (2, "c,45293")]
    assert lines[0].reason == (
        "column 'when' holds 45292.5, which looks like an Excel serial date "
        "(2024-01-01 12:00:00) in a cell formatted as text or a number; "
        "format the column as a date in Excel"
    )


def test_a_column_of_mixed_cells_is_text_that_reads_back_exactly(tmp_path: Path) -> None:
    when = dt.datetime(2024, 1, 1, 0, 0, 0, 7000)
    rows = [["v", "w"], [12, when], [12.5, "unknown"], ["N/A", None], [True, when]]
    write_xlsx(tmp_path / "o.xlsx", {"S": rows})
    reader = open_file(subtree(tmp_path), "o.xlsx")
    assert reader.schema.field("v").type == reader.schema.field("w").type == pa.string()
    [chunk] = reader.chunks()
    assert chunk.table.to_pydict() == {
        "v": ["12", "12.5", "N/A", "true"],
        "w": ["2024-01-01T00:00:00.007", "unknown", None, "2024-01-01T00:00:00.007"],
    }


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([], "the sheet is empty; expected a first row of column names."),
        ([["id", "id"], [1, 2]], "the header names 'id' twice."),
    ],
)  # fmt: skip
def test_a_sheet_without_a_proper_header_fails(
    tmp_path: Path, rows: list[list[Any]], message: str
) -> None:
    write_xlsx(tmp_path / "o.xlsx", {"S": rows})
    with pytest.raises(SourceError) as caught:
        open_file(subtree(tmp_path), "o.xlsx", name="o.xlsx")
    assert str(caught.value) == f"o.xlsx: {message}"


def test_a_file_that_is_not_a_workbook_fails(tmp_path: Path) -> None:
    (tmp_path / "o.xlsx").write_text("id\n1\n")
    with pytest.raises(SourceError, match=r"^o\.xlsx: not a readable \.xlsx workbook \("):
        open_file(subtree(tmp_path), "o.xlsx", name="o.xlsx")


# --- JSON Lines ------------------------------------------------------------------------------

JSON_LINES = (
    '{"id": "00123", "total": 12, "paid": true, "customer": {"wallet": "W1", "tier": "gold"}}\n'
    "\n"
    '{"id": "00124", "total": 12.5, "paid": false, "customer": {"wallet": "W2"}, "tags": [1]}\n'
    '{"id": "00125", "total": "N/A", oops}\n'
    "[1, 2]\n"
    '{"id": "00126", "total": "N/A", "big": 123456789012345678901234}\n'
)


@pytest.mark.parametrize("name", ["o.jsonl", "o.ndjson", "o.jsonl.gz", "O.NDJSON.GZ"])
def test_json_lines_are_read_with_nested_fields_as_dotted_columns(
    tmp_path: Path, name: str
) -> None:
    data = JSON_LINES.encode()
    (tmp_path / name).write_bytes(gzip.compress(data) if name.lower().endswith(".gz") else data)
    reader = open_file(subtree(tmp_path), name)
    assert isinstance(reader, JsonLinesReader)
    assert reader.total_rows == 5  # the blank line is no record; the broken ones are
    assert {f.name: str(f.type) for f in reader.schema} == {
        "id": "string",
        "total": "string",  # numbers and text: text, each value as JSON
        "paid": "bool",
        "customer.wallet": "string",
        "customer.tier": "string",
        "tags": "string",
        "big": "string",  # beyond int64
    }
    chunks = list(reader.chunks(2))
    assert [r for c in chunks for r in c.rows.tolist()] == [0, 2, 5]  # the file's line - 1
    records = [r for c in chunks for r in c.table.to_pylist()]
    assert [r["total"] for r in records] == ["12", "12.5", "N/A"]
    assert [r["customer.wallet"] for r in records] == ["W1", "W2", None]
    assert records[1]["tags"] == "[1]"
    assert records[2]["big"] == "123456789012345678901234"
    lines = [line for c in chunks for line in c.bad_lines]
    assert [(line.row, line.what, line.text) for line in lines] == [
        (3, "JSON line", '{"id": "00125", "total": "N/A", oops}'),
        (4, "JSON line", "[1, 2]"),
    ]
    assert (
        lines[0].reason
        == "not JSON: Expecting property name enclosed in double quotes at character 33"
    )
    assert lines[1].reason == "expected a JSON object ({...}); found list"


def test_json_lines_keep_integers_and_floats_apart(tmp_path: Path) -> None:
    (tmp_path / "o.jsonl").write_text('{"n": 1, "f": 1.5, "x": 2}\n{"n": 2, "f": 2, "x": null}\n')
    reader = open_file(subtree(tmp_path), "o.jsonl")
    assert [str(f.type) for f in reader.schema] == ["int64", "double", "int64"]
    [chunk] = reader.chunks()
    assert chunk.table.to_pylist() == [{"n": 1, "f": 1.5, "x": 2}, {"n": 2, "f": 2.0, "x": None}]


def test_a_json_line_that_is_not_utf8_fails_alone(tmp_path: Path) -> None:
    (tmp_path / "o.jsonl").write_bytes(b'{"a": "x"}\n{"a": "caf\xe9"}\n{"a": "z"}\n')
    [chunk] = open_file(subtree(tmp_path), "o.jsonl").chunks()
    assert chunk.rows.tolist() == [0, 2]
    [line] = chunk.bad_lines
    assert (line.row, line.reason) == (1, "not utf-8 text (byte 11)")


def test_json_lines_take_the_encoding_asked_for(tmp_path: Path) -> None:
    (tmp_path / "o.jsonl").write_bytes('{"city": "Zürich"}\n'.encode("cp1252"))
    reader = open_file(subtree(tmp_path), "o.jsonl", encoding="cp1252")
    assert [c.table.to_pylist() for c in reader.chunks()] == [[{"city": "Zürich"}]]
