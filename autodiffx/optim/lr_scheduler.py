"""Learning-rate schedulers with PyTorch's sequences.

``StepLR``, ``ExponentialLR``, ``CosineAnnealingLR``, ``LambdaLR`` and ``ReduceLROnPlateau``.
Call ``scheduler.step()`` once per epoch after ``optimizer.step()``. The schedulers write
``group["lr"]`` of their optimizer's parameter groups and keep ``group["initial_lr"]``.
The recursive ("chainable") formulas are PyTorch's, so the sequences agree with it to
rounding.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from .optimizer import Optimizer, _scalar

__all__ = [
    "CosineAnnealingLR",
    "ExponentialLR",
    "LRScheduler",
    "LambdaLR",
    "ReduceLROnPlateau",
    "StepLR",
]


class LRScheduler:
    """Base class: ``get_lr()`` gives the next rates, :meth:`step` applies them.

    Building a scheduler sets ``initial_lr`` in every group (when ``last_epoch == -1``)
    and performs the initial step (``last_epoch`` becomes 0).

    Examples
    --------
    >>> import autodiffx as ad
    >>> opt = ad.optim.SGD([ad.zeros(1, requires_grad=True)], lr=1.0)
    >>> class Halving(ad.optim.lr_scheduler.LRScheduler):
    ...     def get_lr(self):
    ...         return [b * 0.5**self.last_epoch for b in self.base_lrs]
    >>> sched = Halving(opt)
    >>> sched.step(); sched.step()
    >>> sched.get_last_lr()
    [0.25]
    """

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(optimizer).__name__} is not an Optimizer")
        self.optimizer = optimizer
        if last_epoch == -1:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
        else:
            for i, group in enumerate(optimizer.param_groups):
                if "initial_lr" not in group:
                    raise KeyError(
                        f"param 'initial_lr' is not specified in param_groups[{i}] when "
                        "resuming a scheduler with last_epoch >= 0"
                    )
        self.base_lrs: list[float] = [g["initial_lr"] for g in optimizer.param_groups]
        self.last_epoch = last_epoch
        self._step_count = 0
        self._is_initial = True
        try:
            self.step()
        finally:
            self._is_initial = False

    def get_lr(self) -> list[float]:
        """The learning rates for the current ``last_epoch`` (subclasses define it)."""
        raise NotImplementedError

    def get_last_lr(self) -> list[float]:
        """The learning rates set by the last :meth:`step`, one per parameter group.

        Examples
        --------
        >>> import autodiffx as ad
        >>> opt = ad.optim.SGD([ad.zeros(1, requires_grad=True)], lr=0.5)
        >>> ad.optim.lr_scheduler.StepLR(opt, step_size=2).get_last_lr()
        [0.5]
        """
        return list(self._last_lr)

    def step(self) -> None:
        """Advance one epoch and set each group's ``lr``.

        Examples
        --------
        >>> import autodiffx as ad
        >>> opt = ad.optim.SGD([ad.zeros(1, requires_grad=True)], lr=1.0)
        >>> sched = ad.optim.lr_scheduler.ExponentialLR(opt, gamma=0.5)
        >>> sched.step()
        >>> opt.param_groups[0]["lr"]
        0.5
        """
        self._step_count += 1
        self.last_epoch += 1
        values = self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, values, strict=True):
            group["lr"] = lr
        self._last_lr = self._rates()

    def _rates(self, factor: float | None = None) -> list[float]:
        """Every group's current ``lr`` (times ``factor`` if given)."""
        groups = self.optimizer.param_groups
        return [g["lr"] for g in groups] if factor is None else [g["lr"] * factor for g in groups]

    def state_dict(self) -> dict[str, Any]:
        """Everything but the optimizer (and functions), as plain values.

        Examples
        --------
        >>> import autodiffx as ad
        >>> opt = ad.optim.SGD([ad.zeros(1, requires_grad=True)], lr=1.0)
        >>> ad.optim.lr_scheduler.StepLR(opt, step_size=3).state_dict()["last_epoch"]
        0
        """
        return {k: v for k, v in self.__dict__.items() if k != "optimizer" and not callable(v)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a state from :meth:`state_dict` (e.g. as returned by ``ad.load``).

        Examples
        --------
        >>> import autodiffx as ad
        >>> opt = ad.optim.SGD([ad.zeros(1, requires_grad=True)], lr=1.0)
        >>> a = ad.optim.lr_scheduler.StepLR(opt, step_size=3)
        >>> a.step()
        >>> b = ad.optim.lr_scheduler.StepLR(opt, step_size=3)
        >>> b.load_state_dict(a.state_dict())
        >>> b.last_epoch
        1
        """
        unknown = [k for k in state_dict if k not in self.__dict__]
        if unknown:
            raise ValueError(f"unknown scheduler state entries {unknown}")
        for k, v in state_dict.items():
            if isinstance(v, tuple):
                v = list(v)
            elif hasattr(v, "tolist") and k in ("base_lrs", "_last_lr", "min_lrs"):
                v = v.tolist()
            elif hasattr(v, "item") and getattr(v, "ndim", 1) == 0:
                v = v.item()
            self.__dict__[k] = v


class StepLR(LRScheduler):
    """Multiply the learning rate by ``gamma`` every ``step_size`` epochs.

    Examples
    --------
    >>> import autodiffx as ad
    >>> opt = ad.optim.SGD([ad.zeros(1, requires_grad=True)], lr=1.0)
    >>> sched = ad.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.1)
    >>> for _ in range(3):
    ...     sched.step()
    >>> opt.param_groups[0]["lr"], sched.last_epoch  # decayed once (at epoch 2), not yet twice
    (0.1, 3)
    """

    def __init__(
        self, optimizer: Optimizer, step_size: int, gamma: float = 0.1, last_epoch: int = -1
    ) -> None:
        self.step_size = step_size
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        """``lr * gamma`` at a non-zero multiple of ``step_size``, else ``lr``."""
        keep = self.last_epoch == 0 or self.last_epoch % self.step_size != 0
        return self._rates(None if keep else self.gamma)


class ExponentialLR(LRScheduler):
    """Multiply the learning rate by ``gamma`` every epoch.

    Examples
    --------
    >>> import autodiffx as ad
    >>> opt = ad.optim.SGD([ad.zeros(1, requires_grad=True)], lr=1.0)
    >>> sched = ad.optim.lr_scheduler.ExponentialLR(opt, gamma=0.5)
    >>> sched.step(); sched.step()
    >>> sched.get_last_lr()
    [0.25]
    """

    def __init__(self, optimizer: Optimizer, gamma: float, last_epoch: int = -1) -> None:
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        """``lr * gamma`` (unchanged at the initial step)."""
        return self._rates(None if self._is_initial else self.gamma)


class CosineAnnealingLR(LRScheduler):
    r"""Cosine annealing from the base rate down to ``eta_min`` over ``T_max`` epochs.

    ``lr_t = eta_min + (base - eta_min)(1 + cos(pi t / T_max)) / 2`` computed by PyTorch's
    recursive form (which also continues past ``T_max``, rising again).

    Examples
    --------
    >>> import autodiffx as ad
    >>> opt = ad.optim.SGD([ad.zeros(1, requires_grad=True)], lr=1.0)
    >>> sched = ad.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=4)
    >>> lrs = []
    >>> for _ in range(5):
    ...     lrs.append(round(sched.get_last_lr()[0], 6))
    ...     sched.step()
    >>> lrs
    [1.0, 0.853553, 0.5, 0.146447, 0.0]
    """

    def __init__(
        self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0, last_epoch: int = -1
    ) -> None:
        self.T_max = T_max
        self.eta_min = eta_min
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        """The next rate by PyTorch's recursion."""
        groups = self.optimizer.param_groups
        t, tm, emin = self.last_epoch, self.T_max, self.eta_min
        if self._is_initial:
            return [g["lr"] for g in groups]
        if self._step_count == 1 and t > 0:
            return [emin + (b - emin) * (1 + math.cos(t * math.pi / tm)) / 2 for b in self.base_lrs]
        if (t - 1 - tm) % (2 * tm) == 0:
            return [
                g["lr"] + (b - emin) * (1 - math.cos(math.pi / tm)) / 2
                for b, g in zip(self.base_lrs, groups, strict=True)
            ]
        return [
            (1 + math.cos(math.pi * t / tm))
            / (1 + math.cos(math.pi * (t - 1) / tm))
            * (g["lr"] - emin)
            + emin
            for g in groups
        ]


class LambdaLR(LRScheduler):
    """Learning rate ``base_lr * lr_lambda(epoch)`` (one function, or one per group).

    Examples
    --------
    >>> import autodiffx as ad
    >>> opt = ad.optim.SGD([ad.zeros(1, requires_grad=True)], lr=1.0)
    >>> sched = ad.optim.lr_scheduler.LambdaLR(opt, lambda epoch: 1 / (epoch + 1))
    >>> sched.step(); sched.step()
    >>> sched.get_last_lr()
    [0.3333333333333333]
    """

    def __init__(
        self,
        optimizer: Optimizer,
        lr_lambda: Callable[[int], float] | list[Callable[[int], float]],
        last_epoch: int = -1,
    ) -> None:
        n = len(optimizer.param_groups)
        if isinstance(lr_lambda, list | tuple):
            if len(lr_lambda) != n:
                raise ValueError(f"Expected {n} lr_lambdas, but got {len(lr_lambda)}")
            self.lr_lambdas = list(lr_lambda)
        else:
            self.lr_lambdas = [lr_lambda] * n
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        """``base_lr * lr_lambda(last_epoch)`` per group."""
        return [b * f(self.last_epoch) for f, b in zip(self.lr_lambdas, self.base_lrs, strict=True)]

    def state_dict(self) -> dict[str, Any]:
        """The state without the functions (they are code, not data).

        Examples
        --------
        >>> import autodiffx as ad
        >>> opt = ad.optim.SGD([ad.zeros(1, requires_grad=True)], lr=1.0)
        >>> "lr_lambdas" in ad.optim.lr_scheduler.LambdaLR(opt, lambda e: 1.0).state_dict()
        False
        """
        return {k: v for k, v in super().state_dict().items() if k != "lr_lambdas"}


class ReduceLROnPlateau(LRScheduler):
    """Reduce the learning rate by ``factor`` when a metric stops improving (PyTorch's rules).

    Call ``step(metric)`` once per epoch. After more than ``patience`` epochs without an
    improvement (relative or absolute ``threshold``), every group's rate becomes
    ``max(lr * factor, min_lr)`` (skipped if the change is below ``eps``), followed by
    ``cooldown`` epochs during which bad epochs are not counted.

    Parameters
    ----------
    optimizer : Optimizer
        The optimizer.
    mode : {"min", "max"}
        Whether the metric should decrease or increase.
    factor : float
        Multiplier (< 1), default 0.1.
    patience : int
        Default 10.
    threshold : float
        Default 1e-4.
    threshold_mode : {"rel", "abs"}
        Default "rel".
    cooldown : int
        Default 0.
    min_lr : float or list of float
        Lower bound(s), default 0.
    eps : float
        Minimal change, default 1e-8.

    Examples
    --------
    >>> import autodiffx as ad
    >>> opt = ad.optim.SGD([ad.zeros(1, requires_grad=True)], lr=1.0)
    >>> sched = ad.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=1)
    >>> for loss in [5.0, 4.0, 4.0, 4.0, 4.0]:
    ...     sched.step(loss)
    >>> sched.get_last_lr()
    [0.1]
    """

    def __init__(
        self,
        optimizer: Optimizer,
        mode: str = "min",
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_mode: str = "rel",
        cooldown: int = 0,
        min_lr: float | list[float] = 0.0,
        eps: float = 1e-8,
    ) -> None:
        if factor >= 1.0:
            raise ValueError("Factor should be < 1.0.")
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(optimizer).__name__} is not an Optimizer")
        if mode not in ("min", "max"):
            raise ValueError(f"mode {mode!r} is unknown")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"threshold mode {threshold_mode!r} is unknown")
        self.optimizer = optimizer
        self.factor = factor
        n = len(optimizer.param_groups)
        if isinstance(min_lr, list | tuple):
            if len(min_lr) != n:
                raise ValueError(f"expected {n} min_lrs, got {len(min_lr)}")
            self.default_min_lr: float | None = None
            self.min_lrs = list(min_lr)
        else:
            self.default_min_lr = min_lr
            self.min_lrs = [min_lr] * n
        self.patience = patience
        self.cooldown = cooldown
        self.eps = eps
        self.last_epoch = 0
        self.mode = mode
        self.threshold = threshold
        self.threshold_mode = threshold_mode
        self.mode_worse = math.inf if mode == "min" else -math.inf
        self._last_lr = [g["lr"] for g in optimizer.param_groups]
        self.best = self.mode_worse
        self.cooldown_counter = 0
        self.num_bad_epochs = 0

    def _is_better(self, a: float, best: float) -> bool:
        if self.mode == "min" and self.threshold_mode == "rel":
            return a < best * (1.0 - self.threshold)
        if self.mode == "min":
            return a < best - self.threshold
        if self.threshold_mode == "rel":
            return a > best * (self.threshold + 1.0)
        return a > best + self.threshold

    def step(self, metrics: Any) -> None:  # type: ignore[override]
        """Record one epoch's ``metrics`` (a number or 0-d Tensor) and maybe reduce the rate.

        Examples
        --------
        >>> import autodiffx as ad
        >>> opt = ad.optim.SGD([ad.zeros(1, requires_grad=True)], lr=1.0)
        >>> sched = ad.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=0, factor=0.5)
        >>> sched.step(1.0); sched.step(2.0)
        >>> opt.param_groups[0]["lr"]
        0.5
        """
        current = _scalar(metrics)
        self.last_epoch += 1
        if self._is_better(current, self.best):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            self._reduce_lr()
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = [g["lr"] for g in self.optimizer.param_groups]

    def _reduce_lr(self) -> None:
        groups = self.optimizer.param_groups
        if len(groups) != len(self.min_lrs):
            if self.default_min_lr is None:
                raise RuntimeError(
                    f"the optimizer has {len(groups)} param groups but ReduceLROnPlateau was "
                    f"built with {len(self.min_lrs)} min_lrs"
                )
            self.min_lrs = [self.default_min_lr] * len(groups)
        for i, g in enumerate(groups):
            old_lr = float(g["lr"])
            new_lr = max(old_lr * self.factor, self.min_lrs[i])
            if old_lr - new_lr > self.eps:
                g["lr"] = new_lr
