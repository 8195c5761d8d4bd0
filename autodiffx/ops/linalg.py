"""Products: matmul (bilinear primitive) and dot, inner, outer, tensordot, trace built on it."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._registry import FUNCTION_MAP, apply, defprim
from .._tensor import Tensor
from .reduction import sum_
from .shape import diagonal, lift, ravel, reshape, transpose


# NOTE: cotangents and tangents may carry leading batch axes (vectorized Jacobians), so a 1-D
# operand's cotangent is never a plain product with g (g * b would pair the batch axis with
# b): the vector axis is always spelled out with [..., None].
def _mm_ta(g: Any, a: Any, b: Any) -> Any:
    if b.ndim == 1:
        return g[..., None] * b
    if a.ndim == 1:
        return (g[..., None, :] @ np.swapaxes(b, -1, -2))[..., 0, :]
    return g @ np.swapaxes(b, -1, -2)


def _mm_tb(g: Any, a: Any, b: Any) -> Any:
    if a.ndim == 1:
        return a * g[..., None] if b.ndim == 1 else a[:, None] * g[..., None, :]
    if b.ndim == 1:
        if a.ndim == 2:
            return g @ a  # (..., m) @ (m, k): one product, batch axes broadcast
        return (np.swapaxes(a, -1, -2) @ g[..., :, None])[..., 0]
    return np.swapaxes(a, -1, -2) @ g


def _mm_vjp(needs: tuple[bool, ...], g: Any, out: Any, a: Any, b: Any) -> tuple[Any, Any]:
    return (_mm_ta(g, a, b) if needs[0] else None, _mm_tb(g, a, b) if needs[1] else None)


def _mm_batched(x: Any, y: Any, nb: int, x_batched: bool) -> Any:
    """``x @ y`` per example, where ``x`` (or else ``y``) carries ``nb`` leading batch axes.

    A batched 1-D tangent would be read by matmul as a matrix (a batched vector is 2-D), and
    a batched matrix's batch axis would meet the other operand's stack axes: the vectors
    become explicit row/column matrices and the batched operand gets the stack rank first.
    """
    nx = x.ndim - (nb if x_batched else 0)
    ny = y.ndim - (0 if x_batched else nb)
    # One matrix and a batch of vectors: a single matrix-matrix product, not one
    # matrix-vector product per batch element (A @ t_b = t_b @ A^T for every b at once).
    if not x_batched and nx == 2 and ny == 1:
        return matmul_.call(y, np.swapaxes(x, -1, -2))
    if x_batched and nx == 1 and ny == 2:
        return matmul_.call(x, y)
    if nx == 1:
        x = x[..., None, :]
    if ny == 1:
        y = y[..., None]
    n = max(nx, ny, 2)
    if x_batched:
        x = lift(x, nb, n)
    else:
        y = lift(y, nb, n)
    r = matmul_.call(x, y)
    if ny == 1:
        r = r[..., 0]
    if nx == 1:
        r = r[..., 0] if ny == 1 else r[..., 0, :]
    return r


def total(terms: Any) -> Any:
    """The sum of the terms that are not None (a JVP's contributions), or None if none is."""
    acc = None
    for term in terms:
        if term is not None:
            acc = term if acc is None else acc + term
    return acc


def _mm_jvp(tans: tuple[Any, ...], out: Any, a: Any, b: Any, *, nb: int) -> Any:
    ta, tb = tans
    acc = None
    if ta is not None:
        acc = _mm_batched(ta, b, nb, True) if nb else matmul_.call(ta, b)
    if tb is not None:
        term = _mm_batched(a, tb, nb, False) if nb else matmul_.call(a, tb)
        acc = term if acc is None else acc + term
    return acc


matmul_ = defprim(
    "matmul",
    np.matmul,
    vjp=_mm_vjp,
    jvp=_mm_jvp,
    multilinear=True,
    notation="@",
    partials=("{d} @ {b} | {d} @ {b}ᵀ", "{a} @ {d} | {a}ᵀ @ {d}"),
    vmap="matmul",
    doc="Matrix product with NumPy's batching and 1-D rules (bilinear: one rule per operand).",
)


def matmul(a: Any, b: Any, out: Any = None, **kw: Any) -> Tensor:
    """Matrix product (``a @ b``), batched, with NumPy's 1-D rules.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.matmul(ad.eye(2), ad.tensor([1.0, 2.0]))
    tensor([1., 2.])
    """
    if out is not None or kw:
        raise TypeError("matmul: out= and other keyword arguments are not supported on Tensors")
    na = a.ndim if isinstance(a, Tensor | np.ndarray) else np.ndim(a)
    nb = b.ndim if isinstance(b, Tensor | np.ndarray) else np.ndim(b)
    if na == 0 or nb == 0:
        name = "a" if na == 0 else "b"
        raise ValueError(f"matmul: input {name} is 0-d (a scalar); use multiply or *")
    return apply(matmul_, (a, b))


def tensordot(a: Any, b: Any, axes: Any = 2) -> Tensor:
    """Sum of products over the given axes (as ``np.tensordot``).

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.tensordot(ad.ones((2, 3)), ad.ones((3, 4)), axes=1).shape
    (2, 4)
    """
    sa, sb = np.shape(a), np.shape(b)
    na, nb = len(sa), len(sb)
    if isinstance(axes, int | np.integer):
        ax_a = list(range(na - int(axes), na))
        ax_b = list(range(int(axes)))
    else:
        ax_a, ax_b = axes
        ax_a = [int(i) % na for i in np.atleast_1d(ax_a)]
        ax_b = [int(i) % nb for i in np.atleast_1d(ax_b)]
    if [sa[i] for i in ax_a] != [sb[i] for i in ax_b]:
        raise ValueError(f"tensordot: shape-mismatch for sum: {sa} axes {ax_a} vs {sb} axes {ax_b}")
    free_a = [i for i in range(na) if i not in ax_a]
    free_b = [i for i in range(nb) if i not in ax_b]
    k = int(np.prod([sa[i] for i in ax_a], dtype=np.int64))
    at = reshape(transpose(a, free_a + ax_a), (-1, k))
    bt = reshape(transpose(b, ax_b + free_b), (k, -1))
    return reshape(matmul_(at, bt), tuple(sa[i] for i in free_a) + tuple(sb[i] for i in free_b))


def dot(a: Any, b: Any, out: Any = None) -> Tensor:
    """Dot product with NumPy's rules (matmul for 1-D/2-D, tensordot beyond).

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.dot(ad.tensor([1.0, 2.0]), ad.tensor([3.0, 4.0]))
    tensor(11.)
    """
    if out is not None:
        raise TypeError("dot: out= is not supported on Tensors")
    na, nb = np.ndim(a), np.ndim(b)
    if na == 0 or nb == 0:
        return _mul(a, b)
    if na <= 2 and nb <= 2:
        return matmul_(a, b)
    return tensordot(a, b, axes=([-1], [-2 if nb > 1 else -1]))


def inner(a: Any, b: Any) -> Tensor:
    """Inner product over the last axes.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.inner(ad.tensor([1.0, 2.0]), ad.tensor([3.0, 4.0]))
    tensor(11.)
    """
    if np.ndim(a) == 0 or np.ndim(b) == 0:
        return _mul(a, b)
    return tensordot(a, b, axes=([-1], [-1]))


def outer(a: Any, b: Any, out: Any = None) -> Tensor:
    """Outer product of the flattened inputs.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.outer(ad.tensor([1.0, 2.0]), ad.tensor([1.0, 0.0, 1.0])).shape
    (2, 3)
    """
    return _mul(reshape(ravel(a), (-1, 1)), reshape(ravel(b), (1, -1)))


def trace(x: Any, offset: int = 0, axis1: int = 0, axis2: int = 1, dtype: Any = None) -> Tensor:
    """Sum along a diagonal (NumPy's ``trace``; ``ad.evaluation_trace`` is the Wengert list).

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.trace(ad.eye(3))
    tensor(3.)
    """
    return sum_(diagonal(x, offset, axis1, axis2), axis=-1)


def _mul(a: Any, b: Any) -> Tensor:
    from .elementwise import multiply

    return multiply(a, b)


FUNCTION_MAP.update(
    {
        np.matmul: matmul,
        np.dot: dot,
        np.inner: inner,
        np.outer: outer,
        np.tensordot: tensordot,
        np.trace: trace,
    }
)


# ----- einsum -------------------------------------------------------------------------------
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"  # NumPy's sublist order


def _einsum_parse(subscripts: str, shapes: list[tuple[int, ...]]) -> str:
    """Canonical explicit subscripts: ellipses spelled out as letters, output after '->'."""
    s = subscripts.replace(" ", "")
    if s.count("->") > 1 or "-" in s.replace("->", "") or ">" in s.replace("->", ""):
        raise ValueError(f"einsum: invalid subscripts {subscripts!r}")
    explicit = "->" in s
    lhs, out = s.split("->") if explicit else (s, "")
    terms = lhs.split(",")
    if len(terms) != len(shapes):
        raise ValueError(
            f"einsum: {subscripts!r} has {len(terms)} operand subscripts for {len(shapes)} operands"
        )
    for t in [*terms, out]:
        bad = set(t.replace("...", "")) - set(_LETTERS)
        if bad or t.count("...") > 1:
            raise ValueError(f"einsum: invalid subscripts {subscripts!r}")
    fresh = (c for c in _LETTERS if c not in s)
    nell = []
    for t, shape in zip(terms, shapes, strict=True):
        nlab = len(t.replace("...", ""))
        n = len(shape) - nlab if "..." in t else 0
        if n < 0 or ("..." not in t and nlab != len(shape)):
            raise ValueError(
                f"einsum: operand subscripts {t!r} do not match an operand of shape {shape}"
            )
        nell.append(n)
    m = max(nell, default=0)
    ell = "".join(next(fresh) for _ in range(m))
    ins = [t.replace("...", ell[m - n :]) for t, n in zip(terms, nell, strict=True)]
    if explicit:
        if m and "..." not in out:
            raise ValueError(
                f"einsum: {subscripts!r}: the operands have broadcast (ellipsis) dimensions "
                "but the output has no '...'"
            )
        out = out.replace("...", ell)
    else:
        labels = "".join(t.replace("...", "") for t in terms)
        out = ell + "".join(sorted(c for c in set(labels) if labels.count(c) == 1))
    return ",".join(ins) + "->" + out


def _einsum_kernel(*operands: Any, subscripts: str, optimize: Any = False) -> Any:
    out = np.einsum(subscripts, *operands, optimize=optimize)
    # NOTE: NumPy returns a view for a lone permutation or diagonal ("ij->ji", "ii->i"); a
    # copy here, so that a write into the result never reaches the operand behind its history.
    if len(operands) == 1 and isinstance(out, np.ndarray) and out.base is not None:
        return out.copy()
    return out


def _einsum_ct(
    k: int, g: Any, ops: tuple[Any, ...], subscripts: str, optimize: Any, nb: int
) -> Any:
    """Cotangent of operand ``k``: an einsum of ``g`` (``nb`` batch axes) with the other
    operands (and identities)."""
    lhs, out = subscripts.split("->")
    terms = lhs.split(",")
    term, shape = terms[k], np.shape(ops[k])
    others = [(t, o) for j, (t, o) in enumerate(zip(terms, ops, strict=True)) if j != k]
    sizes: dict[str, int] = {}
    for t, o in zip(terms, ops, strict=True):
        for c, n in zip(t, np.shape(o), strict=True):
            sizes[c] = n if sizes.get(c, 1) == 1 else sizes[c]
    fresh = (c for c in _LETTERS if c not in subscripts)
    # Batch axes of g get fresh labels of their own (not '...': the subscripts of every einsum
    # stay explicit, the form that this rule differentiates again).
    batch = "".join(next(fresh) for _ in range(nb))
    # NOTE: a label repeated within operand k (a diagonal, 'ii->i') is the first occurrence times
    # identity masks: each later occurrence gets a fresh label tied to the first by an eye.
    eyes: list[tuple[str, Any]] = []
    labels = []
    for c, n in zip(term, shape, strict=True):
        if c in labels:
            f = next(fresh)
            eyes.append((c + f, np.eye(n, dtype=g.dtype)))
            labels.append(f)
        else:
            labels.append(c)
    avail = set(out).union(*[t for t, _ in others], *[e for e, _ in eyes])
    # A label found only in operand k was summed: its cotangent is constant along it, so the
    # rule returns size 1 there (the engine broadcasts). A size-1 axis that einsum broadcast
    # against a longer one is summed here. A kept label can come out of einsum with size 1
    # where operand k has it longer (another operand broadcast along it): fit() broadcasts it.
    keep = [
        c in avail and not (n == 1 and sizes.get(c, 1) != 1)
        for c, n in zip(labels, shape, strict=True)
    ]
    spec = ",".join([batch + out] + [t for t, _ in others] + [e for e, _ in eyes])
    spec += "->" + batch + "".join(c for c, kp in zip(labels, keep, strict=True) if kp)
    opt = optimize if isinstance(optimize, bool | str) else True
    ct = einsum_.call(
        g, *[o for _, o in others], *[e for _, e in eyes], subscripts=spec, optimize=opt
    )
    if not all(keep):
        sizes_out = iter(np.shape(ct)[nb:])
        kept = tuple(next(sizes_out) if kp else 1 for kp in keep)
        ct = np.reshape(ct, tuple(g.shape[:nb]) + kept)
    return ct


def _einsum_vjp(
    needs: tuple[bool, ...],
    g: Any,
    out: Any,
    *ops: Any,
    subscripts: str,
    optimize: Any = False,
    nb: int,
) -> list[Any]:
    return [
        _einsum_ct(k, g, ops, subscripts, optimize, nb) if needs[k] else None
        for k in range(len(ops))
    ]


def _einsum_jvp(
    tans: tuple[Any, ...], out: Any, *ops: Any, subscripts: str, optimize: Any = False, nb: int
) -> Any:
    lhs, out_sub = subscripts.split("->")
    fresh = (c for c in _LETTERS if c not in subscripts)
    batch = "".join(next(fresh) for _ in range(nb))

    def term(k: int, t: Any) -> Any:
        args = list(ops)
        args[k] = t
        spec = subscripts
        if nb:  # the tangent's batch axes get fresh labels, kept in front of the result
            terms = lhs.split(",")
            terms[k] = batch + terms[k]
            spec = ",".join(terms) + "->" + batch + out_sub
        return einsum_.call(*args, subscripts=spec, optimize=optimize)

    return total(term(k, t) for k, t in enumerate(tans) if t is not None)


einsum_ = defprim(
    "einsum",
    _einsum_kernel,
    numpy_only="the array API has no einsum",
    vjp=_einsum_vjp,
    jvp=_einsum_jvp,
    multilinear=True,
    vmap="einsum",
    doc="Einstein summation over canonical explicit subscripts (multilinear in the operands).",
)


def einsum(*operands: Any, out: Any = None, optimize: Any = False, **kw: Any) -> Tensor:
    """Einstein summation (as ``np.einsum``), differentiable in every operand.

    Accepts the string form ``einsum("ij,jk->ik", a, b)`` (implicit output, ``...``
    broadcasting and repeated labels such as ``"ii->i"`` included) and the sublist form
    ``einsum(a, [0, 1], b, [1, 2], [0, 2])``. The gradient of each operand is an einsum of the
    output gradient with the other operands.

    Examples
    --------
    >>> import autodiffx as ad
    >>> a = ad.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    >>> ad.einsum("ii", a)
    tensor(5., grad_fn=<einsum>)
    >>> ad.einsum("ij,j->i", a, ad.tensor([1.0, 1.0]))
    tensor([3., 7.], grad_fn=<einsum>)
    """
    if out is not None:
        raise TypeError("einsum: out= is not supported on Tensors")
    dtype = kw.pop("dtype", None)
    kw.pop("order", None)
    kw.pop("casting", None)
    if kw:
        raise TypeError(f"einsum: unsupported arguments {sorted(kw)}")
    if not operands:
        raise ValueError("einsum: no operands given")
    if isinstance(operands[0], str):
        subscripts, ops = operands[0], list(operands[1:])
    else:
        subscripts, ops = _einsum_sublists(operands)
    if dtype is not None:
        ops = [o.astype(dtype) if isinstance(o, Tensor) else np.asarray(o, dtype) for o in ops]
    spec = _einsum_parse(subscripts, [np.shape(o) for o in ops])
    return einsum_(*ops, subscripts=spec, optimize=optimize)


def _einsum_sublists(operands: tuple[Any, ...]) -> tuple[str, list[Any]]:
    def spell(sub: Any) -> str:
        return "".join("..." if v is Ellipsis else _LETTERS[int(v)] for v in sub)

    has_out = len(operands) % 2 == 1
    body = operands[:-1] if has_out else operands
    subs = ",".join(spell(v) for v in body[1::2])
    return subs + ("->" + spell(operands[-1]) if has_out else ""), list(body[0::2])


FUNCTION_MAP[np.einsum] = einsum
