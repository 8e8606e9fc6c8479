"""Reading orders files: CSV as text exactly as written, Parquet with its own types, both as
chunks whose row numbers do not depend on the chunk size."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backfill.errors import SourceError
from backfill.read.formats import DIRECTORY_FORMATS
from backfill.read.source import BadLine, CsvReader, ParquetReader, Source, read_source

TRY_CP1252 = "it looks like cp1252: try --encoding cp1252, or save the file as UTF-8"


def write_csv(tmp_path: Path, text: str, name: str = "orders.csv", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def write_parquet(path: Path, columns: dict[str, Any], row_group_size: int | None = None) -> Path:
    pq.write_table(pa.table(columns), path, row_group_size=row_group_size)
    return path


def read_all(source: Source, chunk_rows: int = 1000) -> tuple[list[int], list[dict[str, Any]]]:
    """Row numbers and records of every chunk, in order."""
    rows: list[int] = []
    records: list[dict[str, Any]] = []
    for chunk in source.chunks(chunk_rows):
        assert len(chunk) == len(chunk.rows)
        rows += chunk.rows.tolist()
        records += chunk.table.to_pylist()
    return rows, records


def bad_lines(source: Source, chunk_rows: int = 1000) -> list[BadLine]:
    return [line for chunk in source.chunks(chunk_rows) for line in chunk.bad_lines]


# --- CSV -----------------------------------------------------------------------------------


def test_quoted_csv_fields_keep_commas_quotes_and_newlines(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path,
        "id,Product Name,Country/Region\n"
        '1,"Bundle: Hoodie, Cap","Korea, Republic of"\n'
        '2,"Gift Card\n$100",Chile\n'
        '3,"The ""Café"" ◎ mug",Peru\n',
    )
    rows, records = read_all(read_source(path))
    assert rows == [0, 1, 2]
    assert [r["Product Name"] for r in records] == [
        "Bundle: Hoodie, Cap",
        "Gift Card\n$100",
        'The "Café" ◎ mug',
    ]
    assert records[0]["Country/Region"] == "Korea, Republic of"


def test_column_names_with_spaces_and_punctuation_are_kept(tmp_path: Path) -> None:
    path = write_csv(tmp_path, 'Order Date,Country/Region,"a, b",Total ($)\n2024-01-01,FR,x,5\n')
    source = read_source(path)
    assert source.columns == ["Order Date", "Country/Region", "a, b", "Total ($)"]
    assert read_all(source)[1] == [
        {"Order Date": "2024-01-01", "Country/Region": "FR", "a, b": "x", "Total ($)": "5"}
    ]


def test_csv_values_stay_text_exactly_as_written(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "sku,total,flag,when,note\n00123,1e3,TRUE,1731596206,\n")
    source = read_source(path)
    assert source.schema == pa.schema([(name, pa.string()) for name in source.columns])
    assert read_all(source)[1] == [
        {"sku": "00123", "total": "1e3", "flag": "TRUE", "when": "1731596206", "note": ""}
    ]


def test_a_utf8_bom_is_not_part_of_the_first_column_name(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "\ufefforder_id,name\nORD-1,Café\n")
    source = read_source(path)
    assert source.columns == ["order_id", "name"]
    assert read_all(source)[1] == [{"order_id": "ORD-1", "name": "Café"}]


def test_a_semicolon_delimiter_keeps_decimal_commas(tmp_path: Path) -> None:
    path = write_csv(tmp_path, 'id;total;note\n1;14,95;"a;b"\n')
    source = read_source(path, delimiter=";")
    assert source.columns == ["id", "total", "note"]
    assert read_all(source)[1] == [{"id": "1", "total": "14,95", "note": "a;b"}]


def test_a_delimiter_must_be_one_character(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "a,b\n1,2\n")
    with pytest.raises(SourceError, match=r"must be one character or one of tab, comma, .*';;'"):
        read_source(path, delimiter=";;")


@pytest.mark.parametrize("name", ["orders.csv.gz", "ORDERS.CSV.GZ"])
def test_gzipped_csv_is_read(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write('id,sku\n1,00123\n2,"a\nb"\n')
    source = read_source(path)
    assert [type(file) for file in source.files] == [CsvReader]
    assert read_all(source) == ([0, 1], [{"id": "1", "sku": "00123"}, {"id": "2", "sku": "a\nb"}])


@pytest.mark.parametrize(
    "text", ["id,sku\r\n1,a\r\n2,b\r\n", "id,sku\n1,a\n2,b", "id,sku\n1,a\n\n2,b\n"]
)
def test_line_endings_and_blank_lines_do_not_make_rows(tmp_path: Path, text: str) -> None:
    rows, records = read_all(read_source(write_csv(tmp_path, text)))
    assert rows == [0, 1]
    assert records == [{"id": "1", "sku": "a"}, {"id": "2", "sku": "b"}]


def test_an_empty_csv_fails(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "")
    with pytest.raises(SourceError) as caught:
        read_source(path)
    assert str(caught.value) == (
        f"{path}: the file is empty; expected a header line of column names."
    )


def test_a_header_only_csv_has_no_rows(tmp_path: Path) -> None:
    source = read_source(write_csv(tmp_path, "id,sku\n"))
    assert source.columns == ["id", "sku"]
    assert read_all(source) == ([], [])
    assert bad_lines(source) == []


def test_ragged_lines_are_set_aside_and_reading_continues(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "id,sku\n1,a\n2,b,extra\n3\n4,d\n")
    source = read_source(path)
    assert read_all(source) == ([0, 3], [{"id": "1", "sku": "a"}, {"id": "4", "sku": "d"}])
    assert bad_lines(source) == [
        BadLine(text="2,b,extra", reason="expected 2 columns, found 3", row=1),
        BadLine(text="3", reason="expected 2 columns, found 1", row=2),
    ]


@pytest.mark.parametrize("chunk_rows", [7, 1000])
def test_a_value_longer_than_a_block_is_read_once_with_every_line_around_it(
    tmp_path: Path, chunk_rows: int
) -> None:
    # Blocks start small (memory) and grow when a value does not fit: the lines read before
    # the growth, good or bad, must be neither read again nor lost.
    big = "x" * 3_000_000
    lines = [f"{i},ok" for i in range(20_000)]  # several blocks of 64 kB before the value
    lines[10_000:10_000] = ["ragged,line,here"]
    lines += [f'20000,"{big}"', "20001,LATIN1", "a,ragged,line"]
    lines += [f"{i},ok" for i in range(20_002, 20_100)]
    path = tmp_path / "orders.csv"
    text = "id,note\n" + "\n".join(lines) + "\n"
    path.write_bytes(text.encode().replace(b"LATIN1", "café".encode("latin-1")))
    source = read_source(path)
    rows, records = read_all(source, chunk_rows)
    ids = [record["id"] for record in records]
    assert ids == [str(i) for i in range(20_001)] + [str(i) for i in range(20_002, 20_100)]
    bad_records = {10_000, 20_002, 20_003}  # each line is one record: its index is its row
    assert rows == [row for row in range(len(lines)) if row not in bad_records]
    assert records[20_000]["note"] == big
    assert [(line.row, line.reason) for line in bad_lines(source, chunk_rows)] == [
        (10_000, "expected 2 columns, found 3"),
        (20_002, f"column 'note' is not UTF-8 text; {TRY_CP1252}"),
        (20_003, "expected 2 columns, found 3"),
    ]


def test_a_header_that_is_not_utf8_fails(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "id,Café\n1,2\n", encoding="latin-1")
    with pytest.raises(SourceError, match=r"the header is not UTF-8 text"):
        read_source(path)


@pytest.mark.parametrize("name", ["orders.xls", "orders.json", "orders"])
def test_an_unknown_extension_fails(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text("id\n1\n")
    with pytest.raises(SourceError) as caught:
        read_source(path)
    assert str(caught.value) == (
        f"{path}: cannot tell the format from the name {name!r}; "
        "expected .csv, .csv.gz, .parquet, .xlsx, .jsonl, .ndjson (.gz), .tsv, .tab, "
        "a tab-separated .txt, a directory or glob of them, or an s3:// URL."
    )


def test_a_missing_file_fails(tmp_path: Path) -> None:
    with pytest.raises(SourceError) as caught:
        read_source(tmp_path / "nope.csv")
    assert str(caught.value) == f"{tmp_path / 'nope.csv'}: no such file or directory."


# --- Parquet -------------------------------------------------------------------------------


def test_parquet_keeps_its_column_types(tmp_path: Path) -> None:
    path = write_parquet(
        tmp_path / "orders.parquet",
        {
            "sku": pa.array(["00123", None]),
            "quantity": pa.array([3, None], pa.int64()),
            "total": pa.array([49.9, 100.0]),
            "premium": pa.array([True, False]),
        },
    )
    source = read_source(path)
    assert [type(file) for file in source.files] == [ParquetReader]
    assert source.total_rows == 2
    assert source.schema.field("quantity").type == pa.int64()
    assert read_all(source)[1] == [
        {"sku": "00123", "quantity": 3, "total": 49.9, "premium": True},
        {"sku": None, "quantity": None, "total": 100.0, "premium": False},
    ]


def test_a_parquet_directory_numbers_each_files_rows_on_their_own_under_its_name(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "orders"
    folder.mkdir()
    write_parquet(folder / "part-2.parquet", {"id": [4, 5, 6], "s": ["d", "e", "f"]})
    write_parquet(folder / "part-1.parquet", {"id": [1, 2, 3], "s": ["a", "b", "c"]})
    write_parquet(folder / "part-3.parquet", {"s": ["g"], "id": [7]})  # column order may differ
    (folder / "_SUCCESS").write_text("")
    (folder / "notes.txt").write_text("not data")
    source = read_source(folder)
    assert source.total_rows == 7
    for chunk_rows in (1, 2, 1000):
        rows, records = read_all(source, chunk_rows)
        assert rows == [0, 1, 2, 0, 1, 2, 0]
        assert [r["id"] for r in records] == [1, 2, 3, 4, 5, 6, 7]
        files = [(chunk.source, row) for chunk in source.chunks(chunk_rows) for row in chunk.rows]
        assert files == [(str(folder / f"part-{(i // 3) + 1}.parquet"), i % 3) for i in range(7)]
        assert [r["s"] for r in records] == list("abcdefg")


def test_a_directory_whose_files_differ_in_columns_gives_the_shared_ones(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "orders"
    folder.mkdir()
    write_parquet(folder / "a.parquet", {"id": [1], "sku": ["x"]})
    write_parquet(folder / "b.parquet", {"id": [2], "SKU": ["y"]})
    source = read_source(folder)
    assert source.columns == ["id"]
    assert [r["id"] for r in read_all(source, 10)[1]] == [1, 2]
    assert source.missing_in(["id", "sku"]) == (str(folder / "b.parquet"), ["sku"])
    assert source.missing_in(["id", "nowhere"]) is None


def test_a_directory_without_data_files_fails(tmp_path: Path) -> None:
    (tmp_path / "orders.txt").write_text("id\n1\n")
    (tmp_path / "_hidden.csv").write_text("id\n1\n")
    with pytest.raises(SourceError) as caught:
        read_source(tmp_path)
    assert str(caught.value) == f"{tmp_path}: holds no {DIRECTORY_FORMATS} files."


def test_a_file_that_is_not_parquet_fails(tmp_path: Path) -> None:
    path = tmp_path / "orders.parquet"
    path.write_text("id,sku\n1,a\n")
    with pytest.raises(SourceError, match=r"orders\.parquet: not a readable Parquet file \("):
        read_source(path)


# --- chunks --------------------------------------------------------------------------------

ROWS = 1500  # with the padding, the CSV spans several of the reader's blocks


def many_rows_csv(tmp_path: Path) -> tuple[Path, list[int], list[dict[str, str]]]:
    """A CSV of ROWS good records with quoted newlines, and two ragged ones after records
    10 and 1200: the good rows' numbers, and their values."""
    lines = ["id,note,pad"]
    rows, expected = [], []
    for number in range(ROWS):
        note = f"line {number}\nsecond, part" if number % 97 == 0 else f"n{number}"
        pad = "x" * (100 + number % 200)
        rows.append(len(lines) - 1)  # the header is not a record; a quoted newline is no new one
        lines.append(f'{number},"{note}",{pad}')
        expected.append({"id": str(number), "note": note, "pad": pad})
        if number in (10, 1200):
            lines.append("ragged,line")
    return write_csv(tmp_path, "\n".join(lines) + "\n"), rows, expected


@pytest.mark.parametrize("chunk_rows", [1, 7, 1000])
def test_csv_row_numbers_do_not_depend_on_chunk_size(tmp_path: Path, chunk_rows: int) -> None:
    path, rows, expected = many_rows_csv(tmp_path)
    assert path.stat().st_size > 256 * 1000  # more than one block even for 1000 rows
    source = read_source(path)
    chunks = list(source.chunks(chunk_rows))
    assert all(len(chunk) <= chunk_rows for chunk in chunks)
    assert len(chunks) >= ROWS // chunk_rows
    assert read_all(source, chunk_rows) == (rows, expected)
    assert [(line.row, line.text) for line in bad_lines(source, chunk_rows)] == [
        (11, "ragged,line"),
        (1202, "ragged,line"),
    ]


def test_each_chunk_covers_the_records_after_the_chunk_before(tmp_path: Path) -> None:
    path, _, _ = many_rows_csv(tmp_path)
    covered: list[int] = []
    for chunk in read_source(path).chunks(7):
        numbers = sorted(chunk.rows.tolist() + [line.row for line in chunk.bad_lines])
        assert not covered or numbers[0] > covered[-1]
        covered += numbers
    assert covered == list(range(ROWS + 2))


@pytest.mark.parametrize("chunk_rows", [1, 7, 1000])
def test_parquet_row_numbers_do_not_depend_on_chunk_size(tmp_path: Path, chunk_rows: int) -> None:
    ids = list(range(ROWS))
    path = write_parquet(tmp_path / "orders.parquet", {"id": ids}, row_group_size=400)
    source = read_source(path)
    chunks = list(source.chunks(chunk_rows))
    assert all(len(chunk) <= chunk_rows for chunk in chunks)
    rows, records = read_all(source, chunk_rows)
    assert rows == ids
    assert [r["id"] for r in records] == ids


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    kinds=st.lists(st.sampled_from(["good", "multiline", "ragged", "blank-before"]), max_size=40),
    chunk_rows=st.sampled_from([1, 3, 50]),
)
def test_every_record_keeps_its_own_number_whatever_surrounds_it(
    tmp_path: Path, kinds: list[str], chunk_rows: int
) -> None:
    lines, good, ragged = ["id,note"], [], []
    for number, kind in enumerate(kinds):
        if kind == "ragged":
            lines.append(f"{number},a,b")
            ragged.append(number)
            continue
        if kind == "blank-before":
            lines.append("")  # a blank line is no record
        lines.append(f'{number},"two\nlines"' if kind == "multiline" else f"{number},x")
        good.append(number)
    source = read_source(write_csv(tmp_path, "\n".join(lines) + "\n", name="p.csv"))
    rows, records = read_all(source, chunk_rows)
    assert rows == good == [int(record["id"]) for record in records]
    assert [line.row for line in bad_lines(source, chunk_rows)] == ragged
