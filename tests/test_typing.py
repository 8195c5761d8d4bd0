"""Types for editors: the generated stub is current, and ``mypy --strict`` reads the public API.

The mypy run covers ``tests/typecheck/tour.py`` (the README's tour, typed) and a snippet of
mistakes it must report. autodiffx is found through MYPYPATH (this tree), its own modules
analysed silently, as mypy treats an installed package; the cache lives in a temporary
directory.
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import pathlib
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import autodiffx as ad
from autodiffx import _stubgen
from autodiffx._registry import defprim

TOUR = pathlib.Path(__file__).parent / "typecheck" / "tour.py"
MISTAKES = """\
import autodiffx as ad

x = ad.tensor([1.0, 2.0])
ad.tensr([1.0])
ad.sin(x, x)
ad.logsumexp(x, keepdim=True)
ad.zeros(3, requires_gard=True)
ad.nn.Linear(4, 8, bais=False)
ad.optim.SGD(ad.nn.Linear(4, 8).parameters(), lr=0.1, momentun=0.9)
"""
MYPY_CONFIG = """\
[mypy]
strict = True
[mypy-autodiffx,autodiffx.*]
follow_imports = silent
"""


def test_committed_stub_is_current():
    committed = _stubgen.STUB.read_text()
    fresh = _stubgen.render()
    diff = "".join(
        difflib.unified_diff(
            committed.splitlines(True), fresh.splitlines(True), "committed", "generated", n=1
        )
    )
    assert committed == fresh, f"run `{_stubgen.COMMAND}`: the stub is out of date\n{diff[:3000]}"


def test_new_public_primitive_without_regenerating_fails_the_check(monkeypatch, capsys):
    p = defprim("cube", lambda x: x**3, derivs=(lambda x: 3 * x**2,), register=False)
    p.__doc__ = "Elementwise x**3."
    assert "def cube(x: ArrayLike) -> Tensor:\n" in _stub_with(monkeypatch, "cube", p)
    assert _stubgen.main(["--check"]) == 1
    assert "python -m autodiffx._stubgen" in capsys.readouterr().err


def _kernel(x, w, /, table, axis=None, keepdims=False, *, order: str = "C", **kw):
    return x


def _stub_with(monkeypatch, name, p):
    """The stub ``_stubgen.render()`` writes once ``p`` is public as ``ad.<name>``."""
    monkeypatch.setattr(ad, name, p, raising=False)
    monkeypatch.setattr(ad, "__all__", [*ad.__all__, name])
    return _stubgen.render()


def test_primitive_signature_comes_from_the_registry_entry(monkeypatch):
    p = defprim("op", _kernel, vjp=lambda *a: None, nondiff=(2,), nout=2, register=False)
    p.__doc__ = "An op."
    assert textwrap.dedent('''\
        def op(
            x: ArrayLike,
            w: ArrayLike,
            /,
            table: Any,
            axis: Any = ...,
            keepdims: bool = ...,
            *,
            order: str = ...,
            **kw: Any,
        ) -> tuple[Tensor, ...]:
            """An op."""''') in _stub_with(monkeypatch, "op", p)
    u = defprim("hyp", np.hypot, derivs=(None, None), argnames=("a", "b"), register=False)
    u.__doc__ = "Elementwise hypot."
    assert "def hyp(x1: ArrayLike, x2: ArrayLike, /) -> Tensor:" in _stub_with(
        monkeypatch, "hyp", u
    )


def test_a_name_without_a_module_level_home_is_refused(monkeypatch):
    monkeypatch.setattr(ad, "__all__", [*ad.__all__, "helper"])
    monkeypatch.setattr(ad, "helper", lambda x: x, raising=False)
    with pytest.raises(ValueError, match=r"autodiffx\.helper is not reachable as"):
        _stubgen.render()


@pytest.fixture(scope="module")
def mypy_report(tmp_path_factory):
    """mypy --strict's messages per checked file: the tour and the snippet of mistakes."""
    try:
        import mypy  # noqa: F401
    except ImportError:
        pytest.fail("mypy is missing: it is in the test extra (pip install -e '.[test]')")
    tmp = tmp_path_factory.mktemp("mypy")
    (tmp / "mistakes.py").write_text(MISTAKES)
    (tmp / "mypy.ini").write_text(MYPY_CONFIG)
    root = pathlib.Path(ad.__file__).parents[1]
    cmd = [sys.executable, "-m", "mypy", "--config-file", "mypy.ini", "--cache-dir", "cache"]
    run = subprocess.run(
        [*cmd, "--no-error-summary", "--show-absolute-path", str(TOUR), "mistakes.py"],
        cwd=tmp,
        env={"MYPYPATH": str(root), "PATH": "", "PYTHONPATH": ":".join(sys.path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode in (0, 1) and not run.stderr, run.stdout + run.stderr
    report: dict[str, list[str]] = {}
    for line in run.stdout.splitlines():
        path, _, message = line.partition(":")
        report.setdefault(pathlib.Path(path).name, []).append(message)
    return report


def test_mypy_strict_passes_on_the_typed_readme_tour(mypy_report):
    assert "tour.py" not in mypy_report, "\n".join(mypy_report["tour.py"])
    assert "mistakes.py" in mypy_report  # the same run does report errors


def test_mypy_reports_a_typo_in_ad_as_an_unknown_attribute(mypy_report):
    messages = "\n".join(mypy_report["mistakes.py"])
    assert re.search(r'4: error: Module has no attribute "tensr"; maybe "tensor"\?', messages)


def test_mypy_checks_arguments_of_primitives_functions_layers_and_optimizers(mypy_report):
    messages = "\n".join(mypy_report["mistakes.py"])
    assert '5: error: Too many arguments for "sin"' in messages
    assert '6: error: Unexpected keyword argument "keepdim" for "logsumexp"' in messages
    assert '7: error: Unexpected keyword argument "requires_gard" for "zeros"' in messages
    assert '8: error: Unexpected keyword argument "bais" for "Linear"' in messages
    assert '9: error: Unexpected keyword argument "momentun" for "SGD"' in messages


def test_typed_tour_has_every_statement_of_the_readme_tour():
    readme = (pathlib.Path(__file__).parents[1] / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    typed = {ast.dump(node) for node in ast.walk(ast.parse(TOUR.read_text()))}
    missing = [ast.unparse(s) for s in ast.parse(code).body if ast.dump(s) not in typed]
    assert not missing, f"add to {TOUR.name} (and type-check it) the README's {missing}"


def test_typed_tour_runs(capsys):
    spec = importlib.util.spec_from_file_location("typed_tour", TOUR)
    tour = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tour)
    tour.tour()
    assert "11.652" in capsys.readouterr().out
    assert np.isfinite(tour.train(steps=2))
