"""Converting a Tensor that carries a derivative to NumPy raises; np.matrix and masked arrays
are refused; plain tensors and the escape hatches (detach, .data, no_grad) convert freely."""

from __future__ import annotations

import warnings

import numpy as np
import numpy.ma as ma
import pytest
import scipy.linalg
import scipy.special

import autodiffx as ad

V = np.array([0.5, 1.0, 2.0])

# Issue 11, item 1: each of these used to give a zero gradient without a word.
SILENT = {
    "scipy.special.logsumexp": (
        lambda x: scipy.special.logsumexp(x),
        "ad.scipy.special.logsumexp",
    ),
    "scipy.special.softmax": (
        lambda x: scipy.special.softmax(x)[0],
        "ad.scipy.special.softmax",
    ),
    "scipy.linalg.expm": (
        lambda x: scipy.linalg.expm(x.reshape(1, 3)[:, :1]).sum(),
        "call ad.scipy.linalg.expm instead",
    ),
    "np.asarray": (lambda x: np.asarray(x).sum(), "t.detach()"),
    "np.array of a list": (lambda x: np.array([x[0], x[1]]).sum(), "ad.stack"),
    "ad.tensor of a list": (lambda x: ad.tensor([x[0] ** 2, x[1] * 3]).sum(), "ad.stack"),
    "numpy()": (lambda x: x.numpy().sum(), "t.detach().numpy()"),
    "masked array on the left": (
        lambda x: (ma.masked_array([1.0, 2.0, 3.0], mask=[0, 1, 0]) * x).sum(),
        "m.filled(value)",
    ),
}


@pytest.mark.parametrize("name", list(SILENT))
def test_grad_through_a_conversion_raises_and_says_what_to_do(name):
    f, advice = SILENT[name]
    with pytest.raises(TypeError, match="would drop its derivative") as info:
        ad.grad(f)(V)
    assert advice in str(info.value)


@pytest.mark.parametrize("name", list(SILENT))
def test_autograd_grad_agrees_with_grad(name):
    f, _ = SILENT[name]
    x = ad.tensor(V, requires_grad=True)
    with pytest.raises(TypeError, match="would drop its derivative"):
        ad.autograd.grad(f(x), x)


@pytest.mark.parametrize(
    "transform",
    [
        lambda f: ad.jvp(f, (V,), (np.ones(3),)),
        lambda f: ad.jacfwd(f)(V),
        lambda f: ad.jacrev(f)(V),
        lambda f: ad.hessian(f)(V),
        lambda f: ad.hvp(f, (V,), (np.ones(3),)),
        lambda f: ad.vjp(f, V)[1](ad.tensor(1.0)),
    ],
    ids=["jvp", "jacfwd", "jacrev", "hessian", "hvp", "vjp"],
)
def test_every_transform_refuses_a_conversion(transform):
    f = lambda x: ad.tensor(scipy.special.logsumexp(x))
    with pytest.raises(TypeError, match=r"ad\.scipy\.special\.logsumexp"):
        transform(f)


def test_forward_mode_tangent_is_not_dropped_silently():
    with ad.forward.dual_level():
        x = ad.forward.make_dual(ad.tensor(V), ad.tensor(np.ones(3)))
        with pytest.raises(TypeError, match="carries a forward-mode tangent"):
            np.asarray(x)
        with ad.no_grad(), pytest.raises(TypeError, match="forward-mode tangent"):
            np.asarray(x)  # no_grad does not stop forward mode, so it is no escape
        np.testing.assert_array_equal(np.asarray(x.detach()), V)
    np.testing.assert_array_equal(np.asarray(x), V)  # the level is closed: no tangent left


def test_escape_hatches_and_plain_tensors_convert_freely():
    x = ad.tensor(V, requires_grad=True)
    assert x.detach().numpy() is x.data
    assert np.asarray(x.detach()) is x.data
    with ad.no_grad():
        assert np.asarray(x) is x.data
        assert x.numpy() is x.data
        assert scipy.special.logsumexp(x) == pytest.approx(scipy.special.logsumexp(V))
    plain = ad.tensor(V)
    assert np.asarray(plain) is plain.data
    assert plain.numpy() is plain.data
    np.testing.assert_array_equal(np.array([plain[0], plain[1]]), V[:2])
    np.testing.assert_array_equal(ad.tensor([plain[0], plain[2]]).data, V[[0, 2]])
    assert scipy.special.logsumexp(plain) == pytest.approx(scipy.special.logsumexp(V))
    y = (x * 2).detach()
    assert np.asarray(y, dtype=np.float32).dtype == np.float32
    # values and Python numbers stay available on tensors that require grad
    assert x.tolist() == V.tolist() and float(x[0]) == 0.5 and x[1].item() == 1.0


def test_the_right_spelling_differentiates():
    g = ad.grad(lambda x: ad.logsumexp(x))(V)
    np.testing.assert_allclose(g.data, scipy.special.softmax(V), rtol=1e-14)
    g = ad.grad(lambda x: ad.stack([x[0] ** 2, x[1] * 3]).sum())(V)
    np.testing.assert_allclose(g.data, [2 * V[0], 3.0, 0.0])


def test_copying_a_tensor_that_requires_grad_into_a_new_one_raises():
    x = ad.tensor(V, requires_grad=True)
    for build in (lambda: ad.tensor(x * 2), lambda: ad.Tensor(x * 2)):
        with pytest.raises(TypeError, match=r"t\.copy"):
            build()
    np.testing.assert_array_equal(ad.tensor(x.detach()).data, V)
    p = ad.nn.Parameter(x)  # a new leaf sharing the values, as PyTorch's nn.Parameter
    assert p.data is x.data and p.is_leaf and p.requires_grad


def _masked():
    return ma.masked_array([1.0, 2.0, 3.0], mask=[0, 1, 0])


with warnings.catch_warnings():
    warnings.simplefilter("ignore", PendingDeprecationWarning)
    MATRIX = np.matrix([[2.0, 1.0], [1.0, 3.0]])
MIXED = {
    "ma * x": lambda m, x: m * x,
    "x * ma": lambda m, x: x * m,
    "ma + x": lambda m, x: m + x,
    "x - ma": lambda m, x: x - m,
    "np.multiply(ma, x)": lambda m, x: np.multiply(m, x),
    "np.concatenate": lambda m, x: np.concatenate([m, x]),
    "np.einsum": lambda m, x: np.einsum("i,i->i", m, x),
    "ad.einsum": lambda m, x: ad.einsum("i,i->i", m, x),
    "ad.where": lambda m, x: ad.where(x > 1, m, x),
    "ad.maximum": lambda m, x: ad.maximum(m, x),
    "ad.tensor": lambda m, x: ad.tensor(m) * x,
    "ad.asarray": lambda m, x: ad.asarray(m) * x,
}


@pytest.mark.parametrize("name", list(MIXED))
def test_masked_arrays_mixed_with_tensors_raise(name):
    x = ad.tensor([1.0, 2.0, 3.0], requires_grad=True)
    with pytest.raises(TypeError, match="masked arrays"):
        MIXED[name](_masked(), x)


MATRIX_OPS = {
    "matrix @ X": lambda m, x: m @ x,
    "X @ matrix": lambda m, x: x @ m,
    "matrix * X": lambda m, x: m * x,
    "X * matrix": lambda m, x: x * m,
    "np.dot": lambda m, x: np.dot(m, x),
    "np.matmul": lambda m, x: np.matmul(x, m),
    "np.tensordot": lambda m, x: np.tensordot(m, x, 1),
    "ad.matmul": lambda m, x: ad.matmul(m, x),
    "ad.linalg.solve": lambda m, x: ad.linalg.solve(m, x),
    "ad.trace": lambda m, x: ad.trace(m) * x,
    "ad.tensor": lambda m, x: ad.tensor(m) * x,
}


@pytest.mark.parametrize("name", list(MATRIX_OPS))
@pytest.mark.parametrize("requires_grad", [True, False])
def test_np_matrix_operands_raise(name, requires_grad):
    x = ad.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=requires_grad)
    with pytest.raises(TypeError, match=r"np\.matrix"):
        MATRIX_OPS[name](MATRIX, x)


def test_matrix_and_masked_are_refused_in_forward_mode_and_recorded_rules():
    with ad.forward.dual_level():
        x = ad.forward.make_dual(ad.tensor([[1.0, 2.0], [3.0, 4.0]]), ad.tensor(np.eye(2)))
        for op in (lambda: x * MATRIX, lambda: ad.einsum("ij,jk->ik", MATRIX, x)):
            with pytest.raises(TypeError, match=r"np\.matrix"):
                op()


def test_ufunc_errors_name_the_ufuncs_own_module():
    x = ad.tensor(V, requires_grad=True)
    with pytest.raises(TypeError, match=r"^scipy\.special\.dawsn has no autodiffx rule"):
        scipy.special.dawsn(x)
    with pytest.raises(TypeError, match=r"^scipy\.special\.xlogy\.outer is not supported"):
        scipy.special.xlogy.outer(x, x)
    with pytest.raises(TypeError, match=r"^scipy\.special\.erf\(\.\.\., out=\.\.\.\)"):
        scipy.special.erf(x, out=np.empty(3))
    with pytest.raises(TypeError, match=r"^numpy\.add\.reduceat is not supported"):
        np.add.reduceat(x, [0])
    with pytest.raises(TypeError, match=r"^numpy\.gcd has no autodiffx rule"):
        np.gcd(ad.tensor([4, 6]), 2)
    with pytest.raises(TypeError, match=r"t\.detach\(\)"):
        scipy.special.dawsn(x)


def test_finite_differences_read_values_of_tensors_that_require_grad():
    w = ad.tensor(2.0, requires_grad=True)
    d = ad.fd.derivative(lambda t: w * ad.sin(ad.tensor(t)), 1.0)
    assert d == pytest.approx(2.0 * np.cos(1.0), rel=1e-8)
    g = ad.fd.gradient(lambda v: np.sum(np.asarray(v) ** 2), ad.tensor(V, requires_grad=True))
    np.testing.assert_allclose(g, 2 * V, rtol=1e-8)
