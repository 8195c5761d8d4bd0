# %% [markdown]
# # 06 · A soft-margin SVM with smoothed Heaviside penalties
#
# A linear support-vector machine separates two classes $y_i \in \{-1, +1\}$ by the sign of
# $f(x) = w^\top x + b$. The soft-margin primal problem is
#
# $$ \min_{w, b}\; J(w, b) = \tfrac12 \|w\|^2 + C \sum_i \max\big(0,\, 1 - y_i f(x_i)\big). $$
#
# The hinge $\max(0, z)$ has a kink, so Newton-type methods do not apply to it directly. This
# notebook smooths it through its derivative, the **Heaviside step** $H$:
#
# * $\frac{d}{dz}\max(0, z) = H(z)$, and replacing $H$ by the logistic
#   $H_\beta(z) = \sigma(\beta z)$ (`F.smooth_heaviside`) and integrating gives the softplus
#   $s_\beta(z) = \frac1\beta \log(1 + e^{\beta z})$ (`F.smooth_relu`) — the smoothed hinge
#   `F.soft_margin_hinge_loss`. It is convex and converges to the hinge as $\beta \to \infty$.
# * Penalising with $H$ itself counts the margin violations (a "0-1" loss). Its smoothed
#   version $\sum_i H_\beta(1 - y_i f_i)$ is bounded: a far-away mislabelled point costs at
#   most $C$, however wrong it is. The price is non-convexity.
#
# We solve the exact hinge problem as a reference, watch the smoothed solutions converge to
# it, and then see what the bounded Heaviside penalty does with outliers.

# %%
import matplotlib.pyplot as plt
import numpy as np

import autodiffx as ad
import autodiffx.nn.functional as F
from autodiffx.train import split_digits

# %% [markdown]
# ## The step, the hinge and their smoothings
#
# The derivative of `smooth_relu` computed by reverse mode is exactly `smooth_heaviside`,
# and the gap to the hinge is largest at the kink: $0 \le s_\beta(z) - \max(0, z) \le
# \log 2/\beta$.

# %%
z = ad.linspace(-3, 3, 601, requires_grad=True)
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained")
axes[0].plot(z.data, F.heaviside(z).data, "k", lw=2, label="Heaviside $H$")
axes[1].plot(z.data, F.relu(z).data, "k", lw=2, label="hinge $\\max(0, z)$")
for beta in (1, 4, 16):
    s = F.smooth_relu(z, beta)
    (ds,) = ad.autograd.grad(s.sum(), z)
    assert np.allclose(ds.data, F.smooth_heaviside(z, beta).data, rtol=1e-12, atol=1e-300)
    gap = (s - F.relu(z)).data
    assert gap.min() >= 0
    assert gap.max() <= np.log(2) / beta + 1e-15
    axes[0].plot(z.data, ds.data, label=f"$H_\\beta = s_\\beta'$, β={beta}")
    axes[1].plot(z.data, s.data, label=f"$s_\\beta$, β={beta}")
axes[0].set(title="the step and its smoothings", xlabel="z")
axes[1].set(title="the hinge and its smoothings", xlabel="z")
for ax in axes:
    ax.legend()
    ax.grid(True, alpha=0.3)

# %% [markdown]
# ## Data
#
# Two Gaussian classes in the plane, 60 points each, plus 8 **mislabelled outliers**: points
# labelled $-1$ lying far inside the $+1$ side.

# %%
rng = np.random.default_rng(0)
n, n_out, sd = 60, 8, 0.7
mean_pos, mean_neg = np.array([1.0, 1.0]), np.array([-1.0, -1.0])
X = np.vstack(
    [
        rng.normal(mean_pos, sd, size=(n, 2)),
        rng.normal(mean_neg, sd, size=(n, 2)),
        rng.normal([5.0, 0.0], 0.3, size=(n_out, 2)),
    ]
)
y = np.r_[np.ones(n), -np.ones(n), -np.ones(n_out)]
outlier = np.r_[np.zeros(2 * n, bool), np.ones(n_out, bool)]
# a large clean test set from the same two classes
X_test = np.vstack([rng.normal(mean_pos, sd, size=(2000, 2)), rng.normal(mean_neg, sd, (2000, 2))])
y_test = np.r_[np.ones(2000), -np.ones(2000)]
C = 1.0


def accuracy(theta):
    return np.mean(np.sign(X_test @ theta[:2] + theta[2]) == y_test)


def hinge_objective(theta):
    w, b = theta[:2], theta[2]
    return 0.5 * w @ w + C * np.maximum(0.0, 1 - y * (X @ w + b)).sum()


# %% [markdown]
# ## The exact solution, from the dual
#
# The dual of the soft-margin problem is a quadratic program in the multipliers $\alpha$:
#
# $$ \min_\alpha\; \tfrac12 \alpha^\top Q \alpha - \mathbf 1^\top \alpha, \quad
#    Q_{ij} = y_i y_j x_i^\top x_j, \quad 0 \le \alpha_i \le C, \quad y^\top \alpha = 0, $$
#
# with $w = \sum_i \alpha_i y_i x_i$ and $b = y_i - w^\top x_i$ for any $0 < \alpha_i < C$.
# `ad.optim.minimize` hands SciPy's SLSQP the objective with its AD gradient; the bounds and
# the constraint go to SciPy unchanged. Strong duality gives a check: the primal and dual
# optimal values agree.

# %%
Q = (X * y[:, None]) @ (X * y[:, None]).T
dual = ad.optim.minimize(
    lambda a: 0.5 * a @ (Q @ a) - a.sum(),
    np.zeros(len(y)),
    method="SLSQP",
    bounds=[(0, C)] * len(y),
    constraints=[{"type": "eq", "fun": lambda a: a @ y, "jac": lambda a: y}],
    options={"ftol": 1e-14, "maxiter": 1000},
)
alpha = dual.x
w_star = (alpha * y) @ X
free = (alpha > 1e-6) & (alpha < C - 1e-6)
theta_star = np.r_[w_star, np.mean(y[free] - X[free] @ w_star)]
print(f"support vectors: {np.sum(alpha > 1e-6)} ({free.sum()} on the margin)")
print(f"primal J = {hinge_objective(theta_star):.8f}, dual = {-dual.fun:.8f}")
print(f"w* = {w_star}, b* = {theta_star[2]:.6f}, test accuracy {accuracy(theta_star):.4f}")
assert abs(hinge_objective(theta_star) + dual.fun) < 1e-5

# %% [markdown]
# ## Smoothed hinge: convergence as β grows
#
# $J_\beta(w, b) = \tfrac12\|w\|^2 + C\sum_i s_\beta(1 - y_i f_i)$ is smooth and strongly
# convex in $w$, so Newton's method applies: `method="Newton-CG"` gets Hessian-vector
# products by double backward. Since $0 \le J_\beta - J \le C n \log 2 / \beta$ everywhere,
# the minimiser $\theta_\beta$ satisfies
#
# $$ J(\theta_\beta) - J(\theta^\star) \le \frac{C n \log 2}{\beta}, \qquad
#    \|w_\beta - w^\star\|^2 \le \frac{2 C n \log 2}{\beta} $$
#
# (the second from the strong convexity of $J$ in $w$). Each solve starts from the previous
# one (continuation in β).


# %%
def smoothed_hinge_objective(theta, beta):
    f = X @ theta[:2] + theta[2]
    return 0.5 * (theta[:2] ** 2).sum() + C * F.soft_margin_hinge_loss(
        f, y, beta=beta, reduction="sum"
    )


betas = [1, 4, 16, 64, 256, 1024]
theta = np.zeros(3)
gaps, dists, bounds = [], [], []
print(" beta   J(θβ) − J*    bound     |wβ − w*|   bound   Newton its")
for beta in betas:
    res = ad.optim.minimize(
        smoothed_hinge_objective, theta, args=(beta,), method="Newton-CG", options={"xtol": 1e-10}
    )
    assert res.success, res.message
    theta = res.x
    gap = hinge_objective(theta) - hinge_objective(theta_star)
    bound = C * len(y) * np.log(2) / beta
    dist = np.linalg.norm(theta[:2] - w_star)
    gaps.append(gap)
    dists.append(dist)
    bounds.append(bound)
    print(
        f"{beta:5d}  {gap:11.3e}  {bound:9.3e}  {dist:9.3e}  {np.sqrt(2 * bound):7.3f}   {res.nit}"
    )
    assert -1e-7 <= gap <= bound
    assert dist <= np.sqrt(2 * bound)
theta_smooth = theta

# %% [markdown]
# Both errors decay like $1/\beta$ — faster than the worst-case bounds, because only the
# points near the margin feel the smoothing.

# %%
fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
ax.loglog(betas, gaps, "o-", label="$J(θ_β) - J^*$")
ax.loglog(betas, dists, "s-", label="$\\|w_β - w^*\\|$")
ax.loglog(betas, bounds, "k--", label="bound $Cn\\log 2/β$")
ax.set(xlabel="β", title="smoothed hinge → hinge")
ax.legend()
ax.grid(True, which="both", alpha=0.3)

# %% [markdown]
# ## Smoothed Heaviside penalty: robustness to the outliers
#
# The hinge charges the outliers in proportion to how wrong they are, so they tilt the
# separating line. With the penalty $C\sum_i H_\beta(1 - y_i f_i)$ each point costs at most
# $C$: once an outlier is hopelessly misclassified its gradient vanishes
# ($H_\beta' \to 0$ far from the margin) and it stops pulling. The problem is non-convex, so
# we start from the hinge solution and increase β gradually (BFGS with AD gradients).


# %%
def heaviside_objective(theta, beta):
    f = X @ theta[:2] + theta[2]
    return 0.5 * (theta[:2] ** 2).sum() + C * F.smooth_heaviside(1 - y * f, beta).sum()


theta_robust = theta_star.copy()
for beta in (1, 2, 4):
    res = ad.optim.minimize(heaviside_objective, theta_robust, args=(beta,), method="BFGS")
    theta_robust = res.x

# the same hinge SVM without the outliers, for comparison
clean = ~outlier
dual_clean = ad.optim.minimize(
    lambda a: 0.5 * a @ (Q[np.ix_(clean, clean)] @ a) - a.sum(),
    np.zeros(clean.sum()),
    method="SLSQP",
    bounds=[(0, C)] * clean.sum(),
    constraints=[{"type": "eq", "fun": lambda a: a @ y[clean], "jac": lambda a: y[clean]}],
    options={"ftol": 1e-14, "maxiter": 1000},
)
a_c = dual_clean.x
w_c = (a_c * y[clean]) @ X[clean]
free_c = (a_c > 1e-6) & (a_c < C - 1e-6)
theta_clean = np.r_[w_c, np.mean(y[clean][free_c] - X[clean][free_c] @ w_c)]

for name, th in [
    ("hinge, with outliers", theta_star),
    ("smoothed hinge β=1024", theta_smooth),
    ("smoothed Heaviside β=4", theta_robust),
    ("hinge, outliers removed", theta_clean),
]:
    print(
        f"{name:25s} w = {np.array2string(th[:2], precision=3)}  b = {th[2]:+.3f}"
        f"  clean test accuracy {accuracy(th):.4f}"
    )
assert accuracy(theta_robust) > accuracy(theta_star) + 0.03

# %%
fig, ax = plt.subplots(figsize=(10, 5.5), layout="constrained")
ax.scatter(*X[y > 0].T, c="tab:blue", s=18, label="+1")
ax.scatter(*X[(y < 0) & ~outlier].T, c="tab:red", s=18, label="−1")
ax.scatter(*X[outlier].T, c="tab:red", marker="x", s=50, label="−1 (outliers)")
xs = np.linspace(-3.5, 6.5, 2)
for name, th, color in [
    ("hinge", theta_star, "k"),
    ("smoothed Heaviside", theta_robust, "tab:green"),
    ("hinge without outliers", theta_clean, "tab:purple"),
]:
    w, b = th[:2], th[2]
    for level, style in ((0, "-"), (1, ":"), (-1, ":")):
        ax.plot(
            xs,
            (level - b - w[0] * xs) / w[1],
            style,
            color=color,
            label=f"{name}: f = 0, ±1" if level == 0 else None,
        )
ax.set(
    xlim=(-3.5, 6.5),
    ylim=(-3.5, 3.5),
    aspect="equal",
    xlabel="$x_1$",
    ylabel="$x_2$",
    title="decision lines and margins",
)
ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1))

# %% [markdown]
# The hinge line is rotated towards the outliers; the smoothed-Heaviside line is almost the
# one fitted without them, and its accuracy on clean data is correspondingly higher.
#
# ## Real data: two digits
#
# The same smoothed-hinge SVM on raw pixels, separating the digits 3 and 8 of the embedded
# data set (64 features, the held-out split of `autodiffx train`).

# %%
Xtr, ytr, Xte, yte = split_digits(seed=0)
pick_tr, pick_te = np.isin(ytr, (3, 8)), np.isin(yte, (3, 8))
A, a_lab = Xtr[pick_tr], np.where(ytr[pick_tr] == 3, 1.0, -1.0)
B, b_lab = Xte[pick_te], np.where(yte[pick_te] == 3, 1.0, -1.0)


def digits_objective(theta, beta):
    f = A @ theta[:-1] + theta[-1]
    return 0.5 * (theta[:-1] ** 2).sum() + C * F.soft_margin_hinge_loss(
        f, a_lab, beta=beta, reduction="sum"
    )


theta = np.zeros(65)
for beta in (1, 10, 100):
    theta = ad.optim.minimize(
        digits_objective, theta, args=(beta,), method="Newton-CG", options={"xtol": 1e-8}
    ).x
acc = np.mean(np.sign(B @ theta[:-1] + theta[-1]) == b_lab)
print(f"3 vs 8: {len(a_lab)} training, {len(b_lab)} test images, test accuracy {acc:.4f}")
assert acc > 0.95
