"""The transforms' fast paths (one array argument, no mode on) keep every guarantee."""

import numpy as np
import pytest

import autodiffx as ad

XS = np.linspace(0.1, 1.0, 5)


def f(t):
    return ad.sum(ad.sin(t) * t)


def df(x):
    return np.sin(x) + x * np.cos(x)


def test_grad_vjp_jacrev_jacfwd_values_on_arrays_and_constant_tensors():
    for x in (XS, ad.tensor(XS)):
        np.testing.assert_allclose(ad.grad(f)(x).numpy(), df(XS))
        np.testing.assert_allclose(ad.vjp(f, x)[1](1.0)[0].numpy(), df(XS))
        np.testing.assert_allclose(ad.jacrev(f)(x).numpy(), df(XS))
        np.testing.assert_allclose(ad.jacfwd(f)(x).numpy(), df(XS))
        np.testing.assert_allclose(ad.jvp(f, (x,), (np.ones(5),))[1].numpy(), df(XS).sum())
    jac = ad.jacfwd(lambda t: ad.sin(t).reshape(5, 1) * 2.0)(XS)
    np.testing.assert_allclose(jac.numpy(), (2 * np.diag(np.cos(XS))).reshape(5, 1, 5))


@pytest.mark.parametrize("transform", ["grad", "vjp", "jacrev"])
def test_a_write_into_the_variable_under_no_grad_is_refused(transform):
    def g(x):
        with ad.no_grad():
            x *= 2.0
        return ad.sum(x * x)

    call = {
        "grad": lambda: ad.grad(g)(XS.copy()),
        "vjp": lambda: ad.vjp(g, XS.copy()),
        "jacrev": lambda: ad.jacrev(g)(XS.copy()),
    }[transform]
    with pytest.raises(RuntimeError, match="modifies its argument 0"):
        call()


def test_a_hook_on_an_intermediate_runs_once():
    calls = []

    def g(x):
        s = ad.sin(x)
        s.register_hook(lambda gr: calls.append(1) or gr * 10)
        return ad.sum(s)

    np.testing.assert_allclose(ad.grad(g)(XS).numpy(), 10 * np.cos(XS))
    assert calls == [1]


def test_a_closed_over_parameter_keeps_the_results_differentiable():
    w = ad.tensor(2.0, requires_grad=True)

    def g(x):
        return ad.sum(ad.sin(x) * w)

    gr = ad.grad(g)(XS)
    assert gr.requires_grad
    (dw,) = ad.autograd.grad(ad.sum(gr), w)
    np.testing.assert_allclose(dw.numpy(), np.cos(XS).sum())
    jac = ad.jacfwd(lambda x: ad.sin(x) * w)(XS)
    assert jac.requires_grad
    np.testing.assert_allclose(jac.detach().numpy(), 2 * np.diag(np.cos(XS)))
    _, tan = ad.jvp(g, (XS,), (np.ones(5),))
    (dw,) = ad.autograd.grad(tan, w)
    np.testing.assert_allclose(dw.numpy(), np.cos(XS).sum())


def test_a_graph_through_a_returned_transforms_variable_is_not_pruned_wrongly():
    kept = []

    def inner(x):
        y = ad.sin(x)
        kept.append(y)
        return ad.sum(y)

    ad.grad(inner)(XS)  # kept[0] depends on a variable of a transform that has returned
    old = kept[0]
    g = ad.grad(lambda x: ad.sum(x * x) + ad.sum(old))(XS)
    np.testing.assert_allclose(g.numpy(), 2 * XS)
    assert not g.requires_grad


def test_forward_results_are_copies_not_the_closed_over_constant():
    c = ad.tensor(np.arange(5.0))
    p, t = ad.jvp(lambda x: c, (XS,), (np.ones(5),))
    assert t is not None and not np.any(t.numpy())
    p += 1.0
    np.testing.assert_array_equal(c.numpy(), np.arange(5.0))


def test_the_variables_are_fresh_leaves_and_the_inputs_unchanged():
    x = XS.copy()
    seen = []

    def g(t):
        seen.append((t.requires_grad, t.is_leaf))
        return ad.sum(t * t)

    ad.grad(g)(x)
    ad.vjp(g, x)
    assert seen == [(True, True), (True, True)]
    np.testing.assert_array_equal(x, XS)
