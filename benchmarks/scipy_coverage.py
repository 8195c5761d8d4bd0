"""Count the SciPy functions of issue 12 that differentiate, as ``numpy_coverage.py`` does.

Run ``python benchmarks/scipy_coverage.py`` (``-v`` lists each name). A ``scipy.special``
ufunc is called as SciPy's own function on Tensors (the dispatch); every other name through
``ad.scipy.<module>``. A name counts when the sum of its result backpropagates a finite
gradient of the right shape to every Tensor argument.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.special

import autodiffx as ad

V = np.array([0.3, 0.6, 0.8])
SPD = np.array([[2.0, 0.5], [0.5, 1.0]])
SPECIAL_1 = (
    "gammaln gamma digamma psi erf erfc erfinv erfcinv ndtr ndtri log_ndtr expit logit "
    "log_expit entr i0 i1 i0e i1e spence logsumexp softmax log_softmax sinc"
)
SPECIAL_2 = "beta betaln xlogy xlog1py rel_entr kl_div"
SPECIAL_ORDER = "polygamma iv ive jv yv multigammaln"
STATS = {
    "norm": ("pdf logpdf cdf logcdf sf logsf", ()),
    "t": ("pdf logpdf", (3.0,)),
    "gamma": ("pdf logpdf cdf", (2.0,)),
    "beta": ("pdf logpdf cdf", (2.0, 3.0)),
    "expon": ("pdf logpdf cdf", ()),
    "laplace": ("pdf logpdf cdf", ()),
    "cauchy": ("pdf logpdf cdf", ()),
    "logistic": ("pdf logpdf cdf", ()),
    "chi2": ("pdf logpdf cdf", (3.0,)),
}


def _special(name: str) -> Callable[..., Any]:
    f = getattr(scipy.special, name)
    return f if isinstance(f, np.ufunc) else getattr(ad.scipy.special, name, None)


def _calls() -> dict[str, tuple[Callable[..., Any], tuple[np.ndarray, ...]]]:
    c: dict[str, tuple[Callable[..., Any], tuple[np.ndarray, ...]]] = {}
    for n in SPECIAL_1.split():
        c[f"special.{n}"] = (lambda x, n=n: _special(n)(x), (V,))
    for n in SPECIAL_2.split():
        c[f"special.{n}"] = (lambda x, y, n=n: _special(n)(x, y), (V, V + 0.5))
    for n in SPECIAL_ORDER.split():
        order = 2 if n == "multigammaln" else 1
        c[f"special.{n}"] = (
            lambda x, n=n, k=order: _special(n)(*((x + 2, k) if k == 2 else (k, x))),
            (V,),
        )
    st = ad.scipy.stats if hasattr(ad, "scipy") else None
    for dist, (methods, shapes) in STATS.items():
        for m in methods.split():
            c[f"stats.{dist}.{m}"] = (
                lambda x, d=dist, m=m, s=shapes: getattr(getattr(st, d), m)(x, *s),
                (V,),
            )
    for m in ("logpmf", "pmf", "cdf"):
        c[f"stats.poisson.{m}"] = (lambda mu, m=m: getattr(st.poisson, m)(2, mu), (V,))
        c[f"stats.binom.{m}"] = (lambda p, m=m: getattr(st.binom, m)(2, 5, p), (V,))
    for m in ("logpdf", "pdf"):
        c[f"stats.multivariate_normal.{m}"] = (
            lambda x, mu, cov, m=m: getattr(st.multivariate_normal, m)(x, mu, cov),
            (V[:2], V[1:], SPD),
        )
    c["stats.dirichlet.logpdf"] = (
        lambda x, a: st.dirichlet.logpdf(x / x.sum(), a),
        (V, V + 1),
    )
    _linalg_and_signal(c)
    return c


def _linalg_and_signal(c: dict[str, Any]) -> None:
    la = ad.scipy.linalg if hasattr(ad, "scipy") else None
    sg = ad.scipy.signal if hasattr(ad, "scipy") else None
    tri = np.array([[2.0, 0.0], [0.5, 1.5]])
    c["linalg.solve_triangular"] = (
        lambda a, b: la.solve_triangular(a, b, lower=True),
        (tri, V[:2]),
    )
    c["linalg.cho_solve"] = (lambda a, b: la.cho_solve(la.cho_factor(a), b), (SPD, V[:2]))
    c["linalg.lu_solve"] = (lambda a, b: la.lu_solve(la.lu_factor(a), b), (SPD, V[:2]))
    for n in ("expm", "sqrtm", "logm"):
        c[f"linalg.{n}"] = (lambda a, n=n: getattr(la, n)(a), (SPD,))
    c["linalg.block_diag"] = (lambda a, b: la.block_diag(a, b), (SPD, V))
    for n in ("convolve", "correlate", "fftconvolve"):
        c[f"signal.{n}"] = (lambda a, b, n=n: getattr(sg, n)(a, b), (V, V[:2]))


def differentiates(call: Callable[..., Any], arrays: tuple[np.ndarray, ...]) -> bool:
    """Whether ``call`` on Tensors requiring grad gives a finite gradient of each shape."""
    ts = [ad.tensor(a, requires_grad=True) for a in arrays]
    try:
        out = call(*ts)
        out = out[0] if isinstance(out, tuple) else out
        gs = ad.autograd.grad(out.sum(), ts, allow_unused=True)
    except Exception:  # any failure (a missing name included) counts as "does not"
        return False
    return all(
        g is not None and g.shape == t.shape and np.isfinite(g.data).all()
        for g, t in zip(gs, ts, strict=True)
    )


def main() -> None:
    calls = _calls()
    with np.errstate(all="ignore"):
        ok = [n for n, (f, a) in calls.items() if differentiates(f, a)]
    if "-v" in sys.argv:
        for n in calls:
            print(f"{'yes' if n in ok else 'no ':3} {n}")
    print(f"{len(ok)} of {len(calls)} SciPy functions differentiate")


if __name__ == "__main__":
    main()
