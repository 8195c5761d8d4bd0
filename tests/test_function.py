"""Custom rules with ad.Function: reverse, forward, higher order, multi-output, errors."""

from __future__ import annotations

import numpy as np
import pytest

import autodiffx as ad


class Cube(ad.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x**3

    @staticmethod
    def vjp(ctx, g):
        (x,) = ctx.saved_tensors
        return 3 * x**2 * g

    @staticmethod
    def jvp(ctx, t):
        (x,) = ctx.saved_tensors
        return 3 * x**2 * t


class NoJvp(ad.Function):
    @staticmethod
    def forward(ctx, x):
        return x * 2

    @staticmethod
    def vjp(ctx, g):
        return g * 2


class SplitSum(ad.Function):
    """Two outputs: (x + y, x * y)."""

    @staticmethod
    def forward(ctx, x, y):
        ctx.save_for_backward(x, y)
        return x + y, x * y

    @staticmethod
    def vjp(ctx, g_sum, g_prod):
        x, y = ctx.saved_tensors
        return g_sum + g_prod * y, g_sum + g_prod * x


def test_backward_and_higher_order():
    x = ad.tensor([1.0, 2.0], requires_grad=True)
    y = Cube.apply(x)
    assert y.grad_fn.name == "Cube"
    (g,) = ad.autograd.grad(y.sum(), x, create_graph=True)
    np.testing.assert_allclose(g.data, 3 * x.data**2)
    (h,) = ad.autograd.grad(g.sum(), x)
    np.testing.assert_allclose(h.data, 6 * x.data)


def test_forward_mode_uses_jvp():
    with ad.forward.dual_level():
        x = ad.forward.make_dual(ad.tensor([2.0]), ad.tensor([1.0]))
        _, t = ad.forward.unpack_dual(Cube.apply(x))
    np.testing.assert_allclose(t.data, [12.0])


def test_missing_jvp_names_the_function():
    with ad.forward.dual_level():
        x = ad.forward.make_dual(ad.tensor([2.0]), ad.tensor([1.0]))
        with pytest.raises(TypeError, match=r"NoJvp.*jvp"):
            NoJvp.apply(x)


def test_multi_output_function():
    x = ad.tensor(2.0, requires_grad=True)
    y = ad.tensor(3.0, requires_grad=True)
    s, p = SplitSum.apply(x, y)
    (s + 10 * p).backward()
    assert x.grad.item() == 1 + 10 * 3
    assert y.grad.item() == 1 + 10 * 2


def test_only_one_output_used():
    x = ad.tensor(2.0, requires_grad=True)
    y = ad.tensor(3.0, requires_grad=True)
    _, p = SplitSum.apply(x, y)
    p.backward()
    assert x.grad.item() == 3.0


def test_wrong_number_of_gradients_is_reported():
    class Bad(ad.Function):
        @staticmethod
        def forward(ctx, x, y):
            return x * y

        @staticmethod
        def vjp(ctx, g):
            return g

    x = ad.tensor(1.0, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"Bad\.vjp returned 1 gradients for 2 inputs"):
        Bad.apply(x, x).backward()


def test_saved_tensor_modified_in_place_is_detected():
    x = ad.tensor([1.0], requires_grad=True)
    h = x * 1
    y = Cube.apply(h)
    with ad.no_grad():
        h += 1
    with pytest.raises(RuntimeError, match="in place"):
        y.backward()


def test_gradcheck_on_custom_function():
    assert ad.fd.gradcheck(lambda t: Cube.apply(t), ad.tensor([0.3, -1.2]))


def test_custom_functions_are_not_in_the_registry():
    Cube.apply(ad.tensor(1.0))
    assert "Cube" not in ad.REGISTRY


class TorchCube(ad.Function):
    """PyTorch's spelling: the reverse rule is named ``backward``."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x**3

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 3 * x**2 * g


class TorchSplitSum(ad.Function):
    @staticmethod
    def forward(ctx, x, y):
        ctx.save_for_backward(x, y)
        return x + y, x * y

    @staticmethod
    def backward(ctx, g_sum, g_prod):
        x, y = ctx.saved_tensors
        return g_sum + g_prod * y, g_sum + g_prod * x


def test_backward_is_accepted_as_the_vjp():
    x = ad.tensor([1.0, 2.0], requires_grad=True)
    TorchCube.apply(x).sum().backward()
    np.testing.assert_array_equal(x.grad.data, [3.0, 12.0])
    (g,) = ad.autograd.grad(TorchCube.apply(x).sum(), x, create_graph=True)
    (h,) = ad.autograd.grad(g.sum(), x)
    np.testing.assert_array_equal(h.data, [6.0, 12.0])
    f = lambda t: TorchCube.apply(t).sum()
    np.testing.assert_array_equal(ad.jacrev(ad.grad(f))(x.detach()).data, np.diag([6.0, 12.0]))
    a = ad.tensor(2.0, requires_grad=True)
    b = ad.tensor(3.0, requires_grad=True)
    s, p = TorchSplitSum.apply(a, b)
    (s + 10 * p).backward()
    assert (a.grad.item(), b.grad.item()) == (31.0, 21.0)


def test_backward_is_inherited_and_counted_like_vjp():
    class Sub(TorchCube):
        pass

    x = ad.tensor(2.0, requires_grad=True)
    Sub.apply(x).backward()
    assert x.grad.item() == 12.0

    class Bad(ad.Function):
        @staticmethod
        def forward(ctx, x, y):
            return x * y

        @staticmethod
        def backward(ctx, g):
            return g

    with pytest.raises(RuntimeError, match=r"Bad\.backward returned 1 gradients for 2 inputs"):
        Bad.apply(x, x).backward()


def test_function_without_a_reverse_rule_says_define_vjp():
    class Square(ad.Function):
        @staticmethod
        def forward(ctx, x):
            return x * x

    x = ad.tensor(2.0, requires_grad=True)
    y = Square.apply(x)
    with pytest.raises(NotImplementedError, match=r"Square has no reverse-mode rule: define vjp"):
        y.backward()


def test_function_defining_both_vjp_and_backward_is_refused():
    class Both(Cube):
        @staticmethod
        def vjp(ctx, g):
            return g

        @staticmethod
        def backward(ctx, g):
            return g

    with pytest.raises(TypeError, match=r"Both defines both vjp\(\) and backward\(\)"):
        Both.apply(ad.tensor(1.0, requires_grad=True))
