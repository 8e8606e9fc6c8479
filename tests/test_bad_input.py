"""Hostile input: fuzzed and broken CSV, broken Parquet, broken mappings, hostile values.

The standard: a file that cannot be read at all is one clean line naming the file (exit 2,
never a traceback); a bad row never stops the run, it becomes a failure in the report with a
reason that says what is wrong. Library-level fuzzing (fast) checks that only `BackfillError`s
escape; a few cases go through `python -m backfill` as a user runs it.

Mapping mistakes one key at a time are in tests/test_mapping.py and single bad values in
tests/test_events.py and tests/test_convert.py; this file adds what a hostile world sends.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from conftest import CliResult, SandboxProcess, make_pubkey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backfill.books.report import read_report
from backfill.cli import cli as cli_group
from backfill.errors import BackfillError
from backfill.look.validate import mapped_chunks, open_inputs, validate
from backfill.mapping.pubkey import b58encode
from backfill.mapping.times import OUT_OF_RANGE

pytestmark = pytest.mark.timeout(120)

KEY = make_pubkey(1)
HEADER = "order_id,created_at,wallet,total,note"
MAPPING = """\
event_name: STORE_ORDER
timestamp: {column: created_at}
user: {pubKey: wallet}
event_data:
  orderId: order_id
  amount: {column: total, type: number}
  note: {column: note, type: string}
"""
NOT_UTF8 = (
    "column 'note' is not UTF-8 text; it looks like cp1252: try --encoding cp1252, "
    "or save the file as UTF-8"
)

Cli = Callable[..., CliResult]
Factory = Callable[..., SandboxProcess]


def good_line(i: int) -> str:
    return f"ORD-{i},2024-01-0{1 + i % 9}T10:00:00.{i % 1000:03d}Z,{KEY},{i}.5,note {i}"


def good_csv(rows: int) -> bytes:
    return ("\n".join([HEADER, *(good_line(i) for i in range(rows))]) + "\n").encode()


@pytest.fixture
def mapping(tmp_path: Path) -> Path:
    path = tmp_path / "map.yaml"
    path.write_text(MAPPING, encoding="utf-8")
    return path


def one_line_error(result: CliResult, path: Path) -> str:
    """The CLI's answer to a file it cannot read: exit 2, one line naming it, no traceback."""
    assert result.code == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: {path}"), result.stderr
    return lines[0]


def failures_by_reason(report: Path) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    for failure in read_report(report):
        found.setdefault(failure.reason, []).append(failure)
    return found


# --- fuzzed CSV: only clean errors or row failures -------------------------------------------

TOKENS = [b'"', b",", b"\n", b"\r", b"\r\n", b"\x00", b"\xff", b"\xe9", b'""', b"\\", b"\xef\xbb"]


@st.composite
def mangled_csv(draw: st.DrawFn) -> bytes:
    """A valid file, then random damage: bytes, CSV syntax, cuts, another encoding."""
    data = bytearray(good_csv(draw(st.integers(0, 12))))
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["bytes", "token", "delete", "truncate"]))
        if kind == "bytes":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "token":
            data[at:at] = draw(st.sampled_from(TOKENS))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 20))]
        else:
            del data[at:]
    encoding = draw(st.sampled_from(["as is"] * 6 + ["latin-1", "utf-16", "utf-16-le"]))
    if encoding != "as is":
        data = bytearray(bytes(data).decode("utf-8", "replace").encode(encoding, "replace"))
    return bytes(data)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=mangled_csv())
def test_a_mangled_csv_gives_a_clean_error_or_row_failures_and_every_row_is_counted(
    tmp_path: Path, mapping: Path, data: bytes
) -> None:
    path = tmp_path / "orders.csv"
    path.write_bytes(data)
    outcomes = []
    for chunk_rows in (2, 1000):
        try:
            result = validate(path, mapping, chunk_rows=chunk_rows)
        except BackfillError as exc:  # anything else escaping fails the test
            message = str(exc)
            assert str(path) in message  # it names the file
            outcomes.append(("error", message))
            continue
        assert result.read == result.mappable + result.filtered + result.failing
        reasons = sorted((r.reason, r.count) for r in result.reasons.values())
        assert all(reason for reason, _ in reasons)
        outcomes.append(("read", (result.read, result.mappable, result.failing, reasons)))
    assert outcomes[0] == outcomes[1]  # the chunk size changes nothing, even here


# --- files that cannot be read at all: one line, exit 2 --------------------------------------


def truncated_parquet(tmp_path: Path) -> Path:
    whole = tmp_path / "whole.parquet"
    pq.write_table(pa.table({"order_id": [f"ORD-{i}" for i in range(500)]}), whole)
    path = tmp_path / "orders.parquet"
    path.write_bytes(whole.read_bytes()[:-100])
    whole.unlink()
    return path


def mixed_directory(tmp_path: Path) -> Path:
    folder = tmp_path / "orders"
    folder.mkdir()
    pq.write_table(pa.table({"order_id": ["a"], "created_at": [1]}), folder / "part-1.parquet")
    pq.write_table(pa.table({"order_id": ["b"], "placed_at": [1]}), folder / "part-2.parquet")
    return folder


def write(name: str, content: bytes) -> Callable[[Path], Path]:
    def make(tmp_path: Path) -> Path:
        path = tmp_path / name
        path.write_bytes(content)
        return path

    return make


def huge_field_csv(tmp_path: Path) -> Path:
    """A 20 MB value: what a quote that is never closed makes of the rest of a file."""
    path = tmp_path / "orders.csv"
    with path.open("wb") as out:
        out.write(good_csv(3))
        out.write(f'ORD-9,2024-01-01T00:00:00Z,{KEY},1,"never closed'.encode())
        out.write(b"x" * 20_000_000 + b"\n")
    return path


UNREADABLE = {  # how to make the file, what the one line says
    "missing": (lambda tmp: tmp / "nope.csv", "no such file or directory"),
    "empty-csv": (write("orders.csv", b""), "the file is empty"),
    "utf-16-csv-without-bom": (
        write("orders.csv", good_csv(3).decode().encode("utf-16-le")),
        "the header is not UTF-8 text",
    ),
    "binary-garbage-csv": (write("orders.csv", bytes(range(256)) * 40), "not UTF-8 text"),
    "empty-parquet": (write("orders.parquet", b""), "not a readable Parquet file"),
    "garbage-parquet": (write("orders.parquet", b"PAR1" + b"\0" * 64), "not a readable Parquet"),
    "truncated-parquet": (truncated_parquet, "not a readable Parquet file"),
    "directory-of-mixed-schemas": (mixed_directory, "has no column 'created_at', which the"),
    "directory-without-parquet": (
        lambda tmp: (tmp / "empty").mkdir() or tmp / "empty",
        "holds no .csv, .csv.gz, .parquet, .xlsx",
    ),
    "csv-with-a-20mb-value": (huge_field_csv, "a quote that is never closed"),
}


@pytest.mark.parametrize("case", list(UNREADABLE))
def test_a_file_that_cannot_be_read_is_one_line_naming_it(
    tmp_path: Path, mapping: Path, case: str
) -> None:
    make, expected = UNREADABLE[case]
    path = make(tmp_path)
    result = CliRunner().invoke(cli_group, ["validate", str(path), "--mapping", str(mapping)])
    line = one_line_error(CliResult(result.exit_code, result.stdout, result.stderr), path)
    assert expected in line


def test_the_python_entry_point_says_the_same_without_a_traceback(
    tmp_path: Path, cli: Cli, mapping: Path
) -> None:
    path = tmp_path / "orders.csv"
    path.write_bytes(good_csv(3).decode().encode("utf-16-le"))
    line = one_line_error(cli("validate", path, "--mapping", mapping), path)
    assert "UTF-16 without a byte order mark?); try --encoding utf-16-le" in line


# --- broken lines: set aside, the rest goes on -----------------------------------------------


def test_latin_1_cells_and_ragged_latin_1_lines_fail_their_lines_and_the_run_goes_on(
    tmp_path: Path, cli: Cli, mapping: Path
) -> None:
    path = tmp_path / "orders.csv"
    lines = [
        *(good_line(i).encode() for i in range(3)),
        f"ORD-3,2024-01-01T00:00:00Z,{KEY},1,Café crème".encode("latin-1"),  # one bad cell
        *(good_line(i).encode() for i in range(4, 6000)),  # the next block of the file
        "ORD-X,Zürich, Bahnhofstraße".encode("latin-1"),  # ragged and not UTF-8
        good_line(6000).encode(),
    ]
    path.write_bytes(HEADER.encode() + b"\n" + b"\n".join(lines) + b"\n")
    result = cli("validate", path, "--mapping", mapping, "--report", "failures.jsonl", "--json")

    assert result.code == 1, result.stderr
    assert "Traceback" not in result.stderr and result.stderr == ""
    summary = result.json()
    assert (summary["read"], summary["would_send"], summary["failing"]) == (6002, 6000, 2)
    failures = failures_by_reason(tmp_path / "failures.jsonl")
    [cell] = failures[f"CSV line skipped: {NOT_UTF8}"]
    assert (cell.stage, cell.row) == ("read", 3)
    assert cell.record["_line"].endswith(",Caf\\xe9 cr\\xe8me")  # the bytes, shown
    [ragged] = failures["CSV line skipped: expected 5 columns, found 3"]
    assert ragged.record["_line"] == "ORD-X,Z\\xfcrich, Bahnhofstra\\xdfe"
    assert ragged.row == 6000


@pytest.mark.parametrize(
    ("tail", "reason"),
    [
        (f'ORD-8,"2024-01-01T00:00:00Z,{KEY},1,n', "CSV line skipped: expected 5 columns, found 2"),
        (f"ORD-8,2024-01-01T00:00:00Z,{KEY[:20]}", "CSV line skipped: expected 5 columns, found 3"),
    ],
    ids=["unbalanced-quote-to-the-end", "truncated-mid-row"],
)
def test_a_file_that_ends_badly_loses_only_its_last_line(
    tmp_path: Path, mapping: Path, tail: str, reason: str
) -> None:
    path = tmp_path / "orders.csv"
    path.write_bytes(good_csv(8) + tail.encode())  # no newline: the file was cut there
    result = validate(path, mapping, report=tmp_path / "failures.jsonl")
    assert (result.read, result.mappable, result.failing) == (9, 8, 1)
    assert list(failures_by_reason(tmp_path / "failures.jsonl")) == [reason]


def test_a_5_mb_value_is_read_and_mapped(tmp_path: Path, cli: Cli, mapping: Path) -> None:
    path = tmp_path / "orders.csv.gz"
    big = "é" * 2_500_000  # 5 MB of UTF-8
    text = good_csv(2).decode() + f'ORD-2,2024-01-01T00:00:00Z,{KEY},1,"{big}"\n' + good_line(3)
    path.write_bytes(gzip.compress(text.encode(), compresslevel=1))
    result = cli("validate", path, "--mapping", mapping, "--json")
    assert result.code == 0, result.stderr
    assert (result.json()["read"], result.json()["would_send"]) == (4, 4)
    source, opened = open_inputs(path, mapping)
    notes = [
        event.data["note"] for chunk in mapped_chunks(source, opened) for _, event in chunk.events()
    ]
    assert notes[2] == big


@pytest.mark.parametrize("content", [HEADER, HEADER + "\n", HEADER + "\r\n\r\n"])
def test_a_csv_with_only_a_header_has_no_rows_newline_or_not(
    tmp_path: Path, mapping: Path, content: str
) -> None:
    path = tmp_path / "orders.csv"
    path.write_text(content, encoding="utf-8")
    result = validate(path, mapping)
    assert (result.read, result.failing) == (0, 0)


def test_a_parquet_file_without_rows_has_no_rows(tmp_path: Path, mapping: Path) -> None:
    path = tmp_path / "orders.parquet"
    schema = pa.schema([(name, pa.string()) for name in HEADER.split(",")])
    pq.write_table(schema.empty_table(), path)
    assert validate(path, mapping).read == 0


def test_a_directory_whose_files_type_a_column_differently_maps_to_the_declared_type(
    tmp_path: Path, mapping: Path
) -> None:
    folder = tmp_path / "orders"
    folder.mkdir()
    base = {"order_id": ["A"], "created_at": ["2024-01-01T00:00:00Z"], "wallet": [KEY]}
    pq.write_table(pa.table({**base, "total": ["12.5"], "note": ["x"]}), folder / "1.parquet")
    pq.write_table(pa.table({**base, "total": [7], "note": [3]}), folder / "2.parquet")
    source, opened = open_inputs(folder, mapping)
    events = [event for chunk in mapped_chunks(source, opened) for _, event in chunk.events()]
    assert [event.data["amount"] for event in events] == [12.5, 7]  # number, as declared
    assert [event.data["note"] for event in events] == ["x", "3"]  # string, as declared


def test_duplicate_column_names_the_mapping_uses_are_one_clear_error(
    tmp_path: Path, mapping: Path
) -> None:
    path = tmp_path / "orders.csv"
    path.write_text("order_id,order_id,created_at,wallet,total,note\n", encoding="utf-8")
    result = CliRunner().invoke(cli_group, ["validate", str(path), "--mapping", str(mapping)])
    assert result.exit_code == 2
    assert result.stderr == (
        f"Error: {mapping}: event_data.orderId.column: {path} has 2 columns named "
        "'order_id'; rename them so that the mapping names exactly one.\n"
    )


# --- a Parquet file corrupt in the middle ----------------------------------------------------


def corrupt_in_the_middle(tmp_path: Path, rows: int = 3000, group: int = 500) -> Path:
    source = tmp_path / "orders.parquet"
    table = pa.table(
        {
            "order_id": [f"ORD-{i}" for i in range(rows)],
            "created_at": [f"2024-01-01T00:00:{i % 60:02d}Z" for i in range(rows)],
            "wallet": [make_pubkey(i % 50) for i in range(rows)],
            "total": [f"{i}.5" for i in range(rows)],
            "note": [f"note {i}" for i in range(rows)],
        }
    )
    pq.write_table(table, source, row_group_size=group, compression="none")
    data = bytearray(source.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 2000] = b"\xff" * 2000
    source.write_bytes(bytes(data))
    return source


def test_a_parquet_file_corrupt_in_the_middle_stops_cleanly_and_resume_sends_nothing_twice(
    tmp_path: Path, cli: Cli, mapping: Path, sandbox: SandboxProcess
) -> None:
    source = corrupt_in_the_middle(tmp_path)
    args = ["run", source, "-m", mapping, "--endpoint", sandbox.endpoint(), "--rate", "0", "-q"]
    first = cli(*args)
    line = one_line_error(first, source)
    assert "cannot read row 1500 onwards" in line  # the first row of the damaged row group
    sent = [event["event"]["event_data"]["orderId"] for event in sandbox.events()]
    assert sorted(sent) == sorted(f"ORD-{i}" for i in range(1500))  # all before it, once

    again = cli(*args, "--resume")
    assert again.code == 2 and "cannot read row 1500 onwards" in again.stderr
    assert sandbox.stats()["accepted"] == 1500  # nothing sent twice


# --- hostile values, end to end: each a row failure with its reason --------------------------

VALUE_MAPPING = MAPPING + "  units: {column: units, type: number}\n"
OK = dict(created_at=1_700_000_000_000, wallet=KEY, total=1.5, units=1, note="n")
AMOUNT = "event_data.amount (column 'total')"
UNITS = "event_data.units (column 'units')"
STAMP = "timestamp (column 'created_at')"
WALLET = "user.pubKey (column 'wallet')"
BEYOND = "is an integer beyond 2^53, which Torque cannot hold exactly; map it as a string"
OUTSIDE = OUT_OF_RANGE
HOSTILE_VALUES: dict[str, tuple[dict[str, Any], str | None]] = {
    # order id: (values unlike OK, the reason its row fails; None: it is sent as it is)
    "nan": ({"total": float("nan")}, f"{AMOUNT} is missing"),
    "inf": ({"total": float("inf")}, f"{AMOUNT} is not a finite number"),
    "-inf": ({"total": float("-inf")}, f"{AMOUNT} is not a finite number"),
    "2^53+1": ({"units": 2**53 + 1}, f"{UNITS} {BEYOND}"),
    "-(2^53+1)": ({"units": -(2**53) - 1}, f"{UNITS} {BEYOND}"),
    "int64-max": ({"units": 2**63 - 1}, f"{UNITS} {BEYOND}"),
    "2^53": ({"units": 2**53}, None),  # the largest exact one still goes
    "1969": ({"created_at": -1}, f"{STAMP} {OUTSIDE}"),
    "year-3000": ({"created_at": 32_503_680_000_000}, f"{STAMP} {OUTSIDE}"),
    "int64-max-ms": ({"created_at": 2**63 - 1}, f"{STAMP} {OUTSIDE}"),
    "int64-min-ms": ({"created_at": -(2**63)}, f"{STAMP} {OUTSIDE}"),  # pandas' NaT as int
    "key-45-chars": ({"wallet": KEY + "1" * (45 - len(KEY))}, f"{WALLET} is not a Solana"),
    "key-31-bytes": ({"wallet": b58encode(b"\x05" * 31)}, f"{WALLET} is not a Solana"),
    "key-with-l": ({"wallet": "l" + KEY[1:]}, f"{WALLET} is not a Solana"),
    "key-with-space": ({"wallet": " " + KEY}, f"{WALLET} is not a Solana"),
    "key-cyrillic": ({"wallet": "А" + KEY[1:]}, f"{WALLET} is not a Solana"),
    "key-empty": ({"wallet": ""}, f"{WALLET} is missing"),
    "key-null": ({"wallet": None}, f"{WALLET} is missing"),
    "odd-text": ({"note": 'nul\x00 emoji 😀 rtl \u202e tab\t quote" end'}, None),
    "1-mb-text": ({"note": "x" * 1_000_000}, None),  # no limit is documented: it goes
    "2-mb-text": ({"note": "x" * 2_000_000}, "rejected: HTTP 413: "),  # the server refuses
}


def test_hostile_values_fail_their_rows_with_reasons_and_the_rest_arrive_exactly(
    tmp_path: Path, cli: Cli, sandbox: SandboxProcess
) -> None:
    rows = [{"order_id": "ok", **OK}] + [
        {"order_id": name, **{**OK, **values}} for name, (values, _) in HOSTILE_VALUES.items()
    ]
    source = tmp_path / "orders.parquet"
    types = {"created_at": pa.int64(), "total": pa.float64(), "units": pa.int64()}
    pq.write_table(
        pa.table({c: pa.array([r[c] for r in rows], types.get(c)) for c in rows[0]}), source
    )
    mapping = tmp_path / "values.yaml"
    mapping.write_text(VALUE_MAPPING, encoding="utf-8")
    args = ["run", source, "-m", mapping, "--endpoint", sandbox.endpoint(), "--report", "f.jsonl"]
    result = cli(*args, "--rate", "0", "--json")

    assert result.code == 1, result.stderr
    failures = {f.record["order_id"]: f for f in read_report(tmp_path / "f.jsonl")}
    expected = {name: reason for name, (_, reason) in HOSTILE_VALUES.items() if reason}
    assert set(failures) == set(expected)
    for name, reason in expected.items():
        assert failures[name].reason.startswith(reason), (name, failures[name].reason)
    assert failures["2-mb-text"].status == 413 and failures["2-mb-text"].attempts == 1
    stored = {line["event"]["event_data"]["orderId"]: line["event"] for line in sandbox.events()}
    assert set(stored) == {"ok", "2^53", "odd-text", "1-mb-text"}
    assert stored["1-mb-text"]["event_data"]["note"] == "x" * 1_000_000
    assert stored["2^53"]["event_data"]["units"] == 2**53
    assert stored["odd-text"]["event_data"]["note"] == HOSTILE_VALUES["odd-text"][0]["note"]
    summary = result.json()
    assert summary["accepted"] + summary["failed"] == summary["read"] == len(rows)


TEXT_VALUES = {  # a CSV cell of `total` or `created_at`: the reason its row fails, or None
    ("total", "NaN"): f"{AMOUNT} is not a number",
    ("total", "Infinity"): f"{AMOUNT} is not a number",
    ("total", "1e309"): f"{AMOUNT} is not a finite number",
    ("total", "9007199254740993"): f"{AMOUNT} {BEYOND}",
    ("total", "-9007199254740993"): f"{AMOUNT} {BEYOND}",
    ("total", "99999999999999999999999"): f"{AMOUNT} {BEYOND}",
    ("total", "0x10"): f"{AMOUNT} is not a number",
    ("total", "1_000"): f"{AMOUNT} is not a number",
    ("total", " 12 "): None,
    ("created_at", "1969-12-31T23:59:59.999Z"): f"{STAMP} {OUTSIDE}",
    # beyond pandas 2's nanosecond range, so "not a timestamp" there; pandas 3 parses them
    ("created_at", "0001-01-01T00:00:00Z"): (f"{STAMP} {OUTSIDE}", f"{STAMP} is not a timestamp"),
    ("created_at", "9999-12-31T23:59:59Z"): (f"{STAMP} {OUTSIDE}", f"{STAMP} is not a timestamp"),
    ("created_at", "99999-01-01"): f"{STAMP} is not a timestamp",
    ("created_at", "-1"): f"{STAMP} {OUTSIDE}",
    ("created_at", "-9223372036854775808"): f"{STAMP} {OUTSIDE}",
    ("created_at", "2024-02-30"): f"{STAMP} is not a timestamp",
    ("created_at", "1700000000.1234567"): None,
}


def test_hostile_text_values_fail_their_rows_with_reasons(tmp_path: Path, mapping: Path) -> None:
    lines = [HEADER]
    for number, (column, value) in enumerate(TEXT_VALUES):
        cells = dict(zip(HEADER.split(","), good_line(number).split(",")))
        cells[column] = value
        lines.append(",".join(cells.values()))
    path = tmp_path / "orders.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    validate(path, mapping, report=tmp_path / "f.jsonl")

    failures = {f.row: f.reason for f in read_report(tmp_path / "f.jsonl")}
    for number, expected in enumerate(TEXT_VALUES.values()):
        if expected is None:
            assert number not in failures
        else:
            assert failures[number].startswith(expected), (number, failures[number])


# --- hostile mapping files: one line naming the key ------------------------------------------

BOMB = (
    b"[&a0 [x, x, x, x, x, x, x, x, x]"
    + b"".join(
        f", &a{level} [{', '.join([f'*a{level - 1}'] * 9)}]".encode() for level in range(1, 9)
    )
    + b"]"
)
MAPPING_CASES = {  # file bytes, what the one line must say
    "duplicate-top-key": (
        MAPPING.encode() + b"event_name: OTHER_EVENT\n",
        "at line 8, column 1: the key 'event_name' is written twice; keep one.",
    ),
    "duplicate-field": (
        MAPPING.encode() + b"  amount: {column: note, type: string}\n",
        "at line 8, column 3: the key 'amount' is written twice; keep one.",
    ),
    "duplicate-nested-key": (
        MAPPING.replace("{column: created_at}", "{column: created_at, column: total}").encode(),
        "at line 2, column 33: the key 'column' is written twice; keep one.",
    ),
    "not-utf-8": (
        MAPPING.replace("STORE_ORDER", "STORE_ORDÉR").encode("latin-1"),
        "cannot read the mapping file",
    ),
    "nul-bytes": (b"\x00\x01\x02event_name: X\n", "not valid YAML: unacceptable character #x0000"),
    "python-object-tag": (
        b'!!python/object/apply:os.system ["touch pwned"]\n',
        "not valid YAML at line 1, column 1: could not determine a constructor",
    ),
    "alias-bomb": (  # 9^9 words in 1 kB: its message must not try to show them all
        MAPPING.encode() + b"  premium: {column: note, type: boolean, true: " + BOMB + b"}\n",
        "event_data.premium.true: expected a list of words; found [['x', 'x', 'x', 'x', 'x', "
        "'x', ...], [[...], [...], [...], [...], [...], [...], ...],",
    ),
}


@pytest.mark.parametrize("case", list(MAPPING_CASES))
def test_a_hostile_mapping_file_is_one_line_naming_what_is_wrong(tmp_path: Path, case: str) -> None:
    content, expected = MAPPING_CASES[case]
    source = tmp_path / "orders.csv"
    source.write_bytes(good_csv(2))
    path = tmp_path / "map.yaml"
    path.write_bytes(content)
    result = CliRunner().invoke(cli_group, ["validate", str(source), "--mapping", str(path)])
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith(f"Error: {path}: ") and expected in line, line
    assert len(line) < 1000  # short, whatever the file holds
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize(
    "content",
    [MAPPING.replace("\n", "\r\n").encode(), b"\xef\xbb\xbf" + MAPPING.encode()],
    ids=["crlf", "bom"],
)
def test_windows_line_endings_and_a_bom_in_a_mapping_are_fine(
    tmp_path: Path, content: bytes
) -> None:
    source = tmp_path / "orders.csv"
    source.write_bytes(good_csv(2))
    path = tmp_path / "map.yaml"
    path.write_bytes(content)
    result = validate(source, path)
    assert (result.read, result.mappable) == (2, 2)
