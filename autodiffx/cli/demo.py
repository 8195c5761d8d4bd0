"""``autodiffx demo``: one gradient by reverse mode, forward mode and finite differences."""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from .argtypes import memory_problem, non_negative_int, positive_int
from .report import fmt_error


def demo_memory(n: int) -> float:
    """Bytes ``autodiffx demo --n n`` needs at its peak, roughly: the n x n matrix A, and a
    complex copy of it that NumPy makes for each complex-step evaluation ``A @ (x + ih)``.

    Examples
    --------
    >>> f"{demo_memory(100_000):.2g}"
    '2.4e+11'
    """
    return 24.0 * n * n + 70e6  # NOTE: 70 MB, a measured Python + NumPy + autodiffx process


def run(args: argparse.Namespace) -> int:
    """Run ``autodiffx demo`` with parsed arguments; return the exit status.

    Examples
    --------
    >>> from autodiffx.cli import build_parser
    >>> run(build_parser().parse_args(["demo", "--n", "3"]))  # doctest: +ELLIPSIS
    f(x) = sum(tanh(A @ x)**2), A: 3x3, ...
    0
    """
    import autodiffx as ad

    n = args.n
    problem = memory_problem(demo_memory(n), f"--n {n}")
    if problem:
        args.parser.error(problem)
    rng = np.random.default_rng(args.seed)
    a = rng.standard_normal((n, n)) / np.sqrt(n)
    x = ad.tensor(rng.standard_normal(n), requires_grad=True)

    def f(v: ad.Tensor) -> ad.Tensor:
        return ad.sum(ad.tanh(a @ v) ** 2)

    y = f(x)
    y.backward()
    exact = 2 * a.T @ (np.tanh(a @ x.data) * (1 - np.tanh(a @ x.data) ** 2))
    print(f"f(x) = sum(tanh(A @ x)**2), A: {n}x{n}, f = {y.item():.12g}")
    print("reverse mode vs the hand-derived gradient:")
    print(f"  max |AD           - exact| = {fmt_error(np.abs(x.grad.data - exact).max())}")
    for scheme in ("forward", "central", "complex"):
        fd = ad.fd.gradient(lambda v: f(ad.tensor(v)), x.data, scheme=scheme)
        print(f"  max |FD {scheme:<9s}- exact| = {fmt_error(np.abs(fd - exact).max())}")
    v = rng.standard_normal(n)
    with ad.forward.dual_level():
        _, t = ad.forward.unpack_dual(f(ad.forward.make_dual(x.detach(), v)))
    print(f"forward mode: |<grad, v> - jvp| = {fmt_error(abs(exact @ v - t.item()))}")
    return 0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``demo`` subparser: --n, --seed.

    >>> from autodiffx.cli import build_parser
    >>> build_parser().parse_args(["demo", "--n", "7"]).n
    7
    """
    parser = subparsers.add_parser(
        "demo",
        help="gradients by reverse mode, forward mode and finite differences",
        description="Compare reverse mode, forward mode and finite differences on "
        "f(x) = sum(tanh(A @ x)**2).",
    )
    parser.add_argument(
        "--n",
        type=positive_int,
        default=50,
        help="problem size (default 50); memory grows as n**2, the time of the finite "
        "differences as n**3",
    )
    parser.add_argument("--seed", type=non_negative_int, default=0, help="random seed (default 0)")
    parser.set_defaults(func=run, parser=parser)
    return parser
