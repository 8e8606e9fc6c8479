"""Tab-separated files: .tsv and .tab are CSV with a tab, a .txt whose first line holds tabs
is read as such (and says so), --delimiter takes `tab` and `\\t`, and init writes the
delimiter into the command it prints. End to end on an Amazon-shaped settlement .txt."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import CliResult, SandboxProcess
from export_corpus import csv_text
from platform_exports import amazon_settlement, drafted_then_edited, sent_events, wallet_lookup

from backfill.errors import SourceError
from backfill.read.formats import named_delimiter
from backfill.read.source import read_source

Cli = Callable[..., CliResult]
HEADER = ["order_id", "total"]
ROWS = [["A1", "1.50"], ["A2", "2.25"]]


def _rows(path: Path, **reading: str) -> list[dict[str, str]]:
    source = read_source(path, **reading)
    return [row for chunk in source.chunks() for row in chunk.table.to_pylist()]


@pytest.mark.parametrize("name", ["orders.tsv", "orders.tab", "ORDERS.TSV", "orders.txt"])
def test_tab_separated_names_are_read_with_a_tab(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text(csv_text(HEADER, ROWS, delimiter="\t"), encoding="utf-8")
    assert _rows(path) == [{"order_id": "A1", "total": "1.50"}, {"order_id": "A2", "total": "2.25"}]


def test_a_txt_file_without_tabs_is_refused_with_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text(csv_text(HEADER, ROWS), encoding="utf-8")
    with pytest.raises(SourceError, match="first line holds no tab"):
        read_source(path)


def test_a_directory_skips_txt_files_but_a_glob_names_them(tmp_path: Path) -> None:
    (tmp_path / "a.tsv").write_text(csv_text(HEADER, ROWS[:1], "\t"), encoding="utf-8")
    (tmp_path / "README.txt").write_text("read me\n", encoding="utf-8")
    assert [r["order_id"] for r in _rows(tmp_path)] == ["A1"]
    (tmp_path / "b.txt").write_text(csv_text(HEADER, ROWS[1:], "\t"), encoding="utf-8")
    assert [r["order_id"] for r in _rows(Path(f"{tmp_path}/b*.txt"))] == ["A2"]


@pytest.mark.parametrize(
    ("typed", "meant"),
    [("\\t", "\t"), ("tab", "\t"), ("TAB", "\t"), ("\t", "\t"), ("semicolon", ";"), (";", ";")],
)
def test_delimiter_names_are_accepted(typed: str, meant: str) -> None:
    assert named_delimiter(typed) == meant


def test_a_delimiter_of_several_characters_names_the_choices() -> None:
    with pytest.raises(SourceError, match="one character or one of tab, comma"):
        named_delimiter("::")


def test_a_given_delimiter_wins_over_the_name(tmp_path: Path) -> None:
    path = tmp_path / "orders.tsv"
    path.write_text(csv_text(HEADER, ROWS, delimiter=";"), encoding="utf-8")
    assert _rows(path, delimiter="semicolon")[0] == {"order_id": "A1", "total": "1.50"}


@pytest.mark.parametrize("typed", ["\\t", "tab"])
def test_the_cli_takes_a_tab_by_name(cli: Cli, tmp_path: Path, typed: str) -> None:
    path = tmp_path / "orders.csv"
    path.write_text(csv_text(HEADER, ROWS, delimiter="\t"), encoding="utf-8")
    result = cli("init", path, "--delimiter", typed)
    assert result.code == 0, result.stderr
    assert "column: total" in result.stdout or "{column: total" in result.stdout


def test_init_on_a_settlement_txt_says_how_it_read_it(cli: Cli, tmp_path: Path) -> None:
    export = amazon_settlement(tmp_path / "amazon")
    result = cli("init", export.path)
    assert result.code == 0, result.stderr
    assert "first line holds tabs: read as tab-separated" in result.stderr
    assert "first line holds tabs: read as tab-separated" in result.stdout
    command = next(x for x in result.stdout.splitlines() if x.startswith("#   backfill plan"))
    assert command.endswith("-m map.yaml --delimiter tab")
    assert "$'" not in result.stdout
    assert "posted-date-time" in yaml.safe_load(result.stdout)["timestamp"]["column"]


def _settlement_edit(data: dict[str, Any]) -> None:
    """What a user adds to init's draft: the wallet lookup, the two-column id, and the
    filter that leaves out the summary row (it has no order)."""
    data["user"] = wallet_lookup("order-id")
    data["id"] = ["order-id", "transaction-type"]
    data["filter"] = "notna(`order-id`)"
    data["event_data"] = {"amount": {"column": "amount", "type": "number"}}


def test_a_settlement_txt_runs_from_init_to_the_sandbox_with_both_rows_of_an_item(
    cli: Cli, tmp_path: Path, sandbox: SandboxProcess
) -> None:
    export = amazon_settlement(tmp_path / "amazon")
    mapping = drafted_then_edited(cli, export.path, export.folder / "map.yaml", _settlement_edit)
    planned = cli("plan", export.path, "-m", mapping, "--json", "--ledger", tmp_path / "l.db")
    assert planned.code == 0, planned.stdout + planned.stderr
    assert planned.json()["would_send"] == len(export.events)
    rehearsed = cli("run", export.path, "-m", mapping, "--sandbox", "--yes", "--json")
    assert rehearsed.code == 0, rehearsed.stdout + rehearsed.stderr
    assert rehearsed.json()["accepted"] == len(export.events)
    ran = cli("run", export.path, "-m", mapping, "--endpoint", sandbox.endpoint(), "--rate",
              "0", "--yes", "--json", "--ledger", tmp_path / "l.db")  # fmt: skip
    assert ran.code == 0, ran.stdout + ran.stderr
    sent = sent_events(sandbox, "amount")
    assert sent == export.expected()
    again = cli("plan", export.path, "-m", mapping, "--json", "--ledger", tmp_path / "l.db",
                "--endpoint", sandbox.endpoint())  # fmt: skip
    assert again.json()["already_sent"] == len(export.events)  # the ledger holds every pair
    assert again.json()["requests"] == 0
