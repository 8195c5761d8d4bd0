"""Generic checks of every primitive, each written once and run on every OpSpec row.

1 forward == NumPy (value, dtype incl. NEP 50, shape); 2 VJP vs central differences by
the inner product <u, J v> = <J^T u, v>; 3 JVP vs central differences; 4 VJP and JVP agree
to ~1e-12; 5 second order (reverse-over-reverse, forward-over-reverse, reverse-over-forward,
forward-over-forward); 6 gradients have each input's shape and dtype; 7 inputs and
cotangents are read-only; 8 non-differentiable arguments and ops; 9 Hypothesis-drawn
broadcastable shapes and reduction axes; 10 batched inputs; 11 vectorized Jacobians (a batch
of cotangents or tangents in one pass equals the stack of single passes, to first and second
order). Plus the completeness guard.

Complex numbers follow the JAX convention: the VJP is the plain transpose of the JVP with
respect to the real pairing <a, b> = Re(sum(a * b)) (no conjugation).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest
import strategies as S
from hypothesis import given
from hypothesis import strategies as st
from op_specs import OPSPECS, ROWS, Case, OpSpec

import autodiffx as ad
from autodiffx import REGISTRY
from autodiffx.fd import directional
from autodiffx.forward import dual_level, make_dual, unpack_dual

Tensor = ad.Tensor
EXACT = 1e-12  # relative tolerance of identities that involve no finite differences
LIVE = [r for r in ROWS if r.name in REGISTRY]
DIFF = [r for r in LIVE if not r.nondiff]
SMOOTH = [r for r in DIFF if not r.zero_deriv]


def _ids(rows: Sequence[OpSpec]) -> list[Any]:
    return [pytest.param(r, id=r.name) for r in rows]


def _with_dtypes(rows: Sequence[OpSpec]) -> list[Any]:
    out = [pytest.param(r, np.float64, id=r.name) for r in rows]
    out += [pytest.param(r, np.complex128, id=f"{r.name}-complex") for r in rows if r.complex]
    return out


def _exempt(spec: OpSpec, check: str) -> None:
    if check in spec.exempt:
        pytest.skip(f"{spec.name}: {spec.exempt[check]}")


# ----- points: concrete arguments of one case ----------------------------------------------
@dataclasses.dataclass
class Point:
    """The arguments of one call: ``args`` positional (arrays, Consts' values), ``diff`` the
    positions that are differentiated, ``params`` the keyword arguments."""

    spec: OpSpec
    args: list[Any]
    diff: list[int]
    params: dict[str, Any]

    @property
    def xs(self) -> list[np.ndarray]:
        return [self.args[i] for i in self.diff]

    def __repr__(self) -> str:
        shapes = [getattr(a, "shape", a) for a in self.args]
        return f"{self.spec.name}(shapes={shapes}, params={self.params})"


def make_point(
    spec: OpSpec,
    case: Case,
    rng: np.random.Generator,
    dtype: Any = np.float64,
    dtypes: Sequence[Any] | None = None,
    shapes: Sequence[Any] | None = None,
) -> Point:
    """Draw the arguments of ``case`` (``dtypes`` per differentiable argument if given)."""
    args, diff = [], []
    shapes = case.shapes if shapes is None else shapes
    k = 0
    for i, shape in enumerate(shapes):
        dom = spec.arg(case, i)
        if isinstance(dom, S.Const):
            args.append(dom.value)
            continue
        if not dom.differentiable or i in spec.nondiff_args:
            args.append(dom.sample(rng, shape, np.float64))
            continue
        dt = dtypes[k] if dtypes is not None else dtype
        k += 1
        args.append(dom.sample(rng, shape, dt))
        diff.append(i)
    return Point(spec, args, diff, dict(case.params))


def apply_op(spec: OpSpec, args: Sequence[Any], params: dict[str, Any]) -> tuple[Any, ...]:
    """Apply the primitive; the result as a tuple of outputs."""
    prim = REGISTRY[spec.name]
    out = spec.call(prim, *args, **params) if spec.call else prim(*args, **params)
    return tuple(out) if isinstance(out, tuple | list) else (out,)


def reference(spec: OpSpec, args: Sequence[Any], params: dict[str, Any]) -> tuple[Any, ...]:
    """The NumPy result as a tuple of arrays."""
    out = spec.reference()(*args, **params)
    return tuple(out) if isinstance(out, tuple | list) else (out,)


# ----- functions of tensors, and their lifts to first derivatives --------------------------
# A TFun maps a list of inputs (Tensors or arrays) to a tuple of output Tensors.
TFun = Callable[[Sequence[Any]], Sequence[Any]]


def op_fun(p: Point) -> TFun:
    """The op as a function of its differentiable arguments."""

    def f(ts: Sequence[Any]) -> tuple[Any, ...]:
        args = list(p.args)
        for i, t in zip(p.diff, ts, strict=True):
            args[i] = t
        return apply_op(p.spec, args, p.params)

    return f


def _floating(outs: Sequence[Any]) -> list[Any]:
    return [o for o in outs if o.dtype.kind in "fc"]


def _zeros_t(x: Any) -> Tensor:
    return Tensor(np.zeros(x.shape, x.dtype))


def _grads(outs: Sequence[Any], ins: Sequence[Any], us: Sequence[Any], create_graph=False):
    """VJP of ``outs`` w.r.t. ``ins`` with cotangents ``us`` (zeros for unused inputs)."""
    pairs = [(o, u) for o, u in zip(outs, us, strict=True) if o.requires_grad]
    if not pairs:
        return [_zeros_t(x) for x in ins]
    gs = ad.autograd.grad(
        [o for o, _ in pairs],
        list(ins),
        grad_outputs=[u for _, u in pairs],
        create_graph=create_graph,
        allow_unused=True,
    )
    return [g if g is not None else _zeros_t(x) for g, x in zip(gs, ins, strict=True)]


def rev(f: TFun, n: int) -> TFun:
    """x, u -> J(x)^T u, recorded (create_graph=True) so that it can be differentiated."""

    def g(ts: Sequence[Any]) -> list[Any]:
        xs, us = ts[:n], ts[n:]
        return _grads(_floating(f(xs)), xs, us, create_graph=True)

    return g


def fwd(f: TFun, n: int) -> TFun:
    """x, v -> J(x) v by forward mode (dual numbers), recorded when x or v require grad."""

    def g(ts: Sequence[Any]) -> list[Any]:
        xs, vs = ts[:n], ts[n:]
        with dual_level():
            outs = _floating(f([make_dual(x, v) for x, v in zip(xs, vs, strict=True)]))
            tans = [unpack_dual(o).tangent for o in outs]
        return [t if t is not None else _zeros_t(o) for t, o in zip(tans, outs, strict=True)]

    return g


def rand_like(rng: np.random.Generator, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """A read-only standard normal array (complex: independent real and imaginary parts)."""
    x = rng.standard_normal(shape)
    if np.dtype(dtype).kind == "c":
        x = x + 1j * rng.standard_normal(shape)
    return S.readonly(np.asarray(x, dtype=dtype))


def evaluate(f: TFun, xs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The floating outputs of ``f`` at ``xs`` as arrays (inputs require grad: lifts need it)."""
    outs = f([Tensor(x, requires_grad=True) for x in xs])
    return [np.asarray(o.data) for o in _floating(outs)]


def lifted_point(f: TFun, xs: list[np.ndarray], rng: np.random.Generator, kind: str):
    """Inputs of ``rev(f)`` (xs + one cotangent per output) or ``fwd(f)`` (xs + tangents)."""
    if kind == "rev":
        outs = evaluate(f, xs)
        return xs + [rand_like(rng, o.shape, o.dtype) for o in outs]
    return xs + [rand_like(rng, x.shape, x.dtype) for x in xs]


# ----- tolerances --------------------------------------------------------------------------
def _low_precision(arrays: Sequence[Any]) -> bool:
    return any(np.asarray(a).dtype in (np.float32, np.complex64) for a in arrays)


def _loosen(rtol: float, atol: float, arrays: Sequence[Any]) -> tuple[float, float]:
    """Tolerances for results that went through float32 (rounding ~6e-8, FD noise ~1e-4)."""
    if _low_precision(arrays):
        return (max(rtol, 1e-5), max(atol, 1e-6)) if rtol <= EXACT else (2e-3, 1e-5)
    return rtol, atol


def _pair(a: Any, b: Any) -> float:
    """The real pairing Re(sum(a * b)) (JAX's convention: no conjugation)."""
    return float(np.real(np.sum(np.asarray(a) * np.asarray(b))))


def _mag(a: Any, b: Any) -> float:
    return float(np.sum(np.abs(np.asarray(a)) * np.abs(np.asarray(b))))


def _close_pairing(lhs: float, rhs: float, scale: float, rtol: float, atol: float, what: str):
    assert abs(lhs - rhs) <= atol + rtol * scale, (
        f"{what}: <u, J v> = {lhs!r} but <J^T u, v> = {rhs!r} "
        f"(difference {abs(lhs - rhs):.3g}, scale {scale:.3g}, rtol {rtol:g})"
    )


# ----- the checks --------------------------------------------------------------------------
def check_vjp(f: TFun, xs: list[np.ndarray], rng, rtol, atol, wrt=None, what="VJP") -> None:
    """<u, J v> by central differences equals <J^T u, v> by reverse mode."""
    wrt = list(range(len(xs))) if wrt is None else list(wrt)
    ts = [Tensor(x, requires_grad=True) if i in wrt else x for i, x in enumerate(xs)]
    outs = _floating(f(ts))
    us = [rand_like(rng, o.shape, o.dtype) for o in outs]
    gs = [np.asarray(g.data) for g in _grads(outs, [ts[i] for i in wrt], us)]
    vs = [rand_like(rng, xs[i].shape, xs[i].dtype) for i in wrt]

    def raw(*ys: np.ndarray) -> list[np.ndarray]:
        args: list[Any] = list(xs)
        for i, y in zip(wrt, ys, strict=True):
            args[i] = Tensor(y, requires_grad=True)
        return [np.asarray(o.data) for o in _floating(f(args))]

    jv = directional(raw, [xs[i] for i in wrt], vs)
    rtol, atol = _loosen(rtol, atol, xs + us)
    lhs = sum(_pair(u, j) for u, j in zip(us, jv, strict=True))
    rhs = sum(_pair(g, v) for g, v in zip(gs, vs, strict=True))
    scale = sum(_mag(u, j) for u, j in zip(us, jv, strict=True)) + sum(
        _mag(g, v) for g, v in zip(gs, vs, strict=True)
    )
    _close_pairing(lhs, rhs, scale, rtol, atol, f"{what} w.r.t. inputs {wrt}")


def jvp_of(f: TFun, xs: Sequence[np.ndarray], vs: Sequence[np.ndarray], requires_grad=False):
    """Output tangents of ``f`` at ``xs`` along ``vs`` (zeros where an output has none)."""
    with dual_level():
        duals = [
            make_dual(Tensor(x, requires_grad=requires_grad), Tensor(v))
            for x, v in zip(xs, vs, strict=True)
        ]
        outs = _floating(f(duals))
        tans = [unpack_dual(o).tangent for o in outs]
    return outs, [
        np.zeros(o.shape, o.dtype) if t is None else np.asarray(t.data)
        for t, o in zip(tans, outs, strict=True)
    ]


def check_jvp(f: TFun, xs: list[np.ndarray], rng, rtol, atol, requires_grad=False, what="JVP"):
    """Forward-mode tangents equal central differences, element by element."""
    vs = [rand_like(rng, x.shape, x.dtype) for x in xs]
    _outs, tans = jvp_of(f, xs, vs, requires_grad)
    jv = directional(lambda *ys: evaluate(f, ys), xs, vs)
    rtol, atol = _loosen(rtol, atol, [*xs, *tans])
    scale = max([1.0] + [float(np.max(np.abs(j), initial=0.0)) for j in jv])
    for k, (t, j) in enumerate(zip(tans, jv, strict=True)):
        assert t.shape == j.shape, f"{what}: tangent {k} has shape {t.shape}, expected {j.shape}"
        err = float(np.max(np.abs(t - j), initial=0.0))
        assert err <= atol + rtol * scale, (
            f"{what}: output {k} tangent differs from central differences by {err:.3g} "
            f"(scale {scale:.3g})\nJVP:\n{t}\nFD:\n{j}"
        )


def check_agree(f: TFun, xs: list[np.ndarray], rng, rtol, atol, what="VJP/JVP") -> None:
    """<u, jvp(v)> == <vjp(u), v> with no finite differences involved."""
    vs = [rand_like(rng, x.shape, x.dtype) for x in xs]
    outs, tans = jvp_of(f, xs, vs, requires_grad=True)
    ts = [Tensor(x, requires_grad=True) for x in xs]
    outs = _floating(f(ts))
    us = [rand_like(rng, o.shape, o.dtype) for o in outs]
    gs = [np.asarray(g.data) for g in _grads(outs, ts, us)]
    rtol, atol = _loosen(rtol, atol, xs + us)
    lhs = sum(_pair(u, t) for u, t in zip(us, tans, strict=True))
    rhs = sum(_pair(g, v) for g, v in zip(gs, vs, strict=True))
    scale = sum(_mag(u, t) for u, t in zip(us, tans, strict=True)) + sum(
        _mag(g, v) for g, v in zip(gs, vs, strict=True)
    )
    _close_pairing(lhs, rhs, scale, rtol, atol, what)


def _points(spec: OpSpec, rng, dtype=np.float64) -> list[Point]:
    if np.dtype(dtype).kind == "c" and "complex" in spec.exempt:
        return []
    return [make_point(spec, c, rng, dtype) for c in spec.cases]


# ----- 0. completeness guard ---------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_primitive_has_a_row(name):
    assert name in OPSPECS, f"add an OpSpec row for {name!r} in tests/op_specs.py"


@pytest.mark.parametrize("spec", _ids(ROWS))
def test_row_matches_registry(spec):
    if spec.name not in REGISTRY:
        assert spec.pending, f"OpSpec row {spec.name!r} names no registered primitive"
        pytest.skip(f"{spec.name!r} is not registered yet (pending row)")
    prim = REGISTRY[spec.name]
    assert spec.nondiff == (prim.vjp is None), "nondiff flag disagrees with the registry"
    assert spec.zero_deriv == (prim.kind == "zero"), "zero_deriv flag disagrees"
    assert set(spec.nondiff_args) == set(prim.nondiff), "nondiff_args disagree"
    assert spec.cases, "a row needs at least one case"


# ----- 1. forward --------------------------------------------------------------------------
def _assert_same(got: tuple[Any, ...], want: tuple[Any, ...], rtol: float, what: str) -> None:
    assert len(got) == len(want), f"{what}: {len(got)} outputs, NumPy gives {len(want)}"
    for k, (g, w) in enumerate(zip(got, want, strict=True)):
        assert isinstance(g, Tensor), f"{what}: output {k} is {type(g).__name__}, not a Tensor"
        w = np.asarray(w)
        assert g.shape == w.shape, f"{what}: output {k} shape {g.shape}, NumPy {w.shape}"
        assert g.dtype == w.dtype, f"{what}: output {k} dtype {g.dtype}, NumPy {w.dtype}"
        if w.dtype.kind in "fc":
            np.testing.assert_allclose(g.data, w, rtol=rtol, atol=1e-14, err_msg=what)
        else:
            np.testing.assert_array_equal(g.data, w, err_msg=what)


def _tensors(p: Point, requires_grad: bool = False) -> list[Any]:
    args = list(p.args)
    for i, a in enumerate(args):
        if isinstance(a, np.ndarray):
            args[i] = Tensor(a, requires_grad=requires_grad and i in p.diff)
    return args


@pytest.mark.parametrize(("spec", "dtype"), _with_dtypes(LIVE))
def test_forward_matches_numpy(spec, dtype, rng):
    for p in _points(spec, rng, dtype):
        got = apply_op(spec, _tensors(p, requires_grad=True), p.params)
        _assert_same(got, reference(spec, p.args, p.params), 1e-13, repr(p))


@pytest.mark.parametrize("spec", _ids([r for r in LIVE if r.float32]))
def test_forward_float32_and_weak_scalars(spec, rng):
    """float32 stays float32, also with a Python float (NEP 50), exactly as NumPy decides."""
    for p in _points(spec, rng, np.float32):
        got = apply_op(spec, _tensors(p), p.params)
        _assert_same(got, reference(spec, p.args, p.params), 2e-6, f"float32 {p!r}")
        if not spec.weak_scalars:
            continue
        for i in p.diff:
            if p.args[i].ndim:  # replace a 0-d argument's place by a Python float
                continue
            args = list(p.args)
            args[i] = float(args[i])
            q = Point(spec, args, p.diff, p.params)
            got = apply_op(spec, _tensors(q), q.params)
            _assert_same(got, reference(spec, args, q.params), 2e-6, f"weak scalar {q!r}")


# ----- 2-4. first order --------------------------------------------------------------------
@pytest.mark.parametrize(("spec", "dtype"), _with_dtypes(DIFF))
def test_vjp_matches_finite_differences(spec, dtype, rng):
    for p in _points(spec, rng, dtype):
        if spec.zero_deriv:
            _check_zero_vjp(p, rng)
            continue
        f, xs, rtol, atol = op_fun(p), p.xs, spec.rtol, spec.atol
        check_vjp(f, xs, rng, rtol, atol, what=f"VJP {p!r}")
        if len(xs) > 1:  # one input requiring grad at a time: rules must honour `needs`
            for i in range(len(xs)):
                check_vjp(f, xs, rng, rtol, atol, wrt=[i], what=f"VJP {p!r}")


def _check_zero_vjp(p: Point, rng) -> None:
    ts = [Tensor(x, requires_grad=True) for x in p.xs]
    outs = _floating(op_fun(p)(ts))
    us = [rand_like(rng, o.shape, o.dtype) for o in outs]
    for g, x in zip(_grads(outs, ts, us), p.xs, strict=True):
        assert g.shape == x.shape
        assert not np.any(g.data), f"{p!r}: the gradient of a piecewise-constant op must be 0"
    _, tans = jvp_of(op_fun(p), p.xs, [rand_like(rng, x.shape, x.dtype) for x in p.xs])
    assert not any(np.any(t) for t in tans), f"{p!r}: the tangent must be zero"


@pytest.mark.parametrize(("spec", "dtype"), _with_dtypes(SMOOTH))
def test_jvp_matches_finite_differences(spec, dtype, rng):
    for p in _points(spec, rng, dtype):
        check_jvp(op_fun(p), p.xs, rng, spec.rtol, spec.atol, what=f"JVP {p!r}")


@pytest.mark.parametrize(("spec", "dtype"), _with_dtypes(SMOOTH))
def test_vjp_and_jvp_agree(spec, dtype, rng):
    for p in _points(spec, rng, dtype):
        f, xs = op_fun(p), p.xs
        check_agree(f, xs, rng, EXACT, 1e-13, what=f"VJP/JVP {p!r}")
        if spec.order >= 2:
            ys = lifted_point(f, xs, rng, "rev")
            check_agree(rev(f, len(xs)), ys, rng, EXACT, 1e-13, what=f"2nd-order VJP/JVP {p!r}")


# ----- 5. second order ---------------------------------------------------------------------
SECOND_ORDER = ["rev_over_rev", "fwd_over_rev", "rev_over_fwd", "fwd_over_fwd"]


@pytest.mark.parametrize("mode", SECOND_ORDER)
@pytest.mark.parametrize(("spec", "dtype"), _with_dtypes([r for r in SMOOTH if r.order >= 2]))
def test_second_order(spec, dtype, mode, rng):
    """The first-order maps x, u -> J^T u and x, v -> J v, themselves checked as functions."""
    _exempt(spec, mode)
    outer, inner = mode.split("_over_")
    for p in _points(spec, rng, dtype):
        f, xs = op_fun(p), p.xs
        n = len(xs)
        g = rev(f, n) if inner == "rev" else fwd(f, n)
        ys = lifted_point(f, xs, rng, inner)
        rtol, atol, what = spec.rtol, spec.atol, f"{mode} {p!r}"
        if outer == "rev":
            check_vjp(g, ys, rng, rtol, atol, what=what)
        else:
            check_jvp(g, ys, rng, rtol, atol, requires_grad=inner == "rev", what=what)


@pytest.mark.parametrize("spec", _ids([r for r in SMOOTH if r.order >= 2]))
def test_hvp_pair_rules_match_dual_evaluation(spec, rng):
    """ad.hvp's raw forward-over-reverse (tangent sweep, pair rules: linear, multilinear,
    elementwise second derivatives, dual fallback) equals jvp(grad) on dual Tensors."""
    _exempt(spec, "fwd_over_rev")
    for p in _points(spec, rng):
        f, xs = op_fun(p), p.xs
        weights = [rand_like(rng, o.shape, o.dtype) for o in evaluate(f, xs)]
        if any(w.dtype.kind == "c" for w in weights):
            continue

        def s(*ts, f=f, weights=weights):
            outs = _floating(f(list(ts)))
            return sum((ad.sum(o * w) for o, w in zip(outs, weights, strict=True)), 0.0)

        vs = [rand_like(rng, x.shape, x.dtype) for x in xs]
        _, hv = ad.hvp(s, tuple(xs), tuple(vs))
        nums = tuple(range(len(xs)))
        _, ref = ad.jvp(ad.grad(s, argnums=nums), tuple(xs), tuple(vs))
        hv = hv if isinstance(hv, tuple) else (hv,)
        for got, want in zip(hv, ref, strict=True):
            assert got.shape == want.shape and got.dtype == want.dtype, repr(p)
            scale = max(1.0, float(np.max(np.abs(want.data), initial=0.0)))
            np.testing.assert_allclose(got.data, want.data, rtol=1e-11, atol=1e-12 * scale)


# ----- 6. shapes and dtypes of derivatives -------------------------------------------------
def _dtype_variants(spec: OpSpec, p: Point) -> list[list[Any]]:
    n = len(p.diff)
    out = [[np.float64] * n]
    if spec.float32:
        out.append([np.float32] * n)
        if n > 1:
            out.append([np.float32] + [np.float64] * (n - 1))
    if spec.complex and "complex" not in spec.exempt:
        out.append([np.complex128] * n)
    return out


@pytest.mark.parametrize("spec", _ids(DIFF))
def test_gradients_have_input_shape_and_dtype(spec, rng):
    for case in spec.cases:
        base = make_point(spec, case, rng)
        for dts in _dtype_variants(spec, base):
            p = make_point(spec, case, rng, dtypes=dts)
            ts = [Tensor(x, requires_grad=True) for x in p.xs]
            outs = _floating(op_fun(p)(ts))
            us = [rand_like(rng, o.shape, o.dtype) for o in outs]
            for g, x in zip(_grads(outs, ts, us), p.xs, strict=True):
                assert isinstance(g, Tensor)
                assert (g.shape, g.dtype) == (x.shape, x.dtype), (
                    f"{p!r} {dts}: gradient {g.dtype}{list(g.shape)} for input "
                    f"{x.dtype}{list(x.shape)}"
                )
            if len(outs) == 1:  # .backward() accumulates with the same shape and dtype
                _floating(op_fun(p)(ts))[0].backward(gradient=us[0])
                for t, x in zip(ts, p.xs, strict=True):
                    assert t.grad is not None
                    assert (t.grad.shape, t.grad.dtype) == (x.shape, x.dtype)
            outs, tans = jvp_of(op_fun(p), p.xs, [rand_like(rng, x.shape, x.dtype) for x in p.xs])
            for o, t in zip(outs, tans, strict=True):
                assert (t.shape, t.dtype) == (o.shape, o.dtype), f"{p!r} {dts}: tangent"


# ----- 7. rules never write to their inputs ------------------------------------------------
@pytest.mark.parametrize("spec", _ids(DIFF))
def test_rules_leave_inputs_and_cotangents_untouched(spec, rng):
    """Every array given to an op or a rule is read-only, so a write raises; values stay."""
    for p in _points(spec, rng):
        xs = p.xs
        saved = [x.copy() for x in xs]
        assert all(not x.flags.writeable for x in xs)
        ts = [Tensor(x, requires_grad=True) for x in xs]
        outs = _floating(op_fun(p)(ts))
        us = [rand_like(rng, o.shape, o.dtype) for o in outs]
        us_saved = [u.copy() for u in us]
        gs = _grads(outs, ts, us, create_graph=spec.order >= 2)
        if spec.order >= 2:
            _grads(_floating(gs), ts, [rand_like(rng, x.shape, x.dtype) for x in xs])
        jvp_of(op_fun(p), xs, [rand_like(rng, x.shape, x.dtype) for x in xs], requires_grad=True)
        for a, b in zip(xs + us, saved + us_saved, strict=True):
            np.testing.assert_array_equal(a, b)


# ----- 8. non-differentiable ops and arguments ---------------------------------------------
@pytest.mark.parametrize("spec", _ids(LIVE))
def test_non_differentiable_ops_and_arguments(spec, rng):
    prim = REGISTRY[spec.name]
    for p in _points(spec, rng):
        outs = apply_op(spec, _tensors(p, requires_grad=True), p.params)
        for o in outs:
            if spec.nondiff or o.dtype.kind not in "fc" or not p.diff:
                assert not o.requires_grad, f"{p!r}: output requires grad"
                assert o.grad_fn is None, f"{p!r}: output records"
            else:
                assert o.requires_grad, f"{p!r}: output does not require grad"
                assert o.grad_fn is not None, f"{p!r}: output not recorded"
                if spec.call is None:  # (a wrapped call may end in another op)
                    assert o.grad_fn.name == spec.name
        if spec.nondiff and p.diff:
            with dual_level():
                args = list(p.args)
                for i in p.diff:
                    args[i] = make_dual(Tensor(args[i]), Tensor(np.ones_like(args[i])))
                for o in apply_op(spec, args, p.params):
                    assert unpack_dual(o).tangent is None, f"{p!r}: a tangent on {o.dtype}"
        if spec.nondiff_args:
            # The rule returns a symbolic zero (None) for arguments it never differentiates.
            datas = list(p.args)
            outs_raw = tuple(o.data for o in outs)
            out = outs_raw[0] if len(outs_raw) == 1 else outs_raw
            g = np.ones_like(out) if len(outs_raw) == 1 else tuple(map(np.ones_like, outs_raw))
            cts = prim.vjp(tuple([True] * len(datas)), g, out, datas, p.params)
            for i in spec.nondiff_args:  # a shorter tuple also means None
                assert i >= len(cts) or cts[i] is None, f"{p!r}: the rule differentiates arg {i}"
            # Through the engine, a float tensor in that position gets no gradient.
            arrays = [
                i
                for i in spec.nondiff_args
                if i < len(p.args) and isinstance(p.args[i], np.ndarray)
            ]
            if not arrays:
                continue
            args = _tensors(p, requires_grad=True)
            i0 = arrays[0]
            c = Tensor(np.asarray(p.args[i0], dtype=np.float64), requires_grad=True)
            args[i0] = c
            o = apply_op(spec, args, p.params)[0]
            (gc,) = ad.autograd.grad(o, [c], grad_outputs=[np.ones(o.shape)], allow_unused=True)
            assert gc is None or not np.any(gc.data), f"{p!r}: gradient for a non-diff argument"


# ----- 9. Hypothesis: broadcastable shapes and reduction axes ------------------------------
def _drawn_point(spec: OpSpec, data: Any, shapes: Sequence[Any], params: dict) -> Point:
    case = Case(tuple(shapes), params)
    args, diff = [], []
    for i, shape in enumerate(shapes):
        dom = spec.arg(case, i)
        args.append(data.draw(dom.strategy(shape), label=f"arg{i}"))
        if dom.differentiable and i not in spec.nondiff_args:
            diff.append(i)
    return Point(spec, args, diff, params)


def _hypothesis_checks(spec: OpSpec, p: Point, seed: int) -> None:
    rng = np.random.default_rng(seed)
    got = apply_op(spec, _tensors(p), p.params)
    _assert_same(got, reference(spec, p.args, p.params), 1e-13, repr(p))
    if spec.nondiff:
        return
    if spec.zero_deriv:
        _check_zero_vjp(p, rng)
        return
    f, xs = op_fun(p), p.xs
    check_vjp(f, xs, rng, spec.rtol, spec.atol, what=f"VJP {p!r}")
    check_jvp(f, xs, rng, spec.rtol, spec.atol, what=f"JVP {p!r}")
    check_batched_vjp(f, xs, rng, f"batched VJP {p!r}")
    check_batched_jvp(f, xs, rng, f"batched JVP {p!r}")
    ts = [Tensor(x, requires_grad=True) for x in xs]
    outs = _floating(f(ts))
    for g, x in zip(
        _grads(outs, ts, [rand_like(rng, o.shape, o.dtype) for o in outs]), xs, strict=True
    ):
        assert (g.shape, g.dtype) == (x.shape, x.dtype), f"{p!r}: gradient shape or dtype"


@pytest.mark.parametrize(
    "spec", _ids([r for r in LIVE if r.broadcast and "hypothesis" not in r.exempt])
)
@given(data=st.data())
def test_broadcasting_hypothesis(spec, data):
    n = len(spec.args)
    shapes = data.draw(S.broadcastable_shapes(n), label="shapes")
    p = _drawn_point(spec, data, shapes, {})
    _hypothesis_checks(spec, p, data.draw(st.integers(0, 2**32 - 1), label="seed"))


@pytest.mark.parametrize("spec", _ids([r for r in LIVE if r.reduction]))
@given(data=st.data())
def test_reduction_axes_hypothesis(spec, data):
    shape = data.draw(S.shapes(), label="shape")
    tuples = spec.name not in ("argmax", "argmin")
    axis = data.draw(S.axes(len(shape), allow_tuple=tuples), label="axis")
    params = {"axis": axis, "keepdims": data.draw(S.keepdims(), label="keepdims")}
    p = _drawn_point(spec, data, [shape], params)
    _hypothesis_checks(spec, p, data.draw(st.integers(0, 2**32 - 1), label="seed"))


# ----- 10. batched inputs ------------------------------------------------------------------
BATCH = 3


def _batch_safe(params: dict[str, Any]) -> bool:
    for key in ("axis", "axis1", "axis2"):
        if key not in params:
            continue
        v = params[key]
        vs = v if isinstance(v, tuple) else (v,)
        if v is None or any(a >= 0 for a in vs):
            return False
    return True


def _batched_shapes(spec: OpSpec, case: Case) -> list[Any] | None:
    arrays = [
        (i, s) for i, s in enumerate(case.shapes) if not isinstance(spec.arg(case, i), S.Const)
    ]
    ndims = {len(s) for _, s in arrays}
    if spec.batch == "lead" and (len(ndims) > 1 or min(ndims) < spec.batch_min_ndim):
        return None
    top = max(ndims)
    shapes = list(case.shapes)
    for i, s in arrays:
        shapes[i] = (BATCH,) + (1,) * (top - len(s)) + tuple(s)
    return shapes


@pytest.mark.parametrize("spec", _ids([r for r in DIFF if r.batch]))
def test_batched_inputs(spec, rng):
    """op(X)[b] == op(X[b]) for a leading batch axis, for values, VJPs and JVPs."""
    ran = 0
    for case in spec.cases:
        shapes = _batched_shapes(spec, case)
        if shapes is None or not _batch_safe(case.params):
            continue
        ran += 1
        p = make_point(spec, case, rng, shapes=shapes)
        f, xs = op_fun(p), p.xs
        ts = [Tensor(x, requires_grad=True) for x in xs]
        outs = _floating(f(ts))
        us = [rand_like(rng, o.shape, o.dtype) for o in outs]
        gs = _grads(outs, ts, us)
        vs = [rand_like(rng, x.shape, x.dtype) for x in xs]
        _, tans = jvp_of(f, xs, vs)
        for b in range(BATCH):
            q = Point(
                spec, [a[b] if isinstance(a, np.ndarray) else a for a in p.args], p.diff, p.params
            )
            fb = op_fun(q)
            tb = [Tensor(x, requires_grad=True) for x in q.xs]
            ob = _floating(fb(tb))
            for o, o1 in zip(outs, ob, strict=True):
                np.testing.assert_allclose(o.data[b], o1.data, rtol=EXACT, atol=1e-14)
            gb = _grads(ob, tb, [u[b] for u in us])
            for g, g1 in zip(gs, gb, strict=True):
                np.testing.assert_allclose(g.data[b], g1.data, rtol=EXACT, atol=1e-14)
            _, tb_ = jvp_of(fb, q.xs, [v[b] for v in vs])
            for t, t1 in zip(tans, tb_, strict=True):
                np.testing.assert_allclose(t[b], t1, rtol=EXACT, atol=1e-14)
    assert ran, f"{spec.name}: no case of this row can be batched; fix the row"


# ----- 11. vectorized Jacobians: a batch of cotangents or tangents in one pass -----------
NB = 3  # cotangents or tangents pushed through in one batched pass
NB2 = 2  # the inner batch of a batched first-order map that is differentiated again


def _zeros_b(nb: int, x: Any) -> np.ndarray:
    return np.zeros((nb, *x.shape), x.dtype)


def batched_vjp(f: TFun, xs: Sequence[np.ndarray], us: Sequence[np.ndarray]) -> list[Any]:
    """J^T u for every u in the leading axis of ``us``, by one ``is_grads_batched`` pass."""
    nb = us[0].shape[0]
    ts = [Tensor(x, requires_grad=True) for x in xs]
    outs = _floating(f(ts))
    pairs = [(o, u) for o, u in zip(outs, us, strict=True) if o.requires_grad]
    gs: Sequence[Any] = [None] * len(ts)
    if pairs:
        gs = ad.autograd.grad(
            [o for o, _ in pairs],
            ts,
            grad_outputs=[u for _, u in pairs],
            is_grads_batched=True,
            allow_unused=True,
        )
    return [_zeros_b(nb, x) if g is None else np.asarray(g.data) for g, x in zip(gs, xs)]


def batched_jvp(f: TFun, xs: Sequence[np.ndarray], vs: Sequence[np.ndarray], requires_grad=False):
    """J v for every v in the leading axis of ``vs``, by one pass of batched dual tensors."""
    nb = vs[0].shape[0]
    with dual_level():
        duals = [
            make_dual(Tensor(x, requires_grad=requires_grad), Tensor(v), batched=True)
            for x, v in zip(xs, vs, strict=True)
        ]
        outs = _floating(f(duals))
        tans = [unpack_dual(o).tangent for o in outs]
    return [
        _zeros_b(nb, o) if t is None else np.asarray(t.data)
        for t, o in zip(tans, outs, strict=True)
    ]


def brev(f: TFun, n: int) -> TFun:
    """x, U -> J(x)^T U[b] for every b (one batched pass), recorded: jacrev's inner map."""

    def g(ts: Sequence[Any]) -> list[Any]:
        xs, us = ts[:n], ts[n:]
        nb = us[0].shape[0]
        outs = _floating(f(xs))
        pairs = [(o, u) for o, u in zip(outs, us, strict=True) if o.requires_grad]
        gs: Sequence[Any] = [None] * n
        if pairs:
            gs = ad.autograd.grad(
                [o for o, _ in pairs],
                list(xs),
                grad_outputs=[u for _, u in pairs],
                create_graph=True,
                allow_unused=True,
                is_grads_batched=True,
            )
        return [Tensor(_zeros_b(nb, x)) if g is None else g for g, x in zip(gs, xs, strict=True)]

    return g


def bfwd(f: TFun, n: int) -> TFun:
    """x, V -> J(x) V[b] for every b (one batched pass), recorded: jacfwd's inner map."""

    def g(ts: Sequence[Any]) -> list[Any]:
        xs, vs = ts[:n], ts[n:]
        nb = vs[0].shape[0]
        with dual_level():
            outs = _floating(
                f([make_dual(x, v, batched=True) for x, v in zip(xs, vs, strict=True)])
            )
            tans = [unpack_dual(o).tangent for o in outs]
        return [Tensor(_zeros_b(nb, o)) if t is None else t for t, o in zip(tans, outs)]

    return g


def _stack_close(got: Any, want: Sequence[Any], what: str) -> None:
    want = np.stack([np.asarray(w) for w in want])
    got = np.asarray(got)
    assert got.shape == want.shape, f"{what}: batched shape {got.shape}, expected {want.shape}"
    scale = max(1.0, float(np.max(np.abs(want), initial=0.0)))
    np.testing.assert_allclose(got, want, rtol=EXACT, atol=EXACT * scale, err_msg=what)


def check_batched_vjp(f: TFun, xs: list[np.ndarray], rng, what: str) -> None:
    """One batched VJP pass equals the stack of one VJP per cotangent."""
    us = [rand_like(rng, (NB, *o.shape), o.dtype) for o in evaluate(f, xs)]
    got = batched_vjp(f, xs, us)
    per = []
    for b in range(NB):
        ts = [Tensor(x, requires_grad=True) for x in xs]
        per.append([np.asarray(g.data) for g in _grads(_floating(f(ts)), ts, [u[b] for u in us])])
    for k, g in enumerate(got):
        _stack_close(g, [p[k] for p in per], f"{what}: gradient of input {k}")


def check_batched_jvp(f: TFun, xs: list[np.ndarray], rng, what: str, requires_grad=False):
    """One pass of batched tangents equals the stack of one JVP per tangent."""
    vs = [rand_like(rng, (NB, *x.shape), x.dtype) for x in xs]
    got = batched_jvp(f, xs, vs, requires_grad)
    per = [jvp_of(f, xs, [v[b] for v in vs], requires_grad)[1] for b in range(NB)]
    for k, t in enumerate(got):
        _stack_close(t, [p[k] for p in per], f"{what}: tangent of output {k}")


@pytest.mark.parametrize(("spec", "dtype"), _with_dtypes(DIFF))
def test_batched_vjp_and_jvp(spec, dtype, rng):
    """is_grads_batched and make_dual(batched=True) give the stack of single products."""
    for p in _points(spec, rng, dtype):
        f, xs = op_fun(p), p.xs
        check_batched_vjp(f, xs, rng, f"batched VJP {p!r}")
        check_batched_jvp(f, xs, rng, f"batched JVP {p!r}")


BATCHED_SECOND_ORDER = [
    f"{outer}_over_{inner}" for outer in ("rev", "fwd") for inner in ("rev", "fwd", "brev", "bfwd")
]


@pytest.mark.parametrize("mode", BATCHED_SECOND_ORDER)
@pytest.mark.parametrize("spec", _ids([r for r in SMOOTH if r.order >= 2]))
def test_batched_second_order(spec, mode, rng):
    """A batched outer pass over a first-order map (itself batched for brev/bfwd: the
    jacfwd(jacrev) and jacrev(jacrev) paths of a Hessian) equals the stack of single passes."""
    outer, inner = mode.split("_over_")
    _exempt(spec, f"{outer}_over_{inner.lstrip('b')}")
    lift = {"rev": rev, "fwd": fwd, "brev": brev, "bfwd": bfwd}[inner]
    for p in _points(spec, rng):
        f, xs = op_fun(p), p.xs
        g = lift(f, len(xs))
        if inner.startswith("b"):
            outs = evaluate(f, xs) if inner == "brev" else xs
            ys = xs + [rand_like(rng, (NB2, *o.shape), o.dtype) for o in outs]
        else:
            ys = lifted_point(f, xs, rng, inner)
        what = f"batched {mode} {p!r}"
        if outer == "rev":
            check_batched_vjp(g, ys, rng, what)
        else:
            check_batched_jvp(g, ys, rng, what, requires_grad=inner.endswith("rev"))


# ----- multi-output: unused outputs get zero cotangents ------------------------------------
@pytest.mark.parametrize("spec", _ids([r for r in DIFF if REGISTRY[r.name].nout != 1]))
def test_multi_output_partial_cotangents(spec, rng):
    for p in _points(spec, rng):
        ts = [Tensor(x, requires_grad=True) for x in p.xs]
        outs = _floating(op_fun(p)(ts))
        us = [rand_like(rng, o.shape, o.dtype) for o in outs]
        full = _grads(outs, ts, us)
        parts = [
            _grads(_floating(op_fun(p)(ts))[k : k + 1], ts, us[k : k + 1]) for k in range(len(outs))
        ]
        for j, g in enumerate(full):
            np.testing.assert_allclose(sum(part[j].data for part in parts), g.data, rtol=EXACT)


# ----- regressions of core bugs found by this table ----------------------------------------
def test_split_into_one_piece():
    x = Tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    (y,) = REGISTRY["split"](x, indices_or_sections=1)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.data, np.ones(3))


def test_grad_outputs_may_be_an_array():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    (g,) = ad.autograd.grad(ad.sin(x), x, grad_outputs=np.ones(2))
    np.testing.assert_allclose(g.data, np.cos([1.0, 2.0]))
