"""Complex svd, eigh, qr and their relatives: derivatives of phase-invariant real losses."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import _reference
import numpy as np
import pytest

import autodiffx as ad
from autodiffx.fd import directional

FD_RTOL = 1e-7  # central differences (Richardson) of smooth losses at well separated spectra
STEP = 1e-4  # their relative step (the error O(STEP**4) of the default 1e-3 is too large here)
EXACT = 1e-10  # VJP against JVP: no finite differences involved


def _cmat(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.standard_normal(shape) + 1j * rng.standard_normal(shape)


def _hermitian(z: np.ndarray) -> np.ndarray:
    return (z + np.conj(np.swapaxes(z, -1, -2))) / 2


def _inputs() -> dict[str, np.ndarray]:
    """The complex matrices: singular values and eigenvalues apart, no zero entries in U."""
    rng = np.random.default_rng(12)
    out = {}
    for shape in [(3, 3), (4, 3), (3, 4), (2, 3, 3)]:
        k = min(shape[-2:])
        d = np.zeros(shape[-2:])
        d[:k, :k] = np.diag(2.0 + 1.5 * np.arange(k))
        out["x".join(map(str, shape))] = _cmat(rng, shape) * 0.5 + d
    out["herm3x3"] = _hermitian(_cmat(rng, (3, 3))) * 0.5 + np.diag([1.0, 3.0, 5.0])
    out["herm2x3x3"] = _hermitian(_cmat(rng, (2, 3, 3))) * 0.5 + np.diag([-2.0, 1.0, 4.0])
    return out


INPUTS = _inputs()
_W = np.random.default_rng(7)


def _weights(shape: tuple[int, ...]) -> np.ndarray:
    return _W.standard_normal(shape)


C44, D44 = _cmat(_W, (4, 4)), _cmat(_W, (4, 4))  # sliced to each shape
C33 = _cmat(_W, (3, 3))
C233 = _cmat(_W, (2, 3, 3))
W44, W3 = _weights((4, 4)), _weights((3, 3))
W33b = _weights((2, 3, 3))
S3 = _weights((3,))


def _abs2(x: Any) -> Any:
    return x.real * x.real + x.imag * x.imag


def _re_pair(c: Any, x: Any) -> Any:
    """Re(sum(c * x)) for a constant complex c: a real-valued linear function of x."""
    return (c.real * x.real - c.imag * x.imag).sum()


def _svd_weighted(lib: Any, a: Any) -> Any:
    u, s, vh = lib.svd(a)
    wu = lib.c(W44[: u.shape[-2], : u.shape[-1]])
    wv = lib.c(W44[: vh.shape[-2], : vh.shape[-1]])
    return (wu * _abs2(u)).sum() + (wv * _abs2(vh)).sum() + (lib.c(S3[: s.shape[-1]]) * s).sum()


def _svd_rank1(lib: Any, a: Any) -> Any:
    u, s, vh = lib.svd(a)
    x = (u[..., :, :1] * s[..., None, :1]) @ vh[..., :1, :]
    m, n = x.shape[-2:]
    return _re_pair(lib.c(C44[:m, :n]), x) + _re_pair(lib.c(D44[:m, :n] * 1j), x)


def _svd_projector(lib: Any, a: Any) -> Any:
    u, _, vh = lib.svd(a)
    p = u[..., :, :2] @ u[..., :, :2].conj().mT
    q = vh[..., 1:, :].conj().mT @ vh[..., 1:, :]
    m, n = p.shape[-1], q.shape[-1]
    return _re_pair(lib.c(C44[:m, :m]), p) + _re_pair(lib.c(D44[:n, :n]), q)


def _svd_u_only(lib: Any, a: Any) -> Any:
    u = lib.svd(a)[0]
    return (lib.c(W44[: u.shape[-2], : u.shape[-1]]) * _abs2(u) ** 2).sum()


def _svd_vh_only(lib: Any, a: Any) -> Any:
    vh = lib.svd(a)[2]
    return (lib.c(W44[: vh.shape[-2], : vh.shape[-1]]) * _abs2(vh) ** 2).sum()


def _svd_batched(lib: Any, a: Any) -> Any:
    u, s, vh = lib.svd(a)
    x = (u[..., :, :1] * s[..., None, :1]) @ vh[..., :1, :]
    return _re_pair(lib.c(C233), x) + (lib.c(W33b) * _abs2(u)).sum() + (s * s).sum()


def _svd_hermitian(lib: Any, a: Any) -> Any:
    """svd(hermitian=True) (NumPy's eigh-based kernel; PyTorch's plain svd as the oracle)."""
    u, s, vh = lib.svdh(a)
    x = (u[..., :, 1:2] * s[..., None, 1:2]) @ vh[..., 1:2, :]
    return _re_pair(lib.c(C233), x) + (lib.c(W33b) * _abs2(vh)).sum() + (lib.svdvalsh(a) ** 3).sum()


def _svdvals(lib: Any, a: Any) -> Any:
    s = lib.svdvals(a)
    return (lib.c(S3[: s.shape[-1]]) * s).sum() + (s**3).sum() / 10


def _eigh_weighted(lib: Any, a: Any, uplo: str = "L") -> Any:
    w, v = lib.eigh(a, uplo)
    return (lib.c(W3) * _abs2(v)).sum() + (lib.c(S3) * w).sum()


def _eigh_projector(lib: Any, a: Any) -> Any:
    w, v = lib.eigh(a, "L")
    p = (v[..., :, :2] * w[..., None, :2]) @ v[..., :, :2].conj().mT
    return _re_pair(lib.c(C33), p) + (lib.c(W3) * _abs2(v) ** 2).sum()


def _eigh_batched(lib: Any, a: Any) -> Any:
    w, v = lib.eigh(a, "U")
    return (lib.c(W33b) * _abs2(v)).sum() + (w * w).sum()


def _eigvalsh(lib: Any, a: Any) -> Any:
    w = lib.eigvalsh(a)
    return (lib.c(S3) * w).sum() + (w**3).sum() / 10


def _qr_loss(mode: str) -> Callable[[Any, Any], Any]:
    def loss(lib: Any, a: Any) -> Any:
        if mode == "r":
            r = lib.qr(a, "r")
            return _re_pair(lib.c(D44[: r.shape[-2], : r.shape[-1]]), r)
        q, r = lib.qr(a, mode)
        m, k = q.shape[-2:]
        n = r.shape[-1]
        return (
            _re_pair(lib.c(C44[:m, :k]), q) + _re_pair(lib.c(D44[:k, :n]), r) + _abs2(q @ r).sum()
        )

    return loss


def _pinv(lib: Any, a: Any) -> Any:
    x = lib.pinv(a)
    m, n = x.shape[-2:]
    return _re_pair(lib.c(C44[:m, :n]), x) + _abs2(x).sum()


def _norm(ord: Any) -> Callable[[Any, Any], Any]:
    return lambda lib, a: lib.matrix_norm(a, ord)


def _cond(p: Any) -> Callable[[Any, Any], Any]:
    return lambda lib, a: lib.cond(a, p)


# name -> (input, loss, Hermitian input)
CASES: dict[str, tuple[str, Callable[[Any, Any], Any], bool]] = {
    "svd|U|²|Vh|²,s/3x3": ("3x3", _svd_weighted, False),
    "svd|U|²|Vh|²,s/4x3": ("4x3", _svd_weighted, False),
    "svd|U|²|Vh|²,s/3x4": ("3x4", _svd_weighted, False),
    "svd rank-1/4x3": ("4x3", _svd_rank1, False),
    "svd rank-1/3x4": ("3x4", _svd_rank1, False),
    "svd projectors/4x3": ("4x3", _svd_projector, False),
    "svd projectors/3x4": ("3x4", _svd_projector, False),
    "svd U only/4x3": ("4x3", _svd_u_only, False),
    "svd U only/3x4": ("3x4", _svd_u_only, False),
    "svd Vh only/3x4": ("3x4", _svd_vh_only, False),
    "svd Vh only/4x3": ("4x3", _svd_vh_only, False),
    "svd batched/2x3x3": ("2x3x3", _svd_batched, False),
    "svd hermitian=True/2x3x3": ("herm2x3x3", _svd_hermitian, True),
    "svdvals/4x3": ("4x3", _svdvals, False),
    "svdvals/3x4": ("3x4", _svdvals, False),
    "eigh|V|²,w/L": ("herm3x3", _eigh_weighted, True),
    "eigh|V|²,w/U": ("herm3x3", lambda lib, a: _eigh_weighted(lib, a, "U"), True),
    "eigh projector": ("herm3x3", _eigh_projector, True),
    "eigh batched": ("herm2x3x3", _eigh_batched, True),
    "eigvalsh": ("herm3x3", _eigvalsh, True),
    "qr reduced/4x3": ("4x3", _qr_loss("reduced"), False),
    "qr reduced/3x3": ("3x3", _qr_loss("reduced"), False),
    "qr reduced/3x4": ("3x4", _qr_loss("reduced"), False),
    "qr complete/3x4": ("3x4", _qr_loss("complete"), False),
    "qr r/4x3": ("4x3", _qr_loss("r"), False),
    "pinv/4x3": ("4x3", _pinv, False),
    "pinv/3x4": ("3x4", _pinv, False),
    "matrix_norm nuc/3x4": ("3x4", _norm("nuc"), False),
    "matrix_norm 2/4x3": ("4x3", _norm(2), False),
    "matrix_norm -2/3x3": ("3x3", _norm(-2), False),
    "cond/3x3": ("3x3", _cond(None), False),
    "cond -2/4x3": ("4x3", _cond(-2), False),
}

AD = SimpleNamespace(
    c=ad.tensor,
    svd=lambda a: ad.linalg.svd(a, full_matrices=False),
    svdvals=ad.linalg.svdvals,
    svdh=lambda a: ad.linalg.svd(a, full_matrices=False, hermitian=True),
    svdvalsh=lambda a: ad.linalg.svd(a, compute_uv=False, hermitian=True),
    eigh=ad.linalg.eigh,
    eigvalsh=ad.linalg.eigvalsh,
    qr=ad.linalg.qr,
    pinv=ad.linalg.pinv,
    matrix_norm=lambda a, ord: ad.linalg.matrix_norm(a, ord=ord),
    cond=ad.linalg.cond,
)


def torch_lib(torch: Any) -> SimpleNamespace:
    """The same functions in PyTorch (float64/complex128)."""
    tl = torch.linalg
    return SimpleNamespace(
        c=lambda x: torch.tensor(np.asarray(x)),
        svd=lambda a: tl.svd(a, full_matrices=False),
        svdvals=tl.svdvals,
        svdh=lambda a: tl.svd(a, full_matrices=False),
        svdvalsh=tl.svdvals,
        eigh=lambda a, uplo: tl.eigh(a, UPLO=uplo),
        eigvalsh=tl.eigvalsh,
        qr=lambda a, mode: tl.qr(a)[1] if mode == "r" else tl.qr(a, mode=mode),
        pinv=tl.pinv,
        matrix_norm=lambda a, ord: tl.matrix_norm(a, ord=ord),
        cond=tl.cond,
    )


def torch_value_and_grad(torch: Any, key: str) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch's loss and gradient (its convention: ∂L/∂x + i ∂L/∂y) for one of CASES."""
    name, loss, _ = CASES[key]
    a = torch.tensor(INPUTS[name], requires_grad=True)
    value = loss(torch_lib(torch), a)
    value.backward()
    return value.detach().numpy(), a.grad.numpy()


# ----- helpers ------------------------------------------------------------------------------
def _loss_np(key: str) -> Callable[[np.ndarray], np.ndarray]:
    _, loss, _ = CASES[key]
    return lambda y: np.asarray(loss(AD, ad.tensor(y)).data)


def _direction(key: str, seed: int) -> np.ndarray:
    name, _, herm = CASES[key]
    v = _cmat(np.random.default_rng(seed), INPUTS[name].shape)
    return _hermitian(v) if herm else v  # eigh reads one triangle: Hermitian perturbations


def _grad(key: str, a: np.ndarray) -> np.ndarray:
    _, loss, _ = CASES[key]
    t = ad.tensor(a, requires_grad=True)
    loss(AD, t).backward()
    return np.asarray(t.grad.data)


def _pair(g: np.ndarray, v: np.ndarray) -> float:
    """Re(sum(g * v)): the directional derivative along v of a loss with gradient g."""
    return float(np.real(np.sum(g * v)))


def _close(got: float, want: float, rtol: float, what: str) -> None:
    assert abs(got - want) <= rtol * max(1.0, abs(want)), f"{what}: {got!r} vs {want!r}"


KEYS = list(CASES)


# ----- first order --------------------------------------------------------------------------
@pytest.mark.parametrize("key", KEYS)
def test_gradient_matches_central_differences(key):
    a = INPUTS[CASES[key][0]]
    g = _grad(key, a)
    assert g.dtype == np.complex128 and g.shape == a.shape
    for seed in (1, 2, 3):
        v = _direction(key, seed)
        (fd,) = directional(_loss_np(key), [a], [v], rel_step=STEP)
        _close(_pair(g, v), float(fd), FD_RTOL, f"{key}: <grad, v> vs differences")


@pytest.mark.parametrize("key", KEYS)
def test_jvp_matches_central_differences_and_the_vjp(key):
    name, loss, _ = CASES[key]
    a = INPUTS[name]
    g = _grad(key, a)
    for seed in (4, 5):
        v = _direction(key, seed)
        _, tan = ad.func.jvp(lambda x: loss(AD, x), (ad.tensor(a),), (ad.tensor(v),))
        (fd,) = directional(_loss_np(key), [a], [v], rel_step=STEP)
        _close(float(tan.data), float(fd), FD_RTOL, f"{key}: JVP vs differences")
        _close(float(tan.data), _pair(g, v), EXACT, f"{key}: JVP vs VJP")


# ----- second order -------------------------------------------------------------------------
SECOND = [k for k in KEYS if not k.startswith(("cond", "matrix_norm 2", "matrix_norm -2"))]


@pytest.mark.parametrize("key", SECOND)
def test_hvp_matches_differences_of_gradients(key):
    name, loss, _ = CASES[key]
    a, v = INPUTS[name], _direction(key, 6)
    _, hv = ad.hvp(lambda x: loss(AD, x), (ad.tensor(a),), (ad.tensor(v),))
    (fd,) = directional(lambda y: _grad(key, y), [a], [v])
    scale = max(1.0, float(np.max(np.abs(fd))))
    np.testing.assert_allclose(hv.data, fd, rtol=0, atol=1e-6 * scale, err_msg=key)


@pytest.mark.parametrize("key", SECOND)
def test_reverse_over_reverse_matches_differences(key):
    """The gradient of <grad L, c> (create_graph) against central differences of it."""
    name, loss, _ = CASES[key]
    a, c = INPUTS[name], _direction(key, 8)

    def inner(x: Any) -> Any:
        (g,) = ad.autograd.grad(loss(AD, x), [x], create_graph=True)
        return (g * ad.tensor(c)).real.sum()

    t = ad.tensor(a, requires_grad=True)
    inner(t).backward()
    v = _direction(key, 9)
    (fd,) = directional(
        lambda y: np.asarray(inner(ad.tensor(y, requires_grad=True)).data), [a], [v]
    )
    _close(_pair(np.asarray(t.grad.data), v), float(fd), 1e-6, f"{key}: grad of grad")


# ----- the phase gauge ----------------------------------------------------------------------
def _phase_dependent() -> dict[str, Callable[[Any], Any]]:
    return {
        "svd U": lambda a: ad.linalg.svd(a, full_matrices=False)[0].real.sum(),
        "svd Vh": lambda a: ad.linalg.svd(a, full_matrices=False)[2].imag.sum(),
        "svd U and Vh": lambda a: (lambda u, s, vh: (u[0] + vh[:, 0]).real.sum())(
            *ad.linalg.svd(a, full_matrices=False)
        ),
    }


@pytest.mark.parametrize("which", ["svd U", "svd Vh", "svd U and Vh"])
def test_a_loss_depending_on_the_singular_vectors_phase_raises(which):
    a = ad.tensor(INPUTS["3x3"], requires_grad=True)
    loss = _phase_dependent()[which](a)
    with pytest.raises(RuntimeError, match=r"svd: the singular vectors .* phase.*abs"):
        loss.backward()


def test_a_loss_depending_on_the_eigenvectors_phase_raises():
    a = ad.tensor(INPUTS["herm3x3"], requires_grad=True)
    loss = ad.linalg.eigh(a)[1][1].real.sum()  # (LAPACK's row 0 is real: stationary there)
    with pytest.raises(RuntimeError, match=r"eigh: the eigenvectors .* phase"):
        loss.backward()
    b = ad.tensor(INPUTS["herm3x3"], requires_grad=True)
    with pytest.raises(RuntimeError, match="eigh"):  # also with create_graph (Tensor cotangents)
        ad.autograd.grad(ad.linalg.eigh(b)[1].imag.sum(), [b], create_graph=True)


def test_real_input_keeps_its_sign_gauge_and_no_check():
    a = ad.tensor(INPUTS["3x3"].real, requires_grad=True)
    ad.linalg.svd(a)[0].sum().backward()  # a sign convention, as before: no phase to depend on
    assert a.grad.dtype == np.float64


def test_jvp_gauge_of_the_vectors():
    """Forward mode gives the documented gauge: diag(Vᴴ dV) = 0, the phase drift in U."""
    a, v = INPUTS["4x3"], _direction("svd U only/4x3", 10)
    (_, tans) = ad.func.jvp(
        lambda x: tuple(ad.linalg.svd(x, full_matrices=False)), (ad.tensor(a),), (ad.tensor(v),)
    )
    vh = np.linalg.svd(a, full_matrices=False)[2]
    dvh = np.asarray(tans[2].data)
    np.testing.assert_allclose(np.diagonal(dvh @ vh.conj().T), 0, atol=1e-12)
    x = np.linalg.eigh(INPUTS["herm3x3"])[1]
    (_, (_, dx)) = ad.func.jvp(
        lambda h: tuple(ad.linalg.eigh(h)), (ad.tensor(INPUTS["herm3x3"]),), (ad.tensor(v[:3]),)
    )
    np.testing.assert_allclose(np.diagonal(x.conj().T @ np.asarray(dx.data)), 0, atol=1e-12)


def test_matrix_rank_of_complex_input_is_not_differentiated():
    a = ad.tensor(INPUTS["4x3"], requires_grad=True)
    r = ad.linalg.matrix_rank(a)
    assert int(r) == 3 and not r.requires_grad


# ----- PyTorch: stored in tests/reference/linalg.npz, live under the oracle marker ----------
def _ours(key: str) -> tuple[np.ndarray, np.ndarray]:
    name, loss, _ = CASES[key]
    t = ad.tensor(INPUTS[name], requires_grad=True)
    value = loss(AD, t)
    value.backward()
    return np.asarray(value.data), np.asarray(t.grad.data)


def _same(ours: tuple[np.ndarray, np.ndarray], torch_vg: tuple[np.ndarray, np.ndarray]) -> None:
    np.testing.assert_allclose(ours[0], torch_vg[0], rtol=1e-12, err_msg="value")
    # PyTorch's gradient of a real loss of complex z is the conjugate of ours (JAX's).
    np.testing.assert_allclose(ours[1], np.conj(torch_vg[1]), rtol=1e-9, atol=1e-12)


@pytest.mark.oracle
@pytest.mark.parametrize("key", KEYS)
def test_gradients_match_pytorch(key):
    torch = pytest.importorskip("torch")
    _same(_ours(key), torch_value_and_grad(torch, key))


@pytest.mark.parametrize("key", KEYS)
def test_gradients_match_stored_pytorch(key):
    ref = _reference.load("linalg")
    x = ref[f"complex/{key}/x"]
    np.testing.assert_array_equal(INPUTS[CASES[key][0]], x, err_msg=_reference.STALE)
    _same(_ours(key), (ref[f"complex/{key}/value"], ref[f"complex/{key}/grad"]))


def test_stored_pytorch_cases_are_these():
    stored = {k.removeprefix("complex/").rsplit("/", 1)[0] for k in _reference.load("linalg")}
    assert stored - {"_meta"} == set(KEYS), _reference.STALE
