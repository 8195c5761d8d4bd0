# %% [markdown]
# # 10 · Bayesian inference without hand-derived gradients
#
# Bayesian logistic regression on real data, three ways, with every derivative coming from
# autodiffx: nothing below differentiates the log-posterior by hand.
#
# * **Black-box variational inference**: fit a full-covariance Gaussian $q(w) = \mathcal
#   N(m, LL^\top)$ by maximising the ELBO $\mathbb E_q[\log p(t, w)] + H[q]$, with the
#   expectation estimated by reparameterised samples $w = m + L\varepsilon$
#   (`MultivariateNormal.rsample`), the gradient by `backward()`.
# * **Laplace approximation**: the MAP estimate (L-BFGS driven by AD gradients) and the
#   Gaussian whose precision is the Hessian of $-\log p(t, w)$ there, from `ad.hessian`.
# * **Hamiltonian Monte Carlo**: a long Markov chain whose leapfrog steps need
#   $\nabla_w \log p(t, w)$, from `ad.autograd.grad`.
#
# HMC is exact up to Monte-Carlo error, so it is the reference for the other two.
#
# **Data**: the handwritten digits shipped with autodiffx (`autodiffx.data.load_digits`, the
# UCI set that scikit-learn also ships), two classes, 5 against 8. The 8×8 images are
# averaged over 2×2 blocks into 16 features (so that there are few enough coefficients to
# look at), standardised; with a bias, $w \in \mathbb R^{17}$. We train on 120 images only,
# so that the posterior stays wide.

# %%
import math

import matplotlib.pyplot as plt
import numpy as np

import autodiffx as ad
from autodiffx.data import load_digits

D = ad.distributions

X, y = load_digits()
keep = (y == 5) | (y == 8)
pooled = X[keep].reshape(-1, 4, 2, 4, 2).mean(axis=(2, 4)).reshape(-1, 16)
labels = (y[keep] == 8).astype(np.float64)  # t = 1 for an 8
order = np.random.default_rng(0).permutation(len(labels))
train, test = order[:120], order[120:]
center, spread = pooled[train].mean(0), pooled[train].std(0)
Z = np.hstack([np.ones((len(labels), 1)), (pooled - center) / spread])
Ztr, ttr, Zte, tte = Z[train], labels[train], Z[test], labels[test]
DIM = Z.shape[1]
names = ["bias"] + [f"x{r}{c}" for r in range(4) for c in range(4)]
print(f"train {Ztr.shape}, test {Zte.shape}, fraction of 8s in train {ttr.mean():.2f}")

fig, axes = plt.subplots(1, 8, figsize=(9, 1.6), layout="constrained")
for ax, i in zip(axes, train[:8]):
    ax.imshow(pooled[i].reshape(4, 4), cmap="gray_r", vmin=0, vmax=1)
    ax.set_title(f"a {'8' if labels[i] else '5'}", fontsize=9)
    ax.axis("off")
fig.suptitle("the 16 pooled features of the first training images")

# %% [markdown]
# ## The model
#
# $t_i \sim \mathrm{Bernoulli}(\mathrm{sigmoid}(z_i^\top w))$ with the prior $w \sim
# \mathcal N(0, I)$. The log joint density, for one $w$ (shape `(17,)`) or a stack of them
# (shape `(S, 17)`, giving `S` values), is written once, with autodiffx ops; it equals
# `ad.distributions.Bernoulli(logits=...).log_prob` summed plus the prior (checked below).
# `log(1 + e^z)` is `logaddexp(0, z)`, stable for large $|z|$.


# %%
def log_joint(w):
    z = ad.moveaxis(Ztr @ ad.moveaxis(w, -1, 0), 0, -1)  # (..., N)
    log_lik = ad.sum(ttr * z - ad.logaddexp(0.0, z), axis=-1)
    return log_lik - 0.5 * ad.sum(w**2, axis=-1) - 0.5 * DIM * math.log(2 * math.pi)


w_test = np.random.default_rng(1).standard_normal(DIM)
reference = (
    D.Bernoulli(logits=Ztr @ w_test).log_prob(ttr).sum() + D.Normal(0.0, 1.0).log_prob(w_test).sum()
)
assert abs(log_joint(ad.tensor(w_test)).item() - reference.item()) < 1e-10


def neg_log_joint(w):
    return -log_joint(w)


# %% [markdown]
# ## Laplace approximation
#
# `ad.optim.minimize` runs SciPy's L-BFGS with the AD gradient; `ad.hessian`
# (forward-over-reverse) gives the 17×17 Hessian at the optimum, whose inverse is the
# Laplace covariance.

# %%
res = ad.optim.minimize(neg_log_joint, np.zeros(DIM), method="L-BFGS-B", tol=1e-12)
assert res.success, res.message
w_map = res.x
hess = ad.hessian(neg_log_joint)(w_map).numpy()
cov_laplace = np.linalg.inv(hess)
sd_laplace = np.sqrt(np.diag(cov_laplace))
print(f"MAP found in {res.nit} iterations; |grad| = {np.abs(res.jac).max():.1e}")

# %% [markdown]
# ## Black-box variational inference
#
# $q = \mathcal N(m, LL^\top)$ with $L$ lower triangular, its diagonal kept positive as
# $e^{s}$: $17 + 17\cdot 18/2 = 170$ variational parameters. Each Adam step draws 16
# reparameterised samples and ascends the ELBO estimate; $H[q]$ is in closed form
# (`q.entropy()`). No gradient of the ELBO was derived by hand.

# %%
m = ad.zeros(DIM, requires_grad=True)
raw = ad.zeros((DIM, DIM), requires_grad=True)
log_diag = ad.full((DIM,), -1.0, requires_grad=True)
opt = ad.optim.Adam([m, raw, log_diag], lr=0.02)
noise = np.random.default_rng(2)


def variational():
    return D.MultivariateNormal(m, scale_tril=ad.tril(raw, -1) + ad.diag(ad.exp(log_diag)))


elbos = []
for _ in range(1500):
    q = variational()
    elbo = log_joint(q.rsample((16,), rng=noise)).mean() + q.entropy()
    opt.zero_grad()
    (-elbo).backward()
    opt.step()
    elbos.append(elbo.item())

with ad.no_grad():
    q = variational()
    mean_vi = q.mean.numpy()
    cov_vi = q.covariance_matrix.numpy()
sd_vi = np.sqrt(np.diag(cov_vi))
print(f"ELBO, mean of the last 200 steps: {np.mean(elbos[-200:]):.2f}")

# %% [markdown]
# ## Hamiltonian Monte Carlo
#
# The textbook algorithm (Neal 2011): momenta $p \sim \mathcal N(0, M)$, `L` leapfrog steps
# of size $\varepsilon$ (jittered by ±20 %) through $H(w, p) = -\log p(t, w) +
# \tfrac12 p^\top M^{-1} p$, then a Metropolis accept/reject on the change of $H$. The mass
# matrix is diagonal, $M^{-1} = \mathrm{diag}(\sigma_{\text{Laplace}}^2)$, a common cheap
# preconditioner; the chain starts at the MAP. The gradient is `ad.autograd.grad`.


# %%
def log_joint_and_grad(w):
    wt = ad.tensor(w, requires_grad=True)
    lp = log_joint(wt)
    (g,) = ad.autograd.grad(lp, [wt])
    return lp.item(), g.numpy()


def hmc(n_iter, eps, n_leap, inv_mass, w0, seed):
    gen = np.random.default_rng(seed)
    w, (lp, g) = w0.copy(), log_joint_and_grad(w0)
    chain, accepted = np.empty((n_iter, w0.size)), 0
    for it in range(n_iter):
        p = gen.standard_normal(w.size) / np.sqrt(inv_mass)
        e = eps * gen.uniform(0.8, 1.2)
        w1, lp1, g1 = w.copy(), lp, g
        p1 = p + 0.5 * e * g1
        for k in range(n_leap):
            w1 = w1 + e * inv_mass * p1
            lp1, g1 = log_joint_and_grad(w1)
            p1 = p1 + (e if k < n_leap - 1 else 0.5 * e) * g1
        h0 = -lp + 0.5 * np.sum(inv_mass * p**2)
        h1 = -lp1 + 0.5 * np.sum(inv_mass * p1**2)
        if math.log(gen.random()) < h0 - h1:
            w, lp, g = w1, lp1, g1
            accepted += 1
        chain[it] = w
    return chain, accepted / n_iter


chain, acceptance = hmc(1400, 0.35, 8, sd_laplace**2, w_map, seed=3)
samples = chain[200:]  # the first 200 iterations are discarded as burn-in
mean_hmc, sd_hmc = samples.mean(0), samples.std(0, ddof=1)
print(f"HMC: {len(chain)} iterations, acceptance rate {acceptance:.2f}")

# %% [markdown]
# ## Posterior means and 95 % credible intervals, side by side
#
# For the Gaussians $m \pm 1.96\,\sigma$; for HMC the 2.5 % and 97.5 % quantiles of the
# chain.

# %%
lo_hmc, hi_hmc = np.quantile(samples, [0.025, 0.975], axis=0)
methods = {
    "HMC (reference)": (mean_hmc, mean_hmc - lo_hmc, hi_hmc - mean_hmc),
    "VI, full-covariance Gaussian": (mean_vi, 1.96 * sd_vi, 1.96 * sd_vi),
    "Laplace (MAP ± Hessian⁻¹)": (w_map, 1.96 * sd_laplace, 1.96 * sd_laplace),
}
fig, ax = plt.subplots(figsize=(11, 4.2), layout="constrained")
xs = np.arange(DIM)
for k, (label, (mid, below, above)) in enumerate(methods.items()):
    ax.errorbar(
        xs + 0.25 * (k - 1), mid, yerr=[below, above], fmt="o", ms=4, capsize=2, label=label
    )
ax.axhline(0.0, color="gray", lw=0.8)
ax.set_xticks(xs, names, rotation=45)
ax.set_xlabel("coefficient (bias, then pooled pixel at row, column)")
ax.set_ylabel("posterior mean, 95 % interval")
ax.set_title("Bayesian logistic regression, digits 5 vs 8: the three posteriors")
ax.legend(loc="upper left")

# %%
fig, axes = plt.subplots(1, 4, figsize=(12, 3.2), layout="constrained")
axes[0].plot(elbos, lw=0.6)
axes[0].set_ylim(np.percentile(elbos, 5), max(elbos) + 2)
axes[0].set_xlabel("Adam step")
axes[0].set_ylabel("ELBO estimate (16 samples)")
axes[0].set_title("VI: the ELBO")
big = np.argsort(-np.abs(mean_hmc - w_map) / sd_hmc)[:3]  # where Laplace is furthest off
for ax, j in zip(axes[1:], big):
    ax.hist(samples[:, j], bins=40, density=True, color="lightgray", label="HMC")
    grid = np.linspace(samples[:, j].min(), samples[:, j].max(), 200)
    for (label, mu, s), style in zip(
        [("VI", mean_vi[j], sd_vi[j]), ("Laplace", w_map[j], sd_laplace[j])], ["-", "--"]
    ):
        ax.plot(
            grid,
            np.exp(-0.5 * ((grid - mu) / s) ** 2) / (s * math.sqrt(2 * math.pi)),
            style,
            label=label,
        )
    ax.set_xlabel(f"w[{names[j]}]")
    ax.set_title(f"marginal of {names[j]}")
    ax.legend(fontsize=8)
axes[1].set_ylabel("density")

# %% [markdown]
# ## What the comparison shows
#
# * VI's means agree with HMC's to a small fraction of a posterior standard deviation, and
#   its standard deviations to within 15 %. (Here the posterior is close to Gaussian; a
#   mean-field $q$ would underestimate the spread along correlated directions.)
# * Laplace is centred at the *mode*: where the posterior is skewed (the largest
#   coefficients, whose likelihood flattens on one side), the mode sits closer to 0 than the
#   mean, by up to about one standard deviation — the marginals above show it. Its widths
#   are close.
# * All three predict the held-out images about equally well (the posterior predictive
#   $\mathbb E[\mathrm{sigmoid}(z^\top w)]$, by Monte Carlo for VI and HMC).

# %%
z_vi = np.abs(mean_vi - mean_hmc) / sd_hmc
z_laplace = np.abs(w_map - mean_hmc) / sd_hmc
print(f"|mean - HMC mean| / HMC sd: VI max {z_vi.max():.2f}, Laplace max {z_laplace.max():.2f}")
print(
    f"sd / HMC sd: VI {np.round(sd_vi / sd_hmc, 2).min()}..{np.round(sd_vi / sd_hmc, 2).max()}"
    f", Laplace {np.round(sd_laplace / sd_hmc, 2).min()}..{np.round(sd_laplace / sd_hmc, 2).max()}"
)


def sigmoid(v):
    return 1 / (1 + np.exp(-v))


draws_vi = np.random.default_rng(4).multivariate_normal(mean_vi, cov_vi, 2000)
accuracy = {
    "HMC": ((sigmoid(Zte @ samples.T).mean(1) > 0.5) == tte).mean(),
    "VI": ((sigmoid(Zte @ draws_vi.T).mean(1) > 0.5) == tte).mean(),
    "Laplace (MAP)": ((Zte @ w_map > 0) == tte).mean(),
}
print("held-out accuracy:", {k: round(float(v), 3) for k, v in accuracy.items()})

assert 0.6 < acceptance < 0.99
assert z_vi.max() < 0.3
assert np.all(np.abs(sd_vi / sd_hmc - 1) < 0.15)
assert np.all(np.abs(sd_laplace / sd_hmc - 1) < 0.2)
assert z_laplace.max() > 2 * z_vi.max()  # the mode is not the mean
assert min(accuracy.values()) > 0.9
