"""Thread-local autodiff state: grad mode, anomaly detection and forward-mode dual levels."""

from __future__ import annotations

import contextlib
import threading
import weakref
from typing import Any

import numpy as np

# The bits of ``STATE.mode``: what an op must do beyond computing and recording.
NO_GRAD = 1  # recording is off (``no_grad``)
DUAL = 2  # forward-mode dual levels are open (``jvp``, ``jacfwd``, ``hvp``, ``dual_level``)
ANOMALY = 4  # ``detect_anomaly``: every result is checked, every node remembers its source
TAPE = 8  # an evaluation trace is recording (``evaluation_trace``)
SCOPE = 16  # ``hvp`` is recording its function in a reverse :class:`Scope`
# ``ad.compile`` is recording (with TAPE): backward passes and tangent rules run on Tensors,
# the ops inside tangent rules reach the tape, and every read of a value is a guard.
COMPILE = 32
VMAP = 64  # ``vmap`` levels are open: ops on batched values run batched (``STATE.vmap``)
# A Tensor of this thread wraps a Dask array (``autodiffx._xp``): every op checks its
# operands' array types in the general path; set once, NumPy-only threads never pay it.
FOREIGN = 128
#: Any of these sends an op through the dispatcher's general path.
WATCHED = NO_GRAD | DUAL | ANOMALY | TAPE | VMAP | FOREIGN


class _State(threading.local):
    """Per-thread flags; ``mode`` folds them into one int (the bits above), and ``eager``
    (none of ``WATCHED``) is the one test the hot path makes."""

    def __init__(self) -> None:
        self._grad_enabled = True
        self._anomaly = False
        self._foreign = False
        # Open dual levels, outermost first; `masked` holds levels whose tangent rule is running.
        self.levels: list[int] = []
        self.masked: set[int] = set()
        # Leading batch axes of the tangents of each level (vectorized Jacobians); the engines
        # pass them on to the rules as an argument (see autodiffx._rules).
        self.level_nb: dict[int, int] = {}
        # A callable(prim, args, params, result) that sees every top-level application
        # (ad.evaluation_trace records the Wengert list with it).
        self.tape: Any = None
        # Open vmap levels, outermost first (autodiffx._vmap), and its two hooks: ``vmap(prim,
        # args, params)`` runs an op on batched values, ``vmap_lower(who, *call)`` a transform
        # called inside vmap (both return NotImplemented when they have nothing to do).
        self.vmap_levels: list[Any] = []
        self.vmap: Any = None
        self.vmap_lower: Any = None
        # ... and ``vmap_index(x, idx)``, ``x[idx]`` with a batched index (``x`` may be unbatched);
        # ``vmap_type``: the class of batched values (for ``batched``).
        self.vmap_index: Any = None
        self.vmap_type: Any = None
        # A forward-over-reverse transform's reverse scope (see Scope), or None.
        self._scope: Scope | None = None
        # ``ad.compile``'s recorder while it records (it is the tape too), or None.
        self.compiler: Any = None
        # Per open level, weak references to the tensors (and their nodes) holding a recorded
        # tangent at that level (its graph may lead back to them: dropped at level exit).
        self.tracked: dict[int, tuple[list[Any], list[Any]]] = {}
        self.mode = 0
        self.eager = True

    def sync(self) -> None:
        """Recompute ``mode`` and ``eager`` from the flags."""
        self.mode = mode = (
            (0 if self._grad_enabled else NO_GRAD)
            | (DUAL if self.levels else 0)
            | (ANOMALY if self._anomaly else 0)
            | (TAPE if self.tape is not None else 0)
            | (SCOPE if self._scope is not None else 0)
            | (COMPILE if self.compiler is not None else 0)
            | (VMAP if self.vmap_levels else 0)
            | (FOREIGN if self._foreign else 0)
        )
        self.eager = not mode & WATCHED

    @property
    def scope(self) -> Scope | None:
        return self._scope

    @scope.setter
    def scope(self, scope: Scope | None) -> None:
        self._scope = scope
        self.mode = (self.mode & ~SCOPE) | (0 if scope is None else SCOPE)  # (eager: same)

    @property
    def grad_enabled(self) -> bool:
        return self._grad_enabled

    @grad_enabled.setter
    def grad_enabled(self, flag: bool) -> None:
        # NOTE: only the NO_GRAD bit changes (a full sync() reads every flag: ~3x the cost,
        # paid by every transform call and backward pass).
        self._grad_enabled = flag
        self.mode = mode = (self.mode & ~NO_GRAD) | (0 if flag else NO_GRAD)
        self.eager = not mode & WATCHED

    @property
    def foreign(self) -> bool:
        return self._foreign

    @foreign.setter
    def foreign(self, flag: bool) -> None:
        self._foreign = flag
        self.sync()

    @property
    def anomaly(self) -> bool:
        return self._anomaly

    @anomaly.setter
    def anomaly(self, flag: bool) -> None:
        self._anomaly = flag
        self.sync()


def batched(*xs: Any) -> bool:
    """Whether one of ``xs`` is a batched value of an open ``ad.vmap`` (whose ``data`` is
    refused); call it under ``STATE.mode & VMAP`` only, so that eager code pays nothing."""
    cls = STATE.vmap_type
    return any(isinstance(x, cls) for x in xs)


class Scope:
    """The variables of a forward-over-reverse transform (``hvp``) while it records ``f``.

    Nodes recorded in the scope keep their arguments and outputs (the tangent sweep reads
    them). Those that depend only on the variables are collected in ``inside``; anything else
    that requires grad (a closed-over parameter, a tensor computed before) is outside, and
    ``leaked`` tells the transform to keep its results' graph. Tangents at dual ``level`` of
    inside nodes are never differentiated in reverse, so their rules run on raw arrays.
    """

    __slots__ = ("inside", "leaked", "level", "order", "untracked")

    def __init__(self, leaves: Any, level: int | None = None) -> None:
        self.level = level
        self.inside: set[Any] = set(leaves)  # the variables and the inside nodes
        self.order: list[Any] = []  # the inside nodes, producers first (creation order)
        self.leaked = False
        # An op ran under no_grad on a tensor that requires grad: it is not recorded, but
        # forward mode carries tangents through it (as PyTorch's does).
        self.untracked = False

    def reaches_outside(self, args: Any) -> bool:
        """Whether an argument that requires grad depends on a tensor outside the scope."""
        inside = self.inside
        for a in args:
            if getattr(a, "_rg", False):
                n = a._node
                if (a if n is None else n) not in inside:
                    return True
        return False

    def add(self, node: Any, edges: Any) -> None:
        """Classify a node made in the scope from its edges (see ``Node``)."""
        inside = self.inside
        for e in edges:
            if e is not None and e[0] not in inside:
                self.leaked = True
                return
        inside.add(node)
        self.order.append(node)


STATE = _State()
_level_counter = [0]


class _GradMode(contextlib.ContextDecorator):
    """A ``with`` block or decorated function run with grad mode set to ``_enabled``; the
    previous mode comes back on exit (the base of ``no_grad`` and ``enable_grad``)."""

    _enabled: bool

    def __enter__(self) -> None:
        self._prev = STATE.grad_enabled
        STATE.grad_enabled = self._enabled

    def __exit__(self, *exc: object) -> None:
        STATE.grad_enabled = self._prev


class no_grad(_GradMode):
    """Disable graph recording in a ``with`` block or a decorated function.

    Examples
    --------
    >>> import autodiffx as ad
    >>> x = ad.tensor([1.0, 2.0], requires_grad=True)
    >>> with ad.no_grad():
    ...     y = x * 2
    >>> y.requires_grad
    False
    """

    _enabled = False


class enable_grad(_GradMode):
    """Re-enable graph recording inside a ``no_grad`` region.

    Examples
    --------
    >>> import autodiffx as ad
    >>> x = ad.tensor(1.0, requires_grad=True)
    >>> with ad.no_grad(), ad.enable_grad():
    ...     (x * 3).requires_grad
    True
    """

    _enabled = True


def is_grad_enabled() -> bool:
    """Return whether operations are being recorded for reverse mode in this thread.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.is_grad_enabled()
    True
    """
    return STATE.grad_enabled


class detect_anomaly(contextlib.ContextDecorator):
    """Raise at the first primitive whose forward or backward produces NaN or Inf.

    Inside the block every recorded node remembers where it was created, and the
    error names the primitive and that source line.

    Examples
    --------
    >>> import autodiffx as ad
    >>> x = ad.tensor([0.0], requires_grad=True)
    >>> with ad.detect_anomaly():
    ...     ad.sqrt(x).sum().backward()
    Traceback (most recent call last):
    ...
    FloatingPointError: backward of 'sqrt' produced inf ...
    """

    def __enter__(self) -> None:
        self._prev = STATE.anomaly
        STATE.anomaly = True

    def __exit__(self, *exc: object) -> None:
        STATE.anomaly = self._prev


# NOTE: derivative rules run without floating-point warnings (an infinite derivative, as of
# sqrt at 0, is a value; detect_anomaly() reports it). np.errstate costs ~1 µs per entry,
# as much as a small kernel, and tangent rules enter it once per op: the quiet error state
# is made once per distinct outer state and switched in by its context variable.
try:
    from numpy._core._ufunc_config import _extobj_contextvar as _EXTOBJ
except ImportError:  # pragma: no cover - a NumPy without the context variable
    _EXTOBJ = None
_QUIET: dict[Any, Any] = {}


def quiet_enter() -> Any:
    """Ignore divide, invalid and overflow floating-point errors until :func:`quiet_exit`."""
    if _EXTOBJ is None:  # pragma: no cover
        cm = np.errstate(divide="ignore", invalid="ignore", over="ignore")
        cm.__enter__()
        return cm
    return _EXTOBJ.set(_QUIET.get(_EXTOBJ.get()) or quiet_state())


def quiet_state() -> Any:
    """The quiet error state made from the current one (made once per distinct state; what
    :func:`quiet_enter` switches in, and ``ad.compile``'s programs inline)."""
    cur = _EXTOBJ.get()
    q = _QUIET.get(cur)
    if q is None:
        if len(_QUIET) > 32:
            _QUIET.clear()
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            q = _QUIET[cur] = _EXTOBJ.get()
    return q


def quiet_exit(token: Any) -> None:
    """Restore the floating-point error state saved by :func:`quiet_enter`."""
    if _EXTOBJ is None:  # pragma: no cover
        token.__exit__(None, None, None)
    else:
        _EXTOBJ.reset(token)


class new_level:
    """Open a fresh dual level (innermost) for the duration of a ``with`` block.

    A class rather than a generator: entering and leaving costs ~0.5 µs instead of ~3 µs,
    which ``jvp`` and ``hvp`` pay on every call.
    """

    __slots__ = ("level",)

    def __enter__(self) -> int:
        _level_counter[0] += 1
        self.level = level = _level_counter[0]
        st = STATE
        st.levels.append(level)
        st.mode |= DUAL  # (only the DUAL bit changes: no full sync)
        st.eager = False
        return level

    def __exit__(self, *exc: object) -> None:
        level = self.level
        st = STATE
        levels = st.levels
        levels.remove(level)
        st.level_nb.pop(level, None)
        if not levels:
            st.mode = mode = st.mode & ~DUAL
            st.eager = not mode & WATCHED
        tracked = st.tracked.pop(level, None) if st.tracked else None
        if tracked is not None:
            # NOTE: the tangents of the closed level are dropped (PyTorch's exit_dual_level
            # does the same): a recorded tangent whose graph leads back to its own tensor or
            # node (exp's is t * out) would otherwise keep both alive until the garbage
            # collector runs.
            tensors, nodes = tracked
            for r in tensors:
                t = r()
                if t is not None and t._tan:
                    t._tan.pop(level, None)
            for r in nodes:
                n = r()
                cells = None if n is None else n.outs  # (None once a backward released it)
                if cells is not None:
                    for cell in cells if n.multi else (cells,):
                        cell.pop(level, None)


def track_tangent(t: Any, level: int, tangent: Any) -> None:
    """Set ``t``'s ``tangent`` at ``level``, a recorded one: dropped when the level closes
    (see ``new_level``) from ``t`` and from the node that produced ``t``, which shares its
    tangents (``Node.outs``; a cycle can run through either)."""
    if t._tan is None:
        t._tan = {level: tangent}
    else:
        t._tan[level] = tangent
    tracked = STATE.tracked.get(level)
    if tracked is None:
        tracked = STATE.tracked[level] = ([], [])
    tracked[0].append(weakref.ref(t))
    if t._node is not None:
        tracked[1].append(weakref.ref(t._node))
