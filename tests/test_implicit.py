"""Implicit differentiation: custom_linear_solve, cg/minres by adjoint solves, root, fixed_point.

"Equal to the dense solve" when the forward solve is inexact: the derivatives are the exact
derivatives of the linear system *at the returned x* (b̄ = A⁻ᵀ ∇L(x), Ā = −b̄ xᵀ), whatever
tolerance the forward solve used; with a converged forward solve they are the derivatives
of A⁻¹b. Both are checked against np.linalg.solve closed forms, and the backward cost is
checked not to depend on the number of forward iterations.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

import autodiffx as ad
from autodiffx import implicit

TOL = 1e-8


def spd(rng, n, cond=10.0):
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return q @ np.diag(np.logspace(0, np.log10(cond), n)) @ q.T


def dense_solve(mv, rhs):
    """A user solver: materialise the matrix of ``mv`` and call LAPACK."""
    n = rhs.size
    return np.linalg.solve(np.stack([mv(e) for e in np.eye(n)], axis=1), rhs)


def gmres_solve(mv, rhs):
    """A user solver for a right-hand side of any shape (SciPy works on vectors)."""
    n, shape = rhs.size, rhs.shape
    op = spla.LinearOperator((n, n), matvec=lambda v: mv(v.reshape(shape)).ravel())
    x, info = spla.gmres(op, rhs.ravel(), rtol=1e-13, atol=0.0)
    assert info == 0
    return x.reshape(shape)


def vjp_jvp(f, inputs, u, vs):
    """(⟨u, J v⟩ by forward mode, ⟨Jᵀ u, v⟩ by reverse mode) of f at ``inputs``."""
    ts = [ad.tensor(x, requires_grad=True) for x in inputs]
    grads = ad.autograd.grad(f(*ts), ts, grad_outputs=u)
    with ad.forward.dual_level():
        duals = [ad.forward.make_dual(ad.tensor(x), ad.tensor(v)) for x, v in zip(inputs, vs)]
        tangent = ad.forward.unpack_dual(f(*duals)).tangent
    return float(np.sum(u * tangent.data)), float(
        sum(np.sum(g.data * v) for g, v in zip(grads, vs))
    )


# ----- custom_linear_solve -----------------------------------------------------------------
def test_custom_linear_solve_symmetric_matches_dense(rng):
    a0, b0, c = spd(rng, 6), rng.standard_normal(6), rng.standard_normal(6)
    a = ad.tensor(a0, requires_grad=True)
    b = ad.tensor(b0, requires_grad=True)
    x = ad.linalg.custom_linear_solve(lambda v: a @ v, b, dense_solve)
    (ad.sin(x) * c).sum().backward()
    xs = np.linalg.solve(a0, b0)
    bbar = np.linalg.solve(a0.T, np.cos(xs) * c)
    assert np.abs(x.data - xs).max() < TOL
    assert np.abs(b.grad.data - bbar).max() < TOL
    assert np.abs(a.grad.data + np.outer(bbar, xs)).max() < TOL


def test_custom_linear_solve_nonsymmetric_uses_transpose_solve(rng):
    a0 = spd(rng, 5) + rng.standard_normal((5, 5))
    b0, u = rng.standard_normal(5), rng.standard_normal(5)
    seen = []

    def transpose_solve(vecmat, rhs):
        e = np.eye(5)[1]
        seen.append(np.abs(vecmat(e) - a0.T @ e).max())  # vecmat is u ↦ Aᵀ u
        return dense_solve(vecmat, rhs)

    a = ad.tensor(a0, requires_grad=True)
    b = ad.tensor(b0, requires_grad=True)
    x = ad.linalg.custom_linear_solve(lambda v: a @ v, b, dense_solve, transpose_solve)
    ga, gb = ad.autograd.grad(x, [a, b], grad_outputs=u)
    bbar = np.linalg.solve(a0.T, u)
    assert seen and max(seen) < 1e-14
    assert np.abs(gb.data - bbar).max() < TOL
    assert np.abs(ga.data + np.outer(bbar, np.linalg.solve(a0, b0))).max() < TOL


def test_custom_linear_solve_symmetric_false_reuses_solve(rng):
    a0 = spd(rng, 5) + rng.standard_normal((5, 5))

    def f(a, b):
        return ad.linalg.custom_linear_solve(lambda v: a @ v, b, gmres_solve, symmetric=False)

    assert ad.fd.gradcheck(f, a0, rng.standard_normal(5))


def test_gradient_wrt_matrix_parameter_closed_over(rng):
    """A = WᵀW + I built outside (a non-leaf Tensor) and W used inside matvec."""
    w0, b0, c = rng.standard_normal((4, 6)), rng.standard_normal(6), rng.standard_normal(6)
    w1 = ad.tensor(w0, requires_grad=True)
    k = w1.T @ w1 + ad.eye(6)
    x1 = ad.linalg.custom_linear_solve(lambda v: k @ v, ad.tensor(b0), dense_solve)
    (x1 * c).sum().backward()
    w2 = ad.tensor(w0, requires_grad=True)
    x2 = ad.linalg.custom_linear_solve(lambda v: w2.T @ (w2 @ v) + v, ad.tensor(b0), dense_solve)
    (x2 * c).sum().backward()
    w3 = ad.tensor(w0, requires_grad=True)
    ref = ad.linalg.solve(w3.T @ w3 + ad.eye(6), ad.tensor(b0))  # implicit rule, dense
    (ref * c).sum().backward()
    assert np.abs(w1.grad.data - w3.grad.data).max() < TOL
    assert np.abs(w2.grad.data - w3.grad.data).max() < TOL


def test_custom_linear_solve_any_shape_and_second_order_in_b(rng):
    a0 = spd(rng, 6)

    def f(b):
        x = ad.linalg.custom_linear_solve(
            lambda v: ad.reshape(ad.tensor(a0) @ ad.reshape(v, (6,)), (2, 3)), b, gmres_solve
        )
        return (x**3).sum()

    b0 = rng.standard_normal((2, 3))
    assert ad.fd.gradcheck(f, b0)
    assert ad.fd.gradgradcheck(f, b0)


def test_custom_linear_solve_without_grad_records_nothing(rng):
    a0 = spd(rng, 4)
    calls = []
    a = ad.tensor(a0, requires_grad=True)

    def mv(v):
        calls.append(1)
        return a @ v

    with ad.no_grad():
        x = ad.linalg.custom_linear_solve(mv, np.ones(4), dense_solve)
    assert not x.requires_grad and len(calls) == 4  # the solver's products only


# ----- gradcheck on every solver, both modes -----------------------------------------------
def _root_pair(a, b, **kw):
    def F(z, a, b):
        return ad.stack([z[0] + z[1] - a, z[0] * z[1] - b])

    return implicit.root(F, np.array([3.0, 0.5]), a, b, **kw)


def _deq(solver):
    def f(w, x):
        return implicit.fixed_point(
            lambda z, w, x: ad.tanh(z @ w.T + x), np.zeros((2, 4)), w, x, solver=solver
        )

    return f


CASES = [
    (
        "custom_linear_solve",
        lambda a, b: ad.linalg.custom_linear_solve(lambda v: a @ v, b, dense_solve),
        lambda rng: (spd(rng, 4), rng.standard_normal(4)),
    ),
    (
        "custom_linear_solve_transpose",
        lambda a, b: ad.linalg.custom_linear_solve(
            lambda v: a @ v, b, gmres_solve, lambda vm, r: dense_solve(vm, r)
        ),
        lambda rng: (spd(rng, 4) + rng.standard_normal((4, 4)), rng.standard_normal(4)),
    ),
    (
        "cg_matrix",
        lambda a, b: ad.linalg.cg(a, b, rtol=1e-13),
        lambda rng: (spd(rng, 4), rng.standard_normal(4)),
    ),
    (
        "cg_callable",
        lambda w, b: ad.linalg.cg(lambda v: w.T @ (w @ v) + 0.5 * v, b, rtol=1e-13),
        lambda rng: (rng.standard_normal((3, 4)), rng.standard_normal(4)),
    ),
    (
        "minres_indefinite",
        lambda a, b: ad.linalg.minres(a, b, rtol=1e-13),
        lambda rng: (np.diag([3.0, -2.0, 1.5, -4.0]) + 0.1, rng.standard_normal(4)),
    ),
    ("root_hybr", _root_pair, lambda rng: (3.0, 2.0)),
    ("root_lm", lambda a, b: _root_pair(a, b, solver="lm", jac=False), lambda rng: (3.0, 2.0)),
    (
        "root_newton_dense",
        lambda a, b: _root_pair(a, b, solver="newton", linear_solver="dense"),
        lambda rng: (3.0, 2.0),
    ),
    (
        "fixed_point_iterate",
        _deq("iterate"),
        lambda rng: (0.3 * rng.standard_normal((4, 4)), rng.standard_normal((2, 4))),
    ),
    (
        "fixed_point_anderson",
        _deq("anderson"),
        lambda rng: (0.3 * rng.standard_normal((4, 4)), rng.standard_normal((2, 4))),
    ),
    (
        "fixed_point_newton",
        _deq("newton"),
        lambda rng: (0.3 * rng.standard_normal((4, 4)), rng.standard_normal((2, 4))),
    ),
]


@pytest.mark.parametrize(("name", "f", "make_inputs"), CASES, ids=[c[0] for c in CASES])
def test_gradcheck(name, f, make_inputs, rng):
    inputs = make_inputs(rng)
    assert ad.fd.gradcheck(f, *inputs, modes=("rev", "fwd"))
    # ⟨u, J v⟩ (forward mode) = ⟨Jᵀ u, v⟩ (reverse mode)
    out = f(*[ad.tensor(x) for x in inputs])
    u = rng.standard_normal(out.shape)
    vs = [rng.standard_normal(np.shape(x)) for x in inputs]
    fwd, rev = vjp_jvp(f, [np.asarray(x, dtype=float) for x in inputs], u, vs)
    assert abs(fwd - rev) <= 1e-9 * max(1.0, abs(rev))


# ----- cg / minres -----------------------------------------------------------------------------
def test_cg_inexact_forward_gives_exact_derivatives_at_the_returned_x(rng):
    n = 30
    a0, b0 = spd(rng, n, cond=1e3), rng.standard_normal(n)
    for rtol, maxiter in [(1e-3, None), (1e-12, 5), (1e-12, 1000)]:
        a = ad.tensor(a0, requires_grad=True)
        b = ad.tensor(b0, requires_grad=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ad.linalg.ConvergenceWarning)
            x = ad.linalg.cg(
                a, b, rtol=rtol, maxiter=maxiter, adjoint_rtol=1e-14, adjoint_maxiter=1000
            )
        (x**3).sum().backward()
        bbar = np.linalg.solve(a0.T, 3 * x.data**2)  # closed form at the returned x
        assert np.abs(b.grad.data - bbar).max() < TOL
        assert np.abs(a.grad.data + np.outer(bbar, x.data)).max() < TOL


def test_cg_converged_matches_dense_solve(rng):
    n = 30
    a0, b0 = spd(rng, n, cond=1e3), rng.standard_normal(n)
    a, b = ad.tensor(a0, requires_grad=True), ad.tensor(b0, requires_grad=True)
    (ad.linalg.cg(a, b, rtol=1e-14, maxiter=1000) ** 3).sum().backward()
    a2, b2 = ad.tensor(a0, requires_grad=True), ad.tensor(b0, requires_grad=True)
    (ad.linalg.solve(a2, b2) ** 3).sum().backward()
    assert np.abs(b.grad.data - b2.grad.data).max() < TOL
    assert np.abs(a.grad.data - a2.grad.data).max() < TOL


def test_backward_cost_does_not_depend_on_forward_iterations(rng):
    n = 40
    a0, b0, c = spd(rng, n, cond=1e3), rng.standard_normal(n), rng.standard_normal(n)
    counts = []
    for maxiter in (3, 20, 1000):
        calls = [0]
        a = ad.tensor(a0, requires_grad=True)

        def mv(v, a=a, calls=calls):
            calls[0] += 1
            return a @ v

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ad.linalg.ConvergenceWarning)
            x = ad.linalg.cg(mv, b0, rtol=1e-12, maxiter=maxiter, adjoint_maxiter=1000)
        forward = calls[0]
        (x * c).sum().backward()  # x̄ = c: the same adjoint system whatever x is
        counts.append((forward, calls[0] - forward))
        assert a.grad is not None
    forwards, backwards = zip(*counts)
    assert forwards[0] < forwards[1] < forwards[2]
    assert len(set(backwards)) == 1, counts  # one adjoint CG solve, no replay of iterations


def test_cg_reports_non_convergence(rng):
    a0, b0 = spd(rng, 20, cond=1e4), rng.standard_normal(20)
    with pytest.warns(ad.linalg.ConvergenceWarning, match="cg did not converge"):
        ad.linalg.cg(a0, b0, maxiter=2)
    with pytest.raises(ad.linalg.ConvergenceError):
        ad.linalg.cg(a0, b0, maxiter=2, raise_on_failure=True)
    b = ad.tensor(b0, requires_grad=True)
    x = ad.linalg.cg(a0, b, rtol=1e-12)
    with pytest.warns(ad.linalg.ConvergenceWarning, match="derivative"):
        ad.linalg.cg(a0, b, rtol=1e-12, adjoint_maxiter=2).sum().backward()
    assert x.shape == (20,)
    assert issubclass(ad.linalg.ConvergenceWarning, UserWarning)


def test_cg_linear_operator_and_sparse_are_constants(rng):
    a0, b0, c = spd(rng, 6), rng.standard_normal(6), rng.standard_normal(6)
    expected = np.linalg.solve(a0, c)
    for op in (spla.aslinearoperator(a0), sp.csr_matrix(a0)):
        b = ad.tensor(b0, requires_grad=True)
        x = ad.linalg.cg(op, b, rtol=1e-14)
        (x * c).sum().backward()
        assert np.abs(x.data - np.linalg.solve(a0, b0)).max() < TOL
        assert np.abs(b.grad.data - expected).max() < TOL


def test_cg_passes_x0_and_preconditioner(rng):
    a0, b0 = spd(rng, 8, cond=100.0), rng.standard_normal(8)
    xs = np.linalg.solve(a0, b0)
    x = ad.linalg.cg(a0, b0, x0=xs, maxiter=1, raise_on_failure=True)  # converged at x0
    assert np.abs(x.data - xs).max() < 1e-8
    m = spla.aslinearoperator(np.linalg.inv(a0))  # exact preconditioner: one iteration
    b = ad.tensor(b0, requires_grad=True)
    x = ad.linalg.cg(a0, b, M=m, maxiter=2, rtol=1e-12, raise_on_failure=True)
    x.sum().backward()
    assert np.abs(b.grad.data - np.linalg.solve(a0, np.ones(8))).max() < TOL


def test_minres_matches_dense(rng):
    a0 = np.diag([3.0, -2.0, 1.5, -4.0, 2.5]) + 0.2 * np.ones((5, 5))
    b0, c = rng.standard_normal(5), rng.standard_normal(5)
    a, b = ad.tensor(a0, requires_grad=True), ad.tensor(b0, requires_grad=True)
    (ad.linalg.minres(a, b, rtol=1e-14) * c).sum().backward()
    bbar = np.linalg.solve(a0.T, c)
    assert np.abs(b.grad.data - bbar).max() < TOL
    assert np.abs(a.grad.data + np.outer(bbar, np.linalg.solve(a0, b0))).max() < TOL


def test_krylov_input_errors():
    with pytest.raises(ValueError, match="square"):
        ad.linalg.cg(np.ones((2, 3)), np.ones(2))
    with pytest.raises(ValueError, match="vector of length 2"):
        ad.linalg.cg(np.eye(2), np.ones(3))
    with pytest.raises(TypeError, match="LinearOperator"):
        ad.linalg.cg("A", np.ones(2))
    with pytest.raises(TypeError, match="complex"):
        ad.linalg.cg(np.eye(2), np.ones(2, dtype=complex))
    x = ad.linalg.cg(2 * np.eye(2), np.array([2, 4]), rtol=1e-14)  # integer b: float result
    assert x.dtype == np.float64 and np.allclose(x.data, [1.0, 2.0])


# ----- root / fixed_point ----------------------------------------------------------------------
def test_root_matches_closed_form():
    """z1 + z2 = a, z1 z2 = b: z = (a ± s) / 2 with s = sqrt(a² − 4b)."""
    a0, b0 = 3.0, 2.0
    s = np.sqrt(a0**2 - 4 * b0)
    expected = np.array([[(1 + a0 / s) / 2, -1 / s], [(1 - a0 / s) / 2, 1 / s]])  # dz/d(a, b)
    for kw in ({}, {"solver": "newton"}, {"linear_solver": "dense"}, {"jac": False}):
        a, b = ad.tensor(a0, requires_grad=True), ad.tensor(b0, requires_grad=True)
        z = _root_pair(a, b, **kw)
        assert np.abs(z.data - [(a0 + s) / 2, (a0 - s) / 2]).max() < 1e-10
        for i in range(2):
            ga, gb = ad.autograd.grad(z[i], [a, b], retain_graph=True)
            assert abs(ga.item() - expected[i, 0]) < TOL
            assert abs(gb.item() - expected[i, 1]) < TOL


def test_root_closed_over_params_and_symmetric_cg(rng):
    """F = ∇ of a strictly convex function: A z + z³ − θ (symmetric positive Jacobian)."""
    a0, th0 = spd(rng, 5), rng.standard_normal(5)
    a = ad.tensor(a0, requires_grad=True)
    grads = []
    for kw in ({"symmetric": True, "linear_solver": "cg"}, {"linear_solver": "dense"}):
        a.grad = None
        th = ad.tensor(th0, requires_grad=True)
        z = implicit.root(lambda z, th: a @ z + z**3 - th, np.zeros(5), th, **kw)
        (z * z).sum().backward()
        jac = a0 + np.diag(3 * z.data**2)
        lam = np.linalg.solve(jac.T, 2 * z.data)
        assert np.abs(th.grad.data - lam).max() < TOL
        assert np.abs(a.grad.data + np.outer(lam, z.data)).max() < TOL
        grads.append(a.grad.data)
    assert np.abs(grads[0] - grads[1]).max() < TOL


def test_root_custom_solver_and_errors():
    z = implicit.root(lambda z, a: z**2 - a, 1.0, 4.0, solver=lambda f, z0: np.array(2.0))
    assert z.item() == 2.0
    with pytest.raises(ValueError, match="shape"):
        implicit.root(lambda z: z.sum(), np.ones(2))
    with pytest.raises(ValueError, match="linear_solver"):
        implicit.root(
            lambda z, a: z - a, 1.0, ad.tensor(1.0, requires_grad=True), linear_solver="x"
        )
    with pytest.warns(ad.linalg.ConvergenceWarning, match="Newton"):
        implicit.root(lambda z: z**2 + 1.0, 1.0, solver="newton", maxiter=3)
    with pytest.warns(ad.linalg.ConvergenceWarning, match=r"scipy\.optimize\.root"):
        implicit.root(lambda z: z**2 + 1.0, np.array([1.0]))


def _unrolled(w, x, iters=200):
    z = ad.zeros(x.shape)
    for _ in range(iters):
        z = ad.tanh(z @ w.T + x)
    return z


@pytest.mark.parametrize("solver", ["iterate", "anderson", "newton"])
def test_deep_equilibrium_layer_matches_unrolled_iteration(solver, rng):
    n, batch = 8, 3
    w0 = rng.standard_normal((n, n))
    w0 *= 0.6 / np.linalg.norm(w0, 2)  # a contraction: the iteration converges
    x0, c = rng.standard_normal((batch, n)), rng.standard_normal((batch, n))
    w1, x1 = ad.tensor(w0, requires_grad=True), ad.tensor(x0, requires_grad=True)
    z = implicit.fixed_point(
        lambda z, w, x: ad.tanh(z @ w.T + x), np.zeros((batch, n)), w1, x1, solver=solver
    )
    (z * c).sum().backward()
    w2, x2 = ad.tensor(w0, requires_grad=True), ad.tensor(x0, requires_grad=True)
    zu = _unrolled(w2, x2)
    (zu * c).sum().backward()
    assert np.abs(z.data - zu.data).max() < 1e-10
    assert np.abs(w1.grad.data - w2.grad.data).max() < TOL
    assert np.abs(x1.grad.data - x2.grad.data).max() < TOL


def test_fixed_point_backward_does_not_replay_iterations(rng):
    w0 = rng.standard_normal((6, 6))
    w0 *= 0.9 / np.linalg.norm(w0, 2)
    calls = [0]
    w = ad.tensor(w0, requires_grad=True)

    def g(z, x):
        calls[0] += 1
        return ad.tanh(w @ z + x)

    x = rng.standard_normal(6)
    z = implicit.fixed_point(g, np.zeros(6), x)
    forward = calls[0]
    z.sum().backward()
    assert forward > 10 and calls[0] - forward <= 2  # one recorded graph of g, reused
    # W closed over by g: (I − D W)ᵀ λ = 1 with D = diag(1 − z²), W̄ = (D λ) zᵀ
    zs = z.data
    d = 1 - zs**2
    lam = np.linalg.solve((np.eye(6) - d[:, None] * w0).T, np.ones(6))
    assert np.abs(w.grad.data - np.outer(d * lam, zs)).max() < TOL


def test_higher_order_through_parameters_is_exact_and_silent(rng):
    """Second derivatives through A's parameters used to hold x constant (and warn)."""
    a0, b0 = spd(rng, 3), rng.standard_normal(3)
    assert ad.fd.gradgradcheck(lambda b: (ad.linalg.cg(a0, b, rtol=1e-14) ** 3).sum(), b0)
    a = ad.tensor(a0, requires_grad=True)
    a2 = ad.tensor(a0, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (g,) = ad.autograd.grad((ad.linalg.cg(a, b0, rtol=1e-14) ** 3).sum(), a, create_graph=True)
        (h,) = ad.autograd.grad(g[0, 1], a)
        with ad.forward.dual_level():
            p = ad.forward.make_dual(ad.tensor(2.0), ad.tensor(1.0))
            with ad.forward.dual_level():
                q = ad.forward.make_dual(p, ad.tensor(1.0))
                z = implicit.root(lambda z, q: z**3 - q, 1.0, q)
                dz = ad.forward.unpack_dual(z).tangent
            d2z = ad.forward.unpack_dual(dz).tangent
    (g2,) = ad.autograd.grad((ad.linalg.solve(a2, b0) ** 3).sum(), a2, create_graph=True)
    (h2,) = ad.autograd.grad(g2[0, 1], a2)
    assert np.abs(h.data - h2.data).max() < TOL
    assert abs(d2z.item() - (-2 / 9) * 2.0 ** (-5 / 3)) < TOL  # (q^(1/3))''


def test_fixed_point_reports_non_convergence():
    with pytest.warns(ad.linalg.ConvergenceWarning, match="iterate did not converge"):
        implicit.fixed_point(lambda z: 2.0 * z + 1.0, 0.0, maxiter=5)
    with pytest.raises(ad.linalg.ConvergenceError):
        implicit.fixed_point(lambda z: 2.0 * z + 1.0, 0.0, maxiter=5, raise_on_failure=True)
    with pytest.raises(ValueError, match="solver"):
        implicit.fixed_point(lambda z: z, 0.0, solver="bogus")
    z = implicit.fixed_point(lambda z: 2.0 * z + 1.0, 0.0, solver="newton")
    assert abs(z.item() + 1.0) < 1e-12
    z = implicit.fixed_point(lambda z: 0.5 * z + 1.0, 0.0, solver=lambda g, z0: np.array(2.0))
    assert z.item() == 2.0


@pytest.mark.parametrize("solve", [implicit.root, implicit.fixed_point], ids=["root", "fp"])
@pytest.mark.parametrize("solver", ["default", "newton", "callable"])
def test_complex_unknowns_and_equations_are_refused(solve, solver):
    # A complex z0 used to be cast to float64 (imaginary part dropped, no error); a complex
    # parameter made F complex for a real unknown. Both are refused with what is supported.
    kw = {} if solver == "default" else {"solver": solver}
    if solver == "callable":
        kw["solver"] = lambda f, z0: z0 + 1j
    name = "implicit.root" if solve is implicit.root else "implicit.fixed_point"
    with pytest.raises(TypeError, match=rf"{name}: complex unknowns .*complex128.*float64"):
        solve(lambda z: 0.5 * z + 1.0, np.array([1.0 + 1.0j]), **kw)
    if solver == "callable":  # a solver returning complex values is refused the same way
        with pytest.raises(TypeError, match=rf"{name}: complex unknowns"):
            solve(lambda z: 0.5 * z + 1.0, np.array([1.0]), **kw)
        return
    a = ad.tensor([1.0 + 1.0j], requires_grad=True)
    with pytest.raises(TypeError, match=rf"{name}: the function returned complex128 .*real"):
        solve(lambda z, a: 0.5 * z + a, np.array([1.0]), a, **kw)
