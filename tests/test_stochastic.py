"""ad.stochastic: estimators of gradients (and Hessians) of expectations, against exact values.

Every Monte-Carlo check goes through ``mc_check``: the mean of the estimates over a fixed
sequence of seeds must lie within 4 standard errors (computed from the per-seed estimates)
of the exact value, and deliberately biased estimators must be rejected by the same helper.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import autodiffx as ad

D = ad.distributions
S = ad.stochastic
SEEDS = range(20)


def mc_check(estimate, exact, what="estimate", seeds=SEEDS):
    """Assert that the mean of ``estimate(seed)`` is within 4 standard errors of ``exact``.

    A component whose estimates do not vary must equal the exact value to 1e-12. Returns the
    per-seed estimates (rows), for variance comparisons.
    """
    est = np.array([np.asarray(estimate(s), dtype=float).ravel() for s in seeds])
    exact = np.asarray(exact, dtype=float).ravel()
    mean = est.mean(axis=0)
    se = est.std(axis=0, ddof=1) / math.sqrt(len(est))
    tol = np.where(se > 0, 4 * se, 1e-12 * (1 + np.abs(exact)))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (mean - exact) / se
    assert np.all(np.abs(mean - exact) <= tol), (
        f"{what}: mean {mean} vs exact {exact}, standard error {se}, z = {z}"
    )
    return est


def value(t):
    return np.asarray(t.data if isinstance(t, ad.Tensor) else t)


# ----- the test helper can fail -------------------------------------------------------------
def test_mc_check_accepts_an_unbiased_and_rejects_a_biased_sample_mean():
    draw = lambda s: np.random.default_rng(s).normal(1.0, 1.0, 100).mean()
    mc_check(draw, 1.0)
    with pytest.raises(AssertionError, match="z ="):
        mc_check(draw, 1.1)
    with pytest.raises(AssertionError):
        mc_check(lambda s: 2.0, 2.0 + 1e-9)  # no variance: must be exact


# ----- Gaussian, f(x) = x^2: E = mu^2 + sigma^2, gradient (2 mu, 2 sigma), Hessian 2 I -----
MU, SIGMA = 1.0, 0.6
THETA = np.array([MU, SIGMA])
GAUSS_GRAD = np.array([2 * MU, 2 * SIGMA])
GAUSS_HESS = 2 * np.eye(2)


def square(x):
    return x**2


def gauss(th):
    return D.Normal(th[0], th[1])


def test_pathwise_gaussian_gradient_and_hessian():
    est = lambda s: ad.grad(lambda th: S.pathwise(square, gauss(th), 200, rng=s))(THETA)
    mc_check(est, GAUSS_GRAD, "pathwise gradient")
    hess = lambda s: ad.hessian(lambda th: S.pathwise(square, gauss(th), 200, rng=s))(THETA)
    mc_check(hess, GAUSS_HESS, "pathwise Hessian")


def score_grad(seed, n=500, **kw):
    return ad.grad(lambda th: S.score_function(square, gauss(th), n, rng=seed, **kw))(THETA)


BASELINES = {
    "none": lambda: {},
    "constant": lambda: {"baseline": MU**2 + SIGMA**2},
    "callable": lambda: {"baseline": lambda d: d.mean**2 + d.variance},
    "loo": lambda: {"baseline": "loo"},
    "running": lambda: {"baseline": S.RunningMeanBaseline(decay=0.5)},
}


@pytest.mark.parametrize("kind", list(BASELINES))
def test_score_function_gaussian_gradient_with_each_baseline(kind):
    kw = BASELINES[kind]()  # one running baseline carried across the seed sequence
    mc_check(lambda s: score_grad(s, **kw), GAUSS_GRAD, f"score function, baseline {kind}")


def test_baselines_lower_the_variance_of_the_score_function_estimator():
    variances = {}
    for kind, make in BASELINES.items():
        kw = make()
        variances[kind] = np.array([score_grad(s, **kw).data for s in SEEDS]).var(axis=0).sum()
    for kind in ("constant", "callable", "loo", "running"):
        assert variances[kind] < 0.75 * variances["none"], (kind, variances)


@pytest.mark.parametrize("coef", ["optimal", 1.5])
def test_control_variate_is_unbiased_and_lowers_the_variance(coef):
    def est(seed, cv=True):
        def loss(th):
            d = gauss(th)
            c = S.ControlVariate(lambda x: x, mean=d.mean, coef=coef) if cv else None
            return S.score_function(square, d, 500, rng=seed, control_variate=c)

        return ad.grad(loss)(THETA)

    with_cv = mc_check(est, GAUSS_GRAD, f"score function with control variate, coef {coef}")
    without = np.array([est(s, cv=False).data for s in SEEDS])
    assert with_cv.var(axis=0).sum() < 0.5 * without.var(axis=0).sum()


def test_pathwise_control_variate_is_unbiased():
    def loss(th, seed):
        d = gauss(th)
        cv = S.ControlVariate(lambda x: x, mean=d.mean)
        return S.pathwise(square, d, 200, rng=seed, control_variate=cv)

    mc_check(lambda s: ad.grad(lambda th: loss(th, s))(THETA), GAUSS_GRAD, "pathwise + CV")


def test_score_function_hessian_gaussian_is_unbiased_with_and_without_baseline():
    for kw in ({}, {"baseline": "loo"}):
        hess = lambda s: ad.hessian(
            lambda th: S.score_function(square, gauss(th), 2000, rng=s, **kw)  # noqa: B023
        )(THETA)
        mc_check(hess, GAUSS_HESS, f"DiCE Hessian {kw}")


# ----- deliberately biased estimators are caught by the same helper --------------------------
def test_biased_score_function_with_undetached_samples_is_caught():
    def wrong(th, seed):
        d = gauss(th)
        x = d.rsample((500,), rng=seed)  # samples carry the pathwise derivative too
        return (S.magic_box(d.log_prob(x)) * x**2).mean()

    with pytest.raises(AssertionError, match="biased"):
        mc_check(lambda s: ad.grad(lambda th: wrong(th, s))(THETA), GAUSS_GRAD, "biased")


def test_surrogate_loss_without_magic_box_is_caught_at_second_order():
    def surrogate(th, seed):  # Schulman et al.'s surrogate: right gradient, wrong Hessian
        d = gauss(th)
        x = d.sample((2000,), rng=seed)
        return (d.log_prob(x) * value(x**2)).mean()

    mc_check(lambda s: ad.grad(lambda th: surrogate(th, s))(THETA), GAUSS_GRAD, "SL gradient")
    with pytest.raises(AssertionError, match="SL Hessian"):
        mc_check(lambda s: ad.hessian(lambda th: surrogate(th, s))(THETA), GAUSS_HESS, "SL Hessian")


def test_control_variate_with_a_detached_mean_is_caught():
    def wrong(th, seed):
        d = gauss(th)
        cv = S.ControlVariate(lambda x: x, mean=S.stop_gradient(d.mean))
        return S.score_function(square, d, 500, rng=seed, control_variate=cv)

    with pytest.raises(AssertionError, match="detached"):
        mc_check(lambda s: ad.grad(lambda th: wrong(th, s))(THETA), GAUSS_GRAD, "detached mean")


def test_a_baseline_that_sees_the_sample_is_caught():
    def wrong(th, seed):  # b_i = f(x_i): the gradient vanishes
        d = gauss(th)
        x = d.sample((500,), rng=seed)
        box = S.magic_box(d.log_prob(x))
        return (box * x**2 + (1 - box) * value(x**2)).mean()

    with pytest.raises(AssertionError, match="sees"):
        mc_check(lambda s: ad.grad(lambda th: wrong(th, s))(THETA), GAUSS_GRAD, "sees sample")


# ----- Bernoulli(sigmoid(t)), f(x) = (x - c)^2 -------------------------------------------------
T, C = 0.4, 0.3


def bern_exact():
    p = 1 / (1 + math.exp(-T))
    return p * (1 - p) * (1 - 2 * C), p * (1 - p) * (1 - 2 * p) * (1 - 2 * C)


def bern_loss(t, seed, n=1000, **kw):
    d = D.Bernoulli(logits=t)
    return S.score_function(lambda x: (x - C) ** 2, d, n, rng=seed, **kw)


def test_bernoulli_score_function_gradient_and_hessian():
    g, h = bern_exact()
    t = np.array(T)
    mc_check(lambda s: ad.grad(lambda u: bern_loss(u, s))(t), g, "Bernoulli gradient")
    loo = mc_check(lambda s: ad.grad(lambda u: bern_loss(u, s, baseline="loo"))(t), g, "loo")
    plain = np.array([ad.grad(lambda u: bern_loss(u, s))(t).item() for s in SEEDS])  # noqa: B023
    assert loo.var() < 0.5 * plain.var()
    mc_check(lambda s: ad.hessian(lambda u: bern_loss(u, s, 4000))(t), h, "Bernoulli Hessian")


def test_bernoulli_value_is_the_monte_carlo_mean_and_baseline_changes_no_value():
    t = ad.tensor(T, requires_grad=True)
    x = D.Bernoulli(logits=T).sample((1000,), rng=3)
    expected = ((x.data - C) ** 2).mean()
    for kw in ({}, {"baseline": "loo"}, {"baseline": 0.7}):
        assert bern_loss(t, 3, **kw).item() == pytest.approx(expected, rel=1e-15)


def test_pathwise_refuses_a_distribution_without_rsample():
    for d in (D.Bernoulli(probs=0.3), D.Categorical(probs=ad.tensor([0.2, 0.8])), D.Poisson(2.0)):
        name = type(d).__name__
        with pytest.raises(NotImplementedError, match=f"{name} has no reparam.*score_function"):
            S.pathwise(square, d, 10, rng=0)


# ----- a two-step stochastic computation graph ----------------------------------------------
# theta = (a, b); x1 ~ N(a, 1); x2 ~ Bernoulli(sigmoid(b x1)); costs x1^2 and x2 (x1 + b).
# E = a^2 + 1 + E_x1[sigmoid(b x1) (x1 + b)], by Gauss-Hermite quadrature written with
# autodiffx ops, so ad.grad/ad.hessian of it are the exact derivatives.
TH2 = np.array([0.5, 0.8])


def two_step_expectation(th, nodes=80):
    z, w = np.polynomial.hermite.hermgauss(nodes)
    a, b = th[0], th[1]
    x = a + math.sqrt(2) * z
    inner = ad.nn.functional.sigmoid(b * x) * (x + b)
    return a**2 + 1 + ad.sum(w * inner) / math.sqrt(math.pi)


def two_step(th, seed, n=2000, baselines=False, closure=True):
    rng = np.random.default_rng(seed)
    a, b = th[0], th[1]
    d1 = D.Normal(a, 1.0)
    x1 = d1.sample((n,), rng=rng)
    d2 = D.Bernoulli(logits=b * x1)
    x2 = d2.sample(rng=rng)
    deps = {"x1": [], "x2": ["x1"], "c1": ["x1"], "c2": ["x2"] if closure else []}
    base = None
    if baselines:
        expected = value(two_step_expectation(S.stop_gradient(th)))
        bx = value(b) * value(x1)
        base = {"x1": expected, "x2": (value(x1) + value(b)) / (1 + np.exp(-bx))}
    costs = {"c1": x1**2, "c2": x2 * (x1 + b)}
    logps = {"x1": d1.log_prob(x1), "x2": d2.log_prob(x2)}
    if not closure:  # the missing x1 dependency written by hand
        costs["c2"] = S.magic_box(logps["x2"]) * costs["c2"]
    return S.dice_objective(costs, logps, deps, baselines=base)


def test_two_step_reference_is_converged():
    th = ad.tensor(TH2)
    for f in (ad.grad, ad.hessian):
        a = f(lambda t: two_step_expectation(t, 80))(th).data
        b = f(lambda t: two_step_expectation(t, 160))(th).data
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)


def test_two_step_gradient_and_hessian_with_and_without_baselines():
    grad = ad.grad(two_step_expectation)(TH2).data
    hess = ad.hessian(two_step_expectation)(TH2).data
    var = {}
    for bl in (False, True):

        def objective(seed, order, bl=bl):
            return order(lambda t: two_step(t, seed, baselines=bl))(TH2)

        g = mc_check(lambda s, o=objective: o(s, ad.grad), grad, f"gradient, baselines {bl}")
        h = mc_check(lambda s, o=objective: o(s, ad.hessian), hess, f"Hessian, baselines {bl}")
        var[bl] = g.var(axis=0).sum(), h.var(axis=0).sum()
    assert var[True][0] < 0.75 * var[False][0] and var[True][1] < 0.9 * var[False][1], var


def test_two_step_missing_dependency_is_caught():
    grad = ad.grad(two_step_expectation)(TH2).data
    with pytest.raises(AssertionError, match="missing"):
        mc_check(lambda s: ad.grad(lambda t: two_step(t, s, closure=False))(TH2), grad, "missing")


def test_two_step_surrogate_loss_without_magic_box_is_caught_at_second_order():
    def surrogate(th, seed):
        rng = np.random.default_rng(seed)
        d1 = D.Normal(th[0], 1.0)
        x1 = d1.sample((2000,), rng=rng)
        d2 = D.Bernoulli(logits=th[1] * x1)
        x2 = d2.sample(rng=rng)
        c1, c2 = x1**2, x2 * (x1 + th[1])
        lp1, lp2 = d1.log_prob(x1), d2.log_prob(x2)
        return (c1 + c2 + lp1 * value(c1 + c2) + lp2 * value(c2)).mean()

    grad = ad.grad(two_step_expectation)(TH2).data
    hess = ad.hessian(two_step_expectation)(TH2).data
    mc_check(lambda s: ad.grad(lambda t: surrogate(t, s))(TH2), grad, "SL gradient")
    with pytest.raises(AssertionError, match="SL Hessian"):
        mc_check(lambda s: ad.hessian(lambda t: surrogate(t, s))(TH2), hess, "SL Hessian")


def test_dependencies_are_closed_transitively():
    th = ad.tensor(TH2, requires_grad=True)
    rng = np.random.default_rng(0)
    d1 = D.Normal(th[0], 1.0)
    x1 = d1.sample((50,), rng=rng)
    d2 = D.Bernoulli(logits=th[1] * x1)
    x2 = d2.sample(rng=rng)
    costs, logps = {"c": x2 * x1}, {"x1": d1.log_prob(x1), "x2": d2.log_prob(x2)}
    direct = S.dice_objective(costs, logps, {"x1": [], "x2": "x1", "c": ["x2"]})
    listed = S.dice_objective(costs, logps, {"x1": [], "x2": ["x1"], "c": ["x1", "x2"]})
    by_hand = (S.magic_box(logps["x1"] + logps["x2"]) * costs["c"]).mean()
    for obj in (direct, listed):
        assert obj.item() == pytest.approx(by_hand.item(), rel=1e-15)
        (g,) = ad.autograd.grad(obj, th, retain_graph=True)
        (r,) = ad.autograd.grad(by_hand, th, retain_graph=True)
        np.testing.assert_allclose(g.data, r.data, rtol=1e-14)


# ----- gradients reach the parameters; modes agree ------------------------------------------
def test_parameters_that_require_grad_get_gradients():
    mu = ad.tensor(0.3, requires_grad=True)
    k = ad.tensor(2.0, requires_grad=True)  # read by f directly
    only_in_baseline = ad.tensor(1.0, requires_grad=True)
    d = D.Normal(mu, 1.0)
    S.score_function(
        lambda x: k * x**2, d, 10, rng=0, baseline=lambda _: only_in_baseline
    ).backward()
    assert mu.grad is not None and k.grad is not None and only_in_baseline.grad is None
    mu2 = ad.tensor(0.3, requires_grad=True)
    S.pathwise(lambda x: k * x**2, D.Normal(mu2, 1.0), 10, rng=0).backward()
    x = D.Normal(0.3, 1.0).sample((10,), rng=0).data
    assert mu2.grad.item() == pytest.approx((2 * k.item() * x).mean(), rel=1e-14)


def test_score_function_samples_are_detached():
    mu = ad.tensor(0.3, requires_grad=True)
    seen = []
    S.score_function(lambda x: seen.append(x) or x, D.Normal(mu, 1.0), 5, rng=0)
    assert not seen[0].requires_grad and seen[0].grad_fn is None


def test_forward_and_reverse_mode_give_the_same_per_sample_estimates():
    def terms(th):
        return S.score_function(square, gauss(th), 50, rng=1, baseline="loo", reduction="none")

    np.testing.assert_allclose(
        ad.jacfwd(terms)(THETA).data, ad.jacrev(terms)(THETA).data, rtol=1e-13
    )
    pw = lambda th: S.pathwise(square, gauss(th), 50, rng=1, reduction="none")
    np.testing.assert_allclose(ad.jacfwd(pw)(THETA).data, ad.jacrev(pw)(THETA).data, rtol=1e-13)


def test_running_mean_baseline_uses_only_earlier_calls():
    b = S.RunningMeanBaseline(decay=0.5)
    mu = ad.tensor(0.3, requires_grad=True)
    first = ad.autograd.grad(S.score_function(square, D.Normal(mu, 1.0), 20, rng=0, baseline=b), mu)
    plain = ad.autograd.grad(S.score_function(square, D.Normal(mu, 1.0), 20, rng=0), mu)
    assert first[0].item() == plain[0].item()  # value 0.0 before the first update
    x = D.Normal(0.3, 1.0).sample((20,), rng=0).data
    assert b.value == pytest.approx((x**2).mean()) and b.count == 1


def test_magic_box_value_and_derivatives():
    lp = ad.tensor([-0.5, -2.0], requires_grad=True)
    box = S.magic_box(lp)
    assert np.array_equal(box.data, [1.0, 1.0])
    (g,) = ad.autograd.grad(box.sum(), lp, create_graph=True)
    (h,) = ad.autograd.grad(g.sum(), lp)
    assert np.array_equal(g.data, [1.0, 1.0]) and np.array_equal(h.data, [1.0, 1.0])


# ----- refusals ------------------------------------------------------------------------------
def test_estimators_refuse_bad_arguments():
    d = D.Normal(0.0, 1.0)
    with pytest.raises(ValueError, match=r"one value per sample, shape \(4,\)"):
        S.score_function(lambda x: x.sum(), d, 4, rng=0)
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        S.pathwise(square, d, 0)
    with pytest.raises(ValueError, match="real scalar"):
        S.score_function(square, d, 4, rng=0, baseline=np.ones(4))
    with pytest.raises(ValueError, match="'loo'"):
        S.score_function(square, d, 4, rng=0, baseline="mean")
    with pytest.raises(ValueError, match=">= 2 for baseline='loo'"):
        S.score_function(square, d, 1, rng=0, baseline="loo")
    with pytest.raises(ValueError, match=">= 3 for a control variate"):
        S.score_function(square, d, 2, rng=0, control_variate=S.ControlVariate(square, 1.0))
    with pytest.raises(ValueError, match="reduction must be 'mean' or 'none'"):
        S.pathwise(square, d, 4, rng=0, reduction="sum")
    with pytest.raises(TypeError, match="Distribution"):
        S.pathwise(square, np.random.default_rng(0), 4)
    with pytest.raises(ValueError, match="coef must be a number or 'optimal'"):
        S.ControlVariate(square, 1.0, coef="best")
    with pytest.raises(ValueError, match="decay"):
        S.RunningMeanBaseline(decay=1.0)


def test_dice_objective_refuses_incomplete_or_cyclic_dependencies():
    c, lp = {"c": ad.ones(3)}, {"x": ad.zeros(3), "y": ad.zeros(3)}
    with pytest.raises(ValueError, match=r"missing \['y'\]"):
        S.dice_objective(c, lp, {"c": ["x"], "x": []})
    with pytest.raises(ValueError, match="not stochastic nodes"):
        S.dice_objective(c, lp, {"c": ["c"], "x": [], "y": []})
    with pytest.raises(ValueError, match="cycle: x -> y -> x"):
        S.dice_objective(c, lp, {"c": ["x"], "x": ["y"], "y": ["x"]})
    with pytest.raises(ValueError, match="same shape"):
        S.dice_objective({"c": ad.ones(4)}, lp, {"c": ["x"], "x": [], "y": []})
    with pytest.raises(ValueError, match="same shape"):  # would broadcast, pairing runs wrongly
        S.dice_objective({"c": ad.ones(3)}, {"x": ad.zeros((3, 3))}, {"c": ["x"], "x": []})
    scalar_cost = S.dice_objective(
        {"c": 2.0, "d": ad.ones(3)}, lp, {"c": [], "d": ["x"], "x": [], "y": []}
    )
    assert scalar_cost.item() == 3.0
    with pytest.raises(ValueError, match="name no stochastic node"):
        S.dice_objective(c, lp, {"c": ["x"], "x": [], "y": []}, baselines={"c": 1.0})


def test_docs_examples_run():
    import pathlib
    import re

    text = (pathlib.Path(__file__).parents[1] / "docs" / "stochastic.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) == 2
    namespace: dict = {}
    for code in blocks:
        exec(compile(code, "docs/stochastic.md", "exec"), namespace)
    assert namespace["H"].shape == (2, 2) and namespace["g"].shape == (2,)
