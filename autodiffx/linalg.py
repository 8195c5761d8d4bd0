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

__all__ = [
    "EighResult",
    "QRResult",
    "SVDResult",
    "SlogdetResult",
    "cholesky",
    "det",
    "eigh",
    "eigvalsh",
    "inv",
    "lstsq",
    "norm",
    "pinv",
    "qr",
    "slogdet",
    "solve",
    "svd",
    "svdvals",
]

from .linalg_solvers import (
    ConvergenceError,
    ConvergenceWarning,
    cg,
    custom_linear_solve,
    minres,
)

__all__ += ["ConvergenceError", "ConvergenceWarning", "cg", "custom_linear_solve", "minres"]
