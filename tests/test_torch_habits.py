"""PyTorch habits (issue 12): Tensor methods under PyTorch's names, ``retain_grad``, hook
handles, ``ad.rand``/``randn`` and the top-level activations.

Values against NumPy, gradients in both modes against central differences
(``autodiffx.fd.directional``), hook and ``retain_grad`` behaviour against expectations stored
from PyTorch 2.13 and, in the tests marked oracle, against live PyTorch.
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import scipy.special as sp

import autodiffx as ad
from autodiffx.fd import directional


def _x(shape: tuple[int, ...], lo: float = 0.15, hi: float = 0.85, seed: int = 0) -> np.ndarray:
    """Values in (lo, hi), away from every kink the table's methods have (0, +-0.5, bounds)."""
    x = np.random.default_rng(seed).uniform(lo, hi, shape)
    return np.where(np.abs(x - 0.5) < 0.02, x + 0.05, x)


# name: (method applied to a Tensor, NumPy reference on an ndarray, input shape)
CASES: dict[str, tuple[Callable[[Any], Any], Callable[[np.ndarray], Any], tuple[int, ...]]] = {
    "unsqueeze(0)": (lambda t: t.unsqueeze(0), lambda a: a[None], (2, 3)),
    "unsqueeze(-1)": (lambda t: t.unsqueeze(-1), lambda a: a[..., None], (2, 3)),
    "unsqueeze(1)": (lambda t: t.unsqueeze(1), lambda a: a[:, None], (2, 3)),
    "view(3, 2)": (lambda t: t.view(3, 2), lambda a: a.reshape(3, 2), (2, 3)),
    "view((-1,))": (lambda t: t.view((-1,)), lambda a: a.reshape(-1), (2, 3)),
    "permute(2, 0, 1)": (lambda t: t.permute(2, 0, 1), lambda a: a.transpose(2, 0, 1), (2, 3, 4)),
    "permute((1, 0, 2))": (lambda t: t.permute((1, 0, 2)), lambda a: a.swapaxes(0, 1), (2, 3, 4)),
    "expand(4, -1, 3)": (
        lambda t: t.expand(4, -1, 3),
        lambda a: np.broadcast_to(a, (4, 2, 3)),
        (2, 1),
    ),
    "expand((2, 3))": (lambda t: t.expand((2, 3)), lambda a: np.broadcast_to(a, (2, 3)), (2, 1)),
    "clamp(0.3, 0.6)": (lambda t: t.clamp(0.3, 0.6), lambda a: np.clip(a, 0.3, 0.6), (3, 4)),
    "clamp(min=0.4)": (lambda t: t.clamp(min=0.4), lambda a: np.maximum(a, 0.4), (3, 4)),
    "clamp(max=0.4)": (lambda t: t.clamp(max=0.4), lambda a: np.minimum(a, 0.4), (3, 4)),
    "clamp_min(0.4)": (lambda t: t.clamp_min(0.4), lambda a: np.maximum(a, 0.4), (3, 4)),
    "clamp_max(0.4)": (lambda t: t.clamp_max(0.4), lambda a: np.minimum(a, 0.4), (3, 4)),
    "pow(3)": (lambda t: t.pow(3), lambda a: a**3, (2, 3)),
    "pow(2.5)": (lambda t: t.pow(2.5), lambda a: a**2.5, (2, 3)),
    "sin": (lambda t: t.sin(), np.sin, (2, 3)),
    "cos": (lambda t: t.cos(), np.cos, (2, 3)),
    "tan": (lambda t: t.tan(), np.tan, (2, 3)),
    "exp": (lambda t: t.exp(), np.exp, (2, 3)),
    "log": (lambda t: t.log(), np.log, (2, 3)),
    "log1p": (lambda t: t.log1p(), np.log1p, (2, 3)),
    "expm1": (lambda t: t.expm1(), np.expm1, (2, 3)),
    "sqrt": (lambda t: t.sqrt(), np.sqrt, (2, 3)),
    "rsqrt": (lambda t: t.rsqrt(), lambda a: 1 / np.sqrt(a), (2, 3)),
    "sigmoid": (lambda t: t.sigmoid(), sp.expit, (2, 3)),
    "relu": (lambda t: (t - 0.5).relu(), lambda a: np.maximum(a - 0.5, 0), (3, 4)),
    "tanh": (lambda t: t.tanh(), np.tanh, (2, 3)),
    "abs": (lambda t: (t - 0.5).abs(), lambda a: np.abs(a - 0.5), (3, 4)),
    "neg": (lambda t: t.neg(), np.negative, (2, 3)),
    "reciprocal": (lambda t: t.reciprocal(), np.reciprocal, (2, 3)),
    "square": (lambda t: t.square(), np.square, (2, 3)),
    "sign": (lambda t: (t - 0.5).sign(), lambda a: np.sign(a - 0.5), (3, 4)),
    "floor": (lambda t: (4 * t).floor(), lambda a: np.floor(4 * a), (3, 4)),
    "ceil": (lambda t: (4 * t).ceil(), lambda a: np.ceil(4 * a), (3, 4)),
    "round": (lambda t: (4 * t).round(), lambda a: np.round(4 * a), (3, 4)),
    "round(decimals=1)": (lambda t: t.round(decimals=1), lambda a: np.round(a, 1), (3, 4)),
    "t (2-D)": (lambda t: t.t(), lambda a: a.T, (2, 3)),
    "t (1-D)": (lambda t: t.t(), lambda a: a, (3,)),
    "double": (lambda t: t.double(), lambda a: a.astype(np.float64), (2, 3)),
}


def _direction(shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


@pytest.mark.parametrize("name", CASES)
def test_method_values_match_numpy(name):
    method, ref, shape = CASES[name]
    x = _x(shape)
    out = method(ad.tensor(x))
    want = ref(x)
    assert out.shape == want.shape and out.dtype == want.dtype
    np.testing.assert_allclose(out.data, want, rtol=1e-13, atol=0)


@pytest.mark.parametrize("name", CASES)
def test_method_gradients_both_modes_match_central_differences(name):
    method, ref, shape = CASES[name]
    x, v = _x(shape), _direction(shape, 1)
    jv = directional(lambda a: np.asarray(ref(a), dtype=float), [x], [v], rel_step=1e-6)[0]
    u = _direction(jv.shape, 2)
    # reverse: the VJP with u, paired with v, is u . (J v)
    xt = ad.tensor(x, requires_grad=True)
    (method(xt) * u).sum().backward()
    np.testing.assert_allclose(np.sum(xt.grad.data * v), np.sum(u * jv), rtol=1e-7, atol=1e-9)
    # forward: the JVP along v is J v
    _, tangent = ad.jvp(method, (ad.tensor(x),), (ad.tensor(v),))
    np.testing.assert_allclose(tangent.data, jv, rtol=1e-7, atol=1e-9)


def test_float_is_float32_and_double_float64_both_differentiable():
    x = ad.tensor([1.5, -2.0], requires_grad=True)
    y = x.float()
    assert y.dtype == np.float32 and y.double().dtype == np.float64
    (y.double() * 3).sum().backward()
    assert x.grad.dtype == np.float64
    np.testing.assert_array_equal(x.grad.data, [3.0, 3.0])
    assert ad.tensor([1, 2]).float().dtype == np.float32


def test_view_of_a_contiguous_tensor_shares_memory_and_writes_reach_the_base():
    x = ad.tensor([1.0, 2.0, 3.0, 4.0], requires_grad=True)
    h = x * 1
    v = h.view(2, 2)
    assert np.shares_memory(v.data, h.data)
    v[0] *= 10  # through the view, recorded on h's history
    h.sum().backward()
    np.testing.assert_array_equal(x.grad.data, [10.0, 10.0, 1.0, 1.0])


def test_numel_dim_and_size_as_numpy_int_and_pytorch_call():
    x = ad.zeros((2, 3, 4))
    assert x.numel() == 24 and x.dim() == 3
    n = x.size
    assert n == 24 and isinstance(n, int) and n == x.data.size and n + 1 == 25
    assert np.zeros(n).shape == (24,) and list(range(n))[-1] == 23
    assert n() == (2, 3, 4) and n(0) == 2 and n(-1) == 4 and x.size(1) == 3
    assert ad.tensor(5.0).size == 1 and ad.tensor(5.0).size() == ()
    assert type(pickle.loads(pickle.dumps(n))) is int
    with pytest.raises(IndexError, match=r"size\(3\) of a tensor of shape \(2, 3, 4\)"):
        x.size(3)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: ad.zeros((2, 1)).expand(3, 3), ValueError, r"expand\(3, 3\) of a tensor of shape"),
        (lambda: ad.zeros((2, 1)).expand(-1, 2, 3), ValueError, "new axes"),
        (lambda: ad.zeros((2, 1)).expand(3), ValueError, r"expand\(3,\)"),
        (lambda: ad.zeros((2, 3)).permute(1, 0, 2), ValueError, "one position per axis"),
        (lambda: ad.zeros(2).clamp(), ValueError, "at least one must not be None"),
        (lambda: ad.zeros(2).view(np.int64), TypeError, r"view\(<class 'numpy.int64'>\).*astype"),
        (lambda: ad.zeros(2).view("float32"), TypeError, "not differentiable"),
        (lambda: ad.zeros((2, 3, 4)).t(), ValueError, r"at most 2 dimensions.*\.mT"),
        (lambda: ad.tensor([1j]).float(), TypeError, "discard the imaginary part"),
        (lambda: ad.tensor([1j]).double(), TypeError, "discard the imaginary part"),
        (lambda: ad.rand(2, dtype=int), TypeError, r"ad.rand\(dtype=int64\)"),
        (lambda: ad.randn(2, rng=np.random.RandomState(0)), TypeError, "RandomState"),
        (lambda: ad.tensor(1.0).retain_grad(), RuntimeError, "does not require grad"),
    ],
)
def test_refusals_name_the_call_and_what_to_do(call, error, match):
    with pytest.raises(error, match=match):
        call()


# ----- retain_grad and hook handles: expectations stored from PyTorch 2.13 ------------------
def _chain() -> tuple[ad.Tensor, ad.Tensor, ad.Tensor]:
    x = ad.tensor([1.0, 2.0], requires_grad=True)
    y = x * 3
    return x, y, (y * y).sum()


def test_retain_grad_fills_and_accumulates_like_pytorch():
    x, y, z = _chain()
    w = x * 2
    y.retain_grad()
    y.retain_grad()  # twice: one retention
    assert y.retains_grad and not w.retains_grad and not x.retains_grad
    ad.autograd.grad(z, [x], retain_graph=True)  # PyTorch fills retained grads here too
    np.testing.assert_array_equal(y.grad.data, [6.0, 12.0])
    z.backward(retain_graph=True)
    np.testing.assert_array_equal(y.grad.data, [12.0, 24.0])
    z.backward()
    np.testing.assert_array_equal(y.grad.data, [18.0, 36.0])
    with pytest.warns(UserWarning, match=r"float64\[2\] tensor that is not a leaf .* None"):
        assert w.grad is None  # (PyTorch warns too)
    assert y.grad.dtype == y.dtype and y.grad.is_leaf
    np.testing.assert_array_equal(x.grad.data, [36.0, 72.0])


def test_grad_of_an_intermediate_warns_only_when_it_cannot_be_filled():
    x, y, z = _chain()
    with pytest.warns(UserWarning, match="retain_grad"):
        assert y.grad is None  # before backward, too: it never will be filled
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert x.grad is None  # a leaf: filled by backward
        assert (ad.tensor([1.0]) * 2).grad is None  # requires no grad
        y.retain_grad()
        assert y.grad is None  # retained: filled by the next backward
        z.backward()
        assert y.grad is not None


def test_retain_grad_on_a_leaf_is_a_no_op():
    x = ad.tensor([1.0, 2.0], requires_grad=True)
    x.retain_grad()
    assert not x.retains_grad
    (x * 2).sum().backward()
    np.testing.assert_array_equal(x.grad.data, [2.0, 2.0])


def test_hooks_run_before_retain_grad_whatever_the_order():
    x, y, z = _chain()
    y.retain_grad()
    y.register_hook(lambda g: g * 100)  # registered after: still runs first (PyTorch)
    z.backward()
    np.testing.assert_array_equal(y.grad.data, [600.0, 1200.0])
    np.testing.assert_array_equal(x.grad.data, [1800.0, 3600.0])


def test_retain_grad_with_create_graph_keeps_the_gradient_differentiable():
    x, y, z = _chain()
    y.retain_grad()
    z.backward(create_graph=True)
    assert y.grad.requires_grad and y.grad.grad_fn is not None
    np.testing.assert_array_equal(y.grad.data, [6.0, 12.0])  # 2 y = 6 x
    (gx,) = ad.autograd.grad(y.grad.sum(), [x], retain_graph=True)
    np.testing.assert_array_equal(gx.data, [6.0, 6.0])
    np.testing.assert_array_equal(y.grad.data, [8.0, 14.0])  # that pass went through y too
    z2 = (y * y).sum()
    z2.backward(create_graph=True)  # accumulates through the graph: add
    np.testing.assert_array_equal(y.grad.data, [14.0, 26.0])
    assert y.grad.grad_fn.name == "add"


def test_retain_grad_follows_an_in_place_write_like_pytorch():
    a = ad.tensor([1.0, 2.0], requires_grad=True)
    b = a * 1
    b.retain_grad()
    b *= 2
    assert b.retains_grad
    (b * b).sum().backward()
    np.testing.assert_array_equal(b.grad.data, [4.0, 8.0])  # of the new value, 2 b
    np.testing.assert_array_equal(a.grad.data, [8.0, 16.0])


def test_retain_grad_does_not_keep_the_tensor_alive():
    x = ad.tensor([1.0, 2.0], requires_grad=True)
    y = x * 3
    y.retain_grad()
    z = (y * 2).sum()
    del y
    z.backward()
    np.testing.assert_array_equal(x.grad.data, [6.0, 6.0])


def test_retain_grad_refuses_batched_gradients():
    kept = []

    def f(x):
        y = x * 2
        y.retain_grad()
        kept.append(y)
        return y * y

    with pytest.raises(RuntimeError, match="batch axes"):
        ad.jacrev(f)(ad.tensor([1.0, 2.0]))


@pytest.mark.parametrize("on", ["leaf", "intermediate"])
def test_register_hook_returns_a_handle_whose_remove_removes_it(on):
    x = ad.tensor([1.0, 2.0], requires_grad=True)
    t = x if on == "leaf" else x * 1
    calls = []
    keep = t.register_hook(lambda g: calls.append("kept"))
    handle = t.register_hook(lambda g: g * 0)
    handle.remove()
    handle.remove()  # again: nothing
    (t * 3).sum().backward(retain_graph=True)
    np.testing.assert_array_equal(x.grad.data, [3.0, 3.0])
    assert calls == ["kept"]
    keep()  # calling the handle removes too (as the function returned before)
    (t * 3).sum().backward()
    assert calls == ["kept"]


# ----- top level ----------------------------------------------------------------------------
def test_rand_and_randn_shapes_seeds_generators_dtypes():
    assert ad.rand(2, 3).shape == (2, 3) and ad.randn((4,)).shape == (4,)
    assert ad.rand().shape == () and ad.randn([2, 0]).shape == (2, 0)
    np.testing.assert_array_equal(ad.rand(5, rng=3).data, np.random.default_rng(3).random(5))
    np.testing.assert_array_equal(
        ad.randn(2, 2, rng=3).data, np.random.default_rng(3).standard_normal((2, 2))
    )
    g = np.random.default_rng(0)
    a, b = ad.randn(3, rng=g), ad.randn(3, rng=g)  # the generator is advanced
    assert not np.array_equal(a.data, b.data)
    x = ad.randn(3, rng=0, dtype=np.float32, requires_grad=True)
    assert x.dtype == np.float32 and x.requires_grad and x.is_leaf
    assert ad.rand(3, dtype=np.float16).dtype == np.float16
    z = ad.randn(20000, rng=1, dtype=np.complex128)
    assert z.dtype == np.complex128
    assert abs(np.var(z.data.real) - 0.5) < 0.03 and abs(np.var(z.data.imag) - 0.5) < 0.03
    u = ad.rand(1000, rng=2, dtype=np.complex64).data
    assert u.dtype == np.complex64 and (u.real >= 0).all() and (u.imag < 1).all()


def test_top_level_activations_are_the_functional_ones():
    assert ad.relu is ad.nn.functional.relu and ad.sigmoid is ad.nn.functional.sigmoid
    assert ad.softmax is ad.nn.functional.softmax
    x = ad.tensor([[-1.0, 0.5], [2.0, 0.0]], requires_grad=True)
    np.testing.assert_allclose(ad.sigmoid(x).data, sp.expit(x.data), rtol=1e-15)
    np.testing.assert_array_equal(ad.relu(x).data, np.maximum(x.data, 0))
    np.testing.assert_allclose(ad.softmax(x, dim=0).data, sp.softmax(x.data, axis=0), rtol=1e-14)


# ----- live PyTorch -------------------------------------------------------------------------
TORCH_ARGS = {  # the table's cases PyTorch spells the same way
    name: name
    for name in CASES
    if name not in ("round(decimals=1)", "t (1-D)", "double", "view((-1,))", "expand((2, 3))")
}


@pytest.mark.oracle
@pytest.mark.parametrize("name", TORCH_ARGS)
def test_methods_match_pytorch(name):
    torch = pytest.importorskip("torch")
    method, _, shape = CASES[name]
    x, u = _x(shape), None
    xt = ad.tensor(x, requires_grad=True)
    tt = torch.tensor(x, requires_grad=True)
    out, tout = method(xt), method(tt)
    np.testing.assert_allclose(out.data, tout.detach().numpy(), rtol=1e-13, atol=0)
    u = _direction(out.shape, 2)
    (out * u).sum().backward()
    (tout * torch.tensor(u)).sum().backward()
    np.testing.assert_allclose(xt.grad.data, tt.grad.numpy(), rtol=1e-13, atol=1e-15)


@pytest.mark.oracle
def test_retain_grad_and_hook_handles_match_pytorch():
    torch = pytest.importorskip("torch")

    def run(lib: Any, tensor: Callable[..., Any]) -> list[Any]:
        x = tensor([1.0, 2.0], requires_grad=True)
        y = x * 3
        y.retain_grad()
        h = y.register_hook(lambda g: g * 100)
        z = (y * y).sum()
        seen = [y.retains_grad, (x * 2).retains_grad]
        z.backward(retain_graph=True)
        seen.append(y.grad.tolist())
        h.remove()
        z.backward(retain_graph=True)
        seen.append(y.grad.tolist())
        b = x * 1
        b.retain_grad()
        b *= 2
        (b * b).sum().backward()
        return [*seen, b.grad.tolist(), x.grad.tolist(), x.size(0), list(x.size())]

    assert run(ad, ad.tensor) == run(torch, torch.tensor)
