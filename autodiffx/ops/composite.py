"""Public ops built from primitives, with no rules of their own: clip, norm, power."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._mode import STATE, VMAP, batched
from .._registry import FUNCTION_MAP
from .._tensor import Tensor
from . import elementwise as ew
from .reduction import amax, amin, sum_


def power(a: Any, b: Any) -> Tensor:
    """Elementwise ``a ** b`` (small integer exponents take exact fast paths).

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.power(ad.tensor([2.0, 3.0]), 3)
    tensor([ 8., 27.])
    """
    return ew.power(a, b)


def clip(x: Any, a_min: Any = None, a_max: Any = None, out: Any = None, **kw: Any) -> Tensor:
    """Limit values to ``[a_min, a_max]``; built as minimum(maximum(x, a_min), a_max).

    At a bound that is a constant the derivative is 0, the same as ``relu`` and
    ``maximum(x, 0)`` (see the kink table in the docs).

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.clip(ad.tensor([-1.0, 0.5, 2.0]), 0, 1)
    tensor([0. , 0.5, 1. ])
    """
    if out is not None:
        raise TypeError("clip: out= is not supported on Tensors")
    a_min = kw.pop("min", a_min)
    a_max = kw.pop("max", a_max)
    if kw:
        raise TypeError(f"clip: unsupported arguments {sorted(kw)}")
    y = x if isinstance(x, Tensor) else Tensor(x)
    if a_min is not None:
        y = ew.maximum(y, a_min)
    if a_max is not None:
        y = ew.minimum(y, a_max)
    if a_min is None and a_max is None:
        raise ValueError("clip: at least one of a_min and a_max must be given")
    return y


def norm(x: Any, ord: Any = None, axis: Any = None, keepdims: bool = False) -> Tensor:
    """Vector or matrix norm (as ``np.linalg.norm``).

    Vector ords: None/2, 1, inf, -inf, 0 and any p; matrix ords: None/'fro', 1, -1, inf,
    -inf, 'nuc' and 2/-2 (through the SVD). The gradient of the 2-norm at 0 is 0.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.norm(ad.tensor([3.0, 4.0]))
    tensor(5.)
    """
    x = x if isinstance(x, Tensor) else Tensor(x)
    if x.dtype.kind not in "fc":
        x = x.astype(np.float64)
    ax = axis
    if isinstance(ax, list):
        ax = tuple(ax)
    mag = ew.abs(x) if x.dtype.kind == "c" else x
    if ax is None and ord is None:
        return _two_norm(mag, None, keepdims)
    if ax is None:
        ax = tuple(range(x.ndim)) if x.ndim <= 2 else None
        if ax is None or x.ndim not in (1, 2):
            raise ValueError("norm: improper number of dimensions to norm")
        if x.ndim == 1:
            ax = 0
    if isinstance(ax, int | np.integer) or (isinstance(ax, tuple) and len(ax) == 1):
        a = ax if isinstance(ax, int | np.integer) else ax[0]
        return _vector_norm(mag, ord, int(a), keepdims)
    if isinstance(ax, tuple) and len(ax) == 2:
        return _matrix_norm(x, mag, ord, ax, keepdims)
    raise ValueError(f"norm: improper axis {axis!r}")


def _two_norm(mag: Tensor, axis: Any, keepdims: bool) -> Tensor:
    # NOTE: sqrt(sum(x^2)) has an infinite derivative through sqrt at 0 times a zero from
    # the square; the masked form gives the published subgradient 0 at x = 0 without nan.
    s = sum_(mag * mag, axis=axis, keepdims=keepdims)
    vmapped = STATE.mode & VMAP and batched(s)  # (batched: the masked form for each example)
    zero = s == 0 if vmapped else s.data == 0
    if vmapped or np.any(zero):
        safe = ew.where(zero, 1.0, s)
        return ew.where(zero, 0.0, ew.sqrt(safe))
    return ew.sqrt(s)


def _vector_norm(mag: Tensor, ord: Any, axis: int, keepdims: bool) -> Tensor:
    if ord is None or ord == 2:
        return _two_norm(mag, axis, keepdims)
    if ord == np.inf:
        return amax(ew.abs(mag), axis=axis, keepdims=keepdims)
    if ord == -np.inf:
        return amin(ew.abs(mag), axis=axis, keepdims=keepdims)
    if ord == 0:
        return sum_((mag != 0).astype(mag.dtype), axis=axis, keepdims=keepdims)
    if ord == 1:
        return sum_(ew.abs(mag), axis=axis, keepdims=keepdims)
    p = float(ord)
    return ew.power(sum_(ew.power(ew.abs(mag), p), axis=axis, keepdims=keepdims), 1.0 / p)


def _matrix_norm(x: Tensor, mag: Tensor, ord: Any, ax: tuple, keepdims: bool) -> Tensor:
    r, c = (int(a) % x.ndim for a in ax)
    if ord in (None, "fro", "f"):
        return _two_norm(mag, (r, c), keepdims)
    if ord in (1, -1):
        col = sum_(ew.abs(mag), axis=r, keepdims=True)
        red = amax if ord == 1 else amin
        out = red(col, axis=c, keepdims=True)
    elif ord in (np.inf, -np.inf):
        row = sum_(ew.abs(mag), axis=c, keepdims=True)
        red = amax if ord == np.inf else amin
        out = red(row, axis=r, keepdims=True)
    elif ord in (2, -2, "nuc"):
        from .. import linalg

        xm = np.moveaxis(x, (r, c), (-2, -1))
        s = linalg.svd(xm, compute_uv=False)
        red = sum_ if ord == "nuc" else (amax if ord == 2 else amin)
        out = red(s, axis=-1)
        if keepdims:
            out = np.expand_dims(np.expand_dims(out, r if r < c else c), c if r < c else r)
        return out
    else:
        raise ValueError(f"norm: invalid norm order {ord!r} for matrices")
    if keepdims:
        return out
    return out.reshape(tuple(s for i, s in enumerate(out.shape) if i not in (r, c)))


FUNCTION_MAP.update({np.clip: clip, np.linalg.norm: norm})
