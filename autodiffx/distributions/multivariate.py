"""Vector-valued distributions: MultivariateNormal and Dirichlet."""

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
from ._base import Distribution, as_tensor, param_dtype, xlogy
from ._reparam import DirichletRsample
from .constraints import Constraint

__all__ = ["Dirichlet", "MultivariateNormal"]

_MATRICES = ("covariance_matrix", "precision_matrix", "scale_tril")


def _mv(mat: Tensor, vec: Any) -> Tensor:
    """A (stack of) matrix times a (stack of) vector, broadcasting the stacks."""
    return (mat @ ops.expand_dims(vec, -1))[..., 0]


def _tri_solve(low: Tensor, rhs: Tensor) -> Tensor:
    """``L⁻¹ rhs`` for a lower-triangular ``L`` (only its lower triangle is read)."""
    return la.solve(ops.tril(low), rhs)


def _mahalanobis(scale_tril: Tensor, diff: Tensor) -> Tensor:
    """Squared Mahalanobis norm ``|L⁻¹ diff|²`` over the last axis (stacks broadcast)."""
    n = diff.shape[-1]
    shape = np.broadcast_shapes(scale_tril.shape[:-2], diff.shape[:-1])
    low = ops.broadcast_to(scale_tril, (*shape, n, n))
    z = _tri_solve(low, ops.expand_dims(ops.broadcast_to(diff, (*shape, n)), -1))
    return (z[..., 0] ** 2).sum(axis=-1)


def _half_log_det(scale_tril: Tensor) -> Tensor:
    """``log det L = sum(log diag L)``: half the log-determinant of the covariance."""
    return ops.log(ops.diagonal(scale_tril, axis1=-2, axis2=-1)).sum(axis=-1)


def _precision_to_scale_tril(prec: Tensor) -> Tensor:
    # NOTE: PyTorch's construction: the Cholesky factor of the flipped precision gives L⁻¹
    # without forming the covariance (better conditioned than cholesky(inv(P))).
    flipped = la.cholesky(ops.flip(prec, axis=(-2, -1)))
    l_inv = ops.swapaxes(ops.flip(flipped, axis=(-2, -1)), -1, -2)
    eye = np.eye(prec.shape[-1], dtype=prec.dtype)
    return _tri_solve(l_inv, ops.broadcast_to(Tensor(eye), l_inv.shape))


class _Gaussian(Distribution):
    """What the multivariate normals share: the dtype and mean of ``loc``, matrices broadcast
    to the batch shape."""

    loc: Tensor

    def _dtype(self) -> np.dtype:
        return self.loc.dtype

    def _full(self, m: Tensor) -> Tensor:
        return ops.broadcast_to(m, self._batch_shape + self._event_shape * 2)

    @property
    def mean(self) -> Tensor:
        return self.loc


class MultivariateNormal(_Gaussian):
    """Multivariate normal with ``loc`` and exactly one of ``covariance_matrix``,
    ``precision_matrix`` or ``scale_tril`` (a lower Cholesky factor of the covariance).

    Everything is computed from the lower-triangular factor ``L`` (``cholesky`` of the
    covariance, or PyTorch's flipped Cholesky of the precision); ``rsample`` is
    ``loc + L @ eps`` with ``eps = rng.standard_normal(sample_shape + batch_shape + (n,))``.

    Examples
    --------
    >>> import autodiffx as ad
    >>> cov = ad.tensor([[2.0, 0.5], [0.5, 1.0]], requires_grad=True)
    >>> d = ad.distributions.MultivariateNormal(ad.zeros(2), covariance_matrix=cov)
    >>> d.log_prob(ad.tensor([1.0, -1.0]))
    tensor(-3.2605421, grad_fn=<subtract>)
    >>> d.entropy().backward()
    >>> cov.grad  # d entropy / d cov = inv(cov) / 2
    tensor([[ 0.28571429, -0.14285714],
            [-0.14285714,  0.57142857]])
    """

    arg_constraints: ClassVar[dict[str, Constraint]] = {
        "loc": constraints.real_vector,
        "covariance_matrix": constraints.positive_definite,
        "precision_matrix": constraints.positive_definite,
        "scale_tril": constraints.lower_cholesky,
    }
    support = constraints.real_vector
    has_rsample = True

    def __init__(
        self,
        loc: Any,
        covariance_matrix: Any = None,
        precision_matrix: Any = None,
        scale_tril: Any = None,
        validate_args: bool | None = None,
    ) -> None:
        given = {
            k: v
            for k, v in zip(_MATRICES, (covariance_matrix, precision_matrix, scale_tril))
            if v is not None
        }
        if len(given) != 1:
            raise ValueError(
                "MultivariateNormal: give exactly one of covariance_matrix=, "
                f"precision_matrix= or scale_tril= (got {sorted(given) or 'none'})"
            )
        ((name, mat),) = given.items()
        dtype = param_dtype([loc, mat])
        loc, mat = as_tensor(loc, dtype), as_tensor(mat, dtype)
        n = loc.shape[-1] if loc.ndim else None
        if n is None or mat.ndim < 2 or mat.shape[-2:] != (n, n):
            raise ValueError(
                f"MultivariateNormal: loc must be at least 1-D and {name} a (stack of) "
                f"n x n matrix with n = loc.shape[-1]; got loc {loc.shape}, {name} {mat.shape}"
            )
        batch = np.broadcast_shapes(mat.shape[:-2], loc.shape[:-1])
        self.__dict__[name] = ops.broadcast_to(mat, (*batch, n, n))
        self.loc = ops.broadcast_to(loc, (*batch, n))
        self._given = (name, mat)
        super().__init__(batch, (n,), validate_args=validate_args)
        if name == "scale_tril":
            self._unbroadcasted_scale_tril = mat
        elif name == "covariance_matrix":
            self._unbroadcasted_scale_tril = la.cholesky(mat)
        else:
            self._unbroadcasted_scale_tril = _precision_to_scale_tril(mat)

    def _init_params(self) -> dict[str, tuple[Tensor, int]]:
        return {"loc": (self.loc, 1), self._given[0]: (self.__dict__[self._given[0]], 2)}

    @cached_property
    def scale_tril(self) -> Tensor:
        """Lower Cholesky factor of the covariance."""
        return self._full(self._unbroadcasted_scale_tril)

    @cached_property
    def covariance_matrix(self) -> Tensor:
        """``L Lᵀ``."""
        with enable_grad():
            low = self._unbroadcasted_scale_tril
            return self._full(low @ ops.swapaxes(low, -1, -2))

    @cached_property
    def precision_matrix(self) -> Tensor:
        """``(L Lᵀ)⁻¹ = L⁻ᵀ L⁻¹``."""
        with enable_grad():
            low = self._unbroadcasted_scale_tril
            eye = Tensor(np.eye(low.shape[-1], dtype=low.dtype))
            # NOTE: L as a full matrix here (PyTorch's cholesky_inverse differentiates so): the
            # entries above the diagonal (zero) get the gradient of (L Lᵀ)⁻¹ like in rsample.
            l_inv = la.solve(low, ops.broadcast_to(eye, low.shape))
            return self._full(ops.swapaxes(l_inv, -1, -2) @ l_inv)

    @property
    def variance(self) -> Tensor:
        var = (self._unbroadcasted_scale_tril**2).sum(axis=-1)
        return ops.broadcast_to(var, self._batch_shape + self._event_shape)

    def rsample(self, sample_shape: Any = (), *, rng: Any = None) -> Tensor:
        eps = self._noise(rng, sample_shape, "standard_normal")
        return self.loc + _mv(self._unbroadcasted_scale_tril, eps)

    def log_prob(self, value: Any) -> Tensor:
        diff = self._value(value) - self.loc
        m = _mahalanobis(self._unbroadcasted_scale_tril, diff)
        n = self._event_shape[0]
        return -0.5 * (n * math.log(2 * math.pi) + m) - _half_log_det(
            self._unbroadcasted_scale_tril
        )

    def entropy(self) -> Tensor:
        n = self._event_shape[0]
        h = 0.5 * n * (1.0 + math.log(2 * math.pi)) + _half_log_det(self._unbroadcasted_scale_tril)
        return ops.broadcast_to(h, self._batch_shape)


def _sample_dirichlet(alpha: np.ndarray, gen: np.random.Generator) -> np.ndarray:
    # NOTE: Gamma(a) = Gamma(a + 1) * U**(1/a), taken in logs and normalised with logsumexp,
    # so that small concentrations (whose gamma draws underflow to 0) still give a sample on
    # the simplex; clamped to [tiny, 1 - eps] as PyTorch does.
    a = alpha.astype(np.float64)
    log_g = np.log(gen.standard_gamma(a + 1.0)) + np.log1p(-gen.random(a.shape)) / a  # U in (0, 1]
    top = log_g.max(axis=-1, keepdims=True)
    y = np.exp(log_g - top)
    y /= y.sum(axis=-1, keepdims=True)
    info = np.finfo(alpha.dtype)
    return np.clip(y, info.tiny, 1 - info.eps).astype(alpha.dtype, copy=False)


class Dirichlet(Distribution):
    """Dirichlet distribution over the simplex (the last axis of ``concentration``).

    ``rsample`` draws from independent gammas and is differentiated by PyTorch's implicit
    reparameterisation: coordinate i moves along its Beta(a_i, sum(a) - a_i) marginal and the
    others shrink in proportion, ``dy_j/da_i = g_i (delta_ij - y_j)``; ``g_i`` is computed to
    about 1e-13 (PyTorch's ``_dirichlet_grad`` approximates it to ~1e-3).

    Examples
    --------
    >>> import autodiffx as ad
    >>> a = ad.tensor([1.0, 2.0, 3.0], requires_grad=True)
    >>> d = ad.distributions.Dirichlet(a)
    >>> d.mean
    tensor([0.16666667, 0.33333333, 0.5       ], grad_fn=<divide>)
    >>> d.log_prob(ad.tensor([0.2, 0.3, 0.5]))
    tensor(1.5040774, grad_fn=<subtract>)
    """

    arg_constraints: ClassVar[dict[str, Constraint]] = {
        "concentration": constraints.independent(constraints.positive, 1)
    }
    support = constraints.simplex
    has_rsample = True

    def __init__(self, concentration: Any, validate_args: bool | None = None) -> None:
        c = as_tensor(concentration, param_dtype([concentration]))
        if c.ndim < 1:
            raise ValueError("Dirichlet: concentration must be at least one-dimensional")
        self.concentration = c
        super().__init__(c.shape[:-1], c.shape[-1:], validate_args=validate_args)

    def _init_params(self) -> dict[str, tuple[Tensor, int]]:
        return {"concentration": (self.concentration, 1)}

    def _dtype(self) -> np.dtype:
        return self.concentration.dtype

    def rsample(self, sample_shape: Any = (), *, rng: Any = None) -> Tensor:
        conc = ops.broadcast_to(self.concentration, self._extended_shape(sample_shape))
        y = _sample_dirichlet(conc.data, self._generator(rng))
        return DirichletRsample.apply(conc, y)

    def log_prob(self, value: Any) -> Tensor:
        v = self._value(value)
        c = self.concentration
        return (
            xlogy(c - 1.0, v).sum(axis=-1)
            + ops.gammaln(c.sum(axis=-1))
            - ops.gammaln(c).sum(axis=-1)
        )

    @property
    def mean(self) -> Tensor:
        return self.concentration / self.concentration.sum(axis=-1, keepdims=True)

    @property
    def variance(self) -> Tensor:
        c = self.concentration
        c0 = c.sum(axis=-1, keepdims=True)
        return c * (c0 - c) / (c0**2 * (c0 + 1))

    def entropy(self) -> Tensor:
        c = self.concentration
        k = c.shape[-1]
        a0 = c.sum(axis=-1)
        return (
            ops.gammaln(c).sum(axis=-1)
            - ops.gammaln(a0)
            - (k - a0) * ops.digamma(a0)
            - ((c - 1.0) * ops.digamma(c)).sum(axis=-1)
        )
