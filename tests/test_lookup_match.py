"""Lookup keys compared after a declared normalisation (`match: casefold`, `match: trim`),
on both sides, with the rows that matched only thanks to it counted in `plan`: a
WooCommerce export's mixed-case e-mails against a shop's lower-case wallet table."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from conftest import CliResult, SandboxProcess
from platform_exports import (
    differs_from_the_table,
    drafted_then_edited,
    sent_events,
    wallet_lookup,
    woocommerce_emails,
)

from backfill.errors import MappingError
from backfill.mapping.lookup import lookup_from_spec

Cli = Callable[..., CliResult]


def _table(folder: Path) -> Path:
    (folder / "t.csv").write_text("key,wallet\nana@x.com,W1\nbo@x.com,W2\n", encoding="utf-8")
    return folder / "map.yaml"


@pytest.mark.parametrize(
    ("match", "found"),
    [(None, [None, None, "W1", None]),
     ("casefold", ["W1", None, "W1", None]),
     ("trim", [None, "W2", "W1", None]),
     (["trim", "casefold"], ["W1", "W2", "W1", None])],
)  # fmt: skip
def test_keys_match_after_the_declared_rules(
    tmp_path: Path, match: object, found: list[str | None]
) -> None:
    spec = {"column": "c", "lookup": "t.csv", "key": "key", "value": "wallet", "match": match}
    lookup = lookup_from_spec(spec, "user.pubKey", str(_table(tmp_path)))
    keys = pa.array(["Ana@X.com", " bo@x.com ", "ana@x.com", "cy@x.com"])
    values, unknown = lookup.translate(keys)
    assert values.to_pylist() == found
    assert unknown.tolist() == [v is None for v in found]
    exact_hits = 1  # ana@x.com as the table writes it
    found_count = sum(v is not None for v in found)
    assert lookup.index().matched_by_normalising(keys) == found_count - exact_hits


def test_the_table_side_is_normalised_too(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("key,wallet\n  ANA@X.COM ,W1\n", encoding="utf-8")
    spec = {"column": "c", "lookup": "t.csv", "key": "key", "value": "wallet",
            "match": ["trim", "casefold"]}  # fmt: skip
    lookup = lookup_from_spec(spec, "user.pubKey", str(tmp_path / "map.yaml"))
    assert lookup.translate(pa.array(["ana@x.com"]))[0].to_pylist() == ["W1"]


@pytest.mark.parametrize("match", ["lower", ["trim", "upper"], [], 3])
def test_an_unknown_rule_is_refused_naming_the_key(tmp_path: Path, match: object) -> None:
    spec = {"column": "c", "lookup": "t.csv", "key": "key", "value": "wallet", "match": match}
    with pytest.raises(MappingError, match=r"user.pubKey.match: expected casefold, trim"):
        lookup_from_spec(spec, "user.pubKey", str(_table(tmp_path)))


def _mapping(cli: Cli, export_path: Path, match: list[str] | None) -> Path:
    def edit(data: dict[str, Any]) -> None:
        data["user"] = wallet_lookup("billing_email", **({"match": match} if match else {}))
        data["timestamp"]["timezone"] = "Europe/London"

    return drafted_then_edited(cli, export_path, export_path.parent / "map.yaml", edit)


def test_woocommerce_e_mails_match_a_lower_case_table_and_plan_counts_them(
    cli: Cli, tmp_path: Path, sandbox: SandboxProcess
) -> None:
    export = woocommerce_emails(tmp_path / "woo")
    exact = cli("plan", export.path, "-m", _mapping(cli, export.path, None), "--json").json()
    needs = differs_from_the_table(export)
    assert needs > 0 and exact["failing"] == needs  # compared exactly, those rows fail
    mapping = _mapping(cli, export.path, ["trim", "casefold"])
    planned = cli("plan", export.path, "-m", mapping, "--json")
    assert planned.code == 0, planned.stdout + planned.stderr
    assert planned.json()["would_send"] == len(export.events)
    assert planned.json()["lookup_normalised"] == {"user.pubKey": needs}
    text = cli("plan", export.path, "-m", mapping).stdout
    assert f"user.pubKey: {needs:,} rows matched their lookup only after its match: rule" in text
    ran = cli("run", export.path, "-m", mapping, "--endpoint", sandbox.endpoint(), "--rate",
              "0", "--yes", "--json")  # fmt: skip
    assert ran.code == 0 and ran.json()["accepted"] == len(export.events)
    rehearsed = cli("run", export.path, "-m", mapping, "--sandbox", "--yes", "--json")
    assert rehearsed.json()["accepted"] == len(export.events)
    sent = sent_events(sandbox, "orderTotal")
    assert sent == export.expected()
