"""The `backfill` command: a thin layer that turns options into library calls and
library outcomes into messages and exit codes. The only package that prints or exits.

- `app`: the command group and the environment it reads;
- `options`: the options several commands share;
- `look_commands`: init, validate, preview, plan, schema (nothing is sent);
- `run_commands`: run and rerun; `sending`: from options to a running pipeline;
- `sandbox_command`: `backfill sandbox`;
- `output`: messages, the progress bar, the summary and the exit codes;
- `crash`: an unexpected exception said to be a bug, its traceback in a file, exit 70.

Heavy imports (pandas, pyarrow, aiohttp) happen inside the commands, so `--help` is quick.
"""

from __future__ import annotations

from backfill.cli import look_commands, run_commands, sandbox_command  # noqa: F401 (registers)
from backfill.cli.app import cli

__all__ = ["cli", "main"]


def main() -> None:
    """The entry point: click handles usage errors and ^C; anything else is a bug."""
    try:
        cli()
    except Exception as error:  # the one place that catches everything
        from backfill.cli.crash import report_crash

        report_crash(error)
