"""ad.linalg and einsum: values against NumPy, derivatives against finite differences."""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

import autodiffx as ad
from autodiffx.fd import directional

H = 1e-6
RTOL, ATOL = 1e-6, 1e-7
_rng = np.random.default_rng(7)


# ----- central differences: autodiffx.fd.directional (NumPy only), checked in test_fd.py -----
def fd_dir(f: Callable[..., Any], xs: list[np.ndarray], vs: list[np.ndarray]) -> list[np.ndarray]:
    """J v for every output of f, with the largest perturbation H * max(1, |x|)."""
    return directional(lambda *ys: _outputs(f(*ys)), xs, vs, rel_step=H, richardson=False)


def _as_tuple(y: Any) -> tuple[Any, ...]:
    return tuple(y) if isinstance(y, tuple | list) else (y,)


def _outputs(y: Any) -> tuple[np.ndarray, ...]:
    return tuple(np.asarray(o.data if isinstance(o, ad.Tensor) else o) for o in _as_tuple(y))


def fd_grad(f: Callable[..., Any], xs: list[np.ndarray]) -> list[np.ndarray]:
    """Gradient of a scalar f, one central difference per element."""
    grads = []
    for i, x in enumerate(xs):
        g = np.zeros_like(x)
        for idx in np.ndindex(x.shape):
            e = np.zeros_like(x)
            e[idx] = 1.0
            vs = [e if j == i else np.zeros_like(y) for j, y in enumerate(xs)]
            g[idx] = fd_dir(f, xs, vs)[0]
        grads.append(g)
    return grads


# ----- well-conditioned inputs --------------------------------------------------------------
def _orth(n: int) -> np.ndarray:
    q, r = np.linalg.qr(_rng.standard_normal((n, n)))
    return q * np.sign(np.diag(r))


def _mat(m: int, n: int, svals: Any = None, batch: tuple[int, ...] = ()) -> np.ndarray:
    """U diag(s) Vᵀ with distinct singular values (a stack for ``batch``)."""
    k = min(m, n)
    s = np.linspace(3.0, 1.0, k) if svals is None else np.asarray(svals)
    out = [_orth(m)[:, :k] * s @ _orth(n)[:, :k].T for _ in range(int(np.prod(batch)))]
    return np.reshape(out, (*batch, m, n))


def _spd(n: int, batch: tuple[int, ...] = ()) -> np.ndarray:
    """Symmetric positive definite with distinct eigenvalues."""
    out = []
    for _ in range(int(np.prod(batch))):
        q = _orth(n)
        out.append(q * np.linspace(1.0, 3.5, n) @ q.T)
    return np.reshape(out, (*batch, n, n))


def _sym(a: Any) -> Any:
    return (a + np.swapaxes(a, -1, -2)) / 2


def _svd_fn(full: bool = False) -> Callable[[Any], Any]:
    def f(a: Any) -> Any:
        u, s, vh = np.linalg.svd(a, full_matrices=full)
        d = np.linspace(1.0, -0.5, s.shape[-1])
        return s, u * u, vh * vh, (u * d) @ vh  # invariant under the sign of each pair

    return f


def _eigh_fn(a: Any) -> Any:
    w, v = np.linalg.eigh(_sym(a))
    return w, v * v


def _lstsq_fn(a: Any, b: Any) -> Any:
    x, res, _, s = np.linalg.lstsq(a, b)
    return (x, res, s) if np.size(res) else (x, s)


@dataclass
class Case:
    name: str
    f: Callable[..., Any]
    inputs: list[np.ndarray]
    order2: bool = True


CASES = [
    Case("solve-vec", np.linalg.solve, [_mat(3, 3), _rng.standard_normal(3)]),
    Case("solve-mat", np.linalg.solve, [_mat(3, 3), _rng.standard_normal((3, 2))]),
    Case("solve-batch-vec", np.linalg.solve, [_mat(3, 3, batch=(2,)), _rng.standard_normal(3)]),
    Case(
        "solve-batch-mat",
        np.linalg.solve,
        [_mat(3, 3, batch=(2,)), _rng.standard_normal((2, 3, 2))],
    ),
    Case(
        "solve-bcast-mat",
        np.linalg.solve,
        [_mat(3, 3, batch=(2,)), _rng.standard_normal((3, 2))],
    ),
    Case("inv", np.linalg.inv, [_mat(3, 3)]),
    Case("inv-batch", np.linalg.inv, [_mat(3, 3, batch=(2,))]),
    Case("det", np.linalg.det, [_mat(3, 3)]),
    Case("det-batch", np.linalg.det, [_mat(3, 3, batch=(2,))]),
    Case("slogdet", lambda a: np.linalg.slogdet(a)[1], [_mat(3, 3, batch=(2,))]),
    Case("cholesky", lambda a: np.linalg.cholesky(_sym(a)), [_spd(3)]),
    Case("cholesky-batch", lambda a: np.linalg.cholesky(_sym(a)), [_spd(3, batch=(2,))]),
    Case("cholesky-upper", lambda a: np.linalg.cholesky(_sym(a), upper=True), [_spd(3)]),
    Case("eigh", _eigh_fn, [_spd(3)]),
    Case("eigh-batch", _eigh_fn, [_spd(3, batch=(2,))]),
    Case("eigvalsh", lambda a: np.linalg.eigvalsh(_sym(a)), [_spd(3)]),
    Case("svd-square", _svd_fn(), [_mat(3, 3)]),
    Case("svd-square-full", _svd_fn(True), [_mat(3, 3)]),
    Case("svd-tall", _svd_fn(), [_mat(4, 3)]),
    Case("svd-wide", _svd_fn(), [_mat(3, 4)]),
    Case("svd-batch", _svd_fn(), [_mat(4, 2, batch=(2,))]),
    Case("svdvals", lambda a: np.linalg.svd(a, compute_uv=False), [_mat(4, 3)]),
    Case("norm-nuc", lambda a: np.linalg.norm(a, "nuc"), [_mat(3, 4)]),
    Case("norm-2", lambda a: np.linalg.norm(a, 2), [_mat(3, 4)]),
    Case("qr-square", np.linalg.qr, [_mat(3, 3)]),
    Case("qr-tall", np.linalg.qr, [_mat(4, 3)]),
    Case("qr-wide", np.linalg.qr, [_mat(3, 5)]),
    Case("qr-batch", np.linalg.qr, [_mat(4, 2, batch=(2,))]),
    Case("qr-r", lambda a: np.linalg.qr(a, mode="r"), [_mat(4, 3)]),
    Case("pinv-tall", np.linalg.pinv, [_mat(4, 3)]),
    Case("pinv-wide", np.linalg.pinv, [_mat(3, 4)]),
    Case("pinv-batch", np.linalg.pinv, [_mat(4, 2, batch=(2,))]),
    Case("lstsq-vec", _lstsq_fn, [_mat(5, 3), _rng.standard_normal(5)]),
    Case("lstsq-mat", _lstsq_fn, [_mat(5, 3), _rng.standard_normal((5, 2))]),
    Case("lstsq-wide", _lstsq_fn, [_mat(3, 5), _rng.standard_normal(3)]),
]

EINSUMS = [
    ("ij,jk->ik", [(3, 4), (4, 2)]),
    ("ii->i", [(3, 3)]),
    ("ii", [(3, 3)]),
    ("...ij,...jk", [(2, 1, 3, 4), (3, 4, 2)]),
    ("i,i", [(4,), (4,)]),
    ("ij->", [(3, 4)]),
    ("ij->j", [(3, 4)]),
    ("bij,bjk->bik", [(2, 3, 4), (2, 4, 3)]),
    ("i,j->ij", [(3,), (4,)]),
    ("ji", [(2, 3)]),
    ("aB", [(2, 3)]),
    ("iij->ij", [(3, 3, 2)]),
    ("ij,i->i", [(1, 3), (4,)]),
    ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 2)]),
    ("...i,...i->...", [(2, 3), (3,)]),
    ("i,i->", [(3,), (3,)]),
]
for sub, shapes in EINSUMS:
    ops = [_rng.standard_normal(s) for s in shapes]
    CASES.append(Case(f"einsum[{sub}]", lambda *xs, sub=sub: np.einsum(sub, *xs), ops))

IDS = [c.name for c in CASES]


def _cotangents(case: Case) -> list[np.ndarray]:
    rng = np.random.default_rng(zlib.crc32(case.name.encode()))
    return [rng.standard_normal(np.shape(o)) for o in _as_tuple(case.f(*case.inputs))]


def _loss(case: Case, us: list[np.ndarray]) -> Callable[..., Any]:
    def loss(*xs: Any) -> Any:
        outs = _as_tuple(case.f(*xs))
        return sum((o * u).sum() for o, u in zip(outs, us, strict=True))

    return loss


def _directions(case: Case) -> list[np.ndarray]:
    rng = np.random.default_rng(zlib.crc32(case.name.encode() + b"v"))
    return [rng.standard_normal(x.shape) for x in case.inputs]


def _ad_grad(loss: Callable[..., Any], xs: list[np.ndarray]) -> list[np.ndarray]:
    ts = [ad.tensor(x, requires_grad=True) for x in xs]
    return [g.data for g in ad.autograd.grad(loss(*ts), ts)]


def _ad_jvp(f: Callable[..., Any], xs: list[np.ndarray], vs: list[np.ndarray]) -> list[np.ndarray]:
    with ad.forward.dual_level():
        duals = [
            ad.forward.make_dual(ad.tensor(x), ad.tensor(v)) for x, v in zip(xs, vs, strict=True)
        ]
        outs = _as_tuple(f(*duals))
        return [ad.forward.unpack_dual(o).tangent.data for o in outs]


# ----- generic checks -----------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_forward_matches_numpy(case: Case) -> None:
    ref = _as_tuple(case.f(*case.inputs))
    got = _as_tuple(case.f(*[ad.tensor(x) for x in case.inputs]))
    for r, g in zip(ref, got, strict=True):
        assert isinstance(g, ad.Tensor)
        assert g.shape == np.shape(r)
        np.testing.assert_allclose(g.data, r, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_reverse_matches_fd(case: Case) -> None:
    loss = _loss(case, _cotangents(case))
    got = _ad_grad(loss, case.inputs)
    ref = fd_grad(loss, case.inputs)
    for x, g, r in zip(case.inputs, got, ref, strict=True):
        assert g.shape == x.shape
        np.testing.assert_allclose(g, r, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_forward_mode_matches_fd(case: Case) -> None:
    vs = _directions(case)
    got = _ad_jvp(case.f, case.inputs, vs)
    ref = fd_dir(case.f, case.inputs, vs)
    for g, r in zip(got, ref, strict=True):
        np.testing.assert_allclose(g, r, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_vjp_jvp_agree(case: Case) -> None:
    us, vs = _cotangents(case), _directions(case)
    lhs = sum(np.sum(u * t) for u, t in zip(us, _ad_jvp(case.f, case.inputs, vs), strict=True))
    grads = _ad_grad(_loss(case, us), case.inputs)
    rhs = sum(np.sum(g * v) for g, v in zip(grads, vs, strict=True))
    assert abs(lhs - rhs) <= 1e-10 * max(1.0, abs(lhs))


@pytest.mark.parametrize("case", [c for c in CASES if c.order2], ids=lambda c: c.name)
def test_second_order_matches_fd(case: Case) -> None:
    loss = _loss(case, _cotangents(case))
    vs = _directions(case)
    ts = [ad.tensor(x, requires_grad=True) for x in case.inputs]
    gs = ad.autograd.grad(loss(*ts), ts, create_graph=True)
    gv = sum((g * v).sum() for g, v in zip(gs, vs, strict=True))
    if gv.requires_grad:
        hs = ad.autograd.grad(gv, ts, allow_unused=True)
        hv = [np.zeros(t.shape) if h is None else h.data for h, t in zip(hs, ts, strict=True)]
    else:  # a linear function: the gradient is constant
        hv = [np.zeros(x.shape) for x in case.inputs]
    ref = fd_dir(lambda *xs: tuple(_ad_grad(loss, list(xs))), case.inputs, vs)
    for h, r in zip(hv, ref, strict=True):
        np.testing.assert_allclose(h, r, rtol=1e-5, atol=1e-6)


# ----- specific behaviour -------------------------------------------------------------------
def test_numpy_overrides_return_tensors() -> None:
    a = ad.tensor(_mat(3, 3), requires_grad=True)
    for f in (np.linalg.inv, np.linalg.det, np.linalg.pinv, lambda x: np.linalg.solve(x, x)):
        y = f(a)
        assert isinstance(y, ad.Tensor)
        assert y.requires_grad
    w, v = np.linalg.eigh(ad.tensor(_spd(3)))
    assert isinstance(w, ad.Tensor)
    assert isinstance(v, ad.Tensor)
    res = ad.linalg.svd(ad.tensor(_mat(3, 3)))
    assert res.U.shape == res.Vh.shape == (3, 3)
    assert res.S.shape == (3,)


def test_slogdet_sign_and_negative_det() -> None:
    a = _mat(3, 3) * np.array([[1.0], [1.0], [-1.0]])
    sign, logdet = ad.linalg.slogdet(ad.tensor(a, requires_grad=True))
    ref = np.linalg.slogdet(a)
    assert sign.item() == ref.sign
    np.testing.assert_allclose(logdet.item(), ref.logabsdet)
    logdet.backward()


def test_cholesky_gradient_is_symmetric_and_matches_symmetric_fd() -> None:
    a0 = _spd(3)
    a = ad.tensor(a0, requires_grad=True)
    u = np.tril(_rng.standard_normal((3, 3)))
    (np.linalg.cholesky(a) * u).sum().backward()
    g = a.grad.data
    np.testing.assert_allclose(g, g.T, atol=1e-14)
    v = _sym(_rng.standard_normal((3, 3)))  # NumPy reads the lower triangle: symmetric steps
    (ref,) = fd_dir(lambda x: (np.linalg.cholesky(x) * u).sum(), [a0], [v])
    np.testing.assert_allclose(np.sum(g * v), ref, rtol=RTOL)


def test_eigh_gradient_is_symmetric() -> None:
    a = ad.tensor(_spd(3), requires_grad=True)
    w, _ = ad.linalg.eigh(a)
    (w * ad.tensor([1.0, 2.0, 3.0])).sum().backward()
    np.testing.assert_allclose(a.grad.data, a.grad.data.T, atol=1e-14)


def test_eigenvalue_gradient_finite_at_repeated_eigenvalues() -> None:
    a = ad.tensor(np.eye(3), requires_grad=True)
    w, _ = ad.linalg.eigh(a)
    w.sum().backward()
    np.testing.assert_allclose(a.grad.data, np.eye(3), atol=1e-14)
    b = ad.tensor(np.eye(3), requires_grad=True)
    ad.linalg.eigvalsh(b).sum().backward()
    np.testing.assert_allclose(b.grad.data, np.eye(3), atol=1e-14)


def test_complex_forward_values() -> None:
    rng = np.random.default_rng(3)
    z = rng.standard_normal((3, 3)) + 1j * rng.standard_normal((3, 3))
    herm = z @ z.conj().T + 3 * np.eye(3)
    t, th = ad.tensor(z), ad.tensor(herm)
    np.testing.assert_allclose(ad.linalg.inv(t).data, np.linalg.inv(z))
    np.testing.assert_allclose(ad.linalg.det(t).data, np.linalg.det(z))
    np.testing.assert_allclose(ad.linalg.solve(t, t[0]).data, np.linalg.solve(z, z[0]))
    np.testing.assert_allclose(ad.linalg.cholesky(th).data, np.linalg.cholesky(herm))
    np.testing.assert_allclose(
        ad.linalg.cholesky(th, upper=True).data, np.linalg.cholesky(herm, upper=True)
    )
    np.testing.assert_allclose(ad.linalg.eigh(th)[0].data, np.linalg.eigh(herm)[0])
    np.testing.assert_allclose(ad.linalg.svd(t)[1].data, np.linalg.svd(z)[1])
    np.testing.assert_allclose(ad.linalg.qr(t)[1].data, np.linalg.qr(z)[1])
    np.testing.assert_allclose(ad.linalg.pinv(t).data, np.linalg.pinv(z))
    np.testing.assert_allclose(ad.linalg.slogdet(t)[0].data, np.linalg.slogdet(z)[0])
    np.testing.assert_allclose(ad.einsum("ij,jk", t, t).data, z @ z)


def test_complex_holomorphic_gradient_is_plain_transpose() -> None:
    rng = np.random.default_rng(4)
    z = rng.standard_normal((3, 3)) + 1j * rng.standard_normal((3, 3)) + 3 * np.eye(3)
    a = ad.tensor(z, requires_grad=True)
    ad.linalg.det(a).backward()
    np.testing.assert_allclose(a.grad.data, np.linalg.det(z) * np.linalg.inv(z).T)


def test_complex_derivative_not_implemented_names_op() -> None:
    a = ad.tensor(np.eye(2, dtype=complex) * 2, requires_grad=True)
    with pytest.raises(NotImplementedError, match="cholesky"):
        ad.linalg.cholesky(a).sum().backward()


def test_shape_errors_name_the_op() -> None:
    with pytest.raises(ValueError, match=r"solve\(float64\[3, 3\], float64\[4\]\)"):
        ad.linalg.solve(ad.tensor(np.eye(3)), ad.tensor(np.ones(4)))
    with pytest.raises(np.linalg.LinAlgError, match="cholesky"):
        ad.linalg.cholesky(ad.tensor([[1.0, 2.0], [2.0, 1.0]]))
    with pytest.raises(ValueError, match="einsum"):
        ad.einsum("ij,jk->ik", ad.ones((2, 3)), ad.ones((4, 2)))
    with pytest.raises(ValueError, match="einsum"):
        ad.einsum("ijk", ad.ones((2, 3)))


def test_svd_full_matrices_nonsquare_gradient_raises() -> None:
    a = ad.tensor(_mat(4, 3), requires_grad=True)
    with pytest.raises(ValueError, match="full_matrices=False"):
        ad.linalg.svd(a)
    res = ad.linalg.svd(a.detach())  # values without gradients are fine
    assert res.U.shape == (4, 4)


def test_det_gradient_at_singular_matrix_raises() -> None:
    a = ad.tensor([[1.0, 2.0], [2.0, 4.0]], requires_grad=True)
    d = ad.linalg.det(a)
    assert d.item() == 0.0
    with pytest.raises(np.linalg.LinAlgError, match="det"):
        d.backward()


def test_einsum_sublist_and_forms() -> None:
    a, b = _rng.standard_normal((2, 3)), _rng.standard_normal((3, 4))
    ta, tb = ad.tensor(a), ad.tensor(b)
    np.testing.assert_allclose(ad.einsum(ta, [0, 1], tb, [1, 2], [0, 2]).data, a @ b)
    np.testing.assert_allclose(ad.einsum(ta, [0, 27]).data, np.einsum(a, [0, 27]))
    np.testing.assert_allclose(ad.einsum(ta, [27, 0]).data, np.einsum(a, [27, 0]))
    np.testing.assert_allclose(ad.einsum(" ij , jk ", ta, tb).data, a @ b)
    np.testing.assert_allclose(np.einsum("ij,jk", ta, tb, optimize=True).data, a @ b)


def test_einsum_float32_keeps_dtype() -> None:
    a = ad.tensor(np.ones((2, 2), dtype=np.float32), requires_grad=True)
    y = ad.einsum("ii", a)
    assert y.dtype == np.float32
    y.backward()
    assert a.grad.dtype == np.float32
    np.testing.assert_array_equal(a.grad.data, np.eye(2))


def test_forward_over_reverse_hvp() -> None:
    x0, v0 = _mat(3, 3), _rng.standard_normal((3, 3))

    def grad_f(x: Any) -> Any:
        return ad.autograd.grad(ad.linalg.slogdet(x)[1], x, create_graph=True)[0]

    with ad.forward.dual_level():
        x = ad.forward.make_dual(ad.tensor(x0, requires_grad=True), ad.tensor(v0))
        hv = ad.forward.unpack_dual(grad_f(x)).tangent.data
    # d/dt A⁻ᵀ = −A⁻ᵀ Vᵀ A⁻ᵀ
    ai = np.linalg.inv(x0)
    np.testing.assert_allclose(hv, -(ai @ v0 @ ai).T, rtol=1e-10)


def test_gradients_with_constant_arguments() -> None:
    a0, b0 = _mat(5, 3), _rng.standard_normal(5)
    b = ad.tensor(b0, requires_grad=True)
    x, *_ = ad.linalg.lstsq(a0, b)
    x.sum().backward()
    np.testing.assert_allclose(b.grad.data, np.linalg.pinv(a0).T @ np.ones(3))
    a = ad.tensor(a0, requires_grad=True)
    x, res, _, _ = ad.linalg.lstsq(a, b0)
    (x.sum() + res.sum()).backward()
    (ref,) = fd_grad(
        lambda m: np.linalg.lstsq(m, b0)[0].sum() + np.linalg.lstsq(m, b0)[1].sum(), [a0]
    )
    np.testing.assert_allclose(a.grad.data, ref, rtol=RTOL, atol=ATOL)
    c = ad.tensor(b0[:3], requires_grad=True)
    y = ad.einsum("ij,j->i", a0, c)
    y.sum().backward()
    np.testing.assert_allclose(c.grad.data, a0.sum(axis=0))
    m = ad.tensor(_mat(3, 3), requires_grad=True)
    ad.linalg.solve(m, np.ones(3)).sum().backward()
    assert m.grad.shape == (3, 3)


def test_qr_complete_of_wide_matrix_is_differentiable() -> None:
    a0 = _mat(3, 5)
    loss = _loss(
        Case("qr-complete", lambda a: np.linalg.qr(a, mode="complete"), [a0]),
        [
            _rng.standard_normal((3, 3)),
            _rng.standard_normal((3, 5)),
        ],
    )
    np.testing.assert_allclose(
        _ad_grad(loss, [a0])[0], fd_grad(loss, [a0])[0], rtol=RTOL, atol=ATOL
    )
