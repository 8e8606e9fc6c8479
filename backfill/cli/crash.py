"""A crash is a bug in backfill, not the user's mistake: say so, keep the traceback in a
file for the report, and end with exit code 70 (EX_SOFTWARE), never 1 ("some rows failed").
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

import click

from backfill.cli.output import EXIT_BUG

SECRET_VARIABLES = ("TORQUE_API_KEY",)


def report_crash(error: BaseException) -> None:
    """Write the traceback (without secrets) to a file, say where, and exit 70."""
    text = "".join(traceback.format_exception(error))
    text = f"backfill {_version()}, Python {sys.version.split()[0]}\n{_without_secrets(text)}"
    where = _write(text)
    saved = f"the traceback is in {where}" if where else "the traceback could not be saved"
    click.echo(
        f"Error: this is a bug in backfill, please report it with the command you ran and "
        f"that file; {saved}. {type(error).__name__}: {_without_secrets(str(error))[:200]}",
        err=True,
    )
    sys.exit(EXIT_BUG)


def _write(text: str) -> Path | None:
    """A new file only the user can read (a traceback may hold rows' values), never one
    that stands at that name already (a link someone else put in the shared folder)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(tempfile.gettempdir()) / f"backfill-crash-{stamp}-{os.getpid()}.txt"
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with open(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
    except OSError:
        return None
    return path


def _without_secrets(text: str) -> str:
    for name in SECRET_VARIABLES:
        secret = os.environ.get(name)
        if secret:
            text = text.replace(secret, "***")
    return text


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("backfill")
    except PackageNotFoundError:
        return "(not installed)"
