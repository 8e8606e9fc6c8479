"""Lookup tables: a field's value found by key in a second file, e.g. a customer's wallet.

A mapping may come from someone else, so the table it names is the one file it can make
backfill read, and only under rules that keep it from probing the machine: a relative path,
inside the mapping file's folder (symbolic links resolved), ending in .csv, .csv.gz or
.parquet, read-only and local. Nothing is written and no URL is followed.

The table is read once (its key and value columns only) into a hash index; each chunk is
then joined in one vectorised call. Keys are compared as text (an integer key 42 matches
the text "42"), so a CSV table serves a Parquet source and the other way round; `match`
compares them after trimming spaces and/or case on both sides (e-mails as buyers typed them).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from backfill.errors import MappingError
from backfill.mapping.convert import Converted, Problem

TABLE_SUFFIXES = (".csv", ".csv.gz", ".parquet")
CACHED_TABLES = 4


@dataclass(frozen=True)
class Lookup:
    """`column`'s value looked up in `path`'s `key` column; the field takes its `value`."""

    path: Path  # resolved, inside the mapping's folder
    written: str  # as the mapping writes it, for messages
    key: str
    value: str
    mapping_key: str  # e.g. user.pubKey, for messages
    match: tuple[str, ...] = ()  # MATCH_RULES applied to keys on both sides

    def index(self) -> LookupIndex:
        stat = self.path.stat()
        return _load_index(self, stat.st_size, stat.st_mtime_ns)

    def translate(self, keys: pa.Array) -> tuple[pa.Array, np.ndarray]:
        """The values for `keys` (null where the key is missing or unknown), and which
        non-empty keys the table does not hold."""
        return self.index().translate(keys)

    def describe_unknown(self, key: object) -> str:
        return f"no {self.value} for {self.key} {key!r}"


class LookupIndex:
    """A table's keys sorted once (Arrow text, a few bytes a key), and its values in the
    same order: each chunk's keys are found by binary search, in Arrow, without a Python
    object per key. A hash index (dict or pandas) was 3-8x slower per row at a million
    keys here, and several times larger."""

    def __init__(
        self,
        keys: pa.Array,
        values: pa.Array,
        match: tuple[str, ...] = (),
        written: pa.Array | None = None,
    ) -> None:
        self.keys = keys  # normalised by `match`
        self.values = values
        self.match = match
        self.written = keys if written is None else written  # each key as the table has it

    def __len__(self) -> int:
        return len(self.keys)

    def translate(self, keys: pa.Array) -> tuple[pa.Array, np.ndarray]:
        found, hit, present = self._find(keys)
        values = self.values.take(pa.array(found, type=pa.int64(), mask=~hit))
        return values, present & ~hit

    def matched_by_normalising(self, keys: pa.Array) -> int:
        """How many of `keys` are found only because both sides were normalised (`match`):
        the key as the orders write it differs from the table's."""
        if not self.match or not len(self.keys):
            return 0
        found, hit, _ = self._find(keys)
        written = self.written.take(pa.array(found))
        same = pc.fill_null(pc.equal(written, _as_text(keys)), False)
        return int((hit & ~same.to_numpy(zero_copy_only=False)).sum())

    def _find(self, keys: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Where each key sits among the table's, whether it is there, whether it is given."""
        text = normalised(_as_text(keys), self.match)
        present = ~_missing(text)
        if not len(self.keys):
            return np.zeros(len(text), dtype=np.int64), np.zeros(len(text), bool), present
        text = pc.fill_null(text, "")
        found = np.minimum(_search_sorted(self.keys, text), len(self.keys) - 1)
        same = pc.equal(self.keys.take(pa.array(found)), text)
        hit = present & pc.fill_null(same, False).to_numpy(zero_copy_only=False)
        return found, hit, present


MATCH_RULES = ("casefold", "trim")


def normalised(text: pa.Array, match: tuple[str, ...]) -> pa.Array:
    """Keys as `match` compares them: `trim` drops spaces around, `casefold` compares
    without case (Unicode lower case, Arrow's: `ß` stays `ß`, unlike str.casefold)."""
    if "trim" in match:
        text = pc.utf8_trim_whitespace(text)
    if "casefold" in match:
        text = pc.utf8_lower(text)
    return text


def looked_up(
    column: pa.Array | pa.ChunkedArray,
    lookup: Lookup | None,
    convert: Callable[[pa.Array], Converted],
) -> Converted:
    """`convert` applied to the column, or to the values its keys find in the table: a key
    the table lacks fails the row with its own message, never as a missing value."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if lookup is None:
        return convert(array)
    values, unknown = lookup.translate(array)
    converted = convert(values)
    converted.missing = converted.missing & ~unknown
    converted.problems = [replace(p, mask=p.mask & ~unknown) for p in converted.problems]
    reason = f"has no {lookup.value} in {lookup.written}"
    converted.problems.append(Problem(unknown, reason, lookup.describe_unknown))
    return converted


def lookup_from_spec(spec: dict[str, object], mapping_key: str, origin: str) -> Lookup:
    """Check a field's `lookup`, `key` and `value` and open the table (once, cached)."""
    for name in ("column", "key", "value"):
        if not isinstance(spec.get(name), str) or not spec.get(name):
            raise MappingError(
                f"{origin}: {mapping_key}.{name}: a lookup needs column (in the source), "
                "key and value (columns of the table) as names; "
                f"found {spec.get(name)!r}."
            )
    lookup = Lookup(
        path=table_path(spec.get("lookup"), mapping_key, origin),
        written=str(spec["lookup"]),
        key=str(spec["key"]),
        value=str(spec["value"]),
        mapping_key=mapping_key,
        match=_match_rules(spec.get("match"), mapping_key, origin),
    )
    lookup.index()  # a bad table is a mapping error now, before any row is read
    return lookup


def _match_rules(value: object, mapping_key: str, origin: str) -> tuple[str, ...]:
    """`match`: one rule or a list of them, each in MATCH_RULES."""
    if value is None:
        return ()
    rules = value if isinstance(value, list) else [value]
    if not rules or any(rule not in MATCH_RULES for rule in rules):
        raise MappingError(
            f"{origin}: {mapping_key}.match: expected casefold, trim or a list of them; "
            f"found {value!r}."
        )
    return tuple(dict.fromkeys(str(rule) for rule in rules))


def table_path(written: object, mapping_key: str, origin: str) -> Path:
    """The table's place: relative to the mapping file, and never outside its folder."""
    where = f"{origin}: {mapping_key}.lookup"
    if not isinstance(written, str) or not written.strip():
        raise MappingError(
            f"{where}: expected the path of a .csv or .parquet file; found {written!r}."
        )
    if "://" in written or PureWindowsPath(written).drive:
        raise MappingError(f"{where}: {written!r} is not a local file; a lookup table must be.")
    if PurePosixPath(written).is_absolute() or PureWindowsPath(written).is_absolute():
        raise MappingError(
            f"{where}: {written!r} is an absolute path; write it relative to the mapping file."
        )
    if not written.lower().endswith(TABLE_SUFFIXES):
        raise MappingError(f"{where}: {written!r}: expected a {', '.join(TABLE_SUFFIXES)} file.")
    folder = Path(origin).parent.resolve()
    path = (folder / written).resolve()
    if not path.is_relative_to(folder):
        raise MappingError(
            f"{where}: {written!r} is outside the mapping file's folder ({folder}); "
            "put the table beside the mapping or below it."
        )
    if not path.is_file():
        raise MappingError(f"{where}: no such file {written!r} beside the mapping.")
    return path


@functools.lru_cache(maxsize=CACHED_TABLES)
def _load_index(lookup: Lookup, size: int, mtime_ns: int) -> LookupIndex:
    """Cached by the file's size and time: a notebook that edits the mapping reads it once."""
    table = _read_table(lookup)
    written = _as_text(_column(table, lookup.key))
    keys = normalised(written, lookup.match)
    values = _column(table, lookup.value)
    lines = pa.array(np.arange(len(keys), dtype=np.int64))
    present = pa.array(~_missing(keys))
    columns = {"key": keys, "value": values, "line": lines, "written": written}
    rows = pa.table(columns).filter(present)
    order = pc.sort_indices(
        rows, sort_keys=[("key", "ascending"), ("value", "ascending"), ("line", "ascending")]
    )
    rows = rows.take(order)
    keys, values = _column(rows, "key"), _column(rows, "value")
    written = _column(rows, "written")
    if len(rows) < 2:
        return LookupIndex(keys, values, lookup.match, written)
    same_key = pc.equal(keys.slice(1), keys.slice(0, len(keys) - 1)).to_numpy(zero_copy_only=False)
    after, before = values.slice(1), values.slice(0, len(values) - 1)
    same_value = pc.fill_null(
        pc.or_kleene(pc.equal(after, before), pc.and_(pc.is_null(after), pc.is_null(before))),
        False,
    ).to_numpy(zero_copy_only=False)
    clash = same_key & ~same_value
    if clash.any():
        _raise_clash(lookup, rows, clash)
    first = np.concatenate([[True], ~same_key])
    kept = pa.array(first)
    return LookupIndex(keys.filter(kept), values.filter(kept), lookup.match, written.filter(kept))


def _raise_clash(lookup: Lookup, rows: pa.Table, clash: np.ndarray) -> None:
    """An example from the first clashing key: rows are sorted by key, value and line, so
    its first row and the first row with another value are each the earliest of theirs."""
    keys, values = _column(rows, "key"), _column(rows, "value")
    lines = _column(rows, "line").to_numpy(zero_copy_only=False)
    positions = np.flatnonzero(clash) + 1
    at = int(positions[0])
    first = at
    while first > 0 and keys[first - 1] == keys[at]:
        first -= 1
    count = len(set(keys.take(pa.array(positions)).to_pylist()))
    raise MappingError(
        f"{lookup.written} (the lookup of {lookup.mapping_key}): {count:,} "
        f"{lookup.key}{' value' if count == 1 else ' values'} map to more than one "
        f"{lookup.value}, e.g. {keys[at].as_py()!r} to {values[first].as_py()!r} "
        f"(data row {lines[first]}) and to {values[at].as_py()!r} (data row {lines[at]}); "
        f"keep one {lookup.value} per {lookup.key}."
    )


def _read_table(lookup: Lookup) -> pa.Table:
    columns = list(dict.fromkeys([lookup.key, lookup.value]))
    try:
        if lookup.path.name.lower().endswith(".parquet"):
            _check_columns(lookup, pq.read_schema(lookup.path).names)
            return pq.read_table(lookup.path, columns=columns)
        _check_columns(lookup, _csv_header(lookup))
        return pacsv.read_csv(
            lookup.path,
            read_options=pacsv.ReadOptions(use_threads=False),
            convert_options=pacsv.ConvertOptions(
                include_columns=columns,
                column_types={name: pa.string() for name in columns},
                strings_can_be_null=False,
            ),
        )
    except (OSError, pa.ArrowException) as exc:
        raise MappingError(
            f"{lookup.written} (the lookup of {lookup.mapping_key}): cannot read the table: {exc}"
        ) from None


def _csv_header(lookup: Lookup) -> list[str]:
    options = pacsv.ReadOptions(use_threads=False, block_size=1 << 16)
    return list(pacsv.open_csv(lookup.path, read_options=options).schema.names)


def _check_columns(lookup: Lookup, names: list[str]) -> None:
    for role, name in (("key", lookup.key), ("value", lookup.value)):
        if name not in names:
            raise MappingError(
                f"{lookup.written} (the lookup of {lookup.mapping_key}.{role}): the table has "
                f"no column {name!r}; its columns are: {', '.join(names)}."
            )


def _column(table: pa.Table, name: str) -> pa.Array:
    column = table.column(name)
    return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column


def _as_text(array: pa.Array) -> pa.Array:
    if pa.types.is_string(array.type):
        return array
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    return pc.cast(array, pa.string())


def _missing(text: pa.Array) -> np.ndarray:
    empty = pc.or_kleene(pc.is_null(text), pc.equal(pc.utf8_length(text), 0))
    return pc.fill_null(empty, True).to_numpy(zero_copy_only=False).astype(bool)


def _search_sorted(keys: pa.Array, text: pa.Array) -> np.ndarray:
    """Where each text would sit among the sorted keys (numpy where pyarrow is older than 16)."""
    if hasattr(pc, "search_sorted"):
        return pc.search_sorted(keys, text).to_numpy(zero_copy_only=False)
    as_objects = keys.to_numpy(zero_copy_only=False)
    return np.searchsorted(as_objects, text.to_numpy(zero_copy_only=False))
