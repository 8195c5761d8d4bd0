"""``ad.compile`` (issue 14): W1 and W4 compiled, beside eager autodiffx and the NumPy floors.

Targets: W1 compiled forward + backward ≤ 1.3× the hand-written NumPy chain, W4 n=10
compiled gradient ≤ 5 µs, W2's training step compiled ≤ 1.0× the hand-written step.
``time_record`` is the compile time (recording plus code generation) of a fresh
``ad.compile``. ``ratios.py --only COMPILE`` prints the ratios.
"""

from __future__ import annotations

from typing import Any, ClassVar

from .common import (
    W2_DTYPES,
    W4_SIZES,
    w1_compiled,
    w1_input,
    w1_numpy_forward_backward,
    w1_value_and_grad,
    w2_autodiffx_step,
    w2_compiled,
    w2_input,
    w2_model,
    w2_numpy_params,
    w2_numpy_step,
    w4_compiled,
    w4_input,
    w4_loss,
    w4_numpy_gradient,
)


class W1Compiled:
    """W1's value and gradient: compiled, eager ``value_and_grad``, hand-written NumPy."""

    def setup(self) -> None:
        self.x = w1_input()
        self.compiled = w1_compiled()
        self.compiled(self.x)  # records

    def time_compiled_forward_backward(self) -> None:
        self.compiled(self.x)

    def time_eager_forward_backward(self) -> None:
        w1_value_and_grad(self.x)

    def time_numpy_forward_backward(self) -> None:
        w1_numpy_forward_backward(self.x)

    def time_record(self) -> None:
        w1_compiled()(self.x)


class W4Compiled:
    """W4's gradient of ``sum(tanh(A @ x))``: compiled, eager ``ad.grad``, hand-written."""

    params: ClassVar[list[list[Any]]] = [list(W4_SIZES)]
    param_names: ClassVar[list[str]] = ["n"]

    def setup(self, n: int) -> None:
        self.a, self.x = w4_input(n)
        self.compiled = w4_compiled()
        self.compiled(self.x, self.a)  # records

    def time_compiled_gradient(self, n: int) -> None:
        self.compiled(self.x, self.a)

    def time_eager_gradient(self, n: int) -> None:
        import autodiffx as ad

        ad.grad(w4_loss)(self.x, self.a)

    def time_numpy_gradient(self, n: int) -> None:
        w4_numpy_gradient(self.a, self.x)


class W2Compiled:
    """W2's training step (SGD, cross-entropy): compiled, eager, hand-written NumPy."""

    params: ClassVar[list[list[Any]]] = [list(W2_DTYPES)]
    param_names: ClassVar[list[str]] = ["dtype"]

    def setup(self, dtype: str) -> None:
        self.x, self.y = w2_input(dtype)
        self.model, self.opt = w2_model(dtype)
        self.compiled = w2_compiled(*w2_model(dtype))
        self.compiled(self.x, self.y)  # records
        self.params = w2_numpy_params(self.model)

    def time_compiled_step(self, dtype: str) -> None:
        self.compiled(self.x, self.y)

    def time_eager_step(self, dtype: str) -> None:
        w2_autodiffx_step(self.model, self.opt, self.x, self.y)

    def time_numpy_step(self, dtype: str) -> None:
        w2_numpy_step(self.params, self.x, self.y)
