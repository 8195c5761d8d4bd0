"""``ad.nn``: stability at large |x|, kinks, derivatives, PyTorch parity, Module semantics.

Derivatives are checked in reverse, forward and second order against central differences.
"""

from __future__ import annotations

import copy
import math

import _reference
import numpy as np
import pytest

import autodiffx as ad
import autodiffx.autograd
import autodiffx.forward
import autodiffx.io as adio
import autodiffx.nn as nn
from autodiffx.fd import directional
from autodiffx.nn import functional as F

# ----- the activations, each with an independent scalar reference ------------------------


def _ref_sigmoid(x):
    return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))


def _ref_softplus(x, beta=1.0, threshold=20.0):
    if beta * x > threshold:
        return x
    bx = beta * x
    return (max(bx, 0.0) + math.log1p(math.exp(-abs(bx)))) / beta


def _ref_gelu_tanh(x):
    if abs(x) > 1e4:
        return x if x > 0 else -0.0
    return 0.5 * x * (1 + math.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


ACTIVATIONS = {
    "sigmoid": (F.sigmoid, _ref_sigmoid),
    "relu": (F.relu, lambda x: max(x, 0.0)),
    "leaky_relu": (lambda x: F.leaky_relu(x, 0.1), lambda x: x if x > 0 else 0.1 * x),
    "softplus": (F.softplus, _ref_softplus),
    "softplus_beta": (lambda x: F.softplus(x, beta=3.0, threshold=5.0),
                      lambda x: _ref_softplus(x, 3.0, 5.0)),
    "smooth_relu": (lambda x: F.smooth_relu(x, 2.0), lambda x: _ref_softplus(x, 2.0, math.inf)),
    "smooth_heaviside": (lambda x: F.smooth_heaviside(x, 4.0), lambda x: _ref_sigmoid(4 * x)),
    "smooth_leaky_relu": (lambda x: F.smooth_leaky_relu(x, 0.2, 2.0),
                          lambda x: 0.2 * x + 0.8 * _ref_softplus(x, 2.0, math.inf)),
    "log_sigmoid": (F.log_sigmoid, lambda x: -_ref_softplus(-x, 1.0, math.inf)),
    "elu": (lambda x: F.elu(x, 1.5), lambda x: x if x > 0 else 1.5 * math.expm1(x)),
    "gelu": (F.gelu, lambda x: 0.5 * x * math.erfc(-x / math.sqrt(2))),
    "gelu_tanh": (lambda x: F.gelu(x, approximate="tanh"), _ref_gelu_tanh),
    "tanh": (F.tanh, math.tanh),
}  # fmt: skip
EXTREME = np.array([-1e300, -1e6, -1000.0, -50.0, -1.0, 0.0, 1.0, 50.0, 1000.0, 1e6, 1e300])


def _strict():
    return np.errstate(over="raise", divide="raise", invalid="raise")


def _all_finite(*arrays):
    return all(np.all(np.isfinite(np.asarray(a))) for a in arrays)


def _second(g, x):
    """d(sum g)/dx, or None when g is constant (piecewise-linear functions)."""
    if not g.requires_grad:
        return None
    return ad.autograd.grad(g.sum(), x, allow_unused=True)[0]


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_stable_at_extreme_inputs(name):
    fn, ref = ACTIVATIONS[name]
    x = ad.tensor(EXTREME, requires_grad=True)
    with _strict():
        y = fn(x)
    assert _all_finite(y.data)
    expect = np.array([ref(float(v)) for v in EXTREME])
    np.testing.assert_allclose(y.data, expect, rtol=1e-12, atol=1e-300)
    # first and second derivatives (reverse), finite everywhere
    (g,) = ad.autograd.grad(y.sum(), x, create_graph=True)
    h = _second(g, x)
    assert _all_finite(g.data)
    assert h is None or _all_finite(h.data)
    # forward mode
    with _strict(), ad.forward.dual_level():
        xd = ad.forward.make_dual(ad.tensor(EXTREME), ad.ones(EXTREME.shape))
        t = ad.forward.unpack_dual(fn(xd)).tangent
    assert t is None or _all_finite(t.data)
    if t is not None:
        np.testing.assert_allclose(t.data, g.data, rtol=1e-14, atol=0)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_values_and_float32(name):
    fn, ref = ACTIVATIONS[name]
    x = np.linspace(-6, 6, 25)
    np.testing.assert_allclose(fn(ad.tensor(x)).data, [ref(v) for v in x], rtol=1e-13, atol=1e-15)
    y32 = fn(ad.tensor(x.astype(np.float32)))
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32.data, [ref(v) for v in x], rtol=2e-6, atol=2e-6)


# Points away from every kink (0, and the softplus threshold 5/3).
_PTS = np.array([-2.7, -1.3, -0.4, 0.35, 0.9, 1.1, 2.2, 3.1])


def _f_np(fn):
    return lambda x: fn(ad.tensor(x)).data


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_derivatives_against_central_differences(name):
    fn = ACTIVATIONS[name][0]
    rng = np.random.default_rng(abs(hash(name)) % 2**32)
    u, v, w = (rng.normal(size=_PTS.shape) for _ in range(3))
    (jv_fd,) = directional(_f_np(fn), [_PTS], [v])
    # reverse
    x = ad.tensor(_PTS, requires_grad=True)
    (vjp,) = ad.autograd.grad((fn(x) * u).sum(), x, create_graph=True)
    np.testing.assert_allclose(vjp.data @ v, u @ jv_fd, rtol=1e-8, atol=1e-10)
    # forward, and its agreement with reverse
    with ad.forward.dual_level():
        t = ad.forward.unpack_dual(fn(ad.forward.make_dual(ad.tensor(_PTS), ad.tensor(v)))).tangent
    np.testing.assert_allclose(t.data, jv_fd, rtol=1e-8, atol=1e-10)
    assert u @ t.data == pytest.approx(vjp.data @ v, rel=1e-13, abs=1e-15)
    # second order: d/dx <u, f'(x) w> by double backward vs differences of the VJP
    hw = _second(vjp * w, x)
    hw = np.zeros_like(_PTS) if hw is None else hw.data

    def vjp_np(xx):
        xt = ad.tensor(xx, requires_grad=True)
        return ad.autograd.grad((fn(xt) * u).sum(), xt)[0].data

    (hw_fd,) = directional(vjp_np, [_PTS], [w])
    np.testing.assert_allclose(hw, hw_fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("axis", [0, -1, 1])
def test_softmax_family(axis):
    from scipy.special import log_softmax as sp_log_softmax
    from scipy.special import logsumexp as sp_logsumexp
    from scipy.special import softmax as sp_softmax

    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 4)) * 3
    x[0, 0] = 1e300
    x[1, 2] = -1e300
    x[2] = [1000.0, -1000.0, 999.0, 0.0]
    xt = ad.tensor(x, requires_grad=True)
    with _strict():
        s, ls, lse = F.softmax(xt, axis), F.log_softmax(xt, dim=axis), F.logsumexp(xt, axis)
    with np.errstate(over="ignore", invalid="ignore"):
        np.testing.assert_allclose(s.data, sp_softmax(x, axis=axis), rtol=1e-13, atol=1e-300)
        np.testing.assert_allclose(ls.data, sp_log_softmax(x, axis=axis), rtol=1e-13)
        np.testing.assert_allclose(lse.data, sp_logsumexp(x, axis=axis), rtol=1e-13)
    u = rng.normal(size=x.shape)
    for y in (s, ls):
        (g,) = ad.autograd.grad((y * u).sum(), xt, retain_graph=True)
        assert _all_finite(g.data)
    # derivatives at moderate values
    x = rng.normal(size=(3, 4))
    v = rng.normal(size=x.shape)
    for fn in (lambda z: F.softmax(z, axis), lambda z: F.log_softmax(z, axis)):
        (jv,) = directional(_f_np(fn), [x], [v])
        xt = ad.tensor(x, requires_grad=True)
        (g,) = ad.autograd.grad((fn(xt) * u).sum(), xt)
        assert np.sum(g.data * v) == pytest.approx(np.sum(u * jv), rel=1e-8)


def test_log_softmax_with_masked_entries():
    x = ad.tensor([[0.0, -np.inf, 1.0], [2.0, 2.0, -np.inf]], requires_grad=True)
    y = F.log_softmax(x)
    assert np.all(np.isneginf(y.data[[0, 1], [1, 2]]))
    np.testing.assert_allclose(np.exp(y.data).sum(axis=1), 1.0)
    probs = np.array([[0.5, 0.0, 0.5], [0.25, 0.75, 0.0]])
    for loss in (
        lambda: F.cross_entropy(x, [2, 0]),
        lambda: F.cross_entropy(x, [-100, 0], weight=[1.0, 2.0, 3.0]),  # ignored row: -inf
        lambda: F.cross_entropy(x, [2, -100], label_smoothing=0.0),
        lambda: F.cross_entropy(x, probs),
        lambda: F.nll_loss(F.log_softmax(x), [0, 1], reduction="none"),
    ):
        x.grad = None
        ls = loss()
        ls.sum().backward()
        assert _all_finite(ls.data, x.grad.data)
        np.testing.assert_array_equal(x.grad.data[[0, 1], [1, 2]], 0.0)


def test_heaviside_values_and_zero_derivative():
    x = ad.tensor([-2.0, 0.0, 3.0, -1e300, 1e300], requires_grad=True)
    np.testing.assert_array_equal(F.heaviside(x).data, [0, 0, 1, 0, 1])
    np.testing.assert_array_equal(F.heaviside(x, 0.5).data, [0, 0.5, 1, 0, 1])
    F.heaviside(x).sum().backward()
    np.testing.assert_array_equal(x.grad.data, np.zeros(5))
    with ad.forward.dual_level():
        t = ad.forward.unpack_dual(F.heaviside(ad.forward.make_dual(x.detach(), ad.ones(5))))
    assert t.tangent is None or not np.any(t.tangent.data)


def _d_at(fn, x0):
    """Reverse and forward derivative of a scalar function at x0."""
    x = ad.tensor(x0, requires_grad=True)
    fn(x).backward()
    with ad.forward.dual_level():
        t = ad.forward.unpack_dual(fn(ad.forward.make_dual(ad.tensor(x0), ad.tensor(1.0))))
    return x.grad.item(), (0.0 if t.tangent is None else t.tangent.item())


def test_kink_conventions():
    # relu'(0) = 0, and the spellings of relu agree
    for spelling in (F.relu, lambda x: ad.maximum(x, 0), lambda x: ad.clip(x, 0, None),
                     lambda x: ad.where(x > 0, x, 0), lambda x: nn.ReLU()(x)):  # fmt: skip
        assert _d_at(spelling, 0.0) == (0.0, 0.0)
    assert _d_at(lambda x: F.leaky_relu(x, 0.2), 0.0) == (0.2, 0.2)
    assert _d_at(lambda x: F.elu(x, 2.5), 0.0) == (2.5, 2.5)
    assert _d_at(lambda x: F.l1_loss(x, 0.0), 0.0) == (0.0, 0.0)
    assert _d_at(lambda x: F.hinge_loss(x, 1.0), 1.0) == (0.0, 0.0)
    assert _d_at(lambda x: F.hinge_loss(x, 1.0), 0.5) == (-1.0, -1.0)
    # softplus at its threshold takes the smooth branch (beta x > threshold switches)
    d = _d_at(lambda x: F.softplus(x, beta=2.0, threshold=4.0), 2.0)
    assert d[0] == pytest.approx(_ref_sigmoid(4.0), rel=1e-15)
    assert d[0] == d[1]
    assert _d_at(lambda x: F.softplus(x, beta=2.0, threshold=4.0), 2.5) == (1.0, 1.0)


# ----- losses ------------------------------------------------------------------------------
def test_losses_stable_at_extreme_logits():
    big = np.array([[1000.0, -1000.0, 0.0], [-1e300, 1e300, 0.0], [0.0, 0.0, 0.0]])
    x = ad.tensor(big, requires_grad=True)
    y = np.array([1, 0, 2])
    with _strict():
        ce = F.cross_entropy(x, y)
    ce.backward()
    assert np.isfinite(ce.item())
    assert _all_finite(x.grad.data)
    expect = (2000.0 + 2e300 + math.log(3)) / 3
    assert ce.item() == pytest.approx(expect, rel=1e-14)

    z = ad.tensor(EXTREME, requires_grad=True)
    t = (np.arange(EXTREME.size) % 2).astype(float)
    s = 2 * t - 1
    for loss in (
        lambda: F.binary_cross_entropy_with_logits(z, t, reduction="none"),
        lambda: F.binary_cross_entropy_with_logits(z, t, pos_weight=3.0),
        lambda: F.soft_margin_hinge_loss(z, s, beta=5.0),
        lambda: F.soft_margin_loss(z, s, reduction="sum"),
        lambda: F.hinge_loss(z, s),
    ):
        z.grad = None
        with _strict():
            val = loss()
        (g,) = ad.autograd.grad(val.sum(), z, create_graph=True)
        h = _second(g, z)
        assert _all_finite(val.data, g.data)
        assert h is None or _all_finite(h.data)
    # exact values at ±1000 of the logit losses
    b = F.binary_cross_entropy_with_logits(
        ad.tensor([1000.0, -1000.0]), [0.0, 1.0], reduction="none"
    )
    np.testing.assert_array_equal(b.data, [1000.0, 1000.0])
    # probabilities exactly 0 and 1: the clamped logs
    p = ad.tensor([0.0, 1.0, 0.0, 1.0], requires_grad=True)
    with _strict():
        bce = F.binary_cross_entropy(p, [1.0, 0.0, 0.0, 1.0], reduction="none")
    np.testing.assert_allclose(bce.data, [100.0, 100.0, 0.0, 0.0], rtol=1e-14)
    bce.sum().backward()
    assert _all_finite(p.grad.data)


def test_loss_values_by_hand():
    x = ad.tensor([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]])
    lse0 = math.log(math.exp(1) + math.exp(2) + math.exp(3))
    assert F.cross_entropy(x, [2, 0]).item() == pytest.approx(((lse0 - 3) + math.log(3)) / 2)
    assert F.cross_entropy(x, [2, -100]).item() == pytest.approx(lse0 - 3)
    w = np.array([1.0, 2.0, 3.0])
    expect = (3 * (lse0 - 3) + 1 * math.log(3)) / 4
    assert F.cross_entropy(x, [2, 0], weight=w).item() == pytest.approx(expect)
    np.testing.assert_allclose(
        F.cross_entropy(x, [2, 0], reduction="none").data, [lse0 - 3, math.log(3)]
    )
    probs = np.array([[0.0, 0.5, 0.5], [1.0, 0.0, 0.0]])
    expect = ((lse0 - 2.5) + math.log(3)) / 2
    assert F.cross_entropy(x, probs).item() == pytest.approx(expect)
    assert F.mse_loss(ad.tensor([1.0, 3.0]), [0.0, 1.0]).item() == 2.5
    assert F.l1_loss(ad.tensor([1.0, 3.0]), [0.0, 1.0], reduction="sum").item() == 3.0
    assert F.hinge_loss(ad.tensor([0.5, 2.0]), [1.0, -1.0]).item() == pytest.approx(1.75)
    sm = F.soft_margin_hinge_loss(ad.tensor([0.5]), [1.0], margin=1.0, beta=2.0).item()
    assert sm == pytest.approx(math.log1p(math.exp(1.0)) / 2)


def test_loss_argument_errors():
    x = ad.tensor(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="reduction"):
        F.mse_loss(x, x, reduction="avg")
    with pytest.raises(ValueError, match="does not broadcast"):
        F.mse_loss(ad.zeros((4, 1)), np.zeros(4))
    with pytest.raises(IndexError, match="out of bounds"):
        F.cross_entropy(x, [0, 1, 2, 3])
    with pytest.raises(ValueError, match="target shape"):
        F.cross_entropy(x, [0, 1])
    with pytest.raises(ValueError, match="probability targets"):
        F.cross_entropy(x, np.zeros((4, 2)))
    with pytest.raises(ValueError, match="between 0 and 1"):
        F.binary_cross_entropy(ad.tensor([1.5]), [1.0])
    with pytest.raises(ValueError, match="beta"):
        F.softplus(x, beta=0.0)
    with pytest.raises(ValueError, match="approximate"):
        F.gelu(x, approximate="erf")
    assert math.isnan(F.cross_entropy(x, [-100] * 4).item())


def test_loss_gradients_against_central_differences():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(4, 3))
    v = rng.normal(size=logits.shape)
    lab = np.array([0, 2, 1, 2])
    probs = rng.dirichlet(np.ones(3), size=4)
    y01 = (rng.random(4) > 0.5).astype(float)
    cases = [
        lambda z: F.cross_entropy(z, lab, label_smoothing=0.1, weight=[1.0, 2.0, 0.5]),
        lambda z: F.cross_entropy(z, probs),
        lambda z: F.nll_loss(F.log_softmax(z), lab),
        lambda z: F.binary_cross_entropy_with_logits(z[:, 0], y01, pos_weight=2.0),
        lambda z: F.binary_cross_entropy(F.sigmoid(z[:, 1]), y01),
        lambda z: F.soft_margin_hinge_loss(z[:, 2], 2 * y01 - 1, beta=3.0),
        lambda z: F.mse_loss(z, probs),
    ]
    for fn in cases:
        (jv,) = directional(_f_np(fn), [logits], [v])
        x = ad.tensor(logits, requires_grad=True)
        (g,) = ad.autograd.grad(fn(x), x, create_graph=True)
        assert np.sum(g.data * v) == pytest.approx(float(jv), rel=1e-8, abs=1e-11)
        (hv,) = ad.autograd.grad((g * v).sum(), x)

        def grad_np(xx, fn=fn):
            xt = ad.tensor(xx, requires_grad=True)
            return ad.autograd.grad(fn(xt), xt)[0].data

        (hv_fd,) = directional(grad_np, [logits], [v])
        np.testing.assert_allclose(hv.data, hv_fd, rtol=1e-6, atol=1e-8)


# ----- PyTorch parity: stored in tests/reference/nn.npz, live under the oracle marker -------
def parity_cases(torch=None):
    """``{key: (x, f_ad, f_torch)}`` for every function compared with PyTorch in float64, with
    ``f_torch`` None when ``torch`` is None (the stored values are compared instead)."""
    tf = torch.nn.functional if torch is not None else None
    t = torch.tensor if torch is not None else None
    x = np.concatenate([np.linspace(-8, 8, 33), [-1000.0, 1000.0, -30.0, 30.0]])
    cases = {
        "sigmoid": (x, F.sigmoid, lambda z: torch.sigmoid(z)),
        "relu": (x, F.relu, lambda z: tf.relu(z)),
        "leaky_relu(0.1)": (x, lambda z: F.leaky_relu(z, 0.1), lambda z: tf.leaky_relu(z, 0.1)),
        "softplus": (x, F.softplus, lambda z: tf.softplus(z)),
        "softplus(2,3)": (x, lambda z: F.softplus(z, 2.0, 3.0), lambda z: tf.softplus(z, 2.0, 3.0)),
        "elu(0.7)": (x, lambda z: F.elu(z, 0.7), lambda z: tf.elu(z, 0.7)),
        "gelu": (x, F.gelu, lambda z: tf.gelu(z)),
        "gelu(tanh)": (x, lambda z: F.gelu(z, "tanh"), lambda z: tf.gelu(z, approximate="tanh")),
        "tanh": (x, F.tanh, lambda z: torch.tanh(z)),
        "log_sigmoid": (x, F.log_sigmoid, lambda z: tf.logsigmoid(z)),
        "softmax": (x, lambda z: F.softmax(z.reshape(1, -1)),
                    lambda z: tf.softmax(z.reshape(1, -1), -1)),
        "log_softmax": (x, lambda z: F.log_softmax(z.reshape(1, -1)),
                        lambda z: tf.log_softmax(z.reshape(1, -1), -1)),
    }  # fmt: skip
    rng = np.random.default_rng(5)
    x = rng.normal(size=(6, 4)) * 3
    x[0, 1] = 1000.0
    lab = np.array([0, 3, 1, 1, -100, 2])
    w = np.array([0.5, 1.0, 2.0, 1.5])
    pw = np.array([1.0, 2.0, 3.0, 0.5])
    probs = rng.dirichlet(np.ones(4), size=6)
    for r in ("mean", "sum", "none"):
        losses = {
            "cross_entropy": (lambda z, r=r: F.cross_entropy(z, lab, reduction=r),
                lambda z, r=r: tf.cross_entropy(z, t(lab), reduction=r)),
            "cross_entropy(weight,smoothing)": (
                lambda z, r=r: F.cross_entropy(z, lab, weight=w, reduction=r, label_smoothing=0.2),
                lambda z, r=r: tf.cross_entropy(
                    z, t(lab), weight=t(w), reduction=r, label_smoothing=0.2)),
            "cross_entropy(probs,weight,smoothing)": (
                lambda z, r=r: F.cross_entropy(
                    z, probs, weight=w, reduction=r, label_smoothing=0.1),
                lambda z, r=r: tf.cross_entropy(
                    z, t(probs), weight=t(w), reduction=r, label_smoothing=0.1)),
            "nll_loss(weight)": (
                lambda z, r=r: F.nll_loss(F.log_softmax(z), lab, weight=w, reduction=r),
                lambda z, r=r: tf.nll_loss(tf.log_softmax(z, 1), t(lab), weight=t(w), reduction=r)),
            "mse_loss": (lambda z, r=r: F.mse_loss(z, probs, reduction=r),
                lambda z, r=r: tf.mse_loss(z, t(probs), reduction=r)),
            "l1_loss": (lambda z, r=r: F.l1_loss(z, probs, reduction=r),
                lambda z, r=r: tf.l1_loss(z, t(probs), reduction=r)),
            "binary_cross_entropy_with_logits(weight,pos_weight)": (
                lambda z, r=r: F.binary_cross_entropy_with_logits(
                    z, probs, weight=w, pos_weight=pw, reduction=r),
                lambda z, r=r: tf.binary_cross_entropy_with_logits(
                    z, t(probs), weight=t(w), pos_weight=t(pw), reduction=r)),
            "binary_cross_entropy(sigmoid(0.1*z))": (
                lambda z, r=r: F.binary_cross_entropy(F.sigmoid(z * 0.1), probs, reduction=r),
                lambda z, r=r: tf.binary_cross_entropy(
                    torch.sigmoid(z * 0.1), t(probs), reduction=r)),
            "soft_margin_loss": (
                lambda z, r=r: F.soft_margin_loss(z, np.sign(probs - 0.25), reduction=r),
                lambda z, r=r: tf.soft_margin_loss(z, torch.sign(t(probs) - 0.25), reduction=r)),
        }  # fmt: skip
        cases |= {f"{name}/{r}": (x, fa, ft) for name, (fa, ft) in losses.items()}
    # spatial (N, C, d) and 1-D inputs
    x3 = rng.normal(size=(2, 3, 5))
    l3 = rng.integers(0, 3, size=(2, 5))
    cases["cross_entropy(N,C,d,smoothing)"] = (
        x3, lambda z: F.cross_entropy(z, l3, label_smoothing=0.3),
        lambda z: tf.cross_entropy(z, t(l3), label_smoothing=0.3))  # fmt: skip
    cases["cross_entropy(1-D)"] = (
        rng.normal(size=4), lambda z: F.cross_entropy(z, np.array(2)),
        lambda z: tf.cross_entropy(z, t(2)))  # fmt: skip
    if torch is None:
        cases = {k: (x, fa, None) for k, (x, fa, _) in cases.items()}
    return cases


PARITY_KEYS = list(parity_cases())


def _value_and_grad(lib, f, x):
    """f(x) and the gradient of <u, f(x)> for a fixed random u, with autodiffx or torch."""
    if lib is ad:
        xa = ad.tensor(x, requires_grad=True)
        y = f(xa)
        u = np.random.default_rng(0).normal(size=y.shape)
        (y * u).sum().backward()
        return y.data, xa.grad.data
    xt = lib.tensor(x, dtype=lib.float64, requires_grad=True)
    y = f(xt)
    u = np.random.default_rng(0).normal(size=tuple(y.shape))
    (y * lib.tensor(u)).sum().backward()
    return y.detach().numpy(), xt.grad.numpy()


def torch_value_and_grad(torch, key):
    """PyTorch's value and gradient for one of PARITY_KEYS."""
    x, _, ft = parity_cases(torch)[key]
    return _value_and_grad(torch, ft, x)


def _same_value_and_grad(ours, theirs, rtol=1e-12):
    np.testing.assert_allclose(ours[0], theirs[0], rtol=rtol, atol=1e-15, err_msg="value")
    np.testing.assert_allclose(ours[1], theirs[1], rtol=rtol, atol=1e-15, err_msg="gradient")


@pytest.mark.oracle
@pytest.mark.parametrize("key", PARITY_KEYS)
def test_activations_and_losses_match_pytorch(key):
    torch = pytest.importorskip("torch")
    x, fa, _ = parity_cases()[key]
    _same_value_and_grad(_value_and_grad(ad, fa, x), torch_value_and_grad(torch, key))


@pytest.mark.parametrize("key", PARITY_KEYS)
def test_activations_and_losses_match_stored_pytorch(key):
    ref = _reference.load("nn")
    x, fa, _ = parity_cases()[key]
    np.testing.assert_array_equal(x, ref[f"parity/{key}/x"], err_msg=_reference.STALE)
    stored = ref[f"parity/{key}/value"], ref[f"parity/{key}/grad"]
    _same_value_and_grad(_value_and_grad(ad, fa, x), stored)


def test_stored_pytorch_parity_cases_are_these():
    stored = {k.removeprefix("parity/").rsplit("/", 1)[0] for k in _reference.load("nn")}
    assert stored - {"_meta", "linear"} == set(PARITY_KEYS), _reference.STALE


# ----- modules -----------------------------------------------------------------------------
class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(3, 4, rng=0), nn.Tanh())
        self.head = nn.Linear(4, 2, rng=1)
        self.scale = nn.Parameter([2.0])
        self.register_buffer("calls", ad.tensor(0.0))
        self.not_a_param = ad.tensor([1.0])  # plain tensors are not registered

    def forward(self, x):
        return self.head(self.body(x)) * self.scale


def test_registration_and_traversal():
    net = _Net()
    names = [n for n, _ in net.named_parameters()]
    assert names == ["scale", "body.0.weight", "body.0.bias", "head.weight", "head.bias"]
    assert [n for n, _ in net.named_children()] == ["body", "head"]
    assert [n for n, _ in net.named_modules()] == ["", "body", "body.0", "body.1", "head"]
    assert list(net.state_dict()) == ["scale", "calls", *names[1:]]  # PyTorch's order
    assert [n for n, _ in net.named_buffers()] == ["calls"]
    assert all(p.requires_grad and isinstance(p, nn.Parameter) for p in net.parameters())
    assert isinstance(net.body, nn.Sequential)
    assert net.body[0].weight.shape == (4, 3)
    # reassigning and deleting
    net.head = nn.Identity()
    assert "head.weight" not in dict(net.named_parameters())
    del net.scale
    assert "scale" not in dict(net.named_parameters())
    with pytest.raises(AttributeError, match="scale"):
        net.scale
    with pytest.raises(TypeError, match="Parameter or None expected"):
        net.body[0].weight = ad.zeros((4, 3))
    net.body[0].bias = None
    assert net.body[0](ad.ones(3)).shape == (4,)


def test_shared_parameters_are_listed_once():
    lin = nn.Linear(2, 2, rng=0)
    net = nn.Sequential(lin, nn.ReLU(), lin)
    assert len(list(net.parameters())) == 2
    assert len(list(net.modules())) == 3


def test_setattr_before_init_is_a_clear_error():
    class Bad(nn.Module):
        def __init__(self):
            self.w = nn.Parameter([1.0])

    with pytest.raises(AttributeError, match=r"super\(\)\.__init__\(\)"):
        Bad()


def test_forward_backward_and_zero_grad():
    net = _Net()
    x = ad.tensor(np.random.default_rng(0).normal(size=(5, 3)))
    net(x).sum().backward()
    assert all(p.grad is not None and p.grad.shape == p.shape for p in net.parameters())
    net.zero_grad(set_to_none=False)
    assert all(not np.any(p.grad.data) for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())
    with pytest.raises(NotImplementedError):
        nn.Module()(x)


def test_train_eval_propagate():
    net = nn.Sequential(nn.Linear(2, 2, rng=0), nn.Sequential(nn.Dropout(0.5, rng=0)))
    assert net.training
    assert net[1][0].training
    assert net.eval() is net
    assert not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())


def test_state_dict_shares_memory_and_load_round_trip(tmp_path):
    a, b = _Net(), _Net()
    for p in b.parameters():
        p.data[...] = np.random.default_rng(1).normal(size=p.shape)
    sd = a.state_dict()
    assert not sd["head.weight"].requires_grad
    assert np.shares_memory(sd["head.weight"].data, a.head.weight.data)
    res = a.load_state_dict(b.state_dict())
    assert res.missing_keys == []
    assert res.unexpected_keys == []
    for (n, p), (_, q) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        np.testing.assert_array_equal(p.data, q.data, err_msg=n)
    ids = [id(p) for p in a.parameters()]
    adio.save(b.state_dict(), tmp_path / "m.npz")
    c = _Net()
    c.load_state_dict(adio.load(tmp_path / "m.npz"))
    np.testing.assert_array_equal(c.head.weight.data, b.head.weight.data)
    assert [id(p) for p in a.parameters()] == ids  # identities kept (optimizers stay valid)
    snap = copy.deepcopy(a.state_dict())
    a.head.weight.data += 1
    assert not np.array_equal(snap["head.weight"].data, a.head.weight.data)


def test_load_state_dict_validates_everything_first_and_changes_nothing():
    net = _Net()
    before = {k: v.data.copy() for k, v in net.state_dict().items()}
    good = {k: v.data.copy() + 1 for k, v in net.state_dict().items()}

    def check(bad, *needles, strict=True):
        with pytest.raises(RuntimeError) as e:
            net.load_state_dict(bad, strict=strict)
        for needle in needles:
            assert needle in str(e.value)
        for k, v in net.state_dict().items():
            np.testing.assert_array_equal(v.data, before[k], err_msg=k)

    missing = dict(good)
    del missing["head.bias"]
    check(missing, 'Missing key(s) in state_dict: "head.bias"')
    extra = {**good, "head.extra": np.zeros(2)}
    check(extra, 'Unexpected key(s) in state_dict: "head.extra"')
    shape = {**good, "body.0.weight": np.zeros((3, 4))}
    check(shape, "size mismatch for body.0.weight", "(3, 4)", "(4, 3)")
    check(shape, "size mismatch", strict=False)
    dtype = {**good, "scale": np.zeros(1, dtype=np.float32)}
    check(dtype, "dtype mismatch for scale", "float32", "float64")
    check({**good, "scale": "two"}, "value for scale is a str")
    both = {**shape, "x": np.zeros(1)}
    del both["calls"]
    check(both, "Missing", "Unexpected", "size mismatch")
    # non-strict: missing/unexpected allowed and reported; the rest is loaded
    res = net.load_state_dict(extra, strict=False)
    assert res.unexpected_keys == ["head.extra"]
    assert res.missing_keys == []
    np.testing.assert_array_equal(net.scale.data, good["scale"])


def test_linear_init_bound_matches_pytorchs():
    lin = nn.Linear(16, 300, rng=np.random.default_rng(0))
    bound = 1 / math.sqrt(16)
    w, b = lin.weight.data, lin.bias.data
    assert np.abs(w).max() <= bound
    assert np.abs(b).max() <= bound
    assert np.abs(w).max() > 0.95 * bound  # uniform over the whole interval
    assert abs(w.mean()) < 0.02
    assert w.std() == pytest.approx(bound / math.sqrt(3), rel=0.05)
    assert (
        nn.Linear(3, 2, rng=5).weight.data.tolist() == nn.Linear(3, 2, rng=5).weight.data.tolist()
    )
    f32 = nn.Linear(3, 2, rng=0, dtype=np.float32)
    assert f32.weight.dtype == np.float32
    assert f32(ad.ones((1, 3), dtype=np.float32)).dtype == np.float32
    assert nn.Linear(3, 2, bias=False, rng=0).bias is None


LINEAR_X = np.random.default_rng(1).normal(size=(4, 3))


def torch_linear(torch, weight, bias, x):
    """PyTorch's nn.Linear(3, 2) with the given parameters, applied to x."""
    tl = torch.nn.Linear(3, 2, dtype=torch.float64)
    with torch.no_grad():
        tl.weight.copy_(torch.tensor(weight))
        tl.bias.copy_(torch.tensor(bias))
    return tl(torch.tensor(x)).detach().numpy()


def _our_linear(weight, bias, x):
    lin = nn.Linear(3, 2, rng=0)
    lin.weight.data, lin.bias.data = weight.copy(), bias.copy()
    return lin(ad.tensor(x)).data


@pytest.mark.oracle
def test_linear_forward_matches_pytorch():
    torch = pytest.importorskip("torch")
    lin = nn.Linear(3, 2, rng=0)
    w, b = lin.weight.data, lin.bias.data
    ours = lin(ad.tensor(LINEAR_X)).data
    np.testing.assert_allclose(ours, torch_linear(torch, w, b, LINEAR_X), rtol=1e-14)


def test_linear_forward_matches_stored_pytorch():
    ref = _reference.load("nn")
    np.testing.assert_array_equal(LINEAR_X, ref["linear/x"], err_msg=_reference.STALE)
    ours = _our_linear(ref["linear/weight"], ref["linear/bias"], ref["linear/x"])
    np.testing.assert_allclose(ours, ref["linear/y"], rtol=1e-14)


def test_dropout_module_and_functional():
    x = ad.ones((200, 50), requires_grad=True)
    drop = nn.Dropout(0.3, rng=0)
    y = drop(x)
    vals = np.unique(y.data)
    np.testing.assert_allclose(vals, [0.0, 1 / 0.7])
    assert abs((y.data == 0).mean() - 0.3) < 0.02
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.data, y.data)  # the gradient uses the same mask
    assert not np.array_equal(drop(x).data, y.data)  # the module's generator moves on
    assert np.array_equal(nn.Dropout(0.3, rng=0)(x).data, y.data)  # seeded: reproducible
    assert drop.eval()(x) is x
    assert F.dropout(x, 0.5, training=False) is x
    assert F.dropout(x, 0.0) is x
    np.testing.assert_array_equal(F.dropout(x, 1.0).data, 0.0)
    with pytest.raises(ValueError, match="between 0 and 1"):
        nn.Dropout(1.5)
    with pytest.raises(TypeError, match="rng must be"):
        F.dropout(x, 0.5, rng="seed")


def test_layer_modules_and_repr():
    x = ad.tensor([[-1.0, 0.5, 2.0]])
    pairs = [
        (nn.ReLU(), F.relu),
        (nn.Sigmoid(), F.sigmoid),
        (nn.Tanh(), F.tanh),
        (nn.LeakyReLU(0.2), lambda z: F.leaky_relu(z, 0.2)),
        (nn.Softplus(2.0, 10.0), lambda z: F.softplus(z, 2.0, 10.0)),
        (nn.ELU(0.5), lambda z: F.elu(z, 0.5)),
        (nn.GELU("tanh"), lambda z: F.gelu(z, "tanh")),
        (nn.Softmax(dim=1), lambda z: F.softmax(z, 1)),
        (nn.LogSoftmax(axis=-1), F.log_softmax),
        (nn.Identity(), lambda z: z),
    ]
    for m, f in pairs:
        np.testing.assert_array_equal(m(x).data, f(x).data)
    net = nn.Sequential(nn.Linear(3, 2, rng=0), nn.LeakyReLU(0.2), nn.Dropout(0.1))
    assert repr(net) == (
        "Sequential(\n"
        "  (0): Linear(in_features=3, out_features=2, bias=True)\n"
        "  (1): LeakyReLU(negative_slope=0.2)\n"
        "  (2): Dropout(p=0.1)\n"
        ")"
    )
    assert len(net[1:]) == 2
    assert isinstance(net[-1], nn.Dropout)
    assert repr(nn.Parameter([1.0])).startswith("Parameter containing:\ntensor([1.]")
    with pytest.raises(ValueError, match="approximate"):
        nn.GELU("erf")


def test_parameter_is_a_tensor_that_requires_grad():
    p = nn.Parameter(ad.tensor([1.0, 2.0]))
    assert isinstance(p, ad.Tensor)
    assert p.requires_grad
    assert p.is_leaf
    q = p * 2
    assert type(q) is ad.Tensor
    assert not nn.Parameter([1.0], requires_grad=False).requires_grad
    with pytest.raises(TypeError):
        nn.Parameter([1, 2])  # integers cannot require grad
    c = copy.deepcopy(p)
    assert isinstance(c, nn.Parameter)
    assert not np.shares_memory(c.data, p.data)


def test_mlp_trains():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 2))
    y = (x[:, 0] * x[:, 1] > 0).astype(int)
    net = nn.Sequential(nn.Linear(2, 16, rng=1), nn.Tanh(), nn.Linear(16, 2, rng=2))
    import autodiffx.optim as optim

    opt = optim.Adam(net.parameters(), lr=0.05)
    xt = ad.tensor(x)
    for _ in range(150):
        opt.zero_grad()
        loss = F.cross_entropy(net(xt), y)
        loss.backward()
        opt.step()
    acc = (net(xt).data.argmax(axis=1) == y).mean()
    assert loss.item() < 0.2
    assert acc > 0.95


@pytest.mark.parametrize("shape", [(64, 3), (200, 32), (63, 5), (64, 33), (8, 3)])
def test_cross_entropy_row_maximum_equals_numpys(shape):
    # the transposed maximum of many short rows: the same values as x.max(axis=-1), non-finite
    # entries included; the sign of a zero maximum does not reach the loss or its gradient
    from autodiffx.nn.functional import _row_max, _xent_kernel, _xent_plain

    x = np.random.default_rng(1).standard_normal(shape)
    x[0], x[1, 0], x[2, :] = -np.inf, np.inf, np.nan
    x[3, :], x[3, 0] = -1.0, -0.0
    x[4, :], x[4, :2] = -1.0, [-0.0, 0.0]  # (a zero maximum of either sign)
    x[5, :], x[5, 1] = -1.0, 0.0
    want = x.max(axis=-1, keepdims=True)
    got = _row_max(x)
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    t = np.arange(shape[0]) % shape[1]
    rows = slice(3, None)  # (finite rows: the loss and gradient against log_softmax)
    with np.errstate(all="ignore"):
        want_rows = -(x - ad.logsumexp(ad.tensor(x), axis=-1, keepdims=True).data)
    loss = _xent_kernel(x[rows], t[rows], reduction="none")
    finite = np.isfinite(x[rows]).all(axis=-1)
    np.testing.assert_allclose(
        loss[finite], want_rows[rows][finite, t[rows][finite]], rtol=1e-13, atol=1e-13
    )
    grad = _xent_plain(x[rows], np.ones(len(t[rows])), t[rows])
    soft = np.exp(x[rows] - x[rows].max(axis=-1, keepdims=True))
    soft /= soft.sum(axis=-1, keepdims=True)
    soft[np.arange(len(soft)), t[rows]] -= 1
    np.testing.assert_allclose(grad[finite], soft[finite], rtol=1e-13, atol=1e-15)
