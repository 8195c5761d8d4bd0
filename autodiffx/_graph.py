"""The reverse-mode engine: iterative topological sort, rule calls, accumulation, hooks, release."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ._broadcast import fit
from ._mode import STATE, enable_grad, no_grad
from ._registry import Node, _wrap_const
from ._tensor import Tensor


def _toposort(roots: list[Node]) -> list[Node]:
    """Post-order (producers before consumers) of every node reachable from ``roots``.

    Iterative, so a chain of any depth never reaches Python's recursion limit.
    """
    order: list[Node] = []
    visited: set[int] = set()
    for root in roots:
        if id(root) in visited:
            continue
        visited.add(id(root))
        stack: list[Any] = [[root, 0]]
        while stack:
            top = stack[-1]
            node, i = top
            edges = node.edges
            n = len(edges)
            while i < n:
                e = edges[i]
                i += 1
                if e is not None:
                    child = e[0]
                    if type(child) is Node and id(child) not in visited:
                        visited.add(id(child))
                        top[1] = i
                        stack.append([child, 0])
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
    vers = node.vers
    if vers is None:
        return
    for i, (a, v) in enumerate(zip(node.args, vers)):
        if v is not None and a._vc[0] != v:
            raise RuntimeError(
                f"one of the inputs saved by '{node.name}' (argument {i}, shape "
                f"{tuple(a.shape)}) was modified by an in-place operation after it was used "
                f"(version {a._vc[0]}, expected {v}). Use an out-of-place operation "
                "(x = x + y instead of x += y), or .copy() the tensor before modifying it."
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
) -> list[Any] | None:
    """Propagate ``seeds`` from ``roots`` to the leaves (or to ``targets``).

    With ``accumulate`` the gradients are added into ``.grad`` (of every reached leaf, or of
    ``targets`` only); otherwise the gradients of ``targets`` are returned in order
    (None where unreachable).
    """
    if create_graph:
        seeds = [s if isinstance(s, Tensor) else _wrap_const(np.asarray(s)) for s in seeds]
    else:
        seeds = [np.asarray(s.data if isinstance(s, Tensor) else s) for s in seeds]
    node_grads: dict[int, list[Any]] = {}
    leaf_grads: dict[int, list[Any]] = {}  # id(leaf) -> [leaf, grad or None]
    root_nodes: list[Node] = []
    for r, s in zip(roots, seeds):
        if not r._rg:
            raise RuntimeError(
                "element of the outputs does not require grad and has no grad_fn: nothing "
                "it depends on was created with requires_grad=True (or it was computed under "
                "no_grad)"
            )
        if r._node is None:
            _add_leaf(leaf_grads, r, s)
        else:
            n = r._node
            slot = node_grads.setdefault(id(n), [None] * n.nout)
            slot[r._idx] = s if slot[r._idx] is None else slot[r._idx] + s
            root_nodes.append(n)
    order = _toposort(root_nodes)

    target_keys: dict[Any, int] | None = None
    needed: set[int] | None = None
    captured: list[Any] = []
    if targets is not None:
        target_keys = {}
        for j, t in enumerate(targets):
            key = id(t) if t._node is None else (id(t._node), t._idx)
            target_keys[key] = j
        captured = [None] * len(targets)
        needed = set()
        for n in order:  # producers first, so children are decided before their consumers
            for k in range(n.nout):
                if (id(n), k) in target_keys:
                    needed.add(id(n))
            for e in n.edges:
                if e is None:
                    continue
                c = e[0]
                if (id(c) in needed) if type(c) is Node else (id(c) in target_keys):
                    needed.add(id(n))
                    break

    ctx = enable_grad() if create_graph else no_grad()
    anomaly = STATE.anomaly
    # NOTE: rules evaluate silently where the derivative is infinite (sqrt at 0), as PyTorch;
    # detect_anomaly() is the tool that turns non-finite gradients into errors.
    with ctx, np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for node in reversed(order):
            gs = node_grads.pop(id(node), None)
            if gs is None:
                continue
            if node.args is None:
                raise _freed_error(node)
            if node.hooks:
                for k, fns in node.hooks.items():
                    if gs[k] is not None:
                        gs[k] = _run_hooks(fns, gs[k], create_graph)
            if target_keys is not None:
                for k in range(len(gs)):
                    j = target_keys.get((id(node), k))
                    if j is not None:
                        captured[j] = gs[k]
                if id(node) not in needed:  # type: ignore[operator]
                    continue
            edges = node.edges
            # `needs` is "requires grad": kink conventions (ties with constants) depend on it.
            needs = tuple(e is not None for e in edges)
            _check_versions(node)
            p = node.prim
            if node.nout == 1:
                g = gs[0]
            else:
                g = tuple(
                    gk if gk is not None else _zeros(o, create_graph)
                    for gk, o in zip(gs, node.out if node.out is not None else [None] * len(gs))
                )
            if create_graph:
                cts = p.vjp(needs, g, _out_for_rule(node, True), node.args, node.params)
            else:
                cts = p.vjp(needs, g, node.out, node.datas, node.params)
            for i, e in enumerate(edges):
                if e is None:
                    continue
                if needed is not None and (
                    (id(e[0]) not in needed) if type(e[0]) is Node else (id(e[0]) not in target_keys)
                ):
                    continue
                c = cts[i]
                if c is None:
                    continue
                if create_graph:
                    if not isinstance(c, Tensor):
                        c = _wrap_const(np.asarray(c))
                elif type(c) is not np.ndarray:
                    c = np.asarray(c.data if isinstance(c, Tensor) else c)
                if c.shape != e[2] or c.dtype != e[3]:
                    c = fit(c, e[2], e[3])
                if anomaly:
                    cd = c.data if isinstance(c, Tensor) else c
                    if not np.all(np.isfinite(cd)):
                        bad = "nan" if np.isnan(cd).any() else "inf"
                        where = f"\nIt was created at:\n{node.where}" if node.where else ""
                        raise FloatingPointError(
                            f"backward of '{node.name}' produced {bad} in the gradient of its "
                            f"argument {i}{where}"
                        )
                child = e[0]
                if type(child) is Node:
                    slot = node_grads.get(id(child))
                    if slot is None:
                        slot = node_grads[id(child)] = [None] * child.nout
                    k = e[1]
                    slot[k] = c if slot[k] is None else slot[k] + c
                else:
                    _add_leaf(leaf_grads, child, c)
            if not retain_graph:
                node.args = node.datas = node.out = node.outs = node.vers = None
        # Leaves reached only through symbolic zeros still get a (zero) gradient.
        for node in order:
            for e in node.edges:
                if e is not None and type(e[0]) is not Node and id(e[0]) not in leaf_grads:
                    if needed is None or id(e[0]) in target_keys:  # type: ignore[operator]
                        leaf_grads[id(e[0])] = [e[0], None]
        for leaf, g in leaf_grads.values():
            if g is None:
                g = np.zeros(leaf.data.shape, leaf.data.dtype)
                if create_graph:
                    g = _wrap_const(g)
            if leaf._hooks:
                g = _run_hooks(leaf._hooks, g, create_graph)
            if target_keys is not None:
                j = target_keys.get(id(leaf))
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


def _zeros(o: Any, create_graph: bool) -> Any:
    z = np.zeros(o.shape, o.dtype)
    return _wrap_const(z) if create_graph else z


def _add_leaf(leaf_grads: dict[int, list[Any]], leaf: Tensor, g: Any) -> None:
    slot = leaf_grads.get(id(leaf))
    if slot is None:
        leaf_grads[id(leaf)] = [leaf, g]
    elif slot[1] is None:
        slot[1] = g
    else:
        slot[1] = slot[1] + g


def _accumulate(t: Tensor, g: Any, create_graph: bool) -> None:
    if create_graph:
        t.grad = g if t.grad is None else t.grad + g
        return
    if t.grad is None:
        # NOTE: copied, so that .grad never aliases another gradient or a broadcast view.
        t.grad = _wrap_const(np.array(g, dtype=t.data.dtype, copy=True))
    else:
        t.grad = _wrap_const(t.grad.data + g)
