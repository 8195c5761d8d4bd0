"""Issue 17's Dask target: a logistic loss's gradient over 1.6 GB on a 2 x 512 MB LocalCluster.

The data (X of shape (4e7, 5), 2e8 float64 values or 1.6 GB, and its labels) is generated
on the workers, chunk by chunk, from a seed; the client only builds the graph, and
``ad.compute`` returns the loss and the gradients (six numbers). The same data is then made
in memory by a separate process (so that the client's RSS is not polluted by it), where the
same autodiffx code runs on NumPy arrays and a hand-written NumPy gradient checks both.
Printed: wall times, the client's peak RSS (a thread samples it; the scheduler of a
LocalCluster runs in the client's process and is included), each worker's peak RSS and
spilled bytes, and the relative errors. Run by hand (about a minute on two cores):

    python benchmarks/dask_scale.py                      # the target: 4e7 rows, 2 x 512 MB
    python benchmarks/dask_scale.py --rows 4e6 --chunk-rows 2.5e5   # a quick look

It exits with status 1 if a target fails (relative error > 1e-12, client peak RSS >= 300 MB).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from typing import Any

import numpy as np

D = 5  # features
W_TRUE = np.linspace(-1.0, 2.0, D)  # the labels' model
W0, B0 = np.linspace(0.3, -0.2, D), 0.25  # where the gradient is taken (no component is ~0)
MB = 1e6  # (decimal, as Dask reads "512MB")


def chunk_of(seed: int, index: int, rows: int) -> np.ndarray:
    """Chunk ``index`` of the data set: ``rows`` rows of X (standard normal) and, in the last
    column, labels y = [X w_true + noise > 0], from the generator seeded by (seed, index)."""
    rng = np.random.default_rng([seed, index])
    X = rng.standard_normal((rows, D))
    y = X @ W_TRUE + rng.standard_normal(rows) > 0
    return np.concatenate([X, y[:, None].astype(np.float64)], axis=1)


def _block(seed: int, rows: int, block_info: Any = None) -> np.ndarray:
    return chunk_of(seed, block_info[None]["chunk-location"][0], rows)


def lazy_data(n: int, rows: int, seed: int) -> Any:
    """The (n, D + 1) data set as a Dask array: one task per chunk, run where it is needed."""
    import dask.array as da

    if n % rows:
        raise ValueError(f"--rows {n} is not a multiple of --chunk-rows {rows}")
    chunks = ((rows,) * (n // rows), (D + 1,))
    meta = np.empty((0, 0))
    return da.map_blocks(_block, seed, rows, chunks=chunks, dtype=np.float64, meta=meta)


def loss_and_grads(X: Any, y: Any) -> tuple[Any, Any, Any]:
    """The mean logistic loss at (W0, B0) and its gradients, as autodiffx Tensors (lazy on
    Dask data, values on NumPy data): the code the benchmark is about."""
    import autodiffx as ad
    import autodiffx.nn.functional as F

    w = ad.tensor(W0, requires_grad=True)
    b = ad.tensor(B0, requires_grad=True)
    loss = F.binary_cross_entropy_with_logits(ad.asarray(X) @ w + b, ad.asarray(y))
    loss.backward()
    return loss, w.grad, b.grad


class PeakRSS:
    """The process's peak resident set size, sampled by a thread every ``interval`` s."""

    def __init__(self, interval: float = 0.002) -> None:
        import psutil

        self._proc, self._interval = psutil.Process(), interval
        self.peak = self.start = self._proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.peak = max(self.peak, self._proc.memory_info().rss)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _worker_memory(dask_worker: Any) -> dict[str, float]:
    """A worker's peak RSS (Linux's VmHWM: ``getrusage`` would include the memory of the
    process that forked it) and the bytes it spilled to disk."""
    with open("/proc/self/status") as f:
        hwm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
    spilled = getattr(dask_worker.data, "spilled_total", None)
    return {
        "peak_rss_mb": hwm / MB,
        "spilled_mb": (spilled.disk if spilled is not None else 0) / MB,
    }


def on_cluster(args: argparse.Namespace) -> dict[str, Any]:
    """The gradient on a LocalCluster: values, times and memory figures."""
    import distributed

    import autodiffx as ad

    out: dict[str, Any] = {}
    with PeakRSS() as rss:
        t0 = time.perf_counter()
        with (
            distributed.LocalCluster(
                n_workers=args.workers,
                threads_per_worker=1,
                processes=True,
                memory_limit=args.memory_limit,
                dashboard_address=":0",  # (None still serves HTTP on 8787, maybe taken)
            ) as cluster,
            distributed.Client(cluster) as client,
        ):
            out["cluster_start_s"] = time.perf_counter() - t0
            idle = list(client.run(_worker_memory).values())
            t1 = time.perf_counter()
            XY = lazy_data(int(args.rows), int(args.chunk_rows), args.seed)
            loss, gw, gb = loss_and_grads(XY[:, :D], XY[:, D])
            out["graph_s"] = time.perf_counter() - t1
            out["tasks"] = len(XY.__dask_graph__()) + _task_count(loss, gw, gb)
            t2 = time.perf_counter()
            loss, gw, gb = ad.compute(loss, gw, gb)
            out["compute_s"] = time.perf_counter() - t2
            out["workers"] = list(client.run(_worker_memory).values())
            for w, i in zip(out["workers"], idle):
                w["idle_rss_mb"] = i["peak_rss_mb"]
    out["client_rss_start_mb"] = rss.start / MB
    out["client_peak_rss_mb"] = rss.peak / MB
    out["client_ru_maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["values"] = [float(loss.data), *gw.data.tolist(), float(gb.data)]
    return out


def _task_count(*tensors: Any) -> int:
    from dask.base import collections_to_expr

    return len(collections_to_expr([t.data for t in tensors]).optimize().__dask_graph__())


def in_memory(n: int, rows: int, seed: int) -> dict[str, Any]:
    """The same gradient on the whole data set in memory (NumPy): autodiffx's and a
    hand-written one, with this process's peak RSS."""
    t0 = time.perf_counter()
    XY = np.empty((n, D + 1))
    for i in range(n // rows):
        XY[i * rows : (i + 1) * rows] = chunk_of(seed, i, rows)
    X, y = XY[:, :D], XY[:, D]
    t1 = time.perf_counter()
    loss, gw, gb = loss_and_grads(X, y)
    t2 = time.perf_counter()
    z = X @ W0 + B0
    r = (np.exp(-np.logaddexp(0.0, -z)) - y) / n  # (sigmoid(z) - y) / n
    hand = [float(np.mean(np.logaddexp(0.0, z) - y * z)), *(r @ X).tolist(), float(r.sum())]
    return {
        "generate_s": t1 - t0,
        "grad_s": t2 - t1,
        "values": [float(loss.data), *gw.data.tolist(), float(gb.data)],
        "hand": hand,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def reference(args: argparse.Namespace) -> dict[str, Any]:
    """:func:`in_memory` run in a fresh process (this script with ``--in-memory``)."""
    cmd = [sys.executable, __file__, "--in-memory", "--rows", str(args.rows)]
    cmd += ["--chunk-rows", str(args.chunk_rows), "--seed", str(args.seed)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    done = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return json.loads(done.stdout)


def rel(a: list[float], b: list[float]) -> float:
    a_, b_ = np.asarray(a), np.asarray(b)
    return float(np.linalg.norm(a_ - b_) / np.linalg.norm(b_))


def report(args: argparse.Namespace, dask_: dict[str, Any], ref: dict[str, Any]) -> bool:
    """Print the figures; whether the targets are met."""
    n = int(args.rows)
    v, r = dask_["values"], ref["values"]
    errors = {
        "loss": rel(v[:1], r[:1]),
        "grad": rel(v[1:], r[1:]),
        "max_component": max(rel([a], [b]) for a, b in zip(v, r)),
        "numpy_vs_hand": rel(r, ref["hand"]),
    }
    print(f"data: X ({n}, {D}) float64 = {n * D * 8 / 1e9:.2f} GB + labels {n * 8 / 1e9:.2f} GB,")
    print(f"  chunks of {int(args.chunk_rows)} rows ({int(args.chunk_rows) * (D + 1) * 8 / MB:.0f}"
          f" MB), {dask_['tasks']} tasks")  # fmt: skip
    print(f"cluster: {args.workers} worker processes x 1 thread, memory_limit={args.memory_limit}")
    print(f"wall: cluster start {dask_['cluster_start_s']:.1f} s, graph {dask_['graph_s']:.2f} s,"
          f" ad.compute {dask_['compute_s']:.1f} s")  # fmt: skip
    print(f"in memory (separate process): generate {ref['generate_s']:.1f} s, gradient "
          f"{ref['grad_s']:.1f} s, peak RSS {ref['peak_rss_mb']:.0f} MB")  # fmt: skip
    print(f"client RSS: {dask_['client_rss_start_mb']:.0f} MB after imports, peak "
          f"{dask_['client_peak_rss_mb']:.0f} MB sampled, {dask_['client_ru_maxrss_mb']:.0f}"
          " MB ru_maxrss")  # fmt: skip
    for i, w in enumerate(dask_["workers"]):
        print(f"worker {i}: peak RSS {w['peak_rss_mb']:.0f} MB ({w['idle_rss_mb']:.0f} MB idle), "
              f"spilled {w['spilled_mb']:.0f} MB")  # fmt: skip
    print(f"loss {v[0]:.15f}, grad {np.array(v[1:])}")
    print(
        "relative errors vs in-memory NumPy: "
        + ", ".join(f"{k} {e:.1e}" for k, e in errors.items())
    )
    ok = max(errors.values()) < 1e-12 and dask_["client_peak_rss_mb"] < args.max_client_mb
    print("targets (relative error < 1e-12, client peak RSS < "
          f"{args.max_client_mb} MB): {'met' if ok else 'NOT MET'}")  # fmt: skip
    return ok


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=float, default=4e7)
    p.add_argument("--chunk-rows", type=float, default=1e6)
    p.add_argument("--seed", type=int, default=17)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--memory-limit", default="512MB")
    p.add_argument("--max-client-mb", type=float, default=300.0)
    p.add_argument("--in-memory", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.in_memory:
        print(json.dumps(in_memory(int(args.rows), int(args.chunk_rows), args.seed)))
        return 0
    dask_ = on_cluster(args)
    return 0 if report(args, dask_, reference(args)) else 1


if __name__ == "__main__":
    sys.exit(main())
