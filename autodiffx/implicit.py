"""``ad.implicit``: solutions of equations, differentiated by the implicit function theorem."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ._mode import enable_grad
from ._registry import apply
from ._tensor import Tensor
from .forward import dual_level, make_dual, unpack_dual
from .linalg_solvers import (
    LinearSystem,
    _solve_values,
    as_tensor,
    closure_tensors,
    data,
    given_solution,
    partial_vjp,
    raw_mode,
    recording,
    report_failure,
    rule_level,
    scipy_solver,
    solve_system,
    tangent_at,
    variable,
)

__all__ = ["fixed_point", "root"]

Solver = Callable[[Callable[[np.ndarray], np.ndarray], np.ndarray], Any]


class _Equation:
    """F(z, *params) = 0: values, ∂F/∂z products, the dense ∂F/∂z, and its parameters θ."""

    def __init__(
        self, fun: Callable[..., Any], params: tuple[Any, ...], like: np.ndarray, what: str
    ) -> None:
        self.fun = fun
        self.what = what
        self.params = params
        self.shape = like.shape
        self.dtype = like.dtype
        self.thetas: tuple[Tensor, ...] = ()
        self.solver: Solver = _dense_solve
        self.symmetric = False
        self._graph: tuple[Tensor, Tensor] | None = None

    def __call__(self, z: Any, params: tuple[Any, ...] | None = None) -> Tensor:
        out = as_tensor(self.fun(as_tensor(z), *(self.params if params is None else params)))
        if out.shape != self.shape:
            raise ValueError(
                f"the function returned shape {out.shape} for an unknown of shape {self.shape}"
            )
        if out.dtype.kind == "c":
            raise TypeError(
                f"{self.what}: the function returned {out.dtype} values for a real unknown of "
                f"dtype {self.dtype} (a complex parameter?): only real equations are supported "
                "(scipy.optimize.root is real); write the equation on real and imaginary parts "
                "stacked, e.g. ad.stack([ad.real(w), ad.imag(w)])"
            )
        return out

    def value(self, z: np.ndarray) -> np.ndarray:
        """F(z) on values (call inside ``raw_mode``)."""
        return self(Tensor(np.asarray(z).reshape(self.shape))).data

    def jvp(self, z: Tensor, v: Tensor) -> Tensor:
        """∂F/∂z v by forward mode, differentiable in z, v and θ."""
        with dual_level():
            tangent = unpack_dual(self(make_dual(z, v))).tangent
        return tangent if tangent is not None else Tensor(np.zeros(self.shape, self.dtype))

    def vjp(self, z: Tensor, u: Tensor) -> Tensor:
        """(∂F/∂z)ᵀ u by a partial VJP at fixed θ, differentiable in z, u and θ."""
        zv = variable(z)
        with enable_grad():
            y = self(zv)
        (g,) = partial_vjp(y, (zv,), u, stop=self.thetas, tensors=True)
        return g if g is not None else Tensor(np.zeros(self.shape, self.dtype))

    def release(self) -> None:
        """Drop the recorded graph of ``raw_vjp``."""
        self._graph = None

    def raw_vjp(self, z: np.ndarray, u: np.ndarray) -> np.ndarray:
        """(∂F/∂z)ᵀ u on values: one backward pass through a graph of F recorded once."""
        if self._graph is None:
            fixed = tuple(p.detach() if isinstance(p, Tensor) else p for p in self.params)
            with raw_mode(), enable_grad():
                zl = Tensor(z, requires_grad=True)
                self._graph = (zl, self(zl, fixed))
        zl, y = self._graph
        with raw_mode():
            (g,) = partial_vjp(y, (zl,), u, stop=self.thetas)
        return np.zeros(self.shape, self.dtype) if g is None else g

    def jacobian(self, z: np.ndarray) -> np.ndarray:
        """The dense ∂F/∂z (n × n, n = z.size) by n forward-mode products, on values."""
        n = z.size
        cols = [
            self.jvp(Tensor(z), Tensor(e.reshape(self.shape))).data.reshape(n)
            for e in np.eye(n, dtype=self.dtype)
        ]
        return np.stack(cols, axis=1) if cols else np.zeros((0, 0), self.dtype)

    def system(self, z: Tensor) -> LinearSystem:
        """∂F/∂z at z as a LinearSystem in (z, θ), with the derivative solver."""
        zd = z.data
        return LinearSystem(
            lambda v: self.jvp(z, v),
            (z, *self.thetas),
            self.shape,
            self.solver,
            self.solver,
            self.solver,
            symmetric=self.symmetric,
            # NOTE: symmetric=True promises that F is a gradient: ∂F/∂z is symmetric at every
            # θ, so its transpose's derivatives are its own. (Krylov solvers of a symmetric
            # matrix Tensor get the true transpose: a direction of A need not be symmetric.)
            vecmat=(lambda u: self.jvp(z, u)) if self.symmetric else (lambda u: self.vjp(z, u)),
            raw_matvec=lambda v: self.jvp(Tensor(zd), Tensor(np.asarray(v))).data,
            raw_vecmat=None if self.symmetric else (lambda u: self.raw_vjp(zd, u)),
            release=self.release,
        )


def _dense_solve(mv: Callable[[np.ndarray], np.ndarray], rhs: np.ndarray) -> np.ndarray:
    """Materialise the matrix of ``mv`` (rhs.size products) and solve with LAPACK."""
    n = rhs.size
    cols = [np.asarray(mv(e.reshape(rhs.shape))).reshape(n) for e in np.eye(n, dtype=rhs.dtype)]
    return np.linalg.solve(np.stack(cols, axis=1), rhs.reshape(n)).reshape(rhs.shape)


def _derivative_solver(kind: str | Solver, tol: float, raise_on_failure: bool, n: int) -> Solver:
    if callable(kind):
        return kind
    if kind == "dense":
        return _dense_solve
    what = "the derivative (implicit function theorem) solve"
    if kind == "gmres":
        return scipy_solver(
            "gmres",
            what,
            raise_on_failure=raise_on_failure,
            rtol=tol,
            atol=0.0,
            restart=max(1, min(n, 20)),
        )
    if kind == "cg":
        return scipy_solver("cg", what, raise_on_failure=raise_on_failure, rtol=tol, atol=0.0)
    if kind == "minres":
        return scipy_solver("minres", what, raise_on_failure=raise_on_failure, rtol=tol)
    raise ValueError(
        f"linear_solver must be 'gmres', 'cg', 'minres', 'dense' or a callable, not {kind!r}"
    )


def _differentiate(
    eq: _Equation,
    z: np.ndarray,
    linear_solver: str | Solver,
    linear_tol: float,
    symmetric: bool,
    raise_on_failure: bool,
) -> Tensor:
    """z* as a Tensor with dz*/dθ = −(∂F/∂z)⁻¹ ∂F/∂θ (both modes, any order)."""
    if not recording():
        return Tensor(z)
    eq.solver = _derivative_solver(linear_solver, linear_tol, raise_on_failure, z.size)
    eq.symmetric = symmetric
    _, eq.thetas = closure_tensors(eq, Tensor(z))
    return apply(_ROOT, eq.thetas, {"eq": eq, "result": z})


def _root_vjp(
    needs: Any, g: Any, out: Any, *thetas: Any, eq: _Equation, result: Any, nb: int
) -> Any:
    """θ̄ = −∂⟨λ, F(z*, θ)⟩/∂θ at fixed z*, λ, with (∂F/∂z)ᵀ λ = z̄."""
    tensors = isinstance(g, Tensor)
    z = out if tensors else Tensor(result)
    t = eq.system(z).transposed()
    if tensors:
        lam = solve_system(t, g, t.tangent_solve)
        with enable_grad():
            y = eq(z)
    else:
        lam = _solve_values(t, np.asarray(g), t.tangent_solve)
        with raw_mode(), enable_grad():
            y = eq(z)
    grads = partial_vjp(y, eq.thetas, -lam, stop=(z,), batch_ndim=nb, tensors=tensors)
    eq.release()
    return tuple(grads)


def _root_jvp(tans: tuple[Any, ...], out: Tensor, *thetas: Any, eq: _Equation, result: Any) -> Any:
    """ż = −(∂F/∂z)⁻¹ ṙ with ṙ the tangent of F(z*, θ) at fixed z*."""
    r = tangent_at(rule_level(tans, thetas), lambda: eq(out))
    if r is None:
        return None
    system = eq.system(out)
    return solve_system(system, -r, system.tangent_solve)


_ROOT = given_solution(
    "implicit_root",
    _root_vjp,
    _root_jvp,
    "z* with F(z*, θ) = 0, given the solution (ad.implicit.root and fixed_point).",
)


def _start(z0: Any, what: str) -> np.ndarray:
    z = np.array(data(z0), copy=True)
    if z.dtype.kind == "c":
        raise TypeError(
            f"{what}: complex unknowns are not supported (got {z.dtype}): z is a real "
            "floating array (float32 or float64; integers become float64). Solve for the real "
            "and imaginary parts stacked as one real unknown of twice the size"
        )
    if z.dtype.kind != "f":
        z = z.astype(np.float64)
    return z


def _newton(
    eq: _Equation, z: np.ndarray, tol: float, maxiter: int, raise_on_failure: bool, what: str
) -> np.ndarray:
    """Newton's method with the dense AD Jacobian (for a small unknown)."""
    n = z.size
    for _ in range(maxiter):
        f = eq.value(z)
        if np.max(np.abs(f), initial=0.0) <= tol:
            return z
        step = np.linalg.lstsq(eq.jacobian(z), f.reshape(n), rcond=None)[0]
        z = z - step.reshape(z.shape)
    f = eq.value(z)
    if not np.max(np.abs(f), initial=0.0) <= tol:
        report_failure(
            f"{what}: Newton did not converge in {maxiter} iterations "
            f"(max |F| = {np.max(np.abs(f)):.3g} > tol = {tol:g})",
            raise_on_failure,
        )
    return z


def root(
    F: Callable[..., Any],
    z0: Any,
    *params: Any,
    solver: str | Callable[..., Any] = "hybr",
    tol: float = 1e-10,
    maxiter: int | None = None,
    jac: bool = True,
    options: dict[str, Any] | None = None,
    linear_solver: str | Solver = "gmres",
    linear_tol: float = 1e-10,
    symmetric: bool = False,
    raise_on_failure: bool = False,
) -> Tensor:
    """A root z* of ``F(z, *params) = 0``, differentiated by the implicit function theorem.

    The forward solve runs on values (no graph); the derivatives are those of z*(θ) defined
    by F(z*(θ), θ) = 0: dz*/dθ = −(∂F/∂z)⁻¹ ∂F/∂θ. Reverse mode solves (∂F/∂z)ᵀ λ = z̄
    matrix-free (each product one VJP of F with respect to z, with ``linear_solver``) and
    then gives θ̄ = −(∂F/∂θ)ᵀ λ by one VJP of F; forward mode gives
    ż = −(∂F/∂z)⁻¹ (∂F/∂θ θ̇) (products by forward mode). The parameters may be passed in
    ``params`` or closed over by F: both are differentiated (F runs once more on values to
    find the Tensors it reads). The derivatives are exact at the returned z (a zero of F to
    the solver's tolerance), to every order: the rules are themselves implicit solves (as
    JAX's ``custom_root``), so ``hessian``, ``hvp``, ``jvp`` of ``grad`` and batched
    Jacobians are those of z*(θ).

    Parameters
    ----------
    F : callable
        ``F(z, *params) -> Tensor`` of z's shape, written with autodiffx ops.
    z0 : Tensor or array_like
        Starting point (its shape is the unknown's; it is not differentiated). Real:
        a complex z0, or an F with complex values, raises ``TypeError``.
    *params : Tensor, array_like or number
        Passed to F after z.
    solver : str or callable
        ``"hybr"`` (default), ``"lm"`` or any ``scipy.optimize.root`` method; ``"newton"``
        (Newton with the dense AD Jacobian, for a small z); or ``solver(fun, z0) -> z`` with
        ``fun`` mapping an ndarray to the ndarray F(z).
    tol : float
        ``tol`` of ``scipy.optimize.root``; for ``"newton"``, the bound on ``max |F(z)|``.
    maxiter : int, optional
        Newton's iteration limit (default 50); SciPy's limits go in ``options``.
    jac : bool
        Give SciPy's ``"hybr"`` and ``"lm"`` the dense AD Jacobian ∂F/∂z (z.size forward
        products per evaluation); False lets SciPy use finite differences.
    options : dict, optional
        ``options`` of ``scipy.optimize.root``.
    linear_solver : {"gmres", "cg", "minres", "dense"} or callable
        Solver of the derivative's linear systems (``"cg"``/``"minres"`` need
        ``symmetric=True`` and, for CG, a positive definite ∂F/∂z; ``"dense"`` materialises
        ∂F/∂z; a callable is ``solve(matvec, rhs) -> x`` on ndarrays).
    linear_tol : float
        Relative tolerance of the Krylov derivative solves.
    symmetric : bool
        Declare ∂F/∂z symmetric (F a gradient): the transposed products are then the
        forward-mode ones.
    raise_on_failure : bool
        Non-convergence warns with ``ad.linalg.ConvergenceWarning`` (the last iterate is
        returned), or raises ``ad.linalg.ConvergenceError`` when True.

    Returns
    -------
    Tensor
        z*, of the shape of ``z0``.

    Examples
    --------
    >>> import autodiffx as ad
    >>> a = ad.tensor(2.0, requires_grad=True)
    >>> z = ad.implicit.root(lambda z, a: z ** 3 - a, 1.0, a)  # z = a^(1/3)
    >>> z.backward()
    >>> round(z.item(), 8), round(a.grad.item(), 8)  # dz/da = 1 / (3 z²)
    (1.25992105, 0.20998684)
    """
    what = "implicit.root"
    z = _start(z0, what)
    eq = _Equation(F, params, z, what)
    with raw_mode():
        if callable(solver):
            z = _start(solver(eq.value, z), what).reshape(z.shape)
        elif solver == "newton":
            z = _newton(eq, z, tol, 50 if maxiter is None else maxiter, raise_on_failure, what)
        else:
            import scipy.optimize

            shape = z.shape
            use_jac = jac and solver in ("hybr", "lm")
            res = scipy.optimize.root(
                lambda v: eq.value(v.reshape(shape)).reshape(-1),
                z.reshape(-1),
                method=solver,
                jac=(lambda v: eq.jacobian(v.reshape(shape))) if use_jac else None,
                tol=tol,
                options=options,
            )
            if not res.success:
                report_failure(
                    f"{what}: scipy.optimize.root ({solver}): {res.message}", raise_on_failure
                )
            z = np.asarray(res.x, dtype=z.dtype).reshape(shape)
    return _differentiate(eq, z, linear_solver, linear_tol, symmetric, raise_on_failure)


def _anderson(
    g: Callable[[np.ndarray], np.ndarray], z: np.ndarray, tol: float, maxiter: int, m: int
) -> tuple[np.ndarray, bool]:
    """Anderson acceleration (type II, memory m) of z ↦ g(z); returns (z, converged)."""
    shape, xs, gs = z.shape, [], []
    x = z.reshape(-1)
    for _ in range(maxiter):
        gx = g(x.reshape(shape)).reshape(-1)
        f = gx - x
        if np.max(np.abs(f), initial=0.0) <= tol * max(1.0, np.max(np.abs(gx), initial=0.0)):
            return gx.reshape(shape), True
        xs.append(f)
        gs.append(gx)
        if len(xs) > m + 1:
            xs.pop(0)
            gs.pop(0)
        if len(xs) == 1:
            x = gx
            continue
        df = np.diff(np.stack(xs, axis=1), axis=1)
        dg = np.diff(np.stack(gs, axis=1), axis=1)
        gamma = np.linalg.lstsq(df, f, rcond=None)[0]
        x = gx - dg @ gamma
    return x.reshape(shape), False


def fixed_point(
    g: Callable[..., Any],
    z0: Any,
    *params: Any,
    solver: str | Callable[..., Any] = "iterate",
    tol: float = 1e-10,
    maxiter: int = 1000,
    memory: int = 5,
    linear_solver: str | Solver = "gmres",
    linear_tol: float = 1e-10,
    raise_on_failure: bool = False,
) -> Tensor:
    """A fixed point ``z* = g(z*, *params)``, differentiated by the implicit function theorem.

    z* is the root of F(z, θ) = z − g(z, θ), so dz*/dθ = (I − ∂g/∂z)⁻¹ ∂g/∂θ: reverse mode
    solves (I − ∂g/∂z)ᵀ λ = z̄ (VJPs of g, ``linear_solver``) and gives θ̄ = (∂g/∂θ)ᵀ λ;
    forward mode solves (I − ∂g/∂z) ż = ∂g/∂θ θ̇. Neither stores nor replays the forward
    iterations: memory and cost do not grow with their number (a "deep equilibrium" layer).
    Derivatives of every order are exact, as in :func:`root`.

    Parameters
    ----------
    g : callable
        ``g(z, *params) -> Tensor`` of z's shape, written with autodiffx ops.
    z0 : Tensor or array_like
        Starting point (not differentiated). Real, as in :func:`root`.
    *params : Tensor, array_like or number
        Passed to g after z (Tensors closed over by g are differentiated as well).
    solver : {"iterate", "anderson", "newton"} or callable
        Plain iteration z ← g(z) (default), Anderson acceleration, Newton on z − g(z) with the
        dense AD Jacobian (small z), or ``solver(g, z0) -> z`` with ``g`` on ndarrays.
    tol : float
        Stop when ``max |g(z) − z| <= tol · max(1, max |g(z)|)`` (Newton:
        ``max |z − g(z)| <= tol``).
    maxiter : int
        Iteration limit of the forward solve.
    memory : int
        Anderson's number of past iterates.
    linear_solver, linear_tol, raise_on_failure
        As in :func:`root`, which also gives the result (z*, a Tensor of z0's shape).

    Examples
    --------
    >>> import autodiffx as ad
    >>> a = ad.tensor(0.5, requires_grad=True)
    >>> z = ad.implicit.fixed_point(lambda z, a: ad.cos(a * z), 0.0, a)
    >>> z.backward()
    >>> zs = z.item()  # dz/da = -z sin(a z) / (1 + a sin(a z))
    >>> abs(a.grad.item() - (-zs * ad.sin(a * zs) / (1 + a * ad.sin(a * zs))).item()) < 1e-9
    True
    """
    what = "implicit.fixed_point"
    z = _start(z0, what)
    eq = _Equation(lambda z, *p: z - g(z, *p), params, z, what)
    gval = _Equation(g, params, z, what)
    with raw_mode():
        if callable(solver):
            z = _start(solver(gval.value, z), what).reshape(z.shape)
        elif solver == "newton":
            z = _newton(eq, z, tol, maxiter, raise_on_failure, what)
        elif solver in ("iterate", "anderson"):
            if solver == "anderson":
                z, ok = _anderson(gval.value, z, tol, maxiter, memory)
            else:
                ok = False
                for _ in range(maxiter):
                    new = gval.value(z)
                    step = np.max(np.abs(new - z), initial=0.0)
                    z = new
                    if step <= tol * max(1.0, np.max(np.abs(new), initial=0.0)):
                        ok = True
                        break
            if not ok:
                report_failure(
                    f"{what}: {solver} did not converge in {maxiter} iterations (tol = {tol:g})",
                    raise_on_failure,
                )
        else:
            raise ValueError(
                f"solver must be 'iterate', 'anderson', 'newton' or a callable, not {solver!r}"
            )
    return _differentiate(eq, z, linear_solver, linear_tol, False, raise_on_failure)
