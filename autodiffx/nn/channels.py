"""Per-channel functions of ``ad.nn.functional``: ``batch_norm`` and ``dropout2d``."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._mode import no_grad
from .._tensor import Tensor
from ..ops import sqrt as _sqrt


def _as_tensor(x: Any) -> Tensor:
    return x if isinstance(x, Tensor) else Tensor(np.asarray(x))


def _per_channel(v: Any, x: Tensor, what: str) -> Any:
    """``v`` of shape (C,) reshaped to broadcast along axis 1 of ``x``."""
    c = x.shape[1]
    if tuple(np.shape(v)) != (c,):
        raise ValueError(
            f"batch_norm: {what} must have shape ({c},) for input {x.shape}, got {np.shape(v)}"
        )
    return v.reshape((c,) + (1,) * (x.ndim - 2))


def _update(buf: Any, value: Any, momentum: float) -> None:
    """``buf = (1 - momentum) buf + momentum value`` in place, unrecorded (PyTorch's update)."""
    with no_grad():
        buf *= 1.0 - momentum
        buf += momentum * value


def _batch_stats(x: Tensor, running_mean: Any, running_var: Any, momentum: float) -> Any:
    """``x`` centred by its batch mean and its biased batch variance (per channel, kept
    dims); the running statistics, when given, take the mean and the unbiased variance."""
    axes = (0, *range(2, x.ndim))
    n = x.size // max(x.shape[1], 1)
    if n <= 1:
        raise ValueError(
            f"batch_norm: expected more than 1 value per channel when training, got input "
            f"{x.shape}; use a larger batch or eval()"
        )
    mean = x.mean(axis=axes, keepdims=True)
    xc = x - mean
    var = (xc * xc).mean(axis=axes, keepdims=True)
    for buf, stat in ((running_mean, mean), (running_var, var * (n / (n - 1)))):
        if buf is not None:
            _per_channel(buf, x, "a running statistic")
            _update(buf, stat.data.reshape(-1), momentum)
    return xc, var


def batch_norm(
    input: Any,
    running_mean: Any,
    running_var: Any,
    weight: Any = None,
    bias: Any = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    """Batch normalization over axis 1 as PyTorch's ``F.batch_norm``.

    Training (or without running statistics): each channel is normalized by the mean and
    biased variance over every axis but 1, and the running statistics, when given, are
    updated in place as ``(1 - momentum) running + momentum batch`` with the *unbiased*
    batch variance (PyTorch's rule). Evaluation: the running statistics normalize. Then
    ``* weight + bias`` (per channel). Composed of differentiable ops: every order, both modes.

    Parameters
    ----------
    input : Tensor or array_like
        ``(N, C, *spatial)``, floating point.
    running_mean, running_var : Tensor, ndarray or None
        (C,) buffers (updated in place when training).
    weight, bias : Tensor or array_like, optional
        (C,) affine parameters.
    training : bool
        Use (and update) batch statistics.
    momentum : float
        Weight of the batch in the running update.
    eps : float
        Added to the variance.

    Examples
    --------
    >>> import numpy as np
    >>> import autodiffx as ad
    >>> import autodiffx.nn.functional as F
    >>> x = ad.tensor([[1.0, 10.0], [3.0, 30.0]], requires_grad=True)
    >>> rm, rv = np.zeros(2), np.ones(2)
    >>> F.batch_norm(x, rm, rv, training=True, eps=0.0)
    tensor([[-1., -1.],
            [ 1.,  1.]], grad_fn=<multiply>)
    >>> rm, rv
    (array([0.2, 2. ]), array([ 1.1, 20.9]))
    """
    x = _as_tensor(input)
    if x.ndim < 2:
        raise ValueError(
            f"batch_norm: expected an input (N, C, ...) of 2 or more axes, got {x.shape}"
        )
    if training or running_mean is None or running_var is None:
        stats = (running_mean, running_var) if training else (None, None)
        xc, var = _batch_stats(x, *stats, momentum)
    else:
        xc = x - _per_channel(running_mean, x, "running_mean")
        var = _per_channel(running_var, x, "running_var")
    out = xc * (1.0 / _sqrt(var + eps))
    if weight is not None:
        out = out * _per_channel(weight, x, "weight")
    if bias is not None:
        out = out + _per_channel(bias, x, "bias")
    return out


def dropout2d(input: Any, p: float = 0.5, training: bool = True, rng: Any = None) -> Tensor:
    """Zero whole channels with probability ``p`` (scaled by ``1 / (1 - p)``), as ``F.dropout2d``.

    Parameters
    ----------
    input : Tensor or array_like
        (N, C, H, W). A 3-D input is refused: PyTorch reads it as (N, C, L) with a warning
        that this will change to (C, H, W); add the axis you mean (``x[None]`` for one image).
    p : float
        Drop probability in [0, 1].
    training : bool
        Identity when False.
    rng : numpy.random.Generator, int or None
        Source of the (N, C) mask.

    Examples
    --------
    >>> import autodiffx as ad
    >>> import autodiffx.nn.functional as F
    >>> F.dropout2d(ad.ones((1, 4, 1, 2)), 0.5, rng=0)[0, :, 0]
    tensor([[2., 2.],
            [0., 0.],
            [0., 0.],
            [0., 0.]])
    """
    from .functional import _draw, _dropout_mask

    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    x = _as_tensor(input)
    if x.ndim != 4:
        raise ValueError(
            f"dropout2d: expected a 4-D input (N, C, H, W), got shape {x.shape}; for one image "
            "(C, H, W) pass x[None] (PyTorch reads 3-D input as (N, C, L), ambiguously)"
        )
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return x * 0
    dt = x.dtype if x.dtype.kind in "fc" else np.dtype(np.float64)
    return x * _draw(_dropout_mask, rng, (*x.shape[:2], 1, 1), p, dt, what="dropout2d's mask")
