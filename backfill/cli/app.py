"""The `backfill` command group and the settings it reads from the environment."""

from __future__ import annotations

import click

API_KEY_ENV = "TORQUE_API_KEY"
ENDPOINT_ENV = "TORQUE_ENDPOINT"
BACKOFF_BASE_ENV = "BACKFILL_BACKOFF_BASE"
SANDBOX_KEY = "sandbox-key"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="backfill")
def cli() -> None:
    """Replay historical orders into Torque's custom events API.

    Start with `backfill validate` (nothing is sent), rehearse with `backfill run
    --sandbox`, then run for real with TORQUE_API_KEY set.
    """
