"""``ad.compile``: record a function's primitive applications once, replay them as NumPy code."""

from __future__ import annotations

import builtins
import functools
import inspect
import keyword
import linecache
import re
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np

from . import creation as _creation
from ._graph import _accumulate
from ._mode import (
    _EXTOBJ,
    _QUIET,
    ANOMALY,
    COMPILE,
    DUAL,
    STATE,
    TAPE,
    VMAP,
    quiet_enter,
    quiet_exit,
    quiet_state,
)
from ._registry import Primitive
from ._tensor import Tensor, wrap
from ._transforms import tree_flatten, tree_unflatten

__all__ = ["CompileError", "Compiled", "compile"]

#: Modes in which a compiled function runs ``f`` eagerly: an evaluation trace or another
#: recording, dual levels, ``detect_anomaly()``, ``vmap`` (whose batched values it sees).
_EAGER = TAPE | DUAL | ANOMALY | VMAP
#: Input signatures kept per compiled function (least recently used dropped first).
CACHE_SIZE = 8
#: Guarded variants kept per signature (a changed branch records another one).
VARIANTS = 4


class CompileError(RuntimeError):
    """What ``ad.compile`` cannot replay exactly, raised while recording, with what to do.

    Examples
    --------
    >>> import autodiffx as ad
    >>> def step(x):
    ...     y = x * 2
    ...     y += 1
    ...     return y
    >>> ad.compile(step)(ad.tensor([1.0]))
    Traceback (most recent call last):
    ...
    autodiffx.compiler.CompileError: ad.compile(step): an in-place add ...
    """


# ============================================================================================
# recording
# ============================================================================================
class _Var:
    """A value of the program: an input (``step`` None) or an output of a recorded step."""

    __slots__ = ("arr", "k", "name", "step")

    def __init__(self, arr: np.ndarray, step: _Step | None, k: int = 0, name: str = "") -> None:
        self.arr = arr  # (kept: ids of the recorded arrays stay unique while recording)
        self.step = step
        self.k = k
        self.name = name


class _Const:
    """A value bound by name in the generated function's namespace (a Tensor: read ``.data``
    at every replay, as eager code reads a closed-over tensor's current values)."""

    __slots__ = ("name", "tensor", "value")

    def __init__(self, name: str, value: Any) -> None:
        self.name = name
        self.value = value
        self.tensor = isinstance(value, Tensor)


class _Obj:
    """An object an effect is called with, bound by name as it is (a Tensor, a list)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


class _Seq:
    """A list or tuple operand (``concatenate``'s), its items templated."""

    __slots__ = ("items", "kind")

    def __init__(self, kind: type, items: list[Any]) -> None:
        self.kind = kind
        self.items = items


class _Step:
    """One recorded primitive application, or a guard (``prim`` None) on a value read."""

    __slots__ = (
        "args",
        "effect",
        "err",
        "fused",
        "guard",
        "late",
        "outs",
        "params",
        "prim",
        "repeatable",
        "shape_guard",
        "where",
    )

    def __init__(self, prim: Primitive | None, args: Any, params: dict[str, Any], where: str):
        self.prim = prim
        self.args = args
        self.params = params
        self.outs: list[_Var] = []
        self.where = where
        self.err: Any = None  # NumPy's error state when it differed from the call's
        self.guard: Any = None  # (operand, bytes, what) of a guard step
        self.shape_guard = False  # a value-dependent output shape is checked at replay
        self.repeatable = True  # an effect that may run again when a replay misses after it
        self.late = False  # a check after an effect that is not repeatable: a miss raises
        self.effect: Any = None  # (callable, what) of a side effect replayed as a call
        self.fused: Any = None  # (numexpr.NumExpr, expression tree) of a fused region

    def operands(self, kinds: tuple[type, ...] = (_Var,)) -> list[Any]:
        """The variables among the step's arguments, parameters and guarded value (with
        ``kinds=(_Var, _Const)``, the constants too), in order."""
        found: list[Any] = []
        _collect([self.args, list(self.params.values())], found, kinds)
        if self.guard is not None:
            _collect([self.guard[0]], found, kinds)
        return found


def _collect(a: Any, found: list[Any], kinds: tuple[type, ...]) -> None:
    """Append to ``found`` the operands of a type in ``kinds`` in ``a``, through sequences."""
    if type(a) in kinds:
        found.append(a)
    elif type(a) is _Seq:
        _collect(a.items, found, kinds)
    elif type(a) in (list, tuple):
        for b in a:
            _collect(b, found, kinds)


_PKG = __file__.rsplit("/", 1)[0]
_LITERALS = (bool, int, str, type(None))


def _user_line() -> str:
    """``file:line (function)`` of the innermost frame outside autodiffx: the user's line."""
    f = sys._getframe(2)
    while f is not None and f.f_code.co_filename.startswith(_PKG):
        f = f.f_back
    if f is None:
        return "<autodiffx>"
    return f"{f.f_code.co_filename}:{f.f_lineno} ({f.f_code.co_name})"


class _Recorder:
    """``STATE.tape`` and ``STATE.compiler`` while ``f`` runs: every primitive application
    becomes a step, every read of a value a guard, every write outside refused."""

    def __init__(self, who: str) -> None:
        self.who = who
        self.steps: list[_Step] = []
        self.vars: dict[int, _Var] = {}  # id of an ndarray -> the variable it holds
        self.consts: dict[int, _Const] = {}
        self.keep: list[Any] = []
        self.ext = _extobj()
        self.error: BaseException | None = None
        self.effects = 0  # side effects replayed (backward() into .grad, optimizer steps)

    # ----- the hooks ------------------------------------------------------------------------
    def __call__(self, p: Primitive, args: Any, params: dict[str, Any], res: Any) -> None:
        if self.error is None:
            try:
                self.take(p, args, params, res)
            except BaseException as e:  # (raised after f returns: the dispatcher goes on)
                self.error = e

    def read(self, t: Tensor, what: str) -> None:
        """A value read out of ``t``: a guard (the replay checks the same bytes)."""
        step = _Step(None, (), {}, _user_line())
        d = t.data  # (this module's reads are the engine's: no guard of their own)
        step.guard = (self.operand(t), d.tobytes(), what, d.shape)
        self.steps.append(step)

    def check(self, t: Tensor, pred: Callable[[np.ndarray], bool], what: str) -> Any:
        """``t``'s array if ``pred`` holds for it, else None: a guard on the outcome of
        ``pred`` only (not on the values), checked at every replay."""
        step = _Step(None, (), {}, _user_line())
        d = _SLOT.__get__(t, Tensor)
        ok = bool(pred(d))
        step.guard = (self.operand(t), (pred, ok), what, d.shape)
        self.steps.append(step)
        return d if ok else None

    def write(self, t: Any, what: str) -> None:
        """A side effect: refused (the replay would not repeat it)."""
        raise CompileError(
            f"ad.compile({self.who}): {what} at {_user_line()} is a side effect that the "
            "compiled program would not repeat. Compute out of place (y = x + 1, not x += 1), "
            "take gradients with ad.grad / ad.value_and_grad inside the function instead of "
            "backward() and .grad, draw random numbers outside and pass them as arguments, "
            "and update parameters outside the compiled function (or call it uncompiled)"
        )

    def accumulate(self, t: Tensor, g: Any) -> None:
        """``backward()`` adds ``g`` into ``t.grad``: done now, and replayed as a call that
        does what eager backward does (``t.grad`` set, or added to), on the replay's array."""
        self.effect(_accumulate_grad, [t, g.data], "backward() into .grad")

    def call(self, fn: Callable[..., Any], args: list[Any], what: str, into: Any = None) -> Any:
        """``fn(*args)`` on the arrays of ``args`` (Tensors unwrapped), a pure computation
        recorded as one step (an op's own formula on arrays): its result, a Tensor. Two calls
        of one ``fn`` on the same values are one step (a VJP's call shares its forward's).
        ``into``: the Tensor the engine already holds with this result (a primitive's,
        ``Primitive.record``), which becomes the step's output."""
        arrays = [_SLOT.__get__(a, Tensor) if isinstance(a, Tensor) else a for a in args]
        out = self.effect(fn, arrays, what, pure=True, into=into)
        return wrap(out) if into is None else into

    def draw(self, fn: Callable[..., Any], args: list[Any], what: str) -> np.ndarray:
        """``fn(*args)``, an array drawn from a random generator (Dropout's mask): drawn now,
        and replayed as the same call, in order, so that a replay draws from the same
        ``Generator`` (advancing it) exactly as eager code would; its result is a value of
        the program (never folded into a constant, never dropped even if unused)."""
        out = self.effect(fn, args, what, returns=True)
        if type(out) is not np.ndarray:
            raise TypeError(f"ad.compile({self.who}): {what} drew a {type(out).__name__}")
        return out  # type: ignore[no-any-return]

    def effect(
        self,
        fn: Callable[..., Any],
        args: list[Any],
        what: str,
        pure: bool = False,
        returns: bool = False,
        into: Any = None,
        repeatable: bool = False,
    ) -> Any:
        """``fn(*args)``, a side effect on Python objects and arrays (``optimizer.step()``,
        ``zero_grad()``): run now without recording, and replayed as the same call, in order,
        at the same place of the program. ``args`` that are recorded values are passed the
        replay's arrays; anything else is bound as it is (a Tensor as the object). ``pure``:
        a computation (dropped when unused); ``pure`` or ``returns``: its result (an array)
        is a value of the program. ``repeatable``: running it twice is running it once
        (``zero_grad``), so a replay that misses after it may record again."""
        step = _Step(None, [], {}, _user_line())
        for a in args:
            v = self.vars.get(id(a)) if type(a) is np.ndarray else None
            if v is None:  # (a literal is written as it is; anything else bound by name)
                v = a if type(a) in _LITERALS else _Obj(a)
            step.args.append(v)
        step.effect = (fn, what, pure)
        step.repeatable = pure or repeatable
        if _extobj() is not self.ext:
            step.err = np.geterr()
        out = _unrecorded(fn, args)
        if into is not None:
            out = _adopted(out, into, what)
        if pure or returns:
            var = _Var(out, step)
            self.vars[id(out)] = var
            step.outs.append(var)
        else:
            self.effects += 1
        self.steps.append(step)
        return out

    # ----- operands ---------------------------------------------------------------------------
    def operand(self, a: Any) -> Any:
        """A template of argument ``a``: its variable, a literal, or a bound constant."""
        if isinstance(a, Tensor):
            v = self.vars.get(id(a.data))
            return v if v is not None else self.const(a, "t")
        if type(a) is np.ndarray:
            v = self.vars.get(id(a))
            return v if v is not None else self.const(a, "c")
        if type(a) in (list, tuple):
            return _Seq(type(a), [self.operand(b) for b in a])
        if type(a) in _LITERALS or (type(a) is float and np.isfinite(a)):
            return a
        if type(a) is slice and all(type(b) in _LITERALS for b in (a.start, a.stop, a.step)):
            return a
        if a is Ellipsis:
            return a
        return self.const(a, "c")

    def const(self, a: Any, prefix: str) -> _Const:
        c = self.consts.get(id(a))
        if c is None:
            name = f"dt_{a.name}" if isinstance(a, np.dtype) else f"{prefix}_{len(self.consts)}"
            c = self.consts[id(a)] = _Const(name, a)
            self.keep.append(a)
        return c

    def take(self, p: Primitive, args: Any, params: dict[str, Any], res: Any) -> None:
        outs = res if isinstance(res, tuple) else (res,)
        if not p.raw_rules:  # an ad.Function: its forward's ops were recorded
            if all(id(o.data) in self.vars for o in outs):
                return
            raise CompileError(
                f"ad.compile({self.who}): the custom Function '{p.name}' returned values its "
                "forward did not compute with autodiffx ops; compute them with ops, or call "
                "the function uncompiled"
            )
        for t in outs:
            if type(t.data) is not np.ndarray:
                raise _foreign(self.who, t.data)
        if p.record is not None:  # (the kernel's parts, as calls its VJP's calls share)
            p.record(self, args, params, res)
            return
        step = _Step(p, [self.operand(a) for a in args], {}, _user_line())
        step.params = {k: self.operand(v) for k, v in params.items()}
        ext = _extobj()
        if ext is not self.ext:
            step.err = np.geterr()
        for k, t in enumerate(outs):
            var = _Var(t.data, step, k)
            self.vars[id(t.data)] = var
            step.outs.append(var)
        # A value-dependent shape (a boolean mask, an index computed from the inputs).
        step.shape_guard = any(
            v.arr.dtype.kind not in "fc" for v in step.operands()
        ) and p.kind not in ("elementwise", "zero")
        self.steps.append(step)

    def input(self, arr: np.ndarray, name: str) -> _Var:
        var = _Var(arr, None, 0, name)
        self.vars[id(arr)] = var
        return var


def _adopted(out: Any, into: Tensor, what: str) -> np.ndarray:
    """``into``'s array, which a recorded call computed again as ``out``: checked equal."""
    d = _SLOT.__get__(into, Tensor)
    same = np.shape(out) == d.shape and np.asarray(out).tobytes() == d.tobytes()
    if not same:  # pragma: no cover - a kernel and its parts that disagree
        raise CompileError(f"ad.compile: {what} recorded as calls differs from its kernel")
    return d  # type: ignore[no-any-return]


def _extobj() -> Any:
    return None if _EXTOBJ is None else _EXTOBJ.get()


# ----- every read of a Tensor's values while recording is a guard --------------------------
_SLOT = Tensor.__dict__["data"]  # the slot's descriptor
_WATCH = [0]
_WATCH_LOCK = threading.Lock()


#: The engine's modules: their reads of ``.data`` unwrap values to run kernels and rules
#: (whose applications the tape sees), never to decide anything from them.
_ENGINE = frozenset(
    "autodiffx." + m
    for m in [
        "_broadcast",
        "_convert",
        "_graph",
        "_hvp",
        "_inplace",
        "_mode",
        "_node",
        "_registry",
        "_rules",
        "_tensor",
        "_transforms",
        "_views",
        "autograd",
        "compiler",
        "forward",
        "func",
    ]
)


#: Functions that read ``.data`` for its shape, dtype and layout only (``ad.zeros_like``).
_SHAPE_ONLY = frozenset([_creation._like.__code__])


def _outside(depth: int = 2) -> bool:
    """Whether the code reading ``.data`` is not the engine's: yours, or an op written in
    Python that may decide something from the values (``real_if_close``)."""
    f = sys._getframe(depth)
    return f.f_globals.get("__name__") not in _ENGINE and f.f_code not in _SHAPE_ONLY


def _data_get(t: Tensor) -> np.ndarray:
    if STATE.mode & COMPILE and _outside():
        STATE.compiler.read(t, "t.data")
    return _SLOT.__get__(t, Tensor)  # type: ignore[no-any-return]


def _data_set(t: Tensor, value: Any) -> None:
    if STATE.mode & COMPILE and _outside():
        STATE.compiler.write(t, "a write of t.data")
    _SLOT.__set__(t, value)


# NOTE: while a function is recorded, Tensor.data is a property: a read from code outside
# autodiffx becomes a guard (the engine's own reads stay plain). It is installed for the
# recording only (other threads pay one Python call per read meanwhile); replays never see it.
_DATA_PROPERTY = property(_data_get, _data_set, doc=_SLOT.__doc__)


def _watch_data(on: bool) -> None:
    with _WATCH_LOCK:
        _WATCH[0] += 1 if on else -1
        type.__setattr__(Tensor, "data", _DATA_PROPERTY if _WATCH[0] else _SLOT)


# ============================================================================================
# code generation
# ============================================================================================
class _Miss:
    """The generated function's answer when a guard fails (another variant is recorded)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISS"


MISS = _Miss()
_QUIET_ERR = {"divide": "ignore", "over": "ignore", "invalid": "ignore"}


class _Program:
    """The generated function of one recording, its source and where each line came from."""

    __slots__ = ("filename", "fn", "lines", "outputs", "source")

    def __init__(self, source: str, fn: Any, filename: str, lines: dict[int, _Step]) -> None:
        self.source = source
        self.fn = fn
        self.filename = filename
        self.lines = lines
        self.outputs: list[Any] = []  # per output leaf: ("v", j), ("in", i) or ("c", value)


def _live(steps: list[_Step], outs: list[_Var]) -> list[_Step]:
    """Dead-code elimination: the steps an output or a guard needs, in recorded order."""
    needed = {id(v) for v in outs}
    kept: list[_Step] = []
    for s in reversed(steps):
        effect = s.effect is not None and not s.effect[2]
        if s.guard is not None or effect or any(id(v) in needed for v in s.outs):
            kept.append(s)
            needed.update(id(v) for v in s.operands())
    kept.reverse()
    return kept


def _kernel_name(p: Primitive, ns: dict[str, Any]) -> str:
    """``np.<name>`` when the kernel is NumPy's function of that name, else the registry
    name bound in the namespace."""
    k = p.kernel
    nm = getattr(k, "__name__", None)
    if isinstance(nm, str) and getattr(np, nm, None) is k:
        return f"np.{nm}"
    base = "k_" + re.sub(r"\W", "_", p.name)
    name, i = base, 1
    while ns.get(name, k) is not k:
        i += 1
        name = f"{base}_{i}"
    ns[name] = k
    return name


def _render(a: Any, ns: dict[str, Any]) -> str:
    if type(a) is _Var:
        return a.name
    if type(a) is _Const:
        ns[a.name] = a.value
        return f"{a.name}.data" if a.tensor else a.name
    if type(a) is _Seq:
        items = ", ".join(_render(b, ns) for b in a.items)
        return f"[{items}]" if a.kind is list else f"({items}{',' if len(a.items) == 1 else ''})"
    return repr(a)


def _step_lines(s: _Step, ns: dict[str, Any], out: str | None = None) -> list[str]:
    """The generated line(s) of one step: the call, a shape guard, a guard (``out``: the
    dying operand the call writes into, see :func:`_reuse`)."""
    if s.guard is not None:
        op, data, what, _ = s.guard
        g = f"g_{len([k for k in ns if k.startswith('g_')])}"
        ns[g] = data
        if type(data) is tuple:  # (a predicate and its outcome)
            ns[g] = data[0]
            miss = _late_name(s, what, ns) if s.late else "return MISS"
            return [f"if g_{g[2:]}({_render(op, ns)}) is not {data[1]}: {miss}  # {what}"]
        return [f"if {_render(op, ns)}.tobytes() != {g}: return MISS  # {what}"]
    if s.effect is not None:
        fx = f"fx_{len([k for k in ns if k.startswith('fx_')])}"
        ns[fx] = s.effect[0]
        ops = []
        for a in s.args:
            if type(a) is _Obj:
                ops.append(f"o_{len([k for k in ns if k.startswith('o_')])}")
                ns[ops[-1]] = a.value
            else:
                ops.append(_render(a, ns))  # (a value, or a folded constant)
        call = f"{fx}({', '.join(ops)})"
        if s.outs and s.outs[0].arr.ndim == 0:  # (a NumPy scalar, as the dispatcher wraps it)
            call = f"np.asarray({call})"
        call += f"  # {s.effect[1]}"
        return [f"{s.outs[0].name} = {call}" if s.outs else call]
    if s.fused is not None:
        return _fused_lines(s, ns)
    assert s.prim is not None
    args = [_render(a, ns) for a in s.args]
    args += [f"{k}={_render(v, ns)}" for k, v in s.params.items()]
    if out is not None:
        args.append(f"out={out}")
    call = f"{_kernel_name(s.prim, ns)}({', '.join(args)})"
    names = ", ".join(v.name for v in s.outs)
    if len(s.outs) == 1 and s.prim.nout == 1:
        line = f"{names} = np.asarray({call})" if s.outs[0].arr.ndim == 0 else f"{names} = {call}"
    else:
        line = f"{names}{',' if len(s.outs) == 1 else ''} = _arrays({call})"
    lines = [line]
    if s.shape_guard:
        checks = " or ".join(f"{v.name}.shape != {v.arr.shape!r}" for v in s.outs)
        what = "a shape that depends on values"
        miss = _late_name(s, what, ns) if s.late else "return MISS"
        lines.append(f"if {checks}: {miss}  # {what}")
    return lines


def _fused_lines(s: _Step, ns: dict[str, Any]) -> list[str]:
    from . import _fuse

    return _fuse.lines(s, ns, _render)


def _arrays(out: Any) -> list[np.ndarray]:
    """A several-output kernel's results as ndarrays (as the dispatcher wraps them)."""
    return [o if type(o) is np.ndarray else np.asarray(o) for o in out]


def _names(steps: list[_Step], inputs: list[_Var]) -> None:
    """Number the kept steps' outputs ``v_1 … v_l`` (inputs keep their names)."""
    i = 0
    for s in steps:
        for v in s.outs:
            i += 1
            v.name = f"v_{i}"


def _dels(steps: list[_Step], outs: list[_Var]) -> dict[int, list[str]]:
    """Per step position, the intermediates whose last use it is (``del`` after it)."""
    last: dict[int, tuple[int, _Var]] = {}
    keep = {id(v) for v in outs}
    for i, s in enumerate(steps):
        for v in s.outs:
            last[id(v)] = (i, v)
        for v in s.operands():
            last[id(v)] = (i, v)
    dels: dict[int, list[str]] = {}
    for i, v in last.values():
        if v.step is not None and id(v) not in keep:
            dels.setdefault(i, []).append(v.name)
    return dels


#: Ufuncs whose every result is one correctly rounded IEEE operation: the same bits whatever
#: loop NumPy runs (contiguous, strided, in place), so writing into an operand is exact.
_EXACT = frozenset(
    [np.add, np.subtract, np.multiply, np.divide, np.negative, np.positive, np.square, np.sqrt]
)
#: Buffers of at least this many bytes are reused. Measured, ``np.multiply(t, b, out=t)``
#: against ``np.multiply(t, b)`` for a dying float64 ``t``: 1.07× at 128 bytes (the keyword's
#: parsing), 1.02× at 1 KiB, 0.92× at 8 KiB, 0.64× at 32 KiB, 0.73× at 256 KiB.
_REUSE_BYTES = 8 * 1024


#: Library kernels whose result is always a new array (``power``'s fast paths: ``a * a``,
#: ``a.copy()``, ``np.sqrt(a)``, else ``np.power``), like a ufunc's.
_NEW_ARRAY = frozenset(["power"])


def _plain_ufunc(s: _Step) -> bool:
    """A step whose one result is a new array and that keeps no view of its operands: a
    NumPy ufunc (or a kernel of ``_NEW_ARRAY``) without keywords."""
    p = s.prim
    return p is not None and (p.ufunc or p.name in _NEW_ARRAY) and p.nout == 1 and not s.params


def _reuse(steps: list[_Step], dels: dict[int, list[str]]) -> dict[int, str]:
    """Per step position, the ``out=`` argument writing into an operand's buffer, as
    hand-written NumPy does with ``a *= b``: the step is an exact real ufunc, and the
    operand dies at it, has the output's shape and dtype (large), and is a buffer only the
    program holds: made by a ufunc, and read by ufuncs only (no view of it, no effect).
    With two or more axes the buffer is used only if its strides are C's at replay: eager's
    fresh result then has them too (another layout could change the order in which a later
    reduction or matmul adds)."""
    users: dict[int, int] = {}
    for s in steps:
        for v in s.operands():
            users[id(v)] = users.get(id(v), 0) + (0 if _plain_ufunc(s) else 1)
    owned: set[int] = set()  # made by a ufunc step, read by ufunc steps only
    reuse: dict[int, str] = {}
    for i, s in enumerate(steps):
        if not _plain_ufunc(s):
            continue
        o, kernel = s.outs[0].arr, s.prim.kernel if s.prim is not None else None
        if kernel in _EXACT and o.dtype.kind == "f" and o.nbytes >= _REUSE_BYTES:
            for a in s.args:
                dies = type(a) is _Var and id(a) in owned and a.name in dels.get(i, ())
                if dies and a.arr.shape == o.shape and a.arr.dtype == o.dtype:
                    c = np.empty(o.shape, o.dtype).strides  # (1-d: the only layout)
                    check = f" if {a.name}.strides == {c!r} else None" if o.ndim > 1 else ""
                    reuse[i] = a.name + check
                    break
        if not users.get(id(s.outs[0]), 0) and s.outs[0].arr.base is None:
            owned.add(id(s.outs[0]))
    return reuse


def _guards_first(steps: list[_Step], who: str) -> list[_Step]:
    """Each guard moved up to just after what it reads is made: a replay that misses records
    again, and must not have run a side effect that recording repeats (``backward()`` into
    ``.grad``, an optimizer step, a random draw). A guard that would still follow one is
    refused; a check expected to hold (a predicate's outcome, a shape) that follows one
    raises at replay if it fails."""
    out: list[_Step] = []
    made: dict[int, int] = {}  # id of a variable -> how many steps of `out` precede it
    after = False  # (whether an effect that is not repeatable has been appended)
    for s in steps:
        if s.guard is None:
            s.late = s.shape_guard and after
            after = after or not s.repeatable
            out.append(s)
            made.update((id(v), len(out)) for v in s.outs)
            continue
        ops = s.operands((_Var, _Const))
        at = max([made.get(id(v), 0) for v in ops], default=0)
        for i in range(len(out) - 1, at - 1, -1):  # (not above an effect that may write it)
            e = out[i]
            if e.effect is not None and not e.effect[2] and _reaches(e, ops):
                at = i + 1
                break
        effect = next((e for e in out[:at] if not e.repeatable), None)
        s.late = effect is not None and type(s.guard[1]) is tuple  # (a check expected to hold)
        if effect is not None and not s.late:
            raise CompileError(
                f"ad.compile({who}): the value read at {s.where} ({s.guard[2]}) is checked "
                f"at every replay, after {effect.effect[1]} at {effect.where}, which a replay "
                "whose check fails would run twice. Read the value before that side effect, "
                "or compute the branch with ad.where, or call the function uncompiled"
            )
        out.insert(at, s)
        made = {k: i + (i > at) for k, i in made.items()}
    return out


def _reaches(e: _Step, ops: list[Any]) -> bool:
    """Whether effect ``e`` may write into one of ``ops``: a variable it is given, or a
    constant (a Tensor any object it holds may reach)."""
    given = {id(v) for v in e.operands()}
    return any(type(v) is _Const or id(v) in given for v in ops)


def _late_name(s: _Step, what: str, ns: dict[str, Any]) -> str:
    """The call that raises when check ``s`` fails after a side effect (the user's line and
    the check's text are bound by name, never written into the source)."""
    name = f"_late_{len([k for k in ns if k.startswith('_late_')])}"
    ns[name] = functools.partial(_late_miss, what, s.where)
    return f"{name}()"


def _late_miss(what: str, where: str) -> None:
    raise RuntimeError(
        f"ad.compile: a check failed at replay ({what}, at {where}) after a side effect that "
        "recording again would repeat had run (backward() into .grad, an optimizer step, a "
        "random draw). Call the function uncompiled for such inputs"
    )


def _adopt_grads(steps: list[_Step], dels: dict[int, list[str]]) -> None:
    """A gradient whose last use is its ``backward()`` effect is passed to the engine's
    ``_accumulate`` itself, which (as in eager) makes it ``.grad`` without a copy when
    nothing else holds it (its reference count: the program's local only)."""
    for i, s in enumerate(steps):
        if s.effect is None or s.effect[0] is not _accumulate_grad:
            continue
        g = s.args[1]
        if type(g) is _Var and g.name in dels.get(i, ()):
            s.effect = (_accumulate, *s.effect[1:])
            s.args = [*s.args, _Obj(False)]


def _quiet(err: Any, base: dict[str, str]) -> bool:
    """Whether ``err`` is the derivative rules' error state (divide, overflow and invalid
    ignored, underflow as in ``base``)."""
    return (
        err is not None
        and {k: v for k, v in err.items() if k != "under"} == _QUIET_ERR
        and err["under"] == base["under"]
    )


#: Steps on arrays below this size may be moved for fewer switches of the error state.
_SMALL_BYTES = 8 * 1024


def _schedule(steps: list[_Step], base: dict[str, str]) -> list[_Step]:
    """Fewer switches between the primal and the derivative rules' error state (each costs
    about as much as a small ufunc call): a derivative step on small arrays waits until a
    step needs it, an effect comes, or the end, so primal steps after it run first. Values
    are the same (the order of independent steps), each step keeps its error state; large
    arrays keep the recorded order (their last uses, hence the peak memory, stay)."""
    out: list[_Step] = []
    waiting: list[_Step] = []
    made: set[int] = set()
    for s in steps:
        small = all(v.arr.nbytes < _SMALL_BYTES for v in (*s.outs, *s.operands()))
        if s.effect is None and small and _quiet(s.err, base):
            waiting.append(s)
            made.update(id(v) for v in s.outs)
            continue
        free = s.effect is None and s.err is None and small
        if waiting and not (free and not any(id(v) in made for v in s.operands())):
            out += waiting
            waiting, made = [], set()
        out.append(s)
    return out + waiting


def _region(
    err: Any, base: dict[str, str], k: int, ns: dict[str, Any]
) -> tuple[list[str], list[str]]:
    """The lines opening a run of steps recorded under another floating-point error state
    (derivative rules run with divide, overflow and invalid ignored), and the indent."""
    if _quiet(err, base):
        opening = ["# derivative rules (floating-point errors ignored, as in eager)"]
        if _EXTOBJ is None:  # pragma: no cover - a NumPy without the context variable
            return [*opening, "_q = quiet_enter()", "try:"], ["finally:", "    quiet_exit(_q)"]
        # (quiet_enter and quiet_exit inlined: 0.13 µs of the 0.33 µs per region)
        enter = "_q = _fp.set(_QUIET.get(_fp.get()) or _quiet_state())"
        return [*opening, enter, "try:"], ["finally:", "    _fp.reset(_q)"]
    ns[f"e_{k}"] = err
    return [f"with np.errstate(**e_{k}):"], []


def _generate(
    fname: str, steps: list[_Step], inputs: list[_Var], outs: list[Any], base: dict[str, str]
) -> tuple[str, dict[str, Any], dict[int, _Step]]:
    """The generated function's source, its namespace and the step of each line."""
    ns: dict[str, Any] = {"np": np, "MISS": MISS, "_arrays": _arrays}
    ns.update(quiet_enter=quiet_enter, quiet_exit=quiet_exit, _quiet_state=quiet_state)
    ns.update(_fp=_EXTOBJ, _QUIET=_QUIET)
    _names(steps, inputs)
    dels = _dels(steps, [o for o in outs if type(o) is _Var])
    _adopt_grads(steps, dels)
    reuse = _reuse(steps, dels)
    lines = [f"def {fname}({', '.join(v.name for v in inputs)}):", "    # primal"]
    where: dict[int, _Step] = {}
    region: Any = None
    close: list[str] = []
    pad, k = "    ", 0
    for i, s in enumerate(steps):
        if s.err != region:
            lines += ["    " + ln for ln in close]
            region, close, pad = s.err, [], "    "
            if region is not None:
                opening, close = _region(region, base, k, ns)
                k += 1
                lines += ["    " + ln for ln in opening]
                pad = "        "
            else:
                lines.append("    # primal")
        for ln in _step_lines(s, ns, reuse.get(i)):
            lines.append(pad + ln)
            where[len(lines)] = s
        if i in dels:
            lines.append(pad + f"del {', '.join(dels[i])}")
    lines += ["    " + ln for ln in close]
    rets = [_render(o, ns) for o in outs if type(o) in (_Var, _Const)]
    lines.append(f"    return ({', '.join(rets)}{',' if len(rets) == 1 else ''})")
    return "\n".join(lines) + "\n", ns, where


_COUNTER = [0]


def _build(fname: str, steps: list[_Step], inputs: list[_Var], outs: list[Any]) -> _Program:
    base = np.geterr()
    src, ns, where = _generate(fname, steps, inputs, outs, base)
    _COUNTER[0] += 1
    filename = f"<ad.compile {fname} #{_COUNTER[0]}>"
    # NOTE: the code is generated from registry names, numbered variables and names bound in
    # `ns` only (no user text), and registered with linecache so tracebacks show its lines.
    code = builtins.compile(src, filename, "exec")
    linecache.cache[filename] = (len(src), None, src.splitlines(True), filename)
    exec(code, ns)
    return _Program(src, ns[fname], filename, where)


# ============================================================================================
# the compiled function
# ============================================================================================
_VALUES = (bool, int, float, complex, str, type(None))
_RESERVED = re.compile(r"^(v|c|t|g|e|k|dt|x|o|fx|ne)_|^(np|MISS|quiet_enter|quiet_exit|_.*)$")


def _signature(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, list[Any], Any]:
    """The cache key of a call (per array leaf its shape, dtype, requires_grad and the type of
    its array; other leaves by value or identity; the pytree structure), its leaves and its
    structure (None: the arguments are the leaves)."""
    if not kwargs:
        key = []
        for a in args:
            t = type(a)
            if t is Tensor:
                d = a.data
                key.append((type(d), d.shape, d.dtype, a._rg))
            elif t is np.ndarray:
                key.append((a.shape, a.dtype, None))
            else:
                break
        else:
            return tuple(key), list(args), None
    leaves, treedef = tree_flatten((args, kwargs))
    return (_frozen(treedef), *map(_leaf_key, leaves)), leaves, treedef


def _leaf_key(a: Any) -> Any:
    if isinstance(a, Tensor):
        d = a.data
        return (type(a), type(d), d.shape, d.dtype, a._rg)
    if type(a) is np.ndarray:
        return (np.ndarray, a.shape, a.dtype)
    if type(a) in _VALUES or isinstance(a, np.generic):
        return (type(a), a)
    return ("object", id(a))  # (by identity: its tensors are read as constants)


def _frozen(d: Any) -> Any:
    if isinstance(d, list | tuple):
        return tuple(_frozen(x) for x in d)
    return d


def _datas(leaves: list[Any]) -> list[np.ndarray]:
    """The program's arguments: the arrays of the array leaves."""
    return [a.data if isinstance(a, Tensor) else a for a in leaves if _is_array(a)]


def _is_array(a: Any) -> bool:
    return isinstance(a, Tensor) or type(a) is np.ndarray


def _names_of(f: Callable[..., Any], n: int, flat: bool) -> list[str]:
    """Input names for the generated code: ``f``'s parameter names where they are plain
    identifiers (a flat call), else ``x_0, x_1, …``."""
    names = [f"x_{i}" for i in range(n)]
    if not flat:
        return names
    try:
        ps = list(inspect.signature(f).parameters.values())
    except (TypeError, ValueError):
        return names
    for i, p in enumerate(ps[:n]):
        ok = p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        nm = p.name
        plain = nm.isidentifier() and nm.isascii() and not keyword.iskeyword(nm)
        if ok and plain and not _RESERVED.match(nm) and nm not in names[:i]:
            names[i] = nm
    return names


_LEAF = tree_flatten(0)[1]  # (the structure of a single leaf)


class _Variant:
    """One recorded program and how its results become ``f``'s return value."""

    __slots__ = ("entry", "out_def", "outputs", "program", "rebuild")

    def __init__(self, program: _Program, outputs: list[Any], out_def: Any) -> None:
        self.program = program
        #: ``(*args) -> f's return value or MISS``: the call of this variant's signature
        #: checked and replayed in one generated function (:func:`_entry`), or _no_entry
        self.entry: Callable[..., Any] = _no_entry
        self.outputs = outputs  # per output leaf: ("r", j, raw) or ("in", i) or ("c", value)
        self.out_def = out_def
        #: ``(results, arguments) -> f's return value``: the common shapes without a walk
        self.rebuild: Callable[[Any, Any], Any] = self._general
        wrapped = all(o[0] == "r" and o[1] == j and not o[2] for j, o in enumerate(outputs))
        if wrapped and out_def == _LEAF:
            self.rebuild = _one_tensor
        elif wrapped and out_def == (tuple, [_LEAF] * len(outputs)):
            self.rebuild = _tensors

    def _general(self, res: tuple[Any, ...], leaves: Any) -> Any:
        return _outputs(self, res, leaves)


def _one_tensor(res: tuple[Any, ...], leaves: Any) -> Tensor:
    return wrap(res[0])


def _tensors(res: tuple[Any, ...], leaves: Any) -> tuple[Tensor, ...]:
    return tuple([wrap(r) for r in res])


def _no_entry(*args: Any) -> Any:
    return MISS


def _entry(v: _Variant, leaves: list[Any]) -> Callable[..., Any]:
    """The generated function that checks a call's arguments against the signature ``v`` was
    recorded with (per argument its type, ``requires_grad``, the type, shape and dtype of its
    array), runs ``v``'s program and rebuilds ``f``'s return value; MISS if anything differs
    (the cache decides then). A dtype is compared by identity: an equal one is a MISS here."""
    ns: dict[str, Any] = {"MISS": MISS, "_nd": np.ndarray, "_Tensor": Tensor, "_wrap": wrap}
    ns.update(_fn=v.program.fn, _program=v.program, _error=_replay_error, _rebuild=v.rebuild)
    names, tests, datas = [], [], []
    for i, a in enumerate(leaves):
        x = f"x_{i}"
        names.append(x)
        if type(a) is Tensor:
            tests += [f"type({x}) is _Tensor", f"{x}._rg is {a._rg}"]
            tests.append(f"type(d_{i} := {x}.data) is _nd")
            d, x = a.data, f"d_{i}"
        else:
            tests.append(f"type({x}) is _nd")
            d = a
        ns[f"_dt_{i}"] = d.dtype
        tests += [f"{x}.shape == {d.shape!r}", f"{x}.dtype is _dt_{i}"]
        datas.append(x)
    if v.rebuild is _one_tensor:
        ret = "_wrap(r[0])"
    elif v.rebuild is _tensors:
        ret = f"({''.join(f'_wrap(r[{j}]), ' for j in range(len(v.outputs)))})"
    else:
        ret = "_rebuild(r, args)"
    src = "\n".join(
        [
            "def entry(*args):",
            f"    if len(args) == {len(leaves)}:",
            f"        {''.join(n + ', ' for n in names)}= args" if names else "",
            f"        if {' and '.join(tests) or 'True'}:",
            "            try:",
            f"                r = _fn({', '.join(datas)})",
            "            except Exception as e:",
            "                raise _error(_program, e) from e",
            "            if r is not MISS:",
            f"                return {ret}",
            "    return MISS",
        ]
    )
    exec(builtins.compile(src, f"<ad.compile entry of {v.program.filename[1:-1]}>", "exec"), ns)
    return ns["entry"]


class Compiled:
    """A function compiled by :func:`compile`: records per input signature, then replays.

    Examples
    --------
    >>> import autodiffx as ad
    >>> cf = ad.compile(lambda x: ad.sin(x) * x)
    >>> cf(ad.tensor([1.0, 2.0]))  # records
    tensor([0.84147098, 1.81859485])
    >>> cf(ad.tensor([3.0, 4.0]))  # replays
    tensor([ 0.42336002, -3.02720998])
    >>> cf.cache_info()
    {'hits': 1, 'recordings': 1, 'signatures': 1}
    """

    def __init__(self, f: Callable[..., Any], fuse: str | None = None) -> None:
        self.f = f
        self._fuse = fuse
        self.__name__ = name = getattr(f, "__name__", "f")
        fname = re.sub(r"\W+", "_", name).strip("_") or "f"
        if not fname.isidentifier() or keyword.iskeyword(fname) or fname in ("np", "MISS"):
            fname = f"f_{fname}" if fname.isidentifier() else "f"
        self._fname = fname
        self.__doc__ = getattr(f, "__doc__", None)
        self.__wrapped__ = f
        self._cache: OrderedDict[Any, list[_Variant]] = OrderedDict()
        self._lock = threading.Lock()
        self._last: _Variant | None = None
        # NOTE: the entry of the last variant run (recorded or replayed): a call with its
        # signature is checked and replayed without building a key or hashing it into the
        # cache (W4 compiled: 50.1k -> 43.5k instructions, 5.3 -> 4.6 µs, with the inlined
        # error-state switch; see the commit). It always belongs to `_last`.
        self._entry: Callable[..., Any] = _no_entry
        self._hits = self._recordings = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if STATE.mode & _EAGER:  # (an outer recording, forward mode, vmap…: eager)
            return self.f(*args, **kwargs)
        if not kwargs:  # (the last variant's signature and guards, checked and replayed)
            res = self._entry(*args)
            if res is not MISS:
                self._hits += 1
                return res
        return self._general(args, kwargs)

    def _general(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """A call with keyword arguments, pytrees or other values."""
        key, leaves, treedef = _signature(args, kwargs)
        if key in self._cache:
            found = self._replay(key, _datas(leaves))
            if found is not None:
                return found[0].rebuild(found[1], leaves)
        return self._record(key, leaves, treedef, args, kwargs)

    def _replay(self, key: Any, datas: list[Any]) -> tuple[_Variant, Any] | None:
        """The first variant recorded for ``key`` whose guards hold on ``datas``, and its
        results (None: no variant, or every guard failed: record again)."""
        variants = self._cache.get(key)
        if variants is None:
            return None
        for v in variants:
            try:
                res = v.program.fn(*datas)
            except Exception as e:
                raise _replay_error(v.program, e) from e
            if res is not MISS:
                self._hits += 1
                self._last, self._entry = v, v.entry
                self._cache.move_to_end(key)
                return v, res
        return None

    @property
    def source(self) -> str:
        """The generated Python of the variant the last call ran (recorded or replayed)."""
        if self._last is None:
            raise RuntimeError(f"ad.compile({self.__name__}): call it once to record a program")
        return self._last.program.source

    def cache_info(self) -> dict[str, int]:
        """Replays (``hits``), recordings, and input signatures in the cache."""
        return {"hits": self._hits, "recordings": self._recordings, "signatures": len(self._cache)}

    def _record(
        self, key: Any, leaves: list[Any], treedef: Any, args: tuple[Any, ...], kw: dict
    ) -> Any:
        """Run ``f`` eagerly while recording; keep the program; return the eager result."""
        rec = _Recorder(self.__name__)
        n = sum(1 for a in leaves if _is_array(a))
        names = iter(_names_of(self.f, n, treedef is None))
        inputs: list[_Var] = []
        call = []
        for a in leaves:
            if _is_array(a):
                t = _fresh_input(a, rec)
                inputs.append(rec.input(t.data, next(names)))
                a = t
            call.append(a)
        if treedef is not None:
            args, kw = tree_unflatten(treedef, call)
        else:
            args = tuple(call)
        out = _recording(rec, self.f, args, kw)
        variant = _variant(rec, self._fname, inputs, out, self._fuse)
        if treedef is None:
            variant.entry = _entry(variant, leaves)
        with self._lock:
            variants = self._cache.setdefault(key, [])
            variants.insert(0, variant)
            del variants[VARIANTS:]
            self._cache.move_to_end(key)
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
            self._recordings += 1
        variant.program.fn.__keep__ = leaves if treedef is not None else None  # (ids in key)
        self._last, self._entry = variant, variant.entry
        return out

    def __repr__(self) -> str:
        return f"<ad.compile of {self.__name__}>"


def _foreign(who: str, d: Any) -> CompileError:
    kind = f"{type(d).__module__.split('.')[0]}.{type(d).__name__}"
    return CompileError(
        f"ad.compile({who}): a Tensor holds a {kind}, not a NumPy array; compiled programs "
        "are NumPy code and run on NumPy arrays only. Call the function uncompiled (Dask, "
        "CuPy and array-API arrays run eagerly, docs/backends.md)"
    )


def _fresh_input(a: Any, rec: _Recorder) -> Tensor:
    """The Tensor ``f`` receives for an array leaf while recording; a leaf that shares its
    array with an earlier one is given a copy (at replay they may differ)."""
    d = a.data if isinstance(a, Tensor) else a
    if type(d) is not np.ndarray:
        raise _foreign(rec.who, d)
    if id(d) in rec.vars:
        t = wrap(d.copy())
        t._rg = False
        return t
    if isinstance(a, Tensor):
        return a
    if a.dtype == object:
        raise TypeError("ad.compile: an object array is not a numeric input")
    return wrap(a)


def _unrecorded(fn: Callable[..., Any], args: list[Any]) -> Any:
    """``fn(*args)`` with the recording suspended (an effect's own work is not recorded)."""
    st = STATE
    prev = st.tape, st.compiler
    st.tape = st.compiler = None
    st.sync()
    try:
        return fn(*args)
    finally:
        st.tape, st.compiler = prev
        st.sync()


def _accumulate_grad(t: Tensor, g: np.ndarray) -> None:
    """What eager ``backward()`` does with the gradient ``g`` of leaf ``t``."""
    _accumulate(t, g, False)


def _recording(rec: _Recorder, f: Callable[..., Any], args: Any, kw: dict[str, Any]) -> Any:
    st = STATE
    prev = st.tape, st.compiler
    st.tape = st.compiler = rec
    st.sync()
    _watch_data(True)
    try:
        out = f(*args, **kw)
    finally:
        _watch_data(False)
        st.tape, st.compiler = prev
        st.sync()
    if rec.error is not None:
        raise rec.error
    return out


def _variant(
    rec: _Recorder, fname: str, inputs: list[_Var], out: Any, fuse: str | None = None
) -> _Variant:
    """The program of a recording and the map from its results to ``f``'s outputs."""
    leaves, out_def = tree_flatten(out)
    outs: list[Any] = []
    spec: list[Any] = []
    for o in leaves:
        if isinstance(o, Tensor) and (o._tan or (o._rg and not rec.effects)):
            raise CompileError(
                f"ad.compile({rec.who}): an output requires grad (it depends on a tensor that "
                "requires grad), and differentiating through a compiled function is not "
                "supported yet. Differentiate inside it (ad.compile(ad.grad(f)), "
                "ad.compile(ad.value_and_grad(loss))), or pass inputs that do not require grad"
            )
        if not _is_array(o):
            if not (type(o) in _VALUES or isinstance(o, np.generic)):
                raise CompileError(
                    f"ad.compile({rec.who}): f returned a {type(o).__name__}, whose contents "
                    "a replay could not rebuild; return Tensors, arrays and numbers in "
                    "tuples, lists and dicts"
                )
            spec.append(("c", o))
            continue
        op = rec.operand(o)
        if type(op) is _Var and op.step is None and isinstance(o, Tensor):
            spec.append(("in", inputs.index(op), o))
        elif type(op) is _Const and op.tensor:
            spec.append(("c", o))
        else:
            spec.append(("r", len(outs), type(o) is np.ndarray))
            outs.append(op)
    steps = _simplify(_fold(rec, {id(v) for v in outs}), outs, np.geterr())
    steps = _guards_first(steps, rec.who)
    steps = _schedule(_live(steps, [v for v in outs if type(v) is _Var]), np.geterr())
    if fuse is not None:
        from . import _fuse

        steps = _fuse.fuse(steps, outs, np.geterr())
    return _Variant(_build(fname, steps, inputs, outs), spec, out_def)


# NOTE: a constant is folded only when no one but the recorder can reach it (reference
# counts: the recorder's own references, the call's argument), so that nothing can change it
# between replays: the temporaries of the recording, such as the ones seeding a backward pass
# and their broadcasts. A closed-over tensor is read at every replay instead.
_CONST_REFS = 4  # _Const.value, the recorder's keep list, a local, getrefcount's argument
_ARRAY_REFS = 3  # the Tensor's slot, a local, getrefcount's argument
_VAR_REFS = 2  # _Var.arr, getrefcount's argument
_BASE_REFS = 3  # the view's base, a local, getrefcount's argument


def _unreachable(c: _Const, views: dict[int, int]) -> bool:
    """Whether only the recorder holds constant ``c`` (``views``: by the id of an array, how
    many recorded values are views of it, each holding it as its base)."""
    v = c.value
    if sys.getrefcount(v) > _CONST_REFS:
        return False
    if c.tensor:
        d = _SLOT.__get__(v, Tensor)
        if type(d) is not np.ndarray or sys.getrefcount(d) > _ARRAY_REFS + views.get(id(d), 0):
            return False
        b = d.base  # (a view, such as a row block of a Jacobian's basis: its base too)
        return b is None or (
            type(b) is np.ndarray
            and b.base is None
            and sys.getrefcount(b) <= _BASE_REFS + views.get(id(b), 0)
        )
    return type(v) is np.ndarray and v.base is None


def _fold(rec: _Recorder, keep: set[int]) -> list[_Step]:
    """Constant folding: a step whose operands are all unreachable constants (or literals) is
    replaced by the value it computed while recording, if that is unreachable too; a real
    product by an unreachable constant of ones (a seed's broadcast) that changes neither
    shape nor dtype is its other factor (exact), unless it is an output (``keep``)."""
    views: dict[int, int] = {}
    for var in rec.vars.values():
        if var.arr.base is not None:
            views[id(var.arr.base)] = views.get(id(var.arr.base), 0) + 1
    fixed = {id(c) for c in rec.consts.values() if _unreachable(c, views)}
    repl: dict[int, Any] = {}
    kept = []
    for s in rec.steps:
        s.args = _subst(s.args, repl)
        s.params = {k: _subst(v, repl) for k, v in s.params.items()}
        if s.effect is not None:
            kept.append(s)
            continue
        if s.guard is not None:
            s.guard = (_subst(s.guard[0], repl), *s.guard[1:])
        leaves = s.operands((_Var, _Const))
        if _times_one(s, fixed, keep):
            repl[id(s.outs[0])] = s.args[1] if id(s.args[0]) in fixed else s.args[0]
            continue
        if all(id(a) in fixed for a in leaves):
            if s.guard is not None:
                continue  # (a guard on a constant holds)
            if all(sys.getrefcount(v.arr) <= _VAR_REFS + views.get(id(v.arr), 0) for v in s.outs):
                for v in s.outs:
                    c = repl[id(v)] = _Const(f"c_{len(rec.consts) + len(repl)}", v.arr)
                    fixed.add(id(c))
                continue
        kept.append(s)
    return kept


def _simplify(steps: list[_Step], outs: list[Any], base: dict[str, str]) -> list[_Step]:
    """Common subexpressions and copies: a step that repeats an earlier one (same kernel,
    operands and parameters) reuses its result, and a copy (``alias``) that nothing can
    write into is its operand. Exact: the same kernel on the same arrays gives the same bits.
    Not across side effects (they may write into the operands), never for a step whose
    result is an output (eager returns distinct arrays), and a repeat keeps its own
    floating-point warnings unless it ran quiet (a derivative rule)."""
    out_ids = {id(v) for v in outs}
    effects = any(s.effect is not None and not s.effect[2] for s in steps)
    uses: dict[int, int] = {}
    for s in steps:
        for v in s.operands():
            uses[id(v)] = uses.get(id(v), 0) + 1
    repl: dict[int, Any] = {}
    seen: dict[Any, _Step] = {}
    kept: list[_Step] = []
    for s in steps:
        if repl:
            _substitute(s, repl)
        if s.effect is not None and not s.effect[2]:
            seen.clear()  # (an effect may write into what earlier steps read)
        elif not effects and _is_copy(s, out_ids, uses):
            repl[id(s.outs[0])] = s.args[0]
            continue
        elif (s.prim is not None or s.effect is not None) and not any(
            id(v) in out_ids for v in s.outs
        ):
            key = _step_key(s)  # (a primitive, or a pure call: effects cleared `seen` above)
            prev = seen.get(key) if key is not None else None
            if prev is not None and _may_share(prev.err, s.err, base):
                repl.update((id(a), b) for a, b in zip(s.outs, prev.outs, strict=True))
                continue
            if key is not None and prev is None:
                seen[key] = s
        kept.append(s)
    outs[:] = [_subst(o, repl) for o in outs]
    return kept


def _substitute(s: _Step, repl: dict[int, Any]) -> None:
    s.args = _subst(s.args, repl)
    s.params = {k: _subst(v, repl) for k, v in s.params.items()}
    if s.guard is not None:
        s.guard = (_subst(s.guard[0], repl), *s.guard[1:])


def _is_copy(s: _Step, out_ids: set[int], uses: dict[int, int]) -> bool:
    """Whether ``s`` is an ``alias`` (a copy) whose operand can stand in for it: always
    inside the program (nothing writes in place there); for an output, only an operand that
    is a fresh array used by nothing else, so the output still owns its buffer."""
    if s.prim is None or s.prim.name != "alias" or type(s.args[0]) not in (_Var, _Const):
        return False
    if id(s.outs[0]) not in out_ids:
        return True
    a = s.args[0]
    fresh = type(a) is _Var and a.step is not None and a.step.prim is not None
    return (
        fresh
        and not a.step.prim.view
        and a.arr.base is None
        and uses.get(id(a)) == 1
        and id(a) not in out_ids
    )


def _step_key(s: _Step) -> Any:
    """What makes two steps compute the same arrays (None: a step not to share)."""
    try:
        head = s.prim if s.prim is not None else s.effect[0]
        key = (head, _key_of(s.args), tuple((k, _key_of(v)) for k, v in s.params.items()))
        hash(key)
    except TypeError:  # (an unhashable parameter: not shared)
        return None
    return key


def _key_of(a: Any) -> Any:
    if type(a) in (_Var, _Const, _Obj):
        return (type(a), id(a))
    if type(a) is _Seq:
        return (_Seq, a.kind, tuple(_key_of(b) for b in a.items))
    if type(a) in (list, tuple):
        return (type(a), tuple(_key_of(b) for b in a))
    if type(a) is float:
        return (float, a.hex())  # (-0.0 and 0.0 differ)
    if type(a) is slice:
        return (slice, _key_of(a.start), _key_of(a.stop), _key_of(a.step))
    return (type(a), a)


def _may_share(first: Any, later: Any, base: dict[str, str]) -> bool:
    """Whether a step recorded under error state ``later`` may reuse the result of one
    recorded under ``first`` (None: the call's state ``base``): the same state, or a quiet
    one (a derivative rule: no warning to lose) with the same underflow setting."""
    return first == later or _quiet(later, first or base)


def _times_one(s: _Step, fixed: set[int], keep: set[int]) -> bool:
    if s.prim is None or s.prim.name != "multiply" or s.params or len(s.args) != 2:
        return False
    out = s.outs[0]
    if id(out) in keep or out.arr.dtype.kind != "f":
        return False
    for c, other in (s.args, s.args[::-1]):
        if type(c) is _Const and id(c) in fixed and type(other) is _Var:
            v = c.value.data if c.tensor else c.value
            if (
                other.arr.shape == out.arr.shape
                and other.arr.dtype == out.arr.dtype
                and v.dtype.kind == "f"
                and np.all(v == 1)
            ):
                return True
    return False


def _subst(a: Any, repl: dict[int, Any]) -> Any:
    if type(a) is _Var:
        return repl.get(id(a), a)
    if type(a) is _Seq:
        return _Seq(a.kind, [_subst(b, repl) for b in a.items])
    if type(a) in (list, tuple):
        return type(a)(_subst(b, repl) for b in a)
    return a


def _outputs(v: _Variant, res: tuple[Any, ...], leaves: list[Any]) -> Any:
    out = []
    arrays = [a for a in leaves if _is_array(a)]
    for s in v.outputs:
        if s[0] == "r":
            out.append(res[s[1]] if s[2] else wrap(res[s[1]]))
        elif s[0] == "in":
            a = arrays[s[1]]
            out.append(a if isinstance(a, Tensor) else wrap(a))
        else:
            out.append(s[1])
    return tree_unflatten(v.out_def, out)


def _replay_error(prog: _Program, e: Exception) -> Exception:
    """``e`` raised by generated code, its message naming the step and the user's line."""
    tb, line = e.__traceback__, None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == prog.filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    step = prog.lines.get(line) if line is not None else None
    if step is None:
        return e
    text = prog.source.splitlines()[line - 1].strip()  # type: ignore[operator]
    msg = f"{e} (replaying '{text}', recorded at {step.where})"
    try:
        return type(e)(msg)
    except Exception:  # pragma: no cover - an exception type with another signature
        return RuntimeError(msg)


def compile(f: Callable[..., Any], *, fuse: str | None = None) -> Compiled:
    """Compile ``f``: record its primitive applications once per input signature, then replay
    them as generated straight-line NumPy code.

    The first call with a given signature (the pytree structure of the arguments; per array
    or Tensor its shape, dtype and requires_grad; other values by value) runs ``f`` eagerly
    while recording and returns its result. Later calls with that signature run the
    generated function on the arrays and return Tensors in ``f``'s output structure; array
    arguments reach ``f`` as Tensors. Transforms inside ``f`` (``ad.grad``,
    ``ad.value_and_grad``, ``ad.hvp`` …) are recorded through: their derivative rules become
    ordinary steps. Every read of a value while recording (``bool(t)``, ``float(t)``,
    ``t.item()``, ``t.tolist()``, ``t.data`` …) is a guard: a replay whose value differs
    records another variant. A training step's ``backward()``, ``zero_grad()`` and
    ``optimizer.step()``, and random draws (Dropout's masks, ``ad.rand``), are replayed as
    eager runs them; other side effects (in-place writes, reads of ``.grad``) and outputs
    that require grad raise :class:`CompileError`. Inside an
    evaluation trace, a dual level, ``detect_anomaly()`` or ``vmap``, ``f`` runs eagerly
    (``ad.compile(ad.vmap(f))`` compiles the batched program). ``cf.source``
    is the generated code.

    ``fuse="numexpr"`` (the ``autodiffx[fuse]`` extra) replays each run of small
    elementwise steps of the derivative rules (at most 1024 elements per array, float32 or
    float64) as one numexpr call: values equal eager's within ``rtol`` 1e-12 (float64) or
    1e-5 (float32), bit for bit for ``+ - * /`` and ``sqrt``; see docs/compile.md for
    where it helps. Default ``None``: the plain NumPy program.

    Examples
    --------
    >>> import autodiffx as ad
    >>> loss = lambda w: ad.sum(ad.tanh(w) ** 2)
    >>> step = ad.compile(ad.value_and_grad(loss))
    >>> step(ad.tensor([0.5, -1.0]))  # records
    (tensor(0.79357793), tensor([ 0.72686198, -0.63970001]))
    >>> step(ad.tensor([0.1, 0.2]))  # replays
    (tensor(0.04889073), tensor([0.19735584, 0.37937233]))
    >>> print(step.source)
    def value_and_grad_lambda(x_0):
        # primal
        v_1 = np.tanh(x_0)
        v_2 = k_power(v_1, 2)
        v_3 = np.asarray(k_sum(v_2, axis=None, keepdims=False))
        del v_2
        # derivative rules (floating-point errors ignored, as in eager)
        _q = _fp.set(_QUIET.get(_fp.get()) or _quiet_state())
        try:
            v_4 = np.multiply(2, v_1)
            v_5 = np.multiply(v_1, v_1)
            del v_1
            v_6 = np.subtract(1, v_5)
            del v_5
            v_7 = np.multiply(v_4, v_6)
            del v_4, v_6
        finally:
            _fp.reset(_q)
        return (v_3, v_7)
    <BLANKLINE>
    """
    if fuse is not None:
        if fuse != "numexpr":
            raise ValueError(f"ad.compile: fuse must be None or 'numexpr', not {fuse!r}")
        try:
            import numexpr  # noqa: F401
        except ImportError as e:
            raise ImportError(
                'ad.compile(fuse="numexpr") needs numexpr: pip install "autodiffx[fuse]"'
            ) from e
    return Compiled(f, fuse)
