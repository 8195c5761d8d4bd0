"""Array backends beyond NumPy (Dask): recognising foreign arrays, the ops they run, creation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ._convert import describe
from ._mode import STATE

#: The primitives whose kernels and reverse rules run on Dask arrays and keep them lazy,
#: checked against NumPy (values and gradients to 1e-12) by tests/test_dask.py, one OpSpec
#: row each. Any other primitive refuses a Dask operand with a TypeError (docs/backends.md).
RUNS_ON_DASK = frozenset(
    {
        # elementwise
        "add", "subtract", "multiply", "divide", "negative", "positive", "power", "square",
        "sqrt", "exp", "expm1", "log", "log1p", "logaddexp", "sin", "cos", "tanh", "abs",
        "maximum", "minimum", "reciprocal", "sigmoid", "softplus",
        # comparisons and predicates (values, not differentiated)
        "greater", "greater_equal", "less", "less_equal", "equal", "not_equal", "sign",
        "logical_and", "logical_or", "logical_not",
        # selection
        "where",
        # reductions
        "sum", "amax", "amin", "logsumexp", "log_softmax",
        # linear algebra
        "matmul",
        # shapes
        "reshape", "transpose", "getitem", "scatter_add", "broadcast_to", "astype",
    }
)  # fmt: skip

_BACKENDS: dict[type, str] = {}


def backend(x: Any) -> str:
    """The array library of ``x``: ``"dask"``, another foreign library's name, or ``""``
    (NumPy arrays and scalars, Python numbers, anything else the engine converts).

    Examples
    --------
    >>> import numpy as np
    >>> backend(np.ones(2)), backend(1.0)
    ('', '')
    """
    cls = type(x)
    name = _BACKENDS.get(cls)
    if name is None:
        name = _BACKENDS[cls] = _backend_of(cls)
    return name


def _backend_of(cls: type) -> str:
    if issubclass(cls, np.ndarray | np.generic):
        return ""
    root = cls.__module__.split(".")[0]
    if root == "dask" and cls.__name__ == "Array":
        return "dask"
    if hasattr(cls, "__array_namespace__") or root in ("cupy", "jax", "torch"):
        return root
    return ""


def is_foreign(x: Any) -> bool:
    """Whether ``x`` is an array of another library that the engine keeps as it is."""
    return backend(x) != ""


def adopt(x: Any) -> Any:
    """``x`` kept as a Tensor's data: a Dask array as it is (and the thread's dispatcher
    switched to the checked path, see :func:`check_operands`); other foreign arrays refused."""
    name = backend(x)
    if name != "dask":
        raise TypeError(
            f"a {type(x).__module__}.{type(x).__name__} array cannot be wrapped in a Tensor: "
            "autodiffx runs on NumPy and Dask arrays only so far (docs/backends.md); "
            "convert it to NumPy first"
        )
    if not STATE.foreign:
        STATE.foreign = True
    return x


def check_operands(
    name: str, args: Sequence[Any], datas: Sequence[Any], params: dict[str, Any]
) -> None:
    """Raise TypeError if an operand of op ``name`` is a Dask array and the op is not one
    of :data:`RUNS_ON_DASK` (its kernel or its rule would compute, or convert to NumPy),
    or is indexing with an index that is not basic (its gradient needs ``np.add.at``)."""
    if name in RUNS_ON_DASK:
        if name == "getitem" and not is_basic(params.get("idx")) and is_foreign(datas[0]):
            raise refusal(name, args, "advanced indexing (arrays or masks) ")
        return
    for d in datas:
        if is_foreign(d) or (isinstance(d, list | tuple) and any(is_foreign(v) for v in d)):
            raise refusal(name, args)


def refusal(name: str, args: Sequence[Any], what: str = "") -> TypeError:
    """The TypeError of an op that does not run on Dask arrays yet."""
    return TypeError(
        f"{name}({describe(args)}): dask.array.Array operands are not supported by "
        f"{what}'{name}' yet (it could convert them to NumPy or compute them); the ops that run "
        "on Dask are listed in docs/backends.md. Compute the operand first "
        "(ad.compute(t)) if it fits in memory"
    )


def result(out: Any, name: str, args: Sequence[Any]) -> Any:
    """A kernel's result that is not a NumPy array: a Dask array of an op that runs on
    Dask is kept, another foreign result refused, anything else made an ndarray."""
    if not is_foreign(out):
        return np.asarray(out)
    if backend(out) == "dask" and name in RUNS_ON_DASK:
        return out
    raise refusal(name, args)


def owned(g: Any, dtype: np.dtype, like: Any = None) -> Any:
    """A fresh ndarray copy of ``g`` in ``dtype``; a Dask array (immutable) only cast.
    A NumPy ``g`` is made a Dask array chunked as ``like`` when ``like`` is one (the
    gradient of a Dask tensor is a Dask array even where it does not depend on the data).

    Examples
    --------
    >>> owned(np.ones(2), np.dtype("float32")).dtype
    dtype('float32')
    """
    if is_foreign(g):
        return g.astype(dtype, copy=False)
    out = np.array(g, dtype=dtype, copy=True)
    if like is not None and backend(like) == "dask":
        import dask.array

        return dask.array.from_array(out, chunks=like.chunks)
    return out


def namespace(x: Any) -> Any:
    """The array-API namespace of a foreign array (``array_api_compat.array_namespace``;
    ``dask.array`` itself when array-api-compat is not installed)."""
    try:
        from array_api_compat import array_namespace
    except ImportError:  # (the dask extra installs it; dask.array alone serves zeros)
        import dask.array

        return dask.array
    return array_namespace(x)


def zeros_like(x: Any, shape: tuple[int, ...] | None = None) -> Any:
    """Zeros of ``x``'s array type and dtype (``shape`` default ``x.shape``), chunked by
    the backend's default for a Dask array (never one chunk of the whole shape).

    Examples
    --------
    >>> zeros_like(np.ones((2, 3)), (3,))
    array([0., 0., 0.])
    """
    shape = x.shape if shape is None else shape
    if not is_foreign(x):
        return np.zeros(shape, x.dtype)
    return namespace(x).zeros(shape, dtype=x.dtype)


def broadcast_like(g: Any, like: Any) -> Any:
    """NumPy ``g`` broadcast to the shape and chunks of Dask array ``like``, lazily: each
    chunk a task of its own (``g``, small, in it) that makes a broadcast view.

    ``np.broadcast_to`` would make a data-sized view on the client, which Dask embeds in the
    graph and pickles whole; and one task that all the chunks depend on makes Dask's
    scheduler run the whole forward pass before any chunk's backward (holding every chunk)."""
    import dask.array

    g = np.asarray(g)
    meta = np.empty((0,) * like.ndim, g.dtype)
    return dask.array.map_blocks(
        _broadcast_block, g=g, lead=like.ndim - g.ndim, chunks=like.chunks, dtype=g.dtype, meta=meta
    )


def _broadcast_block(g: Any, lead: int, block_info: Any = None) -> Any:
    info = block_info[None]
    where = info["array-location"][lead:]
    idx = tuple(slice(None) if n == 1 else slice(*loc) for n, loc in zip(g.shape, where))
    return np.broadcast_to(g[idx], info["chunk-shape"])


def is_basic(idx: Any) -> bool:
    """Whether index ``idx`` is basic (integers, slices, ``...``, ``None``): no arrays."""
    items = idx if isinstance(idx, tuple) else (idx,)
    return all(i is None or i is Ellipsis or isinstance(i, slice | int | np.integer) for i in items)


def scatter_add(g: Any, shape: tuple[int, ...], idx: Any) -> Any:
    """Zeros of ``shape`` with ``g`` added at ``idx``, for a Dask ``g`` and a basic index
    (the VJP of basic indexing: no duplicate positions, so an assignment); Dask has no
    ``np.add.at``, so other indices are refused. The zeros are chunked as ``g`` along the
    axes that ``idx`` takes whole (``x[:, 0]``: the rows), so that no chunk moves."""
    if not is_basic(idx):
        raise TypeError(
            f"the gradient of indexing with {idx!r} (advanced indexing) is not supported on "
            "dask.array.Array operands yet; index with integers and slices"
        )
    import dask.array

    g, items = _without_new_axes(g, idx, len(shape))
    chunks: list[Any] = []
    k = 0  # g's axis of the next slice
    for n, i in zip(shape, items):
        whole = isinstance(i, slice) and i.indices(n) == (0, n, 1)
        chunks.append(g.chunks[k] if whole else "auto")
        k += not isinstance(i, int | np.integer)
    z = dask.array.zeros(shape, dtype=g.dtype, chunks=tuple(chunks))
    z[items] = g
    return z


def _without_new_axes(g: Any, idx: Any, ndim: int) -> tuple[Any, tuple[Any, ...]]:
    """``g`` (the cotangent of ``x[idx]``) without the axes that ``None`` entries of ``idx``
    inserted (Dask's assignment does not take ``None``), and ``idx`` without them, one item
    per axis of ``x`` (``...`` and the trailing axes spelled out as ``:``)."""
    items = idx if isinstance(idx, tuple) else (idx,)
    real = sum(i is not None and i is not Ellipsis for i in items)
    if Ellipsis not in items:
        items = (*items, Ellipsis)
    full: list[Any] = []
    for i in items:
        full.extend([slice(None)] * (ndim - real) if i is Ellipsis else [i])
    new, pos = [], 0
    for i in full:
        if i is None:
            new.append(pos)
        pos += not isinstance(i, int | np.integer)
    if new:
        g = g.squeeze(axis=tuple(new))
    return g, tuple(i for i in full if i is not None)


def compute(*arrays: Any) -> tuple[Any, ...]:
    """The arrays evaluated in one pass: Dask arrays by one ``dask.compute`` (shared
    chunks read once), NumPy arrays as they are.

    Examples
    --------
    >>> compute(np.ones(2), 3.0)
    (array([1., 1.]), 3.0)
    """
    lazy = [i for i, a in enumerate(arrays) if backend(a) == "dask"]
    if not lazy:
        return arrays
    import dask

    values = dask.compute(*[arrays[i] for i in lazy])
    out = list(arrays)
    for i, v in zip(lazy, values):
        out[i] = np.asarray(v)
    return tuple(out)
