"""``nn.init`` and ``nn.utils``: by hand and against PyTorch when it is installed."""

from __future__ import annotations

import math

import numpy as np
import pytest

import autodiffx as ad
import autodiffx.nn as nn
from autodiffx.nn import init

SHAPES = [(7, 5), (5, 7), (4, 3, 2, 2)]


def _fans(shape):
    field = math.prod(shape[2:])
    return shape[1] * field, shape[0] * field


def _fans_used(shape):
    """(fan_in, fan_out) as ``kaiming_normal_`` uses them: with ``nonlinearity="linear"`` it
    draws ``standard_normal / sqrt(fan)`` from the generator."""
    z = np.random.default_rng(0).standard_normal(shape).ravel()
    i = int(np.argmax(np.abs(z)))
    fans = []
    for mode in ("fan_in", "fan_out"):
        w = init.kaiming_normal_(ad.zeros(shape), mode=mode, nonlinearity="linear", rng=0)
        fans.append(round(float(z[i] / w.data.ravel()[i]) ** 2))
    return tuple(fans)


def test_kaiming_uses_pytorchs_fans():
    for shape in SHAPES:
        assert _fans_used(shape) == _fans(shape)


# ----- nn.init -----------------------------------------------------------------------------
def test_fills_are_in_place_without_graph_and_keep_flags():
    w = nn.Parameter(np.full((2, 3), 9.0))
    data = w.data
    for fn in (init.zeros_, init.ones_, lambda t: init.constant_(t, 0.25)):
        assert fn(w) is w
    assert w.data is data and w.requires_grad and w.grad_fn is None
    np.testing.assert_array_equal(w.data, np.full((2, 3), 0.25))
    init.zeros_(w)
    assert not w.data.any()
    assert init.normal_(w, rng=0) is w and w.grad_fn is None and w.requires_grad


def test_random_fills_use_rng_reproducibly():
    a = init.normal_(ad.zeros((3, 4)), 1.0, 2.0, rng=5).data
    np.testing.assert_array_equal(a, np.random.default_rng(5).normal(1.0, 2.0, (3, 4)))
    b = init.uniform_(ad.zeros(4), -2.0, 3.0, rng=np.random.default_rng(1)).data
    np.testing.assert_array_equal(b, np.random.default_rng(1).uniform(-2.0, 3.0, 4))
    gen = np.random.default_rng(0)
    first = init.xavier_normal_(ad.zeros((3, 4)), rng=gen).data
    second = init.xavier_normal_(ad.zeros((3, 4)), rng=gen).data
    assert not np.array_equal(first, second)  # the generator advances
    f32 = init.kaiming_uniform_(ad.zeros((3, 4), dtype=np.float32), rng=0)
    assert f32.dtype == np.float32
    with pytest.raises(TypeError, match="floating-point Tensor"):
        init.normal_(ad.zeros(3, dtype=np.int64), rng=0)
    with pytest.raises(TypeError, match="rng must be"):
        init.normal_(ad.zeros(3), rng="seed")
    with pytest.raises(TypeError, match="expected an autodiffx Tensor"):
        init.zeros_(np.zeros(3))


def test_gains_by_hand():
    for name in ("linear", "conv2d", "sigmoid"):
        assert init.calculate_gain(name) == 1.0
    assert init.calculate_gain("tanh") == 5 / 3
    assert init.calculate_gain("relu") == math.sqrt(2)
    assert init.calculate_gain("leaky_relu") == math.sqrt(2 / (1 + 0.01**2))
    assert init.calculate_gain("leaky_relu", 0.2) == math.sqrt(2 / 1.04)
    assert init.calculate_gain("selu") == 0.75
    with pytest.raises(ValueError, match="unsupported nonlinearity 'swish'"):
        init.calculate_gain("swish")


@pytest.mark.parametrize("shape", SHAPES)
def test_scaled_inits_bounds_and_spread(shape):
    fan_in, fan_out = _fans(shape)
    big = (shape[0] * 200, *shape[1:])  # many rows: sample statistics settle (fixed seed)
    a = 1.5 * math.sqrt(6 / (fan_in + fan_out))
    w = init.xavier_uniform_(ad.zeros(shape), gain=1.5, rng=0).data
    assert np.abs(w).max() <= a
    bound = math.sqrt(2) * math.sqrt(3 / fan_out)
    wk = init.kaiming_uniform_(ad.zeros(shape), mode="fan_out", nonlinearity="relu", rng=0)
    assert np.abs(wk.data).max() <= bound
    std = math.sqrt(2 / (big[1] * math.prod(big[2:]) + big[0] * math.prod(big[2:])))
    s = init.xavier_normal_(ad.zeros(big), rng=1).data.std()
    assert s == pytest.approx(std, rel=0.05)
    s = init.kaiming_normal_(ad.zeros(big), a=0.2, rng=2).data.std()
    assert s == pytest.approx(math.sqrt(2 / 1.04) / math.sqrt(fan_in), rel=0.05)
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        init.xavier_uniform_(ad.zeros(3))
    with pytest.raises(ValueError, match="mode must be 'fan_in' or 'fan_out'"):
        init.kaiming_normal_(ad.zeros(shape), mode="in")


def test_kaiming_takes_pytorchs_positional_arguments():
    for fill in (init.kaiming_uniform_, init.kaiming_normal_):
        by_position = fill(ad.zeros((4, 6)), 0.3, "fan_out", "leaky_relu", 5).data
        by_name = fill(ad.zeros((4, 6)), a=0.3, mode="fan_out", rng=5).data
        np.testing.assert_array_equal(by_position, by_name)
    with pytest.raises(TypeError):
        init.kaiming_normal_(ad.zeros((4, 6)), 0.3, "fan_in", "relu", 0, "extra")


@pytest.mark.parametrize("shape", SHAPES)
def test_orthogonal_by_hand(shape):
    q = init.orthogonal_(ad.zeros(shape), gain=2.0, rng=0).data.reshape(shape[0], -1)
    small = min(q.shape)
    gram = q @ q.T if q.shape[0] == small else q.T @ q
    np.testing.assert_allclose(gram, 4 * np.eye(small), atol=1e-13)
    with pytest.raises(ValueError, match="2 or more dimensions"):
        init.orthogonal_(ad.zeros(3))


@pytest.mark.oracle
def test_init_matches_pytorch():
    torch = pytest.importorskip("torch")
    ti = torch.nn.init
    names = ["linear", "conv3d", "sigmoid", "tanh", "relu", "leaky_relu", "selu"]
    for name, p in [(n, None) for n in names] + [("leaky_relu", 0.3)]:
        assert init.calculate_gain(name, p) == ti.calculate_gain(name, p)
    for shape in SHAPES:
        t = torch.zeros(shape, dtype=torch.float64)
        assert _fans_used(shape) == ti._calculate_fan_in_and_fan_out(t)
        for fn in ("zeros_", "ones_"):
            np.testing.assert_array_equal(getattr(init, fn)(ad.zeros(shape)).data,
                                          getattr(ti, fn)(t).numpy())  # fmt: skip
    # orthogonal_: PyTorch's recipe on the same normal draws, with torch's QR
    for shape in SHAPES:
        rows = shape[0]
        z = np.random.default_rng(3).standard_normal((rows, math.prod(shape) // rows))
        zt = torch.tensor(z.T if z.shape[0] < z.shape[1] else z)
        qt, rt = torch.linalg.qr(zt)
        qt = qt * torch.sign(torch.diagonal(rt))
        qt = (qt.T if z.shape[0] < z.shape[1] else qt).reshape(shape) * 1.5
        ours = init.orthogonal_(ad.zeros(shape), gain=1.5, rng=3).data
        np.testing.assert_allclose(ours, qt.numpy(), rtol=1e-12, atol=1e-14)


# ----- nn.utils ----------------------------------------------------------------------------
def _params_with_grads(grads):
    ps = []
    for g in grads:
        p = nn.Parameter(np.zeros(np.shape(g)))
        p.grad = np.asarray(g, dtype=float)
        ps.append(p)
    return ps


def test_clip_grad_norm_by_hand():
    ps = _params_with_grads([[3.0], [4.0]])
    total = nn.utils.clip_grad_norm_(ps, 1.0)
    assert float(total) == 5.0
    coef = 1.0 / (5.0 + 1e-6)
    assert float(ps[0].grad) == 3.0 * coef and float(ps[1].grad) == 4.0 * coef
    ps = _params_with_grads([[1.0, -6.0], [2.0]])
    assert float(nn.utils.clip_grad_norm_(ps, 3.0, norm_type=math.inf)) == 6.0
    np.testing.assert_allclose(ps[0].grad.data, np.array([1.0, -6.0]) * 3 / (6 + 1e-6))
    ps = _params_with_grads([[0.3], [0.4]])
    assert float(nn.utils.clip_grad_norm_(ps, 1.0, norm_type=1)) == pytest.approx(0.7)
    assert float(ps[0].grad) == 0.3  # below max_norm: the factor is 1
    ps.append(nn.Parameter([1.0]))  # no grad: skipped
    nn.utils.clip_grad_norm_(ps, 1.0)
    assert ps[2].grad is None
    assert float(nn.utils.clip_grad_norm_(nn.Parameter([1.0]), 1.0)) == 0.0
    bad = _params_with_grads([[np.inf, 1.0]])
    with pytest.raises(RuntimeError, match=r"total norm of order 2\.0 .* is inf"):
        nn.utils.clip_grad_norm_(bad, 1.0, error_if_nonfinite=True)
    np.testing.assert_array_equal(bad[0].grad.data, [np.inf, 1.0])  # unchanged


def test_clip_grad_value_by_hand():
    ps = _params_with_grads([[-3.0, 0.5], [2.0]])
    assert nn.utils.clip_grad_value_(ps, 1.0) is None
    np.testing.assert_array_equal(ps[0].grad.data, [-1.0, 0.5])
    np.testing.assert_array_equal(ps[1].grad.data, [1.0])


def test_parameters_vector_round_trip_and_gradient():
    lin = nn.Linear(3, 2, rng=0)
    w, b = lin.weight, lin.bias
    vec = nn.utils.parameters_to_vector(lin.parameters())
    np.testing.assert_array_equal(vec.data, np.concatenate([w.data.ravel(), b.data]))
    (vec * np.arange(8.0)).sum().backward()
    np.testing.assert_array_equal(w.grad.data, np.arange(6.0).reshape(2, 3))
    np.testing.assert_array_equal(b.grad.data, [6.0, 7.0])
    nn.utils.vector_to_parameters(np.arange(8.0), lin.parameters())
    assert lin.weight is w and w.requires_grad and w.grad_fn is None
    np.testing.assert_array_equal(w.data, np.arange(6.0).reshape(2, 3))
    np.testing.assert_array_equal(b.data, [6.0, 7.0])
    with pytest.raises(ValueError, match=r"1-D vector of length 8 .* got shape \(7,\)"):
        nn.utils.vector_to_parameters(np.arange(7.0), lin.parameters())
    with pytest.raises(TypeError, match="expected Tensors or Parameters"):
        nn.utils.parameters_to_vector([np.zeros(2)])
    with pytest.raises(ValueError, match="no parameters"):
        nn.utils.parameters_to_vector([])


@pytest.mark.oracle
def test_utils_match_pytorch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    grads = [rng.normal(size=s) * 3 for s in [(3, 4), (4,), (2, 2, 2)]]
    for norm_type in (2.0, 1.0, 3.0, math.inf, 0.5):
        for max_norm in (0.1, 1.0, 1e3):
            ours = _params_with_grads(grads)
            theirs = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in grads]
            for p, g in zip(theirs, grads, strict=True):
                p.grad = torch.tensor(g)
            ta = nn.utils.clip_grad_norm_(ours, max_norm, norm_type)
            tt = torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type)
            assert float(ta) == pytest.approx(float(tt), rel=1e-14)
            for p, q in zip(ours, theirs, strict=True):
                np.testing.assert_allclose(p.grad.data, q.grad.numpy(), rtol=1e-14)
    ours = _params_with_grads(grads)
    theirs = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in grads]
    for p, g in zip(theirs, grads, strict=True):
        p.grad = torch.tensor(g)
    nn.utils.clip_grad_value_(ours, 0.7)
    torch.nn.utils.clip_grad_value_(theirs, 0.7)
    for p, q in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(p.grad.data, q.grad.numpy())
    vec = nn.utils.parameters_to_vector(ours)
    np.testing.assert_array_equal(vec.data, torch.nn.utils.parameters_to_vector(theirs).detach())
    new = rng.normal(size=vec.shape)
    nn.utils.vector_to_parameters(new, ours)
    torch.nn.utils.vector_to_parameters(torch.tensor(new), theirs)
    for p, q in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(p.data, q.detach().numpy())
