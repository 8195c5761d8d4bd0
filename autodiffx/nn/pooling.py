"""Max pooling for ``ad.nn.functional``: PyTorch's window choice on the values, then a gather.

The element of each window (``_choose``) is chosen on the values, outside the graph; the
result is ``pool_select(x, sel=...)``, a linear primitive that reads the chosen element of
every window, whose transpose ``pool_scatter`` puts a cotangent back at the chosen elements
(and whose transpose is ``pool_select``). Both take one vectorized step per kernel position
(4 for 2x2), never per pixel, and keep the memory layout of their operand.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._registry import defprim
from .._tensor import Tensor
from .conv import _no_ceil, _padded, _pool_args, _window_slices


def _select_kernel(x: Any, sel: Any, kernel: Any, stride: Any, padding: Any, dilation: Any) -> Any:
    xp = _padded(x, padding)
    osp = sel.shape[-len(kernel) :]
    out = np.zeros((), x.dtype)
    for j, (_, sl) in enumerate(_window_slices(kernel, stride, dilation, osp)):
        out = np.where(sel == j, xp[(Ellipsis, *sl)], out)
    return out


def _scatter_kernel(
    g: Any, sel: Any, in_shape: Any, kernel: Any, stride: Any, padding: Any, dilation: Any
) -> Any:
    nd = len(kernel)
    full = tuple(n + lo + hi for n, (lo, hi) in zip(in_shape, padding, strict=True))
    # the layout of sel (the pooled input's) when it has g's axes: downstream ops then share it
    like = sel if sel.ndim == g.ndim else g
    out = np.zeros_like(like, dtype=g.dtype, shape=g.shape[:-nd] + full)
    # NOTE: g times a mask is cheaper than np.where but would spread a nan or inf of g over
    # the window, hence the one sum that checks g is finite.
    finite = bool(np.isfinite(np.sum(g)))
    disjoint = all(s >= d * (k - 1) + 1 for k, s, d in zip(kernel, stride, dilation, strict=True))
    for j, (_, sl) in enumerate(_window_slices(kernel, stride, dilation, g.shape[-nd:])):
        view = out[(Ellipsis, *sl)]
        if finite and disjoint:
            np.multiply(g, sel == j, out=view)
        elif finite:
            view += g * (sel == j)
        else:
            view += np.where(sel == j, g, 0)
    crop = tuple(slice(lo, lo + n) for n, (lo, _) in zip(in_shape, padding, strict=True))
    return out[(Ellipsis, *crop)]


def _in_shape(x: Any, kernel: Any) -> tuple[int, ...]:
    return tuple(x.shape[-len(kernel) :])


_pool_select = defprim(
    "pool_select",
    _select_kernel,
    numpy_only="pooling windows use NumPy's stride tricks, not in the array API",
    linear=lambda g, x, **p: (_pool_scatter.call(g, in_shape=_in_shape(x, p["kernel"]), **p),),
    export=False,
    doc=(
        "The element at kernel position ``sel`` (row-major, an integer array broadcasting to "
        "the output) of each window of x (..., *spatial) zero-padded by ``padding``."
    ),
    example=(
        "from autodiffx.nn.pooling import _pool_select\n"
        "x = ad.tensor(np.arange(8.0).reshape(2, 4), requires_grad=True)\n"
        "_pool_select(x, sel=np.array([[3, 0]]), kernel=(2, 2), stride=(2, 2), "
        "padding=((0, 0), (0, 0)), dilation=(1, 1))"
    ),
)

_pool_scatter = defprim(
    "pool_scatter",
    _scatter_kernel,
    numpy_only="pooling windows use NumPy's stride tricks, not in the array API",
    linear=lambda h, g, in_shape, **p: (_pool_select.call(h, **p),),
    export=False,
    doc=(
        "Transpose of ``pool_select``: zeros of (..., *in_shape) with each element of g added "
        "at its window's position ``sel``."
    ),
    example=(
        "from autodiffx.nn.pooling import _pool_scatter\n"
        "g = ad.tensor([[1.0, 2.0]], requires_grad=True)\n"
        "_pool_scatter(g, sel=np.array([[3, 0]]), in_shape=(2, 4), kernel=(2, 2), "
        "stride=(2, 2), padding=((0, 0), (0, 0)), dilation=(1, 1))"
    ),
)


def _first_inside(out: int, n: int, k: int, s: int, p: int, d: int, name: str) -> np.ndarray:
    """Per window along one axis, the first kernel index that falls inside the input."""
    start = np.arange(out) * s - p
    first = np.maximum(0, -(start // d))
    if np.any((first >= k) | (start + first * d >= n)):
        raise ValueError(
            f"{name}: with padding {p} and dilation {d}, a window of kernel size {k} on an "
            f"axis of size {n} holds only padding; use less padding or dilation"
        )
    return first


def _choose(x: Any, k: Any, st: Any, pad: Any, dil: Any, name: str) -> Any:
    """PyTorch's element of each window, as its row-major kernel position.

    PyTorch scans a window's input elements in row-major order and a later one wins if it is
    larger or NaN: so the first maximum, the last NaN, and the first input element when all
    are -inf (padding never wins).
    """
    xp = _padded(x, pad, -np.inf)
    osp = tuple((n - d * (kk - 1) - 1) // s + 1 for n, kk, s, d in zip(xp.shape[-2:], k, st, dil))
    nan = bool(np.isnan(np.min(x))) if x.size else False
    views = [xp[(Ellipsis, *sl)] for _, sl in _window_slices(k, st, dil, osp)]
    dtype = np.uint8 if len(views) <= 256 else np.intp
    if any(lo for lo, _ in pad):
        rows, cols = (
            _first_inside(o, n, kk, s, lo, d, name)
            for o, n, kk, s, (lo, _), d in zip(osp, x.shape[-2:], k, st, pad, dil, strict=True)
        )
        first = (rows[:, None] * k[1] + cols).astype(dtype)
        best, start = np.full((), -np.inf, x.dtype), 0
    else:
        best, first, start = views[0], np.zeros((), dtype), 1
    for j in range(start, len(views)):
        upd = np.greater(views[j], best)
        if nan:
            upd |= np.isnan(views[j])
        best = np.where(upd, views[j], best) if nan else np.maximum(best, views[j])
        first = np.where(upd, dtype(j), first)
    return np.broadcast_to(first, views[0].shape)


def max_pool2d(
    input: Any,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    dilation: Any = 1,
    ceil_mode: bool = False,
) -> Tensor:
    """2-D max pooling as PyTorch's ``F.max_pool2d`` (padding counts as -inf).

    The element of each window is chosen on the values and then read by ``pool_select``, so
    the gradient goes to one element per window: the first maximum in the window's row-major
    order (PyTorch's choice, also for ties such as the zeros after a ReLU); overlapping
    windows add up. NaN propagates as in PyTorch (the gradient goes to the last NaN).

    Parameters
    ----------
    input : Tensor or array_like
        (N, C, H, W) or (C, H, W), real floating point.
    kernel_size : int or tuple of 2 ints
    stride : int or tuple of 2 ints, optional
        Default ``kernel_size``.
    padding : int or tuple of 2 ints
        At most half the kernel size (PyTorch's limit).
    dilation : int or tuple of 2 ints
    ceil_mode : bool
        Only False (True raises ``NotImplementedError``).

    Examples
    --------
    >>> import numpy as np
    >>> import autodiffx as ad
    >>> import autodiffx.nn.functional as F
    >>> x = ad.tensor([[[[1.0, 2.0, 0.0, 0.0], [4.0, 3.0, 0.0, 0.0]]]], requires_grad=True)
    >>> F.max_pool2d(x, 2)
    tensor([[[[4., 0.]]]], grad_fn=<pool_select>)
    >>> F.max_pool2d(x, 2).sum().backward()
    >>> x.grad
    tensor([[[[0., 0., 1., 0.],
              [1., 0., 0., 0.]]]])
    """
    _no_ceil(ceil_mode, "max_pool2d")
    x, k, st, pad, dil = _pool_args(input, kernel_size, stride, padding, dilation, "max_pool2d")
    pads = tuple((p, p) for p in pad)
    sel = _choose(x.data, k, st, pads, dil, "max_pool2d")
    return _pool_select(x, sel=sel, kernel=k, stride=st, padding=pads, dilation=dil)
