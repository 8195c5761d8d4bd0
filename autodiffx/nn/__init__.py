"""``ad.nn``: modules, parameters, layers and the functional activations and losses."""

from __future__ import annotations

from . import functional
from .layers import (
    ELU,
    GELU,
    Dropout,
    Identity,
    LeakyReLU,
    Linear,
    LogSoftmax,
    ReLU,
    Sequential,
    Sigmoid,
    Softmax,
    Softplus,
    Tanh,
)
from .module import Module, Parameter

__all__ = [
    "ELU",
    "GELU",
    "Dropout",
    "Identity",
    "LeakyReLU",
    "Linear",
    "LogSoftmax",
    "Module",
    "Parameter",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "Softmax",
    "Softplus",
    "Tanh",
    "functional",
]
