"""Failing writes stop the run cleanly: a file size limit (`ulimit -f`), a full disk met in a
sender task, and a failed fsync end the run within seconds with one line naming the file
and the OS error, exit code 3, no traceback and no hang; `--resume` then delivers the rest,
with duplicates bounded as after a crash.

End to end: the real CLI in a subprocess against a sandbox process. The full disk is
injected into the CLI's own process by a small launcher that wraps `os.write` for journal
lines (there is no portable way to fill a disk in a test).
"""

from __future__ import annotations

import asyncio
import errno
import resource
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from conftest import (
    SAMPLE,
    TEST_KEY,
    CliResult,
    SandboxProcess,
    cli_env,
    write_sample_mapping,
    write_valid_orders,
)

from backfill.books import record_file
from backfill.books.journal import read_journal
from backfill.errors import RecordWriteError
from backfill.look.validate import open_inputs
from backfill.mapping.envelopes import TORQUE_V1
from backfill.mapping.spec import load_mapping
from backfill.pipeline.run import Run, Target, plan_source_run
from backfill.send.httpx_poster import HttpxPoster
from backfill.send.sender import SendPolicy

pytestmark = pytest.mark.timeout(120)
STOP_WITHIN = 30  # seconds: a run whose record cannot be written must end by itself
Factory = Callable[..., SandboxProcess]


def run_limited(args: list[str | Path], cwd: Path, max_file_bytes: int) -> CliResult:
    """The CLI under `ulimit -f`: writes past the limit fail with EFBIG (SIGXFSZ ignored,
    as a shell does for a job it wants to survive the limit)."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_bytes, max_file_bytes))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    done = subprocess.run(
        [sys.executable, "-m", "backfill", *map(str, args)],
        cwd=cwd,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=STOP_WITHIN,
        preexec_fn=limit,
    )
    return CliResult(done.returncode, done.stdout, done.stderr)


def orders_stored(sandbox: SandboxProcess) -> Counter[str]:
    return Counter(line["event"]["event_data"]["orderId"] for line in sandbox.events())


def assert_one_clean_line(result: CliResult, file_name: str, os_error: str) -> None:
    assert result.code == 3, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: cannot write ") and file_name in lines[0]
    assert os_error in lines[0] and "--resume" in lines[0]


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
@pytest.mark.parametrize(
    "which",
    ["journal", "report"],
    ids=["journal-in-a-sender-task", "report-in-the-reader"],
)
def test_a_file_size_limit_stops_the_run_with_one_line_and_resume_delivers_the_rest(
    tmp_path: Path, sandbox: SandboxProcess, cli: Callable[..., CliResult], which: str
) -> None:
    if which == "journal":  # every row valid: the journal is the file that grows
        source, mapping = write_valid_orders(tmp_path, 2000)
        expected, exit_code, full = {f"ORD-{i}" for i in range(2000)}, 0, "failures.jsonl.state"
    else:  # the sample's 72 bad rows fill the report first, written by the reader
        source, mapping = SAMPLE / "orders.parquet", write_sample_mapping(tmp_path / "m.yaml")
        expected, exit_code, full = None, 1, "failures.jsonl"
    args: list[str | Path] = [
        "run", source, "--mapping", mapping, "--endpoint", sandbox.endpoint(),
        "--report", "failures.jsonl", "--rate", "0", "--concurrency", "8", "--json", "--quiet",
    ]  # fmt: skip

    stopped = run_limited(args, tmp_path, max_file_bytes=16_000)

    assert_one_clean_line(stopped, f"cannot write {full}:", "File too large")
    assert stopped.stdout == ""
    if which == "journal":
        assert 0 < len(sandbox.events()) < 2000  # stopped part-way
    state = read_journal(tmp_path / "failures.jsonl.state")  # consistent: it reads back
    assert state is not None and not state.finished

    resumed = cli(*args, "--resume")

    assert resumed.code == exit_code, resumed.stderr
    summary = resumed.json()
    assert summary["stopped"] is None and summary["unsent"] == 0
    stored = orders_stored(sandbox)
    if expected is not None:
        assert set(stored) == expected
    else:
        assert summary["accepted"] + summary["already_done"] > 0
        assert len(stored) == 2632  # every valid row of the sample
    duplicates = sum(times - 1 for times in stored.values())
    assert duplicates <= summary["uncertain"] <= 8


LAUNCHER = textwrap.dedent(
    """
    import errno, os, sys, types
    import backfill.books.record_file as record_file

    real_write, calls = os.write, [0]

    def write(fd, data):
        if data[:2] in (b"a ", b"w "):  # journal entries, written by the sender tasks
            calls[0] += 1
            if calls[0] > int(os.environ["FAIL_AFTER"]):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    record_file.os = types.SimpleNamespace(**{**vars(os), "write": write})
    from backfill.cli import main
    sys.argv = ["backfill", *sys.argv[1:]]
    main()
    """
)


def test_a_full_disk_in_a_sender_task_ends_the_run_while_the_reader_waits_on_a_full_queue(
    tmp_path: Path, sandbox_factory: Factory, cli: Callable[..., CliResult]
) -> None:
    count = 3000  # far more than the queue holds: the reader is waiting to put the next batch
    source, mapping = write_valid_orders(tmp_path, count)
    sandbox = sandbox_factory("--fault", "slow=1.0", "--slow-seconds", "0.02")
    args: list[str | Path] = [
        "run", source, "--mapping", mapping, "--endpoint", sandbox.endpoint(),
        "--report", "failures.jsonl", "--rate", "0", "--concurrency", "2", "--json", "--quiet",
    ]  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", LAUNCHER, *map(str, args)],
        cwd=tmp_path,
        env=cli_env(FAIL_AFTER="200"),
        capture_output=True,
        text=True,
        timeout=STOP_WITHIN,  # a hang fails here
    )

    assert_one_clean_line(
        CliResult(done.returncode, done.stdout, done.stderr),
        "cannot write failures.jsonl.state:",
        "No space left on device",
    )
    sent = len(sandbox.events())
    assert 0 < sent < count / 2  # it stopped early, not after sending everything

    resumed = cli(*args, "--resume", "--concurrency", "16")  # the rest, sooner

    assert resumed.code == 0, resumed.stderr
    stored = orders_stored(sandbox)
    assert set(stored) == {f"ORD-{i}" for i in range(count)}
    assert sum(times - 1 for times in stored.values()) <= resumed.json()["uncertain"] <= 2


def test_a_failed_journal_write_ends_an_in_process_run_with_the_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The library's side: `Run.execute` raises `RecordWriteError` (no hang, files closed)."""
    source, mapping_path = write_valid_orders(tmp_path, 2000)
    opened, mapping = open_inputs(source, load_mapping(mapping_path))
    plan = plan_source_run(opened, mapping, TORQUE_V1, tmp_path / "failures.jsonl", chunk_rows=64)
    policy = SendPolicy(rate=0, concurrency=2, max_retries=0)
    target = Target(TORQUE_V1, TORQUE_V1.default_endpoint, TEST_KEY, policy)
    real_write, calls = record_file.os.write, [0]

    def write(fd: int, data: bytes) -> int:
        if data.startswith(b"a "):
            calls[0] += 1
            if calls[0] > 50:
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(record_file.os, "write", write)

    def poster(url: str, headers: dict[str, str], policy: SendPolicy) -> HttpxPoster:
        transport = httpx.MockTransport(lambda request: httpx.Response(202))
        return HttpxPoster(url, headers, policy, transport=transport)

    async def go() -> None:
        await asyncio.wait_for(Run(plan, target, poster_factory=poster).execute(), 20)

    with pytest.raises(RecordWriteError, match=r"failures\.jsonl\.state: No space left"):
        asyncio.run(go())
    assert calls[0] == 51  # nothing written after the failure


# --- one record file, in process ----------------------------------------------------------


def test_a_write_the_system_takes_a_byte_at_a_time_still_lands_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = record_file.os.write
    monkeypatch.setattr(record_file.os, "write", lambda fd, data: real_write(fd, data[:1]))
    path = tmp_path / "r.jsonl"
    file = record_file.RecordFile(path)
    file.write(b'{"row":1}\n')
    file.close()
    assert path.read_bytes() == b'{"row":1}\n'


def test_a_new_file_replaces_an_old_one_and_an_appending_one_keeps_it(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_bytes(b"old\n")
    appending = record_file.RecordFile(path)
    appending.write(b"more\n")
    appending.close()
    assert path.read_bytes() == b"old\nmore\n"
    fresh = record_file.RecordFile(path, truncate=True)
    fresh.write(b"new\n")
    fresh.close()
    assert path.read_bytes() == b"new\n"


def test_a_file_that_cannot_be_opened_is_one_line_naming_it_and_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "r.jsonl"
    with pytest.raises(RecordWriteError) as raised:
        record_file.RecordFile(path)
    assert str(raised.value) == f"cannot write {path}: No such file or directory (errno 2)"


def test_an_os_error_without_a_reason_is_named_by_its_kind(tmp_path: Path) -> None:
    text = record_file.describe_os_error(tmp_path / "r.jsonl", PermissionError())
    assert text == f"cannot write {tmp_path / 'r.jsonl'}: PermissionError (errno None)"


def test_a_failed_file_refuses_later_writes_with_its_first_error_and_a_closed_one_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = record_file.RecordFile(tmp_path / "r.jsonl")

    def full(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(record_file.os, "write", full)
    with pytest.raises(RecordWriteError) as first:
        file.write(b"a\n")
    monkeypatch.undo()
    with pytest.raises(RecordWriteError) as later:
        file.write(b"b\n")
    assert str(later.value) == str(first.value) and "No space left" in str(first.value)
    file.close()  # no second error for a file that already failed
    closed = record_file.RecordFile(tmp_path / "s.jsonl")
    closed.close()
    with pytest.raises(ValueError, match=r"s\.jsonl is closed"):
        closed.write(b"a\n")
    assert (tmp_path / "s.jsonl").read_bytes() == b""


def test_close_fsyncs_what_was_written_and_a_file_with_nothing_new_is_not_fsynced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    real_fsync = record_file.os.fsync
    monkeypatch.setattr(record_file.os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    untouched = record_file.RecordFile(tmp_path / "untouched.jsonl")
    untouched.close()
    assert synced == []
    closed = record_file.RecordFile(tmp_path / "closed.jsonl")
    closed.write(b"a\n")
    closed.close()
    assert len(synced) == 1
    synced.clear()
    written = record_file.RecordFile(tmp_path / "written.jsonl")
    written.write(b"a\n")
    written.sync()
    written.sync()  # nothing new since the last
    written.close()
    written.sync()  # a timer's last tick after the close: nothing to do
    assert len(synced) == 1


def test_a_short_write_is_named_with_its_byte_counts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "r.jsonl"
    file = record_file.RecordFile(path)
    monkeypatch.setattr(record_file.os, "write", lambda fd, data: 0)
    with pytest.raises(RecordWriteError) as refused:
        file.write(b"abc\n")
    assert str(refused.value) == (
        f"cannot write {path}: short write (0 of 4 bytes; is the disk full?)"
    )
