"""NumPy functions built exactly from primitives: stacking, splitting, diff, kron, statistics."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .._mode import STATE, VMAP, batched
from .._registry import FUNCTION_MAP, UFUNC_MAP
from .._tensor import Tensor
from . import elementwise as ew
from . import reduction as red
from .reduction import sum_
from .shape import (
    broadcast_to,
    concatenate,
    diagonal,
    diagonal_scatter,
    flip,
    getitem,
    getitem_,
    reshape,
    split,
    static_arg,
    swapaxes,
    transpose,
)
from .shape import (
    copy as _copy,
)


def _t(x: Any) -> Any:
    """A Tensor stays; anything else becomes an ndarray (NumPy's own conversion)."""
    return x if isinstance(x, Tensor) else np.asarray(x)


# ----- atleast_nd and stacking -------------------------------------------------------------
def _atleast(x: Any, nd: int) -> Any:
    x = _t(x)
    if x.ndim >= nd:
        return x
    if x.ndim == 0:
        shape: tuple[int, ...] = (1,) * nd
    elif x.ndim == 1:
        shape = (1, x.shape[0]) if nd == 2 else (1, x.shape[0], 1)
    else:
        shape = (*x.shape, 1)
    return reshape(x, shape)


def _atleast_all(arys: Sequence[Any], nd: int) -> Any:
    res = [_atleast(a, nd) for a in arys]
    return res[0] if len(res) == 1 else tuple(res)


def atleast_1d(*arys: Any) -> Any:
    """Views with at least one axis (as ``np.atleast_1d``).

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.atleast_1d(ad.tensor(2.0))
    tensor([2.])
    """
    return _atleast_all(arys, 1)


def atleast_2d(*arys: Any) -> Any:
    """Views with at least two axes (a vector becomes a row).

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.atleast_2d(ad.tensor([1.0, 2.0])).shape
    (1, 2)
    """
    return _atleast_all(arys, 2)


def atleast_3d(*arys: Any) -> Any:
    """Views with at least three axes (as ``np.atleast_3d``: (n,) -> (1, n, 1)).

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.atleast_3d(ad.ones((2, 3))).shape
    (2, 3, 1)
    """
    return _atleast_all(arys, 3)


def _no_kw(name: str, kw: dict[str, Any]) -> None:
    bad = {k: v for k, v in kw.items() if v is not None and (k, v) != ("casting", "same_kind")}
    if bad:
        raise TypeError(f"{name}: unsupported arguments {sorted(bad)} on Tensors")


def hstack(tup: Sequence[Any], **kw: Any) -> Tensor:
    """Stack horizontally: along axis 1, or axis 0 for vectors (as ``np.hstack``).

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.hstack([ad.ones(2), ad.zeros(1)])
    tensor([1., 1., 0.])
    """
    _no_kw("hstack", kw)
    arrs = [_atleast(a, 1) for a in tup]
    return concatenate(arrs, axis=0 if arrs and arrs[0].ndim == 1 else 1)


def vstack(tup: Sequence[Any], **kw: Any) -> Tensor:
    """Stack vertically: along axis 0, vectors as rows (as ``np.vstack``).

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.vstack([ad.ones(2), ad.zeros(2)]).shape
    (2, 2)
    """
    _no_kw("vstack", kw)
    return concatenate([_atleast(a, 2) for a in tup], axis=0)


def column_stack(tup: Sequence[Any]) -> Tensor:
    """Stack vectors as columns of a matrix (as ``np.column_stack``).

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.column_stack([ad.ones(2), ad.zeros(2)]).shape
    (2, 2)
    """
    arrs = [_t(a) for a in tup]
    arrs = [reshape(a, (a.shape[0], 1)) if a.ndim < 2 else a for a in arrs]
    return concatenate([_atleast(a, 2) for a in arrs], axis=1)


def dstack(tup: Sequence[Any]) -> Tensor:
    """Stack along the third axis (as ``np.dstack``).

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.dstack([ad.ones(2), ad.zeros(2)]).shape
    (1, 2, 2)
    """
    return concatenate([_atleast(a, 3) for a in tup], axis=2)


def append(arr: Any, values: Any, axis: Any = None) -> Tensor:
    """``values`` appended to ``arr`` (flattened when ``axis`` is None), as ``np.append``.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.append(ad.ones((1, 2)), ad.zeros(1))
    tensor([1., 1., 0.])
    """
    arr, values = _t(arr), _t(values)
    if axis is None:
        return concatenate([reshape(arr, (-1,)), reshape(values, (-1,))], axis=0)
    return concatenate([arr, values], axis=axis)


# ----- splitting and flipping --------------------------------------------------------------
def array_split(x: Any, indices_or_sections: Any, axis: int = 0) -> list[Tensor]:
    """Split into sub-arrays, sections of unequal size allowed (as ``np.array_split``).

    Examples
    --------
    >>> import autodiffx as ad
    >>> [t.shape for t in ad.array_split(ad.zeros(5), 2)]
    [(3,), (2,)]
    """
    x = _t(x)
    ios = indices_or_sections
    if STATE.mode & VMAP:
        static_arg("array_split", "indices_or_sections", ios)
    if isinstance(ios, int | np.integer):
        n = x.shape[axis]
        if ios <= 0:
            raise ValueError("array_split: number sections must be larger than 0.")
        each, extra = divmod(n, int(ios))
        sizes = [each + 1] * extra + [each] * (int(ios) - extra)
        ios = tuple(int(s) for s in np.cumsum(sizes)[:-1])
    return split(x, ios, axis=axis)


def _split_along(name: str, x: Any, ios: Any, axis: int, min_ndim: int) -> list[Tensor]:
    x = _t(x)
    if x.ndim < min_ndim:
        raise ValueError(f"{name} only works on arrays of {min_ndim} or more dimensions")
    if isinstance(ios, int | np.integer) and x.shape[axis] % int(ios):
        raise ValueError(f"{name}: array split does not result in an equal division")
    return array_split(x, ios, axis=axis)


def hsplit(x: Any, indices_or_sections: Any) -> list[Tensor]:
    """Split along axis 1 (axis 0 for vectors), as ``np.hsplit``.

    Examples
    --------
    >>> import autodiffx as ad
    >>> [t.shape for t in ad.hsplit(ad.zeros((2, 4)), 2)]
    [(2, 2), (2, 2)]
    """
    axis = 0 if np.ndim(x) == 1 else 1
    return _split_along("hsplit", x, indices_or_sections, axis, 1)


def vsplit(x: Any, indices_or_sections: Any) -> list[Tensor]:
    """Split along axis 0 of an array of at least two axes, as ``np.vsplit``.

    Examples
    --------
    >>> import autodiffx as ad
    >>> [t.shape for t in ad.vsplit(ad.zeros((4, 2)), 2)]
    [(2, 2), (2, 2)]
    """
    return _split_along("vsplit", x, indices_or_sections, 0, 2)


def dsplit(x: Any, indices_or_sections: Any) -> list[Tensor]:
    """Split along axis 2 of an array of at least three axes, as ``np.dsplit``.

    Examples
    --------
    >>> import autodiffx as ad
    >>> [t.shape for t in ad.dsplit(ad.zeros((1, 2, 4)), 2)]
    [(1, 2, 2), (1, 2, 2)]
    """
    return _split_along("dsplit", x, indices_or_sections, 2, 3)


def flipud(x: Any) -> Tensor:
    """Reverse the order along axis 0.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.flipud(ad.tensor([1.0, 2.0]))
    tensor([2., 1.])
    """
    if np.ndim(x) < 1:
        raise ValueError("flipud: the input must be at least 1-d")
    return flip(x, 0)


def fliplr(x: Any) -> Tensor:
    """Reverse the order along axis 1.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.fliplr(ad.tensor([[1.0, 2.0]]))
    tensor([[2., 1.]])
    """
    if np.ndim(x) < 2:
        raise ValueError("fliplr: the input must be at least 2-d")
    return flip(x, 1)


def rot90(m: Any, k: int = 1, axes: Sequence[int] = (0, 1)) -> Tensor:
    """Rotate by 90 degrees ``k`` times in the plane of ``axes`` (as ``np.rot90``).

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.rot90(ad.tensor([[1.0, 2.0], [3.0, 4.0]]))
    tensor([[2., 4.],
            [1., 3.]])
    """
    m = _t(m)
    a0, a1 = (int(a) % m.ndim for a in axes) if m.ndim >= 2 else (0, 0)
    if len(axes) != 2 or m.ndim < 2 or a0 == a1:
        raise ValueError(f"rot90: axes must be two different axes of a >= 2-d array, got {axes}")
    k = int(k) % 4
    if k == 0:
        return flip(m, ()) if isinstance(m, Tensor) else Tensor(m)
    if k == 2:
        return flip(m, (a0, a1))
    if k == 1:
        return swapaxes(flip(m, a1), a0, a1)
    return flip(swapaxes(m, a0, a1), a1)


# ----- differences and diagonals -----------------------------------------------------------
def _slice_axis(x: Any, sl: slice, axis: int) -> Tensor:
    return getitem_(x, idx=(slice(None),) * axis + (sl,))


def diff(a: Any, n: int = 1, axis: int = -1, prepend: Any = np._NoValue, append: Any = np._NoValue):
    """The ``n``-th discrete difference along ``axis`` (as ``np.diff``).

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.diff(ad.tensor([1.0, 4.0, 9.0]))
    tensor([3., 5.])
    """
    a = _t(a)
    if n < 0:
        raise ValueError(f"diff: order must be non-negative but got {n!r}")
    if a.ndim == 0:
        raise ValueError("diff requires input that is at least one dimensional")
    axis = int(axis) % a.ndim
    parts = []
    for extra in (prepend, append):
        if extra is np._NoValue:
            parts.append(None)
            continue
        e = _t(extra)
        if e.ndim == 0:
            shape = list(a.shape)
            shape[axis] = 1
            e = broadcast_to(e, tuple(shape))
        parts.append(e)
    if parts[0] is not None or parts[1] is not None:
        seq = [p for p in (parts[0], a, parts[1]) if p is not None]
        a = concatenate(seq, axis=axis)
    for _ in range(n):
        a = _slice_axis(a, slice(1, None), axis) - _slice_axis(a, slice(None, -1), axis)
    return a if isinstance(a, Tensor) else Tensor(a)


def diag(v: Any, k: int = 0) -> Tensor:
    """The k-th diagonal of a matrix, or a matrix with ``v`` on its k-th diagonal.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.diag(ad.tensor([1.0, 2.0]))
    tensor([[1., 0.],
            [0., 2.]])
    """
    v = _t(v)
    k = int(k)
    if v.ndim == 2:
        return diagonal(v, offset=k)
    if v.ndim != 1:
        raise ValueError(f"diag: input must be 1-d or 2-d, got shape {v.shape}")
    n = v.shape[0] + abs(k)
    return diagonal_scatter(v, shape=(n, n), offset=k, axis1=0, axis2=1)


def diagflat(v: Any, k: int = 0) -> Tensor:
    """A matrix with the flattened input on its k-th diagonal.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.diagflat(ad.tensor([[1.0, 2.0]])).shape
    (2, 2)
    """
    return diag(reshape(_t(v), (-1,)), k)


# ----- products ----------------------------------------------------------------------------
def kron(a: Any, b: Any) -> Tensor:
    """Kronecker product (as ``np.kron``): an outer product with interleaved axes.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.kron(ad.tensor([1.0, 2.0]), ad.tensor([1.0, 10.0]))
    tensor([ 1., 10.,  2., 20.])
    """
    a, b = _t(a), _t(b)
    nd = max(a.ndim, b.ndim)
    sa = (1,) * (nd - a.ndim) + tuple(a.shape)
    sb = (1,) * (nd - b.ndim) + tuple(b.shape)
    ra = tuple(v for s in sa for v in (s, 1))
    rb = tuple(v for s in sb for v in (1, s))
    prod = ew.multiply(reshape(a, ra), reshape(b, rb))
    return reshape(prod, tuple(x * y for x, y in zip(sa, sb)))


def _component(x: Any, i: int) -> Tensor:
    return getitem_(x, idx=(Ellipsis, i))


def cross(a: Any, b: Any, axisa: int = -1, axisb: int = -1, axisc: int = -1, axis: Any = None):
    """Cross product of 3-vectors (or the z-component for 2-vectors) along an axis.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.cross(ad.tensor([1.0, 0.0, 0.0]), ad.tensor([0.0, 1.0, 0.0]))
    tensor([0., 0., 1.])
    """
    from .shape import moveaxis, stack

    if axis is not None:
        axisa = axisb = axisc = axis
    a, b = moveaxis(_t(a), axisa, -1), moveaxis(_t(b), axisb, -1)
    na, nb = a.shape[-1], b.shape[-1]
    if na not in (2, 3) or nb not in (2, 3):
        raise ValueError(
            f"cross: incompatible dimensions for cross product (dimension must be 2 or 3), "
            f"got shapes {a.shape} and {b.shape}"
        )
    a0, a1 = _component(a, 0), _component(a, 1)
    b0, b1 = _component(b, 0), _component(b, 1)
    z = a0 * b1 - a1 * b0
    if na == 2 and nb == 2:
        return z
    a2 = _component(a, 2) if na == 3 else 0.0
    b2 = _component(b, 2) if nb == 3 else 0.0
    x = a1 * b2 - a2 * b1
    y = a2 * b0 - a0 * b2
    shape = np.broadcast_shapes(*(np.shape(t) for t in (x, y, z)))
    c = stack([broadcast_to(t, shape) for t in (x, y, z)], axis=-1)
    return moveaxis(c, -1, axisc)


# ----- polynomials, integration, grids, angles ---------------------------------------------
def polyval(p: Any, x: Any) -> Tensor:
    """Evaluate the polynomial with coefficients ``p`` (highest power first) at ``x`` (Horner).

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.polyval(ad.tensor([1.0, 0.0, -1.0]), ad.tensor([2.0, 3.0]))
    tensor([3., 8.])
    """
    p, x = _t(p), _t(x)
    if p.ndim != 1:
        raise ValueError(f"polyval: p must be 1-d coefficients, got shape {p.shape}")
    y = ew.multiply(x, 0)  # NumPy starts from zeros_like(x)
    for i in range(p.shape[0]):
        y = y * x + getitem_(p, idx=i)
    return y if isinstance(y, Tensor) else Tensor(y)


def trapezoid(y: Any, x: Any = None, dx: float = 1.0, axis: int = -1) -> Tensor:
    """Integral by the trapezoidal rule along ``axis`` (as ``np.trapezoid``).

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.trapezoid(ad.tensor([1.0, 2.0, 3.0]))
    tensor(4.)
    """
    y = _t(y)
    axis = int(axis) % y.ndim
    mid = _slice_axis(y, slice(1, None), axis) + _slice_axis(y, slice(None, -1), axis)
    if x is None:
        d: Any = dx
    else:
        x = _t(x)
        if x.ndim == 1:
            d = diff(x)
            d = reshape(d, (-1,) + (1,) * (y.ndim - 1 - axis))
        else:
            d = diff(x, axis=axis)
    return sum_(ew.multiply(mid, d), axis=axis, keepdims=False) * 0.5


def meshgrid(*xi: Any, copy: bool = True, sparse: bool = False, indexing: str = "xy"):
    """Coordinate grids from coordinate vectors (as ``np.meshgrid``).

    Examples
    --------
    >>> import autodiffx as ad
    >>> [g.shape for g in ad.meshgrid(ad.zeros(2), ad.zeros(3))]
    [(3, 2), (3, 2)]
    """
    if indexing not in ("xy", "ij"):
        raise ValueError("meshgrid: valid values for `indexing` are 'xy' and 'ij'.")
    n = len(xi)
    outs = []
    for i, x in enumerate(xi):
        shape = [1] * n
        shape[i] = -1
        outs.append(reshape(_t(x), tuple(shape)))
    if indexing == "xy" and n > 1:
        outs = [swapaxes(o, 0, 1) for o in outs]
    if not sparse:
        full = np.broadcast_shapes(*(o.shape for o in outs))
        outs = [_copy(broadcast_to(o, full)) if copy else broadcast_to(o, full) for o in outs]
    return tuple(outs)


def deg2rad(x: Any) -> Tensor:
    """Degrees to radians, ``x * pi / 180``.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.deg2rad(ad.tensor([180.0]))
    tensor([3.14159265])
    """
    return ew.multiply(x, np.pi / 180)


def rad2deg(x: Any) -> Tensor:
    """Radians to degrees, ``x * 180 / pi``.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.rad2deg(ad.tensor([3.141592653589793]))
    tensor([180.])
    """
    return ew.multiply(x, 180 / np.pi)


radians = deg2rad
degrees = rad2deg


def ptp(a: Any, axis: Any = None, keepdims: bool = False, **kw: Any) -> Tensor:
    """Peak to peak, ``max - min`` along ``axis`` (ties share the gradient, as ``amax``).

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.ptp(ad.tensor([3.0, 1.0, 2.0]))
    tensor(2.)
    """
    _no_kw("ptp", kw)
    return red.max(a, axis=axis, keepdims=keepdims) - red.min(a, axis=axis, keepdims=keepdims)


# ----- sorting and order statistics ---------------------------------------------------------
def argsort(a: Any, axis: Any = -1, kind: Any = None, order: Any = None, *, stable: Any = None):
    """Indices that sort ``a`` along ``axis`` (not differentiable: an integer result).

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.argsort(ad.tensor([3.0, 1.0, 2.0]))
    tensor([1, 2, 0])
    """
    if order is not None:
        raise TypeError("argsort: order= (structured arrays) is not supported on Tensors")
    a = _t(a)
    if axis is None:
        a, axis = reshape(a, (-1,)), -1
    return red.argsort_(a, axis=int(axis), kind=kind, stable=stable)


def _along_index(shape: tuple[int, ...], idx: np.ndarray, axis: int) -> tuple[Any, ...]:
    """The advanced index that picks ``idx`` along ``axis`` (np.take_along_axis's)."""
    out: list[Any] = []
    for d in range(len(shape)):
        if d == axis:
            out.append(idx)
        else:
            s = [1] * len(shape)
            s[d] = idx.shape[d]
            out.append(np.arange(idx.shape[d]).reshape(s))
    return tuple(out)


def take_along_axis(arr: Any, indices: Any, axis: Any = -1) -> Tensor:
    """Values of ``arr`` at ``indices`` along ``axis``; differentiable in ``arr`` (repeated
    indices accumulate).

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.take_along_axis(ad.tensor([[5.0, 6.0]]), ad.tensor([[1, 0]]), axis=1)
    tensor([[6., 5.]])
    """
    arr = _t(arr)
    if STATE.mode & VMAP and batched(indices):  # (gathered per example: see the end)
        idx = indices
    else:
        idx = np.asarray(indices.data if isinstance(indices, Tensor) else indices)
    if idx.dtype.kind not in "iu":
        raise IndexError(f"take_along_axis: indices must be integers, got {idx.dtype}")
    if axis is None:
        arr, axis = reshape(arr, (-1,)), 0
    axis = int(axis) % arr.ndim
    if idx.ndim != arr.ndim:
        raise ValueError(
            f"take_along_axis: indices (shape {idx.shape}) and arr (shape {arr.shape}) must "
            "have the same number of dimensions"
        )
    shape = np.broadcast_shapes(
        tuple(1 if d == axis else n for d, n in enumerate(arr.shape)),
        tuple(1 if d == axis else n for d, n in enumerate(idx.shape)),
    )
    shape = tuple(idx.shape[d] if d == axis else n for d, n in enumerate(shape))
    if isinstance(idx, Tensor):  # (batched: getitem's hook gathers the batch at once)
        return getitem(arr, _along_index(arr.shape, broadcast_to(idx, shape), axis))
    return getitem_(arr, idx=_along_index(arr.shape, np.broadcast_to(idx, shape), axis))


def sort(a: Any, axis: Any = -1, kind: Any = None, order: Any = None, *, stable: Any = None):
    """Sorted copy; the gradient flows back through the sorting permutation.

    Tied values keep their order (a stable sort), so the k-th output's gradient goes to the
    k-th of the tied inputs.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.sort(ad.tensor([3.0, 1.0, 2.0]))
    tensor([1., 2., 3.])
    """
    if order is not None:
        raise TypeError("sort: order= (structured arrays) is not supported on Tensors")
    a = _t(a)
    if axis is None:
        a, axis = reshape(a, (-1,)), 0
    if STATE.mode & VMAP and batched(a):  # (the permutation of each example)
        idx = red.argsort_(a, axis=int(axis), kind="stable")
    else:
        idx = np.argsort(a.data if isinstance(a, Tensor) else a, axis=axis, kind="stable")
    return take_along_axis(a, idx, axis)


def _quantile(a: Any, q: Any, axis: Any, keepdims: bool, method: str, name: str) -> Tensor:
    """``quantile(a, q)`` (``percentile`` with ``q`` in percent), ``name`` in the messages."""
    if method != "linear":
        raise NotImplementedError(f"{name}: method={method!r} is not supported, only 'linear'")
    a = _t(a)
    if isinstance(q, Tensor) and q.requires_grad:
        raise TypeError(f"{name}: q is not differentiated; pass q.detach() (or a number)")
    qa = _fractions(q, name)
    axes = tuple(range(a.ndim)) if axis is None else tuple(np.atleast_1d(axis) % max(a.ndim, 1))
    rest = [d for d in range(a.ndim) if d not in axes]
    x = reshape(transpose(a, rest + list(axes)) if a.ndim else a, (*(a.shape[d] for d in rest), -1))
    s = sort(x, axis=-1)
    n = s.shape[-1]
    pos = qa * (n - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)
    w = (pos - lo).reshape(qa.shape + (1,) * len(rest))
    # NOTE: the q axes lead, as NumPy puts them; each q picks two order statistics.
    xs = transpose(s, (s.ndim - 1, *range(s.ndim - 1)))
    if isinstance(lo, Tensor):  # (a batched q, inside ad.vmap: gathered per example)
        out = getitem(xs, lo) * (1 - w) + getitem(xs, hi) * w
    else:
        out = getitem_(xs, idx=lo) * (1 - w) + getitem_(xs, idx=hi) * w
    if n:  # sorting puts nan last: NumPy's result is nan
        vmapped = STATE.mode & VMAP and batched(xs)
        nan = _nan_mask(getitem_(xs, idx=-1) if vmapped else xs.data[-1])
        if isinstance(nan, Tensor) or np.any(nan):  # (a Tensor: batched, inside ad.vmap)
            out = ew.where(nan, np.nan, out)
    if keepdims:
        full = [1 if d in axes else a.shape[d] for d in range(a.ndim)]
        out = reshape(out, qa.shape + tuple(full))
    return out


def _fractions(q: Any, name: str) -> Any:
    """``q`` as fractions (``percentile``'s in percent), checked; a batched ``q`` inside
    ``ad.vmap`` stays a batched tensor (unchecked, as JAX's)."""
    top = 100 if name == "percentile" else 1
    if STATE.mode & VMAP and batched(q):
        return ew.divide(q.astype(np.float64), top)
    qa = np.asarray(q.data if isinstance(q, Tensor) else q, dtype=np.float64) / top
    if np.any((qa < 0) | (qa > 1)):
        raise ValueError(f"{name}: q must be in the range [0, {top}]")
    return qa


def _quantile_args(
    name: str,
    a: Any,
    q: Any,
    axis: Any = None,
    out: Any = None,
    overwrite_input: bool = False,
    method: str = "linear",
    keepdims: bool = False,
    **kw: Any,
) -> Tensor:
    """NumPy's arguments of ``quantile`` and ``percentile`` (no ``out``; the input is never
    overwritten)."""
    _no_kw(name, {"out": out, **kw})
    return _quantile(a, q, axis, keepdims, method, name)


def quantile(a: Any, q: Any, *args: Any, **kwargs: Any) -> Tensor:
    """The q-th quantiles (linear interpolation between order statistics), as ``np.quantile``
    (``axis``, ``out``, ``overwrite_input``, ``method``, ``keepdims``).

    The gradient flows to the (at most two) selected elements; tied values are ordered
    stably, so the gradient goes to one of them, not split. ``q`` is not differentiated.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.quantile(ad.tensor([1.0, 2.0, 4.0]), 0.75)
    tensor(3.)
    """
    return _quantile_args("quantile", a, q, *args, **kwargs)


def percentile(a: Any, q: Any, *args: Any, **kwargs: Any) -> Tensor:
    """The q-th percentiles, ``quantile(a, q / 100)`` with the arguments of :func:`quantile`.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.percentile(ad.tensor([1.0, 2.0, 4.0]), 50)
    tensor(2.)
    """
    return _quantile_args("percentile", a, q, *args, **kwargs)


def median(
    a: Any, axis: Any = None, out: Any = None, overwrite_input: bool = False, keepdims: bool = False
) -> Tensor:
    """The median along ``axis`` (the mean of the two middle values for an even count).

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.median(ad.tensor([4.0, 1.0, 2.0, 3.0]))
    tensor(2.5)
    """
    _no_kw("median", {"out": out})
    return _quantile(a, 0.5, axis, keepdims, "linear", "median")


# ----- nan-ignoring reductions and weighted average ---------------------------------------
def _nan_mask(a: Any) -> Any:
    """Where ``a`` is nan: an array (a batched mask for a batched ``a``)."""
    if STATE.mode & VMAP and batched(a):
        return ew.isnan(a)
    return np.isnan(a.data if isinstance(a, Tensor) else np.asarray(a))


def nansum(
    a: Any, axis: Any = None, dtype: Any = None, out: Any = None, keepdims: bool = False, **kw: Any
) -> Tensor:
    """Sum treating nan as zero; nan entries get a zero gradient.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.nansum(ad.tensor([1.0, float("nan"), 2.0]))
    tensor(3.)
    """
    _no_kw("nansum", {"dtype": dtype, "out": out, **kw})
    a = _t(a)
    return red.sum(ew.where(_nan_mask(a), 0.0, a), axis=axis, keepdims=keepdims)


def nanmean(
    a: Any, axis: Any = None, dtype: Any = None, out: Any = None, keepdims: bool = False, **kw: Any
) -> Tensor:
    """Mean over the non-nan entries; nan entries get a zero gradient.

    Examples
    --------
    >>> import autodiffx as ad
    >>> x = ad.tensor([[1.0, float("nan")], [2.0, 4.0]], requires_grad=True)
    >>> ad.nanmean(x, axis=1)
    tensor([1., 3.], grad_fn=<divide>)
    >>> ad.nanmean(x, axis=1).sum().backward()
    >>> x.grad
    tensor([[1. , 0. ],
            [0.5, 0.5]])
    """
    _no_kw("nanmean", {"dtype": dtype, "out": out, **kw})
    a = _t(a)
    count = np.sum(~_nan_mask(a), axis=red._axis_arg(axis), keepdims=keepdims)
    return nansum(a, axis=axis, keepdims=keepdims) / count


def nanmax(a: Any, axis: Any = None, out: Any = None, keepdims: bool = False, **kw: Any):
    """Maximum over the non-nan entries (nan where all are nan); nan entries get zero gradient.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.nanmax(ad.tensor([1.0, float("nan"), 2.0]))
    tensor(2.)
    """
    _no_kw("nanmax", {"out": out, **kw})
    a = _t(a)
    mask = _nan_mask(a)
    m = red.max(ew.where(mask, -np.inf, a), axis=axis, keepdims=keepdims)
    allnan = np.all(mask, axis=red._axis_arg(axis), keepdims=keepdims)
    if isinstance(allnan, Tensor) or np.any(allnan):  # (a Tensor: batched, inside ad.vmap)
        return ew.where(allnan, np.nan, m)
    return m


def average(
    a: Any, axis: Any = None, weights: Any = None, returned: bool = False, *, keepdims: bool = False
) -> Any:
    """Weighted average along ``axis``, differentiable in ``a`` and in ``weights``.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.average(ad.tensor([1.0, 3.0]), weights=ad.tensor([3.0, 1.0]))
    tensor(1.5)
    """
    a = _t(a)
    if weights is None:
        avg = red.mean(a, axis=axis, keepdims=keepdims)
        cnt = Tensor(np.broadcast_to(np.asarray(a.size / max(avg.size, 1), a.dtype), avg.shape))
        return (avg, cnt) if returned else avg
    w = _t(weights)
    if w.shape != a.shape:
        if axis is None or w.ndim != 1 or isinstance(axis, tuple | list):
            raise TypeError(
                f"average: weights of shape {w.shape} differ from a's {a.shape}; give 1-d "
                "weights with one int axis, or weights of a's shape"
            )
        ax = int(axis) % a.ndim
        w = reshape(w, (-1,) + (1,) * (a.ndim - 1 - ax))
    ws = red.sum(broadcast_to(w, a.shape), axis=axis, keepdims=keepdims)
    if not (STATE.mode & VMAP and batched(ws)) and np.any(ws.data == 0):  # (JAX: no check)
        raise ZeroDivisionError("average: weights sum to zero, can't be normalized")
    avg = red.sum(ew.multiply(a, w), axis=axis, keepdims=keepdims) / ws
    return (avg, ws) if returned else avg


FUNCTION_MAP.update(
    {
        np.sort: sort,
        np.argsort: argsort,
        np.take_along_axis: take_along_axis,
        np.median: median,
        np.percentile: percentile,
        np.quantile: quantile,
        np.nansum: nansum,
        np.nanmean: nanmean,
        np.nanmax: nanmax,
        np.average: average,
        np.atleast_1d: atleast_1d,
        np.atleast_2d: atleast_2d,
        np.atleast_3d: atleast_3d,
        np.hstack: hstack,
        np.vstack: vstack,
        np.column_stack: column_stack,
        np.dstack: dstack,
        np.append: append,
        np.array_split: array_split,
        np.hsplit: hsplit,
        np.vsplit: vsplit,
        np.dsplit: dsplit,
        np.flipud: flipud,
        np.fliplr: fliplr,
        np.rot90: rot90,
        np.diff: diff,
        np.diag: diag,
        np.diagflat: diagflat,
        np.kron: kron,
        np.cross: cross,
        np.polyval: polyval,
        np.trapezoid: trapezoid,
        np.meshgrid: meshgrid,
        np.ptp: ptp,
    }
)
UFUNC_MAP.update(
    {np.deg2rad: deg2rad, np.radians: deg2rad, np.rad2deg: rad2deg, np.degrees: rad2deg}
)
