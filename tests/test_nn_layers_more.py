"""Flatten, Unflatten, LayerNorm, Embedding and the loss modules: by hand, by central
differences, and against PyTorch when it is installed."""

from __future__ import annotations

import numpy as np
import pytest

import autodiffx as ad
import autodiffx.nn as nn
from autodiffx.fd import directional
from autodiffx.nn import functional as F


def _grad(fn, x):
    xt = ad.tensor(x, requires_grad=True)
    return ad.autograd.grad(fn(xt), xt)[0].data


def _check_fd(fn, x, seed=0):
    """The VJP of sum(u * fn) against central differences, and the HVP likewise."""
    rng = np.random.default_rng(seed)
    v = rng.normal(size=np.shape(x))

    def f_np(xx):
        return fn(ad.tensor(xx)).data

    (jv,) = directional(lambda xx: np.sum(f_np(xx)), [x], [v])
    g = _grad(lambda t: fn(t).sum(), x)
    assert np.sum(g * v) == pytest.approx(float(jv), rel=1e-8, abs=1e-10)


# ----- Flatten / Unflatten ---------------------------------------------------------------
def test_flatten_unflatten_shapes_and_gradient():
    x = np.arange(24.0).reshape(2, 3, 4)
    assert nn.Flatten()(x).shape == (2, 12)
    assert nn.Flatten(0, -1)(x).shape == (24,)
    assert nn.Flatten(-2)(x).shape == (2, 12)
    assert nn.Flatten(0, 1)(x).shape == (6, 4)
    np.testing.assert_array_equal(nn.Flatten()(x).data, x.reshape(2, 12))
    assert nn.Unflatten(1, (3, -1))(x.reshape(2, 12)).shape == (2, 3, 4)
    assert nn.Unflatten(-1, (2, 2))(x).shape == (2, 3, 2, 2)
    xt = ad.tensor(x, requires_grad=True)
    (nn.Unflatten(1, (4, 3))(nn.Flatten()(xt)) * 2).sum().backward()
    np.testing.assert_array_equal(xt.grad.data, np.full(x.shape, 2.0))
    assert repr(nn.Flatten()) == "Flatten(start_dim=1, end_dim=-1)"
    with pytest.raises(ValueError, match="start_dim 2 comes after end_dim 1"):
        nn.Flatten(2, 1)(x)
    with pytest.raises(IndexError, match="dimension 3 is out of range for a 3-D input"):
        nn.Flatten(3)(x)
    with pytest.raises(ValueError, match=r"cannot split axis 1 of size 12 .* into \(5, -1\)"):
        nn.Unflatten(1, (5, -1))(x.reshape(2, 12))
    with pytest.raises(ValueError, match="product must equal"):
        nn.Unflatten(1, (3, 3))(x.reshape(2, 12))


@pytest.mark.oracle
def test_flatten_unflatten_match_pytorch():
    torch = pytest.importorskip("torch")
    x = np.arange(120.0).reshape(2, 3, 4, 5)
    for s, e in [(1, -1), (0, 2), (-3, -2), (2, 2)]:
        assert nn.Flatten(s, e)(x).shape == tuple(torch.nn.Flatten(s, e)(torch.tensor(x)).shape)
    for d, sizes in [(1, (1, 3)), (-1, (5, 1)), (2, (2, -1))]:
        got = nn.Unflatten(d, sizes)(x).shape
        assert got == tuple(torch.nn.Unflatten(d, sizes)(torch.tensor(x)).shape)


# ----- LayerNorm ---------------------------------------------------------------------------
def test_layer_norm_by_hand_and_central_differences():
    ln = nn.LayerNorm(3, eps=0.0)
    y = ln(ad.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 3.0]]))
    np.testing.assert_allclose(y.data[0], np.array([-1, 0, 1]) / np.sqrt(2 / 3), rtol=1e-14)
    np.testing.assert_allclose(y.data[1], np.array([-1, -1, 2]) / np.sqrt(2), rtol=1e-14)
    rng = np.random.default_rng(1)
    ln = nn.LayerNorm((2, 3))
    assert [n for n, _ in ln.named_parameters()] == ["weight", "bias"]
    with ad.no_grad():
        ln.weight[...] = rng.normal(size=(2, 3))
        ln.bias[...] = rng.normal(size=(2, 3))
    x = rng.normal(size=(4, 2, 3))
    _check_fd(lambda t: ln(t) * np.arange(6.0).reshape(2, 3), x)
    # second order (the Hessian-vector product) against differences of the gradient
    v = rng.normal(size=x.shape)
    (hv_fd,) = directional(lambda xx: _grad(lambda t: (ln(t) ** 3).sum(), xx), [x], [v])
    xt = ad.tensor(x, requires_grad=True)
    (g,) = ad.autograd.grad((ln(xt) ** 3).sum(), xt, create_graph=True)
    (hv,) = ad.autograd.grad((g * v).sum(), xt)
    np.testing.assert_allclose(hv.data, hv_fd, rtol=1e-6, atol=1e-8)
    assert list(nn.LayerNorm(4, elementwise_affine=False).parameters()) == []
    assert [n for n, _ in nn.LayerNorm(4, bias=False).named_parameters()] == ["weight"]
    with pytest.raises(ValueError, match=r"does not end with normalized_shape \(2, 3\)"):
        ln(ad.ones((3, 2)))


@pytest.mark.oracle
@pytest.mark.parametrize(("affine", "bias"), [(True, True), (True, False), (False, True)])
def test_layer_norm_matches_pytorch(affine, bias):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3, 4, 5)) * 3 + 1
    ours = nn.LayerNorm((4, 5), eps=1e-3, elementwise_affine=affine, bias=bias)
    theirs = torch.nn.LayerNorm((4, 5), eps=1e-3, elementwise_affine=affine, bias=bias).double()
    pa, pt = list(ours.parameters()), list(theirs.parameters())
    for p, q in zip(pa, pt, strict=True):
        vals = rng.normal(size=p.shape)
        with ad.no_grad():
            p[...] = vals
        with torch.no_grad():
            q.copy_(torch.tensor(vals))
    xa, xt = ad.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    ya, yt = ours(xa), theirs(xt)
    np.testing.assert_allclose(ya.data, yt.detach().numpy(), rtol=1e-12, atol=1e-14)
    u = rng.normal(size=x.shape)
    (ya * u).sum().backward()
    (yt * torch.tensor(u)).sum().backward()
    np.testing.assert_allclose(xa.grad.data, xt.grad.numpy(), rtol=1e-11, atol=1e-13)
    for p, q in zip(pa, pt, strict=True):
        np.testing.assert_allclose(p.grad.data, q.grad.numpy(), rtol=1e-11, atol=1e-13)


# ----- Embedding ---------------------------------------------------------------------------
def test_embedding_lookup_gradient_and_padding():
    emb = nn.Embedding(5, 3, padding_idx=1, rng=0)
    assert not emb.weight.data[1].any()  # the padding row starts at zero
    with ad.no_grad():
        emb.weight[1] = 7.0  # ... and, whatever it holds, gets no gradient
    idx = np.array([[1, 2, 2], [4, 1, 0]])
    out = emb(idx)
    np.testing.assert_array_equal(out.data, emb.weight.data[idx])
    out.backward(ad.ones(out.shape))
    counts = np.array([1, 0, 2, 0, 1])[:, None] * np.ones(3)  # uses per row; padding: 0
    np.testing.assert_array_equal(emb.weight.grad.data, counts)
    emb2 = nn.Embedding(5, 3, rng=0)
    assert emb2.weight.data[1].any()
    np.testing.assert_array_equal(emb2.weight.data, nn.Embedding(5, 3, rng=0).weight.data)
    assert repr(emb) == "Embedding(5, 3, padding_idx=1)"
    with pytest.raises(IndexError, match="index 5 is out of range for 5 embeddings"):
        emb([0, 5])
    with pytest.raises(IndexError, match="index -1 is out of range"):
        emb([-1])
    with pytest.raises(TypeError, match="indices must be integers"):
        emb([0.0])
    with pytest.raises(ValueError, match="padding_idx 5 must be within"):
        nn.Embedding(5, 3, padding_idx=5)
    frozen = nn.Embedding.from_pretrained([[1.0, 2.0], [3.0, 4.0]])
    assert not frozen.weight.requires_grad and not frozen(ad.tensor([1, 0])).requires_grad
    live = nn.Embedding.from_pretrained(np.eye(2), freeze=False)
    assert live(np.array([1])).requires_grad


@pytest.mark.oracle
def test_embedding_matches_pytorch():
    torch = pytest.importorskip("torch")
    ours = nn.Embedding(6, 4, padding_idx=2, rng=3)
    theirs = torch.nn.Embedding(6, 4, padding_idx=2).double()
    with torch.no_grad():
        theirs.weight.copy_(torch.tensor(ours.weight.data))
    idx = np.array([[2, 0, 5], [5, 5, 2]])
    ya, yt = ours(idx), theirs(torch.tensor(idx))
    np.testing.assert_array_equal(ya.data, yt.detach().numpy())
    u = np.random.default_rng(0).normal(size=ya.shape)
    (ya * u).sum().backward()
    (yt * torch.tensor(u)).sum().backward()
    np.testing.assert_allclose(ours.weight.grad.data, theirs.weight.grad.numpy(), rtol=1e-15)


# ----- losses ------------------------------------------------------------------------------
def test_huber_loss_by_hand_and_central_differences():
    d = ad.tensor([0.0, 0.5, -2.0, 3.0])
    np.testing.assert_allclose(
        F.huber_loss(d, np.zeros(4), reduction="none").data, [0.0, 0.125, 1.5, 2.5]
    )
    assert float(nn.HuberLoss(delta=2.0)(ad.tensor([1.0, 3.0]), [0.0, 0.0])) == 2.25
    x = np.array([0.3, -0.7, 2.5, -4.0, 1.2])
    t = np.array([0.0, 0.1, 0.0, 0.5, 1.0])
    _check_fd(lambda z: F.huber_loss(z, t, reduction="none", delta=1.5), x)
    # slope delta * sign(d) beyond delta, d inside; continuous at |d| = delta
    g = _grad(lambda z: F.huber_loss(z, np.zeros(3), reduction="sum", delta=1.0), [-1.0, 1.0, 2.0])
    np.testing.assert_array_equal(g, [-1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="delta must be positive"):
        nn.HuberLoss(delta=0.0)


def test_loss_modules_by_hand():
    p = ad.tensor([[0.5, 0.5], [0.25, 0.75]])
    assert float(nn.MSELoss()(ad.tensor([1.0, 2.0]), [0.0, 0.0])) == 2.5
    assert float(nn.L1Loss(reduction="sum")(ad.tensor([1.0, -3.0]), [0.0, 0.0])) == 4.0
    assert float(nn.NLLLoss()(ad.log(p), [0, 1])) == pytest.approx(
        -(np.log(0.5) + np.log(0.75)) / 2, rel=1e-15
    )
    assert float(nn.BCELoss()(ad.tensor([0.5, 0.5]), [1.0, 0.0])) == pytest.approx(np.log(2))
    assert float(nn.BCEWithLogitsLoss()(ad.tensor([0.0]), [1.0])) == pytest.approx(np.log(2))
    # label smoothing 0.3 over 2 classes: targets (0.85, 0.15) against softmax of (0, 0)
    ce = nn.CrossEntropyLoss(label_smoothing=0.3)
    assert float(ce(ad.tensor([[0.0, 0.0]]), [0])) == pytest.approx(np.log(2), rel=1e-15)
    ce = nn.CrossEntropyLoss(label_smoothing=0.3)
    logp = np.log(np.array([np.e, 1.0]) / (np.e + 1))
    assert float(ce(ad.tensor([[1.0, 0.0]]), [0])) == pytest.approx(
        -(0.85 * logp[0] + 0.15 * logp[1])
    )
    w = nn.CrossEntropyLoss(weight=[1.0, 2.0])
    assert list(w.state_dict()) == ["weight"] and list(w.parameters()) == []
    assert list(nn.BCEWithLogitsLoss(pos_weight=[2.0]).state_dict()) == ["pos_weight"]
    assert repr(nn.MSELoss(reduction="sum")) == "MSELoss(reduction='sum')"
    with pytest.raises(ValueError, match="MSELoss: reduction must be"):
        nn.MSELoss(reduction="avg")
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 1\]"):
        nn.CrossEntropyLoss(label_smoothing=1.5)


def _loss_pairs(torch, rng):
    tn = torch.nn
    lab = np.array([0, 3, 1, 1, -100, 2])
    w = np.array([0.5, 1.0, 2.0, 1.5])
    probs = rng.dirichlet(np.ones(4), size=6)
    pw = np.array([1.0, 2.0, 3.0, 0.5])
    T = torch.tensor
    return [
        (nn.MSELoss(), tn.MSELoss(), probs),
        (nn.L1Loss(reduction="sum"), tn.L1Loss(reduction="sum"), probs),
        (nn.HuberLoss(delta=0.7), tn.HuberLoss(delta=0.7), probs),
        (nn.HuberLoss(reduction="none"), tn.HuberLoss(reduction="none"), probs * 4),
        (nn.CrossEntropyLoss(), tn.CrossEntropyLoss(), lab),
        (nn.CrossEntropyLoss(weight=w, label_smoothing=0.2, reduction="sum"),
         tn.CrossEntropyLoss(weight=T(w), label_smoothing=0.2, reduction="sum"), lab),
        (nn.CrossEntropyLoss(label_smoothing=0.1), tn.CrossEntropyLoss(label_smoothing=0.1),
         probs),
        (nn.NLLLoss(weight=w, ignore_index=3), tn.NLLLoss(weight=T(w), ignore_index=3),
         np.where(lab < 0, 3, lab)),
        (nn.BCEWithLogitsLoss(pos_weight=pw), tn.BCEWithLogitsLoss(pos_weight=T(pw)), probs),
        (nn.BCEWithLogitsLoss(weight=w, reduction="none"),
         tn.BCEWithLogitsLoss(weight=T(w), reduction="none"), probs),
        (nn.BCELoss(weight=w), tn.BCELoss(weight=T(w)), probs),
    ]  # fmt: skip


@pytest.mark.oracle
def test_loss_modules_match_pytorch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    x = rng.normal(size=(6, 4)) * 2
    for ours, theirs, target in _loss_pairs(torch, rng):
        xin = 1 / (1 + np.exp(-x)) if isinstance(ours, nn.BCELoss) else x
        xa = ad.tensor(xin, requires_grad=True)
        xt = torch.tensor(xin, requires_grad=True)
        ya = (
            ours(xa, target)
            if not isinstance(ours, nn.NLLLoss)
            else ours(F.log_softmax(xa), target)
        )
        tt = torch.tensor(target)
        yt = (
            theirs(xt, tt)
            if not isinstance(theirs, torch.nn.NLLLoss)
            else theirs(torch.log_softmax(xt, 1), tt)
        )
        np.testing.assert_allclose(ya.data, yt.detach().numpy(), rtol=1e-12, err_msg=repr(ours))
        u = rng.normal(size=ya.shape)
        (ya * u).sum().backward()
        (yt * torch.tensor(u)).sum().backward()
        np.testing.assert_allclose(xa.grad.data, xt.grad.numpy(), rtol=1e-11, atol=1e-14)
