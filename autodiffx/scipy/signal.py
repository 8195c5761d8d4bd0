"""``ad.scipy.signal``: n-D convolution and correlation in every mode, differentiated."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .._registry import defprim
from .._tensor import Tensor
from ..ops.shape import lift

__all__ = ["convolve", "correlate", "fftconvolve"]

_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _core(k: int) -> tuple[int, ...]:
    return tuple(range(-k, 0))


def _full_kernel(a: Any, b: Any, k: int, method: str = "auto") -> Any:
    """The full convolution over the last ``k`` axes; leading axes broadcast (a batch)."""
    if np.ndim(a) == k and np.ndim(b) == k:
        import scipy.signal  # NOTE: on first use: importing scipy.signal takes ~1 s

        return scipy.signal.convolve(a, b, mode="full", method=method)
    a, b = np.asarray(a), np.asarray(b)
    cb = b.shape[b.ndim - k :]
    pad = [(0, 0)] * (a.ndim - k) + [(m - 1, m - 1) for m in cb]
    win = sliding_window_view(np.pad(a, pad), cb, axis=tuple(range(a.ndim - k, a.ndim)))
    o, w = _LETTERS[:k], _LETTERS[k : 2 * k]
    return np.einsum(f"...{o}{w},...{w}->...{o}", win, np.flip(b, _core(k)))


def _window(x: Any, starts: tuple[int, ...], sizes: tuple[int, ...]) -> Any:
    return x[(..., *(slice(s, s + n) for s, n in zip(starts, sizes, strict=True)))]


def _t_first(g: Any, a: Any, b: Any, k: int) -> Any:
    """The transpose for ``a``: the valid correlation of g with b."""
    ca, cb = np.shape(a)[np.ndim(a) - k :], np.shape(b)[np.ndim(b) - k :]
    full = _full.call(g, np.flip(b, _core(k)), k=k)
    return _window(full, tuple(m - 1 for m in cb), ca)


def _conv_vjp(needs: Any, g: Any, out: Any, a: Any, b: Any, k: int, method: str = "auto"):
    return (
        _t_first(g, a, b, k) if needs[0] else None,
        _t_first(g, b, a, k) if needs[1] else None,
    )


def _conv_jvp(tans: Any, out: Any, a: Any, b: Any, k: int, method: str = "auto", *, nb: int):
    ta, tb = tans
    r = max(np.ndim(a), np.ndim(b))
    acc = None
    if ta is not None:
        acc = _full.call(lift(ta, nb, r) if nb else ta, b, k=k)
    if tb is not None:
        term = _full.call(a, lift(tb, nb, r) if nb else tb, k=k)
        acc = term if acc is None else acc + term
    return acc


_full = defprim(
    "convolve_full",
    _full_kernel,
    numpy_only="scipy.signal, not in the array API",
    vjp=_conv_vjp,
    jvp=_conv_jvp,
    multilinear=True,
    export=False,
    doc="The full n-D convolution over the last k axes (leading axes broadcast); bilinear.",
    example="a = ad.tensor([1.0, 2.0, 3.0], requires_grad=True)\n"
    "ad.scipy.signal.convolve(a, ad.tensor([0.0, 1.0, 0.5]))",
)


def _tensor(x: Any) -> Tensor:
    if isinstance(x, Tensor):
        return x
    arr = np.asarray(x)
    return Tensor(arr if arr.dtype.kind in "fc" else arr.astype(np.float64))


def _mode_window(full: Tensor, ca: tuple[int, ...], cb: tuple[int, ...], mode: str) -> Tensor:
    if mode == "full":
        return full
    if mode == "same":
        return _window(full, tuple((m - 1) // 2 for m in cb), ca)
    if mode == "valid":
        if not (all(n >= m for n, m in zip(ca, cb)) or all(m >= n for n, m in zip(ca, cb))):
            raise ValueError(
                "For 'valid' mode, one must be at least as large as the other in every "
                f"dimension (shapes {ca} and {cb})"
            )
        starts = tuple(min(n, m) - 1 for n, m in zip(ca, cb))
        return _window(full, starts, tuple(abs(n - m) + 1 for n, m in zip(ca, cb)))
    raise ValueError(f"mode must be 'full', 'same' or 'valid', got {mode!r}")


def _convolve(a: Tensor, b: Tensor, mode: str, method: str, k: int) -> Tensor:
    if k == 0:
        return a * b
    ca, cb = tuple(a.shape[a.ndim - k :]), tuple(b.shape[b.ndim - k :])
    if 0 in ca or 0 in cb:
        raise ValueError(f"convolve: empty inputs (shapes {a.shape} and {b.shape})")
    return _mode_window(_full(a, b, k=k, method=method), ca, cb, mode)


def _same_ndim(name: str, a: Tensor, b: Tensor) -> None:
    if a.ndim != b.ndim:
        raise ValueError(
            f"{name}: in1 and in2 should have the same dimensionality (shapes {a.shape} and "
            f"{b.shape}); add axes of size 1 with ad.expand_dims"
        )


def convolve(in1: Any, in2: Any, mode: str = "full", method: str = "auto") -> Tensor:
    """n-D convolution (``scipy.signal.convolve``), bilinear in ``in1`` and ``in2``.

    ``mode`` is ``'full'``, ``'same'`` (the size of ``in1``, centred as SciPy) or
    ``'valid'``; ``method`` (``'auto'``, ``'direct'``, ``'fft'``) picks SciPy's kernel for
    the values. Derivatives are convolutions again (with the flipped other operand), so they
    exist to any order.

    Examples
    --------
    >>> import autodiffx as ad
    >>> x = ad.tensor([1.0, 2.0, 3.0], requires_grad=True)
    >>> y = ad.scipy.signal.convolve(x, ad.tensor([0.0, 1.0, 0.5]), mode="same")
    >>> y
    tensor([1. , 2.5, 4. ], grad_fn=<getitem>)
    >>> y.sum().backward()
    >>> x.grad
    tensor([1.5, 1.5, 1. ])
    """
    a, b = _tensor(in1), _tensor(in2)
    _same_ndim("convolve", a, b)
    return _convolve(a, b, mode, method, a.ndim)


def correlate(in1: Any, in2: Any, mode: str = "full", method: str = "auto") -> Tensor:
    """n-D cross-correlation (``scipy.signal.correlate``): ``convolve(in1, flipped conj in2)``.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.scipy.signal.correlate(ad.tensor([1.0, 2.0, 3.0]), ad.tensor([0.0, 1.0, 0.5]))
    tensor([0.5, 2. , 3.5, 3. , 0. ])
    """
    a, b = _tensor(in1), _tensor(in2)
    _same_ndim("correlate", a, b)
    if b.dtype.kind == "c":
        b = b.conj()
    return _convolve(a, np.flip(b), mode, method, a.ndim)


def fftconvolve(in1: Any, in2: Any, mode: str = "full", axes: Any = None) -> Tensor:
    """Convolution as ``scipy.signal.fftconvolve``, over ``axes`` (default all); the other
    axes broadcast. The same derivatives as ``convolve``.

    Examples
    --------
    >>> import autodiffx as ad
    >>> x = ad.tensor([[1.0, 2.0], [3.0, 4.0]])
    >>> ad.scipy.signal.fftconvolve(x, ad.tensor([[1.0, -1.0]]), axes=1)
    tensor([[ 1.,  1., -2.],
            [ 3.,  1., -4.]])
    """
    a, b = _tensor(in1), _tensor(in2)
    _same_ndim("fftconvolve", a, b)
    if axes is None:
        return _convolve(a, b, mode, "fft", a.ndim)
    ax = [int(x) % a.ndim for x in np.atleast_1d(axes)] if a.ndim else []
    k = len(ax)
    dest = list(range(a.ndim - k, a.ndim))
    out = _convolve(np.moveaxis(a, ax, dest), np.moveaxis(b, ax, dest), mode, "auto", k)
    return np.moveaxis(out, dest, ax)
