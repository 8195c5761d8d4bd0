"""Products: matmul (bilinear primitive) and dot, inner, outer, tensordot, trace built on it."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._registry import FUNCTION_MAP, defprim
from .._tensor import Tensor
from .reduction import sum_
from .shape import diagonal, ravel, reshape, transpose


def _mm_ta(g: Any, a: Any, b: Any) -> Any:
    if b.ndim == 1:
        return g * b if a.ndim == 1 else g[..., None] * b
    if a.ndim == 1:
        return (g[..., None, :] @ np.swapaxes(b, -1, -2))[..., 0, :]
    return g @ np.swapaxes(b, -1, -2)


def _mm_tb(g: Any, a: Any, b: Any) -> Any:
    if a.ndim == 1:
        return a * g if b.ndim == 1 else a[:, None] * g[..., None, :]
    if b.ndim == 1:
        return (np.swapaxes(a, -1, -2) @ g[..., :, None])[..., 0]
    return np.swapaxes(a, -1, -2) @ g


matmul_ = defprim(
    "matmul",
    np.matmul,
    bilinear=(_mm_ta, _mm_tb),
    doc="Matrix product with NumPy's batching and 1-D rules.",
)


def matmul(a: Any, b: Any, out: Any = None, **kw: Any) -> Tensor:
    """Matrix product (``a @ b``), batched, with NumPy's 1-D rules.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.matmul(ad.eye(2), ad.tensor([1.0, 2.0]))
    tensor([1., 2.])
    """
    if out is not None or kw:
        raise TypeError("matmul: out= and other keyword arguments are not supported on Tensors")
    for name, v in (("a", a), ("b", b)):
        if np.ndim(v) == 0:
            raise ValueError(f"matmul: input {name} is 0-d (a scalar); use multiply or *")
    return matmul_(a, b)


def tensordot(a: Any, b: Any, axes: Any = 2) -> Tensor:
    """Sum of products over the given axes (as ``np.tensordot``).

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.tensordot(ad.ones((2, 3)), ad.ones((3, 4)), axes=1).shape
    (2, 4)
    """
    sa, sb = np.shape(a), np.shape(b)
    na, nb = len(sa), len(sb)
    if isinstance(axes, int | np.integer):
        ax_a = list(range(na - int(axes), na))
        ax_b = list(range(int(axes)))
    else:
        ax_a, ax_b = axes
        ax_a = [int(i) % na for i in np.atleast_1d(ax_a)]
        ax_b = [int(i) % nb for i in np.atleast_1d(ax_b)]
    if [sa[i] for i in ax_a] != [sb[i] for i in ax_b]:
        raise ValueError(
            f"tensordot: shape-mismatch for sum: {sa} axes {ax_a} vs {sb} axes {ax_b}"
        )
    free_a = [i for i in range(na) if i not in ax_a]
    free_b = [i for i in range(nb) if i not in ax_b]
    k = int(np.prod([sa[i] for i in ax_a], dtype=np.int64))
    at = reshape(transpose(a, free_a + ax_a), (-1, k))
    bt = reshape(transpose(b, ax_b + free_b), (k, -1))
    return reshape(matmul_(at, bt), tuple(sa[i] for i in free_a) + tuple(sb[i] for i in free_b))


def dot(a: Any, b: Any, out: Any = None) -> Tensor:
    """Dot product with NumPy's rules (matmul for 1-D/2-D, tensordot beyond).

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.dot(ad.tensor([1.0, 2.0]), ad.tensor([3.0, 4.0]))
    tensor(11.)
    """
    if out is not None:
        raise TypeError("dot: out= is not supported on Tensors")
    na, nb = np.ndim(a), np.ndim(b)
    if na == 0 or nb == 0:
        return _mul(a, b)
    if na <= 2 and nb <= 2:
        return matmul_(a, b)
    return tensordot(a, b, axes=([-1], [-2 if nb > 1 else -1]))


def inner(a: Any, b: Any) -> Tensor:
    """Inner product over the last axes.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.inner(ad.tensor([1.0, 2.0]), ad.tensor([3.0, 4.0]))
    tensor(11.)
    """
    if np.ndim(a) == 0 or np.ndim(b) == 0:
        return _mul(a, b)
    return tensordot(a, b, axes=([-1], [-1]))


def outer(a: Any, b: Any, out: Any = None) -> Tensor:
    """Outer product of the flattened inputs.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.outer(ad.tensor([1.0, 2.0]), ad.tensor([1.0, 0.0, 1.0])).shape
    (2, 3)
    """
    return _mul(reshape(ravel(a), (-1, 1)), reshape(ravel(b), (1, -1)))


def trace(x: Any, offset: int = 0, axis1: int = 0, axis2: int = 1, dtype: Any = None) -> Tensor:
    """Sum along a diagonal (NumPy's ``trace``; ``ad.evaluation_trace`` is the Wengert list).

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.trace(ad.eye(3))
    tensor(3.)
    """
    return sum_(diagonal(x, offset, axis1, axis2), axis=-1)


def _mul(a: Any, b: Any) -> Tensor:
    from .elementwise import multiply

    return multiply(a, b)


FUNCTION_MAP.update(
    {
        np.matmul: matmul,
        np.dot: dot,
        np.inner: inner,
        np.outer: outer,
        np.tensordot: tensordot,
        np.trace: trace,
    }
)
