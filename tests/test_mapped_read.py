"""What a mapping reads of a source: only its columns, and not the Parquet row groups its
filter provably drops; with the same counts, events and failures as reading everything."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from conftest import SAMPLE, CliResult, SandboxProcess, make_pubkey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backfill.books.report import read_report
from backfill.errors import MappingError
from backfill.mapping.envelopes import TORQUE_V1
from backfill.mapping.events import EventMapper
from backfill.mapping.mapped_read import mapped_chunks_of, mapped_columns
from backfill.mapping.pushdown import group_test
from backfill.mapping.spec import Mapping, load_mapping, mapping_from_dict
from backfill.read.source import read_source

NOW_MS = 1_800_000_000_000
WALLET = make_pubkey(7)


def read_columns(source: Path | str, mapping: Mapping) -> set[tuple[str, ...]]:
    opened = read_source(source)
    return {tuple(chunk.table.column_names) for chunk in mapped_chunks_of(opened, mapping)}


# --- only the mapped columns -----------------------------------------------------------------


@pytest.mark.parametrize("name", ["orders.csv", "orders.parquet"])
def test_only_the_columns_the_mapping_uses_are_read(name: str) -> None:
    mapping = load_mapping(SAMPLE / "map.yaml")
    used = (
        "order_id", "created_at", "wallet", "sku", "quantity", "total", "tier",
        "status", "Country/Region", "coupon",
    )  # fmt: skip
    assert read_columns(SAMPLE / name, mapping) == {used}  # not `Product Name`


def test_the_id_lookup_key_and_filter_columns_are_read_and_nothing_else() -> None:
    mapping = mapping_from_dict(
        {
            "event_name": "E",
            "timestamp": {"column": "created_at"},
            "user": {
                "pubKey": {
                    "column": "customer_id",
                    "lookup": "customers.csv",
                    "key": "customer_id",
                    "value": "wallet",
                }
            },
            "event_data": {"amount": {"column": "total", "type": "number"}},
            "filter": "tier in ['gold', 'premium']",
            "id": "order_id",
        },
        origin=str(SAMPLE / "map_customers.yaml"),
    )
    columns = read_columns(SAMPLE / "orders_by_customer.csv", mapping)
    assert columns == {("order_id", "created_at", "customer_id", "total", "tier")}


def test_a_partition_folder_is_read_when_the_mapping_uses_it(tmp_path: Path) -> None:
    table = pq.read_table(SAMPLE / "orders.parquet")
    for year in ("2023", "2024"):
        folder = tmp_path / "lake" / f"year={year}"
        folder.mkdir(parents=True)
        pq.write_table(table.slice(0, 10), folder / "part.parquet")
    raw = load_mapping(SAMPLE / "map.yaml").raw
    with_year = mapping_from_dict({**raw, "filter": "year == '2024'"})
    without = mapping_from_dict({k: v for k, v in raw.items() if k != "filter"})
    assert "year" in mapped_columns(read_source(tmp_path / "lake"), with_year)
    assert read_columns(tmp_path / "lake", with_year) == {
        tuple(c for c in mapped_columns(read_source(tmp_path / "lake"), with_year))
    }
    assert all("year" not in names for names in read_columns(tmp_path / "lake", without))


def csv_with_lines(path: Path, lines: list[bytes]) -> Path:
    header = b"order_id,created_at,wallet,note,total\n"
    path.write_bytes(header + b"".join(lines))
    return path


CSV_MAPPING = {
    "event_name": "E",
    "timestamp": {"column": "created_at"},
    "user": {"pubKey": "wallet"},
    "event_data": {"orderId": "order_id", "total": {"column": "total", "type": "number"}},
}


def outcome(source: Path, mapping: Mapping, *, every_column: bool = False) -> dict[str, Any]:
    """Every row's fate: events (row, body), failures (row, stage, reason), counts."""
    opened = read_source(source)
    mapper = EventMapper(mapping, opened.name, now_ms=NOW_MS)
    chunks = (
        opened.chunks(1000, skip_group=None)
        if every_column
        else mapped_chunks_of(opened, mapping, 1000, pushdown=False)
    )
    events, failures, read, filtered = [], [], 0, 0
    for chunk in chunks:
        mapped = mapper.map_chunk(chunk)
        read, filtered = read + mapped.read, filtered + mapped.filtered
        events += list(mapped.bodies(TORQUE_V1))
        failures += [(f.row, f.stage, f.reason) for f in mapped.failures]
    return {"events": events, "failures": failures, "read": read, "filtered": filtered}


def test_a_ragged_line_and_a_byte_that_does_not_decode_in_an_unread_column_still_fail_their_rows(
    tmp_path: Path,
) -> None:
    good = [
        f"ORD-{n},2024-01-0{n % 9 + 1}T00:00:00Z,{WALLET},fine,{n}.5\n".encode() for n in range(40)
    ]
    lines = [*good[:10], b"ORD-X,2024-01-01T00:00:00Z,too,few\n", *good[10:20]]
    lines += [f"ORD-Y,2024-01-01T00:00:00Z,{WALLET},Caf\xe9,1\n".encode("latin-1"), *good[20:]]
    source = csv_with_lines(tmp_path / "orders.csv", lines)
    mapping = mapping_from_dict(CSV_MAPPING)  # `note` is not mapped: not made into a column

    narrow, every = outcome(source, mapping), outcome(source, mapping, every_column=True)

    assert narrow == every
    assert [(row, stage) for row, stage, _ in narrow["failures"]] == [(10, "read"), (21, "read")]
    assert "not UTF-8" in narrow["failures"][1][2] or "decode" in narrow["failures"][1][2]
    assert narrow["read"] == 42 and len(narrow["events"]) == 40


def test_a_gzipped_csv_with_bad_bytes_late_in_the_file_keeps_every_row_number(
    tmp_path: Path,
) -> None:
    lines = [f"ORD-{n},2024-01-01T00:00:00Z,{WALLET},x,{n}\n".encode() for n in range(30_000)]
    lines[25_000] = f"ORD-Z,2024-01-01T00:00:00Z,{WALLET},\xff\xfe,1\n".encode("latin-1")
    plain = csv_with_lines(tmp_path / "plain.csv", lines)
    packed = tmp_path / "orders.csv.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    mapping = mapping_from_dict(CSV_MAPPING)

    narrow = outcome(packed, mapping)

    assert narrow == outcome(packed, mapping, every_column=True)
    assert [(row, stage) for row, stage, _ in narrow["failures"]] == [(25_000, "read")]


# --- the filter pushed down to Parquet row groups ----------------------------------------------


STATUSES = ["paid", "refunded", "pending", "Paid", "", None]


def orders_table(rows: list[tuple[str | None, int | None, float | None]]) -> pa.Table:
    return pa.table(
        {
            "order_id": [f"ORD-{n}" for n in range(len(rows))],
            "created_at": pa.array([NOW_MS - 1_000_000 + n for n in range(len(rows))], pa.int64()),
            "wallet": [WALLET] * len(rows),
            "status": pa.array([r[0] for r in rows], pa.string()),
            "amount": pa.array([r[1] for r in rows], pa.int64()),
            "price": pa.array([r[2] for r in rows], pa.float64()),
        }
    )


def filter_mapping(expression: str) -> Mapping:
    return mapping_from_dict(
        {
            "event_name": "E",
            "timestamp": {"column": "created_at", "unit": "ms"},
            "user": {"pubKey": "wallet"},
            "event_data": {
                "orderId": "order_id",
                "amount": {"column": "amount", "type": "number"},  # a missing amount fails
                "price": {"column": "price", "type": "number", "optional": True},
            },
            "filter": expression,
        }
    )


def pushed_and_not(path: Path, mapping: Mapping) -> tuple[dict[str, Any], dict[str, Any], int]:
    """Both paths' outcomes (events, failures with their records, counts), and how many rows
    the pushed-down path did not read."""
    results, skipped = [], 0
    for pushdown in (True, False):
        source = read_source(path)
        mapper = EventMapper(mapping, source.name, now_ms=NOW_MS)
        events, failures, read, filtered = [], [], 0, 0
        try:
            for chunk in mapped_chunks_of(source, mapping, 7, pushdown=pushdown):
                skipped += len(chunk.skipped) if pushdown else 0
                mapped = mapper.map_chunk(chunk)
                read, filtered = read + mapped.read, filtered + mapped.filtered
                events += list(mapped.bodies(TORQUE_V1))
                failures += [(f.row, f.reason, f.error, repr(f.record)) for f in mapped.failures]
        except MappingError as exc:  # e.g. a huge integer against a float: both must say so
            failures.append((None, "error", str(exc), ""))
        results.append({"events": events, "failures": failures, "read": read, "filtered": filtered})
    return results[0], results[1], skipped


statuses = st.sampled_from(STATUSES)
amounts = st.one_of(st.none(), st.integers(-5, 5), st.sampled_from([2**53 + 1, -(2**62)]))
prices = st.one_of(st.none(), st.floats(-3, 3), st.just(float("nan")))
numbers = st.one_of(st.integers(-6, 6), st.floats(-4, 4).map(lambda x: round(x, 1)))
atoms = st.one_of(
    st.builds(
        lambda c, op, v: f"{c} {op} {v!r}",
        st.just("status"),
        st.sampled_from(["==", "!=", "<", "<=", ">", ">="]),
        st.sampled_from(["paid", "refunded", "", "q", "Paid"]),
    ),
    st.builds(
        lambda c, op, v: f"{c} {op} {v!r}",
        st.sampled_from(["amount", "price"]),
        st.sampled_from(["==", "!=", "<", "<=", ">", ">="]),
        numbers,
    ),
    st.builds(lambda op, v: f"{v!r} {op} amount", st.sampled_from(["==", "<", ">="]), numbers),
    st.builds(
        lambda neg, vs: f"status {'not in' if neg else 'in'} {vs!r}",
        st.booleans(),
        st.lists(st.sampled_from(["paid", "pending", "zzz", ""]), max_size=3),
    ),
    st.builds(lambda vs: f"amount in {vs!r}", st.lists(st.integers(-6, 6), min_size=1, max_size=3)),
    st.sampled_from(["isna(status)", "notna(amount)", "startswith(status, 'p')"]),
)
filters = st.recursive(
    atoms,
    lambda inner: st.one_of(
        st.builds(lambda a, b: f"({a}) and ({b})", inner, inner),
        st.builds(lambda a, b: f"({a}) or ({b})", inner, inner),
        st.builds(lambda a: f"not ({a})", inner),
    ),
    max_leaves=4,
)


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=st.lists(st.tuples(statuses, amounts, prices), max_size=60),
    sort=st.booleans(),
    group_rows=st.integers(1, 12),
    expression=filters,
)
def test_pushdown_gives_the_same_counts_events_and_report_as_reading_every_group(
    tmp_path: Path, rows: list[Any], sort: bool, group_rows: int, expression: str
) -> None:
    if sort:  # groups of one status, one range of amounts: what pushdown can rule out
        rows = sorted(rows, key=lambda r: (r[0] or "", r[1] if r[1] is not None else -99))
    path = tmp_path / f"orders-{abs(hash((tuple(rows), group_rows)))}.parquet"
    pq.write_table(orders_table(rows), path, row_group_size=group_rows)
    mapping = filter_mapping(expression)

    pushed, every, skipped = pushed_and_not(path, mapping)

    assert pushed == every
    if not any(stage == "error" for _, stage, *_ in pushed["failures"]):
        assert pushed["read"] == len(rows)
        assert skipped <= pushed["filtered"]


def test_row_groups_the_filter_rules_out_are_not_read_and_count_as_filtered(
    tmp_path: Path,
) -> None:
    rows = [("paid", n, 1.0) for n in range(10)] + [("refunded", n, 2.0) for n in range(20)]
    rows += [("paid", None, 3.0)] * 5  # a missing amount fails its row: still read
    path = tmp_path / "orders.parquet"
    pq.write_table(orders_table(rows), path, row_group_size=5)

    pushed, every, skipped = pushed_and_not(path, filter_mapping("status == 'paid'"))

    assert pushed == every
    assert skipped == 20  # the four groups of refunds
    assert (pushed["read"], pushed["filtered"], len(pushed["events"])) == (35, 20, 10)
    assert [row for row, *_ in pushed["failures"]] == [30, 31, 32, 33, 34]
    assert all("'status': 'paid'" in record for *_, record in pushed["failures"])


@pytest.mark.parametrize(
    ("expression", "groups_ruled_out"),
    [
        ("status == 'paid'", [False, True]),
        ("'paid' == status", [False, True]),
        ("status in ['pending', 'paid']", [False, True]),
        ("status > 'q'", [True, False]),
        ("amount >= 10", [True, False]),
        ("amount < 10", [False, True]),
        ("price > 1.5", [True, False]),
        ("amount >= 10 and status == 'paid'", [True, True]),
        ("amount >= 10 or status == 'paid'", [False, False]),
        ("status != 'refunded'", [False, False]),  # proves nothing: read as before
        ("not (status == 'refunded')", [False, False]),
        ("amount == 3.0", [False, False]),  # an integer column against a float: not compared
        ("amount == 300", [True, True]),
    ],
)
def test_a_group_is_ruled_out_only_where_its_statistics_prove_it(
    tmp_path: Path, expression: str, groups_ruled_out: list[bool]
) -> None:
    rows = [("paid", n, 1.0) for n in range(10)] + [("refunded", n + 10, 2.0) for n in range(10)]
    path = tmp_path / "orders.parquet"
    pq.write_table(orders_table(rows), path, row_group_size=10)
    test = group_test(expression)
    meta = pq.ParquetFile(path)
    schema = meta.schema_arrow

    found = [test is not None and test(schema, meta.metadata.row_group(g), {}) for g in range(2)]

    assert found == groups_ruled_out


def test_a_group_whose_values_are_all_missing_is_ruled_out_by_a_comparison(tmp_path: Path) -> None:
    path = tmp_path / "orders.parquet"
    pq.write_table(orders_table([(None, None, None)] * 4), path)
    meta = pq.ParquetFile(path)
    test = group_test("amount > 0 or status == 'paid'")

    assert test is not None and test(meta.schema_arrow, meta.metadata.row_group(0), {})
    assert group_test("isna(status)") is None  # a test, not a comparison: nothing to prove


def test_a_filter_that_does_not_fit_the_columns_fails_even_when_every_group_is_ruled_out(
    tmp_path: Path,
) -> None:
    path = tmp_path / "orders.parquet"
    pq.write_table(orders_table([("refunded", 1, 1.0)] * 4), path, row_group_size=2)
    mapping = filter_mapping("status == 'paid' and amount == 'one'")  # text against a number
    source = read_source(path)
    mapper = EventMapper(mapping, source.name, now_ms=NOW_MS)

    with pytest.raises(MappingError, match="amount"):
        for chunk in mapped_chunks_of(source, mapping):
            mapper.map_chunk(chunk)


def test_a_group_without_statistics_is_read(tmp_path: Path) -> None:
    path = tmp_path / "orders.parquet"
    pq.write_table(orders_table([("refunded", 1, 1.0)] * 4), path, write_statistics=False)
    meta = pq.ParquetFile(path)
    test = group_test("status == 'paid'")

    assert test is not None and not test(meta.schema_arrow, meta.metadata.row_group(0), {})


def test_a_run_of_a_parquet_file_sorted_by_status_sends_and_counts_as_reading_it_all(
    tmp_path: Path, cli: Callable[..., CliResult], sandbox: SandboxProcess
) -> None:
    table = pq.read_table(SAMPLE / "orders.parquet")
    table = table.take(pc.sort_indices(table, [("status", "ascending")]))
    path = tmp_path / "sorted.parquet"
    pq.write_table(table, path, row_group_size=100)
    source = read_source(path)
    mapping = load_mapping(SAMPLE / "map.yaml")
    skipped = sum(len(c.skipped) for c in mapped_chunks_of(source, mapping))
    assert skipped >= 200, "most of the 296 unpaid orders are in groups of their own"

    result = cli(
        "run", path, "--mapping", SAMPLE / "map.yaml", "--endpoint", sandbox.endpoint(),
        "--rate", "0", "--quiet", "--json",
    )  # fmt: skip

    assert result.code == 1, result.stderr  # the sample's 72 bad rows
    summary = result.json()
    counts = [summary[k] for k in ("read", "accepted", "filtered", "failed")]
    assert counts == [3000, 2632, 296, 72]
    stats = sandbox.stats()
    assert stats["accepted"] == 2632 and stats["duplicates"] == 0
    failures = list(read_report(tmp_path / "sorted.parquet.failures.jsonl"))
    assert len(failures) == 72 and all(f.record["status"] == "paid" for f in failures)


def hive_lake(root: Path) -> Path:
    """The same orders under `status=.../` folders (the file itself has no status column),
    and one folder for a missing status."""
    rows = {"paid": 7, "refunded": 5, "__HIVE_DEFAULT_PARTITION__": 3}
    start = 0
    for status, count in rows.items():
        folder = root / "lake" / f"status={status}"
        folder.mkdir(parents=True)
        table = orders_table([(None, n, 1.0) for n in range(start, start + count)])
        pq.write_table(table.drop_columns(["status"]), folder / "part-0.parquet", row_group_size=2)
        start += count
    return root / "lake"


@pytest.mark.parametrize(
    ("expression", "not_read"),
    [
        ("status == 'paid'", 8),  # the refunded folder's 5 rows and the missing one's 3
        ("status in ['refunded', 'pending']", 10),
        ("status == 'refunded' or amount < 3", 6),  # missing: 3; paid groups [4, 5], [6]
        ("status == 'refunded' or amount > 100", 10),
        ("status != 'paid'", 0),  # proves nothing: every file read
        ("isna(status)", 0),
    ],
)
def test_a_filter_on_a_partition_folder_rules_out_its_files_with_the_same_outcome(
    tmp_path: Path, expression: str, not_read: int
) -> None:
    lake = hive_lake(tmp_path)

    pushed, every, skipped = pushed_and_not(lake, filter_mapping(expression))

    assert pushed == every
    assert skipped == not_read
    assert pushed["read"] == 15
