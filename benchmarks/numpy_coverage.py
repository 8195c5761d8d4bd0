"""Count the NumPy functions that differentiate when called on a Tensor requiring grad.

Run ``python benchmarks/numpy_coverage.py`` (``-v`` lists each name); each name is called
through ``np.<name>`` on a float64 Tensor (or two) that requires grad, and counts when the
result's sum backpropagates a finite gradient of the right shape.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import numpy as np

import autodiffx as ad

V = np.array([0.7, 1.3, 0.4, 1.1])
M = np.array([[0.7, 1.3, 0.4], [1.1, 0.5, 0.9]])
Q = np.array([[0.9, 0.2], [0.3, 1.2]])
W = np.array([0.2, 0.5, 0.3, 0.4])
NONDIFF = {"argsort", "argmax", "linalg.matrix_rank"}


def _calls() -> dict[str, tuple[Callable[..., Any], tuple[np.ndarray, ...]]]:
    """name -> (call on tensors, the arrays the tensors are made of)."""
    v, m, q = (V,), (M,), (Q,)
    c: dict[str, tuple[Callable[..., Any], tuple[np.ndarray, ...]]] = {}
    for n in [
        "sort",
        "diff",
        "median",
        "nansum",
        "nanmean",
        "nanmax",
        "nanmedian",
        "ptp",
        "sinc",
        "diag",
        "diagflat",
        "atleast_1d",
        "atleast_2d",
        "atleast_3d",
        "deg2rad",
        "rad2deg",
        "radians",
        "degrees",
        "round",
        "around",
        "rint",
        "floor",
        "ceil",
        "angle",
        "real_if_close",
        "fft.fft",
        "fft.ifft",
        "fft.rfft",
        "fft.fftshift",
        "fft.ifftshift",
        "cumsum",
        "cumprod",
        "flip",
        "trapezoid",
        "sum",
        "mean",
        "prod",
        "std",
        "var",
        "max",
        "min",
        "exp",
        "log",
        "sqrt",
        "sin",
        "tanh",
        "abs",
        "argsort",
        "argmax",
    ]:
        c[n] = (lambda x, n=n: _np(n)(x), v)
    c["percentile"] = (lambda x: np.percentile(x, 30.0), v)
    c["quantile"] = (lambda x: np.quantile(x, 0.3), v)
    for n in ["hstack", "vstack", "column_stack", "dstack", "row_stack", "concatenate", "stack"]:
        c[n] = (lambda x, y, n=n: _np(n)([x, y]), (V, W))
    c["append"] = (lambda x, y: np.append(x, y), (V, W))
    for n in ["array_split", "hsplit", "vsplit", "dsplit", "split"]:
        arr = M.reshape(2, 3, 1).repeat(2, axis=2) if n == "dsplit" else M
        k = 3 if n == "hsplit" else 2
        c[n] = (lambda x, n=n, k=k: _np(n)(x, k)[0], (arr,))
    for n in ["flipud", "fliplr", "rot90", "transpose", "trace", "tril", "triu", "ravel"]:
        c[n] = (lambda x, n=n: _np(n)(x), m)
    c["take_along_axis"] = (lambda x: np.take_along_axis(x, np.argsort(M, 1), 1), m)
    c["put_along_axis"] = (lambda x: _put_along(x), m)
    for n in ["kron", "outer", "dot", "inner", "matmul"]:
        c[n] = (lambda x, y, n=n: _np(n)(x, y), (V, W))
    c["cross"] = (lambda x, y: np.cross(x, y), (V[:3], W[:3]))
    c["polyval"] = (lambda p, x: np.polyval(p, x), (W, V))
    c["interp"] = (lambda fp: np.interp([0.5, 1.5], [0.0, 1.0, 2.0, 3.0], fp), v)
    c["average"] = (lambda x, w: np.average(x, weights=w), (V, W))
    c["meshgrid"] = (lambda x, y: np.meshgrid(x, y)[0] * np.meshgrid(x, y)[1], (V, W))
    for n in ["mod", "fmod", "remainder", "multiply", "maximum", "hypot", "logaddexp"]:
        c[n] = (lambda x, y, n=n: _np(n)(x, y), (V, W))
    c["linspace"] = (lambda a, b: np.linspace(a, b, 5), (np.array(0.5), np.array(2.0)))
    c["pad(reflect)"] = (lambda x: np.pad(x, 1, mode="reflect"), v)
    c["add.at"] = (lambda x: _add_at(x), v)
    c["logaddexp.reduce"] = (lambda x: np.logaddexp.reduce(x), v)
    for n in ["fft.irfft", "fft.hfft", "fft.ihfft"]:
        c[n] = (lambda x, n=n: _np(n)(x), v)
    for n in ["fft.fft2", "fft.ifft2", "fft.rfft2", "fft.irfft2", "fft.fftn", "fft.ifftn"]:
        c[n] = (lambda x, n=n: _np(n)(x), m)
    for n in ["fft.rfftn", "fft.irfftn"]:
        c[n] = (lambda x, n=n: _np(n)(x), m)
    c["logspace"] = (lambda a, b: np.logspace(a, b, 5), (np.array(0.5), np.array(2.0)))
    for mode in ["edge", "wrap", "symmetric", "linear_ramp", "mean", "maximum", "median"]:
        c[f"pad({mode})"] = (lambda x, mode=mode: np.pad(x, 2, mode=mode), m)
    for n in ["maximum.reduce", "subtract.reduce", "maximum.accumulate", "logaddexp.accumulate"]:
        c[n] = (lambda x, n=n: _np(n)(x), m)
    c["multiply.outer"] = (lambda x, y: np.multiply.outer(x, y), (V, W))
    c["sum(where=)"] = (lambda x: np.sum(x, where=M > 0.6), m)
    c["max(initial=)"] = (lambda x: np.max(x, axis=0, initial=0.8), m)
    c["einsum(...)"] = (lambda x: np.einsum("...i,...i->...", x, x, optimize=True), m)
    for n in ["matrix_norm", "vector_norm"]:
        c[f"linalg.{n}"] = (lambda x, n=n: _np(f"linalg.{n}")(x), q)
    c["linalg.vecdot"] = (lambda x, y: np.linalg.vecdot(x, y), (V, W))
    c["linalg.tensorsolve"] = (lambda x: np.linalg.tensorsolve(x, np.ones(2)), q)
    c["linalg.matrix_rank"] = (lambda x: np.linalg.matrix_rank(x), q)
    for n in ["matrix_power", "multi_dot", "cond", "eig", "eigvals", "tensorinv"]:
        c[f"linalg.{n}"] = (lambda x, n=n: _linalg(n, x), q)
    for n in ["inv", "det", "slogdet", "cholesky", "eigh", "svd", "qr", "pinv", "norm"]:
        c[f"linalg.{n}"] = (lambda x, n=n: _linalg(n, x), q)
    return c


def _np(name: str) -> Callable[..., Any]:
    mod: Any = np
    for part in name.split("."):
        mod = getattr(mod, part)
    return mod


def _put_along(x: Any) -> Any:
    y = x * 1.0
    np.put_along_axis(y, np.array([[0], [1]]), 0.0, axis=1)
    return y


def _add_at(x: Any) -> Any:
    y = x * 1.0
    np.add.at(y, [0, 0], 1.0)
    return y


def _linalg(name: str, x: Any) -> Any:
    sym = (x + x.T) * 0.5 + 2.0 * np.eye(2)
    if name == "matrix_power":
        return np.linalg.matrix_power(x, 3)
    if name == "multi_dot":
        return np.linalg.multi_dot([x, x, x])
    if name == "tensorinv":
        return np.linalg.tensorinv(x, ind=1)
    f = getattr(np.linalg, name)
    return f(sym if name in ("cholesky", "eigh") else x)


def _scalar(out: Any) -> Any:
    if isinstance(out, tuple | list):
        out = [o for o in out if isinstance(o, ad.Tensor) and o.dtype.kind in "fc"]
        tot = out[0].real.sum() if out else None
        for o in out[1:]:
            tot = tot + o.real.sum()
        return tot
    if not isinstance(out, ad.Tensor) or not out.requires_grad:
        return None
    return (out.real if out.dtype.kind == "c" else out).sum()


def differentiates(name: str, call: Callable[..., Any], arrays: tuple[np.ndarray, ...]) -> bool:
    """Whether ``call`` on Tensors requiring grad gives a finite gradient of each shape (for
    the non-differentiable ``NONDIFF``: runs and gives a Tensor that does not record)."""
    ts = [ad.tensor(a, requires_grad=True) for a in arrays]
    if name in NONDIFF:  # integer results: they count when they run and do not record
        try:
            out = call(*ts)
        except Exception:  # any failure counts as "does not work"
            return False
        return isinstance(out, ad.Tensor) and not out.requires_grad
    try:
        loss = _scalar(call(*ts))
        if loss is None:
            return False
        gs = ad.autograd.grad(loss, ts, allow_unused=True)
    except Exception:  # any failure counts as "does not differentiate"
        return False
    return all(
        g is not None and g.shape == t.shape and np.isfinite(g.data).all() for g, t in zip(gs, ts)
    )


def main() -> None:
    calls = _calls()
    ok = [n for n, (f, a) in calls.items() if differentiates(n, f, a)]
    if "-v" in sys.argv:
        for n in calls:
            print(f"{'yes' if n in ok else 'no ':3} {n}")
    print(f"{len(ok)} of {len(calls)} NumPy functions differentiate")


if __name__ == "__main__":
    main()
