"""The reverse-mode engine: toposort, rules, accumulation, hooks, release."""

from __future__ import annotations

import sys
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._broadcast import fit, np_dtype
from ._mode import COMPILE, FOREIGN, STATE, quiet_enter, quiet_exit
from ._node import Node
from ._tensor import STAMP, Tensor, wrap
from ._xp import inexact, is_array_api, is_foreign, owned, zeros_like


def _toposort(
    roots: list[Node], stop: set[Node] | None = None, leaves: set[Any] | None = None
) -> list[Node]:
    """Post-order (producers before consumers) of every node reachable from ``roots``.

    Iterative, so a chain of any depth never reaches Python's recursion limit. Nodes in
    ``stop`` are neither entered nor listed. ``leaves``, if given, collects the leaf Tensors
    the walk reaches.
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
                    if type(child) is not Node:
                        if leaves is not None:
                            leaves.add(child)
                    elif child not in visited:
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


def _current(node: Node) -> Sequence[Any]:
    """The arrays a node's rule reads: those it saved, unless a saved Tensor's ``.data`` was
    rebound since (then the new ones, which must keep their shape and dtype)."""
    args, datas = node.args, node.datas
    if len(args) == 2:  # (unrolled: most nodes)
        (a, b), (da, db) = args, datas
        if (a is not da and a.data is not da) or (b is not db and b.data is not db):
            return _rebound(node)
        return datas
    return _rebound(node) if _stale(args, datas) else datas


def _stale(args: Sequence[Any], datas: Sequence[Any]) -> bool:
    """Whether a Tensor among a node's saved ``args`` has another ``.data`` than it had
    (``datas``); a non-Tensor argument is its own data."""
    for a, d in zip(args, datas):  # noqa: SIM110 (a generator costs a frame per node)
        if a is not d and a.data is not d:
            return True
    return False


# NOTE: PyTorch's rule for a saved tensor whose .data is rebound (t.data = new) between the
# forward and the backward: the rule reads the new values. A recorded pass (create_graph)
# reads the Tensors themselves, so a plain pass must too, or the two would disagree.
def _rebound(node: Node) -> list[Any]:
    """The arguments' current arrays, for a node one of whose saved Tensors had its ``.data``
    rebound after the op used it; a new shape or dtype raises."""
    datas = list(node.datas)
    for i, (a, d) in enumerate(zip(node.args, node.datas)):
        if a is d or not isinstance(a, Tensor):  # (an array argument the op converted: _xp)
            continue
        new = a.data
        if new is d or (type(new) is np.ndarray and is_array_api(d) and new.shape == d.shape):
            continue  # (a NumPy operand the op converted to the array-API array ``d``)
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
    t = wrap(data)
    if data.dtype.kind in "fc" if type(data) is np.ndarray else inexact(data.dtype):
        t._node, t._idx, t._rg = node, k, True
    t._tan = tangents
    return t


def _run_hooks(hooks: list[Any], g: Any, create_graph: bool) -> Any:
    for fn in hooks:
        arg = g if isinstance(g, Tensor) else wrap(g)
        r = fn(arg)
        if r is not None:
            g = r if create_graph else _raw(r.data if isinstance(r, Tensor) else r)
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
    order: list[Node] | None = None,
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
    ``order`` (the transforms, which walk the graph anyway): the roots' nodes, producers
    first, when the targets are leaves and every node leads to one (no walk, no pruning).

    The steps: seed the roots' cotangents, plan the walk (:class:`_Plan`: which nodes, in
    which order, which targets), sweep the rules over it (:func:`_sweep`, which releases
    each node's saved values unless ``retain_graph``), deliver the leaves' gradients.
    """
    st = STATE  # (each attribute of the thread-local state costs a lookup: read each once)
    if st.mode & COMPILE:  # ad.compile records the rules' ops
        if create_graph and accumulate:  # (a .grad that requires grad: refused)
            st.compiler.write(None, "backward(create_graph=True) (which writes .grad)")
        elif not create_graph:
            create_graph, record = True, False
    elif st.mode & FOREIGN and not create_graph and any(is_array_api(r.data) for r in roots):
        # NOTE: array-API arrays (array-api-strict, CuPy) have no NumPy dispatch: the rules
        # run on Tensors, so that their np.* calls reach the primitives, whose kernels are
        # the namespace's (autodiffx._xp); nothing is recorded, as ad.compile's sweep.
        create_graph, record = True, False
    cts = _Cotangents(roots, seeds, create_graph, batch_ndim)
    plan = _Plan(cts.root_nodes, targets, stop_at_targets, order)
    record = create_graph if record is None else (create_graph and record)
    prev_grad = st._grad_enabled
    # NOTE: rules evaluate silently where the derivative is infinite (sqrt at 0), as PyTorch;
    # detect_anomaly() is the tool that turns non-finite gradients into errors.
    token = quiet_enter()
    if prev_grad != record:
        st.grad_enabled = record
    try:
        _sweep(plan, cts, retain_graph=retain_graph)
        return cts.deliver(plan, accumulate, stop_at_targets)
    finally:
        if st._grad_enabled != prev_grad:
            st.grad_enabled = prev_grad
        quiet_exit(token)


class _Cotangents:
    """The cotangents of one reverse pass: by node (the value itself for a one-output node, a
    list for several) and by leaf (None: reached only through symbolic zeros)."""

    __slots__ = ("anomaly", "bshape", "create_graph", "leaves", "nb", "nodes", "root_nodes")

    def __init__(
        self, roots: Sequence[Tensor], seeds: Sequence[Any], create_graph: bool, batch_ndim: int
    ) -> None:
        """Start from the roots' cotangents ``seeds``."""
        self.create_graph = create_graph
        self.nb = batch_ndim  # leading batch axes of every cotangent
        self.anomaly = STATE._anomaly  # check every cotangent for nan and inf
        self.nodes: dict[Node, Any] = {}
        self.leaves: dict[Tensor, Any] = {}
        if create_graph:
            seeds = [s if isinstance(s, Tensor) else wrap(_raw(s)) for s in seeds]
        else:
            seeds = [_raw(s.data if isinstance(s, Tensor) else s) for s in seeds]
        self.root_nodes: list[Node] = []
        for r, s in zip(roots, seeds):
            if not r._rg:
                raise RuntimeError(
                    "element of the outputs does not require grad and has no grad_fn: nothing "
                    "it depends on was created with requires_grad=True (or it was computed "
                    "under no_grad)"
                )
            if r._node is None:
                _add(self.leaves, r, s)
            else:
                _add_node(self.nodes, r._node, r._idx, s)
                self.root_nodes.append(r._node)
        self.bshape = tuple(seeds[0].shape[: self.nb]) if self.nb else ()

    def deliver(self, plan: _Plan, accumulate: bool, stop_at_targets: bool) -> list[Any] | None:
        """Run the leaves' hooks, then accumulate into ``.grad`` or return the targets'."""
        create_graph, leaves = self.create_graph, self.leaves
        for leaf in list(leaves):
            g = leaves.pop(leaf)
            if g is None:
                g = _zeros(leaf.data, create_graph, self.bshape)
            if leaf._hooks and not stop_at_targets:
                g = _run_hooks(leaf._hooks, g, create_graph)
            j = plan.target_keys.get(leaf) if plan.target_keys is not None else None
            if j is not None:
                plan.captured[j] = g
            elif plan.target_keys is None and accumulate:
                _accumulate(leaf, g, create_graph)
        if plan.target_keys is None:
            return None
        if accumulate:
            for t, g in zip(plan.targets, plan.captured):
                if g is not None:
                    _accumulate(t, g, create_graph)
            return None
        return plan.captured


class _Plan:
    """Which nodes a reverse pass visits, in which order, and where its targets are.

    ``order`` is producers first (the sweep walks it reversed). With targets, ``needed``
    holds the nodes and leaves on a path to one (None: every node), ``target_keys`` maps a
    target (a leaf, or a node's output ``(node, k)``) to its place in ``captured``.
    ``stops`` (``stop_at_targets``): the targets' nodes, through which nothing flows.
    """

    __slots__ = ("captured", "needed", "order", "stops", "target_keys", "target_nodes", "targets")

    def __init__(
        self,
        roots: list[Node],
        targets: Sequence[Tensor] | None,
        stop_at_targets: bool,
        order: list[Node] | None = None,
    ) -> None:
        self.targets = targets
        self.stops: set[Node] | None = None
        if order is not None and targets is not None and not stop_at_targets:
            # Every node leads to a leaf target (the caller checked): nothing to prune.
            self.order, self.needed, self.target_nodes = order, None, set()
            self.target_keys = {t: j for j, t in enumerate(targets)}
            self.captured = [None] * len(targets)
            return
        if stop_at_targets:
            self.stops = {t._node for t in targets or () if t._node is not None}
            self.order = [*self.stops, *_toposort(roots, self.stops)]  # stops last when reversed
        else:
            self.order = _toposort(roots)
        self.target_keys: dict[Any, int] | None = None
        self.needed: set[Any] | None = None
        self.captured: list[Any] = []
        self.target_nodes: set[Node] = set()  # nodes with an output among the targets
        if targets is not None:
            self._prune(targets)

    def _prune(self, targets: Sequence[Tensor]) -> None:
        """Keep only the nodes on a path from the roots to a target."""
        keys: dict[Any, int] = {}
        for j, t in enumerate(targets):
            if t._node is None:
                keys[t] = j
            else:
                keys[(t._node, t._idx)] = j
                self.target_nodes.add(t._node)
        self.target_keys = keys
        self.captured = [None] * len(targets)
        needed = {t for t in targets if t._node is None} | self.target_nodes
        for n in self.order:  # producers first, so children are decided before their consumers
            if n not in needed:
                for e in n.edges:
                    if e is not None and e[0] in needed:
                        needed.add(n)
                        break
        self.needed = needed

    def visit(self, node: Node, g: Any, create_graph: bool) -> Any:
        """At a node with hooks or a target output: run the hooks, capture the targets'
        cotangents; return the cotangent to go on with (None: stop at this node)."""
        if self.stops is not None and node in self.stops:
            _hooks_and_targets(node, g, False, self.target_keys, self.captured, hooks=False)
            return None
        return _hooks_and_targets(node, g, create_graph, self.target_keys, self.captured)


def _sweep(plan: _Plan, cts: _Cotangents, *, retain_graph: bool) -> None:
    """Run every planned node's rule, consumers first, and add each argument's cotangent to
    its producer's (a node or a leaf), fitted to the argument (:func:`_conform`, the one
    place broadcasting is undone); release the node's saved values unless ``retain_graph``."""
    # NOTE: one loop, the common rule call and the sends inline: as two calls per node,
    # W1's forward + backward took 5% more instructions (callgrind).
    grads, leaves, nb = cts.nodes, cts.leaves, cts.nb
    create_graph, anomaly = cts.create_graph, cts.anomaly
    needed, target_nodes, stamp = plan.needed, plan.target_nodes, STAMP[0]
    for node in reversed(plan.order):
        g = grads.pop(node, None)
        rare = g is None or node.args is None or node.hooks
        if rare or node in target_nodes or node.stamp != stamp:
            g = _arrive(node, g, cts, plan)  # (hooks, targets, versions, unreached, freed)
            if g is None:
                continue
        if needed is not None and node not in needed:
            continue
        if create_graph or node.multi:
            res = _rule(node, g, cts)
        else:  # `needs` is the edge list: an edge (truthy) means "requires grad"
            p = node.prim
            datas = _current(node) if p.save_args else node.datas
            res = p.vjp(node.edges, g, node.out, datas, node.params, nb)
        i = -1
        for e in node.edges:
            i += 1
            if e is None or (needed is not None and e[0] not in needed):
                continue
            c, child = res[i], e[0]
            if c is None:
                # A leaf reached only through symbolic zeros still gets a zero gradient.
                if type(child) is not Node and child not in leaves:
                    leaves[child] = None
                continue
            if type(c) is not np.ndarray or nb or c.shape != e[2] or c.dtype is not e[3]:
                c = _conform(c, e, create_graph, nb)  # (``is not``: dtypes are singletons)
            if anomaly:
                _check_grad(node, i, c)
            if type(child) is not Node:
                prev = leaves.get(child)
                leaves[child] = c if prev is None else prev + c
            elif not child.multi:
                prev = grads.get(child)
                grads[child] = c if prev is None else prev + c
            else:
                _add_node(grads, child, e[1], c)
        if not retain_graph:
            node.args = node.datas = node.out = node.outs = None


def _arrive(node: Node, g: Any, cts: _Cotangents, plan: _Plan) -> Any:
    """The cotangent a node's rule receives: None where no cotangent reached it (its leaf
    inputs still get a zero gradient) or it is a stop; after its hooks, its targets'
    capture, and the check that nothing it saved was modified in place since."""
    if g is None:
        _zero_leaves(node, cts.leaves, plan.needed)
        return None
    if node.args is None:
        raise _freed_error(node)
    if node.hooks or node in plan.target_nodes:
        g = plan.visit(node, g, cts.create_graph)
        if g is None:
            return None
    if node.stamp != STAMP[0]:
        _check_versions(node)
    return g


def _rule(node: Node, g: Any, cts: _Cotangents) -> Sequence[Any]:
    """The node's VJP: the cotangents of its arguments (None where zero); the sweep
    inlines the common case (a plain pass, one output)."""
    p = node.prim
    if node.multi:  # outputs no cotangent reached: zeros
        g = tuple(
            gk if gk is not None else _zeros(o, cts.create_graph, cts.bshape)
            for gk, o in zip(g, node.out)
        )
    datas = _current(node) if p.save_args else node.datas  # (raises if .data was rebound
    # to another shape or dtype)
    # `needs` is the edge list: an edge (truthy) means "requires grad".
    if cts.create_graph:
        out, datas = _out_for_rule(node, True), node.args
    else:
        out = node.out
    return p.vjp(node.edges, g, out, datas, node.params, cts.nb)  # type: ignore[no-any-return]


def _conform(c: Any, e: Any, create_graph: bool, nb: int) -> Any:
    """A rule's cotangent as the engine carries it: an ndarray (a Tensor when recording),
    fitted to the shape and dtype ``e[2]``, ``e[3]`` of the argument (``nb`` batch axes)."""
    if create_graph:
        if not isinstance(c, Tensor):
            c = wrap(_raw(c))
        if nb or c.shape != e[2] or (c.dtype is not e[3] and np_dtype(c.dtype) != np_dtype(e[3])):
            if (
                not c._rg
                and c._tan is None
                and type(c.data) is np.ndarray
                and not STATE.mode & COMPILE
            ):
                return wrap(fit(c.data, e[2], e[3], nb))  # a constant: fitted raw
            return fit(c, e[2], e[3], nb)
        return c
    if type(c) is not np.ndarray:
        c = _raw(c.data if isinstance(c, Tensor) else c)
    if nb or c.shape != e[2] or c.dtype != e[3]:
        c = fit(c, e[2], e[3], nb)
    return c


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


def _raw(c: Any) -> Any:
    """A cotangent as an ndarray, or the Dask array it is (kept lazy)."""
    if type(c) is np.ndarray:
        return c
    return c if is_foreign(c) else np.asarray(c)


def _zeros(o: Any, create_graph: bool, bshape: tuple[int, ...] = ()) -> Any:
    if type(o) is np.ndarray or not is_foreign(o):
        z = np.zeros(bshape + o.shape, o.dtype)
    else:
        z = zeros_like(o, bshape + o.shape)
    return wrap(z) if create_graph else z


def _accumulate(t: Tensor, g: Any, create_graph: bool) -> None:
    # NOTE: .grad is read, added to and written back: under one lock, so that backward()
    # calls in several threads into a shared leaf lose no update (the rules run unlocked).
    if create_graph and STATE.mode & COMPILE:  # ad.compile: replayed as an effect (a call)
        STATE.compiler.accumulate(t, g)
        return
    with _GRAD_LOCK:
        if create_graph:
            t._grad = g if t._grad is None else t._grad + g
            return
        if t._grad is None:
            # NOTE: copied, so that .grad never aliases another gradient or a broadcast view,
            # unless the engine holds the only references to a fresh array of the right dtype.
            if (
                type(g) is np.ndarray
                and type(t.data) is np.ndarray
                and g.base is None
                and g.dtype == t.data.dtype
                and g.flags.writeable
                and sys.getrefcount(g) <= _OWNED
            ):
                t._grad = wrap(g)
            else:
                t._grad = wrap(owned(g, t.data.dtype, t.data))
        else:
            t._grad = wrap(t._grad.data + g)


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
