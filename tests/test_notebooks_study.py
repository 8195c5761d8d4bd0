"""Notebooks 01–03 (evaluation trace, AD vs finite differences, approximate or differentiate).

They are built like the others (``notebooks/src/NN_name.py`` in percent format, by
``notebooks/build.py``), and ``tests/test_notebooks.py`` runs every notebook as one script.
Here each of the three also runs the way a kernel shows it: code cells in order in one
namespace, in a fresh process with matplotlib's Agg backend and warnings as errors, and the
value of a cell's last expression displayed (``_repr_html_`` included, which a plain script
never calls); a failing cell fails the test and is named. ``NB_FIG_DIR=dir`` also saves every
figure there as a PNG, to look at them.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = [
    "01_evaluation_trace.ipynb",
    "02_ad_vs_finite_differences.ipynb",
    "03_approximate_or_differentiate.ipynb",
]

RUNNER = r"""
import ast, builtins, json, os, pathlib, sys, traceback
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

path = pathlib.Path(sys.argv[1])
fig_dir = os.environ.get("NB_FIG_DIR")


def display(*objs):
    for obj in objs:
        html = getattr(obj, "_repr_html_", None)
        if callable(html):
            assert isinstance(html(), str)
        print(repr(obj))


builtins.display = display
ns = {"__name__": "__main__"}
notebook = json.loads(path.read_text(encoding="utf-8"))
cells = [c for c in notebook["cells"] if c["cell_type"] == "code"]
for i, cell in enumerate(cells, 1):
    src = "".join(cell["source"])
    try:
        tree = ast.parse(src, filename=f"<cell {i}>")
        last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
        exec(compile(tree, f"<cell {i}>", "exec"), ns)
        if last is not None:
            value = eval(compile(ast.Expression(last.value), f"<cell {i}>", "eval"), ns)
            if value is not None and not src.rstrip().endswith(";"):
                display(value)
    except BaseException:
        traceback.print_exc()
        print(f"\n{path.name}: code cell {i} failed:\n{src}", file=sys.stderr)
        sys.exit(1)
    for k, num in enumerate(plt.get_fignums()):
        if fig_dir:
            plt.figure(num).savefig(pathlib.Path(fig_dir) / f"{path.stem}_cell{i}_{k}.png", dpi=80)
    plt.close("all")
print(f"{path.name}: {len(cells)} code cells ran")
"""


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs(name: str, tmp_path: pathlib.Path) -> None:
    pytest.importorskip("matplotlib")
    path = ROOT / "notebooks" / name
    env = {
        **os.environ,
        "MPLBACKEND": "Agg",
        "OPENBLAS_NUM_THREADS": "1",
        "PYTHONIOENCODING": "utf-8",
    }
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-W", "error", "-c", RUNNER, str(path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
    )
    elapsed = time.perf_counter() - start
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    assert elapsed < 60, f"{name} took {elapsed:.1f} s (budget 60 s)"


def test_built_from_sources_and_in_sync() -> None:
    spec = importlib.util.spec_from_file_location("_nb_build", ROOT / "notebooks" / "build.py")
    assert spec is not None and spec.loader is not None
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    for name in NOTEBOOKS:
        src = ROOT / "notebooks" / "src" / name.replace(".ipynb", ".py")
        expected = build.render(build.notebook_of(src.read_text(encoding="utf-8"), src.stem))
        built = (ROOT / "notebooks" / name).read_text(encoding="utf-8")
        assert built == expected, f"{name} is stale: run python notebooks/build.py"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_outputs_are_stripped(name: str) -> None:
    nb = json.loads((ROOT / "notebooks" / name).read_text(encoding="utf-8"))
    assert nb["nbformat"] == 4
    assert nb["cells"][0]["cell_type"] == "markdown"
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None
