"""Shape and indexing primitives (all linear: each is one entry with its transpose)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._mode import STATE, VMAP, batched
from .._registry import FUNCTION_MAP, defprim
from .._tensor import Tensor
from .._xp import diagonal_scatter as diagonal_scatter_lazy
from .._xp import is_foreign, is_lazy, triangle
from .._xp import scatter_add as xp_scatter_add
from .._xp import split as split_slices


# ----- batch helpers (vectorized Jacobians) -------------------------------------------------
# A rule's cotangent (VJP) or tangents (JVP) carry ``nb`` leading batch axes that the primal
# arguments do not have (the rule declares a keyword-only ``nb`` to be told how many); these
# helpers keep positions (axes, shapes, indices) counted per example, so that the same rule
# serves one product and a batch of them.
def lead(g: Any, nb: int) -> tuple[int, ...]:
    """The ``nb`` leading batch axes of the cotangent or tangent ``g`` (``()`` unbatched)."""
    return tuple(g.shape[:nb]) if nb else ()


def lift(t: Any, nb: int, ndim: int) -> Any:
    """``t`` with size-1 axes inserted after its ``nb`` batch axes, up to ``nb + ndim`` axes.

    A batched tangent of a broadcast operand must first get the result's rank: otherwise its
    batch axes would be aligned with the other operand's leading axes.
    """
    k = nb + ndim - t.ndim
    if k <= 0:
        return t
    shape = tuple(t.shape)
    return t.reshape(shape[:nb] + (1,) * k + shape[nb:])


def neg_axis(axis: Any, ndim: int) -> int:
    """One axis of an ``ndim``-dimensional example, counted from the end (batch-agnostic)."""
    a = int(axis)
    return a - ndim if a >= 0 else a


def neg_axes(axis: Any, ndim: int) -> Any:
    """Axes counted from the end; ``None`` (all axes) becomes the explicit tuple."""
    if axis is None:
        return tuple(range(-ndim, 0))
    if isinstance(axis, tuple | list):
        return tuple(neg_axis(a, ndim) for a in axis)
    return neg_axis(axis, ndim)


def _shape_arg(shape: Any) -> tuple[int, ...]:
    return (int(shape),) if isinstance(shape, int | np.integer) else tuple(shape)


def static_arg(name: str, what: str, value: Any) -> None:
    """Refuse a ``value`` batched by ``ad.vmap`` (anywhere in a list) for an argument that
    sets the shape of the result, which is one shape for every example (as JAX's)."""
    if batched(*(value if isinstance(value, tuple | list) else (value,))):
        raise TypeError(
            f"{name}: {what} is a batched value inside ad.vmap, but it sets the shape of the "
            "result, which must be the same for every example; pass Python ints (the same "
            "for every example), or loop over the examples instead of vmap"
        )


def raw_index(idx: Any) -> Any:
    """An index with every Tensor replaced by its ndarray (indices are never differentiated)."""
    if isinstance(idx, Tensor):
        return idx.data
    if isinstance(idx, tuple):
        return tuple(i.data if isinstance(i, Tensor) else i for i in idx)
    if isinstance(idx, list) and any(isinstance(i, Tensor) for i in idx):
        return [i.data if isinstance(i, Tensor) else i for i in idx]
    return idx


def _is_basic(idx: Any) -> bool:
    items = idx if isinstance(idx, tuple) else (idx,)
    return all(i is None or i is Ellipsis or isinstance(i, int | np.integer | slice) for i in items)


def _no_duplicates(idx: Any) -> bool:
    if _is_basic(idx):
        return True
    items = idx if isinstance(idx, tuple) else (idx,)
    arrays = [i for i in items if not (i is None or i is Ellipsis or isinstance(i, slice))]
    return len(arrays) == 1 and np.asarray(arrays[0]).dtype == np.bool_


def _astype_kernel(x: Any, dtype: Any, copy: bool = True) -> Any:
    if type(x) is not np.ndarray and is_foreign(x):
        return x.astype(dtype, copy=copy)  # (a Dask array: kept lazy)
    return np.asarray(x).astype(dtype, copy=copy)


astype = defprim(
    "astype",
    _astype_kernel,
    vmap="map",
    linear=lambda g, x, dtype, copy=True: (g,),
    nondiff=(1,),  # dtype: the JVP must not replace it by a zero tangent
    shapes=False,
    view="alias",  # copy=False without a cast returns x itself
    doc="Cast to ``dtype`` (the gradient is cast back to the input's dtype).",
    example="ad.astype(ad.tensor([1.5, 2.5]), 'float32')",
)
copy = defprim(
    "copy",
    lambda x, order="K": (
        np.array(x, copy=True, order=order) if type(x) is np.ndarray or not is_lazy(x) else x.copy()
    ),
    vmap="map",
    linear=lambda g, x, order="K": (g,),
    shapes=False,
    overrides=(np.copy,),
    partials=("1",),
    doc="A copy of the array.",
)
reshape_ = defprim(
    "reshape",
    lambda x, shape: np.reshape(x, shape),
    linear=lambda g, x, shape, *, nb: (g.reshape(lead(g, nb) + x.shape),),
    batch=lambda nb, x, shape: reshape_(x, shape=tuple(x.shape[:nb]) + _shape_arg(shape)),
    view=True,
    doc="Give a new shape without changing the data.",
)


def _inverse_perm(axes: Sequence[int]) -> tuple[int, ...]:
    return tuple(np.argsort(axes))


def _perm(axes: Any, ndim: int) -> list[int]:
    return list(range(ndim))[::-1] if axes is None else [int(a) % ndim for a in axes]


def _batch_perm(perm: Sequence[int], nb: int) -> tuple[int, ...]:
    """A permutation of an example's axes, extended to keep ``nb`` leading batch axes."""
    return tuple(range(nb)) + tuple(nb + int(a) for a in perm)


def _transpose_t(g: Any, x: Any, axes: Any = None, *, nb: int) -> tuple[Any]:
    if axes is None and not nb:
        return (np.transpose(g),)
    return (np.transpose(g, _batch_perm(_inverse_perm(_perm(axes, x.ndim)), nb)),)


transpose_ = defprim(
    "transpose",
    lambda x, axes=None: np.transpose(x, axes),
    linear=_transpose_t,
    batch=lambda nb, x, axes=None: transpose_(x, axes=_batch_perm(_perm(axes, x.ndim - nb), nb)),
    view=True,
    doc="Permute the axes (reverse them by default).",
)
swapaxes_ = defprim(
    "swapaxes",
    lambda x, axis1, axis2: np.swapaxes(x, axis1, axis2),
    linear=lambda g, x, axis1, axis2: (
        np.swapaxes(g, neg_axis(axis1, x.ndim), neg_axis(axis2, x.ndim)),
    ),
    batch=lambda nb, x, axis1, axis2: swapaxes_(
        x, axis1=neg_axis(axis1, x.ndim - nb), axis2=neg_axis(axis2, x.ndim - nb)
    ),
    view=True,
    doc="Interchange two axes.",
)
broadcast_to_ = defprim(
    "broadcast_to",
    lambda x, shape: np.broadcast_to(x, shape),
    # The engine's fit() sums the cotangent back to the input's shape.
    linear=lambda g, x, shape: (g,),
    batch=lambda nb, x, shape: broadcast_to_(
        lift(x, nb, len(_shape_arg(shape))), shape=tuple(x.shape[:nb]) + _shape_arg(shape)
    ),
    shapes=False,
    view=True,
    doc="Broadcast to a new shape (read-only, as NumPy).",
)


def _concat_t(g: Any, *xs: Any, axis: int = 0) -> list[Any]:
    offsets = np.cumsum([x.shape[axis] for x in xs])[:-1]
    cut = split_slices if is_lazy(g) else np.split  # (Dask has no np.split)
    return list(cut(g, offsets, axis=neg_axis(axis, xs[0].ndim)))


concatenate_ = defprim(
    "concatenate",
    lambda *xs, axis=0: np.concatenate(xs, axis=axis),
    linear=_concat_t,
    batch=lambda nb, *xs, axis=0: concatenate_(*xs, axis=neg_axis(axis, xs[0].ndim - nb)),
    doc="Join arrays along an existing axis.",
)


def _split_kernel(x: Any, indices_or_sections: Any, axis: int = 0) -> tuple[Any, ...]:
    cut = split_slices if is_lazy(x) else np.split  # (Dask has no np.split)
    return tuple(cut(x, indices_or_sections, axis=axis))


split_ = defprim(
    "split",
    _split_kernel,
    linear=lambda g, x, indices_or_sections, axis=0: (
        np.concatenate(list(g), axis=neg_axis(axis, x.ndim)),
    ),
    batch=lambda nb, x, indices_or_sections, axis=0: split_(
        x, indices_or_sections=indices_or_sections, axis=neg_axis(axis, x.ndim - nb)
    ),
    nout=-1,
    view=True,
    doc="Split into several arrays along ``axis`` (as ``np.split``).",
)


def _split_steps(shape: tuple[int, ...], indices_or_sections: Any, axis: int = 0) -> list[Any]:
    """The index of each output of ``np.split`` in its input (the outputs are views)."""
    ax = axis % len(shape)
    n = shape[ax]
    if isinstance(indices_or_sections, int | np.integer):
        k = int(indices_or_sections)
        bounds = [i * (n // k) for i in range(k + 1)]
    else:
        bounds = [0, *indices_or_sections, n]
    pre = (slice(None),) * ax
    return [(*pre, slice(lo, hi)) for lo, hi in itertools.pairwise(bounds)]


split_.view_steps = _split_steps
flip_ = defprim(
    "flip",
    lambda x, axis=None: np.flip(x, axis),
    linear=lambda g, x, axis=None, *, nb: (np.flip(g, neg_axes(axis, x.ndim) if nb else axis),),
    batch=lambda nb, x, axis=None: flip_(x, axis=neg_axes(axis, x.ndim - nb)),
    view=True,
    doc="Reverse the order of elements along ``axis``.",
)


def _neg_shift(shift: Any) -> Any:
    return tuple(-s for s in shift) if isinstance(shift, tuple | list) else -shift


def _roll(x: Any, shift: Any, axis: Any, ndim: int, nb: int) -> Any:
    """np.roll of each example of ``x`` (``ndim`` axes after ``nb`` batch axes)."""
    if not nb:
        return np.roll(x, shift, axis)
    if axis is None:  # the flattened example
        flat = np.reshape(x, (*x.shape[:nb], -1))
        return np.reshape(np.roll(flat, shift, -1), tuple(x.shape))
    return np.roll(x, shift, neg_axes(axis, ndim))


roll_ = defprim(
    "roll",
    lambda x, shift, axis=None: np.roll(x, shift, axis),
    linear=lambda g, x, shift, axis=None, *, nb: (_roll(g, _neg_shift(shift), axis, x.ndim, nb),),
    batch=lambda nb, x, shift, axis=None: _roll(x, shift, axis, x.ndim - nb, nb),
    doc="Roll elements along ``axis``.",
)


def _triangle(name: str, half: Any, doc: str) -> Any:
    """The entry of ``np.tril``/``np.triu`` (``half``): linear, batched over leading axes."""

    def batch(nb: int, x: Any, k: int = 0) -> Any:
        if x.ndim - nb == 1:  # NumPy makes a vector a square matrix first
            n = x.shape[-1]
            x = broadcast_to_(lift(x, nb, 2), shape=(*x.shape[:nb], n, n))
        return prim(x, k=k)

    def kernel(x: Any, k: int = 0) -> Any:
        return triangle(x, k, half is np.triu) if is_lazy(x) else half(x, k)

    prim = defprim(
        name,
        kernel,
        linear=lambda g, x, k=0: (kernel(g, k),),
        batch=batch,
        doc=doc,
    )
    return prim


tril_ = _triangle("tril", np.tril, "Lower triangle of a (stack of) matrices.")
triu_ = _triangle("triu", np.triu, "Upper triangle of a (stack of) matrices.")


def _diag_scatter_kernel(g: Any, shape: tuple[int, ...], offset: int, axis1: int, axis2: int):
    if is_lazy(g):
        return diagonal_scatter_lazy(g, shape, offset, axis1, axis2)
    z = np.zeros(shape, dtype=g.dtype)
    zt = np.moveaxis(z, (axis1, axis2), (-2, -1))
    n = g.shape[-1]
    rows = np.arange(n) + (-offset if offset < 0 else 0)
    cols = np.arange(n) + (offset if offset > 0 else 0)
    zt[..., rows, cols] = g
    return z


def _diagonal_t(
    g: Any, x: Any, offset: int = 0, axis1: int = 0, axis2: int = 1, *, nb: int
) -> tuple[Any]:
    return (
        diagonal_scatter.call(
            g,
            shape=lead(g, nb) + x.shape,
            offset=offset,
            axis1=neg_axis(axis1, x.ndim),
            axis2=neg_axis(axis2, x.ndim),
        ),
    )


def _diagonal_batch(nb: int, x: Any, offset: int = 0, axis1: int = 0, axis2: int = 1) -> Any:
    n = x.ndim - nb
    return diagonal_(x, offset=offset, axis1=neg_axis(axis1, n), axis2=neg_axis(axis2, n))


def _diag_scatter_batch(nb: int, d: Any, shape: Any, offset: int, axis1: int, axis2: int) -> Any:
    shape = _shape_arg(shape)
    n = len(shape)
    return diagonal_scatter(
        d,
        shape=tuple(d.shape[:nb]) + shape,
        offset=offset,
        axis1=neg_axis(axis1, n),
        axis2=neg_axis(axis2, n),
    )


def _diagonal_kernel(x: Any, offset: int = 0, axis1: int = 0, axis2: int = 1) -> Any:
    d = np.diagonal(x, offset, axis1, axis2)
    # NOTE: writable when x is (NumPy's is read-only "for now"; PyTorch's is writable): an
    # in-place write through it reaches x, and x's history (see autodiffx._views).
    if isinstance(x, np.ndarray) and x.flags.writeable and d.base is not None:
        d.flags.writeable = True
    return d


diagonal_ = defprim(
    "diagonal",
    _diagonal_kernel,
    linear=_diagonal_t,
    batch=_diagonal_batch,
    view=True,
    doc="Diagonals of a (stack of) matrices.",
)
diagonal_scatter = defprim(
    "diagonal_scatter",
    _diag_scatter_kernel,
    linear=lambda g, d, shape, offset, axis1, axis2: (
        diagonal_.call(
            g,
            offset=offset,
            axis1=neg_axis(axis1, len(_shape_arg(shape))),
            axis2=neg_axis(axis2, len(_shape_arg(shape))),
        ),
    ),
    batch=_diag_scatter_batch,
    export=False,
    doc="Zeros of ``shape`` with ``d`` on the given diagonal (the transpose of diagonal).",
)


def _pad_kernel(x: Any, pad_width: Any, constant_values: Any = 0) -> Any:
    return np.pad(x, pad_width, mode="constant", constant_values=constant_values)


def _pad_pairs(ndim: int, pad_width: Any) -> tuple[tuple[int, int], ...]:
    pw = np.broadcast_to(np.asarray(pad_width, dtype=np.int64), (ndim, 2))
    return tuple((int(lo), int(hi)) for lo, hi in pw)


def _pad_slices(shape: tuple[int, ...], pad_width: Any) -> tuple[slice, ...]:
    pairs = _pad_pairs(len(shape), pad_width)
    return tuple(slice(lo, lo + n) for (lo, _), n in zip(pairs, shape))


pad_ = defprim(
    "pad",
    _pad_kernel,
    vmap="pad",
    vjp=lambda needs, g, out, x, pad_width, constant_values=0, *, nb: (
        getitem_.call(g, idx=(slice(None),) * nb + _pad_slices(np.shape(x), pad_width)),
    ),
    jvp=lambda tans, out, x, pad_width, constant_values=0, *, nb: _pad_kernel_t(
        tans[0], np.ndim(x), pad_width, nb
    ),
    save_args=True,
    doc="Pad with a constant (the pad value is not differentiated).",
)


def _pad_kernel_t(t: Any, ndim: int, pad_width: Any, nb: int) -> Any:
    if nb:
        pad_width = ((0, 0),) * nb + _pad_pairs(ndim, pad_width)
    return pad_(t, pad_width=pad_width, constant_values=0)


def _getitem_kernel(x: Any, idx: Any) -> Any:
    return x[idx]


def _scatter_kernel(g: Any, shape: tuple[int, ...], idx: Any) -> Any:
    if type(g) is not np.ndarray and is_foreign(g):
        return xp_scatter_add(g, shape, idx)
    z = np.zeros(shape, dtype=g.dtype)
    if _no_duplicates(idx):
        z[idx] = g
    else:
        # NOTE: repeated indices accumulate (np.add.at), so x[[0, 0]] gives 2 * g to x[0].
        np.add.at(z, idx, g)
    return z


# NOTE: batched indexing moves the batch axes to the END and indexes the example's axes as
# usual: an index (without Ellipsis) applies to the leading axes, and unindexed trailing axes
# stay last and in order under basic, advanced and boolean indexing alike, whereas batch axes
# prefixed by slices would be moved behind the result axes of separated advanced indices
# (x[:, i, :, j]). An Ellipsis is first spelled out as slices for the example's ndim.
def _index_items(idx: Any, ndim: int) -> tuple[Any, ...]:
    """``idx`` as a tuple without Ellipsis, for an example of ``ndim`` axes."""
    items = idx if isinstance(idx, tuple) else (idx,)
    at = [k for k, i in enumerate(items) if i is Ellipsis]
    if not at:
        return items
    used = 0
    for i in items:
        if i is None or i is Ellipsis or isinstance(i, bool | np.bool_):
            continue
        if isinstance(i, int | np.integer | slice):
            used += 1
            continue
        a = np.asarray(i)
        used += a.ndim if a.dtype == np.bool_ else 1
    k = at[0]
    return items[:k] + (slice(None),) * (ndim - used) + items[k + 1 :]


def _to_end(a: Any, nb: int) -> Any:
    return np.moveaxis(a, tuple(range(nb)), tuple(range(-nb, 0)))


def _to_front(a: Any, nb: int) -> Any:
    return np.moveaxis(a, tuple(range(-nb, 0)), tuple(range(nb)))


def _index(x: Any, idx: Any, nb: int) -> Any:
    """``x[b][idx]`` for every batch index b (x has ``nb`` leading batch axes)."""
    if not nb:
        return getitem_.call(x, idx=idx)
    ix = _index_items(idx, x.ndim - nb)
    return _to_front(getitem_.call(_to_end(x, nb), idx=ix), nb)


def _scatter(v: Any, shape: tuple[int, ...], idx: Any, nb: int) -> Any:
    """Zeros of ``shape`` with ``v[b]`` added at ``idx``, for every batch index b."""
    if not nb:
        return scatter_add.call(v, shape=shape, idx=idx)
    ix = _index_items(idx, len(shape))
    return _to_front(
        scatter_add.call(_to_end(v, nb), shape=tuple(shape) + tuple(v.shape[:nb]), idx=ix), nb
    )


def _setitem_b(x: Any, v: Any, idx: Any, nb: int) -> Any:
    """``x[b][idx] = v[b]`` out of place for every batch index b (v is a number or batched)."""
    if not nb:
        return setitem_.call(x, v, idx=idx)
    ix = _index_items(idx, x.ndim - nb)
    if np.ndim(v):
        v = _to_end(v, nb)  # (*v.shape, *batch) broadcasts against (*x[idx].shape, *batch)
    return _to_front(setitem_.call(_to_end(x, nb), v, idx=ix), nb)


getitem_ = defprim(
    "getitem",
    _getitem_kernel,
    linear=lambda g, x, idx, *, nb: (_scatter(g, x.shape, idx, nb),),
    batch=lambda nb, x, idx: _index(x, idx, nb),
    view=True,
    export=False,
    doc="Basic, advanced and boolean indexing.",
)
scatter_add = defprim(
    "scatter_add",
    _scatter_kernel,
    linear=lambda g, v, shape, idx, *, nb: (_index(g, idx, nb),),
    batch=lambda nb, v, shape, idx: _scatter(v, _shape_arg(shape), idx, nb),
    export=False,
    doc="Zeros of ``shape`` with ``v`` added at ``idx`` (the transpose of indexing).",
)


def _setitem_kernel(x: Any, v: Any, idx: Any) -> Any:
    out = np.array(x, copy=True)
    out[idx] = v
    return out


def _survivors(shape: tuple[int, ...], idx: Any) -> Any:
    """Which elements of ``x[idx]`` (x of ``shape``) keep their write in ``x[idx] = v``.

    None when no position is written twice; else a bool mask of ``x[idx]``'s shape.
    """
    if _no_duplicates(idx):
        return None
    # NOTE: NumPy keeps one of repeated writes (the last, in practice, but it promises no
    # order): writing source positions through the same index reads back the ones that won.
    pos = np.full(shape, -1, dtype=np.intp)
    src = np.arange(pos[idx].size, dtype=np.intp).reshape(pos[idx].shape)
    pos[idx] = src
    won = pos[idx] == src
    return None if won.all() else won


def _setitem_v_t(g: Any, x: Any, v: Any, idx: Any, *, nb: int) -> Any:
    """Transpose for ``v``: ``g[idx]``, zero where a repeated write was overwritten."""
    gv = _index(g, idx, nb)
    won = _survivors(tuple(x.shape), idx)
    if won is not None:
        gv = gv * won.astype(gv.dtype)
    return lift(gv, nb, np.ndim(v))


setitem_ = defprim(
    "setitem",
    _setitem_kernel,
    linear=(lambda g, x, v, idx, *, nb: _setitem_b(g, 0.0, idx, nb), _setitem_v_t),
    batch=lambda nb, x, v, idx: _setitem_b(x, v, idx, nb),
    export=False,
    doc="A copy of x with x[idx] = v, differentiable in x (untouched elements) and v.",
)


# ----- public wrappers and composites ------------------------------------------------------
def getitem(x: Tensor, idx: Any) -> Tensor:
    """``x[idx]`` for a Tensor (used by ``Tensor.__getitem__``)."""
    if STATE.mode & VMAP:  # (an index batched by ad.vmap, into a tensor that is not)
        out = STATE.vmap_index(x, idx)
        if out is not NotImplemented:
            return out  # type: ignore[no-any-return]
    return getitem_(x, idx=raw_index(idx))


def setitem(x: Tensor, idx: Any, v: Any) -> Tensor:
    """Out-of-place ``x[idx] = v`` (used by ``Tensor.__setitem__`` when recording)."""
    return setitem_(x, v, idx=raw_index(idx))


def reshape(x: Any, shape: Any, order: str = "C", *, newshape: Any = None) -> Tensor:
    """Give ``x`` a new shape.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.reshape(ad.arange(6.0), (2, 3)).shape
    (2, 3)
    """
    if order != "C":
        raise ValueError("reshape: only order='C' is supported")
    shape = newshape if shape is None else shape
    if isinstance(shape, int | np.integer):
        shape = (int(shape),)
    return reshape_(x, shape=tuple(shape))


def transpose(x: Any, axes: Any = None) -> Tensor:
    """Permute the axes of ``x`` (reverse by default).

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.transpose(ad.zeros((2, 3, 4)), (1, 0, 2)).shape
    (3, 2, 4)
    """
    return transpose_(x, axes=None if axes is None else tuple(int(a) for a in axes))


def swapaxes(x: Any, axis1: int, axis2: int) -> Tensor:
    """Interchange two axes.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.swapaxes(ad.zeros((2, 3)), 0, 1).shape
    (3, 2)
    """
    return swapaxes_(x, axis1=int(axis1), axis2=int(axis2))


def moveaxis(x: Any, source: Any, destination: Any) -> Tensor:
    """Move axes to new positions (as ``np.moveaxis``).

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.moveaxis(ad.zeros((2, 3, 4)), 0, -1).shape
    (3, 4, 2)
    """
    nd = np.ndim(x)
    src = np.atleast_1d(source) % max(nd, 1)
    dst = np.atleast_1d(destination) % max(nd, 1)
    order = [n for n in range(nd) if n not in src]
    for d, s in sorted(zip(dst, src)):
        order.insert(int(d), int(s))
    return transpose_(x, axes=tuple(order))


def squeeze(x: Any, axis: Any = None) -> Tensor:
    """Remove size-1 axes.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.squeeze(ad.zeros((1, 3, 1))).shape
    (3,)
    """
    shape = np.shape(x)
    if axis is None:
        new = tuple(s for s in shape if s != 1)
    else:
        axes = {a % len(shape) for a in np.atleast_1d(axis)}
        for a in axes:
            if shape[a] != 1:
                raise ValueError(
                    f"squeeze: cannot select an axis to squeeze out which has size not equal "
                    f"to one (axis {a} of shape {shape})"
                )
        new = tuple(s for i, s in enumerate(shape) if i not in axes)
    return reshape_(x, shape=new)


def expand_dims(x: Any, axis: Any) -> Tensor:
    """Insert size-1 axes at ``axis``.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.expand_dims(ad.zeros(3), 0).shape
    (1, 3)
    """
    return reshape_(x, shape=np.expand_dims(np.empty(np.shape(x), dtype=np.bool_), axis).shape)


def broadcast_to(x: Any, shape: Any) -> Tensor:
    """Broadcast ``x`` to ``shape`` (a read-only view, as NumPy).

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.broadcast_to(ad.tensor([1.0, 2.0]), (3, 2)).shape
    (3, 2)
    """
    shape = (int(shape),) if isinstance(shape, int | np.integer) else tuple(shape)
    return broadcast_to_(x, shape=shape)


def ravel(x: Any, order: str = "C") -> Tensor:
    """The elements as a 1-D tensor.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.ravel(ad.zeros((2, 3))).shape
    (6,)
    """
    return reshape(x, (-1,), order)


def flatten(x: Any) -> Tensor:
    """A 1-D copy of ``x``.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.flatten(ad.zeros((2, 3))).shape
    (6,)
    """
    return copy(reshape(x, (-1,)))


def concatenate(arrays: Sequence[Any], axis: Any = 0, out: Any = None, **kw: Any) -> Tensor:
    """Join a sequence of arrays along an existing axis.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.concatenate([ad.ones(2), ad.zeros(1)])
    tensor([1., 1., 0.])
    """
    if out is not None:
        raise TypeError("concatenate: out= is not supported on Tensors")
    if axis is None:
        return concatenate_(*[ravel(a) for a in arrays], axis=0)
    return concatenate_(*arrays, axis=int(axis))


def stack(arrays: Sequence[Any], axis: int = 0, out: Any = None, **kw: Any) -> Tensor:
    """Join arrays along a new axis.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.stack([ad.ones(2), ad.zeros(2)]).shape
    (2, 2)
    """
    if out is not None:
        raise TypeError("stack: out= is not supported on Tensors")
    arrays = list(arrays)
    if not arrays:
        raise ValueError("stack: need at least one array to stack")
    shapes = {np.shape(a) for a in arrays}
    if len(shapes) != 1:
        raise ValueError(f"stack: all input arrays must have the same shape, got {sorted(shapes)}")
    return concatenate_(*[expand_dims(a, axis) for a in arrays], axis=int(axis))


def split(x: Any, indices_or_sections: Any, axis: int = 0) -> list[Tensor]:
    """Split into sub-arrays along ``axis`` (as ``np.split``).

    Examples
    --------
    >>> import autodiffx as ad
    >>> [t.shape for t in ad.split(ad.zeros(6), 3)]
    [(2,), (2,), (2,)]
    """
    ios = indices_or_sections
    if STATE.mode & VMAP:
        static_arg("split", "indices_or_sections", ios)
    if not isinstance(ios, int | np.integer):
        ios = tuple(int(i) for i in ios)
    return list(split_(x, indices_or_sections=ios, axis=int(axis)))


def flip(x: Any, axis: Any = None) -> Tensor:
    """Reverse the order of elements along ``axis`` (all axes by default).

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.flip(ad.tensor([1.0, 2.0, 3.0]))
    tensor([3., 2., 1.])
    """
    if isinstance(axis, list):
        axis = tuple(axis)
    return flip_(x, axis=axis)


def roll(x: Any, shift: Any, axis: Any = None) -> Tensor:
    """Roll elements along ``axis``.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.roll(ad.tensor([1.0, 2.0, 3.0]), 1)
    tensor([3., 1., 2.])
    """
    if isinstance(shift, list):
        shift = tuple(shift)
    if isinstance(axis, list):
        axis = tuple(axis)
    return roll_(x, shift=shift, axis=axis)


def pad(
    x: Any, pad_width: Any, mode: str = "constant", constant_values: Any = 0, **kw: Any
) -> Tensor:
    """Pad as ``np.pad``: every mode but a callable one (see ``ops/numpy_more.pad_mode``).

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.pad(ad.ones(2), 1)
    tensor([0., 1., 1., 0.])
    >>> ad.pad(ad.tensor([1.0, 2.0, 3.0]), 2, mode="reflect")
    tensor([3., 2., 1., 2., 3., 2., 1.])
    """
    if mode != "constant":
        from .numpy_more import pad_mode

        return pad_mode(x, pad_width, mode, **kw)
    if kw:
        raise ValueError(f"pad: unsupported keyword arguments for mode 'constant': {sorted(kw)}")
    if STATE.mode & VMAP:
        static_arg("pad", "pad_width", pad_width)
    pw = np.asarray(pad_width, dtype=np.int64)
    return pad_(
        x,
        pad_width=tuple(map(tuple, np.broadcast_to(pw, (np.ndim(x), 2)).tolist())),
        constant_values=constant_values,
    )


def tile(x: Any, reps: Any) -> Tensor:
    """Repeat ``x`` the number of times given by ``reps`` (as ``np.tile``).

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.tile(ad.tensor([1.0, 2.0]), 2)
    tensor([1., 2., 1., 2.])
    """
    if STATE.mode & VMAP:
        static_arg("tile", "reps", reps)
    reps = (int(reps),) if isinstance(reps, int | np.integer) else tuple(int(r) for r in reps)
    shape = np.shape(x)
    n = max(len(shape), len(reps))
    shape = (1,) * (n - len(shape)) + tuple(shape)
    reps = (1,) * (n - len(reps)) + reps
    inter = tuple(v for s in shape for v in (1, s))
    big = tuple(v for s, r in zip(shape, reps) for v in (r, s))
    y = broadcast_to(reshape(x, inter), big)
    y = reshape(y, tuple(s * r for s, r in zip(shape, reps)))
    if STATE.mode & VMAP and batched(y):  # (no in-place write into a batched value)
        return y
    # NOTE: np.tile returns a new array; where the reshape kept broadcast_to's read-only view
    # (reps of 1, or repeats along size-1 axes) an in-place write would fail, so copy it.
    return y if y.data.flags.writeable else copy(y)


def repeat(x: Any, repeats: Any, axis: Any = None) -> Tensor:
    """Repeat each element (as ``np.repeat``); the gradient sums the copies.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.repeat(ad.tensor([1.0, 2.0]), 2)
    tensor([1., 1., 2., 2.])
    """
    if STATE.mode & VMAP:
        static_arg("repeat", "repeats", repeats)
    if axis is None:
        x = ravel(x)
        axis = 0
    n = np.shape(x)[axis]
    idx = np.repeat(np.arange(n), repeats)
    ax = axis % np.ndim(x)
    return getitem_(x, idx=(slice(None),) * ax + (idx,))


def tril(x: Any, k: int = 0) -> Tensor:
    """Lower triangle (elements above the k-th diagonal zeroed).

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.tril(ad.ones((2, 2)))
    tensor([[1., 0.],
            [1., 1.]])
    """
    return tril_(x, k=int(k))


def triu(x: Any, k: int = 0) -> Tensor:
    """Upper triangle (elements below the k-th diagonal zeroed).

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.triu(ad.ones((2, 3)), k=1)
    tensor([[0., 1., 1.],
            [0., 0., 1.]])
    """
    return triu_(x, k=int(k))


def diagonal(x: Any, offset: int = 0, axis1: int = 0, axis2: int = 1) -> Tensor:
    """Diagonal (stack of diagonals) of ``x``.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.diagonal(ad.eye(2))
    tensor([1., 1.])
    """
    nd = np.ndim(x)
    return diagonal_(x, offset=int(offset), axis1=int(axis1) % nd, axis2=int(axis2) % nd)


def take(x: Any, indices: Any, axis: Any = None) -> Tensor:
    """Elements at ``indices`` along ``axis`` (as ``np.take``).

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.take(ad.tensor([5.0, 6.0, 7.0]), [2, 0])
    tensor([7., 5.])
    """
    if STATE.mode & VMAP and batched(x, indices):
        return _take_batched(x, indices, axis)
    if axis is None:
        return getitem_(
            ravel(x), idx=raw_index(np.asarray(indices) if isinstance(indices, list) else indices)
        )
    ax = axis % np.ndim(x)
    out = getitem_(x, idx=(slice(None),) * ax + (raw_index(indices),))
    # NOTE: np.take returns a C-ordered array where indexing may not; the layout decides
    # whether a later reshape is a view (and so sees in-place writes), as in NumPy.
    return out if out.data.flags.c_contiguous else copy(out, order="C")


def _take_batched(x: Any, indices: Any, axis: Any) -> Tensor:
    """``take`` inside ``ad.vmap``: indexing, which gathers batched indices per example
    (a batched value has no memory layout to copy into C order)."""
    if isinstance(indices, list):
        indices = np.asarray(indices)
    if axis is None:
        return getitem(ravel(x), indices)
    ax = axis % np.ndim(x)
    if not batched(indices):
        return getitem_(x, idx=(slice(None),) * ax + (raw_index(indices),))
    out = getitem(moveaxis(x, ax, 0), indices)  # (the indices' axes, then x's others)
    k = indices.ndim
    return moveaxis(out, tuple(range(k)), tuple(range(ax, ax + k))) if ax and k else out


FUNCTION_MAP.update(
    {
        np.reshape: reshape,
        np.transpose: transpose,
        np.swapaxes: swapaxes,
        np.moveaxis: moveaxis,
        np.squeeze: squeeze,
        np.expand_dims: expand_dims,
        np.broadcast_to: broadcast_to,
        np.ravel: ravel,
        np.concatenate: concatenate,
        np.stack: stack,
        np.split: split,
        np.flip: flip,
        np.roll: roll,
        np.pad: pad,
        np.tile: tile,
        np.repeat: repeat,
        np.tril: tril,
        np.triu: triu,
        np.diagonal: diagonal,
        np.take: take,
    }
)
