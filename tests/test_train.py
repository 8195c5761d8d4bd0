"""The training library (``autodiffx.train``) and the ``autodiffx train`` command
(``autodiffx.cli.train``): short runs, files, exact resume, clean errors, progress, ``--help``."""

from __future__ import annotations

import argparse
import io
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from _cli_fakes import Terminal, install_fake_tqdm

import autodiffx as ad
from autodiffx import train
from autodiffx.cli import argtypes, build_parser, main
from autodiffx.cli import train as train_command
from autodiffx.data import load_digits

CKPT = "checkpoint.npz"


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["train", *args])
    out, err = capsys.readouterr()
    return code, out, err


def accuracy(stdout: str) -> float:
    m = re.search(r"test accuracy (\d\.\d+) \((\d+)/(\d+)\)", stdout)
    assert m, stdout
    assert int(m[2]) / int(m[3]) == pytest.approx(float(m[1]), abs=1e-4)
    return float(m[1])


def assert_one_line_error(err: str) -> None:
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert re.match(r"autodiffx( train)?: error: ", lines[0]), err


def checkpoint_equal(a: dict, b: dict) -> None:
    """Every array of the two checkpoints is bit-identical (wall-clock times excepted)."""
    assert a["epoch"] == b["epoch"]
    assert a["config"] == b["config"]
    assert a["rng"] == b["rng"]
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert np.array_equal(a["model"][k], b["model"][k]), k
    for k in train.HISTORY_KEYS:
        if k != "seconds":
            assert np.array_equal(a["history"][k], b["history"][k]), k
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert sa.keys() == sb.keys()
    for i in sa:
        assert sa[i].keys() == sb[i].keys()
        for name in sa[i]:
            va, vb = sa[i][name], sb[i][name]
            if isinstance(va, list):
                assert len(va) == len(vb)
                assert all(np.array_equal(x, y) for x, y in zip(va, vb)), name
            else:
                assert np.array_equal(va, vb), name
    assert a["optimizer"]["param_groups"] == b["optimizer"]["param_groups"]


# ----- data -------------------------------------------------------------------------------
def test_load_digits_contract():
    X, y = load_digits()
    assert X.shape == (1797, 64) and X.dtype == np.float64
    assert y.shape == (1797,) and y.dtype == np.int64
    assert X.min() == 0.0 and X.max() == 1.0
    assert np.array_equal(np.unique(X * 16), np.arange(17))
    assert np.array_equal(np.unique(y), np.arange(10))
    X2, _ = load_digits()
    X2[0, 0] = 5.0
    assert load_digits()[0][0, 0] == 0.0  # fresh arrays every call


def test_split_is_stratified_seeded_and_disjoint():
    Xtr, ytr, Xte, yte = train.split_digits(seed=0)
    X, y = load_digits()
    assert len(ytr) + len(yte) == len(y)
    counts = np.bincount(y)
    assert np.array_equal(np.bincount(yte), np.round(0.2 * counts).astype(int))
    both = np.concatenate([Xtr, Xte])
    assert len(np.unique(both, axis=0)) == len(np.unique(X, axis=0))
    again = train.split_digits(seed=0)
    assert np.array_equal(again[2], Xte) and np.array_equal(again[3], yte)
    assert not np.array_equal(train.split_digits(seed=1)[3], yte)


# ----- a short run through the command line --------------------------------------------------
def test_short_run_writes_checkpoint_and_plot(tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, stderr = run_cli(capsys, "--epochs", "3", "--out", str(out))
    assert code == 0, stderr
    assert accuracy(stdout) >= 0.9
    # stderr is not a terminal here: exactly one progress line per epoch, no carriage return
    lines = stderr.strip().splitlines()
    assert [ln.split()[1] for ln in lines] == ["1/3", "2/3", "3/3"]
    assert "\r" not in stderr
    assert all(re.search(r"loss \S+  train acc \d\.\d{4}  test acc \d\.\d{4}", ln) for ln in lines)
    ckpt, png = out / "checkpoint.npz", out / "training.png"
    assert f"checkpoint: {ckpt}" in stdout and f"plot: {png}" in stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in os.listdir(out) if p.startswith(".")]  # no temporary files left
    # plain arrays only: every member loads without pickle
    with np.load(ckpt, allow_pickle=False) as npz:
        for name in npz.files:
            assert npz[name].dtype != object
    ck = train.load_checkpoint(ckpt)
    assert ck["epoch"] == 3
    assert ck["config"] == train.TrainConfig().to_dict()
    assert ck["rng"]["bit_generator"] == "PCG64"
    assert ck["history"]["test_acc"][-1] == pytest.approx(accuracy(stdout), abs=1e-4)
    model = train.make_model()
    model.load_state_dict(ck["model"])
    _, _, Xte, yte = train.split_digits(0)
    assert train.evaluate(model, Xte, yte)[1] == ck["history"]["test_acc"][-1]


def test_defaults_reach_095(tmp_path, capsys):
    code, stdout, stderr = run_cli(capsys, "--out", str(tmp_path), "--no-plot")
    assert code == 0, stderr
    assert accuracy(stdout) >= 0.95
    assert "after 20 epochs" in stdout
    assert not (tmp_path / "training.png").exists()


def _train_on_a_terminal(monkeypatch, tmp_path, *extra: str) -> tuple[int, str, str]:
    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    argv = ["train", "--epochs", "2", "--hidden", "8", "--no-plot", "--out", str(tmp_path)]
    code = main([*argv, *extra])
    return code, out.getvalue(), term.getvalue()


def test_progress_bar_on_a_terminal_with_tqdm(monkeypatch, tmp_path):
    """A tqdm bar per epoch over its minibatches (the last loss after it), removed when the
    epoch's line is written."""
    bars = install_fake_tqdm(monkeypatch)
    code, stdout, stderr = _train_on_a_terminal(monkeypatch, tmp_path)
    assert code == 0 and "test accuracy" in stdout
    assert [b.desc for b in bars.made] == ["epoch 1/2", "epoch 2/2"]
    assert all(b.n == b.total == 45 and b.closed and not b.leave for b in bars.made)
    assert all(re.fullmatch(r"loss \d\.\d{4}", b.postfix) for b in bars.made)
    lines = [seg for seg in stderr.split("\r") if seg.endswith("\n")]
    assert [ln.split()[:2] for ln in lines] == [["epoch", "1/2"], ["epoch", "2/2"]]


def test_progress_without_tqdm_is_one_line_per_epoch(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    code, _, stderr = _train_on_a_terminal(monkeypatch, tmp_path)
    assert code == 0 and "\r" not in stderr
    assert [ln.split()[1] for ln in stderr.splitlines()] == ["1/2", "2/2"]


def test_quiet_prints_only_the_result(monkeypatch, tmp_path):
    bars = install_fake_tqdm(monkeypatch)
    code, stdout, stderr = _train_on_a_terminal(monkeypatch, tmp_path, "--quiet")
    assert code == 0 and stderr == "" and bars.made == []
    assert stdout.startswith("test accuracy") and "checkpoint:" in stdout


def test_the_log_prints_losses_with_four_decimals(tmp_path, capsys):
    """Losses were printed with 4 significant digits: 2.303 in one line, 0.01234 in another."""
    code, _, stderr = run_cli(
        capsys,
        "--epochs",
        "1",
        "--hidden",
        "4",
        "--lr",
        "1e-6",
        "--no-plot",
        "--out",
        str(tmp_path),
    )
    assert code == 0
    assert re.search(r" loss 2\.\d{4}  train acc", stderr), stderr


def test_the_library_neither_parses_arguments_nor_prints(capsys):
    """autodiffx.train is the library the notebooks and the command line share: no argparse,
    no output (the command line reports through fit's callbacks)."""
    import ast

    tree = ast.parse(Path(train.__file__).read_text(encoding="utf-8"))
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not {"argparse", "sys"} & imported
    seen = []
    result = train.fit(
        train.TrainConfig(hidden=(4,), optimizer="lbfgs"),
        epochs=1,
        on_batch=lambda *a: seen.append(("batch", a[:3])),
        on_epoch=lambda e, h: seen.append(("epoch", e, len(h["loss"]))),
    )
    assert capsys.readouterr() == ("", "")
    assert seen == [("batch", (1, 1, 1)), ("epoch", 1, 1)] and result.trained == 1


# ----- the CNN (--model cnn) ------------------------------------------------------------------
def test_cnn_through_the_command_line_learns_and_resumes_exactly(tmp_path, capsys):
    """Two epochs of ad.nn.digits_cnn (the default 20 reach 0.99), then the same run split."""
    whole, split = tmp_path / "whole", tmp_path / "split"
    code, stdout, stderr = run_cli(
        capsys, "--model", "cnn", "--epochs", "2", "--out", str(whole), "--no-plot"
    )
    assert code == 0, stderr
    assert accuracy(stdout) >= 0.8  # about 0.1 untrained
    ck = train.load_checkpoint(whole / "checkpoint.npz")
    assert ck["config"] == train.TrainConfig(model="cnn").to_dict()
    assert ck["model"]["1.weight"].shape == (16, 1, 3, 3)
    assert ck["history"]["loss"][1] < ck["history"]["loss"][0]
    args = ["--no-plot", "--out", str(split)]
    assert run_cli(capsys, "--model", "cnn", "--epochs", "1", *args)[0] == 0
    code, _, stderr = run_cli(capsys, "--epochs", "2", "--resume", str(split / CKPT), *args)
    assert code == 0, stderr
    checkpoint_equal(ck, train.load_checkpoint(split / CKPT))


def test_cnn_refuses_the_mlp_options(tmp_path, capsys):
    code, stdout, stderr = run_cli(
        capsys, "--model", "cnn", "--hidden", "32", "--activation", "relu", "--out", str(tmp_path)
    )
    assert code == 2 and stdout == ""
    assert_one_line_error(stderr)
    assert "--hidden and --activation: only for --model mlp" in stderr
    assert not os.listdir(tmp_path)


# ----- resume ---------------------------------------------------------------------------------
@pytest.mark.parametrize("optimizer", ["adam", "sgd", "lbfgs"])
def test_resume_equals_uninterrupted(tmp_path, capsys, optimizer):
    whole, split = tmp_path / "whole", tmp_path / "split"
    common = ["--optimizer", optimizer, "--no-plot"]
    assert run_cli(capsys, "--epochs", "4", "--out", str(whole), *common)[0] == 0
    assert run_cli(capsys, "--epochs", "2", "--out", str(split), *common)[0] == 0
    assert train.load_checkpoint(split / "checkpoint.npz")["epoch"] == 2
    code, _, stderr = run_cli(
        capsys, "--epochs", "4", "--out", str(split), "--resume", str(split / "checkpoint.npz")
    )
    assert code == 0, stderr
    assert [ln.split()[1] for ln in stderr.strip().splitlines()] == ["3/4", "4/4"]
    a = train.load_checkpoint(whole / "checkpoint.npz")
    b = train.load_checkpoint(split / "checkpoint.npz")
    checkpoint_equal(a, b)


def test_resume_in_python_matches_and_continues_history(tmp_path):
    cfg = train.TrainConfig(hidden=(16,), activation="relu", batch_size=50, seed=3)
    full = train.fit(cfg, epochs=3)
    train.fit(cfg, epochs=1, out=tmp_path, plot=False)
    rest = train.fit(epochs=3, resume=tmp_path / "checkpoint.npz", out=tmp_path, plot=False)
    assert rest.config == cfg and rest.trained == 2 and rest.epoch == 3
    for p, q in zip(full.model.parameters(), rest.model.parameters()):
        assert np.array_equal(p, q)
    assert np.array_equal(full.history["test_acc"], rest.history["test_acc"])


def test_resume_when_already_done(tmp_path, capsys):
    assert run_cli(capsys, "--epochs", "2", "--out", str(tmp_path), "--no-plot")[0] == 0
    ckpt = tmp_path / "checkpoint.npz"
    before = ckpt.read_bytes()
    code, stdout, _ = run_cli(
        capsys, "--epochs", "2", "--resume", str(ckpt), "--out", str(tmp_path)
    )
    assert code == 0
    assert "nothing to train" in stdout and "after 2 epochs" in stdout
    assert ckpt.read_bytes() == before


def test_resume_may_change_lr_and_batch_size(tmp_path, capsys):
    assert run_cli(capsys, "--epochs", "1", "--out", str(tmp_path), "--no-plot")[0] == 0
    ckpt = str(tmp_path / "checkpoint.npz")
    args = ["--epochs", "2", "--resume", ckpt, "--lr", "0.001", "--batch-size", "64", "--no-plot"]
    code, _, stderr = run_cli(capsys, *args, "--out", str(tmp_path))
    assert code == 0, stderr
    ck = train.load_checkpoint(ckpt)
    assert ck["config"]["lr"] == 0.001 and ck["config"]["batch_size"] == 64
    assert ck["optimizer"]["param_groups"][0]["lr"] == 0.001


def test_interrupt_keeps_the_last_epoch(tmp_path, capsys, monkeypatch):
    calls = []
    real = train.train_epoch

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(train, "train_epoch", interrupted)
    code, _, stderr = run_cli(capsys, "--epochs", "5", "--out", str(tmp_path))
    assert code == 130
    assert "interrupted" in stderr and "--resume" in stderr and "Traceback" not in stderr
    assert train.load_checkpoint(tmp_path / "checkpoint.npz")["epoch"] == 1


# ----- errors -----------------------------------------------------------------------------------
@pytest.fixture
def checkpoint(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("ckpt")
    train.fit(train.TrainConfig(), epochs=1, out=out, plot=False)
    return str(out / "checkpoint.npz")


def _corrupt(path: str, how: str) -> None:
    data = bytearray(Path(path).read_bytes())
    if how == "garbage":
        data = bytearray(b"not a checkpoint at all\n")
    elif how == "truncated":
        data = data[: len(data) // 2]
    elif how == "flipped":
        data[len(data) // 2] ^= 0xFF
    elif how == "empty":
        data = bytearray()
    Path(path).write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["garbage", "truncated", "flipped", "empty"])
def test_corrupt_checkpoint_is_a_clean_error(tmp_path, capsys, checkpoint, how):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(Path(checkpoint).read_bytes())
    _corrupt(str(bad), how)
    out = tmp_path / "out"
    code, stdout, stderr = run_cli(capsys, "--resume", str(bad), "--out", str(out))
    assert code == 2
    assert_one_line_error(stderr)
    assert "cannot resume" in stderr and "bad.npz" in stderr
    assert stdout == "" and not out.exists()


def test_checkpoint_of_other_kinds_is_refused(tmp_path, capsys):
    plain = tmp_path / "plain.npz"
    np.savez(plain, a=np.zeros(3))
    other = tmp_path / "other.npz"
    ad.save({"model": {"w": np.zeros(2)}}, other)
    for path in (plain, other, tmp_path / "missing.npz", tmp_path):
        code, _, stderr = run_cli(capsys, "--resume", str(path), "--out", str(tmp_path / "o"))
        assert code == 2, path
        assert_one_line_error(stderr)
    assert not (tmp_path / "o").exists()


def test_checkpoint_with_bad_contents_is_refused(tmp_path, checkpoint):
    ck = ad.load(checkpoint)
    for key, value in [
        ("epoch", 0),
        ("config", {"hidden": [64], "activation": "sine"}),
        ("history", {"loss": np.zeros(1)}),
        ("rng", "PCG64"),
    ]:
        path = tmp_path / f"{key}.npz"
        ad.save({**ck, key: value}, path)
        with pytest.raises(train.TrainError, match="not a valid training checkpoint"):
            train.load_checkpoint(path)
    path = tmp_path / "rng.npz"
    ad.save({**ck, "rng": {"bit_generator": "MT19937", "state": {}}}, path)
    with pytest.raises(train.TrainError, match="not the state of a PCG64 generator"):
        train.fit(epochs=2, resume=path)


def test_checkpoint_of_another_shape_changes_nothing(tmp_path, capsys, checkpoint):
    out = os.path.dirname(checkpoint)
    before = Path(checkpoint).read_bytes()
    files = sorted(os.listdir(out))
    code, stdout, stderr = run_cli(
        capsys, "--resume", checkpoint, "--hidden", "32", "--epochs", "3", "--out", out
    )
    assert code == 2
    assert_one_line_error(stderr)
    assert "size mismatch for 0.weight" in stderr and stdout == ""
    assert Path(checkpoint).read_bytes() == before
    assert sorted(os.listdir(out)) == files
    # the library call underneath: load_state_dict raises and leaves the model as it was
    model = train.make_model((32,))
    snapshot = [p.data.copy() for p in model.parameters()]
    with pytest.raises(RuntimeError, match="size mismatch"):
        model.load_state_dict(train.load_checkpoint(checkpoint)["model"])
    assert all(np.array_equal(p, s) for p, s in zip(model.parameters(), snapshot))


@pytest.mark.parametrize(
    ("option", "value"),
    [("--seed", "5"), ("--activation", "relu"), ("--optimizer", "adamw"), ("--model", "cnn")],
)
def test_resume_with_a_conflicting_setting(tmp_path, capsys, checkpoint, option, value):
    code, _, stderr = run_cli(capsys, "--resume", checkpoint, option, value, "--out", str(tmp_path))
    assert code == 2
    assert_one_line_error(stderr)
    assert f"omit {option}" in stderr


@pytest.mark.parametrize(
    "args",
    [
        ["--epochs", "0"],
        ["--epochs", "two"],
        ["--lr", "-1"],
        ["--lr", "inf"],
        ["--lr", "nan"],
        ["--batch-size", "0"],
        ["--optimizer", "newton"],
        ["--activation", "sine"],
        ["--hidden", "64,0"],
        ["--hidden", ""],
        ["--seed", "-1"],
        ["--model", "resnet"],
        ["--bogus"],
    ],
)
def test_bad_options_exit_with_one_line(capsys, args):
    with pytest.raises(SystemExit) as exc:
        main(["train", *args])
    assert exc.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert_one_line_error(err)


def test_unwritable_output_directory(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, stderr = run_cli(capsys, "--epochs", "1", "--out", str(blocker / "sub"))
    assert code == 2
    assert "is a file, so the directory cannot be created" in stderr
    assert_one_line_error(stderr)


def test_missing_matplotlib_skips_the_plot(tmp_path, capsys, monkeypatch):
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)
    code, stdout, stderr = run_cli(capsys, "--epochs", "1", "--out", str(tmp_path))
    assert code == 0
    assert "matplotlib is not installed" in stderr
    assert "plot:" not in stdout and not (tmp_path / "training.png").exists()
    assert (tmp_path / "checkpoint.npz").exists()


def test_config_validation():
    assert train.TrainConfig(optimizer="lbfgs").lr == 1.0
    for kwargs in (
        {"hidden": ()},
        {"hidden": (8, -1)},
        {"lr": 0.0},
        {"lr": float("nan")},
        {"seed": -1},
        {"batch_size": 1.5},
        {"optimizer": "newton"},
        {"model": "resnet"},
        {"model": ["cnn"]},
        {"model": "cnn", "hidden": (32,)},
        {"model": "cnn", "activation": "relu"},
    ):
        with pytest.raises(ValueError):
            train.TrainConfig(**kwargs)
    with pytest.raises(train.TrainError, match="epochs"):
        train.fit(epochs=0)


# ----- --help on every subcommand ---------------------------------------------------------
def _subcommands() -> list[str]:
    parser = build_parser()
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return sorted(action.choices)


@pytest.mark.parametrize("argv", [[], *([c] for c in _subcommands())])
def test_help(capsys, argv):
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: autodiffx")
    assert "--help" in out


def test_subcommands_include_train_and_demo():
    assert {"train", "demo"} <= set(_subcommands())


def test_python_dash_m_entry_point():
    proc = subprocess.run(
        [sys.executable, "-m", "autodiffx", "train", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "--resume CHECKPOINT" in proc.stdout
    proc = subprocess.run(
        [sys.executable, "-m", "autodiffx", "train", "--resume", "/nonexistent/ck.npz"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2
    assert_one_line_error(proc.stderr)


def test_checkpoint_is_a_zip_of_npy_members(checkpoint):
    with zipfile.ZipFile(checkpoint) as zf:
        assert all(n.endswith(".npy") for n in zf.namelist())


# ----- unreadable checkpoints through the command line, options checked up front --------------
def _leaf_paths(node, prefix=()):
    if isinstance(node, dict) and node:
        for k, v in node.items():
            yield from _leaf_paths(v, (*prefix, k))
    elif isinstance(node, list | tuple) and node:
        for i, v in enumerate(node):
            yield from _leaf_paths(v, (*prefix, i))
    else:
        yield prefix


def _replaced(node, path, value):
    if not path:
        return value
    k, rest = path[0], path[1:]
    if isinstance(node, tuple):
        return tuple(_replaced(v, rest, value) if i == k else v for i, v in enumerate(node))
    copy = list(node) if isinstance(node, list) else dict(node)
    copy[k] = _replaced(node[k], rest, value)
    return copy


@pytest.fixture(scope="module")
def small_checkpoints(tmp_path_factory) -> dict:
    out = {}
    for opt in ("adam", "lbfgs"):
        d = tmp_path_factory.mktemp(opt)
        train.fit(train.TrainConfig(hidden=(3,), optimizer=opt), epochs=1, out=d, plot=False)
        out[opt] = ad.load(d / "checkpoint.npz")
    return out


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_every_entry_of_a_checkpoint_with_a_wrong_value_is_refused(
    tmp_path, small_checkpoints, optimizer
):
    """Each leaf of a checkpoint replaced by a value of a wrong type, dtype or range: a
    TrainError with status 2 before anything is trained (not a TypeError, KeyError,
    IndexError, OverflowError or ZeroDivisionError from the optimizer's first step)."""
    ck = small_checkpoints[optimizer]
    wrong = ["x", -1, float("nan"), np.array(["a"]), np.zeros(2, np.complex128), {"a": {}}]
    leaves = [p for p in _leaf_paths(ck) if p[:2] != ("history", "seconds")]
    assert len(leaves) > 20
    path = tmp_path / "bad.npz"
    for i, leaf in enumerate(leaves):
        bad = _replaced(ck, leaf, wrong[i % len(wrong)])
        ad.save(bad, path)
        with pytest.raises(train.TrainError) as exc:
            train.fit(epochs=1, resume=train.load_checkpoint(path))
        assert exc.value.status == 2 and "cannot resume" in str(exc.value), leaf
        assert "\n" not in str(exc.value)


def test_wrong_optimizer_state_is_refused(tmp_path, small_checkpoints):
    ck = small_checkpoints["adam"]
    for name, opt in [
        ("no state", {**ck["optimizer"], "state": {}}),
        (
            "int moments",
            _replaced(ck["optimizer"], ("state", 0, "exp_avg"), np.zeros((3, 64), int)),
        ),
        ("wrong shape", _replaced(ck["optimizer"], ("state", 1, "exp_avg"), np.zeros(4))),
        ("other betas", _replaced(ck["optimizer"], ("param_groups", 0, "betas"), (0.5, 0.9))),
        ("amsgrad on", _replaced(ck["optimizer"], ("param_groups", 0, "amsgrad"), True)),
    ]:
        with pytest.raises(train.TrainError, match="optimizer state does not fit") as exc:
            train.fit(epochs=2, resume={**ck, "optimizer": opt})
        assert exc.value.status == 2, name


def _unreadable_checkpoints(tmp_path, checkpoint) -> dict:

    good = Path(checkpoint).read_bytes()
    files = {
        "truncated": good[: len(good) // 3],
        "random bytes": np.random.default_rng(0).integers(0, 256, 4000, np.uint8).tobytes(),
        "not an npz": b"epoch,loss\n1,0.5\n",
    }
    paths = {}
    for name, data in files.items():
        paths[name] = tmp_path / f"{name}.npz"
        paths[name].write_bytes(data)
    paths["zip of a text file"] = tmp_path / "text.npz"
    with zipfile.ZipFile(paths["zip of a text file"], "w") as zf:
        zf.writestr("notes.txt", "hello")
    paths["object array"] = tmp_path / "object.npz"
    np.savez(paths["object array"], model=np.array([{"w": 1}], dtype=object))
    deep = tmp_path / "deep.npz"
    header = '{"format": "autodiffx.state", "version": 1, "tree": ' + "[" * 3000 + "]" * 3000 + "}"
    np.savez(deep, __autodiffx__=np.frombuffer(header.encode(), np.uint8))
    paths["deep nesting"] = deep
    ck = ad.load(checkpoint)
    ck["model"]["0.weight"] = ck["model"]["0.weight"].astype(np.int64)
    paths["integer weights"] = tmp_path / "ints.npz"
    ad.save(ck, paths["integer weights"])
    return paths


def test_unreadable_checkpoints_end_in_one_line_and_status_2(tmp_path, checkpoint):
    """As a user runs it: one process per file, no traceback, exit status 2."""
    paths = _unreadable_checkpoints(tmp_path, checkpoint)
    out = tmp_path / "out"
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-m", "autodiffx", "train", "--resume", str(p), "--out", str(out)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, p in paths.items()
    }
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 2, (name, stderr)
        assert_one_line_error(stderr)
        assert "cannot resume" in stderr and stdout == "", name
    assert not out.exists()


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("file", "is a file, expected a directory"),
        ("foreign checkpoint", "checkpoint.npz: exists and is not a checkpoint of autodiffx train"),
        ("saved state", "checkpoint.npz: exists and is not a checkpoint of autodiffx train"),
        ("foreign plot", "training.png: exists and is not a PNG image"),
    ],
)
def test_out_is_checked_before_training(tmp_path, capsys, setup, message):
    out = tmp_path / "out"
    if setup == "file":
        out.write_text("my data")
    else:
        out.mkdir()
        name = "training.png" if setup == "foreign plot" else "checkpoint.npz"
        if setup == "saved state":  # an ad.save file of the user's, not a training run's
            ad.save({"my": "data"}, out / name)
        else:
            (out / name).write_text("my data")
    before = {f: f.read_bytes() for f in ([out] if setup == "file" else out.iterdir())}
    code, stdout, stderr = run_cli(capsys, "--epochs", "1", "--out", str(out))
    assert code == 2
    assert_one_line_error(stderr)
    assert message in stderr and stdout == ""
    assert {f: f.read_bytes() for f in before} == before


def test_a_foreign_plot_is_fine_with_no_plot(tmp_path, capsys):
    (tmp_path / "training.png").write_text("my notes")
    code, _, _ = run_cli(
        capsys, "--epochs", "1", "--hidden", "4", "--out", str(tmp_path), "--no-plot"
    )
    assert code == 0
    assert (tmp_path / "training.png").read_text() == "my notes"


def test_a_network_larger_than_memory_is_refused(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(argtypes, "available_memory", lambda: 10**9)
    out = tmp_path / "out"
    code, _, stderr = run_cli(capsys, "--hidden", "100000", "--out", str(out))
    assert code == 2
    assert_one_line_error(stderr)
    assert "a 64-100000-10 network with adam needs about 3.3 GB of memory" in stderr
    assert "the machine has 1.0 GB available" in stderr and not out.exists()
    assert (
        train_command.memory_estimate(train.TrainConfig(hidden=(100000,)))
        > 10**9
        > (train_command.memory_estimate(train.TrainConfig(hidden=(10000,))))
    )
    monkeypatch.undo()
    proc = subprocess.run(
        [sys.executable, "-m", "autodiffx", "train", "--hidden", "100000000", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2
    assert_one_line_error(proc.stderr)
    assert "needs about 3.2 TB of memory" in proc.stderr and not out.exists()
