"""``ad.hvp``: forward-over-reverse on raw arrays, through the rule kinds' push and pair.

``hvp(f, primals, tangents)`` records ``f`` once in a :class:`~autodiffx._mode.Scope`, then
:func:`run_hvp` sweeps the recording: forward, forming the tangents along ``tangents`` where a
rule reads them (:meth:`autodiffx._rules.Rule.push`), and backward, carrying each cotangent
with its tangent (:meth:`autodiffx._rules.Rule.pair`). Custom Functions, hooks, anomaly
detection and closures over tensors that require grad take the general path: the recorded
tangents replayed on dual Tensors, then a backward pass over them (:func:`_hvp_on_duals`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import autograd
from ._broadcast import fit
from ._graph import _check_versions, _freed_error, _out_for_rule, _toposort
from ._mode import (
    COMPILE,
    FOREIGN,
    STATE,
    VMAP,
    Scope,
    enable_grad,
    new_level,
    quiet_enter,
    quiet_exit,
)
from ._node import Node
from ._registry import _push_tangents
from ._tensor import STAMP, Tensor, wrap
from ._transforms import (
    _LEAF,
    _as_output,
    _call,
    _call1,
    _dual_args,
    _dual_pairs,
    _finish,
    _new_variable,
    _reaches_outside,
    _retire,
    _zeros_for,
    jvp,
    tree_unflatten,
    value_and_grad,
)
from .forward import unpack_dual

__all__ = ["hvp"]


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
            x._tan = {level: wrap(s)}
        scope.level = level
        prev = STATE.scope
        STATE.scope = scope
        try:
            with enable_grad():
                for n in _toposort([y._node]):  # producers first
                    if n.outs is not None:  # (else recorded before f: no tangent reaches it)
                        outs = _out_for_rule(n, True)
                        _push_tangents(n.prim, n.args, n.datas, n.params, outs, STATE)
        finally:
            STATE.scope = prev
        gs = autograd._grad(
            y, flat, retain_graph=True, create_graph=True, allow_unused=True, record=record
        )
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
            if p._rg or p._tan:
                return None
            p = p.data
        if type(t) is Tensor:
            if t._rg or t._tan:
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
    mode = STATE.mode  # (one read of the thread-local state for both checks)
    if mode & FOREIGN:  # array-API arrays: jvp of grad, the rules on Tensors (autodiffx._xp)
        return _hvp_composed(f, primals, tangents)
    compiling = mode & COMPILE  # ad.compile records the sweep, run on Tensors
    if mode & VMAP and not compiling:  # inside ad.vmap: lowered to the whole batch
        low = STATE.vmap_lower("hvp", f, primals, tangents)
        if low is not NotImplemented:
            return low  # type: ignore[no-any-return]
    # (ad.compile: a tangent cast to its primal's dtype takes the general path, which records
    # the cast)
    arrays = (
        _array_pairs(primals, tangents) if not compiling or _uncast(primals, tangents) else None
    )
    pairs_leaves = None
    if arrays is not None:  # every argument one array: no pytree to walk or rebuild
        flat, seeds = arrays
        args: list[Any] = flat
    else:
        pairs, outer = _dual_pairs(primals, tangents, who)
        if outer:  # differentiated from outside: the general composition keeps every graph
            return _hvp_composed(f, primals, tangents)

        def variable(p: Tensor, t: Tensor) -> Tensor:
            return _new_variable(p.data)

        args, leaves = _dual_args(pairs, variable)
        flat = [x for xs in leaves for x in xs]
        seeds = [
            t.data if t.dtype == p.dtype else _cast(t, p.dtype, compiling)
            for _, pts in pairs
            for p, t in pts
        ]
        pairs_leaves = (pairs, leaves)
    try:
        return _hvp_recorded(f, args, flat, seeds, primals, tangents, pairs_leaves, compiling)
    finally:
        _retire(flat)


def _uncast(primals: tuple[Any, ...], tangents: tuple[Any, ...]) -> bool:
    """Whether each primal and its tangent have one dtype (or are not arrays)."""
    return all(getattr(p, "dtype", 0) == getattr(t, "dtype", 0) for p, t in zip(primals, tangents))


def _cast(t: Tensor, dtype: Any, compiling: int) -> np.ndarray:
    """A tangent's array cast to its primal's dtype (under ``ad.compile``, a recorded op)."""
    return t.astype(dtype).data if compiling else t.data.astype(dtype)  # type: ignore[no-any-return]


def _hvp_recorded(
    f: Callable[..., Any],
    args: list[Any],
    flat: list[Tensor],
    seeds: list[Any],
    primals: tuple[Any, ...],
    tangents: tuple[Any, ...],
    pairs_leaves: Any,
    compiling: int = 0,
) -> tuple[Any, Any]:
    """:func:`hvp` from the variables ``flat`` (in ``args``) and their tangents ``seeds``
    (``compiling``: under ``ad.compile``, the sweep runs on Tensors)."""
    who = "hvp"
    st = STATE
    prev, grad = st._scope, st._grad_enabled
    stamp = STAMP[0]
    st.scope = scope = Scope(flat)
    if not grad:
        st.grad_enabled = True
    try:
        if len(args) == 1 and type(args[0]) is Tensor:  # (a fresh leaf: no stamps to keep)
            y = _as_output(_call1(f, args[0], who), who)
        else:
            leaves = [[x] for x in flat] if pairs_leaves is None else pairs_leaves[1]
            y = _as_output(_call(f, args, {}, leaves, range(len(args)), who), who)
    finally:
        st.scope = prev
        if not grad:
            st.grad_enabled = False
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
        return _hvp_composed(f, primals, tangents)
    hs: list[Any] | None = [None] * len(flat)
    leaked = scope.leaked or (y._rg and (y._node or y) not in scope.inside)
    if y._node is not None and not leaked:
        order = scope.order
        hs = (
            _run_hvp_on_tensors(y, flat, seeds, order)
            if compiling
            else run_hvp(y, flat, seeds, order)
        )
    if y._node is not None and (leaked or hs is None):
        hs = _hvp_on_duals(y, flat, seeds, scope, record=leaked)
    assert hs is not None
    hv_leaves = [
        _zeros_for(x) if h is None else (h if isinstance(h, Tensor) else wrap(h))
        for h, x in zip(hs, flat)
    ]
    # Hv stays differentiable in the tensors f closed over that require grad, if it uses them.
    keep = leaked and _reaches_outside([y, *hv_leaves], flat)
    if leaked and not keep:
        hv_leaves = [_finish(h, keep) for h in hv_leaves]
    return (y if keep else wrap(y.data)), _hv_tree(hv_leaves, pairs_leaves)


def _hv_tree(hv_leaves: list[Tensor], pairs_leaves: Any) -> Any:
    """H·v in the structure of the primals (``pairs_leaves``: None when each is one array)."""
    if pairs_leaves is None:
        out = hv_leaves
    else:
        out, k = [], 0
        for (pd, _), xs in zip(*pairs_leaves):
            n = len(xs)
            out.append(hv_leaves[k] if pd is _LEAF else tree_unflatten(pd, hv_leaves[k : k + n]))
            k += n
    return out[0] if len(out) == 1 else tuple(out)


def run_hvp(
    root: Tensor, targets: Sequence[Tensor], seeds: Sequence[Any], order: list[Node]
) -> list[Any] | None:
    """Forward-over-reverse on raw arrays: the tangents of d root / d targets along ``seeds``.

    ``root`` is a scalar recorded in a :class:`~autodiffx._mode.Scope` from the leaf
    ``targets``; ``seeds`` are their tangents; ``order`` is the scope's nodes in creation
    order (producers first), each of which kept its arguments and outputs and depends on the
    targets only, so no graph walk is needed. The backward sweep carries each cotangent as a
    pair of raw arrays, its value and its tangent, by its primitive's rule kind
    (:meth:`autodiffx._rules.Rule.pair`); the tangents the rules read are formed on first
    use (:class:`_Sweep`). Only tangents reach the targets, so their gradients are never
    formed. Returns per target its tangent (None where unreached), or None when a rule needs
    Tensors (a custom Function), hooks or anomaly checks are present: the caller then
    replays the tangents on dual Tensors.
    """
    st = STATE
    if st._anomaly:
        return None
    for c in order:
        if c.hooks or c.prim.rule.needs_tensors:
            return None
    index = {t: j for j, t in enumerate(targets)}
    result: list[Any] = [None] * len(targets)
    token = quiet_enter()
    try:
        one = np.array(1, root.dtype).reshape(root.shape)  # (np.ones: 1 us of Python)
        grads: dict[Node, Any] = {root._node: one}
        gtans: dict[Node, Any] = {}
        stamp = STAMP[0]
        with _LazyLevel() as level:  # for rules evaluated on dual Tensors
            sweep = _Sweep(targets, seeds, level)
            for node in reversed(order):
                g = grads.pop(node, None)
                gt = gtans.pop(node, None)
                if g is None:
                    if gt is None:
                        continue
                    g = [None] * node.nout if node.multi else np.zeros_like(node.out)
                if node.args is None:
                    raise _freed_error(node)
                if node.stamp != stamp:
                    _check_versions(node)
                if node.multi:  # the outputs no cotangent (or tangent) reached: zeros
                    g = _zero_filled(g, node.out)
                    if gt is not None:
                        gt = _zero_filled(gt, node.out)
                cs, cts = node.prim.rule.pair(node, g, gt, sweep)
                _send_pairs(node, cs, cts, grads, gtans, index, result)
                node.args = node.datas = node.out = node.outs = None
    finally:
        quiet_exit(token)
    return result


def _run_hvp_on_tensors(
    root: Tensor, targets: Sequence[Tensor], seeds: Sequence[Any], order: list[Node]
) -> list[Any] | None:
    """:func:`run_hvp` under ``ad.compile``: the same sweep, the same rules, on Tensors (the
    nodes' saved values and the seeds wrapped), so that the recorder sees each of the
    sweep's operations, as it sees a backward pass's rules; a replay then computes what the
    eager sweep computes, bit for bit."""
    if STATE._anomaly or any(c.hooks or c.prim.rule.needs_tensors for c in order):
        return None  # (as run_hvp: the caller replays the tangents on dual Tensors)
    for n in order:
        if n.args is not None:
            n.datas = [
                a if isinstance(a, Tensor) else wrap(d) if type(d) is np.ndarray else d
                for a, d in zip(n.args, n.datas)
            ]
            n.out = tuple(map(wrap, n.out)) if n.multi else wrap(n.out)
    st = STATE
    grad = st.grad_enabled
    st.grad_enabled = False  # (the rules' Tensors build no graph)
    try:
        return run_hvp(root, targets, [wrap(s) for s in seeds], order)
    finally:
        st.grad_enabled = grad


def _send_pairs(
    node: Node,
    cs: Sequence[Any],
    cts: Sequence[Any],
    grads: dict[Node, Any],
    gtans: dict[Node, Any],
    index: dict[Any, int],
    result: list[Any],
) -> None:
    """Add each argument's cotangent (``cs``) and its tangent (``cts``) to its producer's;
    a target (``index``) receives the tangent only, into ``result``."""
    for i, e in enumerate(node.edges):
        if e is None:
            continue
        child, k, shape, dtype = e
        ct = cts[i]
        if ct is not None and (
            type(ct) is not np.ndarray or ct.shape != shape or ct.dtype != dtype
        ):
            ct = fit(ct if type(ct) is Tensor else np.asarray(ct), shape, dtype)
        if type(child) is not Node:  # a target: its tangent only
            if ct is not None:
                j = index[child]
                result[j] = ct if result[j] is None else result[j] + ct
            continue
        c = cs[i]
        if (
            c is not None
            and (type(c) is not np.ndarray or c.shape != shape or c.dtype != dtype)
            and not _stays_0d(c, dtype, child)
        ):
            c = fit(c if type(c) is Tensor else np.asarray(c), shape, dtype)
        if child.multi:
            _add_pair(grads, child, k, c)
            _add_pair(gtans, child, k, ct)
            continue
        if c is not None:
            prev = grads.get(child)
            grads[child] = c if prev is None else prev + c
        if ct is not None:
            prev = gtans.get(child)
            gtans[child] = ct if prev is None else prev + ct


def _zero_filled(gs: Sequence[Any], outs: Sequence[Any]) -> tuple[Any, ...]:
    """Per output of a multi-output node, its cotangent (or tangent), zeros where none."""
    return tuple(np.zeros(o.shape, o.dtype) if gk is None else gk for gk, o in zip(gs, outs))


def _stays_0d(c: Any, dtype: Any, child: Node) -> bool:
    """Whether cotangent ``c`` may reach ``child`` unbroadcast."""
    # NOTE: a 0-d cotangent (the seed of the loss, through its sum) into an elementwise rule
    # stays 0-d: the rule's products broadcast it, so no array of ones is made. Every other
    # mismatch is fitted by the sweep.
    return (
        type(c) is np.ndarray
        and c.ndim == 0
        and c.dtype == dtype
        and child.prim.kind == "elementwise"
    )


def _fit(c: Any, shape: tuple[int, ...], dtype: Any) -> Any:
    """:func:`fit` for raw results (Tensors under ``ad.compile``), skipped when shape and
    dtype already match."""
    if type(c) is np.ndarray and c.shape == shape and c.dtype == dtype:
        return c
    if type(c) is Tensor:
        return c if c.shape == shape and c.dtype == dtype else fit(c, shape, dtype)
    return fit(np.asarray(c), shape, dtype)


class _LazyLevel:
    """A dual level with grad off, opened on first use (:meth:`_Sweep.dual`) and closed
    at exit: rules evaluated on dual Tensors carry tangents and record nothing."""

    __slots__ = ("cm", "grad", "id")

    def __enter__(self) -> _LazyLevel:
        self.cm: new_level | None = None
        return self

    def get(self) -> int:
        if self.cm is None:
            self.grad = STATE.grad_enabled
            STATE.grad_enabled = False
            self.cm = new_level()
            self.id = self.cm.__enter__()
        return self.id

    def __exit__(self, *exc: object) -> None:
        if self.cm is not None:
            self.cm.__exit__(*exc)
            STATE.grad_enabled = self.grad


class _Sweep:
    """What the rule kinds' ``push`` and ``pair`` read during :func:`run_hvp`: the tangents
    along the seeds, on raw arrays, each formed when a rule first reads it (and its
    producers' first), so the tangents of values that only linear rules consume are never
    formed; the elementwise derivatives ``push`` computed; and an evaluation of any rule on
    dual Tensors (:meth:`dual`). Tangents are keyed by target or node (a list per
    multi-output node; None: no tangent)."""

    __slots__ = ("derivs", "lazy", "tans")

    def __init__(self, targets: Sequence[Tensor], seeds: Sequence[Any], lazy: _LazyLevel) -> None:
        self.tans: dict[Any, Any] = dict(zip(targets, seeds))
        self.derivs: dict[Node, Any] = {}  # elementwise derivatives, kept for the backward
        self.lazy = lazy

    @staticmethod
    def into_node(e: Any) -> bool:
        """Whether edge ``e`` leads to a node (not to a target)."""
        return type(e[0]) is Node

    @staticmethod
    def fit(c: Any, e: Any) -> Any:
        """Cotangent ``c`` fitted to the shape and dtype of edge ``e``'s value."""
        return _fit(c, e[2], e[3])

    def formed(self, e: Any) -> Any:
        """The tangent of an edge whose producer's tangent is already formed."""
        if e is None:
            return None
        t = self.tans.get(e[0])
        return t[e[1]] if t is not None and type(e[0]) is Node and e[0].multi else t

    def edge(self, e: Any) -> Any:
        """The tangent of the value that edge ``e`` points to."""
        if e is None:
            return None
        child = e[0]
        if type(child) is Node:
            if child not in self.tans:
                self.form(child)
            t = self.tans[child]
            return t[e[1]] if child.multi and t is not None else t
        return self.tans.get(child)

    def out(self, n: Node) -> Any:
        """The tangent of node ``n``'s output (a list for several)."""
        if n not in self.tans:
            self.form(n)
        return self.tans[n]

    def form(self, n: Node) -> None:
        """Form the tangent of ``n``, after those of its producers that lack one (an iterative
        post-order: a chain of any depth never reaches Python's recursion limit)."""
        tans = self.tans
        for e in n.edges:
            if e is not None and type(e[0]) is Node and e[0] not in tans:
                break
        else:  # (the common case: the producers' tangents are formed)
            self._push(n)
            return
        for m in _toposort([n], stop=set(tans)):  # producers first, the unformed ones
            self._push(m)

    def _push(self, n: Node) -> None:
        """Set ``tans[n]`` by the node's rule kind, fitted to its output(s)."""
        if n.args is None:
            raise _freed_error(n)  # freed by a backward() inside the function
        t = n.prim.rule.push(n, self)
        out = n.out
        if t is None:
            self.tans[n] = None
        elif not n.multi:
            self.tans[n] = _fit(t, out.shape, out.dtype)
        else:
            self.tans[n] = [
                _fit(tk, o.shape, o.dtype) if tk is not None and o.dtype.kind in "fc" else None
                for tk, o in zip(t, out)
            ]

    def dual(self, node: Node, g: Any, gt: Any, tans: list[Any]) -> tuple[list[Any], list[Any]]:
        """A pair rule for any rule kind: the VJP evaluated once on dual Tensors."""
        return _pair_on_duals(node, g, gt, tans, self.lazy.get(), self)


def _add_pair(d: dict[Node, Any], node: Node, k: int, c: Any) -> None:
    """Add cotangent (or tangent) ``c`` of output ``k`` of a multi-output node."""
    if c is None:
        return
    slot = d.get(node)
    if slot is None:
        slot = d[node] = [None] * node.nout
    slot[k] = c if slot[k] is None else slot[k] + c


def _pair_on_duals(
    node: Node, g: Any, gt: Any, tans: list[Any], level: int, sweep: _Sweep
) -> tuple[list[Any], list[Any]]:
    """:meth:`_Sweep.dual`: the cotangents and their tangents from one VJP on dual Tensors."""

    def dual(value: Any, tangent: Any) -> Tensor:
        if type(value) is Tensor:  # (ad.compile: the sweep's values are Tensors)
            if tangent is None:
                return value
            value = value.data
        t = wrap(np.asarray(value))
        if tangent is not None:
            t._tan = {level: tangent if type(tangent) is Tensor else wrap(np.asarray(tangent))}
        return t

    args = [
        dual(d, t) if isinstance(a, Tensor) else a
        for a, d, t in zip(node.args, node.datas, tans, strict=True)
    ]
    if node.multi:
        gts = gt or [None] * node.nout
        gd: Any = tuple(
            dual(np.zeros(o.shape, o.dtype) if gk is None else gk, tk)
            for gk, tk, o in zip(g, gts, node.out)
        )
        touts = sweep.out(node) or [None] * node.nout
        out: Any = tuple(dual(o, tk) for o, tk in zip(node.out, touts))
    else:
        gd = dual(g, gt)
        out = dual(node.out, sweep.out(node))
    res = node.prim.vjp(node.edges, gd, out, args, node.params)
    raw = not STATE.mode & COMPILE  # (ad.compile: the values stay Tensors, recorded)
    cs, cts = [], []
    for c in res:
        if c is None:
            cs.append(None)
            cts.append(None)
        elif isinstance(c, Tensor):
            cs.append(c.data if raw else wrap(c.data))
            t = c._tan.get(level) if c._tan is not None else None
            cts.append(None if t is None else t.data if raw else wrap(t.data))
        else:
            cs.append(c)
            cts.append(None)
    return cs, cts
