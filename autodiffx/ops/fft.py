"""numpy.fft, differentiable: four linear primitives (fftn, ifftn, rfftn, irfftn) and composites."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._registry import FUNCTION_MAP, defprim
from .._tensor import Tensor
from .._xp import is_lazy
from . import elementwise as ew
from .shape import roll

_NORMS = ("backward", "ortho", "forward")


# ----- transposes (JAX's convention: the plain transpose of the JVP) ------------------------
def _fit_len(g: Any, shape: tuple[int, ...], axes: tuple[int, ...]) -> Any:
    """``g`` cropped or zero-padded at the end along ``axes`` to the lengths of ``shape``."""
    for ax in axes:
        n, m = shape[ax], g.shape[ax]
        if m > n:
            g = g[(Ellipsis, slice(0, n)) + (slice(None),) * (-ax - 1)]
        elif m < n:
            widths = [(0, 0)] * g.ndim
            widths[ax] = (0, n - m)
            g = np.pad(g, widths)
    return g


def _c2c_t(inverse: bool) -> Any:
    def t(g: Any, x: Any, s: Any, axes: tuple[int, ...], norm: str) -> tuple[Any]:
        # NOTE: the DFT matrix is symmetric, so the transpose is the same transform of the
        # output's length, cropped or zero-padded back to the input's length.
        f = np.fft.ifftn if inverse else np.fft.fftn
        return (_fit_len(f(_whole(g, axes), axes=axes, norm=norm), x.shape, axes),)

    return t


def _rfftn_t(g: Any, x: Any, s: Any, axes: tuple[int, ...], norm: str) -> tuple[Any]:
    # NOTE: rfftn keeps the first n//2 + 1 outputs of the full transform along the last axis:
    # the transpose zero-pads the cotangent back to n and applies the full transform (its
    # real part is taken by the engine for the real input).
    full = tuple(_lengths(x.shape, s, axes))
    return (
        _fit_len(
            np.fft.fftn(
                _whole(_fit_len(g, _at(g.shape, axes[-1], full[-1]), axes[-1:]), axes),
                axes=axes,
                norm=norm,
            ),
            x.shape,
            axes,
        ),
    )


def _irfftn_t(g: Any, y: Any, s: Any, axes: tuple[int, ...], norm: str) -> tuple[Any]:
    # NOTE: irfftn(y)_j = Re(sum_k c_k y_k e^{2 pi i jk/n}) / n along the last axis, with
    # c_0 = c_{n/2} = 1 and c_k = 2 otherwise (the Hermitian half counted twice): the transpose
    # is c * ifftn(g) on the first n//2 + 1 entries.
    n = g.shape[axes[-1]]
    m = n // 2 + 1
    c = np.full(m, 2.0)
    c[0] = 1.0
    if n % 2 == 0:
        c[-1] = 1.0
    h = np.fft.ifftn(_whole(g, axes), axes=axes, norm=norm)
    h = h[(Ellipsis, slice(0, m)) + (slice(None),) * (-axes[-1] - 1)]
    h = h * c.reshape((m,) + (1,) * (-axes[-1] - 1))
    return (_fit_len(h, y.shape, axes),)


def _at(shape: tuple[int, ...], ax: int, n: int) -> tuple[int, ...]:
    out = list(shape)
    out[ax] = n
    return tuple(out)


def _lengths(shape: tuple[int, ...], s: Any, axes: tuple[int, ...]) -> list[int]:
    return [shape[a] if s is None else int(s[i]) for i, a in enumerate(axes)]


def _whole(x: Any, axes: tuple[int, ...]) -> Any:
    """``x``, a Dask array rechunked to one chunk along ``axes`` (Dask transforms within
    chunks only: the transform needs whole axes anyway)."""
    return x.rechunk({a % x.ndim: -1 for a in axes}) if is_lazy(x) else x


def _kernel(f: Any) -> Any:
    return lambda x, s, axes, norm: f(_whole(x, axes), s=s, axes=axes, norm=norm)


_DOC = "The {} over ``axes`` (lengths ``s``, ``norm`` as NumPy); linear, transpose rule."
fftn_ = defprim(
    "fftn", _kernel(np.fft.fftn), linear=_c2c_t(False), vmap="fftn", doc=_DOC.format("DFT")
)
ifftn_ = defprim(
    "ifftn", _kernel(np.fft.ifftn), linear=_c2c_t(True), vmap="fftn", doc=_DOC.format("inverse DFT")
)
rfftn_ = defprim(
    "rfftn",
    _kernel(np.fft.rfftn),
    linear=_rfftn_t,
    vmap="fftn",
    doc=_DOC.format("DFT of real input"),
)
irfftn_ = defprim(
    "irfftn",
    _kernel(np.fft.irfftn),
    linear=_irfftn_t,
    vmap="fftn",
    doc=_DOC.format("inverse real DFT"),
)


# ----- public functions (numpy.fft's signatures) --------------------------------------------
def _t(x: Any) -> Any:
    return x if isinstance(x, Tensor) else np.asarray(x)


def _norm(norm: Any) -> str:
    norm = "backward" if norm is None else norm
    if norm not in _NORMS:
        raise ValueError(f'Invalid norm value {norm}; should be "backward", "ortho" or "forward".')
    return norm


def _swap(norm: Any) -> str:
    return {"backward": "forward", "forward": "backward", "ortho": "ortho"}[_norm(norm)]


def _plan(x: Any, s: Any, axes: Any, real_out: bool = False) -> tuple[Any, tuple[int, ...]]:
    """(s, axes) with negative axes (batch axes may lead) and -1 entries of s resolved."""
    nd = x.ndim
    if axes is None:
        axes = tuple(range(nd)) if s is None else tuple(range(nd - len(s), nd))
    axes = tuple(int(a) % nd - nd for a in np.atleast_1d(axes)) if nd else ()
    if len(axes) == 0:
        raise ValueError("fft: at least one axis must be transformed")
    if s is None:
        if not real_out:
            return None, axes
        s = [x.shape[a] for a in axes[:-1]] + [2 * (x.shape[axes[-1]] - 1)]
    if len(s) != len(axes):
        raise ValueError(f"fft: shape s={s} and axes={axes} have different lengths")
    if real_out and s[-1] == -1:
        s = [*s[:-1], 2 * (x.shape[axes[-1]] - 1)]
    s = tuple(x.shape[a] if int(n) == -1 else int(n) for n, a in zip(s, axes))
    if any(n < 1 for n in s):
        raise ValueError(f"fft: invalid number of data points {s} specified")
    return s, axes


def _no_out(name: str, out: Any) -> None:
    if out is not None:
        raise TypeError(f"numpy.fft.{name}: out= is not supported on Tensors")


def _one(n: Any) -> Any:
    return None if n is None else (n,)


def _nd(prim: Any, name: str, a: Any, s: Any, axes: Any, norm: Any, out: Any) -> Tensor:
    """The n-D transform ``prim`` of ``a`` over ``axes`` with lengths ``s`` (NumPy's meaning)."""
    _no_out(name, out)
    a = _t(a)
    s, axes = _plan(a, s, axes, real_out=prim is irfftn_)
    return prim(a, s=s, axes=axes, norm=_norm(norm))


def fftn(a: Any, s: Any = None, axes: Any = None, norm: Any = None, out: Any = None) -> Tensor:
    """The n-dimensional discrete Fourier transform (as ``np.fft.fftn``).

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.fft.fftn(ad.tensor([[1.0, 2.0], [3.0, 4.0]]))
    tensor([[10.+0.j, -2.+0.j],
            [-4.+0.j,  0.+0.j]])
    """
    return _nd(fftn_, "fftn", a, s, axes, norm, out)


def ifftn(a: Any, s: Any = None, axes: Any = None, norm: Any = None, out: Any = None) -> Tensor:
    """The n-dimensional inverse discrete Fourier transform (as ``np.fft.ifftn``).

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.fft.ifftn(ad.tensor([4.0, 0.0]))
    tensor([2.+0.j, 2.+0.j])
    """
    return _nd(ifftn_, "ifftn", a, s, axes, norm, out)


def rfftn(a: Any, s: Any = None, axes: Any = None, norm: Any = None, out: Any = None) -> Tensor:
    """The n-dimensional DFT of a real input, the last axis halved (as ``np.fft.rfftn``).

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.fft.rfftn(ad.tensor([1.0, 2.0, 3.0, 4.0]))
    tensor([10.+0.j, -2.+2.j, -2.+0.j])
    """
    _no_out("rfftn", out)
    a = _t(a)
    if a.dtype.kind == "c":
        raise TypeError(f"rfftn: the input must be real, got {a.dtype}; use fftn, or pass a.real")
    return _nd(rfftn_, "rfftn", a, s, axes, norm, out)


def irfftn(a: Any, s: Any = None, axes: Any = None, norm: Any = None, out: Any = None) -> Tensor:
    """The inverse of ``rfftn``: a real signal from half a spectrum (as ``np.fft.irfftn``).

    The imaginary parts NumPy ignores (the zero and, for an even length, the Nyquist
    frequency of the last axis) get the gradient their real effect has: none.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.fft.irfftn(ad.tensor([10.0, -2.0 + 2.0j, -2.0]))
    tensor([1., 2., 3., 4.])
    """
    return _nd(irfftn_, "irfftn", a, s, axes, norm, out)


def _one_axis(nd: Any, name: str, doc: str) -> Any:
    """The 1-D transform ``name`` along ``axis``: the n-D one ``nd`` with ``s = (n,)``."""

    def transform(
        a: Any, n: Any = None, axis: int = -1, norm: Any = None, out: Any = None
    ) -> Tensor:
        _no_out(name, out)
        return nd(a, _one(n), (axis,), norm)

    transform.__name__ = transform.__qualname__ = name
    transform.__doc__ = doc
    return transform


fft = _one_axis(
    fftn,
    "fft",
    """The 1-D discrete Fourier transform along ``axis`` (as ``np.fft.fft``).

    Examples
    --------
    >>> import autodiffx as ad
    >>> x = ad.tensor([1.0, 2.0], requires_grad=True)
    >>> (abs(ad.fft.fft(x)) ** 2).sum().backward()   # Parseval: 2 n x
    >>> x.grad
    tensor([4., 8.])
    """,
)
ifft = _one_axis(
    ifftn,
    "ifft",
    """The 1-D inverse discrete Fourier transform (as ``np.fft.ifft``).

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.fft.ifft(ad.tensor([2.0, 0.0]))
    tensor([1.+0.j, 1.+0.j])
    """,
)
rfft = _one_axis(
    rfftn,
    "rfft",
    """The 1-D DFT of a real input, frequencies 0 to n // 2 (as ``np.fft.rfft``).

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.fft.rfft(ad.tensor([1.0, 0.0, 0.0, 0.0]))
    tensor([1.+0.j, 1.+0.j, 1.+0.j])
    """,
)
irfft = _one_axis(
    irfftn,
    "irfft",
    """The inverse of ``rfft``, a real signal of length ``n`` (as ``np.fft.irfft``).

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.fft.irfft(ad.tensor([1.0, 1.0, 1.0]))
    tensor([1., 0., 0., 0.])
    """,
)


def hfft(a: Any, n: Any = None, axis: int = -1, norm: Any = None, out: Any = None) -> Tensor:
    """The DFT of a Hermitian-symmetric signal given by its first half: a real spectrum.

    As NumPy: ``irfft(conj(a), n, axis)`` with the normalization direction swapped.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.fft.hfft(ad.tensor([1.0, 0.0, 0.0]))
    tensor([1., 1., 1., 1.])
    """
    _no_out("hfft", out)
    return irfftn(ew.conj(_t(a)), _one(n), (axis,), _swap(norm))


def ihfft(a: Any, n: Any = None, axis: int = -1, norm: Any = None, out: Any = None) -> Tensor:
    """The inverse of ``hfft``: ``conj(rfft(a))`` with the normalization direction swapped.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.fft.ihfft(ad.tensor([1.0, 1.0, 1.0, 1.0]))
    tensor([1.-0.j, 0.-0.j, 0.-0.j])
    """
    _no_out("ihfft", out)
    return ew.conj(rfftn(a, _one(n), (axis,), _swap(norm)))


def _two_axes(nd: Any, name: str, what: str) -> Any:
    """The 2-D transform ``name``: the n-D one ``nd`` over two ``axes``."""

    def transform(
        a: Any, s: Any = None, axes: Any = (-2, -1), norm: Any = None, out: Any = None
    ) -> Tensor:
        _no_out(name, out)
        return nd(a, s, axes, norm)

    transform.__name__ = transform.__qualname__ = name
    transform.__doc__ = f"""The 2-D {what} over ``axes`` (the last two by default), as
    ``np.fft.{name}``.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.fft.{name}(ad.ones((2, 2))).shape
    (2, 2)
    """
    return transform


fft2 = _two_axes(fftn, "fft2", "DFT")
ifft2 = _two_axes(ifftn, "ifft2", "inverse DFT")
rfft2 = _two_axes(rfftn, "rfft2", "DFT of a real input")
irfft2 = _two_axes(irfftn, "irfft2", "inverse real DFT")


def _shift(x: Any, axes: Any, sign: int) -> Tensor:
    x = _t(x)
    axes = tuple(range(x.ndim)) if axes is None else tuple(np.atleast_1d(axes).tolist())
    shift = tuple(sign * (x.shape[a] // 2) for a in axes)
    return roll(x, shift, axes)


def fftshift(x: Any, axes: Any = None) -> Tensor:
    """The zero frequency moved to the centre (a roll by n // 2 along ``axes``).

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.fft.fftshift(ad.tensor([0.0, 1.0, 2.0, -2.0, -1.0]))
    tensor([-2., -1.,  0.,  1.,  2.])
    """
    return _shift(x, axes, 1)


def ifftshift(x: Any, axes: Any = None) -> Tensor:
    """The inverse of ``fftshift`` (a roll by -(n // 2) along ``axes``).

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.fft.ifftshift(ad.tensor([-2.0, -1.0, 0.0, 1.0, 2.0]))
    tensor([ 0.,  1.,  2., -2., -1.])
    """
    return _shift(x, axes, -1)


def fftfreq(n: int, d: Any = 1.0, device: Any = None) -> Tensor:
    """The sample frequencies of an ``n``-point DFT, differentiable in the spacing ``d``.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.fft.fftfreq(4, ad.tensor(0.5))
    tensor([ 0. ,  0.5, -1. , -0.5])
    """
    return ew.divide(np.fft.fftfreq(n, 1.0), _t(d))


def rfftfreq(n: int, d: Any = 1.0, device: Any = None) -> Tensor:
    """The sample frequencies of ``rfft`` (0 to n // 2), differentiable in the spacing ``d``.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.fft.rfftfreq(4, ad.tensor(0.5))
    tensor([0. , 0.5, 1. ])
    """
    return ew.divide(np.fft.rfftfreq(n, 1.0), _t(d))


FUNCTION_MAP.update(
    {
        getattr(np.fft, f.__name__): f
        for f in (
            fft,
            ifft,
            rfft,
            irfft,
            hfft,
            ihfft,
            fft2,
            ifft2,
            rfft2,
            irfft2,
            fftn,
            ifftn,
            rfftn,
            irfftn,
            fftshift,
            ifftshift,
        )
    }
)
