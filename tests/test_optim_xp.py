"""Training on array-API arrays: the optimizers, nn utilities and ``Module.to`` on
array-api-strict arrays give NumPy's trajectories, and what stays NumPy-only is refused.

array-api-strict's conversion to NumPy is patched to raise here (the fixture of
tests/test_xp_strict.py), as a CuPy GPU array's is: an optimizer that called NumPy on a
parameter, a gradient or a state buffer fails these tests.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_xp_strict import _ARRAY, _foreign_state, to_np  # noqa: F401 (an autouse fixture)

import autodiffx as ad
import autodiffx.nn.functional as F
from benchmarks import cupy_mlp

xp = pytest.importorskip("array_api_strict")
optim = ad.optim
ROOT = Path(__file__).resolve().parent.parent

# (optimizer, hyper-parameters, bit-identical to NumPy): plain SGD's NumPy path is BLAS's
# axpy, whose rounding may differ from x -= lr * g by an ulp.
CONFIGS = [
    (optim.SGD, {"lr": 0.1}, False),
    (optim.SGD, {"lr": 0.1, "maximize": True}, False),
    (optim.SGD, {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.1}, False),
    (optim.SGD, {"lr": 0.1, "momentum": 0.9, "nesterov": True}, False),
    (optim.SGD, {"lr": 0.1, "momentum": 0.9, "dampening": 0.3, "maximize": True}, False),
    (optim.Adam, {"lr": 0.1}, True),
    (optim.Adam, {"lr": 0.1, "amsgrad": True, "weight_decay": 0.1, "maximize": True}, True),
    (optim.Adam, {"lr": 0.1, "weight_decay": 0.1, "decoupled_weight_decay": True}, True),
    (optim.AdamW, {"lr": 0.1, "amsgrad": True}, True),
    (optim.RMSprop, {"lr": 0.01}, True),
    (optim.RMSprop, {"lr": 0.01, "centered": True, "momentum": 0.5, "weight_decay": 0.1}, True),
    (optim.Adagrad, {"lr": 0.1}, True),
    (optim.Adagrad, {"lr": 0.1, "lr_decay": 0.01, "initial_accumulator_value": 0.2}, True),
    (optim.SteepestDescent, {"lr": 0.1, "norm": "l1"}, True),
    (optim.SteepestDescent, {"lr": 0.1, "norm": "linf", "maximize": True}, True),
    (optim.SteepestDescent, {"lr": 0.1, "norm": "l2", "scale_by_dual_norm": True}, False),
    (optim.SteepestDescent, {"lr": 0.1, "norm": "spectral"}, True),
]


def _id(c: tuple[Any, ...]) -> str:
    return c[0].__name__ + "-" + "-".join(f"{k}={v}" for k, v in c[1].items())


def _strict(a: Any, requires_grad: bool = False) -> ad.Tensor:
    return ad.tensor(xp.asarray(np.asarray(a, dtype=float)), requires_grad=requires_grad)


def _steps(cls: Any, kw: dict[str, Any], strict: bool, n: int = 5) -> tuple[Any, ...]:
    """``n`` steps of ``cls`` on tanh(X W + b)**2 summed, from one seeded point."""
    rng = np.random.default_rng(0)
    w0, b0, x0 = rng.standard_normal((3, 4)), rng.standard_normal(4), rng.standard_normal((5, 3))
    conv = (
        _strict
        if strict
        else (lambda a, requires_grad=False: ad.tensor(a, requires_grad=requires_grad))
    )
    w, b, x = conv(w0, True), conv(b0, True), conv(x0)
    opt = cls([w, b], **kw)
    for _ in range(n):
        opt.zero_grad()
        (ad.tanh(x @ w + b) ** 2).sum().backward()
        opt.step()
    return w, b, opt


@pytest.mark.parametrize(("cls", "kw", "exact"), CONFIGS, ids=[_id(c) for c in CONFIGS])
def test_steps_on_strict_arrays_equal_numpy(cls, kw, exact):
    ws, bs, opt = _steps(cls, kw, strict=True)
    wn, bn, opt_np = _steps(cls, kw, strict=False)
    for got, want in ((ws, wn), (bs, bn)):
        assert type(got.data) is _ARRAY
        if exact:
            np.testing.assert_array_equal(to_np(got), want.data)
        else:
            np.testing.assert_allclose(to_np(got), want.data, rtol=0, atol=1e-15)
    for p, q in zip((ws, bs), (wn, bn), strict=True):
        state, want = opt.state[p], opt_np.state[q]
        assert state.keys() == want.keys()
        for name, v in state.items():
            if name == "step":
                assert v == want[name] == 5
            else:  # (state buffers: made in the parameter's library)
                assert type(v) is _ARRAY, name
                np.testing.assert_allclose(to_np(v), want[name], rtol=1e-14, atol=1e-15)


def test_numpy_scalars_as_hyper_parameters_stay_out_of_the_update():
    w = _strict([1.0, -2.0], requires_grad=True)
    opt = optim.Adam([w], lr=np.float64(0.1), betas=(np.float64(0.9), 0.999))
    opt.param_groups[0]["weight_decay"] = np.float32(0.5)
    (w * w).sum().backward()
    opt.step()  # (np.float64(0.1) * a strict array would be a NumPy array)
    assert type(w.data) is _ARRAY and type(opt.state[w]["exp_avg"]) is _ARRAY


def test_a_numpy_gradient_assigned_to_a_strict_parameter_is_converted():
    w = _strict([1.0, 2.0], requires_grad=True)
    w.grad = np.array([1.0, -1.0])
    optim.SGD([w], lr=0.5, momentum=0.9).step()
    assert type(w.data) is _ARRAY
    np.testing.assert_array_equal(to_np(w), [0.5, 2.5])


def _mlp(seed: int = 0) -> ad.nn.Module:
    return ad.nn.Sequential(
        ad.nn.Linear(6, 16, rng=seed),
        ad.nn.Tanh(),
        ad.nn.Linear(16, 16, rng=seed + 1),
        ad.nn.ReLU(),
        ad.nn.Linear(16, 3, rng=seed + 2),
    )


def _train(strict: bool, make_opt: Any, loss_fn: Any, clip: bool) -> tuple[Any, list[float]]:
    """Five steps of a small MLP (its parameters moved with ``Module.to``); the model and
    the losses (read through ReduceLROnPlateau and float())."""
    rng = np.random.default_rng(1)
    X, labels = rng.standard_normal((32, 6)), rng.integers(0, 3, 32)
    net = _mlp()
    if strict:
        assert net.to(xp) is net
        X = xp.asarray(X)  # (class labels stay NumPy: indices are computed on the host)
    X, labels = ad.tensor(X), ad.tensor(labels)
    opt = make_opt(net.parameters())
    sched = optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    plateau = optim.lr_scheduler.ReduceLROnPlateau(opt, patience=0)
    losses = []
    for _ in range(5):
        net.zero_grad(set_to_none=False) if losses else opt.zero_grad()
        loss = loss_fn(net(X), labels)
        loss.backward()
        if clip:
            ad.nn.utils.clip_grad_norm_(net.parameters(), 0.5)
            ad.nn.utils.clip_grad_value_(net.parameters(), 0.05)
        opt.step()
        sched.step()
        plateau.step(loss)
        losses.append(float(loss))
    return net, losses


def _ce(out: Any, labels: Any) -> Any:
    return F.cross_entropy(out, labels)


def _mse(out: Any, labels: Any) -> Any:
    return F.mse_loss(out, ad.tanh(out.detach() * 0.5) + 0.1)


@pytest.mark.parametrize(
    ("make_opt", "loss_fn", "clip"),
    [
        (lambda ps: optim.Adam(ps, lr=0.01, amsgrad=True), _ce, True),
        (lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True), _mse, False),
        (lambda ps: optim.RMSprop(ps, lr=0.01, centered=True), _ce, False),
    ],
    ids=["Adam-cross_entropy-clipped", "SGD-mse", "RMSprop-cross_entropy"],
)
def test_a_small_mlp_trains_on_strict_arrays_as_on_numpy(make_opt, loss_fn, clip):
    net_s, losses_s = _train(True, make_opt, loss_fn, clip)
    net_n, losses_n = _train(False, make_opt, loss_fn, clip)
    np.testing.assert_allclose(losses_s, losses_n, rtol=1e-12)
    for ps, pn in zip(net_s.parameters(), net_n.parameters(), strict=True):
        assert type(ps.data) is _ARRAY and type(ps.grad.data) is _ARRAY
        np.testing.assert_allclose(to_np(ps), pn.data, rtol=1e-12, atol=1e-12)


def test_module_to_moves_parameters_gradients_and_back():
    net = _mlp()
    want = [p.data.copy() for p in net.parameters()]
    net(ad.ones((2, 6))).sum().backward()
    params = list(net.parameters())
    net.to(xp, np.float32)
    assert list(net.parameters()) == params  # (identity kept: optimizers stay valid)
    for p in params:
        assert type(p.data) is _ARRAY and type(p.grad.data) is _ARRAY
        assert p.dtype == np.float32 and p.grad.dtype == np.float32
    net.to(np).to(np.float64)
    for p, w in zip(params, want, strict=True):
        assert type(p.data) is np.ndarray
        np.testing.assert_allclose(p.data, w, rtol=1e-7)
    with pytest.raises(TypeError, match="two array libraries"):
        net.to(xp, np)


def test_module_to_refuses_a_library_the_engine_does_not_drive():
    da = pytest.importorskip("dask.array")
    with pytest.raises(TypeError, match=r"Module.to\(dask.array\): .* NumPy, CuPy or array-api"):
        _mlp().to(da)


# ----- what stays NumPy-only -----------------------------------------------------------------
def test_complex_strict_parameters_are_refused():
    z = ad.tensor(xp.asarray([1.0 + 2.0j, -1.0j]), requires_grad=True)
    (z * ad.conj(z)).real.sum().backward()
    with pytest.raises(TypeError, match=r"Adam.step\(\): .* complex complex128 array_api_strict"):
        optim.Adam([z], lr=0.1).step()


def test_lbfgs_refuses_strict_parameters_and_gradients():
    w = _strict([1.0, 2.0], requires_grad=True)

    def closure():
        opt.zero_grad()
        loss = (w * w).sum()
        loss.backward()
        return loss

    opt = optim.LBFGS([w])
    with pytest.raises(TypeError, match=r"LBFGS.step\(\): .* array_api_strict array; LBFGS runs"):
        opt.step(closure)
    v = ad.tensor(np.ones(2), requires_grad=True)
    x = _strict([1.0, 2.0])
    opt = optim.LBFGS([v])

    def data_closure():
        opt.zero_grad()
        loss = (x * v * v).sum()
        loss.backward()
        return loss

    with pytest.raises(TypeError, match=r"has a .grad that is a array_api_strict array; LBFGS"):
        opt.step(data_closure)
    np.testing.assert_array_equal(v.data, np.ones(2))


def test_a_custom_optimizer_not_declaring_array_api_support_is_refused():
    class PlainGD(ad.optim.Optimizer):
        def __init__(self, params, lr=0.1):
            super().__init__(params, {"lr": lr})

        def _update(self, p, g, group, state):
            p.data -= group["lr"] * g

    w = _strict([1.0], requires_grad=True)
    (w * w).sum().backward()
    with pytest.raises(TypeError, match="PlainGD updates NumPy parameters only"):
        PlainGD([w]).step()


def test_lazy_dask_gradients_are_refused_by_lbfgs_too():
    da = pytest.importorskip("dask.array")
    v = ad.tensor(np.ones(2), requires_grad=True)
    x = ad.tensor(da.from_array(np.array([1.0, 2.0]), chunks=1))
    opt = optim.LBFGS([v])

    def closure():
        opt.zero_grad()
        loss = (x * v).sum()
        loss.backward()
        return ad.compute(loss)[0]

    with pytest.raises(TypeError, match=r"LBFGS.step\(\): the .grad .* lazy Dask array.*compute"):
        opt.step(closure)


# ----- benchmarks/cupy_mlp.py ----------------------------------------------------------------
def test_the_gpu_benchmark_runs_on_strict_arrays(capsys):
    """The script's code path on the CPU stand-in (the conversion to NumPy patched)."""
    assert cupy_mlp.main(["--xp", "array_api_strict", "--width", "32", "--steps", "3"]) == 0
    out = capsys.readouterr().out
    assert "MLP 32-32-32-10, batch 256, float64, adam" in out
    assert "targets: met" in out


def test_the_gpu_benchmark_skips_without_a_gpu():
    if not isinstance(cupy_mlp.library("cupy"), str):
        pytest.skip("a GPU is present: the benchmark runs for real")
    script = ROOT / "benchmarks" / "cupy_mlp.py"
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("no GPU: skipped")
