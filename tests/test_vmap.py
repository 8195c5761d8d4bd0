"""ad.vmap: every primitive batched (values and VJPs against a loop of the eager engine),
transforms inside and around vmap, nesting, in_axes/out_axes pytrees, and every refusal."""

from __future__ import annotations

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


# ----- per-example gradients ---------------------------------------------------------------------
def _mlp_params(rng):
    return {
        "W1": Tensor(rng.standard_normal((5, 3))),
        "b1": Tensor(rng.standard_normal(5)),
        "W2": Tensor(rng.standard_normal((2, 5))),
        "b2": Tensor(rng.standard_normal(2)),
    }


def _mlp_loss(params, x, y):
    h = ad.tanh(params["W1"] @ x + params["b1"])
    out = params["W2"] @ h + params["b2"]
    return ad.sum((out - y) ** 2)


def _logistic_loss(w, x, y):
    return ad.log1p(ad.exp(-y * (w @ x)))


def _close(a, b, tol=1e-12):
    la, da = ad.func.tree_flatten(a)
    lb, db = ad.func.tree_flatten(b)
    assert da == db
    for x, y in zip(la, lb, strict=True):
        np.testing.assert_allclose(np.asarray(x.data), np.asarray(y), rtol=tol, atol=tol)


def _stack_tree(trees):
    leaves = [ad.func.tree_flatten(t)[0] for t in trees]
    d = ad.func.tree_flatten(trees[0])[1]
    return ad.func.tree_unflatten(
        d, [np.stack([np.asarray(x[k].data) for x in leaves]) for k in range(len(leaves[0]))]
    )


def test_per_example_gradients_mlp(rng):
    params = _mlp_params(rng)
    X, Y = Tensor(rng.standard_normal((B + 1, 3))), Tensor(rng.standard_normal((B + 1, 2)))
    got = ad.vmap(ad.grad(_mlp_loss), in_axes=(None, 0, 0))(params, X, Y)
    want = _stack_tree([ad.grad(_mlp_loss)(params, X[b], Y[b]) for b in range(B + 1)])
    _close(got, want)
    assert got["W1"].shape == (B + 1, 5, 3) and type(got["W1"]) is Tensor


def test_per_example_gradients_logistic(rng):
    w = Tensor(rng.standard_normal(3))
    X, y = Tensor(rng.standard_normal((5, 3))), Tensor(np.sign(rng.standard_normal(5)))
    got = ad.vmap(ad.grad(_logistic_loss), in_axes=(None, 0, 0))(w, X, y)
    want = np.stack([ad.grad(_logistic_loss)(w, X[b], y[b]).data for b in range(5)])
    np.testing.assert_allclose(got.data, want, rtol=1e-12, atol=1e-12)


def _count_ops(monkeypatch, fn):
    from autodiffx import _registry

    count = [0]
    inner = _registry._apply_general

    def counting(p, args, params):
        count[0] += 1
        return inner(p, args, params)

    monkeypatch.setattr(_registry, "_apply_general", counting)
    fn()
    monkeypatch.setattr(_registry, "_apply_general", inner)
    return count[0]


def test_per_example_gradients_are_one_batched_pass(monkeypatch, rng):
    """The number of primitive applications does not grow with the batch size."""
    params = _mlp_params(rng)
    per = ad.vmap(ad.grad(_mlp_loss), in_axes=(None, 0, 0))
    counts = []
    for n in (2, 16):
        X, Y = Tensor(rng.standard_normal((n, 3))), Tensor(rng.standard_normal((n, 2)))
        counts.append(_count_ops(monkeypatch, lambda X=X, Y=Y: per(params, X, Y)))
    assert counts[0] == counts[1] > 0, counts


# ----- transforms inside vmap --------------------------------------------------------------------
def _f(x):
    return ad.sin(x) * ad.sum(x**2)


def _g(x):
    return ad.sum(ad.exp(x) * x[::-1]) + ad.sum(x) ** 3


@pytest.fixture
def XV(rng):
    return Tensor(rng.standard_normal((B, 3))), Tensor(rng.standard_normal((B, 3)))


def _loop(fn, *arrays):
    outs = [fn(*[a[b] for a in arrays]) for b in range(B)]
    return _stack_tree(outs)


def test_vmap_jvp_vjp(XV):
    X, V = XV
    got = ad.vmap(lambda x, v: ad.jvp(_f, (x,), (v,)))(X, V)
    _close(got, _loop(lambda x, v: ad.jvp(_f, (x,), (v,)), X, V))
    v0 = V[0]  # an unbatched tangent
    got = ad.vmap(lambda x: ad.jvp(_f, (x,), (v0,)))(X)
    _close(got, _loop(lambda x: ad.jvp(_f, (x,), (v0,)), X))

    def pull(x, u):
        y, back = ad.vjp(_f, x)
        return y, back(u)

    _close(ad.vmap(pull)(X, V), _loop(pull, X, V))


@pytest.mark.parametrize("name", ["jacfwd", "jacrev", "jacobian", "hessian"])
def test_vmap_jacobians(name, XV):
    X, _ = XV
    tr = getattr(ad, name)
    fn = _g if name == "hessian" else _f
    _close(ad.vmap(tr(fn))(X), _loop(tr(fn), X))


def test_vmap_jacobian_two_arguments(XV):
    X, _ = XV
    w = Tensor(np.array([0.5, -1.0, 2.0]))

    def h(w, x):
        return ad.tanh(w * x) * ad.sum(w)

    for tr in (ad.jacfwd, ad.jacrev):
        got = ad.vmap(tr(h, argnums=(0, 1)), in_axes=(None, 0))(w, X)
        _close(got, _loop(lambda x, tr=tr: tr(h, argnums=(0, 1))(w, x), X))


def test_vmap_hvp_and_value_and_grad(XV):
    X, V = XV
    got = ad.vmap(lambda x, v: ad.hvp(_g, (x,), (v,)))(X, V)
    _close(got, _loop(lambda x, v: ad.hvp(_g, (x,), (v,)), X, V))

    def aux(x):
        return ad.sum(x**3), {"double": 2 * x, "const": ad.tensor(1.0)}

    vg = ad.value_and_grad(aux, has_aux=True)
    got = ad.vmap(vg)(X)
    want = _loop(vg, X)
    _close(got, want)


def test_vmap_grad_argnums(XV):
    X, V = XV

    def h(a, b):
        return ad.sum(a * ad.sin(b))

    got = ad.vmap(ad.grad(h, argnums=(0, 1)))(X, V)
    _close(got, _loop(ad.grad(h, argnums=(0, 1)), X, V))
    got = ad.vmap(ad.grad(h, argnums=(0, 1)), in_axes=(0, None))(X, V[1])
    _close(got, _loop(lambda a: ad.grad(h, argnums=(0, 1))(a, V[1]), X))


def test_grad_inside_vmap_closing_over_batched_values(XV):
    X, _ = XV
    w = Tensor(np.array([0.5, -1.0, 2.0]))
    got = ad.vmap(lambda x: ad.grad(lambda w: ad.sum(ad.sin(w * x)))(w))(X)
    want = _loop(lambda x: ad.grad(lambda w: ad.sum(ad.sin(w * x)))(w), X)
    _close(got, want)


# ----- transforms around vmap --------------------------------------------------------------------
def test_grad_of_a_vmapped_function(XV):
    X, _ = XV
    w = Tensor(np.array([0.5, -1.0, 2.0]))

    def total(w):
        return ad.sum(ad.vmap(lambda x: ad.sum(ad.tanh(w @ x) * x))(X))

    def looped(w):
        return sum(ad.sum(ad.tanh(w @ X[b]) * X[b]) for b in range(B))

    np.testing.assert_allclose(ad.grad(total)(w).data, ad.grad(looped)(w).data, rtol=1e-12)
    np.testing.assert_allclose(ad.hessian(total)(w).data, ad.hessian(looped)(w).data, rtol=1e-12)
    wr = Tensor(w.data, requires_grad=True)
    total(wr).backward()
    np.testing.assert_allclose(wr.grad.data, ad.grad(looped)(w).data, rtol=1e-12)


def test_forward_mode_through_vmap(XV):
    X, _ = XV
    w, t = Tensor(np.array([0.5, -1.0, 2.0])), Tensor(np.array([1.0, 0.0, -2.0]))

    def batched(w):
        return ad.vmap(lambda x: ad.exp(w * x) / ad.sum(x**2))(X)

    def looped(w):
        return ad.stack([ad.exp(w * X[b]) / ad.sum(X[b] ** 2) for b in range(B)])

    want = tuple(np.asarray(o.data) for o in ad.jvp(looped, (w,), (t,)))
    _close(ad.jvp(batched, (w,), (t,)), want)
    _close(ad.jacfwd(batched)(w), ad.jacfwd(looped)(w).data)


# ----- nesting, axes, pytrees --------------------------------------------------------------------
def test_nested_vmap_matrix_vector(rng):
    A, x = Tensor(rng.standard_normal((4, 3))), Tensor(rng.standard_normal(3))
    mv = ad.vmap(ad.vmap(lambda a, b: a * b), in_axes=(0, None))
    np.testing.assert_allclose(ad.sum(mv(A, x), axis=1).data, A.data @ x.data, rtol=1e-12)
    dot = ad.vmap(lambda a, b: a @ b, in_axes=(0, None))
    np.testing.assert_allclose(dot(A, x).data, A.data @ x.data, rtol=1e-12)
    X = Tensor(rng.standard_normal((5, 3)))
    mm = ad.vmap(ad.vmap(lambda a, b: a @ b, in_axes=(0, None)), in_axes=(None, 0))
    np.testing.assert_allclose(mm(A, X).data, X.data @ A.data.T, rtol=1e-12)
    inner = ad.vmap(lambda a: ad.vmap(lambda b: a @ b)(X))
    np.testing.assert_allclose(inner(A).data, A.data @ X.data.T, rtol=1e-12)


def test_nested_vmap_of_grad(rng):
    W = Tensor(rng.standard_normal((2, 3)))
    X = Tensor(rng.standard_normal((4, 3)))
    loss = lambda w, x: ad.sum(ad.sin(w * x)) ** 2
    got = ad.vmap(ad.vmap(ad.grad(loss), in_axes=(None, 0)), in_axes=(0, None))(W, X)
    want = np.stack(
        [np.stack([ad.grad(loss)(W[i], X[j]).data for j in range(4)]) for i in range(2)]
    )
    np.testing.assert_allclose(got.data, want, rtol=1e-12)


def test_axes_and_pytrees(rng):
    X = Tensor(rng.standard_normal((3, B)))  # batch on the last axis
    d = {"a": Tensor(rng.standard_normal((B, 2))), "b": Tensor(rng.standard_normal(2))}

    def f(x, tree):
        return {"sum": x + tree["a"][0] + tree["b"][1], "const": tree["b"] * 2}

    out = ad.vmap(f, in_axes=(-1, {"a": 0, "b": None}), out_axes={"sum": 1, "const": None})(X, d)
    for b in range(B):
        want = X.data[:, b] + d["a"].data[b, 0] + d["b"].data[1]
        np.testing.assert_allclose(out["sum"].data[:, b], want, rtol=1e-15)
    np.testing.assert_allclose(out["const"].data, 2 * d["b"].data)
    out = ad.vmap(lambda x, y: (x * y, y), in_axes=[1, None], out_axes=(-1, 0))(X, d["b"][0])
    assert out[0].shape == (3, B) and out[1].shape == (B,)
    assert ad.vmap(lambda: ad.tensor(1.0), axis_size=4)().shape == (4,)
    assert ad.vmap(lambda x: x.sum(), in_axes=None, axis_size=2)(X).shape == (2,)


def test_batched_value_reports_the_example(rng):
    seen = {}

    def f(x):
        seen.update(shape=x.shape, ndim=x.ndim, size=x.size, len=len(x), rows=len(list(x)))
        seen["repr"] = repr(x)
        return x

    ad.vmap(f)(Tensor(rng.standard_normal((B, 4, 2))))
    assert seen["shape"] == (4, 2) and seen["ndim"] == 2 and seen["size"] == 8
    assert seen["len"] == 4 and seen["rows"] == 4 and "per-example shape (4, 2)" in seen["repr"]


def test_numpy_functions_and_methods_on_batched_values(rng):
    X = Tensor(rng.standard_normal((B, 3, 3)))
    got = ad.vmap(lambda a: np.linalg.det(a) + np.max(a) + a.mean(axis=0).sum() + a.T[0, 1])(X)
    want = [np.linalg.det(x) + x.max() + x.mean(axis=0).sum() + x.T[0, 1] for x in X.data]
    np.testing.assert_allclose(got.data, want, rtol=1e-12)


# ----- refusals ----------------------------------------------------------------------------------
def _raises(exc, match, fn):
    with pytest.raises(exc, match=match):
        fn()


def test_errors(rng):
    X, Y = Tensor(rng.standard_normal((3, 2))), Tensor(rng.standard_normal((4, 2)))
    _raises(
        ValueError,
        r"disagree.*argument 0 has size 3.*argument 1 has size 4",
        lambda: ad.vmap(lambda a, b: a + b)(X, Y),
    )
    _raises(
        ValueError,
        r"in_axes 2 is out of range for argument 0 of shape \(3, 2\)",
        lambda: ad.vmap(lambda a: a, in_axes=2)(X),
    )
    _raises(ValueError, "axis_size", lambda: ad.vmap(lambda a: a, in_axes=None)(X))
    _raises(ValueError, "axis_size=5", lambda: ad.vmap(lambda a: a, axis_size=5)(X))
    _raises(
        ValueError,
        "in_axes has 2 entries.*1 positional",
        lambda: ad.vmap(lambda a: a, in_axes=(0, 0))(X),
    )
    _raises(
        ValueError,
        r"in_axes entry \{'a': 0\} for argument 0 does not match",
        lambda: ad.vmap(lambda a: a, in_axes=({"a": 0},))(X),
    )
    _raises(TypeError, "in_axes must be", lambda: ad.vmap(lambda a: a, in_axes="0")(X))
    _raises(
        ValueError,
        "out_axes is None for output, but it is batched",
        lambda: ad.vmap(lambda a: a, out_axes=None)(X),
    )
    _raises(
        ValueError,
        "out_axes 3 is out of range for output",
        lambda: ad.vmap(lambda a: a, out_axes=3)(X),
    )


@pytest.mark.parametrize(
    ("body", "exc", "match"),
    [
        (lambda x: x[0] if x[0] > 0 else x[1], TypeError, r"bool\(t\).*ad.where"),
        (lambda x: float(x[0]), TypeError, r"float\(t\).*loop"),
        (lambda x: x.numpy(), TypeError, r"numpy\(\).*per-example shape \(2,\)"),
        (lambda x: np.asarray(x), TypeError, "np.asarray"),
        (lambda x: x.item(), TypeError, "item"),
        (lambda x: x.data, TypeError, r"\.data"),
        (lambda x: x.sum().backward(), TypeError, "backward.*ad.grad"),
        (lambda x: ad.sum(x, axis=1), np.exceptions.AxisError, "sum|axis 1"),
        (lambda x: ad.amax(x, axis=1), np.exceptions.AxisError, "amax: axis 1 is out of bounds"),
        (lambda x: ad.grad(lambda v: v * 2)(x), TypeError, "scalar .*per example"),
        # a result whose shape depends on the values, or one array read as a whole
        (lambda x: np.nonzero(x), TypeError, r"np\.nonzero .*shape of its result depends"),
        (lambda x: np.unique(x), TypeError, r"np\.unique .*shape of its result depends"),
        (lambda x: np.array2string(x), TypeError, r"np\.array2string .*per-example shape"),
        (lambda x: ad.real_if_close(x + 0j), TypeError, "real_if_close .*depends on the values"),
        (lambda x: ad.put_along_axis(x, [0], 1.0, 0), TypeError, "put_along_axis writes .*place"),
        # integer counts read from a batched value: they set the shape of the result
        (lambda x: ad.tile(ad.ones(2), x[0].astype(int)), TypeError, "tile: reps is a batched"),
        (lambda x: ad.repeat(ad.ones(2), x.astype(int)), TypeError, "repeat: repeats is a bat"),
        (lambda x: ad.pad(ad.ones(2), x.astype(int)), TypeError, "pad: pad_width is a batched"),
        (lambda x: ad.split(ad.ones(4), x.astype(int)), TypeError, "split: indices_or_sections"),
        (
            lambda x: ad.array_split(ad.ones(4), x[0].astype(int)),
            TypeError,
            "array_split: indices_or_sections is a batched value .*sets the shape",
        ),
        (lambda x: ad.linspace(0.0, 1.0, x[0].astype(int)), TypeError, r"int\(t\)"),
    ],
)
def test_refusals_inside_vmap(body, exc, match, rng):
    with pytest.raises(exc, match=match):
        ad.vmap(body)(Tensor(rng.standard_normal((3, 2))))


def test_in_place_writes_are_refused(rng):
    def add(x):
        x += 1
        return x

    def put(x):
        x[0] = 1.0
        return x

    for fn in (add, put):
        with pytest.raises(TypeError, match="out of place"):
            ad.vmap(fn)(Tensor(rng.standard_normal((3, 2))))
    y = Tensor(np.zeros(2))

    def into_plain(x):
        y[...] = x
        return x

    with pytest.raises(TypeError, match=r"batched value inside ad\.vmap"):
        ad.vmap(into_plain)(Tensor(rng.standard_normal((3, 2))))


def test_escaped_batched_value_is_refused(rng):
    kept = []
    ad.vmap(lambda x: kept.append(x) or x)(Tensor(rng.standard_normal((3, 2))))
    with pytest.raises(RuntimeError, match="escaped"):
        kept[0] + 1
    assert isinstance(kept[0], Batched)


def test_looped_primitive_is_differentiable(rng):
    """A primitive on the fallback loop (lstsq) still gives per-example gradients."""
    A, b = Tensor(rng.standard_normal((B, 4, 2))), Tensor(rng.standard_normal((B, 4)))
    f = lambda a, y: ad.sum(np.linalg.lstsq(a, y, rcond=None)[0] ** 2)
    got = ad.vmap(ad.grad(f))(A, b)
    want = np.stack([ad.grad(f)(A[i], b[i]).data for i in range(B)])
    np.testing.assert_allclose(got.data, want, rtol=1e-10)


def test_batched_indices(rng):
    X = Tensor(rng.standard_normal((B, 4)), requires_grad=True)
    idx = np.array([3, 0, 2])
    got = ad.vmap(lambda x, i: x[i])(X, idx)
    np.testing.assert_array_equal(got.data, X.data[np.arange(B), idx])
    pairs = np.array([[0, 1], [2, 2], [3, 0]])
    got = ad.vmap(lambda x, i: x[i] * 2)(X, pairs)
    np.testing.assert_array_equal(got.data, 2 * X.data[np.arange(B)[:, None], pairs])
    got = ad.vmap(lambda x, i: x[1:][i - 1, None])(X, idx + (idx == 0))
    want = np.stack([X.data[b, 1:][(idx + (idx == 0))[b] - 1, None] for b in range(B)])
    np.testing.assert_array_equal(got.data, want)
    ad.sum(ad.vmap(lambda x, i: x[i] ** 2)(X, idx)).backward()
    want = np.zeros((B, 4))
    want[np.arange(B), idx] = 2 * X.data[np.arange(B), idx]
    np.testing.assert_array_equal(X.grad.data, want)


def test_batched_index_into_unbatched_tensor(rng):
    # An embedding lookup: the table is the same for every example, the index is batched.
    W = Tensor(rng.standard_normal((5, 3)), requires_grad=True)
    idx = np.array([4, 0, 4])
    got = ad.vmap(lambda i: W[i] * 2.0)(idx)
    np.testing.assert_array_equal(got.data, 2.0 * W.data[idx])
    pairs = np.array([[0, 1], [2, 2], [3, 0]])
    got = ad.vmap(lambda i: W[i, 1:])(pairs)  # a tuple index: example by example
    np.testing.assert_array_equal(got.data, np.stack([W.data[p, 1:] for p in pairs]))
    ad.sum(ad.vmap(lambda i: W[i] ** 2)(idx)).backward()
    want = np.zeros((5, 3))
    np.add.at(want, idx, 2 * W.data[idx])
    np.testing.assert_allclose(W.grad.data, want, rtol=1e-15)
    g = ad.vmap(ad.grad(lambda w, i: ad.sum(w[i] ** 3)), in_axes=(None, 0))(W.detach(), idx)
    want = np.zeros((B, 5, 3))
    for b, i in enumerate(idx):
        want[b, i] = 3 * W.data[i] ** 2
    np.testing.assert_allclose(g.data, want, rtol=1e-14)


# ----- NumPy-function wrappers on batched values -------------------------------------------------
_G = np.random.default_rng(20240611)


def _fl(*shape):
    return _G.standard_normal((B, *shape))


def _i(high, *shape):
    return _G.integers(0, high, (B, *shape))


def _spd():
    a = _fl(3, 3)
    return a @ np.swapaxes(a, -1, -2) + 3 * np.eye(3)


_L = ad.linalg
#: (name, f, per-argument arrays with the B examples stacked on axis 0): f under vmap, with
#: each argument batched alone and all together, against a loop over the examples.
WRAPPERS = [
    ("stack", lambda a, b: ad.stack([a, b]), _fl(4), _fl(4)),
    ("stack_reversed", lambda a: ad.stack([a, a[::-1]], axis=1), _fl(4)),
    ("np.stack", lambda a, b: np.stack([a, b], axis=-1), _fl(4), _fl(4)),
    ("concatenate", lambda a, b: ad.concatenate([a, b]), _fl(4), _fl(2)),
    ("concatenate_none", lambda a, b: ad.concatenate([a, b], axis=None), _fl(2, 2), _fl(2)),
    ("hstack", lambda a, b: ad.hstack([a, b]), _fl(4), _fl(2)),
    ("vstack", lambda a, b: ad.vstack([a, b]), _fl(4), _fl(4)),
    ("dstack", lambda a, b: ad.dstack([a, b]), _fl(4), _fl(4)),
    ("column_stack", lambda a, b: ad.column_stack([a, b]), _fl(4), _fl(4)),
    ("append", lambda a, b: ad.append(a, b), _fl(2, 2), _fl(3)),
    ("take", lambda a, i: ad.take(a, i), _fl(5), _i(5, 3)),
    ("take_axis", lambda a, i: ad.take(a, i, axis=1), _fl(2, 5), _i(5, 3)),
    ("take_negative_axis", lambda a, i: ad.take(a, i, axis=-1), _fl(2, 5), _i(5, 2, 2)),
    ("take_scalar_index", lambda a, i: ad.take(a, i, axis=0), _fl(5, 2), _i(5)),
    ("np.take", lambda a, i: np.take(a, i), _fl(5), _i(5, 3)),
    ("take_along_axis", lambda a, i: ad.take_along_axis(a, i, axis=1), _fl(2, 5), _i(5, 2, 3)),
    ("take_along_axis0", lambda a, i: ad.take_along_axis(a, i, axis=0), _fl(4, 2), _i(4, 3, 2)),
    ("take_along_none", lambda a, i: ad.take_along_axis(a, i, axis=None), _fl(2, 3), _i(6, 4)),
    ("take_along_bcast", lambda a, i: ad.take_along_axis(a, i, axis=1), _fl(3, 4), _i(4, 1, 2)),
    ("where", lambda c, a, b: ad.where(c > 0, a, b), _fl(4), _fl(4), _fl(4)),
    ("meshgrid", lambda a, b: ad.meshgrid(a, b), _fl(3), _fl(2)),
    ("meshgrid_ij", lambda a, b: ad.meshgrid(a, b, indexing="ij", sparse=True), _fl(3), _fl(2)),
    ("diag", lambda a: ad.diag(a, 1), _fl(3)),
    ("diag_of_matrix", lambda a: ad.diag(a), _fl(3, 3)),
    ("diagflat", lambda a: ad.diagflat(a), _fl(2, 2)),
    ("diagonal", lambda a: ad.diagonal(a, 1), _fl(3, 3)),
    ("einsum", lambda a, b: ad.einsum("ij,jk->ik", a, b), _fl(2, 3), _fl(3, 2)),
    ("einsum_ellipsis", lambda a, b: ad.einsum("...i,i", a, b), _fl(2, 3), _fl(3)),
    ("einsum_sublists", lambda a, b: ad.einsum(a, [0, 1], b, [1], [0]), _fl(2, 3), _fl(3)),
    ("tensordot", lambda a, b: ad.tensordot(a, b, 1), _fl(2, 3), _fl(3, 2)),
    ("kron", lambda a, b: ad.kron(a, b), _fl(2, 2), _fl(3)),
    ("outer", lambda a, b: ad.outer(a, b), _fl(2), _fl(3)),
    ("inner", lambda a, b: ad.inner(a, b), _fl(2, 3), _fl(3)),
    ("dot", lambda a, b: ad.dot(a, b), _fl(2, 3), _fl(3)),
    ("trace", lambda a: ad.trace(a), _fl(3, 3)),
    ("roll", lambda a: ad.roll(a, 1), _fl(2, 3)),
    ("roll_axes", lambda a: ad.roll(a, (1, 2), axis=(0, 1)), _fl(2, 3)),
    ("flip", lambda a: ad.flip(a), _fl(2, 3)),
    ("flipud", lambda a: ad.flipud(a), _fl(2, 3)),
    ("fliplr", lambda a: ad.fliplr(a), _fl(2, 3)),
    ("rot90", lambda a: ad.rot90(a), _fl(2, 3)),
    ("pad", lambda a: ad.pad(a, 1), _fl(2, 3)),
    ("pad_reflect", lambda a: ad.pad(a, ((1, 2), (0, 1)), mode="reflect"), _fl(3, 3)),
    ("pad_mean", lambda a: ad.pad(a, 2, mode="mean"), _fl(3)),
    ("tile", lambda a: ad.tile(a, (2, 1)), _fl(2, 3)),
    ("tile_int", lambda a: ad.tile(a, 2), _fl(3)),
    ("repeat", lambda a: ad.repeat(a, 2), _fl(2, 3)),
    ("repeat_axis", lambda a: ad.repeat(a, [1, 2], axis=0), _fl(2, 3)),
    ("split", lambda a: ad.split(a, 2), _fl(4)),
    ("array_split", lambda a: ad.array_split(a, 3, axis=1), _fl(2, 5)),
    ("hsplit", lambda a: ad.hsplit(a, 2), _fl(2, 4)),
    ("vsplit", lambda a: ad.vsplit(a, 2), _fl(4, 2)),
    ("dsplit", lambda a: ad.dsplit(a, 2), _fl(1, 2, 4)),
    ("atleast_3d", lambda a: ad.atleast_3d(a), _fl(3)),
    ("squeeze", lambda a: ad.squeeze(a), _fl(1, 3)),
    ("expand_dims", lambda a: ad.expand_dims(a, -1), _fl(3)),
    ("moveaxis", lambda a: ad.moveaxis(a, 0, -1), _fl(2, 3)),
    ("diff", lambda a, b: ad.diff(a, 2, prepend=b, append=b), _fl(2, 5), _fl(2, 1)),
    ("cross", lambda a, b: ad.cross(a, b), _fl(3), _fl(3)),
    ("cross_2d_3d", lambda a, b: ad.cross(a, b), _fl(2), _fl(3)),
    ("polyval", lambda p, x: ad.polyval(p, x), _fl(3), _fl(4)),
    ("trapezoid", lambda y, x: ad.trapezoid(y, x), _fl(4), _fl(4)),
    ("sort", lambda a: ad.sort(a), _fl(2, 4)),
    ("sort_flat", lambda a: ad.sort(a, axis=None), _fl(2, 4)),
    ("argsort", lambda a: ad.argsort(a), _fl(4)),
    ("median", lambda a: ad.median(a), _fl(4)),
    ("median_axis", lambda a: ad.median(a, axis=0), _fl(3, 2)),
    ("median_nan", lambda a: ad.median(ad.where(a > 1.0, np.nan, a)), _fl(4)),
    ("quantile", lambda a: ad.quantile(a, [0.25, 0.5], axis=1, keepdims=True), _fl(2, 5)),
    ("percentile", lambda a: ad.percentile(a, 30), _fl(5)),
    ("percentile_q", lambda a, q: ad.percentile(a, q), _fl(5), 100 * _G.random((B, 2))),
    ("quantile_q", lambda a, q: ad.quantile(a, q, axis=0), _fl(4, 2), _G.random(B)),
    ("average", lambda a, w: ad.average(a, weights=w), _fl(4), _fl(4)),
    ("average_axis", lambda a, w: ad.average(a, axis=1, weights=w), _fl(2, 4), _fl(4)),
    ("average_returned", lambda a: ad.average(a, axis=0, returned=True), _fl(2, 4)),
    ("nansum", lambda a: ad.nansum(ad.where(a > 1.0, np.nan, a)), _fl(4)),
    ("nanmean", lambda a: ad.nanmean(ad.where(a > 1.0, np.nan, a), axis=0), _fl(2, 4)),
    ("nanmax", lambda a: ad.nanmax(ad.where(a > 0.5, np.nan, a), axis=0), _fl(2, 3)),
    ("nanmedian", lambda a: ad.nanmedian(ad.where(a > 0.3, np.nan, a)), _fl(6)),
    ("ptp", lambda a: ad.ptp(a), _fl(4)),
    ("interp", lambda x, xp, fp: ad.interp(x, xp, fp), _fl(4), np.sort(_fl(5), axis=1), _fl(5)),
    (
        "interp_left_right",
        lambda x, fp: ad.interp(3 * x, [0.0, 1.0, 2.0], fp, -1.0, fp[0]),
        _fl(5),
        _fl(3),
    ),
    ("interp_one_knot", lambda x, fp: ad.interp(x, [0.0], fp), _fl(5), _fl(1)),
    ("clip", lambda a, lo, hi: ad.clip(a, lo, hi), _fl(4), _fl(4) - 1, _fl(4) + 1),
    ("norm", lambda a: ad.norm(a), _fl(4)),
    ("norm_at_zero", lambda a: ad.norm(a * 0.0), _fl(3)),
    ("norm_fro", lambda a: ad.norm(a, "fro"), _fl(2, 2)),
    ("norm_axis", lambda a: ad.norm(a, axis=1), _fl(2, 3)),
    ("std", lambda a: ad.std(a), _fl(4)),
    ("std_at_zero", lambda a: ad.std(a * 0.0 + a[0]), _fl(3)),
    ("var", lambda a: ad.var(a, axis=0, ddof=1), _fl(3, 2)),
    ("masked_std", lambda a: np.std(a, where=np.arange(4) > 0), _fl(4)),
    ("zeros_like", lambda a: a + ad.zeros_like(a) + np.ones_like(a), _fl(3)),
    ("full_like", lambda a: a * ad.full_like(a, 2.0), _fl(3)),
    ("np.shape", lambda a: a * np.shape(a)[0] * np.ndim(a) * np.size(a), _fl(4)),
    ("np.result_type", lambda a: a.astype(np.result_type(a, 1.0)), _fl(4)),
    (
        "np.searchsorted",
        lambda k, x: ad.take(k, np.minimum(np.searchsorted(k, x), 4)),
        np.sort(_fl(5), 1),
        _fl(3),
    ),
    ("np.any", lambda a: ad.where(np.any(a > 1), a, -a), _fl(4)),
    ("np.all_axis", lambda a: ad.where(np.all(a > -1, axis=0), a[0], 0.0), _fl(2, 3)),
    ("np.count_nonzero", lambda a: a * np.count_nonzero(a > 0), _fl(4)),
    ("np.isclose", lambda a, b: ad.where(np.isclose(a, b, atol=0.5), a, b), _fl(4), _fl(4)),
    ("np.allclose", lambda a, b: ad.where(np.allclose(a, b, atol=2), a, b), _fl(4), _fl(4)),
    ("linalg.multi_dot", lambda a, b, c: _L.multi_dot([a, b, c]), _fl(2, 3), _fl(3, 3), _fl(3)),
    ("linalg.matrix_power", lambda a: _L.matrix_power(a, -2), _spd()),
    ("linalg.vecdot", lambda a, b: _L.vecdot(a, b), _fl(2, 3), _fl(3)),
    ("linalg.cond", lambda a: _L.cond(a), _spd()),
    ("linalg.tensorsolve", lambda a, b: _L.tensorsolve(a, b), _spd(), _fl(3)),
    ("linalg.norm2", lambda a: _L.norm(a, 2), _fl(3, 3)),
    ("fft.rfft2", lambda a: ad.fft.rfft2(a).imag, _fl(4, 4)),
    ("fft.ifftshift", lambda a: ad.fft.ifftshift(a, axes=0), _fl(5, 2)),
]


def _leaves(out):
    if isinstance(out, tuple | list):
        return [leaf for o in out for leaf in _leaves(o)]
    return [out]


def _batchings(n):
    each = [(k,) for k in range(n)]
    return [*each, tuple(range(n))] if n > 1 else each


def _weighted(fn, us):
    """The sum of ``fn``'s float outputs, each weighted by a cotangent in ``us``."""

    def loss(*xs):
        outs = [o for o in _leaves(fn(*xs[: len(xs) - len(us)])) if o.dtype.kind == "f"]
        return sum(ad.sum(o * u) for o, u in zip(outs, xs[len(xs) - len(us) :]))

    return loss


#: The float arguments that are data, not differentiated (interp's knots).
NOT_DIFFERENTIATED = {"interp": (1,), "percentile_q": (1,), "quantile_q": (1,)}


@pytest.mark.parametrize(
    ("name", "fn", "arrays"), [pytest.param(n, f, a, id=n) for n, f, *a in WRAPPERS]
)
def test_numpy_wrappers_on_batched_values(name, fn, arrays, rng):
    """Each wrapper under vmap, every argument batched alone and all together: values, the
    VJP of the vmapped function (ad.grad of its weighted sum) and per-example gradients
    (ad.vmap(ad.grad)) against a Python loop over the examples."""
    for bat in _batchings(len(arrays)):
        axes = tuple(0 if k in bat else None for k in range(len(arrays)))
        what = f"in_axes={axes}"
        ins = [Tensor(a if k in bat else a[0]) for k, a in enumerate(arrays)]
        examples = [
            [Tensor(a[b] if k in bat else a[0]) for k, a in enumerate(arrays)] for b in range(B)
        ]
        got = _leaves(ad.vmap(fn, in_axes=axes)(*ins))
        want = [_leaves(fn(*e)) for e in examples]
        for k, g in enumerate(got):
            w = np.stack([np.asarray(ws[k].data) for ws in want])
            np.testing.assert_allclose(g.data, w, **TOL, err_msg=what)
            assert g.dtype == w.dtype, what
        data = NOT_DIFFERENTIATED.get(name, ())
        diff = tuple(k for k, a in enumerate(arrays) if a.dtype.kind == "f" and k not in data)
        us = [Tensor(rng.standard_normal(g.shape)) for g in got if g.dtype.kind == "f"]
        if not diff or not us:
            continue
        loss = _weighted(fn, [u[0] for u in us])
        per = [ad.grad(loss, argnums=diff)(*e, *[u[b] for u in us]) for b, e in enumerate(examples)]
        total = ad.grad(_weighted(ad.vmap(fn, in_axes=axes), us), argnums=diff)(*ins, *us)
        vm = ad.vmap(ad.grad(loss, argnums=diff), in_axes=axes + (0,) * len(us))(*ins, *us)
        for j, k in enumerate(diff):
            stacked = np.stack([p[j].data for p in per])
            w = stacked if k in bat else stacked.sum(axis=0)
            np.testing.assert_allclose(total[j].data, w, **TOL, err_msg=f"VJP {what} arg {k}")
            np.testing.assert_allclose(
                vm[j].data, stacked, **TOL, err_msg=f"vmap(grad) {what} arg {k}"
            )
