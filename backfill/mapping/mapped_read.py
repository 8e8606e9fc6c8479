"""What a mapping reads of a source: only the columns it uses and, where its filter allows,
not the Parquet row groups the filter provably drops.

So a wide export costs what its mapped columns cost. The failure report's `record` then
holds these columns (README, "The failure report").
"""

from __future__ import annotations

from collections.abc import Iterator

from backfill.errors import SourceError
from backfill.mapping.pushdown import group_test
from backfill.mapping.spec import Mapping
from backfill.read.source import DEFAULT_CHUNK_ROWS, Chunk, Source


def mapped_columns(source: Source, mapping: Mapping) -> list[str]:
    """The source's columns that the mapping uses, in the source's order: timestamp,
    pubKey, `id`, event_data, the filter's, lookup keys, partition folders."""
    used = set(mapping.columns)
    return [column for column in source.columns if column in used]


def require_mapped_columns(source: Source, mapping: Mapping) -> None:
    """Every file of a source holds the columns the mapping reads (the others may differ);
    a file that lacks one is named with it."""
    found = source.missing_in(mapping.columns)
    if found is not None:
        name, lacking = found
        raise SourceError(
            f"{name}: has no column {lacking[0]!r}, which the mapping {mapping.origin} reads "
            f"(missing {lacking}); every file of a source must hold the columns its mapping "
            "reads."
        )


def mapped_chunks_of(
    source: Source,
    mapping: Mapping,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    *,
    pushdown: bool = True,
) -> Iterator[Chunk]:
    """The source's chunks as the mapping needs them. `pushdown=False` reads every row
    group (to compare, in tests and benchmarks)."""
    skip_group = group_test(mapping.filter) if pushdown else None
    return source.chunks(chunk_rows, mapped_columns(source, mapping), skip_group)
