"""The rest of NumPy's surface (issue 12): values equal NumPy's, and gradients of real losses
equal central differences on the real (and imaginary) parts of the inputs, through complex
intermediates too. Convention (docs/conventions.md): the gradient is dL/dx - i dL/dy."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import autodiffx as ad

RNG = np.random.default_rng(12)
X = RNG.standard_normal((3, 4))
Z = X + 1j * RNG.standard_normal((3, 4))
A = RNG.standard_normal((3, 3))
AC = A + 1j * RNG.standard_normal((3, 3))
M = np.array([[True, False, True, True], [False, False, True, False], [True] * 4])
NAN = np.where(M, X, np.nan)


def _data(y: Any) -> Any:
    return y.data if isinstance(y, ad.Tensor) else np.asarray(y)


def _loss(f: Any) -> Any:
    """A real loss of f's (possibly complex) output, sensitive to every output element."""

    def loss(x: Any) -> Any:
        y = f(x)
        w = np.linspace(0.5, 1.5, np.size(_data(y))).reshape(np.shape(_data(y)))
        if np.iscomplexobj(_data(y)):
            return ((y.real**2 + y.imag**2) * w).sum() + (y.real * 0.3).sum() + y.imag.sum()
        return (y * y * w).sum() + (y * 0.3).sum()

    return loss


def _central(f: Any, x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """dL/dx - i dL/dy by central differences, element by element."""
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = h
        g[i] = (float(f(x + e)) - float(f(x - e))) / (2 * h)
        if np.iscomplexobj(x):
            g[i] -= 1j * (float(f(x + 1j * e)) - float(f(x - 1j * e))) / (2 * h)
    return g


def check(f: Any, x: np.ndarray, ref: Any = None, rtol: float = 1e-6) -> None:
    """f on a Tensor equals f (or ``ref``) on the array; its loss's gradient equals FD."""
    with np.errstate(all="ignore"):
        want = (ref or f)(x.copy())
    got = f(ad.tensor(x, requires_grad=True))
    assert isinstance(got, ad.Tensor) and got.requires_grad
    np.testing.assert_allclose(got.data, want, rtol=1e-10, atol=1e-12)
    g = ad.grad(_loss(f))(ad.tensor(x)).data
    fd = _central(_loss(f), x)
    np.testing.assert_allclose(g, fd, rtol=rtol, atol=rtol * max(1.0, np.abs(fd).max()))


def _phase(v: Any) -> Any:
    s = (v * np.linspace(1.0, 2.0, v.shape[-2])[:, None]).sum(axis=-2, keepdims=True)
    return v * np.conj(s) / abs(s)


# ----- functions of one array: value and gradient --------------------------------------------
CASES = {
    "sinc": (np.sinc, X),
    "sinc-complex": (np.sinc, Z * 0.5),
    "angle": (np.angle, Z),
    "angle-deg": (lambda z: np.angle(z, deg=True), Z),
    "real_if_close-complex": (np.real_if_close, Z),
    "nanmedian": (np.nanmedian, NAN),
    "nanmedian-axis": (lambda x: np.nanmedian(x, axis=1, keepdims=True), NAN),
    "nanmedian-allnan": (lambda x: np.nanmedian(x, axis=0), np.where(M[:, :1], X, np.nan)),
    "linspace": (lambda x: np.linspace(x[0], x[1], 5), X[0]),
    "linspace-arrays": (lambda x: np.linspace(x[0], x[1], 4, endpoint=False, axis=1), X),
    "logspace": (lambda x: np.logspace(x[0], x[1], 4, base=2.0), X[0]),
    "add.reduce-where": (lambda x: np.add.reduce(x, axis=1, where=M, initial=0.5), X),
    "logaddexp.reduce": (lambda x: np.logaddexp.reduce(x, axis=1), X),
    "maximum.reduce": (lambda x: np.maximum.reduce(x, axis=None), X),
    "subtract.reduce": (lambda x: np.subtract.reduce(x, axis=1), X),
    "arctan2.reduce": (lambda x: np.arctan2.reduce(x, axis=0), X),
    "maximum.accumulate": (lambda x: np.maximum.accumulate(x, axis=1), X),
    "logaddexp.accumulate": (lambda x: np.logaddexp.accumulate(x, axis=0), X),
    "hypot.outer": (lambda x: np.hypot.outer(x[0], x[1]), X),
    "sum-where": (lambda x: np.sum(x, axis=1, where=M, initial=2.0), X),
    "prod-where": (lambda x: np.prod(x, axis=0, where=M), X),
    "max-where": (lambda x: np.max(x, axis=1, where=M, initial=-1.0), X),
    "min-initial": (lambda x: np.min(x, initial=0.1), X),
    "mean-where": (lambda x: np.mean(x, axis=1, where=M), X),
    "var-where": (
        lambda x: np.var(x, axis=1, where=M | np.roll(M, 1, axis=1), ddof=1, keepdims=True),
        X,
    ),
    "std-where": (lambda x: np.std(x, where=M), X),
    "einsum-ellipsis-optimize": (
        lambda x: np.einsum("...i,ij->...j", x[None], x.T @ x, optimize="greedy"),
        X,
    ),
    "eigvals": (np.linalg.eigvals, A),
    "eigvals-complex": (np.linalg.eigvals, AC),
    "eig-vectors": (lambda a: _phase(np.linalg.eig(a)[1]), A),
    "eig-vectors-complex": (lambda a: _phase(np.linalg.eig(a)[1]), AC),
    "matrix_power": (lambda a: np.linalg.matrix_power(a, 5), A),
    "matrix_power-negative": (lambda a: np.linalg.matrix_power(a, -2), AC),
    "multi_dot": (lambda a: np.linalg.multi_dot([a[0], a, a.T, a[:, 1]]), A),
    "cond": (np.linalg.cond, A),
    "cond-inf": (lambda a: np.linalg.cond(a, np.inf), A),
    "matrix_norm": (lambda a: np.linalg.matrix_norm(a, ord="nuc"), A),
    "vector_norm": (lambda a: np.linalg.vector_norm(a, axis=(0, 1), ord=3, keepdims=True), X),
    "vecdot": (lambda z: np.linalg.vecdot(z, z * 2 + 1), Z),
    "tensorinv": (
        lambda a: np.linalg.tensorinv(np.kron(a[:2, :2], a[1:, 1:]).reshape(4, 2, 2), 1),
        A,
    ),
    "tensorsolve": (
        lambda a: np.linalg.tensorsolve(np.kron(a[:2, :2], a[1:, 1:]).reshape(2, 2, 4), a[:2, :2]),
        A,
    ),
}
PAD = [
    ("edge", {}),
    ("wrap", {}),
    ("reflect", {}),
    ("symmetric", {}),
    ("reflect", {"reflect_type": "odd"}),
    ("symmetric", {"reflect_type": "odd"}),
    ("linear_ramp", {"end_values": (1.0, -2.0)}),
    ("mean", {"stat_length": 2}),
    ("maximum", {}),
    ("minimum", {"stat_length": (1, 3)}),
    ("median", {}),
]
for _mode, _kw in PAD:
    CASES[f"pad-{_mode}-{_kw}"] = (
        lambda x, m=_mode, k=_kw: np.pad(x, ((2, 5), (3, 1)), mode=m, **k),
        X,
    )
FFT = {
    "fft": lambda x: np.fft.fft(x),
    "fft-n-axis": lambda x: np.fft.fft(x, n=5, axis=0, norm="ortho"),
    "ifft": lambda x: np.fft.ifft(x, n=3, norm="forward"),
    "rfft": lambda x: np.fft.rfft(x.real, n=7),
    "irfft": lambda x: np.fft.irfft(x),
    "irfft-odd": lambda x: np.fft.irfft(x, n=5, norm="ortho"),
    "hfft": lambda x: np.fft.hfft(x, axis=0),
    "ihfft": lambda x: np.fft.ihfft(x.real, norm="forward"),
    "fft2": lambda x: np.fft.fft2(x, s=(4, 4)),
    "ifft2": lambda x: np.fft.ifft2(x, norm="ortho"),
    "rfft2": lambda x: np.fft.rfft2(x.real),
    "irfft2": lambda x: np.fft.irfft2(x, s=(3, 5)),
    "fftn": lambda x: np.fft.fftn(x, axes=(0,)),
    "ifftn": lambda x: np.fft.ifftn(x),
    "rfftn": lambda x: np.fft.rfftn(x.real, s=(2, 6), axes=(0, 1)),
    "irfftn": lambda x: np.fft.irfftn(x, norm="forward"),
    "fftshift": lambda x: np.fft.fftshift(x),
    "ifftshift": lambda x: np.fft.ifftshift(x, axes=1),
}
for _name, _f in FFT.items():
    CASES[f"fft.{_name}"] = (_f, Z)
KNOTS = np.array([-1.5, -0.3, 0.4, 2.0])  # some of X falls outside: there the slope is 0
FP = RNG.standard_normal(4)
CASES["interp-x"] = (lambda x: np.interp(x, KNOTS, FP), X)
CASES["interp-fp"] = (lambda fp: np.interp(X, KNOTS, fp), FP)
CASES["interp-left-right"] = (lambda x: np.interp(x, KNOTS, FP, left=-2.0, right=5.0), X)
CASES["interp-complex-fp"] = (lambda fp: np.interp(X, KNOTS, fp), FP + 1j * FP[::-1])


@pytest.mark.parametrize("name", sorted(CASES))
def test_value_and_gradient(name):
    f, x = CASES[name]
    check(f, x)


def test_abs_fft_squared_is_parseval():
    x = ad.tensor(X[0], requires_grad=True)
    (abs(np.fft.fft(x)) ** 2).sum().backward()
    np.testing.assert_allclose(x.grad.data, 2 * X.shape[1] * X[0], rtol=1e-12)


def test_sinc_exact_at_zero_to_second_order():
    d1 = ad.grad(lambda x: ad.sinc(x))
    d2 = ad.grad(d1)
    assert ad.sinc(ad.tensor(0.0)).item() == 1.0
    assert d1(ad.tensor(0.0)).item() == 0.0
    np.testing.assert_allclose(d2(ad.tensor(0.0)).item(), -(np.pi**2) / 3, rtol=1e-14)
    np.testing.assert_allclose(d2(ad.tensor(1e-4)).item(), -(np.pi**2) / 3, rtol=1e-7)


def test_fftfreq_is_differentiable_in_the_spacing():
    d = ad.tensor(0.5, requires_grad=True)
    np.testing.assert_allclose(ad.fft.fftfreq(5, d).data, np.fft.fftfreq(5, 0.5))
    ad.fft.rfftfreq(4, d).sum().backward()
    np.testing.assert_allclose(d.grad.data, -np.fft.rfftfreq(4, 1.0).sum() / 0.25)


def test_real_if_close_drops_a_negligible_imaginary_part():
    z = ad.tensor(X + 1e-17j, requires_grad=True)
    r = np.real_if_close(z)
    assert r.dtype == np.float64
    (r * r).sum().backward()
    np.testing.assert_allclose(z.grad.data, 2 * X)


def test_matrix_rank_is_not_differentiated():
    r = np.linalg.matrix_rank(ad.tensor([[1.0, 2.0], [2.0, 4.0]], requires_grad=True))
    assert r.item() == 1 and not r.requires_grad


def test_ad_linspace_with_tensor_ends():
    a = ad.tensor(1.0, requires_grad=True)
    ad.linspace(a, 3.0, 5).sum().backward()
    np.testing.assert_allclose(a.grad.data, 2.5)


# ----- in-place writes: put_along_axis and ufunc.at -----------------------------------------
IDX = np.array([0, 2, 0, 3, 0])


def _inplace(kind: str) -> Any:
    def f(x: Any, b: Any) -> Any:
        y = x * 1.0
        if kind == "put_along_axis":
            np.put_along_axis(y, np.array([[1], [3], [0]]), b[:3, None], axis=1)
        elif kind == "add.at":
            np.add.at(y, (slice(None), IDX), b[:3, None])
        elif kind == "subtract.at":
            np.subtract.at(y[1], IDX, b)
        elif kind == "multiply.at":
            np.multiply.at(y, (0, IDX), b)
        elif kind == "power.at":
            np.power.at(y[2], IDX[:3], b[:3] * 0.1)
        return y

    return f


@pytest.mark.parametrize(
    "kind", ["put_along_axis", "add.at", "subtract.at", "multiply.at", "power.at"]
)
def test_inplace_writes_are_recorded(kind):
    x0, b0 = np.abs(X) + 0.5, RNG.standard_normal(5)
    f = _inplace(kind)
    y = f(ad.tensor(x0), ad.tensor(b0))
    np.testing.assert_allclose(y.data, f(x0.copy(), b0), rtol=1e-12)
    for which in (0, 1):

        def loss(v: Any, which: int = which) -> Any:
            args: list[Any] = [ad.tensor(x0), b0]  # the target of the write is a Tensor
            args[which] = v
            return _loss(lambda _: f(*args))(None)

        g = ad.grad(loss)(ad.tensor([x0, b0][which])).data
        np.testing.assert_allclose(g, _central(loss, [x0, b0][which]), rtol=1e-6, atol=1e-6)


def test_refusals_name_what_to_do():
    with pytest.raises(TypeError, match="make the target a tensor"):
        np.add.at(np.zeros(3), [0], ad.tensor(1.0, requires_grad=True))
    with pytest.raises(ValueError, match="initial"):
        np.max(ad.tensor(X), where=M)
    with pytest.raises(NotImplementedError, match="pad: mode"):
        np.pad(ad.tensor(X), 1, mode=lambda *a: None)
    with pytest.raises(TypeError, match="rfftn: the input must be real"):
        np.fft.rfft(ad.tensor(Z))


@pytest.mark.oracle
def test_fft_gradients_match_pytorch():
    torch = pytest.importorskip("torch")
    for name, f, tf in [
        ("fft", lambda x: np.fft.fft(x, norm="ortho"), lambda x: torch.fft.fft(x, norm="ortho")),
        ("irfft", lambda x: np.fft.irfft(x, n=5), lambda x: torch.fft.irfft(x, n=5)),
        ("fft2", np.fft.fft2, torch.fft.fft2),
    ]:
        z = ad.tensor(Z, requires_grad=True)
        _loss(f)(z).backward()
        tz = torch.tensor(Z, requires_grad=True)
        y = tf(tz)
        w = torch.tensor(np.linspace(0.5, 1.5, y.numel()).reshape(tuple(y.shape)))
        if y.is_complex():
            loss = ((y.real**2 + y.imag**2) * w).sum() + (y.real * 0.3).sum() + y.imag.sum()
        else:
            loss = (y * y * w).sum() + (y * 0.3).sum()
        loss.backward()
        # PyTorch's gradient is the conjugate of autodiffx's (dL/dx + i dL/dy)
        np.testing.assert_allclose(z.grad.data, tz.grad.numpy().conj(), rtol=1e-10, err_msg=name)


@pytest.mark.parametrize(
    "name",
    [
        "fft",
        "ifft",
        "rfft",
        "irfft",
        "hfft",
        "ihfft",
        "fft2",
        "ifft2",
        "rfft2",
        "irfft2",
        "fftn",
        "ifftn",
        "rfftn",
        "irfftn",
    ],
)
def test_fft_transforms_dispatch_by_name_and_refuse_out(name):
    # the 1-D and 2-D transforms are built by factories: each keeps its NumPy name (NumPy's
    # dispatch finds it by that name) and refuses out= naming itself
    f = getattr(ad.fft, name)
    assert f.__name__ == name
    x = np.arange(1.0, 7.0).reshape(2, 3)
    y = getattr(np.fft, name)(ad.tensor(x))
    assert isinstance(y, ad.Tensor)
    np.testing.assert_allclose(y.data, getattr(np.fft, name)(x), rtol=1e-12, atol=1e-12)
    with pytest.raises(TypeError, match=rf"numpy\.fft\.{name}: out= is not supported"):
        f(ad.tensor(x), out=np.empty(1))


def test_interp_at_knots_takes_the_right_segment_and_refuses_what_it_cannot_differentiate():
    x = ad.tensor([0.0, 1.0, 3.0, 5.0], requires_grad=True)
    y = ad.interp(x, [0.0, 1.0, 3.0], [0.0, 2.0, 3.0], right=ad.tensor(7.0))
    np.testing.assert_array_equal(y.data, [0.0, 2.0, 3.0, 7.0])
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.data, [2.0, 0.5, 0.5, 0.0])  # knots: right segment
    f = lambda z: ad.interp(z, [0.0, 1.0, 3.0], [0.0, 2.0, 3.0])
    _, t = ad.jvp(f, (ad.tensor([0.5, 2.0, -1.0]),), (ad.tensor([1.0, 1.0, 1.0]),))
    np.testing.assert_array_equal(t.data, [2.0, 0.5, 0.0])  # forward mode: the same slopes
    with pytest.raises(TypeError, match=r"interp: xp .*requires grad.*xp.detach\(\)"):
        ad.interp(x, ad.tensor([0.0, 1.0], requires_grad=True), [0.0, 1.0])
    with pytest.raises(NotImplementedError, match="period"):
        ad.interp(x, [0.0, 1.0], [0.0, 1.0], period=2.0)
    with pytest.raises(ValueError, match=r"interp: xp and fp .*\(2,\) and \(3,\)"):
        ad.interp(x, [0.0, 1.0], [0.0, 1.0, 2.0])
