"""``kl_divergence(p, q)`` with a registry of closed forms (``register_kl``)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from .. import ops
from .._tensor import Tensor
from ..nn import functional as F
from ._base import Distribution, sum_rightmost
from .continuous import Beta, Exponential, Gamma, Laplace, Normal, Uniform
from .discrete import Bernoulli, Categorical, Poisson
from .multivariate import Dirichlet, MultivariateNormal, _half_log_det, _mahalanobis, _tri_solve
from .transformed import Independent, TransformedDistribution

__all__ = ["kl_divergence", "register_kl"]

_KL_REGISTRY: dict[tuple[type, type], Callable[..., Any]] = {}
_KL_MEMO: dict[tuple[type, type], Callable[..., Any] | None] = {}


def register_kl(type_p: type, type_q: type) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator registering ``fn(p, q)`` as KL(p || q) for ``type_p``, ``type_q`` and subclasses.

    The most specific registered pair wins (as PyTorch); a tie between two pairs warns.

    Examples
    --------
    >>> import autodiffx as ad
    >>> D = ad.distributions
    >>> class Shifted(D.Normal):
    ...     pass
    >>> @D.register_kl(Shifted, Shifted)
    ... def _kl_shifted(p, q):
    ...     return D.kl_divergence(D.Normal(p.loc, p.scale), D.Normal(q.loc, q.scale))
    >>> D.kl_divergence(Shifted(0.0, 1.0), Shifted(1.0, 1.0))
    tensor(0.5)
    """
    if not (isinstance(type_p, type) and issubclass(type_p, Distribution)):
        raise TypeError(f"register_kl: {type_p!r} is not a Distribution subclass")
    if not (isinstance(type_q, type) and issubclass(type_q, Distribution)):
        raise TypeError(f"register_kl: {type_q!r} is not a Distribution subclass")

    def decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
        _KL_REGISTRY[type_p, type_q] = fn
        _KL_MEMO.clear()
        return fn

    return decorator


def _dispatch(type_p: type, type_q: type) -> Callable[..., Any] | None:
    matches = [
        (sp, sq) for sp, sq in _KL_REGISTRY if issubclass(type_p, sp) and issubclass(type_q, sq)
    ]
    if not matches:
        return None
    mro_p, mro_q = type_p.__mro__, type_q.__mro__
    left = min(matches, key=lambda m: (mro_p.index(m[0]), mro_q.index(m[1])))
    right = min(matches, key=lambda m: (mro_q.index(m[1]), mro_p.index(m[0])))
    if _KL_REGISTRY[left] is not _KL_REGISTRY[right]:
        warnings.warn(
            f"Ambiguous kl_divergence({type_p.__name__}, {type_q.__name__}): register_kl("
            f"{left[0].__name__}, {right[1].__name__}) to decide",
            RuntimeWarning,
            stacklevel=3,
        )
    return _KL_REGISTRY[left]


def kl_divergence(p: Distribution, q: Distribution) -> Tensor:
    """KL(p || q) = E_p[log p(x) - log q(x)], in closed form, with shape ``batch_shape``.

    Pairs: Normal, MultivariateNormal, Bernoulli, Categorical, Gamma, Beta, Dirichlet,
    Exponential, Laplace, Uniform, Poisson (each with itself), MultivariateNormal and
    LowRankMultivariateNormal (all four pairs), Independent-Independent (same
    reinterpreted axes) and TransformedDistribution pairs with equal transforms (LogNormal).
    A missing pair raises ``NotImplementedError``; add one with ``register_kl``.

    Examples
    --------
    >>> import autodiffx as ad
    >>> D = ad.distributions
    >>> D.kl_divergence(D.Normal(0.0, 1.0), D.Normal(1.0, 2.0))
    tensor(0.44314718)
    """
    key = (type(p), type(q))
    if key not in _KL_MEMO:
        _KL_MEMO[key] = _dispatch(*key)
    fn = _KL_MEMO[key]
    if fn is None:
        raise NotImplementedError(
            f"kl_divergence: no closed form is registered for p {type(p).__name__} and q "
            f"{type(q).__name__}; register one with @register_kl({type(p).__name__}, "
            f"{type(q).__name__}) or estimate it by Monte Carlo: "
            "(p.log_prob(x) - q.log_prob(x)).mean() with x = p.sample(...)"
        )
    return fn(p, q)


def _inf_where(mask: Any, t: Tensor) -> Tensor:
    mask = np.broadcast_to(np.asarray(mask), t.shape)
    return ops.where(mask, np.inf, t) if mask.any() else t


def _zero_where(mask: Any, t: Tensor) -> Tensor:
    mask = np.broadcast_to(np.asarray(mask), t.shape)
    return ops.where(mask, 0.0, t) if mask.any() else t


def _same(p: Any, q: Any, attribute: str, error: type[Exception]) -> None:
    """Raise ``error`` unless p and q (of one class) agree on ``attribute``."""
    a, b = getattr(p, attribute), getattr(q, attribute)
    if a != b:
        raise error(
            f"kl_divergence: {type(p).__name__} distributions with different {attribute} "
            f"({a} and {b})"
        )


@register_kl(Normal, Normal)
def _kl_normal_normal(p: Normal, q: Normal) -> Tensor:
    var_ratio = (p.scale / q.scale) ** 2
    t1 = ((p.loc - q.loc) / q.scale) ** 2
    return 0.5 * (var_ratio + t1 - 1 - ops.log(var_ratio))


@register_kl(MultivariateNormal, MultivariateNormal)
def _kl_mvn_mvn(p: MultivariateNormal, q: MultivariateNormal) -> Tensor:
    _same(p, q, "event_shape", ValueError)
    lp, lq = p._unbroadcasted_scale_tril, q._unbroadcasted_scale_tril
    n = p.event_shape[0]
    batch = np.broadcast_shapes(lp.shape[:-2], lq.shape[:-2])
    shape = (*batch, n, n)
    lq_b = lq if lq.shape == shape else ops.broadcast_to(lq, shape)
    lp_b = lp if lp.shape == shape else ops.broadcast_to(lp, shape)
    term2 = (_tri_solve(lq_b, lp_b) ** 2).sum(axis=(-2, -1))
    term3 = _mahalanobis(lq, q.loc - p.loc)
    return _half_log_det(lq) - _half_log_det(lp) + 0.5 * (term2 + term3 - n)


@register_kl(Bernoulli, Bernoulli)
def _kl_bernoulli_bernoulli(p: Bernoulli, q: Bernoulli) -> Tensor:
    pp, qp = p.probs, q.probs
    t1 = pp * (F.softplus(-q.logits) - F.softplus(-p.logits))
    t1 = _zero_where(pp.data == 0, _inf_where(qp.data == 0, t1))
    t2 = (1 - pp) * (F.softplus(q.logits) - F.softplus(p.logits))
    t2 = _zero_where(pp.data == 1, _inf_where(qp.data == 1, t2))
    return t1 + t2


@register_kl(Categorical, Categorical)
def _kl_categorical_categorical(p: Categorical, q: Categorical) -> Tensor:
    t = p.probs * (p.logits - q.logits)
    t = _zero_where(p.probs.data == 0, _inf_where(q.probs.data == 0, t))
    return t.sum(axis=-1)


@register_kl(Gamma, Gamma)
def _kl_gamma_gamma(p: Gamma, q: Gamma) -> Tensor:
    t1 = q.concentration * ops.log(p.rate / q.rate)
    t2 = ops.gammaln(q.concentration) - ops.gammaln(p.concentration)
    t3 = (p.concentration - q.concentration) * ops.digamma(p.concentration)
    t4 = (q.rate - p.rate) * (p.concentration / p.rate)
    return t1 + t2 + t3 + t4


@register_kl(Beta, Beta)
def _kl_beta_beta(p: Beta, q: Beta) -> Tensor:
    sum_p = p.concentration1 + p.concentration0
    sum_q = q.concentration1 + q.concentration0
    t1 = ops.gammaln(q.concentration1) + ops.gammaln(q.concentration0) + ops.gammaln(sum_p)
    t2 = ops.gammaln(p.concentration1) + ops.gammaln(p.concentration0) + ops.gammaln(sum_q)
    t3 = (p.concentration1 - q.concentration1) * ops.digamma(p.concentration1)
    t4 = (p.concentration0 - q.concentration0) * ops.digamma(p.concentration0)
    t5 = (sum_q - sum_p) * ops.digamma(sum_p)
    return t1 - t2 + t3 + t4 + t5


@register_kl(Dirichlet, Dirichlet)
def _kl_dirichlet_dirichlet(p: Dirichlet, q: Dirichlet) -> Tensor:
    sum_p = p.concentration.sum(axis=-1)
    sum_q = q.concentration.sum(axis=-1)
    t1 = ops.gammaln(sum_p) - ops.gammaln(sum_q)
    t2 = (ops.gammaln(p.concentration) - ops.gammaln(q.concentration)).sum(axis=-1)
    t3 = p.concentration - q.concentration
    t4 = ops.digamma(p.concentration) - ops.expand_dims(ops.digamma(sum_p), -1)
    return t1 - t2 + (t3 * t4).sum(axis=-1)


@register_kl(Exponential, Exponential)
def _kl_exponential_exponential(p: Exponential, q: Exponential) -> Tensor:
    rate_ratio = q.rate / p.rate
    return -ops.log(rate_ratio) + rate_ratio - 1


@register_kl(Laplace, Laplace)
def _kl_laplace_laplace(p: Laplace, q: Laplace) -> Tensor:
    scale_ratio = p.scale / q.scale
    loc_abs_diff = ops.abs(p.loc - q.loc)
    t1 = -ops.log(scale_ratio)
    t2 = loc_abs_diff / q.scale
    t3 = scale_ratio * ops.exp(-loc_abs_diff / p.scale)
    return t1 + t2 + t3 - 1


@register_kl(Uniform, Uniform)
def _kl_uniform_uniform(p: Uniform, q: Uniform) -> Tensor:
    result = ops.log((q.high - q.low) / (p.high - p.low))
    outside = (q.low.data > p.low.data) | (q.high.data < p.high.data)
    return _inf_where(outside, result)


@register_kl(Poisson, Poisson)
def _kl_poisson_poisson(p: Poisson, q: Poisson) -> Tensor:
    return p.rate * (ops.log(p.rate) - ops.log(q.rate)) - (p.rate - q.rate)


@register_kl(Independent, Independent)
def _kl_independent_independent(p: Independent, q: Independent) -> Tensor:
    _same(p, q, "reinterpreted_batch_ndims", NotImplementedError)
    return sum_rightmost(kl_divergence(p.base_dist, q.base_dist), p.reinterpreted_batch_ndims)


@register_kl(TransformedDistribution, TransformedDistribution)
def _kl_transformed_transformed(p: TransformedDistribution, q: TransformedDistribution) -> Tensor:
    if p.transforms != q.transforms or p.event_shape != q.event_shape:
        raise NotImplementedError(
            "kl_divergence: TransformedDistributions with different transforms or event "
            "shapes have no closed form here"
        )
    return kl_divergence(p.base_dist, q.base_dist)
