"""Function transforms: grad, value_and_grad, vjp, jvp, jacfwd, jacrev, jacobian, hessian, hvp."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import autograd
from ._graph import _toposort, run_hvp
from ._mode import STATE, Scope, enable_grad, new_level
from ._registry import Node, _push_tangents, _wrap_const
from ._tensor import STAMP, LeafWriteError, Tensor
from .forward import alias, dual_level, make_dual, unpack_dual

__all__ = [
    "grad",
    "hessian",
    "hvp",
    "jacfwd",
    "jacobian",
    "jacrev",
    "jvp",
    "tree_flatten",
    "tree_unflatten",
    "value_and_grad",
    "vjp",
]

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


def _new_variable(data: np.ndarray) -> Tensor:
    """A fresh leaf that requires grad, around ``data`` (not copied)."""
    x = _wrap_const(data)
    x._rg = True
    return x


def _variable(leaf: Any, who: str, where: str) -> tuple[Tensor, bool]:
    """A Tensor to differentiate with respect to, still connected to any outer transform.

    Returns it and whether an outer transform sees it (then derivatives are Tensors).
    """
    base = leaf if isinstance(leaf, Tensor) else Tensor(np.asarray(leaf))
    if base.dtype.kind not in "fc":
        if base.dtype.kind not in "iub":
            raise TypeError(f"{who}: {where} has dtype {base.dtype}, which is not numeric")
        base = base.astype(np.float64)
    outer = base.requires_grad or base._tan is not None
    if outer:
        with enable_grad():
            x = alias(base)
        if not x.requires_grad:
            x.requires_grad_()
        return x, True
    return _new_variable(base.data), False


def _prepare(
    args: tuple[Any, ...], nums: tuple[int, ...], who: str
) -> tuple[list[Any], list, list, bool]:
    """Replace the differentiated arguments by variables; return (args, leaves, defs, outer)."""
    new = list(args)
    leaves_per: list[list[Tensor]] = []
    defs = []
    outer = bool(STATE.levels)
    for a in nums:
        leaves, d = tree_flatten(args[a])
        if not leaves:
            raise ValueError(f"{who}: argument {a} has no array leaves to differentiate")
        xs = []
        for j, leaf in enumerate(leaves):
            x, o = _variable(leaf, who, f"argument {a} (leaf {j})")
            xs.append(x)
            outer = outer or o
        new[a] = tree_unflatten(d, xs)
        leaves_per.append(xs)
        defs.append(d)
    return new, leaves_per, defs, outer


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


def _record_needed(outs: Sequence[Tensor], leaves: list[list[Tensor]]) -> bool:
    """Whether reverse mode outside this transform may differentiate its derivatives.

    True when an input is itself differentiated from outside (it is not a leaf), or when
    the outputs also depend on other tensors that require grad (closed-over parameters,
    e.g. a loss on ``grad(net)(x)`` trained by ``backward()``).
    """
    flat = [x for xs in leaves for x in xs]
    if any(x._node is not None for x in flat):
        return True
    mine = set(flat)
    roots = [o._node for o in outs if o._node is not None]
    for node in _toposort(roots):
        for e in node.edges:
            if e is not None and type(e[0]) is not Node and e[0] not in mine:
                return True
    return False


def _as_output(y: Any, who: str) -> Tensor:
    if isinstance(y, Tensor):
        return y
    if isinstance(y, np.ndarray | float | int | np.generic):
        return Tensor(np.asarray(y, dtype=float))
    raise TypeError(f"{who}: f must return a Tensor (or a pytree of them), got {type(y).__name__}")


def _zeros_for(x: Tensor, batch: tuple[int, ...] = ()) -> Tensor:
    return Tensor(np.zeros(batch + x.shape, x.dtype))


def _finish(t: Tensor, keep: bool) -> Tensor:
    return t if keep else t.detach()


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
        who = "grad"
        nums = _argnums(argnums, len(args), who)
        new, leaves, defs, outer = _prepare(args, nums, who)
        with enable_grad():
            res = _call(f, new, kwargs, leaves, nums, who)
        if has_aux:
            if not (isinstance(res, tuple | list) and len(res) == 2):
                raise TypeError(f"{who}: with has_aux=True f must return a pair (output, aux)")
            res, aux = res
        y = _as_output(res, who)
        if y.size != 1:
            raise TypeError(
                f"{who}: f must return a scalar (one element) but returned shape {y.shape}; for "
                "non-scalar outputs use ad.jacobian / ad.jacrev, or ad.vjp with a cotangent"
            )
        flat = [x for xs in leaves for x in xs]
        if y.requires_grad:
            # NOTE: forward-over-reverse (hessian, hvp, jvp of grad) needs the rules evaluated
            # on Tensors so that tangents flow through them, but no reverse graph of them.
            record = _record_needed([y], leaves)
            outer = outer or record
            # The graph is kept only for an outer reverse pass (record); forward mode over this
            # gradient (hessian, jvp of grad) reads the tangents during this call only.
            gs = autograd._grad(y, flat, None, record, outer, True, False, record=record)
        else:
            gs = (None,) * len(flat)
        gs = [_zeros_for(x) if g is None else _finish(g, outer) for g, x in zip(gs, flat)]
        out = []
        k = 0
        for xs, d in zip(leaves, defs):
            out.append(tree_unflatten(d, gs[k : k + len(xs)]))
            k += len(xs)
        grads = out[0] if isinstance(argnums, int) else tuple(out)
        value = _finish(y, outer)
        return ((value, aux), grads) if has_aux else (value, grads)

    wrapped.__name__ = f"value_and_grad({getattr(f, '__name__', 'f')})"
    return wrapped


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
    vg = value_and_grad(f, argnums, has_aux)

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        value, g = vg(*args, **kwargs)
        return (g, value[1]) if has_aux else g

    wrapped.__name__ = f"grad({getattr(f, '__name__', 'f')})"
    return wrapped


# ----- vjp / jvp -------------------------------------------------------------------------------
def vjp(f: Callable[..., Any], *primals: Any, has_aux: bool = False) -> tuple[Any, ...]:
    """``(f(*primals), vjp_fn)``; ``vjp_fn(cotangent)`` gives one gradient per primal.

    ``vjp_fn`` may be called many times (the graph is kept while it lives).

    Examples
    --------
    >>> import autodiffx as ad
    >>> y, back = ad.vjp(lambda x: x * x, ad.tensor([1.0, 2.0]))
    >>> back(ad.tensor([1.0, 10.0]))
    (tensor([ 2., 40.]),)
    """
    who = "vjp"
    nums = tuple(range(len(primals)))
    new, leaves, defs, outer = _prepare(primals, nums, who)
    with enable_grad():
        res = _call(f, new, {}, leaves, nums, who)
    if has_aux:
        res, aux = res
    out_leaves, out_def = tree_flatten(res)
    outs = [_as_output(o, who) for o in out_leaves]
    flat = [x for xs in leaves for x in xs]
    record = _record_needed(outs, leaves)
    outer = outer or record

    def vjp_fn(cotangent: Any) -> tuple[Any, ...]:
        cts, _ = tree_flatten(cotangent)
        if len(cts) != len(outs):
            raise ValueError(f"vjp: got {len(cts)} cotangent leaves for {len(outs)} outputs")
        used, seeds = [], []
        for i, (o, c) in enumerate(zip(outs, cts)):
            c = c if isinstance(c, Tensor) else Tensor(np.asarray(c, dtype=o.dtype))
            if c.shape != o.shape:
                raise ValueError(
                    f"vjp: cotangent {i} has shape {c.shape} but output {i} has shape {o.shape}"
                )
            if o.requires_grad:
                used.append(o)
                seeds.append(c if outer else c.data)
        gs: Sequence[Any] = (None,) * len(flat)
        if used:
            gs = autograd._grad(used, flat, seeds, True, outer, True, False, record=record)
        gs = [_zeros_for(x) if g is None else _finish(g, outer) for g, x in zip(gs, flat)]
        result, k = [], 0
        for xs, d in zip(leaves, defs):
            result.append(tree_unflatten(d, gs[k : k + len(xs)]))
            k += len(xs)
        return tuple(result)

    value = tree_unflatten(out_def, [_finish(o, outer) for o in outs])
    return (value, vjp_fn, aux) if has_aux else (value, vjp_fn)


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
                outer = outer or pv._rg or pv._tan is not None
            else:
                pv = _const(pv, who, "argument", i, j)
            if pv.dtype.kind not in "fc":
                pv = pv.astype(np.float64)
            if isinstance(tv, Tensor):
                outer = outer or tv._rg or tv._tan is not None
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
    return _wrap_const(arr)


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
    pairs, _ = _dual_pairs(primals, tangents, who)
    with dual_level():
        args, _ = _dual_args(pairs, make_dual)
        res = f(*args)
        out_leaves, out_def = tree_flatten(res)
        ps, ts = [], []
        for o in out_leaves:
            o = _as_output(o, who)
            p, t = unpack_dual(o)
            ps.append(p)
            ts.append(_zeros_for(o) if t is None else t)
    return tree_unflatten(out_def, ps), tree_unflatten(out_def, ts)


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
    outer = bool(STATE.levels)
    for a in nums:
        leaves, d = tree_flatten(args[a])
        in_defs.append((d, len(leaves)))
        for leaf in leaves:
            t = leaf if isinstance(leaf, Tensor) else Tensor(np.asarray(leaf))
            outer = outer or t.requires_grad or t._tan is not None
            flat_in.append(t.astype(np.float64) if t.dtype.kind not in "fc" else t)
    sizes = [x.size for x in flat_in]
    n = sum(sizes)
    offsets = np.cumsum([0, *sizes])
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
    # t: (columns, *out_shape) -> out_shape + (columns,) -> split per input leaf
    blocks = []
    for c, o in zip(cols, outs):
        t = c[0] if len(c) == 1 else _concat(c)
        tt = _moveaxis0_last(t)
        row = []
        for x, o0, o1 in zip(flat_in, offsets[:-1], offsets[1:]):
            row.append(_finish(tt[..., o0:o1].reshape(o.shape + x.shape), outer))
        blocks.append(row)
    return out_def, [_finish(o, outer) for o in outs], blocks, in_defs


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
    new, leaves, defs, outer = _prepare(args, nums, "jacrev")
    with enable_grad():
        res = _call(f, new, {}, leaves, nums, "jacrev")
    out_leaves, out_def = tree_flatten(res)
    outs = [_as_output(o, "jacrev") for o in out_leaves]
    flat = [x for xs in leaves for x in xs]
    record = _record_needed(outs, leaves)
    outer = outer or record
    in_defs = [(d, len(xs)) for d, xs in zip(defs, leaves)]
    sizes = [o.size for o in outs]
    m = sum(sizes)
    if fwd_above is not None and m > fwd_above:
        return None
    offsets = np.cumsum([0, *sizes])
    chunk = chunk or m
    used = [i for i, o in enumerate(outs) if o.requires_grad]
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
            keep = record or stop < m
            gs = autograd._grad(
                [outs[i] for i in used], flat, seeds, keep, outer, True, True, record=record
            )
        for r, g, x in zip(rows, gs, flat):
            r.append(_zeros_for(x, (stop - start,)) if g is None else _finish(g, outer))
    blocks = []
    full = [r[0] if len(r) == 1 else _concat(r) for r in rows]  # (m, *x.shape) per input
    for i, o in enumerate(outs):
        blocks.append(
            [
                _finish(g[offsets[i] : offsets[i + 1]].reshape(o.shape + x.shape), outer)
                for g, x in zip(full, flat)
            ]
        )
    values = [_finish(o, outer) for o in outs]
    return out_def, values, blocks, in_defs


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


def _hvp_composed(
    f: Callable[..., Any], primals: tuple[Any, ...], tangents: tuple[Any, ...]
) -> tuple[Any, Any]:
    """``hvp`` as the composition ``jvp(value_and_grad(f))``: dual numbers from the start."""
    nums = tuple(range(len(primals)))
    vg = value_and_grad(f, argnums=nums)
    (value, _), (_, hv) = jvp(lambda *xs: vg(*xs), primals, tangents)
    return value, hv[0] if len(nums) == 1 else hv


def _hvp_on_duals(
    y: Tensor, flat: list[Tensor], seeds: list[Any], scope: Scope, record: bool
) -> list[Any]:
    """Hv by replaying the recorded tangents on dual Tensors and a backward pass over them.

    The general path of :func:`hvp`: for custom Functions (rules on Tensors), hooks, anomaly
    detection, and closures over tensors that require grad (``record``: the tangents and the
    backward pass are themselves recorded, so Hv is differentiable in those tensors).
    """
    with new_level() as level:
        STATE.level_nb[level] = 0
        for x, s in zip(flat, seeds):
            x._tan = {level: _wrap_const(s)}
        scope.level = level
        prev = STATE.scope
        STATE.scope = scope
        try:
            with enable_grad():
                for n in _toposort([y._node]):  # producers first
                    _push_tangents(n.prim, n.args, n.datas, n.params, n.outs, STATE)
        finally:
            STATE.scope = prev
        gs = autograd._grad(y, flat, None, True, True, True, False, record=record)
        return [None if g is None else unpack_dual(g, level).tangent for g in gs]


def _array_pairs(
    primals: tuple[Any, ...], tangents: tuple[Any, ...]
) -> tuple[list[Tensor], list[np.ndarray]] | None:
    """:func:`hvp`'s variables and raw seeds when every primal and tangent is one floating
    ndarray (or constant Tensor) of matching shape and no dual level is open; else None, and
    the general path validates, converts and walks pytrees."""
    if STATE.levels or len(primals) != len(tangents):
        return None
    xs, seeds = [], []
    for p, t in zip(primals, tangents):
        if type(p) is Tensor:
            if p._rg or p._tan is not None:
                return None
            p = p.data
        if type(t) is Tensor:
            if t._rg or t._tan is not None:
                return None
            t = t.data
        if (
            type(p) is not np.ndarray
            or type(t) is not np.ndarray
            or p.dtype.kind not in "fc"
            or t.dtype.kind not in "fc"
            or t.shape != p.shape
        ):
            return None
        xs.append(_new_variable(p))
        seeds.append(t if t.dtype == p.dtype else t.astype(p.dtype))
    return xs, seeds


def hvp(f: Callable[..., Any], primals: Sequence[Any], tangents: Sequence[Any]) -> tuple[Any, Any]:
    """``(f(*primals), H·tangents)`` by forward-over-reverse (PyTorch's ``hvp`` convention).

    ``f`` runs once and is recorded; a forward sweep over the recording computes the
    tangents along ``tangents`` that the backward pass reads, and the backward pass carries
    each cotangent with its tangent, both as NumPy arrays (the cost of a hand-written HVP,
    plus the dispatch). Only the tangent of the gradient is formed, not the gradient. When
    ``f`` closes over tensors that require grad, Hv is returned differentiable in them.
    Forward mode is not stopped by ``no_grad`` (as PyTorch's): if ``f`` computes under
    ``no_grad`` from its arguments, it runs a second time, on dual numbers.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.hvp(lambda x: ad.sum(x ** 3), (ad.tensor([1.0, 2.0]),), (ad.tensor([1.0, 0.0]),))
    (tensor(9.), tensor([6., 0.]))
    """
    who = "hvp"
    primals, tangents = tuple(primals), tuple(tangents)
    arrays = _array_pairs(primals, tangents)
    if arrays is not None:  # every argument one array: no pytree to walk or rebuild
        flat, seeds = arrays
        args: list[Any] = flat
        leaves = [[x] for x in flat]
        outer = False
    else:
        pairs, outer = _dual_pairs(primals, tangents, who)
        if outer:  # differentiated from outside: the general composition keeps every graph
            return _hvp_composed(f, primals, tangents)

        def variable(p: Tensor, t: Tensor) -> Tensor:
            return _new_variable(p.data)

        args, leaves = _dual_args(pairs, variable)
        flat = [x for xs in leaves for x in xs]
        seeds = [
            t.data if t.dtype == p.dtype else t.data.astype(p.dtype)
            for _, pts in pairs
            for p, t in pts
        ]
    prev, grad = STATE.scope, STATE.grad_enabled
    stamp = STAMP[0]
    STATE.scope = scope = Scope(flat)
    if not grad:
        STATE.grad_enabled = True
    try:
        y = _as_output(_call(f, args, {}, leaves, range(len(args)), who), who)
    finally:
        STATE.scope = prev
        if not grad:
            STATE.grad_enabled = False
    if y.size != 1:
        raise TypeError(
            f"{who}: f must return a scalar (one element) but returned shape {y.shape}; for "
            "a vector function use ad.jvp / ad.vjp, or ad.jacobian"
        )
    if scope.untracked or STAMP[0] != stamp:
        # NOTE: f ran an op under no_grad on a value that depends on x (the recording has no
        # node for it, but forward mode carries tangents through no_grad, as PyTorch's), or
        # modified a tensor in place (the recording keeps every argument and output, also
        # those a plain backward does not save, and one may have changed since it was
        # used). Hv then needs dual numbers from the start: f runs again through
        # jvp(grad(f)), which also raises where backward() would.
        value, hv = _hvp_composed(f, primals, tangents)
        return value.detach(), hv
    hs: list[Any] | None = [None] * len(flat)
    leaked = scope.leaked or (y._rg and (y._node or y) not in scope.inside)
    if y._node is not None and not leaked:
        hs = run_hvp(y, flat, seeds, scope.order)
    if y._node is not None and (leaked or hs is None):
        hs = _hvp_on_duals(y, flat, seeds, scope, record=leaked)
        outer = leaked  # Hv stays differentiable in the closed-over tensors
    assert hs is not None
    hv_leaves = [
        _zeros_for(x) if h is None else (h if isinstance(h, Tensor) else _wrap_const(h))
        for h, x in zip(hs, flat)
    ]
    if arrays is not None:
        out = hv_leaves
    else:
        out, k = [], 0
        for (pd, _), xs in zip(pairs, leaves):
            n = len(xs)
            out.append(hv_leaves[k] if pd is _LEAF else tree_unflatten(pd, hv_leaves[k : k + n]))
            k += n
    hv = out[0] if len(out) == 1 else tuple(out)
    return (y if outer else _wrap_const(y.data)), hv
