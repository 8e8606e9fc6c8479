"""An exception backfill did not expect is a bug: one line that says so and where the
traceback is, the traceback (without the API key) in that file, and exit code 70."""

from __future__ import annotations

import os
import re
import stat
import time
from pathlib import Path

import pytest

import backfill.cli
from backfill.cli.output import EXIT_BUG, EXIT_ROWS_FAILED, EXIT_USAGE

SECRET = "secret-key-Hh7Qp2Zt9"


def test_an_unexpected_exception_is_a_bug_report_with_exit_70(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    def crash() -> None:
        raise ValueError(f"2017-10-15 00:00:00 is a nonexistent time (key {SECRET})")

    monkeypatch.setenv("TORQUE_API_KEY", SECRET)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)
    monkeypatch.setattr(backfill.cli, "cli", crash)
    with pytest.raises(SystemExit) as ended:
        backfill.cli.main()
    assert ended.value.code == EXIT_BUG == 70
    assert EXIT_BUG not in (EXIT_ROWS_FAILED, EXIT_USAGE)
    stderr = capsys.readouterr().err
    assert "this is a bug in backfill, please report it" in stderr
    assert SECRET not in stderr
    saved = re.search(r"the traceback is in (\S+\.txt)", stderr)
    assert saved is not None, stderr
    traceback_file = Path(saved.group(1))
    assert traceback_file.parent == tmp_path
    text = traceback_file.read_text(encoding="utf-8")
    assert "Traceback (most recent call last)" in text and "nonexistent time" in text
    assert SECRET not in text
    assert stat.S_IMODE(traceback_file.stat().st_mode) == 0o600  # rows' values: the user's only


def test_a_crash_never_writes_through_a_file_already_at_its_name(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Someone else's link at the predictable name in a shared folder is left alone."""
    target = tmp_path / "someone-elses.txt"
    target.write_text("theirs", encoding="utf-8")
    for offset in range(3):  # the name is stamped to the second: cover this one and the next
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(time.time() + offset))
        (tmp_path / f"backfill-crash-{stamp}-{os.getpid()}.txt").symlink_to(target)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)

    def crash() -> None:
        raise ValueError("boom")

    monkeypatch.setattr(backfill.cli, "cli", crash)
    with pytest.raises(SystemExit) as ended:
        backfill.cli.main()
    assert ended.value.code == EXIT_BUG
    assert "the traceback could not be saved" in capsys.readouterr().err
    assert target.read_text(encoding="utf-8") == "theirs"
