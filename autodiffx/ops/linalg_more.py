"""numpy.linalg's rest: eig/eigvals (a documented gauge), matrix_power, multi_dot, cond, norms."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from .._registry import FUNCTION_MAP, defprim
from .._tensor import Tensor
from . import elementwise as ew
from .composite import norm
from .linalg import matmul
from .linalg_decomp import _diag, _diag_embed, _eig_f, _mT, _unused, inv, solve, svdvals
from .reduction import amax, amin, sum_
from .shape import reshape


# ----- eig, eigvals -------------------------------------------------------------------------
# NOTE: A V = V diag(w): dw = diag(V⁻¹ dA V); dV = V (F ∘ (V⁻¹ dA V)) - V diag(Vᴴ ·), with
# F_ij = 1 / (w_j - w_i): the gauge keeps each unit eigenvector's change orthogonal to it
# (vᴴ dv = 0), as in JAX's eig_jvp up to that projection. The VJP is its plain transpose:
# Ā = V⁻ᵀ (diag(w̄) + F ∘ (Vᵀ (V̄ - conj(V) diag(Vᵀ V̄)))) Vᵀ.
def _eig_vjp(needs: Any, g: Any, out: Any, a: Any) -> tuple[Any]:
    gw, gv = g
    w, v = out
    inner = _diag_embed(gw)
    if not _unused(gv):
        s = np.sum(v * gv, axis=-2)
        wbar = gv - np.conj(v) * s[..., None, :]
        inner = inner + _eig_f(w) * (_mT(v) @ wbar)
    return (_mT(inv(v)) @ inner @ _mT(v),)


def _eig_jvp(tans: Any, out: Any, a: Any) -> tuple[Any, Any]:
    w, v = out
    m = solve(v, tans[0] @ v)
    dv = v @ (_eig_f(w) * m)
    dv = dv - v * np.sum(np.conj(v) * dv, axis=-2)[..., None, :]
    return _diag(m), dv


_VALUE_DTYPE = (
    "NumPy's eig is real where the eigenvalues are (a dtype that depends on the values), "
    "the array API's complex"
)
eig_ = defprim(
    "eig",
    lambda a: tuple(np.linalg.eig(a)),
    numpy_only=_VALUE_DTYPE,
    vmap="gufunc",
    vjp=_eig_vjp,
    jvp=_eig_jvp,
    nout=-1,
    save_args=False,
    save_out=True,
    doc="Eigenvalues and unit eigenvectors of a square matrix (complex in general).",
)


def _eigvals_vjp(needs: Any, g: Any, out: Any, a: Any) -> tuple[Any]:
    v = eig_.call(a)[1]
    return (_mT(inv(v)) @ _diag_embed(g) @ _mT(v),)


def _eigvals_jvp(tans: Any, out: Any, a: Any) -> Any:
    v = eig_.call(a)[1]
    return _diag(solve(v, tans[0] @ v))


eigvals_ = defprim(
    "eigvals",
    np.linalg.eigvals,
    numpy_only=_VALUE_DTYPE,
    vmap="gufunc",
    vjp=_eigvals_vjp,
    jvp=_eigvals_jvp,
    doc="Eigenvalues of a square matrix; Ā = V⁻ᵀ diag(w̄) Vᵀ.",
)
matrix_rank_ = defprim(
    "matrix_rank",
    lambda a, tol=None, hermitian=False, rtol=None: np.linalg.matrix_rank(
        a, tol=tol, hermitian=hermitian, rtol=rtol
    ),
    vmap="gufunc",
    doc="The rank by the SVD (an integer: not differentiable).",
    example="ad.linalg.matrix_rank(ad.tensor([[1.0, 2.0], [2.0, 4.0]]))",
)


class EigResult(NamedTuple):
    """``(eigenvalues, eigenvectors)``, as NumPy's ``EigResult``."""

    eigenvalues: Any
    eigenvectors: Any


def eig(a: Any) -> EigResult:
    """Eigenvalues and unit eigenvectors of a square matrix (as ``np.linalg.eig``).

    Gauge: an eigenvector's phase (its sign, for real ones) is not unique; the derivative
    given changes each eigenvector orthogonally to itself (vᴴ dv = 0), so only
    phase-invariant functions of the eigenvectors (``abs(v)``, ``v[i] / v[j]``, projectors)
    have a unique derivative, and theirs is exact. Eigenvalues must be distinct.

    Examples
    --------
    >>> import autodiffx as ad
    >>> a = ad.tensor([[2.0, 1.0], [0.0, 3.0]], requires_grad=True)
    >>> w, v = ad.linalg.eig(a)
    >>> w
    tensor([2., 3.], grad_fn=<eig>)
    >>> w[1].backward()
    >>> a.grad  # (left eigenvector [0, 1] times right [1, 1]: the transpose would be wrong)
    tensor([[0., 0.],
            [1., 1.]])
    """
    return EigResult(*eig_(a))


def eigvals(a: Any) -> Tensor:
    """Eigenvalues of a square matrix (as ``np.linalg.eigvals``; complex in general).

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.linalg.eigvals(ad.tensor([[0.0, 1.0], [-1.0, 0.0]]))
    tensor([0.+1.j, 0.-1.j])
    """
    return eigvals_(a)


def matrix_rank(a: Any, tol: Any = None, hermitian: bool = False, *, rtol: Any = None) -> Any:
    """The rank of a matrix (an integer result: never differentiated).

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.linalg.matrix_rank(ad.tensor([[1.0, 2.0], [2.0, 4.0]]))
    tensor(1)
    """
    return matrix_rank_(a, tol=tol, hermitian=hermitian, rtol=rtol)


# ----- composites ---------------------------------------------------------------------------
def _t(x: Any) -> Any:
    return x if isinstance(x, Tensor) else np.asarray(x)


def matrix_power(a: Any, n: int) -> Tensor:
    """``a`` to the integer power ``n`` by repeated squaring (``n < 0``: of the inverse).

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.linalg.matrix_power(ad.tensor([[1.0, 1.0], [0.0, 1.0]]), 3)
    tensor([[1., 3.],
            [0., 1.]])
    """
    a = _t(a)
    if a.ndim < 2 or a.shape[-1] != a.shape[-2]:
        raise np.linalg.LinAlgError(
            f"matrix_power: the last two dimensions must be square, got shape {a.shape}"
        )
    n = int(n)
    if n < 0:
        a, n = inv(a), -n
    result = None
    while True:
        if n & 1:
            result = a if result is None else matmul(result, a)
        n >>= 1
        if not n:
            break
        a = matmul(a, a)
    if result is None:  # n == 0: the identity, no derivative
        eye = np.broadcast_to(np.eye(a.shape[-1], dtype=a.dtype), a.shape)
        return Tensor(np.array(eye))
    return result if result is not a else ew.positive(result)


def multi_dot(arrays: Sequence[Any], *, out: Any = None) -> Tensor:
    """The product of a chain of matrices (1-D ends as vectors), as ``np.linalg.multi_dot``.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.linalg.multi_dot([ad.ones(2), ad.eye(2), ad.ones(2)])
    tensor(2.)
    """
    if out is not None:
        raise TypeError("multi_dot: out= is not supported on Tensors")
    arrs = [_t(a) for a in arrays]
    if len(arrs) < 2:
        raise ValueError("multi_dot: expecting at least two arrays")
    for i, a in enumerate(arrs):
        ok = a.ndim == 2 or (a.ndim == 1 and i in (0, len(arrs) - 1))
        if not ok:
            raise ValueError(f"multi_dot: array {i} has {a.ndim} dimensions; 2 are needed")
    res = arrs[0]
    for a in arrs[1:]:
        res = matmul(res, a)
    return res


def cond(x: Any, p: Any = None) -> Tensor:
    """The condition number in the norm ``p`` (None/2/-2 by the singular values).

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.linalg.cond(ad.tensor([[2.0, 0.0], [0.0, 0.5]]))
    tensor(4.)
    """
    x = _t(x)
    if p is None or p in (2, -2):
        s = svdvals(x)
        hi, lo = amax(s, axis=-1), amin(s, axis=-1)
        return hi / lo if p != -2 else lo / hi
    return norm(x, p, axis=(-2, -1)) * norm(inv(x), p, axis=(-2, -1))


def matrix_norm(x: Any, /, *, keepdims: bool = False, ord: Any = "fro") -> Tensor:
    """The matrix norm over the last two axes (as ``np.linalg.matrix_norm``).

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.linalg.matrix_norm(ad.tensor([[3.0, 0.0], [0.0, 4.0]]))
    tensor(5.)
    """
    return norm(x, ord, axis=(-2, -1), keepdims=keepdims)


def vector_norm(x: Any, /, *, axis: Any = None, keepdims: bool = False, ord: Any = 2) -> Tensor:
    """The vector norm over ``axis`` (None: all elements), as ``np.linalg.vector_norm``.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.linalg.vector_norm(ad.tensor([[3.0], [4.0]]))
    tensor(5.)
    """
    x = _t(x)
    if axis is None:
        flat = reshape(x, (-1,))
        out = norm(flat, ord, axis=0)
        return reshape(out, (1,) * x.ndim) if keepdims else out
    if isinstance(axis, tuple | list) and len(axis) > 1:
        axes = tuple(int(a) % x.ndim for a in axis)
        rest = [d for d in range(x.ndim) if d not in axes]
        from .shape import transpose

        moved = transpose(x, (*rest, *axes))
        flat = reshape(moved, (*(x.shape[d] for d in rest), -1))
        out = norm(flat, ord, axis=-1)
        if keepdims:
            out = reshape(out, tuple(1 if d in axes else x.shape[d] for d in range(x.ndim)))
        return out
    return norm(x, ord, axis=axis, keepdims=keepdims)


def vecdot(x1: Any, x2: Any, /, *, axis: int = -1) -> Tensor:
    """The dot product along ``axis``, conjugating ``x1`` (as ``np.linalg.vecdot``).

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.linalg.vecdot(ad.tensor([1.0, 2.0]), ad.tensor([3.0, 4.0]))
    tensor(11.)
    """
    x1, x2 = _t(x1), _t(x2)
    a = ew.conj(x1) if x1.dtype.kind == "c" else x1
    return sum_(ew.multiply(a, x2), axis=axis, keepdims=False)


def tensorinv(a: Any, ind: int = 2) -> Tensor:
    """The inverse of ``a`` for ``tensordot`` over its first ``ind`` axes.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.linalg.tensorinv(ad.eye(4).reshape(4, 2, 2), ind=1).shape
    (2, 2, 4)
    """
    a = _t(a)
    if ind <= 0:
        raise ValueError("tensorinv: invalid ind argument")
    old = a.shape
    rows = int(np.prod(old[:ind]))
    inv_shape = old[ind:] + old[:ind]
    return reshape(inv(reshape(a, (rows, -1))), inv_shape)


def tensorsolve(a: Any, b: Any, axes: Any = None) -> Tensor:
    """x with ``tensordot(a, x, x.ndim) == b`` (as ``np.linalg.tensorsolve``).

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.linalg.tensorsolve(2 * ad.eye(4).reshape(2, 2, 4), ad.ones((2, 2))).shape
    (4,)
    """
    a, b = _t(a), _t(b)
    if axes is not None:
        from .shape import moveaxis

        axes = [int(k) % a.ndim for k in axes]
        a = moveaxis(a, axes, tuple(range(a.ndim - len(axes), a.ndim)))
    xshape = a.shape[b.ndim :]
    n = int(np.prod(xshape))
    if int(np.prod(a.shape[: b.ndim])) != n:
        raise np.linalg.LinAlgError(
            f"tensorsolve: a of shape {a.shape} is not square for b of shape {b.shape}"
        )
    x = solve(reshape(a, (n, n)), reshape(b, (n,)))
    return reshape(x, xshape)


FUNCTION_MAP.update(
    {
        np.linalg.eig: eig,
        np.linalg.eigvals: eigvals,
        np.linalg.matrix_rank: matrix_rank,
        np.linalg.matrix_power: matrix_power,
        np.linalg.multi_dot: multi_dot,
        np.linalg.cond: cond,
        np.linalg.matrix_norm: matrix_norm,
        np.linalg.vector_norm: vector_norm,
        np.linalg.vecdot: vecdot,
        np.linalg.tensorinv: tensorinv,
        np.linalg.tensorsolve: tensorsolve,
    }
)
