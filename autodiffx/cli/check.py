"""``autodiffx check``: an expression's gradient by reverse and forward mode and by every
finite-difference scheme, with a verdict (agreement, a kink, a mismatch). Expressions are read
by the safe parser of :mod:`autodiffx.expr` (never ``eval``)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import numpy as np

from ..expr import Expression
from ._expression import add_arguments as add_expression_arguments
from ._expression import expression, point
from .argtypes import positive_float
from .report import fmt_error

SCHEMES = ("forward", "backward", "central", "complex")
SCHEME_LABEL = {
    "forward": "FD forward",
    "backward": "FD backward",
    "central": "FD central",
    "complex": "FD complex step",
}


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
        label = SCHEME_LABEL[scheme]
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
            err_abs, err_rel = fmt_error(e), fmt_error(e / scale)
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


def run(args: argparse.Namespace) -> int:
    """Run ``autodiffx check`` with parsed arguments; return the exit status (0: AD and the
    differences agree, 1: they do not, or f is not differentiable or finite there).

    Examples
    --------
    >>> from autodiffx.cli import build_parser
    >>> run(build_parser().parse_args(["check", "x**2", "--at", "x=3"]))  # doctest: +ELLIPSIS
    f(x) = x**2
    at x = 3:  f = 9
    ...
    verdict: OK (AD reverse = forward; central differences agree to 1e-06)
    0
    """
    expr = expression(args)
    values = point(args, expr)
    names = list(values)
    x = np.array([values[n] for n in names], dtype=np.float64)
    with np.errstate(all="ignore"):
        value, rev, fwd = _ad_gradients(expr, names, x)
    fn = expr.function()
    rows = [("AD reverse mode", rev, "-"), ("AD forward mode", fwd, "-"), *_fd_rows(fn, x, args.h)]
    print(f"f({', '.join(names)}) = {expr.text}")
    print(f"at {', '.join(f'{n} = {values[n]:g}' for n in names)}:  f = {_fmt_num(value)}\n")
    _print_table(names, rows, rev)
    central = next(g for label, g, _ in rows if label == SCHEME_LABEL["central"])
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


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``check`` subparser: EXPR, --at, --h, --rtol.

    >>> from autodiffx.cli import build_parser
    >>> build_parser().parse_args(["check", "x**2", "--at", "x=3", "--rtol", "1e-8"]).rtol
    1e-08
    """
    parser = subparsers.add_parser(
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
    add_expression_arguments(parser, "x**2 * sin(y)")
    parser.add_argument(
        "--h", type=positive_float, default=None, help="step for every scheme (default: optimal)"
    )
    parser.add_argument(
        "--rtol",
        type=positive_float,
        default=1e-6,
        help="tolerance of the AD / central-difference agreement (default 1e-6)",
    )
    parser.set_defaults(func=run, parser=parser)
    return parser
