"""Function transforms against closed forms and finite differences (contract section 6)."""

from __future__ import annotations

import numpy as np
import pytest

import autodiffx as ad
from autodiffx import func

RNG = np.random.default_rng(0)
A = RNG.standard_normal((4, 3))
X = RNG.standard_normal(3)


def f_scalar(x):
    return ad.sum(ad.tanh(ad.tensor(A) @ x) ** 2) + ad.sum(ad.sin(x) * x)


def f_vector(x):
    return ad.tanh(ad.tensor(A) @ x) * ad.exp(x[0])


def numeric_grad(f, x, h=1e-6):
    g = np.zeros_like(x)
    for i in range(x.size):
        e = np.zeros_like(x)
        e.flat[i] = h
        g.flat[i] = (np.asarray(f(x + e)).item() - np.asarray(f(x - e)).item()) / (2 * h)
    return g


def numeric_jac(f, x, h=1e-6):
    cols = []
    for i in range(x.size):
        e = np.zeros_like(x)
        e.flat[i] = h
        cols.append((np.asarray(f(x + e)) - np.asarray(f(x - e))) / (2 * h))
    return np.stack(cols, axis=-1)


def exact_grad(x):
    t = np.tanh(A @ x)
    return 2 * A.T @ (t * (1 - t**2)) + np.cos(x) * x + np.sin(x)


def test_grad_matches_closed_form():
    g = ad.grad(f_scalar)(X)
    assert isinstance(g, ad.Tensor)
    assert g.shape == X.shape
    np.testing.assert_allclose(g.data, exact_grad(X), rtol=1e-12)


def test_value_and_grad_and_has_aux():
    (v, aux), g = ad.value_and_grad(lambda x: (f_scalar(x), "aux"), has_aux=True)(X)
    assert aux == "aux"
    np.testing.assert_allclose(v.item(), f_scalar(ad.tensor(X)).item())
    np.testing.assert_allclose(g.data, exact_grad(X), rtol=1e-12)


def test_grad_argnums_tuple_and_pytrees():
    def loss(params, x):
        return ad.sum((params["w"] * x + params["b"][0]) ** 2)

    params = {"w": ad.tensor([1.0, 2.0]), "b": [ad.tensor(0.5)]}
    x = ad.tensor([3.0, -1.0])
    gp, gx = ad.grad(loss, argnums=(0, 1))(params, x)
    r = params["w"].data * x.data + 0.5
    np.testing.assert_allclose(gp["w"].data, 2 * r * x.data)
    np.testing.assert_allclose(gp["b"][0].data, 2 * r.sum())
    np.testing.assert_allclose(gx.data, 2 * r * params["w"].data)


def test_grad_of_unused_argument_is_zero():
    g = ad.grad(lambda x, y: ad.sum(x * 2), argnums=1)(ad.tensor([1.0]), ad.tensor([5.0, 6.0]))
    np.testing.assert_array_equal(g.data, [0.0, 0.0])


def test_grad_accepts_numbers_and_arrays():
    assert ad.grad(lambda x: x**2)(3.0).item() == 6.0
    np.testing.assert_allclose(ad.grad(lambda x: ad.sum(x**2))(np.array([1.0, 2.0])).data, [2, 4])


def test_grad_non_scalar_output_error():
    with pytest.raises(TypeError, match=r"shape \(3,\).*jacobian"):
        ad.grad(lambda x: x * 2)(np.ones(3))


@pytest.mark.parametrize("order", [2, 3])
def test_higher_order_scalar_derivatives(order):
    f = lambda x: ad.sin(x) * ad.exp(x)
    d = f
    for _ in range(order):
        d = ad.grad(d)
    x0 = 0.3
    exact = {2: 2 * np.cos(x0) * np.exp(x0), 3: 2 * np.exp(x0) * (np.cos(x0) - np.sin(x0))}
    np.testing.assert_allclose(d(x0).item(), exact[order], rtol=1e-12)


def test_vjp_and_jvp_agree_with_jacobian():
    J = numeric_jac(lambda v: np.tanh(A @ v) * np.exp(v[0]), X)
    u = RNG.standard_normal(4)
    v = RNG.standard_normal(3)
    y, back = ad.vjp(f_vector, ad.tensor(X))
    (gu,) = back(ad.tensor(u))
    np.testing.assert_allclose(gu.data, J.T @ u, rtol=1e-7)
    (gu2,) = back(u)  # callable again
    np.testing.assert_allclose(gu2.data, gu.data)
    yo, tv = ad.jvp(f_vector, (X,), (v,))
    np.testing.assert_allclose(tv.data, J @ v, rtol=1e-7)
    np.testing.assert_allclose(yo.data, y.data)
    assert abs(u @ tv.data - gu.data @ v) < 1e-12


def test_jvp_works_for_a_function_whose_vjp_raises():
    class NoVjp(ad.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        def vjp(ctx, g):
            raise RuntimeError("no reverse mode here")

        @staticmethod
        def jvp(ctx, t):
            (x,) = ctx.saved_tensors
            return 2 * x * t

    _, t = ad.jvp(NoVjp.apply, (ad.tensor([3.0]),), (ad.tensor([1.0]),))
    np.testing.assert_allclose(t.data, [6.0])


def test_jvp_tangent_shape_error_names_argument():
    with pytest.raises(ValueError, match=r"argument 1 \(leaf 0\).*\(2,\)"):
        ad.jvp(lambda a, b: a + b, (np.ones(3), np.ones(3)), (np.ones(3), np.ones(2)))


@pytest.mark.parametrize("jac", [ad.jacfwd, ad.jacrev, ad.jacobian])
def test_jacobians_match_finite_differences(jac):
    J = jac(f_vector)(ad.tensor(X))
    assert J.shape == (4, 3)
    np.testing.assert_allclose(
        J.data, numeric_jac(lambda v: np.tanh(A @ v) * np.exp(v[0]), X), rtol=1e-7, atol=1e-9
    )


@pytest.mark.parametrize("mode", ["fwd", "rev"])
@pytest.mark.parametrize("chunk", [None, 1, 2])
def test_jacobian_modes_and_chunks(mode, chunk):
    J = ad.jacobian(f_vector, mode=mode, chunk_size=chunk)(X)
    np.testing.assert_allclose(J.data, ad.jacfwd(f_vector)(X).data, rtol=1e-13)


@pytest.mark.parametrize("n_out", [2, 4])
def test_jacobian_auto_picks_a_mode_without_running_the_other(n_out):
    """auto: reverse for 3 inputs -> 2 outputs; 3 -> 4 goes forward with no backward pass
    (a hook on the variable sees every backward pass that reaches it)."""
    backward_passes = []

    def f(x):
        if x.requires_grad:
            x.register_hook(lambda g: backward_passes.append(1))
        return f_vector(x)[:n_out]

    J = ad.jacobian(f)(X)
    np.testing.assert_allclose(J.data, ad.jacfwd(f_vector)(X).data[:n_out], rtol=1e-13)
    assert len(backward_passes) == (1 if n_out == 2 else 0)


def test_jacobian_of_matrix_input():
    W = RNG.standard_normal((2, 3))
    J = ad.jacrev(lambda w: ad.tanh(w @ ad.tensor(X)))(W)
    assert J.shape == (2, 2, 3)
    Jf = ad.jacfwd(lambda w: ad.tanh(w @ ad.tensor(X)))(W)
    np.testing.assert_allclose(J.data, Jf.data, rtol=1e-13)


def test_hessian_matches_closed_form():
    def f(x):
        return ad.sum(x**3) + x[0] * x[1] * x[2]

    x = np.array([1.0, 2.0, 3.0])
    H = ad.hessian(f)(x)
    exact = np.diag(6 * x) + np.array([[0, x[2], x[1]], [x[2], 0, x[0]], [x[1], x[0], 0]])
    np.testing.assert_allclose(H.data, exact, rtol=1e-13)


def test_hessian_with_matmul_indexing_reductions():
    def f(x):
        return ad.sum(ad.tanh(ad.tensor(A) @ x) ** 2) + ad.max(x[1:] * x[0])

    H = ad.hessian(f)(X)
    num = numeric_jac(lambda v: ad.grad(f)(v).data, X)
    np.testing.assert_allclose(H.data, num, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(H.data, ad.jacrev(ad.jacrev(f))(X).data, rtol=1e-12)
    np.testing.assert_allclose(H.data, ad.jacfwd(ad.jacfwd(f))(X).data, rtol=1e-12)


def test_hvp_is_forward_over_reverse():
    v = RNG.standard_normal(3)
    value, hv = ad.hvp(f_scalar, (X,), (v,))
    H = ad.hessian(f_scalar)(X)
    np.testing.assert_allclose(hv.data, H.data @ v, rtol=1e-12)
    np.testing.assert_allclose(value.item(), f_scalar(ad.tensor(X)).item())


def test_jvp_of_grad_and_grad_of_jvp():
    v = np.array([1.0, 0.0, 0.0])
    _, t = ad.jvp(ad.grad(f_scalar), (X,), (v,))
    H = ad.hessian(f_scalar)(X)
    np.testing.assert_allclose(t.data, H.data[:, 0], rtol=1e-12)
    g = ad.grad(lambda x: ad.jvp(f_scalar, (x,), (v,))[1])(X)
    np.testing.assert_allclose(g.data, H.data[0], rtol=1e-12)


def test_third_derivative_composition():
    f = lambda x: ad.sum(ad.exp(2 * x))
    T = ad.jacfwd(ad.jacfwd(ad.jacrev(f)))(np.array([0.1, 0.2]))
    exact = np.zeros((2, 2, 2))
    exact[0, 0, 0], exact[1, 1, 1] = 8 * np.exp(0.2), 8 * np.exp(0.4)
    np.testing.assert_allclose(T.data, exact, rtol=1e-12)


def test_results_of_top_level_transforms_are_detached():
    assert not ad.grad(f_scalar)(X).requires_grad
    assert not ad.jacrev(f_vector)(X).requires_grad
    assert not ad.jacfwd(f_vector)(X).requires_grad
    assert not ad.hessian(f_scalar)(X).requires_grad


def test_pytree_helpers():
    leaves, d = func.tree_flatten({"a": (1, [2, None]), "b": 3})
    assert leaves == [1, 2, 3]
    assert func.tree_unflatten(d, [4, 5, 6]) == {"a": (4, [5, None]), "b": 6}


def test_jacobians_take_one_vectorized_pass(monkeypatch):
    import autodiffx.autograd as autograd_mod

    calls = []
    real = autograd_mod.run_backward
    monkeypatch.setattr(
        autograd_mod, "run_backward", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    n = 20
    M = RNG.standard_normal((n, n)) / 10
    J = ad.jacrev(lambda x: ad.tanh(ad.tensor(M) @ x))(RNG.standard_normal(n))
    assert J.shape == (n, n)
    assert len(calls) == 1  # all 20 rows in one batched backward pass
    calls.clear()
    ad.jacobian(lambda x: ad.tanh(ad.tensor(M) @ x), mode="rev", chunk_size=5)(np.ones(n))
    assert len(calls) == 4


def test_grad_of_a_closure_over_parameters_trains_by_backward():
    # Sobolev-style: a loss on the input-derivative of a model, trained by .backward().
    w = ad.tensor([0.5, -1.0], requires_grad=True)

    def model(x):
        return ad.sum(ad.tanh(w * x))

    dx = ad.grad(model)(np.array([0.3, 0.7]))
    assert dx.requires_grad
    ad.sum(dx**2).backward()
    x = np.array([0.3, 0.7])

    def loss_of(wv):
        t = np.tanh(wv * x)
        return np.sum((wv * (1 - t**2)) ** 2)

    num = numeric_grad(loss_of, w.data.copy())
    np.testing.assert_allclose(w.grad.data, num, rtol=1e-6)


def test_forward_over_reverse_does_not_record_a_reverse_graph():
    x = np.array([0.2, -0.4])
    _, hv = ad.hvp(lambda v: ad.sum(ad.exp(v) * v), (x,), (np.ones(2),))
    assert not hv.requires_grad
    np.testing.assert_allclose(hv.data, np.exp(x) * (2 + x), rtol=1e-14)


# f writing into its own argument: reverse-mode transforms differentiate with respect to the
# value passed in, so they refuse the write (before: with a Tensor that requires grad, the
# gradient was taken at the written value with no error); forward mode gives f a copy.
def _scale_in_place(x):
    x *= 3.0
    return x * x


def _scale_a_view_in_place(x):
    v = x[0:1]
    v *= 3.0
    return x * x


WRITING_TRANSFORMS = {
    "grad": lambda f, a: ad.grad(lambda x: ad.sum(f(x)))(a),
    "value_and_grad": lambda f, a: ad.value_and_grad(lambda x: ad.sum(f(x)))(a),
    "vjp": lambda f, a: ad.vjp(f, a)[1](np.ones(2)),
    "jacrev": lambda f, a: ad.jacrev(f)(a),
    "jacobian": lambda f, a: ad.jacobian(f)(a),
    "hessian": lambda f, a: ad.hessian(lambda x: ad.sum(f(x)))(a),
    "hvp": lambda f, a: ad.hvp(lambda x: ad.sum(f(x)), (a,), (np.ones(2),)),
    "grad of grad": lambda f, a: ad.grad(lambda w: ad.sum(ad.grad(lambda x: ad.sum(f(x)))(w)))(a),
}
ARGUMENTS = {
    "array": lambda: np.array([1.0, 2.0]),
    "tensor": lambda: ad.tensor([1.0, 2.0]),
    "requires grad": lambda: ad.tensor([1.0, 2.0], requires_grad=True),
}


@pytest.mark.parametrize("arg", sorted(ARGUMENTS))
@pytest.mark.parametrize("write", [_scale_in_place, _scale_a_view_in_place])
@pytest.mark.parametrize("name", sorted(WRITING_TRANSFORMS))
def test_reverse_transforms_refuse_writes_into_their_argument(name, write, arg):
    a = ARGUMENTS[arg]()
    with pytest.raises(RuntimeError, match=r"f modifies its argument 0 .* in place.*x\.copy\(\)"):
        WRITING_TRANSFORMS[name](write, a)
    np.testing.assert_array_equal(a.data if isinstance(a, ad.Tensor) else a, [1.0, 2.0])


@pytest.mark.parametrize("arg", sorted(ARGUMENTS))
def test_transforms_differentiate_at_the_value_passed_in(arg):
    # Writing into a copy (the advice of the error), and forward mode (which copies itself),
    # give the derivative of sum(9 x^2): 18 x.
    def f(x):
        return _scale_in_place(x.copy())

    a = ARGUMENTS[arg]()
    want = np.diag([18.0, 36.0])
    np.testing.assert_allclose(ad.grad(lambda x: ad.sum(f(x)))(a).data, [18.0, 36.0])
    np.testing.assert_allclose(ad.jacrev(f)(a).data, want)
    np.testing.assert_allclose(ad.hessian(lambda x: ad.sum(f(x)))(a).data, np.diag([18.0] * 2))
    np.testing.assert_allclose(ad.jacfwd(_scale_in_place)(a).data, want)
    np.testing.assert_allclose(ad.jvp(_scale_in_place, (a,), (np.ones(2),))[1].data, [18, 36])
    np.testing.assert_array_equal(a.data if isinstance(a, ad.Tensor) else a, [1.0, 2.0])
