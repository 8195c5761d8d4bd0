"""Views and in-place writes through them: a view's history always follows its base's."""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np

from ._mode import STATE
from ._tensor import LeafWriteError, Tensor, _new

# NOTE: PyTorch's semantics, done eagerly. A view made by a view primitive (basic indexing,
# reshape, transpose, diagonal, ...) records its parent and how it was made (`_view`) and is
# registered, by weak reference, in the version cell that it shares with its base. An
# in-place write through a view rewrites the base's history (PyTorch's CopySlices): the
# base becomes `setitem(old base, positions of the view, new values)`. Whenever a base's
# history changes, its live views are made again from it (PyTorch regenerates a view's
# grad_fn when the version moved), so a view always reads its base's current history.
# Regeneration is eager: operators read `_node`/`_tan` without a check, and an ordinary op
# must not pay for a staleness test. The costs: a view op registers its view (a weak
# reference, ~3,000 instructions, a fifth of a getitem); an in-place write on a base with
# live views makes each of them again; other ops pay nothing.


_ref = weakref.ref


def link_view(res: Tensor, args: Any, p: Any, params: dict[str, Any], no_grad: int) -> None:
    """Make ``res``, the output of view primitive ``p`` on ``args``, a view of ``args[0]`` if
    it shares its memory (NumPy copies for advanced indices and some reshapes); ``no_grad``:
    made with grad mode off."""
    x = args[0]
    xd = x.data
    out = res.data
    b = out.base
    if out is not xd and (b is None or (b is not xd and b is not xd.base)):
        return
    # (inlined: this runs for every view op)
    cell = x._vc
    if cell is None:
        cell = x._vc = [0, [], 16]
    elif len(cell) == 1:
        cell += ([], 16)
    res._vc = cell
    res._view = (x, p, args[1:], params, no_grad)
    refs = cell[1]
    if refs and refs[-1]() is None:  # (the last view was a temporary: most are)
        refs[-1] = _ref(res)
        return
    refs.append(_ref(res))
    if len(refs) > cell[2]:
        _prune(cell)


def _prune(cell: list[Any]) -> None:
    """Drop the dead views of a version cell ``[stamp, views (weak refs, oldest first), limit]``
    (amortized: the limit doubles with the live views)."""
    refs = cell[1] = [r for r in cell[1] if r() is not None]
    cell[2] = max(16, 2 * len(refs))


def link_outputs(res: Any, x: Tensor, p: Any, params: dict[str, Any], no_grad: int) -> None:
    """The outputs of a multi-output view primitive (``split``), each described as an index."""
    from .ops.shape import getitem_

    for t, idx in zip(res, p.view_steps(x.data.shape, **params)):
        link_view(t, (x,), getitem_, {"idx": idx}, no_grad)


def view_of(t: Tensor) -> Any:
    """``t``'s view record (parent, prim, args, params, made under no_grad), or None."""
    vc = t._vc
    if vc is None or len(vc) == 1:
        return None
    return getattr(t, "_view", None)


def chain(t: Tensor) -> tuple[Tensor, list[Any], bool]:
    """``(root, steps, no_grad)``: the base ``t`` is a view of, the steps from it to ``t``
    (prim, args, params), and whether any step was made under no_grad."""
    steps = []
    no_grad = False
    info = view_of(t)
    while info is not None:
        steps.append(info[1:4])
        no_grad = no_grad or info[4]
        t = info[0]
        info = view_of(t)
    steps.reverse()
    return t, steps, no_grad


def needs_graph(v: Tensor, other: bool) -> bool:
    """Whether an in-place write to view ``v`` must be recorded; raise when it is refused."""
    root, _, no_grad = chain(v)
    if STATE.grad_enabled and v._rg and v._node is None:
        raise LeafWriteError(
            f"a leaf tensor that requires grad (a view of shape {v.shape}) is being modified "
            "in place; update parameters under `with ad.no_grad():`, or write x = x + y to "
            "make a new tensor",
            v,
        )
    if STATE.grad_enabled and root._rg:
        if root._node is None:
            raise LeafWriteError(
                f"a view (shape {v.shape}) of a leaf tensor that requires grad (shape "
                f"{root.shape}) is being modified in place; update parameters under `with "
                "ad.no_grad():`, or write into a copy (y = x.copy())",
                root,
            )
        if no_grad:
            raise RuntimeError(
                f"a view (shape {v.shape}) made under no_grad() of a tensor that requires grad "
                f"(shape {root.shape}) is being modified in place with grad mode on, which "
                "would leave it ambiguous whether the write carries the base's history "
                "(PyTorch refuses it too); make the view outside no_grad(), modify it inside "
                "no_grad(), or write into a copy (y = v.copy())"
            )
    return v._rg or v._tan is not None or other or root._rg or root._tan is not None


def snapshot(t: Tensor, data: np.ndarray) -> Tensor:
    """A Tensor with ``t``'s place in the graph (node, tangents) around ``data``."""
    s = _new(Tensor)
    s.data = data
    s._grad = s._hooks = s._vc = None
    s._node, s._idx, s._rg, s._tan = t._node, t._idx, t._rg, t._tan
    return s


def commit(t: Tensor, res: Tensor) -> None:
    """``t``'s buffer now holds ``res``'s values: give ``t`` (or, through a view, its base)
    the history of ``res``, and make the base's views again."""
    root, steps, _ = chain(t)
    if steps and not _reaches(root.data, steps, t.data):
        t._view = None  # its base's buffer was replaced (.data =): no longer a view
        root, steps = t, []
    if not steps:
        _take(t, res)
    else:
        _take(root, _scatter(snapshot(root, root.data), res, steps))
    refresh(root)


def _take(t: Tensor, res: Tensor) -> None:
    """``t`` takes ``res``'s place in the graph; under no_grad only in forward mode (reverse
    mode does not see a write made under no_grad, as in PyTorch)."""
    if STATE.grad_enabled:
        t._node, t._idx, t._rg, t._tan = res._node, res._idx, res._rg, res._tan
    else:
        t._tan = res._tan


def _address(a: np.ndarray) -> tuple[Any, ...]:
    return (a.__array_interface__["data"][0], a.shape, a.strides, a.dtype)


def _reaches(base: np.ndarray, steps: list[Any], data: np.ndarray) -> bool:
    """Whether ``steps`` applied to ``base`` give exactly the memory of ``data``."""
    a = base
    for prim, args, params in steps:
        a = np.asarray(prim.kernel(a, *args, **params))
    return _address(a) == _address(data)


def _scatter(b: Tensor, res: Tensor, steps: list[Any]) -> Tensor:
    """``b`` with the elements that ``steps`` select replaced by ``res`` (recorded)."""
    from .ops.shape import _is_basic, getitem_, reshape_, setitem_

    if len(steps) == 1 and steps[0][0] is getitem_ and _is_basic(steps[0][2]["idx"]):
        return setitem_(b, res, idx=steps[0][2]["idx"])
    shape = b.data.shape
    if not shape:  # a 0-d base: every view of it is its one element
        return reshape_(res, shape=())
    pos = np.arange(b.data.size).reshape(shape)
    for prim, args, params in steps:
        if prim.view != "alias":  # (astype without a cast, real of a real array: same positions)
            pos = np.asarray(prim.kernel(pos, *args, **params))
    return setitem_(b, res, idx=np.unravel_index(pos, shape))


def refresh(root: Tensor) -> None:
    """Make every live view of ``root`` again from ``root``'s current history."""
    vc = root._vc
    if vc is None or len(vc) == 1:
        return
    refs = vc[1]
    vc[1] = []  # the views made here are temporaries: not registered
    try:
        for r in refs:
            w = r()
            if w is None or w is root or chain(w)[0] is not root:
                continue
            parent, prim, args, params, _ = w._view
            new = prim(parent, *args, **params)
            if _address(new.data) != _address(w.data):
                w._view = None  # its buffer or its parent's was replaced: no longer a view
                continue
            _take(w, new)
    finally:
        vc[1] = refs
        _prune(vc)
