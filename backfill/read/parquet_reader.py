"""Parquet: the file's own types, one row group at a time (memory does not grow with it)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from backfill.errors import SourceError
from backfill.read.base import Chunk, FileReader, RowGroupTest, numbered

PARQUET_BUFFER_BYTES = 1 << 20


class ParquetReader(FileReader):
    """A Parquet file: its row count and schema come from its footer, before any data."""

    @classmethod
    def open(cls, filesystem: pafs.FileSystem, path: str, name: str) -> ParquetReader:
        try:
            with filesystem.open_input_file(path) as handle:
                meta = pq.read_metadata(handle)
        except (OSError, pa.ArrowException) as exc:
            raise SourceError(f"{name}: not a readable Parquet file ({exc}).") from exc
        return cls(filesystem, path, name, meta.schema.to_arrow_schema(), meta.num_rows)

    def read_chunks(
        self, chunk_rows: int, wanted: list[str], skip_group: RowGroupTest | None
    ) -> Iterator[Chunk]:
        """One row group at a time; a group `skip_group` rules out is not read: its rows
        come as one chunk of `skipped` rows (its row count is in the footer)."""
        first_row = 0
        try:
            with self.filesystem.open_input_file(self.path) as handle:
                for batch in _batches(handle, chunk_rows, wanted, skip_group):
                    if isinstance(batch, _Skipped):
                        rows = np.arange(first_row, first_row + batch.rows, dtype=np.int64)
                        empty = batch.schema.empty_table()
                        yield Chunk(rows[:0], empty, source=self.name, skipped=rows)
                        first_row += batch.rows
                        continue
                    yield numbered(first_row, pa.Table.from_batches([batch]), source=self.name)
                    first_row += batch.num_rows
        except (OSError, pa.ArrowException) as exc:
            raise SourceError(f"{self.name}: cannot read row {first_row} onwards: {exc}") from exc


class _Skipped(NamedTuple):
    """A row group not read: how many rows, and the columns it would have given."""

    rows: int
    schema: pa.Schema


def _batches(
    handle: pa.NativeFile,
    chunk_rows: int,
    columns: list[str],
    skip_group: RowGroupTest | None,
) -> Iterator[pa.RecordBatch | _Skipped]:
    """Batches one row group at a time, without pre-buffering: pyarrow's defaults keep
    buffers of the whole file alive, and memory would grow with its size. A group that
    `skip_group` rules out is not read."""
    reader = pq.ParquetFile(handle, pre_buffer=False, buffer_size=PARQUET_BUFFER_BYTES)
    schema = reader.schema_arrow
    for group in range(reader.num_row_groups):
        if skip_group is not None:
            meta = reader.metadata.row_group(group)
            if meta.num_rows and skip_group(schema, meta, {}):
                wanted = pa.schema([schema.field(column) for column in columns])
                yield _Skipped(meta.num_rows, wanted)
                continue
        yield from reader.iter_batches(batch_size=chunk_rows, row_groups=[group], columns=columns)
