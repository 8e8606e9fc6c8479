"""backfill: replay historical orders into Torque's custom events API.

The library API, for notebooks and scripts (the CLI is a thin layer over it):

    from backfill import load_mapping, read_source, validate, preview
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = [
    "BackfillError",
    "EventMapper",
    "load_mapping",
    "mapping_from_dict",
    "preview",
    "read_report",
    "read_source",
    "validate",
]

_EXPORTS = {
    "BackfillError": "backfill.errors",
    "EventMapper": "backfill.events",
    "load_mapping": "backfill.mapping",
    "mapping_from_dict": "backfill.mapping",
    "preview": "backfill.offline",
    "read_report": "backfill.report",
    "read_source": "backfill.source",
    "validate": "backfill.offline",
}


def __getattr__(name: str) -> Any:
    """Lazy exports: `import backfill` stays cheap, so `backfill --help` starts fast."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'backfill' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_EXPORTS[name]), name)
