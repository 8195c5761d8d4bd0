"""Solvers differentiated through the linear system they solve: custom_linear_solve, cg, minres."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from . import autograd
from ._mode import STATE, enable_grad, is_grad_enabled, no_grad
from ._tensor import Tensor
from .autograd import Function

__all__ = ["ConvergenceError", "ConvergenceWarning", "cg", "custom_linear_solve", "minres"]


class ConvergenceWarning(UserWarning):
    """An iterative solver stopped before reaching its tolerance (the result is returned).

    Examples
    --------
    >>> import autodiffx as ad
    >>> issubclass(ad.linalg.ConvergenceWarning, UserWarning)
    True
    """


class ConvergenceError(RuntimeError):
    """An iterative solver did not converge and ``raise_on_failure=True`` was given.

    Examples
    --------
    >>> import autodiffx as ad
    >>> issubclass(ad.linalg.ConvergenceError, RuntimeError)
    True
    """


def report_failure(message: str, raise_on_failure: bool) -> None:
    """Warn with :class:`ConvergenceWarning`, or raise :class:`ConvergenceError`."""
    if raise_on_failure:
        raise ConvergenceError(message)
    warnings.warn(message, ConvergenceWarning, stacklevel=3)


# ----- running user code on raw values ------------------------------------------------------
@contextlib.contextmanager
def raw_mode() -> Iterator[None]:
    """Neither record a graph nor carry tangents: the forward solves run on values only."""
    st = STATE
    masked = set(st.levels) - st.masked
    st.masked.update(masked)
    try:
        with no_grad():
            yield
    finally:
        st.masked.difference_update(masked)


def recording() -> bool:
    """Whether an op applied now could be recorded (grad mode) or carry a tangent."""
    return is_grad_enabled() or bool(set(STATE.levels) - STATE.masked)


def data(x: Any) -> np.ndarray:
    """The values of a Tensor, array or number as an ndarray."""
    return np.asarray(x.data if isinstance(x, Tensor) else x)


def as_tensor(x: Any) -> Tensor:
    """``x`` itself if it is a Tensor, else a constant Tensor of its values."""
    return x if isinstance(x, Tensor) else Tensor(np.asarray(x))


# ----- the linear system and its transpose ----------------------------------------------------
class LinearSystem:
    """A linear map A (given by ``matvec``) with the solvers of A x = r, A ẋ = ṙ and Aᵀ λ = ḡ.

    ``matvec`` maps a Tensor to a Tensor with autodiffx ops, recorded with respect to the
    Tensors it closes over; ``raw_matvec`` maps an ndarray to an ndarray (what the solvers
    call). ``vecmat``/``raw_vecmat`` are Aᵀ's; when not given they are derived from
    ``matvec`` by reverse mode (A is linear, so one recorded graph serves every product).
    """

    def __init__(
        self,
        matvec: Callable[[Tensor], Tensor],
        solve: Callable[..., Any],
        transpose_solve: Callable[..., Any],
        *,
        symmetric: bool,
        tangent_solve: Callable[..., Any] | None = None,
        raw_matvec: Callable[[np.ndarray], np.ndarray] | None = None,
        vecmat: Callable[[Tensor], Tensor] | None = None,
        raw_vecmat: Callable[[np.ndarray], np.ndarray] | None = None,
        release: Callable[[], None] | None = None,
    ) -> None:
        self.matvec = matvec
        self.solve = solve
        self.transpose_solve = transpose_solve
        self.tangent_solve = tangent_solve or solve
        self.symmetric = symmetric
        self.raw_matvec = raw_matvec or (lambda v: data(matvec(Tensor(np.asarray(v)))))
        if symmetric:
            vecmat, raw_vecmat = matvec, self.raw_matvec
        self._vecmat = vecmat
        self._raw_vecmat = raw_vecmat
        self._cached: tuple[Tensor, Tensor] | None = None
        self._release = release

    def release(self) -> None:
        """Drop the graphs recorded for the transposed products (after a backward solve)."""
        self._cached = None
        if self._release is not None:
            self._release()

    def vecmat(self, u: Tensor) -> Tensor:
        """Aᵀ u, differentiable (with respect to u and the Tensors A closes over)."""
        if self._vecmat is not None:
            return self._vecmat(u)
        with enable_grad():
            v = Tensor(np.zeros_like(data(u)), requires_grad=True)
            (g,) = autograd.grad(
                self.matvec(v), v, grad_outputs=u, create_graph=True, allow_unused=True
            )
        return g if g is not None else Tensor(np.zeros_like(data(u)))

    def raw_vecmat(self, u: np.ndarray) -> np.ndarray:
        """Aᵀ u on values: one backward pass through a graph of ``matvec`` recorded once."""
        if self._raw_vecmat is not None:
            return self._raw_vecmat(u)
        u = np.asarray(u)
        dtype = np.result_type(u.dtype, np.float64)
        cached = self._cached
        if cached is None or cached[0].shape != u.shape or cached[0].dtype != dtype:
            with enable_grad():
                v = Tensor(np.zeros(u.shape, dtype), requires_grad=True)
                cached = self._cached = (v, as_tensor(self.matvec(v)))
        v, y = cached
        if not y.requires_grad:  # A does not depend on v: the zero map
            return np.zeros_like(u)
        (g,) = autograd.grad(y, v, grad_outputs=u, retain_graph=True, allow_unused=True)
        return np.zeros_like(u) if g is None else g.data

    def transposed(self) -> LinearSystem:
        """The system of Aᵀ (its solvers are this system's transpose solver)."""
        if self.symmetric:
            return LinearSystem(
                self.matvec,
                self.transpose_solve,
                self.tangent_solve,
                symmetric=True,
                raw_matvec=self.raw_matvec,
            )
        return LinearSystem(
            self.vecmat,
            self.transpose_solve,
            self.tangent_solve,
            symmetric=False,
            raw_matvec=self.raw_vecmat,
            vecmat=self.matvec,
            raw_vecmat=self.raw_matvec,
        )


def solve_system(system: LinearSystem, b: Any) -> Tensor:
    """x = A⁻¹ b by ``system.solve`` on values, with the derivatives of the linear system."""
    b = as_tensor(b)
    if b.dtype.kind not in "fc":
        b = b.astype(np.float64)
    with raw_mode():
        x = data(system.solve(system.raw_matvec, b.data.copy()))
    if x.shape != b.shape:
        raise ValueError(f"the solver returned shape {x.shape} for a right-hand side {b.shape}")
    return attach_derivatives(system, x.astype(b.dtype, copy=False), b)


def attach_derivatives(
    system: LinearSystem, x: np.ndarray, b: Tensor | None, residual: Callable[[], Any] | None = None
) -> Tensor:
    """The solution ``x`` (values) as a Tensor differentiated as A(θ)⁻¹ b.

    ``r = matvec(x)`` is recorded with ``x`` held constant, so its derivative is Ȧ x (the
    parameters of A enter only through it); the node below maps ḃ, ṙ to A⁻¹ (ḃ − ṙ), and a
    cotangent x̄ to b̄ = λ, r̄ = −λ with Aᵀ λ = x̄. For a root z* of F (``b`` None, A = ∂F/∂z)
    ``residual()`` gives r = F(z*, θ) instead, recorded the same way.
    """
    if not recording():
        return Tensor(x)
    r = as_tensor(system.matvec(Tensor(x)) if residual is None else residual())
    if r.shape != x.shape:
        raise ValueError(f"matvec returned shape {r.shape} for a vector of shape {x.shape}")
    return _ImplicitSolve.apply(b, r, (system, x))


def _warn_higher_order() -> None:
    # NOTE: the parameters enter through r = A(θ) x (or F(z*, θ)) with the solution held
    # constant, which is exact for first derivatives only; a second derivative through them
    # would silently miss the terms in which the solution moves, so it is reported.
    warnings.warn(
        "second and higher derivatives of an implicitly differentiated solution through the "
        "parameters of its operator (the Tensors matvec closes over; for root/fixed_point "
        "anything F depends on) are not exact: the solution is held constant in that term. "
        "First derivatives are exact, and so are those of any order with respect to the "
        "right-hand side b of a linear solve",
        UserWarning,
        stacklevel=4,
    )


class _ImplicitSolve(Function):
    """x = A(θ)⁻¹ b, given the solution: the rules solve with A (JVP) and Aᵀ (VJP)."""

    @staticmethod
    def forward(ctx: Any, b: Any, r: Any, payload: Any) -> Tensor:
        ctx.system, x = payload
        ctx.has_b = b is not None
        return Tensor(x)

    @staticmethod
    def vjp(ctx: Any, g: Any) -> Any:
        if is_grad_enabled() and ctx.needs_input_grad[1]:
            _warn_higher_order()
        lam = solve_system(ctx.system.transposed(), g)
        ctx.system.release()
        return (lam if ctx.has_b else None), -lam, None

    @staticmethod
    def jvp(ctx: Any, tb: Any, tr: Any, _: Any) -> Any:
        nested = any(k not in STATE.masked for k in STATE.levels)
        if nested and (not ctx.has_b or np.any(tr.data)):
            _warn_higher_order()
        rhs = -tr if tb is None else tb - tr
        system = ctx.system
        tangent = LinearSystem(
            system.matvec,
            system.tangent_solve,
            system.transpose_solve,
            symmetric=system.symmetric,
            raw_matvec=system.raw_matvec,
            vecmat=system._vecmat,
            raw_vecmat=system._raw_vecmat,
        )
        return solve_system(tangent, rhs)


def custom_linear_solve(
    matvec: Callable[[Tensor], Any],
    b: Any,
    solve: Callable[[Callable[[np.ndarray], np.ndarray], np.ndarray], Any],
    transpose_solve: Callable[[Callable[[np.ndarray], np.ndarray], np.ndarray], Any] | None = None,
    *,
    symmetric: bool | None = None,
) -> Tensor:
    """Solve A x = b with any solver, differentiated through the linear system (both modes).

    The solver runs on values, never recorded; the derivatives are those of x = A(θ)⁻¹ b
    where ``matvec`` (v ↦ A v, written with autodiffx ops) may close over Tensors θ:

    - JVP: ẋ = A⁻¹ (ḃ − Ȧ x), solved by ``solve`` (Ȧ x is the JVP of ``matvec`` at fixed x);
    - VJP: λ = A⁻ᵀ x̄ solved by ``transpose_solve``, then b̄ = λ and θ̄ = −∂⟨λ, A(θ) x⟩/∂θ, one
      VJP through ``matvec`` at fixed x.

    The cost of a derivative is one solve plus one ``matvec`` pass, whatever the forward
    solve did (it is never unrolled). The derivatives are the exact ones *at the returned x*:
    with an inexact forward solution they are those of the linear system at that x.
    The rules call ``custom_linear_solve`` again, so derivatives of higher order with respect
    to ``b`` are exact; those through the closed-over parameters hold x constant in the
    Ȧ x term (a documented approximation: first derivatives are exact).

    Parameters
    ----------
    matvec : callable
        ``v ↦ A v`` on Tensors of the shape of ``b``.
    b : Tensor or array_like
        Right-hand side (any shape).
    solve : callable
        ``solve(matvec, rhs) -> x`` with A x = rhs; it gets ``matvec`` and ``rhs`` on
        ndarrays and may return an ndarray or a Tensor.
    transpose_solve : callable, optional
        ``transpose_solve(vecmat, rhs) -> x`` with Aᵀ x = rhs (``vecmat`` is u ↦ Aᵀ u,
        derived from ``matvec`` by reverse mode). Without it the system is taken as
        symmetric and ``solve`` serves for both.
    symmetric : bool, optional
        Override: ``symmetric=False`` without ``transpose_solve`` uses ``solve`` on
        ``vecmat`` for the transposed system; ``symmetric=True`` passes ``matvec`` to
        ``transpose_solve``.

    Returns
    -------
    Tensor
        x, of the shape of ``b``.

    Examples
    --------
    >>> import numpy as np
    >>> import autodiffx as ad
    >>> a = ad.tensor([[4.0, 1.0], [1.0, 3.0]], requires_grad=True)
    >>> b = ad.tensor([1.0, 2.0], requires_grad=True)
    >>> dense = lambda mv, r: np.linalg.solve(np.stack([mv(e) for e in np.eye(2)], 1), r)
    >>> x = ad.linalg.custom_linear_solve(lambda v: a @ v, b, dense)
    >>> x.sum().backward()
    >>> np.allclose(x.data, np.linalg.solve(a.data, b.data))
    True
    >>> np.allclose(b.grad.data, np.linalg.solve(a.data.T, np.ones(2)))
    True
    >>> np.allclose(a.grad.data, -np.outer(b.grad.data, x.data))
    True
    """
    sym = (transpose_solve is None) if symmetric is None else bool(symmetric)
    system = LinearSystem(
        lambda v: as_tensor(matvec(v)),
        solve,
        transpose_solve if transpose_solve is not None else solve,
        symmetric=sym,
    )
    return solve_system(system, b)


# ----- SciPy's Krylov solvers -------------------------------------------------------------
def _operator(a: Any) -> tuple[Callable[[Tensor], Any], Callable[[np.ndarray], np.ndarray], int]:
    """(matvec on Tensors, matvec on arrays, n) of a Tensor, array, LinearOperator or callable."""
    import scipy.sparse as sp
    import scipy.sparse.linalg as spla

    if isinstance(a, Tensor) or (isinstance(a, np.ndarray | list) and not callable(a)):
        at = as_tensor(a)
        if at.ndim != 2 or at.shape[0] != at.shape[1]:
            raise ValueError(f"A must be a square matrix, got shape {at.shape}")
        arr = at.data
        return (lambda v: at @ v), (lambda v: arr @ v), at.shape[0]
    if isinstance(a, spla.LinearOperator) or sp.issparse(a):
        op = spla.aslinearoperator(a)
        if op.shape[0] != op.shape[1]:
            raise ValueError(f"A must be square, got shape {op.shape}")
        raw = lambda v: np.asarray(op.matvec(np.asarray(v))).reshape(-1)
        return (lambda v: Tensor(raw(data(v)))), raw, op.shape[0]
    if callable(a):
        return (lambda v: as_tensor(a(v))), None, -1  # type: ignore[return-value]
    raise TypeError(f"A must be a Tensor, an array, a LinearOperator or a callable, not {type(a)}")


def scipy_solver(
    name: str,
    what: str,
    *,
    raise_on_failure: bool,
    x0: Any = None,
    **kw: Any,
) -> Callable[[Callable[[np.ndarray], np.ndarray], np.ndarray], np.ndarray]:
    import scipy.sparse.linalg as spla

    fn = getattr(spla, name)

    def solve(mv: Callable[[np.ndarray], np.ndarray], rhs: np.ndarray) -> np.ndarray:
        shape, n = rhs.shape, rhs.size
        op = spla.LinearOperator(
            (n, n),
            matvec=lambda v: np.asarray(mv(np.asarray(v).reshape(shape))).reshape(n),
            dtype=rhs.dtype,
        )
        start = None if x0 is None else data(x0).reshape(n)
        x, info = fn(op, rhs.reshape(n), x0=start, **kw)
        if info != 0:
            if info < 0:
                raise ConvergenceError(
                    f"{name}: illegal input or breakdown (info={info}) in {what}"
                )
            report_failure(
                f"{name} did not converge in {what} within {info} iterations "
                f"({', '.join(f'{k}={v}' for k, v in kw.items() if k != 'M')})",
                raise_on_failure,
            )
        return x.reshape(shape)

    return solve


def _krylov(
    name: str,
    a: Any,
    b: Any,
    x0: Any,
    kw: dict[str, Any],
    adjoint: dict[str, Any],
    raise_on_failure: bool,
) -> Tensor:
    matvec, raw, n = _operator(a)
    b = as_tensor(b)
    if b.ndim != 1 or (n >= 0 and b.shape[0] != n):
        raise ValueError(
            f"{name}: b must be a vector of length {n if n >= 0 else 'n'}, got {b.shape}"
        )
    if b.dtype.kind == "c":
        raise TypeError(f"{name}: complex systems are not supported")
    adj = {**kw, **{k: v for k, v in adjoint.items() if v is not None}}
    forward = scipy_solver(name, "the solve", raise_on_failure=raise_on_failure, x0=x0, **kw)
    derivative = scipy_solver(
        name, "the derivative (adjoint) solve", raise_on_failure=raise_on_failure, **adj
    )
    system = LinearSystem(
        matvec, forward, derivative, symmetric=True, tangent_solve=derivative, raw_matvec=raw
    )
    return solve_system(system, b)


def cg(
    A: Any,
    b: Any,
    x0: Any = None,
    *,
    rtol: float = 1e-5,
    atol: float = 0.0,
    maxiter: int | None = None,
    M: Any = None,
    adjoint_rtol: float | None = None,
    adjoint_atol: float | None = None,
    adjoint_maxiter: int | None = None,
    raise_on_failure: bool = False,
) -> Tensor:
    """Conjugate gradients (``scipy.sparse.linalg.cg``) for a symmetric positive definite A.

    Differentiated by solving the adjoint system A λ = x̄ with CG again (A is symmetric),
    never by unrolling the iterations: b̄ = λ and the parameters of A get −∂⟨λ, A x⟩/∂θ, one
    VJP through ``A @ x`` at the returned x (Ā = −λ xᵀ for a Tensor A); forward mode solves
    A ẋ = ḃ − Ȧ x. So a derivative costs one CG solve, whatever the forward solve cost, and
    is the exact derivative of the linear system *at the returned x* (to the adjoint
    tolerance).

    Parameters
    ----------
    A : Tensor, array_like, scipy LinearOperator or sparse matrix, or callable
        The matrix, or ``v ↦ A v`` written with autodiffx ops (differentiable with respect
        to the Tensors it closes over). A LinearOperator or sparse matrix is a constant.
    b : Tensor or array_like
        Right-hand side, a vector.
    x0, rtol, atol, maxiter, M
        Passed to ``scipy.sparse.linalg.cg`` for the forward solve (x0 only there).
    adjoint_rtol, adjoint_atol, adjoint_maxiter : optional
        Settings of the derivative solves (default: those of the forward solve).
    raise_on_failure : bool
        Non-convergence (SciPy's ``info > 0``) of any solve, forward or derivative, warns with
        :class:`ConvergenceWarning` and returns the last iterate; with ``True`` it raises
        :class:`ConvergenceError`. ``info < 0`` (breakdown) always raises.

    Returns
    -------
    Tensor
        x (the convergence information is reported as above, not returned).

    Examples
    --------
    >>> import numpy as np
    >>> import autodiffx as ad
    >>> A = ad.tensor([[4.0, 1.0], [1.0, 3.0]], requires_grad=True)
    >>> b = ad.tensor([1.0, 2.0], requires_grad=True)
    >>> x = ad.linalg.cg(A, b, rtol=1e-12)
    >>> (x * x).sum().backward()
    >>> np.allclose(b.grad.data, np.linalg.solve(A.data, 2 * x.data))
    True
    >>> np.allclose(A.grad.data, -np.outer(b.grad.data, x.data))
    True
    """
    return _krylov(
        "cg",
        A,
        b,
        x0,
        {"rtol": rtol, "atol": atol, "maxiter": maxiter, "M": M},
        {"rtol": adjoint_rtol, "atol": adjoint_atol, "maxiter": adjoint_maxiter},
        raise_on_failure,
    )


def minres(
    A: Any,
    b: Any,
    x0: Any = None,
    *,
    rtol: float = 1e-5,
    maxiter: int | None = None,
    M: Any = None,
    adjoint_rtol: float | None = None,
    adjoint_maxiter: int | None = None,
    raise_on_failure: bool = False,
) -> Tensor:
    """MINRES (``scipy.sparse.linalg.minres``) for a symmetric, possibly indefinite, A.

    Differentiated like :func:`cg` (by an adjoint MINRES solve, never through the
    iterations). SciPy's minres has no ``atol``; ``M`` must be symmetric positive definite.

    Parameters
    ----------
    A : Tensor, array_like, scipy LinearOperator or sparse matrix, or callable
        As in :func:`cg`.
    b : Tensor or array_like
        Right-hand side, a vector.
    x0, rtol, maxiter, M
        Passed to ``scipy.sparse.linalg.minres`` for the forward solve (x0 only there).
    adjoint_rtol, adjoint_maxiter : optional
        Settings of the derivative solves (default: those of the forward solve).
    raise_on_failure : bool
        As in :func:`cg`: warn with :class:`ConvergenceWarning`, or raise
        :class:`ConvergenceError`.

    Returns
    -------
    Tensor
        x.

    Examples
    --------
    >>> import numpy as np
    >>> import autodiffx as ad
    >>> A = ad.tensor([[1.0, 2.0], [2.0, -1.0]])
    >>> b = ad.tensor([1.0, 1.0], requires_grad=True)
    >>> x = ad.linalg.minres(A, b, rtol=1e-12)
    >>> x.sum().backward()
    >>> np.allclose(b.grad.data, np.linalg.solve(A.data, np.ones(2)))
    True
    """
    return _krylov(
        "minres",
        A,
        b,
        x0,
        {"rtol": rtol, "maxiter": maxiter, "M": M},
        {"rtol": adjoint_rtol, "maxiter": adjoint_maxiter},
        raise_on_failure,
    )
