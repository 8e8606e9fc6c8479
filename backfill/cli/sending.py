"""From options to a run: the target and its checks, the event loop, signals, the summary."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import click

from backfill.cli.app import API_KEY_ENV, BACKOFF_BASE_ENV, SANDBOX_KEY
from backfill.cli.options import sending_rate
from backfill.cli.output import exit_code, print_summary, progress_bar, user_errors

if TYPE_CHECKING:
    from backfill.pipeline.run import Progress, RunPlan, RunSummary
    from backfill.pipeline.target import Target


def build_target(sending: dict[str, Any]) -> Target:
    """Endpoint, key and policy from the options; `Target` refuses what would leak the key."""
    from backfill.mapping.envelopes import get_api
    from backfill.pipeline.target import Target
    from backfill.send.sender import SendPolicy

    api = get_api(sending["api_name"])
    key = os.environ.get(API_KEY_ENV, "")
    if not key and sending["sandbox"]:
        key = SANDBOX_KEY
    endpoint = sending["endpoint"] or api.default_endpoint
    if sending["sandbox"]:  # the sandbox's own URL replaces it once the sandbox is up
        endpoint = api.default_endpoint
    else:  # Target checks them again itself, for library callers
        check_endpoint(endpoint, sending["allow_insecure"])
        check_network(endpoint)
    from backfill.send.gate import AUTO_CAP

    fixed = sending["concurrency"]
    policy = SendPolicy(
        rate=sending_rate(sending),
        concurrency=AUTO_CAP if fixed is None else fixed,
        adaptive=fixed is None,
        max_retries=sending["max_retries"],
        timeout=sending["timeout"],
        rate_limit_budget=sending["rate_limit_budget"],
        backoff_base=_backoff_base(SendPolicy.backoff_base),
    )
    return Target(
        api=api,
        endpoint=endpoint,
        api_key=key,
        policy=policy,
        allow_insecure=sending["allow_insecure"],
        rehearsal=sending["sandbox"],
    )


def _backoff_base(default: float) -> float:
    """BACKFILL_BACKOFF_BASE: the first retry's backoff ceiling in seconds (tests shorten it)."""
    from backfill.errors import UsageError

    text = os.environ.get(BACKOFF_BASE_ENV, "").strip()
    if not text:
        return default
    try:
        base = float(text)
    except ValueError:
        base = -1.0
    if not 0 < base < float("inf"):
        raise UsageError(f"{BACKOFF_BASE_ENV}={text!r} must be a positive number of seconds.")
    return base


def check_endpoint(endpoint: str, allow_insecure: bool) -> None:
    """Kept for callers of the CLI module; the check lives in `backfill.pipeline.target`."""
    from backfill.pipeline.target import check_endpoint as check

    check(endpoint, allow_insecure)


def check_network(endpoint: str) -> None:
    """Proxy and CA settings that cannot work are refused before anything is written."""
    from backfill.send.route import route_for, ssl_context

    route_for(endpoint)
    if urlsplit(endpoint).scheme == "https":
        ssl_context()


def sandbox_schema(mapping: Any, source: Any) -> Any:
    from backfill.sandbox.schemas import schema_from_mapping

    return schema_from_mapping(mapping, source)


def execute(
    plan: RunPlan,
    target: Target,
    sending: dict[str, Any],
    schema: Any,
    *,
    exit_when_done: bool = True,
) -> RunSummary:
    """Run the plan with a progress bar and Ctrl-C handling; print the summary."""
    show_bar = not sending["quiet"] and not sending["as_json"] and sys.stderr.isatty()
    with progress_bar(plan.total_rows, show_bar) as on_progress, user_errors():
        from backfill.send.event_loop import event_loop_runner

        run_loop = event_loop_runner()
        _tune_interpreter_for_sending()
        summary, sandbox_stats = run_loop(
            _execute(plan, target, sending["sandbox"], schema, on_progress)
        )
    if sending["as_json"]:
        data = summary.as_dict()
        if sandbox_stats is not None:
            data["sandbox"] = sandbox_stats
        click.echo(json.dumps(data))
    else:
        print_summary(summary, sandbox_stats)
    if exit_when_done:
        sys.exit(exit_code(summary))
    return summary


GC_THRESHOLDS = (50_000, 20, 100)  # a young collection per 50,000 objects, not per 700


GIL_SWITCH_SECONDS = 0.0005  # the reader's thread hands the interpreter back this often


def _tune_interpreter_for_sending() -> None:
    """The sending loop's thread must not stall: at 5000/s a 30 ms stall loses tokens.

    - The modules loaded so far (pandas, pyarrow...) live as long as the process: frozen,
      a full garbage collection no longer walks them all (it stalled sending up to 50 ms).
    - With 1,400 requests in flight, Python's default of a collection per 700 new objects
      ran one every few hundred requests, 10-25 ms each; 5000/s at 250 ms held 0.95 × over
      30 s, and 0.97-0.98 × with fewer, larger ones (and the switch below).
    - While the reader's thread maps a chunk, the loop's thread waits for the interpreter
      lock each time it gave it up (every poll of its sockets): up to 5 ms by default, 0.5
      here (docs/benchmarks.md, "5000/s far away")."""
    import gc

    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    sys.setswitchinterval(GIL_SWITCH_SECONDS)


async def _execute(
    plan: RunPlan,
    target: Target,
    use_sandbox: bool,
    schema: Any,
    on_progress: Callable[[Progress], None] | None,
) -> tuple[RunSummary, dict[str, Any] | None]:
    """The run, inside a sandbox started for it when asked, on this same event loop."""
    import dataclasses

    from backfill.pipeline.run import Run

    def notice(text: str) -> None:
        click.echo(f"\n{text}", err=True)

    if not use_sandbox:
        run = Run(plan, target, on_progress=on_progress, on_notice=notice)
        return await _run_with_signals(run), None
    from backfill.sandbox.config import SandboxConfig
    from backfill.sandbox.server import Sandbox

    config = SandboxConfig(port=0, key=target.api_key, schemas=(schema,) if schema else ())
    async with Sandbox(config) as sandbox:
        local = dataclasses.replace(target, endpoint=sandbox.url + target.api.path)
        summary = await _run_with_signals(
            Run(plan, local, on_progress=on_progress, on_notice=notice)
        )
        return summary, sandbox.stats()


async def _run_with_signals(run: Any) -> RunSummary:
    """First Ctrl-C or SIGTERM: finish what is in flight and stop. Second: stop now."""
    import asyncio
    import signal

    loop = asyncio.get_running_loop()
    interrupts = 0

    def on_signal() -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts == 1:
            click.echo(
                "\nStopping: finishing requests in flight (Ctrl-C again to stop now)...",
                err=True,
            )
            run.request_stop()
        else:
            run.abort()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        return await run.execute()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
