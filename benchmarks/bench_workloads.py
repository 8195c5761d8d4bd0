"""The design doc's workloads W1, W3, W4, each beside its hand-written NumPy floor.

W2, W5 and W6 (MLP step, Hessian-vector product, memory of an MLP step) arrive with ``nn`` and
the function transforms. ``ratios.py`` times the same functions outside asv and prints ratios.
"""

from __future__ import annotations

from typing import Any, ClassVar

import autodiffx as ad

from .common import (
    W4_SIZES,
    w1_autodiffx_forward_backward,
    w1_chain,
    w1_input,
    w1_numpy_forward,
    w1_numpy_forward_backward,
    w3_autodiffx_gradient,
    w3_input,
    w3_numpy_gradient,
    w4_autodiffx_gradient,
    w4_input,
    w4_numpy_central_differences,
    w4_numpy_gradient,
)


class W1PerOpOverhead:
    """100 cheap elementwise ops on shape (10,) then sum; divide by 101 for time per op."""

    def setup(self) -> None:
        self.x_np = w1_input()
        self.x = ad.tensor(self.x_np, requires_grad=True)
        self.x_const = ad.tensor(self.x_np)

    def time_forward_recording(self) -> None:
        w1_chain(self.x)

    def time_forward_backward(self) -> None:
        w1_autodiffx_forward_backward(self.x)

    def time_forward_no_grad_input(self) -> None:
        w1_chain(self.x_const)

    def time_numpy_forward(self) -> None:
        w1_numpy_forward(self.x_np)

    def time_numpy_forward_backward(self) -> None:
        w1_numpy_forward_backward(self.x_np)


class W3LargeElementwise:
    """Gradient of ``sum(sin(x)*exp(-x**2) + x**3)`` for x of shape (1e6,), float64."""

    def setup(self) -> None:
        self.x_np = w3_input()
        self.x = ad.tensor(self.x_np, requires_grad=True)

    def time_gradient(self) -> None:
        w3_autodiffx_gradient(self.x)

    def time_numpy_gradient(self) -> None:
        w3_numpy_gradient(self.x_np)

    def peakmem_gradient(self) -> None:
        w3_autodiffx_gradient(self.x)

    def peakmem_numpy_gradient(self) -> None:
        w3_numpy_gradient(self.x_np)


class W4GradientVsFiniteDifferences:
    """Gradient of ``sum(tanh(A @ x))``: reverse mode, hand-written, central differences."""

    params: ClassVar[list[list[Any]]] = [list(W4_SIZES)]
    param_names: ClassVar[list[str]] = ["n"]
    timeout = 300.0

    def setup(self, n: int) -> None:
        self.a_np, self.x_np = w4_input(n)
        self.a = ad.tensor(self.a_np)
        self.x = ad.tensor(self.x_np, requires_grad=True)

    def time_gradient(self, n: int) -> None:
        w4_autodiffx_gradient(self.a, self.x)

    def time_numpy_gradient(self, n: int) -> None:
        w4_numpy_gradient(self.a_np, self.x_np)

    def time_numpy_central_differences(self, n: int) -> None:
        w4_numpy_central_differences(self.a_np, self.x_np)
