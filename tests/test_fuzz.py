"""Differential fuzz test: random programs against NumPy (values) and central differences."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pytest
import scipy.special
from hypothesis import example, given, reject, settings
from hypothesis import strategies as st

import autodiffx as ad
from autodiffx.fd import directional

# A program is NumPy source over `xp`, run with xp=np (the value oracle, and the function whose
# central differences are the derivative oracle) and with xp=ad. Each step is drawn where it is
# smooth at the drawn point: every argument at least MARGIN from the op's kinks and
# singularities, every value within BOUND; the differences are also checked against themselves
# at two step sizes (`oracle`), and an example where they disagree is not judged.
#
# In-place steps through views (an in-place op on a view, or on the base of a live view) gave
# wrong derivatives before issue 11 item 2; test_random_programs_with_inplace_views draws them.
INPLACE_VIEW_STEPS = True

MARGIN = 0.1
BOUND = 30.0
MAX_SIZE = 24  # elements per value
INPUT_SHAPES = [(2, 3), (), (3,), (3, 3), (4,), (1, 3), (2, 2), (2, 1, 3), (2, 2, 2)]
EXAMPLES = 150  # per test (more under HYPOTHESIS_PROFILE=intense); ~50 ms each

Pre = Callable[..., Any] | None


@dataclasses.dataclass(frozen=True)
class Program:
    """``def program(xp, x0, ...)`` and its inputs; the repr is a runnable reproducer."""

    inputs: tuple[np.ndarray, ...]
    lines: tuple[str, ...]
    outputs: tuple[str, ...]
    seed: int = 0  # of the tangents and cotangents

    def source(self) -> str:
        args = ", ".join(f"x{i}" for i in range(len(self.inputs)))
        body = "".join(f"    {line}\n" for line in self.lines)
        return f"def program(xp, {args}):\n{body}    return ({', '.join(self.outputs)},)\n"

    def function(self, xp: Any) -> Callable[..., tuple[Any, ...]]:
        """The program with ``xp`` bound (``np`` or ``ad``)."""
        namespace: dict[str, Any] = {"np": np, "sp": scipy.special}
        exec(self.source(), namespace)
        program = namespace["program"]
        return lambda *xs: program(xp, *xs)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:  # Hypothesis' failure report
        p.text(repr(self))

    def __repr__(self) -> str:
        xs = "".join(f"x{i} = np.array({x.tolist()!r})\n" for i, x in enumerate(self.inputs))
        head = "import numpy as np, scipy.special as sp, autodiffx as ad  # xp: np or ad\n"
        return f"\n{head}{self.source()}{xs}# seed of tangents and cotangents: {self.seed}\n"


def _readonly(x: Any) -> np.ndarray:
    x = np.array(x, dtype=np.float64)
    x.flags.writeable = False
    return x


def _run(inputs: Sequence[np.ndarray], lines: Sequence[str]) -> dict[str, Any]:
    """The NumPy values of every name after ``lines`` (floating-point errors raise)."""
    env: dict[str, Any] = {f"x{i}": x for i, x in enumerate(inputs)}
    with np.errstate(over="raise", divide="raise", invalid="raise", under="ignore"):
        exec("\n".join(lines), {"np": np, "sp": scipy.special, "xp": np}, env)
    return env


# ----- the steps ---------------------------------------------------------------------------
# Each table row: (template, precondition on the NumPy values of the arguments or None,
# whether the op's rule reads its output: such a result is never modified in place, since
# backward then rightly refuses, as PyTorch does).
def _away(*points: float) -> Callable[[np.ndarray], bool]:
    return lambda a: all(np.abs(a - p).min() > MARGIN for p in points)


def _within(lo: float, hi: float) -> Callable[[np.ndarray], bool]:
    return lambda a: a.min() > lo and a.max() < hi


UNARY: list[tuple[str, Pre, bool]] = [
    ("xp.tanh({a})", None, True),
    ("xp.sin({a})", None, False),
    ("xp.cos({a})", None, False),
    ("xp.arctan({a})", None, False),
    ("xp.arcsinh({a})", None, False),
    ("xp.exp({a})", _within(-BOUND, 2.5), True),
    ("xp.expm1({a})", _within(-BOUND, 2.5), True),
    ("xp.exp2({a})", _within(-BOUND, 4.0), True),
    ("xp.sinh({a})", _within(-3.0, 3.0), False),
    ("xp.cosh({a})", _within(-3.0, 3.0), False),
    ("xp.log({a})", _within(0.3, BOUND), False),
    ("xp.log1p({a})", _within(-0.7, BOUND), False),
    ("xp.log2({a})", _within(0.3, BOUND), False),
    ("xp.log10({a})", _within(0.3, BOUND), False),
    ("xp.sqrt({a})", _within(0.3, BOUND), True),
    ("xp.cbrt({a})", lambda a: np.abs(a).min() > 0.3, True),
    ("xp.square({a})", None, False),
    ("{a} * {a}", None, False),
    ("{a} ** 3", _within(-3.0, 3.0), True),
    ("xp.power({a}, 1.5)", _within(0.3, BOUND), True),
    ("2.0 ** {a}", _within(-BOUND, 4.0), True),
    ("xp.reciprocal({a})", lambda a: np.abs(a).min() > 0.5, True),
    ("1.0 / {a}", lambda a: np.abs(a).min() > 0.5, True),
    ("xp.arcsin({a})", _within(-0.8, 0.8), False),
    ("xp.arccos({a})", _within(-0.8, 0.8), False),
    ("xp.arctanh({a})", _within(-0.8, 0.8), False),
    ("xp.arccosh({a})", _within(1.3, BOUND), False),
    ("xp.tan({a})", _within(-1.2, 1.2), True),
    ("xp.abs({a})", _away(0.0), False),
    ("abs({a})", _away(0.0), False),
    ("-{a}", None, False),
    ("xp.negative({a})", None, False),
    ("0.5 * {a} - 1.0", None, False),
    ("{a} / 4.0", None, True),
    ("xp.clip({a}, -1.0, 1.0)", _away(-1.0, 1.0), False),
    ("{a}.clip(0.5, None)", _away(0.5), False),
    ("xp.maximum({a}, 0.0)", _away(0.0), False),
    ("xp.minimum({a}, 0.5)", _away(0.5), False),
    ("xp.where({a} > 0.0, {a}, 0.2 * {a})", _away(0.0), False),
    # NumPy and SciPy functions called on Tensors (the dispatch protocols)
    ("np.sin({a})", None, False),
    ("np.exp({a})", _within(-BOUND, 2.5), True),
    ("np.sqrt({a})", _within(0.3, BOUND), True),
    ("sp.erf({a})", None, False),
    ("sp.expit({a})", None, True),
    ("sp.gammaln({a})", _within(0.3, BOUND), False),
    ("sp.digamma({a})", _within(0.3, BOUND), False),
    ("sp.erfinv({a})", _within(-0.8, 0.8), True),
]


def _radius(a: np.ndarray, b: np.ndarray) -> bool:
    return bool((a * a + b * b).min() > 0.1)


BINARY: list[tuple[str, Pre, bool]] = [
    ("{a} + {b}", None, False),
    ("{a} - {b}", None, False),
    ("{a} * {b}", None, False),
    ("xp.add({a}, {b})", None, False),
    ("xp.subtract({a}, {b})", None, False),
    ("xp.multiply({a}, {b})", None, False),
    ("{a} / {b}", lambda a, b: np.abs(b).min() > 0.5, True),
    ("xp.divide({a}, {b})", lambda a, b: np.abs(b).min() > 0.5, True),
    ("xp.maximum({a}, {b})", lambda a, b: np.abs(a - b).min() > MARGIN, False),
    ("xp.minimum({a}, {b})", lambda a, b: np.abs(a - b).min() > MARGIN, False),
    ("xp.hypot({a}, {b})", _radius, True),
    # arctan2 jumps by 2 pi across b < 0, a = 0
    (
        "xp.arctan2({a}, {b})",
        lambda a, b: _radius(a, b) and np.all((b > 0) | (abs(a) > 0.3)),
        False,
    ),
    ("xp.logaddexp({a}, {b})", None, True),
    ("{a} ** {b}", lambda a, b: a.min() > 0.3 and a.max() < 5 and np.abs(b).max() < 2.5, True),
    ("xp.where({a} > {b}, {a} * {b}, {b} - {a})", lambda a, b: np.abs(a - b).min() > MARGIN, False),
    ("np.multiply({a}, {b})", None, False),
    ("np.maximum({a}, {b})", lambda a, b: np.abs(a - b).min() > MARGIN, False),
    ("np.fmin({a}, {b})", lambda a, b: np.abs(a - b).min() > MARGIN, False),
    (
        "np.float_power({a}, {b})",
        lambda a, b: a.min() > 0.3 and a.max() < 5 and np.abs(b).max() < 2.5,
        True,
    ),
    ("xp.clip({a}, {b}, None)", lambda a, b: np.abs(a - b).min() > MARGIN, False),
    ("xp.clip({a}, None, {b})", lambda a, b: np.abs(a - b).min() > MARGIN, False),
    ("xp.where({b} > 0.0, {a}, {b})", lambda a, b: np.abs(b).min() > MARGIN, False),
]


def _reduced(a: np.ndarray, axis: Any) -> np.ndarray:
    """``a`` with the reduced axes flattened into the last one."""
    axes = tuple(range(a.ndim)) if axis is None else np.atleast_1d(axis) % max(a.ndim, 1)
    axes = tuple(int(i) for i in axes)
    rest = [i for i in range(a.ndim) if i not in axes]
    moved = np.transpose(a, rest + list(axes))
    return moved.reshape((*moved.shape[: len(rest)], -1))


def _gap(sign: float) -> Callable[[np.ndarray, Any], bool]:
    """No tie for the max (sign 1) or min (sign -1) along the reduced axes."""

    def ok(a: np.ndarray, axis: Any) -> bool:
        s = np.sort(sign * _reduced(a, axis), axis=-1)
        return s.shape[-1] < 2 or bool((s[..., -1] - s[..., -2]).min() > MARGIN)

    return ok


def _spread(a: np.ndarray, axis: Any) -> bool:
    r = _reduced(a, axis)
    return r.shape[-1] >= 2 and bool(r.var(axis=-1).min() > 0.01)


def _norm_ok(a: np.ndarray, axis: Any) -> bool:
    return bool(np.sqrt((_reduced(a, axis) ** 2).sum(-1)).min() > 0.3)


# Reductions: {ax} is "axis=..." with perhaps ", keepdims=True"; the precondition takes (a, axis).
REDUCE: list[tuple[str, Pre, bool]] = [
    ("xp.sum({a}, {ax})", None, False),
    ("{a}.sum({ax})", None, False),
    ("xp.mean({a}, {ax})", None, True),
    ("{a}.mean({ax})", None, True),
    ("xp.prod({a}, {ax})", lambda a, axis: np.abs(a).max() < 2.5, False),
    ("xp.max({a}, {ax})", _gap(1.0), True),
    ("{a}.max({ax})", _gap(1.0), True),
    ("xp.amin({a}, {ax})", _gap(-1.0), True),
    ("{a}.min({ax})", _gap(-1.0), True),
    ("xp.var({a}, {ax})", None, True),
    ("{a}.var({ax}, ddof=1)", lambda a, axis: _reduced(a, axis).shape[-1] >= 2, True),
    ("xp.std({a}, {ax})", _spread, True),
    ("{a}.std({ax})", _spread, True),
    ("xp.linalg.norm({a}, {ax})", _norm_ok, True),
    ("np.sum({a}, {ax})", None, False),
    ("np.max({a}, {ax})", _gap(1.0), True),
    ("np.linalg.norm({a}, {ax})", _norm_ok, True),
    ("np.add.reduce({a}, {ax})", None, False),
    ("np.maximum.reduce({a}, {ax})", _gap(1.0), True),
]
CUMULATIVE: list[tuple[str, Pre, bool]] = [
    ("xp.cumsum({a}, axis={axis})", None, False),
    ("{a}.cumsum(axis={axis})", None, False),
    ("xp.cumprod({a}, axis={axis})", lambda a: np.abs(a).max() < 2.0, True),
    ("np.add.accumulate({a}, axis={axis})", lambda a: a.ndim > 0, False),
    (
        "np.multiply.accumulate({a}, axis={axis})",
        lambda a: a.ndim > 0 and np.abs(a).max() < 2,
        True,
    ),
]


def _square_ok(m: np.ndarray) -> bool:
    s = np.linalg.svd(m, compute_uv=False)
    return bool(s.min() > 0.3 and (s.max(-1) / s.min(-1)).max() < 10)


def _qr_ok(m: np.ndarray) -> bool:
    # NOTE: LAPACK's Householder QR is discontinuous where a column is already zero below the
    # diagonal (the reflector becomes the identity and the signs of Q and R flip), so the
    # differences would straddle the jump there.
    rows, cols = np.tril_indices(m.shape[-1], -1)
    return _square_ok(m) and bool(np.abs(m[..., rows, cols]).min(initial=np.inf) > MARGIN)


def _spectrum_ok(m: np.ndarray) -> bool:
    e = np.linalg.eigvalsh(m)
    return e.shape[-1] < 2 or bool(np.diff(e, axis=-1).min() > MARGIN)


def _singular_ok(m: np.ndarray) -> bool:
    s = np.linalg.svd(m, compute_uv=False)
    return bool(s.min() > MARGIN) and (s.shape[-1] < 2 or bool(-np.diff(s, axis=-1).min() > MARGIN))


# (kind, template, precondition on the matrix, reads output): {M} is a matrix built from the
# drawn value, invertible and well-conditioned ("general"), SPD ("spd") or as is ("any").
SQUARE: list[tuple[str, str, Callable[[np.ndarray], bool], bool]] = [
    ("general", "xp.linalg.inv({M})", _square_ok, True),
    ("general", "xp.linalg.det({M})", _square_ok, True),
    ("general", "xp.linalg.slogdet({M})[1]", _square_ok, True),
    ("general", "xp.linalg.pinv({M})", _square_ok, True),
    ("general", "xp.linalg.qr({M})[0]", _qr_ok, True),
    ("general", "xp.linalg.qr({M})[1]", _qr_ok, True),
    ("general", "xp.linalg.solve({M}, {c})", _square_ok, True),
    ("spd", "xp.linalg.cholesky({M})", _spectrum_ok, True),
    ("spd", "xp.linalg.eigvalsh({M})", _spectrum_ok, False),
    ("spd", "xp.linalg.eigh({M})[0]", _spectrum_ok, True),
    ("spd", "xp.linalg.eigh({M})[1] ** 2", _spectrum_ok, True),  # squared: no sign choice
    ("any", "xp.linalg.svd({M}, compute_uv=False)", _singular_ok, True),
    ("any", "xp.linalg.svdvals({M})", _singular_ok, False),
]

PRODUCTS = [
    "{a} @ {b}",
    "xp.matmul({a}, {b})",
    "np.matmul({a}, {b})",
    "xp.dot({a}, {b})",
    "xp.inner({a}, {b})",
    "xp.outer({a}, {b})",
    "xp.tensordot({a}, {b}, axes=1)",
    "xp.einsum('ij,jk->ik', {a}, {b})",
    "xp.einsum('ij,j->i', {a}, {b})",
    "xp.einsum('i,i->', {a}, {b})",
    "xp.einsum('ij,ij->j', {a}, {b})",
    "xp.einsum('...i,...i->...', {a}, {b})",
]

# (statement on target {t} with operand {b}, precondition on the broadcast operand)
INPLACE: list[tuple[str, Pre]] = [
    ("{t} += {b}", None),
    ("{t} -= {b}", None),
    ("{t} *= {b}", None),
    ("{t} /= {b}", lambda b: np.abs(b).min() > 0.5),
    ("{t} *= 1.5", None),
    ("{t} -= 0.5", None),
    ("{t} /= 3.0", None),
]


def _shape_of(template: str, *shapes: tuple[int, ...]) -> tuple[int, ...] | None:
    """The shape NumPy gives ``template`` on zeros of ``shapes`` (None if it refuses)."""
    env = {k: np.zeros(s) for k, s in zip("abc", shapes, strict=False)}
    try:
        out = eval(template.format(a="a", b="b", c="c"), {"np": np, "xp": np}, env)
    except (ValueError, IndexError, TypeError, np.linalg.LinAlgError):
        return None
    shape = np.shape(out)
    return shape if math.prod(shape) <= MAX_SIZE else None


def _fits(shape: tuple[int, ...], into: tuple[int, ...]) -> bool:
    """``shape`` broadcasts to ``into`` exactly."""
    try:
        return np.broadcast_shapes(shape, into) == into
    except ValueError:
        return False


def _not_modifiable(expr: str, out: Any, args: Sequence[Any]) -> bool:
    """Whether ``out`` (and anything sharing its memory) must not be modified in place
    because autodiffx and NumPy disagree on whether ``out`` is a view.

    NumPy reductions return scalars where autodiffx returns 0-d tensors, so an op on a
    NumPy scalar may be a view in autodiffx only.
    """
    if any(np.shares_memory(out, a) for a in args):
        return False
    return np.size(out) == 1 and any(isinstance(a, np.generic) for a in args)


# ----- drawing a program -------------------------------------------------------------------
class Builder:
    """A program being drawn: its lines, the NumPy value of each name, and which names may
    still be modified in place."""

    def __init__(self, inputs: Sequence[np.ndarray], views: bool) -> None:
        self.inputs = tuple(inputs)
        self.views = views  # whether in-place ops through views may be drawn
        self.lines: list[str] = []
        self.names = [f"x{i}" for i in range(len(inputs))]
        self.env = _run(self.inputs, [])
        # frozen: never modified in place (inputs, results whose rule reads them); read: read
        # by a later step that is not a view of it (that step's rule may have saved it).
        self.frozen = set(self.names)
        self.read: set[str] = set()

    def value(self, name: str) -> np.ndarray:
        return np.asarray(self.env[name], dtype=np.float64)

    def pick(self, draw: Any, ok: Pre = None, avoid: str = "") -> str | None:
        """A name whose value satisfies ``ok``, the most recent first (shrinks towards it)."""
        names = [
            n for n in reversed(self.names) if n != avoid and (ok is None or ok(self.value(n)))
        ]
        return names[draw(st.integers(0, len(names) - 1))] if names else None

    def _accept(self, line: str, new: str = "") -> dict[str, Any] | None:
        try:
            env = _run(self.inputs, [*self.lines, line])
        except FloatingPointError:
            return None
        if new and not 1 <= np.size(env[new]) <= MAX_SIZE:
            return None
        if not all(np.all(np.abs(v) <= BOUND) for v in env.values()):  # also rejects nan
            return None
        self.lines.append(line)
        self.env = env
        return env

    def add(self, expr: str, uses: Sequence[str], reads_output: bool) -> bool:
        """Append ``v<k> = expr`` if NumPy computes it within bounds."""
        name = f"v{len(self.names)}"
        env = self._accept(f"{name} = {expr}", name)
        if env is None:
            return False
        self.names.append(name)
        out, args = env[name], [env[u] for u in uses]
        self.read.update(u for u, a in zip(uses, args, strict=True) if not np.shares_memory(out, a))
        if reads_output or _not_modifiable(expr, out, args):
            self.frozen.add(name)
        return True

    def modify(self, statement: str, uses: Sequence[str]) -> bool:
        """Append an in-place statement that reads ``uses``."""
        if self._accept(statement) is None:
            return False
        self.read.update(uses)
        return True

    def targets(self, setitem: bool = False) -> list[str]:
        """Names that may be modified in place: nothing sharing their memory is an input, was
        read by a later step, or is a result whose rule reads it; without ``views``, nothing
        shares their memory at all."""
        out = []
        for n in self.names:
            v = self.env[n]
            if (isinstance(v, np.ndarray) and not v.flags.writeable) or (setitem and v.ndim == 0):
                continue
            group = [m for m in self.names if m == n or np.shares_memory(self.env[m], v)]
            if len(group) > 1 and not self.views:
                continue
            if not any(m in self.frozen or m in self.read for m in group):
                out.append(n)
        return out

    def program(self, seed: int) -> Program:
        """The program; its outputs are the values no later step read."""
        outs = [n for n in self.names[len(self.inputs) :] if n not in self.read]
        return Program(self.inputs, tuple(self.lines), tuple(outs), seed)


# ----- step families: each draws one step, or gives up when nothing fits -------------------
def _elementwise(draw: Any, b: Builder) -> bool:
    template, pre, reads_output = draw(st.sampled_from(UNARY))
    a = b.pick(draw, pre)
    return a is not None and b.add(template.format(a=a), [a], reads_output)


def _binary(draw: Any, b: Builder) -> bool:
    template, pre, reads_output = draw(st.sampled_from(BINARY))
    a = b.pick(draw)
    va = b.value(a)

    def ok(v: np.ndarray) -> bool:
        if _shape_of("a + b", va.shape, v.shape) is None:
            return False
        return pre is None or bool(pre(*np.broadcast_arrays(va, v)))

    c = b.pick(draw, ok)
    return c is not None and b.add(template.format(a=a, b=c), [a, c], reads_output)


def _axis(draw: Any, ndim: int, tuples: bool = True) -> Any:
    """An ``axis=`` value: None, an int or (with ``tuples``) a sorted tuple."""
    kinds = ["none"] + (["int"] if ndim else []) + (["tuple"] if ndim and tuples else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "int":
        return draw(st.integers(-ndim, ndim - 1))
    if kind == "tuple":
        return tuple(sorted(draw(st.sets(st.integers(0, ndim - 1), min_size=1))))
    return None


def _reduction(draw: Any, b: Builder) -> bool:
    template, pre, reads_output = draw(st.sampled_from(REDUCE))
    a = b.pick(draw)
    va = b.value(a)
    axis = _axis(draw, va.ndim)
    if "norm" in template and isinstance(axis, tuple) and len(axis) > 2:
        return False
    if pre is not None and not pre(va, axis):
        return False
    ax = f"axis={axis!r}" + (", keepdims=True" if draw(st.booleans()) else "")
    return b.add(template.format(a=a, ax=ax), [a], reads_output)


def _cumulative(draw: Any, b: Builder) -> bool:
    template, pre, reads_output = draw(st.sampled_from(CUMULATIVE))
    a = b.pick(draw, pre)
    if a is None:
        return False
    axis = _axis(draw, b.value(a).ndim, tuples=False)
    if axis is None and "accumulate" in template:  # ufunc.accumulate needs an axis
        axis = 0
    return b.add(template.format(a=a, axis=axis), [a], reads_output)


def _new_shape(draw: Any, size: int) -> tuple[int, ...]:
    """A shape of ``size`` elements: one to three axes, or none when ``size`` is 1."""
    if size == 1 and draw(st.booleans()):
        return ()
    shape, left = [], size
    for _ in range(draw(st.integers(0, 2))):
        shape.append(draw(st.sampled_from([d for d in range(1, left + 1) if left % d == 0])))
        left //= shape[-1]
    shape.append(left)
    if draw(st.booleans()):
        shape[draw(st.integers(0, len(shape) - 1))] = -1
    return tuple(shape)


def _shape_templates(draw: Any, shape: tuple[int, ...]) -> list[str]:
    """Shape ops that apply to an array of ``shape`` (``{a}`` is the array)."""
    nd, new = len(shape), _new_shape(draw, math.prod(shape))
    big = (draw(st.integers(1, 3)), *(3 if s == 1 else s for s in shape))
    out = [
        *(f"{{a}}.reshape({new!r})", f"xp.reshape({{a}}, {new!r})"),
        *("xp.copy({a})", "{a}.copy()", "{a}.astype(np.float64)", "{a}.T", "xp.transpose({a})"),
        *(
            f"xp.expand_dims({{a}}, {draw(st.integers(-nd - 1, nd))})",
            f"xp.broadcast_to({{a}}, {big})",
        ),
    ]
    if 1 in shape:
        out += ["xp.squeeze({a})", "{a}.squeeze()"]
    if nd >= 1:
        axis, shift = draw(st.integers(-nd, nd - 1)), draw(st.integers(-2, 2))
        out += [f"xp.flip({{a}}, axis={axis})", f"xp.roll({{a}}, {shift}, axis={axis})"]
        out += [f"xp.repeat({{a}}, 2, axis={axis})", f"{{a}}.repeat(2, axis={axis})"]
        out += ["xp.ravel({a})", "{a}.ravel()", "{a}.flatten()", "xp.flip({a})"]
        out += ["xp.roll({a}, 1)", "xp.pad({a}, 1)", "xp.tile({a}, 2)", "xp.repeat({a}, 2)"]
    if nd >= 2:
        i, j = draw(st.integers(-nd, nd - 1)), draw(st.integers(-nd, nd - 1))
        perm = tuple(draw(st.permutations(range(nd))))
        out += [f"xp.swapaxes({{a}}, {i}, {j})", f"{{a}}.swapaxes({i}, {j})"]
        out += [f"xp.moveaxis({{a}}, {i}, {j})", f"xp.transpose({{a}}, {perm!r})"]
        out += [f"{{a}}.transpose({perm!r})", "xp.tril({a})", "xp.triu({a}, 1)"]
        out += ["xp.diagonal({a})", "{a}.diagonal()", "xp.diagonal({a}, 1, -1, -2)"]
        out += ["xp.trace({a})", "{a}.trace()"]
    return out


def _shape(draw: Any, b: Builder) -> bool:
    a = b.pick(draw)
    shape = b.value(a).shape
    template = draw(st.sampled_from(_shape_templates(draw, shape)))
    return _shape_of(template, shape) is not None and b.add(template.format(a=a), [a], False)


def _join(draw: Any, b: Builder) -> bool:
    """concatenate and stack of two values, or one part of a split."""
    a = b.pick(draw, lambda v: v.ndim >= 1)
    if a is None:
        return False
    shape = b.value(a).shape
    nd = len(shape)
    axis, part = draw(st.integers(-nd, nd - 1)), draw(st.integers(0, 1))
    template = draw(
        st.sampled_from(
            [
                f"xp.concatenate([{{a}}, {{b}}], axis={axis})",
                f"xp.stack([{{a}}, {{b}}], axis={draw(st.integers(-nd - 1, nd))})",
                f"xp.split({{a}}, 2, axis={axis})[{part}]",
            ]
        )
    )
    if "split" in template:  # split's rule reads its outputs
        return _shape_of(template, shape) is not None and b.add(template.format(a=a), [a], True)
    c = b.pick(draw, lambda v: _shape_of(template, shape, v.shape) is not None)
    return c is not None and b.add(template.format(a=a, b=c), [a, c], False)


def _basic_index(draw: Any, shape: tuple[int, ...], newaxis: bool = True) -> str:
    """A basic index (ints, slices, ``...``, ``None``) that selects at least one element."""
    k = draw(st.integers(1, len(shape)))
    lead = draw(st.booleans())
    parts = []
    for side in shape[:k] if lead else shape[len(shape) - k :]:
        kind = draw(st.sampled_from(["int", "range", "step", "rev", "all"]))
        if kind == "int":
            parts.append(str(draw(st.integers(-side, side - 1))))
        elif kind == "range":
            lo = draw(st.integers(0, side - 1))
            parts.append(f"{lo}:{draw(st.integers(lo + 1, side))}")
        else:
            parts.append({"step": "::2", "rev": "::-1", "all": ":"}[kind])
    if not lead:
        parts.insert(0, "...")
    if newaxis and draw(st.booleans()):
        parts.insert(draw(st.integers(0, len(parts))), "None")
    return ", ".join(parts)


def _advanced_index(draw: Any, shape: tuple[int, ...]) -> str:
    """Integer lists on the first one or two axes (repeats allowed), or a boolean mask."""
    kind = draw(st.sampled_from(["ints", "pair", "mask"] if len(shape) >= 2 else ["ints", "mask"]))
    if kind == "mask":
        size = math.prod(shape)
        mask = draw(st.lists(st.booleans(), min_size=size, max_size=size))
        mask[draw(st.integers(0, size - 1))] = True
        return f"np.array({np.reshape(mask, shape).tolist()!r})"
    rows = draw(st.lists(st.integers(-shape[0], shape[0] - 1), min_size=1, max_size=4))
    if kind == "ints":
        return repr(rows)
    n = len(rows)
    return f"{rows!r}, {draw(st.lists(st.integers(0, shape[1] - 1), min_size=n, max_size=n))!r}"


def _index(draw: Any, b: Builder) -> bool:
    a = b.pick(draw, lambda v: v.ndim >= 1)
    if a is None:
        return False
    shape = b.value(a).shape
    kind = draw(st.sampled_from(["basic", "advanced", "take"]))
    if kind == "take":
        ix = draw(st.lists(st.integers(0, shape[-1] - 1), min_size=1, max_size=4))
        template = f"xp.take({{a}}, {ix!r}, axis=-1)"
    else:
        ix = _basic_index(draw, shape) if kind == "basic" else _advanced_index(draw, shape)
        template = f"{{a}}[{ix}]"
    return _shape_of(template, shape) is not None and b.add(template.format(a=a), [a], False)


def _product(draw: Any, b: Builder) -> bool:
    template = draw(st.sampled_from(PRODUCTS))
    a = b.pick(draw, lambda v: v.ndim >= 1)
    if a is None:
        return False
    shape = b.value(a).shape

    c = b.pick(draw, lambda v: _shape_of(template, shape, v.shape) is not None)
    return c is not None and b.add(template.format(a=a, b=c), [a, c], False)


def _square(draw: Any, b: Builder) -> bool:
    """A decomposition or solve of a well-conditioned (or SPD) matrix built from a value."""
    kind, template, ok, reads_output = draw(st.sampled_from(SQUARE))
    square = kind != "any"
    a = b.pick(draw, lambda v: v.ndim >= 2 and (not square or v.shape[-1] == v.shape[-2]))
    if a is None:
        return False
    shape = b.value(a).shape
    matrix = {
        "general": f"({a} + 3.0 * np.eye({shape[-1]}))",
        "spd": f"({a} @ xp.swapaxes({a}, -1, -2) + 2.0 * np.eye({shape[-1]}))",
        "any": a,
    }[kind]
    if not ok(eval(matrix, {"np": np, "xp": np}, dict(b.env))):
        return False
    if "{c}" not in template:
        return b.add(template.format(M=matrix), [a], reads_output)
    c = b.pick(draw, lambda v: _shape_of("xp.linalg.solve(a, b)", shape, v.shape) is not None)
    return c is not None and b.add(template.format(M=matrix, c=c), [a, c], reads_output)


def _target(draw: Any, b: Builder, target: str | None, setitem: bool) -> str | None:
    targets = b.targets(setitem)
    if target is None and targets:
        target = draw(st.sampled_from(targets))
    return target if target in targets else None


def _inplace(draw: Any, b: Builder, target: str | None = None) -> bool:
    """``t op= operand`` on a value that may be modified in place."""
    t = _target(draw, b, target, setitem=False)
    if t is None:
        return False
    template, pre = draw(st.sampled_from(INPLACE))
    if "{b}" not in template:
        return b.modify(template.format(t=t), [])
    vt = b.env[t]

    def ok(v: np.ndarray) -> bool:
        if not _fits(v.shape, np.shape(vt)) or np.shares_memory(v, vt):
            return False
        return pre is None or bool(pre(np.broadcast_to(v, np.shape(vt))))

    c = b.pick(draw, ok, avoid=t)
    if c is None or not b.modify(template.format(t=t, b=c), [c]):
        return False
    if "/=" in template:  # divide's rule reads its output
        b.frozen.add(t)
    return True


def _setitem(draw: Any, b: Builder, target: str | None = None) -> bool:
    """``t[idx] = value`` (with ``views`` also ``t[idx] op= value``, through a view)."""
    t = _target(draw, b, target, setitem=True)
    if t is None:
        return False
    vt = b.env[t]
    basic = draw(st.booleans())
    ix = _basic_index(draw, vt.shape, False) if basic else _advanced_index(draw, vt.shape)
    selected = _shape_of(f"a[{ix}]", vt.shape)
    if selected is None:
        return False
    op = draw(st.sampled_from(["=", "+=", "*="] if b.views and basic else ["="]))
    c = b.pick(draw, lambda v: _fits(v.shape, selected) and not np.shares_memory(v, vt), t)
    if c is None or draw(st.integers(0, 3)) == 0:
        return b.modify(f"{t}[{ix}] {op} 0.5", [])
    return b.modify(f"{t}[{ix}] {op} {c}", [c])


def _view_then_inplace(draw: Any, b: Builder) -> bool:
    """A view of a value, then an in-place op on the view or on its base."""
    targets = [t for t in b.targets(setitem=True) if isinstance(b.env[t], np.ndarray)]
    if not targets:
        return False
    base = draw(st.sampled_from(targets))
    shape = b.env[base].shape
    view = [
        f"{base}[{_basic_index(draw, shape)}]",
        f"{base}.reshape({_new_shape(draw, math.prod(shape))!r})",
        f"{base}.T",
        f"xp.swapaxes({base}, 0, -1)",
        f"xp.expand_dims({base}, 0)",
    ]
    if not b.add(draw(st.sampled_from(view)), [base], False):
        return False
    target = draw(st.sampled_from([b.names[-1], base]))
    return draw(st.sampled_from([_inplace, _setitem]))(draw, b, target)


FAMILIES = [
    *[_binary] * 3,
    *[_elementwise] * 3,
    *[_reduction] * 2,
    _cumulative,
    *[_shape] * 2,
    _join,
    *[_index] * 2,
    *[_product] * 2,
    *[_square] * 2,
    *[_inplace] * 2,
    *[_setitem] * 2,
]


@st.composite
def programs(draw: Any, views: bool = False) -> Program:
    """A program of up to ten steps over one to three small float64 inputs in [-2, 2]."""
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    shapes = draw(st.lists(st.sampled_from(INPUT_SHAPES), min_size=1, max_size=3))
    b = Builder([_readonly(np.round(rng.uniform(-2, 2, s), 2)) for s in shapes], views)
    families = FAMILIES + [_view_then_inplace] * 4 if views else FAMILIES
    steps, tries = draw(st.integers(1, 10)), 0
    while len(b.lines) < steps and tries < 4 * steps:
        draw(st.sampled_from(families))(draw, b)
        tries += 1
    if len(b.names) == len(shapes):
        b.add("xp.sin(x0)", ["x0"], False)
    return b.program(seed)


# ----- the oracle: central differences of the NumPy program --------------------------------
def _loss(xp: Any, f: Callable[..., tuple[Any, ...]], us: Sequence[np.ndarray]) -> Any:
    """``x -> sum_k sum(u_k * f(x)_k)``."""
    return lambda *xs: sum(xp.sum(y * u) for y, u in zip(f(*xs), us, strict=True))


def _basis(xs: Sequence[np.ndarray]) -> Iterator[tuple[int, tuple[int, ...], list[np.ndarray]]]:
    for i, x in enumerate(xs):
        for j in np.ndindex(x.shape):
            es = [np.zeros(y.shape) for y in xs]
            es[i][j] = 1.0
            yield i, j, es


def _mixed(
    f: Callable[..., Any], xs: Sequence[Any], vs: Sequence[Any], ws: Sequence[Any], step: float
):
    """``v^T H w`` of a scalar ``f``: the four-point central difference, Richardson-extrapolated
    (its error expands in even powers of the step)."""
    vmax = max(float(np.abs(v).max(initial=0.0)) for v in vs)
    if vmax == 0.0:
        return 0.0
    h = step * max([1.0] + [float(np.abs(x).max(initial=0.0)) for x in xs])

    def g(s: float, t: float) -> float:
        return float(f(*[x + s * v / vmax + t * w for x, v, w in zip(xs, vs, ws, strict=True)]))

    def d(s: float) -> float:
        return (g(s, s) - g(s, -s) - g(-s, s) + g(-s, -s)) / (4 * s * s)

    return vmax * (4 * d(h / 2) - d(h)) / 3


def fd_gradient(
    loss: Callable[..., Any], xs: Sequence[np.ndarray], step: float
) -> list[np.ndarray]:
    """The gradient of a scalar ``loss``, one central difference per input element."""
    out = [np.zeros(x.shape) for x in xs]
    for i, j, es in _basis(xs):
        out[i][j] = directional(loss, xs, es, rel_step=step)[0]
    return out


def fd_hvp(
    loss: Callable[..., Any], xs: Sequence[Any], vs: Sequence[Any], step: float
) -> list[np.ndarray]:
    """``H v`` of a scalar ``loss``, one mixed difference per input element."""
    out = [np.zeros(x.shape) for x in xs]
    for i, j, es in _basis(xs):
        out[i][j] = _mixed(loss, xs, vs, es, step)
    return out


class Unreliable(Exception):
    """Differences at two step sizes disagree: the oracle is not trusted at this point."""


def oracle(differences: Callable[[float], list[np.ndarray]], rtol: float, what: str):
    """``differences(step)`` at the finer of two steps, if both agree to ``rtol / 10``."""
    coarse, fine = differences(1e-3), differences(2.5e-4)
    for c, f in zip(coarse, fine, strict=True):
        if np.abs(c - f).max(initial=0.0) > 0.1 * rtol * max(1.0, np.abs(f).max(initial=0.0)):
            raise Unreliable(f"{what}: differences with steps 1e-3 and 2.5e-4 disagree")
    return fine


# ----- the checks --------------------------------------------------------------------------
VALUE_RTOL = 1e-9  # the same kernels, perhaps in another order
FIRST_RTOL = 1e-6
SECOND_RTOL = 1e-5


def _np(t: Any) -> np.ndarray:
    return t.detach().numpy() if isinstance(t, ad.Tensor) else np.asarray(t, dtype=np.float64)


def _tuple(t: Any) -> tuple[Any, ...]:
    return tuple(t) if isinstance(t, tuple | list) else (t,)


def _close(got: Any, want: Any, rtol: float, what: str) -> None:
    got, want = _np(got), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    scale = max(1.0, float(np.abs(want).max(initial=0.0)))
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * scale, err_msg=what)


@dataclasses.dataclass
class Setup:
    """A program's two versions, its point, tangents ``vs``, cotangents ``us`` and values."""

    f_np: Callable[..., tuple[Any, ...]]
    f_ad: Callable[..., tuple[Any, ...]]
    xs: list[np.ndarray]
    vs: list[np.ndarray]
    us: list[np.ndarray]
    want: list[np.ndarray]

    @classmethod
    def of(cls, prog: Program) -> Setup:
        f_np, xs = prog.function(np), list(prog.inputs)
        want = [np.asarray(y, dtype=np.float64) for y in f_np(*xs)]
        rng = np.random.default_rng([prog.seed, 1])
        vs = [rng.standard_normal(x.shape) for x in xs]
        us = [rng.standard_normal(y.shape) for y in want]
        return cls(f_np, prog.function(ad), xs, vs, us, want)


def check_values(s: Setup) -> None:
    got = s.f_ad(*[ad.tensor(x) for x in s.xs])
    for i, (g, w) in enumerate(zip(got, s.want, strict=True)):
        assert isinstance(g, ad.Tensor) and g.dtype == np.float64, f"output {i}: {g!r}"
        _close(g, w, VALUE_RTOL, f"value of output {i}")


def check_jvp(s: Setup) -> None:
    want = oracle(lambda h: directional(s.f_np, s.xs, s.vs, rel_step=h), FIRST_RTOL, "J v")
    for i, (t, w) in enumerate(zip(ad.jvp(s.f_ad, s.xs, s.vs)[1], want, strict=True)):
        _close(t, w, FIRST_RTOL, f"JVP, output {i}")


def check_vjp(s: Setup) -> None:
    loss = _loss(np, s.f_np, s.us)
    want = oracle(lambda h: fd_gradient(loss, s.xs, h), FIRST_RTOL, "u J")
    grads = _tuple(ad.vjp(s.f_ad, *s.xs)[1](tuple(s.us)))
    for i, (g, w) in enumerate(zip(grads, want, strict=True)):
        _close(g, w, FIRST_RTOL, f"VJP, input x{i}")


def second_order_routes(s: Setup) -> dict[str, Callable[[], Any]]:
    """``H v`` of the loss ``sum(u * f(x))`` by hvp, grad of grad and jvp of grad."""
    loss, every = _loss(ad, s.f_ad, s.us), tuple(range(len(s.xs)))
    grad = ad.grad(loss, argnums=every)

    def grad_of_grad() -> Any:
        def gv(*ys: Any) -> Any:
            return sum(ad.sum(g * v) for g, v in zip(_tuple(grad(*ys)), s.vs, strict=True))

        return ad.grad(gv, argnums=every)(*s.xs)

    return {
        "hvp": lambda: ad.hvp(loss, s.xs, s.vs)[1],
        "grad of grad": grad_of_grad,
        "jvp of grad": lambda: ad.jvp(grad, s.xs, s.vs)[1],
    }


def check_second_order(s: Setup) -> None:
    loss = _loss(np, s.f_np, s.us)
    want = oracle(lambda h: fd_hvp(loss, s.xs, s.vs, h), SECOND_RTOL, "H v")
    for route, hv in second_order_routes(s).items():
        for i, (h, w) in enumerate(zip(_tuple(hv()), want, strict=True)):
            _close(h, w, SECOND_RTOL, f"{route}, input x{i}")


CHECKS = {"value": check_values, "JVP": check_jvp, "VJP": check_vjp, "2nd": check_second_order}


def check_program(prog: Program) -> None:
    """Values against NumPy; JVP, VJP and three second-order routes against differences."""
    s = Setup.of(prog)
    for check in CHECKS.values():
        check(s)


def _judge(prog: Program) -> None:
    try:
        check_program(prog)
    except Unreliable:
        reject()


# ----- the tests ---------------------------------------------------------------------------
_SETTINGS = {"max_examples": max(settings().max_examples, EXAMPLES), "deadline": None}


@settings(**_SETTINGS)
@given(prog=programs())
def test_random_programs(prog):
    _judge(prog)


# The issue's case: h = x * 1; v = h[0:1]; v *= 3 gives dh/dx = [1, 1] instead of [3, 1].
ISSUE_11_VIEW = Program(
    (_readonly([1.0, 2.0]),), ("v1 = x0 * 1.0", "v2 = v1[0:1]", "v2 *= 3.0"), ("v1",)
)


@settings(**_SETTINGS)
@example(prog=ISSUE_11_VIEW)
@given(prog=programs(views=INPLACE_VIEW_STEPS))
def test_random_programs_with_inplace_views(prog):
    _judge(prog)


def _program(lines: Sequence[str], outputs: Sequence[str], *inputs: Any) -> Program:
    return Program(tuple(_readonly(x) for x in inputs), tuple(lines), tuple(outputs))


# Paths that were wrong before in-place writes through views were given PyTorch's semantics
# (and before setitem's VJP kept only the surviving one of repeated writes).
FIXED = {
    "assignment to repeated indices": (
        _program(["v2 = x0 * 1.0", "v2[[0, 0]] = x1"], ["v2"], [1.0, 2.0], [3.0, 4.0]),
        AssertionError,
        "h = x * 1.0; h[[0, 0]] = y: NumPy keeps the last write (h[0] = y[1]), but the VJP "
        "w.r.t. y was [1, 1] instead of [0, 1] (the JVP was right): silently wrong",
    ),
    "copy taken for a view": (
        _program(["v1 = xp.exp(x0)", "v2 = v1[:, [0, 0]]", "v2 *= 1.5"], ["v2"], [[0.5, -1.0]]),
        RuntimeError,
        "y = exp(x); z = y[:, [0, 0]]; z *= 1.5: z is a copy, but backward raises 'a value "
        "saved by exp was modified by an in-place operation' (also take(axis=-1), repeat "
        "along a later axis, tile, reshape/ravel of a transposed array: the registry takes "
        "any result whose .base is not None for a view)",
    ),
    "untracked NumPy view": (
        _program(
            ["v1 = xp.exp(x0)", "v2 = xp.einsum('ij->ji', v1)", "v2 *= 1.5"],
            ["v2"],
            [[0.5, -1.0], [0.25, 2.0]],
        ),
        AssertionError,
        "y = exp(x); z = einsum('ij->ji', y); z *= 1.5; sum(z): einsum (and real) return a "
        "NumPy view without sharing the version counter, so the in-place op overwrites exp's "
        "saved output unnoticed: the gradient was 2.25 exp(x) instead of 1.5 exp(x)",
    ),
}


@pytest.mark.parametrize("name", sorted(FIXED))
def test_formerly_wrong_view_programs(name):
    check_program(FIXED[name][0])


def test_einsum_broadcasting_both_ways():
    # Found by this fuzz test: a of shape (1, 2), b of shape (2, 1) (the ellipsis broadcast one
    # way, i the other) made the VJP raise "cannot reshape array of size 1 into shape (1,2)".
    prog = _program(
        ["v2 = xp.einsum('...i,...i->...', x0, x1)"], ["v2"], [[1.5, -0.5]], [[2.0], [1.0]]
    )
    check_program(prog)


def test_oracle_matches_closed_forms():
    # f(x, y) = sum(sin(x) * y): gradient (cos(x) y, sin(x)), H v = (-sin(x) y vx + cos(x) vy,
    # cos(x) vx).
    x, y = np.array([0.3, -1.2, 2.0]), np.array([1.5, 0.7, -0.4])
    vx, vy = np.array([0.2, -1.0, 0.5]), np.array([1.0, 0.3, -2.0])

    def f(a, b):
        return np.sum(np.sin(a) * b)

    gx, gy = fd_gradient(f, [x, y], 2.5e-4)
    np.testing.assert_allclose(gx, np.cos(x) * y, rtol=1e-10)
    np.testing.assert_allclose(gy, np.sin(x), rtol=1e-10)
    hx, hy = fd_hvp(f, [x, y], [vx, vy], 2.5e-4)
    np.testing.assert_allclose(hx, -np.sin(x) * y * vx + np.cos(x) * vy, rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(hy, np.cos(x) * vx, rtol=1e-7, atol=1e-8)
    with pytest.raises(Unreliable):
        oracle(lambda h: fd_gradient(lambda a: np.sum(np.sin(100 * a)), [x], h), 1e-6, "sin")
