"""``ad.distributions``: probability distributions with PyTorch's names and semantics.

Every density, entropy, moment and KL divergence is written with autodiffx's differentiable
ops, so gradients (and higher derivatives, in both AD modes) flow to every parameter that
requires grad. ``sample(sample_shape, rng=)`` is detached; ``rsample`` is the reparameterised
(pathwise) sample where one exists (implicit reparameterisation for Gamma, Beta and
Dirichlet). Randomness comes only from ``rng=`` (a ``numpy.random.Generator`` or a seed).
See docs/distributions.md.
"""

from __future__ import annotations

from . import constraints
from ._base import Distribution
from .continuous import Beta, Exponential, Gamma, Laplace, Normal, Uniform
from .discrete import Bernoulli, Categorical, Poisson
from .kl import kl_divergence, register_kl
from .lowrank import LowRankMultivariateNormal
from .multivariate import Dirichlet, MultivariateNormal
from .transformed import Independent, LogNormal, TransformedDistribution
from .transforms import (
    AffineTransform,
    ComposeTransform,
    ExpTransform,
    SigmoidTransform,
    Transform,
)

__all__ = [
    "AffineTransform",
    "Bernoulli",
    "Beta",
    "Categorical",
    "ComposeTransform",
    "Dirichlet",
    "Distribution",
    "ExpTransform",
    "Exponential",
    "Gamma",
    "Independent",
    "Laplace",
    "LogNormal",
    "LowRankMultivariateNormal",
    "MultivariateNormal",
    "Normal",
    "Poisson",
    "SigmoidTransform",
    "Transform",
    "TransformedDistribution",
    "Uniform",
    "constraints",
    "kl_divergence",
    "register_kl",
]
