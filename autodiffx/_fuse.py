"""``ad.compile(f, fuse="numexpr")``: elementwise regions of the derivative rules' sections
replayed as one pre-compiled ``numexpr.NumExpr`` call each (opt-in; the ``fuse`` extra)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .compiler import _Const, _quiet, _Step, _Var
from .ops.elementwise import _power_kernel

#: Regions whose arrays have at most this many elements are fused. Measured (numexpr 2.14.2,
#: one thread, float64, CPU time): five products as NumPy calls against one ``NumExpr`` call,
#: 3.65 against 1.30 µs at 10 elements, 6.31 against 4.86 µs at 1024, 7.66 against 8.47 µs
#: at 2048; a ten-op chain at 32 768 elements 72 against 119 µs; W3's derivative section at
#: 1e6 elements 1.13× slower (docs/compile.md): past the call overhead, NumPy's SIMD loops
#: beat numexpr's interpreter.
MAX_ELEMENTS = 1024
#: Operands of one call (numexpr takes 60), and operations in one expression (its parser
#: nests at most 200 parentheses).
MAX_ARGS = 32
MAX_OPS = 48
#: Tolerance of the check at build time against the recorded values (transcendental
#: functions may differ from NumPy's by ulps; + - * / and sqrt are exact).
RTOL = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 1e-5}

_BINARY = {
    np.add: "({0} + {1})",
    np.subtract: "({0} - {1})",
    np.multiply: "({0} * {1})",
    np.divide: "({0} / {1})",
}
_FUNCTIONS = ("sqrt", "exp", "expm1", "log", "log1p", "sin", "cos", "tan", "sinh", "cosh")
_UNARY = {np.negative: "(-{0})", np.absolute: "abs({0})"} | {
    getattr(np, f): f + "({0})" for f in (*_FUNCTIONS, "tanh", "arcsin", "arccos", "arctan")
}
#: ``power``'s exact fast paths (``_power_kernel``) by exponent, as the same operations;
#: a form that names its operand twice takes it as a leaf (never computed twice).
_POWERS = {
    2: "({0} * {0})",
    3: "(({0} * {0}) * {0})",
    4: "(({0} * {0}) * ({0} * {0}))",
    0.5: "sqrt({0})",
}


class _Node:
    """An expression: its format, children (nodes or leaf operands), steps and size."""

    __slots__ = ("fmt", "kids", "ops", "steps")

    def __init__(self, fmt: str, kids: list[Any], steps: list[_Step], ops: int) -> None:
        self.fmt = fmt
        self.kids = kids
        self.steps = steps
        self.ops = ops


def _form(s: _Step, base: dict[str, str]) -> str | None:
    """The numexpr format of step ``s`` (None: not fusable): an exact-semantics elementwise
    kernel in a quiet section, its one float result small, its operands arrays of the same
    dtype or numbers."""
    p = s.prim
    if p is None or s.effect is not None or s.guard is not None or s.shape_guard or s.params:
        return None
    if p.nout != 1 or len(s.outs) != 1 or not _quiet(s.err, base):
        return None
    o = s.outs[0].arr
    if o.dtype not in RTOL or o.ndim == 0 or o.size > MAX_ELEMENTS:
        return None
    k, args = p.kernel, s.args
    if k is _power_kernel and len(args) == 2 and type(args[1]) in (int, float):
        fmt, args = _POWERS.get(args[1]), args[:1]
    else:
        fmt = (_BINARY if len(args) == 2 else _UNARY if len(args) == 1 else {}).get(k)
    if fmt is None or not all(_operand_ok(a, o.dtype) for a in args):
        return None
    return fmt


def _operand_ok(a: Any, dtype: np.dtype) -> bool:
    if type(a) is _Var:
        return a.arr.dtype == dtype and a.arr.size <= MAX_ELEMENTS
    if type(a) is _Const:
        v = a.value.data if a.tensor else a.value
        return type(v) is np.ndarray and v.dtype == dtype and v.size <= MAX_ELEMENTS
    return type(a) in (int, float) and np.isfinite(a)


def _leaves(n: Any, found: dict[int, Any]) -> dict[int, Any]:
    """The distinct leaf operands of a node, in order (by id)."""
    if type(n) is _Node:
        for k in n.kids:
            _leaves(k, found)
    else:
        found.setdefault(id(n), n)
    return found


# NOTE: only the derivative rules' sections are fused. numexpr raises no floating-point
# warnings, and in eager code every primal ufunc that can overflow or meet an invalid value
# (exp, the products, sin of inf) warns; eager runs the derivative rules with divide,
# overflow and invalid ignored, so there nothing is lost (and with underflow not ignored,
# nothing is fused). A primal step that cannot warn (negation) alone is not worth a call.
def fuse(steps: list[_Step], outs: list[Any], base: dict[str, str]) -> list[_Step]:
    """The steps with each maximal tree of fusable steps (consecutive, in one quiet section,
    each intermediate used once, by the next) replaced by one step calling numexpr."""
    if base["under"] != "ignore":  # (numexpr would not report an underflow)
        return steps
    uses: dict[int, int] = {id(v): 1 for v in outs if type(v) is _Var}
    for s in steps:
        for v in s.operands():
            uses[id(v)] = uses.get(id(v), 0) + 1
    pos = {id(s): i for i, s in enumerate(steps)}
    kept: list[_Step] = []
    pending: dict[int, _Node] = {}  # the run's trees whose result nothing has taken yet
    for s in steps:
        fmt = _form(s, base)
        if fmt is None:
            kept += _flush(pending, pos)
            kept.append(s)
            continue
        node = _grow(s, fmt, pending, uses)
        pending[id(s.outs[0])] = node
    return kept + _flush(pending, pos)


def _grow(s: _Step, fmt: str, pending: dict[int, _Node], uses: dict[int, int]) -> _Node:
    """Step ``s`` as a node: an operand computed by a pending tree used only here becomes
    its subtree (taken out of ``pending``) while the limits hold."""
    args = s.args[:1] if s.prim is not None and s.prim.kernel is _power_kernel else s.args
    once = all(fmt.count(f"{{{i}}}") == 1 for i in range(len(args)))
    kids: list[Any] = list(args)
    ops, steps = 1, []
    for i, a in enumerate(args):
        t = pending.get(id(a)) if type(a) is _Var else None
        if t is None or not once or uses.get(id(a)) != 1 or ops + t.ops > MAX_OPS:
            continue
        trial = _Node(fmt, [*kids[:i], t, *kids[i + 1 :]], [], 0)
        if len(_leaves(trial, {})) > MAX_ARGS:
            continue
        kids[i] = pending.pop(id(a))
        ops += t.ops
        steps += t.steps
    return _Node(fmt, kids, [*steps, s], ops)


def _flush(pending: dict[int, _Node], pos: dict[int, int]) -> list[_Step]:
    """The pending trees as steps, by the position of their last step (a tree's operands
    computed in the run are other trees' results, made before): one fused step per tree of
    two operations or more that numexpr compiles and reproduces on the recorded values,
    else its own steps."""
    out: list[_Step] = []
    for node in sorted(pending.values(), key=lambda n: pos[id(n.steps[-1])]):
        fused = _fused_step(node) if node.ops > 1 else None
        out += [fused] if fused is not None else node.steps
    pending.clear()
    return out


def _fused_step(node: _Node) -> _Step | None:
    """The step calling numexpr for ``node`` (None: numexpr refuses the expression, or its
    result on the recorded operands differs from the recorded one in dtype, shape or
    beyond :data:`RTOL`)."""
    import numexpr

    root = node.steps[-1]
    want = root.outs[0].arr
    leaves = list(_leaves(node, {}).values())
    names = {id(a): f"a_{i}" for i, a in enumerate(leaves)}
    kind = np.float64 if want.dtype == np.float64 else float  # (numexpr's names of them)
    args = [a if type(a) in (_Var, _Const) else _Const("", want.dtype.type(a)) for a in leaves]
    try:
        ex = numexpr.NumExpr(
            _text(node, lambda a: names[id(a)]), [(n, kind) for n in names.values()]
        )
        got = ex(*[_value(a) for a in args])
    except Exception:  # (an expression numexpr does not take: left to NumPy)
        return None
    if got.dtype != want.dtype or got.shape != want.shape:
        return None
    if not np.allclose(got, want, rtol=RTOL[want.dtype], atol=0, equal_nan=True):
        return None
    step = _Step(None, args, {}, root.where)
    step.outs = list(root.outs)
    step.err = root.err
    step.fused = (ex, node, leaves)
    return step


def _value(a: Any) -> Any:
    if type(a) is _Var:
        return a.arr
    return a.value.data if a.tensor else a.value


def _text(n: Any, leaf: Any) -> str:
    """The expression of node ``n``, each leaf written as ``leaf(operand)``."""
    if type(n) is not _Node:
        return leaf(n)  # type: ignore[no-any-return]
    return n.fmt.format(*[_text(k, leaf) for k in n.kids])


def lines(s: _Step, ns: dict[str, Any], render: Any) -> list[str]:
    """The generated line of a fused step: the call, and its expression as a comment in the
    program's names (``render``: the generator's renderer of an operand)."""
    ex, node, leaves = s.fused
    name = f"ne_{len([k for k in ns if k.startswith('ne_')])}"
    ns[name] = ex
    for a in s.args:
        if type(a) is _Const and not a.name:
            a.name = f"c_ne{len([k for k in ns if k.startswith('c_ne')])}"
            ns[a.name] = a.value
    by_id = {id(b): a for a, b in zip(s.args, leaves, strict=True)}
    text = _text(node, lambda b: repr(b) if type(b) in (int, float) else render(by_id[id(b)], ns))
    call = ", ".join(render(by_id[id(b)], ns) for b in leaves)
    return [f"{s.outs[0].name} = {name}({call})  # numexpr: {text}"]
