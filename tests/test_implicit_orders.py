"""Derivatives of every order through implicit solutions, in every transform and composition.

A table of functions computed implicitly (``ad.implicit.root``, ``fixed_point``,
``ad.linalg.custom_linear_solve``, ``cg``, ``minres``), each with an explicit equivalent
written with ordinary ops: a closed form (the cubic's Cardano formula, the quadratic's
roots), ``ad.linalg.solve``, or Newton steps taken from the converged solution held
constant (k steps from the exact root are exact to order 2**k - 1). Every transform and
every composition of two is compared with the same transform of the explicit function, and
first and second derivatives with central differences of the implicit function's values.
Solvers run with tight tolerances, so the implicit derivatives match to ~1e-9.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import autodiffx as ad
from autodiffx import implicit

TOL = 1e-7  # relative, against the explicit function (solvers run to ~1e-13)
FD_TOL = 2e-5  # relative, against central differences of values


def newton(F: Callable[..., Any], J: Callable[..., Any], z0: np.ndarray, steps: int = 3):
    """Newton steps z ← z − J(z)⁻¹ F(z) from the constant ``z0`` (the converged root)."""
    z = ad.tensor(z0)
    for _ in range(steps):
        z = z - ad.linalg.solve(J(z), F(z))
    return z


# ----- the table ------------------------------------------------------------------------------
def cubic(x, **kw):
    """The real root of z³ + p z − q (p > 0), params passed to root."""
    return implicit.root(lambda z, p, q: z**3 + p * z - q, 1.0, x[0], x[1], tol=1e-12, **kw)


def cubic_closure(x):
    """The same root, F closing over p and q (slices of x: non-leaf tensors)."""
    p, q = x[0], x[1]
    return implicit.root(lambda z: z**3 + p * z - q, np.ones(1), tol=1e-12, linear_tol=1e-14)


def cardano(x):
    p, q = x[0], x[1]
    d = ad.sqrt(q**2 / 4 + p**3 / 27)
    return ad.cbrt(q / 2 + d) + ad.cbrt(q / 2 - d)


def pair(x):
    """z1 + z2 = a, z1 z2 = b."""
    return implicit.root(
        lambda z, x: ad.stack([z[0] + z[1] - x[0], z[0] * z[1] - x[1]]),
        np.array([3.0, 0.5]),
        x,
        tol=1e-12,
        linear_tol=1e-14,
    )


def pair_closed_form(x):
    s = ad.sqrt(x[0] ** 2 - 4 * x[1])
    return ad.stack([(x[0] + s) / 2, (x[0] - s) / 2])


def fixed_cos(x):
    """z = cos(p z)."""
    return implicit.fixed_point(lambda z, p: ad.cos(p * z), 0.0, x[0], tol=1e-15)


def fixed_cos_newton(x):
    p = x[0]
    z0 = fixed_cos(ad.tensor(x.data)).data.reshape(1)
    z = newton(
        lambda z: z - ad.cos(p * z),
        lambda z: ad.reshape(1 + p * ad.sin(p * z), (1, 1)),
        z0,
    )
    return z[0]


def _deq_parts(x):
    return ad.reshape(x[:4], (2, 2)), x[4:]


def deq(x, solver="iterate"):
    """z = tanh(W z + u), W and u closed over (slices of x)."""
    w, u = _deq_parts(x)
    return implicit.fixed_point(
        lambda z: ad.tanh(w @ z + u), np.zeros(2), solver=solver, tol=1e-15, linear_tol=1e-14
    )


def deq_newton(x):
    w, u = _deq_parts(x)
    z0 = deq(ad.tensor(x.data)).data

    def jac(z):
        d = 1 - ad.tanh(w @ z + u) ** 2
        return ad.eye(2) - d[:, None] * w

    return newton(lambda z: z - ad.tanh(w @ z + u), jac, z0)


def _spd_parts(x, n=3):
    m = ad.reshape(x[: n * n], (n, n))
    return (m + m.T) / 2 + 3 * ad.eye(n), x[n * n :]


def cg_spd(x):
    a, b = _spd_parts(x)
    return ad.linalg.cg(a, b, rtol=1e-14, adjoint_rtol=1e-14)


def cg_callable(x):
    """A = Wᵀ W + I given as a function closing over W."""
    w, b = ad.reshape(x[:6], (2, 3)), x[6:]
    return ad.linalg.cg(lambda v: w.T @ (w @ v) + v, b, rtol=1e-14, adjoint_rtol=1e-14)


def cg_callable_solve(x):
    w, b = ad.reshape(x[:6], (2, 3)), x[6:]
    return ad.linalg.solve(w.T @ w + ad.eye(3), b)


def _indefinite_parts(x):
    m = ad.reshape(x[:9], (3, 3))
    return (m + m.T) / 2 + ad.tensor(np.diag([3.0, -2.5, 4.0])), x[9:]


def minres_indefinite(x):
    a, b = _indefinite_parts(x)
    return ad.linalg.minres(a, b, rtol=1e-14)


def dense(mv, rhs):
    n = rhs.size
    return np.linalg.solve(np.stack([mv(e) for e in np.eye(n)], axis=1), rhs)


def _nonsym_parts(x):
    return ad.reshape(x[:9], (3, 3)) + 3 * ad.eye(3), x[9:]


def custom_nonsym(x):
    a, b = _nonsym_parts(x)
    return ad.linalg.custom_linear_solve(lambda v: a @ v, b, dense, dense)


def custom_sym_false(x):
    a, b = _nonsym_parts(x)
    return ad.linalg.custom_linear_solve(lambda v: a @ v, b, dense, symmetric=False)


def convex_root(x):
    """∇E = A z + z³ − θ = 0 (E strictly convex): symmetric Jacobian, CG derivative solves."""
    a, th = _spd_parts(x)
    return implicit.root(
        lambda z: a @ z + z**3 - th,
        np.zeros(3),
        symmetric=True,
        linear_solver="cg",
        tol=1e-12,
        linear_tol=1e-14,
    )


def convex_root_newton(x):
    a, th = _spd_parts(x)
    z0 = convex_root(ad.tensor(x.data)).data
    return newton(lambda z: a @ z + z**3 - th, lambda z: a + ad.eye(3) * (3 * z**2), z0)


def _solve_ref(parts):
    def f(x):
        a, b = parts(x)
        return ad.linalg.solve(a, b)

    return f


SPD_X = np.array([0.3, -0.2, 0.1, 0.4, 0.5, -0.3, 0.2, 0.1, -0.4, 1.0, -0.5, 0.8])
CASES: list[tuple[str, Callable[..., Any], Callable[..., Any], np.ndarray]] = [
    ("root_cubic", cubic, cardano, np.array([1.3, 0.7])),
    (
        "root_cubic_newton_dense",
        lambda x: cubic(x, solver="newton", linear_solver="dense"),
        cardano,
        np.array([1.3, 0.7]),
    ),
    ("root_cubic_closure", lambda x: cubic_closure(x)[0], cardano, np.array([0.8, 1.9])),
    ("root_pair", pair, pair_closed_form, np.array([3.0, 2.0])),
    ("fixed_point_cos", lambda x: fixed_cos(x), fixed_cos_newton, np.array([0.9])),
    ("fixed_point_deq", deq, deq_newton, np.array([0.4, -0.3, 0.2, 0.5, 0.3, -0.6])),
    (
        "fixed_point_deq_anderson",
        lambda x: deq(x, "anderson"),
        deq_newton,
        np.array([0.4, -0.3, 0.2, 0.5, 0.3, -0.6]),
    ),
    ("cg_spd", cg_spd, _solve_ref(_spd_parts), SPD_X),
    ("cg_callable", cg_callable, cg_callable_solve, SPD_X[:9]),
    ("minres_indefinite", minres_indefinite, _solve_ref(_indefinite_parts), SPD_X),
    ("custom_linear_solve", custom_nonsym, _solve_ref(_nonsym_parts), SPD_X),
    ("custom_linear_solve_sym_false", custom_sym_false, _solve_ref(_nonsym_parts), SPD_X),
    ("root_symmetric_cg", convex_root, convex_root_newton, SPD_X),
]
IDS = [c[0] for c in CASES]
# cg and minres differentiated in a matrix leaf A: a direction of A need not be symmetric
# (central differences would leave the domain of CG), and the derivatives are those of A⁻¹b.
LEAF_CASES = [
    ("cg_leaf_matrix", ad.linalg.cg, np.diag([3.0, 2.0, 4.0]) + 0.3),
    ("minres_leaf_matrix", ad.linalg.minres, np.diag([3.0, -2.0, 4.0]) + 0.3),
]


def loss_of(f: Callable[..., Any]) -> Callable[..., Any]:
    """A scalar loss with nonzero second derivatives in f's output."""
    return lambda x: ad.sum(ad.sin(f(x)) + f(x) ** 2)


def close(a: Any, b: Any, tol: float) -> None:
    a = np.asarray(a.data if isinstance(a, ad.Tensor) else a)
    b = np.asarray(b.data if isinstance(b, ad.Tensor) else b)
    assert a.shape == b.shape, (a.shape, b.shape)
    scale = max(1.0, float(np.max(np.abs(b), initial=0.0)))
    assert np.max(np.abs(a - b), initial=0.0) <= tol * scale, (a, b)


# ----- first order ----------------------------------------------------------------------------
def first_order(f: Callable[..., Any], x0: np.ndarray, u: np.ndarray, v: np.ndarray):
    """Every first-order transform of f at x0 (cotangent u, tangent v), as arrays."""
    x = ad.tensor(x0)
    out = {
        "jacrev": ad.jacrev(f)(x),
        "jacfwd": ad.jacfwd(f)(x),
        "jacobian": ad.jacobian(f)(x),
        "jacobian_fwd": ad.jacobian(f, mode="fwd")(x),
        "vjp": ad.vjp(f, x)[1](ad.tensor(u))[0],
        "jvp": ad.jvp(f, (x,), (ad.tensor(v),))[1],
        "grad": ad.grad(loss_of(f))(x),
    }
    xl = ad.tensor(x0, requires_grad=True)
    loss_of(f)(xl).backward()
    out["backward"] = xl.grad
    xl = ad.tensor(x0, requires_grad=True)
    y = f(xl)
    us = np.stack([u, 2 * u, -u])  # a batch of cotangents in one pass
    (out["batched_vjp"],) = ad.autograd.grad(y, xl, grad_outputs=us, is_grads_batched=True)
    with ad.forward.dual_level():  # a batch of tangents in one pass
        vs = np.stack([v, -v, 3 * v])
        d = ad.forward.make_dual(ad.tensor(x0), ad.tensor(vs), batched=True)
        out["batched_jvp"] = ad.forward.unpack_dual(f(d)).tangent
    return {k: np.asarray(t.data) for k, t in out.items()}


@pytest.mark.parametrize(("name", "f", "ref", "x0"), CASES, ids=IDS)
def test_first_order_every_transform(name, f, ref, x0, rng):
    yshape = f(ad.tensor(x0)).shape
    u, v = rng.standard_normal(yshape), rng.standard_normal(x0.shape)
    got, want = first_order(f, x0, u, v), first_order(ref, x0, u, v)
    for k in want:
        close(got[k], want[k], TOL)
    fd = ad.fd.jacobian(lambda a: f(ad.tensor(a)).data, x0)
    close(got["jacobian"], fd, FD_TOL)


# ----- second order ---------------------------------------------------------------------------
def second_order(f: Callable[..., Any], x0: np.ndarray, v: np.ndarray):
    """Every second-order transform and composition of two, on f and its scalar loss."""
    L = loss_of(f)
    x, t = ad.tensor(x0), ad.tensor(v)
    out = {
        "hessian": ad.hessian(L)(x),
        "hvp": ad.hvp(L, (x,), (t,))[1],
        "jvp_of_grad": ad.jvp(ad.grad(L), (x,), (t,))[1],
        "jacrev_of_grad": ad.jacrev(ad.grad(L))(x),
        "jacfwd_of_jacfwd": ad.jacfwd(ad.jacfwd(f))(x),
        "jacrev_of_jacrev": ad.jacrev(ad.jacrev(f))(x),
        "jacfwd_of_jacrev": ad.jacfwd(ad.jacrev(f))(x),
        "jacrev_of_jacfwd": ad.jacrev(ad.jacfwd(f))(x),
        "grad_of_jvp": ad.grad(lambda x: ad.jvp(L, (x,), (t,))[1])(x),
        "jvp_of_jvp": ad.jvp(lambda x: ad.jvp(L, (x,), (t,))[1], (x,), (t,))[1],
    }
    xl = ad.tensor(x0, requires_grad=True)
    (g,) = ad.autograd.grad(L(xl), xl, create_graph=True)
    (out["grad_create_graph"],) = ad.autograd.grad(ad.sum(g * t), xl)
    xl = ad.tensor(x0, requires_grad=True)
    (g,) = ad.autograd.grad(L(xl), xl, create_graph=True)
    ad.sum(g * t).backward()
    out["backward_create_graph"] = xl.grad
    return {k: np.asarray(r.data) for k, r in out.items()}


@pytest.mark.parametrize(("name", "f", "ref", "x0"), CASES, ids=IDS)
def test_second_order_every_composition(name, f, ref, x0, rng):
    v = rng.standard_normal(x0.shape)
    got, want = second_order(f, x0, v), second_order(ref, x0, v)
    for k in want:
        close(got[k], want[k], TOL)
    L = loss_of(f)
    fd = ad.fd.hessian(lambda a: L(ad.tensor(a)).item(), x0)
    close(got["hessian"], fd, 1e-4)


@pytest.mark.parametrize(("name", "solver", "a0"), LEAF_CASES, ids=[c[0] for c in LEAF_CASES])
def test_krylov_in_a_matrix_leaf_matches_solve(name, solver, a0, rng):
    b0 = rng.standard_normal(3)
    x0 = np.concatenate([a0.ravel(), b0])

    def f(x):
        return solver(ad.reshape(x[:9], (3, 3)), x[9:], rtol=1e-14)

    def ref(x):
        return ad.linalg.solve(ad.reshape(x[:9], (3, 3)), x[9:])

    v = rng.standard_normal(x0.shape)
    u = rng.standard_normal(3)
    for got, want in (
        (first_order(f, x0, u, v), first_order(ref, x0, u, v)),
        (second_order(f, x0, v), second_order(ref, x0, v)),
    ):
        for k in want:
            close(got[k], want[k], TOL)


# ----- parameters that depend on each other, hooks, third order, nesting ----------------------
def test_parameters_computed_from_each_other_are_not_counted_twice():
    """F reads w and k = w² (made from w outside F): each is a parameter of its own."""

    def f(w):
        k = w**2
        return implicit.root(lambda z: z**3 + k * z - w, np.ones(2), tol=1e-13)

    def ref(w):
        return cardano(ad.stack([w**2, w]))

    x0 = np.array([0.7, 1.3])
    v = np.array([0.4, -1.1])
    for got, want in (
        (first_order(f, x0, v, v), first_order(ref, x0, v, v)),
        (second_order(f, x0, v), second_order(ref, x0, v)),
    ):
        for k in want:
            close(got[k], want[k], TOL)


def test_hooks_of_a_parameter_see_its_gradient_once():
    w = ad.tensor([0.7, 1.3], requires_grad=True)
    seen = []
    w.register_hook(lambda g: seen.append(g.data.copy()))
    z = implicit.root(lambda z, q: z**3 + w * z - q, np.ones(2), w, tol=1e-13)
    ad.sum(z**2).backward()
    expected = ad.grad(lambda w: ad.sum(cardano(ad.stack([w, w])) ** 2))(ad.tensor(w.data))
    assert len(seen) == 1
    close(seen[0], expected, TOL)
    close(w.grad, expected, TOL)


def test_third_order_in_every_mode():
    f = lambda p: cubic(ad.stack([p, ad.tensor(1.0)]))
    ref = lambda p: cardano(ad.stack([p, ad.tensor(1.0)]))
    p = ad.tensor(1.1)
    want = ad.grad(ad.grad(ad.grad(ref)))(p)
    for d3 in (
        ad.grad(ad.grad(ad.grad(f))),
        ad.jacfwd(ad.jacfwd(ad.jacfwd(f))),
        ad.jacfwd(ad.jacrev(ad.jacfwd(f))),
        ad.jacrev(ad.hessian(f)),
    ):
        close(d3(p), want, TOL)


def test_nested_implicit_solutions():
    """A fixed point of a map that calls cg: z = 0.3 tanh(A(p)⁻¹ (z + u))."""
    a0 = np.array([[3.0, 0.5], [0.5, 2.0]])

    def f(x):
        a = ad.tensor(a0) + x[0] * ad.eye(2)
        g = lambda z: 0.3 * ad.tanh(ad.linalg.cg(a, z + x[1:], rtol=1e-14))
        return implicit.fixed_point(g, np.zeros(2), tol=1e-15)

    def ref(x):
        a = ad.tensor(a0) + x[0] * ad.eye(2)
        z = ad.zeros(2)
        for _ in range(60):  # a contraction of rate < 0.2: 60 steps are converged
            z = 0.3 * ad.tanh(ad.linalg.solve(a, z + x[1:]))
        return z

    x0, v, u = np.array([0.2, 0.5, -0.3]), np.array([1.0, -0.5, 0.3]), np.array([0.7, 1.2])
    for got, want in (
        (first_order(f, x0, u, v), first_order(ref, x0, u, v)),
        (second_order(f, x0, v), second_order(ref, x0, v)),
    ):
        for k in want:
            close(got[k], want[k], TOL)


# ----- the report ---------------------------------------------------------------------


# ----- the cases of the report (issue 11, item 5) --------------------------------------------
def test_reported_second_derivatives_are_exact():
    """hvp, jvp of grad and the Hessian were silently inexact (the values of main before the
    fix in the comments): z³ + p z − 1 = 0 at p = 1 (0.11878 for the true 0.09912), z =
    cos(p z) at p = 0.5 (−0.37736 for −0.17439), and ∑ x² with A x = b by CG along a
    direction of A (entry [0, 1] of H·d: 0.14439 for solve's 0.07459)."""
    root = lambda p: implicit.root(lambda z, p: z**3 + p * z - 1.0, 1.0, p)
    fixed = lambda p: implicit.fixed_point(lambda z, p: ad.cos(p * z), 0.0, p)
    for f, p, want in ((root, 1.0, 0.0991230350809017), (fixed, 0.5, -0.17438514362368177)):
        p, one = ad.tensor(p), ad.tensor(1.0)
        assert abs(ad.hvp(f, (p,), (one,))[1].item() - want) < TOL
        assert abs(ad.jvp(ad.grad(f), (p,), (one,))[1].item() - want) < TOL
        assert abs(ad.hessian(f)(p).item() - want) < TOL
        assert abs(ad.grad(ad.grad(f))(p).item() - want) < TOL
    a0, b0 = np.array([[4.0, 1.0], [1.0, 3.0]]), np.array([1.0, 2.0])
    d = ad.tensor([[0.0, 1.0], [0.0, 0.0]])
    cg = lambda a: ad.sum(ad.linalg.cg(a, b0, rtol=1e-13) ** 2)
    ref = lambda a: ad.sum(ad.linalg.solve(a, b0) ** 2)
    got = ad.hvp(cg, (ad.tensor(a0),), (d,))[1]
    close(got, ad.hvp(ref, (ad.tensor(a0),), (d,))[1], TOL)
    assert abs(got.data[0, 1] - 0.07458507) < 1e-7
    close(ad.hessian(cg)(ad.tensor(a0)), ad.hessian(ref)(ad.tensor(a0)), TOL)
