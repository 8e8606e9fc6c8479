"""`backfill schema`: the JSON Schema of map.yaml agrees with the loader.

Every ```yaml example in README.md and docs/*.md (and the sample's map.yaml) is valid under
the schema AND loads with the loader; mappings the loader refuses for an unknown key or a wrong
shape are refused by the schema too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import ROOT, CliResult

from backfill.errors import MappingError
from backfill.mapping import spec_checks as loader
from backfill.mapping.json_schema import as_json_document, mapping_schema
from backfill.mapping.spec import mapping_from_dict

YAML_BLOCK = re.compile(r"^```yaml\n(.*?)^```", re.S | re.M)
DOC_PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _read(page: Path) -> str:
    return page.read_text(encoding="utf-8")


def documented_mappings() -> list[str]:
    """Every mapping in the yaml blocks of README.md and docs/: whole ones as they are; a
    block of one-line fragments (`filter: ...` examples) gives one mapping per line, the line
    put into a small complete mapping."""
    blocks = [block for page in DOC_PAGES for block in YAML_BLOCK.findall(_read(page))]
    mappings = [block for block in blocks if "event_name:" in block]
    for block in blocks:
        if "event_name:" in block:
            continue
        lines = [line for line in block.splitlines() if line.strip() and line[0] != "#"]
        if any(line[0].isspace() for line in lines):  # nested keys: one fragment, merged in
            merged = _merged(yaml.safe_load(FRAGMENT_BASE), yaml.safe_load(block))
            mappings.append(yaml.safe_dump(merged, sort_keys=False))
        else:  # one-line examples of the same key: one mapping each
            mappings += [FRAGMENT_BASE + line + "\n" for line in lines]
    return mappings


def _merged(base: dict[str, Any], fragment: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in fragment.items():
        inner = merged.get(key)
        both_dicts = isinstance(inner, dict) and isinstance(value, dict)
        merged[key] = _merged(inner, value) if both_dicts else value  # type: ignore[arg-type]
    return merged


FRAGMENT_BASE = (
    "event_name: E\ntimestamp: created_at\nuser: {pubKey: wallet}\nevent_data: {sku: sku}\n"
)


def schema_errors(data: Any) -> list[str]:
    validator = jsonschema.Draft202012Validator(mapping_schema())
    return [error.message for error in validator.iter_errors(as_json_document(data))]


def test_the_schema_is_a_valid_2020_12_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(mapping_schema())


def test_the_docs_have_mapping_examples() -> None:
    assert len(documented_mappings()) >= 2
    assert any(example.count("\n") > 10 for example in documented_mappings())  # a whole one


@pytest.mark.parametrize("index", range(len(documented_mappings())))
def test_every_documented_mapping_passes_schema_and_loader(index: int, tmp_path: Path) -> None:
    data = yaml.safe_load(documented_mappings()[index])
    assert schema_errors(data) == []
    _write_lookup_tables(data, tmp_path)  # the loader reads the tables an example names
    mapping_from_dict(data, origin=str(tmp_path / "map.yaml"))  # raises if the loader refuses


def _write_lookup_tables(data: Any, folder: Path) -> None:
    """A one-row table for every `lookup:` in the example, with its key and value columns."""
    if isinstance(data, list):
        for item in data:
            _write_lookup_tables(item, folder)
    if not isinstance(data, dict):
        return
    if "lookup" in data:
        table = pa.table({data["key"]: ["C-1"], data["value"]: ["x"]})
        path = folder / data["lookup"]
        if path.suffix == ".parquet":
            pq.write_table(table, path)
        else:
            pa_csv.write_csv(table, path)
    for value in data.values():
        _write_lookup_tables(value, folder)


def test_the_sample_mapping_is_valid_for_schema_and_loader() -> None:
    data = yaml.safe_load((ROOT / "sample_data" / "map.yaml").read_text(encoding="utf-8"))
    assert schema_errors(data) == []
    mapping_from_dict(data)


def test_the_schema_knows_every_key_the_loader_knows() -> None:
    schema = mapping_schema()
    assert list(schema["properties"]) == list(loader.TOP_KEYS)
    assert schema["required"] == list(loader.REQUIRED_TOP_KEYS)
    timestamp = schema["properties"]["timestamp"]["anyOf"][1]
    assert list(timestamp["properties"]) == list(loader.TIMESTAMP_KEYS)
    assert timestamp["properties"]["unit"]["enum"] == list(loader.UNITS)
    assert list(schema["properties"]["user"]["properties"]) == list(loader.USER_KEYS)
    field = schema["properties"]["event_data"]["additionalProperties"]["anyOf"][1]
    assert list(field["properties"]) == list(loader.FIELD_KEYS)
    assert field["properties"]["type"]["enum"] == list(loader.FIELD_TYPES)


BASE = {
    "event_name": "STORE_ORDER",
    "timestamp": {"column": "created_at"},
    "user": {"pubKey": "wallet"},
    "event_data": {"amount": {"column": "total", "type": "number"}},
}


def changed(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    data = json.loads(json.dumps(BASE))
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return data


def removed(key: str) -> dict[str, Any]:
    return {k: v for k, v in BASE.items() if k != key}


REFUSED = {
    "unknown top-level key": changed(("event_nmae",), "X"),
    "unknown timestamp key": changed(("timestamp", "zone"), "UTC"),
    "unknown user key": changed(("user", "wallet"), "w"),
    "unknown field key": changed(("event_data", "amount", "colum"), "total"),
    "unknown unit": changed(("timestamp", "unit"), "seconds"),
    "unknown type": changed(("event_data", "amount", "type"), "integer"),
    "field with column and value": changed(("event_data", "amount", "value"), 1),
    "field with neither column nor value": changed(("event_data", "amount"), {"type": "number"}),
    "missing event_name": removed("event_name"),
    "missing user": removed("user"),
    "empty event_data": changed(("event_data",), {}),
    "format that is not strptime": changed(("timestamp", "format"), "dd/mm/yy"),
    "format with an epoch unit": changed(
        ("timestamp",), {"column": "c", "unit": "s", "format": "%d"}
    ),
    "optional that is not a boolean": changed(("event_data", "amount", "optional"), "maybe"),
    "id of no columns": changed(("id",), []),
    "id naming a column twice": changed(("id",), ["order_id", "order_id"]),
    "id that is not a name": changed(("id",), [{"column": "x"}]),
}


def test_the_base_of_the_refused_cases_is_valid() -> None:
    assert schema_errors(BASE) == []
    mapping_from_dict(BASE)


@pytest.mark.parametrize("case", list(REFUSED))
def test_schema_and_loader_both_refuse(case: str) -> None:
    data = REFUSED[case]
    assert schema_errors(data) != []
    with pytest.raises(MappingError):
        mapping_from_dict(data)


def test_backfill_schema_prints_the_schema(cli: Callable[..., CliResult]) -> None:
    result = cli("schema")
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout) == mapping_schema()


def test_the_mapping_page_shows_the_editor_comment() -> None:
    page = _read(ROOT / "docs" / "mapping.md")
    assert "# yaml-language-server: $schema=" in page
    assert "backfill schema > map.schema.json" in page


def test_a_yes_key_in_a_word_list_reads_like_the_loader(tmp_path: Path) -> None:
    text = "\n".join(
        [
            "event_name: E",
            "timestamp: t",
            "user: {pubKey: w}",
            "event_data:",
            "  vip: {column: tier, type: boolean, true: [gold], false: [basic]}",
        ]
    )
    data = yaml.safe_load(text)
    assert True in data["event_data"]["vip"]  # YAML read the key `true:` as a boolean
    assert schema_errors(data) == []
    mapping_from_dict(data)
