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
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from backfill.source import CsvSource, ParquetSource, Source, read_source

SAMPLE_ROWS = 3_000
HEAD_ROWS = 1_000
STRETCHES = 20
STRETCH_BYTES = 1 << 16
WHOLE_FILE_BYTES = 8 << 20
MAX_GROUPS = 30
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


def sample_source(path: str | Path, *, delimiter: str = ",", rows: int = SAMPLE_ROWS) -> Sample:
    """Open `path` as `run` would (same errors for a bad file) and sample its rows."""
    source = read_source(path, delimiter=delimiter)
    if isinstance(source, ParquetSource):
        return _parquet_sample(source, rows)
    if isinstance(source, CsvSource):
        return _csv_sample(source, rows)
    return Sample(source, _head(source, rows), f"the first {rows:,} rows")


def _head(source: Source, rows: int) -> pa.Table:
    for chunk in source.chunks(rows):
        return chunk.table
    return source.schema.empty_table()


def _parquet_sample(source: ParquetSource, rows: int) -> Sample:
    groups = [
        (file, group)
        for file in source.files
        for group in range(pq.ParquetFile(file).metadata.num_row_groups)
    ]
    if not groups:
        return Sample(source, source.schema.empty_table(), "no rows")
    picked = [groups[i] for i in _spread(len(groups), min(MAX_GROUPS, len(groups)))]
    per_group = math.ceil(rows / len(picked))
    tables = []
    for file, group in picked:
        reader = pq.ParquetFile(file, pre_buffer=False)
        batches = reader.iter_batches(
            batch_size=per_group, row_groups=[group], columns=source.columns
        )
        batch = next(batches, None)
        if batch is not None:
            tables.append(pa.Table.from_batches([batch]))
    table = pa.concat_tables(tables, promote_options="permissive") if tables else _head(source, 0)
    how = (
        f"the first {per_group:,} rows of {len(picked)} of {len(groups)} row groups"
        if len(groups) > 1
        else f"the first {table.num_rows:,} rows (the file has one row group)"
    )
    return Sample(source, table, how)


def _spread(total: int, count: int) -> list[int]:
    return sorted(set(np.linspace(0, total - 1, count).round().astype(int).tolist()))


def _csv_sample(source: CsvSource, rows: int) -> Sample:
    path = source.path
    compressed = path.suffix.lower() == ".gz"
    size = path.stat().st_size
    if compressed or size <= WHOLE_FILE_BYTES:
        table = _csv_all_or_head(source, rows, whole=not compressed)
        how = (
            f"the first {table.num_rows:,} rows (a gzip file cannot be sought in)"
            if compressed
            else f"{table.num_rows:,} rows evenly spaced over the whole file"
        )
        return Sample(source, table, how)
    head = _head(source, min(HEAD_ROWS, rows))
    per_stretch = max(1, (rows - head.num_rows) // STRETCHES)
    offsets = np.linspace(size * 0.05, size - STRETCH_BYTES, STRETCHES).astype(int).tolist()
    tables = [head]
    with path.open("rb") as handle:
        for offset in offsets:
            stretch = _stretch(handle, max(offset, 0), source, per_stretch)
            if stretch is not None:
                tables.append(stretch)
    table = pa.concat_tables([t.cast(source.schema) for t in tables])
    how = (
        f"{table.num_rows:,} rows: the first {head.num_rows:,} and "
        f"{len(tables) - 1} stretches at evenly spaced places in the file"
    )
    return Sample(source, table, how)


def _csv_all_or_head(source: CsvSource, rows: int, *, whole: bool) -> pa.Table:
    if not whole:
        return _head(source, rows)
    tables = [chunk.table for chunk in source.chunks()]
    table = pa.concat_tables(tables) if tables else source.schema.empty_table()
    if table.num_rows <= rows:
        return table
    return table.take(pa.array(_spread(table.num_rows, rows)))


def _stretch(
    handle: io.BufferedReader, offset: int, source: CsvSource, rows: int
) -> pa.Table | None:
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
            read_options=pacsv.ReadOptions(column_names=source.columns, use_threads=False),
            parse_options=pacsv.ParseOptions(
                delimiter=source.delimiter, newlines_in_values=True, invalid_row_handler=count_bad
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={name: pa.string() for name in source.columns},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowException:
        return None
    if table.num_rows < 2 or bad > MAX_BAD_SHARE * (table.num_rows + bad):
        return None
    return table.slice(1, rows)  # the first record may have started inside a quoted value
