"""The primitive registry: one entry per op (kernel, VJP, JVP, NumPy override) and the dispatcher.

An entry is made by :func:`defprim` in exactly one of four forms:

``derivs=`` (elementwise)
    one partial derivative per argument, ``d(x, out)``; VJP ``g * d``, JVP ``sum t_i * d_i``.
``linear=`` (linear in its differentiable arguments)
    the transpose; the JVP is the op applied to the tangents.
``bilinear=`` (``mul``, ``matmul`` …)
    one transpose per argument; the JVP is ``f(ta, b) + f(a, tb)``.
``vjp=``/``jvp=`` (general)
    both written out.

Rules use ``np.*`` functions, operators and array methods, so they run on raw ndarrays in a
plain backward pass (the cost of hand-written NumPy) and, through ``__array_function__`` and
``__array_ufunc__``, on Tensors when the pass is recorded (``create_graph=True`` or forward
mode), which is what composes derivatives to any order.
"""

from __future__ import annotations

import inspect
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ._convert import plain, refuse_operand
from ._mode import STATE, quiet_enter, quiet_exit, track_tangent

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
        self.kind = "general"
        # One output, no Meta placeholders, not a view: eligible for apply1/apply2.
        self.fast = False
        # A ufunc kernel returns an np.matrix or masked operand's subclass, which the result's
        # "not an ndarray" branch refuses; other kernels have their operands checked.
        self.ufunc = isinstance(kernel, np.ufunc)
        # batch(nb, *args, **params): the op on arguments with nb leading batch axes.
        self.batch: Callable[..., Any] | None = None
        # Elementwise with NumPy broadcasting: batched tangents are padded to the output's rank.
        self.broadcasting = False
        # Rules accept raw ndarrays (registry entries); user Functions get Tensors.
        self.raw_rules = True
        # Linear in each differentiable argument separately: the VJP for argument i reads the
        # values of the other arguments only (and argument i's shape), never ``out``.
        self.multilinear = False
        # Elementwise entries: per argument the bound derivative d_i(args, out, params), its
        # derivative with respect to that argument (or None), and whether d_i is a constant.
        self.derivs: list[Any] = []
        self.derivs2: list[Any] = []
        self.deriv_const: list[bool] = []
        # How hvp's pair sweep evaluates this primitive's rules (see _pair_kind).
        self.pair = PAIR_DUAL

    def __call__(self, *args: Any, **params: Any) -> Any:
        if not params and len(args) == 1 and self.fast and not STATE.mode & 15:
            a = args[0]
            if isinstance(a, Tensor):
                return apply1(self, a)
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

    def call(self, *args: Any, **params: Any) -> Any:
        """Apply to Tensors (recorded) or, when no argument is a Tensor, run the raw kernel."""
        for a in args:
            if isinstance(a, Tensor):
                return apply(self, args, params)
        return self.kernel(*args, **params)


_KIND_TEXT = {
    "elementwise": "elementwise, derivative rule; broadcasts like NumPy",
    "linear": "linear, transpose rule",
    "bilinear": "bilinear, one transpose per argument",
    "zero": "piecewise constant: derivative zero",
    "general": "VJP and JVP rules",
}


def _default_example(p: Primitive) -> str | None:
    ex = p.example
    if ex is not None and not ex.startswith("["):
        return ex
    data = ex or "[0.25, 0.5]"
    if p.vjp is None:
        return f"ad.{p.name}(ad.tensor({data}), 0.3)"
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


def _binder(
    fn: Callable[..., Any], argnames: Sequence[str]
) -> tuple[Callable[..., Any], bool, bool]:
    """Bind a derivative written with argument names (and ``out``) to ``(args, out, params)``."""
    sig = inspect.signature(fn).parameters.values()
    names = [p.name for p in sig if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    takes_params = any(p.kind in (p.KEYWORD_ONLY, p.VAR_KEYWORD) for p in sig)
    pos = []
    for n in names:
        if n == "out":
            pos.append(-1)
        elif n in argnames:
            pos.append(argnames.index(n))
        else:
            raise TypeError(f"derivative parameter {n!r} is not one of {(*argnames, 'out')}")
    uses_out = -1 in pos
    uses_args = any(p >= 0 for p in pos)
    if takes_params:
        return (
            lambda args, out, params: fn(*[out if p < 0 else args[p] for p in pos], **params),
            uses_args,
            uses_out,
        )
    # Specialised closures: one call less per rule on the hot path.
    if pos == [-1]:
        return (lambda args, out, params: fn(out)), False, True
    if pos == [0]:
        return (lambda args, out, params: fn(args[0])), True, False
    if pos == [1]:
        return (lambda args, out, params: fn(args[1])), True, False
    if pos == [0, -1]:
        return (lambda args, out, params: fn(args[0], out)), True, True
    if pos == [1, -1]:
        return (lambda args, out, params: fn(args[1], out)), True, True
    if pos == [0, 1]:
        return (lambda args, out, params: fn(args[0], args[1])), True, False
    if pos == [-1, 1]:  # a unary second derivative of (out, d)
        return (lambda args, out, params: fn(out, args[1])), True, True
    return (
        lambda args, out, params: fn(*[out if p < 0 else args[p] for p in pos]),
        uses_args,
        uses_out,
    )


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
    multilinear: bool = False,
    ufunc: np.ufunc | None = None,
    overrides: Sequence[Callable[..., Any]] = (),
    doc: str = "",
    example: str | None = None,
    register: bool = True,
) -> Primitive:
    """Register a primitive and return it; the returned object is the public function.

    ``register=False`` builds the same entry outside the registry (custom ``ad.Function``
    rules), so it is not in NumPy's dispatch tables nor in the generic test table.
    ``derivs2`` (with ``derivs``) gives, per argument, the derivative of its ``derivs``
    entry with respect to that argument (written with the same names, ``out`` and ``d``, the
    first derivative's value, included):
    forward-over-reverse then runs the node on raw arrays (``ad.hvp``); without it the
    derivative is evaluated on dual numbers, which gives the same values more slowly.
    ``multilinear=True`` declares general rules linear in each argument separately (the VJP
    for one argument reads only the others' values): forward-over-reverse then computes the
    tangent of a gradient flowing through it without its dead primal (see ``ad.hvp``).
    """
    if register and name in REGISTRY:
        raise ValueError(f"primitive {name!r} is registered twice")
    p = Primitive(name, kernel)
    p.__doc__ = doc
    p.example = example
    p.nondiff = frozenset(nondiff)
    p.nout = nout
    p.view = view
    p.shapes = shapes
    p.batch = batch
    if derivs is not None:
        _def_elementwise(p, derivs, argnames, derivs2)
    elif linear is not None:
        _def_linear(p, linear)
    elif bilinear is not None:
        _def_bilinear(p, bilinear)
    elif zero_deriv:
        p.kind = "zero"
        p.save_args = False
        p.shapes = False
        p.vjp = lambda needs, g, out, args, params: (None,) * len(args)
        p.jvp = lambda tans, out, args, params: None
    elif vjp is not None:
        p.kind = "general"
        p.save_args, p.save_out = save_args, save_out
        p.vjp = lambda needs, g, out, args, params: vjp(needs, g, out, *args, **params)
        if jvp is not None:
            p.jvp = lambda tans, out, args, params: jvp(tans, out, *args, **params)
    if nout != 1:
        p.save_out = True  # the engine needs the shapes of unused outputs for their zero cotangents
    p.fast = p.nout == 1 and not p.view and (p.save_args or not p.shapes)
    p.multilinear = multilinear or p.kind in ("linear", "bilinear")
    p.broadcasting = (
        broadcasting
        or p.kind in ("elementwise", "zero")
        or (isinstance(kernel, np.ufunc) and kernel.signature is None)
    )
    if not register:
        p.raw_rules = False
    p.pair = _pair_kind(p)
    if not register:
        return p
    if isinstance(ufunc, np.ufunc):
        UFUNC_MAP[ufunc] = p
    elif kernel is not None and isinstance(kernel, np.ufunc) and ufunc is None:
        UFUNC_MAP[kernel] = p
    for f in overrides:
        FUNCTION_MAP[f] = p
    REGISTRY[name] = p
    return p


# How ad.hvp's pair sweep (_graph.run_hvp) carries a cotangent and its tangent through a
# node of a primitive, on raw arrays (an elementwise rule uses the product rule with its
# second derivatives where it can, and dual Tensors otherwise); PAIR_RULES_NEED_TENSORS:
# not at all (custom Function rules).
PAIR_RULES_NEED_TENSORS = -1
PAIR_NONE, PAIR_LINEAR, PAIR_MULTILINEAR, PAIR_ELEMENTWISE, PAIR_DUAL = range(5)


def _pair_kind(p: Primitive) -> int:
    """The ``pair`` kind of a primitive (see above), fixed when it is registered."""
    if not p.raw_rules:
        return PAIR_RULES_NEED_TENSORS
    if p.vjp is None or p.kind == "zero":
        return PAIR_NONE
    if p.kind == "linear":
        return PAIR_LINEAR
    if p.multilinear:
        return PAIR_MULTILINEAR
    if p.kind == "elementwise":
        return PAIR_ELEMENTWISE
    return PAIR_DUAL


def _def_elementwise(
    p: Primitive,
    derivs: Sequence[Any],
    argnames: Sequence[str],
    derivs2: Sequence[Any] | None = None,
) -> None:
    p.kind = "elementwise"
    bound = []
    const = []
    save_args = save_out = False
    for d in derivs:
        if d is None:
            bound.append(None)
            const.append(True)
            continue
        b, ua, uo = _binder(d, argnames)
        bound.append(b)
        const.append(not (ua or uo))
        save_args |= ua
        save_out |= uo
    # NOTE: second derivatives are read only by hvp, whose recording keeps every argument
    # and output; they must not make a plain backward pass keep more (W3 saves no `out`).
    # A second derivative may also name ``d``: the first derivative's value.
    bound2 = [None if d is None else _binder(d, (*argnames, "d"))[0] for d in derivs2 or ()]
    bound2 += [None] * (len(bound) - len(bound2))
    p.derivs, p.derivs2, p.deriv_const = bound, bound2, const
    p.save_args, p.save_out = save_args, save_out
    p.shapes = False  # the engine's edges carry the shapes; derivatives never read Metas
    n = len(bound)

    if n == 1:
        d0 = bound[0]

        def vjp(needs: Any, g: Any, out: Any, args: Any, params: Any) -> Any:
            return (g * d0(args, out, params),)

        def jvp(tans: tuple[Any, ...], out: Any, args: Any, params: Any) -> Any:
            return tans[0] * d0(args, out, params)

    else:

        def vjp(needs: Any, g: Any, out: Any, args: Any, params: Any) -> Any:
            return [
                g * bound[i](args, out, params) if needs[i] and bound[i] is not None else None
                for i in range(n)
            ]

        def jvp(tans: tuple[Any, ...], out: Any, args: Any, params: Any) -> Any:
            acc = None
            for i in range(n):
                t = tans[i]
                if t is not None and bound[i] is not None:
                    term = t * bound[i](args, out, params)
                    acc = term if acc is None else acc + term
            return acc

    p.vjp, p.jvp = vjp, jvp


def _def_linear(p: Primitive, transpose: Any) -> None:
    p.kind = "linear"
    p.save_args = False
    if callable(transpose):

        def vjp(needs: tuple[bool, ...], g: Any, out: Any, args: Any, params: Any) -> Any:
            return transpose(g, *args, **params)

    elif len(transpose) == 2:
        t0, t1 = transpose

        def vjp(needs: Any, g: Any, out: Any, args: Any, params: Any) -> Any:
            return (
                t0(g, *args, **params) if needs[0] and t0 is not None else None,
                t1(g, *args, **params) if needs[1] and t1 is not None else None,
            )

    else:
        ts = tuple(transpose)

        def vjp(needs: Any, g: Any, out: Any, args: Any, params: Any) -> Any:
            return [
                t(g, *args, **params) if needs[i] and t is not None else None
                for i, t in enumerate(ts)
            ]

    nd = p.nondiff

    def jvp(tans: tuple[Any, ...], out: Any, args: Any, params: Any) -> Any:
        nb = STATE.nb
        bshape = next(t.shape[:nb] for t in tans if t is not None) if nb else ()
        filled = []
        for i, (a, t) in enumerate(zip(args, tans)):
            if i not in nd and t is None:
                t = _zeros_like(a, bshape)
                if nb and p.broadcasting:  # aligned like the padded tangents
                    t = _pad_batched(t, nb, out.ndim)
            filled.append(a if i in nd else t)
        return batched_apply(p, filled, params)

    p.vjp, p.jvp = vjp, jvp


def _def_bilinear(p: Primitive, transposes: Sequence[Callable[..., Any]]) -> None:
    p.kind = "bilinear"
    ta, tb = transposes

    def vjp(needs: tuple[bool, ...], g: Any, out: Any, args: Any, params: Any) -> list[Any]:
        a, b = args
        return [
            ta(g, a, b, **params) if needs[0] else None,
            tb(g, a, b, **params) if needs[1] else None,
        ]

    def jvp(tans: tuple[Any, ...], out: Any, args: Any, params: Any) -> Any:
        a, b = args
        ta_, tb_ = tans
        acc = None if ta_ is None else batched_apply(p, (ta_, b), params)
        if tb_ is not None:
            term = batched_apply(p, (a, tb_), params)
            acc = term if acc is None else acc + term
        return acc

    p.vjp, p.jvp = vjp, jvp


def _zeros_like(a: Any, bshape: tuple[int, ...] = ()) -> Any:
    """The zero tangent of argument ``a`` (with batch axes ``bshape``)."""
    if not bshape and not isinstance(a, Tensor | np.ndarray):
        return 0.0
    return np.zeros(bshape + np.shape(a), getattr(a, "dtype", np.float64))


def _pad_batched(t: Any, nb: int, ndim: int) -> Any:
    """A batched tangent with size-1 axes after the batch axes up to the output's rank."""
    pad = ndim - (t.ndim - nb)
    if pad <= 0:
        return t
    return t.reshape(t.shape[:nb] + (1,) * pad + t.shape[nb:])


def batched_apply(p: Primitive, args: Sequence[Any], params: dict[str, Any]) -> Any:
    """Apply ``p`` to arguments whose tangents carry ``batch_ndim()`` leading batch axes.

    Ops whose parameters name positions (a shape, an index, a permutation) give a ``batch``
    rule; the others broadcast over leading axes as they are.
    """
    nb = STATE.nb
    if nb and p.batch is not None:
        return p.batch(nb, *args, **params)
    for a in args:
        if isinstance(a, Tensor):
            return apply(p, args, params)
    return p.kernel(*args, **params)  # a rule on raw arrays: nothing to record or carry


def _describe(args: Sequence[Any]) -> str:
    parts = []
    for a in args:
        if isinstance(a, Tensor | np.ndarray):
            parts.append(f"{a.dtype}{list(a.shape)}")
        elif isinstance(a, list | tuple):
            parts.append("[" + ", ".join(_describe([b]) for b in a) + "]")
        else:
            parts.append(type(a).__name__)
    return ", ".join(parts)


def op_error(name: str, args: Sequence[Any], params: dict[str, Any], e: Exception) -> Exception:
    """Rebuild an exception from a NumPy kernel so that it names the op, shapes and dtypes."""
    ps = "".join(f", {k}={v!r}" for k, v in params.items())
    msg = f"{name}({_describe(args)}{ps}): {e}"
    cls = type(e) if type(e) in (ValueError, TypeError, IndexError, np.linalg.LinAlgError) else None
    return (cls or ValueError)(msg)


def apply(p: Primitive, args: Sequence[Any], params: dict[str, Any] = _EMPTY) -> Any:
    """Run primitive ``p`` on ``args``: the hot path of every op."""
    st = STATE
    if st.mode & 14 == 2 and p.nout == 1 and p.raw_rules and len(st.levels) == 1 and not st.masked:
        return _apply_dual(p, args, params, st)
    datas = []
    rg = False
    for a in args:
        if isinstance(a, Tensor):
            datas.append(a.data)
            if a._rg:
                rg = True
        else:
            if type(a) is not np.ndarray and not p.ufunc and isinstance(a, np.ndarray):
                refuse_operand(p.name, a, args)
            datas.append(a)
    try:
        out = p.kernel(*datas, **params) if params else p.kernel(*datas)
    except (ValueError, TypeError, IndexError, np.linalg.LinAlgError) as e:
        raise op_error(p.name, args, params, e) from e
    mode = STATE.mode
    record = rg and not (mode & 1) and p.vjp is not None
    if mode & 17 == 17 and rg:  # under no_grad inside hvp's function: see func.hvp
        STATE.scope.untracked = True  # type: ignore[union-attr]
    if p.nout == 1:
        if type(out) is not np.ndarray:  # a NumPy scalar, or a subclass (refused)
            out = plain(out, p.name, args) if isinstance(out, np.ndarray) else np.asarray(out)
        res = _new(Tensor)
        res.data = out
        res._grad = res._tan = res._hooks = None
        res._idx = 0
        res._vc = None
        if p.view and isinstance(args[0], Tensor):
            link_view(res, args, p, params, mode & 1)
        if record and out.dtype.kind in "fc":
            res._node = _record(p, args, datas, params, _edges(args), out, res, mode)
            res._rg = True
        else:
            res._node = None
            res._rg = False
    else:
        res = []
        outs = []
        for o in out:
            if type(o) is not np.ndarray:
                o = plain(o, p.name, args) if isinstance(o, np.ndarray) else np.asarray(o)
            outs.append(o)
            t = _new(Tensor)
            t.data = o
            t._grad = t._tan = t._hooks = t._node = t._vc = None
            t._rg = False
            t._idx = len(res)
            res.append(t)
        res = tuple(res)
        if p.view and isinstance(args[0], Tensor):
            link_outputs(res, args[0], p, params, mode & 1)
        if record and any(o.dtype.kind in "fc" for o in outs):
            node = _record(p, args, datas, params, _edges(args), tuple(outs), res, mode)
            for i, t in enumerate(res):
                if outs[i].dtype.kind in "fc":
                    t._node, t._rg = node, True
    if mode & 14:
        if mode & 2:
            _push_tangents(p, args, datas, params, res, STATE)
        if mode & 4:
            _check_finite(p, res, "forward")
        if mode & 8 and not STATE.masked:  # not the inner ops of a tangent rule
            STATE.tape(p, args, params, res)
    return res


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
        res = _result(out)  # (refuses np.matrix and masked results)
    except _ERRORS as e:
        raise op_error(p.name, args, params, e) from e
    out = res.data
    no_grad = st.mode & 1
    if p.view and isinstance(args[0], Tensor):
        link_view(res, args, p, params, no_grad)
    grad = not no_grad
    if rg and grad and p.vjp is not None and out.dtype.kind in "fc":
        res._node = _record(p, args, datas, params, _edges(args), out, res, 2)
        res._rg = True
    if not any_t:
        return res
    raw = _tangent_unrecorded(st, level, rg and grad, t_rg and grad, args)
    if not raw or p.jvp is None or st.level_nb.get(level) or st.nb:
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
    scope = STATE._scope if mode & 18 else None
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
    if mode & 18:
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
    node.where = _user_frames() if mode & 4 else None
    return node


def _result(out: Any) -> Tensor:
    """A fresh non-recorded Tensor around a kernel's (single) output."""
    if type(out) is not np.ndarray:  # a NumPy scalar, or a subclass (refused)
        out = plain(out) if isinstance(out, np.ndarray) else np.asarray(out)
    res = _new(Tensor)
    res.data = out
    res._grad = res._tan = res._hooks = res._vc = res._node = None
    res._idx = 0
    res._rg = False
    return res


_ERRORS = (ValueError, TypeError, IndexError, np.linalg.LinAlgError)


def apply1(p: Primitive, a: Tensor) -> Tensor:
    """``apply(p, (a,))`` for a ``fast`` primitive, one Tensor, grad on, no open dual level,
    anomaly detection or tape (an hvp scope may be open: see ``_record``)."""
    da = a.data
    try:
        out = p.kernel(da)
        res = _result(out)  # (refuses np.matrix and masked results)
    except _ERRORS as e:
        raise op_error(p.name, (a,), _EMPTY, e) from e
    if a._rg and p.vjp is not None and res.data.dtype.kind in "fc":
        n = a._node
        edges = ((a if n is None else n, a._idx, da.shape, da.dtype),)
        res._node = _record(p, (a,), (da,), _EMPTY, edges, res.data, res, STATE.mode)
        res._rg = True
    return res


def apply2(p: Primitive, a: Any, b: Any) -> Any:
    """``apply(p, (a, b))``, specialised for the binary operators of Tensors."""
    # NOTE: the operators are most of the calls in small-model code; skipping the generic
    # argument loop and *args packing saves about a fifth of the per-op cost (benchmarks/).
    if STATE.mode & 15 or not p.fast:  # (16 alone: hvp's scope, which _record handles)
        return apply(p, (a, b))
    if isinstance(a, Tensor):
        da = a.data
        ra = a._rg
    else:
        da = a
        ra = False
    if isinstance(b, Tensor):
        db = b.data
        rb = b._rg
    else:
        db = b
        rb = False
    try:
        out = p.kernel(da, db)
        res = _result(out)  # (refuses np.matrix and masked results)
    except _ERRORS as e:
        raise op_error(p.name, (a, b), _EMPTY, e) from e
    if (ra or rb) and p.vjp is not None and res.data.dtype.kind in "fc":
        if ra:
            n = a._node
            ea = (a if n is None else n, a._idx, da.shape, da.dtype)
        else:
            ea = None
        if rb:
            n = b._node
            eb = (b if n is None else n, b._idx, db.shape, db.dtype)
        else:
            eb = None
        res._node = _record(p, (a, b), (da, db), _EMPTY, (ea, eb), res.data, res, STATE.mode)
        res._rg = True
    return res


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
    levels = st.levels
    masked = st.masked
    for level in levels:
        if masked and level in masked:
            continue
        tans: list[Any] = []
        r_tans: list[Any] = []
        any_t = False
        rg = t_rg = False
        for a in args:
            if isinstance(a, Tensor):
                if a._rg:
                    rg = True
                if a._tan is not None:
                    t = a._tan.get(level)
                    if t is not None:
                        any_t = True
                        if t._rg:
                            rg = t_rg = True
                        tans.append(t)
                        r_tans.append(t.data)
                        continue
            tans.append(None)
            r_tans.append(None)
        if not any_t:
            continue
        if p.jvp is None:
            if p.vjp is None and p.kind == "general":
                continue  # non-differentiable op (comparisons, argmax): no tangent
            raise TypeError(
                f"'{p.name}' has no forward-mode (JVP) rule; an ad.Function subclass needs a "
                "static jvp(ctx, *tangents) to be used in forward mode"
            )
        nb = st.level_nb.get(level, 0)
        if nb and p.broadcasting:
            # NOTE: batch axes lead, so a tangent of a lower-rank operand must be padded
            # before NumPy broadcasting aligns shapes from the right.
            ndim = res.ndim
            tans = [None if t is None else _pad_batched(t, nb, ndim) for t in tans]
            r_tans = [None if t is None else t.data for t in tans]
        # NOTE: with one level open and no reverse graph to record through the tangents, the
        # rule runs on raw arrays (the cost of hand-written NumPy), as backward rules do.
        raw = (
            p.raw_rules
            and len(levels) == 1
            and (not st._grad_enabled or _tangent_unrecorded(st, level, rg, t_rg, args))
        )
        masked.add(level)
        prev_nb = st.nb
        st.nb = nb
        token = quiet_enter()
        try:
            if raw:
                tout = p.jvp(
                    tuple(r_tans),
                    res.data if p.nout == 1 else tuple(o.data for o in res),
                    datas,
                    params,
                )
            else:
                tout = p.jvp(tuple(tans), res, args, params)
        finally:
            quiet_exit(token)
            masked.discard(level)
            st.nb = prev_nb
        if p.nout == 1:
            if tout is not None:
                _set_tangent(res, tout, level, nb)
        elif tout is not None:
            for o, t in zip(res, tout):
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
    if dt.kind not in "fc":
        return
    if isinstance(t, Tensor):
        if nb or t.data.shape != d.shape or t.data.dtype != dt:
            t = fit(t, d.shape, dt, nb)
        if t._node is not None:  # recorded: its graph may lead back to o (a cycle)
            track_tangent(o, level, t)
            return
    else:
        if type(t) is not np.ndarray:
            t = np.asarray(t)
        if nb or t.shape != d.shape or t.dtype != dt:
            t = fit(t, d.shape, dt, nb)
        t = _wrap_const(t)
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


def _wrap_const(arr: np.ndarray) -> Any:
    t = _new(Tensor)
    t.data = arr
    t._grad = t._tan = t._hooks = t._node = None
    t._rg = False
    t._idx = 0
    t._vc = None
    return t


def _user_frames() -> str:
    """The innermost frames outside autodiffx: where the user's code created a node."""
    pkg = __file__.rsplit("/", 1)[0]
    frames = [f for f in traceback.extract_stack()[:-2] if not f.filename.startswith(pkg)]
    return "".join(traceback.format_list(frames[-3:]))


class Node:
    """A recorded application of a primitive (``grad_fn``); edges point to its inputs' producers.

    Made by the dispatcher; ``edges[i]`` is ``(producer, output index, shape, dtype)`` of
    argument i (the producer is a Node, or the leaf Tensor itself), or None.
    """

    __slots__ = (
        "__weakref__",
        "args",
        "datas",
        "edges",
        "hooks",
        "multi",
        "nout",
        "out",
        "out_vc",
        "outs",
        "params",
        "prim",
        "stamp",
        "where",
    )

    @property
    def name(self) -> str:
        """The primitive's name, e.g. ``"mul"``."""
        return self.prim.name

    @property
    def next_functions(self) -> tuple[Any, ...]:
        """The producers of this node's inputs (a Node, a leaf Tensor or None per input)."""
        return tuple(None if e is None else e[0] for e in self.edges)

    def __repr__(self) -> str:
        return f"<{self.prim.name} node>"


from ._broadcast import fit  # noqa: E402
from ._tensor import STAMP, Tensor, _new, version_counter  # noqa: E402
from ._views import link_outputs, link_view  # noqa: E402
