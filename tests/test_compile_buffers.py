"""ad.compile's buffers: large intermediates written into at their last use (``out=``) only
where that is exact and nothing else can see the buffer, and peak memory (tracemalloc) of
compiled W2 and W3 against their hand-written NumPy floors (bytes, not timing)."""

from __future__ import annotations

import gc
import tracemalloc

import numpy as np
import pytest
from _train_steps import assert_compiled_step_is_eagers

import autodiffx as ad
from autodiffx import compiler, nn
from benchmarks import common

BIG = compiler._REUSE_BYTES // 8 + 1  # float64 elements above the reuse threshold


def w3(x):
    return ad.sum(ad.sin(x) * ad.exp(-(x**2)) + x**3)


def _out_lines(cf):
    return [ln.strip() for ln in cf.source.splitlines() if "out=" in ln]


def test_dying_intermediates_are_written_into_bit_for_bit():
    rng = np.random.default_rng(0)
    cf, g = ad.compile(ad.grad(w3)), ad.grad(w3)
    x = rng.standard_normal(BIG)
    cf(x)
    lines = _out_lines(cf)
    assert len(lines) >= 5, cf.source  # (8 as recorded, fewer if steps are shared)
    # only exact ufuncs write into an operand (transcendental loops may round differently)
    exact = ("np.multiply(", "np.negative(", "np.add(")
    assert all(any(k in ln for k in exact) for ln in lines), lines
    for _ in range(3):
        x = rng.standard_normal(BIG)
        keep = x.copy()
        assert np.array_equal(cf(x).data, g(x).data)
        assert np.array_equal(x, keep)  # an input is never written
    strided = rng.standard_normal(2 * BIG)[::2]  # same signature, another layout
    assert np.array_equal(cf(strided).data, g(strided).data)
    assert cf.cache_info()["recordings"] == 1


def test_small_arrays_keep_fresh_buffers():
    cf = ad.compile(ad.grad(w3))
    cf(np.linspace(-1.0, 1.0, 10))
    assert _out_lines(cf) == []


def _twice(g):
    return lambda x: g(x * 2.0)


@pytest.mark.parametrize(
    "fn",
    [
        lambda x: -x,  # an input
        _twice(lambda y: (y, -y)),  # an output
        _twice(ad.exp),  # exp's loops may round differently in place
        _twice(lambda y: (ad.reshape(y, (2, -1)), -y)),  # a view of it is alive
        _twice(lambda y: (y[1:], -y)),  # a slice of it is alive
        lambda x: x[:1] * 2.0 + x,  # another shape (broadcast)
        lambda x: (x > 0.0) * x,  # another dtype
        _twice(lambda y: (y * 1j) * 2.0),  # complex
        _twice(lambda y: -ad.reshape(y, (2, -1))),  # the result of a kernel that may view
    ],
    ids=["input", "output", "exp", "reshape", "slice", "shape", "dtype", "complex", "view-op"],
)
def test_no_write_into_what_something_else_sees(fn):
    cf = ad.compile(fn)
    cf(np.linspace(-1.0, 1.0, 2 * BIG))
    y = np.linspace(2.0, -1.0, 2 * BIG)
    keep = y.copy()
    got, want = cf(y), fn(ad.tensor(y))
    flat = ad.func.tree_flatten
    for a, b in zip(flat(got)[0], flat(want)[0], strict=True):
        assert np.array_equal(a.data, b.data)
    assert np.array_equal(y, keep)
    assert _out_lines(cf) == [], cf.source


def test_outputs_are_never_written_by_later_steps():
    cf = ad.compile(_twice(lambda y: (y, -(y * 3.0))))
    x = np.linspace(-1.0, 1.0, 2 * BIG)
    cf(x)
    a, b = cf(x)
    np.testing.assert_array_equal(a.data, x * 2.0)
    np.testing.assert_array_equal(b.data, -((x * 2.0) * 3.0))
    (line,) = _out_lines(cf)  # -(y * 3.0) into y * 3.0's buffer, never into y's
    assert "np.negative(" in line, cf.source


@pytest.mark.parametrize(
    "fn",
    [
        lambda x, y: ad.sum(x * 2.0 + y),
        lambda x, y: ad.sum(ad.transpose(x) * 2.0 + y),  # an F-ordered intermediate
        lambda x, y: (x * 2.0 + y) @ y,
    ],
    ids=["sum", "transposed", "matmul"],
)
def test_a_buffer_of_another_layout_is_not_written_into(fn):
    # Eager's fresh result of (F-ordered) + (C-ordered) is C-ordered; an F-ordered buffer
    # written into would make the sum or matmul after it add in another order.
    rng = np.random.default_rng(2)
    n = int(np.sqrt(BIG)) + 1
    cf = ad.compile(fn)
    cf(rng.standard_normal((n, n)), rng.standard_normal((n, n)))
    assert any(f"strides == ({8 * n}, 8) else None" in ln for ln in _out_lines(cf)), cf.source
    for layout in (np.ascontiguousarray, np.asfortranarray, lambda a: a[::-1]):
        for _ in range(3):
            x, y = layout(rng.standard_normal((n, n))), rng.standard_normal((n, n))
            got, want = cf(x, y), fn(ad.tensor(x), ad.tensor(y))
            assert np.array_equal(got.data, want.data)
    assert cf.cache_info()["recordings"] == 1


def test_a_training_step_with_large_activations_is_eagers():
    def make():
        model = nn.Sequential(nn.Linear(64, 512, rng=0), nn.Tanh(), nn.Linear(512, 10, rng=1))
        return model, ad.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    rng = np.random.default_rng(1)
    batches = [(rng.standard_normal((64, 64)), rng.integers(0, 10, 64)) for _ in range(4)]
    cstep = assert_compiled_step_is_eagers(make, batches)
    assert any("np.subtract(1, " in ln for ln in _out_lines(cstep)), cstep.source


# ----- peak memory (tracemalloc sees NumPy's buffers): compiled <= hand-written ---------------
def _peak(fn) -> int:
    fn()  # warm: caches, the first call's allocations
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        fn()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("dtype", common.W2_DTYPES)
def test_w2_compiled_step_peak_is_at_most_the_hand_written_steps(dtype):
    x, y = common.w2_input(dtype)
    model, opt = common.w2_model(dtype)
    cstep = common.w2_compiled(model, opt)
    cstep(x, y)  # records
    params = common.w2_numpy_params(model)
    compiled = _peak(lambda: cstep(x, y))
    floor = _peak(lambda: common.w2_numpy_step(params, x, y))
    assert compiled <= floor, (compiled, floor)


def test_w3_compiled_gradient_peak_is_at_most_the_hand_written_ones():
    x = common.w3_input()
    cg = ad.compile(ad.grad(w3))
    cg(x)
    compiled = _peak(lambda: cg(x))
    floor = _peak(lambda: common.w3_numpy_gradient(x))
    assert compiled < floor, (compiled, floor)
