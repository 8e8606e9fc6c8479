"""An exception backfill did not expect is a bug: one line that says so and where the
traceback is, the traceback (without the API key) in that file, and exit code 70."""

from __future__ import annotations

import re
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
