"""ad.vmap: every primitive batched (values and VJPs against a loop of the eager engine),
transforms inside and around vmap, nesting, in_axes/out_axes pytrees, and every refusal."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from test_primitives import LIVE, apply_op, make_point, rand_like

import autodiffx as ad
from autodiffx._vmap import Batched, loop_primitives

Tensor = ad.Tensor
B = 3
TOL = {"rtol": 1e-10, "atol": 1e-12}


# ----- every primitive ---------------------------------------------------------------------------
#: The primitives vmap runs as a loop over the examples, each with why (a test keeps the list
#: exact: a new entry must be batched, or be added here with its reason).
LOOPED = {
    "lstsq": "numpy.linalg.lstsq does not broadcast over a stack of matrices",
    "solve_triangular": "scipy's solve_triangular batches only b's trailing columns",
    "lu_factor": "scipy's lu_factor returns one pivot vector per call",
    "expm": "scipy.linalg.expm: a batched call is not checked against its derivative rules",
    "sqrtm": "scipy.linalg.sqrtm takes one matrix",
    "logm": "scipy.linalg.logm takes one matrix",
    "convolve_full": "1-D convolution of two vectors (np.convolve takes no stack)",
    "softmax_cross_entropy": "its target and reduction= mix the example's rows with labels",
    "pool_select": "nn pooling internals (the window selection of one input layout)",
    "pool_scatter": "nn pooling internals (the transpose of pool_select)",
}


def test_looped_primitives_are_listed():
    assert loop_primitives() == sorted(LOOPED)


def _arrays(spec, case, rng):
    """A point with B examples stacked on axis 0 of every array argument, and the examples."""
    p = make_point(spec, case, rng)
    pos = [i for i, a in enumerate(p.args) if isinstance(a, np.ndarray)]
    points = [p] + [make_point(spec, case, rng) for _ in range(B - 1)]
    stacked = {i: np.stack([q.args[i] for q in points]) for i in pos}
    return p, pos, stacked


def _call(spec, p, pos, arrays):
    args = list(p.args)
    for i, a in zip(pos, arrays):
        args[i] = a
    return apply_op(spec, args, p.params)


def _check_row(spec, case, rng, mode):
    p, pos, stacked = _arrays(spec, case, rng)
    if not pos:
        return False
    if mode == "one":
        if len(pos) < 2:
            return False
        batched = [pos[0]]
    else:
        batched = pos
    axis = -1 if mode == "last" else 0
    ins = []
    for i in pos:
        if i in batched:
            x = np.moveaxis(stacked[i], 0, axis) if mode == "last" else stacked[i]
        else:
            x = stacked[i][0]
        ins.append(x)
    in_axes = tuple(axis if i in batched else None for i in pos)
    diff = [k for k, i in enumerate(pos) if i in p.diff]
    ts = [Tensor(x, requires_grad=k in diff) for k, x in enumerate(ins)]

    def f(*xs):
        return _call(spec, p, pos, xs)

    outs = ad.vmap(f, in_axes=in_axes)(*ts)
    examples = [[stacked[i][b] if i in batched else stacked[i][0] for i in pos] for b in range(B)]
    ex_ts = [[Tensor(x, requires_grad=k in diff) for k, x in enumerate(e)] for e in examples]
    ex_outs = [_call(spec, p, pos, e) for e in ex_ts]
    what = f"vmap {spec.name} {case} in_axes={in_axes}"
    floats = []
    for k, o in enumerate(outs):
        want = np.stack([np.asarray(eo[k].data) for eo in ex_outs])
        np.testing.assert_allclose(o.data, want, **TOL, err_msg=what)
        assert o.dtype == want.dtype, what
        if o.dtype.kind in "fc" and o.requires_grad:
            floats.append(k)
    if not floats or not diff:
        return True
    us = {k: rand_like(rng, outs[k].shape, outs[k].dtype) for k in floats}
    gs = ad.autograd.grad(
        [outs[k] for k in floats],
        [ts[k] for k in diff],
        grad_outputs=[us[k] for k in floats],
        allow_unused=True,
    )
    per = []
    for b in range(B):
        live = [m for m in floats if ex_outs[b][m].requires_grad]
        g = (
            ad.autograd.grad(
                [ex_outs[b][m] for m in live],
                [ex_ts[b][k] for k in diff],
                grad_outputs=[us[m][b] for m in live],
                allow_unused=True,
            )
            if live
            else [None] * len(diff)
        )
        per.append(g)
    for j, k in enumerate(diff):
        want = [
            np.zeros(examples[b][k].shape) if per[b][j] is None else per[b][j].data
            for b in range(B)
        ]
        if pos[k] in batched:
            w = np.stack(want)
            w = np.moveaxis(w, 0, axis) if mode == "last" else w
        else:
            w = np.sum(want, axis=0)
        got = np.zeros(ts[k].shape) if gs[j] is None else gs[j].data
        np.testing.assert_allclose(got, w, **TOL, err_msg=f"VJP of {what}, argument {k}")
    return True


def _rows():
    return [pytest.param(r, id=r.name) for r in LIVE]


@pytest.mark.parametrize("mode", ["all", "one", "last"])
@pytest.mark.parametrize("spec", _rows())
def test_every_primitive(spec, mode, rng):
    """vmap(op)(stacked) is the stack of the op's per-example results, and so are its VJPs
    (an unbatched argument's: the sum over the examples)."""
    ran = False
    for case in spec.cases:
        ran = _check_row(spec, case, rng, mode) or ran
    if mode == "all":
        assert ran, f"{spec.name}: no case has an array argument"
