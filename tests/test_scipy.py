"""ad.scipy: composites against SciPy and central differences, dispatch of SciPy's ufuncs, and
the refusals (the primitives themselves are checked by the OpSpec rows, op_specs_scipy.py)."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
import scipy.special as sp

import autodiffx as ad
from autodiffx.fd import directional
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


def test_sinc_is_numpys_rule():
    x = ad.tensor([0.0, 0.5], requires_grad=True)
    assert S.sinc is ad.sinc
    y = sp.sinc(x)  # scipy.special.sinc is np.sinc: dispatched to the same rule
    assert y.grad_fn.name == "sinc"
    (g,) = ad.autograd.grad(y.sum(), x)
    np.testing.assert_allclose(g.data, [0.0, (np.cos(np.pi / 2) * np.pi / 2 - 1) / 0.5**2 / np.pi])


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


# ----- stats -------------------------------------------------------------------------------
X = np.array([-1.3, 0.2, 0.9, 2.4])
P01 = np.array([0.15, 0.4, 0.55, 0.9])
POS = np.array([0.3, 0.8, 1.7, 3.2])
# name -> (method, the continuous arguments (x first), the constant arguments, their positions)
STATS = [
    ("norm", "logpdf", (X, 0.4, 1.7)),
    ("norm", "pdf", (X, 0.4, 1.7)),
    ("norm", "cdf", (X, 0.4, 1.7)),
    ("norm", "logcdf", (X, 0.4, 1.7)),
    ("norm", "sf", (X, 0.4, 1.7)),
    ("norm", "logsf", (X, 0.4, 1.7)),
    ("norm", "ppf", (P01, 0.4, 1.7)),
    ("t", "logpdf", (X, 3.5, 0.4, 1.7)),
    ("t", "pdf", (X, 3.5, 0.4, 1.7)),
    ("cauchy", "logpdf", (X, 0.4, 1.7)),
    ("cauchy", "pdf", (X, 0.4, 1.7)),
    ("cauchy", "cdf", (X, 0.4, 1.7)),
    ("cauchy", "sf", (X, 0.4, 1.7)),
    ("laplace", "logpdf", (X, 0.4, 1.7)),
    ("laplace", "pdf", (X, 0.4, 1.7)),
    ("laplace", "cdf", (X, 0.4, 1.7)),
    ("laplace", "sf", (X, 0.4, 1.7)),
    ("logistic", "logpdf", (X, 0.4, 1.7)),
    ("logistic", "pdf", (X, 0.4, 1.7)),
    ("logistic", "cdf", (X, 0.4, 1.7)),
    ("logistic", "logcdf", (X, 0.4, 1.7)),
    ("logistic", "sf", (X, 0.4, 1.7)),
    ("logistic", "logsf", (X, 0.4, 1.7)),
    ("expon", "logpdf", (POS, 0.1, 1.7)),
    ("expon", "pdf", (POS, 0.1, 1.7)),
    ("expon", "cdf", (POS, 0.1, 1.7)),
    ("expon", "sf", (POS, 0.1, 1.7)),
    ("expon", "logsf", (POS, 0.1, 1.7)),
    ("gamma", "logpdf", (POS, 2.5, 0.1, 1.7)),
    ("gamma", "pdf", (POS, 2.5, 0.1, 1.7)),
    ("chi2", "logpdf", (POS, 3.5, 0.1, 1.7)),
    ("chi2", "pdf", (POS, 3.5, 0.1, 1.7)),
    ("beta", "logpdf", (P01, 2.5, 1.5, -0.1, 1.3)),
    ("beta", "pdf", (P01, 2.5, 1.5, -0.1, 1.3)),
]
# Differentiable in x, loc and scale but not in a shape parameter (refused).
STATS_SHAPE_CONST = [
    ("t", "cdf", (X, 0.4, 1.7), (3.5,)),
    ("t", "sf", (X, 0.4, 1.7), (3.5,)),
    ("gamma", "cdf", (POS, 0.1, 1.7), (2.5,)),
    ("chi2", "cdf", (POS, 0.1, 1.7), (3.5,)),
    ("beta", "cdf", (P01, -0.1, 1.3), (2.5, 1.5)),
]


def _weights(n):
    return np.linspace(1.0, -0.5, n)


@pytest.mark.parametrize(("dist", "method", "args"), STATS, ids=[f"{d}.{m}" for d, m, _ in STATS])
def test_stats_against_scipy_and_central_differences(dist, method, args):
    import scipy.stats

    f = getattr(getattr(ad.scipy.stats, dist), method)
    want = getattr(getattr(scipy.stats, dist), method)(*args)
    np.testing.assert_allclose(f(*args).data, want, rtol=1e-12, atol=1e-300)
    w = _weights(len(args[0]))
    check_derivatives(lambda *ts: (f(*ts) * w).sum(), *args, rtol=1e-6)


@pytest.mark.parametrize(
    ("dist", "method", "args", "shapes"),
    STATS_SHAPE_CONST,
    ids=[f"{d}.{m}" for d, m, _, _ in STATS_SHAPE_CONST],
)
def test_stats_cdf_with_constant_shape(dist, method, args, shapes):
    import scipy.stats

    f = getattr(getattr(ad.scipy.stats, dist), method)
    x, loc, scale = args
    want = getattr(getattr(scipy.stats, dist), method)(x, *shapes, loc, scale)
    np.testing.assert_allclose(f(x, *shapes, loc, scale).data, want, rtol=1e-12)
    w = _weights(len(x))
    check_derivatives(lambda x, lo, sc: (f(x, *shapes, lo, sc) * w).sum(), *args, rtol=1e-6)
    with pytest.raises(NotImplementedError, match="detach"):
        f(x, *(ad.tensor(s, requires_grad=True) for s in shapes), loc, scale)


def test_stats_outside_the_support_has_zero_gradient():
    import scipy.stats

    x = ad.tensor([-0.5, 0.5, 1.5], requires_grad=True)
    for f, ref in [
        (lambda t: ad.scipy.stats.expon.logpdf(t), scipy.stats.expon.logpdf),
        (lambda t: ad.scipy.stats.gamma.logpdf(t, 2.0), lambda v: scipy.stats.gamma.logpdf(v, 2)),
        (lambda t: ad.scipy.stats.beta.cdf(t, 2.0, 3.0), lambda v: scipy.stats.beta.cdf(v, 2, 3)),
        (lambda t: ad.scipy.stats.gamma.cdf(t, 2.0), lambda v: scipy.stats.gamma.cdf(v, 2)),
    ]:
        np.testing.assert_allclose(f(x).data, ref(x.data), rtol=1e-13)
        (g,) = ad.autograd.grad(f(x).sum(), x)
        assert np.all(np.isfinite(g.data))


@pytest.mark.parametrize("method", ["logpmf", "pmf", "cdf"])
def test_poisson_and_binom(method):
    import scipy.stats

    k = np.array([-1.0, 0.0, 2.0, 3.0, 2.5, 7.0])
    mu = np.array([1.3, 0.7, 2.2, 4.0, 1.0, 3.0])
    with np.errstate(divide="ignore"):
        want = getattr(scipy.stats.poisson, method)(k, mu)
    f = getattr(ad.scipy.stats.poisson, method)
    np.testing.assert_allclose(f(k, mu).data, want, rtol=1e-12)
    inside = [1, 2, 3] if method != "cdf" else [1, 2, 3, 4, 5]
    check_derivatives(lambda m: f(k[inside], m).sum(), mu[inside], rtol=1e-6)
    n, p = 6.0, np.array([0.2, 0.35, 0.5, 0.7, 0.45, 0.6])
    with np.errstate(divide="ignore"):
        want = getattr(scipy.stats.binom, method)(k, n, p)
    g = getattr(ad.scipy.stats.binom, method)
    np.testing.assert_allclose(g(k, n, p).data, want, rtol=1e-12)
    check_derivatives(lambda q: g(k[inside], n, q).sum(), p[inside], rtol=1e-6)
    with pytest.raises(TypeError, match="counts are integers"):
        f(ad.tensor(k, requires_grad=True), mu)


@pytest.mark.parametrize("xshape", [(3,), (4, 3)])
def test_multivariate_normal(xshape):
    import scipy.stats

    rng = np.random.default_rng(3)
    x = rng.standard_normal(xshape)
    mean = np.array([0.2, -0.4, 0.1])
    a = rng.standard_normal((3, 3))
    cov = a @ a.T + 2 * np.eye(3)
    mvn = ad.scipy.stats.multivariate_normal
    for method in ("logpdf", "pdf"):
        want = getattr(scipy.stats.multivariate_normal, method)(x, mean, cov)
        got = getattr(mvn, method)(x, mean, cov)
        assert got.shape == np.shape(want)
        np.testing.assert_allclose(got.data, want, rtol=1e-12)
    w = _weights(int(np.prod(xshape[:-1])))

    def f(x_, m_, c_):  # a symmetric direction for cov: the density reads a symmetric matrix
        return (mvn.logpdf(x_, m_, (c_ + c_.T) / 2) * w.reshape(xshape[:-1])).sum()

    check_derivatives(f, x, mean, cov)
    c = ad.tensor(cov, requires_grad=True)
    (g,) = ad.autograd.grad(mvn.logpdf(x, mean, c).sum(), c)
    np.testing.assert_allclose(g.data, g.data.T, rtol=1e-12)  # symmetric, as documented


def test_multivariate_normal_scalar_and_diagonal_cov():
    import scipy.stats

    x = np.array([[0.3, -0.2], [1.0, 0.5]])
    mvn = ad.scipy.stats.multivariate_normal
    for cov in (1.7, np.array([0.5, 2.0])):
        np.testing.assert_allclose(
            mvn.logpdf(x, np.zeros(2), cov).data,
            scipy.stats.multivariate_normal.logpdf(x, np.zeros(2), cov),
            rtol=1e-12,
        )
    xs = np.array([0.3, -0.2, 1.1])  # d = 1: each entry is a point
    np.testing.assert_allclose(
        mvn.logpdf(xs, 0.5, 2.0).data,
        scipy.stats.multivariate_normal.logpdf(xs, 0.5, 2.0),
        rtol=1e-12,
    )


def test_dirichlet():
    import scipy.stats

    alpha = np.array([1.5, 2.0, 3.0])
    x = np.array([[0.2, 0.1], [0.3, 0.6], [0.5, 0.3]])
    for method in ("logpdf", "pdf"):
        want = getattr(scipy.stats.dirichlet, method)(x, alpha)
        np.testing.assert_allclose(
            getattr(ad.scipy.stats.dirichlet, method)(x, alpha).data, want, rtol=1e-12
        )
    check_derivatives(
        lambda x_, a_: (ad.scipy.stats.dirichlet.logpdf(x_, a_) * [1.0, -0.3]).sum(), x, alpha
    )


# ----- linalg ------------------------------------------------------------------------------
def _spd(n, seed=0):
    a = np.random.default_rng(seed).standard_normal((n, n))
    return a @ a.T + n * np.eye(n)


@pytest.mark.parametrize("lower", [False, True])
@pytest.mark.parametrize("bshape", [(3,), (3, 2)])
def test_cho_factor_and_cho_solve(lower, bshape):
    import scipy.linalg as sl

    a = _spd(3)
    b = np.random.default_rng(1).standard_normal(bshape)
    c, low = ad.scipy.linalg.cho_factor(a, lower=lower)
    want_c, _ = sl.cho_factor(a, lower=lower)
    tri = np.tril if lower else np.triu
    np.testing.assert_allclose(c.data, tri(want_c), rtol=1e-13)  # the other triangle is 0
    assert low == lower
    x = ad.scipy.linalg.cho_solve((c, low), b)
    np.testing.assert_allclose(x.data, sl.cho_solve((want_c, lower), b), rtol=1e-12)
    w = np.random.default_rng(2).standard_normal(bshape)

    def f(a_, b_):  # symmetric directions: a Cholesky factor reads one triangle
        s = (a_ + a_.T) / 2
        return (ad.scipy.linalg.cho_solve(ad.scipy.linalg.cho_factor(s, lower=lower), b_) * w).sum()

    check_derivatives(f, a, b)


@pytest.mark.parametrize("trans", [0, 1])
@pytest.mark.parametrize("bshape", [(3,), (3, 2)])
def test_lu_factor_and_lu_solve(trans, bshape):
    import scipy.linalg as sl

    a = np.array([[0.5, 2.0, 1.0], [3.0, 1.0, -1.0], [1.0, -2.0, 4.0]])  # pivots
    b = np.random.default_rng(1).standard_normal(bshape)
    lu, piv = ad.scipy.linalg.lu_factor(a)
    want = sl.lu_factor(a)
    np.testing.assert_allclose(lu.data, want[0], rtol=1e-13)
    np.testing.assert_array_equal(piv.data, want[1])
    assert not piv.requires_grad
    x = ad.scipy.linalg.lu_solve((lu, piv), b, trans=trans)
    np.testing.assert_allclose(x.data, sl.lu_solve(want, b, trans=trans), rtol=1e-12)
    w = np.random.default_rng(2).standard_normal(bshape)
    check_derivatives(
        lambda a_, b_: (
            ad.scipy.linalg.lu_solve(ad.scipy.linalg.lu_factor(a_), b_, trans) * w
        ).sum(),
        a,
        b,
    )


def test_solve_triangular_vector_and_refusals():
    import scipy.linalg as sl

    a = np.array([[2.0, 0.3, -0.4], [0.0, 3.0, 0.2], [0.0, 0.0, 1.5]])
    b = np.array([1.0, -2.0, 0.5])
    for trans in (0, 1, "N", "T"):
        np.testing.assert_allclose(
            ad.scipy.linalg.solve_triangular(a, b, trans=trans).data,
            sl.solve_triangular(a, b, trans=trans),
            rtol=1e-13,
        )
    check_derivatives(lambda a_, b_: ad.scipy.linalg.solve_triangular(a_, b_).sum(), a, b)
    with pytest.raises(NotImplementedError, match="trans='C'"):
        ad.scipy.linalg.solve_triangular(a, b, trans="C")
    with pytest.raises(ValueError, match="one square matrix"):
        ad.scipy.linalg.lu_factor(np.ones((2, 3)))


def test_block_diag():
    import scipy.linalg as sl

    blocks = [np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([5.0, 6.0, 7.0]), np.array(8.0)]
    np.testing.assert_array_equal(ad.scipy.linalg.block_diag(*blocks).data, sl.block_diag(*blocks))
    assert ad.scipy.linalg.block_diag().shape == sl.block_diag().shape
    w = np.random.default_rng(0).standard_normal(sl.block_diag(*blocks).shape)
    check_derivatives(lambda *bs: (ad.scipy.linalg.block_diag(*bs) * w).sum(), *blocks)


@pytest.mark.parametrize("name", ["expm", "sqrtm", "logm"])
def test_matrix_function_gradient_and_hessian(name):
    import scipy.linalg as sl

    a = _spd(3) / 3
    f = getattr(ad.scipy.linalg, name)
    np.testing.assert_allclose(f(a).data, getattr(sl, name)(a), rtol=1e-12)
    w = np.random.default_rng(4).standard_normal((3, 3))
    check_derivatives(lambda m: (f(m) * w).sum(), a, rtol=1e-6)


# ----- signal ------------------------------------------------------------------------------
SIGNAL_SHAPES = [((6,), (3,)), ((4,), (6,)), ((5,), (4,)), ((4, 5), (2, 3)), ((3, 3), (4, 2))]


@pytest.mark.parametrize("mode", ["full", "same", "valid"])
@pytest.mark.parametrize(("sa", "sb"), SIGNAL_SHAPES)
@pytest.mark.parametrize("name", ["convolve", "correlate", "fftconvolve"])
def test_signal_against_scipy_and_central_differences(name, sa, sb, mode):
    import scipy.signal as ss

    rng = np.random.default_rng(5)
    a, b = rng.standard_normal(sa), rng.standard_normal(sb)
    f = getattr(ad.scipy.signal, name)
    try:
        want = getattr(ss, name)(a, b, mode=mode)
    except ValueError:  # 'valid' with neither operand the larger in every dimension
        with pytest.raises(ValueError, match="at least as large"):
            f(a, b, mode=mode)
        return
    got = f(a, b, mode=mode)
    assert got.shape == want.shape
    np.testing.assert_allclose(got.data, want, rtol=1e-11, atol=1e-13)
    w = rng.standard_normal(want.shape)
    check_derivatives(lambda x, y: (f(x, y, mode=mode) * w).sum(), a, b)


def test_signal_methods_complex_and_axes():
    import scipy.signal as ss

    rng = np.random.default_rng(6)
    a = rng.standard_normal(7) + 1j * rng.standard_normal(7)
    b = rng.standard_normal(4) + 1j * rng.standard_normal(4)
    for method in ("direct", "fft", "auto"):
        for name in ("convolve", "correlate"):
            np.testing.assert_allclose(
                getattr(ad.scipy.signal, name)(a, b, "same", method).data,
                getattr(ss, name)(a, b, "same", method),
                rtol=1e-11,
            )
    x, k = rng.standard_normal((3, 6)), rng.standard_normal((1, 4))
    for mode in ("full", "same", "valid"):
        np.testing.assert_allclose(
            ad.scipy.signal.fftconvolve(x, k, mode, axes=-1).data,
            ss.fftconvolve(x, k, mode, axes=-1),
            rtol=1e-11,
        )
    w = rng.standard_normal((3, 3))
    check_derivatives(
        lambda s, t: (ad.scipy.signal.fftconvolve(s, t, "valid", axes=[1]) * w).sum(), x, k
    )
    with pytest.raises(ValueError, match="same dimensionality"):
        ad.scipy.signal.convolve(np.ones(3), np.ones((2, 2)))


@pytest.mark.parametrize(
    ("call", "hint"),
    [
        (lambda x: sp.logsumexp(x), "ad.scipy.special.logsumexp"),
        (lambda x: sp.softmax(x), "ad.scipy.special.softmax"),  # SciPy's axis=None default
        (lambda x: sp.multigammaln(x, 2), "ad.scipy.special.multigammaln"),
        (lambda x: __import__("scipy.linalg").linalg.expm(x), "ad.scipy.linalg.expm"),
        (lambda x: __import__("scipy.signal").signal.convolve(x, x), "ad.scipy.signal.convolve"),
    ],
)
def test_scipy_function_on_a_live_tensor_names_the_ad_scipy_version(call, hint):
    x = ad.tensor([[1.0, 0.2], [0.1, 2.0]], requires_grad=True)
    with pytest.raises(TypeError, match=f"call {hint} instead"):
        call(x)


def test_i0e_kink_at_zero_uses_derivative_zero():
    x = ad.tensor([0.0], requires_grad=True)
    (g,) = ad.autograd.grad(S.i0e(x).sum(), x)
    assert g.item() == 0.0  # the published kink convention (docs/conventions.md)
    _, t = ad.jvp(lambda v: S.i0e(v), (np.zeros(1),), (np.ones(1),))
    assert t.item() == 0.0


JACOBIAN_CASES = {
    "logsumexp_b": (lambda x: S.logsumexp(x.reshape(2, 3), axis=1, b=[[1.0, 2.0, 0.5]]), 6),
    "softmax": (lambda x: S.softmax(x.reshape(2, 3), axis=0).ravel(), 6),
    "t.logpdf": (lambda x: ad.scipy.stats.t.logpdf(x[:3], x[3], x[4], x[5]), 6),
    "mvn.logpdf": (
        lambda x: ad.scipy.stats.multivariate_normal.logpdf(x.reshape(2, 3), x[:3], _spd(3)),
        6,
    ),
    "convolve": (lambda x: ad.scipy.signal.convolve(x[:4], x[4:], "same"), 6),
    "lu_solve": (
        lambda x: ad.scipy.linalg.lu_solve(
            ad.scipy.linalg.lu_factor(x[:4].reshape(2, 2) + 3 * np.eye(2)), x[4:]
        ),
        6,
    ),
    "block_diag": (lambda x: ad.scipy.linalg.block_diag(x[:2], x[2:].reshape(2, 2)).ravel(), 6),
}


@pytest.mark.parametrize("name", sorted(JACOBIAN_CASES))
def test_vectorized_jacobians_of_composites(name):
    """Both modes push every basis vector through in one batched pass; they agree with each
    other (to rounding) and with central differences."""
    f, n = JACOBIAN_CASES[name]
    x = np.linspace(0.3, 1.4, n)
    jf = ad.jacobian(f, mode="fwd")(x).data
    jr = ad.jacobian(f, mode="rev")(x).data
    np.testing.assert_allclose(jf, jr, rtol=1e-12, atol=1e-14)
    cols = [directional(lambda y: f(ad.tensor(y)).data, [x], [np.eye(n)[i]])[0] for i in range(n)]
    np.testing.assert_allclose(jr, np.stack(cols, axis=-1), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("module", ["special", "stats", "signal", "linalg"])
def test_every_ad_scipy_name_exists_and_has_an_example(module):
    mod = getattr(ad.scipy, module)
    missing = [
        n
        for n in mod.__all__
        if "Examples" not in (getattr(mod, n).__doc__ or "")
        or ">>>" not in (getattr(mod, n).__doc__ or "")
    ]
    assert not missing, f"ad.scipy.{module} names without a docstring example: {missing}"


def test_stats_location_scale_namespaces_have_exactly_the_documented_functions():
    # the symmetric families share a base class: each keeps exactly the functions
    # docs/scipy.md lists (laplace and cauchy have no logcdf/logsf), working on Python floats
    documented = {
        "norm": {"pdf", "logpdf", "cdf", "logcdf", "sf", "logsf", "ppf"},
        "cauchy": {"pdf", "logpdf", "cdf", "sf"},
        "laplace": {"pdf", "logpdf", "cdf", "sf"},
        "logistic": {"pdf", "logpdf", "cdf", "logcdf", "sf", "logsf"},
    }
    for name, functions in documented.items():
        dist = getattr(ad.scipy.stats, name)
        assert {f for f in dir(dist) if not f.startswith("_")} == functions, name
        assert isinstance(dist.sf(0.5, 0.1, 2.0), ad.Tensor)
