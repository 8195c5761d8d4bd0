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
    with pytest.raises(TypeError, match=r"numpy\.piecewise"):
        np.piecewise(x, [x > 1], [0.0])
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


# Shape functions and arguments: the result is writeable exactly when NumPy's is (NumPy's
# broadcast_to gives a read-only view; tile always gives a new array). diagonal is left out:
# NumPy's is read-only, PyTorch's a writeable view (branch views makes it one).
SHAPE_FUNCTIONS = {
    "reshape": lambda m, x: m.reshape(x, (-1,)),
    "transpose": lambda m, x: m.transpose(x),
    "swapaxes": lambda m, x: m.swapaxes(x, 0, -1),
    "moveaxis": lambda m, x: m.moveaxis(x, 0, -1),
    "squeeze": lambda m, x: m.squeeze(m.expand_dims(x, 0)),
    "expand_dims": lambda m, x: m.expand_dims(x, 0),
    "broadcast_to": lambda m, x: m.broadcast_to(x, (2, *x.shape)),
    "ravel": lambda m, x: m.ravel(x),
    "concatenate": lambda m, x: m.concatenate([x]),
    "stack": lambda m, x: m.stack([x]),
    "split": lambda m, x: m.split(x, 1)[0],
    "flip": lambda m, x: m.flip(x),
    "roll": lambda m, x: m.roll(x, 1),
    "pad": lambda m, x: m.pad(x, 0),
    "tile 1": lambda m, x: m.tile(x, 1),
    "tile (2, 1)": lambda m, x: m.tile(x, (2, 1)),
    "tile (1, 2)": lambda m, x: m.tile(x, (1, 2)),
    "tile (3, 1, 1)": lambda m, x: m.tile(x, (3, 1, 1)),
    "repeat": lambda m, x: m.repeat(x, 1),
    "repeat axis 0": lambda m, x: m.repeat(x, 2, axis=0),
    "tril": lambda m, x: m.tril(x),
    "take": lambda m, x: m.take(x, [0]),
    "copy": lambda m, x: m.copy(x),
}


@pytest.mark.parametrize("shape", [(2,), (2, 3), (1, 3), (3, 1)])
@pytest.mark.parametrize("name", sorted(SHAPE_FUNCTIONS))
def test_shape_functions_are_writeable_where_numpy_is(name, shape):
    f = SHAPE_FUNCTIONS[name]
    a = np.arange(1.0, 1.0 + np.prod(shape)).reshape(shape)
    want = f(np, a.copy()).flags.writeable
    x = ad.tensor(a, requires_grad=True)
    h = x * 1.0
    assert f(ad, h).data.flags.writeable == want
    if name.startswith("tile"):  # tile's result is NumPy's new array: writes leave h alone
        t = f(ad, h)
        t *= 2.0
        t.sum().backward()
        np.testing.assert_array_equal(h.data, a)
        np.testing.assert_array_equal(t.data, 2.0 * f(np, a))
        np.testing.assert_array_equal(x.grad.data, 2.0 * t.size / a.size)


def test_inplace_write_into_a_read_only_view_says_what_to_do():
    # NumPy's broadcast_to is a read-only view: an in-place write must name the op that made it
    # and say to .copy() it first, not only "assignment destination is read-only".
    t = ad.broadcast_to(ad.tensor([1.0, 2.0], requires_grad=True) * 1.0, (3, 2))
    with pytest.raises(ValueError) as info:
        t *= 2.0
    message = str(info.value)
    assert "broadcast_to" in message and "read-only" in message and ".copy()" in message
