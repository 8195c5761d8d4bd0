"""Convolution, pooling, batch norm and Dropout2d against PyTorch's numbers (values and
gradients, float64, stored in tests/reference/cnn.npz and compared live when PyTorch is
installed), their errors, and a short CNN training run on the embedded digits."""

from __future__ import annotations

import warnings

import _reference
import numpy as np
import pytest

import autodiffx as ad
import autodiffx.nn.functional as F
from autodiffx import nn
from autodiffx.train import evaluate, split_digits, train_epoch

RTOL = 1e-9


def _inputs(shapes, seed):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s) for s in shapes]


# name -> (input shapes, function of (functional module, *inputs)); the functional module is
# autodiffx.nn.functional or torch.nn.functional, called with the same arguments.
def _conv2d(**kw):
    return lambda f, x, w, b: f.conv2d(x, w, b, **kw)


FUNCTIONAL = {
    "conv2d": ([(2, 3, 7, 6), (4, 3, 3, 3), (4,)], _conv2d()),
    "conv2d_stride_pad": ([(2, 3, 7, 6), (4, 3, 3, 2), (4,)], _conv2d(stride=2, padding=(1, 2))),
    "conv2d_same_even": ([(1, 2, 6, 5), (3, 2, 4, 2), (3,)], _conv2d(padding="same")),
    "conv2d_same_dilated": (
        [(1, 2, 7, 7), (3, 2, 3, 3), (3,)],
        _conv2d(padding="same", dilation=2),
    ),
    "conv2d_valid": ([(2, 2, 5, 5), (3, 2, 2, 2), (3,)], _conv2d(padding="valid")),
    "conv2d_groups": (
        [(2, 4, 6, 6), (6, 2, 3, 3), (6,)],
        _conv2d(stride=(1, 2), padding=1, dilation=(2, 1), groups=2),
    ),
    "conv2d_depthwise": ([(1, 3, 5, 5), (3, 1, 3, 3), (3,)], _conv2d(padding=1, groups=3)),
    "conv2d_unbatched": ([(3, 5, 5), (2, 3, 3, 3), (2,)], _conv2d(padding=1)),
    "conv1d": ([(2, 3, 9), (4, 3, 3)], lambda f, x, w: f.conv1d(x, w)),
    "conv1d_all": (
        [(2, 4, 11), (6, 2, 4), (6,)],
        lambda f, x, w, b: f.conv1d(x, w, b, stride=2, padding=3, dilation=2, groups=2),
    ),
    "conv1d_same": ([(1, 2, 8), (2, 2, 4)], lambda f, x, w: f.conv1d(x, w, padding="same")),
    "max_pool2d": ([(2, 3, 6, 6)], lambda f, x: f.max_pool2d(x, 2)),
    "max_pool2d_overlap": ([(2, 2, 7, 6)], lambda f, x: f.max_pool2d(x, 3, stride=2, padding=1)),
    "max_pool2d_dilated": (
        [(1, 2, 8, 7)],
        lambda f, x: f.max_pool2d(x, (3, 2), stride=(1, 2), padding=(1, 1), dilation=(2, 1)),
    ),
    "max_pool2d_relu_ties": ([(2, 2, 6, 6)], lambda f, x: f.max_pool2d(f.relu(x - 1.0), 3, 1, 1)),
    "max_pool2d_unbatched": ([(2, 5, 5)], lambda f, x: f.max_pool2d(x, 2)),
    "avg_pool2d": ([(2, 3, 6, 6)], lambda f, x: f.avg_pool2d(x, 2)),
    "avg_pool2d_pad": ([(2, 2, 7, 6)], lambda f, x: f.avg_pool2d(x, 3, stride=2, padding=1)),
    "avg_pool2d_exclude_pad": (
        [(2, 2, 7, 6)],
        lambda f, x: f.avg_pool2d(x, (3, 2), stride=(2, 1), padding=1, count_include_pad=False),
    ),
    "avg_pool2d_divisor": ([(1, 2, 6, 6)], lambda f, x: f.avg_pool2d(x, 3, divisor_override=4)),
}


def _run(lib, f, shapes, fn, seed=0):
    """Value and the gradient of <value, u> for each input, as NumPy arrays (ours or torch's)."""
    xs = _inputs(shapes, seed)
    if lib == "ad":
        ts = [ad.tensor(x, requires_grad=True) for x in xs]
        y = fn(f, *ts)
        u = np.random.default_rng(seed + 1).standard_normal(y.shape)
        gs = ad.autograd.grad((y * u).sum(), ts)
        return [y.detach().numpy(), *[g.numpy() for g in gs]]
    torch = lib
    ts = [torch.tensor(x, requires_grad=True) for x in xs]
    with warnings.catch_warnings():  # PyTorch notes that 'same' with even kernels copies
        warnings.simplefilter("ignore", UserWarning)
        y = fn(f, *ts)
    u = np.random.default_rng(seed + 1).standard_normal(tuple(y.shape))
    gs = torch.autograd.grad((y * torch.tensor(u)).sum(), ts)
    return [y.detach().numpy(), *[g.numpy() for g in gs]]


def functional_torch(torch, name):
    """PyTorch's value and gradients for one FUNCTIONAL case (tests/reference/cnn.npz)."""
    shapes, fn = FUNCTIONAL[name]
    return _run(torch, torch.nn.functional, shapes, fn)


def _check(ours, theirs, what):
    assert len(ours) == len(theirs)
    for k, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        assert a.shape == b.shape, f"{what}[{k}]: shape {a.shape} != {b.shape}"
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=1e-12, err_msg=f"{what}[{k}]")


@pytest.mark.parametrize("name", sorted(FUNCTIONAL))
def test_functional_matches_stored_pytorch(name):
    shapes, fn = FUNCTIONAL[name]
    stored = _reference.load("cnn")
    n = len(shapes) + 1
    _check(_run("ad", F, shapes, fn), [stored[f"functional/{name}/{k}"] for k in range(n)], name)


@pytest.mark.parametrize("below", [0, 10**9], ids=["per_example", "batch_last"])
@pytest.mark.parametrize("name", sorted(n for n in FUNCTIONAL if not n.startswith("max")))
def test_both_im2col_layouts_match_stored_pytorch(monkeypatch, name, below):
    """conv picks its im2col layout by the output size; these small cases take each one."""
    from autodiffx.nn import conv

    monkeypatch.setattr(conv, "_BATCH_LAST_BELOW", below)
    test_functional_matches_stored_pytorch(name)


@pytest.mark.oracle
@pytest.mark.parametrize("name", sorted(FUNCTIONAL))
def test_functional_matches_pytorch(name):
    torch = pytest.importorskip("torch")
    shapes, fn = FUNCTIONAL[name]
    _check(_run("ad", F, shapes, fn), functional_torch(torch, name), name)


# ----- batch norm: three training batches (running statistics), then evaluation ----------
BATCHNORM = {
    "bn1d": ("BatchNorm1d", (5, 3), {}),
    "bn1d_seq": ("BatchNorm1d", (4, 3, 6), dict(momentum=0.3, eps=1e-3)),
    "bn2d": ("BatchNorm2d", (3, 2, 4, 5), {}),
    "bn2d_cumulative": ("BatchNorm2d", (2, 3, 3, 3), dict(momentum=None)),
    "bn2d_no_affine": ("BatchNorm2d", (2, 2, 3, 4), dict(affine=False)),
    "bn2d_untracked": ("BatchNorm2d", (4, 2, 2, 3), dict(track_running_stats=False)),
}


def batchnorm_sequence(lib, name):
    """Outputs of 3 training batches and 1 evaluation batch, the gradients of the first
    (input, weight, bias) and the final running statistics, as NumPy arrays."""
    cls, shape, kw = BATCHNORM[name]
    torch = None if lib == "ad" else lib
    m = getattr(nn if torch is None else torch.nn, cls)(shape[1], **kw)
    if torch is not None:
        m = m.double()
    tensor = ad.tensor if torch is None else torch.tensor
    rng = np.random.default_rng(3)
    if m.weight is not None:
        w, b = rng.standard_normal(shape[1]), rng.standard_normal(shape[1])
        m.weight.data[...] = w if torch is None else torch.tensor(w)
        m.bias.data[...] = b if torch is None else torch.tensor(b)
    out = []
    for step in range(3):
        x = tensor(rng.standard_normal(shape) * (step + 1) + step, requires_grad=True)
        y = m(x)
        out.append(y.detach().numpy())
        if step == 0:
            wrt = [x] + ([m.weight, m.bias] if m.weight is not None else [])
            loss = (y * tensor(rng.standard_normal(shape))).sum()
            grad = ad.autograd.grad if torch is None else torch.autograd.grad
            out += [np.asarray(g.detach().numpy()) for g in grad(loss, wrt)]
    m.eval()
    out.append(m(tensor(rng.standard_normal(shape))).detach().numpy())
    if m.running_mean is not None:
        out += [m.running_mean.detach().numpy(), m.running_var.detach().numpy()]
        out.append(np.asarray(m.num_batches_tracked.detach().numpy()))
    return out


@pytest.mark.parametrize("name", sorted(BATCHNORM))
def test_batchnorm_matches_stored_pytorch(name):
    ours = batchnorm_sequence("ad", name)
    stored = _reference.load("cnn")
    _check(ours, [stored[f"batchnorm/{name}/{k}"] for k in range(len(ours))], name)


@pytest.mark.oracle
@pytest.mark.parametrize("name", sorted(BATCHNORM))
def test_batchnorm_matches_pytorch(name):
    torch = pytest.importorskip("torch")
    _check(batchnorm_sequence("ad", name), batchnorm_sequence(torch, name), name)


# ----- modules -----------------------------------------------------------------------------
def test_conv_modules_compute_the_functional_and_initialise_like_pytorch():
    conv = nn.Conv2d(4, 6, (3, 2), stride=2, padding=1, groups=2, rng=0)
    assert conv.weight.shape == (6, 2, 3, 2) and conv.bias.shape == (6,)
    bound = 1 / np.sqrt(2 * 3 * 2)  # PyTorch: 1 / sqrt(fan_in), fan_in = in / groups * kh * kw
    assert np.abs(conv.weight.data).max() <= bound and np.abs(conv.weight.data).max() > bound / 2
    x = ad.tensor(np.random.default_rng(1).standard_normal((2, 4, 7, 6)))
    want = F.conv2d(x, conv.weight, conv.bias, stride=2, padding=1, groups=2)
    np.testing.assert_array_equal(conv(x).data, want.data)
    np.testing.assert_array_equal(conv(x[0]).data, want.data[0])  # unbatched (C, H, W)
    c1 = nn.Conv1d(2, 3, 4, padding="same", bias=False, rng=0)
    assert c1.bias is None and c1(ad.ones((1, 2, 9))).shape == (1, 3, 9)
    assert "padding='same'" in repr(c1) and "bias=False" in repr(c1)
    assert sorted(dict(conv.named_parameters())) == ["bias", "weight"]


def test_pool_and_dropout2d_modules():
    x = ad.tensor(np.arange(32.0).reshape(1, 2, 4, 4))
    np.testing.assert_array_equal(nn.MaxPool2d(2)(x).data, F.max_pool2d(x, 2).data)
    np.testing.assert_array_equal(nn.AvgPool2d(2, 1)(x).data, F.avg_pool2d(x, 2, 1).data)
    drop = nn.Dropout2d(0.5, rng=0)
    y = drop(ad.ones((8, 16, 3, 3)))
    per_channel = y.data.reshape(8, 16, -1)
    # whole channels are kept (scaled by 2) or zeroed
    assert set(np.unique(per_channel)) == {0.0, 2.0}
    assert (per_channel.min(axis=-1) == per_channel.max(axis=-1)).all()
    assert 0.3 < (per_channel[..., 0] == 0).mean() < 0.7
    assert drop.eval()(x) is x


def test_dropout2d_gradient_is_the_mask():
    x = ad.tensor(np.ones((2, 3, 2, 2)), requires_grad=True)
    y = F.dropout2d(x, 0.25, rng=5)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.data, y.data)


def test_batchnorm_state_dict_and_eval_without_running_stats():
    bn = nn.BatchNorm2d(3)
    assert sorted(bn.state_dict()) == [
        "bias",
        "num_batches_tracked",
        "running_mean",
        "running_var",
        "weight",
    ]
    bn(ad.tensor(np.random.default_rng(0).standard_normal((4, 3, 2, 2))))
    other = nn.BatchNorm2d(3)
    other.load_state_dict(bn.state_dict())
    np.testing.assert_array_equal(other.running_var.data, bn.running_var.data)
    assert int(other.num_batches_tracked.item()) == 1
    plain = nn.BatchNorm1d(2, track_running_stats=False).eval()
    y = plain(ad.tensor([[1.0, 5.0], [3.0, 9.0]]))  # batch statistics also in eval()
    np.testing.assert_allclose(y.data, [[-1, -1], [1, 1]], rtol=1e-5)


def test_batchnorm_second_derivatives_by_finite_differences():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 2, 2, 2))
    w, b = rng.standard_normal(2), rng.standard_normal(2)

    def f(x, w, b):
        y = F.batch_norm(x, None, None, w, b, training=True)
        return (y * y * y).sum()

    ad.fd.gradcheck(f, x, w, b)
    ad.fd.gradgradcheck(f, x, w, b)


def test_cnn_second_order_and_forward_mode():
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, rng=0), nn.Tanh(), nn.AvgPool2d(2))
    x = np.random.default_rng(0).standard_normal((2, 1, 4, 4))
    ad.fd.gradcheck(lambda x: (model(x) ** 2).sum(), x)
    ad.fd.gradgradcheck(lambda x: (model(x) ** 2).sum(), x)


# ----- errors say what to do ---------------------------------------------------------------
_X1, _X4, _W1 = ad.ones((1, 1, 5, 5)), ad.ones((1, 4, 5, 5)), ad.ones((1, 1, 3, 3))


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (lambda: F.conv2d(ad.ones((1, 3, 5, 5)), ad.ones((2, 2, 3, 3))), ValueError, "3 channels"),
        (lambda: F.conv2d(ad.ones((5, 5)), ad.ones((2, 1, 3, 3))), ValueError, "4-D"),
        (lambda: F.conv2d(ad.ones((1, 1, 2, 2)), ad.ones((1, 1, 3, 3))), ValueError, "smaller"),
        (
            lambda: F.conv2d(
                ad.ones((1, 1, 5, 5)), ad.ones((1, 1, 3, 3)), stride=2, padding="same"
            ),
            ValueError,
            "strided",
        ),
        (
            lambda: F.conv2d(ad.ones((1, 1, 5, 5)), ad.ones((1, 1, 3, 3)), stride=0),
            ValueError,
            ">= 1",
        ),
        (
            lambda: F.conv2d(ad.ones((1, 4, 5, 5)), ad.ones((3, 2, 3, 3)), groups=2),
            ValueError,
            "groups",
        ),
        (
            lambda: F.conv2d(ad.ones((1, 1, 5, 5)), ad.ones((2, 1, 3, 3)), bias=ad.ones(3)),
            ValueError,
            "bias",
        ),
        (lambda: F.conv2d(np.ones((1, 1, 3, 3), int), np.ones((1, 1, 1, 1))), TypeError, "float"),
        (lambda: F.max_pool2d(ad.ones((1, 1, 4, 4)), 2, padding=2), ValueError, "at most half"),
        (
            lambda: F.max_pool2d(ad.ones((1, 1, 4, 4)), 2, ceil_mode=True),
            NotImplementedError,
            "ceil",
        ),
        (lambda: F.avg_pool2d(ad.ones((4, 4)), 2), ValueError, "3-D"),
        (lambda: F.dropout2d(ad.ones((2, 3, 4)), 0.5), ValueError, "x\\[None\\]"),
        (lambda: nn.Conv2d(2, 2, 3, padding_mode="reflect"), NotImplementedError, "np.pad"),
        (lambda: nn.BatchNorm2d(3)(ad.ones((2, 3, 4))), ValueError, "4-D"),
        (lambda: nn.BatchNorm1d(3)(ad.ones((2, 4))), ValueError, "3 channels"),
        (lambda: nn.BatchNorm1d(3)(ad.ones((1, 3))), ValueError, "more than 1 value"),
    ],
)
def test_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_max_pool_of_minus_infinity_and_nan_follow_pytorch():
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, :2, :2] = -np.inf
    x[0, 0, 3, 3] = np.nan
    t = ad.tensor(x, requires_grad=True)
    y = F.max_pool2d(t, 3, stride=2, padding=1)
    np.testing.assert_array_equal(y.data[0, 0], [[-np.inf, 0.0], [0.0, np.nan]])
    y[0, 0, 0, 0].backward()
    # the first window holds only -inf and padding: PyTorch's index is its first input element
    assert t.grad.data[0, 0, 0, 0] == 1.0 and t.grad.data.sum() == 1.0


def test_max_pool_sends_the_gradient_to_the_last_nan_as_pytorch():
    x = np.array([[[[0.0, np.nan], [np.nan, 5.0]]]])
    t = ad.tensor(x, requires_grad=True)
    F.max_pool2d(t, 2).sum().backward()
    np.testing.assert_array_equal(t.grad.data, [[[[0.0, 0.0], [1.0, 0.0]]]])


# ----- the CNN on the embedded digits ------------------------------------------------------
def test_digits_cnn_learns_in_a_few_seconds():
    """Two epochs on the digits (benchmarks/train_cnn.py runs the full training)."""
    Xtr, ytr, Xte, yte = split_digits(0)
    model = nn.digits_cnn(channels=(8, 16), rng=0)
    opt = ad.optim.Adam(model.parameters(), lr=0.01)
    _, before = evaluate(model, Xte, yte)
    for epoch in range(2):
        train_epoch(model, opt, Xtr, ytr, 64, np.random.default_rng(epoch))
    _, after = evaluate(model, Xte, yte)
    assert before < 0.3 and after > 0.85


def test_max_pool_of_a_dilated_window_of_minus_infinity_picks_its_first_input_element():
    # window (0, 0) meets rows and columns -1 (padding), 1 and 3: PyTorch's index is (1, 1)
    t = ad.tensor(np.full((1, 1, 5, 5), -np.inf), requires_grad=True)
    y = F.max_pool2d(t, 3, stride=2, padding=1, dilation=2)
    y[0, 0, 0, 0].backward()
    assert np.isneginf(y.data).all()
    np.testing.assert_array_equal(np.argwhere(t.grad.data[0, 0]), [[1, 1]])


def test_max_pool_refuses_a_window_of_padding_only():
    # a 1x1 input, padding 1, kernel 2 dilated by 2: the window meets positions -1 and 1 only
    with pytest.raises(ValueError, match="holds only padding"):
        F.max_pool2d(ad.ones((1, 1, 1, 1)), 2, stride=1, padding=1, dilation=2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_rule_keeps_the_cotangent_dtype(dtype):
    # maximum(x, 0)'s rule multiplies by a mask: a float32 step is not computed in float64
    a, g = np.array([-1.0, 0.0, 2.0], dtype), np.array([3.0, 4.0, 5.0], dtype)
    ga, gb = ad.maximum.vjp((True, False), g, None, (a, 0), {})
    assert ga.dtype == dtype and gb is None
    np.testing.assert_array_equal(ga, [0.0, 0.0, 5.0])


@pytest.mark.parametrize("stride", [2, 1])
def test_max_pool_sends_a_nan_cotangent_to_the_chosen_element_only(stride):
    x = ad.tensor(np.arange(16.0).reshape(1, 1, 4, 4), requires_grad=True)
    y = F.max_pool2d(x, 2, stride=stride)
    g = np.ones(y.shape)
    g[0, 0, 0, 0] = np.nan
    y.backward(g)
    assert np.argwhere(np.isnan(x.grad.data)).tolist() == [[0, 0, 1, 1]]
