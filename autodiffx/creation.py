"""Tensor constructors: tensor and asarray, filled (zeros, ones, ...), ranges, eye, rand, randn."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._convert import check_conversion, refused
from ._mode import COMPILE, STATE, VMAP, batched
from ._registry import FUNCTION_MAP
from ._tensor import Tensor, wrap
from ._xp import compute as xp_compute
from ._xp import is_foreign
from ._xp import like as xp_like


def _make(arr: np.ndarray, requires_grad: bool) -> Tensor:
    return Tensor(arr, requires_grad=requires_grad)


def tensor(data: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """A new tensor holding a copy of ``data`` (NumPy's dtype rules: floats are float64).

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.tensor([1.0, 2.0], requires_grad=True)
    tensor([1., 2.], requires_grad=True)
    >>> ad.tensor([1, 2]).dtype
    dtype('int64')
    """
    if isinstance(data, Tensor):
        if data._rg or data._tan is not None:
            check_conversion(data, "copy")
        data = data.data
    elif type(data) is not np.ndarray and (why := refused(type(data))) is not None:
        raise TypeError(f"ad.tensor(data): {why}")
    if type(data) is not np.ndarray and is_foreign(data):  # (Dask arrays are kept, not copied)
        return Tensor(data, dtype=dtype, requires_grad=requires_grad)
    return _make(np.array(data, dtype=dtype, copy=True), requires_grad)


def asarray(data: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """``data`` as a tensor, without copying when possible (a Tensor is returned as is).

    Examples
    --------
    >>> import autodiffx as ad
    >>> import numpy as np
    >>> a = np.zeros(2)
    >>> ad.asarray(a).data is a
    True
    """
    if isinstance(data, Tensor) and (dtype is None or data.dtype == np.dtype(dtype)):
        if requires_grad and not data.requires_grad:
            data.requires_grad_(True)
        return data
    if isinstance(data, Tensor):
        return data.astype(dtype)
    if type(data) is not np.ndarray and (why := refused(type(data))) is not None:
        raise TypeError(f"ad.asarray(data): {why}")
    if type(data) is not np.ndarray and is_foreign(data):
        return Tensor(data, dtype=dtype, requires_grad=requires_grad)
    return _make(np.asarray(data, dtype=dtype), requires_grad)


def zeros(shape: Any, dtype: Any = float, requires_grad: bool = False) -> Tensor:
    """A tensor of zeros.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.zeros((2,))
    tensor([0., 0.])
    """
    return _make(np.zeros(shape, dtype), requires_grad)


def ones(shape: Any, dtype: Any = float, requires_grad: bool = False) -> Tensor:
    """A tensor of ones.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.ones(2)
    tensor([1., 1.])
    """
    return _make(np.ones(shape, dtype), requires_grad)


def full(shape: Any, fill_value: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """A tensor filled with ``fill_value``.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.full(2, 7.0)
    tensor([7., 7.])
    """
    return _make(np.full(shape, fill_value, dtype), requires_grad)


def empty(shape: Any, dtype: Any = float, requires_grad: bool = False) -> Tensor:
    """An uninitialised tensor.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.empty((2, 3)).shape
    (2, 3)
    """
    return _make(np.empty(shape, dtype), requires_grad)


def _like(x: Any) -> np.ndarray:
    if STATE.mode & VMAP and batched(x):  # (one example's shape and dtype, inside ad.vmap)
        return np.broadcast_to(np.zeros((), x.dtype), x.shape)
    return x.data if isinstance(x, Tensor) else np.asarray(x)


def zeros_like(x: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """Zeros with the shape and dtype of ``x``.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.zeros_like(ad.ones(2))
    tensor([0., 0.])
    """
    return _make(_like_override(np.zeros_like)(x, dtype=dtype).data, requires_grad)


def ones_like(x: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """Ones with the shape and dtype of ``x``.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.ones_like(ad.zeros(2), dtype="float32", requires_grad=True)
    tensor([1., 1.], dtype=float32, requires_grad=True)
    """
    return _make(_like_override(np.ones_like)(x, dtype=dtype).data, requires_grad)


def full_like(x: Any, fill_value: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """``fill_value`` with the shape and dtype of ``x``.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.full_like(ad.zeros(2), 3.0)
    tensor([3., 3.])
    """
    return _make(np.full_like(_like(x), fill_value, dtype=dtype), requires_grad)


def arange(*args: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """Evenly spaced values in a half-open interval (as ``np.arange``).

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.arange(3)
    tensor([0, 1, 2])
    """
    return _make(np.arange(*args, dtype=dtype), requires_grad)


def linspace(
    start: float,
    stop: float,
    num: int = 50,
    endpoint: bool = True,
    dtype: Any = None,
    requires_grad: bool = False,
) -> Tensor:
    """``num`` evenly spaced values from ``start`` to ``stop``.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.linspace(0, 1, 3)
    tensor([0. , 0.5, 1. ])
    """
    if isinstance(start, Tensor) or isinstance(stop, Tensor):  # differentiable in the ends
        from .ops.numpy_more import linspace as _linspace

        out = _linspace(start, stop, num, endpoint=endpoint, dtype=dtype)
        return out.requires_grad_() if requires_grad else out
    return _make(np.linspace(start, stop, num, endpoint=endpoint, dtype=dtype), requires_grad)


def eye(
    n: int, m: int | None = None, k: int = 0, dtype: Any = float, requires_grad: bool = False
) -> Tensor:
    """The identity matrix (ones on the k-th diagonal).

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.eye(2)
    tensor([[1., 0.],
            [0., 1.]])
    """
    return _make(np.eye(n, m, k, dtype=dtype), requires_grad)


def rand(*size: Any, rng: Any = None, dtype: Any = float, requires_grad: bool = False) -> Tensor:
    """Uniform samples in [0, 1), as ``torch.rand``: ``size`` as ints or one tuple.

    ``rng`` is a ``numpy.random.Generator`` (advanced by the call), an int seed, or None (a
    fresh generator). ``dtype``: a float type (float64 by default, NumPy's), or complex (real
    and imaginary parts each uniform, as PyTorch).

    Examples
    --------
    >>> import autodiffx as ad
    >>> x = ad.rand(2, 3, rng=0, requires_grad=True)
    >>> x.shape, x.requires_grad, bool(((0 <= x) & (x < 1)).all())
    ((2, 3), True, True)
    >>> bool((ad.rand((2, 3), rng=0) == x.detach()).all())
    True
    """
    return _random(
        "rand", lambda g, shape, dt: g.random(shape, dt), size, rng, dtype, requires_grad
    )


def randn(*size: Any, rng: Any = None, dtype: Any = float, requires_grad: bool = False) -> Tensor:
    """Standard normal samples, as ``torch.randn``: ``size`` as ints or one tuple.

    ``rng`` is a ``numpy.random.Generator`` (advanced by the call), an int seed, or None (a
    fresh generator). ``dtype``: a float type (float64 by default, NumPy's), or complex (real
    and imaginary parts each of variance 1/2, as PyTorch).

    Examples
    --------
    >>> import numpy as np
    >>> import autodiffx as ad
    >>> g = np.random.default_rng(0)
    >>> x = ad.randn(4, rng=g, dtype=np.float32)
    >>> x.shape, x.dtype
    ((4,), dtype('float32'))
    """
    return _random(
        "randn", lambda g, shape, dt: g.standard_normal(shape, dt), size, rng, dtype, requires_grad
    )


def _random(name: str, draw: Any, size: Any, rng: Any, dtype: Any, requires_grad: bool) -> Tensor:
    shape = tuple(size[0]) if len(size) == 1 and isinstance(size[0], tuple | list) else size
    dt = np.dtype(dtype)
    if dt.kind not in "fc":
        raise TypeError(
            f"ad.{name}(dtype={dt}): a float or complex dtype is needed; for integers use "
            "numpy.random.Generator.integers and ad.tensor"
        )
    if not (
        rng is None
        or isinstance(rng, np.random.Generator | int | np.integer | np.random.SeedSequence)
    ):
        raise TypeError(
            f"ad.{name}: rng must be a numpy.random.Generator, an int seed or None, not "
            f"{type(rng).__name__}"
        )
    if STATE.mode & COMPILE:  # a step that draws again at every replay, from the same rng
        if requires_grad:
            STATE.compiler.write(None, f"ad.{name}(requires_grad=True) (a new leaf)")
        arr = STATE.compiler.draw(_draw, [name, draw, shape, rng, dt], f"ad.{name}")
        return wrap(arr)  # (its array, the program's value: not a copy)
    return _make(_draw(name, draw, shape, rng, dt), requires_grad)


def _draw(name: str, draw: Any, shape: Any, rng: Any, dt: np.dtype) -> np.ndarray:
    """The samples of :func:`rand` or :func:`randn` of dtype ``dt``."""
    if not isinstance(rng, np.random.Generator):
        rng = np.random.default_rng(rng)
    part = np.dtype(dt.char.lower()) if dt.kind == "c" else dt  # F -> f, D -> d, G -> g
    native = part if part in (np.float32, np.float64) else np.dtype(np.float64)
    if dt.kind == "f":
        arr = draw(rng, shape, native)
    else:
        pair = draw(rng, (*shape, 2), native)
        arr = pair[..., 0] + 1j * pair[..., 1]
        if name == "randn":
            arr *= np.sqrt(0.5)
    return arr.astype(dt, copy=False)  # type: ignore[no-any-return]


def _like_override(fn: Any) -> Any:
    def f(x: Any, *args: Any, **kw: Any) -> Tensor:
        d = _like(x)
        if type(d) is not np.ndarray and is_foreign(d):
            return Tensor(xp_like(fn.__name__, d, *args, **kw))
        return Tensor(fn(d, *args, **kw))

    return f


FUNCTION_MAP.update(
    {
        np.zeros_like: _like_override(np.zeros_like),
        np.ones_like: _like_override(np.ones_like),
        np.full_like: _like_override(np.full_like),
        np.empty_like: _like_override(np.empty_like),
    }
)


def compute(*tensors: Any) -> tuple[Tensor, ...]:
    """Evaluate Dask-backed tensors (losses, ``.grad``s) in one ``dask.compute`` pass.

    Returns NumPy-backed tensors that do not require grad, one per argument, in order;
    shared work (the data's chunks, the forward pass under a loss and its gradients) is
    read and computed once. NumPy-backed tensors pass through (detached). Use it in place
    of ``float(loss)`` or ``np.asarray(t)``, which refuse lazy tensors. See
    ``docs/backends.md``.

    Examples
    --------
    >>> import autodiffx as ad
    >>> x = ad.tensor([0.0, 1.0, 2.0, 3.0])  # (or a dask.array: then computed here)
    >>> w = ad.tensor([1.0, 2.0, 3.0, 4.0], requires_grad=True)
    >>> loss = (x * w).sum()
    >>> loss.backward()
    >>> ad.compute(loss, w.grad)
    (tensor(20.), tensor([0., 1., 2., 3.]))
    """
    datas = []
    for t in tensors:
        if not isinstance(t, Tensor):
            raise TypeError(f"ad.compute takes Tensors, got {type(t).__name__}")
        datas.append(t.data)
    return tuple(Tensor(v) for v in xp_compute(*datas))
