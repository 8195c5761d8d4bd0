"""The reverse engine alone: a deep chain, wide fan-in, and the memory a recorded graph holds."""

from __future__ import annotations

import tracemalloc

import numpy as np

import autodiffx as ad

from .common import rng

DEPTH = 10_000
WIDTH = 1_000
MEM_SIZE = 1_000_000
MEM_OPS = 12


def _deep_chain(x: ad.Tensor) -> ad.Tensor:
    for _ in range(DEPTH // 2):
        x = x * 0.999
        x = x + 0.001
    return x.sum()


class DeepChain:
    """10 000 recorded ops on shape (10,); the graph is retained so backward can repeat."""

    timeout = 120.0

    def setup(self) -> None:
        self.x = ad.tensor(rng().standard_normal(10), requires_grad=True)
        self.y = _deep_chain(self.x)

    def time_forward(self) -> None:
        _deep_chain(self.x)

    def time_backward(self) -> None:
        self.x.grad = None
        self.y.backward(retain_graph=True)

    def time_autograd_grad(self) -> None:
        ad.autograd.grad(self.y, self.x, retain_graph=True)

    def time_forward_backward(self) -> None:
        self.x.grad = None
        _deep_chain(self.x).backward()


class WideFanIn:
    """1000 tensors of shape (10,) meeting in one node, and one tensor used 1000 times."""

    def setup(self) -> None:
        r = rng()
        self.leaves = [ad.tensor(r.standard_normal(10), requires_grad=True) for _ in range(WIDTH)]
        self.y_stack = ad.stack(self.leaves).sum()
        self.x = ad.tensor(r.standard_normal(10), requires_grad=True)
        self.cs = list(r.standard_normal(WIDTH))
        self.y_reuse = ad.stack([self.x * c for c in self.cs]).sum()

    def time_stack_backward(self) -> None:
        self.y_stack.backward(retain_graph=True)

    def time_stack_forward_backward(self) -> None:
        ad.stack(self.leaves).sum().backward()

    def time_python_sum_forward_backward(self) -> None:
        sum(self.leaves).sum().backward()

    def time_reuse_backward(self) -> None:
        self.y_reuse.backward(retain_graph=True)

    def time_reuse_forward_backward(self) -> None:
        ad.stack([self.x * c for c in self.cs]).sum().backward()


def _mem_chain(x: ad.Tensor | np.ndarray) -> ad.Tensor | np.ndarray:
    tanh = np.tanh  # dispatches to ad.tanh on Tensors
    for _ in range(MEM_OPS // 2):
        x = x * 0.5
        x = tanh(x)
    return x.sum()


class RetainedGraphMemory:
    """A 12-op chain on 1e6 float64 (8 MB per array): what the graph keeps alive.

    ``peakmem_`` is the process peak (asv's measure, imports included), so compare the three
    side by side; ``track_`` counts the bytes (tracemalloc sees NumPy's buffers) still held.
    """

    unit = "MiB"

    def setup(self) -> None:
        self.x_np = rng().standard_normal(MEM_SIZE)
        self.x = ad.tensor(self.x_np, requires_grad=True)

    def peakmem_retained_graph(self) -> None:
        self.y = _mem_chain(self.x)

    def peakmem_forward_backward(self) -> None:
        self.x.grad = None
        _mem_chain(self.x).backward()

    def peakmem_numpy_forward(self) -> None:
        _mem_chain(self.x_np)

    def track_retained_graph(self) -> float:
        tracemalloc.start()
        y = _mem_chain(self.x)
        held = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        del y
        return held / 2**20

    def track_held_after_backward(self) -> float:
        self.x.grad = None
        tracemalloc.start()
        y = _mem_chain(self.x)
        y.backward()
        held = tracemalloc.get_traced_memory()[0]  # x.grad (8 MB) and the scalar y
        tracemalloc.stop()
        del y
        return held / 2**20
