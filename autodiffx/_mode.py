"""Thread-local autodiff state: grad mode, anomaly detection and forward-mode dual levels."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any


class _State(threading.local):
    """Per-thread flags; ``mode`` folds them into one int read once per op on the hot path."""

    def __init__(self) -> None:
        self._grad_enabled = True
        self._anomaly = False
        # Open dual levels, outermost first; `masked` holds levels whose tangent rule is running.
        self.levels: list[int] = []
        self.masked: set[int] = set()
        # Leading batch axes of the tangents of each level, and of the cotangents or tangents
        # that the rule being evaluated now receives (vectorized Jacobians).
        self.level_nb: dict[int, int] = {}
        self.nb = 0
        # A callable(prim, args, params, result) that sees every top-level application
        # (ad.evaluation_trace records the Wengert list with it).
        self.tape: Any = None
        self.mode = 0

    def sync(self) -> None:
        """Recompute ``mode``: bit 1 no grad, 2 dual levels open, 4 anomaly detection, 8 tape."""
        self.mode = (
            (0 if self._grad_enabled else 1)
            | (2 if self.levels else 0)
            | (4 if self._anomaly else 0)
            | (8 if self.tape is not None else 0)
        )

    @property
    def grad_enabled(self) -> bool:
        return self._grad_enabled

    @grad_enabled.setter
    def grad_enabled(self, flag: bool) -> None:
        self._grad_enabled = flag
        self.sync()

    @property
    def anomaly(self) -> bool:
        return self._anomaly

    @anomaly.setter
    def anomaly(self, flag: bool) -> None:
        self._anomaly = flag
        self.sync()


STATE = _State()
_level_counter = [0]


class no_grad(contextlib.ContextDecorator):
    """Disable graph recording in a ``with`` block or a decorated function.

    Examples
    --------
    >>> import autodiffx as ad
    >>> x = ad.tensor([1.0, 2.0], requires_grad=True)
    >>> with ad.no_grad():
    ...     y = x * 2
    >>> y.requires_grad
    False
    """

    def __enter__(self) -> None:
        self._prev = STATE.grad_enabled
        STATE.grad_enabled = False

    def __exit__(self, *exc: object) -> None:
        STATE.grad_enabled = self._prev


class enable_grad(contextlib.ContextDecorator):
    """Re-enable graph recording inside a ``no_grad`` region.

    Examples
    --------
    >>> import autodiffx as ad
    >>> x = ad.tensor(1.0, requires_grad=True)
    >>> with ad.no_grad(), ad.enable_grad():
    ...     (x * 3).requires_grad
    True
    """

    def __enter__(self) -> None:
        self._prev = STATE.grad_enabled
        STATE.grad_enabled = True

    def __exit__(self, *exc: object) -> None:
        STATE.grad_enabled = self._prev


def is_grad_enabled() -> bool:
    """Return whether operations are being recorded for reverse mode in this thread.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.is_grad_enabled()
    True
    """
    return STATE.grad_enabled


class detect_anomaly(contextlib.ContextDecorator):
    """Raise at the first primitive whose forward or backward produces NaN or Inf.

    Inside the block every recorded node remembers where it was created, and the
    error names the primitive and that source line.

    Examples
    --------
    >>> import autodiffx as ad
    >>> x = ad.tensor([0.0], requires_grad=True)
    >>> with ad.detect_anomaly():
    ...     ad.sqrt(x).sum().backward()
    Traceback (most recent call last):
    ...
    FloatingPointError: backward of 'sqrt' produced inf ...
    """

    def __enter__(self) -> None:
        self._prev = STATE.anomaly
        STATE.anomaly = True

    def __exit__(self, *exc: object) -> None:
        STATE.anomaly = self._prev


def batch_ndim() -> int:
    """Leading batch axes of the cotangent or tangents the current rule receives.

    Rules that reshape, transpose or index their cotangent (or apply a linear op to a
    tangent) keep these leading axes untouched; everything else broadcasts over them.
    """
    return STATE.nb


@contextlib.contextmanager
def new_level() -> Iterator[int]:
    """Open a fresh dual level (innermost) for the duration of the block."""
    _level_counter[0] += 1
    level = _level_counter[0]
    STATE.levels.append(level)
    STATE.sync()
    try:
        yield level
    finally:
        STATE.levels.remove(level)
        STATE.level_nb.pop(level, None)
        STATE.sync()
