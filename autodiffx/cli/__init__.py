"""The command line, ``python -m autodiffx`` (installed as ``autodiffx``): one module per
subcommand (``train``, ``demo``, ``trace``, ``check``, ``bench``), the argument types they share
(:mod:`autodiffx.cli.argtypes`) and how they report (:mod:`autodiffx.cli.report`)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import NoReturn

from . import bench, check, demo, trace, train

__all__ = ["build_parser", "main"]

#: The subcommands, in the order ``--help`` lists them.
COMMANDS = (train, demo, trace, check, bench)

DESCRIPTION = (
    "autodiffx: automatic differentiation of NumPy programs. Train a small network on the "
    "embedded digits, print the evaluation trace of an expression, check its derivatives "
    "against finite differences, or compare the cost and accuracy of both."
)


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
    from .. import __version__

    parser = _Parser(prog="autodiffx", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"autodiffx {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``autodiffx`` command.

    Subcommands: ``train`` (an MLP or a CNN on the embedded digits, see :mod:`autodiffx.train`),
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
