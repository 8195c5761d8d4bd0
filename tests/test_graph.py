"""Reverse-mode engine semantics: accumulation, retain_graph, create_graph, hooks, memory."""

from __future__ import annotations

import gc
import sys
import threading
import weakref

import numpy as np
import pytest

import autodiffx as ad


def test_grad_accumulates_across_backward_calls():
    x = ad.tensor([1.0, 2.0], requires_grad=True)
    (x * 3).sum().backward()
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad.data, [3 + 2, 3 + 4])


def test_non_scalar_backward_needs_gradient():
    x = ad.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="gradient="):
        (x * 2).backward()
    (x * 2).backward(gradient=ad.tensor([1.0, 10.0]))
    np.testing.assert_allclose(x.grad.data, [2.0, 20.0])


def test_gradient_shape_mismatch_is_reported():
    x = ad.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match=r"\(3,\)"):
        (x * 2).backward(gradient=np.ones(3))


def test_second_backward_through_freed_graph_says_retain_graph():
    x = ad.tensor([1.0, 2.0], requires_grad=True)
    y = (ad.exp(x) * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        y.backward()


def test_retain_graph_allows_second_backward():
    x = ad.tensor([1.0, 2.0], requires_grad=True)
    y = (ad.exp(x) * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad.data, 2 * np.exp([1.0, 2.0]) * (1 + np.array([1.0, 2.0])))


def test_backward_without_requires_grad_raises():
    with pytest.raises(RuntimeError, match="does not require grad"):
        ad.tensor(1.0).backward()


def test_backward_on_leaf_sets_ones():
    x = ad.tensor(2.0, requires_grad=True)
    x.backward()
    assert x.grad.item() == 1.0


def test_create_graph_gives_differentiable_grad():
    x = ad.tensor([0.3, -1.2], requires_grad=True)
    y = ad.sin(x).sum()
    y.backward(create_graph=True)
    g = x.grad
    assert g.requires_grad
    (g2,) = ad.autograd.grad(g.sum(), x)
    np.testing.assert_allclose(g2.data, -np.sin(x.data))


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_derivatives_of_any_order(order):
    x = ad.tensor(0.7, requires_grad=True)
    y = ad.exp(2 * x)
    for _ in range(order):
        (y,) = ad.autograd.grad(y, x, create_graph=True)
    np.testing.assert_allclose(y.item(), 2.0**order * np.exp(1.4), rtol=1e-14)


def test_autograd_grad_does_not_touch_dot_grad():
    x = ad.tensor([1.0, 2.0], requires_grad=True)
    (g,) = ad.autograd.grad((x * x).sum(), x)
    assert x.grad is None
    np.testing.assert_allclose(g.data, [2.0, 4.0])


def test_autograd_grad_unused_input():
    x = ad.tensor(1.0, requires_grad=True)
    z = ad.tensor(1.0, requires_grad=True)
    with pytest.raises(RuntimeError, match="allow_unused"):
        ad.autograd.grad(x * 2, [x, z])
    gx, gz = ad.autograd.grad(x * 2, [x, z], allow_unused=True)
    assert gx.item() == 2.0
    assert gz is None


def test_autograd_grad_wrt_intermediate():
    x = ad.tensor([1.0, 2.0], requires_grad=True)
    h = x * 3
    y = (h * h).sum()
    (gh,) = ad.autograd.grad(y, h, retain_graph=True)
    np.testing.assert_allclose(gh.data, 2 * h.data)
    gx, gh2 = ad.autograd.grad(y, [x, h])
    np.testing.assert_allclose(gx.data, 18 * x.data)
    np.testing.assert_allclose(gh2.data, gh.data)


def test_backward_inputs_restricts_accumulation():
    x = ad.tensor(1.0, requires_grad=True)
    w = ad.tensor(2.0, requires_grad=True)
    (x * w).backward(inputs=[w])
    assert x.grad is None
    assert w.grad.item() == 1.0


def test_deep_chain_has_no_recursion_error():
    x = ad.tensor(1.0, requires_grad=True)
    y = x
    for _ in range(100_000):
        y = y * 1.0 + 0.0
    y.backward()
    assert x.grad.item() == 1.0


def test_saved_arrays_released_after_backward():
    x = ad.tensor(np.ones(1000), requires_grad=True)
    h = ad.exp(x)
    ref = weakref.ref(h.data)
    y = (h * h).sum()
    del h
    gc.collect()
    assert ref() is not None  # held by the graph
    y.backward()
    gc.collect()
    assert ref() is None


def test_graph_without_backward_is_freed_by_refcount():
    x = ad.tensor(np.ones(1000), requires_grad=True)
    h = ad.exp(x)
    ref = weakref.ref(h.data)
    y = (h * 2).sum()
    del h, y
    assert ref() is None  # no reference cycles: freed without the garbage collector


def test_hooks_on_leaf_and_intermediate():
    x = ad.tensor([1.0, 2.0], requires_grad=True)
    seen = []
    x.register_hook(lambda g: seen.append(g.data.copy()))
    h = x * 2
    h.register_hook(lambda g: g * 10)
    h.sum().backward()
    np.testing.assert_allclose(x.grad.data, [20.0, 20.0])
    np.testing.assert_allclose(seen[0], [20.0, 20.0])


def test_hook_removal():
    x = ad.tensor(1.0, requires_grad=True)
    remove = x.register_hook(lambda g: g * 0)
    remove()
    (x * 3).backward()
    assert x.grad.item() == 3.0


def test_no_grad_context_and_decorator():
    x = ad.tensor(1.0, requires_grad=True)
    with ad.no_grad():
        assert not ad.is_grad_enabled()
        y = x * 2
        with ad.enable_grad():
            z = x * 2
    assert ad.is_grad_enabled()
    assert not y.requires_grad and y.grad_fn is None
    assert z.requires_grad

    @ad.no_grad()
    def f(t):
        return t * 2

    assert not f(x).requires_grad


def test_grad_mode_is_per_thread():
    results = {}

    def worker():
        results["thread"] = ad.is_grad_enabled()

    with ad.no_grad():
        t = threading.Thread(target=worker)
        t.start()
        t.join()
        assert not ad.is_grad_enabled()
    assert results["thread"] is True


def test_grad_fn_names_and_leaf_flags():
    x = ad.tensor([1.0], requires_grad=True)
    y = x * 2
    assert x.is_leaf and x.grad_fn is None
    assert not y.is_leaf and y.grad_fn.name == "multiply"
    assert (x + 1).grad_fn.name == "add"


def test_integer_tensors_refuse_requires_grad():
    with pytest.raises(TypeError, match="floating point"):
        ad.tensor([1, 2], requires_grad=True)
    with pytest.raises(TypeError):
        ad.tensor([True]).requires_grad_()


def test_integer_results_do_not_require_grad():
    x = ad.tensor([1.5, 2.5], requires_grad=True)
    assert not (x > 2).requires_grad
    assert (x > 2).dtype == np.bool_
    assert not ad.argmax(x).requires_grad


def test_inplace_on_saved_tensor_is_detected():
    a = ad.tensor([1.0, 2.0], requires_grad=True)
    b = a * 2
    c = (b * b).sum()
    b += 1
    with pytest.raises(RuntimeError, match=r"multiply.*in-place"):
        c.backward()


def test_inplace_on_unsaved_tensor_is_fine():
    a = ad.tensor([1.0, 2.0], requires_grad=True)
    b = a * 2
    c = (b + 1).sum()
    b *= 3.0
    c.backward()
    np.testing.assert_allclose(a.grad.data, [2.0, 2.0])


@pytest.mark.parametrize(
    ("name", "f"),
    [
        ("mean", lambda x: x.mean()),
        ("var", lambda x: ad.var(x, axis=0, ddof=1)),
        ("x / c", lambda x: x / 3.0),
        ("t /= c", lambda x: x.__mul__(1.0).__itruediv__(3.0)),
        ("x / sum(x)", lambda x: x / x.sum()),
        ("c / x", lambda x: 2.0 / x),
    ],
)
def test_inplace_after_a_division_works_as_in_pytorch(name, f):
    # m = x.mean(); m *= 2 used to fail at backward naming 'divide' (which saved its output,
    # an op the user never called); as PyTorch's div, the rule recomputes from its inputs.
    def inplace(x):
        m = f(x)
        m *= 2.0
        return (m * m).sum()

    def plain(x):
        m = 2.0 * f(x)
        return (m * m).sum()

    x = ad.tensor([1.0, 2.0, 4.0])
    np.testing.assert_allclose(ad.grad(inplace)(x).data, ad.grad(plain)(x).data, rtol=1e-14)
    hess = ad.jacrev(ad.grad(inplace))(x).data  # reverse over reverse: a recorded backward
    np.testing.assert_allclose(hess, ad.hessian(plain)(x).data, rtol=1e-12, atol=1e-14)


def test_inplace_ops_are_differentiable():
    a = ad.tensor([1.0, 2.0], requires_grad=True)
    b = a * 1
    b *= a
    b += 2
    b -= a
    b /= 2
    b.sum().backward()
    np.testing.assert_allclose(a.grad.data, (2 * a.data - 1) / 2)
    y = b * b  # saves b
    b += 1  # bumps b's version: the saved value is stale
    with pytest.raises(RuntimeError, match=r"'multiply'.*modified by an in-place"):
        y.sum().backward()


def test_inplace_on_leaf_requiring_grad_raises_but_no_grad_works():
    p = ad.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="no_grad"):
        p += 1
    with ad.no_grad():
        p -= 0.5
    np.testing.assert_allclose(p.data, [0.5, 1.5])


def test_setitem_is_differentiable():
    x = ad.tensor(np.arange(5.0), requires_grad=True)
    y = ad.tensor(10.0, requires_grad=True)
    z = x * 1
    z[1:3] = y * 2
    (z * z).sum().backward()
    np.testing.assert_allclose(x.grad.data, [0.0, 0.0, 0.0, 6.0, 8.0])
    assert y.grad.item() == 2 * (2 * 20.0 * 2)  # two written elements, each d(z^2)/dy


def test_setitem_with_mask_and_plain_values():
    x = ad.tensor([1.0, -2.0, 3.0], requires_grad=True)
    z = x * 1
    z[z.data < 0] = 0.0
    z.sum().backward()
    np.testing.assert_allclose(x.grad.data, [1.0, 0.0, 1.0])


# x[idx] = y with repeated positions: NumPy keeps one write (the last), so only the elements
# of y whose write survives get a gradient (issue 11).
REPEATED_WRITES = {
    "ints": ((3,), [0, 0], (2,)),
    "negative ints": ((3,), [0, -3, 1, 1], (4,)),
    "broadcast scalar": ((3,), [2, 2], ()),
    "tuple of arrays": ((2, 3), (np.array([1, 1, 0]), np.array([2, 2, 0])), (3,)),
    "slice and array": ((2, 3), (slice(None), [1, 1]), (2,)),
    "separated arrays": ((2, 3, 4), ([1, 1], slice(None), [2, 2]), (2, 1)),
    "array with a mask": ((2, 3), ([0, 0], np.array([False, True, False])), (2,)),
}


def _write_jacobian(shape, idx, vshape):
    """d(x[idx] = y)/dy by NumPy itself: each basis vector of y written through idx."""
    n = int(np.prod(vshape))
    cols = []
    for k in range(n):
        h = np.zeros(shape)
        h[idx] = np.eye(n)[k].reshape(vshape)
        cols.append(h.ravel())
    return np.stack(cols, axis=-1)


@pytest.mark.parametrize("name", sorted(REPEATED_WRITES))
def test_setitem_repeated_positions_give_gradient_to_the_surviving_write(name):
    shape, idx, vshape = REPEATED_WRITES[name]
    jac = _write_jacobian(shape, idx, vshape)
    rng = np.random.default_rng(0)
    x0, y0, w = rng.normal(size=shape), rng.normal(size=vshape), rng.normal(size=shape)

    def f(y):
        h = ad.tensor(x0) * 1.0
        h[idx] = y
        return h

    y = ad.tensor(y0, requires_grad=True)
    (f(y) * w).sum().backward()
    np.testing.assert_allclose(y.grad.data, (w.ravel() @ jac).reshape(vshape), atol=1e-12)
    got = ad.jacrev(f)(ad.tensor(y0)).data.reshape(jac.shape)  # batched cotangents
    np.testing.assert_allclose(got, jac, atol=1e-12)
    np.testing.assert_allclose(ad.jacfwd(f)(ad.tensor(y0)).data.reshape(jac.shape), jac)
    # Second order: loss = sum(w h**2) has Hessian 2 J^T diag(w) J in y.
    hess = 2 * jac.T @ (w.ravel()[:, None] * jac)
    got = ad.hessian(lambda y: (w * f(y) ** 2).sum())(ad.tensor(y0)).data
    np.testing.assert_allclose(got.reshape(hess.shape), hess, atol=1e-12)
    y = ad.tensor(y0, requires_grad=True)
    (g,) = ad.autograd.grad((w * f(y) ** 2).sum(), y, create_graph=True)
    (g * ad.tensor(w.ravel() @ jac).reshape(vshape)).sum().backward()
    want = hess @ (w.ravel() @ jac)
    np.testing.assert_allclose(y.grad.data, want.reshape(vshape), atol=1e-12)


def test_getitem_repeated_indices_accumulate():
    x = ad.tensor(np.arange(4.0), requires_grad=True)
    x[[0, 0, 3]].sum().backward()
    np.testing.assert_allclose(x.grad.data, [2.0, 0.0, 0.0, 1.0])


def test_detect_anomaly_names_primitive_and_location():
    x = ad.tensor([0.0, 1.0], requires_grad=True)
    with (
        ad.detect_anomaly(),
        pytest.raises(FloatingPointError, match=r"(?s)'sqrt'.*test_graph\.py"),
    ):
        ad.sqrt(x).sum().backward()


def test_detect_anomaly_in_forward():
    x = ad.tensor([-1.0], requires_grad=True)
    with (
        ad.detect_anomaly(),
        np.errstate(invalid="ignore"),
        pytest.raises(FloatingPointError, match="forward of 'log'"),
    ):
        ad.log(x)


def test_gradient_dtype_follows_input_float32():
    x = ad.tensor(np.float32([1.0, 2.0]), requires_grad=True)
    y = (x * 2.5 + ad.tensor(np.float64(1.0))).sum()
    assert y.dtype == np.float64
    y.backward()
    assert x.grad.dtype == np.float32


def test_leaf_grad_does_not_alias_other_grads():
    a = ad.tensor([1.0, 2.0], requires_grad=True)
    b = ad.tensor([1.0, 2.0], requires_grad=True)
    (a + b).sum().backward()
    a.grad.data[0] = 100.0
    assert b.grad.data[0] == 1.0


def test_zero_derivative_ops_give_zero_gradient():
    x = ad.tensor([1.5, -0.5], requires_grad=True)
    ad.sign(x).sum().backward()
    np.testing.assert_array_equal(x.grad.data, [0.0, 0.0])


def test_multi_output_unused_outputs_get_zero_cotangent():
    x = ad.tensor(np.arange(6.0), requires_grad=True)
    a, _b, c = ad.split(x, 3)
    (a.sum() + 2 * c.sum()).backward()
    np.testing.assert_allclose(x.grad.data, [1, 1, 0, 0, 2, 2])


def test_inplace_on_saved_output_is_detected():
    x = ad.tensor([1.0, 2.0], requires_grad=True)
    y = ad.exp(x)
    z = y + 0.0  # add saves nothing
    y += 1  # exp's backward needs its output, now overwritten
    with pytest.raises(RuntimeError, match=r"'exp'.*output 0"):
        (z.sum() + y.sum()).backward()


def test_inplace_through_a_view_is_detected():
    x = ad.tensor([1.0, 2.0], requires_grad=True)
    h = x * 1.0
    y = h * h
    v = h[0:1]
    with ad.no_grad():
        v += 1.0  # writes into h's buffer
    with pytest.raises(RuntimeError, match="in-place"):
        y.sum().backward()


@pytest.mark.parametrize(("create_graph", "calls"), [(False, 100), (True, 100)])
def test_concurrent_backward_into_a_shared_leaf_loses_no_update(create_graph, calls):
    """Accumulation into .grad is atomic: 4 threads x `calls` backward() into one leaf."""
    N = 100_000  # NumPy releases the GIL in the arithmetic: the threads overlap
    x = ad.tensor(np.ones(N), requires_grad=True)
    errors = []

    def work():
        try:
            for _ in range(calls):
                (x * 3.0).sum().backward(create_graph=create_graph)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: races show up
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(old)
    assert not errors
    np.testing.assert_array_equal(x.grad.data, np.full(N, 3.0 * 4 * calls))


def _rebind_then_backward(build, rebind, create_graph, leaves):
    """Forward with ``build``, rebind a .data with ``rebind``, backward; the leaves' grads."""
    y = build()
    rebind()
    y.backward(create_graph=create_graph)
    return [leaf.grad.data.copy() for leaf in leaves]


@pytest.mark.parametrize("create_graph", [False, True])
def test_data_rebound_between_forward_and_backward_is_read_as_pytorch_does(create_graph):
    """PyTorch's values (checked against torch 2.13): the rules read the rebound .data, in a
    plain pass as in a recorded one (they used to give [8, 16] and [12, 20])."""
    x = ad.tensor([4.0, 8.0], requires_grad=True)

    def rebind():
        x.data = x.data + 2

    got = _rebind_then_backward(lambda: (x * x).sum(), rebind, create_graph, [x])
    np.testing.assert_array_equal(got[0], [12.0, 20.0])
    # a non-leaf saved by the op, and a unary rule that reads its argument
    x = ad.tensor([1.0, 2.0], requires_grad=True)
    h = x * 2

    def rebind_h():
        h.data = h.data + 1

    got = _rebind_then_backward(lambda: (h * h).sum(), rebind_h, create_graph, [x])
    np.testing.assert_array_equal(got[0], [12.0, 20.0])
    x = ad.tensor([0.5, 1.0], requires_grad=True)

    def rebind_sin():
        x.data = np.array([2.0, 3.0])

    got = _rebind_then_backward(lambda: ad.sin(x).sum(), rebind_sin, create_graph, [x])
    np.testing.assert_allclose(got[0], np.cos([2.0, 3.0]), rtol=1e-15)


def test_data_rebound_gives_one_answer_with_and_without_create_graph():
    """A rule of more than two arguments (einsum's subscripts and three operands)."""
    answers = []
    for create_graph in (False, True):
        x = ad.tensor([1.0, 2.0], requires_grad=True)
        w = ad.tensor([3.0, 4.0], requires_grad=True)

        def rebind(w=w):
            w.data = np.array([5.0, 6.0])

        build = lambda x=x, w=w: ad.einsum("i,i,i->", x, w, w)
        answers.append(_rebind_then_backward(build, rebind, create_graph, [x, w]))
    for a, b in zip(*answers):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(answers[0][0], [25.0, 36.0])
    np.testing.assert_array_equal(answers[0][1], [10.0, 24.0])


@pytest.mark.parametrize("create_graph", [False, True])
def test_data_rebound_to_another_shape_or_dtype_is_refused(create_graph):
    for new, got in ((np.zeros(3), r"float64\[3\]"), (np.zeros(2, np.float32), r"float32\[2\]")):
        x = ad.tensor([4.0, 8.0], requires_grad=True)
        y = (x * x).sum()
        x.data = new
        with pytest.raises(RuntimeError, match=rf"argument 0 of 'multiply'.*rebound to {got}"):
            y.backward(create_graph=create_graph)
