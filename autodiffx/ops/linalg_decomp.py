"""Linear-algebra primitives (solve, inv, det, slogdet, cholesky, eigh, svd, qr, pinv, lstsq)."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from .._broadcast import np_dtype
from .._mode import is_grad_enabled
from .._registry import FUNCTION_MAP, defprim
from .._tensor import Tensor
from .._xp import absmax
from .shape import lift

# NOTE: the rules follow the published matrix-calculus results: Giles, "An extended collection
# of matrix derivative results for forward and reverse mode AD" (2008) for solve, inv, det
# and slogdet; Murray, "Differentiation of the Cholesky decomposition" (2016) for cholesky;
# Townsend, "Differentiating the singular value decomposition" (2016) and PyTorch's
# svd_backward/linalg_svd_jvp for svd, Giles (2008) and PyTorch linalg_eig_backward for
# eigh; Walter & Lehmann (2018) and PyTorch's
# linalg_qr_backward for qr; Golub & Pereyra (1973, eq. 4.12) for pinv and lstsq.
# They are written with np.* so that they compose to any order (see _registry).
# Complex inputs: solve, inv, det (holomorphic) differentiate with the plain (non-conjugated)
# transpose; svd, svdvals, eigh, eigvalsh, qr and pinv with the conjugate transposes of their
# real rules (JAX's convention, docs/conventions.md): each VJP is the transpose of its JVP for
# the pairing Re(sum(ḡ * ẋ)), computed as conj(PyTorch's backward of conj(ḡ)); slogdet,
# cholesky and lstsq raise NotImplementedError for complex derivatives (values work).
# Cotangents and tangents may carry leading batch axes (vectorized Jacobians): the rules use
# stack-friendly forms (@, mT, [..., None]) and never count axes from the front.


def _mT(x: Any) -> Any:
    return np.swapaxes(x, -1, -2)


def _cplx(x: Any) -> bool:
    return np.dtype(x.dtype).kind == "c"


def _cj(x: Any) -> Any:
    """The complex conjugate (no op, and no recorded node, for real values)."""
    return np.conj(x) if _cplx(x) else x


def _mH(x: Any) -> Any:
    """The conjugate transpose of a stack of matrices (the transpose for real ones)."""
    return _mT(_cj(x))


def _herm(x: Any) -> Any:
    return 0.5 * (x + _mH(x))


def _phase_check(name: str, what: str, im: Any, ref: Any) -> None:
    """Refuse a loss that depends on the free phase of complex singular/eigen vectors.

    ``im`` is Im diag(Xᴴ X̄) summed over the factors that share a phase (PyTorch's test);
    it is zero up to rounding for a phase-invariant loss."""
    im, ref = (x.data if isinstance(x, Tensor) else np.asarray(x) for x in (im, ref))
    big = absmax(im)  # (in the arrays' own namespace: no conversion to NumPy)
    if big > np.sqrt(np.finfo(np_dtype(im.dtype)).eps) * max(1.0, absmax(ref)):
        raise RuntimeError(
            f"{name}: the {what} in the complex case are specified up to multiplication by "
            "e^{i phi} each, and the loss depends on this phase (max |Im diag(Xᴴ X̄)| = "
            f"{big:.3g}), so its derivative is ill-defined; use a phase-invariant "
            "function of them (abs(x), x x^H projectors, U diag(s) Vh reconstructions, or the "
            "values alone)"
        )


def _diag(x: Any) -> Any:
    return np.diagonal(x, axis1=-2, axis2=-1)


def _diag_embed(v: Any) -> Any:
    return v[..., None] * np.eye(v.shape[-1], dtype=v.dtype)


def _sym(x: Any) -> Any:
    return 0.5 * (x + _mT(x))


def _mv(a: Any, v: Any) -> Any:
    """A stack of matrices times a stack of vectors (matmul would take a 2-D ``v`` as a matrix)."""
    return (a @ v[..., None])[..., 0]


def _unused(g: Any) -> bool:
    """True for the engine's zero cotangent of an output that the loss does not use."""
    if isinstance(g, Tensor):
        return not g.requires_grad and g._tan is None and not np.any(g)
    return not np.any(g)


def _real_only(name: str, x: Any) -> None:
    if np.iscomplexobj(x):
        raise NotImplementedError(
            f"{name}: derivatives for complex input are not implemented (the values are)"
        )


def _tracked(x: Any) -> bool:
    return isinstance(x, Tensor) and ((x.requires_grad and is_grad_enabled()) or bool(x._tan))


def _inv_for(name: str, a: Any) -> Any:
    try:
        return inv_.call(a)
    except np.linalg.LinAlgError as e:
        raise np.linalg.LinAlgError(
            f"{name}: the derivative at a singular matrix is not implemented (it uses the "
            f"inverse): {e}"
        ) from e


# ----- solve, inv, det, slogdet -------------------------------------------------------------
def _solve_vjp(needs: tuple[bool, ...], g: Any, out: Any, a: Any, b: Any) -> tuple[Any, Any]:
    # NOTE: implicit rule, never through the factorisation: b̄ = A⁻ᵀ ḡ, Ā = −b̄ cᵀ.
    if np.ndim(b) == 1:
        gb = solve_.call(_mT(a), g[..., None])[..., 0]
        ga = -gb[..., :, None] * out[..., None, :] if needs[0] else None
    else:
        gb = solve_.call(_mT(a), g)
        ga = -(gb @ _mT(out)) if needs[0] else None
    return ga, gb if needs[1] else None


def _solve_jvp(tans: tuple[Any, ...], out: Any, a: Any, b: Any, *, nb: int) -> Any:
    ta, tb = tans
    vec = np.ndim(b) == 1
    if nb:  # batched tangents get the stack rank of the result before they meet a or x
        n = np.ndim(out)
        ta = None if ta is None else lift(ta, nb, n + 1 if vec else n)
        tb = None if tb is None else lift(tb, nb, n)
    rhs = tb
    if ta is not None:
        r = -_mv(ta, out) if vec else -(ta @ out)
        rhs = r if rhs is None else rhs + r
    return solve_.call(a, rhs[..., None])[..., 0] if vec else solve_.call(a, rhs)


solve_ = defprim(
    "solve",
    np.linalg.solve,
    vmap="gufunc",
    vjp=_solve_vjp,
    jvp=_solve_jvp,
    save_out=True,
    doc="Solution of a x = b, differentiated by the implicit rule.",
)

inv_ = defprim(
    "inv",
    np.linalg.inv,
    vmap="gufunc",
    vjp=lambda needs, g, out, a: (-(_mT(out) @ g @ _mT(out)),),
    jvp=lambda tans, out, a: -(out @ tans[0] @ out),
    save_args=False,
    save_out=True,
    doc="Matrix inverse; Ā = −A⁻ᵀ Ḡ A⁻ᵀ.",
)


def _det_vjp(needs: tuple[bool, ...], g: Any, out: Any, a: Any) -> tuple[Any]:
    return ((g * out)[..., None, None] * _mT(_inv_for("det", a)),)


def _det_jvp(tans: tuple[Any, ...], out: Any, a: Any) -> Any:
    return out * np.sum(_mT(_inv_for("det", a)) * tans[0], axis=(-2, -1))


det_ = defprim(
    "det",
    np.linalg.det,
    vmap="gufunc",
    vjp=_det_vjp,
    jvp=_det_jvp,
    save_out=True,
    doc="Determinant; Ā = ḡ det(A) A⁻ᵀ.",
)


def _slogdet_vjp(needs: tuple[bool, ...], g: Any, out: Any, a: Any) -> tuple[Any]:
    _real_only("slogdet", out[0])
    return (g[1][..., None, None] * _mT(_inv_for("slogdet", a)),)


def _slogdet_jvp(tans: tuple[Any, ...], out: Any, a: Any) -> tuple[Any, Any]:
    _real_only("slogdet", out[0])
    return None, np.sum(_mT(_inv_for("slogdet", a)) * tans[0], axis=(-2, -1))


slogdet_ = defprim(
    "slogdet",
    lambda a: tuple(np.linalg.slogdet(a)),
    vmap="gufunc",
    vjp=_slogdet_vjp,
    jvp=_slogdet_jvp,
    nout=-1,
    save_out=True,
    doc="Sign and log|det|; the sign is piecewise constant, d log|det A| = tr(A⁻¹ dA).",
)


# ----- cholesky -----------------------------------------------------------------------------
def _phi(x: Any) -> Any:
    """Lower triangle with the diagonal halved."""
    return np.tril(x) - 0.5 * x * np.eye(x.shape[-1], dtype=x.dtype)


def _cholesky_vjp(needs: tuple[bool, ...], g: Any, out: Any, a: Any) -> tuple[Any]:
    # NOTE: Murray (2016) / PyTorch: Ā = sym(L⁻ᵀ Φ(Lᵀ L̄) L⁻¹), symmetric because the input is
    # taken as symmetric (NumPy reads only its lower triangle).
    _real_only("cholesky", out)
    linv = inv_.call(out)
    return (_sym(_mT(linv) @ _phi(_mT(out) @ g) @ linv),)


def _cholesky_jvp(tans: tuple[Any, ...], out: Any, a: Any) -> Any:
    _real_only("cholesky", out)
    linv = inv_.call(out)
    return out @ _phi(linv @ _sym(tans[0]) @ _mT(linv))


cholesky_ = defprim(
    "cholesky",
    np.linalg.cholesky,
    vmap="gufunc",
    vjp=_cholesky_vjp,
    jvp=_cholesky_jvp,
    save_args=False,
    save_out=True,
    doc="Lower Cholesky factor of a symmetric positive definite matrix.",
)


# ----- eigh ---------------------------------------------------------------------------------
def _eig_f(w: Any) -> Any:
    """F_ij = 1 / (w_j − w_i) off the diagonal, 0 on it (inf for repeated eigenvalues)."""
    eye = np.eye(w.shape[-1], dtype=w.dtype)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (1 - eye) / (w[..., None, :] - w[..., :, None] + eye)


def _factorization(name: str, kernel: Any, vjp: Any, jvp: Any, doc: str) -> Any:
    """The entry of a decomposition into several factors whose rules read the factors only
    (the input is not saved)."""
    return defprim(
        name,
        kernel,
        vjp=vjp,
        jvp=jvp,
        nout=-1,
        save_args=False,
        save_out=True,
        doc=doc,
        vmap="gufunc",
    )


def _eigh_vjp(needs: tuple[bool, ...], g: Any, out: Any, a: Any, UPLO: str = "L") -> tuple[Any]:
    # NOTE: Ā = V (diag(w̄) + F ∘ (Vᴴ V̄ − V̄ᴴ V)/2) Vᴴ (Giles 2008; PyTorch linalg_eig_backward,
    # Hermitian case, with its check that Im diag(Vᴴ V̄) = 0: a loss that depends on the phase of
    # a complex eigenvector has no derivative), Hermitian; complex: conj of it on conj(ḡ). An
    # unused V̄ is skipped, so eigenvalue-only losses stay finite at repeated eigenvalues.
    gw, gv = g
    w, v = out
    inner = _diag_embed(gw)
    if not _unused(gv):
        x = _mH(v) @ _cj(gv)
        if _cplx(v):
            _phase_check("eigh", "eigenvectors", np.imag(_diag(x)), x)
        inner = inner + _eig_f(w) * (0.5 * (x - _mH(x)))
    return (_cj(v @ inner @ _mH(v)),)


def _eigh_jvp(tans: tuple[Any, ...], out: Any, a: Any, UPLO: str = "L") -> tuple[Any, Any]:
    # Gauge: each eigenvector changes orthogonally to itself (diag(Vᴴ dV) = 0), as JAX's.
    w, v = out
    m = _mH(v) @ _herm(tans[0]) @ v
    dw = np.real(_diag(m)) if _cplx(m) else _diag(m)
    return dw, v @ (_eig_f(w) * m)


eigh_ = _factorization(
    "eigh",
    lambda a, UPLO="L": tuple(np.linalg.eigh(a, UPLO)),
    vjp=_eigh_vjp,
    jvp=_eigh_jvp,
    doc="Eigenvalues (ascending) and eigenvectors of a symmetric (Hermitian) matrix.",
)


def _eigvalsh_vjp(needs: tuple[bool, ...], g: Any, out: Any, a: Any, UPLO: str = "L") -> tuple[Any]:
    v = eigh_.call(a, UPLO=UPLO)[1]
    return ((_cj(v) * g[..., None, :]) @ _mT(v),)


def _eigvalsh_jvp(tans: tuple[Any, ...], out: Any, a: Any, UPLO: str = "L") -> Any:
    v = eigh_.call(a, UPLO=UPLO)[1]
    dw = np.sum(_cj(v) * (_herm(tans[0]) @ v), axis=-2)
    return np.real(dw) if _cplx(dw) else dw


eigvalsh_ = defprim(
    "eigvalsh",
    lambda a, UPLO="L": np.linalg.eigvalsh(a, UPLO),
    vmap="gufunc",
    vjp=_eigvalsh_vjp,
    jvp=_eigvalsh_jvp,
    doc="Eigenvalues (ascending) of a symmetric matrix; Ā = V diag(w̄) Vᵀ.",
)


# ----- svd ----------------------------------------------------------------------------------
def _svd_check(name: str, u: Any, vh: Any, full_matrices: bool) -> None:
    if full_matrices and u.shape[-2] != vh.shape[-1]:
        raise ValueError(
            f"{name}: derivatives of a non-square SVD need full_matrices=False (the extra "
            f"columns of the full U or V are not unique); got U {tuple(u.shape)}, "
            f"Vh {tuple(vh.shape)}"
        )


def _svd_inner(u: Any, s: Any, vh: Any, gu: Any, gs: Any, gvh: Any) -> Any:
    """The k×k core of PyTorch's svd_backward (conjugate cotangents; None: unused)."""
    inner = _diag_embed(gs)
    if gu is None and gvh is None:
        return inner
    s2 = s * s
    e = s2[..., None, :] - s2[..., :, None] + np.eye(s.shape[-1], dtype=s.dtype)
    num, x, y = 0.0, None, None
    if gu is not None:
        x = _mH(u) @ gu
        num = num + (x - _mH(x)) * s[..., None, :]
    if gvh is not None:
        y = vh @ _mH(gvh)
        num = num + s[..., :, None] * (y - _mH(y))
    inner = inner + num / e
    if _cplx(u):
        # The phase e^{iφ_j} of column j of U and of V together: Im(Uᴴ Ū + Vᴴ V̄)_jj must be 0.
        im = sum(np.imag(_diag(z)) for z in (x, y) if z is not None)
        _phase_check("svd", "singular vectors", im, x if y is None else y)
        if x is not None:  # the transpose of the JVP's gauge (the phase drift in U)
            inner = inner + _diag_embed(1j * (np.imag(_diag(x)) / s))
    return inner


def _svd_vjp(
    needs: tuple[bool, ...],
    g: Any,
    out: Any,
    a: Any,
    full_matrices: bool = True,
    hermitian: bool = False,
) -> tuple[Any]:
    # NOTE: Townsend (2016) in the form of PyTorch's svd_backward (FunctionsManual.cpp):
    # Ā = U [(skew(UᴴŪ) S + S skew(VᴴV̄)) / E + diag(S̄) + i Im diag(UᴴŪ) S⁻¹] Vᴴ with
    # E_jk = s_k² − s_j², skew(X) = X − Xᴴ, plus the terms that project Ū (m > n) or V̄
    # (m < n) off the span of U or V; complex: conj of it on conj(ḡ) (JAX's convention).
    gu, gs, gvh = g
    u, s, vh = out
    _svd_check("svd", u, vh, full_matrices)
    m, n = u.shape[-2], vh.shape[-1]
    gu = None if _unused(gu) else _cj(gu)
    gvh = None if _unused(gvh) else _cj(gvh)
    inner = _svd_inner(u, s, vh, gu, gs, gvh)
    if m > n and gu is not None:
        gus = gu / s[..., None, :]
        return (_cj((u @ inner + gus - u @ (_mH(u) @ gus)) @ vh),)
    if m < n and gvh is not None:
        sgv = gvh / s[..., :, None]
        return (_cj(u @ (inner @ vh + sgv - (sgv @ _mH(vh)) @ vh)),)
    return (_cj(u @ inner @ vh),)


def _svd_jvp(
    tans: tuple[Any, ...], out: Any, a: Any, full_matrices: bool = True, hermitian: bool = False
) -> tuple[Any, Any, Any]:
    # Gauge (complex): diag(Vᴴ dV) = 0 and the phase drift i Im(Uᴴ dA V)_jj / s_j in U, as JAX's.
    u, s, vh = out
    _svd_check("svd", u, vh, full_matrices)
    ta = tans[0]
    m, n = u.shape[-2], vh.shape[-1]
    v = _mH(vh)
    dp = _mH(u) @ ta @ v
    ds = _diag(dp)
    s2 = s * s
    eye = np.eye(s.shape[-1], dtype=s.dtype)
    with np.errstate(divide="ignore", invalid="ignore"):
        einv = (1 - eye) / (s2[..., None, :] - s2[..., :, None] + eye)
    sr, sc = s[..., None, :], s[..., :, None]
    du = u @ ((dp * sr + sc * _mH(dp)) * einv)
    dv = v @ ((sc * dp + _mH(dp) * sr) * einv)
    if _cplx(dp):
        du = du + u * (1j * (np.imag(ds) / s))[..., None, :]
        ds = np.real(ds)
    if m > n:
        x = ta @ (v / sr)
        du = du + x - u @ (_mH(u) @ x)
    elif m < n:
        x = _mH(ta) @ (u / sr)
        dv = dv + x - v @ (vh @ x)
    return du, ds, _mH(dv)


svd_ = _factorization(
    "svd",
    lambda a, full_matrices=True, hermitian=False: tuple(
        np.linalg.svd(a, full_matrices, True, hermitian)
    ),
    vjp=_svd_vjp,
    jvp=_svd_jvp,
    doc="Singular value decomposition U, S, Vh.",
)


def _svdvals_vjp(
    needs: tuple[bool, ...], g: Any, out: Any, a: Any, hermitian: bool = False
) -> tuple[Any]:
    u, _, vh = svd_.call(a, full_matrices=False, hermitian=hermitian)
    return ((_cj(u) * g[..., None, :]) @ _cj(vh),)


def _svdvals_jvp(tans: tuple[Any, ...], out: Any, a: Any, hermitian: bool = False) -> Any:
    u, _, vh = svd_.call(a, full_matrices=False, hermitian=hermitian)
    ds = np.sum(_cj(u) * (tans[0] @ _mH(vh)), axis=-2)
    return np.real(ds) if _cplx(ds) else ds


svdvals_ = defprim(
    "svdvals",
    lambda a, hermitian=False: np.linalg.svd(a, compute_uv=False, hermitian=hermitian),
    vmap="gufunc",
    vjp=_svdvals_vjp,
    jvp=_svdvals_jvp,
    doc="Singular values (descending); Ā = U diag(s̄) Vᵀ.",
)


# ----- qr -----------------------------------------------------------------------------------
def _qr_square_vjp(q: Any, r: Any, gq: Any, gr: Any) -> Any:
    # NOTE: Walter & Lehmann (2018) / PyTorch linalg_qr_backward for m >= n, with conjugate
    # cotangents: Ā = (Q̄ + Q copyltu(M)) R⁻ᴴ with M = R̄ Rᴴ − Qᴴ Q̄ (copyltu: the upper triangle
    # mirrored conjugated, its diagonal real: LAPACK's R has a real diagonal, which fixes the
    # phases); returned conjugated (JAX's convention), conj(X R⁻ᴴ) = conj(X) R⁻ᵀ.
    mm = gr @ _mH(r) - _mH(q) @ gq
    if _cplx(mm):
        up = np.triu(mm, 1)
        x = q @ (up + _mH(up) + _diag_embed(np.real(_diag(mm)))) + gq
    else:
        x = q @ (np.triu(mm) + _mT(np.triu(mm, 1))) + gq
    return _mT(solve_.call(r, _mT(_cj(x))))


def _qr_check(q: Any, r: Any, mode: str) -> None:
    if mode == "complete" and q.shape[-1] > r.shape[-1]:
        raise ValueError(
            "qr: derivatives of mode='complete' for a tall matrix are not defined (the extra "
            "columns of Q are not unique); use mode='reduced'"
        )


def _qr_vjp(needs: tuple[bool, ...], g: Any, out: Any, a: Any, mode: str = "reduced") -> tuple[Any]:
    q, r = out
    gq, gr = _cj(g[0]), _cj(g[1])
    _qr_check(q, r, mode)
    m, n = q.shape[-2], r.shape[-1]
    if m >= n:
        return (_qr_square_vjp(q, r, gq, gr),)
    # Wide: A = Q [R1 R2] with A1 = Q R1 square and R2 = Qᴴ A2.
    r1, r2 = r[..., :m], r[..., m:]
    gr1, gr2 = gr[..., :m], gr[..., m:]
    ga1 = _qr_square_vjp(q, r1, gq + q @ (r2 @ _mH(gr2)), gr1)
    return (np.concatenate([ga1, _cj(q @ gr2)], axis=-1),)


def _qr_square_jvp(q: Any, r: Any, ta: Any) -> tuple[Any, Any]:
    y = _mT(solve_.call(_mT(r), _mT(ta)))  # dA R⁻¹
    c = _mH(q) @ y
    low = np.tril(c, -1)
    c_om = c - (low - _mH(low))  # C − Ω, upper triangular
    if _cplx(c):  # Ω's diagonal is i Im(C_jj): R's diagonal stays real
        c_om = c_om - _diag_embed(1j * np.imag(_diag(c)))
    return y - q @ c_om, c_om @ r


def _qr_jvp(tans: tuple[Any, ...], out: Any, a: Any, mode: str = "reduced") -> tuple[Any, Any]:
    q, r = out
    _qr_check(q, r, mode)
    ta = tans[0]
    m, n = q.shape[-2], r.shape[-1]
    if m >= n:
        return _qr_square_jvp(q, r, ta)
    dq, dr1 = _qr_square_jvp(q, r[..., :m], ta[..., :m])
    dr2 = _mH(dq) @ (q @ r[..., m:]) + _mH(q) @ ta[..., m:]
    return dq, np.concatenate([dr1, dr2], axis=-1)


qr_ = _factorization(
    "qr",
    lambda a, mode="reduced": tuple(np.linalg.qr(a, mode)),
    vjp=_qr_vjp,
    jvp=_qr_jvp,
    doc="QR decomposition Q, R (reduced or complete).",
)


# ----- pinv, lstsq --------------------------------------------------------------------------
def _pinv_vjp(needs: tuple[bool, ...], g: Any, out: Any, a: Any, **params: Any) -> tuple[Any]:
    # NOTE: Golub & Pereyra (1973): dA⁺ = −A⁺ dA A⁺ + A⁺A⁺ᴴ dAᴴ (I − AA⁺) + (I − A⁺A) dAᴴ A⁺ᴴA⁺,
    # valid where the rank is locally constant; this is its adjoint on conj(ḡ), conjugated.
    x, g = out, _cj(g)
    gt = _mH(g)
    w = gt @ (x @ _mH(x))
    z = (_mH(x) @ x) @ gt
    return (_cj(-(_mH(x) @ g @ _mH(x)) + w - a @ (x @ w) + z - (z @ x) @ a),)


def _pinv_jvp(tans: tuple[Any, ...], out: Any, a: Any, **params: Any) -> Any:
    x, tt = out, _mH(tans[0])
    return (
        -(x @ tans[0] @ x) + (x @ _mH(x)) @ (tt - (tt @ a) @ x) + (tt - x @ (a @ tt)) @ (_mH(x) @ x)
    )


pinv_ = defprim(
    "pinv",
    lambda a, **params: np.linalg.pinv(a, **params),
    vmap="gufunc",
    vjp=_pinv_vjp,
    jvp=_pinv_jvp,
    save_out=True,
    doc="Moore–Penrose pseudo-inverse.",
)


def _lstsq_parts(out: Any, a: Any, b: Any, rcond: Any) -> tuple[Any, ...]:
    """(b is a vector, x, A⁺, r = b − A x, y = A⁺ᵀ x), vectors as one-column matrices."""
    x = out[0]
    vec = np.ndim(b) == 1
    if vec:
        b, x = b[:, None], x[:, None]
    if rcond is None:
        rcond = np.finfo(np.result_type(a)).eps * max(np.shape(a))
    xp = pinv_.call(a, rcond=rcond)
    return vec, x, xp, b - a @ x, _mT(xp) @ x


def _lstsq_vjp(
    needs: tuple[bool, ...], g: Any, out: Any, a: Any, b: Any, rcond: Any = None
) -> tuple[Any, Any]:
    # NOTE: x = A⁺ b differentiated through the pseudo-inverse (conditioning κ(A), not the κ(A)²
    # of the normal equations); the residuals ‖b − A x‖² by the envelope theorem
    # (∂/∂b = 2r, ∂/∂A = −2 r xᵀ); the singular values as in svd.
    gx, gres, _, gs = g
    _real_only("lstsq", out[0])
    vec, x, xp, r, y = _lstsq_parts(out, a, b, rcond)
    ga = gb = None
    if not _unused(gx):
        gx = gx[..., None] if vec else gx
        gb = _mT(xp) @ gx
        if needs[0]:
            ga = -gb @ _mT(x) + r @ _mT(xp @ gb) + y @ _mT(gx - xp @ (a @ gx))
    if np.size(out[1]) and not _unused(gres):
        rg = 2 * r * gres[..., None, :]
        if needs[0]:
            ga = -(rg @ _mT(x)) if ga is None else ga - rg @ _mT(x)
        gb = rg if gb is None else gb + rg
    if needs[0] and not _unused(gs):
        u, _, vh = svd_.call(a, full_matrices=False)
        t = (u * gs[..., None, :]) @ vh
        ga = t if ga is None else ga + t
    if vec and gb is not None:
        gb = gb[..., 0]
    return ga, gb if needs[1] else None


def _lstsq_jvp(
    tans: tuple[Any, ...], out: Any, a: Any, b: Any, rcond: Any = None
) -> tuple[Any, ...]:
    ta, tb = tans
    _real_only("lstsq", out[0])
    vec, x, xp, r, y = _lstsq_parts(out, a, b, rcond)
    if tb is not None and vec:
        tb = tb[..., None]
    dx = None if tb is None else xp @ tb
    dres = None
    if np.size(out[1]):
        rhs = tb if ta is None else (-(ta @ x) if tb is None else tb - ta @ x)
        dres = 2 * np.sum(r * rhs, axis=-2)
    ds = None
    if ta is not None:
        tt = _mT(ta)
        t = -(xp @ (ta @ x)) + xp @ (_mT(xp) @ (tt @ r)) + (tt @ y - xp @ (a @ (tt @ y)))
        dx = t if dx is None else dx + t
        u, _, vh = svd_.call(a, full_matrices=False)
        ds = np.sum(u * (ta @ _mT(vh)), axis=-2)
    if vec:
        dx = dx[..., 0]
    return dx, dres, None, ds


lstsq_ = defprim(
    "lstsq",
    lambda a, b, rcond=None: tuple(np.linalg.lstsq(a, b, rcond=rcond)),
    numpy_only="the array API has no lstsq",
    vjp=_lstsq_vjp,
    jvp=_lstsq_jvp,
    nout=-1,
    save_out=True,
    doc="Least-squares solution, residuals, rank and singular values.",
)


# ----- public functions ---------------------------------------------------------------------
class SlogdetResult(NamedTuple):
    """``(sign, logabsdet)``, as NumPy's."""

    sign: Tensor
    logabsdet: Tensor


class EighResult(NamedTuple):
    """``(eigenvalues, eigenvectors)``, as NumPy's."""

    eigenvalues: Tensor
    eigenvectors: Tensor


class SVDResult(NamedTuple):
    """``(U, S, Vh)``, as NumPy's."""

    U: Tensor
    S: Tensor
    Vh: Tensor


class QRResult(NamedTuple):
    """``(Q, R)``, as NumPy's."""

    Q: Tensor
    R: Tensor


def solve(a: Any, b: Any) -> Tensor:
    """Solve ``a @ x = b`` (as ``np.linalg.solve``, batched).

    ``b`` is a vector (or a stack of vectors matching ``a``'s batch) only when ``b.ndim == 1``,
    NumPy 2's rule; otherwise it is a (stack of) matrix. The derivative is the implicit rule
    b̄ = A⁻ᵀ ḡ, Ā = −b̄ xᵀ and ẋ = A⁻¹(ḃ − Ȧ x), never through the factorisation.

    Examples
    --------
    >>> import autodiffx as ad
    >>> a = ad.tensor([[2.0, 0.0], [0.0, 4.0]], requires_grad=True)
    >>> x = ad.linalg.solve(a, ad.tensor([2.0, 2.0]))
    >>> x
    tensor([1. , 0.5], grad_fn=<solve>)
    >>> x.sum().backward()
    >>> a.grad
    tensor([[-0.5  , -0.25 ],
            [-0.25 , -0.125]])
    """
    return solve_(a, b)


def inv(a: Any) -> Tensor:
    """Inverse of a (stack of) square matrix; Ā = −A⁻ᵀ Ḡ A⁻ᵀ.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.linalg.inv(ad.tensor([[2.0, 0.0], [0.0, 4.0]]))
    tensor([[0.5 , 0.  ],
            [0.  , 0.25]])
    """
    return inv_(a)


def det(a: Any) -> Tensor:
    """Determinant of a (stack of) square matrix; Ā = ḡ det(A) A⁻ᵀ.

    The derivative uses A⁻¹, so at an exactly singular matrix it raises ``LinAlgError``
    (the true derivative there is the adjugate); use ``slogdet`` for large matrices.

    Examples
    --------
    >>> import autodiffx as ad
    >>> a = ad.tensor([[2.0, 1.0], [1.0, 3.0]], requires_grad=True)
    >>> d = ad.linalg.det(a)
    >>> d.backward()
    >>> round(d.item(), 12), a.grad
    (5.0, tensor([[ 3., -1.],
            [-1.,  2.]]))
    """
    return det_(a)


def slogdet(a: Any) -> SlogdetResult:
    """Sign and natural log of the absolute determinant (as ``np.linalg.slogdet``).

    ``logabsdet`` is differentiable (gradient A⁻ᵀ); ``sign`` is piecewise constant (zero
    derivative). Derivatives for complex input are not implemented.

    Examples
    --------
    >>> import autodiffx as ad
    >>> sign, logdet = ad.linalg.slogdet(ad.tensor([[2.0, 0.0], [0.0, -3.0]]))
    >>> sign, logdet
    (tensor(-1.), tensor(1.79175947))
    """
    return SlogdetResult(*slogdet_(a))


def cholesky(a: Any, /, *, upper: bool = False) -> Tensor:
    """Cholesky factor of a symmetric (Hermitian) positive definite matrix, lower by default.

    NumPy reads only the lower triangle; the derivative treats the input as symmetric, so the
    gradient is symmetric and the tangent of ``a`` is symmetrised (``(Ȧ + Ȧᵀ)/2``).
    A matrix that is not positive definite raises ``LinAlgError`` naming ``cholesky``.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.linalg.cholesky(ad.tensor([[4.0, 2.0], [2.0, 2.0]]))
    tensor([[2., 0.],
            [1., 1.]])
    """
    factor = cholesky_(a)
    if not upper:
        return factor
    return _mT(np.conj(factor) if factor.dtype.kind == "c" else factor)


def eigh(a: Any, UPLO: str = "L") -> EighResult:
    """Eigenvalues (ascending) and eigenvectors of a symmetric (Hermitian) matrix.

    Only the ``UPLO`` triangle is read; derivatives treat the input as symmetric
    (Hermitian). Eigenvectors are defined up to sign (a phase e^{iφ}, for complex input), so
    only sign (phase) invariant functions of them have a derivative; with complex input, a
    loss that depends on the phase raises ``RuntimeError`` in reverse mode (forward mode keeps
    diag(Vᴴ dV) = 0). At repeated eigenvalues the eigenvector derivative is infinite
    (NaN/inf); a loss using only the eigenvalues stays finite (or use ``eigvalsh``).

    Examples
    --------
    >>> import autodiffx as ad
    >>> a = ad.tensor([[2.0, 1.0], [1.0, 2.0]], requires_grad=True)
    >>> w, v = ad.linalg.eigh(a)
    >>> w
    tensor([1., 3.], grad_fn=<eigh>)
    >>> w[1].backward()
    >>> a.grad
    tensor([[0.5, 0.5],
            [0.5, 0.5]])
    """
    return EighResult(*eigh_(a, UPLO=UPLO))


def eigvalsh(a: Any, UPLO: str = "L") -> Tensor:
    """Eigenvalues (ascending) of a symmetric matrix; gradient V diag(w̄) Vᵀ.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.linalg.eigvalsh(ad.tensor([[2.0, 1.0], [1.0, 2.0]]))
    tensor([1., 3.])
    """
    return eigvalsh_(a, UPLO=UPLO)


def svd(
    a: Any, full_matrices: bool = True, compute_uv: bool = True, hermitian: bool = False
) -> Any:
    """Singular value decomposition (as ``np.linalg.svd``): ``(U, S, Vh)``, or ``S``.

    Derivatives of U and Vh of a non-square matrix need ``full_matrices=False`` (the
    extra columns are not unique): asking for them with ``full_matrices=True`` raises.
    ``compute_uv=False`` gives the singular values with gradient U diag(s̄) Vᵀ. U and V are
    defined up to simultaneous sign flips (phases e^{iφ}, for complex input), so only
    invariant functions of them have a derivative: with complex input, a loss that depends
    on the phases raises ``RuntimeError`` in reverse mode (forward mode uses JAX's gauge, see
    docs/conventions.md). At repeated or zero singular values the U, V derivatives are
    infinite.

    Examples
    --------
    >>> import autodiffx as ad
    >>> a = ad.tensor([[3.0, 0.0], [0.0, -2.0]], requires_grad=True)
    >>> s = ad.linalg.svd(a, compute_uv=False)
    >>> s
    tensor([3., 2.], grad_fn=<svdvals>)
    >>> s.sum().backward()
    >>> a.grad
    tensor([[ 1.,  0.],
            [ 0., -1.]])
    """
    if not compute_uv:
        return svdvals_(a, hermitian=hermitian)
    shape = np.shape(a)
    if full_matrices and len(shape) >= 2 and shape[-1] != shape[-2] and _tracked(a):
        raise ValueError(
            f"svd: derivatives of a non-square SVD (shape {shape}) need full_matrices=False "
            "(the extra columns of the full U or V are not unique)"
        )
    return SVDResult(*svd_(a, full_matrices=full_matrices, hermitian=hermitian))


def svdvals(x: Any, /) -> Tensor:
    """Singular values, descending (as ``np.linalg.svdvals``); gradient U diag(s̄) Vᵀ.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.linalg.svdvals(ad.tensor([[0.0, 2.0], [1.0, 0.0]]))
    tensor([2., 1.])
    """
    return svdvals_(x)


def qr(a: Any, mode: str = "reduced") -> Any:
    """QR decomposition (as ``np.linalg.qr``): ``(Q, R)``, or ``R`` for ``mode='r'``.

    Differentiable for ``mode='reduced'`` (tall, square and wide matrices) and ``'r'``, and
    for ``'complete'`` when ``a`` is not tall, real or complex (R's diagonal is real, as
    LAPACK makes it). ``'raw'`` is not differentiable. R must have a nonzero diagonal (full
    rank).

    Examples
    --------
    >>> import autodiffx as ad
    >>> q, r = ad.linalg.qr(ad.tensor([[3.0, 1.0], [4.0, 2.0]]))
    >>> r
    tensor([[-5. , -2.2],
            [ 0. ,  0.4]])
    """
    if mode == "raw":
        if _tracked(a):
            raise ValueError("qr: mode='raw' is not differentiable; use mode='reduced'")
        h, tau = np.linalg.qr(np.asarray(a), mode="raw")
        return Tensor(h), Tensor(tau)
    if mode == "r":
        return qr_(a, mode="reduced")[1]
    if mode not in ("reduced", "complete"):
        raise ValueError(f"qr: unrecognized mode {mode!r}")
    shape = np.shape(a)
    if mode == "complete" and len(shape) >= 2 and shape[-2] > shape[-1] and _tracked(a):
        raise ValueError(
            f"qr: derivatives of mode='complete' for a tall matrix (shape {shape}) are not "
            "defined (the extra columns of Q are not unique); use mode='reduced'"
        )
    return QRResult(*qr_(a, mode=mode))


def pinv(a: Any, rcond: Any = None, hermitian: bool = False, *, rtol: Any = None) -> Tensor:
    """Moore–Penrose pseudo-inverse (as ``np.linalg.pinv``, batched).

    The derivative (Golub & Pereyra 1973) holds where the rank is locally constant; at a
    rank-deficient matrix it is the derivative along perturbations that keep the rank.

    Examples
    --------
    >>> import autodiffx as ad
    >>> ad.linalg.pinv(ad.tensor([[1.0], [1.0]]))
    tensor([[0.5, 0.5]])
    """
    params: dict[str, Any] = {"hermitian": hermitian}
    if rcond is not None:
        params["rcond"] = rcond
    if rtol is not None:
        params["rtol"] = rtol
    return pinv_(a, **params)


def lstsq(a: Any, b: Any, rcond: Any = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Least-squares solution of ``a @ x ≈ b`` (as ``np.linalg.lstsq``).

    Returns ``(x, residuals, rank, s)`` with NumPy's values. ``x``, the residuals and the
    singular values are differentiable (x through the pseudo-inverse, where the rank is
    locally constant); ``rank`` is an integer tensor.

    Examples
    --------
    >>> import autodiffx as ad
    >>> a = ad.tensor([[1.0, 0.0], [1.0, 1.0], [1.0, 2.0]])
    >>> x, res, rank, s = ad.linalg.lstsq(a, ad.tensor([1.0, 2.0, 4.0]))
    >>> x, res, int(rank)
    (tensor([0.83333333, 1.5       ]), tensor([0.16666667]), 2)
    """
    return lstsq_(a, b, rcond=rcond)


_OVERRIDES = {
    np.linalg.solve: solve,
    np.linalg.inv: inv,
    np.linalg.det: det,
    np.linalg.slogdet: slogdet,
    np.linalg.cholesky: cholesky,
    np.linalg.eigh: eigh,
    np.linalg.eigvalsh: eigvalsh,
    np.linalg.svd: svd,
    np.linalg.svdvals: svdvals,
    np.linalg.qr: qr,
    np.linalg.pinv: pinv,
    np.linalg.lstsq: lstsq,
}
FUNCTION_MAP.update(_OVERRIDES)
