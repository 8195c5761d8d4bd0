"""Distributions built from others: Independent, TransformedDistribution, LogNormal."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from .. import ops
from .._mode import no_grad
from .._tensor import Tensor
from . import constraints
from ._base import Distribution, as_shape, as_tensor, detached, sum_rightmost
from .constraints import Constraint
from .continuous import Normal
from .transforms import ComposeTransform, ExpTransform, Transform

__all__ = ["Independent", "LogNormal", "TransformedDistribution"]


def _of_base(name: str, doc: str | None = None) -> property:
    """A read-only property that is the base distribution's attribute ``name``."""
    return property(lambda self: getattr(self.base_dist, name), doc=doc)


class _OnBase(Distribution):
    """A distribution made from ``base_dist``, reparameterisable when the base is."""

    base_dist: Distribution

    def _on(
        self, base: Distribution, shape: tuple[int, ...], event_dim: int, validate_args: Any
    ) -> None:
        """Keep ``base`` and split ``shape`` into batch and the last ``event_dim`` event axes."""
        self.base_dist = base
        cut = len(shape) - event_dim
        Distribution.__init__(self, shape[:cut], shape[cut:], validate_args=validate_args)

    @property
    def has_rsample(self) -> bool:  # type: ignore[override]
        return self.base_dist.has_rsample


class Independent(_OnBase):
    """Reinterpret the rightmost ``reinterpreted_batch_ndims`` batch axes of ``base_distribution``
    as event axes: ``log_prob`` and ``entropy`` sum over them.

    Examples
    --------
    >>> import autodiffx as ad
    >>> base = ad.distributions.Normal(ad.zeros(3), ad.ones(3))
    >>> d = ad.distributions.Independent(base, 1)
    >>> d.batch_shape, d.event_shape, d.log_prob(ad.zeros(3))
    ((), (3,), tensor(-2.7568156))
    """

    arg_constraints: ClassVar[dict[str, Constraint]] = {}

    def __init__(
        self,
        base_distribution: Distribution,
        reinterpreted_batch_ndims: int,
        validate_args: bool | None = None,
    ) -> None:
        n = int(reinterpreted_batch_ndims)
        if not 0 <= n <= len(base_distribution.batch_shape):
            raise ValueError(
                "Independent: reinterpreted_batch_ndims must be in [0, len(batch_shape)] = "
                f"[0, {len(base_distribution.batch_shape)}], got {reinterpreted_batch_ndims}"
            )
        shape = base_distribution.batch_shape + base_distribution.event_shape
        self.reinterpreted_batch_ndims = n
        event_dim = n + len(base_distribution.event_shape)
        self._on(base_distribution, shape, event_dim, validate_args)

    @property
    def support(self) -> Constraint:  # type: ignore[override]
        s = self.base_dist.support
        n = self.reinterpreted_batch_ndims
        return constraints.independent(s, n) if n and s is not None else s

    def _dtype(self) -> np.dtype:
        return self.base_dist._dtype()

    def expand(self, batch_shape: Any) -> Independent:
        batch_shape = as_shape(batch_shape)
        base_batch = batch_shape + self._event_shape[: self.reinterpreted_batch_ndims]
        return Independent(self.base_dist.expand(base_batch), self.reinterpreted_batch_ndims, False)

    mean = _of_base("mean")
    variance = _of_base("variance")

    def sample(self, sample_shape: Any = (), *, rng: Any = None) -> Tensor:
        return self.base_dist.sample(sample_shape, rng=rng)

    def rsample(self, sample_shape: Any = (), *, rng: Any = None) -> Tensor:
        return self.base_dist.rsample(sample_shape, rng=rng)

    def log_prob(self, value: Any) -> Tensor:
        return sum_rightmost(self.base_dist.log_prob(value), self.reinterpreted_batch_ndims)

    def entropy(self) -> Tensor:
        return sum_rightmost(self.base_dist.entropy(), self.reinterpreted_batch_ndims)

    def __repr__(self) -> str:
        return f"Independent({self.base_dist!r}, {self.reinterpreted_batch_ndims})"


class TransformedDistribution(_OnBase):
    """The law of ``y = transforms[-1](... transforms[0](x))`` for ``x ~ base_distribution``.

    ``log_prob(y) = base.log_prob(x) - sum log|det dy/dx|`` with ``x`` from the inverses;
    ``cdf``/``icdf`` go through the inverses and flip for decreasing transforms.

    Examples
    --------
    >>> import autodiffx as ad
    >>> D = ad.distributions
    >>> d = D.TransformedDistribution(D.Normal(0.0, 1.0), [D.AffineTransform(1.0, 2.0)])
    >>> d.log_prob(1.0), D.Normal(1.0, 2.0).log_prob(1.0)
    (tensor(-1.61208571), tensor(-1.61208571))
    """

    arg_constraints: ClassVar[dict[str, Constraint]] = {}

    def __init__(
        self,
        base_distribution: Distribution,
        transforms: Transform | list[Transform],
        validate_args: bool | None = None,
    ) -> None:
        if isinstance(transforms, Transform):
            transforms = [transforms]
        if not isinstance(transforms, list) or not all(
            isinstance(t, Transform) for t in transforms
        ):
            raise ValueError(
                "TransformedDistribution: transforms must be a Transform or a list of "
                f"Transforms, got {transforms!r}"
            )
        self.transforms = transforms
        chain = ComposeTransform(transforms)
        base_shape = base_distribution.batch_shape + base_distribution.event_shape
        base_event_dim = len(base_distribution.event_shape)
        if len(base_shape) < chain.event_dim:
            raise ValueError(
                f"TransformedDistribution: the base distribution's shape {base_shape} has "
                f"fewer than the transforms' event_dim = {chain.event_dim} axes"
            )
        forward_shape = chain.forward_shape(base_shape)
        expanded = chain.inverse_shape(forward_shape)
        if expanded != base_shape:  # parameters of a transform broadcast the base: expand it
            base_distribution = base_distribution.expand(expanded[: len(expanded) - base_event_dim])
        if chain.event_dim > base_event_dim:
            base_distribution = Independent(base_distribution, chain.event_dim - base_event_dim)
        event_dim = max(chain.event_dim, base_event_dim)
        self._on(base_distribution, forward_shape, event_dim, validate_args)

    @property
    def support(self) -> Constraint | None:  # type: ignore[override]
        if not self.transforms:
            return self.base_dist.support
        s = self.transforms[-1].codomain
        extra = len(self._event_shape) - s.event_dim
        return constraints.independent(s, extra) if extra > 0 else s

    def _dtype(self) -> np.dtype:
        return self.base_dist._dtype()

    def expand(self, batch_shape: Any) -> TransformedDistribution:
        shape = as_shape(batch_shape) + self._event_shape
        for t in reversed(self.transforms):
            shape = t.inverse_shape(shape)
        base_batch = shape[: len(shape) - len(self.base_dist.event_shape)]
        return TransformedDistribution(self.base_dist.expand(base_batch), self.transforms, False)

    def sample(self, sample_shape: Any = (), *, rng: Any = None) -> Tensor:
        with no_grad():
            x = self.base_dist.sample(sample_shape, rng=rng)
            for t in self.transforms:
                x = t(x)
            return detached(x)

    def rsample(self, sample_shape: Any = (), *, rng: Any = None) -> Tensor:
        x = self.base_dist.rsample(sample_shape, rng=rng)
        for t in self.transforms:
            x = t(x)
        return x

    def log_prob(self, value: Any) -> Tensor:
        y = self._value(value)
        event_dim = len(self._event_shape)
        lp: Any = 0.0
        for t in reversed(self.transforms):
            x = t.inv(y)
            lp = lp - sum_rightmost(t.log_abs_det_jacobian(x, y), event_dim - t.event_dim)
            y = x
        base_lp = self.base_dist.log_prob(y)
        return lp + sum_rightmost(base_lp, event_dim - len(self.base_dist.event_shape))

    def _monotonize_cdf(self, value: Any) -> Any:
        sign: Any = 1
        for t in self.transforms:
            sign = sign * t.sign
        if isinstance(sign, int) and sign == 1:
            return value
        return sign * (value - 0.5) + 0.5

    def cdf(self, value: Any) -> Tensor:
        v = as_tensor(value, self._dtype())
        if self._validate_args:
            self._validate_sample(v)
        for t in reversed(self.transforms):
            v = t.inv(v)
        return self._monotonize_cdf(self.base_dist.cdf(v))

    def icdf(self, value: Any) -> Tensor:
        v = self.base_dist.icdf(self._monotonize_cdf(as_tensor(value, self._dtype())))
        for t in self.transforms:
            v = t(v)
        return v


class LogNormal(TransformedDistribution):
    """``exp(X)`` for ``X ~ Normal(loc, scale)``.

    Examples
    --------
    >>> import autodiffx as ad
    >>> d = ad.distributions.LogNormal(0.0, 1.0)
    >>> d.mean, d.log_prob(1.0)
    (tensor(1.64872127), tensor(-0.91893853))
    """

    arg_constraints: ClassVar[dict[str, Constraint]] = {
        "loc": constraints.real,
        "scale": constraints.positive,
    }
    support = constraints.positive
    has_rsample = True

    def __init__(self, loc: Any, scale: Any, validate_args: bool | None = None) -> None:
        base = Normal(loc, scale, validate_args=validate_args)
        super().__init__(base, ExpTransform(), validate_args=validate_args)

    def expand(self, batch_shape: Any) -> LogNormal:
        b = self.base_dist.expand(batch_shape)
        return LogNormal(b.loc, b.scale, validate_args=False)

    def _init_params(self) -> dict[str, tuple[Tensor, int]]:
        return {"loc": (self.loc, 0), "scale": (self.scale, 0)}

    loc = _of_base("loc", "The mean of ``log X``.")
    scale = _of_base("scale", "The standard deviation of ``log X``.")

    @property
    def mean(self) -> Tensor:
        return ops.exp(self.loc + self.scale**2 / 2)

    @property
    def variance(self) -> Tensor:
        s2 = self.scale**2
        return ops.expm1(s2) * ops.exp(2 * self.loc + s2)

    def entropy(self) -> Tensor:
        return self.base_dist.entropy() + self.loc
