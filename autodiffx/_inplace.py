"""In-place writes (``x += y``, ``x[idx] = v``), also through views: PyTorch's semantics."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._mode import COMPILE, FOREIGN, STATE
from ._registry import apply
from ._tensor import (
    LeafWriteError,
    Tensor,
    _write_error,
    bump_version,
    move_retain_grad,
    wrap,
)
from ._views import _prune
from ._xp import is_foreign
from .ops import raw_index
from .ops import setitem as setitem_op
from .ops.shape import _is_basic, getitem_, reshape_, setitem_


def _recorded(self: Tensor, o: Any) -> bool:
    """Whether a write of ``o`` into ``self`` must be recorded; raise where it is refused."""
    if not (STATE.grad_enabled or STATE.levels):
        return False
    other = isinstance(o, Tensor) and (o._rg or o._tan is not None)
    if view_of(self) is not None:
        return needs_graph(self, other)
    if not (self._rg or self._tan is not None or other):
        return False
    if self._rg and self._node is None and STATE.grad_enabled:
        raise LeafWriteError(
            "a leaf tensor that requires grad is being modified in place; update "
            "parameters under `with ad.no_grad():`, or write x = x + y to make a new tensor",
            self,
        )
    return True


def _check_write(t: Tensor, what: str) -> None:
    """Report a write to ad.compile; refuse one into a tensor over a foreign array."""
    if STATE.mode & COMPILE:
        STATE.compiler.write(t, what)
    if is_foreign(t.data):
        d = t.data
        raise TypeError(
            f"{what} into a tensor backed by a {type(d).__module__}.{type(d).__name__} array: "
            "in-place writes run on NumPy arrays only (docs/backends.md); write the result "
            "to a new tensor (y = x + 1, ad.where(mask, v, x))"
        )


def inplace(self: Tensor, p: Any, o: Any, raw: Any = None) -> None:
    """``self`` op= ``o`` for primitive ``p`` (``x += y``): recorded when grad or forward
    mode sees it, written into the buffer either way (``raw``: the kernel for a plain write)."""
    if STATE.mode & (COMPILE | FOREIGN):
        _check_write(self, f"an in-place {p.name}")
    if _recorded(self, o):
        src = self
        if p.save_args:
            # NOTE: the op's own node must see the old values, which are overwritten below
            # (those of `o` too when it shares this buffer, as in x *= x).
            src = snapshot(self, self.data.copy())
            if isinstance(o, Tensor) and (o is self or (o._vc is not None and o._vc is self._vc)):
                o = snapshot(o, o.data.copy())
        res = apply(p, (src, o))
        if res.shape != self.shape:
            raise ValueError(
                f"in-place {p.name}: result shape {res.shape} differs from the tensor's "
                f"shape {self.shape}"
            )
        try:
            np.copyto(self.data, res.data, casting="same_kind")
        except (TypeError, ValueError) as e:
            raise type(e)(_write_error(f"in-place {p.name}", self, e)) from e
        commit(self, res)
    else:
        od = o.data if isinstance(o, Tensor) else o
        try:
            (raw or p.kernel)(self.data, od, out=self.data)
        except (TypeError, ValueError, np._core._exceptions._UFuncOutputCastingError) as e:
            raise TypeError(_write_error(f"in-place {p.name}", self, e)) from e
    bump_version(self)


def setitem(self: Tensor, idx: Any, value: Any) -> None:
    """``self[idx] = value``: recorded when grad or forward mode sees it."""
    if STATE.mode & (COMPILE | FOREIGN):
        _check_write(self, "an item assignment (t[i] = v)")
    if _recorded(self, value):
        res = setitem_op(self, idx, value)
        try:
            self.data[raw_index(idx)] = res.data[raw_index(idx)]
        except ValueError as e:
            raise ValueError(_write_error("setitem", self, e)) from e
        commit(self, res)
    else:
        v = value.data if isinstance(value, Tensor) else value
        try:
            self.data[raw_index(idx)] = v
        except (ValueError, IndexError, TypeError) as e:
            raise type(e)(_write_error("setitem", self, e)) from e
    bump_version(self)


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
    s = wrap(data, t._idx)
    s._node, s._rg, s._tan = t._node, t._rg, t._tan
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
        old, old_idx = t._node, t._idx
        t._node, t._idx, t._rg, t._tan = res._node, res._idx, res._rg, res._tan
        if old is not None and old.hooks:
            move_retain_grad(t, old, old_idx)  # PyTorch's: .grad is of the new value
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
