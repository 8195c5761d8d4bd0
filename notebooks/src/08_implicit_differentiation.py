# %% [markdown]
# # 08 · Implicit differentiation: deep equilibrium layers and a differentiated CG
#
# Many quantities are defined as the *solution of an equation* rather than by a formula:
# the fixed point of a layer, the root of a system, the solution of a linear system found
# by an iterative solver. Differentiating through the solver's iterations works but costs
# memory proportional to their number and, for some solvers, gives wrong derivatives.
#
# The **implicit function theorem** gives the derivative from the equation alone. If
# $F(z^\star, \theta) = 0$ then
#
# $$ \frac{\partial z^\star}{\partial\theta} = -\Big(\frac{\partial F}{\partial z}\Big)^{-1}
#    \frac{\partial F}{\partial\theta}, $$
#
# so reverse mode solves one linear system $(\partial F/\partial z)^\top\lambda = \bar z$
# (matrix-free, with VJPs of $F$) and returns $\bar\theta = -(\partial F/\partial\theta)^\top
# \lambda$; forward mode solves $(\partial F/\partial z)\,\dot z = -\partial F/\partial\theta\;
# \dot\theta$. Nothing about *how* $z^\star$ was found is stored.
#
# autodiffx provides
#
# * `ad.linalg.custom_linear_solve(matvec, b, solve)`: any solver of $A x = b$,
#   differentiated through the linear system (the building block);
# * `ad.linalg.cg`, `ad.linalg.minres`: SciPy's Krylov solvers, differentiated by an
#   adjoint solve;
# * `ad.implicit.root(F, z0, *params)` and `ad.implicit.fixed_point(g, z0, *params)`.

# %%
import time
import tracemalloc
import warnings

import matplotlib.pyplot as plt
import numpy as np

import autodiffx as ad
from autodiffx import implicit


def measure(fn):
    """(result, seconds, peak MiB traced by tracemalloc) of fn()."""
    tracemalloc.start()
    t0 = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return out, seconds, peak


# %% [markdown]
# ## 1. The building block: `custom_linear_solve`
#
# `matvec` is $v \mapsto A v$ written with autodiffx ops; it may close over Tensors (the
# parameters of $A$). The solver gets `matvec` and the right-hand side as NumPy arrays and
# may be anything: here a dense LAPACK solve of the materialised matrix. For $x = A^{-1} b$,
# the rules are $\bar b = A^{-\top}\bar x$ and $\bar\theta = -\partial_\theta\langle \bar b,
# A(\theta)\,x\rangle$ (one VJP through `matvec` at fixed $x$), which we check against
# `ad.linalg.solve`.

# %%
rng = np.random.default_rng(0)
W0 = rng.standard_normal((4, 6))
b0 = rng.standard_normal(6)


def dense(mv, rhs):
    return np.linalg.solve(np.stack([mv(e) for e in np.eye(rhs.size)], axis=1), rhs)


W = ad.tensor(W0, requires_grad=True)
x = ad.linalg.custom_linear_solve(lambda v: W.T @ (W @ v) + v, ad.tensor(b0), dense)
(x**2).sum().backward()

W_ref = ad.tensor(W0, requires_grad=True)
(ad.linalg.solve(W_ref.T @ W_ref + ad.eye(6), ad.tensor(b0)) ** 2).sum().backward()
print("max |dL/dW - reference| =", np.abs(W.grad.data - W_ref.grad.data).max())
assert np.abs(W.grad.data - W_ref.grad.data).max() < 1e-10

# %% [markdown]
# ## 2. A deep-equilibrium layer
#
# A deep equilibrium (DEQ) layer outputs the fixed point of one cell,
#
# $$ z^\star = \tanh(W z^\star + U x + c), $$
#
# an "infinitely deep" weight-tied network. With $\|W\|_2 < 1$ the map is a contraction
# ($|\tanh'| \le 1$) and plain iteration converges. We fit $y = \sin(3x_1)\cos(2x_2)$ with
# the prediction $V z^\star$.
#
# `fixed_point` runs the iteration on values only, then differentiates $z = g(z, \theta)$
# by the implicit function theorem: one GMRES solve of $(I - \partial g/\partial z)^\top
# \lambda = \bar z$ per backward pass, whose products are VJPs through *one* recorded
# application of the cell. The alternative is to unroll the iteration and backpropagate
# through every step.

# %%
N, D, H = 256, 2, 32
X = rng.uniform(-1, 1, (N, D))
Y = np.sin(3 * X[:, :1]) * np.cos(2 * X[:, 1:])


def init(seed=0):
    r = np.random.default_rng(seed)
    w = r.standard_normal((H, H))
    w *= 0.9 / np.linalg.norm(w, 2)  # spectral norm 0.9: a contraction
    return {
        "W": ad.tensor(w, requires_grad=True),
        "U": ad.tensor(r.standard_normal((H, D)), requires_grad=True),
        "c": ad.tensor(np.zeros(H), requires_grad=True),
        "V": ad.tensor(r.standard_normal((1, H)) / np.sqrt(H), requires_grad=True),
    }


cell_calls = [0]


def cell(z, w, u):
    cell_calls[0] += 1
    return ad.tanh(z @ w.T + u)


def deq_implicit(p, X):
    u = ad.tensor(X) @ p["U"].T + p["c"]
    z = implicit.fixed_point(cell, np.zeros((X.shape[0], H)), p["W"], u, tol=1e-10)
    return z @ p["V"].T


def deq_unrolled(p, X, depth):
    u = ad.tensor(X) @ p["U"].T + p["c"]
    z = ad.zeros((X.shape[0], H))
    for _ in range(depth):
        z = cell(z, p["W"], u)
    return z @ p["V"].T


def mse(pred):
    return ((pred - ad.tensor(Y)) ** 2).mean()


def gradients(model, *args):
    p = init()
    mse(model(p, X, *args)).backward()
    return {k: v.grad.data for k, v in p.items()}


# %% [markdown]
# ### Same gradients
#
# The unrolled gradient approaches the implicit one as the depth grows, and agrees with it
# to round-off once the unrolled iteration has converged.

# %%
cell_calls[0] = 0
g_imp = gradients(deq_implicit)
print(f"implicit: {cell_calls[0]} applications of the cell, forward and backward together")
for depth in (10, 25, 50, 100, 200):
    g_unr = gradients(deq_unrolled, depth)
    err = max(np.abs(g_imp[k] - g_unr[k]).max() for k in g_imp)
    print(f"unrolled depth {depth:3d}: max |grad difference| = {err:.2e}")
assert err < 1e-8

# %% [markdown]
# ### Time and memory of one forward + backward pass
#
# `tracemalloc` records the peak of the memory allocated (NumPy reports its buffers to it).
# The unrolled graph keeps every iterate for the backward pass: memory grows linearly with
# the depth. The implicit layer keeps one application of the cell plus the GMRES basis,
# whatever the number of forward iterations.

# %%
def one_pass(model, *args):
    p = init()
    loss = mse(model(p, X, *args))
    loss.backward()
    return loss.item()


rows = [("implicit", *measure(lambda: one_pass(deq_implicit))[1:])]
for depth in (25, 50, 100, 200):
    rows.append((f"unrolled {depth}", *measure(lambda d=depth: one_pass(deq_unrolled, d))[1:]))
print(f"{'method':14s} {'seconds':>8s} {'peak MiB':>9s}")
for name, sec, mib in rows:
    print(f"{name:14s} {sec:8.3f} {mib:9.2f}")

fig, ax = plt.subplots(figsize=(5, 3), layout="constrained")
depths = [25, 50, 100, 200]
ax.plot(depths, [r[2] for r in rows[1:]], "o-", label="unrolled")
ax.axhline(rows[0][2], color="C1", label="implicit (fixed_point)")
ax.set(xlabel="unrolled depth", ylabel="peak memory (MiB)", title="memory of one pass")
ax.legend()

# %% [markdown]
# ### Training the layer
#
# Adam on the four parameters; after each step $W$ is scaled back to spectral norm 0.9 if
# it left the ball, which keeps the layer a contraction (so its fixed point exists and the
# iteration finds it).

# %%
p = init()
opt = ad.optim.Adam(list(p.values()), lr=5e-3)
history = []
t0 = time.perf_counter()
for step in range(150):
    opt.zero_grad()
    loss = mse(deq_implicit(p, X))
    loss.backward()
    opt.step()
    with ad.no_grad():
        s = np.linalg.norm(p["W"].data, 2)
        if s > 0.9:
            p["W"].data[...] *= 0.9 / s
    history.append(loss.item())
seconds = time.perf_counter() - t0
print(f"150 steps in {seconds:.1f} s: loss {history[0]:.4f} -> {history[-1]:.5f}")
assert history[-1] < 0.1 * history[0]

fig, axes = plt.subplots(1, 2, figsize=(9, 3), layout="constrained")
axes[0].semilogy(history)
axes[0].set(xlabel="step", ylabel="training MSE", title="training the implicit layer (Adam)")
with ad.no_grad():
    pred = deq_implicit(p, X).data[:, 0]
axes[1].scatter(Y[:, 0], pred, s=6)
axes[1].plot([-1, 1], [-1, 1], "k--", lw=1)
axes[1].set_xticks([-1, -0.5, 0, 0.5, 1])
axes[1].set(xlabel="target", ylabel="DEQ prediction", title="fit after 150 steps")

# %% [markdown]
# ## 3. Differentiating conjugate gradients
#
# Take an ill-conditioned symmetric positive definite system $A(\theta) x = b$ with
# $A(\theta) = K + \theta I$ (condition number about $10^5$) and the loss $L = c^\top x$.
# Two ways to get $\partial L/\partial\theta$ and $\partial L/\partial b$ from CG:
#
# * **unrolled**: write CG in autodiffx ops and backpropagate through its iterations;
# * **implicit**: `ad.linalg.cg` runs SciPy's CG forward and differentiates by one adjoint
#   CG solve, $A\lambda = c$, giving $\bar b = \lambda$ and $\bar\theta = -\lambda^\top x$.
#
# The reference is `ad.linalg.solve` (dense LAPACK, differentiated by the same implicit
# rule).

# %%
n = 200
Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
K = Q @ np.diag(np.logspace(-4, 2, n)) @ Q.T
K = 0.5 * (K + K.T)
bvec = rng.standard_normal(n)
cvec = rng.standard_normal(n)
THETA = 1e-3
print(f"condition number {np.linalg.cond(K + THETA * np.eye(n)):.1e}")


def cg_unrolled(A, b, iters):
    """Textbook CG in autodiffx ops: every iteration is recorded."""
    x = ad.zeros(n)
    r = b
    p = r
    rs = (r * r).sum()
    for _ in range(iters):
        Ap = A @ p
        alpha = rs / (p * Ap).sum()
        x = x + alpha * p
        r = r - alpha * Ap
        rs_new = (r * r).sum()
        p = r + (rs_new / rs) * p
        rs = rs_new
    return x


def cg_gradients(solver):
    th = ad.tensor(THETA, requires_grad=True)
    b = ad.tensor(bvec, requires_grad=True)
    (ad.tensor(cvec) * solver(ad.tensor(K) + th * ad.eye(n), b)).sum().backward()
    return th.grad.item(), b.grad.data


ref_theta, ref_b = cg_gradients(ad.linalg.solve)


def rel_errors(g):
    """Relative errors of (∂L/∂θ, ∂L/∂b) against the dense reference."""
    err_b = np.abs(g[1] - ref_b).max() / np.abs(ref_b).max()
    return abs(g[0] - ref_theta) / abs(ref_theta), err_b


iters = [25, 50, 100, 200, 400, 800]
unrolled_err, implicit_err = [], []
for k in iters:
    unrolled_err.append(rel_errors(cg_gradients(lambda A, b, k=k: cg_unrolled(A, b, k))))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ad.linalg.ConvergenceWarning)  # maxiter=k stops early
        g = cg_gradients(
            lambda A, b, k=k: ad.linalg.cg(
                A, b, rtol=1e-14, maxiter=k, adjoint_rtol=1e-12, adjoint_maxiter=5000
            )
        )
    implicit_err.append(rel_errors(g))
heads = ("iterations", "unrolled dθ", "unrolled db", "implicit dθ", "implicit db")
print(" ".join(f"{h:>12s}" for h in heads))
for k, (ut, ub), (it, ib) in zip(iters, unrolled_err, implicit_err):
    print(f"{k:12d} {ut:12.2e} {ub:12.2e} {it:12.2e} {ib:12.2e}")

fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), layout="constrained")
for ax, j, name in zip(axes, (0, 1), ("∂L/∂θ", "∂L/∂b")):
    ax.loglog(iters, [e[j] for e in unrolled_err], "o-", label="unrolled CG")
    ax.loglog(iters, [e[j] for e in implicit_err], "s-", label="ad.linalg.cg (adjoint)")
    ax.set(xlabel="forward CG iterations", ylabel=f"relative error of {name}")
    ax.set_title(f"error of {name} against the dense solve")
    # the iteration counts as plain tick labels (log-axis minor labels overlap)
    ax.set_xticks(iters, [str(k) for k in iters])
    ax.xaxis.set_minor_locator(plt.NullLocator())
    ax.legend()

# %% [markdown]
# * $\partial L/\partial b = \lambda$ from the adjoint solve does not depend on the forward
#   iterations at all: it is exact (to the adjoint tolerance) even after 25 forward steps.
#   $\partial L/\partial\theta = -\lambda^\top x$ is exact *at the returned* $x$, so its error
#   is the forward solve's error and vanishes as CG converges.
# * The unrolled gradient is the derivative of the first $k$ iterates. In floating point, CG
#   on an ill-conditioned system loses the orthogonality of its residuals; its iterates
#   still converge, but their derivatives do not: past a few hundred iterations the
#   unrolled gradient is far off, and it gets *worse* with more iterations.
#
# ### Time and memory

# %%
methods = {
    "dense solve": ad.linalg.solve,
    "implicit cg": lambda A, b: ad.linalg.cg(A, b, rtol=1e-12, maxiter=5000),
    "unrolled cg 800": lambda A, b: cg_unrolled(A, b, 800),
}
rows = [(name, *measure(lambda s=s: cg_gradients(s))[1:]) for name, s in methods.items()]
print(f"{'method':16s} {'seconds':>8s} {'peak MiB':>9s}")
for name, sec, mib in rows:
    print(f"{name:16s} {sec:8.3f} {mib:9.2f}")
assert implicit_err[0][1] < 1e-8 and unrolled_err[-1][1] > 1e-2

# %% [markdown]
# ## Summary
#
# | | unrolled | implicit |
# |---|---|---|
# | memory | grows with the iterations | one application of the map (+ Krylov basis) |
# | backward cost | replays every iteration | one linear solve, whatever the forward did |
# | derivative | of the truncated iteration (can diverge, as for CG) | of the equation at the returned solution |
#
# The implicit derivatives are exact at the solution the forward solver returns: use a
# converged forward solve when the loss depends on the solution itself, and set the adjoint
# tolerance (`adjoint_rtol`, `linear_tol`) for the accuracy of the derivative.
