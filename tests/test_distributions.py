"""ad.distributions: values and gradients against PyTorch (the live oracle: tests marked
``oracle``) and mpmath, central differences, both AD modes, Monte-Carlo moments, shapes,
validation and reproducibility."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import scipy.special as sp

import autodiffx as ad
from autodiffx.distributions import _implicit
from autodiffx.fd import directional

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
_W32 = _a([0.8, -0.3], [0.5, 1.1], [-0.2, 0.4])
_W232 = np.stack([_W32[:, :1], _a([0.1], [-0.9], [0.6])])


def _lowrank(D: Any, p: dict[str, Any]) -> Any:
    return D.LowRankMultivariateNormal(p["loc"], p["cov_factor"], p["cov_diag"])


def _lowrank_or_mvn(D: Any, p: dict[str, Any]) -> Any:
    if "cov_factor" in p:
        return _lowrank(D, p)
    return D.MultivariateNormal(p["loc"], covariance_matrix=p["covariance_matrix"])


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
        "LowRankMVN(batched loc)",
        {"loc": _X3, "cov_factor": _W32, "cov_diag": _a(0.5, 1.2, 0.8)},
        _lowrank,
        {
            "log_prob": _X3[::-1].copy(),
            **_MOMENTS,
            "covariance_matrix": None,
            "precision_matrix": None,
            "scale_tril": None,
        },
    ),
    Case(
        "LowRankMVN(batched cov_factor)",
        {"loc": _X3[1], "cov_factor": _W232, "cov_diag": _a([0.5, 1.2, 0.8], [2.0, 0.3, 1.0])},
        _lowrank,
        {"log_prob": _X3, "entropy": None, "variance": None, "precision_matrix": None},
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


@pytest.mark.oracle
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


@pytest.mark.oracle
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
        {"low": _a(-1.0, 0.5, 1.0), "high": _a(2.0, 2.5, 4.0)},  # the last: inf
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
        "LowRankMVN",
        {"loc": _X3, "cov_factor": _W32, "cov_diag": _a(0.5, 1.2, 0.8)},
        {"loc": _X3[0], "cov_factor": _W232, "cov_diag": _a([2.0, 0.3, 1.0], [0.7, 0.9, 1.4])},
        _lowrank_or_mvn,
    ),
    KLCase(
        "MVN, LowRankMVN",
        {"loc": _X3, "covariance_matrix": _SPD2},
        {"loc": _X3[0], "cov_factor": _W32, "cov_diag": _a(0.5, 1.2, 0.8)},
        _lowrank_or_mvn,
    ),
    KLCase(
        "LowRankMVN, MVN",
        {"loc": _X3[1], "cov_factor": _W232, "cov_diag": _a(0.5, 1.2, 0.8)},
        {"loc": _X3, "covariance_matrix": _SPD},
        _lowrank_or_mvn,
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


@pytest.mark.oracle
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


# ----- reparameterised samples: the same noise on both sides -------------------------------
def _std_normal(gen, shape):
    return gen.standard_normal(shape)


def _gamma_x(gen, shape, p):
    conc = np.broadcast_to(p["concentration"], shape)
    return np.maximum(gen.standard_gamma(conc), np.finfo(np.float64).tiny)


def _dirichlet_y(gen, shape, conc):
    """Our Dirichlet draw of ``shape`` (sample axes first) from ``gen``."""
    conc = np.asarray(conc)
    return D.Dirichlet(conc).sample(shape[: len(shape) - conc.ndim], rng=gen).numpy()


def _patch_normal(monkeypatch, torch, noise, module="normal"):
    mod = getattr(torch.distributions, module)
    monkeypatch.setattr(mod, "_standard_normal", lambda shape, dtype, device: torch.tensor(noise))


def _patch_gamma(monkeypatch, torch, x):
    class StandardGamma(torch.autograd.Function):
        # torch._standard_gamma with the draw replaced: the same derivative formula
        @staticmethod
        def forward(ctx, alpha):
            ctx.save_for_backward(alpha)
            return torch.tensor(x)

        @staticmethod
        def backward(ctx, g):
            (alpha,) = ctx.saved_tensors
            return g * torch._standard_gamma_grad(alpha, torch.tensor(x))

    monkeypatch.setattr(torch.distributions.gamma, "_standard_gamma", StandardGamma.apply)


def _patch_lowrank(monkeypatch, torch, noise):
    draws = iter(noise)  # eps_W (..., m), then eps_D (..., n), as PyTorch draws them
    mod = torch.distributions.lowrank_multivariate_normal
    monkeypatch.setattr(mod, "_standard_normal", lambda *a, **k: torch.tensor(next(draws)))


def _patch_method(monkeypatch, torch, name, noise):
    monkeypatch.setattr(torch.Tensor, name, lambda self, *a, **k: self.copy_(torch.tensor(noise)))


@dataclasses.dataclass
class RCase:
    """rsample(sample_shape) with the noise drawn by ``noise(gen, full_shape, params)``."""

    name: str
    params: dict[str, np.ndarray]
    build: Callable[[Any, dict[str, Any]], Any]
    noise: Callable[..., np.ndarray]
    patch: Callable[..., None]
    # PyTorch's _standard_gamma_grad and _dirichlet_grad are approximations (~1e-3 relative):
    approximate: tuple[str, ...] = ()


_RTOL_PYTORCH_IMPLICIT = 1e-2
R_CASES = [
    RCase(
        "Normal",
        _LOCSCALE,
        lambda D, p: D.Normal(p["loc"], p["scale"]),
        lambda g, s, p: _std_normal(g, s),
        _patch_normal,
    ),
    RCase(
        "LogNormal",
        _LOCSCALE,
        lambda D, p: D.LogNormal(p["loc"], p["scale"]),
        lambda g, s, p: _std_normal(g, s),
        _patch_normal,
    ),
    RCase(
        "Transformed(Normal, affine + sigmoid)",
        CASES[-2].params,
        CASES[-2].build,
        lambda g, s, p: _std_normal(g, s),
        _patch_normal,
    ),
    RCase(
        "MVN(covariance_matrix)",
        {"loc": _X3, "covariance_matrix": _SPD},
        CASES[13].build,
        lambda g, s, p: _std_normal(g, s),
        lambda m, t, n: _patch_normal(m, t, n, "multivariate_normal"),
    ),
    RCase(
        "MVN(precision_matrix)",
        {"loc": _X3[0], "precision_matrix": _SPD2},
        CASES[15].build,
        lambda g, s, p: _std_normal(g, s),
        lambda m, t, n: _patch_normal(m, t, n, "multivariate_normal"),
    ),
    RCase(
        "LowRankMVN",
        {"loc": _X3, "cov_factor": _W232, "cov_diag": _a(0.5, 1.2, 0.8)},
        _lowrank,
        lambda g, s, p: (_std_normal(g, (*s[:-1], p["cov_factor"].shape[-1])), _std_normal(g, s)),
        _patch_lowrank,
    ),
    RCase(
        "Exponential",
        {"rate": _a(0.5, 1.0, 3.0)},
        lambda D, p: D.Exponential(p["rate"]),
        lambda g, s, p: g.standard_exponential(s),
        lambda m, t, n: _patch_method(m, t, "exponential_", n),
    ),
    RCase(
        "Laplace",
        _LOCSCALE,
        lambda D, p: D.Laplace(p["loc"], p["scale"]),
        lambda g, s, p: g.uniform(np.finfo(np.float64).eps - 1, 1, s),
        lambda m, t, n: _patch_method(m, t, "uniform_", n),
    ),
    RCase(
        "Uniform",
        CASES[4].params,
        CASES[4].build,
        lambda g, s, p: g.random(s),
        lambda m, t, n: m.setattr(t, "rand", lambda *a, **k: t.tensor(n)),
    ),
    RCase(
        "Gamma",
        {"concentration": _a(0.3, 2.0, 7.5), "rate": _a(1.0, 0.5, 3.0)},
        lambda D, p: D.Gamma(p["concentration"], p["rate"]),
        _gamma_x,
        _patch_gamma,
        approximate=("concentration",),
    ),
    RCase(
        "Beta",
        {"c1": _a(0.5, 2.0, 5.0), "c0": _a(1.5, 0.7, 40.0)},
        lambda D, p: D.Beta(p["c1"], p["c0"]),
        lambda g, s, p: _dirichlet_y(g, (*s, 2), np.stack([p["c1"], p["c0"]], -1)),
        lambda m, t, y: m.setattr(t, "_sample_dirichlet", lambda c: t.tensor(y)),
        approximate=("c1", "c0"),
    ),
    RCase(
        "Dirichlet",
        {"concentration": _a([0.5, 2.0, 3.0], [4.0, 1.0, 0.8])},
        lambda D, p: D.Dirichlet(p["concentration"]),
        lambda g, s, p: _dirichlet_y(g, s, p["concentration"]),
        lambda m, t, y: m.setattr(t, "_sample_dirichlet", lambda c: t.tensor(y)),
        approximate=("concentration",),
    ),
]


def _rsample(lib, case, noise=None, monkeypatch=None):
    ns = ad.distributions if lib is ad else lib.distributions
    params = {k: _leaf(lib, v, True) for k, v in case.params.items()}
    d = case.build(ns, params)
    if lib is ad:
        return d.rsample((5,), rng=11), params, d
    case.patch(monkeypatch, lib, noise)
    return d.rsample((5,)), params, d


@pytest.mark.oracle
@pytest.mark.parametrize("case", R_CASES, ids=[c.name for c in R_CASES])
def test_rsample_gradients_match_pytorch_on_the_same_noise(torch, monkeypatch, case):
    ours, our_params, d = _rsample(ad, case)
    shape = (5, *d.batch_shape, *d.event_shape)
    noise = case.noise(np.random.default_rng(11), shape, case.params)
    theirs, their_params, _ = _rsample(torch, case, noise, monkeypatch)
    np.testing.assert_allclose(ours.data, theirs.detach().numpy(), rtol=1e-13, atol=1e-15)
    w = np.random.default_rng(2).uniform(0.5, 1.5, ours.shape)
    names = list(case.params)
    g_ours = _grads(ad, ours, list(our_params.values()), w)
    g_theirs = _grads(torch, theirs, list(their_params.values()), w)
    for name, a, b in zip(names, g_ours, g_theirs):
        if name in case.approximate:  # relative to the gradient's scale: entries cancel
            tol = _RTOL_PYTORCH_IMPLICIT
            np.testing.assert_allclose(a, b, rtol=tol, atol=tol * np.abs(b).max(), err_msg=name)
        else:
            np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL, err_msg=name)


# ----- the implicit reparameterisation against mpmath and the inverse CDF -----------------
_GAMMA_POINTS = [(1e-3, 1e-200), (0.05, 3e-5), (0.5, 0.2), (1.0, 1.0), (2.5, 7.0), (30.0, 24.0)]
_GAMMA_POINTS += [(1e3, 1040.0), (1e4, 9900.0)]
_BETA_POINTS = [(0.01, 1.0, 0.3), (0.1, 0.1, 0.999), (2.0, 3.0, 0.4), (10.0, 0.5, 0.97)]
_BETA_POINTS += [(100.0, 100.0, 0.47), (1e4, 2.0, 0.99949), (3.0, 1e4, 4.46e-4), (0.05, 30.0, 1e-9)]


def test_implicit_gradients_match_mpmath():
    """dx/da = -(dF/da)/p to 5e-13 (F the incomplete gamma or beta function) where PyTorch's
    approximations are good to ~1e-3, across shapes 1e-3 .. 1e4 and both tails."""
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 30

    def gamma_ref(a, x):
        a, x = mp.mpf(a), mp.mpf(x)
        d = mp.diff(lambda t: mp.gammainc(t, 0, x, regularized=True), a)
        return float(-d / (x ** (a - 1) * mp.exp(-x) / mp.gamma(a)))

    def beta_ref(a, b, x):
        a, b, x = mp.mpf(a), mp.mpf(b), mp.mpf(x)
        d = mp.diff(lambda t: mp.betainc(t, b, 0, x, regularized=True), a)
        return float(-d / (x ** (a - 1) * (1 - x) ** (b - 1) / mp.beta(a, b)))

    a, x = np.array(_GAMMA_POINTS).T
    expected = [gamma_ref(*p) for p in _GAMMA_POINTS]
    np.testing.assert_allclose(_implicit.standard_gamma_grad(a, x), expected, rtol=5e-13)
    a, b, x = np.array(_BETA_POINTS).T
    expected = [beta_ref(*p) for p in _BETA_POINTS]
    np.testing.assert_allclose(_implicit.beta_grad_a(x, a, b), expected, rtol=5e-13)


def _inverse_cdf_slope(inv: Callable[[float], float], a: float) -> float:
    return float(directional(lambda t: np.array(inv(float(t))), [np.array(a)], [np.array(1.0)])[0])


def test_gamma_and_beta_rsample_gradients_are_inverse_cdf_derivatives():
    """At fixed u = F(x), x(a) = F⁻¹(u; a): SciPy's inverse CDFs differenced in a (no mpmath)."""
    c, r = ad.tensor([0.4, 3.0], requires_grad=True), ad.tensor([2.0, 0.5], requires_grad=True)
    x = D.Gamma(c, r).rsample(rng=3)
    got = ad.autograd.grad(x.sum(), c)[0].numpy()
    std = x.data * r.data
    for i in range(2):
        u = sp.gammainc(c.data[i], std[i])
        slope = _inverse_cdf_slope(lambda t, u=u: sp.gammaincinv(t, u), c.data[i])
        np.testing.assert_allclose(got[i], slope / r.data[i], rtol=1e-7)
    c1, c0 = ad.tensor(0.7, requires_grad=True), ad.tensor(2.5, requires_grad=True)
    y = D.Beta(c1, c0).rsample(rng=4)
    g1, g0 = ad.autograd.grad(y, [c1, c0])
    u = sp.betainc(0.7, 2.5, y.item())
    np.testing.assert_allclose(
        g1.item(), _inverse_cdf_slope(lambda t: sp.betaincinv(t, 2.5, u), 0.7), rtol=1e-7
    )
    np.testing.assert_allclose(
        g0.item(), _inverse_cdf_slope(lambda t: sp.betaincinv(0.7, t, u), 2.5), rtol=1e-7
    )


def test_dirichlet_rsample_jacobian():
    """dy_j/da_i: y_i moves along its Beta(a_i, sum(a) - a_i) marginal (inverse CDF at fixed
    u), the other coordinates shrink in proportion."""
    a = np.array([0.6, 2.0, 1.3])
    jac = ad.jacrev(lambda c: D.Dirichlet(c).rsample(rng=5))(ad.tensor(a)).numpy()  # [j, i]
    y = D.Dirichlet(a).sample(rng=5).numpy()
    for i in range(3):
        rest = a.sum() - a[i]
        u = sp.betainc(a[i], rest, y[i])
        dyi = _inverse_cdf_slope(lambda t, u=u, rest=rest: sp.betaincinv(t, rest, u), a[i])
        expected = -y / (1 - y[i]) * dyi
        expected[i] = dyi
        np.testing.assert_allclose(jac[:, i], expected, rtol=1e-7)


def test_pathwise_gradients_are_unbiased():
    """The mean of d(sample)/d(parameter) over many draws is d(mean)/d(parameter)."""
    n = 20000
    c, r = ad.tensor(0.8, requires_grad=True), ad.tensor(1.5, requires_grad=True)
    x = D.Gamma(c, r).rsample((n,), rng=6)
    gc = ad.autograd.grad(x, [c], grad_outputs=ad.ones(n))[0]  # sum of per-sample slopes
    # the per-sample slopes, by forward mode on the same draws
    per_sample = ad.jacfwd(lambda c: D.Gamma(c, 1.5).rsample((n,), rng=6))(ad.tensor(0.8))
    np.testing.assert_allclose(gc.item(), per_sample.numpy().sum(), rtol=1e-12)
    assert abs(gc.item() / n - 1 / 1.5) < 5 * per_sample.numpy().std() / np.sqrt(n)
    alpha = ad.tensor([0.3, 1.0, 2.0], requires_grad=True)
    y = D.Dirichlet(alpha).rsample((n,), rng=7)
    (g,) = ad.autograd.grad(y[:, 0].sum(), alpha)
    # per-sample slopes dy_0/da_i, by forward mode on the same draws
    slopes = ad.jacfwd(lambda a: D.Dirichlet(a).rsample((n,), rng=7)[:, 0])(alpha.detach())
    slopes = slopes.numpy()
    np.testing.assert_allclose(g.numpy(), slopes.sum(0), rtol=1e-12)
    expected = (np.eye(3)[0] - 0.3 / 3.3) / 3.3  # d (a_0 / sum a) / da
    se = slopes.std(0) / np.sqrt(n)
    np.testing.assert_array_less(np.abs(slopes.mean(0) - expected), 5 * se)


# ----- central differences and forward mode (no PyTorch needed) -----------------------------
def _inputs(case: Case, method: str) -> tuple[list[str], list[np.ndarray]]:
    names, arrays = list(case.params), list(case.params.values())
    value = case.methods[method]
    if method in VALUE_METHODS and np.asarray(value).dtype.kind == "f":
        names.append("value")
        arrays.append(np.asarray(value))
    return names, arrays


def _as_function(case: Case, method: str, weights: Any = None) -> Callable[..., Any]:
    """``sum(weights * method(...))`` as a function of the parameters (and the value)."""
    names, _ = _inputs(case, method)

    def f(*xs: Any) -> Any:
        p = dict(zip(names, xs))
        value = p.pop("value", case.methods[method])
        d = case.build(ad.distributions, {k: ad.asarray(v) for k, v in p.items()})
        out = getattr(d, method)
        out = out(value) if method in VALUE_METHODS else out() if callable(out) else out
        return out if weights is None else (out * weights).sum()

    return f


def _direction(names: list[str], arrays: list[np.ndarray], seed: int) -> list[np.ndarray]:
    g = np.random.default_rng(seed)
    vs = [g.standard_normal(a.shape) for a in arrays]
    for i, n in enumerate(names):  # symmetric matrices: perturb symmetrically
        if n in ("covariance_matrix", "precision_matrix"):
            vs[i] = (vs[i] + np.swapaxes(vs[i], -1, -2)) / 2
        if n == "probs":  # a probability 0 or 1 is on the boundary: do not step off it
            vs[i] = np.where((arrays[i] == 0) | (arrays[i] == 1), 0.0, vs[i])
    return vs


_FD_METHODS = [
    (c, m)
    for c in CASES
    for m in c.methods
    if not (c.name.startswith("Categorical") and m == "mean")
]


@pytest.mark.parametrize(
    ("case", "method"), _FD_METHODS, ids=[f"{c.name}.{m}" for c, m in _FD_METHODS]
)
def test_gradients_match_central_differences_in_both_modes(monkeypatch, case, method):
    """Reverse mode = forward mode (1e-12) = central differences along a random direction."""
    monkeypatch.setattr(D.Distribution, "_validate_default", False)  # steps leave the simplex
    names, xs = _inputs(case, method)
    shape = _as_function(case, method)(*xs).shape
    f = _as_function(case, method, np.random.default_rng(3).uniform(0.5, 1.5, shape))
    vs = _direction(names, xs, 4)
    grads = ad.grad(f, argnums=tuple(range(len(xs))))(*xs)
    rev = sum(float((g.numpy() * v).sum()) for g, v in zip(grads, vs))
    _, fwd = ad.jvp(f, tuple(ad.tensor(x) for x in xs), tuple(ad.tensor(v) for v in vs))
    fd = float(directional(lambda *a: f(*a).data, xs, vs, rel_step=2e-4)[0])
    scale = sum(float(np.abs(g.numpy() * v).sum()) for g, v in zip(grads, vs))  # before cancelling
    np.testing.assert_allclose(fwd.item(), rev, rtol=0, atol=1e-13 * scale)
    np.testing.assert_allclose(rev, fd, rtol=0, atol=1e-8 * scale)


@pytest.mark.parametrize("case", KL_CASES, ids=[c.name for c in KL_CASES])
def test_kl_gradients_match_central_differences_in_both_modes(monkeypatch, case):
    monkeypatch.setattr(D.Distribution, "_validate_default", False)
    names = [f"p.{k}" for k in case.p] + [f"q.{k}" for k in case.q]
    xs = [*case.p.values(), *case.q.values()]
    kl0 = D.kl_divergence(case.build(D, case.p), case.build(D, case.q)).data
    w = np.where(np.isfinite(kl0), np.random.default_rng(5).uniform(0.5, 1.5, kl0.shape), 0.0)
    keep = np.isfinite(kl0)

    def f(*a):
        p = dict(zip(case.p, a[: len(case.p)]))
        q = dict(zip(case.q, a[len(case.p) :]))
        kl = D.kl_divergence(case.build(D, p), case.build(D, q))
        return (kl[keep] * w[keep]).sum()

    vs = _direction([n.split(".")[1] for n in names], xs, 6)
    grads = ad.grad(f, argnums=tuple(range(len(xs))))(*xs)
    rev = sum(float((g.numpy() * v).sum()) for g, v in zip(grads, vs))
    _, fwd = ad.jvp(f, tuple(ad.tensor(x) for x in xs), tuple(ad.tensor(v) for v in vs))
    fd = float(directional(lambda *a: f(*a).data, xs, vs, rel_step=2e-4)[0])
    scale = sum(float(np.abs(g.numpy() * v).sum()) for g, v in zip(grads, vs))
    np.testing.assert_allclose(fwd.item(), rev, rtol=0, atol=1e-13 * scale)
    np.testing.assert_allclose(rev, fd, rtol=0, atol=1e-8 * scale)


# ----- higher order, and refusing what is not implemented --------------------------------
_SECOND_ORDER = [
    ("Gamma.log_prob", lambda c, r: D.Gamma(c, r).log_prob(ad.tensor([0.7, 2.0])).sum()),
    ("Beta.entropy", lambda c, r: D.Beta(c, r).entropy().sum()),
    ("Dirichlet KL", lambda c, r: D.kl_divergence(D.Dirichlet(c), D.Dirichlet(r))),
    ("Normal.cdf", lambda c, r: D.Normal(c, r).cdf(ad.tensor([0.3, 1.0])).sum()),
    ("Poisson.log_prob", lambda c, r: D.Poisson(c * r).log_prob(ad.tensor([0.0, 3.0])).sum()),
    (
        "MVN.log_prob",
        lambda c, r: D.MultivariateNormal(
            c, covariance_matrix=ad.eye(2) * (1 + r**2)[:, None] + 0.3 * (1 - ad.eye(2))
        ).log_prob(ad.tensor([0.2, -0.1])),
    ),
]


@pytest.mark.parametrize(("name", "f"), _SECOND_ORDER, ids=[n for n, _ in _SECOND_ORDER])
def test_hessians_match_differences_of_the_gradient(name, f):
    """Forward-over-reverse Hessians through gammaln/digamma/polygamma, erf, solve ..."""
    x = [np.array([1.3, 0.6]), np.array([2.1, 0.9])]
    h = ad.hessian(f, argnums=(0, 1))(*x)
    g = ad.grad(f, argnums=(0, 1))
    for j, v in enumerate(([1.0, 0.0], [0.0, 1.0])):
        vs = [np.array(v) * (j == 0), np.array(v) * (j == 1)]
        fd = directional(lambda a, b: tuple(t.numpy() for t in g(a, b)), x, vs, rel_step=1e-4)
        for i in range(2):
            np.testing.assert_allclose(h[i][j].numpy() @ np.array(v), fd[i], rtol=1e-6, atol=1e-8)


def test_second_derivatives_of_implicit_samples_raise_instead_of_being_zero():
    c = ad.tensor([2.0], requires_grad=True)
    x = D.Gamma(c, 1.0).rsample(rng=0)
    (g,) = ad.autograd.grad(x.sum(), c, create_graph=True)
    with pytest.raises(NotImplementedError, match=r"Gamma.rsample: derivatives of order two"):
        ad.autograd.grad(g.sum(), c)
    with pytest.raises(NotImplementedError, match=r"Dirichlet\.rsample"):
        ad.hessian(lambda a: D.Dirichlet(a).rsample(rng=0)[0])(ad.tensor([1.0, 2.0]))
    with pytest.raises(NotImplementedError, match=r"Gamma\.cdf"):
        ad.hessian(lambda a: D.Gamma(a, 1.0).cdf(1.5))(ad.tensor(2.0))
    # other parameters stay differentiable to any order (the sample is linear in 1 / rate)
    h = ad.hessian(lambda r: D.Gamma(2.0, r).rsample(rng=0).sum())(ad.tensor(2.0))
    x0 = D.Gamma(2.0, 1.0).sample(rng=0).item()
    np.testing.assert_allclose(h.item(), 2 * x0 / 8, rtol=1e-12)


def test_rsample_in_forward_mode_and_sample_carries_nothing():
    c = ad.tensor([0.5, 3.0])
    _, t = ad.jvp(lambda a: D.Gamma(a, 2.0).rsample(rng=1), (c,), (ad.ones(2),))
    (g,) = ad.autograd.grad(D.Gamma(c.requires_grad_(), 2.0).rsample(rng=1).sum(), c)
    np.testing.assert_allclose(t.numpy(), g.numpy(), rtol=1e-14)
    with ad.forward.dual_level():
        loc = ad.forward.make_dual(ad.tensor(0.0), ad.tensor(1.0))
        s = D.Normal(loc, 1.0).sample((3,), rng=0)
        r = D.Normal(loc, 1.0).rsample((3,), rng=0)
        assert ad.forward.unpack_dual(s)[1] is None
        np.testing.assert_array_equal(ad.forward.unpack_dual(r)[1].numpy(), np.ones(3))
    loc = ad.tensor(0.0, requires_grad=True)
    assert not D.Normal(loc, 1.0).sample(rng=0).requires_grad
    assert D.Normal(loc, 1.0).rsample(rng=0).requires_grad


# ----- sampling: moments, shapes, reproducibility -----------------------------------------
_MC = [
    D.Normal(_a(0.3, -2.0), _a(0.5, 3.0)),
    D.LogNormal(_a(0.0, 1.0), _a(0.5, 0.25)),
    D.Exponential(_a(0.5, 4.0)),
    D.Laplace(_a(1.0, -1.0), _a(0.5, 2.0)),
    D.Uniform(_a(-1.0, 2.0), _a(1.0, 2.5)),
    D.Gamma(_a(0.05, 0.7, 9.0), _a(1.0, 2.0, 0.5)),
    D.Beta(_a(0.1, 2.0), _a(0.5, 30.0)),
    D.Dirichlet(_a([0.02, 0.5, 1.0], [3.0, 5.0, 2.0])),
    D.Bernoulli(logits=_a(-3.0, 0.0, 2.0)),
    D.Poisson(_a(0.3, 4.0, 50.0)),
    D.MultivariateNormal(_X3, covariance_matrix=_SPD),
    D.Independent(D.Normal(_X3, 1.5), 1),
    D.LowRankMultivariateNormal(_X3, _W232, _a(0.5, 1.2, 0.8)),
]


@pytest.mark.parametrize("d", _MC, ids=[repr(d) for d in _MC])
def test_sample_mean_and_variance_within_five_standard_errors(d):
    n = 20000
    x = d.sample((n,), rng=8).numpy()
    mean, var = d.mean.numpy(), d.variance.numpy()
    se_mean = np.sqrt(var / n)
    se_var = np.std((x - mean) ** 2, axis=0) / np.sqrt(n)
    np.testing.assert_array_less(np.abs(x.mean(0) - mean), 5 * se_mean)
    # x.var uses the sample mean: (mean - sample mean)**2 < 25 var / n adds to the error
    np.testing.assert_array_less(np.abs(x.var(0) - var), 5 * se_var + 25 * var / n)


def test_categorical_frequencies_within_five_standard_errors():
    p = _a([0.05, 0.6, 0.35], [0.3, 0.3, 0.4])
    n = 20000
    x = D.Categorical(probs=p).sample((n,), rng=9).numpy()
    freq = np.stack([(x == k).mean(0) for k in range(3)], -1)
    np.testing.assert_array_less(np.abs(freq - p), 5 * np.sqrt(p * (1 - p) / n))


def _ad_case(case: Case) -> Any:
    return case.build(
        ad.distributions, {k: ad.tensor(v, requires_grad=True) for k, v in case.params.items()}
    )


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_sample_shapes_and_detachment(case):
    d = _ad_case(case)
    full = (*d.batch_shape, *d.event_shape)
    assert d.sample(rng=0).shape == full
    assert d.sample(3, rng=0).shape == (3, *full)
    s = d.sample((4, 2), rng=0)
    assert s.shape == (4, 2, *full)
    assert not s.requires_grad
    if d.has_rsample:
        r = d.rsample((4, 2), rng=0)
        assert r.shape == (4, 2, *full) and r.requires_grad
        np.testing.assert_array_equal(r.data, s.data)  # sample is rsample without the graph
    else:
        with pytest.raises(NotImplementedError, match="no reparameterised sampler"):
            d.rsample(rng=0)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_sampling_is_reproducible_through_rng(case):
    d = _ad_case(case)
    np.testing.assert_array_equal(d.sample((3,), rng=7).data, d.sample((3,), rng=7).data)
    g = np.random.default_rng(7)
    first = d.sample((3,), rng=g).data
    np.testing.assert_array_equal(first, d.sample((3,), rng=np.random.default_rng(7)).data)
    assert not np.array_equal(first, d.sample((3,), rng=g).data)  # the generator advanced
    with pytest.raises(TypeError, match="rng must be"):
        d.sample(rng="seed")


# ----- validation and clear errors --------------------------------------------------------
_BAD_PARAMETERS = [
    (lambda: D.Normal(0.0, -1.0), r"Normal: parameter scale .*must be positive.*values -1.0$"),
    (lambda: D.Normal(ad.tensor([0.0, 1.0]), ad.tensor([1.0, 0.0])), r"Normal: .*scale.*\[\[1\]\]"),
    (lambda: D.Laplace(np.nan, 1.0), r"Laplace: parameter loc .*real"),
    (lambda: D.Exponential(0.0), r"Exponential: parameter rate"),
    (lambda: D.Uniform(1.0, 0.0), r"Uniform: parameter low .*less_than"),
    (lambda: D.Gamma(-1.0, 1.0), r"Gamma: parameter concentration"),
    (lambda: D.Beta(1.0, 0.0), r"Beta: parameter concentration0"),
    (lambda: D.Dirichlet([1.0, 0.0]), r"Dirichlet: parameter concentration .*batch index"),
    (lambda: D.Bernoulli(probs=1.5), r"Bernoulli: parameter probs .*unit_interval"),
    (lambda: D.Bernoulli(probs=0.5, logits=0.0), r"Bernoulli: give exactly one of probs"),
    (lambda: D.Categorical(probs=[0.5, -0.1, 0.6]), r"Categorical: parameter probs .*simplex"),
    (lambda: D.Categorical(logits=1.0), r"Categorical: logits must be at least one-dim"),
    (lambda: D.Poisson(-1.0), r"Poisson: parameter rate .*nonnegative"),
    (
        lambda: D.MultivariateNormal(ad.zeros(2), covariance_matrix=[[1.0, 2.0], [2.0, 1.0]]),
        r"MultivariateNormal: parameter covariance_matrix .*positive_definite",
    ),
    (
        lambda: D.MultivariateNormal(ad.zeros(2), scale_tril=[[1.0, 1.0], [0.0, 1.0]]),
        r"MultivariateNormal: parameter scale_tril .*lower_cholesky",
    ),
    (lambda: D.MultivariateNormal(ad.zeros(2)), r"exactly one of covariance_matrix"),
    (
        lambda: D.MultivariateNormal(ad.zeros(3), covariance_matrix=np.eye(2)),
        r"n = loc.shape\[-1\].*loc \(3,\), covariance_matrix \(2, 2\)",
    ),
    (
        lambda: D.LowRankMultivariateNormal(ad.zeros(2), np.ones((2, 1)), [1.0, 0.0]),
        r"LowRankMultivariateNormal: parameter cov_diag .*positive",
    ),
    (
        lambda: D.LowRankMultivariateNormal(ad.zeros(3), np.ones((2, 1)), np.ones(3)),
        r"n = loc.shape\[-1\] = 3, cov_factor must be .* got cov_factor \(2, 1\)",
    ),
    (
        lambda: D.LowRankMultivariateNormal(ad.zeros(2), np.ones(2), np.ones(2)),
        r"cov_factor at least 2-D; got loc \(2,\), cov_factor \(2,\)",
    ),
    (
        lambda: D.LowRankMultivariateNormal(ad.zeros((3, 2)), np.ones((4, 2, 1)), np.ones(2)),
        r"batch shapes of loc, cov_factor and cov_diag do not broadcast",
    ),
    (lambda: D.Independent(D.Normal(0.0, 1.0), 1), r"Independent: reinterpreted_batch_ndims"),
    (lambda: D.TransformedDistribution(D.Normal(0.0, 1.0), "exp"), r"transforms must be"),
]


@pytest.mark.parametrize(("make", "match"), _BAD_PARAMETERS)
def test_invalid_parameters_raise_value_error_naming_them(make, match):
    with pytest.raises(ValueError, match=match):
        make()


_BAD_VALUES = [
    (D.Normal(0.0, 1.0), np.nan, "Normal: value is outside the support real"),
    (D.Gamma(1.0, 1.0), -1.0, "Gamma: value is outside the support nonnegative"),
    (D.LogNormal(0.0, 1.0), -1.0, "LogNormal: value is outside the support positive"),
    (D.Beta(1.0, 2.0), 1.5, r"Beta: value is outside the support unit_interval"),
    (D.Dirichlet(ad.ones(2)), [0.5, 0.6], r"Dirichlet: value is outside the support simplex"),
    (D.Bernoulli(probs=0.3), 0.5, r"Bernoulli: value is outside the support boolean"),
    (D.Poisson(2.0), 1.5, r"Poisson: value is outside .*nonnegative_integer"),
    (D.Categorical(logits=ad.zeros(3)), 3, r"Categorical: value is outside .*\{0, \.\.\., 2\}"),
    (D.Normal(ad.zeros(3), 1.0), np.zeros(4), r"Normal: value of shape \(4,\) does not broadcast"),
    (D.Dirichlet(ad.ones(3)), np.ones(2) / 2, r"Dirichlet: value of shape \(2,\) does not end"),
]


@pytest.mark.parametrize(("d", "value", "match"), _BAD_VALUES)
def test_invalid_values_raise_value_error(d, value, match):
    with pytest.raises(ValueError, match=match):
        d.log_prob(value)


def test_validate_args_false_skips_the_checks():
    assert D.Normal(0.0, -1.0, validate_args=False).scale.item() == -1.0
    np.testing.assert_allclose(
        D.Exponential(2.0, validate_args=False).log_prob(-1.0).item(), np.log(2) + 2
    )
    D.Distribution.set_default_validate_args(False)
    try:
        D.Exponential(-2.0)
    finally:
        D.Distribution.set_default_validate_args(True)
    with pytest.raises(ValueError, match="Exponential"):
        D.Exponential(-2.0)


def test_missing_pieces_raise_clear_errors():
    with pytest.raises(
        NotImplementedError, match="no closed form is registered for p Normal and q Gamma"
    ):
        D.kl_divergence(D.Normal(0.0, 1.0), D.Gamma(1.0, 1.0))
    two = D.Independent(D.Normal(ad.zeros((2, 2)), 1.0), 2)
    with pytest.raises(NotImplementedError, match=r"different reinterpreted_batch_ndims \(2 and 1"):
        D.kl_divergence(two, D.Independent(D.Normal(ad.zeros((2, 2)), 1.0), 1))
    mvn2, mvn3 = (D.MultivariateNormal(ad.zeros(n), covariance_matrix=ad.eye(n)) for n in (2, 3))
    with pytest.raises(ValueError, match=r"MultivariateNormal .* event_shape \(\(2,\) and \(3,\)"):
        D.kl_divergence(mvn2, mvn3)
    p = D.TransformedDistribution(D.Normal(0.0, 1.0), D.ExpTransform())
    q = D.TransformedDistribution(D.Normal(0.0, 1.0), D.SigmoidTransform())
    with pytest.raises(NotImplementedError, match="different transforms"):
        D.kl_divergence(p, q)
    with pytest.raises(TypeError, match="not a Distribution subclass"):
        D.register_kl(int, D.Normal)
    with pytest.raises(NotImplementedError, match=r"Poisson\.entropy is not implemented"):
        D.Poisson(1.0).entropy()
    with pytest.raises(TypeError, match="polygamma: the order n must be an integer"):
        ad.polygamma(1.5, ad.tensor(2.0))


def test_kl_dispatch_prefers_the_most_specific_pair():
    class MyNormal(D.Normal):
        pass

    calls = []

    @D.register_kl(MyNormal, D.Normal)
    def _mine(p, q):
        calls.append("mine")
        return ad.zeros(())

    # (MyNormal is this test's own class: its registration changes no other dispatch)
    D.kl_divergence(MyNormal(0.0, 1.0), D.Normal(0.0, 2.0))
    D.kl_divergence(D.Normal(0.0, 1.0), MyNormal(0.0, 2.0))  # falls back to Normal-Normal
    assert calls == ["mine"]


def test_expand_and_transforms_that_broadcast_the_base():
    d = D.Gamma(ad.tensor(2.0, requires_grad=True), 1.0).expand((2, 3))
    assert d.batch_shape == (2, 3) and d.sample(rng=0).shape == (2, 3)
    # the affine loc broadcasts a scalar base: the base is expanded, so draws are independent
    t = D.TransformedDistribution(D.Normal(0.0, 1.0), D.AffineTransform(ad.zeros(4), 1.0))
    assert t.batch_shape == (4,)
    x = t.sample((2,), rng=0).numpy()
    assert x.shape == (2, 4) and len(np.unique(x)) == 8
    # a decreasing transform flips the CDF: 1 - 2 X has the law of Normal(1, 2)
    neg = D.TransformedDistribution(D.Normal(0.0, 1.0), D.AffineTransform(1.0, -2.0))
    np.testing.assert_allclose(neg.cdf(3.0).item(), D.Normal(1.0, 2.0).cdf(3.0).item())
    np.testing.assert_allclose(neg.icdf(neg.cdf(0.3)).item(), 0.3, rtol=1e-12)


def test_lowrank_mvn_equals_the_dense_mvn_and_refuses_other_event_shapes():
    """Woodbury and the determinant lemma against the dense n x n MVN (n = 40, m = 3), values
    and gradients, log_prob, entropy, the three KL pairs; no PyTorch needed."""
    g = np.random.default_rng(12)
    n, m = 40, 3
    w = ad.tensor(g.standard_normal((n, m)), requires_grad=True)
    d = ad.tensor(g.uniform(0.5, 2.0, n), requires_grad=True)
    loc = ad.tensor(g.standard_normal(n))
    low = D.LowRankMultivariateNormal(loc, w, d)
    dense = D.MultivariateNormal(loc, covariance_matrix=w @ w.T + ad.diag(d))
    other = D.LowRankMultivariateNormal(ad.zeros(n), w[:, :1] * 2, ad.ones(n))
    other_dense = D.MultivariateNormal(ad.zeros(n), covariance_matrix=other.covariance_matrix)
    x = ad.tensor(g.standard_normal((2, n)))
    pairs = [
        (low.log_prob(x).sum(), dense.log_prob(x).sum()),
        (low.entropy(), dense.entropy()),
        (D.kl_divergence(low, other), D.kl_divergence(dense, other_dense)),
        (D.kl_divergence(dense, other), D.kl_divergence(dense, other_dense)),
        (D.kl_divergence(low, other_dense), D.kl_divergence(dense, other_dense)),
    ]
    for ours, ref in pairs:
        np.testing.assert_allclose(ours.item(), ref.item(), rtol=1e-11)
        ga = ad.autograd.grad(ours, [w, d], retain_graph=True)
        for a, b in zip(ga, ad.autograd.grad(ref, [w, d], retain_graph=True)):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(
        low.precision_matrix.data, np.linalg.inv(dense.covariance_matrix.data), atol=1e-12
    )
    np.testing.assert_allclose(low.scale_tril.data, dense.scale_tril.data, atol=1e-12)
    e = low.expand((2, 4))
    assert e.batch_shape == (2, 4) and e.log_prob(x[0]).shape == (2, 4)
    with pytest.raises(ValueError, match=r"different event shapes \(40,\) and \(2,\)"):
        D.kl_divergence(low, D.LowRankMultivariateNormal(ad.zeros(2), np.ones((2, 1)), ad.ones(2)))
