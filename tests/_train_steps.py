"""A cross-entropy training step run eagerly on one model and compiled on its twin, compared
bit for bit (loss, parameters, gradients), shared by the compiled-training tests."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

import autodiffx as ad
from autodiffx.nn import functional as F


def ce_step(model: Any, opt: Any, x: Any, y: Any) -> Any:
    """``zero_grad``, cross-entropy of ``model(x)`` and ``y``, ``backward``, ``step``."""
    opt.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    return loss


def assert_compiled_step_is_eagers(
    make: Callable[[], tuple[Any, Any]], batches: Iterable[tuple[Any, Any]]
) -> Any:
    """Run :func:`ce_step` on ``make()``'s model eagerly and compiled on a second ``make()``
    for each batch; every loss, parameter and gradient equal. Returns the compiled step."""
    (m1, o1), (m2, o2) = make(), make()
    cstep = ad.compile(lambda x, y: ce_step(m2, o2, x, y))
    for x, y in batches:
        assert np.array_equal(ce_step(m1, o1, x, y).data, cstep(x, y).data)
        for p, q in zip(m1.parameters(), m2.parameters(), strict=True):
            assert np.array_equal(p.data, q.data) and np.array_equal(p.grad.data, q.grad.data)
    return cstep
