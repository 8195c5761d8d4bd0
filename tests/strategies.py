"""Argument domains, with a seeded sampler and a Hypothesis strategy each; shapes and axes."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

MAX_DIMS = 3
MAX_SIDE = 4


@dataclasses.dataclass(frozen=True)
class Domain:
    """Where an array argument's values are drawn.

    ``kind`` is ``"float"`` (uniform in ``[lo, hi]``, at least ``margin`` away from every
    point of ``away_from``), ``"lattice"`` (within ``jitter`` of ``offset + k`` for integers
    ``k``: keeps two arguments apart, e.g. for ``maximum``), ``"distinct"`` (all values at
    least 0.1 apart: no ties inside a reduction) or ``"bool"`` (a mask, not differentiable).
    Matrix kinds act on the last two axes: ``"wellcond"`` (uniform in [-0.5, 0.5] plus
    2, 3.5, 5, ... on the diagonal: diagonally dominant, singular values apart) and ``"spd"``
    (symmetric, plus 3, 5, 7, ... on the diagonal: positive definite, eigenvalues apart).
    Complex samples get an imaginary part in ``[-imag, imag]``.
    """

    lo: float = -3.0
    hi: float = 3.0
    away_from: tuple[float, ...] = ()
    margin: float = 0.25
    kind: str = "float"
    offset: float = 0.0
    jitter: float = 0.15
    imag: float = 0.5

    @property
    def differentiable(self) -> bool:
        return self.kind != "bool"

    def _ok(self, v: Any) -> Any:
        ok = np.ones(np.shape(v), dtype=bool)
        for p in self.away_from:
            ok &= np.abs(np.asarray(v) - p) >= self.margin
        return ok

    def sample(self, rng: np.random.Generator, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        """A read-only array of ``shape`` and ``dtype`` with values in the domain."""
        dtype = np.dtype(dtype)
        n = math.prod(shape)
        if self.kind == "bool":
            return _readonly(rng.random(shape) < 0.5)
        if self.kind in ("wellcond", "spd"):
            return _readonly(self._matrix(rng, shape, dtype))
        if self.kind == "distinct":
            vals = (rng.permutation(max(n, 1))[:n] - n / 2) * 0.25
            vals = vals + rng.uniform(-0.05, 0.05, n)
        elif self.kind == "lattice":
            k = np.round(rng.uniform(self.lo, self.hi, n))
            vals = k + self.offset + rng.uniform(-self.jitter, self.jitter, n)
        else:
            vals = rng.uniform(self.lo, self.hi, n)
            for _ in range(100):
                bad = ~self._ok(vals)
                if not bad.any():
                    break
                vals[bad] = rng.uniform(self.lo, self.hi, int(bad.sum()))
        x = vals.reshape(shape)
        if dtype.kind == "c":
            x = x + 1j * rng.uniform(-self.imag, self.imag, shape)
        return _readonly(np.asarray(x, dtype=dtype))

    def _matrix(self, rng: np.random.Generator, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        m, n = shape[-2:]
        x = rng.uniform(-0.5, 0.5, shape) if self.kind == "wellcond" else rng.uniform(-1, 1, shape)
        if np.dtype(dtype).kind == "c":
            x = x + 1j * rng.uniform(-self.imag, self.imag, shape)
        if self.kind == "spd":
            x = (x + np.swapaxes(x, -1, -2).conj()) / 2 + np.diag(3.0 + 2 * np.arange(n))
        else:
            k = min(m, n)
            d = np.zeros((m, n))
            d[:k, :k] = np.diag(2.0 + 1.5 * np.arange(k))
            x = x + d
        return np.asarray(x, dtype=dtype)

    def scalar(self, rng: np.random.Generator) -> float:
        """One value of the domain as a Python float (for NEP 50 weak-scalar checks)."""
        return float(self.sample(rng, (), np.float64))

    def elements(self) -> st.SearchStrategy[float]:
        """A Hypothesis strategy for one element."""
        if self.kind == "lattice":
            return st.builds(
                lambda k, j: k + self.offset + j,
                st.integers(math.ceil(self.lo), math.floor(self.hi)),
                st.floats(-self.jitter, self.jitter),
            )
        if self.kind == "distinct":
            return st.integers(-40, 40).map(lambda k: k * 0.1)
        return st.floats(self.lo, self.hi).filter(lambda v: bool(self._ok(v)))

    def strategy(self, shape: tuple[int, ...], dtype: Any = np.float64) -> st.SearchStrategy:
        """A Hypothesis strategy for read-only arrays of ``shape`` in the domain."""
        if self.kind == "bool":
            return hnp.arrays(np.bool_, shape).map(_readonly)
        unique = self.kind == "distinct"
        return hnp.arrays(np.dtype(dtype), shape, elements=self.elements(), unique=unique).map(
            _readonly
        )


@dataclasses.dataclass(frozen=True)
class Const:
    """An argument passed as is (a Python number, an int array …), never differentiated."""

    value: Any
    differentiable = False


@dataclasses.dataclass(frozen=True, eq=False)
class Fixed:
    """A differentiable argument with given values (e.g. exact zeros for ``prod``)."""

    values: Any
    differentiable = True

    def sample(self, rng: np.random.Generator, shape: Any, dtype: Any) -> np.ndarray:
        """The given values, read-only, in ``dtype`` (``shape`` is ignored)."""
        return _readonly(np.asarray(self.values, dtype=dtype))


def _readonly(x: np.ndarray) -> np.ndarray:
    x = np.array(x)
    x.flags.writeable = False
    return x


def readonly(x: Any) -> np.ndarray:
    """A read-only copy, so that a rule mutating it raises."""
    return _readonly(np.asarray(x))


REAL = Domain()
POSITIVE = Domain(0.3, 3.0)
UNIT = Domain(-0.9, 0.9)  # the open interval (-1, 1)
NONZERO = Domain(away_from=(0.0,))
BOOL = Domain(kind="bool")
DISTINCT = Domain(kind="distinct")
NEAR_INT = Domain(kind="lattice")  # within 0.15 of an integer
NEAR_HALF = Domain(kind="lattice", offset=0.5)  # within 0.15 of k + 1/2: 0.2 from NEAR_INT
WELLCOND = Domain(kind="wellcond")  # matrices: invertible, distinct singular values
SPD = Domain(kind="spd")  # symmetric positive definite matrices, distinct eigenvalues


def interval(lo: float, hi: float) -> Domain:
    """Uniform in ``[lo, hi]``."""
    return Domain(lo, hi)


def away_from(*points: float, margin: float = 0.25, lo: float = -3.0, hi: float = 3.0) -> Domain:
    """Real values at least ``margin`` away from each kink in ``points``."""
    return Domain(lo, hi, away_from=tuple(points), margin=margin)


# ----- shapes and axes ---------------------------------------------------------------------
def broadcastable_shapes(num_shapes: int) -> st.SearchStrategy[tuple[tuple[int, ...], ...]]:
    """Shapes that broadcast together: 0-d and size-1 axes included, <= 3 dims, side <= 4."""
    return hnp.mutually_broadcastable_shapes(
        num_shapes=num_shapes, min_dims=0, max_dims=MAX_DIMS, min_side=1, max_side=MAX_SIDE
    ).map(lambda bs: bs.input_shapes)


def shapes(min_dims: int = 0) -> st.SearchStrategy[tuple[int, ...]]:
    """One array shape (side 1 to 4)."""
    return hnp.array_shapes(min_dims=min_dims, max_dims=MAX_DIMS, min_side=1, max_side=MAX_SIDE)


def axes(ndim: int, allow_none: bool = True, allow_tuple: bool = True) -> st.SearchStrategy:
    """An ``axis=`` argument for an array of ``ndim`` dims: None, an int or a tuple."""
    choices: list[st.SearchStrategy[Any]] = []
    if allow_none:
        choices.append(st.none())
    if ndim > 0:
        choices.append(st.integers(-ndim, ndim - 1))
        if allow_tuple:
            choices.append(
                st.lists(st.integers(0, ndim - 1), unique=True, max_size=ndim).map(
                    lambda ax: tuple(sorted(ax))
                )
            )
    elif not choices:
        choices.append(st.just(()))
    return st.one_of(choices)


def keepdims() -> st.SearchStrategy[bool]:
    """``keepdims=``."""
    return st.booleans()
