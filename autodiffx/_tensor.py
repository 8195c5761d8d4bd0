"""The Tensor: an ndarray wrapped by composition, with its place in the recorded graph."""

from __future__ import annotations

import math
import warnings
import weakref
from collections.abc import Callable, Iterator
from typing import Any, overload

import numpy as np

from ._broadcast import np_dtype
from ._convert import check_conversion, refused, ufunc_name
from ._mode import COMPILE, STATE
from ._xp import (
    adopt,
    cast,
    inexact,
    inspect,
    is_array_api,
    is_foreign,
    is_lazy,
    item,
    ones_like,
)

_new = object.__new__


# ----- names of the layers above, bound once by autodiffx._bind -----------------------------
# This module imports no higher layer (docs/architecture.md). The Tensor's operators and
# methods reach the dispatcher, the registry, the ops, the reverse engine and in-place
# writes through the names below, which autodiffx._bind sets when the package loads.
def _unbound(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("autodiffx is not fully imported: autodiffx._bind binds this name")


_apply: Callable[..., Any] = _unbound  # autodiffx._registry.apply: run a primitive
_apply2: Callable[..., Any] = _unbound  # autodiffx._registry.apply2: the operators' entry
_backward: Callable[..., Any] = _unbound  # autodiffx._graph.run_backward
_write: Callable[..., Any] = _unbound  # autodiffx._inplace.inplace: x += y and the like
_write_item: Callable[..., Any] = _unbound  # autodiffx._inplace.setitem: x[idx] = value
_F: Any = None  # the ops package (autodiffx.ops): Tensor methods are its functions
_REGISTRY: dict[str, Any] = {}  # primitives by name
_UFUNCS: dict[Any, Any] = {}  # NumPy ufunc -> primitive (for __array_ufunc__)
_FUNCTIONS: dict[Any, Any] = {}  # NumPy function -> autodiffx function (__array_function__)
_REDUCE: dict[tuple[np.ufunc, str], Callable[..., Any]] = {}  # (ufunc, "reduce") -> function


def bind(**names: Any) -> None:
    """Set the names above (autodiffx._bind calls this once)."""
    for name, value in names.items():
        if name not in _BINDABLE:
            raise NameError(f"autodiffx._tensor has no bindable name {name!r}")
        globals()[name] = value


_BINDABLE = frozenset(
    [
        "_apply",
        "_apply2",
        "_backward",
        "_write",
        "_write_item",
        "_F",
        "_REGISTRY",
        "_UFUNCS",
        "_FUNCTIONS",
        "_REDUCE",
    ]
)


class _Prims:
    """Primitives by name, bound on first use (the operators' fast lookup)."""

    def __getattr__(self, name: str) -> Any:
        p = _REGISTRY.get(name)
        if p is None:
            raise AttributeError(name)
        setattr(self, name, p)
        return p


_P = _Prims()

# NOTE: versions are stamps from one global in-place counter: a node records the counter when
# it is made and needs checking only if the counter moved since (never, in most programs).
STAMP = [0]


def bump_version(t: Tensor) -> None:
    """Record that ``t``'s buffer was modified in place (saved copies of it are now stale)."""
    if STATE.mode & COMPILE:
        STATE.compiler.write(t, "an in-place write")
    STAMP[0] += 1
    vc = t._vc
    if vc is None:
        t._vc = [STAMP[0]]
    else:
        vc[0] = STAMP[0]


def wrap(data: np.ndarray, idx: int = 0) -> Tensor:
    """The engine's one constructor: a Tensor around ``data`` (a base-class ndarray, used as
    it is), with no graph; ``idx`` is its place among several outputs of one op.
    ``Tensor(...)`` is the checked constructor for user data."""
    t = _new(Tensor)
    t.data = data
    t._grad = t._tan = t._hooks = t._node = t._vc = None
    t._rg = False
    t._idx = idx
    return t


class LeafWriteError(RuntimeError):
    """An in-place write into a leaf that requires grad (``leaf``), or through a view of it."""

    def __init__(self, message: str, leaf: Tensor) -> None:
        super().__init__(message)
        self.leaf = leaf


def version_counter(t: Tensor) -> list[int]:
    """``t``'s version cell, made on first need so that views and detached copies share it."""
    vc = t._vc
    if vc is None:
        vc = t._vc = [0]
    return vc


# Non-differentiable NumPy functions that only inspect values; they run on the raw data.
_INSPECT = {
    np.shape,
    np.ndim,
    np.size,
    np.result_type,
    np.iscomplexobj,
    np.isrealobj,
    np.may_share_memory,
    np.shares_memory,
    np.allclose,
    np.isclose,
    np.array_equal,
    np.array_equiv,
    np.count_nonzero,
    np.nonzero,
    np.argwhere,
    np.flatnonzero,
    np.array2string,
    np.array_repr,
    np.array_str,
    np.searchsorted,
    np.unique,
    np.any,
    np.all,
    np.isfinite,
    np.isnan,
    np.isinf,
}


def _unwrap(x: Any) -> Any:
    if isinstance(x, Tensor):
        return x.data
    if isinstance(x, list | tuple):
        return type(x)(_unwrap(v) for v in x)
    if isinstance(x, dict):
        return {k: _unwrap(v) for k, v in x.items()}
    return x


def _check_eager(t: Tensor, what: str) -> None:
    """Refuse reading the values of a lazy (Dask) tensor implicitly."""
    if is_lazy(t.data):
        raise TypeError(
            f"{what} on a tensor of shape {t.shape} backed by a lazy Dask array would compute "
            "it here; evaluate it explicitly first: (v,) = ad.compute(t)"
        )


def _check_host(t: Tensor, what: str) -> None:
    """Refuse converting a tensor over an array-API array (CuPy, array-api-strict) to NumPy
    implicitly (for CuPy: a copy from the GPU)."""
    if is_array_api(t.data):
        d = t.data
        raise TypeError(
            f"{what} on a tensor backed by a {type(d).__module__}.{type(d).__name__} array "
            "would convert it to NumPy (for a GPU array: a copy to the host); convert t.data "
            "explicitly with its library if you mean to"
        )


def _write_error(what: str, t: Tensor, e: Exception) -> str:
    msg = f"{what} on {t.dtype}{list(t.shape)}: {e}"
    if not t.data.flags.writeable:
        made_by = f" made by {t._node.name}" if t._node is not None else ""
        msg += f" (a read-only view{made_by}, as in NumPy; write into a copy: y = x.copy())"
    return msg


def _check_differentiable_dtype(dtype: np.dtype, flag: bool) -> None:
    if flag and not (dtype.kind in "fc" if isinstance(dtype, np.dtype) else inexact(dtype)):
        raise TypeError(
            f"only floating point and complex tensors can require gradients, got dtype {dtype}; "
            "convert first, e.g. ad.tensor(data, dtype=float)"
        )


def _checked_grad(t: Tensor, g: Any) -> Tensor:
    """``g`` as the ``.grad`` of ``t`` (an ndarray is wrapped, not copied), or raise."""
    if isinstance(g, Tensor):
        arr = g.data
    elif isinstance(g, np.ndarray | np.generic) and not isinstance(
        g, np.matrix | np.ma.MaskedArray
    ):
        arr = np.asarray(g)
        g = Tensor(arr)
    else:
        raise TypeError(
            f"assigned grad must be a Tensor, a numpy.ndarray or None, got {type(g).__name__}; "
            "convert it first (np.asarray(g), or .filled() for a masked array)"
        )
    if arr.shape != t.shape:
        raise ValueError(
            f"assigned grad has shape {arr.shape} but the tensor has shape {t.shape}; a "
            "gradient has exactly the shape of its tensor"
        )
    if arr.dtype != t.dtype:
        raise TypeError(
            f"assigned grad has dtype {arr.dtype} but the tensor has dtype {t.dtype}; convert "
            f"it first (g.astype(np.{t.dtype}))"
        )
    return g


class ElementCount(int):
    """``Tensor.size``: the number of elements (an int, as NumPy's ``ndarray.size``), callable
    as PyTorch's ``size()``, which gives the shape, and ``size(d)``, the length of axis ``d``.

    NOTE: the spec keeps ``.size`` NumPy's int property, and PyTorch users call it; an int
    subclass serves both (arithmetic, comparisons and indexing behave as the plain int).

    Examples
    --------
    >>> import autodiffx as ad
    >>> n = ad.zeros((2, 3)).size
    >>> n, n + 1, n(), n(0)
    (6, 7, (2, 3), 2)
    """

    _shape: tuple[int, ...]

    def __new__(cls, shape: tuple[int, ...]) -> ElementCount:
        n = super().__new__(cls, math.prod(shape))
        n._shape = shape
        return n

    @overload
    def __call__(self) -> tuple[int, ...]: ...
    @overload
    def __call__(self, dim: int) -> int: ...
    def __call__(self, dim: int | None = None) -> tuple[int, ...] | int:
        if dim is None:
            return self._shape
        try:
            return self._shape[dim]
        except (IndexError, TypeError):
            raise IndexError(
                f"size({dim!r}) of a tensor of shape {self._shape}: the axis must be an int in "
                f"[{-len(self._shape)}, {len(self._shape) - 1}]"
            ) from None

    def __reduce__(self) -> Any:
        return int, (int(self),)  # pickles (and copies) as the plain int


class RemovableHandle:
    """What :meth:`Tensor.register_hook` returns: ``remove()`` removes the hook (calling the
    handle does the same).

    Examples
    --------
    >>> import autodiffx as ad
    >>> x = ad.tensor(1.0, requires_grad=True)
    >>> h = x.register_hook(lambda g: g * 0)
    >>> h.remove()
    >>> (x * 3).backward()
    >>> x.grad
    tensor(3.)
    """

    __slots__ = ("_fn", "_hooks")

    def __init__(self, hooks: list[Any], fn: Callable[..., Any]) -> None:
        self._hooks: list[Any] | None = hooks
        self._fn = fn

    def remove(self) -> None:
        """Remove the hook (again: nothing happens)."""
        hooks, self._hooks = self._hooks, None
        if hooks is not None:
            for i, f in enumerate(hooks):
                if f is self._fn:
                    del hooks[i]
                    break

    __call__ = remove


class _RetainGrad:
    """The hook :meth:`Tensor.retain_grad` adds: accumulate the gradient into ``t.grad``
    (a weak reference: the graph does not keep ``t`` alive)."""

    __slots__ = ("ref",)

    def __init__(self, t: Tensor) -> None:
        self.ref = weakref.ref(t)

    def __call__(self, g: Tensor) -> None:
        t = self.ref()
        if t is None:
            return
        if g.shape != t.shape:
            raise RuntimeError(
                f"retain_grad(): the gradient of this {t.dtype}{list(t.shape)} tensor arrived "
                f"with shape {g.shape} (batch axes of a vectorized Jacobian), which .grad cannot "
                "hold; retain gradients with backward() or autograd.grad without batching"
            )
        prev = t._grad
        if g._rg or g._tan is not None:  # create_graph: keep the gradient's graph
            t._grad = _F.copy(g) if prev is None else prev + g
        elif prev is None:
            t._grad = wrap(np.array(g.data, dtype=t.dtype, copy=True))
        else:
            t._grad = prev + g if prev._rg else wrap(prev.data + g.data)


def move_retain_grad(t: Tensor, old: Any, idx: int) -> None:
    """``t`` was written in place and left output ``idx`` of ``old``: its :meth:`retain_grad`
    follows it to its new node (PyTorch's: ``.grad`` is the gradient of the new value)."""
    hooks = old.hooks.get(idx)
    for f in hooks or ():
        if type(f) is _RetainGrad and f.ref() is t:
            hooks.remove(f)
            if t._node is not None:
                t.retain_grad()
            return


class Tensor:
    """An n-dimensional array that records the operations applied to it.

    ``Tensor(data, dtype=None, requires_grad=False)`` wraps ``np.asarray(data, dtype)``
    without copying; :func:`autodiffx.tensor` makes a copy.

    Examples
    --------
    >>> import autodiffx as ad
    >>> x = ad.tensor([1.0, 2.0, 3.0], requires_grad=True)
    >>> y = (x * x).sum()
    >>> y.backward()
    >>> x.grad
    tensor([2., 4., 6.])
    """

    # `_view` (parent, prim, args, params, made under no_grad) is set on views only, by
    # autodiffx._views; other tensors leave the slot empty (read with getattr and a default).
    __slots__ = (
        "__weakref__",
        "_grad",
        "_hooks",
        "_idx",
        "_node",
        "_rg",
        "_tan",
        "_vc",
        "_view",
        "data",
    )
    __array_priority__ = 1000

    def __init__(self, data: Any, dtype: Any = None, requires_grad: bool = False) -> None:
        if isinstance(data, Tensor):
            # (a Parameter is a new leaf sharing the values by design, as PyTorch's)
            if (data._rg or data._tan is not None) and type(self) is Tensor:
                check_conversion(data, "copy")
            data = data.data
        elif type(data) is not np.ndarray and (why := refused(type(data))) is not None:
            raise TypeError(f"Tensor(data): {why}")
        if type(data) is not np.ndarray and is_foreign(data):
            arr = adopt(data if dtype is None else cast(data, dtype))
        else:
            arr = np.asarray(data, dtype=dtype)
        if arr.dtype == object:
            raise TypeError("Tensor data must be numeric, got an object array")
        _check_differentiable_dtype(arr.dtype, requires_grad)
        self.data = arr
        self._grad: Tensor | None = None
        self._rg = bool(requires_grad)
        self._node: Any = None
        self._idx = 0
        self._vc: list[int] | None = None  # shared with views; made on first need
        self._tan: dict[int, Tensor] | None = None
        self._hooks: list[Callable[[Tensor], Tensor | None]] | None = None

    # ----- attributes -------------------------------------------------------------------
    @property
    def grad(self) -> Tensor | None:
        """The accumulated gradient, a Tensor of this tensor's shape and dtype, or None.

        Assignable (``None``, or a Tensor or ``numpy.ndarray`` of the same shape and dtype,
        such as a finite-difference gradient for an optimizer); anything else raises.

        Examples
        --------
        >>> import numpy as np
        >>> import autodiffx as ad
        >>> w = ad.tensor([1.0, 2.0], requires_grad=True)
        >>> w.grad = np.array([0.5, -0.5])
        >>> w.grad
        tensor([ 0.5, -0.5])
        """
        if STATE.mode & COMPILE:
            STATE.compiler.write(self, "a read of .grad")
        g = self._grad
        if g is None and self._node is not None and self._rg and not self.retains_grad:
            warnings.warn(
                f"the .grad of a {self.dtype}{list(self.shape)} tensor that is not a leaf is "
                "read: backward() fills .grad of leaves only, so it is None. Call "
                ".retain_grad() on it before backward() to keep its gradient, or read the "
                "gradient of a leaf (PyTorch warns alike)",
                UserWarning,
                stacklevel=2,
            )
        return g

    @grad.setter
    def grad(self, g: Any) -> None:
        if STATE.mode & COMPILE:
            STATE.compiler.write(self, "a write of .grad")
        self._grad = None if g is None else _checked_grad(self, g)

    @property
    def requires_grad(self) -> bool:
        """Whether gradients are recorded for this tensor."""
        return self._rg

    @requires_grad.setter
    def requires_grad(self, flag: bool) -> None:
        if self._node is not None and not flag:
            raise RuntimeError(
                "requires_grad can only be switched off on leaf tensors; use .detach() instead"
            )
        _check_differentiable_dtype(self.data.dtype, flag)
        self._rg = bool(flag)

    @property
    def is_leaf(self) -> bool:
        """True for tensors not produced by a recorded operation."""
        return self._node is None

    @property
    def grad_fn(self) -> Any:
        """The node that produced this tensor (its ``name`` is the primitive's), or None."""
        return self._node

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape, as NumPy's."""
        return self.data.shape

    @property
    def ndim(self) -> int:
        """Number of dimensions."""
        return self.data.ndim

    @property
    def size(self) -> ElementCount:
        """Number of elements, NumPy's int; also callable as PyTorch's ``size()`` (the shape)
        and ``size(d)`` (one axis' length): see :class:`ElementCount`.

        Examples
        --------
        >>> import autodiffx as ad
        >>> x = ad.zeros((2, 3))
        >>> x.size, x.size(), x.size(-1)
        (6, (2, 3), 3)
        """
        return ElementCount(self.data.shape)

    @property
    def dtype(self) -> np.dtype:
        """The NumPy dtype (also of an array-API array whose library has its own dtype
        objects: that one is ``t.data.dtype``)."""
        d = self.data.dtype
        return d if isinstance(d, np.dtype) else np_dtype(d)

    @property
    def T(self) -> Tensor:
        """All axes reversed, as ``ndarray.T``."""
        return _F.transpose(self)

    @property
    def mT(self) -> Tensor:
        """The last two axes swapped (matrix transpose of a stack)."""
        return _F.swapaxes(self, -1, -2)

    @property
    def real(self) -> Tensor:
        """Real part."""
        return _F.real(self)

    @property
    def imag(self) -> Tensor:
        """Imaginary part."""
        return _F.imag(self)

    # ----- conversion -------------------------------------------------------------------
    def numpy(self) -> np.ndarray:
        """The underlying ndarray (no copy).

        For a tensor that requires grad (with grad mode on) or carries a forward-mode
        tangent, this raises ``TypeError`` (the derivative would be dropped silently):
        take ``t.detach().numpy()`` or ``t.data``. ``np.asarray(t)`` follows the same rule.

        Examples
        --------
        >>> import autodiffx as ad
        >>> x = ad.tensor([1.0, 2.0], requires_grad=True)
        >>> x.detach().numpy()
        array([1., 2.])
        >>> x.numpy()
        Traceback (most recent call last):
        ...
        TypeError: t.numpy() of a Tensor that requires grad (float64[2]) would drop its ...
        """
        if self._rg or self._tan is not None:
            check_conversion(self, "numpy")
        if STATE.mode & COMPILE:
            STATE.compiler.read(self, "t.numpy()")
        return self.data

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        if self._rg or self._tan is not None:
            check_conversion(self)
        if type(self.data) is not np.ndarray:
            _check_eager(self, "np.asarray(t)")
            _check_host(self, "np.asarray(t)")
        if STATE.mode & COMPILE:
            STATE.compiler.read(self, "np.asarray(t)")
        if dtype is None and not copy:
            return self.data
        return np.array(self.data, dtype=dtype, copy=True if copy else None)

    def item(self) -> Any:
        """The single element as a Python number."""
        if STATE.mode & COMPILE:
            STATE.compiler.read(self, "t.item()")
        if type(self.data) is not np.ndarray:
            _check_eager(self, "t.item()")
            return item(self.data)
        return self.data.item()

    def tolist(self) -> Any:
        """Nested Python lists of the values."""
        if STATE.mode & COMPILE:
            STATE.compiler.read(self, "t.tolist()")
        if type(self.data) is not np.ndarray:
            _check_eager(self, "t.tolist()")
        return self.data.tolist()

    def __len__(self) -> int:
        if self.data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return len(self.data)

    def __iter__(self) -> Iterator[Tensor]:
        if self.data.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        for i in range(len(self.data)):
            yield self[i]

    def __bool__(self) -> bool:
        if STATE.mode & COMPILE:
            STATE.compiler.read(self, "bool(t)")
        if type(self.data) is not np.ndarray:
            _check_eager(self, "bool(t)")
        return bool(self.data)

    def __float__(self) -> float:
        return float(self._scalar("float"))

    def __int__(self) -> int:
        return int(self._scalar("int"))

    def _scalar(self, what: str) -> Any:
        if STATE.mode & COMPILE:
            STATE.compiler.read(self, f"{what}(t)")
        if type(self.data) is not np.ndarray:
            _check_eager(self, f"{what}(t)")
        if self.data.size != 1:
            raise TypeError(
                f"only one-element tensors can be converted to Python scalars ({what}() of a "
                f"tensor of shape {self.shape})"
            )
        return self.data.item() if type(self.data) is np.ndarray else item(self.data)

    def __index__(self) -> int:
        if STATE.mode & COMPILE:
            STATE.compiler.read(self, "t.__index__()")
        if type(self.data) is not np.ndarray:
            _check_eager(self, "t.__index__()")
        return self.data.__index__()

    def __complex__(self) -> complex:
        return complex(self._scalar("complex"))

    __hash__ = object.__hash__  # identity, although == is elementwise (as in PyTorch)

    def __repr__(self) -> str:
        prefix = "tensor("
        if type(self.data) is not np.ndarray and is_foreign(self.data):
            body = repr(self.data)  # (lazy: not computed to be printed)
        else:
            body = np.array2string(self.data, separator=", ", prefix=prefix)
        extra = []
        dt = self.data.dtype if type(self.data) is np.ndarray else np_dtype(self.data.dtype)
        if dt not in (np.float64, np.int64, np.bool_, np.complex128) or self.data.size == 0:
            extra.append(f"dtype={self.data.dtype}")
        if self._node is not None:
            extra.append(f"grad_fn=<{self._node.name}>")
        elif self._rg:
            extra.append("requires_grad=True")
        return prefix + body + "".join(", " + e for e in extra) + ")"

    def __format__(self, spec: str) -> str:
        if self.data.ndim == 0:
            if STATE.mode & COMPILE:
                STATE.compiler.read(self, "format(t)")
            return format(self.data.item(), spec)
        return repr(self)

    # ----- autograd ---------------------------------------------------------------------
    def backward(
        self,
        gradient: Any = None,
        retain_graph: bool | None = None,
        create_graph: bool = False,
        inputs: Any = None,
    ) -> None:
        """Accumulate d(self)/d(leaf) into ``.grad`` of every leaf (PyTorch semantics).

        Examples
        --------
        >>> import autodiffx as ad
        >>> x = ad.tensor(3.0, requires_grad=True)
        >>> (x ** 2).backward()
        >>> x.grad
        tensor(6.)
        """
        if gradient is None:
            if self.data.size != 1:
                raise RuntimeError(
                    f"backward() on a tensor of shape {self.shape} needs `gradient=` (a tensor "
                    "of the same shape); the gradient can be created implicitly only for "
                    "scalar outputs"
                )
            d = self.data
            gradient = np.ones(d.shape, d.dtype) if type(d) is np.ndarray else ones_like(d)
        else:
            g = gradient.data if isinstance(gradient, Tensor) else np.asarray(gradient)
            if g.shape != self.shape:
                raise RuntimeError(
                    f"backward(): gradient has shape {g.shape} but the tensor has shape "
                    f"{self.shape}"
                )
            if not create_graph:
                gradient = g.astype(self.dtype, copy=False)
        if retain_graph is None:
            retain_graph = create_graph
        targets = None
        if inputs is not None:
            targets = [inputs] if isinstance(inputs, Tensor) else list(inputs)
        _backward(
            [self],
            [gradient],
            retain_graph=retain_graph,
            create_graph=create_graph,
            targets=targets,
            accumulate=True,
        )

    def register_hook(self, fn: Callable[[Tensor], Tensor | None]) -> RemovableHandle:
        """Call ``fn(grad)`` when this tensor's gradient is computed; a return replaces it.

        Returns a handle whose ``remove()`` (or calling the handle) removes the hook. On an
        intermediate, the hooks run before :meth:`retain_grad` stores the gradient, whatever
        the order of registration (PyTorch's rule).

        Examples
        --------
        >>> import autodiffx as ad
        >>> x = ad.tensor(1.0, requires_grad=True)
        >>> handle = x.register_hook(lambda g: g * 10)
        >>> (x * 2).backward()
        >>> x.grad
        tensor(20.)
        >>> handle.remove()
        >>> x.grad = None
        >>> (x * 2).backward()
        >>> x.grad
        tensor(2.)
        """
        if not self._rg:
            raise RuntimeError("cannot register a hook on a tensor that doesn't require grad")
        hooks = self._hook_list()
        if hooks and type(hooks[-1]) is _RetainGrad:
            hooks.insert(len(hooks) - 1, fn)  # the retained gradient is the hooks' result
        else:
            hooks.append(fn)
        return RemovableHandle(hooks, fn)

    def _hook_list(self) -> list[Callable[[Tensor], Tensor | None]]:
        if self._node is None:
            if self._hooks is None:
                self._hooks = []
            return self._hooks
        node = self._node
        if node.hooks is None:
            node.hooks = {}
        return node.hooks.setdefault(self._idx, [])  # type: ignore[no-any-return]

    def retain_grad(self) -> None:
        """Fill ``.grad`` of this intermediate (non-leaf) tensor in every backward pass, as
        PyTorch's ``retain_grad``: gradients accumulate across passes (set ``.grad = None``
        to restart), hooks run first, ``create_graph=True`` keeps the gradient's graph.
        ``.grad`` of an intermediate that is not retained stays None; on a leaf this is a
        no-op (leaves always keep their gradient).

        Examples
        --------
        >>> import autodiffx as ad
        >>> x = ad.tensor([1.0, 2.0], requires_grad=True)
        >>> y = x * 3
        >>> y.retain_grad()
        >>> (y * y).sum().backward()
        >>> y.grad, y.retains_grad
        (tensor([ 6., 12.]), True)
        """
        if not self._rg:
            raise RuntimeError(
                "retain_grad() on a tensor that does not require grad: it has no gradient; "
                "make what it is computed from require grad first"
            )
        if self._node is None or self.retains_grad:
            return
        self._hook_list().append(_RetainGrad(self))

    @property
    def retains_grad(self) -> bool:
        """Whether :meth:`retain_grad` was called on this intermediate (False for leaves)."""
        node = self._node
        if node is None or not node.hooks:
            return False
        return any(type(f) is _RetainGrad for f in node.hooks.get(self._idx, ()))

    @property
    def _version(self) -> int:
        """The in-place modification stamp of the buffer (0 if never modified)."""
        return 0 if self._vc is None else self._vc[0]

    def detach(self) -> Tensor:
        """A new leaf sharing the data, cut from the graph.

        Examples
        --------
        >>> import autodiffx as ad
        >>> ad.tensor([1.0], requires_grad=True).detach().requires_grad
        False
        """
        t = Tensor(self.data)
        t._vc = version_counter(self)
        return t

    def requires_grad_(self, flag: bool = True) -> Tensor:
        """Set ``requires_grad`` in place and return self."""
        self.requires_grad = flag
        return self

    def zero_(self) -> Tensor:
        """Fill with zeros in place (bumps the version counter); recorded as ``x[...] = 0``."""
        self[...] = 0
        return self

    # ----- methods mirroring ndarray ------------------------------------------------------
    def astype(self, dtype: Any, copy: bool = True) -> Tensor:
        """Cast to ``dtype`` (differentiable between float and complex types)."""
        return _F.astype(self, dtype, copy=copy)

    def copy(self) -> Tensor:
        """A differentiable copy."""
        return _F.copy(self)

    def conj(self) -> Tensor:
        """Complex conjugate."""
        return _F.conj(self)

    def reshape(self, *shape: Any) -> Tensor:
        """As ``ndarray.reshape``."""
        if len(shape) == 1 and isinstance(shape[0], tuple | list):
            shape = tuple(shape[0])
        return _F.reshape(self, shape)

    def transpose(self, *axes: Any) -> Tensor:
        """As ``ndarray.transpose``."""
        if len(axes) == 1 and (axes[0] is None or isinstance(axes[0], tuple | list)):
            axes = axes[0]
        return _F.transpose(self, axes or None)

    def swapaxes(self, a: int, b: int) -> Tensor:
        """As ``ndarray.swapaxes``."""
        return _F.swapaxes(self, a, b)

    def squeeze(self, axis: Any = None) -> Tensor:
        """As ``ndarray.squeeze``."""
        return _F.squeeze(self, axis)

    def flatten(self) -> Tensor:
        """A 1-D copy."""
        return _F.flatten(self)

    def ravel(self) -> Tensor:
        """1-D."""
        return _F.ravel(self)

    def broadcast_to(self, shape: tuple[int, ...]) -> Tensor:
        """As ``np.broadcast_to``."""
        return _F.broadcast_to(self, shape)

    def sum(self, axis: Any = None, keepdims: bool = False, **kw: Any) -> Tensor:
        """As ``ndarray.sum``."""
        return _F.sum(self, axis=axis, keepdims=keepdims, **kw)

    def mean(self, axis: Any = None, keepdims: bool = False, **kw: Any) -> Tensor:
        """As ``ndarray.mean``."""
        return _F.mean(self, axis=axis, keepdims=keepdims, **kw)

    def prod(self, axis: Any = None, keepdims: bool = False, **kw: Any) -> Tensor:
        """As ``ndarray.prod``."""
        return _F.prod(self, axis=axis, keepdims=keepdims, **kw)

    def max(self, axis: Any = None, keepdims: bool = False, **kw: Any) -> Tensor:
        """As ``ndarray.max``."""
        return _F.amax(self, axis=axis, keepdims=keepdims, **kw)

    def min(self, axis: Any = None, keepdims: bool = False, **kw: Any) -> Tensor:
        """As ``ndarray.min``."""
        return _F.amin(self, axis=axis, keepdims=keepdims, **kw)

    def var(self, axis: Any = None, ddof: int = 0, keepdims: bool = False) -> Tensor:
        """As ``ndarray.var``."""
        return _F.var(self, axis=axis, ddof=ddof, keepdims=keepdims)

    def std(self, axis: Any = None, ddof: int = 0, keepdims: bool = False) -> Tensor:
        """As ``ndarray.std``."""
        return _F.std(self, axis=axis, ddof=ddof, keepdims=keepdims)

    def cumsum(self, axis: Any = None) -> Tensor:
        """As ``ndarray.cumsum``."""
        return _F.cumsum(self, axis=axis)

    def cumprod(self, axis: Any = None) -> Tensor:
        """As ``ndarray.cumprod``."""
        return _F.cumprod(self, axis=axis)

    def argmax(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        """As ``ndarray.argmax`` (not differentiable)."""
        return _F.argmax(self, axis=axis, keepdims=keepdims)

    def argmin(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        """As ``ndarray.argmin`` (not differentiable)."""
        return _F.argmin(self, axis=axis, keepdims=keepdims)

    def clip(self, min: Any = None, max: Any = None) -> Tensor:
        """As ``ndarray.clip``."""
        return _F.clip(self, min, max)

    def dot(self, other: Any) -> Tensor:
        """As ``ndarray.dot``."""
        return _F.dot(self, other)

    def diagonal(self, offset: int = 0, axis1: int = 0, axis2: int = 1) -> Tensor:
        """As ``ndarray.diagonal``."""
        return _F.diagonal(self, offset, axis1, axis2)

    def trace(self, offset: int = 0, axis1: int = 0, axis2: int = 1) -> Tensor:
        """As ``ndarray.trace``."""
        return _F.trace(self, offset, axis1, axis2)

    def repeat(self, repeats: Any, axis: Any = None) -> Tensor:
        """As ``ndarray.repeat``."""
        return _F.repeat(self, repeats, axis)

    def any(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        """As ``ndarray.any`` (not differentiable)."""
        return Tensor(np.any(self, axis=axis, keepdims=keepdims))

    def all(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        """As ``ndarray.all`` (not differentiable)."""
        return Tensor(np.all(self, axis=axis, keepdims=keepdims))

    def exp(self) -> Tensor:
        """Elementwise e**x."""
        return _F.exp(self)

    def log(self) -> Tensor:
        """Elementwise natural logarithm."""
        return _F.log(self)

    def sqrt(self) -> Tensor:
        """Elementwise square root."""
        return _F.sqrt(self)

    def tanh(self) -> Tensor:
        """Elementwise hyperbolic tangent."""
        return _F.tanh(self)

    def abs(self) -> Tensor:
        """Elementwise absolute value."""
        return _F.abs(self)

    # ----- PyTorch habits -----------------------------------------------------------------
    # The names a PyTorch user types, each one call of an existing op (no primitive of its own).
    def numel(self) -> int:
        """Number of elements (PyTorch's name for ``.size``).

        Examples
        --------
        >>> import autodiffx as ad
        >>> ad.zeros((2, 3)).numel()
        6
        """
        return int(self.data.size)

    def dim(self) -> int:
        """Number of dimensions (PyTorch's name for ``.ndim``).

        Examples
        --------
        >>> import autodiffx as ad
        >>> ad.zeros((2, 3)).dim()
        2
        """
        return self.data.ndim

    def unsqueeze(self, dim: int) -> Tensor:
        """A new axis of length 1 at ``dim`` (negative counts from the end of the result), as
        ``torch.unsqueeze`` and ``np.expand_dims``; a view.

        Examples
        --------
        >>> import autodiffx as ad
        >>> x = ad.zeros((2, 3))
        >>> x.unsqueeze(0).shape, x.unsqueeze(-1).shape
        ((1, 2, 3), (2, 3, 1))
        """
        return _F.expand_dims(self, dim)

    def view(self, *shape: Any) -> Tensor:
        """``reshape`` under PyTorch's name (``-1`` infers one size).

        NumPy's rule decides the memory, not PyTorch's: the result is a view of this tensor
        when NumPy can make one, a copy otherwise (where ``torch.Tensor.view`` raises). In-place
        writes reach this tensor through a view only (see the docs on views).

        Examples
        --------
        >>> import autodiffx as ad
        >>> x = ad.arange(6.0)
        >>> x.view(2, 3).shape, x.view((3, -1)).shape
        ((2, 3), (3, 2))
        """
        if len(shape) == 1 and isinstance(shape[0], type | np.dtype | str):
            raise TypeError(
                f"view({shape[0]!r}): reinterpreting the bits as another dtype is not "
                "differentiable; use .astype(dtype) to convert the values, or .data.view(dtype)"
            )
        return self.reshape(*shape)

    def permute(self, *dims: Any) -> Tensor:
        """The axes reordered as ``dims`` (varargs or one tuple), as ``torch.permute``.

        Examples
        --------
        >>> import autodiffx as ad
        >>> ad.zeros((2, 3, 4)).permute(2, 0, 1).shape
        (4, 2, 3)
        """
        if len(dims) == 1 and isinstance(dims[0], tuple | list):
            dims = tuple(dims[0])
        if len(dims) != self.data.ndim:
            raise ValueError(
                f"permute(dims={dims}) of a tensor of shape {self.shape}: give exactly one "
                f"position per axis ({self.data.ndim})"
            )
        return _F.transpose(self, dims)

    def expand(self, *sizes: Any) -> Tensor:
        """Broadcast to ``sizes`` (varargs or one tuple), as ``torch.Tensor.expand``: ``-1``
        keeps an axis' size, axes of length 1 are repeated, new axes go in front. A read-only
        view (``broadcast_to``); its gradient sums over the repeated axes.

        Examples
        --------
        >>> import autodiffx as ad
        >>> x = ad.tensor([[1.0], [2.0]], requires_grad=True)
        >>> x.expand(2, 3)
        tensor([[1., 1., 1.],
                [2., 2., 2.]], grad_fn=<broadcast_to>)
        >>> x.expand(4, -1, 3).shape
        (4, 2, 3)
        """
        if len(sizes) == 1 and isinstance(sizes[0], tuple | list):
            sizes = tuple(sizes[0])
        shape, lead = list(sizes), len(sizes) - self.data.ndim
        ok = lead >= 0
        for i, s in enumerate(sizes):
            have = self.shape[i - lead] if ok and i >= lead else None
            if s == -1 and have is not None:
                shape[i] = have
            elif s < 0 or (have is not None and have not in (1, s)):
                ok = False
        if not ok:
            raise ValueError(
                f"expand{tuple(sizes)} of a tensor of shape {self.shape}: each size must equal "
                "the axis' size or -1 (keep it), an axis of length 1 may take any size, and "
                "new axes (in front, not -1) take sizes >= 0"
            )
        return _F.broadcast_to(self, tuple(shape))

    def clamp(self, min: Any = None, max: Any = None) -> Tensor:
        """Elementwise clipping to ``[min, max]`` (either may be None), as ``torch.clamp``.

        This is ``clip``: at a bound the derivative is 0 (the convention table in
        docs/conventions.md; PyTorch passes the gradient there).

        Examples
        --------
        >>> import autodiffx as ad
        >>> x = ad.tensor([-2.0, 0.5, 3.0], requires_grad=True)
        >>> x.clamp(-1.0, 1.0)
        tensor([-1. ,  0.5,  1. ], grad_fn=<minimum>)
        >>> x.clamp(min=0.0).sum().backward()
        >>> x.grad
        tensor([0., 1., 1.])
        """
        if min is None and max is None:
            raise ValueError("clamp(): give min, max or both (at least one must not be None)")
        return _F.clip(self, min, max)

    def clamp_min(self, min: Any) -> Tensor:
        """``clamp(min=min)``.

        Examples
        --------
        >>> import autodiffx as ad
        >>> ad.tensor([-2.0, 3.0]).clamp_min(0.0)
        tensor([0., 3.])
        """
        return self.clamp(min, None)

    def clamp_max(self, max: Any) -> Tensor:
        """``clamp(max=max)``.

        Examples
        --------
        >>> import autodiffx as ad
        >>> ad.tensor([-2.0, 3.0]).clamp_max(0.0)
        tensor([-2.,  0.])
        """
        return self.clamp(None, max)

    def pow(self, exponent: Any) -> Tensor:
        """``self ** exponent`` (elementwise, broadcasting; differentiable in both).

        Examples
        --------
        >>> import autodiffx as ad
        >>> ad.tensor([2.0, 3.0]).pow(2)
        tensor([4., 9.])
        """
        return _apply2(_P.power, self, exponent)

    def float(self) -> Tensor:
        """Cast to float32, as ``torch.Tensor.float`` (differentiable; a complex tensor is
        refused: take ``.real`` or ``abs()`` first).

        Examples
        --------
        >>> import autodiffx as ad
        >>> ad.tensor([1, 2]).float()
        tensor([1., 2.], dtype=float32)
        """
        return self._real_cast("float", np.float32)

    def double(self) -> Tensor:
        """Cast to float64, as ``torch.Tensor.double`` (differentiable; a complex tensor is
        refused: take ``.real`` or ``abs()`` first).

        Examples
        --------
        >>> import autodiffx as ad
        >>> ad.tensor([1.0, 2.0], dtype="float32").double().dtype
        dtype('float64')
        """
        return self._real_cast("double", np.float64)

    def _real_cast(self, name: str, dtype: Any) -> Tensor:
        if self.data.dtype.kind == "c":
            raise TypeError(
                f"{name}() of a {self.dtype} tensor would discard the imaginary part; take "
                f".real (or abs()) first, or .astype(np.complex{128 if name == 'double' else 64})"
            )
        return _F.astype(self, dtype)

    def t(self) -> Tensor:
        """The transpose of a matrix; 0-D and 1-D tensors unchanged, as ``torch.Tensor.t``.

        Examples
        --------
        >>> import autodiffx as ad
        >>> ad.zeros((2, 3)).t().shape
        (3, 2)
        """
        if self.data.ndim > 2:
            raise ValueError(
                f"t() expects a tensor with at most 2 dimensions, got shape {self.shape}; use "
                ".mT (the last two axes) or .permute(...)"
            )
        return _F.transpose(self)

    def sin(self) -> Tensor:
        """Elementwise sine."""
        return _F.sin(self)

    def cos(self) -> Tensor:
        """Elementwise cosine."""
        return _F.cos(self)

    def tan(self) -> Tensor:
        """Elementwise tangent."""
        return _F.tan(self)

    def log1p(self) -> Tensor:
        """Elementwise log(1 + x), accurate near 0."""
        return _F.log1p(self)

    def expm1(self) -> Tensor:
        """Elementwise exp(x) - 1, accurate near 0."""
        return _F.expm1(self)

    def rsqrt(self) -> Tensor:
        """Elementwise 1 / sqrt(x), as ``x ** -0.5`` (inf at 0, derivative -inf there).

        Examples
        --------
        >>> import autodiffx as ad
        >>> ad.tensor([4.0, 0.25]).rsqrt()
        tensor([0.5, 2. ])
        """
        return _apply2(_P.power, self, -0.5)

    def sigmoid(self) -> Tensor:
        """Logistic sigmoid, stable for every x (``ad.nn.functional.sigmoid``).

        Examples
        --------
        >>> import autodiffx as ad
        >>> ad.tensor([-1000.0, 0.0]).sigmoid()
        tensor([0. , 0.5])
        """
        return _apply(_P.sigmoid, (self,))

    def relu(self) -> Tensor:
        """``max(x, 0)`` with derivative 0 at 0 (``ad.nn.functional.relu``).

        Examples
        --------
        >>> import autodiffx as ad
        >>> ad.tensor([-1.0, 2.0]).relu()
        tensor([0., 2.])
        """
        return _F.maximum(self, 0)

    def neg(self) -> Tensor:
        """Elementwise -x."""
        return _apply(_P.negative, (self,))

    def reciprocal(self) -> Tensor:
        """Elementwise 1/x."""
        return _F.reciprocal(self)

    def square(self) -> Tensor:
        """Elementwise x**2."""
        return _F.square(self)

    def sign(self) -> Tensor:
        """Elementwise sign (derivative 0)."""
        return _F.sign(self)

    def floor(self) -> Tensor:
        """Elementwise floor (derivative 0)."""
        return _F.floor(self)

    def ceil(self) -> Tensor:
        """Elementwise ceiling (derivative 0)."""
        return _F.ceil(self)

    def round(self, decimals: int = 0) -> Tensor:
        """Round half to even to ``decimals`` decimals, as ``torch.round`` (derivative 0).

        Examples
        --------
        >>> import autodiffx as ad
        >>> ad.tensor([0.5, 1.5, 2.567]).round(), ad.tensor([2.567]).round(decimals=2)
        (tensor([0., 2., 3.]), tensor([2.57]))
        """
        return _F.round(self, decimals)

    # ----- operators --------------------------------------------------------------------
    def __add__(self, o: Any) -> Tensor:
        return _apply2(_P.add, self, o)

    def __radd__(self, o: Any) -> Tensor:
        return _apply2(_P.add, o, self)

    def __sub__(self, o: Any) -> Tensor:
        return _apply2(_P.subtract, self, o)

    def __rsub__(self, o: Any) -> Tensor:
        return _apply2(_P.subtract, o, self)

    def __mul__(self, o: Any) -> Tensor:
        return _apply2(_P.multiply, self, o)

    def __rmul__(self, o: Any) -> Tensor:
        return _apply2(_P.multiply, o, self)

    def __truediv__(self, o: Any) -> Tensor:
        return _apply2(_P.divide, self, o)

    def __rtruediv__(self, o: Any) -> Tensor:
        return _apply2(_P.divide, o, self)

    def __floordiv__(self, o: Any) -> Tensor:
        return _apply2(_P.floor_divide, self, o)

    def __rfloordiv__(self, o: Any) -> Tensor:
        return _apply2(_P.floor_divide, o, self)

    def __mod__(self, o: Any) -> Tensor:
        return _apply2(_P.mod, self, o)

    def __rmod__(self, o: Any) -> Tensor:
        return _apply2(_P.mod, o, self)

    def __pow__(self, o: Any) -> Tensor:
        return _apply2(_P.power, self, o)

    def __rpow__(self, o: Any) -> Tensor:
        return _apply2(_P.power, o, self)

    def __matmul__(self, o: Any) -> Tensor:
        return _F.matmul(self, o)

    def __rmatmul__(self, o: Any) -> Tensor:
        return _F.matmul(o, self)

    def __neg__(self) -> Tensor:
        return _apply(_P.negative, (self,))

    def __pos__(self) -> Tensor:
        return self

    def __abs__(self) -> Tensor:
        return _apply(_P.abs, (self,))

    def __lt__(self, o: Any) -> Tensor:  # type: ignore[override]
        return _apply2(_P.less, self, o)

    def __le__(self, o: Any) -> Tensor:  # type: ignore[override]
        return _apply2(_P.less_equal, self, o)

    def __gt__(self, o: Any) -> Tensor:  # type: ignore[override]
        return _apply2(_P.greater, self, o)

    def __ge__(self, o: Any) -> Tensor:  # type: ignore[override]
        return _apply2(_P.greater_equal, self, o)

    def __eq__(self, o: Any) -> Tensor:  # type: ignore[override]
        return _apply2(_P.equal, self, o)

    def __ne__(self, o: Any) -> Tensor:  # type: ignore[override]
        return _apply2(_P.not_equal, self, o)

    def __invert__(self) -> Tensor:
        return _apply(_P.logical_not, (self,))

    def __and__(self, o: Any) -> Tensor:
        return _apply2(_P.logical_and, self, o)

    def __or__(self, o: Any) -> Tensor:
        return _apply2(_P.logical_or, self, o)

    def __getitem__(self, idx: Any) -> Tensor:
        return _F.getitem(self, idx)

    # ----- in place -----------------------------------------------------------------------
    def __iadd__(self, o: Any) -> Tensor:
        return self._inplace(_P.add, o)

    def __isub__(self, o: Any) -> Tensor:
        return self._inplace(_P.subtract, o)

    def __imul__(self, o: Any) -> Tensor:
        return self._inplace(_P.multiply, o)

    def __itruediv__(self, o: Any) -> Tensor:
        return self._inplace(_P.divide, o)

    def __ipow__(self, o: Any) -> Tensor:
        return self._inplace(_P.power, o, np.power)

    def __ifloordiv__(self, o: Any) -> Tensor:
        return self._inplace(_P.floor_divide, o)

    def __imod__(self, o: Any) -> Tensor:
        return self._inplace(_P.mod, o)

    def __imatmul__(self, o: Any) -> Tensor:
        return self._inplace(_P.matmul, o)

    def _inplace(self, p: Any, o: Any, raw: Any = None) -> Tensor:
        _write(self, p, o, raw)
        return self

    def __setitem__(self, idx: Any, value: Any) -> None:
        _write_item(self, idx, value)

    # ----- NumPy protocols ----------------------------------------------------------------
    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        if method != "__call__":
            red = _REDUCE.get((ufunc, method))
            if red is None:
                raise TypeError(
                    f"{ufunc_name(ufunc)}.{method} is not supported on autodiffx Tensors; use "
                    "the autodiffx function (e.g. ad.sum, ad.cumsum) instead"
                )
            return red(*inputs, **kwargs)
        if "out" in kwargs:
            raise TypeError(
                f"{ufunc_name(ufunc)}(..., out=...) is not supported on Tensors: results are new "
                "tensors; write y = np.f(x) (or x[...] = np.f(x) to assign)"
            )
        f = _UFUNCS.get(ufunc)
        if f is None:
            raise TypeError(
                f"{ufunc_name(ufunc)} has no autodiffx rule, so it cannot be applied to a Tensor; "
                "use ad.<function>, or apply it to t.detach() (no derivative)"
            )
        if kwargs:
            raise TypeError(
                f"{ufunc_name(ufunc)}: keyword arguments {sorted(kwargs)} are not supported"
            )
        return f(*inputs)

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        if len(types) > 1:
            for t in types:
                why = refused(t)
                if why is not None:
                    raise TypeError(f"{func.__module__}.{func.__name__}: {why}")
        f = _FUNCTIONS.get(func)
        if f is not None:
            return f(*args, **kwargs)
        if func in _INSPECT:
            args, kwargs = _unwrap(args), _unwrap(kwargs)
            if any(is_array_api(a) for a in args):
                return inspect(func, args, kwargs)
            return func(*args, **kwargs)
        raise TypeError(
            f"{func.__module__}.{func.__name__} has no autodiffx rule, so it cannot be applied "
            "to a Tensor; see the list of supported NumPy functions in the docs, use an "
            "ad.<function>, or apply it to t.detach() (no derivative)"
        )
