"""SOURCE as many files: a glob of CSV parts, a hive-partitioned directory, Parquet parts
under an s3:// prefix on a real S3-compatible server (moto's server mode on 127.0.0.1).

Each end-to-end test splits the bundled sample into parts and checks that the run sends
exactly the events of the whole sample, each once."""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from conftest import SAMPLE, CliResult, SampleOutcome, SandboxProcess, cli_env, write_sample_mapping

from backfill.errors import SourceError
from backfill.read.source import PartitionedReader, read_source

pytestmark = pytest.mark.timeout(120)


def sample_lines() -> tuple[list[str], list[list[str]]]:
    with (SAMPLE / "orders.csv").open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        return next(reader), list(reader)


def write_csv_part(path: Path, header: list[str], lines: list[list[str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(lines)


def write_csv_exports(tmp_path: Path, *parts: list[list[str]]) -> Path:
    """`exports/orders-1.csv`, `orders-2.csv`... under `tmp_path`, with the sample's header."""
    header, _ = sample_lines()
    exports = tmp_path / "exports"
    exports.mkdir()
    for number, lines in enumerate(parts, start=1):
        write_csv_part(exports / f"orders-{number}.csv", header, lines)
    return exports


def assert_each_event_once(sandbox: SandboxProcess, outcome: SampleOutcome) -> None:
    stored = Counter(outcome.stored_rows(sandbox))
    assert None not in stored, "the sandbox holds an event no correct run would send"
    assert set(stored) == outcome.valid_rows
    assert max(stored.values()) == 1


def run_to(
    cli: Callable[..., CliResult],
    sandbox: SandboxProcess,
    source: str | Path,
    tmp_path: Path,
    **env: str,
) -> CliResult:
    mapping = write_sample_mapping(tmp_path / "map.yaml")
    return cli("run", source, "--mapping", mapping, "--endpoint", sandbox.endpoint(),
               "--report", tmp_path / "failures.jsonl", "--rate", "0", "--quiet", "--json",
               env=cli_env(**env) if env else None)  # fmt: skip


def test_a_glob_of_csv_parts_sends_every_event_once(
    cli: Callable[..., CliResult],
    sandbox: SandboxProcess,
    sample_outcome: SampleOutcome,
    tmp_path: Path,
) -> None:
    header, lines = sample_lines()
    exports = tmp_path / "exports"
    exports.mkdir()
    for number, start in enumerate(range(0, 3000, 1000), start=1):
        write_csv_part(exports / f"orders-{number}.csv", header, lines[start : start + 1000])
    write_csv_part(exports / "customers-1.csv", ["x"], [["1"]])  # does not match: left alone

    result = run_to(cli, sandbox, "exports/orders-*.csv", tmp_path)

    assert result.code == 1, result.stderr
    summary = result.json()
    assert (summary["read"], summary["accepted"], summary["failed"]) == (3000, 2632, 72)
    assert_each_event_once(sandbox, sample_outcome)


def write_hive(root: Path) -> None:
    """The sample's Parquet rows in `status=<status>/` folders, without the status column."""
    table = pq.read_table(SAMPLE / "orders.parquet")
    for status in ("paid", "pending", "refunded"):
        folder = root / f"status={status}"
        folder.mkdir(parents=True)
        part = table.filter(pc.equal(table["status"], status)).drop_columns(["status"])
        pq.write_table(part.slice(0, 500), folder / "part-0.parquet")
        pq.write_table(part.slice(500), folder / "part-1.parquet")
    (root / "_SUCCESS").write_text("")
    (root / "status=paid" / ".part-0.parquet.crc").write_text("x")


def test_a_hive_partitioned_directory_gives_its_folders_as_columns(
    cli: Callable[..., CliResult],
    sandbox: SandboxProcess,
    sample_outcome: SampleOutcome,
    tmp_path: Path,
) -> None:
    write_hive(tmp_path / "lake")

    result = run_to(cli, sandbox, tmp_path / "lake", tmp_path)  # its filter uses `status`

    assert result.code == 1, result.stderr
    summary = result.json()
    assert (summary["read"], summary["filtered"], summary["accepted"]) == (3000, 296, 2632)
    assert_each_event_once(sandbox, sample_outcome)


def test_partition_columns_are_text_and_files_are_read_in_path_order(tmp_path: Path) -> None:
    write_hive(tmp_path / "lake")
    source = read_source(tmp_path / "lake")
    assert [Path(f.name).relative_to(tmp_path / "lake").as_posix() for f in source.files] == [
        f"status={s}/part-{n}.parquet" for s in ("paid", "pending", "refunded") for n in (0, 1)
    ]
    assert source.schema.field("status").type == pa.string()
    assert all(isinstance(f, PartitionedReader) for f in source.files)
    statuses = Counter()
    for chunk in source.chunks(700):
        statuses.update(chunk.table.column("status").to_pylist())
    assert statuses == {"paid": 2704, "refunded": 176, "pending": 120}


def test_a_glob_with_two_stars_crosses_folders(tmp_path: Path) -> None:
    write_hive(tmp_path / "lake")
    source = read_source(f"{tmp_path}/lake/**/*.parquet")
    assert len(source.files) == 6 and source.total_rows == 3000


@pytest.mark.parametrize(
    ("make", "source", "expected"),
    [
        (lambda root: None, "nothing-*.csv", r"nothing-\*.csv: no .csv, .* file matches"),
        (lambda root: (root / "d").mkdir(), "d", r"d: holds no .csv, .csv.gz, .* files."),
    ],
)
def test_an_empty_glob_or_directory_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make: Callable[[Path], None], source: str,
    expected: str,
) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    make(tmp_path)
    with pytest.raises(SourceError, match=expected):
        read_source(source)


def test_a_folder_that_names_a_column_of_its_files_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "lake" / "status=paid"
    folder.mkdir(parents=True)
    pq.write_table(pq.read_table(SAMPLE / "orders.parquet"), folder / "part.parquet")
    with pytest.raises(SourceError, match="the folder names the column 'status'"):
        read_source(tmp_path / "lake")


# --- s3:// on an S3-compatible server ---------------------------------------------------------


@pytest.fixture
def s3_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """moto's S3 server on 127.0.0.1 and the environment that points the AWS SDK at it."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    yield env
    server.stop()


def parquet_parts(table: pa.Table) -> list[bytes]:
    """The table in four Parquet files of 750 rows, as bytes."""
    parts = []
    for start in range(0, 3000, 750):
        sink = pa.BufferOutputStream()
        pq.write_table(table.slice(start, 750), sink)
        parts.append(sink.getvalue().to_pybytes())
    return parts


def upload_parts(bucket: str, prefix: str) -> None:
    import boto3

    client = boto3.client("s3")
    client.create_bucket(Bucket=bucket)
    table = pq.read_table(SAMPLE / "orders.parquet")
    for number, body in enumerate(parquet_parts(table)):
        key = f"{prefix}part-{number:03d}.parquet"
        client.put_object(Bucket=bucket, Key=key, Body=body)
    client.put_object(Bucket=bucket, Key=f"{prefix}_SUCCESS", Body=b"")
    client.put_object(Bucket=bucket, Key="elsewhere/part-000.parquet", Body=b"not parquet")


def test_parquet_parts_under_an_s3_prefix_are_sent_once_each(
    cli: Callable[..., CliResult],
    sandbox: SandboxProcess,
    sample_outcome: SampleOutcome,
    s3_server: dict[str, str],
    tmp_path: Path,
) -> None:
    upload_parts("shop-exports", "orders/2024/")

    result = run_to(cli, sandbox, "s3://shop-exports/orders/2024/", tmp_path, **s3_server)

    assert result.code == 1, result.stderr
    summary = result.json()
    assert (summary["read"], summary["accepted"], summary["failed"]) == (3000, 2632, 72)
    assert_each_event_once(sandbox, sample_outcome)


def test_s3_sources_read_the_endpoint_from_the_environment(
    s3_server: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    upload_parts("shop-exports", "orders/2024/")
    source = read_source("s3://shop-exports/orders/2024/")
    assert [f.name for f in source.files] == [
        f"s3://shop-exports/orders/2024/part-{n:03d}.parquet" for n in range(4)
    ]
    assert sum(len(chunk) for chunk in source.chunks()) == 3000
    fingerprints = source.fingerprints()  # what the journal keeps of each part
    assert [f["size"] for f in fingerprints.values()] == [
        len(body) for body in parquet_parts(pq.read_table(SAMPLE / "orders.parquet"))
    ]
    assert all(isinstance(f["mtime_ns"], int) for f in fingerprints.values())
    globbed = read_source("s3://shop-exports/orders/*/part-00[12].parquet")
    assert [f.name.rsplit("/", 1)[1] for f in globbed.files] == [
        "part-001.parquet",
        "part-002.parquet",
    ]
    with pytest.raises(SourceError, match="no such file or prefix"):
        read_source("s3://shop-exports/nothing/here.parquet")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(SourceError, match="AWS_ENDPOINT_URL"):
        read_source("s3://shop-exports/orders/2024/")


def test_az_urls_are_refused_before_any_network_saying_how_pyarrow_names_azure() -> None:
    with pytest.raises(SourceError) as refused:
        read_source("az://exports/orders/2024/")
    assert "az://exports/orders/2024/" in str(refused.value)
    assert "abfs://CONTAINER@ACCOUNT.dfs.core.windows.net/PATH" in str(refused.value)


def test_a_part_added_after_a_finished_run_is_sent_by_resume_and_restart_sends_none_with_ids(
    cli: Callable[..., CliResult],
    sandbox: SandboxProcess,
    sample_outcome: SampleOutcome,
    tmp_path: Path,
) -> None:
    from test_id_ledger import id_mapping

    header, lines = sample_lines()
    exports = tmp_path / "exports"
    exports.mkdir()
    write_csv_part(exports / "orders-1.csv", header, lines[:1500])
    command = ("run", "exports/orders-*.csv", "--mapping", id_mapping(tmp_path),
               "--endpoint", sandbox.endpoint(), "--ledger", tmp_path / "ledger.sqlite3",
               "--report", tmp_path / "f.jsonl", "--rate", "0", "--quiet", "--json")  # fmt: skip
    assert cli(*command).code == 1
    write_csv_part(exports / "orders-2.csv", header, lines[1500:])

    resumed = cli(*command, "--resume")

    assert resumed.code == 1, resumed.stderr
    new = sample_outcome.valid_rows & set(range(1500, 3000))
    assert (resumed.json()["accepted"], resumed.json()["already_sent"]) == (len(new), 0)
    assert_each_event_once(sandbox, sample_outcome)
    restarted = cli(*command, "--restart")
    assert restarted.code == 1, restarted.stderr
    assert restarted.json()["accepted"] == 0
    assert restarted.json()["already_sent"] == len(sample_outcome.valid_rows)
    assert_each_event_once(sandbox, sample_outcome)


def test_each_file_keeps_its_name_and_own_row_numbers_and_its_fingerprint(
    tmp_path: Path,
) -> None:
    header, lines = sample_lines()
    for number in (1, 2):
        write_csv_part(tmp_path / f"orders-{number}.csv", header, lines[:3])
    source = read_source(f"{tmp_path}/orders-*.csv")

    chunks = [(chunk.source, chunk.rows.tolist()) for chunk in source.chunks(2)]

    names = [f"{tmp_path}/orders-{number}.csv" for number in (1, 2)]
    assert chunks == [(names[0], [0, 1]), (names[0], [2]), (names[1], [0, 1]), (names[1], [2])]
    stats = [Path(name).stat() for name in names]
    assert source.fingerprints() == {
        name: {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        for name, stat in zip(names, stats)
    }
    assert source.identity == f"{tmp_path}/orders-*.csv"
