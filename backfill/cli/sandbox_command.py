"""`backfill sandbox`: the sandbox's own command line, under the `backfill` group."""

from __future__ import annotations

import click

from backfill.cli.app import cli


@cli.command(
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    add_help_option=False,
)
@click.argument("options", nargs=-1, type=click.UNPROCESSED)
def sandbox(options: tuple[str, ...]) -> None:
    """A local Torque-compatible endpoint, to rehearse a backfill before production.

    Takes the same options as `python -m backfill.sandbox` (see `backfill sandbox --help`):
    --port, --mapping, --key, --rate, faults, --latency, --capacity, --tls-cert/--tls-key,
    --redirect-to.
    """
    from backfill.sandbox.command import main as sandbox_main

    sandbox_main(list(options), prog="backfill sandbox")
