"""Evaluation traces: the Griewank–Walther example exactly as printed, and traces of any program."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import unicodedata

import numpy as np
import pytest

import autodiffx as ad
from autodiffx.expr import parse
from autodiffx.wengert import (
    AdjointTable,
    EvaluationTrace,
    PrimalTable,
    TangentTable,
    evaluation_trace,
)


def textbook(x1, x2):
    return ad.log(x1) + x1 * x2 - ad.sin(x2)


@pytest.fixture
def tr() -> EvaluationTrace:
    return evaluation_trace(textbook, x1=2.0, x2=5.0)


def nfc(obj):
    """Unicode NFC form (``ȳ`` as one character) of a string or of nested tuples/lists of them."""
    if isinstance(obj, str):
        return unicodedata.normalize("NFC", obj)
    return type(obj)(nfc(o) for o in obj)


def _cells(table) -> list[tuple[str, str, str]]:
    """(name, expression, value) of every printed row, split at the ' = ' columns."""
    out = []
    for line in str(table).splitlines()[1:]:
        if set(line.strip()) <= {"─"}:
            continue
        name, expr, value = (c.strip() for c in re.split(r"\s=\s", line.strip(), maxsplit=2))
        out.append((name, expr, value))
    return nfc(out)


def test_textbook_primal_as_printed(tr: EvaluationTrace) -> None:
    table = tr.primal()
    assert isinstance(table, PrimalTable)
    assert str(table).splitlines()[0] == "Forward primal trace"
    assert _cells(table) == nfc(
        [
            ("v₋₁", "x1", "2"),
            ("v₀", "x2", "5"),
            ("v₁", "ln v₋₁", "0.693"),
            ("v₂", "v₋₁ × v₀", "10"),
            ("v₃", "v₁ + v₂", "10.693"),
            ("v₄", "sin v₀", "-0.959"),
            ("v₅", "v₃ − v₄", "11.652"),
            ("y", "v₅", "11.652"),
        ]
    )
    assert table.y == pytest.approx(np.log(2) + 10 - np.sin(5))
    assert table[1] == pytest.approx(np.log(2))
    assert sorted(table.values) == [-1, 0, 1, 2, 3, 4, 5]


def test_textbook_tangent_as_printed(tr: EvaluationTrace) -> None:
    table = tr.tangent(seed={"x1": 1.0})
    assert isinstance(table, TangentTable)
    assert str(table).splitlines()[0] == nfc("Forward tangent trace (ẋ1 = 1, ẋ2 = 0)")
    assert _cells(table) == nfc(
        [
            ("v̇₋₁", "ẋ1", "1"),
            ("v̇₀", "ẋ2", "0"),
            ("v̇₁", "v̇₋₁ / v₋₁", "0.5"),
            ("v̇₂", "v̇₋₁ × v₀ + v̇₀ × v₋₁", "5"),
            ("v̇₃", "v̇₁ + v̇₂", "5.5"),
            ("v̇₄", "v̇₀ × cos v₀", "0"),
            ("v̇₅", "v̇₃ − v̇₄", "5.5"),
            ("ẏ", "v̇₅", "5.5"),
        ]
    )
    assert table.y_dot == pytest.approx(5.5)
    # the default seed is the first input; a name seeds its unit direction
    assert tr.tangent().y_dot == pytest.approx(5.5)
    second = tr.tangent("x2")
    assert _cells(second)[-1] == nfc(("ẏ", "v̇₅", "1.716"))
    assert second.y_dot == pytest.approx(2 - np.cos(5))


def test_textbook_adjoint_as_printed(tr: EvaluationTrace) -> None:
    table = tr.adjoint()
    assert isinstance(table, AdjointTable)
    assert str(table).splitlines()[0] == nfc("Reverse adjoint trace (ȳ = 1)")
    assert _cells(table) == nfc(
        [
            ("v̄₅", "ȳ", "1"),
            ("v̄₄", "−v̄₅", "-1"),
            ("v̄₃", "v̄₅", "1"),
            ("v̄₂", "v̄₃", "1"),
            ("v̄₁", "v̄₃", "1"),
            ("v̄₀", "v̄₂ × v₋₁ + v̄₄ × cos v₀", "1.716"),
            ("v̄₋₁", "v̄₁ / v₋₁ + v̄₂ × v₀", "5.5"),
            ("x̄1", "v̄₋₁", "5.5"),
            ("x̄2", "v̄₀", "1.716"),
        ]
    )
    assert table.grad["x1"] == pytest.approx(5.5)
    assert table.grad["x2"] == pytest.approx(2 - np.cos(5))
    assert tr.adjoint(seed=2.0).grad["x1"] == pytest.approx(11.0)


def test_rows_steps_and_text_forms(tr: EvaluationTrace) -> None:
    rows = tr.primal().rows
    assert rows[2].index == 1 and rows[2].name == "v₁" and rows[2].expr == "ln v₋₁"
    assert rows[-1].index is None
    steps = tr.steps
    assert [s.op for s in steps] == ["input", "input", "log", "multiply", "add", "sin", "subtract"]
    assert steps[3].operands == (-1, 0)
    assert len(tr) == 7
    assert repr(tr) == "<EvaluationTrace of textbook: 2 inputs, 5 steps, y = 11.652>"
    text = str(tr)
    assert "Forward primal trace" in text and "Reverse adjoint trace" in text
    ascii_text = tr.adjoint().to_text(ascii=True)
    assert ascii_text.isascii()
    assert "vbar[0]  = vbar[2] * v[-1] + vbar[4] * cos v[0]  =  1.716" in ascii_text
    assert repr(tr.primal()) == str(tr.primal())
    table = tr.primal()
    table.digits = 6
    assert "11.652071" in str(table)


def test_html(tr: EvaluationTrace) -> None:
    html = tr.primal()._repr_html_()
    assert html.startswith("<table") and html.endswith("</table>")
    assert "v<sub>−1</sub>" in html and "Forward primal trace" in html
    assert html.count("<tr") == 8
    both = tr._repr_html_()
    assert both.count("<table") == 3 and "display:flex" in both
    assert "x&#772;1" in tr.adjoint()._repr_html_() or "x\u03041" in tr.adjoint()._repr_html_()


def test_dot(tr: EvaluationTrace) -> None:
    dot = tr.to_dot()
    assert dot.startswith("digraph evaluation_trace {") and dot.endswith("}")
    assert dot.count("->") == 8
    assert '"v5" [shape=ellipse, peripheries=2, label="v₅ = v₃ − v₄\\n11.652"];' in dot
    assert dot.count('"') % 2 == 0
    if shutil.which("dot"):  # Graphviz, where installed, accepts it
        proc = subprocess.run(["dot", "-Tsvg"], input=dot.encode(), capture_output=True)
        assert proc.returncode == 0, proc.stderr
    assert "\\n" not in tr.to_dot(values=False).split("label=")[1].split("]")[0]


def test_arrays_show_a_summary_and_match_ad() -> None:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((6, 6))
    x0 = rng.standard_normal(6)
    trace = evaluation_trace(lambda x: ad.sum(ad.tanh(a @ x)), x=x0)
    primal = str(trace.primal())
    assert "c[6×6] @ v₀" in primal and "tanh v₁" in primal and "sum v₂" in primal
    assert "[6] min " in primal and ", mean " in primal
    exact = a.T @ (1 - np.tanh(a @ x0) ** 2)
    np.testing.assert_allclose(trace.adjoint().grad["x"], exact, rtol=1e-12)
    v = rng.standard_normal(6)
    np.testing.assert_allclose(trace.tangent({"x": v}).y_dot, exact @ v, rtol=1e-12)
    assert nfc("v̄₀ = c[6×6]ᵀ @ v̄₁") in str(trace.adjoint())
    assert nfc("v̄₂ = broadcast v̄₃") in str(trace.adjoint())
    small = evaluation_trace(lambda x: x * x, x=np.array([1.0, 2.0]))
    assert _cells(small.primal())[1] == ("v₁", "v₀ × v₀", "[1, 4]")


def test_constants_inline_pruning_and_order() -> None:
    def f(x):
        unused = ad.cos(x)  # noqa: F841  (dead code is not part of y's trace)
        c = ad.exp(ad.tensor(1.0))  # a constant: no step
        return (x * 2 + 1) / c - x**3

    trace = evaluation_trace(f, x=0.5)
    assert [s.text for s in trace.steps] == [
        "x",
        "v₀ × 2",
        "v₁ + 1",
        "v₂ / 2.7183",
        "v₀ ^ 3",
        "v₃ − v₄",
    ]
    assert nfc("v̇₄ = v̇₀ × 3 v₀^2") in str(trace.tangent())
    assert trace.adjoint().grad["x"] == pytest.approx(2 / np.e - 3 * 0.25)


def test_agrees_with_autograd_on_a_mixed_program() -> None:
    def f(x, w):
        z = x * 2
        z += w  # in place, after z was recorded
        a, b = ad.split(z, [1])
        m = ad.mean(ad.where(x > 0, x, 0.0)) + np.sin(a).sum() + b[0] ** 3
        return m / w[0] - (-x[0])

    x0, w0 = np.array([1.0, -2.0]), np.array([3.0, 4.0])
    trace = evaluation_trace(f, x0, w0)
    assert trace.names == ("x", "w")
    x = ad.tensor(x0, requires_grad=True)
    w = ad.tensor(w0, requires_grad=True)
    gx, gw = ad.autograd.grad(f(x, w), [x, w])
    grads = trace.adjoint().grad
    np.testing.assert_allclose(grads["x"], gx.data, rtol=1e-12)
    np.testing.assert_allclose(grads["w"], gw.data, rtol=1e-12)
    text = str(trace.primal())
    assert "split(v₂, indices_or_sections=(1,))[0]" in text and "v₋₁ > 0" in text
    assert "where(v₅, v₋₁, 0)" in text
    tangent = str(trace.tangent())
    assert re.search(r"v̇₅ += —", tangent)  # the comparison has no derivative
    assert nfc("where(v₅, v̄₆, 0)") in str(trace.adjoint())
    with ad.forward.dual_level():
        out = f(ad.forward.make_dual(ad.tensor(x0), ad.tensor([1.0, 0.5])), ad.tensor(w0))
        expected = ad.forward.unpack_dual(out).tangent.item()
    got = trace.tangent({"x": [1.0, 0.5]}).y_dot
    assert got == pytest.approx(expected, rel=1e-12)


def test_inputs_by_position_expression_and_dtypes() -> None:
    trace = evaluation_trace(lambda a, b: a * b, 3, 4)  # integers become float64
    assert trace.names == ("a", "b")
    assert trace.adjoint().grad == {"a": 4.0, "b": 3.0}
    e = parse("ln(x1) + x1*x2 - sin(x2)")
    t2 = evaluation_trace(e, x1=2, x2=5)
    assert _cells(t2.adjoint())[-1] == nfc(("x̄2", "v̄₀", "1.716"))
    t3 = evaluation_trace(e, 2, 5)  # positional: in the order of the expression's variables
    assert t3.names == ("x1", "x2") and t3.adjoint().grad["x1"] == pytest.approx(5.5)
    t32 = evaluation_trace(lambda x: x * 2.0, x=np.float32(1.5))
    assert t32.primal().y.dtype == np.float32
    assert evaluation_trace(np.sin, 0.5).names == ("x",)  # the ufunc's parameter
    ident = evaluation_trace(lambda x: x, x=2.0)
    assert len(ident.steps) == 1 and ident.adjoint().grad["x"] == 1.0


def test_input_named_y_renames_the_output() -> None:
    trace = evaluation_trace(lambda x, y: x * y, x=1.0, y=2.0)
    assert _cells(trace.primal())[-1] == ("f", "v₁", "2")
    assert str(trace.adjoint()).splitlines()[0] == nfc("Reverse adjoint trace (f̄ = 1)")


def test_profile_hook_restored_and_grad_mode_forced() -> None:
    events = []

    def profiler(frame, event, arg):
        events.append(event)

    sys.setprofile(profiler)
    try:
        evaluation_trace(textbook, x1=2.0, x2=5.0)
        restored = sys.getprofile()
    finally:
        sys.setprofile(None)
    assert restored is profiler
    with pytest.raises(ZeroDivisionError):
        evaluation_trace(lambda x: 1 / 0, x=1.0)
    assert sys.getprofile() is None
    with ad.no_grad():
        inside = evaluation_trace(textbook, x1=2.0, x2=5.0)
    assert inside.adjoint().grad["x1"] == pytest.approx(5.5)


def test_errors() -> None:
    with pytest.raises(TypeError, match="no inputs given"):
        evaluation_trace(textbook)
    with pytest.raises(TypeError, match="either by position or by name"):
        evaluation_trace(textbook, 1.0, x2=2.0)
    with pytest.raises(TypeError, match="trace one output at a time"):
        evaluation_trace(lambda x: (x, x), x=1.0)
    with pytest.raises(TypeError, match="got float"):
        evaluation_trace(lambda x: 3.0, x=1.0)
    with pytest.raises(ValueError, match="does not depend on its inputs"):
        evaluation_trace(lambda x: ad.tensor(2.0) * 3, x=1.0)
    with pytest.raises(TypeError, match="not numeric"):
        evaluation_trace(lambda x: x, x="a")
    trace = evaluation_trace(textbook, x1=2.0, x2=5.0)
    with pytest.raises(ValueError, match="not inputs of the trace"):
        trace.tangent({"z": 1.0})
    with pytest.raises(ValueError, match="does not broadcast"):
        trace.tangent({"x1": [1.0, 2.0]})
    with pytest.raises(ValueError, match="does not broadcast"):
        trace.adjoint(seed=[1.0, 2.0])


def test_matrix_trace_is_still_numpys() -> None:
    assert ad.trace(ad.tensor(np.eye(3))).item() == 3.0


def test_whole_numbers_keep_their_trailing_zeros_at_zero_digits():
    tr = evaluation_trace(lambda a, b, c, d: a * b, a=10.0, b=100.0, c=20.4, d=1.5e6)
    table = tr.primal()

    def shown(digits):
        table.digits = digits
        return [line.rsplit("=", 1)[1].strip() for line in table.to_text().splitlines()[1:5]]

    assert shown(0) == ["10", "100", "20", "2e6"]
    assert shown(3)[0] == "10"


def test_seeds_that_do_not_broadcast_name_the_seed_and_the_shape():
    tr = ad.evaluation_trace(lambda x, w: ad.sum(x * w), x=np.ones(2), w=np.ones(2))
    with pytest.raises(
        ValueError,
        match=r"tangent: the seed of 'w' has shape \(3,\), which does "
        r"not broadcast to the input's shape \(2,\)",
    ):
        tr.tangent({"w": np.ones(3)})
    with pytest.raises(
        ValueError,
        match=r"adjoint: the seed has shape \(2,\), which does not "
        r"broadcast to y's shape \(\)",
    ):
        tr.adjoint(np.ones(2))
    np.testing.assert_array_equal(tr.tangent({"w": 2.0}).y_dot, 4.0)


# ----- the notation comes from the registry entry ---------------------------------------------
def test_a_new_entry_shows_its_partials_and_notation_in_every_table():
    from autodiffx._registry import defprim

    cube = defprim(
        "cube",
        lambda x: x**3,
        derivs=(lambda x: 3 * x * x,),
        notation="cube",
        partials=("3 {x}²",),
        register=False,
    )
    both = defprim(
        "both",
        np.add,
        linear=(lambda g, a, b: g, lambda g, a, b: g),
        notation="⊕",
        partials=("1", "-{(a)} / {#2.0}"),
        register=False,
    )
    tr = evaluation_trace(lambda x, y: both(cube(x), y), x=2.0, y=1.0)
    assert [s.text for s in tr.steps] == ["x", "y", "cube v₋₁", "v₁ ⊕ v₀"]
    tangent = {r.index: r.expr for r in tr.tangent().rows}
    assert tangent[1] == "v̇₋₁ × 3 v₋₁²"
    assert tangent[2] == "v̇₁ − v̇₀ × v₁ / 2"
    adjoint = {r.index: r.expr for r in tr.adjoint().rows}
    assert adjoint[-1] == "v̄₁ × 3 v₋₁²"
    assert adjoint[0] == "−v̄₂ × v₁ / 2"


def test_every_registered_partials_template_is_well_formed():
    placeholder = re.compile(r"\{([^{}]*)\}")
    bad = []
    for name, p in ad.REGISTRY.items():
        for k, spec in enumerate(p.partials or ()):
            specs = (
                [spec(*[None] * len(p.partials)), spec(*[2.0] * len(p.partials))]
                if callable(spec)
                else [spec]
            )
            for text in specs:
                if text is None:
                    continue
                for key in placeholder.findall(text):
                    arg = key.strip("()")
                    known = key in ("out", "d") or key.startswith("#")
                    index = {"x": 0, "a": 0, "b": 1, "c": 2}.get(arg)
                    if not known and (index is None or index >= len(p.partials)):
                        bad.append(f"{name} argument {k}: {{{key}}} in {text!r}")
    assert not bad, "partials templates with unknown placeholders: " + "; ".join(bad)
