"""Every primitive family, imported so that all entries register; the names Tensor methods use."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._registry import FUNCTION_MAP, UFUNC_MAP
from .composite import clip, norm, power
from .elementwise import *
from .elementwise import UFUNC_ALIASES
from .fft import fftn as _fftn  # (registers the numpy.fft primitives)
from .linalg import dot, einsum, inner, matmul, outer, tensordot, trace
from .linalg_more import eig as _eig  # (registers eig, eigvals, matrix_rank)
from .numpy_funcs import (
    append,
    argsort,
    array_split,
    atleast_1d,
    atleast_2d,
    atleast_3d,
    average,
    column_stack,
    cross,
    deg2rad,
    degrees,
    diag,
    diagflat,
    diff,
    dsplit,
    dstack,
    fliplr,
    flipud,
    hsplit,
    hstack,
    kron,
    median,
    meshgrid,
    nanmax,
    nanmean,
    nansum,
    percentile,
    polyval,
    ptp,
    quantile,
    rad2deg,
    radians,
    rot90,
    sort,
    take_along_axis,
    trapezoid,
    vsplit,
    vstack,
)
from .numpy_more import (
    angle,
    interp,
    linspace,
    logspace,
    nanmedian,
    put_along_axis,
    real_if_close,
    sinc,
)
from .reduction import (
    UFUNC_REDUCE,
    amax,
    amin,
    argmax,
    argmin,
    cumprod,
    cumsum,
    logsumexp,
    max,
    mean,
    min,
    prod,
    std,
    sum,
    var,
)
from .shape import (
    astype,
    broadcast_to,
    concatenate,
    copy,
    diagonal,
    expand_dims,
    flatten,
    flip,
    getitem,
    moveaxis,
    pad,
    ravel,
    raw_index,
    repeat,
    reshape,
    roll,
    setitem,
    split,
    squeeze,
    stack,
    swapaxes,
    take,
    tile,
    transpose,
    tril,
    triu,
)

UFUNC_MAP.update(UFUNC_ALIASES)


def numpy_overrides() -> dict[Callable[..., Any], Callable[..., Any]]:
    """The NumPy and SciPy functions (ufuncs included) that run autodiffx's own on Tensors.

    A new dict ``{numpy function: autodiffx function}``: ``np.f(t, ...)`` on a Tensor ``t``
    runs ``numpy_overrides()[np.f](t, ...)`` (through ``__array_ufunc__`` and
    ``__array_function__``); any other NumPy function on a Tensor that carries a derivative
    raises. docs/conventions.md lists them with their rule kinds.

    Examples
    --------
    >>> import numpy as np
    >>> import autodiffx as ad
    >>> overrides = ad.numpy_overrides()
    >>> overrides[np.sin] is ad.sin, overrides[np.linalg.solve] is ad.linalg.solve
    (True, True)
    """
    return {**UFUNC_MAP, **FUNCTION_MAP}
