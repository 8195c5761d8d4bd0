"""``ad.nn.utils``: gradient clipping and flattening parameters to one vector (PyTorch's)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from .._mode import no_grad
from .._tensor import Tensor, bump_version
from .._xp import is_array_api, namespace
from ..ops import concatenate as _concatenate

__all__ = [
    "clip_grad_norm_",
    "clip_grad_value_",
    "parameters_to_vector",
    "vector_to_parameters",
]


def _as_list(parameters: Any) -> list[Tensor]:
    if isinstance(parameters, Tensor):
        return [parameters]
    params = list(parameters)
    for p in params:
        if not isinstance(p, Tensor):
            raise TypeError(f"expected Tensors or Parameters, got a {type(p).__name__}")
    return params


def _vector_norm(a: Any, ord: float, xp: Any = np) -> Any:
    if ord == math.inf:
        return xp.max(xp.abs(a)) if a.size else 0.0
    if ord == -math.inf:
        return xp.min(xp.abs(a)) if a.size else math.inf
    if ord == 0:
        return float(xp.count_nonzero(a))
    return xp.sum(xp.abs(a) ** ord) ** (1.0 / ord)


def _grad_norm(a: Any, ord: float) -> Any:
    """The ``ord`` norm of a gradient array; of an array-API array (CuPy, array-api-strict)
    computed in its namespace and read as a Python float."""
    if type(a) is np.ndarray or not is_array_api(a):
        return _vector_norm(a, ord)
    return float(_vector_norm(a, ord, namespace(a)))


def clip_grad_norm_(
    parameters: Iterable[Tensor] | Tensor,
    max_norm: float,
    norm_type: float = 2.0,
    error_if_nonfinite: bool = False,
) -> Tensor:
    """Scale the gradients in place so that their joint ``norm_type`` norm is ``max_norm``.

    PyTorch's steps exactly: the norm of the per-parameter norms, then every gradient is
    multiplied by ``min(max_norm / (total + 1e-6), 1)``. Parameters without a gradient
    are skipped. Returns the total norm before clipping (a 0-d Tensor). A non-finite norm
    raises ``RuntimeError`` if ``error_if_nonfinite``.

    Examples
    --------
    >>> import autodiffx as ad
    >>> w = ad.tensor([3.0, 4.0], requires_grad=True)
    >>> w.grad = ad.tensor([3.0, 4.0])
    >>> ad.nn.utils.clip_grad_norm_([w], 1.0)
    tensor(5.)
    >>> w.grad
    tensor([0.59999988, 0.79999984])
    """
    grads = [p.grad for p in _as_list(parameters) if p.grad is not None]
    if not grads:
        return Tensor(np.asarray(0.0))
    ord = float(norm_type)
    norms = np.array([_grad_norm(g.data, ord) for g in grads])
    total = _vector_norm(norms, ord)
    if error_if_nonfinite and not np.isfinite(total):
        raise RuntimeError(
            f"clip_grad_norm_: the total norm of order {norm_type} of the gradients is "
            f"{total}, so it cannot be clipped; set error_if_nonfinite=False to go on anyway"
        )
    coef = float(min(float(max_norm) / (total + 1e-6), 1.0))  # (a Python float: any array)
    for g in grads:
        g.data *= coef
        bump_version(g)
    first = grads[0].data
    if type(first) is not np.ndarray and is_array_api(first):  # (in the gradients' library)
        return Tensor(
            namespace(first).asarray(float(total), dtype=first.dtype, device=first.device)
        )
    return Tensor(np.asarray(total, dtype=grads[0].dtype))


def clip_grad_value_(parameters: Iterable[Tensor] | Tensor, clip_value: float) -> None:
    """Clip every gradient in place to ``[-clip_value, clip_value]``.

    Examples
    --------
    >>> import autodiffx as ad
    >>> w = ad.tensor([1.0, 1.0], requires_grad=True)
    >>> w.grad = ad.tensor([-3.0, 0.5])
    >>> ad.nn.utils.clip_grad_value_([w], 1.0)
    >>> w.grad
    tensor([-1. ,  0.5])
    """
    c = float(clip_value)
    for p in _as_list(parameters):
        if p.grad is not None:
            g = p.grad.data
            if type(g) is np.ndarray or not is_array_api(g):
                np.clip(g, -c, c, out=g)
            else:  # (the array API has no out=)
                g[...] = namespace(g).clip(g, -c, c)
            bump_version(p.grad)


def parameters_to_vector(parameters: Iterable[Tensor]) -> Tensor:
    """One 1-D Tensor of every parameter, flattened and concatenated (differentiable).

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.nn.utils.parameters_to_vector(ad.nn.Linear(2, 1, rng=0).parameters()).shape
    (3,)
    """
    params = _as_list(parameters)
    if not params:
        raise ValueError("parameters_to_vector: no parameters given")
    return _concatenate([p.reshape(-1) for p in params])


def vector_to_parameters(vec: Any, parameters: Iterable[Tensor]) -> None:
    """Copy consecutive slices of the 1-D ``vec`` into the parameters, in place.

    The parameters keep their identity (an optimizer built on them stays valid); the
    length of ``vec`` must equal their total size.

    Examples
    --------
    >>> import autodiffx as ad
    >>> lin = ad.nn.Linear(2, 1, rng=0)
    >>> ad.nn.utils.vector_to_parameters(ad.tensor([1.0, 2.0, 3.0]), lin.parameters())
    >>> lin.weight, lin.bias
    (Parameter containing:
    tensor([[1., 2.]], requires_grad=True), Parameter containing:
    tensor([3.], requires_grad=True))
    """
    v = vec.data if isinstance(vec, Tensor) else np.asarray(vec)
    params = _as_list(parameters)
    total = sum(p.size for p in params)
    if v.ndim != 1 or v.shape[0] != total:
        raise ValueError(
            f"vector_to_parameters: expected a 1-D vector of length {total} (the parameters' "
            f"total size), got shape {v.shape}"
        )
    start = 0
    with no_grad():
        for p in params:
            p[...] = v[start : start + p.size].reshape(p.shape)
            start += p.size
