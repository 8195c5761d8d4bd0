"""Array backends beyond NumPy (Dask, array-API arrays): recognising them, kernels, creation."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ._broadcast import np_dtype
from ._convert import describe
from ._mode import STATE

#: The primitives whose kernels and reverse rules run on Dask arrays and keep them lazy,
#: checked against NumPy (values and VJPs to 1e-12, nothing computed before ``ad.compute``)
#: by tests/test_dask.py on every case of their OpSpec rows. Any other primitive refuses a
#: Dask operand with a TypeError that gives its reason (:data:`NOT_ON_DASK`).
RUNS_ON_DASK = frozenset(
    {
        "abs", "add", "alias", "amax", "amin", "arccos", "arccosh", "arcsin", "arcsinh", "arctan",
        "arctan2", "arctanh", "argmax", "argmin", "astype", "beta", "betainc", "betaln",
        "broadcast_to", "cbrt", "ceil", "concatenate", "conj", "copy", "cos", "cosh", "cumsum",
        "diagonal", "diagonal_scatter", "digamma", "divide", "einsum", "entr", "equal", "erf",
        "erfc", "erfcinv", "erfinv", "exp", "exp2", "expm1", "fftn", "flip", "floor",
        "floor_divide", "fmod", "gamma", "gammainc", "gammaincc", "gammaln", "getitem", "greater",
        "greater_equal", "heaviside", "hypot", "i0", "i0e", "i1", "i1e", "ifftn", "imag", "irfftn",
        "isfinite", "isinf", "isnan", "iv", "ive", "jv", "kl_div", "less", "less_equal", "linear",
        "log", "log10", "log1p", "log2", "log_expit", "log_ndtr", "log_softmax", "logaddexp",
        "logical_and", "logical_not", "logical_or", "logical_xor", "logit", "logsumexp", "matmul",
        "maximum", "minimum", "mod", "multiply", "ndtr", "ndtri", "negative", "not_equal", "pad",
        "polygamma", "positive", "power", "prod", "real", "reciprocal", "rel_entr", "reshape",
        "rfftn", "rint", "roll", "round", "scatter_add", "sigmoid", "sign", "signbit", "sin",
        "sinc", "sinh", "softplus", "spence", "split", "sqrt", "square", "stdtr", "subtract",
        "sum", "swapaxes", "tan", "tanh", "transpose", "tril", "triu", "trunc", "where", "xlog1py",
        "xlogy", "yv"
    }
)  # fmt: skip

#: Why the other primitives refuse Dask operands: reason -> names (docs/backends.md prints
#: it; tests/test_dask.py checks that every primitive is in exactly one of the two lists).
_REFUSED_ON_DASK = {
    "a LAPACK factorization: Dask's linear algebra takes one square chunk per matrix, or "
    "has no such function": "cholesky det eig eigh eigvals eigvalsh inv lstsq matrix_rank "
    "pinv qr slogdet solve svd svdvals",
    "SciPy's linalg and signal functions convert their operands to NumPy": "convolve_full "
    "expm logm lu_factor solve_triangular sqrtm",
    "convolution and pooling windows are NumPy stride tricks written into NumPy buffers": "conv "
    "conv_transpose conv_weight_grad pool_scatter pool_select",
    "its gradient reads whether x holds a zero (a value-dependent branch)": "cumprod",
    "Dask has no sort": "argsort",
    "its kernel writes into a NumPy copy of x": "setitem",
    "it reads whether every row's maximum is finite and gathers one class per row "
    "(two integer-array indices, which Dask's indexing does not take)": "softmax_cross_entropy",
}
NOT_ON_DASK: dict[str, str] = {
    name: why for why, names in _REFUSED_ON_DASK.items() for name in names.split()
}

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


#: The foreign array libraries a Tensor wraps: Dask through NumPy's dispatch protocols, the
#: others through their array-API namespace (docs/backends.md).
ADOPTED = ("dask", "array_api_strict", "cupy")


def adopt(x: Any) -> Any:
    """``x`` kept as a Tensor's data: a Dask, CuPy or array-api-strict array as it is (and the
    thread's dispatcher switched to the checked path, see :func:`check_operands`); other
    foreign arrays refused."""
    name = backend(x)
    if name not in ADOPTED:
        raise TypeError(
            f"a {type(x).__module__}.{type(x).__name__} array cannot be wrapped in a Tensor: "
            "autodiffx runs on NumPy, Dask, CuPy and array-api-strict arrays only so far "
            "(docs/backends.md); convert it to NumPy first"
        )
    if not STATE.foreign:
        STATE.foreign = True
    return x


def adopted(x: Any) -> bool:
    """Whether ``x`` (an op's operand that is not a Tensor) is a foreign array: then adopted
    (see :func:`adopt`, a TypeError for an unsupported library), so that the op takes the
    dispatcher's checked path."""
    if type(x) is np.ndarray or backend(x) == "":
        return False
    adopt(x)
    return True


def is_lazy(x: Any) -> bool:
    """Whether ``x`` is a Dask array (its values are computed only by ``ad.compute``)."""
    return type(x) is not np.ndarray and backend(x) == "dask"


def is_array_api(x: Any) -> bool:
    """Whether ``x`` is a foreign array the engine drives through its array-API namespace
    (array-api-strict, CuPy): kernels resolved per namespace, rules evaluated on Tensors."""
    return type(x) is not np.ndarray and backend(x) not in ("", "dask")


_ADVANCED = (
    "with an advanced index (arrays or masks): its gradient would add into repeated "
    "positions, and Dask has no np.add.at; index with integers and slices"
)


def check_operands(
    name: str, args: Sequence[Any], datas: Sequence[Any], params: dict[str, Any]
) -> None:
    """Raise TypeError if an operand of op ``name`` is a Dask array and the op is not one
    of :data:`RUNS_ON_DASK` (its kernel or its rule would compute, or convert to NumPy),
    or is indexing with an index that is not basic (its gradient needs ``np.add.at``)."""
    if name in RUNS_ON_DASK:
        if name == "getitem" and not is_basic(params.get("idx")) and is_foreign(datas[0]):
            raise refusal(name, args, _ADVANCED)
        return
    for d in datas:
        if is_foreign(d) or (isinstance(d, list | tuple) and any(is_foreign(v) for v in d)):
            raise refusal(name, args)


def first_foreign(datas: Sequence[Any]) -> Any:
    """The first operand (or element of a list operand) that is a foreign array, else None."""
    for d in datas:
        if type(d) is np.ndarray:
            continue
        if isinstance(d, list | tuple):
            for v in d:
                if type(v) is not np.ndarray and is_foreign(v):
                    return v
        elif is_foreign(d):
            return d
    return None


def convert_operands(name: str, args: Sequence[Any], datas: list[Any], x: Any) -> Any:
    """The array-API namespace of ``x``, with the NumPy operands in ``datas`` (arrays,
    NumPy scalars, also inside list operands) converted into it in place, on ``x``'s
    device (for CuPy: a copy to the GPU). Operands of another foreign library: refused."""
    xp = namespace(x)
    dev = x.device
    lib = backend(x)

    def conv(v: Any) -> Any:
        if isinstance(v, np.ndarray | np.generic):
            return xp.asarray(v, device=dev)
        if is_foreign(v) and backend(v) != lib:
            raise TypeError(
                f"{name}({describe(args)}): operands of two array libraries ({lib} and "
                f"{backend(v)}); convert one of them first"
            )
        return v

    for i, d in enumerate(datas):
        if isinstance(d, list | tuple):
            datas[i] = type(d)(conv(v) for v in d)
        elif type(d) is not float and type(d) is not int:
            datas[i] = conv(d)
    return xp


# ----- kernels on array-API namespaces -------------------------------------------------------
#: The registry's (NumPy's) names whose array-API function is named differently; a dotted
#: name is in an extension (``linalg``). The one table of name differences.
NAMES = {
    "amax": "max",
    "amin": "min",
    "arccos": "acos",
    "arccosh": "acosh",
    "arcsin": "asin",
    "arcsinh": "asinh",
    "arctan": "atan",
    "arctan2": "atan2",
    "arctanh": "atanh",
    "concatenate": "concat",
    "det": "linalg.det",
    "diagonal": "linalg.diagonal",
    "eigh": "linalg.eigh",
    "eigvalsh": "linalg.eigvalsh",
    "inv": "linalg.inv",
    "cholesky": "linalg.cholesky",
    "solve": "linalg.solve",
    "slogdet": "linalg.slogdet",
    "svd": "linalg.svd",
    "svdvals": "linalg.svdvals",
    "qr": "linalg.qr",
    "pinv": "linalg.pinv",
    "matrix_rank": "linalg.matrix_rank",
    "fftn": "fft.fftn",
    "ifftn": "fft.ifftn",
    "rfftn": "fft.rfftn",
    "irfftn": "fft.irfftn",
    "cumprod": "cumulative_prod",
    "cumsum": "cumulative_sum",
    "mod": "remainder",
    "power": "pow",
    "rint": "round",
    "swapaxes": "permute_dims",
    "transpose": "permute_dims",
}


def _transpose(xp: Any, fn: Callable[..., Any]) -> Callable[..., Any]:
    def transpose(x: Any, axes: Any = None) -> Any:
        return fn(x, tuple(range(x.ndim))[::-1] if axes is None else tuple(axes))

    return transpose


def _swapaxes(xp: Any, fn: Callable[..., Any]) -> Callable[..., Any]:
    def swapaxes(x: Any, axis1: int, axis2: int) -> Any:
        perm = list(range(x.ndim))
        perm[axis1], perm[axis2] = perm[axis2], perm[axis1]
        return fn(x, tuple(perm))

    return swapaxes


def _cumulative(xp: Any, fn: Callable[..., Any]) -> Callable[..., Any]:
    def cumulative(x: Any, axis: Any = None) -> Any:
        if axis is None:  # (NumPy's: over the flattened array)
            return fn(xp.reshape(x, (-1,)), axis=0)
        return fn(x, axis=axis)

    return cumulative


def _round(xp: Any, fn: Callable[..., Any]) -> Callable[..., Any]:
    def round_(x: Any, decimals: int = 0) -> Any:
        if decimals:
            raise TypeError(
                f"round(decimals={decimals}): the array API rounds to integers only; "
                "scale by 10**decimals and round"
            )
        return fn(x)

    return round_


def _tril(xp: Any, fn: Callable[..., Any]) -> Callable[..., Any]:
    def tri(x: Any, k: int = 0) -> Any:
        if x.ndim < 2:  # (NumPy's: a vector is the rows of a square matrix)
            x = xp.broadcast_to(x[None, :], (x.shape[0], x.shape[0]))
        return fn(x, k=k)

    return tri


def split(x: Any, indices_or_sections: Any, axis: int = 0) -> tuple[Any, ...]:
    """``np.split`` by slicing (the array API and Dask have no ``split``).

    Examples
    --------
    >>> [a.tolist() for a in split(np.arange(5), [1, 3])]
    [[0], [1, 2], [3, 4]]
    """
    n = x.shape[axis]
    if isinstance(indices_or_sections, int):
        if n % indices_or_sections:
            raise ValueError("array split does not result in an equal division")
        step = n // indices_or_sections
        cuts = list(range(step, n, step))
    else:
        cuts = [int(c) for c in indices_or_sections]
    bounds = zip([0, *cuts], [*cuts, n])
    lead = (slice(None),) * (axis % x.ndim)
    return tuple(x[(*lead, slice(a, max(a, b)), ...)] for a, b in bounds)


def triangle(x: Any, k: int, upper: bool) -> Any:
    """``np.triu(x, k)`` (``upper``) or ``np.tril(x, k)`` of a Dask array, by a mask chunked
    as ``x`` (Dask's own takes no vector and warns on complex arrays)."""
    import dask.array as da

    if x.ndim == 1:  # (NumPy's: a vector is the rows of a square matrix)
        x = da.broadcast_to(x[None, :], (x.shape[0], x.shape[0]))
    n, m = x.shape[-2:]
    lower = da.tri(n, m, k - 1 if upper else k, dtype=bool, chunks=x.chunks[-2:])
    return da.where(lower != upper, x, 0)


def _logical(xp: Any, fn: Callable[..., Any]) -> Callable[..., Any]:
    def logical(*xs: Any) -> Any:  # (NumPy's: any value is true where nonzero)
        return fn(*[x if _is_bool(x) else x != 0 for x in xs])

    return logical


def _numeric(xp: Any, fn: Callable[..., Any]) -> Callable[..., Any]:
    def numeric(*xs: Any, **params: Any) -> Any:  # (NumPy's: booleans count as 0 and 1)
        if not any(_is_bool(x) for x in xs):
            return fn(*xs, **params)
        like = next((x for x in xs if hasattr(x, "dtype") and not _is_bool(x)), None)
        dt = xp.int64 if like is None else like.dtype
        return fn(*[xp.astype(x, dt) if _is_bool(x) else x for x in xs], **params)

    return numeric


def _is_bool(x: Any) -> bool:
    return hasattr(x, "dtype") and np_dtype(x.dtype).kind == "b"


def _imag(xp: Any, fn: Callable[..., Any]) -> Callable[..., Any]:
    def imag(x: Any) -> Any:  # (NumPy's: zeros for a real array)
        return fn(x) if np_dtype(x.dtype).kind == "c" else xp.zeros_like(x)

    return imag


def _one_array(idx: Any) -> tuple[int, np.ndarray] | None:
    """``(axis, array)`` of an index that is one integer array (NumPy's or a list) at that
    axis and full slices ``:`` before it, else None."""
    items = idx if isinstance(idx, tuple) else (idx,)
    *lead, last = items if items else (None,)
    if not isinstance(last, np.ndarray | list) or any(
        not isinstance(i, slice) or i != slice(None) for i in lead
    ):
        return None
    a = np.asarray(last)
    return (len(lead), a) if a.dtype.kind in "iu" else None


def _getitem(xp: Any, x: Any, idx: Any) -> Any:
    got = _one_array(idx)
    if got is None:
        if is_basic(idx) or _is_mask(idx):
            return x[index(xp, x, idx)]
        return _take_flat(xp, x, _positions(x.shape, idx))
    # NOTE: an integer array at one axis is xp.take (the array API's indexing takes integer
    # arrays only together with integers).
    axis, a = got
    n = x.shape[axis]
    flat = xp.take(x, xp.asarray(a.reshape(-1) % n, device=x.device), axis=axis)
    return xp.reshape(flat, (*x.shape[:axis], *a.shape, *x.shape[axis + 1 :]))


def _setitem(xp: Any, fn: Callable[..., Any]) -> Callable[..., Any]:
    def setitem(x: Any, v: Any, idx: Any) -> Any:
        if not (is_basic(idx) or _is_mask(idx)):
            return _set_flat(xp, x, v, _positions(x.shape, idx))
        out = xp.asarray(x, copy=True)
        ix = index(xp, out, idx)
        out[ix] = v if isinstance(v, int | float | complex) else xp.broadcast_to(v, out[ix].shape)
        return out

    return setitem


def _positions(shape: tuple[int, ...], idx: Any) -> np.ndarray:
    """The flat positions an advanced index selects in an array of ``shape``: NumPy's
    indexing on the positions (host memory of the array's size; advanced indices only)."""
    return np.arange(int(np.prod(shape))).reshape(shape)[idx]


def _take_flat(xp: Any, x: Any, pos: np.ndarray) -> Any:
    flat = xp.reshape(x, (-1,))
    got = xp.take(flat, xp.asarray(pos.reshape(-1), device=x.device), axis=0)
    return xp.reshape(got, pos.shape)


def _scatter_flat(xp: Any, g: Any, shape: tuple[int, ...], pos: np.ndarray) -> Any:
    """Zeros of ``shape`` with ``g`` added at the flat positions ``pos`` (repeats summed:
    sorted, then a one-hot product over the repeated positions only)."""
    p = pos.reshape(-1)
    order = np.argsort(p, kind="stable")
    sp = p[order]
    uniq = np.unique(sp)
    gs = xp.take(xp.reshape(g, (-1,)), xp.asarray(order, device=g.device), axis=0)
    if uniq.size != sp.size:
        onehot = np.searchsorted(uniq, sp)[None, :] == np.arange(uniq.size)[:, None]
        gs = xp.astype(xp.asarray(onehot, device=g.device), g.dtype) @ gs
    mask = np.zeros(int(np.prod(shape)), bool)
    mask[uniq] = True
    z = xp.zeros(mask.shape, dtype=g.dtype, device=g.device)
    z[xp.asarray(mask, device=g.device)] = gs
    return xp.reshape(z, shape)


def _set_flat(xp: Any, x: Any, v: Any, pos: np.ndarray) -> Any:
    """``x`` with ``v`` written at the flat positions ``pos`` (a repeated position keeps the
    last value written, as NumPy's assignment)."""
    p = pos.reshape(-1)
    order = np.argsort(p, kind="stable")
    sp = p[order]
    last = np.append(sp[1:] != sp[:-1], True)
    vs = xp.reshape(xp.broadcast_to(xp.asarray(v, device=x.device), pos.shape), (-1,))
    vals = xp.take(vs, xp.asarray(order[last], device=x.device), axis=0)
    mask = np.zeros(x.size, bool)
    mask[sp[last]] = True
    out = xp.reshape(xp.asarray(x, copy=True), (-1,))
    out[xp.asarray(mask, device=x.device)] = vals
    return xp.reshape(out, x.shape)


def _true_divide(xp: Any, fn: Callable[..., Any]) -> Callable[..., Any]:
    def divide(a: Any, b: Any) -> Any:  # (NumPy's: integers and booleans give float64)
        if not any(hasattr(x, "dtype") and np_dtype(x.dtype).kind in "fc" for x in (a, b)):
            a, b = (xp.astype(x, xp.float64) if hasattr(x, "dtype") else x for x in (a, b))
        return fn(a, b)

    return divide


def _diagonal(xp: Any, fn: Callable[..., Any]) -> Callable[..., Any]:
    def diagonal(x: Any, offset: int = 0, axis1: int = 0, axis2: int = 1) -> Any:
        a1, a2 = axis1 % x.ndim, axis2 % x.ndim
        rest = [i for i in range(x.ndim) if i not in (a1, a2)]
        return fn(xp.permute_dims(x, (*rest, a1, a2)), offset=offset)

    return diagonal


def _matrix_rank(xp: Any, fn: Callable[..., Any]) -> Callable[..., Any]:
    def rank(a: Any, tol: Any = None, hermitian: bool = False, rtol: Any = None) -> Any:
        if tol is not None:
            raise TypeError("matrix_rank(tol=...) is not in the array API; pass rtol=")
        return fn(a, rtol=rtol)

    return rank


def _complex_fft(xp: Any, fn: Callable[..., Any]) -> Callable[..., Any]:
    def fft(x: Any, s: Any, axes: Any, norm: Any) -> Any:  # (the array API's takes complex)
        if np_dtype(x.dtype).kind != "c":
            x = xp.astype(x, xp.complex64 if np_dtype(x.dtype) == np.float32 else xp.complex128)
        return fn(x, s=s, axes=axes, norm=norm)

    return fft


def _pad(xp: Any, fn: Callable[..., Any]) -> Callable[..., Any]:
    def pad(x: Any, pad_width: Any, constant_values: Any = 0) -> Any:
        pw = np.broadcast_to(np.asarray(pad_width, dtype=np.int64), (x.ndim, 2))
        shape = tuple(int(n + lo + hi) for n, (lo, hi) in zip(x.shape, pw))
        out = xp.full(shape, constant_values, dtype=x.dtype, device=x.device)
        out[tuple(slice(int(lo), int(lo) + n) for n, (lo, _) in zip(x.shape, pw))] = x
        return out

    return pad


def _diagonal_scatter(xp: Any, fn: Callable[..., Any]) -> Callable[..., Any]:
    def scatter(g: Any, shape: tuple[int, ...], offset: int, axis1: int, axis2: int) -> Any:
        nd = len(shape)
        a1, a2 = axis1 % nd, axis2 % nd
        rest = [i for i in range(nd) if i not in (a1, a2)]
        n, m = shape[a1], shape[a2]
        dev = getattr(g, "device", None)  # (Dask arrays have none)
        # (not xp.eye: Dask's loses a chunk of a rectangular one after a rechunk)
        cols = xp.arange(m, device=dev)[None, :]
        eye = xp.astype(xp.arange(n, device=dev)[:, None] + offset == cols, g.dtype)
        size = n if offset >= 0 else m  # (d[r] sits in row r, or column r below the diagonal)
        fill = xp.zeros((*g.shape[:-1], size - g.shape[-1]), dtype=g.dtype, device=dev)
        d = xp.concat([g, fill], axis=-1)
        z = d[..., :, None] * eye if offset >= 0 else d[..., None, :] * eye
        perm = (*rest, a1, a2)
        return xp.permute_dims(z, tuple(perm.index(i) for i in range(nd)))

    return scatter


#: Signature differences (NumPy's call -> the array API's), by the registry's name.
ADAPTERS: dict[str, Callable[[Any, Callable[..., Any]], Callable[..., Any]]] = {
    "transpose": _transpose,
    "swapaxes": _swapaxes,
    "cumsum": _cumulative,
    "cumprod": _cumulative,
    "round": _round,
    "rint": lambda xp, fn: fn,
    "concatenate": lambda xp, fn: lambda *xs, axis=0: fn(list(xs), axis=axis),
    "reshape": lambda xp, fn: lambda x, shape: fn(x, (shape,) if isinstance(shape, int) else shape),
    "astype": lambda xp, fn: lambda x, dtype, copy=True: fn(x, xp_dtype(xp, dtype), copy=copy),
    "copy": lambda xp, fn: lambda x, order="K": xp.asarray(x, copy=True),
    "alias": lambda xp, fn: lambda x: xp.asarray(x, copy=True),
    "getitem": lambda xp, fn: lambda x, idx: _getitem(xp, x, idx),
    "sigmoid": lambda xp, fn: lambda x: _sigmoid(xp, x),
    "tril": _tril,
    "logical_and": _logical,
    "logical_or": _logical,
    "logical_xor": _logical,
    "logical_not": _logical,
    "add": _numeric,
    "subtract": _numeric,
    "multiply": _numeric,
    "sum": _numeric,
    "imag": _imag,
    "divide": _true_divide,
    "eigh": lambda xp, fn: lambda a, UPLO="L": tuple(fn(_lower(xp, a, UPLO))),
    "eigvalsh": lambda xp, fn: lambda a, UPLO="L": fn(_lower(xp, a, UPLO)),
    "svd": lambda xp, fn: (
        lambda a, full_matrices=True, hermitian=False: tuple(fn(a, full_matrices=full_matrices))
    ),
    "svdvals": lambda xp, fn: lambda a, hermitian=False: fn(a),
    "matrix_rank": _matrix_rank,
    "fftn": _complex_fft,
    "ifftn": _complex_fft,
    "irfftn": _complex_fft,
    "pad": _pad,
    "diagonal_scatter": _diagonal_scatter,
    "scatter_add": lambda xp, fn: scatter_add,
    "setitem": _setitem,
    "diagonal": _diagonal,
    "triu": _tril,
    "split": lambda xp, fn: split,
}


def diagonal_scatter(g: Any, shape: tuple[int, ...], offset: int, axis1: int, axis2: int) -> Any:
    """Zeros of ``shape`` with ``g`` on the diagonal, for a Dask ``g`` (NumPy's kernel assigns
    through integer arrays): the array-API adapter, a product with an identity, on Dask."""
    return _diagonal_scatter(namespace(g), None)(g, tuple(shape), offset, axis1, axis2)


def _lower(xp: Any, a: Any, uplo: str) -> Any:
    """``a`` for an eigh that reads the lower triangle, when NumPy's call reads ``uplo``:
    the upper triangle of ``a`` is the lower one of its conjugate transpose."""
    if uplo == "L":
        return a
    return xp.conj(a.mT) if np_dtype(a.dtype).kind == "c" else a.mT


def _sigmoid(xp: Any, x: Any) -> Any:
    e = xp.exp(-xp.abs(x))  # (never overflows)
    return xp.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _attr(xp: Any, name: str) -> Any:
    for part in name.split("."):
        xp = getattr(xp, part, None)
        if xp is None:
            return None
    return xp


def how(p: Any, xp: Any) -> tuple[str, str]:
    """How primitive ``p`` runs on namespace ``xp``: ``("xp", name)`` (the namespace's
    function), ``("adapter", "")`` (written here with the namespace's functions),
    ``("composed", "")`` (its Python kernel on Tensors, whose NumPy calls dispatch to other
    primitives) or ``("numpy", reason)`` (refused)."""
    if p.numpy_only:
        return "numpy", p.numpy_only
    name = NAMES.get(p.name, p.name)
    if _attr(xp, name) is not None:
        return "xp", name
    if p.name in ADAPTERS:
        return "adapter", ""
    k = p.kernel
    if isinstance(k, np.ufunc) or not getattr(k, "__module__", "").startswith("autodiffx"):
        where = "numpy" if getattr(np, k.__name__, None) is k else "scipy.special"
        return "numpy", f"the array API has no {where}.{k.__name__}"
    return "composed", ""


def resolve(p: Any, xp: Any) -> Callable[..., Any] | None:
    """The kernel of ``p`` on namespace ``xp`` (None: compose the entry's kernel from other
    primitives); TypeError for an op that runs on NumPy only."""
    kind, what = how(p, xp)
    if kind == "numpy":
        raise TypeError(
            f"'{p.name}' runs on NumPy arrays only ({what}); convert the operand to NumPy "
            "first (docs/backends.md lists the ops of each backend)"
        )
    if kind == "composed":
        return None
    fn = _attr(xp, what) if kind == "xp" else None
    adapt = ADAPTERS.get(p.name)
    return fn if adapt is None else adapt(xp, fn)


_LOCAL = threading.local()


def composing(p: Any) -> Any:
    """A context in which ``p``'s kernel is composed on Tensors: re-entering ``p`` (its
    kernel calls the NumPy function it overrides) raises TypeError instead of looping."""
    return _Composing(p)


class _Composing:
    def __init__(self, p: Any) -> None:
        self.p = p

    def __enter__(self) -> None:
        active = _LOCAL.__dict__.setdefault("active", set())
        if self.p in active:
            raise TypeError(
                f"'{self.p.name}' has no array-API kernel (its NumPy kernel calls itself); "
                "it runs on NumPy arrays only"
            )
        active.add(self.p)

    def __exit__(self, *exc: Any) -> None:
        _LOCAL.active.discard(self.p)


def index(xp: Any, x: Any, idx: Any) -> Any:
    """An index of ``x`` with its NumPy arrays converted into ``x``'s namespace, slices
    clipped to the axes (the array API leaves out-of-bounds stops unspecified) and a
    trailing ``...`` where basic (the array API does not index the remaining axes
    implicitly)."""
    items = idx if isinstance(idx, tuple) else (idx,)
    if not any(isinstance(i, np.ndarray | list) for i in items):
        items = _clipped(items, x.shape)
        if not any(i is Ellipsis for i in items):
            items = (*items, Ellipsis)
    return tuple(_index_item(xp, x, i) for i in items)


def _clipped(items: tuple[Any, ...], shape: tuple[int, ...]) -> tuple[Any, ...]:
    """Basic index items with each slice clipped to the length of the axis it indexes."""
    cut = next((k for k, i in enumerate(items) if i is Ellipsis), len(items))
    used = sum(1 for i in items if i is not None and i is not Ellipsis)
    out, axis = [], 0
    for k, i in enumerate(items):
        if k == cut:
            axis = len(shape) - (used - axis)
        elif isinstance(i, slice) and axis < len(shape):
            start, stop, step = i.indices(shape[axis])
            out.append(slice(start, None if step < 0 and stop < 0 else stop, step))
            axis += 1
            continue
        elif i is not None:
            axis += 1
        out.append(i)
    return tuple(out)


def _index_item(xp: Any, x: Any, idx: Any) -> Any:
    if isinstance(idx, np.ndarray):
        return xp.asarray(idx, device=x.device)
    if isinstance(idx, list):
        return xp.asarray(np.asarray(idx), device=x.device)
    if isinstance(idx, np.integer):
        return int(idx)
    return idx


#: NumPy functions that only inspect values (``_tensor._INSPECT``), on array-API arrays.
_INSPECTORS: dict[str, Callable[..., Any]] = {
    "shape": lambda xp, x: tuple(x.shape),
    "ndim": lambda xp, x: x.ndim,
    "size": lambda xp, x: x.size,
    "iscomplexobj": lambda xp, x: np_dtype(x.dtype).kind == "c",
    "isrealobj": lambda xp, x: np_dtype(x.dtype).kind != "c",
    "result_type": lambda xp, *xs: np.result_type(*[_np_like(x) for x in xs]),
    "any": lambda xp, x, axis=None, keepdims=False: xp.any(x, axis=axis, keepdims=keepdims),
    "all": lambda xp, x, axis=None, keepdims=False: xp.all(x, axis=axis, keepdims=keepdims),
    "isfinite": lambda xp, x: xp.isfinite(x),
    "isnan": lambda xp, x: xp.isnan(x),
    "isinf": lambda xp, x: xp.isinf(x),
    "count_nonzero": lambda xp, x, axis=None: xp.count_nonzero(x, axis=axis),
}


def _np_like(x: Any) -> Any:
    return np.empty(0, np_dtype(x.dtype)) if is_foreign(x) else x


def inspect(func: Callable[..., Any], args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
    """A NumPy function that only inspects values (``np.any``, ``np.shape``, ...) applied to
    array-API arrays, in their namespace; TypeError for the others."""
    fn = _INSPECTORS.get(func.__name__)
    x = next(a for a in args if is_foreign(a))
    if fn is None:
        raise TypeError(
            f"np.{func.__name__} on a {type(x).__module__} array would convert it to NumPy; "
            "use the array's own namespace"
        )
    return fn(namespace(x), *args, **kwargs)


def inexact(dt: Any) -> bool:
    """Whether a dtype (NumPy's or another library's) is floating or complex."""
    return np_dtype(dt).kind in ("f", "c")


def like(name: str, x: Any, *args: Any, dtype: Any = None, **kw: Any) -> Any:
    """``np.<name>(x, ...)`` (``zeros_like``, ``ones_like``, ``full_like``, ``empty_like``)
    for a foreign array ``x``: the namespace's function, on ``x``'s device."""
    xp = namespace(x)
    if kw.pop("order", "K") != "K" or kw.pop("subok", True) is not True or kw:
        raise TypeError(f"np.{name} on a foreign array takes dtype= only, got {sorted(kw)}")
    return getattr(xp, name)(x, *args, dtype=xp_dtype(xp, dtype))


def absmax(x: Any) -> float:
    """``max |x|`` as a Python float (0.0 for no elements), in ``x``'s own namespace.

    Examples
    --------
    >>> absmax(np.array([1.0, -3.0]))
    3.0
    """
    if not is_foreign(x):
        return float(np.max(np.abs(x), initial=0.0))
    if x.size == 0:
        return 0.0
    xp = namespace(x)
    return float(xp.max(xp.abs(x)))


def item(x: Any) -> Any:
    """The one element of a foreign array as a Python number (for CuPy: read from the GPU,
    as ``float(t)`` asks)."""
    if hasattr(x, "item"):
        return x.item()
    v = namespace(x).reshape(x, ())
    kind = np_dtype(x.dtype).kind
    return {"b": bool, "i": int, "u": int, "c": complex}.get(kind, float)(v)


def cast(x: Any, dtype: Any) -> Any:
    """A foreign array ``x`` cast to NumPy's ``dtype`` (``ad.tensor(x, dtype=...)``)."""
    if backend(x) == "dask" or hasattr(x, "astype"):
        return x.astype(dtype)
    xp = namespace(x)
    return xp.astype(x, xp_dtype(xp, dtype))


def xp_dtype(xp: Any, dtype: Any) -> Any:
    """NumPy's ``dtype`` in namespace ``xp`` (the same object for CuPy and Dask)."""
    if dtype is None or not isinstance(dtype, np.dtype | type | str):
        return dtype
    return getattr(xp, np.dtype(dtype).name)


def refusal(name: str, args: Sequence[Any], why: str = "") -> TypeError:
    """The TypeError of an op that does not run on Dask arrays: ``why``, by default the
    reason in :data:`NOT_ON_DASK`."""
    why = why or NOT_ON_DASK.get(name, "it could convert them to NumPy or compute them")
    return TypeError(
        f"{name}({describe(args)}): dask.array.Array operands are not supported by "
        f"'{name}' ({why}); the ops that run on Dask are listed in docs/backends.md. "
        "Compute the operand first (ad.compute(t)) if it fits in memory"
    )


def result(out: Any, name: str, args: Sequence[Any]) -> Any:
    """A kernel's result that is not a NumPy array: a Dask array of an op that runs on
    Dask, an array-API array (its kernel was resolved for it) kept, another foreign result
    refused, anything else made an ndarray."""
    if not is_foreign(out):
        return np.asarray(out)
    lib = backend(out)
    if (lib == "dask" and name in RUNS_ON_DASK) or lib in ADOPTED[1:]:
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
    if type(g) is not np.ndarray and is_foreign(g):
        return g.astype(dtype, copy=False)
    out = np.array(g, dtype=dtype, copy=True)
    if like is not None and type(like) is not np.ndarray and backend(like) == "dask":
        import dask.array

        return dask.array.from_array(out, chunks=like.chunks)
    return out


def namespace(x: Any) -> Any:
    """The array-API namespace of a foreign array (``array_api_compat.array_namespace``;
    ``dask.array`` itself when array-api-compat is not installed), cached per array type."""
    xp = _NAMESPACES.get(type(x))
    if xp is not None:
        return xp
    try:
        from array_api_compat import array_namespace
    except ImportError:  # (the dask extra installs it; dask.array alone serves zeros)
        import dask.array

        return dask.array
    xp = _NAMESPACES[type(x)] = array_namespace(x)
    return xp


_NAMESPACES: dict[type, Any] = {}


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
    if backend(x) == "dask":
        return namespace(x).zeros(shape, dtype=x.dtype)
    return namespace(x).zeros(shape, dtype=x.dtype, device=x.device)


def ones_like(x: Any) -> Any:
    """Ones of ``x``'s shape, array type, dtype (and device).

    Examples
    --------
    >>> ones_like(np.zeros(2))
    array([1., 1.])
    """
    if not is_foreign(x):
        return np.ones(x.shape, x.dtype)
    return namespace(x).ones_like(x)


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
    """Zeros of ``shape`` with ``g`` added at ``idx``, for a foreign ``g`` (the VJP of
    indexing): Dask by :func:`_scatter_lazy`; on an array-API namespace, which has no
    ``np.add.at``, a basic index or a mask is an assignment into zeros, one integer array
    a one-hot product, any other index a scatter of flat positions (repeats summed)."""
    if backend(g) == "dask":
        return _scatter_lazy(g, shape, idx)
    xp = namespace(g)
    if _one_array(idx) is not None:
        return _scatter_onehot(xp, g, tuple(shape), idx)
    if not is_basic(idx) and not _is_mask(idx):
        return _scatter_flat(xp, g, tuple(shape), _positions(tuple(shape), idx))
    z = zeros_like(g, tuple(shape))
    items = idx if isinstance(idx, tuple) else (idx,)
    ix = index(xp, z, tuple(i for i in items if i is not None))
    z[ix] = xp.reshape(g, z[ix].shape)  # (axes of None in the index: size 1, dropped)
    return z


def _scatter_lazy(g: Any, shape: tuple[int, ...], idx: Any) -> Any:
    """:func:`scatter_add` for a Dask ``g`` and a basic index (no duplicate positions, so an
    assignment); Dask has no ``np.add.at``, so other indices are refused. The zeros are
    chunked as ``g`` along the axes that ``idx`` takes whole (``x[:, 0]``: the rows), so
    that no chunk moves."""
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


def _is_mask(idx: Any) -> bool:
    items = idx if isinstance(idx, tuple) else (idx,)
    return len(items) == 1 and isinstance(items[0], np.ndarray) and items[0].dtype == np.bool_


def _scatter_onehot(xp: Any, g: Any, shape: tuple[int, ...], idx: Any) -> Any:
    """Scatter-add of one integer array at one axis (``x[:, [0, 0, 2]]``, positions may
    repeat): a one-hot matrix product (memory: axis length x index size), as the array API
    has neither ``add.at`` nor assignment through integer arrays."""
    axis, a = _one_array(idx)  # type: ignore[misc]
    i = a.reshape(-1) % shape[axis]  # (the user's NumPy index)
    n, k = shape[axis], i.size
    onehot = xp.astype(xp.asarray(np.arange(n)[:, None] == i[None, :], device=g.device), g.dtype)
    gm = xp.reshape(g, (*shape[:axis], k, -1))  # (the index's axes flattened, the rest after)
    out = onehot @ gm  # (..., n, rest)
    return xp.reshape(out, shape)


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
