"""backfill: replay historical orders into Torque's custom events API.

The library API, for notebooks and scripts (the CLI is a thin layer over it):

    from backfill import load_mapping, read_source, validate, preview
"""

from __future__ import annotations

from backfill._exports import install_moved_module_finder, lazy_exports

__version__ = "0.1.0"
_EXPORTS = {
    "BackfillError": ".errors",
    "EventMapper": ".mapping.events",
    "load_mapping": ".mapping.spec",
    "mapping_from_dict": ".mapping.spec",
    "preview": ".look.validate",
    "read_report": ".books.report",
    "read_source": ".read.source",
    "validate": ".look.validate",
}

# Lazy: `import backfill` stays cheap, so `backfill --help` starts fast.
__all__, __getattr__ = lazy_exports(__name__, **_EXPORTS)
install_moved_module_finder()
