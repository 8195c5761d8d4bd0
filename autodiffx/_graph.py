"""The reverse-mode engine (toposort, rules, accumulation, hooks, release); hvp's pair sweep."""

from __future__ import annotations

import sys
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._broadcast import fit
from ._mode import STATE, new_level, quiet_enter, quiet_exit
from ._registry import (
    PAIR_DUAL,
    PAIR_ELEMENTWISE,
    PAIR_LINEAR,
    PAIR_MULTILINEAR,
    PAIR_NONE,
    Node,
    _wrap_const,
)
from ._tensor import STAMP, Tensor


def _toposort(roots: list[Node], stop: set[Node] | None = None) -> list[Node]:
    """Post-order (producers before consumers) of every node reachable from ``roots``.

    Iterative, so a chain of any depth never reaches Python's recursion limit. Nodes in
    ``stop`` are neither entered nor listed.
    """
    order: list[Node] = []
    visited: set[Node] = set() if stop is None else set(stop)
    for root in roots:
        if root in visited:
            continue
        visited.add(root)
        stack: list[Any] = [(root, iter(root.edges))]
        while stack:
            node, it = stack[-1]
            for e in it:
                if e is not None:
                    child = e[0]
                    if type(child) is Node and child not in visited:
                        visited.add(child)
                        stack.append((child, iter(child.edges)))
                        break
            else:
                stack.pop()
                order.append(node)
    return order


def _freed_error(node: Node) -> RuntimeError:
    return RuntimeError(
        f"Trying to backward through the graph a second time (at '{node.name}'): its saved "
        "values were released after the first backward. Pass retain_graph=True to the first "
        "backward() (or autograd.grad) if you need to backward through it again."
    )


def _check_versions(node: Node) -> None:
    """Raise if a value this node saved was modified in place after it was saved."""
    stamp = node.stamp
    if node.prim.save_args:
        for i, a in enumerate(node.args):
            if isinstance(a, Tensor) and a._vc is not None and a._vc[0] > stamp:
                raise _inplace_error(node, f"argument {i}, shape {tuple(a.shape)}")
    vcs = node.out_vc
    # (a linear rule never reads its outputs: split keeps them for their shapes only)
    if vcs is not None and node.prim.kind != "linear":
        for k, vc in enumerate([vcs] if not node.multi else vcs):
            if vc[0] > stamp:
                raise _inplace_error(node, f"output {k}")


def _stale(args: Sequence[Any], datas: Sequence[Any]) -> bool:
    """Whether a Tensor among a node's saved ``args`` has another ``.data`` than it had
    (``datas``); a non-Tensor argument is its own data."""
    if len(args) == 1:
        a, d = args[0], datas[0]
        return a is not d and a.data is not d
    return any(a is not d and a.data is not d for a, d in zip(args, datas))


# NOTE: PyTorch's rule for a saved tensor whose .data is rebound (t.data = new) between the
# forward and the backward: the rule reads the new values. A recorded pass (create_graph)
# reads the Tensors themselves, so a plain pass must too, or the two would disagree.
def _rebound(node: Node) -> list[Any]:
    """The arguments' current arrays, for a node one of whose saved Tensors had its ``.data``
    rebound after the op used it; a new shape or dtype raises."""
    datas = list(node.datas)
    for i, (a, d) in enumerate(zip(node.args, node.datas)):
        if a is d:
            continue
        new = a.data
        if type(new) is not np.ndarray or new.shape != d.shape or new.dtype != d.dtype:
            got = f"{getattr(new, 'dtype', type(new).__name__)}{list(np.shape(new))}"
            raise RuntimeError(
                f"the .data of argument {i} of '{node.name}', saved for its backward, was "
                f"rebound to {got} after the op used it as {d.dtype}{list(d.shape)}; a "
                ".data rebound between forward and backward must keep its shape and dtype "
                "(recompute the graph after changing them)"
            )
        datas[i] = new
    node.datas = datas
    return datas


def _inplace_error(node: Node, what: str) -> RuntimeError:
    return RuntimeError(
        f"a value saved by '{node.name}' for its backward ({what}) was modified by an "
        "in-place operation after it was used. Use an out-of-place operation (x = x + y "
        "instead of x += y), or .copy() the tensor before modifying it."
    )


def _out_for_rule(node: Node, create_graph: bool) -> Any:
    """The node's output(s) for its rule: arrays, or with ``create_graph`` Tensors produced by
    the node that carry the outputs' tangents (``node.outs``, recorded under dual levels)."""
    if not create_graph:
        return node.out
    out = node.out
    if out is None:
        return None
    cells = node.outs
    if not node.multi:
        return _as_output(out, node, 0, cells)
    if cells is None:
        return tuple(_as_output(o, node, k, None) for k, o in enumerate(out))
    return tuple(_as_output(o, node, k, c) for k, (o, c) in enumerate(zip(out, cells)))


def _as_output(data: np.ndarray, node: Node, k: int, tangents: Any) -> Tensor:
    t = _wrap_const(data)
    if data.dtype.kind in "fc":
        t._node, t._idx, t._rg = node, k, True
    t._tan = tangents
    return t


def _run_hooks(hooks: list[Any], g: Any, create_graph: bool) -> Any:
    for fn in hooks:
        arg = g if isinstance(g, Tensor) else _wrap_const(g)
        r = fn(arg)
        if r is not None:
            g = r if create_graph else np.asarray(r.data if isinstance(r, Tensor) else r)
    return g


def run_backward(
    roots: Sequence[Tensor],
    seeds: Sequence[Any],
    *,
    retain_graph: bool,
    create_graph: bool,
    targets: Sequence[Tensor] | None = None,
    accumulate: bool = True,
    batch_ndim: int = 0,
    record: bool | None = None,
    stop_at_targets: bool = False,
) -> list[Any] | None:
    """Propagate ``seeds`` from ``roots`` to the leaves (or to ``targets``).

    With ``accumulate`` the gradients are added into ``.grad`` (of every reached leaf, or of
    ``targets`` only); otherwise the gradients of ``targets`` are returned in order
    (None where unreachable). With ``batch_ndim`` the seeds carry that many leading batch
    axes, kept through every rule (one pass computes many vector-Jacobian products).
    ``record=False`` with ``create_graph`` evaluates the rules on Tensors (so forward-mode
    tangents flow through them: forward-over-reverse) without recording a reverse graph.
    ``stop_at_targets`` gives partial derivatives: the targets are independent variables,
    so no cotangent flows past them (nor runs their hooks), and the graph above them is not
    walked (``ad.implicit`` differentiates F(z, θ) in θ at fixed z that way).
    """
    if create_graph:
        seeds = [s if isinstance(s, Tensor) else _wrap_const(np.asarray(s)) for s in seeds]
    else:
        seeds = [np.asarray(s.data if isinstance(s, Tensor) else s) for s in seeds]
    # Cotangents by node: the value itself for single-output nodes, a list otherwise.
    grads: dict[Node, Any] = {}
    leaf_grads: dict[Tensor, Any] = {}
    root_nodes: list[Node] = []
    for r, s in zip(roots, seeds):
        if not r._rg:
            raise RuntimeError(
                "element of the outputs does not require grad and has no grad_fn: nothing "
                "it depends on was created with requires_grad=True (or it was computed under "
                "no_grad)"
            )
        if r._node is None:
            _add(leaf_grads, r, s)
        else:
            _add_node(grads, r._node, r._idx, s)
            root_nodes.append(r._node)
    if stop_at_targets:
        stops = {t._node for t in targets or () if t._node is not None}
        order = [*stops, *_toposort(root_nodes, stops)]  # stops last in the reversed walk
    else:
        stops = None
        order = _toposort(root_nodes)

    target_keys: dict[Any, int] | None = None
    needed: set[Any] | None = None
    captured: list[Any] = []
    # Nodes with an output among the targets: their cotangent is captured on the way.
    target_nodes: set[Node] = set()
    if targets is not None:
        target_keys = {}
        for j, t in enumerate(targets):
            if t._node is None:
                target_keys[t] = j
            else:
                target_keys[(t._node, t._idx)] = j
                target_nodes.add(t._node)
        captured = [None] * len(targets)
        needed = {t for t in targets if t._node is None}
        needed |= target_nodes
        for n in order:  # producers first, so children are decided before their consumers
            if n not in needed:
                for e in n.edges:
                    if e is not None and e[0] in needed:
                        needed.add(n)
                        break

    anomaly = STATE.anomaly
    nb = batch_ndim
    bshape = tuple(seeds[0].shape[:nb]) if nb else ()
    record = create_graph if record is None else (create_graph and record)
    prev_nb = STATE.nb
    STATE.nb = nb
    # NOTE: rules evaluate silently where the derivative is infinite (sqrt at 0), as PyTorch;
    # detect_anomaly() is the tool that turns non-finite gradients into errors.
    token = quiet_enter()
    prev_grad = STATE.grad_enabled
    STATE.grad_enabled = record
    try:
        for node in reversed(order):
            g = grads.pop(node, None)
            if g is None:
                _zero_leaves(node, leaf_grads, needed)
                continue
            if node.args is None:
                raise _freed_error(node)
            if node.hooks or node in target_nodes:
                if stops is not None and node in stops:
                    _hooks_and_targets(node, g, False, target_keys, captured, hooks=False)
                    continue
                g = _hooks_and_targets(node, g, create_graph, target_keys, captured)
            if needed is not None and node not in needed:
                continue
            if node.stamp != STAMP[0]:
                _check_versions(node)
            p = node.prim
            if node.multi:
                g = tuple(
                    gk if gk is not None else _zeros(o, create_graph, bshape)
                    for gk, o in zip(g, node.out)
                )
            datas = node.datas
            if p.save_args:  # a saved Tensor's .data rebound since? (binary rules unrolled)
                args = node.args
                if len(args) == 2:
                    a, b = args
                    da, db = datas
                    if (a is not da and a.data is not da) or (b is not db and b.data is not db):
                        datas = _rebound(node)
                elif _stale(args, datas):
                    datas = _rebound(node)
            if create_graph:
                cts = p.vjp(node.edges, g, _out_for_rule(node, True), node.args, node.params)
            else:
                # `needs` is the edge list: an edge (truthy) means "requires grad".
                cts = p.vjp(node.edges, g, node.out, datas, node.params)
            i = -1
            for e in node.edges:
                i += 1
                if e is None:
                    continue
                c = cts[i]
                child = e[0]
                if needed is not None and child not in needed:
                    continue
                if c is None:
                    # A leaf reached only through symbolic zeros still gets a zero gradient.
                    if type(child) is not Node and child not in leaf_grads:
                        leaf_grads[child] = None
                    continue
                if create_graph:
                    if not isinstance(c, Tensor):
                        c = _wrap_const(np.asarray(c))
                elif type(c) is not np.ndarray:
                    c = np.asarray(c.data if isinstance(c, Tensor) else c)
                if nb or c.shape != e[2] or (c.dtype is not e[3] and c.dtype != e[3]):
                    if create_graph and not c._rg and c._tan is None:
                        c = _wrap_const(fit(c.data, e[2], e[3], nb))  # a constant: raw
                    else:
                        c = fit(c, e[2], e[3], nb)
                if anomaly:
                    _check_grad(node, i, c)
                if type(child) is Node:
                    if not child.multi:
                        prev = grads.get(child)
                        grads[child] = c if prev is None else prev + c
                    else:
                        _add_node(grads, child, e[1], c)
                else:
                    prev = leaf_grads.get(child)
                    leaf_grads[child] = c if prev is None else prev + c
            if not retain_graph:
                node.args = node.datas = node.out = node.outs = None
        c = g = cts = prev = None  # the engine's own references to cotangents
        for leaf in list(leaf_grads):
            g = leaf_grads.pop(leaf)
            if g is None:
                g = np.zeros(bshape + leaf.data.shape, leaf.data.dtype)
                if create_graph:
                    g = _wrap_const(g)
            if leaf._hooks and not stop_at_targets:
                g = _run_hooks(leaf._hooks, g, create_graph)
            if target_keys is not None:
                j = target_keys.get(leaf)
                if j is not None:
                    captured[j] = g
                continue
            if accumulate:
                _accumulate(leaf, g, create_graph)
        if targets is None:
            return None
        if accumulate:
            for t, g in zip(targets, captured):
                if g is not None:
                    _accumulate(t, g, create_graph)
            return None
        return captured
    finally:
        STATE.grad_enabled = prev_grad
        quiet_exit(token)
        STATE.nb = prev_nb


def run_hvp(
    root: Tensor, targets: Sequence[Tensor], seeds: Sequence[Any], order: list[Node]
) -> list[Any] | None:
    """Forward-over-reverse on raw arrays: the tangents of d root / d targets along ``seeds``.

    ``root`` is a scalar recorded in a :class:`~autodiffx._mode.Scope` from the leaf
    ``targets``; ``seeds`` are their tangents; ``order`` is the scope's nodes in creation
    order (producers first), each of which kept its arguments and outputs and depends on the
    targets only, so no graph walk is needed. The backward sweep carries each cotangent as a
    pair of raw arrays, its value and its tangent, by each primitive's ``pair`` kind (see
    :func:`autodiffx._registry._pair_kind`); the tangents the rules read are formed on first
    use (:class:`_Tangents`). Only tangents reach the targets, so their gradients are never
    formed. Returns per target its tangent (None where unreached), or None when a rule needs
    Tensors (a custom Function), hooks or anomaly checks are present: the caller then
    replays the tangents on dual Tensors.
    """
    if STATE.anomaly:
        return None
    for c in order:
        if c.hooks or c.prim.pair < 0:
            return None
    sweep = _Tangents(targets, seeds)
    derivs = sweep.derivs
    index = {t: j for j, t in enumerate(targets)}
    result: list[Any] = [None] * len(targets)
    token = quiet_enter()
    prev_nb = STATE.nb
    STATE.nb = 0
    try:
        rootn = root._node
        one = np.array(1, root.dtype).reshape(root.shape)  # (np.ones: 1 us of Python)
        grads: dict[Node, Any] = {rootn: one}
        gtans: dict[Node, Any] = {}
        stamp = STAMP[0]
        with _LazyLevel() as level:  # for rules evaluated on dual Tensors
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
                edges = node.edges
                cs, cts = _pair_rule(node, g, gt, edges, sweep, level, derivs.get(node))
                for i, e in enumerate(edges):
                    if e is None:
                        continue
                    child, k, shape, dtype = e
                    ct = cts[i]
                    if ct is not None and (
                        type(ct) is not np.ndarray or ct.shape != shape or ct.dtype != dtype
                    ):
                        ct = fit(np.asarray(ct), shape, dtype)
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
                        c = fit(np.asarray(c), shape, dtype)
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
                node.args = node.datas = node.out = node.outs = None
    finally:
        STATE.nb = prev_nb
        quiet_exit(token)
    return result


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
    """:func:`fit` for raw results, skipped when shape and dtype already match."""
    if type(c) is np.ndarray and c.shape == shape and c.dtype == dtype:
        return c
    return fit(np.asarray(c), shape, dtype)


class _LazyLevel:
    """A dual level with grad off, opened on first use (:func:`_pair_rule_dual`) and closed
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


def _single_edge(edges: Sequence[Any]) -> int:
    """The index of the one differentiated argument of a node of one or two arguments, or -1."""
    if len(edges) == 1:
        return 0
    if len(edges) == 2:
        if edges[1] is None:
            return 0
        if edges[0] is None:
            return 1
    return -1


_NO_PAIR = [((None,) * k, (None,) * k) for k in range(3)]


class _Tangents:
    """The tangents along the seeds of :func:`run_hvp`, on raw arrays, each formed when a rule
    first reads it (and its producers' first): the tangents of values that only linear rules
    consume are never formed. Keyed by target or node (a list per multi-output node; None:
    no tangent)."""

    __slots__ = ("derivs", "tans")

    def __init__(self, targets: Sequence[Tensor], seeds: Sequence[Any]) -> None:
        self.tans: dict[Any, Any] = dict(zip(targets, seeds))
        self.derivs: dict[Node, Any] = {}  # elementwise derivatives, kept for the backward

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
            if n.args is None:
                raise _freed_error(n)  # freed by a backward() inside the function
            _push_raw(n, tans, self.derivs)
            return
        pending: set[Node] = {n}
        stack: list[Any] = [(n, iter(n.edges))]
        while stack:
            m, it = stack[-1]
            for e in it:
                if e is not None:
                    c = e[0]
                    if type(c) is Node and c not in tans and c not in pending:
                        pending.add(c)
                        stack.append((c, iter(c.edges)))
                        break
            else:
                stack.pop()
                if m.args is None:
                    raise _freed_error(m)  # freed by a backward() inside the function
                _push_raw(m, tans, self.derivs)


def _formed(tans: dict[Any, Any], e: Any) -> Any:
    """The tangent of an edge whose producer's tangent is already formed."""
    if e is None:
        return None
    t = tans.get(e[0])
    return t[e[1]] if t is not None and type(e[0]) is Node and e[0].multi else t


def _push_raw(n: Node, tans: dict[Any, Any], derivs: dict[Node, Any]) -> None:
    """Forward mode through one recorded node on raw arrays: sets ``tans[n]`` (None for no
    tangent), from the formed tangents of its arguments."""
    p = n.prim
    edges = n.edges
    tans[n] = None
    i = _single_edge(edges) if p.kind == "elementwise" else -1
    if i >= 0:  # an elementwise rule of one differentiated argument: the code below, unrolled
        t = _formed(tans, edges[i])
        d_i = p.derivs[i]
        if t is None or d_i is None:
            return
        out = n.out
        d = d_i(n.datas, out, n.params)
        ds = [None] * len(edges)
        ds[i] = d
        derivs[n] = ds  # kept for the product rule of the backward sweep
        tans[n] = _fit(t * d, out.shape, out.dtype)
        return
    r = [_formed(tans, e) for e in edges]
    for t in r:
        if t is not None:
            break
    else:
        return
    out = n.out
    if p.kind == "elementwise" and not n.multi:
        # The derivatives are kept for the product rule of the backward sweep.
        datas, params = n.datas, n.params
        ds = []
        t = None
        for ti, d in zip(r, p.derivs):
            if ti is None or d is None:
                ds.append(None)
                continue
            d = d(datas, out, params)
            ds.append(d)
            t = ti * d if t is None else t + ti * d
        derivs[n] = ds
    elif p.jvp is None:
        if p.vjp is None and p.kind == "general":
            return  # non-differentiable (comparisons, argmax): no tangent
        raise TypeError(f"'{p.name}' has no forward-mode (JVP) rule, which ad.hvp needs")
    else:
        t = p.jvp(tuple(r), out, n.datas, n.params)
    if t is None:
        return
    if not n.multi:
        tans[n] = _fit(t, out.shape, out.dtype)
        return
    tans[n] = [
        _fit(tk, o.shape, o.dtype) if tk is not None and o.dtype.kind in "fc" else None
        for tk, o in zip(t, out)
    ]


def _add_pair(d: dict[Node, Any], node: Node, k: int, c: Any) -> None:
    """Add cotangent (or tangent) ``c`` of output ``k`` of a multi-output node."""
    if c is None:
        return
    slot = d.get(node)
    if slot is None:
        slot = d[node] = [None] * node.nout
    slot[k] = c if slot[k] is None else slot[k] + c


def _pair_rule(
    node: Node,
    g: Any,
    gt: Any,
    edges: Sequence[Any],
    sweep: _Tangents,
    level: _LazyLevel,
    ds: list[Any] | None,
) -> tuple[Sequence[Any], Sequence[Any]]:
    """Per edge, the cotangent and its tangent (raw arrays or None).

    ``g`` and ``gt`` are the node's output cotangent and its tangent, ``sweep`` the tangents
    (formed on first use), ``ds`` the node's elementwise derivatives if forming its tangent
    computed them. The cotangent itself is computed only for edges into other nodes (a
    target needs its tangent alone).
    """
    p = node.prim
    kind = p.pair
    datas, out, params = node.datas, node.out, node.params
    i = _single_edge(edges) if kind == PAIR_ELEMENTWISE else -1
    if i >= 0:
        # An elementwise rule with one differentiated argument (most nodes): the general case
        # below, unrolled.
        d_i = p.derivs[i]
        if d_i is None:
            return _NO_PAIR[len(edges)]
        d = ds[i] if ds is not None else None
        if d is None:
            d = d_i(datas, out, params)
        ct = None if gt is None else gt * d
        e = edges[i]
        if not p.deriv_const[i]:
            t = sweep.edge(e)
            if t is not None:  # the product rule, g (d_i)' t
                d2 = p.derivs2[i]
                if d2 is None:
                    return _pair_rule_dual(
                        node, g, gt, [sweep.edge(e) for e in edges], level, sweep
                    )
                term = g * d2((*datas, d), out, params) * t
                ct = term if ct is None else ct + term
        c = g * d if type(e[0]) is Node else None
        if len(edges) == 1:
            return (c,), (ct,)
        cs, cts = [None] * len(edges), [None] * len(edges)
        cs[i], cts[i] = c, ct
        return cs, cts
    none = (None,) * len(edges)
    if kind == PAIR_NONE:
        return none, none
    # needs_c: the edges whose cotangent is formed (those into nodes, not into targets).
    needs_c: Sequence[Any] = edges
    live = 0
    any_c = to_target = False
    for e in edges:
        if e is not None:
            live += 1
            if type(e[0]) is Node:
                any_c = True
            else:
                to_target = True
    if to_target:
        needs_c = [e if e is not None and type(e[0]) is Node else None for e in edges]
    if kind == PAIR_LINEAR:
        cs = p.vjp(needs_c, g, out, datas, params) if any_c else none
        cts = p.vjp(edges, gt, out, datas, params) if gt is not None else none
        return cs, cts
    if kind == PAIR_MULTILINEAR and not node.multi:
        # d/de T_i(g; a_1..a_n) = T_i(gt; a) + sum over j != i of T_i(g; a with a_j -> t_j).
        cs = p.vjp(needs_c, g, out, datas, params) if any_c else none
        cts = p.vjp(edges, gt, out, datas, params) if gt is not None else none
        if live == 1:  # (the cross terms pair two differentiated arguments)
            return cs, cts
        tans = [sweep.edge(e) for e in edges]
        cts = [None if c is None else _fit(c, e[2], e[3]) for c, e in zip(cts, edges)]
        for j, tj in enumerate(tans):
            if tj is None:
                continue
            needs_j = [None if i == j else e for i, e in enumerate(edges)]
            if any(needs_j):
                swapped = list(datas)
                swapped[j] = tj
                for i, c in enumerate(p.vjp(needs_j, g, out, swapped, params)):
                    if c is not None:
                        c = _fit(c, edges[i][2], edges[i][3])
                        cts[i] = c if cts[i] is None else cts[i] + c
        return cs, cts
    tans = [sweep.edge(e) for e in edges]
    if kind == PAIR_DUAL or node.multi:
        return _pair_rule_dual(node, g, gt, tans, level, sweep)
    # Elementwise: the cotangent g d_i, and its tangent gt d_i + g (d_i)' t_i (product rule).
    with_tan = [j for j, t in enumerate(tans) if t is not None]
    cs, cts = [None] * len(edges), [None] * len(edges)
    for i, e in enumerate(edges):
        d_i = p.derivs[i]
        if e is None or d_i is None:
            continue
        d = None if ds is None else ds[i]
        if d is None:
            d = d_i(datas, out, params)
        if needs_c[i] is not None:
            cs[i] = g * d
        ct = None if gt is None else gt * d
        if with_tan and not p.deriv_const[i]:
            d2 = p.derivs2[i]
            if d2 is None or with_tan != [i]:
                return _pair_rule_dual(node, g, gt, tans, level, sweep)
            term = g * d2([*datas, d], out, params) * tans[i]
            ct = term if ct is None else ct + term
        cts[i] = ct
    return cs, cts


def _pair_rule_dual(
    node: Node, g: Any, gt: Any, tans: list[Any], lazy: _LazyLevel, sweep: _Tangents
) -> tuple[list[Any], list[Any]]:
    """:func:`_pair_rule` for any rule: one evaluation on dual Tensors."""
    level = lazy.get()

    def dual(value: Any, tangent: Any) -> Tensor:
        t = _wrap_const(np.asarray(value))
        if tangent is not None:
            t._tan = {level: _wrap_const(np.asarray(tangent))}
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
    cs, cts = [], []
    for c in res:
        if c is None:
            cs.append(None)
            cts.append(None)
        elif isinstance(c, Tensor):
            cs.append(c.data)
            t = c._tan.get(level) if c._tan is not None else None
            cts.append(None if t is None else t.data)
        else:
            cs.append(c)
            cts.append(None)
    return cs, cts


def _zero_leaves(node: Node, leaf_grads: dict[Tensor, Any], needed: set[Any] | None) -> None:
    """A node no cotangent reached: its leaf inputs still get a zero gradient."""
    for e in node.edges:
        if (
            e is not None
            and type(e[0]) is not Node
            and e[0] not in leaf_grads
            and (needed is None or e[0] in needed)
        ):
            leaf_grads[e[0]] = None


def _hooks_and_targets(
    node: Node,
    g: Any,
    create_graph: bool,
    target_keys: Any,
    captured: list[Any],
    hooks: bool = True,
) -> Any:
    gs = g if node.multi else [g]
    if node.hooks and hooks:
        for k, fns in node.hooks.items():
            if gs[k] is not None:
                gs[k] = _run_hooks(fns, gs[k], create_graph)
    if target_keys is not None:
        for k in range(len(gs)):
            j = target_keys.get((node, k))
            if j is not None:
                captured[j] = gs[k]
    return gs if node.multi else gs[0]


def _check_grad(node: Node, i: int, c: Any) -> None:
    cd = c.data if isinstance(c, Tensor) else c
    if not np.all(np.isfinite(cd)):
        bad = "nan" if np.isnan(cd).any() else "inf"
        where = f"\nIt was created at:\n{node.where}" if node.where else ""
        raise FloatingPointError(
            f"backward of '{node.name}' produced {bad} in the gradient of its argument {i}{where}"
        )


def _add_node(grads: dict[Node, Any], node: Node, k: int, c: Any) -> None:
    if not node.multi:
        prev = grads.get(node)
        grads[node] = c if prev is None else prev + c
        return
    slot = grads.get(node)
    if slot is None:
        slot = grads[node] = [None] * node.nout
    slot[k] = c if slot[k] is None else slot[k] + c


def _add(d: dict[Any, Any], key: Any, c: Any) -> None:
    prev = d.get(key)
    d[key] = c if prev is None else prev + c


def _zeros(o: Any, create_graph: bool, bshape: tuple[int, ...] = ()) -> Any:
    z = np.zeros(bshape + o.shape, o.dtype)
    return _wrap_const(z) if create_graph else z


def _accumulate(t: Tensor, g: Any, create_graph: bool) -> None:
    # NOTE: .grad is read, added to and written back: under one lock, so that backward()
    # calls in several threads into a shared leaf lose no update (the rules run unlocked).
    with _GRAD_LOCK:
        if create_graph:
            t._grad = g if t._grad is None else t._grad + g
            return
        if t._grad is None:
            # NOTE: copied, so that .grad never aliases another gradient or a broadcast view,
            # unless the engine holds the only references to a fresh array of the right dtype.
            if (
                type(g) is np.ndarray
                and g.base is None
                and g.dtype == t.data.dtype
                and g.flags.writeable
                and sys.getrefcount(g) <= _OWNED
            ):
                t._grad = _wrap_const(g)
            else:
                t._grad = _wrap_const(np.array(g, dtype=t.data.dtype, copy=True))
        else:
            t._grad = _wrap_const(t._grad.data + g)


_GRAD_LOCK = threading.Lock()


def _refs_inner(g: Any) -> int:
    return sys.getrefcount(g)


def _refs_outer() -> int:
    g = np.empty(0)
    return _refs_inner(g)


# NOTE: what sys.getrefcount reports inside _accumulate for a cotangent that only the engine
# holds (a local of run_backward, the argument): probed with the same call shape, so that it holds
# on any CPython (3.14 borrows some references). One more reference means someone else (a
# hook, a saved value, another leaf's slot, the caller's seed) holds it: copy.
_OWNED = _refs_outer()
