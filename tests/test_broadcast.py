"""Properties of fitting a cotangent to its input (the engine's one place broadcasting is
undone: sum over broadcast axes, broadcast up, cast) and of gradients that flow through
broadcasting ops.

The fitting is observed through the public API: a custom ``ad.autograd.Function`` whose rule
returns a given cotangent ``g`` as it is, whatever the input's shape and dtype; the gradient
the engine delivers for the input is ``g`` fitted to it."""

from __future__ import annotations

import numpy as np
import pytest
import strategies as S
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import autodiffx as ad
from autodiffx.forward import dual_level, make_dual, unpack_dual

F64 = np.dtype(np.float64)


class _Returns(ad.autograd.Function):
    """The identity, whose rule returns ``ctx.g`` (any shape or dtype) for the input."""

    @staticmethod
    def forward(ctx, x, g):
        ctx.g = g
        return x * 1

    @staticmethod
    def vjp(ctx, _):
        return ctx.g, None


def fit(g, shape, dtype, *, create_graph=False):
    """The gradient the engine delivers to a tensor of ``shape`` and ``dtype`` whose rule
    returned ``g``: an ndarray, or with ``create_graph`` a Tensor (``g`` may be one)."""
    x = ad.Tensor(np.zeros(shape, dtype), requires_grad=True)
    y = _Returns.apply(x, g)
    (gx,) = ad.autograd.grad(y, x, grad_outputs=np.ones(shape, dtype), create_graph=create_graph)
    return gx if create_graph else gx.data


@st.composite
def small_and_big(draw):
    """A shape ``s`` and a shape ``b`` that ``s`` broadcasts to (leading and size-1 axes)."""
    small, other = draw(S.broadcastable_shapes(2))
    return small, np.broadcast_shapes(small, other)


def _values(draw, shape, dtype=np.float64):
    return draw(S.REAL.strategy(shape, dtype))


@given(shapes=small_and_big(), data=st.data())
def test_fit_sums_to_the_input_shape(shapes, data):
    small, big = shapes
    g = _values(data.draw, big)
    out = fit(g, small, F64)
    assert out.shape == small
    assert out.dtype == F64
    # Brute force: sum g over every element that a given element of x was broadcast to.
    n = int(np.prod(small))
    idx = np.broadcast_to(np.arange(n).reshape(small), big)
    want = np.bincount(idx.ravel(), weights=g.ravel(), minlength=n).reshape(small)
    np.testing.assert_allclose(out, want, rtol=1e-12, atol=1e-12)


@given(shapes=small_and_big(), data=st.data())
def test_fit_is_the_adjoint_of_broadcast_to(shapes, data):
    """<fit(g), x> == <g, broadcast_to(x)>: summing is the transpose of broadcasting."""
    small, big = shapes
    g, x = _values(data.draw, big), _values(data.draw, small)
    lhs = np.sum(fit(g, small, F64) * x)
    rhs = np.sum(g * np.broadcast_to(x, big))
    np.testing.assert_allclose(lhs, rhs, rtol=1e-12, atol=1e-12)


@given(shapes=small_and_big(), data=st.data())
def test_fit_broadcasts_a_smaller_cotangent_up(shapes, data):
    """A keepdims-shaped (or scalar) cotangent is broadcast to the input's shape, and that
    direction is the adjoint of summing."""
    small, big = shapes
    g, y = _values(data.draw, small), _values(data.draw, big)
    up = fit(g, big, F64)
    assert up.shape == big
    np.testing.assert_array_equal(up, np.broadcast_to(g, big))
    np.testing.assert_allclose(
        np.sum(up * y), np.sum(g * fit(y, small, F64)), rtol=1e-12, atol=1e-12
    )


@given(shape=S.shapes(), data=st.data())
def test_fit_identity_and_idempotence(shape, data):
    g = _values(data.draw, shape)
    np.testing.assert_array_equal(fit(g, shape, F64), g)
    big = (2, *shape)
    once = fit(_values(data.draw, big), shape, F64)
    np.testing.assert_array_equal(fit(once, shape, F64), once)


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        (np.float64, np.float32),
        (np.float32, np.float64),
        (np.complex128, np.float64),
        (np.complex128, np.float32),
        (np.float64, np.complex128),
        (np.complex64, np.complex128),
    ],
)
def test_fit_casts_the_dtype(src, dst, rng):
    g = rng.standard_normal((2, 3))
    if np.dtype(src).kind == "c":
        g = g + 1j * rng.standard_normal((2, 3))
    g = S.readonly(g.astype(src))
    out = fit(g, (3,), np.dtype(dst))
    assert out.dtype == np.dtype(dst)
    assert out.shape == (3,)
    want = g.sum(axis=0)
    if np.dtype(dst).kind != "c":
        want = want.real  # complex to real keeps the real part (the JAX convention)
    tol = 1e-6 if np.float32 in (src, dst) or np.complex64 in (src, dst) else 1e-12
    np.testing.assert_allclose(out, want.astype(dst), rtol=tol)


def test_fit_does_not_write_to_a_read_only_cotangent(rng):
    g = S.readonly(rng.standard_normal((4, 1, 3)))
    out = fit(g, (1, 3), F64)
    np.testing.assert_allclose(out, g.sum(axis=0))
    assert not g.flags.writeable


def test_fit_on_tensors_is_differentiable(rng):
    """In a recorded (create_graph) pass fit acts on Tensors, and its own VJP broadcasts."""
    g = ad.Tensor(rng.standard_normal((2, 3)), requires_grad=True)
    out = fit(g, (1, 3), F64, create_graph=True)
    assert isinstance(out, ad.Tensor)
    assert out.shape == (1, 3)
    w = rng.standard_normal((1, 3))
    (gg,) = ad.autograd.grad((out * w).sum(), g)
    np.testing.assert_allclose(gg.data, np.broadcast_to(w, (2, 3)))
    up = fit(ad.Tensor(np.array(2.0), requires_grad=True), (2, 2), F64, create_graph=True)
    assert isinstance(up, ad.Tensor)
    assert up.shape == (2, 2)


# ----- gradients through broadcasting ops --------------------------------------------------
@pytest.mark.parametrize(
    ("sa", "sb"),
    [((3, 1), (1, 4)), ((), (2, 3)), ((3,), (2, 3)), ((2, 1, 3), (4, 1)), ((1,), ())],
)
@pytest.mark.parametrize("op", ["add", "subtract", "multiply", "divide", "maximum", "hypot"])
def test_binary_gradients_are_summed_over_broadcast_axes(op, sa, sb, rng):
    a = S.NEAR_INT.sample(rng, sa, np.float64) + 2.5  # nonzero and never tied with b
    b = S.NEAR_HALF.sample(rng, sb, np.float64) + 2.5
    ta, tb = ad.Tensor(a, requires_grad=True), ad.Tensor(b, requires_grad=True)
    out = ad.REGISTRY[op](ta, tb)
    big = np.broadcast_shapes(sa, sb)
    g = S.readonly(rng.standard_normal(big))
    ga, gb = ad.autograd.grad(out, [ta, tb], grad_outputs=[g])
    # Per-element partials, computed on the broadcast arrays, then summed by hand.
    ab, bb = np.broadcast_to(a, big), np.broadcast_to(b, big)
    da, db = {
        "add": (np.ones(big), np.ones(big)),
        "subtract": (np.ones(big), -np.ones(big)),
        "multiply": (bb, ab),
        "divide": (1 / bb, -ab / bb**2),
        "maximum": ((ab > bb) * 1.0, (bb > ab) * 1.0),
        "hypot": (ab / np.hypot(ab, bb), bb / np.hypot(ab, bb)),
    }[op]
    for got, d, shape in [(ga, da, sa), (gb, db, sb)]:
        assert got.shape == shape
        assert got.dtype == np.float64
        lead = len(big) - len(shape)
        axes = tuple(range(lead)) + tuple(
            lead + i for i, s in enumerate(shape) if s == 1 and big[lead + i] != 1
        )
        want = np.sum(g * d, axis=axes, keepdims=True).reshape(shape)
        np.testing.assert_allclose(got.data, want, rtol=1e-12, atol=1e-14)


def test_mixed_precision_gradients_keep_each_dtype(rng):
    a = ad.Tensor(rng.standard_normal((2, 1)).astype(np.float32), requires_grad=True)
    b = ad.Tensor(rng.standard_normal(3), requires_grad=True)
    out = a * b
    assert out.dtype == np.float64
    ga, gb = ad.autograd.grad(out.sum(), [a, b])
    assert (ga.shape, ga.dtype) == ((2, 1), np.float32)
    assert (gb.shape, gb.dtype) == ((3,), np.float64)
    c = ad.Tensor(np.ones(3, np.float32), requires_grad=True)
    y = c * 2.5  # NEP 50: a Python float does not promote float32
    assert y.dtype == np.float32
    (gc,) = ad.autograd.grad(y.sum(), c)
    assert gc.dtype == np.float32


def test_broadcast_to_gradient_and_tangent(rng):
    x = ad.Tensor(rng.standard_normal((3, 1)), requires_grad=True)
    y = ad.broadcast_to(x, (2, 3, 4))
    g = rng.standard_normal((2, 3, 4))
    (gx,) = ad.autograd.grad(y, x, grad_outputs=[g])
    np.testing.assert_allclose(gx.data, g.sum(axis=(0, 2))[:, None], rtol=1e-12)
    v = rng.standard_normal((3, 1))
    with dual_level():
        t = unpack_dual(ad.broadcast_to(make_dual(x.detach(), v), (2, 3, 4))).tangent
    np.testing.assert_array_equal(t.data, np.broadcast_to(v, (2, 3, 4)))


def test_tangents_of_broadcast_inputs_have_the_output_shape(rng):
    """Forward mode: a tangent of a smaller input is broadcast with the primal."""
    x = rng.standard_normal(3)
    y = ad.Tensor(rng.standard_normal((2, 3)))
    v = rng.standard_normal(3)
    with dual_level():
        out = make_dual(ad.Tensor(x), ad.Tensor(v)) * y
        t = unpack_dual(out).tangent
    assert t.shape == (2, 3)
    np.testing.assert_allclose(t.data, v * y.data, rtol=1e-12)


@given(shapes=S.broadcastable_shapes(3), data=st.data())
def test_where_gradients_fit_every_operand(shapes, data):
    sc, sa, sb = shapes
    c = data.draw(hnp.arrays(np.bool_, sc))
    a = ad.Tensor(_values(data.draw, sa), requires_grad=True)
    b = ad.Tensor(_values(data.draw, sb), requires_grad=True)
    out = ad.where(c, a, b)
    g = np.ones(out.shape)
    ga, gb = ad.autograd.grad(out, [a, b], grad_outputs=[g])
    assert ga.shape == sa
    assert gb.shape == sb
    # Each output element's cotangent goes to exactly one branch.
    np.testing.assert_allclose(ga.data.sum() + gb.data.sum(), g.sum())
