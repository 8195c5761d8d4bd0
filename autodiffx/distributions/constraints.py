"""Constraints on parameters and values (PyTorch's ``torch.distributions.constraints``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._tensor import Tensor

__all__ = [
    "Constraint",
    "boolean",
    "greater_than",
    "independent",
    "integer_interval",
    "interval",
    "less_than",
    "lower_cholesky",
    "nonnegative",
    "nonnegative_integer",
    "positive",
    "positive_definite",
    "real",
    "real_vector",
    "simplex",
    "unit_interval",
]


def _values(x: Any) -> np.ndarray:
    return np.asarray(x.data if isinstance(x, Tensor) else x)


class Constraint:
    """A set of valid values; ``check(x)`` is a boolean array over the batch (event axes reduced).

    Examples
    --------
    >>> from autodiffx.distributions import constraints
    >>> constraints.positive.check([1.0, -1.0])
    array([ True, False])
    >>> constraints.simplex.check([0.25, 0.75]), constraints.simplex.event_dim
    (array(True), 1)
    """

    event_dim = 0
    is_discrete = False

    def __init__(self, name: str, test: Any, event_dim: int = 0, discrete: bool = False) -> None:
        self._name = name
        self._test = test
        self.event_dim = event_dim
        self.is_discrete = discrete

    def check(self, value: Any) -> np.ndarray:
        """Elementwise (per event) membership of ``value``, NaN never being a member."""
        with np.errstate(invalid="ignore"):
            return np.asarray(self._test(_values(value)))

    def __repr__(self) -> str:
        return self._name


def _is_integer(v: np.ndarray) -> np.ndarray:
    return np.isfinite(v) & (v == np.floor(v))


def _simplex(v: np.ndarray) -> np.ndarray:
    return np.all(v >= 0, axis=-1) & (np.abs(v.sum(-1) - 1) < 1e-6)


def _symmetric(v: np.ndarray) -> np.ndarray:
    return np.all(np.isclose(v, np.swapaxes(v, -1, -2), atol=1e-6), axis=(-2, -1))


def _positive_definite(v: np.ndarray) -> np.ndarray:
    sym = _symmetric(v)
    ok = np.zeros(sym.shape, dtype=bool)
    if sym.any():
        with np.errstate(invalid="ignore"):
            ok[sym] = np.linalg.eigvalsh(v[sym]).min(-1) > 0
    return ok


def _lower_cholesky(v: np.ndarray) -> np.ndarray:
    lower = np.all(np.triu(v, 1) == 0, axis=(-2, -1))
    return lower & np.all(np.diagonal(v, axis1=-2, axis2=-1) > 0, axis=-1)


real = Constraint("real", lambda v: v == v)  # not NaN
real_vector = Constraint("real_vector", lambda v: np.all(v == v, axis=-1), event_dim=1)
positive = Constraint("positive", lambda v: v > 0)
nonnegative = Constraint("nonnegative", lambda v: v >= 0)
unit_interval = Constraint("unit_interval [0, 1]", lambda v: (v >= 0) & (v <= 1))
simplex = Constraint("simplex (nonnegative, summing to 1)", _simplex, event_dim=1)
boolean = Constraint("boolean {0, 1}", lambda v: (v == 0) | (v == 1), discrete=True)
nonnegative_integer = Constraint(
    "nonnegative_integer", lambda v: _is_integer(v) & (v >= 0), discrete=True
)
positive_definite = Constraint(
    "positive_definite (symmetric, positive eigenvalues)", _positive_definite, event_dim=2
)
lower_cholesky = Constraint(
    "lower_cholesky (lower triangular, positive diagonal)", _lower_cholesky, event_dim=2
)


def interval(low: Any, high: Any) -> Constraint:
    """The closed interval ``[low, high]`` (bounds may be arrays or Tensors).

    Examples
    --------
    >>> from autodiffx.distributions import constraints
    >>> constraints.interval(0.0, 2.0).check([1.0, 3.0])
    array([ True, False])
    """
    lo, hi = _values(low), _values(high)
    return Constraint(f"interval [{low}, {high}]", lambda v: (v >= lo) & (v <= hi))


def integer_interval(low: int, high: int) -> Constraint:
    """The integers ``low, ..., high``.

    Examples
    --------
    >>> from autodiffx.distributions import constraints
    >>> constraints.integer_interval(0, 2).check([0, 2, 3])
    array([ True,  True, False])
    """
    return Constraint(
        f"integer_interval {{{low}, ..., {high}}}",
        lambda v: _is_integer(v) & (v >= low) & (v <= high),
        discrete=True,
    )


def greater_than(bound: Any) -> Constraint:
    """Values strictly greater than ``bound``.

    Examples
    --------
    >>> from autodiffx.distributions import constraints
    >>> constraints.greater_than(1.0).check([1.0, 2.0])
    array([False,  True])
    """
    b = _values(bound)
    return Constraint("greater_than", lambda v: v > b)


def less_than(bound: Any) -> Constraint:
    """Values strictly less than ``bound``.

    Examples
    --------
    >>> from autodiffx.distributions import constraints
    >>> constraints.less_than(1.0).check([0.0, 2.0])
    array([ True, False])
    """
    b = _values(bound)
    return Constraint("less_than", lambda v: v < b)


def independent(base: Constraint, reinterpreted_batch_ndims: int) -> Constraint:
    """``base`` on every element of the rightmost ``reinterpreted_batch_ndims`` axes together.

    Examples
    --------
    >>> from autodiffx.distributions import constraints
    >>> constraints.independent(constraints.positive, 1).check([[1.0, 2.0], [1.0, -2.0]])
    array([ True, False])
    """
    n = reinterpreted_batch_ndims
    axes = tuple(range(-n, 0))
    return Constraint(
        f"independent({base!r}, {n})",
        lambda v: np.all(base.check(v), axis=axes) if n else base.check(v),
        event_dim=base.event_dim + n,
        discrete=base.is_discrete,
    )
