"""Reading sources: what SOURCE names, one reader per format, a sample for `init`.

- `source`: a file, a directory, a glob or an object-store URL, read one file at a time;
  Hive-style partition folders become columns.
- `formats`: which reader opens a file, by its name; `base`: the chunks every reader yields,
  under the file's own row numbers, and `ChunkReader.chunks`, which they all share.
- `csv_reader`, `parquet_reader`, `jsonl_reader`, `xlsx_reader`: one reader per format;
  `csv_header`: a CSV's header and encoding, read before its data; `text_codec`: text in
  any encoding, decoded as it streams; `jsonl_blocks` and `jsonl_lines`: JSON Lines a block
  at a time (Arrow), line by line (`json`) where a block holds a bad line; `xlsx_cells`: a
  sheet's cells a column at a time; `xlsx_windows`: a sheet handed to calamine a window of
  rows at a time, so memory stays that of a window; `xlsx_columns`: a window's rows as Arrow
  columns of their cells' own kind, kept on disk between the open and the read; `kinds`: a
  column's type from its values' kinds.
- `sampling`: a few thousand rows spread over a source, in bounded time.

Nothing here knows of mappings, events or HTTP.
"""

from __future__ import annotations

from backfill._exports import lazy_exports

__all__, __getattr__ = lazy_exports(
    __name__, Chunk=".base", Source=".source", read_source=".source"
)
