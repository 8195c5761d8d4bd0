"""Transforms and the tensors they close over (issue 11, items 3 and 4, and two related defects).

A transform differentiates through every tensor that requires grad, also one it closes over
(an outer transform's variable, a parameter trained by ``backward()``); ``vjp_fn`` is
differentiable in its cotangent; top-level results are detached; nothing leaves a reference
cycle (large arrays are freed as soon as the result is dropped, without the collector).
"""

from __future__ import annotations

import gc
import tracemalloc

import numpy as np
import pytest

import autodiffx as ad
from autodiffx.fd import directional

ONE = ad.tensor(1.0)
W = 1.5

# Inner transforms of x at x = 1 closing over w; d/dw of the result at w = 1.5.
INNER = {
    "jacfwd": (lambda w: ad.jacfwd(lambda x: x * x * w)(ONE), 2.0),
    "jacobian-fwd": (lambda w: ad.jacobian(lambda x: x * x * w, mode="fwd")(ONE), 2.0),
    "jacobian-auto": (lambda w: ad.jacobian(lambda x: x * x * w)(ONE), 2.0),
    "jacrev": (lambda w: ad.jacrev(lambda x: x * x * w)(ONE), 2.0),
    "hessian": (lambda w: ad.hessian(lambda x: x * x * x * w)(ONE), 6.0),
    "jvp": (lambda w: ad.jvp(lambda x: x * x * w, (ONE,), (ONE,))[1], 2.0),
    "hvp": (lambda w: ad.hvp(lambda x: x * x * x * w, (ONE,), (ONE,))[1], 6.0),
    "vjp": (lambda w: ad.vjp(lambda x: x * x * w, ONE)[1](ONE)[0], 2.0),
    "grad": (lambda w: ad.grad(lambda x: x * x * w)(ONE), 2.0),
}


@pytest.mark.parametrize("outer", ["grad", "backward", "jvp", "jacrev"])
@pytest.mark.parametrize("name", list(INNER))
def test_a_transform_keeps_its_dependence_on_a_closed_over_tensor(name, outer):
    """Item 3: grad(lambda w: jacfwd(lambda x: x*x*w)(1))(w) is 2 (it was 0), for every
    inner transform and whether w is an outer transform's variable or a trained leaf."""
    inner, want = INNER[name]
    if outer == "grad":
        got = ad.grad(inner)(W)
    elif outer == "jvp":
        got = ad.jvp(inner, (W,), (1.0,))[1]
    elif outer == "jacrev":
        got = ad.jacrev(inner)(W)
    else:
        w = ad.tensor(W, requires_grad=True)
        inner(w).backward()
        got = w.grad
    assert got.item() == pytest.approx(want, rel=1e-12)


RNG = np.random.default_rng(11)
A = RNG.standard_normal((3, 2))
X0 = RNG.standard_normal(2)
C0 = RNG.standard_normal(3)
V0 = RNG.standard_normal(3)


def _linear_vjp():
    _, f_vjp = ad.vjp(lambda x: ad.tensor(A) @ x, X0)
    return lambda c: f_vjp(c)[0]


@pytest.mark.parametrize(
    "jac",
    [
        ad.jacobian,
        ad.jacrev,
        ad.jacfwd,
        lambda f: ad.jacobian(f, mode="fwd"),
        lambda f: ad.jacobian(f, chunk_size=1),
    ],
    ids=["jacobian", "jacrev", "jacfwd", "jacobian-fwd", "jacobian-chunks"],
)
def test_the_jacobian_of_vjp_fn_in_its_cotangent_is_the_transpose(jac):
    """Item 4: jacobian(lambda c: f_vjp(c)[0])(c) is Aᵀ (it was zeros), in every mode."""
    np.testing.assert_allclose(jac(_linear_vjp())(C0).data, A.T, rtol=1e-14)


def test_vjp_fn_is_differentiable_in_its_cotangent_in_every_mode():
    """Gauss-Newton products: Aᵀ v forward, A Aᵀ c by grad and by hvp, and by backward()."""
    back = _linear_vjp()
    np.testing.assert_allclose(ad.jvp(back, (C0,), (V0,))[1].data, A.T @ V0, rtol=1e-14)
    gn = ad.grad(lambda c: ad.sum(back(c) ** 2) / 2)(C0)
    np.testing.assert_allclose(gn.data, A @ A.T @ C0, rtol=1e-13)
    _, hv = ad.hvp(lambda c: ad.sum(back(c) ** 2) / 2, (C0,), (V0,))
    np.testing.assert_allclose(hv.data, A @ A.T @ V0, rtol=1e-13)
    np.testing.assert_allclose(ad.hessian(lambda c: ad.sum(back(c) ** 2) / 2)(C0).data, A @ A.T)
    c = ad.tensor(C0, requires_grad=True)
    ad.sum(back(c) ** 2).backward()
    np.testing.assert_allclose(c.grad.data, 2 * A @ A.T @ C0, rtol=1e-13)


def test_vjp_fn_is_differentiable_in_the_cotangent_and_the_closed_over_tensors():
    """A nonlinear f closing over w: d/dw and d/dc of <u, vjp_fn(c)> against differences."""
    u = RNG.standard_normal(2)

    def pulled(w, c):
        _, back = ad.vjp(lambda x: ad.tanh(ad.tensor(A) @ (x * w)) ** 2, X0)
        return ad.sum(back(c)[0] * u)

    w0 = RNG.standard_normal(2)
    gw, gc_ = ad.grad(pulled, argnums=(0, 1))(w0, C0)
    dw, dc = RNG.standard_normal(2), RNG.standard_normal(3)
    (fd,) = directional(lambda w, c: pulled(w, c).data, [w0, C0], [dw, dc])
    assert float(gw.data @ dw + gc_.data @ dc) == pytest.approx(float(fd), rel=1e-8)


def f_inner(x):
    return ad.sum(ad.tanh(x) ** 2 * x)


Y0 = np.array([0.2, -0.4, 0.9])


def g_inner(y, w):
    return ad.sum(ad.tanh(w * y) ** 2 * y)


# Outer transforms of w whose function runs an inner transform of y at the constant Y0,
# closing over w (the pattern that left the outer result attached to the inner's variable).
TOP_LEVEL = {
    "grad(grad)": lambda w: ad.grad(lambda u: ad.sum(ad.grad(g_inner)(Y0, u) ** 2))(w),
    "grad(jacfwd)": lambda w: ad.grad(
        lambda u: ad.sum(ad.jacfwd(lambda y: ad.tanh(u * y))(Y0) ** 2)
    )(w),
    "grad(jacrev)": lambda w: ad.grad(
        lambda u: ad.sum(ad.jacrev(lambda y: ad.tanh(u * y))(Y0) ** 2)
    )(w),
    "grad(vjp)": lambda w: ad.grad(
        lambda u: ad.sum(ad.vjp(lambda y: ad.tanh(u * y), Y0)[1](Y0)[0] ** 2)
    )(w),
    "grad(jvp)": lambda w: ad.grad(
        lambda u: ad.sum(ad.jvp(lambda y: ad.tanh(u * y), (Y0,), (Y0,))[1] ** 2)
    )(w),
    "grad(hvp)": lambda w: ad.grad(
        lambda u: ad.sum(ad.hvp(lambda y: g_inner(y, u), (Y0,), (Y0,))[1] ** 2)
    )(w),
    "jacrev(grad)": lambda w: ad.diagonal(ad.jacrev(lambda u: ad.grad(g_inner)(Y0, u))(w)),
    "grad(hessian)": lambda w: ad.grad(lambda u: ad.sum(ad.hessian(lambda y: g_inner(y, u))(Y0)))(
        w
    ),
    "vjp(grad)": lambda w: ad.vjp(lambda u: ad.grad(g_inner)(Y0, u), w)[1](Y0)[0],
    "jvp(grad)": lambda w: ad.jvp(lambda u: ad.grad(g_inner)(Y0, u), (w,), (Y0,))[1],
}


@pytest.mark.parametrize("name", list(TOP_LEVEL))
def test_top_level_results_of_nested_transforms_are_detached(name):
    """grad(f) where f calls grad returned a tensor with a grad_fn: fed back into a descent
    loop, the graph grew without bound. Top-level results are detached."""
    w = np.array([0.3, -0.8, 1.1])
    for _ in range(3):  # a descent loop feeding each result back
        g = TOP_LEVEL[name](w)
        assert g.grad_fn is None
        assert not g.requires_grad
        w = w - 0.1 * g
    assert w.grad_fn is None


def test_results_stay_attached_to_a_parameter_they_depend_on():
    """... but a closed-over tensor that requires grad keeps them attached (Sobolev training)."""
    w = ad.tensor([0.5, -1.0, 2.0], requires_grad=True)
    x = np.array([0.3, -0.8, 1.1])
    g = ad.grad(lambda z: ad.sum(ad.grad(lambda y: ad.sum(ad.tanh(w * y) ** 2))(z) ** 2))(x)
    assert g.requires_grad
    ad.sum(g).backward()
    assert w.grad is not None and np.all(np.isfinite(w.grad.data))
    assert not ad.grad(lambda z: ad.sum(ad.tanh(w.detach() * z)))(x).requires_grad


@pytest.mark.parametrize("transform", ["grad", "vjp"])
def test_aux_outputs_are_detached_unless_they_depend_on_a_closed_over_tensor(transform):
    w = ad.tensor(2.0, requires_grad=True)

    def run(f):
        if transform == "grad":
            return ad.grad(f, has_aux=True)(3.0)[1]
        return ad.vjp(f, 3.0, has_aux=True)[2]

    aux = run(lambda x: (x * x, x * 2.0))
    assert aux.grad_fn is None and not aux.requires_grad
    aux = run(lambda x: (x * x, x * w))  # the output does not depend on w, aux does
    aux.backward()
    assert w.grad.item() == 3.0


# ----- reference cycles ----------------------------------------------------------------------
CALLS = {
    "jvp(grad)": lambda x, v: ad.jvp(ad.grad(f_inner), (x,), (v,)),
    "grad(jvp)": lambda x, v: ad.grad(lambda z: ad.sum(ad.jvp(f_inner, (z,), (v,))[1]))(x),
    "jvp(hvp)": lambda x, v: ad.jvp(lambda z: ad.hvp(f_inner, (z,), (v,))[1], (x,), (v,)),
    "grad(hvp)": lambda x, v: ad.grad(lambda z: ad.sum(ad.hvp(f_inner, (z,), (v,))[1]))(x),
    "jvp(jvp)": lambda x, v: ad.jvp(lambda z: ad.jvp(ad.exp, (z,), (v,))[1], (x,), (v,)),
    # logsumexp's tangent reads its output through a linear op that saves nothing (the
    # cycle runs through the node, not the output), and vjp keeps the graph.
    "vjp(jvp(logsumexp))": lambda x, v: ad.vjp(
        lambda w: ad.jvp(lambda y: ad.stack([ad.logsumexp(y * w)]), (x,), (v,))[1], x
    ),
    "hessian": lambda x, v: ad.hessian(f_inner)(x[:40]),
    "jacrev(jacfwd)": lambda x, v: ad.jacrev(ad.jacfwd(ad.tanh))(x[:20]),
    "dual_level": lambda x, v: _forward_over_backward(x, v),
}


def _forward_over_backward(x, v):
    with ad.forward.dual_level():
        t = ad.forward.make_dual(ad.tensor(x, requires_grad=True), ad.tensor(v))
        (g,) = ad.autograd.grad(ad.sum(ad.exp(t) * t), t, create_graph=True)
        return ad.forward.unpack_dual(g).tangent


@pytest.mark.parametrize("name", list(CALLS))
def test_no_reference_cycle_keeps_large_arrays_alive(name):
    """ad.jvp(ad.grad(f)) left cycles (output <-> node, tensor <-> its recorded tangent): five
    calls on 2e6 elements held 512 MB until the collector ran. With the collector off, the
    memory comes back as soon as the result is dropped."""
    n = 200_000
    x = np.linspace(-1.0, 1.0, n)
    v = np.cos(x)
    gc.collect()
    gc.disable()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for _ in range(3):
            r = CALLS[name](x, v)
            del r
            held = tracemalloc.get_traced_memory()[0] - base
            assert held < 8 * n, f"{name}: {held / (8 * n):.1f} arrays of {n} still held"
        assert gc.collect() == 0, f"{name}: left objects that only the collector frees"
    finally:
        tracemalloc.stop()
        gc.enable()
