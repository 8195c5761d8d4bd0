"""Independent central differences for the tests (never ``autodiffx.fd``, which they check)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


def _outputs(y: Any) -> list[np.ndarray]:
    ys = y if isinstance(y, tuple | list) else (y,)
    # Differences are taken in double precision whatever the output dtype.
    return [np.asarray(o, dtype=np.result_type(np.asarray(o).dtype, np.float64)) for o in ys]


def directional(
    f: Callable[..., Any],
    xs: Sequence[np.ndarray],
    vs: Sequence[np.ndarray],
    *,
    rel_step: float = 1e-3,
    richardson: bool = True,
) -> list[np.ndarray]:
    """J v: the derivative of ``f(*xs)`` along ``vs``, one array per output of ``f``.

    Central differences ``(f(x + h v) - f(x - h v)) / 2h`` with the largest perturbation
    ``|h v|`` equal to ``rel_step * max(1, |x|)``; with ``richardson`` the steps ``h`` and
    ``h/2`` are combined as ``(4 D(h/2) - D(h)) / 3``, which cancels the h**2 error term
    (error O(h**4) ~ 1e-12 against round-off ~ 1e-13 / h).
    """
    xs = [np.asarray(x) for x in xs]
    vs = [np.asarray(v) for v in vs]
    scale = max([1.0] + [float(np.max(np.abs(x), initial=0.0)) for x in xs])
    vmax = max([0.0] + [float(np.max(np.abs(v), initial=0.0)) for v in vs])
    if vmax == 0.0:
        return [np.zeros_like(o) for o in _outputs(f(*xs))]
    h = rel_step * scale / vmax

    def central(step: float) -> list[np.ndarray]:
        plus = _outputs(f(*[x + step * v for x, v in zip(xs, vs, strict=True)]))
        minus = _outputs(f(*[x - step * v for x, v in zip(xs, vs, strict=True)]))
        return [(p - m) / (2 * step) for p, m in zip(plus, minus, strict=True)]

    coarse = central(h)
    if not richardson:
        return coarse
    fine = central(h / 2)
    return [(4 * b - a) / 3 for a, b in zip(coarse, fine, strict=True)]
