"""Optimizers, schedulers and the SciPy bridge.

PyTorch trajectories (stored in tests/reference/optim.npz, and live when torch is installed:
the ``oracle`` marker), hand-computed steps, state dicts, and steepest descent under each norm.
"""

from __future__ import annotations

import copy
import json
import math
import re

import _reference
import numpy as np
import pytest

import autodiffx as ad
import autodiffx.io as adio
import autodiffx.nn as nn
import autodiffx.optim as optim
from autodiffx.nn import functional as F
from autodiffx.optim import lr_scheduler

RTOL = 1e-12


def _id(v):
    """Stable test ids (no memory addresses, so that xdist workers agree)."""
    if isinstance(v, dict):
        return ",".join(f"{k}={'fn' if callable(x) else x}" for k, x in v.items())
    return str(v)


def _close(a, b, rtol=RTOL):
    a, b = np.asarray(a), np.asarray(b)
    scale = max(1.0, float(np.max(np.abs(b), initial=0.0)))
    err = float(np.max(np.abs(a - b), initial=0.0)) / scale
    assert err <= rtol, f"relative deviation {err:.3g} > {rtol:g}"


# ----- problems ------------------------------------------------------------------------------
_RNG = np.random.default_rng(1234)
_M = _RNG.normal(size=(4, 4))
QA = _M @ _M.T / 4 + np.eye(4)  # SPD
QB = _RNG.normal(size=4)
Q_X0 = [_RNG.normal(size=(2, 2)), _RNG.normal(size=3)]  # two parameters
MLP_X = _RNG.normal(size=(16, 3))
MLP_Y = _RNG.integers(0, 4, size=16)
MLP_P0 = [
    _RNG.normal(size=(5, 3)),
    _RNG.normal(size=5),
    _RNG.normal(size=(4, 5)),
    _RNG.normal(size=4),
]


def _quad_ad(ps):
    x = ad.reshape(ps[0], (4,))
    return 0.5 * (x @ ad.tensor(QA) @ x) - (x * QB).sum() + 0.5 * (ps[1] * ps[1]).sum()


def _quad_torch(torch, ps):
    x = ps[0].reshape(4)
    a, b = torch.tensor(QA), torch.tensor(QB)
    return 0.5 * (x @ a @ x) - (x * b).sum() + 0.5 * (ps[1] * ps[1]).sum()


def _mlp_ad(ps):
    h = ad.tanh(ad.matmul(ad.tensor(MLP_X), ps[0].mT) + ps[1])
    return F.cross_entropy(ad.matmul(h, ps[2].mT) + ps[3], MLP_Y)


def _mlp_torch(torch, ps):
    h = torch.tanh(torch.tensor(MLP_X) @ ps[0].T + ps[1])
    return torch.nn.functional.cross_entropy(h @ ps[2].T + ps[3], torch.tensor(MLP_Y))


PROBLEMS = {"quadratic": (Q_X0, _quad_ad, _quad_torch), "mlp": (MLP_P0, _mlp_ad, _mlp_torch)}


def _run_ad(name, kw, problem, steps):
    x0, f_ad, _ = PROBLEMS[problem]
    ps = [nn.Parameter(a.copy()) for a in x0]
    opt = getattr(optim, name)(ps, **kw)

    def closure():
        opt.zero_grad()
        loss = f_ad(ps)
        loss.backward()
        return loss

    traj = []
    for _ in range(steps):
        opt.step(closure)
        traj.append([p.data.copy() for p in ps])
    return traj


def _run_torch(torch, name, kw, problem, steps):
    x0, _, f_t = PROBLEMS[problem]
    ps = [torch.nn.Parameter(torch.tensor(a.copy())) for a in x0]
    opt = getattr(torch.optim, name)(ps, **kw)

    def closure():
        opt.zero_grad()
        loss = f_t(torch, ps)
        loss.backward()
        return loss

    traj = []
    for _ in range(steps):
        opt.step(closure)
        traj.append([p.detach().numpy().copy() for p in ps])
    return traj


CONFIGS = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.5, weight_decay=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.8, nesterov=True, weight_decay=0.01)),
    ("SGD", dict(lr=0.01, momentum=0.5, maximize=True)),
    ("Adam", dict(lr=0.05)),
    ("Adam", dict(lr=0.05, amsgrad=True, weight_decay=0.1)),
    ("Adam", dict(lr=0.05, betas=(0.3, 0.6), eps=1e-3)),
    ("Adam", dict(lr=0.01, maximize=True, decoupled_weight_decay=True, weight_decay=0.1)),
    ("AdamW", dict(lr=0.05)),
    ("AdamW", dict(lr=0.05, weight_decay=0.3, amsgrad=True)),
    ("RMSprop", dict(lr=0.01)),
    ("RMSprop", dict(lr=0.01, centered=True, momentum=0.5, weight_decay=0.1)),
    ("RMSprop", dict(lr=0.01, alpha=0.3, centered=True)),
    ("RMSprop", dict(lr=0.01, maximize=True, momentum=0.9)),
    ("Adagrad", dict(lr=0.1)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.05, weight_decay=0.1, initial_accumulator_value=0.2)),
    ("Adagrad", dict(lr=0.05, maximize=True, eps=1e-3)),
    ("LBFGS", dict(lr=0.5, max_iter=4)),
    ("LBFGS", dict(max_iter=3, history_size=2, line_search_fn="strong_wolfe")),
]


# LBFGS with a line search on the MLP is checked on one shared objective (test below).
TRAJECTORIES = [
    (name, kw, problem)
    for problem in ("quadratic", "mlp")
    for name, kw in CONFIGS
    if not (name == "LBFGS" and kw.get("line_search_fn") and problem == "mlp")
]


def _steps(name):
    return 3 if name == "LBFGS" else 10


def _same_trajectory(ours, ref):
    for k, (a, b) in enumerate(zip(ours, ref, strict=True)):
        for pa, pb in zip(a, b, strict=True):
            try:
                _close(pa, pb)
            except AssertionError as e:
                raise AssertionError(f"step {k + 1}: {e}") from None


def trajectory_key(name, kw, problem):
    """The name of a PyTorch trajectory in tests/reference/optim.npz (one array per parameter,
    ``{key}/p{j}``, with the steps along axis 0)."""
    return f"trajectory/{name}/{_id(kw)}/{problem}"


@pytest.mark.oracle
@pytest.mark.parametrize(("name", "kw", "problem"), TRAJECTORIES, ids=_id)
def test_trajectory_matches_pytorch(name, kw, problem):
    torch = pytest.importorskip("torch")
    steps = _steps(name)
    _same_trajectory(_run_ad(name, kw, problem, steps), _run_torch(torch, name, kw, problem, steps))


@pytest.mark.parametrize(("name", "kw", "problem"), TRAJECTORIES, ids=_id)
def test_trajectory_matches_stored_pytorch(name, kw, problem):
    ref, key = _reference.load("optim"), trajectory_key(name, kw, problem)
    stored = [ref[f"{key}/p{j}"] for j in range(len(PROBLEMS[problem][0]))]
    ours = _run_ad(name, kw, problem, _steps(name))
    _same_trajectory(ours, zip(*stored, strict=True))


def test_stored_pytorch_results_are_for_these_problems():
    ref = _reference.load("optim")
    data = {"QA": QA, "QB": QB, "MLP_X": MLP_X, "MLP_Y": MLP_Y}
    data |= {f"Q_X0/{j}": a for j, a in enumerate(Q_X0)}
    data |= {f"MLP_P0/{j}": a for j, a in enumerate(MLP_P0)}
    for name, a in data.items():
        np.testing.assert_array_equal(a, ref[f"problem/{name}"], err_msg=_reference.STALE)
    keys = {k for k in ref if k.startswith("trajectory/")}
    expected = {
        f"{trajectory_key(name, kw, problem)}/p{j}"
        for name, kw, problem in TRAJECTORIES
        for j in range(len(PROBLEMS[problem][0]))
    }
    assert keys == expected, _reference.STALE


LBFGS_SAME_OBJECTIVE = dict(max_iter=6, history_size=3, line_search_fn="strong_wolfe")


def _lbfgs_run(opt, params, closure):
    """Three L-BFGS steps: the losses, the iterates and the counters (func_evals, n_iter)."""
    losses, iterates = [], []
    for _ in range(3):
        losses.append(float(opt.step(closure).item()))
        iterates.append([np.array(p.detach().numpy()) for p in params])
    state = opt.state[params[0]]
    return losses, iterates, (int(state["func_evals"]), int(state["n_iter"]))


def _lbfgs_ours():
    ps = [nn.Parameter(a.copy()) for a in MLP_P0]
    opt = optim.LBFGS(ps, **LBFGS_SAME_OBJECTIVE)

    def closure():
        opt.zero_grad()
        loss = _mlp_ad(ps)
        loss.backward()
        return loss

    return _lbfgs_run(opt, ps, closure)


def lbfgs_torch(torch):
    """PyTorch's L-BFGS fed autodiffx's loss and gradient (see the test below)."""
    pt = [torch.nn.Parameter(torch.tensor(a.copy())) for a in MLP_P0]
    opt = torch.optim.LBFGS(pt, **LBFGS_SAME_OBJECTIVE)

    def closure():
        qs = [nn.Parameter(p.detach().numpy().copy()) for p in pt]
        loss = _mlp_ad(qs)
        loss.backward()
        for p, q in zip(pt, qs, strict=True):
            p.grad = torch.tensor(np.ascontiguousarray(q.grad.data))
        return torch.tensor(loss.item(), dtype=torch.float64)

    return _lbfgs_run(opt, pt, closure)


def _same_lbfgs_run(ours, theirs):
    (la, ia, ca), (lt, it, ct) = ours, theirs
    for a, b in zip(la, lt, strict=True):
        assert abs(a - b) <= RTOL * abs(b)
    _same_trajectory(ia, it)
    assert ca == ct  # func_evals and n_iter


# The cubic interpolation of the line search divides differences of nearly equal loss values,
# so last-bit differences between two loss implementations grow; fed the very same
# (autodiffx-computed) loss and gradient, the two L-BFGS implementations agree.
@pytest.mark.oracle
def test_lbfgs_line_search_matches_pytorch_on_the_same_objective():
    torch = pytest.importorskip("torch")
    _same_lbfgs_run(_lbfgs_ours(), lbfgs_torch(torch))


def test_lbfgs_line_search_matches_stored_pytorch_on_the_same_objective():
    ref = _reference.load("optim")
    stored = (
        list(ref["lbfgs/loss"]),
        [list(step) for step in zip(*(ref[f"lbfgs/p{j}"] for j in range(len(MLP_P0))))],
        tuple(int(v) for v in ref["lbfgs/counters"]),
    )
    _same_lbfgs_run(_lbfgs_ours(), stored)


COMPLEX_C = np.array([1 + 2j, -0.5 + 0.25j, 3j])
COMPLEX_Z0 = np.array([0.3 - 1j, 2 + 0j, -1 + 1j])
COMPLEX_CONFIGS = [
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("Adam", dict(lr=0.1, amsgrad=True)),
    ("RMSprop", dict(lr=0.05, centered=True)),
    ("Adagrad", dict(lr=0.3)),
    ("LBFGS", dict(max_iter=3, line_search_fn="strong_wolfe")),
]


def complex_trajectory(lib, opt_module, name, kw):
    """Four steps on a real loss of complex parameters; ``lib`` is autodiffx or torch."""
    z = lib.tensor(COMPLEX_Z0.copy(), requires_grad=True)
    opt = getattr(opt_module, name)([z], **kw)
    c = COMPLEX_C if lib is ad else lib.tensor(COMPLEX_C)

    def closure():
        opt.zero_grad()
        d = z - c
        loss = (d * d.conj()).real.sum() + (z.real * z.imag).sum()
        loss.backward()
        return loss

    out = []
    for _ in range(4):
        opt.step(closure)
        out.append(np.array(z.data if lib is ad else z.detach().numpy()))
    return np.stack(out)


@pytest.mark.oracle
@pytest.mark.parametrize(("name", "kw"), COMPLEX_CONFIGS, ids=_id)
def test_complex_parameters_match_pytorch(name, kw):
    torch = pytest.importorskip("torch")
    ours = complex_trajectory(ad, optim, name, kw)
    theirs = complex_trajectory(torch, torch.optim, name, kw)
    for a, b in zip(ours, theirs, strict=True):
        _close(a, b)


@pytest.mark.parametrize(("name", "kw"), COMPLEX_CONFIGS, ids=_id)
def test_complex_parameters_match_stored_pytorch(name, kw):
    stored = _reference.load("optim")[f"complex/{name}"]
    assert stored.dtype == np.complex128
    for a, b in zip(complex_trajectory(ad, optim, name, kw), stored, strict=True):
        _close(a, b)


# ----- hand-computed steps (no PyTorch) ---------------------------------------------------
def _grad_steps(opt_factory, x0, n, grad=lambda x: x * np.array([1.0, 3.0, -2.0])):
    """Run ``n`` steps on a problem with a known gradient; return the iterates."""
    x = ad.tensor(x0.copy(), requires_grad=True)
    opt = opt_factory([x])
    out = []
    for _ in range(n):
        x.grad = ad.tensor(grad(x.data))
        opt.step()
        out.append(x.data.copy())
    return out


X0 = np.array([1.0, -0.5, 2.0])
G = np.array([1.0, 3.0, -2.0])


def test_sgd_momentum_nesterov_by_hand():
    lr, mu, wd = 0.1, 0.9, 0.01
    got = _grad_steps(lambda p: optim.SGD(p, lr, mu, 0.0, wd, nesterov=True), X0, 3)
    x, b = X0.copy(), None
    for k in range(3):
        g = G * x + wd * x
        b = g.copy() if b is None else mu * b + g
        x = x - lr * (g + mu * b)
        _close(got[k], x)


def test_adam_and_adamw_by_hand():
    lr, b1, b2, eps, wd = 0.05, 0.9, 0.99, 1e-8, 0.1
    for decoupled in (False, True):
        cls = optim.AdamW if decoupled else optim.Adam
        got = _grad_steps(lambda p, cls=cls: cls(p, lr, (b1, b2), eps, wd), X0, 4)
        x, m, v = X0.copy(), np.zeros(3), np.zeros(3)
        for t in range(1, 5):
            g = G * x
            if decoupled:
                x = x * (1 - lr * wd)
            else:
                g = g + wd * x
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            mhat, vhat = m / (1 - b1**t), v / (1 - b2**t)
            x = x - lr * mhat / (np.sqrt(vhat) + eps)
            _close(got[t - 1], x)


def test_amsgrad_by_hand():
    lr, b1, b2 = 0.1, 0.5, 0.5
    grads = [np.array([4.0]), np.array([0.1]), np.array([0.1])]
    x = ad.tensor([0.0], requires_grad=True)
    opt = optim.Adam([x], lr=lr, betas=(b1, b2), eps=0.0, amsgrad=True)
    xr, m, v, vmax = 0.0, 0.0, 0.0, 0.0
    for t, g in enumerate(grads, 1):
        x.grad = ad.tensor(g)
        opt.step()
        m = b1 * m + (1 - b1) * g[0]
        v = b2 * v + (1 - b2) * g[0] ** 2
        vmax = max(vmax, v)
        xr -= lr / (1 - b1**t) * m / (math.sqrt(vmax) / math.sqrt(1 - b2**t))
        _close(x.data, [xr])


def test_rmsprop_centered_momentum_by_hand():
    lr, alpha, eps, mu = 0.01, 0.9, 1e-8, 0.5
    got = _grad_steps(lambda p: optim.RMSprop(p, lr, alpha, eps, 0.0, mu, True), X0, 4)
    x, s, a, b = X0.copy(), np.zeros(3), np.zeros(3), np.zeros(3)
    for k in range(4):
        g = G * x
        s = alpha * s + (1 - alpha) * g * g
        a = alpha * a + (1 - alpha) * g
        b = mu * b + g / (np.sqrt(s - a * a) + eps)
        x = x - lr * b
        _close(got[k], x)


def test_adagrad_by_hand():
    lr, decay, init, eps = 0.1, 0.5, 0.2, 1e-10
    got = _grad_steps(lambda p: optim.Adagrad(p, lr, decay, 0.0, init, eps), X0, 4)
    x, s = X0.copy(), np.full(3, init)
    for t in range(1, 5):
        g = G * x
        s = s + g * g
        x = x - lr / (1 + (t - 1) * decay) * g / (np.sqrt(s) + eps)
        _close(got[t - 1], x)


def test_lbfgs_first_iteration_and_quadratic_convergence():
    x = ad.tensor(X0.copy(), requires_grad=True)
    opt = optim.LBFGS([x], lr=0.5, max_iter=1)

    def closure():
        opt.zero_grad()
        loss = 0.5 * (ad.tensor(G) * x * x).sum()
        loss.backward()
        return loss

    opt.step(closure)
    g = G * X0
    _close(x.data, X0 - min(1.0, 1.0 / np.abs(g).sum()) * 0.5 * g)

    # A strongly convex quadratic: the solution of QA x = QB.
    y = ad.tensor(np.zeros(4), requires_grad=True)
    opt = optim.LBFGS(
        [y], max_iter=50, line_search_fn="strong_wolfe", tolerance_grad=1e-12, tolerance_change=0
    )

    def closure2():
        opt.zero_grad()
        loss = 0.5 * (y @ ad.tensor(QA) @ y) - (y * QB).sum()
        loss.backward()
        return loss

    opt.step(closure2)
    np.testing.assert_allclose(y.data, np.linalg.solve(QA, QB), rtol=0, atol=1e-9)


def test_scalar_like_losses_and_metrics():
    x = ad.tensor([2.0, -1.0], requires_grad=True)
    opt = optim.LBFGS([x], max_iter=5)

    def closure():
        opt.zero_grad()
        loss = (x * x).sum().reshape((1,))  # shape (1,), as PyTorch allows
        loss.backward()
        return loss

    opt.step(closure)
    np.testing.assert_allclose(x.data, [0.0, 0.0], atol=1e-12)
    sched = lr_scheduler.ReduceLROnPlateau(optim.SGD([x], lr=1.0), patience=0)
    sched.step(ad.tensor(3.0))
    sched.step(ad.tensor([4.0]))
    assert sched.get_last_lr() == [0.1]
    with pytest.raises(ValueError, match="scalar"):
        sched.step(ad.tensor([1.0, 2.0]))
    res = optim.minimize(lambda z: ((z - 3.0) ** 2).sum().reshape((1, 1)), [0.0], method="BFGS")
    assert res.x[0] == pytest.approx(3.0)


def test_lbfgs_needs_a_closure_and_one_group():
    x = ad.zeros(2, requires_grad=True)
    with pytest.raises(RuntimeError, match="closure"):
        optim.LBFGS([x]).step()
    with pytest.raises(ValueError, match="groups"):
        optim.LBFGS([{"params": [x]}, {"params": [ad.zeros(1, requires_grad=True)]}])
    with pytest.raises(ValueError, match="strong_wolfe"):
        optim.LBFGS([x], line_search_fn="armijo")


# ----- steepest descent under a norm ------------------------------------------------------
def _sd_step(norm, g, scale=False, lr=0.5, x0=None):
    x0 = np.zeros_like(g) if x0 is None else x0
    x = ad.tensor(x0.copy(), requires_grad=True)
    x.grad = ad.tensor(g)
    optim.SteepestDescent([x], lr=lr, norm=norm, scale_by_dual_norm=scale).step()
    return -(x.data - x0) / lr  # the direction v


def test_steepest_descent_directions():
    g = np.array([3.0, -4.0, 0.0, 4.0])
    np.testing.assert_allclose(_sd_step("l2", g), g / np.linalg.norm(g), rtol=1e-15)
    np.testing.assert_array_equal(_sd_step("linf", g), np.sign(g))
    # l1: the largest |g_i| (two ties at 4: the unit mass is split)
    np.testing.assert_array_equal(_sd_step("l1", g), [0.0, -0.5, 0.0, 0.5])
    np.testing.assert_array_equal(_sd_step("l1", np.array([1.0, -5.0])), [0.0, -1.0])


def test_steepest_descent_directions_maximise_the_pairing_over_the_unit_ball():
    rng = np.random.default_rng(0)
    g = rng.normal(size=5)
    norms = {"l2": lambda v: np.linalg.norm(v), "l1": lambda v: np.abs(v).sum(),
             "linf": lambda v: np.abs(v).max()}  # fmt: skip
    for name, nrm in norms.items():
        v = _sd_step(name, g)
        assert nrm(v) == pytest.approx(1.0)
        for _ in range(200):  # no point of the unit ball does better
            w = rng.normal(size=5)
            assert g @ (w / nrm(w)) <= g @ v + 1e-12


def test_steepest_descent_spectral():
    rng = np.random.default_rng(1)
    g = rng.normal(size=(4, 3))
    u, s, vh = np.linalg.svd(g, full_matrices=False)
    v = _sd_step("spectral", g)
    np.testing.assert_allclose(v, u @ vh, atol=1e-14)
    assert np.linalg.norm(v, 2) == pytest.approx(1.0)
    # the pairing equals the dual (nuclear) norm
    assert np.sum(g * v) == pytest.approx(s.sum())
    # rank-deficient: only the nonzero singular directions
    r1 = np.outer([1.0, 2.0, 2.0], [3.0, 4.0])
    np.testing.assert_allclose(_sd_step("spectral", r1), r1 / 15.0, atol=1e-14)
    # batched matrices and vectors
    gb = rng.normal(size=(2, 3, 3))
    vb = _sd_step("spectral", gb)
    for k in range(2):
        uk, _, vhk = np.linalg.svd(gb[k])
        np.testing.assert_allclose(vb[k], uk @ vhk, atol=1e-13)
    gv = np.array([3.0, 4.0])
    np.testing.assert_allclose(_sd_step("spectral", gv), gv / 5)


def test_steepest_descent_scaled_by_dual_norm():
    g = np.array([3.0, -4.0, 1.0])
    np.testing.assert_allclose(_sd_step("l2", g, scale=True), g, rtol=1e-15)  # plain GD
    np.testing.assert_allclose(_sd_step("linf", g, scale=True), np.abs(g).sum() * np.sign(g))
    np.testing.assert_allclose(_sd_step("l1", g, scale=True), [0.0, -4.0, 0.0])
    m = np.array([[2.0, 0.0], [0.0, 1.0]])
    np.testing.assert_allclose(_sd_step("spectral", m, scale=True), 3.0 * np.eye(2), atol=1e-14)


def test_steepest_descent_zero_gradient_callable_and_errors():
    for norm in ("l2", "l1", "linf", "spectral"):
        np.testing.assert_array_equal(_sd_step(norm, np.zeros((2, 2))), np.zeros((2, 2)))
    v = _sd_step(lambda g: g / np.abs(g).sum(), np.array([1.0, -3.0]), scale=True)
    np.testing.assert_allclose(v, np.array([1.0, -3.0]) / 4 * (1 / 4 + 9 / 4))
    with pytest.raises(ValueError, match="norm must be"):
        optim.SteepestDescent([ad.zeros(1, requires_grad=True)], norm="l3")
    with pytest.raises(ValueError, match="returned shape"):
        _sd_step(lambda g: np.ones(7), np.ones(2))
    z = ad.zeros(2, dtype=complex, requires_grad=True)
    z.grad = ad.ones(2, dtype=complex)
    with pytest.raises(TypeError, match="real parameters"):
        optim.SteepestDescent([z]).step()


def test_steepest_descent_converges_and_maximize():
    x = ad.tensor([2.0, -1.0], requires_grad=True)
    opt = optim.SteepestDescent([x], lr=0.1, norm="l2", scale_by_dual_norm=True)
    for _ in range(200):
        opt.zero_grad()
        ((x - ad.tensor([1.0, 1.0])) ** 2).sum().backward()
        opt.step()
    np.testing.assert_allclose(x.data, [1.0, 1.0], atol=1e-12)
    y = ad.tensor([0.0], requires_grad=True)
    y.grad = ad.tensor([2.0])
    optim.SteepestDescent([y], lr=0.5, norm="linf", maximize=True).step()
    np.testing.assert_array_equal(y.data, [0.5])


# ----- the base class -------------------------------------------------------------------------
def test_parameters_without_grad_are_skipped_and_zero_grad():
    a, b = ad.ones(2, requires_grad=True), ad.ones(2, requires_grad=True)
    opt = optim.Adam([a, b], lr=0.1)
    (a * 2).sum().backward()
    opt.step()
    np.testing.assert_array_equal(b.data, [1.0, 1.0])
    assert b not in opt.state
    assert opt.state[a]["step"] == 1
    opt.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(a.grad.data, [0.0, 0.0])
    opt.zero_grad()
    assert a.grad is None


def _run_with_array_grads(name, kw, steps):
    """The quadratic's trajectory with ``p.grad = ndarray`` (as a finite-difference gradient
    would be fed) instead of backward()."""
    ps = [nn.Parameter(a.copy()) for a in Q_X0]
    opt = getattr(optim, name)(ps, **kw)
    grad_f = ad.grad(lambda *xs: _quad_ad(xs), argnums=(0, 1))

    def closure():
        for p, g in zip(ps, grad_f(*(p.detach() for p in ps))):
            p.grad = np.array(g.data)
        with ad.no_grad():
            return _quad_ad(ps)

    traj = []
    for _ in range(steps):
        opt.step(closure)
        traj.append([p.data.copy() for p in ps])
    return traj


@pytest.mark.parametrize(
    ("name", "kw"), [*CONFIGS, ("SteepestDescent", dict(lr=0.1, norm="linf"))], ids=_id
)
def test_grad_assigned_as_an_ndarray_steps_like_backward(name, kw):
    for got, want in zip(_run_with_array_grads(name, kw, 3), _run_ad(name, kw, "quadratic", 3)):
        for a, b in zip(got, want):
            _close(a, b, 1e-14)


def test_wrong_grad_assignments_are_refused_at_assignment():
    p = nn.Parameter(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"shape \(3, 2\) but the tensor has shape \(2, 3\)"):
        p.grad = np.zeros((3, 2))
    with pytest.raises(ValueError, match=r"shape \(6,\)"):
        p.grad = ad.zeros(6)
    with pytest.raises(TypeError, match=r"dtype float32 but the tensor has dtype float64"):
        p.grad = np.zeros((2, 3), np.float32)
    with pytest.raises(TypeError, match=r"dtype int64"):
        p.grad = np.zeros((2, 3), np.int64)
    with pytest.raises(TypeError, match=r"must be a Tensor, a numpy.ndarray or None, got list"):
        p.grad = [[0.0] * 3] * 2
    with pytest.raises(TypeError, match=r"got MaskedArray"):
        p.grad = np.ma.zeros((2, 3))
    assert p.grad is None  # nothing was stored
    g = np.ones((2, 3))
    p.grad = g
    assert isinstance(p.grad, ad.Tensor) and np.shares_memory(p.grad.data, g)
    (p * 2).sum().backward()  # accumulates into the assigned gradient
    np.testing.assert_array_equal(p.grad.data, np.full((2, 3), 3.0))
    np.testing.assert_array_equal(g, 1.0)  # (out of place)


def test_updates_do_not_record_a_graph_and_bump_versions():
    x = ad.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    optim.SGD([x], lr=0.1).step()
    assert x.is_leaf
    assert x.grad_fn is None
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        y.backward()  # x, saved by the multiply, changed in place


def test_param_groups_and_add_param_group():
    a, b, c = (ad.zeros(2, requires_grad=True) for _ in range(3))
    opt = optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.5, "momentum": 0.9}], lr=0.1)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.5]
    assert opt.param_groups[0]["momentum"] == 0.0
    opt.add_param_group({"params": c, "weight_decay": 0.1})
    assert opt.param_groups[2]["params"] == [c]
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": [a]})
    with pytest.raises(TypeError, match="iterable of Tensors"):
        optim.SGD(a, lr=0.1)
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.SGD([], lr=0.1)
    with pytest.raises(TypeError, match="floating point"):
        optim.SGD([ad.tensor([1, 2])], lr=0.1)
    with pytest.raises(ValueError, match="non-leaf"):
        optim.SGD([a * 2], lr=0.1)
    with pytest.raises(ValueError, match="Nesterov"):
        optim.SGD([a], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="Invalid learning rate"):
        optim.Adam([a], lr=-1.0)
    named = optim.SGD(nn.Linear(2, 1, rng=0).named_parameters(), lr=0.1)
    assert named.param_groups[0]["param_names"] == ["weight", "bias"]


INVALID_HYPERPARAMETERS = [
    ("SGD", dict(lr=-0.1), "Invalid learning rate: -0.1"),
    ("SGD", dict(momentum=-1.0), "Invalid momentum value: -1.0"),
    ("SGD", dict(weight_decay=-1.0), "Invalid weight_decay value: -1.0"),
    ("Adam", dict(eps=-1.0), "Invalid epsilon value: -1.0"),
    ("Adam", dict(betas=(1.0, 0.5)), "Invalid beta parameter at index 0: 1.0"),
    ("AdamW", dict(betas=(0.5, -0.5)), "Invalid beta parameter at index 1: -0.5"),
    ("RMSprop", dict(alpha=-0.5), "Invalid alpha value: -0.5"),
    ("Adagrad", dict(lr_decay=-1.0), "Invalid lr_decay value: -1.0"),
    ("Adagrad", dict(initial_accumulator_value=-1.0), "Invalid initial_accumulator_value value"),
    ("SteepestDescent", dict(lr=float("nan")), "Invalid learning rate: nan"),
    ("LBFGS", dict(lr=-1.0), "Invalid learning rate: -1.0"),
]


@pytest.mark.parametrize(("name", "kwargs", "message"), INVALID_HYPERPARAMETERS)
def test_invalid_hyperparameters_raise_pytorchs_message(name, kwargs, message):
    a = ad.tensor([1.0], requires_grad=True)
    with pytest.raises(ValueError, match=re.escape(message)):
        getattr(optim, name)([a], **kwargs)


def test_hyperparameters_become_the_defaults_in_signature_order():
    a = ad.tensor([1.0], requires_grad=True)
    assert optim.SGD([a], 0.5, 0.9).defaults == dict(
        lr=0.5, momentum=0.9, dampening=0.0, weight_decay=0.0, nesterov=False, maximize=False
    )
    adamw = optim.AdamW([a], betas=(0.5, 0.25), weight_decay=0.1)
    assert adamw.defaults["betas"] == (0.5, 0.25) and adamw.defaults["decoupled_weight_decay"]
    assert optim.LBFGS([a], max_iter=8).defaults["max_eval"] == 10
    assert list(optim.RMSprop([a]).defaults) == [
        "lr",
        "alpha",
        "eps",
        "weight_decay",
        "momentum",
        "centered",
        "maximize",
    ]


def test_step_returns_closure_value_and_runs_it_with_grad_enabled():
    x = ad.tensor([1.0], requires_grad=True)
    opt = optim.SGD([x], lr=0.1)
    seen = []

    def closure():
        seen.append(ad.is_grad_enabled())
        opt.zero_grad()
        loss = (x * x).sum()
        loss.backward()
        return loss

    with ad.no_grad():
        loss = opt.step(closure)
    assert seen == [True]
    assert loss.item() == 1.0
    np.testing.assert_allclose(x.data, [0.8])


def _trained(name, kw, steps=3):
    ps = [nn.Parameter(a.copy()) for a in MLP_P0]
    opt = getattr(optim, name)(ps, **kw)

    def closure():
        opt.zero_grad()
        loss = _mlp_ad(ps)
        loss.backward()
        return loss

    for _ in range(steps):
        opt.step(closure)
    return ps, opt, closure


@pytest.mark.parametrize(("name", "kw"), [*CONFIGS[::2], CONFIGS[-1]], ids=_id)
@pytest.mark.parametrize("through_file", [False, True])
def test_state_dict_round_trip_resumes_identically(name, kw, through_file, tmp_path):
    ps, opt, closure = _trained(name, kw)
    sd = copy.deepcopy(opt.state_dict())
    if through_file:
        adio.save(sd, tmp_path / "opt.npz")
        sd = adio.load(tmp_path / "opt.npz")
    snapshot = [p.data.copy() for p in ps]
    for _ in range(3):
        opt.step(closure)

    qs = [nn.Parameter(a.copy()) for a in snapshot]
    opt2 = getattr(optim, name)(qs, **kw)
    opt2.load_state_dict(sd)

    def closure2():
        opt2.zero_grad()
        loss = _mlp_ad(qs)
        loss.backward()
        return loss

    for _ in range(3):
        opt2.step(closure2)
    for p, q in zip(ps, qs, strict=True):
        np.testing.assert_array_equal(p.data, q.data)


def state_dict_layout(sd):
    """What an Adam state dict must share with PyTorch's, as JSON-like values."""
    group = sd["param_groups"][0]
    layout = {
        "state": [int(k) for k in sd["state"]],
        "state[0]": sorted(sd["state"][0]),
        "params": [int(i) for i in group["params"]],
        **{k: group[k] for k in ("lr", "betas", "eps", "weight_decay", "amsgrad", "maximize")},
    }
    return json.loads(json.dumps(layout))  # tuples become lists, as stored


def adam_state_dict_torch(torch):
    """PyTorch's Adam state dict after one step on the MLP problem."""
    pt = [torch.nn.Parameter(torch.tensor(a)) for a in MLP_P0]
    ot = torch.optim.Adam(pt, lr=0.05)
    _mlp_torch(torch, pt).backward()
    ot.step()
    return ot.state_dict()


def _same_layout(ours, theirs):
    assert ours == theirs
    assert ours["state"] == [0, 1, 2, 3]


@pytest.mark.oracle
def test_state_dict_format_is_pytorchs():
    torch = pytest.importorskip("torch")
    _ps, opt, _ = _trained("Adam", dict(lr=0.05))
    theirs = adam_state_dict_torch(torch)
    _same_layout(state_dict_layout(opt.state_dict()), state_dict_layout(theirs))


def test_state_dict_format_is_stored_pytorchs():
    _ps, opt, _ = _trained("Adam", dict(lr=0.05))
    stored = json.loads(str(_reference.load("optim")["adam_state_dict_layout"]))
    _same_layout(state_dict_layout(opt.state_dict()), stored)


def test_load_state_dict_mismatch_changes_nothing():
    _ps, opt, _ = _trained("Adam", dict(lr=0.05))
    before = copy.deepcopy((opt.state_dict(), opt.param_groups[0]["lr"]))
    good = opt.state_dict()

    def check(bad, match):
        with pytest.raises(ValueError, match=match):
            opt.load_state_dict(bad)
        after = opt.state_dict()
        for i in before[0]["state"]:
            for k, v in before[0]["state"][i].items():
                np.testing.assert_array_equal(after["state"][i][k], v)
        assert opt.param_groups[0]["lr"] == before[1]

    bad = copy.deepcopy(good)
    bad["param_groups"][0]["lr"] = 123.0
    bad["state"][2]["exp_avg"] = np.zeros((3, 3))
    check(bad, "shape")
    bad = copy.deepcopy(good)
    bad["param_groups"][0]["params"] = [0, 1, 2]
    check(bad, "size")
    bad = copy.deepcopy(good)
    bad["state"][7] = {"step": 1}
    check(bad, "index 7")
    bad = copy.deepcopy(good)
    del bad["param_groups"][0]["betas"]
    check(bad, "lacks")
    check({"state": {}}, "'state' and 'param_groups'")
    check({"state": {}, "param_groups": []}, "1")
    bad = copy.deepcopy(good)
    bad["state"]["x"] = {}
    check(bad, "not a parameter index")
    # and a good one with string keys (as JSON-like storage gives) loads
    ok = copy.deepcopy(good)
    ok["state"] = {str(k): v for k, v in ok["state"].items()}
    opt.load_state_dict(ok)


def test_load_state_dict_copies_and_casts():
    x = ad.tensor(np.ones(2, dtype=np.float32), requires_grad=True)
    opt = optim.SGD([x], lr=0.1, momentum=0.9)
    buf = np.array([1.0, 2.0])  # float64 from a file
    opt.load_state_dict(
        {
            "state": {0: {"momentum_buffer": buf}},
            "param_groups": [opt.state_dict()["param_groups"][0]],
        }
    )
    stored = opt.state[x]["momentum_buffer"]
    assert stored.dtype == np.float32
    assert stored is not buf
    buf[0] = 99.0
    assert stored[0] == 1.0


# ----- learning-rate schedulers ----------------------------------------------------------
SCHEDULERS = [
    ("StepLR", dict(step_size=3, gamma=0.5)),
    ("ExponentialLR", dict(gamma=0.9)),
    ("CosineAnnealingLR", dict(T_max=7, eta_min=0.01)),
    ("CosineAnnealingLR", dict(T_max=5)),
    ("LambdaLR", dict(lr_lambda=lambda e: 0.95**e + 1 / (e + 1))),
]


def _lr_sequence(mod_opt, mod_sched, params, name, kw, n=30):
    opt = mod_opt.SGD(params, lr=0.3)
    sched = getattr(mod_sched, name)(opt, **kw)
    seq = []
    for _ in range(n):
        seq.append(sched.get_last_lr())
        opt.step()
        sched.step()
    return seq


def scheduler_key(name, kw):
    """The name of a PyTorch learning-rate sequence in tests/reference/optim.npz."""
    return f"scheduler/{name}/{_id(kw)}"


def _our_lr_sequence(name, kw):
    return _lr_sequence(optim, lr_scheduler, [ad.zeros(1, requires_grad=True)], name, kw)


def torch_lr_sequence(torch, name, kw):
    """PyTorch's learning rates for one of SCHEDULERS."""
    params = [torch.zeros(1, requires_grad=True)]
    return _lr_sequence(torch.optim, torch.optim.lr_scheduler, params, name, kw)


@pytest.mark.oracle
@pytest.mark.parametrize(("name", "kw"), SCHEDULERS, ids=_id)
def test_scheduler_sequences_match_pytorch(name, kw):
    torch = pytest.importorskip("torch")
    theirs = torch_lr_sequence(torch, name, kw)
    np.testing.assert_allclose(_our_lr_sequence(name, kw), theirs, rtol=1e-12, atol=0)


@pytest.mark.parametrize(("name", "kw"), SCHEDULERS, ids=_id)
def test_scheduler_sequences_match_stored_pytorch(name, kw):
    stored = _reference.load("optim")[scheduler_key(name, kw)]
    np.testing.assert_allclose(_our_lr_sequence(name, kw), stored, rtol=1e-12, atol=0)


def test_scheduler_closed_forms_and_two_groups():
    a, b = ad.zeros(1, requires_grad=True), ad.zeros(1, requires_grad=True)
    opt = optim.SGD([{"params": [a]}, {"params": [b], "lr": 2.0}], lr=1.0)
    sched = lr_scheduler.CosineAnnealingLR(opt, T_max=10, eta_min=0.1)
    for t in range(25):
        for base, lr in zip([1.0, 2.0], sched.get_last_lr(), strict=True):
            assert lr == pytest.approx(0.1 + (base - 0.1) * (1 + math.cos(math.pi * t / 10)) / 2)
        sched.step()
    opt = optim.SGD([a], lr=1.0)
    sched = lr_scheduler.StepLR(opt, step_size=4, gamma=0.5)
    for t in range(20):
        assert sched.get_last_lr()[0] == pytest.approx(0.5 ** (t // 4))
        sched.step()
    opt = optim.SGD([a, b], lr=1.0)
    with pytest.raises(ValueError, match="Expected 1 lr_lambdas"):
        lr_scheduler.LambdaLR(opt, [lambda e: 1.0, lambda e: 2.0])


PLATEAU_METRICS = [5, 4, 4.1, 4.0, 3.99999, 4, 4, 4, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2]
PLATEAU_CONFIGS = [
    dict(patience=1),
    dict(patience=2, factor=0.5, cooldown=2, min_lr=0.02),
    dict(mode="max", threshold_mode="abs", threshold=0.5, patience=0),
    dict(patience=0, threshold=0.1, eps=0.05, factor=0.9),
]


def plateau_key(kw):
    """The name of a PyTorch ReduceLROnPlateau sequence in tests/reference/optim.npz."""
    return f"plateau/{_id(kw)}"


def plateau_sequence(opt_module, p, kw):
    """ReduceLROnPlateau's learning rates over PLATEAU_METRICS (``opt_module``: ours or
    torch.optim; ``p`` a parameter of that library)."""
    opt = opt_module.SGD([p], lr=1.0)
    sched = opt_module.lr_scheduler.ReduceLROnPlateau(opt, **kw)
    seq = []
    for m in PLATEAU_METRICS:
        opt.step()
        sched.step(m)
        seq.append(sched.get_last_lr()[0])
    return seq


@pytest.mark.oracle
@pytest.mark.parametrize("kw", PLATEAU_CONFIGS, ids=_id)
def test_reduce_lr_on_plateau_matches_pytorch(kw):
    torch = pytest.importorskip("torch")
    ours = plateau_sequence(optim, ad.zeros(1, requires_grad=True), kw)
    theirs = plateau_sequence(torch.optim, torch.zeros(1, requires_grad=True), kw)
    np.testing.assert_allclose(ours, theirs, rtol=1e-15)


@pytest.mark.parametrize("kw", PLATEAU_CONFIGS, ids=_id)
def test_reduce_lr_on_plateau_matches_stored_pytorch(kw):
    stored = _reference.load("optim")[plateau_key(kw)]
    ours = plateau_sequence(optim, ad.zeros(1, requires_grad=True), kw)
    np.testing.assert_allclose(ours, stored, rtol=1e-15)


def test_scheduler_state_dict_round_trip(tmp_path):
    x = ad.zeros(1, requires_grad=True)
    opt = optim.SGD([x], lr=1.0)
    sched = lr_scheduler.CosineAnnealingLR(opt, T_max=6)
    for _ in range(3):
        sched.step()
    plateau = lr_scheduler.ReduceLROnPlateau(optim.SGD([x], lr=1.0), patience=0)
    plateau.step(1.0)
    adio.save({"cos": sched.state_dict(), "plateau": plateau.state_dict()}, tmp_path / "s.npz")
    saved = adio.load(tmp_path / "s.npz")
    expect = []
    for _ in range(4):
        sched.step()
        expect.append(sched.get_last_lr()[0])
    opt2 = optim.SGD([ad.zeros(1, requires_grad=True)], lr=1.0)
    s2 = lr_scheduler.CosineAnnealingLR(opt2, T_max=6)
    s2.load_state_dict(saved["cos"])
    opt2.param_groups[0]["lr"] = saved["cos"]["_last_lr"][0]
    got = []
    for _ in range(4):
        s2.step()
        got.append(s2.get_last_lr()[0])
    assert got == expect
    p2 = lr_scheduler.ReduceLROnPlateau(optim.SGD([x], lr=1.0), patience=0)
    p2.load_state_dict(saved["plateau"])
    assert p2.best == 1.0
    assert p2.last_epoch == 1
    with pytest.raises(ValueError, match="unknown scheduler state"):
        p2.load_state_dict({"bogus": 1})


# ----- scipy.optimize bridge -------------------------------------------------------------------
def _rosen(x):
    return (100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum()


@pytest.mark.parametrize(
    "method", ["BFGS", "L-BFGS-B", "Newton-CG", "trust-krylov", "trust-ncg", "trust-exact", "CG"]
)
def test_minimize_rosenbrock(method):
    for x0 in (np.array([-1.2, 1.0]), np.array([1.3, 0.7, 0.8, 1.9, 1.2])):
        kw = {"options": {"gtol": 1e-9}} if method in ("BFGS", "CG") else {}
        # NOTE: SciPy's own trust-krylov warns (inside trlib) below tol=1e-8 on this problem.
        tol = 1e-8 if method == "trust-krylov" else 1e-10
        res = optim.minimize(_rosen, x0, method=method, tol=tol, **kw)
        assert res.success, res.message
        np.testing.assert_allclose(res.x, np.ones(x0.size), atol=1e-6)
        assert res.fun < 1e-12


def test_minimize_hessp_is_the_exact_hessian_vector_product(monkeypatch):
    """The ``hessp`` and ``hess`` that minimize hands to SciPy (caught on the way in)."""
    import scipy.optimize
    from scipy.optimize import rosen_hess, rosen_hess_prod

    given = {}
    scipy_minimize = scipy.optimize.minimize

    def spy(fun, x0, method, **kw):
        given[method] = kw
        return scipy_minimize(fun, x0, method=method, **kw)

    monkeypatch.setattr(scipy.optimize, "minimize", spy)
    x0 = np.zeros(4)
    optim.minimize(_rosen, x0, method="trust-ncg", options={"maxiter": 1})
    optim.minimize(_rosen, x0, method="trust-exact", options={"maxiter": 1})
    x = np.array([0.3, -1.2, 2.0, 0.7])
    v = np.array([1.0, -2.0, 0.5, 3.0])
    hessp, hess = given["trust-ncg"]["hessp"], given["trust-exact"]["hess"]
    np.testing.assert_allclose(hessp(x, v), rosen_hess_prod(x, v), rtol=1e-13)
    np.testing.assert_allclose(hessp(x, 2 * v), 2 * rosen_hess_prod(x, v), rtol=1e-13)
    np.testing.assert_allclose(hess(x), rosen_hess(x), rtol=1e-13)


def test_minimize_shapes_args_bounds_and_gradient_free_methods():
    target = np.arange(6.0).reshape(2, 3)

    def f(x, t, w):
        return (w * (x - t) ** 2).sum()

    res = optim.minimize(f, np.zeros((2, 3)), args=(target, 2.0), method="L-BFGS-B")
    assert res.x.shape == (2, 3)
    np.testing.assert_allclose(res.x, target, atol=1e-6)
    res = optim.minimize(f, ad.zeros((2, 3)), args=(target, 1.0), bounds=[(0, 1)] * 6,
                         method="L-BFGS-B")  # fmt: skip
    np.testing.assert_allclose(res.x, np.clip(target, 0, 1), atol=1e-6)
    res = optim.minimize(lambda x: ((x - 1) ** 2).sum(), [3.0], method="Nelder-Mead")
    assert abs(res.x[0] - 1) < 1e-3
    res = optim.minimize(lambda x: (x * 2).sum() * 0 + ad.tensor(1.0), [1.0], method="Newton-CG")
    assert res.fun == 1.0
    with pytest.raises(TypeError, match="scalar Tensor"):
        optim.minimize(lambda x: x, [1.0, 2.0])
