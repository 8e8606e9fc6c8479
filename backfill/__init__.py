"""backfill: replay historical orders into Torque's custom events API.

The library API, for notebooks and scripts (the CLI is a thin layer over it):

    from backfill import load_mapping, read_source, validate, preview
"""

from __future__ import annotations

from backfill._exports import install_moved_module_finder, lazy_exports

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
    "EventMapper": "backfill.mapping.events",
    "load_mapping": "backfill.mapping.spec",
    "mapping_from_dict": "backfill.mapping.spec",
    "preview": "backfill.look.validate",
    "read_report": "backfill.books.report",
    "read_source": "backfill.read.source",
    "validate": "backfill.look.validate",
}

# Lazy: `import backfill` stays cheap, so `backfill --help` starts fast.
__getattr__ = lazy_exports(__name__, _EXPORTS)
install_moved_module_finder()
