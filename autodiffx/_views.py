"""Views: an op's result that shares its argument's memory is linked to it (its base).

In-place writes through views, which rewrite the base's history, are in
:mod:`autodiffx._inplace`.
"""

from __future__ import annotations

import weakref
from typing import Any

from ._tensor import Tensor

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


def link_outputs(
    res: Any, x: Tensor, p: Any, params: dict[str, Any], no_grad: int, getitem_: Any
) -> None:
    """The outputs of a multi-output view primitive (``split``), each described as the index
    ``getitem_`` (the registry's getitem) takes to make it."""
    for t, idx in zip(res, p.view_steps(x.data.shape, **params)):
        link_view(t, (x,), getitem_, {"idx": idx}, no_grad)
