"""OpSpec rows (as plain dicts, see ``op_specs_nn``) for the convolution primitives.

The references are written independently of the kernels: ``conv`` by a loop over every
output position, its two transposes as the transposed matrices of that loop (built column by
column from basis vectors), so they check the rules' adjointness as well as the values.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
from strategies import REAL


def conv_ref(x: Any, w: Any, stride: Any, padding: Any, dilation: Any, groups: int) -> np.ndarray:
    """PyTorch's convolution of x (N, C, *s) and w (O, C / groups, *k), one output at a time."""
    x, w = np.asarray(x), np.asarray(w)
    nd = len(stride)
    xp = np.pad(x, [(0, 0), (0, 0), *padding])
    n, c = x.shape[:2]
    o, k = w.shape[0], w.shape[2:]
    cg, og = c // groups, o // groups
    osp = [(xp.shape[2 + i] - dilation[i] * (k[i] - 1) - 1) // stride[i] + 1 for i in range(nd)]
    out = np.zeros((n, o, *osp), dtype=np.result_type(x, w))
    for b, f, *pos in itertools.product(range(n), range(o), *map(range, osp)):
        g = f // og
        rows = [
            slice(p * s, p * s + d * (kk - 1) + 1, d)
            for p, s, d, kk in zip(pos, stride, dilation, k, strict=True)
        ]
        out[(b, f, *pos)] = np.sum(w[f] * xp[(b, slice(g * cg, (g + 1) * cg), *rows)])
    return out


def _transpose_of(fun: Any, in_shape: tuple[int, ...], cot: Any) -> np.ndarray:
    """J^T cot for the linear map ``fun`` on arrays of ``in_shape`` (column by column)."""
    cot = np.asarray(cot)
    out = np.zeros(in_shape, dtype=cot.dtype)
    for i in np.ndindex(*in_shape):
        e = np.zeros(in_shape)
        e[i] = 1.0
        out[i] = np.sum(fun(e) * cot)
    return out


def conv_transpose_ref(g: Any, w: Any, in_shape: Any, **p: Any) -> np.ndarray:
    g = np.asarray(g)
    c = np.shape(w)[1] * p["groups"]
    shape = (g.shape[0], c, *in_shape)
    return _transpose_of(lambda e: conv_ref(e, w, **p), shape, g)


def conv_weight_grad_ref(x: Any, g: Any, kernel: Any, **p: Any) -> np.ndarray:
    g = np.asarray(g)
    shape = (g.shape[1], np.shape(x)[1] // p["groups"], *kernel)
    return _transpose_of(lambda e: conv_ref(x, e, **p), shape, g)


def _geo(stride: Any, padding: Any, dilation: Any, groups: int = 1) -> dict[str, Any]:
    return dict(stride=stride, padding=padding, dilation=dilation, groups=groups)


# (x shape, w shape, geometry): plain 2-D; strided, asymmetric padding, dilated; grouped;
# 1-D strided and padded; a 1x1 kernel.
_GEOMETRIES = [
    ((2, 2, 4, 3), (3, 2, 2, 2), _geo((1, 1), ((0, 0), (0, 0)), (1, 1))),
    ((1, 2, 5, 4), (2, 2, 2, 2), _geo((2, 1), ((1, 0), (1, 2)), (1, 2))),
    ((1, 4, 3, 3), (2, 2, 2, 1), _geo((1, 2), ((0, 1), (0, 0)), (1, 1), 2)),
    ((2, 2, 5), (3, 2, 3), _geo((2,), ((1, 1),), (1,))),
    ((1, 3, 2, 2), (2, 3, 1, 1), _geo((1, 1), ((0, 0), (0, 0)), (1, 1))),
]


def _out_shape(xs: Any, ws: Any, p: dict[str, Any]) -> tuple[int, ...]:
    return conv_ref(np.zeros(xs), np.zeros(ws), **p).shape


CONV_SPECS: list[dict[str, Any]] = [
    dict(
        name="conv",
        args=(REAL, REAL),
        cases=[dict(shapes=(xs, ws), params=p) for xs, ws, p in _GEOMETRIES],
        ref=conv_ref,
        complex=True,
        batch="lead",
    ),
    dict(
        name="conv_transpose",
        args=(REAL, REAL),
        cases=[
            dict(shapes=(_out_shape(xs, ws, p), ws), params=dict(in_shape=xs[2:], **p))
            for xs, ws, p in _GEOMETRIES
        ],
        ref=conv_transpose_ref,
        complex=True,
        batch="lead",
    ),
    dict(
        name="conv_weight_grad",
        args=(REAL, REAL),
        cases=[
            dict(shapes=(xs, _out_shape(xs, ws, p)), params=dict(kernel=ws[2:], **p))
            for xs, ws, p in _GEOMETRIES
        ],
        ref=conv_weight_grad_ref,
        complex=True,
        batch="lead",
    ),
]


# ----- max pooling's gather and its transpose (autodiffx/nn/pooling.py) -------------------
def pool_select_ref(x: Any, sel: Any, kernel: Any, stride: Any, padding: Any, dilation: Any):
    """The element at kernel position sel of each window, one output element at a time."""
    x = np.asarray(x)
    xp = np.pad(x, [(0, 0)] * (x.ndim - 2) + list(padding))
    osp = sel.shape[-2:]
    out = np.zeros(np.broadcast_shapes(x.shape[:-2] + osp, sel.shape), dtype=x.dtype)
    sel = np.broadcast_to(sel, out.shape)
    for i in np.ndindex(*out.shape):
        a, b = divmod(int(sel[i]), kernel[1])
        r, c = i[-2] * stride[0] + a * dilation[0], i[-1] * stride[1] + b * dilation[1]
        out[i] = xp[(*i[:-2], r, c)]
    return out


def pool_scatter_ref(g: Any, sel: Any, in_shape: Any, **p: Any) -> np.ndarray:
    g = np.asarray(g)
    shape = g.shape[:-2] + tuple(in_shape)
    return _transpose_of(lambda e: pool_select_ref(e, sel, **p), shape, g)


def _pool_geo(kernel, stride, padding, dilation) -> dict[str, Any]:
    return dict(kernel=kernel, stride=stride, padding=padding, dilation=dilation)


_SEL = np.random.default_rng(3)
# (x shape, sel, geometry): 2x2 windows without overlap; overlapping 3x3 windows with padding
# (sel may point at padding: zeros); dilated windows with a sel broadcast over the leading axes.
_POOLS = [
    (
        (2, 3, 4, 5),
        _SEL.integers(0, 4, (2, 3, 2, 2)),
        _pool_geo((2, 2), (2, 2), ((0, 0),) * 2, (1, 1)),
    ),
    (
        (1, 2, 4, 4),
        _SEL.integers(0, 9, (1, 2, 2, 4)),
        _pool_geo((3, 3), (2, 1), ((1, 1), (1, 1)), (1, 1)),
    ),
    ((2, 5, 4), _SEL.integers(0, 4, (2, 2)), _pool_geo((2, 2), (1, 2), ((0, 0), (0, 0)), (2, 1))),
]

POOL_SPECS: list[dict[str, Any]] = [
    dict(
        name="pool_select",
        args=(REAL,),
        cases=[dict(shapes=(xs,), params=dict(sel=sel, **p)) for xs, sel, p in _POOLS],
        ref=pool_select_ref,
        complex=True,
        batch="lead",
    ),
    dict(
        name="pool_scatter",
        args=(REAL,),
        cases=[
            dict(
                shapes=(pool_select_ref(np.zeros(xs), sel, **p).shape,),
                params=dict(sel=sel, in_shape=xs[-2:], **p),
            )
            for xs, sel, p in _POOLS
        ],
        ref=pool_scatter_ref,
        complex=True,
        batch="lead",
    ),
]
