"""The documentation lists every supported NumPy function and every public name is documented."""

from __future__ import annotations

import pathlib
import types

import autodiffx as ad

DOC = (pathlib.Path(__file__).parents[1] / "docs" / "conventions.md").read_text()


def test_every_numpy_override_is_listed_in_the_docs():
    missing = []
    for f in ad.numpy_overrides():
        name = f.__name__
        if getattr(f, "__module__", "").startswith("numpy.linalg"):
            name = f"linalg.{name}"
        if f"`{name}`" not in DOC:
            missing.append(name)
    assert not missing, f"add these NumPy functions to docs/conventions.md: {sorted(missing)}"


def test_every_public_name_has_a_docstring_with_an_example():
    undocumented = []
    for name in ad.__all__:
        obj = getattr(ad, name)
        if isinstance(obj, types.ModuleType):
            continue
        doc = getattr(obj, "__doc__", None) or ""
        if "Examples" not in doc or ">>>" not in doc:
            undocumented.append(name)
    assert not undocumented, f"public names without a docstring: {undocumented}"


def test_readme_example_runs(capsys):
    import re

    readme = (pathlib.Path(__file__).parents[1] / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    exec(compile(code, "README.md", "exec"), {})
    assert "11.652" in capsys.readouterr().out


def test_the_table_of_supported_functions_is_generated_from_the_registry():
    from autodiffx import _doctable

    assert _doctable.updated(DOC) == DOC, (
        f"docs/conventions.md's table of supported functions is stale: run `{_doctable.COMMAND}`"
    )
    rows = _doctable.rows()
    assert ("`numpy.sin`", "`ad.sin`", "elementwise", "VJP and JVP") in rows
    assert ("`numpy.linalg.solve`", "`ad.linalg.solve`", "general", "VJP and JVP") in rows
    assert ("`numpy.rint`", "`ad.rint`", "zero", "zero (piecewise constant)") in rows
    assert ("`numpy.isnan`", "`ad.isnan`", "none", "not differentiable") in rows
    assert all(r[1] != "—" for r in rows if r[0] == "—"), "a registry-only row names no function"
