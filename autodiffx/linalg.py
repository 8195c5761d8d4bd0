"""``ad.linalg``: NumPy's linear algebra, differentiable in reverse and forward mode."""

from __future__ import annotations

from .ops.composite import norm
from .ops.linalg_decomp import (
    EighResult,
    QRResult,
    SlogdetResult,
    SVDResult,
    cholesky,
    det,
    eigh,
    eigvalsh,
    inv,
    lstsq,
    pinv,
    qr,
    slogdet,
    solve,
    svd,
    svdvals,
)
from .ops.linalg_more import (
    EigResult,
    cond,
    eig,
    eigvals,
    matrix_norm,
    matrix_power,
    matrix_rank,
    multi_dot,
    tensorinv,
    tensorsolve,
    vecdot,
    vector_norm,
)

__all__ = [
    "EigResult",
    "EighResult",
    "QRResult",
    "SVDResult",
    "SlogdetResult",
    "cholesky",
    "cond",
    "det",
    "eig",
    "eigh",
    "eigvals",
    "eigvalsh",
    "inv",
    "lstsq",
    "matrix_norm",
    "matrix_power",
    "matrix_rank",
    "multi_dot",
    "norm",
    "pinv",
    "qr",
    "slogdet",
    "solve",
    "svd",
    "svdvals",
    "tensorinv",
    "tensorsolve",
    "vecdot",
    "vector_norm",
]

from .linalg_solvers import (
    ConvergenceError,
    ConvergenceWarning,
    cg,
    custom_linear_solve,
    minres,
)

__all__ += ["ConvergenceError", "ConvergenceWarning", "cg", "custom_linear_solve", "minres"]
