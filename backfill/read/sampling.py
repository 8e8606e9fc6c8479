"""A few thousand rows spread over a source, read in bounded time whatever its size.

`backfill init` guesses a mapping from them: the head alone would miss what changes further
down (a date format that turns day-first after the 12th, a column that is empty for the first
months). The sample is evidence for a draft, not a count: `plan` and `validate` read it all.

- CSV: the first rows, then short stretches at evenly spaced byte offsets. Each stretch
  starts at the first line break after its offset. A line break inside a quoted value can
  make that a false line start: the stretch's first record is dropped, lines with the wrong
  number of columns are dropped, and a stretch where many are wrong is dropped whole. A
  small file (up to `WHOLE_FILE_BYTES`) is read whole instead. A gzip file cannot be sought
  in: only its head is sampled.
- Parquet: the first rows of row groups spread over the file(s); a file with one row group
  gives its head.
- .xlsx: the workbook is opened `sampled`: its first rows and stretches spread over the
  sheet, chosen by bytes of the sheet's XML (see `xlsx_windows.sample_windows`); its
  columns' kinds are learned from them only.
"""

from __future__ import annotations

import glob
import gzip
import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from backfill.read.formats import format_of
from backfill.read.sniff import HEAD_BYTES, Sniffed, sniff_csv
from backfill.read.source import CsvReader, FileReader, ParquetReader, Source, read_source
from backfill.read.xlsx_reader import XlsxReader

SAMPLE_ROWS = 3_000
HEAD_ROWS = 1_000
STRETCHES = 20
STRETCH_BYTES = 1 << 16
WHOLE_FILE_BYTES = 8 << 20
MAX_GROUPS = 30
MAX_FILES = 30
MAX_BAD_SHARE = 0.2


@dataclass(frozen=True)
class Sample:
    """Rows of a source in file order, how they were chosen, and the source's columns."""

    source: Source
    table: pa.Table
    how: str

    @property
    def rows(self) -> int:
        return self.table.num_rows


def sample_source(
    path: str | Path,
    *,
    delimiter: str | None = None,
    encoding: str | None = None,
    sheet: str | None = None,
    rows: int = SAMPLE_ROWS,
) -> Sample:
    """Open `path` as `run` would (same errors for a bad file) and sample its rows; a
    directory's files are sampled alike, a share of the rows each."""
    source = read_source(path, delimiter=delimiter, encoding=encoding, sheet=sheet, sampled=True)
    files = [source.files[i] for i in _spread(len(source.files), MAX_FILES)]
    per_file = max(1, math.ceil(rows / max(len(files), 1)))
    tables, how = [], ""
    for reader in files:
        table, how = _sample_file(reader, per_file, source.columns)
        tables.append(table.select(source.columns))
    table = (
        pa.concat_tables(tables, promote_options="permissive")
        if tables
        else source.schema.empty_table()
    )
    if len(files) > 1:
        how = f"{table.num_rows:,} rows from {len(files)} of its {len(source.files)} files"
    return Sample(source, table, how)


def sniff_source(path: str | Path) -> Sniffed | None:
    """The delimiter and encoding of a local CSV source (a glob's first file); None for
    other formats and places, which say how they are written themselves."""
    text = str(path)
    if "://" in text:
        return None
    matches = sorted(glob.glob(text, recursive=True)) if not Path(text).exists() else [text]
    first = next((Path(m) for m in matches if Path(m).is_file()), None)
    if first is None or format_of(first.name) not in ("csv", "text"):
        return None
    opener = gzip.open if first.name.lower().endswith(".gz") else open
    try:
        with opener(first, "rb") as handle:
            head = handle.read(HEAD_BYTES)
    except OSError:
        return None  # read_source says what is wrong with the file
    return sniff_csv(head)


def _sample_file(reader: FileReader, rows: int, columns: list[str]) -> tuple[pa.Table, str]:
    if isinstance(reader, ParquetReader):
        return _parquet_sample(reader, rows, columns)
    if isinstance(reader, CsvReader):
        return _csv_sample(reader, rows)
    if isinstance(reader, XlsxReader):
        return _xlsx_sample(reader, rows, columns)
    table = _head(reader, rows, columns)
    return table, f"the first {table.num_rows:,} rows"


def _head(reader: FileReader, rows: int, columns: list[str] | None = None) -> pa.Table:
    for chunk in reader.chunks(max(rows, 1), columns):
        return chunk.table.slice(0, rows)
    return reader.schema.empty_table()


def _spread(total: int, count: int) -> list[int]:
    if total <= 0:
        return []
    return sorted(set(np.linspace(0, total - 1, min(count, total)).round().astype(int).tolist()))


def _parquet_sample(reader: ParquetReader, rows: int, columns: list[str]) -> tuple[pa.Table, str]:
    with reader.filesystem.open_input_file(reader.path) as handle:
        parquet = pq.ParquetFile(handle, pre_buffer=False)
        groups = parquet.metadata.num_row_groups
        picked = _spread(groups, MAX_GROUPS)
        per_group = math.ceil(rows / max(len(picked), 1))
        tables = []
        for group in picked:
            batches = parquet.iter_batches(
                batch_size=per_group, row_groups=[group], columns=columns
            )
            batch = next(batches, None)
            if batch is not None:
                tables.append(pa.Table.from_batches([batch]))
    table = pa.concat_tables(tables) if tables else reader.schema.empty_table()
    if groups > 1:
        return table, f"the first {per_group:,} rows of {len(picked)} of its {groups} row groups"
    return table, f"the first {table.num_rows:,} rows (the file has one row group)"


def _xlsx_sample(reader: XlsxReader, rows: int, columns: list[str]) -> tuple[pa.Table, str]:
    """The rows of a workbook opened `sampled`: its first read gives only those."""
    tables = [chunk.table for chunk in reader.chunks(columns=columns)]
    table = pa.concat_tables(tables) if tables else reader.schema.empty_table()
    if table.num_rows > rows:
        table = table.take(pa.array(_spread(table.num_rows, rows)))
    return table, f"{table.num_rows:,} rows from the first rows and stretches over the sheet"


def _csv_sample(reader: CsvReader, rows: int) -> tuple[pa.Table, str]:
    compressed = reader.name.lower().endswith(".gz")
    size = reader.filesystem.get_file_info(reader.path).size or 0
    if compressed:
        table = _head(reader, rows)
        return table, f"the first {table.num_rows:,} rows (a gzip file cannot be sought in)"
    if size <= WHOLE_FILE_BYTES:
        tables = [chunk.table for chunk in reader.chunks()]
        table = pa.concat_tables(tables) if tables else reader.schema.empty_table()
        if table.num_rows > rows:
            table = table.take(pa.array(_spread(table.num_rows, rows)))
        return table, f"{table.num_rows:,} rows evenly spaced over the whole file"
    head = _head(reader, min(HEAD_ROWS, rows))
    per_stretch = max(1, (rows - head.num_rows) // STRETCHES)
    offsets = np.linspace(size * 0.05, size - STRETCH_BYTES, STRETCHES).astype(int).tolist()
    tables = [head]
    with reader.filesystem.open_input_file(reader.path) as handle:
        for offset in offsets:
            stretch = _stretch(handle, max(offset, 0), reader, per_stretch)
            if stretch is not None:
                tables.append(stretch)
    table = pa.concat_tables([t.cast(reader.schema) for t in tables])
    how = (
        f"{table.num_rows:,} rows: the first {head.num_rows:,} and "
        f"{len(tables) - 1} stretches at evenly spaced places in the file"
    )
    return table, how


def _stretch(handle: pa.NativeFile, offset: int, reader: CsvReader, rows: int) -> pa.Table | None:
    """Whole lines after `offset`, parsed with the header's columns; None if unusable."""
    handle.seek(offset)
    data = handle.read(STRETCH_BYTES)
    start, end = data.find(b"\n") + 1, data.rfind(b"\n") + 1
    if start <= 0 or end <= start:
        return None
    text = data[start:end].decode("utf-8", errors="replace").encode("utf-8")
    bad = 0

    def count_bad(_: pacsv.InvalidRow) -> str:
        nonlocal bad
        bad += 1
        return "skip"

    try:
        table = pacsv.read_csv(
            io.BytesIO(text),
            read_options=pacsv.ReadOptions(column_names=reader.columns, use_threads=False),
            parse_options=pacsv.ParseOptions(
                delimiter=reader.delimiter, newlines_in_values=True, invalid_row_handler=count_bad
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={name: pa.string() for name in reader.columns},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowException:
        return None
    if table.num_rows < 2 or bad > MAX_BAD_SHARE * (table.num_rows + bad):
        return None
    return table.slice(1, rows)  # the first record may have started inside a quoted value
