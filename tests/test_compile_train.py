"""ad.compile of a training step: backward() into .grad, zero_grad() and optimizer.step()
replayed with the same side effects as eager, bit for bit; ``autodiffx train --compile``."""

from __future__ import annotations

import numpy as np
import pytest
from _train_steps import assert_compiled_step_is_eagers

import autodiffx as ad
from autodiffx import nn
from autodiffx.compiler import CompileError
from autodiffx.nn import functional as F
from autodiffx.train import TrainConfig, fit

OPTIMIZERS = {
    "sgd": lambda ps: ad.optim.SGD(ps, lr=0.1, momentum=0.9),
    "adam": lambda ps: ad.optim.Adam(ps, lr=0.01),
}


def _setup(opt_name, dtype):
    model = nn.Sequential(nn.Linear(4, 8, rng=0), nn.Tanh(), nn.Linear(8, 3, rng=1))
    for p in model.parameters():
        p.data = p.data.astype(dtype)
    opt = OPTIMIZERS[opt_name](model.parameters())

    def step(x, y):
        opt.zero_grad()
        loss = ad.mean((model(x) - y) ** 2)
        loss.backward()
        opt.step()
        return loss

    return model, opt, step


def _snapshot(model, opt, loss):
    params = [p.data.copy() for p in model.parameters()]
    grads = [p.grad.data.copy() for p in model.parameters()]
    state = [
        {k: np.copy(v) if isinstance(v, np.ndarray) else v for k, v in opt.state[p].items()}
        for p in model.parameters()
    ]
    return params, grads, state, loss.data.copy()


def _assert_same(a, b):
    for x, y in zip(a[0] + a[1] + [a[3]], b[0] + b[1] + [b[3]], strict=True):
        assert x.dtype == y.dtype and np.array_equal(x, y)
    for sa, sb in zip(a[2], b[2], strict=True):
        assert sa.keys() == sb.keys()
        for k in sa:
            assert type(sa[k]) is type(sb[k]) and np.array_equal(sa[k], sb[k]), k


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
def test_a_training_step_replays_bit_for_bit(opt_name, dtype):
    eager = _setup(opt_name, dtype)
    compiled = _setup(opt_name, dtype)
    cstep = ad.compile(compiled[2])
    ids = [id(p.data) for p in compiled[0].parameters()]
    rng = np.random.default_rng(0)
    for _ in range(20):
        x = rng.standard_normal((5, 4)).astype(dtype)
        y = rng.standard_normal((5, 3)).astype(dtype)
        a = _snapshot(eager[0], eager[1], eager[2](x, y))
        b = _snapshot(compiled[0], compiled[1], cstep(x, y))
        _assert_same(a, b)
    assert cstep.cache_info() == {"hits": 19, "recordings": 1, "signatures": 1}
    assert [id(p.data) for p in compiled[0].parameters()] == ids  # updated in place
    src = cstep.source
    assert "zero_grad()" in src and "backward() into .grad" in src
    assert f"{type(compiled[1]).__name__}.step()" in src


def test_a_changed_batch_shape_records_again():
    _, opt, step = _setup("adam", np.float64)
    cstep = ad.compile(step)
    rng = np.random.default_rng(1)
    for n in (5, 5, 3, 5, 3):
        cstep(rng.standard_normal((n, 4)), rng.standard_normal((n, 3)))
    assert cstep.cache_info() == {"hits": 3, "recordings": 2, "signatures": 2}
    assert all(s["step"] == 5 for s in opt.state.values())


def test_zero_grad_to_zeros_and_accumulation_replay():
    w = ad.tensor([1.0, -2.0], requires_grad=True)
    w2 = ad.tensor([1.0, -2.0], requires_grad=True)
    opts = [ad.optim.SGD([v], lr=0.1) for v in (w, w2)]

    def make(v, opt):
        def step(x):
            opt.zero_grad(set_to_none=False)
            (v * x).sum().backward()
            ((v * v) * x).sum().backward()  # accumulates into .grad
            opt.step()
            return v * 1.0

        return step

    w.grad, w2.grad = np.zeros(2), np.zeros(2)
    f, cf = make(w, opts[0]), ad.compile(make(w2, opts[1]))
    for k in range(4):
        x = np.array([0.5 + k, -1.5])
        a, b = f(x), cf(x)
        assert np.array_equal(a.data, b.data) and np.array_equal(w.grad.data, w2.grad.data)
        assert np.array_equal(w.data, w2.data)
    assert cf.cache_info()["recordings"] == 1


def test_cross_entropy_steps_replay_without_recording_again():
    model = nn.Sequential(nn.Linear(4, 3, rng=0))
    opt = ad.optim.Adam(model.parameters(), lr=0.1)

    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    cstep = ad.compile(step)
    rng = np.random.default_rng(2)
    for _ in range(4):
        cstep(rng.standard_normal((6, 4)), rng.integers(0, 3, 6))
    assert cstep.cache_info()["recordings"] == 1
    assert "cross_entropy's VJP" in cstep.source
    # targets out of range take the general path: the guard records another variant
    cstep(rng.standard_normal((6, 4)), np.array([0, 1, 2, 0, 1, -100]))
    assert cstep.cache_info()["recordings"] == 2


def _dropout_setup(opt_name, dtype, seed):
    model = nn.Sequential(
        nn.Linear(4, 8, rng=0),
        nn.Tanh(),
        nn.Dropout(0.3, rng=seed),
        nn.Linear(8, 8, rng=1),
        nn.Dropout(0.5, rng=np.random.default_rng(seed + 1)),
        nn.Linear(8, 3, rng=2),
    )
    for p in model.parameters():
        p.data = p.data.astype(dtype)
    opt = OPTIMIZERS[opt_name](model.parameters())

    def step(x, y):
        opt.zero_grad()
        h = F.dropout(model(x), 0.2, rng=model[2].rng)  # (a third draw from one generator)
        loss = F.cross_entropy(h, y)
        loss.backward()
        opt.step()
        return loss

    return model, opt, step


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
def test_a_training_step_with_dropout_replays_the_generators_bit_for_bit(opt_name, dtype):
    # The masks are drawn at every replay from the same Generators, in the same order, as
    # eager: the same weights, gradients, optimizer state and generator states after 10 steps.
    eager, compiled = _dropout_setup(opt_name, dtype, 7), _dropout_setup(opt_name, dtype, 7)
    cstep = ad.compile(compiled[2])
    rng = np.random.default_rng(0)
    for _ in range(10):
        x, y = rng.standard_normal((5, 4)).astype(dtype), rng.integers(0, 3, 5)
        _assert_same(
            _snapshot(eager[0], eager[1], eager[2](x, y)),
            _snapshot(compiled[0], compiled[1], cstep(x, y)),
        )
        for k in (2, 4):
            a, b = eager[0][k].rng.bit_generator.state, compiled[0][k].rng.bit_generator.state
            assert a == b
    assert cstep.cache_info() == {"hits": 9, "recordings": 1, "signatures": 1}
    assert cstep.source.count("dropout's mask") == 3


def _assert_equal_tensors(a, b):
    assert a.dtype == b.dtype and np.array_equal(a.data, b.data)


def test_dropout_draws_at_every_replay():
    # A Generator advances, a seed draws the same mask at every call (as eager), None a fresh one.
    x = np.ones(64)
    for rng, same in ((np.random.default_rng(3), False), (3, True), (None, False)):
        cf = ad.compile(lambda x, rng=rng: F.dropout(x, 0.5, rng=rng))
        outs = [cf(x).data for _ in range(3)]
        assert cf.cache_info()["hits"] == 2
        assert all(np.array_equal(outs[0], o) == same for o in outs[1:])
    g1, g2 = np.random.default_rng(5), np.random.default_rng(5)
    cf = ad.compile(lambda x: nn.functional.dropout2d(x, 0.5, rng=g1) * 2)
    for _ in range(3):
        got, want = (
            cf(np.ones((2, 8, 1, 1))),
            nn.functional.dropout2d(ad.ones((2, 8, 1, 1)), 0.5, rng=g2) * 2,
        )
        assert np.array_equal(got.data, want.data)
    # two draws with the same arguments are two draws (never shared as one step)
    g5, g6 = np.random.default_rng(8), np.random.default_rng(8)

    def twice(x, g):
        return F.dropout(x, 0.5, rng=g) + F.dropout(x, 0.5, rng=g)

    ct = ad.compile(lambda x: twice(x, g5))
    for _ in range(3):
        _assert_equal_tensors(ct(np.ones(64)), twice(ad.ones(64), g6))
    assert ct.source.count("dropout's mask") == 2
    # an unused mask is still drawn (the generator advances as in eager)
    g3, g4 = np.random.default_rng(6), np.random.default_rng(6)

    def unused(x, g):
        F.dropout(x, 0.5, rng=g)
        return x * 2

    cu = ad.compile(lambda x: unused(x, g3))
    for _ in range(3):
        cu(np.ones(4))
        unused(ad.ones(4), g4)
    assert g3.bit_generator.state == g4.bit_generator.state


def test_unsupported_side_effects_are_still_refused():
    def init_inside(x):  # a layer made inside: its weights would be the recording's
        return nn.Linear(4, 3, rng=np.random.default_rng(0))(x)

    with pytest.raises(CompileError, match="random number generator"):
        ad.compile(init_inside)(np.ones((2, 4)))

    lin = nn.Linear(4, 3, rng=0)
    lbfgs = ad.optim.LBFGS(lin.parameters())

    def closure_step(x):
        def closure():
            lbfgs.zero_grad()
            loss = lin(x).sum()
            loss.backward()
            return loss

        return lbfgs.step(closure)

    with pytest.raises(CompileError, match="side effect"):
        ad.compile(closure_step)(np.ones((2, 4)))

    def clipped(x):
        opt2.zero_grad()
        lin(x).sum().backward()
        nn.utils.clip_grad_norm_(lin.parameters(), 1.0)  # reads .grad
        opt2.step()
        return x

    opt2 = ad.optim.SGD(lin.parameters(), lr=0.1)
    with pytest.raises(CompileError, match=r"read of \.grad"):
        ad.compile(clipped)(np.ones((2, 4)))


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_train_compile_gives_the_eager_weights(optimizer):
    # The check: 20 epochs of the default run (64-64-10 MLP on digits), about 3 s
    # for both modes on the 2-core test machine.
    config = TrainConfig(optimizer=optimizer)
    a = fit(config, epochs=20, plot=False)
    b = fit(config, epochs=20, plot=False, compile=True)
    assert len(a.history["loss"]) == 20
    for p, q in zip(a.model.parameters(), b.model.parameters(), strict=True):
        assert np.array_equal(p.data, q.data)
    assert np.array_equal(a.history["loss"], b.history["loss"])


def test_train_cli_compile(tmp_path, capsys):
    from autodiffx.cli import main

    argv = ["train", "--epochs", "1", "--hidden", "8", "--no-plot", "--quiet"]
    assert main([*argv, "--out", str(tmp_path / "a")]) == 0
    assert main([*argv, "--compile", "--out", str(tmp_path / "b")]) == 0
    a = ad.load(str(tmp_path / "a" / "checkpoint.npz"))
    b = ad.load(str(tmp_path / "b" / "checkpoint.npz"))
    for k, v in a["model"].items():
        assert np.array_equal(np.asarray(v), np.asarray(b["model"][k])), k
    capsys.readouterr()


def test_train_compile_refuses_lbfgs():
    with pytest.raises(ad.train.TrainError, match="lbfgs"):
        fit(TrainConfig(hidden=(8,), optimizer="lbfgs"), epochs=1, plot=False, compile=True)


def test_a_scheduler_step_replays_and_one_with_an_argument_is_refused():
    def run(compiled):
        w = ad.tensor([1.0, -2.0], requires_grad=True)
        opt = ad.optim.SGD([w], lr=0.5, momentum=0.9)
        sched = ad.optim.lr_scheduler.ExponentialLR(opt, gamma=0.5)

        def step(x):
            opt.zero_grad()
            ((w * x) ** 2).sum().backward()
            opt.step()
            sched.step()
            return w * 1.0

        f = ad.compile(step) if compiled else step
        out = [f(np.array([0.5, 1.5 + k])).data for k in range(5)]
        return out, opt.param_groups[0]["lr"], sched.last_epoch

    (a, lr_a, ep_a), (b, lr_b, ep_b) = run(False), run(True)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert (lr_a, ep_a) == (lr_b, ep_b) == (0.5**6, 5)

    w = ad.tensor([1.0], requires_grad=True)
    opt = ad.optim.SGD([w], lr=0.5)
    plateau = ad.optim.lr_scheduler.ReduceLROnPlateau(opt)

    def with_metric(x):
        loss = (w * x).sum()
        plateau.step(loss)
        return x

    with pytest.raises(CompileError, match=r"ReduceLROnPlateau.step\(...\) with an argument"):
        ad.compile(with_metric)(np.ones(1))


@pytest.mark.parametrize("n", [6, 128], ids=["few_rows", "many_rows"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_backward_shares_the_forwards_exponentials(n, dtype):
    # the forward is recorded as its parts (shifted logits, exp, row sums, loss), and the
    # backward's calls of the same parts are the same steps, as a hand-written step reuses
    # them; the replay equals eager bit for bit
    def make():
        model = nn.Sequential(nn.Linear(5, 4, rng=3, dtype=dtype))
        return model, ad.optim.SGD(model.parameters(), lr=0.5)

    rng = np.random.default_rng(5)
    batches = [(rng.standard_normal((n, 5)).astype(dtype), rng.integers(0, 4, n)) for _ in "abc"]
    cstep = assert_compiled_step_is_eagers(make, batches)
    assert cstep.cache_info()["recordings"] == 1
    src = cstep.source
    for part in ("logits - max", "exp", "sums"):
        assert src.count(f"# cross_entropy: {part}\n") == 1, src
    assert src.count("# cross_entropy's VJP") == 1


def test_an_effect_between_cross_entropy_and_its_backward_is_not_crossed():
    # a side effect between the forward and the backward may write into what the forward
    # read: the backward computes its parts again
    w = ad.tensor(np.linspace(-1.0, 1.0, 12).reshape(3, 4), requires_grad=True)
    opt = ad.optim.SGD([w], lr=0.1)

    def step(x, y):
        loss = F.cross_entropy(x @ w, y)
        opt.zero_grad()
        loss.backward()
        return loss

    cstep = ad.compile(step)
    x, y = np.arange(6.0).reshape(2, 3) / 6, np.array([1, 3])
    cstep(x, y)
    g = w.grad.data.copy()
    cstep(x, y)
    np.testing.assert_array_equal(w.grad.data, g)
    assert cstep.source.count("# cross_entropy: exp\n") == 2, cstep.source
