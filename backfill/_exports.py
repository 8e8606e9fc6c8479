"""How a package names what others may use without importing it all up front, and where the
modules of the flat layout before 0.2 went (kept for one release, for notebooks and scripts)."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

# The flat layout's module paths that notebooks and user code import; removed in 0.3.
MOVED_MODULES = {
    "backfill.draft": "backfill.look.draft",
    "backfill.explore": "backfill.look.explore",
    "backfill.id_ledger": "backfill.books.id_ledger",
    "backfill.offline": "backfill.look.validate",
    "backfill.plan": "backfill.look.plan",
    "backfill.report": "backfill.books.report",
    "backfill.source": "backfill.read.source",
}


def lazy_exports(package: str, **exports: str) -> tuple[list[str], Callable[[str], Any]]:
    """`__all__` and a module `__getattr__` that imports each name's module (`exports[name]`,
    relative to `package`) on first use, so that importing a package stays cheap and no
    package imports another at load time."""

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(exports[name], package), name)

    return sorted(exports), __getattr__


class _MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers an old module path with the module at its new place (the same object)."""

    def find_spec(
        self, fullname: str, path: Any = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED_MODULES:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return importlib.import_module(MOVED_MODULES[spec.name])

    def exec_module(self, module: ModuleType) -> None:
        """The module ran at its new place already."""


def install_moved_module_finder() -> None:
    if not any(isinstance(finder, _MovedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.append(_MovedModuleFinder())
