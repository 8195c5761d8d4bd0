"""NumPy functions built from primitives (autodiffx/ops/numpy_funcs.py), each checked the way
the OpSpec rows check primitives: the value (through ``np.*`` and ``ad.*``) equals NumPy's,
VJP and JVP match central differences, and second derivatives match too."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import autodiffx as ad

R = np.random.default_rng(7)
V5 = R.uniform(0.5, 2.0, 5)
V4 = R.uniform(0.5, 2.0, 4)
M23 = R.uniform(0.5, 2.0, (2, 3))
M34 = R.uniform(0.5, 2.0, (3, 4))
T234 = R.uniform(0.5, 2.0, (2, 3, 4))
DISTINCT = np.array([[0.3, 1.7, 1.1, 0.6], [2.0, 0.1, 0.9, 1.4], [0.8, 1.9, 0.2, 1.5]])
NAN = np.array([[0.3, np.nan, 1.1], [np.nan, 0.7, 0.4]])
FINITE = np.where(np.isnan(NAN), 0.5, NAN)  # the nan positions are set inside the function
IDX = np.array([[2, 0, 0, 1], [1, 1, 0, 2], [0, 2, 1, 1]])


# (numpy name, positional arrays, params); the arrays are the differentiated inputs.
CASES = [
    ("hstack", (V5, V4), {}, lambda f, *a: f(list(a))),
    ("hstack", (M23, M23[:, :1]), {}, lambda f, *a: f(list(a))),
    ("vstack", (V4, V4), {}, lambda f, *a: f(list(a))),
    ("vstack", (M34, V4), {}, lambda f, *a: f(list(a))),
    ("column_stack", (V4, M34.T), {}, lambda f, *a: f(list(a))),
    ("dstack", (M23, M23), {}, lambda f, *a: f(list(a))),
    ("dstack", (V4, V4), {}, lambda f, *a: f(list(a))),
    ("append", (M23, V4), {}, None),
    ("append", (M23, M23), {"axis": 1}, None),
    ("atleast_1d", (np.array(1.5),), {}, None),
    ("atleast_2d", (V4,), {}, None),
    ("atleast_3d", (V4,), {}, None),
    ("atleast_3d", (M23,), {}, None),
    ("array_split", (V5,), {"indices_or_sections": 3}, None),
    ("array_split", (M34,), {"indices_or_sections": [1, 3], "axis": 1}, None),
    ("hsplit", (M34,), {"indices_or_sections": 2}, None),
    ("vsplit", (M34,), {"indices_or_sections": 3}, None),
    ("dsplit", (T234,), {"indices_or_sections": [1]}, None),
    ("flipud", (M23,), {}, None),
    ("fliplr", (M23,), {}, None),
    ("rot90", (M23,), {}, None),
    ("rot90", (T234,), {"k": 2, "axes": (1, 2)}, None),
    ("rot90", (M34,), {"k": -1}, None),
    ("diff", (V5,), {}, None),
    ("diff", (M34,), {"n": 2, "axis": 1}, None),
    ("diff", (V5,), {"prepend": 0.5, "append": V4}, None),
    ("diag", (V4,), {"k": 1}, None),
    ("diag", (M34,), {"k": -1}, None),
    ("diagflat", (M23,), {}, None),
    ("ptp", (DISTINCT,), {"axis": 1}, None),
    ("ptp", (DISTINCT,), {}, None),
    ("kron", (M23, V4), {}, None),
    ("kron", (M23, M34), {}, None),
    ("cross", (M23, M23[::-1]), {}, None),
    ("cross", (M34[:, :3].T, M34[:, 1:].T), {"axis": 0}, None),
    ("trapezoid", (M34,), {}, None),
    ("trapezoid", (M34, np.cumsum(V4)), {}, None),
    ("trapezoid", (M34,), {"dx": 0.5, "axis": 0}, None),
    ("polyval", (V4, M23), {}, None),
    ("deg2rad", (V4,), {}, None),
    ("radians", (V4,), {}, None),
    ("rad2deg", (V4,), {}, None),
    ("degrees", (V4,), {}, None),
    ("sort", (DISTINCT,), {}, None),
    ("sort", (DISTINCT,), {"axis": 0}, None),
    ("sort", (DISTINCT,), {"axis": None}, None),
    ("take_along_axis", (DISTINCT, IDX), {"axis": 0}, "idx"),
    ("take_along_axis", (DISTINCT, IDX[:1]), {"axis": 1}, "idx"),
    ("median", (DISTINCT,), {}, None),
    ("median", (DISTINCT,), {"axis": 1}, None),
    ("median", (DISTINCT,), {"axis": 0, "keepdims": True}, None),
    ("quantile", (DISTINCT,), {"q": 0.3}, None),
    ("quantile", (DISTINCT,), {"q": [0.1, 0.75], "axis": 1}, None),
    ("percentile", (DISTINCT,), {"q": 40.0, "axis": (0, 1), "keepdims": True}, None),
    ("nansum", (FINITE,), {"axis": 1}, "nan"),
    ("nanmean", (FINITE,), {"axis": 0}, "nan"),
    ("nanmax", (FINITE,), {"axis": 1}, "nan"),
    ("average", (M34,), {"axis": 1}, None),
    ("average", (M34, V4), {"axis": 1}, "weights"),
    ("average", (M34, M34[::-1]), {}, "weights"),
    ("meshgrid", (V4, V5), {}, None),
    ("meshgrid", (V4, V5), {"indexing": "ij"}, None),
]


def _np_fn(name: str) -> Any:
    return getattr(np, name)


def _apply(fn: Any, case: tuple, args: list[Any]) -> Any:
    name, _, kw, how = case
    if callable(how):
        return how(fn, *args)
    if how == "idx":
        return fn(args[0], case[1][1], **kw)
    if how == "nan":
        return fn(ad.where(np.isnan(NAN), np.nan, args[0]), **kw)
    if how == "weights":
        return fn(args[0], weights=args[1], **kw)
    if name in (
        "atleast_1d",
        "atleast_2d",
        "atleast_3d",
        "deg2rad",
        "rad2deg",
        "radians",
        "degrees",
    ):
        return fn(*args)
    return fn(*args, **kw)


def _diff_args(case: tuple) -> list[np.ndarray]:
    return [case[1][0]] if case[3] == "idx" else list(case[1])


def _outs(o: Any) -> list[Any]:
    return list(o) if isinstance(o, tuple | list) else [o]


def _ids() -> list[Any]:
    return [pytest.param(c, id=f"{c[0]}-{i}") for i, c in enumerate(CASES)]


@pytest.mark.parametrize("case", _ids())
def test_value_matches_numpy(case):
    want = _outs(_apply(_np_fn(case[0]), case, _diff_args(case)))
    xs = [ad.tensor(a, requires_grad=True) for a in _diff_args(case)]
    for fn in (_np_fn(case[0]), getattr(ad, case[0])):
        got = _outs(_apply(fn, case, xs))
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            assert isinstance(g, ad.Tensor) and g.requires_grad
            assert g.shape == np.shape(w) and g.dtype == np.asarray(w).dtype
            np.testing.assert_allclose(g.data, w, rtol=1e-13, atol=1e-15)


def _loss_fn(case: tuple) -> Any:
    w = None

    def f(*xs: Any) -> Any:
        nonlocal w
        outs = _outs(_apply(_np_fn(case[0]), case, list(xs)))
        if w is None:  # a fixed random cotangent per output
            w = [np.random.default_rng(3).normal(size=o.shape) for o in outs]
        return ad.stack([ad.sum(o * c) for o, c in zip(outs, w, strict=True)])

    return f


@pytest.mark.parametrize("case", _ids())
def test_vjp_and_jvp_match_finite_differences(case):
    ad.fd.gradcheck(_loss_fn(case), *_diff_args(case), modes=("rev", "fwd"), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("case", _ids())
def test_second_order(case):
    ad.fd.gradgradcheck(_loss_fn(case), *_diff_args(case), rtol=1e-5, atol=1e-8)


def test_argsort_is_not_differentiable():
    x = ad.tensor(DISTINCT, requires_grad=True)
    out = np.argsort(x, axis=0)
    assert not out.requires_grad and out.dtype.kind == "i"
    np.testing.assert_array_equal(out.data, np.argsort(DISTINCT, axis=0))


def test_sort_ties_follow_the_stable_order():
    x = ad.tensor([2.0, 1.0, 2.0], requires_grad=True)
    (ad.sort(x) * ad.tensor([1.0, 10.0, 100.0])).sum().backward()
    np.testing.assert_array_equal(x.grad.data, [10.0, 1.0, 100.0])


def test_nan_entries_get_zero_gradient_and_all_nan_gives_nan():
    a = np.array([[0.3, np.nan, 1.1], [np.nan, np.nan, 0.4]])
    x = ad.tensor(a, requires_grad=True)
    y = np.nanmax(x, axis=0)
    np.testing.assert_array_equal(np.isnan(y.data), [False, True, False])
    (np.nansum(x) + np.nanmean(x) + np.nanmax(x)).backward()
    np.testing.assert_allclose(x.grad.data, [[4 / 3, 0, 7 / 3], [0, 0, 4 / 3]], rtol=1e-15)


def test_mod_operator_and_its_derivatives():
    a = ad.tensor([5.5, -5.5, 3.25], requires_grad=True)
    b = ad.tensor([2.0, 2.0, -1.5], requires_grad=True)
    y = a % b
    np.testing.assert_array_equal(y.data, np.mod(a.data, b.data))
    y.sum().backward()
    np.testing.assert_array_equal(a.grad.data, [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(b.grad.data, -np.floor_divide(a.data, b.data))
    np.testing.assert_array_equal((7.0 % b).data, np.mod(7.0, b.data))


def test_unsupported_arguments_raise():
    x = ad.tensor(V4, requires_grad=True)
    with pytest.raises(NotImplementedError, match="method='nearest'"):
        np.quantile(x, 0.5, method="nearest")
    with pytest.raises(ValueError, match="cross"):
        np.cross(x, x)
    with pytest.raises(ValueError, match="equal division"):
        np.hsplit(x, 3)


def test_quantiles_of_nan_are_nan_and_q_is_not_differentiated():
    a = np.array([[0.3, np.nan, 1.1], [0.2, 0.5, 0.4]])
    x = ad.tensor(a, requires_grad=True)
    np.testing.assert_array_equal(np.median(x, axis=1).data, np.median(a, axis=1))
    with pytest.raises(TypeError, match=r"q\.detach"):
        np.quantile(x, ad.tensor(0.5, requires_grad=True))


def test_percentile_refuses_a_differentiable_q_and_checks_its_range_in_percent():
    x = ad.tensor(V4, requires_grad=True)
    with pytest.raises(TypeError, match=r"percentile: q is not differentiated; pass q\.detach"):
        np.percentile(x, ad.tensor(50.0, requires_grad=True))
    with pytest.raises(ValueError, match=r"percentile: q must be in the range \[0, 100\]"):
        ad.percentile(x, 150.0)
    with pytest.raises(ValueError, match=r"quantile: q must be in the range \[0, 1\]"):
        ad.quantile(x, 1.5)
    with pytest.raises(TypeError, match=r"percentile: unsupported arguments \['weights'\]"):
        ad.percentile(x, 50.0, weights=V4)
    got = ad.percentile(x, [25.0, 50.0], 0, None, False, "linear", True)
    np.testing.assert_allclose(got.data, np.percentile(V4, [25.0, 50.0], 0, keepdims=True))


def test_average_of_zero_weights_raises_as_numpy():
    x = ad.tensor(V4, requires_grad=True)
    with pytest.raises(ZeroDivisionError, match="average"):
        np.average(x, weights=np.zeros(4))


def test_integer_inputs_keep_numpy_dtypes():
    i = ad.tensor(np.arange(3))
    for name, call in [
        ("meshgrid", lambda f: f(i, i)),
        ("polyval", lambda f: f(i, i)),
        ("diff", lambda f: f(i)),
        ("kron", lambda f: f(i, i)),
    ]:
        want = _outs(call(_np_ref(name)))
        got = _outs(call(getattr(ad, name)))
        assert [g.dtype for g in got] == [np.asarray(w).dtype for w in want], name


def _np_ref(name: str) -> Any:
    f = getattr(np, name)
    return lambda *a, **k: f(*[t.data if isinstance(t, ad.Tensor) else t for t in a], **k)


def test_inplace_mod_writes_through_a_view_as_numpy_does():
    x = ad.tensor([5.5, 7.5], requires_grad=True)
    h = x * 1.0
    v = h[0:1]
    v %= 2.0
    ref = np.array([5.5, 7.5])
    ref[0:1] %= 2.0
    np.testing.assert_array_equal(h.data, ref)
    (h * ad.tensor([2.0, 3.0])).sum().backward()
    np.testing.assert_array_equal(x.grad.data, [2.0, 3.0])
