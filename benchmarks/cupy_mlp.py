"""Issue 17's GPU target: an MLP training step on CuPy against the same step on NumPy.

The model is ``width-width-width-10`` (Linear, ReLU, Linear, ReLU, Linear; default width
4096), the batch 256 rows of float64 with integer labels, and one training step is
``zero_grad``, the forward pass, ``cross_entropy``, ``backward`` and an Adam (or SGD) step.
The same seeded model and data run on NumPy and, moved with ``Module.to(cupy)``, on the GPU
(the labels stay NumPy class indices, as cross_entropy takes them):
the same number of steps on each, every step timed (``cupy.cuda.Device().synchronize()``
before reading the clock), then the weights are compared. Targets: the CuPy step at least
10 times faster than the NumPy step, and the weights equal to a relative 1e-10.

    python benchmarks/cupy_mlp.py                          # on a machine with a GPU
    python benchmarks/cupy_mlp.py --optimizer sgd --steps 10
    python benchmarks/cupy_mlp.py --xp array_api_strict --width 64   # CPU stand-in

Without CuPy or a GPU it prints "no GPU: skipped" and exits 0. ``--xp array_api_strict``
runs the same code on array-api-strict arrays (the array API's reference, on the CPU: the
equality target is checked, the speed target is not); tests/test_optim_xp.py runs it so.
Exits with status 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import autodiffx as ad
import autodiffx.nn.functional as F

CLASSES = 10
SPEEDUP, RTOL = 10.0, 1e-10


def library(name: str) -> tuple[Any, Callable[[], None]] | str:
    """The array library ``name`` and its synchronisation, or why it cannot run here."""
    try:
        xp = importlib.import_module(name)
    except ImportError as e:
        return f"{name} is not installed ({e})"
    if name != "cupy":
        return xp, lambda: None
    try:
        if xp.cuda.runtime.getDeviceCount() < 1:
            return "CuPy sees no CUDA device"
        xp.asarray([1.0]).sum().item()  # (a kernel runs: the driver and the device work)
    except Exception as e:  # (CuPy installed without a driver or a device)
        return f"CuPy cannot use a GPU ({type(e).__name__}: {e})"
    return xp, xp.cuda.Device().synchronize


def model(width: int, seed: int) -> ad.nn.Module:
    """The ``width-width-width-10`` MLP, initialised from ``seed`` (NumPy parameters)."""
    return ad.nn.Sequential(
        ad.nn.Linear(width, width, rng=seed),
        ad.nn.ReLU(),
        ad.nn.Linear(width, width, rng=seed + 1),
        ad.nn.ReLU(),
        ad.nn.Linear(width, CLASSES, rng=seed + 2),
    )


def batch(rows: int, width: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``rows`` standard normal inputs and their labels in ``range(10)``."""
    rng = np.random.default_rng(seed + 100)
    return rng.standard_normal((rows, width)), rng.integers(0, CLASSES, rows)


def optimizer(name: str, net: ad.nn.Module) -> ad.optim.Optimizer:
    if name == "adam":
        return ad.optim.Adam(net.parameters(), lr=1e-3)
    return ad.optim.SGD(net.parameters(), lr=1e-2, momentum=0.9)


def train(net: ad.nn.Module, opt: Any, X: Any, y: Any, steps: int, sync: Any) -> list[float]:
    """``steps`` training steps on one batch; the wall time of each (synchronised)."""
    times = []
    for _ in range(steps):
        sync()
        start = time.perf_counter()
        opt.zero_grad()
        loss = F.cross_entropy(net(X), y)
        loss.backward()
        opt.step()
        sync()
        times.append(time.perf_counter() - start)
    return times


def run(args: argparse.Namespace, xp: Any, sync: Any) -> dict[str, Any]:
    """The same steps on NumPy and on ``xp``: their median step times and the largest
    relative difference of a weight array (max |a - b| / max |b|) after them."""
    X, y = batch(args.batch, args.width, args.seed)
    nets, times = [], []
    for lib in (np, xp):
        net = model(args.width, args.seed)
        if lib is not np:
            net.to(xp)
        data = (X, y) if lib is np else (xp.asarray(X), y)  # (labels: NumPy indices)
        opt = optimizer(args.optimizer, net)
        steps = train(net, opt, ad.tensor(data[0]), ad.tensor(data[1]), args.steps, sync)
        times.append(statistics.median(steps[1:] if len(steps) > 1 else steps))
        nets.append(net.to(np))
    diff = max(
        float(np.max(np.abs(a.data - b.data)) / np.max(np.abs(b.data)))
        for a, b in zip(nets[1].parameters(), nets[0].parameters(), strict=True)
    )
    return {"numpy": times[0], "xp": times[1], "diff": diff}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--xp", default="cupy", choices=["cupy", "array_api_strict"])
    p.add_argument("--width", type=int, default=4096)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument(
        "--steps",
        type=int,
        default=5,
        help="steps on each library (the first, a warm-up, is not timed)",
    )
    p.add_argument("--optimizer", default="adam", choices=["adam", "sgd"])
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    found = library(args.xp)
    if isinstance(found, str):
        print(f"no GPU: skipped ({found})" if args.xp == "cupy" else f"skipped: {found}")
        return 0
    xp, sync = found
    w = args.width
    print(
        f"MLP {w}-{w}-{w}-{CLASSES}, batch {args.batch}, float64, {args.optimizer}: "
        f"{args.steps} steps on NumPy and on {args.xp}"
    )
    r = run(args, xp, sync)
    ratio = r["numpy"] / r["xp"]
    print(f"numpy: {r['numpy']:.4f} s/step, {args.xp}: {r['xp']:.4f} s/step (medians)")
    fast = ratio >= SPEEDUP
    same = r["diff"] <= RTOL
    print(
        f"speed-up: {ratio:.1f}x (target >= {SPEEDUP:g}x"
        + (")" if args.xp == "cupy" else ", for cupy only)")
    )
    print(f"max relative difference of the weights: {r['diff']:.2e} (target <= {RTOL:g})")
    met = same and (fast or args.xp != "cupy")
    print("targets: " + ("met" if met else "MISSED"))
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
