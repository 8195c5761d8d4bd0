"""Batch axes reach the rules as an argument: a rule declaring a keyword-only ``nb`` gets the
number of leading batch axes of its cotangent or tangents, and no module reads it from state."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import autodiffx as ad
from autodiffx import _mode
from autodiffx._registry import REGISTRY, defprim
from autodiffx._rules import takes_nb

PKG = Path(__file__).resolve().parent.parent / "autodiffx"


def _nb_reads(tree: ast.AST) -> list[int]:
    """Lines that read an attribute ``nb`` of the thread-local state (``STATE.nb``, an alias
    ``st.nb``, ``getattr(STATE, "nb")``) or call the removed ``batch_ndim()``."""
    lines = []
    for n in ast.walk(tree):
        if (
            isinstance(n, ast.Attribute)
            and n.attr == "nb"
            and isinstance(n.value, ast.Name)
            and n.value.id in ("STATE", "st", "state")
        ):
            lines.append(n.lineno)
        elif isinstance(n, ast.Call) and isinstance(n.func, ast.Name):
            if n.func.id == "batch_ndim":
                lines.append(n.lineno)
            elif n.func.id in ("getattr", "setattr") and len(n.args) >= 2:
                key = n.args[1]
                if isinstance(key, ast.Constant) and key.value == "nb":
                    lines.append(n.lineno)
    return lines


def test_no_module_reads_batch_axes_from_state() -> None:
    # No engine file is exempt: the engines hand nb to the rule kinds as an argument.
    found = {
        str(path.relative_to(PKG)): lines
        for path in sorted(PKG.rglob("*.py"))
        if (lines := _nb_reads(ast.parse(path.read_text())))
    }
    assert not found, f"modules reading the batch axes from global state: {found}"
    assert not hasattr(_mode.STATE, "nb")
    assert not hasattr(_mode, "batch_ndim")


def test_the_guard_sees_a_read() -> None:
    src = "from ._mode import STATE\ndef r(g):\n    st = STATE\n    return g, st.nb, STATE.nb\n"
    assert _nb_reads(ast.parse(src)) == [4, 4]


def test_takes_nb_reads_the_keyword_only_parameter() -> None:
    assert takes_nb(lambda g, x, *, nb: g)
    assert takes_nb(lambda g, x, *, nb=0, **params: g)
    assert not takes_nb(lambda g, x, nb=0: g)  # positional: a parameter of the op
    assert not takes_nb(lambda g, x, **params: g)
    assert not takes_nb(np.add)


# ----- a probe: ravel written as a general rule that needs its batch axes --------------------
SEEN: list[tuple[str, int]] = []


def _vjp(needs: Any, g: Any, out: Any, x: Any, *, nb: int) -> tuple[Any]:
    SEEN.append(("vjp", nb))
    return (g.reshape(tuple(g.shape[:nb]) + tuple(x.shape)),)


def _jvp(tans: Any, out: Any, x: Any, *, nb: int) -> Any:
    SEEN.append(("jvp", nb))
    t = tans[0]
    return t.reshape((*t.shape[:nb], -1))


@pytest.fixture(params=["registered", "unregistered"])
def flat(request: pytest.FixtureRequest) -> Iterator[Any]:
    """The probe as a registry entry (rules on raw arrays) and outside it (rules on Tensors,
    as custom Functions: the engines' other paths)."""
    name = "_nb_probe_ravel"
    register = request.param == "registered"
    p = defprim(
        name,
        lambda x: np.reshape(x, -1),
        vjp=_vjp,
        jvp=_jvp,
        register=register,
        export=False,
    )
    SEEN.clear()
    try:
        yield p
    finally:
        if register:
            REGISTRY.pop(name)


X = np.array([[0.3, -0.2, 0.5], [0.1, 0.7, -0.4]])


def _g(ravel: Any) -> Any:
    return lambda x: ad.tanh(ravel(x * x)) * ad.arange(1.0, 7.0)


def _scalar(ravel: Any) -> Any:
    return lambda x: ad.sum(ad.sin(ravel(x)) ** 2 * ad.arange(1.0, 7.0))


def _ref_ravel(x: Any) -> Any:
    return ad.reshape(x, (-1,))


def _seen(kind: str) -> set[int]:
    return {nb for k, nb in SEEN if k == kind}


def test_jacrev_passes_the_cotangents_batch_axes(flat: Any) -> None:
    got = ad.jacrev(_g(flat))(ad.tensor(X))
    np.testing.assert_allclose(got.data, ad.jacrev(_g(_ref_ravel))(ad.tensor(X)).data)
    assert _seen("vjp") == {1}


def test_batched_grads_pass_the_batch_axes(flat: Any) -> None:
    x = ad.tensor(X, requires_grad=True)
    seeds = ad.tensor(np.eye(6)[:4])
    (got,) = ad.autograd.grad(_g(flat)(x), x, seeds, is_grads_batched=True)
    assert got.shape == (4, 2, 3)
    xr = ad.tensor(X, requires_grad=True)
    (want,) = ad.autograd.grad(_g(_ref_ravel)(xr), xr, seeds, is_grads_batched=True)
    np.testing.assert_allclose(got.data, want.data)
    assert _seen("vjp") == {1}


def test_jacfwd_passes_the_tangents_batch_axes(flat: Any) -> None:
    got = ad.jacfwd(_g(flat))(ad.tensor(X))
    np.testing.assert_allclose(got.data, ad.jacrev(_g(_ref_ravel))(ad.tensor(X)).data)
    assert _seen("jvp") == {1}


def test_hessian(flat: Any) -> None:
    got = ad.hessian(_scalar(flat))(ad.tensor(X))
    want = ad.hessian(_scalar(_ref_ravel))(ad.tensor(X))
    np.testing.assert_allclose(got.data, want.data, atol=1e-12)
    # jacfwd(jacrev): the reverse rule sees jacrev's batched cotangents (one axis) and, as it
    # runs on Tensors carrying jacfwd's tangents, its reshape is pushed forward with its own.
    assert _seen("vjp") == {1}
    assert _seen("jvp") == {1}


def test_hvp_of_a_function_with_a_batched_jacobian(flat: Any) -> None:
    """hvp differentiates (forward over reverse) a function whose value is a batched
    reverse pass: the rule gets one batch axis there and none in hvp's own sweeps."""

    def f(ravel: Any) -> Any:
        return lambda x: ad.sum(ad.jacrev(_g(ravel))(x) ** 2)

    v = ad.tensor(np.linspace(-1.0, 1.0, 6).reshape(2, 3))
    got = ad.hvp(f(flat), (ad.tensor(X),), (v,))[1]
    want = ad.hvp(f(_ref_ravel), (ad.tensor(X),), (v,))[1]
    np.testing.assert_allclose(got.data, want.data, rtol=1e-10, atol=1e-12)
    assert _seen("vjp") == {0, 1}
    assert 0 in _seen("jvp")


def test_hvp_passes_no_batch_axes(flat: Any) -> None:
    v = ad.tensor(np.linspace(-1.0, 1.0, 6).reshape(2, 3))
    got = ad.hvp(_scalar(flat), (ad.tensor(X),), (v,))[1]
    want = ad.hvp(_scalar(_ref_ravel), (ad.tensor(X),), (v,))[1]
    np.testing.assert_allclose(got.data, want.data, atol=1e-12)
    assert _seen("vjp") == {0}
    assert _seen("jvp") == {0}


def test_a_linear_transpose_declaring_nb() -> None:
    """The linear kind passes ``nb=`` to a transpose that declares it and ``batched_apply``
    the op's batch rule in the JVP."""
    seen = []

    def transpose(g: Any, x: Any, *, nb: int) -> tuple[Any]:
        seen.append(nb)
        return (g.reshape(tuple(g.shape[:nb]) + tuple(x.shape)),)

    p = defprim(
        "_nb_probe_linear",
        lambda x: np.reshape(x, -1),
        linear=transpose,
        batch=lambda nb, x: np.reshape(x, (*x.shape[:nb], -1)),
        register=False,
    )
    jr = ad.jacrev(lambda x: p(x) * 2.0)(ad.tensor(X))
    jf = ad.jacfwd(lambda x: p(x) * 2.0)(ad.tensor(X))
    want = 2.0 * np.eye(6).reshape(6, 2, 3)
    np.testing.assert_allclose(jr.data, want)
    np.testing.assert_allclose(jf.data, want)
    assert seen == [1]
