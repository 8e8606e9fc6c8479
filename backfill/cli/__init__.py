"""The `backfill` command: a thin layer that turns options into library calls and
library outcomes into messages and exit codes. The only package that prints or exits.

- `app`: the command group and the environment it reads;
- `options`: the options several commands share;
- `look_commands`: init, validate, preview, plan, schema (nothing is sent);
- `run_commands`: run and rerun; `sending`: from options to a running pipeline;
- `sandbox_command`: `backfill sandbox`;
- `output`: messages, the progress bar, the summary and the exit codes.

Heavy imports (pandas, pyarrow, aiohttp) happen inside the commands, so `--help` is quick.
"""

from __future__ import annotations

from backfill.cli import look_commands, run_commands, sandbox_command  # noqa: F401 (registers)
from backfill.cli.app import cli

__all__ = ["cli", "main"]


def main() -> None:
    cli()
