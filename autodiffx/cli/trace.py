"""``autodiffx trace``: the evaluation trace (primal, tangent and adjoint tables) of an
expression, read by the safe parser of :mod:`autodiffx.expr` (never ``eval``)."""

from __future__ import annotations

import argparse
from typing import Any

from ..io import write_atomically
from ..wengert import evaluation_trace
from ._expression import add_arguments as add_expression_arguments
from ._expression import expression, fail, point
from .argtypes import assignments, finite_float, int_in, output_file_problem


def _seed(args: argparse.Namespace, values: dict[str, float]) -> dict[str, float] | None:
    """The --seed values (the tangent direction), checked against the inputs."""
    if not args.seed:
        return None
    seed = {}
    for group in args.seed:
        for name, v in group:
            if name not in values:
                fail(args, f"--seed {name}: not an input ({', '.join(values)})")
            seed[name] = v
    return seed


def run(args: argparse.Namespace) -> int:
    """Run ``autodiffx trace`` with parsed arguments; return the exit status.

    Examples
    --------
    >>> from autodiffx.cli import build_parser
    >>> run(build_parser().parse_args(["trace", "x*y", "--at", "x=2,y=3"]))
    ... # doctest: +ELLIPSIS
    f(x, y) = x*y
    ...
    0
    """
    expr = expression(args)
    values = point(args, expr)
    problem = args.dot and output_file_problem(args.dot, "dot", "--dot")
    if problem:
        fail(args, problem)
    seed = _seed(args, values)
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


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``trace`` subparser: EXPR, --at, --seed, --ybar, --digits, --ascii, --dot.

    >>> from autodiffx.cli import build_parser
    >>> build_parser().parse_args(["trace", "x*y", "--at", "x=2,y=pi/2"]).at
    [[('x', 2.0), ('y', 1.5707963267948966)]]
    """
    parser = subparsers.add_parser(
        "trace",
        help="print the evaluation trace (primal, tangent and adjoint tables) of an expression",
        description="Record the evaluation trace (Wengert list) of EXPR at a point and print "
        "the forward primal trace, the forward tangent trace (for a seed direction) and the "
        "reverse adjoint trace, numbered v_{1-n}..v_l as in Griewank & Walther.",
        epilog="example: autodiffx trace 'ln(x1) + x1*x2 - sin(x2)' --at x1=2,x2=5",
    )
    add_expression_arguments(parser, "ln(x1) + x1*x2 - sin(x2)")
    parser.add_argument(
        "--seed",
        type=assignments,
        action="append",
        help="tangent seed, e.g. x1=1 (default: 1 for the first variable, 0 for the others)",
    )
    parser.add_argument(
        "--ybar", type=finite_float, default=None, help="adjoint seed ȳ (default 1)"
    )
    parser.add_argument(
        "--digits", type=int_in(1, 17), default=3, help="decimals shown, 1..17 (default 3)"
    )
    parser.add_argument("--ascii", action="store_true", help="ASCII only (no Unicode symbols)")
    parser.add_argument(
        "--dot",
        metavar="FILE",
        help="also write the graph as Graphviz DOT (the directory must exist; an existing "
        "file is replaced only if it is an earlier DOT output)",
    )
    parser.set_defaults(func=run, parser=parser)
    return parser
