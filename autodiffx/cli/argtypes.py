"""The argument types and up-front checks of the command line: bounded numbers, lists, points,
output paths and memory, each failing with one line that names the value."""

from __future__ import annotations

import argparse
import math
import os
import zipfile
from collections.abc import Callable
from typing import Any

import numpy as np

from ..expr import ExpressionError, parse


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


def finite_float(text: str) -> float:
    """A finite number (no nan or inf).

    >>> finite_float("-2.5")
    -2.5
    """
    return _number(text, float, math.isfinite, "a finite number")


def int_in(lo: int, hi: int) -> Callable[[str], int]:
    """The type of an integer option in ``lo..hi``.

    >>> int_in(1, 17)("5")
    5
    """

    def parse(text: str) -> int:
        return _number(text, int, lambda v: lo <= v <= hi, f"an integer in {lo}..{hi}")

    return parse


def float_in(lo: float, hi: float) -> Callable[[str], float]:
    """The type of a number option in ``[lo, hi]`` (nan and inf are refused).

    >>> float_in(0, 60)("0.5")
    0.5
    """

    def parse(text: str) -> float:
        return _number(text, float, lambda v: lo <= v <= hi, f"a number in [{lo:g}, {hi:g}]")

    return parse


def widths(text: str) -> tuple[int, ...]:
    """Comma-separated positive integers (hidden-layer widths).

    >>> widths("128,64")
    (128, 64)
    """
    try:
        return tuple(positive_int(p) for p in text.split(","))
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive widths such as 64 or 128,64, got {text!r}"
        ) from None


def sizes(text: str) -> list[int]:
    """Comma-separated sizes in 1..100000, sorted, without repeats.

    >>> sizes("100,10,100")
    [10, 100]
    """
    try:
        values = [int(s) for s in text.replace(" ", "").split(",") if s]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected sizes like 10,100,1000, got {text!r}") from None
    if not values or any(n < 1 or n > 100_000 for n in values):
        raise argparse.ArgumentTypeError(f"sizes must be integers in 1..100000, got {text!r}")
    return sorted(set(values))


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


def assignments(text: str) -> list[tuple[str, float]]:
    """``name=value[,name=value...]``; a value is a number or a constant expression.

    >>> assignments("x=2,y=atan2(1, 1)")
    [('x', 2.0), ('y', 0.7853981633974483)]
    """
    out = []
    for part in _split_top_level(text):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or not name or not value.strip():
            raise argparse.ArgumentTypeError(f"expected name=value[,name=value...], got {text!r}")
        if not name.isidentifier() or name.startswith("_") or not name.isascii():
            raise argparse.ArgumentTypeError(f"{name!r} is not a variable name")
        out.append((name, _constant(name, value)))
    return out


def _constant(name: str, value: str) -> float:
    """The finite value of a constant expression (``pi/4``) given to ``name``."""
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
    return v


# ----- memory ----------------------------------------------------------------------------------
def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux ``MemAvailable``, else the free
    physical pages), or None when the platform does not say.

    >>> m = available_memory()
    >>> m is None or m > 0
    True
    """
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def format_bytes(n: float) -> str:
    """``n`` bytes in decimal units.

    >>> format_bytes(2.5e9), format_bytes(512)
    ('2.5 GB', '512 B')
    """
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError  # pragma: no cover


def memory_problem(need: float, what: str) -> str | None:
    """A one-line reason to refuse ``what`` (e.g. ``"--n 100000"``), which needs about
    ``need`` bytes, or None if the machine has that much memory available (or cannot say).

    >>> memory_problem(1e21, "--n 10**10")  # doctest: +ELLIPSIS
    '--n 10**10 needs about 1000000.0 PB of memory; the machine has ... available'
    >>> memory_problem(1, "--n 1") is None
    True
    """
    avail = available_memory()
    if avail is None or need <= avail:
        return None
    return (
        f"{what} needs about {format_bytes(need)} of memory; the machine has "
        f"{format_bytes(avail)} available"
    )


# ----- output paths ----------------------------------------------------------------------------
def _is_png(path: str) -> bool:
    with open(path, "rb") as fh:
        return fh.read(8) == b"\x89PNG\r\n\x1a\n"


def _is_training_checkpoint(path: str) -> bool:
    """A file written by ``autodiffx train`` (its header says so; the arrays are not read)."""
    try:
        with zipfile.ZipFile(path) as zf:
            header = zf.read("__autodiffx__.npy")
    except (KeyError, zipfile.BadZipFile, OSError, ValueError, NotImplementedError, EOFError):
        return False
    return b'["format", "autodiffx.train"]' in header


def _is_trace_dot(path: str) -> bool:
    with open(path, "rb") as fh:
        return fh.read(25) == b"digraph evaluation_trace "


#: What the tools write, by kind: ``(description, test of an existing file)``.
OUTPUT_KINDS: dict[str, tuple[str, Callable[[str], bool]]] = {
    "png": ("a PNG image", _is_png),
    "checkpoint": ("a checkpoint of autodiffx train", _is_training_checkpoint),
    "dot": ("a Graphviz file written by autodiffx trace", _is_trace_dot),
}


def output_file_problem(path: str, kind: str, option: str) -> str | None:
    """A one-line reason not to write ``path`` (of ``kind`` in :data:`OUTPUT_KINDS`), or None.

    Refused: a directory, a missing or unwritable parent directory, and an existing non-empty
    file that is not of the tool's own kind (it would be overwritten).

    >>> import os, tempfile
    >>> d = tempfile.mkdtemp()
    >>> output_file_problem(os.path.join(d, "g.dot"), "dot", "--dot") is None
    True
    >>> output_file_problem(os.path.join(d, "no", "g.dot"), "dot", "--dot")  # doctest: +ELLIPSIS
    "--dot ...: the directory '...no' does not exist"
    """
    what, ours = OUTPUT_KINDS[kind]
    parent = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        return f"{option} {path}: is a directory, expected a file"
    if not os.path.isdir(parent):
        return f"{option} {path}: the directory {parent!r} does not exist"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"{option} {path}: the directory {parent!r} is not writable"
    if os.path.exists(path):
        try:
            if os.path.getsize(path) > 0 and not ours(path):
                return f"{option} {path}: exists and is not {what}; refusing to overwrite it"
        except OSError as e:
            return f"{option} {path}: cannot read the existing file ({e.strerror})"
    return None


def output_dir_problem(path: str, files: dict[str, str], option: str) -> str | None:
    """A one-line reason not to write ``files`` (name -> kind) into the directory ``path``
    (created later if missing), or None.

    >>> import os, tempfile
    >>> d = tempfile.mkdtemp()
    >>> output_dir_problem(os.path.join(d, "new"), {"a.png": "png"}, "--out") is None
    True
    >>> with open(os.path.join(d, "a.png"), "w") as fh:
    ...     _ = fh.write("my notes")
    >>> output_dir_problem(d, {"a.png": "png"}, "--out")  # doctest: +ELLIPSIS
    '--out ...a.png: exists and is not a PNG image; refusing to overwrite it'
    """
    if os.path.exists(path) and not os.path.isdir(path):
        return f"{option} {path}: is a file, expected a directory (it is created if missing)"
    if not os.path.isdir(path):
        ancestor = os.path.abspath(path)
        while not os.path.exists(ancestor):
            ancestor = os.path.dirname(ancestor)
        if not os.path.isdir(ancestor):
            return f"{option} {path}: {ancestor!r} is a file, so the directory cannot be created"
        if not os.access(ancestor, os.W_OK | os.X_OK):
            return f"{option} {path}: cannot create it, {ancestor!r} is not writable"
        return None
    if not os.access(path, os.W_OK | os.X_OK):
        return f"{option} {path}: the directory is not writable"
    for name, kind in files.items():
        problem = output_file_problem(os.path.join(path, name), kind, option)
        if problem:
            return problem
    return None
