"""Evaluation traces (Wengert lists): the primal, tangent and adjoint tables of any program.

``evaluation_trace(f, x1=2.0, x2=5.0)`` runs ``f`` once on leaf Tensors and records every
primitive it applies, in evaluation order, as the numbered variables of Griewank and Walther
(*Evaluating Derivatives*, 2nd ed., 2008, section 2.2): the inputs are ``v_{1-n} … v_0``, the
steps ``v_1 … v_l``, and the output ``y = v_l``. From that one recording:

- :meth:`EvaluationTrace.primal` lists the values ``v_i`` (the forward primal trace);
- :meth:`EvaluationTrace.tangent` the tangents ``v̇_i`` for an input seed ``ẋ`` (forward mode:
  the recorded steps are re-applied to dual tensors, :mod:`autodiffx.forward`);
- :meth:`EvaluationTrace.adjoint` the adjoints ``v̄_i = ∂y/∂v_i`` for an output seed ``ȳ``
  (reverse mode: one ``autograd.grad`` of ``y`` with respect to every step).

Each row also shows the textbook rule that produces it (``v̇₂ = v̇₋₁ × v₀ + v̇₀ × v₋₁``,
``v̄₀ = v̄₂ × v₋₁ + v̄₄ × cos v₀``); the numbers come from the library's own derivative rules.
"""

from __future__ import annotations

import html
import inspect
import re
import unicodedata
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from . import autograd, forward
from ._mode import STATE, enable_grad
from ._registry import Primitive, apply
from ._tensor import Tensor

__all__ = [
    "AdjointTable",
    "EvaluationTrace",
    "PrimalTable",
    "Step",
    "TangentTable",
    "TraceRow",
    "TraceTable",
    "evaluation_trace",
]


# ============================================================================================
# recording
# ============================================================================================
class _Ref:
    """An operand that is a variable of the trace."""

    __slots__ = ("var",)

    def __init__(self, var: _Var) -> None:
        self.var = var


@dataclass(eq=False)
class _App:
    """One recorded application of a primitive that depends on the inputs."""

    prim: Primitive
    template: tuple[Any, ...]  # the arguments, variables replaced by _Ref
    params: dict[str, Any]
    outs: list[_Var] = field(default_factory=list)

    def refs(self) -> Iterator[tuple[int, _Ref]]:
        """(top-level position, ref) of every variable operand, nested ones included."""
        for k, a in enumerate(self.template):
            for r in _refs_in(a):
                yield k, r


@dataclass(eq=False)
class _Var:
    """A variable ``v_i``: an input (``app`` None) or one output of an application."""

    app: _App | None
    k: int  # output number within a multi-output application
    value: np.ndarray
    node: Any  # (graph node, output index) at record time, for the adjoints; None if not recorded
    name: str = ""  # input name
    index: int = 0  # Griewank-Walther index, set once the trace is pruned


def _refs_in(a: Any) -> Iterator[_Ref]:
    if isinstance(a, _Ref):
        yield a
    elif type(a) in (list, tuple):
        for b in a:
            yield from _refs_in(b)


class _Recorder:
    """The dispatcher's tape: sees every top-level application of a primitive.

    NOTE: the tape (``STATE.tape``, per thread) reports each application with its arguments
    and result, so every primitive is recorded in evaluation order, constants included (the
    graph alone loses the order, and ``add``'s node keeps no arguments). The inner ops of
    tangent rules are not steps of the program and are not reported.
    """

    def __init__(self, inputs: list[_Var], leaves: list[Tensor]) -> None:
        self.apps: list[_App] = []
        self.depth = 0
        self.by_node: dict[tuple[Any, int], _Var] = {}
        self.by_id: dict[int, _Var] = {}
        self.keep: list[Any] = list(leaves)  # ids stay unique while the trace lives
        self.error: BaseException | None = None
        for var, t in zip(inputs, leaves):
            self.by_id[id(t)] = var

    def __call__(self, p: Primitive, args: Any, params: dict[str, Any], res: Any) -> None:
        if self.error is None:
            try:
                self.take(p, args, params, res)
            except BaseException as e:  # pragma: no cover - reported after f returns
                self.error = e

    def lookup(self, t: Tensor) -> _Var | None:
        node = t._node
        if node is not None:
            return self.by_node.get((node, t._idx))
        return self.by_id.get(id(t))

    def template(self, a: Any) -> Any:
        if isinstance(a, Tensor):
            var = self.lookup(a)
            return a if var is None else _Ref(var)
        if type(a) in (list, tuple):
            return type(a)(self.template(b) for b in a)
        return a

    def take(self, p: Primitive, args: Sequence[Any], params: dict[str, Any], res: Any) -> None:
        template = tuple(self.template(a) for a in args)
        if not any(True for a in template for _ in _refs_in(a)):
            return  # a constant: shown inline where it is used
        app = _App(p, template, dict(params))
        outs = res if isinstance(res, tuple) else (res,)
        for k, t in enumerate(outs):
            node = t._node
            var = _Var(app, k, np.array(t.data, copy=True), None if node is None else (node, k))
            app.outs.append(var)
            if node is not None:
                self.by_node[(node, t._idx)] = var
            else:
                self.by_id[id(t)] = var
            self.keep.append(t)
        self.apps.append(app)


def _input_names(f: Callable[..., Any], n: int) -> list[str]:
    try:
        ps = [
            p.name
            for p in inspect.signature(f).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):
        ps = []
    if len(ps) >= n:
        return ps[:n]
    names = getattr(f, "variables", None)  # an autodiffx.expr.Expression
    if isinstance(names, tuple) and len(names) == n:
        return list(names)
    return [f"x{i + 1}" for i in range(n)]


def evaluation_trace(f: Callable[..., Any], /, *args: Any, **inputs: Any) -> EvaluationTrace:
    """Record the evaluation trace (Wengert list) of ``f`` at the given inputs.

    ``f`` is any program built from autodiffx operations (or NumPy functions applied to
    Tensors), with scalar or array inputs. It is called once, on fresh float leaf Tensors that
    require grad: by keyword with ``**inputs`` (their names label the trace), or positionally
    with ``*args`` (named after f's parameters). Every primitive application that depends on
    an input becomes a numbered step; steps the output does not depend on are left out, and
    computations on constants only appear as constants in the steps that use them.

    (``ad.trace`` is NumPy's matrix trace; this is the evaluation trace.)

    Parameters
    ----------
    f : callable
        Returns one Tensor (any shape) that depends on the inputs.
    *args, **inputs : number, array_like or Tensor
        The point of evaluation; integers are converted to float64.

    Returns
    -------
    EvaluationTrace
        With ``primal()``, ``tangent(seed=...)``, ``adjoint(seed=...)`` and ``to_dot()``.

    Examples
    --------
    The example of Griewank and Walther (and of Baydin et al., *Automatic differentiation in
    machine learning: a survey*, 2018, table 2):

    >>> import autodiffx as ad
    >>> f = lambda x1, x2: ad.log(x1) + x1 * x2 - ad.sin(x2)
    >>> tr = evaluation_trace(f, x1=2.0, x2=5.0)
    >>> print(tr.primal())
    Forward primal trace
      v₋₁ = x1        =  2
      v₀  = x2        =  5
      v₁  = ln v₋₁    =  0.693
      v₂  = v₋₁ × v₀  = 10
      v₃  = v₁ + v₂   = 10.693
      v₄  = sin v₀    = -0.959
      v₅  = v₃ − v₄   = 11.652
      ────────────────────────
      y   = v₅        = 11.652
    >>> print(tr.tangent(seed={"x1": 1.0}))
    Forward tangent trace (ẋ1 = 1, ẋ2 = 0)
      v̇₋₁ = ẋ1                   = 1
      v̇₀  = ẋ2                   = 0
      v̇₁  = v̇₋₁ / v₋₁            = 0.5
      v̇₂  = v̇₋₁ × v₀ + v̇₀ × v₋₁  = 5
      v̇₃  = v̇₁ + v̇₂              = 5.5
      v̇₄  = v̇₀ × cos v₀          = 0
      v̇₅  = v̇₃ − v̇₄              = 5.5
      ────────────────────────────────
      ẏ   = v̇₅                   = 5.5
    >>> print(tr.adjoint())
    Reverse adjoint trace (ȳ = 1)
      v̄₅  = ȳ                       =  1
      v̄₄  = −v̄₅                     = -1
      v̄₃  = v̄₅                      =  1
      v̄₂  = v̄₃                      =  1
      v̄₁  = v̄₃                      =  1
      v̄₀  = v̄₂ × v₋₁ + v̄₄ × cos v₀  =  1.716
      v̄₋₁ = v̄₁ / v₋₁ + v̄₂ × v₀      =  5.5
      ──────────────────────────────────────
      x̄1  = v̄₋₁                     =  5.5
      x̄2  = v̄₀                      =  1.716
    """
    if args and inputs:
        raise TypeError("evaluation_trace: give the inputs either by position or by name")
    if not args and not inputs:
        raise TypeError("evaluation_trace: no inputs given (e.g. evaluation_trace(f, x=1.0))")
    names = list(inputs) if inputs else _input_names(f, len(args))
    values = list(inputs.values()) if inputs else list(args)
    leaves = []
    for name, v in zip(names, values):
        a = np.array(v.data if isinstance(v, Tensor) else v, copy=True)
        if a.dtype.kind not in "fc":
            if a.dtype.kind not in "iub":
                raise TypeError(f"evaluation_trace: input {name!r} is not numeric ({a.dtype})")
            a = a.astype(np.float64)
        leaves.append(Tensor(a, requires_grad=True))
    in_vars = [
        _Var(None, 0, np.array(t.data, copy=True), None, name=n) for n, t in zip(names, leaves)
    ]
    rec = _Recorder(in_vars, leaves)
    previous = STATE.tape
    STATE.tape = rec
    STATE.sync()  # the tape routes every op through the generic dispatcher
    try:
        with enable_grad():
            out = f(**dict(zip(names, leaves))) if inputs else f(*leaves)
    finally:
        STATE.tape = previous
        STATE.sync()
    if rec.error is not None:  # pragma: no cover - an internal error of the recorder
        raise rec.error
    if not isinstance(out, Tensor):
        raise TypeError(
            "evaluation_trace: f must return one Tensor computed from its inputs, got "
            f"{type(out).__name__}"
            + (" (trace one output at a time)" if type(out) in (tuple, list) else "")
        )
    y = rec.lookup(out)
    if y is None:
        raise ValueError(
            "evaluation_trace: f's output does not depend on its inputs (it was computed from "
            "constants only, or outside autodiffx operations, e.g. through float() or .data)"
        )
    return EvaluationTrace(f, in_vars, leaves, rec.apps, y, out, rec.keep)


# ============================================================================================
# text fragments: variables and symbols, rendered as Unicode text, ASCII or HTML
# ============================================================================================
class _V(NamedTuple):
    """A variable reference ``v_i`` with an optional decoration ("dot" or "bar")."""

    index: int
    deco: str = ""


class _X(NamedTuple):
    """An input name (``x1``) or ``y``, with an optional decoration."""

    name: str
    deco: str = ""


_SUB = str.maketrans("-0123456789", "₋₀₁₂₃₄₅₆₇₈₉")
_COMBINING = {"dot": "\u0307", "bar": "\u0304", "": ""}
_ASCII = str.maketrans(
    {
        "×": "*",
        "−": "-",
        "·": "*",
        "∂": "d",
        "ᵀ": "^T",
        "²": "^2",
        "√": "sqrt",
        "─": "-",
        "—": "-",
        "…": "...",
        "≤": "<=",
        "≥": ">=",
        "≠": "!=",
    }
)


def _render(tokens: Sequence[Any], style: str) -> str:
    """Tokens as text: Unicode (NFC: ``ȳ`` is one character), ASCII or HTML."""
    parts = []
    for t in tokens:
        if isinstance(t, _V):
            if style == "html":
                sub = str(t.index).replace("-", "−")
                parts.append(f"v{_COMBINING[t.deco]}<sub>{sub}</sub>")
            elif style == "ascii":
                parts.append(f"v{'' if not t.deco else t.deco}[{t.index}]")
            else:
                parts.append("v" + _COMBINING[t.deco] + str(t.index).translate(_SUB))
        elif isinstance(t, _X):
            if style == "ascii":
                parts.append(t.name + t.deco)
            else:
                text = t.name[0] + _COMBINING[t.deco] + t.name[1:]
                parts.append(html.escape(text) if style == "html" else text)
        else:
            s = str(t)
            if style == "ascii":
                s = s.translate(_ASCII)
            elif style == "html":
                s = html.escape(s)
            parts.append(s)
    return unicodedata.normalize("NFC", "".join(parts))


def _width(s: str) -> int:
    return sum(0 if unicodedata.combining(c) else 1 for c in s)


# ----- numbers ---------------------------------------------------------------------------------
def _fmt_scalar(v: Any, digits: int) -> str:
    if isinstance(v, bool | np.bool_):
        return str(bool(v))
    if isinstance(v, complex | np.complexfloating):
        re_, im = _fmt_scalar(v.real, digits), _fmt_scalar(abs(v.imag), digits)
        return f"{re_}{'-' if v.imag < 0 else '+'}{im}j"
    if isinstance(v, int | np.integer):
        return str(int(v))
    v = float(v)
    if v == 0:
        return "0"
    if not np.isfinite(v):
        return str(v)
    if 1e-2 <= abs(v) < 1e6:
        s = f"{v:.{digits}f}"
        s = s.rstrip("0").rstrip(".") if "." in s else s
        return "0" if s in ("-0", "") else s
    m, e = f"{v:.{max(digits - 1, 0)}e}".split("e")
    m = m.rstrip("0").rstrip(".") if "." in m else m
    return f"{m}e{int(e)}"


def _fmt_value(a: np.ndarray | None, digits: int) -> str:
    if a is None:
        return "—"
    a = np.asarray(a)
    if a.ndim == 0:
        return _fmt_scalar(a[()], digits)
    if a.size <= 4 and a.ndim <= 2:
        return np.array2string(
            a, separator=", ", formatter={"all": lambda v: _fmt_scalar(v, digits)}
        ).replace("\n", "")
    shape = "×".join(map(str, a.shape))
    if a.dtype.kind == "b":
        return f"[{shape}] {int(a.sum())} True"
    if a.size == 0:
        return f"[{shape}]"
    if a.dtype.kind == "c":
        return f"[{shape}] complex, max |·| {_fmt_scalar(np.abs(a).max(), digits)}"
    mean = a.mean()
    if abs(mean) <= 1e-12 * np.abs(a).max():  # rounding noise of a symmetric array
        mean = 0.0
    return (
        f"[{shape}] min {_fmt_scalar(a.min(), digits)}, mean {_fmt_scalar(mean, digits)}, "
        f"max {_fmt_scalar(a.max(), digits)}"
    )


def _fmt_seed(a: np.ndarray) -> str:
    """A seed: an array that is the same everywhere is shown as that number."""
    if a.ndim and a.size and np.all(a == a.flat[0]):
        return f"{_fmt_scalar(a.flat[0], 3)} (each of {'×'.join(map(str, a.shape))})"
    return _fmt_value(a, 3)


def _fmt_const(c: Any) -> str:
    """A constant operand, inline: a number, a short array, or its shape."""
    if isinstance(c, Tensor):
        c = c.data
    if isinstance(c, np.ndarray | np.generic | int | float | complex | bool):
        a = np.asarray(c)
        if a.dtype.kind in "biufc":
            if a.size == 1:
                v = a.reshape(())[()]
                if isinstance(c, float | np.floating) and len(repr(float(v))) <= 8:
                    s = repr(float(v))
                    s = s[:-2] if s.endswith(".0") else s
                else:
                    s = _fmt_scalar(v, 4)
                return f"({s})" if s.startswith("-") and a.ndim == 0 else s
            if a.size <= 3 and a.ndim == 1:
                return _fmt_value(a, 4)
            return "c[" + "×".join(map(str, a.shape)) + "]"
    if isinstance(c, np.dtype | type):
        return str(np.dtype(c))
    return repr(c)


def _fmt_index(idx: Any) -> str:
    if isinstance(idx, tuple):
        return ", ".join(_fmt_index(i) for i in idx) if idx else "()"
    if isinstance(idx, slice):
        parts = ["" if p is None else str(p) for p in (idx.start, idx.stop, idx.step)]
        return ":".join(parts[:2]) + (f":{parts[2]}" if idx.step is not None else "")
    if idx is Ellipsis:
        return "..."
    if idx is None:
        return "None"
    if isinstance(idx, Tensor | np.ndarray | list):
        a = np.asarray(idx.data if isinstance(idx, Tensor) else idx)
        return _fmt_value(a, 4) if a.size <= 4 else "idx[" + "×".join(map(str, a.shape)) + "]"
    return repr(idx)


# ============================================================================================
# operations and their derivative rules as text
# ============================================================================================
_DEFAULTS: dict[str, dict[str, Any]] = {}


def _defaults(p: Primitive) -> dict[str, Any]:
    d = _DEFAULTS.get(p.name)
    if d is None:
        try:
            sig = inspect.signature(p.kernel)
            d = {
                q.name: q.default
                for q in sig.parameters.values()
                if q.default is not q.empty and not isinstance(q.default, type)
            }
        except (TypeError, ValueError):
            d = {}
        _DEFAULTS[p.name] = d
    return d


def _shown_params(app: _App) -> dict[str, Any]:
    d = _defaults(app.prim)
    out = {}
    for k, v in app.params.items():
        if k in d:
            try:
                if v is d[k] or (type(v) is type(d[k]) and bool(v == d[k])):
                    continue
            except (TypeError, ValueError):  # pragma: no cover - arrays as parameters
                pass
        out[k] = v
    return out


def _operand(a: Any, deco: str = "", dotted: bool = False) -> list[Any]:
    """Tokens of an argument: a variable, a constant or a (nested) list of them."""
    if isinstance(a, _Ref):
        return [_V(a.var.index, "dot" if dotted else deco)]
    if type(a) in (list, tuple):
        toks: list[Any] = ["["]
        for i, b in enumerate(a):
            if i:
                toks.append(", ")
            toks.extend(_operand(b, deco, dotted))
        return [*toks, "]"]
    return [_fmt_const(a)]


def _op_tokens(app: _App, k: int, dotted: bool = False) -> list[Any]:
    """The right-hand side of ``v_i = …`` (with ``dotted``: the same op on the tangents)."""
    p = app.prim
    name = p.name
    args = app.template
    params = _shown_params(app)
    ops = [_operand(a, dotted=dotted and i not in p.nondiff) for i, a in enumerate(args)]
    if name == "getitem" and len(args) == 1 and set(app.params) == {"idx"}:
        toks = [*ops[0], "[", _fmt_index(app.params["idx"]), "]"]
    elif _symbol(p) and len(args) == 2 and not params:
        toks = [*ops[0], f" {p.notation} ", *ops[1]]
    elif _symbol(p) and len(args) == 1 and not params:
        toks = [p.notation, *ops[0]]
    else:
        fname = p.notation or name
        if len(args) == 1 and not params and isinstance(args[0], _Ref):
            toks = [f"{fname} ", *ops[0]]
        else:
            toks = [f"{fname}("]
            first = True
            for o in ops:
                toks.extend(o if first else [", ", *o])
                first = False
            for key, v in params.items():
                toks.append(f"{'' if first else ', '}{key}={_fmt_param(v)}")
                first = False
            toks.append(")")
    if p.nout != 1:
        toks.append(f"[{k}]")
    return toks


def _symbol(p: Primitive) -> bool:
    """Whether the registry writes ``p`` as an operator (infix, or prefix of one argument)."""
    n = p.notation
    return n is not None and not n.isalnum()


def _fmt_param(v: Any) -> str:
    if isinstance(v, np.ndarray | Tensor | int | float | complex | bool | np.generic):
        return _fmt_const(v)
    if isinstance(v, np.dtype | type):
        return str(np.dtype(v))
    return repr(v)


class _Partial(NamedTuple):
    """∂v_j/∂(argument k), as a factor: ``one``, ``mul`` (× tokens), ``div`` (/ tokens), or
    ``tmpl`` (explicit tangent and adjoint terms)."""

    sign: int
    kind: str
    tokens: tuple[Any, ...] = ()
    tangent: Callable[[Any], list[Any]] | None = None
    adjoint: Callable[[Any], list[Any]] | None = None


def _paren(toks: list[Any]) -> list[Any]:
    return toks if len(toks) == 1 else ["(", *toks, ")"]


def _partial(app: _App, k: int, out: _V) -> _Partial | None:
    """The textbook partial derivative of a primitive's output with respect to argument k,
    from the registry entry's ``partials`` (see :func:`autodiffx._registry.defprim`)."""
    table = app.prim.partials
    if table is None or len(table) != len(app.template):
        return None
    spec = table[k]
    if callable(spec):
        spec = spec(*[_scalar_constant(x) for x in app.template])
    if spec is None:
        return None
    sign = -1 if spec.startswith("-") else 1
    spec = spec[1:] if sign < 0 else spec
    ops = [_operand(x) for x in app.template]
    if "{d}" in spec:
        tangent, _, adjoint = spec.partition(" | ")  # no tangent side: the op on tangents
        return _Partial(
            sign,
            "tmpl",
            tangent=(lambda d: _fill(tangent, ops, out, d)) if tangent.strip() else None,
            adjoint=lambda d: _fill(adjoint or tangent, ops, out, d),
        )
    if spec == "1":
        return _Partial(sign, "one")
    if spec.startswith("1/"):
        return _Partial(sign, "div", tuple(_fill(spec[2:], ops, out)))
    return _Partial(sign, "mul", tuple(_fill(spec, ops, out)))


_PLACEHOLDER = re.compile(r"\{([^{}]+)\}")
_ARG = {"x": 0, "a": 0, "b": 1, "c": 2}


def _fill(spec: str, ops: list[list[Any]], out: _V, d: Any = None) -> list[Any]:
    """The tokens of a ``partials`` template: operands, the output, ``d``, numbers, text."""
    toks: list[Any] = []
    pos = 0
    for m in _PLACEHOLDER.finditer(spec):
        if m.start() > pos:
            toks.append(spec[pos : m.start()])
        pos = m.end()
        key = m.group(1)
        if key == "out":
            toks.append(out)
        elif key == "d":
            toks.append(d)
        elif key.startswith("#"):
            toks.append(_fmt_const(float(key[1:])))
        elif key.startswith("("):
            toks.extend(_paren(ops[_ARG[key[1:-1]]]))
        else:
            toks.extend(ops[_ARG[key]])
    if pos < len(spec):
        toks.append(spec[pos:])
    return toks


def _scalar_constant(a: Any) -> float | None:
    """A constant operand's value as a float when it is a number (0-d), else None."""
    if isinstance(a, _Ref):
        return None
    try:
        c = np.asarray(_data(a))
        return float(c.real) if c.ndim == 0 and c.dtype.kind in "biufc" else None
    except (TypeError, ValueError):  # pragma: no cover - an unusual parameter object
        return None


def _data(c: Any) -> Any:
    return c.data if isinstance(c, Tensor) else c


def _term(p: _Partial, d: Any, adjoint: bool) -> list[Any]:
    if p.kind == "one":
        return [d]
    if p.kind == "mul":
        return [d, " × ", *p.tokens]
    if p.kind == "div":
        return [d, " / ", *p.tokens]
    fn = p.adjoint if adjoint else p.tangent
    assert fn is not None
    return fn(d)


def _join(terms: list[tuple[int, list[Any]]]) -> list[Any]:
    toks: list[Any] = []
    for i, (sign, t) in enumerate(terms):
        if i == 0:
            toks.extend(["−", *t] if sign < 0 else t)
        else:
            toks.extend([" − " if sign < 0 else " + ", *t])
    return toks


def _differentiable(var: _Var) -> bool:
    return var.value.dtype.kind in "fc"


def _tangent_tokens(app: _App, k: int, out: _V) -> list[Any]:
    """The tangent rule ``v̇_j = Σ ∂v_j/∂v_i v̇_i`` of one output of an application."""
    if not _differentiable(app.outs[k]) or app.prim.vjp is None:
        return ["—"]
    refs = [(pos, r) for pos, r in app.refs() if pos not in app.prim.nondiff]
    if not refs:
        return ["0"]
    nested = any(not isinstance(app.template[pos], _Ref) for pos, _ in refs)
    if app.prim.nout == 1 and not nested:
        parts = [(pos, r, _partial(app, pos, out)) for pos, r in refs]
        if all(p is not None and (p.kind != "tmpl" or p.tangent) for _, _, p in parts):
            return _join([(p.sign, _term(p, _V(r.var.index, "dot"), False)) for _, r, p in parts])
    if app.prim.kind == "linear":
        return _op_tokens(app, k, dotted=True)
    terms = []
    for _, r in refs:
        vi = _V(r.var.index)
        terms.append((1, ["∂", out, "/∂", vi, " · ", _V(r.var.index, "dot")]))
    return _join(terms)


def _adjoint_term(app: _App, pos: int, r: _Ref) -> tuple[int, list[Any]]:
    """One term ``v̄_j ∂v_j/∂v_i`` of the adjoint of ``r`` (argument ``pos`` of ``app``)."""
    out = _V(app.outs[0].index)
    g = _V(app.outs[0].index, "bar")
    if app.prim.nout == 1 and isinstance(app.template[pos], _Ref):
        p = _partial(app, pos, out)
        if p is not None:
            return p.sign, _term(p, g, True)
    fname = app.prim.notation or app.prim.name
    gs: list[Any] = [g]
    if app.prim.nout != 1:
        gs = []
        for i, o in enumerate(app.outs):
            gs.extend([", " if i else "", _V(o.index, "bar")])
    if app.prim.kind == "linear":
        return 1, [f"{fname}ᵀ(", *gs, ")"]
    if app.prim.nout != 1:
        return 1, [f"vjp_{fname}(", *gs, ")"]
    return 1, [g, " · ∂", out, "/∂", _V(r.var.index)]


# ============================================================================================
# tables
# ============================================================================================
class TraceRow(NamedTuple):
    """One row of a trace table: ``name = expr = value``.

    ``index`` is the Griewank–Walther index ``i`` of ``v_i`` (None for the closing rows that
    name the output or the inputs); ``value`` is an ndarray (0-d for scalars), or None where
    there is no derivative (a boolean step).
    """

    index: int | None
    name: str
    expr: str
    value: np.ndarray | None


class TraceTable:
    """A table of an evaluation trace: printed as aligned text, shown as HTML in Jupyter.

    Rows are :class:`TraceRow`; ``table[i]`` is the value of ``v_i`` (its primal value,
    tangent or adjoint). ``digits`` is the number of decimals printed (3 as in the textbooks);
    ``to_text(ascii=True)`` avoids Unicode.
    """

    title = ""

    def __init__(
        self,
        rows: list[tuple[int | None, list[Any], list[Any], Any]],
        note: list[Any] | None = None,
    ) -> None:
        self._rows = rows
        self._note = note or []
        self.digits = 3

    @property
    def note(self) -> str:
        """The seed the table was computed with (empty for the primal table)."""
        return _render(self._note, "text")

    @property
    def rows(self) -> tuple[TraceRow, ...]:
        """The rows, with Unicode text."""
        return tuple(
            TraceRow(i, _render(lhs, "text"), _render(rhs, "text"), v)
            for i, lhs, rhs, v in self._rows
        )

    @property
    def values(self) -> dict[int, np.ndarray | None]:
        """``{i: value of v_i}`` for every variable (inputs ``1-n … 0`` and steps ``1 … l``)."""
        return {i: v for i, _, _, v in self._rows if i is not None}

    def __getitem__(self, i: int) -> np.ndarray | None:
        return self.values[i]

    def __len__(self) -> int:
        return len(self._rows)

    def _heading(self, style: str) -> str:
        return self.title + (f" ({_render(self._note, style)})" if self._note else "")

    def to_text(self, ascii: bool = False) -> str:
        """The table as aligned text (Unicode, or ASCII with ``ascii=True``)."""
        style = "ascii" if ascii else "text"
        values = self._aligned_values()
        cells = [
            (i, _render(lhs, style), _render(rhs, style), value)
            for (i, lhs, rhs, _), value in zip(self._rows, values)
        ]
        if ascii:
            cells = [(i, a, b, c.translate(_ASCII)) for i, a, b, c in cells]
        w_name = max(_width(c[1]) for c in cells)
        w_expr = max(_width(c[2]) for c in cells)
        lines = [self._heading(style)]
        width = 0
        body = []
        for i, name, expr, value in cells:
            text = (
                f"  {name}{' ' * (w_name - _width(name))} = {expr}{' ' * (w_expr - _width(expr))}"
                f"  = {value}"
            )
            width = max(width, _width(text))
            body.append((i, text))
        rule = "  " + ("-" if ascii else "─") * (width - 2)
        ruled = False
        for i, text in body:
            if i is None and not ruled:
                lines.append(rule)
                ruled = True
            lines.append(text.rstrip())
        return "\n".join(lines)

    def _aligned_values(self) -> list[str]:
        """The values as text, numbers padded so that their decimal points line up."""
        values = [_fmt_value(v, self.digits) for *_, v in self._rows]
        w_int = max(_int_width(v) for v in values)
        return [" " * (w_int - _int_width(v)) + v if _int_width(v) else v for v in values]

    def __str__(self) -> str:
        return self.to_text()

    def __repr__(self) -> str:
        return self.to_text()

    def _repr_html_(self) -> str:
        cell = 'style="text-align:left;padding:1px 6px;white-space:pre"'
        rows = []
        ruled = False
        for (i, lhs, rhs, _), value in zip(self._rows, self._aligned_values()):
            border = ""
            if i is None and not ruled:
                border = ' style="border-top:1px solid #888"'
                ruled = True
            rows.append(
                f"<tr{border}><td {cell}>{_render(lhs, 'html')}</td>"
                f"<td>=</td><td {cell}>{_render(rhs, 'html')}</td>"
                f"<td>=</td><td {cell}>{html.escape(value)}</td></tr>"
            )
        return (
            '<table class="autodiffx-trace" style="font-family:monospace;border-collapse:collapse">'
            '<caption style="text-align:left;font-weight:bold;white-space:nowrap">'
            f"{self._heading('html')}</caption>" + "".join(rows) + "</table>"
        )


def _int_width(value: str) -> int:
    """Width of a number's integer part (for alignment on the decimal point)."""
    if not value or not (value[0].isdigit() or value[0] == "-"):
        return 0
    head = value.split(".")[0] if "e" not in value else value
    return len(head) if all(c.isdigit() or c == "-" for c in head) else 0


class PrimalTable(TraceTable):
    """The forward primal trace: ``v_i`` and its value; ``.y`` is the output's value."""

    title = "Forward primal trace"

    @property
    def y(self) -> np.ndarray:
        """The value of the output ``y``."""
        return self._rows[-1][3]


class TangentTable(TraceTable):
    """The forward tangent trace for one seed ``ẋ``; ``.y_dot`` is the directional derivative."""

    title = "Forward tangent trace"

    @property
    def y_dot(self) -> np.ndarray:
        """``ẏ``: the derivative of ``y`` in the direction of the seed."""
        return self._rows[-1][3]


class AdjointTable(TraceTable):
    """The reverse adjoint trace for one seed ``ȳ``; ``.grad`` maps each input to ``x̄``."""

    title = "Reverse adjoint trace"

    def __init__(self, rows: list[Any], note: list[Any], grad: dict[str, np.ndarray]) -> None:
        super().__init__(rows, note)
        self._grad = grad

    @property
    def grad(self) -> dict[str, np.ndarray]:
        """``{input name: x̄}``: the gradient of ``ȳ · y`` with respect to each input."""
        return dict(self._grad)


# ============================================================================================
# the trace
# ============================================================================================
class Step(NamedTuple):
    """A variable of the trace: ``v_index = op(operands)``, with its value.

    ``op`` is the primitive's name (``"input"`` for inputs), ``operands`` the indices of the
    variables it reads, ``text`` the right-hand side as printed.
    """

    index: int
    op: str
    operands: tuple[int, ...]
    text: str
    value: np.ndarray


def _seed_as(seed: Any, like: np.ndarray, what: str, whose: str) -> np.ndarray:
    """``seed`` broadcast to the shape and dtype of ``like``, or a ValueError naming it."""
    s = np.asarray(seed)
    try:
        return np.broadcast_to(s, like.shape).astype(like.dtype)
    except ValueError as e:
        raise ValueError(
            f"{what} has shape {s.shape}, which does not broadcast to {whose} shape {like.shape}"
        ) from e


class EvaluationTrace:
    """The recorded evaluation trace of a program; made by :func:`evaluation_trace`.

    ``primal()``, ``tangent(seed=...)`` and ``adjoint(seed=...)`` build the three tables;
    ``steps`` lists the variables; ``to_dot()`` draws the graph. Printing shows all three
    tables (the tangent one seeded with the first input), and Jupyter shows them side by side.

    Examples
    --------
    >>> import autodiffx as ad
    >>> tr = evaluation_trace(lambda x: ad.exp(x) * x, x=1.0)
    >>> tr
    <EvaluationTrace of <lambda>: 1 input, 2 steps, y = 2.718>
    >>> [s.text for s in tr.steps]
    ['x', 'exp v₀', 'v₁ × v₀']
    """

    def __init__(
        self,
        f: Callable[..., Any],
        inputs: list[_Var],
        leaves: list[Tensor],
        apps: list[_App],
        y: _Var,
        out: Tensor,
        keep: list[Any],
    ) -> None:
        self._name = getattr(f, "__name__", type(f).__name__)
        self._inputs = inputs
        self._leaves = leaves
        self._out = out
        self._keep = keep
        self._y = y
        # Prune: keep the applications the output depends on (walking back from y).
        live: set[int] = set()
        stack = [y]
        seen_vars: set[int] = set()
        while stack:
            v = stack.pop()
            if id(v) in seen_vars or v.app is None:
                continue
            seen_vars.add(id(v))
            live.add(id(v.app))
            stack.extend(r.var for _, r in v.app.refs())
        self._apps = [a for a in apps if id(a) in live]
        n = len(inputs)
        for i, v in enumerate(inputs):
            v.index = i - n + 1
        idx = 0
        for a in self._apps:
            for v in a.outs:
                idx += 1
                v.index = idx
        self.names: tuple[str, ...] = tuple(v.name for v in inputs)
        # The output is y as in the textbooks, unless an input already has that name.
        self._yname = next(n for n in ("y", "f", "out", "result") if n not in self.names)

    # ----- structure ------------------------------------------------------------------------
    @property
    def _vars(self) -> list[_Var]:
        return self._inputs + [v for a in self._apps for v in a.outs]

    @property
    def steps(self) -> tuple[Step, ...]:
        """Every variable ``v_{1-n} … v_l`` in order, inputs first."""
        out = [Step(v.index, "input", (), v.name, v.value.copy()) for v in self._inputs]
        for a in self._apps:
            operands = tuple(r.var.index for _, r in a.refs())
            for k, v in enumerate(a.outs):
                text = _render(_op_tokens(a, k), "text")
                out.append(Step(v.index, a.prim.name, operands, text, v.value.copy()))
        return tuple(out)

    def __len__(self) -> int:
        return len(self._inputs) + sum(len(a.outs) for a in self._apps)

    def __repr__(self) -> str:
        n_in = len(self._inputs)
        n_steps = sum(len(a.outs) for a in self._apps)
        return (
            f"<EvaluationTrace of {self._name}: {n_in} input{'s' * (n_in != 1)}, {n_steps} "
            f"step{'s' * (n_steps != 1)}, y = {_fmt_value(self._y.value, 3)}>"
        )

    def __str__(self) -> str:
        return "\n\n".join(str(t) for t in (self.primal(), self.tangent(), self.adjoint()))

    def _repr_html_(self) -> str:
        tables = (self.primal(), self.tangent(), self.adjoint())
        return (
            '<div style="display:flex;flex-wrap:wrap;gap:2em;align-items:flex-start">'
            + "".join(f"<div>{t._repr_html_()}</div>" for t in tables)
            + "</div>"
        )

    # ----- the three tables -----------------------------------------------------------------
    def primal(self) -> PrimalTable:
        """The forward primal trace: every ``v_i`` with its operation and value.

        Examples
        --------
        >>> import autodiffx as ad
        >>> tr = evaluation_trace(lambda x: ad.sin(x) * 2, x=0.5)
        >>> tr.primal().y
        array(0.95885108)
        """
        rows: list[Any] = [(v.index, [_V(v.index)], [_X(v.name)], v.value) for v in self._inputs]
        for a in self._apps:
            for k, v in enumerate(a.outs):
                rows.append((v.index, [_V(v.index)], _op_tokens(a, k), v.value))
        y = self._y
        rows.append((None, [_X(self._yname)], [_V(y.index)], y.value))
        return PrimalTable(rows)

    def tangent(self, seed: Mapping[str, Any] | str | None = None) -> TangentTable:
        """The forward tangent trace ``v̇_i`` for the input direction ``seed``.

        The recorded steps are applied again, in order, to dual tensors
        (:func:`autodiffx.forward.make_dual`) whose tangents are the seed: the tangent of
        every step comes from the library's forward-mode rules.

        Parameters
        ----------
        seed : mapping or str, optional
            ``{input name: ẋ}`` (numbers or arrays broadcastable to the input's shape;
            missing inputs get 0), or an input name for the unit direction along it. Default:
            the first input.

        Examples
        --------
        >>> import autodiffx as ad
        >>> tr = evaluation_trace(lambda a, b: a * b, a=3.0, b=4.0)
        >>> tr.tangent("b").y_dot
        array(3.)
        """
        if seed is None:
            seed = self.names[0]
        if isinstance(seed, str):
            seed = {seed: 1.0}
        unknown = [k for k in seed if k not in self.names]
        if unknown:
            raise ValueError(
                f"tangent: seed names {unknown} are not inputs of the trace {list(self.names)}"
            )
        tans = [
            _seed_as(
                seed.get(v.name, 0.0), v.value, f"tangent: the seed of {v.name!r}", "the input's"
            )
            for v in self._inputs
        ]
        values: dict[int, np.ndarray | None] = {}
        with forward.dual_level(), np.errstate(all="ignore"):
            env: dict[int, Any] = {}
            for v, t in zip(self._inputs, tans):
                env[id(v)] = forward.make_dual(Tensor(v.value), Tensor(t))
                values[v.index] = t
            for a in self._apps:
                args = tuple(_substitute(x, env) for x in a.template)
                res = apply(a.prim, args, a.params)
                outs = res if isinstance(res, tuple) else (res,)
                for v, o in zip(a.outs, outs):
                    env[id(v)] = o
                    if not _differentiable(v):
                        values[v.index] = None
                        continue
                    tan = forward.unpack_dual(o).tangent
                    values[v.index] = (
                        np.zeros_like(v.value) if tan is None else np.array(tan.data, copy=True)
                    )
        rows: list[Any] = [
            (v.index, [_V(v.index, "dot")], [_X(v.name, "dot")], values[v.index])
            for v in self._inputs
        ]
        for a in self._apps:
            for k, v in enumerate(a.outs):
                rhs = _tangent_tokens(a, k, _V(v.index))
                rows.append((v.index, [_V(v.index, "dot")], rhs, values[v.index]))
        y = self._y
        rows.append((None, [_X(self._yname, "dot")], [_V(y.index, "dot")], values[y.index]))
        note: list[Any] = []
        for i, (v, t) in enumerate(zip(self._inputs, tans)):
            note.extend([", " if i else "", _X(v.name, "dot"), " = ", _fmt_seed(t)])
        return TangentTable(rows, note)

    def adjoint(self, seed: Any = None) -> AdjointTable:
        """The reverse adjoint trace ``v̄_i = ȳ · ∂y/∂v_i``, from the output back to the inputs.

        One reverse pass (``autograd.grad`` of ``y`` with respect to every step, with the
        graph retained) gives all adjoints; each row shows the textbook rule
        ``v̄_i = Σ_j v̄_j ∂v_j/∂v_i`` over the steps ``j`` that read ``v_i``.

        Parameters
        ----------
        seed : number or array_like, optional
            ``ȳ``, broadcastable to y's shape. Default 1 (all ones for an array output: the
            adjoints of ``sum(y)``).

        Examples
        --------
        >>> import autodiffx as ad
        >>> tr = evaluation_trace(lambda a, b: a * b, a=3.0, b=4.0)
        >>> tr.adjoint().grad
        {'a': array(4.), 'b': array(3.)}
        """
        y = self._y
        ybar = _seed_as(1.0 if seed is None else seed, y.value, "adjoint: the seed", "y's")
        targets: list[Tensor] = []
        owners: list[_Var] = []
        for v, leaf in zip(self._inputs, self._leaves):
            targets.append(leaf)
            owners.append(v)
        for a in self._apps:
            for v in a.outs:
                if v.node is not None:
                    stand_in = Tensor(v.value)
                    stand_in._node, stand_in._idx, stand_in._rg = v.node[0], v.node[1], True
                    targets.append(stand_in)
                    owners.append(v)
        root = self._out
        if y.node is not None and (root._node, root._idx) != y.node:  # modified in place since
            root = targets[owners.index(y)]
        with np.errstate(all="ignore"):
            grads = autograd.grad(
                root, targets, grad_outputs=ybar, retain_graph=True, allow_unused=True
            )
        adj: dict[int, np.ndarray | None] = {}
        for v in self._vars:
            adj[v.index] = None
        for v, g in zip(owners, grads):
            adj[v.index] = np.zeros_like(v.value) if g is None else np.array(g.data, copy=True)
        # consumers: for each variable, the (application, argument) pairs that read it
        uses: dict[int, list[tuple[_App, int, _Ref]]] = {}
        for a in self._apps:
            if a.prim.vjp is None:
                continue
            for pos, r in a.refs():
                if pos in a.prim.nondiff or not any(_differentiable(o) for o in a.outs):
                    continue
                uses.setdefault(id(r.var), []).append((a, pos, r))
        rows: list[Any] = []
        for v in reversed(self._vars):
            terms = [_adjoint_term(a, pos, r) for a, pos, r in uses.get(id(v), [])]
            if v is y:
                terms.insert(0, (1, [_X(self._yname, "bar")]))
            if adj[v.index] is None:
                rhs: list[Any] = ["—"]
            else:
                rhs = _join(terms) if terms else ["0"]
            rows.append((v.index, [_V(v.index, "bar")], rhs, adj[v.index]))
        grad = {}
        for v in self._inputs:
            g = adj[v.index]
            grad[v.name] = g if g is not None else np.zeros_like(v.value)
            rows.append((None, [_X(v.name, "bar")], [_V(v.index, "bar")], grad[v.name]))
        return AdjointTable(rows, [_X(self._yname, "bar"), " = ", _fmt_seed(ybar)], grad)

    # ----- graph ----------------------------------------------------------------------------
    def to_dot(self, values: bool = True) -> str:
        """Graphviz DOT text of the computational graph (inputs as boxes, y doubly circled).

        Render with ``dot -Tpng trace.dot -o trace.png``.

        Examples
        --------
        >>> import autodiffx as ad
        >>> dot = evaluation_trace(lambda x: ad.sin(x) * x, x=1.0).to_dot()
        >>> print(dot)  # doctest: +NORMALIZE_WHITESPACE
        digraph evaluation_trace {
          rankdir=LR;
          node [fontname="Helvetica", fontsize=11];
          "v0" [shape=box, label="v₀ = x\\n1"];
          "v1" [shape=ellipse, label="v₁ = sin v₀\\n0.841"];
          "v2" [shape=ellipse, peripheries=2, label="v₂ = v₁ × v₀\\n0.841"];
          "v0" -> "v1";
          "v1" -> "v2";
          "v0" -> "v2";
        }
        """
        lines = [
            "digraph evaluation_trace {",
            "  rankdir=LR;",
            '  node [fontname="Helvetica", fontsize=11];',
        ]

        def node(v: _Var, rhs: list[Any], shape: str) -> None:
            label = f"{_render([_V(v.index)], 'text')} = {_render(rhs, 'text')}"
            if values:
                label += "\n" + _fmt_value(v.value, 3)
            label = label.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
            extra = ", peripheries=2" if v is self._y else ""
            lines.append(f'  "v{v.index}" [shape={shape}{extra}, label="{label}"];')

        for v in self._inputs:
            node(v, [_X(v.name)], "box")
        for a in self._apps:
            for k, v in enumerate(a.outs):
                node(v, _op_tokens(a, k), "ellipse")
        for a in self._apps:
            for v in a.outs:
                done = set()
                for _, r in a.refs():
                    if r.var.index in done:
                        continue
                    done.add(r.var.index)
                    lines.append(f'  "v{r.var.index}" -> "v{v.index}";')
        lines.append("}")
        return "\n".join(lines)


def _substitute(a: Any, env: dict[int, Any]) -> Any:
    if isinstance(a, _Ref):
        return env[id(a.var)]
    if type(a) in (list, tuple):
        return type(a)(_substitute(b, env) for b in a)
    return a
