"""Every notebook in notebooks/ runs top to bottom in a fresh kernel, and its plots render.

The kernel must be this interpreter (the venv's), not whatever `python` is first on PATH:
a kernelspec pointing at `sys.executable` is installed into a temporary prefix and put
first on JUPYTER_PATH, and the notebook itself is asked which Python and which `backfill`
it ran. Plots render headless (MPLBACKEND=Agg; the notebooks use `%matplotlib inline`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

# The notebook tools come with the `dev` extra, not `test`: without them this file skips.
nbformat = pytest.importorskip("nbformat", reason="the notebook tools are in the dev extra")
nbclient = pytest.importorskip("nbclient", reason="the notebook tools are in the dev extra")
kernelspec = pytest.importorskip(
    "jupyter_client.kernelspec", reason="the notebook tools are in the dev extra"
)
pytest.importorskip("ipykernel", reason="the notebook tools are in the dev extra")

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
KERNEL = "python3"
WHICH_PYTHON = (
    "import json, sys, backfill\n"
    "print(json.dumps({'prefix': sys.prefix, 'backfill': backfill.__file__}))"
)


@pytest.fixture
def venv_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A `python3` kernelspec that starts this very interpreter; its name."""
    from ipykernel.kernelspec import install

    prefix = tmp_path / "jupyter"
    install(kernel_name=KERNEL, prefix=str(prefix))
    monkeypatch.setenv("JUPYTER_PATH", str(prefix / "share" / "jupyter"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # where a notebook's tempfile writes go
    spec = kernelspec.KernelSpecManager().get_kernel_spec(KERNEL)
    assert spec.argv[0] == sys.executable, spec.argv
    return KERNEL


def execute(path: Path, kernel: str) -> nbformat.NotebookNode:
    notebook = nbformat.read(path, as_version=4)
    notebook.cells.append(nbformat.v4.new_code_cell(WHICH_PYTHON))
    client = nbclient.NotebookClient(
        notebook, timeout=300, kernel_name=kernel, resources={"metadata": {"path": str(ROOT)}}
    )
    client.execute()  # raises CellExecutionError, with the cell and traceback, on any error
    return notebook


def has_image(cell: nbformat.NotebookNode) -> bool:
    return any("image/png" in output.get("data", {}) for output in cell.get("outputs", []))


def test_there_are_notebooks() -> None:
    assert NOTEBOOKS, f"no notebooks in {NOTEBOOK_DIR}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom_with_plots(path: Path, venv_kernel: str) -> None:
    notebook = execute(path, venv_kernel)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]

    errors = [out for cell in code for out in cell.outputs if out.output_type == "error"]
    assert errors == []
    plotting = [cell for cell in code if "plt.show()" in cell.source]
    assert plotting, f"{path.name} draws no plot"
    assert [cell.source for cell in plotting if not has_image(cell)] == []
    printed = [out.text for out in code[-1].outputs if out.get("name") == "stdout"]
    ran = json.loads(printed[-1])
    assert ran["prefix"] == sys.prefix  # the venv's kernel, not another Python on PATH
    assert Path(ran["backfill"]).resolve().parent == ROOT / "backfill"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_stored_without_outputs(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)

    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert [cell.source for cell in code if cell.outputs or cell.execution_count] == []
    assert notebook.metadata.kernelspec.name == KERNEL


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_described_in_the_readme(path: Path) -> None:
    assert path.name in (NOTEBOOK_DIR / "README.md").read_text(encoding="utf-8")
