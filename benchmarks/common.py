"""Sizes, a seeded rng, and the workloads W1-W4 and W6 with their hand-written NumPy floors.

The workload functions live here (not in ``bench_workloads.py``) so that the asv suite and the
standalone ``ratios.py`` time exactly the same code: eager, compiled with ``ad.compile``
(issue 14, with its nested-derivative case), and PyTorch's where it is installed.
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable
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


# ----- ad.compile (issue 14): W1 and W4 recorded once, replayed as generated NumPy ----------
def w1_value_and_grad(x: Any) -> Any:
    """W1's value and gradient by ``ad.value_and_grad`` (eager), on an array."""
    return ad.value_and_grad(w1_chain)(x)


def w1_compiled() -> Callable[[Any], Any]:
    """W1's value and gradient compiled: ``ad.compile(ad.value_and_grad(w1_chain))``."""
    return ad.compile(ad.value_and_grad(w1_chain))


def w1_fused() -> Callable[[Any], Any] | None:
    """W1 compiled with ``fuse="numexpr"`` (numexpr at one thread), None without numexpr."""
    try:
        import numexpr
    except ImportError:
        return None
    numexpr.set_num_threads(1)
    return ad.compile(ad.value_and_grad(w1_chain), fuse="numexpr")


def w4_loss(x: Any, a: Any) -> Any:
    """``sum(tanh(A @ x))`` with ``x`` first (the argument ``ad.grad`` differentiates)."""
    return ad.sum(ad.tanh(a @ x))


def w4_compiled() -> Callable[[Any, Any], Any]:
    """W4's gradient compiled: ``ad.compile(ad.grad(w4_loss))``, called as ``(x, A)``."""
    return ad.compile(ad.grad(w4_loss))


def w3_loss(x: Any) -> Any:
    """W3's ``sum(sin(x)*exp(-x**2) + x**3)`` as a function (for ``ad.grad``, ``ad.compile``)."""
    return ad.sum(ad.sin(x) * ad.exp(-(x**2)) + x**3)


def w3_compiled() -> Callable[[Any], Any]:
    """W3's value and gradient compiled, ``ad.compile(ad.value_and_grad(w3_loss))``: what the
    floor :func:`w3_numpy_gradient` computes."""
    return ad.compile(ad.value_and_grad(w3_loss))


# ----- the nested derivative (issue 14): ad.grad of a function that calls ad.grad inside ----
NESTED_SIZE = 10
NESTED_LR = 0.1


def nested_input() -> np.ndarray:
    """The nested case's 10-element input."""
    return np.linspace(-1.0, 1.0, NESTED_SIZE)


def nested_inner(x: Any) -> Any:
    """The inner objective ``sum(tanh(x) * x)``."""
    return ad.sum(ad.tanh(x) * x)


def nested_outer(x: Any) -> Any:
    """One inner gradient step, then the objective there (nested optimisation): a function
    that calls ``ad.grad`` inside. Its eager time is the denominator of the target."""
    return nested_inner(x - NESTED_LR * ad.grad(nested_inner)(x))


def nested_compiled() -> Callable[[Any], Any]:
    """The nested case compiled: ``ad.compile(ad.grad(nested_outer))`` (second order)."""
    return ad.compile(ad.grad(nested_outer))


def nested_numpy_gradient(x: np.ndarray) -> np.ndarray:
    """The nested case's gradient by hand (a check): y = x - lr g(x), df/dx = (I - lr H) g(y)
    with g = tanh + x sech², H = diag(2 sech² (1 - x tanh))."""
    t = np.tanh(x)
    s = 1.0 - t * t
    y = x - NESTED_LR * (t + x * s)
    ty = np.tanh(y)
    gy = ty + y * (1.0 - ty * ty)
    return (1.0 - NESTED_LR * 2.0 * s * (1.0 - x * t)) * gy


# ----- W2 MLP training step (and W6, its memory) ----------------------------------------------
#: 784-256-256-10, tanh hidden layers, softmax cross-entropy on integer labels, batch 128.
W2_SIZES = (784, 256, 256, 10)
W2_BATCH = 128
W2_LR = 0.01
W2_DTYPES = ("float32", "float64")


def w2_input(dtype: Any = np.float64) -> tuple[np.ndarray, np.ndarray]:
    """A batch ``x`` (128, 784) in ``dtype`` and integer labels ``y`` (128,) in [0, 10)."""
    r = rng(2)
    x = r.standard_normal((W2_BATCH, W2_SIZES[0])).astype(dtype)
    return x, r.integers(0, W2_SIZES[-1], size=W2_BATCH)


def w2_model(dtype: Any = np.float64) -> tuple[Any, Any]:
    """The autodiffx model ``Sequential(Linear, Tanh, Linear, Tanh, Linear)`` and its SGD."""
    a, b, c, d = W2_SIZES
    nn = ad.nn
    model = nn.Sequential(
        nn.Linear(a, b, rng=20, dtype=dtype),
        nn.Tanh(),
        nn.Linear(b, c, rng=21, dtype=dtype),
        nn.Tanh(),
        nn.Linear(c, d, rng=22, dtype=dtype),
    )
    return model, ad.optim.SGD(model.parameters(), lr=W2_LR)


def w2_numpy_params(model: Any) -> list[np.ndarray]:
    """Copies of the model's parameters ``[w1, b1, w2, b2, w3, b3]`` for the NumPy floor."""
    return [p.data.copy() for p in model.parameters()]


def w2_autodiffx_step(model: Any, opt: Any, x: Any, y: Any) -> Any:
    """One SGD step: ``zero_grad``, forward, ``cross_entropy``, ``backward``, ``step``."""
    opt.zero_grad(set_to_none=True)
    loss = ad.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    return loss


def w2_compiled(model: Any, opt: Any) -> Callable[[Any, Any], Any]:
    """W2's step compiled: ``ad.compile`` of :func:`w2_autodiffx_step` on ``model``, ``opt``
    (``zero_grad``, ``backward`` and ``opt.step()`` replayed as effects), called ``(x, y)``."""

    def w2_step(x: Any, y: Any) -> Any:
        return w2_autodiffx_step(model, opt, x, y)

    return ad.compile(w2_step)


def w2_numpy_step(params: list[np.ndarray], x: np.ndarray, y: np.ndarray) -> Any:
    """The W2 floor: the same step hand-written (forward, backward, in-place SGD update).

    Returns the loss (computed before the update, as the autodiffx step).
    """
    w1, b1, w2, b2, w3, b3 = params
    n = x.shape[0]
    rows = np.arange(n)
    h1 = np.tanh(x @ w1.T + b1)
    h2 = np.tanh(h1 @ w2.T + b2)
    z = h2 @ w3.T + b3
    s = z - z.max(axis=1, keepdims=True)
    e = np.exp(s)
    se = e.sum(axis=1, keepdims=True)
    loss = -(s[rows, y] - np.log(se[:, 0])).mean()
    # d loss / d z = (softmax(z) - onehot(y)) / n
    dz = e / se
    dz[rows, y] -= 1
    dz *= 1 / n
    dw3 = dz.T @ h2
    db3 = dz.sum(axis=0)
    da2 = (dz @ w3) * (1 - h2 * h2)
    dw2 = da2.T @ h1
    db2 = da2.sum(axis=0)
    da1 = (da2 @ w2) * (1 - h1 * h1)
    dw1 = da1.T @ x
    db1 = da1.sum(axis=0)
    for p, g in zip(params, (dw1, db1, dw2, db2, dw3, db3), strict=True):
        p -= W2_LR * g
    return loss


def w2_record(dtype: Any) -> Callable[[], Any]:
    """A call that compiles W2's step from scratch (a new ``ad.compile`` and its first call:
    recording, which runs the step once, and code generation): issue 14's compile time."""
    x, y = w2_input(dtype)
    model, opt = w2_model(dtype)

    def record() -> Any:
        return w2_compiled(model, opt)(x, y)

    return record


# ----- PyTorch CPU eager, beside the compiled workloads (None when torch is not installed) ---
def torch_cases(threads: int = 1) -> dict[str, Callable[[], Any]] | None:
    """PyTorch's W1 value and gradient, W3 gradient and W4 n=10 gradient, as calls returning
    NumPy arrays (``threads`` intra-op threads); None without torch."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    x1 = torch.tensor(w1_input(), requires_grad=True)
    x3 = torch.tensor(w3_input(), requires_grad=True)
    a4, x4 = (torch.tensor(v) for v in w4_input(10))
    x4.requires_grad_(True)

    def w1() -> Any:
        x = x1
        for _ in range(W1_ROUNDS):
            x = torch.exp(torch.tanh(x * W1_C + W1_C))
        y = x.sum()
        return y.detach().numpy(), torch.autograd.grad(y, x1)[0].numpy()

    def w3() -> Any:
        y = (torch.sin(x3) * torch.exp(-(x3**2)) + x3**3).sum()
        return torch.autograd.grad(y, x3)[0].numpy()

    def w4() -> Any:
        return torch.autograd.grad(torch.tanh(a4 @ x4).sum(), x4)[0].numpy()

    return {"w1": w1, "w3": w3, "w4": w4}


# ----- W6 memory of one W2 float64 step ----------------------------------------------------
MIB = 1 << 20


def _traced(fn: Callable[[Callable[[], int]], dict[str, int]]) -> dict[str, int]:
    """Run ``fn(now)`` under tracemalloc (which sees NumPy's buffers), ``now()`` being the
    bytes traced since the start; adds ``peak``, the most bytes traced at once."""
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        out = fn(lambda: tracemalloc.get_traced_memory()[0] - base)
        out["peak"] = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    return out


def peak_bytes(fn: Callable[[], Any]) -> int:
    """The most bytes ``fn()`` holds at once above the start (tracemalloc), after a warm call."""
    fn()

    def run(now: Callable[[], int]) -> dict[str, int]:
        fn()
        return {}

    return _traced(run)["peak"]


def w6_autodiffx_memory(model: Any, opt: Any, x: Any, y: Any) -> dict[str, int]:
    """Bytes of one autodiffx W2 step, from a state without gradients.

    ``peak``: the most held at once (above the start); ``graph``: held by the recorded
    graph after the forward; ``after_backward``: held after ``backward()`` (the
    gradients, the loss, nothing of the graph); ``grads``: the gradients' buffers;
    ``held``: held after the update (the gradients).
    """
    opt.zero_grad(set_to_none=True)

    def step(now: Callable[[], int]) -> dict[str, int]:
        loss = ad.nn.functional.cross_entropy(model(x), y)
        graph = now()
        loss.backward()
        after_backward = now()
        opt.step()
        del loss
        return {"graph": graph, "after_backward": after_backward, "held": now()}

    out = _traced(step)
    out["grads"] = sum(p.grad.data.nbytes for p in model.parameters())
    return out


def w6_numpy_memory(params: list[np.ndarray], x: np.ndarray, y: np.ndarray) -> dict[str, int]:
    """``peak`` and ``held`` bytes of one hand-written W2 step (the W6 floor)."""

    def step(now: Callable[[], int]) -> dict[str, int]:
        w2_numpy_step(params, x, y)
        return {"held": now()}

    return _traced(step)
