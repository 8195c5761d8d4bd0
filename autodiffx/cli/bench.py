"""``autodiffx bench``: AD against finite differences, the time and accuracy of a gradient as
n grows (workload W4), and a step-size study of the finite-difference schemes; tables and PNGs.
BLAS is pinned to a number of threads (with threadpoolctl) and its configuration printed."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..io import write_atomically
from ._expression import fail
from .argtypes import float_in, int_in, memory_problem, non_negative_int, output_dir_problem, sizes
from .check import SCHEME_LABEL
from .report import Progress, fmt_error, fmt_seconds, optional_module


# ----- timing -------------------------------------------------------------------------------------
def _best_time(fn: Callable[[], Any], repeat: int, budget: float) -> tuple[float, Any]:
    """(best wall time per call, first result): up to ``repeat`` rounds within about
    ``budget`` s; the rounds stop when the budget is spent.

    A call that alone takes longer than the budget is timed once.
    """
    start = time.perf_counter()
    result = fn()
    once = time.perf_counter() - start
    if once >= budget:
        return once, result
    number = max(1, int(budget / repeat / max(once, 1e-9)))
    best = once
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - t0) / number)
        if time.perf_counter() - start >= budget:
            break
    return best, result


def _w4_problem(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a = rng.standard_normal((n, n)) / np.sqrt(n)
    x = rng.standard_normal(n)
    exact = a.T @ (1.0 - np.tanh(a @ x) ** 2)
    return a, x, exact


def bench_gradients(
    sizes: Sequence[int],
    repeat: int = 3,
    budget: float = 0.2,
    seed: int = 0,
    on_row: Callable[[int, int, dict[str, Any]], Any] | None = None,
) -> list[dict[str, Any]]:
    """Workload W4: the gradient of ``sum(tanh(A @ x))`` by AD and by finite differences.

    For each n: reverse mode (one backward pass), forward mode (n JVPs, one per basis
    vector) and central differences (2n evaluations of the NumPy function), each timed (best
    of ``repeat``) and compared with the hand-derived gradient ``Aᵀ (1 - tanh²(A x))``.
    ``on_row(done, total, row)`` is called after every row, if given.

    Returns
    -------
    list of dict
        One row per (n, method): ``n``, ``method``, ``evals`` (function evaluations or
        passes), ``seconds`` and ``error`` (max abs error / max abs gradient).

    Examples
    --------
    >>> rows = bench_gradients([3], repeat=1, budget=0.0)
    >>> [(r["method"], r["evals"]) for r in rows]
    [('reverse mode', 1), ('forward mode (n JVPs)', 3), ('central differences (2n)', 6)]
    >>> all(r["error"] < 1e-6 for r in rows)
    True
    """
    rng = np.random.default_rng(seed)
    rows = []
    for n in sizes:
        a, x0, exact = _w4_problem(n, rng)
        scale = max(float(np.max(np.abs(exact))), 1e-300)
        for method, evals, fn in _w4_methods(a, x0):
            seconds, g = _best_time(fn, repeat, budget)
            err = float(np.max(np.abs(g - exact))) / scale
            rows.append(
                {"n": n, "method": method, "evals": evals, "seconds": seconds, "error": err}
            )
            if on_row is not None:
                on_row(len(rows), 3 * len(sizes), rows[-1])
    return rows


def _w4_methods(a: np.ndarray, x0: np.ndarray) -> list[tuple[str, int, Callable[[], Any]]]:
    """(name, evaluations, gradient function) of the three W4 methods."""
    import autodiffx as ad

    n = len(x0)

    def reverse() -> np.ndarray:
        x = ad.tensor(x0, requires_grad=True)
        (g,) = ad.autograd.grad(ad.sum(ad.tanh(a @ x)), x)
        return g.data

    def forward_mode() -> np.ndarray:
        g = np.empty(n)
        eye = np.eye(n)
        for i in range(n):
            with ad.forward.dual_level():
                x = ad.forward.make_dual(ad.tensor(x0), ad.tensor(eye[i]))
                g[i] = ad.forward.unpack_dual(ad.sum(ad.tanh(a @ x))).tangent.item()
        return g

    def central() -> np.ndarray:
        return np.asarray(ad.fd.gradient(lambda v: np.sum(np.tanh(a @ v)), x0, scheme="central"))

    return [
        ("reverse mode", 1, reverse),
        ("forward mode (n JVPs)", n, forward_mode),
        ("central differences (2n)", 2 * n, central),
    ]


def _squire_trapp(x: Any) -> Any:
    """exp(x) / sqrt(sin(x)**3 + cos(x)**3), the complex-step test function of Squire & Trapp."""
    import autodiffx as ad

    return ad.exp(x) / ad.sqrt(ad.sin(x) ** 3 + ad.cos(x) ** 3)


def _plot_bench(rows: list[dict[str, Any]], out: str) -> list[str]:
    from matplotlib.figure import Figure

    methods = list(dict.fromkeys(r["method"] for r in rows))
    markers = dict(zip(methods, "osD^v"))
    paths = []
    for key, ylabel, fname, title in (
        ("seconds", "time per gradient [s]", "bench_time.png", "Cost of a gradient"),
        ("error", "max |error| / max |gradient|", "bench_error.png", "Accuracy of a gradient"),
    ):
        fig = Figure(figsize=(6.4, 4.4), layout="constrained")
        ax = fig.subplots()
        for m in methods:
            pts = [(r["n"], r[key]) for r in rows if r["method"] == m]
            ns = [p[0] for p in pts]
            ys = [max(p[1], 1e-17) for p in pts]
            ax.plot(ns, ys, marker=markers[m], label=m)
        if key == "error":
            ax.axhline(np.finfo(float).eps, color="grey", ls=":", lw=1)
            ax.annotate(
                "machine epsilon",
                (min(r["n"] for r in rows), np.finfo(float).eps),
                textcoords="offset points",
                xytext=(2, 4),
                fontsize=8,
                color="grey",
            )
            if any(r["error"] == 0 for r in rows):
                ax.text(
                    0.01,
                    0.98,
                    "errors of 0 drawn at 1e-17",
                    transform=ax.transAxes,
                    va="top",
                    fontsize=7,
                    color="grey",
                )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("n (length of x)")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{title} of sum(tanh(A @ x)), x in R^n")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        path = os.path.join(out, fname)
        _save_png(fig, path)
        paths.append(path)
    return paths


def _plot_step_study(study: Any, out: str) -> str:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8.4, 4.6), layout="constrained")
    ax = fig.subplots()
    floor = 1e-17
    for scheme, err in study.errors.items():
        e = np.where(np.isfinite(err), np.maximum(err, floor), np.nan)
        ax.plot(study.hs, e, marker=".", label=SCHEME_LABEL[scheme].removeprefix("FD "))
    eps = np.finfo(float).eps
    hs = np.asarray(study.hs)
    f0 = abs(float(_squire_trapp(np.float64(study.x))))
    ax.plot(hs, eps * f0 / hs, color="grey", ls="--", lw=1, label="round-off ~ eps |f| / h")
    ax.plot(hs, hs, color="grey", ls=":", lw=1, label="truncation ~ h")
    ax.plot(hs, hs**2, color="grey", ls="-.", lw=1, label="truncation ~ h²")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(floor / 2, 1e2)
    ax.set_xlabel("step h")
    ax.set_ylabel("|FD derivative - exact|")
    ax.set_title(
        f"Step-size study: f(x) = exp(x) / sqrt(sin³x + cos³x) at x = {study.x:g}", fontsize=10
    )
    ax.grid(True, which="both", alpha=0.3)
    fig.legend(fontsize=8, loc="outside right center")
    ax.text(
        0.99,
        0.02,
        f"errors of 0 drawn at {floor:g}",
        transform=ax.transAxes,
        ha="right",
        fontsize=7,
        color="grey",
    )
    path = os.path.join(out, "step_study.png")
    _save_png(fig, path)
    return path


def _save_png(fig: Any, path: str) -> None:
    write_atomically(path, lambda fh: fig.savefig(fh, format="png", dpi=110))


#: The files ``bench`` writes into ``--out``.
BENCH_FILES = ("bench_time.png", "bench_error.png", "step_study.png")


def bench_memory(n: int) -> float:
    """Bytes ``bench`` needs at its peak for size ``n``, roughly: the n x n matrix A while
    it is drawn and scaled (two), then A and the identity of the forward mode.

    Examples
    --------
    >>> f"{bench_memory(100_000):.2g}"
    '1.6e+11'
    """
    return 16.0 * n * n + 100e6  # NOTE: 100 MB, a measured Python + NumPy + matplotlib


def _bench_problem(args: argparse.Namespace) -> str | None:
    """A one-line reason to refuse the run before it starts, or None."""
    n = max(args.sizes)
    return output_dir_problem(args.out, dict.fromkeys(BENCH_FILES, "png"), "--out") or (
        memory_problem(bench_memory(n), f"--sizes {n}")
    )


# ----- BLAS threads ----------------------------------------------------------------------------
def blas_description(threadpoolctl: Any) -> str:
    """One line on the BLAS the timings ran with: from threadpoolctl (libraries, versions and
    threads) when it is given, else NumPy's build configuration, saying that the threads are
    not pinned.

    Examples
    --------
    >>> blas_description(None)  # doctest: +ELLIPSIS
    'BLAS: ... (NumPy build), threads not pinned (pip install threadpoolctl to pin them)'
    """
    if threadpoolctl is None:
        blas = np.show_config(mode="dicts").get("Build Dependencies", {}).get("blas", {})
        name = f"{blas.get('name', 'unknown')} {blas.get('version', '')}".strip()
        return (
            f"BLAS: {name} (NumPy build), threads not pinned "
            "(pip install threadpoolctl to pin them)"
        )
    libs = [i for i in threadpoolctl.threadpool_info() if i.get("user_api") == "blas"]
    if not libs:
        return "BLAS: no BLAS library found by threadpoolctl"
    parts = [
        f"{i.get('internal_api')} {i.get('version')} ({os.path.basename(str(i.get('filepath')))}): "
        f"{i.get('num_threads')} thread{'s' if i.get('num_threads') != 1 else ''}"
        for i in libs
    ]
    return "BLAS: " + "; ".join(parts)


def _pinned_blas(args: argparse.Namespace) -> tuple[contextlib.AbstractContextManager[Any], Any]:
    """(a context that limits BLAS to --blas-threads threads, the threadpoolctl module or None);
    a usage error if --blas-threads is given without threadpoolctl."""
    threadpoolctl = optional_module("threadpoolctl")
    if threadpoolctl is None:
        if args.blas_threads is not None:
            fail(args, "--blas-threads needs threadpoolctl: pip install threadpoolctl")
        return contextlib.nullcontext(), None
    threads = 1 if args.blas_threads is None else args.blas_threads
    return threadpoolctl.threadpool_limits(limits=threads, user_api="blas"), threadpoolctl


# ----- the command --------------------------------------------------------------------------------
def _print_tables(rows: list[dict[str, Any]], study: Any) -> None:
    print("W4: gradient of sum(tanh(A @ x)), x in R^n; error = max |g - exact| / max |exact|")
    print(f"{'n':>7}  {'method':<26}{'evals':>7}  {'time':>10}  {'error':>9}")
    for r in rows:
        print(
            f"{r['n']:>7}  {r['method']:<26}{r['evals']:>7}  {fmt_seconds(r['seconds']):>10}  "
            f"{fmt_error(r['error']):>9}"
        )
    print("\nStep-size study, f(x) = exp(x) / sqrt(sin(x)**3 + cos(x)**3) at x = 1.5:")
    print(f"{'scheme':<14}{'best h':>10}{'best error':>12}")
    for scheme, (h, e) in study.best.items():
        print(f"{scheme:<14}{h:>10.1e}{fmt_error(e):>12}")


def _write_plots(args: argparse.Namespace, rows: list[dict[str, Any]], study: Any) -> int:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print(
            "\nmatplotlib is not installed: no PNG written (pip install matplotlib)",
            file=sys.stderr,
        )
        return 1
    try:
        os.makedirs(args.out, exist_ok=True)
        paths = [*_plot_bench(rows, args.out), _plot_step_study(study, args.out)]
    except OSError as e:
        print(f"autodiffx bench: error: cannot write into {args.out!r}: {e}", file=sys.stderr)
        return 1
    print("\nwritten: " + ", ".join(paths))
    return 0


def run(args: argparse.Namespace) -> int:
    """Run ``autodiffx bench`` with parsed arguments; return the exit status.

    Progress (a bar, on a terminal with tqdm installed) goes to stderr; the BLAS
    configuration and the tables to stdout.

    Examples
    --------
    >>> import tempfile
    >>> from autodiffx.cli import build_parser
    >>> run(build_parser().parse_args(["bench", "--sizes", "3", "--repeat", "1", "--budget",
    ...                                "0", "--out", tempfile.mkdtemp()]))  # doctest: +ELLIPSIS
    BLAS: ...
    W4: gradient of sum(tanh(A @ x)), ...
    0
    """
    import autodiffx as ad

    problem = _bench_problem(args)
    if problem:
        fail(args, problem)
    limits, threadpoolctl = _pinned_blas(args)
    with limits, Progress(sys.stderr, quiet=args.quiet) as progress:
        print(blas_description(threadpoolctl), flush=True)

        def on_row(done: int, total: int, row: dict[str, Any]) -> None:
            progress.update("W4", done, total, f"n={row['n']} {row['method']}")

        rows = bench_gradients(args.sizes, args.repeat, args.budget, args.seed, on_row)
    with np.errstate(all="ignore"):
        study = ad.fd.step_study(_squire_trapp, 1.5, hs=np.logspace(-16, -1, 61))
    _print_tables(rows, study)
    return _write_plots(args, rows, study)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``bench`` subparser: --out, --sizes, --repeat, --budget, --seed,
    --blas-threads, --quiet.

    >>> from autodiffx.cli import build_parser
    >>> build_parser().parse_args(["bench", "--sizes", "100,10"]).sizes
    [10, 100]
    """
    parser = subparsers.add_parser(
        "bench",
        help="AD vs finite differences: time and accuracy of gradients as n grows (PNGs)",
        description="Workload W4: the gradient of sum(tanh(A @ x)) by reverse mode, by forward "
        "mode (n JVPs) and by central differences (2n evaluations), timed and compared with the "
        "exact gradient for each n; plus a step-size study of the finite-difference schemes. "
        "Prints tables and writes bench_time.png, bench_error.png and step_study.png.",
    )
    parser.add_argument(
        "--out",
        default="out",
        metavar="DIR",
        help="directory for the PNGs, created if missing (default ./out); existing files of "
        "the same names are replaced only if they are PNGs",
    )
    parser.add_argument(
        "--sizes", type=sizes, default=[10, 100, 1000], help="values of n (default 10,100,1000)"
    )
    parser.add_argument(
        "--repeat", type=int_in(1, 1000), default=3, help="timing rounds, 1..1000 (default 3)"
    )
    parser.add_argument(
        "--budget",
        type=float_in(0, 60),
        default=0.2,
        help="seconds spent timing each method and size, 0..60 (default 0.2); a single call "
        "that takes longer is timed once",
    )
    parser.add_argument(
        "--seed", type=non_negative_int, default=0, help="random seed of A and x (default 0)"
    )
    parser.add_argument(
        "--blas-threads",
        type=int_in(1, 1024),
        default=None,
        metavar="N",
        help="threads BLAS may use while timing, 1..1024 (default 1, so that the times do "
        "not depend on the load of the machine); pinned with threadpoolctl, without which "
        "BLAS is not pinned and this option is refused",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar on stderr")
    parser.set_defaults(func=run, parser=parser)
    return parser
