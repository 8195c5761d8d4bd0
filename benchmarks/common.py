"""Sizes, a seeded rng, and the workloads W1, W3, W4 with their hand-written NumPy floors.

The workload functions live here (not in ``bench_workloads.py``) so that the asv suite and the
standalone ``ratios.py`` time exactly the same code.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import autodiffx as ad

#: Element counts of the per-primitive benchmarks (design doc: 1, 1e3, 1e6).
SIZES = (1, 1_000, 1_000_000)


def rng(seed: int = 0) -> np.random.Generator:
    """A fresh generator, so every benchmark sees the same data."""
    return np.random.default_rng(seed)


# ----- W1 per-op overhead ------------------------------------------------------------------
#: x of shape (10,), 25 rounds of (x*c, x+c, tanh, exp), then sum: 100 chained ops + 1.
W1_SIZE = 10
W1_ROUNDS = 25
W1_OPS = 4 * W1_ROUNDS + 1
W1_C = 0.5


def w1_input() -> np.ndarray:
    """The W1 input vector (values in [-1, 1])."""
    return np.linspace(-1.0, 1.0, W1_SIZE)


def w1_chain(x: Any) -> Any:
    """The W1 chain on a Tensor (the autodiffx side): ``x*c``, ``x+c``, ``tanh``, ``exp``, sum."""
    c = W1_C
    tanh, exp = ad.tanh, ad.exp
    for _ in range(W1_ROUNDS):
        x = x * c
        x = x + c
        x = tanh(x)
        x = exp(x)
    return x.sum()


def w1_numpy_forward(x: np.ndarray) -> Any:
    """The W1 floor, forward only: the same 101 NumPy calls."""
    c = W1_C
    tanh, exp = np.tanh, np.exp
    for _ in range(W1_ROUNDS):
        x = x * c
        x = x + c
        x = tanh(x)
        x = exp(x)
    return x.sum()


def w1_numpy_forward_backward(x: np.ndarray) -> tuple[Any, np.ndarray]:
    """The W1 floor, forward saving what the backward needs, then the hand-written backward."""
    c = W1_C
    tanh, exp = np.tanh, np.exp
    saved = []
    for _ in range(W1_ROUNDS):
        x = x * c
        x = x + c
        t = tanh(x)
        x = exp(t)
        saved.append((t, x))
    y = x.sum()
    g = np.ones_like(x)  # d sum / dx
    for t, e in reversed(saved):
        g = g * e  # exp' = out
        g = g * (1 - t * t)  # tanh' = 1 - out**2
        g = g * c  # x + c: identity; x * c: times c
    return y, g


def w1_autodiffx_forward_backward(x: Any) -> Any:
    """Forward recording, then ``backward()`` into ``x.grad`` (reset each call)."""
    x.grad = None
    w1_chain(x).backward()
    return x.grad


# ----- W3 large elementwise ----------------------------------------------------------------
W3_SIZE = 1_000_000


def w3_input() -> np.ndarray:
    """x of shape (1e6,), float64, standard normal."""
    return rng(3).standard_normal(W3_SIZE)


def w3_autodiffx_gradient(x: Any) -> Any:
    """Gradient of ``sum(sin(x)*exp(-x**2) + x**3)`` by reverse mode (x requires grad)."""
    x.grad = None
    (ad.sin(x) * ad.exp(-(x**2)) + x**3).sum().backward()
    return x.grad


def w3_numpy_gradient(x: np.ndarray) -> tuple[Any, np.ndarray]:
    """The W3 floor: value and hand-simplified gradient ``cos(x)e - 2x sin(x)e + 3x**2``."""
    s = np.sin(x)
    e = np.exp(-(x * x))
    se = s * e
    y = np.sum(se + x * x * x)
    g = np.cos(x) * e - 2.0 * x * se + 3.0 * (x * x)
    return y, g


# ----- W4 AD vs finite differences ---------------------------------------------------------
W4_SIZES = (10, 100, 1000)
W4_STEP = 1e-6


def w4_input(n: int) -> tuple[np.ndarray, np.ndarray]:
    """``A`` (n, n) scaled so that ``A @ x`` is O(1), and ``x`` (n,)."""
    r = rng(4)
    return r.standard_normal((n, n)) / np.sqrt(n), r.standard_normal(n)


def w4_autodiffx_gradient(a: Any, x: Any) -> Any:
    """Gradient of ``sum(tanh(A @ x))`` by reverse mode (only x requires grad)."""
    x.grad = None
    ad.tanh(a @ x).sum().backward()
    return x.grad


def w4_numpy_gradient(a: np.ndarray, x: np.ndarray) -> tuple[Any, np.ndarray]:
    """The W4 floor: value and hand-written gradient ``Aᵀ (1 - tanh(Ax)**2)``."""
    t = np.tanh(a @ x)
    return t.sum(), (1.0 - t * t) @ a


def w4_numpy_central_differences(a: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Central differences with 2n evaluations of ``sum(tanh(A @ x))``, one per perturbation."""
    n = x.shape[0]
    h = W4_STEP
    g = np.empty(n)
    xp = x.copy()
    for i in range(n):
        xi = xp[i]
        xp[i] = xi + h
        fp = np.tanh(a @ xp).sum()
        xp[i] = xi - h
        fm = np.tanh(a @ xp).sum()
        xp[i] = xi
        g[i] = (fp - fm) / (2 * h)
    return g
