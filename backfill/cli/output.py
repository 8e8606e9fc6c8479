"""What a command says and how it ends: error lines, the progress bar, the run's summary,
and the exit codes (0 every row accepted or filtered; 1 some rows in the failure report;
2 a usage, mapping, source or key error, nothing sent; 3 the report or journal could not be
written, continue with --resume; 70 a bug in backfill, the traceback in a file; 130
interrupted)."""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from backfill.pipeline.run import Progress, RunSummary


EXIT_OK, EXIT_ROWS_FAILED, EXIT_USAGE, EXIT_WRITE_FAILED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
EXIT_BUG = 70  # EX_SOFTWARE (sysexits.h): an exception backfill did not expect


WRITE_FAILED_HINT = (
    "Stopped with its records consistent: make room, then run the same command again "
    "(run, rerun: with --resume, which sends only the rest)"
)


@contextmanager
def user_errors() -> Iterator[None]:
    """A `BackfillError` is the user's to fix: one line on stderr and exit 2, no traceback."""
    from backfill.errors import BackfillError, RecordWriteError

    try:
        yield
        return
    except RecordWriteError as exc:  # disk full, file too large: the run stopped cleanly
        message, code = f"Error: {exc}. {WRITE_FAILED_HINT}", EXIT_WRITE_FAILED
    except BackfillError as exc:
        message, code = f"Error: {exc}", EXIT_USAGE
    # Out of the except block, the error's traceback and the frames it holds (an open source,
    # whose reader may have threads of its own) are gone before the interpreter shuts down;
    # what they held in cycles is collected now, while Arrow can still join its threads
    # (apache/arrow#45214: a reader thread alive at shutdown aborts the process).
    gc.collect()
    click.echo(message, err=True)
    sys.exit(code)


@contextmanager
def progress_bar(total: int | None, enabled: bool) -> Iterator[Callable[[Progress], None] | None]:
    if not enabled:
        yield None
        return
    from tqdm import tqdm

    bar = tqdm(total=total, unit="row", file=sys.stderr, dynamic_ncols=True, smoothing=0.1)

    def update(progress: Progress) -> None:
        bar.update(progress.done - bar.n)
        answer = "-" if progress.answer_ms is None else f"{_milliseconds(progress.answer_ms)}ms"
        bar.set_postfix(
            accepted=progress.accepted,
            failed=progress.failed,
            in_flight=progress.in_flight,
            answer=answer,
            refresh=False,
        )

    try:
        yield update
    finally:
        bar.close()


def print_summary(summary: RunSummary, sandbox_stats: dict[str, Any] | None) -> None:
    counts = summary.counts
    headline = {
        None: "Done.",
        "interrupted": "Interrupted.",
        "auth": "Stopped: the server refused the API key.",
        "unreachable": "Stopped: the endpoint cannot be reached; the rest was not sent.",
        "endpoint": f"Stopped: {summary.message}",
    }[summary.stopped]
    click.echo(headline)
    click.echo(f"  read          {counts.read:,}")
    click.echo(f"  accepted      {counts.accepted:,}")
    click.echo(f"  filtered      {counts.filtered:,}")
    click.echo(f"  failed        {counts.failed:,}")
    if counts.already_done:
        click.echo(f"  done before   {counts.already_done:,} (resumed)")
        click.echo(f"    of which failed, in the report: {counts.failed_before:,}")
    if counts.already_sent:
        click.echo(f"  already sent  {counts.already_sent:,} (ids in the ledger)")
    if counts.unsent:
        click.echo(f"  not sent      {counts.unsent:,}")
    if counts.uncertain:
        click.echo(
            f"  uncertain     {counts.uncertain:,} (sent again after a crash or a lost "
            f"answer; Torque may hold them twice: {summary.uncertain_path})"
        )
    click.echo(f"  retries       {counts.retries:,}")
    click.echo(
        f"  elapsed       {summary.elapsed:.1f} s ({summary.events_per_second:,.0f} events/s)"
    )
    network = summary.network
    if network.get("median_answer_ms") is not None:
        click.echo(
            f"  in flight     {network['peak_in_flight']:,} at most, "
            f"{_milliseconds(network['median_answer_ms'])} ms per answer (median)"
        )
    if network.get("concurrency_note"):
        click.echo(f"  {network['concurrency_note']}")
    for reason, count in counts.failed_by_reason.most_common(10):
        click.echo(f"    {count:,} × {reason}")
    if counts.failed or counts.failed_before:
        click.echo(f"Failure report: {summary.report_path}")
    if summary.stopped in ("auth", "unreachable"):
        click.echo(f"  {summary.message}")
    if summary.stopped is not None and summary.journal_path is not None:
        click.echo("To continue, run the same command again with --resume.")
    if sandbox_stats is not None:
        click.echo(
            f"Sandbox: {sandbox_stats['accepted']:,} events accepted, "
            f"{sandbox_stats['duplicates']:,} duplicates."
        )


def _milliseconds(value: float) -> str:
    """An answer time: tenths below 10 ms (a local sandbox answers in under one)."""
    return f"{value:.1f}" if value < 10 else f"{value:,.0f}"


def exit_code(summary: RunSummary) -> int:
    if summary.stopped in ("auth", "endpoint"):
        return EXIT_USAGE
    if summary.stopped == "interrupted":
        return EXIT_INTERRUPTED
    some_failed = summary.counts.failed or summary.counts.failed_before
    return EXIT_ROWS_FAILED if some_failed else EXIT_OK
