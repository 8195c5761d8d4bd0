"""Variance of the ad.stochastic estimators on the problems of tests/test_stochastic.py.

Each estimator runs R times on independent seeds with n samples; the table gives the mean
estimate, its distance to the exact value in standard errors, and n * Var (the variance of
one sample's contribution), summed over the parameters. Run:
``python benchmarks/stochastic_variance.py [--reps R]`` (docs/stochastic.md quotes R = 400).
"""

from __future__ import annotations

import argparse
import math

import numpy as np

import autodiffx as ad

D = ad.distributions
S = ad.stochastic
MU, SIGMA, T, C = 1.0, 0.6, 0.4, 0.3
TH2 = np.array([0.5, 0.8])


def square(x):
    return x**2


def gauss(th):
    return D.Normal(th[0], th[1])


def gaussian_estimators(n):
    def cv(d):
        return S.ControlVariate(lambda x: x, mean=d.mean)

    def score(**kw):
        return lambda th, s: S.score_function(square, gauss(th), n, rng=s, **kw)

    run = S.RunningMeanBaseline(decay=0.9)
    return {
        "pathwise": lambda th, s: S.pathwise(square, gauss(th), n, rng=s),
        "pathwise + control variate x": lambda th, s: S.pathwise(
            square, gauss(th), n, rng=s, control_variate=cv(gauss(th))
        ),
        "score function": score(),
        "score, constant baseline E[f]": score(baseline=MU**2 + SIGMA**2),
        "score, leave-one-out baseline": score(baseline="loo"),
        "score, running-mean baseline": score(baseline=run),
        "score, control variate x": lambda th, s: S.score_function(
            square, gauss(th), n, rng=s, control_variate=cv(gauss(th))
        ),
    }


def bernoulli_estimators(n):
    def score(**kw):
        return lambda t, s: S.score_function(
            lambda x: (x - C) ** 2, D.Bernoulli(logits=t), n, rng=s, **kw
        )

    p = 1 / (1 + math.exp(-T))
    return {
        "score function": score(),
        "score, constant baseline E[f]": score(baseline=p * (1 - C) ** 2 + (1 - p) * C**2),
        "score, leave-one-out baseline": score(baseline="loo"),
    }


def two_step_expectation(th, nodes=80):
    z, w = np.polynomial.hermite.hermgauss(nodes)
    x = th[0] + math.sqrt(2) * z
    inner = ad.nn.functional.sigmoid(th[1] * x) * (x + th[1])
    return th[0] ** 2 + 1 + ad.sum(w * inner) / math.sqrt(math.pi)


def two_step(n, baselines):
    def objective(th, seed):
        rng = np.random.default_rng(seed)
        d1 = D.Normal(th[0], 1.0)
        x1 = d1.sample((n,), rng=rng)
        d2 = D.Bernoulli(logits=th[1] * x1)
        x2 = d2.sample(rng=rng)
        base = None
        if baselines:
            x, b = x1.data, float(np.asarray(th[1].data))
            expected = two_step_expectation(S.stop_gradient(th)).data
            base = {"x1": expected, "x2": (x + b) / (1 + np.exp(-b * x))}
        return S.dice_objective(
            {"c1": x1**2, "c2": x2 * (x1 + th[1])},
            {"x1": d1.log_prob(x1), "x2": d2.log_prob(x2)},
            {"x1": [], "x2": ["x1"], "c1": ["x1"], "c2": ["x2"]},
            baselines=base,
        )

    return objective


def row(name, objective, theta, exact_g, exact_h, n, reps):
    g = np.array([ad.grad(lambda t: objective(t, s))(theta).data.ravel() for s in range(reps)])  # noqa: B023
    cells = [name]
    for est, exact in ((g, exact_g), (None, exact_h)):
        if est is None:
            est = np.array(
                [
                    ad.hessian(lambda t: objective(t, s))(theta).data.ravel()  # noqa: B023
                    for s in range(reps)
                ]
            )
        se = est.std(axis=0, ddof=1) / math.sqrt(reps)
        err = np.abs(est.mean(axis=0) - np.ravel(exact))
        exactly = err <= 1e-12 * (1 + np.abs(np.ravel(exact)))  # components without variance
        z = np.where(exactly, 0.0, err / np.where(se > 0, se, np.inf))
        cells += [f"{np.abs(z).max():.1f}", f"{n * est.var(axis=0, ddof=1).sum():.3g}"]
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=400)
    parser.add_argument("--n", type=int, default=100)
    args = parser.parse_args()
    n, reps = args.n, args.reps
    print(f"n = {n} samples per estimate, {reps} independent estimates\n")
    print(
        "| estimator | gradient: max abs z | gradient: n Var | Hessian: max abs z "
        "| Hessian: n Var |"
    )
    print("|---|---|---|---|---|")
    theta, g, h = np.array([MU, SIGMA]), [2 * MU, 2 * SIGMA], 2 * np.eye(2)
    print(f"| **Gaussian x², μ = {MU}, σ = {SIGMA}** | | | | |")
    for name, obj in gaussian_estimators(n).items():
        print(row(name, obj, theta, g, h, n, reps))
    p = 1 / (1 + math.exp(-T))
    g, h = p * (1 - p) * (1 - 2 * C), p * (1 - p) * (1 - 2 * p) * (1 - 2 * C)
    print(f"| **Bernoulli(sigmoid({T})), (x - {C})²** | | | | |")
    for name, obj in bernoulli_estimators(n).items():
        print(row(name, obj, np.array(T), g, h, n, reps))
    g, h = ad.grad(two_step_expectation)(TH2).data, ad.hessian(two_step_expectation)(TH2).data
    print(f"| **two-step graph, θ = {tuple(TH2.tolist())}** | | | | |")
    for bl in (False, True):
        name = "DiCE" + (" + baselines" if bl else "")
        print(row(name, two_step(n, bl), TH2, g, h, n, reps))


if __name__ == "__main__":
    main()
