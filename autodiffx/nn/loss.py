"""Loss modules: the module forms of the losses in ``ad.nn.functional`` (PyTorch's names)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._tensor import Tensor
from . import functional as F
from .module import Module

__all__ = [
    "BCELoss",
    "BCEWithLogitsLoss",
    "CrossEntropyLoss",
    "HuberLoss",
    "L1Loss",
    "MSELoss",
    "NLLLoss",
]

_REDUCTIONS = ("mean", "sum", "none")


class _Loss(Module):
    """Holds ``reduction`` (checked at construction) and an optional class-weight buffer."""

    def __init__(self, reduction: str = "mean", weight: Any = None) -> None:
        super().__init__()
        if reduction not in _REDUCTIONS:
            raise ValueError(
                f"{type(self).__name__}: reduction must be 'mean', 'sum' or 'none', "
                f"got {reduction!r}"
            )
        self.reduction = reduction
        self.register_buffer("weight", None if weight is None else _buffer(weight))

    def extra_repr(self) -> str:
        """The reduction."""
        return f"reduction={self.reduction!r}"


def _buffer(v: Any) -> Tensor:
    return v.detach() if isinstance(v, Tensor) else Tensor(np.asarray(v, dtype=np.float64))


class _PointwiseLoss(_Loss):
    """``function(input, target, reduction)``: a loss with no option but the reduction."""

    _function: Any = None

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__(reduction)

    def forward(self, input: Any, target: Any) -> Tensor:
        """The loss."""
        return self._function(input, target, self.reduction)


class MSELoss(_PointwiseLoss):
    """Module form of :func:`autodiffx.nn.functional.mse_loss`.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.nn.MSELoss()(ad.tensor([1.0, 2.0]), ad.tensor([0.0, 0.0]))
    tensor(2.5)
    >>> ad.nn.MSELoss(reduction="none")(ad.tensor([1.0, 2.0]), 0.0)
    tensor([1., 4.])
    """

    _function = staticmethod(F.mse_loss)


class L1Loss(_PointwiseLoss):
    """Module form of :func:`autodiffx.nn.functional.l1_loss`.

    Examples
    --------
    >>> import autodiffx as ad
    >>> x = ad.tensor([1.0, -3.0, 0.0], requires_grad=True)
    >>> ad.nn.L1Loss(reduction="sum")(x, ad.zeros(3)).backward()
    >>> x.grad  # 0 at a zero residual
    tensor([ 1., -1.,  0.])
    """

    _function = staticmethod(F.l1_loss)


class HuberLoss(_Loss):
    """Module form of :func:`autodiffx.nn.functional.huber_loss` (``delta``, default 1).

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.nn.HuberLoss(delta=2.0)(ad.tensor([1.0, 3.0]), ad.tensor([0.0, 0.0]))
    tensor(2.25)
    """

    def __init__(self, reduction: str = "mean", delta: float = 1.0) -> None:
        super().__init__(reduction)
        if not delta > 0:
            raise ValueError(f"HuberLoss: delta must be positive, got {delta}")
        self.delta = float(delta)

    def forward(self, input: Any, target: Any) -> Tensor:
        """The loss."""
        return F.huber_loss(input, target, self.reduction, self.delta)


class CrossEntropyLoss(_Loss):
    """Module form of :func:`autodiffx.nn.functional.cross_entropy` (logits and labels).

    ``weight`` (C,) is kept as a buffer (saved in ``state_dict``), as PyTorch.

    Examples
    --------
    >>> import autodiffx as ad
    >>> loss = ad.nn.CrossEntropyLoss(label_smoothing=0.1)
    >>> loss(ad.tensor([[2.0, 0.0, -1.0]]), [0])
    tensor(0.33651269)
    """

    def __init__(
        self,
        weight: Any = None,
        ignore_index: int = -100,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__(reduction, weight)
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(
                f"CrossEntropyLoss: label_smoothing must be in [0, 1], got {label_smoothing}"
            )
        self.ignore_index = int(ignore_index)
        self.label_smoothing = float(label_smoothing)

    def forward(self, input: Any, target: Any) -> Tensor:
        """The loss."""
        return F.cross_entropy(
            input,
            target,
            self._buffers["weight"],
            self.ignore_index,
            self.reduction,
            self.label_smoothing,
        )


class NLLLoss(_Loss):
    """Module form of :func:`autodiffx.nn.functional.nll_loss` (log-probabilities, labels).

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.nn.NLLLoss()(ad.log(ad.tensor([[0.5, 0.5], [0.25, 0.75]])), [0, 1])
    tensor(0.49041463)
    """

    def __init__(self, weight: Any = None, ignore_index: int = -100, reduction: str = "mean"):
        super().__init__(reduction, weight)
        self.ignore_index = int(ignore_index)

    def forward(self, input: Any, target: Any) -> Tensor:
        """The loss."""
        return F.nll_loss(input, target, self._buffers["weight"], self.ignore_index, self.reduction)


class BCELoss(_Loss):
    """Module form of :func:`autodiffx.nn.functional.binary_cross_entropy` (probabilities).

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.nn.BCELoss()(ad.tensor([0.5, 0.5]), ad.tensor([1.0, 0.0]))
    tensor(0.69314718)
    """

    def __init__(self, weight: Any = None, reduction: str = "mean") -> None:
        super().__init__(reduction, weight)

    def forward(self, input: Any, target: Any) -> Tensor:
        """The loss."""
        return F.binary_cross_entropy(input, target, self._buffers["weight"], self.reduction)


class BCEWithLogitsLoss(_Loss):
    """Module form of :func:`autodiffx.nn.functional.binary_cross_entropy_with_logits`.

    ``weight`` and ``pos_weight`` are kept as buffers, as PyTorch.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.nn.BCEWithLogitsLoss()(ad.tensor([0.0, 0.0]), ad.tensor([1.0, 0.0]))
    tensor(0.69314718)
    """

    def __init__(self, weight: Any = None, reduction: str = "mean", pos_weight: Any = None):
        super().__init__(reduction, weight)
        self.register_buffer("pos_weight", None if pos_weight is None else _buffer(pos_weight))

    def forward(self, input: Any, target: Any) -> Tensor:
        """The loss."""
        return F.binary_cross_entropy_with_logits(
            input, target, self._buffers["weight"], self.reduction, self._buffers["pos_weight"]
        )
