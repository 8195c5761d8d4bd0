"""Write tests/reference/{optim,nn,cnn,schedulers,linalg}.npz: PyTorch's results for the parity
tests.

The tests in test_optim.py, test_nn.py, test_nn_cnn.py, test_lr_schedulers_more.py and
test_linalg_complex.py compare autodiffx with these stored results always, and with live
PyTorch when it is installed (the ``oracle`` marker: ``make test-oracles``).
This script needs the oracle extra (the pinned PyTorch); it reuses the tests' own problems
and PyTorch-side functions, and records the versions it ran with under the key ``_meta``.
Every array is a plain ndarray (strings as unicode arrays), so the files load with
``allow_pickle=False``. Run it after changing a parity case or the PyTorch pin::

    .venv-oracle/bin/python tests/reference/make_torch_references.py [NAME ...]

With names (``linalg``, ...), only those files are written.
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

DIRECTORY = Path(__file__).resolve().parent
TESTS = DIRECTORY.parent


def _test_module(name: str) -> ModuleType:
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))
    return __import__(name)


def _stacked(prefix: str, trajectory: list[list[np.ndarray]]) -> dict[str, np.ndarray]:
    """One array per parameter, the steps along axis 0: ``{prefix}/p{j}``."""
    return {f"{prefix}/p{j}": np.stack(steps) for j, steps in enumerate(zip(*trajectory))}


def optim_references(torch: Any) -> dict[str, np.ndarray]:
    """PyTorch's optimizer trajectories, L-BFGS run, Adam state dict and learning rates."""
    t = _test_module("test_optim")
    out = {"problem/QA": t.QA, "problem/QB": t.QB, "problem/MLP_X": t.MLP_X}
    out["problem/MLP_Y"] = t.MLP_Y
    out |= {f"problem/Q_X0/{j}": a for j, a in enumerate(t.Q_X0)}
    out |= {f"problem/MLP_P0/{j}": a for j, a in enumerate(t.MLP_P0)}
    for name, kw, problem in t.TRAJECTORIES:
        trajectory = t._run_torch(torch, name, kw, problem, t._steps(name))
        out |= _stacked(t.trajectory_key(name, kw, problem), trajectory)
    losses, iterates, counters = t.lbfgs_torch(torch)
    out |= {"lbfgs/loss": np.array(losses), "lbfgs/counters": np.array(counters)}
    out |= _stacked("lbfgs", iterates)
    for name, kw in t.COMPLEX_CONFIGS:
        out[f"complex/{name}"] = t.complex_trajectory(torch, torch.optim, name, kw)
    layout = t.state_dict_layout(t.adam_state_dict_torch(torch))
    out["adam_state_dict_layout"] = np.array(json.dumps(layout, sort_keys=True))
    for name, kw in t.SCHEDULERS:
        out[t.scheduler_key(name, kw)] = np.array(t.torch_lr_sequence(torch, name, kw))
    for kw in t.PLATEAU_CONFIGS:
        p = torch.zeros(1, requires_grad=True)
        out[t.plateau_key(kw)] = np.array(t.plateau_sequence(torch.optim, p, kw))
    return out


def nn_references(torch: Any) -> dict[str, np.ndarray]:
    """PyTorch's activations and losses (value and gradient) and one Linear layer."""
    import autodiffx.nn as nn

    t = _test_module("test_nn")
    out = {}
    for key in t.PARITY_KEYS:
        x = t.parity_cases()[key][0]
        value, grad = t.torch_value_and_grad(torch, key)
        out |= {f"parity/{key}/x": x, f"parity/{key}/value": value, f"parity/{key}/grad": grad}
    lin = nn.Linear(3, 2, rng=0)
    w, b = lin.weight.data, lin.bias.data
    out |= {"linear/weight": w, "linear/bias": b, "linear/x": t.LINEAR_X}
    out["linear/y"] = t.torch_linear(torch, w, b, t.LINEAR_X)
    return out


def cnn_references(torch: Any) -> dict[str, np.ndarray]:
    """PyTorch's convolution, pooling and batch-norm values and gradients (test_nn_cnn.py)."""
    t = _test_module("test_nn_cnn")
    out = {}
    for name in t.FUNCTIONAL:
        out |= {f"functional/{name}/{k}": a for k, a in enumerate(t.functional_torch(torch, name))}
    for name in t.BATCHNORM:
        seq = t.batchnorm_sequence(torch, name)
        out |= {f"batchnorm/{name}/{k}": a for k, a in enumerate(seq)}
    return out


def scheduler_references(torch: Any) -> dict[str, np.ndarray]:
    """PyTorch's learning rates and momenta of test_lr_schedulers_more.py's cases."""
    t = _test_module("test_lr_schedulers_more")
    return {f"scheduler/{name}": t.theirs(torch, name) for name in t.CASES}


def linalg_references(torch: Any) -> dict[str, np.ndarray]:
    """PyTorch's losses and gradients of complex svd/eigh/qr/... (test_linalg_complex.py)."""
    t = _test_module("test_linalg_complex")
    out = {}
    for key in t.KEYS:
        value, grad = t.torch_value_and_grad(torch, key)
        out[f"complex/{key}/x"] = t.INPUTS[t.CASES[key][0]]
        out |= {f"complex/{key}/value": value, f"complex/{key}/grad": grad}
    return out


BUILDERS = {
    "optim": optim_references,
    "nn": nn_references,
    "cnn": cnn_references,
    "schedulers": scheduler_references,
    "linalg": linalg_references,
}


def build(torch: Any, names: list[str] | None = None) -> dict[str, dict[str, np.ndarray]]:
    """Every reference file's arrays, by file name, each with its ``_meta`` record."""
    meta = {
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "script": "tests/reference/make_torch_references.py",
    }
    files = {name: BUILDERS[name](torch) for name in names or BUILDERS}
    for arrays in files.values():
        arrays["_meta"] = np.array(json.dumps(meta, sort_keys=True))
    return files


def main() -> int:
    import torch

    for name, arrays in build(torch, sys.argv[1:]).items():
        path = DIRECTORY / f"{name}.npz"
        np.savez_compressed(path, **arrays)
        print(f"{path.relative_to(TESTS.parent)}: {len(arrays)} arrays, torch {torch.__version__}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
