"""The safe expression language: accepted grammar, refusals with clear messages, and fuzzing."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import autodiffx as ad
from autodiffx.expr import CONSTANTS, FUNCTIONS, MAX_DEPTH, ExpressionError, parse


@pytest.mark.parametrize(
    ("text", "values", "expected"),
    [
        ("ln(x1) + x1*x2 - sin(x2)", {"x1": 2.0, "x2": 5.0}, math.log(2) + 10 - math.sin(5)),
        ("-2**2", {}, -4.0),
        ("2**-1", {}, 0.5),
        ("2**3**2", {}, 512.0),
        ("(-2)**2", {}, 4.0),
        ("1 - 2 - 3", {}, -4.0),
        ("8 / 4 / 2", {}, 1.0),
        ("2 + 3 * 4", {}, 14.0),
        ("(2 + 3) * 4", {}, 20.0),
        ("-x**2", {"x": 3.0}, -9.0),
        ("+x - -x", {"x": 3.0}, 6.0),
        ("--x", {"x": 3.0}, 3.0),
        ("x*-y", {"x": 2.0, "y": 3.0}, -6.0),
        ("atan2(1, x)", {"x": 1.0}, math.pi / 4),
        ("hypot(x, 4)", {"x": 3.0}, 5.0),
        ("pi * e", {}, math.pi * math.e),
        ("1.5e2 + .5 + 2.", {}, 152.5),
        ("sqrt(x)  *  exp(0)", {"x": 16.0}, 4.0),
        ("sigmoid(0) + softplus(0) + erf(0)", {}, 0.5 + math.log(2)),
        ("maximum(x, 0) + minimum(x, 0)", {"x": -2.5}, -2.5),
        ("1/0", {}, math.inf),
        ("10**400", {}, math.inf),
    ],
)
def test_values(text: str, values: dict, expected: float) -> None:
    e = parse(text)
    assert float(e.evaluate(values, backend="numpy")) == pytest.approx(expected, rel=1e-14)
    assert float(np.asarray(e.evaluate(values))) == pytest.approx(expected, rel=1e-14)


def test_variables_and_callables() -> None:
    e = parse("y * x + sin(y)")
    assert e.variables == ("y", "x")
    assert str(e) == "y * x + sin(y)"
    assert repr(e) == "Expression('y * x + sin(y)')"
    assert float(e.function()(2.0, 3.0)) == pytest.approx(6 + math.sin(2))
    assert float(e(2.0, x=3.0)) == pytest.approx(6 + math.sin(2))  # positional: y first
    with pytest.raises(TypeError, match="takes 2 values"):
        e(1.0, 2.0, 3.0)
    with pytest.raises(TypeError, match="takes 2 arguments"):
        e.function()(1.0)
    assert set(CONSTANTS) == {"pi", "e"}
    assert FUNCTIONS["ln"] == 1 and FUNCTIONS["arctan2"] == 2


def test_differentiable_and_keeps_dtype() -> None:
    e = parse("x**2 * sin(x) + 2*x")
    x = ad.tensor(1.3, requires_grad=True)
    (g,) = ad.autograd.grad(e(x=x), x)
    assert g.item() == pytest.approx(2 * 1.3 * math.sin(1.3) + 1.3**2 * math.cos(1.3) + 2)
    x32 = ad.tensor(np.float32(1.5))
    assert e(x=x32).dtype == np.float32  # numbers are weak Python floats


def test_domain_errors_are_values_not_warnings() -> None:
    # pytest turns warnings into errors: evaluation must be silent
    assert np.isnan(float(parse("log(x)").evaluate({"x": -1.0}, backend="numpy")))
    assert np.isnan(parse("sqrt(x)")(x=ad.tensor(-1.0)).item())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("x.real", "attribute access ('.real') is not allowed, at position 1"),
        ("x.__class__", "attribute access"),
        ("x[0]", "subscripts and lists ('[') are not allowed"),
        ("[i for i in x]", "subscripts and lists"),
        ("{x}", "sets and dicts"),
        ("'abc'", "strings are not allowed"),
        ('"x"', "strings are not allowed"),
        ("sin(x=1)", "keyword arguments"),
        ("x = 1", "keyword arguments and assignments"),
        ("lambda x: x", "Python keywords are not allowed ('lambda')"),
        ("x if x else x", "Python keywords are not allowed ('if')"),
        ("True", "Python keywords"),
        ("None", "Python keywords"),
        ("__import__('os')", "names starting with '_' are not allowed ('__import__')"),
        ("_x + 1", "names starting with '_'"),
        ("x^2", "'^' is not a power here: write x**2"),
        ("x % 2", "'%' is not allowed"),
        ("x @ y", "'@' is not allowed"),
        ("x < 1", "comparisons are not allowed"),
        ("x; y", "several statements"),
        ("x # note", "comments are not allowed"),
        ("x | y", "bitwise"),
        ("foo(x)", "unknown function 'foo'"),
        ("eval(x)", "unknown function 'eval'"),
        ("sin", "'sin' is a function: call it"),
        ("sin()", "sin() takes 1 argument, got none"),
        ("sin(x, y)", "sin() takes 1 argument, got 2"),
        ("hypot(x)", "hypot() takes 2 arguments, got 1"),
        ("sin(*x)", "unexpected '*'"),
        ("2x", "write 2*x, not 2x"),
        ("x y", "a missing operator"),
        ("(x", "missing ')'"),
        ("sin(x", "missing ')' to close sin("),
        ("x)", "unexpected ')'"),
        ("x,y", "tuples are not allowed"),
        ("", "empty expression"),
        ("   ", "empty expression"),
        ("x +", "unexpected end of expression"),
        ("1e999", "number 1e999 is too large"),
        ("10**10**10", "exponent 1e+10 is too large"),
        ("x**100000", "exponent 100000 is too large"),
        ("x**-(2000)", "exponent -2000 is too large"),
        ("2**2**2**2**2", "is too large"),
        ("x\x00", "unexpected character '\\x00'"),
        ("α + 1", "names are ASCII letters"),
        ("x + $", "unexpected character '$'"),
        ("(" * 100 + "x" + ")" * 100, f"nested too deeply (more than {MAX_DEPTH} levels)"),
        ("-" * 200 + "x", "nested too deeply"),
        ("x**" * 200 + "x", "nested too deeply"),
        ("x" + "+x" * 1500, "expression too long"),
    ],
)
def test_refused_with_a_clear_message(text: str, message: str) -> None:
    with pytest.raises(ExpressionError) as info:
        parse(text)
    assert message in str(info.value)


def test_not_a_string() -> None:
    with pytest.raises(ExpressionError, match="is a string"):
        parse(3)  # type: ignore[arg-type]


def test_long_flat_chains_do_not_recurse() -> None:
    # 900 terms: a left-leaning tree 900 deep, evaluated without recursion
    e = parse("+".join(["x"] * 900))
    assert float(e.evaluate({"x": 1.0}, backend="numpy")) == 900.0


def test_value_errors() -> None:
    e = parse("x + y")
    with pytest.raises(ExpressionError, match="no value given for y"):
        e.evaluate({"x": 1.0})
    with pytest.raises(ExpressionError, match="z is not in 'x \\+ y'"):
        e.evaluate({"x": 1.0, "y": 2.0, "z": 3.0})
    with pytest.raises(ValueError, match="backend"):
        e.evaluate({"x": 1.0, "y": 2.0}, backend="torch")


def test_pi_and_e_are_constants() -> None:
    assert parse("pi + e").variables == ()


# ----- fuzzing -------------------------------------------------------------------------------
_ALPHABET = "xy1 2.e+-*/()**,sincoexplgqrtahbd_[]'=^%<>.:;#@" + "\\\x00α"


@given(st.one_of(st.text(max_size=40), st.text(alphabet=_ALPHABET, max_size=40)))
def test_any_text_parses_or_is_refused(text: str) -> None:
    try:
        e = parse(text)
    except ExpressionError:
        return
    values = {v: 0.7 for v in e.variables}
    for backend in ("numpy", "ad"):
        out = e.evaluate(values, backend=backend)
        assert np.ndim(np.asarray(out)) == 0


# Reference: the test's own NumPy functions (not the module's table).
_UNARY = {
    "sin": np.sin,
    "cos": np.cos,
    "tanh": np.tanh,
    "exp": np.exp,
    "ln": np.log,
    "log": np.log,
    "sqrt": np.sqrt,
    "abs": np.abs,
    "arctan": np.arctan,
    "expm1": np.expm1,
    "log1p": np.log1p,
    "cbrt": np.cbrt,
}
_BINARY_FN = {"hypot": np.hypot, "arctan2": np.arctan2, "maximum": np.maximum}
_OPS = {
    "+": np.add,
    "-": np.subtract,
    "*": np.multiply,
    "/": np.divide,
}


def _leaf() -> st.SearchStrategy:
    numbers = st.floats(0, 10, allow_nan=False).map(lambda v: (repr(v), lambda env, v=v: v))
    names = st.sampled_from(["x", "y", "z"]).map(lambda n: (n, lambda env, n=n: env[n]))
    return st.one_of(numbers, names)


def _extend(children: st.SearchStrategy) -> st.SearchStrategy:
    def binop(op: str, a: tuple, b: tuple) -> tuple:
        return f"({a[0]} {op} {b[0]})", lambda env: _OPS[op](a[1](env), b[1](env))

    def unary(name: str, a: tuple) -> tuple:
        return f"{name}({a[0]})", lambda env: _UNARY[name](a[1](env))

    def call2(name: str, a: tuple, b: tuple) -> tuple:
        return f"{name}({a[0]}, {b[0]})", lambda env: _BINARY_FN[name](a[1](env), b[1](env))

    def neg(a: tuple) -> tuple:
        return f"-{a[0]}", lambda env: np.negative(a[1](env))

    def power(a: tuple, k: int) -> tuple:
        # exponents 0, 1, 2: exact in both (x*x is what pow(x, 2) rounds to)
        return f"({a[0]})**{k}", lambda env: np.power(a[1](env), float(k))

    return st.one_of(
        st.builds(binop, st.sampled_from(sorted(_OPS)), children, children),
        st.builds(unary, st.sampled_from(sorted(_UNARY)), children),
        st.builds(call2, st.sampled_from(sorted(_BINARY_FN)), children, children),
        st.builds(neg, children),
        st.builds(power, children, st.integers(0, 2)),
    )


@given(
    st.recursive(_leaf(), _extend, max_leaves=12),
    st.fixed_dictionaries({n: st.floats(-5, 5, allow_nan=False) for n in "xyz"}),
)
def test_random_expressions_match_numpy(tree: tuple, env: dict) -> None:
    text, reference = tree
    e = parse(text)
    values = {k: np.float64(env[k]) for k in e.variables}
    with np.errstate(all="ignore"):
        expected = np.float64(reference(env))
    got_np = np.float64(e.evaluate(values, backend="numpy"))
    got_ad = np.float64(np.asarray(e.evaluate({k: ad.tensor(v) for k, v in values.items()})))
    np.testing.assert_allclose(got_np, expected, rtol=1e-13, equal_nan=True)
    np.testing.assert_allclose(got_ad, expected, rtol=1e-13, equal_nan=True)


def test_the_functions_are_the_registry_entries_marked_expr_and_their_aliases():
    marked = {name: p.nargs for name, p in ad.REGISTRY.items() if p.expr}
    aliases = {"ln": "log", "asin": "arcsin", "acos": "arccos", "atan": "arctan"}
    aliases |= {"atan2": "arctan2", "pow": "power"}
    assert dict(FUNCTIONS) == {**marked, **{a: marked[t] for a, t in aliases.items()}}
    assert set(FUNCTIONS) >= {"sin", "ln", "erf", "sigmoid", "softplus", "hypot", "pow"}
    # the NumPy backend runs each entry's own kernel, the ad backend the entry itself
    x = np.array([0.25, 3.0])
    for name in ("sin", "erf", "sigmoid", "hypot"):
        args = ", ".join(["x"] * FUNCTIONS[name])
        e = parse(f"{name}({args})")
        want = ad.REGISTRY[name].kernel(*[x] * FUNCTIONS[name])
        np.testing.assert_array_equal(e.evaluate({"x": x}, backend="numpy"), want)
        assert e(x=ad.tensor(x, requires_grad=True)).grad_fn.name == name
