"""``ad.compile`` (issue 14): W1-W4 compiled, beside eager autodiffx, the floors and PyTorch.

Targets: W1 compiled forward + backward ≤ 1.3× the hand-written NumPy chain (and ≥ 3× faster
than PyTorch eager), W4 n=10 compiled gradient ≤ 5 µs, W2's training step compiled ≤ 1.0×
the hand-written step (its peak memory ≤ the step's, its compile time ≤ 50 ms), W3 compiled
≤ 1.0× the hand-written gradient, and the nested case (``ad.grad`` of a function calling
``ad.grad``, 10 elements) compiled ≤ 10× that function's eager forward. ``time_record`` is a
compile time (recording plus code generation) of a fresh ``ad.compile``; ``track_*`` are
tracemalloc peaks in MiB and ratios timed in pairs. ``ratios.py --only COMPILE`` prints all
of them in one run.
"""

from __future__ import annotations

from typing import Any, ClassVar

from .bench_func import paired_ratio
from .common import (
    MIB,
    W2_DTYPES,
    W4_SIZES,
    nested_compiled,
    nested_input,
    nested_outer,
    peak_bytes,
    torch_cases,
    w1_compiled,
    w1_fused,
    w1_input,
    w1_numpy_forward_backward,
    w1_value_and_grad,
    w2_autodiffx_step,
    w2_compiled,
    w2_input,
    w2_model,
    w2_numpy_params,
    w2_numpy_step,
    w2_record,
    w3_compiled,
    w3_input,
    w3_loss,
    w3_numpy_gradient,
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


class W1CompiledFused:
    """W1's value and gradient compiled with ``fuse="numexpr"`` (its backward pass's 125
    products and differences as four numexpr calls), beside the hand-written chain; skipped
    without numexpr."""

    def setup(self) -> None:
        self.x = w1_input()
        compiled = w1_fused()
        if compiled is None:
            raise NotImplementedError("numexpr is not installed")
        self.compiled = compiled
        self.compiled(self.x)  # records

    def time_compiled_fused_forward_backward(self) -> None:
        self.compiled(self.x)

    def track_fused_over_numpy(self) -> float:
        """Fused / hand-written, timed in pairs (median of 30, 200 calls each)."""
        return paired_ratio(
            lambda: self.compiled(self.x), lambda: w1_numpy_forward_backward(self.x), 30, 200
        )

    track_fused_over_numpy.unit = "ratio"  # type: ignore[attr-defined]


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


class W2CompileTime:
    """Issue 14's compile time of W2's step: a fresh ``ad.compile`` and its first call
    (recording, which runs the step once eagerly, and code generation); target ≤ 50 ms."""

    params: ClassVar[list[list[Any]]] = [list(W2_DTYPES)]
    param_names: ClassVar[list[str]] = ["dtype"]

    def setup(self, dtype: str) -> None:
        self.record = w2_record(dtype)
        self.record()  # (the process's first recording warms lazy imports)

    def time_record(self, dtype: str) -> None:
        self.record()


class W2CompiledMemory:
    """Peak bytes (tracemalloc) of one W2 step compiled and hand-written, in MiB; target:
    compiled ≤ hand-written."""

    params: ClassVar[list[list[Any]]] = [list(W2_DTYPES)]
    param_names: ClassVar[list[str]] = ["dtype"]
    unit = "MiB"

    def setup(self, dtype: str) -> None:
        self.x, self.y = w2_input(dtype)
        model, opt = w2_model(dtype)
        self.compiled = w2_compiled(model, opt)
        self.compiled(self.x, self.y)  # records
        self.params = w2_numpy_params(model)

    def track_peak_compiled_step(self, dtype: str) -> float:
        return peak_bytes(lambda: self.compiled(self.x, self.y)) / MIB

    def track_peak_numpy_step(self, dtype: str) -> float:
        return peak_bytes(lambda: w2_numpy_step(self.params, self.x, self.y)) / MIB


class W3Compiled:
    """W3's value and gradient (x of 1e6): compiled, eager ``ad.value_and_grad``, hand-written
    (which computes both too); target ≤ 1.0×."""

    def setup(self) -> None:
        self.x = w3_input()
        self.compiled = w3_compiled()
        self.compiled(self.x)  # records

    def time_compiled_gradient(self) -> None:
        self.compiled(self.x)

    def time_eager_gradient(self) -> None:
        import autodiffx as ad

        ad.value_and_grad(w3_loss)(self.x)

    def time_numpy_gradient(self) -> None:
        w3_numpy_gradient(self.x)

    def track_compiled_over_numpy(self) -> float:
        """Compiled / hand-written, timed in pairs (median of 30, one call each)."""
        return paired_ratio(lambda: self.compiled(self.x), lambda: w3_numpy_gradient(self.x), 30, 1)

    track_compiled_over_numpy.unit = "ratio"  # type: ignore[attr-defined]


class W3CompiledMemory:
    """Peak bytes (tracemalloc) of W3's value and gradient compiled and hand-written, in MiB."""

    unit = "MiB"

    def setup(self) -> None:
        self.x = w3_input()
        self.compiled = w3_compiled()
        self.compiled(self.x)  # records

    def track_peak_compiled_gradient(self) -> float:
        return peak_bytes(lambda: self.compiled(self.x)) / MIB

    def track_peak_numpy_gradient(self) -> float:
        return peak_bytes(lambda: w3_numpy_gradient(self.x)) / MIB


class NestedCompiled:
    """``ad.grad`` of a function that calls ``ad.grad`` inside (an inner gradient step, 10
    elements): compiled, eager, and the function's eager forward (target: compiled ≤ 10×)."""

    def setup(self) -> None:
        self.x = nested_input()
        self.compiled = nested_compiled()
        self.compiled(self.x)  # records

    def time_compiled_grad(self) -> None:
        self.compiled(self.x)

    def time_eager_grad(self) -> None:
        import autodiffx as ad

        ad.grad(nested_outer)(self.x)

    def time_eager_forward(self) -> None:
        nested_outer(self.x)

    def track_compiled_grad_over_eager_forward(self) -> float:
        """Compiled gradient / eager forward, timed in pairs (median of 30, 200 calls each)."""
        return paired_ratio(lambda: self.compiled(self.x), lambda: nested_outer(self.x), 30, 200)

    track_compiled_grad_over_eager_forward.unit = "ratio"  # type: ignore[attr-defined]


class CompiledPyTorch:
    """PyTorch CPU eager's W1 value and gradient, W3 and W4 n=10 gradients, one thread, beside
    the compiled ones (skipped when torch is not installed; W2: ``bench_nn.W2PyTorchStep``)."""

    params: ClassVar[list[list[Any]]] = [["w1", "w3", "w4"]]
    param_names: ClassVar[list[str]] = ["workload"]

    def setup(self, workload: str) -> None:
        cases = torch_cases()
        if cases is None:
            raise NotImplementedError("torch is not installed")
        self.call = cases[workload]
        self.call()

    def time_pytorch(self, workload: str) -> None:
        self.call()
