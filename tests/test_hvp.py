"""ad.hvp: forward-over-reverse with tangent-only edges and raw tangents, against oracles.

The oracles are the general composition ``jvp(grad(f))`` (every rule on dual Tensors),
the Hessian and central differences of the gradient.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_function import Cube  # x**3 with rules written on Tensors

import autodiffx as ad

RNG = np.random.default_rng(7)
A = RNG.standard_normal((4, 3))
Q = RNG.standard_normal((3, 3))
M = RNG.standard_normal((4, 3))
X = RNG.standard_normal(3)
V = RNG.standard_normal(3)


def composed_hvp(f, x, v):
    """The general path: jvp of grad, every rule evaluated on dual Tensors."""
    return ad.jvp(ad.grad(f), (x,), (v,))[1].data


def fd_hvp(f, x, v, h=1e-5):
    g = ad.grad(f)
    return (g(x + h * v).data - g(x - h * v).data) / (2 * h)


FUNCTIONS = {
    # A @ x with a constant A: the gradient reaches x through matmul's tangent-only edge.
    "tanh(A@x)^2": lambda x: ad.sum(ad.tanh(ad.tensor(A) @ x) ** 2),
    # x on the left of matmul.
    "tanh(x@Q)": lambda x: ad.sum(ad.tanh(x @ ad.tensor(Q)) ** 3),
    # x reaches the gradient twice: a tangent-only edge and an elementwise (dual) edge.
    "(A@x)*x": lambda x: ad.sum(ad.sin(ad.tensor(A) @ x)) * ad.sum(x * x),
    # Quadratic form: matmul(x, Q) qualifies, matmul(xQ, x) does not (xQ carries a tangent).
    "x@Q@x": lambda x: 0.5 * (x @ ad.tensor(Q) @ x) + ad.sum(ad.exp(x)),
    # A broadcast multiply by a constant: the tangent-only cotangent is summed by the engine.
    "M*x": lambda x: ad.sum(ad.tanh(ad.tensor(M) * x) ** 2),
    "einsum": lambda x: ad.sum(ad.cos(ad.einsum("ij,j->i", ad.tensor(A), x))),
    # Linear ops (reshape, indexing) straight on x.
    "getitem": lambda x: ad.sum(x[1:] * x[:-1]) + ad.sum(ad.sin(x.reshape(3, 1))),
    "x@x": lambda x: (x @ x) ** 2,
    "linear": lambda x: ad.sum(3.0 * x),
    # A multi-output node: one output unused, one reached nonlinearly (its cotangent has a
    # tangent), one linearly (its tangent is None): zeros fill the missing entries.
    "split": lambda x: ad.sum(ad.split(x, 3)[0] ** 2 * ad.split(x, 3)[2]),
    "prod": lambda x: ad.prod(x + 2.0),
    "logsumexp": lambda x: ad.logsumexp(ad.tensor(A) @ x),
    "var+norm": lambda x: ad.var(ad.tanh(ad.tensor(A) @ x)) + ad.norm(x) ** 3,
    "cumsum(concat)": lambda x: ad.sum(ad.cumsum(ad.concatenate([x, ad.sin(x)])) ** 2),
    "solve": lambda x: ad.sum(ad.linalg.solve(ad.tensor(Q) + 4 * ad.eye(3), ad.sin(x)) ** 2),
    "repeated index": lambda x: ad.sum(x[[0, 0, 1, 2]] ** 2 * x[[1, 2, 2, 0]]),
    "outer": lambda x: ad.sum(ad.tanh(x[:, None] * x[None, :]) ** 2),
    # The loss's 0-d seed flows unbroadcast into elementwise rules: through add into exp and
    # x, and into a power of two differentiated arguments (evaluated on dual Tensors).
    "exp(x)+x": lambda x: ad.sum(ad.exp(x) + x),
    "x**(x/4)": lambda x: ad.sum(ad.abs(x) ** (x / 4)),
    "constant": lambda x: ad.sum(ad.tensor(A)),
}


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_hvp_matches_composition_hessian_and_differences(name):
    f = FUNCTIONS[name]
    value, hv = ad.hvp(f, (X,), (V,))
    assert isinstance(hv, ad.Tensor) and hv.shape == X.shape and hv.dtype == np.float64
    assert not hv.requires_grad and not value.requires_grad
    np.testing.assert_allclose(value.item(), f(ad.tensor(X)).item(), rtol=1e-14)
    np.testing.assert_allclose(hv.data, composed_hvp(f, X, V), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(hv.data, ad.hessian(f)(X).data @ V, rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(hv.data, fd_hvp(f, X, V), rtol=1e-6, atol=1e-8)


# Random compositions: the sweep's bookkeeping (tangents formed on first use, multi-output
# nodes, broadcast and 0-d cotangents, linear chains, a closed-over parameter) against jvp(grad).
_Q = RNG.standard_normal((4, 4)) / 2
_UNARY = [
    ad.tanh,
    ad.sin,
    ad.exp,
    ad.erf,
    lambda z: z**2,
    lambda z: z**3,
    lambda z: ad.sqrt(z * z + 1.0),
    lambda z: -z,
    lambda z: z * 0.5,
    lambda z: ad.tensor(_Q) @ z,
    lambda z: z[::-1],
    lambda z: ad.cumsum(z),
    lambda z: z - ad.mean(z),
    lambda z: ad.concatenate([z[:2], z[2:] * 2.0]),
    lambda z: ad.stack(ad.split(z, 2))[::-1].reshape(4),
    lambda z: ad.concatenate([ad.split(z, 2)[0] ** 2, ad.split(z, 2)[0]]),  # one output unused
    lambda z: ad.where(z > 0, z, 0.1 * z),
    lambda z: ad.reciprocal(z * z + 1.0),
]
_BINARY = [
    lambda a, b: a * b,
    lambda a, b: a + b,
    lambda a, b: a / (b * b + 1.0),
    lambda a, b: ad.maximum(a, b + 0.01),
    lambda a, b: (a @ b) * ad.ones(4),
    lambda a, b: ad.einsum("i,i->i", a, b),
]


def _random_program(r, depth):
    if depth == 0 or r.random() < 0.2:
        return lambda x: x
    if r.random() < 0.6:
        op, arg = _UNARY[r.integers(len(_UNARY))], _random_program(r, depth - 1)
        return lambda x: op(arg(x))
    op = _BINARY[r.integers(len(_BINARY))]
    a, b = _random_program(r, depth - 1), _random_program(r, depth - 1)
    return lambda x: op(a(x), b(x))


@pytest.mark.parametrize("closed_over", [False, True])
def test_hvp_of_random_programs_matches_jvp_of_grad(closed_over):
    r = np.random.default_rng(11)
    w = ad.tensor(r.standard_normal(4), requires_grad=closed_over)
    for _ in range(60):
        g = _random_program(r, int(r.integers(1, 6)))

        def f(x, g=g):
            return ad.sum(g(x) * w) + ad.sum(g(x) ** 2)

        x, v = r.standard_normal(4) * 0.7, r.standard_normal(4)
        _, hv = ad.hvp(f, (x,), (v,))
        np.testing.assert_allclose(hv.data, composed_hvp(f, x, v), rtol=1e-10, atol=1e-12)


def test_hvp_of_a_matrix_argument():
    data = RNG.standard_normal((3, 5))
    w = RNG.standard_normal((2, 3))
    u = RNG.standard_normal((2, 3))

    def f(w):
        return ad.sum(ad.tanh(w @ ad.tensor(data)) ** 2)

    _, hv = ad.hvp(f, (w,), (u,))
    assert hv.shape == (2, 3)
    np.testing.assert_allclose(hv.data, composed_hvp(f, w, u), rtol=1e-12)
    H = ad.hessian(f)(w).data.reshape(6, 6)
    np.testing.assert_allclose(hv.data.ravel(), H @ u.ravel(), rtol=1e-11)


def test_hvp_of_pytrees_and_several_arguments():
    data = RNG.standard_normal((5, 3))
    params = {"w": RNG.standard_normal(3), "b": np.array(0.3)}
    tangent = {"w": RNG.standard_normal(3), "b": np.array(-1.2)}
    scale = np.array(1.5)

    def f(p, s):
        z = ad.tensor(data) @ p["w"] + p["b"]
        return ad.sum(ad.log(1 + ad.exp(-z * s))) + ad.sum(p["w"] ** 2) * s

    _, hv = ad.hvp(f, (params, scale), (tangent, np.array(0.5)))
    assert set(hv[0]) == {"w", "b"} and hv[1].shape == ()
    # The same product through the general path (every argument at once).
    _, ref = ad.jvp(ad.grad(f, argnums=(0, 1)), (params, scale), (tangent, np.array(0.5)))
    np.testing.assert_allclose(hv[0]["w"].data, ref[0]["w"].data, rtol=1e-12)
    np.testing.assert_allclose(hv[0]["b"].data, ref[0]["b"].data, rtol=1e-12)
    np.testing.assert_allclose(hv[1].data, ref[1].data, rtol=1e-12)


def test_hvp_takes_arrays_tensors_numbers_and_pytrees_alike():
    """Single-array arguments skip the pytree walk; every spelling gives the same product."""
    f = FUNCTIONS["tanh(A@x)^2"]
    _, want = ad.hvp(f, (X,), (V,))
    spellings = [
        ((ad.tensor(X),), (ad.tensor(V),)),
        ((X,), (ad.tensor(V),)),
        ([X], [V]),
        ((X,), (V.astype(np.float32),)),  # the seed takes the primal's dtype
    ]
    for primals, tangents in spellings:
        _, hv = ad.hvp(f, primals, tangents)
        assert hv.dtype == np.float64 and not hv.requires_grad
        np.testing.assert_allclose(
            hv.data, want.data, rtol=1e-6 if tangents[0].dtype != np.float64 else 1e-15
        )
    _, hv = ad.hvp(lambda p: f(p["x"]), ({"x": X},), ({"x": V},))
    np.testing.assert_allclose(hv["x"].data, want.data, rtol=1e-15)
    # Integer primals are promoted to float64, as everywhere in ad.func.
    _, hv = ad.hvp(lambda x: ad.sum(x**3), (np.array([1, 2]),), (np.array([1, 0]),))
    np.testing.assert_array_equal(hv.data, [6.0, 0.0])
    # A tangent of the wrong shape is refused on the fast path too.
    with pytest.raises(ValueError, match="shape"):
        ad.hvp(f, (X,), (V[:2],))


def test_hvp_of_a_deep_chain_stays_below_the_recursion_limit():
    """Tangents are formed on first use, producers first, without recursion."""
    import sys

    def f(x):
        for _ in range(300):
            x = ad.tanh(x) * 1.5
        return ad.sum(x**2)

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(200)
    try:
        _, hv = ad.hvp(f, (X,), (V,))
    finally:
        sys.setrecursionlimit(limit)
    np.testing.assert_allclose(hv.data, composed_hvp(f, X, V), rtol=1e-10, atol=1e-12)


def test_hvp_through_a_graph_freed_inside_f_raises_as_backward_does():
    def f(x, retain):
        t = ad.tanh(x)
        ad.sum(t * 1.0).backward(retain_graph=retain)  # frees tanh's saved values
        return ad.sum(t**2)

    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        ad.hvp(lambda x: f(x, False), (X,), (V,))
    _, hv = ad.hvp(lambda x: f(x, True), (X,), (V,))
    want = composed_hvp(lambda x: ad.sum(ad.tanh(x) ** 2), X, V)
    np.testing.assert_allclose(hv.data, want, rtol=1e-13)


def test_hvp_keeps_float32():
    x = X.astype(np.float32)
    _, hv = ad.hvp(FUNCTIONS["tanh(A@x)^2"], (x,), (V.astype(np.float32),))
    assert hv.dtype == np.float32
    want = composed_hvp(FUNCTIONS["tanh(A@x)^2"], X, V)
    np.testing.assert_allclose(hv.data, want, rtol=1e-5)


@pytest.mark.parametrize("derived", [False, True])
def test_hvp_of_a_closure_is_differentiable_in_the_closed_over_parameter(derived):
    """Tangents through a parameter from outside are recorded: d(Hv)/dW is exact."""
    w0 = RNG.standard_normal((4, 3))

    def hv_of(wdata):
        w = ad.tensor(wdata, requires_grad=True)
        wu = w * 2.0 if derived else w  # a non-leaf made before hvp counts as outside too
        _, hv = ad.hvp(lambda x: ad.sum(ad.tanh(wu @ x) ** 2), (X,), (V,))
        return w, hv

    w, hv = hv_of(w0)
    assert hv.requires_grad
    ad.sum(hv * hv).backward()
    h = 1e-6
    num = np.zeros_like(w0)
    for i in range(w0.size):
        e = np.zeros_like(w0)
        e.flat[i] = h
        plus = np.sum(hv_of(w0 + e)[1].data ** 2)
        minus = np.sum(hv_of(w0 - e)[1].data ** 2)
        num.flat[i] = (plus - minus) / (2 * h)
    np.testing.assert_allclose(w.grad.data, num, rtol=1e-6, atol=1e-9)


def test_hvp_inside_grad_third_order():
    """d/dx <Hv, 1> through an outer grad: the general composition path."""
    f = FUNCTIONS["tanh(A@x)^2"]

    def k(x):
        return ad.sum(ad.hvp(f, (x,), (V,))[1])

    g = ad.grad(k)(X).data
    h = 1e-5
    num = np.array(
        [
            (k(ad.tensor(X + h * e)).item() - k(ad.tensor(X - h * e)).item()) / (2 * h)
            for e in np.eye(3)
        ]
    )
    np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-9)


def test_hvp_errors_name_the_problem():
    with pytest.raises(TypeError, match=r"hvp: f must return a scalar .* shape \(4,\)"):
        ad.hvp(lambda x: ad.tensor(A) @ x, (X,), (V,))
    with pytest.raises(ValueError, match=r"hvp: the tangent of argument 0 .* shape \(2,\)"):
        ad.hvp(FUNCTIONS["linear"], (X,), (np.ones(2),))
    with pytest.raises(ValueError, match="hvp: 1 primals but 2 tangents"):
        ad.hvp(FUNCTIONS["linear"], (X,), (V, V))


class _CountingMatmul(np.ndarray):
    """An ndarray that counts the matrix products it takes part in."""

    calls = 0

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if ufunc is np.matmul:
            type(self).calls += 1
        inputs = tuple(np.asarray(i) if isinstance(i, _CountingMatmul) else i for i in inputs)
        return getattr(ufunc, method)(*inputs, **kwargs)


def test_hvp_skips_the_dead_gradient_product():
    """W5's structure: A @ x, A @ v forward and one product for Hv; the gradient A.T @ g is dead."""
    a = ad.tensor(A)
    a.data = A.view(_CountingMatmul)

    def f(x):
        return ad.sum(ad.tanh(a @ x) ** 2)

    _CountingMatmul.calls = 0
    _, hv = ad.hvp(f, (X,), (V,))
    assert _CountingMatmul.calls == 3
    _CountingMatmul.calls = 0
    ref = composed_hvp(f, X, V)
    assert _CountingMatmul.calls == 4  # the general composition also computes the gradient
    np.testing.assert_allclose(hv.data, ref, rtol=1e-12)


def _with_hook(x):
    y = ad.tanh(ad.tensor(A) @ x)
    y.register_hook(lambda g: g * 2.0)  # doubles the gradient flowing into tanh's output
    return ad.sum(y**2)


@pytest.mark.parametrize(
    ("name", "f", "want"),
    [
        ("custom Function", lambda x: ad.sum(ad.sin(Cube.apply(x))), None),
        ("hook", _with_hook, "hook"),
    ],
)
def test_hvp_general_path_for_custom_rules_and_hooks(name, f, want):
    _, hv = ad.hvp(f, (X,), (V,))
    if want == "hook":  # the hook scales the gradient, so Hv is that of 2 * f without it
        ref = 2 * composed_hvp(lambda x: ad.sum(ad.tanh(ad.tensor(A) @ x) ** 2), X, V)
    else:
        ref = composed_hvp(lambda x: ad.sum(ad.sin(x**3)), X, V)
    np.testing.assert_allclose(hv.data, ref, rtol=1e-12)


def test_hvp_under_detect_anomaly_reports_non_finite_values():
    with ad.detect_anomaly():
        _, hv = ad.hvp(FUNCTIONS["tanh(A@x)^2"], (X,), (V,))
        np.testing.assert_allclose(hv.data, composed_hvp(FUNCTIONS["tanh(A@x)^2"], X, V))
        with pytest.raises(FloatingPointError, match="produced inf"):
            ad.hvp(lambda x: ad.sum(ad.sqrt(x)), (np.array([0.0, 1.0]),), (np.ones(2),))


def test_hvp_carries_tangents_through_no_grad_like_jvp_of_grad():
    """Forward mode ignores no_grad (PyTorch's rule): hvp equals jvp(grad) even then."""

    def f(x):
        with ad.no_grad():
            scale = ad.sum(x * x)  # a constant for the gradient, not for its tangent
        return ad.sum(ad.sin(x)) * scale

    _, hv = ad.hvp(f, (X,), (V,))
    np.testing.assert_allclose(hv.data, composed_hvp(f, X, V), rtol=1e-12)
    calls = []
    ad.hvp(lambda x: calls.append(1) or ad.sum(ad.tanh(x)), (X,), (V,))
    assert len(calls) == 1  # without no_grad, f runs once


def test_hvp_of_a_function_that_modifies_a_tensor_in_place():
    """hvp keeps outputs a plain backward does not save (sin's, for its second derivative):
    one modified in place after its use must not change Hv, and a saved value modified in
    place raises as backward() does."""

    def f(x):
        y = ad.sin(x)
        z = ad.sum(y)  # sum saves nothing; sin's first derivative reads x, not y
        y += 1.0
        return z

    value, hv = ad.hvp(f, (X,), (V,))
    np.testing.assert_allclose(hv.data, -np.sin(X) * V, rtol=1e-14)
    np.testing.assert_allclose(value.item(), np.sum(np.sin(X)), rtol=1e-14)
    assert not value.requires_grad and not hv.requires_grad

    def g(x):
        y = ad.sin(x)
        z = ad.sum(y * y)  # multiply saves y
        y += 1.0
        return z

    with pytest.raises(RuntimeError, match="modified by an in-place"):
        ad.sum(g(ad.tensor(X, requires_grad=True))).backward()
    with pytest.raises(RuntimeError, match="modified by an in-place"):
        ad.hvp(g, (X,), (V,))


@pytest.mark.parametrize("name", ["sin", "cos", "sinh", "cosh"])
def test_second_derivatives_do_not_make_plain_backward_keep_more(name):
    """Their derivs2 reads `out`, their first derivative does not: a plain recording must not
    keep the output (it did once, and a 1e6-element gradient got 50 % slower)."""
    x = ad.tensor(np.linspace(0.1, 1.0, 5), requires_grad=True)
    y = getattr(ad, name)(x)
    assert y.grad_fn.out is None
    _, hv = ad.hvp(lambda z: ad.sum(getattr(ad, name)(z)), (x.data,), (np.ones(5),))
    np.testing.assert_allclose(
        hv.data, composed_hvp(lambda z: ad.sum(getattr(ad, name)(z)), x.data, np.ones(5))
    )


def test_hvp_of_a_function_that_takes_an_hvp():
    """Fourth derivatives: hvp of x -> <w, H(x) u>, against jvp(grad) and differences."""
    f = FUNCTIONS["tanh(A@x)^2"]
    u = np.array([0.2, 0.1, 0.7])

    def g(x):
        return ad.sum(ad.hvp(f, (x,), (u,))[1] * ad.tensor([1.0, 2.0, 3.0]))

    _, hv = ad.hvp(g, (X,), (V,))
    np.testing.assert_allclose(hv.data, composed_hvp(g, X, V), rtol=1e-10)
    np.testing.assert_allclose(hv.data, fd_hvp(g, X, V), rtol=1e-5, atol=1e-8)
