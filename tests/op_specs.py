"""The OpSpec table: one row per registered primitive; tests/test_primitives.py checks every row.

A row says how to build arguments (a domain per argument, shapes and a params grid per
case), the NumPy reference, and what to expect (``order``, tolerances, flags). Adding a
primitive means adding one row here; ``test_every_primitive_has_a_row`` fails until then.
"""

from __future__ import annotations

import dataclasses
import importlib
import itertools
import pkgutil
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.special as sp
from op_specs_nn import rows as _nn_rows
from op_specs_numpy_more import rows as _numpy_more_rows
from op_specs_scipy import rows as _scipy_rows
from strategies import (
    BOOL,
    DISTINCT,
    NEAR_HALF,
    NEAR_INT,
    NONZERO,
    POSITIVE,
    REAL,
    SPD,
    UNIT,
    WELLCOND,
    Const,
    Domain,
    Fixed,
    away_from,
    interval,
)

import autodiffx

Arg = Domain | Const

# Import every module of the package, so that every primitive defined anywhere (ops, linalg,
# nn.functional, ...) is in the registry that the completeness guard walks.
for _m in pkgutil.walk_packages(autodiffx.__path__, "autodiffx."):
    if not _m.name.endswith("__main__"):
        importlib.import_module(_m.name)


@dataclasses.dataclass(frozen=True)
class Case:
    """One way to call the op: a shape per argument (None for a Const) and the params."""

    shapes: tuple[Any, ...]
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    args: tuple[Arg, ...] | None = None  # overrides the row's argument domains

    def __repr__(self) -> str:
        ps = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"Case({self.shapes}{', ' + ps if ps else ''})"


@dataclasses.dataclass(frozen=True)
class OpSpec:
    """How to test one primitive.

    ``args``: one domain (or Const) per positional argument; the last one repeats for
    variadic ops. ``ref``: the NumPy function the forward must equal (default ``np.<name>``).
    ``call(prim, *args, **params)``: how to apply the primitive (default ``prim(*args,
    **params)``). ``nondiff``: comparison-like op, only its forward is checked and its
    outputs must not require grad. ``zero_deriv``: piecewise constant, the gradient must be
    exactly zero. ``nondiff_args``: argument positions that are never differentiated
    (must match the primitive's). ``broadcast``/``reduction``: Hypothesis also draws
    broadcastable shapes / shapes with axis and keepdims. ``batch``: ``"pad"`` (align the
    array arguments' ndims, then add a leading axis) or ``"lead"`` (add a leading axis to
    every array of ndim >= ``batch_min_ndim``); the op must act on each batch element
    independently. ``weak_scalars``: a float32 array with a Python float stays float32
    (NEP 50). ``exempt``: check name -> documented reason it does not apply.
    ``pending``: a row for a primitive that is about to land (skipped until registered).
    """

    name: str
    args: tuple[Arg, ...]
    cases: tuple[Case, ...]
    ref: Callable[..., Any] | None = None
    call: Callable[..., Any] | None = None
    order: int = 2
    rtol: float = 1e-6
    atol: float = 1e-9
    nondiff: bool = False
    zero_deriv: bool = False
    complex: bool = False
    float32: bool = True
    broadcast: bool = False
    reduction: bool = False
    batch: str | None = None
    batch_min_ndim: int = 0
    nondiff_args: tuple[int, ...] = ()
    weak_scalars: bool = False
    exempt: dict[str, str] = dataclasses.field(default_factory=dict)
    pending: bool = False

    def arg(self, case: Case, i: int) -> Arg:
        """The domain of argument ``i`` in ``case``."""
        args = case.args if case.args is not None else self.args
        return args[min(i, len(args) - 1)]

    def reference(self) -> Callable[..., Any]:
        """The NumPy function the forward pass must equal."""
        return self.ref if self.ref is not None else getattr(np, self.name)

    def __repr__(self) -> str:
        return f"OpSpec({self.name!r})"

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:  # Hypothesis' failure report
        p.text(repr(self))


# ----- case builders -----------------------------------------------------------------------
UNARY_SHAPES = [(), (3,), (2, 3), (1, 4)]
BINARY_SHAPES = [((), ()), ((3,), (3,)), ((2, 3), (3,)), ((2, 1), (1, 3)), ((), (2, 2))]
REDUCE_SHAPES = [(), (4,), (2, 3), (2, 1, 3)]
AXES = (None, 0, -1, (0, 1))


def grid(shapes: list[Any], **params: list[Any]) -> tuple[Case, ...]:
    """Every shape tuple with every combination of the params' values."""
    keys = list(params)
    return tuple(
        Case(tuple(sh), dict(zip(keys, combo, strict=True)))
        for sh in shapes
        for combo in itertools.product(*params.values())
    )


def unary(shapes: list[tuple[int, ...]] = UNARY_SHAPES) -> tuple[Case, ...]:
    """Cases for a one-argument op without params."""
    return tuple(Case((s,)) for s in shapes)


def _axis_ok(axis: Any, ndim: int) -> bool:
    if axis is None:
        return True
    axs = axis if isinstance(axis, tuple) else (axis,)
    n = max(ndim, 1) if not isinstance(axis, tuple) else ndim
    return all(-n <= a < n for a in axs) and len({a % max(n, 1) for a in axs}) == len(axs)


def reduce_cases(
    shapes: list[tuple[int, ...]] = REDUCE_SHAPES, axes: tuple[Any, ...] = AXES, keepdims=True
) -> tuple[Case, ...]:
    """Reduction cases: every valid axis (None, int, tuple) with and without keepdims."""
    kds = (False, True) if keepdims else (False,)
    out = []
    for s in shapes:
        for ax in axes:
            if not _axis_ok(ax, len(s)) or (len(s) == 0 and ax is not None):
                continue
            for kd in kds:
                out.append(Case((s,), {"axis": ax, "keepdims": kd}))
    return tuple(out)


# ----- row builders ------------------------------------------------------------------------
def elementwise(name: str, *domains: Arg, **kw: Any) -> OpSpec:
    """A unary or binary ufunc-like op: broadcast shapes, batching and weak scalars."""
    cases = kw.pop("cases", unary() if len(domains) == 1 else grid(BINARY_SHAPES))
    kw.setdefault("weak_scalars", len(domains) > 1)
    return OpSpec(name, tuple(domains), cases, broadcast=True, batch="pad", **kw)


def nondiff(name: str, *domains: Arg, **kw: Any) -> OpSpec:
    """A comparison, logical or predicate op: forward only, outputs never require grad."""
    return elementwise(name, *domains, nondiff=True, order=0, **kw)


def zero(name: str, *domains: Arg, **kw: Any) -> OpSpec:
    """A piecewise-constant op: the gradient must be exactly zero in both modes."""
    return elementwise(name, *domains, zero_deriv=True, **kw)


# ----- references for ops without a NumPy function of the same name -----------------------
def _scatter_add_ref(v: Any, shape: tuple[int, ...], idx: Any) -> np.ndarray:
    z = np.zeros(shape, dtype=np.asarray(v).dtype)
    np.add.at(z, idx, v)
    return z


def _setitem_ref(x: Any, v: Any, idx: Any) -> np.ndarray:
    out = np.array(x, copy=True)
    out[idx] = v
    return out


def _diagonal_scatter_ref(d: Any, shape: tuple, offset: int, axis1: int, axis2: int):
    # Independent of the kernel: the flat positions of the diagonal come from np.diagonal.
    z = np.zeros(shape, dtype=np.asarray(d).dtype)
    pos = np.diagonal(np.arange(z.size).reshape(shape), offset, axis1, axis2)
    z.flat[pos] = d
    return z


def _pad_ref(x: Any, pad_width: Any, constant_values: Any = 0) -> np.ndarray:
    return np.pad(x, pad_width, mode="constant", constant_values=constant_values)


def _split_ref(x: Any, indices_or_sections: Any, axis: int = 0) -> tuple[np.ndarray, ...]:
    return tuple(np.split(x, indices_or_sections, axis=axis))


# ----- the table ---------------------------------------------------------------------------
_MASK23 = np.array([[True, False, True], [False, False, True]])
_DUP = np.array([0, 2, 0, 0])  # repeated indices: the gradient accumulates
_ZEROS = np.array([[0.0, 2.0, -3.0], [1.5, 0.0, 0.0]])  # one and two zeros in a group
_I10 = np.array([1, 0])
# Separated advanced indices put their axes first; an Ellipsis between them: the batched
# rules (vectorized Jacobians) must keep the batch axes in front in both cases.
_SEPARATED = (_I10, slice(None), np.array([2, 0]))
_ELLIPSIS_ADV = (_I10, Ellipsis, np.array([3, 3]))

ROWS: list[OpSpec] = [
    # ----- linear elementwise ------------------------------------------------------------
    elementwise("add", REAL, REAL, complex=True),
    elementwise("subtract", REAL, REAL, complex=True),
    elementwise("negative", REAL, complex=True),
    elementwise("positive", REAL, complex=True),
    elementwise("conj", REAL, complex=True, ref=np.conjugate),
    elementwise("real", REAL, complex=True),
    elementwise("imag", REAL, complex=True),
    # ----- bilinear and division ---------------------------------------------------------
    elementwise("multiply", REAL, REAL, complex=True),
    elementwise("divide", REAL, NONZERO, complex=True),
    zero("floor_divide", REAL, interval(0.5, 3.0), exempt={"hypothesis": "kinks at integers"}),
    # ----- power: array exponents and the Python-number fast paths ----------------------
    elementwise(
        "power",
        POSITIVE,
        REAL,
        complex=True,
        cases=grid(BINARY_SHAPES)
        + tuple(
            Case((s, None), args=(NONZERO, Const(p)))
            for s in [(), (2, 3)]
            for p in (2, 3, 4, 1, 0, -1, 2.0, 3.0)
        )
        + tuple(Case((s, None), args=(POSITIVE, Const(p))) for s in [(3,)] for p in (0.5, -1.5)),
    ),
    # ----- unary elementwise -------------------------------------------------------------
    elementwise("exp", REAL, complex=True),
    elementwise("expm1", REAL, complex=True),
    elementwise("exp2", REAL, complex=True),
    elementwise("log", POSITIVE, complex=True),
    elementwise("log1p", interval(-0.7, 3.0), complex=True),
    elementwise("log2", POSITIVE, complex=True),
    elementwise("log10", POSITIVE, complex=True),
    elementwise("sqrt", POSITIVE, complex=True),
    elementwise("cbrt", NONZERO, exempt={"complex": "np.cbrt has no complex loop"}),
    elementwise("square", REAL, complex=True),
    elementwise("reciprocal", NONZERO, complex=True),
    elementwise("sin", REAL, complex=True),
    elementwise("cos", REAL, complex=True),
    elementwise("tan", interval(-1.2, 1.2), complex=True),
    elementwise("arcsin", UNIT, complex=True),
    elementwise("arccos", UNIT, complex=True),
    elementwise("arctan", REAL, complex=True),
    elementwise("sinh", REAL, complex=True),
    elementwise("cosh", REAL, complex=True),
    elementwise("tanh", REAL, complex=True),
    elementwise("arcsinh", REAL, complex=True),
    elementwise("arccosh", interval(1.3, 3.0), complex=True),
    elementwise("arctanh", UNIT, complex=True),
    elementwise("erf", REAL, complex=True, ref=sp.erf),
    elementwise("erfinv", UNIT, ref=sp.erfinv),
    elementwise("gammaln", POSITIVE, ref=sp.gammaln),
    elementwise("digamma", POSITIVE, ref=sp.digamma),
    elementwise(
        "polygamma",
        Const(1),
        POSITIVE,
        ref=lambda n, x: sp.polygamma(n, x).astype(np.result_type(x, np.float16)),
        cases=tuple(
            Case((None, s), args=(Const(n), POSITIVE)) for n in (0, 1, 2, 3) for s in UNARY_SHAPES
        ),
        nondiff_args=(0,),
        weak_scalars=False,
        exempt={"hypothesis": "n is an integer order (a Const), not a broadcast array"},
    ),
    # abs'(0) = 0 is checked in test_kinks; away from 0 the derivative is smooth.
    elementwise("abs", NONZERO, complex=True, ref=np.absolute),
    zero("sign", NONZERO),
    zero("floor", NEAR_HALF),
    zero("ceil", NEAR_HALF),
    zero("rint", NEAR_INT),
    zero("trunc", NEAR_HALF),
    zero("round", NEAR_INT, cases=unary() + grid([((2, 3),)], decimals=[0])),
    # a near k + 1/2 and b near 1 keep a / b over 0.1 away from the jumps (integers).
    elementwise(
        "mod",
        NEAR_HALF,
        interval(0.95, 1.05),
        exempt={"hypothesis": "jumps at integer a/b"},
    ),
    elementwise(
        "fmod",
        NEAR_HALF,
        interval(0.95, 1.05),
        exempt={"hypothesis": "jumps at integer a/b"},
    ),
    # ----- binary elementwise ------------------------------------------------------------
    elementwise("arctan2", NONZERO, NONZERO),
    elementwise("hypot", NONZERO, NONZERO),
    elementwise("logaddexp", REAL, REAL),
    # Lattice domains keep a and b >= 0.2 apart: no ties (checked in test_kinks).
    elementwise("maximum", NEAR_INT, NEAR_HALF),
    elementwise("minimum", NEAR_INT, NEAR_HALF),
    OpSpec(
        "where",
        (BOOL, REAL, REAL),
        grid([((3,), (3,), (3,)), ((2, 3), (3,), ()), ((2, 1), (1, 3), (2, 3)), ((), (2,), (2,))]),
        complex=True,
        broadcast=True,
        batch="pad",
        nondiff_args=(0,),
        weak_scalars=True,
    ),
    # ----- not differentiable: comparisons, logic, predicates ----------------------------
    nondiff("less", REAL, REAL),
    nondiff("less_equal", REAL, REAL),
    nondiff("greater", REAL, REAL),
    nondiff("greater_equal", REAL, REAL),
    nondiff("equal", NEAR_INT, NEAR_INT),
    nondiff("not_equal", NEAR_INT, NEAR_INT),
    nondiff("logical_and", BOOL, REAL),
    nondiff("logical_or", BOOL, REAL),
    nondiff("logical_xor", REAL, BOOL),
    nondiff("logical_not", REAL),
    nondiff("isnan", REAL),
    nondiff("isinf", REAL),
    nondiff("isfinite", REAL),
    nondiff("signbit", REAL),
    # ----- reductions --------------------------------------------------------------------
    OpSpec("sum", (REAL,), reduce_cases(), complex=True, reduction=True, batch="lead"),
    OpSpec(
        "prod",
        (interval(-1.5, 1.5),),
        reduce_cases()
        # exact zeros: one and two per reduction group
        + tuple(
            Case(((2, 3),), {"axis": ax, "keepdims": False}, args=(Fixed(_ZEROS),))
            for ax in (None, 0, 1)
        ),
        complex=True,
        reduction=True,
        batch="lead",
    ),
    OpSpec("amax", (DISTINCT,), reduce_cases(), reduction=True, batch="lead"),
    OpSpec("amin", (DISTINCT,), reduce_cases(), reduction=True, batch="lead"),
    OpSpec(
        "logsumexp",
        (REAL,),
        reduce_cases(),
        # NOTE: not scipy's logsumexp, which gives 0-d inputs keepdims shape (1,), unlike np.sum
        ref=lambda x, axis=None, keepdims=False: np.log(
            np.sum(np.exp(x), axis=axis, keepdims=keepdims)
        ),
        reduction=True,
        batch="lead",
        exempt={"complex": "max-shifting needs an ordered dtype"},
    ),
    OpSpec(
        "cumsum",
        (REAL,),
        grid([((4,),), ((2, 3),), ((2, 1, 3),)], axis=[0, -1]),
        complex=True,
        batch="lead",
    ),
    OpSpec(
        "cumprod",
        (interval(-1.5, 1.5),),
        grid([((4,),), ((2, 3),), ((2, 1, 3),)], axis=[0, -1])
        + tuple(Case(((2, 3),), {"axis": ax}, args=(Fixed(_ZEROS),)) for ax in (0, 1)),
        complex=True,
        batch="lead",
    ),
    OpSpec(
        "argmax",
        (DISTINCT,),
        reduce_cases(axes=(None, 0, -1)),
        nondiff=True,
        order=0,
        reduction=True,
    ),
    OpSpec(
        "argsort",
        (DISTINCT,),
        grid([((4,),), ((2, 3),), ((2, 1, 3),)], axis=[0, -1]),
        nondiff=True,
        order=0,
    ),
    OpSpec(
        "argmin",
        (DISTINCT,),
        reduce_cases(axes=(None, 0, -1)),
        nondiff=True,
        order=0,
        reduction=True,
    ),
]


def _diag_cases() -> tuple[Case, ...]:
    out = []
    for shape, offsets, a1, a2 in [
        ((3, 4), (0, 1, -1), 0, 1),
        ((3, 3), (0, 2), 1, 0),
        ((2, 3, 4), (0, 1), 1, 2),
        ((2, 3, 4), (-1,), 2, 0),
    ]:
        for k in offsets:
            out.append(Case((shape,), {"offset": k, "axis1": a1, "axis2": a2}))
    return tuple(out)


def _diag_scatter_cases() -> tuple[Case, ...]:
    out = []
    for c in _diag_cases():
        (shape,) = c.shapes
        d = np.diagonal(np.empty(shape), c.params["offset"], c.params["axis1"], c.params["axis2"])
        out.append(Case((d.shape,), {"shape": shape, **c.params}))
    return tuple(out)


ROWS += [
    # ----- casts and copies --------------------------------------------------------------
    OpSpec(
        "astype",
        (REAL,),
        (
            *grid([((3,),), ((2, 3),)], dtype=[np.float64, np.complex128, np.float32]),
            Case(((2, 3),), {"dtype": np.float64, "copy": False}),
            Case(((2, 3), None), {}, args=(REAL, Const(np.float32))),  # dtype positional
        ),
        ref=lambda x, dtype, copy=True: x.astype(dtype, copy=copy),
        nondiff_args=(1,),
        batch="lead",
        exempt={"complex": "complex -> real casts warn in NumPy; the float -> complex case runs"},
    ),
    OpSpec("copy", (REAL,), unary(), complex=True, batch="lead"),
    OpSpec("alias", (REAL,), unary(), ref=lambda x: x, complex=True, batch="lead"),
    # ----- shape ---------------------------------------------------------------------------
    OpSpec(
        "reshape",
        (REAL,),
        (
            *grid([((2, 3),)], shape=[(3, 2), (6,), (-1,), (1, 2, 3)]),
            Case(((),), {"shape": (1, 1)}),
            Case(((4,),), {"shape": (2, 2)}),
        ),
        complex=True,
    ),
    OpSpec(
        "transpose",
        (REAL,),
        grid([((2, 3, 4),)], axes=[None, (1, 0, 2), (2, 0, 1), (-1, 0, 1)])
        + grid([((),), ((3,),), ((2, 3),)], axes=[None]),
        complex=True,
    ),
    OpSpec(
        "swapaxes",
        (REAL,),
        (
            Case(((2, 3, 4),), {"axis1": 0, "axis2": 2}),
            Case(((2, 3, 4),), {"axis1": 1, "axis2": -1}),
            Case(((2, 3),), {"axis1": 0, "axis2": 1}),
            Case(((2, 3),), {"axis1": -1, "axis2": -1}),
        ),
        complex=True,
        batch="lead",
    ),
    OpSpec(
        "broadcast_to",
        (REAL,),
        (
            Case(((3,),), {"shape": (2, 3)}),
            Case(((2, 1),), {"shape": (2, 4)}),
            Case(((),), {"shape": (3,)}),
            Case(((1, 3),), {"shape": (2, 2, 3)}),
            Case(((2, 3),), {"shape": (2, 3)}),
        ),
        complex=True,
    ),
    OpSpec(
        "concatenate",
        (REAL,),  # variadic: every argument is REAL
        (
            Case(((2, 3), (1, 3)), {"axis": 0}),
            Case(((2, 3), (2, 1), (2, 2)), {"axis": 1}),
            Case(((2, 3), (2, 3)), {"axis": -1}),
        ),
        ref=lambda *xs, axis=0: np.concatenate(xs, axis=axis),
        complex=True,
    ),
    OpSpec(
        "split",
        (REAL,),
        (
            Case(((6,),), {"indices_or_sections": 3}),
            Case(((6,),), {"indices_or_sections": (1, 4)}),
            Case(((2, 4),), {"indices_or_sections": 2, "axis": -1}),
            Case(((3, 2),), {"indices_or_sections": (1,), "axis": 0}),
        ),
        ref=_split_ref,
        complex=True,
        batch="lead",
        batch_min_ndim=2,
    ),
    OpSpec(
        "flip",
        (REAL,),
        grid([((2, 3),)], axis=[None, 0, -1, (0, 1)]) + grid([((4,),), ((),)], axis=[None]),
        complex=True,
    ),
    OpSpec(
        "roll",
        (REAL,),
        (
            Case(((5,),), {"shift": 2}),
            Case(((2, 3),), {"shift": 1}),
            Case(((2, 3),), {"shift": -1, "axis": 1}),
            Case(((2, 3),), {"shift": (1, 2), "axis": (0, 1)}),
        ),
        complex=True,
    ),
    OpSpec(
        "tril",
        (REAL,),
        grid([((3, 3),), ((3, 4),)], k=[0, 1, -1]) + grid([((2, 3, 4),), ((3,),)], k=[0]),
        complex=True,
        batch="lead",
        batch_min_ndim=2,
    ),
    OpSpec(
        "triu",
        (REAL,),
        grid([((3, 3),), ((3, 4),)], k=[0, 1, -1]) + grid([((2, 3, 4),), ((3,),)], k=[0]),
        complex=True,
        batch="lead",
        batch_min_ndim=2,
    ),
    OpSpec("diagonal", (REAL,), _diag_cases(), complex=True),
    OpSpec(
        "diagonal_scatter",
        (REAL,),
        _diag_scatter_cases(),
        ref=_diagonal_scatter_ref,
        complex=True,
    ),
    OpSpec(
        "pad",
        (REAL,),
        (
            Case(((3,),), {"pad_width": ((1, 2),)}),
            Case(((3,),), {"pad_width": ((0, 1),), "constant_values": 1.5}),
            Case(((2, 3),), {"pad_width": ((1, 0), (2, 1))}),
            Case(((2, 3),), {"pad_width": ((1, 2),)}),  # one pair for every axis
        ),
        ref=_pad_ref,
        complex=True,
    ),
    # ----- indexing (getitem/scatter_add are each other's transpose; setitem is x[idx] = v)
    OpSpec(
        "getitem",
        (REAL,),
        grid([((4,),)], idx=[1, slice(1, 3), _DUP, Ellipsis, slice(None, None, -1)])
        + grid(
            [((2, 3),)],
            idx=[
                (0, slice(None)),
                (slice(None), 1),
                _MASK23,
                (None, Ellipsis, 1),
                (np.array([1, 0]), np.array([2, 2])),
                (slice(None), _DUP[:3] % 3),
            ],
        )
        + grid(
            [((2, 3, 4),)], idx=[_SEPARATED, _ELLIPSIS_ADV, (Ellipsis, _I10), (None, 1, ..., 2)]
        ),
        ref=lambda x, idx: x[idx],
        complex=True,
    ),
    OpSpec(
        "scatter_add",
        (REAL,),
        (
            Case(((2,),), {"shape": (4,), "idx": slice(1, 3)}),
            Case(((4,),), {"shape": (3,), "idx": _DUP}),
            Case(((3,),), {"shape": (2, 3), "idx": _MASK23}),
            Case(((2,),), {"shape": (2, 3), "idx": (slice(None), 1)}),
            Case(((),), {"shape": (3,), "idx": 2}),
            Case(((2, 3),), {"shape": (2, 3, 4), "idx": _SEPARATED}),
            Case(((2, 3),), {"shape": (2, 3, 4), "idx": (Ellipsis, 1)}),
        ),
        ref=_scatter_add_ref,
        complex=True,
    ),
    OpSpec(
        "setitem",
        (REAL, REAL),
        (
            Case(((4,), (2,)), {"idx": slice(1, 3)}),
            Case(((4,), ()), {"idx": np.array([0, 3])}),
            Case(((2, 3), (3,)), {"idx": _MASK23}),
            Case(((2, 3), (2,)), {"idx": (slice(None), 1)}),
            Case(((2, 3), (3,)), {"idx": 0}),
            Case(((2, 3), (1, 3)), {"idx": slice(None, 1)}),
            Case(((2, 3, 4), (2, 1)), {"idx": _SEPARATED}),
            Case(((2, 3, 4), (2, 1)), {"idx": _ELLIPSIS_ADV}),
            Case(((2, 3, 4), (3,)), {"idx": (Ellipsis, 1)}),
            # repeated positions: only the write NumPy keeps (the last) gets a gradient
            Case(((4,), (4,)), {"idx": _DUP}),
            Case(((4,), ()), {"idx": _DUP}),
            Case(((2, 3, 4), (2, 1)), {"idx": (_DUP[2:] + 1, slice(None), _DUP[2:] + 2)}),
        ),
        ref=_setitem_ref,
        complex=True,
    ),
    # ----- products ------------------------------------------------------------------------
    OpSpec(
        "matmul",
        (REAL, REAL),
        (
            Case(((3,), (3,))),
            Case(((2, 3), (3,))),
            Case(((3,), (3, 4))),
            Case(((2, 3), (3, 4))),
            Case(((4, 2, 3), (3, 2))),
            Case(((2, 1, 2, 3), (3, 3, 2))),
            Case(((3,), (2, 3, 4))),
            Case(((2, 3), (4, 3, 2))),
            Case(((4, 2, 3), (3,))),
        ),
        complex=True,
        batch="lead",
        batch_min_ndim=2,
    ),
]

OPSPECS: dict[str, OpSpec] = {}
for _row in ROWS:
    if _row.name in OPSPECS:
        raise ValueError(f"two OpSpec rows for {_row.name!r}")
    OPSPECS[_row.name] = _row


# ----- linear algebra ----------------------------------------------------------------------
def _sym(a: Any) -> Any:
    # Symmetric (Hermitian) input ops read one triangle; testing f(sym(a)) makes every
    # perturbation symmetric (Hermitian), the convention their rules follow.
    at = np.swapaxes(a, -1, -2)
    return (a + (np.conj(at) if a.dtype.kind == "c" else at)) / 2


def _phase(x: Any) -> Any:
    # The sign of each column's first entry (real), or the conjugate phase of its largest
    # entry (complex: a smooth function of x where that entry is far from 0, so the
    # gauge-fixed vectors are differentiable and their differences well conditioned).
    if x.dtype.kind != "c":
        return np.sign(x[..., :1, :])
    raw = np.asarray(x.data if isinstance(x, autodiffx.Tensor) else x)
    big = np.take_along_axis(x, np.argmax(np.abs(raw), axis=-2, keepdims=True), axis=-2)
    return np.conj(big / np.abs(big))


def _gauge_eigh(w: Any, v: Any) -> tuple[Any, Any]:
    # Eigenvectors are unique up to sign (phase): fix it (first row real >= 0) so that
    # differences exist.
    return w, v * _phase(v)


def _gauge_svd(u: Any, s: Any, vh: Any) -> tuple[Any, Any, Any]:
    ph = np.swapaxes(_phase(u), -1, -2)
    return u * _phase(u), s, vh * (np.conj(ph) if u.dtype.kind == "c" else ph)


def _einsum_cases() -> tuple[Case, ...]:
    table = [
        ("ij,jk->ik", [(2, 3), (3, 4)]),
        ("bij,bjk->bik", [(2, 2, 3), (2, 3, 2)]),
        ("ii->i", [(3, 3)]),
        ("ii->", [(3, 3)]),
        ("ij->", [(2, 3)]),
        ("ij->ji", [(2, 3)]),
        ("i,i->", [(3,), (3,)]),
        ("i,j->ij", [(2,), (3,)]),
        ("ij,ij->ij", [(2, 1), (2, 3)]),
        ("ij,jk,kl->il", [(2, 3), (3, 2), (2, 2)]),
        ("ijk,k->ij", [(2, 1, 3), (3,)]),
        # ad.einsum('...i,...i->...') of (1, 2) and (2, 1): each operand broadcasts along a label
        # the other has long, so a cotangent comes out short along a kept label.
        ("Ai,Ai->A", [(1, 2), (2, 1)]),
        ("->", [()]),
    ]
    return tuple(Case(tuple(shapes), {"subscripts": sub}) for sub, shapes in table)


_MATRIX = [((3, 3),), ((2, 3, 3),), ((1, 1),)]
_RECT = [((3, 3),), ((4, 3),), ((3, 4),), ((2, 4, 3),)]

ROWS += [
    OpSpec(
        "einsum",
        (REAL,),  # variadic: every operand is REAL
        _einsum_cases(),
        ref=lambda *ops, subscripts, optimize=False: np.einsum(subscripts, *ops),
        complex=True,
    ),
    OpSpec(
        "solve",
        (WELLCOND, REAL),
        (
            Case(((3, 3), (3,))),
            Case(((3, 3), (3, 2))),
            Case(((2, 3, 3), (2, 3, 1))),
            Case(((2, 3, 3), (3,))),
            Case(((3, 3), (2, 3, 1))),
        ),
        ref=np.linalg.solve,
        complex=True,
        batch="lead",
        batch_min_ndim=2,
    ),
    OpSpec(
        "inv",
        (WELLCOND,),
        grid(_MATRIX),
        ref=np.linalg.inv,
        complex=True,
        batch="lead",
        batch_min_ndim=2,
    ),
    OpSpec(
        "det",
        (WELLCOND,),
        grid(_MATRIX),
        ref=np.linalg.det,
        complex=True,
        batch="lead",
        batch_min_ndim=2,
    ),
    OpSpec(
        "slogdet",
        (WELLCOND,),
        grid(_MATRIX),
        ref=lambda a: tuple(np.linalg.slogdet(a)),
        batch="lead",
        batch_min_ndim=2,
        exempt={"complex": "complex derivatives raise NotImplementedError (values work)"},
    ),
    OpSpec(
        "cholesky",
        (SPD,),
        grid(_MATRIX),
        call=lambda prim, a, **kw: prim(_sym(a), **kw),
        ref=lambda a: np.linalg.cholesky(_sym(a)),
        batch="lead",
        batch_min_ndim=2,
        exempt={"complex": "complex derivatives raise NotImplementedError (values work)"},
    ),
    OpSpec(
        "eigh",
        (SPD,),
        grid(_MATRIX, UPLO=["L", "U"]),
        call=lambda prim, a, **kw: _gauge_eigh(*prim(_sym(a), **kw)),
        ref=lambda a, **kw: _gauge_eigh(*np.linalg.eigh(_sym(a), **kw)),
        batch="lead",
        batch_min_ndim=2,
        complex=True,
    ),
    OpSpec(
        "eigvalsh",
        (SPD,),
        grid(_MATRIX),
        call=lambda prim, a, **kw: prim(_sym(a), **kw),
        ref=lambda a, **kw: np.linalg.eigvalsh(_sym(a), **kw),
        batch="lead",
        batch_min_ndim=2,
        complex=True,
    ),
    OpSpec(
        "svd",
        (WELLCOND,),
        grid(_RECT, full_matrices=[False]) + grid(_MATRIX[:2], full_matrices=[True]),
        call=lambda prim, a, **kw: _gauge_svd(*prim(a, **kw)),
        ref=lambda a, full_matrices=True: _gauge_svd(*np.linalg.svd(a, full_matrices)),
        batch="lead",
        batch_min_ndim=2,
        complex=True,
    ),
    OpSpec(
        "svdvals",
        (WELLCOND,),
        grid(_RECT),
        ref=lambda a: np.linalg.svd(a, compute_uv=False),
        batch="lead",
        batch_min_ndim=2,
        complex=True,
    ),
    OpSpec(
        "qr",
        (WELLCOND,),
        grid(_RECT, mode=["reduced"]) + grid(_MATRIX[:1], mode=["complete"]),
        ref=lambda a, mode="reduced": tuple(np.linalg.qr(a, mode)),
        batch="lead",
        batch_min_ndim=2,
        complex=True,
    ),
    OpSpec(
        "pinv",
        (WELLCOND,),
        grid(_RECT),
        ref=np.linalg.pinv,
        batch="lead",
        batch_min_ndim=2,
        complex=True,
    ),
    OpSpec(
        "lstsq",
        (WELLCOND, REAL),
        (
            Case(((4, 3), (4,))),
            Case(((4, 3), (4, 2))),
            Case(((3, 3), (3,))),
            Case(((3, 4), (3, 2))),
        ),
        ref=lambda a, b, rcond=None: tuple(np.linalg.lstsq(a, b, rcond=rcond)),
        exempt={"complex": "complex derivatives raise NotImplementedError (values work)"},
    ),
]


# ----- nn.functional primitives (stability needs their own rules) -------------------------
def _softplus_ref(x: Any, beta: float = 1.0, threshold: float = 20.0) -> np.ndarray:
    return np.where(beta * x > threshold, x, np.log1p(np.exp(beta * x)) / beta)


ROWS += [
    elementwise("sigmoid", REAL, ref=sp.expit, exempt={"complex": "scipy's expit is real"}),
    elementwise(
        "softplus",
        REAL,
        ref=_softplus_ref,
        cases=unary()
        + grid([((2, 3),)], beta=[2.0])
        # the switch to x at beta x = threshold is a (tiny) jump: stay away from it
        + tuple(
            Case((s,), {"beta": 2.0, "threshold": 1.0}, args=(away_from(0.5),))
            for s in [(3,), (2, 3)]
        ),
    ),
    zero("heaviside", NONZERO, REAL),
]
# Rows written beside autodiffx.nn (log_softmax and any nn primitive not covered above).
_have = {r.name for r in ROWS}
ROWS += [r for r in _nn_rows(OpSpec, Case) if r.name not in _have]
ROWS += _numpy_more_rows(OpSpec, Case)
ROWS += _scipy_rows(OpSpec, Case, elementwise)  # autodiffx.scipy's primitives

OPSPECS.update({r.name: r for r in ROWS[len(OPSPECS) :]})
if len(OPSPECS) != len(ROWS):
    raise ValueError("two OpSpec rows share a name")
