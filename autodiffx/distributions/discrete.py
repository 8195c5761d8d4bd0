"""Discrete distributions: Bernoulli and Categorical (``probs=`` or ``logits=``), Poisson."""

from __future__ import annotations

from functools import cached_property
from typing import Any, ClassVar

import numpy as np

from .. import ops
from .._mode import enable_grad
from .._tensor import Tensor, wrap
from ..nn import functional as F
from . import constraints
from ._base import Distribution, as_tensor, broadcast_all, detached, param_dtype, xlogy
from .constraints import Constraint

__all__ = ["Bernoulli", "Categorical", "Poisson"]


def _clamp_probs(p: Tensor) -> Tensor:
    eps = float(np.finfo(p.dtype).eps)
    return ops.clip(p, eps, 1 - eps)


def _one_of(name: str, probs: Any, logits: Any) -> None:
    if (probs is None) == (logits is None):
        raise ValueError(f"{name}: give exactly one of probs= or logits=")


class Bernoulli(Distribution):
    """Bernoulli distribution: 1 with probability ``probs`` (or ``sigmoid(logits)``), else 0.

    The other parametrisation is computed on first use (``logits = log p - log1p(-p)``
    with p clamped to [eps, 1 - eps], as PyTorch). Samples are
    ``(rng.random(shape) < probs)`` as floats; there is no ``rsample``.

    Examples
    --------
    >>> import autodiffx as ad
    >>> d = ad.distributions.Bernoulli(probs=0.25)
    >>> d.log_prob(1.0), d.entropy()
    (tensor(-1.38629436), tensor(0.56233514))
    >>> d.sample((4,), rng=0)
    tensor([0., 0., 1., 1.])
    """

    arg_constraints: ClassVar[dict[str, Constraint]] = {
        "probs": constraints.unit_interval,
        "logits": constraints.real,
    }
    support = constraints.boolean

    def __init__(
        self, probs: Any = None, logits: Any = None, validate_args: bool | None = None
    ) -> None:
        _one_of("Bernoulli", probs, logits)
        name = "probs" if probs is not None else "logits"
        (param,) = broadcast_all(probs if probs is not None else logits)
        self.__dict__[name] = param
        self._param_name = name
        super().__init__(param.shape, (), validate_args=validate_args)

    @cached_property
    def probs(self) -> Tensor:
        """Probability of 1."""
        with enable_grad():
            return F.sigmoid(self.logits)

    @cached_property
    def logits(self) -> Tensor:
        """Log-odds of 1."""
        with enable_grad():
            p = _clamp_probs(self.probs)
            return ops.log(p) - ops.log1p(-p)

    def _init_params(self) -> dict[str, tuple[Tensor, int]]:
        return {self._param_name: (self.__dict__[self._param_name], 0)}

    def _dtype(self) -> np.dtype:
        return self.__dict__[self._param_name].dtype

    @property
    def mean(self) -> Tensor:
        return self.probs

    @property
    def variance(self) -> Tensor:
        return self.probs * (1 - self.probs)

    def sample(self, sample_shape: Any = (), *, rng: Any = None) -> Tensor:
        u = wrap(self._noise(rng, sample_shape, "random", dtype=np.float64))
        # (ops on the draw: inside ad.compile, raw NumPy on it would be a constant)
        return detached(ops.less(u, self.probs).astype(self._dtype()))

    def log_prob(self, value: Any) -> Tensor:
        v = self._value(value)
        shape = np.broadcast_shapes(v.shape, self.logits.shape)
        logits = ops.broadcast_to(self.logits, shape)
        return -F.binary_cross_entropy_with_logits(logits, v, reduction="none")

    def entropy(self) -> Tensor:
        return F.binary_cross_entropy_with_logits(self.logits, self.probs, reduction="none")


class Categorical(Distribution):
    """Categorical distribution over ``{0, ..., K-1}`` (the last axis of ``probs``/``logits``).

    ``probs`` are normalised to sum to 1 and ``logits`` to ``logsumexp = 0``, as PyTorch.
    Samples are int64: the first index whose cumulative probability exceeds
    ``rng.random(shape)``. ``mean`` and ``variance`` are NaN (PyTorch's convention).

    Examples
    --------
    >>> import autodiffx as ad
    >>> d = ad.distributions.Categorical(probs=ad.tensor([0.2, 0.3, 0.5]))
    >>> d.log_prob(2), d.entropy()
    (tensor(-0.69314718), tensor(1.02965301))
    >>> d.sample((5,), rng=0)
    tensor([2, 1, 0, 0, 2])
    """

    arg_constraints: ClassVar[dict[str, Constraint]] = {
        "probs": constraints.simplex,
        "logits": constraints.real_vector,
    }

    def __init__(
        self, probs: Any = None, logits: Any = None, validate_args: bool | None = None
    ) -> None:
        _one_of("Categorical", probs, logits)
        raw = probs if probs is not None else logits
        t = as_tensor(raw, param_dtype([raw]))
        name = "probs" if probs is not None else "logits"
        if t.ndim < 1:
            raise ValueError(f"Categorical: {name} must be at least one-dimensional")
        if probs is not None:
            t = t / t.sum(axis=-1, keepdims=True)
        else:
            t = t - ops.logsumexp(t, axis=-1, keepdims=True)
        self.__dict__[name] = t
        self._param_name = name
        self._num_events = t.shape[-1]
        super().__init__(t.shape[:-1], (), validate_args=validate_args)

    @cached_property
    def probs(self) -> Tensor:
        """Probability of each category (last axis)."""
        with enable_grad():
            return F.softmax(self.logits, axis=-1)

    @cached_property
    def logits(self) -> Tensor:
        """Normalised log-probabilities (log of the clamped probabilities)."""
        with enable_grad():
            return ops.log(_clamp_probs(self.probs))

    @property
    def support(self) -> Constraint:  # type: ignore[override]
        return constraints.integer_interval(0, self._num_events - 1)

    def _init_params(self) -> dict[str, tuple[Tensor, int]]:
        return {self._param_name: (self.__dict__[self._param_name], 1)}

    def _dtype(self) -> np.dtype:
        return self.__dict__[self._param_name].dtype

    def _nan(self) -> Tensor:
        return Tensor(np.full(self._extended_shape(), np.nan, dtype=self._dtype()))

    @property
    def mean(self) -> Tensor:
        return self._nan()

    @property
    def variance(self) -> Tensor:
        return self._nan()

    def sample(self, sample_shape: Any = (), *, rng: Any = None) -> Tensor:
        shape = self._extended_shape(sample_shape)
        u = self._generator(rng).random(shape)
        cdf = np.cumsum(self.probs.data, axis=-1)
        idx = (cdf < u[..., None] * cdf[..., -1:]).sum(-1)
        return Tensor(np.minimum(idx, self._num_events - 1).astype(np.int64))

    def log_prob(self, value: Any) -> Tensor:
        v = as_tensor(value)  # integer or float labels
        if self._validate_args:
            self._validate_sample(v)
        idx = np.asarray(v.data).astype(np.int64)
        shape = np.broadcast_shapes(idx.shape, self._batch_shape)
        logits = ops.broadcast_to(self.logits, (*shape, self._num_events))
        flat = logits.reshape(-1, self._num_events)
        picked = flat[np.arange(flat.shape[0]), np.broadcast_to(idx, shape).ravel()]
        return picked.reshape(shape)

    def entropy(self) -> Tensor:
        logits = ops.clip(self.logits, float(np.finfo(self._dtype()).min), None)
        return -(logits * self.probs).sum(axis=-1)


class Poisson(Distribution):
    """Poisson distribution with ``rate``; samples ``rng.poisson(rate)`` as floats, no
    ``rsample``.

    Examples
    --------
    >>> import autodiffx as ad
    >>> d = ad.distributions.Poisson(3.0)
    >>> d.log_prob(2.0), d.mean
    (tensor(-1.4959226), tensor(3.))
    """

    arg_constraints: ClassVar[dict[str, Constraint]] = {"rate": constraints.nonnegative}
    support = constraints.nonnegative_integer

    def __init__(self, rate: Any, validate_args: bool | None = None) -> None:
        (self.rate,) = broadcast_all(rate)
        super().__init__(self.rate.shape, (), validate_args=validate_args)

    def _init_params(self) -> dict[str, tuple[Tensor, int]]:
        return {"rate": (self.rate, 0)}

    def _dtype(self) -> np.dtype:
        return self.rate.dtype

    @property
    def mean(self) -> Tensor:
        return self.rate

    @property
    def variance(self) -> Tensor:
        return self.rate

    def sample(self, sample_shape: Any = (), *, rng: Any = None) -> Tensor:
        shape = self._extended_shape(sample_shape)
        lam = np.broadcast_to(self.rate.data, shape)
        return Tensor(self._generator(rng).poisson(lam).astype(self._dtype()))

    def log_prob(self, value: Any) -> Tensor:
        v = self._value(value)
        return xlogy(v, self.rate) - self.rate - ops.gammaln(v + 1)
