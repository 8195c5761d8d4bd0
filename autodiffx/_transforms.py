"""Transforms on the recorded graph: pytrees, grad, vjp, jvp, jacfwd, jacrev, jacobian, hessian."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import accumulate
from typing import Any

import numpy as np

from . import autograd
from ._graph import _toposort
from ._mode import COMPILE, FOREIGN, STATE, VMAP, enable_grad
from ._node import Node
from ._tensor import LeafWriteError, Tensor, version_counter, wrap
from .forward import alias, dual_level, make_dual, unpack_dual

# ----- pytrees -------------------------------------------------------------------------------
_LEAF = ("leaf",)


def tree_flatten(tree: Any) -> tuple[list[Any], Any]:
    """Leaves (Tensors, arrays, numbers) of nested tuples/lists/dicts, and the structure.

    Examples
    --------
    >>> leaves, treedef = tree_flatten({"w": 1.0, "b": (2.0, [3.0])})
    >>> leaves
    [1.0, 2.0, 3.0]
    >>> tree_unflatten(treedef, [10, 20, 30])
    {'w': 10, 'b': (20, [30])}
    """
    leaves: list[Any] = []
    return leaves, _walk(tree, leaves)


def _flat(tree: Any) -> tuple[list[Any], Any]:
    """:func:`tree_flatten`, without the walk for a single leaf (the common argument)."""
    if tree is None or isinstance(tree, tuple | list | dict):
        return tree_flatten(tree)
    return [tree], _LEAF


def _walk(t: Any, leaves: list[Any]) -> Any:
    # NOTE: module-level recursion, not a closure: a recursive closure is a reference cycle
    # that keeps the leaves alive until the garbage collector runs.
    if isinstance(t, tuple | list):
        return (type(t), [_walk(c, leaves) for c in t])
    if isinstance(t, dict):
        return (dict, list(t), [_walk(t[k], leaves) for k in t])
    if t is None:
        return (None,)
    leaves.append(t)
    return _LEAF


def tree_unflatten(treedef: Any, leaves: Sequence[Any]) -> Any:
    """Rebuild the structure of :func:`tree_flatten` around new leaves.

    Examples
    --------
    >>> tree_unflatten(tree_flatten([1, (2, 3)])[1], "abc")
    ['a', ('b', 'c')]
    """
    return _build(treedef, iter(leaves))


def _build(d: Any, it: Any) -> Any:
    if d is _LEAF:
        return next(it)
    if d[0] is None:
        return None
    if d[0] is dict:
        return {k: _build(c, it) for k, c in zip(d[1], d[2])}
    return d[0](_build(c, it) for c in d[1])


# ----- inputs and outputs ----------------------------------------------------------------------
def _argnums(argnums: int | Sequence[int], n: int, who: str) -> tuple[int, ...]:
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    for a in nums:
        if not -n <= a < n:
            raise ValueError(f"{who}: argnums {a} is out of range for {n} positional arguments")
    return tuple(a % n for a in nums)


class _Retired(Tensor):
    """A variable of a transform that has returned (see :func:`_retire`)."""

    __slots__ = ()


def _retire(xs: Sequence[Tensor]) -> None:
    """Mark the variables of a transform that returns: nothing outside it can ask for a
    derivative with respect to them, so a graph that reaches them does not make a result
    differentiable (:func:`_reaches_outside`)."""
    # NOTE: a class switch (same layout, ~50 ns), not a registry: the variable stays an
    # ordinary Tensor for anyone holding it, and needs no bookkeeping while it lives.
    for x in xs:
        if type(x) is Tensor:
            x.__class__ = _Retired


def _reaches_outside(outs: Sequence[Any], mine: Any = ()) -> bool:
    """Whether ``outs`` depend on a tensor that requires grad and is not a variable of this
    transform (``mine``) or of a transform that has returned: a closed-over parameter, an
    input differentiated from outside, a live outer transform's variable. Then the results
    keep their graph (they stay differentiable); otherwise they are detached."""
    if not any(isinstance(o, Tensor) and o._rg for o in outs):
        return False
    return _walk_inside(outs, set(mine))[0]


def _walk_inside(outs: Sequence[Any], mine: set[Any]) -> tuple[bool, list[Node] | None]:
    """:func:`_reaches_outside` and, when every leaf ``outs`` reach is one of ``mine``, their
    nodes, producers first: a reverse pass's plan, with nothing to prune (every node leads
    to a variable). One walk for both."""
    roots: list[Node] = []
    found: set[Any] = set()
    for o in outs:
        if isinstance(o, Tensor) and o._rg:
            if o._node is None:
                found.add(o)
            else:
                roots.append(o._node)
    order = _toposort(roots, leaves=found)
    others = [c for c in found if c not in mine]
    if any(type(c) is not _Retired for c in others):
        return True, None
    return False, (None if others else order)


def _new_variable(data: np.ndarray) -> Tensor:
    """A fresh leaf that requires grad, around ``data`` (not copied)."""
    x = wrap(data)
    x._rg = True
    return x


def _variable(leaf: Any, who: str, where: str) -> Tensor:
    """A Tensor to differentiate with respect to, still connected to any outer transform
    (an alias of ``leaf`` when it requires grad or carries tangents)."""
    base = leaf if isinstance(leaf, Tensor) else Tensor(np.asarray(leaf))
    if base.dtype.kind not in "fc":
        if base.dtype.kind not in "iub":
            raise TypeError(f"{who}: {where} has dtype {base.dtype}, which is not numeric")
        base = base.astype(np.float64)
    if base._rg or base._tan:
        with enable_grad():
            x = alias(base)
        if not x.requires_grad:
            x.requires_grad_()
        return x
    return _new_variable(base.data)


def _fast_variable(a: Any) -> Tensor | None:
    """The variable for a lone float array argument when no mode is on (no ``no_grad``, dual
    level, anomaly detection, trace or scope) and nothing outside differentiates it; None
    sends the transform down its general path."""
    if STATE.mode:
        return None
    if type(a) is Tensor:
        if a._rg or a._tan is not None:
            return None
        a = a.data
    elif type(a) is not np.ndarray:
        return None
    return _new_variable(a) if a.dtype.kind in "fc" else None


def _prepare_fast(
    args: tuple[Any, ...], nums: tuple[int, ...], who: str
) -> tuple[list[Any], list, list]:
    """:func:`_prepare`, without its walks for one array argument (:func:`_fast_variable`)."""
    x = _fast_variable(args[0]) if len(args) == 1 and nums == (0,) else None
    if x is None:
        return _prepare(args, nums, who)
    return [x], [[x]], [_LEAF]


def _call_fast(
    f: Callable[..., Any], args: list[Any], leaves: list[list[Tensor]], nums: Any, who: str
) -> Any:
    """:func:`_call` with recording on (``enable_grad``); :func:`_call1` for a lone leaf
    variable never written (version 0) when it is on."""
    x = args[0] if len(args) == 1 else None
    if type(x) is Tensor and x._node is None and x._vc is None and not STATE.mode:
        return _call1(f, x, who)
    with enable_grad():
        return _call(f, args, {}, leaves, nums, who)


def _plan(outs: list[Tensor], flat: list[Tensor]) -> tuple[bool, list[Node] | None]:
    """Whether ``outs`` reach outside the transform (:func:`_reaches_outside`), and the plan
    of a reverse pass from them to the variables ``flat`` (:func:`_walk_inside`; None: the
    engine plans and prunes)."""
    record, order = _walk_inside(outs, set(flat))
    if order is not None and any(x._node is not None for x in flat):
        order = None  # (a variable aliasing an outer tensor is no leaf: prune)
    return record, order


def _call1(f: Callable[..., Any], x: Tensor, who: str) -> Any:
    """:func:`_call` for the lone fresh variable of :func:`_fast_variable`."""
    try:
        res = f(x)
    except LeafWriteError as e:
        if x is e.leaf:
            raise RuntimeError(_written(who, 0, 0, x)) from e
        raise
    if x._vc is not None and x._vc[0]:  # (written under no_grad: a leaf refuses otherwise)
        raise RuntimeError(_written(who, 0, 0, x))
    return res


def _prepare(
    args: tuple[Any, ...], nums: tuple[int, ...], who: str
) -> tuple[list[Any], list, list]:
    """Replace the differentiated arguments by variables; return (args, leaves, defs)."""
    new = list(args)
    leaves_per: list[list[Tensor]] = []
    defs = []
    for a in nums:
        leaves, d = tree_flatten(args[a])
        if not leaves:
            raise ValueError(f"{who}: argument {a} has no array leaves to differentiate")
        xs = [_variable(leaf, who, f"argument {a} (leaf {j})") for j, leaf in enumerate(leaves)]
        new[a] = tree_unflatten(d, xs)
        leaves_per.append(xs)
        defs.append(d)
    return new, leaves_per, defs


def _call(
    f: Callable[..., Any],
    args: Sequence[Any],
    kwargs: dict[str, Any],
    leaves: list[list[Tensor]],
    nums: Sequence[int],
    who: str,
) -> Any:
    """``f(*args, **kwargs)``, refusing in-place writes into the variables (``leaves[k]``
    holds those of argument ``nums[k]``).

    A reverse-mode transform differentiates with respect to the value passed in; written in
    place, the variable would stand for the written value instead. A leaf variable refuses
    the write itself; one an outer transform sees is not a leaf, so its version is compared.
    """
    stamps = [x._version for xs in leaves for x in xs]
    try:
        res = f(*args, **kwargs)
    except LeafWriteError as e:
        for a, xs in zip(nums, leaves):
            for j, x in enumerate(xs):
                if x is e.leaf:
                    raise RuntimeError(_written(who, a, j, x)) from e
        raise
    k = 0
    for a, xs in zip(nums, leaves):
        for j, x in enumerate(xs):
            if x._version != stamps[k]:
                raise RuntimeError(_written(who, a, j, x))
            k += 1
    return res


def _written(who: str, a: int, j: int, x: Tensor) -> str:
    return (
        f"{who}: f modifies its argument {a} (leaf {j}, shape {x.shape}) in place, but {who} "
        "differentiates with respect to the value passed in, which the write would replace; "
        "write into a copy (x = x.copy(), then x[...] = ... or x *= ...) or make a new "
        "tensor (x = x * 3)"
    )


def _as_output(y: Any, who: str) -> Tensor:
    if isinstance(y, Tensor):
        return y
    if isinstance(y, np.ndarray | float | int | np.generic):
        return Tensor(np.asarray(y, dtype=float))
    raise TypeError(f"{who}: f must return a Tensor (or a pytree of them), got {type(y).__name__}")


def _zeros_for(x: Tensor, batch: tuple[int, ...] = ()) -> Tensor:
    return Tensor(np.zeros(batch + x.shape, x.dtype))


def _finish(t: Tensor, keep: bool) -> Tensor:
    """``t``, or a detached copy when nothing outside the transform differentiates it."""
    if keep or not (t._rg or t._tan):
        return t
    d = wrap(t.data)  # (t.detach(), without the checks of Tensor())
    d._vc = version_counter(t)
    return d


# ----- grad ------------------------------------------------------------------------------------
def value_and_grad(
    f: Callable[..., Any], argnums: int | Sequence[int] = 0, has_aux: bool = False
) -> Callable[..., Any]:
    """``f`` returning ``(value, gradient)`` (``((value, aux), gradient)`` with ``has_aux``).

    The gradient has the structure of the argument(s) selected by ``argnums`` (a tuple of
    them when ``argnums`` is a tuple). Transforms compose: ``grad(grad(f))``.

    Examples
    --------
    >>> import autodiffx as ad
    >>> v, g = ad.value_and_grad(lambda x: ad.sum(x ** 3))(ad.tensor([1.0, 2.0]))
    >>> v, g
    (tensor(9.), tensor([ 3., 12.]))
    """

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        return _value_and_grad(f, argnums, has_aux, args, kwargs)

    wrapped.__name__ = f"value_and_grad({getattr(f, '__name__', 'f')})"
    return wrapped


def _value_and_grad(
    f: Callable[..., Any],
    argnums: int | Sequence[int],
    has_aux: bool,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    """A call of ``value_and_grad(f, argnums, has_aux)`` (and of ``grad``)."""
    who = "grad"
    if type(argnums) is int and argnums == 0 and len(args) == 1 and not (kwargs or has_aux):
        x = _fast_variable(args[0])
        if x is not None:  # (the common case: one array, nothing outside watching)
            try:
                y, gs, _ = _value_and_grads(_as_output(_call1(f, x, who), who), [x], who)
            finally:
                x.__class__ = _Retired
            return y, gs[0]
    if STATE.mode & VMAP:  # inside ad.vmap: lowered to the whole batch (autodiffx._vmap)
        low = STATE.vmap_lower("grad", f, argnums, has_aux, args, kwargs)
        if low is not NotImplemented:
            return low
    nums = _argnums(argnums, len(args), who)
    new, leaves, defs = _prepare(args, nums, who)
    flat = [x for xs in leaves for x in xs]
    try:
        with enable_grad():
            res = _call(f, new, kwargs, leaves, nums, who)
        if has_aux:
            if not (isinstance(res, tuple | list) and len(res) == 2):
                raise TypeError(f"{who}: with has_aux=True f must return a pair (output, aux)")
            res, aux = res
        y, gs, keep = _value_and_grads(_as_output(res, who), flat, who)
    finally:
        _retire(flat)
    out = []
    k = 0
    for xs, d in zip(leaves, defs):
        out.append(tree_unflatten(d, gs[k : k + len(xs)]))
        k += len(xs)
    grads = out[0] if isinstance(argnums, int) else tuple(out)
    if has_aux:
        return (y, _finish_tree(aux, keep, flat)), grads
    return y, grads


def _value_and_grads(y: Tensor, flat: list[Tensor], who: str) -> tuple[Tensor, list, bool]:
    """The value and the gradients of a scalar ``y`` recorded from the variables ``flat``, and
    whether they are kept attached (differentiated from outside this transform)."""
    if y.data.size != 1:
        raise TypeError(
            f"{who}: f must return a scalar (one element) but returned shape {y.shape}; for "
            "non-scalar outputs use ad.jacobian / ad.jacrev, or ad.vjp with a cotangent"
        )
    fwd = bool(STATE.levels)
    record = False
    if y._rg:
        # The graph is kept only for a reverse pass outside (record: y depends on a tensor
        # that requires grad outside); forward mode over this gradient (hessian, jvp of
        # grad) needs the rules evaluated on Tensors so that tangents flow through them,
        # but reads the tangents during this call only.
        record, order = _plan([y], flat)
        gs = autograd._grad(
            y,
            flat,
            retain_graph=record,
            create_graph=record or fwd,
            allow_unused=True,
            record=record,
            order=order,
        )
    else:
        gs = (None,) * len(flat)
    keep = record or fwd
    grads = [_zeros_for(x) if g is None else _finish(g, keep) for g, x in zip(gs, flat)]
    return _finish(y, keep), grads, keep


def _finish_tree(tree: Any, keep: bool, mine: list[Tensor]) -> Any:
    """:func:`_finish` on every Tensor of a pytree (``has_aux`` outputs), kept attached also
    when they depend on a tensor outside the transform that the differentiated output does
    not depend on."""
    if keep:
        return tree
    leaves, d = tree_flatten(tree)
    if _reaches_outside(leaves, mine):
        return tree
    return tree_unflatten(d, [_finish(t, False) if isinstance(t, Tensor) else t for t in leaves])


def grad(
    f: Callable[..., Any], argnums: int | Sequence[int] = 0, has_aux: bool = False
) -> Callable[..., Any]:
    """The gradient of a scalar function ``f`` with respect to argument(s) ``argnums``.

    Examples
    --------
    >>> import autodiffx as ad
    >>> df = ad.grad(lambda x: x ** 3)
    >>> df(2.0), ad.grad(df)(2.0), ad.grad(ad.grad(df))(2.0)
    (tensor(12.), tensor(12.), tensor(6.))
    """

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        value, g = _value_and_grad(f, argnums, has_aux, args, kwargs)
        return (g, value[1]) if has_aux else g

    wrapped.__name__ = f"grad({getattr(f, '__name__', 'f')})"
    return wrapped


# ----- vjp / jvp -------------------------------------------------------------------------------
def vjp(f: Callable[..., Any], *primals: Any, has_aux: bool = False) -> tuple[Any, ...]:
    """``(f(*primals), vjp_fn)``; ``vjp_fn(cotangent)`` gives one gradient per primal.

    ``vjp_fn`` may be called many times (the graph is kept while it lives). It is
    differentiable in its cotangent, in every mode (Gauss-Newton products).

    Examples
    --------
    >>> import autodiffx as ad
    >>> y, back = ad.vjp(lambda x: x * x, ad.tensor([1.0, 2.0]))
    >>> back(ad.tensor([1.0, 10.0]))
    (tensor([ 2., 40.]),)
    >>> ad.jacobian(lambda c: back(c)[0])(ad.tensor([1.0, 10.0]))
    tensor([[2., 0.],
            [0., 4.]])
    """
    who = "vjp"
    if STATE.mode & VMAP:  # inside ad.vmap: lowered to the whole batch (autodiffx._vmap)
        low = STATE.vmap_lower("vjp", f, primals, has_aux)
        if low is not NotImplemented:
            return low  # type: ignore[no-any-return]
    nums = tuple(range(len(primals)))
    new, leaves, defs = _prepare_fast(primals, nums, who)
    flat = [x for xs in leaves for x in xs]
    try:
        res = _call_fast(f, new, leaves, nums, who)
        if has_aux:
            res, aux = res
        out_leaves, out_def = _flat(res)
        outs = [_as_output(o, who) for o in out_leaves]
        record, order = _plan(outs, flat)
    finally:
        _retire(flat)
    keep = record or bool(STATE.levels)

    def vjp_fn(cotangent: Any) -> tuple[Any, ...]:
        gs = _pull_back(outs, flat, cotangent, record, order)
        result, k = [], 0
        for xs, d in zip(leaves, defs):
            result.append(tree_unflatten(d, gs[k : k + len(xs)]))
            k += len(xs)
        return tuple(result)

    value = tree_unflatten(out_def, [_finish(o, keep) for o in outs])
    return (value, vjp_fn, _finish_tree(aux, keep, flat)) if has_aux else (value, vjp_fn)


def _pull_back(
    outs: list[Tensor], flat: list[Tensor], cotangent: Any, record: bool, order: Any = None
) -> list:
    """``vjp_fn``: the cotangents of the variables ``flat`` given those of ``outs``.

    Differentiable in the cotangent (it may require grad or carry tangents: Gauss-Newton
    products, Jacobians of ``vjp_fn``) and, with ``record``, in the tensors ``f`` closed over.
    """
    cts, _ = _flat(cotangent)
    if len(cts) != len(outs):
        raise ValueError(f"vjp: got {len(cts)} cotangent leaves for {len(outs)} outputs")
    used, seeds = [], []
    for i, (o, c) in enumerate(zip(outs, cts)):
        c = c if isinstance(c, Tensor) else wrap(np.asarray(c, dtype=o.dtype))
        if c.shape != o.shape:
            raise ValueError(
                f"vjp: cotangent {i} has shape {c.shape} but output {i} has shape {o.shape}"
            )
        if o._rg:
            used.append(o)
            seeds.append(c)
            record = record or c._rg
    fwd = bool(STATE.levels)
    gs: Sequence[Any] = (None,) * len(flat)
    if used:
        if not (record or fwd):
            seeds = [c.data for c in seeds]
        gs = autograd._grad(
            used,
            flat,
            seeds,
            retain_graph=True,
            create_graph=record or fwd,
            allow_unused=True,
            record=record,
            order=order if len(used) == len(outs) else None,
        )
    keep = record or fwd
    return [_zeros_for(x) if g is None else _finish(g, keep) for g, x in zip(gs, flat)]


def _dual_pairs(
    primals: tuple[Any, ...], tangents: tuple[Any, ...], who: str
) -> tuple[list[tuple[Any, list[tuple[Any, Tensor]]]], bool]:
    """Validate primals against tangents leaf by leaf.

    Returns per argument its structure and (primal data, tangent Tensor) leaves, and whether
    an outer transform sees any of them (open dual levels, leaves that require grad or carry
    tangents).
    """
    if len(primals) != len(tangents):
        raise ValueError(f"{who}: {len(primals)} primals but {len(tangents)} tangents")
    outer = bool(STATE.levels)
    pairs = []
    for i, (p, t) in enumerate(zip(primals, tangents)):
        pl, pd = _flat(p)
        tl, _ = _flat(t)
        if len(pl) != len(tl):
            raise ValueError(f"{who}: tangent {i} does not have the structure of primal {i}")
        leaves = []
        for j, (pv, tv) in enumerate(zip(pl, tl)):
            if isinstance(pv, Tensor):
                outer = outer or pv._rg or bool(pv._tan)
            else:
                pv = _const(pv, who, "argument", i, j)
            if pv.dtype.kind not in "fc":
                pv = pv.astype(np.float64)
            if isinstance(tv, Tensor):
                outer = outer or tv._rg or bool(tv._tan)
            else:
                tv = _const(tv, who, "the tangent of argument", i, j)
            if tv.shape != pv.shape:
                raise ValueError(
                    f"{who}: the tangent of argument {i} (leaf {j}) has shape {tv.shape} but "
                    f"the primal has shape {pv.shape}"
                )
            if tv.dtype.kind not in "fciub":
                raise TypeError(
                    f"{who}: the tangent of argument {i} (leaf {j}) has dtype {tv.dtype}"
                )
            leaves.append((pv, tv))
        pairs.append((pd, leaves))
    return pairs, outer


def _const(value: Any, who: str, what: str, i: int, j: int) -> Tensor:
    """A constant Tensor around an array or number (the checks of ``Tensor()``, less cost)."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "fciub":
        raise TypeError(f"{who}: {what} {i} (leaf {j}) has dtype {arr.dtype}, which is not numeric")
    return wrap(arr)


def _dual_args(
    pairs: list[tuple[Any, list[tuple[Any, Tensor]]]], make: Callable[[Tensor, Tensor], Tensor]
) -> tuple[list[Any], list[list[Tensor]]]:
    """The arguments with each leaf made dual by ``make(primal, tangent)``, and those leaves."""
    args, leaves = [], []
    for pd, pts in pairs:
        duals = [make(p, t) for p, t in pts]
        args.append(duals[0] if pd is _LEAF else tree_unflatten(pd, duals))
        leaves.append(duals)
    return args, leaves


def jvp(f: Callable[..., Any], primals: Sequence[Any], tangents: Sequence[Any]) -> tuple[Any, Any]:
    """``(f(*primals), J·tangents)`` in ONE forward pass carrying dual numbers.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.jvp(ad.sin, (ad.tensor(0.0),), (ad.tensor(2.0),))
    (tensor(0.), tensor(2.))
    """
    who = "jvp"
    primals, tangents = tuple(primals), tuple(tangents)
    pt = _plain_pair(primals, tangents)  # (the common case: one array and its tangent)
    if pt is None:
        if STATE.mode & VMAP:  # inside ad.vmap: lowered to the whole batch (autodiffx._vmap)
            low = STATE.vmap_lower("jvp", f, primals, tangents)
            if low is not NotImplemented:
                return low  # type: ignore[no-any-return]
        pairs, _ = _dual_pairs(primals, tangents, who)
    fwd = bool(STATE.levels)
    with dual_level() as lvl:
        args = [_dual_leaf(*pt, lvl, 0)] if pt is not None else _dual_args(pairs, make_dual)[0]
        res = f(*args)
        out_leaves, out_def = _flat(res)
        ps, ts = [], []
        for o in out_leaves:
            o = _as_output(o, who)
            p, t = _unpack(o, lvl)
            ps.append(p)
            ts.append(_zeros_for(o) if t is None else t)
    if not fwd:
        for t in ps + ts:
            if t._rg or t._tan:  # (else, the common case, nothing to detach or walk)
                ps, ts = _detached_unless_outside(ps), _detached_unless_outside(ts)
                break
    return tree_unflatten(out_def, ps), tree_unflatten(out_def, ts)


def _plain_pair(primals: tuple[Any, ...], tangents: tuple[Any, ...]) -> Any:
    """``(primal, tangent)`` arrays for one float array primal and a tangent of its shape and
    dtype, both constants (no tensor that requires grad or carries tangents), when no mode
    is on; else None (the general path)."""
    if len(primals) != 1 or len(tangents) != 1 or STATE.mode:
        return None
    p, t = _plain(primals[0]), _plain(tangents[0])
    if p is None or t is None or p.dtype.kind not in "fc":
        return None
    return (p, t) if t.shape == p.shape and t.dtype == p.dtype else None


def _plain(a: Any) -> np.ndarray | None:
    """The array of an ndarray or of a constant Tensor (no grad, no tangents), else None."""
    if type(a) is np.ndarray:
        return a
    if type(a) is Tensor and not a._rg and a._tan is None:
        return a.data
    return None


def _dual_leaf(p: np.ndarray, t: np.ndarray, lvl: int, nb: int) -> Tensor:
    """``make_dual(p, t, batched=nb)`` of a constant float array ``p`` and a tangent of its
    dtype: nothing to record, so the copy that ``alias`` makes is made directly."""
    STATE.level_nb[lvl] = nb
    x = wrap(np.array(p, copy=True))
    x._tan = {lvl: wrap(t)}
    return x


def _unpack(o: Tensor, lvl: int) -> tuple[Tensor, Tensor | None]:
    """``unpack_dual(o)``; for an output carrying at most a tangent at ``lvl`` and not
    requiring grad the primal's copy is made directly (``alias`` would record nothing)."""
    tan = o._tan
    if o._rg or (tan and (len(tan) > 1 or lvl not in tan)) or STATE.mode & (COMPILE | FOREIGN):
        return unpack_dual(o)
    return wrap(np.array(o.data, copy=True)), None if tan is None else tan.get(lvl)


def _detached_unless_outside(ts: list[Tensor]) -> list[Tensor]:
    """Results of a forward-mode transform with no dual level open outside it: detached,
    unless they depend on a tensor outside it that requires grad (a closed-over one)."""
    if _reaches_outside(ts):
        return ts
    return [_finish(t, False) for t in ts]


# ----- Jacobians -------------------------------------------------------------------------------
def _basis(n: int, start: int, stop: int, dtype: np.dtype) -> np.ndarray:
    """Rows start..stop of the n×n identity."""
    e = np.zeros((stop - start, n), dtype)
    e[np.arange(stop - start), np.arange(start, stop)] = 1
    return e


def _jac_fwd(
    f: Callable[..., Any], args: tuple[Any, ...], nums: tuple[int, ...], chunk: int | None
) -> tuple[Any, Any, list[Any], list[Any]]:
    """Columns of the Jacobian by batched tangents; returns (out_def, outs, blocks, in_defs)."""
    flat_in = []
    in_defs = []
    fwd = bool(STATE.levels)
    for a in nums:
        leaves, d = tree_flatten(args[a])
        in_defs.append((d, len(leaves)))
        for leaf in leaves:
            t = leaf if isinstance(leaf, Tensor) else Tensor(np.asarray(leaf))
            flat_in.append(t.astype(np.float64) if t.dtype.kind not in "fc" else t)
    sizes = [x.size for x in flat_in]
    n = sum(sizes)
    offsets = list(accumulate([0, *sizes]))  # (np.cumsum: ~1 µs of Python)
    chunk = chunk or n
    cols: list[list[Tensor]] | None = None
    out_def = outs = None
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        with dual_level():
            new = list(args)
            duals = []
            for x, o0, o1 in zip(flat_in, offsets[:-1], offsets[1:]):
                e = _basis(n, start, stop, x.dtype)[:, o0:o1].reshape((stop - start, *x.shape))
                duals.append(make_dual(x, e, batched=True))
            k = 0
            for a, (d, m) in zip(nums, in_defs):
                new[a] = tree_unflatten(d, duals[k : k + m])
                k += m
            res = f(*new)
            leaves, out_def = tree_flatten(res)
            ps, ts = [], []
            for o in leaves:
                o = _as_output(o, "jacfwd")
                p, t = unpack_dual(o)
                ps.append(p)
                ts.append(_zeros_for(o, (stop - start,)) if t is None else t)
        outs = ps
        if cols is None:
            cols = [[] for _ in ts]
        for c, t in zip(cols, ts):
            c.append(t)
    assert cols is not None
    assert outs is not None
    # Attached if differentiated from outside (see _reaches_outside), or a level is open.
    keep = fwd or _reaches_outside(outs + [t for c in cols for t in c])
    # t: (columns, *out_shape) -> out_shape + (columns,) -> split per input leaf
    blocks = []
    for c, o in zip(cols, outs):
        c = [_finish(t, keep) for t in c]
        t = c[0] if len(c) == 1 else _concat(c)
        tt = _moveaxis0_last(t)
        row = []
        for x, o0, o1 in zip(flat_in, offsets[:-1], offsets[1:]):
            row.append(tt[..., o0:o1].reshape(o.shape + x.shape))
        blocks.append(row)
    return out_def, [_finish(o, keep) for o in outs], blocks, in_defs


def _jac_fwd_one(f: Callable[..., Any], p: np.ndarray) -> Any:
    """:func:`_jac_fwd` and :func:`_assemble` for one constant float array ``p`` and no
    mode on: one batched pass, and a constant Jacobian rearranged on its array."""
    n = p.size
    with dual_level() as lvl:
        x = _dual_leaf(p, np.eye(n, dtype=p.dtype).reshape((n, *p.shape)), lvl, 1)
        out_leaves, out_def = _flat(f(x))
        outs, cols = [], []
        for o in out_leaves:
            o = _as_output(o, "jacfwd")
            po, t = _unpack(o, lvl)
            outs.append(po)
            cols.append(_zeros_for(o, (n,)) if t is None else t)
    keep = _reaches_outside(outs + cols)
    blocks = []
    for t, o in zip(cols, outs):
        shape = o.shape + p.shape
        if keep or t._rg or t._tan:
            blocks.append(_moveaxis0_last(_finish(t, keep)).reshape(shape))
        else:
            d = t.data  # (np.moveaxis(d, 0, -1), without its ~2 µs of Python)
            blocks.append(wrap(d.transpose((*range(1, d.ndim), 0)).reshape(shape)))
    return tree_unflatten(out_def, blocks)


def _concat(ts: list[Tensor]) -> Tensor:
    from .ops import concatenate

    return concatenate(ts, axis=0)


def _moveaxis0_last(t: Tensor) -> Tensor:
    from .ops import moveaxis

    return moveaxis(t, 0, -1)


def _jac_rev(
    f: Callable[..., Any],
    args: tuple[Any, ...],
    nums: tuple[int, ...],
    chunk: int | None,
    fwd_above: int | None = None,
) -> tuple[Any, Any, list[Any], list[Any]] | None:
    """Rows of the Jacobian by batched cotangents through one recorded graph.

    With ``fwd_above`` (``jacobian``'s "auto"): None, before any backward pass, when the
    outputs have more elements than that (forward mode is then the cheaper one).
    """
    new, leaves, defs = _prepare_fast(args, nums, "jacrev")
    flat = [x for xs in leaves for x in xs]
    try:
        res = _call_fast(f, new, leaves, nums, "jacrev")
        out_leaves, out_def = tree_flatten(res)
        outs = [_as_output(o, "jacrev") for o in out_leaves]
        if fwd_above is not None and sum(o.size for o in outs) > fwd_above:
            return None
        record, order = _plan(outs, flat)
        keep = record or bool(STATE.levels)
        full = _jac_rows(outs, flat, chunk, record, keep, order)  # (m, *x.shape) per input
    finally:
        _retire(flat)
    in_defs = [(d, len(xs)) for d, xs in zip(defs, leaves)]
    offsets = list(accumulate([0, *[o.data.size for o in outs]]))
    blocks = []
    for i, o in enumerate(outs):
        blocks.append(
            [_rows(g, offsets[i], offsets[i + 1], o.shape + x.shape) for g, x in zip(full, flat)]
        )
    values = [_finish(o, keep) for o in outs]
    return out_def, values, blocks, in_defs


def _rows(g: Tensor, start: int, stop: int, shape: tuple[int, ...]) -> Tensor:
    """``g[start:stop].reshape(shape)``, on the array when ``g`` is a constant."""
    if g._rg or g._tan or STATE.mode & (COMPILE | FOREIGN):  # (compile records the ops)
        return g[start:stop].reshape(shape)
    return wrap(g.data[start:stop].reshape(shape))


def _jac_rows(
    outs: list[Tensor],
    flat: list[Tensor],
    chunk: int | None,
    record: bool,
    keep: bool,
    order: Any = None,
) -> list[Any]:
    """Per variable, the Jacobian rows of all outputs, (m, *x.shape), in chunks of basis
    cotangents; recorded when ``record``, rules on Tensors when ``keep``."""
    sizes = [o.size for o in outs]
    m = sum(sizes)
    offsets = list(accumulate([0, *sizes]))  # (np.cumsum: ~1 µs of Python)
    chunk = chunk or m
    used = [i for i, o in enumerate(outs) if o._rg]
    rows: list[list[Any]] = [[] for _ in flat]
    for start in range(0, m, chunk):
        stop = min(m, start + chunk)
        gs: Sequence[Any] = (None,) * len(flat)
        if used:
            seeds = []
            for i in used:
                o = outs[i]
                e = _basis(m, start, stop, o.dtype)[:, offsets[i] : offsets[i + 1]]
                seeds.append(e.reshape((stop - start, *o.shape)))
            # The graph is kept for the next chunk and for an outer reverse pass only.
            retain = record or stop < m
            gs = autograd._grad(
                [outs[i] for i in used],
                flat,
                seeds,
                retain_graph=retain,
                create_graph=keep,
                allow_unused=True,
                is_grads_batched=True,
                record=record,
                order=order if len(used) == len(outs) else None,
            )
        for r, g, x in zip(rows, gs, flat):
            r.append(_zeros_for(x, (stop - start,)) if g is None else _finish(g, keep))
    return [r[0] if len(r) == 1 else _concat(r) for r in rows]


def _assemble(
    out_def: Any, blocks: list[list[Tensor]], in_defs: list[Any], argnums: int | Sequence[int]
) -> Any:
    per_out = []
    for row in blocks:
        parts, k = [], 0
        for d, n in in_defs:
            parts.append(tree_unflatten(d, row[k : k + n]))
            k += n
        per_out.append(parts[0] if isinstance(argnums, int) else tuple(parts))
    return tree_unflatten(out_def, per_out)


def jacfwd(f: Callable[..., Any], argnums: int | Sequence[int] = 0) -> Callable[..., Any]:
    """Jacobian by forward mode: all basis tangents pushed through ``f`` in one batched pass.

    The result has shape ``out.shape + in.shape`` (pytrees: the output structure holding
    the input structure).

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.jacfwd(lambda x: x ** 2)(ad.tensor([1.0, 3.0]))
    tensor([[2., 0.],
            [0., 6.]])
    """

    return _jacobian(f, argnums, "fwd", None, "jacfwd")


def jacrev(f: Callable[..., Any], argnums: int | Sequence[int] = 0) -> Callable[..., Any]:
    """Jacobian by reverse mode: all basis cotangents pulled back in one batched pass.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.jacrev(lambda x: ad.sum(x) * x)(ad.tensor([1.0, 2.0]))
    tensor([[4., 1.],
            [2., 5.]])
    """

    return _jacobian(f, argnums, "rev", None, "jacrev")


def jacobian(
    f: Callable[..., Any],
    argnums: int | Sequence[int] = 0,
    mode: str = "auto",
    chunk_size: int | None = None,
) -> Callable[..., Any]:
    """Jacobian of ``f``; ``mode`` "fwd", "rev" or "auto" (forward when outputs outnumber
    inputs). Basis vectors go through in vectorized chunks of ``chunk_size`` (None: all).

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.jacobian(lambda x: ad.exp(x), chunk_size=1)(ad.tensor([0.0, 1.0])).shape
    (2, 2)
    """
    if mode not in ("auto", "fwd", "rev"):
        raise ValueError(f"jacobian: mode must be 'auto', 'fwd' or 'rev', not {mode!r}")
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"jacobian: chunk_size must be a positive integer, got {chunk_size}")
    return _jacobian(f, argnums, mode, chunk_size, "jacobian")


def _jacobian(
    f: Callable[..., Any], argnums: int | Sequence[int], mode: str, chunk: int | None, who: str
) -> Callable[..., Any]:
    """The Jacobian transform shared by jacfwd, jacrev and jacobian."""

    def wrapped(*args: Any) -> Any:
        if mode == "fwd" and chunk is None and type(argnums) is int and len(args) == 1:
            p = _plain(args[0])
            if p is not None and not STATE.mode and p.dtype.kind in "fc":
                return _jac_fwd_one(f, p)  # (the common case: one array, no mode on)
        if STATE.mode & VMAP:  # inside ad.vmap: lowered to the whole batch (autodiffx._vmap)
            low = STATE.vmap_lower("jacobian", f, argnums, mode, chunk, args)
            if low is not NotImplemented:
                return low
        nums = _argnums(argnums, len(args), who)
        if mode == "fwd":
            jac = _jac_fwd(f, args, nums, chunk)
        else:
            # "auto": reverse unless the outputs outnumber the inputs, which the recorded
            # forward pass tells before any backward pass (then f runs again, forward).
            n_in = None
            if mode == "auto":
                n_in = sum(np.size(leaf) for a in nums for leaf in tree_flatten(args[a])[0])
            jac = _jac_rev(f, args, nums, chunk, n_in) or _jac_fwd(f, args, nums, chunk)
        out_def, _, blocks, in_defs = jac
        return _assemble(out_def, blocks, in_defs, argnums)

    return wrapped


def hessian(f: Callable[..., Any], argnums: int | Sequence[int] = 0) -> Callable[..., Any]:
    """Hessian of a scalar ``f``: forward-over-reverse, ``jacfwd(jacrev(f))``.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.hessian(lambda x: ad.sum(x ** 3))(ad.tensor([1.0, 2.0]))
    tensor([[ 6.,  0.],
            [ 0., 12.]])
    """
    return jacfwd(jacrev(f, argnums), argnums)
