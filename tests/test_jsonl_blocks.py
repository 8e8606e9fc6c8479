"""JSON Lines read a block at a time must read exactly as Python's `json` reads each line:
the same columns and kinds, the same values, the same broken lines under the same rows with
the same messages. And what the head cannot know (a key or a kind first seen after it) is
handled as documented."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from kinds_reference import column_type_name

from backfill.read import jsonl_blocks, jsonl_reader
from backfill.read.formats import open_local_file

# --- the oracle: the file read line by line with json, as the reader did before blocks ------


def flatten(item: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in item.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        elif isinstance(value, list):
            flat[f"{prefix}{key}"] = json.dumps(value, ensure_ascii=False)
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer" if -(2**63) <= value < 2**63 else "text"
    return "float" if isinstance(value, float) else "text"


def oracle(lines: list[str]) -> tuple[dict[str, str], list[tuple[int, dict[str, Any]]], list[int]]:
    """(column -> Arrow type name, [(row, record)], rows of broken lines)."""
    kinds: dict[str, set[str]] = {}
    records, broken = [], []
    for number, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            parsed = json.loads(line)
        except json.JSONDecodeError:
            broken.append(number)
            continue
        if not isinstance(parsed, dict):
            broken.append(number)
            continue
        flat = flatten(parsed)
        for column, value in flat.items():
            kinds.setdefault(column, set())
            if value is not None:
                kinds[column].add(kind(value))
        records.append((number, flat))
    types = {column: column_type_name(found) for column, found in kinds.items()}
    expected = [(n, {c: cell(r.get(c), types[c]) for c in types}) for n, r in records]
    return types, expected, broken


def cell(value: Any, type_: str) -> Any:
    if value is None:
        return None
    if type_ == "string":
        return value if isinstance(value, str) else json.dumps(value)
    return float(value) if type_ == "double" else value


# --- generated files -------------------------------------------------------------------------

KEYS = st.sampled_from(["id", "total", "paid", "note", "customer"])
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=8),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(KEYS, inner, max_size=3)),
    max_leaves=6,
)
OBJECTS = st.dictionaries(KEYS, VALUES, max_size=5).map(json.dumps)
BROKEN = st.sampled_from(['{"id": "x", oops}', "[1, 2]", "7", '{"id": ', "nul", '"text"'])
LINES = st.lists(
    st.one_of(OBJECTS, OBJECTS, OBJECTS, BROKEN, st.sampled_from(["", "  "])), max_size=40
)


def read_all(path: Path) -> tuple[pa.Schema, list[tuple[int, dict[str, Any]]], list[Any]]:
    reader = open_local_file(path)
    chunks = list(reader.chunks(7))
    rows = [
        (row, record)
        for chunk in chunks
        for row, record in zip(chunk.rows.tolist(), chunk.table.to_pylist())
    ]
    return reader.schema, rows, [line for chunk in chunks for line in chunk.bad_lines]


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(lines=LINES)
def test_blocks_read_exactly_as_json_reads_each_line(
    lines: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jsonl_blocks, "BLOCK_BYTES", 64)  # many blocks, some with broken lines
    path = tmp_path / "o.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    types, expected, broken = oracle(lines)
    assume(types)  # a file whose objects have no key at all has no columns to compare

    schema, rows, bad = read_all(path)

    assert {f.name: str(f.type) for f in schema} == types
    assert rows == expected
    assert [line.row for line in bad] == broken
    for line in bad:  # today's messages, word for word
        assert line.text == lines[line.row]
        assert line.reason.startswith(("not JSON: ", "expected a JSON object ({...}); found "))


def test_a_broken_line_in_a_block_fails_alone_with_its_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jsonl_reader, "HEAD_BYTES", 1)  # the rest goes through the blocks
    good = [json.dumps({"id": f"{i:05d}", "total": i + 0.5}) for i in range(3000)]
    lines = [*good[:1500], '{"id": "BROKEN", "total": ', *good[1500:]]
    path = tmp_path / "o.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    _, rows, bad = read_all(path)

    assert [row for row, _ in rows] == [*range(1500), *range(1501, 3001)]
    [line] = bad
    assert (line.row, line.text) == (1500, '{"id": "BROKEN", "total": ')
    assert line.reason == "not JSON: Expecting value at character 27"


def test_a_key_first_seen_after_the_head_is_not_a_column(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jsonl_reader, "HEAD_BYTES", 40)  # the head: the first two lines
    lines = ['{"id": "a", "n": 1}', '{"id": "b", "n": 2}', '{"id": "c", "n": 3, "coupon": "X"}']
    path = tmp_path / "o.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    reader = open_local_file(path)

    assert reader.columns == ["id", "n"]
    assert reader.total_rows is None  # the file goes on after its head
    [chunk] = reader.chunks()
    assert chunk.table.to_pylist() == [
        {"id": "a", "n": 1}, {"id": "b", "n": 2}, {"id": "c", "n": 3},
    ]  # fmt: skip
    assert chunk.bad_lines == ()


def test_a_value_that_does_not_fit_its_column_after_the_head_fails_its_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jsonl_reader, "HEAD_BYTES", 40)
    lines = [
        '{"id": "a", "n": 1}',
        '{"id": "b", "n": 2}',
        '{"id": "c", "n": "N/A"}',  # text in a column of integers
        '{"id": "d", "n": 4.5}',  # a fraction in a column of integers
        '{"id": 5, "n": 5}',  # a number in a text column: JSON text, as in the head
    ]
    path = tmp_path / "o.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    _, rows, bad = read_all(path)

    assert rows == [(0, {"id": "a", "n": 1}), (1, {"id": "b", "n": 2}), (4, {"id": "5", "n": 5})]
    assert [(line.row, line.text) for line in bad] == [(2, lines[2]), (3, lines[3])]
    assert bad[0].reason == (
        "key 'n' holds \"N/A\" (text), but the file's first 2 lines made it a column of "
        "integers; the columns and their kinds are learned from those lines"
    )
    assert bad[1].reason.startswith("key 'n' holds 4.5 (numbers), but the file's first 2 lines")
