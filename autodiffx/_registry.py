"""The primitive registry: one entry per op (kernel, VJP, JVP, NumPy override) and the dispatcher.

An entry is made by :func:`defprim` in one of its forms, each a rule kind of
:mod:`autodiffx._rules`:

``derivs=`` (elementwise)
    one partial derivative per argument, ``d(x, out)``; VJP ``g * d``, JVP ``sum t_i * d_i``.
``linear=`` (linear in its differentiable arguments)
    the transpose; the JVP is the op applied to the tangents.
``bilinear=`` (``mul``, ``matmul`` …)
    one transpose per argument; the JVP is ``f(ta, b) + f(a, tb)``.
``zero_deriv=True``
    piecewise constant: the derivative is zero.
``vjp=``/``jvp=`` (general)
    both written out.

Rules use ``np.*`` functions, operators and array methods, so they run on raw ndarrays in a
plain backward pass (the cost of hand-written NumPy) and, through ``__array_function__`` and
``__array_ufunc__``, on Tensors when the pass is recorded (``create_graph=True`` or forward
mode), which is what composes derivatives to any order.

Notation, read only by :mod:`autodiffx.wengert`, :mod:`autodiffx.expr` and the docs:
``notation`` is how the evaluation trace writes the op: a symbol (``"×"``, infix between
two arguments, prefix before one) or a name (``"ln"``); default its name. ``partials``
gives per argument the textbook partial derivative of the output that the trace prints
(None: none; the trace then writes ``∂v/∂u``). A template names the arguments ``{x}``
(one argument) or ``{a}``, ``{b}``, ``{c}``, the output ``{out}``; ``{(b)}``
parenthesizes a compound operand and ``{#2.5}`` is a number. A leading ``-`` is the
sign, ``1`` the identity, ``1/…`` a divisor, anything else a factor; a template with
``{d}`` (the tangent or adjoint) is the whole term, ``"tangent | adjoint"`` when they
differ (no tangent side: the op applied to the tangents). A callable gets each
argument's value if it is a scalar constant (else None) and returns the template
(``power``'s constant exponents). ``expr=True`` makes the op a function of the
expression language (:mod:`autodiffx.expr`); ``export=False`` marks an entry that is
not an ``ad.<name>`` function (internal, or reached through NumPy only).

``numpy_only="why"`` marks an op that refuses array-API arrays (CuPy, array-api-strict)
because its kernel or rule needs NumPy; the others run on them, their kernels resolved per
namespace by :func:`autodiffx._xp.how` (``docs/backends.md`` lists both).
"""

from __future__ import annotations

import inspect
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ._broadcast import fit, np_dtype
from ._convert import describe, plain, refuse_operand
from ._mode import (
    ANOMALY,
    COMPILE,
    DUAL,
    FOREIGN,
    NO_GRAD,
    SCOPE,
    STATE,
    TAPE,
    VMAP,
    WATCHED,
    quiet_enter,
    quiet_exit,
    track_tangent,
)
from ._node import Node
from ._rules import (
    Bilinear,
    Elementwise,
    General,
    Linear,
    NotDifferentiable,
    Rule,
    Zero,
    pad_batched,
)
from ._tensor import STAMP, Tensor, _new, version_counter, wrap
from ._views import link_outputs, link_view
from ._xp import (
    adopted,
    check_operands,
    composing,
    convert_operands,
    first_foreign,
    inexact,
    is_array_api,
    is_foreign,
    resolve,
    result,
)

REGISTRY: dict[str, Primitive] = {}
UFUNC_MAP: dict[np.ufunc, Callable[..., Any]] = {}
FUNCTION_MAP: dict[Callable[..., Any], Callable[..., Any]] = {}
_EMPTY: dict[str, Any] = {}


class Meta:
    """Shape and dtype of an argument that a linear rule needs without its values."""

    __slots__ = ("dtype", "shape")

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.shape = shape
        self.dtype = dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


class Primitive:
    """A registered op. Calling it applies the op to Tensors, arrays or numbers.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.exp.name, ad.exp(ad.tensor(0.0)).item()
    ('exp', 1.0)
    """

    def __init__(self, name: str, kernel: Callable[..., Any]) -> None:
        self._doc = ""
        self.example: str | None = None
        self.name = self.__name__ = name
        self.kernel = kernel
        self.vjp: Callable[..., Any] | None = None
        self.jvp: Callable[..., Any] | None = None
        self.nondiff: frozenset[int] = frozenset()
        self.nout = 1
        self.save_args = True
        self.save_out = False
        # Outputs may share the first argument's memory (True), or be that memory unchanged
        # ("alias": astype without a cast); checked per call (see autodiffx._views).
        self.view: bool | str = False
        # Multi-output views (split): view_steps(shape, **params) gives each output's index.
        self.view_steps: Callable[..., Any] | None = None
        self.shapes = True
        # One output, not a view: apply's eager path takes it.
        self.fast = False
        # A ufunc kernel returns an np.matrix or masked operand's subclass, which the result's
        # "not an ndarray" branch refuses; other kernels have their operands checked.
        self.ufunc = isinstance(kernel, np.ufunc)
        # batch(nb, *args, **params): the op on arguments with nb leading batch axes.
        self.batch: Callable[..., Any] | None = None
        # Elementwise with NumPy broadcasting: batched tangents are padded to the output's rank.
        self.broadcasting = False
        # How ad.vmap batches the op (a kind of autodiffx._vmap: "map", "lead", "reduce",
        # "flat", "gufunc", "matmul", "einsum", "fftn", "pad"); None: by its ``broadcasting``
        # or ``batch`` rule, else a loop over the batch (autodiffx._vmap.loop_primitives).
        self.vmap: str | None = None
        # Rules accept raw ndarrays (registry entries); user Functions get Tensors.
        self.raw_rules = True
        # The rule kind (autodiffx._rules): it installs vjp/jvp and serves hvp's sweeps.
        self.rule: Rule = NotDifferentiable()
        # Notation (read by the evaluation trace, the expression language and the docs table,
        # never by the engine): per argument the textbook partial derivative as a template
        # (see defprim), whether ad.expr accepts the op as a function, whether it is public.
        self.notation: str | None = None
        self.partials: tuple[str | Callable[..., str] | None, ...] | None = None
        self.expr = False
        self.export = True
        # Array-API arrays (autodiffx._xp): why the op runs on NumPy arrays only (None: it
        # runs on them, its kernel resolved per namespace).
        self.numpy_only: str | None = None
        # How ad.compile records an application (None: one step, the kernel):
        # record(recorder, args, params, result) records the kernel's parts as calls, which
        # the VJP's calls of the same parts share (autodiffx.compiler's common steps).
        self.record: Callable[..., Any] | None = None

    @property
    def kind(self) -> str:
        """The rule kind's name: elementwise, linear, bilinear, zero, general or none."""
        return self.rule.name

    @property
    def nargs(self) -> int:
        """The number of required positional arguments of the kernel."""
        return len(_arity(self))

    def __call__(self, *args: Any, **params: Any) -> Any:
        return apply(self, args, params)

    @property  # type: ignore[override]
    def __doc__(self) -> str:  # type: ignore[override]
        """The entry's one-line doc, expanded with its rule kind and a computed example."""
        return _expand_doc(self)

    @__doc__.setter
    def __doc__(self, doc: str) -> None:
        self._doc = doc

    def __repr__(self) -> str:
        return f"<primitive {self.name}>"

    # What rules call: the op on the values a rule has, raw arrays staying raw.
    def call(self, *args: Any, **params: Any) -> Any:
        """Apply to Tensors (recorded) or, when no argument is a Tensor, run the raw kernel."""
        for a in args:
            if isinstance(a, Tensor):
                return apply(self, args, params)
        return self.kernel(*args, **params)

    def batched_apply(self, nb: int, args: Sequence[Any], params: dict[str, Any]) -> Any:
        """:meth:`call` on arguments that carry ``nb`` leading batch axes (a rule's batched
        tangents; the rule got ``nb`` from its kind).

        Ops whose parameters name positions (a shape, an index, a permutation) give a
        ``batch`` rule; the others broadcast over leading axes as they are.

        Examples
        --------
        >>> import numpy as np
        >>> from autodiffx._registry import REGISTRY
        >>> REGISTRY["transpose"].batched_apply(1, (np.zeros((5, 2, 3)),), {}).shape
        (5, 3, 2)
        """
        if nb and self.batch is not None:
            return self.batch(nb, *args, **params)
        return self.call(*args, **params)


_KIND_TEXT = {
    "elementwise": "elementwise, derivative rule; broadcasts like NumPy",
    "linear": "linear, transpose rule",
    "bilinear": "bilinear, one transpose per argument",
    "zero": "piecewise constant: derivative zero",
    "general": "VJP and JVP rules",
    "none": "not differentiable",
}


def _default_example(p: Primitive) -> str | None:
    ex = p.example
    if ex is not None and not ex.startswith("["):
        return ex
    data = ex or "[0.25, 0.5]"
    if p.vjp is None:
        second = ", 0.3" if len(_arity(p)) == 2 else ""
        return f"ad.{p.name}(ad.tensor({data}){second})"
    if len(_arity(p)) == 2:
        return (
            f"a = ad.tensor({data}, requires_grad=True)\n"
            "b = ad.tensor([2.0, 3.0], requires_grad=True)\n"
            f"ad.{p.name}(a, b)\n"
            f"ad.{p.name}(a, b).sum().backward()\n"
            "a.grad, b.grad"
        )
    if p.kind in ("elementwise", "zero", "linear"):
        return (
            f"x = ad.tensor({data}, requires_grad=True)\n"
            f"ad.{p.name}(x)\n"
            f"ad.{p.name}(x).sum().backward()\n"
            "x.grad"
        )
    return None


def _arity(p: Primitive) -> tuple[int, ...]:
    k = p.kernel
    if isinstance(k, np.ufunc):
        return tuple(range(k.nin))
    sig = inspect.signature(k)
    return tuple(
        i
        for i, q in enumerate(sig.parameters.values())
        if q.default is q.empty and q.kind == q.POSITIONAL_OR_KEYWORD
    )


def _run_example(src: str) -> str:
    import autodiffx as ad

    env: dict[str, Any] = {"ad": ad, "np": np}
    lines = [">>> import autodiffx as ad"]
    for line in src.splitlines():
        lines.append(f">>> {line}")
        try:
            code = compile(line, "<example>", "eval")
        except SyntaxError:
            exec(compile(line, "<example>", "exec"), env)
            continue
        value = eval(code, env)
        if value is not None:
            lines.extend(repr(value).splitlines())
    return "\n".join(lines)


def _expand_doc(p: Primitive) -> str:
    text = p._doc or p.name
    if "Examples" in text:
        return text
    kind = _KIND_TEXT.get(p.kind, p.kind) if p.vjp is not None else "not differentiable"
    head = f"{text}\n\nRegistry primitive ``{p.name}`` ({kind})."
    src = _default_example(p)
    if src is None:
        return head
    try:
        example = _run_example(src)
    except Exception as e:  # pragma: no cover - a broken example must not break help()
        return f"{head}\n\n(example failed: {e})"
    return f"{head}\n\nExamples\n--------\n{example}\n"


def defprim(
    name: str,
    kernel: Callable[..., Any],
    *,
    derivs: Sequence[Callable[..., Any] | None] | None = None,
    derivs2: Sequence[Callable[..., Any] | None] | None = None,
    linear: Callable[..., Any] | Sequence[Callable[..., Any] | None] | None = None,
    bilinear: Sequence[Callable[..., Any]] | None = None,
    vjp: Callable[..., Any] | None = None,
    jvp: Callable[..., Any] | None = None,
    argnames: Sequence[str] = ("x",),
    nondiff: Sequence[int] = (),
    nout: int = 1,
    save_args: bool = True,
    save_out: bool = False,
    zero_deriv: bool = False,
    view: bool | str = False,
    shapes: bool = True,
    batch: Callable[..., Any] | None = None,
    broadcasting: bool = False,
    vmap: str | None = None,
    multilinear: bool = False,
    ufunc: np.ufunc | None = None,
    overrides: Sequence[Callable[..., Any]] = (),
    doc: str = "",
    example: str | None = None,
    register: bool = True,
    notation: str | None = None,
    partials: Sequence[str | Callable[..., str] | None] | None = None,
    expr: bool = False,
    export: bool = True,
    numpy_only: str | None = None,
    record: Callable[..., Any] | None = None,
) -> Primitive:
    """Register a primitive and return it; the returned object is the public function.

    The rule forms (``derivs``/``derivs2``, ``linear``, ``bilinear``, ``zero_deriv``,
    ``vjp``/``jvp`` with ``multilinear``) are the rule kinds of :mod:`autodiffx._rules`.
    ``register=False`` builds the same entry outside the registry (custom ``ad.Function``
    rules), so it is not in NumPy's dispatch tables nor in the generic test table.
    ``notation``, ``partials``, ``expr``, ``export``, ``numpy_only``: see the module docstring;
    ``record``: see ``Primitive.record``.
    """
    if register and name in REGISTRY:
        raise ValueError(f"primitive {name!r} is registered twice")
    p = Primitive(name, kernel)
    p.__doc__, p.example, p.nondiff, p.nout = doc, example, frozenset(nondiff), nout
    p.view, p.shapes, p.batch, p.save_args, p.save_out = view, shapes, batch, save_args, save_out
    p.notation, p.partials = notation, None if partials is None else tuple(partials)
    p.expr, p.export, p.vmap, p.numpy_only = expr, export, vmap, numpy_only
    p.record = record
    p.rule = _rule_of(derivs, derivs2, argnames, linear, bilinear, zero_deriv, vjp, jvp)
    p.rule.multilinear = p.rule.multilinear or multilinear
    p.raw_rules = register  # (custom Function rules read Tensors)
    p.rule.needs_tensors = not register
    p.rule.install(p)
    p.save_out = p.save_out or nout != 1  # (unused outputs' shapes: their zero cotangents)
    p.fast = p.nout == 1 and not p.view
    ew = p.kind in ("elementwise", "zero")
    p.broadcasting = broadcasting or ew or (p.ufunc and kernel.signature is None)
    if register:
        _register(p, ufunc, overrides)
    return p


def _register(
    p: Primitive, ufunc: np.ufunc | None, overrides: Sequence[Callable[..., Any]]
) -> None:
    """Enter ``p`` in the registry and NumPy's dispatch tables (its ufunc, its overrides)."""
    if isinstance(ufunc, np.ufunc):
        UFUNC_MAP[ufunc] = p
    elif isinstance(p.kernel, np.ufunc) and ufunc is None:
        UFUNC_MAP[p.kernel] = p
    for f in overrides:
        FUNCTION_MAP[f] = p
    REGISTRY[p.name] = p


def _rule_of(
    derivs: Any,
    derivs2: Any,
    argnames: Sequence[str],
    linear: Any,
    bilinear: Any,
    zero_deriv: bool,
    vjp: Any,
    jvp: Any,
) -> Rule:
    """The rule kind of an entry, from the one form it is written in."""
    if derivs is not None:
        return Elementwise(derivs, argnames, derivs2)
    if linear is not None:
        return Linear(linear)
    if bilinear is not None:
        return Bilinear(bilinear)
    if zero_deriv:
        return Zero()
    if vjp is not None:
        return General(vjp, jvp)
    return NotDifferentiable()


def op_error(name: str, args: Sequence[Any], params: dict[str, Any], e: Exception) -> Exception:
    """Rebuild an exception from a NumPy kernel so that it names the op, shapes and dtypes."""
    ps = "".join(f", {k}={v!r}" for k, v in params.items())
    msg = f"{name}({describe(args)}{ps}): {e}"
    cls = type(e) if type(e) in (ValueError, TypeError, IndexError, np.linalg.LinAlgError) else None
    return (cls or ValueError)(msg)


def apply(p: Primitive, args: Sequence[Any], params: dict[str, Any] = _EMPTY) -> Any:
    """Run primitive ``p`` on ``args`` (Tensors, arrays, numbers): the one dispatch path.

    Unwrap the arguments, run the kernel, wrap its result, and record a node when an argument
    requires grad: that is all an op does when nothing watches (``STATE.eager``: recording
    on, no dual level, anomaly detection or tape) and it has one output that is not a view.
    Everything else continues in :func:`_apply_general`.
    """
    # NOTE: one and two arguments (nearly every call) are unrolled: the generic loop and
    # *args call cost 14% more instructions per op in W1's forward pass (callgrind).
    n = len(args)
    if not 0 < n < 3 or not (STATE.eager and p.fast):
        return _apply_general(p, args, params)
    a = args[0]
    if isinstance(a, Tensor):
        da = a.data
        ea = (a._node or a, a._idx, da.shape, da.dtype) if a._rg else None
    else:
        da, ea = a, None
        if type(a) is not np.ndarray and type(a) is not float and type(a) is not int:
            if not p.ufunc and isinstance(a, np.ndarray):
                refuse_operand(p.name, a, args)
            elif adopted(a):
                return _apply_general(p, args, params)
    two = n == 2
    if two:
        b = args[1]
        if isinstance(b, Tensor):
            db = b.data
            eb = (b._node or b, b._idx, db.shape, db.dtype) if b._rg else None
        else:
            db, eb = b, None
            if type(b) is not np.ndarray and type(b) is not float and type(b) is not int:
                if not p.ufunc and isinstance(b, np.ndarray):
                    refuse_operand(p.name, b, args)
                elif adopted(b):
                    return _apply_general(p, args, params)
    try:
        if two:
            out = p.kernel(da, db, **params) if params else p.kernel(da, db)
        else:
            out = p.kernel(da, **params) if params else p.kernel(da)
    except _ERRORS as e:
        raise op_error(p.name, args, params, e) from e
    if type(out) is not np.ndarray:  # a NumPy scalar, or a subclass (refused)
        out = _plain(out, p, args)
    res = wrap(out)
    if (ea or (two and eb)) and p.vjp is not None and out.dtype.kind in "fc":
        if two:
            node = _record(p, args, (da, db), params, (ea, eb), out, res, STATE.mode)
        else:
            node = _record(p, args, (da,), params, (ea,), out, res, STATE.mode)
        res._node, res._rg = node, True
    return res


def apply2(p: Primitive, a: Any, b: Any) -> Any:
    """:func:`apply` of two positional arguments, the operators' entry (``x * y``).

    The same eager path, unrolled: the operators are most of the calls in small-model code,
    and the tuple of arguments and the branches on their number cost about 1.4k instructions
    per op (7% of W1's forward pass, callgrind). Anything watched goes through ``apply``.
    """
    if not (STATE.eager and p.fast):
        return apply(p, (a, b))
    if isinstance(a, Tensor):
        da = a.data
        ea = (a._node or a, a._idx, da.shape, da.dtype) if a._rg else None
    else:
        da, ea = a, None
        if type(a) is not float and type(a) is not int and adopted(a):
            return apply(p, (a, b))
    if isinstance(b, Tensor):
        db = b.data
        eb = (b._node or b, b._idx, db.shape, db.dtype) if b._rg else None
    else:
        db, eb = b, None
        if type(b) is not float and type(b) is not int and adopted(b):
            return apply(p, (a, b))
    try:
        out = p.kernel(da, db)
    except _ERRORS as e:
        raise op_error(p.name, (a, b), _EMPTY, e) from e
    if type(out) is not np.ndarray:  # a NumPy scalar, or a subclass (refused)
        out = _plain(out, p, (a, b))
    res = wrap(out)
    if (ea or eb) and p.vjp is not None and out.dtype.kind in "fc":
        res._node = _record(p, (a, b), (da, db), _EMPTY, (ea, eb), out, res, STATE.mode)
        res._rg = True
    return res


def _apply_general(p: Primitive, args: Sequence[Any], params: dict[str, Any]) -> Any:
    """:func:`apply` for any number of arguments, views (linked to their base), several
    outputs, Meta placeholders, and under no_grad, dual levels, anomaly detection or an
    evaluation trace."""
    st = STATE
    if st.mode & VMAP:  # (an argument may be a batched value of ad.vmap: autodiffx._vmap)
        res = st.vmap(p, args, params)
        if res is not NotImplemented:
            return res
    if (
        st.mode & (DUAL | ANOMALY | TAPE | FOREIGN) == DUAL
        and p.nout == 1
        and p.raw_rules
        and len(st.levels) == 1
        and not st.masked
    ):
        return _apply_dual(p, args, params, st)
    datas = []
    rg = False
    for a in args:
        if isinstance(a, Tensor):
            datas.append(a.data)
            rg = rg or a._rg
        else:
            if type(a) is not np.ndarray and type(a) is not float and type(a) is not int:
                if not p.ufunc and isinstance(a, np.ndarray):
                    refuse_operand(p.name, a, args)
                adopted(a)  # (a foreign array: the thread's mode gets FOREIGN)
            datas.append(a)
    mode = st.mode
    kernel = _foreign_kernel(p, args, datas, params) if mode & FOREIGN else p.kernel
    try:
        out = kernel(*datas, **params) if params else kernel(*datas)
    except _ERRORS as e:
        raise op_error(p.name, args, params, e) from e
    if mode & (NO_GRAD | SCOPE) == NO_GRAD | SCOPE and rg:  # no_grad in hvp's f: see _hvp
        st.scope.untracked = True  # type: ignore[union-attr]
    record = rg and not mode & NO_GRAD and p.vjp is not None
    if p.nout != 1:
        res = _wrap_several(p, args, datas, params, out, record, mode)
    else:
        if type(out) is not np.ndarray:  # a NumPy scalar (reductions), or a subclass (refused)
            out = _plain(out, p, args)
        res = wrap(out)
        # (a Dask array is immutable: never a view that in-place writes must follow)
        if p.view and isinstance(args[0], Tensor) and not (mode & FOREIGN and is_foreign(out)):
            link_view(res, args, p, params, mode & NO_GRAD)
        if record and (out.dtype.kind in "fc" if type(out) is np.ndarray else inexact(out.dtype)):
            res._node = _record(p, args, datas, params, _edges(args), out, res, mode)
            res._rg = True
    if mode & WATCHED & ~NO_GRAD:
        _watch(p, args, datas, params, res, mode)
    return res


def _foreign_kernel(
    p: Primitive, args: Sequence[Any], datas: list[Any], params: dict[str, Any]
) -> Callable[..., Any]:
    """The kernel of ``p`` for operands of another array library (a thread that made a
    foreign Tensor, see :mod:`autodiffx._xp`): its own for NumPy and Dask operands (Dask
    checked), else resolved once per (primitive, namespace), the NumPy operands converted."""
    x = first_foreign(datas)
    if x is None:
        return p.kernel
    if not is_array_api(x):
        check_operands(p.name, args, datas, params)
        return p.kernel
    try:
        xp = convert_operands(p.name, args, datas, x)
        key = (p, xp)
        kernel = _KERNELS.get(key)
        if kernel is None:
            kernel = _KERNELS[key] = resolve(p, xp) or _composed(p)
    except TypeError as e:
        raise TypeError(f"{p.name}({describe(args)}): {e}") from None
    return kernel


_KERNELS: dict[tuple[Primitive, Any], Callable[..., Any]] = {}


def _composed(p: Primitive) -> Callable[..., Any]:
    """``p``'s Python kernel run on Tensors over array-API arrays: its NumPy calls dispatch to
    other primitives, whose kernels are the namespace's (nothing recorded)."""
    kernel = p.kernel

    def run(*datas: Any, **params: Any) -> Any:
        ts = [wrap(d) if is_foreign(d) else d for d in datas]
        with composing(p):
            out = kernel(*ts, **params)
        if isinstance(out, tuple | list):
            return type(out)(o.data if isinstance(o, Tensor) else o for o in out)
        return out.data if isinstance(out, Tensor) else out

    return run


def _watch(
    p: Primitive, args: Sequence[Any], datas: list[Any], params: Any, res: Any, mode: int
) -> None:
    """What watches an op's result: dual levels (tangents), anomaly detection, a tape."""
    st = STATE
    # Not the inner ops of a tangent rule, except for ad.compile (they compute its program;
    # the application comes first, as the tangent rule may read its output).
    if mode & TAPE and (not st.masked or mode & COMPILE):
        st.tape(p, args, params, res)
    if mode & DUAL:
        _push_tangents(p, args, datas, params, res, st)
    if mode & ANOMALY:
        _check_finite(p, res, "forward")


def _apply_dual(p: Primitive, args: Sequence[Any], params: dict[str, Any], st: Any) -> Any:
    """``apply`` with one dual level open (no anomaly detection, no tape), one output.

    The common forward-mode case: ``jvp``, and forward-over-reverse (``hvp``, whose
    backward pass runs with grad off). The tangent rule runs on raw arrays unless a reverse
    pass may differentiate the tangent (see :class:`autodiffx._mode.Scope`).
    """
    level = st.levels[0]
    datas = []
    r_tans = []
    any_t = rg = t_rg = False
    for a in args:
        if isinstance(a, Tensor):
            datas.append(a.data)
            if a._rg:
                rg = True
            if a._tan is not None:
                t = a._tan.get(level)
                if t is not None:
                    r_tans.append(t.data)
                    any_t = True
                    if t._rg:
                        t_rg = True
                    continue
        else:
            if type(a) is not np.ndarray and not p.ufunc and isinstance(a, np.ndarray):
                refuse_operand(p.name, a, args)
            datas.append(a)
        r_tans.append(None)
    try:
        out = p.kernel(*datas, **params) if params else p.kernel(*datas)
    except _ERRORS as e:
        raise op_error(p.name, args, params, e) from e
    if type(out) is not np.ndarray:
        out = _plain(out, p, args)
    res = wrap(out)
    no_grad = st.mode & NO_GRAD
    if p.view and isinstance(args[0], Tensor):
        link_view(res, args, p, params, no_grad)
    grad = not no_grad
    if rg and grad and p.vjp is not None and out.dtype.kind in "fc":
        res._node = _record(p, args, datas, params, _edges(args), out, res, DUAL)
        res._rg = True
    if not any_t:
        return res
    raw = _tangent_unrecorded(st, level, rg and grad, t_rg and grad, args)
    if not raw or p.jvp is None or st.level_nb.get(level):
        _push_tangents(p, args, datas, params, res, st)  # recorded, batched, or an error
        return res
    st.masked.add(level)
    token = quiet_enter()
    try:
        tout = p.jvp(tuple(r_tans), out, datas, params)
    finally:
        quiet_exit(token)
        st.masked.discard(level)
    if tout is not None:
        _set_tangent(res, tout, level, 0)
    return res


def _wrap_several(
    p: Primitive,
    args: Sequence[Any],
    datas: list[Any],
    params: Any,
    out: Any,
    record: bool,
    mode: int,
) -> tuple[Tensor, ...]:
    """The result Tensors of a several-output op (one node records them all)."""
    outs = tuple(o if type(o) is np.ndarray else _plain(o, p, args) for o in out)
    res = tuple(wrap(o, idx=k) for k, o in enumerate(outs))
    if p.view and isinstance(args[0], Tensor) and not (mode & FOREIGN and is_foreign(outs[0])):
        link_outputs(res, args[0], p, params, mode & NO_GRAD, REGISTRY["getitem"])
    if record and any(inexact(o.dtype) for o in outs):
        node = _record(p, args, datas, params, _edges(args), outs, res, mode)
        for t, o in zip(res, outs):
            if inexact(o.dtype):
                t._node, t._rg = node, True
    return res


def _plain(out: Any, p: Primitive, args: Sequence[Any]) -> Any:
    """A kernel's output as a base-class ndarray (an np.matrix or masked result: refused),
    or a Dask array of an op that runs on Dask (see :mod:`autodiffx._xp`)."""
    if isinstance(out, np.ndarray):
        return plain(out, p.name, args)
    if isinstance(out, np.generic):
        return np.asarray(out)
    return result(out, p.name, args)


def _edges(args: Sequence[Any]) -> list[Any]:
    """Per argument: (producer Node or leaf, output index, shape, dtype) if it requires grad."""
    edges = []
    for a in args:
        if isinstance(a, Tensor) and a._rg:
            n = a._node
            d = a.data
            edges.append((a if n is None else n, a._idx, d.shape, d.dtype))
        else:
            edges.append(None)
    return edges


def _record(
    p: Primitive,
    args: Sequence[Any],
    datas: Sequence[Any],
    params: dict[str, Any],
    edges: Sequence[Any],
    out: Any,
    res: Any,
    mode: int,
) -> Node:
    """Make the graph node of one application (the one place a Node is built)."""
    node = _new(Node)
    node.prim = p
    node.params = params
    node.multi = multi = p.nout != 1
    node.nout = len(out) if multi else 1
    node.edges = edges
    node.stamp = STAMP[0]
    # hvp's scope: its tangents and pair rules read every argument and output (see Scope).
    scope = STATE._scope if mode & (DUAL | SCOPE) else None
    if p.save_args or scope is not None:
        node.args = args
        node.datas = datas
    elif p.shapes:
        nd = p.nondiff
        node.args = node.datas = [
            Meta(d.shape, d.dtype) if i not in nd and type(d) is np.ndarray else d
            for i, d in enumerate(datas)
        ]
    else:
        node.args = node.datas = _NONES[len(datas)] if len(datas) < 8 else [None] * len(datas)
    if p.save_out:
        node.out = out
        node.out_vc = [version_counter(t) for t in res] if multi else version_counter(res)
    else:
        node.out = out if scope is not None else None
        node.out_vc = None
    # Forward-over-reverse needs the outputs' tangents in the recorded backward pass: the node
    # keeps their tangent dicts, shared with the outputs (keeping the outputs themselves
    # would be a reference cycle, output -> node -> output).
    if mode & (DUAL | SCOPE):
        if multi:
            node.outs = tuple([_cell(t) for t in res])
        else:
            cell = res._tan
            node.outs = res._tan = {} if cell is None else cell
        if scope is not None:
            scope.add(node, edges)
    else:
        node.outs = None
    node.hooks = None
    node.where = _user_frames() if mode & ANOMALY else None
    return node


_ERRORS = (ValueError, TypeError, IndexError, np.linalg.LinAlgError)


_NONES = [(None,) * k for k in range(8)]


def _push_tangents(
    p: Primitive,
    args: Sequence[Any],
    datas: Sequence[Any],
    params: dict[str, Any],
    res: Any,
    st: Any,
) -> None:
    """Forward mode: compute the output tangent at every open dual level that has one."""
    for level in st.levels:
        if st.masked and level in st.masked:
            continue  # (the level whose tangent rule is running: its inner ops carry none)
        tans: list[Any] = []
        rg = t_rg = False
        for a in args:
            t = None
            if isinstance(a, Tensor):
                rg = rg or a._rg
                if a._tan is not None:
                    t = a._tan.get(level)
                    t_rg = t_rg or (t is not None and t._rg)
            tans.append(t)
        if all(t is None for t in tans):
            continue
        if p.jvp is None:
            if p.kind == "none":
                continue  # non-differentiable op (comparisons, argmax): no tangent
            raise TypeError(
                f"'{p.name}' has no forward-mode (JVP) rule; an ad.Function subclass needs a "
                "static jvp(ctx, *tangents) to be used in forward mode"
            )
        # NOTE: with one level open and no reverse graph to record through the tangents, the
        # rule runs on raw arrays (the cost of hand-written NumPy), as backward rules do.
        raw = (
            p.raw_rules
            and not st.mode & (COMPILE | FOREIGN)  # (compile records the rule's ops; _xp)
            and len(st.levels) == 1
            and (not st._grad_enabled or _tangent_unrecorded(st, level, rg or t_rg, t_rg, args))
        )
        _push_level(p, args, datas, params, res, st, level, tans, raw)


def _push_level(
    p: Primitive,
    args: Sequence[Any],
    datas: Sequence[Any],
    params: dict[str, Any],
    res: Any,
    st: Any,
    level: int,
    tans: list[Any],
    raw: bool,
) -> None:
    """Run ``p``'s JVP on the tangents ``tans`` at dual ``level`` (on raw arrays if ``raw``)
    and attach the result to the outputs ``res``."""
    nb = st.level_nb.get(level, 0)
    if nb and p.broadcasting:
        ndim = res.ndim
        tans = [None if t is None else pad_batched(t, nb, ndim) for t in tans]
    st.masked.add(level)
    token = quiet_enter()
    try:
        if raw:
            out = res.data if p.nout == 1 else tuple(o.data for o in res)
            r_tans = tuple(None if t is None else t.data for t in tans)
            tout = p.jvp(r_tans, out, datas, params, nb)
        else:
            tout = p.jvp(tuple(tans), res, args, params, nb)
    finally:
        quiet_exit(token)
        st.masked.discard(level)
    if tout is None:
        return
    for o, t in [(res, tout)] if p.nout == 1 else zip(res, tout):
        if t is not None:
            _set_tangent(o, t, level, nb)


def _cell(t: Tensor) -> dict[int, Any]:
    """``t``'s tangents by level, the dict made now if it has none (see ``Node.outs``)."""
    cell = t._tan
    if cell is None:
        cell = t._tan = {}
    return cell


def _tangent_unrecorded(st: Any, level: int, rg: bool, t_rg: bool, args: Sequence[Any]) -> bool:
    """Whether a tangent rule at ``level`` may run on raw arrays, unrecorded: nothing it reads
    requires grad, or a forward-over-reverse scope at ``level`` guarantees that no reverse
    pass will differentiate the tangent (see :class:`autodiffx._mode.Scope`)."""
    if not (rg or t_rg):
        return True
    sc = st.scope
    return not t_rg and sc is not None and sc.level == level and not sc.reaches_outside(args)


def _set_tangent(o: Tensor, t: Any, level: int, nb: int) -> None:
    """Attach tangent ``t`` (fitted to ``o``'s shape and dtype) to output ``o`` at ``level``."""
    d = o.data
    dt = d.dtype
    if not (dt.kind in "fc" if type(d) is np.ndarray else inexact(dt)):
        return
    if isinstance(t, Tensor):
        td = t.data.dtype
        if nb or t.data.shape != d.shape or (td is not dt and np_dtype(td) != np_dtype(dt)):
            t = fit(t, d.shape, dt, nb)
        if t._node is not None:  # recorded: its graph may lead back to o (a cycle)
            track_tangent(o, level, t)
            return
    else:
        if type(t) is not np.ndarray and (isinstance(t, np.generic) or not is_foreign(t)):
            t = np.asarray(t)
        if nb or t.shape != d.shape or t.dtype != dt:
            t = fit(t, d.shape, dt, nb)
        t = wrap(t)
    if o._tan is None:
        o._tan = {level: t}
    else:
        o._tan[level] = t


def _check_finite(p: Primitive, res: Any, where: str) -> None:
    outs = (res,) if isinstance(res, Tensor) else res
    for o in outs:
        d = o.data
        if d.dtype.kind in "fc" and not np.all(np.isfinite(d)):
            bad = "nan" if np.isnan(d).any() else "inf"
            raise FloatingPointError(f"{where} of '{p.name}' produced {bad}")


def _user_frames() -> str:
    """The innermost frames outside autodiffx: where the user's code created a node."""
    pkg = __file__.rsplit("/", 1)[0]
    frames = [f for f in traceback.extract_stack()[:-2] if not f.filename.startswith(pkg)]
    return "".join(traceback.format_list(frames[-3:]))
