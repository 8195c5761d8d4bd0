# %% [markdown]
# # 09 · Gradients of expectations: pathwise, score function, baselines and DiCE
#
# Many objectives are expectations over a distribution that depends on the parameters:
# $J(\theta) = \mathbb E_{x\sim p_\theta}[f(x)]$ (a variational bound, an expected reward, a
# stochastic computation graph). Automatic differentiation cannot differentiate "the
# expectation" directly, but it can differentiate a Monte-Carlo **surrogate** whose gradient
# is an unbiased estimate of $\nabla_\theta J$. `ad.stochastic` builds the classical ones:
#
# * **pathwise** (reparameterisation): $x = g(\theta, \varepsilon)$ with noise $\varepsilon$
#   independent of $\theta$, so $\nabla J = \mathbb E_\varepsilon[\nabla_\theta f(g(\theta,
#   \varepsilon))]$ — needs `dist.rsample` and a differentiable $f$;
# * **score function** (REINFORCE): $\nabla J = \mathbb E[f(x)\,\nabla_\theta \log
#   p_\theta(x)]$ — needs only `log_prob`, works for discrete $x$ and non-differentiable $f$;
# * the score function **with a baseline** $b$: $\mathbb E[(f(x) - b)\nabla\log p_\theta(x)]$
#   is the same gradient (since $\mathbb E[\nabla \log p] = 0$) with, usually, less variance.
#
# The score-function surrogate is written in the DiCE form (Foerster et al. 2018),
# $\square(\log p)\,f$ with $\square(l) = e^{\,l - \mathrm{stop\_gradient}(l)}$: its value is
# exactly the Monte-Carlo mean, and *every* derivative of it (not only the first) is an
# unbiased estimator, so `ad.hessian` of the same objective estimates the Hessian.
#
# Two problems with exact answers:
#
# * **Gaussian**, $x\sim\mathcal N(\mu,\sigma^2)$, $f(x) = x^2$: $J = \mu^2+\sigma^2$,
#   $\nabla J = (2\mu, 2\sigma)$, $\nabla^2 J = 2I$; at $\mu = 1$, $\sigma = 0.6$.
# * **Bernoulli**, $x\sim\mathrm{Bernoulli}(\mathrm{sigmoid}(t))$, $f(x) = (x - c)^2$:
#   $J = p(1-c)^2 + (1-p)c^2$, $J'(t) = p(1-p)(1-2c)$, $J''(t) = p(1-p)(1-2p)(1-2c)$; at
#   $t = 0.4$, $c = 0.3$. There is no pathwise estimator here ($x$ is discrete).

# %%
import math

import matplotlib.pyplot as plt
import numpy as np

import autodiffx as ad

D, S = ad.distributions, ad.stochastic

MU, SIGMA = 1.0, 0.6
T, C = 0.4, 0.3
P = 1 / (1 + math.exp(-T))
theta0 = np.array([MU, SIGMA])
exact_grad_gauss = np.array([2 * MU, 2 * SIGMA])
exact_grad_bern = np.array([P * (1 - P) * (1 - 2 * C)])
exact_hess_gauss = 2 * np.eye(2)
exact_hess_bern = P * (1 - P) * (1 - 2 * P) * (1 - 2 * C)


def square(x):
    return x**2


def gauss(th):
    return D.Normal(th[0], th[1])


def bern(t):
    return D.Bernoulli(logits=t[0])


def bern_f(x):
    return (x - C) ** 2


GAUSS = {
    "pathwise": lambda th, n, s: S.pathwise(square, gauss(th), n, rng=s),
    "score function": lambda th, n, s: S.score_function(square, gauss(th), n, rng=s),
    "score + baseline": lambda th, n, s: S.score_function(
        square, gauss(th), n, rng=s, baseline="loo"
    ),
}
BERN = {
    "score function": lambda t, n, s: S.score_function(bern_f, bern(t), n, rng=s),
    "score + baseline": lambda t, n, s: S.score_function(bern_f, bern(t), n, rng=s, baseline="loo"),
}

# %% [markdown]
# ## One estimate of each kind
#
# Each estimator is a function of the parameters returning a scalar Tensor, so `ad.grad`
# gives the gradient estimate. The baseline here is leave-one-out: for sample $i$ the mean
# of the other samples' $f$ (it never sees $x_i$, so the estimator stays unbiased). Asking
# for a pathwise gradient of the Bernoulli raises, pointing to the score function.

# %%
for name, est in GAUSS.items():
    g = ad.grad(lambda th, est=est: est(th, 1000, 0))(theta0).numpy()
    print(f"Gaussian  {name:17s} grad = {np.round(g, 3)}   exact {exact_grad_gauss}")
for name, est in BERN.items():
    g = ad.grad(lambda t, est=est: est(t, 1000, 0))(np.array([T])).numpy()
    print(f"Bernoulli {name:17s} grad = {np.round(g, 4)}   exact {np.round(exact_grad_bern, 4)}")
try:
    S.pathwise(bern_f, bern(ad.tensor([T])), 10, rng=0)
except NotImplementedError as e:
    print("pathwise on a Bernoulli:", str(e)[:90], "...")

# %% [markdown]
# ## Variance against sample size
#
# Every estimator is run `R` times on independent seeds at each sample size $n$; the
# variance of the gradient estimate (summed over the parameters) falls as $1/n$ for all of
# them — what differs is the constant, the variance of one sample's contribution,
# $n\,\mathrm{Var}$. For the pathwise estimator on the Gaussian it is known exactly:
# $\mathrm{Var}[2x] + \mathrm{Var}[2x\varepsilon] = 4\sigma^2 + 4(\mu^2+2\sigma^2) = 8.32$.

# %%
R = 150
NS = [10, 30, 100, 300, 1000]


def estimates(est, theta, n, reps=R):
    """Gradient estimates of R independent runs, shape (R, len(theta))."""
    grad = ad.grad(lambda th, s: est(th, n, s))
    return np.stack([grad(theta, s).numpy() for s in range(reps)])


runs = {
    "Gaussian": {k: {n: estimates(e, theta0, n) for n in NS} for k, e in GAUSS.items()},
    "Bernoulli": {k: {n: estimates(e, np.array([T]), n) for n in NS} for k, e in BERN.items()},
}
exact = {"Gaussian": exact_grad_gauss, "Bernoulli": exact_grad_bern}
nvar = {}  # n * Var at each n, summed over the parameters
print(f"{'problem':10s} {'estimator':18s} " + " ".join(f"n={n:<6d}" for n in NS) + " max|z|")
for prob, by_est in runs.items():
    for name, by_n in by_est.items():
        nvar[prob, name] = np.array([n * by_n[n].var(0, ddof=1).sum() for n in NS])
        z = max(
            np.abs((g.mean(0) - exact[prob]) / (g.std(0, ddof=1) / math.sqrt(R))).max()
            for g in by_n.values()
        )
        row = " ".join(f"{v:<8.4g}" for v in nvar[prob, name])
        print(f"{prob:10s} {name:18s} {row} {z:.1f}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
styles = {"pathwise": "o-", "score function": "s-", "score + baseline": "^-"}
for ax, prob in zip(axes, runs):
    for name in runs[prob]:
        ax.loglog(NS, nvar[prob, name] / np.array(NS), styles[name], label=name)
    if prob == "Gaussian":
        ax.loglog(NS, 8.32 / np.array(NS), "k:", label="pathwise, exact 8.32 / n")
    ax.set_xlabel("sample size n")
    ax.set_ylabel("variance of the gradient estimate")
    ax.set_title(f"{prob}: Var over {R} runs (sum over parameters)")
    ax.legend()
    ax.grid(True, which="both", alpha=0.3)

# %% [markdown]
# The checks behind the figure: every estimator's mean lies within 4 standard errors of the
# exact gradient; on the Gaussian the pathwise estimator has several times less variance than
# the score function; the baseline removes a large part of the score function's variance on
# both problems; and the measured $n\,\mathrm{Var}$ of the pathwise estimator matches 8.32.

# %%
for prob, by_est in runs.items():
    for by_n in by_est.values():
        for g in by_n.values():
            assert np.all(np.abs(g.mean(0) - exact[prob]) < 4 * g.std(0, ddof=1) / math.sqrt(R))
g_path, g_score = nvar["Gaussian", "pathwise"], nvar["Gaussian", "score function"]
assert np.all(g_path < g_score / 4)
assert np.all(nvar["Gaussian", "score + baseline"] < 0.8 * g_score)
assert np.all(
    nvar["Bernoulli", "score + baseline"][1:] < 0.3 * nvar["Bernoulli", "score function"][1:]
)
assert np.all(np.abs(g_path / 8.32 - 1) < 0.35)
print("n Var at n = 100:", {f"{p}/{k}": round(float(v[2]), 4) for (p, k), v in nvar.items()})

# %% [markdown]
# ## Second order: the DiCE Hessian against the analytic one
#
# `ad.hessian` of the score-function objective differentiates the magic box twice:
# $\nabla^2[\square(l) f] = \square(l)\,f\,(\nabla l\,\nabla l^\top + \nabla^2 l)$, whose
# expectation is $\nabla^2 J$. The older surrogate $\log p\cdot\mathrm{stop\_gradient}(f)$
# (Schulman et al. 2015) has the right first derivative but its second derivative is
# $\mathbb E[f\,\nabla^2 \log p]$ — the $\nabla l\,\nabla l^\top$ term is missing, and the
# estimate converges to the wrong matrix. We average 200 Hessian estimates of each with
# $n = 200$ samples.


# %%
def naive_surrogate(th, n, s):
    d = gauss(th)
    x = d.sample((n,), rng=s)
    return (d.log_prob(x) * square(x).detach()).mean()


def hessians(obj, theta, n=200, reps=200):
    h = ad.hessian(lambda th, s: obj(th, n, s))
    return np.stack([np.atleast_2d(h(theta, s).numpy()) for s in range(reps)])


H = {
    "DiCE, Gaussian": (hessians(GAUSS["score function"], theta0), exact_hess_gauss),
    "DiCE + baseline, Gaussian": (hessians(GAUSS["score + baseline"], theta0), exact_hess_gauss),
    "log p · stop_grad(f), Gaussian": (hessians(naive_surrogate, theta0), exact_hess_gauss),
    "DiCE, Bernoulli": (hessians(BERN["score function"], np.array([T])), exact_hess_bern),
}
zs = {}
for name, (hs, ex) in H.items():
    mean, se = hs.mean(0), hs.std(0, ddof=1) / math.sqrt(len(hs))
    zs[name] = (mean - ex) / se
    print(
        f"{name:31s} mean {np.round(mean, 3).ravel()}  exact {np.round(ex, 3).ravel()}"
        f"  n Var {200 * hs.var(0, ddof=1).sum():.4g}  max|z| {np.abs(zs[name]).max():.1f}"
    )

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained", width_ratios=[3, 1])
labels = ["∂²/∂μ²", "∂²/∂μ∂σ", "∂²/∂σ²"]
idx = [(0, 0), (0, 1), (1, 1)]
for k, name in enumerate([n for n in H if "Gaussian" in n]):
    hs = H[name][0]
    m = [hs[:, i, j].mean() for i, j in idx]
    e = [2 * hs[:, i, j].std(ddof=1) / math.sqrt(len(hs)) for i, j in idx]
    axes[0].errorbar(np.arange(3) + 0.15 * (k - 1), m, yerr=e, fmt="o", capsize=4, label=name)
axes[0].hlines(
    [exact_hess_gauss[i, j] for i, j in idx],
    np.arange(3) - 0.3,
    np.arange(3) + 0.3,
    colors="k",
    label="exact",
)
axes[0].set_xticks(np.arange(3), labels)
axes[0].set_ylabel("Hessian entry (mean ± 2 SE)")
axes[0].set_title("Gaussian, f = x²")
axes[0].legend(fontsize=8, loc="lower left")
hb = H["DiCE, Bernoulli"][0].ravel()
axes[1].errorbar(
    [0],
    [hb.mean()],
    yerr=[2 * hb.std(ddof=1) / math.sqrt(len(hb))],
    fmt="o",
    capsize=4,
    label="DiCE",
)
axes[1].hlines([exact_hess_bern], -0.3, 0.3, colors="k", label="exact")
axes[1].set_xlim(-1, 1)
axes[1].set_xticks([0], ["J''(t)"])
axes[1].set_title("Bernoulli, f = (x - c)²")
axes[1].legend(fontsize=8)

# %% [markdown]
# DiCE's Hessian estimates agree with $2I$ (and with the Bernoulli's $J''$) within 4
# standard errors; the stop-gradient surrogate is far off (its $\partial^2/\partial\mu^2$
# estimates $\mathbb E[f\,\partial^2_\mu \log p] = -(\mu^2+\sigma^2)/\sigma^2 = -3.78$
# instead of 2).

# %%
for name in ("DiCE, Gaussian", "DiCE + baseline, Gaussian", "DiCE, Bernoulli"):
    assert np.abs(zs[name]).max() < 4, name
assert np.abs(zs["log p · stop_grad(f), Gaussian"]).max() > 20
