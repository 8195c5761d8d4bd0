"""``minimize``: ``scipy.optimize.minimize`` driven by AD gradients and Hessian-vector products."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .. import autograd
from .._tensor import Tensor

__all__ = ["minimize"]

# Methods that use a gradient, a Hessian-vector product, or a full Hessian (SciPy 1.11+).
_NO_JAC = {"nelder-mead", "powell", "cobyla", "cobyqa"}
_HESSP = {"newton-cg", "trust-ncg", "trust-krylov", "trust-constr"}
_HESS = {"dogleg", "trust-exact"}


class _Objective:
    """f, its gradient (one reverse pass) and Hessian-vector products (double backward).

    The graph of the gradient at the last point is kept (``create_graph=True``), so the
    many products SciPy asks for at one point cost one backward pass each.
    """

    def __init__(self, f: Callable[..., Any], shape: tuple[int, ...], dtype: Any, args: tuple):
        self.f = f
        self.shape = shape
        self.dtype = dtype
        self.args = args
        self.keep_graph = False
        self._key: bytes | None = None
        self._cache: tuple[Tensor, Tensor, Tensor | None] | None = None

    def _eval(self, xk: np.ndarray) -> tuple[Tensor, Tensor]:
        x = Tensor(np.array(xk, dtype=self.dtype).reshape(self.shape), requires_grad=True)
        y = self.f(x, *self.args)
        if not isinstance(y, Tensor) or y.size != 1:
            raise TypeError(
                "minimize: f must return a scalar Tensor computed from its argument, got "
                f"{type(y).__name__}{'' if not isinstance(y, Tensor) else y.shape}"
            )
        return x, y

    def fun_and_jac(self, xk: np.ndarray) -> tuple[float, np.ndarray]:
        if self.keep_graph:
            _, y, g = self._grad_graph(xk)
        else:
            x, y = self._eval(xk)
            g = autograd.grad(y, x, allow_unused=True)[0] if y.requires_grad else None
        gk = np.zeros(np.size(xk)) if g is None else np.asarray(g.data, np.float64).ravel()
        return y.item(), gk

    def fun(self, xk: np.ndarray) -> float:
        return self._eval(xk)[1].item()

    def _grad_graph(self, xk: np.ndarray) -> tuple[Tensor, Tensor, Tensor | None]:
        key = np.asarray(xk, dtype=np.float64).tobytes()
        if key != self._key or self._cache is None:
            x, y = self._eval(xk)
            g = None
            if y.requires_grad:
                (g,) = autograd.grad(y, x, create_graph=True, allow_unused=True)
            self._key, self._cache = key, (x, y, g)
        return self._cache

    def hessp(self, xk: np.ndarray, v: np.ndarray) -> np.ndarray:
        x, _, g = self._grad_graph(xk)
        if g is None or not g.requires_grad:
            return np.zeros(np.size(xk))
        vt = np.asarray(v, dtype=self.dtype).reshape(self.shape)
        (hv,) = autograd.grad([g], [x], grad_outputs=[vt], retain_graph=True, allow_unused=True)
        return np.zeros(np.size(xk)) if hv is None else np.asarray(hv.data, np.float64).ravel()

    def hess(self, xk: np.ndarray) -> np.ndarray:
        n = np.size(xk)
        eye = np.eye(n)
        cols = [self.hessp(xk, eye[i]) for i in range(n)]
        h = np.stack(cols, axis=1)
        return (h + h.T) / 2


def minimize(
    f: Callable[..., Any],
    x0: Any,
    method: str = "BFGS",
    args: tuple = (),
    **kwargs: Any,
) -> Any:
    """Minimise ``f`` with ``scipy.optimize.minimize``, supplying AD derivatives.

    ``f(x, *args)`` takes a Tensor shaped like ``x0`` and returns a scalar Tensor. Every
    gradient-based method gets ``jac`` (value and gradient from one reverse pass);
    ``Newton-CG``, ``trust-ncg``, ``trust-krylov`` and ``trust-constr`` also get ``hessp``,
    Hessian-vector products by double backward (the gradient is computed with
    ``create_graph=True``, then ``H v`` is the gradient of ``<g, v>``); ``dogleg`` and
    ``trust-exact`` get the full Hessian, one product per column. Other keywords (``bounds``,
    ``constraints``, ``tol``, ``options``, ``callback``, …) go to SciPy unchanged, as do
    explicit ``jac``/``hess``/``hessp``.

    Parameters
    ----------
    f : callable
        The objective.
    x0 : array_like or Tensor
        Starting point (any shape; optimised as float64).
    method : str
        A ``scipy.optimize.minimize`` method (default ``"BFGS"``).
    args : tuple
        Extra arguments for ``f``.

    Returns
    -------
    scipy.optimize.OptimizeResult
        SciPy's result; ``x`` is reshaped to the shape of ``x0``.

    Examples
    --------
    >>> import autodiffx as ad
    >>> def rosen(x):
    ...     return (100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum()
    >>> res = ad.optim.minimize(rosen, [-1.2, 1.0], method="Newton-CG")
    >>> res.success, res.x.round(3)  # (Newton-CG's default tolerance: 1 - 2e-5)
    (True, array([1., 1.]))
    """
    from scipy.optimize import minimize as _scipy_minimize

    x0a = np.asarray(x0.data if isinstance(x0, Tensor) else x0, dtype=np.float64)
    obj = _Objective(f, x0a.shape, np.float64, tuple(args))
    m = method.lower() if isinstance(method, str) else method
    kw = dict(kwargs)
    fun: Callable[..., Any]
    if m in _NO_JAC or "jac" in kw:
        fun = obj.fun
    else:
        fun = obj.fun_and_jac
        kw["jac"] = True
    if m in _HESSP and "hessp" not in kw and "hess" not in kw:
        kw["hessp"] = obj.hessp
        obj.keep_graph = True
    if m in _HESS and "hess" not in kw:
        kw["hess"] = obj.hess
        obj.keep_graph = True
    res = _scipy_minimize(fun, x0a.ravel(), method=method, **kw)
    res.x = np.asarray(res.x).reshape(x0a.shape)
    return res
