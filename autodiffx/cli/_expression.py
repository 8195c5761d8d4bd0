"""The EXPR and --at arguments that ``trace`` and ``check`` share."""

from __future__ import annotations

import argparse
from typing import NoReturn

from ..expr import Expression, ExpressionError, parse
from .argtypes import assignments


def add_arguments(parser: argparse.ArgumentParser, example: str) -> None:
    """Add EXPR (``example`` in its help) and --at to ``parser``."""
    parser.add_argument("expr", metavar="EXPR", help=f"expression, e.g. {example!r}")
    parser.add_argument(
        "--at",
        type=assignments,
        action="append",
        required=True,
        help="the point: name=value pairs, comma-separated (repeatable); values may be "
        "constant expressions such as pi/4",
    )


def fail(args: argparse.Namespace, message: str) -> NoReturn:
    """Exit with the subcommand's one-line usage error (status 2)."""
    args.parser.error(message)
    raise AssertionError  # pragma: no cover - error() exits


def expression(args: argparse.Namespace) -> Expression:
    """The parsed EXPR, or a usage error."""
    try:
        return parse(args.expr)
    except ExpressionError as e:
        fail(args, f"bad expression: {e}")


def point(args: argparse.Namespace, expr: Expression) -> dict[str, float]:
    """The --at values, in the order given, checked against the expression's variables."""
    values: dict[str, float] = {}
    for group in args.at:
        for name, v in group:
            if name in values:
                fail(args, f"--at gives {name} twice")
            values[name] = v
    if not expr.variables:
        fail(args, f"{expr.text!r} has no variables: nothing to differentiate")
    missing = [v for v in expr.variables if v not in values]
    if missing:
        fail(args, f"no value for {', '.join(missing)}: add --at {missing[0]}=...")
    extra = [v for v in values if v not in expr.variables]
    if extra:
        fail(
            args,
            f"{', '.join(extra)} not in {expr.text!r} (variables: {', '.join(expr.variables)})",
        )
    return values
