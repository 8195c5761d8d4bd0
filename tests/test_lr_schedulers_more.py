"""MultiStepLR, LinearLR, PolynomialLR, CosineAnnealingWarmRestarts, OneCycleLR and SequentialLR:
step for step PyTorch's learning rates (and OneCycleLR's momenta), stored in
tests/reference/schedulers.npz and compared live when PyTorch is installed."""

from __future__ import annotations

import _reference
import numpy as np
import pytest

import autodiffx as ad
from autodiffx import optim
from autodiffx.optim import lr_scheduler as S

# name -> (optimizer: "sgd" (momentum, two groups) or "adam", scheduler builder)
CASES = {
    "MultiStepLR": ("sgd", lambda s, o: s.MultiStepLR(o, milestones=[3, 7, 7, 12], gamma=0.5)),
    "LinearLR": ("sgd", lambda s, o: s.LinearLR(o, start_factor=0.2, total_iters=7)),
    "LinearLR_down": (
        "sgd",
        lambda s, o: s.LinearLR(o, start_factor=1.0, end_factor=0.1, total_iters=9),
    ),
    "PolynomialLR": ("sgd", lambda s, o: s.PolynomialLR(o, total_iters=11, power=1.7)),
    "CAWR": ("sgd", lambda s, o: s.CosineAnnealingWarmRestarts(o, T_0=4, eta_min=0.01)),
    "CAWR_mult": ("sgd", lambda s, o: s.CosineAnnealingWarmRestarts(o, T_0=3, T_mult=2)),
    "OneCycleLR": ("sgd", lambda s, o: s.OneCycleLR(o, max_lr=[1.0, 0.5], total_steps=30)),
    "OneCycleLR_linear3": (
        "sgd",
        lambda s, o: s.OneCycleLR(
            o, max_lr=0.8, epochs=5, steps_per_epoch=6, anneal_strategy="linear", three_phase=True
        ),
    ),
    "OneCycleLR_adam": ("adam", lambda s, o: s.OneCycleLR(o, max_lr=0.05, total_steps=30)),
    "SequentialLR": (
        "sgd",
        lambda s, o: s.SequentialLR(
            o,
            [s.LinearLR(o, start_factor=0.1, total_iters=5), s.ExponentialLR(o, gamma=0.9)],
            milestones=[5],
        ),
    ),
    "SequentialLR_three": (
        "sgd",
        lambda s, o: s.SequentialLR(
            o,
            [
                s.LambdaLR(o, lambda e: 0.5 if e < 2 else 1.0),
                s.MultiStepLR(o, milestones=[8, 10], gamma=0.3),
                s.PolynomialLR(o, total_iters=8, power=2.0),
            ],
            milestones=[3, 15],
        ),
    ),
    "SequentialLR_cosine": (
        "sgd",
        lambda s, o: s.SequentialLR(
            o, [s.StepLR(o, step_size=2, gamma=0.5), s.CosineAnnealingLR(o, T_max=6)], [6]
        ),
    ),
}
STEPS = 30


def _optimizer(mod, params, kind):
    if kind == "adam":
        return mod.Adam([{"params": params[:1]}, {"params": params[1:], "lr": 0.02}], lr=0.01)
    groups = [{"params": params[:1]}, {"params": params[1:], "lr": 0.1}]
    return mod.SGD(groups, lr=0.3, momentum=0.9)


def sequence(mod_optim, mod_sched, params, name):
    """(STEPS, 2 groups, lr and momentum) of one case: get_last_lr and the momentum, then step."""
    kind, build = CASES[name]
    opt = _optimizer(mod_optim, params, kind)
    sched = build(mod_sched, opt)
    rows = []
    for _ in range(STEPS):
        moms = [g["betas"][0] if kind == "adam" else g["momentum"] for g in opt.param_groups]
        rows.append([list(pair) for pair in zip(sched.get_last_lr(), moms, strict=True)])
        opt.step()
        sched.step()
    return np.array(rows, dtype=np.float64)


def ours(name):
    params = [ad.zeros(1, requires_grad=True), ad.zeros(1, requires_grad=True)]
    return sequence(optim, S, params, name)


def theirs(torch, name):
    """PyTorch's sequence (used by tests/reference/make_torch_references.py)."""
    params = [torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)]
    return sequence(torch.optim, torch.optim.lr_scheduler, params, name)


@pytest.mark.parametrize("name", sorted(CASES))
def test_sequences_match_stored_pytorch(name):
    stored = _reference.load("schedulers")[f"scheduler/{name}"]
    np.testing.assert_allclose(ours(name), stored, rtol=1e-12, atol=0)


@pytest.mark.oracle
@pytest.mark.parametrize("name", sorted(CASES))
def test_sequences_match_pytorch(name):
    torch = pytest.importorskip("torch")
    np.testing.assert_allclose(ours(name), theirs(torch, name), rtol=1e-12, atol=0)


def test_warm_restarts_take_a_fractional_epoch():
    opt = optim.SGD([ad.zeros(1, requires_grad=True)], lr=1.0)
    sched = S.CosineAnnealingWarmRestarts(opt, T_0=4, T_mult=2)
    for epoch, want in [
        (1.5, (1 + np.cos(np.pi * 1.5 / 4)) / 2),
        (5.0, 0.5 * (1 + np.cos(np.pi / 8))),
    ]:
        sched.step(epoch)
        assert sched.get_last_lr()[0] == pytest.approx(want, rel=1e-12)
    with pytest.raises(ValueError, match="non-negative epoch"):
        sched.step(-1)


def test_one_cycle_refuses_stepping_past_total_steps():
    opt = optim.SGD([ad.zeros(1, requires_grad=True)], lr=1.0, momentum=0.9)
    sched = S.OneCycleLR(opt, max_lr=1.0, total_steps=3)
    for _ in range(3):
        sched.step()
    with pytest.raises(ValueError, match="total steps is 3"):
        sched.step()


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda o: S.OneCycleLR(o, max_lr=1.0), "total_steps OR"),
        (lambda o: S.OneCycleLR(o, max_lr=1.0, total_steps=5, pct_start=1), "pct_start"),
        (lambda o: S.OneCycleLR(o, max_lr=[1.0, 2.0], total_steps=5), "same length"),
        (lambda o: S.LinearLR(o, start_factor=0.0), "greater than 0"),
        (lambda o: S.CosineAnnealingWarmRestarts(o, T_0=0), "positive integer T_0"),
        (lambda o: S.SequentialLR(o, [S.StepLR(o, 2)], milestones=[3]), "one more"),
        (lambda o: S.SequentialLR(o, [S.ReduceLROnPlateau(o), S.StepLR(o, 2)], [3]), "Plateau"),
    ],
)
def test_invalid_arguments_raise(build, match):
    opt = optim.SGD([ad.zeros(1, requires_grad=True)], lr=1.0, momentum=0.9)
    with pytest.raises(ValueError, match=match):
        build(opt)


def test_one_cycle_needs_a_momentum_to_cycle():
    opt = optim.Adagrad([ad.zeros(1, requires_grad=True)], lr=1.0)
    with pytest.raises(ValueError, match="momentum or beta1"):
        S.OneCycleLR(opt, max_lr=1.0, total_steps=5)
    S.OneCycleLR(opt, max_lr=1.0, total_steps=5, cycle_momentum=False).step()


def test_sequential_state_dict_round_trip():
    def build():
        opt = optim.SGD([ad.zeros(1, requires_grad=True)], lr=1.0)
        return S.SequentialLR(opt, [S.LinearLR(opt, 0.5, total_iters=3), S.StepLR(opt, 2)], [3])

    a = build()
    for _ in range(4):
        a.step()
    b = build()
    b.optimizer.load_state_dict(a.optimizer.state_dict())  # the chainable rules read its lr
    b.load_state_dict(a.state_dict())
    for _ in range(5):
        a.step()
        b.step()
        assert a.get_last_lr() == b.get_last_lr()
