"""W2 (an MLP training step) and W6 (its memory), each beside its hand-written NumPy floor.

W2 is one SGD step of a 784-256-256-10 tanh MLP with softmax cross-entropy on a batch of
128 (``ad.nn.Sequential`` of ``Linear``/``Tanh``, ``ad.nn.functional.cross_entropy``,
``ad.optim.SGD``), in float32 and float64. W6 is the memory of one float64 step: ``peakmem_``
is asv's process peak (imports included: compare the two with each other), ``track_`` counts
bytes with ``tracemalloc`` (which sees NumPy's buffers), in MiB above the start of the step.
``ratios.py`` times the same functions outside asv and prints the ratios.
"""

from __future__ import annotations

from typing import Any, ClassVar

import autodiffx as ad

from .common import (
    MIB,
    W2_DTYPES,
    W2_LR,
    W2_SIZES,
    w2_autodiffx_step,
    w2_input,
    w2_model,
    w2_numpy_params,
    w2_numpy_step,
    w6_autodiffx_memory,
    w6_numpy_memory,
)


class W2MLPStep:
    """One training step (zero_grad, forward, loss, backward, update) and its NumPy floor."""

    params: ClassVar[list[list[Any]]] = [list(W2_DTYPES)]
    param_names: ClassVar[list[str]] = ["dtype"]

    def setup(self, dtype: str) -> None:
        self.model, self.opt = w2_model(dtype)
        self.params_np = w2_numpy_params(self.model)
        self.x_np, self.y = w2_input(dtype)
        self.x = ad.tensor(self.x_np)
        # Warm-up: the first update imports SciPy's BLAS.
        w2_autodiffx_step(self.model, self.opt, self.x, self.y)
        w2_numpy_step(self.params_np, self.x_np, self.y)

    def time_autodiffx_step(self, dtype: str) -> None:
        w2_autodiffx_step(self.model, self.opt, self.x, self.y)

    def time_numpy_step(self, dtype: str) -> None:
        w2_numpy_step(self.params_np, self.x_np, self.y)


class W2PyTorchStep:
    """The same step in PyTorch CPU (skipped when torch is not installed)."""

    params: ClassVar[list[list[Any]]] = [list(W2_DTYPES)]
    param_names: ClassVar[list[str]] = ["dtype"]

    def setup(self, dtype: str) -> None:
        try:
            import torch
        except ImportError:
            raise NotImplementedError("torch is not installed") from None
        a, b, c, d = W2_SIZES
        tdt = getattr(torch, dtype)
        nn = torch.nn
        self.model = nn.Sequential(
            nn.Linear(a, b), nn.Tanh(), nn.Linear(b, c), nn.Tanh(), nn.Linear(c, d)
        ).to(tdt)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=W2_LR)
        x, y = w2_input(dtype)
        self.x, self.y = torch.from_numpy(x), torch.from_numpy(y)
        self.loss = torch.nn.functional.cross_entropy
        self.time_pytorch_step(dtype)

    def time_pytorch_step(self, dtype: str) -> None:
        self.opt.zero_grad(set_to_none=True)
        self.loss(self.model(self.x), self.y).backward()
        self.opt.step()


class W6Memory:
    """Memory of one float64 W2 step: peak, what the graph holds, what stays after it.

    Design target: the autodiffx peak ≤ 1.1× the floor's, and nothing of the graph held
    after ``backward()`` (only the gradients, 2.05 MiB).
    """

    unit = "MiB"

    def setup(self) -> None:
        self.model, self.opt = w2_model("float64")
        self.params_np = w2_numpy_params(self.model)
        self.x_np, self.y = w2_input("float64")
        self.x = ad.tensor(self.x_np)
        w2_autodiffx_step(self.model, self.opt, self.x, self.y)
        w2_numpy_step(self.params_np, self.x_np, self.y)

    def peakmem_autodiffx_step(self) -> None:
        w2_autodiffx_step(self.model, self.opt, self.x, self.y)

    def peakmem_numpy_step(self) -> None:
        w2_numpy_step(self.params_np, self.x_np, self.y)

    def _ad(self) -> dict[str, int]:
        return w6_autodiffx_memory(self.model, self.opt, self.x, self.y)

    def track_peak_autodiffx_step(self) -> float:
        return self._ad()["peak"] / MIB

    def track_peak_numpy_step(self) -> float:
        return w6_numpy_memory(self.params_np, self.x_np, self.y)["peak"] / MIB

    def track_graph_after_forward(self) -> float:
        """What the recorded graph holds before ``backward()`` (the saved activations)."""
        return self._ad()["graph"] / MIB

    def track_held_after_backward_besides_grads(self) -> float:
        """Held after ``backward()`` beyond the gradients: the graph must be gone (≈ 0)."""
        m = self._ad()
        return (m["after_backward"] - m["grads"]) / MIB


# ----- the digits CNN (ad.nn.digits_cnn): one Adam step on a batch of 64 8x8 images --------
CNN_BATCH = 64


def _one_blas_thread() -> Any:
    """Limit NumPy's BLAS to one thread until restored (None without threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    return threadpool_limits(1)


def _cnn_batch(dtype: str) -> tuple[Any, Any]:
    from autodiffx.train import split_digits

    X, y, _, _ = split_digits(0)
    return X[:CNN_BATCH].astype(dtype), y[:CNN_BATCH]


class CNNStep:
    """One training step of ``ad.nn.digits_cnn`` (two 3x3 conv + ReLU + 2x2 max-pool blocks
    and a linear layer; zero_grad, forward, cross-entropy, backward, Adam update), on one
    BLAS thread (with threadpoolctl; else run with OPENBLAS_NUM_THREADS=1)."""

    params: ClassVar[list[list[Any]]] = [["float64", "float32"]]
    param_names: ClassVar[list[str]] = ["dtype"]

    def setup(self, dtype: str) -> None:
        self.limits = _one_blas_thread()
        self.model = ad.nn.digits_cnn(rng=0, dtype=dtype)
        self.opt = ad.optim.Adam(self.model.parameters(), lr=0.01)
        x, self.y = _cnn_batch(dtype)
        self.x = ad.tensor(x)
        self.time_autodiffx_step(dtype)

    def teardown(self, dtype: str) -> None:
        if self.limits is not None:
            self.limits.restore_original_limits()

    def time_autodiffx_step(self, dtype: str) -> None:
        self.opt.zero_grad()
        ad.nn.functional.cross_entropy(self.model(self.x), self.y).backward()
        self.opt.step()


class CNNPyTorchStep:
    """The same CNN step in PyTorch CPU, same shapes, one thread (skipped when torch is not
    installed)."""

    params: ClassVar[list[list[Any]]] = [["float64", "float32"]]
    param_names: ClassVar[list[str]] = ["dtype"]

    def setup(self, dtype: str) -> None:
        try:
            import torch
        except ImportError:
            raise NotImplementedError("torch is not installed") from None
        self.threads = torch.get_num_threads()
        torch.set_num_threads(1)
        nn = torch.nn
        self.model = nn.Sequential(
            nn.Unflatten(1, (1, 8, 8)),
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(128, 10),
        ).to(getattr(torch, dtype))
        self.opt = torch.optim.Adam(self.model.parameters(), lr=0.01)
        x, y = _cnn_batch(dtype)
        self.x, self.y = torch.from_numpy(x), torch.from_numpy(y)
        self.loss = torch.nn.functional.cross_entropy
        self.time_pytorch_step(dtype)

    def teardown(self, dtype: str) -> None:
        import torch

        torch.set_num_threads(self.threads)

    def time_pytorch_step(self, dtype: str) -> None:
        self.opt.zero_grad(set_to_none=True)
        self.loss(self.model(self.x), self.y).backward()
        self.opt.step()
