"""ad.compile on every OpSpec row: the compiled value, VJP, JVP and second order (reverse
over reverse, ``ad.hvp``), recorded and replayed on fresh inputs, equal eager ones bit for bit
(``np.array_equal``)."""

from __future__ import annotations

import numpy as np
import pytest
from test_primitives import (
    DIFF,
    LIVE,
    SMOOTH,
    _floating,
    _grads,
    _ids,
    _with_dtypes,
    make_point,
    op_fun,
    rand_like,
    rev,
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
#: The same for the JVP, where the rows' own gauge fixing (``_phase`` in tests/op_specs.py:
#: the index of each complex vector's largest entry, read from the values) is the read.
JVP_READS_VALUES = {("svd", np.complex128), ("eigh", np.complex128)}
#: And for reverse over reverse: the VJPs of the complex eigvalsh and svdvals are formed from
#: eigh's and svd's vectors, whose derivative (the second order) checks the phase.
SECOND_READS_VALUES = READS_VALUES | {("eigvalsh", np.complex128), ("svdvals", np.complex128)}


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


# ----- JVP and second order --------------------------------------------------------------------
def _points(spec, dtype, rng):
    """Per case: a point, and one with fresh values in its differentiated arguments only
    (the replay's inputs); none for complex on a row exempt from it."""
    if dtype is np.complex128 and "complex" in spec.exempt:
        return []
    out = []
    for case in spec.cases:
        p = make_point(spec, case, rng, dtype)
        q = make_point(spec, case, rng, dtype)
        q.args = [b if i in q.diff else a for i, (a, b) in enumerate(zip(p.args, q.args))]
        out.append((p, q))
    return out


def _compiled_equals_eager(prog, first, second, what, reads):
    """``ad.compile(prog)`` recorded on ``first`` and replayed on ``second`` equals eager; the
    second call replays, or (``reads``: a rule reads values) may record again."""
    cf = ad.compile(prog)
    _same(cf(*first), prog(*first), f"recording {what}")
    _same(cf(*second), prog(*second), f"replay {what}")
    info = cf.cache_info()
    assert info["hits"] + info["recordings"] == 2 and info["signatures"] == 1, what
    assert info["hits"] == 1 or reads, f"{what}: recorded again ({info})"


def _jvp(p, n):
    f = op_fun(p)
    return lambda *arrs: ad.jvp(lambda *xs: tuple(_floating(f(xs))), arrs[:n], arrs[n:])


@pytest.mark.parametrize(("spec", "dtype"), _with_dtypes(DIFF))
def test_compiled_jvp_equals_eager(spec, dtype, rng):
    """``ad.jvp`` of the op (forward mode on dual Tensors, its JVP rules recorded)."""
    for p, q in _points(spec, dtype, rng):
        first, second = (
            list(r.xs) + [rand_like(rng, x.shape, x.dtype) for x in r.xs] for r in (p, q)
        )
        reads = (spec.name, dtype) in JVP_READS_VALUES
        _compiled_equals_eager(_jvp(p, len(p.diff)), first, second, f"JVP {p!r}", reads)


def _grad_of_grad(p, n, nu):
    """x, u, w -> the VJP with cotangents w of x, u -> J(x)^T u (reverse over reverse, as
    ``test_second_order`` checks it): the gradients with respect to x and u."""
    g = rev(op_fun(p), n)

    def program(*arrs):
        ts = [ad.Tensor(a, requires_grad=True) for a in arrs[: n + nu]]
        return _grads(_floating(g(ts)), ts, list(arrs[n + nu :]))

    return program


def _gg_inputs(p, rng):
    us = [rand_like(rng, o.shape, o.dtype) for o in _floating(op_fun(p)(list(p.xs)))]
    ws = [rand_like(rng, x.shape, x.dtype) for x in p.xs]
    return list(p.xs) + us + ws, len(us)


SECOND = _with_dtypes([r for r in SMOOTH if r.order >= 2])


@pytest.mark.parametrize(("spec", "dtype"), SECOND)
def test_compiled_grad_of_grad_equals_eager(spec, dtype, rng):
    for p, q in _points(spec, dtype, rng):
        (first, nu), (second, _) = _gg_inputs(p, rng), _gg_inputs(q, rng)
        reads = (spec.name, dtype) in SECOND_READS_VALUES
        prog = _grad_of_grad(p, len(p.diff), nu)
        _compiled_equals_eager(prog, first, second, f"grad of grad {p!r}", reads)


def _hvp(p, n, weights):
    """x, v -> ``ad.hvp`` of s(x) = sum_k sum(f_k(x) * w_k) along v (as
    ``test_hvp_pair_rules_match_dual_evaluation`` builds it)."""
    f = op_fun(p)

    def s(*ts):
        outs = _floating(f(list(ts)))
        return sum((ad.sum(o * w) for o, w in zip(outs, weights, strict=True)), 0.0)

    return lambda *arrs: ad.hvp(s, tuple(arrs[:n]), tuple(arrs[n:]))


@pytest.mark.parametrize("spec", _ids([r for r in SMOOTH if r.order >= 2]))
def test_compiled_hvp_equals_eager(spec, rng):
    """``ad.hvp`` compiled is eager ``ad.hvp`` bit for bit (real rows: complex ``hvp`` is not
    defined, as in the generic check)."""
    for p, q in _points(spec, np.float64, rng):
        outs = _floating(op_fun(p)(list(p.xs)))
        weights = [rand_like(rng, o.shape, o.dtype) for o in outs]
        if any(w.dtype.kind == "c" for w in weights):
            continue
        first, second = (
            list(r.xs) + [rand_like(rng, x.shape, x.dtype) for x in r.xs] for r in (p, q)
        )
        prog = _hvp(p, len(p.diff), weights)
        _compiled_equals_eager(prog, first, second, f"hvp {p!r}", False)
