"""The one place where broadcasting is undone: fit a gradient to its input's shape and dtype."""

from __future__ import annotations

from typing import Any

import numpy as np


def fit(g: Any, shape: tuple[int, ...], dtype: np.dtype, nb: int = 0) -> Any:
    """Return ``g`` summed or broadcast to ``shape`` and cast to ``dtype``.

    ``g`` is an ndarray or a Tensor (both expose ``shape``, ``sum``, ``reshape`` and
    ``astype``), so the same code serves first-order and recorded (higher-order) passes.
    A gradient larger than ``shape`` is the cotangent of an implicit broadcast and is
    summed over the broadcast axes; a smaller one (a rule may return a keepdims-shaped
    or scalar cotangent) is broadcast up. Complex to real keeps the real part. The first
    ``nb`` axes of ``g`` are batch axes (vectorized Jacobians) and are kept as they are.

    Examples
    --------
    >>> fit(np.ones((2, 3)), (3,), np.dtype("float64"))
    array([2., 2., 2.])
    >>> fit(np.ones((1, 3)), (2, 3), np.dtype("float32")).dtype
    dtype('float32')
    >>> fit(np.ones((5, 2, 3)), (3,), np.dtype("float64"), nb=1).shape
    (5, 3)
    """
    gshape = g.shape
    target = tuple(gshape[:nb]) + tuple(shape) if nb else shape
    if gshape != target:
        lead = len(gshape) - len(target)
        if nb and lead < 0:
            # NOTE: a lower-rank cotangent broadcasts against the example, not the batch axes.
            g = g.reshape(gshape[:nb] + (1,) * -lead + gshape[nb:])
            gshape = g.shape
            lead = 0
        core = gshape[nb + lead :] if lead >= 0 else ()
        if lead >= 0 and all(s == 1 or s == c for s, c in zip(shape, core)):
            axes = tuple(range(nb, nb + lead)) + tuple(
                nb + lead + i for i, s in enumerate(shape) if s == 1 and core[i] != 1
            )
            if axes:
                g = g.sum(axis=axes, keepdims=True)
            if g.shape != target:
                g = g.reshape(target)
        else:
            g = _broadcast_to(g, target)
    gdtype = g.dtype
    if gdtype is not dtype and (type(gdtype) is type(dtype) or np_dtype(gdtype) != np_dtype(dtype)):
        if np_dtype(gdtype).kind == "c" and np_dtype(dtype).kind != "c":
            g = g.real
        g = g.astype(dtype)
    return g


_DTYPES: dict[Any, np.dtype] = {}


def np_dtype(dt: Any) -> np.dtype:
    """The NumPy dtype of an array library's dtype (array-api-strict has its own objects).

    Examples
    --------
    >>> np_dtype(np.dtype("float32"))
    dtype('float32')
    """
    if type(dt) is np.dtype or isinstance(dt, np.dtype):
        return dt
    got = _DTYPES.get(dt)
    if got is None:
        try:
            got = np.dtype(dt)
        except TypeError:
            got = np.dtype(str(dt).rsplit(".", 1)[-1])
        _DTYPES[dt] = got
    return got


def _broadcast_to(g: Any, shape: tuple[int, ...]) -> Any:
    if isinstance(g, np.ndarray | np.generic):
        n = 1
        for s in shape:
            n *= s
        if n <= 4096:
            # NOTE: np.broadcast_to costs ~4 µs of Python; a small filled copy is cheaper.
            out = np.empty(shape, g.dtype)
            out[...] = g
            return out
        return np.broadcast_to(g, shape)
    if hasattr(g, "broadcast_to"):  # (a Tensor: recorded)
        return g.broadcast_to(shape)
    return np.broadcast_to(g, shape)  # (a Dask array: dispatched to dask.array)
