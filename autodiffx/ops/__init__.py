"""Every primitive family, imported so that all entries register; the names Tensor methods use."""

from __future__ import annotations

from .._registry import UFUNC_MAP
from .composite import clip, norm, power
from .elementwise import *
from .elementwise import UFUNC_ALIASES
from .linalg import dot, einsum, inner, matmul, outer, tensordot, trace
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
