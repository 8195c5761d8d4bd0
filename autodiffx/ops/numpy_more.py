"""More of NumPy: sinc, angle, nanmedian, interp, linspace, put_along_axis, ufunc methods, pad."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._mode import STATE, VMAP, batched
from .._registry import FUNCTION_MAP, UFUNC_MAP, defprim
from .._tensor import Tensor
from . import elementwise as ew
from . import reduction as red
from .numpy_funcs import _along_index, _nan_mask, _t, sort, take_along_axis
from .shape import (
    broadcast_to,
    concatenate,
    getitem_,
    moveaxis,
    reshape,
    scatter_add,
    stack,
    take,
)


# ----- sinc: exact at 0, derivatives by a series near 0 -------------------------------------
def _sinc_d(x: Any) -> Any:
    # NOTE: (u cos u - sin u) / u**2 (u = pi x) cancels near 0 (relative error ~ eps / u**2);
    # below |u| = 0.1 its Taylor series to u**7 is exact to rounding instead.
    u = np.pi * x
    small = np.abs(u) < 0.1
    us = np.where(small, 1.0, u)
    exact = (us * np.cos(us) - np.sin(us)) / (us * us)
    u2 = u * u
    series = u * (-1 / 3 + u2 * (1 / 30 + u2 * (-1 / 840 + u2 / 45360)))
    return np.pi * np.where(small, series, exact)


def _sinc_d2(x: Any) -> Any:
    u = np.pi * x
    small = np.abs(u) < 0.1
    us = np.where(small, 1.0, u)
    exact = ((2 - us * us) * np.sin(us) - 2 * us * np.cos(us)) / (us * us * us)
    u2 = u * u
    series = -1 / 3 + u2 * (1 / 10 + u2 * (-1 / 168 + u2 / 6480))
    return np.pi * np.pi * np.where(small, series, exact)


sinc = defprim(
    "sinc",
    np.sinc,
    derivs=(lambda x: _sinc_d(x),),
    derivs2=(lambda x: _sinc_d2(x),),
    overrides=(np.sinc,),
    example="[0.0, 0.5]",
    doc="The normalized sinc, sin(pi x) / (pi x), 1 at 0 (derivatives exact there too).",
)


# ----- angle, real_if_close -----------------------------------------------------------------
def angle(z: Any, deg: bool = False) -> Tensor:
    """The argument of a complex number, ``arctan2(z.imag, z.real)`` (0 or pi for reals).

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.angle(ad.tensor([1j, -1.0]))
    tensor([1.57079633, 3.14159265])
    """
    z = _t(z)
    a = ew.arctan2(ew.imag(z), ew.real(z))
    return ew.multiply(a, 180 / np.pi) if deg else a


def real_if_close(a: Any, tol: float = 100) -> Tensor:
    """The real part when every imaginary part is within ``tol`` machine epsilons of 0, else ``a``.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.real_if_close(ad.tensor([2.0 + 1e-17j]))
    tensor([2.])
    """
    a = _t(a)
    if a.dtype.kind != "c":
        return a if isinstance(a, Tensor) else Tensor(a)
    if STATE.mode & VMAP and batched(a):
        raise TypeError(
            f"real_if_close of a batched complex value inside ad.vmap (per-example shape "
            f"{a.shape}): whether its result is real depends on the values of every example; "
            "take ad.real(a) (or keep a) explicitly"
        )
    if tol > 1:
        tol = np.finfo(a.dtype).eps * tol
    im = a.data if isinstance(a, Tensor) else a
    return ew.real(a) if np.all(np.abs(im.imag) < tol) else a


# ----- nanmedian ----------------------------------------------------------------------------
def nanmedian(
    a: Any, axis: Any = None, out: Any = None, overwrite_input: bool = False, keepdims: bool = False
) -> Tensor:
    """The median of the non-nan entries along ``axis`` (nan for an all-nan group).

    nan entries get a zero gradient; ties are ordered stably, as in ``median``.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.nanmedian(ad.tensor([4.0, float("nan"), 1.0, 2.0]))
    tensor(2.)
    """
    if out is not None:
        raise TypeError("nanmedian: out= is not supported on Tensors")
    a = _t(a)
    axes = tuple(range(a.ndim)) if axis is None else tuple(np.atleast_1d(axis) % max(a.ndim, 1))
    rest = [d for d in range(a.ndim) if d not in axes]
    moved = moveaxis(a, axes, tuple(range(-len(axes), 0))) if a.ndim else a
    x = reshape(moved, (*(a.shape[d] for d in rest), -1))
    s = sort(x, axis=-1)  # nan sorts last
    cnt = np.sum(~_nan_mask(s), axis=-1, keepdims=True)
    pos = np.maximum(cnt - 1, 0) * 0.5
    lo = np.floor(pos).astype(np.int64)
    hi = np.ceil(pos).astype(np.int64)
    w = pos - lo
    out_ = take_along_axis(s, lo, -1) * (1 - w) + take_along_axis(s, hi, -1) * w
    out_ = ew.where(cnt == 0, np.nan, out_)
    out_ = reshape(out_, out_.shape[:-1])
    if keepdims:
        out_ = reshape(out_, tuple(1 if d in axes else a.shape[d] for d in range(a.ndim)))
    return out_


# ----- linspace, logspace with tensor endpoints ---------------------------------------------
def linspace(
    start: Any,
    stop: Any,
    num: int = 50,
    endpoint: bool = True,
    retstep: bool = False,
    dtype: Any = None,
    axis: int = 0,
) -> Any:
    """``num`` evenly spaced values from ``start`` to ``stop``, differentiable in both ends.

    Examples
    --------
    >>> import autodiffx as ad
    >>> a = ad.tensor(1.0, requires_grad=True)
    >>> ad.grad(lambda a: ad.linspace(a, 2.0, 3).sum())(a)
    tensor(1.5)
    """
    num = int(num)
    if num < 0:
        raise ValueError(f"linspace: number of samples, {num}, must be non-negative.")
    start, stop = ew.multiply(_t(start), 1.0), ew.multiply(_t(stop), 1.0)  # as floats
    shape = np.broadcast_shapes(start.shape, stop.shape)
    div = (num - 1) if endpoint else num
    ramp = np.arange(num, dtype=np.float64).reshape((-1,) + (1,) * len(shape))
    delta = stop - start
    step = delta / div if div > 0 else delta * np.nan
    y = ew.add(ramp * step, start) if div > 0 else ew.add(ramp * delta, start)
    y = broadcast_to(y, (num, *shape))
    if endpoint and num > 1:
        last = broadcast_to(reshape(stop, (1, *stop.shape)), (1, *shape))
        y = concatenate([getitem_(y, idx=slice(0, num - 1)), last], axis=0)
    if axis != 0:
        y = moveaxis(y, 0, axis)
    if dtype is not None:
        y = y.astype(dtype)
    return (y, step) if retstep else y


def logspace(
    start: Any,
    stop: Any,
    num: int = 50,
    endpoint: bool = True,
    base: Any = 10.0,
    dtype: Any = None,
    axis: int = 0,
) -> Tensor:
    """``base ** linspace(start, stop, num)``, differentiable in ``start``, ``stop`` and ``base``.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.logspace(ad.tensor(0.0), 2.0, 3)
    tensor([  1.,  10., 100.])
    """
    y = linspace(start, stop, num, endpoint=endpoint, axis=0)
    b = _t(base)
    if b.ndim:
        b = reshape(b, (1, *b.shape))
    y = ew.power(b, y)
    if axis != 0:
        y = moveaxis(y, 0, axis)
    return y if dtype is None else y.astype(dtype)


# ----- put_along_axis, ufunc.at: in-place writes, recorded as setitem ----------------------
def _target(name: str, a: Any, vals: Any) -> bool:
    """Whether ``a`` is a Tensor to write into; refuse an ndarray target of a variable."""
    if isinstance(a, Tensor):
        return True
    if isinstance(vals, Tensor) and (vals.requires_grad or vals._tan is not None):
        raise TypeError(
            f"{name}: writing a Tensor that carries a derivative into a NumPy array would drop "
            "it; make the target a tensor (a = ad.tensor(a)) or pass values.detach()"
        )
    return False


def put_along_axis(arr: Any, indices: Any, values: Any, axis: Any) -> None:
    """Write ``values`` into ``arr`` at ``indices`` along ``axis``, in place (as NumPy's).

    Recorded as ``arr[idx] = values``: differentiable in the untouched elements of ``arr``
    and in ``values`` (of repeated positions, only the write that survives).

    Examples
    --------
    >>> import autodiffx as ad
    >>> a = ad.zeros((1, 3))
    >>> ad.put_along_axis(a, ad.tensor([[2]]), 5.0, axis=1)
    >>> a
    tensor([[0., 0., 5.]])
    """
    if STATE.mode & VMAP and batched(arr, indices, values):
        raise TypeError(
            "put_along_axis writes into arr in place, and inside ad.vmap arr, indices or "
            "values is batched (per example): write out of place instead, e.g. "
            "ad.where(mask, values, arr) with a mask of the positions"
        )
    idx = np.asarray(indices.data if isinstance(indices, Tensor) else indices)
    if idx.dtype.kind not in "iu":
        raise IndexError(f"put_along_axis: indices must be integers, got {idx.dtype}")
    if not _target("put_along_axis", arr, values):
        np.put_along_axis(arr, idx, values.data if isinstance(values, Tensor) else values, axis)
        return
    if axis is None:
        if idx.ndim != 1:
            raise ValueError("put_along_axis: with axis=None, indices must be 1-d")
        index: Any = np.unravel_index(idx % max(arr.size, 1), arr.shape)
    else:
        axis = int(axis) % arr.ndim
        if idx.ndim != arr.ndim:
            raise ValueError(
                f"put_along_axis: indices (shape {idx.shape}) and arr (shape {arr.shape}) must "
                "have the same number of dimensions"
            )
        index = _along_index(arr.shape, idx, axis)
    shape = np.broadcast_shapes(*(np.shape(i) for i in index))
    arr[index] = broadcast_to(_t(values), shape)


def _ufunc_at(ufunc: np.ufunc) -> Any:
    def at(a: Any, indices: Any, b: Any = None) -> None:
        name = f"numpy.{ufunc.__name__}.at"
        if not _target(name, a, b):
            raw = [x.data if isinstance(x, Tensor) else x for x in (a, b)]
            ufunc.at(raw[0], indices, *([] if b is None else [raw[1]]))
            return
        f = UFUNC_MAP.get(ufunc)
        if f is None:
            raise TypeError(f"{name}: {ufunc.__name__} has no autodiffx rule")
        idx = indices.data if isinstance(indices, Tensor) else indices
        idx = (
            tuple(np.asarray(i) if isinstance(i, list) else i for i in idx)
            if (isinstance(idx, tuple))
            else (np.asarray(idx) if isinstance(idx, list) else idx)
        )
        pos = np.arange(a.size).reshape(a.shape)[idx]
        if ufunc in (np.add, np.subtract):
            v = broadcast_to(_t(b), pos.shape)
            a += scatter_add(ew.negative(v) if ufunc is np.subtract else v, shape=a.shape, idx=idx)
            return
        _at_rounds(f, a, pos, None if b is None else broadcast_to(_t(b), pos.shape))

    return at


def _at_rounds(f: Any, a: Tensor, pos: np.ndarray, b: Any) -> None:
    """``a.flat[p] = f(a.flat[p], b)`` for each occurrence in order: repeats in later rounds."""
    flat = pos.reshape(-1)
    order = np.argsort(flat, kind="stable")
    srt = flat[order]
    first = np.r_[0, np.flatnonzero(srt[1:] != srt[:-1]) + 1]
    rank = np.empty_like(flat)
    rank[order] = np.arange(flat.size) - np.repeat(first, np.diff(np.r_[first, flat.size]))
    bflat = None if b is None else reshape(b, (-1,))
    for r in range(int(rank.max(initial=-1)) + 1):
        sel = np.flatnonzero(rank == r)
        where = np.unravel_index(flat[sel], a.shape)
        cur = a[where]
        a[where] = f(cur) if bflat is None else f(cur, getitem_(bflat, idx=sel))


# ----- ufunc.reduce / accumulate / outer for the differentiable binary ufuncs ---------------
_REORDERABLE = {
    np.add,
    np.multiply,
    np.maximum,
    np.minimum,
    np.fmax,
    np.fmin,
    np.logaddexp,
    np.logaddexp2,
    np.hypot,
    np.logical_and,
    np.logical_or,
    np.logical_xor,
}


def _fold_axes(x: Any, axis: Any, name: str, ufunc: np.ufunc) -> tuple[Any, tuple[int, ...]]:
    """``x`` with the reduced axes flattened into one leading axis, and the reduced axes."""
    axes = red.norm_axes(axis, x.ndim)
    if len(axes) > 1 and ufunc not in _REORDERABLE:
        raise ValueError(f"{name}: reduction over several axes needs a reorderable ufunc")
    moved = moveaxis(x, axes, tuple(range(len(axes)))) if axes else x
    rest = tuple(x.shape[d] for d in range(x.ndim) if d not in axes)
    return reshape(moved, (-1, *rest)), axes


def _ufunc_reduce(ufunc: np.ufunc) -> Any:
    def reduce(
        x: Any,
        axis: Any = 0,
        dtype: Any = None,
        out: Any = None,
        keepdims: bool = False,
        initial: Any = np._NoValue,
        where: Any = True,
    ) -> Tensor:
        name = f"numpy.{ufunc.__name__}.reduce"
        if out is not None:
            raise TypeError(f"{name}: out= is not supported on Tensors")
        f = UFUNC_MAP[ufunc]
        x = _t(x) if dtype is None else _t(x).astype(dtype)
        if isinstance(axis, list):
            axis = tuple(axis)
        masked = where is not True
        if masked and initial is np._NoValue:
            initial = ufunc.identity
            if initial is None:
                raise ValueError(
                    f"{name}: reduction operation {ufunc.__name__!r} does not have an "
                    "identity, so to use a where mask one has to specify 'initial'"
                )
        flat, axes = _fold_axes(x, axis, name, ufunc)
        mask = np.broadcast_to(np.asarray(where, dtype=bool), x.shape) if masked else None
        if mask is not None:
            mask = reshape(np.moveaxis(mask, axes, tuple(range(len(axes)))), flat.shape).data
        fast = _FAST_REDUCE.get(ufunc)
        acc = None
        if fast is not None and flat.shape[0]:
            if mask is not None:  # masked entries become the neutral element
                flat, mask = ew.where(mask, flat, _NEUTRAL[ufunc]), None
            acc = fast(flat)
        if acc is None:
            acc = _fold(f, flat, mask, initial, name)
        elif initial is not np._NoValue:
            acc = f(acc, initial)
        if keepdims:
            acc = reshape(acc, tuple(1 if d in axes else n for d, n in enumerate(x.shape)))
        return acc

    return reduce


def _fold(f: Any, flat: Any, mask: Any, initial: Any, name: str) -> Any:
    """Left fold of ``f`` along axis 0 (masked entries skipped), starting at ``initial``."""
    n = flat.shape[0]
    acc = None if initial is np._NoValue else broadcast_to(_t(initial), flat.shape[1:])
    if acc is None and n == 0:
        raise ValueError(f"{name}: zero-size array to reduction operation which has no identity")
    for k in range(n):
        xk = getitem_(flat, idx=k)
        if acc is None:
            acc = xk
            continue
        nxt = f(acc, xk)
        acc = nxt if mask is None else ew.where(mask[k], nxt, acc)
    return acc


_NEUTRAL = {
    np.add: 0.0,
    np.multiply: 1.0,
    np.maximum: -np.inf,
    np.minimum: np.inf,
    np.logaddexp: -np.inf,
}
_FAST_REDUCE: dict[np.ufunc, Any] = {
    np.add: lambda x: red.sum(x, axis=0),
    np.multiply: lambda x: red.prod(x, axis=0),
    np.maximum: lambda x: red.amax(x, axis=0),
    np.minimum: lambda x: red.amin(x, axis=0),
    np.logaddexp: lambda x: red.logsumexp(x, axis=0),
}


def _ufunc_accumulate(ufunc: np.ufunc) -> Any:
    def accumulate(x: Any, axis: int = 0, dtype: Any = None, out: Any = None) -> Tensor:
        name = f"numpy.{ufunc.__name__}.accumulate"
        if out is not None:
            raise TypeError(f"{name}: out= is not supported on Tensors")
        x = _t(x) if dtype is None else _t(x).astype(dtype)
        if ufunc is np.add:
            return red.cumsum(x, axis=axis)
        if ufunc is np.multiply:
            return red.cumprod(x, axis=axis)
        f = UFUNC_MAP[ufunc]
        xm = moveaxis(x, int(axis), 0)
        outs = []
        for k in range(xm.shape[0]):
            xk = getitem_(xm, idx=k)
            outs.append(xk if not outs else f(outs[-1], xk))
        return moveaxis(stack(outs, axis=0), 0, int(axis)) if outs else _t(x) * 1

    return accumulate


def _ufunc_outer(ufunc: np.ufunc) -> Any:
    def outer(a: Any, b: Any) -> Tensor:
        a, b = _t(a), _t(b)
        return UFUNC_MAP[ufunc](reshape(a, a.shape + (1,) * b.ndim), b)

    return outer


def _numpys(u: Any) -> bool:
    """A NumPy ufunc (SciPy's keep refusing methods until they have rules of their own)."""
    return isinstance(u, np.ufunc) and getattr(np, u.__name__, None) is u


def _register_ufunc_methods() -> None:
    for u in list(UFUNC_MAP):
        if not _numpys(u) or u.nin != 2 or u.nout != 1:
            continue
        red.UFUNC_REDUCE.setdefault((u, "reduce"), _ufunc_reduce(u))
        red.UFUNC_REDUCE.setdefault((u, "accumulate"), _ufunc_accumulate(u))
        red.UFUNC_REDUCE[(u, "outer")] = _ufunc_outer(u)
        red.UFUNC_REDUCE[(u, "at")] = _ufunc_at(u)
    for u in list(UFUNC_MAP):
        if _numpys(u) and u.nin == 1 and u.nout == 1:
            red.UFUNC_REDUCE[(u, "at")] = _ufunc_at(u)
    # the generic reduce handles initial= and where= for these too
    for u in (np.add, np.multiply, np.maximum, np.minimum):
        red.UFUNC_REDUCE[(u, "reduce")] = _ufunc_reduce(u)


# ----- np.pad in every mode -----------------------------------------------------------------
_INDEX_MODES = ("edge", "wrap", "reflect", "symmetric")
_LINEAR_MODES = ("reflect", "symmetric", "linear_ramp", "mean")
_STAT_MODES = {"maximum": red.amax, "minimum": red.amin}


def _pairs(arg: Any, ndim: int, name: str) -> list[tuple[Any, Any]]:
    a = np.asarray(arg, dtype=object if arg is None else None)
    if a.dtype == object and arg is None:
        return [(None, None)] * ndim
    return [tuple(p) for p in np.broadcast_to(a, (ndim, 2)).tolist()]


def pad_mode(x: Any, pad_width: Any, mode: str, **kw: Any) -> Tensor:
    """``np.pad`` in a mode other than ``constant``: each axis in turn, as NumPy pads.

    Copy modes (edge, wrap, even reflect/symmetric) are gathers; the modes linear in ``x``
    (odd reflect/symmetric, linear_ramp, mean) apply NumPy's own pad of the identity matrix
    along the axis; maximum, minimum and median are reductions of the edge slices.
    """
    x = _t(x)
    if callable(mode) or mode not in (
        *_INDEX_MODES,
        *_LINEAR_MODES,
        *_STAT_MODES,
        "median",
        "empty",
    ):
        raise NotImplementedError(f"pad: mode={mode!r} is not supported on Tensors")
    allowed = {
        "reflect": {"reflect_type"},
        "symmetric": {"reflect_type"},
        "linear_ramp": {"end_values"},
        "mean": {"stat_length"},
        "median": {"stat_length"},
        "maximum": {"stat_length"},
        "minimum": {"stat_length"},
    }.get(mode, set())
    bad = set(kw) - allowed
    if bad:
        raise ValueError(f"pad: unsupported keyword arguments for mode {mode!r}: {sorted(bad)}")
    if mode == "empty":  # NOTE: NumPy leaves the pad undefined; zeros are one such value
        from .shape import pad as _pad

        return _pad(x, pad_width)
    widths = _pairs(pad_width, x.ndim, "pad_width")
    for ax, (lo, hi) in enumerate(widths):
        if lo or hi:
            x = _pad_axis(x, ax, int(lo), int(hi), mode, kw)
    return x if isinstance(x, Tensor) else Tensor(x)


def _pad_axis(x: Any, ax: int, lo: int, hi: int, mode: str, kw: dict[str, Any]) -> Any:
    n = x.shape[ax]
    if mode in _STAT_MODES or mode == "median":
        sl = _pairs(kw.get("stat_length"), x.ndim, "stat_length")[ax]
        return _pad_stat(x, ax, lo, hi, mode, sl)
    if mode in _INDEX_MODES and kw.get("reflect_type", "even") == "even":
        idx = np.pad(np.arange(n), (lo, hi), mode=mode)
        return getitem_(x, idx=(slice(None),) * ax + (idx,))
    opts = dict(kw)
    if mode == "linear_ramp":
        ends = _pairs(kw.get("end_values", 0), x.ndim, "end_values")[ax]
        opts = {"end_values": (0, 0)}
        const = np.pad(np.zeros(n), (lo, hi), mode=mode, end_values=ends)
    elif mode == "mean":
        sl = _pairs(kw.get("stat_length"), x.ndim, "stat_length")[ax]
        opts = {} if sl == (None, None) else {"stat_length": sl}
        const = None
    else:
        const = None
    m = np.pad(np.eye(n), ((lo, hi), (0, 0)), mode=mode, **opts)
    from .linalg import tensordot

    y = moveaxis(tensordot(m, x, axes=([1], [ax])), 0, ax)
    if const is not None:
        y = ew.add(y, const.reshape((-1,) + (1,) * (x.ndim - 1 - ax)))
    return y


def _pad_stat(x: Any, ax: int, lo: int, hi: int, mode: str, sl: tuple[Any, Any]) -> Any:
    n = x.shape[ax]
    parts = []
    for width, length, front in ((lo, sl[0], True), (hi, sl[1], False)):
        if not width:
            continue
        k = n if length is None else max(1, min(int(length), n))
        piece = getitem_(x, idx=(slice(None),) * ax + (slice(0, k) if front else slice(n - k, n),))
        if mode == "median":
            from .numpy_funcs import median

            s = median(piece, axis=ax, keepdims=True)
        else:
            s = _STAT_MODES[mode](piece, axis=ax, keepdims=True)
        shape = list(x.shape)
        shape[ax] = width
        parts.append((front, broadcast_to(s, tuple(shape))))
    seq = [p for f, p in parts if f] + [x] + [p for f, p in parts if not f]
    return concatenate(seq, axis=ax)


# ----- where= and initial= of the reductions ------------------------------------------------
def masked_reduce(name: str, x: Any, axis: Any, keepdims: bool, kw: dict[str, Any]) -> Tensor:
    """``np.<name>(x, axis, keepdims, where=..., initial=..., ddof=...)``: masked entries are
    left out (their gradient is 0) and ``initial`` takes part as a constant (or variable).

    Examples
    --------
    >>> import autodiffx as ad, numpy as np
    >>> np.sum(ad.tensor([1.0, 2.0, 4.0]), where=np.array([True, False, True]), initial=10.0)
    tensor(15.)
    """
    kw = dict(kw)
    where = kw.pop("where", True)
    initial = kw.pop("initial", np._NoValue)
    ddof = kw.pop("ddof", 0)
    bad = {k: v for k, v in kw.items() if v is not None and v is not np._NoValue}
    if bad:
        raise TypeError(f"{name}: unsupported arguments {sorted(bad)} on Tensors")
    x = _t(x)
    if isinstance(axis, list):
        axis = tuple(axis)
    mask = np.broadcast_to(
        np.asarray(where.data if isinstance(where, Tensor) else where, dtype=bool), x.shape
    )
    kd = bool(keepdims)
    if name in ("mean", "var", "std"):
        if initial is not np._NoValue:
            raise TypeError(f"{name}() got an unexpected keyword argument 'initial'")
        return _masked_moments(name, x, axis, kd, mask, ddof)
    neutral = {"sum": 0.0, "prod": 1.0, "max": -np.inf, "min": np.inf}[name]
    if name in ("max", "min") and initial is np._NoValue and not mask.all():
        raise ValueError(
            f"reduction operation {'maximum' if name == 'max' else 'minimum'!r} does not have "
            "an identity, so to use a where mask one has to specify 'initial'"
        )
    xm = ew.where(mask, x, neutral) if not mask.all() else x
    fn = {"sum": red.sum, "prod": red.prod, "max": red.amax, "min": red.amin}[name]
    out = fn(xm, axis=axis, keepdims=kd)
    if initial is np._NoValue:
        return out
    comb = {"sum": ew.add, "prod": ew.multiply, "max": ew.maximum, "min": ew.minimum}[name]
    return comb(out, initial)


def _masked_moments(name: str, x: Any, axis: Any, kd: bool, mask: np.ndarray, ddof: int):
    m = red.sum(ew.where(mask, x, 0.0), axis=axis, keepdims=True) / np.sum(
        mask, axis=axis, keepdims=True
    )
    n = np.sum(mask, axis=axis, keepdims=kd)
    if name == "mean":
        return m if kd else reshape(m, n.shape)
    d = ew.where(mask, x - m, 0.0)
    sq = (d * d.conj()).real if x.dtype.kind == "c" else d * d
    v = red.sum(sq, axis=axis, keepdims=kd) / (n - ddof)
    if name == "var":
        return v
    vmapped = STATE.mode & VMAP and batched(v)  # (batched: the masked form for each example)
    zero = v == 0 if vmapped else v.data == 0
    if vmapped or np.any(zero):  # as red.std: the subgradient 0 at zero spread
        return ew.where(zero, 0.0, ew.sqrt(ew.where(zero, 1.0, v)))
    return ew.sqrt(v)


# ----- interp --------------------------------------------------------------------------------
def interp(
    x: Any, xp: Any, fp: Any, left: Any = None, right: Any = None, period: Any = None
) -> Tensor:
    """One-dimensional piecewise-linear interpolation, as ``np.interp``; differentiable in
    ``x``, ``fp``, ``left`` and ``right``.

    At a knot ``x == xp[i]`` the derivative in ``x`` is the slope of the segment to its right
    (the last segment's at the last knot); outside ``[xp[0], xp[-1]]`` it is 0 and the value
    is ``left``/``right`` (default ``fp[0]``/``fp[-1]``). The knots ``xp`` are data: a
    ``xp`` that requires grad is refused, as is ``period`` (use ``x % period`` on sorted
    knots yourself).

    Examples
    --------
    >>> import autodiffx as ad
    >>> x = ad.tensor([0.5, 2.5], requires_grad=True)
    >>> y = ad.interp(x, [0.0, 1.0, 3.0], [0.0, 2.0, 3.0])
    >>> y
    tensor([1.  , 2.75], grad_fn=<where>)
    >>> y.sum().backward(); x.grad
    tensor([2. , 0.5])
    """
    if period is not None:
        raise NotImplementedError(
            "interp: period= is not supported on Tensors; reduce x modulo the period and "
            "extend xp, fp by one period yourself"
        )
    if isinstance(xp, Tensor) and (xp.requires_grad or xp._tan):
        raise TypeError(
            "interp: xp (the knots) requires grad, but the interpolant is differentiated in "
            "x, fp, left and right only; pass xp.detach()"
        )
    if STATE.mode & VMAP and batched(x, xp):
        return _interp_batched(_t(x), xp, _t(fp), left, right)
    knots = np.asarray(xp.data if isinstance(xp, Tensor) else xp)
    fp = _t(fp)
    if knots.ndim != 1 or fp.ndim != 1 or knots.shape != fp.shape or knots.size == 0:
        raise ValueError(
            f"interp: xp and fp must be 1-D of the same non-zero length, got shapes "
            f"{knots.shape} and {fp.shape}"
        )
    x = _t(x)
    xd = x.data if isinstance(x, Tensor) else np.asarray(x)
    if knots.size == 1:
        inner = broadcast_to(fp, xd.shape) if xd.shape else reshape(fp, ())
    else:
        i = np.clip(np.searchsorted(knots, xd, side="right") - 1, 0, knots.size - 2)
        x0, h = knots[i], knots[i + 1] - knots[i]
        f0, f1 = take(fp, i), take(fp, i + 1)
        inner = f0 + (x - x0) * ((f1 - f0) / h)
    lo = take(fp, 0) if left is None else left
    hi = take(fp, -1) if right is None else right
    return ew.where(xd < knots[0], lo, ew.where(xd > knots[-1], hi, inner))


def _interp_batched(x: Any, xp: Any, fp: Any, left: Any, right: Any) -> Tensor:
    """``interp`` inside ``ad.vmap`` with batched points or knots: the segment of each point
    found example by example (``np.searchsorted``), the rest batched ops."""
    xp = _t(xp)
    n = xp.shape[-1] if xp.ndim == 1 else 0
    if xp.ndim != 1 or fp.shape != xp.shape or n == 0:
        raise ValueError(
            f"interp: xp and fp must be 1-D of the same non-zero length, got shapes "
            f"{xp.shape} and {fp.shape}"
        )
    if n == 1:
        inner = broadcast_to(fp, x.shape) if x.ndim else reshape(fp, ())
    else:
        i = np.clip(np.searchsorted(xp, x, side="right") - 1, 0, n - 2)
        x0, x1, f0, f1 = take(xp, i), take(xp, i + 1), take(fp, i), take(fp, i + 1)
        inner = f0 + (x - x0) * ((f1 - f0) / (x1 - x0))
    lo = take(fp, 0) if left is None else left
    hi = take(fp, -1) if right is None else right
    return ew.where(x < take(xp, 0), lo, ew.where(x > take(xp, -1), hi, inner))


FUNCTION_MAP.update(
    {
        np.interp: interp,
        np.angle: angle,
        np.real_if_close: real_if_close,
        np.nanmedian: nanmedian,
        np.linspace: linspace,
        np.logspace: logspace,
        np.put_along_axis: put_along_axis,
    }
)
_register_ufunc_methods()
