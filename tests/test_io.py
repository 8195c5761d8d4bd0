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


# ----- unreadable files: one exception, one line ---------------------------------------------
def _assert_refused(path, match: str = "") -> str:
    with pytest.raises(ad.CheckpointError) as exc:
        adio.load(path)
    message = str(exc.value)
    assert "\n" not in message and message.startswith(f"load: {str(path)!r}"), message
    assert match in message, message
    return message


def _state() -> dict:
    return {
        "model": {"w": np.arange(6.0).reshape(2, 3), "b": np.float32(1.5)},
        "betas": (0.9, 0.999),
        "z": 1 - 2j,
        "tags": ["a", None, True, 3],
        7: np.array(["xy", "z"]),
    }


def test_checkpoint_error_is_a_documented_value_error():
    assert issubclass(ad.CheckpointError, ValueError)
    assert ad.CheckpointError is adio.CheckpointError
    assert "CheckpointError" in ad.__all__ and ">>>" in ad.CheckpointError.__doc__


@pytest.mark.parametrize("compress", [False, True])
def test_every_truncation_is_refused(tmp_path, compress):
    good = tmp_path / "good.npz"
    adio.save(_state(), good, compress=compress)
    data = good.read_bytes()
    bad = tmp_path / "bad.npz"
    for n in range(len(data)):
        bad.write_bytes(data[:n])
        _assert_refused(bad)


def test_damaged_bytes_are_refused_or_harmless(tmp_path):
    """Random byte changes: either a CheckpointError, or (a byte the format does not use,
    such as a timestamp) the very same state; never another exception, never other data."""
    good = tmp_path / "good.npz"
    adio.save(_state(), good)
    data = good.read_bytes()
    rng = np.random.default_rng(11)
    bad = tmp_path / "bad.npz"
    messages = []
    for _ in range(400):
        b = bytearray(data)
        for i in rng.integers(0, len(b), size=rng.integers(1, 4)):
            b[i] = rng.integers(0, 256)
        bad.write_bytes(bytes(b))
        try:
            out = adio.load(bad)
        except ad.CheckpointError as e:
            messages.append(str(e))
        else:
            _same(out, _state())
    assert len(messages) > 300 and not any("\n" in m for m in messages)
    for size in (0, 1, 5, 100, 5000):
        bad.write_bytes(rng.integers(0, 256, size=size, dtype=np.uint8).tobytes())
        _assert_refused(bad)


def _zip(path, members: dict) -> None:
    """A ZIP archive with raw ``bytes`` members or ``.npy`` members from arrays."""
    import io
    import zipfile

    with zipfile.ZipFile(path, "w") as zf:
        for name, value in members.items():
            if isinstance(value, bytes):
                zf.writestr(name, value)
            else:
                buf = io.BytesIO()
                np.lib.format.write_array(buf, value, allow_pickle=True)
                zf.writestr(name, buf.getvalue())


def _header(tree, version=1, fmt="autodiffx.state") -> np.ndarray:
    import json

    text = json.dumps({"format": fmt, "version": version, "tree": tree})
    return np.frombuffer(text.encode(), dtype=np.uint8)


def _raw_header(text: str) -> np.ndarray:
    return np.frombuffer(text.encode(), dtype=np.uint8)


_DEEP = '{"format": "autodiffx.state", "version": 1, "tree": ' + "[" * 5000 + "]" * 5000 + "}"
_TUPLES = '{"__tuple__": [' * 150 + "1" + "]}" * 150

MALFORMED = {
    "zip with a text member": ({"notes.txt": b"hello"}, "not an .npy array"),
    "zip with a non-npy header": ({"__autodiffx__.npy": b"garbage"}, "cannot read member"),
    "npy header cut inside its dict": (
        {"__autodiffx__.npy": b"\x93NUMPY\x01\x00\x10\x00{'descr': [('a', '<f8')"},
        "cannot read member",
    ),
    "npy shape larger than its data": (
        {
            "a.npy": b"\x93NUMPY\x01\x00v\x00{'descr': '<f8', 'fortran_order': False, 'shape': "
            b"(1000000000000,), }" + b" " * 49 + b"\n" + b"\0" * 16
        },
        "declares shape",
    ),
    "npz with an object array": (
        {"ok.npy": np.arange(2), "bad.npy": np.array([{"a": 1}], dtype=object)},
        "pickled object array",
    ),
    "header of float64": ({"__autodiffx__.npy": np.zeros(3)}, "corrupt header (a float64"),
    "header of strings": ({"__autodiffx__.npy": np.array(["{}"])}, "corrupt header (a <U2"),
    "header not UTF-8": ({"__autodiffx__.npy": np.array([0xFF, 0xFE], np.uint8)}, "corrupt header"),
    "header not JSON": ({"__autodiffx__.npy": _raw_header("{'tree': 1")}, "corrupt header"),
    "JSON nested 5000 deep": ({"__autodiffx__.npy": _raw_header(_DEEP)}, "nested too deeply"),
    "tree nested 150 deep": (
        {
            "__autodiffx__.npy": _raw_header(
                '{"format": "autodiffx.state", "version": 1, "tree": ' + _TUPLES + "}"
            )
        },
        "more than 100 deep",
    ),
    "other format": ({"__autodiffx__.npy": _header(1, fmt="x")}, "not an autodiffx state"),
    "version as a string": ({"__autodiffx__.npy": _header(1, version="1")}, "format version"),
    "version true": ({"__autodiffx__.npy": _header(1, version=True)}, "format version"),
    "version 0": ({"__autodiffx__.npy": _header(1, version=0)}, "format version"),
    "dict entry not a pair": ({"__autodiffx__.npy": _header({"__dict__": [1, 2]})}, "dict entry"),
    "dict key a list": ({"__autodiffx__.npy": _header({"__dict__": [[[1], 2]]})}, "dict entry"),
    "dict key twice": (
        {"__autodiffx__.npy": _header({"__dict__": [["k", 1], ["k", 2]]})},
        "key 'k' twice",
    ),
    "tuple of an int": ({"__autodiffx__.npy": _header({"__tuple__": 3})}, "header node"),
    "complex of strings": ({"__autodiffx__.npy": _header({"__complex__": ["a", "b"]})}, "node"),
    "complex of three": ({"__autodiffx__.npy": _header({"__complex__": [1, 2, 3]})}, "node"),
    "array named by an int": ({"__autodiffx__.npy": _header({"__array__": 3})}, "node"),
    "unknown tag": ({"__autodiffx__.npy": _header({"__set__": [1]})}, "header node"),
    "two tags": ({"__autodiffx__.npy": _header({"__tuple__": [], "__array__": "a0"})}, "node"),
    "missing member": ({"__autodiffx__.npy": _header({"__array__": "a0"})}, "lacks the array"),
    "scalar of shape (3,)": (
        {"__autodiffx__.npy": _header({"__scalar__": "a0"}), "a0.npy": np.zeros(3)},
        "scalar 'a0' of shape (3,)",
    ),
    "object array in a state file": (
        {"__autodiffx__.npy": _header({"__array__": "a0"}), "a0.npy": np.array([None])},
        "pickled object array in 'a0'",
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_files_raise_checkpoint_error(tmp_path, case):
    members, match = MALFORMED[case]
    path = tmp_path / "x.npz"
    _zip(path, members)
    _assert_refused(path, match)


def test_non_npz_files_raise_checkpoint_error(tmp_path):
    path = tmp_path / "x"
    for data, match in [
        (b"", "is empty"),
        (b"hello", "not an autodiffx (.npz) state file"),
        (b"PK\x03\x04 and then nothing", "not a complete ZIP archive"),
        (pickle.dumps([1, 2]), "is a pickle file"),
    ]:
        path.write_bytes(data)
        _assert_refused(path, match)
    np.save(tmp_path / "x.npy", np.arange(3))
    _assert_refused(tmp_path / "x.npy", "bare .npy array")


def test_a_path_that_cannot_be_opened_raises_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        adio.load(tmp_path / "missing.npz")
    with pytest.raises(IsADirectoryError):
        adio.load(tmp_path)


def test_save_refuses_a_state_nested_deeper_than_load_reads(tmp_path):
    ok: list = []
    for _ in range(adio.MAX_DEPTH - 1):
        ok = [ok]  # MAX_DEPTH nested lists
    with pytest.raises(TypeError, match="nests containers more than 100 deep"):
        adio.save({"deeper": ok}, tmp_path / "deep.npz")
    adio.save(ok, tmp_path / "ok.npz")
    assert adio.load(tmp_path / "ok.npz") == ok
    assert sorted(os.listdir(tmp_path)) == ["ok.npz"]


# ----- interrupted saves leave nothing behind ---------------------------------------------------
_PAUSED_SAVE = """
import sys
import numpy as np
import autodiffx as ad
real, calls = np.lib.format.write_array, []
def paused(*args, **kwargs):
    calls.append(1)
    if len(calls) == 2:  # the header and one array written: stop in the middle of the save
        print("mid-save", flush=True)
        sys.stdin.readline()
    return real(*args, **kwargs)
np.lib.format.write_array = paused
ad.save({"a": np.zeros(100_000), "b": np.ones(100_000), "who": "child"}, sys.argv[1])
print("saved", flush=True)
"""


def _paused_saver(path):
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-c", _PAUSED_SAVE, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline() == "mid-save\n"
    return proc


def _temporaries(tmp_path):
    return [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]


def test_a_save_killed_mid_write_is_cleaned_up_by_the_next_save(tmp_path):
    path = tmp_path / "ckpt.npz"
    adio.save({"who": "first"}, path)
    for _ in range(3):  # saves killed with SIGKILL half-way through: no handler runs
        proc = _paused_saver(path)
        proc.kill()
        proc.wait(timeout=60)
        proc.stdin.close()
        proc.stdout.close()
        # each save removed the temporary of the one killed before it: one is left
        assert len(_temporaries(tmp_path)) == 1
    assert adio.load(path) == {"who": "first"}  # the old file is intact
    adio.save({"who": "second"}, path)
    assert sorted(os.listdir(tmp_path)) == ["ckpt.npz"]
    assert adio.load(path) == {"who": "second"}


def test_the_next_save_leaves_a_live_save_alone(tmp_path):
    path = tmp_path / "ckpt.npz"
    proc = _paused_saver(path)
    try:
        (live,) = _temporaries(tmp_path)
        adio.save({"who": "parent"}, path)  # a concurrent save of the same path
        assert _temporaries(tmp_path) == [live]
        assert adio.load(path) == {"who": "parent"}
    finally:
        out, _ = proc.communicate("\n", timeout=60)
    assert proc.returncode == 0 and out == "saved\n"
    assert sorted(os.listdir(tmp_path)) == ["ckpt.npz"]
    assert adio.load(path)["who"] == "child"


def test_cleanup_only_touches_this_paths_temporaries(tmp_path):
    names = [".ckpt.npz.notes.tmp", ".other.npz." + "0" * 32 + ".tmp", "ckpt.npz.tmp"]
    for name in names:
        (tmp_path / name).write_text("mine")
    adio.save({"a": 1}, tmp_path / "ckpt.npz")
    assert sorted(os.listdir(tmp_path)) == sorted([*names, "ckpt.npz"])


def test_an_exception_while_writing_removes_the_temporary(tmp_path):
    def fail(fh):
        fh.write(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        adio.write_atomically(tmp_path / "f.bin", fail)
    assert os.listdir(tmp_path) == []
