"""ad.compile on every OpSpec row: the compiled value and VJP, replayed on fresh inputs,
equal eager ones bit for bit (``np.array_equal``)."""

from __future__ import annotations

import numpy as np
import pytest
from test_primitives import (
    DIFF,
    LIVE,
    _floating,
    _grads,
    _ids,
    _with_dtypes,
    make_point,
    op_fun,
    rand_like,
)

import autodiffx as ad


def _value_and_vjp(p, n):
    f = op_fun(p)

    def program(*arrs):
        xs = [ad.Tensor(a, requires_grad=True) for a in arrs[:n]]
        outs = _floating(f(xs))
        gs = _grads(outs, xs, list(arrs[n:]))
        return [o.detach() for o in outs], gs

    return program


#: Rows whose eager backward takes a raw fast path with another formula than its rule on
#: Tensors (which is what a compiled program records): equal to a few ulp, not bit for bit.
#: (None since softmax_cross_entropy records its plain backward as one step.)
RAW_FAST_PATH: dict[str, str] = {}


#: Rows whose VJP reads values to check something (a guard, so each new input records again):
#: the complex svd and eigh rules check that the loss does not depend on the free phase of
#: the singular vectors or eigenvectors (an error otherwise, as PyTorch's).
READS_VALUES = {("svd", np.complex128), ("eigh", np.complex128)}


def _same(a, b, what, ulps=False):
    la, lb = ad.func.tree_flatten(a)[0], ad.func.tree_flatten(b)[0]
    assert len(la) == len(lb), what
    for x, y in zip(la, lb, strict=True):
        x, y = np.asarray(x.data), np.asarray(y.data)
        assert x.dtype == y.dtype and x.shape == y.shape, what
        # NOTE: on 0-d complex values eager rules compute with NumPy scalars, whose complex
        # product (scalar arithmetic) differs from the ufunc loop on arrays by an ulp in
        # about 40% of cases; the compiled program runs the ufunc on 0-d arrays.
        if ulps or (x.ndim == 0 and x.dtype.kind == "c"):
            eps = np.finfo(x.dtype).eps
            assert np.allclose(x, y, rtol=8 * eps, atol=8 * eps * np.max(np.abs(y))), what
        else:
            assert np.array_equal(x, y, equal_nan=x.dtype.kind in "fc"), f"{what}: {x} != {y}"


def _inputs(p, f, rng):
    outs = _floating(f([ad.Tensor(x, requires_grad=True) for x in p.xs]))
    return list(p.xs) + [rand_like(rng, o.shape, o.dtype) for o in outs]


@pytest.mark.parametrize(("spec", "dtype"), _with_dtypes(DIFF))
def test_compiled_value_and_vjp_equal_eager(spec, dtype, rng):
    if dtype is np.complex128 and "complex" in spec.exempt:
        return
    for case in spec.cases:
        p = make_point(spec, case, rng, dtype)
        q = make_point(spec, case, rng, dtype)
        q.args = [b if i in q.diff else a for i, (a, b) in enumerate(zip(p.args, q.args))]
        prog = _value_and_vjp(p, len(p.diff))
        first, second = _inputs(p, op_fun(p), rng), _inputs(q, op_fun(q), rng)
        cf = ad.compile(prog)
        ulps = spec.name in RAW_FAST_PATH
        _same(cf(*first), prog(*first), f"recording {p!r}", ulps)
        _same(cf(*second), prog(*second), f"replay {q!r}", ulps)
        # replayed, not recorded again, unless the rule reads values (then a guard misses)
        again = (spec.name, dtype) in READS_VALUES
        assert cf.cache_info() == {"hits": 1 - again, "recordings": 1 + again, "signatures": 1}


@pytest.mark.parametrize("spec", _ids(LIVE))
def test_compiled_forward_equals_eager(spec, rng):
    for case in spec.cases:
        p = make_point(spec, case, rng)
        q = make_point(spec, case, rng)
        q.args = [b if i in q.diff else a for i, (a, b) in enumerate(zip(p.args, q.args))]
        f = op_fun(p)
        cf = ad.compile(lambda *xs, f=f: f(list(xs)))
        _same(cf(*p.xs), f(list(p.xs)), f"recording {p!r}")
        _same(cf(*q.xs), f(list(q.xs)), f"replay {q!r}")
