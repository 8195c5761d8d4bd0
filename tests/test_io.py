"""``save``/``load``: round trips, no pickle in either direction, atomic writes."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

import autodiffx as ad
import autodiffx.io as adio
import autodiffx.nn as nn
import autodiffx.optim as optim


def _same(a, b):
    """Structural equality with exact array dtypes/values and Python types."""
    assert type(a) is type(b), (type(a), type(b))
    if isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            _same(a[k], b[k])
    elif isinstance(a, list | tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _same(x, y)
    elif isinstance(a, np.ndarray | np.generic):
        assert a.dtype == b.dtype
        assert a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    elif isinstance(a, float) and np.isnan(a):
        assert np.isnan(b)
    else:
        assert a == b


def test_round_trip_of_nested_structure(tmp_path):
    state = {
        "f64": np.arange(6.0).reshape(2, 3),
        "f32": np.ones(3, dtype=np.float32),
        "c128": np.array([1 + 2j, -3j]),
        "i8": np.array([1, -2], dtype=np.int8),
        "bool": np.array([True, False]),
        "str_arr": np.array(["ab", "c"]),
        "zero_d": np.array(2.5),
        "empty": np.zeros((0, 4)),
        "scalar_np": np.float32(1.5),
        "int": 7,
        "big_int": 2**80,
        "float": 0.1,
        "nan": float("nan"),
        "inf": -float("inf"),
        "complex": 1 - 2j,
        "bool_py": True,
        "none": None,
        "string": "héllo",
        "list": [1, 2.5, "x", None, [np.arange(2)]],
        "tuple": (0.9, 0.999),
        "empty_list": [],
        "empty_dict": {},
        3: {"int keys": "stay ints"},
        "3": "and string keys stay strings",
        "nested": {"a": {"b": {"c": np.eye(2)}}},
    }
    path = tmp_path / "state.npz"
    adio.save(state, path)
    _same(state, adio.load(path))


def test_tensors_come_back_as_arrays(tmp_path):
    t = ad.tensor([[1.0, 2.0]], requires_grad=True)
    path = tmp_path / "t.npz"
    adio.save({"t": t, "f32": ad.tensor([1.0], dtype=np.float32)}, path)
    out = adio.load(path)
    assert type(out["t"]) is np.ndarray
    np.testing.assert_array_equal(out["t"], t.data)
    assert out["f32"].dtype == np.float32


def test_file_is_written_at_exactly_the_path_and_is_an_npz(tmp_path):
    path = tmp_path / "checkpoint.ckpt"  # no .npz suffix is appended
    adio.save({"w": np.arange(3.0)}, path)
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.ckpt"]
    with np.load(path, allow_pickle=False) as z:  # plain NumPy can read it
        assert "__autodiffx__" in z.files


def test_save_refuses_object_arrays_and_unknown_types_before_touching_disk(tmp_path):
    path = tmp_path / "x.npz"
    with pytest.raises(TypeError, match="object array"):
        adio.save({"bad": np.array([{}, 1], dtype=object)}, path)
    with pytest.raises(TypeError, match="cannot save set"):
        adio.save({"bad": {1, 2}}, path)
    with pytest.raises(TypeError, match="keys must be str or int"):
        adio.save({(1, 2): 0}, path)
    assert not os.listdir(tmp_path)


def test_load_refuses_pickles(tmp_path):
    path = tmp_path / "evil.pkl"
    with open(path, "wb") as fh:
        pickle.dump({"w": np.arange(3)}, fh)
    with pytest.raises(ValueError, match="pickle"):
        adio.load(path)


def test_load_refuses_npz_holding_object_arrays(tmp_path):
    path = tmp_path / "obj.npz"
    with open(path, "wb") as fh:
        np.savez(fh, ok=np.arange(2), bad=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="pickled object array"):
        adio.load(path)


def test_load_plain_npz_and_rejects_other_files(tmp_path):
    plain = tmp_path / "plain.npz"
    np.savez(plain, a=np.arange(3), b=np.ones(2))
    out = adio.load(plain)
    assert set(out) == {"a", "b"}
    np.testing.assert_array_equal(out["a"], np.arange(3))
    npy = tmp_path / "x.npy"
    np.save(npy, np.arange(3))
    with pytest.raises(ValueError, match=r"bare \.npy"):
        adio.load(npy)
    txt = tmp_path / "x.txt"
    txt.write_text("hello")
    with pytest.raises(ValueError, match="not an autodiffx"):
        adio.load(txt)


def test_load_refuses_a_newer_format_version(tmp_path, monkeypatch):
    path = tmp_path / "new.npz"
    monkeypatch.setattr(adio, "VERSION", 99)
    adio.save({"a": 1}, path)
    monkeypatch.setattr(adio, "VERSION", 1)
    with pytest.raises(ValueError, match="version 99"):
        adio.load(path)


def _only(tmp_path):
    return sorted(os.listdir(tmp_path))


def test_failure_mid_write_leaves_the_old_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.npz"
    old = {"w": np.arange(4.0), "step": 1}
    adio.save(old, path)
    before = path.read_bytes()

    real = np.lib.format.write_array
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # header and first array written, then the "crash"
            raise OSError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(np.lib.format, "write_array", failing)
    new = {"w": np.arange(10.0), "v": np.ones(5), "step": 2}
    with pytest.raises(OSError, match="disk full"):
        adio.save(new, path)
    monkeypatch.undo()
    assert len(calls) == 3
    assert path.read_bytes() == before
    _same(adio.load(path), old)
    assert _only(tmp_path) == ["ckpt.npz"]  # no temporary file left behind


def test_failure_at_rename_leaves_the_old_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.npz"
    adio.save({"a": 1}, path)

    def boom(src, dst):
        raise OSError("rename failed")

    monkeypatch.setattr(adio.os, "replace", boom)
    with pytest.raises(OSError, match="rename failed"):
        adio.save({"a": 2}, path)
    monkeypatch.undo()
    assert adio.load(path) == {"a": 1}
    assert _only(tmp_path) == ["ckpt.npz"]


def test_save_fsyncs_before_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(adio.os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd)))
    monkeypatch.setattr(
        adio.os, "replace", lambda a, b: (events.append("replace"), real_replace(a, b))
    )
    adio.save({"a": 1}, tmp_path / "f.npz")
    assert events.index("fsync") < events.index("replace")


def test_compressed_round_trip(tmp_path):
    path = tmp_path / "c.npz"
    adio.save({"z": np.zeros(10_000)}, path, compress=True)
    assert path.stat().st_size < 10_000
    np.testing.assert_array_equal(adio.load(path)["z"], np.zeros(10_000))


def test_model_and_optimizer_checkpoint_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    x, y = ad.tensor(rng.normal(size=(8, 3))), ad.tensor(rng.normal(size=(8, 1)))

    def make():
        model = nn.Sequential(nn.Linear(3, 4, rng=1), nn.Tanh(), nn.Linear(4, 1, rng=2))
        return model, optim.Adam(model.parameters(), lr=0.05)

    def train(model, opt, n):
        for _ in range(n):
            opt.zero_grad()
            nn.functional.mse_loss(model(x), y).backward()
            opt.step()

    model, opt = make()
    train(model, opt, 3)
    path = tmp_path / "ckpt.npz"
    adio.save({"model": model.state_dict(), "optim": opt.state_dict(), "epoch": 3}, path)
    train(model, opt, 4)

    model2, opt2 = make()
    ck = adio.load(path)
    model2.load_state_dict(ck["model"])
    opt2.load_state_dict(ck["optim"])
    assert ck["epoch"] == 3
    train(model2, opt2, 4)
    for p, q in zip(model.parameters(), model2.parameters(), strict=True):
        np.testing.assert_array_equal(p.data, q.data)
