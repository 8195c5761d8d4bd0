"""Every OpSpec row on array-api-strict arrays: values, VJP, JVP and second order equal NumPy's.

array-api-strict refuses mixing its arrays with NumPy's; its conversion to NumPy
(``__array__``, the buffer protocol), which version 2.6 allows on its CPU device, is
patched here to raise, as CuPy's GPU arrays do: a rule or kernel that calls NumPy on a
foreign array fails these tests. (Its second device refuses the conversion by itself, but
its ``__setitem__`` converts an array value through the default device, so the tests use
the CPU device.) Rows of NumPy-only primitives (``autodiffx._xp.how``, generated into
docs/backends.md) must refuse the arrays with a TypeError instead.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _backend_checks import assert_like_numpy
from op_specs import ROWS
from test_primitives import apply_op, make_point

import autodiffx as ad
from autodiffx import REGISTRY
from autodiffx._doctable import backends_table
from autodiffx._mode import STATE
from autodiffx._xp import how, inexact
from autodiffx.forward import dual_level, make_dual, unpack_dual

xp = pytest.importorskip("array_api_strict")
DEV = xp.Device("CPU_DEVICE")
LIVE = [r for r in ROWS if r.name in REGISTRY]
RTOL, ATOL = 1e-10, 1e-12
DOCS = Path(__file__).resolve().parent.parent / "docs" / "backends.md"


_ARRAY = type(xp.asarray(0.0))
_CONVERSIONS = {
    name: getattr(_ARRAY, name) for name in ("__array__", "__buffer__") if hasattr(_ARRAY, name)
}


def _refusing(name: str) -> Any:
    def convert(self, *args, **kwargs):
        # (array-api-strict implements itself with NumPy, and the OpSpec table's gauge fixing
        # of eigenvectors reads values: their own calls are let through)
        caller = sys._getframe(1).f_globals.get("__name__", "")
        if caller.startswith("array_api_strict") or caller == "op_specs":
            return _CONVERSIONS[name](self, *args, **kwargs)
        raise RuntimeError("an array-api-strict array was converted to NumPy")

    return convert


@pytest.fixture(autouse=True)
def _foreign_state(monkeypatch):
    """Converting an array-api-strict array to NumPy fails the test (see the docstring)."""
    for name in _CONVERSIONS:
        monkeypatch.setattr(_ARRAY, name, _refusing(name))
    yield
    STATE.foreign = False  # (the thread's other tests take the eager path again)


def _runs(spec: Any) -> bool:
    return how(REGISTRY[spec.name], xp)[0] != "numpy"


def _floating(outs: Any) -> list[Any]:
    return [o for o in outs if inexact(o.dtype)]


def _ids(rows: list[Any]) -> list[Any]:
    return [pytest.param(r, id=r.name) for r in rows]


RUNS = [r for r in LIVE if _runs(r)]
DIFF = [r for r in RUNS if not r.nondiff]
SMOOTH = [r for r in DIFF if not r.zero_deriv]
SECOND = [r for r in SMOOTH if r.order >= 2]


def to_xp(a: Any) -> Any:
    """NumPy arrays (also in lists and tuples) as arrays of device1."""
    if isinstance(a, np.ndarray):
        return xp.asarray(a, device=DEV)
    if isinstance(a, list | tuple):
        return type(a)(to_xp(v) for v in a)
    return a


def to_np(a: Any) -> np.ndarray:
    """A result (Tensor, array-api-strict or NumPy array) as a NumPy array; the type is checked
    by the callers."""
    if isinstance(a, ad.Tensor):
        a = a.data
    if isinstance(a, np.ndarray | np.generic):
        return np.asarray(a)
    return np.from_dlpack(a)


def _is_strict(t: Any) -> bool:
    return isinstance(t, ad.Tensor) and type(t.data).__module__.startswith("array_api_strict")


def _close(got: list[Any], want: list[Any], what: str) -> None:
    assert len(got) == len(want), what
    for k, (g, w) in enumerate(zip(got, want, strict=True)):
        assert _is_strict(g), f"{what}: result {k} is {type(getattr(g, 'data', g))}"
        assert_like_numpy(to_np(g), to_np(w), what, k, RTOL, ATOL)


class Backend:
    """One point's computations on one array type (NumPy, or array-api-strict on device1)."""

    def __init__(self, p: Any, strict: bool) -> None:
        self.p, self.conv = p, to_xp if strict else (lambda a: a)

    def inputs(self, requires_grad: bool = True) -> list[Any]:
        return [ad.tensor(self.conv(x), requires_grad=requires_grad) for x in self.p.xs]

    def f(self, ts: list[Any]) -> list[Any]:
        args = [self.conv(a) for a in self.p.args]
        for i, t in zip(self.p.diff, ts, strict=True):
            args[i] = t
        return _floating(apply_op(self.p.spec, args, self.p.params))

    def tensor(self, a: np.ndarray, requires_grad: bool = False) -> Any:
        return ad.tensor(self.conv(a), requires_grad=requires_grad)

    def vjp(self, ts: list[Any], us: list[Any], create_graph: bool = False) -> list[Any]:
        outs = self.f(ts)
        pairs = [(o, u) for o, u in zip(outs, us, strict=True) if o.requires_grad]
        gs = ad.autograd.grad(
            [o for o, _ in pairs],
            ts,
            grad_outputs=[u for _, u in pairs],
            create_graph=create_graph,
            allow_unused=True,
        )
        return [ad.zeros_like(t) if g is None else g for g, t in zip(gs, ts, strict=True)]


def _with_dtypes(rows: list[Any]) -> list[Any]:
    out = [pytest.param(r, np.float64, id=r.name) for r in rows]
    out += [
        pytest.param(r, np.complex128, id=f"{r.name}-complex")
        for r in rows
        if r.complex and "complex" not in r.exempt
    ]
    return out


def _points(spec: Any, rng: np.random.Generator, dtype: Any = np.float64) -> list[Any]:
    return [make_point(spec, c, rng, dtype) for c in spec.cases]


def _normal(rng: np.random.Generator, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    x = rng.standard_normal(shape)
    if np.dtype(dtype).kind == "c":
        x = x + 1j * rng.standard_normal(shape)
    return np.asarray(x, dtype=dtype)


def _cotangents(p: Any, rng: np.random.Generator) -> list[np.ndarray]:
    outs = Backend(p, False).f(Backend(p, False).inputs())
    return [_normal(rng, o.shape, o.dtype) for o in outs]


def _tangents(p: Any, rng: np.random.Generator) -> list[np.ndarray]:
    return [_normal(rng, x.shape, x.dtype) for x in p.xs]


def _tensors(args: list[Any], diff: list[int], strict: bool) -> list[Any]:
    """The arguments as test_primitives passes them: arrays as Tensors (requiring grad
    where differentiated)."""
    out = []
    for i, a in enumerate(args):
        if isinstance(a, np.ndarray):
            a = ad.tensor(to_xp(a) if strict else a, requires_grad=i in diff)
        out.append(a)
    return out


@pytest.mark.parametrize(("spec", "dtype"), _with_dtypes(RUNS))
def test_forward(spec, dtype, rng):
    for p in _points(spec, rng, dtype):
        want = apply_op(spec, _tensors(p.args, p.diff, False), p.params)
        got = apply_op(spec, _tensors(p.args, p.diff, True), p.params)
        _close(list(got), list(want), f"forward {p!r}")


@pytest.mark.parametrize(("spec", "dtype"), _with_dtypes(DIFF))
def test_vjp(spec, dtype, rng):
    for p in _points(spec, rng, dtype):
        us = _cotangents(p, rng)
        res = []
        for b in (Backend(p, False), Backend(p, True)):
            res.append(b.vjp(b.inputs(), [b.tensor(u) for u in us]))
        _close(res[1], res[0], f"VJP {p!r}")


def _jvp(b: Backend, vs: list[np.ndarray]) -> list[Any]:
    with dual_level():
        outs = b.f([make_dual(t, b.tensor(v)) for t, v in zip(b.inputs(False), vs, strict=True)])
        tans = [unpack_dual(o).tangent for o in outs]
    return [ad.zeros_like(o) if t is None else t for t, o in zip(tans, outs, strict=True)]


@pytest.mark.parametrize(("spec", "dtype"), _with_dtypes(SMOOTH))
def test_jvp(spec, dtype, rng):
    for p in _points(spec, rng, dtype):
        vs = _tangents(p, rng)
        _close(_jvp(Backend(p, True), vs), _jvp(Backend(p, False), vs), f"JVP {p!r}")


def _rev_over_rev(b: Backend, us: list[np.ndarray], ws: list[np.ndarray]) -> list[Any]:
    ts = b.inputs()
    uts = [b.tensor(u, requires_grad=True) for u in us]
    gs = b.vjp(ts, uts, create_graph=True)
    total = None
    for g, w in zip(gs, ws, strict=True):
        term = (g * b.tensor(w)).sum()
        total = term if total is None else total + term
    if total is None or not total.requires_grad:
        return [ad.zeros_like(t) for t in ts + uts]
    out = ad.autograd.grad(total, ts + uts, allow_unused=True)
    return [ad.zeros_like(t) if g is None else g for g, t in zip(out, ts + uts, strict=True)]


def _fwd_over_rev(b: Backend, us: list[np.ndarray], vs: list[np.ndarray]) -> list[Any]:
    with dual_level():
        ts = [make_dual(t, b.tensor(v)) for t, v in zip(b.inputs(), vs, strict=True)]
        gs = b.vjp(ts, [b.tensor(u) for u in us], create_graph=True)
        tans = [unpack_dual(g).tangent for g in gs]
    return [ad.zeros_like(g) if t is None else t for t, g in zip(tans, gs, strict=True)]


@pytest.mark.parametrize("mode", ["rev_over_rev", "fwd_over_rev"])
@pytest.mark.parametrize(("spec", "dtype"), _with_dtypes(SECOND))
def test_second_order(spec, dtype, mode, rng):
    for p in _points(spec, rng, dtype):
        us = _cotangents(p, rng)
        more = _tangents(p, rng)
        run = _rev_over_rev if mode == "rev_over_rev" else _fwd_over_rev
        want = run(Backend(p, False), us, more)
        _close(run(Backend(p, True), us, more), want, f"{mode} {p!r}")


@pytest.mark.parametrize("spec", _ids([r for r in LIVE if not _runs(r)]))
def test_numpy_only_ops_refuse_foreign_arrays(spec, rng):
    p = make_point(spec, spec.cases[0], rng)
    if not p.diff:
        pytest.skip(f"{spec.name}: no array argument")
    args = list(p.args)
    args[p.diff[0]] = to_xp(args[p.diff[0]])
    with pytest.raises(TypeError, match=rf"{spec.name}\(.*runs on NumPy arrays only"):
        apply_op(spec, args, p.params)


def test_numpy_is_never_called_on_strict_arrays():
    """The patched conversion raises (so the tests above prove no rule converts), and
    device1's arrays, which refuse it by themselves, run the same ops."""
    x = xp.asarray([1.0, 2.0], device=DEV)
    for convert in (np.asarray, np.exp, lambda a: np.add(a, 1.0)):
        with pytest.raises(RuntimeError, match="converted to NumPy"):
            convert(x)
    with pytest.raises(TypeError, match="would convert it to NumPy"):
        np.asarray(ad.tensor(x))
    y = ad.tensor(xp.asarray([0.5, 1.5], device=xp.Device("device1")), requires_grad=True)
    (ad.exp(y) * ad.tanh(y) + y**3 / 2).sum().backward()
    e, t = np.exp([0.5, 1.5]), np.tanh([0.5, 1.5])
    want = e * t + e * (1 - t**2) + 1.5 * np.array([0.5, 1.5]) ** 2
    got = np.from_dlpack(y.grad.data.to_device(xp.Device("CPU_DEVICE")))
    np.testing.assert_allclose(got, want, rtol=1e-13)


def test_the_docs_list_is_generated_from_the_registry():
    text = DOCS.read_text()
    got = re.search(r"<!-- xp-ops -->\n(.*?)<!-- /xp-ops -->", text, re.S)
    assert got is not None
    assert got.group(1) == backends_table(), "run python -m autodiffx._doctable"


def _strict(a: Any, requires_grad: bool = False) -> Any:
    return ad.tensor(xp.asarray(np.asarray(a, dtype=float)), requires_grad=requires_grad)


def test_a_tensor_keeps_its_array_type_and_reports_numpy_dtypes():
    t = _strict([1.0, 2.0])
    assert type(t.data) is _ARRAY
    assert t.dtype == np.float64  # (the engine's dtypes are NumPy's; t.data.dtype is strict's)
    assert type((t * 2).astype(np.float32).data) is _ARRAY
    assert (t * 2).astype(np.float32).dtype == np.float32
    assert float(t.sum()) == 3.0 and t[1].item() == 2.0  # (Python reads, not NumPy)


def test_numpy_operands_are_converted_and_numpy_leaves_get_foreign_gradients():
    x = _strict([[0.5, 1.0], [1.5, 2.0]])
    w = ad.tensor(np.array([1.0, -2.0]), requires_grad=True)
    loss = (ad.tanh(x @ w) + np.ones(2)).sum()
    loss.backward()
    assert type(loss.data) is _ARRAY and type(w.grad.data) is _ARRAY
    xn = to_np(x)
    want = xn.T @ (1 - np.tanh(xn @ np.array([1.0, -2.0])) ** 2)
    np.testing.assert_allclose(to_np(w.grad), want, rtol=1e-13)


def test_transforms_on_strict_arrays_equal_numpy():
    def f(x):
        return ad.sum(ad.sin(x) * x**2)

    xn, vn = np.array([0.3, -1.2, 2.0]), np.array([1.0, 0.5, -1.0])
    for fn in (
        lambda x, v: ad.hvp(f, (x,), (v,))[1],
        lambda x, v: ad.func.jacrev(f)(x),
        lambda x, v: ad.func.jacrev(ad.sin)(x),
        lambda x, v: ad.func.jacfwd(ad.sin)(x),
        lambda x, v: ad.func.hessian(f)(x),
    ):
        got, want = fn(_strict(xn), _strict(vn)), fn(ad.tensor(xn), ad.tensor(vn))
        _close([got], [want], "transform")


def test_in_place_writes_into_strict_tensors_are_refused():
    t = _strict([1.0, 2.0])
    with pytest.raises(TypeError, match="in-place writes run on NumPy arrays only"):
        t += 1.0
    with pytest.raises(TypeError, match="in-place writes run on NumPy arrays only"):
        t[0] = 3.0


def test_an_optimizer_refuses_a_strict_gradient_of_a_numpy_parameter():
    w = ad.tensor(np.ones(2), requires_grad=True)
    (_strict([1.0, 2.0]) * w).sum().backward()
    with pytest.raises(TypeError, match=r"NumPy array and its .grad a array_api_strict array"):
        ad.optim.SGD([w], lr=0.1).step()
    np.testing.assert_array_equal(w.data, np.ones(2))  # (tests/test_optim_xp.py: the others)


def test_a_numpy_only_op_names_itself_and_the_reason():
    with pytest.raises(TypeError, match=r"erf\(float64\[2\]\): 'erf' runs on NumPy arrays only"):
        ad.scipy.special.erf(_strict([0.1, 0.2]))


def test_cupy_arrays_take_the_same_path():
    cp = pytest.importorskip("cupy")
    try:
        x = ad.tensor(cp.asarray([0.5, 1.5]), requires_grad=True)
    except Exception as e:  # (CuPy installed without a GPU)
        pytest.skip(f"no usable GPU: {e}")
    (ad.exp(x) * x).sum().backward()
    assert type(x.grad.data) is cp.ndarray
    xn = np.array([0.5, 1.5])
    np.testing.assert_allclose(cp.asnumpy(x.grad.data), np.exp(xn) * (1 + xn), rtol=1e-13)
