"""The reverse-mode engine: iterative topological sort, rule calls, accumulation, hooks, release."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._broadcast import fit
from ._mode import STATE, enable_grad, no_grad, quiet_enter, quiet_exit
from ._registry import Node, _wrap_const
from ._tensor import STAMP, Tensor


def _toposort(roots: list[Node]) -> list[Node]:
    """Post-order (producers before consumers) of every node reachable from ``roots``.

    Iterative, so a chain of any depth never reaches Python's recursion limit.
    """
    order: list[Node] = []
    visited: set[Node] = set()
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
    if vcs is not None:
        for k, vc in enumerate([vcs] if not node.multi else vcs):
            if vc[0] > stamp:
                raise _inplace_error(node, f"output {k}")


def _inplace_error(node: Node, what: str) -> RuntimeError:
    return RuntimeError(
        f"a value saved by '{node.name}' for its backward ({what}) was modified by an "
        "in-place operation after it was used. Use an out-of-place operation (x = x + y "
        "instead of x += y), or .copy() the tensor before modifying it."
    )


def _out_for_rule(node: Node, create_graph: bool) -> Any:
    if not create_graph:
        return node.out
    if node.outs is not None:
        return node.outs
    out = node.out
    if out is None:
        return None
    if node.prim.nout == 1:
        return _as_output(out, node, 0)
    return tuple(_as_output(o, node, k) for k, o in enumerate(out))


def _as_output(data: np.ndarray, node: Node, k: int) -> Tensor:
    t = _wrap_const(data)
    if data.dtype.kind in "fc":
        t._node, t._idx, t._rg = node, k, True
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
    tangents_at: int | None = None,
) -> list[Any] | None:
    """Propagate ``seeds`` from ``roots`` to the leaves (or to ``targets``).

    With ``accumulate`` the gradients are added into ``.grad`` (of every reached leaf, or of
    ``targets`` only); otherwise the gradients of ``targets`` are returned in order
    (None where unreachable). With ``batch_ndim`` the seeds carry that many leading batch
    axes, kept through every rule (one pass computes many vector-Jacobian products).
    ``record=False`` with ``create_graph`` evaluates the rules on Tensors (so forward-mode
    tangents flow through them: forward-over-reverse) without recording a reverse graph.
    With ``tangents_at`` (a dual level; with ``create_graph``, ``record=False`` and leaf
    ``targets``) the targets' gradients are returned as their tangents at that level only, raw
    arrays: an edge into a target through a multilinear rule whose other arguments carry no
    tangent then costs the tangent alone (the primal gradient, dead in an HVP, is skipped).
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

    # Tangent-only contributions to target leaves (forward-over-reverse, see ``tangents_at``).
    leaf_tans: dict[Tensor, Any] = {}
    tl = tangents_at if create_graph and not record and target_keys is not None else None
    anomaly = STATE.anomaly
    nb = batch_ndim
    bshape = tuple(seeds[0].shape[:nb]) if nb else ()
    record = create_graph if record is None else (create_graph and record)
    prev_nb = STATE.nb
    STATE.nb = nb
    # NOTE: rules evaluate silently where the derivative is infinite (sqrt at 0), as PyTorch;
    # detect_anomaly() is the tool that turns non-finite gradients into errors.
    token = quiet_enter()
    try:
        with enable_grad() if record else no_grad():
            for node in reversed(order):
                g = grads.pop(node, None)
                if g is None:
                    _zero_leaves(node, leaf_grads, needed)
                    continue
                if node.args is None:
                    raise _freed_error(node)
                if node.hooks or node in target_nodes:
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
                needs = node.edges
                if tl is not None and p.multilinear:
                    needs = _tangent_only(node, g, tl, target_keys, leaf_tans, nb)
                    if needs is None:
                        if not retain_graph:
                            node.args = node.datas = node.out = node.outs = None
                        continue
                if create_graph:
                    cts = p.vjp(needs, g, _out_for_rule(node, True), node.args, node.params)
                else:
                    # `needs` is the edge list: an edge (truthy) means "requires grad".
                    cts = p.vjp(node.edges, g, node.out, node.datas, node.params)
                i = -1
                for e in needs:
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
                if leaf._hooks:
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
        if tl is not None:
            return [_tangent_of(g, tl, leaf_tans.get(t)) for t, g in zip(targets, captured)]
        if accumulate:
            for t, g in zip(targets, captured):
                if g is not None:
                    _accumulate(t, g, create_graph)
            return None
        return captured
    finally:
        quiet_exit(token)
        STATE.nb = prev_nb


def _tangent_only(
    node: Node,
    g: Tensor,
    level: int,
    target_keys: dict[Any, int],
    leaf_tans: dict[Tensor, Any],
    nb: int,
) -> list[Any] | None:
    """Add the tangent-only cotangents of ``node``'s edges into target leaves to ``leaf_tans``.

    Returns the edges still to evaluate on dual Tensors (None when none is left). An edge
    qualifies when it leads to a target leaf and no other argument has a tangent at
    ``level``: the rule is linear in the cotangent and reads only the other arguments, so the
    tangent of its result is the rule applied to the cotangent's tangent.
    """
    edges = node.edges
    into = [i for i, e in enumerate(edges) if e is not None and e[0] in target_keys]
    if not into:
        return edges
    with_tan = [
        i
        for i, a in enumerate(node.args)
        if isinstance(a, Tensor) and a._tan is not None and level in a._tan
    ]
    raw = [i for i in into if not any(j != i for j in with_tan)]
    if not raw:
        return edges
    gt = g._tan.get(level) if g._tan is not None else None
    if gt is not None:
        needs = [e if i in raw else None for i, e in enumerate(edges)]
        cts = node.prim.vjp(needs, gt.data, node.out, node.datas, node.params)
        for i in raw:
            c = cts[i]
            if c is None:
                continue
            e = edges[i]
            c = np.asarray(c)
            if nb or c.shape != e[2] or c.dtype != e[3]:
                c = fit(c, e[2], e[3], nb)
            _add(leaf_tans, e[0], c)
    if len(raw) == sum(e is not None for e in edges):
        return None
    return [None if i in raw else e for i, e in enumerate(edges)]


def _tangent_of(g: Any, level: int, extra: Any) -> Any:
    """The tangent at ``level`` of a dual gradient (or None) plus tangent-only contributions."""
    t = None
    if g is not None and g._tan is not None:
        tt = g._tan.get(level)
        t = None if tt is None else tt.data
    if extra is None:
        return t
    return extra if t is None else t + extra


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
    node: Node, g: Any, create_graph: bool, target_keys: Any, captured: list[Any]
) -> Any:
    gs = g if node.multi else [g]
    if node.hooks:
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
    if create_graph:
        t.grad = g if t.grad is None else t.grad + g
        return
    if t.grad is None:
        # NOTE: copied, so that .grad never aliases another gradient or a broadcast view,
        # unless the engine holds the only references to a fresh array of the right dtype.
        if (
            type(g) is np.ndarray
            and g.base is None
            and g.dtype == t.data.dtype
            and g.flags.writeable
            and sys.getrefcount(g) <= _OWNED
        ):
            t.grad = _wrap_const(g)
        else:
            t.grad = _wrap_const(np.array(g, dtype=t.data.dtype, copy=True))
    else:
        t.grad = _wrap_const(t.grad.data + g)


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
