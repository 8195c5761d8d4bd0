"""Command-line subcommands for studying derivatives: ``trace``, ``check`` and ``bench``.

``add_subcommands(subparsers)`` registers them on the ``autodiffx`` command's subparsers;
``python -m autodiffx.cli_study`` runs them on their own. Expressions are read by the safe
parser of :mod:`autodiffx.expr` (never ``eval``); a bad expression or point exits with status
2 and a one-line message.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ._argtypes import (
    finite_float,
    float_in,
    int_in,
    memory_problem,
    non_negative_int,
    output_dir_problem,
    output_file_problem,
    positive_float,
)
from .expr import Expression, ExpressionError, parse
from .io import write_atomically

SCHEMES = ("forward", "backward", "central", "complex")
_SCHEME_LABEL = {
    "forward": "FD forward",
    "backward": "FD backward",
    "central": "FD central",
    "complex": "FD complex step",
}


# ----- arguments --------------------------------------------------------------------------------
def _split_top_level(text: str) -> list[str]:
    """Split at commas that are not inside parentheses (``x=atan2(1,2),y=3``)."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def _assignments(text: str) -> list[tuple[str, float]]:
    """``name=value[,name=value...]``; a value is a number or a constant expression (``pi/4``)."""
    out = []
    for part in _split_top_level(text):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or not name or not value.strip():
            raise argparse.ArgumentTypeError(f"expected name=value[,name=value...], got {text!r}")
        if not name.isidentifier() or name.startswith("_") or not name.isascii():
            raise argparse.ArgumentTypeError(f"{name!r} is not a variable name")
        try:
            e = parse(value)
            if e.variables:
                raise ExpressionError(f"a value cannot use variables ({', '.join(e.variables)})")
            with np.errstate(all="ignore"):
                v = float(e.evaluate({}, backend="numpy"))
        except ExpressionError as err:
            raise argparse.ArgumentTypeError(f"value of {name}: {err}") from None
        if not np.isfinite(v):
            raise argparse.ArgumentTypeError(f"value of {name}: {value.strip()} is {v}, not finite")
        out.append((name, v))
    return out


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in text.replace(" ", "").split(",") if s]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected sizes like 10,100,1000, got {text!r}") from None
    if not sizes or any(n < 1 or n > 100_000 for n in sizes):
        raise argparse.ArgumentTypeError(f"sizes must be integers in 1..100000, got {text!r}")
    return sorted(set(sizes))


def _point(args: argparse.Namespace, expr: Expression) -> dict[str, float]:
    """The --at values, in the order given, checked against the expression's variables."""
    values: dict[str, float] = {}
    for group in args.at:
        for name, v in group:
            if name in values:
                _fail(args, f"--at gives {name} twice")
            values[name] = v
    if not expr.variables:
        _fail(args, f"{expr.text!r} has no variables: nothing to differentiate")
    missing = [v for v in expr.variables if v not in values]
    if missing:
        _fail(args, f"no value for {', '.join(missing)}: add --at {missing[0]}=...")
    extra = [v for v in values if v not in expr.variables]
    if extra:
        _fail(
            args,
            f"{', '.join(extra)} not in {expr.text!r} (variables: {', '.join(expr.variables)})",
        )
    return values


def _fail(args: argparse.Namespace, message: str) -> None:
    args.study_parser.error(message)


def _expression(args: argparse.Namespace) -> Expression:
    try:
        return parse(args.expr)
    except ExpressionError as e:
        _fail(args, f"bad expression: {e}")
        raise  # pragma: no cover - error() exits


# ----- trace -------------------------------------------------------------------------------------
def _run_trace(args: argparse.Namespace) -> int:
    from .wengert import evaluation_trace

    expr = _expression(args)
    values = _point(args, expr)
    problem = args.dot and output_file_problem(args.dot, "dot", "--dot")
    if problem:
        _fail(args, problem)
    seed = None
    if args.seed:
        seed = {}
        for group in args.seed:
            for name, v in group:
                if name not in values:
                    _fail(args, f"--seed {name}: not an input ({', '.join(values)})")
                seed[name] = v
    tr = evaluation_trace(expr, **values)
    tables = [tr.primal(), tr.tangent(seed=seed), tr.adjoint(seed=args.ybar)]
    for t in tables:
        t.digits = args.digits
    print(f"f({', '.join(values)}) = {expr.text}\n")
    print("\n\n".join(t.to_text(ascii=args.ascii) for t in tables))
    if args.dot:
        dot = (tr.to_dot() + "\n").encode("utf-8")
        write_atomically(args.dot, lambda fh: fh.write(dot))
        print(f"\nGraphviz DOT written to {args.dot} (render: dot -Tpng {args.dot} -o graph.png)")
    return 0


# ----- check -------------------------------------------------------------------------------------
def _ad_gradients(expr: Expression, names: list[str], x: np.ndarray) -> tuple[Any, Any, Any]:
    """f(x), the reverse-mode gradient and the forward-mode gradient (one JVP per variable)."""
    import autodiffx as ad

    leaves = [ad.tensor(v, requires_grad=True) for v in x]
    y = expr.evaluate(dict(zip(names, leaves)))
    if not isinstance(y, ad.Tensor) or not y.requires_grad:
        rev = np.zeros_like(x)
        value = float(np.asarray(y))
    else:
        value = y.item()
        grads = ad.autograd.grad(y, leaves, allow_unused=True)
        rev = np.array([0.0 if g is None else g.item() for g in grads])
    fwd = np.zeros_like(x)
    for i in range(len(x)):
        with ad.forward.dual_level():
            duals = [
                ad.forward.make_dual(ad.tensor(v), ad.tensor(float(i == j)))
                for j, v in enumerate(x)
            ]
            out = expr.evaluate(dict(zip(names, duals)))
            t = ad.forward.unpack_dual(out).tangent if isinstance(out, ad.Tensor) else None
            fwd[i] = 0.0 if t is None else t.item()
    return value, rev, fwd


def _fmt_num(v: float) -> str:
    return "nan" if np.isnan(v) else f"{v:.16g}"


def _fd_rows(fn: Callable[..., Any], x: np.ndarray, h: float | None) -> list[tuple[str, Any, str]]:
    """(label, gradient or None, step text) of every finite-difference scheme."""
    import autodiffx as ad

    rows: list[tuple[str, Any, str]] = []
    for scheme in SCHEMES:
        label = _SCHEME_LABEL[scheme]
        steps = np.broadcast_to(
            np.asarray(h if h is not None else ad.fd.default_step(x, scheme), dtype=float), x.shape
        )
        try:
            with np.errstate(all="ignore"):
                g = np.asarray(ad.fd.gradient(lambda v: fn(*v), x, h=h, scheme=scheme), dtype=float)
        except (TypeError, ValueError) as e:  # e.g. a function without a complex extension
            detail = str(e).split(": ")[0] if scheme == "complex" else str(e)[:60]
            reason = "no complex evaluation" if scheme == "complex" else "failed"
            rows.append((label, None, f"n/a ({reason}: {detail})"))
            continue
        rows.append((label, g, ", ".join(f"{s:.2e}" for s in steps)))
    return rows


def _print_table(names: list[str], rows: list[tuple[str, Any, str]], rev: np.ndarray) -> None:
    heads = ["method", *[f"df/d{n}" for n in names], "abs error", "rel error", "step h"]
    table = []
    scale = max(1.0, float(np.max(np.abs(rev)))) if rev.size else 1.0
    for label, g, step in rows:
        if g is None:
            table.append([label, *["-"] * len(names), "-", "-", step])
            continue
        if label == "AD reverse mode":
            err_abs, err_rel = "(reference)", ""
        else:
            with np.errstate(all="ignore"):  # inf - inf at a point where f is not finite
                e = float(np.max(np.abs(g - rev)))
            err_abs, err_rel = f"{e:.1e}", f"{e / scale:.1e}"
        table.append([label, *[_fmt_num(v) for v in g], err_abs, err_rel, step])
    widths = [max(len(r[i]) for r in [heads, *table]) for i in range(len(heads))]
    for r in [heads, *table]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    print("\nerror: max |gradient - AD reverse| (relative: divided by max(1, |AD gradient|))")
    print("step h: one per variable (default ad.fd.default_step, the textbook-optimal step)")


def one_sided_derivatives(
    fn: Callable[..., Any], x: np.ndarray, h: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Left and right partial derivatives of ``fn(*x)`` by the one-sided second-order
    formulas ``(3 f(x) - 4 f(x - h) + f(x - 2h)) / 2h`` and its mirror, one step per variable.

    For a smooth f they agree to ``O(h**2)``; at a kink within ``2h`` they differ by the
    jump of the derivative (``abs`` at 0: -1 and 1).

    Examples
    --------
    >>> import numpy as np
    >>> one_sided_derivatives(lambda x: abs(x), np.array([0.0]), np.array([1e-5]))
    (array([-1.]), array([1.]))
    """
    x = np.asarray(x, dtype=np.float64)
    left, right = np.empty_like(x), np.empty_like(x)
    with np.errstate(all="ignore"):
        f0 = float(fn(*x))
        for i in range(x.size):

            def at(m: int, i: int = i) -> float:
                v = x.copy()
                v[i] += m * h[i]
                return float(fn(*v))

            left[i] = (3 * f0 - 4 * at(-1) + at(-2)) / (2 * h[i])
            right[i] = (-3 * f0 + 4 * at(1) - at(2)) / (2 * h[i])
    return left, right


# NOTE: gradcheck's default tolerances: the one-sided formulas carry about 8x the round-off
# of the central one, so a tighter test would call smooth points kinks.
_KINK_ATOL, _KINK_RTOL = 1e-5, 1e-3


def _kink_verdict(
    fn: Callable[..., Any], names: list[str], x: np.ndarray, h: float | None, rev: np.ndarray
) -> str | None:
    import autodiffx as ad

    steps = np.broadcast_to(
        np.asarray(h if h is not None else ad.fd.default_step(x, "central"), dtype=float), x.shape
    )
    left, right = one_sided_derivatives(fn, x, steps)
    allowed = _KINK_ATOL + _KINK_RTOL * np.maximum(np.abs(left), np.abs(right))
    kinks = [i for i in range(x.size) if not abs(left[i] - right[i]) <= allowed[i]]
    if not kinks:
        return None
    where = ", ".join(f"{names[i]} (left {left[i]:.6g}, right {right[i]:.6g})" for i in kinks)
    ad_values = ", ".join(f"{names[i]}: {rev[i]:.6g}" for i in kinks)
    return (
        f"verdict: KINK: the one-sided differences disagree in {where}: f is not "
        "differentiable at this point or within 2h of it, so differences are no reference "
        f"here; AD gives {ad_values} (at a kink, the value in the kink table of "
        "docs/conventions.md)"
    )


def _run_check(args: argparse.Namespace) -> int:
    expr = _expression(args)
    values = _point(args, expr)
    names = list(values)
    x = np.array([values[n] for n in names], dtype=np.float64)
    with np.errstate(all="ignore"):
        value, rev, fwd = _ad_gradients(expr, names, x)
    fn = expr.function()
    rows = [("AD reverse mode", rev, "-"), ("AD forward mode", fwd, "-"), *_fd_rows(fn, x, args.h)]
    print(f"f({', '.join(names)}) = {expr.text}")
    print(f"at {', '.join(f'{n} = {values[n]:g}' for n in names)}:  f = {_fmt_num(value)}\n")
    _print_table(names, rows, rev)
    central = next(g for label, g, _ in rows if label == _SCHEME_LABEL["central"])
    if not (np.all(np.isfinite(rev)) and np.isfinite(value)):
        print("verdict: f or its gradient is not finite at this point")
        return 1
    if not np.allclose(fwd, rev, rtol=1e-10, atol=1e-12):
        print("verdict: MISMATCH between reverse and forward mode")
        return 1
    kink = _kink_verdict(fn, names, x, args.h, rev)
    if kink:
        print(kink)
        return 1
    if central is not None and np.allclose(central, rev, rtol=args.rtol, atol=args.rtol):
        print(f"verdict: OK (AD reverse = forward; central differences agree to {args.rtol:g})")
        return 0
    print(
        f"verdict: MISMATCH between AD and central differences beyond {args.rtol:g} "
        "(a discontinuity near the point, or a wrong derivative rule)"
    )
    return 1


# ----- bench -------------------------------------------------------------------------------------
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
    sizes: Sequence[int], repeat: int = 3, budget: float = 0.2, seed: int = 0
) -> list[dict[str, Any]]:
    """Workload W4: the gradient of ``sum(tanh(A @ x))`` by AD and by finite differences.

    For each n: reverse mode (one backward pass), forward mode (n JVPs, one per basis
    vector) and central differences (2n evaluations of the NumPy function), each timed (best
    of ``repeat``) and compared with the hand-derived gradient ``Aᵀ (1 - tanh²(A x))``.

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


def _fmt_time(s: float) -> str:
    if s < 1e-3:
        return f"{s * 1e6:.1f} µs"
    if s < 1:
        return f"{s * 1e3:.2f} ms"
    return f"{s:.2f} s"


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
        ax.plot(study.hs, e, marker=".", label=_SCHEME_LABEL[scheme].removeprefix("FD "))
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
    n = max(args.sizes)
    return output_dir_problem(args.out, dict.fromkeys(BENCH_FILES, "png"), "--out") or (
        memory_problem(bench_memory(n), f"--sizes {n}")
    )


def _run_bench(args: argparse.Namespace) -> int:
    import autodiffx as ad

    problem = _bench_problem(args)
    if problem:
        _fail(args, problem)
    rows = bench_gradients(args.sizes, repeat=args.repeat, budget=args.budget, seed=args.seed)
    print("W4: gradient of sum(tanh(A @ x)), x in R^n; error = max |g - exact| / max |exact|")
    print(f"{'n':>7}  {'method':<26}{'evals':>7}  {'time':>10}  {'error':>9}")
    for r in rows:
        print(
            f"{r['n']:>7}  {r['method']:<26}{r['evals']:>7}  {_fmt_time(r['seconds']):>10}  "
            f"{r['error']:>9.1e}"
        )
    with np.errstate(all="ignore"):
        study = ad.fd.step_study(_squire_trapp, 1.5, hs=np.logspace(-16, -1, 61))
    print("\nStep-size study, f(x) = exp(x) / sqrt(sin(x)**3 + cos(x)**3) at x = 1.5:")
    print(f"{'scheme':<14}{'best h':>10}{'best error':>12}")
    for scheme, (h, e) in study.best.items():
        print(f"{scheme:<14}{h:>10.1e}{e:>12.1e}")
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


# ----- registration ------------------------------------------------------------------------------
def add_subcommands(subparsers: Any) -> None:
    """Register ``trace``, ``check`` and ``bench`` on an argparse subparsers object.

    Examples
    --------
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="autodiffx")
    >>> add_subcommands(parser.add_subparsers(dest="command"))
    >>> args = parser.parse_args(["trace", "x*y", "--at", "x=2,y=pi/2"])
    >>> args.at
    [[('x', 2.0), ('y', 1.5707963267948966)]]
    """
    at_help = (
        "the point: name=value pairs, comma-separated (repeatable); values may be constant "
        "expressions such as pi/4"
    )
    trace = subparsers.add_parser(
        "trace",
        help="print the evaluation trace (primal, tangent and adjoint tables) of an expression",
        description="Record the evaluation trace (Wengert list) of EXPR at a point and print "
        "the forward primal trace, the forward tangent trace (for a seed direction) and the "
        "reverse adjoint trace, numbered v_{1-n}..v_l as in Griewank & Walther.",
        epilog="example: autodiffx trace 'ln(x1) + x1*x2 - sin(x2)' --at x1=2,x2=5",
    )
    trace.add_argument("expr", metavar="EXPR", help="expression, e.g. 'ln(x1) + x1*x2 - sin(x2)'")
    trace.add_argument("--at", type=_assignments, action="append", required=True, help=at_help)
    trace.add_argument(
        "--seed",
        type=_assignments,
        action="append",
        help="tangent seed, e.g. x1=1 (default: 1 for the first variable, 0 for the others)",
    )
    trace.add_argument("--ybar", type=finite_float, default=None, help="adjoint seed ȳ (default 1)")
    trace.add_argument(
        "--digits", type=int_in(1, 17), default=3, help="decimals shown, 1..17 (default 3)"
    )
    trace.add_argument("--ascii", action="store_true", help="ASCII only (no Unicode symbols)")
    trace.add_argument(
        "--dot",
        metavar="FILE",
        help="also write the graph as Graphviz DOT (the directory must exist; an existing "
        "file is replaced only if it is an earlier DOT output)",
    )
    trace.set_defaults(func=_run_trace, study_parser=trace)

    check = subparsers.add_parser(
        "check",
        help="compare AD (reverse, forward) with every finite-difference scheme",
        description="Differentiate EXPR at a point by reverse and forward mode and by forward, "
        "backward, central and complex-step finite differences; print each gradient, its "
        "error against reverse mode and the step used. Exit status 1 if f or its gradient is "
        "not finite, if reverse and forward mode disagree, if the one-sided differences "
        "disagree (a kink: f is not differentiable there), or if AD and central differences "
        "disagree.",
        epilog="example: autodiffx check 'exp(x)/sqrt(sin(x)**3 + cos(x)**3)' --at x=1.5",
    )
    check.add_argument("expr", metavar="EXPR", help="expression, e.g. 'x**2 * sin(y)'")
    check.add_argument("--at", type=_assignments, action="append", required=True, help=at_help)
    check.add_argument(
        "--h", type=positive_float, default=None, help="step for every scheme (default: optimal)"
    )
    check.add_argument(
        "--rtol",
        type=positive_float,
        default=1e-6,
        help="tolerance of the AD / central-difference agreement (default 1e-6)",
    )
    check.set_defaults(func=_run_check, study_parser=check)

    bench = subparsers.add_parser(
        "bench",
        help="AD vs finite differences: time and accuracy of gradients as n grows (PNGs)",
        description="Workload W4: the gradient of sum(tanh(A @ x)) by reverse mode, by forward "
        "mode (n JVPs) and by central differences (2n evaluations), timed and compared with the "
        "exact gradient for each n; plus a step-size study of the finite-difference schemes. "
        "Prints tables and writes bench_time.png, bench_error.png and step_study.png.",
    )
    bench.add_argument(
        "--out",
        default="out",
        metavar="DIR",
        help="directory for the PNGs, created if missing (default ./out); existing files of "
        "the same names are replaced only if they are PNGs",
    )
    bench.add_argument(
        "--sizes", type=_sizes, default=[10, 100, 1000], help="values of n (default 10,100,1000)"
    )
    bench.add_argument(
        "--repeat", type=int_in(1, 1000), default=3, help="timing rounds, 1..1000 (default 3)"
    )
    bench.add_argument(
        "--budget",
        type=float_in(0, 60),
        default=0.2,
        help="seconds spent timing each method and size, 0..60 (default 0.2); a single call "
        "that takes longer is timed once",
    )
    bench.add_argument(
        "--seed", type=non_negative_int, default=0, help="random seed of A and x (default 0)"
    )
    bench.set_defaults(func=_run_bench, study_parser=bench)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one of the subcommands (``python -m autodiffx.cli_study trace ...``).

    Examples
    --------
    >>> main(["check", "x**2", "--at", "x=3"])  # doctest: +ELLIPSIS
    f(x) = x**2
    at x = 3:  f = 9
    ...
    verdict: OK (AD reverse = forward; central differences agree to 1e-06)
    0
    """
    parser = argparse.ArgumentParser(prog="autodiffx", description=__doc__)
    add_subcommands(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
