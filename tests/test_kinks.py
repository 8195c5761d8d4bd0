"""The published kink conventions, at the kinks: relu-like spellings agree at 0, abs'(0) = 0,
ties split the gradient equally, piecewise-constant ops have derivative 0."""

from __future__ import annotations

import numpy as np
import pytest

import autodiffx as ad
from autodiffx.forward import dual_level, make_dual, unpack_dual

X = np.array([-2.0, -0.0, 0.0, 1.5])  # both zeros: the sign of zero must not matter
RELU_DERIV = np.array([0.0, 0.0, 0.0, 1.0])


def _reverse(f, x):
    t = ad.tensor(x, requires_grad=True)
    (g,) = ad.autograd.grad(f(t), t, grad_outputs=[np.ones(np.shape(x))])
    return g.data


def _forward(f, x):
    with dual_level():
        out = f(make_dual(ad.tensor(x), ad.tensor(np.ones(np.shape(x)))))
        t = unpack_dual(out).tangent
    return np.zeros(np.shape(x)) if t is None else t.data


def _relu():
    nn = pytest.importorskip("autodiffx.nn.functional")
    return nn.relu


RELU_SPELLINGS = {
    "maximum(x, 0)": lambda x: ad.maximum(x, 0.0),
    "maximum(0, x)": lambda x: ad.maximum(0.0, x),
    "clip(x, 0, None)": lambda x: ad.clip(x, 0, None),
    "where(x > 0, x, 0)": lambda x: ad.where(x > 0, x, 0.0),
    "np.maximum(x, 0)": lambda x: np.maximum(x, 0.0),
    "nn.functional.relu": lambda x: _relu()(x),
}


@pytest.mark.parametrize("spelling", RELU_SPELLINGS)
@pytest.mark.parametrize("mode", [_reverse, _forward], ids=["reverse", "forward"])
def test_relu_spellings_have_derivative_zero_at_zero(spelling, mode):
    f = RELU_SPELLINGS[spelling]
    np.testing.assert_array_equal(np.asarray(f(ad.tensor(X)).data), np.maximum(X, 0.0))
    np.testing.assert_array_equal(mode(f, X), RELU_DERIV)


@pytest.mark.parametrize("mode", [_reverse, _forward], ids=["reverse", "forward"])
def test_clip_bounds_and_minimum_with_constant(mode):
    x = np.array([-1.0, 0.0, 0.5, 1.0, 2.0])
    np.testing.assert_array_equal(mode(lambda t: ad.clip(t, 0.0, 1.0), x), [0, 0, 1, 0, 0])
    np.testing.assert_array_equal(mode(lambda t: ad.minimum(t, 1.0), x), [1, 1, 1, 0, 0])


@pytest.mark.parametrize("mode", [_reverse, _forward], ids=["reverse", "forward"])
def test_abs_derivative_is_zero_at_zero(mode):
    np.testing.assert_array_equal(mode(ad.abs, X), [-1.0, 0.0, 0.0, 1.0])
    z = np.array([0.0 + 0.0j, 3.0 + 4.0j])
    # Complex |z|: the partial conj(z)/|z|, and 0 at z = 0 (no nan).
    g = _reverse(ad.abs, z)
    np.testing.assert_allclose(g, [0.0, (3.0 - 4.0j) / 5.0])


@pytest.mark.parametrize("name", ["sign", "floor", "ceil", "rint", "trunc"])
@pytest.mark.parametrize("mode", [_reverse, _forward], ids=["reverse", "forward"])
def test_piecewise_constant_ops_have_derivative_zero(name, mode):
    x = np.array([-1.0, -0.5, 0.0, 0.5, 1.0, 2.3])  # jumps included
    np.testing.assert_array_equal(mode(ad.REGISTRY[name], x), np.zeros_like(x))


@pytest.mark.parametrize(("op", "np_op"), [(ad.maximum, np.maximum), (ad.minimum, np.minimum)])
def test_ties_between_two_variables_split_equally(op, np_op):
    a_val = np.array([1.0, 2.0, 3.0])
    b_val = np.array([1.0, 5.0, 0.0])  # tie, b wins/loses, a wins/loses
    a = ad.tensor(a_val, requires_grad=True)
    b = ad.tensor(b_val, requires_grad=True)
    out = op(a, b)
    np.testing.assert_array_equal(out.data, np_op(a_val, b_val))
    ga, gb = ad.autograd.grad(out, [a, b], grad_outputs=[np.ones(3)])
    a_wins = (np_op(a_val, b_val) == a_val) & (a_val != b_val)
    np.testing.assert_array_equal(ga.data, np.where(a_val == b_val, 0.5, a_wins * 1.0))
    np.testing.assert_array_equal(gb.data, np.where(a_val == b_val, 0.5, 1.0 - a_wins))
    np.testing.assert_array_equal(ga.data + gb.data, np.ones(3))  # nothing lost or doubled
    with dual_level():
        ta, tb = np.array([1.0, 10.0, 100.0]), np.array([3.0, 30.0, 300.0])
        t = unpack_dual(op(make_dual(ad.tensor(a_val), ta), make_dual(ad.tensor(b_val), tb)))
    want = np.where(a_val == b_val, (ta + tb) / 2, np.where(a_wins, ta, tb))
    np.testing.assert_array_equal(t.tangent.data, want)


@pytest.mark.parametrize("op", [ad.maximum, ad.minimum])
def test_same_tensor_in_both_arguments_has_derivative_one(op):
    x = ad.tensor([1.0, -2.0], requires_grad=True)
    (g,) = ad.autograd.grad(op(x, x), x, grad_outputs=[np.ones(2)])
    np.testing.assert_array_equal(g.data, [1.0, 1.0])


@pytest.mark.parametrize(("name", "np_op"), [("max", np.max), ("min", np.min)])
def test_reduction_ties_split_equally(name, np_op):
    vals = np.array([[3.0, 1.0, 3.0], [2.0, 2.0, 2.0]])
    red = getattr(ad, name)
    x = ad.tensor(vals if name == "max" else -vals, requires_grad=True)
    (g,) = ad.autograd.grad(red(x), x)
    np.testing.assert_array_equal(g.data, [[0.5, 0, 0.5], [0, 0, 0]])
    (g,) = ad.autograd.grad(red(x, axis=1), x, grad_outputs=[np.ones(2)])
    np.testing.assert_allclose(g.data, [[0.5, 0, 0.5], [1 / 3, 1 / 3, 1 / 3]], rtol=1e-15)
    with dual_level():
        t = np.arange(6.0).reshape(2, 3)
        out = red(make_dual(ad.tensor(x.data), t), axis=1)
        np.testing.assert_allclose(unpack_dual(out).tangent.data, [(0 + 2) / 2, (3 + 4 + 5) / 3])
    np.testing.assert_array_equal(red(x, axis=1).data, np_op(x.data, axis=1))


def test_kinks_do_not_leak_nan_into_second_derivatives():
    """d2/dx2 relu(x) and |x| at 0 are 0, not nan."""
    for f in (lambda t: ad.maximum(t, 0.0), ad.abs, lambda t: ad.clip(t, 0, None)):
        x = ad.tensor(X, requires_grad=True)
        (g,) = ad.autograd.grad(f(x), x, grad_outputs=[np.ones(4)], create_graph=True)
        assert not np.isnan(g.data).any()
        if not g.requires_grad:  # a gradient that is constant in x: second derivative 0
            continue
        (h,) = ad.autograd.grad(g, x, grad_outputs=[np.ones(4)], allow_unused=True)
        assert h is None or np.array_equal(h.data, np.zeros(4))


STD_ZERO_SPREAD = {
    "one element": (np.array([3.0]), None),
    "equal elements": (np.array([2.0, 2.0, 2.0]), None),
    "one row of equal elements": (np.array([[1.0, 1.0, 1.0], [1.0, 2.0, 4.0]]), 1),
}


@pytest.mark.parametrize("case", STD_ZERO_SPREAD)
@pytest.mark.parametrize("spelling", ["ad.std", "np.std", "method"])
def test_std_at_zero_spread_has_derivative_zero(case, spelling):
    """std at zero spread: gradient, tangent and Hessian 0 (PyTorch's), not nan; the rows
    with spread keep their derivatives."""
    x0, axis = STD_ZERO_SPREAD[case]
    std = {"ad.std": ad.std, "np.std": np.std, "method": lambda t, axis: t.std(axis=axis)}
    f = lambda t: std[spelling](t, axis=axis).sum()
    d = x0 - x0.mean(axis=axis, keepdims=True)
    s = np.sqrt((d * d).mean(axis=axis, keepdims=True))
    want = np.where(s == 0, 0.0, d / (x0.shape[-1] * np.where(s == 0, 1.0, s)))
    np.testing.assert_allclose(ad.grad(f)(x0).data, want, rtol=1e-14, atol=0)
    t = np.arange(1.0, x0.size + 1).reshape(x0.shape)
    np.testing.assert_allclose(ad.jvp(f, (x0,), (t,))[1].data, np.sum(want * t), rtol=1e-14)
    h = ad.hessian(f)(x0).data.reshape(x0.size, x0.size)
    assert np.isfinite(h).all()
    np.testing.assert_allclose(ad.hvp(f, (x0,), (t,))[1].data, (h @ t.ravel()).reshape(t.shape))
    if axis is None:
        np.testing.assert_array_equal(h, 0.0)
    else:  # the row without spread has a zero block; the other row its own Hessian
        np.testing.assert_array_equal(h[:3], 0.0)
        np.testing.assert_array_equal(h[:, :3], 0.0)
        row = ad.hessian(lambda r: ad.std(r))(x0[1]).data
        np.testing.assert_allclose(h[3:, 3:], row, rtol=1e-14)


def test_std_at_zero_spread_keeps_float32():
    x = ad.tensor([2.0, 2.0], dtype=np.float32, requires_grad=True)
    y = ad.std(x)
    y.backward()
    assert y.dtype == np.float32 and x.grad.dtype == np.float32
    np.testing.assert_array_equal(x.grad.data, [0.0, 0.0])
