"""The ``trace``, ``check``, ``bench`` and ``demo`` subcommands (in process, plus one real process
each), and what every subcommand shares: plain-text ``--help``, progress and BLAS reporting."""

from __future__ import annotations

import argparse
import io
import os
import re
import subprocess
import sys
import unicodedata

import pytest
from _cli_fakes import FakeThreadpoolctl, Terminal, install_fake_tqdm

from autodiffx.cli import argtypes, bench, build_parser, main
from autodiffx.cli import trace as trace_command
from autodiffx.cli.bench import bench_gradients

TEXTBOOK = "ln(x1) + x1*x2 - sin(x2)"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as e:
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, unicodedata.normalize("NFC", out), err


def test_trace_prints_the_three_tables(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "trace", TEXTBOOK, "--at", "x1=2,x2=5")
    assert code == 0
    assert f"f(x1, x2) = {TEXTBOOK}" in out
    for text in ("Forward primal trace", "Forward tangent trace", "Reverse adjoint trace"):
        assert text in out
    values = re.findall(r"=\s+(-?[\d.]+)$", out, flags=re.MULTILINE)
    for v in ("11.652", "0.693", "10", "10.693", "-0.959", "5.5", "1.716"):
        assert v in values
    assert unicodedata.normalize("NFC", "ẏ   = v̇₅") in out


def test_trace_options(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    dot = tmp_path / "g.dot"
    code, out, _ = run(
        capsys,
        "trace",
        TEXTBOOK,
        "--at",
        "x1=2",
        "--at",
        "x2=5",
        "--seed",
        "x2=1",
        "--ascii",
        "--digits",
        "5",
        "--dot",
        str(dot),
    )
    assert code == 0
    assert "ydot     = vdot[5]" in out and "= 1.71634" in out
    assert "written to" in out
    assert dot.read_text(encoding="utf-8").startswith("digraph evaluation_trace {")
    code, out, _ = run(capsys, "trace", "a*b", "--at", "a=pi/2,b=atan2(1, 1)", "--ybar", "2")
    assert code == 0 and "(ȳ = 2)" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["trace", "x.real", "--at", "x=1"], "bad expression: attribute access"),
        (["trace", "__import__('os')", "--at", "x=1"], "names starting with '_'"),
        (["trace", "x**2", "--at", "y=1"], "no value for x: add --at x=..."),
        (["trace", "x**2", "--at", "x=1,y=2"], "y not in 'x**2'"),
        (["trace", "2 + 3", "--at", "x=1"], "has no variables"),
        (["trace", "x", "--at", "x=1", "--at", "x=2"], "gives x twice"),
        (["trace", "x", "--at", "x="], "expected name=value"),
        (["trace", "x", "--at", "x=foo"], "a value cannot use variables (foo)"),
        (["trace", "x", "--at", "_x=1"], "is not a variable name"),
        (["trace", "x", "--at", "x=1", "--seed", "y=1"], "--seed y: not an input"),
        (["check", "sin(x", "--at", "x=1"], "missing ')' to close sin("),
        (["check", "x", "--at", "x=1", "--h", "-1"], "positive"),
        (["bench", "--sizes", "0"], "sizes must be integers"),
        (["bench", "--sizes", "a,b"], "expected sizes like"),
        (["bench", "--repeat", "0"], "an integer in 1..1000"),
        (["bench", "--repeat", "1000000000"], "an integer in 1..1000"),
        (["bench", "--budget", "nan"], "expected a number in [0, 60], got 'nan'"),
        (["bench", "--budget", "inf"], "expected a number in [0, 60], got 'inf'"),
        (["bench", "--budget", "-1"], "expected a number in [0, 60]"),
        (["bench", "--budget", "1e9"], "expected a number in [0, 60]"),
        (["bench", "--seed", "-1"], "expected a non-negative integer, got '-1'"),
        (["trace", "x", "--at", "x=1", "--digits", "-1"], "an integer in 1..17, got '-1'"),
        (["trace", "x", "--at", "x=1", "--digits", "0"], "an integer in 1..17"),
        (["trace", "x", "--at", "x=1", "--ybar", "nan"], "expected a finite number"),
        (["trace", "x", "--at", "x=exp(1000)"], "value of x: exp(1000) is inf, not finite"),
        (["check", "x", "--at", "x=0/0"], "value of x: 0/0 is nan, not finite"),
        (["trace", "x"], "required: --at"),
    ],
)
def test_usage_errors_exit_2(capsys, argv: list[str], message: str) -> None:
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert message in err


def test_check_reports_every_scheme(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "check", TEXTBOOK, "--at", "x1=2,x2=5")
    assert code == 0
    for method in ("AD reverse mode", "AD forward mode", "FD forward", "FD backward"):
        assert method in out
    assert "FD central" in out and "FD complex step" in out
    assert "df/dx1" in out and "1.716337814536774" in out and "(reference)" in out
    assert "2.98e-08, 7.45e-08" in out  # forward-difference steps, scaled by max(1, |x|)
    assert "verdict: OK" in out


def test_check_flags_a_kink_and_non_finite_points(capsys) -> None:
    code, out, _ = run(capsys, "check", "abs(x)", "--at", "x=1e-7")
    assert code == 1 and "verdict: KINK" in out and "(left -0.950458, right 1)" in out
    code, out, _ = run(capsys, "check", "sqrt(x)", "--at", "x=-1")
    assert code == 1 and "not finite" in out
    code, out, _ = run(capsys, "check", "sqrt(x)", "--at", "x=0")  # inf - inf: no warning
    assert code == 1 and "not finite" in out
    code, out, _ = run(capsys, "check", "sigmoid(x)", "--at", "x=0.5", "--h", "1e-4")
    assert code == 0 and "no complex evaluation" in out and "1.00e-04" in out


def test_bench_writes_tables_and_pngs(capsys, tmp_path) -> None:
    pytest.importorskip("matplotlib")
    out_dir = tmp_path / "out"
    code, out, _ = run(
        capsys, "bench", "--out", str(out_dir), "--sizes", "4,8", "--repeat", "1", "--budget", "0"
    )
    assert code == 0
    assert "reverse mode" in out and "forward mode (n JVPs)" in out
    assert "central differences (2n)" in out and "Step-size study" in out
    for name in ("bench_time.png", "bench_error.png", "step_study.png"):
        data = (out_dir / name).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000


def test_bench_gradients_rows() -> None:
    rows = bench_gradients([5], repeat=1, budget=0.0)
    assert [r["evals"] for r in rows] == [1, 5, 10]
    assert all(r["seconds"] > 0 for r in rows)
    assert rows[0]["error"] < 1e-14 and rows[2]["error"] < 1e-6


def test_help_of_each_subcommand(capsys) -> None:
    for sub, text in (("trace", "Wengert"), ("check", "complex-step"), ("bench", "W4")):
        code, out, _ = run(capsys, sub, "--help")
        assert code == 0 and text in " ".join(out.split())


def test_registers_on_a_custom_parser_class() -> None:
    class OneLine(argparse.ArgumentParser):
        def error(self, message: str):  # type: ignore[override]
            raise RuntimeError(message)

    parser = OneLine(prog="autodiffx")
    trace_command.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["trace", "x y", "--at", "x=1"])
    with pytest.raises(RuntimeError, match="a missing operator"):
        args.func(args)


def test_as_a_process() -> None:
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    ok = subprocess.run(
        [sys.executable, "-m", "autodiffx", "trace", TEXTBOOK, "--at", "x1=2,x2=5"],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env,
        timeout=60,
    )
    assert ok.returncode == 0 and "11.652" in ok.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "autodiffx", "check", "x.__class__", "--at", "x=1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert bad.returncode == 2 and "attribute access" in bad.stderr


@pytest.mark.parametrize(
    ("expr", "at", "where"),
    [
        ("abs(x)", "x=0", "x (left -1, right 1)"),
        ("maximum(x, 0)", "x=0", "x (left 0, right 1)"),
        ("abs(x) + y**2", "x=0,y=1", "x (left -1, right 1)"),
        ("maximum(x, y)", "x=1,y=1", "x (left 0, right 1), y (left 0, right 1)"),
    ],
)
def test_check_reports_a_kink_where_one_sided_differences_disagree(capsys, expr, at, where):
    """abs at 0 said "verdict: OK": AD (0) and central differences (0) agree there, while the
    forward and backward differences are +1 and -1."""
    code, out, _ = run(capsys, "check", expr, "--at", at)
    assert code == 1
    assert "verdict: OK" not in out
    assert f"verdict: KINK: the one-sided differences disagree in {where}" in out


def test_check_smooth_points_stay_ok(capsys) -> None:
    for expr, at in [
        ("abs(x)", "x=0.5"),
        ("x**2 + 1e8", "x=0"),
        ("exp(x)/sqrt(sin(x)**3 + cos(x)**3)", "x=1.5"),
        ("maximum(x, y)", "x=1,y=2"),
        ("1e8 * sin(x)", "x=1"),
    ]:
        code, out, _ = run(capsys, "check", expr, "--at", at)
        assert code == 0 and "verdict: OK" in out, (expr, out)


def test_trace_dot_is_checked_before_writing(capsys, tmp_path) -> None:
    argv = ["trace", "x*y", "--at", "x=1,y=2", "--dot"]
    code, out, err = run(capsys, *argv, str(tmp_path / "missing" / "g.dot"))
    assert code == 2 and "does not exist" in err and out == ""
    code, _, err = run(capsys, *argv, str(tmp_path))
    assert code == 2 and "is a directory" in err
    notes = tmp_path / "notes.dot"
    notes.write_text("my notes")
    code, _, err = run(capsys, *argv, str(notes))
    assert code == 2 and "refusing to overwrite it" in err
    assert notes.read_text() == "my notes"
    dot = tmp_path / "g.dot"
    for _ in range(2):  # its own earlier output is replaced
        assert run(capsys, *argv, str(dot))[0] == 0
    assert dot.read_text().startswith("digraph evaluation_trace {")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.dot", "notes.dot"]


def test_bench_out_is_checked_before_running(capsys, tmp_path) -> None:
    argv = ["bench", "--sizes", "3", "--repeat", "1", "--budget", "0", "--out"]
    blocker = tmp_path / "file"
    blocker.write_text("my data")
    code, out, err = run(capsys, *argv, str(blocker))
    assert code == 2 and "is a file, expected a directory" in err and out == ""
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "bench_error.png").write_text("my data")
    code, out, err = run(capsys, *argv, str(tmp_path / "d"))
    assert code == 2 and "bench_error.png: exists and is not a PNG image" in err and out == ""
    assert blocker.read_text() == (tmp_path / "d" / "bench_error.png").read_text() == "my data"


def test_sizes_beyond_memory_are_refused(capsys, monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(argtypes, "available_memory", lambda: 2 * 10**9)
    code, out, err = run(capsys, "bench", "--sizes", "10,20000", "--out", str(tmp_path / "o"))
    assert code == 2 and out == ""
    assert "--sizes 20000 needs about 6.5 GB of memory; the machine has 2.0 GB available" in err
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--n", "20000"])
    assert exc.value.code == 2
    assert "--n 20000 needs about 9.7 GB of memory" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_timing_stops_when_the_budget_is_spent(monkeypatch) -> None:
    """--repeat 1000000000 ran forever: every round ran at least one call, whatever the
    budget. A fake clock (1 s passes at every reading) counts the readings, no real time is
    measured: within a 10 s budget each method is timed in a few rounds, not 1000."""
    readings = []

    def clock():
        readings.append(1)
        return float(len(readings))

    monkeypatch.setattr(bench.time, "perf_counter", clock)
    rows = bench.bench_gradients([3], repeat=1000, budget=10.0)
    assert [r["evals"] for r in rows] == [1, 3, 6]
    assert all(r["seconds"] == 1.0 and r["error"] < 1e-6 for r in rows)
    assert len(readings) < 3 * 20


def _user(*argv: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "autodiffx", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )


def test_bad_options_as_a_user_runs_them(tmp_path) -> None:
    """One line on stderr, no traceback, status 2, and nothing written."""
    existing = tmp_path / "results"
    existing.write_text("my data")
    cases = {
        ("trace", "x*y", "--at", "x=1,y=2", "--digits", "-1"): "--digits",
        ("trace", "x*y", "--at", "x=1,y=2", "--dot", str(tmp_path / "no" / "g.dot")): "exist",
        ("bench", "--budget", "nan"): "--budget",
        ("bench", "--budget", "inf"): "--budget",
        ("bench", "--budget", "1e9"): "--budget",
        ("bench", "--repeat", "1000000000"): "--repeat",
        ("bench", "--seed", "-1"): "--seed",
        ("bench", "--out", str(existing)): "is a file",
        ("bench", "--sizes", "100000", "--out", str(tmp_path / "o")): "of memory",
        ("demo", "--n", "100000"): "of memory",
    }
    procs = {argv: _user(*argv) for argv in cases}
    for argv, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 2, (argv, err)
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, (argv, err)
        assert cases[argv] in err and out == "", argv
    assert existing.read_text() == "my data"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]


# ----- what every subcommand shares ---------------------------------------------------------
def _subcommands() -> list[str]:
    (action,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return sorted(action.choices)


@pytest.mark.parametrize("argv", [[], *([c] for c in _subcommands())])
def test_help_is_plain_text(capsys, argv: list[str]) -> None:
    """No reStructuredText in any --help: the top-level description was the module docstring,
    with its double backticks."""
    code, out, _ = run(capsys, *argv, "--help")
    assert code == 0 and out.startswith("usage: autodiffx")
    assert "`" not in out
    assert not re.search(r":[a-z]+:|::|\*\*[A-Za-z]|\.\. ", out), out


def _bench_on_a_terminal(monkeypatch, tmp_path, *extra: str) -> tuple[int, str, str]:
    term, out = Terminal(), io.StringIO()
    monkeypatch.setattr(sys, "stderr", term)
    monkeypatch.setattr(sys, "stdout", out)
    argv = ["bench", "--sizes", "3,5", "--repeat", "1", "--budget", "0", "--out", str(tmp_path)]
    try:
        code = main([*argv, *extra])
    except SystemExit as e:
        code = int(e.code or 0)
    return code, out.getvalue(), term.getvalue()


def test_bench_pins_blas_and_says_so(monkeypatch, tmp_path) -> None:
    fake = FakeThreadpoolctl()
    monkeypatch.setitem(sys.modules, "threadpoolctl", fake)
    bars = install_fake_tqdm(monkeypatch)
    code, out, err = _bench_on_a_terminal(monkeypatch, tmp_path)
    assert code == 0
    assert fake.limits == [(1, "blas")] and fake.active == []
    assert out.splitlines()[0] == "BLAS: openblas 0.3.99 (libscipy_openblas64_.so): 1 thread"
    (bar,) = bars.made
    assert (bar.desc, bar.n, bar.total, bar.closed) == ("W4", 6, 6, True)
    assert bar.postfix == "n=5 central differences (2n)" and "\r" in err
    code, out, _ = _bench_on_a_terminal(monkeypatch, tmp_path, "--blas-threads", "3", "--quiet")
    assert code == 0 and fake.limits[-1] == (3, "blas") and len(bars.made) == 1
    assert out.startswith("BLAS: openblas 0.3.99 (libscipy_openblas64_.so): 3 threads\n")


def test_bench_without_threadpoolctl(monkeypatch, tmp_path) -> None:
    """Not pinned, and said so; --blas-threads is refused rather than ignored."""
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)
    monkeypatch.setitem(sys.modules, "tqdm", None)
    code, out, err = _bench_on_a_terminal(monkeypatch, tmp_path)
    assert code == 0 and err == ""
    first = out.splitlines()[0]
    assert first.startswith("BLAS: ") and first.endswith(
        "(NumPy build), threads not pinned (pip install threadpoolctl to pin them)"
    )
    code, out, err = _bench_on_a_terminal(monkeypatch, tmp_path, "--blas-threads", "2")
    assert code == 2 and out == ""
    assert "--blas-threads needs threadpoolctl: pip install threadpoolctl" in err
