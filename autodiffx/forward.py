"""Forward mode as dual tensors: ``dual_level``, ``make_dual``, ``unpack_dual``."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from ._broadcast import fit
from ._mode import STATE, new_level
from ._registry import defprim
from ._tensor import Tensor
from ._xp import is_foreign, is_lazy

# NOTE: a copy, not a view: a write into a dual tensor (or into the variable of a transform)
# must not change its primal's buffer behind the primal's history, and a view would lose the
# tangent make_dual attaches to it whenever the primal is modified in place (views are made
# again from their base, see autodiffx._views).
alias = defprim(
    "alias",
    lambda x: np.array(x, copy=True) if type(x) is np.ndarray or not is_lazy(x) else x.copy(),
    vmap="map",
    linear=lambda g, x: (g,),
    shapes=False,
    partials=("1",),
    export=False,
    doc="The same values as a new tensor, in its own buffer (what make_dual attaches a "
    "tangent to).",
)


class dual_level(new_level):
    """Open a forward-mode level; dual tensors made inside carry tangents through every op.

    Levels nest (for derivatives of derivatives); tangents are dropped at exit.

    Examples
    --------
    >>> import autodiffx as ad
    >>> with ad.forward.dual_level():
    ...     x = ad.forward.make_dual(ad.tensor(2.0), ad.tensor(1.0))
    ...     y = x * x * x
    ...     ad.forward.unpack_dual(y).tangent
    tensor(12.)
    """

    __slots__ = ()


def _current_level(level: int | None) -> int:
    if level is not None:
        return level
    if not STATE.levels:
        raise RuntimeError("make_dual/unpack_dual must be called inside `with dual_level():`")
    return STATE.levels[-1]


def make_dual(
    primal: Any, tangent: Any, level: int | None = None, *, batched: bool = False
) -> Tensor:
    """A tensor with the values of ``primal`` carrying ``tangent`` at the current level.

    With ``batched=True`` the tangent has one extra leading axis: a batch of tangents pushed
    through every op in one pass (columns of a Jacobian). All dual tensors of a level must
    agree on batching.

    Examples
    --------
    >>> import autodiffx as ad
    >>> with ad.forward.dual_level():
    ...     x = ad.forward.make_dual(ad.tensor([1.0, 0.5]), ad.tensor([1.0, 0.0]))
    ...     ad.forward.unpack_dual(ad.sin(x)).tangent
    tensor([0.54030231, 0.        ])
    """
    lvl = _current_level(level)
    p = primal if isinstance(primal, Tensor) else Tensor(_array(primal))
    if p.dtype.kind not in "fc":  # (Tensor.dtype is NumPy's for every backend)
        p = p.astype(np.float64)
    t = tangent if isinstance(tangent, Tensor) else Tensor(_array(tangent))
    nb = 1 if batched else 0
    if t.shape[nb:] != p.shape or t.ndim < nb:
        raise ValueError(
            f"make_dual: tangent shape {t.shape} does not match primal shape {p.shape}"
            + (" (with a leading batch axis)" if batched else "")
        )
    if STATE.level_nb.setdefault(lvl, nb) != nb:
        raise ValueError("make_dual: all dual tensors of one level must agree on `batched`")
    if t.dtype != p.dtype:
        if t.dtype.kind not in "fciub":
            raise TypeError(f"make_dual: tangent dtype {t.dtype} is not numeric")
        t = fit(t, p.shape, p.dtype, nb)
    out = alias(p)
    if out._tan is None:
        out._tan = {}
    out._tan[lvl] = t
    return out


def _array(v: Any) -> Any:
    """``v`` as a Tensor's data: a foreign array as it is, anything else as an ndarray."""
    if type(v) is np.ndarray:
        return v
    return v if is_foreign(v) else np.asarray(v)


class UnpackedDual(NamedTuple):
    """``(primal, tangent)`` of a dual tensor; tangent is None when it has none."""

    primal: Tensor
    tangent: Tensor | None


def unpack_dual(t: Any, level: int | None = None) -> UnpackedDual:
    """Split a dual tensor into its primal and its tangent (None if it carries none).

    Examples
    --------
    >>> import autodiffx as ad
    >>> with ad.forward.dual_level():
    ...     p, t = ad.forward.unpack_dual(ad.tensor(1.0))
    >>> t is None
    True
    """
    lvl = _current_level(level)
    if not isinstance(t, Tensor):
        return UnpackedDual(Tensor(np.asarray(t)), None)
    tan = t._tan.get(lvl) if t._tan is not None else None
    primal = alias(t)
    if primal._tan is not None:
        primal._tan.pop(lvl, None)
    return UnpackedDual(primal, tan)
