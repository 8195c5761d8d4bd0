"""Learning-rate schedulers with PyTorch's sequences.

``StepLR``, ``MultiStepLR``, ``ExponentialLR``, ``LinearLR``, ``PolynomialLR``,
``CosineAnnealingLR``, ``CosineAnnealingWarmRestarts``, ``OneCycleLR``, ``LambdaLR``,
``SequentialLR`` and ``ReduceLROnPlateau``.
Call ``scheduler.step()`` once per epoch after ``optimizer.step()``. The schedulers write
``group["lr"]`` of their optimizer's parameter groups and keep ``group["initial_lr"]``.
The recursive ("chainable") formulas are PyTorch's, so the sequences agree with it to
rounding.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable
from typing import Any

from .._mode import COMPILE, STATE
from .optimizer import Optimizer, _scalar

__all__ = [
    "CosineAnnealingLR",
    "CosineAnnealingWarmRestarts",
    "ExponentialLR",
    "LRScheduler",
    "LambdaLR",
    "LinearLR",
    "MultiStepLR",
    "OneCycleLR",
    "PolynomialLR",
    "ReduceLROnPlateau",
    "SequentialLR",
    "StepLR",
]


def _stepped_example(call: str, steps: int, rates: str, digits: int | None = 6) -> Any:
    """A class decorator: the scheduler's docstring gets the example that builds it with
    ``call`` on an optimizer of rate 1, steps it ``steps`` times and lists the rates seen."""
    rate = "sched.get_last_lr()[0]"
    rate = rate if digits is None else f"round({rate}, {digits})"
    example = f"""

    Examples
    --------
    >>> import autodiffx as ad
    >>> opt = ad.optim.SGD([ad.zeros(1, requires_grad=True)], lr=1.0)
    >>> sched = ad.optim.lr_scheduler.{call}
    >>> lrs = []
    >>> for _ in range({steps}):
    ...     lrs.append({rate})
    ...     sched.step()
    >>> lrs
    {rates}
    """

    def decorate(cls: type) -> type:
        cls.__doc__ = (cls.__doc__ or "").rstrip() + example
        return cls

    return decorate


def _compiled(sched: Any, step: Callable[[], Any], *args: Any) -> bool:
    """Under ``ad.compile``: a ``step()`` without arguments is recorded as an effect (the
    replay calls it again), one with arguments is refused (they would be constants)."""
    name = f"{type(sched).__name__}.step"
    if any(a is not None for a in args):
        STATE.compiler.write(None, f"{name}(...) with an argument (a scheduler step)")
    STATE.compiler.effect(step, [], f"{name}()")
    return True


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
        self._initial_step()

    def _initial_step(self) -> None:
        """Reset the step count and take the initial step (also used by ``SequentialLR``)."""
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
        if STATE.mode & COMPILE and _compiled(self, self.step):
            return
        self._step_count += 1
        self._update_lr()

    def _update_lr(self, epoch: int | None = None) -> None:
        """Next epoch by ``get_lr``, or jump to ``epoch`` by the closed form if there is one."""
        if epoch is None:
            self.last_epoch += 1
            values = self.get_lr()
        else:
            self.last_epoch = epoch
            closed = getattr(self, "_get_closed_form_lr", None)
            values = closed() if closed is not None else self.get_lr()
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

    def _get_closed_form_lr(self) -> list[float]:
        return [b * self.gamma ** (self.last_epoch // self.step_size) for b in self.base_lrs]


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

    def _get_closed_form_lr(self) -> list[float]:
        return [b * self.gamma**self.last_epoch for b in self.base_lrs]


@_stepped_example(
    "CosineAnnealingLR(opt, T_max=4)",
    5,
    "[1.0, 0.853553, 0.5, 0.146447, 0.0]",
)
class CosineAnnealingLR(LRScheduler):
    r"""Cosine annealing from the base rate down to ``eta_min`` over ``T_max`` epochs.

    ``lr_t = eta_min + (base - eta_min)(1 + cos(pi t / T_max)) / 2`` computed by PyTorch's
    recursive form (which also continues past ``T_max``, rising again).
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

    def _get_closed_form_lr(self) -> list[float]:
        t, tm, emin = self.last_epoch, self.T_max, self.eta_min
        return [emin + (b - emin) * (1 + math.cos(math.pi * t / tm)) / 2 for b in self.base_lrs]


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
        if STATE.mode & COMPILE:
            _compiled(self, self.step, metrics)
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


@_stepped_example(
    "MultiStepLR(opt, milestones=[2, 4], gamma=0.5)",
    6,
    "[1.0, 1.0, 0.5, 0.5, 0.25, 0.25]",
    digits=None,
)
class MultiStepLR(LRScheduler):
    """Multiply the learning rate by ``gamma`` at each milestone (repeats count twice)."""

    def __init__(
        self, optimizer: Optimizer, milestones: Any, gamma: float = 0.1, last_epoch: int = -1
    ) -> None:
        self.milestones = sorted(int(m) for m in milestones)
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        """``lr * gamma ** k`` at a milestone listed k times, else ``lr``."""
        k = self.milestones.count(self.last_epoch)
        if k == 0:
            return [g["lr"] for g in self.optimizer.param_groups]
        return [g["lr"] * self.gamma**k for g in self.optimizer.param_groups]

    def _get_closed_form_lr(self) -> list[float]:
        k = bisect.bisect_right(self.milestones, self.last_epoch)
        return [b * self.gamma**k for b in self.base_lrs]


@_stepped_example(
    "LinearLR(opt, start_factor=0.25, total_iters=3)", 5, "[0.25, 0.5, 0.75, 1.0, 1.0]", digits=12
)
class LinearLR(LRScheduler):
    """Scale the learning rate linearly from ``start_factor`` to ``end_factor`` over
    ``total_iters`` epochs (PyTorch's recursive form), then keep it.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        start_factor: float = 1.0 / 3,
        end_factor: float = 1.0,
        total_iters: int = 5,
        last_epoch: int = -1,
    ) -> None:
        if start_factor > 1.0 or start_factor <= 0:
            raise ValueError(
                "Starting multiplicative factor expected to be greater than 0 and less or "
                "equal to 1."
            )
        if end_factor > 1.0 or end_factor < 0:
            raise ValueError("Ending multiplicative factor expected to be between 0 and 1.")
        self.start_factor, self.end_factor = start_factor, end_factor
        self.total_iters = total_iters
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        """The next rate by PyTorch's recursion."""
        groups = self.optimizer.param_groups
        if self.last_epoch == 0:
            return [g["lr"] * self.start_factor for g in groups]
        if self._is_initial or self.last_epoch > self.total_iters:
            return [g["lr"] for g in groups]
        d = self.end_factor - self.start_factor
        f = 1.0 + d / (self.total_iters * self.start_factor + (self.last_epoch - 1) * d)
        return [g["lr"] * f for g in groups]

    def _get_closed_form_lr(self) -> list[float]:
        t = min(self.total_iters, self.last_epoch)
        d = self.end_factor - self.start_factor
        return [b * (self.start_factor + d * t / self.total_iters) for b in self.base_lrs]


@_stepped_example(
    "PolynomialLR(opt, total_iters=4, power=2.0)",
    6,
    "[1.0, 0.5625, 0.25, 0.0625, 0.0, 0.0]",
    digits=12,
)
class PolynomialLR(LRScheduler):
    """Decay the learning rate as ``(1 - t / total_iters) ** power`` (recursive form), then 0."""

    def __init__(
        self, optimizer: Optimizer, total_iters: int = 5, power: float = 1.0, last_epoch: int = -1
    ) -> None:
        self.total_iters, self.power = total_iters, power
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        """The next rate by PyTorch's recursion."""
        groups = self.optimizer.param_groups
        if self._is_initial or self.last_epoch > self.total_iters:
            return [g["lr"] for g in groups]
        t, n = self.last_epoch, self.total_iters
        f = ((1.0 - t / n) / (1.0 - (t - 1) / n)) ** self.power
        return [g["lr"] * f for g in groups]

    def _get_closed_form_lr(self) -> list[float]:
        t = min(self.total_iters, self.last_epoch)
        return [b * (1.0 - t / self.total_iters) ** self.power for b in self.base_lrs]


@_stepped_example(
    "CosineAnnealingWarmRestarts(opt, T_0=2, T_mult=2)",
    7,
    "[1.0, 0.5, 1.0, 0.853553, 0.5, 0.146447, 1.0]",
)
class CosineAnnealingWarmRestarts(LRScheduler):
    """Cosine annealing restarted every ``T_i`` epochs, ``T_i`` growing by ``T_mult``.

    ``lr = eta_min + (base - eta_min)(1 + cos(pi T_cur / T_i)) / 2``. ``step(epoch)`` also
    takes a (fractional) epoch, as PyTorch's ``scheduler.step(epoch + i / iters)``.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        T_0: int,
        T_mult: int = 1,
        eta_min: float = 0.0,
        last_epoch: int = -1,
    ) -> None:
        if not isinstance(T_0, int) or T_0 <= 0:
            raise ValueError(f"Expected positive integer T_0, but got {T_0}")
        if not isinstance(T_mult, int) or T_mult < 1:
            raise ValueError(f"Expected integer T_mult >= 1, but got {T_mult}")
        if not isinstance(eta_min, float | int):
            raise ValueError(f"Expected float or int eta_min, but got {eta_min!r}")
        self.T_0 = self.T_i = T_0
        self.T_mult = T_mult
        self.eta_min = eta_min
        self.T_cur = last_epoch
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        """The rate at ``T_cur`` within the current period ``T_i``."""
        e = self.eta_min
        c = (1 + math.cos(math.pi * self.T_cur / self.T_i)) / 2
        return [e + (b - e) * c for b in self.base_lrs]

    def _epoch_position(self, epoch: float) -> None:
        """Set ``T_cur`` and ``T_i`` for an explicit ``epoch`` (PyTorch's formulas)."""
        if epoch < 0:
            raise ValueError(f"Expected non-negative epoch, but got {epoch}")
        if epoch < self.T_0:
            self.T_i, self.T_cur = self.T_0, epoch
        elif self.T_mult == 1:
            self.T_cur = epoch % self.T_0
        else:
            n = int(math.log(epoch / self.T_0 * (self.T_mult - 1) + 1, self.T_mult))
            self.T_cur = epoch - self.T_0 * (self.T_mult**n - 1) / (self.T_mult - 1)
            self.T_i = self.T_0 * self.T_mult**n

    def step(self, epoch: float | None = None) -> None:
        """Advance one epoch, or go to ``epoch`` (may be fractional)."""
        if STATE.mode & COMPILE and _compiled(self, self.step, epoch):
            return
        if epoch is None and self.last_epoch < 0:
            epoch = 0
        if epoch is None:
            epoch = self.last_epoch + 1
            self.T_cur = self.T_cur + 1
            if self.T_cur >= self.T_i:
                self.T_cur = self.T_cur % self.T_i
                self.T_i = self.T_i * self.T_mult
        else:
            self._epoch_position(epoch)
        self.last_epoch = math.floor(epoch)
        for group, lr in zip(self.optimizer.param_groups, self.get_lr(), strict=True):
            group["lr"] = lr
        self._last_lr = [g["lr"] for g in self.optimizer.param_groups]


def _per_group(name: str, optimizer: Optimizer, value: Any) -> list[Any]:
    n = len(optimizer.param_groups)
    if isinstance(value, list | tuple):
        if len(value) != n:
            raise ValueError(
                f"{name} must have the same length as optimizer.param_groups. "
                f"{name} has {len(value)} values, param_groups has {n}."
            )
        return list(value)
    return [value] * n


class OneCycleLR(LRScheduler):
    """The 1cycle policy: warm up to ``max_lr``, anneal far below the start (PyTorch's).

    The rate goes from ``max_lr / div_factor`` up to ``max_lr`` over the first ``pct_start``
    of ``total_steps`` (or ``epochs * steps_per_epoch``), then down to
    ``initial_lr / final_div_factor`` (``three_phase``: back to the start first); the
    momentum (or Adam's beta1) cycles inversely between ``max_momentum`` and
    ``base_momentum``. Step it once per batch; stepping past ``total_steps`` raises.

    Examples
    --------
    >>> import autodiffx as ad
    >>> opt = ad.optim.SGD([ad.zeros(1, requires_grad=True)], lr=0.1, momentum=0.9)
    >>> sched = ad.optim.lr_scheduler.OneCycleLR(opt, max_lr=1.0, total_steps=5)
    >>> lrs = []
    >>> for _ in range(5):
    ...     lrs.append(round(sched.get_last_lr()[0], 6))
    ...     sched.step()
    >>> lrs, opt.param_groups[0]["momentum"]
    ([0.04, 0.950485, 0.611262, 0.188258, 4e-06], 0.9311744900929366)
    """

    def __init__(
        self,
        optimizer: Optimizer,
        max_lr: Any,
        total_steps: int | None = None,
        epochs: int | None = None,
        steps_per_epoch: int | None = None,
        pct_start: float = 0.3,
        anneal_strategy: str = "cos",
        cycle_momentum: bool = True,
        base_momentum: Any = 0.85,
        max_momentum: Any = 0.95,
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
        three_phase: bool = False,
        last_epoch: int = -1,
    ) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(optimizer).__name__} is not an Optimizer")
        self.optimizer = optimizer
        self.total_steps = _total_steps(total_steps, epochs, steps_per_epoch)
        self._schedule_phases = _one_cycle_phases(pct_start, self.total_steps, three_phase)
        if not isinstance(pct_start, float) or not 0 <= pct_start <= 1:
            raise ValueError(f"Expected float between 0 and 1 pct_start, but got {pct_start}")
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(
                f"anneal_strategy must be one of 'cos' or 'linear', instead got {anneal_strategy}"
            )
        self.anneal_strategy = anneal_strategy
        if last_epoch == -1:
            for m, group in zip(_per_group("max_lr", optimizer, max_lr), optimizer.param_groups):
                group["initial_lr"] = m / div_factor
                group["max_lr"] = m
                group["min_lr"] = group["initial_lr"] / final_div_factor
        self.cycle_momentum = cycle_momentum
        if cycle_momentum:
            self._init_momentum(base_momentum, max_momentum, last_epoch)
        super().__init__(optimizer, last_epoch)

    def _init_momentum(self, base_momentum: Any, max_momentum: Any, last_epoch: int) -> None:
        opt = self.optimizer
        if "momentum" not in opt.defaults and "betas" not in opt.defaults:
            raise ValueError(
                "optimizer must support momentum or beta1 with `cycle_momentum` option enabled"
            )
        self.use_beta1 = "betas" in opt.defaults
        if last_epoch != -1:
            return
        tops = _per_group("max_momentum", opt, max_momentum)
        bases = _per_group("base_momentum", opt, base_momentum)
        for top, base, group in zip(tops, bases, opt.param_groups, strict=True):
            if self.use_beta1:
                group["betas"] = (top, *group["betas"][1:])
            else:
                group["momentum"] = top
            group["max_momentum"], group["base_momentum"] = top, base

    def _anneal(self, start: float, end: float, pct: float) -> float:
        if self.anneal_strategy == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def get_lr(self) -> list[float]:
        """The rate (and momentum, set in the groups) of step ``last_epoch``."""
        step = self.last_epoch
        if step > self.total_steps:
            raise ValueError(
                f"Tried to step {step} times. The specified number of total steps is "
                f"{self.total_steps}"
            )
        lrs = []
        for group in self.optimizer.param_groups:
            start = 0.0
            for i, phase in enumerate(self._schedule_phases):
                end = phase["end_step"]
                if step <= end or i == len(self._schedule_phases) - 1:
                    pct = (step - start) / (end - start)
                    lr = self._anneal(group[phase["start_lr"]], group[phase["end_lr"]], pct)
                    if self.cycle_momentum:
                        mom = self._anneal(
                            group[phase["start_momentum"]], group[phase["end_momentum"]], pct
                        )
                    break
                start = phase["end_step"]
            lrs.append(lr)
            if self.cycle_momentum:
                if self.use_beta1:
                    group["betas"] = (mom, *group["betas"][1:])
                else:
                    group["momentum"] = mom
        return lrs


def _total_steps(total_steps: Any, epochs: Any, steps_per_epoch: Any) -> int:
    if total_steps is not None:
        if not isinstance(total_steps, int) or total_steps <= 0:
            raise ValueError(f"Expected positive integer total_steps, but got {total_steps}")
        return total_steps
    if epochs is None or steps_per_epoch is None:
        raise ValueError("You must define either total_steps OR (epochs AND steps_per_epoch)")
    if not isinstance(epochs, int) or epochs <= 0:
        raise ValueError(f"Expected positive integer epochs, but got {epochs}")
    if not isinstance(steps_per_epoch, int) or steps_per_epoch <= 0:
        raise ValueError(f"Expected positive integer steps_per_epoch, but got {steps_per_epoch}")
    return epochs * steps_per_epoch


def _one_cycle_phases(pct: float, total: int, three_phase: bool) -> list[dict[str, Any]]:
    """OneCycleLR's phases: end step and the group keys of the start and end values."""

    def phase(end: float, lr0: str, lr1: str, m0: str, m1: str) -> dict[str, Any]:
        return dict(end_step=end, start_lr=lr0, end_lr=lr1, start_momentum=m0, end_momentum=m1)

    up = phase(float(pct * total) - 1, "initial_lr", "max_lr", "max_momentum", "base_momentum")
    if not three_phase:
        return [up, phase(total - 1, "max_lr", "min_lr", "base_momentum", "max_momentum")]
    return [
        up,
        phase(float(2 * pct * total) - 2, "max_lr", "initial_lr", "base_momentum", "max_momentum"),
        phase(total - 1, "initial_lr", "min_lr", "max_momentum", "max_momentum"),
    ]


class SequentialLR(LRScheduler):
    """Run ``schedulers`` one after another, switching at the epochs in ``milestones``.

    At a milestone the next scheduler starts from epoch 0 (its closed form where it has one),
    as PyTorch's ``SequentialLR`` does.

    Examples
    --------
    >>> import autodiffx as ad
    >>> from autodiffx.optim import lr_scheduler as S
    >>> opt = ad.optim.SGD([ad.zeros(1, requires_grad=True)], lr=1.0)
    >>> warm = S.LinearLR(opt, start_factor=0.5, total_iters=2)
    >>> decay = S.ExponentialLR(opt, gamma=0.5)
    >>> sched = S.SequentialLR(opt, [warm, decay], milestones=[2])
    >>> lrs = []
    >>> for _ in range(5):
    ...     lrs.append(sched.get_last_lr()[0])
    ...     sched.step()
    >>> lrs
    [0.5, 0.75, 1.0, 0.5, 0.25]
    """

    def __init__(
        self,
        optimizer: Optimizer,
        schedulers: list[Any],
        milestones: list[int],
        last_epoch: int = -1,
    ) -> None:
        name = type(self).__name__
        if len(schedulers) < 1:
            raise ValueError(f"{name} expects at least one scheduler, but got no scheduler.")
        for i, s in enumerate(schedulers):
            if isinstance(s, ReduceLROnPlateau):
                raise ValueError(
                    f"{name} does not support `ReduceLROnPlateau` (its step needs the metric), "
                    f"but got one at index {i}"
                )
            if getattr(s, "optimizer", None) is not optimizer:
                raise ValueError(
                    f"{name} expects all schedulers to belong to the same optimizer, but "
                    f"scheduler {type(s).__name__} at index {i} does not"
                )
        if len(milestones) != len(schedulers) - 1:
            raise ValueError(
                "Sequential Schedulers expects number of schedulers provided to be one more "
                f"than the number of milestone points, but got number of schedulers "
                f"{len(schedulers)} and the number of milestones to be equal to {len(milestones)}"
            )
        self._schedulers, self._milestones = list(schedulers), list(milestones)
        self.last_epoch = last_epoch + 1
        self.optimizer = optimizer
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"]
        _undo_initial_steps(self)
        idx = bisect.bisect_right(self._milestones, 0)
        self._schedulers[idx]._initial_step()
        self._last_lr = self._schedulers[idx].get_last_lr()

    def step(self) -> None:
        """Advance the scheduler in charge of the next epoch (restarting it at a milestone)."""
        if STATE.mode & COMPILE and _compiled(self, self.step):
            return
        self.last_epoch += 1
        idx = bisect.bisect_right(self._milestones, self.last_epoch)
        sched = self._schedulers[idx]
        if idx > 0 and self._milestones[idx - 1] == self.last_epoch:
            sched._update_lr(0)
        else:
            sched.step()
        self._last_lr = sched.get_last_lr()

    def state_dict(self) -> dict[str, Any]:
        """The state, with each wrapped scheduler's state under ``_schedulers``."""
        out = {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "_schedulers")}
        out["_schedulers"] = [s.state_dict() for s in self._schedulers]
        return out

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a state from :meth:`state_dict`, the wrapped schedulers' included."""
        state = dict(state_dict)
        inner = state.pop("_schedulers")
        if len(inner) != len(self._schedulers):
            raise ValueError(f"expected {len(self._schedulers)} scheduler states, got {len(inner)}")
        super().load_state_dict(state)
        for s, sd in zip(self._schedulers, inner, strict=True):
            s.load_state_dict(sd)


def _undo_initial_steps(sched: Any) -> None:
    """Step every wrapped scheduler back one epoch (their construction stepped once)."""
    if hasattr(sched, "_schedulers"):
        for s in sched._schedulers:
            _undo_initial_steps(s)
    elif hasattr(sched, "last_epoch"):
        sched.last_epoch -= 1
