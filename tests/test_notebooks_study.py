"""Notebooks 01–03 (evaluation trace, AD vs finite differences, approximate or differentiate).

They are built like the others (``notebooks/src/NN_name.py`` in percent format, by
``notebooks/build.py``), and ``tests/test_notebooks.py`` runs every notebook in a Jupyter
kernel (displays included: notebook 01's trace tables must come out as HTML). Here: the
three are in sync with their sources and committed without outputs.
"""

from __future__ import annotations

import importlib.util
import json
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = [
    "01_evaluation_trace.ipynb",
    "02_ad_vs_finite_differences.ipynb",
    "03_approximate_or_differentiate.ipynb",
]


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
