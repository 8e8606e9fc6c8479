"""JSON Lines (.jsonl, .ndjson, optionally .gz): one JSON object per line, read line by line.

Why not pyarrow's JSON reader: it reads a whole block at once and fails the whole file at
the first line that is not JSON, without saying which (and its streaming reader is newer
than the pyarrow we support). A broken line must instead fail alone, under its own row, and
the run go on. So each line is parsed by Python's `json`, and the values are gathered into
Arrow columns chunk by chunk.

Row `r` is the file's line `r + 1`; blank lines are no records but keep their place. Nested
objects become columns named by their dotted path (`customer.wallet`), which a mapping names
in backticks (`` `customer.wallet` ``). Lists stay JSON text. The columns and their types come
from a first pass over the file: a column of strings is text, of integers integers, of
numbers floats, of booleans booleans; one mixing kinds is text, each value written as JSON
(`12`, `12.5`, `true`), so the mapping reads it back exactly.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs

from backfill.errors import SourceError
from backfill.read.base import DEFAULT_CHUNK_ROWS, BadLine, Chunk, FileReader, RowGroupTest
from backfill.read.text_codec import check_encoding

READ_BYTES = 1 << 20
WHAT = "JSON line"
_KINDS = {str: "text", bool: "boolean", int: "integer", float: "float"}


class JsonLinesReader(FileReader):
    """A JSON Lines file: its columns are the union of its objects' (flattened) keys."""

    def __init__(
        self,
        filesystem: pafs.FileSystem,
        path: str,
        name: str,
        schema: pa.Schema,
        total_rows: int,
        encoding: str,
    ) -> None:
        super().__init__(filesystem, path, name, schema, total_rows)
        self.encoding = encoding

    @classmethod
    def open(
        cls, filesystem: pafs.FileSystem, path: str, name: str, encoding: str | None = None
    ) -> JsonLinesReader:
        """Reads the file once: the columns, their kinds of values, and the record count."""
        chosen = check_encoding(encoding) if encoding is not None else "utf-8"
        kinds: dict[str, set[str]] = {}
        records = 0
        for _, parsed in _parsed_lines(filesystem, path, name, chosen):
            if isinstance(parsed, dict):
                records += 1
                for column, value in parsed.items():
                    found = kinds.setdefault(column, set())
                    if value is not None:
                        found.add(_kind(value))
            elif isinstance(parsed, BadLine):
                records += 1
        schema = pa.schema([(column, _arrow_type(kind)) for column, kind in kinds.items()])
        return cls(filesystem, path, name, schema, records, chosen)

    def chunks(
        self,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
        columns: Sequence[str] | None = None,
        skip_group: RowGroupTest | None = None,
    ) -> Iterator[Chunk]:
        wanted = list(columns) if columns is not None else self.columns
        schema = pa.schema([self.schema.field(column) for column in wanted])
        rows: list[int] = []
        objects: list[dict[str, Any]] = []
        lines: list[BadLine] = []
        for number, parsed in _parsed_lines(self.filesystem, self.path, self.name, self.encoding):
            if isinstance(parsed, BadLine):
                lines.append(parsed)
            elif parsed is not None:
                rows.append(number)
                objects.append(parsed)
                if len(objects) >= chunk_rows:
                    yield _chunk(rows, objects, lines, schema, self.name)
                    rows, objects, lines = [], [], []
        if objects or lines:
            yield _chunk(rows, objects, lines, schema, self.name)


def _chunk(
    rows: list[int],
    objects: list[dict[str, Any]],
    lines: list[BadLine],
    schema: pa.Schema,
    source: str,
) -> Chunk:
    arrays = [_array([item.get(f.name) for item in objects], f.type) for f in schema]
    table = pa.Table.from_arrays(arrays, schema=schema)
    return Chunk(np.array(rows, dtype=np.int64), table, tuple(lines), source)


def _parsed_lines(
    filesystem: pafs.FileSystem, path: str, name: str, encoding: str
) -> Iterator[tuple[int, dict[str, Any] | BadLine | None]]:
    """(row, the line's object flattened | a BadLine | None for a blank line), in order."""
    for number, raw in enumerate(_raw_lines(filesystem, path, name)):
        if not raw.strip():
            yield number, None
            continue
        try:
            parsed = json.loads(raw.decode(encoding))
        except UnicodeDecodeError as exc:
            text = raw.decode(encoding, "backslashreplace").rstrip("\r\n")
            reason = f"not {encoding} text (byte {exc.start + 1})"
            yield number, BadLine(text, reason, number, what=WHAT)
            continue
        except json.JSONDecodeError as exc:
            text = raw.decode(encoding, "backslashreplace").rstrip("\r\n")
            reason = f"not JSON: {exc.msg} at character {exc.pos + 1}"
            yield number, BadLine(text, reason, number, what=WHAT)
            continue
        if not isinstance(parsed, dict):
            text = raw.decode(encoding).rstrip("\r\n")
            reason = f"expected a JSON object ({{...}}); found {type(parsed).__name__}"
            yield number, BadLine(text, reason, number, what=WHAT)
            continue
        yield number, _flatten(parsed)


def _raw_lines(filesystem: pafs.FileSystem, path: str, name: str) -> Iterator[bytes]:
    compression = "gzip" if name.lower().endswith(".gz") else None
    try:
        with filesystem.open_input_stream(path, compression=compression) as stream:
            rest = b""
            while block := stream.read(READ_BYTES):
                lines = (rest + block).split(b"\n")
                rest = lines.pop()
                yield from lines
            if rest:
                yield rest
    except (OSError, pa.ArrowException) as exc:
        raise SourceError(f"{name}: cannot read the file: {exc}") from exc


def _flatten(item: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested objects as dotted paths; lists as JSON text."""
    flat: dict[str, Any] = {}
    for key, value in item.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, path + "."))
        elif isinstance(value, list):
            flat[path] = json.dumps(value, ensure_ascii=False)
        else:
            flat[path] = value
    return flat


def _kind(value: Any) -> str:
    kind = _KINDS.get(type(value), "text")
    if kind == "integer" and not -(2**63) <= value < 2**63:
        return "text"  # beyond int64: read as its digits, so the mapping can say what it is
    return kind


def _arrow_type(kinds: set[str]) -> pa.DataType:
    if kinds == {"boolean"}:
        return pa.bool_()
    if kinds == {"integer"}:
        return pa.int64()
    if kinds and kinds <= {"integer", "float"}:
        return pa.float64()
    return pa.string()


def _array(values: list[Any], kind: pa.DataType) -> pa.Array:
    if pa.types.is_string(kind):
        return pa.array(
            [v if isinstance(v, str) or v is None else json.dumps(v) for v in values], kind
        )
    return pa.array(values, kind)
