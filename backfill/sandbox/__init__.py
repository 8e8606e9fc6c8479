"""A local Torque-compatible server: rehearse a backfill, test the sender, break it on purpose.

- `server`: the server, answering as Torque does; `replies`: its answers;
- `faults`: what it breaks on purpose; `schemas`: what it accepts; `config`: its set-up;
  `traffic`: what it saw, for `stats()`;
- `command`: its command line, shared by `backfill sandbox` and `python -m backfill.sandbox`.

Used only by the CLI and the tests.
"""

from __future__ import annotations

from backfill._exports import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, Sandbox=".server", SandboxConfig=".config")
