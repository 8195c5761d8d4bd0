"""Tensors over Dask arrays: values and gradients equal NumPy's, lazily; the refusals."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import autodiffx as ad
import autodiffx.nn.functional as F
from autodiffx._mode import STATE
from autodiffx._registry import REGISTRY
from autodiffx._xp import RUNS_ON_DASK

da = pytest.importorskip("dask.array")


@pytest.fixture(autouse=True)
def _no_implicit_compute(monkeypatch):
    """A Dask array converted to NumPy anywhere but ``ad.compute`` fails the test."""

    def refuse(self, *args, **kwargs):
        raise AssertionError("a Dask array was converted to NumPy (computed) implicitly")

    monkeypatch.setattr(da.Array, "__array__", refuse)
    yield
    STATE.foreign = False  # (the thread's other tests take the eager path again)


DOCS = Path(__file__).resolve().parent.parent / "docs" / "backends.md"
RNG = np.random.default_rng(17)
XN = RNG.uniform(0.5, 2.0, size=(6, 4))
WN = RNG.uniform(0.5, 2.0, size=(4,))
MN = RNG.normal(size=(4, 3))

# name -> (function of x (6, 4) and w (4,), the primitives it runs on Dask)
CASES = {
    "arith": (lambda x, w: (x + w) * (x - w) / w + (-x) + (+w), "add subtract multiply divide"),
    "unary": (lambda x, w: -x * (+w), "negative positive"),
    "power": (lambda x, w: x**w + ad.square(x) + ad.sqrt(x * w), "power square sqrt"),
    "exp_log": (
        lambda x, w: ad.exp(x) + ad.expm1(w) + ad.log(x * w) + ad.log1p(x) + 1 / x,
        "exp expm1 log log1p reciprocal",
    ),
    "trig": (lambda x, w: ad.sin(x * w) + ad.cos(x) + ad.tanh(x - w), "sin cos tanh"),
    "abs_sign": (lambda x, w: ad.abs(x - w) * ad.sign(x - 1.0), "abs sign"),
    "logaddexp": (lambda x, w: ad.logaddexp(x, w), "logaddexp"),
    "max_min": (lambda x, w: ad.maximum(x, w) + ad.minimum(x, 2 * w), "maximum minimum"),
    "sigmoid_softplus": (lambda x, w: F.sigmoid(x - w) + F.softplus(w - x), "sigmoid softplus"),
    "where": (
        lambda x, w: ad.where(x > w, x * w, x) + ad.where(x <= w, 1.0, x) + (x >= w) * x,
        "where greater less_equal greater_equal",
    ),
    "compare": (
        lambda x, w: ad.where((x < w) | (x == w) & ad.logical_not(x != w), x, w),
        "less equal not_equal logical_or logical_and logical_not",
    ),
    "reductions": (
        lambda x, w: (x * w).sum(axis=0) + (x * w).mean(axis=0) + x.max(axis=0) + ad.amin(x),
        "sum amax amin",
    ),
    "logsumexp": (
        lambda x, w: ad.logsumexp(x * w, axis=1) + F.log_softmax(x - w, axis=1)[:, 0],
        "logsumexp log_softmax getitem",
    ),
    "matmul": (
        lambda x, w: (x @ ad.tensor(MN)).sum(axis=1) + x @ w + ad.dot(x.T, x)[0:3, 0].sum(),
        "matmul transpose getitem",
    ),
    "shapes": (
        lambda x, w: (
            (x * w).reshape(6, 2, 2)[1:, ::-1].sum()
            + x.reshape(-1)[3]
            + ad.broadcast_to(w, (6, 4)).T[2]
        ),
        "reshape transpose getitem broadcast_to",
    ),
    "getitem": (lambda x, w: x[2] * w + x[1:4, None, ::2].sum() + x[..., -1].sum(), "getitem"),
    "astype": (lambda x, w: (x * w).astype(np.float32).astype(np.float64), "astype"),
}


def _run(f, x, w):
    xt = ad.tensor(x, requires_grad=True)
    wt = ad.tensor(w, requires_grad=True)
    out = f(xt, wt)
    loss = (out * ad.tensor(np.linspace(0.5, 1.5, out.shape[-1]))).sum()
    loss.backward()
    return loss, xt.grad, wt.grad


@pytest.mark.parametrize("name", sorted(CASES))
def test_values_and_gradients_equal_numpy(name):
    f, _ = CASES[name]
    expected = _run(f, XN, WN)
    lazy = _run(f, da.from_array(XN, chunks=(3, 2)), WN)
    assert all(isinstance(t.data, da.Array) for t in lazy)  # lazy until ad.compute
    got = ad.compute(*lazy)
    for e, g in zip(expected, got):
        assert type(g.data) is np.ndarray
        np.testing.assert_allclose(g.data, e.data, rtol=1e-12, atol=1e-12)


def test_every_listed_primitive_is_covered_and_documented():
    assert not RUNS_ON_DASK - set(REGISTRY)
    covered = {p for _, names in CASES.values() for p in names.split()}
    assert RUNS_ON_DASK - {"scatter_add"} == covered  # (scatter_add: getitem's VJP)
    table = re.search(r"<!-- dask-ops -->\n(.*?)\n<!-- /dask-ops -->", DOCS.read_text(), re.S)
    assert table is not None
    assert table.group(1) == ops_line(), "docs/backends.md's list of ops is stale"


def ops_line() -> str:
    """The list of primitives that run on Dask, as docs/backends.md prints it."""
    return ", ".join(f"`{n}`" for n in sorted(RUNS_ON_DASK))


def _logistic(X, y, w, b):
    z = X @ w + b
    return F.binary_cross_entropy_with_logits(z, y)


def test_logistic_regression_on_a_local_cluster():
    distributed = pytest.importorskip("distributed")
    n, d = 2000, 5
    Xn = RNG.normal(size=(n, d))
    yn = (Xn @ np.arange(1.0, d + 1) + RNG.normal(size=n) > 0).astype(float)
    with (
        distributed.LocalCluster(n_workers=2, processes=False, dashboard_address=None) as c,
        distributed.Client(c),
    ):
        X = ad.tensor(da.from_array(Xn, chunks=(250, d)))
        y = ad.tensor(da.from_array(yn, chunks=250))
        w = ad.tensor(np.zeros(d), requires_grad=True)
        b = ad.tensor(0.0, requires_grad=True)
        opt = ad.optim.SGD([w, b], lr=0.5)
        for _ in range(3):
            opt.zero_grad()
            loss = _logistic(X, y, w, b)
            loss.backward()
            assert isinstance(w.grad.data, da.Array)
            loss_v, w.grad, b.grad = ad.compute(loss, w.grad, b.grad)
            opt.step()
    wn = ad.tensor(np.zeros(d), requires_grad=True)
    bn = ad.tensor(0.0, requires_grad=True)
    opt = ad.optim.SGD([wn, bn], lr=0.5)
    for _ in range(3):
        opt.zero_grad()
        ref = _logistic(ad.tensor(Xn), ad.tensor(yn), wn, bn)
        ref.backward()
        opt.step()
    np.testing.assert_allclose(loss_v.data, ref.data, rtol=1e-12)
    np.testing.assert_allclose(w.data, wn.data, rtol=1e-12)
    np.testing.assert_allclose(b.data, bn.data, rtol=1e-12)


def test_mlp_step_with_adam():
    Xn = RNG.normal(size=(32, 4))
    yn = RNG.normal(size=(32, 1))
    results = []
    for X in (Xn, da.from_array(Xn, chunks=(8, 4))):
        w1 = ad.tensor(np.linspace(-1, 1, 24).reshape(4, 6), requires_grad=True)
        w2 = ad.tensor(np.linspace(-1, 1, 6).reshape(6, 1), requires_grad=True)
        opt = ad.optim.Adam([w1, w2], lr=0.01)
        for _ in range(2):
            opt.zero_grad()
            h = F.relu(ad.tensor(X) @ w1)
            loss = F.mse_loss(h @ w2, ad.tensor(yn))
            loss.backward()
            if isinstance(X, da.Array):
                loss, w1.grad, w2.grad = ad.compute(loss, w1.grad, w2.grad)
            opt.step()
        results.append((loss.data, w1.data.copy(), w2.data.copy()))
    for e, g in zip(*results):
        np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-12)


def test_grad_of_a_function_is_lazy():
    x = ad.tensor(da.from_array(XN, chunks=3))
    g = ad.grad(lambda w: (x @ w).sum())(ad.tensor(WN))
    assert isinstance(g.data, da.Array)
    np.testing.assert_allclose(ad.compute(g)[0].data, XN.sum(axis=0), rtol=1e-12)


def test_ops_that_do_not_run_on_dask_are_refused():
    x = ad.tensor(da.from_array(XN, chunks=3), requires_grad=True)
    with pytest.raises(TypeError, match=r"cumsum\(float64\[6, 4\].*not supported by 'cumsum'"):
        ad.cumsum(x, axis=0)
    with pytest.raises(TypeError, match="advanced indexing"):
        x[np.array([0, 0, 1])]
    with pytest.raises(TypeError, match="not supported by 'prod'"):
        ad.prod(x)


@pytest.mark.parametrize("opt", ["SGD", "Adam"])
def test_an_optimizer_refuses_lazy_gradients(opt):
    w = ad.tensor(np.ones(4), requires_grad=True)
    (ad.tensor(da.from_array(XN, chunks=3)) @ w).sum().backward()
    with pytest.raises(TypeError, match=r"step\(\): the .grad .* lazy Dask array"):
        getattr(ad.optim, opt)([w], lr=0.1).step()
    np.testing.assert_array_equal(w.data, np.ones(4))


@pytest.mark.parametrize(
    "read", [float, bool, lambda t: t.item(), lambda t: t.tolist(), np.asarray, int]
)
def test_values_of_a_lazy_tensor_are_not_computed_implicitly(read):
    t = ad.tensor(da.from_array(np.array([1.5]), chunks=1))
    with pytest.raises(TypeError, match=r"lazy Dask array .* ad\.compute"):
        read(t)


def test_other_foreign_arrays_are_refused():
    xp = pytest.importorskip("array_api_strict")
    with pytest.raises(TypeError, match="NumPy and Dask arrays only"):
        ad.tensor(xp.asarray([1.0, 2.0]))


def test_the_thread_checks_operands_once_it_saw_a_dask_array():
    STATE.foreign = False
    assert STATE.eager
    ad.tensor(da.ones(2, chunks=1))
    assert STATE.foreign
    assert not STATE.eager  # (NumPy ops of this thread now take the checked general path)
    x = ad.tensor([1.0, 2.0], requires_grad=True)
    (x * x).sum().backward()
    np.testing.assert_array_equal(x.grad.data, [2.0, 4.0])


def test_repr_does_not_compute():
    t = ad.tensor(da.ones(3, chunks=1))
    assert repr(t).startswith("tensor(dask.array<")
