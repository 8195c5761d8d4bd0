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

from ._mode import STATE

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
        self.name = self.__name__ = name
        self.kernel = kernel
        self.vjp: Callable[..., Any] | None = None
        self.jvp: Callable[..., Any] | None = None
        self.nondiff: frozenset[int] = frozenset()
        self.nout = 1
        self.save_args = True
        self.save_out = False
        self.view = False
        self.kind = "general"

    def __call__(self, *args: Any, **params: Any) -> Any:
        return apply(self, args, params)

    def __repr__(self) -> str:
        return f"<primitive {self.name}>"

    def call(self, *args: Any, **params: Any) -> Any:
        """Apply to Tensors (recorded) or, when no argument is a Tensor, run the raw kernel."""
        for a in args:
            if isinstance(a, Tensor):
                return apply(self, args, params)
        return self.kernel(*args, **params)


def _binder(fn: Callable[..., Any], argnames: Sequence[str]) -> tuple[Callable[..., Any], bool, bool]:
    """Bind a derivative written with argument names (and ``out``) to ``(args, out, params)``."""
    names = [
        p.name
        for p in inspect.signature(fn).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
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
    if pos == [-1]:
        return (lambda args, out, params: fn(out, **params)), False, True
    if pos == [0]:
        return (lambda args, out, params: fn(args[0], **params)), True, False
    if pos == [0, -1]:
        return (lambda args, out, params: fn(args[0], out, **params)), True, True
    if pos == [0, 1]:
        return (lambda args, out, params: fn(args[0], args[1], **params)), True, False
    if pos == [0, 1, -1]:
        return (lambda args, out, params: fn(args[0], args[1], out, **params)), True, True
    return (
        lambda args, out, params: fn(*[out if p < 0 else args[p] for p in pos], **params),
        uses_args,
        uses_out,
    )


def defprim(
    name: str,
    kernel: Callable[..., Any],
    *,
    derivs: Sequence[Callable[..., Any] | None] | None = None,
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
    view: bool = False,
    ufunc: np.ufunc | None = None,
    overrides: Sequence[Callable[..., Any]] = (),
    doc: str = "",
) -> Primitive:
    """Register a primitive and return it; the returned object is the public function."""
    if name in REGISTRY:
        raise ValueError(f"primitive {name!r} is registered twice")
    p = Primitive(name, kernel)
    p.__doc__ = doc
    p.nondiff = frozenset(nondiff)
    p.nout = nout
    p.view = view
    if derivs is not None:
        _def_elementwise(p, derivs, argnames)
    elif linear is not None:
        _def_linear(p, linear)
    elif bilinear is not None:
        _def_bilinear(p, bilinear)
    elif zero_deriv:
        p.kind = "zero"
        p.save_args = False
        p.vjp = lambda needs, g, out, args, params: (None,) * len(args)
        p.jvp = lambda tans, out, args, params: None
    elif vjp is not None:
        p.kind = "general"
        p.save_args, p.save_out = save_args, save_out
        p.vjp = lambda needs, g, out, args, params: vjp(needs, g, out, *args, **params)
        if jvp is not None:
            p.jvp = lambda tans, out, args, params: jvp(tans, out, *args, **params)
    if isinstance(ufunc, np.ufunc):
        UFUNC_MAP[ufunc] = p
    elif kernel is not None and isinstance(kernel, np.ufunc) and ufunc is None:
        UFUNC_MAP[kernel] = p
    if nout > 1:
        p.save_out = True  # the engine needs the shapes of unused outputs for their zero cotangents
    for f in overrides:
        FUNCTION_MAP[f] = p
    REGISTRY[name] = p
    return p


def _def_elementwise(p: Primitive, derivs: Sequence[Any], argnames: Sequence[str]) -> None:
    p.kind = "elementwise"
    bound = []
    save_args = save_out = False
    for d in derivs:
        if d is None:
            bound.append(None)
            continue
        b, ua, uo = _binder(d, argnames)
        bound.append(b)
        save_args |= ua
        save_out |= uo
    p.save_args, p.save_out = save_args, save_out
    n = len(bound)

    def vjp(needs: tuple[bool, ...], g: Any, out: Any, args: Any, params: Any) -> list[Any]:
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

    else:
        ts = tuple(transpose)

        def vjp(needs: tuple[bool, ...], g: Any, out: Any, args: Any, params: Any) -> Any:
            return [
                t(g, *args, **params) if needs[i] and t is not None else None
                for i, t in enumerate(ts)
            ]

    nd = p.nondiff

    def jvp(tans: tuple[Any, ...], out: Any, args: Any, params: Any) -> Any:
        filled = [
            a if i in nd else (t if t is not None else _zeros_like(a))
            for i, (a, t) in enumerate(zip(args, tans))
        ]
        return apply(p, filled, params)

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
        acc = None if ta_ is None else apply(p, (ta_, b), params)
        if tb_ is not None:
            term = apply(p, (a, tb_), params)
            acc = term if acc is None else acc + term
        return acc

    p.vjp, p.jvp = vjp, jvp


def _zeros_like(a: Any) -> Any:
    if isinstance(a, Tensor):
        return np.zeros(a.shape, a.dtype)
    return np.zeros_like(a) if isinstance(a, np.ndarray) else 0.0


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
    datas = []
    rg = False
    for a in args:
        if isinstance(a, Tensor):
            datas.append(a.data)
            if a._rg:
                rg = True
        else:
            datas.append(a)
    try:
        out = p.kernel(*datas, **params)
    except (ValueError, TypeError, IndexError, np.linalg.LinAlgError) as e:
        raise op_error(p.name, args, params, e) from e
    st = STATE
    record = rg and st.grad_enabled and p.vjp is not None
    if p.nout == 1:
        if type(out) is not np.ndarray:
            out = np.asarray(out)
        res = _new(Tensor)
        res.data = out
        res.grad = res._tan = res._hooks = None
        res._idx = 0
        if p.view and out.base is not None and isinstance(args[0], Tensor):
            res._vc = args[0]._vc
        else:
            res._vc = [0]
        if record and out.dtype.kind in "fc":
            res._node = Node(p, args, datas, params, out, res)
            res._rg = True
        else:
            res._node = None
            res._rg = False
    else:
        res = []
        outs = []
        for o in out:
            o = np.asarray(o)
            outs.append(o)
            t = _new(Tensor)
            t.data = o
            t.grad = t._tan = t._hooks = t._node = None
            t._vc = [0]
            t._rg = False
            t._idx = len(res)
            res.append(t)
        res = tuple(res)
        if record and any(o.dtype.kind in "fc" for o in outs):
            node = Node(p, args, datas, params, tuple(outs), res)
            for i, t in enumerate(res):
                if outs[i].dtype.kind in "fc":
                    t._node, t._rg = node, True
    if st.levels:
        _push_tangents(p, args, params, res, st)
    if st.anomaly:
        _check_finite(p, res, "forward")
    return res


def _push_tangents(p: Primitive, args: Sequence[Any], params: dict[str, Any], res: Any, st: Any) -> None:
    """Forward mode: compute the output tangent at every open dual level that has one."""
    for level in st.levels:
        if level in st.masked:
            continue
        tans = []
        any_t = False
        for a in args:
            t = None
            if isinstance(a, Tensor) and a._tan is not None:
                t = a._tan.get(level)
                any_t = any_t or t is not None
            tans.append(t)
        if not any_t:
            continue
        if p.jvp is None:
            if p.vjp is None and p.kind == "general":
                continue  # non-differentiable op (comparisons, argmax): no tangent
            raise TypeError(f"'{p.name}' has no forward-mode (JVP) rule")
        st.masked.add(level)
        try:
            tout = p.jvp(tuple(tans), res, args, params)
        finally:
            st.masked.discard(level)
        outs = (res,) if p.nout == 1 else res
        touts = (tout,) if p.nout == 1 else (tout if tout is not None else (None,) * len(res))
        for o, t in zip(outs, touts):
            if t is None or o.data.dtype.kind not in "fc":
                continue
            if not isinstance(t, Tensor):
                t = _wrap_const(np.asarray(t))
            t = fit(t, o.shape, o.data.dtype)
            if o._tan is None:
                o._tan = {}
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
    t.grad = t._tan = t._hooks = t._node = None
    t._rg = False
    t._idx = 0
    t._vc = [0]
    return t


class Node:
    """A recorded application of a primitive (``grad_fn``); edges point to its inputs' producers."""

    __slots__ = (
        "args",
        "datas",
        "edges",
        "hooks",
        "nout",
        "out",
        "outs",
        "params",
        "prim",
        "vers",
        "where",
    )

    def __init__(
        self,
        p: Primitive,
        args: Sequence[Any],
        datas: list[Any],
        params: dict[str, Any],
        out: Any,
        res: Any,
    ) -> None:
        self.prim = p
        self.params = params
        self.nout = 1 if p.nout == 1 else len(out)
        edges = []
        for a in args:
            if isinstance(a, Tensor) and a._rg:
                n = a._node
                edges.append((a if n is None else n, a._idx, a.data.shape, a.data.dtype))
            else:
                edges.append(None)
        self.edges = edges
        if p.save_args:
            self.args = args
            self.datas = datas
            self.vers = [a._vc[0] if isinstance(a, Tensor) else None for a in args]
        else:
            nd = p.nondiff
            self.args = self.datas = [
                Meta(d.shape, d.dtype) if i not in nd and isinstance(d, np.ndarray) else d
                for i, d in enumerate(datas)
            ]
            self.vers = None
        self.out = out if p.save_out else None
        st = STATE
        # Forward-over-reverse needs the outputs' tangents in the recorded backward pass.
        self.outs = res if st.levels else None
        self.hooks: dict[int, list[Callable[..., Any]]] | None = None
        self.where = "".join(traceback.format_stack(limit=8)[:-2]) if st.anomaly else None

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
from ._tensor import Tensor, _new  # noqa: E402
