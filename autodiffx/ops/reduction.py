"""Reductions and scans: sum, prod, amax/amin, logsumexp, cumsum, cumprod, and their composites."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._mode import STATE, VMAP, batched
from .._registry import FUNCTION_MAP, Meta, apply, defprim
from .._tensor import Tensor
from .._xp import broadcast_like, is_foreign, is_lazy
from .elementwise import sqrt, where
from .shape import neg_axis


def norm_axes(axis: Any, ndim: int) -> tuple[int, ...]:
    """Axes as a sorted tuple of non-negative ints (``None`` means all)."""
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, int | np.integer):
        axis = (axis,)
    out = []
    n = ndim if ndim > 0 else 1
    for a in axis:
        if not -n <= a < n:
            raise np.exceptions.AxisError(
                f"axis {a} is out of bounds for array of dimension {ndim}"
            )
        out.append(int(a) % n)
    return tuple(sorted(out))


def _neg(axis: Any, ndim: int) -> tuple[int, ...]:
    """The reduced axes of an ``ndim``-dimensional example, counted from the end."""
    return tuple(a - ndim for a in norm_axes(axis, ndim)) if ndim else ()


def _keep(g: Any, x: Any, axis: Any, keepdims: bool, nb: int = 0) -> Any:
    """Re-insert the reduced axes of ``g`` as size 1 (the engine broadcasts the rest).

    Counted from the end, so that ``nb`` leading batch axes of ``g`` stay in front.
    """
    if keepdims or x.ndim == 0 or (axis is None and not nb):
        return g
    return np.expand_dims(g, _neg(axis, x.ndim))


def _sum_kernel(x: Any, axis: Any = None, keepdims: bool = False) -> Any:
    if type(x) is np.ndarray and x.dtype.kind in "fc":
        return np.add.reduce(x, axis=axis, keepdims=keepdims)  # np.sum's Python layer: ~1 µs
    return np.sum(x, axis=axis, keepdims=keepdims)


def _sum_vjp(g: Any, x: Any, axis: Any = None, keepdims: bool = False, *, nb: int) -> Any:
    g = _keep(g, x, axis, keepdims, nb)
    if type(x) is np.ndarray or type(x) is Meta or nb or not is_lazy(x) or is_foreign(g):
        return (g,)
    # NOTE: a NumPy cotangent (the mean's 1/n) reaching Dask data: broadcast lazily, chunked
    # as the data, or the engine would broadcast it into a data-sized array on the client.
    return (broadcast_like(g, x),)


sum_ = defprim(
    "sum",
    _sum_kernel,
    linear=_sum_vjp,
    batch=lambda nb, x, axis=None, keepdims=False: sum_(
        x, axis=_neg(axis, x.ndim - nb), keepdims=keepdims
    ),
    partials=(" | broadcast {d}",),
    doc="Sum over ``axis`` (None: all).",
)


def _count(x: Any, axis: Any) -> int:
    shape = x.shape
    return int(np.prod([shape[a] for a in norm_axes(axis, len(shape))], dtype=np.int64))


def _prod_vjp(
    needs: Any, g: Any, out: Any, x: Any, axis: Any = None, keepdims: bool = False, *, nb: int
) -> tuple[Any]:
    return (_keep(g, x, axis, keepdims, nb) * _others_product(x, axis),)


def _prod_jvp(tans: Any, out: Any, x: Any, axis: Any = None, keepdims: bool = False) -> Any:
    return sum_(tans[0] * _others_product(x, axis), axis=_neg(axis, x.ndim), keepdims=keepdims)


def _others_product(x: Any, axis: Any) -> Any:
    """For each element, the product of the other elements of its reduction group.

    Exact with zeros: built from exclusive cumulative products from both ends.
    """
    axes = norm_axes(axis, x.ndim)
    if not axes:
        return np.ones_like(x)
    rest = [a for a in range(x.ndim) if a not in axes]
    perm = rest + list(axes)
    xt = np.transpose(x, perm)
    lead = xt.shape[: len(rest)]
    flat = np.reshape(xt, (*lead, -1))
    ones = np.ones_like(flat[..., :1])
    left = np.cumprod(np.concatenate([ones, flat[..., :-1]], axis=-1), axis=-1)
    right = np.flip(
        np.cumprod(np.concatenate([ones, np.flip(flat[..., 1:], axis=-1)], axis=-1), axis=-1),
        axis=-1,
    )
    others = np.reshape(left * right, xt.shape)
    return np.transpose(others, tuple(perm.index(a) for a in range(x.ndim)))


prod = defprim(
    "prod",
    lambda x, axis=None, keepdims=False: np.prod(x, axis=axis, keepdims=keepdims),
    vmap="reduce",
    vjp=_prod_vjp,
    jvp=_prod_jvp,
    example=(
        "x = ad.tensor([[1.0, 3.0], [2.0, 0.5]], requires_grad=True)\n"
        "ad.prod(x, axis=0)\n"
        "ad.prod(x, axis=0).sum().backward()\n"
        "x.grad"
    ),
    doc="Product over ``axis``; exact gradient also when elements are zero.",
)


def _extreme(name: str, fn: Any) -> Any:
    def weights(out: Any, x: Any, axis: Any, keepdims: bool) -> Any:
        # NOTE: ties split the gradient equally among the tied elements.
        m = _keep(out, x, axis, keepdims)
        hit = x == m
        return hit / np.sum(hit, axis=axis, keepdims=True)

    def vjp(
        needs: Any, g: Any, out: Any, x: Any, axis: Any = None, keepdims: bool = False, *, nb: int
    ) -> tuple[Any]:
        return (_keep(g, x, axis, keepdims, nb) * weights(out, x, axis, keepdims),)

    def jvp(tans: Any, out: Any, x: Any, axis: Any = None, keepdims: bool = False) -> Any:
        w = weights(out, x, axis, keepdims)
        return sum_(tans[0] * w, axis=_neg(axis, x.ndim), keepdims=keepdims)

    return defprim(
        name,
        lambda x, axis=None, keepdims=False: fn(x, axis=axis, keepdims=keepdims),
        vjp=vjp,
        jvp=jvp,
        save_out=True,
        vmap="reduce",
        doc=f"{name[1:].capitalize()}imum over ``axis``; ties split the gradient equally.",
        example=(
            "x = ad.tensor([[1.0, 3.0], [1.0, 0.5]], requires_grad=True)\n"
            f"ad.{name}(x, axis=0)\n"
            f"ad.{name}(x, axis=0).sum().backward()\n"
            "x.grad"
        ),
    )


amax = _extreme("amax", np.amax)
amin = _extreme("amin", np.amin)


def _lse_kernel(x: Any, axis: Any = None, keepdims: bool = False) -> Any:
    # NOTE: shift by the max for stability; an all -inf group gives -inf, not nan.
    m = np.amax(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    with np.errstate(divide="ignore"):
        r = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return r if keepdims else np.squeeze(r, axis=axis)


def _lse_vjp(
    needs: Any, g: Any, out: Any, x: Any, axis: Any = None, keepdims: bool = False, *, nb: int
) -> tuple[Any]:
    return (_keep(g, x, axis, keepdims, nb) * np.exp(x - _keep(out, x, axis, keepdims)),)


def _lse_jvp(tans: Any, out: Any, x: Any, axis: Any = None, keepdims: bool = False) -> Any:
    w = np.exp(x - _keep(out, x, axis, keepdims))
    return sum_(tans[0] * w, axis=_neg(axis, x.ndim), keepdims=keepdims)


logsumexp = defprim(
    "logsumexp",
    _lse_kernel,
    vmap="reduce",
    vjp=_lse_vjp,
    jvp=_lse_jvp,
    example=(
        "x = ad.tensor([[1.0, 3.0], [2.0, 0.5]], requires_grad=True)\n"
        "ad.logsumexp(x, axis=0)\n"
        "ad.logsumexp(x, axis=0).sum().backward()\n"
        "x.grad"
    ),
    save_out=True,
    doc="log(sum(exp(x))) over ``axis``, stable for large ``|x|``.",
)


def _cumsum_t(g: Any, x: Any, axis: int) -> tuple[Any]:
    axis = neg_axis(axis, x.ndim)
    return (np.flip(np.cumsum(np.flip(g, axis), axis), axis),)


_cumsum = defprim(
    "cumsum",
    lambda x, axis: np.cumsum(x, axis=axis),
    linear=_cumsum_t,
    batch=lambda nb, x, axis: _cumsum(x, axis=neg_axis(axis, x.ndim - nb)),
    doc="Cumulative sum along ``axis``.",
)


def _any_zero(x: Any) -> bool:
    """Whether ``x`` holds a 0: read as NumPy (under ad.compile, a guard on where x is 0, not
    on x), or for an array-API array in its own namespace (np.any of a Tensor)."""
    zero = x == 0
    if is_foreign(zero.data if isinstance(zero, Tensor) else zero):
        return bool(np.any(zero))
    return bool(np.any(np.asarray(zero)))


def _cumprod_vjp(needs: Any, g: Any, out: Any, x: Any, axis: int) -> tuple[Any]:
    # NOTE: d out_j / d x_i = out_j / x_i for j >= i; exact for nonzero x. Zeros fall back to
    # the exclusive-product form along the axis, computed by a masked division-free product.
    axis = neg_axis(axis, np.ndim(x))
    rev = np.flip(np.cumsum(np.flip(g * out, axis), axis), axis)
    if not _any_zero(x):
        return (rev / x,)
    return (_cumprod_vjp_exact(g, x, axis),)


def _cumprod_vjp_exact(g: Any, x: Any, axis: int) -> Any:
    xm = np.moveaxis(x, axis, -1)
    gm = np.moveaxis(g, axis, -1)
    n = xm.shape[-1]
    cols = []
    for i in range(n):
        # gradient for x_i: sum_{j>=i} g_j * prod_{k<=j, k!=i} x_k
        before = np.prod(xm[..., :i], axis=-1, keepdims=True)
        after = np.cumprod(xm[..., i + 1 :], axis=-1)
        ones = np.ones_like(xm[..., :1])
        tail = np.concatenate([ones, after], axis=-1)
        cols.append(np.sum(gm[..., i:] * tail, axis=-1, keepdims=True) * before)
    return np.moveaxis(np.concatenate(cols, axis=-1), -1, axis)


def _cumprod_jvp(tans: Any, out: Any, x: Any, axis: int) -> Any:
    t = tans[0]
    axis = neg_axis(axis, np.ndim(x))
    if not _any_zero(x):  # (as in the VJP)
        return out * np.cumsum(t / x, axis=axis)
    xm = np.moveaxis(x, axis, -1)
    tm = np.moveaxis(t, axis, -1)
    n = xm.shape[-1]
    cols = []
    for j in range(n):
        acc = None
        for i in range(j + 1):
            term = tm[..., i : i + 1] * np.prod(
                np.concatenate([xm[..., :i], xm[..., i + 1 : j + 1]], axis=-1),
                axis=-1,
                keepdims=True,
            )
            acc = term if acc is None else acc + term
        cols.append(acc)
    return np.moveaxis(np.concatenate(cols, axis=-1), -1, axis)


_cumprod = defprim(
    "cumprod",
    lambda x, axis: np.cumprod(x, axis=axis),
    vmap="flat",
    vjp=_cumprod_vjp,
    jvp=_cumprod_jvp,
    save_out=True,
    doc="Cumulative product along ``axis`` (exact gradient with zeros).",
)


def _nondiff_reduce(name: str, fn: Any) -> Any:
    return defprim(
        name,
        lambda x, axis=None, keepdims=False: fn(x, axis=axis, keepdims=keepdims),
        vmap="flat",
        doc=f"Indices of the {name[3:]}ima along ``axis`` (not differentiable).",
        example=f"ad.{name}(ad.tensor([[1.0, 3.0], [2.0, 0.5]]), axis=1)",
    )


argmax = _nondiff_reduce("argmax", np.argmax)
argmin = _nondiff_reduce("argmin", np.argmin)
argsort_ = defprim(
    "argsort",
    lambda x, axis=-1, kind=None, stable=None: np.argsort(x, axis=axis, kind=kind, stable=stable),
    vmap="flat",
    doc="Indices that sort along ``axis`` (not differentiable: an integer result).",
    example="ad.argsort(ad.tensor([3.0, 1.0, 2.0]))",
)


# ----- public wrappers and composites ------------------------------------------------------
def _no_out(name: str, out: Any, **kw: Any) -> None:
    if out is not None:
        raise TypeError(f"{name}: out= is not supported on Tensors")
    bad = {k: v for k, v in kw.items() if v is not None and v is not np._NoValue}
    if bad:
        raise TypeError(f"{name}: unsupported arguments {sorted(bad)}")


def sum(
    x: Any, axis: Any = None, dtype: Any = None, out: Any = None, keepdims: bool = False, **kw: Any
) -> Tensor:
    """Sum of elements over ``axis``.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.sum(ad.tensor([[1.0, 2.0], [3.0, 4.0]]), axis=0)
    tensor([4., 6.])
    """
    if out is not None or kw:
        if "where" in kw or "initial" in kw:
            return _masked("sum", x, axis, keepdims, dtype=dtype, out=out, **kw)
        _no_out("sum", out, **kw)
    if dtype is not None:
        x = astype(x, dtype)
    if axis is None and not keepdims:
        return apply(sum_, (x,), _ALL)  # the sum of a loss: no per-call parameter dict
    return sum_(x, axis=_axis_arg(axis), keepdims=bool(keepdims))


_ALL = {"axis": None, "keepdims": False}


def _axis_arg(axis: Any) -> Any:
    if isinstance(axis, list):
        return tuple(axis)
    return axis


def mean(
    x: Any, axis: Any = None, dtype: Any = None, out: Any = None, keepdims: bool = False, **kw: Any
) -> Tensor:
    """Arithmetic mean over ``axis``.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.mean(ad.tensor([1.0, 2.0, 6.0]))
    tensor(3.)
    """
    if kw and ("where" in kw or "initial" in kw):
        return _masked("mean", x, axis, keepdims, dtype=dtype, out=out, **kw)
    _no_out("mean", out, **kw)
    x = _as_float(x, dtype)
    axis = _axis_arg(axis)
    n = _count(x, axis)
    return sum_(x, axis=axis, keepdims=bool(keepdims)) / n


def _as_float(x: Any, dtype: Any = None) -> Any:
    if not isinstance(x, Tensor):
        x = Tensor(x)
    if dtype is not None:
        return astype(x, dtype)
    if x.dtype.kind not in "fc":
        return astype(x, np.float64)
    return x


def var(
    x: Any,
    axis: Any = None,
    dtype: Any = None,
    out: Any = None,
    ddof: int = 0,
    keepdims: bool = False,
    **kw: Any,
) -> Tensor:
    """Variance over ``axis`` (``ddof`` as NumPy).

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.var(ad.tensor([1.0, 2.0, 3.0, 4.0])), ad.var(ad.tensor([1.0, 2.0, 3.0, 4.0]), ddof=1)
    (tensor(1.25), tensor(1.66666667))
    """
    if kw and ("where" in kw or "initial" in kw):
        return _masked("var", x, axis, keepdims, dtype=dtype, out=out, ddof=ddof, **kw)
    _no_out("var", out, **kw)
    x = _as_float(x, dtype)
    axis = _axis_arg(axis)
    d = x - mean(x, axis=axis, keepdims=True)
    sq = (d * d.conj()).real if x.dtype.kind == "c" else d * d
    return sum_(sq, axis=axis, keepdims=bool(keepdims)) / (_count(x, axis) - ddof)


def std(x: Any, *args: Any, **kw: Any) -> Tensor:
    """Standard deviation: the square root of :func:`var`, with its arguments (``axis``,
    ``dtype``, ``out``, ``ddof``, ``keepdims``); its gradient at zero spread is 0 (as PyTorch's).

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.std(ad.tensor([1.0, 3.0]))
    tensor(1.)
    >>> ad.grad(ad.std)(ad.tensor([2.0, 2.0]))
    tensor([0., 0.])
    """
    v = var(x, *args, **kw)
    # NOTE: at zero spread (one element, or equal ones) sqrt's infinite derivative meets var's
    # zero one: nan. The masked form gives the subgradient 0 of the kink table (as norm at 0)
    # in every mode and order.
    vmapped = STATE.mode & VMAP and batched(v)  # (batched: the masked form for each example)
    zero = v == 0 if vmapped else v.data == 0
    if vmapped or np.any(zero):
        return where(zero, 0.0, sqrt(where(zero, 1.0, v)))
    return sqrt(v)


def _max_min(prim: Any, name: str, x: Any, axis: Any, out: Any, keepdims: Any, kw: dict) -> Any:
    """``max``/``min`` as NumPy's: ``amax``/``amin`` with a list axis and no ``out``."""
    _no_out(name, out, **kw)
    return prim(x, axis=_axis_arg(axis), keepdims=bool(keepdims))


def _cumulative(prim: Any, name: str, x: Any, axis: Any, dtype: Any, out: Any) -> Tensor:
    """``cumsum``/``cumprod`` as NumPy's: an optional cast first; axis None flattens."""
    _no_out(name, out)
    if dtype is not None:
        x = astype(x, dtype)
    if axis is None:
        return prim(ravel(x), axis=0)
    return prim(x, axis=int(axis))


def max(x: Any, axis: Any = None, out: Any = None, keepdims: bool = False, **kw: Any) -> Tensor:
    """Maximum over ``axis`` (``amax``); ties split the gradient equally.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.max(ad.tensor([1.0, 5.0, 2.0]))
    tensor(5.)
    """
    if kw and ("where" in kw or "initial" in kw):
        return _masked("max", x, axis, keepdims, out=out, **kw)
    return _max_min(amax, "max", x, axis, out, keepdims, kw)


def min(x: Any, axis: Any = None, out: Any = None, keepdims: bool = False, **kw: Any) -> Tensor:
    """Minimum over ``axis`` (``amin``); ties split the gradient equally.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.min(ad.tensor([1.0, 5.0, 2.0]))
    tensor(1.)
    >>> ad.grad(ad.min)(ad.tensor([1.0, 5.0, 1.0]))  # a tie: half each
    tensor([0.5, 0. , 0.5])
    """
    if kw and ("where" in kw or "initial" in kw):
        return _masked("min", x, axis, keepdims, out=out, **kw)
    return _max_min(amin, "min", x, axis, out, keepdims, kw)


def cumsum(x: Any, axis: Any = None, dtype: Any = None, out: Any = None) -> Tensor:
    """Cumulative sum along ``axis`` (None: of the flattened array).

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.cumsum(ad.tensor([1.0, 2.0, 3.0]))
    tensor([1., 3., 6.])
    """
    return _cumulative(_cumsum, "cumsum", x, axis, dtype, out)


def cumprod(x: Any, axis: Any = None, dtype: Any = None, out: Any = None) -> Tensor:
    """Cumulative product along ``axis`` (None: of the flattened array).

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.cumprod(ad.tensor([1.0, 2.0, 3.0]))
    tensor([1., 2., 6.])
    """
    return _cumulative(_cumprod, "cumprod", x, axis, dtype, out)


def _reduce_at(ufunc: np.ufunc) -> Any:
    target = {np.add: sum_, np.multiply: prod, np.maximum: amax, np.minimum: amin}[ufunc]

    def reduce(x: Any, axis: Any = 0, dtype: Any = None, out: Any = None, keepdims: bool = False):
        _no_out(f"numpy.{ufunc.__name__}.reduce", out)
        if dtype is not None:
            x = astype(x, dtype)
        return target(x, axis=_axis_arg(axis), keepdims=bool(keepdims))

    return reduce


def _prod_np(
    x: Any, axis: Any = None, dtype: Any = None, out: Any = None, keepdims: bool = False, **kw: Any
) -> Tensor:
    if "where" in kw or "initial" in kw:
        return _masked("prod", x, axis, keepdims, dtype=dtype, out=out, **kw)
    _no_out("prod", out, **kw)
    if dtype is not None:
        x = astype(x, dtype)
    return prod(x, axis=_axis_arg(axis), keepdims=bool(keepdims))


def _masked(name: str, x: Any, axis: Any, keepdims: bool, **kw: Any) -> Tensor:
    """``where=``/``initial=`` given: the masked reduction (autodiffx/ops/numpy_more.py)."""
    from .numpy_more import masked_reduce

    _no_out(name, kw.pop("out", None))
    dtype = kw.pop("dtype", None)
    if dtype is not None:
        x = astype(x, dtype)
    return masked_reduce(name, x, axis, keepdims, kw)


UFUNC_REDUCE = {
    (np.add, "reduce"): _reduce_at(np.add),
    (np.multiply, "reduce"): _reduce_at(np.multiply),
    (np.maximum, "reduce"): _reduce_at(np.maximum),
    (np.minimum, "reduce"): _reduce_at(np.minimum),
    (np.add, "accumulate"): lambda x, axis=0, **kw: cumsum(x, axis=axis, **kw),
    (np.multiply, "accumulate"): lambda x, axis=0, **kw: cumprod(x, axis=axis, **kw),
}

FUNCTION_MAP.update(
    {
        np.sum: sum,
        np.mean: mean,
        np.var: var,
        np.std: std,
        np.max: max,
        np.amax: max,
        np.min: min,
        np.amin: min,
        np.prod: _prod_np,
        np.cumsum: cumsum,
        np.cumprod: cumprod,
        np.argmax: lambda x, axis=None, out=None, keepdims=False: argmax(
            x, axis=axis, keepdims=keepdims
        ),
        np.argmin: lambda x, axis=None, out=None, keepdims=False: argmin(
            x, axis=axis, keepdims=keepdims
        ),
    }
)

from .shape import astype, ravel  # noqa: E402
