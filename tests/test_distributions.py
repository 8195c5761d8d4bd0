"""ad.distributions: values and gradients against PyTorch (optional oracle) and mpmath, central
differences, both AD modes, Monte-Carlo moments, shapes, validation and reproducibility."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import scipy.special as sp
from _numdiff import directional

import autodiffx as ad
from autodiffx.distributions import _implicit

D = ad.distributions
VALUE_METHODS = ("log_prob", "cdf", "icdf")
RTOL, ATOL = 1e-10, 1e-13
# NOTE: PyTorch's trigamma (polygamma(1, x), the derivative of digamma) is accurate to only
# ~4e-10 relative (test_pytorch_trigamma_is_the_inexact_side checks both against mpmath), and
# entropy gradients cancel some digits: gradients that go through it are compared to 1e-8.
TRIGAMMA_RTOL = 1e-8


@dataclasses.dataclass
class Case:
    """A distribution built the same way from ad.distributions or torch.distributions."""

    name: str
    params: dict[str, np.ndarray]
    build: Callable[[Any, dict[str, Any]], Any]
    methods: dict[str, Any]  # method -> value (None for entropy, mean, ...)
    frozen: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    trigamma: tuple[str, ...] = ()  # methods whose gradient goes through trigamma


def _a(*rows: Any) -> np.ndarray:
    return np.array(rows, dtype=np.float64)


_SPD = _a([2.0, 0.3, -0.4], [0.3, 1.5, 0.2], [-0.4, 0.2, 1.0])
_SPD2 = np.stack([_SPD, _a([1.0, 0.1, 0.0], [0.1, 2.0, 0.5], [0.0, 0.5, 0.8])])
_TRIL = _a([1.2, 0.0, 0.0], [0.4, 0.9, 0.0], [-0.3, 0.5, 1.1])
_X3 = _a([0.5, -1.0, 0.3], [1.5, 0.2, -0.7])
_SIMPLEX = _a([0.2, 0.3, 0.5], [0.6, 0.1, 0.3])
_U = _a(0.1, 0.45, 0.8)
_LOCSCALE = {"loc": _a(0.3, -1.2, 2.0), "scale": _a(0.5, 1.5, 2.0)}
_MOMENTS = {"entropy": None, "mean": None, "variance": None, "stddev": None}

CASES = [
    Case(
        "Normal",
        _LOCSCALE,
        lambda D, p: D.Normal(p["loc"], p["scale"]),
        {"log_prob": _a(0.1, -0.5, 3.0), "cdf": _a(0.1, -0.5, 3.0), "icdf": _U, **_MOMENTS},
    ),
    Case(
        "LogNormal",
        _LOCSCALE,
        lambda D, p: D.LogNormal(p["loc"], p["scale"]),
        {"log_prob": _a(0.7, 0.2, 5.0), "cdf": _a(0.7, 0.2, 5.0), "icdf": _U, **_MOMENTS},
    ),
    Case(
        "Exponential",
        {"rate": _a(0.5, 1.0, 3.0)},
        lambda D, p: D.Exponential(p["rate"]),
        {"log_prob": _a(0.2, 1.3, 0.05), "cdf": _a(0.2, 1.3, 0.05), "icdf": _U, **_MOMENTS},
    ),
    Case(
        "Laplace",
        _LOCSCALE,
        lambda D, p: D.Laplace(p["loc"], p["scale"]),
        {"log_prob": _a(0.1, -0.5, 3.0), "cdf": _a(0.1, -0.5, 3.0), "icdf": _U, **_MOMENTS},
    ),
    Case(
        "Uniform",
        {"low": _a(-1.0, 0.5, 2.0), "high": _a(1.0, 3.0, 2.5)},
        lambda D, p: D.Uniform(p["low"], p["high"]),
        {"log_prob": _a(0.2, 1.0, 2.2), "cdf": _a(0.2, 1.0, 2.2), "icdf": _U, **_MOMENTS},
    ),
    Case(
        "Gamma",
        {"concentration": _a(0.5, 2.0, 7.5), "rate": _a(1.0, 0.5, 3.0)},
        lambda D, p: D.Gamma(p["concentration"], p["rate"]),
        {"log_prob": _a(0.3, 2.5, 1.9), "cdf": _a(0.3, 2.5, 1.9), **_MOMENTS},
        # PyTorch has no derivative of gammainc in the shape: checked against mpmath below
        frozen={"cdf": ("concentration",)},
        trigamma=("entropy",),
    ),
    Case(
        "Beta",
        {"concentration1": _a(0.5, 2.0, 5.0), "concentration0": _a(1.5, 0.7, 4.0)},
        lambda D, p: D.Beta(p["concentration1"], p["concentration0"]),
        {"log_prob": _a(0.3, 0.9, 0.55), "entropy": None, "mean": None, "variance": None},
        trigamma=("entropy",),
    ),
    Case(
        "Dirichlet",
        {"concentration": _a([0.5, 2.0, 3.0], [4.0, 1.0, 0.8])},
        lambda D, p: D.Dirichlet(p["concentration"]),
        {"log_prob": _SIMPLEX, "entropy": None, "mean": None, "variance": None},
        trigamma=("entropy",),
    ),
    Case(
        "Bernoulli(probs)",
        {"probs": _a(0.1, 0.5, 0.85)},
        lambda D, p: D.Bernoulli(probs=p["probs"]),
        {"log_prob": _a(1.0, 0.0, 1.0), "entropy": None, "mean": None, "variance": None},
    ),
    Case(
        "Bernoulli(logits)",
        {"logits": _a(-2.0, 0.3, 4.0)},
        lambda D, p: D.Bernoulli(logits=p["logits"]),
        {"log_prob": _a(0.0, 1.0, 1.0), "entropy": None, "mean": None, "variance": None},
    ),
    Case(
        "Categorical(probs)",
        {"probs": _a([0.2, 0.5, 0.3, 1.0], [1.0, 2.0, 0.5, 0.5])},
        lambda D, p: D.Categorical(probs=p["probs"]),
        {"log_prob": np.array([[1, 3], [0, 2], [3, 3]]), "entropy": None},
    ),
    Case(
        "Categorical(logits)",
        {"logits": _a([0.2, -1.5, 0.3], [2.0, 0.0, -0.5])},
        lambda D, p: D.Categorical(logits=p["logits"]),
        {"log_prob": np.array([2, 0]), "entropy": None},
    ),
    Case(
        "Poisson",
        {"rate": _a(0.5, 3.0, 12.0)},
        lambda D, p: D.Poisson(p["rate"]),
        {"log_prob": _a(0.0, 2.0, 15.0), "mean": None, "variance": None},
    ),
    Case(
        "MVN(covariance_matrix)",
        {"loc": _X3[0], "covariance_matrix": _SPD},
        lambda D, p: D.MultivariateNormal(p["loc"], covariance_matrix=p["covariance_matrix"]),
        {"log_prob": _X3, "entropy": None, "mean": None, "variance": None},
    ),
    Case(
        "MVN(scale_tril, batched loc)",
        {"loc": _X3, "scale_tril": _TRIL},
        lambda D, p: D.MultivariateNormal(p["loc"], scale_tril=p["scale_tril"]),
        {
            "log_prob": _X3[::-1].copy(),
            "entropy": None,
            "variance": None,
            "covariance_matrix": None,
            "precision_matrix": None,
        },
    ),
    Case(
        "MVN(precision_matrix, batched)",
        {"loc": _X3[1], "precision_matrix": _SPD2},
        lambda D, p: D.MultivariateNormal(p["loc"], precision_matrix=p["precision_matrix"]),
        {"log_prob": _X3, "entropy": None, "variance": None, "scale_tril": None},
    ),
    Case(
        "Independent(Normal, 1)",
        {"loc": _X3, "scale": _a([0.5, 1.0, 2.0], [1.5, 0.3, 0.9])},
        lambda D, p: D.Independent(D.Normal(p["loc"], p["scale"]), 1),
        {"log_prob": _X3[::-1].copy(), "entropy": None, "mean": None, "variance": None},
    ),
    Case(
        "Transformed(Normal, affine + sigmoid)",
        {"loc": _a(0.2, -0.4), "scale": _a(0.8, 1.3), "a": _a(0.5, -0.2), "b": _a(1.5, -2.0)},
        lambda D, p: D.TransformedDistribution(
            D.Normal(p["loc"], p["scale"]),
            [D.AffineTransform(p["a"], p["b"]), D.SigmoidTransform()],
        ),
        {"log_prob": _a(0.3, 0.6), "cdf": _a(0.3, 0.6), "icdf": _a(0.2, 0.7)},
    ),
    Case(
        "Transformed(Exponential, exp, affine(event_dim=1))",
        {"rate": _a([0.5, 2.0], [1.0, 3.0]), "a": _a(0.1, 0.2), "b": _a(2.0, 0.5)},
        lambda D, p: D.TransformedDistribution(
            D.Exponential(p["rate"]),
            [D.ExpTransform(), D.AffineTransform(p["a"], p["b"], event_dim=1)],
        ),
        {"log_prob": _a([3.0, 1.1], [2.5, 0.9])},
    ),
]
IDS = [c.name for c in CASES]


@pytest.fixture(scope="module")
def torch():
    torch = pytest.importorskip("torch")
    torch.distributions.Distribution.set_default_validate_args(True)
    return torch


# ----- evaluating the same expression with both libraries ----------------------------------
def _leaf(lib: Any, a: np.ndarray, grad: bool) -> Any:
    if lib is ad:
        return ad.tensor(a, requires_grad=grad and a.dtype.kind == "f")
    t = lib.tensor(a, dtype=lib.float64 if a.dtype.kind == "f" else lib.int64)
    return t.requires_grad_(grad and a.dtype.kind == "f")


def _quantity(lib: Any, case: Case, method: str) -> tuple[Any, list[Any]]:
    ns = ad.distributions if lib is ad else lib.distributions
    frozen = case.frozen.get(method, ())
    params = {k: _leaf(lib, v, k not in frozen) for k, v in case.params.items()}
    d = case.build(ns, params)
    inputs = [p for p in params.values() if p.requires_grad]
    if method in VALUE_METHODS:
        value = _leaf(lib, np.asarray(case.methods[method]), True)
        out = getattr(d, method)(value)
        inputs += [value] if value.requires_grad else []
    else:
        out = getattr(d, method)
        out = out() if callable(out) else out
    return out, inputs


def _grads(
    lib: Any, out: Any, inputs: list[Any], weights: np.ndarray, keep: Any = None
) -> list[np.ndarray]:
    if not out.requires_grad:
        return [np.zeros(x.shape) for x in inputs]
    if keep is not None:  # e.g. only the finite entries of a KL
        out, weights = out[lib.tensor(keep) if lib is not ad else keep], weights[keep]
    if lib is ad:
        gs = ad.autograd.grad((out * weights).sum(), inputs, allow_unused=True)
        return [np.zeros(x.shape) if g is None else g.numpy() for g, x in zip(gs, inputs)]
    gs = lib.autograd.grad((out * lib.tensor(weights)).sum(), inputs, allow_unused=True)
    return [np.zeros(tuple(x.shape)) if g is None else g.numpy() for g, x in zip(gs, inputs)]


def _both(torch: Any, case: Case, method: str) -> tuple[Any, ...]:
    ours, our_in = _quantity(ad, case, method)
    theirs, their_in = _quantity(torch, case, method)
    assert ours.shape == tuple(theirs.shape), f"{case.name}.{method}: shapes differ"
    w = np.random.default_rng(0).uniform(0.5, 1.5, ours.shape)
    return ours, theirs, _grads(ad, ours, our_in, w), _grads(torch, theirs, their_in, w)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_values_and_gradients_match_pytorch(torch, case):
    """Every method and property, and its gradient w.r.t. every parameter and the value."""
    for method in case.methods:
        ours, theirs, g_ours, g_theirs = _both(torch, case, method)
        np.testing.assert_allclose(
            ours.data, theirs.detach().numpy(), rtol=RTOL, atol=ATOL, err_msg=method
        )
        rtol = TRIGAMMA_RTOL if method in case.trigamma else RTOL
        for i, (a, b) in enumerate(zip(g_ours, g_theirs)):
            np.testing.assert_allclose(a, b, rtol=rtol, atol=ATOL, err_msg=f"{method} grad {i}")


def test_pytorch_trigamma_is_the_inexact_side(torch):
    mpmath = pytest.importorskip("mpmath")
    x = _a(0.3, 0.5, 2.0, 7.5)
    exact = np.array([float(mpmath.psi(1, v)) for v in x])
    ours = ad.polygamma(1, ad.tensor(x)).numpy()
    theirs = torch.polygamma(1, torch.tensor(x)).numpy()
    np.testing.assert_allclose(ours, exact, rtol=1e-14)
    assert np.max(np.abs(theirs / exact - 1)) > 1e-11  # the reason for TRIGAMMA_RTOL
    np.testing.assert_allclose(theirs, exact, rtol=1e-9)


# ----- KL divergences ----------------------------------------------------------------------
@dataclasses.dataclass
class KLCase:
    """KL(p || q) for two members of one family, built with either library."""

    name: str
    p: dict[str, np.ndarray]
    q: dict[str, np.ndarray]
    build: Callable[[Any, dict[str, Any]], Any]
    trigamma: bool = False  # the gradient goes through PyTorch's inexact trigamma


_LOCSCALE_Q = {"loc": _a(0.0, 0.5, -1.0), "scale": _a(1.0, 0.7, 3.0)}
_GAMMA_P = {"concentration": _a(0.5, 2.0, 7.5), "rate": _a(1.0, 0.5, 3.0)}
_GAMMA_Q = {"concentration": _a(1.5, 1.0, 3.0), "rate": _a(2.0, 0.8, 1.0)}
KL_CASES = [
    KLCase("Normal", _LOCSCALE, _LOCSCALE_Q, lambda D, p: D.Normal(p["loc"], p["scale"])),
    KLCase("Laplace", _LOCSCALE, _LOCSCALE_Q, lambda D, p: D.Laplace(p["loc"], p["scale"])),
    KLCase("LogNormal", _LOCSCALE, _LOCSCALE_Q, lambda D, p: D.LogNormal(p["loc"], p["scale"])),
    KLCase(
        "Exponential",
        {"rate": _a(0.5, 2.0)},
        {"rate": _a(1.5, 0.3)},
        lambda D, p: D.Exponential(p["rate"]),
    ),
    KLCase(
        "Uniform",
        {"low": _a(0.0, 1.0, 0.0), "high": _a(1.0, 2.0, 3.0)},
        {"low": _a(-1.0, 0.5, 1.0), "high": _a(2.0, 2.0, 4.0)},  # the last: inf
        lambda D, p: D.Uniform(p["low"], p["high"]),
    ),
    KLCase(
        "Gamma",
        _GAMMA_P,
        _GAMMA_Q,
        lambda D, p: D.Gamma(p["concentration"], p["rate"]),
        trigamma=True,
    ),
    KLCase(
        "Beta",
        {"c1": _a(0.5, 2.0, 5.0), "c0": _a(1.5, 0.7, 4.0)},
        {"c1": _a(1.0, 3.0, 2.0), "c0": _a(2.0, 1.0, 0.6)},
        lambda D, p: D.Beta(p["c1"], p["c0"]),
        trigamma=True,
    ),
    KLCase(
        "Dirichlet",
        {"concentration": _a([0.5, 2.0, 3.0], [4.0, 1.0, 0.8])},
        {"concentration": _a([1.0, 1.0, 1.0], [2.0, 2.5, 0.3])},
        lambda D, p: D.Dirichlet(p["concentration"]),
        trigamma=True,
    ),
    KLCase(
        "Bernoulli",
        {"probs": _a(0.1, 0.5, 0.85, 0.0)},
        {"probs": _a(0.3, 0.2, 0.6, 0.4)},
        lambda D, p: D.Bernoulli(probs=p["probs"]),
    ),
    KLCase(
        "Bernoulli(logits)",
        {"logits": _a(-2.0, 0.3, 4.0)},
        {"logits": _a(1.0, -0.5, 0.2)},
        lambda D, p: D.Bernoulli(logits=p["logits"]),
    ),
    KLCase(
        "Categorical",
        {"probs": _a([0.2, 0.5, 0.3], [0.0, 0.7, 0.3])},
        {"probs": _a([0.1, 0.1, 0.8], [0.4, 0.4, 0.2])},
        lambda D, p: D.Categorical(probs=p["probs"]),
    ),
    KLCase(
        "Categorical(logits)",
        {"logits": _a([0.2, -1.5, 0.3], [2.0, 0.0, -0.5])},
        {"logits": _a([1.0, 0.5, -0.3], [0.0, 0.0, 1.5])},
        lambda D, p: D.Categorical(logits=p["logits"]),
    ),
    KLCase(
        "Poisson",
        {"rate": _a(0.5, 3.0, 12.0)},
        {"rate": _a(1.0, 2.0, 15.0)},
        lambda D, p: D.Poisson(p["rate"]),
    ),
    KLCase(
        "MVN",
        {"loc": _X3, "covariance_matrix": _SPD2},
        {"loc": _X3[0], "covariance_matrix": _SPD2[::-1].copy()},
        lambda D, p: D.MultivariateNormal(p["loc"], covariance_matrix=p["covariance_matrix"]),
    ),
    KLCase(
        "MVN(scale_tril, precision)",
        {"loc": _X3[1], "scale_tril": _TRIL},
        {"loc": _X3[0], "precision_matrix": _SPD},
        lambda D, p: D.MultivariateNormal(
            p["loc"], scale_tril=p.get("scale_tril"), precision_matrix=p.get("precision_matrix")
        ),
    ),
    KLCase(
        "Independent(Normal, 1)",
        {"loc": _X3, "scale": _a([0.5, 1.0, 2.0], [1.5, 0.3, 0.9])},
        {"loc": _X3[::-1].copy(), "scale": _a([1.0, 1.0, 1.0], [0.5, 0.6, 0.7])},
        lambda D, p: D.Independent(D.Normal(p["loc"], p["scale"]), 1),
    ),
]


def _kl(lib: Any, case: KLCase) -> tuple[Any, list[Any]]:
    ns = ad.distributions if lib is ad else lib.distributions
    ps = {k: _leaf(lib, v, True) for k, v in case.p.items()}
    qs = {k: _leaf(lib, v, True) for k, v in case.q.items()}
    out = ns.kl_divergence(case.build(ns, ps), case.build(ns, qs))
    return out, [*ps.values(), *qs.values()]


@pytest.mark.parametrize("case", KL_CASES, ids=[c.name for c in KL_CASES])
def test_kl_divergence_matches_pytorch(torch, case):
    ours, our_in = _kl(ad, case)
    theirs, their_in = _kl(torch, case)
    np.testing.assert_allclose(ours.data, theirs.detach().numpy(), rtol=RTOL, atol=ATOL)
    w = np.random.default_rng(1).uniform(0.5, 1.5, ours.shape)
    finite = np.isfinite(ours.data)  # an infinite KL has no gradient to compare
    rtol = TRIGAMMA_RTOL if case.trigamma else RTOL
    g_ours = _grads(ad, ours, our_in, w, finite)
    g_theirs = _grads(torch, theirs, their_in, w, finite)
    for i, (a, b) in enumerate(zip(g_ours, g_theirs)):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=ATOL, err_msg=f"grad {i}")
