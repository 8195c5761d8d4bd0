"""LowRankMultivariateNormal: a Gaussian with covariance ``W Wᵀ + diag(D)``, and its KLs."""

from __future__ import annotations

import math
from functools import cached_property
from typing import Any, ClassVar

import numpy as np

from .. import ops
from .._mode import enable_grad
from .._tensor import Tensor
from ..ops import linalg_decomp as la
from . import constraints
from ._base import Distribution, as_tensor, param_dtype
from .constraints import Constraint
from .kl import register_kl
from .multivariate import (
    MultivariateNormal,
    _Gaussian,
    _half_log_det,
    _mahalanobis,
    _mv,
    _tri_solve,
)

__all__ = ["LowRankMultivariateNormal"]


def _eye_like(n: int, dtype: np.dtype) -> Tensor:
    return Tensor(np.eye(n, dtype=dtype))


def _capacitance_tril(w: Tensor, d: Tensor) -> Tensor:
    """Cholesky factor of the capacitance ``C = I + Wᵀ D⁻¹ W`` (m x m)."""
    wt_dinv = ops.swapaxes(w, -1, -2) / ops.expand_dims(d, -2)
    return la.cholesky(wt_dinv @ w + _eye_like(w.shape[-1], w.dtype))


def _lowrank_logdet(d: Tensor, cap_tril: Tensor) -> Tensor:
    """``log det(W Wᵀ + D) = log det C + sum(log D)`` (the matrix determinant lemma)."""
    return 2 * _half_log_det(cap_tril) + ops.log(d).sum(axis=-1)


def _woodbury_factor(w: Tensor, d: Tensor, cap_tril: Tensor) -> Tensor:
    """``A = L_C⁻¹ Wᵀ D⁻¹``, so that ``(W Wᵀ + D)⁻¹ = D⁻¹ - Aᵀ A`` (Woodbury)."""
    wt_dinv = ops.swapaxes(w, -1, -2) / ops.expand_dims(d, -2)
    shape = np.broadcast_shapes(cap_tril.shape[:-2], wt_dinv.shape[:-2])
    m, n = wt_dinv.shape[-2:]
    return _tri_solve(
        ops.broadcast_to(cap_tril, (*shape, m, m)), ops.broadcast_to(wt_dinv, (*shape, m, n))
    )


def _lowrank_mahalanobis(w: Tensor, d: Tensor, x: Tensor, cap_tril: Tensor) -> Tensor:
    """``xᵀ (W Wᵀ + D)⁻¹ x = xᵀ D⁻¹ x - |L_C⁻¹ Wᵀ D⁻¹ x|²`` over the last axis."""
    wt_dinv_x = _mv(ops.swapaxes(w, -1, -2), x / d)
    return (x**2 / d).sum(axis=-1) - _mahalanobis(cap_tril, wt_dinv_x)


def _trace_xxt(x: Tensor) -> Tensor:
    """``trace(X Xᵀ)``: the sum of squares over the last two axes."""
    return (x**2).sum(axis=(-2, -1))


class LowRankMultivariateNormal(_Gaussian):
    """Multivariate normal with covariance ``cov_factor @ cov_factor.T + diag(cov_diag)``.

    PyTorch's parametrisation: ``loc`` (n), ``cov_factor`` W (n x m, usually m << n) and
    ``cov_diag`` D (n, positive). ``log_prob`` and ``entropy`` cost O(n m²), never O(n³): the
    determinant comes from the capacitance ``C = I + Wᵀ D⁻¹ W`` (m x m) and the Mahalanobis
    term from Woodbury's identity. ``rsample`` is ``loc + W eps_W + sqrt(D) eps_D`` with
    ``eps_W`` (shape ``... + (m,)``) drawn before ``eps_D`` (shape ``... + (n,)``).

    Examples
    --------
    >>> import autodiffx as ad
    >>> W = ad.tensor([[1.0], [0.5], [0.0]], requires_grad=True)
    >>> d = ad.distributions.LowRankMultivariateNormal(ad.zeros(3), W, ad.ones(3))
    >>> d.variance
    tensor([2.  , 1.25, 1.  ], grad_fn=<broadcast_to>)
    >>> d.log_prob(ad.tensor([1.0, -1.0, 0.5]))
    tensor(-4.23172515, grad_fn=<multiply>)
    >>> d.entropy().backward()
    >>> W.grad  # d entropy / dW = (W Wᵀ + D)⁻¹ W
    tensor([[0.44444444],
            [0.22222222],
            [0.        ]])
    """

    arg_constraints: ClassVar[dict[str, Constraint]] = {
        "loc": constraints.real_vector,
        "cov_factor": constraints.independent(constraints.real, 2),
        "cov_diag": constraints.independent(constraints.positive, 1),
    }
    support = constraints.real_vector
    has_rsample = True

    def __init__(
        self, loc: Any, cov_factor: Any, cov_diag: Any, validate_args: bool | None = None
    ) -> None:
        dtype = param_dtype([loc, cov_factor, cov_diag])
        loc, w, d = (as_tensor(v, dtype) for v in (loc, cov_factor, cov_diag))
        self._check_shapes(loc, w, d)
        n, m = w.shape[-2:]
        try:
            batch = np.broadcast_shapes(loc.shape[:-1], w.shape[:-2], d.shape[:-1])
        except ValueError:
            raise ValueError(
                "LowRankMultivariateNormal: the batch shapes of loc, cov_factor and cov_diag "
                f"do not broadcast: {loc.shape}, {w.shape}, {d.shape}"
            ) from None
        self.loc = ops.broadcast_to(loc, (*batch, n))
        self.cov_factor = ops.broadcast_to(w, (*batch, n, m))
        self.cov_diag = ops.broadcast_to(d, (*batch, n))
        self._unbroadcasted_cov_factor = w
        self._unbroadcasted_cov_diag = d
        super().__init__(batch, (n,), validate_args=validate_args)
        self._capacitance_tril = _capacitance_tril(w, d)

    @staticmethod
    def _check_shapes(loc: Tensor, w: Tensor, d: Tensor) -> None:
        if loc.ndim < 1 or w.ndim < 2 or d.ndim < 1:
            raise ValueError(
                "LowRankMultivariateNormal: loc and cov_diag must be at least 1-D and "
                f"cov_factor at least 2-D; got loc {loc.shape}, cov_factor {w.shape}, "
                f"cov_diag {d.shape}"
            )
        n = loc.shape[-1]
        if w.shape[-2] != n or d.shape[-1] != n:
            raise ValueError(
                f"LowRankMultivariateNormal: with n = loc.shape[-1] = {n}, cov_factor must be "
                f"a (stack of) n x m matrix and cov_diag a (stack of) n-vector; got cov_factor "
                f"{w.shape}, cov_diag {d.shape}"
            )

    def _init_params(self) -> dict[str, tuple[Tensor, int]]:
        return {
            "loc": (self.loc, 1),
            "cov_factor": (self.cov_factor, 2),
            "cov_diag": (self.cov_diag, 1),
        }

    @property
    def variance(self) -> Tensor:
        w, d = self._unbroadcasted_cov_factor, self._unbroadcasted_cov_diag
        return ops.broadcast_to((w**2).sum(axis=-1) + d, self._batch_shape + self._event_shape)

    @cached_property
    def covariance_matrix(self) -> Tensor:
        """``W Wᵀ + diag(D)``."""
        with enable_grad():
            w, d = self._unbroadcasted_cov_factor, self._unbroadcasted_cov_diag
            n = self._event_shape[0]
            diag = ops.expand_dims(d, -1) * _eye_like(n, d.dtype)
            return self._full(w @ ops.swapaxes(w, -1, -2) + diag)

    @cached_property
    def precision_matrix(self) -> Tensor:
        """``D⁻¹ - Aᵀ A`` with ``A = L_C⁻¹ Wᵀ D⁻¹`` (Woodbury)."""
        with enable_grad():
            w, d = self._unbroadcasted_cov_factor, self._unbroadcasted_cov_diag
            a = _woodbury_factor(w, d, self._capacitance_tril)
            n = self._event_shape[0]
            d_inv = ops.expand_dims(1.0 / d, -1) * _eye_like(n, d.dtype)
            return self._full(d_inv - ops.swapaxes(a, -1, -2) @ a)

    @cached_property
    def scale_tril(self) -> Tensor:
        """Lower Cholesky factor of the covariance, ``sqrt(D) chol(I + D^-1/2 W Wᵀ D^-1/2)``."""
        with enable_grad():
            # NOTE: PyTorch's form (Rasmussen & Williams, GPML 3.4.3): the middle matrix has
            # eigenvalues >= 1, so its Cholesky factorisation is well conditioned.
            w, d = self._unbroadcasted_cov_factor, self._unbroadcasted_cov_diag
            sqrt_d = ops.expand_dims(ops.sqrt(d), -1)
            scaled = w / sqrt_d
            n = self._event_shape[0]
            k = scaled @ ops.swapaxes(scaled, -1, -2) + _eye_like(n, w.dtype)
            return self._full(sqrt_d * la.cholesky(k))

    def rsample(self, sample_shape: Any = (), *, rng: Any = None) -> Tensor:
        shape = self._extended_shape(sample_shape)
        gen = self._generator(rng)
        m = self._unbroadcasted_cov_factor.shape[-1]
        eps_w = gen.standard_normal((*shape[:-1], m)).astype(self._dtype(), copy=False)
        eps_d = gen.standard_normal(shape).astype(self._dtype(), copy=False)
        w, d = self._unbroadcasted_cov_factor, self._unbroadcasted_cov_diag
        return self.loc + _mv(w, eps_w) + ops.sqrt(d) * eps_d

    def log_prob(self, value: Any) -> Tensor:
        diff = self._value(value) - self.loc
        w, d = self._unbroadcasted_cov_factor, self._unbroadcasted_cov_diag
        m = _lowrank_mahalanobis(w, d, diff, self._capacitance_tril)
        log_det = _lowrank_logdet(d, self._capacitance_tril)
        n = self._event_shape[0]
        return -0.5 * (n * math.log(2 * math.pi) + log_det + m)

    def entropy(self) -> Tensor:
        log_det = _lowrank_logdet(self._unbroadcasted_cov_diag, self._capacitance_tril)
        h = 0.5 * (self._event_shape[0] * (1.0 + math.log(2 * math.pi)) + log_det)
        return ops.broadcast_to(h, self._batch_shape)


def _same_event(p: Distribution, q: Distribution) -> None:
    if p.event_shape != q.event_shape:
        raise ValueError(
            f"kl_divergence: {type(p).__name__} and {type(q).__name__} have different event "
            f"shapes {p.event_shape} and {q.event_shape}"
        )


def _q_terms(p: Distribution, q: LowRankMultivariateNormal) -> tuple[Tensor, Tensor]:
    """``log det Σ_q`` and the Mahalanobis term of ``q.loc - p.loc`` under a low-rank q."""
    qw, qd = q._unbroadcasted_cov_factor, q._unbroadcasted_cov_diag
    log_det = _lowrank_logdet(qd, q._capacitance_tril)
    return log_det, _lowrank_mahalanobis(qw, qd, q.loc - p.loc, q._capacitance_tril)


@register_kl(LowRankMultivariateNormal, LowRankMultivariateNormal)
def _kl_lowrank_lowrank(p: LowRankMultivariateNormal, q: LowRankMultivariateNormal) -> Tensor:
    _same_event(p, q)
    q_logdet, term3 = _q_terms(p, q)
    term1 = q_logdet - _lowrank_logdet(p._unbroadcasted_cov_diag, p._capacitance_tril)
    # trace(Σ_q⁻¹ Σ_p) with Σ_q⁻¹ = D_q⁻¹ - Aᵀ A and Σ_p = D_p + W_p W_pᵀ
    pw, pd = p._unbroadcasted_cov_factor, p._unbroadcasted_cov_diag
    qd = q._unbroadcasted_cov_diag
    a = _woodbury_factor(q._unbroadcasted_cov_factor, qd, q._capacitance_tril)
    term21 = (pd / qd).sum(axis=-1)
    term22 = _trace_xxt(pw / ops.expand_dims(ops.sqrt(qd), -1))
    term23 = _trace_xxt(a * ops.expand_dims(ops.sqrt(pd), -2))
    term24 = _trace_xxt(a @ pw)
    term2 = term21 + term22 - term23 - term24
    return 0.5 * (term1 + term2 + term3 - p.event_shape[0])


@register_kl(MultivariateNormal, LowRankMultivariateNormal)
def _kl_mvn_lowrank(p: MultivariateNormal, q: LowRankMultivariateNormal) -> Tensor:
    _same_event(p, q)
    q_logdet, term3 = _q_terms(p, q)
    pl = p._unbroadcasted_scale_tril
    term1 = q_logdet - 2 * _half_log_det(pl)
    qd = q._unbroadcasted_cov_diag
    a = _woodbury_factor(q._unbroadcasted_cov_factor, qd, q._capacitance_tril)
    # NOTE: L_p as a full matrix here, as PyTorch does (its entries above the diagonal, zero,
    # get the gradient of L Lᵀ), unlike the triangular solves of MVN-MVN.
    term21 = _trace_xxt(pl / ops.expand_dims(ops.sqrt(qd), -1))
    term22 = _trace_xxt(a @ pl)
    return 0.5 * (term1 + term21 - term22 + term3 - p.event_shape[0])


@register_kl(LowRankMultivariateNormal, MultivariateNormal)
def _kl_lowrank_mvn(p: LowRankMultivariateNormal, q: MultivariateNormal) -> Tensor:
    _same_event(p, q)
    ql = q._unbroadcasted_scale_tril
    term1 = 2 * _half_log_det(ql) - _lowrank_logdet(p._unbroadcasted_cov_diag, p._capacitance_tril)
    term3 = _mahalanobis(ql, q.loc - p.loc)
    pw, pd = p._unbroadcasted_cov_factor, p._unbroadcasted_cov_diag
    n, m = pw.shape[-2:]
    batch = np.broadcast_shapes(ql.shape[:-2], pw.shape[:-2], pd.shape[:-1])
    ql_b = ops.broadcast_to(ql, (*batch, n, n))
    term21 = _trace_xxt(_tri_solve(ql_b, ops.broadcast_to(pw, (*batch, n, m))))
    sqrt_pd = ops.expand_dims(ops.sqrt(pd), -1) * _eye_like(n, pd.dtype)
    term22 = _trace_xxt(_tri_solve(ql_b, ops.broadcast_to(sqrt_pd, (*batch, n, n))))
    return 0.5 * (term1 + term21 + term22 + term3 - p.event_shape[0])
