"""Tests of autodiffx.fd: finite differences, error orders, step studies and gradient checks."""

import dataclasses
import re
import warnings

import numpy as np
import pytest
from scipy.optimize import rosen, rosen_hess

from autodiffx.fd import (
    GradcheckError,
    StepStudy,
    default_step,
    derivative,
    directional,
    gradcheck,
    gradgradcheck,
    gradient,
    hessian,
    jacobian,
    step_study,
)

EPS64 = np.finfo(np.float64).eps
EPS32 = np.finfo(np.float32).eps
SCHEMES = ("forward", "backward", "central", "complex")
# relative accuracy of each scheme at its default step
DEFAULT_RTOL = {"forward": 1e-7, "backward": 1e-7, "central": 1e-9, "complex": 1e-14}

POINTS = np.array([-2.0, -0.3, 0.5, 1.0, 3.0])
CLOSED_FORMS = {
    "sin": (np.sin, np.cos, lambda x: -np.sin(x)),
    "exp": (np.exp, np.exp, np.exp),
    "cubic": (
        lambda x: 3 * x**3 - 2 * x + 1,
        lambda x: 9 * x**2 - 2,
        lambda x: 18 * x,
    ),
}


def _core():
    """The AD core, or skip: it lands after this module (the lead runs these tests then)."""
    ad = pytest.importorskip("autodiffx")
    pytest.importorskip("autodiffx.autograd")
    pytest.importorskip("autodiffx.forward")
    return ad


def _slope(hs, errors):
    """Slope of log(error) against log(h): the observed order of accuracy."""
    return np.polyfit(np.log(hs), np.log(errors), 1)[0]


def _errors(f, exact, x, hs, scheme, order=1):
    return np.array([abs(derivative(f, x, h=h, scheme=scheme, order=order) - exact) for h in hs])


# ---------------------------------------------------------------------------------------------
# directional: the NumPy-only central-difference kernel the test suite uses as its oracle,
# checked here against closed forms (never against the AD engine)
# ---------------------------------------------------------------------------------------------


def _two_in_two_out(x, y):
    return np.sin(x) * y, np.sum(np.exp(x))


def _two_in_two_out_jv(x, y, vx, vy):
    return np.cos(x) * vx * y + np.sin(x) * vy, np.sum(np.exp(x) * vx)


@pytest.mark.parametrize("name", sorted(CLOSED_FORMS))
def test_directional_matches_closed_form_elementwise(name):
    f, df, _ = CLOSED_FORMS[name]
    v = np.linspace(-1.0, 2.0, POINTS.size)
    (jv,) = directional(f, [POINTS], [v])
    np.testing.assert_allclose(jv, df(POINTS) * v, rtol=1e-10, atol=1e-12)


def test_directional_several_inputs_and_outputs():
    x, y = np.array([0.3, -1.2, 2.0]), np.array([[1.5, -0.5, 4.0]])
    vx, vy = np.array([1.0, 0.5, -2.0]), np.array([[0.25, 3.0, -1.0]])
    got = directional(_two_in_two_out, [x, y], [vx, vy])
    want = _two_in_two_out_jv(x, y, vx, vy)
    assert [g.shape for g in got] == [(1, 3), ()]
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-10)


def test_directional_richardson_cancels_the_h2_term():
    x, v = np.array([1.0]), np.array([1.0])
    plain = abs(directional(np.exp, [x], [v], richardson=False)[0][0] - np.e)
    extrapolated = abs(directional(np.exp, [x], [v])[0][0] - np.e)
    # h = 1e-3: the plain central error is h**2 e / 6 ~ 4.5e-7; Richardson leaves O(h**4)
    assert plain == pytest.approx(np.e * 1e-6 / 6, rel=1e-2)
    assert extrapolated < 1e-11


def test_directional_step_is_relative_to_the_largest_input_and_direction():
    seen = []

    def f(x, y):
        seen.append(np.abs(np.concatenate([x - x0, y - y0])).max())
        return x.sum() + y.sum()

    x0, y0 = np.array([10.0, -40.0]), np.array([0.5])
    directional(f, [x0, y0], [np.array([0.0, 2.0]), np.array([-4.0])], rel_step=1e-4)
    assert seen == pytest.approx([4e-3, 4e-3, 2e-3, 2e-3], rel=1e-9)


def test_directional_upcasts_outputs_and_gives_zeros_for_a_zero_direction():
    x = np.array([1.0, 2.0], dtype=np.float32)
    (jv,) = directional(lambda x: (x * x).astype(np.float32), [x], [np.ones(2)])
    assert jv.dtype == np.float64
    np.testing.assert_allclose(jv, [2.0, 4.0], rtol=1e-3)
    zero = directional(lambda x: (x, 1j * x.sum()), [x], [np.zeros(2)])
    assert [(z.dtype, z.shape) for z in zero] == [(np.float64, (2,)), (np.complex128, ())]
    assert not any(np.any(z) for z in zero)


# ---------------------------------------------------------------------------------------------
# derivative
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("name", CLOSED_FORMS)
def test_derivative_matches_closed_form(name, scheme):
    f, df, _ = CLOSED_FORMS[name]
    for x in POINTS:
        exact = df(x)
        got = derivative(f, x, scheme=scheme)
        assert abs(got - exact) <= DEFAULT_RTOL[scheme] * max(1.0, abs(exact)), (x, got, exact)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_derivative_is_elementwise_on_arrays(scheme):
    got = derivative(np.sin, POINTS, scheme=scheme)
    assert got.shape == POINTS.shape
    np.testing.assert_allclose(got, np.cos(POINTS), rtol=0, atol=DEFAULT_RTOL[scheme])


@pytest.mark.parametrize(
    ("scheme", "rtol"), [("central", 1e-7), ("forward", 1e-4), ("backward", 1e-4)]
)
@pytest.mark.parametrize("name", CLOSED_FORMS)
def test_second_derivative_matches_closed_form(name, scheme, rtol):
    f, _, d2f = CLOSED_FORMS[name]
    got = derivative(f, POINTS, scheme=scheme, order=2)
    np.testing.assert_allclose(got, d2f(POINTS), rtol=rtol, atol=rtol)


def test_scalar_input_gives_numpy_scalar_and_integers_become_float64():
    seen = []

    def f(x):
        seen.append(x)
        return x**2

    d = derivative(f, 3)
    assert isinstance(d, np.float64)
    assert d == pytest.approx(6.0, rel=1e-9)
    assert all(isinstance(x, np.ndarray) and x.dtype == np.float64 for x in seen)


def test_complex_step_receives_complex_arrays():
    seen = []

    def f(x):
        seen.append(x)
        return np.sin(x)

    derivative(f, np.array([0.5, 1.0]), scheme="complex")
    assert [x.dtype for x in seen] == [np.complex128]
    derivative(f, np.float32(0.5), scheme="complex")
    assert seen[-1].dtype == np.complex64


@pytest.mark.parametrize("x", [0.5, 1.0, 2.0, -3.0])
def test_complex_step_is_exact_to_rounding(x):
    for f, df in [(np.exp, np.exp), (np.sin, np.cos), (lambda t: t**3, lambda t: 3 * t**2)]:
        got = derivative(f, x, h=1e-20, scheme="complex")
        assert abs(got - df(x)) <= 1e-15 * abs(df(x))


def test_f_may_return_numbers_and_array_likes():
    class ArrayLike:  # stands for an autodiffx Tensor: anything with __array__
        def __init__(self, value):
            self.value = np.asarray(value)

        def __array__(self, dtype=None, copy=None):
            return self.value

    assert derivative(lambda x: float(x) ** 2, 1.5) == pytest.approx(3.0, rel=1e-9)
    assert derivative(lambda x: ArrayLike(np.sin(x)), 1.0) == pytest.approx(np.cos(1.0))
    np.testing.assert_allclose(
        gradient(lambda v: ArrayLike(np.sum(v**2)), np.array([1.0, 2.0])), [2.0, 4.0]
    )


# ---------------------------------------------------------------------------------------------
# error orders and default steps
# ---------------------------------------------------------------------------------------------

TRUNCATION_HS = np.logspace(-4, -1, 7)  # truncation-dominated for exp at x = 1


@pytest.mark.parametrize(
    ("scheme", "order"), [("forward", 1), ("backward", 1), ("central", 2), ("complex", 2)]
)
def test_first_derivative_error_order(scheme, order):
    errors = _errors(np.exp, np.e, 1.0, TRUNCATION_HS, scheme)
    assert _slope(TRUNCATION_HS, errors) == pytest.approx(order, abs=0.1)


@pytest.mark.parametrize(("scheme", "order"), [("central", 2), ("forward", 1), ("backward", 1)])
def test_second_derivative_error_order(scheme, order):
    hs = np.logspace(-2.5, -0.5, 7)  # below ~1e-3 round-off (~eps/h**2) takes over
    errors = _errors(np.exp, np.e, 1.0, hs, scheme, order=2)
    assert _slope(hs, errors) == pytest.approx(order, abs=0.1)


def test_default_steps_reach_textbook_accuracy_on_exp():
    assert abs(derivative(np.exp, 1.0, scheme="forward") - np.e) < 1e-7
    assert abs(derivative(np.exp, 1.0, scheme="backward") - np.e) < 1e-7
    assert abs(derivative(np.exp, 1.0, scheme="central") - np.e) < 1e-10
    assert abs(derivative(np.exp, 1.0, scheme="complex") - np.e) < 1e-15 * np.e
    assert abs(derivative(np.exp, 1.0, order=2) - np.e) < 1e-7


def test_default_step_formulas():
    assert default_step(1.0, "forward") == 2.0**-26  # sqrt(eps) exactly
    assert default_step(1.0, "backward") == 2.0**-26
    assert default_step(1.0, "central") == pytest.approx(EPS64 ** (1 / 3), rel=1e-9)
    assert default_step(1.0, "central", order=2) == pytest.approx(EPS64**0.25, rel=1e-9)
    assert default_step(1.0, "forward", order=2) == pytest.approx(EPS64 ** (1 / 3), rel=1e-9)
    assert default_step(1.0, "complex") == 1e-20
    # scaled by max(1, |x|)
    np.testing.assert_allclose(
        default_step(np.array([0.0, 0.5, -1e3]), "central"),
        EPS64 ** (1 / 3) * np.array([1.0, 1.0, 1e3]),
        rtol=1e-9,
    )


@pytest.mark.parametrize("x", [0.1, 1.0, 7.3, -1e4])
@pytest.mark.parametrize("scheme", ["forward", "central"])
def test_default_step_is_exactly_representable(x, scheme):
    h = default_step(x, scheme)
    assert (x + h) - x == h


def test_float32_input_uses_float32_eps():
    h = default_step(np.float32(1.0), "central")
    assert h.dtype == np.float32
    # within the rounding of (1 + h) - 1 in float32
    assert h == pytest.approx(EPS32 ** (1 / 3), rel=1e-3)
    assert default_step(np.float32(1.0), "forward") == pytest.approx(EPS32**0.5, rel=1e-3)

    seen = []

    def f(x):
        seen.append(x)
        return np.exp(x)

    d = derivative(f, np.float32(1.0))
    assert d.dtype == np.float32
    assert all(x.dtype == np.float32 for x in seen)
    plus, minus = seen
    assert (plus - minus) / 2 == pytest.approx(EPS32 ** (1 / 3), rel=1e-3)
    assert abs(d - np.e) < 1e-4 * np.e  # ~eps32**(2/3), far from float64's 1e-10


# ---------------------------------------------------------------------------------------------
# gradient, jacobian, hessian
# ---------------------------------------------------------------------------------------------


def _vector_function(v):
    return np.array([v[0] ** 2 * v[1], 5 * v[0] + np.sin(v[2]), np.exp(v[1] * v[2])])


def _vector_jacobian(v):
    x, y, z = v
    return np.array(
        [
            [2 * x * y, x**2, 0.0],
            [5.0, 0.0, np.cos(z)],
            [0.0, z * np.exp(y * z), y * np.exp(y * z)],
        ]
    )


@pytest.mark.parametrize("scheme", SCHEMES)
def test_jacobian_of_vector_function(scheme):
    v = np.array([0.7, -1.2, 0.4])
    got = jacobian(_vector_function, v, scheme=scheme)
    assert got.shape == (3, 3)
    np.testing.assert_allclose(got, _vector_jacobian(v), rtol=0, atol=10 * DEFAULT_RTOL[scheme])


def test_jacobian_shape_is_out_shape_plus_x_shape():
    w = np.array([1.0, -2.0, 0.5])
    x = np.arange(6.0).reshape(2, 3)
    jac = jacobian(lambda m: m @ w, x)  # R^{2x3} -> R^2
    assert jac.shape == (2, 2, 3)
    expected = np.einsum("ik,l->ikl", np.eye(2), w)
    np.testing.assert_allclose(jac, expected, atol=1e-9)
    assert jacobian(lambda v: np.sum(v), np.ones((2, 2))).shape == (2, 2)
    assert jacobian(lambda v: np.outer(v, v), np.ones(3)).shape == (3, 3, 3)
    assert jacobian(np.sin, 0.0) == pytest.approx(1.0)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_gradient_of_sum_of_squares_keeps_x_shape(scheme):
    x = np.array([[1.0, -2.0, 3.0], [0.5, 0.0, -1.5]])
    got = gradient(lambda v: np.sum(v**2), x, scheme=scheme)
    assert got.shape == x.shape
    np.testing.assert_allclose(got, 2 * x, atol=1e-6)


def test_gradient_needs_scalar_output():
    with pytest.raises(ValueError, match="scalar-valued"):
        gradient(np.sin, np.ones(3))


@pytest.mark.parametrize(
    ("scheme", "atol"), [("central", 1e-6), ("forward", 1e-4), ("backward", 1e-4)]
)
def test_hessian_of_quadratic_form(scheme, atol):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4, 4))
    x = rng.standard_normal(4)
    hess = hessian(lambda v: v @ a @ v, x, scheme=scheme)
    assert hess.shape == (4, 4)
    np.testing.assert_array_equal(hess, hess.T)
    np.testing.assert_allclose(hess, a + a.T, atol=atol)


def test_hessian_of_rosenbrock():
    x = np.array([1.2, 1.0, 0.8, -0.5])
    exact = rosen_hess(x)
    got = hessian(rosen, x)
    np.testing.assert_array_equal(got, got.T)
    np.testing.assert_allclose(got, exact, rtol=0, atol=1e-5 * np.abs(exact).max())
    one_sided = hessian(rosen, x, scheme="forward")
    np.testing.assert_allclose(one_sided, exact, rtol=0, atol=1e-3 * np.abs(exact).max())


def test_hessian_shapes():
    x = np.array([[0.5, -1.0], [2.0, 0.3]])
    hess = hessian(lambda m: np.sum(m**3), x)
    assert hess.shape == (2, 2, 2, 2)
    np.testing.assert_allclose(hess.reshape(4, 4), np.diag(6 * x.ravel()), atol=1e-6)
    vector_out = hessian(lambda v: np.array([v @ v, v[0] * v[1]]), np.array([1.0, 2.0]))
    assert vector_out.shape == (2, 2, 2)
    np.testing.assert_allclose(vector_out, [2 * np.eye(2), [[0, 1], [1, 0]]], atol=1e-6)
    assert hessian(np.sin, 1.0) == pytest.approx(-np.sin(1.0), rel=1e-7)


def test_invalid_arguments():
    with pytest.raises(ValueError, match="scheme"):
        derivative(np.sin, 1.0, scheme="upwind")
    with pytest.raises(ValueError, match="order"):
        derivative(np.sin, 1.0, order=3)
    with pytest.raises(ValueError, match="complex step"):
        derivative(np.sin, 1.0, scheme="complex", order=2)
    with pytest.raises(ValueError, match="complex step"):
        hessian(rosen, np.ones(2), scheme="complex")
    with pytest.raises(ValueError, match="positive"):
        derivative(np.sin, 1.0, h=0.0)
    with pytest.raises(ValueError, match="positive"):
        derivative(np.sin, np.float32(1.0), h=1e-200)  # underflows to 0 in float32
    with pytest.raises(TypeError, match="real"):
        derivative(np.sin, 1.0 + 2.0j)


# ---------------------------------------------------------------------------------------------
# step_study
# ---------------------------------------------------------------------------------------------


def test_step_study_structure():
    study = step_study(np.exp, 1.0, exact=np.e)
    assert isinstance(study, StepStudy)
    np.testing.assert_allclose(study.hs, np.logspace(-16, 0, 49))
    assert list(study.errors) == list(SCHEMES)
    assert all(err.shape == (49,) for err in study.errors.values())
    assert study.exact == np.e
    assert set(study.best) == set(SCHEMES)
    for scheme, (h, err) in study.best.items():
        assert err == study.errors[scheme].min()
        assert h in study.hs
    rows = study.to_rows()
    assert len(rows) == 49
    assert list(rows[0]) == ["h", *SCHEMES]
    assert rows[-1]["h"] == 1.0
    assert rows[10]["central"] == study.errors["central"][10]
    text = repr(study)
    assert text.startswith("StepStudy(x=1.0, exact=2.718281828459045)")
    assert "best h" in text
    assert "best error" in text
    assert len(text.splitlines()) < 20  # compact


def test_step_study_shows_truncation_then_round_off():
    study = step_study(np.exp, 1.0, exact=np.e)
    central = study.errors["central"]
    best = int(np.argmin(central))
    assert 0 < best < len(central) - 1
    assert central[0] > 1e3 * central[best]  # round-off regime at h = 1e-16
    assert central[-1] > 1e3 * central[best]  # truncation regime at h = 1
    assert np.all(np.diff(central[best + 2 :]) > 0)  # truncation error falls steadily with h
    assert 1e-7 < study.best["central"][0] < 1e-4  # near eps**(1/3)
    assert 1e-10 < study.best["forward"][0] < 1e-6  # near sqrt(eps)
    complex_small = study.errors["complex"][study.hs <= 1e-8]  # truncation below 1e-16
    assert np.all(complex_small <= 4 * EPS64 * np.e)


def test_step_study_defaults_and_validation():
    # exact=None: AD when the core is there, else the complex step; both exact to rounding
    study = step_study(np.exp, 1.0, hs=[1e-3, 1e-2], schemes=("central",))
    assert study.exact == pytest.approx(np.e, rel=1e-15)
    assert list(study.errors) == ["central"]
    float32_study = step_study(np.exp, np.float32(1.0), hs=[1e-2], schemes=("forward",))
    assert float32_study.exact == pytest.approx(np.e, rel=1e-15)  # reference in float64
    with pytest.raises(ValueError, match="scalar x"):
        step_study(np.exp, np.ones(2))
    with pytest.raises(ValueError, match="positive"):
        step_study(np.exp, 1.0, hs=[1e-3, -1.0])


def test_step_study_is_immutable():
    study = step_study(np.exp, 1.0, exact=np.e, hs=[1e-3, 1e-2])
    with pytest.raises(dataclasses.FrozenInstanceError):
        study.exact = 0.0
    with pytest.raises(ValueError, match="read-only"):
        study.errors["central"][0] = 0.0
    with pytest.raises(TypeError):
        study.errors["new"] = np.zeros(2)
    hs = np.array([1e-3, 1e-2])
    step_study(np.exp, 1.0, exact=np.e, hs=hs)
    hs[0] = 1.0  # the caller's array is not frozen


# ---------------------------------------------------------------------------------------------
# gradcheck and gradgradcheck (need the AD core)
# ---------------------------------------------------------------------------------------------


def test_gradcheck_passes_on_correct_ad():
    ad = _core()
    x = np.array([0.5, -1.0, 2.0])
    assert gradcheck(lambda t: ad.sin(t) * t, x)
    assert gradcheck(lambda t: ad.sum(t**2), x)
    assert gradcheck(lambda t: ad.exp(t) * t, np.array([[0.1, 0.2], [-0.3, 0.4]]))
    assert gradcheck(lambda t, u: t * ad.sin(u), x, np.array([0.3, 0.2, 0.1]))


def test_gradcheck_accepts_tensors_numbers_and_passes_other_inputs_through():
    ad = _core()
    x = ad.tensor([0.5, 1.5], requires_grad=True)
    calls = []

    def f(t, s, p):
        calls.append((t, s, p))
        return t**p * s

    assert gradcheck(f, x, 2.5, 3, modes=("rev",))
    t, s, p = calls[0]
    assert isinstance(t, ad.Tensor)
    assert t is not x
    assert t.requires_grad
    assert t.dtype == np.float64
    assert isinstance(s, ad.Tensor)  # the float is checked too
    assert s.requires_grad
    assert type(p) is int  # integers are passed through unchanged
    assert x.grad is None  # the caller's tensor is left alone


def test_gradcheck_reports_a_wrong_derivative():
    _core()
    x = np.array([0.0, 2.0, 3.0])  # element 0 agrees (both derivatives are 0 there)
    f = lambda t: t * t.detach()  # AD sees t * const: d/dt = t, but the values are t**2
    with pytest.raises(GradcheckError) as info:
        gradcheck(f, x, modes=("rev",))
    message = str(info.value)
    assert "'rev' mode" in message
    assert "input 0 (shape (3,)), element (1,)" in message
    assert "output element (1,)" in message
    assert "AD = 2," in message
    assert float(re.search(r"FD = (\S+?),", message).group(1)) == pytest.approx(4.0)
    assert "|AD - FD| = " in message
    assert "allowed atol + rtol*|FD|" in message
    assert "kink" not in message
    assert isinstance(info.value, AssertionError)
    assert gradcheck(f, x, modes=("rev",), raise_exception=False) is False


def test_gradcheck_names_the_failing_mode(monkeypatch):
    ad = _core()
    from autodiffx import autograd, forward

    f = lambda t: ad.sin(t) * t
    x = np.array([0.5, 1.5])
    unpack_dual = forward.unpack_dual

    def doubled_tangent(t):
        primal, tangent = unpack_dual(t)
        return primal, None if tangent is None else tangent * 2.0

    monkeypatch.setattr(forward, "unpack_dual", doubled_tangent)
    assert gradcheck(f, x, modes=("rev",))
    with pytest.raises(GradcheckError, match="'fwd' mode"):
        gradcheck(f, x)
    monkeypatch.undo()

    grad = autograd.grad

    def scaled_grad(*args, **kwargs):
        return tuple(None if g is None else g * 1.5 for g in grad(*args, **kwargs))

    monkeypatch.setattr(autograd, "grad", scaled_grad)
    assert gradcheck(f, x, modes=("fwd",))
    with pytest.raises(GradcheckError, match="'rev' mode"):
        gradcheck(f, x)


@pytest.mark.parametrize("kind", ["abs", "jump"])
def test_gradcheck_detects_kinks(kind):
    ad = _core()
    f = (lambda t: ad.abs(t)) if kind == "abs" else (lambda t: t + ad.sign(t))
    x = np.array([1.0, 1e-7])  # the second element sits within one FD step of 0
    with pytest.raises(GradcheckError, match=r"kink / non-differentiable point") as info:
        gradcheck(f, x)
    assert "input 0 (shape (2,)), element (1,)" in str(info.value)
    with pytest.raises(GradcheckError) as plain:
        gradcheck(f, x, check_kinks=False)
    assert "kink" not in str(plain.value)
    assert "gradcheck failed" in str(plain.value)
    assert gradcheck(f, np.array([1.0, -0.5]))  # away from the kink all is well


def test_gradcheck_prefers_a_genuine_failure_over_a_kink():
    ad = _core()
    f = lambda t, u: ad.abs(t) + u * u.detach()
    with pytest.raises(GradcheckError, match="gradcheck failed") as info:
        gradcheck(f, np.array([1e-7]), np.array([2.0]), modes=("rev",))
    assert "input 1 (shape (1,))" in str(info.value)


@pytest.mark.parametrize(
    ("x", "element", "reduce"),
    [([0.0, 1.0], 0, False), ([1.0, 0.0], 1, False), ([0.0, 1.0], 0, True)],
)
def test_gradcheck_blames_the_non_differentiable_element(x, element, reduce):
    """sqrt at [0, 1]: the infinite derivative at 0 makes 0 * inf = nan appear in the column
    of the smooth element 1 (forward mode) and gradcheck blamed element 1; the probe
    sqrt(0 - h) also leaked a RuntimeWarning."""
    ad = _core()
    f = (lambda t: ad.sum(ad.sqrt(t))) if reduce else ad.sqrt
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(GradcheckError) as info:
            gradcheck(f, np.array(x))
    message = str(info.value)
    assert "kink / non-differentiable point was detected near" in message
    assert f"input 0 (shape (2,)), element ({element},) (x = 0)" in message
    assert f"with respect to element ({1 - element},) of input 0 nan (0 * inf)" in message
    assert "gradcheck failed" not in message


def test_gradcheck_does_not_excuse_an_unrelated_non_finite_derivative():
    """A kink in element 0 (finite derivatives) does not explain the nan that the infinite
    AD derivative of element 1 leaves in output 0: that is a genuine failure."""
    ad = _core()

    def f(t):
        wrong = t[1] * ad.sqrt(t[1] - t[1].detach())  # AD: inf; the function is 0
        return ad.stack([ad.abs(t[0]), wrong])

    with pytest.raises(GradcheckError, match="gradcheck failed") as info:
        gradcheck(f, np.array([1e-7, 2.0]), modes=("rev",))
    assert "input 0 (shape (2,)), element (1,)" in str(info.value)
    assert "output element (0,): AD = nan, FD = 0" in str(info.value)


def test_gradcheck_warns_and_upcasts_below_float64():
    ad = _core()
    x = np.array([0.5, 1.0], dtype=np.float32)
    dtypes = []

    def f(t):
        dtypes.append(t.dtype)
        return ad.sin(t)

    with pytest.warns(UserWarning, match="unreliable below float64.*upcasts"):
        assert gradcheck(f, x)
    assert set(dtypes) == {np.dtype(np.float64)}


def test_gradcheck_argument_errors():
    ad = _core()
    with pytest.raises(ValueError, match="no floating-point input"):
        gradcheck(lambda n: n, 3)
    with pytest.raises(ValueError, match="modes"):
        gradcheck(ad.sin, np.ones(2), modes=("reverse",))


def test_gradgradcheck_passes_on_correct_ad():
    ad = _core()
    x = np.array([0.5, -1.0, 2.0])
    assert gradgradcheck(lambda t: ad.sum(ad.sin(t) * t), x)
    assert gradgradcheck(lambda t: ad.sin(t) * t, x)  # non-scalar output, random go
    assert gradgradcheck(lambda t: ad.exp(t) * t, x, grad_outputs=np.array([1.0, -2.0, 0.5]))
    assert gradgradcheck(lambda t, u: ad.sum(t * t * u), x, np.array([0.3, 0.2, 0.1]))


def test_gradgradcheck_reports_a_wrong_second_derivative():
    ad = _core()
    f = lambda t: ad.sum(t * t * t.detach())  # right first derivative values, wrong second
    with pytest.raises(GradcheckError, match="gradgradcheck") as info:
        gradgradcheck(f, np.array([1.0, 2.0]))
    assert "input 0 (shape (2,))" in str(info.value)
    assert gradgradcheck(f, np.array([1.0, 2.0]), raise_exception=False) is False


def test_step_study_uses_ad_for_the_reference():
    ad = _core()
    study = step_study(lambda t: ad.sin(t) * t, 1.0, hs=[1e-3], schemes=("central",))
    assert study.exact == pytest.approx(np.sin(1.0) + np.cos(1.0), rel=1e-15)
    # a function returning plain arrays falls back to the complex step
    study = step_study(lambda t: np.exp(np.asarray(t)), 1.0, hs=[1e-3], schemes=("central",))
    assert study.exact == pytest.approx(np.e, rel=1e-15)


def test_fd_accepts_functions_returning_tensors():
    ad = _core()
    d = derivative(lambda x: ad.sin(ad.tensor(x)), 1.0)
    assert d == pytest.approx(np.cos(1.0), rel=1e-9)
    np.testing.assert_allclose(
        hessian(lambda v: ad.sum(ad.tensor(v) ** 3), np.array([1.0, 2.0])),
        np.diag([6.0, 12.0]),
        atol=1e-6,
    )
