"""The arrows of docs/design.md hold in the code: each sub-package of backfill imports only
from the packages its row of the table names (and `errors`, `_exports`), so no arrow points
up and no import cycle between packages can form."""

from __future__ import annotations

import ast
import re

from conftest import ROOT

PACKAGE_DIR = ROOT / "backfill"
ALWAYS_ALLOWED = {"errors", "_exports"}
ROW = re.compile(r"^\| `(\w+)` \| (.+?) \|$", re.M)


def documented_arrows() -> dict[str, set[str]]:
    """The design page's table: package -> the packages it may import from."""
    text = (ROOT / "docs" / "design.md").read_text(encoding="utf-8")
    rows = ROW.findall(text[text.index("## The arrows") :])
    packages = {package for package, _ in rows}
    arrows = {}
    for package, uses in rows:
        named = set(re.findall(r"`(\w+)`", re.sub(r"\(.*?\)", "", uses)))
        arrows[package] = packages - {package} if "all of the above" in uses else named & packages
    return arrows


def imported_packages(package: str) -> set[str]:
    """The backfill packages (first name under backfill.) that any module of `package` imports."""
    found = set()
    for module in (PACKAGE_DIR / package).rglob("*.py"):
        for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                parts = name.split(".")
                if parts[0] == "backfill" and len(parts) > 1 and parts[1] != package:
                    found.add(parts[1])
    return found


def test_the_table_names_every_sub_package() -> None:
    packages = {path.parent.name for path in PACKAGE_DIR.glob("*/__init__.py")}
    assert set(documented_arrows()) == packages


def test_each_package_imports_only_what_the_design_page_allows() -> None:
    upward = {
        package: sorted(imported_packages(package) - allowed - ALWAYS_ALLOWED)
        for package, allowed in documented_arrows().items()
    }
    assert {package: names for package, names in upward.items() if names} == {}


def test_the_arrows_form_no_cycle() -> None:
    arrows = documented_arrows()
    done: set[str] = set()

    def visit(package: str, path: tuple[str, ...]) -> None:
        assert package not in path, f"cycle: {' -> '.join((*path, package))}"
        if package not in done:
            for used in arrows[package]:
                visit(used, (*path, package))
            done.add(package)

    for package in arrows:
        visit(package, ())


def test_the_import_scan_sees_real_imports() -> None:
    assert "read" in imported_packages("mapping")  # from backfill.read.source import ...
    assert "pipeline" in imported_packages("look")  # explore: a report's records as a table
    assert "cli" not in documented_arrows()["read"]
