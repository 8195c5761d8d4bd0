"""The Tensor: an ndarray wrapped by composition, with its place in the recorded graph."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from ._convert import check_conversion, refused, ufunc_name

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


def _write_error(what: str, t: Tensor, e: Exception) -> str:
    msg = f"{what} on {t.dtype}{list(t.shape)}: {e}"
    if not t.data.flags.writeable:
        made_by = f" made by {t._node.name}" if t._node is not None else ""
        msg += f" (a read-only view{made_by}, as in NumPy; write into a copy: y = x.copy())"
    return msg


def _check_differentiable_dtype(dtype: np.dtype, flag: bool) -> None:
    if flag and dtype.kind not in "fc":
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
        return self._grad

    @grad.setter
    def grad(self, g: Any) -> None:
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
    def size(self) -> int:
        """Number of elements."""
        return self.data.size

    @property
    def dtype(self) -> np.dtype:
        """The NumPy dtype."""
        return self.data.dtype

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
        return self.data

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        if self._rg or self._tan is not None:
            check_conversion(self)
        if dtype is None and not copy:
            return self.data
        return np.array(self.data, dtype=dtype, copy=True if copy else None)

    def item(self) -> Any:
        """The single element as a Python number."""
        return self.data.item()

    def tolist(self) -> Any:
        """Nested Python lists of the values."""
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
        return bool(self.data)

    def __float__(self) -> float:
        return float(self._scalar("float"))

    def __int__(self) -> int:
        return int(self._scalar("int"))

    def _scalar(self, what: str) -> Any:
        if self.data.size != 1:
            raise TypeError(
                f"only one-element tensors can be converted to Python scalars ({what}() of a "
                f"tensor of shape {self.shape})"
            )
        return self.data.item()

    def __index__(self) -> int:
        return self.data.__index__()

    def __complex__(self) -> complex:
        return complex(self._scalar("complex"))

    __hash__ = object.__hash__  # identity, although == is elementwise (as in PyTorch)

    def __repr__(self) -> str:
        prefix = "tensor("
        body = np.array2string(self.data, separator=", ", prefix=prefix)
        extra = []
        if self.data.dtype not in (np.float64, np.int64, np.bool_, np.complex128) or (
            self.data.size == 0
        ):
            extra.append(f"dtype={self.data.dtype}")
        if self._node is not None:
            extra.append(f"grad_fn=<{self._node.name}>")
        elif self._rg:
            extra.append("requires_grad=True")
        return prefix + body + "".join(", " + e for e in extra) + ")"

    def __format__(self, spec: str) -> str:
        if self.data.ndim == 0:
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
            gradient = np.ones(self.data.shape, self.data.dtype)
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

    def register_hook(self, fn: Callable[[Tensor], Tensor | None]) -> Callable[[], None]:
        """Call ``fn(grad)`` when this tensor's gradient is computed; a return replaces it.

        Returns a function that removes the hook.

        Examples
        --------
        >>> import autodiffx as ad
        >>> x = ad.tensor(1.0, requires_grad=True)
        >>> _ = x.register_hook(lambda g: g * 10)
        >>> (x * 2).backward()
        >>> x.grad
        tensor(20.)
        """
        if not self._rg:
            raise RuntimeError("cannot register a hook on a tensor that doesn't require grad")
        if self._node is None:
            if self._hooks is None:
                self._hooks = []
            hooks = self._hooks
        else:
            node = self._node
            if node.hooks is None:
                node.hooks = {}
            hooks = node.hooks.setdefault(self._idx, [])
        hooks.append(fn)
        return lambda: hooks.remove(fn) if fn in hooks else None

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
        return Tensor(self.data.any(axis=axis, keepdims=keepdims))

    def all(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        """As ``ndarray.all`` (not differentiable)."""
        return Tensor(self.data.all(axis=axis, keepdims=keepdims))

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
            return func(*_unwrap(args), **_unwrap(kwargs))
        raise TypeError(
            f"{func.__module__}.{func.__name__} has no autodiffx rule, so it cannot be applied "
            "to a Tensor; see the list of supported NumPy functions in the docs, use an "
            "ad.<function>, or apply it to t.detach() (no derivative)"
        )
