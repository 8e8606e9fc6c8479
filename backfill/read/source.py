"""What SOURCE names, and the Source that reads its files one at a time, in sorted order.

A SOURCE is one file (any format `backfill.read.formats` reads), a directory of them (recursive,
hive-style partition folders as columns), a glob, or the same at an object-store URL. How
one file is read (CSV, Parquet...) is `backfill.read.formats`' job; this module finds the files,
checks that they agree on their columns, and chains their chunks.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.fs as pafs

from backfill.errors import SourceError
from backfill.read.formats import (
    DEFAULT_CHUNK_ROWS,
    DIRECTORY_FORMATS,
    FILE_FORMATS,
    BadLine,
    Chunk,
    ChunkReader,
    CsvReader,
    FileReader,
    ParquetReader,
    RowGroupTest,
    format_of,
    numbered,
    open_file,
    open_local_file,
)

__all__ = [
    "DEFAULT_CHUNK_ROWS",
    "SUPPORTED_FORMATS",
    "BadLine",
    "Chunk",
    "CsvReader",
    "FileReader",
    "ParquetReader",
    "Source",
    "numbered",
    "read_source",
]

SUPPORTED_FORMATS = f"{FILE_FORMATS}, a directory or glob of them, or an s3:// URL"
HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"


class Source(ChunkReader):
    """An opened SOURCE: its files' readers, their shared columns, the total size if known.

    Files may differ in columns (two years of one shop's exports do): `columns` are those
    every file has; `missing_in` names a file that lacks a column some other file has."""

    def __init__(self, path: Path | str, files: list[FileReader]) -> None:
        self.path = path
        self.files = files
        self._fingerprints: dict[str, dict[str, int | None]] | None = None
        first = files[0].schema if files else pa.schema([])
        shared = [f for f in first if all(f.name in other.schema.names for other in files[1:])]
        self.schema: pa.Schema = pa.schema(shared, metadata=first.metadata)
        self.columns: list[str] = list(self.schema.names)
        self.all_columns: list[str] = list(dict.fromkeys(n for f in files for n in f.schema.names))
        counts = [file.total_rows for file in files]
        self.total_rows: int | None = (
            None if any(count is None for count in counts) else sum(c or 0 for c in counts)
        )

    @property
    def name(self) -> str:
        return str(self.path)

    @property
    def identity(self) -> str:
        """What a journal is bound to: the source as given, absolute for local paths."""
        text = str(self.path)
        return text if "://" in text else os.path.abspath(text)

    def fingerprints(self) -> dict[str, dict[str, int | None]]:
        """Each file's size and modification time, by its name: what the journal keeps of a
        file, so that `--resume` can tell a file that changed under it (for object stores,
        what the store's listing gives). Asked once per opened source: the plan shown
        before a run and the run itself then cost one request per file, not two."""
        if self._fingerprints is None:
            self._fingerprints = {}
            for file in self.files:
                info = file.filesystem.get_file_info(file.path)
                self._fingerprints[file.name] = {"size": info.size, "mtime_ns": info.mtime_ns}
        return self._fingerprints

    def missing_in(self, columns: Sequence[str]) -> tuple[str, list[str]] | None:
        """The first file that lacks some of `columns` another file has, and those."""
        known = [column for column in columns if column in self.all_columns]
        for file in self.files:
            lacking = [column for column in known if column not in file.schema.names]
            if lacking:
                return file.name, lacking
        return None

    def read_chunks(
        self, chunk_rows: int, wanted: list[str], skip_group: RowGroupTest | None
    ) -> Iterator[Chunk]:
        """Each file's chunks in turn, of the `wanted` columns, each under its file's
        name and the file's own row numbers: a row is known by (file, row), whatever files
        come before it. `skip_group` may rule out Parquet row groups unread."""
        for file in self.files:
            yield from file.chunks(chunk_rows, wanted, skip_group)


def read_source(
    path: str | Path,
    *,
    delimiter: str | None = None,
    encoding: str | None = None,
    sheet: str | None = None,
    sampled: bool = False,
) -> Source:
    """Open what `path` names: the header or schema of each file is read, no data yet.

    A file; a directory (its files of a known format, found recursively, hive-style
    `key=value` folders becoming text columns); a glob (`exports/*.csv`, `lake/**/*.parquet`);
    or any of these at an object-store URL (`s3://`, and `gs://`, `abfs://` where pyarrow
    has the filesystem), with credentials from the store's own environment and config.
    `sampled`: opened for a sample (`init`), see `open_file`."""
    text = str(path)
    options: dict[str, Any] = {
        "delimiter": delimiter,
        "encoding": encoding,
        "sheet": sheet,
        "sampled": sampled,
    }
    if "://" in text:
        return _remote_source(text, options)
    if _is_glob(text) and not Path(text).exists():
        return _local_glob(text, options)
    path = Path(path)
    if not path.exists():
        raise SourceError(f"{path}: no such file or directory.")
    if path.is_dir():
        local = pafs.LocalFileSystem()
        return _directory(local, str(path.resolve()), str(path), options, text)
    if format_of(path.name) is None:
        raise SourceError(
            f"{path}: cannot tell the format from the name {path.name!r}; "
            f"expected {SUPPORTED_FORMATS}."
        )
    return Source(path, [open_local_file(path, **options)])


def _is_glob(text: str) -> bool:
    return any(char in text for char in "*?[")


def _local_glob(pattern: str, options: dict[str, Any]) -> Source:
    """A quoted glob: its files, sorted by path; `**` crosses folders."""
    matches = sorted(
        p
        for p in glob.glob(pattern, recursive=True)
        if Path(p).is_file() and _wanted(p, text_files=True)
    )
    if not matches:
        raise SourceError(
            f"{pattern}: no {FILE_FORMATS} file matches. (Quote the pattern, so that the "
            "shell leaves it to backfill.)"
        )
    readers = [open_local_file(p, **options) for p in matches]
    return Source(pattern, readers)


_CREDENTIALS = {  # where each store's SDK, inside pyarrow, looks: named in the error
    "s3": "AWS_PROFILE, AWS_ACCESS_KEY_ID..., AWS_REGION, AWS_ENDPOINT_URL, ~/.aws/config",
    "gs": "GOOGLE_APPLICATION_CREDENTIALS, or `gcloud auth application-default login`",
    "abfs": "Azure's default chain (AZURE_CLIENT_ID..., a managed identity, `az login`)",
}
_CREDENTIALS["abfss"] = _CREDENTIALS["abfs"]


def _remote_source(url: str, options: dict[str, Any]) -> Source:
    """An object-store URL, read through pyarrow's filesystem for its scheme."""
    base = url
    if _is_glob(url):
        head = re.split(r"[*?\[]", url, maxsplit=1)[0]
        base = head[: head.rfind("/") + 1] if "/" in head.split("://", 1)[1] else head
    scheme = url.split("://", 1)[0].lower()
    if scheme == "az":
        raise SourceError(
            f"{url}: pyarrow names Azure storage abfs://, with the account in the URL: "
            "abfs://CONTAINER@ACCOUNT.dfs.core.windows.net/PATH (az:// is fsspec's name)."
        )
    try:
        filesystem, root = pafs.FileSystem.from_uri(base)
        info = filesystem.get_file_info(root)
    except (OSError, pa.ArrowException, ValueError) as exc:
        raise SourceError(
            f"{url}: cannot open it ({exc}). Credentials, region and endpoint come from the "
            f"store's own environment and configuration: {_CREDENTIALS.get(scheme, 'its SDK')}."
        ) from None
    if base != url:
        pattern = root.rstrip("/") + "/" + url[len(base) :]
        return _directory(filesystem, root, base.rstrip("/"), options, url, pattern)
    if info.type == pafs.FileType.File:
        if format_of(root) is None:
            raise SourceError(
                f"{url}: cannot tell the format from the name; expected {SUPPORTED_FORMATS}."
            )
        return Source(url, [open_file(filesystem, root, name=url, **options)])
    if info.type == pafs.FileType.NotFound:
        raise SourceError(f"{url}: no such file or prefix.")
    return _directory(filesystem, root, url.rstrip("/"), options, url)


def _directory(
    filesystem: pafs.FileSystem,
    root: str,
    shown: str,
    options: dict[str, Any],
    name: str,
    pattern: str | None = None,
) -> Source:
    """Every file of a known format under `root`, sorted by path; hidden ones (`.x`, `_x`:
    `_SUCCESS`, `.crc`) left out. Files in `key=value` folders get those as columns."""
    try:
        infos = filesystem.get_file_info(pafs.FileSelector(root, recursive=True))
    except (OSError, pa.ArrowException) as exc:
        raise SourceError(f"{name}: cannot list it ({exc}).") from None
    root = root.rstrip("/")
    found = []
    for info in infos:
        relative = info.path[len(root) + 1 :] if info.path.startswith(root + "/") else info.path
        if info.type != pafs.FileType.File or not _wanted(relative):
            continue
        if pattern is not None and not fnmatch.fnmatchcase(info.path, pattern):
            continue
        found.append(relative)
    if not found:
        raise SourceError(f"{name}: holds no {DIRECTORY_FORMATS} files.")
    readers = []
    for relative in sorted(found):
        shown_name = f"{shown.rstrip('/')}/{relative}"
        reader = open_file(filesystem, f"{root}/{relative}", name=shown_name, **options)
        partitions = _partitions(relative)
        readers.append(PartitionedReader(reader, partitions) if partitions else reader)
    return Source(name, readers)


def _wanted(relative: str, text_files: bool = False) -> bool:
    """A file of a known format, not hidden. A .txt file only when a glob names it: in a
    directory it is more often a README than a tab-separated export."""
    parts = relative.replace("\\", "/").split("/")
    file_format = format_of(parts[-1])
    known = file_format is not None and (text_files or file_format != "text")
    return known and not any(p[:1] in (".", "_") for p in parts)


def _partitions(relative: str) -> dict[str, str | None]:
    """Hive-style folders on the way to a file: `year=2024/month=03/x.parquet`."""
    found: dict[str, str | None] = {}
    for part in relative.split("/")[:-1]:
        key, equals, value = part.partition("=")
        if equals and key:
            text = unquote(value)
            found[key] = None if text == HIVE_NULL else text
    return found


class PartitionedReader(FileReader):
    """A file in hive-style folders: the folders' `key=value` pairs are text columns of
    every row (text, as CSV columns are: never guessed; the mapping says the type)."""

    def __init__(self, inner: FileReader, partitions: dict[str, str | None]) -> None:
        clash = [key for key in partitions if key in inner.schema.names]
        if clash:
            raise SourceError(
                f"{inner.name}: the folder names the column {clash[0]!r}, which the file "
                "also has; rename the one or the other."
            )
        schema = inner.schema
        for key in partitions:
            schema = schema.append(pa.field(key, pa.string()))
        super().__init__(inner.filesystem, inner.path, inner.name, schema, inner.total_rows)
        self.inner = inner
        self.partitions = partitions

    def read_chunks(
        self, chunk_rows: int, wanted: list[str], skip_group: RowGroupTest | None
    ) -> Iterator[Chunk]:
        own = [column for column in wanted if column not in self.partitions]
        for chunk in self.inner.chunks(chunk_rows, own, self._with_folders(skip_group)):
            table = chunk.table
            for key, value in self.partitions.items():
                if key in wanted:
                    table = table.append_column(
                        key, pa.array([value] * table.num_rows, type=pa.string())
                    )
            yield replace(chunk, table=table.select(wanted))

    def _with_folders(self, skip_group: RowGroupTest | None) -> RowGroupTest | None:
        """The test, told that the folders' columns are constant: `status == 'paid'` rules
        out every group of a file under `status=refunded/`."""
        if skip_group is None:
            return None
        test, folders = skip_group, self.partitions
        return lambda schema, group, constants: test(schema, group, {**constants, **folders})
