"""``ad.nn.init``: PyTorch's in-place initialisers, drawing from ``rng=`` (a Generator or seed).

Every function fills its tensor in place (without recording a graph, as under
``no_grad``) and returns it. The fans and gains are PyTorch's: for a weight of shape
(out, in, *kernel), ``fan_in = in * prod(kernel)`` and ``fan_out = out * prod(kernel)``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._mode import no_grad
from .._tensor import Tensor
from .functional import as_generator

__all__ = [
    "calculate_gain",
    "constant_",
    "kaiming_normal_",
    "kaiming_uniform_",
    "normal_",
    "ones_",
    "orthogonal_",
    "uniform_",
    "xavier_normal_",
    "xavier_uniform_",
    "zeros_",
]

_LINEAR = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
           "conv_transpose3d", "sigmoid")  # fmt: skip


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """The recommended gain for ``nonlinearity`` (PyTorch's table).

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.nn.init.calculate_gain("relu"), ad.nn.init.calculate_gain("tanh")
    (1.4142135623730951, 1.6666666666666667)
    """
    if nonlinearity in _LINEAR:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        if isinstance(slope, bool) or not isinstance(slope, int | float):
            raise ValueError(f"calculate_gain: negative_slope {slope!r} is not a number")
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"calculate_gain: unsupported nonlinearity {nonlinearity!r}")


def _fans(t: Tensor, name: str) -> tuple[int, int]:
    if t.ndim < 2:
        raise ValueError(
            f"{name}: fan in and fan out cannot be computed for a tensor with fewer than "
            f"2 dimensions (got shape {t.shape})"
        )
    field = math.prod(t.shape[2:])
    return t.shape[1] * field, t.shape[0] * field


def _fill(t: Any, values: Any, name: str) -> Tensor:
    if not isinstance(t, Tensor):
        raise TypeError(
            f"{name}: expected an autodiffx Tensor or Parameter, got {type(t).__name__}"
        )
    with no_grad():
        t[...] = values
    return t


def _float(t: Any, name: str) -> None:
    if not isinstance(t, Tensor) or t.dtype.kind != "f":
        what = t.dtype if isinstance(t, Tensor) else type(t).__name__
        raise TypeError(f"{name}: expected a floating-point Tensor, got {what}")


def uniform_(tensor: Tensor, a: float = 0.0, b: float = 1.0, rng: Any = None) -> Tensor:
    """Fill with draws from U(a, b).

    Examples
    --------
    >>> import autodiffx as ad
    >>> w = ad.nn.init.uniform_(ad.zeros(4), -1.0, 1.0, rng=0)
    >>> bool((abs(w.data) <= 1).all())
    True
    """
    _float(tensor, "uniform_")
    return _fill(tensor, as_generator(rng).uniform(a, b, size=tensor.shape), "uniform_")


def normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0, rng: Any = None) -> Tensor:
    """Fill with draws from N(mean, std**2).

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.nn.init.normal_(ad.zeros(1000), 3.0, 0.0, rng=0).data.mean()
    np.float64(3.0)
    """
    _float(tensor, "normal_")
    return _fill(tensor, as_generator(rng).normal(mean, std, size=tensor.shape), "normal_")


def constant_(tensor: Tensor, val: float) -> Tensor:
    """Fill with ``val``.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.nn.init.constant_(ad.zeros(2), 0.5)
    tensor([0.5, 0.5])
    """
    return _fill(tensor, val, "constant_")


def zeros_(tensor: Tensor) -> Tensor:
    """Fill with zeros.

    Examples
    --------
    >>> import autodiffx as ad
    >>> w = ad.ones(2)
    >>> ad.nn.init.zeros_(w) is w, w  # in place, and returned
    (True, tensor([0., 0.]))
    """
    return _fill(tensor, 0, "zeros_")


def ones_(tensor: Tensor) -> Tensor:
    """Fill with ones.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.nn.init.ones_(ad.zeros(2))
    tensor([1., 1.])
    """
    return _fill(tensor, 1, "ones_")


def xavier_uniform_(tensor: Tensor, gain: float = 1.0, rng: Any = None) -> Tensor:
    """Glorot uniform: U(-a, a) with ``a = gain * sqrt(6 / (fan_in + fan_out))``.

    Examples
    --------
    >>> import autodiffx as ad
    >>> w = ad.nn.init.xavier_uniform_(ad.zeros((3, 5)), rng=0)
    >>> bool((abs(w.data) <= (6 / 8) ** 0.5).all())
    True
    """
    fan_in, fan_out = _fans(tensor, "xavier_uniform_")
    a = gain * math.sqrt(6.0 / float(fan_in + fan_out))
    return uniform_(tensor, -a, a, rng)


def xavier_normal_(tensor: Tensor, gain: float = 1.0, rng: Any = None) -> Tensor:
    """Glorot normal: N(0, std**2) with ``std = gain * sqrt(2 / (fan_in + fan_out))``.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.nn.init.xavier_normal_(ad.zeros((3, 5)), rng=0).shape
    (3, 5)
    """
    fan_in, fan_out = _fans(tensor, "xavier_normal_")
    std = gain * math.sqrt(2.0 / float(fan_in + fan_out))
    return normal_(tensor, 0.0, std, rng)


def _kaiming(
    name: str,
    tensor: Tensor,
    a: float = 0.0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
    rng: Any = None,
) -> tuple[float, Any]:
    """The arguments of ``kaiming_uniform_``/``kaiming_normal_``: ``(gain / sqrt(fan), rng)``."""
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"{name}: mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = _fans(tensor, name)
    fan = fan_in if mode == "fan_in" else fan_out
    if fan == 0:
        raise ValueError(f"{name}: cannot initialise a tensor of shape {tensor.shape} (fan 0)")
    return calculate_gain(nonlinearity, a) / math.sqrt(fan), rng


def kaiming_uniform_(tensor: Tensor, *args: Any, **kwargs: Any) -> Tensor:
    """He uniform: U(-b, b) with ``b = gain * sqrt(3 / fan)``.

    Arguments after ``tensor``: ``a=0.0`` (the leaky_relu slope), ``mode="fan_in"`` (or
    ``"fan_out"``), ``nonlinearity="leaky_relu"`` (see :func:`calculate_gain`), ``rng=None``.

    Examples
    --------
    >>> import math
    >>> import autodiffx as ad
    >>> w = ad.nn.init.kaiming_uniform_(ad.zeros((4, 9)), a=math.sqrt(5), rng=0)
    >>> bool((abs(w.data) <= 1 / 3).all())  # PyTorch's Linear default: 1/sqrt(fan_in)
    True
    """
    std, rng = _kaiming("kaiming_uniform_", tensor, *args, **kwargs)
    b = math.sqrt(3.0) * std
    return uniform_(tensor, -b, b, rng)


def kaiming_normal_(tensor: Tensor, *args: Any, **kwargs: Any) -> Tensor:
    """He normal: N(0, std**2) with ``std = gain / sqrt(fan)``; arguments as
    :func:`kaiming_uniform_`.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.nn.init.kaiming_normal_(ad.zeros((4, 9)), nonlinearity="relu", rng=0).shape
    (4, 9)
    """
    std, rng = _kaiming("kaiming_normal_", tensor, *args, **kwargs)
    return normal_(tensor, 0.0, std, rng)


def orthogonal_(tensor: Tensor, gain: float = 1.0, rng: Any = None) -> Tensor:
    """A (semi-)orthogonal matrix times ``gain`` (trailing axes flattened), PyTorch's recipe.

    A standard-normal (rows, cols) matrix, transposed if rows < cols, goes through QR; Q's
    columns are multiplied by the signs of R's diagonal (making the draw uniform, Haar).

    Examples
    --------
    >>> import numpy as np
    >>> import autodiffx as ad
    >>> q = ad.nn.init.orthogonal_(ad.zeros((3, 5)), rng=0).data
    >>> np.allclose(q @ q.T, np.eye(3))
    True
    """
    _float(tensor, "orthogonal_")
    if tensor.ndim < 2:
        raise ValueError(f"orthogonal_: only tensors with 2 or more dimensions, got {tensor.shape}")
    if tensor.size == 0:
        return tensor
    rows = tensor.shape[0]
    cols = tensor.size // rows
    flat = as_generator(rng).standard_normal((rows, cols))
    if rows < cols:
        flat = flat.T
    q, r = np.linalg.qr(flat)
    q = q * np.sign(np.diag(r))
    if rows < cols:
        q = q.T
    return _fill(tensor, gain * q.reshape(tensor.shape), "orthogonal_")
