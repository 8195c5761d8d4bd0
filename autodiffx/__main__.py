"""Command line: ``python -m autodiffx`` (installed as ``autodiffx``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

import numpy as np

from ._argtypes import memory_problem, non_negative_int, positive_int


def demo_memory(n: int) -> float:
    """Bytes ``autodiffx demo --n n`` needs at its peak, roughly: the n x n matrix A, and a
    complex copy of it that NumPy makes for each complex-step evaluation ``A @ (x + ih)``.

    Examples
    --------
    >>> f"{demo_memory(100_000):.2g}"
    '2.4e+11'
    """
    return 24.0 * n * n + 70e6  # NOTE: 70 MB, a measured Python + NumPy + autodiffx process


def _demo(args: argparse.Namespace) -> int:
    import autodiffx as ad

    n = args.n
    problem = memory_problem(demo_memory(n), f"--n {n}")
    if problem:
        args.demo_parser.error(problem)
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
    print(f"  max |AD           - exact| = {np.abs(x.grad.data - exact).max():.3e}")
    for scheme in ("forward", "central", "complex"):
        fd = ad.fd.gradient(lambda v: f(ad.tensor(v)), x.data, scheme=scheme)
        print(f"  max |FD {scheme:<9s}- exact| = {np.abs(fd - exact).max():.3e}")
    v = rng.standard_normal(n)
    with ad.forward.dual_level():
        _, t = ad.forward.unpack_dual(f(ad.forward.make_dual(x.detach(), v)))
    print(f"forward mode: |<grad, v> - jvp| = {abs(exact @ v - t.item()):.3e}")
    return 0


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (and a pointer to ``--help``)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    """The parser of the ``autodiffx`` command, one subparser per subcommand.

    Examples
    --------
    >>> build_parser().parse_args(["train", "--epochs", "3"]).epochs
    3
    """
    from . import __version__, train

    parser = _Parser(prog="autodiffx", description=__doc__)
    parser.add_argument("--version", action="version", version=f"autodiffx {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    trainer = sub.add_parser(
        "train",
        help="train an MLP on the embedded digits (checkpoint, resume, loss plot)",
        description="Train a multilayer perceptron on the handwritten digits shipped with "
        "autodiffx (1797 8x8 images; a seeded, stratified 80/20 split), printing a progress "
        "line per epoch and the final test accuracy; a checkpoint is written after every "
        "epoch and a loss/accuracy PNG at the end.",
    )
    train.add_arguments(trainer)
    trainer.set_defaults(func=train.run)
    demo = sub.add_parser(
        "demo",
        help="gradients by reverse mode, forward mode and finite differences",
        description="Compare reverse mode, forward mode and finite differences on "
        "f(x) = sum(tanh(A @ x)**2).",
    )
    demo.add_argument(
        "--n",
        type=positive_int,
        default=50,
        help="problem size (default 50); memory grows as n**2, the time of the finite "
        "differences as n**3",
    )
    demo.add_argument("--seed", type=non_negative_int, default=0, help="random seed (default 0)")
    demo.set_defaults(func=_demo, demo_parser=demo)
    from .cli_study import add_subcommands

    add_subcommands(sub)  # trace, check, bench
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``autodiffx`` command.

    Subcommands: ``train`` (an MLP on the embedded digits, see :mod:`autodiffx.train`),
    ``demo``, ``trace``, ``check`` and ``bench``. Every option is checked before the work
    starts: a bad value, an unreadable ``--resume`` checkpoint, an output path that is
    missing or holds a file the command did not write, or a size that needs more memory than
    the machine has available exits with status 2 and a one-line message; problems found
    while running (training diverged, a disk full) with status 1.

    Examples
    --------
    >>> main(["demo", "--n", "3"])  # doctest: +ELLIPSIS
    f(x) = sum(tanh(A @ x)**2), A: 3x3, ...
    0
    """
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
