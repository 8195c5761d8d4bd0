"""vmap: JAX's vectorizing map, on batched values that run every op once for the whole batch."""

from __future__ import annotations

import inspect
import string
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from . import ops
from ._hvp import hvp
from ._mode import STATE, VMAP, WATCHED
from ._registry import REGISTRY, Primitive
from ._rules import pad_batched
from ._tensor import _INSPECT, Tensor, wrap
from ._transforms import jacobian, jvp, tree_flatten, tree_unflatten, value_and_grad, vjp

_NOT_CONCRETE = (
    "{what} of a batched value inside ad.vmap: it holds one value per example (per-example "
    "shape {shape}), so it has no single {kind}. Python control flow that depends on values "
    "(if, while, float(x)) cannot be vectorized: select with ad.where(cond, a, b), or loop "
    "over the examples in Python instead of vmap"
)

_ESCAPED = (
    "a batched value of an ad.vmap that has returned was used (it escaped through a closure, "
    "a global or a side effect); return values from the vmapped function instead"
)


class _Level:
    """One open ``vmap``: its batch size; ``hidden`` while a transform lowered at it runs."""

    __slots__ = ("active", "hidden", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self.hidden = False
        self.active = True


class Batched(Tensor):
    """A value inside :func:`vmap`: ``inner`` (a Tensor in the graph) holds every example,
    the batch axis first; the value reports the per-example shape.

    Its own ``data`` does not exist: code that reads it (value-dependent Python control
    flow, conversion to NumPy) raises, and so does an in-place write.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.vmap(lambda x: (x.shape, x.sum()))(ad.ones((3, 2)))[1]
    tensor([2., 2., 2.])
    """

    __slots__ = ("inner", "level")

    def __init__(self, inner: Tensor, level: _Level) -> None:
        if not isinstance(inner, Tensor):
            inner = Tensor(np.asarray(inner))
        self.inner = inner
        self.level = level
        self._grad = None
        self._rg = False
        self._node = None
        self._idx = 0
        self._vc = None
        self._tan = None
        self._hooks = None

    def _refuse(self, what: str, kind: str = "value") -> TypeError:
        return TypeError(_NOT_CONCRETE.format(what=what, shape=self.shape, kind=kind))

    @property  # type: ignore[override]
    def data(self) -> np.ndarray:  # type: ignore[override]
        """Refused: a batched value has no single array (see the class)."""
        if not self.level.active:
            raise RuntimeError(_ESCAPED)
        raise self._refuse(".data (or an engine path that reads it)", "array")

    @property
    def shape(self) -> tuple[int, ...]:
        """The per-example shape."""
        return tuple(self.inner.shape[1:])

    @property
    def ndim(self) -> int:
        """The per-example number of dimensions."""
        return self.inner.ndim - 1

    @property
    def size(self) -> Any:
        """The per-example number of elements."""
        return int(np.prod(self.shape))

    @property
    def dtype(self) -> np.dtype:
        """The dtype of the examples."""
        return self.inner.dtype

    @property  # type: ignore[override]
    def requires_grad(self) -> bool:
        """Whether the batched values are recorded for reverse mode."""
        return self.inner.requires_grad

    def numpy(self) -> np.ndarray:
        """Refused (see the class)."""
        raise self._refuse("t.numpy()", "array")

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        raise self._refuse("np.asarray(t)", "array")

    def item(self) -> Any:
        """Refused (see the class)."""
        raise self._refuse("t.item()")

    def tolist(self) -> Any:
        """Refused (see the class)."""
        raise self._refuse("t.tolist()")

    def __bool__(self) -> bool:
        raise self._refuse("bool(t) (an if or while on a tensor)", "truth value")

    def __float__(self) -> float:
        raise self._refuse("float(t)")

    def __int__(self) -> int:
        raise self._refuse("int(t)")

    def __complex__(self) -> complex:
        raise self._refuse("complex(t)")

    def __index__(self) -> int:
        raise self._refuse("an index or int(t)")

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor (per example, inside ad.vmap)")
        return self.shape[0]

    def __iter__(self) -> Iterator[Tensor]:
        for i in range(len(self)):
            yield self[i]

    def __repr__(self) -> str:
        return f"Batched(per-example shape {self.shape}, dtype={self.dtype}, of {self.inner!r})"

    def __format__(self, spec: str) -> str:
        return repr(self)

    def backward(self, *args: Any, **kwargs: Any) -> None:
        """Refused: differentiate with ad.grad inside vmap, or backward outside it."""
        raise TypeError(
            "backward() of a batched value inside ad.vmap: use ad.grad(f) inside vmap (per-"
            "example gradients), or call backward() on a result of vmap outside it"
        )

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        """NumPy functions that only inspect: those of the shape and dtype answer for one
        example, those of the values run example by example (a batched result); the others
        are Tensor's (batched through their ops)."""
        if func in _META:
            return func(*_stand_in(args), **_stand_in(kwargs))
        if func in _PER_EXAMPLE:
            return _per_example(func, args, kwargs)
        if func in _INSPECT:
            raise TypeError(_NO_SINGLE.format(name=f"np.{func.__name__}", shape=self.shape))
        return super().__array_function__(func, types, args, kwargs)

    def __getitem__(self, idx: Any) -> Tensor:
        if _scan(idx if isinstance(idx, tuple) else (idx,)) is None:
            return super().__getitem__(idx)
        return _gather(self, idx)

    def _inplace(self, p: Any, o: Any, raw: Any = None) -> Tensor:
        raise self._write(f"in-place {p.name}")

    def __setitem__(self, idx: Any, value: Any) -> None:
        raise self._write("x[idx] = v")

    def _write(self, what: str) -> TypeError:
        return TypeError(
            f"{what} on a batched value inside ad.vmap (per-example shape {self.shape}) is not "
            "supported: write out of place (x = x + y instead of x += y; for x[idx] = v use "
            "ad.where with a mask, or x.copy() then build the value with ad.concatenate)"
        )


# ----- NumPy's inspecting functions on batched values --------------------------------------------
#: Those that read only the shape and dtype: answered for one example.
_META = {np.shape, np.ndim, np.size, np.result_type, np.iscomplexobj, np.isrealobj}
#: Those that read the values into a result of a fixed shape: run on each example.
_PER_EXAMPLE = (
    _INSPECT
    - _META
    - {
        np.nonzero,
        np.argwhere,
        np.flatnonzero,
        np.unique,
        np.may_share_memory,
        np.shares_memory,
        np.array2string,
        np.array_repr,
        np.array_str,
    }
)

_NO_SINGLE = (
    "{name} of a batched value inside ad.vmap (per-example shape {shape}): the shape of its "
    "result depends on the values (or it reads the one array, which a batched value does not "
    "have), so it cannot be vectorized; loop over the examples in Python instead of vmap"
)


def _stand_in(tree: Any) -> Any:
    """``tree`` with each Tensor as its array, a batched value as a read-only array of zeros
    of its per-example shape and dtype (no copy: every element is the same zero)."""
    if isinstance(tree, Batched):
        return np.broadcast_to(np.zeros((), tree.dtype), tree.shape)
    if isinstance(tree, Tensor):
        return tree.data
    if isinstance(tree, tuple | list):
        return type(tree)(_stand_in(v) for v in tree)
    if isinstance(tree, dict):
        return {k: _stand_in(v) for k, v in tree.items()}
    return tree


def _per_example(func: Any, args: Any, kwargs: dict[str, Any]) -> Batched:
    """``func`` (no derivative) on each example at the innermost level, stacked."""
    level = _scan([*args, *kwargs.values()])
    assert level is not None
    outs = []
    for b in range(level.size):
        kw = {k: _example(v, level, b) for k, v in kwargs.items()}
        r = func(*_example(list(args), level, b), **kw)
        outs.append(r if isinstance(r, Tensor) else Tensor(np.asarray(r)))
    return Batched(ops.stack(outs), level)


# ----- levels ----------------------------------------------------------------------------------
def _open(size: int) -> _Level:
    level = _Level(size)
    st = STATE
    st.vmap_levels.append(level)
    st.vmap, st.vmap_lower, st.vmap_index, st.vmap_type = _apply, _lower, _index, Batched
    st.mode |= VMAP
    st.eager = False
    return level


def _close(level: _Level) -> None:
    st = STATE
    st.vmap_levels.remove(level)
    level.active = False
    if not st.vmap_levels:
        st.mode = mode = st.mode & ~VMAP
        st.eager = not mode & WATCHED


class _Shown:
    """Set ``level.hidden`` to ``hidden`` for a ``with`` block (a transform lowered at it runs
    hidden; ``f`` inside it sees the level again)."""

    __slots__ = ("hidden", "level", "prev")

    def __init__(self, level: _Level, hidden: bool) -> None:
        self.level, self.hidden = level, hidden

    def __enter__(self) -> None:
        self.prev = self.level.hidden
        self.level.hidden = self.hidden

    def __exit__(self, *exc: object) -> None:
        self.level.hidden = self.prev


def _at(x: Any, level: _Level) -> bool:
    return isinstance(x, Batched) and x.level is level


def _example(t: Any, level: _Level, b: int) -> Any:
    """Example ``b`` of ``t``: each value batched at ``level`` replaced by its ``b``-th
    example, through tuples and lists; anything else as it is."""
    if _at(t, level):
        return t.inner[b]
    if isinstance(t, tuple | list):
        return type(t)(_example(c, level, b) for c in t)
    return t


def _full(x: Any, level: _Level) -> Any:
    """``x`` as the whole batch at ``level``: its inner Tensor, or ``x`` broadcast to it."""
    if _at(x, level):
        return x.inner
    if not isinstance(x, Tensor):
        x = Tensor(np.asarray(x))
    return ops.broadcast_to(x, (level.size, *x.shape))


# ----- ops on batched values -------------------------------------------------------------------
def _innermost(args: Sequence[Any], params: dict[str, Any]) -> tuple[_Level | None, bool]:
    """The innermost level among the batched values of an op's arguments, and whether one
    of them sits inside a container (a tuple of indices) or in the params."""
    best: _Level | None = None
    nested = False
    for a in args:
        if isinstance(a, Batched):
            if best is None or _depth(a.level) > _depth(best):
                best = a.level
        elif isinstance(a, tuple | list):
            lv = _scan(a)
            if lv is not None:
                nested = True
                if best is None or _depth(lv) > _depth(best):
                    best = lv
    for v in params.values():
        lv = _scan(v) if isinstance(v, tuple | list | Batched) else None
        if lv is not None:
            nested = True
            if best is None or _depth(lv) > _depth(best):
                best = lv
    return best, nested


def _scan(tree: Any) -> _Level | None:
    if isinstance(tree, Batched):
        return tree.level
    best = None
    if isinstance(tree, tuple | list):
        for c in tree:
            lv = _scan(c)
            if lv is not None and (best is None or _depth(lv) > _depth(best)):
                best = lv
    return best


def _depth(level: _Level) -> int:
    if not level.active:
        raise RuntimeError(_ESCAPED)
    return STATE.vmap_levels.index(level)


def _apply(p: Primitive, args: Sequence[Any], params: dict[str, Any]) -> Any:
    """The dispatcher's hook: ``p`` on batched values, at the innermost level among them.

    Only that level's values are unwrapped; values of outer levels stay batched, so the ops
    of the batched rule dispatch to the outer level in turn (nested vmaps)."""
    level, nested = _innermost(args, params)
    if level is None:
        return NotImplemented
    if nested:
        out = _loop(p, level, args, params)
    else:
        bat = [_at(a, level) for a in args]
        xs = [a.inner if b else a for a, b in zip(args, bat)]
        out = _batched(p, xs, bat, level.size, params)
    n = level.size
    if p.nout == 1:
        return _wrap(out, level, p, n)
    return tuple(_wrap(o, level, p, n) for o in out)


def _wrap(out: Any, level: _Level, p: Primitive, n: int) -> Batched:
    if not isinstance(out, Tensor):
        out = wrap(np.asarray(out))
    if out.ndim == 0 or out.shape[0] != n:  # pragma: no cover - a batching rule's bug
        raise RuntimeError(f"vmap: the batched {p.name} gave shape {out.shape}, not ({n}, ...)")
    return Batched(out, level)


def _batched(p: Primitive, xs: list[Any], bat: list[bool], n: int, params: dict[str, Any]) -> Any:
    """``p`` on the unwrapped arguments ``xs`` (``bat``: which carry the batch axis first)."""
    kind = _KINDS.get(p.vmap or "")
    if kind is not None:
        return kind(p, xs, bat, n, params)
    if p.broadcasting:
        rank = max(_rank(x, b) for x, b in zip(xs, bat))
        return p.call(*[pad_batched(x, 1, rank) if b else x for x, b in zip(xs, bat)], **params)
    if p.batch is not None:
        full = [
            ops.broadcast_to(x, (n, *x.shape))
            if not b and isinstance(x, Tensor | np.ndarray) and i not in p.nondiff
            else x
            for i, (x, b) in enumerate(zip(xs, bat))
        ]
        return p.batch(1, *full, **params)
    return _loop_unwrapped(p, xs, bat, n, params)


def _rank(x: Any, batched: bool) -> int:
    return x.ndim - 1 if batched else np.ndim(x) if not isinstance(x, Tensor) else x.ndim


def _index(x: Any, idx: Any) -> Any:
    """The indexing hook (``STATE.vmap_index``): ``x[idx]`` for an ``x`` that is not batched
    at the innermost level of a batched index (NotImplemented: no batched index)."""
    if _scan(idx if isinstance(idx, tuple) else (idx,)) is None:
        return NotImplemented
    return _gather(x, idx)


def _gather(x: Any, idx: Any) -> Batched:
    """``x[idx]`` with batched indices: one integer index per example is a gather of the
    whole batch; anything else runs example by example at the innermost level, stacked."""
    lv = _scan(idx if isinstance(idx, tuple) else (idx,))
    xl = x.level if isinstance(x, Batched) else None
    level = xl if lv is None or (xl is not None and _depth(xl) >= _depth(lv)) else lv
    assert level is not None
    n = level.size
    if (
        isinstance(idx, Batched)
        and idx.level is level
        and type(idx.inner) is Tensor
        and idx.dtype.kind in "iu"
    ):
        if xl is not level:  # (x is the same for every example: index it by the whole batch)
            return Batched(x[idx.inner.data], level)
        rows = np.arange(n).reshape((n,) + (1,) * idx.ndim)
        return Batched(x.inner[rows, idx.inner.data], level)
    if isinstance(idx, tuple) and xl in (None, level):
        out = _gather_arrays(x, idx, level)
        if out is not None:
            return out
    examples = [_example(x, level, b)[_example(idx, level, b)] for b in range(n)]
    return Batched(ops.stack(examples), level)


def _gather_arrays(x: Any, idx: tuple[Any, ...], level: _Level) -> Batched | None:
    """``x[idx]`` for a tuple of integer arrays, each batched at ``level`` or not (as
    ``take_along_axis`` builds): one advanced index of the whole batch, every array given a
    leading axis (n, or 1 to broadcast). None for any other tuple (slices, bools, nesting)."""
    if not all(_int_array(c, level) for c in idx):
        return None
    rank = max(c.ndim if _at(c, level) else np.ndim(_raw(c)) for c in idx)
    comps = []
    for c in idx:
        a = c.inner.data if _at(c, level) else np.asarray(_raw(c))[None]
        comps.append(a.reshape((a.shape[0],) + (1,) * (rank + 1 - a.ndim) + a.shape[1:]))
    if _at(x, level):
        rows = np.arange(level.size).reshape((level.size,) + (1,) * rank)
        return Batched(x.inner[(rows, *comps)], level)
    return Batched(x[tuple(comps)], level)


def _raw(c: Any) -> Any:
    return c.data if type(c) is Tensor else c


def _int_array(c: Any, level: _Level) -> bool:
    """Whether ``c`` is an integer array index: batched at ``level`` (not nested), or not
    batched at all."""
    if _at(c, level):
        return type(c.inner) is Tensor and c.dtype.kind in "iu"
    if c is None or isinstance(c, slice) or (isinstance(c, Tensor) and type(c) is not Tensor):
        return False
    return np.asarray(_raw(c)).dtype.kind in "iu"


def _loop(p: Primitive, level: _Level, args: Sequence[Any], params: dict[str, Any]) -> Any:
    """The fallback: ``p`` on each example (batched values anywhere in the arguments), stacked."""
    outs = []
    for b in range(level.size):
        kw = {k: _example(v, level, b) for k, v in params.items()}
        outs.append(p.call(*_example(list(args), level, b), **kw))
    return _stack(p, outs)


def _loop_unwrapped(
    p: Primitive, xs: list[Any], bat: list[bool], n: int, params: dict[str, Any]
) -> Any:
    outs = [p.call(*[x[b] if f else x for x, f in zip(xs, bat)], **params) for b in range(n)]
    return _stack(p, outs)


def _stack(p: Primitive, outs: list[Any]) -> Any:
    if p.nout == 1:
        return ops.stack(outs)
    return tuple(ops.stack([o[k] for o in outs]) for k in range(len(outs[0])))


def loop_primitives() -> list[str]:
    """The registered primitives that ``vmap`` runs as a loop over the examples (stacked).

    Examples
    --------
    >>> from autodiffx._vmap import loop_primitives
    >>> "lstsq" in loop_primitives()
    True
    """
    return sorted(
        n for n, p in REGISTRY.items() if not (p.broadcasting or p.batch or p.vmap in _KINDS)
    )


# ----- the vectorized kinds (Primitive.vmap) ---------------------------------------------------
def _bound(p: Primitive, xs: list[Any], params: dict[str, Any]) -> inspect.BoundArguments:
    ba = _signature(p).bind(*xs, **params)
    ba.apply_defaults()
    return ba


_SIGS: dict[str, inspect.Signature] = {}


def _signature(p: Primitive) -> inspect.Signature:
    sig = _SIGS.get(p.name)
    if sig is None:
        sig = _SIGS[p.name] = inspect.signature(p.kernel)
    return sig


def _call_bound(p: Primitive, ba: inspect.BoundArguments) -> Any:
    return p.call(*ba.args, **ba.kwargs)


def _shift(p: Primitive, axis: Any, nd: int) -> Any:
    """A per-example axis (or tuple of them) as an axis of the batched array."""
    if isinstance(axis, tuple | list):
        return tuple(_shift(p, a, nd) for a in axis)
    a = int(axis)
    if not -nd <= a < max(nd, 1):
        raise np.exceptions.AxisError(
            f"{p.name}: axis {a} is out of bounds for the per-example array of ndim {nd} "
            "inside ad.vmap (the batch axis is not an axis of the examples)"
        )
    return a % max(nd, 1) + 1


def _map(p: Primitive, xs: list[Any], bat: list[bool], n: int, params: dict[str, Any]) -> Any:
    """Ops without positions in their params (``real``, ``astype``): applied as they are."""
    return p.call(*xs, **params)


def _lead(p: Primitive, xs: list[Any], bat: list[bool], n: int, params: dict[str, Any]) -> Any:
    """Ops over the leading axes of their first argument (``nn.functional.linear``'s input);
    a batched weight: a loop."""
    if any(bat[1:]):
        return _loop_unwrapped(p, xs, bat, n, params)
    return p.call(*xs, **params)


def _reduce(p: Primitive, xs: list[Any], bat: list[bool], n: int, params: dict[str, Any]) -> Any:
    """Reductions over ``axis`` (None: every per-example axis)."""
    if not bat[0] or any(bat[1:]):
        return _loop_unwrapped(p, xs, bat, n, params)
    ba = _bound(p, xs, params)
    nd = xs[0].ndim - 1
    axis = ba.arguments["axis"]
    ba.arguments["axis"] = tuple(range(1, nd + 1)) if axis is None else _shift(p, axis, nd)
    return _call_bound(p, ba)


def _flat(p: Primitive, xs: list[Any], bat: list[bool], n: int, params: dict[str, Any]) -> Any:
    """Ops along ``axis`` that flatten the example when it is None (argmax, cumprod, argsort)."""
    if not bat[0] or any(bat[1:]):
        return _loop_unwrapped(p, xs, bat, n, params)
    ba = _bound(p, xs, params)
    x = xs[0]
    nd = x.ndim - 1
    axis = ba.arguments["axis"]
    if axis is not None:
        ba.arguments["axis"] = _shift(p, axis, nd)
        return _call_bound(p, ba)
    ba.arguments["x"] = ops.reshape(x, (n, -1))
    ba.arguments["axis"] = 1
    out = _call_bound(p, ba)
    if ba.arguments.get("keepdims"):
        out = ops.reshape(out, (n,) + (1,) * nd)
    return out


def _gufunc(p: Primitive, xs: list[Any], bat: list[bool], n: int, params: dict[str, Any]) -> Any:
    """NumPy's linalg functions, which broadcast over leading axes (``solve``'s vector ``b``:
    made a one-column matrix)."""
    vec = p.name == "solve" and bat[1] and xs[1].ndim == 2
    if vec:
        xs = [xs[0], ops.expand_dims(xs[1], -1)]
    rank = max(_rank(x, b) for x, b in zip(xs, bat))
    out = p.call(*[pad_batched(x, 1, rank) if b else x for x, b in zip(xs, bat)], **params)
    return out[..., 0] if vec else out


def _matmul(p: Primitive, xs: list[Any], bat: list[bool], n: int, params: dict[str, Any]) -> Any:
    """``a @ b``: a batched 1-D operand becomes a row (a) or column (b) matrix, then dropped."""
    a, b = xs
    row = bat[0] and a.ndim == 2
    col = bat[1] and b.ndim == 2
    if row:
        a = ops.expand_dims(a, -2)
    if col:
        b = ops.expand_dims(b, -1)
    rank = max(_rank(a, bat[0]), _rank(b, bat[1]))
    out = p.call(pad_batched(a, 1, rank) if bat[0] else a, pad_batched(b, 1, rank) if bat[1] else b)
    if col:
        out = out[..., 0]
    if row:  # (its axis is the last one unless b is a matrix)
        out = out[..., 0, :] if b.ndim >= 2 and not col else out[..., 0]
    return out


def _einsum(p: Primitive, xs: list[Any], bat: list[bool], n: int, params: dict[str, Any]) -> Any:
    """``einsum``: a fresh index letter for the batch axis of the batched operands."""
    spec = params["subscripts"].replace(" ", "")
    ins, _, out = spec.partition("->")
    terms = ins.split(",")
    if "->" not in spec:
        letters = [c for c in ins if c.isalpha()]
        out = ("..." if "..." in ins else "") + "".join(
            sorted(c for c in set(letters) if letters.count(c) == 1)
        )
    free = next(c for c in string.ascii_letters if c not in spec)
    terms = [free + t if b else t for t, b in zip(terms, bat)]
    new = dict(params, subscripts=",".join(terms) + "->" + free + out)
    return p.call(*xs, **new)


def _fftn(p: Primitive, xs: list[Any], bat: list[bool], n: int, params: dict[str, Any]) -> Any:
    """The n-D transforms over ``axes`` (None: the last ``len(s)`` axes, or every axis)."""
    ba = _bound(p, xs, params)
    nd = xs[0].ndim - 1
    s, axes = ba.arguments["s"], ba.arguments["axes"]
    if axes is None:
        axes = range(-(len(s) if s is not None else nd), 0)
    # (negative: the same axes of the batched array, the form the transpose rules expect)
    ba.arguments["axes"] = tuple(_shift(p, a, nd) - 1 - nd for a in axes)
    return _call_bound(p, ba)


def _pad(p: Primitive, xs: list[Any], bat: list[bool], n: int, params: dict[str, Any]) -> Any:
    """``pad``: no padding of the batch axis (batched fill values: a loop)."""
    ba = _bound(p, xs, params)
    if any(bat[1:]) or _scan(list(ba.arguments.values())[1:]) is not None:
        return _loop_unwrapped(p, xs, bat, n, params)
    nd = xs[0].ndim - 1
    width = np.broadcast_to(np.asarray(ba.arguments["pad_width"]), (nd, 2))
    ba.arguments["pad_width"] = tuple(map(tuple, np.concatenate([[[0, 0]], width]).tolist()))
    return _call_bound(p, ba)


_KINDS: dict[str, Callable[..., Any]] = {
    "map": _map,
    "lead": _lead,
    "reduce": _reduce,
    "flat": _flat,
    "gufunc": _gufunc,
    "matmul": _matmul,
    "einsum": _einsum,
    "fftn": _fftn,
    "pad": _pad,
}


# ----- transforms inside vmap ------------------------------------------------------------------
def _visible() -> _Level | None:
    for level in reversed(STATE.vmap_levels):
        if not level.hidden:
            return level
    return None


def _lower(who: str, *call: Any) -> Any:
    """The transforms' hook: ``who`` called inside vmap, lowered to the same transform on the
    whole batch at the innermost visible level (hidden from the transform while it runs).

    The batched computation's Jacobian is block-diagonal over the batch, so per-example
    gradients are those of the sum over the batch, taken with respect to the argument
    broadcast to the batch (an unbatched argument gets one gradient per example too)."""
    level = _visible()
    if level is None:
        return NotImplemented
    with _Shown(level, True):
        return _LOWER[who](level, *call)


def _map_tree(fn: Callable[[Any], Any], tree: Any) -> Any:
    leaves, d = tree_flatten(tree)
    return tree_unflatten(d, [fn(x) for x in leaves])


def _as_batched(level: _Level) -> Callable[[Any], Any]:
    return lambda t: Batched(t, level)


def _fulls(level: _Level) -> Callable[[Any], Any]:
    return lambda x: _full(x, level)


def _nums(argnums: int | Sequence[int]) -> tuple[int, ...]:
    return (argnums,) if isinstance(argnums, int) else tuple(argnums)


def _call_shown(level: _Level, f: Callable[..., Any], args: list[Any], kwargs: Any) -> Any:
    with _Shown(level, False):
        return f(*args, **kwargs)


def _unwrap_aux(aux: Any, level: _Level) -> tuple[Any, list[bool]]:
    leaves, d = tree_flatten(aux)
    flags = [_at(x, level) for x in leaves]
    return tree_unflatten(d, [x.inner if b else x for x, b in zip(leaves, flags)]), flags


def _rewrap_aux(aux: Any, flags: list[bool], level: _Level) -> Any:
    leaves, d = tree_flatten(aux)
    return tree_unflatten(d, [Batched(x, level) if b else x for x, b in zip(leaves, flags)])


def _scalar_batch(res: Any, level: _Level, who: str) -> Tensor:
    y = _full(res, level)
    if int(np.prod(y.shape[1:])) != 1:
        raise TypeError(
            f"{who}: f must return a scalar (one element) per example but returned per-example "
            f"shape {tuple(y.shape[1:])} inside ad.vmap; for non-scalar outputs use ad.jacrev, "
            "or ad.vjp with a cotangent"
        )
    return y


def _low_value_and_grad(
    level: _Level,
    f: Callable[..., Any],
    argnums: int | Sequence[int],
    has_aux: bool,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    nums = _nums(argnums)
    new = list(args)
    for i in nums:
        new[i] = _map_tree(_fulls(level), args[i])
    flags: list[bool] = []

    def g(*a: Any) -> Any:
        a = list(a)
        for i in nums:
            a[i] = _map_tree(_as_batched(level), a[i])
        res = _call_shown(level, f, a, kwargs)
        aux = None
        if has_aux:
            if not (isinstance(res, tuple | list) and len(res) == 2):
                raise TypeError("grad: with has_aux=True f must return a pair (output, aux)")
            res, aux = res
        y = _scalar_batch(res, level, "grad")
        aux, fl = _unwrap_aux(aux, level)
        flags[:] = fl
        return ops.sum(y), (y, aux)

    (_, (y, aux)), gs = value_and_grad(g, argnums, has_aux=True)(*new)
    grads = _map_tree(_as_batched(level), gs)
    value = Batched(y, level)
    if has_aux:
        return (value, _rewrap_aux(aux, flags, level)), grads
    return value, grads


def _low_vjp(level: _Level, f: Callable[..., Any], primals: tuple[Any, ...], has_aux: bool) -> Any:
    new = [_map_tree(_fulls(level), p) for p in primals]
    flags: list[bool] = []

    def g(*a: Any) -> Any:
        res = _call_shown(level, f, [_map_tree(_as_batched(level), x) for x in a], {})
        if has_aux:
            res, aux = res
            aux, fl = _unwrap_aux(aux, level)
            flags[:] = fl
            return _map_tree(_fulls(level), res), aux
        return _map_tree(_fulls(level), res)

    r = vjp(g, *new, has_aux=has_aux)
    back = r[1]

    def vjp_fn(cotangent: Any) -> tuple[Any, ...]:
        ct = _map_tree(_fulls(level), cotangent)
        with _Shown(level, True):
            gs = back(ct)
        return tuple(_map_tree(_as_batched(level), x) for x in gs)

    value = _map_tree(_as_batched(level), r[0])
    return (value, vjp_fn, _rewrap_aux(r[2], flags, level)) if has_aux else (value, vjp_fn)


def _low_jvp(
    level: _Level, f: Callable[..., Any], primals: tuple[Any, ...], tangents: tuple[Any, ...]
) -> Any:
    ps = [_map_tree(_fulls(level), p) for p in primals]
    ts = [_map_tree(_fulls(level), t) for t in tangents]

    def g(*a: Any) -> Any:
        res = _call_shown(level, f, [_map_tree(_as_batched(level), x) for x in a], {})
        return _map_tree(_fulls(level), res)

    out, tout = jvp(g, ps, ts)
    return _map_tree(_as_batched(level), out), _map_tree(_as_batched(level), tout)


def _low_hvp(
    level: _Level, f: Callable[..., Any], primals: tuple[Any, ...], tangents: tuple[Any, ...]
) -> Any:
    ps = [_map_tree(_fulls(level), p) for p in primals]
    ts = [_map_tree(_fulls(level), t) for t in tangents]
    values: list[Tensor] = []

    def g(*a: Any) -> Any:
        res = _call_shown(level, f, [_map_tree(_as_batched(level), x) for x in a], {})
        y = _scalar_batch(res, level, "hvp")
        values[:] = [y]
        return ops.sum(y)

    total, hv = hvp(g, ps, ts)
    y = values[0] if total.requires_grad else values[0].detach()
    return Batched(y, level), _map_tree(_as_batched(level), hv)


def _low_jacobian(
    level: _Level,
    f: Callable[..., Any],
    argnums: int | Sequence[int],
    mode: str,
    chunk: int | None,
    args: tuple[Any, ...],
) -> Any:
    nums = _nums(argnums)
    full = {i: _map_tree(_fulls(level), args[i]) for i in nums}
    new = list(args)
    if mode == "fwd":  # per-example shifts: the Jacobian comes out batch-first
        for i in nums:
            new[i] = _map_tree(lambda x: Tensor(np.zeros(x.shape[1:], _float(x.dtype))), full[i])
    else:  # the sum over the batch, w.r.t. the whole batch: batch axis after the output's
        for i in nums:
            new[i] = full[i]

    def g(*a: Any) -> Any:
        a = list(a)
        for i in nums:
            if mode == "fwd":
                xs, d = tree_flatten(full[i])
                ss = tree_flatten(a[i])[0]
                a[i] = tree_unflatten(d, [Batched(x + s, level) for x, s in zip(xs, ss)])
            else:
                a[i] = _map_tree(_as_batched(level), a[i])
        res = _call_shown(level, f, a, {})
        if mode == "fwd":
            return _map_tree(_fulls(level), res)
        return _map_tree(lambda o: ops.sum(_full(o, level), axis=0), res)

    jac = jacobian(g, argnums, mode, chunk)(*new)
    if mode == "fwd":
        return _map_tree(_as_batched(level), jac)
    in_nd = [x.ndim for i in nums for x in tree_flatten(full[i])[0]]
    blocks, d = tree_flatten(jac)
    out = []
    for k, blk in enumerate(blocks):
        out_nd = blk.ndim - in_nd[k % len(in_nd)]
        out.append(Batched(ops.moveaxis(blk, out_nd, 0), level))
    return tree_unflatten(d, out)


def _float(dt: np.dtype) -> np.dtype:
    return dt if dt.kind in "fc" else np.dtype(np.float64)


_LOWER: dict[str, Callable[..., Any]] = {
    "grad": _low_value_and_grad,
    "vjp": _low_vjp,
    "jvp": _low_jvp,
    "hvp": _low_hvp,
    "jacobian": _low_jacobian,
}


# ----- ad.vmap ---------------------------------------------------------------------------------
Axes = int | None | Sequence[Any] | dict[str, Any]


def vmap(
    f: Callable[..., Any], in_axes: Axes = 0, out_axes: Axes = 0, axis_size: int | None = None
) -> Callable[..., Any]:
    """Vectorize ``f`` over an axis of its arguments (JAX's ``vmap``): one batched pass.

    ``in_axes``: the batch axis of every argument (an int, negative counts from the end, or
    None: not batched, the same value for every example), or a tuple/list with one entry per
    positional argument, each an int, None or a pytree matching that argument's structure.
    ``out_axes``: where the batch axis goes in the outputs (an int, or None for outputs that
    do not depend on the batched inputs), as a pytree prefix of the output. ``axis_size``:
    the batch size when no argument is batched.

    Inside ``f`` a batched argument looks like one example (its per-example ``shape``); every
    op runs once on the whole batch, through the registry's batching rules. Transforms
    compose: ``vmap(grad(loss), in_axes=(None, 0))(w, X)`` gives per-example gradients in
    one vectorized pass, and ``grad`` of a vmapped function differentiates through it.
    Value-dependent Python control flow on a batched value (``if x > 0``, ``float(x)``)
    raises: use ``ad.where``, or a Python loop over the examples.

    Examples
    --------
    >>> import autodiffx as ad
    >>> x = ad.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    >>> ad.vmap(lambda v: v @ v)(x)
    tensor([ 5., 25., 61.])
    >>> loss = lambda w, xi: ad.sum(w * xi) ** 2
    >>> ad.vmap(ad.grad(loss), in_axes=(None, 0))(ad.tensor([1.0, 1.0]), x)
    tensor([[  6.,  12.],
            [ 42.,  56.],
            [110., 132.]])
    """

    def wrapped(*args: Any) -> Any:
        leaves, d = tree_flatten(list(args))
        axes = _in_axes(in_axes, args)
        n = _batch_size(leaves, axes, axis_size)
        level = _open(n)
        try:
            new = [
                leaf if ax is None else _enter(leaf, ax, level)
                for leaf, (ax, _) in zip(leaves, axes)
            ]
            out = f(*tree_unflatten(d, new))
            return _outputs(out, out_axes, level)
        finally:
            _close(level)

    wrapped.__name__ = f"vmap({getattr(f, '__name__', 'f')})"
    wrapped.__doc__ = getattr(f, "__doc__", None)
    return wrapped


def _in_axes(in_axes: Axes, args: tuple[Any, ...]) -> list[tuple[int | None, str]]:
    """Per leaf of the arguments (tree_flatten's order): its batch axis and its name."""
    if isinstance(in_axes, tuple | list):
        if len(in_axes) != len(args):
            raise ValueError(
                f"vmap: in_axes has {len(in_axes)} entries but f was called with {len(args)} "
                "positional arguments; give one entry (int, None or a pytree) per argument"
            )
        specs = list(in_axes)
    elif in_axes is None or isinstance(in_axes, int):
        specs = [in_axes] * len(args)
    else:
        raise TypeError(
            f"vmap: in_axes must be an int, None, or a tuple/list with one entry per argument, "
            f"got {type(in_axes).__name__}"
        )
    out: list[tuple[int | None, str]] = []
    for i, (a, s) in enumerate(zip(args, specs)):
        _prefix(a, s, f"argument {i}", out, "in_axes")
    return out


def _prefix(tree: Any, spec: Any, name: str, out: list[Any], what: str) -> None:
    """Broadcast the pytree prefix ``spec`` over ``tree``, one (axis, name) per leaf."""
    if spec is None or (isinstance(spec, int) and not isinstance(spec, bool)):
        out.extend((spec, f"{name}{p}") for p in _paths(tree))
        return
    if isinstance(tree, dict) and isinstance(spec, dict) and set(tree) == set(spec):
        for k in tree:
            _prefix(tree[k], spec[k], f"{name}[{k!r}]", out, what)
        return
    if isinstance(tree, tuple | list) and isinstance(spec, tuple | list) and len(tree) == len(spec):
        for j, (t, s) in enumerate(zip(tree, spec)):
            _prefix(t, s, f"{name}[{j}]", out, what)
        return
    raise ValueError(
        f"vmap: {what} entry {spec!r} for {name} does not match its structure "
        f"({type(tree).__name__}); give an int, None, or a pytree of the same structure"
    )


def _paths(tree: Any) -> list[str]:
    if isinstance(tree, tuple | list):
        return [f"[{j}]{p}" for j, c in enumerate(tree) for p in _paths(c)]
    if isinstance(tree, dict):
        return [f"[{k!r}]{p}" for k, c in tree.items() for p in _paths(c)]
    return [] if tree is None else [""]


def _batch_size(leaves: list[Any], axes: list[Any], axis_size: int | None) -> int:
    sizes = []
    for leaf, (ax, name) in zip(leaves, axes):
        if ax is None:
            continue
        shape = tuple(leaf.shape) if isinstance(leaf, Tensor) else np.shape(leaf)
        if not -len(shape) <= ax < len(shape):
            raise ValueError(
                f"vmap: in_axes {ax} is out of range for {name} of shape {shape} "
                f"(ndim {len(shape)})"
            )
        sizes.append((shape[ax], name, ax))
    if not sizes:
        if axis_size is None:
            raise ValueError(
                "vmap: no argument is batched (every in_axes is None); pass axis_size= to "
                "give the batch size"
            )
        return int(axis_size)
    n = sizes[0][0]
    if any(s != n for s, _, _ in sizes) or (axis_size is not None and axis_size != n):
        listed = ", ".join(f"{name} has size {s} along axis {ax}" for s, name, ax in sizes)
        extra = f", axis_size={axis_size}" if axis_size is not None else ""
        raise ValueError(f"vmap: the batched arguments disagree on the batch size: {listed}{extra}")
    return n


def _enter(leaf: Any, ax: int, level: _Level) -> Batched:
    if not isinstance(leaf, Tensor):
        leaf = Tensor(np.asarray(leaf))
    if ax % leaf.ndim:
        leaf = ops.moveaxis(leaf, ax, 0)
    return Batched(leaf, level)


def _outputs(out: Any, out_axes: Axes, level: _Level) -> Any:
    leaves, d = tree_flatten(out)
    axes: list[tuple[int | None, str]] = []
    _prefix(out, out_axes, "output", axes, "out_axes")
    res = []
    for leaf, (ax, name) in zip(leaves, axes):
        if ax is None:
            if _at(leaf, level):
                raise ValueError(
                    f"vmap: out_axes is None for {name}, but it is batched (it depends on a "
                    "batched argument); give it an int out_axes"
                )
            res.append(leaf)
            continue
        t = _full(leaf, level)
        if not -t.ndim <= ax < t.ndim:
            raise ValueError(
                f"vmap: out_axes {ax} is out of range for {name} of per-example shape "
                f"{tuple(t.shape[1:])} (the batch axis goes at -{t.ndim}..{t.ndim - 1})"
            )
        res.append(ops.moveaxis(t, 0, ax) if ax % t.ndim else t)
    return tree_unflatten(d, res)
