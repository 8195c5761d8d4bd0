"""``ad.scipy.stats``: densities and distribution functions in autograd's convention."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import linalg as _la
from .._convert import live
from .._tensor import Tensor
from ..ops import abs as _abs
from ..ops import arctan, exp, expm1, gammaln, log, log1p, where
from ..ops import sum as _sum
from . import special as sp

__all__ = [
    "beta",
    "binom",
    "cauchy",
    "chi2",
    "dirichlet",
    "expon",
    "gamma",
    "laplace",
    "logistic",
    "multivariate_normal",
    "norm",
    "poisson",
    "t",
]

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def _t(x: Any) -> Tensor:
    if isinstance(x, Tensor):
        return x if x.dtype.kind in "fc" else x.astype(np.float64)
    arr = np.asarray(x)
    return Tensor(arr if arr.dtype.kind in "fc" else arr.astype(np.float64))


def _z(x: Any, loc: Any, scale: Any) -> Tensor:
    return (_t(x) - loc) / scale


def _safe(ok: Any, z: Tensor, fill: float) -> Tensor:
    """``z`` where ``ok``, else ``fill``: the unused branch of a where() stays finite, so no nan
    reaches the gradient of points outside the support (see the docs' safe pattern)."""
    return where(ok, z, fill)


def _outside(ok: Any, value: Tensor, fill: float) -> Tensor:
    return where(ok, value, fill)


def _count(name: str, k: Any) -> np.ndarray:
    """A count argument (k, n): values only; a variable there is refused."""
    if isinstance(k, Tensor):
        why = live(k)
        if why is not None:
            raise TypeError(
                f"ad.scipy.stats.{name}: the count is a Tensor that {why}; counts are integers "
                "and not differentiable: pass k.detach() (gradients flow to the continuous "
                "parameters only)"
            )
        k = k.data
    return np.asarray(k, dtype=np.float64)


# ----- continuous, location-scale ----------------------------------------------------------
def _of_z(standard: str, doc: str, *, reflect: bool = False) -> Any:
    """A family's function of z = (x - loc) / scale (of -z with ``reflect``): ``standard``
    names the standard function on the family's class."""

    def function(cls: Any, x: Any, loc: Any = 0.0, scale: Any = 1.0) -> Tensor:
        z = _z(x, loc, scale)
        return getattr(cls, standard)(-z if reflect else z)

    function.__doc__ = doc
    return classmethod(function)


class _Symmetric:
    """A location-scale family symmetric about loc: a subclass gives the standard log density
    ``_logpdf0(z)`` and cdf ``_cdf0(z)`` of z = (x - loc) / scale; x, loc and scale are
    differentiable."""

    _logpdf0: Any

    @classmethod
    def logpdf(cls, x: Any, loc: Any = 0.0, scale: Any = 1.0) -> Tensor:
        """The log density log f(z) - log(scale)."""
        return cls._logpdf0(_z(x, loc, scale)) - log(_t(scale))

    @classmethod
    def pdf(cls, x: Any, loc: Any = 0.0, scale: Any = 1.0) -> Tensor:
        """The density."""
        return exp(cls.logpdf(x, loc, scale))

    cdf = _of_z("_cdf0", "P(X <= x).")
    sf = _of_z("_cdf0", "P(X > x) = cdf(-z), by symmetry.", reflect=True)


class _SymmetricLogTails(_Symmetric):
    """A :class:`_Symmetric` family with an accurate log cdf ``_logcdf0(z)`` far in the tails."""

    logcdf = _of_z("_logcdf0", "log P(X <= x).")
    logsf = _of_z("_logcdf0", "log P(X > x) = logcdf(-z).", reflect=True)


class norm(_SymmetricLogTails):
    """The normal distribution (``scipy.stats.norm``); differentiable in x, loc and scale.

    Examples
    --------
    >>> import autodiffx as ad
    >>> from autodiffx.scipy.stats import norm
    >>> x = ad.tensor([0.0, 1.0], requires_grad=True)
    >>> norm.logpdf(x, 0.0, 2.0)
    tensor([-1.61208571, -1.73708571], grad_fn=<subtract>)
    >>> norm.cdf(-40.0), norm.logcdf(ad.tensor(-40.0))
    (tensor(0.), tensor(-804.60844201))
    """

    @staticmethod
    def _logpdf0(z: Tensor) -> Tensor:
        return -0.5 * z * z - _LOG_SQRT_2PI

    _cdf0 = staticmethod(sp.ndtr)
    _logcdf0 = staticmethod(sp.log_ndtr)

    @staticmethod
    def ppf(q: Any, loc: Any = 0.0, scale: Any = 1.0) -> Tensor:
        """The quantile function loc + scale ndtri(q)."""
        return loc + _t(scale) * sp.ndtri(_t(q))


class t:
    """Student's t (``scipy.stats.t``); differentiable in x, loc, scale, and in df for the
    density (``cdf``/``sf``: not in df, which raises ``NotImplementedError``).

    Examples
    --------
    >>> import autodiffx as ad
    >>> from autodiffx.scipy.stats import t
    >>> df = ad.tensor(3.0, requires_grad=True)
    >>> t.logpdf(0.5, df).backward()
    >>> df.grad
    tensor(0.03774121)
    """

    @staticmethod
    def logpdf(x: Any, df: Any, loc: Any = 0.0, scale: Any = 1.0) -> Tensor:
        """The log density."""
        z, df = _z(x, loc, scale), _t(df)
        h = (df + 1) / 2
        c = gammaln(h) - gammaln(df / 2) - 0.5 * log(df * math.pi) - log(_t(scale))
        return c - h * log1p(z * z / df)

    @staticmethod
    def pdf(x: Any, df: Any, loc: Any = 0.0, scale: Any = 1.0) -> Tensor:
        """The density."""
        return exp(t.logpdf(x, df, loc, scale))

    @staticmethod
    def cdf(x: Any, df: Any, loc: Any = 0.0, scale: Any = 1.0) -> Tensor:
        """P(X <= x), with ``stdtr``."""
        return sp.stdtr(df, _z(x, loc, scale))

    @staticmethod
    def sf(x: Any, df: Any, loc: Any = 0.0, scale: Any = 1.0) -> Tensor:
        """P(X > x)."""
        return sp.stdtr(df, -_z(x, loc, scale))


class cauchy(_Symmetric):
    """The Cauchy distribution (``scipy.stats.cauchy``).

    Examples
    --------
    >>> import autodiffx as ad
    >>> from autodiffx.scipy.stats import cauchy
    >>> cauchy.cdf(ad.tensor([0.0, 1.0]))
    tensor([0.5 , 0.75])
    """

    @staticmethod
    def _logpdf0(z: Tensor) -> Tensor:
        return -math.log(math.pi) - log1p(z * z)

    @staticmethod
    def _cdf0(z: Tensor) -> Tensor:
        return 0.5 + arctan(z) / math.pi


class laplace(_Symmetric):
    """The Laplace distribution (``scipy.stats.laplace``); at x = loc the kink of |z| has
    derivative 0 (the published convention of ``abs``).

    Examples
    --------
    >>> import autodiffx as ad
    >>> from autodiffx.scipy.stats import laplace
    >>> laplace.logpdf(ad.tensor([0.0, 2.0]), 0.0, 2.0)
    tensor([-1.38629436, -2.38629436])
    """

    @staticmethod
    def _logpdf0(z: Tensor) -> Tensor:
        return -_abs(z) - math.log(2.0)

    @staticmethod
    def _cdf0(z: Tensor) -> Tensor:
        neg = z.data < 0
        return where(neg, 0.5 * exp(_safe(neg, z, 0.0)), 1 - 0.5 * exp(-_safe(~neg, z, 0.0)))


class logistic(_SymmetricLogTails):
    """The logistic distribution (``scipy.stats.logistic``), stable for large |z|.

    Examples
    --------
    >>> import autodiffx as ad
    >>> from autodiffx.scipy.stats import logistic
    >>> logistic.logcdf(ad.tensor([-1000.0, 0.0]))
    tensor([-1.00000000e+03, -6.93147181e-01])
    """

    @staticmethod
    def _logpdf0(z: Tensor) -> Tensor:
        return sp.log_expit(z) + sp.log_expit(-z)

    _cdf0 = staticmethod(sp.expit)
    _logcdf0 = staticmethod(sp.log_expit)


# ----- continuous, bounded support ---------------------------------------------------------
def _support(z: Tensor, lo: float, hi: float = np.inf) -> tuple[Any, Tensor]:
    ok = (z.data >= lo) & (z.data <= hi)
    return ok, _safe(ok, z, (lo + min(hi, lo + 2.0)) / 2)


class expon:
    """The exponential distribution (``scipy.stats.expon``); -inf log density below loc.

    Examples
    --------
    >>> import autodiffx as ad
    >>> from autodiffx.scipy.stats import expon
    >>> expon.logpdf(ad.tensor([-1.0, 1.0]), 0.0, 2.0)
    tensor([       -inf, -1.19314718])
    """

    @staticmethod
    def logpdf(x: Any, loc: Any = 0.0, scale: Any = 1.0) -> Tensor:
        """-z - log(scale) for z >= 0."""
        ok, z = _support(_z(x, loc, scale), 0.0)
        return _outside(ok, -z - log(_t(scale)), -np.inf)

    @staticmethod
    def pdf(x: Any, loc: Any = 0.0, scale: Any = 1.0) -> Tensor:
        """The density."""
        return exp(expon.logpdf(x, loc, scale))

    @staticmethod
    def cdf(x: Any, loc: Any = 0.0, scale: Any = 1.0) -> Tensor:
        """1 - exp(-z) for z >= 0."""
        ok, z = _support(_z(x, loc, scale), 0.0)
        return _outside(ok, -expm1(-z), 0.0)

    @staticmethod
    def sf(x: Any, loc: Any = 0.0, scale: Any = 1.0) -> Tensor:
        """exp(-z) for z >= 0."""
        ok, z = _support(_z(x, loc, scale), 0.0)
        return _outside(ok, exp(-z), 1.0)

    @staticmethod
    def logsf(x: Any, loc: Any = 0.0, scale: Any = 1.0) -> Tensor:
        """-z for z >= 0."""
        ok, z = _support(_z(x, loc, scale), 0.0)
        return _outside(ok, -z, 0.0)


class gamma:
    """The gamma distribution (``scipy.stats.gamma``, shape a); ``cdf`` is not differentiable
    in a (``NotImplementedError``), the density is.

    Examples
    --------
    >>> import autodiffx as ad
    >>> from autodiffx.scipy.stats import gamma
    >>> a = ad.tensor(2.0, requires_grad=True)
    >>> gamma.logpdf(1.5, a).backward()
    >>> a.grad
    tensor(-0.01731923)
    """

    @staticmethod
    def logpdf(x: Any, a: Any, loc: Any = 0.0, scale: Any = 1.0) -> Tensor:
        """(a - 1) log z - z - gammaln(a) - log(scale) for z >= 0."""
        ok, z = _support(_z(x, loc, scale), 0.0)
        a = _t(a)
        return _outside(ok, sp.xlogy(a - 1, z) - z - gammaln(a) - log(_t(scale)), -np.inf)

    @staticmethod
    def pdf(x: Any, a: Any, loc: Any = 0.0, scale: Any = 1.0) -> Tensor:
        """The density."""
        return exp(gamma.logpdf(x, a, loc, scale))

    @staticmethod
    def cdf(x: Any, a: Any, loc: Any = 0.0, scale: Any = 1.0) -> Tensor:
        """gammainc(a, z) for z >= 0."""
        ok, z = _support(_z(x, loc, scale), 0.0)
        return _outside(ok, sp.gammainc(a, z), 0.0)


class chi2:
    """The chi-squared distribution (``scipy.stats.chi2``): gamma(df / 2, scale 2).

    Examples
    --------
    >>> import autodiffx as ad
    >>> from autodiffx.scipy.stats import chi2
    >>> chi2.pdf(ad.tensor([1.0, 2.0]), 3.0)
    tensor([0.24197072, 0.20755375])
    """

    @staticmethod
    def logpdf(x: Any, df: Any, loc: Any = 0.0, scale: Any = 1.0) -> Tensor:
        """The log density."""
        return gamma.logpdf(x, _t(df) / 2, loc, 2 * _t(scale))

    @staticmethod
    def pdf(x: Any, df: Any, loc: Any = 0.0, scale: Any = 1.0) -> Tensor:
        """The density."""
        return exp(chi2.logpdf(x, df, loc, scale))

    @staticmethod
    def cdf(x: Any, df: Any, loc: Any = 0.0, scale: Any = 1.0) -> Tensor:
        """gammainc(df / 2, z / 2)."""
        return gamma.cdf(x, _t(df) / 2, loc, 2 * _t(scale))


class beta:
    """The beta distribution (``scipy.stats.beta``, shapes a, b); ``cdf`` is not
    differentiable in a, b (``NotImplementedError``), the density is.

    Examples
    --------
    >>> import autodiffx as ad
    >>> from autodiffx.scipy.stats import beta
    >>> beta.pdf(ad.tensor([0.25, 0.5]), 2.0, 3.0)
    tensor([1.6875, 1.5   ])
    """

    @staticmethod
    def logpdf(x: Any, a: Any, b: Any, loc: Any = 0.0, scale: Any = 1.0) -> Tensor:
        """(a-1) log z + (b-1) log(1-z) - betaln(a, b) - log(scale) on [0, 1]."""
        ok, z = _support(_z(x, loc, scale), 0.0, 1.0)
        a, b = _t(a), _t(b)
        val = sp.xlogy(a - 1, z) + sp.xlog1py(b - 1, -z) - sp.betaln(a, b) - log(_t(scale))
        return _outside(ok, val, -np.inf)

    @staticmethod
    def pdf(x: Any, a: Any, b: Any, loc: Any = 0.0, scale: Any = 1.0) -> Tensor:
        """The density."""
        return exp(beta.logpdf(x, a, b, loc, scale))

    @staticmethod
    def cdf(x: Any, a: Any, b: Any, loc: Any = 0.0, scale: Any = 1.0) -> Tensor:
        """betainc(a, b, z), 0 below and 1 above the support."""
        z = _z(x, loc, scale)
        ok, zs = _support(z, 0.0, 1.0)
        return _outside(ok, sp.betainc(a, b, zs), (z.data > 1).astype(np.float64))


# ----- discrete ----------------------------------------------------------------------------
class poisson:
    """The Poisson distribution (``scipy.stats.poisson``); differentiable in mu. The count k
    is data: a k that requires grad raises ``TypeError``.

    Examples
    --------
    >>> import autodiffx as ad
    >>> from autodiffx.scipy.stats import poisson
    >>> mu = ad.tensor(2.0, requires_grad=True)
    >>> poisson.logpmf(3, mu).backward()
    >>> mu.grad
    tensor(0.5)
    """

    @staticmethod
    def logpmf(k: Any, mu: Any, loc: Any = 0) -> Tensor:
        """k log(mu) - mu - log(k!) at integers k >= 0, -inf elsewhere."""
        k = _count("poisson", k) - _count("poisson", loc)
        ok = (k >= 0) & (k == np.floor(k))
        ks = np.where(ok, k, 0.0)
        mu = _t(mu)
        return _outside(ok, sp.xlogy(ks, mu) - mu - gammaln(ks + 1), -np.inf)

    @staticmethod
    def pmf(k: Any, mu: Any, loc: Any = 0) -> Tensor:
        """The probability mass."""
        return exp(poisson.logpmf(k, mu, loc))

    @staticmethod
    def cdf(k: Any, mu: Any, loc: Any = 0) -> Tensor:
        """P(K <= k) = gammaincc(floor(k) + 1, mu); 0 for k < 0."""
        k = np.floor(_count("poisson", k) - _count("poisson", loc))
        ok = k >= 0
        return _outside(ok, sp.gammaincc(np.where(ok, k, 0.0) + 1, _t(mu)), 0.0)


class binom:
    """The binomial distribution (``scipy.stats.binom``); differentiable in p. The counts k
    and n are data: a variable there raises ``TypeError``.

    Examples
    --------
    >>> import autodiffx as ad
    >>> from autodiffx.scipy.stats import binom
    >>> p = ad.tensor(0.3, requires_grad=True)
    >>> binom.logpmf(2, 5, p).backward()
    >>> p.grad
    tensor(2.38095238)
    """

    @staticmethod
    def logpmf(k: Any, n: Any, p: Any, loc: Any = 0) -> Tensor:
        """log C(n, k) + k log p + (n - k) log(1 - p) at integers 0 <= k <= n."""
        k = _count("binom", k) - _count("binom", loc)
        n = _count("binom", n)
        ok = (k >= 0) & (k <= n) & (k == np.floor(k))
        ks = np.where(ok, k, 0.0)
        p = _t(p)
        comb = gammaln(n + 1) - gammaln(ks + 1) - gammaln(n - ks + 1)
        return _outside(ok, comb + sp.xlogy(ks, p) + sp.xlog1py(n - ks, -p), -np.inf)

    @staticmethod
    def pmf(k: Any, n: Any, p: Any, loc: Any = 0) -> Tensor:
        """The probability mass."""
        return exp(binom.logpmf(k, n, p, loc))

    @staticmethod
    def cdf(k: Any, n: Any, p: Any, loc: Any = 0) -> Tensor:
        """P(K <= k) = betainc(n - k, k + 1, 1 - p) for 0 <= k < n; 0 below, 1 from n."""
        k = np.floor(_count("binom", k) - _count("binom", loc))
        n = _count("binom", n)
        ok = (k >= 0) & (k < n)
        ks = np.where(ok, k, 0.0)
        inside = sp.betainc(np.where(ok, n - ks, 1.0), ks + 1, 1 - _t(p))
        return _outside(ok, inside, (k >= n).astype(np.float64))


# ----- multivariate ------------------------------------------------------------------------
class multivariate_normal:
    """The multivariate normal (``scipy.stats.multivariate_normal``); differentiable in x,
    mean and cov. ``cov`` is a scalar, a vector (the diagonal) or a symmetric positive
    definite matrix; its gradient is the symmetric matrix that treats every entry as a
    variable (``cov[i, j]`` and ``cov[j, i]`` each get half of the pair's derivative).

    Examples
    --------
    >>> import autodiffx as ad
    >>> from autodiffx.scipy.stats import multivariate_normal as mvn
    >>> cov = ad.tensor([[2.0, 0.5], [0.5, 1.0]], requires_grad=True)
    >>> mvn.logpdf(ad.tensor([0.3, -0.2]), ad.zeros(2), cov)
    tensor(-2.18339925, grad_fn=<reshape>)
    """

    @staticmethod
    def logpdf(x: Any, mean: Any = None, cov: Any = 1, allow_singular: bool = False) -> Tensor:
        """The log density; x has the dimension on its last axis, as SciPy's."""
        if allow_singular:
            raise NotImplementedError(
                "ad.scipy.stats.multivariate_normal: allow_singular=True is not supported; "
                "pass a positive definite cov"
            )
        x, cov = _t(x), _t(cov)
        d = cov.shape[0] if cov.ndim else (1 if mean is None else int(np.size(_t(mean).data)))
        if cov.ndim < 2:
            cov = cov * np.eye(d) if cov.ndim == 0 else _diag(cov)
        mean = _t(np.zeros(d) if mean is None else mean)
        squeeze_to = None
        if (d == 1 and x.ndim and x.shape[-1] != 1) or x.ndim == 0:
            x = x.reshape((*x.shape, 1))
        elif x.ndim == 1:
            squeeze_to = ()
        diff = x - mean
        sol = _la.solve(cov, diff[..., None])[..., 0]
        _, logdet = _la.slogdet(cov)
        out = -0.5 * _sum(diff * sol, axis=-1) - 0.5 * logdet - d * _LOG_SQRT_2PI
        return out.reshape(squeeze_to) if squeeze_to is not None else out

    @staticmethod
    def pdf(x: Any, mean: Any = None, cov: Any = 1, allow_singular: bool = False) -> Tensor:
        """The density."""
        return exp(multivariate_normal.logpdf(x, mean, cov, allow_singular))


def _diag(v: Tensor) -> Tensor:
    return v[..., None] * np.eye(v.shape[-1])


class dirichlet:
    """The Dirichlet distribution (``scipy.stats.dirichlet``): x has the K components on its
    first axis (SciPy's layout); differentiable in x and alpha.

    Examples
    --------
    >>> import autodiffx as ad
    >>> from autodiffx.scipy.stats import dirichlet
    >>> dirichlet.logpdf(ad.tensor([0.2, 0.3, 0.5]), ad.tensor([1.0, 2.0, 3.0]))
    tensor(1.5040774)
    """

    @staticmethod
    def logpdf(x: Any, alpha: Any) -> Tensor:
        """sum((alpha - 1) log x) + gammaln(sum(alpha)) - sum(gammaln(alpha))."""
        x, alpha = _t(x), _t(alpha)
        a = alpha.reshape(alpha.shape + (1,) * (x.ndim - 1))
        norm_c = gammaln(_sum(alpha)) - _sum(gammaln(alpha))
        return _sum(sp.xlogy(a - 1, x), axis=0) + norm_c

    @staticmethod
    def pdf(x: Any, alpha: Any) -> Tensor:
        """The density."""
        return exp(dirichlet.logpdf(x, alpha))
