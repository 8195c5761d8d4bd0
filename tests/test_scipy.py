"""ad.scipy: composites against SciPy and central differences, dispatch of SciPy's ufuncs, and
the refusals (the primitives themselves are checked by the OpSpec rows, op_specs_scipy.py)."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
import scipy.special as sp
from _numdiff import directional

import autodiffx as ad
from autodiffx.forward import dual_level, make_dual

S = ad.scipy.special


def _f64(x):
    return np.asarray(x, dtype=np.float64)


def check_derivatives(f, *xs, rtol=1e-7, order=2, seed=0):
    """ad.grad (reverse), ad.jvp (forward) and, for order 2, hessian-vector products of the
    scalar f(*xs), all against central differences along random directions."""
    rng = np.random.default_rng(seed)
    xs = tuple(_f64(x) for x in xs)
    vs = tuple(rng.standard_normal(x.shape) for x in xs)
    nums = tuple(range(len(xs)))

    def val(*ys):
        return float(f(*[ad.tensor(y) for y in ys]).data)

    fd = directional(lambda *ys: val(*ys), xs, vs)[0]
    gs = ad.grad(f, argnums=nums)(*xs)
    rev = sum(float(np.sum(g.data * v)) for g, v in zip(gs, vs, strict=True))
    _, fwd = ad.jvp(f, xs, vs)
    scale = max(1.0, abs(float(fd)))
    assert abs(rev - fd) <= rtol * scale, (rev, fd)
    assert abs(float(fwd.data) - fd) <= rtol * scale, (float(fwd.data), fd)
    if order < 2:
        return

    def grad_dot(*ys):
        g = ad.grad(f, argnums=nums)(*ys)
        return [np.asarray(gi.data) for gi in g]

    hv_fd = directional(grad_dot, xs, vs)
    _, hv = ad.hvp(f, xs, vs)
    hv = hv if isinstance(hv, tuple) else (hv,)
    for got, want in zip(hv, hv_fd, strict=True):
        sc = max(1.0, float(np.max(np.abs(want))))
        np.testing.assert_allclose(got.data, want, rtol=0, atol=1e-6 * sc)


# ----- special: composites -----------------------------------------------------------------
@pytest.mark.parametrize("d", [1, 2, 4])
def test_multigammaln(d):
    a = np.array([2.2, 3.5, 5.0])
    np.testing.assert_allclose(S.multigammaln(a, d).data, sp.multigammaln(a, d), rtol=1e-13)
    check_derivatives(lambda t: (S.multigammaln(t, d) * [1.0, -2.0, 0.5]).sum(), a)
    with pytest.raises(ValueError, match="a > "):
        S.multigammaln(np.array([0.2]), 3)


@pytest.mark.parametrize("axis", [None, 0, -1, (0, 1)])
def test_logsumexp_with_weights(axis):
    a = np.array([[0.3, -1.2, 2.0], [1.5, 0.1, -0.7]])
    b = np.array([[1.0, 0.5, 2.0], [0.3, 1.5, 0.7]])
    for keepdims in (False, True):
        got = S.logsumexp(a, axis=axis, b=b, keepdims=keepdims)
        want = sp.logsumexp(a, axis=axis, b=b, keepdims=keepdims)
        assert got.shape == np.shape(want)
        np.testing.assert_allclose(got.data, want, rtol=1e-13)
    w = np.arange(1.0, 1.0 + np.size(sp.logsumexp(a, axis=axis)))
    check_derivatives(
        lambda x, y: (
            S.logsumexp(x, axis=axis, b=y) * w.reshape(np.shape(sp.logsumexp(a, axis)))
        ).sum(),
        a,
        b,
    )


def test_logsumexp_return_sign_and_negative_weights():
    a = np.array([0.3, -1.2, 2.0, 1.0])
    b = np.array([1.0, -3.0, -0.5, 0.2])
    out, sign = S.logsumexp(a, b=b, return_sign=True)
    want, wsign = sp.logsumexp(a, b=b, return_sign=True)
    np.testing.assert_allclose(out.data, want, rtol=1e-13)
    assert sign.item() == wsign and not sign.requires_grad
    check_derivatives(lambda x, y: S.logsumexp(x, b=y, return_sign=True)[0], a, b)
    with np.errstate(invalid="ignore"):
        assert np.isnan(S.logsumexp(a, b=b).item())


def test_logsumexp_zero_weights_ignore_their_entries():
    # SciPy drops entries with b == 0; a huge value there must not overflow the shift.
    a = np.array([1e308, 0.5, 1.0])
    b = np.array([0.0, 1.0, 2.0])
    np.testing.assert_allclose(S.logsumexp(a, b=b).item(), sp.logsumexp(a, b=b), rtol=1e-14)
    x = ad.tensor(a, requires_grad=True)
    S.logsumexp(x, b=b).backward()
    want = b * np.exp(np.where(b == 0, -np.inf, a) - sp.logsumexp(a, b=b))
    np.testing.assert_allclose(x.grad.data, want, rtol=1e-14)


def test_logsumexp_without_weights_is_the_primitive():
    x = ad.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    assert S.logsumexp(x, axis=1).grad_fn.name == "logsumexp"


@pytest.mark.parametrize("axis", [None, 0, 1, (0, 1)])
def test_softmax_and_log_softmax(axis):
    x = np.array([[0.3, -1.2, 2.0], [1.5, 0.1, 900.0]])
    np.testing.assert_allclose(S.softmax(x, axis=axis).data, sp.softmax(x, axis=axis), 1e-13)
    np.testing.assert_allclose(
        S.log_softmax(x, axis=axis).data, sp.log_softmax(x, axis=axis), rtol=1e-13
    )
    x = x / 300  # differences on moderate logits
    w = np.array([[1.0, -2.0, 0.5], [0.3, 0.7, -1.1]])
    check_derivatives(lambda t: (S.softmax(t, axis=axis) * w).sum(), x)
    check_derivatives(lambda t: (S.log_softmax(t, axis=axis) * w).sum(), x)


def test_log_ndtr_derivative_in_the_far_tail():
    # phi(x) / Phi(x) at x = -40 from mpmath: both underflow in double precision.
    x = ad.tensor([-40.0, -8.0, 0.0, 9.0], requires_grad=True)
    S.log_ndtr(x).sum().backward()
    mpmath.mp.dps = 50
    want = [float(mpmath.npdf(v) / mpmath.ncdf(v)) for v in (-40.0, -8.0, 0.0, 9.0)]
    np.testing.assert_allclose(x.grad.data, want, rtol=1e-12)


def test_bessel_i1_at_zero_and_subnormal():
    x = ad.tensor([0.0, 2.2e-309, -1e-300], requires_grad=True)
    S.i1(x).sum().backward()
    np.testing.assert_allclose(x.grad.data, [0.5, 0.5, 0.5], rtol=1e-15)
    x = ad.tensor([0.0], requires_grad=True)
    (g,) = ad.autograd.grad(S.i1e(x).sum(), x)
    assert g.item() == 0.5


# ----- SciPy's own ufuncs on Tensors -------------------------------------------------------
DISPATCHED = {
    "gamma": (0.7,),
    "beta": (0.7, 1.3),
    "betaln": (0.7, 1.3),
    "erfc": (0.7,),
    "erfcinv": (0.7,),
    "ndtr": (0.7,),
    "ndtri": (0.7,),
    "log_ndtr": (0.7,),
    "logit": (0.7,),
    "log_expit": (0.7,),
    "xlogy": (0.7, 1.3),
    "xlog1py": (0.7, 1.3),
    "entr": (0.7,),
    "rel_entr": (0.7, 1.3),
    "kl_div": (0.7, 1.3),
    "spence": (0.7,),
    "i0": (0.7,),
    "i1": (0.7,),
    "i0e": (0.7,),
    "i1e": (0.7,),
    "iv": (1.5, 0.7),
    "ive": (1.5, 0.7),
    "jv": (1.5, 0.7),
    "yv": (1.5, 0.7),
    "gammainc": (1.5, 0.7),
    "gammaincc": (1.5, 0.7),
    "betainc": (1.5, 2.0, 0.7),
    "stdtr": (3.0, 0.7),
}


@pytest.mark.parametrize("name", sorted(DISPATCHED))
def test_scipy_ufunc_on_tensor_dispatches(name):
    """scipy.special.<name>(Tensor) is differentiated (it raised TypeError before)."""
    args = DISPATCHED[name]
    x = ad.tensor(args[-1], requires_grad=True)
    y = getattr(sp, name)(*args[:-1], x)
    assert isinstance(y, ad.Tensor) and y.grad_fn.name == name
    np.testing.assert_allclose(y.item(), getattr(sp, name)(*args), rtol=1e-15)
    h = 1e-6
    fd = getattr(sp, name)(*args[:-1], args[-1] + h) - getattr(sp, name)(*args[:-1], args[-1] - h)
    y.backward()
    np.testing.assert_allclose(x.grad.item(), fd / (2 * h), rtol=1e-6)


@pytest.mark.parametrize("name", ["iv", "ive", "jv", "yv", "gammainc", "gammaincc", "stdtr"])
def test_order_argument_that_is_a_variable_is_refused(name):
    v = ad.tensor(1.5, requires_grad=True)
    x = ad.tensor(0.7, requires_grad=True)
    with pytest.raises(NotImplementedError, match=f"{name}: argument .* requires grad"):
        getattr(S, name)(v, x)
    with pytest.raises(NotImplementedError, match="detach"):
        getattr(sp, name)(v, x)  # through SciPy's ufunc too
    with dual_level():
        vd = make_dual(ad.tensor(1.5), ad.tensor(1.0))
        with pytest.raises(NotImplementedError, match="tangent"):
            getattr(S, name)(vd, 0.7)
    with ad.no_grad():
        assert getattr(S, name)(v, x).item() == getattr(sp, name)(1.5, 0.7)
    y = getattr(S, name)(v.detach(), x)  # a constant order: differentiated in x
    assert y.requires_grad


def test_betainc_shape_arguments_refused():
    a = ad.tensor(1.5, requires_grad=True)
    with pytest.raises(NotImplementedError, match="betainc: argument a"):
        S.betainc(a, 2.0, 0.3)
    with pytest.raises(NotImplementedError, match="betainc: argument b"):
        S.betainc(1.5, a, 0.3)
