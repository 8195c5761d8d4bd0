"""The notebooks: in sync with their sources, stripped of outputs, and running without error.

Each notebook's code cells are run in order as one script in a fresh interpreter (the
venv's), with ``MPLBACKEND=Agg`` and warnings turned into errors, in a temporary directory;
a cell that raises fails the test. (No Jupyter kernel is needed: the notebooks use no
magics or display-only syntax.) OpenBLAS is limited to one thread: the matrices are small,
and on two cores its threads only contend with each other and with the other test worker.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
ALL = sorted(NOTEBOOKS.glob("[0-9]*.ipynb"))
BUDGET = 60.0  # seconds per notebook


def _load_build():
    spec = importlib.util.spec_from_file_location("_notebooks_build", NOTEBOOKS / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_there_are_notebooks():
    names = {p.name for p in ALL}
    assert {
        "05_training_digits.ipynb",
        "06_soft_margin_svm.ipynb",
        "07_sobolev_training.ipynb",
        "04_function_layers.ipynb",
        "09_gradients_of_expectations.ipynb",
        "10_bayesian_inference.ipynb",
    } <= names


def test_notebooks_match_their_sources():
    build = _load_build()
    assert build.main(["--check"]) == 0, "run: python notebooks/build.py"
    sources = {src.stem for src, _ in build.targets()}
    assert sources == {p.stem for p in ALL}, "every notebook is built from notebooks/src/"


@pytest.mark.parametrize("path", ALL, ids=[p.stem for p in ALL])
def test_notebook_is_stripped(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    assert nb["nbformat"] == 4
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    assert nb["cells"] and nb["cells"][0]["cell_type"] == "markdown"
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None


@pytest.mark.parametrize("path", ALL, ids=[p.stem for p in ALL])
def test_notebook_runs(path, tmp_path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    cells = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    script = tmp_path / f"{path.stem}.py"
    script.write_text(
        "\n\n".join(f"# ---- cell {i}\n{src}" for i, src in enumerate(cells)) + "\n",
        encoding="utf-8",
    )
    env = {**os.environ, "MPLBACKEND": "Agg", "OPENBLAS_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-W", "error", str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=3 * BUDGET,
        check=False,
    )
    seconds = time.perf_counter() - t0
    assert proc.returncode == 0, (
        f"{path.name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    )
    assert seconds < BUDGET, f"{path.name} took {seconds:.0f} s (budget {BUDGET:.0f} s)"
