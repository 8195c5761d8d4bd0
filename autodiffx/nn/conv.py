"""Convolution and pooling for ``ad.nn.functional``: three bilinear primitives and compositions.

``conv`` (PyTorch's cross-correlation), ``conv_transpose`` (its transpose in the input, the
gradient of ``conv`` with respect to its input) and ``conv_weight_grad`` (its transpose in
the weight) are the three partial derivatives of one trilinear form
``B(x, w, g) = <g, conv(x, w)>``. The rules of each are the other two, so every derivative
of every order, in both modes, is again one of the three. A plain (N, C, *spatial) operand
is copied into a batch-last im2col matrix (one strided copy per kernel position) and
contracted in one BLAS product; grouped and batched operands take the windows with
``numpy.lib.stride_tricks.sliding_window_view`` and ``einsum``. The only Python loops are
over the kernel's positions (9 for 3x3), never over pixels. Leading axes beyond (N, C)
broadcast, which is what the batched (vectorized-Jacobian) rules feed them. Average pooling
is a ``conv``; max pooling is in ``pooling.py``.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .._registry import defprim
from .._tensor import Tensor

_SP = "hwd"  # output spatial subscripts of the einsum forms (up to 3 spatial axes)
_KS = "ijk"  # kernel spatial subscripts


def _padded(x: Any, padding: Sequence[tuple[int, int]], value: float = 0.0) -> Any:
    """``x`` with ``value`` added around its last axes (``np.pad``'s result, without its cost)."""
    if not any(lo or hi for lo, hi in padding):
        return x
    nd = len(padding)
    shape = x.shape[:-nd] + tuple(n + lo + hi for n, (lo, hi) in zip(x.shape[-nd:], padding))
    out = np.full(shape, value, dtype=x.dtype)
    out[(Ellipsis, *(slice(lo, lo + n) for n, (lo, _) in zip(x.shape[-nd:], padding)))] = x
    return out


def _windows(xp: Any, k: Sequence[int], stride: Sequence[int], dilation: Sequence[int]) -> Any:
    """View (..., *out_spatial, *k) of the dilated, strided windows of ``xp``."""
    nd = len(k)
    span = tuple(d * (n - 1) + 1 for n, d in zip(k, dilation, strict=True))
    win = sliding_window_view(xp, span, axis=tuple(range(xp.ndim - nd, xp.ndim)))
    steps = tuple(slice(None, None, s) for s in stride) + tuple(
        slice(None, None, d) for d in dilation
    )
    return win[(Ellipsis, *steps)]


def _subs(nd: int) -> tuple[str, str]:
    return _SP[:nd], _KS[:nd]


def _plain(a: Any, nd: int) -> bool:
    return a.ndim == nd + 2


def _batch_last(x: Any, padding: Sequence[tuple[int, int]]) -> Any:
    """A plain (N, C, *s) input zero-padded and laid out as (C, *padded s, N), contiguous."""
    sp = x.shape[2:]
    full = tuple(n + lo + hi for n, (lo, hi) in zip(sp, padding, strict=True))
    make = np.zeros if any(lo or hi for lo, hi in padding) else np.empty
    buf = make((x.shape[1], *full, x.shape[0]), dtype=x.dtype)
    inner = tuple(slice(lo, lo + n) for n, (lo, _) in zip(sp, padding, strict=True))
    buf[(slice(None), *inner, slice(None))] = _batch_to_end(x)
    return buf


def _out_spatial(full: Any, k: Any, stride: Any, dilation: Any) -> tuple[int, ...]:
    return tuple(
        (n - d * (kk - 1) - 1) // s + 1
        for n, kk, s, d in zip(full, k, stride, dilation, strict=True)
    )


@functools.lru_cache(maxsize=256)
def _window_slices(k: Any, stride: Any, dilation: Any, osp: Any) -> tuple[Any, ...]:
    """Per kernel position (row-major), the position and the slices of the input it meets."""
    axes = [
        [slice(p * d, p * d + s * (m - 1) + 1, s) for p in range(n)]
        for n, s, d, m in zip(k, stride, dilation, osp, strict=True)
    ]
    return tuple(
        zip(itertools.product(*(range(n) for n in k)), itertools.product(*axes), strict=True)
    )


def _batch_to_end(a: Any) -> Any:
    return a.transpose((*range(1, a.ndim), 0))


def _batch_to_front(a: Any) -> Any:
    return a.transpose((a.ndim - 1, *range(a.ndim - 1)))


# NOTE: with fewer output positions per example than this (small images), the columns put
# the batch axis last, (C * prod(k), prod(out) * N): each kernel position then copies runs of
# out_w * N contiguous numbers instead of out_w, and one product covers the batch (the
# digits CNN's 8x8 and 4x4 convolutions: 1.3-1.4x faster). With more, the per-example
# columns copy long enough rows and per-example products are faster (24x24: 1.5x; 32x32
# with 64 channels: 1.3x); 16x16 is even.
_BATCH_LAST_BELOW = 256


def _batch_last_pays(osp: Any) -> bool:
    return math.prod(osp) < _BATCH_LAST_BELOW


def _cols_per_example(x: Any, k: Any, stride: Any, padding: Any, dilation: Any) -> Any:
    """im2col of a plain (N, C, *s) input: (N, C * prod(k), prod(out)), contiguous."""
    nd = len(k)
    win = _windows(_padded(x, padding), k, stride, dilation)  # (N, C, *o, *k)
    cols = np.ascontiguousarray(win.transpose(0, 1, *range(nd + 2, 2 * nd + 2), *range(2, nd + 2)))
    return cols.reshape(x.shape[0], -1, math.prod(win.shape[2 : nd + 2])), win.shape[2 : nd + 2]


def _cols(x: Any, k: Any, stride: Any, padding: Any, dilation: Any) -> Any:
    """im2col of a plain (N, C, *s) input, batch last: (C * prod(k), prod(out) * N)."""
    buf = _batch_last(x, padding)
    osp = _out_spatial(buf.shape[1:-1], k, stride, dilation)
    cols = np.empty((buf.shape[0], *k, *osp, buf.shape[-1]), dtype=buf.dtype)
    for pos, sl in _window_slices(tuple(k), stride, dilation, osp):
        cols[(slice(None), *pos)] = buf[(slice(None), *sl)]
    return cols.reshape(buf.shape[0] * math.prod(k), -1), osp


def _cols_of_g(g: Any) -> Any:
    """A plain (N, O, *out) cotangent as (O, prod(out) * N) (a view when it is batch-last)."""
    return _batch_to_end(g).reshape(g.shape[1], -1)


def _conv_kernel(x: Any, w: Any, stride: Any, padding: Any, dilation: Any, groups: int) -> Any:
    nd = len(stride)
    k = w.shape[-nd:]
    if groups == 1 and _plain(x, nd) and _plain(w, nd):
        return _plain_conv(x, w, stride, padding, dilation)
    win = _windows(_padded(x, padding), k, stride, dilation)  # (*L, N, C, *o, *k)
    o, kk = _subs(nd)
    win = win.reshape((*win.shape[: -2 * nd - 1], groups, -1, *win.shape[-2 * nd :]))
    ww = w.reshape((*w.shape[: -nd - 2], groups, -1, *w.shape[-nd - 1 :]))
    out = np.einsum(f"...ngc{o}{kk},...gfc{kk}->...ngf{o}", win, ww, optimize=True)
    return out.reshape((*out.shape[: -nd - 2], -1, *out.shape[-nd:]))


def _plain_conv(x: Any, w: Any, stride: Any, padding: Any, dilation: Any) -> Any:
    nd = len(stride)
    k, w2 = w.shape[-nd:], w.reshape(w.shape[0], -1)
    full = tuple(n + lo + hi for n, (lo, hi) in zip(x.shape[2:], padding, strict=True))
    if _batch_last_pays(_out_spatial(full, k, stride, dilation)):
        # one (O, CK) @ (CK, L N) product, returned as an (N, O, *out) view of its (O, *out, N)
        # memory, a layout NumPy's ufuncs downstream keep
        cols, osp = _cols(x, k, stride, padding, dilation)
        return _batch_to_front((w2 @ cols).reshape(w.shape[0], *osp, x.shape[0]))
    # one (O, CK) @ (CK, L) product per example (a batched matmul): (N, O, L) directly
    cols, osp = _cols_per_example(x, k, stride, padding, dilation)
    return (w2 @ cols).reshape(x.shape[0], w.shape[0], *osp)


def _col2im_batch_last(g: Any, w: Any, full: Any, crop: Any, stride: Any, dilation: Any) -> Any:
    """The strided transpose in the batch-last layout of ``_cols``: (C, *full, N)."""
    nd = len(stride)
    k, osp, c = w.shape[-nd:], g.shape[-nd:], w.shape[1]
    cols = (w.reshape(w.shape[0], -1).T @ _cols_of_g(g)).reshape(c, *k, *osp, g.shape[0])
    buf = np.zeros((c, *full, g.shape[0]), dtype=cols.dtype)
    for pos, sl in _window_slices(tuple(k), stride, dilation, tuple(osp)):
        buf[(slice(None), *sl)] += cols[(slice(None), *pos)]
    return _batch_to_front(buf[(slice(None), *crop)])


def _conv_transpose_kernel(
    g: Any, w: Any, in_shape: Any, stride: Any, padding: Any, dilation: Any, groups: int
) -> Any:
    nd = len(stride)
    k, osp = w.shape[-nd:], g.shape[-nd:]
    edges = [(d * (n - 1) - lo, d * (n - 1) - hi) for n, d, (lo, hi) in zip(k, dilation, padding)]
    if (
        groups == 1
        and _plain(g, nd)
        and _plain(w, nd)
        and set(stride) == {1}
        and min(min(edges)) >= 0
    ):
        # NOTE: with stride 1 the transpose is the full correlation with the flipped kernel,
        # one forward convolution (im2col and one product) instead of a scatter per position.
        wt = np.flip(w, tuple(range(2, nd + 2))).swapaxes(0, 1)
        return _conv_kernel(g, wt, stride, tuple(edges), dilation, 1)
    full = tuple(n + lo + hi for n, (lo, hi) in zip(in_shape, padding, strict=True))
    crop = tuple(slice(lo, lo + n) for n, (lo, _) in zip(in_shape, padding, strict=True))
    if groups == 1 and _plain(g, nd) and _plain(w, nd):
        if _batch_last_pays(osp):
            return _col2im_batch_last(g, w, full, crop, stride, dilation)
        n, c = g.shape[0], w.shape[1]
        w2 = w.reshape(w.shape[0], -1)
        cols = (w2.T @ g.reshape(n, w.shape[0], -1)).reshape(n, c, *k, *osp)
        cols = np.moveaxis(cols, tuple(range(2, nd + 2)), tuple(range(-nd, 0)))  # (N, C, *o, *k)
    else:
        o, kk = _subs(nd)
        gg = g.reshape((*g.shape[: -nd - 1], groups, -1, *osp))
        ww = w.reshape((*w.shape[: -nd - 2], groups, -1, *w.shape[-nd - 1 :]))
        cols = np.einsum(f"...ngf{o},...gfc{kk}->...ngc{o}{kk}", gg, ww, optimize=True)
        cols = cols.reshape((*cols.shape[: -2 * nd - 2], -1, *cols.shape[-2 * nd :]))
    xp = np.zeros(cols.shape[: -2 * nd] + full, dtype=cols.dtype)
    # NOTE: col2im as one strided add per kernel position (9 for 3x3), never per pixel.
    for pos, sl in _window_slices(tuple(k), stride, dilation, tuple(osp)):
        xp[(Ellipsis, *sl)] += cols[(Ellipsis, *pos)]
    return np.ascontiguousarray(xp[(Ellipsis, *crop)])


def _conv_weight_grad_kernel(
    x: Any, g: Any, kernel: Any, stride: Any, padding: Any, dilation: Any, groups: int
) -> Any:
    nd = len(stride)
    if groups == 1 and _plain(x, nd) and _plain(g, nd) and _batch_last_pays(g.shape[-nd:]):
        cols, _ = _cols(x, kernel, stride, padding, dilation)  # (CK, L N)
        return (_cols_of_g(g) @ cols.T).reshape(g.shape[1], x.shape[1], *kernel)
    if groups == 1 and _plain(x, nd) and _plain(g, nd):
        cols, _ = _cols_per_example(x, kernel, stride, padding, dilation)  # (N, CK, L)
        gw = (g.reshape(g.shape[0], g.shape[1], -1) @ cols.transpose(0, 2, 1)).sum(axis=0)
        return gw.reshape(g.shape[1], x.shape[1], *kernel)
    win = _windows(_padded(x, padding), kernel, stride, dilation)  # (*L, N, C, *o, *k)
    o, kk = _subs(nd)
    win = win.reshape((*win.shape[: -2 * nd - 1], groups, -1, *win.shape[-2 * nd :]))
    gg = g.reshape((*g.shape[: -nd - 1], groups, -1, *g.shape[-nd:]))
    out = np.einsum(f"...ngc{o}{kk},...ngf{o}->...gfc{kk}", win, gg, optimize=True)
    return out.reshape((*out.shape[: -nd - 3], -1, *out.shape[-nd - 1 :]))


def _geometry(params: dict[str, Any]) -> dict[str, Any]:
    return {k: params[k] for k in ("stride", "padding", "dilation", "groups")}


def _in_shape(x: Any, nd: int) -> tuple[int, ...]:
    return tuple(x.shape[-nd:])


_conv = defprim(
    "conv",
    _conv_kernel,
    numpy_only="the array API has no convolution (the kernel uses NumPy's stride tricks)",
    bilinear=(
        lambda g, x, w, **p: _conv_transpose.call(
            g, w, in_shape=_in_shape(x, len(p["stride"])), **p
        ),
        lambda g, x, w, **p: _conv_weight_grad.call(
            x, g, kernel=_in_shape(w, len(p["stride"])), **p
        ),
    ),
    broadcasting=True,  # leading (batch) axes broadcast: batched tangents are padded
    export=False,
    doc=(
        "N-d cross-correlation (PyTorch's convolution) of x (..., N, C, *spatial) with weight "
        "(O, C / groups, *kernel); padding is a (low, high) pair per spatial axis."
    ),
    example=(
        "from autodiffx.nn.conv import _conv\n"
        "x = ad.tensor(np.arange(5.0).reshape(1, 1, 5), requires_grad=True)\n"
        "w = ad.tensor([[[1.0, -1.0]]])\n"
        "_conv(x, w, stride=(1,), padding=((0, 0),), dilation=(1,), groups=1)"
    ),
)

_conv_transpose = defprim(
    "conv_transpose",
    _conv_transpose_kernel,
    numpy_only="the array API has no convolution (the kernel uses NumPy's stride tricks)",
    bilinear=(
        lambda h, g, w, in_shape, **p: _conv.call(h, w, **p),
        lambda h, g, w, in_shape, **p: _conv_weight_grad.call(
            h, g, kernel=_in_shape(w, len(p["stride"])), **p
        ),
    ),
    broadcasting=True,
    export=False,
    doc=(
        "Transpose of ``conv`` in its input (the input's gradient): g (..., N, O, *out) and "
        "weight (O, C / groups, *kernel) to (..., N, C, *in_shape)."
    ),
    example=(
        "from autodiffx.nn.conv import _conv_transpose\n"
        "g = ad.tensor(np.ones((1, 1, 4)))\n"
        "w = ad.tensor([[[1.0, -1.0]]], requires_grad=True)\n"
        "_conv_transpose(g, w, in_shape=(5,), stride=(1,), padding=((0, 0),), dilation=(1,), "
        "groups=1)"
    ),
)

_conv_weight_grad = defprim(
    "conv_weight_grad",
    _conv_weight_grad_kernel,
    numpy_only="the array API has no convolution (the kernel uses NumPy's stride tricks)",
    bilinear=(
        lambda k, x, g, kernel, **p: _conv_transpose.call(
            g, k, in_shape=_in_shape(x, len(p["stride"])), **p
        ),
        lambda k, x, g, kernel, **p: _conv.call(x, k, **p),
    ),
    broadcasting=True,
    export=False,
    doc=(
        "Transpose of ``conv`` in its weight (the weight's gradient): x (..., N, C, *in) and "
        "g (..., N, O, *out) to (..., O, C / groups, *kernel), summed over N."
    ),
    example=(
        "from autodiffx.nn.conv import _conv_weight_grad\n"
        "x = ad.tensor(np.arange(5.0).reshape(1, 1, 5))\n"
        "g = ad.tensor(np.ones((1, 1, 4)), requires_grad=True)\n"
        "_conv_weight_grad(x, g, kernel=(2,), stride=(1,), padding=((0, 0),), dilation=(1,), "
        "groups=1)"
    ),
)


# ----- argument checks (PyTorch's forms) ---------------------------------------------------
def _tuple(v: Any, nd: int, what: str, name: str, low: int) -> tuple[int, ...]:
    t = tuple(v) if isinstance(v, tuple | list) else (v,) * nd
    if len(t) != nd or not all(isinstance(i, int | np.integer) and i >= low for i in t):
        raise ValueError(
            f"{name}: {what} must be an int >= {low} or a tuple of {nd} of them, got {v!r}"
        )
    return tuple(int(i) for i in t)


def _padding(
    padding: Any, nd: int, k: Sequence[int], dil: Sequence[int], stride: Sequence[int], name: str
) -> tuple[tuple[int, int], ...]:
    """PyTorch's padding (int, tuple, 'valid' or 'same') as a (low, high) pair per axis."""
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0),) * nd
        if padding != "same":
            raise ValueError(f"{name}: padding must be 'same', 'valid', an int or a tuple")
        if any(s != 1 for s in stride):
            raise ValueError(f"{name}: padding='same' is not supported for strided convolutions")
        # NOTE: PyTorch's split of an odd total: the extra zero goes to the high side.
        totals = [d * (n - 1) for n, d in zip(k, dil, strict=True)]
        return tuple((t // 2, t - t // 2) for t in totals)
    return tuple((p, p) for p in _tuple(padding, nd, "padding", name, 0))


def _shape_of(v: Any) -> tuple[int, ...]:
    return v.shape if isinstance(v, Tensor | np.ndarray) else np.shape(v)


def _as_tensor(x: Any) -> Tensor:
    return x if isinstance(x, Tensor) else Tensor(np.asarray(x))


def _check_input(x: Tensor, nd: int, name: str) -> bool:
    """Whether ``x`` is unbatched (C, *spatial); raises unless it is that or (N, C, *spatial)."""
    if x.ndim not in (nd + 1, nd + 2):
        raise ValueError(
            f"{name}: expected a {nd + 1}-D (unbatched) or {nd + 2}-D (batched) input, "
            f"got shape {x.shape}"
        )
    if x.dtype.kind not in "fc":
        raise TypeError(f"{name}: input must be floating point, got {x.dtype} (use .astype)")
    return x.ndim == nd + 1


def _out_sizes(sizes: Any, k: Any, stride: Any, pad: Any, dil: Any, name: str) -> None:
    for n, kk, _s, (lo, hi), d in zip(sizes, k, stride, pad, dil, strict=True):
        if n + lo + hi < d * (kk - 1) + 1:
            raise ValueError(
                f"{name}: padded input size {n + lo + hi} is smaller than the (dilated) "
                f"kernel size {d * (kk - 1) + 1}; pass a larger input or more padding"
            )


def _convnd(
    nd: int, x: Any, weight: Any, bias: Any, stride: Any, padding: Any, dilation: Any, groups: Any
) -> Tensor:
    name = f"conv{nd}d"
    x = _as_tensor(x)
    unbatched = _check_input(x, nd, name)
    ws = _shape_of(weight)
    if len(ws) != nd + 2:
        raise ValueError(f"{name}: weight must be {nd + 2}-D (out, in / groups, *kernel), got {ws}")
    if not isinstance(groups, int | np.integer) or groups < 1 or ws[0] % groups:
        raise ValueError(f"{name}: groups={groups!r} must be a positive divisor of {ws[0]} outputs")
    c = x.shape[-nd - 1]
    if c != ws[1] * groups:
        raise ValueError(
            f"{name}: input has {c} channels (shape {x.shape}) but weight {ws} with "
            f"groups={groups} expects {ws[1] * groups}"
        )
    k = ws[2:]
    st = _tuple(stride, nd, "stride", name, 1)
    dil = _tuple(dilation, nd, "dilation", name, 1)
    pad = _padding(padding, nd, k, dil, st, name)
    _out_sizes(x.shape[-nd:], k, st, pad, dil, name)
    if bias is not None and _shape_of(bias) != ws[:1]:
        raise ValueError(f"{name}: bias must have shape ({ws[0]},), got {_shape_of(bias)}")
    out = _conv(
        x[None] if unbatched else x,
        weight,
        stride=st,
        padding=pad,
        dilation=dil,
        groups=int(groups),
    )
    if bias is not None:
        out = out + _as_tensor(bias).reshape((-1,) + (1,) * nd)
    return out[0] if unbatched else out


def conv1d(
    input: Any,
    weight: Any,
    bias: Any = None,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
) -> Tensor:
    """1-D convolution (cross-correlation) as PyTorch's ``F.conv1d``.

    Parameters
    ----------
    input : Tensor or array_like
        (N, C, L) or unbatched (C, L), floating point.
    weight : Tensor or array_like
        (O, C / groups, K).
    bias : Tensor or array_like, optional
        (O,).
    stride, dilation : int or tuple of 1 int
        At least 1.
    padding : int, tuple, 'valid' or 'same'
        Zeros on both sides; ``'same'`` (stride 1 only) keeps the length, the odd zero on the
        right as PyTorch.
    groups : int
        Split the channels into ``groups`` independent convolutions.

    Returns
    -------
    Tensor
        (N, O, L_out) with ``L_out = (L + 2 padding - dilation (K - 1) - 1) // stride + 1``.

    Examples
    --------
    >>> import autodiffx as ad
    >>> import autodiffx.nn.functional as F
    >>> x = ad.tensor([[[0.0, 1.0, 2.0, 3.0, 4.0]]], requires_grad=True)
    >>> F.conv1d(x, ad.tensor([[[1.0, -1.0]]]), padding=1)
    tensor([[[ 0., -1., -1., -1., -1.,  4.]]], grad_fn=<conv>)
    >>> F.conv1d(x, ad.tensor([[[1.0, -1.0]]])).sum().backward()
    >>> x.grad
    tensor([[[ 1.,  0.,  0.,  0., -1.]]])
    """
    return _convnd(1, input, weight, bias, stride, padding, dilation, groups)


def conv2d(
    input: Any,
    weight: Any,
    bias: Any = None,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
) -> Tensor:
    """2-D convolution (cross-correlation) as PyTorch's ``F.conv2d``.

    One ``conv`` node (plus the bias): the windows are a strided view of the (padded) input
    contracted with the weight in one BLAS product; the rules are the transposed
    convolutions, so gradients of every order and forward mode work.

    Parameters
    ----------
    input : Tensor or array_like
        (N, C, H, W) or unbatched (C, H, W), floating point.
    weight : Tensor or array_like
        (O, C / groups, KH, KW).
    bias : Tensor or array_like, optional
        (O,).
    stride, dilation : int or tuple of 2 ints
        At least 1.
    padding : int, tuple of 2 ints, 'valid' or 'same'
        Zeros on both sides of each axis; ``'same'`` (stride 1 only) keeps the size.
    groups : int
        Split the channels into ``groups`` independent convolutions.

    Returns
    -------
    Tensor
        (N, O, H_out, W_out), each size ``(n + 2 padding - dilation (k - 1) - 1) // stride + 1``.

    Examples
    --------
    >>> import numpy as np
    >>> import autodiffx as ad
    >>> import autodiffx.nn.functional as F
    >>> x = ad.tensor(np.arange(16.0).reshape(1, 1, 4, 4), requires_grad=True)
    >>> w = ad.ones((2, 1, 2, 2))
    >>> y = F.conv2d(x, w, bias=ad.tensor([0.0, 100.0]), stride=2)
    >>> y
    tensor([[[[ 10.,  18.],
              [ 42.,  50.]],
    <BLANKLINE>
             [[110., 118.],
              [142., 150.]]]], grad_fn=<add>)
    >>> y.sum().backward()
    >>> x.grad[0, 0]
    tensor([[2., 2., 2., 2.],
            [2., 2., 2., 2.],
            [2., 2., 2., 2.],
            [2., 2., 2., 2.]])
    """
    return _convnd(2, input, weight, bias, stride, padding, dilation, groups)


# ----- pooling: compositions (indexing for max, a constant-weight conv for the average) -----
def _pool_args(
    x: Any, kernel_size: Any, stride: Any, padding: Any, dilation: Any, name: str
) -> tuple[Tensor, tuple[int, ...], tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    x = _as_tensor(x)
    if x.ndim not in (3, 4):
        raise ValueError(
            f"{name}: expected a 3-D (C, H, W) or 4-D (N, C, H, W) input, got {x.shape}"
        )
    if x.dtype.kind != "f":
        raise TypeError(f"{name}: input must be real floating point, got {x.dtype}")
    k = _tuple(kernel_size, 2, "kernel_size", name, 1)
    st = k if stride is None else _tuple(stride, 2, "stride", name, 1)
    dil = _tuple(dilation, 2, "dilation", name, 1)
    pad = _tuple(padding, 2, "padding", name, 0)
    for p, kk, d in zip(pad, k, dil, strict=True):
        if p > (d * (kk - 1) + 1) // 2:
            raise ValueError(
                f"{name}: padding {pad} must be at most half of the (dilated) kernel size {k}"
            )
    _out_sizes(x.shape[-2:], k, st, [(p, p) for p in pad], dil, name)
    return x, k, st, pad, dil


def _no_ceil(ceil_mode: bool, name: str) -> None:
    if ceil_mode:
        raise NotImplementedError(
            f"{name}: ceil_mode=True is not supported; pad the input so that the windows fit"
        )


def _divided(sums: Tensor, x: Tensor, k: Any, geo: Any, include_pad: bool, divisor: Any) -> Any:
    """Window sums divided as ``avg_pool2d``'s options say."""
    if divisor is not None:
        if not isinstance(divisor, int | np.integer) or divisor == 0:
            raise ValueError(f"avg_pool2d: divisor_override must be a nonzero int, got {divisor!r}")
        return sums / divisor
    if include_pad or not any(lo for lo, _ in geo["padding"]):
        return sums / (k[0] * k[1])
    ones = np.ones((1, 1, *k), dtype=x.dtype)
    counts = _conv_kernel(np.ones((1, 1, *x.shape[-2:])), ones, **geo)
    return sums / counts.astype(x.dtype)


def avg_pool2d(
    input: Any,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> Tensor:
    """2-D average pooling as PyTorch's ``F.avg_pool2d`` (zero padding).

    A convolution of every channel with a constant all-ones kernel (one ``conv`` node),
    divided by the window size, by the number of input elements in the window
    (``count_include_pad=False``) or by ``divisor_override``.

    Parameters
    ----------
    input : Tensor or array_like
        (N, C, H, W) or (C, H, W), real floating point.
    kernel_size : int or tuple of 2 ints
    stride : int or tuple of 2 ints, optional
        Default ``kernel_size``.
    padding : int or tuple of 2 ints
        At most half the kernel size.
    ceil_mode : bool
        Only False (True raises ``NotImplementedError``).
    count_include_pad : bool
        Whether the padding zeros count in the divisor (default True, as PyTorch).
    divisor_override : int, optional
        Divide every window's sum by this instead.

    Examples
    --------
    >>> import autodiffx as ad
    >>> import autodiffx.nn.functional as F
    >>> x = ad.tensor([[[[1.0, 2.0, 5.0], [3.0, 4.0, 6.0]]]], requires_grad=True)
    >>> F.avg_pool2d(x, 2, stride=1)
    tensor([[[[2.5 , 4.25]]]], grad_fn=<reshape>)
    >>> F.avg_pool2d(x, 2, stride=1).sum().backward()
    >>> x.grad
    tensor([[[[0.25, 0.5 , 0.25],
              [0.25, 0.5 , 0.25]]]])
    """
    _no_ceil(ceil_mode, "avg_pool2d")
    x, k, st, pad, _ = _pool_args(input, kernel_size, stride, padding, 1, "avg_pool2d")
    geo = dict(stride=st, padding=tuple((p, p) for p in pad), dilation=(1, 1), groups=1)
    ones = np.ones((1, 1, *k), dtype=x.dtype)
    sums = _conv(x.reshape((-1, 1, *x.shape[-2:])), ones, **geo)
    sums = _divided(sums, x, k, geo, count_include_pad, divisor_override)
    return sums.reshape(x.shape[:-2] + sums.shape[-2:])
