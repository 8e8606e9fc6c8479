"""The sandbox's command line: one definition of its options, for `backfill sandbox` and
`python -m backfill.sandbox` alike (faults, latency, capacity, TLS, redirects).

It prints `listening on URL` when ready and the final stats as one JSON line when stopped
(SIGINT or SIGTERM): tests read both.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from backfill.errors import BackfillError
from backfill.sandbox.config import RETRY_AFTER_FORMATS, SandboxConfig
from backfill.sandbox.faults import LATENCY_JITTER, NAMED_FAULTS
from backfill.sandbox.schemas import _schemas_from_json, schema_from_mapping
from backfill.sandbox.server import serve
from backfill.send.event_loop import event_loop_runner


def _fault(text: str) -> tuple[str, float]:
    kind, sep, probability = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected KIND=PROBABILITY, found {text!r}")
    try:
        return kind, float(probability)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{probability!r} is not a probability") from None


def parser(prog: str = "python -m backfill.sandbox") -> argparse.ArgumentParser:
    """Every option of the sandbox, in one place."""
    p = argparse.ArgumentParser(
        prog=prog,
        description="A local Torque-compatible endpoint, to rehearse a backfill before "
        "production and to break it on purpose in tests.",
    )
    add = p.add_argument
    add("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    add("--port", type=int, default=8787, help="port (default: 8787; 0 picks a free one)")
    add("--store", type=Path, help="append accepted events to this JSON Lines file")
    add("--key", help="accept only this API key (default: any non-empty key)")
    add(
        "--mapping",
        type=Path,
        action="append",
        default=[],
        help="accept only this mapping's event and fields (repeatable)",
    )
    add("--schema-json", help='accepted events as JSON: [{"event_name", "fields", "required"}]')
    add("--rate", type=float, help="answer 429 above this many accepted events per second")
    add(
        "--retry-after-format",
        choices=RETRY_AFTER_FORMATS,
        default="seconds",
        help="Retry-After as seconds or as an HTTP date (default: seconds)",
    )
    add(
        "--fault",
        type=_fault,
        action="append",
        default=[],
        metavar="KIND=P",
        help=f"inject a fault with probability P: an HTTP status (400-599) or one of "
        f"{', '.join(NAMED_FAULTS)} (repeatable)",
    )
    add("--fail-rate", type=float, default=0.0, help="shorthand for --fault 503=P")
    add("--fault-first-n", type=int, default=0, help="faults hit only the first N requests")
    add("--fault-retry-after", type=int, help="Retry-After seconds of injected 429s and 5xx")
    add("--slow-seconds", type=float, default=2.0, help="how long a `slow` fault takes")
    add("--seed", type=int, default=0, help="the faults' random seed")
    add(
        "--latency",
        type=float,
        default=0.0,
        help=f"seconds each answer takes (± {LATENCY_JITTER * 100:.0f}%% jitter)",
    )
    add(
        "--capacity",
        type=int,
        help="requests in flight it serves at full speed; beyond, answers slow in proportion",
    )
    add("--tls-cert", type=Path, help="serve HTTPS with this certificate chain (PEM)")
    add("--tls-key", type=Path, help="...and this private key (PEM)")
    add("--redirect-to", help="answer every event with a redirect to this base URL")
    add("--redirect-status", type=int, default=307, help="the redirect's status (default: 307)")
    return p


def config_from(args: argparse.Namespace) -> SandboxConfig:
    from backfill.mapping.spec import load_mapping

    schemas = _schemas_from_json(args.schema_json) if args.schema_json else ()
    schemas += tuple(schema_from_mapping(load_mapping(path), None) for path in args.mapping)
    return SandboxConfig(
        host=args.host,
        port=args.port,
        key=args.key,
        schemas=schemas,
        rate=args.rate or None,
        retry_after_format=args.retry_after_format,
        fail_rate=args.fail_rate,
        faults=dict(args.fault),
        slow_seconds=args.slow_seconds,
        fault_first_n=args.fault_first_n,
        seed=args.seed,
        store=args.store,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        redirect_to=args.redirect_to,
        redirect_status=args.redirect_status,
        fault_retry_after=args.fault_retry_after,
        latency=args.latency,
        capacity=args.capacity,
    )


def main(argv: Sequence[str] | None = None, prog: str = "python -m backfill.sandbox") -> None:
    command = parser(prog)
    args = command.parse_args(argv)
    try:
        config = config_from(args)
    except BackfillError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        sys.exit(2)
    except (ValueError, KeyError, TypeError) as exc:
        command.error(f"invalid sandbox settings: {exc}")  # exits 2 with the usage line

    def ready(url: str) -> None:
        print(f"listening on {url}", flush=True)  # tests read the URL as the last word

    try:
        stats = serve(config, ready, event_loop_runner())
    except BackfillError as exc:  # e.g. a certificate that cannot be loaded
        print(f"Error: {exc}", file=sys.stderr)
        sys.exit(2)
    print(json.dumps(stats), flush=True)
