"""Parquet: the file's own types, one row group at a time (memory does not grow with it)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from backfill.errors import SourceError
from backfill.formats.base import DEFAULT_CHUNK_ROWS, Chunk, FileReader, numbered

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

    def chunks(
        self, chunk_rows: int = DEFAULT_CHUNK_ROWS, columns: Sequence[str] | None = None
    ) -> Iterator[Chunk]:
        first_row = 0
        wanted = list(columns) if columns is not None else self.columns
        try:
            with self.filesystem.open_input_file(self.path) as handle:
                for batch in _batches(handle, chunk_rows, wanted):
                    yield numbered(first_row, pa.Table.from_batches([batch]), source=self.name)
                    first_row += batch.num_rows
        except (OSError, pa.ArrowException) as exc:
            raise SourceError(f"{self.name}: cannot read row {first_row} onwards: {exc}") from exc


def _batches(
    handle: pa.NativeFile, chunk_rows: int, columns: list[str]
) -> Iterator[pa.RecordBatch]:
    """Batches one row group at a time, without pre-buffering: pyarrow's defaults keep
    buffers of the whole file alive, and memory would grow with its size."""
    reader = pq.ParquetFile(handle, pre_buffer=False, buffer_size=PARQUET_BUFFER_BYTES)
    for group in range(reader.num_row_groups):
        yield from reader.iter_batches(batch_size=chunk_rows, row_groups=[group], columns=columns)
