"""The question before a run or rerun to a real endpoint: asked on a terminal (tested through
a pseudo-terminal), never asked and never waited for without one.

The endpoint is a real sandbox process on 127.0.0.1 named with --endpoint, i.e. not
--sandbox: to backfill it is an endpoint like production.
"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import (
    SAMPLE,
    CliResult,
    SampleOutcome,
    SandboxProcess,
    cli_env,
    write_sample_mapping,
)

PROMPT = "Send them? [y/N]"
DEADLINE = 120.0


def run_on_terminal(args: list[str | Path], cwd: Path, answer: str | None) -> tuple[int, str]:
    """`backfill ARGS` with a pseudo-terminal as stdin, stdout and stderr; `answer` is typed
    when the question appears (None: type nothing). Returns the exit code and the screen."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "backfill", *map(str, args)],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        cwd=cwd,
        env=cli_env(),
        close_fds=True,
    )
    os.close(follower)
    screen = b""
    answered = answer is None
    deadline = time.monotonic() + DEADLINE
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.5)
            if ready:
                try:
                    data = os.read(leader, 4096)
                except OSError:  # the child closed the terminal: it is done
                    break
                if not data:
                    break
                screen += data
            if not answered and PROMPT.encode() in screen:
                os.write(leader, f"{answer}\n".encode())
                answered = True
            if process.poll() is not None and not ready:
                break
        code = process.wait(timeout=DEADLINE)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(leader)
    return code, screen.decode("utf-8", "replace").replace("\r\n", "\n")


def run_args(sandbox: SandboxProcess, *extra: str) -> list[str | Path]:
    return [
        "run", SAMPLE / "orders.csv", "-m", SAMPLE / "map.yaml",
        "--endpoint", sandbox.endpoint(), "--rate", "0", *extra,
    ]  # fmt: skip


def test_on_a_terminal_the_plan_is_shown_and_no_sends_nothing(
    sandbox: SandboxProcess, tmp_path: Path
) -> None:
    code, screen = run_on_terminal(run_args(sandbox), tmp_path, "n")
    assert PROMPT in screen
    assert "About to send 2,632 events" in screen
    assert "orders from 2024-01-01 06:00:24 UTC to 2024-12-31 18:21:32 UTC" in screen
    assert f"to {sandbox.endpoint()} (torque-v1)" in screen
    assert "72 rows fail (to the report), 296 filtered out, 0 sent before" in screen
    assert "Nothing was sent." in screen
    assert code == 0
    assert sandbox.stats()["accepted"] == 0
    assert sandbox.events() == []
    assert not (tmp_path / "orders.csv.failures.jsonl").exists()  # not even a report


def test_on_a_terminal_yes_sends(sandbox: SandboxProcess, tmp_path: Path) -> None:
    code, screen = run_on_terminal(run_args(sandbox), tmp_path, "y")
    assert PROMPT in screen
    assert code == 1, screen  # the sample's 72 bad rows
    assert sandbox.stats()["accepted"] == 2632


@pytest.mark.parametrize("flag", ["--yes", "--sandbox"])
def test_on_a_terminal_yes_or_sandbox_skip_the_question(
    sandbox: SandboxProcess, tmp_path: Path, flag: str
) -> None:
    args = run_args(sandbox, flag)
    code, screen = run_on_terminal(args, tmp_path, None)
    assert PROMPT not in screen and "About to send" not in screen
    assert code == 1, screen
    if flag == "--yes":
        assert sandbox.stats()["accepted"] == 2632


def test_without_a_terminal_nothing_is_asked_and_nothing_waits(
    sandbox: SandboxProcess, tmp_path: Path
) -> None:
    """stdin is a pipe that stays open and never says anything: a question would hang."""
    process = subprocess.Popen(
        [sys.executable, "-m", "backfill", *map(str, run_args(sandbox, "--json"))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
        env=cli_env(),
        text=True,
    )
    try:
        out, err = process.communicate(timeout=DEADLINE)
    finally:
        if process.poll() is None:
            process.kill()
    assert PROMPT not in err and "About to send" not in err
    assert process.returncode == 1
    assert json.loads(out)["accepted"] == 2632
    assert sandbox.stats()["accepted"] == 2632


def test_rerun_on_a_terminal_asks_too(
    cli: Callable[..., CliResult],
    sandbox: SandboxProcess,
    tmp_path: Path,
    sample_outcome: SampleOutcome,
) -> None:
    wrong = write_sample_mapping(tmp_path / "wrong.yaml", true_words=("premium",))
    report = tmp_path / "failed.jsonl"
    validated = cli("validate", SAMPLE / "orders.csv", "-m", wrong, "--report", report)
    assert validated.code == 1
    fixed = len(sample_outcome.rows_with_tier("gold"))
    args = ["rerun", report, "-m", SAMPLE / "map.yaml", "--endpoint", sandbox.endpoint()]
    code, screen = run_on_terminal(args, tmp_path, "n")
    assert PROMPT in screen
    assert f"About to send {fixed:,} events again" in screen
    assert code == 0 and sandbox.stats()["accepted"] == 0
