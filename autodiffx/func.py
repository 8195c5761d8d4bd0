"""Function transforms in JAX's style: grad, value_and_grad, vjp, jvp, Jacobians, hessian, hvp."""

from ._hvp import hvp
from ._transforms import (
    grad,
    hessian,
    jacfwd,
    jacobian,
    jacrev,
    jvp,
    tree_flatten,
    tree_unflatten,
    value_and_grad,
    vjp,
)

__all__ = [
    "grad",
    "hessian",
    "hvp",
    "jacfwd",
    "jacobian",
    "jacrev",
    "jvp",
    "tree_flatten",
    "tree_unflatten",
    "value_and_grad",
    "vjp",
]
