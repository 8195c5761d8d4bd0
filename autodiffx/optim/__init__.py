"""``ad.optim``: optimizers with PyTorch's update rules, schedulers and a SciPy bridge."""

from __future__ import annotations

from . import lr_scheduler
from .first_order import SGD, Adagrad, Adam, AdamW, RMSprop, SteepestDescent
from .lbfgs import LBFGS
from .minimize import minimize
from .optimizer import Optimizer

__all__ = [
    "LBFGS",
    "SGD",
    "Adagrad",
    "Adam",
    "AdamW",
    "Optimizer",
    "RMSprop",
    "SteepestDescent",
    "lr_scheduler",
    "minimize",
]
