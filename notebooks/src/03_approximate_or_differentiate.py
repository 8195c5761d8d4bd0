# %% [markdown]
# # 3. Approximate the derivative, or differentiate the approximation?
#
# When $f$ is replaced by an approximation $\tilde f$, differentiating $\tilde f$ is a different
# thing from approximating $f'$. Differentiation amplifies the small, wiggly part of the
# error: if $\tilde f - f = O(x^{k})$, then $\tilde f' - f' = O(x^{k-1})$: one order is lost.

# %%
import math

import matplotlib.pyplot as plt
import numpy as np

import autodiffx as ad


def derivative(fn, x):
    # derivative of an elementwise function at every point, by reverse mode
    t = ad.tensor(x, requires_grad=True)
    (g,) = ad.autograd.grad(ad.sum(fn(t)), t)
    return g.data

# %% [markdown]
# ## 1. $\sin x \approx x$
#
# The small-angle approximation $\sin x \approx x$ is accurate to $x^3/6$. Its derivative,
# $1$, approximates $\cos x$ only to $1 - \cos x \approx x^2/2$. The approximation of the
# derivative itself, $\cos x \approx 1 - x^2/2$, is accurate to $x^4/24$. More generally the
# derivative of the degree-$(2k+1)$ Taylor polynomial of $\sin$ is the degree-$2k$ polynomial
# of $\cos$: to get $f'$ to a given order, $f$ has to be approximated to one order more.

# %%
x = np.logspace(-3, 0, 61)


def taylor_sin(t, degree):
    return sum((-1) ** k * t ** (2 * k + 1) / math.factorial(2 * k + 1) for k in range(degree // 2 + 1))


errors = [
    ("value: |x − sin x| ≈ x³/6", np.abs(x - np.sin(x)), "k:", {}),
    ("derivative of the approximation: |1 − cos x| ≈ x²/2",
     np.abs(derivative(lambda t: taylor_sin(t, 1), x) - np.cos(x)), "o-", {"ms": 3}),
    ("approximation of the derivative: |1 − x²/2 − cos x| ≈ x⁴/24",
     np.abs(1 - x**2 / 2 - np.cos(x)), "s-", {"ms": 5}),
    ("derivative of sin x ≈ x − x³/6 (the same polynomial)",
     np.abs(derivative(lambda t: taylor_sin(t, 3), x) - np.cos(x)), "x--", {"ms": 4}),
]
fig, ax = plt.subplots(figsize=(7.5, 4.5), layout="constrained")
for label, err, style, kw in errors:
    ax.loglog(x, np.maximum(err, 1e-17), style, label=label, **kw)
ax.set_xlabel("x")
ax.set_ylabel("absolute error (0 drawn at 1e-17)")
ax.set_title("Differentiating an approximation loses an order")
ax.grid(True, which="both", alpha=0.3)
ax.legend(fontsize=8);

# %%
for x0 in (0.1, 0.01):
    d_approx = derivative(lambda t: taylor_sin(t, 1), np.array([x0]))[0]
    print(f"x = {x0}: d/dx(x) - cos x = {d_approx - math.cos(x0):.2e},"
          f"  (1 - x²/2) - cos x = {1 - x0**2 / 2 - math.cos(x0):.2e}")

# %% [markdown]
# ## 2. The derivative of a fit, or a fit of the derivative
#
# Sample $f(x) = e^{\sin 3x}$ at 40 points of $[-1, 1]$ and fit a polynomial $p$ of degree $d$
# by least squares. Two ways to approximate $f'$:
#
# * **differentiate the fit**: $p'(x)$ (here by AD through the polynomial's evaluation);
# * **fit the derivative**: sample $f'$, which AD gives exactly from the program for $f$, and
#   fit a polynomial $q$ of the same degree to those samples.
#
# $p'$ inherits the error of $p$ multiplied by the degree (Markov's inequality) and is worst at
# the ends of the interval; $q$ approximates $f'$ directly.

# %%
def f(x):
    return ad.exp(ad.sin(3 * x))


def horner(coef, t):
    y = 0 * t + coef[-1]
    for c in coef[-2::-1]:
        y = y * t + c
    return y


xs = np.linspace(-1, 1, 40)
grid = np.linspace(-1, 1, 801)
f_samples = f(ad.tensor(xs)).data
df_samples = derivative(f, xs)  # exact derivative samples by reverse mode
df_grid = derivative(f, grid)

degrees = range(2, 21)
err_of_derivative, err_of_fit = [], []
for deg in degrees:
    p = np.polynomial.Polynomial.fit(xs, f_samples, deg).convert().coef
    q = np.polynomial.Polynomial.fit(xs, df_samples, deg).convert().coef
    dp = derivative(lambda t, p=p: horner(p, t), grid)  # p'(x) by AD
    err_of_derivative.append(np.abs(dp - df_grid).max())
    err_of_fit.append(np.abs(horner(q, ad.tensor(grid)).data - df_grid).max())

p10 = np.polynomial.Polynomial.fit(xs, f_samples, 10).convert()
assert np.allclose(derivative(lambda t: horner(p10.coef, t), grid), p10.deriv()(grid))
print("degree  max|p' - f'|   max|q - f'|")
for deg, a, b in zip(degrees, err_of_derivative, err_of_fit):
    print(f"{deg:>6}  {a:11.2e}  {b:11.2e}")

# %%
deg = 10
p = np.polynomial.Polynomial.fit(xs, f_samples, deg).convert().coef
q = np.polynomial.Polynomial.fit(xs, df_samples, deg).convert().coef
fig, axes = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
axes[0].semilogy(list(degrees), err_of_derivative, "o-", label="derivative of the fit, p'")
axes[0].semilogy(list(degrees), err_of_fit, "s-", label="fit of the derivative, q")
axes[0].set_xlabel("polynomial degree d")
axes[0].set_ylabel("max |error| on [-1, 1]")
axes[0].set_title("Approximating f' for f(x) = exp(sin 3x)")
axes[0].legend()
axes[1].semilogy(grid, np.abs(derivative(lambda t: horner(p, t), grid) - df_grid), label="|p' − f'|")
axes[1].semilogy(grid, np.abs(horner(q, ad.tensor(grid)).data - df_grid), label="|q − f'|")
axes[1].set_xlabel("x")
axes[1].set_title(f"error along x, degree {deg}")
axes[1].legend()
for ax in axes:
    ax.grid(True, which="both", alpha=0.3)

# %% [markdown]
# **Take-away.** When the function is available as a program, differentiate the program (AD)
# rather than an approximation of it; when an approximation is unavoidable, approximate the
# quantity you need, here $f'$ from derivative samples, instead of differentiating an
# approximation of something else.
