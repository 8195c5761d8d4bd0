"""Bijections for ``TransformedDistribution``: Exp, Affine, Sigmoid and their compositions."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import ops
from .._tensor import Tensor
from ..nn import functional as F
from . import constraints
from ._base import as_tensor, sum_rightmost
from .constraints import Constraint

__all__ = ["AffineTransform", "ComposeTransform", "ExpTransform", "SigmoidTransform", "Transform"]


class Transform:
    """A differentiable bijection ``y = f(x)`` with ``inv`` and ``log_abs_det_jacobian(x, y)``.

    ``event_dim`` is the number of rightmost axes that one application couples (0 for the
    elementwise transforms); ``sign`` is +1 (increasing) or -1 (decreasing).

    Examples
    --------
    >>> import autodiffx as ad
    >>> t = ad.distributions.ExpTransform()
    >>> y = t(ad.tensor(1.0))
    >>> t.inv(y), t.log_abs_det_jacobian(ad.tensor(1.0), y)
    (tensor(1.), tensor(1.))
    """

    domain: Constraint = constraints.real
    codomain: Constraint = constraints.real
    bijective = True
    event_dim = 0

    @property
    def sign(self) -> Any:
        """+1 where the transform increases, -1 where it decreases."""
        return 1

    def __call__(self, x: Any) -> Tensor:
        return self._call(as_tensor(x))

    def _call(self, x: Tensor) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} does not define its forward map")

    def _inverse(self, y: Tensor) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} does not define its inverse")

    @property
    def inv(self) -> Transform:
        """The inverse transform (``t.inv(y)`` inverts ``t``)."""
        return _InverseTransform(self)

    def log_abs_det_jacobian(self, x: Any, y: Any) -> Tensor:
        """``log |det dy/dx|`` summed over the ``event_dim`` rightmost axes."""
        raise NotImplementedError(f"{type(self).__name__} does not define log_abs_det_jacobian")

    def forward_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The output shape for an input of ``shape``."""
        return tuple(shape)

    def inverse_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The input shape for an output of ``shape``."""
        return tuple(shape)

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other)

    def __hash__(self) -> int:
        return hash(type(self))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class _InverseTransform(Transform):
    def __init__(self, base: Transform) -> None:
        self._base = base
        self.domain, self.codomain = base.codomain, base.domain
        self.event_dim = base.event_dim

    @property
    def sign(self) -> Any:
        return self._base.sign

    @property
    def inv(self) -> Transform:
        return self._base

    def __call__(self, y: Any) -> Tensor:
        return self._base._inverse(as_tensor(y))

    def log_abs_det_jacobian(self, x: Any, y: Any) -> Tensor:
        return -self._base.log_abs_det_jacobian(y, x)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _InverseTransform) and self._base == other._base

    def __hash__(self) -> int:
        return hash(("inv", self._base))

    def __repr__(self) -> str:
        return f"{self._base!r}.inv"


class ExpTransform(Transform):
    """``y = exp(x)``; ``log|dy/dx| = x``.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.distributions.ExpTransform()(ad.tensor(0.0))
    tensor(1.)
    """

    codomain = constraints.positive

    def _call(self, x: Tensor) -> Tensor:
        return ops.exp(x)

    def _inverse(self, y: Tensor) -> Tensor:
        return ops.log(y)

    def log_abs_det_jacobian(self, x: Any, y: Any) -> Tensor:
        return as_tensor(x)


class SigmoidTransform(Transform):
    """``y = sigmoid(x)`` clamped to ``[tiny, 1 - eps]`` (PyTorch's); ``log|dy/dx| =
    -softplus(-x) - softplus(x)``.

    Examples
    --------
    >>> import autodiffx as ad
    >>> t = ad.distributions.SigmoidTransform()
    >>> t(ad.tensor(0.0)), t.inv(ad.tensor(0.5))
    (tensor(0.5), tensor(0.))
    """

    codomain = constraints.unit_interval

    def _call(self, x: Tensor) -> Tensor:
        info = np.finfo(x.dtype if x.dtype.kind == "f" else np.float64)
        return ops.clip(F.sigmoid(x), float(info.tiny), float(1.0 - info.eps))

    def _inverse(self, y: Tensor) -> Tensor:
        info = np.finfo(y.dtype if y.dtype.kind == "f" else np.float64)
        y = ops.clip(y, float(info.tiny), float(1.0 - info.eps))
        return ops.log(y) - ops.log1p(-y)

    def log_abs_det_jacobian(self, x: Any, y: Any) -> Tensor:
        x = as_tensor(x)
        return -F.softplus(-x) - F.softplus(x)


class AffineTransform(Transform):
    """``y = loc + scale * x`` (``scale`` nonzero; ``event_dim`` axes are summed in the
    log-determinant).

    Examples
    --------
    >>> import autodiffx as ad
    >>> t = ad.distributions.AffineTransform(1.0, -2.0)
    >>> t(ad.tensor(3.0)), t.sign, t.log_abs_det_jacobian(ad.tensor(3.0), None)
    (tensor(-5.), -1, tensor(0.69314718))
    """

    def __init__(self, loc: Any, scale: Any, event_dim: int = 0) -> None:
        self.loc = loc
        self.scale = scale
        self.event_dim = event_dim
        if event_dim:
            self.domain = self.codomain = constraints.independent(constraints.real, event_dim)

    @property
    def sign(self) -> Any:
        if isinstance(self.scale, int | float):
            return 1 if self.scale > 0 else -1 if self.scale < 0 else 0
        return ops.sign(as_tensor(self.scale))

    def _call(self, x: Tensor) -> Tensor:
        return self.loc + self.scale * x

    def _inverse(self, y: Tensor) -> Tensor:
        return (y - self.loc) / self.scale

    def log_abs_det_jacobian(self, x: Any, y: Any) -> Tensor:
        x = as_tensor(x)
        if isinstance(self.scale, int | float):
            result = Tensor(np.full(x.shape, math.log(abs(self.scale)), dtype=x.dtype))
        else:
            result = ops.log(ops.abs(as_tensor(self.scale)))
        shape = x.shape
        if self.event_dim:
            result = sum_rightmost(result, self.event_dim)
            shape = shape[: len(shape) - self.event_dim]
        return result if result.shape == shape else ops.broadcast_to(result, shape)

    def _shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return np.broadcast_shapes(shape, np.shape(self.loc), np.shape(self.scale))

    def forward_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return self._shape(shape)

    def inverse_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return self._shape(shape)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AffineTransform) or self.event_dim != other.event_dim:
            return False
        return all(
            a is b or np.array_equal(np.asarray(a), np.asarray(b))
            for a, b in ((self.loc, other.loc), (self.scale, other.scale))
        )

    def __hash__(self) -> int:
        return hash((type(self), self.event_dim))

    def __repr__(self) -> str:
        return f"AffineTransform(loc={self.loc!r}, scale={self.scale!r})"


class ComposeTransform(Transform):
    """Apply ``parts`` in order: ``y = parts[-1](... parts[0](x))``.

    Examples
    --------
    >>> import autodiffx as ad
    >>> t = ad.distributions.ComposeTransform(
    ...     [ad.distributions.AffineTransform(0.0, 2.0), ad.distributions.ExpTransform()])
    >>> t(ad.tensor(0.5)), t.inv(t(ad.tensor(0.5)))
    (tensor(2.71828183), tensor(0.5))
    """

    def __init__(self, parts: Sequence[Transform]) -> None:
        self.parts = list(parts)
        self.event_dim = max((p.event_dim for p in self.parts), default=0)
        if self.parts:
            self.domain, self.codomain = self.parts[0].domain, self.parts[-1].codomain

    @property
    def sign(self) -> Any:
        s: Any = 1
        for p in self.parts:
            s = s * p.sign
        return s

    def _call(self, x: Tensor) -> Tensor:
        for p in self.parts:
            x = p(x)
        return x

    def _inverse(self, y: Tensor) -> Tensor:
        for p in reversed(self.parts):
            y = p.inv(y)
        return y

    def log_abs_det_jacobian(self, x: Any, y: Any) -> Tensor:
        total: Any = 0.0
        for p in self.parts:
            nxt = p(x)
            total = total + sum_rightmost(
                p.log_abs_det_jacobian(x, nxt), self.event_dim - p.event_dim
            )
            x = nxt
        return total

    def forward_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        for p in self.parts:
            shape = p.forward_shape(shape)
        return shape

    def inverse_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        for p in reversed(self.parts):
            shape = p.inverse_shape(shape)
        return shape

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ComposeTransform) and self.parts == other.parts

    def __hash__(self) -> int:
        return hash(tuple(self.parts))
