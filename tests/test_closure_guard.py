"""Guard: a closed-over tensor that requires grad carries its gradient through every transform.

Two parts, both against central differences (``autodiffx.fd.directional``):

* every nesting of two transforms (grad, vjp, jvp, jacfwd, jacrev, jacobian, hessian, hvp),
  ``outer(lambda w: inner(lambda x: f(x, w, p))(x0))(w0)``, on a few functions: the value
  (the inner transform closes over the outer's variable ``w``), the gradient with respect to
  ``p`` (closed over by both, trained by ``backward()``), detached results when ``p`` does
  not require grad, and no reference cycle;
* every primitive of the OpSpec table, its differentiable arguments closed over by ``jacfwd``
  (with respect to a shift of them) and differentiated by ``backward()``.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from op_specs import Case, OpSpec
from test_primitives import DIFF, _floating, apply_op, check_vjp, make_point, rand_like

import autodiffx as ad
from autodiffx import Tensor
from autodiffx.fd import directional


def _weights(k: int) -> np.ndarray:
    return np.cos(np.arange(k) + 0.5)


def _direction(n: int) -> np.ndarray:
    return np.sin(np.arange(n) + 1.0)


def _dot(y: Tensor) -> Tensor:
    """A fixed linear functional of ``y``: the scalar that grad, hessian and hvp need."""
    return ad.sum(ad.ravel(y) * _weights(y.size))


def _vjp(h: Callable[[Any], Tensor], x: Any) -> Tensor:
    y, back = ad.vjp(h, x)
    return back(ad.tensor(_weights(y.size).reshape(y.shape)))[0]


# Each transform as an operator on a vector function h at x (its result: one Tensor).
TRANSFORMS: dict[str, Callable[[Callable[[Any], Tensor], Any], Tensor]] = {
    "grad": lambda h, x: ad.grad(lambda z: _dot(h(z)))(x),
    "vjp": _vjp,
    "jvp": lambda h, x: ad.jvp(h, (x,), (_direction(np.size(x)),))[1],
    "jacfwd": lambda h, x: ad.jacfwd(h)(x),
    "jacrev": lambda h, x: ad.jacrev(h)(x),
    "jacobian": lambda h, x: ad.jacobian(h, chunk_size=2)(x),
    "hessian": lambda h, x: ad.hessian(lambda z: _dot(h(z)))(x),
    "hvp": lambda h, x: ad.hvp(lambda z: _dot(h(z)), (x,), (_direction(np.size(x)),))[1],
}
SECOND_ORDER = ("hessian", "hvp")

RNG = np.random.default_rng(3)
M = RNG.standard_normal((2, 2))
FUNCTIONS: dict[str, Callable[[Any, Any, Any], Tensor]] = {
    # elementwise, matmul, indexing, broadcasting
    "tanh-matmul": lambda x, w, p: ad.tanh(ad.tensor(M) @ (x * w) + p) * ad.exp(w[0] * x[1]),
    # reductions, stack, linear algebra
    "solve-reduce": lambda x, w, p: (
        ad.linalg.solve(2 * ad.eye(2) + ad.outer(w, p), x)
        + ad.stack([ad.logsumexp(x * w + p), ad.prod(x + w) * p[1]])
    ),
}
X0, W0, P0 = np.array([0.4, -0.7]), np.array([0.9, 0.3]), np.array([-0.2, 0.5])


def nested(outer: str, inner: str, fname: str, w0: Any, p: Any) -> Tensor:
    """``outer(lambda w: inner(lambda x: f(x, w, p))(X0))(w0)``."""
    f = FUNCTIONS[fname]

    def g(w: Any) -> Tensor:
        return ad.ravel(TRANSFORMS[inner](lambda x: f(x, w, p), X0))

    return TRANSFORMS[outer](g, w0)


def _inner_values(inner: str, fname: str) -> Callable[[np.ndarray], np.ndarray]:
    """w -> the inner transform's result, with w and p constants (the reference's input)."""
    f = FUNCTIONS[fname]
    p = ad.tensor(P0)
    return lambda w: ad.ravel(TRANSFORMS[inner](lambda x: f(x, ad.tensor(w), p), X0)).data


def reference(outer: str, inner: str, fname: str, u: np.ndarray) -> float:
    """<u, outer(G)(W0)> by central differences of G = the inner transform as a function of w."""
    G = _inner_values(inner, fname)
    n = W0.size
    if outer in SECOND_ORDER:  # <u, H v> (hvp: v fixed; hessian: u, v the matrix's factors)
        u_in, v = (u, _direction(n)) if outer == "hvp" else (u.reshape(n, n), None)
        if outer == "hessian":
            return sum(_mixed(G, u_in[i], np.eye(n)[i]) for i in range(n))
        return _mixed(G, u_in, v)
    J = np.stack([directional(G, [W0], [e])[0] for e in np.eye(n)], axis=-1)
    c = _weights(J.shape[0])
    lin = {"grad": J.T @ c, "vjp": J.T @ c, "jvp": J @ _direction(n)}.get(outer, J)
    return float(np.sum(u * np.ravel(lin)))


def _mixed(G: Callable[[np.ndarray], np.ndarray], a: np.ndarray, b: np.ndarray) -> float:
    """a^T Hess(<c, G>)(W0) b by nested central differences."""
    c = _weights(G(W0).size)

    def along_b(w: np.ndarray) -> np.ndarray:
        return directional(lambda z: np.dot(c, G(z)), [w], [b])[0]

    return float(directional(along_b, [W0], [a])[0])


@pytest.mark.parametrize("fname", list(FUNCTIONS))
@pytest.mark.parametrize("inner", list(TRANSFORMS))
@pytest.mark.parametrize("outer", list(TRANSFORMS))
def test_every_nesting_of_two_carries_closed_over_gradients(outer, inner, fname):
    rng = np.random.default_rng(abs(hash((outer, inner, fname))) % 2**32)
    # 1. The inner transform closes over the outer's variable: the value.
    gc.disable()
    try:
        gc.collect(0)  # the youngest generation then holds only what the call makes
        r = nested(outer, inner, fname, W0, ad.tensor(P0))
        assert r.grad_fn is None, "a top-level result is detached"
        assert not r.requires_grad, "a top-level result is detached"
        value = r.data.copy()
        del r
        assert gc.collect(0) == 0, "no reference cycle (freed without the collector)"
    finally:
        gc.enable()
    u = rng.standard_normal(value.size)
    want = reference(outer, inner, fname, u)
    got = float(np.sum(u * np.ravel(value)))
    scale = float(np.sum(np.abs(u * np.ravel(value)))) + abs(want)
    assert abs(got - want) <= 1e-7 * scale + 1e-9, f"value: AD {got!r}, differences {want!r}"
    # 2. Both close over p, which requires grad: its gradient by backward().
    p = ad.tensor(P0, requires_grad=True)
    r = nested(outer, inner, fname, W0, p)
    ad.sum(ad.ravel(r) * u).backward()
    assert p.grad is not None, "the gradient reaches the closed-over tensor"
    dp = rng.standard_normal(P0.size)

    def s(pv: np.ndarray) -> np.ndarray:
        return np.sum(u * np.ravel(nested(outer, inner, fname, W0, ad.tensor(pv)).data))

    (fd,) = directional(s, [P0], [dp])
    ad_dp = float(p.grad.data @ dp)
    assert ad_dp == pytest.approx(float(fd), rel=1e-7, abs=1e-9), "d/dp by backward()"


# ----- every primitive ---------------------------------------------------------------------
def _representative(spec: OpSpec) -> Case:
    """The row's first case whose differentiable arguments are all arrays (else its first)."""
    for case in spec.cases:
        if all(s is not None and len(s) > 0 for s in case.shapes):
            return case
    return spec.cases[0]


def closed_over_by_jacfwd(point: Any, vs: list[np.ndarray]) -> Callable[[list[Any]], list[Any]]:
    """ts -> jacfwd(s -> op(t_i + s_0 v_i + s_1 v_i t_i))(0): the op's arguments closed over,
    reached through the primal (column 0, the op's second derivative) and through a tangent
    that requires grad (column 1, also for linear ops)."""
    spec = point.spec

    def fun(ts: list[Any]) -> list[Any]:
        def shifted(s: Tensor) -> tuple[Tensor, ...]:
            args = list(point.args)
            for i, t, v in zip(point.diff, ts, vs, strict=True):
                args[i] = t + s[0] * v + s[1] * (v * t)
            return tuple(_floating(apply_op(spec, args, point.params)))

        return list(ad.jacfwd(shifted)(np.zeros(2)))

    return fun


@pytest.mark.parametrize("spec", [pytest.param(r, id=r.name) for r in DIFF])
def test_every_primitive_carries_closed_over_gradients_through_jacfwd(spec, rng):
    point = make_point(spec, _representative(spec), rng)
    vs = [rand_like(rng, x.shape, x.dtype) for x in point.xs]
    fun = closed_over_by_jacfwd(point, vs)
    check_vjp(fun, point.xs, rng, spec.rtol, spec.atol, what=f"backward through jacfwd {point!r}")
