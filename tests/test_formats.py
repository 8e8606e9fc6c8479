"""One file read through a pyarrow filesystem: the interface many-file sources build on."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from backfill.errors import SourceError
from backfill.formats import CsvReader, ParquetReader, format_of, open_file


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
