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
import importlib.util
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
    "w1_compiled": "≤ 1.3× floor, ≥ 3× faster than PyTorch",
    "w3_compiled": "≤ 1.0× floor",
    "w4_compiled": "≤ 5 µs",
    "w2_compile": "≤ 50 ms",
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


def _compiled_cases(c: Any, ad: Any) -> dict[str, Any]:
    """W1, W3, W4 n=10 and the nested case compiled (recorded, then checked bit-identical to
    eager), eager, and by hand."""
    import numpy as np

    def same(name: str, got: Any, want: Any) -> None:
        got, want = ad.func.tree_flatten(got)[0], ad.func.tree_flatten(want)[0]
        if not all(np.array_equal(g.data, w.data) for g, w in zip(got, want, strict=True)):
            raise AssertionError(f"{name} compiled: the replay differs from eager")

    x1, x3, xn = c.w1_input(), c.w3_input(), c.nested_input()
    a4, x4 = c.w4_input(10)
    cw1, cw3, cw4, cn = c.w1_compiled(), c.w3_compiled(), c.w4_compiled(), c.nested_compiled()
    g3, g4 = ad.value_and_grad(c.w3_loss), ad.grad(c.w4_loss)
    gn = ad.grad(c.nested_outer)
    calls = [(cw1, (x1,), c.w1_value_and_grad), (cw3, (x3,), g3), (cw4, (x4, a4), g4)]
    for f, args, eager in [*calls, (cn, (xn,), gn)]:
        f(*args)  # records
        same(f.__name__, f(*args), eager(*args))
    _check("nested", cn(xn).data, c.nested_numpy_gradient(xn), 1e-12)
    fused = {}
    cf1 = c.w1_fused()
    if cf1 is not None:  # (numexpr installed)
        cf1(x1)  # records
        same("W1 fuse=numexpr", cf1(x1), c.w1_value_and_grad(x1))
        fused["w1f"] = lambda: cf1(x1)
    return {
        **fused,
        "w1c": lambda: cw1(x1),
        "w1e": lambda: c.w1_value_and_grad(x1),
        "w1np": lambda: c.w1_numpy_forward_backward(x1),
        "w3c": lambda: cw3(x3),
        "w3e": lambda: g3(x3),
        "w3np": lambda: c.w3_numpy_gradient(x3),
        "w4c": lambda: cw4(x4, a4),
        "w4e": lambda: g4(x4, a4),
        "w4np": lambda: c.w4_numpy_gradient(a4, x4),
        "nc": lambda: cn(xn),
        "ne": lambda: gn(xn),
        "nf": lambda: c.nested_outer(xn),
        "nnp": lambda: c.nested_numpy_gradient(xn),
    }


def _torch_compiled_cases(c: Any, args: argparse.Namespace) -> dict[str, Any]:
    """PyTorch eager's W1, W3, W4 n=10 (checked against the floors), {} without torch."""
    cases = c.torch_cases(args.threads)
    if cases is None:
        return {}
    _check("W1 (PyTorch)", cases["w1"]()[1], c.w1_numpy_forward_backward(c.w1_input())[1], 1e-12)
    _check("W3 (PyTorch)", cases["w3"](), c.w3_numpy_gradient(c.w3_input())[1], 1e-9)
    _check("W4 (PyTorch)", cases["w4"](), c.w4_numpy_gradient(*c.w4_input(10))[1], 1e-12)
    return {f"{k}torch": f for k, f in cases.items()}


def run_compiled(c: Any, ad: Any, args: argparse.Namespace) -> list[list[str]]:
    """``ad.compile`` (issue 14): W1-W4 compiled, eager and PyTorch's (when ``import torch``
    works) beside the floors, the nested case, W2's compile time and W2's and W3's peaks."""
    t = measure(
        {**_compiled_cases(c, ad), **_torch_compiled_cases(c, args)},
        args.repeat,
        args.min_time,
        args.budget,
    )
    t.update(_w2_compiled_times(c, args))
    n = c.W1_OPS

    def row(label: str, k: str, floor: str, target: str = "", vs: str = "") -> list[str]:
        if k not in t:
            return [label, "(no torch)", _fmt(t[floor]), "", target]
        per = f" ({t[k] / n * 1e6:.2f} µs/op)" if k.startswith("w1") else ""
        ratio = f"{t[k] / t[floor]:.2f}×"
        if vs:  # (PyTorch's row: its time over the compiled one's)
            ratio += f" (PyTorch / compiled: {t[k] / t[vs]:.2f})"
        return [label, _fmt(t[k]) + per, _fmt(t[floor]), ratio, target]

    rows = []
    if "w1f" in t:
        rows.append(row('W1 compiled, fuse="numexpr", value_and_grad', "w1f", "w1np"))
    else:
        rows.append(['W1 compiled, fuse="numexpr"', "(no numexpr)", _fmt(t["w1np"]), "", ""])
    for w, what in (
        ("w1", "value_and_grad"),
        ("w3", "value_and_grad, x (1e6,)"),
        ("w4", "n=10 grad"),
    ):
        rows += [
            row(f"{w.upper()} compiled {what}", f"{w}c", f"{w}np", TARGETS[f"{w}_compiled"]),
            row(f"{w.upper()} eager {what} (same run)", f"{w}e", f"{w}np"),
            row(f"{w.upper()} PyTorch eager (same run)", f"{w}torch", f"{w}np", vs=f"{w}c"),
        ]
    for d in c.W2_DTYPES:
        rows += [
            row(f"W2 {d} compiled step", f"w2c{d}", f"w2np{d}", TARGETS["w2_compiled"]),
            row(f"W2 {d} eager step (same run)", f"w2e{d}", f"w2np{d}"),
            row(f"W2 {d} PyTorch eager (same run)", f"w2t{d}", f"w2np{d}", vs=f"w2c{d}"),
        ]
    rows += [
        row("nested: compiled grad of f (f calls ad.grad), 10 elements", "nc", "nnp"),
        row("nested: eager grad of f (same run)", "ne", "nnp"),
        row("nested: compiled grad of f / eager f in the floor column", "nc", "nf", "≤ 10×"),
    ]
    return rows + _compile_time_and_memory_rows(c, args)


def _compile_time_and_memory_rows(c: Any, args: argparse.Namespace) -> list[list[str]]:
    """W2's compile time (a fresh ``ad.compile`` and its first call, median of 10, beside the
    eager step) and the tracemalloc peaks of W2's compiled step and W3's compiled gradient."""
    import statistics
    import time

    rows = []
    for d in c.W2_DTYPES:
        record, x, y = c.w2_record(d), *c.w2_input(d)
        model, opt = c.w2_model(d)
        record()  # (a first recording warms lazy imports)
        times = []
        for _ in range(10):
            t0 = time.perf_counter()
            record()
            t1 = time.perf_counter()
            c.w2_autodiffx_step(model, opt, x, y)
            times.append((t1 - t0, time.perf_counter() - t1))
        rec, step = (statistics.median(v) for v in zip(*times, strict=True))
        rows.append(
            [
                f"W2 {d} compile time (eager step in the floor column)",
                _fmt(rec),
                _fmt(step),
                f"{rec / step:.1f}×",
                TARGETS["w2_compile"],
            ]
        )
    for label, fn, floor in _peak_cases(c):
        a, b = c.peak_bytes(fn), c.peak_bytes(floor)
        mib = c.MIB
        rows.append(
            [label, f"{a / mib:.2f} MiB", f"{b / mib:.2f} MiB", f"{a / b:.2f}×", "≤ 1.0× floor"]
        )
    return rows


def _peak_cases(c: Any) -> list[tuple[str, Any, Any]]:
    """(label, compiled call, hand-written call) of the peaks measured."""
    out = []
    for d in c.W2_DTYPES:
        x, y = c.w2_input(d)
        model, opt = c.w2_model(d)
        cstep = c.w2_compiled(model, opt)
        cstep(x, y)
        params = c.w2_numpy_params(model)
        out.append(
            (
                f"W2 {d} peak of a compiled step (tracemalloc)",
                lambda f=cstep, x=x, y=y: f(x, y),
                lambda p=params, x=x, y=y: c.w2_numpy_step(p, x, y),
            )
        )
    x3, cw3 = c.w3_input(), c.w3_compiled()
    cw3(x3)
    out.append(
        ("W3 peak of the compiled value_and_grad", lambda: cw3(x3), lambda: c.w3_numpy_gradient(x3))
    )
    return out


def _w2_compiled_times(c: Any, args: argparse.Namespace) -> dict[str, float]:
    """W2's step compiled, eager, hand-written and PyTorch's (if installed), per dtype
    (checked: the compiled step's loss and parameters equal eager's, bit for bit, after two
    steps)."""
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
        if importlib.util.find_spec("torch") is not None:
            cases[f"w2t{d}"] = _torch_w2_step(c, d)
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
