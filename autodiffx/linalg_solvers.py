"""Solvers differentiated through the linear system they solve: custom_linear_solve, cg, minres."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from ._graph import run_backward
from ._mode import STATE, enable_grad, is_grad_enabled, no_grad
from ._registry import apply, defprim
from ._tensor import Tensor

__all__ = ["ConvergenceError", "ConvergenceWarning", "cg", "custom_linear_solve", "minres"]


class ConvergenceWarning(UserWarning):
    """An iterative solver stopped before reaching its tolerance (the result is returned).

    Examples
    --------
    >>> import warnings
    >>> import numpy as np
    >>> import autodiffx as ad
    >>> a = np.diag([1.0, 10.0, 100.0])
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     x = ad.linalg.cg(a, np.ones(3), maxiter=1)
    >>> [type(w.message).__name__ for w in caught]
    ['ConvergenceWarning']
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
    """Whether an op applied now could be recorded (grad mode) or carry a tangent, or a tape
    sees the ops (a solver inside a function being searched for the Tensors it reads must
    show the Tensors its own operator reads: see :func:`closure_tensors`)."""
    return is_grad_enabled() or bool(set(STATE.levels) - STATE.masked) or STATE.tape is not None


def data(x: Any) -> np.ndarray:
    """The values of a Tensor, array or number as an ndarray."""
    return np.asarray(x.data if isinstance(x, Tensor) else x)


def as_tensor(x: Any) -> Tensor:
    """``x`` itself if it is a Tensor, else a constant Tensor of its values."""
    return x if isinstance(x, Tensor) else Tensor(np.asarray(x))


# ----- the Tensors a function reads, and partial derivatives -----------------------------------
def _collect(a: Any, found: dict[int, Tensor], made: set[int]) -> None:
    if isinstance(a, Tensor):
        if (a._rg or a._tan) and id(a) not in made:
            found.setdefault(id(a), a)
    elif type(a) in (list, tuple):
        for b in a:
            _collect(b, found, made)


def closure_tensors(fn: Callable[..., Any], *args: Any) -> tuple[Any, tuple[Tensor, ...]]:
    """``(fn(*args), the Tensors fn reads that require grad or carry tangents)``.

    ``fn`` runs once on values (no graph, no tangents) under a tape that sees every op: the
    Tensors it closes over (or gets in ``args``) are the arguments of its ops that no op of
    this run produced. They become the inputs of the solution's node, as JAX's
    ``closure_convert`` makes them explicit.
    """
    found: dict[int, Tensor] = {}
    made: set[int] = set()
    keep: list[Any] = []  # the results, so that their ids stay unique during the run

    def tape(p: Any, a: Any, params: Any, res: Any) -> None:
        _collect(a, found, made)
        _collect(tuple(params.values()), found, made)
        keep.append(res)
        made.update(id(o) for o in (res if isinstance(res, tuple) else (res,)))

    st = STATE
    saved = (st.tape, st.levels, st.masked, st._scope)
    st.tape, st.levels, st.masked, st._scope = tape, [], set(), None
    st.sync()
    try:
        with no_grad():
            out = fn(*args)
    finally:
        st.tape, st.levels, st.masked, st._scope = saved
        st.sync()
    return out, tuple(found.values())


def partial_vjp(
    y: Tensor,
    wrt: tuple[Tensor, ...],
    cotangent: Any,
    *,
    stop: tuple[Tensor, ...] = (),
    batch_ndim: int = 0,
    tensors: bool = False,
) -> list[Any]:
    """Per tensor of ``wrt``, ∂⟨cotangent, y⟩/∂w with ``wrt`` and ``stop`` held independent.

    No cotangent flows past a tensor of ``wrt`` or ``stop`` (the graph above them is not
    even walked), so a parameter computed from another one, or the solution z* itself in
    F(z*, θ), is a variable of its own. ``tensors``: the result is differentiable (recorded
    when grad mode is on, carrying tangents in any case); otherwise raw arrays. Entries are
    None where ``y`` does not depend on the tensor.
    """
    idx = [i for i, w in enumerate(wrt) if w._rg]
    if not y._rg or not idx:
        return [None] * len(wrt)
    ids = {id(wrt[i]) for i in idx}
    extra = [s for s in stop if s._rg and id(s) not in ids]
    res = run_backward(
        [y],
        [cotangent],
        retain_graph=True,
        create_graph=tensors,
        targets=[wrt[i] for i in idx] + extra,
        accumulate=False,
        batch_ndim=batch_ndim,
        record=tensors and is_grad_enabled(),
        stop_at_targets=True,
    )
    out: list[Any] = [None] * len(wrt)
    for k, i in enumerate(idx):
        out[i] = res[k]  # type: ignore[index]
    return out


def variable(x: Tensor) -> Tensor:
    """``x`` if it requires grad, else a leaf that does, with ``x``'s values and tangents."""
    if x._rg:
        return x
    v = Tensor(x.data, requires_grad=True)
    v._tan = dict(x._tan) if x._tan else None
    return v


def map_vectors(fn: Callable[[Tensor], Any], x: Tensor, shape: tuple[int, ...]) -> Tensor:
    """``fn`` (on Tensors of ``shape``) applied to every vector of ``x`` (leading batch axes)."""
    if x.ndim == len(shape):
        return as_tensor(fn(x))
    flat = x.reshape((-1, *shape))
    if flat.shape[0] == 0:
        return Tensor(np.zeros(x.shape, x.dtype))
    return np.stack([as_tensor(fn(flat[i])) for i in range(flat.shape[0])]).reshape(x.shape)


def rule_level(tans: tuple[Any, ...], args: tuple[Any, ...]) -> int:
    """The dual level whose tangents ``tans`` (of ``args``) a JVP rule received."""
    for t, a in zip(tans, args):
        if t is not None and isinstance(a, Tensor) and a._tan:
            for level, ta in a._tan.items():
                if ta is t:
                    return level
    raise RuntimeError("internal error: no dual level carries the tangents of this rule")


def tangent_at(level: int, fn: Callable[[], Tensor]) -> Tensor | None:
    """The tangent at ``level`` of ``fn()``, run inside that level's own JVP rule.

    The rule runs with its level masked; ``fn`` runs with it open, so the parameters carry
    their tangents into the result while the solution, whose tangent the rule is computing,
    carries none: the result's tangent is ∂F/∂θ θ̇ at fixed z.
    """
    st = STATE
    st.masked.discard(level)
    try:
        y = fn()
    finally:
        st.masked.add(level)
    return y._tan.get(level) if y._tan else None


# ----- the linear system and its transpose ----------------------------------------------------
Solve = Callable[[Callable[[np.ndarray], np.ndarray], np.ndarray], Any]


class LinearSystem:
    """A linear map A(θ) on arrays of ``shape``, the Tensors θ it reads, and its solvers.

    ``matvec`` maps a Tensor v to A v with autodiffx ops (differentiable in v and θ);
    ``vecmat`` is Aᵀ's (derived from ``matvec`` by a partial VJP when not given);
    ``raw_matvec``/``raw_vecmat`` are both on ndarrays (what the solvers call). ``solve`` is
    the forward solver, ``tangent_solve`` the derivative solver of A and
    ``transpose_solve`` that of Aᵀ; each is ``solver(matvec_on_arrays, rhs) -> x``.
    ``symmetric`` says that A is symmetric at this θ: Aᵀ's products on values are A's.
    """

    def __init__(
        self,
        matvec: Callable[[Tensor], Tensor],
        thetas: tuple[Tensor, ...],
        shape: tuple[int, ...],
        solve: Solve,
        tangent_solve: Solve,
        transpose_solve: Solve,
        *,
        symmetric: bool,
        vecmat: Callable[[Tensor], Tensor] | None = None,
        raw_matvec: Callable[[np.ndarray], np.ndarray] | None = None,
        raw_vecmat: Callable[[np.ndarray], np.ndarray] | None = None,
        release: Callable[[], None] | None = None,
    ) -> None:
        self.matvec = matvec
        self.thetas = thetas
        self.shape = shape
        self.solve = solve
        self.tangent_solve = tangent_solve
        self.transpose_solve = transpose_solve
        self.symmetric = symmetric
        self.raw_matvec = raw_matvec or self._raw_matvec
        if symmetric and raw_vecmat is None:
            raw_vecmat = self.raw_matvec
        self._vecmat = vecmat
        self._raw_vecmat = raw_vecmat
        self._cached: tuple[Tensor, Tensor] | None = None
        self._release = release

    def _raw_matvec(self, v: np.ndarray) -> np.ndarray:
        with raw_mode():
            return data(self.matvec(Tensor(np.asarray(v))))

    def release(self) -> None:
        """Drop the graph recorded for the transposed products (after a backward solve)."""
        self._cached = None
        if self._release is not None:
            self._release()

    def vecmat(self, u: Tensor) -> Tensor:
        """Aᵀ u, differentiable in u and θ (recorded when grad mode is on)."""
        if self._vecmat is not None:
            return self._vecmat(u)
        v = Tensor(np.zeros(self.shape, np.result_type(u.dtype, np.float64)), requires_grad=True)
        with enable_grad():
            y = as_tensor(self.matvec(v))
        (g,) = partial_vjp(y, (v,), u, stop=self.thetas, tensors=True)
        return g if g is not None else Tensor(np.zeros(self.shape, v.dtype))

    def raw_vecmat(self, u: np.ndarray) -> np.ndarray:
        """Aᵀ u on values: one backward pass through a graph of ``matvec`` recorded once."""
        if self._raw_vecmat is not None:
            return self._raw_vecmat(u)
        u = np.asarray(u)
        dtype = np.result_type(u.dtype, np.float64)
        cached = self._cached
        if cached is None or cached[0].dtype != dtype:
            with raw_mode(), enable_grad():
                v = Tensor(np.zeros(self.shape, dtype), requires_grad=True)
                cached = self._cached = (v, as_tensor(self.matvec(v)))
        v, y = cached
        with raw_mode():
            (g,) = partial_vjp(y, (v,), u, stop=self.thetas)
        return np.zeros_like(u) if g is None else g

    def transposed(self) -> LinearSystem:
        """The system of Aᵀ, with the derivative solvers (A's transposed system is A's)."""
        return LinearSystem(
            self.vecmat,
            self.thetas,
            self.shape,
            self.transpose_solve,
            self.transpose_solve,
            self.tangent_solve,
            symmetric=self.symmetric,
            vecmat=self.matvec,
            raw_matvec=self.raw_vecmat,
            raw_vecmat=self.raw_matvec,
            release=self.release,
        )


def _solve_values(system: LinearSystem, b: np.ndarray, solver: Solve) -> np.ndarray:
    """A⁻¹ b on values, for every vector of ``b`` (leading batch axes)."""
    shape = system.shape
    flat = b.reshape((-1, *shape))
    xs = []
    with raw_mode():
        for rhs in flat:
            x = data(solver(system.raw_matvec, rhs.copy()))
            if x.shape != shape:
                raise ValueError(
                    f"the solver returned shape {x.shape} for a right-hand side {shape}"
                )
            xs.append(x.astype(b.dtype, copy=False))
    return np.stack(xs).reshape(b.shape) if xs else np.zeros(b.shape, b.dtype)


def solve_system(system: LinearSystem, b: Any, solver: Solve | None = None) -> Tensor:
    """x = A(θ)⁻¹ b (``solver`` on values; vectors of b along leading axes), differentiable.

    Its rules solve again with this function, so derivatives of every order, in b and in θ,
    are those of A(θ)⁻¹ b (JAX's ``custom_linear_solve``).
    """
    b = as_tensor(b)
    if b.dtype.kind not in "fc":
        b = b.astype(np.float64)
    x = _solve_values(system, b.data, solver or system.solve)
    if not recording():
        return Tensor(x)
    return apply(_SOLVE, (b, *system.thetas), {"system": system, "result": x})


def _solve_vjp(
    needs: Any,
    g: Any,
    out: Any,
    b: Any,
    *thetas: Any,
    system: LinearSystem,
    result: Any,
    nb: int,
) -> tuple[Any, ...]:
    """b̄ = λ with Aᵀ λ = x̄, θ̄ = −∂⟨λ, A(θ) x⟩/∂θ at fixed λ, x."""
    t = system.transposed()
    if isinstance(g, Tensor):  # a recorded pass, or forward-over-reverse: Tensors throughout
        lam = solve_system(t, g, t.tangent_solve)
        x = out
    else:
        lam = _solve_values(t, np.asarray(g), t.tangent_solve)
        x = Tensor(result)
    grads: list[Any] = [None] * len(system.thetas)
    if any(needs[1:]):
        with contextlib.nullcontext() if isinstance(g, Tensor) else raw_mode(), enable_grad():
            y = map_vectors(system.matvec, x, system.shape)
        grads = partial_vjp(
            y,
            system.thetas,
            -lam,
            stop=(x,),
            batch_ndim=nb,
            tensors=isinstance(g, Tensor),
        )
    system.release()
    return (lam if needs[0] else None, *grads)


def _solve_jvp(
    tans: tuple[Any, ...], out: Tensor, b: Any, *thetas: Any, system: LinearSystem, result: Any
) -> Any:
    """ẋ = A⁻¹ (ḃ − Ȧ x), Ȧ x the tangent of A(θ) x at fixed x."""
    rhs = tans[0]
    if any(t is not None for t in tans[1:]):
        level = rule_level(tans[1:], thetas)
        ax = tangent_at(level, lambda: map_vectors(system.matvec, out, system.shape))
        if ax is not None:
            rhs = -ax if rhs is None else rhs - ax
    if rhs is None:
        return None
    return solve_system(system, rhs, system.tangent_solve)


def given_solution(name: str, vjp: Any, jvp: Any, doc: str) -> Any:
    """An unregistered primitive whose forward returns the solution computed beforehand (the
    parameter ``result``) and whose rules differentiate it implicitly: ``linear_solve`` here,
    ``implicit_root`` in ``implicit``."""
    return defprim(name, _given, vjp=vjp, jvp=jvp, save_out=True, register=False, doc=doc)


def _given(*datas: Any, result: Any, **params: Any) -> Any:
    return result


_SOLVE = given_solution(
    "linear_solve",
    _solve_vjp,
    _solve_jvp,
    "x = A(θ)⁻¹ b for a LinearSystem, given the solution (ad.linalg.custom_linear_solve).",
)


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
    The rules are themselves implicit solves (as JAX's ``custom_linear_solve``): the
    Tensors ``matvec`` reads become inputs of the solution's node (found by running it
    once), so derivatives of every order, in ``b`` and in θ, in every transform and
    composition (``hessian``, ``hvp``, ``jvp`` of ``grad``, batched Jacobians) are those of
    A(θ)⁻¹ b. In derivatives, Aᵀ is always the true transpose of ``matvec``; ``symmetric``
    only lets the solvers use ``matvec``'s values for it.

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

    The result x is a Tensor of the shape of ``b``.

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
    b = _rhs(b)
    system = user_system(
        lambda v: as_tensor(matvec(v)),
        b,
        solve,
        solve,
        transpose_solve if transpose_solve is not None else solve,
        symmetric=sym,
    )
    return solve_system(system, b)


def _rhs(b: Any) -> Tensor:
    b = as_tensor(b)
    return b if b.dtype.kind in "fc" else b.astype(np.float64)


def user_system(
    matvec: Callable[[Tensor], Tensor],
    b: Tensor,
    solve: Solve,
    tangent_solve: Solve,
    transpose_solve: Solve,
    *,
    symmetric: bool,
    raw_matvec: Callable[[np.ndarray], np.ndarray] | None = None,
) -> LinearSystem:
    """The LinearSystem of a user's ``matvec`` on vectors like ``b``, with the Tensors it reads
    (found by running it once, when a derivative may be taken)."""
    thetas: tuple[Tensor, ...] = ()
    if recording():
        probe = Tensor(np.zeros(b.shape, b.dtype))
        y, thetas = closure_tensors(matvec, probe)
        if y.shape != b.shape:
            raise ValueError(f"matvec returned shape {y.shape} for a vector of shape {b.shape}")
    return LinearSystem(
        matvec,
        thetas,
        b.shape,
        solve,
        tangent_solve,
        transpose_solve,
        symmetric=symmetric,
        raw_matvec=raw_matvec,
    )


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
    b = _rhs(b)
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
    system = user_system(matvec, b, forward, derivative, derivative, symmetric=True, raw_matvec=raw)
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
    tolerance). Derivatives of every order are those of A⁻¹ b (as ``ad.linalg.solve``'s),
    also along directions of a matrix Tensor A that are not symmetric.

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
