"""``ad.scipy.linalg``: triangular, Cholesky and LU solves, matrix functions, ``block_diag``."""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np

from .._registry import defprim
from .._tensor import Tensor
from ..linalg import cholesky as _cholesky
from ..ops.shape import lift

__all__ = [
    "block_diag",
    "cho_factor",
    "cho_solve",
    "expm",
    "logm",
    "lu_factor",
    "lu_solve",
    "solve_triangular",
    "sqrtm",
]

_TRANS = {0: 0, 1: 1, "N": 0, "T": 1}


def _sl() -> Any:
    # NOTE: scipy.linalg is imported on first use, not with autodiffx (~0.2 s).
    return importlib.import_module("scipy.linalg")


def _mT(x: Any) -> Any:
    return np.swapaxes(x, -1, -2)


def _tensor(x: Any) -> Any:
    if isinstance(x, Tensor):
        return x
    arr = np.asarray(x)
    return Tensor(arr if arr.dtype.kind in "fc" else arr.astype(np.float64))


# ----- triangular solve --------------------------------------------------------------------
def _tri_kernel(a: Any, b: Any, trans: int = 0, lower: bool = False, unit: bool = False) -> Any:
    return _sl().solve_triangular(a, b, trans=trans, lower=lower, unit_diagonal=unit)


def _mask(x: Any, lower: bool, unit: bool) -> Any:
    """The entries of ``a`` that the solve reads (its triangle, strict if the diagonal is 1)."""
    k = -1 if unit else 0
    return np.tril(x, k) if lower else np.triu(x, -k)


def _tri_vjp(needs: Any, g: Any, out: Any, a: Any, b: Any, **p: Any) -> tuple[Any, Any]:
    # NOTE: x = M^-1 b with M = op(T): b_bar = M^-T g, T_bar = mask(-b_bar x^T), transposed
    # when op is the transpose (the solve's own rules, as for np.linalg.solve).
    bbar = _tri.call(a, g, trans=1 - p["trans"], lower=p["lower"], unit=p["unit"])
    if not needs[0]:
        return None, bbar
    m = -(bbar @ _mT(out)) if p["trans"] == 0 else -(out @ _mT(bbar))
    return _mask(m, p["lower"], p["unit"]), bbar if needs[1] else None


def _tri_jvp(tans: Any, out: Any, a: Any, b: Any, *, nb: int, **p: Any) -> Any:
    ta, tb = tans
    if nb:  # batched tangents: their batch axes go before the example's own stack axes
        r = max(np.ndim(a), np.ndim(out))
        ta = None if ta is None else lift(ta, nb, r)
        tb = None if tb is None else lift(tb, nb, r)
    rhs = tb
    if ta is not None:
        dm = _mask(ta, p["lower"], p["unit"])
        dmx = (dm if p["trans"] == 0 else _mT(dm)) @ out
        rhs = -dmx if rhs is None else rhs - dmx
    return _tri.call(a, rhs, **p)


_tri = defprim(
    "solve_triangular",
    _tri_kernel,
    numpy_only="scipy.linalg, not in the array API",
    vjp=_tri_vjp,
    jvp=_tri_jvp,
    save_out=True,
    doc="op(T)^-1 b for the triangle T of a and a matrix b (..., n, k), batched.",
    example="a = ad.tensor([[2.0, 0.0], [1.0, 4.0]], requires_grad=True)\n"
    "ad.scipy.linalg.solve_triangular(a, ad.tensor([2.0, 6.0]), lower=True)",
)


def _check_complex(name: str, a: Any, trans: Any) -> int:
    if trans not in _TRANS:
        raise NotImplementedError(
            f"ad.scipy.linalg.{name}: trans={trans!r} is not supported (use 0/'N' or 1/'T'; "
            "for the conjugate transpose of a complex matrix pass a.conj() with trans=1)"
        )
    return _TRANS[trans]


def solve_triangular(
    a: Any, b: Any, trans: Any = 0, lower: bool = False, unit_diagonal: bool = False
) -> Tensor:
    """Solve ``op(a) x = b`` reading only a triangle of ``a`` (``scipy.linalg.solve_triangular``).

    ``trans`` is 0/'N' (a) or 1/'T' (its transpose); ``unit_diagonal`` takes the diagonal as
    ones. ``b`` is a vector (n,) or a stack of matrices (..., n, k); ``a`` (..., n, n)
    broadcasts. Differentiable in ``a`` (its gradient is zero outside the triangle read) and
    ``b``, to any order.

    Examples
    --------
    >>> import autodiffx as ad
    >>> a = ad.tensor([[2.0, 0.0], [1.0, 4.0]], requires_grad=True)
    >>> x = ad.scipy.linalg.solve_triangular(a, ad.tensor([2.0, 6.0]), lower=True)
    >>> x
    tensor([1.  , 1.25], grad_fn=<getitem>)
    >>> x.sum().backward()
    >>> a.grad
    tensor([[-0.375 ,  0.    ],
            [-0.25  , -0.3125]])
    """
    t = _check_complex("solve_triangular", a, trans)
    a, b = _tensor(a), _tensor(b)
    vec = b.ndim == 1
    x = _tri(a, b[:, None] if vec else b, trans=t, lower=bool(lower), unit=bool(unit_diagonal))
    return x[:, 0] if vec else x


def _solve_vec(solve: Any, b: Tensor) -> Tensor:
    """Apply a matrix solve to b (n,) or (..., n, k)."""
    if b.ndim == 1:
        return solve(b[:, None])[:, 0]
    return solve(b)


# ----- Cholesky ----------------------------------------------------------------------------
def cho_factor(a: Any, lower: bool = False, overwrite_a: bool = False, check_finite: bool = True):
    """The Cholesky factor of ``a`` for ``cho_solve``: ``(c, lower)``.

    As ``scipy.linalg.cho_factor``, ``c`` holds the factor in its lower (``lower=True``) or
    upper triangle, computed from that triangle of ``a``; the other triangle is zero (SciPy
    leaves arbitrary entries there; JAX also gives zeros). Differentiable (the gradient of
    ``ad.linalg.cholesky``).

    Examples
    --------
    >>> import autodiffx as ad
    >>> c, low = ad.scipy.linalg.cho_factor(ad.tensor([[4.0, 2.0], [2.0, 5.0]]))
    >>> c, low
    (tensor([[2., 1.],
            [0., 2.]]), False)
    """
    a = _tensor(a)
    c = _cholesky(a) if lower else _mT(_cholesky(_mT(a)))
    return c, bool(lower)


def cho_solve(c_and_lower: Any, b: Any, overwrite_b: bool = False, check_finite: bool = True):
    """Solve ``a x = b`` from ``cho_factor(a)``: two triangular solves, differentiable in the
    factor and ``b`` (``scipy.linalg.cho_solve``).

    Examples
    --------
    >>> import autodiffx as ad
    >>> cf = ad.scipy.linalg.cho_factor(ad.tensor([[4.0, 2.0], [2.0, 5.0]]))
    >>> ad.scipy.linalg.cho_solve(cf, ad.tensor([6.0, 7.0]))
    tensor([1., 1.])
    """
    c, lower = c_and_lower
    c, b = _tensor(c), _tensor(b)
    first, second = (0, 1) if lower else (1, 0)

    def solve(m: Tensor) -> Tensor:
        y = _tri(c, m, trans=first, lower=bool(lower), unit=False)
        return _tri(c, y, trans=second, lower=bool(lower), unit=False)

    return _solve_vec(solve, b)


# ----- LU ----------------------------------------------------------------------------------
def _perm(piv: np.ndarray) -> np.ndarray:
    """The row order ``p`` with ``a[p] = L U`` from LAPACK's interchanges ``piv``."""
    p = np.arange(piv.shape[-1])
    for i, j in enumerate(piv):
        p[i], p[j] = p[j], p[i]
    return p


def _lu_parts(lu: Any) -> tuple[Any, Any]:
    n = lu.shape[-1]
    return np.tril(lu, -1) + np.eye(n, dtype=lu.dtype), np.triu(lu)


def _lu_jvp(tans: Any, out: Any, a: Any) -> Any:
    # NOTE: A = P L U gives F = L^-1 P^T dA U^-1 = L^-1 dL + dU U^-1 (unit lower + upper), so
    # dL = L tril(F, -1), dU = triu(F) U (the LU rule of JAX's jax.lax.linalg.lu).
    lu, piv = out
    lo, up = _lu_parts(lu)
    pa = tans[0][..., _perm(np.asarray(piv)), :]
    f = _tri.call(lu, pa, trans=0, lower=True, unit=True)
    f = _mT(_tri.call(lu, _mT(f), trans=1, lower=False, unit=False))
    return lo @ np.tril(f, -1) + np.triu(f) @ up, None


def _lu_vjp(needs: Any, g: Any, out: Any, a: Any) -> tuple[Any]:
    # The transpose of _lu_jvp: A_bar = P L^-T (tril(L^T L_bar, -1) + triu(U_bar U^T)) U^-T.
    lu, piv = out
    gl = g[0]
    lo, up = _lu_parts(lu)
    m = np.tril(_mT(lo) @ np.tril(gl, -1), -1) + np.triu(np.triu(gl) @ _mT(up))
    m = _tri.call(lu, m, trans=1, lower=True, unit=True)
    m = _mT(_tri.call(lu, _mT(m), trans=0, lower=False, unit=False))
    return (m[..., np.argsort(_perm(np.asarray(piv))), :],)


def _lu_kernel(a: Any) -> tuple[Any, Any]:
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(
            f"lu_factor: a must be one square matrix, got shape {a.shape} (stack several with "
            "a Python loop; a rectangular LU has no lu_solve)"
        )
    return _sl().lu_factor(a)


_lu = defprim(
    "lu_factor",
    _lu_kernel,
    numpy_only="scipy.linalg, not in the array API",
    vjp=_lu_vjp,
    jvp=_lu_jvp,
    nout=2,
    save_out=True,
    doc="The packed LU factorization (lu, piv) of a square matrix; piv is an integer output.",
    example="lu, piv = ad.scipy.linalg.lu_factor(ad.tensor([[1.0, 2.0], [3.0, 4.0]]))\nlu",
)


def lu_factor(a: Any, overwrite_a: bool = False, check_finite: bool = True) -> tuple[Any, Any]:
    """The LU factorization with partial pivoting ``(lu, piv)`` (``scipy.linalg.lu_factor``).

    ``lu`` is differentiable (a square matrix ``a``); ``piv``, the row interchanges, is an
    integer array and carries no derivative.

    Examples
    --------
    >>> import autodiffx as ad
    >>> a = ad.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    >>> lu, piv = ad.scipy.linalg.lu_factor(a)
    >>> lu, piv
    (tensor([[3.        , 4.        ],
            [0.33333333, 0.66666667]], grad_fn=<lu_factor>), tensor([1, 1], dtype=int32))
    """
    return _lu(_tensor(a))


def lu_solve(
    lu_and_piv: Any, b: Any, trans: Any = 0, overwrite_b: bool = False, check_finite: bool = True
) -> Tensor:
    """Solve ``a x = b`` (``trans=1``: ``a^T x = b``) from ``lu_factor(a)``
    (``scipy.linalg.lu_solve``), differentiable in ``lu`` (so in ``a``) and ``b``.

    Examples
    --------
    >>> import autodiffx as ad
    >>> a = ad.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    >>> x = ad.scipy.linalg.lu_solve(ad.scipy.linalg.lu_factor(a), ad.tensor([5.0, 11.0]))
    >>> x
    tensor([1., 2.], grad_fn=<getitem>)
    """
    lu, piv = lu_and_piv
    t = _check_complex("lu_solve", lu, trans)
    lu, b = _tensor(lu), _tensor(b)
    p = _perm(np.asarray(piv.data if isinstance(piv, Tensor) else piv))

    def solve(m: Tensor) -> Tensor:
        if t == 0:
            y = _tri(lu, m[..., p, :], trans=0, lower=True, unit=True)
            return _tri(lu, y, trans=0, lower=False, unit=False)
        y = _tri(lu, m, trans=1, lower=False, unit=False)
        return _tri(lu, y, trans=1, lower=True, unit=True)[..., np.argsort(p), :]

    return _solve_vec(solve, b)


# ----- matrix functions --------------------------------------------------------------------
# NOTE: for a primary matrix function f, f([[A, E], [0, A]]) = [[f(A), L_f(A, E)], [0, f(A)]]
# with L_f the Frechet derivative (Higham, Functions of Matrices, 2008, Thm 3.6; Mathias 1996),
# and the adjoint of E -> L_f(A, E) is E -> L_f(A^T, E) since f(A^T) = f(A)^T. Both rules are
# thus the primitive itself on a 2n x 2n matrix: derivatives of every order, batched.
def _frechet(p: Any, a: Any, e: Any) -> Any:
    n = a.shape[-1]
    shape = np.broadcast_shapes(a.shape, e.shape)
    ab = np.broadcast_to(a, shape)
    zero = np.zeros(shape, dtype=np.result_type(a.dtype, e.dtype))
    top = np.concatenate([ab, e], axis=-1)
    bottom = np.concatenate([zero, ab], axis=-1)
    return p.call(np.concatenate([top, bottom], axis=-2))[..., :n, n:]


def _matfun(name: str, kernel: Any, doc: str, example: str) -> Any:
    prim = defprim(
        name,
        kernel,
        vjp=lambda needs, g, out, a: (_frechet(prim, _mT(a), g),),
        numpy_only="scipy.linalg, not in the array API",
        jvp=lambda tans, out, a: _frechet(prim, a, tans[0]),
        doc=doc,
        example=example,
    )
    return prim


def _expm_kernel(a: Any) -> Any:
    return _sl().expm(a)


def _sqrtm_kernel(a: Any) -> Any:
    return _sl().sqrtm(a)


expm = _matfun(
    "expm",
    _expm_kernel,
    "Matrix exponential (scipy.linalg.expm), batched over leading axes.",
    "a = ad.tensor([[0.0, 1.0], [-1.0, 0.0]], requires_grad=True)\nad.scipy.linalg.expm(a)",
)
sqrtm = _matfun(
    "sqrtm",
    _sqrtm_kernel,
    "Principal matrix square root (scipy.linalg.sqrtm), batched over leading axes.",
    "a = ad.tensor([[4.0, 1.0], [0.0, 9.0]], requires_grad=True)\nad.scipy.linalg.sqrtm(a)",
)


# NOTE: logm is the inverse of expm, so L_log(A, E) = L_exp(X)^-1 E with X = logm(A). The
# n^2 x n^2 matrix of E -> L_exp(X, E) comes from one batched expm of the n^2 blocks
# [[X, E_j], [0, X]] (the basis matrices E_j), and both rules are a linear solve with it
# (its transpose for the VJP): fast expm calls instead of SciPy's slow logm on 2n x 2n
# blocks, and differentiable again (expm and solve are). Cost O(n^6): for small matrices.
def _exp_frechet_matrix(x: Any) -> Any:
    """R with R[..., j, :] = vec(L_exp(x, E_j)), so that vec(L_exp(x, E)) = R^T vec(E)."""
    n = x.shape[-1]
    shape = (*x.shape[:-2], n * n, n, n)
    xb = np.broadcast_to(x[..., None, :, :], shape)
    basis = np.broadcast_to(np.eye(n * n, dtype=x.dtype).reshape(n * n, n, n), shape)
    block = np.concatenate(
        [np.concatenate([xb, basis], axis=-1), np.concatenate([0 * basis, xb], axis=-1)],
        axis=-2,
    )
    frechet = expm.call(block)[..., :n, n:]
    return frechet.reshape((*frechet.shape[:-2], n * n))


def _vec_solve(m: Any, e: Any) -> Any:
    n = e.shape[-1]
    v = e.reshape((*e.shape[:-2], n * n, 1))
    return np.linalg.solve(m, v).reshape((*v.shape[:-2], n, n))


def _logm_kernel(a: Any) -> Any:
    return _sl().logm(a)


logm = defprim(
    "logm",
    _logm_kernel,
    numpy_only="scipy.linalg, not in the array API",
    vjp=lambda needs, g, out, a: (_vec_solve(_exp_frechet_matrix(out), g),),
    jvp=lambda tans, out, a: _vec_solve(_mT(_exp_frechet_matrix(out)), tans[0]),
    save_args=False,
    save_out=True,
    doc="Principal matrix logarithm (scipy.linalg.logm), batched; derivatives solve with "
    "the Frechet derivative of expm (an n^2 x n^2 system: meant for small matrices).",
    example="a = ad.tensor([[4.0, 1.0], [0.0, 9.0]], requires_grad=True)\nad.scipy.linalg.logm(a)",
)


# ----- block_diag --------------------------------------------------------------------------
def block_diag(*arrs: Any) -> Tensor:
    """The block-diagonal matrix of the arguments (``scipy.linalg.block_diag``): 0-d and 1-d
    arguments count as 1 x 1 and 1 x n; differentiable in every block.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.scipy.linalg.block_diag(ad.tensor([[1.0, 2.0]]), ad.tensor(3.0))
    tensor([[1., 2., 0.],
            [0., 0., 3.]])
    """
    if not arrs:
        return Tensor(np.zeros((1, 0)))
    blocks = []
    for a in arrs:
        a = _tensor(a)
        if a.ndim > 2:
            raise ValueError(f"block_diag: arguments must have at most 2 dimensions, got {a.shape}")
        blocks.append(a.reshape((1,) * (2 - a.ndim) + tuple(a.shape)))
    rows = sum(b.shape[0] for b in blocks)
    cols = sum(b.shape[1] for b in blocks)
    out, r, c = None, 0, 0
    for b in blocks:
        h, w = b.shape
        part = np.pad(b, ((r, rows - r - h), (c, cols - c - w)))
        out = part if out is None else out + part
        r, c = r + h, c + w
    return out
