"""Function transforms in JAX's style: grad, vjp, jvp, Jacobians, hessian, hvp and vmap."""

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
from ._vmap import vmap

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
    "vmap",
]
