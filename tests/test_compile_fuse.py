"""``ad.compile(f, fuse="numexpr")``: small elementwise regions of the derivative rules as
one numexpr call each, equal to eager (bit for bit for + - * /, else within rtol)."""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest

import autodiffx as ad

pytest.importorskip("numexpr")


def _fused(f, *args):
    cf = ad.compile(f, fuse="numexpr")
    cf(*args)  # records
    return cf, cf(*args)  # replays


def _close(got, want, rtol=1e-12):
    got, want = ad.func.tree_flatten(got)[0], ad.func.tree_flatten(want)[0]
    for g, w in zip(got, want, strict=True):
        g, w = np.asarray(getattr(g, "data", g)), np.asarray(getattr(w, "data", w))
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=rtol, atol=0)


def w3(x):
    return ad.sum(ad.sin(x) * ad.exp(-(x**2)) + x**3)


def chain(x):
    for _ in range(6):
        x = ad.exp(ad.tanh(x * 0.5 + 0.5))
    return ad.sum(x)


def test_chain_fused_bit_identical_to_eager():
    x = np.linspace(-1.0, 1.0, 10)
    cf, got = _fused(ad.value_and_grad(chain), x)
    assert "numexpr:" in cf.source and "ne_0(" in cf.source
    want = ad.value_and_grad(chain)(x)
    assert all(np.array_equal(g.data, w.data) for g, w in zip(got, want, strict=True))


@pytest.mark.parametrize(("dtype", "rtol"), [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_w3_like_values_and_gradients(dtype, rtol):
    x = np.random.default_rng(0).standard_normal(500).astype(dtype)
    cf, got = _fused(ad.value_and_grad(w3), x)
    assert "numexpr:" in cf.source
    _close(got, ad.value_and_grad(w3)(x), rtol)
    assert got[1].data.dtype == dtype


def test_a_training_step_matches_eager():
    r = np.random.default_rng(1)
    w0, x = r.standard_normal((8, 16)), r.standard_normal((16, 4))

    def step(w, x):
        loss, g = ad.value_and_grad(lambda w: ad.mean(ad.tanh(w @ x) ** 2))(w)
        return loss, w - 0.1 * g

    _, got = _fused(step, w0, x)
    _close(got, step(w0, x))


def test_an_intermediate_used_outside_the_region_stays_a_value():
    def f(x):
        y, g = ad.value_and_grad(lambda x: ad.sum(ad.tanh(x) * x))(x)
        return y, g, g * g

    x = np.linspace(-2.0, 2.0, 7)
    _, got = _fused(f, x)
    _close(got, f(x))


def test_broadcasting_in_a_region():
    a, b = np.linspace(0.1, 1.0, 5)[:, None], np.linspace(-1.0, 1.0, 4)[None, :]
    f = ad.grad(lambda a, b: ad.sum(ad.sin(a * b) * a + b), argnums=(0, 1))
    cf, got = _fused(f, a, b)
    assert "numexpr:" in cf.source
    _close(got, f(a, b))


def test_a_scalar_constant():
    c = ad.tensor(np.array(2.5))
    f = ad.grad(lambda x: ad.sum(ad.tanh(x) * c + 3.0 * x * x))
    x = np.linspace(-1.0, 1.0, 6)
    cf, got = _fused(f, x)
    assert "numexpr:" in cf.source
    _close(got, f(x))


def test_large_arrays_are_not_fused():
    x = np.linspace(-1.0, 1.0, 4096)
    cf, got = _fused(ad.value_and_grad(chain), x)
    assert "numexpr" not in cf.source
    want = ad.value_and_grad(chain)(x)
    assert all(np.array_equal(g.data, w.data) for g, w in zip(got, want, strict=True))


def test_a_primal_warning_is_kept():
    f = ad.value_and_grad(lambda x: ad.sum(ad.log(x) * x * x))
    x = np.array([-1.0, 2.0, 3.0])
    cf = ad.compile(f, fuse="numexpr")
    for _ in range(2):  # (recording, then replay)
        with pytest.warns(RuntimeWarning, match="invalid value"):
            cf(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _close(cf(np.array([1.0, 2.0, 3.0])), f(np.array([1.0, 2.0, 3.0])))


def test_unknown_fuse_and_missing_numexpr(monkeypatch):
    with pytest.raises(ValueError, match="fuse"):
        ad.compile(chain, fuse="numba")
    monkeypatch.setitem(sys.modules, "numexpr", None)
    with pytest.raises(ImportError, match=r"autodiffx\[fuse\]"):
        ad.compile(chain, fuse="numexpr")


def test_guards_still_record_again():
    def f(x):
        g = ad.grad(lambda x: ad.sum(ad.tanh(x) * x * x))(x)
        return g * 2.0 if bool(ad.sum(x) > 0) else g * 3.0

    cf = ad.compile(f, fuse="numexpr")
    for x in (np.linspace(0.1, 1.0, 5), np.linspace(-1.0, -0.1, 5), np.linspace(0.2, 1.0, 5)):
        _close(cf(x), f(x))
    assert cf.cache_info()["recordings"] == 2
    assert "numexpr:" in cf.source


def _mlp(dtype):
    nn = ad.nn
    model = nn.Sequential(
        nn.Linear(6, 8, rng=1, dtype=dtype), nn.Tanh(), nn.Linear(8, 3, rng=2, dtype=dtype)
    )
    return model, ad.optim.SGD(model.parameters(), lr=0.1)


@pytest.mark.parametrize(("dtype", "rtol"), [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_an_optimizer_step_with_backward_matches_eager(dtype, rtol):
    x = np.random.default_rng(2).standard_normal((5, 6)).astype(dtype)
    y = np.array([0, 1, 2, 1, 0])
    (m1, o1), (m2, o2) = _mlp(dtype), _mlp(dtype)

    def step(model, opt):
        def run(x, y):
            opt.zero_grad()
            loss = ad.nn.functional.cross_entropy(ad.tanh(model(x)) * 2.0, y)
            loss.backward()
            opt.step()
            return loss

        return run

    eager, cstep = step(m1, o1), ad.compile(step(m2, o2), fuse="numexpr")
    for _ in range(3):
        _close(cstep(x, y), eager(x, y), rtol)
    assert "numexpr:" in cstep.source
    for p, q in zip(m2.parameters(), m1.parameters(), strict=True):
        np.testing.assert_allclose(p.data, q.data, rtol=rtol, atol=1e-7)
