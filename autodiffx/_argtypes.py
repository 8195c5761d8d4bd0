"""argparse types of the command lines (train, study, demo): bounded numbers, named in errors."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any


def _number(text: str, cast: Callable[[str], Any], ok: Callable[[Any], bool], what: str) -> Any:
    try:
        v = cast(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if not ok(v):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return v


def positive_int(text: str) -> int:
    """An integer >= 1.

    >>> positive_int("3")
    3
    """
    return _number(text, int, lambda v: v >= 1, "a positive integer")


def non_negative_int(text: str) -> int:
    """An integer >= 0 (a seed).

    >>> non_negative_int("0")
    0
    """
    return _number(text, int, lambda v: v >= 0, "a non-negative integer")


def positive_float(text: str) -> float:
    """A finite number > 0.

    >>> positive_float("1e-3")
    0.001
    """
    return _number(text, float, lambda v: 0 < v < math.inf, "a positive finite number")
