"""The Tensor type: construction, attributes, conversion, repr, dtype rules (contract section 2)."""

from __future__ import annotations

import numpy as np
import pytest

import autodiffx as ad


def test_tensor_copies_and_asarray_does_not():
    a = np.array([1.0, 2.0])
    t = ad.tensor(a)
    a[0] = 5.0
    assert t.data[0] == 1.0
    assert ad.asarray(a).data is a


@pytest.mark.parametrize(
    ("data", "dtype"),
    [([1.0, 2.0], np.float64), ([1, 2], np.int64), ([True], np.bool_), (1j, np.complex128)],
)
def test_default_dtypes_follow_numpy(data, dtype):
    assert ad.tensor(data).dtype == dtype


def test_nep50_float32_with_python_float_stays_float32():
    x = ad.tensor([1.0, 2.0], dtype=np.float32)
    assert (x * 2.5).dtype == np.float32
    assert (x + 1).dtype == np.float32
    assert (x * np.float64(2.0)).dtype == np.float64  # a NumPy float64 scalar is strong
    assert (x * ad.tensor([2.0])).dtype == np.float64


def test_attributes():
    x = ad.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    assert x.shape == (2, 3) and x.ndim == 2 and x.size == 6 and x.dtype == np.float64
    assert x.T.shape == (3, 2)
    assert ad.zeros((4, 2, 3)).mT.shape == (4, 3, 2)
    assert x.requires_grad and x.is_leaf and x.grad is None and x.grad_fn is None


def test_conversions():
    x = ad.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert isinstance(x.numpy(), np.ndarray) and x.numpy() is x.data
    assert np.asarray(x) is x.data
    assert np.asarray(x, dtype=np.float32).dtype == np.float32
    assert ad.tensor(3.5).item() == 3.5
    assert x.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    assert len(x) == 2
    rows = list(x)
    assert all(isinstance(r, ad.Tensor) for r in rows) and rows[1].tolist() == [3.0, 4.0]
    assert float(ad.tensor(2.0)) == 2.0 and int(ad.tensor(3)) == 3
    assert bool(ad.tensor(1.0))
    assert f"{ad.tensor(1.23456):.2f}" == "1.23"


def test_iteration_is_differentiable():
    x = ad.tensor([1.0, 2.0], requires_grad=True)
    total = sum(r * r for r in x)
    total.backward()
    np.testing.assert_allclose(x.grad.data, [2.0, 4.0])


def test_repr_like_numpy():
    assert repr(ad.tensor([1.0, 2.0])) == "tensor([1., 2.])"
    assert repr(ad.tensor([1.0], requires_grad=True)) == "tensor([1.], requires_grad=True)"
    x = ad.tensor([1.0], requires_grad=True)
    assert repr(x * 2) == "tensor([2.], grad_fn=<multiply>)"
    assert repr(ad.tensor([1.0], dtype=np.float32)) == "tensor([1.], dtype=float32)"
    assert repr(ad.eye(2)) == "tensor([[1., 0.],\n        [0., 1.]])"


def test_detach_requires_grad_astype_copy():
    x = ad.tensor([1.0, 2.0], requires_grad=True)
    d = x.detach()
    assert not d.requires_grad and d.data is x.data
    y = ad.tensor([1.0]).requires_grad_()
    assert y.requires_grad
    f = x.astype(np.float32)
    assert f.dtype == np.float32 and f.requires_grad
    f.sum().backward()
    assert x.grad.dtype == np.float64
    c = x.copy()
    assert c.data is not x.data and c.grad_fn.name == "copy"


def test_requires_grad_rules():
    with pytest.raises(TypeError, match="int64"):
        ad.tensor([1, 2], requires_grad=True)
    y = ad.tensor([1.0], requires_grad=True) * 2
    with pytest.raises(RuntimeError, match="detach"):
        y.requires_grad = False


@pytest.mark.parametrize(
    ("fn", "args"),
    [
        (ad.zeros, ((2, 3),)),
        (ad.ones, ((2,),)),
        (ad.full, ((2,), 3.0)),
        (ad.empty, ((1, 2),)),
        (ad.eye, (3,)),
        (ad.linspace, (0.0, 1.0, 5)),
    ],
)
def test_creation_functions_accept_requires_grad(fn, args):
    t = fn(*args, requires_grad=True)
    assert t.requires_grad and t.dtype == np.float64


def test_like_constructors_and_arange():
    x = ad.tensor([[1.0, 2.0]], dtype=np.float32)
    assert ad.zeros_like(x).dtype == np.float32 and ad.zeros_like(x).shape == (1, 2)
    assert ad.ones_like(x).data.sum() == 2
    assert ad.full_like(x, 7).data[0, 0] == 7
    assert ad.arange(3).dtype == np.int64
    assert ad.arange(0.0, 1.0, 0.5, requires_grad=True).requires_grad


def test_object_data_is_refused():
    with pytest.raises(TypeError, match="numeric"):
        ad.Tensor(np.array([object()]))


def test_comparisons_return_bool_tensors():
    x = ad.tensor([1.0, 2.0, 3.0], requires_grad=True)
    for r in (x < 2, x <= 2, x > 2, x >= 2, x == 2, x != 2):
        assert isinstance(r, ad.Tensor) and r.dtype == np.bool_ and not r.requires_grad
    assert ((x > 1) & (x < 3)).tolist() == [False, True, False]


def test_operators_with_numbers_and_arrays_on_either_side():
    x = ad.tensor([1.0, 2.0], requires_grad=True)
    a = np.array([3.0, 4.0])
    for y in (2 - x, 2 / x, 2**x, a * x, x @ a, a @ x, -x, +x, abs(x), x // 1.5):
        assert isinstance(y, ad.Tensor)
    y = (2 - x) * (3 / x) + x**2 + 2**x
    y.sum().backward()
    expect = -(3 / x.data) - (2 - x.data) * 3 / x.data**2 + 2 * x.data + np.log(2) * 2**x.data
    np.testing.assert_allclose(x.grad.data, expect)


def test_hash_is_identity():
    x = ad.tensor([1.0])
    assert {x: 1}[x] == 1


def test_python_scalars_from_one_element_tensors():
    assert float(ad.tensor([1.5])) == 1.5
    assert int(ad.tensor([[3]])) == 3
    with pytest.raises(TypeError, match="one-element"):
        float(ad.tensor([1.0, 2.0]))


def test_any_all():
    x = ad.tensor([0.0, 2.0])
    assert x.any().item() and not x.all().item()
