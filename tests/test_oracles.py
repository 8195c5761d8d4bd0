"""The PyTorch oracle: every test that needs PyTorch is marked ``oracle`` (``make test`` runs
without it), and the stored references are what the script makes with the pinned PyTorch."""

from __future__ import annotations

import ast
import importlib.util
import json
import re
from pathlib import Path

import _reference
import numpy as np
import pytest

TESTS = Path(__file__).resolve().parent
PYPROJECT = TESTS.parent / "pyproject.toml"


def _is_oracle_mark(node: ast.expr) -> bool:
    return ast.unparse(node) == "pytest.mark.oracle"


def _needs_torch(fn: ast.FunctionDef) -> bool:
    """A ``torch`` fixture argument or a ``pytest.importorskip("torch")`` in the body."""
    if any(a.arg == "torch" for a in fn.args.args):
        return True
    return any(
        isinstance(n, ast.Call)
        and ast.unparse(n.func) == "pytest.importorskip"
        and n.args
        and isinstance(n.args[0], ast.Constant)
        and n.args[0].value == "torch"
        for n in ast.walk(fn)
    )


def unmarked_torch_tests(source: str) -> list[str]:
    """Names of the test functions in ``source`` that need PyTorch but are not marked oracle.

    Examples
    --------
    >>> unmarked_torch_tests("def test_a(torch): pass\\ndef test_b(): pass")
    ['test_a']
    """
    tree = ast.parse(source)
    if any(
        isinstance(n, ast.Assign) and "pytestmark" in ast.unparse(n) and "oracle" in ast.unparse(n)
        for n in tree.body
    ):
        return []
    return [
        n.name
        for n in tree.body
        if isinstance(n, ast.FunctionDef)
        and n.name.startswith("test_")
        and _needs_torch(n)
        and not any(_is_oracle_mark(d) for d in n.decorator_list)
    ]


def test_every_test_that_needs_pytorch_is_marked_oracle():
    unmarked = {
        f"{path.name}::{name}"
        for path in sorted(TESTS.glob("test_*.py"))
        for name in unmarked_torch_tests(path.read_text(encoding="utf-8"))
    }
    assert not unmarked, f"add @pytest.mark.oracle to {sorted(unmarked)}"


def test_the_guard_sees_an_unmarked_importorskip():
    src = 'import pytest\ndef test_x():\n    torch = pytest.importorskip("torch")\n'
    assert unmarked_torch_tests(src) == ["test_x"]
    assert unmarked_torch_tests("import pytest\n@pytest.mark.oracle\n" + src[14:]) == []


def _pinned_torch() -> str:
    (pin,) = re.findall(r'"torch==([0-9.]+)"', PYPROJECT.read_text(encoding="utf-8"))
    return pin


@pytest.mark.parametrize("name", ["optim", "nn", "cnn", "schedulers"])
def test_stored_references_record_the_pinned_pytorch(name):
    meta = _reference.meta(name)
    assert meta["torch"].split("+")[0] == _pinned_torch(), _reference.STALE
    assert {"numpy", "python", "script"} <= set(meta)
    assert (TESTS.parent / meta["script"]).is_file()
    # plain arrays only: np.load(..., allow_pickle=False) read every one of them
    assert all(a.dtype != object for a in _reference.load(name).values())


def _load_script():
    path = TESTS / "reference" / "make_torch_references.py"
    spec = importlib.util.spec_from_file_location("_make_torch_references", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.oracle
def test_stored_references_are_what_the_script_makes_with_this_pytorch():
    torch = pytest.importorskip("torch")
    assert torch.__version__.split("+")[0] == _pinned_torch()
    for name, arrays in _load_script().build(torch).items():
        stored = _reference.load(name)
        assert set(arrays) == set(stored), _reference.STALE
        for key, a in arrays.items():
            if key == "_meta":
                continue
            if a.dtype.kind == "U":
                assert json.loads(str(a)) == json.loads(str(stored[key])), key
            else:
                assert a.dtype == stored[key].dtype, key
                np.testing.assert_allclose(a, stored[key], rtol=1e-13, atol=1e-15, err_msg=key)
