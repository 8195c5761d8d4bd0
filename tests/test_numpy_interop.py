"""NumPy functions and ufuncs called on Tensors return Tensors and are differentiated."""

from __future__ import annotations

import numpy as np
import pytest

import autodiffx as ad


def test_ufuncs_dispatch_and_differentiate():
    x = ad.tensor([0.5, 1.5], requires_grad=True)
    y = np.sum(np.sin(x) * np.exp(x))
    assert isinstance(y, ad.Tensor) and y.grad_fn.name == "sum"
    y.backward()
    np.testing.assert_allclose(x.grad.data, np.exp(x.data) * (np.sin(x.data) + np.cos(x.data)))


def test_array_functions_dispatch():
    x = ad.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    for y in (
        np.concatenate([x, x]),
        np.stack([x, x], axis=-1),
        np.transpose(x),
        np.reshape(x, (3, 2)),
        np.where(x > 2, x, 0.0),
        np.matmul(x, x.T),
        np.mean(x, axis=0),
        np.clip(x, 1, 4),
        np.linalg.norm(x),
        np.maximum(x, 2.0),
        np.cumsum(x, axis=1),
        np.tile(x, 2),
        np.pad(x, 1),
    ):
        assert isinstance(y, ad.Tensor)
        assert y.requires_grad


def test_mixed_ndarray_first_operand_returns_tensor():
    x = ad.tensor([1.0, 2.0], requires_grad=True)
    y = np.array([3.0, 4.0]) * x
    assert isinstance(y, ad.Tensor)
    y.sum().backward()
    np.testing.assert_allclose(x.grad.data, [3.0, 4.0])


def test_ufunc_reduce_methods():
    x = ad.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    np.add.reduce(x, axis=0).sum().backward()
    np.testing.assert_allclose(x.grad.data, np.ones((2, 2)))
    assert np.maximum.reduce(x, axis=1).tolist() == [2.0, 4.0]


def test_unsupported_function_raises_typeerror_naming_it():
    x = ad.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(TypeError, match=r"numpy\.fft\.fft"):
        np.fft.fft(x)
    with pytest.raises(TypeError, match="unwrap"):
        np.unwrap(x)
    with pytest.raises(TypeError, match="gcd"):
        np.gcd(ad.tensor([4]), 2)


def test_out_argument_is_refused_clearly():
    x = ad.tensor([1.0, 2.0])
    with pytest.raises(TypeError, match="out="):
        np.sin(x, out=np.empty(2))


def test_inspection_functions_run_on_values():
    x = ad.tensor([1.0, 2.0], requires_grad=True)
    assert np.shape(x) == (2,)
    assert np.allclose(x, [1.0, 2.0])
    assert np.ndim(x) == 1
    assert np.array_equal(x, x)


def test_shape_errors_name_op_and_shapes():
    with pytest.raises(ValueError, match=r"add\(float64\[3\], float64\[4\]\)"):
        ad.tensor(np.ones(3)) + ad.tensor(np.ones(4))
    with pytest.raises(ValueError, match=r"matmul.*\[2, 3\].*\[2, 3\]"):
        ad.ones((2, 3)) @ ad.ones((2, 3))
    with pytest.raises(ValueError, match="reshape"):
        ad.ones(6).reshape(4, 2)


def test_scipy_special_erf_dispatches():
    import scipy.special as sp

    x = ad.tensor([0.1, 0.5], requires_grad=True)
    sp.erf(x).sum().backward()
    np.testing.assert_allclose(x.grad.data, 2 / np.sqrt(np.pi) * np.exp(-(x.data**2)))
