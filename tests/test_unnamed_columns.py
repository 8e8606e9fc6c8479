"""Columns without a name in the header (pandas' index column, an empty header cell) are
named as pandas names them when it reads the file back (`Unnamed: 0`, by position), said so
in init's draft, and usable in a mapping."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import CliResult, make_pubkey
from test_formats import write_xlsx

from backfill.read.base import named_header
from backfill.read.source import read_source

Cli = Callable[..., CliResult]


@pytest.mark.parametrize(
    ("header", "named"),
    [
        (["", "id"], ["Unnamed: 0", "id"]),
        (["id", "", "x", " "], ["id", "Unnamed: 1", "x", "Unnamed: 3"]),
        (["", "Unnamed: 0"], ["Unnamed: 0.1", "Unnamed: 0"]),
    ],
)
def test_empty_header_names_get_pandas_names(header: list[str], named: list[str]) -> None:
    assert named_header(header) == named


def test_a_pandas_written_csv_reads_with_the_names_pandas_reads_back(tmp_path: Path) -> None:
    frame = pd.DataFrame({"id": ["A", "B"], "total": ["1", "2"]}, index=[7, 8])
    frame.to_csv(tmp_path / "orders.csv")  # the index goes first, under an empty header
    source = read_source(tmp_path / "orders.csv")
    assert source.columns == list(pd.read_csv(tmp_path / "orders.csv").columns)
    rows = [row for chunk in source.chunks() for row in chunk.table.to_pylist()]
    assert rows == [
        {"Unnamed: 0": "7", "id": "A", "total": "1"},
        {"Unnamed: 0": "8", "id": "B", "total": "2"},
    ]


def test_two_empty_headers_keep_their_own_values_when_one_is_read(tmp_path: Path) -> None:
    (tmp_path / "o.csv").write_text(",id,,total\n0,A,x,1\n1,B,y,2\n", encoding="utf-8")
    source = read_source(tmp_path / "o.csv")
    chunks = source.chunks(columns=["Unnamed: 2", "total"])
    assert [row for c in chunks for row in c.table.to_pylist()] == [
        {"Unnamed: 2": "x", "total": "1"},
        {"Unnamed: 2": "y", "total": "2"},
    ]


def test_an_empty_header_cell_of_a_workbook_is_named_by_its_position(tmp_path: Path) -> None:
    write_xlsx(tmp_path / "o.xlsx", {"S": [["id", None, "x"], [1, 2, 3]]})
    assert read_source(tmp_path / "o.xlsx").columns == ["id", "Unnamed: 1", "x"]


def test_init_drafts_a_pandas_csv_and_names_its_index_column(cli: Cli, tmp_path: Path) -> None:
    wallets = [make_pubkey(i) for i in range(3)]
    frame = pd.DataFrame(
        {
            "created_at": [f"2024-01-0{i + 1}T10:00:00Z" for i in range(3)],
            "wallet": wallets,
            "total": [1, 2, 3],
        }
    )
    frame.to_csv(tmp_path / "orders.csv")
    result = cli("init", tmp_path / "orders.csv", "-o", tmp_path / "map.yaml")
    assert result.code == 0, result.stderr
    text = (tmp_path / "map.yaml").read_text(encoding="utf-8")
    line = next(x for x in text.splitlines() if "Unnamed: 0" in x)
    assert line.lstrip().startswith("#")  # a row counter, not order data: left out
    assert "no name in the file's header (pandas' index column?)" in line
    data = yaml.safe_load(text)
    data["event_data"]["row"] = {"column": "Unnamed: 0", "type": "number"}
    (tmp_path / "map.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    shown = cli("preview", tmp_path / "orders.csv", "-m", tmp_path / "map.yaml", "-n", "3")
    assert shown.code == 0, shown.stderr
    assert shown.stdout.count('"row": ') == 3 and '"row": 2' in shown.stdout
