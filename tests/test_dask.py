"""Tensors over Dask arrays: values and gradients equal NumPy's, lazily; the refusals."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from dask_checks import building, check_point, limited, points
from op_specs import ROWS
from test_primitives import apply_op, make_point

import autodiffx as ad
import autodiffx.nn.functional as F
from autodiffx._doctable import COMMAND, dask_ops
from autodiffx._mode import STATE
from autodiffx._registry import REGISTRY
from autodiffx._xp import NOT_ON_DASK, RUNS_ON_DASK

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")
cloudpickle = pytest.importorskip("cloudpickle")


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
    "getitem": (
        lambda x, w: x[2] * w + x[1:4, None, ::2].sum() + x[..., -1].sum() + x[None, ..., 1].sum(),
        "getitem",
    ),
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
    with building():  # (nothing computed, no warning, until ad.compute)
        lazy = _run(f, da.from_array(XN, chunks=(3, 2)), WN)
    assert all(isinstance(t.data, da.Array) for t in lazy)  # lazy until ad.compute
    got = ad.compute(*lazy)
    for e, g in zip(expected, got):
        assert type(g.data) is np.ndarray
        np.testing.assert_allclose(g.data, e.data, rtol=1e-12, atol=1e-12)


LIVE = {r.name: r for r in ROWS if r.name in REGISTRY}


def test_every_primitive_runs_on_dask_or_is_refused_with_a_reason():
    assert not RUNS_ON_DASK & set(NOT_ON_DASK)
    assert RUNS_ON_DASK | set(NOT_ON_DASK) == set(REGISTRY), "add the primitive to either list"
    assert not RUNS_ON_DASK - set(LIVE), "a primitive that runs on Dask needs an OpSpec row"


@pytest.mark.parametrize("spec", [pytest.param(LIVE[n], id=n) for n in sorted(RUNS_ON_DASK)])
def test_op_spec_row_on_dask_equals_numpy_lazily(spec):
    """Every case of the row (float64, and complex128 where the row has it) on Dask arrays
    of two chunks per axis: values and VJPs equal NumPy's to 1e-12, and building the
    graph computes nothing, converts nothing to NumPy and warns nothing."""
    rng = np.random.default_rng(17)
    ran = 0
    for p in points(spec, rng):
        try:
            check_point(apply_op, p, rng)
            ran += 1
        except Exception as e:
            if not limited(spec.name, e):
                raise
    assert ran, f"{spec.name}: no case ran on Dask"


@pytest.mark.parametrize("spec", [pytest.param(LIVE[n], id=n) for n in sorted(NOT_ON_DASK)])
def test_refused_ops_give_their_reason(spec):
    rng = np.random.default_rng(17)
    p = make_point(spec, spec.cases[0], rng)
    args = [da.from_array(a, chunks=2) if isinstance(a, np.ndarray) else a for a in p.args]
    why = re.escape(NOT_ON_DASK[spec.name])
    with pytest.raises(
        TypeError, match=rf"{spec.name}\(.*not supported by '{spec.name}' \({why}\)"
    ):
        apply_op(spec, args, p.params)


def test_the_docs_list_is_generated_from_the_registry():
    got = re.search(r"<!-- dask-ops -->\n(.*?)<!-- /dask-ops -->", DOCS.read_text(), re.S)
    assert got is not None
    assert got.group(1) == dask_ops(), f"docs/backends.md is stale: run {COMMAND}"


def _logistic(X, y, w, b):
    z = X @ w + b
    return F.binary_cross_entropy_with_logits(z, y)


@pytest.fixture(scope="module")
def cluster():
    """Two worker processes of one thread, 300 MB each (a real cluster's separation: the
    data the workers make is not in the client's memory unless it is sent there)."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        memory_limit="300MB",
        dashboard_address=":0",  # (None still serves HTTP on 8787, maybe taken)
    ) as c:
        yield c


@pytest.fixture
def client(cluster):
    distributed = pytest.importorskip("distributed")
    with distributed.Client(cluster) as c:
        yield c


def _data_on_workers(n, d, rows, seed):
    """X (n, d) and labels y made chunk by chunk on the workers from a seed (the graph holds
    a seed per chunk, no data), and the same data in memory (computed apart, for checks)."""
    rng = da.random.default_rng(seed)
    X = rng.standard_normal((n, d), chunks=(rows, d))
    y = (X @ np.linspace(-1.0, 2.0, d) + rng.standard_normal(n, chunks=rows) > 0).astype(float)
    return X, y, *dask.compute(X, y, scheduler="sync")


def _largest_task(*tensors):
    """The largest task of the graph that computes ``tensors``, pickled (bytes): an array
    embedded in the graph on the client, such as a data-sized cotangent, shows here."""
    graph = {}
    for t in tensors:
        graph.update(t.data.__dask_graph__())
    return max(len(cloudpickle.dumps(v)) for v in graph.values())


def test_the_gradient_of_a_mean_embeds_no_data_in_the_graph():
    X = da.random.default_rng(0).standard_normal((100_000, 3), chunks=(10_000, 3))
    w = ad.tensor(np.ones(3), requires_grad=True)
    (ad.asarray(X) @ w).mean().backward()
    assert _largest_task(w.grad) < 10_000  # (X: 2.4 MB; the mean's 1/n per row: 0.8 MB)
    expected = dask.compute(X, scheduler="sync")[0].mean(axis=0)
    np.testing.assert_allclose(ad.compute(w.grad)[0].data, expected, rtol=1e-12)


def _params(*arrays):
    return [ad.tensor(np.array(a, dtype=float), requires_grad=True) for a in arrays]


def _compute_grads(loss, params):
    """The loss and the parameters' gradients in one pass; the gradients put back as .grad."""
    loss, *grads = ad.compute(loss, *[p.grad for p in params])
    for p, g in zip(params, grads):
        assert g.shape == p.shape  # (only the small results come back to the client)
        p.grad = g
    return loss


def test_logistic_gradient_on_worker_processes_equals_numpy(client):
    """The benchmark's problem (benchmarks/dask_scale.py) at 1/200 of its size."""
    n, d, rows = 200_000, 5, 25_000  # 8 chunks of 1.2 MB
    X, y, Xn, yn = _data_on_workers(n, d, rows, seed=3)
    grads = []
    for data in ((X, y), (Xn, yn)):
        w, b = _params(np.linspace(0.3, -0.2, d), 0.25)
        loss = _logistic(ad.asarray(data[0]), ad.asarray(data[1]), w, b)
        loss.backward()
        grads.append((loss, w.grad, b.grad))
    lazy = grads[0]
    assert all(isinstance(t.data, da.Array) for t in lazy)
    # NOTE: bound by a chunk of the data (200 kB of X): the graph holds seeds and small
    # constants only; before the mean's 1/n was broadcast chunk by chunk (autodiffx._xp.
    # broadcast_like), it held an array of n float64 (1.6 MB here, 320 MB at full size).
    assert _largest_task(*lazy) < 20_000
    got = ad.compute(*lazy)
    for g, e in zip(got, grads[1]):
        assert g.shape == e.shape and type(g.data) is np.ndarray
        np.testing.assert_allclose(g.data, e.data, rtol=1e-12, atol=0)


def test_the_scale_benchmark_runs_small():
    """benchmarks/dask_scale.py end to end (cluster, reference process, figures, targets)."""
    pytest.importorskip("distributed")
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "dask_scale.py"
    args = ["--rows", "4e5", "--chunk-rows", "5e4", "--memory-limit", "300MB"]
    env = dict(os.environ, PYTHONPATH=str(script.parent.parent), PYTHONWARNINGS="error")
    done = subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "targets (relative error < 1e-12, client peak RSS < 300.0 MB): met" in done.stdout
    errors = re.search(r"loss (\S+), grad (\S+), max_component (\S+)", done.stdout)
    assert errors is not None and max(float(e.rstrip(",")) for e in errors.groups()) < 1e-12


def _train(X, y, step, params, opt, batch):
    """Minibatches of ``batch`` rows (a Dask chunk each), one optimizer step per batch;
    the losses. NumPy and Dask data run the same code."""
    losses = []
    for i in range(0, X.shape[0], batch):
        opt.zero_grad()
        loss = step(ad.asarray(X[i : i + batch]), ad.asarray(y[i : i + batch]), *params)
        loss.backward()
        losses.append(float(_compute_grads(loss, params)))
        opt.step()
    return losses


def _mlp(X, y, w1, b1, w2, b2):
    h = ad.tanh(X @ w1 + b1)
    return F.binary_cross_entropy_with_logits((h @ w2 + b2)[:, 0], y)


def _mlp_params(d, width=8):
    r = np.random.default_rng(0)
    return _params(
        r.normal(size=(d, width)) / d**0.5, np.zeros(width), r.normal(size=(width, 1)), [0.0]
    )


@pytest.mark.parametrize(
    ("model", "optimizer"),
    [
        ((_logistic, lambda d: _params(np.zeros(d), 0.0)), lambda p: ad.optim.SGD(p, lr=0.5)),
        ((_mlp, _mlp_params), lambda p: ad.optim.Adam(p, lr=0.01)),
    ],
    ids=["logistic-SGD", "mlp-Adam"],
)
def test_training_on_the_cluster_equals_numpy(client, model, optimizer):
    """An epoch of minibatch training over data made on the workers (never sent to the
    client): the same trajectory as on the data in memory, to 1e-12."""
    n, d, rows = 40_000, 5, 5_000
    X, y, Xn, yn = _data_on_workers(n, d, rows, seed=5)
    step, init = model
    runs = []
    for data in ((X, y), (Xn, yn)):
        params = init(d)
        losses = _train(*data, step, params, optimizer(params), batch=rows)
        runs.append((losses, [p.data for p in params]))
    (lazy_losses, lazy_params), (losses, params) = runs
    np.testing.assert_allclose(lazy_losses, losses, rtol=1e-12)
    assert losses[-1] < losses[0]
    for got, expected in zip(lazy_params, params):
        assert type(got) is np.ndarray
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)
    assert client.run(lambda: "alive")  # (the workers stayed within their memory limit)


def test_training_on_persisted_data_sends_small_graphs(client):
    """Data persisted on the workers (made there, kept there): each step's graph refers to
    it by key, and holds no array bigger than the parameters."""
    X, y, *_ = _data_on_workers(40_000, 5, 5_000, seed=7)
    X, y = client.persist([X, y])
    params = _mlp_params(5)
    opt = ad.optim.Adam(params, lr=0.01)
    for _ in range(3):
        opt.zero_grad()
        loss = _mlp(ad.asarray(X), ad.asarray(y), *params)
        loss.backward()
        assert _largest_task(loss, *[p.grad for p in params]) < 4_000  # (X: 1.6 MB)
        _compute_grads(loss, params)
        opt.step()
    assert all(np.isfinite(p.data).all() for p in params)


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
    with pytest.raises(TypeError, match=r"cumprod\(float64\[6, 4\].*'cumprod' \(its gradient"):
        ad.cumprod(x, axis=0)
    with pytest.raises(TypeError, match="advanced index"):
        x[np.array([0, 0, 1])]
    with pytest.raises(TypeError, match="not supported by 'solve' \\(a LAPACK"):
        ad.linalg.solve(x[:4], x[:4, 0])


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


class _OtherArray:
    """An array of a library autodiffx does not drive (it has an array-API namespace)."""

    shape, dtype = (2,), np.dtype("float64")

    def __array_namespace__(self, api_version=None):
        return np


def test_other_foreign_arrays_are_refused():
    with pytest.raises(TypeError, match="NumPy, Dask, CuPy and array-api-strict arrays only"):
        ad.tensor(_OtherArray())


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
