"""One file read through a pyarrow filesystem: the interface many-file sources build on."""

from __future__ import annotations

import codecs
import gzip
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from backfill.errors import SourceError
from backfill.formats import CsvReader, FileReader, ParquetReader, format_of, open_file
from backfill.formats.text_codec import likely_encoding


def subtree(tmp_path: Path) -> pafs.FileSystem:
    """A filesystem whose paths are not the local ones, as an object store's are not."""
    return pafs.SubTreeFileSystem(str(tmp_path), pafs.LocalFileSystem())


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.csv", "csv"),
        ("A.CSV.GZ", "csv"),
        ("x/part-0.Parquet", "parquet"),
        ("orders.txt", None),
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
