# %% [markdown]
# # 2. Automatic differentiation versus finite differences
#
# Finite differences approximate a derivative from function values; automatic differentiation
# applies the chain rule to the program and is exact up to rounding. This notebook looks at
# three consequences:
#
# 1. the step size of a finite difference trades truncation error against round-off;
# 2. AD differentiates the program *as written*: a "small ε" added to a denominator damages
#    the derivative as much as the value;
# 3. a gradient by reverse mode costs a few function evaluations whatever the number of
#    inputs $n$, finite differences need $n$ or $2n$.

# %%
import matplotlib.pyplot as plt
import numpy as np

import autodiffx as ad
from autodiffx.cli.bench import bench_gradients

# %% [markdown]
# ## 1. The step size
#
# The error of a difference quotient has two parts: **truncation**, $O(h)$ for forward and
# backward differences and $O(h^2)$ for central ones, and **round-off**, about
# $\epsilon |f| / h$ since $f(x+h) - f(x)$ cancels the leading digits. Their sum is smallest near
# $h \approx \sqrt{\epsilon}$ (forward) or $\epsilon^{1/3}$ (central), and even there only about
# half (two thirds) of the digits survive. The complex step $\operatorname{Im} f(x + ih)/h$
# subtracts nothing and reaches full precision for any tiny $h$.
#
# The test function is Squire and Trapp's $f(x) = e^x / \sqrt{\sin^3 x + \cos^3 x}$ at $x = 1.5$;
# the exact derivative comes from reverse mode.

# %%
def f(x):
    return ad.exp(x) / ad.sqrt(ad.sin(x) ** 3 + ad.cos(x) ** 3)


study = ad.fd.step_study(f, 1.5, hs=np.logspace(-16, -1, 61))
study

# %%
fig, ax = plt.subplots(figsize=(8, 4.5), layout="constrained")
floor = 1e-17
for scheme, err in study.errors.items():
    ax.loglog(study.hs, np.maximum(err, floor), ".-", label=scheme)
eps = np.finfo(float).eps
ax.loglog(study.hs, eps * abs(f(np.float64(1.5)).item()) / study.hs, "k--", lw=1, label="round-off ε|f|/h")
ax.loglog(study.hs, study.hs, "k:", lw=1, label="truncation ~ h")
ax.loglog(study.hs, study.hs**2, "k-.", lw=1, label="truncation ~ h²")
ax.set_ylim(floor / 2, 1e2)
ax.set_xlabel("step h")
ax.set_ylabel("|finite difference − exact|")
ax.set_title("Error of finite differences against the step (errors of 0 drawn at 1e-17)")
ax.legend(loc="center left", bbox_to_anchor=(1, 0.5))
ax.grid(True, which="both", alpha=0.3);

# %% [markdown]
# ## 2. A small ε in a denominator
#
# $h(t) = \dfrac{t^2 - 4}{t - 2}$ is $t + 2$ with a removable singularity at $t = 2$: the
# program divides $0/0$ there. A common "fix" adds a small $\varepsilon$ to the denominator,
#
# $$h_\varepsilon(t) = \frac{t^2 - 4}{(t - 2) + \varepsilon}.$$
#
# It stops the NaN, but near $t = 2$, where $|t - 2| \lesssim \varepsilon$, the program no longer
# computes $h$: its value drops from $4$ towards $0$, and its derivative, which AD computes
# faithfully *for the program*, is $h_\varepsilon'(2) = 4/\varepsilon$ instead of $1$.

# %%
def h_eps(t, eps=1e-8):
    return (t**2 - 4) / ((t - 2) + eps)


def value_and_derivative(fn, t):
    # elementwise function: the gradient of the sum is the derivative at every point
    tt = ad.tensor(t, requires_grad=True)
    y = fn(tt)
    (g,) = ad.autograd.grad(ad.sum(y), tt)
    return y.data, g.data


d = np.logspace(-14, 0, 57)  # distance from the singularity
t = 2 + d
value, deriv = value_and_derivative(h_eps, t)
value_err = np.abs(value - (t + 2))
deriv_err = np.abs(deriv - 1.0)
v2, d2 = value_and_derivative(h_eps, np.array([2.0]))
print(f"at t = 2: h_eps = {v2[0]:.3g} (exact 4),  AD derivative = {d2[0]:.3g} (exact 1)")

# %% [markdown]
# The repair is in the program, not in the differentiation: cancel the factor by hand, or, if
# the quotient must stay, guard it with the *double-where* pattern. `where` evaluates both
# branches, so the unused one must not divide by zero either: first replace the denominator
# by a harmless value near the singularity, then select the limit $t + 2$ there. (Just outside the guard, $|t - 2| \gtrsim \delta$,
# the quotient still cancels digits: its value loses about $\epsilon / |t - 2|$ and its
# derivative $\epsilon / |t - 2|^2$, small for $\delta = 10^{-6}$.)

# %%
def h_safe(t, delta=1e-6):
    near = ad.abs(t - 2) < delta
    denominator = ad.where(near, 1.0, t - 2)  # never 0 where the quotient is used
    return ad.where(near, t + 2, (t**2 - 4) / denominator)


safe_value, safe_deriv = value_and_derivative(h_safe, t)
v3, d3 = value_and_derivative(h_safe, np.array([2.0]))
print(f"at t = 2: h_safe = {v3[0]:.3g},  AD derivative = {d3[0]:.3g}")

fig, axes = plt.subplots(1, 2, figsize=(10, 4), layout="constrained", sharey=True)
for ax, err, safe, title in (
    (axes[0], value_err, np.abs(safe_value - (t + 2)), "value"),
    (axes[1], deriv_err, np.abs(safe_deriv - 1.0), "derivative (AD)"),
):
    ax.loglog(d, np.maximum(err, 1e-17), "o-", ms=3, label="(t² − 4) / ((t − 2) + ε), ε = 1e-8")
    ax.loglog(d, np.maximum(safe, 1e-17), "s-", ms=3, label="double-where guard")
    ax.axvline(1e-8, color="grey", ls=":", lw=1)
    ax.set_xlabel("t − 2")
    ax.set_title(f"error of the {title}")
    ax.grid(True, which="both", alpha=0.3)
axes[0].set_ylabel("absolute error (0 drawn at 1e-17)")
axes[0].legend(fontsize=8);

# %% [markdown]
# Finite differences see the same broken program (and add their own step error on top):

# %%
for t0 in (2.0, 2 + 1e-9, 2 + 1e-6, 2.1):
    fd = ad.fd.derivative(lambda s: h_eps(s), t0)
    _, g = value_and_derivative(h_eps, np.array([t0]))
    print(f"t = {t0:<14.10g} AD {g[0]:<12.4g} central difference {fd:<12.4g} exact 1")

# %% [markdown]
# ## 3. The cost of a gradient as $n$ grows
#
# Workload W4 of the performance notes: the gradient of $\sum_i \tanh((Ax)_i)$ with
# $x \in \mathbb{R}^n$. Reverse mode costs one forward and one backward sweep whatever $n$
# (the *cheap gradient principle*); forward mode needs $n$ sweeps (one JVP per basis vector)
# and central differences $2n$ evaluations, and are accurate to about $10^{-10}$ only.
# `autodiffx bench` runs the same study with larger $n$.

# %%
rows = bench_gradients([10, 30, 100, 300], repeat=3, budget=0.05)
print(f"{'n':>5}  {'method':<26}{'evals':>6}  {'time [ms]':>10}  {'rel. error':>10}")
for r in rows:
    print(f"{r['n']:>5}  {r['method']:<26}{r['evals']:>6}  {r['seconds'] * 1e3:>10.3f}  {r['error']:>10.1e}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
for method, marker in zip(dict.fromkeys(r["method"] for r in rows), "osD"):
    ns = [r["n"] for r in rows if r["method"] == method]
    axes[0].loglog(ns, [r["seconds"] for r in rows if r["method"] == method], marker + "-", label=method)
    axes[1].loglog(ns, [max(r["error"], 1e-17) for r in rows if r["method"] == method], marker + "-", label=method)
axes[0].set(ylabel="time per gradient [s]", title="cost of a gradient")
axes[1].set(ylabel="max |error| / max |gradient| (0 drawn at 1e-17)", title="accuracy of a gradient")
for ax in axes:
    ax.set_xlabel("n")
    ax.grid(True, which="both", alpha=0.3)
axes[0].legend(fontsize=8);
