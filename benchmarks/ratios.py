"""Time W1-W6 beside their hand-written NumPy floors and print the ratios (no asv).

Usage, from the repository root::

    .venv/bin/python benchmarks/ratios.py                # all of them, one BLAS thread
    .venv/bin/python benchmarks/ratios.py --only W1 --repeat 50
    .venv/bin/python benchmarks/ratios.py --pin           # pinned to one core (idle machine)
    .venv/bin/python benchmarks/ratios.py --only W2 --torch --keep-freed-memory

Each case and its floor are timed alternately in the same process (so drift hits both), each
sample is ``timeit`` of a calibrated number of calls (garbage collector off, as timeit does),
and the figure is the median of the samples. Results are checked against the floor before
timing. The output is a Markdown table, ready for a closing note.

W2 (the MLP step) allocates large temporaries on both sides, so with glibc's default
settings a run can land in a state where one side page-faults on every step (±50 %):
``--keep-freed-memory`` restarts the script with glibc told to keep freed memory
(``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``), which makes W2 reproducible.
``--torch`` adds PyTorch CPU's W2 step and W5 HVP (one thread) to the same run. W6 counts bytes with
``tracemalloc`` (one float64 W2 step).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

TARGETS = {
    "w1_fwd": "≤ 1.2 µs/op",
    "w1_fb": "≤ 2.5 µs/op and ≤ 3× floor",
    "w1_nograd": "≤ 1.5× floor",
    "w3": "≤ 1.1× floor",
    "w4_10": "≤ 15 µs",
    "w1_compiled": "≤ 1.3× floor",
    "w4_10_compiled": "≤ 5 µs",
    "w2": "≤ 1.05× floor",
    "w2_compiled": "≤ 1.0× floor",
    "w2_torch": "≤ 1× (never slower)",
    "cnn_torch": "≤ 1.3× PyTorch",
    "w5": "≤ 1.3× floor",
    "w6_peak": "≤ 1.1× floor",
    "w6_graph": "0 (nothing of the graph)",
}

#: glibc keeps freed memory (no trimming, no mmap below 32 MiB): no page faults per step.
KEEP_FREED = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(1 << 40)}


def _limit_threads(n: int, pin: bool) -> None:
    """Set BLAS/OpenMP thread counts (before NumPy is imported); optionally pin to one core.

    Pinning matches the design doc's "1t" setting, but on a shared machine the chosen core
    may be busy, which slows the whole run (both sides) by ~50 %: it is opt-in.
    """
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)
    if pin and n == 1 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})


def _calibrate(fn: Callable[[], Any], min_time: float) -> int:
    """Calls per sample so that one sample lasts at least ``min_time`` seconds."""
    number = 1
    while True:
        t = timeit.Timer(fn).timeit(number)
        if t >= min_time or number >= 1 << 20:
            return number
        number = max(number * 2, int(number * min_time / max(t, 1e-9) * 1.2))


def measure(
    cases: dict[str, Callable[[], Any]], repeat: int, min_time: float, budget: float
) -> dict[str, float]:
    """Median seconds per call of every case, sampled in alternation.

    ``budget`` caps the seconds spent on the group: slow cases (W4 central differences at
    n = 1000) get fewer samples, never fewer than 3.
    """
    numbers = {k: _calibrate(f, min_time) for k, f in cases.items()}
    timers = {k: timeit.Timer(f) for k, f in cases.items()}
    first = {k: timers[k].timeit(numbers[k]) for k in cases}  # also a warm-up
    per_round = sum(first.values())
    rounds = max(3, min(repeat, int(budget / max(per_round, 1e-9))))
    samples: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(rounds):
        for k in cases:
            samples[k].append(timers[k].timeit(numbers[k]) / numbers[k])
    return {k: statistics.median(v) for k, v in samples.items()}


def _fmt(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def _check(name: str, got: Any, want: Any, rtol: float) -> None:
    import numpy as np

    got = np.asarray(got)
    if not np.allclose(got, want, rtol=rtol, atol=rtol):
        err = np.max(np.abs(got - want))
        raise AssertionError(f"{name}: autodiffx and the NumPy floor disagree (max |diff| {err})")


def run_w1(c: Any, ad: Any, args: argparse.Namespace) -> list[list[str]]:
    x_np = c.w1_input()
    x = ad.tensor(x_np, requires_grad=True)
    x_const = ad.tensor(x_np)
    want = c.w1_numpy_forward_backward(x_np)[1]
    _check("W1", c.w1_autodiffx_forward_backward(x).data, want, 1e-12)
    t = measure(
        {
            "fwd": lambda: c.w1_chain(x),
            "fb": lambda: c.w1_autodiffx_forward_backward(x),
            "nograd": lambda: c.w1_chain(x_const),
            "np_fwd": lambda: c.w1_numpy_forward(x_np),
            "np_fb": lambda: c.w1_numpy_forward_backward(x_np),
        },
        args.repeat,
        args.min_time,
        args.budget,
    )
    n = c.W1_OPS
    t.update(_w2_compiled_times(c, args))

    def row(label: str, k: str, floor: str, target: str) -> list[str]:
        return [
            label,
            f"{_fmt(t[k])} ({t[k] / n * 1e6:.2f} µs/op)",
            f"{_fmt(t[floor])} ({t[floor] / n * 1e6:.2f} µs/op)",
            f"{t[k] / t[floor]:.2f}×",
            target,
        ]

    return [
        row("W1 forward, recording", "fwd", "np_fwd", TARGETS["w1_fwd"]),
        row("W1 forward + backward", "fb", "np_fb", TARGETS["w1_fb"]),
        row("W1 forward, no input requires grad", "nograd", "np_fwd", TARGETS["w1_nograd"]),
    ]


def _torch_w2_step(c: Any, dtype: str) -> Callable[[], Any]:
    """PyTorch CPU's W2 step (same sizes, loss, optimizer), one thread."""
    import torch

    torch.set_num_threads(1)
    a, b, h, d = c.W2_SIZES
    nn = torch.nn
    model = nn.Sequential(nn.Linear(a, b), nn.Tanh(), nn.Linear(b, h), nn.Tanh(), nn.Linear(h, d))
    model = model.to(getattr(torch, dtype))
    opt = torch.optim.SGD(model.parameters(), lr=c.W2_LR)
    x, y = (torch.from_numpy(v) for v in c.w2_input(dtype))
    loss_fn = torch.nn.functional.cross_entropy

    def step() -> Any:
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss

    return step


def run_w2(c: Any, ad: Any, args: argparse.Namespace) -> list[list[str]]:
    rows = []
    for dtype in c.W2_DTYPES:
        model, opt = c.w2_model(dtype)
        params = c.w2_numpy_params(model)
        x_np, y = c.w2_input(dtype)
        x = ad.tensor(x_np)
        rtol = 1e-5 if dtype == "float32" else 1e-12
        _check(
            f"W2 {dtype} loss",
            c.w2_autodiffx_step(model, opt, x, y).data,
            c.w2_numpy_step(params, x_np, y),
            rtol,
        )
        for k, p in enumerate(model.parameters()):
            _check(f"W2 {dtype} parameter {k} after a step", p.data, params[k], rtol)
        cases = {
            "ad": lambda m=model, o=opt, x=x, y=y: c.w2_autodiffx_step(m, o, x, y),
            "np": lambda p=params, x=x_np, y=y: c.w2_numpy_step(p, x, y),
        }
        if args.torch:
            cases["torch"] = _torch_w2_step(c, dtype)
        t = measure(cases, args.repeat, args.min_time, args.budget)
        label = f"W2 MLP step {dtype} (784-256-256-10, batch 128)"
        rows.append(
            [label, _fmt(t["ad"]), _fmt(t["np"]), f"{t['ad'] / t['np']:.3f}×", TARGETS["w2"]]
        )
        if args.torch:
            rows.append(
                [
                    f"W2 MLP step {dtype}: PyTorch CPU in the floor column",
                    _fmt(t["ad"]),
                    _fmt(t["torch"]),
                    f"{t['ad'] / t['torch']:.3f}×",
                    TARGETS["w2_torch"],
                ]
            )
    return rows


def run_cnn(c: Any, ad: Any, args: argparse.Namespace) -> list[list[str]]:
    """The digits CNN step of bench_nn (CNNStep) beside PyTorch's (with --torch)."""
    from benchmarks import bench_nn

    rows = []
    for dtype in ("float32", "float64"):
        mine = bench_nn.CNNStep()
        mine.setup(dtype)
        cases = {"ad": lambda s=mine, d=dtype: s.time_autodiffx_step(d)}
        if args.torch:
            import torch

            torch.set_num_threads(args.threads)
            theirs = bench_nn.CNNPyTorchStep()
            theirs.setup(dtype)
            cases["torch"] = lambda s=theirs, d=dtype: s.time_pytorch_step(d)
        t = measure(cases, args.repeat, args.min_time, args.budget)
        has = "torch" in t
        rows.append(
            [
                f"digits CNN step {dtype} (batch 64, Adam): PyTorch CPU in the floor column",
                _fmt(t["ad"]),
                _fmt(t["torch"]) if has else "(--torch)",
                f"{t['ad'] / t['torch']:.2f}×" if has else "",
                TARGETS["cnn_torch"],
            ]
        )
    return rows


def run_w6(c: Any, ad: Any, args: argparse.Namespace) -> list[list[str]]:
    model, opt = c.w2_model("float64")
    params = c.w2_numpy_params(model)
    x_np, y = c.w2_input("float64")
    x = ad.tensor(x_np)
    for _ in range(2):  # warm-up (imports, caches)
        c.w2_autodiffx_step(model, opt, x, y)
        c.w2_numpy_step(params, x_np, y)
    m = c.w6_autodiffx_memory(model, opt, x, y)
    f = c.w6_numpy_memory(params, x_np, y)
    mib = c.MIB
    graph = m["after_backward"] - m["grads"]
    return [
        [
            "W6 peak of one W2 float64 step (tracemalloc, above the start)",
            f"{m['peak'] / mib:.2f} MiB",
            f"{f['peak'] / mib:.2f} MiB",
            f"{m['peak'] / f['peak']:.2f}×",
            TARGETS["w6_peak"],
        ],
        [
            f"W6 held after backward() besides the gradients ({m['grads'] / mib:.2f} MiB)",
            f"{graph / 1024:.1f} KiB",
            "",
            "",
            TARGETS["w6_graph"],
        ],
        [
            "W6 held by the graph after the forward (saved activations)",
            f"{m['graph'] / mib:.2f} MiB",
            "",
            "",
            "",
        ],
    ]


def run_w3(c: Any, ad: Any, args: argparse.Namespace) -> list[list[str]]:
    x_np = c.w3_input()
    x = ad.tensor(x_np, requires_grad=True)
    _check("W3", c.w3_autodiffx_gradient(x).data, c.w3_numpy_gradient(x_np)[1], 1e-9)
    t = measure(
        {"ad": lambda: c.w3_autodiffx_gradient(x), "np": lambda: c.w3_numpy_gradient(x_np)},
        args.repeat,
        args.min_time,
        args.budget,
    )
    return [
        [
            "W3 gradient, x (1e6,)",
            _fmt(t["ad"]),
            _fmt(t["np"]),
            f"{t['ad'] / t['np']:.2f}×",
            TARGETS["w3"],
        ]
    ]


def run_w5(c: Any, ad: Any, args: argparse.Namespace) -> list[list[str]]:
    """HVP of sum(tanh(A @ x)**2), n = 1000: ad.hvp (forward-over-reverse) vs hand-derived."""
    from benchmarks.bench_func import _w5_problem, w5_f, w5_hand_hvp

    a, x, v = _w5_problem()
    f = w5_f(a)
    _check("W5", ad.hvp(f, (x,), (v,))[1].data, w5_hand_hvp(a, x, v), 1e-12)
    cases = {
        "ad": lambda: ad.hvp(f, (x,), (v,)),
        "np": lambda: w5_hand_hvp(a, x, v),
    }
    if args.torch:
        import torch

        torch.set_num_threads(args.threads)
        ta, tx, tv = (torch.from_numpy(z) for z in (a, x, v))

        def tf(z: Any) -> Any:
            return (torch.tanh(ta @ z) ** 2).sum()

        def torch_hvp() -> Any:
            return torch.func.jvp(torch.func.grad(tf), (tx,), (tv,))[1]

        _check("W5 (PyTorch)", torch_hvp().numpy(), w5_hand_hvp(a, x, v), 1e-12)
        cases["torch"] = torch_hvp
    t = measure(cases, args.repeat, args.min_time, args.budget)
    rows = [
        [
            "W5 HVP, n=1000 (forward-over-reverse)",
            _fmt(t["ad"]),
            _fmt(t["np"]),
            f"{t['ad'] / t['np']:.2f}×",
            TARGETS["w5"],
        ]
    ]
    if "torch" in t:
        rows.append(
            [
                "W5, PyTorch torch.func.jvp(grad) in the same run",
                _fmt(t["torch"]),
                _fmt(t["np"]),
                f"{t['torch'] / t['np']:.2f}× (autodiffx/PyTorch {t['ad'] / t['torch']:.2f})",
                "",
            ]
        )
    return rows


def run_w4(c: Any, ad: Any, args: argparse.Namespace) -> list[list[str]]:
    rows = []
    for n in c.W4_SIZES:
        a_np, x_np = c.w4_input(n)
        a = ad.tensor(a_np)
        x = ad.tensor(x_np, requires_grad=True)
        want = c.w4_numpy_gradient(a_np, x_np)[1]
        _check(f"W4 n={n}", c.w4_autodiffx_gradient(a, x).data, want, 1e-12)
        fd = c.w4_numpy_central_differences(a_np, x_np)
        _check(f"W4 n={n} (central differences)", fd, want, 1e-6)
        t = measure(
            {
                "ad": lambda a=a, x=x: c.w4_autodiffx_gradient(a, x),
                "np": lambda a=a_np, x=x_np: c.w4_numpy_gradient(a, x),
                "fd": lambda a=a_np, x=x_np: c.w4_numpy_central_differences(a, x),
            },
            args.repeat,
            args.min_time,
            args.budget,
        )
        target = TARGETS["w4_10"] if n == 10 else ""
        rows.append(
            [
                f"W4 n={n}, gradient vs hand-written",
                _fmt(t["ad"]),
                _fmt(t["np"]),
                f"{t['ad'] / t['np']:.2f}×",
                target,
            ]
        )
        rows.append(
            [
                f"W4 n={n}, gradient vs central differences ({2 * n} evaluations)",
                _fmt(t["ad"]),
                _fmt(t["fd"]),
                f"{t['ad'] / t['fd']:.3g}× (AD {t['fd'] / t['ad']:.3g}× faster)",
                "",
            ]
        )
    return rows


def run_compiled(c: Any, ad: Any, args: argparse.Namespace) -> list[list[str]]:
    """``ad.compile`` (issue 14): W1's value and gradient, W4 n=10's gradient, compiled and
    eager, beside the floors."""
    import numpy as np

    x = c.w1_input()
    cw1 = c.w1_compiled()
    cw1(x)  # records
    want = c.w1_value_and_grad(x)
    got = cw1(x)
    if not all(np.array_equal(g.data, w.data) for g, w in zip(got, want)):
        raise AssertionError("W1 compiled: the replay differs from eager")
    a, x4 = c.w4_input(10)
    cw4 = c.w4_compiled()
    cw4(x4, a)
    if not np.array_equal(cw4(x4, a).data, ad.grad(c.w4_loss)(x4, a).data):
        raise AssertionError("W4 compiled: the replay differs from eager")
    t = measure(
        {
            "w1c": lambda: cw1(x),
            "w1e": lambda: c.w1_value_and_grad(x),
            "w1np": lambda: c.w1_numpy_forward_backward(x),
            "w4c": lambda: cw4(x4, a),
            "w4e": lambda: ad.grad(c.w4_loss)(x4, a),
            "w4np": lambda: c.w4_numpy_gradient(a, x4),
        },
        args.repeat,
        args.min_time,
        args.budget,
    )
    n = c.W1_OPS
    t.update(_w2_compiled_times(c, args))

    def row(label: str, k: str, floor: str, target: str) -> list[str]:
        per = f" ({t[k] / n * 1e6:.2f} µs/op)" if k.startswith("w1") else ""
        return [label, _fmt(t[k]) + per, _fmt(t[floor]), f"{t[k] / t[floor]:.2f}×", target]

    return [
        row("W1 compiled value_and_grad", "w1c", "w1np", TARGETS["w1_compiled"]),
        row("W1 eager value_and_grad (same run)", "w1e", "w1np", ""),
        row("W4 n=10 compiled grad", "w4c", "w4np", TARGETS["w4_10_compiled"]),
        row("W4 n=10 eager grad (same run)", "w4e", "w4np", ""),
        *[
            row(f"W2 {d} compiled step", f"w2c{d}", f"w2np{d}", TARGETS["w2_compiled"])
            for d in c.W2_DTYPES
        ],
        *[row(f"W2 {d} eager step (same run)", f"w2e{d}", f"w2np{d}", "") for d in c.W2_DTYPES],
    ]


def _w2_compiled_times(c: Any, args: argparse.Namespace) -> dict[str, float]:
    """W2's step compiled, eager and hand-written, per dtype (checked: the compiled step's
    loss and parameters equal eager's, bit for bit, after two steps)."""
    import numpy as np

    cases = {}
    for d in c.W2_DTYPES:
        x, y = c.w2_input(d)
        (m1, o1), (m2, o2) = c.w2_model(d), c.w2_model(d)
        cstep = c.w2_compiled(m2, o2)
        for _ in range(2):
            want, got = c.w2_autodiffx_step(m1, o1, x, y), cstep(x, y)
            same = [
                np.array_equal(p.data, q.data) for p, q in zip(m1.parameters(), m2.parameters())
            ]
            if not (np.array_equal(want.data, got.data) and all(same)):
                raise AssertionError(f"W2 {d} compiled: the replay differs from eager")
        params = c.w2_numpy_params(m2)
        cases[f"w2c{d}"] = lambda f=cstep, x=x, y=y: f(x, y)
        cases[f"w2e{d}"] = lambda m=m1, o=o1, x=x, y=y: c.w2_autodiffx_step(m, o, x, y)
        cases[f"w2np{d}"] = lambda p=params, x=x, y=y: c.w2_numpy_step(p, x, y)
    return measure(cases, args.repeat, args.min_time, args.budget)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only",
        action="append",
        choices=["W1", "W2", "W3", "W4", "W5", "W6", "CNN", "COMPILE"],
        help="repeatable",
    )
    parser.add_argument("--repeat", type=int, default=30, help="samples per case (median)")
    parser.add_argument("--min-time", type=float, default=0.02, help="seconds per sample")
    parser.add_argument("--budget", type=float, default=20.0, help="seconds per group, at most")
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads (default 1)")
    parser.add_argument("--pin", action="store_true", help="pin to one core (with --threads 1)")
    parser.add_argument("--torch", action="store_true", help="W2, W5, CNN: add PyTorch CPU")
    parser.add_argument(
        "--keep-freed-memory", action="store_true", help="restart with glibc keeping freed memory"
    )
    args = parser.parse_args(argv)
    if args.keep_freed_memory and any(os.environ.get(k) != v for k, v in KEEP_FREED.items()):
        script = [sys.executable, str(Path(__file__).resolve())]
        os.execve(
            sys.executable,
            script + (sys.argv[1:] if argv is None else argv),
            {**os.environ, **KEEP_FREED},
        )
    _limit_threads(args.threads, args.pin)

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import numpy as np

    import autodiffx as ad
    from benchmarks import common as c

    print(
        f"autodiffx {ad.__version__} ({Path(ad.__file__).parent}), NumPy {np.__version__}, "
        f"Python {platform.python_version()}, {args.threads} thread(s)"
        f"{', pinned' if args.threads == 1 and args.pin else ''}"
        f"{', glibc keeping freed memory' if args.keep_freed_memory else ''}; "
        f"medians of up to {args.repeat} alternated samples\n"
    )
    rows: list[list[str]] = []
    runners = {
        "W1": run_w1,
        "W2": run_w2,
        "W3": run_w3,
        "W4": run_w4,
        "W5": run_w5,
        "W6": run_w6,
        "CNN": run_cnn,
        "COMPILE": run_compiled,
    }
    for name in args.only or list(runners):
        rows += runners[name](c, ad, args)
    head = ["workload", "autodiffx", "NumPy floor", "ratio", "target"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print("| " + " | ".join(r) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
